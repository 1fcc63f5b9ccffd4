//! The builtin handlers of path denial: the open family (on the program's
//! behalf, see [`super::onbehalf_open`]), exec (checked, with its `#!`
//! interpreters and ELF interpreter, see [`super::shebang`]), link, rename, symlink and unlink
//! (checked and performed on the program's behalf in pinned parent
//! directories), truncate and the metadata calls (performed on the pinned
//! file, see [`super::metadata`]), and mkdir, mknod and bind (see
//! [`super::nodes`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::action::NotifAction;
use crate::arch::Arch;
use crate::handler::{Handler, HandlerCtx};
use crate::sys::path::{fstat, ftruncate, linkat, renameat2, symlinkat, unlinkat};
use crate::syscalls;

use super::creds::CredCache;
use super::deny::{fd_path, normalize_abs, DeniedPaths};
use super::metadata::{self, PathArg as P, Times as T, XattrOp as X};
use super::nodes;
use super::onbehalf_open::{self, OpenKind};
use super::resolve::{
    as_path, as_supervisor, bare, base, borrow, errno_of, is_supervisor_proc, path_as_task, pin,
    pin_alias, pin_in_view, pin_parent, read_path, read_path_unchecked, reopen, still_waiting,
    task_view, with_c, Errno, Task,
};
use super::shebang;

/// Which path call a handler serves.
#[derive(Clone, Copy, Debug)]
enum Call {
    Open(OpenKind),
    Execve,
    Execveat,
    Link,
    Linkat,
    Rename,
    Renameat,
    Renameat2,
    Symlink,
    Symlinkat,
    Unlink,
    Unlinkat,
    Rmdir,
    Truncate,
    Chmod,
    Fchmodat,
    Fchmodat2,
    Chown,
    Lchown,
    Fchownat,
    Utime,
    Utimes,
    Futimesat,
    Utimensat,
    Setxattr { follow: bool },
    Removexattr { follow: bool },
    Setxattrat,
    Removexattrat,
    FileSetattr,
    Mkdir,
    Mkdirat,
    Mknod,
    Mknodat,
    Bind,
    InotifyAddWatch,
}

struct PathHandler {
    denied: Arc<DeniedPaths>,
    creds: Arc<CredCache>,
    call: Call,
}

