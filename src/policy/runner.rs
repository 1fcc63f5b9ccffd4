//! The policy thread: runs the user's callback serially, in the order the
//! calls came, and answers held events through a one-shot gate; writes
//! the audit records.
//!
//! A held call whose worker finds the callback idle (nothing queued for
//! it, nothing running it) runs the callback itself, on the worker: the
//! hand-off to the policy thread and back costs two wake-ups, which on two
//! processors were ~1/3 of a shell script's time under an allow-all
//! callback. The worker holds the mailbox's [`Claim`](mailbox::Claim) and
//! the callback's lock while it runs, so no event overtakes another: an
//! event queued meanwhile is served after it. Such a call cannot be cut
//! short at the hold timeout (user code cannot be interrupted): it is
//! denied when the callback returns late, whatever the verdict.
//!
//! Invariant: a held event always yields a verdict to its worker: the
//! callback's, or `Deny` when it does not answer within the hold timeout,
//! panics, or is gone.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::context::{DynamicPolicy, PolicyContext};
use super::event::{Answered, SyscallEvent};
use super::mailbox::{self, Receiver, Reply, Sender};
use super::verdict::Verdict;

/// The user's callback.
pub type PolicyCallback = dyn FnMut(&SyscallEvent, &mut PolicyContext<'_>) -> Verdict + Send;

/// How long a held call waits for its verdict; a call whose callback runs
/// on its own worker (the callback was idle) waits until it returns, and
/// is denied if that was later than this.
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

/// The verdict (and the rule it names) of each consulted call whose
/// record is still to come, oldest first; `None` without an audit log.
type Verdicts = Option<Mutex<VecDeque<(u64, Verdict, Option<String>)>>>;

/// What runs the callback, on the policy thread or on a worker.
struct Consulter {
    callback: Option<Arc<Mutex<Box<PolicyCallback>>>>,
    dynamic: Arc<DynamicPolicy>,
    verdicts: Verdicts,
}

/// The rule an audit record names for a held call denied because the
/// callback's verdict did not come (or came after the hold timeout).
const NO_VERDICT_IN_TIME: &str = "policy callback: no verdict within the hold timeout";

impl Consulter {
    /// Runs the callback (locked by `f`) on `event`: its verdict and the
    /// rule it named.
    fn ask(
        &self,
        f: Option<&mut Box<PolicyCallback>>,
        event: &SyscallEvent,
    ) -> (Verdict, Option<String>) {
        let mut cx = PolicyContext::new(&self.dynamic);
        let verdict = match f {
            Some(f) => match catch_unwind(AssertUnwindSafe(|| (*f)(event, &mut cx))) {
                Ok(v) => v,
                Err(_) => {
                    log::error!("the policy callback panicked on {}; denying", event.syscall);
                    Verdict::Deny
                }
            },
            None => Verdict::Allow,
        };
        (verdict, cx.take_rule())
    }

    /// Keeps `verdict`, the one call `id` was answered with, for the
    /// call's audit record; logs an `Audit` verdict.
    fn settle(&self, id: u64, event: &SyscallEvent, verdict: Verdict, rule: Option<String>) {
        if verdict == Verdict::Audit {
            log::info!(target: "unotify::audit", "{}", event.to_json(verdict.as_str()));
        }
        if let Some(verdicts) = &self.verdicts {
            let mut verdicts = verdicts.lock();
            if verdicts.len() >= VERDICTS_KEPT {
                verdicts.pop_front();
            }
            verdicts.push_back((id, verdict, rule));
        }
    }

    /// Keeps `Deny` for held call `id`, whose verdict did not come in
    /// time (a verdict still to come is not taken: see [`run`]).
    fn settle_no_verdict(&self, id: u64, event: &SyscallEvent) {
        self.settle(
            id,
            event,
            Verdict::Deny,
            Some(NO_VERDICT_IN_TIME.to_owned()),
        );
    }

    /// The verdict kept for call `id`'s record, taken.
    fn verdict_of(&self, id: u64) -> Option<(Verdict, Option<String>)> {
        let mut verdicts = self.verdicts.as_ref()?.lock();
        let i = verdicts.iter().rposition(|(v_id, _, _)| *v_id == id)?;
        verdicts.remove(i).map(|(_, v, rule)| (v, rule))
    }
}

/// A running policy thread.
pub(crate) struct PolicyRunner {
    tx: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    consulter: Arc<Consulter>,
    hold_timeout: Duration,
}

impl PolicyRunner {
    pub(crate) fn start(setup: &PolicySetup, dynamic: Arc<DynamicPolicy>) -> std::io::Result<Self> {
        let (tx, rx) = mailbox::channel(QUEUE);
        let consulter = Arc::new(Consulter {
            callback: setup.callback.clone(),
            dynamic,
            verdicts: setup.audit.as_ref().map(|_| Mutex::new(VecDeque::new())),
        });
        let audit = setup.audit.clone();
        let on_thread = Arc::clone(&consulter);
        let thread = std::thread::Builder::new()
            .name("unotify-policy".into())
            .spawn(move || run(&rx, &on_thread, audit.as_ref()))?;
        Ok(PolicyRunner {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            consulter,
            hold_timeout: setup.hold_timeout,
        })
    }

    /// Tells the callback about `event`. When `held`, waits for its verdict
    /// (at most the hold timeout; then `Deny`), else returns `None` at once.
    /// A held call finding the callback idle runs it on this thread (see
    /// the module's documentation).
    pub(crate) fn submit(&self, id: u64, event: SyscallEvent, held: bool) -> Option<Verdict> {
        if held {
            if let Some(v) = self.consult_here(id, &event) {
                return Some(v);
            }
        }
        let Some(tx) = self.tx.lock().clone() else {
            if held {
                self.consulter.settle_no_verdict(id, &event);
            }
            return held.then_some(Verdict::Deny);
        };
        if !held {
            let req = Request::Consult {
                id,
                event,
                gate: None,
            };
            if tx.try_send(req, true).is_err() {
                log::warn!("policy callback is behind; an event was not delivered");
            }
            return None;
        }
        let (gate, reply) = mailbox::gate();
        // Kept for the record should no verdict come (the event itself
        // goes to the policy thread).
        let told = self.consulter.verdicts.is_some().then(|| event.clone());
        let req = Request::Consult {
            id,
            event,
            gate: Some(reply),
        };
        let no_verdict = |why: &str| {
            log::warn!("{why}; denying the held call");
            if let Some(event) = &told {
                self.consulter.settle_no_verdict(id, event);
            }
            Some(Verdict::Deny)
        };
        if tx.send_timeout(req, true, self.hold_timeout).is_err() {
            return no_verdict("policy callback queue full or gone");
        }
        match gate.wait(self.hold_timeout) {
            Some(v) => Some(v),
            None => no_verdict(&format!(
                "policy callback gave no verdict within {:?}",
                self.hold_timeout
            )),
        }
    }

    /// Runs the callback on `event` here, if it is idle (`None`: it is
    /// not, queue the event). A verdict later than the hold timeout is
    /// `Deny`, as on the policy thread.
    fn consult_here(&self, id: u64, event: &SyscallEvent) -> Option<Verdict> {
        let callback = self.consulter.callback.as_ref();
        let mut claim = self.tx.lock().as_ref()?.claim(|| match callback {
            Some(cb) => cb.try_lock().map(Some),
            None => Some(None),
        })?;
        let started = Instant::now();
        let (verdict, rule) = self.consulter.ask(claim.guard().as_deref_mut(), event);
        if started.elapsed() > self.hold_timeout {
            log::warn!(
                "policy callback gave no verdict within {:?}; denying the held call",
                self.hold_timeout
            );
            // The record says what the call got, not the late verdict.
            self.consulter.settle_no_verdict(id, event);
            return Some(Verdict::Deny);
        }
        self.consulter.settle(id, event, verdict, rule);
        drop(claim);
        Some(verdict)
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

fn run(rx: &Receiver<Request>, consulter: &Consulter, audit: Option<&Arc<Mutex<File>>>) {
    // One warning for a log that cannot be written (a closed pipe), not
    // one per event.
    let mut audit_failed = false;
    while let Some(req) = rx.recv() {
        match req {
            Request::Consult { id, event, gate } => {
                let mut f = consulter.callback.as_ref().map(|cb| cb.lock());
                let (verdict, rule) = consulter.ask(f.as_deref_mut(), &event);
                drop(f);
                // A worker that gave up already denied its call and kept
                // that for the record: this verdict answered nothing.
                if gate.is_none_or(|gate| gate.give(verdict)) {
                    consulter.settle(id, &event, verdict, rule);
                }
            }
            Request::Record {
                id,
                mut event,
                mut answered,
            } => {
                let Some(file) = audit else { continue };
                if let Some((verdict, rule)) = consulter.verdict_of(id) {
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
        .try_send(
            Request::Record {
                id,
                event,
                answered,
            },
            false,
        )
        .is_err()
    {
        log::warn!("the audit log is behind; a record was dropped");
    }
}
