//! The deferral pool seen from outside: admission limit, deadline, nested
//! `Defer`, exactly one answer when the deadline and the closure race,
//! panicking closures, and workers staying free while closures block.
//!
//! Each test runs a small C program in the sandbox whose `getppid` calls are
//! trapped, reads what the program saw from its stdout, and checks the
//! supervisor's counters while the program is still alive (it waits on its
//! stdin before exiting).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use unotify::{Child, Command, HandlerCtx, NotifAction, Sandbox, Stats, Stdio, SupervisorHandle};

const EAGAIN: i64 = libc::EAGAIN as i64;
const EIO: i64 = libc::EIO as i64;
const EPERM: i64 = libc::EPERM as i64;
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn calls_program() -> PathBuf {
    common::build_c("calls", common::CALLS_C, &["-pthread"])
}

/// Spawns `calls THREADS NCALLS v ARGS...` with piped stdin and stdout.
fn spawn_calls(
    sb: &Sandbox,
    threads: usize,
    ncalls: usize,
    args: &[i64],
) -> (Child, Receiver<String>) {
    let mut cmd = Command::new(calls_program());
    cmd.arg(threads.to_string())
        .arg(ncalls.to_string())
        .arg("v")
        .args(args.iter().map(|a| a.to_string()))
        .stdin(Stdio::Piped)
        .stdout(Stdio::Piped);
    let mut child = sb.spawn(&mut cmd).expect("spawn calls");
    let out = child.stdout.take().expect("piped stdout");
    (child, common::line_reader(out))
}

/// Reads `n` call lines (in output order).
fn read_calls(rx: &Receiver<String>, n: usize) -> Vec<common::CallLine> {
    (0..n)
        .map(|_| {
            let line = common::next_line(rx, LINE_TIMEOUT, "waiting for a call result");
            common::parse_call_line(&line).unwrap_or_else(|| panic!("unexpected line {line:?}"))
        })
        .collect()
}

/// Waits until `cond` holds for the supervisor, or panics after 10 s.
fn wait_for(sup: &SupervisorHandle, what: &str, cond: impl Fn(&SupervisorHandle) -> bool) {
    let start = Instant::now();
    while !cond(sup) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}; stats {:?}, in flight {:?}",
            sup.stats(),
            sup.deferrals_in_flight()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The stats once `n` calls are answered. The supervisor counts an answer
/// after the kernel took it, so just after the child has seen its result
/// the count may still lag. Waits 50 ms more, so that an extra answer
/// (which must not happen) would be counted too.
fn settled(sup: &SupervisorHandle, n: u64) -> Stats {
    wait_for(sup, &format!("{n} answers"), |s| {
        s.stats().is_some_and(|st| st.answered + st.stale >= n)
    });
    std::thread::sleep(Duration::from_millis(50));
    sup.stats()
        .expect("supervisor alive while the child waits on stdin")
}

/// Closes the child's stdin (it exits 0) and checks its exit status.
fn finish(mut child: Child) {
    drop(child.stdin.take());
    let st = child.wait().expect("wait");
    assert_eq!(st.code(), Some(0), "calls exited with {st:?}");
}

/// A gate deferred closures wait on; opened by `open` or on drop (so a
/// failing test does not leave closures blocked and the child's `wait`
/// hanging on the deferral pool's shutdown).
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (m, cv) = &*self.0;
        let mut open = m.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = cv.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self) {
        let (m, cv) = &*self.0;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}

struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[test]
fn admission_limit_answers_eagain_to_the_65th() {
    let _wd = common::watchdog(
        Duration::from_secs(60),
        "admission_limit_answers_eagain_to_the_65th",
    );
    let gate = Gate::default();
    let g = gate.clone();
    let sb = Sandbox::builder()
        .handle("getppid", move |_: &HandlerCtx<'_>| {
            let g = g.clone();
            NotifAction::defer(move || {
                g.wait();
                NotifAction::ReturnValue(100)
            })
        })
        .build()
        .expect("build");
    let (child, rx) = spawn_calls(&sb, 65, 1, &[0]);
    // Dropped before `child`: opens the gate even if an assertion fails.
    let _open = OpenOnDrop(gate.clone());
    let sup = child.supervisor().expect("supervisor");

    // The one rejected call comes back while the 64 others are blocked.
    let first = read_calls(&rx, 1)[0];
    assert_eq!(
        first.result, -EAGAIN,
        "first result back should be the rejected call: {first:?}"
    );
    wait_for(&sup, "64 deferrals in flight", |s| {
        s.deferrals_in_flight() == Some(64)
    });
    // Nothing else can complete while the gate is closed.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sup.deferrals_in_flight(), Some(64));
    let st = settled(&sup, 1);
    assert_eq!(st.received, 65, "{st:?}");
    assert_eq!(st.deferred, 64, "{st:?}");
    assert_eq!(st.defer_rejected, 1, "{st:?}");
    assert_eq!(st.answered, 1, "{st:?}");
    assert!(
        rx.try_recv().is_err(),
        "a call completed while its closure was blocked"
    );

    gate.open();
    let rest = read_calls(&rx, 64);
    assert!(
        rest.iter().all(|c| c.result == 100),
        "after the gate opened: {rest:?}"
    );
    let mut threads: Vec<i64> = rest
        .iter()
        .map(|c| c.thread)
        .chain([first.thread])
        .collect();
    threads.sort_unstable();
    assert_eq!(
        threads,
        (0..65).collect::<Vec<_>>(),
        "one result per thread"
    );
    let counts = common::read_counts(&rx, LINE_TIMEOUT);
    let mut counts = counts;
    counts.sort_unstable();
    assert_eq!(counts, vec![(-EAGAIN, 1), (100, 64)]);

    wait_for(&sup, "the pool to drain", |s| {
        s.deferrals_in_flight() == Some(0)
    });
    let st = settled(&sup, 65);
    assert_eq!(st.received, 65, "{st:?}");
    assert_eq!(st.answered, 65, "{st:?}");
    assert_eq!(st.stale, 0, "{st:?}");
    assert_eq!(st.defer_rejected, 1, "{st:?}");
    assert_eq!(st.defer_timeouts, 0, "{st:?}");
    finish(child);
}

#[test]
fn deadline_answers_eio_and_drops_the_late_result() {
    let _wd = common::watchdog(
        Duration::from_secs(60),
        "deadline_answers_eio_and_drops_the_late_result",
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let done_tx = Mutex::new(done_tx);
    let sb = Sandbox::builder()
        .defer_timeout(Duration::from_millis(300))
        .handle("getppid", move |cx: &HandlerCtx<'_>| {
            if cx.arg(0) == 0 {
                return NotifAction::ReturnValue(42);
            }
            let done = done_tx.lock().unwrap().clone();
            NotifAction::defer(move || {
                std::thread::sleep(Duration::from_secs(2));
                let _ = done.send(());
                NotifAction::ReturnValue(1)
            })
        })
        .build()
        .expect("build");
    // First call deferred (arg 1), second answered at once (arg 0).
    let (child, rx) = spawn_calls(&sb, 1, 2, &[1, 0]);
    let sup = child.supervisor().expect("supervisor");
    let calls = read_calls(&rx, 2);
    assert_eq!(
        calls[0].result, -EIO,
        "deferred call past its deadline: {:?}",
        calls[0]
    );
    assert!(
        calls[0].elapsed_us >= 250_000,
        "EIO came before the 300 ms deadline: {:?}",
        calls[0]
    );
    assert!(
        calls[0].elapsed_us < 1_500_000,
        "EIO came long after the 300 ms deadline: {:?}",
        calls[0]
    );
    assert_eq!(
        calls[1].result, 42,
        "the next call gets its own answer: {:?}",
        calls[1]
    );
    assert_eq!(common::read_counts(&rx, LINE_TIMEOUT).len(), 2);

    // While the closure still sleeps: one timeout, two answers.
    let st = settled(&sup, 2);
    assert_eq!(
        (st.received, st.answered, st.defer_timeouts, st.deferred),
        (2, 2, 1, 1),
        "{st:?}"
    );
    assert_eq!(
        sup.deferrals_in_flight(),
        Some(1),
        "both calls answered while the closure still runs"
    );

    // The closure returns; its result is dropped (no second answer, which
    // the kernel would refuse as stale).
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the closure returns");
    wait_for(&sup, "the closure's permit to be released", |s| {
        s.deferrals_in_flight() == Some(0)
    });
    let st = settled(&sup, 2);
    assert_eq!(st.received, 2, "{st:?}");
    assert_eq!(st.answered, 2, "{st:?}");
    assert_eq!(st.stale, 0, "{st:?}");
    assert_eq!(st.defer_timeouts, 1, "{st:?}");
    finish(child);
}

