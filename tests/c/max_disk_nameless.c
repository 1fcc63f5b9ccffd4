/* Files of the copy-on-write layer without a name, under `--max-disk`:
 * argv[1] names the mode, argv[2] the files, argv[3] the MiB written into
 * each. Works in the current directory (the work directory). Prints
 * "held N" (the KiB the program still holds at the end, in files it keeps
 * alive or named: what the layer holds for it) and "enospc M" (writes
 * refused).
 *   scm:     a file written, its fd sent in flight over a unix socket never
 *            read (SCM_RIGHTS), closed and unlinked;
 *   opath:   the same with an O_PATH fd of the file in flight;
 *   links:   a file with a second name whose O_PATH fd (by that name) is
 *            parked in flight, both names removed;
 *   tmpfile: an O_TMPFILE written and parked in flight (one whose writes
 *            were refused is closed); at the end all are received and
 *            linked back into the directory ("kept<i>",
 *            AT_EMPTY_PATH for even files, /proc/self/fd for odd ones);
 *            held counts the files linked;
 *   temp:    an ordinary program: a file written, unlinked, closed (and
 *            every other one an O_TMPFILE written and closed), then an
 *            empty file "k<i>" made (it takes the inode number just freed,
 *            as another process on the file system may: the next file's
 *            is new); held 0; prints "ok" if every write succeeded;
 *   dirs:    a directory grown by argv[3] names of 200 bytes, emptied, its
 *            fd parked in flight, removed (argv[2] rounds); held counts
 *            the blocks of the directories parked;
 *   rmdirs:  argv[2] directories "d<i>" of the lower tree removed, then
 *            one file written 64 KiB at a time until refused (argv[3] MiB
 *            at most); held counts it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char buf[1 << 20];
static int enospc;

/* Writes `mb` MiB into `fd`: the bytes written. */
static long fill(int fd, long mb) {
    long w = 0;
    for (long j = 0; j < mb; j++) {
        ssize_t k = write(fd, buf, sizeof buf);
        if (k <= 0) {
            if (errno == ENOSPC)
                enospc++;
            break;
        }
        w += k;
    }
    return w;
}

/* A removal (of one of the empty files made at the start), which tells
 * the cap that space may have been freed (a close tells nothing): the
 * next refused charge counts again at once. */
static int nudges;
static void nudge(void) {
    char n[64];
    snprintf(n, sizeof n, "n%d", nudges++);
    unlink(n);
}

/* An empty file "k<i>", which takes the inode number a file just freed
 * (ext4 gives the lowest free one). */
static void take_number(int i) {
    char n[64];
    snprintf(n, sizeof n, "k%d", i);
    close(open(n, O_WRONLY | O_CREAT, 0644));
}

static void park(int sock, int fd) {
    char cb[CMSG_SPACE(sizeof(int))];
    struct iovec io = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {0};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = cb;
    m.msg_controllen = sizeof cb;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    if (sendmsg(sock, &m, 0) < 0) {
        perror("sendmsg");
        exit(2);
    }
}

