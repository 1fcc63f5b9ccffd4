/*
 * unotify.h: the C ABI of unotify, a seccomp user-notification supervisor
 * and sandbox launcher (libunotify.so / libunotify.a, built with
 * `cargo build --release --features capi`; `pkg-config unotify`).
 *
 * Written by hand; tests/capi.rs fails if the functions declared here and
 * the symbols the library exports disagree.
 *
 * ---------------------------------------------------------------- errors
 * Every function returning `int` returns UNOTIFY_OK (0) or a negative
 * UNOTIFY_E_* code, and on failure keeps a message for the calling thread,
 * read with unotify_last_error(). No function unwinds into the caller or
 * aborts the process: an internal error (a bug) is UNOTIFY_E_INTERNAL.
 * A null pointer where a value is required is UNOTIFY_E_INVALID.
 *
 * ------------------------------------------------------------- ownership
 * Handles (unotify_builder, unotify_sandbox, unotify_command, unotify_child,
 * unotify_supervisor, unotify_denied_paths) are made by the library and freed by the host with their *_free function,
 * exactly once (a null handle is ignored by *_free), except that
 * unotify_builder_build frees its builder. Strings and buffers passed in are
 * only borrowed for the call (the library copies what it keeps). A file
 * descriptor passed in is borrowed (duplicated if kept), except
 * unotify_action.fd, which the library takes over. File descriptors handed
 * out (unotify_child_pidfd, unotify_ctx_dup_fd, unotify_child_take_pipe)
 * are the host's to close; all are close-on-exec.
 * `user` pointers are never dereferenced by the library; the host keeps
 * them valid while any sandbox built with them, or any child spawned from
 * such a sandbox, exists (a child outlives its sandbox handle).
 *
 * ------------------------------------------------------------- threading
 * A unotify_sandbox is thread-safe: any number of threads may spawn from
 * one sandbox at once. A unotify_supervisor and a unotify_denied_paths are
 * thread-safe too. A builder, a command and a child may be used from
 * any thread, but by one thread at a time. unotify_last_error() is per
 * thread.
 * Each spawned child has its own supervisor threads (a poll thread and a
 * pool of workers). Handlers run on the workers, concurrently with each
 * other and with the host: a handler and its `user` data must be
 * thread-safe. A handler should return quickly (it holds up the trapped
 * thread and occupies a worker); slow work goes to UNOTIFY_DEFER.
 *
 * ------------------------------------------------ calls from a handler
 * From a handler, use the unotify_ctx_* functions on its `cx` (valid only
 * during that call, on that thread; never keep it). unotify_last_error and
 * the builder and command functions are also safe there (they take no
 * lock a supervisor holds). Do NOT, from a handler, wait for, kill or free
 * the child whose supervisor runs the handler: a wait blocks until the
 * program exits, and the program is blocked in the call the handler is
 * deciding (a deadlock, not a crash); freeing it joins the supervisor from
 * its own worker. Spawning from a handler works, but the new program is
 * killed when that worker thread ends (with its own sandbox): spawn from a
 * host thread instead.
 *
 * ------------------------------------------------------------------ fork
 * After fork() in a host that runs supervisors, the child process has none
 * of their threads: handles inherited through fork must not be used in the
 * child (not even freed); only the parent owns them. The library's fds
 * (listeners, pidfds) are close-on-exec: a forked child that execs drops
 * them at once; one that does not exec holds copies until it exits, so
 * keep such children short-lived (a held listener keeps trapped calls of
 * a sandbox whose supervisor stopped blocked instead of failing, until the
 * sandbox is killed). A forked child that wants sandboxes of its own execs
 * a program that makes them (between fork and exec of a multi-threaded
 * process only async-signal-safe calls are safe, as with any library that
 * runs threads). Sandboxed programs themselves are never started with
 * fork(): the library uses a CLONE_VM clone that execs at once, so spawning
 * copies none of the host's memory and is safe from any thread.
 *
 * --------------------------------------------------------------- signals
 * A supervisor interrupts its poll thread with SIGRTMAX-2: it installs a
 * do-nothing handler for it if that signal has none. Do not ignore that
 * signal or take it over while a sandbox runs.
 *
 * ------------------------------------------------------------ failing closed
 * Every trapped call gets exactly one answer. A handler returning non-zero,
 * an unknown action kind or a malformed action makes the call fail with
 * EPERM; an injected fd that cannot be installed gives EACCES; more than
 * the deferral limit in flight EAGAIN; a deferral over its deadline EIO.
 */
