//! Whether the supervisor may act for a task, remembered per thread, so
//! that an on-behalf call reads `/proc/<tid>/status` only on a miss.
//!
//! A thread's credentials change only by its own calls: the set*id family,
//! `setgroups`, `capset` (trapped while paths are denied; each forgets the
//! caller's entry before the kernel runs it, and the caller cannot make
//! another call meanwhile) and exec (also trapped; see [`CredCache::exec_started`]).
//! Its mount namespace cannot change (`view` refuses it). An entry is
//! tied to its thread by a thread pidfd, so a recycled thread id never
//! finds the entry of the dead thread that had it. Used by
//! `resolve::Task::read` and the path handlers; calls only `sys`.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use parking_lot::Mutex;

use crate::sys::pidfd::{pidfd_open, pidfd_send_signal, PIDFD_THREAD};

/// What the supervisor decided about a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Its thread group.
    pub(crate) tgid: i32,
    /// `Some(effective capabilities)`: the supervisor acts for it with
    /// these; `None`: it does not act for it (other ids, groups or
    /// namespace).
    pub(crate) acts_with: Option<u64>,
}

/// Entries kept before dead threads are swept out (each holds an fd, and
/// the supervisor's fd limit may be as low as 1024).
const SWEEP_AT: usize = 64;
/// At most this many entries (fds); past it, threads are not cached.
const MAX_ENTRIES: usize = 256;

/// The cache. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct CredCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    threads: HashMap<i32, Entry>,
    /// Thread groups with an exec in flight, with the exec callers (and
    /// their thread pidfds, if they could be opened). See
    /// [`CredCache::exec_started`].
    execs: HashMap<i32, Vec<(i32, Option<OwnedFd>)>>,
    /// Sweep dead threads out when this many entries are reached (0:
    /// [`SWEEP_AT`]); doubles with the live ones, so sweeps stay rare.
    sweep_at: usize,
    /// Bumped by every change that could make a `/proc` read in progress
    /// stale: such a read is not stored ([`CredCache::store`]).
    epoch: u64,
}

#[derive(Debug)]
struct Entry {
    pidfd: OwnedFd,
    verdict: Verdict,
}

fn alive(fd: &OwnedFd) -> bool {
    pidfd_send_signal(fd.as_fd(), 0).is_ok()
}

impl Inner {
    /// Whether thread `tid` of group `tgid` may use and fill the cache:
    /// not while an exec in its group may still change credentials. An
    /// exec is over once its caller makes another call (it failed, or it
    /// succeeded in the leader) or its thread is gone (it succeeded in
    /// another thread, which became the leader; the others died).
    fn settled(&mut self, tid: i32, tgid: i32) -> bool {
        let Some(callers) = self.execs.get_mut(&tgid) else {
            return true;
        };
        callers.retain(|(t, fd)| *t != tid && fd.as_ref().is_some_and(alive));
        if callers.is_empty() {
            self.execs.remove(&tgid);
            // Reads begun during the exec are not stored.
            self.epoch += 1;
            return true;
        }
        false
    }
}

impl CredCache {
    /// The verdict for thread `tid`, if known and still valid.
    pub(crate) fn lookup(&self, tid: i32) -> Option<Verdict> {
        let mut inner = self.inner.lock();
        let entry = inner.threads.get(&tid)?;
        let verdict = entry.verdict;
        if !alive(&entry.pidfd) {
            inner.threads.remove(&tid);
            return None;
        }
        inner.settled(tid, verdict.tgid).then_some(verdict)
    }

    /// A stamp for thread `tid` to take before reading its credentials, for
    /// [`store`](Self::store). A call of an exec caller ends its exec here,
    /// before the read: the read that follows is of the new credentials,
    /// and is kept (the first call of every new program reads `/proc` once,
    /// not twice).
    pub(crate) fn stamp(&self, tid: i32) -> u64 {
        let mut inner = self.inner.lock();
        let groups: Vec<i32> = inner
            .execs
            .iter()
            .filter(|(g, callers)| **g == tid || callers.iter().any(|(t, _)| *t == tid))
            .map(|(g, _)| *g)
            .collect();
        for g in groups {
            inner.settled(tid, g);
        }
        inner.epoch
    }

    /// Remembers `verdict` for thread `tid` (whose thread pidfd is
    /// `pidfd`), read from `/proc` after `stamp` was taken, unless
    /// something changed since.
    pub(crate) fn store(&self, tid: i32, pidfd: OwnedFd, stamp: u64, verdict: Verdict) {
        let mut inner = self.inner.lock();
        if !inner.settled(tid, verdict.tgid) || inner.epoch != stamp {
            return;
        }
        if inner.threads.len() >= inner.sweep_at.max(SWEEP_AT) {
            inner.threads.retain(|_, e| alive(&e.pidfd));
            inner.sweep_at = 2 * inner.threads.len();
        }
        if inner.threads.len() < MAX_ENTRIES {
            inner.threads.insert(tid, Entry { pidfd, verdict });
        }
    }

