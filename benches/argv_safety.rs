//! The added cost of exec argv safety, per fork and per exec.
//!
//! The client (C, built with `cc -O2`) runs `N` cycles of either
//! `fork()` → child `_exit(0)` → `waitpid` ("fork"), or `fork()` → child
//! `execv("/bin/true")` → `waitpid` ("exec"), and prints `ns_per_iter=`.
//! Both sandboxes trap the same calls (a `Continue` handler on `execve`,
//! process tracking on); one has argv safety off, the other on (freeze
//! around every exec, creation tracking of every fork). Each configuration
//! runs `--runs` times (default 5), interleaved; medians and ratios are
//! printed.
//!
//! Then whole programs, wall time from start to exit, bare (a plain
//! `std::process::Command` of this process) vs the C floor (the minimal
//! supervisor `benches/floorsup.c`, trapping `openat` and answering
//! `CONTINUE`) vs `unotify run --deny-path /etc/shadow` vs `unotify run --exec-deny nosuchword` vs a policy
//! callback: a sandbox of the library, built once in this process with
//! `policy_fn` answering `Allow` to everything (argv safety on, every open
//! and exec held for its verdict), its program spawned and waited for by
//! this process (no `unotify` command start-up in that column). Medians of
//! `--runs`, the five interleaved; a ratio is the median of each round's
//! ratio to bare (adjacent runs share the machine's load). Each run is
//! measured twice: wall time, then (a second table) CPU time, perf
//! task-clock of every process and thread of the run, the supervisor's
//! included (the library's supervisor threads are this process's). The
//! workloads: the python interpreter importing `json` and `email`, the
//! same through `python3` on `PATH` (a pyenv shim, if that is what it is),
//! `gcc -O2 hello.c`, and `make -j8` of a generated 12-file C project.
//!
//! `cargo bench --bench argv_safety [-- --runs N --iters N --programs-only]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;

use unotify::policy::{PolicyContext, SyscallEvent, Verdict};
use unotify::sys::perf::{Software, SoftwareCounter};
use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

const CLIENT: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int exec = strcmp(argv[1], "exec") == 0;
    long n = atol(argv[2]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            if (exec) {
                char *args[] = { "/bin/true", NULL };
                execv(args[0], args);
            }
            _exit(0);
        }
        if (p < 0) { perror("fork"); return 1; }
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { fprintf(stderr, "child failed\n"); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("ns_per_iter=%.0f\n", ns / n);
    return 0;
}
"#;

fn run_once(sandbox: Option<&Sandbox>, exe: &Path, mode: &str, iters: usize) -> f64 {
    let out = match sandbox {
        Some(sb) => {
            let mut cmd = Command::new(exe);
            cmd.arg(mode).arg(iters.to_string()).stdout(Stdio::Piped);
            let mut child = sb.spawn(&mut cmd).expect("spawn");
            let out = common::read_all(&mut child.stdout);
            assert!(
                child.wait().expect("wait").success(),
                "client failed: {out}"
            );
            out
        }
        None => {
            let o = std::process::Command::new(exe)
                .arg(mode)
                .arg(iters.to_string())
                .output()
                .expect("run bare");
            assert!(o.status.success());
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
    };
    out.trim()
        .strip_prefix("ns_per_iter=")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("bad client output {out:?}"))
}

/// How a workload of [`programs`] is run.
#[derive(Clone, Copy)]
enum Under<'a> {
    /// Directly.
    Bare,
    /// Under `unotify run` with these options.
    Cli(&'a [&'a str]),
    /// Under the minimal C supervisor (`benches/floorsup.c`), trapping
    /// `openat` and answering `CONTINUE`: the floor.
    Floor(&'a Path),
    /// In this sandbox of the library (spawned from this process).
    Library(&'a Sandbox),
}

/// Runs `prog args` in `dir` as `under` says; returns its wall time (s)
/// and CPU time (ms: the task clock of every process and thread this
/// thread starts meanwhile).
fn timed(under: Under<'_>, prog: &str, args: &[&str], dir: &Path) -> (f64, f64) {
    let clock = SoftwareCounter::open(Software::TaskClock).ok();
    let cpu = || {
        clock
            .as_ref()
            .and_then(|c| c.read().ok())
            .map_or(f64::NAN, |v| v as f64 / 1e6)
    };
    let c0 = cpu();
    let wall = match under {
        Under::Bare => common::timed_run(None, prog, args, dir),
        Under::Cli(p) => common::timed_run(Some(p), prog, args, dir),
        Under::Floor(sup) => floor_run(sup, prog, args, dir),
        Under::Library(sb) => library_run(sb, prog, args, dir),
    };
    (wall, cpu() - c0)
}

/// Runs `prog args` in `dir` in `sb`; returns its wall time.
fn library_run(sb: &Sandbox, prog: &str, args: &[&str], dir: &Path) -> f64 {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::Piped)
        .stderr(Stdio::Piped);
    let t = std::time::Instant::now();
    let mut child = sb.spawn(&mut cmd).expect("spawn");
    let _ = common::read_all(&mut child.stdout);
    let err = common::read_all(&mut child.stderr);
    let st = child.wait().expect("wait");
    let took = t.elapsed().as_secs_f64();
    assert!(
        st.success() && err.is_empty(),
        "{prog} {args:?} under a policy callback: {st:?} {err}"
    );
    took
}

/// Runs `prog args` in `dir` under the floor supervisor `sup`; returns
/// its wall time.
fn floor_run(sup: &Path, prog: &str, args: &[&str], dir: &Path) -> f64 {
    let launcher = [sup.as_os_str()]
        .into_iter()
        .chain([OPENAT, "sync", "--"].map(std::ffi::OsStr::new))
        .collect::<Vec<_>>();
    common::timed_launch(&launcher, prog, args, dir)
}

