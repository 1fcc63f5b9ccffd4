/* Attacks on the network policy from inside the sandbox (tests/net_attack.rs).
 *
 * swap OP PORT MS: the main thread calls OP (connect, sendto, sendmsg, bind)
 *   on fd V with a destination 127.0.0.1:PORT (refused by the policy), while
 *   a second thread swaps fd V between a harmless socket (AF_UNIX, or a TCP
 *   socket for the sends, or a UDP socket for bind) and a fresh socket that
 *   would reach PORT, as fast as it can, for MS milliseconds. Prints
 *   "calls=N ok=N bound=N": for bind, `bound` counts swapped-in TCP sockets
 *   found bound to PORT.
 * Other commands: see main().
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

#define VFD 100
static volatile int stop_flag;
static const char *op;
static int port;
static volatile long bound;

static int harmless(void) {
    if (!strcmp(op, "bind")) return socket(AF_INET, SOCK_DGRAM, 0);
    if (!strcmp(op, "connect")) return socket(AF_UNIX, SOCK_STREAM, 0);
    /* A TCP socket: its sends ignore the address. */
    return socket(AF_INET, SOCK_STREAM, 0);
}

static int reaching(void) {
    if (!strcmp(op, "connect") || !strcmp(op, "bind"))
        return socket(AF_INET, SOCK_STREAM, 0);
    return socket(AF_INET, SOCK_DGRAM, 0);
}

static void *swapper(void *arg) {
    (void)arg;
    int h = harmless();
    while (!stop_flag) {
        int r = reaching();
        dup2(r, VFD);
        for (volatile int i = 0; i < 50; i++) {}
        dup2(h, VFD);
        if (!strcmp(op, "bind")) {
            struct sockaddr_in a;
            socklen_t l = sizeof a;
            if (getsockname(r, (struct sockaddr *)&a, &l) == 0 && ntohs(a.sin_port) == port)
                bound++;
        }
        close(r);
    }
    return NULL;
}

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s err=%d\n", what, errno);
    else
        printf("%s ok=%ld\n", what, r);
}

static int swap(const char *which, int p, long ms) {
    op = which;
    port = p;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(p)};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    int h = harmless();
    dup2(h, VFD);
    close(h);
    pthread_t t;
    pthread_create(&t, NULL, swapper, NULL);
    long calls = 0, ok = 0, t0 = now_ms();
    char byte = 'x';
    while (now_ms() - t0 < ms) {
        long r;
        if (!strcmp(op, "connect")) {
            r = connect(VFD, (struct sockaddr *)&dst, sizeof dst);
        } else if (!strcmp(op, "sendto")) {
            r = sendto(VFD, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&dst, sizeof dst);
        } else if (!strcmp(op, "sendmsg") || !strcmp(op, "sendmmsg")) {
            struct iovec iov = {.iov_base = &byte, .iov_len = 1};
            struct msghdr m = {.msg_name = &dst, .msg_namelen = sizeof dst,
                               .msg_iov = &iov, .msg_iovlen = 1};
            if (!strcmp(op, "sendmsg")) {
                r = sendmsg(VFD, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
            } else {
                struct mmsghdr mm = {.msg_hdr = m};
                r = sendmmsg(VFD, &mm, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            }
        } else {
            r = bind(VFD, (struct sockaddr *)&dst, sizeof dst);
        }
        calls++;
        if (r >= 0) ok++;
    }
    stop_flag = 1;
    pthread_join(t, NULL);
    printf("calls=%ld ok=%ld bound=%ld\n", calls, ok, bound);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 91;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "swap") && argc == 5)
        return swap(argv[2], atoi(argv[3]), atol(argv[4]));
    return 92;
}
