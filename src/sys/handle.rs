//! File handles (`name_to_handle_at(2)`, `open_by_handle_at(2)`): a name
//! for an inode that outlives every path to it, which the kernel resolves
//! only while the inode is alive (in memory, or on disk with a link). The
//! copy-on-write layer's size cap (`cow::quota`) tells by one whether a
//! file that lost its last name is still held by anything (an fd, an
//! `O_PATH` fd, a mapping, an fd in flight in a unix socket): its blocks
//! are freed exactly when the handle goes stale.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{cvt, cvt_long};

/// The largest handle the kernel makes (`MAX_HANDLE_SZ`).
const MAX_HANDLE_SZ: usize = 128;

/// The header of `struct file_handle`: `handle_bytes` (u32) and
/// `handle_type` (i32), followed by the handle's bytes.
const HEADER: usize = 8;

/// A file handle: `struct file_handle` as the kernel filled it.
#[derive(Clone, PartialEq, Eq)]
pub struct FileHandle(Box<[u8]>);

impl std::fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FileHandle").field(&self.0.len()).finish()
    }
}

/// The handle of the file `fd` is open on (any fd, `O_PATH` too); fails
/// (`EOPNOTSUPP`) on a file system that makes none.
pub fn of(fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    // `u32` words: the struct's alignment.
    let mut buf = [0u32; (HEADER + MAX_HANDLE_SZ) / 4];
    buf[0] = MAX_HANDLE_SZ as u32;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` is a writable `struct file_handle` whose
    // `handle_bytes` says the room after the header; the path is a
    // NUL-terminated empty string with `AT_EMPTY_PATH`, `fd` an open fd,
    // `mount_id` a writable int.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    })?;
    let len = (buf[0] as usize).min(MAX_HANDLE_SZ);
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(FileHandle(bytes[..HEADER + len].into()))
}

/// Opens the file `h` names (`O_PATH`) on the file system `mount` (an fd
/// of it, not `O_PATH`): `ESTALE` once the inode is gone. Needs
/// `CAP_DAC_READ_SEARCH`.
pub fn open(mount: BorrowedFd<'_>, h: &FileHandle) -> io::Result<OwnedFd> {
    let mut buf = [0u32; (HEADER + MAX_HANDLE_SZ) / 4];
    for (i, w) in h.0.chunks(4).enumerate() {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        buf[i] = u32::from_ne_bytes(b);
    }
    // SAFETY: `buf` is a `struct file_handle` as `name_to_handle_at` made
    // it (its `handle_bytes` within the buffer); `mount` an open fd.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            buf.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        ) as libc::c_int
    })?;
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