/// `openat`'s number, for the floor's filter.
#[cfg(target_arch = "x86_64")]
const OPENAT: &str = "257";
#[cfg(target_arch = "aarch64")]
const OPENAT: &str = "56";

/// Whole programs: bare vs the C floor vs `--deny-path` vs `--exec-deny` vs a policy
/// callback (see the module documentation).
fn programs(runs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .expect("write hello.c");
    let project = d.join("project");
    common::c_project(&project, 12);
    let policy = Sandbox::builder()
        .policy_fn(|_: &SyscallEvent, _: &mut PolicyContext<'_>| Verdict::Allow)
        .build()
        .expect("policy sandbox");
    let floorsup = common::build_c("floorsup", include_str!("floorsup.c"), &[]);
    let modes = [
        Under::Bare,
        Under::Floor(&floorsup),
        Under::Cli(&["--deny-path", "/etc/shadow"]),
        Under::Cli(&["--exec-deny", "nosuchword"]),
        Under::Library(&policy),
    ];
    type Work<'a> = (&'a str, Box<dyn Fn(Under<'_>) -> (f64, f64) + 'a>);
    // `python3` on PATH may be a shim (pyenv: a bash script that execs
    // the interpreter after a few hundred probes); both are measured.
    let interpreter = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "python3".to_owned());
    let python = ["-c", "import json,email"];
    let work: Vec<Work<'_>> = vec![
        (
            "python (interpreter)",
            Box::new(|u| timed(u, &interpreter, &python, d)),
        ),
        (
            "python3 on PATH (shim)",
            Box::new(|u| timed(u, "python3", &python, d)),
        ),
        (
            "gcc -O2 hello.c",
            Box::new(|u| timed(u, "gcc", &["-O2", "-o", "hello", "hello.c"], d)),
        ),
        (
            "make -j8 (12 files)",
            Box::new(|u| {
                common::timed_run(None, "make", &["-s", "clean"], &project);
                timed(u, "make", &["-s", "-j8"], &project)
            }),
        ),
    ];
    // Per workload, per mode: (wall s, CPU ms) of each round.
    let mut samples: Vec<Vec<Vec<(f64, f64)>>> = Vec::new();
    for (_, run) in &work {
        let mut rounds: Vec<Vec<(f64, f64)>> = vec![Vec::new(); modes.len()];
        // Warm the caches (and the library's first spawn, which makes the
        // cgroup its later spawns reuse).
        run(Under::Bare);
        run(Under::Library(&policy));
        for _ in 0..runs {
            for (i, m) in modes.iter().enumerate() {
                rounds[i].push(run(*m));
            }
        }
        samples.push(rounds);
    }
    for (what, unit, pick) in [
        (
            "wall time",
            "ms",
            (|s: (f64, f64)| s.0 * 1e3) as fn((f64, f64)) -> f64,
        ),
        ("CPU time", "ms", |s: (f64, f64)| s.1),
    ] {
        println!(
            "{:<24} {:>9} | {:>19} | {:>19} | {:>19} | {:>19}",
            format!("{what} (medians)"),
            "bare",
            "C floor (openat)",
            "--deny-path",
            "--exec-deny",
            "policy_fn (lib)"
        );
        for ((name, _), rounds) in work.iter().zip(&samples) {
            let value = |i: usize| common::median(rounds[i].iter().map(|&s| pick(s)).collect());
            // The median of each round's ratio to bare.
            let ratio = |i: usize| {
                common::median(
                    rounds[i]
                        .iter()
                        .zip(&rounds[0])
                        .map(|(&m, &b)| pick(m) / pick(b))
                        .collect(),
                )
            };
            let cell = |i: usize| format!("{:7.1} {unit} ({:.2}x)", value(i), ratio(i));
            println!(
                "{name:<24} {:6.1} {unit} | {:>19} | {:>19} | {:>19} | {:>19}",
                value(0),
                cell(1),
                cell(2),
                cell(3),
                cell(4),
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("argv_safety: bench");
        return;
    }
    let runs = common::bench_arg("--runs", 5);
    let iters = common::bench_arg("--iters", 300);
    // Before any thread starts: the programs run without the
    // `LD_LIBRARY_PATH` cargo gives a bench (each dynamic loader of a run
    // would look for each of its libraries in each of its directories:
    // hundreds of opens a user's run does not make; see benches/cow.rs).
    std::env::remove_var("LD_LIBRARY_PATH");
    if std::env::args().any(|a| a == "--programs-only") {
        programs(runs);
        return;
    }
    let exe = common::build_c("argv_safety_bench", CLIENT, &[]);
    let pass = |_: &HandlerCtx<'_>| NotifAction::Continue;
    let without = Sandbox::builder()
        .handle("execve", pass)
        .track_processes()
        .argv_safety(false)
        .build()
        .expect("sandbox");
    let with = Sandbox::builder()
        .handle("execve", pass)
        .track_processes()
        .argv_safety(true)
        .build()
        .expect("sandbox");
    for mode in ["fork", "exec"] {
        let (mut bare, mut off, mut on) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            bare.push(run_once(None, &exe, mode, iters));
            off.push(run_once(Some(&without), &exe, mode, iters));
            on.push(run_once(Some(&with), &exe, mode, iters));
        }
        let (bare, off, on) = (
            common::median(bare),
            common::median(off),
            common::median(on),
        );
        println!(
            "{mode:>4}+wait: bare {:8.1} µs/iter | argv safety off {:8.1} µs | on {:8.1} µs | on/off {:.2}x (+{:.1} µs)",
            bare / 1e3,
            off / 1e3,
            on / 1e3,
            on / off,
            (on - off) / 1e3
        );
    }
    programs(runs);
}
