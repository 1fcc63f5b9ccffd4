//! The cost of a copy-on-write work directory: whole programs run
//! directly, under `unotify run` (bare), and under
//! `unotify run --workdir .` (their files in the work directory; the
//! layer is made, the run's changes committed), interleaved, medians of
//! `--runs` (default 11); the ratio to the direct run is the median of
//! each round's ratio (adjacent runs share the machine's load). Goal:
//! <= 1.5x the direct run.
//!
//! Programs: the python interpreter importing `json`, `email` and a module
//! of the work directory, and `gcc -O2 hello.c` writing `hello` there.
//!
//! `cargo bench --bench cow [-- --runs N]`

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("cow: bench");
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
    type Work<'a> = (&'a str, Box<dyn Fn(Option<&[&str]>) -> f64 + 'a>);
    let work: Vec<Work<'_>> = vec![
        (
            "python -c 'import json,email,mymod'",
            Box::new(|p| {
                common::timed_run(p, &python, &["-B", "-c", "import json,email,mymod"], d)
            }),
        ),
        (
            "gcc -O2 hello.c",
            Box::new(|p| common::timed_run(p, "gcc", &["-O2", "-o", "hello", "hello.c"], d)),
        ),
    ];
    println!("{runs} runs each, interleaved; medians");
    for (name, run) in &work {
        let rounds = common::Rounds::take(runs, run.as_ref(), &cow);
        let (ratio, lo, hi) = rounds.ratio(&rounds.direct);
        let (direct, plain, layered) = rounds.medians();
        println!(
            "{name:<36} direct {:7.2} ms | unotify run {:7.2} ms | --workdir {:7.2} ms | --workdir over direct: {ratio:.3}x (rounds {lo:.2}-{hi:.2}; goal <= 1.5x), over unotify run {:.3}x",
            direct * 1e3,
            plain * 1e3,
            layered * 1e3,
            layered / plain,
        );
    }
}
