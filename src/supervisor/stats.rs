//! Counters the supervisor keeps, readable while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the supervisor's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Notifications received.
    pub received: u64,
    /// Answers the kernel accepted. Counted just after the kernel took the
    /// answer, so it may briefly lag behind what the program has seen.
    pub answered: u64,
    /// Answers the kernel refused because the call was gone (`ENOENT`:
    /// the task died or was interrupted before the answer).
    pub stale: u64,
    /// Handlers that panicked (answered `EPERM`).
    pub panics: u64,
    /// Deferrals admitted to the pool.
    pub deferred: u64,
    /// Deferrals refused because the pool was full (answered `EAGAIN`).
    pub defer_rejected: u64,
    /// Deferrals that missed their deadline (answered `EIO`).
    pub defer_timeouts: u64,
    /// Calls currently held.
    pub held: u64,
}

#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) defer_rejected: AtomicU64,
    pub(crate) defer_timeouts: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, held: u64) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            received: get(&self.received),
            answered: get(&self.answered),
            stale: get(&self.stale),
            panics: get(&self.panics),
            deferred: get(&self.deferred),
            defer_rejected: get(&self.defer_rejected),
            defer_timeouts: get(&self.defer_timeouts),
            held,
        }
    }
}
