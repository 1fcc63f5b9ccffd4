//! The tracer's fork traces ([`Tracer::trace_fork`](super::Tracer::trace_fork)):
//! what a worker holds while it answers a traced fork ([`PendingFork`]),
//! what the owner of the trace is told ([`ForkWitness`]), and the loop's
//! part: the caller seized with creation events, watched to its event, its
//! new process held at its first stop until recorded. Part of the tracer's
//! loop (it shares its table with the freezes, see the parent module).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys::ptrace::{self, TraceeState};

use super::super::component::Task;
use super::super::error::FreezeError;
use super::{Entry, Inbox, Loop, Pending, Request, St};

/// What a fork trace tells its owner.
pub(crate) trait ForkWitness: Send {
    /// `child` was created by the traced call and has not run yet (it is
    /// let go when this returns). Called on the ptrace thread: cheap, and
    /// never a request to the tracer.
    fn created(&self, child: i32);
}

/// A fork trace asked for ([`Tracer::trace_fork`]); tell it how the call
/// was answered ([`answered`](Self::answered); dropped: not delivered).
pub(crate) struct PendingFork {
    pub(super) pending: Pending,
    pub(super) inbox: Arc<Inbox>,
    pub(super) told: bool,
}

impl PendingFork {
    /// Waits until the caller is traced (the call may then be answered),
    /// or why it cannot be.
    pub(crate) fn wait(&self) -> Result<(), FreezeError> {
        self.pending.wait()
    }

    /// The call's answer was sent; `delivered`: a `CONTINUE` the kernel
    /// took (the caller goes on into its fork).
    pub(crate) fn answered(mut self, delivered: bool) {
        self.tell(delivered);
    }

    fn tell(&mut self, delivered: bool) {
        if !std::mem::replace(&mut self.told, true) && self.pending.sent {
            let job = self.pending.job;
            let _ = self.inbox.send(Request::ForkAnswered { job, delivered });
        }
    }
}

impl Drop for PendingFork {
    fn drop(&mut self) {
        self.tell(false);
    }
}

/// How long a fork caller is watched for its creation event before it is
/// interrupted (its fork failed and it ran on; not before: a pending
/// interrupt makes `copy_process` restart the call, which then traps again).
const INTERRUPT_AFTER: Duration = Duration::from_millis(2);
/// How long a fork caller that died without its event is given for its new
/// process's first stop to be seen.
const ORPHAN_WAIT: Duration = Duration::from_millis(50);
/// How long a fork caller, or its new process, may take to stop before it
/// is killed.
const FORK_GIVE_UP: Duration = Duration::from_secs(5);

/// Where a fork trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ForkPhase {
    /// The caller is traced; its answer is not sent yet.
    Prepared,
    /// Answered `CONTINUE`: waiting for the caller's stop.
    Answered,
    /// It created this process: waiting for its first stop.
    Child(i32),
    /// The caller died without its event: a new process of it, attached
    /// here, is found by its stop.
    Orphan,
}

/// The job of a new process found by its stop before any fork trace
/// claimed it (job ids start at 1).
pub(super) const UNCLAIMED: u64 = 0;

/// A fork trace.
pub(super) struct ForkJob {
    id: u64,
    caller: i32,
    witness: Box<dyn ForkWitness>,
    phase: ForkPhase,
    /// When its phase began.
    since: Instant,
    /// The caller was interrupted for a missing event.
    interrupted: bool,
    /// What was late was killed.
    killed: bool,
}

/// Fork traces (see the module documentation).
impl Loop {
    /// Whether a fork trace waits for a stop (its event comes within
    /// microseconds of its answer).
    pub(super) fn fork_awaited(&self) -> bool {
        self.forks.iter().any(|j| j.phase != ForkPhase::Prepared)
    }

    /// The fork of `job` was answered; `delivered`: the kernel took its
    /// `CONTINUE`.
    pub(super) fn fork_answered(&mut self, job: u64, delivered: bool) {
        let Some(j) = self.forks.iter_mut().find(|j| j.id == job) else {
            return;
        };
        if delivered && j.phase == ForkPhase::Prepared {
            j.phase = ForkPhase::Answered;
            j.since = Instant::now();
        } else if j.phase == ForkPhase::Prepared {
            // Refused, or stale: nothing is created.
            self.end_fork(job);
        }
    }

