/* The C ABI's contract, checked from C (tests/capi.rs runs it): status
 * codes and per-thread last errors, each action kind, a handler failing
 * closed, deferral with its free callback called exactly once, the pidfd,
 * command environment, directory and stdio. Prints "FAIL: ..." lines and
 * exits 1 on any failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unotify.h"

static int failures;
#define EXPECT(cond, ...)                                                  \
    do {                                                                   \
        if (!(cond)) {                                                     \
            printf("FAIL line %d: %s: ", __LINE__, #cond);                 \
            printf(__VA_ARGS__);                                           \
            printf(" (last error: %s)\n", unotify_last_error());           \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static unotify_sandbox *build(const char *sys, unotify_handler_fn h, void *user)
{
    unotify_builder *b;
    unotify_sandbox *sb = NULL;
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
    EXPECT(unotify_builder_handle(b, sys, h, user) == UNOTIFY_OK, "handle %s", sys);
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_OK, "build");
    return sb;
}

/* Runs `sh -c script` with stdout into a pipe; returns its exit code and
 * its output in out. */
static int run_sh(unotify_sandbox *sb, const char *script, char *out, size_t cap)
{
    unotify_command *cmd;
    unotify_child *child;
    int status = -1, fd = -1;
    EXPECT(unotify_command_new("/bin/sh", &cmd) == UNOTIFY_OK, "command_new");
    unotify_command_arg(cmd, "-c");
    unotify_command_arg(cmd, script);
    unotify_command_stdio(cmd, 1, UNOTIFY_STDIO_PIPE, -1);
    if (unotify_sandbox_spawn(sb, cmd, &child) != UNOTIFY_OK) {
        EXPECT(0, "spawn %s", script);
        unotify_command_free(cmd);
        return -1;
    }
    unotify_child_take_pipe(child, 1, &fd);
    size_t n = 0;
    ssize_t r;
    while (fd >= 0 && n + 1 < cap && (r = read(fd, out + n, cap - 1 - n)) > 0)
        n += r;
    out[n] = 0;
    if (fd >= 0)
        close(fd);
    EXPECT(unotify_child_wait(child, 10000, &status) == UNOTIFY_OK, "wait");
    unotify_child_free(child);
    unotify_command_free(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* getppid answered by each action kind, picked by `user`. */
static int on_getppid(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)n, (void)cx;
    const char *how = user;
    if (!strcmp(how, "return")) {
        out->kind = UNOTIFY_RETURN;
        out->value = 4242;
    } else if (!strcmp(how, "errno")) {
        out->kind = UNOTIFY_ERRNO;
        out->errno_value = EACCES;
    } else if (!strcmp(how, "fail")) {
        return 1; /* -> EPERM */
    } else if (!strcmp(how, "bogus")) {
        out->kind = 99; /* -> EPERM */
    }
    return 0;
}

static atomic_int defer_runs, defer_frees;

static int deferred(void *user, const unotify_notif *n, unotify_action *out)
{
    EXPECT(user == (void *)&defer_runs, "defer user");
    EXPECT(n->nr > 0, "defer notif copy");
    atomic_fetch_add(&defer_runs, 1);
    out->kind = UNOTIFY_RETURN;
    out->value = 777;
    return 0;
}

static void defer_free(void *user)
{
    EXPECT(user == (void *)&defer_runs, "free user");
    atomic_fetch_add(&defer_frees, 1);
}

static int on_getppid_defer(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)user, (void)n, (void)cx;
    out->kind = UNOTIFY_DEFER;
    out->defer_fn = deferred;
    out->defer_free = defer_free;
    out->defer_user = &defer_runs;
    return 0;
}

/* Sets up a deferral, then fails: EPERM, and defer_free still runs once. */
static int on_getppid_defer_fail(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    on_getppid_defer(user, n, cx, out);
    return 1;
}

/* openat of "/magic" answered with an fd of a file the host opened. */
static const char *magic_file;
static int on_openat_inject(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)user;
    char path[256];
    if (unotify_ctx_read_cstr(cx, n->args[1], path, sizeof path, NULL) == UNOTIFY_OK &&
        !strcmp(path, "/magic")) {
        out->kind = UNOTIFY_INJECT_FD;
        out->fd = open(magic_file, O_RDONLY | O_CLOEXEC);
        out->fd_flags = O_CLOEXEC;
    }
    /* A too-small buffer is refused, the call still pending. */
    char tiny[2];
    int rc = unotify_ctx_read_cstr(cx, n->args[1], tiny, sizeof tiny, NULL);
    EXPECT(rc == UNOTIFY_E_TOO_LONG, "tiny buffer: %d", rc);
    EXPECT(unotify_ctx_read_cstr(cx, 0, path, sizeof path, NULL) == UNOTIFY_E_FAULT, "null addr");
    EXPECT(unotify_ctx_id_valid(cx) == UNOTIFY_OK, "id_valid");
    return 0;
}

