//! Exec argv safety: what an `execve`/`execveat` was decided on is what the
//! kernel runs. Owns the exec freeze, the exec-event re-check and the filter
//! rules that take cross-process writers away; called by the pipeline
//! (stage 5) and the sandbox builder; calls `sys` and the answer core.
//!
//! # Who can change argv during an exec, and what stops each
//!
//! The arguments and the path of an exec live in the caller's memory. They
//! are read for the decision (handlers, the policy callback), then the
//! kernel reads them again after `CONTINUE`. Between the two:
//!
//! - **Tasks sharing the caller's address space**: its threads, the other
//!   threads of a `vfork` parent, a sibling `vfork` child of the same
//!   parent (other `CLONE_VM` children are refused by the filter, see
//!   [`install`]). They are *frozen* (stopped with ptrace) before the first
//!   read and released once the kernel has copied argv. They are found
//!   from the caller at exec time ([`component`]): a single-threaded caller
//!   needs one read and one `kcmp` with its parent; otherwise its threads,
//!   then every process reachable through parent, child and sibling links
//!   whose address space is the caller's (`kcmp`). Nothing else is stopped:
//!   two execs in processes that share no memory never touch the same
//!   task, and a single-threaded exec (a shell's fork and exec,
//!   `posix_spawn`) freezes nothing.
//! - **Other processes of the sandbox**, which reach the caller's memory
//!   only through `ptrace`, `process_vm_writev` and `/proc/<pid>/mem`:
//!   those are taken away instead of freezing their owners. `ptrace` is
//!   refused in the filter (`EPERM`: a debugger inside fails clearly, not
//!   at random); an open of a procfs `mem` file for writing is refused by
//!   the on-behalf open of path denial, which argv safety turns on (with an
//!   empty deny list if nothing is denied): an open trapped and answered
//!   `CONTINUE` could be redirected to another path after the check, an
//!   open performed by the supervisor on a pinned file cannot. Only an
//!   open with a write access mode can write through such a file, and
//!   `open`/`openat` carry the mode in a register: with nothing denied
//!   (argv safety alone, `--exec-deny`), the filter traps only the opens
//!   that are not a plain read, and the others (most opens of a build or
//!   an interpreter's start) run untrapped (`paths::PathScope::WriteOpens`;
//!   `openat2`, whose flags are in memory, stays trapped). The
//!   supervisor's own `/proc/self/mem` is not reachable either (see
//!   `paths`). `process_vm_writev` and `pidfd_getfd` are refused for every
//!   sandbox by the filter's isolation rules (issue 9, section 1, on its
//!   own branch when this was written): they are not repeated here, and
//!   until they are merged `process_vm_writev` is caught only by the
//!   re-check below.
//! - **Kernel-side writers**, which no freeze stops: an asynchronous I/O
//!   completion (`io_submit`, `io_uring`), a `userfaultfd` page fill (the
//!   call, opens of `/dev/userfaultfd` for writing, and its
//!   `USERFAULTFD_IOC_NEW`, refused for every sandbox by `isolation`, so a
//!   read-only open of the device makes nothing), a
//!   system call of a frozen thread that completes in the kernel, a thread
//!   exit clearing its `clear_child_tid` word, a page of a shared or
//!   file-backed mapping written by another process. The first three are
//!   refused under argv safety (`io_setup`, `io_submit`, `io_uring_setup`,
//!   `userfaultfd`: `EPERM`). For all of them, the exec is re-checked at its
//!   exec event, from the new image, before it runs one instruction: its
//!   argv (`/proc/<pid>/cmdline`, the kernel's copy) must equal the copy the
//!   decision was made on, and its executable the file the path named then;
//!   on a mismatch the new image is killed.
//!
//! The decision is made on one copy: argv and the path are read whole once
//! the freeze holds ([`exec::Snapshot`]), handlers that read that memory
//! are served from the copy, and the policy callback gets the copy. An argv
//! that cannot be read whole fails closed (`EFAULT`, or `E2BIG` beyond the
//! kernel's own limits). An exec whose file does not exist (a `$PATH`
//! probe) freezes nothing: it is answered `ENOENT` by the supervisor, never
//! `CONTINUE`, so nothing is run.
//!
//! # ptrace ownership
//!
//! Only the thread that seized a task may drive it, and a task can be
//! seized once. So one thread, the [`tracer`], does every ptrace operation
//! of the supervisor: it seizes, interrupts, waits for and releases the
//! tasks of every freeze, and watches each caller to its exec event.
//! Workers send it requests and wait for the freeze to be in place. A task
//! two freezes need (the parent of two `vfork` children that exec at once)
//! is held by both and let go when the last one ends; a task whose stop is
//! still to come when its freeze ends stays with the tracer, which detaches
//! it when it stops, and hands it to the next freeze that needs it. No
//! worker ever owns a tracee, so no freeze can fail because of another.
//!
//! When the caller shares its memory with no other task (a shell's fork
//! and exec), nothing is stopped and the worker does not wait for the
//! caller's seize before reading argv: only its answer waits for it.
//!
//! The launcher's exec of the program (the sandbox's first process, before
//! any exec of it was let through) is decided on the same copy but not
//! seized: it is this library's code in a single-threaded child, and no
//! other process of the sandbox exists yet to change its memory or the
//! files its path names. The ptrace thread starts with the first exec of
//! the program, so a program that execs nothing has none. Every later exec
//! of the first process is the program's and is frozen
//! (`the_first_process_is_frozen_once_the_launcher_has_exec_d`).
//!
//! Fork-like calls are not traced for argv safety: nothing here needs a
//! child stopped before it runs (the freeze finds the address space's
//! tasks from the caller when it execs), and process accounting commits a
//! fork's token on the delivered `CONTINUE` and reconciles with the process
//! tree. The policy's restrictions inherited at creation do trace forks:
//! through the same tracer ([`PtraceOwner::trace_fork`], a service), so a
//! task both need is arbitrated by its table, never fought over.
//!
//! # Re-issuing a trapped exec
//!
//! The tracer also carries out [`reissue`]: a handler that answers
//! `NotifAction::Reissue` (the chroot, for an exec of a file of its view
//! that the kernel cannot reach by the program's path) has the caller,
//! still waiting in its trapped call, stopped on its way back and made to
//! issue another call in its place, which is trapped and decided anew.
//! Only the exec freeze's answer carries it out (`Tracer::reissue`); any
//! other answer path refuses it with `EACCES`.
//!
//! # Known limits
//!
//! - A task that a debugger outside the sandbox traces (`strace -f` of the
//!   whole run) cannot be seized: its execs, and those of tasks sharing
//!   its memory, fail with `EPERM`.
//! - A frozen task waiting for a received notification is interrupted; on
//!   kernels without `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` that restarts
//!   its call (answered again; an on-behalf side effect may repeat).
//! - The executable is compared by file identity; a script by its path
//!   string and arguments (its interpreter runs it by path). An image run
//!   through `binfmt_misc`, or a file replaced between the check and the
//!   kernel's lookup, differs and is killed (fail closed); the launcher's
//!   exec is not re-checked, so a file replaced there by a process outside
//!   the sandbox runs (inside, none exists yet). Relative paths
//!   are resolved from `/proc/<tid>/cwd`, where an absolute symlink is
//!   followed in the supervisor's root, not the caller's.

