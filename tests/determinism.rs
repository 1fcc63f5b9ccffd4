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
    // The spellings through a procfs magic link (`/proc/self/root`,
    // `/proc/thread-self/root`, `/proc/self/cwd`) are refused (`ELOOP`) by
    // the on-behalf opens that serve the virtual files, as under any path
    // policy; every other spelling shows the virtual name.
    let mut refused = 0;
    for line in out.lines().filter(|l| !l.starts_with("real:")) {
        if line == "file <open failed>" {
            refused += 1;
            continue;
        }
        assert!(line.ends_with(" vbox"), "line {line:?} in\n{out}");
    }
    assert!(refused <= 3, "{out}");
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

/// `clock_gettime(CLOCK_REALTIME)` called directly, which glibc serves
/// from the vDSO without entering the kernel, sees the virtual time on
/// every one of 2000 reads, in a dynamic and a static program; bare, every
/// read is real.
#[test]
fn vdso_clock_reads_are_virtual() {
    let out = run_probe(
        &["--time-start", "2001-02-03T04:05:06Z"],
        &["vdso-loop", "2000"],
    );
    assert_eq!(out, "real-reads 0 of 2000\n");
    let bare = run_probe(&[], &["vdso-loop", "2000"]);
    assert_eq!(bare, "real-reads 2000 of 2000\n");
    let exe = build_c(
        "determinism_probe_static",
        include_str!("determinism_probe.c"),
        &["-static"],
    );
    let out = run_unotify(&[
        "run",
        "--time-start",
        "2001-02-03T04:05:06Z",
        "--",
        exe.to_str().expect("utf-8"),
        "vdso-loop",
        "2000",
        "time",
    ]);
    assert_eq!(
        stdout_of(&out),
        format!(
            "real-reads 0 of 2000\nminutes {m} {m} {m}\n",
            m = 981_173_106 / 60
        ),
        "{}",
        stderr_of(&out)
    );
}

/// `date`, python's `time.time()` and `datetime.now()`, and an absolute
/// `clock_nanosleep` on the virtual clock, which sleeps the right length.
#[test]
fn time_start_everywhere() {
    let out = run_unotify(&[
        "run",
        "--time-start",
        "2001-02-03T04:05:06+01:00",
        "--",
        "sh",
        "-c",
        "date -u +%Y-%m-%dT%H:%M; python3 -c 'import time, datetime; print(int(time.time()) // 60, datetime.datetime.utcfromtimestamp(time.time()).year)'",
    ]);
    assert_eq!(
        stdout_of(&out),
        format!("2001-02-03T03:05\n{} 2001\n", 981_169_506 / 60),
        "{}",
        stderr_of(&out)
    );
    let sleeper = build_c(
        "determinism_sleep",
        r#"
#include <stdio.h>
#include <time.h>
#include <errno.h>
int main(void) {
    struct timespec now, t0, t1;
    clock_gettime(CLOCK_REALTIME, &now);
    struct timespec deadline = { now.tv_sec + 2, now.tv_nsec };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r;
    while ((r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &deadline, NULL)) == EINTR) {}
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double slept = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%d %d %s\n", r, (int)(now.tv_sec < 1000000000), slept > 1.9 && slept < 3.0 ? "right" : "wrong");
    return 0;
}
"#,
        &[],
    );
    let out = run_unotify(&[
        "run",
        "--time-start",
        "2001-02-03T04:05:06Z",
        "--",
        sleeper.to_str().expect("utf-8"),
    ]);
    assert_eq!(stdout_of(&out), "0 1 right\n", "{}", stderr_of(&out));
}

/// Two runs with every option print the same (time, random bytes, host
/// name, CPUs, a directory), in C and in python; bare runs differ.
#[test]
fn two_runs_are_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for n in ["m", "c", "x", "a", "q"] {
        std::fs::write(tmp.path().join(n), b"").expect("create");
    }
    let dir = tmp.path().to_str().expect("utf-8");
    let flags = [
        "--time-start",
        "2001-02-03T04:05:06Z",
        "--random-seed",
        "9",
        "--hostname",
        "repro",
        "--num-cpus",
        "2",
        "--deterministic-dirs",
    ];
    let args = ["time", "random", "host", "cpus", "dir", dir];
    let a = run_probe(&flags, &args);
    let b = run_probe(&flags, &args);
    assert_eq!(a, b);
    assert!(
        a.contains("uname repro\n") && a.contains("affinity 2\n"),
        "{a}"
    );
    let bare_a = run_probe(&[], &args);
    let bare_b = run_probe(&[], &args);
    assert_ne!(bare_a, bare_b, "random bytes differ between bare runs");
    let py = format!(
        "import os, random, socket, time; print(int(time.time()) // 60, os.urandom(8).hex(), random.random(), socket.gethostname(), os.cpu_count(), os.listdir({dir:?}))"
    );
    let run_py = |flags: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(flags);
        all.extend_from_slice(&["--", "python3", "-c", &py]);
        let out = run_unotify(&all);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        stdout_of(&out)
    };
    let pa = run_py(&flags);
    assert_eq!(pa, run_py(&flags));
    assert!(pa.contains("repro 2 ['a', 'c', 'm', 'q', 'x']"), "{pa}");
    assert_ne!(run_py(&[]), run_py(&[]));
}

