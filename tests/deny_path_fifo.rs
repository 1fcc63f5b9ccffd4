//! Path denial and FIFOs without `O_NONBLOCK`: their open blocks until
//! the other end is opened, so the supervisor makes it off its workers, on
//! a thread of its own, neither bounded by the deferral pool's slots nor
//! by its deadline. That open must end when the program no longer waits
//! for it (its process exited or was killed): a program that leaves FIFO
//! opens behind must not keep its run (or the host's threads) busy. A
//! program that lives gets bare Linux's FIFO semantics: it waits as long
//! as it takes, with as many openers as it likes, and a signal interrupts
//! the wait.
//!
//! Tests here count this process's threads: they run one at a time.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use unotify::{Command, Sandbox, Stdio};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `fifo hang DIR N`: N threads each open `DIR/fifoI` (readers for even I,
/// writers for odd I), none of which gets another end; the main thread
/// prints `started` and exits after 300 ms.
/// `fifo read PATH` / `fifo write PATH`: with a second thread alive (so the
/// sandbox has more than one task), opens PATH for reading (prints what it
/// reads) or writing (writes `from the program`).
/// `fifo once PATH`: opens PATH for reading in a thread, prints the result
/// (`ok` or `err:ERRNO`) and exits.
/// `fifo many PATH N`: N threads each open PATH for reading; prints
/// `opened=X failed=Y` once all returned.
/// `fifo alarm PATH restart|plain`: a SIGALRM handler (with `SA_RESTART`
/// or without) and an alarm in 300 ms, then opens PATH for reading; prints
/// `ok hits=H` or `err:ERRNO hits=H` (H: handler runs).
/// `fifo sleep N`: N threads each sleep 2 s to an absolute wall-clock time
/// (`clock_nanosleep`); prints `slept R` for each (R: its result).
const FIFO_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[4096];

static void *opener(void *a) {
    long i = (long)a;
    char n[4200];
    snprintf(n, sizeof n, "%s/fifo%ld", dir, i);
    int fd = open(n, i % 2 ? O_WRONLY : O_RDONLY);
    printf("open %ld returned %d\n", i, fd);
    fflush(stdout);
    return 0;
}

static void *idle(void *a) { (void)a; for (;;) pause(); return 0; }

static void *once(void *a) {
    int fd = open((const char *)a, O_RDONLY);
    if (fd < 0) printf("err:%d\n", errno); else printf("ok\n");
    fflush(stdout);
    return 0;
}

static int opened, failed;

static void *reader(void *a) {
    int fd = open((const char *)a, O_RDONLY);
    __atomic_add_fetch(fd >= 0 ? &opened : &failed, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static volatile sig_atomic_t hits;
static void on_alarm(int s) { (void)s; hits++; }

static void *sleeper(void *a) {
    (void)a;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 2;
    int r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &t, 0);
    printf("slept %d\n", r);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "many")) {
        int n = atoi(argv[3]);
        pthread_t *t = calloc(n, sizeof *t);
        for (int i = 0; i < n; i++) pthread_create(&t[i], 0, reader, argv[2]);
        for (int i = 0; i < n; i++) pthread_join(t[i], 0);
        printf("opened=%d failed=%d\n", opened, failed);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "alarm")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sa.sa_flags = strcmp(argv[3], "restart") ? 0 : SA_RESTART;
        sigaction(SIGALRM, &sa, 0);
        struct itimerval it = {{0, 0}, {0, 300000}};
        setitimer(ITIMER_REAL, &it, 0);
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) printf("err:%d hits=%d\n", errno, (int)hits);
        else printf("ok hits=%d\n", (int)hits);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "sleep")) {
        int n = atoi(argv[2]);
        pthread_t *t = calloc(n, sizeof *t);
        for (int i = 0; i < n; i++) pthread_create(&t[i], 0, sleeper, 0);
        for (int i = 0; i < n; i++) pthread_join(t[i], 0);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "hang")) {
        snprintf(dir, sizeof dir, "%s", argv[2]);
        int n = atoi(argv[3]);
        for (long i = 0; i < n; i++) {
            pthread_t t;
            pthread_create(&t, 0, opener, (void *)i);
        }
        usleep(300000);
        printf("started\n");
        fflush(stdout);
        _exit(0);
    }
    if (argc == 3 && !strcmp(argv[1], "once")) {
        pthread_t t;
        pthread_create(&t, 0, once, argv[2]);
        pthread_join(t, 0);
        return 0;
    }
    pthread_t t;
    pthread_create(&t, 0, idle, 0);
    if (argc == 3 && !strcmp(argv[1], "read")) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) { printf("err:%d\n", errno); return 1; }
        char buf[256];
        ssize_t got = 0, r;
        while ((r = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += r;
        buf[got] = 0;
        printf("read:%s\n", buf);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "write")) {
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0) { printf("err:%d\n", errno); return 1; }
        const char *m = "from the program";
        printf("wrote:%zd\n", write(fd, m, strlen(m)));
        return 0;
    }
    return 2;
}
"#;

