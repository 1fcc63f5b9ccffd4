//! Host identity and raw directory reads for the determinism features:
//! `uname` as bytes, `getdents64` into a buffer, and writing a task's
//! read-only mappings (its vDSO) through `/proc/<pid>/mem`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt_long;

/// `sizeof(struct utsname)`: six fields of 65 bytes.
pub const UTSNAME_LEN: usize = 6 * 65;
/// Where `nodename` starts in `struct utsname`, and each field's length.
pub const UTS_NODENAME: usize = 65;
/// The length of one `struct utsname` field.
pub const UTS_FIELD: usize = 65;
const _: () = assert!(std::mem::size_of::<libc::utsname>() == UTSNAME_LEN);

/// The host's `struct utsname`, as the kernel lays it out.
pub fn uname() -> io::Result<[u8; UTSNAME_LEN]> {
    let mut out = [0u8; UTSNAME_LEN];
    // SAFETY: `out` has the size and (byte) alignment of `struct utsname`,
    // which holds only `char` arrays; uname writes inside it.
    let r = unsafe { libc::uname(out.as_mut_ptr().cast::<libc::utsname>()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// `getdents64(fd, buf)`: fills `buf` with `struct linux_dirent64`
/// records; returns how many bytes (0 at the end of the directory).
pub fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which
    // we borrow mutably for the call.
    let n = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    })?;
    Ok(n as usize)
}

/// Writes `data` at `addr` in process `pid` through `/proc/<pid>/mem`,
/// which (like a debugger's write) reaches read-only mappings too, giving
/// the process a private copy of the page.
pub fn force_write(pid: i32, addr: u64, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/mem"))?;
    mem.write_all_at(data, addr)
}

/// `clock_gettime(clock)` as (seconds, nanoseconds).
pub fn clock_gettime(clock: libc::clockid_t) -> io::Result<(i64, i64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// Reads `buf.len()` bytes at `addr` in process `pid` through
/// `/proc/<pid>/mem` (reaches special mappings such as the vDSO).
pub fn force_read(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    mem.read_exact_at(buf, addr)
}