#ifndef UNOTIFY_H
#define UNOTIFY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ status codes */
#define UNOTIFY_OK 0
#define UNOTIFY_E_INVALID (-1)         /* null pointer, bad number or enum value */
#define UNOTIFY_E_UNKNOWN_SYSCALL (-2) /* a system call name the filter does not know */
#define UNOTIFY_E_CONFIG (-3)          /* conflicting rules, bad errno, bad network spec */
#define UNOTIFY_E_UNSUPPORTED (-4)     /* the kernel lacks a needed feature */
#define UNOTIFY_E_NOT_FOUND (-5)       /* the program to run was not found */
#define UNOTIFY_E_CANNOT_EXECUTE (-6)  /* the program cannot be executed */
#define UNOTIFY_E_SYSTEM (-7)          /* sandbox setup or a system call failed */
#define UNOTIFY_E_TIMEOUT (-8)         /* a wait ran out of time */
#define UNOTIFY_E_GONE (-9)            /* the trapped call is no longer pending */
#define UNOTIFY_E_FAULT (-10)          /* the task's memory is not accessible there */
#define UNOTIFY_E_TOO_LONG (-11)       /* a string longer than the limit or buffer */
#define UNOTIFY_E_INTERNAL (-12)       /* a bug in the library, caught at the boundary */

/* The message of the last call that failed on the calling thread ("" if
 * none). Owned by the library; valid until the next failing call on this
 * thread. Never null. */
const char *unotify_last_error(void);

/* ----------------------------------------------------------------- handles */
typedef struct unotify_builder unotify_builder; /* a policy being put together */
typedef struct unotify_sandbox unotify_sandbox; /* a built policy */
typedef struct unotify_command unotify_command; /* what to run */
typedef struct unotify_child unotify_child;     /* a running sandboxed program */
typedef struct unotify_ctx unotify_ctx;         /* the trapped task, inside a handler */
typedef struct unotify_supervisor unotify_supervisor; /* one child's supervisor */

/* ------------------------------------------------------- handler interface */

/* A trapped system call, as the kernel reported it. */
typedef struct unotify_notif {
    uint64_t id;                  /* unique while the call is pending */
    uint32_t pid;                 /* thread id of the trapped task */
    int32_t nr;                   /* system call number */
    uint32_t arch;                /* AUDIT_ARCH_* */
    uint32_t reserved;            /* zero */
    uint64_t instruction_pointer; /* at the call */
    uint64_t args[6];             /* raw arguments */
} unotify_notif;

/* unotify_action.kind */
#define UNOTIFY_CONTINUE 0   /* let it run (or let the next handler decide) */
#define UNOTIFY_ERRNO 1      /* fail it with errno_value (1..4095, else EPERM) */
#define UNOTIFY_RETURN 2     /* return value without running it */
#define UNOTIFY_INJECT_FD 3  /* install fd in the task, return its number */
#define UNOTIFY_KILL_TASK 4  /* send signal to the task's process, answer ENOMEM */
#define UNOTIFY_KILL_GROUP 5 /* send signal to the whole sandbox, answer ENOMEM */
#define UNOTIFY_DEFER 6      /* decide later with defer_fn on the deferral pool */
#define UNOTIFY_HOLD 7       /* no answer now: unotify_supervisor_release answers it
                              * (a supervisor that stops answers held calls EPERM) */
#define UNOTIFY_INJECT_FD_AT 8 /* install fd in the task at exactly target_fd
                                * (replacing what is there), then let the call
                                * run; a negative target_fd: EPERM */

struct unotify_action;

/* A deferred decision: runs once on the deferral pool (any thread), with a
 * copy of the notification, and fills *out like a handler (it may not
 * defer or hold: EIO). Returns 0, or non-zero to fail the call with EPERM.
 * There is no unotify_ctx here: read what you need in the handler. */
typedef int (*unotify_defer_fn)(void *user, const unotify_notif *n, struct unotify_action *out);

/* Releases a user pointer. */
typedef void (*unotify_free_fn)(void *user);

/* What a handler answers. The library sets *out to UNOTIFY_CONTINUE (and
 * fd = -1, everything else 0/NULL) before calling the handler; set kind and
 * the fields it uses. */
