//! Every [`NotifAction`] variant and the [`HandlerCtx`] accessors, end to end.
//!
//! Each test runs a small C program under a real supervisor and checks what
//! the program saw (printed return values and errnos), what reached the
//! test's pipes and files, and how the program ended.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{finish, run_ok, run_piped as run, spawn_piped as spawn};
use common::{C_PRELUDE as PRELUDE, GETPPID_C as GETPPID, READY_GETPPID_C as READY_GETPPID};
use unotify::{HandlerCtx, NotifAction, Notification, Sandbox, SupervisorHandle};

/// `mkdirat(AT_FDCWD, argv[i], 0755)` for each argument.
const MKDIRAT: &str = r#"
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        dprintf(1, "%ld\n", sys3(SYS_mkdirat, AT_FDCWD, (long)argv[i], 0755));
    return 0;
}
"#;

/// Uses fd 100, which only exists if the supervisor injected it.
const FD100: &str = r#"
int main(void) {
    long fl = sys3(SYS_fcntl, 100, F_GETFL, 0);
    long fd = sys3(SYS_fcntl, 100, F_GETFD, 0);
    long w = write(100, "hello", 5) < 0 ? -errno : 5;
    dprintf(1, "%ld %ld %ld\n", fl < 0 ? fl : (fl & O_ACCMODE), fd, w);
    return 0;
}
"#;

/// Opens argv[1] read-only and reports what it got.
const OPEN_READ: &str = r#"
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        dprintf(1, "open failed: %d\n", errno);
        return 1;
    }
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    long w = write(fd, "x", 1) < 0 ? -errno : 1;
    int cloexec = (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
    dprintf(1, "fd=%d n=%zd content=%s write=%ld cloexec=%d\n", fd, n, buf, w, cloexec);
    return 0;
}
"#;

/// Calls `getppid` with a SIGUSR1 handler installed.
const SIGUSR1_GETPPID: &str = r#"
static volatile sig_atomic_t got;
static void on_usr1(int s) { (void)s; got = 1; }
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    long r = sys3(SYS_getppid, 0, 0, 0);
    dprintf(1, "%ld %d\n", r, (int)got);
    return 0;
}
"#;

/// Forks a grandchild that prints its pid and sleeps forever; once it is
/// running, the program calls `getppid`.
const FORK_THEN_GETPPID: &str = r#"
int main(void) {
    int ready[2];
    if (pipe(ready) < 0) return 2;
    pid_t g = fork();
    if (g < 0) return 3;
    if (g == 0) {
        close(ready[0]);
        dprintf(1, "%d\n", getpid());
        if (write(ready[1], "x", 1) != 1) _exit(4);
        for (;;) pause();
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) return 5;
    sys3(SYS_getppid, 0, 0, 0);
    dprintf(1, "survived\n");
    return 0;
}
"#;

/// Memory accessors: argv[1] picks the pointer handed to the kernel.
const MEMORY: &str = r#"
static char *unmapped(long page) {
    char *p = mmap(0, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) exit(2);
    munmap(p, page);
    return p;
}

static long datasync(long fd) { return sys3(SYS_fdatasync, fd, 0, 0); }
static void *datasync_thread(void *fd) { return (void *)datasync((long)fd); }

