//! Exec argv safety: the ptrace freeze around exec and fork creation
//! tracking, checked from outside with small C programs.
//!
//! Argv safety is turned on by binding a handler to `execve` that reads
//! `argv[1]` and denies (`EPERM`) an exec whose first argument contains
//! `DENIED`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use unotify::{Command, HandlerCtx, NotifAction, Sandbox, SandboxBuilder, Stdio};

const PRELUDE: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
"#;

/// The tests of this file run one at a time: each stops and traces tasks
/// with ptrace, and their timing (a fork event expected within 2 ms) must
/// not depend on the load the others make on the 2 CPUs.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn program(name: &str, body: &str) -> PathBuf {
    common::build_c(name, &format!("{PRELUDE}\n{body}"), &["-pthread"])
}

/// The handler under test: reads `argv[1]` of an `execve` and denies the
/// call when it contains `DENIED`.
fn deny_word(cx: &HandlerCtx<'_>) -> NotifAction {
    let argv = cx.arg(1);
    let Ok(p) = cx.read_mem(argv + 8, 8) else {
        return NotifAction::Continue;
    };
    let ptr = u64::from_ne_bytes(p.try_into().expect("8 bytes"));
    if ptr == 0 {
        return NotifAction::Continue;
    }
    match cx.read_cstr(ptr, 256) {
        Ok(s) if s.windows(6).any(|w| w == b"DENIED") => NotifAction::Errno(libc::EPERM),
        Ok(_) => NotifAction::Continue,
        Err(_) => NotifAction::Errno(libc::EFAULT),
    }
}

fn guarded() -> SandboxBuilder {
    Sandbox::builder().handle("execve", deny_word)
}

/// Runs `exe args` under `sandbox`, returns (stdout, exit code).
fn run(sandbox: &Sandbox, exe: &Path, args: &[&str]) -> (String, i32) {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).expect("spawn");
    let out = common::read_all(&mut child.stdout);
    let status = child.wait().expect("wait");
    (out, status.code().unwrap_or(-1))
}

/// Appends its first argument, and a newline, to the file named by its
/// second, in one write.
const LOGARG: &str = r#"
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    char line[512];
    int n = snprintf(line, sizeof line, "%s\n", argv[1]);
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0 || write(fd, line, n) != n) return 3;
    return 0;
}
"#;

/// argv[1]: the logger; argv[2]: log file; argv[3]: attempts. Each attempt
/// forks a child with two threads: one flips the word of argv[1] between
/// "ALLOWEDX" and "DENIEDXX" (one aligned 64-bit store, never torn), the
/// other execs the logger with it.
const RACE: &str = r#"
static volatile uint64_t word[2];
static uint64_t allowed, denied;
static void *flip(void *arg) {
    (void)arg;
    for (;;) { word[0] = denied; word[0] = allowed; }
    return NULL;
}
int main(int argc, char **argv) {
    memcpy(&allowed, "ALLOWEDX", 8);
    memcpy(&denied, "DENIEDXX", 8);
    int attempts = atoi(argv[3]), ran = 0, refused = 0, other = 0;
    for (int i = 0; i < attempts; i++) {
        pid_t p = fork();
        if (p < 0) { other++; continue; }
        if (p == 0) {
            word[0] = allowed; word[1] = 0;
            pthread_t t;
            pthread_create(&t, NULL, flip, NULL);
            char *args[] = { argv[1], (char *)word, argv[2], NULL };
            execv(argv[1], args);
            _exit(errno == EPERM ? 100 : 101);
        }
        int st;
        waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ran++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 100) refused++;
        else other++;
    }
    printf("ran=%d refused=%d other=%d\n", ran, refused, other);
    return 0;
}
"#;

fn field(out: &str, name: &str) -> i64 {
    out.split_ascii_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {out:?}"))
}

#[test]
fn rewritten_argv_never_runs_a_denied_word() {
    let _serial = serial();
    assert_denied_word_never_runs(&guarded().build().unwrap());
}

#[test]
fn rewritten_argv_never_runs_a_word_the_policy_callback_denies() {
    let _serial = serial();
    // The same race, decided by a policy callback (as `--exec-deny` does):
    // argv safety is on because a callback exists, and the callback reads
    // the argv the supervisor copied while every writer was stopped.
    let sandbox = Sandbox::builder()
        .policy_fn(
            |ev: &unotify::policy::SyscallEvent, _cx: &mut unotify::policy::PolicyContext<'_>| {
                let denied = ev.argv.as_ref().is_some_and(|argv| {
                    argv.iter().any(|a| a.to_string_lossy().contains("DENIED"))
                });
                if denied {
                    unotify::policy::Verdict::Deny
                } else {
                    unotify::policy::Verdict::Allow
                }
            },
        )
        .build()
        .unwrap();
    assert_denied_word_never_runs(&sandbox);
}

/// Runs the argv race under `sandbox`: a thread flips argv[1] between an
/// allowed and a denied word while another execs, 300 times. No denied word
/// may run; allowed ones must.
fn assert_denied_word_never_runs(sandbox: &Sandbox) {
    let _w = common::watchdog(Duration::from_secs(120), "argv race");
    let logger = program("logarg", LOGARG);
    let race = program("argv_race", RACE);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (out, code) = run(
        sandbox,
        &race,
        &[logger.to_str().unwrap(), log.to_str().unwrap(), "300"],
    );
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        !lines.iter().any(|l| l.contains("DENIED")),
        "a denied word ran: {:?}",
        lines
            .iter()
            .filter(|l| l.contains("DENIED"))
            .collect::<Vec<_>>()
    );
    let ran = field(&out, "ran");
    let refused = field(&out, "refused");
    assert_eq!(field(&out, "other"), 0, "{out}");
    assert_eq!(ran + refused, 300, "{out}");
    assert_eq!(
        lines.len() as i64,
        ran,
        "every allowed exec logged once: {out}"
    );
    assert!(ran > 0, "allowed words run: {out}");
    assert!(lines.iter().all(|l| *l == "ALLOWEDX"), "{lines:?}");
    eprintln!("argv race: {out}");
}

