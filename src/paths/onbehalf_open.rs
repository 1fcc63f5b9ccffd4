//! `open`, `creat`, `openat` and `openat2` performed on the program's behalf.
//!
//! The path (and `struct open_how`) is read once. The file is pinned as an
//! `O_PATH` fd with `openat2` (no side effects: no creation, no truncation,
//! no blocking on FIFOs), checked against the denied set, then reopened
//! through `/proc/self/fd/N` with the program's flags, which opens exactly
//! the pinned inode with the kernel's usual permission checks, and the
//! result is injected. A new file is created in a pinned, checked parent
//! directory with `O_EXCL`, and given the task's umask.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::action::NotifAction;
use crate::handler::HandlerCtx;
use crate::sys::path::{fchmod, fstat, fstatat, readlinkat, FileStat};

use super::creds::CredCache;
use super::deny::{fd_path, DeniedPaths, FreeReads};
use super::resolve::{
    as_path, bare, base, borrow, errno_of, is_supervisor_proc_with, may_go_through_own_proc,
    mem_errno, open_beneath, pin, pin_alias, read_path_unchecked, reopen, reopen_once, split,
    still_waiting, task_view, through_own_proc, with_c, Alias, Errno, Rights, Task,
};

/// The kernel's `O_LARGEFILE` (the libc crate has 0 for it on 64-bit
/// targets, but the kernel needs the bit or refuses files over 2 GiB).
#[cfg(target_arch = "x86_64")]
pub(crate) const KERNEL_O_LARGEFILE: i32 = 0o100000;
#[cfg(target_arch = "aarch64")]
pub(crate) const KERNEL_O_LARGEFILE: i32 = 0o400000;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const KERNEL_O_LARGEFILE: i32 = libc::O_LARGEFILE;

/// Every flag `open` knows (`VALID_OPEN_FLAGS`).
pub(crate) const VALID_OPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_ASYNC
    | libc::O_DIRECT
    | KERNEL_O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC
    | libc::O_PATH
    | libc::O_SYNC
    | libc::O_TMPFILE;
/// The flags `O_PATH` keeps.
pub(crate) const O_PATH_FLAGS: i32 =
    libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_PATH | libc::O_CLOEXEC;
/// The flags of an open that may write, make, cut or pin something: an
/// open with none of them only reads what its path names. Where nothing
/// is decided by path, such an open runs as the kernel resolves it (the
/// copy-on-write view outside its layer: `DeniedPaths::read_runs_untouched`;
/// argv safety with nothing denied: not even trapped, [`writing_cases`]).
pub(crate) const NOT_READ_ONLY: i32 =
    libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC | libc::O_PATH;

/// Filter cases (any one matching) of an `open`/`openat` whose flags,
/// argument `index`, are not a plain read ([`NOT_READ_ONLY`]): a write
/// access mode (1, 2 or 3), `O_CREAT`, `O_TRUNC` or `O_PATH`. The flags
/// are in a register: what the filter sees is what the kernel opens with.
pub(crate) fn writing_cases(index: u8) -> Vec<Vec<crate::filter::ArgCheck>> {
    use crate::filter::ArgCheck;
    let acc = libc::O_ACCMODE as u64;
    let mut cases: Vec<Vec<ArgCheck>> = (1..=acc)
        .map(|mode| vec![ArgCheck::new(index, acc, mode)])
        .collect();
    for bit in [libc::O_CREAT, libc::O_TRUNC, libc::O_PATH] {
        cases.push(vec![ArgCheck::new(index, bit as u64, bit as u64)]);
    }
    cases
}

