//! Process file descriptors: open, take an fd from a process, signal.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt_long;

/// `PIDFD_THREAD`: a pidfd for a thread rather than a thread-group leader (Linux 6.9).
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// Opens a pidfd for process `pid` (`pidfd_open(2)`), close-on-exec.
pub fn pidfd_open(pid: i32, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_open,
            pid as libc::c_long,
            flags as libc::c_long,
        )
    };
    let fd = cvt_long(ret)?;
    // SAFETY: the kernel just created this fd; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Duplicates fd `target` of the process behind `pidfd` into this process
/// (`pidfd_getfd(2)`), close-on-exec.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes three integers and returns a new fd or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            pidfd.as_raw_fd() as libc::c_long,
            target as libc::c_long,
            0 as libc::c_long,
        )
    };
    let fd = cvt_long(ret)?;
    // SAFETY: the kernel just created this fd; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` to the process behind `pidfd` (`pidfd_send_signal(2)`).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed; the other arguments are integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd() as libc::c_long,
            sig as libc::c_long,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_long,
        )
    };
    cvt_long(ret).map(drop)
}
