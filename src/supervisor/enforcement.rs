//! The one way a feature plugs into a sandbox and its supervisors: the
//! crate-private [`Enforcement`] trait (its filter rules and builtin
//! handlers, in three phases the sandbox builder runs over its plan; what
//! it starts for each supervisor) and the [`Stage`] hooks the poll thread
//! and the pipeline call, in the order `pipeline` documents. The
//! supervisor knows features only through these; features (process
//! tracking, argv safety, the policy callback, ...) use the answer core
//! ([`Notifier`]) and `handler`.

use std::any::Any;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::action::NotifAction;
use crate::error::{Error, Result};
use crate::filter::FilterBuilder;
use crate::handler::{Chains, Handler, HandlerCtx, MemoryCopy};
use crate::notification::Notification;
use crate::sys::cgroup::{Members, MemoryCgroup};

use super::notifier::{Notifier, Settle};
use super::services::Services;

/// What a feature may use while it starts for one supervisor.
pub(crate) struct StartEnv<'a> {
    /// The seccomp listener (to duplicate, for a thread of the feature's).
    pub(crate) listener: BorrowedFd<'a>,
    /// The sandbox's first process and process group.
    pub(crate) pgid: i32,
    /// The poll thread's poll instance, made when a feature first asks for
    /// its [`registry`](PollOnDemand::registry): pidfds registered there
    /// are polled, and their readiness reaches [`Stage::on_ready`]. A
    /// supervisor whose filter traps nothing runs its poll thread only if
    /// some feature asks for a [`Stage::tick_interval`]: a feature that
    /// registers pidfds must ask for one.
    pub(crate) poll: &'a PollOnDemand,
    /// The sandbox's cgroup membership, when a cgroup holds it.
    pub(crate) members: Option<Members>,
    /// The sandbox's memory cgroup, when it bounds memory.
    pub(crate) memory_cgroup: Option<Arc<MemoryCgroup>>,
    /// The features started before this one (its dependencies).
    pub(crate) services: &'a Services,
}

/// The poll thread's `mio::Poll`, made on first use: a sandbox whose
/// filter traps nothing and whose features poll nothing (the default
/// `unotify run`) runs no poll thread and needs none (an `epoll`
/// instance less to make and close on every start).
#[derive(Default)]
pub(crate) struct PollOnDemand(std::cell::OnceCell<mio::Poll>);

impl PollOnDemand {
    /// The registry of the poll instance, made now if it was not.
    pub(crate) fn registry(&self) -> std::io::Result<&mio::Registry> {
        if let Some(poll) = self.0.get() {
            return Ok(poll.registry());
        }
        let poll = mio::Poll::new()?;
        Ok(self.0.get_or_init(|| poll).registry())
    }

    /// The poll instance, if one was made.
    pub(crate) fn into_inner(self) -> Option<mio::Poll> {
        self.0.into_inner()
    }
}

/// Adds one value to [`Services`].
type Publish = Box<dyn FnOnce(&mut Services)>;

/// A feature's run-time part, for the supervisor: its stage hooks and the
/// value handlers and later features find in [`Services`].
pub(crate) struct Running {
    pub(crate) stage: Arc<dyn Stage>,
    /// Adds the feature's values to [`Services`].
    publish: Vec<Publish>,
}

impl Running {
    /// `value` as both a stage and a service.
    pub(crate) fn new<T: Stage + Any + Send + Sync>(value: Arc<T>) -> Running {
        Running {
            stage: Arc::clone(&value) as Arc<dyn Stage>,
            publish: Vec::new(),
        }
        .with_service(value)
    }

    /// Also makes `value` findable by its type.
    pub(crate) fn with_service<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Running {
        self.publish.push(Box::new(move |s| s.insert(value)));
        self
    }

    /// Makes the feature's values findable by their types; returns its
    /// hooks.
    pub(crate) fn publish(self, services: &mut Services) -> Arc<dyn Stage> {
        for f in self.publish {
            f(services);
        }
        self.stage
    }
}

