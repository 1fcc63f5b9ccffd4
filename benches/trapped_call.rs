//! Trapped-call round trip and throughput, against the floor.
//!
//! The client is `benches/openloop.c` (a loop of `openat("/dev/null")` +
//! `close`, from one or more threads), compiled with `cc -O2` into the
//! target directory and run with `N THREADS`; it prints `ns_per_iter=`.
//!
//! Three configurations, each run `--runs` times (default 5), interleaved,
//! and reported as the median:
//!
//! * **bare**: no filter at all;
//! * **floor**: a minimal supervisor built here: fork the client, install a
//!   notify filter for `openat` with `NEW_LISTENER`, take the listener, set
//!   `SYNC_WAKE_UP`, then one thread loops `poll → RECV → SEND CONTINUE`.
//!   No worker pool, nothing else;
//! * **unotify**: a [`Sandbox`] with a `Continue` handler on `openat`;
//! * **onbehalf**: a [`Sandbox`] that denies a path, so that every `openat`
//!   is made on the program's behalf and answered with the opened fd
//!   (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SEND`). The
//!   kernel wakes the caller of such an answer without the same-CPU hint
//!   of a plain answer, so on a quiet machine the caller may move to the
//!   other CPU at every call: watch its `migr/call` against `unotify`'s.
//!
//! Besides time it counts, per trapped call, context switches and CPU
//! migrations of the supervisor *and* the client (software perf counters
//! inherited by every thread and process started during the run), and the
//! supervisor process's own context switches (`getrusage(RUSAGE_SELF)`).
//! Counting slows every context switch down, and unotify makes more of
//! them than the floor, so the counters come from one extra run of each
//! configuration, after the timed runs, which run without them.
//!
//! Goals: one client thread, unotify ≤ 1.5x the floor's µs/iter; four client
//! threads, unotify's throughput ≥ 1.0x the floor's.
//!
//! `cargo bench --bench trapped_call [-- --runs N --iters N --threads 1,4 --only bare,floor,unotify,onbehalf]`

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use unotify::arch::Arch;
use unotify::filter::FilterBuilder;
use unotify::sys::perf::{Software, SoftwareCounter};
use unotify::sys::spawn::{fork_child, ExecPlan};
use unotify::sys::{pidfd, process, seccomp};
use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Bare,
    Floor,
    Unotify,
    OnBehalf,
}

impl Config {
    const ALL: [Config; 4] = [
        Config::Bare,
        Config::Floor,
        Config::Unotify,
        Config::OnBehalf,
    ];

    fn name(self) -> &'static str {
        match self {
            Config::Bare => "bare",
            Config::Floor => "floor",
            Config::Unotify => "unotify",
            Config::OnBehalf => "onbehalf",
        }
    }
}

/// One run of the client.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// What the client measured: wall time / (iterations × threads).
    ns_per_iter: f64,
    /// Context switches of every thread and process of the run (perf).
    switches: f64,
    /// CPU migrations of every thread and process of the run (perf).
    migrations: f64,
    /// Context switches of this (the supervisor's) process: `RUSAGE_SELF`.
    sup_switches: f64,
    /// CPU time of every thread and process of the run, ns (perf task-clock).
    task_clock_ns: f64,
}

// ---------------------------------------------------------------- counters

/// A software counter on this thread and everything it starts later; NaN
/// where perf counters are not available.
struct Counter(Option<SoftwareCounter>);

impl Counter {
    fn open(what: Software) -> Counter {
        Counter(SoftwareCounter::open(what).ok())
    }

    fn read(&self) -> f64 {
        match &self.0 {
            Some(c) => c.read().map_or(f64::NAN, |v| v as f64),
            None => f64::NAN,
        }
    }
}

fn self_switches() -> f64 {
    process::context_switches() as f64
}

