//! The exec freeze, seen from the worker that decides the exec (pipeline
//! stage 5):
//!
//! 1. [`freeze`], before dispatch: the path is resolved in the caller's
//!    view; a file that is not there (a `$PATH` probe) freezes nothing and
//!    will be answered with the resolution's errno instead of `CONTINUE`.
//!    Otherwise the tracer seizes the caller and stops the tasks sharing its
//!    memory; then the path and argv are read whole ([`Snapshot`]) and the
//!    path resolved again ([`Target`]). A freeze that cannot be established
//!    is answered `EPERM`; an argv that cannot be read whole, `EFAULT`,
//!    `ENAMETOOLONG` or `E2BIG`.
//! 2. Dispatch and the policy verdict read the copy.
//! 3. [`ExecFreeze::finish`] sends the one answer and hands the tracer what
//!    the exec must run ([`Expected`]) if it was let through; the tracer
//!    checks the new image at its exec event (its argv, its executable,
//!    and the files it mapped: the executable and the ELF interpreter
//!    decided on, which the kernel opened by name again) and lets
//!    everything go.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::action::NotifAction;
use crate::handler::MemoryError;
use crate::notification::Notification;
use crate::supervisor::notifier::{Notifier, Sent};
use crate::sys::{mem, seccomp};

use super::component::Task;
use super::error::{FreezeError, Mismatch};
use super::{ArgvSafety, FileId};

/// The kernel's limit on one argument string, its NUL included
/// (`MAX_ARG_STRLEN`).
const ARG_STRLEN_MAX: usize = 32 * 4096;
/// Bound on what is copied of one argv (pointers and strings).
const ARGV_BYTES_MAX: usize = 16 << 20;
const PAGE: u64 = 4096;

/// The copy of an exec's path and argv the decision is made on: read once,
/// while the tasks that could change them are stopped. Reads by handlers
/// that fall inside it are served from it.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// (address in the task, bytes there): the path and each string with
    /// its NUL, the pointer array with its NULL.
    regions: Vec<(u64, Vec<u8>)>,
    path: Vec<u8>,
    argv: Vec<Vec<u8>>,
    /// The executable and its interpreters, pinned when the exec was
    /// resolved (see `MemoryCopy::exec_files`).
    pub(crate) files: Vec<OwnedFd>,
}

impl Snapshot {
    /// Fills `buf` from the copy if `[addr, addr + len)` lies inside one
    /// region.
    pub(crate) fn serve(&self, addr: u64, buf: &mut [u8]) -> bool {
        for (start, bytes) in &self.regions {
            let Some(off) = addr.checked_sub(*start) else {
                continue;
            };
            let off = off as usize;
            if let Some(src) = off
                .checked_add(buf.len())
                .and_then(|end| bytes.get(off..end))
            {
                buf.copy_from_slice(src);
                return true;
            }
        }
        false
    }

    /// The NUL-terminated string at `addr` from the copy, if it starts in
    /// one region and ends there.
    pub(crate) fn serve_cstr(
        &self,
        addr: u64,
        max_len: usize,
    ) -> Option<Result<Vec<u8>, MemoryError>> {
        for (start, bytes) in &self.regions {
            let Some(off) = addr.checked_sub(*start) else {
                continue;
            };
            let Some(rest) = bytes.get(off as usize..) else {
                continue;
            };
            if let Some(nul) = rest.iter().position(|&b| b == 0) {
                if nul > max_len {
                    return Some(Err(MemoryError::TooLong));
                }
                return Some(Ok(rest[..nul].to_vec()));
            }
        }
        None
    }

