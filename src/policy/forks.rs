//! Restrictions inherited at creation: a fork-like call of a process under
//! a network restriction is let through under ptrace, for its one creation
//! event, so that the new process is restricted before it runs its first
//! instruction (it starts stopped, attached to the tracing thread, and is
//! let go only once recorded). A restricted process's children so stay
//! restricted whatever becomes of it (an orphan given to init or a
//! subreaper included), and a network check never walks `/proc`.
//! Nothing is traced for a process no restriction reaches. Taken over by
//! the policy's stage 2 ([`RestrictedFork`]); uses `sys::ptrace` and the
//! answer core; records in [`Restrictions`].
//!
//! The worker answering the call does every ptrace operation of it, from
//! the seize to the last detach (only the seizing thread may drive a
//! tracee; a new task is attached to that same thread). It seizes the
//! caller (`TRACEFORK | TRACEVFORK | TRACECLONE`), answers `CONTINUE`,
//! and waits for the caller's stop:
//! - a creation event: `GETEVENTMSG` names the new process, which is
//!   waited for (its first stop comes before any of its code), recorded,
//!   and let go; the caller is let go at its event;
//! - an interrupt, a group stop or a signal: the call created nothing (a
//!   creation reports its event first; a signal that came in before
//!   `copy_process` restarts the call, which traps again);
//! - nothing after [`INTERRUPT_AFTER`]: the fork failed and the caller ran
//!   on, so it is interrupted (not before: a pending interrupt makes
//!   `copy_process` restart the call). Should it land early after all, the
//!   call restarts and is decided again.
//!
//! A caller killed between the creation and its event reports no event:
//! its new process, attached here, is found by its stop (any trapped stop
//! of this thread's tracees) within [`ORPHAN_WAIT`], recorded and let go;
//! one found later, by a later trace on this thread, is killed (fail
//! closed). A caller that never stops is killed after [`GIVE_UP`].

use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::action::NotifAction;
use crate::handler::MemoryCopy;
use crate::notification::Notification;
use crate::supervisor::enforcement::TakeOver;
use crate::supervisor::notifier::{Notifier, Sent, Settle};
use crate::sys::ptrace::{self, TraceeState};

use super::restricted::Restrictions;

/// How long to wait for a creation event before interrupting the caller.
pub(crate) const INTERRUPT_AFTER: Duration = Duration::from_millis(2);
/// How long a caller that died without its event is given for its new
/// process's first stop to be seen.
const ORPHAN_WAIT: Duration = Duration::from_millis(50);
/// How long a seized caller may take to stop before it is killed.
const GIVE_UP: Duration = Duration::from_secs(5);
/// How long the caller is looked at without sleeping (yielding the
/// processor to it) before its event: most forks report within this.
const SPIN: Duration = Duration::from_micros(100);
/// The sleep between two looks at the caller until it is interrupted.
const NAP: Duration = Duration::from_micros(20);
/// Longest sleep between two looks at the tracees.
const MAX_NAP: Duration = Duration::from_micros(500);

/// `clone`'s flags (in a register: what the filter and the kernel see).
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
const CLONE_UNTRACED: u64 = libc::CLONE_UNTRACED as u64;

/// The fork-like calls, by number.
#[derive(Debug)]
pub(crate) struct ForkCalls {
    clone: Option<i32>,
    others: Vec<i32>,
}

impl ForkCalls {
    pub(crate) fn new() -> Self {
        let nr = |n: &str| crate::syscalls::resolve(n).ok().map(|n| n as i32);
        ForkCalls {
            clone: nr("clone"),
            others: ["fork", "vfork"].iter().filter_map(|n| nr(n)).collect(),
        }
    }

    /// Whether `notif` may create a process (a `clone` of a thread does
    /// not: a thread is of its creator's process).
    pub(crate) fn creates_process(&self, notif: &Notification) -> bool {
        match self.clone {
            Some(c) if c == notif.nr => notif.args[0] & CLONE_THREAD == 0,
            _ => self.others.contains(&notif.nr),
        }
    }

    /// Whether `notif` is a `clone` that its children could not be traced
    /// through (`CLONE_UNTRACED`: no creation event).
    fn untraceable(&self, notif: &Notification) -> bool {
        self.clone == Some(notif.nr) && notif.args[0] & CLONE_UNTRACED != 0
    }
}

