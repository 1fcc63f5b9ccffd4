//! Landlock: the three system calls, without a crate.
//!
//! Owns the kernel ABI (the ruleset attribute struct, rule types, flags) and
//! an owned ruleset fd. The parent creates the ruleset (and may add rules to
//! it); the `CLONE_VM` child enforces it on itself with
//! `restrict_self_raw`, a raw call that leaves `errno` alone. Called by
//! the crate's isolation module and the child side of [`super::spawn`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt_long;

/// `LANDLOCK_CREATE_RULESET_VERSION`: asks `landlock_create_ruleset` for the
/// ABI version instead of creating a ruleset.
const CREATE_RULESET_VERSION: libc::c_ulong = 1;

/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (ABI 6): no connecting to an
/// abstract unix socket bound outside the domain.
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// `LANDLOCK_SCOPE_SIGNAL` (ABI 6): no signal to a process outside the domain.
pub const SCOPE_SIGNAL: u64 = 1 << 1;

/// `LANDLOCK_ACCESS_FS_*` (ABI 1 unless said): execute a file.
pub const ACCESS_FS_EXECUTE: u64 = 1 << 0;
/// Open a file for writing.
pub const ACCESS_FS_WRITE_FILE: u64 = 1 << 1;
/// Open a file for reading.
pub const ACCESS_FS_READ_FILE: u64 = 1 << 2;
/// Open a directory or list its content.
pub const ACCESS_FS_READ_DIR: u64 = 1 << 3;
/// Remove a directory (the right is the parent's).
pub const ACCESS_FS_REMOVE_DIR: u64 = 1 << 4;
/// Create a directory (the right is the parent's).
pub const ACCESS_FS_MAKE_DIR: u64 = 1 << 7;
/// Create a socket file (the `bind` of a unix socket to a pathname).
pub const ACCESS_FS_MAKE_SOCK: u64 = 1 << 9;
/// Create a block device node.
pub const ACCESS_FS_MAKE_BLOCK: u64 = 1 << 11;
/// Link or rename a file into another directory (ABI 2; without it,
/// the kernel answers such a link or rename with `EXDEV` in any domain).
pub const ACCESS_FS_REFER: u64 = 1 << 13;
/// Truncate a file (ABI 3).
pub const ACCESS_FS_TRUNCATE: u64 = 1 << 14;
/// `ioctl` on a character or block device opened in the domain (ABI 5).
pub const ACCESS_FS_IOCTL_DEV: u64 = 1 << 15;

/// The rights that apply to a file (a rule on a file takes only these).
pub const ACCESS_FILE: u64 = ACCESS_FS_EXECUTE
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_READ_FILE
    | ACCESS_FS_TRUNCATE
    | ACCESS_FS_IOCTL_DEV;

/// `LANDLOCK_ACCESS_NET_CONNECT_TCP` (ABI 4): connect a TCP socket to a port.
pub const ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;

/// `LANDLOCK_RULE_PATH_BENEATH`.
const RULE_PATH_BENEATH: libc::c_int = 1;
/// `LANDLOCK_RULE_NET_PORT`.
const RULE_NET_PORT: libc::c_int = 2;

/// The first ABI with signal and abstract unix socket scoping.
pub const ABI_SCOPING: u32 = 6;

/// `struct landlock_ruleset_attr`. The kernel reads a prefix of it whose
/// length says which fields the caller knows: `handled_access_fs` (ABI 1),
/// `handled_access_net` (ABI 4), `scoped` (ABI 6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RulesetAttr {
    /// `LANDLOCK_ACCESS_FS_*` rights the ruleset restricts.
    pub handled_access_fs: u64,
    /// `LANDLOCK_ACCESS_NET_*` rights the ruleset restricts.
    pub handled_access_net: u64,
    /// `LANDLOCK_SCOPE_*` bits: what the domain may not reach outside itself.
    pub scoped: u64,
}

impl RulesetAttr {
    /// The length of the prefix the kernel must read: the shortest one that
    /// holds every non-zero field (an older kernel refuses a longer struct
    /// with non-zero bytes it does not know).
    fn size(&self) -> usize {
        if self.scoped != 0 {
            24
        } else if self.handled_access_net != 0 {
            16
        } else {
            8
        }
    }
}

/// `struct landlock_path_beneath_attr` (packed in the kernel's header).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// `struct landlock_net_port_attr`.
#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// The Landlock ABI version of the running kernel
/// (`landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`).
///
/// `ENOSYS`: Landlock is not built in; `EOPNOTSUPP`: built in but disabled
/// at boot.
pub fn abi_version() -> io::Result<u32> {
    // SAFETY: with a null attribute pointer and size 0 the kernel reads no
    // memory; the flag asks only for the version number.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            CREATE_RULESET_VERSION,
        )
    };
    Ok(cvt_long(ret)? as u32)
}

