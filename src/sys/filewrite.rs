//! The write family made on the program's behalf on a duplicate of its fd
//! (same open file description): `pwritev2` at an explicit offset,
//! `copy_file_range` and `splice` with offsets the caller holds, `pread`,
//! `fallocate`, a position set with `lseek`, and a pipe's buffer size.
//!
//! Used by the copy-on-write layer's `--max-disk` writes (`cow::writes`),
//! which charge exactly the range these calls are given.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, cvt_long};

/// `RWF_NOAPPEND` (Linux 6.9): write at the offset given even on an
/// `O_APPEND` file description.
pub const RWF_NOAPPEND: i32 = 0x20;

/// `pwritev2(fd, [data], 1, off, flags)`: the bytes written.
pub fn pwrite_at(fd: BorrowedFd<'_>, data: &[u8], off: u64, flags: i32) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: `iov` points at `data`, which outlives the call and is only
    // read; the offset is split as the syscall takes it on 64-bit targets.
    let n = unsafe {
        libc::syscall(
            libc::SYS_pwritev2,
            fd.as_raw_fd(),
            &iov as *const libc::iovec,
            1,
            off as libc::c_long,
            0 as libc::c_long,
            flags,
        )
    };
    cvt_long(n).map(|n| n as usize)
}

/// `pread(2)` of up to `buf.len()` bytes at `off`.
pub fn pread_at(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length and outlives the call.
    let n = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            off as libc::off_t,
        )
    };
    cvt_long(n as libc::c_long).map(|n| n as usize)
}

/// `copy_file_range(2)` between explicit offsets, which it advances.
pub fn copy_range(
    src: BorrowedFd<'_>,
    src_off: &mut u64,
    dst: BorrowedFd<'_>,
    dst_off: &mut u64,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    let (mut i, mut o) = (*src_off as libc::loff_t, *dst_off as libc::loff_t);
    // SAFETY: both offsets are locals we own, written by the kernel only.
    let n = unsafe {
        libc::copy_file_range(src.as_raw_fd(), &mut i, dst.as_raw_fd(), &mut o, len, flags)
    };
    let n = cvt_long(n as libc::c_long)? as usize;
    (*src_off, *dst_off) = (i as u64, o as u64);
    Ok(n)
}

/// `splice(2)` from the pipe `pipe` into `dst` at `dst_off` (advanced).
pub fn splice_to(
    pipe: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    dst_off: &mut u64,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    let mut o = *dst_off as libc::loff_t;
    // SAFETY: the output offset is a local we own; the pipe's is null, as
    // a pipe has none.
    let n = unsafe {
        libc::splice(
            pipe.as_raw_fd(),
            std::ptr::null_mut(),
            dst.as_raw_fd(),
            &mut o,
            len,
            flags,
        )
    };
    let n = cvt_long(n as libc::c_long)? as usize;
    *dst_off = o as u64;
    Ok(n)
}

/// `fallocate(2)`.
pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, off: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate takes an open fd and integers.
    cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) })
        .map(drop)
}

/// Sets the position of the open file description `fd` to `pos`.
pub fn seek_to(fd: BorrowedFd<'_>, pos: u64) -> io::Result<()> {
    // SAFETY: lseek takes an open fd and integers.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), pos as libc::off_t, libc::SEEK_SET) };
    cvt_long(r as libc::c_long).map(drop)
}

/// The capacity of the pipe `fd` (`F_GETPIPE_SZ`): the most one `splice`
/// from it moves.
pub fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no argument and only reads.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) }).map(|n| n as usize)
}