#[test]
fn nested_defer_is_answered_eio() {
    let _wd = common::watchdog(Duration::from_secs(60), "nested_defer_is_answered_eio");
    let sb = Sandbox::builder()
        .handle("getppid", |cx: &HandlerCtx<'_>| {
            if cx.arg(0) == 0 {
                return NotifAction::defer(|| NotifAction::ReturnValue(7));
            }
            NotifAction::defer(|| NotifAction::defer(|| NotifAction::ReturnValue(1)))
        })
        .build()
        .expect("build");
    let (child, rx) = spawn_calls(&sb, 1, 2, &[1, 0]);
    let sup = child.supervisor().expect("supervisor");
    let calls = read_calls(&rx, 2);
    assert_eq!(calls[0].result, -EIO, "nested Defer: {:?}", calls[0]);
    assert_eq!(calls[1].result, 7, "plain Defer afterwards: {:?}", calls[1]);
    common::read_counts(&rx, LINE_TIMEOUT);
    wait_for(&sup, "the pool to drain", |s| {
        s.deferrals_in_flight() == Some(0)
    });
    let st = settled(&sup, 2);
    assert_eq!((st.received, st.answered, st.deferred), (2, 2, 2), "{st:?}");
    assert_eq!(
        (st.defer_timeouts, st.stale, st.panics),
        (0, 0, 0),
        "{st:?}"
    );
    finish(child);
}

#[test]
fn panicking_closure_is_answered_eperm() {
    let _wd = common::watchdog(
        Duration::from_secs(60),
        "panicking_closure_is_answered_eperm",
    );
    let sb = Sandbox::builder()
        .handle("getppid", |cx: &HandlerCtx<'_>| {
            if cx.arg(0) == 0 {
                return NotifAction::defer(|| NotifAction::ReturnValue(7));
            }
            NotifAction::defer(|| panic!("deliberate panic in a deferred closure (test)"))
        })
        .build()
        .expect("build");
    let (child, rx) = spawn_calls(&sb, 1, 3, &[1, 0, 1]);
    let sup = child.supervisor().expect("supervisor");
    let calls = read_calls(&rx, 3);
    let results: Vec<i64> = calls.iter().map(|c| c.result).collect();
    assert_eq!(results, vec![-EPERM, 7, -EPERM], "{calls:?}");
    common::read_counts(&rx, LINE_TIMEOUT);
    wait_for(&sup, "the pool to drain", |s| {
        s.deferrals_in_flight() == Some(0)
    });
    let st = settled(&sup, 3);
    assert_eq!(
        (st.received, st.answered, st.deferred, st.panics),
        (3, 3, 3, 2),
        "{st:?}"
    );
    finish(child);
}

/// SplitMix64: a fixed, reproducible sequence of sleep lengths.
fn splitmix(n: u64) -> u64 {
    let mut z = n
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn deadline_and_closure_race_gives_exactly_one_answer() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    const TOTAL: u64 = (THREADS * PER_THREAD) as u64;
    let _wd = common::watchdog(
        Duration::from_secs(60),
        "deadline_and_closure_race_gives_exactly_one_answer",
    );
    let seq = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let (s, l) = (Arc::clone(&seq), Arc::clone(&late));
    let sb = Sandbox::builder()
        .defer_timeout(Duration::from_millis(20))
        .handle("getppid", move |_: &HandlerCtx<'_>| {
            // 19.0 to 21.0 ms, around the 20 ms deadline.
            let us = 19_000 + splitmix(s.fetch_add(1, Ordering::Relaxed)) % 2_001;
            let l = Arc::clone(&l);
            NotifAction::defer(move || {
                std::thread::sleep(Duration::from_micros(us));
                l.fetch_add(1, Ordering::Relaxed);
                NotifAction::ReturnValue(9)
            })
        })
        .build()
        .expect("build");
    let (child, rx) = spawn_calls(&sb, THREADS, PER_THREAD, &[0]);
    let sup = child.supervisor().expect("supervisor");
    let calls = read_calls(&rx, THREADS * PER_THREAD);
    let ok = calls.iter().filter(|c| c.result == 9).count() as u64;
    let eio = calls.iter().filter(|c| c.result == -EIO).count() as u64;
    assert_eq!(
        ok + eio,
        TOTAL,
        "every result is the value or EIO: {calls:?}"
    );
    let mut counts = common::read_counts(&rx, LINE_TIMEOUT);
    counts.retain(|&(_, n)| n > 0);
    assert!(
        counts.iter().all(|&(v, _)| v == 9 || v == -EIO),
        "{counts:?}"
    );

    // Let every closure finish, so a late result would have been sent by now.
    wait_for(&sup, "every closure to return", |_| {
        late.load(Ordering::Relaxed) == TOTAL
    });
    wait_for(&sup, "the pool to drain", |s| {
        s.deferrals_in_flight() == Some(0)
    });
    let st = settled(&sup, TOTAL);
    eprintln!("race: {ok} answered by the closure, {eio} by the deadline; {st:?}");
    assert_eq!(st.received, TOTAL, "{st:?}");
    assert_eq!(st.deferred, TOTAL, "{st:?}");
    assert_eq!(st.answered + st.stale, st.received, "{st:?}");
    assert_eq!(st.answered, TOTAL, "{st:?}");
    assert_eq!(
        st.defer_timeouts, eio,
        "one EIO per missed deadline: {st:?}"
    );
    finish(child);
}

