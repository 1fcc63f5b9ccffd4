//! Resolving a trapped task's path argument in the supervisor.
//!
//! The path is read once; the base directory is pinned as an fd (the task's
//! dirfd duplicated with `pidfd_getfd`, or its `/proc/<tid>/cwd`); the path
//! is then resolved relative to that fd with `openat2` and
//! `RESOLVE_NO_MAGICLINKS`, so `/proc/*/fd`-style links (which would name
//! the supervisor's own files) are refused. Paths that name the task's own
//! fds (`/dev/stdin`, `/dev/fd/N`, `/proc/self/fd/N`) or executable
//! (`/proc/self/exe`) are recognised lexically and served from the task's
//! own fd table instead.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use crate::handler::{thread_group_of, HandlerCtx, MemoryError};
use crate::sys::caps::ThreadCaps;
use crate::sys::fs::{openat2, OpenHow, RESOLVE_NO_MAGICLINKS};
use crate::sys::procfs::{self, status_field as field};

use super::creds::{CredCache, Verdict};
use super::deny::normalize_abs;

/// An errno to answer with.
pub(crate) use crate::action::Errno;

/// The errno of an I/O error (`EIO` if it has none).
pub(crate) fn errno_of(e: &io::Error) -> Errno {
    Errno::from_io(e)
}

/// The errno for task memory that could not be copied, as the kernel would
/// answer (`EFAULT`, `ENAMETOOLONG`).
pub(crate) fn mem_errno(e: &MemoryError) -> Errno {
    match e {
        MemoryError::Gone | MemoryError::Fault(_) => Errno::of(libc::EFAULT),
        MemoryError::TooLong => Errno::of(libc::ENAMETOOLONG),
    }
}

/// Reads the NUL-terminated path at `ptr` in the task, once.
pub(crate) fn read_path(cx: &HandlerCtx<'_>, ptr: u64) -> Result<Vec<u8>, Errno> {
    cx.read_decided_cstr(ptr, libc::PATH_MAX as usize - 1)
        .map_err(|e| mem_errno(&e))
}

/// [`read_path`] without the check that the call still waits
/// ([`HandlerCtx::read_cstr_unchecked`]): for a decision to answer
/// `CONTINUE` that the kernel enforces by itself; call
/// [`still_waiting`] before doing anything on the path's behalf.
pub(crate) fn read_path_unchecked(cx: &HandlerCtx<'_>, ptr: u64) -> Result<Vec<u8>, Errno> {
    cx.read_decided_cstr_unchecked(ptr, libc::PATH_MAX as usize - 1)
        .map_err(|e| mem_errno(&e))
}

/// Whether the call still waits (see [`read_path_unchecked`]): `EFAULT`
/// if not, as a read of a task that is gone.
pub(crate) fn still_waiting(cx: &HandlerCtx<'_>) -> Result<(), Errno> {
    cx.check_still_waiting().map_err(|e| mem_errno(&e))
}

/// Makes a C string of `bytes` (which came from a C string, so has no NUL).
pub(crate) fn cstring(bytes: &[u8]) -> CString {
    CString::new(bytes).unwrap_or_default()
}

/// What the supervisor needs to know about the trapped task.
pub(crate) struct Task {
    /// Thread id.
    pub(crate) tid: i32,
    /// Process id.
    pub(crate) tgid: i32,
    /// File-mode creation mask, if read (see [`Task::umask`]).
    umask: Option<u32>,
    /// The rights to act with on its behalf.
    pub(crate) rights: Rights,
    /// The copy-on-write view its paths are resolved in, if any.
    layer: Option<std::sync::Arc<dyn super::Layered>>,
}

