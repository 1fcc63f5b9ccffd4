//! Start-up overhead: how much longer a short program takes under the
//! supervisor than without it.
//!
//! Configurations, interleaved round by round so that drift in the
//! machine's load hits each alike, reported as medians:
//!
//! * **bare**: `std::process::Command::new("/bin/true").status()`;
//! * **floor**: `/bin/true` under `benches/floorsup.c`, the least a
//!   supervisor does (a C program: fork, filter with one trapped call,
//!   hand the listener over, exec), which no supervisor can undercut;
//! * **cli**: `unotify run -- /bin/true` (the command, as a user runs it);
//! * **cli-static**: the same with a statically linked `unotify`, when one
//!   is given with `--static PATH` (see README, "Start-up");
//! * **cli-version**: `unotify --version`: the cost of starting the
//!   `unotify` binary itself, without any sandbox;
//! * **library**: [`Sandbox::spawn`] + [`Child::wait`](unotify::Child::wait)
//!   of `/bin/true` in this process, with a sandbox built once.
//!
//! Goals: `unotify run -- /bin/true` at most 1 ms over bare `/bin/true`;
//! the library's spawn+wait at most 0.2 ms over bare. Wall time and CPU
//! time (this process and what it reaped) are both reported, each over
//! bare and over the floor, and as ratios within the same run.
//!
//! `cargo bench --bench startup [-- --runs N] [--static PATH]` (default
//! 300 rounds).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command as StdCommand, Stdio as StdStdio};
use std::time::Instant;

use unotify::{Command, Sandbox};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const TRUE: &str = "/bin/true";

/// The options: rounds, and a statically linked `unotify` to compare.
struct Options {
    runs: usize,
    static_bin: Option<String>,
}

fn options() -> BenchResult<Options> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        runs: 300,
        static_bin: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = args.next().ok_or("--runs needs a number")?.parse()?,
            "--static" => o.static_bin = Some(args.next().ok_or("--static needs a path")?),
            // cargo bench passes --bench; anything else is a mistake.
            "--bench" => {}
            other => {
                return Err(format!("unknown option {other}; use --runs N, --static PATH").into())
            }
        }
    }
    o.runs = o.runs.max(1);
    Ok(o)
}

/// Microseconds `f` took: wall clock, and CPU (this process and what it
/// reaped: the supervisor's threads and processes count, unlike in wall
/// time where two CPUs overlap them).
fn timed(f: impl FnOnce() -> BenchResult<()>) -> BenchResult<(f64, f64)> {
    let c = unotify::sys::process::cpu_time_with_children_us();
    let t = Instant::now();
    f()?;
    Ok((
        t.elapsed().as_secs_f64() * 1e6,
        unotify::sys::process::cpu_time_with_children_us() - c,
    ))
}

fn status_ok(cmd: &mut StdCommand) -> BenchResult<()> {
    let st = cmd
        .stdout(StdStdio::null())
        .stderr(StdStdio::null())
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {st}").into())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A trapped call `/bin/true` never makes, for the floor's filter.
const UNUSED_CALL: &str = "438"; // pidfd_getfd

fn main() -> BenchResult<()> {
    let opts = options()?;
    let runs = opts.runs;
    let unotify = env!("CARGO_BIN_EXE_unotify");
    let floorsup = common::build_c("floorsup", include_str!("floorsup.c"), &[]);
    let sandbox = Sandbox::builder().build()?;
    type Run<'a> = Box<dyn Fn() -> BenchResult<()> + 'a>;
    let mut configs: Vec<(&str, Run)> = vec![
        ("bare", Box::new(|| status_ok(&mut StdCommand::new(TRUE)))),
        (
            "floor",
            Box::new(|| {
                status_ok(StdCommand::new(&floorsup).args([UNUSED_CALL, "sync", "--", TRUE]))
            }),
        ),
        (
            "cli",
            Box::new(|| status_ok(StdCommand::new(unotify).args(["run", "--", TRUE]))),
        ),
        (
            "cli-version",
            Box::new(|| status_ok(StdCommand::new(unotify).arg("--version"))),
        ),
        (
            "library",
            Box::new(|| {
                let st = sandbox.run(&mut Command::new(TRUE))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("sandboxed {TRUE} failed: {st}").into())
                }
            }),
        ),
    ];
    if let Some(bin) = &opts.static_bin {
        configs.push((
            "cli-static",
            Box::new(move || status_ok(StdCommand::new(bin).args(["run", "--", TRUE]))),
        ));
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); configs.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); configs.len()];
    // A few unmeasured rounds first: page cache, lazy binding.
    for round in 0..runs + 5 {
        for (i, (_, f)) in configs.iter().enumerate() {
            let (w, u) = timed(f)?;
            if round >= 5 {
                samples[i].push(w);
                cpu[i].push(u);
            }
        }
    }
    let m: Vec<f64> = samples.into_iter().map(median).collect();
    let mc: Vec<f64> = cpu.into_iter().map(median).collect();
    let at = |name: &str| {
        configs
            .iter()
            .position(|(n, _)| *n == name)
            .expect("config")
    };
    let (bare, floor) = (at("bare"), at("floor"));
    println!("startup: /bin/true, {runs} interleaved rounds, medians");
    println!(
        "  {:<12} {:>8} {:>8} {:>10} {:>10} {:>7} {:>7}",
        "", "wall µs", "cpu µs", "wall-bare", "wall-floor", "x bare", "x floor"
    );
    for (i, (name, _)) in configs.iter().enumerate() {
        println!(
            "  {name:<12} {:>8.0} {:>8.0} {:>+10.0} {:>+10.0} {:>7.2} {:>7.2}",
            m[i],
            mc[i],
            m[i] - m[bare],
            m[i] - m[floor],
            m[i] / m[bare],
            m[i] / m[floor]
        );
    }
    println!("  CPU over bare / over the floor:");
    for (i, (name, _)) in configs.iter().enumerate() {
        println!(
            "  {name:<12} {:>+8.0} µs {:>+8.0} µs",
            mc[i] - mc[bare],
            mc[i] - mc[floor]
        );
    }
    let verdict = |over: f64, goal: f64| if over < goal { "ok" } else { "ABOVE GOAL" };
    let cli = m[at("cli")] - m[bare];
    let lib = m[at("library")] - m[bare];
    println!();
    println!(
        "unotify run -- /bin/true over bare: {cli:.0} µs (goal < 1000 µs) {}",
        verdict(cli, 1000.0)
    );
    if opts.static_bin.is_some() {
        let st = m[at("cli-static")] - m[bare];
        println!(
            "  statically linked: {st:.0} µs (goal < 1000 µs) {}",
            verdict(st, 1000.0)
        );
    }
    println!(
        "  of which starting the unotify binary (--version over bare): {:.0} µs",
        m[at("cli-version")] - m[bare]
    );
    println!(
        "library spawn+wait over bare: {lib:.0} µs (goal < 200 µs) {}",
        verdict(lib, 200.0)
    );
    Ok(())
}
