//! System call name ↔ number tables for every supported [`Arch`].
//!
//! The tables were generated once from the Linux UAPI headers (x86_64 from
//! `asm/unistd_64.h`, aarch64 from the generic `asm-generic/unistd.h`) and are
//! committed as sorted constant arrays, so lookups in either direction are a
//! binary search.

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

/// Resolves a system call for the native architecture.
///
/// `name` is either a system call name (`"openat"`) or a decimal number
/// (`"257"`); a number must belong to a known system call.
///
/// # Errors
///
/// [`Error::UnknownSyscall`] if the name or number is not in the native table.
pub fn resolve(name: &str) -> Result<u32> {
    let arch = Arch::native();
    let found = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse::<u32>()
            .ok()
            .filter(|&nr| self::name(arch, nr).is_some())
    } else {
        number(arch, name)
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
        for bad in ["", "nope", "99999", "-1", "+5", "open at", "4294967296"] {
            match resolve(bad) {
                Err(Error::UnknownSyscall { name }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