/// The filter and the handler chains of a sandbox being built, as a
/// feature adds to them.
pub(crate) struct Install<'a> {
    pub(crate) filter: &'a mut FilterBuilder,
    chains: &'a mut Chains,
    /// Calls the caller denies in the filter: builtins skip them.
    user_denied: &'a [u32],
}

impl<'a> Install<'a> {
    pub(crate) fn new(
        filter: &'a mut FilterBuilder,
        chains: &'a mut Chains,
        user_denied: &'a [u32],
    ) -> Self {
        Install {
            filter,
            chains,
            user_denied,
        }
    }

    /// Traps `nr` (an error if the filter denies it; `what` names it).
    pub(crate) fn trap(&mut self, nr: u32, what: &str) -> Result<()> {
        if self.filter.is_denied(nr).is_some() {
            return Err(Error::ConflictingRule {
                syscall: what.to_owned(),
                reason: "a handler or trace was registered on a call the filter denies; remove one of the two",
            });
        }
        if !self.filter.is_notified(nr) {
            self.filter.notify(nr)?;
        }
        Ok(())
    }

    /// Adds `h` to the chain of `nr` and traps the calls of `nr` that
    /// match one of `cases` (each a list of checks that must all match);
    /// the others run untrapped, unless another rule traps them (then `h`
    /// sees them too, and must let them pass). Nothing if the caller
    /// denies `nr`.
    pub(crate) fn builtin_if(
        &mut self,
        nr: u32,
        h: Arc<dyn Handler>,
        cases: Vec<Vec<crate::filter::ArgCheck>>,
    ) -> Result<()> {
        if self.user_denied(nr) {
            return Ok(());
        }
        if self.filter.is_denied(nr).is_some() {
            return Ok(());
        }
        for checks in cases {
            self.filter.notify_if(nr, checks)?;
        }
        self.chains.push(nr, h);
        Ok(())
    }

    /// Traps `nr` and adds `h` to its chain.
    pub(crate) fn handler(&mut self, nr: u32, h: Arc<dyn Handler>) -> Result<()> {
        self.named_handler(
            nr,
            &crate::syscalls::label(crate::arch::Arch::native(), nr),
            h,
        )
    }

    /// [`handler`](Self::handler), naming the call `what` in an error.
    pub(crate) fn named_handler(&mut self, nr: u32, what: &str, h: Arc<dyn Handler>) -> Result<()> {
        self.trap(nr, what)?;
        self.chains.push(nr, h);
        Ok(())
    }

    /// [`handler`](Self::handler), unless the caller denies `nr` (then
    /// nothing is left to decide).
    pub(crate) fn builtin(&mut self, nr: u32, h: Arc<dyn Handler>) -> Result<()> {
        if self.user_denied(nr) {
            return Ok(());
        }
        self.handler(nr, h)
    }

    /// Whether the caller denies `nr`.
    pub(crate) fn user_denied(&self, nr: u32) -> bool {
        self.user_denied.contains(&nr)
    }
}

/// A feature of the sandbox. The builder runs each phase over every
/// feature of its plan, in plan order; each supervisor starts them in the
/// same order (a feature after those it uses).
pub(crate) trait Enforcement: Send + Sync {
    /// Phase 1, after the caller's denials: rules decided in the filter.
    fn rules(&self, _filter: &mut FilterBuilder) -> Result<()> {
        Ok(())
    }

    /// Phase 2: builtin handlers, ahead of the caller's in each chain.
    fn builtins(&self, _install: &mut Install<'_>) -> Result<()> {
        Ok(())
    }

    /// Phase 3, after the caller's handlers: calls to trap or refuse that
    /// nothing else decided.
    fn late_rules(&self, _install: &mut Install<'_>) -> Result<()> {
        Ok(())
    }

    /// Starts the feature for one supervisor (`None`: nothing to run).
    fn start(&self, _env: &StartEnv<'_>) -> Result<Option<Running>> {
        Ok(None)
    }
}

