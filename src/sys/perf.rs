//! Software perf counters (`perf_event_open`), for the benchmarks: context
//! switches, CPU migrations and CPU time of the calling thread and of every
//! thread and process it starts afterwards.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct perf_event_attr`, first version (`PERF_ATTR_SIZE_VER0`, 64 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
/// `attr.inherit`: count in threads and processes created after opening.
const PERF_FLAG_INHERIT: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// What a [`SoftwareCounter`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Software {
    /// CPU time, in nanoseconds.
    TaskClock = 1,
    /// Context switches.
    ContextSwitches = 3,
    /// Moves from one CPU to another.
    CpuMigrations = 4,
}

/// A software counter on the calling thread and everything it starts later.
pub struct SoftwareCounter(OwnedFd);

impl SoftwareCounter {
    /// Opens a counter (fails without `perf_event_open` permission).
    pub fn open(what: Software) -> io::Result<SoftwareCounter> {
        let attr = PerfEventAttr {
            kind: PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: what as u64,
            flags: PERF_FLAG_INHERIT,
            ..PerfEventAttr::default()
        };
        // SAFETY: perf_event_open reads `attr.size` bytes from a live struct;
        // pid 0 / cpu -1 = this thread on any CPU; no group.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                0 as libc::pid_t,
                -1 as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        let fd = super::cvt_long(fd)?;
        // SAFETY: the kernel just returned this fd; nothing else owns it.
        Ok(SoftwareCounter(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// The count so far, finished children included.
    pub fn read(&self) -> io::Result<u64> {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64.
        let n = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        match n {
            8 => Ok(v),
            n if n < 0 => Err(io::Error::last_os_error()),
            _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_threads_cpu_time() {
        let c = SoftwareCounter::open(Software::TaskClock).expect("perf_event_open");
        let a = c.read().unwrap();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(c.read().unwrap() > a);
    }
}