/// The rights the supervisor acts with on a task's behalf: its effective
/// capabilities (`None`: the supervisor's own, for calls it only checks).
///
/// Why: the program may have fewer capabilities than the supervisor (by
/// default the sandbox drops most of them before exec). Capabilities are
/// per thread, so the worker lowers its own effective set to the task's
/// for the call ([`assume`](Self::assume)) and raises it back after;
/// its permitted set stays, so it can, and the pidfd and ptrace access
/// checks that look at it (`pidfd_getfd`) still pass. File-system ids,
/// groups and the mount namespace must already be the task's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rights(Option<u64>);

impl Rights {
    /// Lowers the calling thread's effective capabilities to these rights
    /// until the returned guard is dropped (on this thread). `EACCES` if
    /// they cannot be assumed: the call is not made.
    pub(crate) fn assume(self) -> Result<Option<ThreadCaps>, Errno> {
        let Some(effective) = self.0 else {
            return Ok(None);
        };
        ThreadCaps::set_effective(effective).map_err(|e| {
            log::warn!("cannot lower this thread's capabilities to {effective:#x} to act for a task ({e}); refusing the call");
            Errno::of(libc::EACCES)
        })
    }
}

/// Runs `f` with the supervisor's own capabilities, also inside
/// [`Rights::assume`]: for taking what is the task's already (a duplicate
/// of one of its fds, its working directory or executable through
/// `/proc/<tid>`), whose ptrace access checks a lowered thread could fail
/// (Yama, a task whose effective set is below its permitted set).
pub(crate) fn as_supervisor<T>(f: impl FnOnce() -> T) -> T {
    let _own = own_creds().and_then(|o| match ThreadCaps::set_effective(o.cap_eff) {
        Ok(guard) => guard,
        Err(e) => {
            log::debug!("cannot raise this thread's capabilities back: {e}");
            None
        }
    });
    f()
}

/// The lines of a `/proc/.../status` that decide file access.
#[derive(PartialEq, Eq, Debug, Clone)]
struct Creds {
    fsuid: String,
    fsgid: String,
    groups: String,
    cap_eff: u64,
    cap_prm: u64,
    mnt_ns: u64,
}

impl Creds {
    /// Whether the supervisor (`self`) can act for `task` with the task's
    /// rights: same file-system ids, groups and mount namespace, and the
    /// task's effective capabilities within the supervisor's permitted set.
    fn can_act_for(&self, task: &Creds) -> bool {
        self.fsuid == task.fsuid
            && self.fsgid == task.fsgid
            && self.groups == task.groups
            && self.mnt_ns == task.mnt_ns
            && task.cap_eff & !self.cap_prm == 0
    }
}

fn creds_of(status: &str, ns_path: &str) -> Option<Creds> {
    use std::os::unix::fs::MetadataExt;
    let last = |k: &str| {
        field(status, k)
            .and_then(|v| v.split_whitespace().last())
            .map(str::to_owned)
    };
    let caps = |k: &str| field(status, k).and_then(|v| u64::from_str_radix(v, 16).ok());
    Some(Creds {
        fsuid: last("Uid:")?,
        fsgid: last("Gid:")?,
        groups: field(status, "Groups:").unwrap_or("").to_owned(),
        cap_eff: caps("CapEff:")?,
        cap_prm: caps("CapPrm:")?,
        mnt_ns: std::fs::metadata(ns_path).ok()?.ino(),
    })
}

fn own_creds() -> Option<&'static Creds> {
    static OWN: OnceLock<Option<Creds>> = OnceLock::new();
    OWN.get_or_init(|| {
        // Through `/proc/<tid>`, not `/proc/thread-self` (which is
        // `/proc/<pid>/task/<tid>`): an entry of this process's task
        // directory read by one of its threads stalls the reap of the
        // whole process for milliseconds (see `sys::process::own_children`).
        let tid = crate::sys::process::gettid();
        let status = procfs::read_text(&format!("/proc/{tid}/status")).ok()?;
        creds_of(&status, &format!("/proc/{tid}/ns/mnt"))
    })
    .as_ref()
}

