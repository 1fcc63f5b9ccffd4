/* Prints what the program sees of the host: one section per argument.
 *   host   gethostname, uname, /etc/hostname and /proc/sys/kernel/hostname
 *          under several spellings (a symlink, .., /proc/self/root, a
 *          dirfd, openat2); "real:N" counts spellings that showed ARGV[2..]
 *   cpus   sched_getaffinity, sysconf, /proc/cpuinfo, /sys/.../online
 *   random getrandom and /dev/urandom bytes, in hex
 *   dir D  the names of D in getdents64 order
 *   time   time(), gettimeofday, clock_gettime(REALTIME) seconds
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <linux/openat2.h>

static void read_file_at(int dirfd, const char *path, char *out, size_t n) {
    out[0] = 0;
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0) { snprintf(out, n, "<open failed>"); return; }
    ssize_t r = read(fd, out, n - 1);
    out[r > 0 ? r : 0] = 0;
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
    close(fd);
}

static void host(const char *real) {
    char name[256] = {0}, buf[256];
    struct utsname u;
    gethostname(name, sizeof name);
    uname(&u);
    printf("gethostname %s\nuname %s\n", name, u.nodename);
    char tmp[] = "/tmp/unotify-probe-XXXXXX";
    if (!mkdtemp(tmp)) { perror("mkdtemp"); exit(1); }
    char link[300];
    snprintf(link, sizeof link, "%s/h", tmp);
    symlink("/etc/hostname", link);
    const char *spellings[] = {
        "/etc/hostname", "/proc/sys/kernel/hostname", link,
        "/etc/../etc/hostname", "/proc/self/root/etc/hostname",
        "/proc/thread-self/root/proc/sys/kernel/hostname",
        "//etc//hostname", "/proc/self/cwd/../../etc/hostname",
    };
    int real_seen = 0;
    chdir("/usr/bin");
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++) {
        read_file_at(AT_FDCWD, spellings[i], buf, sizeof buf);
        printf("file %s\n", buf);
        if (real && strcmp(buf, real) == 0) real_seen++;
    }
    int etc = open("/etc", O_RDONLY | O_DIRECTORY);
    read_file_at(etc, "hostname", buf, sizeof buf);
    printf("dirfd %s\n", buf);
    if (real && strcmp(buf, real) == 0) real_seen++;
    struct open_how how = { .flags = O_RDONLY };
    int fd = syscall(SYS_openat2, AT_FDCWD, "/etc/hostname", &how, sizeof how);
    ssize_t r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
    buf[r > 0 ? r : 0] = 0;
    if (strchr(buf, '\n')) *strchr(buf, '\n') = 0;
    printf("openat2 %s\n", buf);
    if (real && strcmp(buf, real) == 0) real_seen++;
    unlink(link);
    rmdir(tmp);
    if (real) printf("real:%d\n", real_seen);
}

static void cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    printf("affinity %d\n", CPU_COUNT(&set));
    printf("onln %ld conf %ld\n", sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF));
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "processor", 9) == 0) n++;
    if (f) fclose(f);
    printf("cpuinfo %d\n", n);
    char buf[64];
    read_file_at(AT_FDCWD, "/sys/devices/system/cpu/online", buf, sizeof buf);
    printf("online %s\n", buf);
}

static void hex(const char *what, const unsigned char *b, size_t n) {
    printf("%s ", what);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

static void random_bytes(void) {
    unsigned char b[16];
    memset(b, 0, sizeof b);
    getrandom(b, sizeof b, 0);
    hex("getrandom", b, sizeof b);
    const char *devs[] = { "/dev/urandom", "/dev/random" };
    for (int i = 0; i < 2; i++) {
        memset(b, 0, sizeof b);
        int fd = open(devs[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, b, sizeof b) != sizeof b) printf("%s failed\n", devs[i]);
        if (fd >= 0) close(fd);
        hex(devs[i], b, sizeof b);
    }
    /* A big read, in part or whole: the length and a digest. */
    static unsigned char big[3 << 20];
    ssize_t n = getrandom(big, sizeof big, 0);
    unsigned long sum = 0;
    for (ssize_t i = 0; i < n; i++) sum = sum * 31 + big[i];
    printf("big %s %lx\n", n > 0 ? "ok" : "failed", sum);
}

static void dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) { printf("opendir failed\n"); return; }
    struct dirent *e;
    long second = -1;
    int i = 0;
    printf("dir");
    while ((e = readdir(d))) {
        printf(" %s", e->d_name);
        if (i++ == 1) second = telldir(d);
    }
    printf("\n");
    /* seekdir to a telldir position, then rewinddir: the same order. */
    seekdir(d, second);
    e = readdir(d);
    printf("after-second %s\n", e ? e->d_name : "-");
    rewinddir(d);
    e = readdir(d);
    printf("first %s\n", e ? e->d_name : "-");
    closedir(d);
}

/* The wall clock every way, in minutes (two runs print the same). */
static void clocks(void) {
    struct timespec ts;
    struct timeval tv;
    clock_gettime(CLOCK_REALTIME, &ts);
    gettimeofday(&tv, NULL);
    printf("minutes %ld %ld %ld\n", (long)ts.tv_sec / 60, (long)tv.tv_sec / 60, (long)time(NULL) / 60);
}

/* N direct clock_gettime(CLOCK_REALTIME) calls (the vDSO's, in glibc):
 * how many saw a time after 2020 (the real clock, here). */
static void vdso_loop(int n) {
    int real = 0;
    for (int i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (ts.tv_sec > 1577836800) real++;
    }
    printf("real-reads %d of %d\n", real, n);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "host") == 0) host(i + 1 < argc && argv[i + 1][0] != '-' ? argv[i + 1] : NULL);
        else if (strcmp(argv[i], "cpus") == 0) cpus();
        else if (strcmp(argv[i], "random") == 0) random_bytes();
        else if (strcmp(argv[i], "dir") == 0 && i + 1 < argc) dir(argv[++i]);
        else if (strcmp(argv[i], "time") == 0) clocks();
        else if (strcmp(argv[i], "vdso-loop") == 0 && i + 1 < argc) vdso_loop(atoi(argv[++i]));
    }
    return 0;
}