/// argv[1]: "main" or "thread" (which thread execs); argv[2]: program to
/// exec. 16 threads spin (8) or sleep (8) meanwhile.
const MANY_THREADS: &str = r#"
static void *spin(void *arg) { volatile unsigned long n = 0; (void)arg; for (;;) n++; return NULL; }
static void *nap(void *arg) { (void)arg; for (;;) usleep(1000); return NULL; }
static char *prog;
static void *do_exec(void *arg) {
    (void)arg;
    char *args[] = { prog, "exec-done", NULL };
    execv(prog, args);
    printf("exec failed: %s\n", strerror(errno));
    exit(1);
}
int main(int argc, char **argv) {
    prog = argv[2];
    pthread_t t;
    for (int i = 0; i < 16; i++) pthread_create(&t, NULL, i % 2 ? spin : nap, NULL);
    usleep(20000);
    if (strcmp(argv[1], "thread") == 0) {
        pthread_create(&t, NULL, do_exec, NULL);
        for (;;) pause();
    }
    do_exec(NULL);
    return 1;
}
"#;

#[test]
fn process_with_16_threads_execs_promptly() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "16-thread exec");
    let exe = program("many_threads_exec", MANY_THREADS);
    let echo = Path::new("/bin/echo");
    let sandbox = guarded().build().unwrap();
    for who in ["main", "thread"] {
        let t = Instant::now();
        let (out, code) = run(&sandbox, &exe, &[who, echo.to_str().unwrap()]);
        let took = t.elapsed();
        assert_eq!(code, 0, "{who}: {out}");
        assert_eq!(out.trim(), "exec-done", "{who}");
        assert!(took < Duration::from_secs(5), "{who}: took {took:?}");
        eprintln!("16 threads, {who} thread execs: {took:?}");
    }
}

/// Threads count up; the main thread tries a PATH search for a missing
/// program (ENOENT), then checks that every task runs untraced and that
/// the threads go on counting.
const FAILED_EXEC: &str = r#"
static volatile unsigned long counters[4];
static void *count(void *arg) {
    volatile unsigned long *c = arg;
    for (;;) { (*c)++; if (*c % 1024 == 0) usleep(100); }
    return NULL;
}
static int check_tasks(void) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int bad = 0, n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *st = strstr(buf, "State:"), *tr = strstr(buf, "TracerPid:");
        n++;
        if (!st || !tr || atoi(tr + 10) != 0 || strchr("tT", st[7])) {
            bad++;
            printf("task %s: %.12s %.16s\n", e->d_name, st ? st : "?", tr ? tr : "?");
        }
    }
    closedir(d);
    printf("tasks=%d bad=%d\n", n, bad);
    return bad;
}
int main(void) {
    pthread_t t;
    for (int i = 0; i < 4; i++) pthread_create(&t, NULL, count, (void *)&counters[i]);
    usleep(20000);
    int fails = 0;
    for (int i = 0; i < 20; i++) {
        char *args[] = { "unotify-no-such-program", NULL };
        execvp(args[0], args);
        if (errno == ENOENT) fails++;
    }
    unsigned long before[4];
    for (int i = 0; i < 4; i++) before[i] = counters[i];
    usleep(50000);
    int moving = 0;
    for (int i = 0; i < 4; i++) moving += counters[i] != before[i];
    printf("enoent=%d moving=%d\n", fails, moving);
    return check_tasks() ? 1 : 0;
}
"#;

#[test]
fn failed_exec_leaves_nothing_stopped() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "failed exec");
    let exe = program("failed_exec_threads", FAILED_EXEC);
    let sandbox = guarded().build().unwrap();
    let (out, code) = run(&sandbox, &exe, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "enoent"), 20, "{out}");
    assert_eq!(
        field(&out, "moving"),
        4,
        "threads run after the failed exec: {out}"
    );
    assert_eq!(field(&out, "tasks"), 5, "{out}");
    assert_eq!(field(&out, "bad"), 0, "{out}");
}

/// argv[1]: processes; argv[2]: seconds. Each process forks and execs
/// /bin/true in a loop; counts forks, exec failures, errors.
const FORK_EXEC_LOAD: &str = r#"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    int procs = atoi(argv[1]);
    double secs = atof(argv[2]);
    int fds[2];
    pipe(fds);
    for (int i = 0; i < procs; i++) {
        if (fork() == 0) {
            double end = now() + secs;
            int runs = 0, errs = 0;
            while (now() < end) {
                pid_t p = fork();
                if (p < 0) { errs++; continue; }
                if (p == 0) {
                    char *args[] = { "/bin/true", "ok", NULL };
                    execv(args[0], args);
                    _exit(errno == EPERM ? 100 : 101);
                }
                int st;
                if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) errs++;
                else runs++;
            }
            char line[64];
            int n = snprintf(line, sizeof line, "%d %d\n", runs, errs);
            write(fds[1], line, n);
            _exit(0);
        }
    }
    close(fds[1]);
    int runs = 0, errs = 0, a, b;
    FILE *f = fdopen(fds[0], "r");
    while (fscanf(f, "%d %d", &a, &b) == 2) { runs += a; errs += b; }
    while (wait(NULL) > 0) {}
    printf("runs=%d errs=%d\n", runs, errs);
    return 0;
}
"#;

#[test]
fn eight_processes_fork_and_exec_without_spurious_errors() {
    let _serial = serial();
    let secs = std::env::var("ARGV_SAFETY_LOAD_SECS").unwrap_or_else(|_| "3".into());
    let limit = Duration::from_secs(60 + 3 * secs.parse::<u64>().unwrap_or(3));
    let _w = common::watchdog(limit, "fork+exec load");
    let exe = program("fork_exec_load", FORK_EXEC_LOAD);
    let sandbox = guarded().build().unwrap();
    let t = Instant::now();
    let (out, code) = run(&sandbox, &exe, &["8", &secs]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        field(&out, "errs"),
        0,
        "no spurious EPERM or failure: {out}"
    );
    assert!(field(&out, "runs") > 8, "{out}");
    eprintln!(
        "8 processes fork+exec for {secs} s: {out} (total {:?})",
        t.elapsed()
    );
}

/// Forks that fail: clone with an invalid flag combination (the kernel
/// refuses it after CONTINUE: no creation event) and forks beyond the
/// process limit (EAGAIN). Then a fork that works.
const FAILING_FORKS: &str = r#"
int main(void) {
    int einval = 0, eagain = 0, ok = 0;
    for (int i = 0; i < 50; i++) {
        /* CLONE_SIGHAND without CLONE_VM: EINVAL from the kernel. */
        long r = syscall(SYS_clone, CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0);
        if (r == 0) _exit(0);
        if (r < 0 && errno == EINVAL) einval++;
    }
    int fds[2];
    pipe(fds);
    pid_t held = fork();
    if (held == 0) { char c; close(fds[1]); read(fds[0], &c, 1); _exit(0); }
    for (int i = 0; i < 20; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p < 0 && errno == EAGAIN) eagain++;
        else if (p > 0) waitpid(p, NULL, 0);
    }
    close(fds[1]);
    waitpid(held, NULL, 0);
    for (int i = 0; i < 5; i++) {
        pid_t p = fork();
        if (p == 0) _exit(7);
        int st;
        if (p > 0 && waitpid(p, &st, 0) == p && WEXITSTATUS(st) == 7) ok++;
    }
    printf("einval=%d eagain=%d ok=%d\n", einval, eagain, ok);
    return 0;
}
"#;