impl Task {
    /// The task's ids, for a call the supervisor only checks (no credential
    /// check needed).
    pub(crate) fn ids(cx: &HandlerCtx<'_>) -> Task {
        let tid = cx.pid() as i32;
        Task {
            tid,
            tgid: thread_group_of(tid).unwrap_or(tid),
            umask: None,
            rights: Rights(None),
            layer: layer_of(cx),
        }
    }

    /// Checks that the supervisor may act for the task: same file-system
    /// user and groups, same mount namespace, and effective capabilities
    /// the supervisor can lower its own to (see [`Rights`]). Anything else
    /// is refused with `EACCES` (the supervisor would use other rights than
    /// the task's). The verdict is remembered per thread in `cache`, so
    /// `/proc` is read only on a miss.
    pub(crate) fn read(cx: &HandlerCtx<'_>, cache: &CredCache) -> Result<Task, Errno> {
        Self::read_telling(cx, cache, true)
    }

    /// The rights for a change made through an fd the task holds: those of
    /// [`read`](Self::read), or for a task it refuses,
    /// [`fd_rights`](Self::fd_rights) (without `read`'s warning: nothing
    /// is refused).
    pub(crate) fn rights_for_fd(cx: &HandlerCtx<'_>, cache: &CredCache) -> Result<Rights, Errno> {
        match Self::read_telling(cx, cache, false) {
            Ok(task) => Ok(task.rights),
            Err(e) if e == Errno::of(libc::EACCES) => Self::fd_rights(cx),
            Err(e) => Err(e),
        }
    }

    fn read_telling(cx: &HandlerCtx<'_>, cache: &CredCache, tell: bool) -> Result<Task, Errno> {
        let tid = cx.pid() as i32;
        let verdict = match cache.lookup(tid) {
            Some(v) => v,
            None => {
                let stamp = cache.stamp(tid);
                // Opened before the read: while the call is pending the
                // thread id names the caller (checked below).
                let pidfd = CredCache::open(tid);
                let (verdict, umask) = Self::read_proc(cx, tid, tell)?;
                if let Some(fd) = pidfd {
                    cache.store(tid, fd, stamp, verdict);
                }
                return Self::with(cx, tid, verdict, Some(umask));
            }
        };
        Self::with(cx, tid, verdict, None)
    }

    fn with(cx: &HandlerCtx<'_>, tid: i32, v: Verdict, umask: Option<u32>) -> Result<Task, Errno> {
        match v.acts_with {
            Some(caps) => Ok(Task {
                tid,
                tgid: v.tgid,
                umask,
                rights: Rights(Some(caps)),
                layer: layer_of(cx),
            }),
            None => Err(Errno::of(libc::EACCES)),
        }
    }

    /// The rights for a change made through an fd the task holds already
    /// (a write, a truncate or an allocation of an open file): its
    /// effective capabilities alone, which the supervisor must hold. The
    /// kernel checks no file-system id there (access was checked when the
    /// fd was opened), so a task whose ids are not the supervisor's (after
    /// `setuid`, as `su` or a privilege-separated daemon) is acted for
    /// all the same; [`read`](Self::read) would refuse it (and says so in
    /// a warning, once per task: see there).
    fn fd_rights(cx: &HandlerCtx<'_>) -> Result<Rights, Errno> {
        let tid = cx.pid() as i32;
        let status = procfs::read_rendered_text(&format!("/proc/{tid}/status"))
            .map_err(|_| Errno::of(libc::ESRCH))?;
        // The thread id named the caller while the status was read.
        if !cx.id_valid() {
            return Err(Errno::of(libc::ESRCH));
        }
        let cap_eff = field(&status, "CapEff:")
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .ok_or(Errno::of(libc::EACCES))?;
        // And `CAP_SYS_PTRACE`, which no file check consults: the task's
        // memory (the data written) is another user's to read.
        const CAP_SYS_PTRACE: u32 = 19;
        let ptrace = 1u64 << CAP_SYS_PTRACE;
        match own_creds() {
            Some(own) if (cap_eff | ptrace) & !own.cap_prm == 0 => {
                Ok(Rights(Some(cap_eff | ptrace)))
            }
            _ => Err(Errno::of(libc::EACCES)),
        }
    }

