//! The two resource limits: processes (with fork tokens) and, where no
//! memory cgroup holds the sandbox, writable memory (an estimate charged
//! at the calls that grow it, corrected from `/proc`).
//!
//! Lock order: a process's ledger, then the memory total; neither is held
//! while the sandbox is counted (which reads the index), and the process
//! count lock is never held while taking the index lock.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::index::{proc_stat, Process};

// ---------------------------------------------------------------------------
// Process count
// ---------------------------------------------------------------------------

/// A fork delivered whose child has not been seen yet. The kernel may
/// still be copying the parent (a large address space takes long): the
/// child is then in neither the process tree nor the cgroup, so a recount
/// adds it on top of what it finds, for as long as it takes. Never expired
/// by time.
#[derive(Debug, Clone)]
struct Unseen {
    /// Tells it apart from the others (a recount checks a copy).
    serial: u64,
    /// The thread that forked.
    tid: i32,
    /// That thread when the fork was trapped.
    before: BeforeFork,
}

/// A forking thread as it was when its fork was trapped (so before the
/// fork ran), as far as it could be read.
#[derive(Debug, Clone, Default)]
struct BeforeFork {
    /// Its children: a child not among them is the fork's. (Not its user
    /// CPU time: the kernel reports it scaled from the total, which grows
    /// inside the fork too.)
    children: Option<Vec<i32>>,
}

impl BeforeFork {
    fn of(tid: i32) -> BeforeFork {
        BeforeFork {
            children: thread_children(tid).ok(),
        }
    }
}

#[derive(Debug)]
struct CountState {
    /// Processes believed to exist (running or zombie), the root included,
    /// the [`unseen`](Self::unseen) children included.
    committed: u32,
    /// Forks counted but not yet answered (tokens alive).
    pending: u32,
    /// Forks delivered whose child no recount has seen yet.
    unseen: Vec<Unseen>,
    /// The next [`Unseen::serial`].
    serial: u64,
}