impl Handler for PathHandler {
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        let d = &self.denied;
        let c = &*self.creds;
        let a = |i: usize| cx.arg(i);
        let fd = |i: usize| cx.arg(i) as u32 as i32;
        const CWD: i32 = libc::AT_FDCWD;
        let hits = d.hit_mark();
        let result = match self.call {
            Call::Open(kind) => {
                let action = onbehalf_open::handle(cx, d, c, kind);
                if matches!(action, NotifAction::Errno(libc::EACCES)) {
                    report_denied(cx, d, hits);
                }
                return action;
            }
            Call::Execve | Call::Execveat => {
                let result = if matches!(self.call, Call::Execve) {
                    exec(cx, d, CWD, a(0), 0)
                } else {
                    exec(cx, d, fd(0), a(1), a(4) as u32 as i32)
                };
                // Credentials may change at an exec the kernel will run
                // (see `CredCache`); one refused or with no file changes
                // nothing, and keeps the process's cached verdicts.
                if matches!(result, Ok(NotifAction::Continue)) && cx.answer_fixed().is_none() {
                    let task = Task::ids(cx);
                    c.exec_started(task.tid, task.tgid);
                }
                result
            }
            Call::Link => link(cx, d, c, (CWD, a(0)), (CWD, a(1)), 0),
            Call::Linkat => link(cx, d, c, (fd(0), a(1)), (fd(2), a(3)), a(4) as u32 as i32),
            Call::Rename => rename(cx, d, c, (CWD, a(0)), (CWD, a(1)), 0),
            Call::Renameat => rename(cx, d, c, (fd(0), a(1)), (fd(2), a(3)), 0),
            Call::Renameat2 => rename(cx, d, c, (fd(0), a(1)), (fd(2), a(3)), a(4) as u32),
            Call::Symlink => symlink(cx, d, c, a(0), (CWD, a(1))),
            Call::Symlinkat => symlink(cx, d, c, a(0), (fd(1), a(2))),
            Call::Unlink => unlink(cx, d, c, (CWD, a(0)), 0),
            Call::Unlinkat => unlink(cx, d, c, (fd(0), a(1)), a(2) as u32 as i32),
            Call::Rmdir => unlink(cx, d, c, (CWD, a(0)), libc::AT_REMOVEDIR),
            Call::Truncate => truncate(cx, d, c, a(0), a(1) as i64),
            Call::InotifyAddWatch => super::watch::add_watch(cx, d, c, fd(0), a(1), a(2) as u32),
            Call::Chmod => metadata::chmod_call(cx, d, c, P::cwd(a(0), true), a(1), 0),
            Call::Fchmodat => metadata::chmod_call(cx, d, c, P::at(fd(0), a(1), 0), a(2), 0),
            Call::Fchmodat2 => {
                let flags = a(3) as u32 as i32;
                metadata::chmod_call(cx, d, c, P::at(fd(0), a(1), flags), a(2), flags)
            }
            Call::Chown => {
                metadata::chown_call(cx, d, c, P::cwd(a(0), true), a(1) as u32, a(2) as u32, 0)
            }
            Call::Lchown => {
                metadata::chown_call(cx, d, c, P::cwd(a(0), false), a(1) as u32, a(2) as u32, 0)
            }
            Call::Fchownat => {
                let flags = a(4) as u32 as i32;
                let p = P::at(fd(0), a(1), flags);
                metadata::chown_call(cx, d, c, p, a(2) as u32, a(3) as u32, flags)
            }
            Call::Utime => metadata::utimes_call(cx, d, c, P::cwd(a(0), true), T::Utimbuf(a(1)), 0),
            Call::Utimes => {
                metadata::utimes_call(cx, d, c, P::cwd(a(0), true), T::Timevals(a(1)), 0)
            }
            Call::Futimesat => {
                metadata::utimes_call(cx, d, c, P::at(fd(0), a(1), 0), T::Timevals(a(2)), 0)
            }
            Call::Utimensat => {
                let flags = a(3) as u32 as i32;
                let p = P::at(fd(0), a(1), flags);
                metadata::utimes_call(cx, d, c, p, T::Timespecs(a(2)), flags)
            }
            Call::Setxattr { follow } => {
                let op = X::Set {
                    name: a(1),
                    value: a(2),
                    size: a(3),
                    flags: a(4) as u32 as i32,
                };
                metadata::xattr_call(cx, d, c, P::cwd(a(0), follow), op, 0)
            }
            Call::Removexattr { follow } => {
                let op = X::Remove { name: a(1) };
                metadata::xattr_call(cx, d, c, P::cwd(a(0), follow), op, 0)
            }
            Call::Setxattrat => {
                let flags = a(2) as u32 as i32;
                let op = X::SetAt {
                    name: a(3),
                    args: a(4),
                    size: a(5),
                };
                metadata::xattr_call(cx, d, c, P::at(fd(0), a(1), flags), op, flags)
            }
            Call::Removexattrat => {
                let flags = a(2) as u32 as i32;
                let op = X::Remove { name: a(3) };
                metadata::xattr_call(cx, d, c, P::at(fd(0), a(1), flags), op, flags)
            }
            Call::FileSetattr => {
                let flags = a(4) as u32 as i32;
                let p = P::at(fd(0), a(1), flags);
                metadata::file_setattr_call(cx, d, c, p, a(2), a(3), flags)
            }
            Call::Mkdir => nodes::make_node(cx, d, c, CWD, a(0), a(1), None),
            Call::Mkdirat => nodes::make_node(cx, d, c, fd(0), a(1), a(2), None),
            Call::Mknod => nodes::make_node(cx, d, c, CWD, a(0), a(1), Some(a(2) as u32)),
            Call::Mknodat => nodes::make_node(cx, d, c, fd(0), a(1), a(2), Some(a(3) as u32)),
            Call::Bind => nodes::bind(cx, d, c, fd(0), a(1), a(2)),
        };
        match result {
            Ok(action) => action,
            Err(e) => {
                // An EACCES after the set matched: a denied path refused
                // (not the kernel's own EACCES, passed through).
                if e.get() == libc::EACCES {
                    report_denied(cx, d, hits);
                }
                NotifAction::from(e)
            }
        }
    }
}

