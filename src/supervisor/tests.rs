//! The answer core and the pipeline against a real listener: a forked
//! child traps one `getppid`, and the test plays the poll thread.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::action::NotifAction;
use crate::arch::Arch;
use crate::filter::FilterBuilder;
use crate::handler::{Chains, HandlerCtx, MemoryCopy};
use crate::notification::Notification;
use crate::sys::probe::{fork_trapping_child, wait_readable, TrappingChild};
use crate::sys::{pidfd, seccomp};
use crate::syscalls;

use super::defer::DeferPool;
use super::enforcement::{Stage, TakeOver};
use super::handle::HandleOps;
use super::notifier::{Notifier, PauseHold, Sent, Settle};
use super::services::Services;
use super::{Shared, SupervisorHandle};

const WAIT: Duration = Duration::from_secs(5);

/// A child stopped in a trapped `getppid`, the listener and the call.
struct Trapped {
    child: TrappingChild,
    listener: Option<OwnedFd>,
    notif: Notification,
    raw: seccomp::SeccompNotif,
}

fn trapped() -> Trapped {
    let nr = syscalls::number(Arch::native(), "getppid").expect("getppid");
    let filter = FilterBuilder::new(Arch::native())
        .notify(nr)
        .and_then(|b| b.build())
        .expect("filter");
    let child = fork_trapping_child(filter.instructions(), libc::c_long::from(nr as i32))
        .expect("fork the trapping child");
    let installed = child.installed(WAIT).expect("installed");
    let listener = pidfd::pidfd_open(child.pid(), 0)
        .and_then(|p| pidfd::pidfd_getfd(p.as_fd(), installed.listener))
        .expect("take the listener");
    assert!(
        wait_readable(listener.as_fd(), WAIT).expect("poll"),
        "no call trapped"
    );
    let raw = seccomp::recv(listener.as_fd()).expect("recv");
    Trapped {
        child,
        listener: Some(listener),
        notif: Notification::from(&raw),
        raw,
    }
}

impl Trapped {
    fn core(&mut self) -> Notifier {
        Notifier::new(self.listener.take().expect("one core"), 0, Vec::new())
    }

    /// What the trapped call returned in the child.
    fn result(&self) -> i64 {
        self.child.call_result(WAIT).expect("the call's result")
    }
}

#[test]
fn one_answer_per_call() {
    let mut t = trapped();
    let core = t.core();
    assert_eq!(
        core.answer(&t.notif, NotifAction::ReturnValue(4242)),
        Sent::Delivered
    );
    assert_eq!(t.result(), 4242);
    // A second answer finds the call gone.
    assert_eq!(
        core.answer(&t.notif, NotifAction::Errno(libc::EPERM)),
        Sent::Stale
    );
    let stats = core.stats();
    assert_eq!((stats.answered, stats.stale), (1, 1));
}

#[test]
fn an_invalid_errno_is_answered_eperm() {
    let mut t = trapped();
    let core = t.core();
    assert_eq!(
        core.answer(&t.notif, NotifAction::Errno(70_000)),
        Sent::Delivered
    );
    assert_eq!(t.result(), -i64::from(libc::EPERM));
}

struct Flag(Arc<AtomicBool>);

impl Settle for Flag {
    fn settle(self: Box<Self>, delivered: bool) {
        self.0.store(delivered, Ordering::SeqCst);
    }
}

#[test]
fn a_held_call_keeps_its_settle_until_released() {
    let mut t = trapped();
    let core = t.core();
    let settled = Arc::new(AtomicBool::new(false));
    let settle = Box::new(Flag(Arc::clone(&settled)));
    assert_eq!(
        core.answer_settled(&t.notif, NotifAction::Hold, Some(settle)),
        Sent::Held
    );
    assert_eq!(core.held().len(), 1);
    assert!(!settled.load(Ordering::SeqCst));
    let held = core.take_held(t.notif.id).expect("held");
    assert!(core.take_held(t.notif.id).is_none(), "taken once");
    core.answer_settled(&held.notif, NotifAction::ReturnValue(7), held.settle);
    assert!(settled.load(Ordering::SeqCst), "settled as delivered");
    assert_eq!(t.result(), 7);
}

#[test]
fn a_paused_call_is_taken_by_the_resume_in_one_step() {
    let mut t = trapped();
    let core = t.core();
    assert_eq!(core.hold_if_paused(&t.notif), PauseHold::NotPaused);
    core.pause();
    assert_eq!(core.hold_if_paused(&t.notif), PauseHold::Held);
    assert_eq!(core.pause_state(), (true, 1));
    let resumed = core.resume();
    assert_eq!(resumed.len(), 1);
    assert_eq!(core.pause_state(), (false, 0));
    assert!(core.held().is_empty());
    assert_eq!(
        core.answer(&resumed[0], NotifAction::ReturnValue(3)),
        Sent::Delivered
    );
    assert_eq!(t.result(), 3);
}

#[test]
fn stopping_answers_held_calls_eperm() {
    let mut t = trapped();
    let core = t.core();
    assert_eq!(core.answer(&t.notif, NotifAction::Hold), Sent::Held);
    core.release_all_held();
    assert_eq!(t.result(), -i64::from(libc::EPERM));
    // Nothing is held once stopping.
    core.pause();
    assert_eq!(core.hold_if_paused(&t.notif), PauseHold::Stopping);
}

/// Records the order the pipeline calls a feature's hooks in.
struct Recorder {
    log: Arc<Mutex<Vec<&'static str>>>,
    take_over: bool,
}

