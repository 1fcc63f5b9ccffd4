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

/// Whether tasks `a` and `b` share one file descriptor table
/// (`kcmp(2)`, `KCMP_FILES`).
pub fn same_fd_table(a: i32, b: i32) -> io::Result<bool> {
    const KCMP_FILES: libc::c_long = 2;
    // SAFETY: kcmp takes five integers and reads no memory for KCMP_FILES.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a as libc::c_long,
            b as libc::c_long,
            KCMP_FILES,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    Ok(cvt_long(ret)? == 0)
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

/// `struct pidfd_info` as Linux 6.13 introduced it (`PIDFD_INFO_SIZE_VER0`,
/// 64 bytes; later kernels accept this size and fill what it holds).
#[repr(C)]
#[derive(Default)]
#[allow(dead_code)] // The kernel's layout: most fields are only written.
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

/// `PIDFD_INFO_PID`: ask for `pid`, `tgid` and `ppid`.
const PIDFD_INFO_PID: u64 = 1;

/// `PIDFD_GET_INFO`: `_IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;

/// The parent (its thread-group id, in this process's pid namespace) of
/// the task `pidfd` names, from `PIDFD_GET_INFO` (Linux 6.13; one ioctl, no
/// `/proc` read). `ENOTTY` on older kernels; `ESRCH` once the task is gone
/// or when its parent is outside this pid namespace.
pub fn parent_of(pidfd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_PID,
        ..PidfdInfo::default()
    };
    // SAFETY: PIDFD_GET_INFO writes at most the size encoded in the request
    // (that of `info`, a live, exclusively borrowed `repr(C)` value).
    let ret = unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            PIDFD_GET_INFO as _,
            &mut info as *mut PidfdInfo,
        )
    };
    super::cvt(ret)?;
    if info.mask & PIDFD_INFO_PID == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOTTY));
    }
    Ok(info.ppid)
}
