//! Signals of `unotify run`, taken while it waits for the program:
//! termination signals (forwarded to the program first, the sandbox killed
//! after the grace of `--kill-after` or at a second signal), orphans reaped as they die, job
//! control at a terminal (a stopped program stops `unotify` too), and how
//! `unotify` ends (by the program's terminal signal, re-raised). Used by
//! `main`'s `run`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use unotify::os::{self as pidfd, self as process};
use unotify::os::{self as signals, SigSet};

/// The signal state `unotify` was started with, that the program is to
/// start with too, as it would run bare: the signals its caller ignored
/// among those `unotify` changes for itself, and the blocked ones.
#[derive(Clone, Copy)]
pub struct Inherited {
    /// Ignored at the start (of SIGPIPE, SIGCHLD, SIGINT, SIGTERM, SIGHUP).
    pub ignored: SigSet,
    /// Blocked at the start.
    pub blocked: SigSet,
}

/// Recorded by [`record_inherited`].
static INHERITED: OnceLock<Inherited> = OnceLock::new();

/// Signals whose action `unotify` changes, or that it takes: the only
/// ones whose "ignore" it must record (others keep theirs in the program).
// (Used by the entry point, which a test build leaves out.)
#[cfg_attr(test, allow(dead_code))]
const RECORDED: [i32; 5] = [
    libc::SIGPIPE,
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
];

/// Records the signal state the program is to inherit, before `unotify`
/// changes any of it (the entry point calls it first), and gives SIGCHLD
/// its default action back if it was ignored (an ignored SIGCHLD has the
/// kernel reap the program, whose exit status is then lost).
#[cfg_attr(test, allow(dead_code))]
pub fn record_inherited() {
    let mut ignored = SigSet::empty();
    for sig in RECORDED {
        if signals::is_ignored(sig).unwrap_or(false) {
            let _ = ignored.add(sig);
        }
    }
    if ignored.contains(libc::SIGCHLD) {
        if let Err(e) = signals::set_default_action(libc::SIGCHLD) {
            log::warn!("cannot stop ignoring SIGCHLD: {e}");
        }
    }
    let blocked = signals::blocked().unwrap_or_else(|_| SigSet::empty());
    let _ = INHERITED.set(Inherited { ignored, blocked });
}

/// What [`record_inherited`] recorded (nothing ignored or blocked if it
/// did not run: a test build).
pub fn inherited() -> Inherited {
    INHERITED.get().copied().unwrap_or(Inherited {
        ignored: SigSet::empty(),
        blocked: SigSet::empty(),
    })
}

/// Blocks, in the calling thread (and so in every thread it starts
/// afterwards), the signals [`wait_for`] takes, and returns them: the
/// termination signals (SIGINT, SIGTERM, SIGHUP) but those ignored at the
/// start, which stay ignored (`nohup`, a script's background job: not
/// taken, not forwarded, ignored by the program too), and SIGCHLD, for
/// job control (waiting for the program does not need it delivered).
pub fn block_taken(inherited: &Inherited) -> std::io::Result<SigSet> {
    let mut set = SigSet::empty();
    for sig in signals::TERMINATION_SIGNALS {
        if !inherited.ignored.contains(sig) {
            set.add(sig)?;
        }
    }
    set.add(libc::SIGCHLD)?;
    signals::block(&set)?;
    Ok(set)
}

/// What the signal handling knows: the sandbox to signal, once it runs,
/// and the termination signals received (shared with the `--kill-after`
/// and `--timeout` timers).
#[derive(Default)]
pub struct SignalState {
    /// pidfd of the sandboxed program (the sandbox's process group leader).
    pub target: Option<OwnedFd>,
    /// Its pid, which is also the sandbox's process group.
    pub pid: Option<i32>,
    /// The processes of the sandbox, for those outside its group.
    pub processes: Option<unotify::SandboxProcesses>,
    /// The first of SIGINT / SIGTERM / SIGHUP received.
    pub received: Option<i32>,
    /// How many of them were received.
    pub count: u32,
    /// How long the program has, after a forwarded signal, before the
    /// sandbox is killed (`--kill-after`); zero: killed at once.
    pub kill_after: Duration,
    /// The grace timer was started.
    pub timer_started: bool,
    /// `--timeout` ran out: the program was told to stop (exit 124).
    pub timed_out: bool,
}