/* The shell's chdir (`cd`) answered by installing the magic file at fd 9
 * of the shell, and the call then runs; a negative target fails closed
 * (EPERM). */
static int on_chdir_inject_at(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)n, (void)cx;
    out->kind = UNOTIFY_INJECT_FD_AT;
    out->fd = open(magic_file, O_RDONLY | O_CLOEXEC);
    out->target_fd = user ? -1 : 9;
    return 0;
}

/* getppid held; a host thread releases it with 5150 through the handle
 * taken from the child. */
static int on_getppid_hold(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)user, (void)n;
    unotify_supervisor *s = NULL;
    EXPECT(unotify_ctx_supervisor(cx, &s) == UNOTIFY_OK && s, "ctx_supervisor");
    /* Calls back into the API from a handler: no deadlock. */
    unotify_stats st;
    size_t count = 0;
    EXPECT(unotify_supervisor_stats(s, &st) == UNOTIFY_OK && st.received >= 1, "stats from a handler");
    EXPECT(unotify_supervisor_held(s, NULL, 0, &count) == UNOTIFY_OK, "held from a handler");
    unotify_supervisor_free(s);
    unotify_builder *b;
    unotify_sandbox *sb = NULL;
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK && unotify_builder_deny(b, "mkdirat", EACCES) == UNOTIFY_OK &&
               unotify_builder_build(b, &sb) == UNOTIFY_OK,
           "build a sandbox from a handler");
    unotify_sandbox_free(sb);
    out->kind = UNOTIFY_HOLD;
    return 0;
}

static void check_hold_release(void)
{
    unotify_sandbox *sb = build("getppid", on_getppid_hold, NULL);
    unotify_command *cmd;
    unotify_child *child;
    unotify_supervisor *sup = NULL;
    int fd = -1, status = 0;
    char out[64] = {0};
    unotify_command_new("/bin/sh", &cmd);
    unotify_command_arg(cmd, "-c");
    unotify_command_arg(cmd, "echo $PPID");
    unotify_command_stdio(cmd, 1, UNOTIFY_STDIO_PIPE, -1);
    EXPECT(unotify_sandbox_spawn(sb, cmd, &child) == UNOTIFY_OK, "spawn");
    EXPECT(unotify_child_supervisor(child, &sup) == UNOTIFY_OK, "child_supervisor");
    unotify_notif held[4];
    size_t count = 0;
    for (int i = 0; i < 1000 && count == 0; i++) {
        EXPECT(unotify_supervisor_held(sup, held, 4, &count) == UNOTIFY_OK, "held");
        if (count == 0)
            usleep(1000);
    }
    EXPECT(count == 1, "one held call, got %zu", count);
    EXPECT(unotify_child_wait(child, 50, &status) == UNOTIFY_E_TIMEOUT, "held: still running");
    unotify_action a = {.kind = UNOTIFY_RETURN, .value = 5150, .fd = -1};
    if (count == 1) {
        EXPECT(unotify_supervisor_release(sup, held[0].id, &a) == UNOTIFY_OK, "release");
        EXPECT(unotify_supervisor_release(sup, held[0].id, &a) == UNOTIFY_E_GONE, "second release");
    }
    unotify_child_take_pipe(child, 1, &fd);
    EXPECT(read(fd, out, sizeof out - 1) > 0 && atoi(out) == 5150, "released value: %s", out);
    close(fd);
    EXPECT(unotify_child_wait(child, 10000, &status) == UNOTIFY_OK, "wait");
    unotify_stats st;
    EXPECT(unotify_supervisor_stats(sup, &st) == UNOTIFY_E_GONE, "stats after exit: gone");
    unotify_supervisor *late = NULL;
    EXPECT(unotify_child_supervisor(child, &late) == UNOTIFY_E_GONE && !late, "supervisor after exit");
    unotify_supervisor_free(sup);
    unotify_child_free(child);
    unotify_command_free(cmd);
    unotify_sandbox_free(sb);
}