    /// Takes the trace of the fork-like call `caller` waits in.
    pub(super) fn start_fork(
        &mut self,
        id: u64,
        caller: Task,
        witness: Box<dyn ForkWitness>,
    ) -> Result<(), FreezeError> {
        let tid = caller.tid;
        // New processes whose creator died before its event, found late:
        // nothing says what they inherit.
        self.unknown_tracees();
        self.end_forks_of(tid);
        match self.table.get_mut(&tid) {
            Some(e) if e.st != St::Gone => {
                if e.caller_of.is_some() {
                    // Waits for its exec's answer: not in a fork.
                    return Err(FreezeError::CallerBusy(tid));
                }
                // Ours already. Seized with creation events and running
                // (its last fork failed): traced as it is. Else its
                // interrupt is pending (every other tracee's is, or it is
                // stopped and this call is stale): the call restarts at
                // that stop, creating nothing, and is traced again.
                if e.st == St::Running && !e.interrupted && !e.creation {
                    let _ = ptrace::interrupt(tid);
                    e.interrupted = true;
                }
            }
            _ => {
                self.table.remove(&tid);
                self.seize_with(caller, false, true)?;
            }
        }
        let Some(e) = self.table.get_mut(&tid) else {
            return Err(FreezeError::CallerGone(tid));
        };
        e.fork_of = Some(id);
        e.created = None;
        self.forks.push(ForkJob {
            id,
            caller: tid,
            witness,
            phase: ForkPhase::Prepared,
            since: Instant::now(),
            interrupted: false,
            killed: false,
        });
        Ok(())
    }

    /// Ends fork trace `id`: what it claimed is let go once nothing else
    /// needs it.
    fn end_fork(&mut self, id: u64) {
        let Some(pos) = self.forks.iter().position(|j| j.id == id) else {
            return;
        };
        self.forks.swap_remove(pos);
        for e in self.table.values_mut() {
            if e.fork_of == Some(id) {
                e.fork_of = None;
            }
            if e.new_of == Some(id) {
                e.new_of = None;
            }
        }
    }

    /// `tid` makes another call: a fork of it still traced and not past
    /// its caller's stop returned without creating anything (a creation
    /// stops it at its event first).
    pub(super) fn end_forks_of(&mut self, tid: i32) {
        let done: Vec<u64> = self
            .forks
            .iter()
            .filter(|j| {
                j.caller == tid && matches!(j.phase, ForkPhase::Prepared | ForkPhase::Answered)
            })
            .map(|j| j.id)
            .collect();
        for id in done {
            self.end_fork(id);
        }
    }

    /// Moves each fork trace on. Returns whether any changed phase.
    pub(super) fn advance_forks(&mut self) -> bool {
        let mut any = false;
        let ids: Vec<u64> = self.forks.iter().map(|j| j.id).collect();
        if self.forks.iter().any(|j| j.phase == ForkPhase::Orphan) {
            any |= self.unknown_tracees();
        }
        for id in ids {
            let Some(j) = self.forks.iter_mut().find(|j| j.id == id) else {
                continue;
            };
            let waited = j.since.elapsed();
            match j.phase {
                ForkPhase::Prepared => {
                    // Its answer went through before the worker said so.
                    any |= take_child(&mut self.table, j, id);
                }
                ForkPhase::Answered => {
                    let caller = j.caller;
                    if take_child(&mut self.table, j, id) {
                        any = true;
                        continue;
                    }
                    let Some(e) = self.table.get_mut(&caller) else {
                        j.phase = ForkPhase::Orphan;
                        j.since = Instant::now();
                        any = true;
                        continue;
                    };
                    match e.st {
                        // A stop without an event: nothing was created (a
                        // signal, or the interrupt, came first: the call
                        // restarts if it was not over).
                        St::Stopped(_) => {
                            any = true;
                            self.end_fork(id);
                        }
                        St::Gone => {
                            e.fork_of = None;
                            j.phase = ForkPhase::Orphan;
                            j.since = Instant::now();
                            any = true;
                        }
                        St::Running => {
                            if !j.interrupted && waited >= INTERRUPT_AFTER {
                                j.interrupted = true;
                                if !e.interrupted {
                                    if let Err(err) = ptrace::interrupt(caller) {
                                        log::debug!(
                                            "interrupting fork caller {caller} failed: {err}"
                                        );
                                    }
                                    e.interrupted = true;
                                }
                            }
                            if !j.killed && waited >= FORK_GIVE_UP {
                                j.killed = true;
                                super::super::kill_task(
                                    caller,
                                    format_args!(
                                        "fork caller {caller} (traced for its creation event) did not stop in {FORK_GIVE_UP:?}; killing it"
                                    ),
                                );
                            }
                        }
                    }
                }
                ForkPhase::Child(child) => {
                    let st = self.table.get(&child).map(|c| c.st);
                    match st {
                        Some(St::Stopped(_)) => {
                            // Before its first instruction.
                            j.witness.created(child);
                            any = true;
                            self.end_fork(id);
                        }
                        Some(St::Running) => {
                            if !j.killed && waited >= FORK_GIVE_UP {
                                j.killed = true;
                                super::super::kill_task(
                                    child,
                                    format_args!(
                                        "new process {child} of a traced fork did not stop in {FORK_GIVE_UP:?}; killing it"
                                    ),
                                );
                            }
                        }
                        Some(St::Gone) | None => {
                            any = true;
                            self.end_fork(id);
                        }
                    }
                }
                ForkPhase::Orphan => {
                    if waited >= ORPHAN_WAIT {
                        any = true;
                        self.end_fork(id);
                    }
                }
            }
        }
        self.settle_unclaimed();
        any
    }

