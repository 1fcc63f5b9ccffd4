//! The handler API: [`Handler`], [`HandlerCtx`] and the per-syscall chains.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::action::NotifAction;
use crate::notification::Notification;
use crate::supervisor::handle::SupervisorHandle;
use crate::supervisor::notifier::{Notifier, PauseHold, Settle};
use crate::supervisor::services::Services;
use crate::sys::{mem, pidfd};

pub(crate) use crate::sys::procfs::thread_group_of;

/// Decides trapped system calls. Runs on a worker thread and may block
/// briefly; slow work belongs in [`NotifAction::defer`].
///
/// Implemented for every `Fn(&HandlerCtx) -> NotifAction + Send + Sync`.
pub trait Handler: Send + Sync + 'static {
    /// Decides one trapped call. [`NotifAction::Continue`] passes it on to
    /// the next handler in the chain.
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction;
}

impl<F> Handler for F
where
    F: Fn(&HandlerCtx<'_>) -> NotifAction + Send + Sync + 'static,
{
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self(cx)
    }
}

/// Why the trapped task's memory could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemoryError {
    /// The notification is no longer valid: the task was interrupted or died.
    /// Whatever is answered now is discarded by the kernel.
    Gone,
    /// The address is not readable or writable in the task (answer `EIO`).
    Fault(io::Error),
    /// No NUL byte within the limit given to [`HandlerCtx::read_cstr`].
    TooLong,
}

impl MemoryError {
    /// The errno a handler should answer with.
    pub fn errno(&self) -> i32 {
        match self {
            MemoryError::Gone | MemoryError::Fault(_) => libc::EIO,
            MemoryError::TooLong => libc::ENAMETOOLONG,
        }
    }
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Gone => f.write_str("the trapped call is no longer pending"),
            MemoryError::Fault(e) => write!(f, "cannot access the task's memory: {e}"),
            MemoryError::TooLong => f.write_str("string is longer than the limit"),
        }
    }
}

impl std::error::Error for MemoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MemoryError::Fault(e) => Some(e),
            _ => None,
        }
    }
}

const PAGE: u64 = 4096;

/// What a handler gets: the notification and safe access to the trapped task.
///
/// Memory accessors check the notification's validity before and after the
/// access (`SECCOMP_IOCTL_NOTIF_ID_VALID`), so data read belongs to the task
/// that made the call. The task's other threads may still change that memory
/// afterwards: decide on the copy, never on the pointer.
pub struct HandlerCtx<'a> {
    notif: &'a Notification,
    /// The answer core (validity checks, the pause).
    core: &'a Notifier,
    /// The running features a builtin handler may use.
    services: &'a Services,
    /// What dispatch leaves for the pipeline's later stages.
    effects: &'a Effects,
    handle: &'a SupervisorHandle,
    /// A copy of the call's memory that reads inside it are served from (an
    /// exec under argv safety: its path and argv; see `freeze`).
    copy: Option<&'a dyn MemoryCopy>,
    /// The errno the call is answered with whatever dispatch decides
    /// short of another errno (an exec whose file is missing; see
    /// [`HandlerCtx::answer_fixed`]).
    fixed_errno: Option<i32>,
}

/// Whether one trapped call still waits for its answer, checkable from
/// any thread ([`HandlerCtx::still_waiting`]). The call stops waiting once
/// answered (by its deferral's deadline too), when its task dies (its
/// process's exit) or when a signal interrupts it; the kernel then
/// forgets its id (`SECCOMP_IOCTL_NOTIF_ID_VALID` fails), and ids are
/// never reused by the listener.
pub(crate) struct StillWaiting {
    /// Weak: a stopped supervisor answers nothing any more.
    supervisor: SupervisorHandle,
    id: u64,
}

impl StillWaiting {
    /// Whether the call still waits for its answer (`false` once the
    /// supervisor has stopped or detached its listener).
    pub(crate) fn check(&self) -> bool {
        self.supervisor
            .with(|core, _| core.id_valid(self.id))
            .unwrap_or(false)
    }
}

