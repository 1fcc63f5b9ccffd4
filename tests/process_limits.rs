//! The process limit (`max_processes`), namespace refusal, and freeze/thaw,
//! checked from outside with small C programs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

const PRELUDE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>
"#;

fn program(name: &str, body: &str) -> std::path::PathBuf {
    common::build_c(name, &format!("{PRELUDE}\n{body}"), &["-pthread"])
}

use common::run_piped as run;

/// Forks `n` children, each sleeping; counts successes and errnos.
const FORK_SLEEPERS: &str = r#"
int main(int argc, char **argv) {
    int n = atoi(argv[1]), ok = 0, eagain = 0, other = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) { close(1); sleep(30); _exit(0); }
        if (p > 0) ok++;
        else if (errno == EAGAIN) eagain++;
        else other++;
    }
    printf("ok=%d eagain=%d other=%d\n", ok, eagain, other);
    fflush(stdout);
    return 0;
}
"#;

#[test]
fn forty_sleeping_children_under_five() {
    let exe = program("fork_sleepers", FORK_SLEEPERS);
    let sandbox = Sandbox::builder().max_processes(5).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["40"]);
    assert!(status.success(), "{status:?} {out}");
    // The program itself is one of the five.
    assert_eq!(out.trim(), "ok=4 eagain=36 other=0");
}

#[test]
fn without_a_limit_forks_are_not_refused() {
    let exe = program("fork_sleepers", FORK_SLEEPERS);
    let sandbox = Sandbox::builder().track_processes().build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["12"]);
    assert!(status.success());
    assert_eq!(out.trim(), "ok=12 eagain=0 other=0");
}

/// `n` cycles of fork, child exits with 7, wait; prints the good cycles.
const FORK_WAIT: &str = r#"
int main(int argc, char **argv) {
    int n = atoi(argv[1]), good = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(7);
        if (p < 0) { printf("fork %d failed: %s\n", i, strerror(errno)); continue; }
        int st;
        if (waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 7) good++;
    }
    printf("good=%d\n", good);
    return 0;
}
"#;

#[test]
fn thirty_fork_wait_cycles_under_three() {
    let exe = program("fork_wait", FORK_WAIT);
    let sandbox = Sandbox::builder().max_processes(3).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["30"]);
    assert!(status.success());
    assert_eq!(out.trim(), "good=30");
}

#[test]
fn fork_wait_cycles_under_two_reuse_the_one_slot() {
    // The tightest limit: the program and one child. Every slot must come
    // back when the child is reaped.
    let exe = program("fork_wait", FORK_WAIT);
    let sandbox = Sandbox::builder().max_processes(2).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["30"]);
    assert!(status.success());
    assert_eq!(out.trim(), "good=30");
}

/// Forks children that exit at once and are not waited for (zombies), then
/// reaps them all and forks once more.
const NEVER_WAITS: &str = r#"
int main(int argc, char **argv) {
    int n = atoi(argv[1]), ok = 0, eagain = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) ok++; else if (errno == EAGAIN) eagain++;
        usleep(2000);  /* let the child die: it stays a zombie */
    }
    printf("ok=%d eagain=%d\n", ok, eagain);
    while (waitpid(-1, NULL, 0) > 0) {}
    pid_t p = fork();
    if (p == 0) _exit(0);
    printf("after_reap=%s\n", p > 0 ? "ok" : strerror(errno));
    return 0;
}
"#;

#[test]
fn zombies_count_until_reaped() {
    let exe = program("never_waits", NEVER_WAITS);
    let sandbox = Sandbox::builder().max_processes(4).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["20"]);
    assert!(status.success());
    assert_eq!(out, "ok=3 eagain=17\nafter_reap=ok\n");
}

