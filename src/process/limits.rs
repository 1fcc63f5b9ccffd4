//! The two resource limits: processes (with fork tokens) and anonymous
//! memory (a ledger per address space, summed over the sandbox).
//!
//! Lock order: a process's ledger, then the memory total; the process
//! count lock is never held while taking the index lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::index::{proc_stat, Process};

/// How long after a fork was answered its child may still be missing from
/// the process tree (the parent thread is still inside the call). Such
/// forks are added to a reconciled count; a fork is forgotten sooner when
/// its thread makes another trapped call.
const SETTLE: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------
// Process count
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct CountState {
    /// Processes believed to exist (running or zombie), the root included.
    committed: u32,
    /// Forks counted but not yet answered (tokens alive).
    pending: u32,
    /// Forks answered recently: (thread that forked, when).
    recent: Vec<(i32, Instant)>,
}

/// Counts the sandbox's processes against a limit.
///
/// A fork takes a [`ForkToken`] before it is answered; the token is
/// committed once the kernel accepted a `CONTINUE`, and rolled back
/// (dropped) on any other outcome, so each fork is counted exactly once.
/// Exits are not tracked one by one: a process is counted until it is
/// reaped, and the count is reconciled with the real process tree when a
/// fork would hit the limit.
#[derive(Debug)]
pub struct ProcessCounter {
    /// Only ever lowered (see [`lower_limit`](Self::lower_limit)).
    limit: std::sync::atomic::AtomicU32,
    root: i32,
    /// The sandbox's cgroup, if one holds it.
    members: Option<crate::sys::cgroup::Members>,
    state: Mutex<CountState>,
    reconciles: AtomicU64,
}

impl ProcessCounter {
    /// A counter for the sandbox rooted at `root`, which counts as one.
    pub fn new(limit: u32, root: i32) -> Arc<Self> {
        Self::with_members(limit, root, None)
    }