#[test]
fn failed_forks_do_not_hang_or_leak_the_count() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "failing forks");
    let exe = program("failing_forks", FAILING_FORKS);
    let sandbox = guarded().max_processes(2).build().unwrap();
    let t = Instant::now();
    let (out, code) = run(&sandbox, &exe, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "einval"), 50, "{out}");
    assert_eq!(field(&out, "eagain"), 20, "{out}");
    assert_eq!(field(&out, "ok"), 5, "the count was not leaked: {out}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
}

/// Defer on an exec under argv safety is refused with EPERM.
#[test]
fn defer_on_exec_is_refused() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "defer on exec");
    let exe = program(
        "exec_errno",
        r#"
int main(void) {
    char *args[] = { "/bin/true", NULL };
    execv(args[0], args);
    printf("errno=%d\n", errno);
    return 0;
}
"#,
    );
    let sandbox = Sandbox::builder()
        .handle("execve", |cx: &HandlerCtx<'_>| {
            // Let the sandbox's own start-up exec through.
            if cx.read_cstr(cx.arg(0), 64).is_ok_and(|p| p == b"/bin/true") {
                NotifAction::defer(|| NotifAction::Continue)
            } else {
                NotifAction::Continue
            }
        })
        .build()
        .unwrap();
    let (out, code) = run(&sandbox, &exe, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "errno"), libc::EPERM as i64, "{out}");
}

/// Control: without argv safety the same race lets denied words run (the
/// check above would catch a broken freeze).
#[test]
fn without_argv_safety_the_race_is_real() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "argv race control");
    let logger = program("logarg", LOGARG);
    let race = program("argv_race", RACE);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let sandbox = guarded().argv_safety(false).build().unwrap();
    let (out, code) = run(
        &sandbox,
        &race,
        &[logger.to_str().unwrap(), log.to_str().unwrap(), "300"],
    );
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let denied = text.lines().filter(|l| l.contains("DENIED")).count();
    eprintln!(
        "without argv safety: {}, {denied} denied words ran",
        out.trim()
    );
    assert!(denied > 0, "the race never showed: {out}");
}

/// posix_spawnp (a vfork-style clone) of a name found only at the end of
/// PATH: the child's first execs fail (ENOENT) while its parent sleeps
/// uninterruptibly in the vfork wait, then one succeeds.
const SPAWN_SEARCH: &str = r#"
#include <spawn.h>
extern char **environ;
int main(int argc, char **argv) {
    int n = atoi(argv[1]), ok = 0;
    setenv("PATH", "/unotify-missing-1:/unotify-missing-2:/usr/bin:/bin", 1);
    for (int i = 0; i < n; i++) {
        pid_t p;
        char *args[] = { "true", NULL };
        if (posix_spawnp(&p, "true", NULL, NULL, args, environ) != 0) continue;
        int st;
        if (waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
    }
    printf("ok=%d\n", ok);
    return 0;
}
"#;

#[test]
fn vfork_parent_of_a_failing_path_search_does_not_stall() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "posix_spawnp search");
    let exe = program("spawn_search", SPAWN_SEARCH);
    for workers in [1, 2] {
        let sandbox = guarded().workers(workers).build().unwrap();
        let t = Instant::now();
        let (out, code) = run(&sandbox, &exe, &["30"]);
        let took = t.elapsed();
        assert_eq!(code, 0, "{out}");
        assert_eq!(field(&out, "ok"), 30, "{out}");
        assert!(
            took < Duration::from_secs(10),
            "{workers} worker(s): took {took:?}"
        );
        eprintln!("30 posix_spawnp path searches, {workers} worker(s): {took:?}");
    }
}

// ---------------------------------------------------------------------------
// Concurrent fork and exec, as a user runs them through `unotify run`: no
// stall, no false refusal, no hang, no warning.
// ---------------------------------------------------------------------------

/// What one `unotify run` (or bare) run gave.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `prog args` in `dir` under `unotify run <policy> --`, or bare
/// with an empty `policy` of `None`.
fn cli(policy: Option<&[&str]>, prog: &str, args: &[&str], dir: &Path) -> Ran {
    let mut cmd = match policy {
        Some(p) => {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_unotify"));
            c.arg("run").args(p).arg("--").arg(prog);
            c
        }
        None => std::process::Command::new(prog),
    };
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    let t = Instant::now();
    let out = cmd.output().expect("run");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t.elapsed(),
    }
}

/// Same outcome as bare, nothing on stderr that bare did not print, within
/// `limit`.
fn assert_like_bare(what: &str, sandboxed: &Ran, bare: &Ran, limit: Duration) {
    assert_eq!(
        sandboxed.code, bare.code,
        "{what}: exit code; stderr:\n{}",
        sandboxed.stderr
    );
    assert_eq!(
        sandboxed.stderr, bare.stderr,
        "{what}: warning or error lines"
    );
    assert!(
        sandboxed.took < limit,
        "{what}: took {:?} (bare {:?})",
        sandboxed.took,
        bare.took
    );
    eprintln!("{what}: {:?} (bare {:?})", sandboxed.took, bare.took);
}

const DENY_PATH: &[&str] = &["--deny-path", "/etc/shadow"];
const EXEC_DENY: &[&str] = &["--exec-deny", "nosuchword"];

#[test]
fn make_j8_of_a_c_project_like_bare() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(240), "make -j8");
    let dir = tempfile::tempdir().unwrap();
    common::c_project(dir.path(), 12);
    let want = format!("sum={}", common::c_project_sum(12));
    let bare = cli(None, "make", &["-s", "-j8"], dir.path());
    assert_eq!(bare.code, 0, "{}", bare.stderr);
    for policy in [DENY_PATH, EXEC_DENY] {
        let clean = cli(None, "make", &["-s", "clean"], dir.path());
        assert_eq!(clean.code, 0);
        let ran = cli(Some(policy), "make", &["-s", "-j8"], dir.path());
        assert_like_bare(
            &format!("make -j8 {policy:?}"),
            &ran,
            &bare,
            Duration::from_secs(60),
        );
        let prog = cli(None, "./prog", &[], dir.path());
        assert_eq!(prog.stdout.trim(), want);
    }
}

