//! `FICLONE` and `FICLONERANGE` under `--max-disk`: a clone into a file of
//! the upper tree makes it hold the source's bytes (its length, counted
//! whole at the next exact count), so the growth is charged before the
//! call, and the call is made on the program's behalf, on duplicates of
//! both fds with the range copied, under the file's lock: a thread that
//! changes the range or the fds after the charge changes nothing. A clone
//! "to the end" (`FICLONE`, or a length of 0) is made with the length the
//! source had when charged (a source grown meanwhile is cloned up to
//! there). A clone that fails is given back. Called by the view's `ioctl`
//! handler (`handlers`), which runs it with the task's capabilities.

use std::os::fd::{AsFd, AsRawFd};

use crate::action::{Errno, NotifAction};
use crate::handler::HandlerCtx;
use crate::paths::as_supervisor;
use crate::sys::path::{fstat, ioctl_buf};

use super::layer::Layer;
use super::quota::Quota;

/// `FICLONE`: the whole source file, into the fd at offset 0.
pub(super) const FICLONE: u64 = 0x4004_9409;
/// `FICLONERANGE`: `struct file_clone_range { s64 src_fd; u64
/// src_offset, src_length, dest_offset; }` (a length of 0: to the end).
pub(super) const FICLONERANGE: u64 = 0x4020_940d;

/// Performs the clone `cmd` (one of the two) for the program, charged.
pub(super) fn clone_charged(
    cx: &HandlerCtx<'_>,
    layer: &std::sync::Arc<Layer>,
    quota: &Quota,
    cmd: u64,
) -> Result<NotifAction, Errno> {
    let io = |e: std::io::Error| Errno::from_io(&e);
    let dest = as_supervisor(|| cx.dup_fd(cx.arg(0) as u32 as i32)).map_err(io)?;
    let range = if cmd == FICLONERANGE {
        let r = cx
            .read_mem(cx.arg(2), 32)
            .map_err(|_| Errno::of(libc::EFAULT))?;
        Some(r)
    } else {
        None
    };
    let src_no = match &range {
        Some(r) => i64::from_ne_bytes(r[0..8].try_into().expect("8 bytes")),
        None => i64::from(cx.arg(2) as u32 as i32),
    };
    let src_no = i32::try_from(src_no).map_err(|_| Errno::of(libc::EBADF))?;
    let src = as_supervisor(|| cx.dup_fd(src_no)).map_err(io)?;
    let word = |r: &[u8], at: usize| u64::from_ne_bytes(r[at..at + 8].try_into().expect("8"));
    let st = fstat(dest.as_fd()).map_err(io)?;
    let grows = st.is_file() && layer.upper_rel(dest.as_fd()).is_some();
    let _file = grows.then(|| quota.lock_file(st.ino));
    let src_size = fstat(src.as_fd()).map_err(io)?.size;
    // `struct file_clone_range` with an explicit length: the whole source
    // for `FICLONE`.
    let mut range = range.unwrap_or_else(|| {
        let mut r = vec![0u8; 32];
        r[16..24].copy_from_slice(&src_size.to_ne_bytes());
        r
    });
    let (off, len) = (word(&range, 8), word(&range, 16));
    let len = if len == 0 {
        src_size.saturating_sub(off)
    } else {
        len
    };
    if len == 0 {
        // Nothing left from the offset: an empty source clones nothing,
        // an offset past its end is the kernel's `EINVAL` (never a length
        // of 0 let through: "to the end" of a source grown meanwhile).
        return match cmd {
            FICLONE => Ok(NotifAction::ReturnValue(0)),
            _ => Err(Errno::of(libc::EINVAL)),
        };
    }
    range[16..24].copy_from_slice(&len.to_ne_bytes());
    let end = word(&range, 24).saturating_add(len);
    let layered: std::sync::Arc<dyn crate::paths::Layered> = layer.clone();
    let charge = crate::paths::Charge::growth(Some(&layered).filter(|_| grows), dest.as_fd(), end)?;
    range[0..8].copy_from_slice(&i64::from(src.as_raw_fd()).to_ne_bytes());
    let r = ioctl_buf(dest.as_fd(), FICLONERANGE, &mut range);
    charge.settle(&r);
    r.map(|v| NotifAction::ReturnValue(i64::from(v)))
        .map_err(io)
}
