/* Escapes tried from inside a chroot view, each in a bounded loop; prints
 * one line per attack, "NAME LEAKS", where a leak is a read of the secret
 * file outside the view, or another sign of the host beyond the view (its
 * file found by name, a host directory entered, a symlink loop resolved).
 *
 * argv: SECRET_HOST_PATH SECRET_DIR_HOST_PATH INHERITED_DIRFD ROUNDS
 *       OUTSIDE_PROGRAM
 * The secret file holds "SECRET". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *secret, *secret_dir;
static int dirfd_in, rounds;

/* Whether fd reads the secret (closes it). */
static int leaks_fd(int fd) {
    char buf[16] = {0};
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n >= 6 && memcmp(buf, "SECRET", 6) == 0;
}

static int leaks_at(int dir, const char *path) {
    return leaks_fd(openat(dir, path, O_RDONLY));
}

static void report(const char *name, int n) { printf("%s %d\n", name, n); fflush(stdout); }

static void dotdot(void) {
    int n = 0;
    char path[4096];
    for (int r = 0; r < rounds; r++) {
        for (int depth = 1; depth < 12; depth++) {
            path[0] = 0;
            for (int i = 0; i < depth; i++) strcat(path, "../");
            strcat(path, "secret");
            n += leaks_at(AT_FDCWD, path);
            path[0] = 0;
            for (int i = 0; i < depth; i++) strcat(path, "../");
            strcat(path, secret + 1);
            n += leaks_at(AT_FDCWD, path);
            snprintf(path, sizeof path, "/..%s", secret);
            n += leaks_at(AT_FDCWD, path);
        }
        /* Climbing with chdir, then looking around. */
        for (int i = 0; i < 12; i++) (void)!chdir("..");
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd) && strcmp(cwd, "/") != 0) n++;
        n += leaks_at(AT_FDCWD, "secret");
        n += leaks_at(AT_FDCWD, secret + 1); /* relative to a "real" / */
        (void)!chdir("/tmp");
    }
    report("dotdot", n);
}

static void absolute_symlinks(void) {
    int n = 0;
    char rel[4096] = "";
    for (int i = 0; i < 12; i++) strcat(rel, "../");
    strcat(rel, secret + 1);
    for (int r = 0; r < rounds; r++) {
        unlink("/tmp/abs");
        unlink("/tmp/rel");
        unlink("/tmp/dirlink");
        if (symlink(secret, "/tmp/abs") == 0) n += leaks_at(AT_FDCWD, "/tmp/abs");
        if (symlink(rel, "/tmp/rel") == 0) n += leaks_at(AT_FDCWD, "/tmp/rel");
        if (symlink(secret_dir, "/tmp/dirlink") == 0) {
            n += leaks_at(AT_FDCWD, "/tmp/dirlink/secret");
            if (chdir("/tmp/dirlink") == 0) {
                n += leaks_at(AT_FDCWD, "secret");
                (void)!chdir("/tmp");
            }
        }
        struct stat st;
        if (stat(secret, &st) == 0) n++;
        if (access(secret, R_OK) == 0) n++;
    }
    report("absolute_symlinks", n);
}

static void symlink_loops(void) {
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        unlink("/tmp/loop1");
        unlink("/tmp/loop2");
        unlink("/tmp/self");
        (void)!symlink("loop2", "/tmp/loop1");
        (void)!symlink("/tmp/loop1", "/tmp/loop2");
        (void)!symlink("self/x", "/tmp/self");
        int fd = open("/tmp/loop1", O_RDONLY);
        if (fd >= 0 || errno != ELOOP) n++;
        if (fd >= 0) close(fd);
        fd = open("/tmp/self", O_RDONLY);
        if (fd >= 0 || errno != ELOOP) n++;
        if (fd >= 0) close(fd);
        struct stat st;
        if (stat("/tmp/loop2", &st) == 0 || errno != ELOOP) n++;
    }
    report("symlink_loops", n);
}

static void inherited_fd(void) {
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        n += leaks_at(dirfd_in, "secret");
        n += leaks_at(dirfd_in, "./secret");
        n += leaks_at(dirfd_in, "../secret");
        struct stat st;
        if (fstatat(dirfd_in, "secret", &st, 0) == 0) n++;
        if (fchdir(dirfd_in) == 0) {
            n += leaks_at(AT_FDCWD, "secret");
            (void)!chdir("/tmp");
        }
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d/secret", dirfd_in);
        n += leaks_at(AT_FDCWD, p);
        snprintf(p, sizeof p, "/dev/fd/%d/secret", dirfd_in);
        n += leaks_at(AT_FDCWD, p);
    }
    report("inherited_fd", n);
}

static void proc_self_root(void) {
    int n = 0;
    char p[4096], link[4096];
    for (int r = 0; r < rounds; r++) {
        snprintf(p, sizeof p, "/proc/self/root%s", secret);
        n += leaks_at(AT_FDCWD, p);
        snprintf(p, sizeof p, "/proc/%d/root%s", getpid(), secret);
        n += leaks_at(AT_FDCWD, p);
        snprintf(p, sizeof p, "/proc/1/root%s", secret);
        n += leaks_at(AT_FDCWD, p);
        snprintf(p, sizeof p, "/proc/self/cwd/../../../..%s", secret);
        n += leaks_at(AT_FDCWD, p);
        ssize_t k = readlink("/proc/self/root", link, sizeof link - 1);
        if (k != 1 || link[0] != '/') n++;
        k = readlink("/proc/self/cwd", link, sizeof link - 1);
        if (k < 0 || (link[k] = 0, strcmp(link, "/tmp") != 0)) n++;
    }
    report("proc_self_root", n);
}

