//! Poll threads kept for the next sandbox: one is reused by a sandbox that
//! starts soon after the previous one ended, with the signal mask of the
//! thread that starts it (as a new thread would have inherited it). Alone
//! in its file: it reads the masks of every poll thread of this process.

use std::time::Duration;

use unotify::sys::signals::{self, SigSet};
use unotify::{Command, Sandbox};

/// The ids of this process's threads named `unotify-poll`.
fn poll_threads() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .expect("list /proc/self/task")
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "unotify-poll")
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether thread `tid` of this process blocks `sig`.
fn blocks(tid: i32, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .expect("read the thread's status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .expect("SigBlk line")
        .trim();
    let mask = u64::from_str_radix(hex, 16).expect("hex mask");
    mask & (1 << (sig - 1)) != 0
}

/// A host whose thread blocks `SIGUSR2` (to take it with `sigwait`, say)
/// starts a sandbox right after another thread's sandbox ended: the poll
/// thread kept from that one serves it, and blocks `SIGUSR2` as that
/// host's threads do (else a process-directed `SIGUSR2` could be delivered
/// to it, and kill the host). Without setting the mask: the reused thread
/// kept the first thread's mask (5 of 5 rounds unblocked); with it, 0.
#[test]
fn a_reused_poll_thread_has_the_starting_threads_signal_mask() {
    let sandbox = Sandbox::builder().build().expect("build");
    let (mut reused, mut unblocked) = (0, 0);
    for _ in 0..5 {
        // A sandbox run from a thread that blocks nothing.
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(sandbox
                    .run(&mut Command::new("/bin/true"))
                    .expect("run")
                    .success());
            });
        });
        let idle = poll_threads();
        // The same, from this thread with SIGUSR2 blocked.
        let mut set = SigSet::empty();
        set.add(libc::SIGUSR2).expect("add SIGUSR2");
        signals::block(&set).expect("block SIGUSR2");
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("0.3");
        let mut child = sandbox.spawn(&mut cmd).expect("spawn");
        std::thread::sleep(Duration::from_millis(50));
        for tid in poll_threads() {
            if idle.contains(&tid) {
                reused += 1;
                if !blocks(tid, libc::SIGUSR2) {
                    unblocked += 1;
                }
            }
        }
        assert!(child.wait().expect("wait").success());
        signals::unblock(&set).expect("unblock SIGUSR2");
    }
    assert!(reused > 0, "no poll thread was reused in 5 rounds");
    assert_eq!(
        unblocked, 0,
        "{unblocked} of {reused} reused poll threads let SIGUSR2 in"
    );
}
