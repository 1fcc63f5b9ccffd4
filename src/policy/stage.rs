//! Stage 6 of the pipeline: telling the policy callback and applying its
//! verdict, before any side effect of the call.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::action::NotifAction;
use crate::notification::Notification;

use super::context::DynamicPolicy;
use super::event::{SyscallCategory, SyscallEvent};
use super::runner::PolicyRunner;
use super::verdict::Verdict;

/// A supervisor's policy: its callback thread and run-time restrictions.
pub(crate) struct PolicyState {
    pub(crate) runner: PolicyRunner,
    pub(crate) dynamic: Arc<DynamicPolicy>,
}

/// The parent of process `pid`, from `/proc/<pid>/stat` (field 4).
fn parent_of(pid: u32) -> Option<u32> {
    crate::sys::procfs::Stat::of(pid as i32)?
        .ppid()
        .map(|p| p as u32)
}

/// Builds the event for `notif`.
pub(crate) fn event_for(
    notif: &Notification,
    dest: Option<SocketAddr>,
    argv: Option<Vec<String>>,
    denied: bool,
) -> SyscallEvent {
    let syscall = notif.syscall_name().unwrap_or("unknown");
    let category = SyscallCategory::of(syscall);
    let size = (category == SyscallCategory::Memory && syscall == "mmap").then_some(notif.args[1]);
    SyscallEvent {
        syscall,
        category,
        pid: notif.pid,
        parent_pid: parent_of(notif.pid),
        host: dest.map(|d| d.ip()),
        port: dest.map(|d| d.port()),
        size,
        argv,
        denied,
    }
}

impl PolicyState {
    /// `ECONNREFUSED` if `dest` is outside the run-time network restriction
    /// of the caller's process.
    pub(crate) fn restricted(&self, notif: &Notification, dest: SocketAddr) -> Option<i32> {
        let tgid = || crate::handler::thread_group_of(notif.pid as i32).unwrap_or(notif.pid as i32);
        if self.dynamic.net_allows_with(tgid, dest.ip()) {
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
        argv: Option<Vec<String>>,
        denied: bool,
    ) -> Option<i32> {
        if let (Some(d), false) = (dest, denied) {
            if let Some(e) = self.restricted(notif, d) {
                return Some(e);
            }
        }
        let event = event_for(notif, dest, argv, denied);
        let held = !denied && super::is_held(event.syscall);
        match self.runner.submit(event, held)? {
            v @ (Verdict::Deny | Verdict::DenyWith(_)) => v.errno().map(valid_errno),
            Verdict::Allow | Verdict::Audit => None,
        }
    }
}

fn valid_errno(e: i32) -> i32 {
    if (1..=4095).contains(&e) {
        e
    } else {
        libc::EPERM
    }
}

/// Applies the verdict to the pipeline's action: a verdict only tightens.
pub(crate) fn apply(
    state: &PolicyState,
    notif: &Notification,
    action: NotifAction,
    argv: Option<Vec<String>>,
) -> NotifAction {
    let denied = matches!(
        action,
        NotifAction::Errno(_) | NotifAction::KillTask { .. } | NotifAction::KillGroup { .. }
    );
    match state.consult(notif, None, argv, denied) {
        Some(errno) if !denied => NotifAction::Errno(errno),
        _ => action,
    }
}
