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
#include <linux/if_ether.h>
#include <sys/socket.h>
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

/* families: tries each socket family the policy refuses; prints
 * "created=N" (sockets that were created) and one line per try. */
static int families(void) {
    struct { const char *name; int dom, type, proto; } t[] = {
        {"vsock", 40 /* AF_VSOCK */, SOCK_STREAM, 0},
        {"xdp", 44 /* AF_XDP */, SOCK_RAW, 0},
        {"packet", AF_PACKET, SOCK_DGRAM, 0},
        {"netlink_diag", AF_NETLINK, SOCK_RAW, 4 /* NETLINK_SOCK_DIAG */},
        {"netlink_audit", AF_NETLINK, SOCK_RAW, 9 /* NETLINK_AUDIT */},
        {"netlink_uevent", AF_NETLINK, SOCK_DGRAM, 15 /* NETLINK_KOBJECT_UEVENT */},
        {"tipc", 30 /* AF_TIPC */, SOCK_RDM, 0},
        {"alg", 38 /* AF_ALG */, SOCK_SEQPACKET, 0},
    };
    int created = 0;
    for (unsigned i = 0; i < sizeof t / sizeof t[0]; i++) {
        int s = socket(t[i].dom, t[i].type, t[i].proto);
        printf("%s %s\n", t[i].name, s >= 0 ? "created" : strerror(errno));
        if (s >= 0) { created++; close(s); }
    }
    int sv[2];
    int r = socketpair(40 /* AF_VSOCK */, SOCK_STREAM, 0, sv);
    printf("socketpair_vsock %s\n", r == 0 ? "created" : strerror(errno));
    if (r == 0) created++;
    printf("created=%d\n", created);
    /* What must still work. */
    int ok = 0;
    int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    if (s >= 0) { ok++; close(s); }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) { ok++; close(sv[0]); close(sv[1]); }
    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s >= 0) { ok++; close(s); }
    s = socket(AF_INET6, SOCK_STREAM, 0);
    if (s >= 0) { ok++; close(s); }
    printf("usable=%d\n", ok);
    return 0;
}

/* srcroute PORT: a UDP socket sends to 127.0.0.1:PORT (allowed) with a
 * loose source route through 127.0.0.2 (refused), set as a socket option
 * and as a control message; the same for IPv6 routing headers. Prints
 * "through=N": how many of the calls were accepted. */
static int srcroute(int p) {
    int through = 0;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(p)};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    /* IPOPT_NOP, IPOPT_LSRR len 7 ptr 4, 127.0.0.2 */
    unsigned char opt[8] = {1, 0x83, 7, 4, 127, 0, 0, 2};
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int r = setsockopt(s, IPPROTO_IP, IP_OPTIONS, opt, sizeof opt);
    printf("setsockopt_ip_options %s\n", r == 0 ? "ok" : strerror(errno));
    if (r == 0) through++;
    close(s);
    for (int kind = 0; kind < 2; kind++) {
        s = socket(AF_INET, SOCK_DGRAM, 0);
        union { char buf[CMSG_SPACE(sizeof opt)]; struct cmsghdr align; } u;
        memset(&u, 0, sizeof u);
        struct cmsghdr *c = (struct cmsghdr *)u.buf;
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = kind ? IP_RETOPTS : IP_OPTIONS;
        c->cmsg_len = CMSG_LEN(sizeof opt);
        memcpy(CMSG_DATA(c), opt, sizeof opt);
        char byte = 'r';
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_name = &dst, .msg_namelen = sizeof dst, .msg_iov = &iov,
                           .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        long n = sendmsg(s, &m, 0);
        printf("sendmsg_%s %s\n", kind ? "ip_retopts" : "ip_options", n >= 0 ? "ok" : strerror(errno));
        if (n >= 0) through++;
        close(s);
    }
    /* IPv6: a segment routing header (type 4) with two segments, as a
     * socket option (the kernel takes it), and a type 2 header as a control
     * message (the only type the kernel takes there, with Mobile IPv6). */
    struct sockaddr_in6 dst6 = {.sin6_family = AF_INET6, .sin6_port = htons(p)};
    inet_pton(AF_INET6, "::1", &dst6.sin6_addr);
    unsigned char srh[40] = {0};
    srh[1] = 4; /* hdr ext len: 4 * 8 bytes after the first 8 */
    srh[2] = 4; /* segment routing */
    srh[3] = 1; /* segments left */
    srh[4] = 1; /* last entry */
    inet_pton(AF_INET6, "::1", srh + 8);
    inet_pton(AF_INET6, "::1", srh + 24);
    unsigned char rh[24] = {0};
    rh[1] = 2;
    rh[2] = 2;
    rh[3] = 1;
    inet_pton(AF_INET6, "::1", rh + 8);
    s = socket(AF_INET6, SOCK_DGRAM, 0);
    r = setsockopt(s, IPPROTO_IPV6, IPV6_RTHDR, srh, sizeof srh);
    printf("setsockopt_ipv6_rthdr %s\n", r == 0 ? "ok" : strerror(errno));
    if (r == 0) through++;
    close(s);
    s = socket(AF_INET6, SOCK_DGRAM, 0);
    {
        union { char buf[CMSG_SPACE(sizeof rh)]; struct cmsghdr align; } u;
        memset(&u, 0, sizeof u);
        struct cmsghdr *c = (struct cmsghdr *)u.buf;
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_RTHDR;
        c->cmsg_len = CMSG_LEN(sizeof rh);
        memcpy(CMSG_DATA(c), rh, sizeof rh);
        char byte = 's';
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_name = &dst6, .msg_namelen = sizeof dst6, .msg_iov = &iov,
                           .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        long n = sendmsg(s, &m, 0);
        printf("sendmsg_ipv6_rthdr %s\n", n >= 0 ? "ok" : strerror(errno));
        if (n >= 0) through++;
    }
    close(s);
    printf("through=%d\n", through);
    return 0;
}