pub(crate) mod component;
pub(crate) mod error;
pub(crate) mod exec;
mod fault;
pub(crate) mod reissue;
pub(crate) mod tracer;

pub(crate) use tracer::{ForkWitness, PendingFork};

/// A file by identity: `(st_dev, st_ino)`.
pub(crate) type FileId = (u64, u64);

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::action::NotifAction;
use crate::error::{Error, Result};
use crate::filter::{ArgCheck, FilterBuilder};
use crate::handler::{MemoryCopy, MemoryError};
use crate::notification::Notification;
use crate::supervisor::enforcement::{Enforcement, Install, Running, Stage, StartEnv, TakeOver};
use crate::supervisor::notifier::{Notifier, Sent, Settle};
use crate::syscalls;

/// Bound on the wait for a frozen task to stop.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Kills task `tid` (fail closed) after logging `why` (a warning); one
/// gone already (`ESRCH`) is not an error.
pub(crate) fn kill_task(tid: i32, why: std::fmt::Arguments<'_>) {
    log::warn!("{why}");
    if let Err(e) = crate::sys::process::kill(tid, libc::SIGKILL) {
        if e.raw_os_error() != Some(libc::ESRCH) {
            log::error!("cannot kill task {tid}: {e}");
        }
    }
}

/// Calls refused (`EPERM`) while argv safety is on: `ptrace` (a tracer
/// inside could write the exec caller's memory), and the kernel-side
/// writers a freeze cannot stop (asynchronous I/O, `io_uring`,
/// `userfaultfd`). `process_vm_writev` and `pidfd_getfd` are refused for
/// every sandbox by the filter's isolation rules and are not repeated here.
pub(crate) const REFUSED: &[&str] = &[
    "ptrace",
    "io_setup",
    "io_submit",
    "io_uring_setup",
    "userfaultfd",
];

