//! The write family under `--max-disk`, made on the program's behalf:
//! `write`, `pwrite64`, the vectors, `fallocate`, `ftruncate`,
//! `copy_file_range`, `sendfile` and `splice`. The program runs with
//! `RLIMIT_FSIZE` 0, so the kernel refuses (`EFBIG`, `SIGXFSZ`) every
//! write and growth it makes itself into a regular file of an ordinary
//! file system: a call let through for a pipe whose number a second thread
//! fills with a layer fd meanwhile lands nothing. So a call on a regular
//! file is made by the supervisor (whose limit is the user's, unlimited:
//! see `sandbox`), charged when the file is one of the upper tree,
//! uncharged elsewhere; a pseudo file (procfs, sysfs, cgroupfs: no limit
//! there, and `/proc/self` would name the supervisor) and any other fd (a
//! pipe, a socket, a tty) run as they are, except `fallocate`, which the
//! limit does not cover and which is made on a duplicate of any fd.
//! Each call is made on a duplicate of the program's fd (the same open
//! file description: its position and flags), with what it
//! reads from the program's memory (the data, the iovecs, the offsets)
//! copied once, at an explicit offset, and exactly the range it was charged
//! for: a thread that changes an offset, an iovec, the fd's position, its
//! `O_APPEND` flag or the fd itself after the charge changes nothing
//! (a copy is at most what was charged: a short count, as the kernel may
//! give). The offsets are written back, or the positions moved, as the
//! kernel does. Calls on one file are charged and made in turn (the
//! quota's file lock), so an append is charged where it lands.
//!
//! Called by the view's handler (`handlers`) with the task's rights taken
//! on; a `splice` from an empty pipe waits on the deferral pool.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::action::{Errno, NotifAction};
use crate::handler::HandlerCtx;
use crate::paths::resolve::Rights;
use crate::paths::{as_supervisor, Charged};
use crate::sys::filewrite::{self, RWF_NOAPPEND};
use crate::sys::path::{fstat, ftruncate};

use super::layer::Layer;
use super::quota::{Growth, Quota};

/// How a call of the write family names its file, range and data.
#[derive(Clone, Copy, Debug)]
pub(super) enum WriteKind {
    /// (len arg, offset arg if positional)
    Plain {
        len: usize,
        off: Option<usize>,
    },
    /// (offset arg if positional, `RWF_*` flags arg if the call has one)
    Vector {
        off: Option<usize>,
        rwf: Option<usize>,
    },
    Fallocate,
    Ftruncate,
    CopyFileRange,
    Sendfile,
    Splice,
}

/// The most one call writes (the kernel's `MAX_RW_COUNT`).
const MAX_RW: u64 = 0x7fff_f000;

/// The most the supervisor reads of the program's data at a time.
const CHUNK: usize = 1 << 20;

/// `fallocate`'s modes that grow nothing (a hole punched, a range
/// collapsed) and the one that grows the file by its length wherever it
/// starts (an inserted range).
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: i32 = 0x08;
const FALLOC_FL_INSERT_RANGE: i32 = 0x20;

/// `pwritev2`'s flag to write at the end of the file (`RWF_APPEND`).
const RWF_APPEND: u64 = 0x10;

/// `splice`'s flag not to wait for the pipe.
const SPLICE_F_NONBLOCK: u32 = 0x02;

/// How often a waiting `splice` looks whether its call still waits.
const SPLICE_TICK_MS: i32 = 100;

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_io(e)
}

fn einval() -> Errno {
    Errno::of(libc::EINVAL)
}

