//! `--deterministic-dirs`: `getdents64` (and `getdents`) list a directory
//! in byte order of the names, on every file system.
//!
//! Each call is answered from a fresh, whole listing of the directory the
//! task's fd names (read through a reopen of its `pidfd_getfd` duplicate,
//! so the task's own position is not disturbed), sorted; the task's file
//! position is used as the index of the next entry (set with `lseek` on
//! the shared open file description after the entries are written), so
//! `rewinddir`, `telldir` and `seekdir` keep working. A large directory
//! costs a whole read per call (a few per 32 KiB buffer of `readdir`).

use std::io::{Seek, SeekFrom};
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::action::NotifAction;
use crate::arch::Arch;
use crate::error::Result;
use crate::handler::HandlerCtx;
use crate::supervisor::enforcement::Install;
use crate::sys::host::getdents64;
use crate::sys::path::fstat;

/// One directory entry.
struct Entry {
    name: Vec<u8>,
    ino: u64,
    kind: u8,
}

#[derive(Clone, Copy)]
enum Layout {
    /// `struct linux_dirent64`.
    Dirent64,
    /// `struct linux_dirent` (type in the record's last byte).
    Dirent,
}

/// Traps `getdents64` and `getdents`.
pub(crate) fn install(install: &mut Install<'_>) -> Result<()> {
    for (name, layout) in [
        ("getdents64", Layout::Dirent64),
        ("getdents", Layout::Dirent),
    ] {
        if let Some(nr) = crate::syscalls::number(Arch::native(), name) {
            install.builtin(
                nr,
                Arc::new(move |cx: &HandlerCtx<'_>| getdents(cx, layout)),
            )?;
        }
    }
    Ok(())
}

fn getdents(cx: &HandlerCtx<'_>, layout: Layout) -> NotifAction {
    let fd = cx.arg(0) as u32 as i32;
    let count = (cx.arg(2) as u32 as usize).min(1 << 24);
    let dup = match cx.dup_fd(fd) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return NotifAction::Errno(libc::ESRCH),
        Err(_) => return NotifAction::Errno(libc::EBADF),
    };
    match fstat(dup.as_fd()) {
        Ok(st) if st.is_dir() => {}
        Ok(_) => return NotifAction::Errno(libc::ENOTDIR),
        Err(_) => return NotifAction::Errno(libc::EBADF),
    }
    let mut shared = std::fs::File::from(dup);
    let Ok(pos) = shared.stream_position() else {
        return NotifAction::Errno(libc::EINVAL);
    };
    let entries = match listing(&shared) {
        Ok(e) => e,
        Err(e) => return NotifAction::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let start = usize::try_from(pos).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut next = start;
    for (i, e) in entries.iter().enumerate().skip(start) {
        let rec = record(e, (i + 1) as u64, layout);
        if out.len() + rec.len() > count {
            break;
        }
        out.extend_from_slice(&rec);
        next = i + 1;
    }
    if out.is_empty() && start < entries.len() {
        // Not even one entry fits, as the kernel answers.
        return NotifAction::Errno(libc::EINVAL);
    }
    if !out.is_empty() {
        if cx.write_mem(cx.arg(1), &out).is_err() {
            return NotifAction::Errno(libc::EFAULT);
        }
        if let Err(e) = shared.seek(SeekFrom::Start(next as u64)) {
            log::debug!("getdents: cannot move the directory position: {e}");
            return NotifAction::Errno(libc::EIO);
        }
    }
    NotifAction::ReturnValue(out.len() as i64)
}

/// Every entry of the directory `dir` is open on, sorted by name.
fn listing(dir: &std::fs::File) -> std::io::Result<Vec<Entry>> {
    use std::os::fd::AsRawFd;
    let fresh = std::fs::File::open(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = getdents64(fresh.as_fd(), &mut buf)?;
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off + 19 < n {
            let ino = u64::from_ne_bytes(buf[off..off + 8].try_into().expect("8 bytes"));
            let reclen =
                u16::from_ne_bytes(buf[off + 16..off + 18].try_into().expect("2 bytes")) as usize;
            if reclen < 20 || off + reclen > n {
                break;
            }
            let kind = buf[off + 18];
            let name_area = &buf[off + 19..off + reclen];
            let len = name_area
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_area.len());
            entries.push(Entry {
                name: name_area[..len].to_vec(),
                ino,
                kind,
            });
            off += reclen;
        }
    }
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// One record in `layout`, with `d_off` = `next`.
fn record(e: &Entry, next: u64, layout: Layout) -> Vec<u8> {
    let header = match layout {
        Layout::Dirent64 => 19,
        Layout::Dirent => 18,
    };
    let tail = match layout {
        Layout::Dirent64 => 1,
        Layout::Dirent => 2,
    };
    let reclen = (header + e.name.len() + tail).next_multiple_of(8);
    let mut r = vec![0u8; reclen];
    r[..8].copy_from_slice(&e.ino.to_ne_bytes());
    r[8..16].copy_from_slice(&next.to_ne_bytes());
    r[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
    match layout {
        Layout::Dirent64 => {
            r[18] = e.kind;
            r[19..19 + e.name.len()].copy_from_slice(&e.name);
        }
        Layout::Dirent => {
            r[18..18 + e.name.len()].copy_from_slice(&e.name);
            r[reclen - 1] = e.kind;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_aligned_and_terminated() {
        let e = Entry {
            name: b"abc".to_vec(),
            ino: 7,
            kind: libc::DT_REG,
        };
        let r = record(&e, 3, Layout::Dirent64);
        assert_eq!(r.len(), 24);
        assert_eq!(&r[19..23], b"abc\0");
        assert_eq!(r[18], libc::DT_REG);
        let r = record(&e, 3, Layout::Dirent);
        assert_eq!(r.len(), 24);
        assert_eq!(r[23], libc::DT_REG);
        assert_eq!(&r[18..22], b"abc\0");
    }
}
