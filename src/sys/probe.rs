//! Kernel calls used by [`crate::probe`] to find out what the running kernel
//! supports: a throwaway child that installs a notifying filter and makes one
//! trapped call, Landlock's ABI version, and a poll with a timeout.
//!
//! A seccomp filter can never be removed from the task that installed it, so
//! every filter probe happens in a short-lived forked child, never in the
//! caller.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::seccomp::{install_listener_raw, set_no_new_privs_raw};
use super::{cvt, process};

pub use super::landlock::abi_version as landlock_abi_version;

/// Waits up to `timeout` for `fd` to become readable (or hung up). Returns
/// whether it did.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, length 1.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(ret > 0);
    }
}

/// One report of the probe child: two integers.
type Record = [i64; 2];
const RECORD_LEN: usize = std::mem::size_of::<Record>();

/// What the probe child reported after installing its filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The listener's fd number in the child.
    pub listener: RawFd,
    /// Whether the filter went in with `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`.
    pub wait_killable_recv: bool,
    /// Why `WAIT_KILLABLE_RECV` was refused, if it was (an errno).
    pub wait_killable_errno: Option<i32>,
}

/// A forked child that installs a filter with a listener and then makes
/// one system call, which the filter is expected to trap.
///
/// The child reports on a pipe; dropping this value kills and reaps it.
pub struct TrappingChild {
    pid: i32,
    report: OwnedFd,
}

/// Forks a child that sets `no_new_privs`, installs `filter` with
/// `NEW_LISTENER | WAIT_KILLABLE_RECV` (falling back to `NEW_LISTENER` on
/// `EINVAL`), reports the outcome, calls system call `nr` with zero
/// arguments, reports its result and exits.
///
/// The filter must let `write`, `prctl`, `getppid` and `exit_group` through.
/// The child dies with the calling thread (`PR_SET_PDEATHSIG`).
pub fn fork_trapping_child(
    filter: &[libc::sock_filter],
    nr: libc::c_long,
) -> io::Result<TrappingChild> {
    let len = u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    let (report_r, report_w) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: getpid takes no arguments.
    let parent = unsafe { libc::getpid() };
    // SAFETY: after fork the child only runs `probe_child_main`, which makes
    // raw, async-signal-safe system calls on data prepared before the fork.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: we are the child of the fork above.
        unsafe {
            probe_child_main(
                &prog,
                nr,
                parent,
                report_r.as_raw_fd(),
                report_w.as_raw_fd(),
            )
        }
    }
    drop(report_w);
    Ok(TrappingChild {
        pid,
        report: report_r,
    })
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Writes one record; async-signal-safe.
fn write_record(fd: RawFd, rec: Record) -> bool {
    let mut bytes = [0u8; RECORD_LEN];
    bytes[..8].copy_from_slice(&rec[0].to_ne_bytes());
    bytes[8..].copy_from_slice(&rec[1].to_ne_bytes());
    loop {
        // SAFETY: writes RECORD_LEN bytes from a live buffer; a pipe write of
        // at most PIPE_BUF bytes is atomic.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), RECORD_LEN) };
        if n == RECORD_LEN as isize {
            return true;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return false;
    }
}

/// The probe child.
///
/// # Safety
/// Must only be called in the child of `fork`, with a `prog` prepared before.
unsafe fn probe_child_main(
    prog: &libc::sock_fprog,
    nr: libc::c_long,
    parent: i32,
    report_r: RawFd,
    report_w: RawFd,
) -> ! {
    libc::close(report_r);
    if libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    ) < 0
        || libc::getppid() != parent
    {
        libc::_exit(2);
    }
    let nnp = set_no_new_privs_raw();
    if nnp < 0 {
        write_record(report_w, [nnp as i64, 0]);
        libc::_exit(1);
    }
    // The same install as a spawned child's.
    let install = install_listener_raw(prog, true);
    let killable = i64::from(install.killable_error == 0);
    let killable_errno = -(install.killable_error as i64);
    let installed: Record = [install.listener as i64, killable | killable_errno << 8];
    let listener = install.listener;
    if !write_record(report_w, installed) || listener < 0 {
        libc::_exit(1);
    }
    let ret = libc::syscall(nr, 0 as libc::c_long, 0 as libc::c_long, 0 as libc::c_long);
    let ret: i64 = if ret < 0 { -i64::from(errno()) } else { ret };
    write_record(report_w, [ret, 0]);
    libc::_exit(0)
}

impl TrappingChild {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn read_record(&self, timeout: Duration) -> io::Result<Record> {
        let mut buf = [0u8; RECORD_LEN];
        let mut got = 0;
        let deadline = Instant::now() + timeout;
        while got < RECORD_LEN {
            let left = deadline.saturating_duration_since(Instant::now());
            if !wait_readable(self.report.as_fd(), left)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the probe child did not report in time",
                ));
            }
            // SAFETY: reads into the unfilled tail of a live buffer.
            let n = unsafe {
                libc::read(
                    self.report.as_raw_fd(),
                    buf[got..].as_mut_ptr().cast(),
                    RECORD_LEN - got,
                )
            };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the probe child exited before reporting",
                ));
            }
            got += n as usize;
        }
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&buf[..8]);
        b.copy_from_slice(&buf[8..]);
        Ok([i64::from_ne_bytes(a), i64::from_ne_bytes(b)])
    }

    /// Waits for the outcome of the filter installation.
    ///
    /// # Errors
    /// The errno of the failed installation, or a timeout / EOF error if the
    /// child died or stalled.
    pub fn installed(&self, timeout: Duration) -> io::Result<Installed> {
        let [listener, killable] = self.read_record(timeout)?;
        if listener < 0 {
            return Err(io::Error::from_raw_os_error(-listener as i32));
        }
        let killable_errno = (killable >> 8) as i32;
        Ok(Installed {
            listener: listener as RawFd,
            wait_killable_recv: killable & 1 == 1,
            wait_killable_errno: (killable_errno != 0).then_some(killable_errno),
        })
    }

    /// Waits for the result of the child's system call: its return value, or
    /// `-errno`.
    pub fn call_result(&self, timeout: Duration) -> io::Result<i64> {
        Ok(self.read_record(timeout)?[0])
    }
}

impl Drop for TrappingChild {
    fn drop(&mut self) {
        // The child is ours and not yet reaped, so its pid cannot have been
        // reused: the signal reaches it (or its zombie).
        let _ = process::kill(self.pid, libc::SIGKILL);
        let _ = process::waitpid_raw(self.pid, 0);
    }
}