/* Policy callback: denies any exec naming "forbidden" with EACCES. */
static atomic_int policy_events, policy_execs, policy_path_errors;
static const char *policy_denied = "/tmp/unotify-capi-policy-denied";
static int policy(void *user, const unotify_policy_event *ev, unotify_policy_ctx *pc)
{
    (void)user;
    atomic_fetch_add(&policy_events, 1);
    /* Path denial is always on with a policy callback. */
    if (unotify_policy_deny_path(pc, policy_denied) != UNOTIFY_OK ||
        unotify_policy_allow_path(pc, "/never/denied") != UNOTIFY_E_CONFIG)
        atomic_fetch_add(&policy_path_errors, 1);
    EXPECT(unotify_policy_restrict_max_processes(pc, 1000) == UNOTIFY_OK, "restrict_max_processes");
    const char *bad[] = {"not a network"};
    EXPECT(unotify_policy_restrict_network(pc, bad, 1) == UNOTIFY_E_CONFIG, "bad cidr");
    if (strcmp(ev->syscall, "execve") || ev->category != UNOTIFY_CATEGORY_PROCESS)
        return UNOTIFY_VERDICT_ALLOW;
    atomic_fetch_add(&policy_execs, 1);
    EXPECT(ev->argv && ev->argv[ev->argc] == NULL, "argv null-terminated");
    for (size_t i = 0; ev->argv && i < ev->argc; i++)
        if (strstr(ev->argv[i], "forbidden"))
            return -EACCES;
    return UNOTIFY_VERDICT_AUDIT;
}

static void check_policy(void)
{
    unotify_builder *b;
    unotify_sandbox *sb = NULL;
    char out[256];
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
    EXPECT(unotify_builder_policy(b, NULL, NULL) == UNOTIFY_E_INVALID, "null policy");
    EXPECT(unotify_builder_policy(b, policy, NULL) == UNOTIFY_OK, "policy");
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_OK, "build");
    FILE *f = fopen(policy_denied, "w");
    fputs("secret\n", f);
    fclose(f);
    int rc = run_sh(sb,
                    "/bin/echo forbid''den 2>/dev/null || echo refused; /bin/echo fine; "
                    "cat /tmp/unotify-capi-policy-denied 2>/dev/null || echo blocked",
                    out, sizeof out);
    EXPECT(rc == 0 && !strcmp(out, "refused\nfine\nblocked\n"), "policy output %d: %s", rc, out);
    EXPECT(atomic_load(&policy_execs) >= 3, "execs seen: %d", atomic_load(&policy_execs));
    EXPECT(atomic_load(&policy_path_errors) == 0, "deny_path/allow_path from the callback");
    unlink(policy_denied);
    unotify_sandbox_free(sb);
}

/* sync: denies the shared secret in the set `user`, from the handler. */
static const char *shared_secret = "/tmp/unotify-capi-shared-denied";
static int on_sync_deny(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)n, (void)cx, (void)out;
    int added = -1;
    EXPECT(unotify_denied_paths_deny(user, shared_secret, &added) == UNOTIFY_OK && added == 1,
           "deny from a handler (added %d)", added);
    return 0;
}

/* A shared denied-path set, changed from a handler while the program
 * runs and from the host between runs. */
