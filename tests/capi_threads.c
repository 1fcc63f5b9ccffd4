/* A C host of libunotify with 8 threads, each spawning sandboxes in a
 * loop (tests/capi.rs runs it). Every run traps openat; some are killed,
 * some time out first, some try_wait. Before and after: the host's open
 * fds, its threads, its child processes (zombies included). Prints one
 * line of figures and exits 0 only if every run behaved and nothing leaked. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unotify.h"

#define THREADS 8
static int RUNS_PER_THREAD = 25;

static atomic_long opens, ok_runs, bad_runs;

static int on_openat(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)user;
    char path[256];
    if (unotify_ctx_read_cstr(cx, n->args[1], path, sizeof path, NULL) == UNOTIFY_OK &&
        strcmp(path, "/etc/hostname") == 0) {
        out->kind = UNOTIFY_ERRNO;
        out->errno_value = EACCES;
    }
    atomic_fetch_add(&opens, 1);
    return 0;
}

static int count_dir(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - (strcmp(dir, "/proc/self/fd") == 0); /* opendir's own fd */
}

/* Processes whose parent is this one (running or zombie). */
static int count_children(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0, me = getpid();
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char p[300], buf[512];
        snprintf(p, sizeof p, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')');
        int ppid = 0;
        char state;
        if (rp && sscanf(rp + 2, "%c %d", &state, &ppid) == 2 && ppid == me)
            n++;
    }
    closedir(d);
    return n;
}

#define FAIL(what)                                                                   \
    do {                                                                             \
        fprintf(stderr, "thread %ld run %d: %s: %s\n", id, i, what, unotify_last_error()); \
        atomic_fetch_add(&bad_runs, 1);                                              \
        goto next;                                                                   \
    } while (0)

static void *worker(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < RUNS_PER_THREAD; i++) {
        unotify_builder *b = NULL;
        unotify_sandbox *sb = NULL;
        unotify_command *cmd = NULL;
        unotify_child *child = NULL;
        int status = 0, kill_it = i % 5 == 4;
        if (unotify_builder_new(&b) != UNOTIFY_OK)
            FAIL("builder_new");
        if (unotify_builder_handle(b, "openat", on_openat, NULL) != UNOTIFY_OK)
            FAIL("handle");
        if (unotify_builder_workers(b, 2) != UNOTIFY_OK)
            FAIL("workers");
        if (unotify_builder_build(b, &sb) != UNOTIFY_OK)
            FAIL("build");
        if (unotify_command_new("/bin/sh", &cmd) != UNOTIFY_OK ||
            unotify_command_arg(cmd, "-c") != UNOTIFY_OK ||
            unotify_command_arg(cmd, kill_it ? "sleep 30" : "cat /etc/hostname; exit 3") != UNOTIFY_OK ||
            unotify_command_stdio(cmd, 1, UNOTIFY_STDIO_NULL, -1) != UNOTIFY_OK ||
            unotify_command_stdio(cmd, 2, UNOTIFY_STDIO_NULL, -1) != UNOTIFY_OK)
            FAIL("command");
        if (unotify_sandbox_spawn(sb, cmd, &child) != UNOTIFY_OK)
            FAIL("spawn");
        if (kill_it) {
            if (unotify_child_wait(child, 20, &status) != UNOTIFY_E_TIMEOUT)
                FAIL("wait should time out");
            if (unotify_child_kill(child) != UNOTIFY_OK)
                FAIL("kill");
            if (unotify_child_wait(child, -1, &status) != UNOTIFY_OK)
                FAIL("wait after kill");
            if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                FAIL("killed child's status");
        } else if (i % 5 == 1) {
            int exited = 0;
            while (!exited) {
                if (unotify_child_try_wait(child, &exited, &status) != UNOTIFY_OK)
                    FAIL("try_wait");
                if (!exited)
                    usleep(500);
            }
        } else if (unotify_child_wait(child, 10000, &status) != UNOTIFY_OK) {
            FAIL("wait");
        }
        /* cat /etc/hostname is denied (EACCES: cat exits 1), then exit 3 */
        if (!kill_it && (!WIFEXITED(status) || WEXITSTATUS(status) != 3))
            FAIL("exit status");
        atomic_fetch_add(&ok_runs, 1);
    next:
        unotify_child_free(child);
        unotify_command_free(cmd);
        unotify_sandbox_free(sb);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        RUNS_PER_THREAD = atoi(argv[1]);
    /* One run first: what the library sets up once per process is not a leak. */
    long saved = RUNS_PER_THREAD;
    RUNS_PER_THREAD = 1;
    worker((void *)-1L);
    RUNS_PER_THREAD = saved;
    atomic_store(&ok_runs, 0);

    int fds0 = count_dir("/proc/self/fd"), tasks0 = count_dir("/proc/self/task");
    int kids0 = count_children();
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    /* One run after, as before the threads: the emptied cgroup the library
     * keeps for the process's next sandbox (a cache, set up by the first
     * run, not a leak) is kept again, whatever the threads' last runs
     * (killed sandboxes, whose cgroups are removed) did with it. */
    long ok_threads = atomic_load(&ok_runs);
    RUNS_PER_THREAD = 1;
    worker((void *)-2L);
    RUNS_PER_THREAD = saved;
    atomic_store(&ok_runs, ok_threads);
    /* Supervisors are joined by the waits; give exiting threads a moment
     * to leave /proc. */
    int fds1 = 0, tasks1 = 0, kids1 = 0;
    for (int tries = 0; tries < 100; tries++) {
        fds1 = count_dir("/proc/self/fd");
        tasks1 = count_dir("/proc/self/task");
        kids1 = count_children();
        if (fds1 <= fds0 && tasks1 <= tasks0 && kids1 <= kids0)
            break;
        usleep(10000);
    }
    printf("runs=%ld bad=%ld opens=%ld fds=%d->%d tasks=%d->%d children=%d->%d\n",
           atomic_load(&ok_runs), atomic_load(&bad_runs), atomic_load(&opens), fds0, fds1, tasks0,
           tasks1, kids0, kids1);
    int ok = atomic_load(&bad_runs) == 0 && atomic_load(&ok_runs) == (long)THREADS * RUNS_PER_THREAD &&
             fds1 == fds0 && tasks1 == tasks0 && kids1 == kids0;
    return ok ? 0 : 1;
}
