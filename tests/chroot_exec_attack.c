/* Execs under a chroot that try to run a file outside the view, counted in
 * bounded loops. Run inside the view with standard input open on a
 * program outside it (opened before the sandbox). Each round forks a child
 * that execs; a program of the view exits 42, the outside program exits 0,
 * a refused exec exits 111. A round leaks when the outside program ran.
 *
 * argv: 1 view program (absolute virtual path of a program that exits 42,
 * reachable by the view only), 2 host path of the outside program, 3 rounds.
 * Prints "<attack> <leaks>" per attack, then "view_ran <n>": the rounds
 * where the view program ran (the re-issue worked while attacked). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *view_prog, *host_prog;
static int rounds;
static volatile int stop;
static int view_ran;

static void report(const char *name, int n) {
    printf("%s %d\n", name, n);
    fflush(stdout);
}

/* Runs `body` in a child per round; counts rounds where the outside
 * program ran (exit 0). */
static int count(void (*body)(int), int n_rounds) {
    int leaks = 0;
    for (int r = 0; r < n_rounds; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            body(r);
            _exit(111);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) leaks++;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 42) view_ran++;
    }
    return leaks;
}

/* The outside program by the tricks of chroot_attack.c: the inherited fd
 * (standard input) run directly or by its procfs and /dev/fd names, the
 * host path under /proc/self/root, behind `..` past the root, behind an
 * absolute symlink of the view. */
static void escapes(int r) {
    char *argv[] = {"x", NULL};
    extern char **environ;
    char path[4096];
    switch (r % 6) {
    case 0:
        syscall(SYS_execveat, 0, "", argv, environ, AT_EMPTY_PATH);
        break;
    case 1:
        execv("/proc/self/fd/0", argv);
        break;
    case 2:
        execv("/dev/fd/0", argv);
        break;
    case 3:
        snprintf(path, sizeof path, "/proc/self/root%s", host_prog);
        execv(path, argv);
        break;
    case 4:
        snprintf(path, sizeof path, "../../../../../../..%s", host_prog);
        execv(path, argv);
        break;
    default:
        execv("/work/abs", argv);
        break;
    }
}

/* A thread puts the outside program on every close-on-exec fd (the fd the
 * supervisor adds for a re-issued exec is one) while the exec of a view
 * program is redirected. */
static void *swap_fds(void *arg) {
    (void)arg;
    for (;;) {
        for (int k = 3; k < 64; k++) {
            int f = fcntl(k, F_GETFD);
            if (f >= 0 && (f & FD_CLOEXEC)) dup2(0, k);
        }
    }
    return NULL;
}

static void fd_swap(int r) {
    (void)r;
    pthread_t t;
    pthread_create(&t, NULL, swap_fds, NULL);
    char *argv[] = {(char *)view_prog, NULL};
    execv(view_prog, argv);
}

/* A thread writes the outside program's host path where the re-issued
 * exec's empty path is (the NUL ending the caller's path), and puts the
 * NUL back, in a loop. */
static char path_buf[4096];

static void *rewrite_path(void *arg) {
    volatile char *p = path_buf + (size_t)arg;
    for (;;) {
        *p = 0;
        *p = '/';
    }
    return NULL;
}

static void path_rewrite(int r) {
    (void)r;
    size_t n = strlen(view_prog);
    memcpy(path_buf, view_prog, n + 1);
    /* After the NUL: the host path without its first '/'. */
    strcpy(path_buf + n + 1, host_prog + 1);
    pthread_t t;
    pthread_create(&t, NULL, rewrite_path, (void *)n);
    char *argv[] = {"x", NULL};
    execv(path_buf, argv);
}

/* A symlink of the view swapped between the view program and the outside
 * program's host path while it is exec'd by a path the kernel resolves
 * the same way as the view (relative to the start directory). */
static void symlink_swap(int r) {
    (void)r;
    char *argv[] = {"x", NULL};
    execv("work/l", argv);
}

static void *swap_link(void *arg) {
    (void)arg;
    while (!stop) {
        unlink("/work/l.new");
        symlink(view_prog, "/work/l.new");
        rename("/work/l.new", "/work/l");
        unlink("/work/l.new");
        symlink(host_prog, "/work/l.new");
        rename("/work/l.new", "/work/l");
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    view_prog = argv[1];
    host_prog = argv[2];
    rounds = atoi(argv[3]);
    unlink("/work/abs");
    if (symlink(host_prog, "/work/abs") != 0) return 3;
    report("escapes", count(escapes, rounds));
    report("fd_swap", count(fd_swap, rounds));
    report("path_rewrite", count(path_rewrite, rounds));
    pthread_t t;
    pthread_create(&t, NULL, swap_link, NULL);
    int n = count(symlink_swap, rounds);
    stop = 1;
    pthread_join(t, NULL);
    report("symlink_swap", n);
    report("view_ran", view_ran);
    return 0;
}