/// A fork-like call of a restricted process, whose answer the policy took
/// over (pipeline stage 2).
pub(crate) struct RestrictedFork<'a> {
    restrictions: &'a Restrictions,
    /// The caller's process.
    tgid: i32,
    /// The sandbox's first process (the host's own child: its exit is
    /// left for the host to take).
    root: i32,
    /// Its restriction when the call was decided.
    nets: Vec<IpNet>,
    /// Why it is refused before dispatch, if it is.
    refusal: Option<&'static str>,
}

impl<'a> RestrictedFork<'a> {
    /// The take-over of `notif`, a fork-like call, if its caller is
    /// restricted; `None` if not.
    pub(crate) fn of(
        restrictions: &'a Restrictions,
        calls: &ForkCalls,
        root: i32,
        notif: &Notification,
    ) -> Option<Self> {
        // First: a restriction made from here on waits for this fork.
        restrictions.fork_decided();
        if !restrictions.any() {
            return None;
        }
        let tid = notif.pid as i32;
        let Some(tgid) = restrictions.process_of(tid) else {
            // Gone (no answer will reach it) or unreadable: refused.
            return Some(RestrictedFork {
                restrictions,
                tgid: tid,
                root,
                nets: Vec::new(),
                refusal: Some("its process could not be found"),
            });
        };
        let nets = restrictions.nets_of(tgid)?;
        let refusal = calls
            .untraceable(notif)
            .then_some("CLONE_UNTRACED from a process under a network restriction");
        Some(RestrictedFork {
            restrictions,
            tgid,
            root,
            nets,
            refusal,
        })
    }
}

impl TakeOver for RestrictedFork<'_> {
    fn refusal(&self) -> Option<String> {
        self.refusal.map(str::to_owned)
    }

    fn copy(&self) -> Option<&dyn MemoryCopy> {
        None
    }

    fn argv(&self) -> Option<Vec<String>> {
        None
    }

    fn finish(
        self: Box<Self>,
        core: &Notifier,
        notif: &Notification,
        action: NotifAction,
        fork_token: Option<Box<dyn Settle>>,
    ) {
        match action {
            NotifAction::Continue => trace_fork(core, notif, fork_token, &self),
            // Answered later, untraced: refused instead.
            NotifAction::Hold | NotifAction::Defer(_) | NotifAction::Reissue(_) => {
                log::warn!(
                    "{} of pid {} (under a network restriction) cannot be held, deferred or re-issued; answering EPERM",
                    notif.syscall_label(),
                    notif.pid
                );
                drop(fork_token);
                core.answer(notif, NotifAction::Errno(libc::EPERM));
            }
            other => {
                core.answer_settled(notif, other, fork_token);
            }
        }
    }
}

/// Lets `notif` through under a trace of its caller for one creation
/// event, and records the new process as restricted before it runs.
fn trace_fork(
    core: &Notifier,
    notif: &Notification,
    fork_token: Option<Box<dyn Settle>>,
    fork: &RestrictedFork<'_>,
) {
    let tid = notif.pid as i32;
    kill_leftovers();
    if let Err(e) = ptrace::seize(tid, ptrace::TRACE_CREATION | ptrace::EXIT_KILL) {
        log::warn!(
            "cannot trace {} of pid {tid} (under a network restriction): {e}; answering EPERM",
            notif.syscall_label()
        );
        drop(fork_token);
        core.answer(notif, NotifAction::Errno(libc::EPERM));
        return;
    }
    let sent = core.answer_settled(notif, NotifAction::Continue, fork_token);
    let mut watch = Watch {
        caller: tid,
        keep_exit: tid == fork.root,
        interrupted: false,
        start: Instant::now(),
    };
    if sent != Sent::Delivered {
        // The call will not go on: stop the caller to let it go.
        watch.interrupt();
    }
    match watch.creation() {
        Created::Child(child) => adopt(child, fork),
        Created::Nothing => {}
        Created::CallerGone => {
            // Killed between its creation and its event, maybe: its new
            // process is attached here and stops soon.
            let deadline = Instant::now() + ORPHAN_WAIT;
            while Instant::now() < deadline {
                match ptrace::trapped_tracee() {
                    Ok(Some((child, state))) => {
                        release(child, state, fork);
                        return;
                    }
                    Ok(None) => std::thread::sleep(MAX_NAP),
                    Err(_) => return,
                }
            }
        }
    }
}