static int unpark(int sock) {
    char cb[CMSG_SPACE(sizeof(int))];
    char x;
    struct iovec io = {.iov_base = &x, .iov_len = 1};
    struct msghdr m = {0};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = cb;
    m.msg_controllen = sizeof cb;
    if (recvmsg(sock, &m, 0) < 0)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 4)
        return 2;
    const char *mode = argv[1];
    int k = atoi(argv[2]);
    long mb = atol(argv[3]);
    memset(buf, 7, sizeof buf);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv))
        return 2;
    long held = 0, sizes[256] = {0};
    int all = 1, parked = 0;
    if (k > 256)
        k = 256;
    for (int i = 0; i <= k; i++) {
        char n[64];
        snprintf(n, sizeof n, "n%d", i);
        close(open(n, O_WRONLY | O_CREAT, 0644));
    }
    for (int i = 0; i < k && strcmp(mode, "rmdirs") && strcmp(mode, "dirs"); i++) {
        char p[64], q[64];
        snprintf(p, sizeof p, "f%d", i);
        snprintf(q, sizeof q, "g%d", i);
        if (!strcmp(mode, "tmpfile") || (!strcmp(mode, "temp") && i % 2)) {
            int fd = open(".", O_TMPFILE | O_RDWR, 0644);
            if (fd < 0) {
                perror("O_TMPFILE");
                return 2;
            }
            long w = fill(fd, mb);
            all &= w == mb << 20;
            if (!strcmp(mode, "tmpfile")) {
                /* One cut short is dropped (room for the names). */
                if (w == mb << 20) {
                    park(sv[0], fd);
                    sizes[parked++] = w;
                }
                nudge();
            }
            close(fd);
            if (!strcmp(mode, "temp"))
                take_number(i);
            continue;
        }
        int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            if (errno == ENOSPC)
                enospc++;
            all = 0;
            continue;
        }
        if (!strcmp(mode, "links") && link(p, q)) {
            perror("link");
            return 2;
        }
        long w = fill(fd, mb);
        all &= w == mb << 20;
        if (!strcmp(mode, "scm")) {
            park(sv[0], fd);
            held += w;
        } else if (!strcmp(mode, "opath")) {
            int o = open(p, O_PATH);
            park(sv[0], o);
            close(o);
            held += w;
        } else if (!strcmp(mode, "links")) {
            int o = open(q, O_PATH);
            unlink(q);
            park(sv[0], o);
            close(o);
            held += w;
        }
        close(fd);
        unlink(p);
        if (!strcmp(mode, "temp"))
            take_number(i);
    }
    if (!strcmp(mode, "tmpfile")) {
        nudge();
        for (int i = 0; i < parked; i++) {
            int fd = unpark(sv[1]);
            if (fd < 0)
                break;
            char p[64], q[64];
            snprintf(p, sizeof p, "kept%d", i);
            snprintf(q, sizeof q, "/proc/self/fd/%d", fd);
            int r = i % 2 ? linkat(AT_FDCWD, q, AT_FDCWD, p, AT_SYMLINK_FOLLOW)
                          : linkat(fd, "", AT_FDCWD, p, AT_EMPTY_PATH);
            if (r == 0)
                held += sizes[i];
            else if (errno == ENOSPC)
                enospc++;
            close(fd);
        }
    }
    if (!strcmp(mode, "dirs")) {
        long n = atol(argv[3]);
        for (int r = 0; r < k; r++) {
            char d[64], p[300];
            snprintf(d, sizeof d, "D%d", r);
            if (mkdir(d, 0755)) {
                if (errno == ENOSPC)
                    enospc++;
                continue;
            }
            long made = 0;
            for (; made < n; made++) {
                snprintf(p, sizeof p, "%s/%0200ld", d, made);
                int fd = open(p, O_WRONLY | O_CREAT, 0644);
                if (fd < 0) {
                    if (errno == ENOSPC)
                        enospc++;
                    break;
                }
                close(fd);
            }
            for (long j = 0; j < made; j++) {
                snprintf(p, sizeof p, "%s/%0200ld", d, j);
                unlink(p);
            }
            int fd = open(d, O_RDONLY | O_DIRECTORY);
            struct stat st;
            if (fd < 0 || fstat(fd, &st))
                return 2;
            park(sv[0], fd);
            close(fd);
            if (rmdir(d))
                return 2;
            held += st.st_blocks * 512;
            nudge();
        }
    }
    if (!strcmp(mode, "rmdirs")) {
        for (int i = 0; i < k; i++) {
            char d[64];
            snprintf(d, sizeof d, "d%d", i);
            if (rmdir(d)) {
                perror("rmdir");
                return 2;
            }
        }
        int fd = open("big", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        for (long j = 0; fd >= 0 && j < mb * 16; j++) {
            ssize_t w = write(fd, buf, 64 << 10);
            if (w <= 0) {
                if (errno == ENOSPC)
                    enospc++;
                break;
            }
            held += w;
        }
    }
    if (!strcmp(mode, "temp"))
        printf("%s\n", all ? "ok" : "refused");
    printf("held %ld enospc %d\n", held >> 10, enospc);
    return 0;
}
