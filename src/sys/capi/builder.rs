//! `unotify_builder_*`: a [`SandboxBuilder`] behind a handle, built into a
//! `unotify_sandbox`.

use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use super::error::{guard, Fail};
use super::handler::{CHandler, HandlerFn};
use crate::net::NetPolicy;
use crate::sandbox::{Sandbox, SandboxBuilder};
use crate::sys::capi_raw;

/// `unotify_builder`: a sandbox policy being put together.
#[derive(Default)]
pub struct UnotifyBuilder {
    /// The policy so far (taken out while one setter runs).
    inner: Option<SandboxBuilder>,
    /// `--net-allow` specs, turned into a [`NetPolicy`] at build.
    net_allow: Vec<String>,
    /// `--net-deny` specs.
    net_deny: Vec<String>,
    /// `--net-deny-bind` port lists.
    net_deny_bind: Vec<String>,
}

impl UnotifyBuilder {
    /// Applies one setter of the Rust builder.
    pub(crate) fn apply(
        &mut self,
        f: impl FnOnce(SandboxBuilder) -> SandboxBuilder,
    ) -> Result<(), Fail> {
        let b = self.inner.take().ok_or_else(|| {
            Fail::invalid("this builder was damaged by an earlier internal error")
        })?;
        self.inner = Some(f(b));
        Ok(())
    }
}

/// `unotify_sandbox`: a built policy; spawns children from any thread.
pub struct UnotifySandbox {
    pub(crate) inner: Sandbox,
}

pub(crate) fn builder<'a>(b: *mut UnotifyBuilder) -> Result<&'a mut UnotifyBuilder, Fail> {
    capi_raw::handle_mut(b).ok_or_else(|| Fail::invalid("null unotify_builder"))
}

/// The body of a setter taking one path (`what` names the argument in
/// the error): `f` applies it to the Rust builder.
pub(crate) fn set_path(
    b: *mut UnotifyBuilder,
    path: *const c_char,
    what: &str,
    f: impl FnOnce(SandboxBuilder, &OsStr) -> SandboxBuilder,
) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let p = os(path, what)?;
        b.apply(|x| f(x, p))
    })
}

/// A required string argument.
pub(crate) fn text<'a>(p: *const c_char, what: &str) -> Result<&'a CStr, Fail> {
    capi_raw::c_str(p).ok_or_else(|| Fail::invalid(&format!("null {what}")))
}

/// A required UTF-8 string argument (syscall names, specs).
pub(crate) fn utf8<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    text(p, what)?
        .to_str()
        .map_err(|_| Fail::invalid(&format!("{what} is not UTF-8")))
}

/// A path or other byte string argument.
pub(crate) fn os<'a>(p: *const c_char, what: &str) -> Result<&'a OsStr, Fail> {
    Ok(OsStr::from_bytes(text(p, what)?.to_bytes()))
}

/// Starts a policy: `*out` is a new builder.
#[no_mangle]
pub extern "C" fn unotify_builder_new(out: *mut *mut UnotifyBuilder) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(Fail::invalid("null out"));
        }
        let b = UnotifyBuilder {
            inner: Some(Sandbox::builder()),
            ..UnotifyBuilder::default()
        };
        capi_raw::put(out, capi_raw::into_handle(b));
        Ok(())
    })
}

/// Frees a builder that was not built (null: nothing).
#[no_mangle]
pub extern "C" fn unotify_builder_free(b: *mut UnotifyBuilder) {
    guard(|| {
        capi_raw::free_handle(b);
        Ok(())
    });
}

/// Adds a handler for the system call `syscall`.
#[no_mangle]
pub extern "C" fn unotify_builder_handle(
    b: *mut UnotifyBuilder,
    syscall: *const c_char,
    handler: HandlerFn,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let name = utf8(syscall, "syscall name")?;
        let h = CHandler::new(handler, user).ok_or_else(|| Fail::invalid("null handler"))?;
        b.apply(|x| x.handle(name, h))
    })
}

