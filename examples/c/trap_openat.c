/* A C host of libunotify: traps openat, logs every path from a callback,
 * denies one path with EACCES, and runs `/bin/sh -c ...` in the sandbox.
 *
 *   cargo build --release --features capi --lib
 *   cc -O2 -Iinclude -o /tmp/trap_openat examples/c/trap_openat.c \
 *      -Ltarget/release -lunotify -Wl,-rpath,$PWD/target/release
 *   /tmp/trap_openat /etc/hostname
 *
 * argv[1] is the path to deny (default /etc/hostname); the shell reads it
 * and another file, and the host prints what it saw. Exits with the
 * shell's status, or 125 if the library failed. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "unotify.h"

struct policy {
    const char *denied;     /* the path answered EACCES */
    pthread_mutex_t lock;   /* handlers run on several worker threads */
    unsigned long opens;    /* openat calls seen */
    unsigned long denials;  /* of which denied */
};

/* openat(dirfd, path, flags, mode): the path is argument 1. */
static int on_openat(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    struct policy *p = user;
    char path[4096];
    size_t len = 0;
    int rc = unotify_ctx_read_cstr(cx, n->args[1], path, sizeof path, &len);
    if (rc == UNOTIFY_E_GONE)
        return 0; /* the task is gone: the answer is discarded anyway */
    if (rc != UNOTIFY_OK) {
        out->kind = UNOTIFY_ERRNO; /* fail closed on an unreadable path */
        out->errno_value = rc == UNOTIFY_E_TOO_LONG ? ENAMETOOLONG : EIO;
        return 0;
    }
    int deny = strcmp(path, p->denied) == 0;
    pthread_mutex_lock(&p->lock);
    p->opens++;
    p->denials += deny;
    pthread_mutex_unlock(&p->lock);
    printf("host: pid %u openat %s%s\n", n->pid, path, deny ? " -> EACCES" : "");
    fflush(stdout);
    if (deny) {
        out->kind = UNOTIFY_ERRNO;
        out->errno_value = EACCES;
    }
    return 0; /* out->kind stays UNOTIFY_CONTINUE otherwise */
}

#define CHECK(call)                                                               \
    do {                                                                          \
        int rc_ = (call);                                                         \
        if (rc_ != UNOTIFY_OK) {                                                  \
            fprintf(stderr, "host: %s failed (%d): %s\n", #call, rc_, unotify_last_error()); \
            return 125;                                                           \
        }                                                                         \
    } while (0)

int main(int argc, char **argv)
{
    struct policy p = {.denied = argc > 1 ? argv[1] : "/etc/hostname"};
    pthread_mutex_init(&p.lock, NULL);

    unotify_builder *b;
    unotify_sandbox *sb;
    CHECK(unotify_builder_new(&b));
    CHECK(unotify_builder_handle(b, "openat", on_openat, &p));
    CHECK(unotify_builder_build(b, &sb)); /* frees b */

    char script[512];
    snprintf(script, sizeof script,
             "cat %s >/dev/null 2>&1 && echo sh: read it || echo sh: denied; "
             "cat /etc/passwd >/dev/null && echo sh: passwd ok; exit 7",
             p.denied);
    unotify_command *cmd;
    CHECK(unotify_command_new("/bin/sh", &cmd));
    CHECK(unotify_command_arg(cmd, "-c"));
    CHECK(unotify_command_arg(cmd, script));

    unotify_child *child;
    CHECK(unotify_sandbox_spawn(sb, cmd, &child));
    int pid = 0, status = 0;
    CHECK(unotify_child_pid(child, &pid));
    CHECK(unotify_child_wait(child, 10000, &status));
    unotify_stats st;
    CHECK(unotify_child_stats(child, &st));
    unotify_child_free(child);
    unotify_command_free(cmd);
    unotify_sandbox_free(sb);

    printf("host: child %d exited %d; %lu opens, %lu denied; supervisor received %llu, answered %llu\n",
           pid, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), p.opens,
           p.denials, (unsigned long long)st.received, (unsigned long long)st.answered);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
}