impl Recorder {
    fn note(&self, what: &'static str) {
        self.log.lock().unwrap().push(what);
    }
}

struct Owned<'a>(&'a Recorder);

impl MemoryCopy for Recorder {
    fn serve(&self, _: u64, _: &mut [u8]) -> bool {
        false
    }

    fn serve_cstr(&self, _: u64, _: usize) -> Option<Result<Vec<u8>, crate::MemoryError>> {
        None
    }
}

impl TakeOver for Owned<'_> {
    fn refusal(&self) -> Option<String> {
        None
    }

    fn copy(&self) -> Option<&dyn MemoryCopy> {
        Some(self.0)
    }

    fn argv(&self) -> Option<Vec<String>> {
        None
    }

    fn finish(
        self: Box<Self>,
        core: &Notifier,
        notif: &Notification,
        action: NotifAction,
        fork_token: Option<Box<dyn super::notifier::Settle>>,
    ) {
        self.0.note("finish");
        core.answer_settled(notif, action, fork_token);
    }
}

impl Stage for Recorder {
    fn register(&self, _: &Notifier, _: &Notification) {
        self.note("register");
    }

    fn take_over<'a>(
        &'a self,
        _: &'a Notifier,
        _: &Notification,
    ) -> Option<Box<dyn TakeOver + 'a>> {
        self.note("take_over");
        self.take_over
            .then(|| Box::new(Owned(self)) as Box<dyn TakeOver + 'a>)
    }

    fn verdict(
        &self,
        _: &HandlerCtx<'_>,
        action: NotifAction,
        _: &dyn Fn() -> Option<Vec<std::ffi::OsString>>,
    ) -> NotifAction {
        self.note("verdict");
        // A verdict only tightens.
        match action {
            NotifAction::ReturnValue(_) => NotifAction::Errno(libc::EACCES),
            other => other,
        }
    }

    fn after_verdict(&self) {
        self.note("after_verdict");
    }
}

fn shared_with(core: Notifier, stage: Arc<Recorder>, nr: i32) -> Arc<Shared> {
    let mut chains = Chains::default();
    let log = Arc::clone(&stage.log);
    chains.push(
        nr as u32,
        Arc::new(move |_: &HandlerCtx<'_>| {
            log.lock().unwrap().push("dispatch");
            NotifAction::ReturnValue(1)
        }),
    );
    Arc::new(Shared {
        core,
        chains,
        defer: DeferPool::new(1, Duration::from_secs(1)),
        waker: crate::sys::eventfd::EventFd::new().expect("eventfd"),
        interrupt: None,
        done: (parking_lot::Mutex::new(false), parking_lot::Condvar::new()),
        services: Services::default(),
        stages: vec![stage as Arc<dyn Stage>],
        watch_receives: false,
        tick: None,
        handle: SupervisorHandle::new(Weak::<Shared>::new() as Weak<dyn HandleOps>),
    })
}

#[test]
fn the_pipeline_runs_its_stages_in_order_and_answers_once() {
    for take_over in [false, true] {
        let mut t = trapped();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stage = Arc::new(Recorder {
            log: Arc::clone(&log),
            take_over,
        });
        let shared = shared_with(t.core(), stage, t.notif.nr);
        super::pipeline::process(&shared, t.notif);
        let mut want = vec![
            "register",
            "take_over",
            "dispatch",
            "verdict",
            "after_verdict",
        ];
        if take_over {
            want.push("finish");
        }
        assert_eq!(*log.lock().unwrap(), want);
        // The verdict tightened the handler's answer; one answer was sent.
        assert_eq!(t.result(), -i64::from(libc::EACCES));
        let stats = shared.core.stats();
        assert_eq!((stats.answered, stats.stale), (1, 0));
    }
}

/// The poll thread's hand-over with a fresh pool of `workers`, as a
/// supervisor starts it: no worker runs before the first call.
/// Returns what the call returned, the shared state and how many workers
/// started.
fn hand_over_to_fresh_pool(refuse_threads: bool) -> (i64, Arc<Shared>, usize) {
    let mut t = trapped();
    let stage = Arc::new(Recorder {
        log: Arc::new(Mutex::new(Vec::new())),
        take_over: false,
    });
    let shared = shared_with(t.core(), stage, t.notif.nr);
    let (lanes, handles) = super::lanes::Lanes::new(&shared, 2);
    assert!(
        handles.lock().is_empty(),
        "a worker started before any call"
    );
    lanes.refuse_threads.set(refuse_threads);
    super::poll::hand_over(&shared, &lanes, &t.raw, false);
    lanes.flush();
    // The call is answered before the lanes go (a worker drains its queue).
    let result = t.result();
    drop(lanes);
    let started = std::mem::take(&mut *handles.lock());
    let n = started.len();
    for h in started {
        h.join().expect("worker");
    }
    (result, shared, n)
}

#[test]
fn workers_start_with_the_first_call() {
    let (result, shared, started) = hand_over_to_fresh_pool(false);
    assert_eq!(started, 1, "one worker for one call");
    // Through the pipeline: the verdict's answer, once.
    assert_eq!(result, -i64::from(libc::EACCES));
    assert_eq!(shared.core.stats().answered, 1);
}

/// A worker that cannot start when its first call comes fails that call
/// (EPERM), never leaves it waiting.
#[test]
fn a_call_no_worker_can_take_is_answered_eperm() {
    let (result, shared, started) = hand_over_to_fresh_pool(true);
    assert_eq!(started, 0);
    assert_eq!(result, -i64::from(libc::EPERM));
    let stats = shared.core.stats();
    assert_eq!((stats.received, stats.answered), (1, 1));
}