typedef struct unotify_action {
    int kind;             /* UNOTIFY_CONTINUE ... UNOTIFY_INJECT_FD_AT */
    int errno_value;      /* UNOTIFY_ERRNO */
    int64_t value;        /* UNOTIFY_RETURN */
    int fd;               /* UNOTIFY_INJECT_FD(_AT): the library takes this fd over */
    uint32_t fd_flags;    /* UNOTIFY_INJECT_FD(_AT): O_CLOEXEC or 0 */
    int signal;           /* UNOTIFY_KILL_TASK, UNOTIFY_KILL_GROUP */
    int target_fd;        /* UNOTIFY_INJECT_FD_AT: the fd number in the task
                           * (set to -1 before a handler runs) */
    unotify_defer_fn defer_fn; /* UNOTIFY_DEFER (null: EPERM) */
    unotify_free_fn defer_free; /* UNOTIFY_DEFER: called exactly once with
                                 * defer_user, after defer_fn ran or instead
                                 * of it if it never runs (pool full, supervisor
                                 * stopped); may be null */
    void *defer_user;     /* UNOTIFY_DEFER */
} unotify_action;

/* Decides one trapped call, on a supervisor worker thread (several run at
 * once). `n` and `cx` are valid only during the call. Returns 0 with the
 * answer in *out; any other value fails the call with EPERM (an fd or
 * defer_user already put in *out is then released: closed, or given to
 * defer_free). Handlers for
 * one system call form a chain in the order added: UNOTIFY_CONTINUE passes
 * to the next, the first other answer wins. */
typedef int (*unotify_handler_fn)(void *user, const unotify_notif *n, unotify_ctx *cx,
                                  unotify_action *out);

/* Copies the NUL-terminated string at `addr` in the trapped task into buf
 * (cap bytes including the NUL; cap > 0); its length (without the NUL)
 * goes to *len when len is not null. UNOTIFY_E_TOO_LONG if it does not
 * fit, UNOTIFY_E_FAULT if unreadable (answer EIO), UNOTIFY_E_GONE if the
 * call is no longer pending (the answer is discarded). The copy belongs to
 * the task that trapped: decide on it, never on the pointer. */
int unotify_ctx_read_cstr(unotify_ctx *cx, uint64_t addr, char *buf, size_t cap, size_t *len);

/* Copies exactly len bytes at `addr` in the trapped task into buf. Errors
 * as unotify_ctx_read_cstr. */
int unotify_ctx_read_mem(unotify_ctx *cx, uint64_t addr, void *buf, size_t len);

/* Writes len bytes from data to `addr` in the trapped task. */
int unotify_ctx_write_mem(unotify_ctx *cx, uint64_t addr, const void *data, size_t len);

/* Duplicates the trapped task's file descriptor fd into the host
 * (pidfd_getfd): *out_fd is a new close-on-exec fd the caller closes. */
int unotify_ctx_dup_fd(unotify_ctx *cx, int fd, int *out_fd);

/* UNOTIFY_OK while the trapped call is pending, else UNOTIFY_E_GONE. */
int unotify_ctx_id_valid(unotify_ctx *cx);

/* *out = a handle on the supervisor running this handler (to release a
 * call held with UNOTIFY_HOLD later, from any thread); free it with
 * unotify_supervisor_free. */
int unotify_ctx_supervisor(unotify_ctx *cx, unotify_supervisor **out);

/* ----------------------------------------------------------------- builder */

/* *out = a new builder (free with unotify_builder_free or build it). */
int unotify_builder_new(unotify_builder **out);
/* Frees a builder that was not built. */
void unotify_builder_free(unotify_builder *b);

/* Adds a handler for a system call, by name ("openat") or number. `user` is
 * passed back to it (see ownership above). */
int unotify_builder_handle(unotify_builder *b, const char *syscall, unotify_handler_fn handler,
                           void *user);
int unotify_builder_handle_nr(unotify_builder *b, uint32_t nr, unotify_handler_fn handler,
                              void *user);
/* Fails a system call with errno_value in the filter itself (no round trip). */
int unotify_builder_deny(unotify_builder *b, const char *syscall, int errno_value);
/* Traps a system call, lets it run, and logs it (Rust `log`, target
 * unotify::trace; seen only if the host process sets up a Rust logger). */
