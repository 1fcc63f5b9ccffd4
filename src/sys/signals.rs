//! Synchronous signal handling without signal handlers: block the signals in
//! every thread, then take them one at a time with `sigwait(3)` on a thread
//! of the caller's choosing.
//!
//! The signal mask is inherited by threads created afterwards, so
//! [`block_termination_signals`] must run on the main thread before any other
//! thread starts. The sandbox launcher resets the mask of the child to empty
//! before `exec`, so the sandboxed program gets the default dispositions.

use std::io;
use std::time::Duration;

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub struct SigSet {
    pub(super) set: libc::sigset_t,
}

impl SigSet {
    /// The empty set.
    pub fn empty() -> Self {
        // SAFETY: an all-zero sigset_t is valid storage; sigemptyset then
        // initialises it properly.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live, writable sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        SigSet { set }
    }

    /// Adds `sig` to the set.
    pub fn add(&mut self, sig: i32) -> io::Result<()> {
        // SAFETY: `self.set` is an initialised sigset_t; an invalid signal
        // number is reported as EINVAL.
        super::cvt(unsafe { libc::sigaddset(&mut self.set, sig) }).map(drop)
    }

    /// Whether `sig` is in the set.
    pub fn contains(&self, sig: i32) -> bool {
        // SAFETY: `self.set` is an initialised sigset_t; sigismember only reads it.
        unsafe { libc::sigismember(&self.set, sig) == 1 }
    }

    /// The set as the kernel's 64-bit mask (bit `n - 1` for signal `n`).
    pub(crate) fn kernel_mask(&self) -> u64 {
        (1..=64)
            .filter(|&s| self.contains(s))
            .fold(0, |m, s| m | 1 << (s - 1))
    }

    /// The termination signals an interactive command is expected to obey:
    /// `SIGINT`, `SIGTERM` and `SIGHUP`.
    pub fn termination() -> Self {
        let mut set = SigSet::empty();
        for sig in TERMINATION_SIGNALS {
            set.add(sig).expect("standard signal numbers are valid");
        }
        set
    }
}

impl std::fmt::Debug for SigSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<i32> = (1..libc::SIGRTMIN())
            .filter(|&s| self.contains(s))
            .collect();
        f.debug_tuple("SigSet").field(&members).finish()
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`.
pub const TERMINATION_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Sends `sig` to thread `tid`: of thread group `tgid` (`tgkill`, which
/// fails `ESRCH` rather than signal a reused id of another group), or of
/// any group (`tkill`, for a thread that cannot go away meanwhile: a
/// stopped tracee of the caller's).
pub fn send_to_thread(tgid: Option<i32>, tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: tgkill and tkill take integers.
    let ret = unsafe {
        match tgid {
            Some(tgid) => libc::syscall(
                libc::SYS_tgkill,
                tgid as libc::c_long,
                tid as libc::c_long,
                sig as libc::c_long,
            ),
            None => libc::syscall(libc::SYS_tkill, tid as libc::c_long, sig as libc::c_long),
        }
    };
    super::cvt_long(ret).map(drop)
}

/// Adds `set` to the calling thread's blocked signals (`pthread_sigmask`).
pub fn block(set: &SigSet) -> io::Result<()> {
    // SAFETY: `set.set` is an initialised sigset_t; the old mask is not asked for.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Removes `set` from the calling thread's blocked signals.
pub fn unblock(set: &SigSet) -> io::Result<()> {
    // SAFETY: as in `block`.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set.set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// The calling thread's blocked signals (`pthread_sigmask`).
pub fn blocked() -> io::Result<SigSet> {
    let mut old = SigSet::empty();
    // SAFETY: with a null new set the mask is only read, into a live
    // sigset_t.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old.set) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(old)
}

/// Whether `sig`'s action in this process is "ignore" (`SIG_IGN`).
pub fn is_ignored(sig: i32) -> io::Result<bool> {
    // SAFETY: all-zero is a valid sigaction, written by the query.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new action sigaction only reads the current one
    // into a live struct.
    super::cvt(unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) })?;
    Ok(old.sa_sigaction == libc::SIG_IGN)
}

/// Gives `sig` its default action in this process (`SIG_DFL`).
pub fn set_default_action(sig: i32) -> io::Result<()> {
    // SAFETY: setting the default action takes integers; no handler runs.
    if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ends this process by `sig`, with its default action, as if it had not
/// been blocked or handled: a caller's shell then sees the signal (and a
/// shell loop stops on `SIGINT`). Sets the default action, makes the
/// signal pending on the calling thread only (so no `sigwait` of another
/// thread takes it), then unblocks it there. Returns only if `sig` does
/// not end a process by default, or on an error.
pub fn die_of_signal(sig: i32) -> io::Error {
    if let Err(e) = set_default_action(sig) {
        return e;
    }
    // SAFETY: raise takes an integer; it targets the calling thread.
    if unsafe { libc::raise(sig) } != 0 {
        return io::Error::last_os_error();
    }
    let mut set = SigSet::empty();
    if let Err(e) = set.add(sig).and_then(|()| unblock(&set)) {
        return e;
    }
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// Blocks `SIGINT`, `SIGTERM` and `SIGHUP` in the calling thread (and so in
/// every thread it starts afterwards) and returns that set, for
/// [`wait_signal`].
///
/// While blocked, these signals stay pending instead of killing the process,
/// until a thread takes them with [`wait_signal`].
pub fn block_termination_signals() -> io::Result<SigSet> {
    let set = SigSet::termination();
    block(&set)?;
    Ok(set)
}

/// Waits until one of the signals in `set` (which must be blocked in every
/// thread) is pending, takes it and returns its number (`sigwait(3)`).
pub fn wait_signal(set: &SigSet) -> io::Result<i32> {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set.set` is an initialised sigset_t and `sig` a live int
        // that sigwait writes the signal number to.
        let ret = unsafe { libc::sigwait(&set.set, &mut sig) };
        match ret {
            0 => return Ok(sig),
            libc::EINTR => continue,
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// A signal taken by [`wait_signal_info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalInfo {
    /// The signal.
    pub signo: i32,
    /// Its `si_code` (for `SIGCHLD`: why the child changed state,
    /// `CLD_EXITED`, `CLD_TRAPPED`, ...).
    pub code: i32,
    /// Its `si_pid`: the sender, or for `SIGCHLD` the child.
    pub pid: i32,
}

