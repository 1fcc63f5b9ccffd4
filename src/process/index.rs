//! The process index: every task that produced a notification, keyed by
//! thread id, pointing at the state of its process (shared by its threads).
//!
//! A process is identified by (pid, start time from `/proc/<pid>/stat`). A
//! thread-group leader's entry holds a process pidfd registered in the
//! poll thread's `mio::Poll`; its readiness removes the process and every
//! thread entry of it. For a known thread id the hot path checks that the
//! entry still names a live task, with one syscall, no `/proc` read, no
//! allocation: `pidfd_send_signal(fd, 0)` for a leader (a pid number is
//! recycled only after its task is reaped, so a recycled pid never
//! inherits an entry), `tgkill(tgid, tid, 0)` for another thread (`ESRCH`
//! once `tid` is no thread of that process: a recycled id elsewhere starts
//! afresh; one recycled within the same process names the same process).
//! Other threads hold no fd: one pidfd per thread ran a supervisor of a
//! program of a few thousand threads out of fds (`RLIMIT_NOFILE`), and its
//! trapped calls failed (`ESRCH`). Their entries go with their process, or
//! at the periodic sweep once the thread is gone.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use parking_lot::{Mutex, RwLock};

use crate::sys::pidfd;

use super::limits::Ledger;

/// Poll tokens from this value up name pidfds (below are the engine's).
pub const FIRST_TOKEN: usize = 16;

/// Identity of a process: a pid is reused, a (pid, start time) pair is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    /// Process id (thread-group id).
    pub pid: i32,
    /// Start time, in clock ticks since boot.
    pub start: u64,
}

/// Per-process state, shared by the process's threads.
#[derive(Debug)]
pub struct Process {
    key: ProcessKey,
    /// Anonymous memory charged to this address space.
    pub(crate) mem: Mutex<Ledger>,
    exited: AtomicBool,
}

impl Process {
    fn new(key: ProcessKey) -> Self {
        Process {
            key,
            mem: Mutex::new(Ledger::default()),
            exited: AtomicBool::new(false),
        }
    }

    /// The process's identity.
    pub fn key(&self) -> ProcessKey {
        self.key
    }

    /// Whether its exit has been seen.
    pub fn exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct Task {
    /// The thread's own start time (for the `/proc` check when no pidfd).
    start: u64,
    process: Arc<Process>,
    pidfd: Option<OwnedFd>,
    token: Option<usize>,
}

impl Task {
    fn is_leader(&self, tid: i32) -> bool {
        self.process.key.pid == tid
    }

    /// Whether `tid` still names this task.
    fn same_task(&self, tid: i32) -> bool {
        if self.process.exited() {
            return false;
        }
        match &self.pidfd {
            Some(fd) => pidfd::pidfd_send_signal(fd.as_fd(), 0).is_ok(),
            None if !self.is_leader(tid) => {
                // (`EPERM`: it is a thread of the process, of a user we
                // may not signal.)
                match crate::sys::signals::send_to_thread(Some(self.process.key.pid), tid, 0) {
                    Ok(()) => true,
                    Err(e) => e.raw_os_error() == Some(libc::EPERM),
                }
            }
            None => proc_stat(tid).map(|s| s.start) == Some(self.start),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<i32, Task>,
    tokens: HashMap<usize, i32>,
}

/// The process index. See the module documentation.
#[derive(Debug)]
pub struct ProcessIndex {
    inner: RwLock<Inner>,
    registry: Option<Registry>,
    next_token: AtomicUsize,
}

/// Fields of `/proc/<pid>/stat` the index uses.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// Start time (field 22).
    pub start: u64,
    /// Initial program break (field 47).
    pub start_brk: u64,
}

/// Reads `/proc/<pid>/stat` (the comm field may hold spaces and parentheses:
/// fields are counted after its last `)`).
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = crate::sys::procfs::Stat::of(pid)?;
    Some(ProcStat {
        start: stat.field(22)? as u64,
        start_brk: stat.field(47).unwrap_or(0) as u64,
    })
}

impl ProcessIndex {
    /// An index whose pidfds are watched by `registry` (`None`: only the
    /// periodic sweep notices exits).
    pub fn new(registry: Option<Registry>) -> Self {
        ProcessIndex {
            inner: RwLock::new(Inner::default()),
            registry,
            next_token: AtomicUsize::new(FIRST_TOKEN),
        }
    }

    /// Processes and threads known.
    pub fn len(&self) -> usize {
        self.inner.read().tasks.len()
    }