int unotify_builder_trace(unotify_builder *b, const char *syscall);
/* Worker threads per supervisor (default: one per CPU, at least 2). */
int unotify_builder_workers(unotify_builder *b, uint32_t n);
/* Deferrals in flight at most (default 64; more are answered EAGAIN). */
int unotify_builder_defer_limit(unotify_builder *b, uint32_t n);
/* Deadline of a deferral in milliseconds (default 30000; then EIO). */
int unotify_builder_defer_timeout_ms(unotify_builder *b, uint64_t ms);
/* Network rules in the grammar of `unotify run --net-allow`, `--net-deny`,
 * `--net-deny-bind` (repeatable; checked at build: UNOTIFY_E_CONFIG). */
int unotify_builder_net_allow(unotify_builder *b, const char *spec);
int unotify_builder_net_deny(unotify_builder *b, const char *spec);
int unotify_builder_net_deny_bind(unotify_builder *b, const char *ports);
/* At most n processes in the sandbox (a fork over it gets EAGAIN). */
int unotify_builder_max_processes(unotify_builder *b, uint32_t n);
/* At most `bytes` of memory (a program using more is killed). */
int unotify_builder_max_memory(unotify_builder *b, uint64_t bytes);
/* Denies a path (a file, or a directory and all beneath it): EACCES. */
int unotify_builder_deny_path(unotify_builder *b, const char *path);
/* Shows the program `dir` as `/`: every path is resolved inside it (and the
 * mounts) by the supervisor; no privileges needed. */
int unotify_builder_chroot(unotify_builder *b, const char *dir);
/* Shows host directory `host` at `virtual_path` in the chroot; read_only
 * non-zero: writes beneath it fail with EROFS. */
int unotify_builder_mount(unotify_builder *b, const char *virtual_path,
                          const char *host, int read_only);
/* The program's working directory inside the chroot (a path of the view). */
int unotify_builder_chroot_cwd(unotify_builder *b, const char *dir);

/* Copy-on-write work directory: the program sees `dir` and its own changes,
 * which go to an upper layer outside it (no privileges needed). At the end,
 * unotify_sandbox_finish commits, drops or keeps them as set below, or the
 * host decides itself with unotify_sandbox_changes, _commit, _abort, _keep. */
int unotify_builder_workdir(unotify_builder *b, const char *dir);
/* Where the upper layer and the commit journal live (default: next to the
 * work directory). */
int unotify_builder_cow_storage(unotify_builder *b, const char *path);
#define UNOTIFY_EXIT_COMMIT 0 /* apply the changes to the work directory */
#define UNOTIFY_EXIT_ABORT 1  /* drop them */
#define UNOTIFY_EXIT_KEEP 2   /* leave the upper layer, and say where */
/* After a successful run (default COMMIT) and a failed one (default ABORT). */
int unotify_builder_on_exit(unotify_builder *b, int action);
int unotify_builder_on_error(unotify_builder *b, int action);
/* Non-zero: unotify_sandbox_finish lists the changes and drops them. */
int unotify_builder_dry_run(unotify_builder *b, int on);
/* Caps the upper layer at `bytes`: writes past it fail with ENOSPC. */
int unotify_builder_max_disk(unotify_builder *b, uint64_t bytes);

#define UNOTIFY_CHANGE_ADDED 1
#define UNOTIFY_CHANGE_MODIFIED 2
#define UNOTIFY_CHANGE_DELETED 3
#define UNOTIFY_ENTRY_FILE 1
#define UNOTIFY_ENTRY_DIR 2
#define UNOTIFY_ENTRY_SYMLINK 3
#define UNOTIFY_ENTRY_OTHER 4 /* a FIFO, socket or device node */
/* Called once per changed path (relative to the work directory), in path
 * order; a non-zero return stops the listing. */
typedef int (*unotify_change_fn)(void *user, const char *path, int kind, int entry);
/* The changes so far (once the runs have ended: all of them). Returns
 * UNOTIFY_OK, a status (UNOTIFY_E_CONFIG: no work directory), or what `f`
 * returned to stop. */
int unotify_sandbox_changes(unotify_sandbox *s, unotify_change_fn f, void *user);
/* Applies the changes to the work directory (crash-safe: an interrupted
 * commit is finished by the next run, or `unotify cow-recover`). */
int unotify_sandbox_commit(unotify_sandbox *s);
/* Drops the changes. */
int unotify_sandbox_abort(unotify_sandbox *s);
/* Keeps the upper layer; its path goes to buf (UNOTIFY_E_TOO_LONG if len is
 * too small: it is kept all the same). */