static void check_denied_paths(void)
{
    unotify_denied_paths *set = NULL;
    unotify_builder *b;
    unotify_sandbox *sb = NULL;
    char out[256];
    int d = -1;
    size_t count = 99;
    const char *fixed = "/tmp/unotify-capi-fixed-denied";
    EXPECT(unotify_denied_paths_new(&set) == UNOTIFY_OK && set, "denied_paths_new");
    FILE *f = fopen(shared_secret, "w");
    fputs("secret\n", f);
    fclose(f);
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
    EXPECT(unotify_builder_denied_paths(b, NULL) == UNOTIFY_E_INVALID, "null set");
    EXPECT(unotify_builder_denied_paths(b, set) == UNOTIFY_OK, "builder_denied_paths");
    EXPECT(unotify_builder_deny_path(b, fixed) == UNOTIFY_OK, "deny_path");
    EXPECT(unotify_builder_handle(b, "sync", on_sync_deny, set) == UNOTIFY_OK, "handle");
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_OK, "build");
    EXPECT(unotify_denied_paths_count(set, &count) == UNOTIFY_OK && count == 1, "fixed path added: %zu", count);
    EXPECT(unotify_denied_paths_allow(set, fixed) == UNOTIFY_E_CONFIG, "a build path stays denied");
    /* Readable, then denied by the handler of sync(2). */
    int rc = run_sh(sb,
                    "cat /tmp/unotify-capi-shared-denied; sync; "
                    "cat /tmp/unotify-capi-shared-denied 2>/dev/null || echo blocked",
                    out, sizeof out);
    EXPECT(rc == 0 && !strcmp(out, "secret\nblocked\n"), "denied while running %d: %s", rc, out);
    EXPECT(unotify_denied_paths_is_denied(set, shared_secret, &d) == UNOTIFY_OK && d == 1, "is_denied %d", d);
    /* Allowed again from the host: the same sandbox reads it. */
    EXPECT(unotify_denied_paths_allow(set, shared_secret) == UNOTIFY_OK, "allow");
    EXPECT(unotify_denied_paths_allow(set, shared_secret) == UNOTIFY_E_CONFIG, "allow twice");
    EXPECT(unotify_denied_paths_is_denied(set, shared_secret, &d) == UNOTIFY_OK && d == 0, "allowed %d", d);
    rc = run_sh(sb, "cat /tmp/unotify-capi-shared-denied 2>/dev/null || echo blocked", out, sizeof out);
    EXPECT(rc == 0 && !strcmp(out, "secret\n"), "allowed again %d: %s", rc, out);
    unotify_sandbox_free(sb);
    /* The host's handle goes; a sandbox built with the set keeps it. */
    EXPECT(unotify_denied_paths_deny(set, shared_secret, NULL) == UNOTIFY_OK, "deny from the host");
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK && unotify_builder_denied_paths(b, set) == UNOTIFY_OK &&
               unotify_builder_build(b, &sb) == UNOTIFY_OK,
           "second sandbox");
    unotify_denied_paths_free(set);
    rc = run_sh(sb, "cat /tmp/unotify-capi-shared-denied 2>/dev/null || echo blocked", out, sizeof out);
    EXPECT(rc == 0 && !strcmp(out, "blocked\n"), "set outlives its handle %d: %s", rc, out);
    unotify_sandbox_free(sb);
    unlink(shared_secret);
}

/* File system allow lists: read beneath -r, write beneath -w, the rest
 * refused; a missing path and an unknown right name are refused. */
static void check_fs_confinement(void)
{
    unotify_builder *b;
    unotify_sandbox *sb = NULL;
    char out[256];
    mkdir("/tmp/unotify-capi-fs", 0755);
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
    EXPECT(unotify_builder_fs_system(b) == UNOTIFY_OK, "fs_system");
    EXPECT(unotify_builder_fs_read(b, "/etc/hostname") == UNOTIFY_OK, "fs_read");
    EXPECT(unotify_builder_fs_write(b, "/tmp/unotify-capi-fs") == UNOTIFY_OK, "fs_write");
    EXPECT(unotify_builder_fs_read(b, NULL) == UNOTIFY_E_INVALID, "null path");
    EXPECT(unotify_builder_allow_degraded(b, "bogus") == UNOTIFY_E_INVALID, "unknown right");
    EXPECT(strstr(unotify_last_error(), "ioctl-dev") != NULL, "valid names listed: %s", unotify_last_error());
    EXPECT(unotify_builder_allow_degraded(b, "ioctl-dev") == UNOTIFY_OK, "allow_degraded");
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_OK, "build");
    int rc = run_sh(sb,
                    "cat /etc/hostname >/dev/null && echo read; "
                    "echo x > /tmp/unotify-capi-fs/f && echo wrote; "
                    "cat /etc/passwd-unotify-nope /etc/shadow 2>/dev/null || echo refused; "
                    "echo x 2>/dev/null > /tmp/unotify-capi-outside || echo refused",
                    out, sizeof out);
    EXPECT(rc == 0 && !strcmp(out, "read\nwrote\nrefused\nrefused\n"), "confined %d: %s", rc, out);
    unotify_sandbox_free(sb);
    EXPECT(access("/tmp/unotify-capi-outside", F_OK) != 0, "nothing written outside");
    unlink("/tmp/unotify-capi-fs/f");
    rmdir("/tmp/unotify-capi-fs");
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
    EXPECT(unotify_builder_fs_read(b, "/nonexistent/unotify-capi") == UNOTIFY_OK, "fs_read");
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_E_CONFIG, "a missing path fails the build");
}

