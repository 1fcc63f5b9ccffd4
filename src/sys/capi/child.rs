//! `unotify_command_*`, `unotify_sandbox_spawn`/`run` and
//! `unotify_child_*`: what to run, and the running program (pid, pidfd,
//! waits with a timeout, kill, the supervisor's statistics).

use std::ffi::{c_char, c_int};
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::builder::{os, UnotifySandbox};
use super::error::{guard, Fail, UNOTIFY_E_TIMEOUT};
use crate::command::{Command, Stdio};
use crate::sandbox::Child;
use crate::supervisor::Stats;
use crate::sys::capi_raw;

/// `unotify_command`: a program, its arguments, environment, directory and
/// standard streams.
pub struct UnotifyCommand {
    inner: Command,
}

/// `unotify_child`: a running sandboxed program.
pub struct UnotifyChild {
    inner: Child,
    /// A pidfd of the program, opened on first need (waits with a timeout).
    pidfd: Option<OwnedFd>,
    /// The supervisor's counters, last read while it ran.
    last_stats: Stats,
    /// The exit was collected: the pid may belong to another process now.
    collected: bool,
}

/// `unotify_stats`: the supervisor's counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UnotifyStats {
    /// Notifications received.
    pub received: u64,
    /// Answers the kernel accepted.
    pub answered: u64,
    /// Answers refused because the call was gone.
    pub stale: u64,
    /// Handlers that panicked (answered `EPERM`).
    pub panics: u64,
    /// Deferrals admitted to the pool.
    pub deferred: u64,
    /// Deferrals refused because the pool was full (`EAGAIN`).
    pub defer_rejected: u64,
    /// Deferrals that missed their deadline (`EIO`).
    pub defer_timeouts: u64,
    /// Calls held now.
    pub held: u64,
}

impl From<Stats> for UnotifyStats {
    fn from(s: Stats) -> Self {
        UnotifyStats {
            received: s.received,
            answered: s.answered,
            stale: s.stale,
            panics: s.panics,
            deferred: s.deferred,
            defer_rejected: s.defer_rejected,
            defer_timeouts: s.defer_timeouts,
            held: s.held,
        }
    }
}

/// The program's own standard stream.
pub const UNOTIFY_STDIO_INHERIT: c_int = 0;
/// `/dev/null`.
pub const UNOTIFY_STDIO_NULL: c_int = 1;
/// A duplicate of the host's fd given (the host keeps its fd).
pub const UNOTIFY_STDIO_FD: c_int = 2;
/// A new pipe; the host's end is taken with `unotify_child_take_pipe`.
pub const UNOTIFY_STDIO_PIPE: c_int = 3;

fn command<'a>(c: *mut UnotifyCommand) -> Result<&'a mut UnotifyCommand, Fail> {
    capi_raw::handle_mut(c).ok_or_else(|| Fail::invalid("null unotify_command"))
}

fn child<'a>(c: *mut UnotifyChild) -> Result<&'a mut UnotifyChild, Fail> {
    capi_raw::handle_mut(c).ok_or_else(|| Fail::invalid("null unotify_child"))
}

/// A command running `program` (searched on `PATH` unless it has a `/`).
#[no_mangle]
pub extern "C" fn unotify_command_new(
    program: *const c_char,
    out: *mut *mut UnotifyCommand,
) -> c_int {
    guard(|| {
        let program = os(program, "program")?;
        if out.is_null() {
            return Err(Fail::invalid("null out"));
        }
        let cmd = UnotifyCommand {
            inner: Command::new(program),
        };
        capi_raw::put(out, capi_raw::into_handle(cmd));
        Ok(())
    })
}

/// Frees a command (null: nothing).
#[no_mangle]
pub extern "C" fn unotify_command_free(c: *mut UnotifyCommand) {
    guard(|| {
        capi_raw::free_handle(c);
        Ok(())
    });
}

/// Appends one argument.
#[no_mangle]
pub extern "C" fn unotify_command_arg(c: *mut UnotifyCommand, arg: *const c_char) -> c_int {
    guard(|| {
        let c = command(c)?;
        c.inner.arg(os(arg, "argument")?);
        Ok(())
    })
}

/// Sets `key=value` in the program's environment.
#[no_mangle]
pub extern "C" fn unotify_command_env_set(
    c: *mut UnotifyCommand,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    guard(|| {
        let c = command(c)?;
        let key = os(key, "key")?;
        if key.is_empty() || key.as_encoded_bytes().contains(&b'=') {
            return Err(Fail::invalid(
                "an environment key is not empty and has no '='",
            ));
        }
        c.inner.env(key, os(value, "value")?);
        Ok(())
    })
}

/// Removes `key` from the program's environment.
#[no_mangle]
pub extern "C" fn unotify_command_env_unset(c: *mut UnotifyCommand, key: *const c_char) -> c_int {
    guard(|| {
        let c = command(c)?;
        c.inner.env_remove(os(key, "key")?);
        Ok(())
    })
}

