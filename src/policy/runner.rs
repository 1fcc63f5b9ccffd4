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

use parking_lot::Mutex;

use super::context::{DynamicPolicy, PolicyContext};
use super::event::{Answered, SyscallEvent};
use super::mailbox::{self, Receiver, Reply, Sender};
use super::verdict::Verdict;

/// The user's callback.
pub type PolicyCallback = dyn FnMut(&SyscallEvent, &mut PolicyContext<'_>) -> Verdict + Send;

/// How long a held call waits for its verdict.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(5);

/// Events not held are dropped (and counted) when this many are queued.
const QUEUE: usize = 4096;

enum Request {
    /// Tell the callback about call `id` (its verdict through `gate` when
    /// the call is held).
    Consult {
        id: u64,
        event: SyscallEvent,
        gate: Option<Reply<Verdict>>,
    },
    /// Write the audit record of the answered call `id`, with the verdict
    /// the callback gave it (told earlier, on the same queue).
    Record {
        id: u64,
        event: SyscallEvent,
        answered: Answered,
    },
}

/// Verdicts kept for records not yet written (a call held by the pause
/// never gets one): beyond this many, the oldest are forgotten.
const VERDICTS_KEPT: usize = 4096;

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
        let (tx, rx) = mailbox::channel(QUEUE);
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
    pub(crate) fn submit(&self, id: u64, event: SyscallEvent, held: bool) -> Option<Verdict> {
        let Some(tx) = self.tx.lock().clone() else {
            return held.then_some(Verdict::Deny);
        };
        if !held {
            let req = Request::Consult {
                id,
                event,
                gate: None,
            };
            if tx.try_send(req).is_err() {
                log::warn!("policy callback is behind; an event was not delivered");
            }
            return None;
        }
        let (gate, reply) = mailbox::gate();
        let req = Request::Consult {
            id,
            event,
            gate: Some(reply),
        };
        if tx.send_timeout(req, self.hold_timeout).is_err() {
            log::warn!("policy callback queue full or gone; denying the held call");
            return Some(Verdict::Deny);
        }
        match gate.wait(self.hold_timeout) {
            Some(v) => Some(v),
            None => {
                log::warn!(
                    "policy callback gave no verdict within {:?}; denying the held call",
                    self.hold_timeout
                );
                Some(Verdict::Deny)
            }
        }
    }

    /// [`record`](Self::record), for a call answered later (deferred).
    pub(crate) fn record_later(&self) -> impl FnOnce(u64, SyscallEvent, Answered) + Send {
        let tx = self.tx.lock().clone();
        move |id, event, answered| {
            if let Some(tx) = tx {
                queue_record(&tx, id, event, answered);
            }
        }
    }

    /// Queues the audit record of the answered call `id`.
    pub(crate) fn record(&self, id: u64, event: SyscallEvent, answered: Answered) {
        if let Some(tx) = self.tx.lock().clone() {
            queue_record(&tx, id, event, answered);
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
    // The verdict (and the rule it names) of each consulted call whose
    // record is still to come, oldest first.
    let mut verdicts: std::collections::VecDeque<(u64, Verdict, Option<String>)> =
        std::collections::VecDeque::new();
    while let Some(req) = rx.recv() {
        match req {
            Request::Consult { id, event, gate } => {
                let mut cx = PolicyContext::new(dynamic);
                let verdict = match callback {
                    Some(cb) => {
                        let mut f = cb.lock();
                        match catch_unwind(AssertUnwindSafe(|| (*f)(&event, &mut cx))) {
                            Ok(v) => v,
                            Err(_) => {
                                log::error!(
                                    "the policy callback panicked on {}; denying",
                                    event.syscall
                                );
                                Verdict::Deny
                            }
                        }
                    }
                    None => Verdict::Allow,
                };
                if let Some(gate) = gate {
                    // The worker may have given up already; that is fine.
                    gate.give(verdict);
                }
                if verdict == Verdict::Audit {
                    log::info!(target: "unotify::audit", "{}", event.to_json(verdict.as_str()));
                }
                if audit.is_some() {
                    if verdicts.len() >= VERDICTS_KEPT {
                        verdicts.pop_front();
                    }
                    verdicts.push_back((id, verdict, cx.take_rule()));
                }
            }
            Request::Record {
                id,
                mut event,
                mut answered,
            } => {
                let Some(file) = audit else { continue };
                if let Some(i) = verdicts.iter().rposition(|(v_id, _, _)| *v_id == id) {
                    let (_, verdict, rule) = verdicts.remove(i).expect("index found");
                    answered.verdict = Some(verdict.as_str());
                    // A denying verdict decided a call answered with its
                    // errno that no rule of the supervisor refused (it
                    // reads `failed` so far).
                    let by_verdict = verdict.errno().is_some()
                        && event.errno == verdict.errno()
                        && answered.outcome == "failed";
                    if by_verdict {
                        answered.outcome = "refused";
                        answered.rule = Some(rule.unwrap_or_else(|| "policy callback".to_owned()));
                    }
                }
                event.denied = matches!(answered.outcome, "refused" | "killed");
                let mut line = event.record(&answered);
                line.push('\n');
                // One write: a record shares stdout (`--audit -`) or a
                // pipe with the program without being cut.
                if let Err(e) = file.lock().write_all(line.as_bytes()) {
                    if !audit_failed {
                        log::warn!("cannot write the audit log: {e}; further records are lost");
                    }
                    audit_failed = true;
                }
            }
        }
    }
}

/// Sends one record to the audit writer; never blocks a worker (a full
/// queue drops the record, and says so).
fn queue_record(tx: &Sender<Request>, id: u64, event: SyscallEvent, answered: Answered) {
    if tx
        .try_send(Request::Record {
            id,
            event,
            answered,
        })
        .is_err()
    {
        log::warn!("the audit log is behind; a record was dropped");
    }
}
