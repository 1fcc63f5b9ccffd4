//! Status codes and the thread-local last-error message; `guard` wraps
//! every entry point so that no panic crosses into C.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// Success.
pub const UNOTIFY_OK: c_int = 0;
/// A null pointer, an out-of-range number or an unknown enum value.
pub const UNOTIFY_E_INVALID: c_int = -1;
/// A system call name the filter does not know.
pub const UNOTIFY_E_UNKNOWN_SYSCALL: c_int = -2;
/// A policy that cannot be built (conflicting rules, bad errno, bad spec).
pub const UNOTIFY_E_CONFIG: c_int = -3;
/// The kernel lacks something the sandbox needs.
pub const UNOTIFY_E_UNSUPPORTED: c_int = -4;
/// The program to run was not found.
pub const UNOTIFY_E_NOT_FOUND: c_int = -5;
/// The program was found but cannot be executed.
pub const UNOTIFY_E_CANNOT_EXECUTE: c_int = -6;
/// Setting up the sandbox, or a system call of the supervisor, failed.
pub const UNOTIFY_E_SYSTEM: c_int = -7;
/// A wait ran out of time.
pub const UNOTIFY_E_TIMEOUT: c_int = -8;
/// The trapped call is no longer pending (its task died or was interrupted).
pub const UNOTIFY_E_GONE: c_int = -9;
/// The trapped task's memory cannot be read or written at that address.
pub const UNOTIFY_E_FAULT: c_int = -10;
/// A string is longer than the limit or the buffer given.
pub const UNOTIFY_E_TOO_LONG: c_int = -11;
/// An internal error (a panic inside the library, caught at the boundary).
pub const UNOTIFY_E_INTERNAL: c_int = -12;

/// A failed entry point: its status code and the message to keep.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) code: c_int,
    pub(crate) message: String,
}

impl Fail {
    pub(crate) fn new(code: c_int, message: impl Into<String>) -> Self {
        Fail {
            code,
            message: message.into(),
        }
    }

    /// A null or malformed argument.
    pub(crate) fn invalid(what: &str) -> Self {
        Fail::new(UNOTIFY_E_INVALID, format!("invalid argument: {what}"))
    }

    /// A failed system call.
    pub(crate) fn io(what: &str, e: std::io::Error) -> Self {
        Fail::new(UNOTIFY_E_SYSTEM, format!("{what}: {e}"))
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::UnknownSyscall { .. } => UNOTIFY_E_UNKNOWN_SYSCALL,
            Error::ConflictingRule { .. }
            | Error::FilterTooLarge { .. }
            | Error::InvalidErrno { .. }
            | Error::InvalidConfig { .. } => UNOTIFY_E_CONFIG,
            Error::Unsupported { .. }
            | Error::WeakIsolation { .. }
            | Error::MissingRight { .. }
            | Error::Nested { .. } => UNOTIFY_E_UNSUPPORTED,
            Error::NotFound { .. } => UNOTIFY_E_NOT_FOUND,
            Error::CannotExecute { .. } => UNOTIFY_E_CANNOT_EXECUTE,
            _ => UNOTIFY_E_SYSTEM,
        };
        Fail::new(code, e.to_string())
    }
}

thread_local! {
    /// The message of the last failed call made on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Runs the body of an entry point: its failure becomes a status code and
/// this thread's last error, a panic [`UNOTIFY_E_INTERNAL`].
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Fail>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => UNOTIFY_OK,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fail.code
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!("unotify C ABI: internal error: {what}");
            set_last_error(&format!(
                "internal error in unotify ({what}); this is a bug, please report it"
            ));
            UNOTIFY_E_INTERNAL
        }
    }
}

/// The message of the last call that failed on the calling thread (empty
/// if none did). Valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn unotify_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|l| l.borrow().as_ptr())).unwrap_or(c"".as_ptr())
}