/// A ruleset not yet enforced: rules are added in the parent, then a child
/// enforces it with `restrict_self_raw`. Closing it does not affect a
/// domain already made from it.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    /// Creates a ruleset restricting what `attr` names, on an fd above the
    /// standard ones (a child's stdio set-up cannot clobber it). The caller trims
    /// `attr` to what the running ABI knows (`EINVAL` otherwise; `ENOMSG` if
    /// it names nothing at all).
    pub fn create(attr: &RulesetAttr) -> io::Result<Ruleset> {
        // SAFETY: the kernel reads `attr.size()` bytes of a live, repr(C)
        // struct at least that long; the result is a new fd (close-on-exec).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                attr as *const RulesetAttr,
                attr.size() as libc::size_t,
                0 as libc::c_ulong,
            )
        };
        let fd = cvt_long(ret)? as RawFd;
        // SAFETY: the kernel just created this fd for us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Ruleset {
            fd: super::spawn::lift_above_stdio(fd)?,
        })
    }

    /// Allows `access` (`LANDLOCK_ACCESS_FS_*`, within the handled ones)
    /// beneath the file or directory `parent` (opened with `O_PATH` or not).
    pub fn allow_path_beneath(&self, parent: BorrowedFd<'_>, access: u64) -> io::Result<()> {
        let attr = PathBeneathAttr {
            allowed_access: access,
            parent_fd: parent.as_raw_fd(),
        };
        self.add_rule(RULE_PATH_BENEATH, (&attr as *const PathBeneathAttr).cast())
    }

    /// Allows `access` (`LANDLOCK_ACCESS_NET_*`, within the handled ones) on
    /// TCP port `port`.
    pub fn allow_net_port(&self, port: u16, access: u64) -> io::Result<()> {
        let attr = NetPortAttr {
            allowed_access: access,
            port: u64::from(port),
        };
        self.add_rule(RULE_NET_PORT, (&attr as *const NetPortAttr).cast())
    }

    fn add_rule(&self, kind: libc::c_int, attr: *const libc::c_void) -> io::Result<()> {
        // SAFETY: `attr` points to a live struct of the layout `kind` names
        // (see the two callers); the kernel copies it during the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                kind,
                attr,
                0 as libc::c_uint,
            )
        };
        cvt_long(ret).map(drop)
    }

    /// Enforces this ruleset on the calling thread only, after setting the
    /// thread's `no_new_privs` (which it needs). The domain stays with the
    /// thread for good: call it only in a thread made for one call and then
    /// ended (`super::net::run_as`), never in one of the supervisor's own.
    pub fn restrict_this_thread(&self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments; PR_SET_NO_NEW_PRIVS sets a
        // flag of the calling task (thread) only.
        super::cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        // SAFETY: landlock_restrict_self takes an fd and flags, no pointers;
        // without the thread-sync flag it restricts the calling thread only.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.fd.as_raw_fd(),
                0 as libc::c_uint,
            )
        };
        cvt_long(ret).map(drop)
    }
}

/// A ruleset that lets a thread make socket files (bind unix sockets to
/// pathnames) only in the directory `dir` and beneath it, and restricts
/// nothing else: for a bind by a path the program gave, which a thread of
/// the program's may redirect by swapping a symlink (see `net::onbehalf`).
pub fn make_sock_beneath(dir: BorrowedFd<'_>) -> io::Result<Ruleset> {
    let ruleset = Ruleset::create(&RulesetAttr {
        handled_access_fs: ACCESS_FS_MAKE_SOCK,
        ..RulesetAttr::default()
    })?;
    ruleset.allow_path_beneath(dir, ACCESS_FS_MAKE_SOCK)?;
    Ok(ruleset)
}

impl AsFd for Ruleset {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<Ruleset> for OwnedFd {
    fn from(r: Ruleset) -> OwnedFd {
        r.fd
    }
}

/// Enforces the ruleset `fd` on the calling thread (`landlock_restrict_self`),
/// as a raw call: the kernel's result, `0` or `-errno`. Needs
/// `no_new_privs` (or `CAP_SYS_ADMIN`).
///
/// # Safety
/// None beyond a plain system call; `unsafe` because it is meant for the
/// `CLONE_VM` child, where only raw calls may be made (see `spawn_child`).
pub(super) unsafe fn restrict_self_raw(fd: RawFd) -> isize {
    // SAFETY: landlock_restrict_self takes an fd and flags, no pointers.
    unsafe { super::raw::syscall(libc::SYS_landlock_restrict_self, &[fd as usize, 0]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_prefix_lengths() {
        let fs = RulesetAttr {
            handled_access_fs: 1,
            ..Default::default()
        };
        assert_eq!(fs.size(), 8);
        let net = RulesetAttr {
            handled_access_net: 1,
            ..Default::default()
        };
        assert_eq!(net.size(), 16);
        let scoped = RulesetAttr {
            scoped: SCOPE_SIGNAL,
            ..Default::default()
        };
        assert_eq!(scoped.size(), 24);
        assert_eq!(std::mem::size_of::<RulesetAttr>(), 24);
        assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
        assert_eq!(std::mem::size_of::<NetPortAttr>(), 16);
    }

    #[test]
    fn creates_a_scoped_ruleset_and_takes_rules() {
        let abi = abi_version().expect("this machine has Landlock");
        assert!(abi >= ABI_SCOPING, "ABI {abi}");
        // Execute (1) handled, allowed beneath /; bind TCP (1) handled,
        // allowed on port 8080.
        let r = Ruleset::create(&RulesetAttr {
            handled_access_fs: 1,
            handled_access_net: 1,
            scoped: SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET,
        })
        .unwrap();
        let root = std::fs::File::open("/").unwrap();
        r.allow_path_beneath(root.as_fd(), 1).unwrap();
        r.allow_net_port(8080, 1).unwrap();
        // A right outside the handled ones is refused.
        assert_eq!(
            r.allow_path_beneath(root.as_fd(), 2)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
        // Nothing at all to restrict.
        assert_eq!(
            Ruleset::create(&RulesetAttr::default())
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOMSG)
        );
    }
}