/* foreground, cgroups, track_processes, sync_wake_up: accepted, and
 * cgroups(0) keeps the program out of a sandbox cgroup. */
static void check_builder_settings(void)
{
    char out[4096];
    for (int cg = 0; cg <= 1; cg++) {
        unotify_builder *b;
        unotify_sandbox *sb = NULL;
        EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
        EXPECT(unotify_builder_foreground(b, 1) == UNOTIFY_OK, "foreground");
        EXPECT(unotify_builder_cgroups(b, cg) == UNOTIFY_OK, "cgroups");
        EXPECT(unotify_builder_track_processes(b) == UNOTIFY_OK, "track_processes");
        EXPECT(unotify_builder_sync_wake_up(b, 0) == UNOTIFY_OK, "sync_wake_up");
        EXPECT(unotify_builder_foreground(NULL, 1) == UNOTIFY_E_INVALID, "null builder");
        EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_OK, "build");
        int rc = run_sh(sb, "cat /proc/self/cgroup; (exit 0) & wait; echo done", out, sizeof out);
        EXPECT(rc == 0 && strstr(out, "done\n"), "settings run %d: %s", rc, out);
        EXPECT((strstr(out, "unotify-") != NULL) == (cg == 1), "cgroups(%d): %s", cg, out);
        unotify_sandbox_free(sb);
    }
}

/* The process state letter of pid ('T': stopped), '?' if unreadable. */
static char proc_state(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] && p[2] ? p[2] : '?';
}

/* track_processes, then pause and resume through the supervisor handle. */
static void check_pause_resume(void)
{
    unotify_builder *b;
    unotify_sandbox *sb = NULL;
    unotify_command *cmd;
    unotify_child *child;
    unotify_supervisor *sup = NULL;
    int status = -1, pid = 0, fd = -1;
    char out[64] = {0};
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK && unotify_builder_track_processes(b) == UNOTIFY_OK &&
               unotify_builder_build(b, &sb) == UNOTIFY_OK,
           "build with track_processes");
    unotify_command_new("/bin/sh", &cmd);
    unotify_command_arg(cmd, "-c");
    unotify_command_arg(cmd, "sleep 0.3; echo done");
    unotify_command_stdio(cmd, 1, UNOTIFY_STDIO_PIPE, -1);
    EXPECT(unotify_sandbox_spawn(sb, cmd, &child) == UNOTIFY_OK, "spawn");
    unotify_child_pid(child, &pid);
    EXPECT(unotify_child_supervisor(child, &sup) == UNOTIFY_OK, "child_supervisor");
    EXPECT(unotify_supervisor_pause(sup) == UNOTIFY_OK, "pause");
    /* Paused before or after the shell forked `sleep`: stopped, or its
     * fork held (then answered by the resume). */
    char st = '?';
    for (int i = 0; i < 200 && (st = proc_state(pid)) != 'T'; i++)
        usleep(1000);
    EXPECT(unotify_child_wait(child, 600, &status) == UNOTIFY_E_TIMEOUT, "paused past the sleep (state %c)", st);
    size_t answered = 99;
    EXPECT(unotify_supervisor_resume(sup, &answered) == UNOTIFY_OK && answered <= 1, "resume (%zu forks)",
           answered);
    unotify_child_take_pipe(child, 1, &fd);
    EXPECT(read(fd, out, sizeof out - 1) > 0 && !strcmp(out, "done\n"), "resumed output: %s", out);
    close(fd);
    EXPECT(unotify_child_wait(child, 10000, &status) == UNOTIFY_OK && WIFEXITED(status) &&
               WEXITSTATUS(status) == 0,
           "exit after resume %x", status);
    unotify_supervisor_free(sup);
    unotify_child_free(child);
    unotify_sandbox_free(sb);
    /* Without fork tracking: refused. */
    sb = build("getppid", on_getppid, "continue");
    unotify_command_free(cmd);
    unotify_command_new("/bin/sleep", &cmd);
    unotify_command_arg(cmd, "5");
    EXPECT(unotify_sandbox_spawn(sb, cmd, &child) == UNOTIFY_OK, "spawn");
    sup = NULL;
    EXPECT(unotify_child_supervisor(child, &sup) == UNOTIFY_OK, "child_supervisor");
    EXPECT(unotify_supervisor_pause(sup) == UNOTIFY_E_CONFIG, "pause without tracking");
    unotify_supervisor_free(sup);
    unotify_child_free(child); /* killed and waited for */
    unotify_command_free(cmd);
    unotify_sandbox_free(sb);
}