/// Reports a refusal (`EACCES`) as a denied path if the set matched since
/// `hits` (else it was the kernel's own `EACCES`, passed through).
pub(crate) fn report_denied(cx: &HandlerCtx<'_>, d: &DeniedPaths, hits: u64) {
    if d.hit_mark() != hits {
        cx.note_rule(true, || d.rule_for(d.last_hit().as_deref()));
        cx.report(|| crate::events::Event::PathDenied {
            pid: cx.pid(),
            syscall: cx.notification().syscall_name().unwrap_or("unknown"),
            path: d.last_hit(),
        });
    }
}

/// The builtin handlers for `denied`, by syscall number (calls the native
/// architecture lacks, like `open` on aarch64, are skipped). `bind` is
/// among them only with `with_bind`.
pub(crate) fn builtins(denied: &Arc<DeniedPaths>, with_bind: bool) -> Vec<(u32, Arc<dyn Handler>)> {
    let creds = Arc::new(CredCache::default());
    let mut calls = vec![
        ("open", Call::Open(OpenKind::Open)),
        ("creat", Call::Open(OpenKind::Creat)),
        ("openat", Call::Open(OpenKind::Openat)),
        ("openat2", Call::Open(OpenKind::Openat2)),
        ("execve", Call::Execve),
        ("execveat", Call::Execveat),
        ("link", Call::Link),
        ("linkat", Call::Linkat),
        ("rename", Call::Rename),
        ("renameat", Call::Renameat),
        ("renameat2", Call::Renameat2),
        ("symlink", Call::Symlink),
        ("symlinkat", Call::Symlinkat),
        ("unlink", Call::Unlink),
        ("unlinkat", Call::Unlinkat),
        ("rmdir", Call::Rmdir),
        ("truncate", Call::Truncate),
        ("chmod", Call::Chmod),
        ("fchmodat", Call::Fchmodat),
        ("fchmodat2", Call::Fchmodat2),
        ("chown", Call::Chown),
        ("lchown", Call::Lchown),
        ("fchownat", Call::Fchownat),
        ("utime", Call::Utime),
        ("utimes", Call::Utimes),
        ("futimesat", Call::Futimesat),
        ("utimensat", Call::Utimensat),
        ("setxattr", Call::Setxattr { follow: true }),
        ("lsetxattr", Call::Setxattr { follow: false }),
        ("removexattr", Call::Removexattr { follow: true }),
        ("lremovexattr", Call::Removexattr { follow: false }),
        ("setxattrat", Call::Setxattrat),
        ("removexattrat", Call::Removexattrat),
        ("file_setattr", Call::FileSetattr),
        ("mkdir", Call::Mkdir),
        ("mkdirat", Call::Mkdirat),
        ("mknod", Call::Mknod),
        ("mknodat", Call::Mknodat),
        ("inotify_add_watch", Call::InotifyAddWatch),
    ];
    if with_bind {
        calls.push(("bind", Call::Bind));
    }
    calls
        .into_iter()
        .filter_map(|(name, call)| {
            let nr = syscalls::number(Arch::native(), name)?;
            let h: Arc<dyn Handler> = Arc::new(PathHandler {
                denied: Arc::clone(denied),
                creds: Arc::clone(&creds),
                call,
            });
            Some((nr, h))
        })
        .chain(CRED_CHANGES.iter().filter_map(|name| {
            let nr = syscalls::number(Arch::native(), name)?;
            let h: Arc<dyn Handler> = Arc::new(CredChange(Arc::clone(&creds)));
            Some((nr, h))
        }))
        .collect()
}

/// The [`CredChange`] handlers of `creds`, by syscall number.
pub(super) fn cred_changes(creds: &Arc<CredCache>) -> Vec<(u32, Arc<dyn Handler>)> {
    CRED_CHANGES
        .iter()
        .filter_map(|name| {
            let nr = syscalls::number(Arch::native(), name)?;
            let h: Arc<dyn Handler> = Arc::new(CredChange(Arc::clone(creds)));
            Some((nr, h))
        })
        .collect()
}

/// The calls by which a thread changes its own credentials (besides exec).
pub(super) const CRED_CHANGES: [&str; 10] = [
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capset",
];

/// A trapped credential change: the caller's remembered verdict goes
/// before the kernel makes the change (the caller cannot make another call
/// meanwhile), then the call runs.
struct CredChange(Arc<CredCache>);

impl Handler for CredChange {
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.0.forget(cx.pid() as i32);
        NotifAction::Continue
    }
}

/// A path argument: the dirfd it is relative to and its address.
type PathArg = (i32, u64);