/// The call `kind` of the program, made for it if its fd is a regular file
/// of the upper tree (anything else runs as it is: `Continue`).
pub(super) fn write(
    layer: &Arc<Layer>,
    quota: &Quota,
    cx: &HandlerCtx<'_>,
    kind: WriteKind,
    rights: impl FnOnce() -> Result<Rights, Errno>,
) -> Result<NotifAction, Errno> {
    let out_no = match kind {
        WriteKind::CopyFileRange | WriteKind::Splice => cx.arg(2),
        _ => cx.arg(0),
    } as u32 as i32;
    // No such fd: `EBADF`, answered here (never a call let through for a
    // number another thread may fill meanwhile).
    let out = as_supervisor(|| cx.dup_fd(out_no)).map_err(|e| errno(&e))?;
    let st = fstat(out.as_fd()).map_err(|e| errno(&e))?;
    if !st.is_file() {
        return match kind {
            // `RLIMIT_FSIZE` does not cover `fallocate` (a `KEEP_SIZE`
            // allocation): never let through, made on the duplicate (the
            // kernel's own answer for a pipe, a socket, a device).
            WriteKind::Fallocate => {
                let rights = rights()?;
                let _acting = rights.assume()?;
                let (mode, off, len) = (cx.arg(1) as u32 as i32, cx.arg(2), cx.arg(3));
                filewrite::fallocate(out.as_fd(), mode, off, len).map_err(|e| errno(&e))?;
                Ok(NotifAction::ReturnValue(0))
            }
            _ => Ok(NotifAction::Continue),
        };
    }
    // One read of the fd's path. A file of the layer's device whose path
    // cannot be read (longer than the kernel gives: a tree moved deep
    // beneath a held fd) counts as the layer's: charged and made, never
    // let through uncharged.
    let in_layer = layer.is_upper_file(out.as_fd(), &st);
    // A pseudo file (`/proc/self/...`) is written by the program itself:
    // made by the supervisor it would name the supervisor. The kernel
    // applies no size limit there, and a layer file `dup2`ed onto its
    // number meanwhile gets `EFBIG` (the program's `RLIMIT_FSIZE` is 0).
    if !in_layer && is_pseudo_file(out.as_fd())? {
        return Ok(NotifAction::Continue);
    }
    let w = Target {
        quota,
        layer,
        out,
        charged: in_layer,
        ino: st.ino,
    };
    let rights = rights()?;
    let _acting = rights.assume()?;
    match kind {
        WriteKind::Plain { len, off } => {
            let segs = [(cx.arg(1), cx.arg(len).min(MAX_RW))];
            // A negative offset to `pwrite64` is `EINVAL` (`u64::MAX` is
            // the end-of-file marker of `write_data`, never the program's).
            let at = off.map(|i| cx.arg(i));
            if at.is_some_and(|a| a > i64::MAX as u64) {
                return Err(einval());
            }
            w.write_data(cx, &segs, at, 0)
        }
        WriteKind::Vector { off, rwf } => {
            let flags = rwf.map_or(0, |i| cx.arg(i));
            let segs = read_iovecs(cx)?;
            let at = match off.map(|i| cx.arg(i)) {
                // -1 to `pwritev2`: the fd's position.
                Some(u64::MAX) if rwf.is_some() => None,
                Some(o) if o > i64::MAX as u64 => return Err(einval()),
                o => o,
            };
            // Other `RWF_*` flags (sync, nowait) are the program's own.
            let rest = (flags & !RWF_APPEND) as i32;
            if flags & RWF_APPEND != 0 {
                w.write_data(cx, &segs, Some(u64::MAX), rest)
            } else {
                w.write_data(cx, &segs, at, rest)
            }
        }
        WriteKind::Fallocate => w.fallocate(cx),
        WriteKind::Ftruncate => w.ftruncate(cx),
        WriteKind::CopyFileRange => w.copy_file_range(cx),
        WriteKind::Sendfile => w.sendfile(cx),
        WriteKind::Splice => w.splice(cx, rights),
    }
}

/// The iovecs of a vector call (arg 1, arg 2 of them), copied once.
fn read_iovecs(cx: &HandlerCtx<'_>) -> Result<Vec<(u64, u64)>, Errno> {
    let n = cx.arg(2) as usize;
    if n > 1024 {
        return Err(einval());
    }
    let raw = cx
        .read_mem(cx.arg(1), n * 16)
        .map_err(|_| Errno::of(libc::EFAULT))?;
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
    let mut left = MAX_RW;
    let mut segs = Vec::with_capacity(n);
    for ch in raw.chunks(16) {
        let len = word(&ch[8..16]);
        if len > i64::MAX as u64 {
            return Err(einval());
        }
        let take = len.min(left);
        left -= take;
        segs.push((word(&ch[0..8]), take));
    }
    Ok(segs)
}