/// Starts the program's environment empty instead of the host's.
#[no_mangle]
pub extern "C" fn unotify_command_env_clear(c: *mut UnotifyCommand) -> c_int {
    guard(|| {
        command(c)?.inner.env_clear();
        Ok(())
    })
}

/// Runs the program in directory `dir`.
#[no_mangle]
pub extern "C" fn unotify_command_cwd(c: *mut UnotifyCommand, dir: *const c_char) -> c_int {
    guard(|| {
        let c = command(c)?;
        c.inner.current_dir(os(dir, "directory")?);
        Ok(())
    })
}

/// Where standard stream `which` (0, 1, 2) goes: one of `UNOTIFY_STDIO_*`;
/// `fd` is used by `UNOTIFY_STDIO_FD` only.
#[no_mangle]
pub extern "C" fn unotify_command_stdio(
    c: *mut UnotifyCommand,
    which: c_int,
    mode: c_int,
    fd: c_int,
) -> c_int {
    guard(|| {
        let c = command(c)?;
        let stdio = match mode {
            UNOTIFY_STDIO_INHERIT => Stdio::Inherit,
            UNOTIFY_STDIO_NULL => Stdio::Null,
            UNOTIFY_STDIO_PIPE => Stdio::Piped,
            UNOTIFY_STDIO_FD => Stdio::Fd(
                capi_raw::dup_host_fd(fd).map_err(|e| Fail::io("duplicate the stdio fd", e))?,
            ),
            _ => return Err(Fail::invalid("unknown stdio mode")),
        };
        match which {
            0 => c.inner.stdin(stdio),
            1 => c.inner.stdout(stdio),
            2 => c.inner.stderr(stdio),
            _ => return Err(Fail::invalid("stream is not 0, 1 or 2")),
        };
        Ok(())
    })
}

fn sandbox<'a>(s: *const UnotifySandbox) -> Result<&'a UnotifySandbox, Fail> {
    capi_raw::handle(s).ok_or_else(|| Fail::invalid("null unotify_sandbox"))
}

/// Starts `cmd` under `s`: `*out` is the running child.
#[no_mangle]
pub extern "C" fn unotify_sandbox_spawn(
    s: *const UnotifySandbox,
    cmd: *mut UnotifyCommand,
    out: *mut *mut UnotifyChild,
) -> c_int {
    guard(|| {
        let s = sandbox(s)?;
        let cmd = command(cmd)?;
        if out.is_null() {
            return Err(Fail::invalid("null out"));
        }
        let child = s.inner.spawn(&mut cmd.inner)?;
        let child = UnotifyChild {
            inner: child,
            pidfd: None,
            last_stats: Stats::default(),
            collected: false,
        };
        capi_raw::put(out, capi_raw::into_handle(child));
        Ok(())
    })
}

/// Spawns `cmd` under `s` and waits: `*wait_status` is a `waitpid` status.
#[no_mangle]
pub extern "C" fn unotify_sandbox_run(
    s: *const UnotifySandbox,
    cmd: *mut UnotifyCommand,
    wait_status: *mut c_int,
) -> c_int {
    guard(|| {
        let s = sandbox(s)?;
        let cmd = command(cmd)?;
        let st = s.inner.run(&mut cmd.inner)?;
        capi_raw::put(wait_status, st.into_raw());
        Ok(())
    })
}

/// The program's process id.
#[no_mangle]
pub extern "C" fn unotify_child_pid(c: *mut UnotifyChild, pid: *mut c_int) -> c_int {
    guard(|| {
        let c = child(c)?;
        if !capi_raw::put(pid, c.inner.pid() as c_int) {
            return Err(Fail::invalid("null pid"));
        }
        Ok(())
    })
}

impl UnotifyChild {
    fn pidfd(&mut self) -> Result<&OwnedFd, Fail> {
        if self.pidfd.is_none() {
            if self.collected {
                return Err(Fail::new(
                    super::error::UNOTIFY_E_GONE,
                    "the program has exited and was waited for; take its pidfd before waiting",
                ));
            }
            let fd = crate::sys::pidfd::pidfd_open(self.inner.pid() as i32, 0)
                .map_err(|e| Fail::io("open a pidfd of the program", e))?;
            self.pidfd = Some(fd);
        }
        Ok(self.pidfd.as_ref().expect("set above"))
    }

    fn save_stats(&mut self) {
        if let Some(s) = self.inner.supervisor().and_then(|h| h.stats()) {
            self.last_stats = s;
        }
    }