/// `clone` flags (first argument, in a register: the filter sees what the
/// kernel gets).
const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
const CLONE_PARENT: u64 = libc::CLONE_PARENT as u64;

/// Adds the filter rules of argv safety: the refusals of [`REFUSED`], and
/// the shapes of shared memory the freeze does not look for. A task may
/// share its address space with another only as its thread
/// (`CLONE_THREAD`) or as a `vfork` child, whose creating thread waits
/// until it execs or exits, and which is its creator's child:
/// `clone(CLONE_VM)` without `CLONE_THREAD` or `CLONE_VFORK`, or with
/// `CLONE_PARENT` (a `vfork` child that would be its creator's sibling),
/// fails with `EPERM`. `clone3`, whose flags the kernel reads from memory
/// after the check, fails with `ENOSYS` (the C library falls back to
/// `clone`). So a single-threaded exec caller shares its memory at most
/// with its parent ([`component`]).
pub(crate) fn install(filter: &mut FilterBuilder) -> Result<()> {
    filter.refuse_undecided(REFUSED, libc::EPERM)?;
    if let Ok(nr) = syscalls::resolve("clone") {
        let vm_child = ArgCheck::new(0, CLONE_VM | CLONE_THREAD | CLONE_VFORK, CLONE_VM);
        let vm_sibling = ArgCheck::new(
            0,
            CLONE_VM | CLONE_THREAD | CLONE_PARENT,
            CLONE_VM | CLONE_PARENT,
        );
        filter.refuse_first(nr, vec![vm_child], libc::EPERM)?;
        filter.refuse_first(nr, vec![vm_sibling], libc::EPERM)?;
    }
    if let Ok(nr) = syscalls::resolve("clone3") {
        // Ahead of any handler (one could let it through).
        filter.refuse_always(nr, libc::ENOSYS)?;
    }
    Ok(())
}

/// Whether an on-behalf open of `pinned` with `flags` must be refused under
/// argv safety: a procfs `mem` file opened for writing (any process's,
/// the opener's own included, since an fd can be passed on), or the
/// `userfaultfd` device (whatever its name: compared by device number).
pub(crate) fn refuses_open(
    pinned: std::os::fd::BorrowedFd<'_>,
    st: &crate::sys::path::FileStat,
    flags: u64,
) -> bool {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    let own = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&pinned));
    {
        if st.mode & libc::S_IFMT == libc::S_IFCHR {
            use std::os::unix::fs::MetadataExt;
            static UFFD: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
            let uffd =
                *UFFD.get_or_init(|| std::fs::metadata("/dev/userfaultfd").ok().map(|m| m.rdev()));
            return uffd == Some(st.rdev);
        }
    }
    if flags & libc::O_ACCMODE as u64 == libc::O_RDONLY as u64 || !st.on_anonymous_device() {
        return false;
    }
    if crate::sys::path::fs_type(pinned).ok() != Some(PROC_SUPER_MAGIC) {
        return false;
    }
    // Which procfs file: the name the kernel gives the pinned fd.
    match std::fs::read_link(own) {
        Ok(p) => p.file_name().is_some_and(|n| n == "mem"),
        // Unnamed: refuse (fail closed).
        Err(_) => true,
    }
}

