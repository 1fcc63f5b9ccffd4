//! A sandbox whose filter traps nothing (no notifying return) runs no
//! supervisor thread: nothing can come to receive. What the supervisor
//! guarantees must hold all the same: the listener stays the sandbox's
//! until the end (the program cannot install one of its own), a stop and
//! the program's end are seen, and a sandbox that traps still gets its
//! thread. (Every test here spawns only sandboxes that trap nothing, except
//! the control of `no_thread_while_it_runs`, which runs alone in it.)

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};

use unotify::{Command, NotifAction, Sandbox, Stdio};

/// Tries to install a user-notification listener of its own, `argv[1]`
/// times; prints how many installs succeeded.
const OWN_LISTENER: &str = r#"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int tries = atoi(argv[1]), got = 0;
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = { .len = 1, .filter = &allow };
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    for (int i = 0; i < tries; i++) {
        long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                          SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (fd >= 0) {
            got++;
            close((int)fd);
        }
    }
    printf("%d\n", got);
    return 0;
}
"#;

fn run_to_string(sandbox: &Sandbox, cmd: &mut Command) -> String {
    let mut child = sandbox
        .spawn(cmd.stdout(Stdio::Piped))
        .expect("spawn in the sandbox");
    let out = common::read_all(&mut child.stdout);
    assert!(child.wait().expect("wait").success());
    out
}

/// The listener of a sandbox without a thread is held until the program
/// ends: the kernel allows one listener per filter chain, so the program
/// cannot put a supervisor of its own under the sandbox's filter. (With
/// the listener closed at spawn, 20 of 20 installs succeed.)
#[test]
fn the_program_cannot_install_its_own_listener() {
    let exe = common::build_c("own_listener", OWN_LISTENER, &[]);
    let sandbox = Sandbox::builder().build().expect("build");
    let got = run_to_string(&sandbox, Command::new(&exe).arg("20"));
    assert_eq!(
        got.trim(),
        "0",
        "installs of a listener of the program's own"
    );
}

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("list threads")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_owned())
        .collect()
}

fn poll_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("unotify-poll"))
        .count()
}

/// Runs `cat` with a piped stdin under `sandbox`, counts the poll threads
/// while it runs, ends it and returns the count. The count is taken once
/// cat has echoed, and again for a while if it is below `least`: a thread
/// names itself when it first runs, which on a loaded machine may be
/// later (the control below saw an unnamed poll thread 2 times in 40 at
/// load 8-10).
fn poll_threads_while_cat_runs(sandbox: &Sandbox, least: usize) -> usize {
    let mut child = sandbox
        .spawn(Command::new("cat").stdin(Stdio::Piped).stdout(Stdio::Piped))
        .expect("spawn cat");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"x").expect("write");
    // Once cat has echoed, it runs (and its supervisor, if any, too).
    let mut byte = [0u8; 1];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut byte)
        .expect("read cat's echo");
    let mut n = poll_threads();
    for _ in 0..200 {
        if n >= least {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        n = poll_threads();
    }
    drop(stdin);
    assert!(child.wait().expect("wait").success());
    n
}

#[test]
fn no_thread_while_it_runs() {
    let idle = Sandbox::builder().build().expect("build");
    assert_eq!(poll_threads_while_cat_runs(&idle, 0), 0);
    // The control: a sandbox that traps a call has its poll thread (the
    // count sees it).
    let trapping = Sandbox::builder()
        .handle("getppid", |_: &unotify::HandlerCtx<'_>| {
            NotifAction::Continue
        })
        .build()
        .expect("build");
    assert_eq!(poll_threads_while_cat_runs(&trapping, 1), 1);
}

/// A stop asked while the program runs, and its end, are both seen: the
/// program runs on to its own end and `wait` reports it.
#[test]
fn a_stop_and_the_end_are_seen() {
    let sandbox = Sandbox::builder().build().expect("build");
    let mut child = sandbox
        .spawn(Command::new("cat").stdin(Stdio::Piped).stdout(Stdio::Piped))
        .expect("spawn cat");
    let sup = child.supervisor().expect("a supervisor");
    sup.stop();
    let stats = sup.stats().expect("stats while it runs");
    assert_eq!(stats.received, 0);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"after the stop\n").expect("write");
    drop(stdin);
    assert_eq!(common::read_all(&mut child.stdout), "after the stop\n");
    assert!(child.wait().expect("wait").success());
    // And without a stop, many in a row end as the program does.
    for _ in 0..50 {
        assert!(sandbox
            .run(&mut Command::new("true"))
            .expect("run")
            .success());
    }
}
