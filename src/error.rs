//! The crate's error type.

use std::fmt;
use std::io;

/// Everything that can go wrong while building a filter, starting a sandbox or
/// running the supervisor.
///
/// Each variant's message says what failed and, where there is one, what to do
/// about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A syscall name is not known for the target architecture.
    UnknownSyscall {
        /// The name as given.
        name: String,
    },
    /// The same syscall was asked to be both notified and denied, or a
    /// handler was registered on a syscall that the filter denies.
    ConflictingRule {
        /// The syscall name (or number, if it has no name).
        syscall: String,
        /// What conflicts.
        reason: &'static str,
    },
    /// The generated BPF program exceeds the kernel's instruction limit.
    FilterTooLarge {
        /// Instructions the program would need.
        len: usize,
        /// The kernel's limit (`BPF_MAXINSNS`).
        max: usize,
    },
    /// An errno given for a deny rule is out of range (1..=4095).
    InvalidErrno {
        /// The value given.
        errno: i32,
    },
    /// The running kernel lacks a feature the supervisor needs.
    Unsupported {
        /// The feature.
        feature: &'static str,
        /// The error the kernel returned when probed.
        source: io::Error,
    },
    /// The program to run could not be found.
    NotFound {
        /// The program as given.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The program was found but could not be executed.
    CannotExecute {
        /// The program as given.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The sandbox could not be set up (fork, filter install, listener transfer).
    Setup {
        /// Which step failed.
        step: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// An invalid configuration value.
    InvalidConfig {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The kernel cannot keep the sandboxed program away from the host
    /// (Landlock missing, or older than ABI 6), and the caller did not
    /// accept the weaker isolation
    /// ([`SandboxBuilder::allow_weak_isolation`](crate::SandboxBuilder::allow_weak_isolation)).
    WeakIsolation {
        /// What the kernel lacks and what the program could reach.
        detail: String,
    },
    /// The policy needs a Landlock right the kernel lacks, and the caller
    /// did not allow it to degrade
    /// ([`SandboxBuilder::allow_degraded`](crate::SandboxBuilder::allow_degraded)).
    MissingRight {
        /// The right.
        right: crate::landlock::Right,
        /// The kernel's Landlock ABI (0: no Landlock).
        kernel_abi: u32,
    },
    /// The supervisor has stopped (its sandbox ended, or it was asked to
    /// stop): there is nothing left to act on.
    Stopped,
    /// This process itself runs under a seccomp filter that keeps a sandbox
    /// from being made: another supervisor's (the kernel allows one
    /// user-notification listener per filter chain, so a sandbox cannot be
    /// made inside another), or a filter that refuses the calls a sandbox's
    /// start needs.
    Nested {
        /// The error of the step that failed.
        source: io::Error,
    },
    /// A system call made by the supervisor failed.
    Io {
        /// What the supervisor was doing.
        context: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: &'static str, source: io::Error) -> Self {
        Error::Io { context, source }
    }

    pub(crate) fn setup(step: &'static str, source: io::Error) -> Self {
        Error::Setup { step, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownSyscall { name } => write!(
                f,
                "unknown system call `{name}` for this architecture; use a name from the kernel's syscall table (e.g. `openat`) or a number below 1024"
            ),
            Error::ConflictingRule { syscall, reason } => {
                write!(f, "conflicting rule for `{syscall}`: {reason}")
            }
            Error::FilterTooLarge { len, max } => write!(
                f,
                "the seccomp filter needs {len} instructions but the kernel accepts at most {max}; trap or deny fewer system calls"
            ),
            Error::InvalidErrno { errno } => {
                write!(f, "errno {errno} is out of range; use a value from 1 to 4095")
            }
            Error::Unsupported { feature, source } => write!(
                f,
                "the kernel does not support {feature} ({source}); a Linux 5.9 or newer kernel with seccomp user notification is required"
            ),
            Error::NotFound { program, source } => {
                write!(f, "{program}: command not found ({source})")
            }
            Error::CannotExecute { program, source } => {
                write!(f, "{program}: cannot execute ({source})")
            }
            Error::Setup { step, source } => {
                write!(f, "sandbox setup failed while trying to {step}: {source}")
            }
            Error::InvalidConfig { message } => write!(f, "invalid configuration: {message}"),
            Error::WeakIsolation { detail } => write!(
                f,
                "{detail}; run on Linux 6.12 or newer with Landlock enabled, or accept the weaker isolation (`unotify run --allow-weak-isolation`, `SandboxBuilder::allow_weak_isolation(true)`)"
            ),
            Error::MissingRight { right, kernel_abi } => {
                let kernel = if *kernel_abi == 0 {
                    "this kernel has no Landlock".to_owned()
                } else {
                    format!("this kernel's Landlock is ABI {kernel_abi}")
                };
                write!(
                    f,
                    "the policy needs the Landlock right `{right}` (ABI {}), but {kernel}; run on a newer kernel, or accept that {} (`--allow-degraded {right}`, `SandboxBuilder::allow_degraded(Right::{right:?})`)",
                    right.abi(),
                    right.degraded_means(),
                )
            }
            Error::Nested { source } => write!(
                f,
                "cannot make a sandbox here ({source}): this process already runs under a seccomp filter (another unotify sandbox or supervisor: the kernel allows one per process and its children, or a filter that refuses what a sandbox's start needs); run unotify outside it, or give the outer sandbox the policy"
            ),
            Error::Stopped => f.write_str(
                "the supervisor has stopped (its sandbox ended); take a new handle from a running child",
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unsupported { source, .. }
            | Error::NotFound { source, .. }
            | Error::CannotExecute { source, .. }
            | Error::Setup { source, .. }
            | Error::Nested { source }
            | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for `std::result::Result<T, unotify::Error>`.
pub type Result<T> = std::result::Result<T, Error>;