#[test]
fn sixteen_concurrent_shells_each_running_two_programs() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "16 shells");
    let script = r#"for i in $(seq 16); do sh -c "/bin/true; /bin/echo ran" & done; wait"#;
    let dir = std::env::temp_dir();
    let bare = cli(None, "sh", &["-c", script], &dir);
    for policy in [EXEC_DENY, DENY_PATH] {
        for _ in 0..3 {
            let ran = cli(Some(policy), "sh", &["-c", script], &dir);
            assert_like_bare(
                &format!("16 shells {policy:?}"),
                &ran,
                &bare,
                Duration::from_secs(10),
            );
            assert_eq!(ran.stdout.lines().filter(|l| *l == "ran").count(), 16);
        }
    }
}

#[test]
fn xargs_p8_of_short_programs() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "xargs -P8");
    let script = "seq 200 | xargs -P8 -n1 /bin/echo";
    let dir = std::env::temp_dir();
    let bare = cli(None, "sh", &["-c", script], &dir);
    for policy in [EXEC_DENY, DENY_PATH] {
        let ran = cli(Some(policy), "sh", &["-c", script], &dir);
        assert_like_bare(
            &format!("xargs -P8 {policy:?}"),
            &ran,
            &bare,
            Duration::from_secs(30),
        );
        let mut got: Vec<i32> = ran.stdout.lines().filter_map(|l| l.parse().ok()).collect();
        got.sort();
        assert_eq!(got, (1..=200).collect::<Vec<_>>());
    }
}

#[test]
fn threaded_python_subprocess_pool() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(180), "python pool");
    // Threads start programs at once: vfork children of one multi-threaded
    // parent, sharing its memory until they exec.
    let script = r#"
import subprocess, concurrent.futures as cf
def run(i):
    return subprocess.run(["/bin/echo", str(i)], capture_output=True, text=True).stdout.strip() == str(i)
with cf.ThreadPoolExecutor(8) as pool:
    ok = sum(pool.map(run, range(96)))
print(f"ok={ok}")
"#;
    let dir = std::env::temp_dir();
    let bare = cli(None, "python3", &["-c", script], &dir);
    assert_eq!(bare.stdout.trim(), "ok=96", "{}", bare.stderr);
    for policy in [EXEC_DENY, DENY_PATH] {
        let ran = cli(Some(policy), "python3", &["-c", script], &dir);
        assert_like_bare(
            &format!("python pool {policy:?}"),
            &ran,
            &bare,
            Duration::from_secs(60),
        );
        assert_eq!(ran.stdout.trim(), "ok=96");
    }
}

// ---------------------------------------------------------------------------
// Writers outside the caller's address space.
// ---------------------------------------------------------------------------

/// argv[1]: attempts. A debugger inside: each attempt forks a child and
/// tries to trace it (SEIZE, ATTACH) and a grandchild tries TRACEME.
const TRACER: &str = r#"
#include <sys/ptrace.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]), traced = 0, eperm = 0;
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c == 0) { pause(); _exit(0); }
        if (ptrace(PTRACE_SEIZE, c, 0, 0) == 0) { traced++; ptrace(PTRACE_DETACH, c, 0, 0); }
        else if (errno == EPERM) eperm++;
        if (ptrace(PTRACE_ATTACH, c, 0, 0) == 0) { traced++; waitpid(c, NULL, __WALL); ptrace(PTRACE_DETACH, c, 0, 0); }
        else if (errno == EPERM) eperm++;
        kill(c, SIGKILL);
        waitpid(c, NULL, 0);
        pid_t t = fork();
        if (t == 0) _exit(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0 ? 1 : 0);
        int st;
        waitpid(t, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 1) traced++; else eperm++;
    }
    printf("traced=%d eperm=%d\n", traced, eperm);
    return 0;
}
"#;

#[test]
fn a_debugger_inside_is_refused_clearly() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "ptrace inside");
    let exe = program("tracer_inside", TRACER);
    let (out, code) = run(&guarded().build().unwrap(), &exe, &["20"]);
    assert_eq!(code, 0, "{out}");
    eprintln!("ptrace inside: {}", out.trim());
    assert_eq!(field(&out, "traced"), 0, "{out}");
    assert_eq!(field(&out, "eperm"), 60, "{out}");
}

/// argv[1]: logger; argv[2]: log; argv[3]: attempts; argv[4]: "mem" (flip
/// through /proc/<child>/mem) or "shared" (flip a MAP_SHARED page). Each
/// attempt forks a single-threaded child that execs the logger with
/// argv[1] in that memory, while the parent, another process that no
/// freeze of the child stops, flips the word between an allowed and a
/// denied one.
const CROSS_RACE: &str = r#"
#include <sys/mman.h>
static uint64_t allowed, denied;
static volatile uint64_t word[2];
int main(int argc, char **argv) {
    memcpy(&allowed, "ALLOWEDX", 8);
    memcpy(&denied, "DENIEDXX", 8);
    int attempts = atoi(argv[3]), mem = strcmp(argv[4], "mem") == 0;
    volatile uint64_t *w = word;
    if (!mem) {
        w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (w == MAP_FAILED) return 9;
    }
    int opened = 0, refused_open = 0, ran = 0, refused = 0, killed = 0, other = 0;
    for (int i = 0; i < attempts; i++) {
        w[0] = allowed; w[1] = 0;
        int go[2];
        pipe(go);
        pid_t p = fork();
        if (p == 0) {
            char c;
            close(go[1]);
            read(go[0], &c, 1);
            char *args[] = { argv[1], (char *)w, argv[2], NULL };
            execv(argv[1], args);
            _exit(errno == EPERM ? 100 : 101);
        }
        close(go[0]);
        int fd = -1;
        if (mem) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/mem", p);
            fd = open(path, O_RDWR);
            if (fd >= 0) opened++; else refused_open++;
        }
        write(go[1], "x", 1);
        close(go[1]);
        int st;
        for (unsigned long k = 0; waitpid(p, &st, WNOHANG) == 0; k++) {
            uint64_t v = (k & 1) ? denied : allowed;
            if (mem) { if (fd >= 0) pwrite(fd, &v, 8, (off_t)(uintptr_t)w); }
            else w[0] = v;
        }
        if (fd >= 0) close(fd);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ran++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 100) refused++;
        else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) killed++;
        else other++;
    }
    printf("opened=%d refused_open=%d ran=%d refused=%d killed=%d other=%d\n",
           opened, refused_open, ran, refused, killed, other);
    return 0;
}
"#;

