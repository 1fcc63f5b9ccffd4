//! The exec freeze: every task of the sandbox that could write the argv of
//! an `execve`/`execveat` is stopped before anything reads it, and stays
//! stopped until the kernel has copied it.
//!
//! 1. [`freeze`], before dispatch: take `world` exclusively; seize the
//!    caller (`PTRACE_O_TRACEEXEC`); seize and interrupt every other task
//!    except those waiting for an answer (in flight), to a fixed point of
//!    the task list; wait until each has stopped, or sleeps uninterruptibly
//!    (it will trap before it returns to user mode). Failure → the caller
//!    answers `EPERM`, nothing stays seized.
//! 2. Dispatch and the policy verdict read argv: it cannot change.
//! 3. [`ExecFreeze::finish`]: send the answer (still exclusive), interrupt
//!    the caller, and wait for it: the exec event means the exec succeeded
//!    and argv was copied (for a non-leader caller the event comes on the
//!    process id); the interrupt stop means it failed. Meanwhile the
//!    siblings a successful exec kills are reaped (the exec waits for
//!    them). Then everything is detached and the lock released.
//!
//! The caller is interrupted only after the answer: an interrupt before it
//! would cut short a seccomp wait that is not killable (kernels without
//! `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`), and an exec does not fail for
//! a pending interrupt, which the exec event clears.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use parking_lot::RwLockWriteGuard;

use crate::action::NotifAction;
use crate::notification::Notification;
use crate::supervisor::{respond, Sent, Shared};
use crate::sys::ptrace::{self, TraceeState};

use super::{
    release_pending, retry_leftovers, task_state, tasks, ArgvSafety, Backoff, St, Tracee,
    STOP_TIMEOUT,
};

/// How long the caller's exec may take before the freeze gives up on it.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the freeze, still holding the lock, waits for tasks whose stop
/// was pending (a `vfork` parent wakes as soon as the exec has replaced the
/// memory map) before it leaves them to [`release_pending`].
const PENDING_GRACE: Duration = Duration::from_millis(50);
/// Rounds of enumeration before the task list is taken as complete.
const MAX_ROUNDS: usize = 16;

/// An established freeze; see the module documentation.
pub(crate) struct ExecFreeze<'a> {
    world: Option<RwLockWriteGuard<'a, ()>>,
    shared: &'a Shared,
    argv: &'a ArgvSafety,
    caller: Tracee,
    peers: Vec<Tracee>,
    failure: Option<String>,
}

/// Establishes the freeze for exec `notif`. If it cannot be established,
/// [`ExecFreeze::failure`] says why: the call must then be answered `EPERM`
/// (through [`ExecFreeze::finish`], which lets everything go).
pub(crate) fn freeze<'a>(
    shared: &'a Shared,
    argv: &'a ArgvSafety,
    notif: &Notification,
) -> ExecFreeze<'a> {
    let world = shared.world.write();
    retry_leftovers(argv);
    let tid = notif.pid as i32;
    let tgid = crate::handler::thread_group_of(tid).unwrap_or(tid);
    let mut f = ExecFreeze {
        world: Some(world),
        shared,
        argv,
        caller: Tracee::new(tid, tgid, shared.pgid),
        peers: Vec::new(),
        failure: None,
    };
    // Its stop is requested after the answer (see the module docs).
    if let Err(e) = ptrace::seize(tid, ptrace::TRACE_EXEC) {
        f.caller.st = St::Gone;
        f.failure = Some(format!("cannot seize the caller {tid}: {e}"));
        return f;
    }
    if let Err(e) = f.stop_all(tid) {
        f.failure = Some(e);
    }
    f
}

/// Whether `tid` waits in `vfork` for `caller` to exec or exit: it sleeps
/// uninterruptibly in `kernel_clone` and shares the caller's address
/// space. It cannot run before the exec has replaced that address space,
/// which happens after argv is copied (or never, if the exec fails), so it
/// is left alone: seized, it could not stop before a failed exec's caller
/// tries again.
fn vfork_parent_of(tid: i32, caller: i32) -> bool {
    super::in_vfork_wait(tid) && ptrace::same_vm(tid, caller).unwrap_or(false)
}

