// shape_proto: the smallest supervisor of unotify's fixed shape, in C, to
// tell what the shape itself costs from what unotify adds to it.
//
// A receiving thread takes each notification (after poll(2), or blocked in
// NOTIF_RECV) and hands its id to one worker thread through a ring and a
// futex; the worker answers CONTINUE. Both are pinned to CPU 0, the worker
// runs SCHED_BATCH, sync wake-up is on: the best case of unotify's per-CPU
// lanes. It traps openat (x86_64 number 257) only.
//
//   cc -O2 -pthread -o /tmp/shape_proto benches/shape_proto.c
//   /tmp/shape_proto poll|recv -- /tmp/openloop 20000 1
//
// Compare with benches/floorsup.c (one thread: poll, RECV, SEND) on
// the same client, in alternating runs. A measurement aid; not built by cargo.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#define RING 1024

static int listener;
static __u64 ring[RING];
static _Atomic unsigned head, tail, seq;
static _Atomic int asleep;

static void pin0(void) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(0, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static void *worker(void *unused) {
    (void)unused;
    pin0();
    struct sched_param p = {0};
    sched_setscheduler(0, SCHED_BATCH, &p);
    for (;;) {
        unsigned h = atomic_load(&head);
        if (h != atomic_load(&tail)) {
            struct seccomp_notif_resp r = {.id = ring[h % RING], .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
            atomic_store(&head, h + 1);
            ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &r);
            continue;
        }
        unsigned s = atomic_load(&seq);
        atomic_store(&asleep, 1);
        if (atomic_load(&head) == atomic_load(&tail))
            syscall(SYS_futex, &seq, FUTEX_WAIT_PRIVATE, s, NULL, NULL, 0);
        atomic_store(&asleep, 0);
    }
    return NULL;
}

static int send_fd(int sock, int fd) {
    char c = 'x', buf[CMSG_SPACE(sizeof(int))];
    struct iovec io = {&c, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock) {
    char c, buf[CMSG_SPACE(sizeof(int))];
    struct iovec io = {&c, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf};
    if (recvmsg(sock, &m, 0) != 1) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[2], "--") != 0 || (strcmp(argv[1], "poll") && strcmp(argv[1], "recv"))) {
        fprintf(stderr, "usage: shape_proto poll|recv -- CMD [ARGS...]\n");
        return 2;
    }
    int blocking = strcmp(argv[1], "recv") == 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 257, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {4, f};
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (fd < 0 || send_fd(sv[1], fd) != 0) _exit(125);
        close(fd);
        char go;
        if (read(sv[1], &go, 1) != 1) _exit(125);
        execvp(argv[3], argv + 3);
        _exit(127);
    }
    listener = recv_fd(sv[0]);
    if (listener < 0) return 1;
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (unsigned long)1 /* SYNC_WAKE_UP */);
    pin0();
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    if (write(sv[0], "g", 1) != 1) return 1;
    for (;;) {
        if (!blocking) {
            struct pollfd pf = {listener, POLLIN, 0};
            if (poll(&pf, 1, -1) < 0) continue;
            if (pf.revents & (POLLHUP | POLLERR | POLLNVAL)) break;
        }
        struct seccomp_notif req;
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOENT) {
                // Blocking: ENOENT once every task is gone (Linux 6.11+).
                struct pollfd pf = {listener, POLLIN, 0};
                if (poll(&pf, 1, 0) >= 0 && (pf.revents & POLLHUP)) break;
                continue;
            }
            break;
        }
        unsigned tl = atomic_load(&tail);
        ring[tl % RING] = req.id;
        atomic_store(&tail, tl + 1);
        if (atomic_load(&asleep)) {
            atomic_fetch_add(&seq, 1);
            syscall(SYS_futex, &seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        }
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