    /// Collects the exit if the program has exited (the counters read first,
    /// while its supervisor still runs).
    fn try_wait(&mut self) -> Result<Option<ExitStatus>, Fail> {
        self.save_stats();
        let st = self
            .inner
            .try_wait()
            .map_err(|e| Fail::io("wait for the program", e))?;
        self.collected |= st.is_some();
        Ok(st)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<ExitStatus, Fail> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Fail::new(
                            UNOTIFY_E_TIMEOUT,
                            "the program is still running after the timeout",
                        ));
                    }
                    left.as_millis().clamp(1, i32::MAX as u128) as i32
                }
            };
            let ready = crate::sys::net::poll_readable(self.pidfd()?.as_fd(), ms)
                .map_err(|e| Fail::io("poll the program's pidfd", e))?;
            if ready && self.try_wait()?.is_none() {
                // Exited but not yet collectable (a ptrace stop reported
                // first, see `Child::wait`): retry shortly.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// A new pidfd of the program (`pidfd_open(2)`, close-on-exec) that the
/// host owns; readable once the program has exited. Only before the child
/// is waited for.
#[no_mangle]
pub extern "C" fn unotify_child_pidfd(c: *mut UnotifyChild, out_fd: *mut c_int) -> c_int {
    guard(|| {
        let c = child(c)?;
        if out_fd.is_null() {
            return Err(Fail::invalid("null out_fd"));
        }
        let fd = c
            .pidfd()?
            .try_clone()
            .map_err(|e| Fail::io("duplicate the pidfd", e))?;
        capi_raw::put(out_fd, fd.into_raw_fd());
        Ok(())
    })
}

/// Waits for the program to exit, at most `timeout_ms` milliseconds (< 0:
/// no limit): `*wait_status` is its `waitpid` status. `UNOTIFY_E_TIMEOUT`
/// if it still runs.
#[no_mangle]
pub extern "C" fn unotify_child_wait(
    c: *mut UnotifyChild,
    timeout_ms: i64,
    wait_status: *mut c_int,
) -> c_int {
    guard(|| {
        let c = child(c)?;
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        let st = c.wait(timeout)?;
        capi_raw::put(wait_status, st.into_raw());
        Ok(())
    })
}

/// Without blocking: `*exited` is 1 and `*wait_status` set if the program
/// has exited, else `*exited` is 0.
#[no_mangle]
pub extern "C" fn unotify_child_try_wait(
    c: *mut UnotifyChild,
    exited: *mut c_int,
    wait_status: *mut c_int,
) -> c_int {
    guard(|| {
        let c = child(c)?;
        let st = c.try_wait()?;
        capi_raw::put(exited, st.is_some() as c_int);
        if let Some(st) = st {
            capi_raw::put(wait_status, st.into_raw());
        }
        Ok(())
    })
}

/// Kills the whole sandbox (`SIGKILL`); collect it with a wait.
#[no_mangle]
pub extern "C" fn unotify_child_kill(c: *mut UnotifyChild) -> c_int {
    guard(|| {
        child(c)?
            .inner
            .kill()
            .map_err(|e| Fail::io("kill the sandbox", e))
    })
}

/// The supervisor's counters (after the program exited: as last seen).
#[no_mangle]
pub extern "C" fn unotify_child_stats(c: *mut UnotifyChild, out: *mut UnotifyStats) -> c_int {
    guard(|| {
        let c = child(c)?;
        c.save_stats();
        if !capi_raw::put(out, UnotifyStats::from(c.last_stats)) {
            return Err(Fail::invalid("null out"));
        }
        Ok(())
    })
}

/// A handle on the child's supervisor: `*out` is a new
/// `unotify_supervisor` the caller frees; `UNOTIFY_E_GONE` after the exit.
#[no_mangle]
pub extern "C" fn unotify_child_supervisor(
    c: *mut UnotifyChild,
    out: *mut *mut super::supervisor::UnotifySupervisor,
) -> c_int {
    guard(|| {
        let c = child(c)?;
        if out.is_null() {
            return Err(Fail::invalid("null out"));
        }
        let h = c.inner.supervisor().ok_or_else(|| {
            Fail::new(
                super::error::UNOTIFY_E_GONE,
                "the program has exited; its supervisor stopped",
            )
        })?;
        let s = super::supervisor::UnotifySupervisor::new(h);
        capi_raw::put(out, capi_raw::into_handle(s));
        Ok(())
    })
}

/// Takes the host's end of a `UNOTIFY_STDIO_PIPE` stream `which` (0, 1,
/// 2): `*out_fd` is an fd the host owns (-1 if that stream is no pipe or
/// was taken).
#[no_mangle]
pub extern "C" fn unotify_child_take_pipe(
    c: *mut UnotifyChild,
    which: c_int,
    out_fd: *mut c_int,
) -> c_int {
    guard(|| {
        let c = child(c)?;
        if out_fd.is_null() {
            return Err(Fail::invalid("null out_fd"));
        }
        let f = match which {
            0 => c.inner.stdin.take(),
            1 => c.inner.stdout.take(),
            2 => c.inner.stderr.take(),
            _ => return Err(Fail::invalid("stream is not 0, 1 or 2")),
        };
        capi_raw::put(out_fd, f.map(IntoRawFd::into_raw_fd).unwrap_or(-1));
        Ok(())
    })
}

/// Frees a child; one not waited for is killed and waited for first.
#[no_mangle]
pub extern "C" fn unotify_child_free(c: *mut UnotifyChild) {
    guard(|| {
        capi_raw::free_handle(c);
        Ok(())
    });
}

impl std::fmt::Debug for UnotifyCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnotifyCommand").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UnotifyChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnotifyChild").finish_non_exhaustive()
    }
}
