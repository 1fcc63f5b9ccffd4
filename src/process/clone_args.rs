//! What a fork-like call asks for. `clone` and the legacy `fork`/`vfork`
//! carry their flags in registers, a copy in the notification that the
//! task cannot change after the check. (`clone3` passes them in memory,
//! which the kernel copies again after a `CONTINUE`; it is refused with
//! `ENOSYS`, see the handlers.)

// The flags as `clone`'s first argument carries them (libc's, widened).
/// `CLONE_THREAD`: a new thread, not a new process.
pub const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
/// `CLONE_VM`: share the address space.
pub const CLONE_VM: u64 = libc::CLONE_VM as u64;
/// `CLONE_VFORK`: the parent waits until the child execs or exits.
pub const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
/// Every namespace flag `clone` accepts.
pub const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// Which fork-like call this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkKind {
    /// `clone(2)`: flags in the first argument.
    Clone,
    /// `fork(2)`.
    Fork,
    /// `vfork(2)`.
    Vfork,
}

/// The decision-relevant part of a fork-like call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloneRequest {
    /// The call.
    pub kind: ForkKind,
    /// Clone flags (for `clone`, without the exit-signal byte).
    pub flags: u64,
}

impl CloneRequest {
    /// Decodes a request from the first argument of the call.
    pub fn decode(kind: ForkKind, arg0: u64) -> CloneRequest {
        let flags = match kind {
            // The low byte of clone's flags is the exit signal (CSIGNAL).
            ForkKind::Clone => arg0 & !0xff,
            ForkKind::Fork => 0,
            ForkKind::Vfork => CLONE_VM | CLONE_VFORK,
        };
        CloneRequest { kind, flags }
    }

    /// Creates a thread (not counted as a process).
    pub fn is_thread(&self) -> bool {
        self.flags & CLONE_THREAD != 0
    }

    /// Shares its parent's address space (`CLONE_VM`, vfork): the child
    /// makes no copy of it.
    pub fn shares_memory(&self) -> bool {
        self.flags & CLONE_VM != 0
    }

    /// Asks for a new namespace of any kind.
    pub fn wants_namespace(&self) -> bool {
        self.flags & NAMESPACE_FLAGS != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_exit_signal_is_not_a_flag() {
        // SIGCHLD | 0x80 (CLONE_NEWTIME's bit, part of the signal byte here).
        let r = CloneRequest::decode(ForkKind::Clone, 0x80 | libc::SIGCHLD as u64);
        assert!(!r.wants_namespace());
        assert!(!r.is_thread());
    }

    #[test]
    fn threads_and_namespaces() {
        let t = CloneRequest::decode(ForkKind::Clone, CLONE_THREAD | CLONE_VM);
        assert!(t.is_thread());
        let n = CloneRequest::decode(ForkKind::Clone, 0x1000_0000);
        assert!(n.wants_namespace());
        assert_eq!(
            CloneRequest::decode(ForkKind::Vfork, 0).flags,
            CLONE_VM | CLONE_VFORK
        );
    }
}
