//! An overlay file system over a directory, in a mount namespace of the
//! caller's own: what the spawned child does before it drops its
//! capabilities (the copy-on-write work directory's overlay route), and a
//! probe the parent makes once, on a thread of its own, to learn whether
//! the host allows it.
//!
//! Both run the same steps: a new mount namespace (`CLONE_NEWNS`), every
//! mount made private in it (nothing mounted here propagates to the
//! host's), the ancestors of the target and of the covered directories
//! bound onto themselves (mount points: not renamed or removed there),
//! `overlay` mounted on the target (lower: the target itself),
//! then an empty read-only `tmpfs` over each covered directory (the upper
//! and work directories and the state directory: the program reaches the
//! layer only through the overlay). Needs `CAP_SYS_ADMIN`.

use std::ffi::CString;
use std::io;

use super::raw::syscall;

/// One overlay to mount, prepared in the parent (the strings stay alive
/// and unchanged until the child has exec'd).
#[derive(Debug, Clone)]
pub struct OverlayMount {
    /// The directory the overlay is mounted on (and its lower layer).
    pub target: CString,
    /// The mount data (`lowerdir=...,upperdir=...,workdir=...,...`).
    pub data: CString,
    /// Directories covered by an empty read-only `tmpfs` afterwards.
    pub covers: Vec<CString>,
    /// Directories bound onto themselves first, outermost first: the
    /// ancestors of the target and of the covers. A mount point cannot be
    /// renamed or removed in its namespace (`EBUSY`), so the program can
    /// move neither DIR nor the storage away from the paths the
    /// supervisor reads and commits by.
    pub pins: Vec<CString>,
}

const OVERLAY: &[u8] = b"overlay\0";
const TMPFS: &[u8] = b"tmpfs\0";
const ROOT: &[u8] = b"/\0";
const COVER_DATA: &[u8] = b"size=4k,nr_inodes=1,mode=000\0";

/// Escapes a path for overlay mount data (`\`, `,` and `:` are
/// separators there).
pub fn escape_option(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if matches!(b, b'\\' | b',' | b':') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The steps, with raw calls only (the `CLONE_VM` child calls it):
/// 0 or `-errno`.
///
/// # Safety
/// `m`'s strings must stay alive for the call; in the spawned child, only
/// from `spawn_child` (raw calls, nothing allocated).
pub(super) unsafe fn enter_raw(m: &OverlayMount) -> isize {
    // SAFETY: unshare takes a flag word.
    let r = unsafe { syscall(libc::SYS_unshare, &[libc::CLONE_NEWNS as usize]) };
    if r < 0 {
        return r;
    }
    // SAFETY: mount reads NUL-terminated strings alive for the call; a
    // propagation change takes no source, type or data.
    let r = unsafe {
        syscall(
            libc::SYS_mount,
            &[
                0,
                ROOT.as_ptr() as usize,
                0,
                (libc::MS_REC | libc::MS_PRIVATE) as usize,
                0,
            ],
        )
    };
    if r < 0 {
        return r;
    }
    for pin in &m.pins {
        // SAFETY: as above; a recursive bind takes no type or data.
        let r = unsafe {
            syscall(
                libc::SYS_mount,
                &[
                    pin.as_ptr() as usize,
                    pin.as_ptr() as usize,
                    0,
                    (libc::MS_BIND | libc::MS_REC) as usize,
                    0,
                ],
            )
        };
        if r < 0 {
            return r;
        }
    }
    // SAFETY: as above; `m`'s strings are NUL-terminated and alive.
    let r = unsafe {
        syscall(
            libc::SYS_mount,
            &[
                OVERLAY.as_ptr() as usize,
                m.target.as_ptr() as usize,
                OVERLAY.as_ptr() as usize,
                0,
                m.data.as_ptr() as usize,
            ],
        )
    };
    if r < 0 {
        return r;
    }
    for cover in &m.covers {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        // SAFETY: as above.
        let r = unsafe {
            syscall(
                libc::SYS_mount,
                &[
                    TMPFS.as_ptr() as usize,
                    cover.as_ptr() as usize,
                    TMPFS.as_ptr() as usize,
                    flags as usize,
                    COVER_DATA.as_ptr() as usize,
                ],
            )
        };
        if r < 0 {
            return r;
        }
    }
    0
}

/// Whether the host lets this process mount `m` (in a mount namespace of
/// a thread made for the probe, which ends with it: nothing is left
/// mounted anywhere).
pub fn probe(m: &OverlayMount) -> io::Result<()> {
    let m = m.clone();
    std::thread::Builder::new()
        .name("overlay-probe".into())
        .spawn(move || {
            // SAFETY: unshare(CLONE_FS) takes a flag word; it gives this
            // thread a root and working directory of its own, which the
            // mount namespace below needs (the thread ends with both).
            let r = unsafe { syscall(libc::SYS_unshare, &[libc::CLONE_FS as usize]) };
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r as i32));
            }
            // SAFETY: `m` lives for the call.
            let r = unsafe { enter_raw(&m) };
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r as i32));
            }
            Ok(())
        })?
        .join()
        .map_err(|_| io::Error::other("the overlay probe thread panicked"))?
}

/// `path` as a C string (`EINVAL` if it holds a NUL byte).
pub fn c_path(path: &std::path::Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}