impl SignalState {
    fn kill_now(&self) {
        if let Some(pidfd) = &self.target {
            if let Err(e) = pidfd::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL) {
                if e.raw_os_error() != Some(libc::ESRCH) {
                    log::warn!("cannot kill the sandbox: {e}");
                }
            }
        }
    }

    /// Sends `sig` to the program's process group (as a terminal would)
    /// and to every other process of the sandbox (one that made its own
    /// group or session: `setsid`, a daemon), then SIGCONT, so that a
    /// stopped program sees it. Each process gets it once.
    fn forward(&self, sig: i32) {
        let Some(pid) = self.pid else {
            return;
        };
        let others = self.outside_group(pid);
        for s in [sig, libc::SIGCONT] {
            if let Err(e) = process::kill_group(pid, s) {
                if e.raw_os_error() != Some(libc::ESRCH) {
                    log::warn!("cannot forward signal {s} to the sandbox: {e}");
                }
            }
            for &other in &others {
                if let Err(e) = process::kill(other, s) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        log::warn!(
                            "cannot forward signal {s} to process {other} of the sandbox: {e}"
                        );
                    }
                }
            }
        }
    }

    /// The processes of the sandbox outside group `pgid`: the cgroup's
    /// members, or without one the program's descendants and the orphans
    /// given to `unotify` as a subreaper (its only other children).
    fn outside_group(&self, pgid: i32) -> Vec<i32> {
        let Some(procs) = &self.processes else {
            return Vec::new();
        };
        let mut pids = procs.pids();
        if !procs.contained() {
            pids.extend(process::own_children());
            pids.sort_unstable();
            pids.dedup();
        }
        pids.retain(|&p| group_of(p).is_some_and(|g| g != pgid));
        pids
    }
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
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
    // The terminal first: without one (most runs) there is no /proc read.
    if process::terminal_foreground() != Some(pid) || !process::is_job_stopped(pid) {
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

/// Waits for the program to exit, taking meanwhile, on the calling thread,
/// the signals of `set` (blocked in every thread since before any thread
/// started): SIGINT, SIGTERM and SIGHUP, the first forwarded to the
/// program, which has `kill_after` to end before the sandbox is killed, a
/// second killing it at once; and SIGCHLD, for job control
/// ([`follow_job_stop`]), to reap orphans (under `PR_SET_CHILD_SUBREAPER`
/// they become `unotify`'s children) and to see the program's end.
///
/// On the calling thread rather than on a thread of their own: starting
/// one, and its exit at the end, cost about 50 µs of CPU per run here
/// (README, "Start-up"). Signals that came before (during the spawn) are
/// pending, and taken first, as the program is known by then.
pub fn wait_for(
    child: &mut unotify::Child,
    set: &SigSet,
    state: &Arc<Mutex<SignalState>>,
) -> std::io::Result<std::process::ExitStatus> {
    let pid = child.pid() as i32;
    let mut last_reap = std::time::Instant::now();
    loop {
        // Looked for at each turn, not by the SIGCHLD of its end: two
        // SIGCHLD pending at once are one, which tells of one child only.
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        // Timed: were every SIGCHLD lost (ignored by whoever started
        // `unotify`), the program's end is still seen within a second.
        let info = match signals::wait_signal_info_for(set, Duration::from_secs(1)) {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("cannot wait for signals: {e}; SIGINT/SIGTERM/SIGHUP are ignored");
                return child.wait();
            }
        };
        if info.signo == libc::SIGCHLD {
            follow_job_stop(pid);
            // The ptrace stops of argv safety send one at every exec:
            // orphans are looked for when a child ended, or a second after
            // the last look (a SIGCHLD pending hides the next one). Not at
            // the program's own end: its collection kills and reaps every
            // child left, and the look (a file per thread) would only
            // delay it.
            let program_ended = info.pid == pid
                && matches!(
                    info.code,
                    libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED
                );
            if !program_ended
                && (info.code != libc::CLD_TRAPPED || last_reap.elapsed() >= Duration::from_secs(1))
            {
                process::reap_orphan_zombies(&[pid]);
                last_reap = std::time::Instant::now();
            }
            continue;
        }
        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
        st.received.get_or_insert(info.signo);
        st.count += 1;
        if st.count > 1 || st.kill_after.is_zero() {
            log::debug!("received signal {}: killing the sandbox", info.signo);
            st.kill_now();
            continue;
        }
        log::debug!(
            "received signal {}: forwarding it to the program",
            info.signo
        );
        st.forward(info.signo);
        start_grace(&mut st, state);
    }
}

/// The first termination signal (SIGINT, SIGTERM, SIGHUP) pending, taken
/// with every other one of them: for a run whose program did not start.
pub fn take_termination_signal() -> Option<i32> {
    let set = SigSet::termination();
    let mut first = None;
    while let Ok(Some(sig)) = signals::take_pending(&set) {
        first.get_or_insert(sig);
    }
    first
}

/// Starts the timer that kills the sandbox when the grace of
/// `--kill-after` is over (once).
fn start_grace(st: &mut SignalState, state: &Arc<Mutex<SignalState>>) {
    if st.timer_started {
        return;
    }
    st.timer_started = true;
    let grace = st.kill_after;
    let state = Arc::clone(state);
    let timer = std::thread::Builder::new()
        .name("unotify-grace".into())
        .spawn(move || {
            std::thread::sleep(grace);
            let st = state.lock().unwrap_or_else(PoisonError::into_inner);
            log::debug!("the grace of --kill-after is over: killing the sandbox");
            st.kill_now();
        });
    if let Err(e) = timer {
        log::warn!("cannot start the --kill-after timer: {e}; killing the sandbox now");
        st.kill_now();
    }
}

/// `--timeout`: after `limit`, tells the program to stop (SIGTERM to its
/// process group), then kills the sandbox after the grace of
/// `--kill-after`, as timeout(1) does.
pub fn start_timeout(state: &Arc<Mutex<SignalState>>, limit: Duration) -> std::io::Result<()> {
    let state = Arc::clone(state);
    std::thread::Builder::new()
        .name("unotify-timeout".into())
        .spawn(move || {
            std::thread::sleep(limit);
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            st.timed_out = true;
            log::debug!("--timeout ran out: stopping the program");
            if st.kill_after.is_zero() {
                st.kill_now();
            } else {
                st.forward(libc::SIGTERM);
                start_grace(&mut st, &state);
            }
        })
        .map(drop)
}

/// Signals whose death of the program `unotify` passes on as its own
/// death: those a terminal or a shell sends to end a job, on which a
/// calling shell decides (a `for` loop stops on SIGINT).
pub const PASSED_ON: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Ends `unotify` by `sig` (see [`unotify::os::die_of_signal`]); returns
/// the exit status to use if that fails.
pub fn die_of(sig: i32) -> u8 {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let e = signals::die_of_signal(sig);
    log::warn!("cannot end by signal {sig}: {e}");
    128u8.wrapping_add(sig as u8)
}
