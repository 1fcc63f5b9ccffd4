//! The audit log belongs to the supervisor: opened before the program
//! starts, its path denied to the program by any name (attack test);
//! `--audit -` writes to stdout; records carry a schema version and a
//! timestamp.

mod common;

use common::{stderr_of as stderr, stdout_of as stdout, unotify};

/// The program empties the audit log, then tries 4 ways, 4 times each, to
/// append a forged record; returns how many forged lines got in.
fn forged_lines(dir: &std::path::Path) -> usize {
    let script = r#"
true > a.jsonl 2>/dev/null
for i in 1 2 3 4; do
  echo '{"forged":1}' >> a.jsonl
  echo '{"forged":1}' >> ./sub/../a.jsonl
  ln -sf "$PWD/a.jsonl" link$i 2>/dev/null; echo '{"forged":1}' >> link$i
  ln "$PWD/a.jsonl" hard$i 2>/dev/null; echo '{"forged":1}' >> hard$i
done 2>/dev/null
true
"#;
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let out = unotify()
        .current_dir(dir)
        .args(["run", "--audit", "a.jsonl", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = std::fs::read_to_string(dir.join("a.jsonl")).unwrap();
    // (The shell's own exec record quotes the script: count whole lines.)
    let forged = log.lines().filter(|l| *l == r#"{"forged":1}"#).count();
    assert!(
        log.contains("\"syscall\":\"execve\""),
        "{forged} forged; the log was emptied:\n{log}"
    );
    forged
}

#[test]
fn the_program_cannot_forge_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(forged_lines(dir.path()), 0);
}

#[test]
fn audit_dash_is_stdout_and_records_have_a_schema_and_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let out = unotify()
        .current_dir(dir.path())
        .args(["run", "--audit", "-", "--", "cat", "/etc/hostname"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!dir.path().join("-").exists(), "a file named - was written");
    let text = stdout(&out);
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(!records.is_empty(), "{text}");
    for r in &records {
        assert_eq!(r["schema"], 2, "{r}");
        assert!(r["time"].as_f64().is_some_and(|t| t > 1.0e9), "{r}");
    }
}

#[test]
fn records_show_the_errno_a_call_fails_with() {
    let out = unotify()
        .args([
            "run",
            "--exec-deny",
            "forbidden",
            "--audit",
            "-",
            "--",
            "sh",
            "-c",
            "W=forbid; /bin/echo ${W}den; /bin/echo fine",
        ])
        .output()
        .unwrap();
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let exec_of = |word: &str| {
        records
            .iter()
            .find(|r| {
                r["syscall"] == "execve" && r["argv"] == serde_json::json!(["/bin/echo", word])
            })
            .unwrap_or_else(|| panic!("no exec of {word}: {}", stdout(&out)))
    };
    assert_eq!(exec_of("forbidden")["errno"], "EPERM");
    assert_eq!(exec_of("fine")["errno"], serde_json::Value::Null);
}

/// The JSON records of an `--audit -` run's stdout.
fn records_of(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

/// The first record of `syscall` whose `key` is `value`.
fn find<'a>(
    records: &'a [serde_json::Value],
    syscall: &str,
    key: &str,
    value: &serde_json::Value,
) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["syscall"] == syscall && &r[key] == value)
        .unwrap_or_else(|| {
            let all: Vec<String> = records.iter().map(|r| r.to_string()).collect();
            panic!("no {syscall} with {key}={value} in:\n{}", all.join("\n"))
        })
}

