//! Interrupting one thread's blocking system call: a thread-directed signal
//! whose handler does nothing, installed without `SA_RESTART`, makes the
//! call return `EINTR`.
//!
//! The handler is process-wide. It is installed only on a signal that has
//! no handler yet ([`install`]), so a host that uses the signal keeps it.

use std::io;

/// The signal used: `SIGRTMAX - 2`, a real-time signal that the C library
/// keeps for applications and that the kernel never sends on its own.
pub fn signal() -> i32 {
    libc::SIGRTMAX() - 2
}

extern "C" fn do_nothing(_: libc::c_int) {}

/// Makes `sig` interrupt blocking calls of the thread it is sent to: installs
/// the do-nothing handler unless `sig` has another handler or is ignored.
/// `Ok(false)`: it has; leave it alone.
pub fn install(sig: i32) -> io::Result<bool> {
    // SAFETY: an all-zero sigaction is valid storage, filled in below.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the current action of `sig` into a live struct.
    super::cvt(unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) })?;
    let ours = do_nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
    if old.sa_sigaction == ours {
        return Ok(true);
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Ok(false);
    }
    // SAFETY: as above.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = ours;
    // No SA_RESTART: an interrupted call returns EINTR.
    new.sa_flags = 0;
    // SAFETY: `new.sa_mask` is live storage for sigemptyset.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: installs an initialised action; the handler is async-signal-safe
    // (it does nothing).
    super::cvt(unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) })?;
    Ok(true)
}

/// Lets `sig` reach the calling thread.
pub fn unblock_here(sig: i32) -> io::Result<()> {
    let mut set = super::signals::SigSet::empty();
    set.add(sig)?;
    super::signals::unblock(&set)
}

/// Sends `sig` to thread `tid` of this process.
pub fn interrupt(tid: i32, sig: i32) -> io::Result<()> {
    super::signals::send_to_thread(Some(std::process::id() as i32), tid, sig)
}

/// A one-shot timer that sends a signal to one thread when it expires
/// (`timer_create` with `SIGEV_THREAD_ID`): it interrupts that thread's
/// blocking call after a delay.
pub struct AlarmTimer(libc::timer_t);

impl AlarmTimer {
    /// A disarmed timer that will send `sig` to the calling thread.
    pub fn for_this_thread(sig: i32) -> io::Result<AlarmTimer> {
        // SAFETY: an all-zero sigevent is valid storage; the fields that
        // matter are set below.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = sig;
        // SAFETY: gettid takes no arguments.
        ev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: reads a live sigevent and writes the new timer's id.
        super::cvt(unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) })?;
        Ok(AlarmTimer(id))
    }

    /// Arms it to expire once, `after` from now (replacing any earlier
    /// setting).
    pub fn arm(&self, after: std::time::Duration) -> io::Result<()> {
        let after = after.max(std::time::Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a timer created by `for_this_thread`; reads a live itimerspec.
        super::cvt(unsafe { libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut()) }).map(drop)
    }

    /// Arms it to expire every `period` from now on.
    pub fn arm_every(&self, period: std::time::Duration) -> io::Result<()> {
        let period = period.max(std::time::Duration::from_micros(1));
        let ts = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: a timer created by `for_this_thread`; reads a live itimerspec.
        super::cvt(unsafe { libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut()) }).map(drop)
    }
}

