//! The one way a feature plugs into a supervisor: the crate-private
//! [`Enforcement`] trait (what a feature starts for each supervisor) and
//! the [`Stage`] hooks the poll thread and the pipeline call, in the order
//! `pipeline` documents. The supervisor knows features only through these;
//! features (process tracking, argv safety, the policy callback, ...) use
//! the answer core ([`Notifier`]) and `handler`.

use std::any::Any;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::action::NotifAction;
use crate::error::Result;
use crate::handler::{HandlerCtx, MemoryCopy};
use crate::notification::Notification;
use crate::sys::cgroup::{Members, MemoryCgroup};

use super::notifier::Notifier;
use super::services::Services;

/// What a feature may use while it starts for one supervisor.
pub(crate) struct StartEnv<'a> {
    /// The seccomp listener (to duplicate, for a thread of the feature's).
    pub(crate) listener: BorrowedFd<'a>,
    /// The sandbox's first process and process group.
    pub(crate) pgid: i32,
    /// The poll thread's registry: pidfds registered here are polled, and
    /// their readiness reaches [`Stage::on_ready`].
    pub(crate) registry: &'a mio::Registry,
    /// The sandbox's cgroup membership, when a cgroup holds it.
    pub(crate) members: Option<Members>,
    /// The sandbox's memory cgroup, when it bounds memory.
    pub(crate) memory_cgroup: Option<Arc<MemoryCgroup>>,
    /// The features started before this one (its dependencies).
    pub(crate) services: &'a Services,
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

/// A feature of the sandbox, as the supervisor sees it.
pub(crate) trait Enforcement: Send + Sync {
    /// Starts the feature for one supervisor (`None`: nothing to run).
    fn start(&self, env: &StartEnv<'_>) -> Result<Option<Running>>;
}

/// An answer a feature takes over from before dispatch to the response
/// (the exec freeze): dispatch reads the call's memory from its copy, and
/// it sends the one answer itself.
pub(crate) trait TakeOver {
    /// Why the call must be refused (`EPERM`) without dispatch, if it must.
    fn refusal(&self) -> Option<String>;
    /// The copy reads of the call's memory are served from.
    fn copy(&self) -> Option<&dyn MemoryCopy>;
    /// The argv the decision is made on, if the copy has it.
    fn argv(&self) -> Option<Vec<String>>;
    /// Sends the one answer for the call (pipeline stage 7).
    fn finish(self: Box<Self>, core: &Notifier, notif: &Notification, action: NotifAction);
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
        _exec_argv: &dyn Fn() -> Option<Vec<String>>,
    ) -> NotifAction {
        action
    }

    /// Stage 6: after every verdict, before the answer.
    fn after_verdict(&self) {}

    /// Wind-down, after the workers and deferrals have ended and before
    /// the held calls are answered.
    fn shutdown(&self) {}
}
