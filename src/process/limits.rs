//! The two resource limits: processes (with fork tokens) and, where no
//! memory cgroup holds the sandbox, writable memory (an estimate charged
//! at the calls that grow it, corrected from `/proc`).
//!
//! Lock order: a process's ledger, then the memory total; neither is held
//! while the sandbox is counted (which reads the index), and the process
//! count lock is never held while taking the index lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    #[cfg(test)]
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
    tree_pids(roots).len() as u32
}

/// The processes of process group `pgid` (a scan of `/proc`).
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| crate::sys::procfs::Stat::of(pid).and_then(|s| s.pgrp()) == Some(pgid))
        .collect()
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// What one address space has been charged since the last count of the
/// whole sandbox (its epoch).
#[derive(Debug, Default)]
pub struct Ledger {
    /// Bytes charged to this address space since `epoch`.
    pub charged: u64,
    /// Part of `charged` that is shared memory, which may outlive the
    /// process (other processes map it, or it is a file or a segment).
    pub shared: u64,
    /// The program break as last set, if known.
    pub brk: Option<u64>,
    /// The count of the whole sandbox this ledger follows.
    pub epoch: u64,
}

/// The sandbox-wide memory limit when no memory cgroup holds the sandbox:
/// a running estimate, charged at each call that can make memory
/// writable, and corrected only from the kernel's own figures.
///
/// - A call that can grow what the sandbox may write (`mmap`, `mprotect`,
///   `mremap`, `brk` with write access; `shmget` creating a segment; a
///   fork, whose child gets a copy-on-write image of its parent's private
///   writable memory) is charged its size, virtually: untouched memory
///   counts, since it can be touched later without any call.
/// - Nothing is credited on the program's word: `munmap` of memory never
///   charged (a hole) would wipe a real charge. Only an exit credits, and
///   only what that process was charged since the last count, privately.
/// - When a charge would go over, the whole sandbox is counted from
///   `/proc` ([`sandbox_writable_memory`]) and the estimate replaced by the
///   count (a new epoch): the call is refused only if the count says so.
///
/// What this cannot see: tmpfs files written without being mapped, and
/// SysV segments left by processes that are gone. A memory cgroup counts
/// those.
#[derive(Debug)]
pub struct MemoryLimit {
    /// Only ever lowered (see [`lower_limit`](Self::lower_limit)).
    limit: AtomicU64,
    /// The estimate, and the epoch of the last count.
    state: Mutex<(u64, u64)>,
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
            state: Mutex::new((0, 1)),
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

    /// The estimate of what the sandbox may write, in bytes.
    pub fn total(&self) -> u64 {
        self.state.lock().0
    }

    /// Charges `bytes` to `proc` (`shared`: memory that may outlive it).
    /// Over the limit, `count` counts the whole sandbox from the kernel's
    /// figures before refusing.
    pub fn charge(
        &self,
        proc: &Process,
        bytes: u64,
        shared: bool,
        count: impl FnOnce() -> u64,
    ) -> Charge {
        let before = {
            let mut l = proc.mem.lock();
            let mut st = self.state.lock();
            if l.epoch != st.1 {
                // Counted since: what it was charged is in the count.
                l.charged = 0;
                l.shared = 0;
                l.epoch = st.1;
            }
            if st.0.saturating_add(bytes) <= self.limit() {
                st.0 += bytes;
                l.charged += bytes;
                if shared {
                    l.shared += bytes;
                }
                return Charge::Allowed;
            }
            st.0
        };
        // Over: count the sandbox, holding no ledger (the count reads the
        // index). Charges made meanwhile may not show in the count yet:
        // they are kept on top of it.
        let counted = count();
        let mut l = proc.mem.lock();
        let mut st = self.state.lock();
        let meanwhile = st.0.saturating_sub(before);
        st.1 += 1;
        st.0 = counted.saturating_add(meanwhile);
        l.charged = 0;
        l.shared = 0;
        l.epoch = st.1;
        log::debug!(
            "memory counted: {counted} bytes writable in the sandbox (+{meanwhile} charged meanwhile), {bytes} asked, limit {}",
            self.limit()
        );
        if st.0.saturating_add(bytes) > self.limit() {
            return Charge::Refused;
        }
        st.0 += bytes;
        l.charged += bytes;
        if shared {
            l.shared += bytes;
        }
        Charge::Allowed
    }

