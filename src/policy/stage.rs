//! The policy callback as a feature of the sandbox: its verdict stage
//! (pipeline stage 5), telling the callback and applying its verdict
//! before any side effect of the call; and the [`PolicyCheck`] on-behalf
//! handlers ask before theirs. Uses `handler` and the supervisor's
//! [`Enforcement`] trait.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::action::{Errno, NotifAction};
use crate::error::{Error, Result};
use crate::handler::{HandlerCtx, PolicyCheck, PolicyGate};
use crate::notification::Notification;
use crate::paths::DeniedPaths;
use crate::supervisor::enforcement::{Enforcement, Install, Running, Stage, StartEnv, TakeOver};
use crate::supervisor::notifier::Notifier;

use super::context::DynamicPolicy;
use super::event::{Answered, SyscallCategory, SyscallEvent};
use super::forks::{ForkCalls, RestrictedFork};
use super::parents::Parents;
use super::runner::PolicyRunner;
use super::verdict::Verdict;

/// The policy callback, as a feature of the sandbox.
pub(crate) struct PolicyFeature {
    pub(crate) setup: super::PolicySetup,
    /// Paths the callback may deny at run time.
    pub(crate) denied_paths: Option<Arc<DeniedPaths>>,
}

impl Enforcement for PolicyFeature {
    /// Held calls must reach the supervisor to wait for the verdict. With
    /// a callback (which may restrict processes), so must every call that
    /// creates a process: `clone` (but of a thread), `fork`, `vfork`;
    /// `clone3`, whose flags the kernel reads from memory after the check,
    /// fails with `ENOSYS` (the C library falls back to `clone`).
    fn late_rules(&self, install: &mut Install<'_>) -> Result<()> {
        let filter = &mut *install.filter;
        for name in super::HELD_SYSCALLS {
            if let Ok(nr) = crate::syscalls::resolve(name) {
                if filter.is_denied(nr).is_none() && !filter.is_notified(nr) {
                    filter.notify(nr)?;
                }
            }
        }
        if self.setup.callback.is_none() {
            return Ok(());
        }
        for name in ["fork", "vfork"] {
            if let Ok(nr) = crate::syscalls::resolve(name) {
                if filter.is_denied(nr).is_none() && !filter.is_notified(nr) {
                    filter.notify(nr)?;
                }
            }
        }
        if let Ok(nr) = crate::syscalls::resolve("clone") {
            if filter.is_denied(nr).is_none() {
                let process = crate::filter::ArgCheck::new(0, libc::CLONE_THREAD as u64, 0);
                filter.notify_if(nr, vec![process])?;
            }
        }
        if let Ok(nr) = crate::syscalls::resolve("clone3") {
            filter.refuse_always(nr, libc::ENOSYS)?;
        }
        Ok(())
    }

    fn start(&self, env: &StartEnv<'_>) -> Result<Option<Running>> {
        let dynamic = Arc::new(DynamicPolicy::new(self.denied_paths.clone()));
        // A restricted process's forks are traced by the one ptrace owner.
        let ptrace = match self.setup.callback {
            Some(_) => Some(crate::freeze::PtraceOwner::of(env)?),
            None => None,
        };
        let runner = PolicyRunner::start(&self.setup, Arc::clone(&dynamic))
            .map_err(|e| Error::io("start the policy thread", e))?;
        let state = Arc::new(PolicyState {
            runner,
            dynamic,
            has_callback: self.setup.callback.is_some(),
            audit: self.setup.audit.is_some(),
            parents: Parents::default(),
            forks: ForkCalls::new(),
            ptrace,
        });
        let gate = Arc::new(PolicyGate(Arc::clone(&state) as Arc<dyn PolicyCheck>));
        let owner = state.ptrace.clone().map(Arc::new);
        let mut running = Running::new(state).with_service(gate);
        if let Some(owner) = owner {
            running = running.with_service(owner);
        }
        if self.setup.audit.is_some() {
            running = running.with_service(Arc::new(crate::handler::Audited));
        }
        Ok(Some(running))
    }
}

