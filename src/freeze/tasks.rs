//! Every task of the sandbox: the processes of the process index and the
//! sandbox's first process, every thread of each (`/proc/<pid>/task`), and,
//! recursively, every child of every thread (`/proc/<pid>/task/<tid>/children`).
//!
//! With creation tracking on, every process is in the index before it runs,
//! so a process whose parent is gone (reparented outside the sandbox) is
//! still found; the `/proc` walk also finds processes the index has not
//! seen yet.

use std::collections::{HashSet, VecDeque};

use crate::supervisor::Shared;

/// One task: thread id and the process it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    pub(crate) tid: i32,
    pub(crate) tgid: i32,
}

/// Lists every task of the sandbox now (a snapshot: callers that need a
/// fixed point list again after stopping what they found).
pub(crate) fn enumerate(shared: &Shared) -> Vec<Task> {
    let mut roots = vec![shared.pgid];
    if let Some(t) = &shared.tracker {
        // Only entries whose pidfd still names a live process: a pid seen
        // exiting is never followed to whoever got the number next.
        roots.extend(
            t.index
                .pids()
                .into_iter()
                .filter(|p| t.index.get(*p).is_some()),
        );
    }
    walk(roots)
}

/// The tasks of `roots` and of all their descendants.
pub(crate) fn walk(roots: Vec<i32>) -> Vec<Task> {
    let mut queue: VecDeque<i32> = roots.into();
    let mut seen_proc = HashSet::new();
    let mut seen_task = HashSet::new();
    let mut out = Vec::new();
    while let Some(pid) = queue.pop_front() {
        if !seen_proc.insert(pid) {
            continue;
        }
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // gone
        };
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if !seen_task.insert(tid) {
                continue;
            }
            out.push(Task { tid, tgid: pid });
            if let Ok(children) =
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
            {
                queue.extend(
                    children
                        .split_ascii_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_finds_own_threads_and_children() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let parked = crate::sys::process::ParkedThread::start();
        let tid = parked.tid;
        let tasks = walk(vec![me]);
        assert!(tasks.contains(&Task { tid: me, tgid: me }));
        assert!(tasks.contains(&Task { tid, tgid: me }));
        let cpid = child.id() as i32;
        assert!(
            tasks.iter().any(|t| t.tid == cpid && t.tgid == cpid),
            "{tasks:?} lacks child {cpid}"
        );
        drop(parked);
        let _ = child.kill();
        let _ = child.wait();
    }
}