/// Asks the sandbox's policy callback (if any) before a side effect: the
/// path checks have passed, the call is about to be made for the program.
pub(super) fn policy_gate(cx: &HandlerCtx<'_>) -> Result<(), Errno> {
    match cx.check_policy(None) {
        Some(e) => Err(Errno::or_eperm(e)),
        None => Ok(()),
    }
}

fn done(r: std::io::Result<()>) -> Result<NotifAction, Errno> {
    match r {
        Ok(()) => Ok(NotifAction::ReturnValue(0)),
        Err(e) => Err(errno_of(&e)),
    }
}

/// `execve`/`execveat`: refuse a denied executable (by identity or path);
/// otherwise let the kernel run the call. A path that does not exist is
/// left to the kernel (`ENOENT`); other resolution errors are answered.
fn exec(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    dirfd: i32,
    ptr: u64,
    flags: i32,
) -> Result<NotifAction, Errno> {
    // Under argv safety, an exec whose file is missing is answered by the
    // freeze (`ENOENT`): there is nothing to check.
    if cx.answer_fixed().is_some() {
        return Ok(NotifAction::Continue);
    }
    // Under argv safety, the files the freeze pinned (the executable and
    // its interpreters), which the exec event checks the new image
    // against: a path or a `#!` line read again here could name others.
    let files = cx.exec_files();
    if !files.is_empty() {
        if files.iter().any(|f| d.check_fd(f.as_fd())) {
            log::debug!("pid {}: exec of a denied file refused", cx.pid());
            return Err(Errno::of(libc::EACCES));
        }
        return Ok(NotifAction::Continue);
    }
    let path = read_path(cx, ptr)?;
    let pinned = if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::of(libc::ENOENT));
        }
        cx.dup_fd(dirfd).map_err(|e| errno_of(&e))?
    } else {
        let task = Task::ids(cx);
        let (path, alias) = task_view(&task, &path);
        match alias {
            Some(alias) => pin_alias(cx, &task, &alias)?,
            None => {
                let base = base(cx, dirfd, &path, false)?;
                let extra = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
                    libc::O_NOFOLLOW
                } else {
                    0
                };
                match pin(borrow(&base), &path, extra, 0) {
                    Ok(p) => p,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        return Ok(NotifAction::Continue)
                    }
                    Err(e) => return Err(errno_of(&e)),
                }
            }
        }
    };
    if d.check_fd(pinned.as_fd()) {
        log::debug!("pid {}: exec of a denied file refused", cx.pid());
        return Err(Errno::of(libc::EACCES));
    }
    // A placeholder of a copy-on-write view is empty: the `#!` line is
    // the lower file's (which the exec runs, or a copy of it).
    let pinned = match (d.layer(), fstat(pinned.as_fd())) {
        (Some(layer), Ok(st)) => match layer.origin(pinned.as_fd(), &st) {
            Some(origin) => origin?,
            None => pinned,
        },
        _ => pinned,
    };
    shebang::check_interpreters(cx, d, pinned)?;
    Ok(NotifAction::Continue)
}

/// A path argument resolved to its pinned parent directory and final name.
pub(super) struct Entry {
    parent: OwnedFd,
    pub(super) name: Vec<u8>,
}

/// [`Entry`] of a path copied from the task (read once, by the caller).
pub(super) fn entry_of(
    cx: &HandlerCtx<'_>,
    task: &Task,
    dirfd: i32,
    path: &[u8],
) -> Result<Entry, Errno> {
    let (path, _) = task_view(task, path);
    let base = base(cx, dirfd, &path, false)?;
    let (parent, name) = pin_parent(borrow(&base), &path, 0)?;
    Ok(Entry { parent, name })
}

/// [`Entry`] of the path argument `(dirfd, ptr)`, refused with `EACCES`
/// when acting on it touches a denied path ([`Entry::touches_denied`]).
fn allowed_entry(
    cx: &HandlerCtx<'_>,
    task: &Task,
    d: &DeniedPaths,
    (dirfd, ptr): PathArg,
    through_symlink: bool,
) -> Result<Entry, Errno> {
    let path = read_path(cx, ptr)?;
    allowed_entry_of(cx, task, d, dirfd, &path, through_symlink)
}

/// [`allowed_entry`] of a path already copied from the task.
fn allowed_entry_of(
    cx: &HandlerCtx<'_>,
    task: &Task,
    d: &DeniedPaths,
    dirfd: i32,
    path: &[u8],
    through_symlink: bool,
) -> Result<Entry, Errno> {
    let e = entry_of(cx, task, dirfd, path)?;
    if e.touches_denied(d, through_symlink)? {
        return Err(Errno::of(libc::EACCES));
    }
    Ok(e)
}