int main(int argc, char **argv) {
    long page = sysconf(_SC_PAGESIZE);
    const char *mode = argv[1];
    if (!strcmp(mode, "path")) {
        dprintf(1, "%ld\n", sys3(SYS_mkdirat, AT_FDCWD, (long)argv[2], 0755));
    } else if (!strcmp(mode, "unmapped")) {
        dprintf(1, "%ld\n", sys3(SYS_mkdirat, AT_FDCWD, (long)unmapped(page), 0755));
    } else if (!strcmp(mode, "boundary")) {
        /* The string and its NUL end exactly at the end of a page that is
           followed by an unmapped page. */
        char *p = mmap(0, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 2;
        munmap(p + page, page);
        size_t n = strlen(argv[2]) + 1;
        char *at = p + page - n;
        memcpy(at, argv[2], n);
        dprintf(1, "%ld\n", sys3(SYS_mkdirat, AT_FDCWD, (long)at, 0755));
    } else if (!strcmp(mode, "getcwd")) {
        char buf[64];
        memset(buf, 'z', sizeof buf);
        buf[sizeof buf - 1] = 0;
        long r = sys3(SYS_getcwd, (long)buf, sizeof buf, 0);
        dprintf(1, "%ld %s\n", r, buf);
    } else if (!strcmp(mode, "getcwd-unmapped")) {
        dprintf(1, "%ld\n", sys3(SYS_getcwd, (long)unmapped(page), 64, 0));
    } else if (!strcmp(mode, "dup") || !strcmp(mode, "dup-thread")) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return 3;
        long r;
        if (!strcmp(mode, "dup")) {
            r = datasync(fd);
        } else {
            pthread_t t;
            void *res;
            if (pthread_create(&t, 0, datasync_thread, (void *)(long)fd)) return 4;
            pthread_join(t, &res);
            r = (long)res;
        }
        dprintf(1, "%ld\n", r);
    } else {
        return 9;
    }
    return 0;
}
"#;

fn program(name: &str, body: &str) -> PathBuf {
    common::build_c(name, &[PRELUDE, body].concat(), &["-pthread"])
}

/// Reads one line (without the newline) from the child's stdout, a byte at a
/// time so nothing after the line is consumed.
fn read_line(f: &mut File) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b).expect("read child output") {
            0 => break,
            _ if b[0] == b'\n' => break,
            _ => line.push(b[0]),
        }
    }
    String::from_utf8(line).expect("utf-8 output")
}

/// Whether `f` has data (or EOF) within `ms` milliseconds.
fn readable_within(f: &File, ms: i32) -> bool {
    let mut pfd = [libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let timeout = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let n = unotify::sys::process::poll(&mut pfd, Some(timeout)).expect("poll");
    n == 1
}

/// Polls until `cond` holds, for at most 2 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for exactly one held call and returns it.
fn wait_held(sup: &SupervisorHandle) -> Notification {
    let mut held = Vec::new();
    eventually("a held call", || {
        held = sup.held();
        !held.is_empty()
    });
    assert_eq!(held.len(), 1, "exactly one call is held: {held:?}");
    held[0]
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().expect("create a pipe");
    (r.into(), w.into())
}

fn our_pid() -> String {
    std::process::id().to_string()
}

#[test]
fn continue_lets_the_real_call_run() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let sb = Sandbox::builder()
        .handle("getppid", move |_: &HandlerCtx<'_>| {
            counter.fetch_add(1, Ordering::SeqCst);
            NotifAction::Continue
        })
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("getppid", GETPPID), &["0"]);
    assert_eq!(
        out,
        [our_pid()],
        "the real getppid ran: the test process is the parent"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the handler saw the call");
}

#[test]
fn errno_fails_the_call_without_running_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("must-not-exist");
    let sb = Sandbox::builder()
        .handle("mkdirat", |_: &HandlerCtx<'_>| {
            NotifAction::Errno(libc::EROFS)
        })
        .build()
        .unwrap();
    let out = run_ok(
        &sb,
        &program("mkdirat", MKDIRAT),
        &[target.to_str().unwrap()],
    );
    assert_eq!(out, [format!("-{}", libc::EROFS)]);
    assert!(!target.exists(), "an Errno answer must not run the call");
}

#[test]
fn return_value_replaces_the_result() {
    let sb = Sandbox::builder()
        .handle("getppid", |cx: &HandlerCtx<'_>| match cx.arg(0) {
            0 => NotifAction::ReturnValue(4242),
            // A negative value in the errno range reads as an error.
            _ => NotifAction::ReturnValue(-i64::from(libc::ENOENT)),
        })
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("getppid", GETPPID), &["0", "1"]);
    assert_eq!(out, ["4242".to_owned(), format!("-{}", libc::ENOENT)]);
}

