/* Races the charge of a write into the copy-on-write layer under
 * `--max-disk`: a second thread changes what the call reads (an offset in
 * memory, the input fd's position, the input fd itself, an iovec length,
 * the output fd's O_APPEND flag or position) after the supervisor has seen
 * it and before the kernel reads it again. argv[1] names the vector,
 * argv[2] the rounds. The directory holds "big" (64 MiB) and "small"
 * (4 KiB), files of the work directory (the lower tree). A round the
 * supervisor charges as written makes it refuse (the honest value is
 * past the cap), so only a round that won the race writes much. The test
 * measures what the layer holds after the run. Prints "ok N" (calls that
 * succeeded).
 *   cfr_off:   copy_file_range, *off_in from size-4K to 0;
 *   sendfile_seek: sendfile from the input's position, lseek to 0;
 *   cfr_dup2:  copy_file_range from fd 10, dup2 of big over small;
 *   writev_len: writev of a 1-byte iovec whose length becomes 64 MiB;
 *   pwrite_append: pwrite within the size, O_APPEND set meanwhile;
 *   write_seek: write at 0 within the size, lseek far away meanwhile,
 *              then the holes left filled by pwrite within the size;
 *   concurrent: 8 threads write 1 MiB at a time into their own files;
 *   bind_fail: binds of a bound unix socket to new names (each fails
 *              EINVAL); prints "ok N enospc M" (M: refused ENOSPC);
 *   dup2_null: a 1 MiB write to fd 10, /dev/null, while the layer's
 *              "out" is dup2ed over fd 10 (a write let through for
 *              /dev/null lands in "out"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BIG (64L << 20)
#define MIB (1L << 20)

static const char *vector;
static atomic_int go, stop;
static atomic_long delay_ns;
static volatile loff_t off_in;
static int in_fd, out_fd, big_fd, small_fd;
static struct iovec iov;
static char *buf;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* The change, made `delay_ns` after the call was started. */
static void change(void) {
    if (!strcmp(vector, "cfr_off"))
        off_in = 0;
    else if (!strcmp(vector, "sendfile_seek"))
        lseek(in_fd, 0, SEEK_SET);
    else if (!strcmp(vector, "cfr_dup2"))
        dup2(big_fd, 10);
    else if (!strcmp(vector, "writev_len"))
        iov.iov_len = BIG;
    else if (!strcmp(vector, "pwrite_append"))
        fcntl(out_fd, F_SETFL, O_APPEND);
    else if (!strcmp(vector, "write_seek"))
        lseek(out_fd, BIG + (now_ns() & 63) * 2 * MIB, SEEK_SET);
    else if (!strcmp(vector, "dup2_null") || !strcmp(vector, "fallocate_pipe"))
        dup2(out_fd, 10);
}

static void *racer(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        if (!atomic_load(&go))
            continue;
        long until = now_ns() + atomic_load(&delay_ns);
        while (now_ns() < until) {
        }
        change();
        atomic_store(&go, 0);
    }
    return NULL;
}