int unotify_sandbox_keep(unotify_sandbox *s, char *buf, size_t len);
/* Settles a run that ended with `wait_status` (of unotify_child_wait) as the
 * builder said; *outcome (may be null) is the UNOTIFY_EXIT_* carried out,
 * and `f` (may be null) gets the changes committed or dropped. */
int unotify_sandbox_finish(unotify_sandbox *s, int wait_status, int *outcome,
                           unotify_change_fn f, void *user);
/* Appends one JSON object per trapped call to the file at `path`. */
int unotify_builder_audit(unotify_builder *b, const char *path);
/* Exec argv safety (non-zero: on). */
int unotify_builder_argv_safety(unotify_builder *b, int on);
/* A root program keeps all its capabilities (non-zero) instead of a few. */
int unotify_builder_keep_caps(unotify_builder *b, int on);
/* Accept a kernel without Landlock ABI 6 (weaker isolation from the host). */
int unotify_builder_allow_weak_isolation(unotify_builder *b, int on);
/* File system allow lists (Landlock): once any of these is given, the
 * program can read only beneath the read paths and write, create, remove
 * or rename only beneath the write paths (EACCES otherwise, by any name).
 * A path must exist (else unotify_sandbox_build fails, UNOTIFY_E_CONFIG).
 * unotify_builder_fs_system adds what a dynamic program needs to start
 * (/usr, /lib*, the loader's and name service files of /etc, /proc,
 * /dev/null...). */
int unotify_builder_fs_read(unotify_builder *b, const char *path);
int unotify_builder_fs_write(unotify_builder *b, const char *path);
int unotify_builder_fs_system(unotify_builder *b);
/* Accepts running without a Landlock right the kernel lacks, by name:
 * "filesystem" (ABI 1), "refer" (2), "truncate" (3), "network" (4),
 * "ioctl-dev" (5), "scoping" (6). Without it, a policy that needs the
 * right fails unotify_sandbox_build with UNOTIFY_E_UNSUPPORTED, naming
 * it. An unknown name is UNOTIFY_E_INVALID. */
int unotify_builder_allow_degraded(unotify_builder *b, const char *right);
/* Gives the terminal to the sandbox (non-zero; default 0): if the program
 * inherits a terminal on stdin and the host is in the foreground, the
 * sandbox's process group becomes the foreground group until it exits. */
int unotify_builder_foreground(unotify_builder *b, int on);
/* Determinism and identity (values checked at build: UNOTIFY_E_CONFIG).
 * The host name uname, /etc/hostname and /proc/sys/kernel/hostname show. */
int unotify_builder_hostname(unotify_builder *b, const char *name);
/* The CPU count sched_getaffinity, sysconf, /proc/cpuinfo and
 * /sys/devices/system/cpu/{online,possible} show (1 to 8192). */
int unotify_builder_num_cpus(unotify_builder *b, uint32_t n);
/* getrandom, /dev/urandom and /dev/random give a deterministic stream
 * derived from `seed` (not for keys). */
int unotify_builder_random_seed(unotify_builder *b, uint64_t seed);
/* getdents64 lists directories in name order (non-zero: on). */
int unotify_builder_deterministic_dirs(unotify_builder *b, int on);
/* The wall clock starts at `unix_seconds` and advances in real time
 * (clock_gettime, also through the vDSO, gettimeofday, time, absolute
 * clock_nanosleep). */
int unotify_builder_time_start(unotify_builder *b, int64_t unix_seconds);
/* Each port the program binds gets a free real port behind it; connects to
 * it on loopback and getsockname use the program's port (non-zero: on). */
int unotify_builder_port_remap(unotify_builder *b, int on);
/* Uses cgroups (non-zero, the default) where the host may make them: the
 * kernel then counts and limits every process and all memory of the
 * sandbox; 0: limits are charged at the trapped calls only. */
int unotify_builder_cgroups(unotify_builder *b, int on);
/* Tracks the sandbox's processes (forks are trapped even without a limit),
 * so that unotify_supervisor_pause can pause it. */
int unotify_builder_track_processes(unotify_builder *b);
/* Asks the kernel for sync wake-up of the supervisor (non-zero, the
 * default; 0 only to measure its effect). */
int unotify_builder_sync_wake_up(unotify_builder *b, int on);
/* (The Rust builder's landlock_abi_cap is a test knob, not part of the
 * interface, and has no C function.) */

