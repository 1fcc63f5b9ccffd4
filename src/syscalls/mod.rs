//! System call name ↔ number tables for every supported [`Arch`].
//!
//! The tables were generated once from the Linux UAPI headers (x86_64 from
//! `asm/unistd_64.h`, aarch64 from the generic `asm-generic/unistd.h`) and are
//! committed as sorted constant arrays (since brought up to Linux 6.18), so
//! lookups in either direction are a binary search.

use crate::arch::Arch;
use crate::{Error, Result};

mod aarch64;
mod x86_64;

/// A table of `(name, number)` pairs.
type Table = &'static [(&'static str, u32)];

/// The tables of one architecture: sorted by number and sorted by name.
fn tables(arch: Arch) -> (Table, Table) {
    match arch {
        Arch::X86_64 => (x86_64::BY_NUMBER, x86_64::BY_NAME),
        Arch::Aarch64 => (aarch64::BY_NUMBER, aarch64::BY_NAME),
    }
}

/// Every `(name, number)` pair of `arch`, sorted by number.
pub fn table(arch: Arch) -> &'static [(&'static str, u32)] {
    tables(arch).0
}

/// The number of the system call called `name` on `arch`, if there is one.
pub fn number(arch: Arch, name: &str) -> Option<u32> {
    let by_name = tables(arch).1;
    by_name
        .binary_search_by(|&(n, _)| n.cmp(name))
        .ok()
        .map(|i| by_name[i].1)
}

/// The name of system call number `nr` on `arch`, if it has one.
pub fn name(arch: Arch, nr: u32) -> Option<&'static str> {
    let by_number = tables(arch).0;
    by_number
        .binary_search_by_key(&nr, |&(_, n)| n)
        .ok()
        .map(|i| by_number[i].0)
}

/// The name of system call number `nr` on the native architecture.
pub fn native_name(nr: u32) -> Option<&'static str> {
    name(Arch::native(), nr)
}

/// System call numbers accepted by [`resolve`] run from 0 to one below this,
/// named or not: Linux 6.18 ends at 469 (and numbers are handed out one
/// by one), so this leaves room for the calls of kernels newer than these
/// tables while a larger number is almost surely a typo. On x86_64 the
/// x32 numbers (bit 30 set) are out of range: the filter kills them.
pub const NUMBER_LIMIT: u32 = 1024;

/// The label of system call `nr` on `arch`: its name, or `syscall_N` for a
/// number without one (the form [`resolve`] accepts back).
pub fn label(arch: Arch, nr: u32) -> String {
    name(arch, nr).map_or_else(|| format!("syscall_{nr}"), str::to_owned)
}