/// Runs the cross-process race; returns (output, denied words that ran).
fn cross_race(mode: &str, attempts: &str) -> (String, usize) {
    let logger = program("logarg", LOGARG);
    let race = program("cross_race", CROSS_RACE);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (out, code) = run(
        &guarded().build().unwrap(),
        &race,
        &[
            logger.to_str().unwrap(),
            log.to_str().unwrap(),
            attempts,
            mode,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let denied = text.lines().filter(|l| l.contains("DENIED")).count();
    eprintln!("{mode} race: {} denied-ran={denied}", out.trim());
    (out, denied)
}

#[test]
fn another_process_cannot_write_argv_through_proc_mem() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "proc mem race");
    let (out, denied) = cross_race("mem", "200");
    assert_eq!(denied, 0, "denied words ran: {out}");
    assert_eq!(field(&out, "opened"), 0, "{out}");
    assert_eq!(field(&out, "other"), 0, "{out}");
}

#[test]
fn a_shared_page_rewritten_during_exec_is_caught_at_the_exec_event() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "shared page race");
    let (out, denied) = cross_race("shared", "300");
    assert_eq!(denied, 0, "denied words ran: {out}");
    assert_eq!(field(&out, "other"), 0, "{out}");
    assert!(field(&out, "ran") > 0, "allowed words run: {out}");
}

/// Kernel-side writers a freeze cannot stop are refused: AIO, io_uring,
/// userfaultfd (the syscall, and the device: its open for writing, and
/// its request from an fd opened read-only, which is not trapped).
const KERNEL_WRITERS: &str = r#"
#include <linux/aio_abi.h>
#include <sys/ioctl.h>
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
int main(void) {
    int got = 0, eperm = 0;
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, 8, &ctx) == 0) got++; else if (errno == EPERM) eperm++;
    if (syscall(SYS_io_submit, ctx, 0, NULL) >= 0) got++; else if (errno == EPERM) eperm++;
    char params[120] = {0};
    long r = syscall(SYS_io_uring_setup, 4, params);
    if (r >= 0) got++; else if (errno == EPERM) eperm++;
    r = syscall(SYS_userfaultfd, 0);
    if (r >= 0) got++; else if (errno == EPERM) eperm++;
    /* The device: refused like a denied file. */
    r = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (r >= 0) got++; else if (errno == EACCES) eperm++;
    /* Read-only: opened (not trapped), but it cannot make a userfaultfd. */
    int dev = open("/dev/userfaultfd", O_RDONLY | O_CLOEXEC);
    if (dev >= 0) {
        r = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
        if (r >= 0) got++; else if (errno == EPERM) eperm++;
        close(dev);
    } else if (errno == EACCES) eperm++;
    printf("got=%d eperm=%d\n", got, eperm);
    return 0;
}
"#;

#[test]
fn kernel_side_writers_are_refused() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "kernel writers");
    let exe = program("kernel_writers", KERNEL_WRITERS);
    let (out, code) = run(&guarded().build().unwrap(), &exe, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "got"), 0, "{out}");
    assert_eq!(field(&out, "eperm"), 6, "{out}");
}

/// argv[1]: how many read-only opens of argv[2]. Then tries to open its
/// own `/proc/self/mem` for writing, says how both went, and waits for
/// its input to close.
const READS_THEN_MEM: &str = r#"
int main(int argc, char **argv) {
    int n = atoi(argv[1]), read_ok = 0;
    for (int i = 0; i < n; i++) {
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (fd >= 0) { read_ok++; close(fd); }
    }
    int mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    printf("read_ok=%d mem_opened=%d\n", read_ok, mem >= 0);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
"#;

#[test]
fn argv_safety_alone_traps_no_read_only_open() {
    // Nothing is denied: path denial is there only to refuse an open that
    // could write an exec caller's memory, and a read-only open cannot
    // (its flags are in a register the filter checks). Such opens are not
    // trapped; an open of a procfs `mem` file for writing still is, and
    // is refused.
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "untrapped reads");
    let exe = program("reads_then_mem", READS_THEN_MEM);
    let sandbox = guarded().build().unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["500", "/etc/passwd"])
        .stdin(Stdio::Piped)
        .stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).expect("spawn");
    let rx = common::line_reader(child.stdout.take().unwrap());
    let line = common::next_line(&rx, Duration::from_secs(30), "opens");
    let received = child
        .supervisor()
        .and_then(|s| s.stats())
        .map_or(0, |s| s.received);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(field(&line, "read_ok"), 500, "{line}");
    assert_eq!(field(&line, "mem_opened"), 0, "{line}");
    // The launcher's exec and the write open; none of the 500 reads.
    assert!(
        received < 20,
        "{received} calls trapped for 500 read-only opens"
    );
}

/// argv[1]: arguments before the last. Execs /bin/echo with that many
/// "x" and then "DENIEDWORD"; prints the errno if the exec fails.
const LONG_ARGV: &str = r#"
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    char **args = calloc(n + 3, sizeof *args);
    args[0] = "/bin/echo";
    for (int i = 1; i <= n; i++) args[i] = "x";
    args[n + 1] = "DENIEDWORD";
    execv(args[0], args);
    printf("errno=%d\n", errno);
    return 0;
}
"#;

#[test]
fn the_whole_argv_is_read_for_the_decision() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "long argv");
    let exe = program("long_argv", LONG_ARGV);
    let dir = std::env::temp_dir();
    let exe = exe.to_str().unwrap();
    let mut ran = 0;
    for n in ["10", "5000", "20000"] {
        let r = cli(Some(&["--exec-deny", "DENIEDWORD"]), exe, &[n], &dir);
        if r.stdout.contains("DENIEDWORD") {
            ran += 1;
        } else {
            assert!(r.stdout.contains("errno=1"), "{n}: {}", r.stdout);
        }
    }
    assert_eq!(ran, 0, "a denied word past the first 4096 arguments ran");
}

// ---------------------------------------------------------------------------
// Writers sharing the exec caller's memory without being its threads.
// ---------------------------------------------------------------------------