impl Entry {
    /// The entry `name` in the pinned directory `parent`.
    pub(super) fn new(parent: OwnedFd, name: Vec<u8>) -> Entry {
        Entry { parent, name }
    }

    pub(super) fn dir(&self) -> BorrowedFd<'_> {
        self.parent.as_fd()
    }

    /// Whether creating this name puts a file where a denied path is (the
    /// name is denied or lies in a denied directory), or in a cgroup file
    /// system (a cgroup made there would outlive the sandbox; the
    /// sandbox's Landlock domain refuses it too, but these calls are made
    /// outside it).
    pub(super) fn creates_denied(&self, d: &DeniedPaths) -> bool {
        if d.check_fd_write(self.dir()) || crate::sys::cgroup::is_cgroup_fs(self.dir()) {
            return true;
        }
        fd_path(self.dir())
            .is_some_and(|pp| d.name_denied(&normalize_abs(&pp.join(as_path(bare(&self.name))))))
    }

    /// The pinned file the name refers to, if any (`follow`: through a
    /// final symlink).
    pub(super) fn target(&self, follow: bool) -> Result<Option<OwnedFd>, Errno> {
        let extra = if follow { 0 } else { libc::O_NOFOLLOW };
        match pin(Some(self.dir()), &self.name, extra, 0) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) if !follow => Err(errno_of(&e)),
            // A symlink that cannot be followed (loop, magic link) leads
            // nowhere a later open could reach.
            Err(_) => Ok(None),
        }
    }

    /// Whether acting on this name touches a denied path: the name is
    /// denied or lies in a denied directory, a denied path lies beneath
    /// it (or a copy-on-write view's work directory or upper tree: the
    /// name is one of theirs or of a directory holding them), or what it
    /// names (and, with `through_symlink`, what a symlink
    /// there points to) is denied; or it is in a cgroup file system (a
    /// cgroup of the host's removed or renamed).
    fn touches_denied(&self, d: &DeniedPaths, through_symlink: bool) -> Result<bool, Errno> {
        if d.check_fd_write(self.dir()) || crate::sys::cgroup::is_cgroup_fs(self.dir()) {
            return Ok(true);
        }
        if let Some(pp) = fd_path(self.dir()) {
            let full = normalize_abs(&pp.join(as_path(bare(&self.name))));
            if d.name_denied(&full)
                || d.has_denied_beneath(&full)
                || d.layer().is_some_and(|l| l.holds_layer(&full))
            {
                return Ok(true);
            }
        }
        let Some(t) = self.target(false)? else {
            return Ok(false);
        };
        if d.check_fd(t.as_fd()) {
            return Ok(true);
        }
        if through_symlink && fstat(t.as_fd()).is_ok_and(|st| st.is_symlink()) {
            if let Some(f) = self.target(true)? {
                return Ok(d.check_fd(f.as_fd()));
            }
        }
        Ok(false)
    }
}

/// `link`/`linkat`: the source (and what a source symlink points to) and
/// the new name are checked; the link is made from the pinned source.
fn link(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    old: PathArg,
    new: PathArg,
    flags: i32,
) -> Result<NotifAction, Errno> {
    if flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::of(libc::EINVAL));
    }
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let old_path = read_path(cx, old.1)?;
    let source = if old_path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        as_supervisor(|| cx.dup_fd(old.0)).map_err(|e| errno_of(&e))?
    } else {
        let e = allowed_entry(cx, &task, d, old, true)?;
        match e.target(flags & libc::AT_SYMLINK_FOLLOW != 0)? {
            Some(fd) => fd,
            None => return Err(Errno::of(libc::ENOENT)),
        }
    };
    if d.check_fd(source.as_fd()) {
        return Err(Errno::of(libc::EACCES));
    }
    // A copy-on-write view: no new name for a file of the lower tree
    // (it could then be opened for writing as the layer's own).
    if d.layer().is_some_and(|l| l.is_lower(source.as_fd())) {
        return Err(Errno::of(libc::EXDEV));
    }
    let n = allowed_entry(cx, &task, d, new, false)?;
    // No name across the upper tree's border: writes through an outside
    // name would grow the layer uncharged, and a file written outside
    // would enter it uncharged.
    if d.layer()
        .is_some_and(|l| l.crosses(source.as_fd(), n.dir()))
    {
        return Err(Errno::of(libc::EXDEV));
    }
    policy_gate(cx)?;
    // A file without a name linked back (an `O_TMPFILE`, an unlinked
    // file held) is charged its blocks, unless the cap counts it already.
    let blocks = d.layer().map_or(0, |l| l.naming(source.as_fd()));
    let charge = super::Charge::node(
        d.layer(),
        n.dir(),
        super::entry_bytes(&n.name).saturating_add(blocks),
    )?;
    // Through the fd's `/proc` link, not `AT_EMPTY_PATH` (which needs
    // `CAP_DAC_READ_SEARCH`, a right the program seldom has: the call
    // would fail `ENOENT` where the kernel's own link succeeds).
    let proc_link = crate::sys::procfs::fd_link(source.as_fd());
    let r = with_c(&n.name, |name| {
        with_c(proc_link.as_bytes(), |from| {
            linkat(None, from, Some(n.dir()), name, libc::AT_SYMLINK_FOLLOW)
        })
    });
    charge.settle(&r);
    done(r)
}

