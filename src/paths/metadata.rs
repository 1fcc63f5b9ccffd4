//! Calls that change a file without opening it: modes, owners, times,
//! extended attributes and `file_setattr` attributes, performed on the
//! program's behalf on the pinned, checked file.
//!
//! Each argument the kernel would read from the program's memory (the
//! path, times, attribute names and values, `struct xattr_args`,
//! `struct file_attr`) is copied once; the path is resolved and pinned as
//! an `O_PATH` fd like an open's; a denied file is refused with `EACCES`;
//! otherwise the supervisor makes the call on exactly the pinned file
//! (through `/proc/self/fd/N`, or `AT_EMPTY_PATH`), with the copies. A
//! symlink a call must not follow is acted on by its name in its pinned
//! parent directory, as `unlink` and `rename` are. Called by
//! [`super::handlers`]; uses [`super::resolve`] and `sys::path`.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::action::NotifAction;
use crate::handler::{HandlerCtx, MemoryError};
use crate::sys::path::{chmod, fchownat, file_setattr, fstat, removexattr, setxattr, utimensat};

use super::creds::CredCache;
use super::deny::DeniedPaths;
use super::handlers::policy_gate;
use super::resolve::{
    base, borrow, errno_of, is_supervisor_proc, mem_errno, pin, pin_alias, pin_parent, read_path,
    task_view, with_c, Errno, Task,
};

/// `AT_*` flags the `*at` metadata calls accept.
const AT_FLAGS: i32 = libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH;
/// Longest attribute name (`XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;
/// Largest attribute value (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;
/// Largest extensible struct the kernel copies (`PAGE_SIZE` on the
/// supported architectures' usual configurations).
const STRUCT_SIZE_MAX: usize = 4096;
/// Size of `struct xattr_args` (`XATTR_ARGS_SIZE_VER0`).
const XATTR_ARGS_SIZE: usize = 16;

/// Where a metadata call's path argument leads.
pub(super) struct PathArg {
    /// The dirfd the path is relative to.
    pub(super) dirfd: i32,
    /// Address of the path (0 is an empty path when `empty_ok`).
    pub(super) ptr: u64,
    /// Whether a final symlink is followed.
    pub(super) follow: bool,
    /// Whether an empty path names the dirfd itself (`AT_EMPTY_PATH`).
    pub(super) empty_ok: bool,
}

impl PathArg {
    /// A path relative to the working directory, with a final symlink
    /// followed or not.
    pub(super) fn cwd(ptr: u64, follow: bool) -> PathArg {
        PathArg {
            dirfd: libc::AT_FDCWD,
            ptr,
            follow,
            empty_ok: false,
        }
    }

    /// The path of an `*at` call with `AT_*` flags `flags`.
    pub(super) fn at(dirfd: i32, ptr: u64, flags: i32) -> PathArg {
        PathArg {
            dirfd,
            ptr,
            follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
            empty_ok: flags & libc::AT_EMPTY_PATH != 0,
        }
    }
}

/// The pinned, checked file a metadata call acts on.
enum Subject {
    /// The file itself, pinned (any fd, usually `O_PATH`).
    File(OwnedFd),
    /// A symlink that is not followed: its pinned parent and its name.
    Link { parent: OwnedFd, name: Vec<u8> },
}

impl Subject {
    /// A path that reaches the subject without following its final symlink
    /// (for a [`Subject::File`], the magic link, which is followed to
    /// exactly the pinned file).
    fn proc_path(&self) -> Vec<u8> {
        match self {
            Subject::File(fd) => crate::sys::procfs::fd_link(fd.as_fd()).into_bytes(),
            Subject::Link { parent, name } => {
                let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
                p.extend_from_slice(name);
                p
            }
        }
    }

    fn is_link(&self) -> bool {
        matches!(self, Subject::Link { .. })
    }
}

