//! `unotify run` at an interactive terminal: the sandboxed program gets the
//! terminal's foreground and can read from it (no SIGTTIN stop).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn an_interactive_program_reads_the_terminal() {
    // `script` runs the command on a fresh pseudo-terminal whose foreground
    // group is unotify's, and copies our stdin to it.
    let inner = format!(
        "{} run -- /bin/sh -c 'read x; echo got=$x'",
        env!("CARGO_BIN_EXE_unotify")
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run script(1) from util-linux");
    std::thread::sleep(Duration::from_millis(300));
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the program did not finish: it could not read the terminal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("got=hello"), "output:\n{out}");
}