/// Adds a handler for the system call number `nr`.
#[no_mangle]
pub extern "C" fn unotify_builder_handle_nr(
    b: *mut UnotifyBuilder,
    nr: u32,
    handler: HandlerFn,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let h = CHandler::new(handler, user).ok_or_else(|| Fail::invalid("null handler"))?;
        b.apply(|x| x.handle_nr(nr, h))
    })
}

/// Fails `syscall` with `errno_value` in the filter itself.
#[no_mangle]
pub extern "C" fn unotify_builder_deny(
    b: *mut UnotifyBuilder,
    syscall: *const c_char,
    errno_value: c_int,
) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let name = utf8(syscall, "syscall name")?;
        b.apply(|x| x.deny(name, errno_value))
    })
}

/// Traps `syscall`, lets it run, and logs it (`log` target `unotify::trace`).
#[no_mangle]
pub extern "C" fn unotify_builder_trace(b: *mut UnotifyBuilder, syscall: *const c_char) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let name = utf8(syscall, "syscall name")?;
        b.apply(|x| x.trace(name))
    })
}

/// Worker threads per supervisor (0 is refused at build).
#[no_mangle]
pub extern "C" fn unotify_builder_workers(b: *mut UnotifyBuilder, n: u32) -> c_int {
    guard(|| builder(b)?.apply(|x| x.workers(n as usize)))
}

/// Deferrals in flight at most (more are answered `EAGAIN`).
#[no_mangle]
pub extern "C" fn unotify_builder_defer_limit(b: *mut UnotifyBuilder, n: u32) -> c_int {
    guard(|| builder(b)?.apply(|x| x.defer_limit(n as usize)))
}

/// Deadline of a deferral, in milliseconds (later answers `EIO`).
#[no_mangle]
pub extern "C" fn unotify_builder_defer_timeout_ms(b: *mut UnotifyBuilder, ms: u64) -> c_int {
    guard(|| builder(b)?.apply(|x| x.defer_timeout(Duration::from_millis(ms))))
}

/// Adds a `--net-allow` rule (the command's grammar).
#[no_mangle]
pub extern "C" fn unotify_builder_net_allow(b: *mut UnotifyBuilder, spec: *const c_char) -> c_int {
    guard(|| {
        let b = builder(b)?;
        b.net_allow.push(utf8(spec, "network spec")?.to_owned());
        Ok(())
    })
}

/// Adds a `--net-deny` rule (the command's grammar).
#[no_mangle]
pub extern "C" fn unotify_builder_net_deny(b: *mut UnotifyBuilder, spec: *const c_char) -> c_int {
    guard(|| {
        let b = builder(b)?;
        b.net_deny.push(utf8(spec, "network spec")?.to_owned());
        Ok(())
    })
}

/// Adds a `--net-deny-bind` port list.
#[no_mangle]
pub extern "C" fn unotify_builder_net_deny_bind(
    b: *mut UnotifyBuilder,
    ports: *const c_char,
) -> c_int {
    guard(|| {
        let b = builder(b)?;
        b.net_deny_bind.push(utf8(ports, "port list")?.to_owned());
        Ok(())
    })
}

/// At most `n` processes in the sandbox.
#[no_mangle]
pub extern "C" fn unotify_builder_max_processes(b: *mut UnotifyBuilder, n: u32) -> c_int {
    guard(|| builder(b)?.apply(|x| x.max_processes(n)))
}

/// At most `bytes` of memory in the sandbox.
#[no_mangle]
pub extern "C" fn unotify_builder_max_memory(b: *mut UnotifyBuilder, bytes: u64) -> c_int {
    guard(|| builder(b)?.apply(|x| x.max_memory(bytes)))
}

/// Denies `path` (a file, or a directory and all beneath it).
#[no_mangle]
pub extern "C" fn unotify_builder_deny_path(b: *mut UnotifyBuilder, path: *const c_char) -> c_int {
    set_path(b, path, "path", |x, p| x.deny_path(p))
}

