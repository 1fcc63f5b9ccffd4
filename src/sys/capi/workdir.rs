//! `unotify_builder_workdir` and friends: the copy-on-write work directory
//! ([`SandboxBuilder::workdir`](crate::SandboxBuilder::workdir)) and the
//! change set of a finished run, for C hosts.

use std::ffi::{c_char, c_int, c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::builder::{builder, set_path, UnotifyBuilder, UnotifySandbox};
use super::error::{guard, Fail, UNOTIFY_E_CONFIG, UNOTIFY_E_TOO_LONG};
use crate::cow::{Change, ChangeKind, EntryType, ExitAction, Settled, WorkDir};
use crate::sys::capi_raw;

/// `UNOTIFY_EXIT_COMMIT`: apply the changes to the work directory.
pub const UNOTIFY_EXIT_COMMIT: c_int = 0;
/// `UNOTIFY_EXIT_ABORT`: drop them.
pub const UNOTIFY_EXIT_ABORT: c_int = 1;
/// `UNOTIFY_EXIT_KEEP`: leave the upper tree for the host.
pub const UNOTIFY_EXIT_KEEP: c_int = 2;

/// `unotify_change_fn`: called once per change; a non-zero return stops
/// the listing (and is returned by `unotify_sandbox_changes`).
pub type ChangeFn = Option<
    extern "C" fn(user: *mut c_void, path: *const c_char, kind: c_int, entry: c_int) -> c_int,
>;

fn workdir<'a>(s: *mut UnotifySandbox) -> Result<&'a WorkDir, Fail> {
    let s: &UnotifySandbox =
        capi_raw::handle(s).ok_or_else(|| Fail::invalid("null unotify_sandbox"))?;
    s.inner.workdir().map(|w| &**w).ok_or_else(|| {
        Fail::new(
            UNOTIFY_E_CONFIG,
            "this sandbox has no copy-on-write work directory; call unotify_builder_workdir",
        )
    })
}

fn exit_action(action: c_int) -> Result<ExitAction, Fail> {
    match action {
        UNOTIFY_EXIT_COMMIT => Ok(ExitAction::Commit),
        UNOTIFY_EXIT_ABORT => Ok(ExitAction::Abort),
        UNOTIFY_EXIT_KEEP => Ok(ExitAction::Keep),
        _ => Err(Fail::invalid(
            "exit action: expected UNOTIFY_EXIT_COMMIT, _ABORT or _KEEP",
        )),
    }
}

/// `UNOTIFY_CHANGE_ADDED` (1), `_MODIFIED` (2), `_DELETED` (3).
fn kind_code(kind: ChangeKind) -> c_int {
    match kind {
        ChangeKind::Added => 1,
        ChangeKind::Modified => 2,
        ChangeKind::Deleted => 3,
    }
}

/// `UNOTIFY_ENTRY_FILE` (1), `_DIR` (2), `_SYMLINK` (3), `_OTHER` (4).
fn entry_code(entry: EntryType) -> c_int {
    match entry {
        EntryType::File => 1,
        EntryType::Dir => 2,
        EntryType::Symlink => 3,
        EntryType::Other => 4,
    }
}

/// Calls `f` for each change, in path order; stops at a non-zero return.
fn list(changes: &[Change], f: ChangeFn, user: *mut c_void) -> Result<c_int, Fail> {
    let f = f.ok_or_else(|| Fail::invalid("null unotify_change_fn"))?;
    for c in changes {
        let path = CString::new(c.path.as_os_str().as_bytes())
            .map_err(|_| Fail::invalid("a changed path holds a NUL byte"))?;
        let rc = f(user, path.as_ptr(), kind_code(c.kind), entry_code(c.entry));
        if rc != 0 {
            return Ok(rc);
        }
    }
    Ok(0)
}

/// Runs the program on a copy-on-write view of `dir`
/// (`SandboxBuilder::workdir`).
#[no_mangle]
pub extern "C" fn unotify_builder_workdir(b: *mut UnotifyBuilder, dir: *const c_char) -> c_int {
    set_path(b, dir, "dir", |x, p| x.workdir(p))
}

/// Keeps the upper layer and the commit journal beneath `path`
/// (`SandboxBuilder::cow_storage`; after `unotify_builder_workdir`).
#[no_mangle]
pub extern "C" fn unotify_builder_cow_storage(
    b: *mut UnotifyBuilder,
    path: *const c_char,
) -> c_int {
    set_path(b, path, "path", |x, p| x.cow_storage(p))
}

/// What `unotify_sandbox_finish` does after a successful run.
#[no_mangle]
pub extern "C" fn unotify_builder_on_exit(b: *mut UnotifyBuilder, action: c_int) -> c_int {
    guard(|| {
        let a = exit_action(action)?;
        builder(b)?.apply(|x| x.on_exit(a))
    })
}

/// What `unotify_sandbox_finish` does after a failed run.
#[no_mangle]
pub extern "C" fn unotify_builder_on_error(b: *mut UnotifyBuilder, action: c_int) -> c_int {
    guard(|| {
        let a = exit_action(action)?;
        builder(b)?.apply(|x| x.on_error(a))
    })
}

/// Non-zero: `unotify_sandbox_finish` lists the changes and drops them.
#[no_mangle]
pub extern "C" fn unotify_builder_dry_run(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.dry_run(on != 0)))
}

