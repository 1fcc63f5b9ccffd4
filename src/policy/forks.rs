//! Restrictions inherited at creation: a fork-like call of a process under
//! a network restriction is let through under ptrace, for its one creation
//! event, so that the new process is restricted before it runs its first
//! instruction (it starts stopped, attached to the tracing thread, and is
//! let go only once recorded). A restricted process's children so stay
//! restricted whatever becomes of it (an orphan given to init or a
//! subreaper included), and a network check never walks `/proc`.
//! Nothing is traced for a process no restriction reaches. Taken over by
//! the policy's stage 2 ([`RestrictedFork`]); records in [`Restrictions`].
//!
//! The ptrace work is the supervisor's one ptrace owner's
//! ([`PtraceOwner::trace_fork`], argv safety's tracer): the worker asks it
//! to trace the caller before the answer (a refusal if it cannot:
//! `EPERM`), answers `CONTINUE`, and tells it the answer was sent. The
//! owner watches the caller to its creation event, holds the new process
//! at its first stop while [`Inherit`] records it, and lets both go; a
//! caller an exec freeze holds at the same time is shared, not fought
//! over (see `freeze::tracer`). A caller killed between the creation and
//! its event reports no event: its new process is found by its stop,
//! recorded and let go; one found too late is killed (fail closed).

use std::sync::Arc;

use ipnet::IpNet;

use crate::action::NotifAction;
use crate::freeze::{ForkWitness, PtraceOwner};
use crate::handler::MemoryCopy;
use crate::notification::Notification;
use crate::supervisor::enforcement::TakeOver;
use crate::supervisor::notifier::{Notifier, Sent, Settle};

use super::context::DynamicPolicy;
use super::restricted::Restrictions;

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
    dynamic: &'a Arc<DynamicPolicy>,
    /// Who traces it (`None`: nobody can; refused).
    owner: Option<&'a PtraceOwner>,
    /// The caller's process.
    tgid: i32,
    /// Its restriction when the call was decided.
    nets: Vec<IpNet>,
    /// Why it is refused before dispatch, if it is.
    refusal: Option<&'static str>,
}

impl<'a> RestrictedFork<'a> {
    /// The take-over of `notif`, a fork-like call, if its caller is
    /// restricted; `None` if not.
    pub(crate) fn of(
        dynamic: &'a Arc<DynamicPolicy>,
        owner: Option<&'a PtraceOwner>,
        calls: &ForkCalls,
        notif: &Notification,
    ) -> Option<Self> {
        let restrictions: &Restrictions = &dynamic.processes;
        // First: a restriction made from here on waits for this fork.
        restrictions.fork_decided();
        if !restrictions.any() {
            return None;
        }
        let tid = notif.pid as i32;
        let Some(tgid) = restrictions.process_of(tid) else {
            // Gone (no answer will reach it) or unreadable: refused.
            return Some(RestrictedFork {
                dynamic,
                owner,
                tgid: tid,
                nets: Vec::new(),
                refusal: Some("its process could not be found"),
            });
        };
        let nets = restrictions.nets_of(tgid)?;
        let refusal = calls
            .untraceable(notif)
            .then_some("CLONE_UNTRACED from a process under a network restriction");
        Some(RestrictedFork {
            dynamic,
            owner,
            tgid,
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
/// event: the new process is recorded as restricted before it runs.
fn trace_fork(
    core: &Notifier,
    notif: &Notification,
    fork_token: Option<Box<dyn Settle>>,
    fork: &RestrictedFork<'_>,
) {
    let tid = notif.pid as i32;
    let witness = Box::new(Inherit {
        dynamic: Arc::clone(fork.dynamic),
        tgid: fork.tgid,
        nets: fork.nets.clone(),
    });
    let traced = match fork.owner {
        Some(owner) => {
            let trace = owner.trace_fork(tid, fork.tgid, witness);
            trace.wait().map(|()| trace).map_err(|e| e.to_string())
        }
        None => Err("no ptrace owner".to_owned()),
    };
    match traced {
        Ok(trace) => {
            let sent = core.answer_settled(notif, NotifAction::Continue, fork_token);
            trace.answered(sent == Sent::Delivered);
        }
        Err(e) => {
            log::warn!(
                "cannot trace {} of pid {tid} (under a network restriction): {e}; answering EPERM",
                notif.syscall_label()
            );
            drop(fork_token);
            core.answer(notif, NotifAction::Errno(libc::EPERM));
        }
    }
}

/// Records a restricted process's new process, before it runs, with its
/// creator's restriction.
struct Inherit {
    dynamic: Arc<DynamicPolicy>,
    /// The creator's process.
    tgid: i32,
    /// Its restriction when the call was decided.
    nets: Vec<IpNet>,
}

impl ForkWitness for Inherit {
    fn created(&self, child: i32) {
        let restrictions = &self.dynamic.processes;
        // The creator's restriction now (narrowed meanwhile, maybe), or
        // the one its fork was decided on if it is gone.
        let nets = restrictions
            .nets_of(self.tgid)
            .unwrap_or_else(|| self.nets.clone());
        restrictions.inherit(child, &nets);
    }
}
