//! The cost of file system confinement (Landlock allow lists): whole
//! programs run directly, under `unotify run` (bare), and under
//! `unotify run --fs-system -r PREFIX -w /tmp` (the lists), interleaved,
//! medians of `--runs` (default 11); the ratio of the lists to bare is
//! the median of each round's ratio (adjacent runs share the machine's
//! load). Landlock checks in the kernel with no round trip;
//! the lists add only the metadata calls (`chmod`, times, ...) to what the
//! supervisor traps.
//!
//! Programs: the python interpreter importing `json` and `email`, and
//! `gcc -O2 hello.c`.
//!
//! `cargo bench --bench landlock [-- --runs N]`

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("landlock: bench");
        return;
    }
    let runs = common::bench_arg("--runs", 11);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .expect("write hello.c");
    // The interpreter itself (not a shim), and its prefix to read.
    let probe = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable); print(sys.prefix)"])
        .output()
        .expect("python3");
    let text = String::from_utf8(probe.stdout).expect("utf-8");
    let mut lines = text.lines();
    let python = lines.next().expect("sys.executable").to_owned();
    let prefix = lines.next().expect("sys.prefix").to_owned();
    let bare: [&str; 0] = [];
    let lists: [&str; 5] = ["--fs-system", "-r", &prefix, "-w", "/tmp"];
    type Work<'a> = (&'a str, Box<dyn Fn(Option<&[&str]>) -> f64 + 'a>);
    let work: Vec<Work<'_>> = vec![
        (
            "python -c 'import json,email'",
            Box::new(|p| common::timed_run(p, &python, &["-c", "import json,email"], d)),
        ),
        (
            "gcc -O2 hello.c",
            Box::new(|p| common::timed_run(p, "gcc", &["-O2", "-o", "hello", "hello.c"], d)),
        ),
    ];
    println!("{} runs each, interleaved; medians", runs);
    for (name, run) in &work {
        let (mut direct, mut plain, mut confined) = (Vec::new(), Vec::new(), Vec::new());
        run(Some(&lists)); // warm the caches
        for _ in 0..runs {
            direct.push(run(None));
            plain.push(run(Some(&bare)));
            confined.push(run(Some(&lists)));
        }
        // Each round's ratio (its runs are adjacent, so they share the
        // machine's load), then the median: steadier than a ratio of medians
        // on a shared machine.
        let ratios: Vec<f64> = confined.iter().zip(&plain).map(|(c, p)| c / p).collect();
        let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().cloned().fold(0.0, f64::max);
        let ratio = common::median(ratios);
        let (direct, plain, confined) = (
            common::median(direct),
            common::median(plain),
            common::median(confined),
        );
        println!(
            "{name:<32} direct {:7.2} ms | unotify run {:7.2} ms | -r/-w {:7.2} ms | -r/-w over unotify run: {:.3}x (rounds {:.2}-{:.2}; goal <= 1.05x), over direct {:.3}x",
            direct * 1e3,
            plain * 1e3,
            confined * 1e3,
            ratio,
            lo,
            hi,
            confined / direct,
        );
    }
}