/// One thread's call is deferred for 1 s; another thread then makes 1000
/// calls through the only worker, which all finish before the deferred one.
const SLOWFAST_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static void *slow(void *p) {
    (void)p;
    long r = syscall(SYS_getppid, 1L);
    if (r == -1) r = -errno;
    printf("A %ld %ld\n", r, now_us());
    fflush(stdout);
    return NULL;
}

int main(void) {
    pthread_t a;
    if (pthread_create(&a, NULL, slow, NULL) != 0) return 3;
    char c;
    /* Wait for the test's go-ahead: the slow call is in the pool. */
    do {
        if (read(0, &c, 1) != 1) return 4;
    } while (c != '\n');
    long start = now_us(), ok = 0;
    for (int i = 0; i < 1000; i++)
        if (syscall(SYS_getppid, 0L) == 42) ok++;
    printf("B %ld %ld %ld\n", ok, start, now_us());
    fflush(stdout);
    pthread_join(a, NULL);
    printf("done\n");
    fflush(stdout);
    while (read(0, &c, 1) > 0) {}
    return 0;
}
"#;

#[test]
fn deferral_does_not_block_the_only_worker() {
    let _wd = common::watchdog(
        Duration::from_secs(60),
        "deferral_does_not_block_the_only_worker",
    );
    let prog = common::build_c("slowfast", SLOWFAST_C, &["-pthread"]);
    let sb = Sandbox::builder()
        .workers(1)
        .handle("getppid", |cx: &HandlerCtx<'_>| {
            if cx.arg(0) == 0 {
                return NotifAction::ReturnValue(42);
            }
            NotifAction::defer(|| {
                std::thread::sleep(Duration::from_secs(1));
                NotifAction::ReturnValue(7)
            })
        })
        .build()
        .expect("build");
    let mut child = sb
        .spawn(Command::new(&prog).stdin(Stdio::Piped).stdout(Stdio::Piped))
        .expect("spawn slowfast");
    let rx = common::line_reader(child.stdout.take().expect("stdout"));
    let sup = child.supervisor().expect("supervisor");
    wait_for(&sup, "the slow call to be deferred", |s| {
        s.deferrals_in_flight() == Some(1)
    });
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write go");

    let b = common::next_line(&rx, LINE_TIMEOUT, "waiting for the fast calls");
    let a = common::next_line(&rx, LINE_TIMEOUT, "waiting for the slow call");
    let num = |s: &str, i: usize| -> i64 {
        s.split_whitespace()
            .nth(i)
            .and_then(|x| x.parse().ok())
            .unwrap()
    };
    assert!(
        b.starts_with("B "),
        "the fast calls must finish first, got {b:?} then {a:?}"
    );
    assert!(a.starts_with("A "), "then the slow one, got {a:?}");
    assert_eq!(num(&b, 1), 1000, "all fast calls answered 42: {b}");
    assert_eq!(num(&a, 1), 7, "the slow call gets the closure's value: {a}");
    let (b_start, b_end, a_end) = (num(&b, 2), num(&b, 3), num(&a, 2));
    eprintln!(
        "1000 fast calls took {} ms; the deferred call ended {} ms after them",
        (b_end - b_start) / 1000,
        (a_end - b_end) / 1000
    );
    assert!(
        b_end < a_end,
        "fast calls ended at {b_end}, deferred call at {a_end}"
    );
    assert_eq!(
        common::next_line(&rx, LINE_TIMEOUT, "waiting for done"),
        "done"
    );

    let st = settled(&sup, 1001);
    assert_eq!(
        (st.received, st.answered, st.deferred, st.stale),
        (1001, 1001, 1, 0),
        "{st:?}"
    );
    finish(child);
}