/// Starts 16 threads that each record that they ran, joins them, then
/// forks once.
const THREADS: &str = r#"
static int ran;
static void *body(void *arg) { __atomic_add_fetch(&ran, 1, __ATOMIC_SEQ_CST); return arg; }
int main(void) {
    pthread_t t[16];
    int started = 0;
    for (int i = 0; i < 16; i++)
        if (pthread_create(&t[i], NULL, body, NULL) == 0) started++;
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    pid_t p = fork();
    if (p == 0) _exit(0);
    if (p > 0) waitpid(p, NULL, 0);
    printf("started=%d ran=%d fork=%s\n", started, ran, p > 0 ? "ok" : strerror(errno));
    return 0;
}
"#;

#[test]
fn sixteen_threads_under_two_all_start() {
    let exe = program("threads16", THREADS);
    let sandbox = Sandbox::builder().max_processes(2).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &[]);
    assert!(status.success());
    assert_eq!(out.trim(), "started=16 ran=16 fork=ok");
}

/// clone3 (with and without a namespace flag), clone with namespace flags,
/// then a plain clone.
const NAMESPACES: &str = r#"
static long clone3_flags(uint64_t flags) {
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &a, sizeof a);
    if (r == 0) _exit(3);
    return r < 0 ? -errno : r;
}
static long clone_flags(long flags) {
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(3);
    return r < 0 ? -errno : r;
}
int main(void) {
    printf("clone3_newuser=%ld\n", clone3_flags(CLONE_NEWUSER));
    printf("clone3_plain=%ld\n", clone3_flags(0));
    printf("clone_newnet=%ld\n", clone_flags(CLONE_NEWNET));
    printf("clone_newuts=%ld\n", clone_flags(CLONE_NEWUTS));
    long p = clone_flags(0);
    int st = 0;
    if (p > 0) waitpid(p, &st, 0);
    printf("plain=%s\n", p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 3 ? "ok" : "failed");
    return 0;
}
"#;

/// Namespace flags get `EPERM`; `clone3`, whose flags the kernel rereads
/// from memory after the check, gets `ENOSYS` (the C library falls back to
/// `clone`).
#[test]
fn namespace_flags_get_eperm() {
    let exe = program("namespaces", NAMESPACES);
    let sandbox = Sandbox::builder().max_processes(10).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &[]);
    assert!(status.success());
    let (eperm, enosys) = (-libc::EPERM, -libc::ENOSYS);
    assert_eq!(
        out,
        format!(
            "clone3_newuser={enosys}\nclone3_plain={enosys}\nclone_newnet={eperm}\nclone_newuts={eperm}\nplain=ok\n"
        )
    );
}

/// Tries `n` forks (waiting for each), prints the errno of each failure,
/// then says "done" and waits for a byte on stdin before exiting.
const FORKS_THEN_WAIT: &str = r#"
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) { waitpid(p, NULL, 0); printf("ok "); }
        else printf("%d ", errno);
    }
    printf("done\n");
    fflush(stdout);
    char c;
    return read(0, &c, 1) == 1 ? 0 : 1;
}
"#;

#[test]
fn a_fork_denied_by_a_later_handler_is_rolled_back() {
    let exe = program("forks_then_wait", FORKS_THEN_WAIT);
    let denied = Arc::new(AtomicUsize::new(0));
    let d = Arc::clone(&denied);
    // A user handler after the builtin one: it denies the first 10 forks.
    let sandbox = Sandbox::builder()
        .max_processes(3)
        .handle("clone", move |cx: &HandlerCtx<'_>| {
            if cx.arg(0) & libc::CLONE_THREAD as u64 == 0 && d.fetch_add(1, Ordering::SeqCst) < 10 {
                NotifAction::Errno(libc::EACCES)
            } else {
                NotifAction::Continue
            }
        })
        .build()
        .unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("12").stdin(Stdio::Piped).stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let eacces = libc::EACCES.to_string();
    let expected: Vec<&str> = std::iter::repeat_n(eacces.as_str(), 10)
        .chain(["ok", "ok", "done"])
        .collect();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), expected);
    // The ten denied forks took tokens that were all given back: only the
    // program and its two delivered forks are counted (reaped children are
    // forgotten only when the count is reconciled), and the count never
    // had to be reconciled.
    let ps = child.supervisor().unwrap().process_stats().unwrap();
    assert_eq!(ps.processes, 3, "{ps:?}");
    assert_eq!(ps.reconciles, 0, "{ps:?}");
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn max_processes_zero_is_refused() {
    let err = Sandbox::builder()
        .max_processes(0)
        .build()
        .expect_err("refused");
    assert!(err.to_string().contains("max_processes"), "{err}");
}