/// `rename`/`renameat`/`renameat2`: both names are checked (and what a
/// source symlink points to); the rename is made in the pinned parents.
fn rename(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    old: PathArg,
    new: PathArg,
    flags: u32,
) -> Result<NotifAction, Errno> {
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let o = allowed_entry(cx, &task, d, old, true)?;
    let n = allowed_entry(cx, &task, d, new, true)?;
    // Into or out of the upper tree: `EXDEV`, as between file systems
    // (`mv` copies then, and the copy is charged; see `link`).
    if d.layer().is_some_and(|l| l.crosses(o.dir(), n.dir())) {
        return Err(Errno::of(libc::EXDEV));
    }
    policy_gate(cx)?;
    let r = with_c(&o.name, |on| {
        with_c(&n.name, |nn| {
            let mut r = Err(std::io::Error::from_raw_os_error(libc::EIO));
            let mut change = || r = renameat2(Some(o.dir()), on, Some(n.dir()), nn, flags);
            match d.layer() {
                // The file renamed over may lose its last name.
                Some(l) => l.removing(n.dir(), nn, &mut change),
                None => change(),
            }
            r
        })
    });
    // A file renamed over is gone.
    if let (Ok(()), Some(layer)) = (&r, d.layer()) {
        layer.freed();
    }
    done(r)
}

/// `symlink`/`symlinkat`: the target, resolved from the new link's
/// directory, and the new name are checked; the link is made in the pinned
/// parent.
fn symlink(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    target_ptr: u64,
    new: PathArg,
) -> Result<NotifAction, Errno> {
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let target = read_path(cx, target_ptr)?;
    if target.is_empty() {
        return Err(Errno::of(libc::ENOENT));
    }
    let n = allowed_entry(cx, &task, d, new, false)?;
    // What the link would point to, seen from its directory.
    let (view, alias) = task_view(&task, &target);
    if let Some(alias) = alias {
        if let Ok(fd) = pin_alias(cx, &task, &alias) {
            if d.check_fd(fd.as_fd()) {
                return Err(Errno::of(libc::EACCES));
            }
        }
    }
    match pin(Some(n.dir()), &view, 0, 0) {
        Ok(fd) => {
            if d.check_fd(fd.as_fd()) {
                return Err(Errno::of(libc::EACCES));
            }
        }
        Err(_) => {
            // Dangling (or not resolvable): compare the lexical target.
            if let Some(pp) = fd_path(n.dir()) {
                let full = normalize_abs(&pp.join(as_path(&view)));
                if d.name_denied(&full) || d.is_denied(&full) {
                    return Err(Errno::of(libc::EACCES));
                }
            }
        }
    }
    policy_gate(cx)?;
    // A target too long for the inode takes a block of its own.
    let node = if target.len() >= 60 {
        super::NODE_BYTES
    } else {
        0
    };
    let charge = super::Charge::node(d.layer(), n.dir(), super::entry_bytes(&n.name) + node)?;
    let r = with_c(&target, |t| {
        with_c(&n.name, |nn| symlinkat(t, Some(n.dir()), nn))
    });
    charge.settle(&r);
    done(r)
}