impl Stage for PolicyState {
    /// Stage 2: a call of a restricted process that creates a process is
    /// answered under a trace, so that the new process is restricted
    /// before it runs (see `forks`).
    fn take_over<'a>(
        &'a self,
        _core: &'a Notifier,
        notif: &Notification,
    ) -> Option<Box<dyn TakeOver + 'a>> {
        if !self.has_callback || !self.forks.creates_process(notif) {
            return None;
        }
        RestrictedFork::of(&self.dynamic, self.ptrace.as_ref(), &self.forks, notif)
            .map(|f| Box::new(f) as Box<dyn TakeOver + 'a>)
    }

    fn verdict(
        &self,
        cx: &HandlerCtx<'_>,
        action: NotifAction,
        exec_argv: &dyn Fn() -> Option<Vec<OsString>>,
    ) -> NotifAction {
        apply(self, cx.notification(), action, exec_argv())
    }

    fn answered(
        &self,
        cx: &HandlerCtx<'_>,
        action: NotifAction,
        exec_argv: &dyn Fn() -> Option<Vec<OsString>>,
    ) -> NotifAction {
        if !self.audit {
            return action;
        }
        let (mut event, mut answered) = record_for(&self.parents, cx, exec_argv);
        let id = cx.notification().id;
        let refused_by_rule = cx.noted_rule().is_some_and(|(_, refused)| refused);
        match action {
            // Decided later: recorded with what the deferred work answers.
            NotifAction::Defer(work) => {
                let record = self.runner.record_later();
                NotifAction::Defer(work.then(move |result| {
                    let (outcome, errno, ret) = outcome_of(&result, None, refused_by_rule);
                    answered.outcome = outcome;
                    answered.ret = ret;
                    event.errno = errno;
                    record(id, event, answered);
                    result
                }))
            }
            action => {
                let (outcome, errno, ret) = outcome_of(&action, cx.answer_fixed(), refused_by_rule);
                answered.outcome = outcome;
                answered.ret = ret;
                event.errno = errno;
                self.runner.record(id, event, answered);
                action
            }
        }
    }

    fn shutdown(&self) {
        self.runner.shutdown();
    }
}

/// The audit record of a call, before its outcome: the event, with its
/// path and destination read once now (the task still waits for its
/// answer; reads check `ID_VALID`, or come from the copy the decision was
/// made on), and the rule that decided.
fn record_for(
    parents: &Parents,
    cx: &HandlerCtx<'_>,
    exec_argv: &dyn Fn() -> Option<Vec<OsString>>,
) -> (SyscallEvent, Answered) {
    use crate::notification::decode;
    let notif = cx.notification();
    let name = notif.syscall_name().unwrap_or("unknown");
    let path = decode::path_arg(name).and_then(|i| {
        let bytes = cx.decided_cstr(notif.args[i], 4096).ok()?;
        Some(crate::shown::bytes(&bytes))
    });
    let (destination, dest) = cx.decided_destination();
    let argv = if matches!(name, "execve" | "execveat") {
        exec_argv()
    } else {
        None
    };
    let event = event_for(parents, notif, dest, argv, false, None);
    let answered = Answered {
        path,
        destination,
        rule: cx.noted_rule().map(|(r, _)| r),
        ..Answered::default()
    };
    (event, answered)
}

/// What answering with `action` means for the record: the outcome, the
/// errno and the value returned. `fixed` is the errno the call's owner
/// answers a `Continue` with; `refused_by_rule`, whether a rule refused it.
fn outcome_of(
    action: &NotifAction,
    fixed: Option<i32>,
    refused_by_rule: bool,
) -> (&'static str, Option<i32>, Option<i64>) {
    let failed = |e: i32| {
        let outcome = if refused_by_rule { "refused" } else { "failed" };
        (outcome, Some(e), None)
    };
    match action {
        NotifAction::Continue => match fixed {
            Some(e) => failed(e),
            None => ("continued", None, None),
        },
        NotifAction::Errno(e) => failed(*e),
        NotifAction::ReturnValue(v) if (-4095..0).contains(v) => failed(-*v as i32),
        NotifAction::ReturnValue(v) => ("performed", None, Some(*v)),
        NotifAction::InjectFd { .. } => ("continued", None, None),
        NotifAction::InjectFdSend { .. } | NotifAction::InjectFdSendTracked { .. } => {
            ("performed", None, None)
        }
        NotifAction::Hold => ("held", None, None),
        NotifAction::KillTask { .. } | NotifAction::KillGroup { .. } => ("killed", None, None),
        NotifAction::Defer(_) => ("deferred", None, None),
        NotifAction::Reissue(_) => ("reissued", None, None),
    }
}

