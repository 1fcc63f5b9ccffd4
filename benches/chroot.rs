//! The cost of the chroot view: the python interpreter importing `json`
//! and `email`, and `gcc -O2 hello.c`, run directly, under `unotify run`,
//! and under `unotify run --chroot ROOT` with the toolchain mounted
//! read-only at its host paths, interleaved, medians of `--runs` (default
//! 11). Every path call of the program is walked in the view by the
//! supervisor, one component at a time.
//!
//! `cargo bench --bench chroot [-- --runs N]`

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("chroot: bench");
        return;
    }
    let runs = common::bench_arg("--runs", 11);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::write(
        work.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .expect("write hello.c");
    // The same files seen directly and in the view: /work is the same
    // directory at the same path, so the direct runs work in it too.
    let root_s = root.display().to_string();
    let mut chroot: Vec<String> = vec![
        "--chroot".into(),
        root_s,
        "--chroot-cwd".into(),
        "/work".into(),
    ];
    for m in ["/usr", "/bin", "/lib", "/lib64", "/etc/alternatives"] {
        if std::path::Path::new(m).is_dir() {
            chroot.push("--mount".into());
            chroot.push(format!("{m}:{m}:ro"));
        }
    }
    let chroot: Vec<&str> = chroot.iter().map(String::as_str).collect();
    let bare: [&str; 0] = [];
    type Work<'a> = (&'a str, &'a str, Vec<&'a str>);
    let work_list: Vec<Work<'_>> = vec![
        (
            "python -c 'import json,email'",
            "/usr/bin/python3",
            vec!["-c", "import json,email"],
        ),
        (
            "gcc -O2 hello.c",
            "/usr/bin/gcc",
            vec!["-O2", "-o", "/tmp/hello", "hello.c"],
        ),
    ];
    println!("{runs} runs each, interleaved; medians");
    for (name, prog, args) in &work_list {
        // The direct runs see the host's /tmp: the output goes there too.
        let (mut direct, mut plain, mut viewed) = (Vec::new(), Vec::new(), Vec::new());
        common::timed_run(Some(&chroot), prog, args, &work); // warm the caches
        for _ in 0..runs {
            direct.push(common::timed_run(None, prog, args, &work));
            plain.push(common::timed_run(Some(&bare), prog, args, &work));
            viewed.push(common::timed_run(Some(&chroot), prog, args, &work));
        }
        let ratios: Vec<f64> = viewed.iter().zip(&direct).map(|(c, d)| c / d).collect();
        let ratio = common::median(ratios);
        let (direct, plain, viewed) = (
            common::median(direct),
            common::median(plain),
            common::median(viewed),
        );
        println!(
            "{name:<32} direct {:7.2} ms | unotify run {:7.2} ms | --chroot {:7.2} ms | --chroot over direct {:.2}x, over unotify run {:.2}x",
            direct * 1e3,
            plain * 1e3,
            viewed * 1e3,
            ratio,
            viewed / plain,
        );
    }
}
