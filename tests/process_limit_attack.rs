//! Attacks on the process limit (`-P`) that go through its recount, run
//! under the `unotify` command as a user would; each program counts, from
//! inside, how many of its processes existed at once.
//!
//! - the supervisor short of file descriptors when a fork reaches the
//!   limit: the recount cannot read `/proc` or the cgroup, and must not
//!   take that for "no processes";
//! - forks that spend long in the kernel (a parent with tens of thousands
//!   of mappings): the child is in neither the tree nor the cgroup yet,
//!   and must still be counted;
//! - `--leave-daemons`, without which no cgroup counts a double-forked
//!   daemon: refused with `-P`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::{stderr_of as stderr, unotify};

/// Forks once, prints `ready`, waits for a line on stdin, then forks N children (each
/// sleeps 2 s) as fast as it can and prints `forked K`: K children, so
/// K + 1 processes at once.
const FORK_ON_CUE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = atoi(argv[1]), ok = 0;
    char line[16];
    /* A first fork, so that the supervisor knows this process before its
       file descriptors run out. */
    pid_t first = fork();
    if (first == 0) _exit(0);
    if (first < 0 || waitpid(first, 0, 0) != first) return 2;
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 2;
    for (int i = 0; i < n; i++) {
        pid_t k = fork();
        if (k == 0) { sleep(2); _exit(0); }
        if (k > 0) ok++;
    }
    printf("forked %d\n", ok);
    fflush(stdout);
    while (wait(0) > 0) {}
    return 0;
}
"#;

/// The lowest file descriptor number `pid` does not use: with its
/// `RLIMIT_NOFILE` at that, it can open nothing.
fn lowest_free_fd(pid: u32) -> u64 {
    let used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the supervisor's fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).expect("a free number")
}

#[test]
fn a_recount_that_cannot_read_refuses_the_fork() {
    let exe = common::build_c("fork_on_cue", FORK_ON_CUE, &[]);
    let _dog = common::watchdog(Duration::from_secs(60), "the fd-starved recount");
    let mut child = unotify()
        .args(["run", "-P", "3", "--timeout", "30s", "--"])
        .arg(&exe)
        .arg("10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unotify");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read ready");
    assert_eq!(line.trim(), "ready", "the program did not start");
    // From outside, as a host could: the supervisor can open no file.
    let limit = lowest_free_fd(child.id());
    let set = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", child.id()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("run prlimit");
    assert!(set.success(), "prlimit failed");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("cue the program");
    drop(stdin);
    line.clear();
    out.read_line(&mut line).expect("read the report");
    let result = child.wait_with_output().expect("wait for unotify");
    let forked: u32 = line
        .trim()
        .strip_prefix("forked ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no report: {line:?}, stderr {}", stderr(&result)));
    eprintln!(
        "-P 3, supervisor at RLIMIT_NOFILE {limit}: {forked} of 10 forks, {} processes at once",
        forked + 1
    );
    assert!(
        forked < 3,
        "{} processes at once under -P 3 with the supervisor out of file descriptors",
        forked + 1
    );
    assert!(
        stderr(&result).contains("cannot count the sandbox's processes"),
        "the failed recount was not told: {}",
        stderr(&result)
    );
}

