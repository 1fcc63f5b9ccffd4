//! Determinism and identity (`unotify run --hostname`, `--num-cpus`, ...):
//! what a program sees is the options' values under every spelling, two
//! runs with the same options print the same, and bare runs show the host.

mod common;

use common::{build_c, run_unotify, stderr_of, stdout_of};

fn probe() -> std::path::PathBuf {
    build_c(
        "determinism_probe",
        include_str!("determinism_probe.c"),
        &[],
    )
}

/// Runs the probe under `unotify run FLAGS -- probe ARGS` and returns its
/// stdout (asserting success).
fn run_probe(flags: &[&str], args: &[&str]) -> String {
    let exe = probe();
    let mut all: Vec<&str> = vec!["run"];
    all.extend_from_slice(flags);
    all.push("--");
    let exe = exe.to_str().expect("utf-8 path");
    all.push(exe);
    all.extend_from_slice(args);
    let out = run_unotify(&all);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr_of(&out));
    stdout_of(&out)
}

fn real_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_owned()
}

/// Every spelling of the host-name files, `uname` and `gethostname` show
/// the virtual name; none shows the real one.
#[test]
fn hostname_under_every_spelling() {
    let real = real_hostname();
    let out = run_probe(&["--hostname", "vbox"], &["host", &real]);
    assert!(out.contains("real:0\n"), "{out}");
    for line in out.lines().filter(|l| !l.starts_with("real:")) {
        assert!(line.ends_with(" vbox"), "line {line:?} in\n{out}");
    }
    // Bare, the same spellings show the host's name.
    let bare = run_probe(&[], &["host", &real]);
    assert!(bare.contains("real:"), "{bare}");
    assert!(!bare.contains("real:0\n"), "{bare}");
    assert!(bare.contains(&format!("uname {real}\n")), "{bare}");
}

/// `sched_getaffinity`, `sysconf`, `/proc/cpuinfo` and the sysfs CPU list
/// agree on the virtual count.
#[test]
fn num_cpus_everywhere() {
    let out = run_probe(&["--num-cpus", "3"], &["cpus"]);
    assert_eq!(
        out, "affinity 3\nonln 3 conf 3\ncpuinfo 3\nonline 0-2\n",
        "{out}"
    );
    let out = run_probe(&["--num-cpus", "1"], &["cpus"]);
    assert_eq!(out, "affinity 1\nonln 1 conf 1\ncpuinfo 1\nonline 0\n");
    // nproc and python agree, and a program may still use every CPU.
    let out = run_unotify(&[
        "run",
        "--num-cpus",
        "5",
        "--",
        "sh",
        "-c",
        "nproc; python3 -c 'import os; print(os.cpu_count())'",
    ]);
    assert_eq!(stdout_of(&out), "5\n5\n", "{}", stderr_of(&out));
}

/// The same seed gives the same bytes (getrandom, both devices, a big
/// read), another seed or a bare run other bytes; python's `os.urandom`,
/// `random` and string hashes follow.
#[test]
fn random_seed_streams() {
    let a = run_probe(&["--random-seed", "42"], &["random"]);
    let b = run_probe(&["--random-seed", "42"], &["random"]);
    let c = run_probe(&["--random-seed", "43"], &["random"]);
    let bare = run_probe(&[], &["random"]);
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 4, "{a}");
    assert!(a.contains("big ok"), "{a}");
    for (x, y) in a.lines().zip(c.lines()).chain(a.lines().zip(bare.lines())) {
        assert_ne!(x, y, "\n{a}\n{c}\n{bare}");
    }
    let py = |seed: &str| {
        let out = run_unotify(&[
            "run",
            "--random-seed",
            seed,
            "--",
            "python3",
            "-c",
            "import os, random; print(os.urandom(8).hex(), random.random(), hash('abc'))",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        stdout_of(&out)
    };
    assert_eq!(py("7"), py("7"));
    assert_ne!(py("7"), py("8"));
}

/// Names created out of order list sorted (`readdir`, `telldir`,
/// `seekdir`, `rewinddir`, and a directory larger than one `readdir`
/// buffer); bare, the file system's own order shows.
#[test]
fn deterministic_dirs_sorted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = ["m", "c", "x", "a", "q", "B", "_z", "k"];
    for n in names {
        std::fs::write(tmp.path().join(n), b"").expect("create");
    }
    let path = tmp.path().to_str().expect("utf-8");
    let out = run_probe(&["--deterministic-dirs"], &["dir", path]);
    assert_eq!(
        out, "dir . .. B _z a c k m q x\nafter-second B\nfirst .\n",
        "{out}"
    );
    let bare = run_probe(&[], &["dir", path]);
    assert!(!bare.starts_with("dir . .. B _z a c k m q x\n"), "{bare}");
    // Many entries: several getdents64 calls, each continuing in order.
    let big = tmp.path().join("big");
    std::fs::create_dir(&big).expect("mkdir");
    for i in (0..3000).rev() {
        std::fs::write(
            big.join(format!("file-{:05}-{}", (i * 7919) % 3000, "x".repeat(20))),
            b"",
        )
        .expect("create");
    }
    let out = run_probe(
        &["--deterministic-dirs"],
        &["dir", big.to_str().expect("utf-8")],
    );
    let listed: Vec<&str> = out
        .lines()
        .next()
        .expect("dir line")
        .split(' ')
        .skip(1)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(listed.len(), 3002);
    assert_eq!(listed, sorted);
}

/// Unparseable values are `unotify`'s own failure, 125, with a message
/// that says what to give.
#[test]
fn bad_values_exit_125() {
    for (flag, value, needle) in [
        ("--num-cpus", "0", "CPU count"),
        ("--num-cpus", "many", "CPU count"),
        ("--hostname", "a/b", "host name"),
        ("--random-seed", "-1", "seed"),
        ("--random-seed", "0x", "seed"),
    ] {
        let out = run_unotify(&["run", &format!("{flag}={value}"), "--", "true"]);
        assert_eq!(out.status.code(), Some(125), "{flag} {value}");
        let err = stderr_of(&out);
        assert!(err.contains(needle), "{flag} {value}: {err}");
    }
}
