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
        assert_eq!(r["schema"], 1, "{r}");
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