    /// The arguments, for the policy callback.
    pub(crate) fn argv_strings(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

/// The file an exec path names, as the supervisor resolved it in the
/// caller's view, and what the kernel will run for it.
#[derive(Debug)]
pub(crate) struct Target {
    dev: u64,
    ino: u64,
    /// For a script (`#!`, read when decided): the program at the end of
    /// its interpreter chain, which is what the new image's executable must
    /// be. `None`: not a script; the executable must be the file itself.
    interpreter: Option<FileId>,
    /// The ELF interpreter (`PT_INTERP`) of that program, as resolved when
    /// decided: the kernel opens it again by name, so the exec event
    /// checks the new image mapped this file and no other.
    elf_interpreter: Option<FileId>,
    /// The file, each interpreter of its chain, and the ELF interpreter
    /// last, pinned: handed to the exec's checks with the copy.
    files: Vec<OwnedFd>,
}

/// Interpreter levels followed (the kernel stops at fewer, with `ELOOP`).
const MAX_SCRIPT_LEVELS: usize = 6;

/// What an exec let through must have started: checked by the tracer at
/// the exec event, before the new image runs.
#[derive(Debug)]
pub(crate) struct Expected {
    argv: Vec<Vec<u8>>,
    path: Vec<u8>,
    target: Target,
}

impl Expected {
    /// Whether the new image of `pid` (stopped at its exec event) is the
    /// one decided on: the kernel's copy of argv, and the executable; for a
    /// script, the interpreter's argv ends with the script's path as given
    /// and its arguments.
    pub(crate) fn matches(&self, pid: i32) -> Result<(), Mismatch> {
        let cmdline = crate::sys::procfs::read(&format!("/proc/{pid}/cmdline"))
            .map_err(Mismatch::Unreadable)?;
        let mut new: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if cmdline.last() == Some(&0) {
            new.pop();
        }
        let want: Vec<&[u8]> = if self.argv.is_empty() {
            // The kernel gives an empty argv an empty argv[0].
            vec![b""]
        } else {
            self.argv.iter().map(Vec::as_slice).collect()
        };
        use std::os::unix::fs::MetadataExt;
        let exe = std::fs::metadata(format!("/proc/{pid}/exe")).map_err(Mismatch::NoExecutable)?;
        let exe = (exe.dev(), exe.ino());
        let Some(interpreter) = self.target.interpreter else {
            // Not a script: that file, with exactly that argv.
            if new != want {
                return Err(Mismatch::OtherArguments);
            }
            if exe != (self.target.dev, self.target.ino) {
                return Err(Mismatch::OtherExecutable);
            }
            return self.mapped_files(pid, exe);
        };
        // A script: its interpreter chain's program runs, with
        // [interpreter, (its argument), ..., script path, argv[1..]].
        if exe != interpreter {
            return Err(Mismatch::OtherExecutable);
        }
        if want.len() <= new.len() {
            let rest = &want[1.min(want.len())..];
            let at = new.len() - rest.len();
            let named = at
                .checked_sub(1)
                .and_then(|i| new.get(i))
                .is_some_and(|f| *f == self.path.as_slice() || f.starts_with(b"/dev/fd/"));
            if at >= 2 && named && new[at..] == *rest {
                return self.mapped_files(pid, exe);
            }
        }
        Err(Mismatch::OtherArguments)
    }

    /// Whether the files mapped in the new image of `pid` are its
    /// executable `exe` and the ELF interpreter decided on (see
    /// [`check_mapped`]).
    fn mapped_files(&self, pid: i32, exe: FileId) -> Result<(), Mismatch> {
        let maps =
            crate::sys::procfs::read(&format!("/proc/{pid}/maps")).map_err(Mismatch::Unreadable)?;
        check_mapped(&maps, exe, self.target.elf_interpreter, |range| {
            use std::os::unix::fs::MetadataExt;
            let st = std::fs::metadata(format!("/proc/{pid}/map_files/{range}"))?;
            Ok((st.dev(), st.ino()))
        })
    }
}

/// Checks the file mappings of a new image at its exec event (`maps`, as
/// `/proc/<pid>/maps` shows them): each is of the executable `exe` or of
/// the ELF interpreter decided on (`want`), and that one is mapped. The
/// kernel opened the `PT_INTERP` name again after the decision (a rename
/// in between could put another file there), or the executable's program
/// headers could have been rewritten. At the exec event nothing else is
/// mapped from a file (the loader has not run yet).
///
/// Files are `(st_dev, st_ino)`. `maps` shows the superblock's device,
/// which is `st_dev` but on a btrfs subvolume: a mapping that matches
/// neither file is looked at through `map_files` (`stat_mapping`, which
/// needs `CAP_CHECKPOINT_RESTORE`). Without it, such mappings pass only
/// if they all show one device, the executable among them, each the
/// executable's inode number or the interpreter's, the interpreter on the
/// executable's file system: the same superblock and inode number as the
/// checked executable's (a btrfs file system whose subvolumes repeat
/// inode numbers is the residual doubt).
fn check_mapped(
    maps: &[u8],
    exe: FileId,
    want: Option<FileId>,
    stat_mapping: impl Fn(&str) -> std::io::Result<FileId>,
) -> Result<(), Mismatch> {
    let mut seen = want.is_none() || want == Some(exe);
    // Mappings map_files could not show: (device shown, inode).
    let mut unsure: Vec<FileId> = Vec::new();
    let text = String::from_utf8_lossy(maps);
    for m in crate::sys::procfs::mappings(&text) {
        // A line that is not one fails closed.
        let m = m.ok_or(Mismatch::OtherInterpreter)?;
        let (range, ino) = (m.range, m.ino);
        if ino == 0 {
            continue;
        }
        let dev = m.dev().ok_or(Mismatch::OtherInterpreter)?;
        let file = if (dev, ino) == exe || Some((dev, ino)) == want {
            (dev, ino)
        } else {
            match stat_mapping(range) {
                Ok(f) => f,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                    unsure.push((dev, ino));
                    continue;
                }
                Err(_) => return Err(Mismatch::OtherInterpreter),
            }
        };
        if Some(file) == want {
            seen = true;
        } else if file != exe {
            return Err(Mismatch::OtherInterpreter);
        }
    }
    if let Some(&(shown, _)) = unsure.first() {
        let on_exe_fs = want.filter(|w| w.0 == exe.0);
        let one_device = unsure.iter().all(|&(d, _)| d == shown);
        let with_exe = unsure.iter().any(|&(_, i)| i == exe.1);
        let known = unsure
            .iter()
            .all(|&(_, i)| i == exe.1 || on_exe_fs.is_some_and(|w| w.1 == i));
        if !(one_device && with_exe && known) {
            return Err(Mismatch::OtherInterpreter);
        }
        if on_exe_fs.is_some_and(|w| unsure.iter().any(|&(_, i)| i == w.1)) {
            seen = true;
        }
    }
    if seen {
        Ok(())
    } else {
        Err(Mismatch::OtherInterpreter)
    }
}

/// An exec under argv safety, from its freeze to its answer.
pub(crate) struct ExecFreeze<'a> {
    core: &'a Notifier,
    argv: &'a ArgvSafety,
    /// The tracer's job, until it is told the outcome.
    job: Option<u64>,
    failure: Option<FreezeError>,
    /// The errno answered instead of `CONTINUE`: the file is not there,
    /// or argv could not be read whole.
    refusal: Option<i32>,
    snapshot: Option<Snapshot>,
    target: Option<Target>,
    /// A freeze with no task to stop: only the caller's seize, waited for
    /// just before the answer (it overlaps the decision).
    pending: Option<super::tracer::Pending>,
    /// The launcher's exec: nothing seized ([`ArgvSafety::launcher_exec`]).
    launcher: bool,
}