/// argv[1]: logger; argv[2]: log; argv[3]: attempts; argv[4]: mode.
/// Each attempt runs in a fresh process group:
/// - "vm-child": a CLONE_VM child execs the logger while its parent flips
///   the word;
/// - "vm-parent": the parent execs while its CLONE_VM child flips;
/// - "vm-sibling": a CLONE_VM | CLONE_VFORK | CLONE_PARENT child (its
///   creator's sibling) execs while another thread of its creator flips;
/// - "vfork": a vfork child execs while another thread of its parent flips.
///
/// - "clone3": a plain fork through `clone3`.
///
/// A `clone` refused with `EPERM`, or a `clone3` with `ENOSYS`, counts as
/// `clone-refused`.
const SHARED_VM_RACE: &str = r#"
static uint64_t allowed, denied;
static volatile uint64_t word[2];
static char *logger, *logfile;
static volatile int stop;
static int exec_logger(void *arg) {
    (void)arg;
    char *args[] = { logger, (char *)word, logfile, NULL };
    execv(logger, args);
    _exit(errno == EPERM ? 100 : 101);
}
static int flip_forever(void *arg) { (void)arg; for (;;) { word[0] = denied; word[0] = allowed; } return 0; }
static void *flip_thread(void *arg) { (void)arg; while (!stop) { word[0] = denied; word[0] = allowed; } return NULL; }
static int code_of(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) return 137;
    return 102;
}
static void attempt(const char *mode) {
    setpgid(0, 0);
    word[0] = allowed; word[1] = 0;
    static char stack[65536] __attribute__((aligned(16)));
    int st;
    if (strcmp(mode, "vm-child") == 0) {
        pid_t c = clone(exec_logger, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL);
        if (c < 0) _exit(errno == EPERM ? 104 : 103);
        do {
            for (int k = 0; k < 4096; k++) { word[0] = denied; word[0] = allowed; }
        } while (waitpid(c, &st, WNOHANG) == 0);
        _exit(code_of(st));
    } else if (strcmp(mode, "vm-parent") == 0) {
        if (clone(flip_forever, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL) < 0)
            _exit(errno == EPERM ? 104 : 103);
        exec_logger(NULL);
    } else if (strcmp(mode, "clone3") == 0) {
        /* Any clone3 (here a plain fork): its flags are read from memory. */
        uint64_t args[11] = { 0 };
        args[4] = SIGCHLD; /* exit_signal */
        long r = syscall(SYS_clone3, args, sizeof args);
        if (r == 0) _exit(0);
        if (r > 0) { waitpid(r, &st, 0); _exit(0); }
        _exit(errno == ENOSYS ? 104 : 103);
    } else if (strcmp(mode, "vm-sibling") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, flip_thread, NULL);
        pid_t c = clone(exec_logger, stack + sizeof stack, CLONE_VM | CLONE_VFORK | CLONE_PARENT, NULL);
        stop = 1;
        pthread_join(t, NULL);
        _exit(c < 0 ? (errno == EPERM ? 104 : 103) : 0);
    } else {
        pthread_t t;
        pthread_create(&t, NULL, flip_thread, NULL);
        pid_t c = vfork();
        if (c == 0) exec_logger(NULL);
        waitpid(c, &st, 0);
        stop = 1;
        pthread_join(t, NULL);
        _exit(code_of(st));
    }
}
int main(int argc, char **argv) {
    memcpy(&allowed, "ALLOWEDX", 8);
    memcpy(&denied, "DENIEDXX", 8);
    logger = argv[1];
    logfile = argv[2];
    int attempts = atoi(argv[3]), ran = 0, refused = 0, killed = 0, other = 0, clone_refused = 0;
    for (int i = 0; i < attempts; i++) {
        pid_t p = fork();
        if (p == 0) attempt(argv[4]);
        int st;
        waitpid(p, &st, 0);
        kill(-p, SIGKILL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        int c = code_of(st);
        if (c == 0) ran++; else if (c == 100) refused++; else if (c == 137) killed++;
        else if (c == 104) clone_refused++; else other++;
    }
    printf("ran=%d refused=%d killed=%d other=%d clone-refused=%d\n", ran, refused, killed, other, clone_refused);
    return 0;
}
"#;

#[test]
fn tasks_sharing_the_callers_memory_are_frozen() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(240), "shared vm race");
    let logger = program("logarg", LOGARG);
    let race = program("shared_vm_race", SHARED_VM_RACE);
    for mode in ["vm-child", "vm-parent", "vm-sibling", "clone3", "vfork"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let (out, code) = run(
            &guarded().build().unwrap(),
            &race,
            &[logger.to_str().unwrap(), log.to_str().unwrap(), "150", mode],
        );
        assert_eq!(code, 0, "{mode}: {out}");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let denied = text.lines().filter(|l| l.contains("DENIED")).count();
        eprintln!("{mode} race: {} denied-ran={denied}", out.trim());
        assert_eq!(denied, 0, "{mode}: denied words ran: {out}");
        assert_eq!(field(&out, "other"), 0, "{mode}: {out}");
        if mode == "vfork" {
            // Frozen, the writer changes nothing between the copy and the
            // kernel's read: nothing to kill at the exec event.
            assert_eq!(field(&out, "killed"), 0, "{mode}: {out}");
            assert!(field(&out, "ran") > 0, "{mode}: {out}");
        } else {
            // Memory shared other than as a thread or a vfork child of
            // its creator: refused at the clone (see `freeze::install`).
            assert_eq!(field(&out, "clone-refused"), 150, "{mode}: {out}");
        }
    }
}

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn exec_watchers_are_used_and_end_with_their_supervisor() {
    let _serial = serial();
    const WATCHER: &str = "unotify-ptrace-";
    let settle = |want: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while threads_named(WATCHER) > want && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        threads_named(WATCHER)
    };
    // (The comm is cut at 15 bytes: "unotify-ptrace-" is a watcher,
    // "unotify-ptrace" the tracer.)
    let before = settle(0);
    let sandbox = guarded().build().unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do /bin/true & done; wait; exec sleep 2",
    ]);
    let mut child = sandbox.spawn(&mut cmd).expect("spawn");
    // While the program sleeps, its supervisor's watchers wait for work.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut during = threads_named(WATCHER);
    while during <= before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        during = threads_named(WATCHER);
    }
    assert!(
        during > before,
        "execs were awaited by watcher threads ({before} before, {during} during the run)"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(child);
    drop(sandbox);
    assert_eq!(
        settle(before),
        before,
        "watcher threads outlived their supervisor"
    );
}

