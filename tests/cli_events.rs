//! `unotify run` tells its user, once, when a rule fires (the memory kill,
//! the first fork refused at -P, the first destination refused, the first
//! denied path, an exec refused by --exec-deny), and `--summary` counts
//! them at exit. The events come from the library's observer
//! (`SandboxBuilder::observe`).

mod common;

use std::process::Output;

use common::{run_unotify as run, stderr_of as stderr};

/// Lines of stderr that start with `unotify: ` and contain `needle`.
fn told(out: &Output, needle: &str) -> usize {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("unotify: ") && l.contains(needle))
        .count()
}

#[test]
fn a_memory_kill_is_told() {
    let out = run(&[
        "run",
        "-m",
        "64M",
        "--",
        "python3",
        "-c",
        "x = bytearray(256 << 20)",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        told(&out, "killed: memory limit 64 MiB exceeded"),
        1,
        "{}",
        stderr(&out)
    );
}

/// Under `-P 2`: one child that stays, then three forks refused.
const FORK_THREE_OVER: &str = r#"
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    pid_t stay = fork();
    if (stay == 0) { sleep(1); _exit(0); }
    int refused = 0;
    for (int i = 0; i < 3; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p < 0) refused++; else waitpid(p, 0, 0);
    }
    waitpid(stay, 0, 0);
    printf("%d\n", refused);
    return 0;
}
"#;

#[test]
fn the_first_fork_refused_is_told_once_and_counted() {
    let exe = common::build_c("fork_three_over", FORK_THREE_OVER, &[]);
    let out = run(&["run", "-P", "2", "--summary", "--", exe.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");
    let err = stderr(&out);
    assert_eq!(told(&out, "process limit 2 reached"), 1, "{err}");
    assert_eq!(told(&out, "summary: 3 forks refused"), 1, "{err}");
}

#[test]
fn the_first_refused_destination_is_told() {
    let script = "import socket\n\
                  for port in (81, 82):\n\
                  \x20   s = socket.socket()\n\
                  \x20   s.connect_ex(('127.0.0.2', port))\n";
    let out = run(&[
        "run",
        "--net-allow",
        "127.0.0.1:1",
        "--summary",
        "--",
        "python3",
        "-c",
        script,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(told(&out, "refused: connect to 127.0.0.2:81"), 1, "{err}");
    assert_eq!(told(&out, "127.0.0.2:82"), 0, "{err}");
    assert_eq!(
        told(&out, "summary: 2 network destinations refused"),
        1,
        "{err}"
    );
}

#[test]
fn the_first_denied_path_is_told() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    let path = secret.path().to_str().unwrap();
    let script = format!("cat {path}; cat {path}; true");
    let out = run(&[
        "run",
        "--deny-path",
        path,
        "--summary",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let err = stderr(&out);
    assert_eq!(told(&out, &format!("denied: openat of {path}")), 1, "{err}");
    assert_eq!(
        told(&out, "summary: 2 calls refused on denied paths"),
        1,
        "{err}"
    );
    // A failure of the kernel's own (here ENOENT) is not told.
    let out = run(&[
        "run",
        "--deny-path",
        path,
        "--",
        "sh",
        "-c",
        "cat /nonexistent/x; true",
    ]);
    assert_eq!(told(&out, "denied:"), 0, "{}", stderr(&out));
}

#[test]
fn an_exec_refused_by_exec_deny_is_told_without_a_chmod_hint() {
    let out = run(&["run", "--exec-deny", "rm", "--", "rm", "-f", "/nonexistent"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert_eq!(
        told(&out, "refused: exec of `rm -f /nonexistent`"),
        1,
        "{err}"
    );
    assert!(!err.contains("chmod"), "{err}");
}

#[test]
fn nothing_is_told_when_no_rule_fires() {
    let out = run(&[
        "run",
        "-P",
        "64",
        "-m",
        "512M",
        "--deny-path",
        "/etc/shadow",
        "--",
        "sh",
        "-c",
        "cat /etc/hostname >/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}
