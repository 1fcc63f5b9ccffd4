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
//! Then whole programs through `unotify run`, bare vs `--deny-path
//! /etc/shadow` vs `--exec-deny nosuchword` (medians of `--runs`, the three
//! interleaved; ratios to bare from the same run): the python interpreter
//! importing `json` and `email`, `gcc -O2 hello.c`, and `make -j8` of a
//! generated 12-file C project.
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

/// Whole programs: bare vs `--deny-path` vs `--exec-deny`.
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
    let policies: [&[&str]; 3] = [
        &[],
        &["--deny-path", "/etc/shadow"],
        &["--exec-deny", "nosuchword"],
    ];
    type Work<'a> = (&'a str, Box<dyn Fn(&[&str]) -> f64 + 'a>);
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
    let work: Vec<Work<'_>> = vec![
        (
            "python (interpreter) -c 'import json,email'",
            Box::new(|p: &[&str]| {
                common::timed_run(
                    (!p.is_empty()).then_some(p),
                    &interpreter,
                    &["-c", "import json,email"],
                    d,
                )
            }),
        ),
        (
            "python3 on PATH -c 'import json,email'",
            Box::new(|p: &[&str]| {
                common::timed_run(
                    (!p.is_empty()).then_some(p),
                    "python3",
                    &["-c", "import json,email"],
                    d,
                )
            }),
        ),
        (
            "gcc -O2 hello.c",
            Box::new(|p: &[&str]| {
                common::timed_run(
                    (!p.is_empty()).then_some(p),
                    "gcc",
                    &["-O2", "-o", "hello", "hello.c"],
                    d,
                )
            }),
        ),
        (
            "make -j8 (12 files)",
            Box::new(|p: &[&str]| {
                common::timed_run(None, "make", &["-s", "clean"], &project);
                common::timed_run(
                    (!p.is_empty()).then_some(p),
                    "make",
                    &["-s", "-j8"],
                    &project,
                )
            }),
        ),
    ];
    for (name, run) in &work {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
        run(&[]); // warm the caches
        for _ in 0..runs {
            for (i, p) in policies.iter().enumerate() {
                times[i].push(run(p));
            }
        }
        let med: Vec<f64> = times.into_iter().map(common::median).collect();
        println!(
            "{name:<44} bare {:7.1} ms | --deny-path {:7.1} ms ({:.2}x) | --exec-deny {:7.1} ms ({:.2}x)",
            med[0] * 1e3,
            med[1] * 1e3,
            med[1] / med[0],
            med[2] * 1e3,
            med[2] / med[0],
        );
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