#[test]
fn inject_fd_installs_at_target_then_continues() {
    let (r, w) = pipe();
    let sb = Sandbox::builder()
        .handle("fcntl", move |cx: &HandlerCtx<'_>| {
            if cx.arg(0) != 100 || cx.arg(1) != libc::F_GETFL as u64 {
                return NotifAction::Continue;
            }
            NotifAction::InjectFd {
                fd: w.try_clone().expect("dup the pipe's write end"),
                target: 100,
                newfd_flags: libc::O_CLOEXEC as u32,
            }
        })
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("fd100", FD100), &[]);
    // F_GETFL ran for real on the injected pipe end (a fake answer would be
    // 0, not O_WRONLY); O_CLOEXEC was applied; the write went through.
    assert_eq!(out, [format!("{} {} 5", libc::O_WRONLY, libc::FD_CLOEXEC)]);
    let mut got = [0u8; 5];
    File::from(r).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
}

#[test]
fn inject_fd_send_returns_a_sealed_cloexec_fd() {
    let sb = Sandbox::builder()
        .handle("openat", |cx: &HandlerCtx<'_>| {
            match cx.read_cstr(cx.arg(1), 4096) {
                Ok(path) if path == b"/virtual/file" => {
                    NotifAction::inject_bytes(b"secret content")
                }
                Ok(_) => NotifAction::Continue,
                Err(e) => NotifAction::Errno(e.errno()),
            }
        })
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("open_read", OPEN_READ), &["/virtual/file"]);
    assert_eq!(out.len(), 1, "{out:?}");
    let line = &out[0];
    assert!(line.starts_with("fd="), "{line}");
    assert!(
        line.ends_with(&format!(
            " n=14 content=secret content write=-{} cloexec=1",
            libc::EPERM
        )),
        "content readable, writes refused by the seals, O_CLOEXEC set: {line}"
    );
}

#[test]
fn inject_fd_send_tracked_reports_the_fd_number() {
    let (tx, rx) = mpsc::channel::<i32>();
    let sb = Sandbox::builder()
        .handle("openat", move |cx: &HandlerCtx<'_>| {
            match cx.read_cstr(cx.arg(1), 4096) {
                Ok(path) if path == b"/virtual/tracked" => {
                    let tx = tx.clone();
                    NotifAction::InjectFdSendTracked {
                        fd: unotify::action::sealed_memfd(b"tracked").unwrap(),
                        newfd_flags: 0,
                        on_success: Box::new(move |n| tx.send(n).unwrap()),
                    }
                }
                Ok(_) => NotifAction::Continue,
                Err(e) => NotifAction::Errno(e.errno()),
            }
        })
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("open_read", OPEN_READ), &["/virtual/tracked"]);
    let reported = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("on_success was called");
    assert!(rx.try_recv().is_err(), "on_success is called once");
    assert_eq!(
        out,
        [format!(
            "fd={reported} n=7 content=tracked write=-{} cloexec=0",
            libc::EPERM
        )],
        "the program got the fd number on_success was given (and no O_CLOEXEC)"
    );
}

#[test]
fn hold_blocks_until_released() {
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::Hold)
        .build()
        .unwrap();
    let mut child = spawn(&sb, &program("ready_getppid", READY_GETPPID), &["0"]);
    let sup = child.supervisor().unwrap();
    let mut out = child.stdout.take().unwrap();
    assert_eq!(read_line(&mut out), "ready");
    let held = wait_held(&sup);
    assert_eq!(held.syscall_name(), Some("getppid"));
    assert_eq!(held.pid, child.pid());
    assert_eq!(sup.stats().unwrap().held, 1);
    assert!(!readable_within(&out, 200), "a held call must stay blocked");
    assert!(sup.release(held.id, NotifAction::ReturnValue(77)));
    assert_eq!(read_line(&mut out), "77");
    assert!(
        !sup.release(held.id, NotifAction::ReturnValue(78)),
        "an id is released once"
    );
    assert!(sup.held().is_empty());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `NotifAction::Hold` documents that a held call is answered `EPERM` when