/* ------------------------------------------------------ denied-path sets
 * A unotify_denied_paths is a set of denied paths (EACCES) shared by the
 * host's handle and every sandbox built with it: a change applies at once
 * to all of them, from any thread (a handler, a policy callback, a host
 * thread; thread-safe, no lock a supervisor holds while calling out).
 * Relative paths are taken from the host's current directory. A path's
 * identity (device, inode) is recorded when it is denied, so links to it
 * are denied too; a directory denies all beneath it. */
typedef struct unotify_denied_paths unotify_denied_paths;

/* *out = a new, empty set; free the handle with unotify_denied_paths_free
 * (sandboxes built with it keep the set alive as long as they need it). */
int unotify_denied_paths_new(unotify_denied_paths **out);
void unotify_denied_paths_free(unotify_denied_paths *s);
/* Denies path from now on; *added (if not null) = 1, or 0 if it already was. */
int unotify_denied_paths_deny(const unotify_denied_paths *s, const char *path, int *added);
/* Allows again a path denied with unotify_denied_paths_deny; UNOTIFY_E_CONFIG
 * if it was not (paths given to unotify_builder_deny_path stay denied). */
int unotify_denied_paths_allow(const unotify_denied_paths *s, const char *path);
/* *denied = 1 if path, resolved now by the host, is denied, else 0. */
int unotify_denied_paths_is_denied(const unotify_denied_paths *s, const char *path, int *denied);
/* *count = the number of denied paths in the set. */
int unotify_denied_paths_count(const unotify_denied_paths *s, size_t *count);
/* The sandbox enforces the set s (shared, not copied; the host keeps its
 * handle): path calls are trapped even while it is empty. Paths given to
 * unotify_builder_deny_path are added to it for good at build. */
int unotify_builder_denied_paths(unotify_builder *b, const unotify_denied_paths *s);

/* ------------------------------------------------------------ policy callback */

/* unotify_policy_event.category */
#define UNOTIFY_CATEGORY_FILE 0
#define UNOTIFY_CATEGORY_NETWORK 1
#define UNOTIFY_CATEGORY_PROCESS 2
#define UNOTIFY_CATEGORY_MEMORY 3

/* One trapped call as the policy callback sees it: every field was read
 * once by the supervisor and is what it decides on. Valid during the
 * callback only. */
typedef struct unotify_policy_event {
    const char *syscall;       /* "connect", "execve", ... */
    int category;              /* UNOTIFY_CATEGORY_* */
    uint32_t pid;              /* thread id of the caller */
    uint32_t parent_pid;       /* 0 if unknown */
    int addr_family;           /* AF_INET, AF_INET6, or 0 without an address */
    uint8_t addr[16];          /* network byte order (4 bytes for AF_INET) */
    int port;                  /* destination or bind port, -1 without one */
    int has_size;              /* whether size is set */
    uint64_t size;             /* a size argument (mmap length) */
    size_t argc;               /* exec arguments (argv is null when unknown) */
    const char *const *argv;   /* exec argv (read while the caller's memory
                                * could not change), null-terminated; each
                                * argument's exact bytes, not necessarily
                                * UTF-8 */
    int denied;                /* the supervisor had already denied it */
    int held;                  /* the call waits for this verdict; 0: it
                                * was answered already, a deny changes
                                * nothing for it */
} unotify_policy_event;

typedef struct unotify_policy_ctx unotify_policy_ctx;

/* unotify_policy_fn results */
#define UNOTIFY_VERDICT_ALLOW 0 /* let the supervisor's decision stand */
#define UNOTIFY_VERDICT_AUDIT 1 /* the same, and log it (target unotify::audit) */
/* ... or -errno (e.g. -EACCES) to deny with that errno; any other value
 * denies with EPERM. A verdict only tightens: allow never lets through a
 * call the supervisor denied. */

/* Told about each trapped call; exec, open, every call that creates,
 * changes or removes a file by path (creat, truncate, mkdir, mknod, rename,
 * unlink, rmdir, link, symlink, chmod, chown, utimes, setxattr families),
 * connect, bind and send wait for its verdict (up to 5 s, then EPERM): the
 * event's held is 1. Other calls are told after they were answered (held
 * is 0): their verdict is not enforced. A sendmmsg is told once per
 * distinct destination. Runs one event at a time, in order,
 * on the policy thread, or for a held call finding it idle on the worker
 * handling that call (not cut short at 5 s then: denied if it returns
 * later). `pc` narrows the running policy, valid during the call only.
 * Turns exec argv safety on. */
