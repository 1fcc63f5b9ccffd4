//! The CPU architectures the supervisor knows how to filter.
//!
//! A seccomp filter sees the raw system call number together with the
//! `AUDIT_ARCH_*` value of the calling convention in use, so every filter has
//! to be built for one specific [`Arch`]. Only 64-bit little-endian
//! architectures are supported.

/// Bit set in the system call number by the x32 ABI on x86_64.
///
/// x32 processes share the x86_64 audit architecture but use numbers with this
/// bit set; the filters built by this crate kill such calls outright.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// `AUDIT_ARCH_AARCH64` from `<linux/audit.h>`.
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

/// A supported system call ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Arch {
    /// 64-bit x86 (`AUDIT_ARCH_X86_64`).
    X86_64,
    /// 64-bit ARM (`AUDIT_ARCH_AARCH64`).
    Aarch64,
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("unotify supports only x86_64 and aarch64");

impl Arch {
    /// The architecture this crate was compiled for.
    pub const fn native() -> Arch {
        #[cfg(target_arch = "x86_64")]
        {
            Arch::X86_64
        }
        #[cfg(target_arch = "aarch64")]
        {
            Arch::Aarch64
        }
    }

    /// The `AUDIT_ARCH_*` value the kernel reports in `seccomp_data.arch`.
    pub const fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 => AUDIT_ARCH_X86_64,
            Arch::Aarch64 => AUDIT_ARCH_AARCH64,
        }
    }

    /// The conventional name of the architecture (`"x86_64"`, `"aarch64"`).
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_values() {
        assert_eq!(Arch::X86_64.audit_arch(), 0xC000_003E);
        assert_eq!(Arch::Aarch64.audit_arch(), 0xC000_00B7);
        assert_eq!(X32_SYSCALL_BIT, 0x4000_0000);
    }

    #[test]
    fn names() {
        assert_eq!(Arch::X86_64.name(), "x86_64");
        assert_eq!(Arch::Aarch64.to_string(), "aarch64");
    }

    #[test]
    fn native_matches_target() {
        let expected = if cfg!(target_arch = "x86_64") {
            Arch::X86_64
        } else {
            Arch::Aarch64
        };
        assert_eq!(Arch::native(), expected);
    }
}