/// the supervisor stops. Observed from the program: after
/// `SupervisorHandle::stop()`, its held call must come back with EPERM.
#[test]
fn hold_is_answered_eperm_when_the_supervisor_stops() {
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::Hold)
        .build()
        .unwrap();
    let mut child = spawn(&sb, &program("ready_getppid", READY_GETPPID), &["0"]);
    let sup = child.supervisor().unwrap();
    let mut out = child.stdout.take().unwrap();
    assert_eq!(read_line(&mut out), "ready");
    wait_held(&sup);
    sup.stop();
    let answered = readable_within(&out, 1000);
    if !answered {
        // Unblock the program so that the test ends; the assertion below
        // reports the defect.
        child.kill().unwrap();
    }
    assert!(
        answered,
        "DEFECT: after SupervisorHandle::stop() a held call is not answered: held calls are \
         answered EPERM only in Supervisor::join, which Child runs after waitpid returns, but the \
         program cannot exit while its call is held (src/supervisor/mod.rs join_inner, \
         src/sandbox.rs Child::finished)"
    );
    assert_eq!(read_line(&mut out), format!("-{}", libc::EPERM));
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn kill_task_sigkill_kills_the_program() {
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::KillTask {
            signal: libc::SIGKILL,
        })
        .build()
        .unwrap();
    let (out, status) = run(&sb, &program("getppid", GETPPID), &["0"]);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(out, "", "the call never returned");
}

#[test]
fn kill_task_with_a_handled_signal_fails_the_call_with_enomem() {
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::KillTask {
            signal: libc::SIGUSR1,
        })
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("sigusr1_getppid", SIGUSR1_GETPPID), &[]);
    assert_eq!(
        out,
        [format!("-{} 1", libc::ENOMEM)],
        "ENOMEM, and the SIGUSR1 handler ran"
    );
}

#[test]
fn kill_group_kills_the_whole_sandbox() {
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::KillGroup {
            signal: libc::SIGKILL,
        })
        .build()
        .unwrap();
    let mut child = spawn(&sb, &program("fork_then_getppid", FORK_THEN_GETPPID), &[]);
    // Both the program and its grandchild hold stdout: EOF before `wait`
    // (which would kill the group itself) means KillGroup killed both.
    let mut stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i32;
        assert!(
            readable_within(&stdout, left),
            "stdout still open after 2 s: KillGroup left a process of the group alive (output so far: {out:?})"
        );
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let grandchild: i32 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("only the grandchild's pid is printed: {out:?}"));
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    // The grandchild, reparented, is gone or a zombie waiting for its reaper.
    eventually("the grandchild is dead", || {
        match std::fs::read_to_string(format!("/proc/{grandchild}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    });
}

#[test]
fn defer_answers_from_the_deferral_pool() {
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| {
            NotifAction::defer(|| {
                std::thread::sleep(Duration::from_millis(100));
                NotifAction::ReturnValue(5)
            })
        })
        .build()
        .unwrap();
    let started = Instant::now();
    let out = run_ok(&sb, &program("getppid", GETPPID), &["0"]);
    assert_eq!(out, ["5"]);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "the closure's answer was waited for"
    );
}

#[test]
fn chain_continue_passes_to_the_next_handler() {
    let first_ran = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&first_ran);
    let sb = Sandbox::builder()
        .handle("getppid", move |_: &HandlerCtx<'_>| {
            seen.fetch_add(1, Ordering::SeqCst);
            NotifAction::Continue
        })
        .handle("getppid", |_: &HandlerCtx<'_>| NotifAction::ReturnValue(31))
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("getppid", GETPPID), &["0"]);
    assert_eq!(out, ["31"], "the second handler's answer wins");
    assert_eq!(
        first_ran.load(Ordering::SeqCst),
        1,
        "the first handler ran first"
    );
}