/// The path, argv and `execveat` arguments of an exec notification.
struct ExecArgs {
    dirfd: i32,
    path: u64,
    argv: u64,
    flags: i32,
}

fn exec_args(notif: &Notification) -> ExecArgs {
    let a = &notif.args;
    if notif.syscall_name() == Some("execveat") {
        ExecArgs {
            dirfd: a[0] as u32 as i32,
            path: a[1],
            argv: a[2],
            flags: a[4] as u32 as i32,
        }
    } else {
        ExecArgs {
            dirfd: libc::AT_FDCWD,
            path: a[0],
            argv: a[1],
            flags: 0,
        }
    }
}

/// Establishes the freeze for exec `notif` (see the module docs).
pub(crate) fn freeze<'a>(
    core: &'a Notifier,
    argv: &'a ArgvSafety,
    notif: &Notification,
) -> ExecFreeze<'a> {
    let tid = notif.pid as i32;
    let tgid = crate::handler::thread_group_of(tid).unwrap_or(tid);
    let args = exec_args(notif);
    let mut f = ExecFreeze {
        core,
        argv,
        job: None,
        failure: None,
        refusal: None,
        snapshot: None,
        target: None,
        pending: None,
        launcher: false,
    };
    // A file that is not there freezes nothing: the call is answered with
    // the errno, whatever its memory says later.
    let path = read_cstr(tid, args.path, libc::PATH_MAX as usize);
    let probe = path
        .as_ref()
        .map_err(|e| *e)
        .and_then(|p| resolve(tid, tgid, args.dirfd, p, args.flags));
    let target = match probe {
        Ok(t) => t,
        Err(e) => {
            f.refusal = Some(e);
            return f;
        }
    };
    if argv.launcher_exec(tid) {
        f.launcher = true;
    } else if let Err(why) = f.seize(Task { tid, tgid }) {
        f.failure = Some(why);
        return f;
    }
    match snapshot(tid, &args) {
        Ok(mut s) => {
            if seccomp::id_valid(core.listener(), notif.id).is_err() {
                // Gone: its id may name another process by now.
                f.refusal = Some(libc::ESRCH);
                return f;
            }
            // The path as probed: the file found then (the exec event
            // checks the kernel ran that one).
            if path.as_ref().is_ok_and(|p| *p == s.path) {
                f.target = Some(target);
            } else {
                match resolve(tid, tgid, args.dirfd, &s.path, args.flags) {
                    Ok(t) => f.target = Some(t),
                    Err(e) => f.refusal = Some(e),
                }
            }
            // The checks decide on the files the exec event checks.
            if let Some(t) = f.target.as_mut() {
                s.files = std::mem::take(&mut t.files);
            }
            f.snapshot = Some(s);
        }
        Err(e) => f.refusal = Some(e),
    }
    f
}

