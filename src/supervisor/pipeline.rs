//! The per-notification pipeline, run whole on one worker:
//!
//! 1. register the process (process index);
//! 2. deny checks (path denial);
//! 3. dispatch: builtin handlers, then user handlers;
//! 4. process accounting; 5. exec freeze; 6. policy verdict;
//! 7. (none: forks are not traced); 8. `Defer` to the deferral pool;
//! 9. trace, then exactly one answer; 10. hand the exec's outcome to the
//!    freeze's tracer.
//!
//! Stages 1, 2 and 4 to 6 are filled in by the process, freeze and policy
//! modules; this engine keeps their order. Forks need no tracing: the exec
//! freeze finds the tasks sharing the caller's memory when it execs (see
//! `freeze`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::action::NotifAction;
use crate::handler::HandlerCtx;
use crate::notification::Notification;
use crate::process::ForkToken;

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
    // 5. Exec argv safety: the tasks sharing the caller's memory are
    // stopped and argv copied before anything (handlers, the policy
    // callback) reads it; a freeze that cannot be established answers
    // EPERM without dispatch.
    let exec_freeze = match &shared.argv {
        Some(argv) if argv.is_exec(&notif) => {
            Some(crate::freeze::exec::freeze(shared, argv, &notif))
        }
        _ => None,
    };
    let refused = exec_freeze
        .as_ref()
        .and_then(|f| f.failure())
        .inspect(|why| {
            log::warn!(
                "argv-safety freeze for pid {} failed ({why}); answering EPERM",
                notif.pid
            );
        });
    let refused = refused.is_some();
    // Reads of the exec's path and argv are served from the freeze's copy.
    let cx = HandlerCtx::new(&notif, shared)
        .with_exec_copy(exec_freeze.as_ref().and_then(|f| f.snapshot()));
    let action = match catch_unwind(AssertUnwindSafe(|| {
        if refused {
            NotifAction::Errno(libc::EPERM)
        } else {
            shared.chains.run(&cx)
        }
    })) {
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
            log::warn!(
                "Defer on a counted fork of pid {}; answering EPERM",
                notif.pid
            );
            NotifAction::Errno(libc::EPERM)
        }
        other => other,
    };
    // 6. The policy verdict (held calls wait for it), unless an on-behalf
    // handler already asked before its side effect. It only tightens.
    let action = match &shared.policy {
        Some(policy) if !cx.policy_consulted() => {
            // The copy read while the exec freeze holds; an exec that
            // will not run (a missing file) is read as it is.
            let argv = match &exec_freeze {
                Some(f) if f.failure().is_none() => f
                    .snapshot()
                    .map(|s| s.argv_strings())
                    .or_else(|| cx.read_exec_argv()),
                _ => None,
            };
            crate::policy::apply(policy, &notif, action, argv)
        }
        _ => action,
    };
    // Limits the callback lowered take effect before the answer.
    if let (Some(policy), Some(tracker)) = (&shared.policy, &shared.tracker) {
        tracker.apply_dynamic(&policy.dynamic);
    }
    // 5, 9, 10 for a frozen exec: answered under the freeze, which is
    // released once the kernel has copied argv (or the exec failed).
    if let Some(freeze) = exec_freeze {
        freeze.finish(&notif, action);
        return;
    }
    // (Anything that changes the action must do so before the next
    // lines.) A fork that a later handler or verdict did not
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
    // 10. The fork stays counted only if the kernel took the CONTINUE;
    // otherwise (stale: the task died or was interrupted) the token drops.
    finish_counted(shared, &notif, action, fork_token);
}

/// Traces and sends the one answer for `notif`. Returns what became of it;
/// when the answer failed and `EPERM` was sent instead, `Sent::Stale` (the
/// action asked for was not delivered).
pub(crate) fn finish(shared: &Shared, notif: &Notification, action: NotifAction) -> Sent {
    finish_counted(shared, notif, action, None)
}

/// [`finish`] for a counted fork: `token` is committed if the answer was
/// delivered, else rolled back.
pub(crate) fn finish_counted(
    shared: &Shared,
    notif: &Notification,
    action: NotifAction,
    token: Option<ForkToken>,
) -> Sent {
    if shared.traced(notif.nr) {
        trace(notif, &action.label());
    }
    let sent = answered(shared, notif, respond(shared, notif, action));
    resolve(token, sent);
    sent
}

/// Commits a fork's token if its `CONTINUE` was delivered; drops (rolls
/// back) it otherwise.
fn resolve(token: Option<ForkToken>, sent: Sent) {
    if let (Some(token), Sent::Delivered) = (token, sent) {
        token.commit();
    }
}

fn answered(shared: &Shared, notif: &Notification, sent: std::io::Result<Sent>) -> Sent {
    match sent {
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
                log::error!(
                    "answering EPERM to notification {} failed too: {e}",
                    notif.id
                );
            }
            Sent::Stale
        }
    }
}

/// Logs one trapped call and its decision (`--trace`).
pub(crate) fn trace(notif: &Notification, decision: &str) {
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
