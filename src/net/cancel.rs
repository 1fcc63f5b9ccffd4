//! Calls made on the program's behalf that may block (a blocking connect, a
//! send on a full buffer) are cancelled when the program's process is gone:
//! a watcher thread polls the process's pidfd and shuts the duplicated
//! socket down, which wakes the blocked call at once. Without it, a program
//! that exits while such a call is blocked keeps the deferral (and `wait`)
//! busy until the call's own timeout, up to minutes for a TCP connect.
//!
//! Owned by the `Enforcer`; the watcher starts with the first registration
//! and ends when the enforcer is dropped. Uses `sys` only.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::sys::eventfd::EventFd;
use crate::sys::net as sysnet;

struct Entry {
    key: u64,
    /// The program's process (not the thread: a thread cannot leave a
    /// trapped call while its process lives).
    process: OwnedFd,
    /// Another duplicate of the socket the blocked call uses.
    sock: OwnedFd,
}

struct Inner {
    entries: Mutex<Vec<Arc<Entry>>>,
    wake: EventFd,
    stop: AtomicBool,
    next: AtomicU64,
    /// Whether the watcher looks at `entries` again within a tick on its
    /// own: then a registration need not wake it (a wake-up per blocking
    /// call would cost two context switches).
    ticking: AtomicBool,
}

/// How often a ticking watcher takes a fresh copy of the registrations.
const TICK_MS: i32 = 50;
/// How long the watcher keeps ticking after the last registration is gone.
const IDLE_TICKS: u32 = 20;

/// The registry of blocking calls and its watcher.
pub(crate) struct Canceller {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A registered call; dropping it (when the call returns) unregisters it.
pub(crate) struct Registration {
    inner: Arc<Inner>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The watcher's copy keeps the entry's descriptors open until its
        // next tick.
        self.inner.entries.lock().retain(|e| e.key != self.key);
    }
}

impl Canceller {
    /// A registry; `None` if its eventfd cannot be created (calls are then
    /// not cancellable, which only delays the end of a dead program).
    pub(crate) fn new() -> Option<Canceller> {
        let wake = EventFd::new()
            .map_err(|e| log::warn!("network: cannot create the cancel eventfd: {e}"))
            .ok()?;
        Some(Canceller {
            inner: Arc::new(Inner {
                entries: Mutex::new(Vec::new()),
                wake,
                stop: AtomicBool::new(false),
                next: AtomicU64::new(0),
                ticking: AtomicBool::new(false),
            }),
            thread: Mutex::new(None),
        })
    }

    /// Registers a call blocked on `sock` for the process `process`.
    /// `None` if it cannot be watched (the call then runs uncancellable).
    pub(crate) fn register(&self, process: OwnedFd, sock: OwnedFd) -> Option<Registration> {
        self.ensure_thread()?;
        let key = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .entries
            .lock()
            .push(Arc::new(Entry { key, process, sock }));
        // Pairs with the store of `false` in `watch`: either the watcher
        // still ticks (and takes the new list within a tick), or it re-reads
        // the list after this push, or this thread sees `false` and wakes it.
        if !self.inner.ticking.load(Ordering::SeqCst) {
            let _ = self.inner.wake.signal();
        }
        Some(Registration {
            inner: Arc::clone(&self.inner),
            key,
        })
    }

    fn ensure_thread(&self) -> Option<()> {
        let mut t = self.thread.lock();
        if t.is_some() {
            return Some(());
        }
        let inner = Arc::clone(&self.inner);
        match std::thread::Builder::new()
            .name("unotify-net-cancel".into())
            .spawn(move || watch(&inner))
        {
            Ok(h) => {
                *t = Some(h);
                Some(())
            }
            Err(e) => {
                log::warn!("network: cannot start the cancel thread: {e}");
                None
            }
        }
    }
}

impl Drop for Canceller {
    fn drop(&mut self) {
        // Pairs with the load in `watch`: the watcher sees the flag after
        // the wake-up.
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = self.inner.wake.signal();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn watch(inner: &Inner) {
    let mut idle = 0u32;
    inner.ticking.store(true, Ordering::SeqCst);
    loop {
        inner.wake.drain();
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut entries: Vec<Arc<Entry>> = inner.entries.lock().clone();
        if entries.is_empty() {
            idle += 1;
            if idle > IDLE_TICKS {
                // Pairs with the load in `register`.
                inner.ticking.store(false, Ordering::SeqCst);
                entries = inner.entries.lock().clone();
                if entries.is_empty() {
                    if let Err(e) = sysnet::poll_many(&[inner.wake.as_fd()], -1) {
                        log::error!("network: the cancel thread cannot poll ({e}); it stops");
                        return;
                    }
                    inner.ticking.store(true, Ordering::SeqCst);
                    idle = 0;
                    continue;
                }
                inner.ticking.store(true, Ordering::SeqCst);
            }
        } else {
            idle = 0;
        }
        let mut fds: Vec<BorrowedFd<'_>> = vec![inner.wake.as_fd()];
        fds.extend(entries.iter().map(|e| e.process.as_fd()));
        let ready = match sysnet::poll_many(&fds, TICK_MS) {
            Ok(r) => r,
            Err(e) => {
                log::error!("network: the cancel thread cannot poll ({e}); it stops");
                return;
            }
        };
        for (e, gone) in entries.iter().zip(&ready[1..]) {
            if *gone {
                log::debug!("network: the program is gone; cancelling its blocked call");
                let _ = sysnet::shutdown(e.sock.as_fd());
                inner.entries.lock().retain(|x| x.key != e.key);
            }
        }
    }
}
