// end_reaper: runs `unotify run ...` as a child subreaper would, and
// reports what is left once it has exited.
// usage: end_reaper UNOTIFY ARGS...   prints "pid=P status=S left=N"
// P: unotify's pid; S: its wait status; N: 1 if any process given to
// this one (orphans of unotify: its watchdog, or anything it left) is
// still there 2 s after unotify's exit (each that exits is reaped), else 0.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) { perror("subreaper"); return 2; }
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) { execv(argv[1], argv + 1); _exit(127); }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 2;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int left = 0;
    for (;;) {
        siginfo_t info = {0};
        int r = waitid(P_ALL, 0, &info, WEXITED | WNOHANG | __WALL);
        if (r < 0 && errno == ECHILD) break;
        if (r == 0 && info.si_pid != 0) continue; // one reaped
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > 2000000000L) {
            // Anything still there (waitid fails only with no child left).
            siginfo_t i2 = {0};
            left = waitid(P_ALL, 0, &i2, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0;
            break;
        }
        usleep(1000);
    }
    printf("pid=%d status=%d left=%d\n", pid, status, left);
    return 0;
}