/// Shows the program `dir` as `/` (a chroot without privileges; see
/// `SandboxBuilder::chroot`).
#[no_mangle]
pub extern "C" fn unotify_builder_chroot(b: *mut UnotifyBuilder, dir: *const c_char) -> c_int {
    set_path(b, dir, "dir", |x, p| x.chroot(p))
}

/// Shows the host directory `host` at `virtual_path` in the chroot
/// (`read_only` non-zero: writes fail with `EROFS`).
#[no_mangle]
pub extern "C" fn unotify_builder_mount(
    b: *mut UnotifyBuilder,
    virtual_path: *const c_char,
    host: *const c_char,
    read_only: c_int,
) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let v = os(virtual_path, "virtual_path")?;
        let h = os(host, "host")?;
        b.apply(|x| x.mount(v, h, read_only != 0))
    })
}

/// Lets the program read (and execute) beneath `path`; with any of the
/// `fs_*` calls, everything else is refused (Landlock).
#[no_mangle]
pub extern "C" fn unotify_builder_fs_read(b: *mut UnotifyBuilder, path: *const c_char) -> c_int {
    set_path(b, path, "path", |x, p| x.fs_read(p))
}

/// Lets the program read, write, create and remove beneath `path`.
#[no_mangle]
pub extern "C" fn unotify_builder_fs_write(b: *mut UnotifyBuilder, path: *const c_char) -> c_int {
    set_path(b, path, "path", |x, p| x.fs_write(p))
}

/// Adds the minimal system set a dynamic program needs to the allow lists.
#[no_mangle]
pub extern "C" fn unotify_builder_fs_system(b: *mut UnotifyBuilder) -> c_int {
    guard(|| builder(b)?.apply(|x| x.fs_system()))
}

/// Accepts running without the Landlock right named `right` (`filesystem`,
/// `refer`, `truncate`, `network`, `ioctl-dev`, `scoping`) on a kernel
/// that lacks it.
#[no_mangle]
pub extern "C" fn unotify_builder_allow_degraded(
    b: *mut UnotifyBuilder,
    right: *const c_char,
) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let name = os(right, "right")?;
        let r: crate::landlock::Right =
            name.to_str()
                .unwrap_or("")
                .parse()
                .map_err(|e: crate::landlock::UnknownRight| {
                    Fail::new(super::error::UNOTIFY_E_INVALID, e.to_string())
                })?;
        b.apply(|x| x.allow_degraded(r))
    })
}

/// Appends one JSON object per trapped call to the file at `path`.
#[no_mangle]
pub extern "C" fn unotify_builder_audit(b: *mut UnotifyBuilder, path: *const c_char) -> c_int {
    set_path(b, path, "path", |x, p| x.audit(p))
}

/// Exec argv safety on (non-zero) or off.
#[no_mangle]
pub extern "C" fn unotify_builder_argv_safety(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.argv_safety(on != 0)))
}

/// Keep all capabilities of a root program (non-zero) or not.
#[no_mangle]
pub extern "C" fn unotify_builder_keep_caps(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.keep_caps(on != 0)))
}

/// Accept a kernel without Landlock ABI 6 (non-zero) or not.
#[no_mangle]
pub extern "C" fn unotify_builder_allow_weak_isolation(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.allow_weak_isolation(on != 0)))
}

/// Gives the terminal to the sandbox (non-zero) or not (the default).
#[no_mangle]
pub extern "C" fn unotify_builder_foreground(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.foreground(on != 0)))
}

/// Uses cgroups where it can (non-zero, the default) or never.
#[no_mangle]
pub extern "C" fn unotify_builder_cgroups(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.cgroups(on != 0)))
}

/// Tracks processes and traps forks without a limit.
#[no_mangle]
pub extern "C" fn unotify_builder_track_processes(b: *mut UnotifyBuilder) -> c_int {
    guard(|| builder(b)?.apply(|x| x.track_processes()))
}

/// Asks the kernel for sync wake-up (non-zero, the default) or not.
#[no_mangle]
pub extern "C" fn unotify_builder_sync_wake_up(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.sync_wake_up(on != 0)))
}