#[test]
fn parse_size_suffixes() {
    use unotify::process::parse_size;
    assert_eq!(parse_size("64M").unwrap(), 64 << 20);
    assert_eq!(parse_size("1G").unwrap(), 1 << 30);
    assert_eq!(parse_size("10K").unwrap(), 10 << 10);
    assert_eq!(parse_size("123").unwrap(), 123);
    assert!(parse_size("64Q").is_err());
    assert!(parse_size("").is_err());
}

/// Prints "ready", waits for a byte, then 4 threads fork once each (the
/// children exit at once and are waited for); prints how many forks worked.
/// The raw clone, unlike glibc's fork, takes no lock that would serialise
/// the threads' forks.
const THREADS_FORK: &str = r#"
static int forked;
static void *body(void *arg) {
    pid_t p = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (p == 0) _exit(0);
    if (p > 0 && waitpid(p, NULL, 0) == p) __atomic_add_fetch(&forked, 1, __ATOMIC_SEQ_CST);
    return arg;
}
int main(void) {
    printf("ready\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1) return 2;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, body, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("forked=%d\n", forked);
    return 0;
}
"#;

#[test]
fn freeze_holds_forks_and_thaw_answers_every_one() {
    let exe = program("threads_fork", THREADS_FORK);
    let sandbox = Sandbox::builder().max_processes(10).build().unwrap();
    let mut cmd = Command::new(&exe);
    cmd.stdin(Stdio::Piped).stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let handle = child.supervisor().unwrap();

    handle.pause().unwrap();
    assert!(handle.process_stats().unwrap().paused);
    // Stopped: give it the go byte, then continue it behind the freeze's
    // back so that its forks arrive while the sandbox is frozen.
    child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
    unotify::sys::process::kill(child.pid() as i32, libc::SIGCONT).expect("SIGCONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.held().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "only {} forks held",
            handle.held().len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(handle.process_stats().unwrap().held_forks, 4);
    assert_eq!(handle.stats().unwrap().held, 4);

    assert_eq!(handle.resume().unwrap(), 4);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "forked=4\n");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(status.signal(), None);
}

#[test]
fn freeze_needs_fork_tracking() {
    let exe = program("fork_wait", FORK_WAIT);
    let sandbox = Sandbox::builder().max_memory(1 << 30).build().unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("1").stdout(Stdio::Null);
    let mut child = sandbox.spawn(&mut cmd).unwrap();
    let handle = child.supervisor().unwrap();
    let err = handle.pause().err();
    assert!(child.wait().unwrap().success());
    assert!(err.expect("refused").to_string().contains("fork tracking"));
}

/// Double forks: each child forks a grandchild that sleeps, then exits at
/// once, so the grandchildren are orphans outside the program's process
/// tree (and never trap). Prints how many grandchildren were made.
const DOUBLE_FORK: &str = r#"
int main(int argc, char **argv) {
    int n = atoi(argv[1]), made = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            pid_t g = fork();
            if (g == 0) { close(1); sleep(30); _exit(0); }
            _exit(g > 0 ? 0 : 1);
        }
        if (p < 0) continue;
        int st;
        waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) made++;
    }
    printf("made=%d\n", made);
    return 0;
}
"#;

#[test]
fn orphans_still_count() {
    let exe = program("double_fork", DOUBLE_FORK);
    let sandbox = Sandbox::builder().max_processes(6).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["20"]);
    assert!(status.success());
    // The program, its short-lived child, and at most 4 orphans.
    assert_eq!(out.trim(), "made=4");
}