    /// The verdict and umask from `/proc/<tid>/status`.
    fn read_proc(cx: &HandlerCtx<'_>, tid: i32, tell: bool) -> Result<(Verdict, u32), Errno> {
        let status = procfs::read_rendered_text(&format!("/proc/{tid}/status"))
            .map_err(|_| Errno::of(libc::ESRCH))?;
        let creds = creds_of(&status, &format!("/proc/{tid}/ns/mnt"));
        if !cx.id_valid() {
            return Err(Errno::of(libc::ESRCH));
        }
        let acts_with = match (creds, own_creds()) {
            (Some(t), Some(o)) if o.can_act_for(&t) => Some(t.cap_eff),
            (t, o) => {
                if tell {
                    log::warn!("task {tid}: credentials or mount namespace differ from the supervisor's ({t:?} vs {o:?}); refusing path calls on its behalf");
                }
                None
            }
        };
        let tgid = field(&status, "Tgid:")
            .and_then(|v| v.parse().ok())
            .or_else(|| thread_group_of(tid))
            .unwrap_or(tid);
        Ok((Verdict { tgid, acts_with }, umask_of(&status)))
    }

    /// The task's file-mode creation mask (read from `/proc` if the
    /// credentials came from the cache).
    pub(crate) fn umask(&self) -> u32 {
        self.umask.unwrap_or_else(|| {
            procfs::read_rendered_text(&format!("/proc/{}/status", self.tid))
                .map_or(DEFAULT_UMASK, |s| umask_of(&s))
        })
    }
}

const DEFAULT_UMASK: u32 = 0o022;

/// The copy-on-write view of the sandbox, if it has one.
fn layer_of(cx: &HandlerCtx<'_>) -> Option<std::sync::Arc<dyn super::Layered>> {
    cx.service::<super::LayerHook>()
        .map(|h| std::sync::Arc::clone(&h.0))
}

fn umask_of(status: &str) -> u32 {
    field(status, "Umask:")
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .unwrap_or(DEFAULT_UMASK)
}

/// Opens `path` as `O_PATH` with magic links allowed: for paths the
/// supervisor chose itself (`/proc/<tid>/cwd`, `/proc/self/fd/N`), by its
/// exact bytes (a name that is not UTF-8 is opened as it is).
pub(crate) fn open_trusted(
    path: &(impl AsRef<std::ffi::OsStr> + ?Sized),
    flags: i32,
) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC | flags) as u64,
        mode: 0,
        resolve: 0,
    };
    openat2(None, &cstring(path.as_ref().as_bytes()), &how)
}

/// The path argument at `ptr` of a call on one file (relative to the
/// task's working directory), the task, and this thread lowered to the
/// task's rights until the guard is dropped: the start of such a call
/// made on the task's behalf. An empty path is `ENOENT`.
pub(crate) fn path_as_task(
    cx: &HandlerCtx<'_>,
    creds: &CredCache,
    ptr: u64,
) -> Result<(Vec<u8>, Task, Option<ThreadCaps>), Errno> {
    let path = read_path(cx, ptr)?;
    let task = Task::read(cx, creds)?;
    let acting = task.rights.assume()?;
    if path.is_empty() {
        return Err(Errno::of(libc::ENOENT));
    }
    Ok((path, task, acting))
}

/// Pins (`O_PATH`, with `extra` flags) what the task's `path`, relative
/// to its working directory, names in its view: its own fds and
/// executable from its own tables ([`task_view`]).
pub(crate) fn pin_in_view(
    cx: &HandlerCtx<'_>,
    task: &Task,
    path: &[u8],
    extra: i32,
) -> Result<OwnedFd, Errno> {
    let (path, alias) = task_view(task, path);
    match alias {
        Some(alias) => pin_alias(cx, task, &alias),
        None => {
            let base = base(cx, libc::AT_FDCWD, &path, false)?;
            pin(borrow(&base), &path, extra, 0).map_err(|e| errno_of(&e))
        }
    }
}