/// A regular file a call writes, through the program's own open file
/// description (a duplicate of its fd).
struct Target<'a> {
    quota: &'a Quota,
    layer: &'a Arc<Layer>,
    out: OwnedFd,
    /// Whether it is a file of the upper tree: its growth is charged
    /// (any other regular file is written as it is, uncharged).
    charged: bool,
    ino: u64,
}

impl Target<'_> {
    /// The file's size, read under its lock. A file of the upper tree
    /// without a name (an `O_TMPFILE`, an unlinked file) is made known to
    /// the quota by its handle: it is counted while it lives.
    fn size(&self) -> Result<u64, Errno> {
        let st = fstat(self.out.as_fd()).map_err(|e| errno(&e))?;
        if self.charged && st.nlink == 0 {
            self.quota.nameless(self.out.as_fd(), &st);
        }
        Ok(st.size)
    }

    /// Whether the program's writes through the fd go to the end.
    fn appends(&self) -> bool {
        crate::sys::net::status_flags(self.out.as_fd()).map_or(true, |f| f & libc::O_APPEND != 0)
    }

    /// Charges the growth of the file (`size` bytes now) to `end`; `None`
    /// for a file outside the upper tree.
    fn charge(&self, size: u64, end: u64) -> Result<Option<Charged>, Errno> {
        if !self.charged {
            return Ok(None);
        }
        let g = Growth {
            ino: self.ino,
            size,
            end,
        };
        let layer = self.layer;
        self.quota
            .charge_file(g, &layer.upper, &|ino| layer.is_placeholder_ino(ino))
            .map(Some)
            .map_err(|_| Errno::of(libc::ENOSPC))
    }

    /// Keeps the charge `c` if `r` is a success, else gives it back.
    fn settle<T>(&self, c: Option<Charged>, r: &Result<T, Errno>) {
        match (c, r) {
            (None, _) => {}
            (Some(c), Ok(_)) => self.quota.settle(c),
            (Some(c), Err(_)) => self.quota.refund(c),
        }
    }

    /// Tells the quota that the file gave space back (a file of the
    /// upper tree only).
    fn freed(&self) {
        if self.charged {
            self.quota.freed();
        }
    }

    /// `write`, `pwrite64` and the vectors: the data of `segs` (address,
    /// length) written at `at` (`None`: the fd's position, which moves;
    /// `u64::MAX`: the end, whatever the fd; an `O_APPEND` fd: the end).
    fn write_data(
        &self,
        cx: &HandlerCtx<'_>,
        segs: &[(u64, u64)],
        at: Option<u64>,
        rwf: i32,
    ) -> Result<NotifAction, Errno> {
        if at.is_some_and(|a| a != u64::MAX && a > i64::MAX as u64) {
            return Err(einval());
        }
        let total: u64 = segs.iter().map(|s| s.1).sum();
        // The fd's access mode first, as the kernel checks it (a write of
        // nothing to a read-only fd is `EBADF` too).
        let flags = crate::sys::net::status_flags(self.out.as_fd()).map_err(|e| errno(&e))?;
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            return Err(Errno::of(libc::EBADF));
        }
        // `RWF_NOAPPEND` (`pwritev2`) writes where it is told, `O_APPEND` or not.
        let appends = flags & libc::O_APPEND != 0 && rwf & RWF_NOAPPEND == 0;
        let _file = self.quota.lock_file(self.ino);
        let size = self.size()?;
        let pos = match at {
            _ if appends => size,
            Some(u64::MAX) => size,
            Some(a) => a,
            None => crate::sys::path::file_offset(self.out.as_fd()).map_err(|e| errno(&e))?,
        };
        if total == 0 {
            return Ok(NotifAction::ReturnValue(0));
        }
        let c = self.charge(size, pos.saturating_add(total))?;
        let r = self.put(cx, segs, pos, rwf);
        self.settle(c, &r);
        let n = r?;
        if at.is_none() {
            filewrite::seek_to(self.out.as_fd(), pos + n).map_err(|e| errno(&e))?;
        }
        Ok(NotifAction::ReturnValue(n as i64))
    }

    /// Copies the data of `segs` from the program's memory into the file
    /// at `pos`, a chunk at a time: the bytes written (a fault or a failure
    /// after some were written ends the count there, as in the kernel).
    fn put(
        &self,
        cx: &HandlerCtx<'_>,
        segs: &[(u64, u64)],
        pos: u64,
        rwf: i32,
    ) -> Result<u64, Errno> {
        // No bigger than the data (a 1 MiB buffer zeroed for every small
        // write was most of its cost).
        let most = segs.iter().map(|s| s.1).max().unwrap_or(0);
        let mut buf = Aligned::new(most.min(CHUNK as u64) as usize);
        let mut done = 0u64;
        for &(addr, len) in segs {
            let mut off = 0u64;
            while off < len {
                let k = (len - off).min(CHUNK as u64) as usize;
                let chunk = buf.slice(k);
                // As much as can be read (the kernel writes up to a fault).
                let got = crate::sys::mem::read(cx.pid() as i32, addr + off, chunk).unwrap_or(0);
                if !cx.id_valid() {
                    // What was written stays written: settled, not given
                    // back (a refund would let a killed writer refill).
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::of(libc::ESRCH))
                    };
                }
                if got == 0 {
                    if done > 0 {
                        return Ok(done);
                    }
                    return Err(Errno::of(libc::EFAULT));
                }
                let (chunk, k) = (&chunk[..got], got);
                let m = match pwrite_exact(self.out.as_fd(), chunk, pos + done, rwf) {
                    Ok(m) => m as u64,
                    Err(_) if done > 0 => return Ok(done),
                    Err(e) => return Err(errno(&e)),
                };
                done += m;
                off += m;
                if m < k as u64 {
                    return Ok(done);
                }
            }
        }
        Ok(done)
    }

    /// `fallocate(fd, mode, offset, len)`.
    fn fallocate(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let (mode, off, len) = (cx.arg(1) as u32 as i32, cx.arg(2), cx.arg(3));
        if off > i64::MAX as u64 || len > i64::MAX as u64 || len == 0 {
            return Err(einval());
        }
        let _file = self.quota.lock_file(self.ino);
        let size = self.size()?;
        let frees = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE) != 0;
        // An inserted range moves the rest of the file up: the file grows
        // by the range's length wherever it starts.
        let end = if mode & FALLOC_FL_INSERT_RANGE != 0 {
            size.saturating_add(len)
        } else if frees {
            0
        } else {
            off.saturating_add(len)
        };
        let c = self.charge(size, end)?;
        let r = filewrite::fallocate(self.out.as_fd(), mode, off, len).map_err(|e| errno(&e));
        self.settle(c, &r);
        r?;
        if frees {
            self.freed();
        }
        Ok(NotifAction::ReturnValue(0))
    }

    /// `ftruncate(fd, len)`.
    fn ftruncate(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let len = cx.arg(1);
        if len > i64::MAX as u64 {
            return Err(einval());
        }
        let _file = self.quota.lock_file(self.ino);
        let size = self.size()?;
        let c = self.charge(size, len)?;
        let r = ftruncate(self.out.as_fd(), len as i64).map_err(|e| errno(&e));
        self.settle(c, &r);
        r?;
        if len < size {
            self.freed();
        }
        Ok(NotifAction::ReturnValue(0))
    }

    /// Where a copy writes: the offset at arg `ptr` if it is not null,
    /// else the fd's position.
    fn out_pos(&self, cx: &HandlerCtx<'_>, ptr: u64) -> Result<u64, Errno> {
        match ptr {
            0 => crate::sys::path::file_offset(self.out.as_fd()).map_err(|e| errno(&e)),
            p => read_offset(cx, p),
        }
    }

    /// The most a copy of `len` bytes from the regular file `ist` at `ip`
    /// is charged and made: what is left of a file of DIR or the layer
    /// (`cp` asks for 2^63 bytes and stops at the end), else (a file whose
    /// size may not say what it holds: `/proc`'s) a chunk.
    fn copy_len(&self, len: u64, ist: &crate::sys::path::FileStat, ip: u64) -> u64 {
        let len = len.min(MAX_RW);
        if self.layer.holds_dev(ist.dev) {
            len.min(ist.size.saturating_sub(ip))
        } else {
            len.min(CHUNK as u64)
        }
    }

    /// `copy_file_range(in, off_in, out, off_out, len, flags)`: from a
    /// regular file, at most [`copy_len`](Self::copy_len).
    fn copy_file_range(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let input = dup_input(cx, 0)?;
        let ist = fstat(input.as_fd()).map_err(|e| errno(&e))?;
        if !ist.is_file() {
            return Err(einval());
        }
        let (in_ptr, out_ptr) = (cx.arg(1), cx.arg(3));
        let mut ip = in_offset(cx, input.as_fd(), in_ptr)?;
        let _file = self.quota.lock_file(self.ino);
        if self.appends() {
            return Err(Errno::of(libc::EBADF));
        }
        let mut op = self.out_pos(cx, out_ptr)?;
        let n = self.copy_len(cx.arg(4), &ist, ip);
        if n == 0 {
            return Ok(NotifAction::ReturnValue(0));
        }
        let c = self.charge(self.size()?, op.saturating_add(n))?;
        let r = filewrite::copy_range(
            input.as_fd(),
            &mut ip,
            self.out.as_fd(),
            &mut op,
            n as usize,
            cx.arg(5) as u32,
        )
        .map_err(|e| errno(&e));
        self.settle(c, &r);
        let m = r?;
        put_offset(cx, input.as_fd(), in_ptr, ip)?;
        put_offset(cx, self.out.as_fd(), out_ptr, op)?;
        Ok(NotifAction::ReturnValue(m as i64))
    }

    /// `sendfile(out, in, offset, count)`: from a regular file (anything
    /// else into the layer is refused, `EINVAL`), written at the fd's
    /// position.
    fn sendfile(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let input = dup_input(cx, 1)?;
        let ist = fstat(input.as_fd()).map_err(|e| errno(&e))?;
        if !ist.is_file() {
            return Err(einval());
        }
        let in_ptr = cx.arg(2);
        let mut ip = in_offset(cx, input.as_fd(), in_ptr)?;
        let _file = self.quota.lock_file(self.ino);
        if self.appends() {
            return Err(einval());
        }
        let mut op = self.out_pos(cx, 0)?;
        let n = self.copy_len(cx.arg(3), &ist, ip);
        if n == 0 {
            return Ok(NotifAction::ReturnValue(0));
        }
        let c = self.charge(self.size()?, op.saturating_add(n))?;
        let r = copy_any(
            input.as_fd(),
            &mut ip,
            self.out.as_fd(),
            &mut op,
            n as usize,
        )
        .map_err(|e| errno(&e));
        self.settle(c, &r);
        let m = r?;
        put_offset(cx, input.as_fd(), in_ptr, ip)?;
        filewrite::seek_to(self.out.as_fd(), op).map_err(|e| errno(&e))?;
        Ok(NotifAction::ReturnValue(m as i64))
    }

    /// `splice(in, off_in, out, off_out, len, flags)` from a pipe: at most
    /// the pipe's capacity. An empty pipe the program waits on is waited
    /// for on the deferral pool.
    fn splice(&self, cx: &HandlerCtx<'_>, rights: Rights) -> Result<NotifAction, Errno> {
        let input = dup_input(cx, 0)?;
        let ist = fstat(input.as_fd()).map_err(|e| errno(&e))?;
        if !ist.is_fifo() {
            return Err(einval());
        }
        if cx.arg(1) != 0 {
            return Err(Errno::of(libc::ESPIPE));
        }
        let out_ptr = cx.arg(3);
        let op = {
            let _file = self.quota.lock_file(self.ino);
            if self.appends() {
                return Err(einval());
            }
            self.out_pos(cx, out_ptr)?
        };
        let cap = filewrite::pipe_size(input.as_fd()).map_err(|e| errno(&e))? as u64;
        let n = cx.arg(4).min(MAX_RW).min(cap) as usize;
        let flags = cx.arg(5) as u32;
        let nonblocking = flags & SPLICE_F_NONBLOCK != 0
            || crate::sys::net::status_flags(input.as_fd())
                .map_or(true, |f| f & libc::O_NONBLOCK != 0);
        let job = Splice {
            input,
            n,
            flags,
            op,
            out_ptr,
            pid: cx.pid() as i32,
            waiting: cx.still_waiting(),
        };
        match job.attempt(self) {
            Err(e) if e.get() == libc::EAGAIN && !nonblocking => {}
            r => return r,
        }
        let (quota_layer, out, ino) = (Arc::clone(self.layer), self.out.try_clone(), self.ino);
        let (out, charged) = (out.map_err(|e| errno(&e))?, self.charged);
        Ok(NotifAction::defer(move || {
            let _acting = match rights.assume() {
                Ok(g) => g,
                Err(e) => return NotifAction::from(e),
            };
            let Some(quota) = &quota_layer.quota else {
                return NotifAction::from(Errno::of(libc::EIO));
            };
            let t = Target {
                quota,
                layer: &quota_layer,
                out,
                charged,
                ino,
            };
            loop {
                if !job.waiting.check() {
                    return NotifAction::from(Errno::of(libc::EINTR));
                }
                if !crate::sys::net::poll_readable(job.input.as_fd(), SPLICE_TICK_MS)
                    .unwrap_or(true)
                {
                    continue;
                }
                match job.attempt(&t) {
                    Err(e) if e.get() == libc::EAGAIN => continue,
                    r => return r.unwrap_or_else(NotifAction::from),
                }
            }
        }))
    }
}