/// `unlink`/`unlinkat`/`rmdir`: a denied name (or a directory holding a
/// denied path) is not removed; the removal is made in the pinned parent.
fn unlink(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    path: PathArg,
    flags: i32,
) -> Result<NotifAction, Errno> {
    if flags & !libc::AT_REMOVEDIR != 0 {
        return Err(Errno::of(libc::EINVAL));
    }
    let (dirfd, ptr) = path;
    // Read without the id check: under the kernel backstop, a removal in
    // a directory beneath its rules is the kernel's to decide (the domain
    // refuses it exactly where this one would be, see `backstop`), and
    // answered `CONTINUE`; a path read from a recycled pid belongs to a
    // call that is gone, whose answer the kernel refuses. The on-behalf
    // route checks before it acts on the path.
    let path = read_path_unchecked(cx, ptr)?;
    if d.backstop_covers_removal(cx.pid(), dirfd, &path) {
        return Ok(NotifAction::Continue);
    }
    still_waiting(cx)?;
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let e = allowed_entry_of(cx, &task, d, dirfd, &path, false)?;
    policy_gate(cx)?;
    let r = with_c(&e.name, |name| {
        let mut r = Err(std::io::Error::from_raw_os_error(libc::EIO));
        let mut change = || r = unlinkat(Some(e.dir()), name, flags);
        match d.layer() {
            Some(l) => l.removing(e.dir(), name, &mut change),
            None => change(),
        }
        r
    });
    if let (Ok(()), Some(layer)) = (&r, d.layer()) {
        layer.freed();
    }
    done(r)
}

/// `truncate`: the file is pinned (following symlinks) and checked, then
/// truncated through a write-only reopen of exactly that file.
fn truncate(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    ptr: u64,
    len: i64,
) -> Result<NotifAction, Errno> {
    // Everything from here on runs with the task's capabilities.
    let (path, task, _acting) = path_as_task(cx, creds, ptr)?;
    if len < 0 {
        return Err(Errno::of(libc::EINVAL));
    }
    let pinned = pin_in_view(cx, &task, &path, 0)?;
    // A copy-on-write view truncates a private copy of a shared file.
    let pinned = match (d.layer(), fstat(pinned.as_fd())) {
        (Some(layer), Ok(st)) if st.is_file() && !d.check_fd(pinned.as_fd()) => {
            layer.copy_up(pinned, &st, len > 0)?
        }
        _ => pinned,
    };
    if d.check_fd_write(pinned.as_fd())
        || is_supervisor_proc(pinned.as_fd())
        || crate::sys::cgroup::is_host_control_fs(pinned.as_fd())
    {
        return Err(Errno::of(libc::EACCES));
    }
    let st = fstat(pinned.as_fd()).map_err(|e| errno_of(&e))?;
    if st.is_dir() {
        return Err(Errno::of(libc::EISDIR));
    }
    if !st.is_file() {
        return Err(Errno::of(libc::EINVAL));
    }
    let flags = libc::O_WRONLY
        | libc::O_NONBLOCK
        | libc::O_NOCTTY
        | super::onbehalf_open::KERNEL_O_LARGEFILE;
    policy_gate(cx)?;
    let charge = super::Charge::growth(d.layer(), pinned.as_fd(), len as u64)?;
    let r = reopen(pinned.as_fd(), flags as u64).and_then(|fd| ftruncate(fd.as_fd(), len));
    charge.settle(&r);
    if let (Ok(()), Some(layer)) = (&r, d.layer()) {
        layer.freed();
    }
    done(r)
}

/// Checks a trapped `execve`/`execveat` against `d`: `Continue` if it may
/// run, else the errno (`EACCES` for a denied file). For the exec freeze,
/// which must check again once the task's peers are stopped.
pub(crate) fn check_exec(cx: &HandlerCtx<'_>, d: &DeniedPaths) -> NotifAction {
    let nr = u32::try_from(cx.nr()).ok();
    let native = |name: &str| syscalls::number(Arch::native(), name);
    let result = if nr.is_some() && nr == native("execve") {
        exec(cx, d, libc::AT_FDCWD, cx.arg(0), 0)
    } else if nr.is_some() && nr == native("execveat") {
        exec(
            cx,
            d,
            cx.arg(0) as u32 as i32,
            cx.arg(1),
            cx.arg(4) as u32 as i32,
        )
    } else {
        return NotifAction::Continue;
    };
    result.unwrap_or_else(NotifAction::from)
}
