//! The per-process network restrictions the policy callback makes
//! (`restrict_process_network`), by process, each held with a pidfd of its
//! process: a pid reused by another process never names one, and a
//! network check costs a table lookup and a signal-0 probe, no `/proc`
//! walk. A restriction reaches the processes below its process when it is
//! made (one walk of `/proc` then), and each process created later at its
//! creation (`forks`: the new process is added here before it runs).
//! Used by `context` (the callback's changes, the network check), `forks`
//! and the policy's take-over of fork-like calls.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::RwLock;

use crate::sys::{pidfd, procfs, signals};

/// Most processes below a newly restricted one that are restricted with it.
const MAX_DESCENDANTS: usize = 4096;
/// Entries beyond which those of gone processes are dropped.
const PRUNE_AT: usize = 1024;
/// Thread ids remembered (non-leader threads of processes seen); the table
/// is emptied beyond this.
const MAX_THREADS: usize = 4096;
/// How long a fork answered without tracing may take to put its child in
/// the process tree (see [`Restrictions::fork_decided`]).
const FORK_SETTLE: Duration = Duration::from_millis(20);

/// The per-process restrictions of one supervisor.
#[derive(Debug)]
pub(crate) struct Restrictions {
    /// Set (before the first entry is added) once any process is
    /// restricted: until then a check is this one load. `SeqCst`, paired
    /// with the load in [`nets_of_task`](Self::nets_of_task) and in the
    /// fork take-over: a fork decided after the first restriction sees it.
    any: AtomicBool,
    table: RwLock<Table>,
    /// When a fork was last decided (nanoseconds since `epoch`, 0: never),
    /// for [`settle_forks`](Self::settle_forks).
    last_fork_decided: AtomicU64,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Table {
    /// Restricted processes, by process id.
    processes: HashMap<i32, Entry>,
    /// Threads seen that do not lead their process: thread id → process
    /// id, checked with `tgkill` at each use.
    threads: HashMap<i32, i32>,
}

/// One restricted process.
#[derive(Debug)]
struct Entry {
    /// Its process: while a signal 0 reaches it, the pid names it.
    pidfd: OwnedFd,
    /// Its destinations must lie in one of these.
    nets: Vec<IpNet>,
}

impl Entry {
    fn alive(&self) -> bool {
        probe(pidfd::pidfd_send_signal(self.pidfd.as_fd(), 0))
    }
}

/// Whether a signal-0 probe found its target (`EPERM`: it exists, under
/// another user).
fn probe(r: std::io::Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

impl Default for Restrictions {
    fn default() -> Self {
        Restrictions {
            any: AtomicBool::new(false),
            table: RwLock::new(Table::default()),
            last_fork_decided: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Restrictions {
    /// Whether any process was ever restricted.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::SeqCst)
    }

    /// The networks task `tid`'s process is restricted to, if any.
    pub(crate) fn nets_of_task(&self, tid: i32) -> Option<Vec<IpNet>> {
        if !self.any() {
            return None;
        }
        match self.process_of(tid) {
            Some(tgid) => self.nets_of(tgid),
            // Gone (its call gets no answer), or unreadable: refused.
            None => Some(Vec::new()),
        }
    }

    /// The networks process `tgid` is restricted to, if any.
    pub(crate) fn nets_of(&self, tgid: i32) -> Option<Vec<IpNet>> {
        {
            let table = self.table.read();
            let entry = table.processes.get(&tgid)?;
            if entry.alive() {
                return Some(entry.nets.clone());
            }
        }
        // Gone: its pid may name another process now.
        let mut table = self.table.write();
        if table.processes.get(&tgid).is_some_and(|e| !e.alive()) {
            table.processes.remove(&tgid);
        }
        None
    }

    /// The process of task `tid`: itself if it leads its thread group (one
    /// `tgkill` probe), else the one remembered for it (probed), else
    /// from `/proc`. `None`: gone.
    pub(crate) fn process_of(&self, tid: i32) -> Option<i32> {
        if probe(signals::send_to_thread(Some(tid), tid, 0)) {
            return Some(tid);
        }
        let known = self.table.read().threads.get(&tid).copied();
        if let Some(tgid) = known {
            if probe(signals::send_to_thread(Some(tgid), tid, 0)) {
                return Some(tgid);
            }
        }
        let tgid = procfs::thread_group_of(tid)?;
        let mut table = self.table.write();
        if table.threads.len() >= MAX_THREADS {
            table.threads.clear();
        }
        table.threads.insert(tid, tgid);
        Some(tgid)
    }

    /// Restricts process `tgid` to `nets` (to what both admit, if it is
    /// restricted already); returns what it is restricted to now, `None`
    /// if it is gone.
    pub(crate) fn restrict(&self, tgid: i32, nets: &[IpNet]) -> Option<Vec<IpNet>> {
        let fd = pidfd::pidfd_open(tgid, 0).ok()?;
        // Before the entry: a check or fork decision that misses the
        // entry loaded `false` before this store.
        self.any.store(true, Ordering::SeqCst);
        let mut table = self.table.write();
        let nets = match table.processes.get(&tgid).filter(|e| e.alive()) {
            Some(old) => intersect(&old.nets, nets),
            None => nets.to_vec(),
        };
        if table.processes.len() >= PRUNE_AT {
            table.processes.retain(|_, e| e.alive());
        }
        table.processes.insert(
            tgid,
            Entry {
                pidfd: fd,
                nets: nets.clone(),
            },
        );
        Some(nets)
    }

    /// Restricts `tgid` to `nets`, and every process below it to what
    /// `tgid` is restricted to then; then, if a fork was decided just
    /// before (untraced, maybe, its child not in the tree yet), waits for
    /// it and restricts what is below `tgid` again. `false` if `tgid` is
    /// gone.
    pub(crate) fn restrict_tree(&self, tgid: i32, nets: &[IpNet]) -> bool {
        let Some(nets) = self.restrict(tgid, nets) else {
            return false;
        };
        let restrict_below = || {
            for pid in procfs::descendants(tgid, MAX_DESCENDANTS) {
                self.restrict(pid, &nets);
            }
        };
        restrict_below();
        if self.settle_forks() {
            restrict_below();
        }
        true
    }

    /// Adds `child`, a new process still stopped before its first
    /// instruction, with `nets`.
    pub(crate) fn inherit(&self, child: i32, nets: &[IpNet]) {
        if self.restrict(child, nets).is_none() {
            log::debug!("policy: new process {child} is gone before it was recorded");
        }
    }

    /// A fork is being decided: unless its caller is found restricted, it
    /// is let through untraced. Called before the caller is looked up
    /// (`SeqCst`, paired with the store of `any` and the load in
    /// [`settle_forks`](Self::settle_forks): a restriction that the lookup
    /// missed sees this fork).
    pub(crate) fn fork_decided(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.last_fork_decided.store(now.max(1), Ordering::SeqCst);
    }

    /// If a fork was let through untraced less than [`FORK_SETTLE`] ago
    /// (decided before a restriction just made, its child may not be in
    /// the tree yet), waits until that long has passed; `true` if it did.
    fn settle_forks(&self) -> bool {
        // After the restriction's entry (see `fork_decided`).
        let last = self.last_fork_decided.load(Ordering::SeqCst);
        if last == 0 {
            return false;
        }
        let since = self
            .epoch
            .elapsed()
            .saturating_sub(Duration::from_nanos(last));
        if since >= FORK_SETTLE {
            return false;
        }
        std::thread::sleep(FORK_SETTLE - since);
        true
    }
}

/// The networks admitted by both `a` and `b`.
pub(crate) fn intersect(a: &[IpNet], b: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if x.contains(y) {
                out.push(*y);
            } else if y.contains(x) {
                out.push(*x);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_thread_is_found_as_its_process_and_a_gone_entry_is_dropped() {
        let r = Restrictions::default();
        let me = std::process::id() as i32;
        assert_eq!(r.nets_of_task(me), None, "nothing restricted: no lookup");
        let parked = crate::sys::process::ParkedThread::start();
        assert_eq!(r.process_of(parked.tid), Some(me));
        assert_eq!(r.process_of(me), Some(me));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kid = child.id() as i32;
        assert!(r.restrict(kid, &nets(&["10.0.0.0/8"])).is_some());
        assert_eq!(r.nets_of(kid), Some(nets(&["10.0.0.0/8"])));
        assert_eq!(r.nets_of_task(parked.tid), None, "another process");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(r.nets_of(kid), None, "gone: its pid names nothing now");
        assert!(r.table.read().processes.is_empty());
        assert!(
            r.restrict(kid, &[]).is_none(),
            "a gone process keeps nothing"
        );
        drop(parked);
    }
}