/// A `splice` from a pipe into a file of the layer, made without waiting.
struct Splice {
    input: OwnedFd,
    n: usize,
    flags: u32,
    op: u64,
    out_ptr: u64,
    pid: i32,
    /// Whether the call still waits (its pid is still its task's).
    waiting: crate::handler::StillWaiting,
}

impl Splice {
    /// One attempt: `EAGAIN` if the pipe is empty.
    fn attempt(&self, t: &Target<'_>) -> Result<NotifAction, Errno> {
        let _file = t.quota.lock_file(t.ino);
        // At the position read when the call came (the kernel too takes
        // the fd's position before it waits for the pipe, and sets it
        // after the write, over any write made meanwhile).
        let c = t.charge(t.size()?, self.op.saturating_add(self.n as u64))?;
        let mut op = self.op;
        let r = filewrite::splice_to(
            self.input.as_fd(),
            t.out.as_fd(),
            &mut op,
            self.n,
            self.flags | SPLICE_F_NONBLOCK,
        )
        .map_err(|e| errno(&e));
        t.settle(c, &r);
        let m = r?;
        if self.out_ptr == 0 {
            filewrite::seek_to(t.out.as_fd(), op).map_err(|e| errno(&e))?;
        } else {
            // Only while the call waits (before and after: a pid whose task
            // is gone may be another process's by now).
            if !self.waiting.check() {
                return Err(Errno::of(libc::ESRCH));
            }
            crate::sys::mem::write(self.pid, self.out_ptr, &op.to_ne_bytes())
                .map_err(|_| Errno::of(libc::EFAULT))?;
            if !self.waiting.check() {
                return Err(Errno::of(libc::ESRCH));
            }
        }
        Ok(NotifAction::ReturnValue(m as i64))
    }
}

