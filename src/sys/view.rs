//! The calls a chroot view makes on pinned (`O_PATH`) files to answer the
//! program's metadata calls: the kernel's own `struct stat`, `struct
//! statx` and `struct statfs` bytes (written back to the program as they
//! are), and `faccessat2` on the file itself.
//!
//! Used by `chroot`, which resolves every path inside the view first.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, cvt_long};

/// `struct stat` of `fd` itself (`AT_EMPTY_PATH`; a symlink pinned with
/// `O_NOFOLLOW` is described, not followed), as the kernel lays it out
/// for `stat`, `lstat` and `newfstatat`.
pub fn stat_bytes(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    // SAFETY: an all-zero `struct stat` is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated empty string; `st` is writable
    // and as large as the kernel's `struct stat` for this architecture.
    cvt(unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: `st` is a plain-old-data struct fully initialised above;
    // viewing it as bytes for its size is sound.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&st as *const libc::stat).cast::<u8>(),
            std::mem::size_of::<libc::stat>(),
        )
    };
    Ok(bytes.to_vec())
}

/// The size of the kernel's `struct statx`.
pub const STATX_SIZE: usize = 256;

/// `struct statx` of `fd` itself, with the program's `mask` and
/// synchronisation flags (`AT_STATX_*`).
pub fn statx_bytes(fd: BorrowedFd<'_>, sync_flags: i32, mask: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; STATX_SIZE];
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW | (sync_flags & 0x6000);
    // SAFETY: the path is a NUL-terminated empty string; `buf` is writable
    // for the 256 bytes of `struct statx`.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_statx,
            fd.as_raw_fd() as libc::c_long,
            c"".as_ptr(),
            flags as libc::c_long,
            mask as libc::c_long,
            buf.as_mut_ptr(),
        )
    })?;
    Ok(buf)
}

/// `struct statfs` of the file system holding `fd`.
pub fn statfs_bytes(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    // SAFETY: an all-zero `struct statfs` is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable and as large as the kernel's `struct statfs`.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    // SAFETY: plain-old-data, fully initialised by the kernel above.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&st as *const libc::statfs).cast::<u8>(),
            std::mem::size_of::<libc::statfs>(),
        )
    };
    Ok(bytes.to_vec())
}

/// `faccessat2(fd, "", mode, AT_EMPTY_PATH | flags)`: whether the caller
/// may access the pinned file itself (`flags`: `AT_EACCESS`).
pub fn access_fd(fd: BorrowedFd<'_>, mode: i32, flags: i32) -> io::Result<()> {
    // SAFETY: the path is a NUL-terminated empty string; the rest are
    // integers the kernel checks.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd() as libc::c_long,
            c"".as_ptr(),
            mode as libc::c_long,
            (libc::AT_EMPTY_PATH | (flags & libc::AT_EACCESS)) as libc::c_long,
        )
    })
    .map(drop)
}

/// `fchmod(2)` of an open (not `O_PATH`) fd.
pub fn fchmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: integers only; the fd is open.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}
