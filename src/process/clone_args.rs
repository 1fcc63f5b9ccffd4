//! What a fork-like call asks for, read once from the trapped task.
//!
//! `clone` and the legacy `fork`/`vfork` carry their flags in registers (a
//! copy in the notification). `clone3` passes a pointer to a
//! `struct clone_args`; it is read once into a stack buffer and every
//! decision is made on that copy, never by reading the task's memory again.

use crate::handler::{HandlerCtx, MemoryError};

/// `CLONE_THREAD`: a new thread, not a new process.
pub const CLONE_THREAD: u64 = 0x0001_0000;
/// `CLONE_VM`: share the address space.
pub const CLONE_VM: u64 = 0x0000_0100;
/// `CLONE_VFORK`: the parent waits until the child execs or exits.
pub const CLONE_VFORK: u64 = 0x0000_4000;
/// `CLONE_NEWTIME` (valid only in `clone3` flags: in `clone` that bit is
/// part of the exit signal).
pub const CLONE_NEWTIME: u64 = 0x0000_0080;

/// Every namespace flag `clone` accepts (`CLONE_NEWNS | NEWCGROUP | NEWUTS |
/// NEWIPC | NEWUSER | NEWPID | NEWNET`).
pub const NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// `CLONE_ARGS_SIZE_VER0`: the smallest `struct clone_args` the kernel takes.
const CLONE_ARGS_SIZE_VER0: u64 = 64;

/// Which fork-like call this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkKind {
    /// `clone(2)`: flags in the first argument.
    Clone,
    /// `clone3(2)`: flags in `struct clone_args`.
    Clone3,
    /// `fork(2)`.
    Fork,
    /// `vfork(2)`.
    Vfork,
}

/// The decision-relevant part of a fork-like call, copied out once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloneRequest {
    /// The call.
    pub kind: ForkKind,
    /// Clone flags (for `clone`, without the exit-signal byte).
    pub flags: u64,
}

impl CloneRequest {
    /// Decodes a request from the raw arguments of `clone`/`fork`/`vfork`
    /// and, for `clone3`, from the bytes of its `struct clone_args` copy.
    pub fn decode(kind: ForkKind, arg0: u64, clone3_args: Option<&[u8]>) -> CloneRequest {
        let flags = match kind {
            // The low byte of clone's flags is the exit signal (CSIGNAL).
            ForkKind::Clone => arg0 & !0xff,
            ForkKind::Clone3 => clone3_args
                .and_then(|b| b.get(..8))
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                .unwrap_or(0),
            ForkKind::Fork => 0,
            ForkKind::Vfork => CLONE_VM | CLONE_VFORK,
        };
        CloneRequest { kind, flags }
    }

    /// Reads the request of the trapped call. For `clone3` the
    /// `struct clone_args` is read exactly once.
    pub fn read(cx: &HandlerCtx<'_>, kind: ForkKind) -> Result<CloneRequest, ReadError> {
        if kind != ForkKind::Clone3 {
            return Ok(CloneRequest::decode(kind, cx.arg(0), None));
        }
        let size = cx.arg(1);
        if size < CLONE_ARGS_SIZE_VER0 {
            // The kernel refuses it too; nothing to decide on.
            return Err(ReadError::TooSmall);
        }
        let mut buf = [0u8; CLONE_ARGS_SIZE_VER0 as usize];
        cx.read_mem_into(cx.arg(0), &mut buf)
            .map_err(ReadError::Memory)?;
        Ok(CloneRequest::decode(kind, 0, Some(&buf)))
    }

    /// Creates a thread (not counted as a process).
    pub fn is_thread(&self) -> bool {
        self.flags & CLONE_THREAD != 0
    }

    /// Asks for a new namespace of any kind.
    pub fn wants_namespace(&self) -> bool {
        let mut ns = NAMESPACE_FLAGS;
        if self.kind == ForkKind::Clone3 {
            ns |= CLONE_NEWTIME;
        }
        self.flags & ns != 0
    }
}

/// Why a `clone3` request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// `size` is below `CLONE_ARGS_SIZE_VER0` (answer `EINVAL`).
    TooSmall,
    /// The structure could not be read.
    Memory(MemoryError),
}

impl ReadError {
    /// The errno to answer.
    pub fn errno(&self) -> i32 {
        match self {
            ReadError::TooSmall => libc::EINVAL,
            ReadError::Memory(MemoryError::Fault(_)) => libc::EFAULT,
            ReadError::Memory(e) => e.errno(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_exit_signal_is_not_a_flag() {
        // SIGCHLD | CLONE_NEWTIME's bit value in the signal byte.
        let r = CloneRequest::decode(ForkKind::Clone, 0x80 | libc::SIGCHLD as u64, None);
        assert!(!r.wants_namespace());
        assert!(!r.is_thread());
    }

    #[test]
    fn clone3_newtime_is_a_namespace() {
        let mut args = [0u8; 64];
        args[..8].copy_from_slice(&CLONE_NEWTIME.to_ne_bytes());
        let r = CloneRequest::decode(ForkKind::Clone3, 0, Some(&args));
        assert!(r.wants_namespace());
    }

    #[test]
    fn threads_and_namespaces() {
        let t = CloneRequest::decode(ForkKind::Clone, CLONE_THREAD | CLONE_VM, None);
        assert!(t.is_thread());
        let n = CloneRequest::decode(ForkKind::Clone, 0x1000_0000, None);
        assert!(n.wants_namespace());
        assert_eq!(
            CloneRequest::decode(ForkKind::Vfork, 0, None).flags,
            CLONE_VM | CLONE_VFORK
        );
    }
}