/// Counts around one run; `calls` is the number of trapped calls.
fn measured(calls: f64, run: impl FnOnce() -> BenchResult<f64>) -> BenchResult<Sample> {
    let cs = Counter::open(Software::ContextSwitches);
    let mig = Counter::open(Software::CpuMigrations);
    let clock = Counter::open(Software::TaskClock);
    let (cs0, mig0, clock0, self0) = (cs.read(), mig.read(), clock.read(), self_switches());
    let ns_per_iter = run()?;
    Ok(Sample {
        ns_per_iter,
        switches: (cs.read() - cs0) / calls,
        migrations: (mig.read() - mig0) / calls,
        sup_switches: (self_switches() - self0) / calls,
        task_clock_ns: (clock.read() - clock0) / calls,
    })
}

// ------------------------------------------------------------------ client

fn build_openloop() -> BenchResult<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/openloop.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openloop");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = std::process::Command::new(&cc)
        .args(["-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    if !status.success() {
        return Err(format!("{cc} failed to build {}: {status}", src.display()).into());
    }
    Ok(out)
}

fn parse_ns(out: &str) -> BenchResult<f64> {
    let v = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ns_per_iter="))
        .ok_or_else(|| format!("no ns_per_iter in client output {out:?}"))?;
    Ok(v.parse()?)
}

// ------------------------------------------------------------------- runs

fn run_bare(prog: &Path, iters: u64, threads: u32) -> BenchResult<f64> {
    let out = std::process::Command::new(prog)
        .arg(iters.to_string())
        .arg(threads.to_string())
        .output()?;
    if !out.status.success() {
        return Err(format!("bare client failed: {}", out.status).into());
    }
    parse_ns(&String::from_utf8_lossy(&out.stdout))
}

fn run_unotify(prog: &Path, iters: u64, threads: u32) -> BenchResult<f64> {
    let sandbox = Sandbox::builder()
        .handle("openat", |_cx: &HandlerCtx<'_>| NotifAction::Continue)
        .build()?;
    run_in(&sandbox, prog, iters, threads)
}

/// Every `openat` of the client made on its behalf: a path is denied
/// (one the client never opens).
fn run_onbehalf(prog: &Path, iters: u64, threads: u32) -> BenchResult<f64> {
    let denied = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trapped_call.denied");
    std::fs::write(&denied, b"")?;
    let sandbox = Sandbox::builder().deny_path(&denied).build()?;
    run_in(&sandbox, prog, iters, threads)
}

/// Runs the client in `sandbox`; its `ns_per_iter`.
fn run_in(sandbox: &Sandbox, prog: &Path, iters: u64, threads: u32) -> BenchResult<f64> {
    let mut cmd = Command::new(prog);
    cmd.arg(iters.to_string())
        .arg(threads.to_string())
        .stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd)?;
    let mut out = String::new();
    child
        .stdout
        .take()
        .ok_or("no stdout pipe")?
        .read_to_string(&mut out)?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("sandboxed client failed: {status}").into());
    }
    parse_ns(&out)
}

