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
        let rounds = common::Rounds::take(runs, run.as_ref(), &lists);
        let (ratio, lo, hi) = rounds.ratio(&rounds.plain);
        let (direct, plain, confined) = rounds.medians();
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
