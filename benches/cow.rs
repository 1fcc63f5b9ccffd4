//! The cost of a copy-on-write work directory: whole programs run
//! directly, under `unotify run` (bare), under `unotify run --workdir .`
//! (the default route: the overlay where the host allows it, as here
//! when run as root) and under `--workdir . --workdir-route seccomp`
//! (their files in the work directory; the layer is made, the run's
//! changes committed), interleaved, medians of `--runs` (default 11); the
//! ratio to the direct run is the median of each round's ratio (adjacent
//! runs share the machine's load). Goal: <= 1.5x the direct run. The
//! route the default run took is printed.
//!
//! Each run is measured twice: wall time, and CPU time (perf task-clock of
//! every process and thread of the run, the supervisor's included), with
//! the run's context switches. A last line per program counts the calls
//! the work directory traps, by system call (each a hand-off to the
//! supervisor and back, whether the layer answers it or lets it run):
//! what the ratio is made of.
//!
//! Programs: the python interpreter importing `json`, `email` and a module
//! of the work directory, and `gcc -O2 hello.c` writing `hello` there.
//! They run without the `LD_LIBRARY_PATH` cargo gives a bench (its four
//! directories of Rust libraries): with it, every dynamic loader of the
//! run looks for each of its libraries in each of them (and in their
//! `glibc-hwcaps` subdirectories), about 830 more opens and stats in a
//! gcc run, all of them trapped under `--workdir`, none of which a user's
//! gcc makes.
//!
//! `cargo bench --bench cow [-- --runs N]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use unotify::sys::perf::{Software, SoftwareCounter};

/// One run's wall time (s), CPU time (ms) and context switches.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
    switches: f64,
}

fn counter(what: Software) -> Option<SoftwareCounter> {
    SoftwareCounter::open(what).ok()
}

fn read(c: &Option<SoftwareCounter>) -> f64 {
    c.as_ref()
        .and_then(|c| c.read().ok())
        .map_or(f64::NAN, |v| v as f64)
}

/// Runs `prog args` in `dir`, directly (`None`) or under `unotify run
/// FLAGS`, counting its CPU time and context switches (the counters
/// follow every process and thread this thread starts).
fn sample(policy: Option<&[&str]>, prog: &str, args: &[&str], dir: &Path) -> Sample {
    let clock = counter(Software::TaskClock);
    let cs = counter(Software::ContextSwitches);
    let (c0, s0) = (read(&clock), read(&cs));
    let wall = common::timed_run(policy, prog, args, dir);
    Sample {
        wall,
        cpu: (read(&clock) - c0) / 1e6,
        switches: read(&cs) - s0,
    }
}