/// An answer a feature takes over from before dispatch to the response
/// (the exec freeze): dispatch reads the call's memory from its copy, and
/// it sends the one answer itself.
pub(crate) trait TakeOver {
    /// Why the call must be refused (`EPERM`) without dispatch, if it must.
    fn refusal(&self) -> Option<String>;
    /// How loudly the refusal is logged (a call whose task is gone gets no
    /// answer: debug, not a warning).
    fn refusal_level(&self) -> log::Level {
        log::Level::Warn
    }
    /// The copy reads of the call's memory are served from.
    fn copy(&self) -> Option<&dyn MemoryCopy>;
    /// The argv the decision is made on, if the copy has it (lossy: the
    /// pipeline reads the exact bytes through the copy instead).
    #[allow(dead_code)]
    fn argv(&self) -> Option<Vec<String>>;
    /// The errno the owner answers if dispatch lets the call through
    /// (`HandlerCtx::answer_fixed`), when it is known before dispatch.
    fn fixed_errno(&self) -> Option<i32> {
        None
    }
    /// Sends the one answer for the call (pipeline stage 7), settling
    /// `fork_token` (a counted fork's) with it: committed if a `CONTINUE`
    /// was delivered, rolled back (dropped) otherwise.
    fn finish(
        self: Box<Self>,
        core: &Notifier,
        notif: &Notification,
        action: NotifAction,
        fork_token: Option<Box<dyn Settle>>,
    );
}

/// The hooks of a running feature. Every hook has a do-nothing default.
/// Pipeline stages are numbered as in `pipeline`.
pub(crate) trait Stage: Send + Sync {
    /// Poll thread: the feature must see every receive, under the shared
    /// `world` lock ([`on_receive`](Self::on_receive)); the receive then
    /// never blocks in `RECV`.
    fn watches_receives(&self) -> bool {
        false
    }

    /// Poll thread, just after a receive: `tid`'s call `id` is pending.
    fn on_receive(&self, _tid: i32, _id: u64) {}

    /// Poll thread: how often [`tick`](Self::tick) runs; `Some` also means
    /// the feature registers pidfds (the receive then never blocks in
    /// `RECV`).
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Poll thread: the periodic tick.
    fn tick(&self) {}

    /// Poll thread: a registered source with `token` is ready.
    fn on_ready(&self, _token: usize) {}

    /// Stage 1: the call's task, before anything else happens to it.
    fn register(&self, _core: &Notifier, _notif: &Notification) {}

    /// Stage 2: takes the call's answer over, before dispatch.
    fn take_over<'a>(
        &'a self,
        _core: &'a Notifier,
        _notif: &Notification,
    ) -> Option<Box<dyn TakeOver + 'a>> {
        None
    }

    /// Stage 5: a verdict on the action dispatch chose; it only tightens.
    /// `exec_argv` reads the argv the decision is made on (an exec's).
    fn verdict(
        &self,
        _cx: &HandlerCtx<'_>,
        action: NotifAction,
        _exec_argv: &dyn Fn() -> Option<Vec<std::ffi::OsString>>,
    ) -> NotifAction {
        action
    }

    /// Stage 6: the action after every verdict, before the answer (for
    /// the audit log: `exec_argv` as for [`verdict`](Self::verdict)). It
    /// returns the action unchanged, or a `Defer` wrapped to see its
    /// result.
    fn answered(
        &self,
        _cx: &HandlerCtx<'_>,
        action: NotifAction,
        _exec_argv: &dyn Fn() -> Option<Vec<std::ffi::OsString>>,
    ) -> NotifAction {
        action
    }

    /// Stage 6: after every verdict, before the answer.
    fn after_verdict(&self) {}

    /// Stage 8, for a call that is not taken over and was answered
    /// `Reissue`: the feature that can re-issue calls starts it and
    /// returns the answer to send; `Err` gives the re-issue back (not
    /// this feature's).
    fn reissue(
        &self,
        _core: &Notifier,
        _notif: &Notification,
        r: crate::action::Reissue,
    ) -> std::result::Result<NotifAction, crate::action::Reissue> {
        Err(r)
    }

    /// Wind-down, after the workers and deferrals have ended and before
    /// the held calls are answered.
    fn shutdown(&self) {}
}
