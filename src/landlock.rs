//! Landlock rights a sandbox may need, by the ABI that brought them, and
//! the minimal file system a dynamically linked program needs to start.
//!
//! [`SandboxBuilder::fs_read`](crate::SandboxBuilder::fs_read) and
//! [`fs_write`](crate::SandboxBuilder::fs_write) confine the program's
//! file system in the kernel (Landlock), with no round trip; the network
//! policy adds TCP port rules where a port list expresses it. Each part
//! needs a [`Right`] of some Landlock ABI. A policy that needs a right the
//! running kernel lacks fails [`build`](crate::SandboxBuilder::build) with
//! [`Error::MissingRight`](crate::Error::MissingRight), naming the right
//! and the ABI, unless the caller allowed that right to degrade
//! ([`allow_degraded`](crate::SandboxBuilder::allow_degraded)); what was
//! degraded is listed by [`Sandbox::degraded`](crate::Sandbox::degraded)
//! and logged at warn level. Nothing is weakened silently.
//!
//! This module depends on nothing else of the crate.

use std::fmt;
use std::str::FromStr;

/// A part of the policy that needs a Landlock ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Right {
    /// The file system allow lists themselves (ABI 1, Linux 5.13). Degraded:
    /// no file system confinement at all.
    Filesystem,
    /// Linking and renaming across directories beneath the write paths
    /// (ABI 2, Linux 5.19). Degraded: such links and renames fail with
    /// `EXDEV` (stricter, not weaker).
    Refer,
    /// Truncation refused outside the write paths (ABI 3, Linux 6.2).
    /// Degraded: `truncate` and `O_TRUNC` reach files outside them.
    Truncate,
    /// TCP `connect` ports checked by the kernel too, under an allow list
    /// (ABI 4, Linux 6.7). Degraded: only the supervisor checks them.
    Network,
    /// `ioctl` on devices opened in the sandbox refused outside the write
    /// paths (ABI 5, Linux 6.10). Degraded: device `ioctl`s are not
    /// restricted.
    IoctlDev,
    /// Signals and abstract unix sockets kept inside the sandbox (ABI 6,
    /// Linux 6.12). Degraded: see
    /// [`allow_weak_isolation`](crate::SandboxBuilder::allow_weak_isolation),
    /// which allowing this right to degrade implies.
    Scoping,
}

impl Right {
    /// Every right, by ABI.
    pub const ALL: [Right; 6] = [
        Right::Filesystem,
        Right::Refer,
        Right::Truncate,
        Right::Network,
        Right::IoctlDev,
        Right::Scoping,
    ];

    /// The Landlock ABI that brought the right.
    pub fn abi(self) -> u32 {
        match self {
            Right::Filesystem => 1,
            Right::Refer => 2,
            Right::Truncate => 3,
            Right::Network => 4,
            Right::IoctlDev => 5,
            Right::Scoping => 6,
        }
    }

    /// The name `--allow-degraded` takes (`filesystem`, `refer`,
    /// `truncate`, `network`, `ioctl-dev`, `scoping`).
    pub fn name(self) -> &'static str {
        match self {
            Right::Filesystem => "filesystem",
            Right::Refer => "refer",
            Right::Truncate => "truncate",
            Right::Network => "network",
            Right::IoctlDev => "ioctl-dev",
            Right::Scoping => "scoping",
        }
    }

    /// What is lost when the right is missing.
    pub fn degraded_means(self) -> &'static str {
        match self {
            Right::Filesystem => "the file system is not confined at all",
            Right::Refer => "links and renames across directories fail with EXDEV",
            Right::Truncate => "files outside the write paths can be truncated",
            Right::Network => "TCP connect ports are checked by the supervisor only",
            Right::IoctlDev => "ioctl on devices opened in the sandbox is not restricted",
            Right::Scoping => {
                "signals and abstract unix sockets reach processes outside the sandbox"
            }
        }
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown right name; its message lists the valid ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRight(pub String);

impl fmt::Display for UnknownRight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Right::ALL.iter().map(|r| r.name()).collect();
        write!(
            f,
            "unknown Landlock right `{}`; use one of: {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownRight {}

impl FromStr for Right {
    type Err = UnknownRight;

    fn from_str(s: &str) -> Result<Right, UnknownRight> {
        let want = s.trim().to_ascii_lowercase().replace('_', "-");
        Right::ALL
            .into_iter()
            .find(|r| r.name() == want)
            .ok_or_else(|| UnknownRight(s.to_owned()))
    }
}

/// What a dynamically linked program needs to read to start and run
/// ordinary tools (`--fs-system`, [`SandboxBuilder::fs_system`](crate::SandboxBuilder::fs_system)):
/// the programs and libraries (`/usr`, `/bin`, `/sbin`, `/lib*`), the
/// loader's cache and configuration, the name service, time zone, locale
/// and certificate files of `/etc` (not all of `/etc`: `/etc/shadow` stays
/// out), `/proc` (a program's own `/proc/self` cannot be named in advance;
/// other processes' files stay out of reach of the Landlock domain) and
/// the CPU list glibc reads. Entries missing on the host are skipped;
/// symlinks are followed (`/lib` is often `usr/lib`).
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/localtime",
    "/etc/locale.alias",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/mime.types",
    "/proc",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
];

/// The devices `--fs-system` lets the program write (and `ioctl`):
/// `/dev/null`, `/dev/zero`, `/dev/full` and its terminal, `/dev/tty`.
pub const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_abis_grow() {
        for (i, r) in Right::ALL.into_iter().enumerate() {
            assert_eq!(r.name().parse::<Right>(), Ok(r));
            assert_eq!(r.abi(), i as u32 + 1);
        }
        assert_eq!("IOCTL_DEV".parse::<Right>(), Ok(Right::IoctlDev));
        let err = "bogus".parse::<Right>().unwrap_err().to_string();
        assert!(
            err.contains("filesystem, refer, truncate, network, ioctl-dev, scoping"),
            "{err}"
        );
    }
}