fn fifo_program() -> std::path::PathBuf {
    common::build_c("deny_path_fifo", FIFO_C, &["-pthread"])
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A sandbox denying a file of `dir` (so opens go through the supervisor).
fn denying(dir: &Path, timeout: Option<Duration>) -> Sandbox {
    std::fs::write(dir.join("denied"), "SECRET\n").unwrap();
    let mut b = Sandbox::builder().deny_path(dir.join("denied"));
    if let Some(t) = timeout {
        b = b.defer_timeout(t);
    }
    b.build().expect("build sandbox")
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// This process's thread count once stable for 100 ms (threads that are
/// ending get time to go), within `limit`.
fn settled_threads(limit: Duration) -> usize {
    let start = Instant::now();
    let mut last = threads();
    let mut since = Instant::now();
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
        let now = threads();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(100) {
            break;
        }
    }
    last
}

fn run(sandbox: &Sandbox, args: &[&str]) -> (String, Duration) {
    let start = Instant::now();
    let mut child = sandbox
        .spawn(Command::new(fifo_program()).args(args).stdout(Stdio::Piped))
        .expect("spawn fifo");
    let out = common::read_all(&mut child.stdout);
    let status = child.wait().expect("wait");
    assert!(status.success(), "fifo {args:?}: {status:?}\n{out}");
    (out, start.elapsed())
}

/// The red team's reproducer: 8 threads each block opening a FIFO that
/// never gets another end (4 readers, 4 writers), then the program exits.
/// The run ends at once and leaves no supervisor thread behind (before:
/// 30 s, the deferral deadline, and 8 threads blocked in `open` for good).
#[test]
fn fifo_opens_left_behind_by_an_exiting_program_end_with_it() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(120), "fifo hang");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    for i in 0..8 {
        mkfifo(&base.join(format!("fifo{i}")));
    }
    let sandbox = denying(&base, None);
    let before = settled_threads(Duration::from_secs(2));
    let (out, took) = run(&sandbox, &["hang", base.to_str().unwrap(), "8"]);
    let after = settled_threads(Duration::from_secs(5));
    eprintln!("fifo hang: {took:?}, threads {before} -> {after}; output:\n{out}");
    assert_eq!(out.trim(), "started", "no FIFO open may have returned");
    assert!(
        took < Duration::from_secs(3),
        "the run waited {took:?} for FIFO opens its program left behind"
    );
    assert_eq!(after, before, "supervisor threads were left behind");
}

/// A new directory (canonical) with a FIFO `fifo` in it.
fn one_fifo() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let fifo = base.join("fifo");
    mkfifo(&fifo);
    (dir, base, fifo)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// A host writer that opens `fifo` after `delay`: writes `message` and
/// closes, or (`None`) is kept open until the handle is joined.
fn late_writer(
    fifo: &Path,
    delay: Duration,
    message: Option<&'static [u8]>,
) -> std::thread::JoinHandle<Option<std::fs::File>> {
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the writing end");
        let message = message?;
        f.write_all(message).expect("write");
        None
    })
}

/// A reader whose writer comes after the deferral deadline (300 ms here,
/// 30 s by default) still gets it, as on bare Linux (before: `EIO` at the
/// deadline, and the late writer's open then waited for a reader).
#[test]
fn a_fifo_reader_waits_past_the_deferral_deadline() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "fifo past deadline");
    let (_dir, base, fifo) = one_fifo();
    let sandbox = denying(&base, Some(Duration::from_millis(300)));
    let writer = late_writer(
        &fifo,
        Duration::from_millis(1200),
        Some(b"after the deadline"),
    );
    let (out, _) = run(&sandbox, &["read", fifo.to_str().unwrap()]);
    writer.join().unwrap();
    assert_eq!(out.trim(), "read:after the deadline");
}

/// 100 readers wait at once on a FIFO (more than the deferral pool's 64
/// slots): every one opens once a writer comes, as on bare Linux (before:
/// 64 opened, 36 got `EAGAIN`).
#[test]
fn more_fifo_readers_than_the_deferral_pool_all_open() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "fifo many");
    let (_dir, base, fifo) = one_fifo();
    let sandbox = denying(&base, None);
    let writer = late_writer(&fifo, Duration::from_millis(1000), None);
    let (out, _) = run(&sandbox, &["many", fifo.to_str().unwrap(), "100"]);
    drop(writer.join().unwrap());
    assert_eq!(out.trim(), "opened=100 failed=0");
}