impl fmt::Debug for HandlerCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerCtx")
            .field("notification", self.notif)
            .finish_non_exhaustive()
    }
}

/// A copy of some of a trapped task's memory, read while nothing could
/// change it, that reads inside it are served from.
pub(crate) trait MemoryCopy {
    /// Fills `buf` from the copy if `[addr, addr + len)` lies inside it.
    fn serve(&self, addr: u64, buf: &mut [u8]) -> bool;
    /// The string at `addr` from the copy, if it starts inside it.
    fn serve_cstr(&self, addr: u64, max_len: usize) -> Option<Result<Vec<u8>, MemoryError>>;
    /// For an exec: the files the decision is made on, pinned once (the
    /// executable, then each interpreter of its `#!` chain, then the ELF
    /// interpreter of the program the chain ends with). Checks of the
    /// exec read these, not the paths again, so they decide on what the
    /// exec event checks the new image against.
    fn exec_files(&self) -> &[std::os::fd::OwnedFd] {
        &[]
    }
}

/// What dispatch leaves for the pipeline's later stages, for one call: a
/// value of the pipeline's, lent to the handlers through [`HandlerCtx`].
#[derive(Default)]
pub(crate) struct Effects {
    /// A fork counted by the fork handler: settled with the answer.
    fork_token: Cell<Option<Box<dyn Settle>>>,
    /// The policy callback was told about the call (by an on-behalf
    /// handler, before its side effect).
    policy_consulted: Cell<bool>,
    /// The destinations the callback was asked about for this call, with
    /// its answer: a `sendmmsg` reaches several, each is asked once.
    policy_destinations: std::cell::RefCell<Vec<(std::net::SocketAddr, Option<i32>)>>,
    /// The strings the handlers read from the program's memory to decide
    /// the call (a path argument, by its address): what the audit record
    /// names, never a read made after the decision.
    decided_strings: std::cell::RefCell<Vec<(u64, Vec<u8>)>>,
    /// The socket addresses the call was decided on and made to, as read.
    decided_destinations: std::cell::RefCell<Vec<Vec<u8>>>,
    /// The call is held by the pause, in the core: nothing else answers it.
    held_for_pause: Cell<bool>,
    /// The rule that decided the call, as the command line names it
    /// (`deny-path /etc/shadow`), when a feature said: for audit records.
    rule: std::cell::RefCell<Option<(String, bool)>>,
}

impl Effects {
    /// Takes the token of the fork counted for this call.
    pub(crate) fn take_fork_token(&self) -> Option<Box<dyn Settle>> {
        self.fork_token.take()
    }

    /// Whether the policy callback was told about the call.
    pub(crate) fn policy_consulted(&self) -> bool {
        self.policy_consulted.get()
    }

    /// Whether the pause holds the call.
    pub(crate) fn held_for_pause(&self) -> bool {
        self.held_for_pause.get()
    }

    /// The rule that decided the call, if a feature named it, and whether
    /// it refused the call.
    pub(crate) fn rule(&self) -> Option<(String, bool)> {
        self.rule.borrow().clone()
    }
}

/// Published (a service) when the sandbox keeps an audit log: features
/// then name the rules that decide calls ([`HandlerCtx::note_rule`]).
pub(crate) struct Audited;

/// The policy callback, as handlers see it (see [`HandlerCtx::check_policy`]).
pub(crate) trait PolicyCheck: Send + Sync {
    /// `ECONNREFUSED` (or another errno) if `dest` is outside a run-time
    /// network restriction of the caller.
    fn restricted(&self, notif: &Notification, dest: std::net::SocketAddr) -> Option<i32>;
    /// Tells the callback about the call and returns the errno to fail it
    /// with, if it is denied.
    fn consult(&self, notif: &Notification, dest: Option<std::net::SocketAddr>) -> Option<i32>;
}

/// The [`PolicyCheck`] of a sandbox with a policy callback, in its
/// [`Services`].
pub(crate) struct PolicyGate(pub(crate) Arc<dyn PolicyCheck>);

