//! File system calls the standard library lacks: `openat2`, `dup3` onto a number.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

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
    retry_eintr(|| openat2_once(dirfd, path, how))
}

/// [`openat2`] that returns `EINTR` when a signal interrupts it (a
/// blocking FIFO open that is to be given up; see
/// `interrupt::retry_while`).
pub fn openat2_once(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    how: &OpenHow,
) -> io::Result<OwnedFd> {
    let dir: RawFd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how whose
    // size we pass; both are borrowed for the call.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir as libc::c_long,
            path.as_ptr(),
            how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
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

/// Clears `O_NONBLOCK` of `fd`'s open file description.
pub fn clear_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = super::net::status_flags(fd)?;
    // SAFETY: fcntl(F_SETFL) takes an fd we borrow and an integer.
    super::cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) })
        .map(drop)
}

/// Whether `poll(2)` reports `POLLHUP` on `fd` now. On a FIFO's read end
/// opened with `O_NONBLOCK` while no writer had it open: no writer has
/// it open now, and one has opened it since.
pub fn hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: `p` is one live pollfd and we pass a count of 1.
    let n = super::cvt(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(n > 0 && p.revents & libc::POLLHUP != 0)
}

/// Closes `fds`, each run of consecutive numbers with one `close_range`
/// (every fd of a run is one of `fds`, owned here: nothing else is
/// closed). Start-up opens a few dozen `O_PATH` fds for the Landlock
/// rules and closes them together.
pub fn close_all(fds: Vec<OwnedFd>) {
    let mut raw: Vec<RawFd> = fds.into_iter().map(IntoRawFd::into_raw_fd).collect();
    raw.sort_unstable();
    let mut i = 0;
    while i < raw.len() {
        let lo = raw[i];
        let mut hi = lo;
        while i + 1 < raw.len() && raw[i + 1] == hi + 1 {
            i += 1;
            hi = raw[i];
        }
        i += 1;
        // SAFETY: close_range and close take integers; every fd in lo..=hi
        // was one of `fds` (sorted, consecutive), owned and given up here.
        unsafe {
            if hi == lo
                || libc::syscall(
                    libc::SYS_close_range,
                    lo as libc::c_uint,
                    hi as libc::c_uint,
                    0 as libc::c_uint,
                ) != 0
            {
                for fd in lo..=hi {
                    libc::close(fd);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    /// Whether `fd` is still the file at `path` (another test may reuse
    /// the number once it is closed).
    fn is_open_on(fd: i32, path: &std::path::Path) -> bool {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|p| p == path)
    }

    /// Every fd given is closed, in runs or alone, and an fd between two
    /// of them that is not given stays open.
    #[test]
    fn close_all_closes_only_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let path = path.canonicalize().unwrap();
        let mut fds: Vec<OwnedFd> = (0..6)
            .map(|_| std::fs::File::open(&path).unwrap().into())
            .collect();
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        // The third stays: the others make two runs (or more, if another
        // test's fds came between).
        let kept = fds.remove(2);
        super::close_all(fds);
        for (i, fd) in raw.iter().enumerate() {
            assert_eq!(is_open_on(*fd, &path), i == 2, "fd {fd} (#{i})");
        }
        drop(kept);
    }
}