/// `RESOLVE_*` flags openat2 knows.
const VALID_RESOLVE: u64 = 0x3f;
use crate::sys::fs::{RESOLVE_BENEATH, RESOLVE_IN_ROOT};
/// Permission bits a mode may carry.
const S_IALLUGO: u64 = 0o7777;
/// Symlinks followed while creating through dangling links (`MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// Which call of the open family.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OpenKind {
    /// `open(path, flags, mode)`.
    Open,
    /// `creat(path, mode)`.
    Creat,
    /// `openat(dirfd, path, flags, mode)`.
    Openat,
    /// `openat2(dirfd, path, how, size)`.
    Openat2,
}

/// The decoded arguments.
struct OpenArgs {
    dirfd: i32,
    path_ptr: u64,
    flags: i32,
    mode: u64,
    resolve: u64,
    /// The flags came from the call's registers (open, openat), not from
    /// the program's memory (openat2's `struct open_how`, which another
    /// thread may rewrite).
    in_registers: bool,
}

fn creates(flags: i32) -> bool {
    flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE
}

/// open/openat flags as the kernel takes them: unknown bits ignored,
/// `O_PATH` keeps only its own flags, the mode only when creating.
fn legacy(dirfd: i32, path_ptr: u64, flags: u64, mode: u64) -> OpenArgs {
    let mut flags = flags as u32 as i32 & VALID_OPEN_FLAGS;
    if flags & libc::O_PATH != 0 {
        flags &= O_PATH_FLAGS;
    }
    let mode = if creates(flags) { mode & S_IALLUGO } else { 0 };
    OpenArgs {
        dirfd,
        path_ptr,
        flags,
        mode,
        resolve: 0,
        in_registers: true,
    }
}

/// Reads and checks the task's `struct open_how` as `openat2` would.
fn read_how(cx: &HandlerCtx<'_>) -> Result<OpenArgs, Errno> {
    let size = cx.arg(3) as usize;
    if size < 24 {
        return Err(Errno::of(libc::EINVAL));
    }
    if size > 4096 {
        return Err(Errno::of(libc::E2BIG));
    }
    let raw = cx.read_mem(cx.arg(2), size).map_err(|e| mem_errno(&e))?;
    if raw[24..].iter().any(|&b| b != 0) {
        return Err(Errno::of(libc::E2BIG));
    }
    let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let (flags, mode, resolve) = (word(0), word(1), word(2));
    if flags & !(VALID_OPEN_FLAGS as u32 as u64) != 0 {
        return Err(Errno::of(libc::EINVAL));
    }
    let flags = flags as i32;
    if resolve & !VALID_RESOLVE != 0
        || (resolve & RESOLVE_BENEATH != 0 && resolve & RESOLVE_IN_ROOT != 0)
    {
        return Err(Errno::of(libc::EINVAL));
    }
    if mode & !S_IALLUGO != 0 || (mode != 0 && !creates(flags)) {
        return Err(Errno::of(libc::EINVAL));
    }
    if flags & libc::O_PATH != 0 && flags & !O_PATH_FLAGS != 0 {
        return Err(Errno::of(libc::EINVAL));
    }
    Ok(OpenArgs {
        dirfd: cx.arg(0) as u32 as i32,
        path_ptr: cx.arg(1),
        flags,
        mode,
        resolve,
        in_registers: false,
    })
}