/// Resolves and pins what `arg` names, refusing a denied file (or a procfs
/// file of the supervisor) with `EACCES`.
fn subject(
    cx: &HandlerCtx<'_>,
    task: &Task,
    d: &DeniedPaths,
    arg: &PathArg,
) -> Result<Subject, Errno> {
    let path = if arg.ptr == 0 && arg.empty_ok {
        Vec::new()
    } else {
        read_path(cx, arg.ptr)?
    };
    let subject = if path.is_empty() {
        if !arg.empty_ok {
            return Err(Errno::of(libc::ENOENT));
        }
        let fd = match base(cx, arg.dirfd, b"", false)? {
            Some(fd) => fd,
            None => return Err(Errno::of(libc::EBADF)),
        };
        Subject::File(fd)
    } else {
        let (path, alias) = task_view(task, &path);
        match alias {
            Some(alias) => Subject::File(pin_alias(cx, task, &alias)?),
            None => {
                let base = base(cx, arg.dirfd, &path, false)?;
                if arg.follow {
                    Subject::File(pin(borrow(&base), &path, 0, 0).map_err(|e| errno_of(&e))?)
                } else {
                    let (parent, name) = pin_parent(borrow(&base), &path, 0)?;
                    let fd = pin(Some(parent.as_fd()), &name, libc::O_NOFOLLOW, 0)
                        .map_err(|e| errno_of(&e))?;
                    if d.check_fd_write(fd.as_fd()) {
                        return Err(Errno::of(libc::EACCES));
                    }
                    if fstat(fd.as_fd()).is_ok_and(|st| st.is_symlink()) {
                        Subject::Link { parent, name }
                    } else {
                        Subject::File(fd)
                    }
                }
            }
        }
    };
    // A copy-on-write view changes a private copy of a shared file.
    let subject = match (subject, d.layer()) {
        // (A denied shared file is refused below, not copied.)
        (Subject::File(fd), Some(_)) if d.check_fd(fd.as_fd()) => Subject::File(fd),
        (Subject::File(fd), Some(layer)) => match fstat(fd.as_fd()) {
            Ok(st) if st.is_file() => Subject::File(layer.copy_up(fd, &st, true)?),
            _ => Subject::File(fd),
        },
        (s, _) => s,
    };
    if let Subject::File(fd) = &subject {
        if d.check_fd_write(fd.as_fd()) || is_supervisor_proc(fd.as_fd()) {
            log::debug!("pid {}: metadata call on a denied file refused", cx.pid());
            return Err(Errno::of(libc::EACCES));
        }
    }
    Ok(subject)
}

fn done(r: std::io::Result<()>) -> Result<NotifAction, Errno> {
    r.map(|()| NotifAction::ReturnValue(0))
        .map_err(|e| errno_of(&e))
}

fn check_at_flags(flags: i32) -> Result<(), Errno> {
    if flags & !AT_FLAGS != 0 {
        return Err(Errno::of(libc::EINVAL));
    }
    Ok(())
}

/// `chmod`, `fchmodat`, `fchmodat2`.
pub(super) fn chmod_call(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    arg: PathArg,
    mode: u64,
    flags: i32,
) -> Result<NotifAction, Errno> {
    check_at_flags(flags)?;
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let s = subject(cx, &task, d, &arg)?;
    if s.is_link() {
        // Linux keeps no mode on symlinks.
        return Err(Errno::of(libc::EOPNOTSUPP));
    }
    policy_gate(cx)?;
    let mode = (mode as u32) & 0o7777;
    with_c(&s.proc_path(), |p| done(chmod(p, mode)))
}

/// `chown`, `lchown`, `fchownat`.
pub(super) fn chown_call(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    arg: PathArg,
    uid: u32,
    gid: u32,
    flags: i32,
) -> Result<NotifAction, Errno> {
    check_at_flags(flags)?;
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let s = subject(cx, &task, d, &arg)?;
    policy_gate(cx)?;
    match &s {
        Subject::File(fd) => with_c(b"", |empty| {
            done(fchownat(
                Some(fd.as_fd()),
                empty,
                uid,
                gid,
                libc::AT_EMPTY_PATH,
            ))
        }),
        Subject::Link { parent, name } => with_c(name, |n| {
            done(fchownat(
                Some(parent.as_fd()),
                n,
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            ))
        }),
    }
}

