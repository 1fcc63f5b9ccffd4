//! The handler API: [`Handler`], [`HandlerCtx`] and the per-syscall chains.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::action::NotifAction;
use crate::notification::Notification;
use crate::supervisor::{Shared, SupervisorHandle};
use crate::sys::{mem, pidfd, seccomp};

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
    shared: &'a Arc<Shared>,
    /// Set once the policy callback has been told about this call.
    consulted: std::cell::Cell<bool>,
    /// An exec under argv safety: the copy of its path and argv that reads
    /// inside them are served from (see `freeze`).
    exec_copy: Option<&'a crate::freeze::exec::Snapshot>,
}

impl<'a> HandlerCtx<'a> {
    pub(crate) fn new(notif: &'a Notification, shared: &'a Arc<Shared>) -> Self {
        HandlerCtx {
            notif,
            shared,
            consulted: std::cell::Cell::new(false),
            exec_copy: None,
        }
    }

    /// Serves reads inside an exec's path and argv from `copy`.
    pub(crate) fn with_exec_copy(
        mut self,
        copy: Option<&'a crate::freeze::exec::Snapshot>,
    ) -> Self {
        self.exec_copy = copy;
        self
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
        seccomp::id_valid(self.shared.listener(), self.notif.id).is_ok()
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

    /// Reads exactly `buf.len()` bytes at `addr` in the task.
    pub fn read_mem_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.exec_copy.is_some_and(|c| c.serve(addr, buf)) {
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
    /// argument lossily UTF-8), or `None` for another call or an argv that
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
            argv.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        None
    }

    /// Reads a NUL-terminated string of at most `max_len` bytes (without the
    /// NUL) at `addr`, one page at a time so that it never reads across into
    /// an unmapped page.
    pub fn read_cstr(&self, addr: u64, max_len: usize) -> Result<Vec<u8>, MemoryError> {
        if let Some(served) = self.exec_copy.and_then(|c| c.serve_cstr(addr, max_len)) {
            return served;
        }
        if addr == 0 {
            return Err(MemoryError::Fault(io::Error::from_raw_os_error(
                libc::EFAULT,
            )));
        }
        // Checked after the read only (see `read_mem_into`).
        let mut out = Vec::new();
        let mut cur = addr;
        let mut chunk = [0u8; PAGE as usize];
        loop {
            let room = max_len.saturating_add(1) - out.len();
            let in_page = (PAGE - cur % PAGE) as usize;
            let want = in_page.min(room);
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
        self.check_valid()?;
        Ok(out)
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
    /// Works for calls made by any thread of the process: a thread id that is
    /// not a process id is resolved to its thread group.
    pub fn dup_fd(&self, fd: RawFd) -> io::Result<OwnedFd> {
        let pid = self.notif.pid as i32;
        let pidfd = match pidfd::pidfd_open(pid, 0) {
            Ok(p) => p,
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::ENOENT) =>
            {
                let tgid = thread_group_of(pid).ok_or(e)?;
                pidfd::pidfd_open(tgid, 0)?
            }
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
    /// has no policy callback). The callback is told about a call once.
    pub fn check_policy(&self, dest: Option<std::net::SocketAddr>) -> Option<i32> {
        let policy = self.shared.policy.as_ref()?;
        if let Some(e) = dest.and_then(|d| policy.restricted(self.notif, d)) {
            return Some(e);
        }
        if self.consulted.replace(true) {
            return None;
        }
        policy.consult(self.notif, dest, None, false)
    }

    /// Whether [`check_policy`](Self::check_policy) was called.
    pub(crate) fn policy_consulted(&self) -> bool {
        self.consulted.get()
    }

    /// A handle on the supervisor, e.g. to answer held calls later.
    pub fn supervisor(&self) -> SupervisorHandle {
        SupervisorHandle::new(self.shared)
    }

    /// The supervisor's shared state (builtin handlers).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.shared
    }
}

/// The thread group (process id) of thread `tid`, from `/proc/<tid>/status`.
pub(crate) fn thread_group_of(tid: i32) -> Option<i32> {
    crate::sys::procfs::thread_group_of(tid)
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