/// Resolves a system call for the native architecture.
///
/// `name` is a system call name (`"openat"`), a decimal number (`"257"`)
/// or `syscall_` and a decimal number (`"syscall_470"`, as traces label a
/// call without a name). A number need not have a name (a call of a kernel
/// newer than these tables) but must be below [`NUMBER_LIMIT`].
///
/// # Errors
///
/// [`Error::UnknownSyscall`] if the name is not in the native table or the
/// number is out of range.
pub fn resolve(name: &str) -> Result<u32> {
    let arch = Arch::native();
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    let numeric = match name.strip_prefix("syscall_") {
        Some(rest) if digits(rest) => Some(rest),
        _ if digits(name) => Some(name),
        _ => None,
    };
    let found = match numeric {
        Some(n) => n.parse::<u32>().ok().filter(|&nr| nr < NUMBER_LIMIT),
        None => number(arch, name),
    };
    found.ok_or_else(|| Error::UnknownSyscall {
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCHES: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    #[test]
    fn well_known_numbers() {
        let cases = [
            ("openat", 257, 56),
            ("connect", 42, 203),
            ("execve", 59, 221),
            ("clone3", 435, 435),
            ("read", 0, 63),
            ("write", 1, 64),
            ("exit_group", 231, 94),
        ];
        for (n, x86, arm) in cases {
            assert_eq!(number(Arch::X86_64, n), Some(x86), "{n} on x86_64");
            assert_eq!(number(Arch::Aarch64, n), Some(arm), "{n} on aarch64");
            assert_eq!(name(Arch::X86_64, x86), Some(n));
            assert_eq!(name(Arch::Aarch64, arm), Some(n));
        }
    }

    /// The calls of Linux 6.2 to 6.18, checked against the kernel's
    /// `syscall_64.tbl` and `asm-generic/unistd.h`.
    #[test]
    fn calls_up_to_linux_6_18() {
        let common = [
            ("cachestat", 451),
            ("fchmodat2", 452),
            ("map_shadow_stack", 453),
            ("futex_wake", 454),
            ("futex_wait", 455),
            ("futex_requeue", 456),
            ("statmount", 457),
            ("listmount", 458),
            ("lsm_get_self_attr", 459),
            ("lsm_set_self_attr", 460),
            ("lsm_list_modules", 461),
            ("mseal", 462),
            ("setxattrat", 463),
            ("getxattrat", 464),
            ("listxattrat", 465),
            ("removexattrat", 466),
            ("open_tree_attr", 467),
            ("file_getattr", 468),
            ("file_setattr", 469),
        ];
        for (n, nr) in common {
            for arch in ARCHES {
                assert_eq!(number(arch, n), Some(nr), "{n} on {arch}");
                assert_eq!(name(arch, nr), Some(n), "{nr} on {arch}");
            }
        }
        assert_eq!(number(Arch::X86_64, "uretprobe"), Some(335));
        assert_eq!(number(Arch::X86_64, "uprobe"), Some(336));
        assert_eq!(number(Arch::Aarch64, "uretprobe"), None);
        // Older entries keep their numbers.
        assert_eq!(number(Arch::X86_64, "fchmodat"), Some(268));
        assert_eq!(number(Arch::X86_64, "setxattr"), Some(188));
        assert_eq!(number(Arch::Aarch64, "fchmodat"), Some(53));
        // 6.19's `listns` is not in these tables.
        for arch in ARCHES {
            assert_eq!(name(arch, 470), None);
        }
    }

    #[test]
    fn arch_specific_entries() {
        for n in ["fork", "vfork", "open", "stat", "lstat", "arch_prctl"] {
            assert!(number(Arch::X86_64, n).is_some(), "{n} on x86_64");
            assert_eq!(number(Arch::Aarch64, n), None, "{n} on aarch64");
        }
        // The generic table's `__NR3264_*` entries under their 64-bit names.
        let generic = [
            ("fcntl", 25),
            ("statfs", 43),
            ("fstatfs", 44),
            ("truncate", 45),
            ("ftruncate", 46),
            ("lseek", 62),
            ("sendfile", 71),
            ("newfstatat", 79),
            ("fstat", 80),
            ("mmap", 222),
            ("fadvise64", 223),
        ];
        for (n, nr) in generic {
            assert_eq!(number(Arch::Aarch64, n), Some(nr), "{n}");
        }
        for n in ["fcntl64", "llseek", "mmap2", "fstatat64", "fadvise64_64"] {
            assert_eq!(number(Arch::Aarch64, n), None, "{n}");
        }
        assert_eq!(name(Arch::Aarch64, 244), None);
        assert_eq!(name(Arch::Aarch64, 403), None);
        assert_eq!(number(Arch::Aarch64, "syscalls"), None);
        assert_eq!(number(Arch::Aarch64, "arch_specific_syscall"), None);
    }

    #[test]
    fn tables_sorted_and_consistent() {
        for arch in ARCHES {
            let (by_number, by_name) = tables(arch);
            assert_eq!(by_number.len(), by_name.len());
            assert!(by_number.windows(2).all(|w| w[0].1 < w[1].1), "{arch}");
            assert!(by_name.windows(2).all(|w| w[0].0 < w[1].0), "{arch}");
            let mut a = by_number.to_vec();
            let mut b = by_name.to_vec();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{arch}");
        }
    }

    #[test]
    fn round_trips() {
        for arch in ARCHES {
            for &(n, nr) in table(arch) {
                assert_eq!(number(arch, n), Some(nr), "{arch} {n}");
                assert_eq!(name(arch, nr), Some(n), "{arch} {nr}");
            }
        }
    }

    #[test]
    fn unknown_lookups() {
        for arch in ARCHES {
            assert_eq!(number(arch, ""), None);
            assert_eq!(number(arch, "no_such_call"), None);
            assert_eq!(name(arch, 100_000), None);
            assert_eq!(name(arch, u32::MAX), None);
        }
    }

    #[test]
    fn resolve_native() {
        let arch = Arch::native();
        let openat = number(arch, "openat").unwrap();
        assert_eq!(resolve("openat").unwrap(), openat);
        assert_eq!(resolve(&openat.to_string()).unwrap(), openat);
        assert_eq!(native_name(openat), Some("openat"));
        // Numbers without a name (newer kernels) are accepted in range.
        assert_eq!(resolve("470").unwrap(), 470);
        assert_eq!(resolve("syscall_470").unwrap(), 470);
        assert_eq!(resolve("1023").unwrap(), 1023);
        assert_eq!(label(arch, 1000), "syscall_1000");
        assert_eq!(label(arch, openat), "openat");
        for bad in [
            "",
            "nope",
            "99999",
            "1024",
            "-1",
            "+5",
            "open at",
            "4294967296",
            "syscall_",
            "syscall_x",
            "syscall_1024",
            "syscall_-1",
        ] {
            match resolve(bad) {
                Err(Error::UnknownSyscall { name }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