#[test]
fn scripts_run_with_their_arguments() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(60), "scripts");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("greet");
    std::fs::write(&script, "#!/bin/sh\necho \"greet:$*\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = script.to_str().unwrap();
    // Run directly (the launcher's exec), by a shell (a fork's exec), and
    // by a relative path: the interpreter's argv is not the script's, and
    // the exec event must recognise the script form, not kill it.
    let line = format!("{s} a 'b c'; cd {}; ./greet d", dir.path().display());
    let bare = cli(None, "sh", &["-c", &line], dir.path());
    assert_eq!(bare.stdout, "greet:a b c\ngreet:d\n");
    for policy in [EXEC_DENY, DENY_PATH] {
        let direct = cli(Some(policy), s, &["x", "y"], dir.path());
        assert_eq!(
            (direct.code, direct.stdout.as_str(), direct.stderr.as_str()),
            (0, "greet:x y\n", ""),
            "{policy:?}"
        );
        let ran = cli(Some(policy), "sh", &["-c", &line], dir.path());
        assert_like_bare(
            &format!("scripts {policy:?}"),
            &ran,
            &bare,
            Duration::from_secs(30),
        );
        assert_eq!(ran.stdout, bare.stdout);
    }
}

/// Execs `argv[1]` (a script path) `argv[2]` times, each from a fresh
/// child, while a writer process renames one of two scripts over it in
/// turn: `argv[3]` (`#!/bin/true`) and `argv[4]` (whose interpreter is
/// denied). Prints how each exec ended.
const SCRIPT_SWAP: &str = r#"
int main(int argc, char **argv) {
    const char *path = argv[1];
    int n = atoi(argv[2]);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.t", path);
    pid_t w = fork();
    if (w == 0) {
        for (unsigned long i = 0;; i++) {
            unlink(tmp);
            if (link(i & 1 ? argv[4] : argv[3], tmp) == 0) rename(tmp, path);
        }
    }
    int ok = 0, denied = 0, killed = 0, refused = 0;
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c == 0) {
            char *args[] = { (char *)path, "arg1", NULL };
            execv(path, args);
            _exit(100);
        }
        int st;
        waitpid(c, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 42) denied++;
        else if (WIFSIGNALED(st)) killed++;
        else refused++;
    }
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    printf("ok=%d denied=%d killed=%d refused=%d\n", ok, denied, killed, refused);
    return 0;
}
"#;

#[test]
fn a_script_swapped_during_exec_never_runs_a_denied_interpreter() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "script swap race");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran.log");
    // The denied program records that it ran, and exits 42.
    let denied = program(
        "argv_denied_interpreter",
        &format!(
            r#"int main(void) {{ FILE *f = fopen("{}", "a"); if (f) {{ fputs("ran\n", f); fclose(f); }} return 42; }}"#,
            log.display()
        ),
    );
    let good = dir.path().join("good");
    std::fs::write(&good, "#!/bin/true\n").unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, format!("#!{}\n", denied.display())).unwrap();
    let script = dir.path().join("s");
    std::fs::write(&script, "#!/bin/true\n").unwrap();
    for f in [&good, &bad, &script] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let race = program("argv_script_swap", SCRIPT_SWAP);
    let args = [
        script.to_str().unwrap(),
        "300",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ];
    let ran = cli(
        Some(&["--deny-path", denied.to_str().unwrap()]),
        race.to_str().unwrap(),
        &args,
        dir.path(),
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        ran_log.lines().count(),
        0,
        "the denied interpreter ran: {}",
        ran.stdout
    );
    assert_eq!(field(&ran.stdout, "denied"), 0, "{}", ran.stdout);
    assert!(
        field(&ran.stdout, "ok") > 0,
        "the allowed script never ran: {}",
        ran.stdout
    );
}

#[test]
fn an_exec_retried_after_enoexec_is_not_refused() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "ENOEXEC retries");
    let dir = tempfile::tempdir().unwrap();
    // No `#!`: execve fails with ENOEXEC and glibc's execvp (here `env`'s)
    // runs it through /bin/sh at once, a second exec of the same thread.
    let ns = dir.path().join("ns.sh");
    std::fs::write(&ns, "echo hi\n").unwrap();
    std::fs::set_permissions(&ns, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = "for i in $(seq 150); do /usr/bin/env ./ns.sh; done";
    let bare = cli(None, "sh", &["-c", script], dir.path());
    assert_eq!(bare.stdout.lines().count(), 150);
    for policy in [EXEC_DENY, DENY_PATH] {
        let ran = cli(Some(policy), "sh", &["-c", script], dir.path());
        assert_like_bare(
            &format!("ENOEXEC retries {policy:?}"),
            &ran,
            &bare,
            Duration::from_secs(60),
        );
        assert_eq!(ran.stdout, bare.stdout, "{policy:?}");
    }
}

/// `argv[1]` times: a child whose three threads exec `/bin/true` at once,
/// each with its own argument.
/// Prints how many children did not exit 0.
const THREADS_EXEC: &str = r#"
static void *execer(void *a) {
    /* Each thread its own argv: the winner's image is not the others'. */
    char *args[] = { "/bin/true", (char *)a, NULL };
    execv(args[0], args);
    _exit(101);
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]), bad = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            pthread_t t;
            pthread_create(&t, NULL, execer, "a");
            pthread_create(&t, NULL, execer, "b");
            execer("c");
        }
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
    }
    printf("bad=%d\n", bad);
    return 0;
}
"#;

#[test]
fn threads_that_exec_at_once_are_not_killed() {
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "threads exec at once");
    let exe = program("argv_threads_exec", THREADS_EXEC);
    let dir = std::env::temp_dir();
    for policy in [EXEC_DENY, DENY_PATH] {
        let ran = cli(Some(policy), exe.to_str().unwrap(), &["150"], &dir);
        assert_eq!(ran.code, 0, "{policy:?}: {}", ran.stderr);
        assert_eq!(field(&ran.stdout, "bad"), 0, "{policy:?}: {}", ran.stderr);
        assert_eq!(ran.stderr, "", "{policy:?}");
    }
}

/// A copy of the `unotify` command that a user without privileges can run
/// (the build directory may not be reachable for them).
fn unotify_for_nobody() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.path().join("unotify");
    std::fs::copy(env!("CARGO_BIN_EXE_unotify"), &bin).expect("copy unotify");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, bin)
}

const NOBODY: u32 = 65534;

