//! The program's view of the file system stays the supervisor's while paths
//! are denied: the calls that would change it are refused in the filter.
//!
//! Path denial resolves the program's paths in the supervisor's root and
//! mount namespace. A program that changed its own (a `chroot` into a jail
//! holding a copy of the denied file at the same path, a private mount
//! namespace, a bind mount or overlay over the denied file, a detached
//! mount tree moved into place) would be judged in one view and served by
//! the kernel in another. So, with `EPERM`, before any handler:
//!
//! - `chroot`, `pivot_root`, `setns` (its target is an fd, which a filter
//!   cannot inspect: refused whatever it names);
//! - `unshare` and `clone` asking for a new mount or user namespace
//!   (`CLONE_NEWNS`, `CLONE_NEWUSER`; the flags are in a register, so the
//!   filter reads the very value the kernel uses); `clone3` (flags in
//!   memory) gets `ENOSYS` unless it is already trapped or refused, as
//!   under fork tracking, so the C library falls back to `clone`;
//! - the mount family: `mount`, `umount`, `umount2`, `fsopen`, `fsconfig`,
//!   `fsmount`, `fspick`, `move_mount`, `mount_setattr`, and `open_tree`
//!   and `open_tree_attr` whatever their flags (with `OPEN_TREE_CLONE` they
//!   detach a copy of a tree that `move_mount` can put anywhere; without
//!   it, they are an `O_PATH` open the open handlers never see).
//!
//! Calls the running architecture's table does not know are skipped.
//! Called by the sandbox builder after every other rule is in.

use crate::error::Result;
use crate::filter::{ArgCheck, FilterBuilder};
use crate::syscalls;

/// Calls refused whatever their arguments.
const REFUSED: [&str; 14] = [
    "chroot",
    "pivot_root",
    "setns",
    "mount",
    "umount",
    "umount2",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "mount_setattr",
    "open_tree",
    "open_tree_attr",
];

/// Calls refused when their first argument asks for a new namespace of
/// these kinds.
const NAMESPACE_CALLS: [&str; 2] = ["unshare", "clone"];

/// Adds the refusals to `filter`, in front of any rule or handler the
/// calls already have.
pub(crate) fn install(filter: &mut FilterBuilder) -> Result<()> {
    let arch = filter.arch();
    let nr = |name: &str| syscalls::number(arch, name);
    for name in REFUSED {
        if let Some(n) = nr(name) {
            filter.refuse_first(n, Vec::new(), libc::EPERM)?;
        }
    }
    for name in NAMESPACE_CALLS {
        if let Some(n) = nr(name) {
            for flag in [libc::CLONE_NEWNS as u64, libc::CLONE_NEWUSER as u64] {
                filter.refuse_first(n, vec![ArgCheck::new(0, flag, flag)], libc::EPERM)?;
            }
        }
    }
    if let Some(n) = nr("clone3") {
        if filter.is_denied(n).is_none() && !filter.is_notified(n) {
            filter.deny(n, libc::ENOSYS)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    #[test]
    fn every_call_is_known_to_the_native_table() {
        // A misspelt name would silently refuse nothing; the names only
        // missing from older tables are the 6.15 `open_tree_attr` and the
        // legacy `umount`, absent on x86_64 and aarch64.
        let arch = Arch::native();
        for name in REFUSED.iter().chain(NAMESPACE_CALLS.iter()) {
            let optional = matches!(*name, "umount" | "open_tree_attr");
            assert!(
                optional || syscalls::number(arch, name).is_some(),
                "{name} is not in the table"
            );
        }
    }

    #[test]
    fn installs_on_top_of_notified_clone() {
        let arch = Arch::native();
        let mut f = FilterBuilder::new(arch);
        let clone = syscalls::number(arch, "clone").unwrap();
        f.notify(clone).unwrap();
        install(&mut f).unwrap();
        assert!(f.is_notified(clone));
        assert!(f.is_denied(syscalls::number(arch, "clone3").unwrap()) == Some(libc::ENOSYS));
        f.build().unwrap();
    }
}