/// Builds the policy into `*out`. Frees `b`, whether it succeeds or not.
#[no_mangle]
pub extern "C" fn unotify_builder_build(
    b: *mut UnotifyBuilder,
    out: *mut *mut UnotifySandbox,
) -> c_int {
    guard(|| {
        if b.is_null() {
            return Err(Fail::invalid("null unotify_builder"));
        }
        // Taken back now, so that it is freed on every path below.
        let mut taken = std::mem::take(builder(b)?);
        capi_raw::free_handle(b);
        if out.is_null() {
            return Err(Fail::invalid("null out"));
        }
        let mut rust = taken.inner.take().ok_or_else(|| {
            Fail::invalid("this builder was damaged by an earlier internal error")
        })?;
        if !(taken.net_allow.is_empty()
            && taken.net_deny.is_empty()
            && taken.net_deny_bind.is_empty())
        {
            let policy =
                NetPolicy::from_specs(&taken.net_allow, &taken.net_deny, &taken.net_deny_bind)
                    .map_err(|e| Fail::new(super::error::UNOTIFY_E_CONFIG, e.to_string()))?;
            rust = rust.network(policy);
        }
        let sandbox = rust.build()?;
        capi_raw::put(
            out,
            capi_raw::into_handle(UnotifySandbox { inner: sandbox }),
        );
        Ok(())
    })
}

/// Frees a sandbox (null: nothing). Its running children keep running.
#[no_mangle]
pub extern "C" fn unotify_sandbox_free(s: *mut UnotifySandbox) {
    guard(|| {
        capi_raw::free_handle(s);
        Ok(())
    });
}

impl std::fmt::Debug for UnotifyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnotifyBuilder").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UnotifySandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnotifySandbox").finish_non_exhaustive()
    }
}

// Determinism and identity (see `unotify::determinism`); values are
// checked at build (UNOTIFY_E_CONFIG).

/// Shows `name` as the host name (`SandboxBuilder::hostname`).
#[no_mangle]
pub extern "C" fn unotify_builder_hostname(b: *mut UnotifyBuilder, name: *const c_char) -> c_int {
    guard(|| {
        let b = builder(b)?;
        let name = utf8(name, "host name")?.to_owned();
        b.apply(|x| x.hostname(name))
    })
}

/// Shows `n` CPUs (`SandboxBuilder::num_cpus`).
#[no_mangle]
pub extern "C" fn unotify_builder_num_cpus(b: *mut UnotifyBuilder, n: u32) -> c_int {
    guard(|| builder(b)?.apply(|x| x.num_cpus(n)))
}

/// Makes randomness a stream derived from `seed` (`SandboxBuilder::random_seed`).
#[no_mangle]
pub extern "C" fn unotify_builder_random_seed(b: *mut UnotifyBuilder, seed: u64) -> c_int {
    guard(|| builder(b)?.apply(|x| x.random_seed(seed)))
}

/// Lists directories in name order (`SandboxBuilder::deterministic_dirs`).
#[no_mangle]
pub extern "C" fn unotify_builder_deterministic_dirs(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.deterministic_dirs(on != 0)))
}

/// Starts the wall clock at `unix_seconds` (`SandboxBuilder::time_start`).
#[no_mangle]
pub extern "C" fn unotify_builder_time_start(b: *mut UnotifyBuilder, unix_seconds: i64) -> c_int {
    guard(|| {
        let epoch = std::time::UNIX_EPOCH;
        let d = Duration::from_secs(unix_seconds.unsigned_abs());
        let t = if unix_seconds >= 0 {
            epoch + d
        } else {
            epoch - d
        };
        builder(b)?.apply(|x| x.time_start(t))
    })
}

/// Gives bound ports a free real port behind them (`SandboxBuilder::port_remap`).
#[no_mangle]
pub extern "C" fn unotify_builder_port_remap(b: *mut UnotifyBuilder, on: c_int) -> c_int {
    guard(|| builder(b)?.apply(|x| x.port_remap(on != 0)))
}