/// Handles one call of the open family.
pub(crate) fn handle(
    cx: &HandlerCtx<'_>,
    denied: &Arc<DeniedPaths>,
    creds: &CredCache,
    kind: OpenKind,
) -> NotifAction {
    let args = match kind {
        OpenKind::Open => legacy(libc::AT_FDCWD, cx.arg(0), cx.arg(1), cx.arg(2)),
        OpenKind::Creat => legacy(
            libc::AT_FDCWD,
            cx.arg(0),
            (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64,
            cx.arg(1),
        ),
        OpenKind::Openat => legacy(cx.arg(0) as u32 as i32, cx.arg(1), cx.arg(2), cx.arg(3)),
        OpenKind::Openat2 => match read_how(cx) {
            Ok(a) => a,
            Err(e) => return NotifAction::from(e),
        },
    };
    match open(cx, denied, creds, &args) {
        Ok(action) => action,
        Err(e) => NotifAction::from(e),
    }
}

fn open(
    cx: &HandlerCtx<'_>,
    denied: &Arc<DeniedPaths>,
    creds: &CredCache,
    a: &OpenArgs,
) -> Result<NotifAction, Errno> {
    // A read-only open where only the policy callback denies paths, none
    // yet: nothing is decided by path, and the kernel's open is the one
    // this would make. It cannot write (the procfs `mem` files argv safety
    // keeps from writers), and the event the callback is told of has no
    // path: nothing is decided on the program's memory. The set is looked
    // at before the callback is asked, as the on-behalf route checks the
    // pinned file before it asks: a path the callback denies while it
    // decides this call holds from the next call on, on both routes.
    if a.in_registers
        && a.flags & NOT_READ_ONLY == 0
        && denied.free_reads() == FreeReads::WhileEmpty
        && denied.is_empty()
    {
        super::handlers::policy_gate(cx)?;
        return Ok(NotifAction::Continue);
    }
    // Read without the id check: the two answers below are `CONTINUE`s
    // the kernel keeps safe by itself (a path read from a recycled pid
    // belongs to a call that is gone, whose answer the kernel refuses);
    // the on-behalf route checks before it acts on the path.
    let path = read_path_unchecked(cx, a.path_ptr)?;
    // A read-only open of a path outside a copy-on-write layer, where
    // nothing else is decided by path: the kernel's open is the view's.
    // The flags are the registers' (no thread can change them); a thread
    // rewriting the path after this read gets a read-only fd of what the
    // new path names, which a `..` route already gives (see `cow`).
    if a.in_registers && a.flags & NOT_READ_ONLY == 0 && denied.read_runs_untouched(&path) {
        return Ok(NotifAction::Continue);
    }
    // Beneath the rules of the kernel backstop, the program's own open is
    // refused exactly where this one would be (see `backstop`), for the
    // flags looked at: so they must be the registers'. `openat2`'s are
    // memory the kernel reads again after `CONTINUE`: a thread turning
    // `O_RDONLY` into `O_PATH` (which Landlock does not check) in between
    // got an fd of a file beneath a denied directory. (Its resolve flags
    // are the on-behalf route's to apply, too.)
    if a.in_registers && denied.backstop_covers(cx.pid(), a.dirfd, &path, a.flags) {
        return Ok(NotifAction::Continue);
    }
    still_waiting(cx)?;
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    if path.is_empty() {
        return Err(Errno::of(libc::ENOENT));
    }
    let flags = a.flags;
    let tmpfile = flags & libc::O_TMPFILE == libc::O_TMPFILE;
    if flags & libc::O_CREAT != 0 && flags & libc::O_DIRECTORY != 0 && !tmpfile {
        return Err(Errno::of(libc::EINVAL));
    }
    let (path, alias) = if a.resolve == 0 {
        task_view(&task, &path)
    } else {
        (path, None)
    };
    let base = base(
        cx,
        a.dirfd,
        &path,
        a.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0,
    )?;
    // Spelled through a relative name or a link (`fd/3` in `/dev`,
    // `self/fd/3` in `/proc`): the task's own files, as the kernel gives
    // them (resolved here, they would be the supervisor's: refused). A
    // name this byte test misses (`3` in `/proc/self/fd`) meets a magic
    // link: it is looked at again below, on `ELOOP`.
    let respell = |cur: &[u8], from: Option<BorrowedFd<'_>>| {
        through_own_proc(from, cur).map(|full| task_view(&task, &full))
    };
    let (path, alias) = match alias {
        None if a.resolve == 0 && may_go_through_own_proc(&path) => {
            respell(&path, borrow(&base)).unwrap_or((path, None))
        }
        alias => (path, alias),
    };
    let to_alias = |alias: &Alias| {
        if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
            return Err(Errno::of(libc::EEXIST));
        }
        let pinned = pin_alias(cx, &task, alias)?;
        finish(cx, denied, pinned, flags, task.rights)
    };
    if let Some(alias) = alias {
        return to_alias(&alias);
    }
    // The umask matters only when creating (it may cost a /proc read).
    let mode = if creates(flags) {
        a.mode & !(task.umask() as u64) & S_IALLUGO
    } else {
        0
    };
    if tmpfile {
        let dir =
            pin(borrow(&base), &path, libc::O_DIRECTORY, a.resolve).map_err(|e| errno_of(&e))?;
        if denied.check_fd_write(dir.as_fd()) {
            return Err(Errno::of(libc::EACCES));
        }
        let fd = open_beneath(Some(dir.as_fd()), b".", open_flags(flags) as u64, mode, 0)
            .map_err(|e| errno_of(&e))?;
        fix_mode(fd.as_fd(), mode);
        return Ok(inject(fd, flags));
    }
    // Follow dangling symlinks by hand when creating through them.
    let mut dir: Option<OwnedFd> = base;
    let mut cur = path;
    let mut hops = 0;
    let mut races = 0;
    let mut respelled = false;
    loop {
        let excl = flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0;
        if !excl || hops > 0 {
            let extra = flags & (libc::O_NOFOLLOW | libc::O_DIRECTORY);
            match pin(borrow(&dir), &cur, extra, a.resolve) {
                Ok(pinned) => return finish(cx, denied, pinned, flags, task.rights),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && flags & libc::O_CREAT != 0 => {}
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) && a.resolve == 0 && !respelled => {
                    respelled = true;
                    match respell(&cur, borrow(&dir)) {
                        Some((_, Some(alias))) => return to_alias(&alias),
                        Some((full, None)) => {
                            cur = full;
                            continue;
                        }
                        None => return Err(errno_of(&e)),
                    }
                }
                Err(e) => return Err(errno_of(&e)),
            }
        }
        // Create: pin and check the parent, then create the name with O_EXCL.
        let s = split(&cur);
        let name = s.name.clone();
        if name.ends_with(b"/") || bare(&name) == b"." || bare(&name) == b".." {
            return Err(Errno::of(libc::EISDIR));
        }
        let parent =
            pin(borrow(&dir), &s.dir, libc::O_DIRECTORY, a.resolve).map_err(|e| errno_of(&e))?;
        if denied.check_fd_write(parent.as_fd()) {
            return Err(Errno::of(libc::EACCES));
        }
        if let Some(pp) = fd_path(parent.as_fd()) {
            if denied.name_denied(&pp.join(as_path(&name))) {
                return Err(Errno::of(libc::EACCES));
            }
        }
        let cflags = open_flags(flags) | libc::O_CREAT | libc::O_EXCL;
        super::handlers::policy_gate(cx)?;
        let charge =
            super::Charge::node(denied.layer(), parent.as_fd(), super::entry_bytes(&name))?;
        let made = open_beneath(Some(parent.as_fd()), &name, cflags as u64, mode, a.resolve);
        charge.settle(&made);
        match made {
            Ok(fd) => {
                fix_mode(fd.as_fd(), mode);
                if denied.check_fd(fd.as_fd()) {
                    return Err(Errno::of(libc::EACCES));
                }
                return Ok(inject(fd, flags));
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && !excl => {}
            Err(e) => return Err(errno_of(&e)),
        }
        // The name exists: a dangling symlink (follow it, like the kernel),
        // or someone created it meanwhile (start over).
        let st = with_c(&name, |c| {
            fstatat(Some(parent.as_fd()), c, libc::AT_SYMLINK_NOFOLLOW)
        });
        match st {
            Ok(st) if st.is_symlink() => {
                if flags & libc::O_NOFOLLOW != 0 || a.resolve & 0x04 != 0 {
                    return Err(Errno::of(libc::ELOOP));
                }
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(Errno::of(libc::ELOOP));
                }
                cur = with_c(&name, |c| readlinkat(Some(parent.as_fd()), c))
                    .map_err(|e| errno_of(&e))?;
                if cur.is_empty() {
                    return Err(Errno::of(libc::ENOENT));
                }
                dir = Some(parent);
            }
            _ => {
                races += 1;
                if races > 8 {
                    return Err(Errno::of(libc::EEXIST));
                }
            }
        }
    }
}

