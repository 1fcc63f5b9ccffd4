//! Signals of `unotify run`: the thread that takes termination signals
//! (and kills the sandbox), and job control at a terminal (a stopped
//! program stops `unotify` too). Used by `main`'s `run`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

use unotify::os::{self as pidfd, self as process};
use unotify::os::{self as signals, SigSet};

/// What the signal thread knows: the sandbox to kill, once it runs, and the
/// first termination signal received.
#[derive(Default)]
pub struct SignalState {
    /// pidfd of the sandboxed program (the sandbox's process group leader).
    pub target: Option<OwnedFd>,
    /// Its pid, which is also the sandbox's process group.
    pub pid: Option<i32>,
    /// The first of SIGINT / SIGTERM / SIGHUP received.
    pub received: Option<i32>,
}

impl SignalState {
    /// Kills the program if a signal was received and the program is known.
    /// The rest of its process group is killed when its exit is collected.
    pub fn kill_if_signalled(&self) {
        if let (Some(_), Some(pidfd)) = (self.received, &self.target) {
            if let Err(e) = pidfd::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL) {
                if e.raw_os_error() != Some(libc::ESRCH) {
                    log::warn!("cannot kill the sandbox: {e}");
                }
            }
        }
    }
}

/// Job control at a terminal. The sandbox has its own process group, which
/// holds the terminal's foreground while it runs, so a Ctrl-Z stops the
/// sandbox but not `unotify`, and the shell, waiting for `unotify`, would
/// not get the terminal back. So when the program stops while it holds the
/// foreground, `unotify` takes the terminal back and stops itself; when the
/// shell continues it (`fg`), it hands the terminal to the sandbox again
/// (if it got it back itself; after `bg`, it does not) and continues the
/// sandbox.
pub fn follow_job_stop(pid: i32) {
    // The signal thread and the main thread (for a stop before the signal
    // thread knew the pid) may both get here.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    if !process::is_job_stopped(pid) || process::terminal_foreground() != Some(pid) {
        return;
    }
    let ours = process::own_group();
    if let Err(e) = process::set_terminal_foreground(ours) {
        log::warn!("cannot take the terminal back from the stopped program: {e}");
        return;
    }
    log::debug!("the sandboxed program stopped: stopping too");
    // Every thread stops here until SIGCONT.
    if let Err(e) = process::kill(std::process::id() as i32, libc::SIGSTOP) {
        log::warn!("cannot stop: {e}");
    }
    if process::terminal_foreground() == Some(ours) {
        if let Err(e) = process::set_terminal_foreground(pid) {
            log::warn!("cannot give the terminal back to the program: {e}");
        }
    }
    if let Err(e) = process::kill_group(pid, libc::SIGCONT) {
        log::warn!("cannot continue the sandbox: {e}");
    }
}

/// Takes SIGINT, SIGTERM and SIGHUP on a dedicated thread: each kills the
/// sandbox, and `unotify` then exits with 128 + the first signal's number.
/// Takes SIGCHLD too, for job control ([`follow_job_stop`]).
pub fn start_signal_thread(set: SigSet, state: Arc<Mutex<SignalState>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("unotify-signals".into())
        .spawn(move || loop {
            let sig = match signals::wait_signal(&set) {
                Ok(sig) => sig,
                Err(e) => {
                    log::warn!("cannot wait for signals: {e}; SIGINT/SIGTERM/SIGHUP are ignored");
                    return;
                }
            };
            if sig == libc::SIGCHLD {
                let pid = state.lock().unwrap_or_else(PoisonError::into_inner).pid;
                if let Some(pid) = pid {
                    follow_job_stop(pid);
                }
                continue;
            }
            log::debug!("received signal {sig}: killing the sandbox");
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            st.received.get_or_insert(sig);
            st.kill_if_signalled();
        })
        .map(drop)
}
