//! `unotify_denied_paths_*`: a shared, changeable set of denied paths
//! ([`DeniedPaths`]) behind a handle. The host keeps the handle, the
//! sandboxes built with it share the set, and a change made from any thread
//! (a handler, a host thread) applies to every one of them at once.

use std::ffi::{c_char, c_int};
use std::sync::Arc;

use super::builder::{os, UnotifyBuilder};
use super::error::{guard, Fail, UNOTIFY_E_CONFIG};
use crate::paths::DeniedPaths;
use crate::sys::capi_raw;

/// `unotify_denied_paths`: one set of denied paths, shared by the handle
/// and the sandboxes built with it.
pub struct UnotifyDeniedPaths {
    inner: Arc<DeniedPaths>,
}

fn set<'a>(s: *const UnotifyDeniedPaths) -> Result<&'a UnotifyDeniedPaths, Fail> {
    capi_raw::handle(s).ok_or_else(|| Fail::invalid("null unotify_denied_paths"))
}

/// `*out` is a new, empty set.
#[no_mangle]
pub extern "C" fn unotify_denied_paths_new(out: *mut *mut UnotifyDeniedPaths) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(Fail::invalid("null out"));
        }
        let s = UnotifyDeniedPaths {
            inner: Arc::new(DeniedPaths::new()),
        };
        capi_raw::put(out, capi_raw::into_handle(s));
        Ok(())
    })
}

/// Frees the handle (null: nothing); sandboxes built with the set keep it.
#[no_mangle]
pub extern "C" fn unotify_denied_paths_free(s: *mut UnotifyDeniedPaths) {
    guard(|| {
        capi_raw::free_handle(s);
        Ok(())
    });
}

/// Denies `path` from now on; `*added` (if not null) is 1, or 0 if it was
/// denied already.
#[no_mangle]
pub extern "C" fn unotify_denied_paths_deny(
    s: *const UnotifyDeniedPaths,
    path: *const c_char,
    added: *mut c_int,
) -> c_int {
    guard(|| {
        let s = set(s)?;
        let newly = s.inner.deny(os(path, "path")?);
        capi_raw::put(added, c_int::from(newly));
        Ok(())
    })
}

/// Allows again a path denied with `unotify_denied_paths_deny`;
/// `UNOTIFY_E_CONFIG` if it was not (paths of `unotify_builder_deny_path`
/// stay denied).
#[no_mangle]
pub extern "C" fn unotify_denied_paths_allow(
    s: *const UnotifyDeniedPaths,
    path: *const c_char,
) -> c_int {
    guard(|| {
        let s = set(s)?;
        if s.inner.allow(os(path, "path")?) {
            Ok(())
        } else {
            Err(Fail::new(
                UNOTIFY_E_CONFIG,
                "this path was not denied with unotify_denied_paths_deny (paths given to \
                 unotify_builder_deny_path stay denied)",
            ))
        }
    })
}

/// `*denied` is 1 if `path`, resolved now, is denied (by name, identity or
/// a denied directory above it), else 0.
#[no_mangle]
pub extern "C" fn unotify_denied_paths_is_denied(
    s: *const UnotifyDeniedPaths,
    path: *const c_char,
    denied: *mut c_int,
) -> c_int {
    guard(|| {
        let s = set(s)?;
        let yes = s.inner.is_denied(os(path, "path")?);
        if !capi_raw::put(denied, c_int::from(yes)) {
            return Err(Fail::invalid("null denied"));
        }
        Ok(())
    })
}

/// `*count` is the number of denied paths in the set.
#[no_mangle]
pub extern "C" fn unotify_denied_paths_count(
    s: *const UnotifyDeniedPaths,
    count: *mut usize,
) -> c_int {
    guard(|| {
        let n = set(s)?.inner.paths().len();
        if !capi_raw::put(count, n) {
            return Err(Fail::invalid("null count"));
        }
        Ok(())
    })
}

/// Makes the sandbox enforce the set `s` (shared, not copied; the host
/// keeps its handle). Paths of `unotify_builder_deny_path` are added to it
/// for good when the sandbox is built.
#[no_mangle]
pub extern "C" fn unotify_builder_denied_paths(
    b: *mut UnotifyBuilder,
    s: *const UnotifyDeniedPaths,
) -> c_int {
    guard(|| {
        let b = capi_raw::handle_mut(b).ok_or_else(|| Fail::invalid("null unotify_builder"))?;
        let shared = Arc::clone(&set(s)?.inner);
        b.apply(|x| x.denied_paths(shared))
    })
}

impl std::fmt::Debug for UnotifyDeniedPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnotifyDeniedPaths")
            .field("paths", &self.inner.paths())
            .finish()
    }
}