    /// The process of thread `tid`, if known and still the same task.
    pub fn get(&self, tid: i32) -> Option<Arc<Process>> {
        let inner = self.inner.read();
        let task = inner.tasks.get(&tid)?;
        task.same_task(tid).then(|| Arc::clone(&task.process))
    }

    /// The known processes (thread-group ids), for the process-count walk.
    pub fn pids(&self) -> Vec<i32> {
        let inner = self.inner.read();
        inner
            .tasks
            .iter()
            .filter(|(tid, t)| t.is_leader(**tid) && !t.process.exited())
            .map(|(tid, _)| *tid)
            .collect()
    }

    /// Registers thread `tid` if it is new (or its entry is stale) and
    /// returns its process. `pending` says whether the notification that
    /// brought `tid` is still waiting: checked after the pidfds are open,
    /// it proves they name the task that made the call. Processes whose
    /// stale entries were replaced are passed to `gone`.
    pub fn register(
        &self,
        tid: i32,
        pending: impl Fn() -> bool,
        gone: impl FnMut(Arc<Process>),
    ) -> Option<Arc<Process>> {
        if let Some(p) = self.get(tid) {
            return Some(p);
        }
        self.register_slow(tid, pending, gone)
    }

    fn register_slow(
        &self,
        tid: i32,
        pending: impl Fn() -> bool,
        mut gone: impl FnMut(Arc<Process>),
    ) -> Option<Arc<Process>> {
        // A process pidfd opens only for a thread-group leader.
        let (tgid, own_fd) = match pidfd::pidfd_open(tid, 0) {
            Ok(fd) => (tid, Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                log::debug!("task {tid} gone before it could be registered");
                return None;
            }
            // Not a leader (EINVAL, or ENOENT on newer kernels; a task that
            // is gone has no thread group to read either): checked with
            // `tgkill`, no fd of its own; or no pidfd to be had for a
            // leader (EMFILE...): then the entry is checked through /proc.
            Err(e) => {
                let tgid = crate::sys::procfs::thread_group_of(tid)?;
                if tgid == tid {
                    log::warn!("no pidfd for process {tid} ({e}); its exit is seen by the sweep");
                }
                (tgid, None)
            }
        };
        let own_start = proc_stat(tid)?.start;
        // The leader's entry (the process), unless it is known already.
        let leader = if tgid == tid {
            None
        } else if let Some(p) = self.get(tgid) {
            Some((p, None))
        } else {
            let fd = pidfd::pidfd_open(tgid, 0).ok();
            let start = proc_stat(tgid)?.start;
            Some((
                Arc::new(Process::new(ProcessKey { pid: tgid, start })),
                Some((fd, start)),
            ))
        };
        if !pending() {
            return None;
        }
        let process = match &leader {
            None => Arc::new(Process::new(ProcessKey {
                pid: tid,
                start: own_start,
            })),
            Some((p, _)) => Arc::clone(p),
        };
        let mut removed = Vec::new();
        let result = {
            let mut inner = self.inner.write();
            // A concurrent registration may have won.
            if let Some(t) = inner.tasks.get(&tid) {
                if t.same_task(tid) {
                    return Some(Arc::clone(&t.process));
                }
            }
            if let Some((p, Some((fd, start)))) = leader {
                self.insert(
                    &mut inner,
                    tgid,
                    Task {
                        start,
                        process: p,
                        pidfd: fd,
                        token: None,
                    },
                    &mut removed,
                );
            }
            self.insert(
                &mut inner,
                tid,
                Task {
                    start: own_start,
                    process: Arc::clone(&process),
                    pidfd: own_fd,
                    token: None,
                },
                &mut removed,
            );
            process
        };
        for p in removed {
            gone(p);
        }
        Some(result)
    }

    /// Inserts `task` for `tid`, replacing (and releasing) a stale entry.
    fn insert(&self, inner: &mut Inner, tid: i32, mut task: Task, removed: &mut Vec<Arc<Process>>) {
        if let Some(old) = inner.tasks.remove(&tid) {
            if let Some(p) = self.release(inner, tid, old) {
                removed.push(p);
            }
        }
        if let (Some(fd), Some(reg)) = (&task.pidfd, &self.registry) {
            let token = self.next_token.fetch_add(1, Ordering::Relaxed);
            match reg.register(
                &mut SourceFd(&fd.as_raw_fd()),
                Token(token),
                Interest::READABLE,
            ) {
                Ok(()) => {
                    task.token = Some(token);
                    inner.tokens.insert(token, tid);
                }
                Err(e) => log::warn!("cannot watch task {tid} for its exit: {e}; the sweep will"),
            }
        }
        inner.tasks.insert(tid, task);
    }