impl ExecFreeze<'_> {
    /// Has the tracer seize `caller` and stop the tasks sharing its memory;
    /// returns once they are stopped (at once if there are none: the
    /// caller's seize is waited for before the answer).
    fn seize(&mut self, caller: Task) -> Result<(), FreezeError> {
        let sharers = super::component::sharers(caller, self.argv.supervisor);
        let alone = sharers.is_empty();
        let pending = self.argv.tracer.freeze(caller, sharers);
        self.job = Some(pending.job);
        if alone {
            // Nothing to stop: no other task can write this memory (refused
            // cross-process writers aside), so the copy can be read now.
            self.pending = Some(pending);
            Ok(())
        } else {
            pending.wait()
        }
    }

    /// Starts the re-issue of the exec as `r` says ([`start_reissue`]).
    fn reissue(&self, notif: &Notification, r: crate::action::Reissue) -> NotifAction {
        start_reissue(self.argv, notif, r)
    }

    /// Why the freeze could not be established, if it could not.
    pub(crate) fn failure(&self) -> Option<&FreezeError> {
        self.failure.as_ref()
    }

    /// The errno the call is answered with if handlers let it through (a
    /// missing file, a gone caller, an unreadable argv), known before
    /// dispatch.
    pub(crate) fn refused_with(&self) -> Option<i32> {
        self.refusal
    }

    /// The copy handlers and the policy callback decide on.
    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Sends the one answer for the exec and tells the tracer what it must
    /// run. `Hold` and `Defer` cannot keep a freeze: they are answered
    /// `EPERM`.
    pub(crate) fn finish(mut self, notif: &Notification, action: NotifAction) -> Sent {
        // The caller must be seized (for its exec event) before its answer.
        let failed = match self.pending.take().map(|p| p.wait()) {
            Some(Err(why)) => Some(why),
            Some(Ok(()))
                if super::fault::injected("reissued-freeze-fails")
                    && self.argv.tracer.is_reissued(notif.pid as i32) =>
            {
                Some(FreezeError::NoAnswer)
            }
            _ => None,
        };
        let reissuing = failed.is_none() && matches!(action, NotifAction::Reissue(_));
        let action = match failed {
            Some(why) => {
                log::log!(
                    why.log_level(),
                    "argv-safety freeze for pid {} failed ({why}); answering EPERM",
                    notif.pid
                );
                NotifAction::Errno(libc::EPERM)
            }
            _ => action,
        };
        let action = match action {
            NotifAction::Hold | NotifAction::Defer(_) => {
                log::warn!(
                    "{} of pid {} under argv safety cannot be held or deferred; answering EPERM",
                    notif.syscall_label(),
                    notif.pid
                );
                NotifAction::Errno(libc::EPERM)
            }
            NotifAction::Continue => match self.refusal {
                Some(e) => NotifAction::Errno(e),
                None => NotifAction::Continue,
            },
            // Decided in the handlers' view, whatever the host's file.
            NotifAction::Reissue(r) => self.reissue(notif, r),
            other => other,
        };
        let cont = matches!(action, NotifAction::Continue);
        if cont && self.launcher {
            // Before the answer: the program's own execs are frozen.
            self.argv.launcher_done();
        }
        if cont && !self.launcher {
            self.argv.tracer.before_reissued_answer(notif.pid as i32);
        } else if !self.launcher && !reissuing {
            // Refused here: the files a re-issue added for this exec are
            // closed at its return.
            self.argv
                .tracer
                .before_refused_reissued_answer(notif.pid as i32);
        }
        let sent = self.core.answer(notif, action);
        let expect = match (
            cont && sent == Sent::Delivered,
            self.snapshot.take(),
            self.target.take(),
        ) {
            (true, Some(s), Some(target)) => Some(Box::new(Expected {
                argv: s.argv,
                path: s.path,
                target,
            })),
            _ => None,
        };
        if let Some(job) = self.job.take() {
            self.argv.tracer.finish(job, expect);
        }
        sent
    }
}