/// What became of a traced fork.
enum Created {
    /// This process was created (attached here, stopping or stopped).
    Child(i32),
    /// Nothing was created; the caller is let go.
    Nothing,
    /// The caller died before it stopped.
    CallerGone,
}

/// A seized fork caller, watched to its first stop.
struct Watch {
    caller: i32,
    /// The caller is the host's own child: its exit is only peeked at.
    keep_exit: bool,
    interrupted: bool,
    start: Instant,
}

impl Watch {
    fn interrupt(&mut self) {
        if let Err(e) = ptrace::interrupt(self.caller) {
            log::debug!("interrupting fork caller {} failed: {e}", self.caller);
        }
        self.interrupted = true;
    }

    /// Waits for the caller's stop, lets it go, and says what it created.
    fn creation(&mut self) -> Created {
        let tid = self.caller;
        let mut killed = false;
        loop {
            match ptrace::wait_tracee(tid, true, self.keep_exit) {
                Ok(Some(TraceeState::Event(
                    ptrace::EVENT_FORK | ptrace::EVENT_VFORK | ptrace::EVENT_CLONE,
                ))) => {
                    let child = ptrace::event_msg(tid);
                    self.detach(0);
                    return match child {
                        Ok(child) => Created::Child(child as i32),
                        Err(e) => {
                            log::error!("no new pid for the creation event of {tid}: {e}");
                            Created::Nothing
                        }
                    };
                }
                Ok(Some(TraceeState::Event(_) | TraceeState::Trapped)) => {
                    self.detach(0);
                    return Created::Nothing;
                }
                Ok(Some(TraceeState::Signal(sig))) => {
                    self.detach(sig);
                    return Created::Nothing;
                }
                Ok(Some(TraceeState::Gone)) => return Created::CallerGone,
                Ok(None) => {}
                Err(e) => {
                    log::debug!("fork caller {tid} is no tracee any more: {e}");
                    return Created::CallerGone;
                }
            }
            let waited = self.start.elapsed();
            if !self.interrupted && waited >= INTERRUPT_AFTER {
                self.interrupt();
            }
            if !killed && waited >= GIVE_UP {
                crate::freeze::kill_task(
                    tid,
                    format_args!(
                        "fork caller {tid} (under a network restriction) did not stop in {GIVE_UP:?} after its fork; killing it"
                    ),
                );
                killed = true;
            }
            if waited < SPIN {
                std::thread::yield_now();
            } else if !self.interrupted {
                std::thread::sleep(NAP);
            } else {
                std::thread::sleep(MAX_NAP);
            }
        }
    }

    fn detach(&self, sig: i32) {
        if let Err(e) = ptrace::detach(self.caller, sig) {
            log::debug!("detaching fork caller {} failed: {e}", self.caller);
        }
    }
}

/// Waits for `child`'s first stop (it runs nothing before), then
/// [`release`]s it.
fn adopt(child: i32, fork: &RestrictedFork<'_>) {
    if let Ok(Some(state)) = ptrace::wait_tracee(child, false, false) {
        release(child, state, fork);
    }
}

/// Records `child`, a new process in its first stop (`state`), with its
/// creator's restriction, and lets it go.
fn release(child: i32, state: TraceeState, fork: &RestrictedFork<'_>) {
    let sig = match state {
        TraceeState::Signal(sig) => sig,
        TraceeState::Gone => return,
        TraceeState::Event(_) | TraceeState::Trapped => 0,
    };
    // The creator's restriction now (narrowed meanwhile, maybe), or the
    // one its fork was decided on if it is gone.
    let nets = fork
        .restrictions
        .nets_of(fork.tgid)
        .unwrap_or_else(|| fork.nets.clone());
    fork.restrictions.inherit(child, &nets);
    if let Err(e) = ptrace::detach(child, sig) {
        log::debug!("detaching new process {child} failed: {e}");
    }
}

/// Kills the tracees a trace on this thread left (a new process whose
/// creator died before its event and that stopped too late to be
/// adopted): nothing says which restriction it inherits.
fn kill_leftovers() {
    while let Ok(Some((pid, _))) = ptrace::trapped_tracee() {
        crate::freeze::kill_task(
            pid,
            format_args!("new process {pid} of a restricted process was found late; killing it"),
        );
        // Its exit is taken here, so that its parent is told of it.
        while let Ok(Some(state)) = ptrace::wait_tracee(pid, false, false) {
            if state == TraceeState::Gone {
                break;
            }
        }
    }
}
