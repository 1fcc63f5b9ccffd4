//! `--trace-output FILE` (`-o`): traces in a file of their own, opened
//! before the program starts; bad input refused with 125.

mod common;

use common::{run_unotify as run, stderr_of as stderr};

#[test]
fn traces_go_to_the_output_file_and_not_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let out = run(&[
        "run",
        "--trace",
        "openat",
        "-o",
        trace.to_str().unwrap(),
        "--",
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for l in lines {
        assert!(l.starts_with("pid ") && l.contains(" openat("), "{l}");
    }
}

#[test]
fn bad_trace_outputs_are_refused() {
    let out = run(&["run", "-o", "/tmp/x", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--trace"), "{}", stderr(&out));
    let out = run(&[
        "run",
        "--trace",
        "openat",
        "-o",
        "/nonexistent/dir/t",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("check the directory"),
        "{}",
        stderr(&out)
    );
}
