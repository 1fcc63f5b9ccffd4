//! The `unotify` command, run as a user would: exit statuses, traces on
//! stderr, denials, `check`, and termination signals.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};

use common::{
    run_unotify as run, sleeps_with_arg, stderr_of as stderr, stdout_of as stdout, unotify,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Asserts the exit code, showing stderr when it differs.
fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {:?}, stderr:\n{}",
        out.status,
        stderr(out)
    );
}

/// Asserts a failure of `unotify` itself: the code, and an error message
/// that starts with `unotify: ` and mentions `needle`.
fn assert_own_error(out: &Output, code: i32, needle: &str) {
    assert_code(out, code);
    let err = stderr(out);
    assert!(err.starts_with("unotify: "), "stderr:\n{err}");
    assert!(
        err.contains(needle),
        "expected {needle:?} in stderr:\n{err}"
    );
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
}

#[test]
fn exit_status_of_a_successful_command() {
    let out = run(&["run", "--", "/bin/true"]);
    assert_code(&out, 0);
    assert!(out.stderr.is_empty(), "stderr:\n{}", stderr(&out));
}

#[test]
fn exit_status_mirrors_the_exit_code() {
    assert_code(&run(&["run", "--", "sh", "-c", "exit 7"]), 7);
    // The command's options are its own, with or without `--`.
    assert_code(&run(&["run", "sh", "-c", "exit 3"]), 3);
}

#[test]
fn exit_status_mirrors_a_fatal_signal() {
    let out = run(&["run", "--", "sh", "-c", "kill -9 $$"]);
    assert_code(&out, 137);
}

#[test]
fn usage_errors_exit_125() {
    assert_own_error(
        &run(&["run", "--no-such-flag", "--", "/bin/true"]),
        125,
        "--no-such-flag",
    );
    assert_own_error(
        &run(&["run", "--trace", "openat,no_such_call", "--", "/bin/true"]),
        125,
        "no_such_call",
    );
    assert_own_error(
        &run(&["run", "--workers", "0", "--", "/bin/true"]),
        125,
        "at least 1",
    );
    assert_own_error(
        &run(&["run", "--deny", "mkdirat=EBOGUS", "--", "/bin/true"]),
        125,
        "EBOGUS",
    );
    assert_own_error(&run(&["run"]), 125, "CMD");
    assert_own_error(&run(&[]), 125, "subcommand");
    // A call both traced and denied is a policy conflict.
    assert_own_error(
        &run(&[
            "run",
            "--trace",
            "mkdirat",
            "--deny",
            "mkdirat",
            "--",
            "/bin/true",
        ]),
        125,
        "mkdirat",
    );
}

#[test]
fn help_documents_every_flag_with_examples() {
    let out = run(&["run", "--help"]);
    assert_code(&out, 0);
    let help = stdout(&out);
    for needle in [
        "--workers",
        "--trace",
        "--deny",
        "Examples:",
        "unotify run --trace",
        "126",
        "127",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
    let out = run(&["check", "--help"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("unotify check"), "{}", stdout(&out));
}

#[test]
fn non_executable_file_exits_126() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "#!/bin/sh\necho should not run").unwrap();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.path().to_str().unwrap();
    let out = run(&["run", "--", path]);
    assert_own_error(&out, 126, "cannot execute");
}

#[test]
fn missing_program_exits_127() {
    let out = run(&["run", "--", "unotify-test-no-such-program"]);
    assert_own_error(&out, 127, "not found");
    let out = run(&["run", "--", "/nonexistent/dir/prog"]);
    assert_own_error(&out, 127, "not found");
}

/// A sandbox cannot be made inside another (the kernel allows one
/// user-notification listener per filter chain, and an outer sandbox's argv
/// safety refuses the spawn's `CLONE_VM` child): the inner `unotify` says
/// so, instead of "sandbox setup failed ... Device or resource busy" (or
/// "... fork the child: Operation not permitted") and a pointer to `unotify
/// check`, which does not tell.
#[test]
fn a_sandbox_inside_a_sandbox_is_refused_with_the_reason() {
    let me = env!("CARGO_BIN_EXE_unotify");
    for outer in [
        &["run", "--"][..],
        &["run", "--deny-path", "/etc/shadow", "--"][..],
    ] {
        let mut args = outer.to_vec();
        args.extend([me, "run", "--", "true"]);
        let out = run(&args);
        assert_own_error(&out, 125, "already runs under a seccomp filter");
        assert!(!stderr(&out).contains("unotify check"), "{}", stderr(&out));
    }
}

/// A temporary file with known content, to `cat` under the sandbox.
fn content_file() -> (tempfile::NamedTempFile, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let content = format!("content {}\nsecond line\n", std::process::id());
    file.write_all(content.as_bytes()).unwrap();
    (file, content)
}

#[test]
fn trace_reports_calls_on_stderr_and_leaves_output_intact() {
    let (file, content) = content_file();
    let path = file.path().to_str().unwrap();
    let out = run(&["run", "--trace", "openat", "--", "cat", path]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), content);
    let err = stderr(&out);
    let traced: Vec<&str> = err.lines().filter(|l| l.contains("openat(")).collect();
    assert!(!traced.is_empty(), "no openat trace in stderr:\n{err}");
    for line in &traced {
        assert!(line.starts_with("unotify: trace: pid "), "{line}");
        assert!(line.ends_with("-> CONTINUE"), "{line}");
    }
    // Only traces: no warnings or errors.
    assert_eq!(traced.len(), err.lines().count(), "stderr:\n{err}");
}