/// Two sandboxes each run `python3 -m http.server 8080` at once, while
/// this process holds the real port 8080 (if it is free); a client inside
/// each reaches its own server, and `getsockname` shows 8080. (Until its
/// server has bound 8080, a client's connect reaches the real port 8080,
/// here this process, which never answers: the client's timeout.)
#[test]
fn port_remap_two_servers_on_8080() {
    let _held = std::net::TcpListener::bind("127.0.0.1:8080");
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    for (i, d) in dirs.iter().enumerate() {
        std::fs::write(d.path().join("id"), format!("server-{i}")).expect("write id");
    }
    let script = |dir: &std::path::Path| {
        format!(
            "python3 -m http.server 8080 --bind 127.0.0.1 --directory {dir} >/dev/null 2>&1 &
             for i in $(seq 100); do
               python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:8080/id\", timeout=1).read().decode())' 2>/dev/null && break
               sleep 0.1
             done
             python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 8081)); print(s.getsockname()[1])'
             kill $!",
            dir = dir.display()
        )
    };
    let children: Vec<std::process::Child> = dirs
        .iter()
        .map(|d| {
            common::unotify()
                .args(["run", "--port-remap", "--", "sh", "-c", &script(d.path())])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start unotify")
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait");
        assert_eq!(
            stdout_of(&out),
            format!("server-{i}\n8081\n"),
            "{}",
            stderr_of(&out)
        );
    }
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
        ("--time-start", "yesterday", "not a time"),
        ("--time-start", "2024-02-30T00:00:00Z", "not a time"),
    ] {
        let out = run_unotify(&["run", &format!("{flag}={value}"), "--", "true"]);
        assert_eq!(out.status.code(), Some(125), "{flag} {value}");
        let err = stderr_of(&out);
        assert!(err.contains(needle), "{flag} {value}: {err}");
    }
}

/// A second thread rewrites the path between an open's check and the
/// kernel's read of it: the open of a decoy file, turned into
/// `/etc/hostname` after the check, would reach the real file if the open
/// were left to the kernel. Served on the program's behalf from the one
/// copy read, every open reads the decoy or the virtual name: none reads
/// the host's.
const PATH_FLIP_RACE: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char path[64];
static const char *decoy;
static volatile int stop;
static void *flip(void *arg) {
    (void)arg;
    while (!stop) {
        strcpy(path, "/etc/hostname");
        strcpy(path, decoy);
    }
    return NULL;
}
int main(int argc, char **argv) {
    decoy = argv[1];
    const char *real = argv[2];
    int rounds = atoi(argv[3]), leaked = 0, opened = 0;
    strcpy(path, decoy);
    pthread_t t;
    pthread_create(&t, NULL, flip, NULL);
    for (int i = 0; i < rounds; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        char buf[128] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        opened++;
        if (n > 0 && strncmp(buf, real, strlen(real)) == 0) leaked++;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("opened=%d leaked=%d\n", opened, leaked);
    return 0;
}
"#;

#[test]
fn a_path_rewritten_after_the_check_never_reaches_the_real_hostname() {
    let exe = build_c("path_flip_race", PATH_FLIP_RACE, &["-pthread"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let decoy = dir.path().join("decoy");
    std::fs::write(&decoy, "decoy\n").expect("write decoy");
    let real = real_hostname();
    assert_ne!(real, "vbox");
    let out = run_unotify(&[
        "run",
        "--hostname",
        "vbox",
        "--",
        exe.to_str().unwrap(),
        decoy.to_str().unwrap(),
        &real,
        "3000",
    ]);
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let field = |name: &str| -> i64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {text:?}"))
    };
    assert!(field("opened") > 0, "{text}");
    assert_eq!(field("leaked"), 0, "the real host name was read: {text}");
}

/// A hard link to `/etc/hostname` (the same file under another name) is
/// served the virtual name, and an open of the file for reading and
/// writing, which would read the real one, is refused.
#[test]
fn a_hard_link_or_a_write_open_never_reads_the_real_hostname() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("hl");
    std::fs::hard_link("/etc/hostname", &link).expect("link /etc/hostname into the temp dir");
    let real = real_hostname();
    let script = format!(
        "cat {link}; python3 -c \"
import os
try:
    fd = os.open('/etc/hostname', os.O_RDWR)
    print('rdwr', os.read(fd, 64).decode().strip())
except PermissionError:
    print('rdwr refused')
\"",
        link = link.display()
    );
    let out = run_unotify(&["run", "--hostname", "vbox", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "vbox\nrdwr refused\n", "real name: {real}");
}