impl PolicyCheck for PolicyState {
    fn restricted(&self, notif: &Notification, dest: SocketAddr) -> Option<i32> {
        PolicyState::restricted(self, notif, dest)
    }

    fn consult(&self, notif: &Notification, dest: Option<SocketAddr>) -> Option<i32> {
        // Asked by a fork about to be held (the pause): one of a
        // restricted process would be answered later, untraced.
        if self.forks.creates_process(notif)
            && self
                .dynamic
                .processes
                .nets_of_task(notif.pid as i32)
                .is_some()
        {
            log::info!(
                "pid {}: fork held by the pause refused (EAGAIN): its process is under a network restriction",
                notif.pid
            );
            return Some(libc::EAGAIN);
        }
        PolicyState::consult(self, notif, dest, None, false, None)
    }
}

/// A supervisor's policy: its callback thread and run-time restrictions.
pub(crate) struct PolicyState {
    pub(crate) runner: PolicyRunner,
    pub(crate) dynamic: Arc<DynamicPolicy>,
    /// Whether a callback is told about calls (else only records are made).
    pub(crate) has_callback: bool,
    /// Whether answered calls are recorded in the audit log.
    pub(crate) audit: bool,
    /// Where events' `parent_pid` comes from.
    pub(crate) parents: Parents,
    /// The calls that create a process (traced for a restricted one).
    pub(crate) forks: ForkCalls,
    /// Who traces a restricted process's forks (with a callback).
    pub(crate) ptrace: Option<crate::freeze::PtraceOwner>,
}

/// Builds the event for `notif`.
pub(crate) fn event_for(
    parents: &Parents,
    notif: &Notification,
    dest: Option<SocketAddr>,
    argv: Option<Vec<OsString>>,
    denied: bool,
    errno: Option<i32>,
) -> SyscallEvent {
    let syscall = notif.syscall_name().unwrap_or("unknown");
    let category = SyscallCategory::of(syscall);
    let size = (category == SyscallCategory::Memory && syscall == "mmap").then_some(notif.args[1]);
    SyscallEvent {
        syscall,
        category,
        pid: notif.pid,
        parent_pid: parents.of(notif.pid),
        host: dest.map(|d| d.ip()),
        port: dest.map(|d| d.port()),
        size,
        argv,
        denied,
        held: false,
        errno,
    }
}

impl PolicyState {
    /// `ECONNREFUSED` if `dest` is outside the run-time network restriction
    /// of the caller's process.
    pub(crate) fn restricted(&self, notif: &Notification, dest: SocketAddr) -> Option<i32> {
        if self.dynamic.net_allows_task(notif.pid as i32, dest.ip()) {
            None
        } else {
            log::debug!("policy: {dest} is outside the run-time network restriction");
            Some(libc::ECONNREFUSED)
        }
    }

    /// Tells the callback about a call the supervisor is about to let
    /// through (or has denied) and returns the errno to fail it with, if
    /// the callback or a run-time network restriction says so.
    pub(crate) fn consult(
        &self,
        notif: &Notification,
        dest: Option<SocketAddr>,
        argv: Option<Vec<OsString>>,
        denied: bool,
        errno: Option<i32>,
    ) -> Option<i32> {
        if let (Some(d), false) = (dest, denied) {
            if let Some(e) = self.restricted(notif, d) {
                return Some(e);
            }
        }
        if !self.has_callback {
            return None;
        }
        let mut event = event_for(&self.parents, notif, dest, argv, denied, errno);
        let held = !denied && super::is_held(event.syscall);
        event.held = held;
        match self.runner.submit(notif.id, event, held)? {
            v @ (Verdict::Deny | Verdict::DenyWith(_)) => {
                v.errno().map(|e| Errno::or_eperm(e).get())
            }
            Verdict::Allow | Verdict::Audit => None,
        }
    }
}

/// Applies the verdict to the pipeline's action: a verdict only tightens.
pub(crate) fn apply(
    state: &PolicyState,
    notif: &Notification,
    action: NotifAction,
    argv: Option<Vec<OsString>>,
) -> NotifAction {
    let denied = matches!(
        action,
        NotifAction::Errno(_) | NotifAction::KillTask { .. } | NotifAction::KillGroup { .. }
    );
    let errno = match action {
        NotifAction::Errno(e) => Some(e),
        _ => None,
    };
    match state.consult(notif, None, argv, denied, errno) {
        Some(errno) if !denied => NotifAction::Errno(errno),
        _ => action,
    }
}
