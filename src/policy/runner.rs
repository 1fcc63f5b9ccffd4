//! The policy thread: runs the user's callback on one dedicated thread,
//! serially, and answers held events through a one-shot gate.
//!
//! Invariant: a held event always yields a verdict to its worker: the
//! callback's, or `Deny` when it does not answer within the hold timeout,
//! panics, or is gone.

use std::fs::File;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::context::{DynamicPolicy, PolicyContext};
use super::event::SyscallEvent;
use super::verdict::Verdict;

/// The user's callback.
pub type PolicyCallback = dyn FnMut(&SyscallEvent, &mut PolicyContext<'_>) -> Verdict + Send;

/// How long a held call waits for its verdict.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(5);

/// Events not held are dropped (and counted) when this many are queued.
const QUEUE: usize = 4096;

struct Request {
    event: SyscallEvent,
    gate: Option<Sender<Verdict>>,
}

/// What a sandbox shares with each of its supervisors' policy threads.
#[derive(Clone)]
pub(crate) struct PolicySetup {
    pub(crate) callback: Option<Arc<Mutex<Box<PolicyCallback>>>>,
    pub(crate) audit: Option<Arc<Mutex<File>>>,
    pub(crate) hold_timeout: Duration,
}

/// A running policy thread.
pub(crate) struct PolicyRunner {
    tx: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    hold_timeout: Duration,
}

impl PolicyRunner {
    pub(crate) fn start(setup: &PolicySetup, dynamic: Arc<DynamicPolicy>) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let callback = setup.callback.clone();
        let audit = setup.audit.clone();
        let thread = std::thread::Builder::new()
            .name("unotify-policy".into())
            .spawn(move || run(&rx, callback.as_ref(), audit.as_ref(), &dynamic))?;
        Ok(PolicyRunner {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            hold_timeout: setup.hold_timeout,
        })
    }

    /// Tells the callback about `event`. When `held`, waits for its verdict
    /// (at most the hold timeout; then `Deny`), else returns `None` at once.
    pub(crate) fn submit(&self, event: SyscallEvent, held: bool) -> Option<Verdict> {
        let Some(tx) = self.tx.lock().clone() else {
            return held.then_some(Verdict::Deny);
        };
        if !held {
            if tx.try_send(Request { event, gate: None }).is_err() {
                log::warn!("policy callback is behind; an event was not delivered");
            }
            return None;
        }
        let (gate_tx, gate_rx) = crossbeam_channel::bounded(1);
        let req = Request {
            event,
            gate: Some(gate_tx),
        };
        if tx.send_timeout(req, self.hold_timeout).is_err() {
            log::warn!("policy callback queue full or gone; denying the held call");
            return Some(Verdict::Deny);
        }
        match gate_rx.recv_timeout(self.hold_timeout) {
            Ok(v) => Some(v),
            Err(_) => {
                log::warn!(
                    "policy callback gave no verdict within {:?}; denying the held call",
                    self.hold_timeout
                );
                Some(Verdict::Deny)
            }
        }
    }

    /// Stops taking events and waits for the thread (after the callback
    /// returns from what it is doing).
    ///
    /// A callback still busy after a short grace is left to finish on its
    /// own (its thread then ends): user code cannot be interrupted, and the
    /// supervisor must not hang on it.
    pub(crate) fn shutdown(&self) {
        self.tx.lock().take();
        let Some(t) = self.thread.lock().take() else {
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_millis(200);
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            if t.join().is_err() {
                log::error!("the policy thread panicked");
            }
        } else {
            log::warn!(
                "the policy callback is still running; leaving its thread to finish on its own"
            );
        }
    }
}

fn run(
    rx: &Receiver<Request>,
    callback: Option<&Arc<Mutex<Box<PolicyCallback>>>>,
    audit: Option<&Arc<Mutex<File>>>,
    dynamic: &DynamicPolicy,
) {
    // One warning for a log that cannot be written (a closed pipe), not
    // one per event.
    let mut audit_failed = false;
    for Request { mut event, gate } in rx.iter() {
        let verdict = match callback {
            Some(cb) => {
                let mut cx = PolicyContext::new(dynamic);
                let mut f = cb.lock();
                match catch_unwind(AssertUnwindSafe(|| (*f)(&event, &mut cx))) {
                    Ok(v) => v,
                    Err(_) => {
                        log::error!("the policy callback panicked on {}; denying", event.syscall);
                        Verdict::Deny
                    }
                }
            }
            None => Verdict::Allow,
        };
        if let Some(gate) = gate {
            // The worker may have given up already; that is fine.
            let _ = gate.send(verdict);
        }
        // The record shows the errno the call fails with.
        if event.errno.is_none() {
            event.errno = verdict.errno();
        }
        if verdict == Verdict::Audit {
            log::info!(target: "unotify::audit", "{}", event.to_json(verdict.as_str()));
        }
        if let Some(file) = audit {
            // One write per record, newline included: with `--audit -` the
            // program's own output shares the file, and `writeln!` writes
            // the record and its newline apart.
            let mut line = event.to_json(verdict.as_str());
            line.push('\n');
            if let Err(e) = file.lock().write_all(line.as_bytes()) {
                if !audit_failed {
                    log::warn!("cannot write the audit log: {e}; further records are lost");
                }
                audit_failed = true;
            }
        }
    }
}