/// The flags the supervisor opens with: the task's, without creation and
/// resolution flags (the inode is already pinned), without `O_CLOEXEC`
/// (passed separately), never acquiring a controlling terminal.
fn open_flags(flags: i32) -> i32 {
    (flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC))
        | libc::O_NOCTTY
        | KERNEL_O_LARGEFILE
}

/// Checks the pinned file and opens it with the task's flags.
fn finish(
    cx: &HandlerCtx<'_>,
    denied: &Arc<DeniedPaths>,
    pinned: OwnedFd,
    flags: i32,
    rights: Rights,
) -> Result<NotifAction, Errno> {
    // One `fstat` for every check (a pinned inode does not change type).
    let mut st = fstat(pinned.as_fd()).map_err(|e| errno_of(&e))?;
    if denied.check_fd_with(pinned.as_fd(), &st) || is_supervisor_proc_with(pinned.as_fd(), &st) {
        return Err(Errno::of(libc::EACCES));
    }
    // A copy-on-write view: a write goes to a private copy of a
    // placeholder (checked above with the lower file it stands for: a
    // denied one is not copied), or of the placeholder of a lower file.
    // A read (or `O_PATH`) open of a placeholder gets the lower file it
    // stands for (checked with it above), opened for reading only.
    let mut pinned = pinned;
    if let Some(layer) = denied.layer() {
        if flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0 && st.is_file() {
            pinned = layer.copy_up(pinned, &st, flags & libc::O_TRUNC == 0)?;
            st = fstat(pinned.as_fd()).map_err(|e| errno_of(&e))?;
        } else if let Some(origin) = layer.origin(pinned.as_fd(), &st) {
            pinned = origin?;
            st = fstat(pinned.as_fd()).map_err(|e| errno_of(&e))?;
        }
    }
    // Under allow lists, a write or truncation only beneath a write path
    // (the Landlock domain's rule, for opens made on the program's behalf).
    if flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0
        && denied.not_writable(pinned.as_fd())
    {
        return Err(Errno::of(libc::EACCES));
    }
    // No write into a cgroup file system (the program would move itself
    // out of its sandbox's cgroups or raise their limits), procfs (the
    // host's sysctls: a pipe in `kernel.core_pattern` runs a program as
    // root outside any sandbox), sysfs or the kernel's other control file
    // systems: the same rule as the Landlock domain's, for opens made on
    // the program's behalf.
    if flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0
        && st.on_anonymous_device()
        && crate::sys::cgroup::is_host_control_fs(pinned.as_fd())
    {
        return Err(Errno::of(libc::EACCES));
    }
    // Argv safety: no write access to a process's memory through procfs.
    if cx.service::<crate::freeze::ArgvSafety>().is_some()
        && crate::freeze::refuses_open(pinned.as_fd(), &st, flags as u64)
    {
        return Err(Errno::of(libc::EACCES));
    }
    // Checks passed; the policy verdict comes before opening (which may
    // truncate) on the program's behalf.
    super::handlers::policy_gate(cx)?;
    // (Before a feature's hook too: see `open_checked`.)
    if crate::devices::refused(cx, &st) {
        return Err(Errno::of(libc::EPERM));
    }
    // A feature's own fd for this file (decided on the pinned file: the
    // path is not read again).
    if let Some(hook) = cx.service::<super::OpenHook>() {
        if let Some(served) = hook.0.serve(cx, pinned.as_fd(), &st, flags) {
            return served.map(|fd| inject(fd, flags));
        }
    }
    open_checked(cx, pinned, &st, flags, || Ok(rights))
}

