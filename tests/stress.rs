//! The supervisor under load: many threads of trapped calls, a SIGKILL in
//! the middle, repeated panics, and no fd or thread leaks over many runs.
//!
//! Every test takes `SERIAL`, so the leak count never sees another test's
//! threads or fds come and go, and the heavy workloads do not compete for
//! the two CPUs.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio, SupervisorHandle};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const THREADS: usize = 16;
const PER_THREAD: usize = 10_000;
const TOTAL: u64 = (THREADS * PER_THREAD) as u64;

fn calls_program() -> PathBuf {
    common::build_c("calls", common::CALLS_C, &["-pthread"])
}

/// `getppid(arg)` answers `1000 + arg` without running the call.
fn returning_sandbox() -> Sandbox {
    Sandbox::builder()
        .handle("getppid", |cx: &HandlerCtx<'_>| {
            NotifAction::ReturnValue(1000 + cx.arg(0) as i64)
        })
        .build()
        .expect("build")
}

/// `calls THREADS NCALLS q ARGS...` (quiet: only the summary is printed).
fn calls_cmd(threads: usize, ncalls: usize, args: &[i64]) -> Command {
    let mut cmd = Command::new(calls_program());
    cmd.arg(threads.to_string())
        .arg(ncalls.to_string())
        .arg("q")
        .args(args.iter().map(|a| a.to_string()));
    cmd
}

/// Parses the `count <result> <n>` lines of the `calls` summary, sorted.
fn parse_counts(out: &str) -> Vec<(i64, i64)> {
    assert!(
        out.lines().any(|l| l == "done"),
        "incomplete output: {out:?}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("other")),
        "too many distinct results: {out:?}"
    );
    let mut counts: Vec<(i64, i64)> = out
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("count ")?.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    counts.sort_unstable();
    counts
}

/// Polls `cond` on the supervisor's stats every millisecond, up to `limit`.
fn wait_stats(
    sup: &SupervisorHandle,
    limit: Duration,
    what: &str,
    cond: impl Fn(&unotify::Stats) -> bool,
) {
    let start = Instant::now();
    loop {
        let st = sup.stats().expect("supervisor alive");
        if cond(&st) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigkill_in_the_middle_of_160k_calls() {
    let _g = serial();
    let _wd = common::watchdog(
        Duration::from_secs(30),
        "sigkill_in_the_middle_of_160k_calls",
    );
    let sb = returning_sandbox();
    let start = Instant::now();
    let mut child = sb
        .spawn(
            calls_cmd(THREADS, PER_THREAD, &[0])
                .stdin(Stdio::Null)
                .stdout(Stdio::Null),
        )
        .expect("spawn calls");
    let sup = child.supervisor().expect("supervisor");
    wait_stats(&sup, Duration::from_secs(20), "50k calls", |st| {
        st.received > 50_000
    });
    let before_kill = sup.stats().expect("alive");
    assert!(
        before_kill.received < TOTAL,
        "the workload ended before the kill: {before_kill:?}"
    );
    child.kill().expect("kill");
    let killed = Instant::now();
    let st = child.wait().expect("wait");
    let wait_took = killed.elapsed();
    eprintln!(
        "killed after {:?} at {before_kill:?}; wait took {wait_took:?}",
        killed - start
    );
    assert_eq!(st.signal(), Some(libc::SIGKILL), "exit status {st:?}");
    assert!(
        wait_took < Duration::from_secs(5),
        "wait took {wait_took:?}"
    );
    // `wait` stopped the supervisor and joined its threads: nothing holds
    // its state any more.
    assert!(sup.stats().is_none(), "supervisor still alive after wait");
    assert!(child.supervisor().is_none());
}

#[test]
fn all_160k_calls_answered() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "all_160k_calls_answered");
    let sb = returning_sandbox();
    let start = Instant::now();
    let mut child = sb
        .spawn(
            calls_cmd(THREADS, PER_THREAD, &[0, 1])
                .stdin(Stdio::Piped)
                .stdout(Stdio::Piped),
        )
        .expect("spawn calls");
    let sup = child.supervisor().expect("supervisor");
    // The program waits on its stdin after its calls: the supervisor is
    // still up to be asked.
    wait_stats(&sup, Duration::from_secs(45), "all calls answered", |st| {
        st.answered >= TOTAL
    });
    let took = start.elapsed();
    let st = sup.stats().expect("alive");
    eprintln!(
        "{TOTAL} calls in {took:?} ({:.1} us/call): {st:?}",
        took.as_secs_f64() * 1e6 / TOTAL as f64
    );
    assert_eq!(st.received, TOTAL, "{st:?}");
    assert_eq!(st.answered, TOTAL, "{st:?}");
    assert_eq!((st.stale, st.panics, st.deferred), (0, 0, 0), "{st:?}");
    drop(child.stdin.take());
    let out = common::read_all(&mut child.stdout);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let half = (TOTAL / 2) as i64;
    assert_eq!(
        parse_counts(&out),
        vec![(1000, half), (1001, half)],
        "{out}"
    );
}