/// How a times call passes its times.
#[derive(Clone, Copy, Debug)]
pub(super) enum Times {
    /// `struct utimbuf` (`utime`).
    Utimbuf(u64),
    /// `struct timeval[2]` (`utimes`, `futimesat`).
    Timevals(u64),
    /// `struct timespec[2]` (`utimensat`).
    Timespecs(u64),
}

fn read_i64s<const N: usize>(cx: &HandlerCtx<'_>, ptr: u64) -> Result<[i64; N], Errno> {
    let bytes = cx.read_mem(ptr, 8 * N).map_err(|e| mem_errno(&e))?;
    let mut out = [0i64; N];
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *o = i64::from_ne_bytes(b);
    }
    Ok(out)
}

fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    }
}

/// The times to set, copied from the program (`None`: now).
fn read_times(cx: &HandlerCtx<'_>, t: Times) -> Result<Option<[libc::timespec; 2]>, Errno> {
    let ts = match t {
        Times::Utimbuf(0) | Times::Timevals(0) | Times::Timespecs(0) => return Ok(None),
        Times::Utimbuf(p) => {
            let [a, m] = read_i64s::<2>(cx, p)?;
            [timespec(a, 0), timespec(m, 0)]
        }
        Times::Timevals(p) => {
            let v = read_i64s::<4>(cx, p)?;
            if [v[1], v[3]].iter().any(|&us| !(0..1_000_000).contains(&us)) {
                return Err(Errno::of(libc::EINVAL));
            }
            [timespec(v[0], v[1] * 1000), timespec(v[2], v[3] * 1000)]
        }
        Times::Timespecs(p) => {
            let v = read_i64s::<4>(cx, p)?;
            [timespec(v[0], v[1]), timespec(v[2], v[3])]
        }
    };
    Ok(Some(ts))
}

/// `utime`, `utimes`, `futimesat`, `utimensat` (a null path acts on the
/// dirfd itself: an fd form, left to the kernel).
pub(super) fn utimes_call(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    arg: PathArg,
    times: Times,
    flags: i32,
) -> Result<NotifAction, Errno> {
    if arg.ptr == 0 && arg.dirfd != libc::AT_FDCWD && d.layer().is_none() {
        // `futimesat(fd, NULL, ...)`, `utimensat(fd, NULL, ...)`: the
        // program's own fd, which it could only open if it was allowed.
        return Ok(NotifAction::Continue);
    }
    // A copy-on-write view changes the times of a private copy of a
    // shared file: the fd's file, performed as `AT_EMPTY_PATH`.
    let arg = if arg.ptr == 0 && arg.dirfd != libc::AT_FDCWD {
        PathArg {
            empty_ok: true,
            ..arg
        }
    } else {
        arg
    };
    check_at_flags(flags)?;
    let times = read_times(cx, times)?;
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let s = subject(cx, &task, d, &arg)?;
    policy_gate(cx)?;
    let t = times.as_ref();
    match &s {
        Subject::File(fd) => with_c(b"", |empty| {
            done(utimensat(
                Some(fd.as_fd()),
                empty,
                t,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            ))
        }),
        Subject::Link { parent, name } => with_c(name, |n| {
            done(utimensat(
                Some(parent.as_fd()),
                n,
                t,
                libc::AT_SYMLINK_NOFOLLOW,
            ))
        }),
    }
}

/// Copies an attribute name (`ERANGE` if empty or too long).
fn read_xattr_name(cx: &HandlerCtx<'_>, ptr: u64) -> Result<Vec<u8>, Errno> {
    match cx.read_cstr(ptr, XATTR_NAME_MAX) {
        Ok(n) if n.is_empty() => Err(Errno::of(libc::ERANGE)),
        Ok(n) => Ok(n),
        Err(MemoryError::TooLong) => Err(Errno::of(libc::ERANGE)),
        Err(e) => Err(mem_errno(&e)),
    }
}

/// What an attribute call does.
#[derive(Clone, Copy, Debug)]
pub(super) enum XattrOp {
    /// `setxattr`/`lsetxattr`: name, value address, size, flags.
    Set {
        name: u64,
        value: u64,
        size: u64,
        flags: i32,
    },
    /// `setxattrat`: name, `struct xattr_args` address and size.
    SetAt { name: u64, args: u64, size: u64 },
    /// `removexattr`/`lremovexattr`/`removexattrat`: name.
    Remove { name: u64 },
}