/// Opens the pinned file, which passed every check, for the program with
/// its `flags` and answers with the new fd: an `O_PATH` open gets a
/// read-only stand-in, a FIFO without `O_NONBLOCK` is opened off the
/// workers, on a thread of its own, with the task's `rights` (asked for
/// only then; see [`open_fifo`]). Shared by path denial and the chroot
/// view.
pub(crate) fn open_checked(
    cx: &HandlerCtx<'_>,
    pinned: OwnedFd,
    st: &FileStat,
    flags: i32,
    rights: impl FnOnce() -> Result<Rights, Errno>,
) -> Result<NotifAction, Errno> {
    // The supervisor is outside the sandbox's device cgroup: a block
    // device is refused here as the cgroup refuses the program's own open.
    if crate::devices::refused(cx, st) {
        return Err(Errno::of(libc::EPERM));
    }
    if flags & libc::O_PATH != 0 {
        // The kernel will not inject an `O_PATH` file: a regular file or a
        // directory is given as a read-only open of the pinned inode, which
        // serves what `O_PATH` fds are used for (`*at` calls, `fstat`,
        // `/proc/self/fd/N`, `fchdir`, `fexecve`); it needs read permission.
        // Anything else (a device, a FIFO, a socket: opening it for reading
        // could block or act on it) is refused with `EACCES`.
        let ro = if st.is_dir() {
            libc::O_RDONLY | libc::O_DIRECTORY
        } else if st.is_file() {
            libc::O_RDONLY | libc::O_NOCTTY
        } else {
            return Err(Errno::of(libc::EACCES));
        };
        let fd =
            reopen(pinned.as_fd(), (ro | KERNEL_O_LARGEFILE) as u64).map_err(|e| errno_of(&e))?;
        return Ok(inject(fd, flags));
    }
    if st.is_symlink() {
        return Err(Errno::of(libc::ELOOP));
    }
    if flags & libc::O_DIRECTORY != 0 && !st.is_dir() {
        return Err(Errno::of(libc::ENOTDIR));
    }
    let rflags = (open_flags(flags) & !(libc::O_DIRECTORY | libc::O_TMPFILE)) as u64;
    if st.is_fifo() && flags & libc::O_NONBLOCK == 0 {
        let rights = rights()?;
        let waiting = cx.still_waiting();
        let tid = cx.pid() as i32;
        // Opening a FIFO blocks until its other end is opened: not on a
        // worker, and for as long as bare Linux would wait, for as many
        // openers: on a thread of its own that ends with the call (see
        // `open_fifo`), not on the deferral pool, whose slots and deadline
        // are for handlers that cannot watch their call. Only if the
        // open cannot be interrupted (a host has the signal) does it go to
        // the pool, whose deadline then ends it.
        let open = move || {
            // Another thread: it takes the task's capabilities too.
            let _acting = match rights.assume() {
                Ok(guard) => guard,
                Err(e) => return NotifAction::from(e),
            };
            match open_fifo(pinned.as_fd(), flags, rflags, tid, &waiting) {
                Ok(fd) => inject(fd, flags),
                Err(e) => NotifAction::from(errno_of(&e)),
            }
        };
        let interruptible = matches!(
            crate::sys::interrupt::install(crate::sys::interrupt::signal()),
            Ok(true)
        );
        return Ok(if interruptible {
            NotifAction::Defer(crate::action::Deferred::watching_its_call(open))
        } else {
            NotifAction::defer(open)
        });
    }
    let fd = reopen(pinned.as_fd(), rflags).map_err(|e| errno_of(&e))?;
    Ok(inject(fd, flags))
}