#[test]
fn chain_stops_at_the_first_answer() {
    let second_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&second_ran);
    let sb = Sandbox::builder()
        .handle("getppid", |_: &HandlerCtx<'_>| {
            NotifAction::Errno(libc::EACCES)
        })
        .handle("getppid", move |_: &HandlerCtx<'_>| {
            flag.store(true, Ordering::SeqCst);
            NotifAction::ReturnValue(1)
        })
        .build()
        .unwrap();
    let out = run_ok(&sb, &program("getppid", GETPPID), &["0"]);
    assert_eq!(out, [format!("-{}", libc::EACCES)]);
    assert!(
        !second_ran.load(Ordering::SeqCst),
        "the second handler must not run"
    );
}

/// A sandbox whose `mkdirat` handler reads the path with `read_cstr` and
/// reports it (or the error) on the channel.
fn path_reader(tx: mpsc::Sender<Result<Vec<u8>, String>>) -> Sandbox {
    Sandbox::builder()
        .handle("mkdirat", move |cx: &HandlerCtx<'_>| {
            match cx.read_cstr(cx.arg(1), 4096) {
                Ok(path) => {
                    let n = path.len() as i64;
                    tx.send(Ok(path)).unwrap();
                    NotifAction::ReturnValue(n)
                }
                Err(e) => {
                    let errno = e.errno();
                    tx.send(Err(format!("{e:?}"))).unwrap();
                    NotifAction::Errno(errno)
                }
            }
        })
        .build()
        .unwrap()
}

/// Runs the `memory` program in `mode` with `path` under [`path_reader`]:
/// the handler must read exactly `path`, and the call return its length.
fn read_cstr_round_trip(mode: &str, path: &str) {
    let (tx, rx) = mpsc::channel();
    let sb = path_reader(tx);
    let out = run_ok(&sb, &program("memory", MEMORY), &[mode, path]);
    assert_eq!(out, [path.len().to_string()]);
    assert_eq!(rx.try_recv().unwrap(), Ok(path.as_bytes().to_vec()));
}

#[test]
fn read_cstr_reads_the_path_argument() {
    read_cstr_round_trip("path", "/some/where/else");
}

#[test]
fn read_cstr_of_unmapped_memory_is_answered_eio() {
    let (tx, rx) = mpsc::channel();
    let sb = path_reader(tx);
    let out = run_ok(&sb, &program("memory", MEMORY), &["unmapped"]);
    assert_eq!(out, [format!("-{}", libc::EIO)]);
    let err = rx
        .try_recv()
        .unwrap()
        .expect_err("an unmapped address cannot be read");
    assert!(err.starts_with("Fault"), "{err}");
}

#[test]
fn read_cstr_stops_at_a_nul_ending_a_page() {
    read_cstr_round_trip("boundary", "/edge/of/the/page");
}

#[test]
fn read_cstr_accepts_an_unbounded_limit() {
    let sb = Sandbox::builder()
        .handle("mkdirat", |cx: &HandlerCtx<'_>| {
            match cx.read_cstr(cx.arg(1), usize::MAX) {
                Ok(path) => NotifAction::ReturnValue(path.len() as i64),
                Err(e) => NotifAction::Errno(e.errno()),
            }
        })
        .build()
        .unwrap();
    let path = "/no/limit";
    let out = run_ok(&sb, &program("memory", MEMORY), &["path", path]);
    assert_eq!(
        out,
        [path.len().to_string()],
        "read_cstr(addr, usize::MAX) must read the string (-1 = EPERM: the handler panicked)"
    );
}