impl Drop for ExecFreeze<'_> {
    /// A freeze dropped without an answer (a panic): let everything go.
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.argv.tracer.finish(job, None);
        }
    }
}

/// Reads the NUL-terminated string at `addr` in `tid` (at most `max` bytes
/// before the NUL), page by page, with its NUL.
fn read_cstr_nul(tid: i32, addr: u64, max: usize, too_long: i32) -> Result<Vec<u8>, i32> {
    if addr == 0 {
        return Err(libc::EFAULT);
    }
    let mut out = Vec::new();
    let mut cur = addr;
    let mut chunk = [0u8; PAGE as usize];
    loop {
        let want = ((PAGE - cur % PAGE) as usize).min(max + 1 - out.len());
        let n = mem::read(tid, cur, &mut chunk[..want]).map_err(|_| libc::EFAULT)?;
        if n == 0 {
            return Err(libc::EFAULT);
        }
        if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..=nul]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > max {
            return Err(too_long);
        }
        cur += n as u64;
    }
}

/// The string at `addr`, without its NUL (a path: `ENAMETOOLONG` beyond
/// `max`).
fn read_cstr(tid: i32, addr: u64, max: usize) -> Result<Vec<u8>, i32> {
    let mut s = read_cstr_nul(tid, addr, max, libc::ENAMETOOLONG)?;
    s.pop();
    Ok(s)
}

/// Reads the path and the whole argv of the exec (see [`Snapshot`]).
fn snapshot(tid: i32, args: &ExecArgs) -> Result<Snapshot, i32> {
    let mut s = Snapshot::default();
    let path = read_cstr_nul(tid, args.path, libc::PATH_MAX as usize, libc::ENAMETOOLONG)?;
    s.path = path[..path.len() - 1].to_vec();
    s.regions.push((args.path, path));
    if args.argv == 0 {
        return Ok(s);
    }
    let mut ptrs = Vec::new();
    let mut raw = Vec::new();
    let mut total = 0usize;
    'array: loop {
        let at = args.argv + raw.len() as u64;
        let mut chunk = [0u8; 512];
        let want = ((PAGE - at % PAGE) as usize).min(chunk.len());
        let n = mem::read(tid, at, &mut chunk[..want]).map_err(|_| libc::EFAULT)?;
        if n < 8 {
            return Err(libc::EFAULT);
        }
        for word in chunk[..n - n % 8].chunks_exact(8) {
            raw.extend_from_slice(word);
            let p = u64::from_ne_bytes(word.try_into().expect("8 bytes"));
            if p == 0 {
                break 'array;
            }
            ptrs.push(p);
        }
        if raw.len() > ARGV_BYTES_MAX {
            return Err(libc::E2BIG);
        }
    }
    for p in ptrs {
        let a = read_cstr_nul(tid, p, ARG_STRLEN_MAX - 1, libc::E2BIG)?;
        total += a.len() + 8;
        if total > ARGV_BYTES_MAX {
            return Err(libc::E2BIG);
        }
        s.argv.push(a[..a.len() - 1].to_vec());
        s.regions.push((p, a));
    }
    s.regions.push((args.argv, raw));
    Ok(s)
}

