//! The supervisor's own fds under a program of many threads: it held a
//! pidfd per sandboxed thread that made a trapped call (1773 fds for 1500
//! threads), so under the usual soft `RLIMIT_NOFILE` of 1024 the trapped
//! calls of a JVM-sized program failed with `ESRCH`. It now holds pidfds
//! per process, and `unotify run` raises its soft limit to the hard one
//! while the program keeps the limit it was started with.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command as StdCommand, Stdio};

use common::build_c;

/// `threads N`: N threads each make one trapped open (`/dev/null` for
/// writing, which `--exec-deny` has made on the program's behalf) and
/// stay; prints `ok K` (the opens that worked), waits for a line on
/// stdin, then ends them.
const THREADS_C: &str = r#"#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static volatile int stop;
static long ok, done;
static void *run(void *x) {
    int f = open("/dev/null", O_WRONLY);
    if (f >= 0) { __atomic_fetch_add(&ok, 1, 0); close(f); }
    __atomic_fetch_add(&done, 1, 0);
    while (!stop) usleep(20000);
    return x;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]), made = 0;
    pthread_attr_t a; pthread_attr_init(&a); pthread_attr_setstacksize(&a, 65536);
    pthread_t *t = calloc(n, sizeof *t);
    for (int i = 0; i < n; i++) { if (pthread_create(&t[i], &a, run, 0)) break; made++; }
    while (__atomic_load_n(&done, 0) < made) usleep(10000);
    printf("ok %ld of %d\n", ok, made);
    fflush(stdout);
    char line[8];
    if (!fgets(line, sizeof line, stdin)) {}
    stop = 1;
    for (int i = 0; i < made; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

const THREADS: usize = 1200;

/// Starts `sh -c 'ulimit -Sn SOFT; exec unotify ARGS'` with stdin and
/// stdout piped; returns it and its first line of output.
fn start(soft: u32, args: &str) -> (std::process::Child, String) {
    let script = format!(
        "ulimit -Sn {soft} && exec {} {args}",
        env!("CARGO_BIN_EXE_unotify")
    );
    let mut child = StdCommand::new("sh")
        .args(["-c", &script])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

fn finish(mut child: std::process::Child) {
    child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    assert!(child.wait().unwrap().success());
}

/// 1200 threads, each with a trapped call, under process tracking (`-P`,
/// which registers every task that makes one): every call works, and the
/// supervisor holds far fewer fds than there are threads (before: one
/// pidfd per thread, 1473 fds).
#[test]
fn thread_heavy_program_keeps_supervisor_fds_bounded() {
    let exe = build_c("many_threads", THREADS_C, &["-pthread"]);
    let (child, line) = start(
        4096,
        &format!("run -P 100 --exec-deny x -- {} {THREADS}", exe.display()),
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .count();
    finish(child);
    assert_eq!(line, format!("ok {THREADS} of {THREADS}"));
    assert!(
        fds < THREADS / 2,
        "the supervisor holds {fds} fds for {THREADS} threads"
    );
}

/// `unotify run` raises its soft limit to the hard one; the program runs
/// with the limit `unotify` was started with.
#[test]
fn the_supervisor_raises_its_fd_limit_and_the_program_keeps_its_own() {
    let (child, line) = start(1000, "run -- sh -c 'ulimit -Sn; read x'");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    finish(child);
    assert_eq!(line, "1000", "the program's soft limit");
    let files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let (soft, hard) = (files[3], files[4]);
    assert_eq!(soft, hard, "the supervisor's soft limit: {limits}");
    assert_ne!(soft, "1000");
}