/// The directory a path of the task is relative to: `None` for an absolute
/// path (the supervisor's root, which is the task's), else a pinned fd.
/// With `always`, the pinned directory is returned for absolute paths too
/// (`RESOLVE_IN_ROOT` and `RESOLVE_BENEATH` need it).
pub(crate) fn base(
    cx: &HandlerCtx<'_>,
    dirfd: i32,
    path: &[u8],
    always: bool,
) -> Result<Option<OwnedFd>, Errno> {
    if path.first() == Some(&b'/') && !always {
        return Ok(None);
    }
    if dirfd == libc::AT_FDCWD {
        let fd =
            as_supervisor(|| open_trusted(&format!("/proc/{}/cwd", cx.pid()), libc::O_DIRECTORY))
                .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    Errno::of(libc::ESRCH)
                } else {
                    errno_of(&e)
                }
            })?;
        // The pid cannot have been reused while the call is pending.
        if !cx.id_valid() {
            return Err(Errno::of(libc::ESRCH));
        }
        return in_layer(cx, fd).map(Some);
    }
    let fd = as_supervisor(|| cx.dup_fd(dirfd)).map_err(|e| errno_of(&e))?;
    in_layer(cx, fd).map(Some)
}

/// A base directory in the lower tree of a copy-on-write view stands for
/// its upper layer's directory.
fn in_layer(cx: &HandlerCtx<'_>, fd: OwnedFd) -> Result<OwnedFd, Errno> {
    match cx.service::<super::LayerHook>() {
        Some(h) => h.0.upper_of(fd.as_fd()).unwrap_or(Ok(fd)),
        None => Ok(fd),
    }
}

/// `openat2` of `path` relative to `base` with magic links refused.
pub(crate) fn open_beneath(
    base: Option<BorrowedFd<'_>>,
    path: &[u8],
    flags: u64,
    mode: u64,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: flags | libc::O_CLOEXEC as u64,
        mode,
        resolve: resolve | RESOLVE_NO_MAGICLINKS,
    };
    openat2(base, &cstring(path), &how)
}

/// Pins what `path` names as an `O_PATH` fd (`extra`: `O_NOFOLLOW`,
/// `O_DIRECTORY`).
pub(crate) fn pin(
    base: Option<BorrowedFd<'_>>,
    path: &[u8],
    extra: i32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    open_beneath(base, path, (libc::O_PATH | extra) as u64, 0, resolve)
}

/// A path that names one of the task's own magic links.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Alias {
    /// One of its fds.
    Fd(i32),
    /// Its executable.
    Exe,
}

/// Rewrites a leading `/proc/self` or `/proc/thread-self` of an absolute
/// path to the task's own ids, and recognises paths naming the task's fds
/// and executable.
pub(crate) fn task_view(task: &Task, path: &[u8]) -> (Vec<u8>, Option<Alias>) {
    if path.first() != Some(&b'/') {
        return (path.to_vec(), None);
    }
    if let Some(upper) = task.layer.as_ref().and_then(|l| l.rewrite(path)) {
        return (upper, None);
    }
    let trimmed = {
        let mut i = 0;
        while i + 1 < path.len() && path[i + 1] == b'/' {
            i += 1;
        }
        &path[i..]
    };
    let rewritten = if let Some(rest) = strip_component(trimmed, b"/proc/self") {
        [format!("/proc/{}", task.tgid).as_bytes(), rest].concat()
    } else if let Some(rest) = strip_component(trimmed, b"/proc/thread-self") {
        [
            format!("/proc/{}/task/{}", task.tgid, task.tid).as_bytes(),
            rest,
        ]
        .concat()
    } else {
        path.to_vec()
    };
    let alias = alias_of(
        task,
        &normalize_abs(Path::new(std::ffi::OsStr::from_bytes(&rewritten))),
    );
    (rewritten, alias)
}