static void openat2_without_root(void) {
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        struct open_how how = {.flags = O_RDONLY};
        n += leaks_fd(syscall(SYS_openat2, AT_FDCWD, secret, &how, sizeof how));
        n += leaks_fd(syscall(SYS_openat2, dirfd_in, "secret", &how, sizeof how));
        how.resolve = RESOLVE_BENEATH;
        n += leaks_fd(syscall(SYS_openat2, dirfd_in, "secret", &how, sizeof how));
        how.resolve = RESOLVE_IN_ROOT;
        int root = open("/", O_RDONLY | O_DIRECTORY);
        char p[4096];
        snprintf(p, sizeof p, "../../../../..%s", secret);
        n += leaks_fd(syscall(SYS_openat2, root, p, &how, sizeof how));
        close(root);
    }
    report("openat2_without_root", n);
}

static void hard_links(void) {
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        unlink("/tmp/hl1");
        unlink("/tmp/hl2");
        unlink("/tmp/hl3");
        if (link(secret, "/tmp/hl1") == 0) n += 1 + leaks_at(AT_FDCWD, "/tmp/hl1");
        if (linkat(dirfd_in, "secret", AT_FDCWD, "/tmp/hl2", 0) == 0)
            n += 1 + leaks_at(AT_FDCWD, "/tmp/hl2");
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d/secret", dirfd_in);
        if (linkat(AT_FDCWD, p, AT_FDCWD, "/tmp/hl3", AT_SYMLINK_FOLLOW) == 0)
            n += 1 + leaks_at(AT_FDCWD, "/tmp/hl3");
        /* A link of a read-only mount's file into the writable root. */
        if (link("/ro/file", "/tmp/hl4") == 0) {
            n++;
            unlink("/tmp/hl4");
        }
    }
    report("hard_links", n);
}

static volatile int stop;

static void *swapper(void *arg) {
    (void)arg;
    while (!stop) {
        /* /tmp/race/d is a directory, then a symlink to the host's
         * secret directory, then a directory again. */
        rename("/tmp/race/d", "/tmp/race/real");
        unlink("/tmp/race/d");
        (void)!symlink(secret_dir, "/tmp/race/d");
        rename("/tmp/race/real", "/tmp/race/d2");
        rename("/tmp/race/d", "/tmp/race/link");
        rename("/tmp/race/d2", "/tmp/race/d");
        rename("/tmp/race/link", "/tmp/race/l2");
        unlink("/tmp/race/l2");
        /* .. of a directory moved away mid-walk */
        rename("/tmp/race/d/sub", "/tmp/race/moved");
        rename("/tmp/race/moved", "/tmp/race/d/sub");
    }
    return NULL;
}

static void rename_race(void) {
    int n = 0;
    (void)!mkdir("/tmp/race", 0755);
    (void)!mkdir("/tmp/race/d", 0755);
    (void)!mkdir("/tmp/race/d/sub", 0755);
    pthread_t t;
    stop = 0;
    pthread_create(&t, NULL, swapper, NULL);
    char p[4096];
    snprintf(p, sizeof p, "/tmp/race/d/sub/../../../../../../..%s", secret);
    for (int r = 0; r < rounds * 50; r++) {
        n += leaks_at(AT_FDCWD, "/tmp/race/d/secret");
        n += leaks_at(AT_FDCWD, p);
        int d = open("/tmp/race/d/sub", O_RDONLY | O_DIRECTORY);
        if (d >= 0) {
            n += leaks_at(d, "../../../../../../../../secret");
            char q[4096];
            snprintf(q, sizeof q, "../../../../../../..%s", secret);
            n += leaks_at(d, q);
            close(d);
        }
    }
    stop = 1;
    pthread_join(t, NULL);
    report("rename_race", n);
}

static void exec_outside(const char *prog) {
    int n = 0;
    for (int r = 0; r < rounds; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = {(char *)prog, NULL};
            execv(prog, argv);
            _exit(111);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 111) n++;
    }
    report("exec_outside", n);
}

/* A unix socket bound at the secret directory's host path: the view has
 * no such directory, so a bind that succeeds made a file on the host. */
static void unix_sockets(void) {
    int n = 0;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/made.sock", secret_dir);
    for (int r = 0; r < rounds; r++) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0) continue;
        if (bind(s, (struct sockaddr *)&a, sizeof a) == 0) {
            n++;
            unlink(a.sun_path);
        }
        close(s);
    }
    report("unix_sockets", n);
}

/* The host's mount table read by `listmount` (Linux 6.8): mount points
 * the view never shows (refused with ENOSYS, so that a program falls
 * back to /proc/self/mountinfo). */
static void mount_table(void) {
    struct {
        unsigned int size, spare;
        unsigned long long mnt_id, param;
    } req = {24, 0, ~0ULL, 0};
    unsigned long long ids[256];
    int n = 0;
    for (int r = 0; r < rounds; r++)
        if (syscall(458, &req, ids, 256, 0) > 0) n++;
    report("mount_table", n);
}

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    secret = argv[1];
    secret_dir = argv[2];
    dirfd_in = atoi(argv[3]);
    rounds = atoi(argv[4]);
    if (chdir("/tmp") != 0) {
        perror("chdir /tmp");
        return 3;
    }
    dotdot();
    absolute_symlinks();
    symlink_loops();
    inherited_fd();
    proc_self_root();
    openat2_without_root();
    hard_links();
    rename_race();
    exec_outside(argv[5]);
    unix_sockets();
    mount_table();
    return 0;
}
