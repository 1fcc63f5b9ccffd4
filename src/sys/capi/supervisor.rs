//! `unotify_supervisor_*`: a [`SupervisorHandle`] behind a handle, from a
//! handler or a child: counters, held calls and their release.

use std::ffi::c_int;

use super::child::UnotifyStats;
use super::error::{guard, Fail, UNOTIFY_E_GONE};
use super::handler::{
    discard, to_action, UnotifyAction, UnotifyNotif, UNOTIFY_DEFER, UNOTIFY_HOLD,
};
use crate::action::NotifAction;
use crate::supervisor::SupervisorHandle;
use crate::sys::capi_raw;

/// `unotify_supervisor`: a supervisor, not kept alive by the handle.
pub struct UnotifySupervisor {
    inner: SupervisorHandle,
}

impl UnotifySupervisor {
    pub(crate) fn new(inner: SupervisorHandle) -> Self {
        UnotifySupervisor { inner }
    }
}

fn supervisor<'a>(s: *const UnotifySupervisor) -> Result<&'a UnotifySupervisor, Fail> {
    capi_raw::handle(s).ok_or_else(|| Fail::invalid("null unotify_supervisor"))
}

fn gone() -> Fail {
    Fail::new(UNOTIFY_E_GONE, "the supervisor has stopped")
}

/// The supervisor's counters; `UNOTIFY_E_GONE` once it has stopped.
#[no_mangle]
pub extern "C" fn unotify_supervisor_stats(
    s: *const UnotifySupervisor,
    out: *mut UnotifyStats,
) -> c_int {
    guard(|| {
        let st = supervisor(s)?.inner.stats().ok_or_else(gone)?;
        if !capi_raw::put(out, UnotifyStats::from(st)) {
            return Err(Fail::invalid("null out"));
        }
        Ok(())
    })
}

/// Copies up to `cap` held calls into `buf`; `*count` is how many are held
/// (may exceed `cap`).
#[no_mangle]
pub extern "C" fn unotify_supervisor_held(
    s: *const UnotifySupervisor,
    buf: *mut UnotifyNotif,
    cap: usize,
    count: *mut usize,
) -> c_int {
    guard(|| {
        let held = supervisor(s)?.inner.held();
        if count.is_null() || (buf.is_null() && cap > 0) {
            return Err(Fail::invalid("null buf or count"));
        }
        for (i, n) in held.iter().take(cap).enumerate() {
            capi_raw::put(buf.wrapping_add(i), UnotifyNotif::from(n));
        }
        capi_raw::put(count, held.len());
        Ok(())
    })
}

/// Answers the held call `id` with `*action` (`UNOTIFY_HOLD` and
/// `UNOTIFY_DEFER` are answered `EPERM`). `UNOTIFY_E_GONE` if no such call
/// is held (answered already, never held, or the supervisor stopped).
#[no_mangle]
pub extern "C" fn unotify_supervisor_release(
    s: *const UnotifySupervisor,
    id: u64,
    action: *const UnotifyAction,
) -> c_int {
    guard(|| {
        let s = supervisor(s)?;
        let a = capi_raw::get(action).ok_or_else(|| Fail::invalid("null action"))?;
        let answer = match a.kind {
            UNOTIFY_HOLD | UNOTIFY_DEFER => {
                discard(&a);
                NotifAction::Errno(libc::EPERM)
            }
            _ => {
                // Only a deferral reads the notification, and it is refused.
                let none = UnotifyNotif {
                    id,
                    pid: 0,
                    nr: -1,
                    arch: 0,
                    reserved: 0,
                    instruction_pointer: 0,
                    args: [0; 6],
                };
                to_action(a, &none, false)
            }
        };
        if s.inner.release(id, answer) {
            Ok(())
        } else {
            Err(Fail::new(UNOTIFY_E_GONE, format!("no call {id} is held")))
        }
    })
}

/// Pauses the sandbox (forks held, process group stopped); needs
/// `unotify_builder_track_processes` or a process limit (else
/// `UNOTIFY_E_CONFIG`).
#[no_mangle]
pub extern "C" fn unotify_supervisor_pause(s: *const UnotifySupervisor) -> c_int {
    guard(|| Ok(supervisor(s)?.inner.pause()?))
}

/// Resumes a paused sandbox; `*answered` (if not null) is the number of
/// forks the pause held and that are answered now.
#[no_mangle]
pub extern "C" fn unotify_supervisor_resume(
    s: *const UnotifySupervisor,
    answered: *mut usize,
) -> c_int {
    guard(|| {
        let n = supervisor(s)?.inner.resume()?;
        capi_raw::put(answered, n);
        Ok(())
    })
}

/// Frees a supervisor handle (null: nothing); the supervisor runs on.
#[no_mangle]
pub extern "C" fn unotify_supervisor_free(s: *mut UnotifySupervisor) {
    guard(|| {
        capi_raw::free_handle(s);
        Ok(())
    });
}

impl std::fmt::Debug for UnotifySupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnotifySupervisor").finish_non_exhaustive()
    }
}