static void *thread_error(void *arg)
{
    (void)arg;
    /* Another thread's failure does not change this thread's message. */
    unotify_builder *b;
    unotify_sandbox *sb;
    unotify_builder_new(&b);
    unotify_builder_deny(b, "no_such_call_xyz", EPERM);
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_E_UNKNOWN_SYSCALL, "unknown syscall");
    EXPECT(strstr(unotify_last_error(), "no_such_call_xyz") != NULL, "message names the call");
    return NULL;
}

/* Sizes and field offsets of the header's structs, for tests/capi.rs to
 * compare with the library's. */
#include <stddef.h>
#define F(T, f) printf(" %s.%s=%zu", #T, #f, offsetof(T, f))
static void print_layout(void)
{
    printf("sizes notif=%zu action=%zu stats=%zu policy_event=%zu\n", sizeof(unotify_notif),
           sizeof(unotify_action), sizeof(unotify_stats), sizeof(unotify_policy_event));
    printf("offsets");
    F(unotify_notif, pid), F(unotify_notif, nr), F(unotify_notif, arch);
    F(unotify_notif, instruction_pointer), F(unotify_notif, args);
    F(unotify_action, errno_value), F(unotify_action, value), F(unotify_action, fd);
    F(unotify_action, fd_flags), F(unotify_action, signal), F(unotify_action, target_fd),
    F(unotify_action, defer_fn);
    F(unotify_action, defer_free), F(unotify_action, defer_user);
    F(unotify_stats, held);
    F(unotify_policy_event, category), F(unotify_policy_event, pid);
    F(unotify_policy_event, parent_pid), F(unotify_policy_event, addr_family);
    F(unotify_policy_event, addr), F(unotify_policy_event, port), F(unotify_policy_event, has_size);
    F(unotify_policy_event, size), F(unotify_policy_event, argc), F(unotify_policy_event, argv);
    F(unotify_policy_event, denied);
    F(unotify_policy_event, held);
    printf("\n");
}

/* Determinism and identity: the builder calls reach the sandbox; a bad
 * CPU count fails the build with UNOTIFY_E_CONFIG. */
static void check_determinism(void)
{
    char out[4096];
    unotify_builder *b;
    unotify_sandbox *sb = NULL;
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
    EXPECT(unotify_builder_hostname(b, "cabi") == UNOTIFY_OK, "hostname");
    EXPECT(unotify_builder_num_cpus(b, 2) == UNOTIFY_OK, "num_cpus");
    EXPECT(unotify_builder_random_seed(b, 5) == UNOTIFY_OK, "random_seed");
    EXPECT(unotify_builder_deterministic_dirs(b, 1) == UNOTIFY_OK, "deterministic_dirs");
    EXPECT(unotify_builder_time_start(b, 981173106) == UNOTIFY_OK, "time_start");
    EXPECT(unotify_builder_port_remap(b, 1) == UNOTIFY_OK, "port_remap");
    EXPECT(unotify_builder_hostname(b, NULL) == UNOTIFY_E_INVALID, "null host name");
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_OK, "build");
    int rc = run_sh(sb, "hostname; nproc; date -u +%Y; python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 8080)); print(s.getsockname()[1])'", out, sizeof out);
    EXPECT(rc == 0 && !strcmp(out, "cabi\n2\n2001\n8080\n"), "determinism run %d: %s", rc, out);
    unotify_sandbox_free(sb);
    EXPECT(unotify_builder_new(&b) == UNOTIFY_OK, "builder_new");
    EXPECT(unotify_builder_num_cpus(b, 0) == UNOTIFY_OK, "num_cpus 0 is taken");
    sb = NULL;
    EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_E_CONFIG && sb == NULL, "num_cpus 0 fails the build");
}

