//! File system calls the standard library lacks: `openat2`, `dup3` onto a number.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt_long, retry_eintr};

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenHow {
    /// `O_*` flags.
    pub flags: u64,
    /// Mode for `O_CREAT`.
    pub mode: u64,
    /// `RESOLVE_*` flags.
    pub resolve: u64,
}

/// `RESOLVE_NO_MAGICLINKS`: refuse `/proc/<pid>/fd`-style links.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_BENEATH`.
pub const RESOLVE_BENEATH: u64 = 0x08;
/// `RESOLVE_IN_ROOT`: resolve as if `dirfd` were the root directory.
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens `path` relative to `dirfd` (`None` = the current directory) with `openat2(2)`.
pub fn openat2(dirfd: Option<BorrowedFd<'_>>, path: &CStr, how: &OpenHow) -> io::Result<OwnedFd> {
    let dir: RawFd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let fd = retry_eintr(|| {
        // SAFETY: `path` is NUL-terminated and `how` is a valid open_how whose
        // size we pass; both are borrowed for the call.
        cvt_long(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir as libc::c_long,
                path.as_ptr(),
                how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        })
    })?;
    // SAFETY: the kernel just created this fd; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Atomically replaces `fd` with `/dev/null` (keeping its number), which
/// releases the file it referred to. Used to detach a seccomp listener that
/// other threads may still name: they then operate on `/dev/null`, never on
/// a recycled fd number.
pub fn replace_with_null(fd: BorrowedFd<'_>) -> io::Result<()> {
    let null = std::fs::File::options().read(true).open("/dev/null")?;
    // SAFETY: dup3 atomically makes `fd` refer to /dev/null; both are valid
    // open fds, and `fd` stays owned by its owner.
    super::cvt(unsafe { libc::dup3(null.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC) }).map(drop)
}

/// Sets or clears `FD_CLOEXEC` on `fd`.
#[cfg(feature = "internals")]
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl(F_SETFD) takes an fd we borrow and an integer.
    super::cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) }).map(drop)
}