/// The absolute spelling, in the task's view, of a `path` (relative to
/// `base`, or absolute) that [`task_view`] did not recognise but that
/// leads through `/proc/self`, `/proc/thread-self` or `/dev/fd` (a
/// relative `fd/3` in `/dev`, `self/fd/3` in `/proc`, `../dev/fd/3`,
/// `stdin` in `/dev`, a symbolic link to `/proc/self`): resolved by the
/// supervisor, those name its own files (or are magic links refused:
/// `ELOOP`), where the kernel would give the task's. The directory part
/// is resolved by the kernel (magic links refused); a path it puts in
/// the supervisor's `/proc/<pid>` (or in the worker's task directory) is
/// respelled `/proc/self/...` (`/proc/thread-self/...`), and a last
/// component that is a symbolic link is followed once, by its text. For
/// [`task_view`] to map. `None` for a path that leads elsewhere. Only for
/// a path [`may_go_through_own_proc`].
pub(crate) fn through_own_proc(base: Option<BorrowedFd<'_>>, path: &[u8]) -> Option<Vec<u8>> {
    let s = split(path);
    let name = s.name.strip_suffix(b"/").unwrap_or(&s.name);
    let dir = pin(base, &s.dir, libc::O_DIRECTORY, 0).ok()?;
    let dir_path = super::deny::fd_path(dir.as_fd())?;
    let dir_path = own_proc_as_self(dir_path.as_os_str().as_bytes());
    // (Not in procfs, whose links in `fd` and the like are magic: their
    // text is no path to follow.)
    let in_proc = dir_path == b"/proc" || dir_path.starts_with(b"/proc/");
    let mut full = dir_path.clone();
    if !in_proc && name != b"." && name != b".." && !name.is_empty() {
        match crate::sys::path::readlinkat(Some(dir.as_fd()), &cstring(name)) {
            Ok(target) if target.first() == Some(&b'/') => full = target,
            Ok(target) => full.extend([&b"/"[..], &target].concat()),
            Err(_) => full.extend([&b"/"[..], name].concat()),
        }
    } else {
        full.extend([&b"/"[..], name].concat());
    }
    // `/proc/self`, `/proc/thread-self`, the task's own `/proc/<pid>`
    // (its working directory there), `/dev/fd`, `/dev/std*`: task_view's.
    (full.starts_with(b"/proc/") || full.starts_with(b"/dev/")).then_some(full)
}

/// Whether `path` may lead through `/proc/self`, `/proc/thread-self` or
/// `/dev/fd` without [`task_view`] seeing it (see [`through_own_proc`]):
/// relative, or with a symbolic link on the way, such a path has `fd`,
/// `self` or `std` in it (or is resolved from within `/proc` or `/dev`:
/// a `..` or `.` first). A byte test, for every open.
pub(crate) fn may_go_through_own_proc(path: &[u8]) -> bool {
    let has = |n: &[u8]| path.windows(n.len()).any(|w| w == n);
    has(b"fd") || has(b"self") || has(b"std")
}

/// `path` (absolute, as `/proc/self/fd` shows a file) with a leading
/// `/proc/<this process>` respelled `/proc/self`, and
/// `/proc/<this process>/task/<this thread>` `/proc/thread-self`.
fn own_proc_as_self(path: &[u8]) -> Vec<u8> {
    let own = format!("/proc/{}", std::process::id());
    let Some(rest) = strip_component(path, own.as_bytes()) else {
        return path.to_vec();
    };
    let thread = format!("/task/{}", crate::sys::process::gettid());
    match strip_component(rest, thread.as_bytes()) {
        Some(r) => [&b"/proc/thread-self"[..], r].concat(),
        None => [&b"/proc/self"[..], rest].concat(),
    }
}

fn strip_component<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

