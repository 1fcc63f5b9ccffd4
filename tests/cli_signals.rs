//! Signals and lifetime of `unotify run`: SIGTERM/SIGINT/SIGHUP are
//! forwarded to the program first (its handlers run), the sandbox is
//! killed after `--kill-after`; `unotify` ends by the program's terminal
//! signal (so a shell loop stops on Ctrl-C); and no process outlives the
//! sandbox, cgroups or not, unless `--leave-daemons` says so. The program
//! starts with the signal state a bare run gives it: what the caller
//! ignored (`nohup`) stays ignored, and unotify does not take it; the
//! caller's mask is passed on.

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{run_unotify as run, stderr_of as stderr, unotify};

/// Starts `unotify ARGS` with stdout piped, waits for its first line of
/// output (the program is ready), sends `sig`, and returns the status,
/// all of stdout and the time from the signal to the exit.
fn signalled(args: &[&str], sig: i32) -> (std::process::ExitStatus, String, Duration) {
    let mut cmd = unotify();
    cmd.args(args).stderr(Stdio::piped());
    signalled_when_ready(cmd, sig)
}

/// Starts `cmd` (`unotify`, or a launcher that execs it) with stdout
/// piped, waits for its first line, sends `sig` to it, and returns as
/// [`signalled`].
fn signalled_when_ready(
    mut cmd: std::process::Command,
    sig: i32,
) -> (std::process::ExitStatus, String, Duration) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut text = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 {
        text.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    unotify::sys::process::kill(child.id() as i32, sig).unwrap();
    let sent = Instant::now();
    out.read_to_end(&mut text).unwrap();
    let status = child.wait().unwrap();
    (
        status,
        String::from_utf8_lossy(&text).into_owned(),
        sent.elapsed(),
    )
}

#[test]
fn sigterm_reaches_the_program_whose_handler_runs() {
    let (status, out, _) = signalled(
        &[
            "run",
            "--",
            "sh",
            "-c",
            "trap 'echo cleaned up; exit 3' TERM; echo ready; sleep 30 & wait",
        ],
        libc::SIGTERM,
    );
    assert!(out.contains("cleaned up"), "the handler did not run: {out}");
    assert_eq!(status.code(), Some(3), "{status:?}");
}

