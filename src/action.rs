//! What a handler answers: [`NotifAction`].

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{OwnedFd, RawFd};

use crate::sys::memfd;

/// A callback given the fd number that an injected fd received in the task.
pub type OnInjected = Box<dyn FnOnce(RawFd) + Send>;

/// An errno a handler answers with: always in `1..=4095`, the range the
/// kernel accepts in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(i32);

impl Errno {
    /// `e` if it is a valid errno.
    pub(crate) fn new(e: i32) -> Option<Errno> {
        (1..=4095).contains(&e).then_some(Errno(e))
    }

    /// A known-valid errno (a `libc::E*` constant).
    ///
    /// # Panics
    /// If `e` is outside `1..=4095` (a programming error: constants are in
    /// range).
    pub(crate) const fn of(e: i32) -> Errno {
        assert!(e >= 1 && e <= 4095, "errno out of range");
        Errno(e)
    }

    /// `e` if valid, else `EPERM` (fail closed).
    pub(crate) fn or_eperm(e: i32) -> Errno {
        Errno::new(e).unwrap_or(Errno(libc::EPERM))
    }

    /// The errno of an I/O error (`EIO` if it has none).
    pub(crate) fn from_io(e: &io::Error) -> Errno {
        Errno::or_eperm(e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The number.
    pub(crate) fn get(self) -> i32 {
        self.0
    }
}

impl From<Errno> for NotifAction {
    fn from(e: Errno) -> NotifAction {
        NotifAction::Errno(e.0)
    }
}

/// How the supervisor answers one trapped system call.
///
/// A handler chain runs until a handler returns something other than
/// [`Continue`](NotifAction::Continue): that action is the answer.
#[non_exhaustive]
pub enum NotifAction {
    /// Not mine: let the next handler decide, or, at the end of the chain,
    /// let the call run in the kernel unchanged.
    Continue,
    /// Fail the call with this errno (1..=4095; anything else becomes `EPERM`).
    Errno(i32),
    /// Return this value without running the call. Values from -4095 to -1
    /// are read by libc as errors.
    ReturnValue(i64),
    /// Install `fd` in the task at exactly `target` (replacing what is
    /// there), then let the call run. Fails closed with `EACCES`.
    InjectFd {
        /// The supervisor's fd; closed after the injection.
        fd: OwnedFd,
        /// The fd number in the task.
        target: RawFd,
        /// `O_CLOEXEC` or 0.
        newfd_flags: u32,
    },
    /// Install `fd` in the task and make the call return its number
    /// (atomically, `SECCOMP_ADDFD_FLAG_SEND`). Fails closed with `EACCES`.
    InjectFdSend {
        /// The supervisor's fd; closed after the injection.
        fd: OwnedFd,
        /// `O_CLOEXEC` or 0.
        newfd_flags: u32,
    },
    /// As [`InjectFdSend`](NotifAction::InjectFdSend), then call
    /// `on_success` with the fd number the task received.
    InjectFdSendTracked {
        /// The supervisor's fd; closed after the injection.
        fd: OwnedFd,
        /// `O_CLOEXEC` or 0.
        newfd_flags: u32,
        /// Called once, only if the injection succeeded.
        on_success: OnInjected,
    },
    /// Do not answer now: the call stays blocked until
    /// [`SupervisorHandle::release`](crate::SupervisorHandle::release)
    /// answers it (or the supervisor stops, which answers `EPERM`).
    Hold,
    /// Send `signal` to the trapped task's process, then answer `ENOMEM`
    /// (seen only if the signal is not fatal).
    KillTask {
        /// The signal, e.g. `libc::SIGKILL`.
        signal: i32,
    },
    /// Send `signal` to the whole sandbox (its process group), then answer
    /// `ENOMEM` (seen only if the signal is not fatal).
    KillGroup {
        /// The signal, e.g. `libc::SIGKILL`.
        signal: i32,
    },
    /// Decide on the deferral pool, off the worker: for slow, blocking work.
    Defer(Deferred),
    /// Make the task re-issue its call as another one (the crate's own
    /// handlers only: a chroot's exec of a file of its view). Answered
    /// anywhere but under the exec freeze, it fails the call with `EACCES`.
    #[doc(hidden)]
    Reissue(Reissue),
}

/// A call to re-issue in place of the trapped one: opaque, made by the
/// crate's own handlers, carried out by the exec freeze's tracer
/// (`freeze::reissue`): the trapped call `nr` with `args`.
pub struct Reissue {
    /// The call to make, in the task's architecture.
    pub(crate) nr: u64,
    /// Up to six arguments, in order.
    pub(crate) args: Vec<ReArg>,
    /// Files added to the task (close-on-exec) before the answer.
    pub(crate) files: Vec<OwnedFd>,
}

impl fmt::Debug for Reissue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reissue")
            .field("nr", &self.nr)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// An argument of a re-issued call ([`Reissue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReArg {
    /// This value, as is.
    Value(u64),
    /// The number the task got for the `i`th of [`Reissue`]'s files.
    File(usize),
    /// A pointer to these bytes and a NUL, written in the task.
    Str(Vec<u8>),
    /// A pointer to a NULL-terminated array of pointers, written in the
    /// task (elements: [`ReArg::Value`] or [`ReArg::Str`]).
    Ptrs(Vec<ReArg>),
}

impl NotifAction {
    /// Defers the decision to `f`, run on the deferral pool.
    ///
    /// At most a fixed number of deferrals run at once (64 by default; more
    /// are answered `EAGAIN`); one that takes longer than the deadline (30 s
    /// by default) is answered `EIO` and its late result is dropped; one that
    /// returns `Defer` again is answered `EIO`.
    pub fn defer<F>(f: F) -> Self
    where
        F: FnOnce() -> NotifAction + Send + 'static,
    {
        NotifAction::Defer(Deferred {
            work: Box::new(f),
            kind: DeferKind::Bounded,
        })
    }

