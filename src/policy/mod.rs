//! The policy callback: a user function told about trapped calls, which can
//! deny them and change the running policy.
//!
//! Held calls ([`HELD_SYSCALLS`]: exec, open and every call that creates,
//! changes or removes a file by path, connect, bind, send) wait for the
//! callback's [`Verdict`] for up to 5 s, then are denied. A verdict only
//! tightens. Other calls are told after they are answered: their verdict
//! is not enforced ([`SyscallEvent::held`] is `false`).
//!
//! The callback is told about one call at a time, in the order the calls
//! came (an event not held, answered at once and told later, still comes
//! before a held call made after it). It runs on the supervisor's policy
//! thread, or, for a held call that finds it idle, on the worker handling
//! that call; such a call cannot be cut short at the hold timeout and is
//! denied when the callback returns late.
//!
//! A per-process network restriction (`restricted`) is inherited at
//! creation: with a callback, every call that creates a process is
//! trapped, and one of a restricted process is let through under a trace
//! for its creation event (`forks`), so the new process is restricted
//! before it runs, whatever becomes of its creator.

mod context;
mod event;
mod forks;
mod mailbox;
mod parents;
mod restricted;
mod runner;
mod stage;
mod verdict;

pub use context::{DynamicPolicy, PolicyContext};
pub use event::{SyscallCategory, SyscallEvent};
pub use runner::HOLD_TIMEOUT;
pub use verdict::Verdict;

pub(crate) use runner::{PolicyCallback, PolicySetup};
pub(crate) use stage::{PolicyFeature, PolicyState};

/// The calls that wait for the callback's verdict: exec, every call that
/// opens, creates, changes or removes a file by path, and every call that
/// reaches or binds an address. A verdict on any other call is not
/// enforced: the call was answered before the callback was told
/// ([`SyscallEvent::held`] says which).
pub const HELD_SYSCALLS: &[&str] = &[
    "execve",
    "execveat",
    "open",
    "openat",
    "openat2",
    "creat",
    "truncate",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "removexattr",
    "lremovexattr",
    "setxattrat",
    "removexattrat",
    "file_setattr",
    "connect",
    "bind",
    "sendto",
    "sendmsg",
    "sendmmsg",
];

/// Whether calls of `name` wait for the callback's verdict.
pub fn is_held(name: &str) -> bool {
    HELD_SYSCALLS.contains(&name)
}
