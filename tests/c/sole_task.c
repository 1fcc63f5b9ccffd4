/* Path denial's single-task shortcut (an allowed open answered CONTINUE
 * when the caller is the sandbox's only task), attacked.
 *
 *   sole_task swap DIR ROUNDS   two processes: the child flips the
 *                               symlink DIR/dl between DIR/A and DIR/B
 *                               (symlink and rename), the parent opens
 *                               DIR/dl/f and reads it ROUNDS times
 *                               (DIR/A/f is allowed, DIR/B/f denied)
 *   sole_task shared DIR ROUNDS two processes: the child rewrites a path
 *                               in memory they share between DIR/pub and
 *                               DIR/den, the parent opens it ROUNDS times
 *   sole_task self DIR ROUNDS   one task: denied opens through symlinks it
 *                               made itself, by every route, and a timer
 *                               signal whose handler flips the path buffer
 *                               between DIR/pub and DIR/den while the main
 *                               loop opens it; then one FIFO opened O_RDWR
 *
 * Prints "public N secret N errors N": secret must be 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static long pub_n, sec_n, err_n;

static void tally(int fd)
{
    char buf[16] = {0};
    if (fd < 0) {
        err_n++;
        return;
    }
    if (read(fd, buf, sizeof buf - 1) > 0) {
        if (!strncmp(buf, "SECRET", 6))
            sec_n++;
        else if (!strncmp(buf, "PUBLIC", 6))
            pub_n++;
    }
    close(fd);
}

static char pub_path[4096], den_path[4096];
static char buf_path[4096];
static volatile sig_atomic_t flip;

static void on_alarm(int sig)
{
    (void)sig;
    flip = !flip;
    strcpy(buf_path, flip ? den_path : pub_path);
}

static void point(const char *dir, const char *name, const char *target)
{
    char tmp[4096], dst[4096];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp%d", dir, name, getpid());
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    unlink(tmp);
    if (symlink(target, tmp) == 0)
        rename(tmp, dst);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    const char *dir = argv[2];
    long rounds = atol(argv[3]);
    char link_path[4096];
    snprintf(pub_path, sizeof pub_path, "%s/pub", dir);
    snprintf(den_path, sizeof den_path, "%s/den", dir);
    snprintf(link_path, sizeof link_path, "%s/link", dir);
    if (!strcmp(argv[1], "swap") || !strcmp(argv[1], "shared")) {
        int swap = !strcmp(argv[1], "swap");
        char a[4096], b[4096], target[4096];
        snprintf(a, sizeof a, "%s/A", dir);
        snprintf(b, sizeof b, "%s/B", dir);
        snprintf(target, sizeof target, "%s/dl/f", dir);
        char *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (shared == MAP_FAILED)
            return 3;
        strcpy(shared, swap ? target : pub_path);
        point(dir, "dl", a);
        pid_t child = fork();
        if (child == 0) {
            for (;;) {
                if (swap) {
                    point(dir, "dl", b);
                    point(dir, "dl", a);
                } else {
                    strcpy(shared, den_path);
                    strcpy(shared, pub_path);
                }
            }
        }
        for (long i = 0; i < rounds; i++)
            tally(open(shared, O_RDONLY));
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    } else if (!strcmp(argv[1], "self")) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        char via_fd[64];
        snprintf(via_fd, sizeof via_fd, "/proc/self/fd/%d/den", dfd);
        if (chdir(dir) != 0)
            return 3;
        for (long i = 0; i < rounds; i++) {
            /* A symlink it made itself, flipped between opens. */
            point(dir, "link", den_path);
            tally(open(link_path, O_RDONLY));
            tally(openat(dfd, "link", O_RDONLY));
            point(dir, "link", pub_path);
            tally(open(link_path, O_RDONLY));
            /* The denied file by every other route. */
            tally(open(den_path, O_RDONLY));
            tally(open("den", O_RDONLY));
            tally(open("./sub/../den", O_RDONLY));
            tally(openat(dfd, "den", O_RDONLY | O_CLOEXEC));
            tally(open(via_fd, O_RDONLY));
            point(dir, "dirlink", dir);
            tally(open("dirlink/den", O_RDONLY));
        }
        /* A timer handler rewrites the path while the call is trapped:
         * the call restarts as a new notification. */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGALRM, &sa, NULL);
        strcpy(buf_path, pub_path);
        struct itimerval it = {{0, 20}, {0, 20}};
        setitimer(ITIMER_REAL, &it, NULL);
        for (long i = 0; i < rounds * 20; i++)
            tally(open(buf_path, O_RDONLY));
        struct itimerval off = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &off, NULL);
        /* Answered CONTINUE (the kernel opens it) or on the deferral pool
         * (on the program's behalf): the test reads which. */
        int fifo = open("fifo", O_RDWR);
        if (fifo < 0)
            err_n++;
        else
            close(fifo);
    } else {
        return 2;
    }
    printf("public %ld secret %ld errors %ld\n", pub_n, sec_n, err_n);
    return 0;
}
