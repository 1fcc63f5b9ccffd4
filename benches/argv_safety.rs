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
//! `cargo bench --bench argv_safety [-- --runs N --iters N]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;

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

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("argv_safety: bench");
        return;
    }
    let runs = arg("--runs", 5);
    let iters = arg("--iters", 300);
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
        let (bare, off, on) = (median(bare), median(off), median(on));
        println!(
            "{mode:>4}+wait: bare {:8.1} µs/iter | argv safety off {:8.1} µs | on {:8.1} µs | on/off {:.2}x (+{:.1} µs)",
            bare / 1e3,
            off / 1e3,
            on / 1e3,
            on / off,
            (on - off) / 1e3
        );
    }
}