fn cwd_writer() -> Sandbox {
    Sandbox::builder()
        .handle("getcwd", |cx: &HandlerCtx<'_>| {
            let data = b"/from/supervisor\0";
            match cx.write_mem(cx.arg(0), data) {
                Ok(()) => NotifAction::ReturnValue(data.len() as i64),
                Err(e) => NotifAction::Errno(e.errno()),
            }
        })
        .build()
        .unwrap()
}

#[test]
fn write_mem_fills_the_callers_buffer() {
    let out = run_ok(&cwd_writer(), &program("memory", MEMORY), &["getcwd"]);
    assert_eq!(out, ["17 /from/supervisor"]);
}

#[test]
fn write_mem_to_unmapped_memory_is_answered_eio() {
    let out = run_ok(
        &cwd_writer(),
        &program("memory", MEMORY),
        &["getcwd-unmapped"],
    );
    assert_eq!(out, [format!("-{}", libc::EIO)]);
}

/// A sandbox whose `fdatasync` handler writes through a duplicate of the
/// caller's fd and reports the calling thread.
fn fd_writer(tx: mpsc::Sender<u32>) -> Sandbox {
    Sandbox::builder()
        .handle("fdatasync", move |cx: &HandlerCtx<'_>| {
            tx.send(cx.pid()).unwrap();
            let fd = match cx.dup_fd(cx.arg(0) as i32) {
                Ok(fd) => fd,
                Err(e) => return NotifAction::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            };
            match File::from(fd).write_all(b"written by the supervisor\n") {
                Ok(()) => NotifAction::ReturnValue(0),
                Err(e) => NotifAction::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        })
        .build()
        .unwrap()
}

/// Runs the `memory` program in `mode` (`dup`: the main thread makes the
/// call; `dup-thread`: a second thread does) under [`fd_writer`]; checks the
/// call succeeded and the supervisor's write reached the program's file.
/// Returns (the caller's tid as the handler saw it, the program's pid).
fn dup_fd_round_trip(mode: &str) -> (u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out");
    let (tx, rx) = mpsc::channel();
    let sb = fd_writer(tx);
    let child = spawn(
        &sb,
        &program("memory", MEMORY),
        &[mode, file.to_str().unwrap()],
    );
    let pid = child.pid();
    let (out, status) = finish(child);
    assert_eq!(status.code(), Some(0), "{out}");
    assert_eq!(out, "0\n", "dup_fd failed ({mode}; printed -errno)");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "written by the supervisor\n"
    );
    (rx.try_recv().unwrap(), pid)
}

#[test]
fn dup_fd_writes_through_the_programs_file() {
    let (caller, pid) = dup_fd_round_trip("dup");
    assert_eq!(caller, pid, "the main thread made the call");
}

#[test]
fn dup_fd_works_for_a_call_from_a_non_leader_thread() {
    let (caller, pid) = dup_fd_round_trip("dup-thread");
    assert_ne!(caller, pid, "a second thread made the call");
}

/// Collects `unotify::trace` records.
struct TraceLog(Mutex<Vec<String>>);

impl log::Log for TraceLog {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target() == "unotify::trace"
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn trace_log() -> &'static TraceLog {
    static LOG: OnceLock<&'static TraceLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static TraceLog = Box::leak(Box::new(TraceLog(Mutex::new(Vec::new()))));
        log::set_logger(log).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
        log
    })
}

#[test]
fn trace_lets_the_call_run_and_logs_it() {
    let log = trace_log();
    let sb = Sandbox::builder().trace("getppid").build().unwrap();
    let child = spawn(&sb, &program("getppid", GETPPID), &["0"]);
    let pid = child.pid();
    let (out, status) = finish(child);
    assert_eq!(status.code(), Some(0));
    assert_eq!(out.trim(), our_pid(), "a traced call runs for real");
    let lines = log.0.lock().unwrap().clone();
    let ours: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("pid {pid} getppid(")))
        .collect();
    assert_eq!(ours.len(), 1, "one trace line for the call: {lines:?}");
    assert!(ours[0].ends_with("-> CONTINUE"), "{}", ours[0]);
}
