/* Network client run inside the sandbox by tests/net.rs and
 * benches/net_connect.rs. One subcommand per run; results on stdout as
 * "what ok=N" or "what err=ERRNO". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int mkaddr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) exit(90);
        *len = sizeof *a;
        return AF_INET6;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) exit(90);
    *len = sizeof *a;
    return AF_INET;
}

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s err=%d\n", what, errno);
    else
        printf("%s ok=%ld\n", what, r);
    fflush(stdout);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* ---- toctou ---- */
static struct sockaddr_in shared_addr;
static volatile int stop_flag;
static int port_ok, port_bad;

static void *rewriter(void *arg) {
    (void)arg;
    volatile unsigned short *p = &shared_addr.sin_port;
    while (!stop_flag) {
        *p = htons(port_ok);
        *p = htons(port_bad);
    }
    return NULL;
}

/* ---- stall ---- */
static struct sockaddr_storage full_addr;
static socklen_t full_len;
static volatile int blocked_done;
static int blocked_ret, blocked_err;

static void *blocked_connect(void *arg) {
    (void)arg;
    int s = socket(full_addr.ss_family, SOCK_STREAM, 0);
    blocked_ret = connect(s, (struct sockaddr *)&full_addr, full_len);
    blocked_err = blocked_ret < 0 ? errno : 0;
    blocked_done = 1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 91;
    const char *cmd = argv[1];
    struct sockaddr_storage ss;
    socklen_t len;

    if (!strcmp(cmd, "connect") && argc == 4) {
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        int s = socket(fam, SOCK_STREAM, 0);
        report("connect", connect(s, (struct sockaddr *)&ss, len));
        close(s);
    } else if (!strcmp(cmd, "mapped") && argc == 4) {
        /* AF_INET6 socket, IPv4-mapped destination ::ffff:HOST4. */
        char buf[64];
        snprintf(buf, sizeof buf, "::ffff:%s", argv[2]);
        mkaddr(buf, atoi(argv[3]), &ss, &len);
        int s = socket(AF_INET6, SOCK_STREAM, 0);
        report("mapped", connect(s, (struct sockaddr *)&ss, len));
        close(s);
    } else if (!strcmp(cmd, "udpconnect") && argc == 5) {
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        int s = socket(fam, SOCK_DGRAM, 0);
        long r = connect(s, (struct sockaddr *)&ss, len);
        report("udpconnect", r);
        if (r == 0) report("send", send(s, argv[4], strlen(argv[4]), 0));
    } else if (!strcmp(cmd, "udpconnmsg") && argc == 5) {
        /* connect, then sendmsg without a destination (msg_name NULL). */
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        int s = socket(fam, SOCK_DGRAM, 0);
        long r = connect(s, (struct sockaddr *)&ss, len);
        report("udpconnect", r);
        struct iovec iov = {argv[4], strlen(argv[4])};
        struct msghdr m = {0};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        if (r == 0) report("sendmsg", sendmsg(s, &m, 0));
    } else if (!strcmp(cmd, "sendto") && argc == 5) {
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        int s = socket(fam, SOCK_DGRAM, 0);
        report("sendto", sendto(s, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&ss, len));
    } else if (!strcmp(cmd, "sendmsg") && argc == 5) {
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        int s = socket(fam, SOCK_DGRAM, 0);
        size_t n = strlen(argv[4]), half = n / 2;
        struct iovec iov[2] = {{argv[4], half}, {argv[4] + half, n - half}};
        struct msghdr m = {0};
        m.msg_name = &ss;
        m.msg_namelen = len;
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        report("sendmsg", sendmsg(s, &m, 0));
    } else if (!strcmp(cmd, "sendmmsg") && argc == 6) {
        /* Entries 0 and 1 to PORT1, entry 2 to PORT2. */
        struct sockaddr_storage a1, a2;
        socklen_t l1, l2;
        int fam = mkaddr(argv[2], atoi(argv[3]), &a1, &l1);
        mkaddr(argv[2], atoi(argv[4]), &a2, &l2);
        int s = socket(fam, SOCK_DGRAM, 0);
        char bufs[3][64];
        struct iovec iov[3];
        struct mmsghdr v[3];
        memset(v, 0, sizeof v);
        for (int i = 0; i < 3; i++) {
            snprintf(bufs[i], sizeof bufs[i], "%s-%d", argv[5], i);
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = strlen(bufs[i]);
            v[i].msg_hdr.msg_iov = &iov[i];
            v[i].msg_hdr.msg_iovlen = 1;
            v[i].msg_hdr.msg_name = i < 2 ? (void *)&a1 : (void *)&a2;
            v[i].msg_hdr.msg_namelen = i < 2 ? l1 : l2;
            v[i].msg_len = 777;
        }
        int r = sendmmsg(s, v, 3, 0);
        printf("sendmmsg ret=%d err=%d lens=%u,%u,%u\n", r, r < 0 ? errno : 0, v[0].msg_len, v[1].msg_len,
               v[2].msg_len);
    } else if (!strcmp(cmd, "bind") && argc == 5) {
        int fam = mkaddr(argv[3], atoi(argv[4]), &ss, &len);
        int s = socket(fam, !strcmp(argv[2], "udp") ? SOCK_DGRAM : SOCK_STREAM, 0);
        report("bind", bind(s, (struct sockaddr *)&ss, len));
    } else if (!strcmp(cmd, "nbconnect") && argc == 4) {
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        int s = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
        report("nbconnect", connect(s, (struct sockaddr *)&ss, len));
        struct pollfd p = {s, POLLOUT, 0};
        int pr = poll(&p, 1, 5000);
        int e = -1;
        socklen_t el = sizeof e;
        getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el);
        printf("poll=%d so_error=%d\n", pr, e);
        /* A second connect on the now connected socket: EISCONN. */
        report("again", connect(s, (struct sockaddr *)&ss, len));
    } else if (!strcmp(cmd, "socket") && argc == 5) {
        long r = socket(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
        report("socket", r);
    } else if (!strcmp(cmd, "unix") && argc == 3) {
        struct sockaddr_un u = {0};
        u.sun_family = AF_UNIX;
        strncpy(u.sun_path, argv[2], sizeof u.sun_path - 1);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        report("unix", connect(s, (struct sockaddr *)&u, sizeof u));
    } else if (!strcmp(cmd, "hosts") && argc == 2) {
        FILE *f = fopen("/etc/hosts", "r");
        if (!f) {
            report("hosts", -1);
            return 0;
        }
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        printf("%s", buf);
        fflush(stdout);
    } else if (!strcmp(cmd, "resolve") && argc == 4) {
        struct addrinfo hints = {0}, *res;
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int g = getaddrinfo(argv[2], argv[3], &hints, &res);
        if (g != 0) {
            printf("resolve gai=%d\n", g);
            return 0;
        }
        int s = socket(res->ai_family, SOCK_STREAM, 0);
        report("resolve", connect(s, res->ai_addr, res->ai_addrlen));
    } else if (!strcmp(cmd, "toctou") && argc == 6) {
        mkaddr(argv[2], 0, (struct sockaddr_storage *)&ss, &len);
        memcpy(&shared_addr, &ss, sizeof shared_addr);
        port_ok = atoi(argv[3]);
        port_bad = atoi(argv[4]);
        long ms = atol(argv[5]);
        pthread_t t;
        pthread_create(&t, NULL, rewriter, NULL);
        long ok = 0, refused = 0, other = 0, t0 = now_ms();
        while (now_ms() - t0 < ms) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(s, (struct sockaddr *)&shared_addr, sizeof shared_addr) == 0)
                ok++;
            else if (errno == ECONNREFUSED)
                refused++;
            else
                other++;
            close(s);
        }
        stop_flag = 1;
        pthread_join(t, NULL);
        printf("toctou ok=%ld refused=%ld other=%ld\n", ok, refused, other);
    } else if (!strcmp(cmd, "stall") && argc == 6) {
        /* A thread blocks in connect to a listener whose backlog is full;
         * meanwhile this thread makes N connects to another listener. */
        mkaddr(argv[2], atoi(argv[3]), &full_addr, &full_len);
        int n = atoi(argv[5]);
        pthread_t t;
        pthread_create(&t, NULL, blocked_connect, NULL);
        usleep(200000);
        int fam = mkaddr(argv[2], atoi(argv[4]), &ss, &len);
        long ok = 0, t0 = now_ms();
        for (int i = 0; i < n; i++) {
            int s = socket(fam, SOCK_STREAM, 0);
            if (connect(s, (struct sockaddr *)&ss, len) == 0) ok++;
            close(s);
        }
        printf("others ok=%ld ms=%ld blocked_done=%d\n", ok, now_ms() - t0, blocked_done);
        fflush(stdout);
        pthread_join(t, NULL);
        printf("blocked ret=%d err=%d\n", blocked_ret, blocked_err);
    } else if (!strcmp(cmd, "netpause") && argc == 5) {
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        int s = socket(fam, SOCK_STREAM, 0);
        report("connect", connect(s, (struct sockaddr *)&ss, len));
        struct sockaddr_storage us;
        socklen_t ul;
        mkaddr("127.0.0.1", atoi(argv[4]), &us, &ul);
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        report("sendto", sendto(u, "hi", 2, 0, (struct sockaddr *)&us, ul));
        char c;
        while (read(0, &c, 1) > 0) {
        }
    } else if (!strcmp(cmd, "connloop") && argc == 5) {
        int fam = mkaddr(argv[2], atoi(argv[3]), &ss, &len);
        long n = atol(argv[4]), fails = 0;
        long t0 = now_ns();
        for (long i = 0; i < n; i++) {
            int s = socket(fam, SOCK_STREAM, 0);
            if (connect(s, (struct sockaddr *)&ss, len) != 0) fails++;
            /* Reset instead of FIN: no TIME_WAIT left to slow later connects. */
            struct linger lg = {1, 0};
            setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(s);
        }
        long t1 = now_ns();
        printf("ns_per_iter=%ld fails=%ld\n", (t1 - t0) / (n ? n : 1), fails);
    } else {
        return 92;
    }
    return 0;
}
