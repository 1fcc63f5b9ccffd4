//! The parent of a calling task, for the event's `parent_pid`: one
//! `PIDFD_GET_INFO` ioctl (Linux 6.13) on a pidfd kept for the task, not an
//! open, format and parse of `/proc/<pid>/stat` on every consulted call
//! (~6 µs against ~0.6 µs; the pyenv-shim run makes ~1,650 of them).
//! Falls back to `/proc` on older kernels and for a task it cannot open.
//!
//! A kept pidfd names one task: while the ioctl answers, the task is alive,
//! so its thread id still names it (a thread id is reused only once its
//! task is gone). A task gone answers `ESRCH`: its pidfd is dropped and the
//! id, maybe a new task's now, is looked up afresh.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::sys::pidfd;

/// Pidfds kept, the most recently opened last (the oldest are closed).
const KEPT: usize = 32;

/// The pidfds of recently consulted tasks.
#[derive(Default)]
pub(crate) struct Parents {
    /// (thread id, its thread pidfd), oldest first.
    kept: Mutex<Vec<(u32, OwnedFd)>>,
    /// Set once the kernel lacks `PIDFD_THREAD` or `PIDFD_GET_INFO`; only
    /// this flag is read through it (`Relaxed`).
    unsupported: AtomicBool,
}

impl Parents {
    /// The parent (process id) of task `tid`, if it can be known.
    pub(crate) fn of(&self, tid: u32) -> Option<u32> {
        if !self.unsupported.load(Ordering::Relaxed) {
            match self.by_pidfd(tid) {
                Ok(ppid) => return Some(ppid),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => {
                    log::debug!("no PIDFD_GET_INFO ({e}); parents come from /proc");
                    self.unsupported.store(true, Ordering::Relaxed);
                }
                // Gone, no fd to spare, a parent outside this pid
                // namespace: /proc says what it knows.
                Err(_) => {}
            }
        }
        from_proc(tid)
    }

    fn by_pidfd(&self, tid: u32) -> std::io::Result<u32> {
        // A pidfd taken out of the list is closed after the lock is let go.
        let stale = {
            let mut kept = self.kept.lock();
            match kept.iter().position(|(t, _)| *t == tid) {
                Some(i) => match pidfd::parent_of(kept[i].1.as_fd()) {
                    Ok(ppid) => return Ok(ppid),
                    Err(_) => Some(kept.remove(i)),
                },
                None => None,
            }
        };
        drop(stale);
        let fd = pidfd::pidfd_open(tid as i32, pidfd::PIDFD_THREAD)?;
        let ppid = pidfd::parent_of(fd.as_fd())?;
        let oldest = {
            let mut kept = self.kept.lock();
            let oldest = (kept.len() >= KEPT).then(|| kept.remove(0));
            kept.push((tid, fd));
            oldest
        };
        drop(oldest);
        Ok(ppid)
    }
}

/// The parent of `tid`, from `/proc/<tid>/stat` (field 4).
fn from_proc(tid: u32) -> Option<u32> {
    crate::sys::procfs::Stat::of(tid as i32)?
        .ppid()
        .map(|p| p as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_this_process_and_a_thread_and_a_gone_task() {
        let parents = Parents::default();
        let me = std::process::id();
        let ppid = from_proc(me).expect("own stat");
        assert_eq!(parents.of(me), Some(ppid));
        assert_eq!(parents.of(me), Some(ppid), "from the kept pidfd");
        if !parents.unsupported.load(Ordering::Relaxed) {
            assert!(parents.kept.lock().iter().any(|(t, _)| *t == me));
        }
        let parked = crate::sys::process::ParkedThread::start();
        let tid = parked.tid as u32;
        assert_eq!(parents.of(tid), Some(ppid), "a thread's is its process's");
        drop(parked);
        // The thread is gone once /proc says so: nothing is known then.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while from_proc(tid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(parents.of(tid), None);
        assert!(
            parents.kept.lock().iter().all(|(t, _)| *t != tid),
            "a gone task's pidfd is dropped"
        );
    }
}
