//! `clock_gettime` per call, bare and under `time_start` (`--time-start`).
//!
//! The client is `benches/clockloop.c` (N calls of `clock_gettime` through
//! glibc, which uses the vDSO where it can), compiled with `cc -O2` into
//! the target directory. Under `time_start` the vDSO's clock functions are
//! hidden (see `unotify::determinism`): a `CLOCK_REALTIME` read becomes a
//! trapped call answered by the supervisor, a `CLOCK_MONOTONIC` read a
//! plain system call the filter lets through. Each configuration runs
//! `--runs` times (default 5); the median is reported.
//!
//! `cargo bench --bench determinism [-- --runs N --iters N]`

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use unotify::{Command, Sandbox, Stdio};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn client() -> BenchResult<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("target").join("clockloop");
    let src = dir.join("benches").join("clockloop.c");
    let status = std::process::Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()?;
    if !status.success() {
        return Err("cc failed on benches/clockloop.c".into());
    }
    Ok(out)
}

fn parse(out: &str) -> BenchResult<f64> {
    let v = out
        .lines()
        .find_map(|l| l.strip_prefix("ns_per_call="))
        .ok_or_else(|| format!("no ns_per_call in {out:?}"))?;
    Ok(v.trim().parse()?)
}

fn bare(exe: &PathBuf, clock: u32, iters: u64) -> BenchResult<f64> {
    let out = std::process::Command::new(exe)
        .arg(clock.to_string())
        .arg(iters.to_string())
        .output()?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn sandboxed(sandbox: &Sandbox, exe: &PathBuf, clock: u32, iters: u64) -> BenchResult<f64> {
    let mut child = sandbox.spawn(
        Command::new(exe)
            .arg(clock.to_string())
            .arg(iters.to_string())
            .stdout(Stdio::Piped),
    )?;
    let mut text = String::new();
    if let Some(out) = child.stdout.as_mut() {
        out.read_to_string(&mut text)?;
    }
    child.wait()?;
    parse(&text)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> BenchResult<()> {
    let mut runs = 5;
    let mut iters: u64 = 200_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            "--iters" => iters = args.next().ok_or("--iters N")?.parse()?,
            _ => {}
        }
    }
    let exe = client()?;
    let sandbox = Sandbox::builder()
        .time_start(UNIX_EPOCH + Duration::from_secs(981_173_106))
        .build()?;
    let plain = Sandbox::builder().build()?;
    println!("clock_gettime, ns per call (median of {runs}, {iters} calls each)");
    for (clock, name) in [(0, "CLOCK_REALTIME"), (1, "CLOCK_MONOTONIC")] {
        let mut b = Vec::new();
        let mut p = Vec::new();
        let mut t = Vec::new();
        for _ in 0..runs {
            b.push(bare(&exe, clock, iters)?);
            p.push(sandboxed(&plain, &exe, clock, iters)?);
            t.push(sandboxed(&sandbox, &exe, clock, iters)?);
        }
        println!(
            "{name:16} bare {:9.1}  sandbox {:9.1}  --time-start {:9.1}",
            median(b),
            median(p),
            median(t)
        );
    }
    Ok(())
}