/// Makes the blocking call `call` one that can be given up: a repeating
/// alarm sends [`signal`] to the calling thread every `tick`, which ends a
/// blocked `call` with `EINTR`; `go_on()` then says whether to make it
/// again (`true`) or give up, returning the `EINTR`. An alarm that comes
/// while `call` is not blocked is harmless: the next one interrupts it.
///
/// If another handler has the signal, `call` is made once, as an ordinary
/// blocking call (a caller that must not block for good looks first, with
/// [`install`]); if no alarm can be set up, the call is not made and the
/// error is returned.
/// The thread's signal mask is restored afterwards and a signal still
/// pending from the alarm is taken, so the thread's later calls are not
/// interrupted by it.
pub fn retry_while<T>(
    tick: std::time::Duration,
    mut call: impl FnMut() -> io::Result<T>,
    mut go_on: impl FnMut() -> bool,
) -> io::Result<T> {
    let sig = signal();
    match install(sig) {
        Ok(true) => {}
        Ok(false) => {
            log::debug!("signal {sig} has another handler; a blocking call runs uninterrupted");
            return call();
        }
        Err(e) => {
            log::debug!("cannot install the handler of signal {sig} ({e}); a blocking call runs uninterrupted");
            return call();
        }
    }
    let mut set = super::signals::SigSet::empty();
    set.add(sig)?;
    // SAFETY: an all-zero sigset_t is valid storage for the old mask.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set.set` is an initialised sigset_t, `old` live storage.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set.set, &mut old) };
    if ret != 0 {
        log::warn!("cannot unblock signal {sig}: a blocking call that could not be ended fails");
        return Err(io::Error::from_raw_os_error(ret));
    }
    // The alarm lives inside the closure: it is deleted before the mask is
    // restored.
    let result = (|| {
        // Without an alarm, the call is not made: it could block for good.
        let alarm = AlarmTimer::for_this_thread(sig).inspect_err(|e| {
            log::warn!("no alarm timer ({e}); a blocking call that could not be ended fails");
        })?;
        alarm.arm_every(tick).inspect_err(|e| {
            log::warn!("cannot arm an alarm ({e}); a blocking call that could not be ended fails");
        })?;
        loop {
            match call() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    if !go_on() {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    })();
    // SAFETY: `old` is the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    // SAFETY: `old` is an initialised sigset_t.
    if unsafe { libc::sigismember(&old, sig) } == 1 {
        // Blocked again: a signal the alarm sent after the last call stays
        // pending; take it.
        while let Ok(Some(_)) = super::signals::take_pending(&set) {}
    }
    result
}

impl Drop for AlarmTimer {
    fn drop(&mut self) {
        // SAFETY: deletes the timer created by `for_this_thread`, once.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// Whether the running kernel is at least `major.minor` (from `uname`,
/// read once per process: the running kernel does not change).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    static RELEASE: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *RELEASE.get_or_init(kernel_release) >= (major, minor)
}

/// The running kernel's `major.minor` (`(0, 0)` if `uname` fails).
fn kernel_release() -> (u32, u32) {
    // SAFETY: an all-zero utsname is valid storage for uname to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into a live struct.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (0, 0);
    }
    let release: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn interrupts_a_blocking_read_and_keeps_other_handlers() {
        let sig = signal();
        assert!(install(sig).unwrap());
        assert!(install(sig).unwrap(), "installing twice is fine");
        let (r, w) = std::io::pipe().unwrap();
        let tid = Arc::new(AtomicI32::new(0));
        let t = {
            let tid = Arc::clone(&tid);
            std::thread::spawn(move || {
                unblock_here(sig).unwrap();
                // SAFETY: gettid takes no arguments.
                tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
                let mut buf = [0u8; 1];
                use std::os::fd::AsRawFd;
                // SAFETY: reads one byte into a live buffer.
                let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), 1) };
                (n, io::Error::last_os_error().raw_os_error())
            })
        };
        while tid.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Resend until the read returns: the first may come before it blocks.
        while !t.is_finished() {
            interrupt(tid.load(Ordering::SeqCst), sig).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(t.join().unwrap(), (-1, Some(libc::EINTR)));
        drop(w);
        // A signal with someone else's handler is left alone (Rust's
        // runtime handles SIGSEGV, for stack overflows).
        assert!(!install(libc::SIGSEGV).unwrap());
    }

    #[test]
    fn an_alarm_interrupts_a_blocking_read() {
        let sig = signal();
        assert!(install(sig).unwrap());
        let t = std::thread::spawn(move || {
            unblock_here(sig).unwrap();
            let alarm = AlarmTimer::for_this_thread(sig).unwrap();
            alarm.arm(Duration::from_millis(20)).unwrap();
            let (r, _w) = std::io::pipe().unwrap();
            use std::os::fd::AsRawFd;
            let start = std::time::Instant::now();
            let mut buf = [0u8; 1];
            // SAFETY: reads one byte into a live buffer.
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), 1) };
            (
                n,
                io::Error::last_os_error().raw_os_error(),
                start.elapsed(),
            )
        });
        let (n, err, took) = t.join().unwrap();
        assert_eq!((n, err), (-1, Some(libc::EINTR)));
        assert!(took >= Duration::from_millis(15), "{took:?}");
    }

    #[test]
    fn a_retried_call_is_given_up_when_asked_and_leaves_no_signal() {
        let (r, _w) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let mut asked = 0;
        let start = std::time::Instant::now();
        let got = retry_while(
            Duration::from_millis(10),
            || {
                let mut buf = [0u8; 1];
                // SAFETY: reads one byte into a live buffer.
                let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), 1) };
                super::super::cvt_long(n as libc::c_long)
            },
            || {
                asked += 1;
                asked < 3
            },
        );
        assert_eq!(got.unwrap_err().raw_os_error(), Some(libc::EINTR));
        assert_eq!(asked, 3);
        assert!(start.elapsed() >= Duration::from_millis(25));
        // The alarm is gone: a later blocking wait is not interrupted.
        // SAFETY: sleeps on no fds for 50 ms.
        let n = unsafe { libc::poll(std::ptr::null_mut(), 0, 50) };
        assert_eq!(n, 0);
    }

    #[test]
    fn reads_the_kernel_version() {
        assert!(kernel_at_least(2, 6));
        assert!(!kernel_at_least(999, 0));
    }
}