    /// Makes the call return a new fd for a sealed, read-only memfd holding
    /// `content`. Fails closed with `EIO` if the memfd cannot be made.
    pub fn inject_bytes(content: &[u8]) -> Self {
        match sealed_memfd(content) {
            Ok(fd) => NotifAction::InjectFdSend {
                fd,
                newfd_flags: libc::O_CLOEXEC as u32,
            },
            Err(e) => {
                log::warn!("inject_bytes: cannot create memfd: {e}; answering EIO");
                NotifAction::Errno(libc::EIO)
            }
        }
    }

    /// A short name for logs: `CONTINUE`, `ERRNO(13)`, ...
    pub fn label(&self) -> String {
        match self {
            NotifAction::Continue => "CONTINUE".into(),
            NotifAction::Errno(e) => format!("ERRNO({e})"),
            NotifAction::ReturnValue(v) => format!("RETURN({v})"),
            NotifAction::InjectFd { target, .. } => format!("INJECT_FD({target})"),
            NotifAction::InjectFdSend { .. } => "INJECT_FD_SEND".into(),
            NotifAction::InjectFdSendTracked { .. } => "INJECT_FD_SEND_TRACKED".into(),
            NotifAction::Hold => "HOLD".into(),
            NotifAction::KillTask { signal } => format!("KILL_TASK({signal})"),
            NotifAction::KillGroup { signal } => format!("KILL_GROUP({signal})"),
            NotifAction::Defer(_) => "DEFER".into(),
            NotifAction::Reissue(_) => "REISSUE".into(),
        }
    }
}

impl fmt::Debug for NotifAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A deferred decision: a blocking closure run on the deferral pool.
pub struct Deferred {
    /// The closure.
    pub(crate) work: Box<dyn FnOnce() -> NotifAction + Send>,
    /// How the supervisor bounds it.
    pub(crate) kind: DeferKind,
}

/// How a deferral is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeferKind {
    /// By the deferral pool: a permit (else `EAGAIN`) and the deadline
    /// (else `EIO`). Every handler's `Defer`.
    Bounded,
    /// By its own call: the closure ends by itself, within a short tick,
    /// once the call no longer waits for its answer (the id's validity,
    /// checked by the closure), and otherwise waits as long as the call
    /// would on bare Linux. No permit, no deadline (the crate's own
    /// handlers only: see `supervisor::defer`).
    WatchesItsCall,
}

