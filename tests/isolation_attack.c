/* Attacks, from inside the sandbox, a process outside it.
 *
 *   isolation_attack TARGET ABSTRACT [grandchild]
 *
 * TARGET: a pid, or "ppid" for the parent of this program. ABSTRACT: the
 * name of an abstract unix socket listening outside the sandbox ("-": none).
 * With "grandchild", the attacks run in a double-forked process in a new
 * session; this one waits until it is done.
 *
 * Prints one line per attack, "NAME N", N being how many of its bounded
 * tries got through, then "done". sanity_pidfd_open says the target is
 * alive and visible (it must not be 0). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/keyctl.h>
#include <linux/userfaultfd.h>

#define TRIES 20
#define PTRACE_TRIES 3

static long sys(long nr, long a, long b, long c, long d) {
    long r = syscall(nr, a, b, c, d);
    return r == -1 ? -errno : r;
}

static void attack(pid_t target, const char *abstract) {
    char line[4096];
    int len = 0;
#define REPORT(name, n) len += snprintf(line + len, sizeof line - len, "%s %d\n", name, n)

    int sane = 0, getfd = 0;
    for (int i = 0; i < 3; i++) {
        long pidfd = sys(SYS_pidfd_open, target, 0, 0, 0);
        if (pidfd < 0)
            continue;
        sane++;
        for (int fd = 0; fd < 64; fd++) {
            long got = sys(SYS_pidfd_getfd, pidfd, fd, 0, 0);
            if (got >= 0) {
                getfd++;
                close(got);
            }
        }
        close(pidfd);
    }
    REPORT("sanity_pidfd_open", sane);
    REPORT("pidfd_getfd", getfd);

    int k0 = 0, kstop = 0, kcont = 0, psig = 0;
    for (int i = 0; i < TRIES; i++) {
        if (kill(target, 0) == 0)
            k0++;
        if (kill(target, SIGSTOP) == 0)
            kstop++;
        if (kill(target, SIGCONT) == 0)
            kcont++;
        long pidfd = sys(SYS_pidfd_open, target, 0, 0, 0);
        if (pidfd >= 0) {
            if (sys(SYS_pidfd_send_signal, pidfd, 0, 0, 0) == 0)
                psig++;
            close(pidfd);
        }
    }
    REPORT("kill_0", k0);
    REPORT("kill_SIGSTOP", kstop);
    REPORT("kill_SIGCONT", kcont);
    REPORT("pidfd_send_signal", psig);

    int seize = 0, attach = 0;
    for (int i = 0; i < PTRACE_TRIES; i++) {
        if (ptrace(PTRACE_SEIZE, target, 0, 0) == 0) {
            int st;
            seize++;
            ptrace(PTRACE_INTERRUPT, target, 0, 0);
            waitpid(target, &st, __WALL);
            ptrace(PTRACE_DETACH, target, 0, 0);
        }
        if (ptrace(PTRACE_ATTACH, target, 0, 0) == 0) {
            int st;
            attach++;
            waitpid(target, &st, __WALL);
            ptrace(PTRACE_DETACH, target, 0, 0);
        }
    }
    REPORT("ptrace_seize", seize);
    REPORT("ptrace_attach", attach);

    /* Page 0x1000 is never mapped (mmap_min_addr): an access that passes
     * the permission check fails with EFAULT, so nothing is really read or
     * written, yet it counts as reached. */
    int vmr = 0, vmw = 0;
    char buf[16] = {0};
    for (int i = 0; i < TRIES; i++) {
        struct iovec local = {buf, sizeof buf}, remote = {(void *)0x1000, sizeof buf};
        long r = syscall(SYS_process_vm_readv, target, &local, 1, &remote, 1, 0);
        if (r >= 0 || errno == EFAULT)
            vmr++;
        r = syscall(SYS_process_vm_writev, target, &local, 1, &remote, 1, 0);
        if (r >= 0 || errno == EFAULT)
            vmw++;
    }
    REPORT("process_vm_readv", vmr);
    REPORT("process_vm_writev", vmw);

    int mem = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)target);
    for (int i = 0; i < TRIES; i++) {
        int fd = open(path, O_RDWR);
        if (fd >= 0) {
            mem++;
            close(fd);
        }
    }
    REPORT("proc_mem_rdwr", mem);

    int conn = 0;
    if (strcmp(abstract, "-") != 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t n = strlen(abstract);
        memcpy(sa.sun_path + 1, abstract, n);
        socklen_t salen = offsetof(struct sockaddr_un, sun_path) + 1 + n;
        for (int i = 0; i < TRIES; i++) {
            int s = socket(AF_UNIX, SOCK_STREAM, 0);
            if (s >= 0 && connect(s, (struct sockaddr *)&sa, salen) == 0)
                conn++;
            if (s >= 0)
                close(s);
        }
    }
    REPORT("abstract_connect", conn);

    /* Another process's limits: read them (allowed), then set them to the
     * values they have (harmless if it gets through). */
    int plim = 0;
    for (int i = 0; i < TRIES; i++) {
        struct { unsigned long long cur, max; } lim;
        if (sys(SYS_prlimit64, target, RLIMIT_CORE, 0, (long)&lim) == 0
            && sys(SYS_prlimit64, target, RLIMIT_CORE, (long)&lim, 0) == 0)
            plim++;
    }
    REPORT("prlimit_set", plim);

    /* Typing into a terminal: a process of a session of its own, on a
     * pseudo-terminal that became its controlling terminal (the kernel
     * then allows TIOCSTI without privileges where the legacy sysctl is
     * on). */
    int tty = 0, sti = 0;
    for (int i = 0; i < 3; i++) {
        pid_t k = fork();
        if (k == 0) {
            setsid();
            int m = posix_openpt(O_RDWR | O_NOCTTY);
            if (m < 0 || grantpt(m) || unlockpt(m))
                _exit(2);
            int s = open(ptsname(m), O_RDWR);
            if (s < 0)
                _exit(2);
            char c = 'x';
            _exit(ioctl(s, TIOCSTI, &c) == 0 ? 0 : 1);
        }
        int st;
        if (k > 0 && waitpid(k, &st, 0) == k && WIFEXITED(st) && WEXITSTATUS(st) != 2) {
            tty++;
            if (WEXITSTATUS(st) == 0)
                sti++;
        }
    }
    REPORT("sanity_tty", tty);
    REPORT("tiocsti", sti);

    /* The kernel's keyrings are not per sandbox: the user keyring is the
     * host user's (its keys readable and writable from here), and a key
     * added to it outlives the sandbox. Each try adds a key (invalidated
     * at once if it got in) and looks up the user keyring. */
    int keys = 0;
    for (int i = 0; i < TRIES; i++) {
        char desc[64];
        snprintf(desc, sizeof desc, "unotify-isolation-%d-%d", getpid(), i);
        long k = syscall(SYS_add_key, "user", desc, "x", 1, KEY_SPEC_USER_KEYRING);
        if (k > 0) {
            keys++;
            sys(SYS_keyctl, KEYCTL_INVALIDATE, k, 0, 0);
        }
        if (sys(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0, 0) > 0)
            keys++;
        if (sys(SYS_request_key, (long)"user", (long)desc, 0, KEY_SPEC_USER_KEYRING) > 0)
            keys++;
    }
    REPORT("keyring", keys);

    /* A userfaultfd lets the program leave a page of its memory unfilled
     * for as long as it likes: a pointer argument placed there stalls the
     * supervisor's read of it, and enough of them stall every worker (each
     * later trapped call then goes unanswered). Each try asks for one by
     * the system call and through /dev/userfaultfd. */
    int uffd = 0;
    for (int i = 0; i < TRIES; i++) {
        long u = syscall(SYS_userfaultfd, O_CLOEXEC);
        if (u >= 0) {
            uffd++;
            close((int)u);
        }
        int d = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (d >= 0) {
            long n = ioctl(d, USERFAULTFD_IOC_NEW, O_CLOEXEC);
            if (n >= 0) {
                uffd++;
                close((int)n);
            }
            close(d);
        }
    }
    REPORT("userfaultfd", uffd);

    /* Files through which a write changes the host (opened for writing,
     * never written): its sysctls (a pipe in kernel.core_pattern runs a
     * program as root outside the sandbox at the next crash), sysfs, and
     * the target's own /proc files. */
    int control = 0;
    char oom[64], refs[64];
    snprintf(oom, sizeof oom, "/proc/%d/oom_score_adj", (int)target);
    snprintf(refs, sizeof refs, "/proc/%d/clear_refs", (int)target);
    const char *files[] = {
        "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
        "/proc/sys/vm/drop_caches", "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/uevent_helper", oom, refs,
    };
    for (int i = 0; i < TRIES; i++)
        for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
            int fd = open(files[f], O_WRONLY);
            if (fd >= 0) {
                control++;
                close(fd);
            }
        }
    REPORT("host_control_files", control);
    len += snprintf(line + len, sizeof line - len, "done\n");
    (void)!write(1, line, len);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: isolation_attack TARGET ABSTRACT [grandchild]\n");
        return 2;
    }
    pid_t target = strcmp(argv[1], "ppid") == 0 ? getppid() : (pid_t)atoi(argv[1]);
    if (argc < 4 || strcmp(argv[3], "grandchild") != 0) {
        attack(target, argv[2]);
        return 0;
    }
    int p[2];
    if (pipe(p) != 0)
        return 3;
    pid_t child = fork();
    if (child < 0)
        return 3;
    if (child == 0) {
        close(p[0]);
        setsid();
        if (fork() != 0)
            _exit(0);
        /* The grandchild: its parent is gone, it is in a session of its own. */
        attack(target, argv[2]);
        _exit(0);
    }
    close(p[1]);
    waitpid(child, NULL, 0);
    char c;
    while (read(p[0], &c, 1) > 0) {
    }
    return 0;
}
