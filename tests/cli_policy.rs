//! The policy flags of `unotify run`: network rules, process and memory
//! limits, as a user at a shell would use them.

mod common;

use std::net::TcpListener;

use common::{run_unotify as run, stderr_of as stderr};

fn assert_refused(args: &[&str], needle: &str) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(125),
        "args {args:?}, stderr:\n{err}"
    );
    assert!(err.starts_with("unotify: "), "stderr:\n{err}");
    assert!(
        err.contains(needle),
        "expected {needle:?} in stderr:\n{err}"
    );
}

#[test]
fn malformed_policy_flags_exit_125_and_quote_the_rule() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--net-allow", "tcp://127.0.0.1:0", "--", "true"][..],
            "127.0.0.1:0",
        ),
        (
            &["run", "--net-allow", "127.0.0.1:70000", "--", "true"][..],
            "70000",
        ),
        (
            &["run", "--net-allow", "ftp://127.0.0.1", "--", "true"][..],
            "ftp://127.0.0.1",
        ),
        (
            &["run", "--net-allow", "10.0.0.0/33", "--", "true"][..],
            "10.0.0.0/33",
        ),
        (
            &["run", "--net-deny", "localhost", "--", "true"][..],
            "localhost",
        ),
        (
            &[
                "run",
                "--net-allow",
                "127.0.0.1",
                "--net-deny",
                "127.0.0.2",
                "--",
                "true",
            ][..],
            "deny",
        ),
        (&["run", "--net-deny-bind", "0", "--", "true"][..], "0"),
        (&["run", "-m", "12Q", "--", "true"][..], "12Q"),
        (&["run", "-m", "", "--", "true"][..], "max-memory"),
        (&["run", "-P", "0", "--", "true"][..], "at least 1"),
        (&["run", "-P", "many", "--", "true"][..], "many"),
    ];
    for (args, needle) in cases {
        assert_refused(args, needle);
    }
}

const CONNECT_C: &str = r#"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(atoi(argv[i]));
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        int r = connect(s, (struct sockaddr *)&a, sizeof a);
        printf("%s %d\n", argv[i], r == 0 ? 0 : errno);
        close(s);
    }
    return 0;
}
"#;

#[test]
fn net_allow_lets_through_only_the_allowed_port() {
    let client = common::build_c("cli_connect", CONNECT_C, &[]);
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = TcpListener::bind("127.0.0.1:0").unwrap();
    denied.set_nonblocking(true).unwrap();
    let (pa, pd) = (
        allowed.local_addr().unwrap().port().to_string(),
        denied.local_addr().unwrap().port().to_string(),
    );
    let rule = format!("127.0.0.1:{pa}");
    let out = run(&[
        "run",
        "--net-allow",
        &rule,
        "--",
        client.to_str().unwrap(),
        &pa,
        &pd,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(
        text.contains(&format!("{pa} 0\n")),
        "allowed connect failed:\n{text}"
    );
    assert!(
        text.contains(&format!("{pd} {}\n", libc::ECONNREFUSED)),
        "denied connect not refused:\n{text}"
    );
    assert!(allowed.accept().is_ok());
    assert!(
        denied.accept().is_err(),
        "the denied listener got a connection"
    );
}

#[test]
fn process_limit_makes_a_fork_fail_and_a_larger_one_lets_it_run() {
    let script = "sleep 0.3 & sleep 0.3 & sleep 0.3 & wait";
    let out = run(&["run", "-P", "3", "--", "/bin/sh", "-c", script]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "three children under -P 3 should not all start"
    );
    let out = run(&["run", "--max-processes", "4", "--", "/bin/sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
}

const ALLOC_C: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    size_t n = (size_t)atol(argv[1]) << 20;
    char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 3;
    memset(p, 1, n);
    return 0;
}
"#;

#[test]
fn memory_limit_kills_an_oversized_program() {
    let alloc = common::build_c("cli_alloc", ALLOC_C, &[]);
    let out = run(&["run", "-m", "64M", "--", alloc.to_str().unwrap(), "256"]);
    assert_eq!(out.status.code(), Some(137), "stderr:\n{}", stderr(&out));
    let out = run(&[
        "run",
        "--max-memory",
        "512M",
        "--",
        alloc.to_str().unwrap(),
        "128",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
}

#[test]
fn deny_path_refuses_the_file_and_audit_records_json_events() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let public = dir.path().join("public");
    std::fs::write(&secret, "top-secret").unwrap();
    std::fs::write(&public, "hello").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let script = format!(
        "cat {}; echo rc=$?; cat {}",
        secret.display(),
        public.display()
    );
    let out = run(&[
        "run",
        "--deny-path",
        secret.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(
        !text.contains("top-secret"),
        "denied content was read:\n{text}"
    );
    assert!(
        text.contains("rc=1") && text.contains("hello"),
        "stdout:\n{text}"
    );
    assert!(
        stderr(&out).contains("Permission denied"),
        "stderr:\n{}",
        stderr(&out)
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l}: {e}"))
        })
        .collect();
    assert!(!events.is_empty());
    for e in &events {
        for key in ["syscall", "category", "pid", "verdict", "denied"] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
    }
    assert!(
        events.iter().any(|e| e["syscall"] == "execve"),
        "no exec event in:\n{log}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["syscall"] == "openat" && e["denied"] == true),
        "the denied open is not recorded as denied:\n{log}"
    );
}

#[test]
fn audit_to_an_unwritable_place_exits_125() {
    assert_refused(
        &["run", "--audit", "/nonexistent-dir/x.jsonl", "--", "true"],
        "/nonexistent-dir/x.jsonl",
    );
}

#[test]
fn exec_deny_refuses_execs_naming_the_word_and_audits_their_argv() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // The shell's own argv must not contain the word: it is built from $W.
    let out = common::unotify()
        .env("W", "forbid")
        .args([
            "run",
            // A substring: `forbidden-word` is not the word `forbidden`.
            "--exec-deny-substring",
            "forbidden",
            "--audit",
            audit.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "/bin/echo ${W}den-word; echo rc=$?; /bin/echo allowed-word",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(
        !text.contains("forbidden-word"),
        "a denied exec ran:\n{text}"
    );
    assert!(text.contains("rc=126"), "the shell saw no refusal:\n{text}");
    assert!(
        text.contains("allowed-word"),
        "an allowed exec did not run:\n{text}"
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let exec_of = |word: &str, verdict: &str| {
        events.iter().any(|e| {
            e["syscall"] == "execve"
                && e["argv"] == serde_json::json!(["/bin/echo", word])
                && e["verdict"] == verdict
        })
    };
    assert!(
        exec_of("forbidden-word", "deny"),
        "no denied exec with its argv in:\n{log}"
    );
    assert!(
        exec_of("allowed-word", "allow"),
        "no allowed exec with its argv in:\n{log}"
    );
}