impl ExecFreeze<'_> {
    /// Why the freeze could not be established, if it could not.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Seizes and interrupts every task but the caller and those in
    /// flight, to a fixed point of the task list, and waits for their stops.
    fn stop_all(&mut self, caller: i32) -> Result<(), String> {
        let (shared, argv) = (self.shared, self.argv);
        let mut known: HashSet<i32> = HashSet::from([caller]);
        for round in 0.. {
            let mut new = 0;
            for t in tasks::enumerate(shared) {
                if !known.insert(t.tid) {
                    continue;
                }
                new += 1;
                if argv.in_flight(t.tid) || vfork_parent_of(t.tid, caller) {
                    continue;
                }
                match ptrace::seize(t.tid, 0) {
                    Ok(()) => {
                        if let Err(e) = ptrace::interrupt(t.tid) {
                            // Dying: its exit is collected like a stop.
                            log::debug!("interrupting task {} failed: {e}", t.tid);
                        }
                        self.peers.push(Tracee::new(t.tid, t.tgid, shared.pgid));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e)
                        if e.raw_os_error() == Some(libc::EPERM)
                            && !matches!(task_state(t.tid), Some(s) if s != b'Z' && s != b'X') =>
                    {
                        // A zombie, or gone.
                    }
                    Err(e)
                        if e.raw_os_error() == Some(libc::EPERM)
                            && argv.pending.lock().contains(&t.tid) =>
                    {
                        // Seized by another worker, its trap pending: frozen.
                    }
                    Err(e) => {
                        return Err(format!(
                            "cannot seize task {} of process {}: {e}",
                            t.tid, t.tgid
                        ))
                    }
                }
            }
            if new == 0 {
                return Ok(());
            }
            if round >= MAX_ROUNDS {
                return Err("the task list keeps growing".into());
            }
            self.wait_stops()?;
        }
        Ok(())
    }

    /// Waits until every seized peer has stopped or sleeps in the kernel
    /// uninterruptibly (`D`).
    fn wait_stops(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut backoff = Backoff::new();
        loop {
            let mut waiting = None;
            for p in self.peers.iter_mut().filter(|p| p.st == St::Running) {
                let _ = p.poll(true);
                if p.st == St::Running && task_state(p.tid) != Some(b'D') {
                    waiting = Some(p.tid);
                }
            }
            let Some(tid) = waiting else { return Ok(()) };
            if Instant::now() > deadline {
                return Err(format!("task {tid} did not stop within {STOP_TIMEOUT:?}"));
            }
            backoff.sleep();
        }
    }

    /// Sends the one answer for the frozen exec, waits for its outcome and
    /// releases the freeze. `Hold` and `Defer` cannot keep a freeze: they
    /// are answered `EPERM`.
    pub(crate) fn finish(mut self, notif: &Notification, action: NotifAction) -> Sent {
        let action = match action {
            NotifAction::Hold | NotifAction::Defer(_) => {
                log::warn!(
                    "{} of pid {} under argv safety cannot be held or deferred; answering EPERM",
                    notif.syscall_label(),
                    notif.pid
                );
                NotifAction::Errno(libc::EPERM)
            }
            other => other,
        };
        let cont = matches!(action, NotifAction::Continue);
        if self.shared.traced(notif.nr) {
            crate::supervisor::trace(notif, &action.label());
        }
        let sent = match respond(self.shared, notif, action) {
            Ok(sent) => sent,
            Err(e) => {
                log::error!(
                    "answering exec of pid {} failed: {e}; answering EPERM",
                    notif.pid
                );
                if let Err(e) = respond(self.shared, notif, NotifAction::Errno(libc::EPERM)) {
                    log::error!(
                        "answering EPERM to notification {} failed too: {e}",
                        notif.id
                    );
                }
                Sent::Stale
            }
        };
        self.argv.answered(notif.pid as i32);
        if self.caller.st != St::Gone {
            if let Err(e) = ptrace::interrupt(self.caller.tid) {
                log::debug!("interrupting exec caller {} failed: {e}", self.caller.tid);
            }
            self.wait_caller(cont && sent == Sent::Delivered);
        }
        self.release();
        sent
    }

    /// Waits until the caller has exec'd (exec event), failed (interrupt
    /// stop) or died, reaping the siblings a successful exec kills.
    fn wait_caller(&mut self, may_exec: bool) {
        let tgid = self.caller.tgid;
        let leader = self.caller.tid == tgid;
        // The old leader, if seized: the exec event of a non-leader caller
        // is reported on the process id.
        let watch_tgid = !leader && !self.peers.iter().any(|p| p.tid == tgid);
        let mut tgid_watch = Tracee::new(tgid, tgid, self.shared.pgid);
        let deadline = Instant::now() + EXEC_TIMEOUT;
        let mut backoff = Backoff::new();
        // A single-threaded caller (nothing to reap) can be waited for.
        let blocking =
            leader && tgid != self.shared.pgid && !self.peers.iter().any(|p| p.tgid == tgid);
        let mut exec_done = false;
        loop {
            if self.caller.st == St::Running {
                match self.caller.poll(!blocking) {
                    Ok(Some(TraceeState::Event(ptrace::EVENT_EXEC))) => exec_done = true,
                    Ok(_) => {}
                    // A non-leader's id is gone once the exec took the
                    // process id: the event comes there.
                    Err(_) if !leader => self.caller.st = St::Running,
                    Err(_) => {}
                }
            }
            for p in self
                .peers
                .iter_mut()
                .filter(|p| p.tgid == tgid && p.st != St::Gone)
            {
                if let Ok(Some(TraceeState::Event(ptrace::EVENT_EXEC))) = p.poll(true) {
                    // The old leader's entry now names the caller.
                    exec_done = true;
                    p.st = St::Gone;
                }
            }
            if watch_tgid && !exec_done {
                if let Ok(Some(TraceeState::Event(ptrace::EVENT_EXEC))) = tgid_watch.poll(true) {
                    exec_done = true;
                }
                tgid_watch.st = St::Running;
            }
            if exec_done {
                // The caller now is the process id, in its exec stop.
                self.caller.tid = tgid;
                self.caller.st = St::Stopped(0);
                break;
            }
            if self.caller.st != St::Running {
                break;
            }
            if !leader
                && self.caller.st == St::Running
                && !may_exec
                && task_state(self.caller.tid).is_none()
            {
                // Gone without an exec (killed).
                self.caller.st = St::Gone;
                break;
            }
            if Instant::now() > deadline {
                log::error!(
                    "exec of task {} did not complete within {EXEC_TIMEOUT:?}",
                    self.caller.tid
                );
                break;
            }
            backoff.sleep();
        }
        if exec_done {
            // Its siblings are gone: collect any exit not reaped yet.
            for p in self
                .peers
                .iter_mut()
                .filter(|p| p.tgid == tgid && p.st != St::Gone)
            {
                let _ = p.poll(true);
            }
        }
    }

    /// Detaches everything (tasks whose stop is still pending: waited for
    /// briefly under the lock, then outside it) and releases the lock.
    fn release(&mut self) {
        let mut all = std::mem::take(&mut self.peers);
        all.push(self.caller);
        self.caller.st = St::Gone;
        let grace = Instant::now() + PENDING_GRACE;
        let mut backoff = Backoff::new();
        loop {
            all.retain_mut(|t| {
                if t.st == St::Running {
                    let _ = t.poll(true);
                }
                !t.detach()
            });
            if all.is_empty() || Instant::now() > grace {
                break;
            }
            backoff.sleep();
        }
        if all.is_empty() {
            self.world = None;
            return;
        }
        {
            let mut pending = self.argv.pending.lock();
            pending.extend(all.iter().map(|t| t.tid));
        }
        self.world = None;
        release_pending(self.shared, self.argv, all);
    }
}

impl Drop for ExecFreeze<'_> {
    /// A freeze given up (not established, or dropped without an answer):
    /// let everything go.
    fn drop(&mut self) {
        if self.world.is_none() {
            return;
        }
        // Dropped without an answer (a panic): the caller still sleeps in
        // its seccomp wait, whose answer will come from elsewhere. Ask for
        // its stop (it comes after that answer) and let everything go.
        if self.caller.st == St::Running {
            if let Err(e) = ptrace::interrupt(self.caller.tid) {
                log::debug!("interrupting exec caller {} failed: {e}", self.caller.tid);
            }
        }
        self.release();
    }
}
