//! The tasks that can write an exec caller's memory from user space: those
//! sharing its address space, found from the caller at exec time.
//!
//! Address spaces are shared only between a task and the tasks it creates
//! with `CLONE_VM`: under argv safety only threads and `vfork` children
//! (the filter refuses the rest, see `freeze::install`). So every task
//! sharing the caller's is reachable from the caller's process through
//! parent, child and sibling links whose every step shares it too (siblings
//! cover two `vfork` children of one parent), and a single-threaded caller
//! shares only with a parent whose `vfork` child it is. Each candidate is
//! compared with the caller by `kcmp(KCMP_VM)`. Read from `/proc`; called
//! by a worker (the exec freeze).

use std::collections::{HashSet, VecDeque};

use crate::sys::procfs::{self, Stat};
use crate::sys::ptrace::same_vm;

/// One task: thread id and the process it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Task {
    pub(crate) tid: i32,
    pub(crate) tgid: i32,
}

/// The parent and the threads of process `pid`, from its `stat` (one read)
/// when its leader is its only thread, else from its `task` directory too.
fn parent_and_threads(pid: i32) -> (Option<i32>, Vec<i32>) {
    match Stat::of(pid) {
        // Field 20: the number of threads; a live leader is one of them.
        Some(st) if st.field(20) == Some(1) && !matches!(st.state, b'Z' | b'X') => {
            (st.ppid(), vec![pid])
        }
        Some(st) => (st.ppid(), threads_of(pid)),
        None => (None, threads_of(pid)),
    }
}

/// The threads of process `pid`.
pub(crate) fn threads_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// The children of thread `tid` of process `pid`.
pub(crate) fn children_of_thread(pid: i32, tid: i32) -> Vec<i32> {
    procfs::read_text(&format!("/proc/{pid}/task/{tid}/children"))
        .map(|s| {
            s.split_ascii_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The children of every thread of `pid`.
fn children_of(pid: i32, threads: &[i32]) -> Vec<i32> {
    threads
        .iter()
        .flat_map(|&t| children_of_thread(pid, t))
        .collect()
}

/// Every task other than `caller` that shares `caller`'s address space
/// (none if that is the supervisor's: the launcher's first exec runs in a
/// child that shares it), except the caller's own `vfork`
/// parent thread, which sleeps until the exec has replaced the shared
/// memory (after argv is copied) and cannot run before.
pub(crate) fn sharers(caller: Task, supervisor: i32) -> Vec<Task> {
    let mut out = Vec::new();
    let (parent, threads) = parent_and_threads(caller.tgid);
    // The launcher's first exec: the memory is the supervisor's, written
    // only by the host (and other launches of it, before their exec).
    if supervisor > 0
        && parent == Some(supervisor)
        && same_vm(caller.tid, supervisor).unwrap_or(false)
    {
        return out;
    }
    // A single-threaded caller: the filter lets a task share memory only
    // with its threads and its `vfork` children (see `install`), and a
    // `vfork` child of the caller's one thread, which is in this exec, has
    // exec'd or exited already. So only a parent whose `vfork` child the
    // caller is can share its memory: without one, nothing to stop, found
    // with one read and one `kcmp`. (Left out, as for any task the search
    // misses: two `vfork` children orphaned together by their parent's
    // death still share a memory, and one can rewrite the other's argv
    // during its exec: the exec-event check then kills the new image.)
    if threads == [caller.tid] {
        match parent.filter(|&p| p > 0) {
            Some(pp) if same_vm(pp, caller.tid).unwrap_or(true) => {}
            _ => return out,
        }
    }
    let mut seen: HashSet<i32> = HashSet::from([caller.tgid, supervisor]);
    let mut queue = VecDeque::from([caller.tgid]);
    let mut caller_parent = None;
    while let Some(pid) = queue.pop_front() {
        let (parent, threads) = parent_and_threads(pid);
        for &t in &threads {
            if t != caller.tid {
                out.push(Task { tid: t, tgid: pid });
            }
        }
        if pid == caller.tgid {
            caller_parent = parent;
        }
        let mut next = children_of(pid, &threads);
        if let Some(pp) = parent.filter(|&p| p > 0) {
            next.push(pp);
            next.extend(children_of(pp, &parent_and_threads(pp).1));
        }
        for n in next {
            if seen.insert(n) && same_vm(n, caller.tid).unwrap_or(false) {
                queue.push_back(n);
            }
        }
    }
    // The caller's own vfork parent: a thread of the caller's parent,
    // asleep in its vfork wait, of which the caller is a child.
    if let Some(pp) = caller_parent {
        out.retain(|t| {
            !(t.tgid == pp
                && in_vfork_wait(t.tid)
                && children_of_thread(pp, t.tid).contains(&caller.tgid))
        });
    }
    out
}

/// Whether task `tid` sleeps in a `vfork` wait (uninterruptibly, in the
/// kernel's clone path: `/proc/<tid>/wchan` names the function).
pub(crate) fn in_vfork_wait(tid: i32) -> bool {
    super::task_state(tid) == Some(b'D')
        && procfs::read_rendered(&format!("/proc/{tid}/wchan")).is_ok_and(|w| {
            matches!(
                &w[..],
                b"kernel_clone" | b"wait_for_vfork_done" | b"_do_fork" | b"do_fork"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_threads_share_and_a_forked_child_does_not() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let parked = crate::sys::process::ParkedThread::start();
        let caller = Task {
            tid: crate::sys::process::gettid(),
            tgid: me,
        };
        // Seen from a thread of this process, with no supervisor to skip.
        let found = sharers(caller, 0);
        assert!(found.contains(&Task {
            tid: parked.tid,
            tgid: me
        }));
        let cpid = child.id() as i32;
        assert!(!found.iter().any(|t| t.tgid == cpid), "{found:?}");
        assert!(!found.iter().any(|t| t.tid == caller.tid));
        assert_eq!(Stat::of(cpid).and_then(|s| s.ppid()), Some(me));
        drop(parked);
        let _ = child.kill();
        let _ = child.wait();
    }
}
