//! The C ABI's raw side: every pointer and file descriptor a C host hands
//! to `include/unotify.h` becomes a reference, a slice or an owned value
//! here, and nowhere else. `sys::capi` calls these and holds no `unsafe`.
//!
//! The functions trust the C caller to keep the header's contract (a
//! non-null pointer points at what the header says, for as long as the
//! call lasts; a handle is one this library returned and has not freed).
//! That trust is the definition of a C ABI: it cannot be checked, only
//! stated once, here. A null pointer is always checked and refused.

use std::ffi::{c_char, c_int, CStr};
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

/// The NUL-terminated string at `p`, or `None` for a null pointer.
pub(crate) fn c_str<'a>(p: *const c_char) -> Option<&'a CStr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the header requires a non-null string argument to point at a
    // NUL-terminated string that stays unchanged for the call; the borrow
    // ends with the entry point that received it.
    Some(unsafe { CStr::from_ptr(p) })
}

/// `len` bytes at `p` (an empty slice for `len == 0`, whatever `p`).
pub(crate) fn bytes<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the header requires `p` to point at `len` readable bytes for
    // the call; null and oversized lengths are refused above.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}

/// `len` writable bytes at `p` (empty for `len == 0`).
pub(crate) fn bytes_mut<'a>(p: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if p.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the header requires `p` to point at `len` writable bytes that
    // nothing else uses during the call; null and oversized lengths are
    // refused above.
    Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Stores `v` through the out-pointer `p`; `false` for a null pointer.
pub(crate) fn put<T: Copy>(p: *mut T, v: T) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: the header requires a non-null out-pointer to point at
    // writable storage for one `T`; `T: Copy` has no destructor to run on
    // the old value, and `write_unaligned` needs no alignment.
    unsafe { p.write_unaligned(v) };
    true
}

/// Reads the `T` at `p` (a struct the host filled in); `None` for null.
pub(crate) fn get<T: Copy>(p: *const T) -> Option<T> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the header requires a non-null input struct pointer to point
    // at an initialised `T`; `read_unaligned` needs no alignment.
    Some(unsafe { p.read_unaligned() })
}

/// Moves `v` to the heap and gives the host its address (a handle).
pub(crate) fn into_handle<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// The object behind a handle, borrowed for the call; `None` for null.
pub(crate) fn handle<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: a non-null handle is one `into_handle` returned and the host
    // has not freed (the header's contract); shared use from several
    // threads is allowed only for types the header says are thread-safe,
    // which are `Sync`.
    unsafe { p.as_ref() }
}

/// The object behind a handle, borrowed exclusively for the call.
pub(crate) fn handle_mut<'a, T>(p: *mut T) -> Option<&'a mut T> {
    // SAFETY: as `handle`; the header forbids using one such handle
    // (builder, command, child) from two threads at once, so the borrow is
    // exclusive.
    unsafe { p.as_mut() }
}

/// Takes back and drops the object behind a handle (null: nothing).
pub(crate) fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: a non-null handle came from `into_handle` and the header
        // says a handle is freed once and not used afterwards.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Takes ownership of the host's file descriptor `fd` (the header says
/// which calls take an fd over); `None` for a negative number.
pub(crate) fn take_fd(fd: c_int) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: the header says the host gives this open fd up with the call
    // and does not close or use it afterwards: it is ours alone.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A close-on-exec duplicate of the host's file descriptor `fd`, which the
/// host keeps.
pub(crate) fn dup_host_fd(fd: c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the header requires `fd` to be open for the call; it is only
    // borrowed to duplicate it, and the host keeps owning it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

/// A host's `user` pointer, carried to the worker threads and the
/// deferral pool and handed back to the host's callbacks unchanged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostPtr(pub(crate) *mut std::ffi::c_void);

// SAFETY: the library never dereferences a `HostPtr`; it only passes it
// back to the host's callbacks, which the header says run on any thread
// (the host makes its data safe for that).
unsafe impl Send for HostPtr {}
// SAFETY: as for `Send`: shared only to be copied and passed back.
unsafe impl Sync for HostPtr {}
