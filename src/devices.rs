//! Block devices refused to a sandbox whose files are confined (a path
//! policy, allow lists, a chroot or work directory): a root program
//! reading the blocks of a denied file through the device it is on
//! (`debugfs -R 'cat /secret' /dev/sdX`), or writing them, gets round every
//! rule made on paths.
//!
//! In the kernel, where the host lets the supervisor: the sandbox's cgroup
//! refuses every block device (`sys::devices`; the builder asks for it in
//! its plan, the spawn makes it with the sandbox's other cgroups): the
//! program's own opens and `mknod`s of block devices fail with `EPERM`,
//! whatever path or symlink reaches them. Here, in every sandbox that
//! confines files: `mknod`/`mknodat` of a block device are refused in the
//! filter (`EPERM`), and opens made on the program's behalf (outside the
//! sandbox's cgroup) refuse a pinned block device (`EPERM`, the cgroup's
//! errno: see `paths::open_checked`). Without a device cgroup (none can be
//! made here, or `cgroups(false)`), the builder routes every open through
//! the on-behalf route (no kernel backstop, no open answered `CONTINUE` on
//! a path check) so that this check sees them all.

use std::sync::Arc;

use crate::error::Result;
use crate::filter::ArgCheck;
use crate::supervisor::enforcement::{Enforcement, Install, Running, Stage, StartEnv};
use crate::syscalls;

/// The feature: filter rules, and the marker on-behalf opens look for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockDevices;

/// Found among the services of a supervisor whose sandbox refuses block
/// devices: an open made on the program's behalf refuses them too.
#[derive(Debug)]
pub(crate) struct RefusesBlock;

impl Stage for RefusesBlock {}

impl Enforcement for BlockDevices {
    /// `mknod`/`mknodat` of a block device refused (`EPERM`) in front of
    /// any handler (path denial makes nodes on the program's behalf,
    /// outside the sandbox's cgroup). The mode is in a register: the
    /// filter sees what the kernel uses. `bpf` refused (`EPERM`).
    fn late_rules(&self, install: &mut Install<'_>) -> Result<()> {
        let arch = install.filter.arch();
        let fmt = libc::S_IFMT as u64;
        for (name, index) in [("mknod", 1), ("mknodat", 2)] {
            if let Some(nr) = syscalls::number(arch, name) {
                install.filter.refuse_first(
                    nr,
                    vec![ArgCheck::new(index, fmt, libc::S_IFBLK as u64)],
                    libc::EPERM,
                )?;
            }
        }
        // With its capabilities kept (`CAP_SYS_ADMIN`), a program could
        // detach or replace the cgroup v2 device program with `bpf`.
        install.filter.refuse_undecided(&["bpf"], libc::EPERM)
    }

    fn start(&self, _env: &StartEnv<'_>) -> Result<Option<Running>> {
        Ok(Some(Running::new(Arc::new(RefusesBlock))))
    }
}

/// Whether a supervisor's on-behalf open of a file whose `fstat` is `st`
/// must be refused (`EPERM`): a block device, in a sandbox that refuses
/// them ([`RefusesBlock`] among `services`).
pub(crate) fn refused(
    cx: &crate::handler::HandlerCtx<'_>,
    st: &crate::sys::path::FileStat,
) -> bool {
    st.mode & libc::S_IFMT == libc::S_IFBLK && cx.service::<RefusesBlock>().is_some()
}
