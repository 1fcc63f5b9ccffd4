//! Poll threads kept for the next supervisor.
//!
//! A supervisor's poll thread ends with its sandbox; starting one costs a
//! `clone`, its stacks and their unmapping (a TLB shoot-down on every CPU
//! the process runs on), on each spawn's path. A thread whose poll loop
//! has ended waits here a short while ([`IDLE_FOR`]) for the next
//! supervisor's loop instead of exiting. Owns only the threads; the loop
//! itself is `poll::run`, given by `Supervisor::start`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use crate::sys::signals::{self, SigSet};

use super::poll::Ended;

/// How long a thread waits for another loop before it exits: short, so
/// that a process that stopped making sandboxes is soon back to its own
/// threads.
const IDLE_FOR: Duration = Duration::from_millis(50);

/// At most this many threads wait (one per supervisor started at once).
const MAX_IDLE: usize = 2;

/// A poll loop to run, with the signal mask of the thread that started the
/// supervisor (a new thread would have inherited it).
struct Job {
    run: Box<dyn FnOnce() -> Ended + Send>,
    mask: Option<SigSet>,
    done: Arc<Completion>,
}

/// How a loop ended (`Err`: it panicked), set once its thread has let go
/// of everything the loop held.
#[derive(Default)]
pub(crate) struct Completion {
    outcome: Mutex<Option<std::thread::Result<Ended>>>,
    cv: Condvar,
}

impl Completion {
    /// Whether the loop has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.outcome.lock().is_some()
    }

    /// Waits until the loop has ended, and says how.
    pub(crate) fn wait(&self) -> std::thread::Result<Ended> {
        let mut o = self.outcome.lock();
        loop {
            if let Some(r) = o.take() {
                return r;
            }
            self.cv.wait(&mut o);
        }
    }
}

/// One waiting thread: where to send it a loop, its number (to find it
/// again when it gives up waiting) and its process (a child forked from
/// this process has the list but not the threads).
struct Idle {
    id: u64,
    pid: u32,
    tx: Sender<Job>,
}

/// The waiting threads, the most recent last.
static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

/// Runs `run` on a waiting poll thread, or on a new one named `name`.
pub(crate) fn start(
    name: &str,
    run: Box<dyn FnOnce() -> Ended + Send>,
) -> std::io::Result<Arc<Completion>> {
    let done = Arc::new(Completion::default());
    let mask = match signals::current_mask() {
        Ok(m) => Some(m),
        Err(e) => {
            log::debug!("cannot read this thread's signal mask ({e}); starting a new poll thread");
            None
        }
    };
    let mut job = Job {
        run,
        mask,
        done: Arc::clone(&done),
    };
    if job.mask.is_some() {
        let waiting = {
            let mut idle = IDLE.lock();
            let me = std::process::id();
            // (Left by the process this one was forked from: no thread
            // serves them here.)
            idle.retain(|i| i.pid == me);
            idle.pop()
        };
        if let Some(idle) = waiting {
            // The thread is no longer listed: it takes this job whether or
            // not it has timed out meanwhile (see `serve`).
            match idle.tx.send(job) {
                Ok(()) => return Ok(done),
                Err(e) => job = e.into_inner(),
            }
        }
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    tx.send(job).expect("the receiver is held here");
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || serve(tx, rx))?;
    Ok(done)
}

/// A pool thread: runs the loops sent to it until none comes for
/// [`IDLE_FOR`] or enough threads wait already.
fn serve(tx: Sender<Job>, rx: Receiver<Job>) {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut job = rx
        .recv()
        .expect("the first job is sent before the thread starts");
    loop {
        let reusable = match &job.mask {
            // The mask of the thread that started this supervisor, as a
            // thread it started would have had.
            Some(m) => match signals::set_mask(m) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("cannot set the poll thread's signal mask: {e}");
                    false
                }
            },
            None => false,
        };
        let Job { run, done, .. } = job;
        // The loop's captures (the supervisor's state) are dropped inside.
        let outcome = catch_unwind(AssertUnwindSafe(run));
        let wait_more = reusable && outcome.is_ok() && {
            let mut idle = IDLE.lock();
            let room = idle.len() < MAX_IDLE;
            if room {
                idle.push(Idle {
                    id,
                    pid: std::process::id(),
                    tx: tx.clone(),
                });
            }
            room
        };
        // Listed before the loop is reported ended: a sandbox that starts
        // once the previous one has ended finds this thread waiting.
        *done.outcome.lock() = Some(outcome);
        done.cv.notify_all();
        if !wait_more {
            return;
        }
        job = match rx.recv_timeout(IDLE_FOR) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = IDLE.lock();
                match idle.iter().position(|i| i.id == id) {
                    Some(at) => {
                        idle.remove(at);
                        return;
                    }
                    // Taken from the list by `start`, which is sending a
                    // loop: wait for it.
                    None => {
                        drop(idle);
                        match rx.recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
}