#[test]
fn a_program_ignoring_sigterm_is_killed_after_the_grace() {
    let (status, out, took) = signalled(
        &[
            "run",
            "--kill-after",
            "500ms",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; sleep 30",
        ],
        libc::SIGTERM,
    );
    assert_eq!(out, "ready\n");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_second_signal_kills_at_once() {
    let mut child = unotify()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap '' TERM INT; echo ready; sleep 30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    let pid = child.id() as i32;
    unotify::sys::process::kill(pid, libc::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    unotify::sys::process::kill(pid, libc::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

#[test]
fn the_programs_terminal_signal_ends_unotify() {
    // Ctrl-C at a terminal reaches the program's group, not unotify: its
    // death by SIGINT must be unotify's, so that `for ...; do unotify run
    // ...; done` stops.
    let out = run(&["run", "--", "sh", "-c", "kill -INT $$"]);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    // Other signals give 128+N, as documented.
    let out = run(&["run", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn a_shell_loop_stops_on_ctrl_c() {
    // As a terminal's Ctrl-C does, SIGINT goes to the shell's process
    // group: the shell and unotify, which forwards it to the sandbox. The
    // shell stops its loop only if its child died of SIGINT too.
    use std::os::unix::process::CommandExt;
    let unotify = env!("CARGO_BIN_EXE_unotify");
    let script =
        format!("for i in 1 2 3; do {unotify} run -- sleep 2; echo iteration $i; done; echo end");
    let mut shell = std::process::Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    unotify::sys::process::kill_group(shell.id() as i32, libc::SIGINT).unwrap();
    let mut text = String::new();
    shell
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let status = shell.wait().unwrap();
    assert!(!text.contains("iteration"), "the loop went on:\n{text}");
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

/// `unotify run FLAGS -- sh -c` starting a double-forked daemon `sleep
/// MARKER` in a session of its own; returns the daemons alive after it.
fn daemon_after(flags: &[&str], marker: &str) -> Vec<i32> {
    let script =
        format!("setsid sh -c 'sleep {marker} </dev/null >/dev/null 2>&1 &'; sleep 0.2; exit 0");
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend(["--", "sh", "-c", &script]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(200));
    common::sleeps_with_arg(marker)
}

#[test]
fn a_double_forked_daemon_does_not_outlive_the_sandbox() {
    let marker = format!("1002.{}1", std::process::id());
    assert_eq!(
        daemon_after(&[], &marker),
        Vec::<i32>::new(),
        "with cgroups"
    );
    let marker = format!("1002.{}2", std::process::id());
    assert_eq!(
        daemon_after(&["--test-no-cgroups"], &marker),
        Vec::<i32>::new(),
        "without cgroups"
    );
}

#[test]
fn leave_daemons_lets_them_run() {
    let marker = format!("1002.{}3", std::process::id());
    let left = daemon_after(&["--leave-daemons"], &marker);
    assert_eq!(left.len(), 1, "{left:?}");
    for pid in left {
        let _ = unotify::sys::process::kill(pid, libc::SIGKILL);
    }
}

#[test]
fn bad_durations_are_refused() {
    for bad in ["", "ten", "5x", "-1s", "1e400s"] {
        let flag = format!("--kill-after={bad}");
        let out = run(&["run", &flag, "--", "true"]);
        assert_eq!(out.status.code(), Some(125), "{bad:?}");
        assert!(stderr(&out).contains("like 10s"), "{}", stderr(&out));
    }
}

/// A program whose child (`setsid`, its own session) and orphaned
/// grandchild (double-forked, `setsid`) each mark `DIR/child` or
/// `DIR/grandchild` when SIGTERM reaches them; prints "ready" once both
/// have their handlers, then waits for its own SIGTERM and a moment.
const SESSIONS_C: &str = r#"
static const char *dir;
static void mark(const char *who) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, who);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
}
static void child_term(int s) { (void)s; mark("child"); _exit(0); }
static void grandchild_term(int s) { (void)s; mark("grandchild"); _exit(0); }
static volatile sig_atomic_t parent_got;
static void parent_term(int s) { (void)s; parent_got = 1; }
static void on(int sig, void (*f)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = f;
    sigaction(sig, &sa, NULL);
}
int main(int argc, char **argv) {
    dir = argv[1];
    int ready[2];
    if (pipe(ready)) return 2;
    on(SIGTERM, parent_term);
    if (fork() == 0) {
        setsid();
        on(SIGTERM, child_term);
        if (write(ready[1], "c", 1) != 1) _exit(2);
        for (int i = 0; i < 60; i++) sleep(1);
        _exit(1);
    }
    pid_t mid = fork();
    if (mid == 0) {
        if (fork() == 0) {
            setsid();
            on(SIGTERM, grandchild_term);
            if (write(ready[1], "g", 1) != 1) _exit(2);
            for (int i = 0; i < 60; i++) sleep(1);
            _exit(1);
        }
        _exit(0);
    }
    waitpid(mid, NULL, 0);
    char b[2];
    for (int got = 0; got < 2;) {
        ssize_t n = read(ready[0], b, 2 - got);
        if (n <= 0) return 2;
        got += n;
    }
    dprintf(1, "ready\n");
    while (!parent_got) usleep(10000);
    usleep(300000);
    return 0;
}
"#;

/// How many of the program's child (own session) and orphaned grandchild
/// (own session, double-forked) a SIGTERM to `unotify run EXTRA...` did
/// not reach, over `rounds` runs.
fn missed_by_sigterm(extra: &[&str], rounds: usize) -> usize {
    let src = format!("{}{}", common::C_PRELUDE, SESSIONS_C);
    let exe = common::build_c("sessions_sigterm", &src, &[]);
    let mut missed = 0;
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["run"];
        args.extend(extra);
        args.extend(["--", exe.to_str().unwrap(), dir.path().to_str().unwrap()]);
        let (status, out, _) = signalled(&args, libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(out.starts_with("ready"), "{out}");
        for who in ["child", "grandchild"] {
            if !dir.path().join(who).exists() {
                missed += 1;
            }
        }
    }
    missed
}

#[test]
fn sigterm_reaches_processes_in_their_own_sessions() {
    assert_eq!(missed_by_sigterm(&[], 3), 0, "with cgroups");
    assert_eq!(
        missed_by_sigterm(&["--test-no-cgroups"], 3),
        0,
        "without cgroups"
    );
}

/// `sigstate IGN BLK CMD...`: ignores the signals of mask IGN and blocks
/// those of mask BLK (hex, bit `n - 1` for signal `n`, as in
/// `/proc/self/status`), then execs CMD: a caller such as `nohup` or a
/// shell starting a background job. `sigstate show`: prints its own
/// SigBlk and SigIgn lines.
const SIGSTATE_C: &str = r#"
int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "show")) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "SigBlk", 6) || !strncmp(line, "SigIgn", 6))
                fputs(line, stdout);
        return 0;
    }
    unsigned long long ign = strtoull(argv[1], 0, 16), blk = strtoull(argv[2], 0, 16);
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig <= 64; sig++) {
        if (ign >> (sig - 1) & 1) signal(sig, SIG_IGN);
        if (blk >> (sig - 1) & 1) sigaddset(&set, sig);
    }
    sigprocmask(SIG_BLOCK, &set, 0);
    execvp(argv[3], argv + 3);
    perror("exec");
    return 127;
}
"#;

