//! The per-notification pipeline, run whole on one worker:
//!
//! 1. register the process (process index);
//! 2. deny checks (path denial);
//! 3. dispatch: builtin handlers, then user handlers;
//! 4. process accounting; 5. exec freeze; 6. policy verdict;
//! 7. fork creation tracking; 8. `Defer` to the deferral pool;
//! 9. trace, then exactly one answer; 10. release creation tracking and freeze.
//!
//! Stages 1, 2 and 4 to 7 are filled in by the process and policy modules;
//! this engine keeps their order and the `world` lock discipline: an answer
//! is sent holding `world` shared, so an exec freeze (exclusive) sees no
//! answer in flight.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::action::NotifAction;
use crate::handler::HandlerCtx;
use crate::notification::Notification;

use super::defer::DeferPool;
use super::respond::{respond, Sent};
use super::stats::Counters;
use super::Shared;

/// Runs the pipeline for one notification and answers it.
pub(crate) fn process(shared: &Arc<Shared>, notif: Notification) {
    // 1. Register the task before anything else happens to it.
    if let Some(tracker) = &shared.tracker {
        tracker.register(shared, &notif);
    }
    let cx = HandlerCtx::new(&notif, shared);
    let action = match catch_unwind(AssertUnwindSafe(|| shared.chains.run(&cx))) {
        Ok(action) => action,
        Err(_) => {
            Counters::bump(&shared.counters.panics);
            log::error!(
                "handler for {} of pid {} panicked; answering EPERM",
                notif.syscall_label(),
                notif.pid
            );
            NotifAction::Errno(libc::EPERM)
        }
    };
    // 4. Process accounting: a fork counted by the builtin fork handler
    // carries a token. A counted fork is never deferred (its answer would
    // escape the count).
    let fork_token = crate::process::take_fork_token();
    let action = match action {
        NotifAction::Defer(_) if fork_token.is_some() => {
            log::warn!("Defer on a counted fork of pid {}; answering EPERM", notif.pid);
            NotifAction::Errno(libc::EPERM)
        }
        other => other,
    };
    // 6. The policy verdict (held calls wait for it), unless an on-behalf
    // handler already asked before its side effect. It only tightens.
    let action = match &shared.policy {
        Some(policy) if !cx.policy_consulted() => crate::policy::apply(policy, &notif, action, None),
        _ => action,
    };
    // (Stages 5 and 7 go here; anything that changes the action must do so
    // before the next lines.) A fork that a later handler or verdict did not
    // let through is rolled back now, by dropping its token; a held one
    // keeps it until it is released.
    let fork_token = match (fork_token, &action, &shared.tracker) {
        (Some(token), NotifAction::Hold, Some(tracker)) => {
            tracker.park_held_token(notif.id, token);
            None
        }
        (token, action, _) => token.filter(|_| matches!(action, NotifAction::Continue)),
    };
    let action = match action {
        NotifAction::Defer(work) => {
            if shared.traced(notif.nr) {
                trace(&notif, "DEFER");
            }
            match DeferPool::submit(shared, notif, work) {
                None => return,
                Some(now) => now,
            }
        }
        other => other,
    };
    let sent = finish(shared, &notif, action);
    // 10. The fork stays counted only if the kernel took the CONTINUE;
    // otherwise (stale: the task died or was interrupted) the token drops.
    if let (Some(token), Sent::Delivered) = (fork_token, sent) {
        token.commit();
    }
}

/// Traces and sends the one answer for `notif`. Returns what became of it;
/// when the answer failed and `EPERM` was sent instead, `Sent::Stale` (the
/// action asked for was not delivered).
pub(crate) fn finish(shared: &Shared, notif: &Notification, action: NotifAction) -> Sent {
    if shared.traced(notif.nr) {
        trace(notif, &action.label());
    }
    let _world = shared.world.read();
    match respond(shared, notif, action) {
        Ok(sent @ (Sent::Delivered | Sent::Held)) => sent,
        Ok(Sent::Stale) => {
            log::debug!(
                "{} of pid {} was gone before its answer",
                notif.syscall_label(),
                notif.pid
            );
            Sent::Stale
        }
        Err(e) => {
            // Fail closed: the call must still get one definite answer.
            log::error!(
                "answering {} of pid {} failed: {e}; answering EPERM",
                notif.syscall_label(),
                notif.pid
            );
            if let Err(e) = respond(shared, notif, NotifAction::Errno(libc::EPERM)) {
                log::error!("answering EPERM to notification {} failed too: {e}", notif.id);
            }
            Sent::Stale
        }
    }
}

/// Logs one trapped call and its decision (`--trace`).
fn trace(notif: &Notification, decision: &str) {
    let a = &notif.args;
    log::info!(
        target: "unotify::trace",
        "pid {} {}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) -> {}",
        notif.pid,
        notif.syscall_label(),
        a[0],
        a[1],
        a[2],
        a[3],
        a[4],
        a[5],
        decision
    );
}