/// The floor: one thread, `poll → RECV → SEND CONTINUE`, nothing else.
fn run_floor(prog: &Path, iters: u64, threads: u32) -> BenchResult<f64> {
    let arch = Arch::native();
    let openat = unotify::syscalls::number(arch, "openat").ok_or("no openat on this arch")?;
    let filter = FilterBuilder::new(arch).notify(openat)?.build()?;
    let (mut out_r, out_w) = std::io::pipe()?;
    let out_w = OwnedFd::from(out_w);
    let cstr = |s: &[u8]| CString::new(s).map_err(|e| e.to_string());
    let path = cstr(prog.as_os_str().as_bytes())?;
    let plan = ExecPlan {
        landlock_ruleset: None,
        no_core: false,
        no_file_writes: false,
        new_ipc: false,
        overlay: None,
        candidates: vec![path.clone()],
        argv: vec![
            path,
            cstr(iters.to_string().as_bytes())?,
            cstr(threads.to_string().as_bytes())?,
        ],
        envp: std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstr(&kv)
            })
            .collect::<Result<_, _>>()?,
        cwd: None,
        nofile: None,
        stdio: [None, Some(out_w.as_raw_fd()), None],
        filter: filter.instructions().to_vec(),
        foreground: false,
        blocked_signals: 0,
        ignored_signals: 0,
        keep_caps: None,
        cgroup: None,
    };
    let mut child = fork_child(plan)?;
    drop(out_w);
    let target_fd = child
        .listener_fd(Duration::from_secs(5))
        .map_err(|e| format!("floor child did not install its filter: {e:?}"))?;
    let listener = pidfd::pidfd_getfd(pidfd::pidfd_open(child.pid(), 0)?.as_fd(), target_fd)?;
    seccomp::set_flags(listener.as_fd(), seccomp::USER_NOTIF_FD_SYNC_WAKE_UP)?;
    child
        .release()
        .map_err(|e| format!("floor child did not exec: {e:?}"))?;
    let cont = |id| seccomp::SeccompNotifResp {
        id,
        val: 0,
        error: 0,
        flags: seccomp::USER_NOTIF_FLAG_CONTINUE,
    };
    loop {
        let mut pfd = [libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if process::poll(&mut pfd, None).is_err() {
            continue; // EINTR
        }
        if pfd[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            break;
        }
        match seccomp::recv(listener.as_fd()) {
            Ok(n) => {
                // ENOENT: the task went away meanwhile; nothing to answer.
                let _ = seccomp::send(listener.as_fd(), &cont(n.id));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::ENOENT)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = String::new();
    out_r.read_to_string(&mut out)?;
    match process::waitpid(child.pid(), 0)? {
        Some((_, process::WaitStatus::Exited(0))) => {}
        other => return Err(format!("floor client failed: {other:?}").into()),
    }
    parse_ns(&out)
}

// ------------------------------------------------------------------ report

struct Options {
    runs: usize,
    iters: u64,
    only: Vec<Config>,
    threads: Vec<u32>,
}

fn options() -> BenchResult<Options> {
    let mut o = Options {
        runs: 5,
        iters: 20_000,
        only: Config::ALL.to_vec(),
        threads: vec![1, 4],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = args.next().ok_or("--runs N")?.parse()?,
            "--iters" => o.iters = args.next().ok_or("--iters N")?.parse()?,
            "--only" => {
                let list = args.next().ok_or("--only bare,floor,unotify,onbehalf")?;
                o.only = Config::ALL
                    .into_iter()
                    .filter(|c| list.split(',').any(|s| s == c.name()))
                    .collect();
            }
            "--threads" => {
                let list = args.next().ok_or("--threads 1,4")?;
                o.threads = list.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            _ => {} // `--bench` and filters from cargo
        }
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() -> BenchResult<()> {
    let o = options()?;
    let prog = build_openloop()?;
    let cpus = process::allowed_cpus().map(|c| c.len()).unwrap_or(0);
    println!(
        "trapped_call: openat+close loop, {} runs per configuration (median), {} CPUs",
        o.runs, cpus
    );
    let mut results: Vec<(u32, Config, Sample)> = Vec::new();
    let mut rounds: Vec<(u32, Config, Vec<Sample>)> = Vec::new();
    for &threads in &o.threads {
        // Same total number of trapped calls for both thread counts.
        let iters = (o.iters / u64::from(threads)).max(1);
        let calls = (iters * u64::from(threads)) as f64;
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); o.only.len()];
        // Interleaved, so that drift in the machine's load hits every configuration alike.
        let run = |cfg: Config| match cfg {
            Config::Bare => run_bare(&prog, iters, threads),
            Config::Floor => run_floor(&prog, iters, threads),
            Config::Unotify => run_unotify(&prog, iters, threads),
            Config::OnBehalf => run_onbehalf(&prog, iters, threads),
        };
        for _ in 0..o.runs {
            for (i, &cfg) in o.only.iter().enumerate() {
                samples[i].push(Sample {
                    ns_per_iter: run(cfg)?,
                    ..Sample::default()
                });
            }
        }
        let mut counted = Vec::with_capacity(o.only.len());
        for &cfg in &o.only {
            counted.push(measured(calls, || run(cfg))?);
        }
        for (i, &cfg) in o.only.iter().enumerate() {
            let all: Vec<String> = samples[i]
                .iter()
                .map(|s| format!("{:.1}", s.ns_per_iter / 1e3))
                .collect();
            println!(
                "  threads={threads} {:<8} µs/iter runs: {}",
                cfg.name(),
                all.join(" ")
            );
            // Time from the timed runs, counters from the counted one.
            results.push((
                threads,
                cfg,
                Sample {
                    ns_per_iter: median(samples[i].iter().map(|s| s.ns_per_iter).collect()),
                    ..counted[i]
                },
            ));
        }
        for (cfg, s) in o.only.iter().zip(samples) {
            rounds.push((threads, *cfg, s));
        }
    }

    println!();
    println!(
        "{:<8} {:<8} {:>9} {:>10} {:>11} {:>11} {:>11} {:>11}",
        "threads",
        "config",
        "µs/iter",
        "kcalls/s",
        "cs/call",
        "sup cs/call",
        "migr/call",
        "cpu µs/call"
    );
    for (threads, cfg, s) in &results {
        println!(
            "{:<8} {:<8} {:>9.2} {:>10.1} {:>11.2} {:>11.2} {:>11.3} {:>11.2}",
            threads,
            cfg.name(),
            s.ns_per_iter / 1e3,
            1e6 / s.ns_per_iter,
            s.switches,
            s.sup_switches,
            s.migrations,
            s.task_clock_ns / 1e3
        );
    }
    // Floor and unotify of one round ran back to back: their ratio is less
    // sensitive to the machine's load drifting between rounds.
    let paired = |t: u32, f: fn(f64, f64) -> f64| -> Option<f64> {
        let (_, _, fl) = rounds
            .iter()
            .find(|(tt, c, _)| *tt == t && *c == Config::Floor)?;
        let (_, _, un) = rounds
            .iter()
            .find(|(tt, c, _)| *tt == t && *c == Config::Unotify)?;
        Some(median(
            fl.iter()
                .zip(un)
                .map(|(a, b)| f(a.ns_per_iter, b.ns_per_iter))
                .collect(),
        ))
    };
    let get = |t: u32, c: Config| {
        results
            .iter()
            .find(|(tt, cc, _)| *tt == t && *cc == c)
            .map(|(_, _, s)| s.ns_per_iter)
    };
    println!();
    if let (Some(f), Some(u)) = (get(1, Config::Floor), get(1, Config::Unotify)) {
        let r = u / f;
        let verdict = if r <= 1.5 { "ok" } else { "ABOVE GOAL" };
        println!("1 thread:  unotify/floor time       = {r:.2}x   (goal <= 1.50x) {verdict}");
        if let Some(p) = paired(1, |f, u| u / f) {
            println!("           median of per-round ratios = {p:.2}x");
        }
    }
    if let (Some(f), Some(u)) = (get(4, Config::Floor), get(4, Config::Unotify)) {
        let r = f / u;
        let verdict = if r >= 1.0 { "ok" } else { "BELOW GOAL" };
        println!("4 threads: unotify/floor throughput = {r:.2}x   (goal >= 1.00x) {verdict}");
        if let Some(p) = paired(4, |f, u| f / u) {
            println!("           median of per-round ratios = {p:.2}x");
        }
    }
    if let (Some(b), Some(f), Some(u)) = (
        get(1, Config::Bare),
        get(1, Config::Floor),
        get(1, Config::Unotify),
    ) {
        println!(
            "1 thread:  trap overhead over bare: floor {:.2} µs, unotify {:.2} µs",
            (f - b) / 1e3,
            (u - b) / 1e3
        );
    }
    if let (Some(b), Some(o)) = (get(1, Config::Bare), get(1, Config::OnBehalf)) {
        let migr = |c: Config| {
            results
                .iter()
                .find(|(t, cc, _)| *t == 1 && *cc == c)
                .map_or(f64::NAN, |(_, _, s)| s.migrations)
        };
        println!(
            "1 thread:  on-behalf open over bare: {:.2} µs ({:.2}x); migrations per call: onbehalf {:.3}, unotify {:.3}",
            (o - b) / 1e3,
            o / b,
            migr(Config::OnBehalf),
            migr(Config::Unotify)
        );
    }
    Ok(())
}