/// The program's input fd (arg `i`), duplicated.
fn dup_input(cx: &HandlerCtx<'_>, i: usize) -> Result<OwnedFd, Errno> {
    as_supervisor(|| cx.dup_fd(cx.arg(i) as u32 as i32)).map_err(|e| errno(&e))
}

/// Where a copy reads: the offset at `ptr` if not null, else the fd's
/// position.
fn in_offset(cx: &HandlerCtx<'_>, fd: BorrowedFd<'_>, ptr: u64) -> Result<u64, Errno> {
    match ptr {
        0 => crate::sys::path::file_offset(fd).map_err(|e| errno(&e)),
        p => read_offset(cx, p),
    }
}

/// A `loff_t` the call points at (negative: `EINVAL`).
fn read_offset(cx: &HandlerCtx<'_>, addr: u64) -> Result<u64, Errno> {
    let b = cx.read_mem(addr, 8).map_err(|_| Errno::of(libc::EFAULT))?;
    let v = u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"));
    if v > i64::MAX as u64 {
        return Err(einval());
    }
    Ok(v)
}

/// The offset a copy reached, given back as the kernel does: written at
/// `ptr` if not null, else the fd's position moved there.
fn put_offset(cx: &HandlerCtx<'_>, fd: BorrowedFd<'_>, ptr: u64, at: u64) -> Result<(), Errno> {
    match ptr {
        0 => filewrite::seek_to(fd, at).map_err(|e| errno(&e)),
        p => cx.write_mem(p, &at.to_ne_bytes()).map_err(|e| match e {
            crate::handler::MemoryError::Gone => Errno::of(libc::ESRCH),
            _ => Errno::of(libc::EFAULT),
        }),
    }
}