impl<'a> HandlerCtx<'a> {
    pub(crate) fn new(
        notif: &'a Notification,
        core: &'a Notifier,
        services: &'a Services,
        effects: &'a Effects,
        handle: &'a SupervisorHandle,
    ) -> Self {
        HandlerCtx {
            notif,
            core,
            services,
            effects,
            handle,
            copy: None,
            fixed_errno: None,
        }
    }

    /// Serves reads inside `copy` from it.
    pub(crate) fn with_copy(mut self, copy: Option<&'a dyn MemoryCopy>) -> Self {
        self.copy = copy;
        self
    }

    /// Records that the call's owner answers `errno` unless a handler
    /// answers another errno (see [`answer_fixed`](Self::answer_fixed)).
    pub(crate) fn with_fixed_errno(mut self, errno: Option<i32>) -> Self {
        self.fixed_errno = errno;
        self
    }

    /// The errno this call is answered with if handlers let it through,
    /// known before dispatch: an exec under argv safety whose file is
    /// missing is answered `ENOENT`, never `CONTINUE`. A builtin check
    /// that has nothing to check then (no file) may pass it on at once.
    pub(crate) fn answer_fixed(&self) -> Option<i32> {
        self.fixed_errno
    }

    /// The running feature of type `T`, if the sandbox has it.
    pub(crate) fn service<T: std::any::Any + Send + Sync>(&self) -> Option<&'a T> {
        self.services.get::<T>()
    }

    /// Counts this call as a fork: `token` settles with its answer.
    pub(crate) fn set_fork_token(&self, token: Box<dyn Settle>) {
        // A token set twice: the first is rolled back.
        drop(self.effects.fork_token.replace(Some(token)));
    }

    /// Holds the call if the sandbox is paused: `Some(Hold)` when held
    /// (the resume answers it), `Some(EPERM)` when the supervisor is
    /// stopping, `None` when not paused.
    pub(crate) fn hold_if_paused(&self) -> Option<NotifAction> {
        match self.core.hold_if_paused(self.notif) {
            PauseHold::NotPaused => None,
            PauseHold::Held => {
                self.effects.held_for_pause.set(true);
                Some(NotifAction::Hold)
            }
            PauseHold::Stopping => Some(NotifAction::Errno(libc::EPERM)),
        }
    }

    /// Whether the sandbox is paused (its new forks are held).
    pub(crate) fn paused(&self) -> bool {
        self.core.pause_state().0
    }

    /// The trapped call.
    pub fn notification(&self) -> &Notification {
        self.notif
    }

    /// Thread id of the trapped task.
    pub fn pid(&self) -> u32 {
        self.notif.pid
    }

    /// System call number.
    pub fn nr(&self) -> i32 {
        self.notif.nr
    }

    /// Raw argument `i` (0..6).
    pub fn arg(&self, i: usize) -> u64 {
        self.notif.args[i]
    }

    /// Whether the call is still waiting for its answer.
    pub fn id_valid(&self) -> bool {
        self.core.id_valid(self.notif.id)
    }

    /// A check of whether the call still waits for its answer that a
    /// deferred closure can make after the handler returned.
    pub(crate) fn still_waiting(&self) -> StillWaiting {
        StillWaiting {
            supervisor: self.handle.clone(),
            id: self.notif.id,
        }
    }

    /// A failed read: `Gone` if the call is no longer pending (its task
    /// died), else the fault.
    fn fault(&self, e: io::Error) -> MemoryError {
        if self.id_valid() {
            MemoryError::Fault(e)
        } else {
            MemoryError::Gone
        }
    }

    fn check_valid(&self) -> Result<(), MemoryError> {
        if self.id_valid() {
            Ok(())
        } else {
            Err(MemoryError::Gone)
        }
    }

    /// The files an exec's decision is made on (see
    /// `MemoryCopy::exec_files`); empty outside argv safety.
    pub(crate) fn exec_files(&self) -> &[std::os::fd::OwnedFd] {
        self.copy.map_or(&[], |c| c.exec_files())
    }

    /// Reads exactly `buf.len()` bytes at `addr` in the task.
    pub fn read_mem_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.copy.is_some_and(|c| c.serve(addr, buf)) {
            return Ok(());
        }
        // Checked after the read only: what a recycled id let us read is
        // dropped unseen.
        let n = mem::read(self.notif.pid as i32, addr, buf).map_err(|e| self.fault(e))?;
        self.check_valid()?;
        if n < buf.len() {
            return Err(MemoryError::Fault(io::Error::from_raw_os_error(
                libc::EFAULT,
            )));
        }
        Ok(())
    }

    /// Reads `len` bytes at `addr` in the task.
    pub fn read_mem(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        let mut buf = vec![0u8; len];
        self.read_mem_into(addr, &mut buf)?;
        Ok(buf)
    }

    /// The argument vector of the trapped `execve`/`execveat` (each
    /// argument lossily UTF-8: bytes that are not UTF-8 read as U+FFFD; see
    /// [`read_exec_argv_os`](Self::read_exec_argv_os) for the exact bytes),
    /// or `None` for another call or an argv that
    /// cannot be read whole (at most 4096 arguments of 128 KiB each). Under
    /// exec argv safety the reads are served from the freeze's copy, which
    /// the exec event checks against the new image: what this returns is
    /// what the kernel execs.
    ///
    /// ```
    /// use unotify::{HandlerCtx, NotifAction, Sandbox};
    ///
    /// // Refuse any exec that names `rm` in its argv.
    /// let refuse_rm = |cx: &HandlerCtx<'_>| match cx.read_exec_argv() {
    ///     Some(argv) if !argv.iter().any(|a| a.contains("rm")) => NotifAction::Continue,
    ///     _ => NotifAction::Errno(libc::EPERM),
    /// };
    /// let sandbox = Sandbox::builder().handle("execve", refuse_rm).build()?;
    /// # Ok::<(), unotify::Error>(())
    /// ```
    pub fn read_exec_argv(&self) -> Option<Vec<String>> {
        let argv = self.read_exec_argv_os()?;
        Some(
            argv.into_iter()
                .map(|a| match a.into_string() {
                    Ok(s) => s,
                    Err(a) => a.to_string_lossy().into_owned(),
                })
                .collect(),
        )
    }

    /// [`read_exec_argv`](Self::read_exec_argv), each argument as its exact
    /// bytes (an argument that is not UTF-8 is not changed): what a
    /// decision on argv should compare.
    pub fn read_exec_argv_os(&self) -> Option<Vec<std::ffi::OsString>> {
        use std::os::unix::ffi::OsStringExt;
        const ARGV_MAX: u64 = 4096;
        const ARG_MAX_LEN: usize = 128 * 1024;
        let ptr = match self.notification().syscall_name()? {
            "execve" => self.arg(1),
            "execveat" => self.arg(2),
            _ => return None,
        };
        let mut argv = Vec::new();
        if ptr == 0 {
            return Some(argv);
        }
        for i in 0..ARGV_MAX {
            let mut word = [0u8; 8];
            self.read_mem_into(ptr + i * 8, &mut word).ok()?;
            let p = u64::from_ne_bytes(word);
            if p == 0 {
                return Some(argv);
            }
            let bytes = self.read_cstr(p, ARG_MAX_LEN).ok()?;
            argv.push(std::ffi::OsString::from_vec(bytes));
        }
        None
    }

    /// For an exec under argv safety: the files the exec runs, as absolute
    /// paths with symlinks resolved — the executable, then each interpreter
    /// of its `#!` chain, then the ELF interpreter (`PT_INTERP`, the
    /// dynamic loader) of the program the chain ends with — pinned once
    /// when the exec was frozen; the exec event checks the new image
    /// against them. Empty for any other call,
    /// or without argv safety. Unlike the path argument, these name the
    /// program however the call spells it (`execveat` of an fd,
    /// `/proc/self/fd/N`, a symlink, a script's interpreter).
    pub fn exec_programs(&self) -> Vec<std::path::PathBuf> {
        self.exec_files()
            .iter()
            .filter_map(|f| {
                use std::os::fd::AsRawFd;
                std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()
            })
            .collect()
    }

    /// Reads a NUL-terminated string of at most `max_len` bytes (without the
    /// NUL) at `addr`, one page at a time so that it never reads across into
    /// an unmapped page.
    pub fn read_cstr(&self, addr: u64, max_len: usize) -> Result<Vec<u8>, MemoryError> {
        let out = self.read_cstr_unchecked(addr, max_len)?;
        self.check_valid()?;
        Ok(out)
    }

    /// [`read_cstr`](Self::read_cstr) without the check, after the read,
    /// that the call is still waiting (one `SECCOMP_IOCTL_NOTIF_ID_VALID`).
    /// Only for a decision that needs no such check: an answer of
    /// `CONTINUE` whose safety the kernel keeps by itself (a recycled
    /// pid's memory can only have been read if the call is gone, and then
    /// its answer is refused). Anything done on the string's behalf must
    /// call [`check_still_waiting`](Self::check_still_waiting) first.
    pub(crate) fn read_cstr_unchecked(
        &self,
        addr: u64,
        max_len: usize,
    ) -> Result<Vec<u8>, MemoryError> {
        if let Some(served) = self.copy.and_then(|c| c.serve_cstr(addr, max_len)) {
            return served;
        }
        if addr == 0 {
            return Err(MemoryError::Fault(io::Error::from_raw_os_error(
                libc::EFAULT,
            )));
        }
        // Nearly every path is short: the first read takes `FIRST` bytes
        // (not the rest of the page, which the kernel would copy and this
        // would scan for the NUL), the later ones a page at a time.
        const FIRST: usize = 256;
        let mut out = Vec::new();
        let mut cur = addr;
        let mut chunk = [0u8; PAGE as usize];
        loop {
            let room = max_len.saturating_add(1) - out.len();
            let in_page = (PAGE - cur % PAGE) as usize;
            let mut want = in_page.min(room);
            if cur == addr {
                want = want.min(FIRST);
            }
            let n = mem::read(self.notif.pid as i32, cur, &mut chunk[..want])
                .map_err(|e| self.fault(e))?;
            if n == 0 {
                return Err(MemoryError::Fault(io::Error::from_raw_os_error(
                    libc::EFAULT,
                )));
            }
            if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > max_len {
                return Err(MemoryError::TooLong);
            }
            cur += n as u64;
        }
        Ok(out)
    }

    /// Whether the call is still waiting (its id valid): what was read of
    /// its memory since it came is its task's ([`MemoryError::Gone`]
    /// if not).
    pub(crate) fn check_still_waiting(&self) -> Result<(), MemoryError> {
        self.check_valid()
    }

    /// Writes `data` at `addr` in the task.
    pub fn write_mem(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.check_valid()?;
        let n = mem::write(self.notif.pid as i32, addr, data).map_err(MemoryError::Fault)?;
        self.check_valid()?;
        if n < data.len() {
            return Err(MemoryError::Fault(io::Error::from_raw_os_error(
                libc::EFAULT,
            )));
        }
        Ok(())
    }

    /// Duplicates the task's fd `fd` into the supervisor (`pidfd_getfd`).
    ///
    /// Works for calls made by any thread of the process, from the calling
    /// thread's own fd table (a thread made without `CLONE_FILES`, or that
    /// called `unshare(CLONE_FILES)`, has its own): by a pidfd of the thread
    /// (`PIDFD_THREAD`, Linux 6.9); on older kernels by its process's, only
    /// when the thread shares the process's table (`EOPNOTSUPP` if not:
    /// the process's fd of that number is another file).
    pub fn dup_fd(&self, fd: RawFd) -> io::Result<OwnedFd> {
        let pid = self.notif.pid as i32;
        let pidfd = match pidfd::pidfd_open(pid, pidfd::PIDFD_THREAD) {
            Ok(p) => p,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => match pidfd::pidfd_open(pid, 0) {
                Ok(p) => p,
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        || e.raw_os_error() == Some(libc::ENOENT) =>
                {
                    let tgid = thread_group_of(pid).ok_or(e)?;
                    if !pidfd::same_fd_table(pid, tgid)? {
                        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
                    }
                    pidfd::pidfd_open(tgid, 0)?
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        // The pidfd pins a process; if the call is still pending it is ours.
        if !self.id_valid() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        pidfd::pidfd_getfd(pidfd.as_fd(), fd)
    }

    /// For handlers that perform the call on the program's behalf: asks the
    /// sandbox's policy callback (and its run-time network restrictions,
    /// for `dest`) *before* any side effect. Returns the errno to fail the
    /// call with if it is denied; `None` to go ahead (also when the sandbox
    /// has no policy callback). The callback is told about a call once,
    /// and once more for each other destination it reaches (a `sendmmsg`'s
    /// messages): asked again for a destination, the first answer stands.
    pub fn check_policy(&self, dest: Option<std::net::SocketAddr>) -> Option<i32> {
        let policy = &self.services.get::<PolicyGate>()?.0;
        if let Some(e) = dest.and_then(|d| policy.restricted(self.notif, d)) {
            self.note_rule(true, || "policy network restriction".to_owned());
            return Some(e);
        }
        let told = self.effects.policy_consulted.replace(true);
        let Some(d) = dest else {
            // Without a destination: told once, whatever about.
            return if told {
                None
            } else {
                policy.consult(self.notif, None)
            };
        };
        let asked = self
            .effects
            .policy_destinations
            .borrow()
            .iter()
            .find(|(a, _)| *a == d)
            .map(|(_, e)| *e);
        if let Some(answer) = asked {
            return answer;
        }
        let answer = policy.consult(self.notif, Some(d));
        self.effects
            .policy_destinations
            .borrow_mut()
            .push((d, answer));
        answer
    }

    /// Reads the path argument at `ptr` (at most `max_len` bytes), once:
    /// under an audit log the copy is kept as what the call was decided
    /// on, and the record names it ([`decided_cstr`](Self::decided_cstr)).
    pub(crate) fn read_decided_cstr(
        &self,
        ptr: u64,
        max_len: usize,
    ) -> Result<Vec<u8>, MemoryError> {
        let bytes = self.read_cstr(ptr, max_len)?;
        self.keep_decided(ptr, &bytes);
        Ok(bytes)
    }

    /// [`read_decided_cstr`](Self::read_decided_cstr) without the check
    /// that the call still waits ([`read_cstr_unchecked`](Self::read_cstr_unchecked)).
    pub(crate) fn read_decided_cstr_unchecked(
        &self,
        ptr: u64,
        max_len: usize,
    ) -> Result<Vec<u8>, MemoryError> {
        let bytes = self.read_cstr_unchecked(ptr, max_len)?;
        self.keep_decided(ptr, &bytes);
        Ok(bytes)
    }

    /// Keeps `bytes`, read at `ptr`, as what the call is decided on (only
    /// under an audit log; the first copy read stays).
    fn keep_decided(&self, ptr: u64, bytes: &[u8]) {
        if self.services.get::<Audited>().is_none() {
            return;
        }
        let mut kept = self.effects.decided_strings.borrow_mut();
        if !kept.iter().any(|(a, _)| *a == ptr) {
            kept.push((ptr, bytes.to_vec()));
        }
    }

    /// The string at `ptr` as the call was decided on: the copy a handler
    /// read ([`read_decided_cstr`](Self::read_decided_cstr)), else read now.
    pub(crate) fn decided_cstr(&self, ptr: u64, max_len: usize) -> Result<Vec<u8>, MemoryError> {
        let kept = self.effects.decided_strings.borrow();
        match kept.iter().find(|(a, _)| *a == ptr) {
            Some((_, bytes)) => Ok(bytes.clone()),
            None => {
                drop(kept);
                self.read_cstr(ptr, max_len)
            }
        }
    }

    /// Notes a socket address (as read, `sockaddr` bytes) the call was
    /// decided on and made to, for its audit record.
    pub(crate) fn note_destination(&self, addr: &[u8]) {
        if self.services.get::<Audited>().is_none() || addr.is_empty() {
            return;
        }
        self.effects
            .decided_destinations
            .borrow_mut()
            .push(addr.to_vec());
    }

    /// The call's socket address for its audit record, as text (see
    /// [`decode::sockaddr_text`](crate::notification::decode::sockaddr_text)),
    /// and as an IP address when it is one: the copies the call was decided
    /// on ([`note_destination`](Self::note_destination); a `sendmmsg`'s
    /// distinct destinations in order, space-separated, the first giving the
    /// IP address), else, for a call no handler decided on, read now.
    pub(crate) fn decided_destination(&self) -> (Option<String>, Option<std::net::SocketAddr>) {
        use crate::notification::decode;
        let noted = self.effects.decided_destinations.borrow();
        let text = if noted.is_empty() {
            let read = |addr: u64, buf: &mut [u8]| self.read_mem_into(addr, buf).is_ok();
            let name = self.notif.syscall_name().unwrap_or("unknown");
            decode::destination(name, &self.notif.args, &read)
        } else {
            let mut texts: Vec<String> = Vec::new();
            for addr in noted.iter() {
                let t = decode::sockaddr_text(addr);
                if !texts.contains(&t) {
                    texts.push(t);
                }
            }
            Some(texts.join(" "))
        };
        let first = text.as_deref().and_then(|t| t.split(' ').next());
        let ip = first.and_then(|t| t.parse().ok());
        (text, ip)
    }

    /// Tells the sandbox's observer, if it has one, that a rule fired
    /// (`event` is made only then).
    pub(crate) fn report(&self, event: impl FnOnce() -> crate::events::Event) {
        let sink = self.services.get::<crate::events::EventSink>();
        let audited = self.services.get::<Audited>().is_some();
        if sink.is_none() && !audited {
            return;
        }
        let event = event();
        self.note_rule(true, || event.rule());
        if let Some(sink) = sink {
            sink.report(&event);
        }
    }

    /// Names the rule that decided this call (`net-allow 127.0.0.1:8080`)
    /// and whether it `refused` it, for its audit record; the first rule
    /// named stays, unless a refusal follows a rule that let the call
    /// through. `rule` is made only when the sandbox keeps an audit log.
    pub(crate) fn note_rule(&self, refused: bool, rule: impl FnOnce() -> String) {
        if self.services.get::<Audited>().is_none() {
            return;
        }
        let mut slot = self.effects.rule.borrow_mut();
        // A refusal outranks the rule that let the call this far.
        if slot.as_ref().is_none_or(|(_, r)| refused && !r) {
            *slot = Some((rule(), refused));
        }
    }

    /// Names the rule of a handler that refuses this call (`exec-deny
    /// rm`), for its audit record's `rule` (made only when the sandbox
    /// keeps an audit log). An errno answered without a named rule is
    /// recorded as the call failing (`outcome` `failed`), not as refused.
    pub fn refused_by(&self, rule: impl FnOnce() -> String) {
        self.note_rule(true, rule);
    }

    /// The rule named for this call (see [`note_rule`](Self::note_rule)).
    pub(crate) fn noted_rule(&self) -> Option<(String, bool)> {
        self.effects.rule()
    }

    /// A handle on the supervisor, e.g. to answer held calls later.
    pub fn supervisor(&self) -> SupervisorHandle {
        self.handle.clone()
    }
}

/// Handler chains indexed by syscall number: builtins first, then user handlers.
#[derive(Default, Clone)]
pub(crate) struct Chains {
    by_nr: Vec<Vec<Arc<dyn Handler>>>,
}

impl Chains {
    pub(crate) fn push(&mut self, nr: u32, h: Arc<dyn Handler>) {
        let i = nr as usize;
        if self.by_nr.len() <= i {
            self.by_nr.resize_with(i + 1, Vec::new);
        }
        self.by_nr[i].push(h);
    }

    /// Runs the chain for the call: the first non-`Continue` answer wins.
    pub(crate) fn run(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        let Some(chain) = usize::try_from(cx.nr())
            .ok()
            .and_then(|i| self.by_nr.get(i))
        else {
            return NotifAction::Continue;
        };
        for h in chain {
            match h.handle(cx) {
                NotifAction::Continue => continue,
                other => return other,
            }
        }
        NotifAction::Continue
    }
}