fn proc_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).expect("read /proc/self").count()
}

/// Fds and threads of this process, once stable over a few reads.
fn settled_counts() -> (usize, usize) {
    let read = || {
        (
            proc_entries("/proc/self/fd"),
            proc_entries("/proc/self/task"),
        )
    };
    let mut last = read();
    let mut same = 0;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(5));
        let now = read();
        if now == last {
            same += 1;
            // 100 ms unchanged: a deferred closure left running past its
            // deadline (50 ms here) has ended and its thread is gone.
            if same == 20 {
                break;
            }
        } else {
            same = 0;
            last = now;
        }
    }
    last
}

#[test]
fn no_fd_or_thread_leak_over_200_runs() {
    let _g = serial();
    let _wd = common::watchdog(
        Duration::from_secs(60),
        "no_fd_or_thread_leak_over_200_runs",
    );
    let prog = calls_program();
    let sb = Sandbox::builder()
        .handle("getppid", |cx: &HandlerCtx<'_>| match cx.arg(0) {
            0 => NotifAction::ReturnValue(5),
            1 => NotifAction::defer(|| NotifAction::ReturnValue(6)),
            _ => NotifAction::defer(|| {
                std::thread::sleep(Duration::from_millis(50));
                NotifAction::ReturnValue(7)
            }),
        })
        .defer_timeout(Duration::from_millis(10))
        .build()
        .expect("build");
    let run_calls = |args: &[i64]| {
        let mut cmd = Command::new(&prog);
        cmd.args(["2", "5", "q"])
            .args(args.iter().map(|a| a.to_string()))
            .stdin(Stdio::Null)
            .stdout(Stdio::Null);
        let st = sb.run(&mut cmd).expect("run calls");
        assert_eq!(st.code(), Some(0), "calls {args:?}: {st:?}");
    };
    let run_true = || {
        let st = sb
            .run(&mut Command::new("/bin/true"))
            .expect("run /bin/true");
        assert!(st.success(), "/bin/true: {st:?}");
    };
    let kill_blocked = || {
        // Blocked on its stdin after its calls, one deferral still running
        // past its deadline: killed, then waited.
        let mut child = sb
            .spawn(
                Command::new(&prog)
                    .args(["1", "1", "q", "2"])
                    .stdin(Stdio::Piped)
                    .stdout(Stdio::Null),
            )
            .expect("spawn calls");
        let sup = child.supervisor().expect("supervisor");
        wait_stats(
            &sup,
            Duration::from_secs(10),
            "the deferral to start",
            |st| st.deferred >= 1,
        );
        child.kill().expect("kill");
        let st = child.wait().expect("wait");
        assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
    };
    // Warm up lazily created process-wide state before counting.
    run_true();
    run_calls(&[0, 1, 2]);
    kill_blocked();
    // A sandbox that ends with its cgroup empty, unkilled, leaves that
    // cgroup (its fds) for the process's next sandbox; one that was killed
    // does not, and whether a kill was needed depends on timing. Both counts
    // are taken after a `/bin/true`, which leaves exactly one kept cgroup.
    run_true();

    let (fds, tasks) = settled_counts();
    let start = Instant::now();
    for _ in 0..200 {
        run_true();
    }
    let true_took = start.elapsed();
    for _ in 0..5 {
        run_calls(&[0]);
    }
    for _ in 0..5 {
        run_calls(&[1]);
    }
    for _ in 0..3 {
        run_calls(&[0, 1, 2]);
    }
    for _ in 0..3 {
        kill_blocked();
    }
    run_true();
    let took = start.elapsed();
    let (fds_after, tasks_after) = settled_counts();
    eprintln!("200 runs of /bin/true: {true_took:?}; all 216 runs: {took:?}");
    assert_eq!(
        fds_after,
        fds,
        "open fds before and after ({:?})",
        std::fs::read_dir("/proc/self/fd").map(|d| d.count())
    );
    assert_eq!(tasks_after, tasks, "threads before and after");
}