/// Copies up to `n` bytes between regular files at explicit offsets:
/// in the kernel when it can (`copy_file_range`), else through a buffer.
fn copy_any(
    input: BorrowedFd<'_>,
    ip: &mut u64,
    out: BorrowedFd<'_>,
    op: &mut u64,
    n: usize,
) -> std::io::Result<usize> {
    match filewrite::copy_range(input, ip, out, op, n, 0) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
            ) => {}
        r => return r,
    }
    let mut buf = Aligned::new(CHUNK);
    let chunk = buf.slice(n.min(CHUNK));
    let got = filewrite::pread_at(input, chunk, *ip)?;
    if got == 0 {
        return Ok(0);
    }
    let m = pwrite_exact(out, &chunk[..got], *op, 0)?;
    *ip += m as u64;
    *op += m as u64;
    Ok(m)
}

/// `pwritev2` at exactly `pos` (`RWF_NOAPPEND`: the description's
/// `O_APPEND` does not move it); on a kernel without the flag (before
/// 6.9), or on an append-only inode (`chattr +a`, which refuses it with
/// `EPERM` and keeps `O_APPEND` on: the writes made there are appends,
/// at the end, which is `pos`), a plain positional write.
fn pwrite_exact(fd: BorrowedFd<'_>, data: &[u8], pos: u64, rwf: i32) -> std::io::Result<usize> {
    match filewrite::pwrite_at(fd, data, pos, rwf | RWF_NOAPPEND) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EPERM)) => {
            filewrite::pwrite_at(fd, data, pos, rwf)
        }
        r => r,
    }
}