    /// A counter whose reconciliation finds the sandbox's processes in
    /// `members` (its cgroup, which holds every process from its creation,
    /// wherever it moved in the process tree) rather than by a scan for
    /// the root's process group, which a `setsid` leaves.
    pub(crate) fn with_members(
        limit: u32,
        root: i32,
        members: Option<crate::sys::cgroup::Members>,
    ) -> Arc<Self> {
        Arc::new(ProcessCounter {
            members,
            limit: std::sync::atomic::AtomicU32::new(limit),
            root,
            state: Mutex::new(CountState {
                committed: 1,
                pending: 0,
                recent: Vec::new(),
            }),
            reconciles: AtomicU64::new(0),
        })
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Lowers the limit to `n` (a higher value changes nothing).
    pub fn lower_limit(&self, n: u32) {
        self.limit.fetch_min(n, Ordering::AcqRel);
    }

    /// Processes counted now (existing ones, as last reconciled, plus forks
    /// in flight).
    pub fn current(&self) -> u32 {
        let st = self.state.lock();
        st.committed + st.pending
    }

    /// How many times the count was reconciled with the process tree.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// Takes a token for a fork by thread `tid`, or `None` at the limit.
    /// `known` lists processes of the index, used with the root to find
    /// every process of the sandbox when the count must be reconciled.
    pub fn try_take(
        self: &Arc<Self>,
        tid: i32,
        known: impl FnOnce() -> Vec<i32>,
    ) -> Option<ForkToken> {
        {
            let mut st = self.state.lock();
            // A thread that traps again has returned from its last fork.
            st.recent
                .retain(|&(t, at)| t != tid && at.elapsed() < SETTLE);
            if st.committed + st.pending < self.limit() {
                st.pending += 1;
                return Some(self.token(tid));
            }
        }
        // At the limit: count what really exists (zombies included). Forks
        // answered less than SETTLE ago may not have made their child yet,
        // or may have: rather than count them on top of what exists (twice,
        // mostly), let them settle first (at most SETTLE, only at the limit).
        let settle = {
            let st = self.state.lock();
            st.recent
                .iter()
                .filter(|&&(t, _)| t != tid)
                .map(|&(_, at)| SETTLE.saturating_sub(at.elapsed()))
                .max()
        };
        if let Some(d) = settle.filter(|d| !d.is_zero()) {
            std::thread::sleep(d);
        }
        let mut roots = known();
        roots.push(self.root);
        match &self.members {
            // Every live process of the sandbox, orphaned and in a session
            // of its own or not; zombies are found as their parents'
            // children by the tree walk.
            Some(m) => roots.extend(m.pids()),
            // Orphans of the sandbox (reparented out of its tree) that
            // never trapped are still in its process group, unless they
            // left it (setsid): without a cgroup those are not seen.
            None => roots.extend(group_members(self.root)),
        }
        let existing = count_tree(&roots);
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state.lock();
        st.recent
            .retain(|&(t, at)| t != tid && at.elapsed() < SETTLE);
        st.committed = (existing + st.recent.len() as u32).max(1);
        log::debug!(
            "process count reconciled: {} existing, {} settling, {} in flight (limit {})",
            existing,
            st.recent.len(),
            st.pending,
            self.limit()
        );
        if st.committed + st.pending < self.limit() {
            st.pending += 1;
            Some(self.token(tid))
        } else {
            None
        }
    }

    fn token(self: &Arc<Self>, tid: i32) -> ForkToken {
        ForkToken {
            counter: Arc::clone(self),
            tid,
            armed: true,
        }
    }

    fn commit(&self, tid: i32) {
        let mut st = self.state.lock();
        st.pending -= 1;
        st.committed += 1;
        st.recent.push((tid, Instant::now()));
    }

    fn rollback(&self) {
        let mut st = self.state.lock();
        st.pending -= 1;
    }
}

/// One counted fork, not yet delivered. [`commit`](Self::commit) it once
/// the kernel took the `CONTINUE`; dropping it rolls the count back. Either
/// happens exactly once.
#[derive(Debug)]
pub struct ForkToken {
    counter: Arc<ProcessCounter>,
    tid: i32,
    armed: bool,
}

impl ForkToken {
    /// The fork was delivered: it stays counted.
    pub fn commit(mut self) {
        self.armed = false;
        self.counter.commit(self.tid);
    }
}

impl Drop for ForkToken {
    fn drop(&mut self) {
        if self.armed {
            self.counter.rollback();
        }
    }
}

/// Counts the processes (running or zombie) in the trees rooted at
/// `roots`, following `/proc/<pid>/task/<tid>/children`.
pub fn count_tree(roots: &[i32]) -> u32 {
    let mut seen = HashSet::new();
    let mut stack: Vec<i32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if pid <= 0 || seen.contains(&pid) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // reaped
        };
        seen.insert(pid);
        for task in tasks.flatten() {
            let mut path = task.path();
            path.push("children");
            if let Ok(list) = std::fs::read_to_string(&path) {
                stack.extend(
                    list.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    seen.len() as u32
}

/// The processes of process group `pgid` (a scan of `/proc`).
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the command's last ')': state, ppid, pgrp.
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_ascii_whitespace().nth(2))
                .and_then(|g| g.parse::<i32>().ok())
                == Some(pgid)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// What one address space has been charged.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Bytes charged to this address space.
    pub charged: u64,
    /// Part of `charged` that is shared anonymous memory, which
    /// `/proc/<pid>/statm` does not show as data.
    pub shared_anon: u64,
    /// The program break as last set, if known.
    pub brk: Option<u64>,
    /// Something was credited (or reset) since the ledger last matched the
    /// kernel's view: re-read it before the next charge.
    pub dirty: bool,
}

/// The sandbox-wide anonymous-memory limit.
#[derive(Debug)]
pub struct MemoryLimit {
    /// Only ever lowered (see [`lower_limit`](Self::lower_limit)).
    limit: AtomicU64,
    total: Mutex<u64>,
}

/// The outcome of a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Within the limit; charged.
    Allowed,
    /// Over the limit; nothing charged.
    Refused,
}

impl MemoryLimit {
    /// A limit of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        MemoryLimit {
            limit: AtomicU64::new(limit),
            total: Mutex::new(0),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    /// Lowers the limit to `bytes` (a higher value changes nothing).
    pub fn lower_limit(&self, bytes: u64) {
        self.limit.fetch_min(bytes, Ordering::AcqRel);
    }

    /// Bytes charged over the whole sandbox.
    pub fn total(&self) -> u64 {
        *self.total.lock()
    }

    /// Charges `bytes` to `proc` (shared anonymous memory if `shared`).
    pub fn charge(&self, proc: &Process, bytes: u64, shared: bool) -> Charge {
        let mut l = proc.mem.lock();
        if l.dirty {
            // Credits are taken on trust; the kernel's count of private
            // writable memory keeps them honest.
            if let Some(seen) = statm_data(proc.key().pid) {
                if seen > l.charged {
                    self.adjust(&mut l, seen);
                }
            }
            l.dirty = false;
        }
        if self.total() + bytes > self.limit() {
            // Before refusing, correct an over-estimate (a failed call, a
            // mapping placed over another) with a fresh reading.
            if let Some(seen) = statm_data(proc.key().pid) {
                let now = seen + l.shared_anon;
                self.adjust(&mut l, now);
            }
        }
        let mut total = self.total.lock();
        if *total + bytes > self.limit() {
            return Charge::Refused;
        }
        *total += bytes;
        l.charged += bytes;
        if shared {
            l.shared_anon += bytes;
        }
        Charge::Allowed
    }

