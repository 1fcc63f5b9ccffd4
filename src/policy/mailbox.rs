//! How workers reach the policy thread: its request queue ([`channel`]),
//! the one-shot [`Gate`] a held call waits on for its verdict, and the
//! [`Claim`] a worker takes to run the callback itself when nothing is
//! before it. Used by `runner` only; calls nothing of the crate.
//!
//! Both sleep at once on a condition variable. A `crossbeam` channel's
//! blocking receive spins and yields before it sleeps: every held call
//! (each open under a policy callback) made the policy thread and the
//! waiting worker spin and `sched_yield` about six times between them,
//! taking the two processors from the program whose call they decide
//! (measured on the pyenv-shim run: ~5,500 `sched_yield` for ~1,650 held
//! calls, ~70 ms of the supervisor's processor time).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A bounded queue of `T` from any number of senders to one receiver.
/// It is closed when the last [`Sender`] is dropped (the receiver then
/// takes what is left and ends) or when the [`Receiver`] is (what is
/// queued is dropped, and every later send fails at once: a held call
/// whose policy thread is gone is denied without waiting).
pub(super) fn channel<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            ordered: 0,
            serving: false,
            claimed: false,
            senders: 1,
            receiver: true,
        }),
        ready: Condvar::new(),
        space: Condvar::new(),
        cap,
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item is queued or the last sender is gone.
    ready: Condvar,
    /// Signalled when an item is taken (a held call may wait for room).
    space: Condvar,
    cap: usize,
}

/// Ordering: an item sent `ordered` is served after every ordered item
/// sent before it and after every [`Claim`] taken before it, and a claim
/// is taken only when no ordered item is queued or being served, so the
/// ordered items and the claims' work happen in the order they came (the
/// claim's holder and the receiver serialize on a lock of their own, which
/// the claim holds from the moment it is taken: see [`Sender::claim`]).
struct State<T> {
    /// Queued items, each with whether it is ordered.
    items: VecDeque<(T, bool)>,
    /// Ordered items among `items`.
    ordered: usize,
    /// Whether the receiver is serving an ordered item (from taking it
    /// until its next `recv`).
    serving: bool,
    /// Whether a [`Claim`] is held.
    claimed: bool,
    /// Live [`Sender`]s; none left: closed.
    senders: usize,
    /// Whether the [`Receiver`] lives; gone: closed.
    receiver: bool,
}

/// The sending side of [`channel`].
pub(super) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.senders -= 1;
        if st.senders == 0 {
            // Woken after the lock is released (not into a held lock).
            drop(st);
            self.shared.ready.notify_all();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full (then gives it back).
    /// `ordered`: see [`State`].
    pub(super) fn try_send(&self, item: T, ordered: bool) -> Result<(), T> {
        self.send_until(item, ordered, None)
    }

    /// Queues `item`, waiting up to `timeout` for room (then gives it
    /// back).
    pub(super) fn send_timeout(&self, item: T, ordered: bool, timeout: Duration) -> Result<(), T> {
        self.send_until(item, ordered, Some(Instant::now() + timeout))
    }

    /// Claims the receiver's turn when it is idle: no ordered item queued
    /// or being served, no other claim held, the receiver alive, and
    /// `take` (run under the queue's lock) yields `G`, the lock the work
    /// serializes on. `None` otherwise: queue the work instead. Ordered
    /// items sent while the claim is held are served after it (their
    /// server waits for the lock the claim holds).
    pub(super) fn claim<G>(&self, take: impl FnOnce() -> Option<G>) -> Option<Claim<T, G>> {
        let mut st = self.shared.state.lock();
        if !st.receiver || st.ordered > 0 || st.serving || st.claimed {
            return None;
        }
        let guard = take()?;
        st.claimed = true;
        Some(Claim {
            shared: Arc::clone(&self.shared),
            guard,
        })
    }

    fn send_until(&self, item: T, ordered: bool, deadline: Option<Instant>) -> Result<(), T> {
        let mut st = self.shared.state.lock();
        while st.receiver && st.items.len() >= self.shared.cap {
            match deadline {
                Some(d) if !self.shared.space.wait_until(&mut st, d).timed_out() => {}
                _ => return Err(item),
            }
        }
        if !st.receiver {
            return Err(item);
        }
        st.items.push_back((item, ordered));
        st.ordered += usize::from(ordered);
        drop(st);
        self.shared.ready.notify_one();
        Ok(())
    }
}