typedef int (*unotify_policy_fn)(void *user, const unotify_policy_event *ev,
                                 unotify_policy_ctx *pc);

/* Sets the policy callback (the last one set wins). */
int unotify_builder_policy(unotify_builder *b, unotify_policy_fn policy, void *user);

/* From a policy callback: destinations must from now on also lie in one of
 * the n networks ("10.0.0.0/8", "::1"; UNOTIFY_E_CONFIG for another form);
 * an empty list denies every destination. */
int unotify_policy_restrict_network(unotify_policy_ctx *pc, const char *const *cidrs, size_t n);
/* Re-admits networks after a restriction (never beyond the starting policy). */
int unotify_policy_grant_network(unotify_policy_ctx *pc, const char *const *cidrs, size_t n);
/* Restricts one process (by any of its thread ids) to the n networks. */
int unotify_policy_restrict_process_network(unotify_policy_ctx *pc, uint32_t pid,
                                            const char *const *cidrs, size_t n);
/* Lowers the process or memory limit (a higher value is ignored). */
int unotify_policy_restrict_max_processes(unotify_policy_ctx *pc, uint64_t n);
int unotify_policy_restrict_max_memory(unotify_policy_ctx *pc, uint64_t bytes);
/* Denies a path from now on, as unotify_builder_deny_path would have
 * (already denied: nothing changes) / allows again one denied this way
 * (UNOTIFY_E_CONFIG if it was not: paths denied at build stay denied). */
int unotify_policy_deny_path(unotify_policy_ctx *pc, const char *path);
int unotify_policy_allow_path(unotify_policy_ctx *pc, const char *path);

/* Builds the policy: *out = a sandbox (free with unotify_sandbox_free).
 * Frees b whether it succeeds or not. Reports every rule error here. */
int unotify_builder_build(unotify_builder *b, unotify_sandbox **out);
/* Frees a sandbox; children spawned from it keep running (they are freed
 * on their own). */
void unotify_sandbox_free(unotify_sandbox *s);

/* ----------------------------------------------------------------- command */

/* unotify_command_stdio modes */
#define UNOTIFY_STDIO_INHERIT 0 /* the host's own stream */
#define UNOTIFY_STDIO_NULL 1    /* /dev/null */
#define UNOTIFY_STDIO_FD 2      /* a duplicate of fd (the host keeps fd) */
#define UNOTIFY_STDIO_PIPE 3    /* a pipe; take the host's end with unotify_child_take_pipe */

/* *out = a command running `program` (searched on PATH unless it has a
 * '/'); argv[0] is `program`. Free with unotify_command_free. A command may
 * be spawned any number of times. */
int unotify_command_new(const char *program, unotify_command **out);
void unotify_command_free(unotify_command *c);
/* Appends one argument (argv[1], argv[2], ...). */
int unotify_command_arg(unotify_command *c, const char *arg);
/* Sets, removes, or clears (starts from empty) the program's environment,
 * which is otherwise the host's at spawn time. */
int unotify_command_env_set(unotify_command *c, const char *key, const char *value);
int unotify_command_env_unset(unotify_command *c, const char *key);
int unotify_command_env_clear(unotify_command *c);
/* Runs the program in directory `dir`. */
int unotify_command_cwd(unotify_command *c, const char *dir);
/* Where stream `which` (0 stdin, 1 stdout, 2 stderr) goes: a UNOTIFY_STDIO_*
 * mode; `fd` is read for UNOTIFY_STDIO_FD only (pass -1 otherwise). */
int unotify_command_stdio(unotify_command *c, int which, int mode, int fd);

/* ----------------------------------------------------------- spawn, child */

/* Starts cmd under s: *out = the running child, once it has exec'd
 * (UNOTIFY_E_NOT_FOUND / UNOTIFY_E_CANNOT_EXECUTE like a shell's 127/126).
 * The program gets SIGKILL when the spawning *thread* exits: spawn from a
 * thread that outlives the child. */
int unotify_sandbox_spawn(const unotify_sandbox *s, unotify_command *cmd, unotify_child **out);
/* Spawns and waits: *wait_status is a waitpid(2) status (WIFEXITED...). */
int unotify_sandbox_run(const unotify_sandbox *s, unotify_command *cmd, int *wait_status);