/// How often a blocked FIFO open looks whether its call still waits.
const FIFO_TICK: Duration = Duration::from_millis(100);

/// Opens the FIFO `pinned` with `rflags` (blocking) for a call with open
/// `flags` that waits for it (`waiting`), on a thread of its own (a
/// deferral that watches its call: no pool slot, no deadline).
///
/// The open blocks until the FIFO's other end is opened, which may never
/// happen. A thread blocked in it must not outlive the call: once the call
/// no longer waits (the program's process exited or was killed, the call
/// was answered: by a signal below, or by the supervisor's shutdown),
/// nothing would ever use the fd, and the thread would stay blocked for
/// good (a leak per open in a long-lived host; the supervisor's end would
/// wait for it). So the open is interrupted every [`FIFO_TICK`] by a
/// timer signal (`interrupt::retry_while`; the kernel's FIFO open sleeps
/// interruptibly and returns `EINTR` without having opened anything),
/// and made again while the call still waits. The check is the
/// notification id's validity: the kernel drops the id when the call is
/// answered or its task leaves it (death, signal), which covers the
/// process's exit with no pidfd to watch. Waking the open instead by
/// opening the other end ourselves would wake the host's other parties
/// of the FIFO too; a signal touches nothing but this thread.
///
/// Between two attempts the program's end is briefly not open. For a
/// reader this could make a host writer's `O_NONBLOCK` open fail with
/// `ENXIO` where bare Linux (whose blocked reader counts as a reader)
/// succeeds: a read-only, non-blocking fd of ours is held meanwhile, the
/// same reader count as the blocked open (it wakes no one the blocked open
/// would not). A writer that comes and goes entirely between two attempts
/// (`echo x > fifo`, seeing our reader) would have ended a blocked open on
/// bare Linux, but the next attempt waits for a writer again: before each
/// attempt, our reader is asked whether a writer came and went since it
/// was opened (`POLLHUP`), and then the program's end is opened without
/// waiting (`O_NONBLOCK`, cleared after unless the program asked for it):
/// it reads what that writer wrote, then end of file, as on bare Linux.
/// A writer has no such stand-in (an `O_NONBLOCK` write open fails
/// without a reader): a host reader that opens and closes again within
/// the gap (microseconds per tick) is not seen by the program's writer,
/// which waits on for the next reader (bare Linux would have opened it,
/// and its first write failed `EPIPE`); a host reader that stays is seen
/// by the next attempt, as a reader that came late. `O_RDWR` never blocks
/// on a FIFO and takes one attempt.
///
/// It waits as long as bare Linux would (no deadline: it ends with its
/// call). Since the filter waits killable once a call is received, a
/// signal for the task does not end the call by itself, as it would end a
/// FIFO open on bare Linux: each tick also looks whether the task (`tid`)
/// has a signal to take ([`signal_to_take`](crate::sys::procfs::signal_to_take)),
/// and then answers `ERESTARTSYS`, the kernel's own answer to a
/// user-notified call interrupted in a non-killable wait: the task takes
/// the signal, and its open fails `EINTR`, or starts again (and is trapped
/// again) under `SA_RESTART`, or after a stop, as on bare Linux.
fn open_fifo(
    pinned: BorrowedFd<'_>,
    flags: i32,
    rflags: u64,
    tid: i32,
    waiting: &crate::handler::StillWaiting,
) -> std::io::Result<OwnedFd> {
    let reader = (flags & libc::O_ACCMODE == libc::O_RDONLY)
        .then(|| {
            reopen(
                pinned,
                (libc::O_RDONLY | libc::O_NONBLOCK | KERNEL_O_LARGEFILE) as u64,
            )
        })
        .and_then(Result::ok);
    let mut signalled = false;
    let opened = open_fifo_beside(pinned, rflags, reader.as_ref().map(AsFd::as_fd), || {
        // The status first, then the id: still valid, `tid` was its task.
        let signal = crate::sys::procfs::signal_to_take(tid) == Some(true);
        if !waiting.check() {
            return false;
        }
        signalled = signal;
        !signal
    });
    match opened {
        Err(e) if signalled && e.raw_os_error() == Some(libc::EINTR) => {
            Err(std::io::Error::from_raw_os_error(ERESTARTSYS))
        }
        other => other,
    }
}

