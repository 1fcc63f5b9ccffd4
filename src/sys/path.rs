//! Path calls relative to directory fds: `fstat`, `fstatat`, `readlinkat`,
//! `fchmod`, `linkat`, `renameat2`, `unlinkat`, `symlinkat`, and the
//! metadata and node calls path denial makes for the program (`chmod`,
//! `fchownat`, `utimensat`, the xattr calls, `file_setattr`, `mkdirat`,
//! `mknodat`).
//!
//! Used by the path-denial code, which resolves and pins files in the
//! supervisor and then acts on exactly what it pinned.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use super::{cvt, cvt_long, retry_eintr};

/// The part of `struct stat` the path code needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Device of the file system (`st_dev`).
    pub dev: u64,
    /// Inode number (`st_ino`).
    pub ino: u64,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Number of hard links (`st_nlink`).
    pub nlink: u64,
    /// The device a device file is (`st_rdev`; 0 for other files).
    pub rdev: u64,
    /// Last status change (`st_ctime`, `st_ctime_nsec`).
    pub ctime: (i64, i64),
    /// Size in bytes (`st_size`).
    pub size: u64,
}

impl FileStat {
    /// Whether the file may be on a file system without a block device
    /// (device major 0: procfs, cgroupfs, tmpfs, overlayfs...). A file on
    /// a disk is not: checks for procfs and cgroupfs can skip `fstatfs`.
    pub fn on_anonymous_device(&self) -> bool {
        // glibc's `major()` encoding of a 64-bit `dev_t`.
        let major = ((self.dev >> 8) & 0xfff) | ((self.dev >> 32) & !0xfff);
        major == 0
    }

    // `st_nlink` is 32-bit on some architectures.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(st: &libc::stat) -> FileStat {
        FileStat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            nlink: st.st_nlink as u64,
            rdev: st.st_rdev,
            ctime: (st.st_ctime, st.st_ctime_nsec),
            size: u64::try_from(st.st_size).unwrap_or(0),
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// Whether this is a FIFO.
    pub fn is_fifo(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFIFO
    }
}

fn dir_raw(dirfd: Option<BorrowedFd<'_>>) -> RawFd {
    dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd())
}

/// `fstat(2)` (works on `O_PATH` fds).
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    // SAFETY: an all-zero `struct stat` is a valid value of the type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open fd and `st` a writable stat buffer we own.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(FileStat::from_raw(&st))
}

/// `fstatat(2)`: `flags` is `AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH` or 0.
pub fn fstatat(dirfd: Option<BorrowedFd<'_>>, path: &CStr, flags: i32) -> io::Result<FileStat> {
    // SAFETY: an all-zero `struct stat` is a valid value of the type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated, `st` a writable stat buffer we own,
    // `dirfd` an open fd or AT_FDCWD.
    cvt(unsafe { libc::fstatat(dir_raw(dirfd), path.as_ptr(), &mut st, flags) })?;
    Ok(FileStat::from_raw(&st))
}

/// `readlinkat(2)`: the target of the symlink `path` relative to `dirfd`
/// (an empty `path` reads the symlink an `O_PATH` fd refers to).
pub fn readlinkat(dirfd: Option<BorrowedFd<'_>>, path: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `path` is NUL-terminated; `buf` is writable for `buf.len()` bytes.
    let n = cvt_long(unsafe {
        libc::readlinkat(
            dir_raw(dirfd),
            path.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        ) as libc::c_long
    })? as usize;
    buf.truncate(n);
    Ok(buf)
}

/// The file system type (`f_type` of `fstatfs(2)`) of the file behind `fd`.
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: an all-zero `struct statfs` is a valid value of the type.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open fd and `st` a writable statfs buffer we own.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// Whether the file behind `fd` is on a mount without exec rights
/// (`ST_NOEXEC` in `f_flag` of `fstatvfs(3)`).
pub fn on_noexec_mount(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: an all-zero `struct statvfs` is a valid value of the type.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open fd and `st` a writable statvfs buffer we own.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_flag as u64 & libc::ST_NOEXEC as u64 != 0)
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: BorrowedFd<'_>, len: i64) -> io::Result<()> {
    retry_eintr(|| {
        // SAFETY: ftruncate takes an open fd and an integer.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })
    })
    .map(drop)
}

/// `inotify_add_watch(2)`: the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &CStr, mask: u32) -> io::Result<i32> {
    // SAFETY: `path` is NUL-terminated; the call takes an fd and an integer.
    cvt(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) })
}

/// `fchmod(2)`.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod takes an open fd and an integer.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// `linkat(2)`.
pub fn linkat(
    olddir: Option<BorrowedFd<'_>>,
    old: &CStr,
    newdir: Option<BorrowedFd<'_>>,
    new: &CStr,
    flags: i32,
) -> io::Result<()> {
    retry_eintr(|| {
        // SAFETY: both paths are NUL-terminated; the fds are open or AT_FDCWD.
        cvt(unsafe {
            libc::linkat(
                dir_raw(olddir),
                old.as_ptr(),
                dir_raw(newdir),
                new.as_ptr(),
                flags,
            )
        })
    })
    .map(drop)
}

