//! The engine's fail-closed rules (DESIGN.md, "Fail-closed rules"), each
//! observed from a real sandboxed program, plus the configuration and exec
//! errors that must be reported instead of running anything.
//!
//! Deferral admission and deadlines, held policy events, freezes and
//! creation tracking are tested elsewhere.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{run_ok, spawn_piped as spawn};
use common::{C_PRELUDE as PRELUDE, GETPPID_C as GETPPID, READY_GETPPID_C as READY_GETPPID};
use unotify::{
    Command, Error, HandlerCtx, MemoryError, NotifAction, Sandbox, Stats, SupervisorHandle,
};

/// With RLIMIT_NOFILE lowered to 64, `mkdirat(AT_FDCWD, argv[i], 0755)` for
/// each argument, then whether fd 100 exists.
const MKDIRAT_LOW_NOFILE: &str = r#"
int main(int argc, char **argv) {
    struct rlimit rl = { 64, 64 };
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return 2;
    for (int i = 1; i < argc; i++)
        dprintf(1, "%ld\n", sys3(SYS_mkdirat, AT_FDCWD, (long)argv[i], 0755));
    dprintf(1, "fd100 %ld\n", sys3(SYS_fcntl, 100, F_GETFD, 0));
    return 0;
}
"#;

/// `mkdirat` with argv[1] as the path, or with an unmapped address if
/// argv[1] is "unmapped".
const MKDIRAT_PTR: &str = r#"
int main(int argc, char **argv) {
    const char *p = argv[1];
    if (!strcmp(p, "unmapped")) {
        long page = sysconf(_SC_PAGESIZE);
        char *m = mmap(0, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return 2;
        munmap(m, page);
        p = m;
    }
    dprintf(1, "%ld\n", sys3(SYS_mkdirat, AT_FDCWD, (long)p, 0755));
    return 0;
}
"#;

fn program(name: &str, body: &str) -> PathBuf {
    common::build_c(name, &[PRELUDE, body].concat(), &[])
}

fn neg(errno: i32) -> String {
    format!("-{errno}")
}

/// Polls until `cond` holds, for at most 2 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the supervisor's counters satisfy `cond` (the last counter
/// bumps may land just after the program saw its answer).
fn stats_until(sup: &SupervisorHandle, what: &str, cond: impl Fn(&Stats) -> bool) -> Stats {
    let mut last = Stats::default();
    eventually(what, || {
        last = sup.stats().expect("the supervisor is still running");
        cond(&last)
    });
    last
}

#[test]
fn failed_fd_injection_answers_eacces_and_never_continues() {
    let dir = tempfile::tempdir().unwrap();
    let tracked_ok = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&tracked_ok);
    let sb = Sandbox::builder()
        .handle("mkdirat", move |cx: &HandlerCtx<'_>| {
            let path = match cx.read_cstr(cx.arg(1), 4096) {
                Ok(p) => p,
                Err(e) => return NotifAction::Errno(e.errno()),
            };
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
            let fd = unotify::action::sealed_memfd(b"x").unwrap();
            match name {
                b"negative-target" => NotifAction::InjectFd {
                    fd,
                    target: -1,
                    newfd_flags: 0,
                },
                // Above the program's RLIMIT_NOFILE (64).
                b"target-over-rlimit" => NotifAction::InjectFd {
                    fd,
                    target: 1000,
                    newfd_flags: 0,
                },
                b"setfd-bad-flags" => NotifAction::InjectFd {
                    fd,
                    target: 100,
                    newfd_flags: 0xFFFF,
                },
                b"send-bad-flags" => NotifAction::InjectFdSend {
                    fd,
                    newfd_flags: 0xFFFF,
                },
                b"tracked-bad-flags" => {
                    let flag = Arc::clone(&flag);
                    NotifAction::InjectFdSendTracked {
                        fd,
                        newfd_flags: 0xFFFF,
                        on_success: Box::new(move |_| flag.store(true, Ordering::SeqCst)),
                    }
                }
                _ => NotifAction::Continue,
            }
        })
        .build()
        .unwrap();
    let names = [
        "negative-target",
        "target-over-rlimit",
        "setfd-bad-flags",
        "send-bad-flags",
        "tracked-bad-flags",
    ];
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    let control = dir.path().join("control");
    let mut args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    args.push(control.to_str().unwrap());
    let out = run_ok(
        &sb,
        &program("mkdirat_low_nofile", MKDIRAT_LOW_NOFILE),
        &args,
    );
    let mut expected = vec![neg(libc::EACCES); names.len()];
    expected.push("0".into());
    expected.push(format!("fd100 {}", neg(libc::EBADF)));
    assert_eq!(
        out, expected,
        "each failed injection is EACCES; nothing was installed at fd 100"
    );
    for p in &paths {
        assert!(
            !p.exists(),
            "{} was created: a failed injection let the call run",
            p.display()
        );
    }
    assert!(control.is_dir(), "the control call continued and ran");
    assert!(
        !tracked_ok.load(Ordering::SeqCst),
        "on_success must not run when injection fails"
    );
}

