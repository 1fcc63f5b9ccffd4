//! Start-up overhead: how much longer a short program takes under the
//! supervisor than without it.
//!
//! Configurations, interleaved round by round so that drift in the
//! machine's load hits each alike, reported as medians:
//!
//! * **bare**: `std::process::Command::new("/bin/true").status()`;
//! * **cli**: `unotify run -- /bin/true` (the command, as a user runs it);
//! * **cli-version**: `unotify --version`: the cost of starting the
//!   `unotify` binary itself, without any sandbox;
//! * **library**: [`Sandbox::spawn`] + [`Child::wait`](unotify::Child::wait)
//!   of `/bin/true` in this process, with a sandbox built once.
//!
//! Goal: `unotify run -- /bin/true` at most 1 ms over bare `/bin/true`.
//!
//! `cargo bench --bench startup [-- --runs N]` (default 300 rounds).

use std::process::{Command as StdCommand, Stdio as StdStdio};
use std::time::Instant;

use unotify::{Command, Sandbox};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const TRUE: &str = "/bin/true";

fn runs() -> BenchResult<usize> {
    let mut args = std::env::args().skip(1);
    let mut runs = 300;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().ok_or("--runs needs a number")?.parse()?,
            // cargo bench passes --bench; anything else is a mistake.
            "--bench" => {}
            other => return Err(format!("unknown option {other}; use --runs N").into()),
        }
    }
    Ok(runs.max(1))
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

fn main() -> BenchResult<()> {
    let runs = runs()?;
    let unotify = env!("CARGO_BIN_EXE_unotify");
    let sandbox = Sandbox::builder().build()?;
    let names = ["bare", "cli", "cli-version", "library"];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); names.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); names.len()];
    // A few unmeasured rounds first: page cache, lazy binding.
    for round in 0..runs + 5 {
        let got = [
            timed(|| status_ok(&mut StdCommand::new(TRUE)))?,
            timed(|| status_ok(StdCommand::new(unotify).args(["run", "--", TRUE])))?,
            timed(|| status_ok(StdCommand::new(unotify).arg("--version")))?,
            timed(|| {
                let st = sandbox.run(&mut Command::new(TRUE))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("sandboxed {TRUE} failed: {st}").into())
                }
            })?,
        ];
        if round >= 5 {
            for ((s, c), (w, u)) in samples.iter_mut().zip(cpu.iter_mut()).zip(got) {
                s.push(w);
                c.push(u);
            }
        }
    }
    let m: Vec<f64> = samples.into_iter().map(median).collect();
    let mc: Vec<f64> = cpu.into_iter().map(median).collect();
    println!("startup: /bin/true, {runs} interleaved rounds, medians (wall, CPU)");
    for ((name, v), c) in names.iter().zip(&m).zip(&mc) {
        println!("  {name:<12} {v:>8.0} µs   cpu {c:>8.0} µs");
    }
    let overhead = m[1] - m[0];
    let verdict = if overhead < 1000.0 {
        "ok"
    } else {
        "ABOVE GOAL"
    };
    println!();
    println!("unotify run -- /bin/true over bare: {overhead:.0} µs   (goal < 1000 µs) {verdict}");
    println!(
        "  of which starting the unotify binary (--version over bare): {:.0} µs",
        m[2] - m[0]
    );
    println!("library spawn+wait over bare: {:.0} µs", m[3] - m[0]);
    println!(
        "CPU over bare: cli {:.0} µs, cli-version {:.0} µs, library {:.0} µs",
        mc[1] - mc[0],
        mc[2] - mc[0],
        mc[3] - mc[0]
    );
    Ok(())
}
