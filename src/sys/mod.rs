//! The kernel interface: every `unsafe` block of the crate lives below this
//! module, each with a `// SAFETY:` note saying why it is sound.
//!
//! The rest of the crate sees only safe functions taking and returning owned
//! file descriptors, byte slices and plain-old-data structs.

// The one place the crate allows it: every block below has a `// SAFETY:`
// line; `capi` holds the C ABI's exported (`no_mangle`) functions.
#![allow(unsafe_code)]

#[cfg(feature = "capi")]
pub mod capi;
#[cfg(feature = "capi")]
pub(crate) mod capi_raw;
pub mod caps;
pub mod cgroup;
pub mod devices;
pub mod eventfd;
pub mod filewrite;
#[cfg(feature = "internals")]
pub mod filtered_calls;
pub mod fs;
pub mod handle;
pub mod host;
pub mod interrupt;
pub mod landlock;
pub mod mem;
pub mod memfd;
pub mod mountinfo;
pub mod net;
pub mod overlay;
pub mod path;
#[cfg(feature = "internals")]
pub mod perf;
pub mod pidfd;
pub mod probe;
pub mod process;
pub(crate) mod procfs;
pub mod ptrace;
mod raw;
pub mod seccomp;
pub mod signals;
pub mod spawn;
mod spawn_child;
pub mod view;

use std::io;

/// Turns a `-1`-on-error libc return value into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for the `long` returned by `libc::syscall`.
pub(crate) fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The system page size (`sysconf(_SC_PAGESIZE)`, read once; 4096 if it
/// cannot be read). Not for the `CLONE_VM` child, which makes raw calls only.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf takes an integer and reads nothing of ours.
        let sz = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(sz)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Retries `f` while it fails with `EINTR`.
pub(crate) fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}