/// Resolves an exec path in the caller's view: the caller's root (absolute
/// paths, `RESOLVE_IN_ROOT`), working directory or dirfd. `/proc/self`,
/// `/proc/thread-self` and `/dev/fd` are the caller's, not the
/// supervisor's. Returns the errno the kernel would give for a file that
/// is not there.
pub(crate) fn resolve(
    tid: i32,
    tgid: i32,
    dirfd: i32,
    path: &[u8],
    flags: i32,
) -> Result<Target, i32> {
    let fd = resolve_file(tid, tgid, dirfd, path, flags)?;
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let st = crate::sys::path::fstat(fd.as_fd()).map_err(errno)?;
    let mut files = Vec::new();
    let (interpreter, elf) = match runs_with(&fd, &st)? {
        Runs::Program(elf) => (None, elf),
        Runs::Script(name) => {
            let (program, elf) = interpreter_chain(tid, tgid, name, &mut files)?;
            (Some(program), elf)
        }
    };
    files.insert(0, fd);
    // The program's ELF interpreter, resolved as the kernel does (in the
    // caller's view, a relative name from its working directory).
    let elf_interpreter = match elf {
        None => None,
        Some(name) => {
            let t = resolve_file(tid, tgid, libc::AT_FDCWD, &name, 0)?;
            let st = crate::sys::path::fstat(t.as_fd()).map_err(errno)?;
            files.push(t);
            Some((st.dev, st.ino))
        }
    };
    Ok(Target {
        dev: st.dev,
        ino: st.ino,
        interpreter,
        elf_interpreter,
        files,
    })
}

/// The file an exec path names, pinned (`O_PATH`), resolved in the
/// caller's view.
fn resolve_file(tid: i32, tgid: i32, dirfd: i32, path: &[u8], flags: i32) -> Result<OwnedFd, i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
        libc::O_NOFOLLOW
    } else {
        0
    };
    // Joined by bytes: a name that is not UTF-8 is the name it is.
    let under = |base: String, rest: &[u8]| [base.as_bytes(), rest].concat();
    let fd: OwnedFd = if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(libc::ENOENT);
        }
        trusted(format!("/proc/{tgid}/fd/{dirfd}").as_bytes(), 0).map_err(errno)?
    } else if let Some(own) = own_proc_path(path, tid, tgid) {
        trusted(&own, nofollow).map_err(errno)?
    } else if path[0] == b'/' {
        let root =
            trusted(format!("/proc/{tid}/root").as_bytes(), libc::O_DIRECTORY).map_err(errno)?;
        let how = crate::sys::fs::OpenHow {
            flags: (libc::O_PATH | libc::O_CLOEXEC | nofollow) as u64,
            mode: 0,
            resolve: crate::sys::fs::RESOLVE_IN_ROOT,
        };
        let c = std::ffi::CString::new(path).map_err(|_| libc::EINVAL)?;
        match crate::sys::fs::openat2(Some(root.as_fd()), &c, &how) {
            Ok(fd) => fd,
            // A magic link on the way (not followed in root mode).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EXDEV)) => {
                trusted(&under(format!("/proc/{tid}/root"), path), nofollow).map_err(errno)?
            }
            Err(e) => return Err(errno(e)),
        }
    } else if dirfd == libc::AT_FDCWD {
        trusted(&under(format!("/proc/{tid}/cwd/"), path), nofollow).map_err(errno)?
    } else {
        trusted(&under(format!("/proc/{tgid}/fd/{dirfd}/"), path), nofollow).map_err(errno)?
    };
    Ok(fd)
}

/// What the kernel runs a file with, by its first bytes.
enum Runs {
    /// A script: the interpreter its `#!` line names.
    Script(Vec<u8>),
    /// A program, with the ELF interpreter it names, if any.
    Program(Option<Vec<u8>>),
}

/// What the pinned file `fd` is run with, as the kernel parses its `#!`
/// line or its ELF program headers (from one read of its first bytes).
fn runs_with(fd: &OwnedFd, st: &crate::sys::path::FileStat) -> Result<Runs, i32> {
    if !st.is_file() {
        return Ok(Runs::Program(None));
    }
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // A file the supervisor may not read (execute-only, for a supervisor
    // without root) is taken as a program without an ELF interpreter: the
    // kernel runs it by execute permission alone. If it is in fact a
    // script, or names an ELF interpreter, the new image is killed at the
    // exec event (fail closed).
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(Runs::Program(None));
    };
    let head = crate::script::read_head(&f).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let line = &head[..head.len().min(crate::script::SCRIPT_HEADER)];
    match crate::script::interpreter(line).map_err(|e| e.get())? {
        Some(name) => Ok(Runs::Script(name.to_vec())),
        None => Ok(Runs::Program(crate::script::elf_interpreter(&head, &f))),
    }
}