/* autolisten LO HI N: N TCP sockets call listen() without bind(); prints
 * "listening=N inrange=N" (inrange: listening on a port in LO..HI). */
static int autolisten(int lo, int hi, int n) {
    int listening = 0, inrange = 0;
    for (int i = 0; i < n; i++) {
        int s = socket(i % 2 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        if (listen(s, 1) == 0) {
            listening++;
            struct sockaddr_in6 a;
            socklen_t l = sizeof a;
            getsockname(s, (struct sockaddr *)&a, &l);
            int port = ntohs(a.sin6_port); /* same offset in sockaddr_in */
            if (port >= lo && port <= hi) inrange++;
        }
        close(s);
    }
    printf("listening=%d inrange=%d\n", listening, inrange);
    return 0;
}

/* exitconnect PORT: a thread starts a blocking connect to 127.0.0.1:PORT
 * (a listener whose accept queue is full: it never completes), then the
 * program exits. */
static int exit_port;
static void *blocked_connect(void *arg) {
    (void)arg;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(exit_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    connect(s, (struct sockaddr *)&a, sizeof a);
    printf("connect returned\n");
    return NULL;
}

static int exitconnect(int p) {
    exit_port = p;
    pthread_t t;
    pthread_create(&t, NULL, blocked_connect, NULL);
    usleep(300 * 1000);
    printf("exiting\n");
    fflush(stdout);
    _exit(0);
}

/* unixflip OK BAD MS: connects to the unix socket OK (allowed) while a
 * second thread flips the path in memory between OK and BAD (refused). */
static struct sockaddr_un flip_addr;
static char flip_ok[108], flip_bad[108];
static void *flipper(void *arg) {
    (void)arg;
    while (!stop_flag) {
        memcpy(flip_addr.sun_path, flip_ok, sizeof flip_ok);
        memcpy(flip_addr.sun_path, flip_bad, sizeof flip_bad);
    }
    return NULL;
}

static int unixflip(const char *ok_path, const char *bad_path, long ms) {
    flip_addr.sun_family = AF_UNIX;
    strncpy(flip_ok, ok_path, sizeof flip_ok - 1);
    strncpy(flip_bad, bad_path, sizeof flip_bad - 1);
    memcpy(flip_addr.sun_path, flip_ok, sizeof flip_ok);
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    long calls = 0, ok = 0, t0 = now_ms();
    while (now_ms() - t0 < ms) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&flip_addr, sizeof flip_addr) == 0) ok++;
        calls++;
        close(s);
    }
    stop_flag = 1;
    pthread_join(t, NULL);
    printf("calls=%ld ok=%ld\n", calls, ok);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 91;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "swap") && argc == 5)
        return swap(argv[2], atoi(argv[3]), atol(argv[4]));
    if (!strcmp(cmd, "families") && argc == 2) return families();
    if (!strcmp(cmd, "unixflip") && argc == 5)
        return unixflip(argv[2], argv[3], atol(argv[4]));
    if (!strcmp(cmd, "srcroute") && argc == 3) return srcroute(atoi(argv[2]));
    if (!strcmp(cmd, "autolisten") && argc == 5)
        return autolisten(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (!strcmp(cmd, "exitconnect") && argc == 3) return exitconnect(atoi(argv[2]));
    return 92;
}
