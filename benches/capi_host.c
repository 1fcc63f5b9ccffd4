/* The C side of benches/capi_roundtrip.rs: runs `openloop ITERS 1` in a
 * sandbox whose openat is decided by a C callback through libunotify, and
 * prints the client's output. Usage: capi_host OPENLOOP ITERS continue|read */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "unotify.h"

static int on_continue(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)user, (void)n, (void)cx, (void)out;
    return 0; /* *out is preset to UNOTIFY_CONTINUE */
}

static volatile size_t sink;

static int on_read(void *user, const unotify_notif *n, unotify_ctx *cx, unotify_action *out)
{
    (void)user, (void)out;
    char path[4097];
    size_t len = 0;
    if (unotify_ctx_read_cstr(cx, n->args[1], path, sizeof path, &len) == UNOTIFY_OK)
        sink = len;
    return 0;
}

#define CHECK(call)                                                                \
    do {                                                                           \
        if ((call) != UNOTIFY_OK) {                                                \
            fprintf(stderr, "%s: %s\n", #call, unotify_last_error());              \
            return 1;                                                              \
        }                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    unotify_builder *b;
    unotify_sandbox *sb;
    unotify_command *cmd;
    unotify_child *child;
    int status;
    CHECK(unotify_builder_new(&b));
    CHECK(unotify_builder_handle(b, "openat", strcmp(argv[3], "read") ? on_continue : on_read, NULL));
    CHECK(unotify_builder_build(b, &sb));
    CHECK(unotify_command_new(argv[1], &cmd));
    CHECK(unotify_command_arg(cmd, argv[2]));
    CHECK(unotify_command_arg(cmd, "1"));
    CHECK(unotify_sandbox_spawn(sb, cmd, &child));
    CHECK(unotify_child_wait(child, -1, &status));
    unotify_child_free(child);
    unotify_command_free(cmd);
    unotify_sandbox_free(sb);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