/// Hides the panic messages of the deliberate handler panics below; other
/// panics are reported as usual.
fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
            if msg.is_some_and(|m| m.contains("deliberate stress panic")) {
                return;
            }
            prev(info)
        }));
    });
}

#[test]
fn panicking_handler_under_load_keeps_the_supervisor_up() {
    const T: usize = 8;
    const N: usize = 2_000;
    let _g = serial();
    let _wd = common::watchdog(
        Duration::from_secs(60),
        "panicking_handler_under_load_keeps_the_supervisor_up",
    );
    quiet_deliberate_panics();
    let sb = Sandbox::builder()
        .handle("getppid", |cx: &HandlerCtx<'_>| {
            if cx.arg(0) == 1 {
                panic!("deliberate stress panic (test)");
            }
            NotifAction::ReturnValue(5)
        })
        .build()
        .expect("build");
    for round in 0..2 {
        let mut child = sb
            .spawn(
                calls_cmd(T, N, &[1, 0])
                    .stdin(Stdio::Piped)
                    .stdout(Stdio::Piped),
            )
            .expect("spawn calls");
        let sup = child.supervisor().expect("supervisor");
        let total = (T * N) as u64;
        wait_stats(&sup, Duration::from_secs(45), "all calls answered", |st| {
            st.answered >= total
        });
        let st = sup.stats().expect("alive");
        assert_eq!(st.received, total, "round {round}: {st:?}");
        assert_eq!(st.answered, total, "round {round}: {st:?}");
        assert_eq!(st.panics, total / 2, "round {round}: {st:?}");
        drop(child.stdin.take());
        let out = common::read_all(&mut child.stdout);
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "round {round}: {status:?}");
        let half = (total / 2) as i64;
        assert_eq!(
            parse_counts(&out),
            vec![(-(libc::EPERM as i64), half), (5, half)],
            "round {round}: {out}"
        );
    }
}

/// A handler that blocks its worker for a long time does not hold up the
/// calls that were placed behind it: after a short wait a worker of
/// another CPU's lane takes them. 16 threads make 20 calls each; thread
/// 0's sixth call blocks its worker for 2 s. Every other call must be
/// answered in well under that.
#[test]
fn calls_behind_a_slow_handler_are_taken_by_another_worker() {
    let _g = serial();
    let _wd = common::watchdog(Duration::from_secs(60), "calls_behind_a_slow_handler");
    const SLOW: Duration = Duration::from_secs(2);
    // One worker per CPU: one lane per CPU, each with a single worker, so
    // only another lane can take what waits behind the slow one (with one
    // CPU, a second worker in the one lane takes it).
    let cpus = unotify::sys::process::allowed_cpus().map_or(1, |c| c.len());
    let sb = Sandbox::builder()
        .workers(cpus.max(2))
        .handle("getppid", |cx: &HandlerCtx<'_>| {
            // getppid(arg, thread, index)
            if cx.arg(1) == 0 && cx.arg(2) == 5 {
                std::thread::sleep(SLOW);
            }
            NotifAction::ReturnValue(1000 + cx.arg(0) as i64)
        })
        .build()
        .expect("build");
    let mut child = sb
        .spawn(
            Command::new(calls_program())
                .args(["16", "20", "v", "0"])
                .stdin(Stdio::Null)
                .stdout(Stdio::Piped),
        )
        .expect("spawn calls");
    let out = common::read_all(&mut child.stdout);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}; output: {out}");
    assert_eq!(parse_counts(&out), vec![(1000, 320)], "{out}");
    let lines: Vec<_> = out.lines().filter_map(common::parse_call_line).collect();
    assert_eq!(lines.len(), 320, "{out}");
    let (slow, rest): (Vec<&common::CallLine>, Vec<_>) =
        lines.iter().partition(|l| l.thread == 0 && l.index == 5);
    assert!(
        slow[0].elapsed_us >= SLOW.as_micros() as i64 * 9 / 10,
        "the slow call was not slow: {:?}",
        slow[0]
    );
    let worst = rest.iter().max_by_key(|l| l.elapsed_us).expect("calls");
    assert!(
        worst.elapsed_us < SLOW.as_micros() as i64 / 2,
        "a call waited {} µs behind the slow handler: {worst:?}",
        worst.elapsed_us
    );
}