/// The program at the end of the interpreter chain that starts with
/// `name` (resolved as the kernel does: in the caller's view, relative to
/// its working directory), and the ELF interpreter that program names.
fn interpreter_chain(
    tid: i32,
    tgid: i32,
    mut name: Vec<u8>,
    files: &mut Vec<OwnedFd>,
) -> Result<(FileId, Option<Vec<u8>>), i32> {
    for _ in 0..MAX_SCRIPT_LEVELS {
        let t = resolve_file(tid, tgid, libc::AT_FDCWD, &name, 0)?;
        let st = crate::sys::path::fstat(t.as_fd())
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let next = runs_with(&t, &st)?;
        files.push(t);
        match next {
            Runs::Program(elf) => return Ok(((st.dev, st.ino), elf)),
            Runs::Script(next) => name = next,
        }
    }
    Err(libc::ELOOP)
}

/// `path` with a leading `/proc/self`, `/proc/thread-self` or `/dev/fd`
/// (or `/dev/stdin`...) rewritten to the caller's own procfs entries.
fn own_proc_path(path: &[u8], tid: i32, tgid: i32) -> Option<Vec<u8>> {
    let map = [
        ("/proc/self/", format!("/proc/{tgid}/")),
        ("/proc/thread-self/", format!("/proc/{tgid}/task/{tid}/")),
        ("/dev/fd/", format!("/proc/{tgid}/fd/")),
        ("/dev/stdin", format!("/proc/{tgid}/fd/0")),
        ("/dev/stdout", format!("/proc/{tgid}/fd/1")),
        ("/dev/stderr", format!("/proc/{tgid}/fd/2")),
        ("/proc/", "/proc/".to_owned()),
    ];
    map.iter().find_map(|(from, to)| {
        path.strip_prefix(from.as_bytes())
            .map(|rest| [to.as_bytes(), rest].concat())
    })
}

/// Opens `path` as `O_PATH`, following every link (paths the supervisor
/// made from the caller's own procfs entries).
fn trusted(path: &[u8], extra: i32) -> std::io::Result<OwnedFd> {
    let how = crate::sys::fs::OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC | extra) as u64,
        mode: 0,
        resolve: 0,
    };
    let c = std::ffi::CString::new(path)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    crate::sys::fs::openat2(None, &c, &how)
}