    /// Drops a removed entry. If it was its process's leader, the process
    /// is gone: every thread entry of it goes too and it is returned.
    fn release(&self, inner: &mut Inner, tid: i32, task: Task) -> Option<Arc<Process>> {
        self.unwatch(inner, &task);
        if !task.is_leader(tid) {
            return None;
        }
        let process = task.process;
        process.exited.store(true, Ordering::Release);
        let threads: Vec<i32> = inner
            .tasks
            .iter()
            .filter(|(_, t)| Arc::ptr_eq(&t.process, &process))
            .map(|(t, _)| *t)
            .collect();
        for t in threads {
            if let Some(task) = inner.tasks.remove(&t) {
                self.unwatch(inner, &task);
            }
        }
        Some(process)
    }

    fn unwatch(&self, inner: &mut Inner, task: &Task) {
        if let Some(token) = task.token {
            inner.tokens.remove(&token);
            if let (Some(reg), Some(fd)) = (&self.registry, &task.pidfd) {
                let _ = reg.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
        }
    }

    /// A watched pidfd became readable: its task (or whole process) exited.
    /// Returns the process if it is gone.
    pub fn on_ready(&self, token: usize) -> Option<Arc<Process>> {
        let mut inner = self.inner.write();
        let tid = inner.tokens.remove(&token)?;
        let task = inner.tasks.remove(&tid)?;
        self.release(&mut inner, tid, task)
    }

    /// Backstop for missed exits: drops every entry whose task is gone and
    /// returns the processes that went with them.
    pub fn sweep(&self) -> Vec<Arc<Process>> {
        let mut inner = self.inner.write();
        let dead: Vec<i32> = inner
            .tasks
            .iter()
            .filter(|(tid, t)| !t.same_task(**tid))
            .map(|(tid, _)| *tid)
            .collect();
        let mut gone = Vec::new();
        for tid in dead {
            if let Some(task) = inner.tasks.remove(&tid) {
                if let Some(p) = self.release(&mut inner, tid, task) {
                    gone.push(p);
                }
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_of_self() {
        let me = std::process::id() as i32;
        let s = proc_stat(me).expect("own stat");
        assert!(s.start > 0);
        assert!(s.start_brk > 0);
    }

    #[test]
    fn registers_self_and_a_thread() {
        let index = ProcessIndex::new(None);
        let me = std::process::id() as i32;
        let p = index.register(me, || true, |_| {}).expect("registered");
        assert_eq!(p.key().pid, me);
        assert_eq!(p.key().start, proc_stat(me).unwrap().start);
        let tid = std::thread::spawn(crate::sys::process::gettid)
            .join()
            .unwrap();
        // That thread is gone: nothing to register. (A joined thread can
        // stay visible in /proc for a moment, until the kernel has released
        // it: wait for that first.)
        let gone = format!("/proc/{me}/task/{tid}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::path::Path::new(&gone).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(index.register(tid, || true, |_| {}).is_none());
        let parked = crate::sys::process::ParkedThread::start();
        let tid = parked.tid;
        let q = index
            .register(tid, || true, |_| {})
            .expect("thread registered");
        assert!(Arc::ptr_eq(&p, &q), "threads share their process's state");
        assert_eq!(index.pids(), vec![me]);
        drop(parked);
        // The thread's entry is swept; the process stays. (A joined thread
        // can stay visible in /proc for a moment, until the kernel has
        // released it: sweep until it is gone.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            assert!(index.sweep().is_empty());
            if index.len() == 1 || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn stale_entry_is_replaced_not_inherited() {
        let index = ProcessIndex::new(None);
        let me = std::process::id() as i32;
        let p = index.register(me, || true, |_| {}).unwrap();
        p.mem.lock().charged = 12345;
        // Pretend the entry belonged to an earlier process with this pid.
        {
            let mut inner = index.inner.write();
            let t = inner.tasks.get_mut(&me).unwrap();
            t.process = Arc::new(Process::new(ProcessKey { pid: me, start: 1 }));
            t.process.mem.lock().charged = 999;
            t.process.exited.store(true, Ordering::Release);
        }
        let mut gone = Vec::new();
        let q = index.register(me, || true, |g| gone.push(g)).unwrap();
        assert_eq!(q.key().start, proc_stat(me).unwrap().start);
        assert_eq!(
            q.mem.lock().charged,
            0,
            "a recycled pid starts with a clean ledger"
        );
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].mem.lock().charged, 999);
    }
}
