//! The trapped system call as handlers see it.

use crate::sys::seccomp::SeccompNotif;

pub(crate) mod decode;

/// One trapped system call, waiting for its answer.
///
/// Plain data copied out of the kernel's `struct seccomp_notif`: reading it
/// never touches the trapped task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// Kernel cookie for this notification; valid until it is answered or
    /// the task is interrupted.
    pub id: u64,
    /// Thread id of the trapped task, in the supervisor's pid namespace.
    pub pid: u32,
    /// System call number for [`arch`](Self::arch).
    pub nr: i32,
    /// `AUDIT_ARCH_*` value of the calling convention.
    pub arch: u32,
    /// Instruction pointer of the trapped task.
    pub instruction_pointer: u64,
    /// The six raw arguments.
    pub args: [u64; 6],
}

impl Notification {
    /// The system call's name, if this crate knows it.
    pub fn syscall_name(&self) -> Option<&'static str> {
        u32::try_from(self.nr)
            .ok()
            .and_then(crate::syscalls::native_name)
    }

    /// The system call's name, or its number as text.
    pub fn syscall_label(&self) -> String {
        match self.syscall_name() {
            Some(name) => name.to_owned(),
            None => format!("syscall_{}", self.nr),
        }
    }
}

impl From<&SeccompNotif> for Notification {
    fn from(n: &SeccompNotif) -> Self {
        Notification {
            id: n.id,
            pid: n.pid,
            nr: n.data.nr,
            arch: n.data.arch,
            instruction_pointer: n.data.instruction_pointer,
            args: n.data.args,
        }
    }
}