    /// `proc` exited: its private memory, charged since the last count, is
    /// freed by the kernel. (Its shared memory may live on, and what it
    /// had before the count is in the count: neither is credited.)
    pub fn exited(&self, proc: &Process) {
        let mut l = proc.mem.lock();
        let mut st = self.state.lock();
        if l.epoch == st.1 {
            st.0 = st.0.saturating_sub(l.charged - l.shared);
        }
        *l = Ledger::default();
    }

    /// Moves `proc`'s program break to `addr`: growth is charged; a
    /// shrink is not credited (the count will see it). An unknown break is
    /// taken to be `start_brk`.
    pub fn set_brk(&self, proc: &Process, addr: u64, count: impl FnOnce() -> u64) -> Charge {
        let known = proc.mem.lock().brk;
        let Some(cur) = known.or_else(|| start_brk(proc.key().pid)) else {
            return Charge::Allowed;
        };
        let (old, new) = (page_up(cur), page_up(addr));
        let c = if new > old {
            self.charge(proc, new - old, false, count)
        } else {
            Charge::Allowed
        };
        if c == Charge::Allowed {
            proc.mem.lock().brk = Some(addr);
        }
        c
    }
}

/// What the processes `pids` may write, from the kernel's figures: every
/// writable private mapping (touched or not: it can be touched without a
/// call), every writable shared object once (by device and inode, at the
/// largest length mapped), and the SysV segments they made that no one
/// has attached.
pub fn sandbox_writable_memory(pids: &[i32]) -> u64 {
    let mut private = 0u64;
    let mut shared: std::collections::HashMap<(String, u64), u64> = Default::default();
    for &pid in pids {
        let Ok(maps) = crate::sys::procfs::read_text(&format!("/proc/{pid}/maps")) else {
            continue;
        };
        for line in maps.lines() {
            let mut f = line.split_ascii_whitespace();
            let (Some(range), Some(perms), _, Some(dev), Some(inode)) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let p = perms.as_bytes();
            if p.len() < 4 || p[1] != b'w' {
                continue;
            }
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                continue;
            };
            let len = b.saturating_sub(a);
            if p[3] == b's' {
                let key = (dev.to_owned(), inode.parse().unwrap_or(0));
                let e = shared.entry(key).or_default();
                *e = (*e).max(len);
            } else {
                private += len;
            }
        }
    }
    let mut segments = 0u64;
    if let Ok(text) = std::fs::read_to_string("/proc/sysvipc/shm") {
        // key shmid perms size cpid lpid nattch ...
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let (Some(size), Some(cpid), Some(nattch)) = (
                f.get(3).and_then(|v| v.parse::<u64>().ok()),
                f.get(4).and_then(|v| v.parse::<i32>().ok()),
                f.get(6).and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if nattch == 0 && pids.contains(&cpid) {
                segments += size;
            }
        }
    }
    private + shared.values().sum::<u64>() + segments
}

/// Every process (running or zombie) in the trees rooted at `roots`.
pub fn tree_pids(roots: &[i32]) -> Vec<i32> {
    let mut seen = HashSet::new();
    let mut stack: Vec<i32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if pid <= 0 || seen.contains(&pid) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
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
    seen.into_iter().collect()
}

/// Private writable memory of `pid` (data + stack), in bytes, from
/// `/proc/<pid>/statm`.
pub fn statm_data(pid: i32) -> Option<u64> {
    let text = crate::sys::procfs::read_text(&format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(5)?.parse().ok()?;
    Some(pages * page_size())
}

/// The initial program break of `pid` (`start_brk`, from `/proc/<pid>/stat`).
pub fn start_brk(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start_brk)
}

/// The system page size.
pub fn page_size() -> u64 {
    crate::sys::page_size() as u64
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
        let pgid = crate::sys::procfs::thread_group_of(me).map(|_| {
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