/// Every schema 2 field is present in every record.
fn all_fields(records: &[serde_json::Value]) {
    for r in records {
        for key in [
            "schema",
            "time",
            "syscall",
            "category",
            "pid",
            "parent_pid",
            "path",
            "destination",
            "host",
            "port",
            "size",
            "argv",
            "outcome",
            "denied",
            "errno",
            "return",
            "rule",
            "verdict",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
}

#[test]
fn a_denied_path_names_the_path_the_errno_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let secret = secret.to_str().unwrap();
    let out = unotify()
        .args([
            "run",
            "--deny-path",
            secret,
            "--audit",
            "-",
            "--",
            "cat",
            secret,
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = records_of(&out);
    all_fields(&records);
    let r = find(&records, "openat", "path", &secret.into());
    assert_eq!(r["outcome"], "refused", "{r}");
    assert_eq!(r["denied"], true, "{r}");
    assert_eq!(r["errno"], "EACCES", "{r}");
    assert_eq!(r["rule"], format!("deny-path {secret}"), "{r}");
    assert_eq!(r["verdict"], serde_json::Value::Null, "{r}");
    // An allowed open: performed on the program's behalf, no rule.
    let r = find(&records, "openat", "outcome", &"performed".into());
    assert_eq!(r["denied"], false, "{r}");
    assert_eq!(r["errno"], serde_json::Value::Null, "{r}");
    assert!(
        r["path"].as_str().is_some_and(|p| p.starts_with('/')),
        "{r}"
    );
}

#[test]
fn a_failed_path_probe_is_a_failure_not_a_refusal() {
    let out = unotify()
        .env("PATH", "/nonexistent-probe-dir:/usr/bin:/bin")
        .args(["run", "--audit", "-", "--", "sh", "-c", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = records_of(&out);
    all_fields(&records);
    let probe = find(
        &records,
        "execve",
        "path",
        &"/nonexistent-probe-dir/sh".into(),
    );
    assert_eq!(probe["outcome"], "failed", "{probe}");
    assert_eq!(probe["denied"], false, "{probe}");
    assert_eq!(probe["errno"], "ENOENT", "{probe}");
    assert_eq!(probe["rule"], serde_json::Value::Null, "{probe}");
    assert_eq!(probe["verdict"], serde_json::Value::Null, "{probe}");
    assert_eq!(
        probe["argv"],
        serde_json::json!(["sh", "-c", "true"]),
        "{probe}"
    );
    let ran = find(&records, "execve", "outcome", &"continued".into());
    assert_eq!(ran["denied"], false, "{ran}");
    assert_eq!(ran["errno"], serde_json::Value::Null, "{ran}");
}

#[test]
fn limits_exec_deny_and_allow_lists_name_their_rules() {
    let out = unotify()
        .args([
            "run",
            "-P",
            "1",
            "--audit",
            "-",
            "--",
            "/bin/sh",
            "-c",
            "true & wait",
        ])
        .output()
        .unwrap();
    let records = records_of(&out);
    let r = find(&records, "clone", "denied", &true.into());
    assert_eq!(r["rule"], "limit max-processes 1", "{r}");
    assert_eq!(r["errno"], "EAGAIN", "{r}");
    assert_eq!(r["outcome"], "refused", "{r}");

    let out = unotify()
        .args([
            "run",
            "--exec-deny",
            "rm",
            "--audit",
            "-",
            "--",
            "/bin/sh",
            "-c",
            "W=r; /bin/${W}m -f /nonexistent-x; true",
        ])
        .output()
        .unwrap();
    let records = records_of(&out);
    let r = find(&records, "execve", "path", &"/bin/rm".into());
    assert_eq!(r["rule"], "exec-deny rm", "{r}");
    assert_eq!(r["errno"], "EPERM", "{r}");
    assert_eq!(r["denied"], true, "{r}");
    assert_eq!(r["verdict"], "deny", "{r}");

    // A file outside the allow lists, refused by the supervisor's open.
    let dir = tempfile::tempdir().unwrap();
    let denied = dir.path().join("d");
    std::fs::write(&denied, "").unwrap();
    let out = unotify()
        .args([
            "run",
            "--fs-system",
            "-r",
            dir.path().to_str().unwrap(),
            "--deny-path",
            denied.to_str().unwrap(),
            "--audit",
            "-",
            "--",
            "cat",
            "/etc/hostname",
        ])
        .output()
        .unwrap();
    let records = records_of(&out);
    let r = find(&records, "openat", "path", &"/etc/hostname".into());
    assert_eq!(r["rule"], "fs-read allow list", "{r}");
    assert_eq!(r["errno"], "EACCES", "{r}");
    assert_eq!(r["denied"], true, "{r}");
}

#[test]
fn destinations_are_readable_for_every_family() {
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p4 = v4.local_addr().unwrap().port();
    let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
    let p6 = v6.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let script = format!(
        r#"
import socket
def attempt(f):
    try: f()
    except OSError: pass
attempt(lambda: socket.create_connection(("127.0.0.1", {p4})))
attempt(lambda: socket.create_connection(("127.0.0.1", 9)))
attempt(lambda: socket.create_connection(("::1", {p6})))
attempt(lambda: socket.socket(socket.AF_UNIX).connect("{sock}"))
attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"x", "\0unotify-audit-test"))
attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).sendto(b"", (0, 0)))
"#,
        sock = sock.display()
    );
    let allow4 = format!("127.0.0.1:{p4}");
    let allow6 = format!("[::1]:{p6}");
    let allow_unix = format!("unix:{}", sock.display());
    let out = unotify()
        .args([
            "run",
            "--net-allow",
            &allow4,
            "--net-allow",
            &allow6,
            "--net-allow",
            &allow_unix,
            "--audit",
            "-",
            "--",
            "/usr/bin/python3",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = records_of(&out);
    all_fields(&records);
    let r = find(&records, "connect", "destination", &allow4.clone().into());
    assert_eq!(r["rule"], format!("net-allow {allow4}"), "{r}");
    assert_eq!(r["host"], "127.0.0.1", "{r}");
    assert_eq!(r["port"], p4, "{r}");
    assert_eq!(r["outcome"], "performed", "{r}");
    assert_eq!(r["return"], 0, "{r}");
    assert_eq!(r["denied"], false, "{r}");
    let r = find(&records, "connect", "destination", &"127.0.0.1:9".into());
    assert_eq!(r["rule"], "net-allow list: no rule matches", "{r}");
    assert_eq!(r["errno"], "ECONNREFUSED", "{r}");
    assert_eq!(r["denied"], true, "{r}");
    let r = find(&records, "connect", "destination", &allow6.clone().into());
    assert_eq!(r["rule"], format!("net-allow {allow6}"), "{r}");
    assert_eq!(r["host"], "::1", "{r}");
    let r = find(&records, "connect", "destination", &allow_unix.into());
    assert_eq!(r["denied"], false, "{r}");
    let r = find(
        &records,
        "sendto",
        "destination",
        &"unix:@unotify-audit-test".into(),
    );
    assert_eq!(r["denied"], true, "{r}");
    assert_eq!(r["errno"], "ECONNREFUSED", "{r}");
    let r = find(
        &records,
        "sendto",
        "destination",
        &"netlink:pid=0,groups=0x0".into(),
    );
    assert_eq!(r["denied"], false, "{r}");
}

/// The library's audit log: a connect the network rules allow but the
/// policy callback denies reads as refused by the callback, with the rule
/// it named; one it allows names the network rule.
#[test]
fn a_callback_refusal_names_the_callback_and_an_allowed_call_the_network_rule() {
    use unotify::policy::{PolicyContext, SyscallEvent, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p_open = open.local_addr().unwrap().port();
    let shut = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p_shut = shut.local_addr().unwrap().port();
    let policy = unotify::net::NetPolicy::from_specs(
        &[format!("127.0.0.1:{p_open}"), format!("127.0.0.1:{p_shut}")],
        &[],
        &[],
    )
    .unwrap();
    let sandbox = unotify::Sandbox::builder()
        .network(policy)
        .audit(&log)
        .policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.port == Some(p_shut) {
                cx.decided_by("no connections to the shut port");
                Verdict::DenyWith(libc::ECONNREFUSED)
            } else {
                Verdict::Allow
            }
        })
        .build()
        .unwrap();
    let script = format!(
        "import socket\nfor p in ({p_open}, {p_shut}):\n    try: socket.create_connection(('127.0.0.1', p))\n    except OSError: pass\n"
    );
    let mut cmd = unotify::Command::new("/usr/bin/python3");
    cmd.args(["-c", &script]);
    let status = sandbox.run(&mut cmd).unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    all_fields(&records);
    let r = find(&records, "connect", "port", &p_open.into());
    assert_eq!(r["outcome"], "performed", "{r}");
    assert_eq!(r["rule"], format!("net-allow 127.0.0.1:{p_open}"), "{r}");
    assert_eq!(r["verdict"], "allow", "{r}");
    let r = find(&records, "connect", "port", &p_shut.into());
    assert_eq!(r["outcome"], "refused", "{r}");
    assert_eq!(r["denied"], true, "{r}");
    assert_eq!(r["errno"], "ECONNREFUSED", "{r}");
    assert_eq!(r["rule"], "no connections to the shut port", "{r}");
    assert_eq!(r["verdict"], "deny", "{r}");
}