    /// A thread pidfd for `tid`, to [`store`](Self::store) with its verdict
    /// (`None` on a kernel without thread pidfds: nothing is cached).
    pub(crate) fn open(tid: i32) -> Option<OwnedFd> {
        pidfd_open(tid, PIDFD_THREAD).ok()
    }

    /// Thread `tid` is about to change its credentials (a trapped set*id,
    /// `setgroups` or `capset`).
    pub(crate) fn forget(&self, tid: i32) {
        let mut inner = self.inner.lock();
        inner.threads.remove(&tid);
        inner.epoch += 1;
    }

    /// Thread `tid` of group `tgid` is about to exec. A successful exec
    /// changes credentials (capabilities are recomputed) and, from a thread
    /// other than the leader, gives the caller the leader's id (and the
    /// leader's thread pidfd). So every entry of the group goes, and until
    /// the exec is over no thread of the group uses or fills the cache (a
    /// call of another thread in flight would read credentials from before
    /// the exec).
    pub(crate) fn exec_started(&self, tid: i32, tgid: i32) {
        let pidfd = Self::open(tid);
        let mut inner = self.inner.lock();
        inner.threads.retain(|_, e| e.verdict.tgid != tgid);
        inner.execs.entry(tgid).or_default().push((tid, pidfd));
        inner.epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> (i32, i32) {
        let tid = crate::sys::process::gettid();
        (tid, std::process::id() as i32)
    }

    #[test]
    fn hit_forget_and_exec() {
        let cache = CredCache::default();
        let (tid, tgid) = own();
        let v = Verdict {
            tgid,
            acts_with: Some(0),
        };
        assert_eq!(cache.lookup(tid), None);
        let s = cache.stamp(tid);
        cache.store(tid, CredCache::open(tid).unwrap(), s, v);
        assert_eq!(cache.lookup(tid), Some(v));
        cache.forget(tid);
        assert_eq!(cache.lookup(tid), None);
        // A read begun before a change is not stored.
        cache.store(tid, CredCache::open(tid).unwrap(), s, v);
        assert_eq!(cache.lookup(tid), None);
        // An exec in the caller's thread: its next call ends it.
        let s = cache.stamp(tid);
        cache.store(tid, CredCache::open(tid).unwrap(), s, v);
        cache.exec_started(tid, tgid);
        assert_eq!(cache.lookup(tid), None, "the group's entries are gone");
        // A read begun during the exec (stamped before the caller's next
        // call) is not kept.
        let during = cache.inner.lock().epoch;
        cache.store(tid, CredCache::open(tid).unwrap(), during, v);
        assert_eq!(cache.lookup(tid), None, "the read began during the exec");
        // The caller's next call ends the exec before its read: kept.
        let s = cache.stamp(tid);
        cache.store(tid, CredCache::open(tid).unwrap(), s, v);
        assert_eq!(cache.lookup(tid), Some(v));
        // An exec in another thread: nothing of the group is cached until
        // that thread is gone (or calls again).
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            tx.send(crate::sys::process::gettid()).unwrap();
            let _ = done_rx.recv();
        });
        let b = rx.recv().unwrap();
        cache.exec_started(b, tgid);
        for _ in 0..2 {
            let s = cache.stamp(tid);
            cache.store(tid, CredCache::open(tid).unwrap(), s, v);
            assert_eq!(cache.lookup(tid), None);
        }
        let other_fd = CredCache::open(b).unwrap();
        done_tx.send(()).unwrap();
        other.join().unwrap();
        // `join` returns at the thread's exit futex, a moment before the
        // kernel lets the thread go: wait until it is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(&other_fd) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Gone: the first read after it is still from during the exec.
        for expect in [None, Some(v)] {
            let s = cache.stamp(tid);
            cache.store(tid, CredCache::open(tid).unwrap(), s, v);
            assert_eq!(cache.lookup(tid), expect);
        }
    }

    #[test]
    fn dead_threads_are_swept_and_entries_bounded() {
        let cache = CredCache::default();
        let tgid = std::process::id() as i32;
        let v = Verdict {
            tgid,
            acts_with: None,
        };
        // Threads that open their entry and exit: their entries go.
        for _ in 0..3 * SWEEP_AT {
            let (tid, fd) = std::thread::spawn(|| {
                let tid = crate::sys::process::gettid();
                (tid, CredCache::open(tid).unwrap())
            })
            .join()
            .unwrap();
            let s = cache.stamp(tid);
            cache.store(tid, fd, s, v);
        }
        assert!(cache.inner.lock().threads.len() <= SWEEP_AT);
    }
}