/// As a user without privileges, `unotify run` makes itself non-dumpable
/// (its own memory is out of reach of processes of the same user) and yet
/// starts programs under argv safety: its launcher child shares the flag
/// until its first exec, and that exec is checked through `/proc` and
/// ptrace of the child. Afterwards the flag is back: another process of the
/// same user cannot read the supervisor's `/proc/<pid>/environ`.
#[test]
fn an_unprivileged_user_runs_programs_under_argv_safety() {
    use std::os::unix::process::CommandExt;
    let _one = serial();
    let (_dir, bin) = unotify_for_nobody();
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.args(args)
            .uid(NOBODY)
            .gid(NOBODY)
            .env_remove("RUST_LOG")
            .current_dir("/")
            .stdin(std::process::Stdio::null());
        c
    };
    for policy in [
        &["--deny-path", "/etc/shadow"][..],
        &["--exec-deny", "nosuchword"],
    ] {
        let mut args = vec!["run"];
        args.extend_from_slice(policy);
        args.extend_from_slice(&[
            "--",
            "/bin/sh",
            "-c",
            "for i in 1 2 3 4; do /bin/sh -c '/bin/true; /bin/echo ok' & done; wait",
        ]);
        let out = as_nobody(&args).output().expect("run unotify as nobody");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().filter(|l| *l == "ok").count() == 4,
            "{policy:?}: {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Non-dumpable again once the program runs.
    let mut child = as_nobody(&[
        "run",
        "--deny-path",
        "/etc/shadow",
        "--",
        "/bin/sleep",
        "10",
    ])
    .spawn()
    .expect("start unotify as nobody");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().map(str::to_owned))
            .and_then(|c| std::fs::read_link(format!("/proc/{c}/exe")).ok())
            .is_some_and(|exe| exe.ends_with("sleep"))
    };
    while !running() {
        assert!(
            Instant::now() < deadline,
            "the sandboxed sleep never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let read = std::process::Command::new("/bin/cat")
        .arg(format!("/proc/{pid}/environ"))
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run cat as nobody");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !read.status.success()
            && String::from_utf8_lossy(&read.stderr).contains("Permission denied"),
        "a process of the same user read the supervisor's environment: {:?} {}",
        read.status,
        String::from_utf8_lossy(&read.stderr)
    );
}

/// argv[1]: the word; argv[2]: execs left; argv[3]: log file. Logs its
/// word, then (while execs are left) execs itself with a word a second
/// thread flips between "ALLOWEDX" and "DENIEDXX", retrying when refused.
/// Every image is the sandbox's first process: after the launcher's exec,
/// its execs are the program's and must be frozen like any other.
const ROOT_RACE: &str = r#"
static volatile uint64_t word[2];
static uint64_t allowed, denied;
static void *flip(void *arg) {
    (void)arg;
    for (;;) { word[0] = denied; word[0] = allowed; }
    return NULL;
}
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", argv[1]);
    int fd = open(argv[3], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0 || write(fd, line, n) != n) return 3;
    close(fd);
    int left = atoi(argv[2]);
    if (left <= 0) return 0;
    memcpy(&allowed, "ALLOWEDX", 8);
    memcpy(&denied, "DENIEDXX", 8);
    word[0] = allowed; word[1] = 0;
    pthread_t t;
    pthread_create(&t, NULL, flip, NULL);
    char next[16];
    snprintf(next, sizeof next, "%d", left - 1);
    char *args[] = { argv[0], (char *)word, next, argv[3], NULL };
    for (int tries = 0; tries < 10000; tries++) {
        execv(argv[0], args);
        if (errno != EPERM) return 4;
    }
    return 5;
}
"#;

#[test]
fn the_first_process_is_frozen_once_the_launcher_has_exec_d() {
    // The launcher's own exec needs no freeze (nothing else of the sandbox
    // exists yet); every later exec of that process is the program's, and
    // a thread rewriting its argv must not get a denied word run.
    let _serial = serial();
    let _w = common::watchdog(Duration::from_secs(120), "first-process argv race");
    let race = program("root_race", ROOT_RACE);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let sandbox = guarded().build().unwrap();
    let (out, code) = run(&sandbox, &race, &["ALLOWEDX", "200", log.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let denied = text.lines().filter(|l| l.contains("DENIED")).count();
    assert_eq!(denied, 0, "denied words ran in the first process: {text}");
    assert_eq!(text.lines().count(), 201, "every image logged once: {text}");
}

#[test]
fn a_program_that_execs_nothing_starts_no_ptrace_thread() {
    // The launcher's exec is decided without ptrace: a program that execs
    // nothing more leaves the tracer thread unstarted; the first exec of
    // the program starts it.
    let _serial = serial();
    const TRACER: &str = "unotify-ptrace";
    let before = threads_named(TRACER);
    let sandbox = guarded().build().unwrap();
    let count_during = |script: &str| {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script])
            .stdin(Stdio::Piped)
            .stdout(Stdio::Piped);
        let mut child = sandbox.spawn(&mut cmd).expect("spawn");
        // The program says when it has done its execs, then waits for
        // its input.
        let mut line = String::new();
        {
            use std::io::BufRead;
            let out = child.stdout.as_mut().expect("piped");
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        assert_eq!(line.trim(), "ready");
        let during = threads_named(TRACER);
        let _ = child.kill();
        let _ = child.wait();
        during
    };
    let without = count_during("echo ready; read x");
    assert_eq!(
        without, before,
        "a tracer thread started for a program that execs nothing"
    );
    let with = count_during("/bin/true; echo ready; read x");
    assert_eq!(with, before + 1, "the program's exec started the tracer");
}

#[test]
fn failed_path_probes_freeze_nothing() {
    // An exec of a file that is not there (a shell's `$PATH` search) is
    // answered with the errno, never `CONTINUE`: nothing runs, so nothing
    // is frozen or seized, and the ptrace thread, which starts with the
    // first freeze, is not even started.
    let _serial = serial();
    const TRACER: &str = "unotify-ptrace";
    let before = threads_named(TRACER);
    let sandbox = guarded().build().unwrap();
    let mut cmd = Command::new("/bin/sh");
    let script = "for i in 1 2 3 4 5 6 7 8; do unotify-no-such-command-$i 2>/dev/null; \
                  /no/such/dir/prog 2>/dev/null; done; echo ready; read x || true";
    cmd.args(["-c", script])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::Piped)
        .stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).expect("spawn");
    let rx = common::line_reader(child.stdout.take().unwrap());
    let line = common::next_line(&rx, Duration::from_secs(30), "probes");
    assert_eq!(line.trim(), "ready");
    let during = threads_named(TRACER);
    let received = child
        .supervisor()
        .and_then(|s| s.stats())
        .map_or(0, |s| s.received);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // At least the 8 execs of the absolute path were decided (the shell
    // may look the commands up with `stat` before it forks).
    assert!(received >= 8, "the probes were not trapped: {received}");
    assert_eq!(during, before, "a failed probe started the ptrace thread");
}