#[test]
fn handler_panic_answers_eperm_and_the_supervisor_keeps_running() {
    let sb = Sandbox::builder()
        .handle("getppid", |cx: &HandlerCtx<'_>| match cx.arg(0) {
            0 => panic!("deliberate panic in a test handler"),
            1 => NotifAction::defer(|| panic!("deliberate panic in a test deferral")),
            _ => NotifAction::ReturnValue(7),
        })
        .build()
        .unwrap();
    let mut child = spawn(
        &sb,
        &program("getppid", GETPPID),
        &["0", "2", "1", "2", "0", "2"],
    );
    let sup = child.supervisor().unwrap();
    let out = common::read_all(&mut child.stdout);
    let eperm = neg(libc::EPERM);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            eperm.as_str(),
            "7",
            eperm.as_str(),
            "7",
            eperm.as_str(),
            "7"
        ],
        "a panic is EPERM, and the next call is answered normally"
    );
    let stats = stats_until(&sup, "every call answered", |s| s.answered == 6);
    assert_eq!(stats.panics, 3, "{stats:?}");
    assert_eq!(stats.received, 6, "{stats:?}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_panic_outside_the_handler_chain_keeps_the_only_worker_alive() {
    let _dog = common::watchdog(Duration::from_secs(20), "a panic outside the handler chain");
    // `on_success` runs while the answer is sent, outside the handler chain's
    // own catch: with one worker, a panic there must not take the worker down.
    let sb = Sandbox::builder()
        .workers(1)
        .handle("getppid", |cx: &HandlerCtx<'_>| match cx.arg(0) {
            0 => NotifAction::InjectFdSendTracked {
                fd: std::fs::File::open("/dev/null").unwrap().into(),
                newfd_flags: 0,
                on_success: Box::new(|_| panic!("deliberate panic in on_success")),
            },
            _ => NotifAction::ReturnValue(7),
        })
        .build()
        .unwrap();
    let lines = run_ok(&sb, &program("getppid", GETPPID), &["0", "1", "1"]);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].parse::<i32>().is_ok_and(|fd| fd >= 3),
        "the injected fd was delivered before the panic: {lines:?}"
    );
    assert_eq!(&lines[1..], ["7", "7"], "the worker survived the panic");
}

#[test]
fn invalid_errno_answers_eperm() {
    let values = [0, 5000, -1, 4096, i32::MIN, 4095, libc::EROFS];
    let sb = Sandbox::builder()
        .handle("getppid", move |cx: &HandlerCtx<'_>| {
            NotifAction::Errno(values[cx.arg(0) as usize])
        })
        .build()
        .unwrap();
    let out = run_ok(
        &sb,
        &program("getppid", GETPPID),
        &["0", "1", "2", "3", "4", "5", "6"],
    );
    let eperm = neg(libc::EPERM);
    assert_eq!(
        out,
        [
            eperm.clone(),
            eperm.clone(),
            eperm.clone(),
            eperm.clone(),
            eperm,
            neg(4095),
            neg(libc::EROFS)
        ],
        "Errno outside 1..=4095 becomes EPERM, never success"
    );
}