fn sigstate() -> std::path::PathBuf {
    let src = format!("{}{}", common::C_PRELUDE, SIGSTATE_C);
    common::build_c("sigstate", &src, &[])
}

/// Mask bit of `sig`.
fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// What the probe reports, started by the launcher with `ign` and `blk`,
/// through `via` (nothing: bare).
fn signal_state_seen(ign: u64, blk: u64, via: &[&str]) -> String {
    let exe = sigstate();
    let out = std::process::Command::new(&exe)
        .arg(format!("{ign:x}"))
        .arg(format!("{blk:x}"))
        .args(via)
        .arg(&exe)
        .arg("show")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_program_starts_with_the_ignored_and_blocked_signals_of_a_bare_run() {
    let unotify = env!("CARGO_BIN_EXE_unotify");
    let ignored = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGPIPE,
        libc::SIGCHLD,
        libc::SIGUSR2,
    ];
    let ign = ignored.iter().fold(0, |m, &s| m | bit(s));
    let blk = bit(libc::SIGUSR1) | bit(libc::SIGALRM) | bit(libc::SIGPIPE);
    let mut differ = Vec::new();
    for (ign, blk) in [(ign, 0), (0, blk), (ign, blk), (0, 0)] {
        let bare = signal_state_seen(ign, blk, &[]);
        assert!(bare.contains("SigIgn"), "{bare}");
        for extra in [&[][..], &["--test-no-cgroups"]] {
            let mut via = vec![unotify, "run"];
            via.extend(extra);
            via.push("--");
            let sandboxed = signal_state_seen(ign, blk, &via);
            if sandboxed != bare {
                differ.push(format!(
                    "ign {ign:x} blk {blk:x} {extra:?}: bare\n{bare}sandboxed\n{sandboxed}"
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Starts `unotify run --kill-after 200ms -- sh ...` from the launcher
/// with `sig` ignored, sends `sig` to `unotify` (only) once the program
/// is ready, and returns the status and output: a program that is not
/// forwarded the signal finishes its second of sleep and exits 4.
fn signalled_while_ignored(sig: i32) -> (std::process::ExitStatus, String) {
    // (The launcher execs unotify: its pid is unotify's.)
    let mut cmd = std::process::Command::new(sigstate());
    cmd.arg(format!("{:x}", bit(sig)))
        .arg("0")
        .arg(env!("CARGO_BIN_EXE_unotify"))
        .args(["run", "--kill-after", "200ms", "--", "sh", "-c"])
        .arg("echo ready; sleep 1; echo survived; exit 4")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let (status, out, _) = signalled_when_ready(cmd, sig);
    (status, out)
}

#[test]
fn a_termination_signal_ignored_at_the_start_stays_ignored() {
    let mut ended = Vec::new();
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        let (status, out) = signalled_while_ignored(sig);
        if status.code() != Some(4) || !out.contains("survived") {
            ended.push(format!("signal {sig}: {status:?} {out:?}"));
        }
    }
    assert!(ended.is_empty(), "{ended:?}");
}

#[test]
fn sigchld_ignored_at_the_start_keeps_the_programs_exit_status() {
    for extra in [&[][..], &["--test-no-cgroups"]] {
        let out = std::process::Command::new(sigstate())
            .arg(format!("{:x}", bit(libc::SIGCHLD)))
            .arg("0")
            .arg(env!("CARGO_BIN_EXE_unotify"))
            .arg("run")
            .args(extra)
            .args(["--", "sh", "-c", "exit 3"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{extra:?}: {out:?}");
    }
}
