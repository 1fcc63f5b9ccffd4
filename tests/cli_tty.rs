//! `unotify run` at an interactive terminal: the sandboxed program gets the
//! terminal's foreground and can read from it (no SIGTTIN stop), and job
//! control works (Ctrl-Z, `fg`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` under `script(1)`, on a fresh pseudo-terminal whose
/// foreground group is the command's, types `input` into it, and returns
/// the terminal's output once the command has ended; `Err` with what was
/// printed if it has not ended within `limit`.
fn on_a_terminal(command: &str, input: &str, limit: Duration) -> Result<String, String> {
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env_remove("RUST_LOG")
        .env("PS1", "$ ")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run script(1) from util-linux");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(input.as_bytes()).unwrap();
    let started = Instant::now();
    let ended = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    if ended {
        Ok(out)
    } else {
        Err(out)
    }
}

#[test]
fn an_interactive_program_reads_the_terminal() {
    let command = format!(
        "{} run -- /bin/sh -c 'read x; echo got=$x'",
        env!("CARGO_BIN_EXE_unotify")
    );
    let out = on_a_terminal(&command, "hello\n", Duration::from_secs(10)).unwrap_or_else(|out| {
        panic!("the program did not finish: it could not read the terminal\n{out}")
    });
    assert!(out.contains("got=hello"), "output:\n{out}");
}

/// Ctrl-Z at the terminal stops the sandboxed program (its group holds the
/// foreground); `unotify` must then stop too, so that the shell gets the
/// terminal back, and `fg` must continue both. An interactive bash runs a
/// program that stops itself with SIGTSTP, as Ctrl-Z would, then gets `fg`.
#[test]
fn a_stopped_program_stops_unotify_and_fg_continues_it() {
    let input = format!(
        "{} run -- /bin/sh -c 'kill -TSTP $$; echo resumed-ok'\nfg\necho fg-status=$?\nexit\n",
        env!("CARGO_BIN_EXE_unotify")
    );
    let out = on_a_terminal(
        "bash --norc --noprofile -i",
        &input,
        Duration::from_secs(15),
    )
    .unwrap_or_else(|out| {
        panic!("the shell never got the terminal back (unotify kept waiting):\n{out}")
    });
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

#[test]
fn a_terminal_program_works_under_a_work_directory() {
    // Under --workdir file-system ioctls stop (an allow list); terminal
    // ones (TCGETS, TIOCGWINSZ, ...) must still reach the terminal.
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "cd {} && {} run --workdir . -- /bin/sh -c 'stty -echo; stty size >/dev/null && echo stty-ok; \
         python3 -c \"import os; print(\\\"py-tty\\\", os.isatty(0), os.get_terminal_size().columns >= 0)\"; \
         read x; echo got=$x'",
        dir.path().display(),
        env!("CARGO_BIN_EXE_unotify")
    );
    let out = on_a_terminal(&command, "hello\n", Duration::from_secs(20))
        .unwrap_or_else(|out| panic!("the program did not finish\n{out}"));
    assert!(out.contains("stty-ok"), "output:\n{out}");
    assert!(out.contains("py-tty True True"), "output:\n{out}");
    assert!(out.contains("got=hello"), "output:\n{out}");
}
