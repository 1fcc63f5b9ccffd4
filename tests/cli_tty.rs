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

/// Ctrl-Z at the terminal stops the sandboxed program (its group holds the
/// foreground); `unotify` must then stop too, so that the shell gets the
/// terminal back, and `fg` must continue both. An interactive bash on a
/// pseudo-terminal (`script`) runs a program that stops itself with
/// SIGTSTP, as Ctrl-Z would, then gets `fg`.
#[test]
fn a_stopped_program_stops_unotify_and_fg_continues_it() {
    let script_input = format!(
        "{} run -- /bin/sh -c 'kill -TSTP $$; echo resumed-ok'\nfg\necho fg-status=$?\nexit\n",
        env!("CARGO_BIN_EXE_unotify")
    );
    let mut child = Command::new("script")
        .args(["-qec", "bash --norc --noprofile -i", "/dev/null"])
        .env_remove("RUST_LOG")
        .env("PS1", "$ ")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run script(1) from util-linux");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(script_input.as_bytes()).unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            let mut out = String::new();
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            panic!("the shell never got the terminal back (unotify kept waiting):\n{out}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        out.contains("Stopped"),
        "the shell did not see the job stop:\n{out}"
    );
    assert!(
        out.contains("resumed-ok"),
        "fg did not continue the program:\n{out}"
    );
    assert!(out.contains("fg-status=0"), "output:\n{out}");
}