/// Counts the sandbox's processes against a limit.
///
/// A fork takes a [`ForkToken`] before it is answered; the token is
/// committed once the kernel accepted a `CONTINUE`, and rolled back
/// (dropped) on any other outcome, so each fork is counted exactly once.
/// Exits are not tracked one by one: a process is counted until it is
/// reaped, and the count is replaced by a recount of the real sandbox
/// (its cgroup and process tree) when a fork would hit the limit. A
/// delivered fork whose child is not in the tree yet stays counted on top
/// of the recount until its child is seen: the forking thread made another
/// trapped call, is gone or is blocked in another call (the fork returned), or it has a child it did not have before. A recount that cannot read everything it needs is no
/// count: the fork is refused and the count kept.
#[derive(Debug)]
pub struct ProcessCounter {
    /// Only ever lowered (see [`lower_limit`](Self::lower_limit)).
    limit: std::sync::atomic::AtomicU32,
    root: i32,
    /// The sandbox's cgroup, if one holds it.
    members: Option<crate::sys::cgroup::Members>,
    state: Mutex<CountState>,
    reconciles: AtomicU64,
    /// A recount failed and was told (once per sandbox).
    told_unreadable: AtomicBool,
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
                unseen: Vec::new(),
                serial: 0,
            }),
            reconciles: AtomicU64::new(0),
            told_unreadable: AtomicBool::new(false),
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

    /// Takes a token for a fork by thread `tid` (trapped, so not running),
    /// or `None` at the limit. `known` lists processes of the index, used
    /// with the root to find every process of the sandbox when the count
    /// must be reconciled.
    pub fn try_take(
        self: &Arc<Self>,
        tid: i32,
        known: impl FnOnce() -> Vec<i32>,
    ) -> Option<ForkToken> {
        // Read before the fork runs (the thread waits for its answer).
        let before = BeforeFork::of(tid);
        let (checking, checked_up_to) = {
            let mut st = self.state.lock();
            // A thread that traps again has returned from its last fork,
            // whose child is in the tree now (or was never made).
            st.unseen.retain(|u| u.tid != tid);
            if st.committed + st.pending < self.limit() {
                st.pending += 1;
                return Some(self.token(tid, before));
            }
            (st.unseen.clone(), st.serial)
        };
        // At the limit: count what really exists (zombies included). The
        // children of forks not seen yet are looked for first: one that
        // appears after its fork was looked at is counted twice (on top,
        // and in the tree), never not at all.
        let recount = (|| -> io::Result<(u32, Vec<u64>)> {
            let mut seen = Vec::new();
            for u in &checking {
                if child_seen(u)? {
                    seen.push(u.serial);
                }
            }
            let mut roots = known();
            roots.push(self.root);
            match &self.members {
                // Every live process of the sandbox, orphaned and in a
                // session of its own or not; zombies are found as their
                // parents' children by the tree walk.
                Some(m) => roots.extend(m.try_pids()?),
                // Orphans of the sandbox (reparented out of its tree) that
                // never trapped are still in its process group, unless they
                // left it (setsid): without a cgroup those are not seen
                // (the sandbox refuses a process limit without one).
                None => roots.extend(walk_group(self.root, true)?),
            }
            Ok((walk_tree(&roots, true)?.len() as u32, seen))
        })();
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let (existing, seen) = match recount {
            Ok(r) => r,
            Err(e) => {
                // Relaxed: only says whether this was told already.
                if !self.told_unreadable.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "cannot count the sandbox's processes ({e}): forks at the process limit are refused until a count succeeds (is the supervisor short of file descriptors? raise its RLIMIT_NOFILE)"
                    );
                }
                return None;
            }
        };
        // Those looked at and not seen count on top even if their thread
        // trapped again since, or another recount saw them since: their
        // child may have appeared after the tree was read. Those delivered
        // since count on top too.
        let not_seen = checking.len() - seen.len();
        let mut st = self.state.lock();
        st.unseen
            .retain(|u| u.tid != tid && !seen.contains(&u.serial));
        let since = st
            .unseen
            .iter()
            .filter(|u| u.serial > checked_up_to)
            .count();
        st.committed = existing.max(1) + (not_seen + since) as u32;
        log::debug!(
            "process count reconciled: {} existing, {} forked and not seen yet, {} in flight (limit {})",
            existing,
            st.unseen.len(),
            st.pending,
            self.limit()
        );
        if st.committed + st.pending < self.limit() {
            st.pending += 1;
            Some(self.token(tid, before))
        } else {
            None
        }
    }

    fn token(self: &Arc<Self>, tid: i32, before: BeforeFork) -> ForkToken {
        ForkToken {
            counter: Arc::clone(self),
            tid,
            before,
            armed: true,
        }
    }

    fn commit(&self, tid: i32, before: BeforeFork) {
        let mut st = self.state.lock();
        st.pending -= 1;
        st.committed += 1;
        st.serial += 1;
        let serial = st.serial;
        st.unseen.push(Unseen {
            serial,
            tid,
            before,
        });
    }

    fn rollback(&self) {
        let mut st = self.state.lock();
        st.pending -= 1;
    }
}

/// Whether an error reading `/proc` means that the process or thread is
/// gone (rather than that the read could not be made).
fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH))
}