static void *writer(void *arg) {
    char name[32];
    snprintf(name, sizeof name, "w%ld", (long)arg);
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    long ok = 0;
    for (int i = 0; i < 400 && fd >= 0; i++) {
        if (write(fd, buf, MIB) == MIB)
            ok++;
        else
            usleep(5000);
    }
    return (void *)ok;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    vector = argv[1];
    signal(SIGXFSZ, SIG_IGN);
    int rounds = atoi(argv[2]), ok = 0;
    buf = calloc(1, BIG);
    big_fd = open("big", O_RDONLY);
    small_fd = open("small", O_RDONLY);
    out_fd = open("out", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!buf || big_fd < 0 || small_fd < 0 || out_fd < 0)
        return 3;
    if (!strcmp(vector, "concurrent")) {
        pthread_t w[8];
        for (long i = 0; i < 8; i++)
            pthread_create(&w[i], NULL, writer, (void *)i);
        for (int i = 0; i < 8; i++) {
            void *n;
            pthread_join(w[i], &n);
            ok += (int)(long)n;
        }
        printf("ok %d\n", ok);
        return 0;
    }
    if (!strcmp(vector, "bind_fail")) {
        struct sockaddr_un a = {AF_UNIX};
        int s = socket(AF_UNIX, SOCK_STREAM, 0), enospc = 0;
        snprintf(a.sun_path, sizeof a.sun_path, "s");
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0)
            return 5;
        for (int i = 0; i < rounds; i++) {
            snprintf(a.sun_path, sizeof a.sun_path, "%0100d", i);
            if (bind(s, (struct sockaddr *)&a, sizeof a) == 0)
                ok++;
            else
                enospc += errno == ENOSPC;
        }
        printf("ok %d enospc %d\n", ok, enospc);
        return 0;
    }
    in_fd = open("big", O_RDONLY);
    int null_fd = open("/dev/null", O_WRONLY), pipe_fds[2];
    if (null_fd < 0 || pipe(pipe_fds) != 0)
        return 3;
    /* The honest write the later rounds stay within. */
    if (!strcmp(vector, "pwrite_append") && pwrite(out_fd, buf, 8 * MIB, 0) != 8 * MIB)
        return 4;
    if (!strcmp(vector, "write_seek") && write(out_fd, buf, MIB) != MIB)
        return 4;
    pthread_t t;
    pthread_create(&t, NULL, racer, NULL);
    for (int i = 0; i < rounds; i++) {
        /* A trapped write to /dev/null takes tens of microseconds. */
        long step = strcmp(vector, "dup2_null") && strcmp(vector, "fallocate_pipe") ? 2000 : 400;
        atomic_store(&delay_ns, (long)(i % 100) * step);
        long r = -1;
        if (!strcmp(vector, "cfr_off")) {
            loff_t oo = 0;
            off_in = BIG - 4096;
            atomic_store(&go, 1);
            r = copy_file_range(in_fd, (loff_t *)&off_in, out_fd, &oo, BIG, 0);
        } else if (!strcmp(vector, "sendfile_seek")) {
            lseek(in_fd, BIG - 4096, SEEK_SET);
            lseek(out_fd, 0, SEEK_SET);
            atomic_store(&go, 1);
            r = sendfile(out_fd, in_fd, NULL, BIG);
        } else if (!strcmp(vector, "cfr_dup2")) {
            loff_t oi = 0, oo = 0;
            dup2(small_fd, 10);
            atomic_store(&go, 1);
            r = copy_file_range(10, &oi, out_fd, &oo, BIG, 0);
        } else if (!strcmp(vector, "writev_len")) {
            iov.iov_base = buf;
            iov.iov_len = 1;
            lseek(out_fd, 0, SEEK_SET);
            atomic_store(&go, 1);
            r = writev(out_fd, &iov, 1);
        } else if (!strcmp(vector, "pwrite_append")) {
            fcntl(out_fd, F_SETFL, 0);
            atomic_store(&go, 1);
            r = pwrite(out_fd, buf, 8 * MIB, 0);
        } else if (!strcmp(vector, "write_seek")) {
            lseek(out_fd, 0, SEEK_SET);
            atomic_store(&go, 1);
            r = write(out_fd, buf, MIB);
        } else if (!strcmp(vector, "dup2_null")) {
            dup2(null_fd, 10);
            atomic_store(&go, 1);
            r = write(10, buf, MIB);
        } else if (!strcmp(vector, "fallocate_pipe")) {
            dup2(pipe_fds[1], 10);
            atomic_store(&go, 1);
            r = fallocate(10, FALLOC_FL_KEEP_SIZE, 0, BIG) == 0;
        }
        ok += r > 0;
        while (atomic_load(&go)) {
        }
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    if (!strcmp(vector, "write_seek")) {
        /* The holes a far write left, filled within the size. */
        struct stat st;
        fstat(out_fd, &st);
        for (off_t o = 0; o + MIB <= st.st_size && o < 4 * BIG; o += MIB)
            if (pwrite(out_fd, buf, MIB, o) != MIB)
                break;
    }
    printf("ok %d\n", ok);
    return 0;
}