/// A reader killed while it waits (past the deferral deadline, which no
/// longer answers it) leaves nothing behind: no supervisor thread, no fd
/// (before: the deadline answered `EIO` and the program had ended before
/// it could be killed).
#[test]
fn a_fifo_reader_killed_while_waiting_leaves_nothing() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "fifo killed");
    let (_dir, base, fifo) = one_fifo();
    let sandbox = denying(&base, Some(Duration::from_millis(300)));
    // A first run starts what the supervisor starts once, at its first
    // exec (the ptrace thread, its pidfds and wake-up pipe): not left by
    // the reader.
    let mut first = sandbox
        .spawn(&mut Command::new("/bin/true"))
        .expect("spawn true");
    assert!(first.wait().expect("wait true").success());
    drop(first);
    let threads_before = settled_threads(Duration::from_secs(2));
    let fds_before = open_fds();
    let mut child = sandbox
        .spawn(
            Command::new(fifo_program())
                .args(["once", fifo.to_str().unwrap()])
                .stdout(Stdio::Piped),
        )
        .expect("spawn fifo");
    std::thread::sleep(Duration::from_millis(1000));
    let early = child.try_wait().expect("try_wait");
    child.kill().expect("kill");
    let out = common::read_all(&mut child.stdout);
    child.wait().expect("wait");
    drop(child);
    let threads_after = settled_threads(Duration::from_secs(5));
    let fds_after = open_fds();
    assert!(
        early.is_none(),
        "the reader ended by itself: {early:?} {out}"
    );
    assert_eq!(out.trim(), "", "the open returned");
    assert_eq!(threads_after, threads_before, "supervisor threads left");
    assert!(
        fds_after <= fds_before,
        "fds left: {fds_before} before, {fds_after} after"
    );
}

/// A signal interrupts a waiting open as on bare Linux: `EINTR` after the
/// handler ran (no `SA_RESTART`), or the open starts again and opens when
/// the writer comes (`SA_RESTART`). Before: neither, the open waited for
/// the deferral deadline (600 ms here) and failed `EIO`.
#[test]
fn a_signal_interrupts_a_waiting_fifo_open() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "fifo alarm");
    let (_dir, base, fifo) = one_fifo();
    let sandbox = denying(&base, Some(Duration::from_millis(600)));
    let (out, _) = run(&sandbox, &["alarm", fifo.to_str().unwrap(), "plain"]);
    assert_eq!(out.trim(), format!("err:{} hits=1", libc::EINTR));
    let writer = late_writer(&fifo, Duration::from_millis(1200), None);
    let (out, _) = run(&sandbox, &["alarm", fifo.to_str().unwrap(), "restart"]);
    drop(writer.join().unwrap());
    assert_eq!(out.trim(), "ok hits=1");
}

/// Bare Linux's semantics for a program that lives: its reader blocks
/// until the host opens the writing end 300 ms later, then reads the data;
/// its writer blocks until the host opens the reading end.
#[test]
fn a_fifo_opened_before_its_other_end_still_connects() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "fifo late end");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let sandbox = denying(&base, None);

    let fifo = base.join("to_program");
    mkfifo(&fifo);
    let writer = late_writer(&fifo, Duration::from_millis(300), Some(b"late writer"));
    let (out, took) = run(&sandbox, &["read", fifo.to_str().unwrap()]);
    writer.join().unwrap();
    assert_eq!(out.trim(), "read:late writer");
    assert!(took >= Duration::from_millis(250), "{took:?}");

    let fifo = base.join("from_program");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut f = std::fs::File::open(&fifo).expect("open the reading end");
            let mut s = String::new();
            f.read_to_string(&mut s).expect("read");
            s
        })
    };
    let (out, _) = run(&sandbox, &["write", fifo.to_str().unwrap()]);
    assert_eq!(reader.join().unwrap(), "from the program");
    assert_eq!(out.trim(), "wrote:16");
}

/// A program with more slow calls than the deferral pool admits (64 by
/// default; here wall-clock sleeps under `--time-start`) gets `EAGAIN` for
/// the rest, and the command says so once, not once per refused call
/// (before: a line for each of the 36 refusals). FIFO opens no longer
/// fill the pool (see above).
#[test]
fn a_full_deferral_pool_is_reported_once() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(120), "sleep flood");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    std::fs::write(base.join("denied"), "SECRET\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unotify"))
        .arg("run")
        .arg("--time-start")
        .arg("2024-01-02T03:04:05Z")
        .arg("--")
        .arg(fifo_program())
        .args(["sleep", "100"])
        .output()
        .expect("run unotify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refused = stdout
        .lines()
        .filter(|l| *l == format!("slept {}", libc::EAGAIN))
        .count();
    let told = stderr
        .lines()
        .filter(|l| l.contains("deferrals in flight"))
        .count();
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    assert!(refused >= 36, "the pool admitted more than 64:\n{stdout}");
    assert_eq!(told, 1, "{refused} refusals told {told} times:\n{stderr}");
}