/// A buffer aligned for `O_DIRECT` (4 KiB).
struct Aligned(Vec<u8>);

impl Aligned {
    fn new(len: usize) -> Aligned {
        Aligned(vec![0u8; len + 4096])
    }

    /// Its first `k` bytes, from an aligned start.
    fn slice(&mut self, k: usize) -> &mut [u8] {
        let skip = self.0.as_ptr().align_offset(4096).min(4096);
        &mut self.0[skip..skip + k]
    }
}

/// Whether the regular file `fd` is on a pseudo file system whose writes
/// `RLIMIT_FSIZE` does not limit and whose files may name the process
/// that writes them (`/proc/self/...`): procfs, sysfs, the cgroup file
/// systems and the kernel's other control file systems, by `f_type`.
/// Anything else (ext4, xfs, btrfs, tmpfs, overlayfs, FUSE, NFS...) is a
/// file the limit applies to.
// (`f_type` is an `i64` on 64-bit targets, narrower elsewhere.)
#[allow(clippy::unnecessary_cast)]
fn is_pseudo_file(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    const CONFIGFS_MAGIC: i64 = 0x6265_6570;
    const PSTOREFS_MAGIC: i64 = 0x6165_676c;
    const EFIVARFS_MAGIC: i64 = 0xde5e_81e4;
    const SELINUX_MAGIC: i64 = 0xf97c_ff8c;
    const SMACK_MAGIC: i64 = 0x4341_5d53;
    const BINFMTFS_MAGIC: i64 = 0x4249_4e4d;
    const FUSECTL_MAGIC: i64 = 0x6573_5543;
    let t = crate::sys::path::fs_type(fd).map_err(|e| errno(&e))?;
    Ok(matches!(
        t,
        CONFIGFS_MAGIC
            | PSTOREFS_MAGIC
            | EFIVARFS_MAGIC
            | SELINUX_MAGIC
            | SMACK_MAGIC
            | BINFMTFS_MAGIC
            | FUSECTL_MAGIC
    ) || [
        libc::PROC_SUPER_MAGIC,
        libc::SYSFS_MAGIC,
        libc::CGROUP_SUPER_MAGIC,
        libc::CGROUP2_SUPER_MAGIC,
        libc::DEBUGFS_MAGIC,
        libc::TRACEFS_MAGIC,
        libc::SECURITYFS_MAGIC,
        libc::BPF_FS_MAGIC,
    ]
    .iter()
    .any(|&m| m as i64 == t))
}