#[test]
fn releasing_with_hold_or_defer_answers_eperm() {
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::Hold)
        .build()
        .unwrap();
    let mut child = spawn(&sb, &program("ready_getppid", READY_GETPPID), &["0", "0"]);
    let sup = child.supervisor().unwrap();
    let mut out = child.stdout.take().unwrap();
    assert_eq!(read_line(&mut out), "ready");
    for action in [
        NotifAction::Hold,
        NotifAction::defer(|| NotifAction::ReturnValue(1)),
    ] {
        let mut held = Vec::new();
        eventually("a held call", || {
            held = sup.held();
            !held.is_empty()
        });
        assert!(sup.release(held[0].id, action));
        assert_eq!(read_line(&mut out), neg(libc::EPERM));
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

fn read_line(f: &mut std::fs::File) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while f.read(&mut b).expect("read child output") == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).expect("utf-8 output")
}

#[test]
fn memory_errors_map_to_errnos() {
    assert_eq!(MemoryError::Gone.errno(), libc::EIO);
    assert_eq!(
        MemoryError::Fault(std::io::Error::from_raw_os_error(libc::EFAULT)).errno(),
        libc::EIO
    );
    assert_eq!(MemoryError::TooLong.errno(), libc::ENAMETOOLONG);
}

#[test]
fn unreadable_or_too_long_memory_is_answered_with_its_errno() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::builder()
        .handle("mkdirat", |cx: &HandlerCtx<'_>| {
            match cx.read_cstr(cx.arg(1), 16) {
                Ok(_) => NotifAction::Continue,
                Err(e) => NotifAction::Errno(e.errno()),
            }
        })
        .build()
        .unwrap();
    let exe = program("mkdirat_ptr", MKDIRAT_PTR);
    assert_eq!(run_ok(&sb, &exe, &["unmapped"]), [neg(libc::EIO)]);
    let long = dir.path().join("a-name-longer-than-sixteen-bytes");
    assert_eq!(
        run_ok(&sb, &exe, &[long.to_str().unwrap()]),
        [neg(libc::ENAMETOOLONG)]
    );
    assert!(!long.exists());
}

/// State of process `pid` from `/proc/<pid>/stat` (`'Z'` for a zombie).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn answer_to_a_dead_task_is_stale_and_the_supervisor_stays_healthy() {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (report_tx, report_rx) = mpsc::channel::<(bool, String)>();
    let sb = Sandbox::builder()
        .handle("getppid", move |cx: &HandlerCtx<'_>| {
            if cx.arg(0) == 0 {
                return NotifAction::ReturnValue(42);
            }
            entered_tx.send(()).unwrap();
            // The test kills the program now; its call stops being pending.
            let deadline = Instant::now() + Duration::from_secs(2);
            while cx.id_valid() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let read = match cx.read_mem(cx.arg(1), 1) {
                Err(MemoryError::Gone) => "Gone".to_owned(),
                other => format!("{other:?}"),
            };
            report_tx.send((cx.id_valid(), read)).unwrap();
            NotifAction::ReturnValue(1)
        })
        .build()
        .unwrap();
    let exe = program("getppid", GETPPID);
    let mut child = spawn(&sb, &exe, &["1"]);
    let sup = child.supervisor().unwrap();
    entered_rx
        .recv_timeout(Duration::from_secs(2))
        .expect("the handler ran");
    child.kill().unwrap();
    let (still_valid, read) = report_rx
        .recv_timeout(Duration::from_secs(3))
        .expect("the handler finished");
    assert!(!still_valid, "the id is invalid once the task is dead");
    assert_eq!(
        read, "Gone",
        "memory of a dead task's call is reported Gone"
    );
    let stats = stats_until(&sup, "the answer counted stale", |s| s.stale >= 1);
    assert_eq!(stats.answered, 0, "{stats:?}");
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    // The same sandbox still supervises a new program.
    assert_eq!(run_ok(&sb, &exe, &["0"]), ["42"]);
}

#[test]
fn late_deferred_answer_to_a_dead_task_is_stale() {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let sb = Sandbox::builder()
        .handle("getppid", move |cx: &HandlerCtx<'_>| {
            if cx.arg(0) == 0 {
                return NotifAction::ReturnValue(42);
            }
            let entered = entered_tx.clone();
            let go = Arc::clone(&go_rx);
            NotifAction::defer(move || {
                entered.send(()).unwrap();
                let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(3));
                NotifAction::ReturnValue(1)
            })
        })
        .build()
        .unwrap();
    let exe = program("getppid", GETPPID);
    let mut child = spawn(&sb, &exe, &["1"]);
    let pid = child.pid();
    let sup = child.supervisor().unwrap();
    entered_rx
        .recv_timeout(Duration::from_secs(2))
        .expect("the deferral ran");
    child.kill().unwrap();
    eventually("the program is a zombie", || proc_state(pid) == Some('Z'));
    go_tx.send(()).unwrap();
    let stats = stats_until(&sup, "the late answer counted stale", |s| s.stale >= 1);
    assert_eq!((stats.deferred, stats.answered), (1, 0), "{stats:?}");
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(run_ok(&sb, &exe, &["0"]), ["42"]);
}