impl Deferred {
    /// Runs the closure on the current thread.
    pub fn run(self) -> NotifAction {
        (self.work)()
    }

    /// A deferral bounded by its own call ([`DeferKind::WatchesItsCall`]):
    /// `f` must return soon after the call stops waiting.
    pub(crate) fn watching_its_call<F>(f: F) -> Deferred
    where
        F: FnOnce() -> NotifAction + Send + 'static,
    {
        Deferred {
            work: Box::new(f),
            kind: DeferKind::WatchesItsCall,
        }
    }

    /// The same deferral (bounded the same way), with `then` applied to its
    /// result.
    pub(crate) fn then<F>(self, then: F) -> Deferred
    where
        F: FnOnce(NotifAction) -> NotifAction + Send + 'static,
    {
        let Deferred { work, kind } = self;
        Deferred {
            work: Box::new(move || then(work())),
            kind,
        }
    }
}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Deferred(..)")
    }
}

/// Creates a memfd holding `content`, rewound to offset 0.
///
/// With `seal`, it is sealed against writes, growth and shrinking, so the
/// task it is given to cannot change what it holds.
pub fn content_memfd(content: &[u8], seal: bool) -> io::Result<OwnedFd> {
    let name = CString::new("unotify-content").expect("no NUL in literal");
    let mut flags = libc::MFD_CLOEXEC;
    if seal {
        flags |= libc::MFD_ALLOW_SEALING;
    }
    let fd = memfd::memfd_create(&name, flags)?;
    let mut file = File::from(fd);
    file.write_all(content)?;
    file.seek(SeekFrom::Start(0))?;
    let fd = OwnedFd::from(file);
    if seal {
        use std::os::fd::AsFd;
        memfd::add_seals(
            fd.as_fd(),
            libc::F_SEAL_SEAL | libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK,
        )?;
    }
    Ok(fd)
}

/// [`content_memfd`] with seals.
pub fn sealed_memfd(content: &[u8]) -> io::Result<OwnedFd> {
    content_memfd(content, true)
}

/// The errno names unotify knows, by name (upper case). Where two names
/// share a number (`EAGAIN`/`EWOULDBLOCK`) the first is the one
/// [`errno_name`] gives.
pub fn errno_names() -> impl Iterator<Item = &'static str> {
    ERRNO_NAMES.iter().map(|&(name, _)| name)
}

/// The number of the errno named `name` (`EACCES`; upper case), if
/// unotify knows it.
///
/// ```
/// assert_eq!(unotify::action::errno_by_name("EACCES"), Some(libc::EACCES));
/// assert_eq!(unotify::action::errno_by_name("EACCESS"), None);
/// ```
pub fn errno_by_name(name: &str) -> Option<i32> {
    ERRNO_NAMES
        .iter()
        .find(|&&(n, _)| n == name)
        .map(|&(_, e)| e)
}

/// The name of errno `n`, if unotify knows it.
pub fn errno_name(n: i32) -> Option<&'static str> {
    ERRNO_NAMES
        .iter()
        .find(|&&(_, e)| e == n)
        .map(|&(name, _)| name)
}

/// Errno names, for `--deny SYSCALL=ERRNO` and traces.
const ERRNO_NAMES: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("EWOULDBLOCK", libc::EWOULDBLOCK),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("ETXTBSY", libc::ETXTBSY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EMLINK", libc::EMLINK),
    ("EPIPE", libc::EPIPE),
    ("ERANGE", libc::ERANGE),
    ("EDEADLK", libc::EDEADLK),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ELOOP", libc::ELOOP),
    ("ENOTSUP", libc::ENOTSUP),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
    ("ENETDOWN", libc::ENETDOWN),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNABORTED", libc::ECONNABORTED),
    ("ECONNRESET", libc::ECONNRESET),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("EHOSTUNREACH", libc::EHOSTUNREACH),
    ("EALREADY", libc::EALREADY),
    ("EINPROGRESS", libc::EINPROGRESS),
    ("EDQUOT", libc::EDQUOT),
    ("ECANCELED", libc::ECANCELED),
];
