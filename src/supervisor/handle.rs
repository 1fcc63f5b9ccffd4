//! [`SupervisorHandle`]: a weak handle on a running supervisor, for the
//! host and for handlers. A leaf beside the answer core: it reaches the
//! supervisor only through [`HandleOps`], which the supervisor implements,
//! so `handler` can hand one out without importing the supervisor.
//! Features add their own methods to it (`process`: pause, resume).

use std::sync::Weak;

use crate::action::NotifAction;
use crate::error::{Error, Result};
use crate::notification::Notification;

use super::notifier::Notifier;
use super::services::Services;
use super::stats::Stats;

/// What a handle may do with a running supervisor.
pub(crate) trait HandleOps: Send + Sync {
    /// The answer core.
    fn core(&self) -> &Notifier;
    /// The running features.
    fn services(&self) -> &Services;
    /// Deferrals running now.
    fn deferrals_in_flight(&self) -> usize;
    /// Asks the supervisor to stop.
    fn request_stop(&self);
}

/// A cheap, cloneable handle on a supervisor. It does not keep the
/// supervisor alive: once it has stopped, its methods return `None`,
/// `false`, an empty list or [`Error::Stopped`].
#[derive(Clone)]
pub struct SupervisorHandle {
    shared: Weak<dyn HandleOps>,
}

impl std::fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorHandle")
            .field("running", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl SupervisorHandle {
    pub(crate) fn new(shared: Weak<dyn HandleOps>) -> Self {
        SupervisorHandle { shared }
    }

    /// Runs `f` with the answer core and the running features, or returns
    /// [`Error::Stopped`] once the supervisor is gone.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Notifier, &Services) -> R) -> Result<R> {
        let sh = self.shared.upgrade().ok_or(Error::Stopped)?;
        Ok(f(sh.core(), sh.services()))
    }

    /// Counters, or `None` once the supervisor is gone.
    pub fn stats(&self) -> Option<Stats> {
        Some(self.shared.upgrade()?.core().stats())
    }

    /// Deferrals running now, or `None` once the supervisor is gone.
    pub fn deferrals_in_flight(&self) -> Option<usize> {
        Some(self.shared.upgrade()?.deferrals_in_flight())
    }

    /// The calls currently held ([`NotifAction::Hold`]).
    pub fn held(&self) -> Vec<Notification> {
        match self.shared.upgrade() {
            Some(sh) => sh.core().held(),
            None => Vec::new(),
        }
    }

    /// Answers the held call `id` with `action` (which must not be `Hold` or
    /// `Defer`; those are answered `EPERM`). Returns `false` if no such call
    /// is held (already answered, or never held).
    pub fn release(&self, id: u64, action: NotifAction) -> bool {
        let Some(sh) = self.shared.upgrade() else {
            return false;
        };
        let core = sh.core();
        let Some(held) = core.take_held(id) else {
            return false;
        };
        let action = match action {
            NotifAction::Hold | NotifAction::Defer(_) => {
                log::warn!("release of held call {id} with {action:?}; answering EPERM");
                NotifAction::Errno(libc::EPERM)
            }
            other => other,
        };
        // A counted fork held by a handler kept its token: it stays counted
        // only if it is let through now.
        let settle = held
            .settle
            .filter(|_| matches!(action, NotifAction::Continue));
        core.answer_settled(&held.notif, action, settle);
        true
    }

    /// Asks the supervisor to stop.
    pub fn stop(&self) {
        if let Some(sh) = self.shared.upgrade() {
            sh.request_stop();
        }
    }
}