/// The receiving side of [`channel`].
pub(super) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item, waiting for one; `None` once the queue is closed and
    /// empty. The item taken before (if ordered) is served by now.
    pub(super) fn recv(&self) -> Option<T> {
        let mut st = self.shared.state.lock();
        st.serving = false;
        loop {
            if let Some((item, ordered)) = st.items.pop_front() {
                st.ordered -= usize::from(ordered);
                st.serving = ordered;
                drop(st);
                self.shared.space.notify_one();
                return Some(item);
            }
            if st.senders == 0 {
                return None;
            }
            self.shared.ready.wait(&mut st);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.receiver = false;
        // Dropped outside the lock: a queued `Reply` wakes its waiter.
        let left = std::mem::take(&mut st.items);
        drop(st);
        self.shared.space.notify_all();
        drop(left);
    }
}

/// The receiver's turn, taken by a sender ([`Sender::claim`]): holds
/// `guard` (the lock the work serializes on) until dropped.
pub(super) struct Claim<T, G> {
    shared: Arc<Shared<T>>,
    guard: G,
}

impl<T, G> Claim<T, G> {
    /// The lock taken with the claim.
    pub(super) fn guard(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<T, G> Drop for Claim<T, G> {
    fn drop(&mut self) {
        self.shared.state.lock().claimed = false;
    }
}

/// Where one held call's verdict is given ([`Reply::give`]) and waited
/// for ([`Gate::wait`]).
pub(super) struct Gate<V> {
    slot: Mutex<Slot<V>>,
    given: Condvar,
}

enum Slot<V> {
    Waiting,
    Given(V),
    /// The [`Reply`] was dropped without a verdict (the request was not
    /// served): the waiter stops waiting at once.
    Dropped,
    /// The waiter stopped waiting (its timeout passed) before a verdict
    /// came: a verdict given now is not what its call was answered with.
    Abandoned,
}

/// The giving side of a [`Gate`], sent with the request.
pub(super) struct Reply<V> {
    gate: Arc<Gate<V>>,
}

/// A gate and its reply.
pub(super) fn gate<V>() -> (Arc<Gate<V>>, Reply<V>) {
    let gate = Arc::new(Gate {
        slot: Mutex::new(Slot::Waiting),
        given: Condvar::new(),
    });
    (
        Arc::clone(&gate),
        Reply {
            gate: Arc::clone(&gate),
        },
    )
}

impl<V> Gate<V> {
    /// The verdict, once given; `None` if none comes within `timeout` or
    /// the reply was dropped without one. After `None`, the gate is
    /// abandoned: a later [`Reply::give`] says its verdict was not taken.
    pub(super) fn wait(&self, timeout: Duration) -> Option<V> {
        let deadline = Instant::now() + timeout;
        let mut slot = self.slot.lock();
        loop {
            match std::mem::replace(&mut *slot, Slot::Abandoned) {
                Slot::Given(v) => return Some(v),
                Slot::Dropped | Slot::Abandoned => return None,
                Slot::Waiting => *slot = Slot::Waiting,
            }
            if self.given.wait_until(&mut slot, deadline).timed_out() {
                // Decided under the slot's lock: a verdict given from now
                // on finds `Abandoned` and is told so.
                return match std::mem::replace(&mut *slot, Slot::Abandoned) {
                    Slot::Given(v) => Some(v),
                    _ => None,
                };
            }
        }
    }
}

impl<V> Reply<V> {
    /// Gives the verdict; `false` if the waiter had given up already
    /// (then nobody reads it, and its call was answered without it).
    pub(super) fn give(self, v: V) -> bool {
        self.set(Slot::Given(v))
    }

    /// Sets a waiting slot to `to`; whether it was waiting.
    fn set(&self, to: Slot<V>) -> bool {
        let mut slot = self.gate.slot.lock();
        let waiting = matches!(*slot, Slot::Waiting);
        if waiting {
            *slot = to;
        }
        drop(slot);
        self.gate.given.notify_one();
        waiting
    }
}

impl<V> Drop for Reply<V> {
    fn drop(&mut self) {
        // After `give`: the slot is no longer waiting; nothing changes.
        let _ = self.set(Slot::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_and_ends_with_its_last_sender() {
        let (tx, rx) = channel(2);
        assert!(tx.try_send(1, true).is_ok());
        let tx2 = tx.clone();
        assert!(tx2.try_send(2, true).is_ok());
        assert_eq!(tx.try_send(3, true), Err(3));
        assert_eq!(
            tx.send_timeout(3, true, Duration::from_millis(10)),
            Err(3),
            "no room comes"
        );
        assert_eq!(rx.recv(), Some(1));
        assert!(tx.send_timeout(3, true, Duration::from_millis(10)).is_ok());
        drop(tx);
        drop(tx2);
        assert_eq!(rx.recv(), Some(2));
        assert_eq!(rx.recv(), Some(3));
        assert_eq!(rx.recv(), None);
    }

    /// Review: with no `Drop` for the receiver, a policy thread that had
    /// ended left its queue open: each held call waited its whole timeout
    /// for a verdict nobody would give.
    #[test]
    fn a_gone_receiver_closes_the_queue_and_wakes_the_waiters() {
        let (tx, rx) = channel::<Reply<u32>>(1);
        let (queued, reply) = gate();
        tx.try_send(reply, true).ok().expect("room");
        let (_, blocked) = gate();
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                tx.send_timeout(blocked, true, Duration::from_secs(30))
                    .is_err()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        drop(rx);
        assert_eq!(queued.wait(Duration::from_secs(30)), None, "a verdict?");
        assert!(sender.join().unwrap(), "a send waiting for room failed");
        let (_, later) = gate();
        assert!(tx.try_send(later, true).is_err(), "a later send failed");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waited for the timeouts"
        );
    }

    /// A claim is taken only when no ordered item is queued or being
    /// served and no other claim is held; unordered items do not matter.
    #[test]
    fn a_claim_never_overtakes_an_ordered_item() {
        let (tx, rx) = channel(8);
        let lock = Mutex::new(());
        let take = || lock.try_lock();
        tx.try_send(1, false).unwrap();
        let claim = tx.claim(take).expect("only an unordered item queued");
        assert!(tx.claim(take).is_none(), "a second claim");
        drop(claim);
        tx.try_send(2, true).unwrap();
        assert!(tx.claim(take).is_none(), "an ordered item queued");
        assert_eq!(rx.recv(), Some(1));
        assert!(tx.claim(take).is_none(), "an ordered item still queued");
        assert_eq!(rx.recv(), Some(2));
        assert!(tx.claim(take).is_none(), "an ordered item being served");
        tx.try_send(3, false).unwrap();
        assert_eq!(rx.recv(), Some(3));
        let held = lock.lock();
        assert!(tx.claim(take).is_none(), "its lock is taken elsewhere");
        drop(held);
        let claim = tx.claim(take).expect("idle");
        drop(claim);
        drop(rx);
        assert!(tx.claim(take).is_none(), "the receiver is gone");
    }

    #[test]
    fn a_waiter_wakes_for_a_verdict_from_another_thread() {
        let (tx, rx) = channel::<Reply<u32>>(4);
        let server = std::thread::spawn(move || {
            while let Some(reply) = rx.recv() {
                assert!(reply.give(7), "taken");
            }
        });
        for _ in 0..100 {
            let (g, reply) = gate();
            tx.try_send(reply, true).ok().expect("room");
            assert_eq!(g.wait(Duration::from_secs(5)), Some(7));
        }
        drop(tx);
        server.join().unwrap();
    }

    #[test]
    fn a_reply_dropped_unanswered_ends_the_wait_at_once() {
        let (g, reply) = gate::<u32>();
        drop(reply);
        assert!(matches!(*g.slot.lock(), Slot::Dropped));
        assert_eq!(g.wait(Duration::from_secs(5)), None);
        let (g, reply) = gate::<u32>();
        assert_eq!(
            g.wait(Duration::from_millis(10)),
            None,
            "no verdict in time"
        );
        assert!(
            !reply.give(7),
            "a verdict after the wait ended is not taken"
        );
        assert_eq!(g.wait(Duration::from_millis(10)), None, "nor read later");
    }
}
