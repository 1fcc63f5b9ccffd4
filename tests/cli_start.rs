//! What the `unotify` command's own entry point (`src/sys/cli_entry.rs`,
//! in place of the Rust runtime's start-up) must keep of the runtime's:
//! closed standard descriptors opened on `/dev/null`, and `SIGPIPE`
//! ignored.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

/// With its stdin closed, `unotify` opens `/dev/null` there first thing,
/// as a Rust program does: the program, which inherits stdin, reads from
/// `/dev/null` and not from a file `unotify` happened to open on fd 0
/// (the mount table, a Landlock rule's directory) and closed on exec.
#[test]
fn a_closed_stdin_is_dev_null() {
    let out = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            r#"exec "$0" run -- /bin/sh -c 'readlink /proc/self/fd/0 || echo closed' <&-"#,
            env!("CARGO_BIN_EXE_unotify"),
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run sh");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/dev/null");
}

/// `SIGPIPE` is ignored: `unotify check` writing to a pipe nobody reads
/// gets `EPIPE` and ends with its own status, not killed by the signal.
#[test]
fn a_closed_pipe_does_not_kill_unotify() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let status = common::unotify()
        .arg("check")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::null())
        .status()
        .expect("run unotify check");
    assert_eq!(status.signal(), None, "{status:?}");
    assert!(status.code().is_some(), "{status:?}");
}