/* The program's process id (also the sandbox's process group id). */
int unotify_child_pid(unotify_child *c, int *pid);
/* *out_fd = a new pidfd of the program, for the host's own event loop
 * (epoll, libuv, asyncio: readable once it has exited); the host closes it.
 * Collect the exit with unotify_child_wait/try_wait, not waitpid. Only
 * before the exit is collected (then UNOTIFY_E_GONE: the pid may be another
 * process's by then). */
int unotify_child_pidfd(unotify_child *c, int *out_fd);
/* Waits at most timeout_ms (negative: no limit) for the program to exit:
 * *wait_status is its waitpid(2) status; UNOTIFY_E_TIMEOUT if it still
 * runs. When the program exits, what is left of the sandbox is killed and
 * its supervisor stops. */
int unotify_child_wait(unotify_child *c, int64_t timeout_ms, int *wait_status);
/* Without blocking: *exited = 1 and *wait_status set if it has exited,
 * else *exited = 0. */
int unotify_child_try_wait(unotify_child *c, int *exited, int *wait_status);
/* Kills the whole sandbox with SIGKILL; then collect it with a wait. */
int unotify_child_kill(unotify_child *c);
/* Takes the host's end of a UNOTIFY_STDIO_PIPE stream: *out_fd is an fd
 * the host closes, or -1 if that stream is no pipe or was taken. */
int unotify_child_take_pipe(unotify_child *c, int which, int *out_fd);

/* The supervisor's counters. */
typedef struct unotify_stats {
    uint64_t received;       /* notifications received */
    uint64_t answered;       /* answers the kernel accepted */
    uint64_t stale;          /* answers refused: the call was gone */
    uint64_t panics;         /* handlers that failed internally (EPERM) */
    uint64_t deferred;       /* deferrals admitted */
    uint64_t defer_rejected; /* deferrals refused, pool full (EAGAIN) */
    uint64_t defer_timeouts; /* deferrals past their deadline (EIO) */
    uint64_t held;           /* calls held now */
} unotify_stats;

/* *out = the child's supervisor counters (after the exit: as last seen
 * just before it was collected). */
int unotify_child_stats(unotify_child *c, unotify_stats *out);
/* Frees a child; one not yet waited for is killed and waited for first. */
void unotify_child_free(unotify_child *c);

/* --------------------------------------------------------------- supervisor
 * A unotify_supervisor does not keep its supervisor alive: once the
 * program has exited, its functions return UNOTIFY_E_GONE. Thread-safe;
 * safe to call from a handler (releasing another held call, say). */

/* *out = a handle on the child's supervisor (UNOTIFY_E_GONE after the
 * exit); free it with unotify_supervisor_free. */
int unotify_child_supervisor(unotify_child *c, unotify_supervisor **out);
/* The supervisor's counters. */
int unotify_supervisor_stats(const unotify_supervisor *s, unotify_stats *out);
/* Copies up to cap held calls into buf (buf may be null when cap is 0);
 * *count = how many are held (may exceed cap). */
int unotify_supervisor_held(const unotify_supervisor *s, unotify_notif *buf, size_t cap,
                            size_t *count);
/* Answers the held call `id` with *action (UNOTIFY_HOLD or UNOTIFY_DEFER:
 * EPERM). UNOTIFY_E_GONE if no such call is held (answered, never held, or
 * the supervisor stopped). */
int unotify_supervisor_release(const unotify_supervisor *s, uint64_t id,
                               const unotify_action *action);
/* Pauses the sandbox: every new fork is held and the sandbox's process
 * group is stopped (SIGSTOP). Needs fork tracking (unotify_builder_track_processes
 * or unotify_builder_max_processes; else UNOTIFY_E_CONFIG). */
int unotify_supervisor_pause(const unotify_supervisor *s);
/* Resumes a paused sandbox: answers the forks the pause held (counted
 * against the process limit now), then continues the group (SIGCONT);
 * *answered (if not null) = how many forks were answered. */
int unotify_supervisor_resume(const unotify_supervisor *s, size_t *answered);
/* Frees the handle (null: nothing); the supervisor runs on. */
void unotify_supervisor_free(unotify_supervisor *s);

#ifdef __cplusplus
}
#endif

#endif /* UNOTIFY_H */
