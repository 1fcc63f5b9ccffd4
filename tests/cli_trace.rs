//! `--trace-output FILE` (`-o`): traces in a file of their own, opened
//! before the program starts; bad input refused with 125.

mod common;

use common::{run_unotify as run, stderr_of as stderr};

/// `unotify run --trace openat -o TRACE ARGS...`.
fn traced_to(trace: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--trace", "openat", "-o", trace];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn traces_go_to_the_output_file_and_not_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let out = traced_to(trace.to_str().unwrap(), &["--", "cat", "/etc/hostname"]);
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
    let out = traced_to("/nonexistent/dir/t", &["--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("check the directory"),
        "{}",
        stderr(&out)
    );
}

/// The trace lines of `unotify run --trace CALLS -- ARGS`.
fn traces(calls: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["run", "--trace", calls, "--"];
    all.extend_from_slice(args);
    let out = run(&all);
    stderr(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("unotify: trace: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_open_shows_its_path_and_flags() {
    let lines = traces("openat", &["cat", "/etc/hostname"]);
    assert!(
        lines.iter().any(|l| l.starts_with("pid ")
            && l.contains(r#"openat(AT_FDCWD, "/etc/hostname", O_RDONLY"#)
            && l.ends_with("-> CONTINUE")),
        "{lines:#?}"
    );
}

#[test]
fn a_pipeline_shows_each_programs_argv() {
    let lines = traces("execve", &["sh", "-c", "ls / | wc -l"]);
    assert!(
        lines.iter().any(|l| l.contains(r#"["ls", "/"]"#)),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(r#"["wc", "-l"]"#)),
        "{lines:#?}"
    );
}

#[test]
fn a_connect_shows_the_destination_and_a_denial_its_errno() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let script = format!("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n");
    let lines = traces("socket,connect", &["/usr/bin/python3", "-c", &script]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, 0)")),
        "{lines:#?}"
    );
    let dest = format!(", 127.0.0.1:{port}, 16) -> CONTINUE");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("connect(") && l.ends_with(&dest)),
        "{lines:#?}"
    );
    // A refusal shows the errno by name.
    let out = run(&[
        "run",
        "--deny-path",
        "/etc/hostname",
        "--trace",
        "openat",
        "--",
        "cat",
        "/etc/hostname",
    ]);
    assert!(
        stderr(&out)
            .lines()
            .any(|l| l.contains(r#""/etc/hostname""#) && l.ends_with("-> ERRNO(EACCES)")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn curl_to_a_local_server_shows_its_socket_and_destination() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    // Answers one request, so curl ends at once.
    let answer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut c, _)) = server.accept() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let url = format!("http://127.0.0.1:{port}/");
    let lines = traces("socket,connect", &["curl", "-s", "-m", "5", &url]);
    answer.join().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("socket(AF_INET, SOCK_STREAM")
                || l.contains(" socket(AF_INET, SOCK_STREAM")),
        "{lines:#?}"
    );
    let dest = format!(", 127.0.0.1:{port}, 16) -> CONTINUE");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("connect(") && l.ends_with(&dest)),
        "{lines:#?}"
    );
}