/// The kernel's "interrupted by a signal, restart if its handler says so"
/// (never seen by a program: the kernel turns it into `EINTR` or a
/// restart on the way out, when the task has a signal to take).
const ERESTARTSYS: i32 = 512;

/// [`open_fifo`]'s attempts, with `reader` (our non-blocking read end, for
/// a read-only open) held beside them and `go_on` asked after each
/// interruption.
fn open_fifo_beside(
    pinned: BorrowedFd<'_>,
    rflags: u64,
    reader: Option<BorrowedFd<'_>>,
    go_on: impl FnMut() -> bool,
) -> std::io::Result<OwnedFd> {
    use crate::sys::fs::{clear_nonblocking, hung_up};
    let nonblock = libc::O_NONBLOCK as u64;
    crate::sys::interrupt::retry_while(
        FIFO_TICK,
        || {
            if reader.is_some_and(|r| hung_up(r).unwrap_or(false)) {
                let fd = reopen_once(pinned, rflags | nonblock)?;
                if rflags & nonblock == 0 {
                    clear_nonblocking(fd.as_fd())?;
                }
                return Ok(fd);
            }
            reopen_once(pinned, rflags)
        },
        go_on,
    )
}

/// Gives a newly created file the mode the task asked for (the
/// supervisor's own umask may have removed bits; only bits are added).
fn fix_mode(fd: BorrowedFd<'_>, mode: u64) {
    if let Ok(st) = fstat(fd) {
        if (st.mode as u64 & S_IALLUGO) != mode {
            if let Err(e) = fchmod(fd, mode as u32) {
                log::debug!("fchmod of a created file to {mode:o}: {e}");
            }
        }
    }
}