fn alias_of(task: &Task, norm: &Path) -> Option<Alias> {
    let parts: Vec<&str> = norm
        .iter()
        .skip(1)
        .map(|c| c.to_str().unwrap_or("\0"))
        .collect();
    let fd = |s: &str| s.parse::<i32>().ok().map(Alias::Fd);
    let ours = |s: &str| {
        s.parse::<i32>()
            .is_ok_and(|p| p == task.tgid || p == task.tid)
    };
    match parts.as_slice() {
        ["dev", "stdin"] => Some(Alias::Fd(0)),
        ["dev", "stdout"] => Some(Alias::Fd(1)),
        ["dev", "stderr"] => Some(Alias::Fd(2)),
        ["dev", "fd", n] => fd(n),
        ["proc", p, "fd", n] if ours(p) => fd(n),
        ["proc", p, "task", t, "fd", n] if ours(p) && ours(t) => fd(n),
        ["proc", p, "exe"] if ours(p) => Some(Alias::Exe),
        ["proc", p, "task", t, "exe"] if ours(p) && ours(t) => Some(Alias::Exe),
        _ => None,
    }
}

/// Pins the file an [`Alias`] names, from the task's own fd table.
pub(crate) fn pin_alias(cx: &HandlerCtx<'_>, task: &Task, alias: &Alias) -> Result<OwnedFd, Errno> {
    match alias {
        Alias::Fd(n) => as_supervisor(|| cx.dup_fd(*n)).map_err(|e| errno_of(&e)),
        Alias::Exe => {
            let fd = as_supervisor(|| open_trusted(&format!("/proc/{}/exe", task.tid), 0))
                .map_err(|e| errno_of(&e))?;
            if !cx.id_valid() {
                return Err(Errno::of(libc::ESRCH));
            }
            Ok(fd)
        }
    }
}

/// Whether the pinned `fd` is a procfs file of the supervisor's own process
/// (reached through a `/proc/self` symlink the supervisor resolved, e.g.
/// `/proc/./self/mem` or a symlink to `/proc/self`): never given to the
/// task.
pub(crate) fn is_supervisor_proc(fd: BorrowedFd<'_>) -> bool {
    if crate::sys::path::fstat(fd).is_ok_and(|st| !st.on_anonymous_device()) {
        return false;
    }
    is_supervisor_proc_any(fd)
}

/// [`is_supervisor_proc`] with the file's `fstat` already made.
pub(crate) fn is_supervisor_proc_with(fd: BorrowedFd<'_>, st: &crate::sys::path::FileStat) -> bool {
    st.on_anonymous_device() && is_supervisor_proc_any(fd)
}

fn is_supervisor_proc_any(fd: BorrowedFd<'_>) -> bool {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    if crate::sys::path::fs_type(fd).map_or(true, |t| t != PROC_SUPER_MAGIC) {
        return false;
    }
    let Some(link) = super::deny::fd_path(fd) else {
        return false;
    };
    let own = std::process::id() as i32;
    let pid = link
        .iter()
        .find_map(|c| c.to_str().and_then(|s| s.parse::<i32>().ok()));
    match pid {
        Some(p) => p == own || thread_group_of(p) == Some(own),
        None => false,
    }
}

/// Reopens our fd `fd` through `/proc/self/fd` with `flags`: a new open
/// file description of exactly the pinned inode, with the kernel's usual
/// permission checks for `flags`.
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: u64) -> io::Result<OwnedFd> {
    crate::sys::retry_eintr(|| reopen_once(fd, flags))
}

/// [`reopen`] that returns `EINTR` when a signal interrupts it.
pub(crate) fn reopen_once(fd: BorrowedFd<'_>, flags: u64) -> io::Result<OwnedFd> {
    let path = crate::sys::procfs::fd_link(fd.as_fd());
    let how = OpenHow {
        flags: flags | libc::O_CLOEXEC as u64,
        mode: 0,
        resolve: 0,
    };
    crate::sys::fs::openat2_once(None, &cstring(path.as_bytes()), &how)
}