/// Starts the re-issue of a trapped call as `r` says ([`super::reissue`]):
/// the tracer adds its files to the caller and sets the rewrite up
/// ([`super::tracer::Tracer::reissue`]); returns the answer (`EACCES`,
/// which the caller sees only if the rewrite is not made).
pub(super) fn start_reissue(
    argv: &ArgvSafety,
    notif: &Notification,
    r: crate::action::Reissue,
) -> NotifAction {
    let refused = NotifAction::Errno(libc::EACCES);
    if !super::reissue::supported() || !super::reissue::well_formed(&r) {
        return refused;
    }
    let tid = notif.pid as i32;
    let caller = Task {
        tid,
        tgid: crate::handler::thread_group_of(tid).unwrap_or(tid),
    };
    if let Err(why) = argv
        .tracer
        .reissue(caller, notif.id, notif.nr as u32 as u64, r)
    {
        log::log!(
            why.log_level(),
            "pid {tid}: {} cannot be re-issued ({why}); answering EACCES",
            notif.syscall_label()
        );
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_procfs_paths_are_the_callers() {
        assert_eq!(
            own_proc_path(b"/proc/self/exe", 7, 5).as_deref(),
            Some(&b"/proc/5/exe"[..])
        );
        assert_eq!(
            own_proc_path(b"/dev/fd/3", 7, 5).as_deref(),
            Some(&b"/proc/5/fd/3"[..])
        );
        assert_eq!(own_proc_path(b"/bin/true", 7, 5), None);
    }

    #[test]
    fn resolves_in_the_callers_view_and_reports_missing_files() {
        let me = std::process::id() as i32;
        let t = resolve(me, me, libc::AT_FDCWD, b"/bin/sh", 0).expect("/bin/sh");
        assert!(t.interpreter.is_none());
        // Dynamic: its ELF interpreter is pinned after it.
        assert!(t.elf_interpreter.is_some());
        assert_eq!(t.files.len(), 2);
        // A script: the program at the end of its chain (two levels here).
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("inner");
        std::fs::write(&inner, "#!/bin/sh\n").expect("write");
        let outer = dir.path().join("outer");
        std::fs::write(&outer, format!("#!{} -x\n", inner.display())).expect("write");
        let t = resolve(
            me,
            me,
            libc::AT_FDCWD,
            outer.to_str().unwrap().as_bytes(),
            0,
        )
        .expect("script");
        use std::os::unix::fs::MetadataExt;
        let sh = std::fs::metadata("/bin/sh").expect("sh");
        assert_eq!(t.interpreter, Some((sh.dev(), sh.ino())));
        // A loop of scripts is refused as the kernel refuses it.
        let a = dir.path().join("a");
        std::fs::write(&a, format!("#!{}\n", a.display())).expect("write");
        assert_eq!(
            resolve(me, me, libc::AT_FDCWD, a.to_str().unwrap().as_bytes(), 0).unwrap_err(),
            libc::ELOOP
        );
        assert_eq!(
            resolve(me, me, libc::AT_FDCWD, b"/no/such/unotify-file", 0).unwrap_err(),
            libc::ENOENT
        );
        assert_eq!(
            resolve(me, me, libc::AT_FDCWD, b"/etc/passwd/x", 0).unwrap_err(),
            libc::ENOTDIR
        );
    }

    #[test]
    fn the_new_image_maps_the_executable_and_the_decided_interpreter_only() {
        let dev = |maj, min| libc::makedev(maj, min);
        let line = |maj: u32, ino: u64, range: &str| {
            format!("{range} r-xp 00000000 {maj:02x}:01 {ino}    /x\n")
        };
        let (exe, ld) = ((dev(8, 1), 10), (dev(8, 1), 20));
        let anon = "7ffd0000-7ffd1000 rw-p 00000000 00:00 0    [stack]\n";
        let no_stat = |_: &str| -> std::io::Result<FileId> {
            Err(std::io::Error::from_raw_os_error(libc::EPERM))
        };
        let ok_maps = format!(
            "{}{}{anon}",
            line(8, 10, "1000-2000"),
            line(8, 20, "3000-4000")
        );
        assert!(check_mapped(ok_maps.as_bytes(), exe, Some(ld), no_stat).is_ok());
        // Expected an interpreter and none mapped, or one mapped unexpectedly.
        let exe_only = format!("{}{anon}", line(8, 10, "1000-2000"));
        assert!(check_mapped(exe_only.as_bytes(), exe, Some(ld), no_stat).is_err());
        assert!(check_mapped(exe_only.as_bytes(), exe, None, no_stat).is_ok());
        assert!(check_mapped(ok_maps.as_bytes(), exe, None, no_stat).is_err());
        // Another file: known through map_files, or refused without it.
        let other = format!("{}{}", line(8, 10, "1000-2000"), line(8, 30, "3000-4000"));
        assert!(check_mapped(other.as_bytes(), exe, Some(ld), no_stat).is_err());
        assert!(check_mapped(other.as_bytes(), exe, Some(ld), |_| Ok(ld)).is_ok());
        assert!(check_mapped(other.as_bytes(), exe, Some(ld), |_| Ok((dev(8, 1), 30))).is_err());
        // A device maps shows that is not st_dev (btrfs), without map_files:
        // the executable's inode on one device, the interpreter's beside it.
        let shifted = format!("{}{}", line(0, 10, "1000-2000"), line(0, 20, "3000-4000"));
        assert!(check_mapped(shifted.as_bytes(), exe, Some(ld), no_stat).is_ok());
        let split = format!("{}{}", line(0, 10, "1000-2000"), line(9, 20, "3000-4000"));
        assert!(check_mapped(split.as_bytes(), exe, Some(ld), no_stat).is_err());
        let stranger = format!("{}{}", line(0, 10, "1000-2000"), line(0, 30, "3000-4000"));
        assert!(check_mapped(stranger.as_bytes(), exe, Some(ld), no_stat).is_err());
        let elsewhere = (dev(9, 1), 20);
        assert!(check_mapped(shifted.as_bytes(), exe, Some(elsewhere), no_stat).is_err());
    }

    #[test]
    fn snapshot_serves_reads_inside_its_regions() {
        let s = Snapshot {
            regions: vec![(0x1000, b"abc\0".to_vec())],
            path: b"abc".to_vec(),
            argv: Vec::new(),
            files: Vec::new(),
        };
        let mut buf = [0u8; 2];
        assert!(s.serve(0x1001, &mut buf));
        assert_eq!(&buf, b"bc");
        assert!(!s.serve(0x1003, &mut [0u8; 2]));
        assert_eq!(s.serve_cstr(0x1000, 10).unwrap().unwrap(), b"abc");
        assert!(s.serve_cstr(0x2000, 10).is_none());
    }
}