    /// Credits up to `bytes` to `proc` (what it frees).
    pub fn credit(&self, proc: &Process, bytes: u64) {
        let mut l = proc.mem.lock();
        let bytes = bytes.min(l.charged);
        l.charged -= bytes;
        l.shared_anon = l.shared_anon.min(l.charged);
        l.dirty = true;
        let mut total = self.total.lock();
        *total = total.saturating_sub(bytes);
    }

    /// Forgets what `proc` was charged: it exec'd (`dirty` stays set, so
    /// a failed exec cannot be used to launder a footprint) or exited.
    pub fn reset(&self, proc: &Process) {
        let mut l = proc.mem.lock();
        let bytes = l.charged;
        *l = Ledger {
            dirty: true,
            ..Ledger::default()
        };
        let mut total = self.total.lock();
        *total = total.saturating_sub(bytes);
    }

    /// Moves `proc`'s program break to `addr`: growth is charged, shrinking
    /// credited. An unknown break is taken to be `start_brk`.
    pub fn set_brk(&self, proc: &Process, addr: u64) -> Charge {
        let known = proc.mem.lock().brk;
        let Some(cur) = known.or_else(|| start_brk(proc.key().pid)) else {
            return Charge::Allowed;
        };
        let (old, new) = (page_up(cur), page_up(addr));
        if new > old {
            let c = self.charge(proc, new - old, false);
            if c == Charge::Allowed {
                proc.mem.lock().brk = Some(addr);
            }
            c
        } else {
            if new < old {
                self.credit(proc, old - new);
            }
            proc.mem.lock().brk = Some(addr);
            Charge::Allowed
        }
    }

    fn adjust(&self, l: &mut Ledger, to: u64) {
        let mut total = self.total.lock();
        *total = total.saturating_sub(l.charged) + to;
        l.charged = to;
        l.shared_anon = l.shared_anon.min(to);
    }
}

/// Private writable memory of `pid` (data + stack), in bytes, from
/// `/proc/<pid>/statm`.
pub fn statm_data(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(5)?.parse().ok()?;
    Some(pages * page_size())
}

/// The initial program break of `pid` (`start_brk`, from `/proc/<pid>/stat`).
pub fn start_brk(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start_brk)
}

/// The system page size, from the auxiliary vector.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        const AT_PAGESZ: u64 = 6;
        let aux = std::fs::read("/proc/self/auxv").unwrap_or_default();
        aux.chunks_exact(16)
            .map(|c| {
                let k = u64::from_ne_bytes(c[..8].try_into().expect("8 bytes"));
                let v = u64::from_ne_bytes(c[8..].try_into().expect("8 bytes"));
                (k, v)
            })
            .find(|&(k, _)| k == AT_PAGESZ)
            .map(|(_, v)| v)
            .filter(|v| v.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// `len` rounded up to whole pages (saturating).
pub fn page_up(len: u64) -> u64 {
    let p = page_size();
    len.checked_add(p - 1).map_or(!(p - 1), |v| v & !(p - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roll_back_exactly_once() {
        let c = ProcessCounter::new(3, std::process::id() as i32);
        let a = c.try_take(1, Vec::new).expect("slot");
        let b = c.try_take(2, Vec::new).expect("slot");
        assert_eq!(c.current(), 3);
        drop(b); // not delivered
        assert_eq!(c.current(), 2);
        a.commit();
        assert_eq!(c.current(), 2);
    }

    #[test]
    fn page_rounding() {
        let p = page_size();
        assert_eq!(page_up(1), p);
        assert_eq!(page_up(p), p);
        assert_eq!(page_up(0), 0);
    }

    #[test]
    fn this_process_tree_counts_itself() {
        assert!(count_tree(&[std::process::id() as i32]) >= 1);
        assert_eq!(count_tree(&[-1]), 0);
        let me = std::process::id() as i32;
        let pgid = crate::handler::thread_group_of(me).map(|_| {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            let rest = &stat[stat.rfind(')').unwrap() + 1..];
            rest.split_ascii_whitespace()
                .nth(2)
                .unwrap()
                .parse::<i32>()
                .unwrap()
        });
        assert!(group_members(pgid.unwrap()).contains(&me));
    }
}