/// A path split into the directory to resolve and the final name.
pub(crate) struct Split {
    /// The directory part (`"."` if none, `"/"` for a top-level name).
    pub(crate) dir: Vec<u8>,
    /// The final component, with a trailing `/` kept if the path had one
    /// (`"."` for the root).
    pub(crate) name: Vec<u8>,
}

/// Splits `path` (non-empty) into directory and final component.
pub(crate) fn split(path: &[u8]) -> Split {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    let slash = if end < path.len() { "/" } else { "" };
    let body = &path[..end];
    if body == b"/" {
        return Split {
            dir: b"/".to_vec(),
            name: b".".to_vec(),
        };
    }
    match body.iter().rposition(|&b| b == b'/') {
        None => Split {
            dir: b".".to_vec(),
            name: [body, slash.as_bytes()].concat(),
        },
        Some(i) => Split {
            dir: if i == 0 {
                b"/".to_vec()
            } else {
                body[..i].to_vec()
            },
            name: [&body[i + 1..], slash.as_bytes()].concat(),
        },
    }
}

/// The final name without a trailing slash.
pub(crate) fn bare(name: &[u8]) -> &[u8] {
    name.strip_suffix(b"/").unwrap_or(name)
}

/// Pins the directory containing the final component of `path` (relative
/// to `base`) and returns it with that component.
pub(crate) fn pin_parent(
    base: Option<BorrowedFd<'_>>,
    path: &[u8],
    resolve: u64,
) -> Result<(OwnedFd, Vec<u8>), Errno> {
    if path.is_empty() {
        return Err(Errno::of(libc::ENOENT));
    }
    let s = split(path);
    let dir = pin(base, &s.dir, libc::O_DIRECTORY, resolve).map_err(|e| errno_of(&e))?;
    Ok((dir, s.name))
}

/// Borrowed form of an optional owned fd.
pub(crate) fn borrow(fd: &Option<OwnedFd>) -> Option<BorrowedFd<'_>> {
    fd.as_ref().map(|f| f.as_fd())
}

/// Converts a C string to a path.
pub(crate) fn as_path(bytes: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// A C string for `bytes` as a `&CStr`-accepting call wants it.
pub(crate) fn with_c<T>(bytes: &[u8], f: impl FnOnce(&CStr) -> T) -> T {
    f(&cstring(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(p: &str) -> (String, String) {
        let s = split(p.as_bytes());
        (
            String::from_utf8(s.dir).unwrap(),
            String::from_utf8(s.name).unwrap(),
        )
    }

    #[test]
    fn splits() {
        assert_eq!(sp("a"), (".".into(), "a".into()));
        assert_eq!(sp("/a"), ("/".into(), "a".into()));
        assert_eq!(sp("/a/b/"), ("/a".into(), "b/".into()));
        assert_eq!(sp("a/b//"), ("a".into(), "b/".into()));
        assert_eq!(sp("/"), ("/".into(), ".".into()));
        assert_eq!(sp("x/.."), ("x".into(), "..".into()));
    }

    #[test]
    fn aliases() {
        let t = Task {
            tid: 12,
            tgid: 10,
            umask: None,
            rights: Rights(None),
            layer: None,
        };
        let v = |p: &str| task_view(&t, p.as_bytes());
        assert_eq!(v("/dev/stdin").1, Some(Alias::Fd(0)));
        assert_eq!(
            v("/proc/self/fd/7"),
            (b"/proc/10/fd/7".to_vec(), Some(Alias::Fd(7)))
        );
        assert_eq!(v("//proc/thread-self/exe").1, Some(Alias::Exe));
        assert_eq!(v("/proc/self/status"), (b"/proc/10/status".to_vec(), None));
        assert_eq!(v("/proc/selfish").0, b"/proc/selfish".to_vec());
        assert_eq!(v("/proc/11/fd/3").1, None);
        assert_eq!(v("rel/path").1, None);
    }
}