int main(int argc, char **argv)
{
    char out[4096];
    if (argc > 1 && !strcmp(argv[1], "layout")) {
        print_layout();
        return 0;
    }

    /* Errors: null arguments, per-thread messages, typed codes. */
    EXPECT(unotify_builder_new(NULL) == UNOTIFY_E_INVALID, "null out");
    EXPECT(strlen(unotify_last_error()) > 0, "message set");
    unotify_builder_free(NULL);
    unotify_child_free(NULL);
    unotify_command_free(NULL);
    unotify_sandbox_free(NULL);
    EXPECT(unotify_builder_handle(NULL, "openat", on_getppid, NULL) == UNOTIFY_E_INVALID, "null b");
    pthread_t t;
    pthread_create(&t, NULL, thread_error, NULL);
    pthread_join(t, NULL);
    EXPECT(strstr(unotify_last_error(), "no_such_call_xyz") == NULL, "per-thread message: %s",
           unotify_last_error());
    {
        unotify_builder *b;
        unotify_sandbox *sb;
        unotify_builder_new(&b);
        EXPECT(unotify_builder_handle(b, "openat", NULL, NULL) == UNOTIFY_E_INVALID, "null handler");
        unotify_builder_net_allow(b, "tcp://not a spec::");
        EXPECT(unotify_builder_build(b, &sb) == UNOTIFY_E_CONFIG, "bad net spec");
    }
    {
        unotify_sandbox *sb = build("getppid", on_getppid, "continue");
        unotify_command *cmd;
        unotify_child *child;
        unotify_command_new("/nonexistent/program", &cmd);
        EXPECT(unotify_sandbox_spawn(sb, cmd, &child) == UNOTIFY_E_NOT_FOUND, "not found");
        unotify_command_free(cmd);

        /* Each action kind on getppid ($PPID in the shell). */
        EXPECT(run_sh(sb, "echo $PPID", out, sizeof out) == 0 && atoi(out) == getpid(),
               "continue: %s", out);
        unotify_sandbox_free(sb);
    }
    {
        unotify_sandbox *sb = build("getppid", on_getppid, "return");
        EXPECT(run_sh(sb, "echo $PPID", out, sizeof out) == 0 && atoi(out) == 4242, "return: %s", out);
        unotify_sandbox_free(sb);
    }
    /* libc's getppid reports no errors: the shell sees -errno as $PPID. */
    {
        unotify_sandbox *sb = build("getppid", on_getppid, "errno");
        run_sh(sb, "echo $PPID", out, sizeof out);
        EXPECT(atoi(out) == -EACCES, "errno: %s", out);
        unotify_sandbox_free(sb);
    }
    {
        unotify_sandbox *sb = build("getppid", on_getppid, "fail");
        run_sh(sb, "echo $PPID", out, sizeof out);
        EXPECT(atoi(out) == -EPERM, "a failing handler must answer EPERM: %s", out);
        unotify_sandbox_free(sb);
    }
    {
        unotify_sandbox *sb = build("getppid", on_getppid, "bogus");
        run_sh(sb, "echo $PPID", out, sizeof out);
        EXPECT(atoi(out) == -EPERM, "an unknown action kind must answer EPERM: %s", out);
        unotify_sandbox_free(sb);
    }
    {
        unotify_sandbox *sb = build("getppid", on_getppid_defer, NULL);
        EXPECT(run_sh(sb, "echo $PPID; echo $PPID", out, sizeof out) == 0 && atoi(out) == 777,
               "defer: %s", out);
        unotify_sandbox_free(sb);
        EXPECT(atomic_load(&defer_runs) >= 1, "deferred ran");
        EXPECT(atomic_load(&defer_runs) == atomic_load(&defer_frees), "free once per deferral: %d runs, %d frees",
               atomic_load(&defer_runs), atomic_load(&defer_frees));
        int runs = atomic_load(&defer_runs), frees = atomic_load(&defer_frees);
        sb = build("getppid", on_getppid_defer_fail, NULL);
        run_sh(sb, "echo $PPID", out, sizeof out);
        unotify_sandbox_free(sb);
        EXPECT(atomic_load(&defer_runs) == runs && atomic_load(&defer_frees) == frees + 1,
               "a failed handler's deferral is freed once, not run: %d runs, %d frees",
               atomic_load(&defer_runs) - runs, atomic_load(&defer_frees) - frees);
        EXPECT(atoi(out) == -EPERM, "failed handler with a deferral: %s", out);
    }
    {
        char tmpl[] = "/tmp/unotify-capi-XXXXXX";
        int fd = mkstemp(tmpl);
        EXPECT(write(fd, "injected\n", 9) == 9, "write");
        close(fd);
        magic_file = tmpl;
        unotify_sandbox *sb = build("openat", on_openat_inject, NULL);
        EXPECT(run_sh(sb, "cat /magic", out, sizeof out) == 0 && !strcmp(out, "injected\n"),
               "inject fd: %s", out);
        unotify_sandbox_free(sb);
        sb = build("chdir", on_chdir_inject_at, NULL);
        EXPECT(run_sh(sb, "cd /tmp && cat <&9", out, sizeof out) == 0 && !strcmp(out, "injected\n"),
               "inject fd at 9: %s", out);
        unotify_sandbox_free(sb);
        sb = build("chdir", on_chdir_inject_at, "negative");
        EXPECT(run_sh(sb, "cd /tmp 2>/dev/null || echo refused; cat <&9 2>/dev/null || echo none", out,
                      sizeof out) == 0 &&
                   !strcmp(out, "refused\nnone\n"),
               "inject fd at -1: %s", out);
        unotify_sandbox_free(sb);
        unlink(tmpl);
    }
    {
        /* Command: env set/unset/clear, cwd, stdio to a host fd; pidfd. */
        unotify_sandbox *sb = build("getppid", on_getppid, "continue");
        unotify_command *cmd;
        unotify_child *child;
        int p[2];
        EXPECT(pipe(p) == 0, "pipe");
        setenv("UNOTIFY_TEST_GONE", "x", 1);
        unotify_command_new("/bin/sh", &cmd);
        unotify_command_arg(cmd, "-c");
        unotify_command_arg(cmd, "echo \"$A|${UNOTIFY_TEST_GONE-unset}|$(pwd)\"; exit 5");
        EXPECT(unotify_command_env_set(cmd, "A", "1") == UNOTIFY_OK, "env_set");
        EXPECT(unotify_command_env_set(cmd, "BAD=KEY", "1") == UNOTIFY_E_INVALID, "env key with =");
        EXPECT(unotify_command_env_unset(cmd, "UNOTIFY_TEST_GONE") == UNOTIFY_OK, "env_unset");
        EXPECT(unotify_command_cwd(cmd, "/tmp") == UNOTIFY_OK, "cwd");
        EXPECT(unotify_command_stdio(cmd, 1, UNOTIFY_STDIO_FD, p[1]) == UNOTIFY_OK, "stdio fd");
        EXPECT(unotify_command_stdio(cmd, 7, UNOTIFY_STDIO_NULL, -1) == UNOTIFY_E_INVALID, "bad stream");
        EXPECT(unotify_sandbox_spawn(sb, cmd, &child) == UNOTIFY_OK, "spawn");
        close(p[1]);
        int pidfd = -1, pid = 0, status = 0, exited = 1;
        EXPECT(unotify_child_pid(child, &pid) == UNOTIFY_OK && pid > 0, "pid");
        EXPECT(unotify_child_pidfd(child, &pidfd) == UNOTIFY_OK && pidfd >= 0, "pidfd");
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        EXPECT(poll(&pfd, 1, 10000) == 1, "pidfd readable at exit");
        ssize_t n = read(p[0], out, sizeof out - 1);
        out[n > 0 ? n : 0] = 0;
        EXPECT(!strcmp(out, "1|unset|/tmp\n"), "env/cwd output: %s", out);
        EXPECT(unotify_child_try_wait(child, &exited, &status) == UNOTIFY_OK && exited == 1, "try_wait");
        EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 5, "status %x", status);
        unotify_stats st;
        EXPECT(unotify_child_stats(child, &st) == UNOTIFY_OK, "stats");
        EXPECT(unotify_child_wait(child, 0, &status) == UNOTIFY_OK, "wait after try_wait");
        close(pidfd);
        close(p[0]);
        unotify_child_free(child);

        /* env_clear: nothing inherited. */
        unotify_command_new("/bin/sh", &cmd);
        unotify_command_arg(cmd, "-c");
        unotify_command_arg(cmd, "test -z \"$HOME$UNOTIFY_TEST_GONE\"");
        EXPECT(unotify_command_env_clear(cmd) == UNOTIFY_OK, "env_clear");
        EXPECT(unotify_sandbox_run(sb, cmd, &status) == UNOTIFY_OK && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0,
               "env_clear status %x", status);
        unotify_command_free(cmd);
        unotify_sandbox_free(sb);
    }
    check_hold_release();
    check_policy();
    check_denied_paths();
    check_builder_settings();
    check_fs_confinement();
    check_determinism();
    check_pause_resume();
    printf("capi_abi: %d failures\n", failures);
    return failures ? 1 : 0;
}
