//! A synchronous, multi-threaded **seccomp user-notification supervisor** and
//! sandbox launcher.
//!
//! A [`Sandbox`] runs a program with a seccomp filter that stops selected
//! system calls in the kernel and hands them to a supervisor in the calling
//! process. Plain blocking closures ([`Handler`]s) decide each trapped call:
//! let it run ([`NotifAction::Continue`]), fail it with an errno, return a
//! value without running it, inject a file descriptor, hold it, or move a slow
//! decision to the deferral pool ([`NotifAction::defer`]). No async runtime:
//! the supervisor is a handful of OS threads.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use unotify::{Command, HandlerCtx, NotifAction, Sandbox};
//!
//! let opens = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&opens);
//! let sandbox = Sandbox::builder()
//!     // `getppid` returns 4242 without reaching the kernel.
//!     .handle("getppid", |_cx: &HandlerCtx<'_>| NotifAction::ReturnValue(4242))
//!     // Every `openat`: read a copy of the path, count it, let it run.
//!     .handle("openat", move |cx: &HandlerCtx<'_>| {
//!         if cx.read_cstr(cx.arg(1), 4096).is_ok() {
//!             counter.fetch_add(1, Ordering::Relaxed);
//!         }
//!         NotifAction::Continue
//!     })
//!     // `mkdirat` fails with EACCES in the filter itself (no round trip).
//!     .deny("mkdirat", libc::EACCES)
//!     .build()?;
//!
//! // The shell's $PPID comes from getppid().
//! let status = sandbox.run(Command::new("sh").args(["-c", r#"test "$PPID" = 4242 && exit 3"#]))?;
//! assert_eq!(status.code(), Some(3));
//! assert!(opens.load(Ordering::Relaxed) > 0, "the shell opens its libraries");
//! # Ok::<(), unotify::Error>(())
//! ```
//!
//! # Threads
//!
//! Each spawned child gets its own supervisor: a **poll thread** that only
//! receives notifications (blocked in `SECCOMP_IOCTL_NOTIF_RECV` itself when
//! the kernel allows, else after `poll(2)`, with mio for tracked processes)
//! and hands them over crossbeam channels to **per-CPU lanes of pinned
//! workers**; one worker runs the whole pipeline of a notification and sends
//! its one answer. The child itself is started as a `CLONE_VM` clone that
//! makes only raw system calls until it execs, so spawning from a large host
//! copies none of its memory. [`NotifAction::Defer`] moves a
//! decision to the **deferral pool**, admitted by a semaphore (64 in flight,
//! else `EAGAIN`) and bounded by a deadline (30 s, else `EIO`).
//!
//! # Signals
//!
//! To interrupt its poll thread's blocking receive (to stop, or to hand
//! over calls stuck behind a busy worker), the supervisor sends that thread
//! `SIGRTMAX-2`. It installs a do-nothing handler for that signal, once per
//! process and only if the signal has no handler; if the host uses the
//! signal, the poll thread waits with `poll(2)` instead. A host must not
//! take that signal over (ignore it, or handle it with `SA_RESTART`) while a
//! supervisor runs: a stop could then wait until the sandbox ends. The
//! sandboxed program starts with every signal at its default action and
//! none blocked.
//!
//! # Failing closed
//!
//! Every received notification gets exactly one answer (a held one when it
//! is released). When something goes wrong the trapped call fails instead of
//! running: a failed fd injection answers `EACCES`, a panicking handler
//! `EPERM`, an over-full deferral pool `EAGAIN`, a late deferral `EIO`.
//!
//! # Isolation from the host
//!
//! The sandboxed program runs in a Landlock domain: it cannot signal,
//! ptrace, read or write the memory of, or take fds from the host or any
//! other process outside the sandbox, nor connect to their abstract unix
//! sockets. Below Landlock ABI 6 [`SandboxBuilder::build`] fails with
//! [`Error::WeakIsolation`] unless
//! [`allow_weak_isolation`](SandboxBuilder::allow_weak_isolation) says otherwise.
//!
//! # Safety
//!
//! The kernel interface, with every block the compiler cannot check, lives in
//! one private module, `sys` (the crate's lints refuse it everywhere else);
//! each block says why it is sound. [`os`] re-exports the few safe calls
//! the `unotify` command needs.
//! Memory read from a trapped task is a copy: decide on the copy, never on
//! the pointer, since the task may change its memory after the check.
//!
//! See [`probe::probe_features`] for what the running kernel supports.

/// The README's Rust example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod action;
pub mod arch;
mod chroot;
mod command;
pub(crate) mod confine;
mod cow;
pub mod determinism;
mod devices;
mod error;
pub mod events;
pub mod filter;
pub(crate) mod freeze;
mod handler;
pub(crate) mod isolation;
pub mod landlock;
pub mod net;
mod notification;
pub mod os;
pub mod paths;
pub mod policy;
pub mod probe;
pub mod process;
mod sandbox;
mod script;
pub mod shown;
mod supervisor;
// The kernel interface is private; the `internals` feature (for this
// crate's own tests and benches, not part of the API) opens it.
// (`sys` allows what the crate's lints refuse elsewhere, in its own file.)
#[cfg(feature = "internals")]
#[doc(hidden)]
#[allow(missing_docs, missing_debug_implementations)]
pub mod sys;
#[cfg(not(feature = "internals"))]
mod sys;
pub mod syscalls;

pub use action::{Deferred, NotifAction};
pub use command::{Command, Stdio};
pub use cow::{
    pending_commit, recover as recover_workdir, Change, ChangeKind, EntryType, ExitAction, Settled,
    WorkDir, WorkdirRoute,
};
pub use error::{Error, Result};
pub use handler::{Handler, HandlerCtx, MemoryError};
pub use notification::Notification;
pub use sandbox::{Child, Sandbox, SandboxBuilder, SandboxProcesses};
pub use supervisor::{
    Stats, Supervisor, SupervisorHandle, DEFAULT_DEFER_LIMIT, DEFAULT_DEFER_TIMEOUT,
};
