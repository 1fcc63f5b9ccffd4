/* Tries to change the lower work directory from inside a --workdir run,
 * by every route, in a bounded loop; prints "leaks N" (lower changes
 * seen). argv[1]: the lower directory by a path the supervisor does not
 * rewrite (through `..` from the upper layer); argv[2]: rounds. The lower
 * directory holds `victim` (contents "orig\n", mode 0644) and `sub/`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char *low;
static volatile int stop;
static char p_victim[4096], p_sub[4096];
/* The lower victim's stat data at the start: a link made to it, or any
 * change of its inode, shows in its link count or ctime. */
static struct stat first;

static int lower_changed(void) {
    char buf[64] = {0};
    struct stat st;
    if (lstat(p_victim, &st) != 0 || st.st_ino != first.st_ino || st.st_nlink != first.st_nlink
        || st.st_ctim.tv_sec != first.st_ctim.tv_sec
        || st.st_ctim.tv_nsec != first.st_ctim.tv_nsec)
        return 1;
    int fd = open(p_victim, O_RDONLY);
    if (fd < 0) return 1; /* deleted or renamed */
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n != 5 || strcmp(buf, "orig\n") != 0) return 1;
    if (stat(p_victim, &st) != 0 || (st.st_mode & 07777) != 0644) return 1;
    if (st.st_mtime == 1) return 1;
    fd = open(p_victim, O_RDONLY);
    int fl = 0;
    if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &fl) == 0 && (fl & FS_NODUMP_FL)) {
        close(fd);
        return 1;
    }
    if (fd >= 0) close(fd);
    char p[4200];
    snprintf(p, sizeof p, "%s/new", low);
    if (access(p, F_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/newdir", low);
    if (access(p, F_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/moved", low);
    if (access(p, F_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/sub/new", low);
    if (access(p, F_OK) == 0) return 1;
    return 0;
}

static void try_write(const char *path, int flags) {
    int fd = open(path, flags, 0644);
    if (fd >= 0) {
        (void)!write(fd, "X", 1);
        close(fd);
    }
}

/* Swaps `sw` between a directory of the layer and a symlink to the lower
 * sub directory. */
static void *swapper(void *arg) {
    (void)arg;
    while (!stop) {
        mkdir("sw.d", 0755);
        rename("sw.d", "sw");
        rmdir("sw");
        (void)!symlink(p_sub, "sw.l");
        rename("sw.l", "sw");
        unlink("sw");
        /* the layer's `victim` moved away and back while the main
         * thread's writes copy it up */
        rename("victim", "victim.t");
        rename("victim.t", "victim");
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    low = argv[1];
    int rounds = atoi(argv[2]);
    snprintf(p_victim, sizeof p_victim, "%s/victim", low);
    snprintf(p_sub, sizeof p_sub, "%s/sub", low);
    if (lstat(p_victim, &first) != 0) return 2;
    pthread_t t;
    pthread_create(&t, NULL, swapper, NULL);
    int leaks = 0;
    char p[4200];
    for (int i = 0; i < rounds; i++) {
        /* 1. straight through `..` */
        try_write(p_victim, O_WRONLY | O_APPEND);
        try_write(p_victim, O_WRONLY | O_TRUNC);
        /* 2. a symlink in the layer pointing into the lower directory */
        unlink("lnk");
        (void)!symlink(p_victim, "lnk");
        try_write("lnk", O_WRONLY | O_APPEND);
        /* 3. a hard link in the layer to the lower file */
        unlink("hard");
        if (link(p_victim, "hard") == 0) try_write("hard", O_RDWR);
        /* 4. an O_PATH fd reopened for writing through /proc/self/fd */
        int pfd = open(p_victim, O_PATH);
        if (pfd >= 0) {
            snprintf(p, sizeof p, "/proc/self/fd/%d", pfd);
            try_write(p, O_WRONLY | O_APPEND);
            fchmod(pfd, 0600);
            close(pfd);
        }
        int rfd = open(p_victim, O_RDONLY);
        if (rfd >= 0) {
            fchmod(rfd, 0600);
            struct timespec ts[2] = {{1, 0}, {1, 0}};
            futimens(rfd, ts);
            int fl = FS_NODUMP_FL;
            ioctl(rfd, FS_IOC_SETFLAGS, &fl);
            snprintf(p, sizeof p, "/proc/self/fd/%d", rfd);
            linkat(AT_FDCWD, p, AT_FDCWD, "hard2", AT_SYMLINK_FOLLOW);
            try_write("hard2", O_WRONLY | O_APPEND);
            unlink("hard2");
            close(rfd);
        }
        /* the same through a layer file still shared with the lower one */
        int sfd = open("victim", O_RDONLY);
        if (sfd >= 0) {
            fchmod(sfd, 0600);
            struct timespec ts[2] = {{1, 0}, {1, 0}};
            futimens(sfd, ts);
            close(sfd);
        }
        /* 4b. the fd a read open of the layer's `victim` gives (its bytes
         * are the lower file's): reopened for writing through
         * /proc/self/fd, linked into the layer and written, its
         * attributes set */
        int vfd = open("victim", O_RDONLY);
        if (vfd >= 0) {
            snprintf(p, sizeof p, "/proc/self/fd/%d", vfd);
            try_write(p, O_WRONLY | O_APPEND);
            try_write(p, O_RDWR);
            unlink("hard3");
            if (linkat(vfd, "", AT_FDCWD, "hard3", AT_EMPTY_PATH) == 0)
                try_write("hard3", O_WRONLY | O_APPEND);
            unlink("hard3");
            if (linkat(AT_FDCWD, p, AT_FDCWD, "hard3", AT_SYMLINK_FOLLOW) == 0)
                try_write("hard3", O_WRONLY | O_APPEND);
            unlink("hard3");
            fsetxattr(vfd, "user.x", "1", 1, 0);
            int fl = FS_NODUMP_FL;
            ioctl(vfd, FS_IOC_SETFLAGS, &fl);
            close(vfd);
        }
        /* the same from an O_PATH open of the layer's `victim` */
        int ofd = open("victim", O_PATH);
        if (ofd >= 0) {
            snprintf(p, sizeof p, "/proc/self/fd/%d", ofd);
            try_write(p, O_RDWR);
            fchmod(ofd, 0600);
            close(ofd);
        }
        /* 5. names and metadata in the lower directory */
        chmod(p_victim, 0600);
        (void)!truncate(p_victim, 0);
        snprintf(p, sizeof p, "%s/new", low);
        try_write(p, O_WRONLY | O_CREAT);
        snprintf(p, sizeof p, "%s/newdir", low);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/moved", low);
        rename(p_victim, p);
        unlink(p_victim);
        struct timeval tv[2] = {{1, 0}, {1, 0}};
        utimes(p_victim, tv);
        /* 5b. a write of the layer's `victim` (copied up) while the
         * swapper moves it */
        try_write("victim", O_WRONLY | O_APPEND);
        /* 6. a racing component: sw is a layer directory or a symlink
         * into the lower sub directory */
        try_write("sw/new", O_WRONLY | O_CREAT);
        if (lower_changed()) leaks++;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("leaks %d\n", leaks);
    return 0;
}