/// The answer that injects `fd`, opened for a call with open `flags`
/// (close-on-exec as they ask).
pub(crate) fn inject(fd: OwnedFd, flags: i32) -> NotifAction {
    NotifAction::InjectFdSend {
        fd,
        newfd_flags: if flags & libc::O_CLOEXEC != 0 {
            libc::O_CLOEXEC as u32
        } else {
            0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;

    /// A host writer that opens, writes and closes between two attempts of
    /// a blocked read-only open (seeing our non-blocking reader) ends the
    /// open, as it would have ended a blocked open on bare Linux: the
    /// program's end reads what it wrote, blocking as asked. Before: the
    /// open waited for another writer (here: gave up after three ticks).
    #[test]
    fn a_writer_between_two_attempts_ends_a_blocked_fifo_read_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        crate::sys::path::mknodat(None, &c, libc::S_IFIFO | 0o600, 0).expect("mkfifo");
        let pinned = pin(None, path.as_os_str().as_encoded_bytes(), 0, 0).expect("pin");
        let nonblocking = (libc::O_RDONLY | libc::O_NONBLOCK | KERNEL_O_LARGEFILE) as u64;
        let reader = reopen(pinned.as_fd(), nonblocking).expect("our reader");
        // The writer in the gap: it sees our reader, so its open succeeds.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("writer");
        w.write_all(b"x").expect("write");
        drop(w);
        let mut ticks = 0;
        let blocking = (libc::O_RDONLY | KERNEL_O_LARGEFILE) as u64;
        let fd = open_fifo_beside(pinned.as_fd(), blocking, Some(reader.as_fd()), || {
            ticks += 1;
            ticks < 3
        })
        .expect("the open ends");
        let fl = crate::sys::net::status_flags(fd.as_fd()).expect("F_GETFL");
        assert_eq!(fl & libc::O_NONBLOCK, 0, "O_NONBLOCK left on");
        let mut got = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut got).expect("read");
        assert_eq!(got, b"x");
        assert_eq!(ticks, 0);
    }
}