/// Argv-safety state of one supervisor (present only when it is on).
#[derive(Debug)]
pub(crate) struct ArgvSafety {
    exec_nrs: Vec<i32>,
    pub(crate) tracer: Arc<tracer::Tracer>,
    /// This process (the supervisor's), read once at start.
    pub(crate) supervisor: i32,
    /// The sandbox's first process.
    root: i32,
    /// The first process still runs the launcher, not the program: no exec
    /// of it has been let through yet (see [`ArgvSafety::launcher_exec`]).
    launcher: std::sync::atomic::AtomicBool,
}

fn nr(name: &str) -> Option<i32> {
    syscalls::resolve(name).ok().map(|n| n as i32)
}

/// Entries of the in-flight map beyond which answered ones are pruned.
const IN_FLIGHT_PRUNE: usize = 4096;

impl ArgvSafety {
    /// Argv safety for the sandbox rooted at `root`, its freezes made by
    /// `tracer`.
    pub(crate) fn new(root: i32, tracer: Arc<tracer::Tracer>) -> std::io::Result<Self> {
        Ok(ArgvSafety {
            exec_nrs: ["execve", "execveat"]
                .iter()
                .filter_map(|n| nr(n))
                .collect(),
            tracer,
            supervisor: std::process::id() as i32,
            root,
            launcher: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Whether exec caller `tid` is the launcher: the sandbox's first
    /// process before any of its execs was let through. The launcher is
    /// this library's own code in a single-threaded child that shares its
    /// memory with the supervisor only, and no other process of the sandbox
    /// exists yet (only the program, once it runs, can start one): nothing
    /// but the kernel can change its path or argv, or the files they name
    /// from inside the sandbox, between the decision and the exec. Its exec
    /// is decided on the same copy as every other, but needs no ptrace: no
    /// seize, no exec-event re-check (and no ptrace thread, for a sandbox
    /// whose program execs nothing).
    pub(crate) fn launcher_exec(&self, tid: i32) -> bool {
        tid == self.root && self.launcher.load(std::sync::atomic::Ordering::Acquire)
    }

    /// An exec of the launcher is let through: from now on the first
    /// process may run the program, whose execs are frozen. Called before
    /// the answer is sent, so no exec of the program is ever taken for the
    /// launcher's.
    pub(crate) fn launcher_done(&self) {
        self.launcher
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Whether `notif` is an exec (frozen before dispatch).
    pub(crate) fn is_exec(&self, notif: &Notification) -> bool {
        self.exec_nrs.contains(&notif.nr)
    }

    /// The poll thread received notification `id` of `tid`.
    pub(crate) fn received(&self, tid: i32, id: u64) {
        let in_flight = self.tracer.in_flight();
        let mut m = in_flight.map.lock();
        if m.len() >= IN_FLIGHT_PRUNE {
            let listener = in_flight.listener.as_fd();
            m.retain(|_, id| crate::sys::seccomp::id_valid(listener, *id).is_ok());
        }
        m.insert(tid, id);
    }
}

/// Argv safety, as a feature of the sandbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArgvSafetyFeature;

impl Enforcement for ArgvSafetyFeature {
    /// The refusals of [`REFUSED`], and every exec trapped (frozen before
    /// anything reads its argv).
    fn late_rules(&self, i: &mut Install<'_>) -> Result<()> {
        install(i.filter)?;
        for name in ["execve", "execveat"] {
            if let Ok(nr) = syscalls::resolve(name) {
                if !i.user_denied(nr) && !i.filter.is_notified(nr) {
                    i.filter.notify(nr)?;
                }
            }
        }
        Ok(())
    }

    fn start(&self, env: &StartEnv<'_>) -> Result<Option<Running>> {
        let owner = PtraceOwner::of(env)?;
        let argv = ArgvSafety::new(env.pgid, Arc::clone(&owner.0))
            .map_err(|e| Error::io("start the ptrace thread", e))?;
        Ok(Some(
            Running::new(Arc::new(argv)).with_service(Arc::new(owner)),
        ))
    }
}

/// The supervisor's one ptrace owner (its [`tracer::Tracer`]), as a
/// service: what another feature may ask of it. Made by the first feature
/// that starts and needs it, found by the others in their
/// [`StartEnv::services`].
#[derive(Debug, Clone)]
pub(crate) struct PtraceOwner(Arc<tracer::Tracer>);

impl PtraceOwner {
    /// The owner a feature started before made, else a new one (its thread
    /// starts with its first request); the caller publishes it
    /// ([`Running::with_service`]).
    pub(crate) fn of(env: &StartEnv<'_>) -> Result<PtraceOwner> {
        if let Some(owner) = env.services.get::<PtraceOwner>() {
            return Ok(owner.clone());
        }
        // The ptrace thread checks which tasks wait for answers.
        let l = env
            .listener
            .try_clone_to_owned()
            .map_err(|e| Error::io("duplicate the listener for the ptrace thread", e))?;
        let tracer = tracer::Tracer::start(env.pgid, l)
            .map_err(|e| Error::io("start the ptrace thread", e))?;
        Ok(PtraceOwner(Arc::new(tracer)))
    }

    /// Traces the fork-like call thread `tid` of process `tgid` waits in,
    /// for its creation event ([`tracer::Tracer::trace_fork`]).
    pub(crate) fn trace_fork(
        &self,
        tid: i32,
        tgid: i32,
        witness: Box<dyn ForkWitness>,
    ) -> PendingFork {
        self.0.trace_fork(component::Task { tid, tgid }, witness)
    }
}

impl Stage for ArgvSafety {
    fn watches_receives(&self) -> bool {
        true
    }

    /// A re-issue of a call that is not an exec (the copy-on-write view's
    /// `chdir` into its upper tree): the ptrace thread rewrites it too.
    fn reissue(
        &self,
        _core: &Notifier,
        notif: &Notification,
        r: crate::action::Reissue,
    ) -> std::result::Result<NotifAction, crate::action::Reissue> {
        Ok(exec::start_reissue(self, notif, r))
    }

    fn on_receive(&self, tid: i32, id: u64) {
        self.received(tid, id);
    }

    /// Stage 2: an exec is frozen before anything reads its argv.
    fn take_over<'a>(
        &'a self,
        core: &'a Notifier,
        notif: &Notification,
    ) -> Option<Box<dyn TakeOver + 'a>> {
        self.is_exec(notif)
            .then(|| Box::new(exec::freeze(core, self, notif)) as Box<dyn TakeOver + 'a>)
    }
}

impl TakeOver for exec::ExecFreeze<'_> {
    fn refusal_level(&self) -> log::Level {
        self.failure()
            .map_or(log::Level::Warn, error::FreezeError::log_level)
    }

    fn refusal(&self) -> Option<String> {
        self.failure().map(ToString::to_string)
    }

    fn copy(&self) -> Option<&dyn MemoryCopy> {
        self.snapshot().map(|s| s as &dyn MemoryCopy)
    }

    fn argv(&self) -> Option<Vec<String>> {
        self.snapshot().map(|s| s.argv_strings())
    }

    fn fixed_errno(&self) -> Option<i32> {
        self.refused_with()
    }

    fn finish(
        self: Box<Self>,
        _core: &Notifier,
        notif: &Notification,
        action: NotifAction,
        fork_token: Option<Box<dyn Settle>>,
    ) {
        let sent = exec::ExecFreeze::finish(*self, notif, action);
        // (An exec carries no fork token.)
        if let Some(t) = fork_token {
            t.settle(sent == Sent::Delivered);
        }
    }
}

impl MemoryCopy for exec::Snapshot {
    fn serve(&self, addr: u64, buf: &mut [u8]) -> bool {
        exec::Snapshot::serve(self, addr, buf)
    }

    fn serve_cstr(
        &self,
        addr: u64,
        max_len: usize,
    ) -> Option<std::result::Result<Vec<u8>, MemoryError>> {
        exec::Snapshot::serve_cstr(self, addr, max_len)
    }

    fn exec_files(&self) -> &[OwnedFd] {
        &self.files
    }
}

/// The scheduling state letter of task `tid` (`/proc/<tid>/stat` field 3).
pub(crate) fn task_state(tid: i32) -> Option<u8> {
    crate::sys::procfs::Stat::of(tid).map(|s| s.state)
}