/// `setxattr`, `lsetxattr`, `setxattrat`, `removexattr`, `lremovexattr`,
/// `removexattrat`.
pub(super) fn xattr_call(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    arg: PathArg,
    op: XattrOp,
    at_flags: i32,
) -> Result<NotifAction, Errno> {
    check_at_flags(at_flags)?;
    // The kernel copies the attribute before it looks the path up.
    let set = match op {
        XattrOp::Set {
            name,
            value,
            size,
            flags,
        } => Some((name, value, size, flags)),
        XattrOp::SetAt { name, args, size } => {
            let size = size as usize;
            if size < XATTR_ARGS_SIZE {
                return Err(Errno::of(libc::EINVAL));
            }
            if size > STRUCT_SIZE_MAX {
                return Err(Errno::of(libc::E2BIG));
            }
            let raw = cx.read_mem(args, size).map_err(|e| mem_errno(&e))?;
            if raw[XATTR_ARGS_SIZE..].iter().any(|&b| b != 0) {
                return Err(Errno::of(libc::E2BIG));
            }
            let word = |i: usize| {
                let mut b = [0u8; 4];
                b.copy_from_slice(&raw[i..i + 4]);
                u32::from_ne_bytes(b)
            };
            let mut v = [0u8; 8];
            v.copy_from_slice(&raw[..8]);
            Some((name, u64::from_ne_bytes(v), word(8) as u64, word(12) as i32))
        }
        XattrOp::Remove { .. } => None,
    };
    let (name, value) = match set {
        Some((name, value, size, flags)) => {
            if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
                return Err(Errno::of(libc::EINVAL));
            }
            let name = read_xattr_name(cx, name)?;
            let size = size as usize;
            if size > XATTR_SIZE_MAX {
                return Err(Errno::of(libc::E2BIG));
            }
            let value = if size == 0 {
                Vec::new()
            } else {
                cx.read_mem(value, size).map_err(|e| mem_errno(&e))?
            };
            (name, Some((value, flags)))
        }
        None => match op {
            XattrOp::Remove { name } => (read_xattr_name(cx, name)?, None),
            _ => return Err(Errno::of(libc::EINVAL)),
        },
    };
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let s = subject(cx, &task, d, &arg)?;
    policy_gate(cx)?;
    let at = match &s {
        Subject::File(fd) | Subject::Link { parent: fd, .. } => fd.as_fd(),
    };
    let bytes = value
        .as_ref()
        .map_or(0, |(v, _)| super::xattr_bytes(&name, v));
    let charge = super::Charge::node(d.layer().filter(|_| bytes > 0), at, bytes)?;
    // A `File` is reached through its magic link (followed to exactly the
    // pinned file); a `Link` by its name, not followed.
    let follow = !s.is_link();
    let r = with_c(&s.proc_path(), |p| {
        with_c(&name, |n| match &value {
            Some((v, flags)) => done(setxattr(p, n, v, *flags, follow)),
            None => done(removexattr(p, n, follow)),
        })
    });
    charge.settle(&r);
    r
}

/// `file_setattr(dirfd, path, attr, size, at_flags)`.
pub(super) fn file_setattr_call(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    arg: PathArg,
    attr: u64,
    size: u64,
    at_flags: i32,
) -> Result<NotifAction, Errno> {
    check_at_flags(at_flags)?;
    let size = size as usize;
    if size > STRUCT_SIZE_MAX {
        return Err(Errno::of(libc::E2BIG));
    }
    let attr = cx.read_mem(attr, size).map_err(|e| mem_errno(&e))?;
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let s = subject(cx, &task, d, &arg)?;
    policy_gate(cx)?;
    let flags = if s.is_link() {
        libc::AT_SYMLINK_NOFOLLOW as u32
    } else {
        0
    };
    with_c(&s.proc_path(), |p: &CStr| {
        done(file_setattr(p, &attr, flags))
    })
}