    /// Takes the stops of tracees this thread has and the table does not
    /// know: new processes whose creator's event is not taken yet, or
    /// whose creator died before it. Each is kept stopped, unclaimed
    /// ([`UNCLAIMED`]), until [`settle_unclaimed`](Self::settle_unclaimed)
    /// or its creator's trace claims it. Returns whether any was found.
    pub(super) fn unknown_tracees(&mut self) -> bool {
        let mut any = false;
        // Bounded: each round takes one stop.
        for _ in 0..64 {
            let pid = match ptrace::trapped_tracee() {
                Ok(Some(pid)) => pid,
                _ => break,
            };
            if self.table.contains_key(&pid) {
                // Known: taken as in a round (a watched one is its
                // watcher's: looked at again later).
                if self.watched.contains(&pid) || !self.poll_one(pid) {
                    break;
                }
                continue;
            }
            let state = match ptrace::wait_tracee(pid, true, false) {
                Ok(Some(state)) => state,
                _ => break,
            };
            any = true;
            let st = match state {
                TraceeState::Gone => continue,
                TraceeState::Signal(sig) => St::Stopped(sig),
                TraceeState::Event(_) | TraceeState::Trapped => St::Stopped(0),
            };
            let mut e = Entry::new(st, true, true);
            e.new_of = Some(UNCLAIMED);
            self.table.insert(pid, e);
        }
        any
    }

    /// The unclaimed new processes: told to every fork trace whose caller
    /// died without its event (each restricts it: it gets what all of
    /// them allow) and let go; with none, and no fork traced whose event
    /// may still be taken, killed (nothing says what they inherit).
    fn settle_unclaimed(&mut self) {
        let unclaimed: Vec<i32> = self
            .table
            .iter()
            .filter(|(_, e)| e.new_of == Some(UNCLAIMED))
            .map(|(&pid, _)| pid)
            .collect();
        if unclaimed.is_empty() {
            return;
        }
        let orphans: Vec<&ForkJob> = self
            .forks
            .iter()
            .filter(|j| j.phase == ForkPhase::Orphan)
            .collect();
        let kill = if !orphans.is_empty() {
            for &pid in &unclaimed {
                for j in &orphans {
                    j.witness.created(pid);
                }
            }
            false
        } else if self
            .forks
            .iter()
            .any(|j| matches!(j.phase, ForkPhase::Prepared | ForkPhase::Answered))
        {
            // Maybe that fork's: its event is taken soon.
            return;
        } else {
            true
        };
        for pid in unclaimed {
            if kill {
                super::super::kill_task(
                    pid,
                    format_args!("new process {pid} of a traced fork was found late; killing it"),
                );
            }
            if let Some(e) = self.table.get_mut(&pid) {
                e.new_of = None;
                if kill {
                    // Not in a stop any more: its exit is collected.
                    e.st = St::Running;
                }
            }
        }
    }
}

/// Moves fork trace `j` (its id `id`) on to its child once its caller's
/// creation event has named one; whether it did.
fn take_child(table: &mut HashMap<i32, Entry>, j: &mut ForkJob, id: u64) -> bool {
    let Some(e) = table.get_mut(&j.caller) else {
        return false;
    };
    let Some(child) = e.created.take() else {
        return false;
    };
    e.fork_of = None;
    j.phase = ForkPhase::Child(child);
    j.since = Instant::now();
    if let Some(c) = table.get_mut(&child) {
        c.new_of = Some(id);
    }
    true
}