/// Caps the upper layer at `bytes` (writes past it fail with `ENOSPC`).
#[no_mangle]
pub extern "C" fn unotify_builder_max_disk(b: *mut UnotifyBuilder, bytes: u64) -> c_int {
    guard(|| builder(b)?.apply(|x| x.max_disk(bytes)))
}

/// The program's working directory inside the chroot
/// (`SandboxBuilder::chroot_cwd`).
#[no_mangle]
pub extern "C" fn unotify_builder_chroot_cwd(b: *mut UnotifyBuilder, dir: *const c_char) -> c_int {
    set_path(b, dir, "dir", |x, p| x.chroot_cwd(p))
}

/// Lists the changes made so far (after the runs ended: all of them).
/// Returns `UNOTIFY_OK`, a status code, or the first non-zero value `f`
/// returned.
#[no_mangle]
pub extern "C" fn unotify_sandbox_changes(
    s: *mut UnotifySandbox,
    f: ChangeFn,
    user: *mut c_void,
) -> c_int {
    let mut stopped = 0;
    let rc = guard(|| {
        let changes = workdir(s)?.changes()?;
        stopped = list(&changes, f, user)?;
        Ok(())
    });
    if rc == 0 {
        stopped
    } else {
        rc
    }
}

/// Applies the changes to the work directory (crash-safe) and drops the
/// upper layer; call it once the runs have ended.
#[no_mangle]
pub extern "C" fn unotify_sandbox_commit(s: *mut UnotifySandbox) -> c_int {
    guard(|| workdir(s)?.commit().map(drop).map_err(Fail::from))
}

/// Drops the changes.
#[no_mangle]
pub extern "C" fn unotify_sandbox_abort(s: *mut UnotifySandbox) -> c_int {
    guard(|| workdir(s)?.abort().map_err(Fail::from))
}

/// Keeps the upper layer after the sandbox is freed; its path (with its
/// NUL) is written to `buf` of `len` bytes (`UNOTIFY_E_TOO_LONG` if it
/// does not fit: it is kept all the same).
#[no_mangle]
pub extern "C" fn unotify_sandbox_keep(
    s: *mut UnotifySandbox,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        let upper = workdir(s)?.keep();
        let bytes = upper.as_os_str().as_bytes();
        let out =
            capi_raw::bytes_mut(buf.cast::<u8>(), len).ok_or_else(|| Fail::invalid("null buf"))?;
        if bytes.len() + 1 > out.len() {
            return Err(Fail::new(
                UNOTIFY_E_TOO_LONG,
                format!("the kept layer's path needs {} bytes", bytes.len() + 1),
            ));
        }
        out[..bytes.len()].copy_from_slice(bytes);
        out[bytes.len()] = 0;
        Ok(())
    })
}

/// Settles a run that ended with `wait_status` (from `unotify_child_wait`)
/// as the builder said: `on_error` for a failure, else `on_exit`; a dry run
/// drops the changes. `*outcome` (if not null) is the exit action carried
/// out (`UNOTIFY_EXIT_*`). `f` (may be null) gets the changes committed or
/// dropped.
#[no_mangle]
pub extern "C" fn unotify_sandbox_finish(
    s: *mut UnotifySandbox,
    wait_status: c_int,
    outcome: *mut c_int,
    f: ChangeFn,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        let settled = workdir(s)?.finish(&ExitStatus::from_raw(wait_status))?;
        let (code, changes) = match &settled {
            Settled::Committed(c) => (UNOTIFY_EXIT_COMMIT, Some(c)),
            Settled::Aborted(c) => (UNOTIFY_EXIT_ABORT, Some(c)),
            Settled::Kept(_) => (UNOTIFY_EXIT_KEEP, None),
        };
        if !outcome.is_null() {
            capi_raw::put(outcome, code);
        }
        if let (Some(changes), Some(_)) = (changes, f) {
            list(changes, f, user)?;
        }
        Ok(())
    })
}