fn noop(_: &HandlerCtx<'_>) -> NotifAction {
    NotifAction::Continue
}

#[test]
fn handler_on_a_denied_call_is_a_conflicting_rule() {
    let builds = [
        Sandbox::builder()
            .deny("mkdirat", libc::EPERM)
            .handle("mkdirat", noop)
            .build(),
        Sandbox::builder()
            .handle("mkdirat", noop)
            .deny("mkdirat", libc::EPERM)
            .build(),
        Sandbox::builder()
            .deny("mkdirat", libc::EPERM)
            .trace("mkdirat")
            .build(),
    ];
    for b in builds {
        match b {
            Err(e @ Error::ConflictingRule { .. }) => {
                assert!(
                    e.to_string().contains("mkdirat"),
                    "message names the call: {e}"
                );
            }
            Err(e) => panic!("expected ConflictingRule, got {e:?}"),
            Ok(_) => panic!("expected ConflictingRule, got a sandbox"),
        }
    }
}

#[test]
fn unknown_syscall_names_are_rejected() {
    let builds = [
        Sandbox::builder().handle("no_such_call", noop).build(),
        Sandbox::builder().trace("no_such_call").build(),
        Sandbox::builder().deny("no_such_call", libc::EPERM).build(),
    ];
    for b in builds {
        match b {
            Err(e @ Error::UnknownSyscall { .. }) => {
                assert!(
                    e.to_string().contains("no_such_call"),
                    "message names the call: {e}"
                );
            }
            Err(e) => panic!("expected UnknownSyscall, got {e:?}"),
            Ok(_) => panic!("expected UnknownSyscall, got a sandbox"),
        }
    }
}

#[test]
fn zero_workers_or_zero_defer_limit_is_invalid() {
    for b in [
        Sandbox::builder().workers(0).build(),
        Sandbox::builder().defer_limit(0).build(),
    ] {
        match b {
            Err(Error::InvalidConfig { message }) => assert!(!message.is_empty()),
            Err(e) => panic!("expected InvalidConfig, got {e:?}"),
            Ok(_) => panic!("expected InvalidConfig, got a sandbox"),
        }
    }
}

#[test]
fn exec_failures_are_reported_and_the_sandbox_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::ReturnValue(3))
        .build()
        .unwrap();

    for missing in ["/nonexistent/dir/program", "unotify-test-no-such-program"] {
        match sb.spawn(&mut Command::new(missing)) {
            Err(e @ Error::NotFound { .. }) => {
                assert!(
                    e.to_string().contains(missing),
                    "message names the program: {e}"
                );
            }
            Err(e) => panic!("{missing}: expected NotFound, got {e:?}"),
            Ok(_) => panic!("{missing}: expected NotFound, got a child"),
        }
    }

    let not_executable = dir.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bad_format = dir.path().join("bad-format");
    let mut f = std::fs::File::create(&bad_format).unwrap();
    f.write_all(&[0x7f, b'E', b'L', b'F', 0, 0, 0, 0]).unwrap();
    drop(f);
    std::fs::set_permissions(&bad_format, std::fs::Permissions::from_mode(0o755)).unwrap();
    for path in [&not_executable, &bad_format, &dir.path().to_path_buf()] {
        match sb.spawn(&mut Command::new(path)) {
            Err(e @ Error::CannotExecute { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(path.to_str().unwrap()),
                    "message names the program: {msg}"
                );
            }
            Err(e) => panic!("{}: expected CannotExecute, got {e:?}", path.display()),
            Ok(_) => panic!("{}: expected CannotExecute, got a child", path.display()),
        }
    }

    assert_eq!(run_ok(&sb, &program("getppid", GETPPID), &["0"]), ["3"]);
}