/// `renameat2(2)`.
pub fn renameat2(
    olddir: Option<BorrowedFd<'_>>,
    old: &CStr,
    newdir: Option<BorrowedFd<'_>>,
    new: &CStr,
    flags: u32,
) -> io::Result<()> {
    retry_eintr(|| {
        // SAFETY: both paths are NUL-terminated; the fds are open or AT_FDCWD;
        // the flags are an integer the kernel validates.
        cvt_long(unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                dir_raw(olddir) as libc::c_long,
                old.as_ptr(),
                dir_raw(newdir) as libc::c_long,
                new.as_ptr(),
                flags as libc::c_long,
            )
        })
    })
    .map(drop)
}

/// `unlinkat(2)`: `flags` is 0 or `AT_REMOVEDIR`.
pub fn unlinkat(dirfd: Option<BorrowedFd<'_>>, path: &CStr, flags: i32) -> io::Result<()> {
    retry_eintr(|| {
        // SAFETY: `path` is NUL-terminated; the fd is open or AT_FDCWD.
        cvt(unsafe { libc::unlinkat(dir_raw(dirfd), path.as_ptr(), flags) })
    })
    .map(drop)
}

/// `symlinkat(2)`: creates `linkpath` (relative to `dirfd`) pointing to `target`.
pub fn symlinkat(target: &CStr, dirfd: Option<BorrowedFd<'_>>, linkpath: &CStr) -> io::Result<()> {
    retry_eintr(|| {
        // SAFETY: both strings are NUL-terminated; the fd is open or AT_FDCWD.
        cvt(unsafe { libc::symlinkat(target.as_ptr(), dir_raw(dirfd), linkpath.as_ptr()) })
    })
    .map(drop)
}

/// `fchmodat(2)` of `path` (no flags: a final symlink is followed, which is
/// how `/proc/self/fd/N` reaches exactly the pinned file).
pub fn chmod(path: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the mode is an integer.
    cvt(unsafe { libc::fchmodat(libc::AT_FDCWD, path.as_ptr(), mode as libc::mode_t, 0) }).map(drop)
}

/// `fchownat(2)` (`AT_EMPTY_PATH` with an empty `path` acts on `dirfd`
/// itself, an `O_PATH` fd included).
pub fn fchownat(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    uid: u32,
    gid: u32,
    flags: i32,
) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the fd is open or AT_FDCWD.
    cvt(unsafe { libc::fchownat(dir_raw(dirfd), path.as_ptr(), uid, gid, flags) }).map(drop)
}

/// `utimensat(2)`: `times` `None` sets both to now.
pub fn utimensat(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    times: Option<&[libc::timespec; 2]>,
    flags: i32,
) -> io::Result<()> {
    let ptr = times.map_or(std::ptr::null(), |t| t.as_ptr());
    // SAFETY: `path` is NUL-terminated; `ptr` is null or points to two
    // timespecs we own; the fd is open or AT_FDCWD.
    cvt(unsafe { libc::utimensat(dir_raw(dirfd), path.as_ptr(), ptr, flags) }).map(drop)
}