/// Waits for a byte; forks C; C forks once more (that fork is slowed down
/// by the test's handler) while the program kills C; reports how C ended
/// and waits for a second byte.
const KILLED_WHILE_FORKING: &str = r#"
int main(void) {
    char c;
    if (read(0, &c, 1) != 1) return 2;
    pid_t child = fork();
    if (child == 0) { pid_t g = fork(); _exit(g >= 0 ? 0 : 1); }
    if (child < 0) return 3;
    usleep(100000);
    kill(child, SIGKILL);
    int st;
    waitpid(child, &st, 0);
    printf("child %s\n", WIFSIGNALED(st) ? "killed" : "exited");
    fflush(stdout);
    return read(0, &c, 1) == 1 ? 0 : 1;
}
"#;

#[test]
fn a_fork_whose_task_died_is_rolled_back() {
    use std::sync::atomic::AtomicI32;
    let exe = program("killed_while_forking", KILLED_WHILE_FORKING);
    let root = Arc::new(AtomicI32::new(0));
    let r = Arc::clone(&root);
    let sandbox = Sandbox::builder()
        .max_processes(10)
        .handle("clone", move |cx: &HandlerCtx<'_>| {
            if cx.pid() as i32 != r.load(Ordering::SeqCst) {
                // The grandchild's fork: answered only after its task died.
                std::thread::sleep(Duration::from_millis(400));
            }
            NotifAction::Continue
        })
        .build()
        .unwrap();
    let mut cmd = Command::new(&exe);
    cmd.stdin(Stdio::Piped).stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).unwrap();
    root.store(child.pid() as i32, Ordering::SeqCst);
    child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "child killed\n");
    let handle = child.supervisor().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.stats().unwrap().stale == 0 {
        assert!(
            Instant::now() < deadline,
            "the late answer never went stale"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The program and C: C's own fork was never delivered.
    let ps = handle.process_stats().unwrap();
    assert_eq!(ps.processes, 2, "{ps:?}");
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_counted_fork_is_never_deferred() {
    let exe = program("fork_wait", FORK_WAIT);
    let sandbox = Sandbox::builder()
        .max_processes(10)
        .handle("clone", |_cx: &HandlerCtx<'_>| {
            NotifAction::defer(|| NotifAction::Continue)
        })
        .build()
        .unwrap();
    let (out, status) = run(&sandbox, &exe, &["2"]);
    assert!(status.success());
    let eperm = std::io::Error::from_raw_os_error(libc::EPERM).to_string();
    let msg = eperm.split(" (os error").next().unwrap().to_owned();
    assert_eq!(
        out,
        format!("fork 0 failed: {msg}\nfork 1 failed: {msg}\ngood=0\n")
    );
}

#[test]
fn a_fork_held_by_a_handler_stays_counted_until_released() {
    let exe = program("fork_wait", FORK_WAIT);
    let sandbox = Sandbox::builder()
        .max_processes(10)
        .handle("clone", |_cx: &HandlerCtx<'_>| NotifAction::Hold)
        .build()
        .unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("2").stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).unwrap();
    let handle = child.supervisor().unwrap();
    let wait_held = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(n) = handle.held().first() {
                return n.id;
            }
            assert!(Instant::now() < deadline, "no fork held");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Held: counted (the program plus the held fork).
    let id = wait_held();
    assert_eq!(handle.process_stats().unwrap().processes, 2);
    assert!(handle.release(id, NotifAction::Errno(libc::EACCES)));
    // Denied on release: rolled back. (Not read right here: the program's
    // next fork may already be counted by then.) The next held fork makes
    // two, not three.
    let id = wait_held();
    assert_eq!(handle.process_stats().unwrap().processes, 2);
    assert!(handle.release(id, NotifAction::Continue));
    let out = common::read_all(&mut child.stdout);
    assert!(child.wait().unwrap().success());
    let eacces = std::io::Error::from_raw_os_error(libc::EACCES).to_string();
    let msg = eacces.split(" (os error").next().unwrap().to_owned();
    assert_eq!(out, format!("fork 0 failed: {msg}\ngood=1\n"));
}