/// The children of thread `tid` (those it forked, still its own).
fn thread_children(tid: i32) -> io::Result<Vec<i32>> {
    let list = crate::sys::procfs::read_text(&format!("/proc/{tid}/task/{tid}/children"))?;
    Ok(list
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Whether the child of the delivered fork `u` exists (or never will):
/// its thread is gone or a zombie, or blocked in a call other than a fork
/// (its fork is over), or it has a child it did not have when the fork
/// was trapped. Error: a file could not be read (not for a permission).
fn child_seen(u: &Unseen) -> io::Result<bool> {
    let path = format!("/proc/{0}/task/{0}/stat", u.tid);
    let stat = match crate::sys::procfs::read_rendered(&path) {
        Ok(s) => s,
        Err(e) if is_gone(&e) => return Ok(true),
        Err(e) => return Err(e),
    };
    let stat = crate::sys::procfs::Stat::parse(&stat);
    if stat.is_none_or(|s| matches!(s.state, b'Z' | b'X')) {
        return Ok(true);
    }
    // Blocked in another call, or outside any (a stop): the fork is over.
    // Running, in a fork call, or not ours to read: the children tell.
    match crate::sys::procfs::read_text(&format!("/proc/{0}/task/{0}/syscall", u.tid)) {
        Ok(text) => {
            let nr = text
                .split_ascii_whitespace()
                .next()
                .and_then(|f| f.parse::<i64>().ok());
            if nr.is_some_and(|nr| !is_fork_call(nr)) {
                return Ok(true);
            }
        }
        Err(e) if is_gone(&e) => return Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {}
        Err(e) => return Err(e),
    }
    let now = match thread_children(u.tid) {
        Ok(now) => now,
        Err(e) if is_gone(&e) => return Ok(true),
        Err(e) => return Err(e),
    };
    Ok(u.before
        .children
        .as_ref()
        .is_some_and(|before| now.iter().any(|p| !before.contains(p))))
}

/// Whether system call `nr` can make a process (this architecture's
/// numbers: a thread in one may still be making its child).
fn is_fork_call(nr: i64) -> bool {
    // Resolved once: a recount at the limit asks for every fork not seen
    // yet, and a name this architecture lacks (`fork` on aarch64) costs an
    // allocated error at each resolve.
    static FORKS: std::sync::OnceLock<Vec<i64>> = std::sync::OnceLock::new();
    FORKS
        .get_or_init(|| {
            ["clone", "clone3", "fork", "vfork"]
                .iter()
                .filter_map(|name| crate::syscalls::resolve(name).ok())
                .map(i64::from)
                .collect()
        })
        .contains(&nr)
}

/// One counted fork, not yet delivered. [`commit`](Self::commit) it once
/// the kernel took the `CONTINUE`; dropping it rolls the count back. Either
/// happens exactly once.
#[derive(Debug)]
pub struct ForkToken {
    counter: Arc<ProcessCounter>,
    tid: i32,
    /// The forking thread before the fork.
    before: BeforeFork,
    armed: bool,
}

impl ForkToken {
    /// The fork was delivered: it stays counted.
    pub fn commit(mut self) {
        self.armed = false;
        self.counter
            .commit(self.tid, std::mem::take(&mut self.before));
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
#[cfg(test)]
pub fn count_tree(roots: &[i32]) -> u32 {
    tree_pids(roots).len() as u32
}

/// The processes of process group `pgid` (a scan of `/proc`; what can be
/// read of it).
pub fn group_members(pgid: i32) -> Vec<i32> {
    walk_group(pgid, false).unwrap_or_default()
}

/// The processes of process group `pgid`; `strict`: an error if any of
/// `/proc` could not be read (a process gone meanwhile is not an error).
fn walk_group(pgid: i32, strict: bool) -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let e = match e {
            Ok(e) => e,
            Err(e) if strict => return Err(e),
            Err(_) => continue,
        };
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        match crate::sys::procfs::read_rendered(&format!("/proc/{pid}/stat")) {
            Ok(text) => {
                if crate::sys::procfs::Stat::parse(&text).and_then(|s| s.pgrp()) == Some(pgid) {
                    out.push(pid);
                }
            }
            Err(e) if strict && !is_gone(&e) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(out)
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
        for m in crate::sys::procfs::mappings(&maps).flatten() {
            let p = m.perms;
            if p.len() < 4 || p[1] != b'w' {
                continue;
            }
            let len = m.end.saturating_sub(m.start);
            if p[3] == b's' {
                let key = (m.dev_text.to_owned(), m.ino);
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

/// Every process (running or zombie) in the trees rooted at `roots` (what
/// can be read of them).
pub fn tree_pids(roots: &[i32]) -> Vec<i32> {
    walk_tree(roots, false).unwrap_or_default()
}

/// Every process (running or zombie) in the trees rooted at `roots`;
/// `strict`: an error if a list could not be read (a process or thread
/// gone meanwhile is not an error).
fn walk_tree(roots: &[i32], strict: bool) -> io::Result<Vec<i32>> {
    let mut seen = HashSet::new();
    let mut stack: Vec<i32> = roots.to_vec();
    let fail = |e: io::Error| -> io::Result<()> {
        if strict && !is_gone(&e) {
            Err(e)
        } else {
            Ok(())
        }
    };
    while let Some(pid) = stack.pop() {
        if pid <= 0 || seen.contains(&pid) {
            continue;
        }
        let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(t) => t,
            Err(e) => {
                fail(e)?;
                continue;
            }
        };
        seen.insert(pid);
        for task in tasks {
            let task = match task {
                Ok(t) => t,
                Err(e) => {
                    fail(e)?;
                    continue;
                }
            };
            let mut path = task.path();
            path.push("children");
            match std::fs::read_to_string(&path) {
                Ok(list) => stack.extend(
                    list.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                ),
                Err(e) => fail(e)?,
            }
        }
    }
    Ok(seen.into_iter().collect())
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
