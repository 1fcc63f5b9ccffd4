//! Creation tracking: a fork-like call that is let through is traced for
//! exactly one creation event, so that the new process is in the process
//! index before it runs its first instruction of user code.
//!
//! Holding `world` exclusively: seize the caller with `TRACEFORK |
//! TRACEVFORK | TRACECLONE`, send `CONTINUE`, wait for the event;
//! `GETEVENTMSG` gives the new task, which starts in a stop (auto-attached):
//! wait for it, register it, detach it, detach the caller.
//!
//! A fork that fails reports no event. The caller is not interrupted up
//! front: a pending interrupt makes `copy_process` restart the call
//! (`ERESTARTNOINTR`) every time. If no event has come after
//! [`INTERRUPT_AFTER`], the caller is interrupted: by then it is past that
//! check (a fork then still reports its event first), or it has returned
//! with an error and traps. Should the interrupt come early after all, the
//! call restarts once and comes back as a new notification.
//!
//! Why exclusive and not shared: a fork that failed lets its caller run on
//! until the interrupt lands. Were notifications received meanwhile, the
//! caller's next trapped call could be received, and a received call sleeps
//! killably: the interrupt would not stop it, and it could not be released
//! until that call was answered — by another worker, which cannot trace a
//! task this thread traces. Holding `world` exclusively, nothing is
//! received: the next call's wait stays interruptible, the interrupt ends
//! it (the call restarts later) and the caller traps.

use std::time::{Duration, Instant};

use crate::action::NotifAction;
use crate::notification::Notification;
use crate::supervisor::{respond, Sent, Shared};
use crate::sys::ptrace::{self, TraceeState};

use super::{retry_leftovers, ArgvSafety, Backoff, St, Tracee};

/// How long to wait for a creation event before interrupting the caller.
pub(crate) const INTERRUPT_AFTER: Duration = Duration::from_millis(2);

/// Answers the fork-like `notif` with `CONTINUE` under creation tracking.
/// The caller holds `world` exclusively. Returns [`Sent::Delivered`] only if a
/// task was created (and registered); a fork that failed, or tracking that
/// could not be established (the call is then answered `EPERM`), returns
/// [`Sent::Stale`], so that its process count is rolled back.
pub(crate) fn answer(shared: &Shared, argv: &ArgvSafety, notif: &Notification) -> Sent {
    retry_leftovers(argv);
    let tid = notif.pid as i32;
    if argv.untraced(notif) {
        log::info!("pid {tid}: clone with CLONE_UNTRACED refused under argv safety");
        return deny(shared, notif);
    }
    if let Err(e) = ptrace::seize(tid, ptrace::TRACE_CREATION) {
        log::warn!(
            "cannot trace {} of pid {tid} ({e}); answering EPERM",
            notif.syscall_label()
        );
        return deny(shared, notif);
    }
    let tgid = crate::handler::thread_group_of(tid).unwrap_or(tid);
    let mut caller = Tracee::new(tid, tgid, shared.pgid);
    let sent = match respond(shared, notif, NotifAction::Continue) {
        Ok(sent) => sent,
        Err(e) => {
            log::error!(
                "answering {} of pid {tid} failed: {e}; answering EPERM",
                notif.syscall_label()
            );
            let _ = respond(shared, notif, NotifAction::Errno(libc::EPERM));
            Sent::Stale
        }
    };
    let mut created = None;
    let mut vfork = false;
    let mut interrupted = false;
    if sent != Sent::Delivered {
        let _ = ptrace::interrupt(tid);
        interrupted = true;
    }
    let start = Instant::now();
    let mut backoff = Backoff::new();
    while caller.st == St::Running {
        match caller.poll(true) {
            Ok(Some(TraceeState::Event(ev)))
                if ev == ptrace::EVENT_FORK
                    || ev == ptrace::EVENT_VFORK
                    || ev == ptrace::EVENT_CLONE =>
            {
                vfork = ev == ptrace::EVENT_VFORK;
                match ptrace::event_msg(tid) {
                    Ok(child) => created = Some(child as i32),
                    Err(e) => log::error!("no new pid for the creation event of {tid}: {e}"),
                }
            }
            Ok(_) | Err(_) => {}
        }
        if caller.st != St::Running {
            break;
        }
        if !interrupted && start.elapsed() >= INTERRUPT_AFTER {
            if let Err(e) = ptrace::interrupt(tid) {
                log::debug!("interrupting fork caller {tid} failed: {e}");
            }
            interrupted = true;
        }
        backoff.sleep();
    }
    let mut child = created.and_then(|child| adopt(shared, child, tgid));
    let registered = child.is_some();
    // An event stop clears a pending interrupt: nothing else will come.
    if caller.st != St::Gone && !caller.detach() {
        // Killed while stopped: collect its exit.
        let _ = caller.poll(false);
    }
    if let Some(child) = &mut child {
        if vfork {
            // The parent must be asleep in its vfork wait before the child
            // can exec: an exec freeze leaves it alone there, and only there.
            await_vfork_wait(tid);
        }
        if !child.detach() {
            let _ = child.poll(false);
        }
    }
    match (sent, registered) {
        (Sent::Delivered, true) => Sent::Delivered,
        (Sent::Delivered, false) => Sent::Stale,
        (other, _) => other,
    }
}

/// Waits for the new task's first stop and registers it; returns it,
/// stopped, to be let go by the caller.
fn adopt(shared: &Shared, child: i32, parent_tgid: i32) -> Option<Tracee> {
    let mut t = Tracee::new(child, parent_tgid, shared.pgid);
    // Auto-attached: its first stop comes before any user code (or it was
    // killed first). Blocking is fine.
    let _ = t.poll(false);
    if t.st == St::Gone {
        return None;
    }
    if let Some(tracker) = &shared.tracker {
        if tracker.register_created(child).is_none() {
            log::warn!("new task {child} could not be registered");
        }
    }
    Some(t)
}

/// How long a vfork parent may take to reach its vfork wait.
const VFORK_WAIT_TIMEOUT: Duration = Duration::from_millis(200);

/// Waits (bounded) until `parent`, just detached after a vfork event,
/// sleeps in its vfork wait. It cannot leave it before its child (still
/// stopped) execs or exits.
fn await_vfork_wait(parent: i32) {
    let deadline = Instant::now() + VFORK_WAIT_TIMEOUT;
    let mut backoff = Backoff::new();
    loop {
        if super::in_vfork_wait(parent) {
            return;
        }
        if super::task_state(parent).is_none_or(|s| s == b'Z' || s == b'X')
            || Instant::now() > deadline
        {
            log::debug!("vfork parent {parent} not seen in its vfork wait");
            return;
        }
        backoff.sleep();
    }
}

fn deny(shared: &Shared, notif: &Notification) -> Sent {
    let _ = respond(shared, notif, NotifAction::Errno(libc::EPERM));
    Sent::Stale
}