#[test]
fn rust_log_does_not_silence_traces() {
    // `RUST_LOG` set for something else (or off) must not turn off what
    // `--trace` asked for.
    let (file, content) = content_file();
    let path = file.path().to_str().unwrap();
    for filter in ["off", "warn"] {
        let out = unotify()
            .args(["run", "--trace", "openat", "--", "cat", path])
            .env("RUST_LOG", filter)
            .output()
            .unwrap();
        assert_code(&out, 0);
        assert_eq!(stdout(&out), content);
        let err = stderr(&out);
        assert!(err.contains("unotify: trace: pid "), "{filter}: {err}");
    }
}

/// `unotify run` with `--deny` rules that make directory creation fail with
/// `errno` (the default if `None`), running `mkdir target`. x86_64 has both
/// `mkdir` and `mkdirat`; aarch64 only `mkdirat`.
fn deny_mkdir(errno: Option<&str>, target: &str) -> Output {
    let mut args = vec!["run".to_owned()];
    for call in ["mkdir", "mkdirat"] {
        if unotify::syscalls::resolve(call).is_ok() {
            args.push("--deny".to_owned());
            args.push(match errno {
                Some(e) => format!("{call}={e}"),
                None => call.to_owned(),
            });
        }
    }
    args.extend(["--".to_owned(), "mkdir".to_owned(), target.to_owned()]);
    unotify().args(&args).output().unwrap()
}

#[test]
fn deny_makes_the_call_fail_with_the_errno() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("denied");
    let target_s = target.to_str().unwrap();
    let cases = [
        (Some("EACCES".to_owned()), "Permission denied"),
        (Some(libc::EROFS.to_string()), "Read-only file system"),
        (None, "Operation not permitted"),
    ];
    for (errno, message) in cases {
        let out = deny_mkdir(errno.as_deref(), target_s);
        assert_code(&out, 1);
        assert!(
            stderr(&out).contains(message),
            "{errno:?}: stderr:\n{}",
            stderr(&out)
        );
        assert!(!target.exists());
    }

    // Control: without the rule the same command works.
    let out = run(&["run", "--", "mkdir", target_s]);
    assert_code(&out, 0);
    assert!(target.is_dir());
}

#[test]
fn check_reports_ten_features() {
    let out = run(&["check"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let names = [
        "seccomp user notification",
        "SECCOMP_ADDFD_FLAG_SEND",
        "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        "NOTIF_RECV ends on hang-up",
        "pidfd_getfd",
        "Landlock",
        "isolation from the host",
        "memory limit by cgroup",
        "process containment by cgroup",
    ];
    assert_eq!(lines.len(), names.len(), "{text}");
    for (line, name) in lines.iter().zip(names) {
        let rest = line
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(": "))
            .unwrap_or_else(|| panic!("line {line:?} should start with {name:?}"));
        assert!(
            (rest.starts_with("yes (") || rest.starts_with("no (")) && rest.ends_with(')'),
            "{line}"
        );
    }
    // Exit 0 means the first one is available, with the kernel's sizes.
    assert!(
        lines[0].starts_with("seccomp user notification: yes (notif "),
        "{}",
        lines[0]
    );
}

static MARKERS: AtomicU32 = AtomicU32::new(0);

/// A `sleep` duration unique to this test run, to find its processes.
fn unique_sleep_arg() -> String {
    format!(
        "1000.{}{:03}",
        std::process::id(),
        MARKERS.fetch_add(1, Ordering::Relaxed)
    )
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `unotify run -- ARGS`, waits until `expect` sleeps carry
/// `marker`, sends `sig` to unotify and checks it ends by that signal
/// within a second, leaving no process with the marker.
fn terminated_by(sig: i32, args: &[&str], marker: &str, expect: usize) {
    let mut child = unotify()
        .arg("run")
        .arg("--")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the sandboxed sleep to start",
        Duration::from_secs(10),
        || sleeps_with_arg(marker).len() >= expect,
    );
    // The pid is our unreaped child.
    unotify::sys::process::kill(child.id() as i32, sig).expect("kill");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(1) {
            let _ = child.kill();
            panic!("unotify did not exit within a second of signal {sig}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    // It ends by the signal itself, as the program did, so that a calling
    // shell sees it (and a `for` loop stops on Ctrl-C); the shell's `$?`
    // is 128+sig.
    assert_eq!(
        status.signal(),
        Some(sig),
        "status {status:?} ({:?}), stderr:\n{err}",
        status.code()
    );
    // The sandbox went with it (processes killed are reaped by unotify or,
    // for orphans, by init; a zombie has an empty cmdline).
    wait_until("the sandbox to be gone", Duration::from_millis(500), || {
        sleeps_with_arg(marker).is_empty()
    });
}

#[test]
fn sigterm_ends_the_sandbox_and_unotify_by_sigterm() {
    let marker = unique_sleep_arg();
    terminated_by(libc::SIGTERM, &["sleep", &marker], &marker, 1);
}

#[test]
fn sigint_ends_the_whole_process_group_and_unotify_by_sigint() {
    let marker = unique_sleep_arg();
    let script = format!("sleep {marker} & sleep {marker}; wait");
    terminated_by(libc::SIGINT, &["sh", "-c", &script], &marker, 2);
}
