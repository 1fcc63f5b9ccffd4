/* Tries, N times each, to read or change files outside the allow lists,
 * and prints one "name count" line per attempt: how many got through.
 *
 *   landlock_attack read  ALLOWED OUTSIDE OUTSIDE2 N
 *   landlock_attack write WRITABLE READONLY N
 *
 * read: ALLOWED is readable; OUTSIDE/secret.txt is not, nor is OUTSIDE2
 * (which holds "hl", a hard link to the secret made before the sandbox).
 * ALLOWED holds "file.txt" and "sym", a symlink to the secret.
 * write: WRITABLE is writable; READONLY is only readable and holds
 * "file.txt". "inside_*" lines count what must succeed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

static char buf[4096];

static const char *p(const char *a, const char *b) {
    static char out[8][4096];
    static int i;
    i = (i + 1) % 8;
    snprintf(out[i], sizeof out[i], "%s/%s", a, b);
    return out[i];
}

/* Whether opening `path` with `flags` worked (and reading it, for reads). */
static int opened(const char *path, int flags) {
    int fd = open(path, flags, 0644);
    if (fd < 0)
        return 0;
    if ((flags & O_ACCMODE) == O_RDONLY && read(fd, buf, sizeof buf) < 0) {
        close(fd);
        return 0;
    }
    close(fd);
    return 1;
}

static int read_attack(const char *allowed, const char *outside, const char *outside2, int n) {
    long dotdot = 0, sym = 0, hard = 0, root = 0, dirfd = 0, opath = 0, leaked = 0,
         linked = 0, inside = 0, hard_inside = 0;
    char path[4096];
    for (int i = 0; i < n; i++) {
        inside += opened(p(allowed, "file.txt"), O_RDONLY);
        /* ALLOWED/../OUTSIDE/secret.txt */
        snprintf(path, sizeof path, "%s/../%s/secret.txt", allowed, strrchr(outside, '/') + 1);
        dotdot += opened(path, O_RDONLY);
        sym += opened(p(allowed, "sym"), O_RDONLY);
        hard += opened(p(outside2, "hl"), O_RDONLY);
        hard_inside += opened(p(allowed, "hl_inside"), O_RDONLY);
        snprintf(path, sizeof path, "/proc/self/root%s/secret.txt", outside);
        root += opened(path, O_RDONLY);
        /* Any directory fd this process was started with. */
        for (int fd = 3; fd < 256; fd++) {
            struct stat st;
            if (fstat(fd, &st) != 0)
                continue;
            leaked++;
            int f = openat(fd, "secret.txt", O_RDONLY);
            if (f >= 0) {
                dirfd++;
                close(f);
            }
        }
        /* O_PATH, then a reopen through /proc/self/fd. */
        int o = open(p(outside, "secret.txt"), O_PATH);
        if (o >= 0) {
            snprintf(path, sizeof path, "/proc/self/fd/%d", o);
            opath += opened(path, O_RDONLY);
            close(o);
        }
        /* A hard link made now, into the allowed tree. */
        if (link(p(outside, "secret.txt"), p(allowed, "stolen")) == 0) {
            linked++;
            unlink(p(allowed, "stolen"));
        }
    }
    printf("inside_read %ld\n", inside);
    printf("dotdot %ld\n", dotdot);
    printf("symlink %ld\n", sym);
    printf("hardlink_outside %ld\n", hard);
    printf("hardlink_inside %ld\n", hard_inside);
    printf("proc_self_root %ld\n", root);
    printf("inherited_fds %ld\n", leaked);
    printf("dirfd %ld\n", dirfd);
    printf("opath_reopen %ld\n", opath);
    printf("link_in %ld\n", linked);
    return 0;
}

static int write_attack(const char *w, const char *ro, int n) {
    long create = 0, trunc_ = 0, otrunc = 0, wropen = 0, ren = 0, ren_out = 0, lnk = 0,
         unl = 0, mkd = 0, chm = 0, chw = 0, utim = 0, xattr = 0, syml = 0, inside = 0;
    char f[4096];
    snprintf(f, sizeof f, "%s/file.txt", ro);
    for (int i = 0; i < n; i++) {
        /* Inside the write path: everything works. */
        int ok = opened(p(w, "a"), O_WRONLY | O_CREAT | O_TRUNC) &&
                 truncate(p(w, "a"), 0) == 0 && rename(p(w, "a"), p(w, "b")) == 0 &&
                 link(p(w, "b"), p(w, "c")) == 0 && chmod(p(w, "c"), 0600) == 0 &&
                 unlink(p(w, "b")) == 0 && unlink(p(w, "c")) == 0 &&
                 mkdir(p(w, "d"), 0755) == 0 && rmdir(p(w, "d")) == 0;
        inside += ok;
        if (opened(p(ro, "new"), O_WRONLY | O_CREAT)) {
            create++;
            unlink(p(ro, "new"));
        }
        trunc_ += truncate(f, 1) == 0;
        otrunc += opened(f, O_RDONLY | O_TRUNC) && access(f, F_OK) == 0;
        wropen += opened(f, O_WRONLY);
        if (rename(f, p(ro, "renamed")) == 0) {
            ren++;
            rename(p(ro, "renamed"), f);
        }
        if (rename(f, p(w, "moved")) == 0) {
            ren_out++;
            rename(p(w, "moved"), f);
        }
        if (link(f, p(ro, "ln")) == 0) {
            lnk++;
            unlink(p(ro, "ln"));
        }
        if (unlink(p(ro, "victim")) == 0) {
            unl++;
            close(open(p(ro, "victim"), O_WRONLY | O_CREAT, 0644));
        }
        if (mkdir(p(ro, "dir"), 0755) == 0) {
            mkd++;
            rmdir(p(ro, "dir"));
        }
        chm += chmod(f, 0600 + (i & 1)) == 0;
        chw += chown(f, 1, 1) == 0;
        utim += utimes(f, NULL) == 0;
        xattr += setxattr(f, "user.unotify", "x", 1, 0) == 0;
        if (symlink("/etc/passwd", p(ro, "sl")) == 0) {
            syml++;
            unlink(p(ro, "sl"));
        }
    }
    printf("inside_write %ld\n", inside);
    printf("create %ld\n", create);
    printf("truncate %ld\n", trunc_);
    printf("open_trunc %ld\n", otrunc);
    printf("open_write %ld\n", wropen);
    printf("rename %ld\n", ren);
    printf("rename_out %ld\n", ren_out);
    printf("link %ld\n", lnk);
    printf("unlink %ld\n", unl);
    printf("mkdir %ld\n", mkd);
    printf("chmod %ld\n", chm);
    printf("chown %ld\n", chw);
    printf("utimes %ld\n", utim);
    printf("setxattr %ld\n", xattr);
    printf("symlink %ld\n", syml);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "read") == 0)
        return read_attack(argv[2], argv[3], argv[4], atoi(argv[5]));
    if (argc == 5 && strcmp(argv[1], "write") == 0)
        return write_attack(argv[2], argv[3], atoi(argv[4]));
    fprintf(stderr, "usage: landlock_attack read ALLOWED OUTSIDE OUTSIDE2 N | write W RO N\n");
    return 2;
}
