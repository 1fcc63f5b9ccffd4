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
    let action = match action {
        NotifAction::Defer(work) => {
            trace(shared, &notif, "DEFER");
            match DeferPool::submit(shared, notif, work) {
                None => return,
                Some(now) => now,
            }
        }
        other => other,
    };
    finish(shared, &notif, action);
}

/// Traces and sends the one answer for `notif`.
pub(crate) fn finish(shared: &Shared, notif: &Notification, action: NotifAction) {
    if shared.traced(notif.nr) {
        trace(shared, notif, &action.label());
    }
    let _world = shared.world.read();
    match respond(shared, notif, action) {
        Ok(Sent::Delivered) | Ok(Sent::Held) => {}
        Ok(Sent::Stale) => log::debug!(
            "{} of pid {} was gone before its answer",
            notif.syscall_label(),
            notif.pid
        ),
        Err(e) => log::error!(
            "answering {} of pid {} failed: {e}",
            notif.syscall_label(),
            notif.pid
        ),
    }
}

fn trace(shared: &Shared, notif: &Notification, decision: &str) {
    if !shared.traced(notif.nr) {
        return;
    }
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
