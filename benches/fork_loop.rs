//! fork + exit + wait loop, bare and under `max_processes(1000)`.
//!
//! The client (C, built with `cc -O2` into the target directory) runs `N`
//! cycles of `fork()` → child `_exit(0)` → `waitpid`, and prints
//! `ns_per_iter=`. Each configuration runs `--runs` times (default 5),
//! interleaved; the medians and their ratio are printed.
//!
//! Second part, the cost of process tracking on the hot path: a loop of
//! trapped `openat` + `close` (a `Continue` handler on `openat`), with and
//! without `track_processes()` (which adds the index lookup and the pidfd
//! liveness check to every notification).
//!
//! `cargo bench --bench fork_loop [-- --runs N --iters N --open-iters N]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

const CLIENT: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p < 0) { perror("fork"); return 1; }
        waitpid(p, NULL, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("ns_per_iter=%.0f\n", ns / n);
    return 0;
}
"#;

const OPEN_CLIENT: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) close(open("/dev/null", O_RDONLY));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("ns_per_iter=%.0f\n", ns / n);
    return 0;
}
"#;

fn parse(out: &str) -> f64 {
    out.trim()
        .strip_prefix("ns_per_iter=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("client printed {out:?}"))
}

/// Runs the client without a sandbox; `pinned`: on one CPU, so that the
/// parent and its children never wake each other across CPUs (in a VM a
/// cross-CPU wake-up is an IPI and a VM exit, which dominates this loop).
fn bare(exe: &Path, iters: u64, pinned: bool) -> f64 {
    use unotify::sys::process;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(iters.to_string());
    // A child inherits the CPUs of the thread that starts it: pin this
    // thread for the spawn, then give it its CPUs back.
    let allowed = process::allowed_cpus().expect("allowed CPUs");
    if pinned {
        process::pin_to_cpu(0, allowed.first().copied().unwrap_or(0)).expect("pin");
    }
    let out = cmd.output();
    if pinned {
        process::set_allowed_cpus(0, &allowed).expect("unpin");
    }
    let out = out.expect("run client");
    assert!(out.status.success());
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn sandboxed(sandbox: &Sandbox, exe: &Path, iters: u64) -> f64 {
    let mut cmd = Command::new(exe);
    cmd.arg(iters.to_string()).stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).expect("spawn client");
    let out = common::read_all(&mut child.stdout);
    assert!(
        child.wait().expect("wait").success(),
        "client failed: {out}"
    );
    parse(&out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = opt("--runs", 5).max(1);
    let iters = opt("--iters", 2000).max(1);
    let exe = common::build_c("fork_loop_client", CLIENT, &[]);
    let sandbox = Sandbox::builder()
        .max_processes(1000)
        .build()
        .expect("build sandbox");
    let started = Instant::now();
    let (mut b, mut bp, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        b.push(bare(&exe, iters, false));
        bp.push(bare(&exe, iters, true));
        s.push(sandboxed(&sandbox, &exe, iters));
    }
    let (b, bp, s) = (median(b), median(bp), median(s));
    println!(
        "fork+exit+wait x{iters}, median of {runs} runs ({:.1} s total)",
        started.elapsed().as_secs_f64()
    );
    println!("  bare                   {:8.1} us/iter", b / 1000.0);
    println!("  bare, one CPU          {:8.1} us/iter", bp / 1000.0);
    println!("  max_processes(1000)    {:8.1} us/iter", s / 1000.0);
    println!("  ratio to bare          {:8.2}x", s / b);
    println!("  ratio to bare, one CPU {:8.2}x", s / bp);

    let open_iters = opt("--open-iters", 20000).max(1);
    let open_exe = common::build_c("fork_loop_open_client", OPEN_CLIENT, &[]);
    let cont = |_cx: &HandlerCtx<'_>| NotifAction::Continue;
    let plain = Sandbox::builder()
        .handle("openat", cont)
        .build()
        .expect("build sandbox");
    let tracked = Sandbox::builder()
        .handle("openat", cont)
        .track_processes()
        .build()
        .expect("build sandbox");
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        p.push(sandboxed(&plain, &open_exe, open_iters));
        t.push(sandboxed(&tracked, &open_exe, open_iters));
    }
    let (p, t) = (median(p), median(t));
    println!("trapped openat+close x{open_iters}, median of {runs} runs");
    println!("  untracked              {:8.2} us/iter", p / 1000.0);
    println!("  track_processes()      {:8.2} us/iter", t / 1000.0);
    println!("  ratio                  {:8.2}x", t / p);
}
