//! Path denial and FIFOs without `O_NONBLOCK`: their open blocks until
//! the other end is opened, so the supervisor makes it on its deferral
//! pool. That open must end when the program no longer waits for it (its
//! process exited, the deferral's deadline answered it): a program that
//! leaves FIFO opens behind must not keep its run (or the host's threads)
//! busy. A program that lives still gets bare Linux's FIFO semantics.
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
const FIFO_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
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

int main(int argc, char **argv) {
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

/// A FIFO open that the deferral's deadline answered (`EIO`) ends too:
/// its thread is not left blocked in `open` after the run.
#[test]
fn a_fifo_open_answered_by_the_deadline_leaves_no_thread() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "fifo once");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let fifo = base.join("fifo");
    mkfifo(&fifo);
    let sandbox = denying(&base, Some(Duration::from_millis(300)));
    let before = settled_threads(Duration::from_secs(2));
    let (out, took) = run(&sandbox, &["once", fifo.to_str().unwrap()]);
    let after = settled_threads(Duration::from_secs(5));
    eprintln!("fifo once: {took:?}, threads {before} -> {after}; output:\n{out}");
    assert_eq!(out.trim(), format!("err:{}", libc::EIO));
    assert_eq!(after, before, "a supervisor thread was left behind");
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
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open the writing end");
            f.write_all(b"late writer").expect("write");
        })
    };
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

/// A program blocking on more FIFOs than the deferral pool admits (64 by
/// default) gets `EAGAIN` for the rest, and the command says so once, not
/// once per refused open (before: a line for each of the 36 refusals; the
/// red team's 200 opens printed 136).
#[test]
fn a_full_deferral_pool_is_reported_once() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(120), "fifo flood");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    for i in 0..100 {
        mkfifo(&base.join(format!("fifo{i}")));
    }
    std::fs::write(base.join("denied"), "SECRET\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unotify"))
        .arg("run")
        .arg("--deny-path")
        .arg(base.join("denied"))
        .arg("--")
        .arg(fifo_program())
        .args(["hang", base.to_str().unwrap(), "100"])
        .output()
        .expect("run unotify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refused = stdout
        .lines()
        .filter(|l| l.ends_with("returned -1"))
        .count();
    let told = stderr
        .lines()
        .filter(|l| l.contains("deferrals in flight"))
        .count();
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    assert!(refused >= 36, "the pool admitted more than 64:\n{stdout}");
    assert_eq!(told, 1, "{refused} refusals told {told} times:\n{stderr}");
}