/// The calls `prog args` makes that a work directory traps, by name,
/// and how many of them the layer let run (`CONTINUE`; the others it
/// answered itself): one run under `unotify run --workdir .
/// --workdir-route seccomp --trace`
/// (the trace traps a stat call naming an fd's own file too, which the
/// work directory alone lets run: those are left out).
fn trapped(prog: &str, args: &[&str], dir: &Path) -> BTreeMap<String, (u64, u64)> {
    const NAMES: &str =
        "readlink,readlinkat,newfstatat,statx,access,faccessat,faccessat2,open,openat,getcwd,chdir,execve,vfork,clone,clone3,unlink,unlinkat,rename,chmod";
    // Traces on stderr: an `-o` file is a denied path of its own, which
    // would change the route of the calls counted.
    let out = common::unotify()
        .args(["run", "--workdir", ".", "--workdir-route", "seccomp"])
        .args(["--on-exit", "abort", "--trace", NAMES, "--", prog])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run unotify");
    assert!(out.status.success(), "{prog} {args:?}: {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("unotify: trace: "))
        .collect();
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in text {
        let Some(call) = line.split_whitespace().nth(2) else {
            continue;
        };
        let Some(name) = call.split('(').next() else {
            continue;
        };
        if name.contains("stat") && line.contains("AT_EMPTY_PATH") && line.contains("\"\"") {
            continue;
        }
        let e = counts.entry(name.to_owned()).or_default();
        e.0 += 1;
        if line.ends_with("CONTINUE") {
            e.1 += 1;
        }
    }
    counts
}

/// The route `unotify run --workdir .` takes in `dir` (from its debug
/// log).
fn route(dir: &Path) -> &'static str {
    let out = common::unotify()
        .env("RUST_LOG", "unotify=debug")
        .args(["run", "--workdir", ".", "--on-exit", "abort", "--", "true"])
        .current_dir(dir)
        .output()
        .expect("run unotify");
    let log = String::from_utf8_lossy(&out.stderr);
    if log.contains("the overlay route") {
        "overlay"
    } else {
        "seccomp"
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("cow: bench");
        return;
    }
    let runs = common::bench_arg("--runs", 11);
    // Before any thread starts (see the module docs).
    std::env::remove_var("LD_LIBRARY_PATH");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .expect("write hello.c");
    std::fs::write(d.join("mymod.py"), "VALUE = 42\n").expect("write mymod.py");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    let python = String::from_utf8(probe.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let cow: [&str; 2] = ["--workdir", "."];
    let seccomp: [&str; 4] = ["--workdir", ".", "--workdir-route", "seccomp"];
    let bare: [&str; 0] = [];
    println!("--workdir route here: {}", route(d));
    let work: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "python -c 'import json,email,mymod'",
            &python,
            vec!["-B", "-c", "import json,email,mymod"],
        ),
        (
            "gcc -O2 hello.c",
            "gcc",
            vec!["-O2", "-o", "hello", "hello.c"],
        ),
    ];
    println!("{runs} runs each, interleaved; medians (CPU: task-clock of every process and thread of the run)");
    for (name, prog, args) in &work {
        let run = |p: Option<&[&str]>| sample(p, prog, args, d);
        run(Some(&cow));
        run(Some(&seccomp));
        let (mut direct, mut plain, mut layered, mut trapping) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            direct.push(run(None));
            plain.push(run(Some(&bare)));
            layered.push(run(Some(&cow)));
            trapping.push(run(Some(&seccomp)));
        }
        let ratio_of = |runs: &[Sample], f: fn(&Sample) -> f64| {
            let r: Vec<f64> = runs.iter().zip(&direct).map(|(l, d)| f(l) / f(d)).collect();
            let lo = r.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = r.iter().cloned().fold(0.0, f64::max);
            (common::median(r), lo, hi)
        };
        let med = |v: &[Sample], f: fn(&Sample) -> f64| common::median(v.iter().map(f).collect());
        let wall = |s: &Sample| s.wall * 1e3;
        let cpu = |s: &Sample| s.cpu;
        let sw = |s: &Sample| s.switches;
        let (wr, wlo, whi) = ratio_of(&layered, wall);
        let (cr, clo, chi) = ratio_of(&layered, cpu);
        let (swr, swlo, swhi) = ratio_of(&trapping, wall);
        let (scr, sclo, schi) = ratio_of(&trapping, cpu);
        println!(
            "{name:<36} wall: direct {:7.2} ms | unotify run {:7.2} ms | --workdir {:7.2} ms | --workdir over direct: {wr:.3}x (rounds {wlo:.2}-{whi:.2}; goal <= 1.5x), over unotify run {:.3}x",
            med(&direct, wall),
            med(&plain, wall),
            med(&layered, wall),
            med(&layered, wall) / med(&plain, wall),
        );
        println!(
            "{:<36} CPU:  direct {:7.2} ms | unotify run {:7.2} ms | --workdir {:7.2} ms | --workdir over direct: {cr:.3}x (rounds {clo:.2}-{chi:.2}) | context switches {:.0} / {:.0} / {:.0}",
            "",
            med(&direct, cpu),
            med(&plain, cpu),
            med(&layered, cpu),
            med(&direct, sw),
            med(&plain, sw),
            med(&layered, sw),
        );
        println!(
            "{:<36} seccomp route: wall {:7.2} ms, {swr:.3}x direct (rounds {swlo:.2}-{swhi:.2}) | CPU {:7.2} ms, {scr:.3}x (rounds {sclo:.2}-{schi:.2}) | context switches {:.0}",
            "",
            med(&trapping, wall),
            med(&trapping, cpu),
            med(&trapping, sw),
        );
        let counts = trapped(prog, args, d);
        let total: u64 = counts.values().map(|c| c.0).sum();
        let each: Vec<String> = counts
            .iter()
            .map(|(n, (all, cont))| format!("{n} {all} ({cont})"))
            .collect();
        println!(
            "{:<36} trapped on the seccomp route: {total} calls (in brackets: let run by the layer): {}",
            "",
            each.join(", ")
        );
    }
}