/// [`wait_signal`], with the signal's `si_code` and `si_pid`.
pub fn wait_signal_info(set: &SigSet) -> io::Result<SignalInfo> {
    loop {
        // SAFETY: all-zero is a valid siginfo_t, written by sigwaitinfo.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set.set` is an initialised sigset_t and `info` a live
        // siginfo_t that sigwaitinfo fills in.
        let ret = unsafe { libc::sigwaitinfo(&set.set, &mut info) };
        if ret >= 0 {
            return Ok(SignalInfo {
                signo: ret,
                code: info.si_code,
                // SAFETY: sigwaitinfo filled in the record of a signal
                // that carries a sender (kill, sigqueue) or a child.
                pid: unsafe { info.si_pid() },
            });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// [`wait_signal_info`] for at most `timeout`: `None` if no signal of
/// `set` came by then (`sigtimedwait(2)`).
pub fn wait_signal_info_for(set: &SigSet, timeout: Duration) -> io::Result<Option<SignalInfo>> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: all-zero is a valid siginfo_t, written by sigtimedwait.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set.set` is an initialised sigset_t, `info` a live
        // siginfo_t that sigtimedwait fills in, `ts` a live timespec.
        let ret = unsafe { libc::sigtimedwait(&set.set, &mut info, &ts) };
        if ret >= 0 {
            return Ok(Some(SignalInfo {
                signo: ret,
                code: info.si_code,
                // SAFETY: sigtimedwait filled in the record of a signal
                // that carries a sender (kill, sigqueue) or a child.
                pid: unsafe { info.si_pid() },
            }));
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            // (Restarted with the whole timeout: a caller that waits
            // for ever in a loop is not hurried by an interruption.)
            Some(libc::EINTR) => continue,
            _ => return Err(io::Error::last_os_error()),
        }
    }
}

/// Takes one of the signals in `set` (blocked in every thread) if one is
/// pending, without waiting (`sigtimedwait(2)` with a zero timeout).
pub fn take_pending(set: &SigSet) -> io::Result<Option<i32>> {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: `set.set` is an initialised sigset_t, `zero` a live
        // timespec; no siginfo is asked for.
        let ret = unsafe { libc::sigtimedwait(&set.set, std::ptr::null_mut(), &zero) };
        if ret >= 0 {
            return Ok(Some(ret));
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(io::Error::last_os_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_membership() {
        let set = SigSet::termination();
        for sig in TERMINATION_SIGNALS {
            assert!(set.contains(sig));
        }
        assert!(!set.contains(libc::SIGKILL));
        assert!(!SigSet::empty().contains(libc::SIGINT));
        assert!(SigSet::empty().add(100_000).is_err());
    }

    /// Runs `f` on a thread of its own that blocks SIGHUP (so the other
    /// test threads are not affected), with `raise` sending SIGHUP to that
    /// thread only; unblocks it afterwards.
    fn with_sighup_blocked<T: Send + 'static>(
        f: impl FnOnce(&SigSet, &dyn Fn()) -> T + Send + 'static,
    ) -> T {
        std::thread::spawn(move || {
            let mut set = SigSet::empty();
            set.add(libc::SIGHUP).unwrap();
            block(&set).unwrap();
            let raise = || {
                // SAFETY: raise sends a signal to the calling thread only.
                assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
            };
            let got = f(&set, &raise);
            unblock(&set).unwrap();
            got
        })
        .join()
        .unwrap()
    }

    #[test]
    fn waits_for_a_blocked_signal() {
        // A thread-directed signal to a thread that blocks it stays pending
        // until sigwait takes it.
        let got = with_sighup_blocked(|set, raise| {
            raise();
            wait_signal(set).unwrap()
        });
        assert_eq!(got, libc::SIGHUP);
    }

    #[test]
    fn a_timed_wait_takes_a_pending_signal_or_times_out() {
        let got = with_sighup_blocked(|set, raise| {
            let none = wait_signal_info_for(set, Duration::from_millis(1)).unwrap();
            raise();
            let got = wait_signal_info_for(set, Duration::from_secs(5)).unwrap();
            (none, got.map(|i| i.signo))
        });
        assert_eq!(got, (None, Some(libc::SIGHUP)));
    }
}
