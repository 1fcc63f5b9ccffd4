//! The few process-control calls a launcher needs around a sandbox, as
//! safe functions: signals (blocking and waiting for them), pidfds, and
//! job control on a terminal. The `unotify` command uses them; the rest of
//! the kernel interface is private.

pub use crate::sys::pidfd::{pidfd_open, pidfd_send_signal};
pub use crate::sys::process::{
    is_job_stopped, kill, kill_group, kill_own_children, own_children, own_group,
    raise_open_files_limit, reap_orphan_zombies, set_child_subreaper, set_dumpable,
    set_terminal_foreground, terminal_foreground,
};
pub use crate::sys::signals::{
    block, block_termination_signals, blocked, die_of_signal, is_ignored, set_default_action,
    take_pending, wait_signal, wait_signal_info, wait_signal_info_for, SigSet, SignalInfo,
    TERMINATION_SIGNALS,
};
