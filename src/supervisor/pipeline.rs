//! The per-notification pipeline, run whole on one worker. The one place
//! that orders the stages; the features take part through their
//! [`Stage`](super::enforcement::Stage) hooks. In the order they run:
//!
//! 1. register: the call's task is known before anything else happens to
//!    it (process tracking);
//! 2. take over: a feature may own the answer from here (the exec freeze
//!    stops the tasks sharing the caller's memory and copies argv); one
//!    that cannot be established is answered `EPERM` without dispatch;
//! 3. dispatch: builtin handlers, then user handlers (a panic is answered
//!    `EPERM`); reads of the call's memory are served from the take-over's
//!    copy;
//! 4. a counted fork is never deferred (its answer would escape the count);
//! 5. verdicts (the policy callback), unless a handler already asked before
//!    its side effect; a verdict only tightens;
//! 6. after the verdicts (limits a callback lowered take effect);
//! 7. a taken-over call is answered by its owner, which then lets go;
//! 8. `Defer` goes to the deferral pool; a `Reissue` is started by the
//!    feature that re-issues calls (argv safety's ptrace thread);
//! 9. exactly one answer; a counted fork's token settles with it (kept
//!    while the call is held).
//!
//! What dispatch left for later stages travels in one per-call value,
//! [`Effects`], not in thread-locals.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::action::NotifAction;
use crate::handler::{Effects, HandlerCtx};
use crate::notification::Notification;

use super::defer::DeferPool;
use super::notifier::trace;
use super::stats::Counters;
use super::Shared;

/// Runs the pipeline for one notification and answers it.
pub(crate) fn process(shared: &Arc<Shared>, notif: Notification) {
    let core = &shared.core;
    // 1. Register the task.
    for stage in &shared.stages {
        stage.register(core, &notif);
    }
    // 2. Take over (at most one feature owns an answer).
    let taken = shared
        .stages
        .iter()
        .find_map(|stage| stage.take_over(core, &notif));
    let refused = taken.as_ref().and_then(|t| {
        let why = t.refusal()?;
        log::log!(
            t.refusal_level(),
            "{} of pid {} refused before dispatch ({why}); answering EPERM",
            notif.syscall_label(),
            notif.pid
        );
        Some(why)
    });
    // 3. Dispatch.
    let effects = Effects::default();
    let cx = HandlerCtx::new(&notif, core, &shared.services, &effects, &shared.handle)
        .with_copy(taken.as_ref().and_then(|t| t.copy()))
        .with_fixed_errno(taken.as_ref().and_then(|t| t.fixed_errno()));
    let action = match catch_unwind(AssertUnwindSafe(|| {
        if refused.is_some() {
            NotifAction::Errno(libc::EPERM)
        } else {
            shared.chains.run(&cx)
        }
    })) {
        Ok(action) => action,
        Err(_) => {
            Counters::bump(&core.counters.panics);
            log::error!(
                "handler for {} of pid {} panicked; answering EPERM",
                notif.syscall_label(),
                notif.pid
            );
            NotifAction::Errno(libc::EPERM)
        }
    };
    if effects.held_for_pause() {
        // Held in the core already: the resume answers it.
        return;
    }
    // 4. A counted fork is never deferred.
    let fork_token = effects.take_fork_token();
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
    // 5. Verdicts, on the copy the take-over read (an exec that will not
    // run, e.g. a missing file, is read as it is).
    let mut action = action;
    // The exact bytes, served from the copy (`cx` reads through it).
    let exec_argv = || match &taken {
        Some(_) if refused.is_none() => cx.read_exec_argv_os(),
        _ => None,
    };
    if !effects.policy_consulted() {
        for stage in &shared.stages {
            action = stage.verdict(&cx, action, &exec_argv);
        }
    }
    // 6. After the verdicts.
    if let Some(why) = &refused {
        cx.note_rule(true, || format!("argv safety: {why}"));
    }
    for stage in &shared.stages {
        action = stage.answered(&cx, action, &exec_argv);
        stage.after_verdict();
    }
    // A fork that a later handler or verdict did not let through is rolled
    // back now, by dropping its token; a held one keeps it until it is
    // released.
    let fork_token =
        fork_token.filter(|_| matches!(action, NotifAction::Continue | NotifAction::Hold));
    // 7. A taken-over call: its owner answers (under its freeze, or its
    // trace of a fork), and settles the fork's token with its answer.
    if let Some(taken) = taken {
        taken.finish(core, &notif, action, fork_token);
        return;
    }
    // 8. Defer.
    let action = match action {
        NotifAction::Defer(work) => {
            if core.traced(notif.nr) {
                trace(core, &notif, "DEFER");
            }
            match DeferPool::submit(shared, notif, work) {
                None => return,
                Some(now) => now,
            }
        }
        other => other,
    };
    // A re-issue (of a call no feature took over) is started by the
    // feature that can (else the core answers it `EACCES`).
    let action = match action {
        NotifAction::Reissue(r) => {
            let mut left = Err(r);
            for stage in &shared.stages {
                let Err(r) = left else { break };
                left = stage.reissue(core, &notif, r);
            }
            left.unwrap_or_else(NotifAction::Reissue)
        }
        other => other,
    };
    // 9. The one answer; the fork stays counted only if the kernel took the
    // CONTINUE (a stale call's token drops).
    core.answer_settled(&notif, action, fork_token);
}
