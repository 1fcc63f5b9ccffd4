//! `unotify run` refuses the mistakes that would otherwise pass silently
//! (exit 125, saying what to do): a denied path that does not exist, an
//! ambiguous IPv6 network rule, a memory limit below a page, conflicting
//! rules (naming the call and the flags), and misspelt flags, subcommands,
//! system calls and errnos (with a did-you-mean).

mod common;

use std::process::Output;

use common::{run_unotify as run, stderr_of as stderr};

/// Asserts `unotify`'s own refusal: exit 125, nothing run, and each of
/// `needles` in the message.
fn refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(125), "stderr:\n{err}");
    assert!(err.starts_with("unotify: "), "stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in:\n{err}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn a_denied_path_that_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("secrte");
    let typo_s = typo.to_str().unwrap();
    refused(
        &run(&["run", "--deny-path", typo_s, "--", "echo", "ran"]),
        &["does not exist", "--deny-path-future"],
    );
    // `--deny-path=~/.ssh`: the shell leaves the `~` alone.
    refused(
        &run(&["run", "--deny-path=~/.unotify-no-such", "--", "echo", "ran"]),
        &["`~`", "$HOME/.unotify-no-such"],
    );
}

#[test]
fn a_future_path_is_denied_once_created() {
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("later");
    let later_s = later.to_str().unwrap();
    let script = format!("echo secret > {later_s}; cat {later_s}");
    let out = run(&[
        "run",
        "--deny-path-future",
        later_s,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_ne!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));
    // Control: without the rule the script prints it.
    let out = run(&["run", "--", "sh", "-c", &script]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secret\n");
}

#[test]
fn an_ipv6_rule_that_reads_as_a_port_is_refused() {
    refused(
        &run(&["run", "--net-allow", "::1:80", "--", "true"]),
        &["[::1]:80", "::1:80/128"],
    );
    refused(
        &run(&["run", "--net-deny", "tcp://2001:db8::1:443", "--", "true"]),
        &["[2001:db8::1]:443"],
    );
    // The unambiguous forms run.
    for spec in ["[::1]:80", "::1:80/128", "::1", "fe80::1"] {
        let out = run(&["run", "--net-allow", spec, "--", "true"]);
        assert_eq!(out.status.code(), Some(0), "{spec}: {}", stderr(&out));
    }
}

#[test]
fn a_memory_limit_below_a_page_is_refused() {
    refused(&run(&["run", "-m", "512", "--", "true"]), &["-m 512M"]);
    refused(&run(&["run", "-m", "0", "--", "true"]), &["page"]);
    let out = run(&["run", "-m", "4096K", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn conflicting_rules_name_the_call_and_the_flags() {
    refused(
        &run(&[
            "run",
            "--deny",
            "connect",
            "--net-allow",
            "127.0.0.1:80",
            "--",
            "true",
        ]),
        &["`connect`", "--deny connect", "--net-allow"],
    );
    refused(
        &run(&["run", "--deny", "execve", "--exec-deny", "rm", "--", "true"]),
        &["`execve`", "--deny execve", "--exec-deny"],
    );
    let out = run(&[
        "run",
        "--trace",
        "socket",
        "--net-allow",
        "127.0.0.1:80",
        "--",
        "true",
    ]);
    refused(&out, &["`socket`", "--trace socket", "--net-allow"]);
    assert!(!stderr(&out).contains("`42`"));
}

#[test]
fn misspellings_get_a_did_you_mean() {
    refused(
        &run(&["run", "--trac", "openat", "--", "true"]),
        &["--trace"],
    );
    refused(&run(&["rnu", "--", "true"]), &["'run'"]);
    refused(&run(&["chek"]), &["'check'"]);
    refused(
        &run(&["run", "--trace", "opnat", "--", "true"]),
        &["did you mean `openat`"],
    );
    refused(
        &run(&["run", "--trace", "fstatat", "--", "true"]),
        &["did you mean `newfstatat`"],
    );
    refused(
        &run(&["run", "--deny", "openat=EACCESS", "--", "true"]),
        &["did you mean EACCES"],
    );
}

/// Tries to open `argv[1]` 20 times each by open, openat and openat2, and
/// prints how many opens got it, then the errnos of one open and one
/// openat of `argv[2]` (a file no rule denies).
const DENY_AND_DENY_PATH_C: &str = r#"
#include <linux/openat2.h>
int main(int argc, char **argv) {
    int got = 0;
    for (int i = 0; i < 20; i++) {
        struct open_how how = { .flags = O_RDONLY };
        long fds[3] = {
            sys3(SYS_open, (long)argv[1], O_RDONLY, 0),
            sys3(SYS_openat, AT_FDCWD, (long)argv[1], O_RDONLY),
            syscall(SYS_openat2, AT_FDCWD, argv[1], &how, sizeof how),
        };
        for (int k = 0; k < 3; k++)
            if (fds[k] >= 0) { got++; close(fds[k]); }
    }
    long o = sys3(SYS_open, (long)argv[2], O_RDONLY, 0);
    long oa = sys3(SYS_openat, AT_FDCWD, (long)argv[2], O_RDONLY);
    dprintf(1, "%d %ld %ld\n", got, o < 0 ? -o : 0, oa < 0 ? -oa : 0);
    return 0;
}
"#;

/// `--deny SYSCALL` and `--deny-path` on the calls path denial decides: the
/// `--deny` wins (the call fails in the filter with its errno, before the
/// supervisor sees it), and path denial still holds on every other call.
#[test]
fn deny_of_a_call_path_denial_decides_wins_and_the_path_stays_denied() {
    let src = format!("{}{}", common::C_PRELUDE, DENY_AND_DENY_PATH_C);
    let exe = common::build_c("deny_and_deny_path", &src, &["-static"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let free = dir.path().join("free");
    std::fs::write(&secret, "s").unwrap();
    std::fs::write(&free, "f").unwrap();
    let out = run(&[
        "run",
        "--deny",
        "openat=ENOSYS",
        "--deny-path",
        secret.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        secret.to_str().unwrap(),
        free.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = common::stdout_of(&out);
    let nums: Vec<i64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    // No open of the denied file got through, by any of the three calls.
    assert_eq!(
        nums[0], 0,
        "opens of the denied path that got through: {text}"
    );
    // `open` of a free file runs (path denial lets it through) ...
    assert_eq!(nums[1], 0, "{text}");
    // ... and `openat` fails with --deny's errno, not path denial's answer.
    assert_eq!(nums[2], i64::from(libc::ENOSYS), "{text}");
}
