//! A counting semaphore on `parking_lot`, for deferral admission.
//!
//! Invariant: `available + permits alive == capacity` at all times; a
//! [`Permit`] gives its unit back exactly once, when dropped.

use std::sync::Arc;

use parking_lot::Mutex;

/// A counting semaphore whose permits are released on drop.
#[derive(Debug)]
pub(crate) struct Semaphore {
    available: Mutex<usize>,
    capacity: usize,
}

/// One unit of a [`Semaphore`], given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    sem: Arc<Semaphore>,
}

impl Semaphore {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Semaphore {
            available: Mutex::new(capacity),
            capacity,
        })
    }

    /// Takes a unit if one is free; never blocks.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut avail = self.available.lock();
        if *avail == 0 {
            return None;
        }
        *avail -= 1;
        Some(Permit {
            sem: Arc::clone(self),
        })
    }

    /// Units currently taken.
    pub(crate) fn in_use(&self) -> usize {
        self.capacity - *self.available.lock()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut avail = self.sem.available.lock();
        *avail += 1;
        debug_assert!(*avail <= self.sem.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_capacity_and_gives_back_on_drop() {
        let sem = Semaphore::new(2);
        let a = sem.try_acquire().expect("first");
        let b = sem.try_acquire().expect("second");
        assert!(sem.try_acquire().is_none());
        assert_eq!(sem.in_use(), 2);
        drop(a);
        let c = sem.try_acquire().expect("after release");
        drop((b, c));
        assert_eq!(sem.in_use(), 0);
    }

    #[test]
    fn permits_cross_threads() {
        let sem = Semaphore::new(4);
        let permits: Vec<_> = (0..4).map(|_| sem.try_acquire().unwrap()).collect();
        let t = std::thread::spawn(move || drop(permits));
        t.join().unwrap();
        assert_eq!(sem.in_use(), 0);
    }
}