/// `setxattr(2)` (`follow`) or `lsetxattr(2)` of `path`.
pub fn setxattr(
    path: &CStr,
    name: &CStr,
    value: &[u8],
    flags: i32,
    follow: bool,
) -> io::Result<()> {
    let f = if follow {
        libc::setxattr
    } else {
        libc::lsetxattr
    };
    // SAFETY: `path` and `name` are NUL-terminated; `value` is readable for
    // its length.
    cvt(unsafe {
        f(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

/// `removexattr(2)` (`follow`) or `lremovexattr(2)` of `path`.
pub fn removexattr(path: &CStr, name: &CStr, follow: bool) -> io::Result<()> {
    let f = if follow {
        libc::removexattr
    } else {
        libc::lremovexattr
    };
    // SAFETY: `path` and `name` are NUL-terminated.
    cvt(unsafe { f(path.as_ptr(), name.as_ptr()) }).map(drop)
}

/// `file_setattr(2)` (Linux 6.17; the same number on x86_64 and in the
/// generic table) of `path` with the caller's `struct file_attr` bytes.
pub fn file_setattr(path: &CStr, attr: &[u8], flags: u32) -> io::Result<()> {
    const NR_FILE_SETATTR: libc::c_long = 469;
    // SAFETY: `path` is NUL-terminated; `attr` is readable for its length,
    // which is passed as the size.
    cvt_long(unsafe {
        libc::syscall(
            NR_FILE_SETATTR,
            libc::AT_FDCWD as libc::c_long,
            path.as_ptr(),
            attr.as_ptr(),
            attr.len(),
            flags as libc::c_long,
        )
    })
    .map(drop)
}

/// `mkdirat(2)`.
pub fn mkdirat(dirfd: Option<BorrowedFd<'_>>, path: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the fd is open or AT_FDCWD.
    cvt(unsafe { libc::mkdirat(dir_raw(dirfd), path.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `mknodat(2)` with the kernel's 32-bit device number, as the program
/// passed it.
pub fn mknodat(dirfd: Option<BorrowedFd<'_>>, path: &CStr, mode: u32, dev: u32) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the fd is open or AT_FDCWD; mode and
    // device are integers the kernel validates.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mknodat,
            dir_raw(dirfd) as libc::c_long,
            path.as_ptr(),
            mode as libc::c_long,
            dev as libc::c_long,
        )
    })
    .map(drop)
}

/// `fstatat(2)` with the kernel's `struct stat` returned as bytes (what
/// `newfstatat` writes to a caller's buffer; libc's `struct stat` is the
/// kernel's on x86_64 and aarch64).
pub fn fstatat_bytes(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: i32,
) -> io::Result<Vec<u8>> {
    // SAFETY: an all-zero `struct stat` is a valid value of the type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated, `st` a writable stat buffer we own,
    // `dirfd` an open fd or AT_FDCWD.
    cvt(unsafe { libc::fstatat(dir_raw(dirfd), path.as_ptr(), &mut st, flags) })?;
    // SAFETY: `st` is a plain C struct of `size_of::<libc::stat>()`
    // initialised bytes (zeroed, then filled by the kernel).
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&st as *const libc::stat).cast::<u8>(),
            std::mem::size_of::<libc::stat>(),
        )
    };
    Ok(bytes.to_vec())
}

/// `statx(2)`: the 256-byte `struct statx` as bytes.
pub fn statx_bytes(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: i32,
    mask: u32,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    // SAFETY: `path` is NUL-terminated; `buf` is writable for 256 bytes, the
    // size of `struct statx`; `dirfd` is an open fd or AT_FDCWD.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_statx,
            dir_raw(dirfd) as libc::c_long,
            path.as_ptr(),
            flags as libc::c_long,
            mask as libc::c_long,
            buf.as_mut_ptr(),
        )
    })?;
    Ok(buf)
}

/// `faccessat2(2)`.
pub fn faccessat2(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    mode: i32,
    flags: i32,
) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the fd is open or AT_FDCWD.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            dir_raw(dirfd) as libc::c_long,
            path.as_ptr(),
            mode as libc::c_long,
            flags as libc::c_long,
        )
    })
    .map(drop)
}

/// The file offset of the open file description behind `fd`.
pub fn file_offset(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: lseek takes an open fd and integers; SEEK_CUR with 0 moves nothing.
    let off = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_CUR) };
    if off < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(off as u64)
}

/// `getxattr(2)`/`lgetxattr(2)` (`follow`) of `path` into a buffer of
/// `size` bytes (0: only the length, as the kernel answers).
pub fn getxattr_path(
    path: &CStr,
    name: &CStr,
    size: usize,
    follow: bool,
) -> io::Result<(usize, Vec<u8>)> {
    let mut buf = vec![0u8; size.min(65536)];
    let f = if follow {
        libc::getxattr
    } else {
        libc::lgetxattr
    };
    // SAFETY: `path` and `name` are NUL-terminated; `buf` is writable for
    // its length, which is passed as the size.
    let n = unsafe {
        f(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate((n as usize).min(buf.len()));
    Ok((n as usize, buf))
}

/// `listxattr(2)`/`llistxattr(2)` (`follow`) of `path`, as
/// [`getxattr_path`].
pub fn listxattr_path(path: &CStr, size: usize, follow: bool) -> io::Result<(usize, Vec<u8>)> {
    let mut buf = vec![0u8; size.min(65536)];
    let f = if follow {
        libc::listxattr
    } else {
        libc::llistxattr
    };
    // SAFETY: `path` is NUL-terminated; `buf` is writable for its length,
    // which is passed as the size.
    let n = unsafe { f(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate((n as usize).min(buf.len()));
    Ok((n as usize, buf))
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(false)` if another holds the lock.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: flock takes an open fd and flags.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `ioctl(fd, cmd, buf)` with an argument buffer we own (read and written
/// by the kernel as `cmd` says; the caller sizes it for `cmd`).
pub fn ioctl_buf(fd: BorrowedFd<'_>, cmd: u64, buf: &mut [u8]) -> io::Result<i32> {
    // SAFETY: `buf` is writable for its length, which the caller made the
    // size `cmd` reads or writes; `fd` is open.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), cmd as _, buf.as_mut_ptr()) })
}
