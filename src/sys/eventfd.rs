//! An eventfd used to wake a thread blocked in `poll(2)`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// A non-blocking, close-on-exec eventfd.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// Creates one with a zero counter.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes two integers and returns a new fd or -1.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: the kernel just created this fd; we are its only owner.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes it readable (wakes a `poll(2)` on it).
    pub fn signal(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64, as eventfd requires.
        let n = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // A full counter is still readable: the wake-up is not lost.
        if e.raw_os_error() == Some(libc::EAGAIN) {
            Ok(())
        } else {
            Err(e)
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl EventFd {
    /// Resets the counter (after a wake-up was seen), so the next `poll(2)`
    /// waits again.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; a non-blocking
        // eventfd with a zero counter answers EAGAIN, which is fine here.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}