/// `slow_forks LIMIT K`: K processes each make ~60000 mappings (so that a
/// fork copies them for many milliseconds), then all fork at once; each
/// child sleeps 3 s. Prints `at once N`: the processes of its group alive
/// once every fork returned (none has exited by then).
const SLOW_FORKS: &str = r#"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int in_group(void) {
    int n = 0;
    pid_t g = getpgrp();
    DIR *d = opendir("/proc");
    struct dirent *e;
    while ((e = readdir(d))) {
        int p = atoi(e->d_name);
        if (p > 0 && getpgid(p) == g) n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    int k = atoi(argv[1]);
    int go[2], rep[2];
    if (pipe(go) || pipe(rep)) return 2;
    for (int i = 0; i < k; i++) {
        pid_t p = fork();
        if (p < 0) { printf("setup fork failed\n"); return 2; }
        if (p == 0) {
            long pg = 4096;
            int n = 60000;
            char *m = mmap(0, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) _exit(2);
            for (int j = 0; j < n; j += 2) mprotect(m + j * pg, pg, PROT_READ);
            for (int j = 1; j < n; j += 2) m[j * pg] = 1;
            char c;
            if (write(rep[1], "r", 1) != 1 || read(go[0], &c, 1) != 1) _exit(2);
            pid_t q = fork();
            if (q == 0) { sleep(3); _exit(0); }
            c = q > 0 ? 'Y' : 'N';
            if (write(rep[1], &c, 1) != 1) _exit(2);
            sleep(4);
            _exit(0);
        }
    }
    char c;
    for (int i = 0; i < k; i++) if (read(rep[0], &c, 1) != 1) return 2;
    for (int i = 0; i < k; i++) if (write(go[1], "g", 1) != 1) return 2;
    int ok = 0;
    for (int i = 0; i < k; i++) { if (read(rep[0], &c, 1) != 1) return 2; if (c == 'Y') ok++; }
    printf("forked %d at once %d\n", ok, in_group());
    fflush(stdout);
    while (wait(0) > 0) {}
    return 0;
}
"#;

#[test]
fn forks_slow_in_the_kernel_count_until_their_child_exists() {
    let exe = common::build_c("slow_forks", SLOW_FORKS, &[]);
    let _dog = common::watchdog(Duration::from_secs(90), "the slow forks");
    // 1 + 6 processes before the slow forks: one slot left under -P 8.
    let (k, limit) = (6, 8);
    let mut peak = 0;
    for round in 0..3 {
        let out = unotify()
            .args(["run", "-P", &limit.to_string(), "--"])
            .arg(&exe)
            .arg(k.to_string())
            .output()
            .expect("start unotify");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at_once: u32 = text
            .trim()
            .rsplit_once("at once ")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| panic!("no report: {text:?}, stderr {}", stderr(&out)));
        eprintln!("round {round}: -P {limit}, {k} slow forks: {text:?}");
        peak = peak.max(at_once);
    }
    assert!(
        peak <= limit,
        "{peak} processes at once under -P {limit} (forks slow in the kernel)"
    );
}

/// `daemons N`: N times, a child calls `setsid` and forks a grandchild
/// (which sleeps 4 s) and exits. Prints `daemons D`: grandchildren made.
const DAEMONS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = atoi(argv[1]), made = 0;
    for (int i = 0; i < n; i++) {
        pid_t k = fork();
        if (k < 0) continue;
        if (k == 0) {
            setsid();
            pid_t g = fork();
            if (g == 0) { sleep(4); _exit(0); }
            _exit(g > 0 ? 0 : 1);
        }
        int st;
        waitpid(k, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) made++;
    }
    printf("daemons %d\n", made);
    return 0;
}
"#;

#[test]
fn leave_daemons_with_a_process_limit_is_refused() {
    let exe = common::build_c("daemons", DAEMONS, &[]);
    let _dog = common::watchdog(Duration::from_secs(60), "daemons under --leave-daemons");
    let out = unotify()
        .args(["run", "--leave-daemons", "-P", "4", "--"])
        .arg(&exe)
        .arg("20")
        .output()
        .expect("start unotify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let made: u32 = text
        .trim()
        .strip_prefix("daemons ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "--leave-daemons -P 4: exit {:?}, {made} daemons alive at once",
        out.status.code()
    );
    assert!(
        made < 4,
        "{made} detached daemons (+1 program) at once under -P 4"
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--leave-daemons"),
        "the refusal does not say what to do: {}",
        stderr(&out)
    );
}

#[test]
fn the_library_refuses_a_process_limit_without_cgroups() {
    let err = unotify::Sandbox::builder()
        .max_processes(4)
        .cgroups(false)
        .build()
        .expect_err("a process limit without cgroups");
    assert!(
        matches!(err, unotify::Error::InvalidConfig { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("cgroups(false)"), "{err}");
}
