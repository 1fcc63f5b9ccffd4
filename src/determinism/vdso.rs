//! Making the vDSO's clock (and `getrandom`) functions invisible, so the C
//! library makes real system calls, which the filter traps.
//!
//! glibc calls `clock_gettime`, `gettimeofday`, `time` (and, from 2.41,
//! `getrandom`) through the vDSO without entering the kernel. Of the ways
//! to see those calls (patch each function into a `syscall` stub; remove
//! `AT_SYSINFO_EHDR` from the auxiliary vector at the exec event; patch an
//! offset into the vDSO's data), this one needs neither ptrace nor code
//! writes: at the program's first `brk` after an exec (the dynamic loader's
//! first system call, and early in a static glibc program's start, before
//! either looks the vDSO's symbols up), the supervisor finds the vDSO
//! (`AT_SYSINFO_EHDR` in `/proc/<pid>/auxv`) and zeroes `st_value` and
//! `st_shndx` of those symbols in its dynamic symbol table through
//! `/proc/<pid>/mem` (the process gets a private copy of that page; its
//! forks inherit it). glibc and musl skip such symbols and fall back to the
//! system call. A call on a wall clock then costs a round trip to the
//! supervisor; the monotonic clocks are not trapped by the filter, and cost
//! a plain system call instead of a vDSO read. Each `brk` is trapped to
//! find the first one (it checks the table, a few reads, and goes on).
//!
//! Limits: a program that reads the vDSO before any `brk` (a Go program;
//! musl calling `clock_gettime` before its first allocation) keeps the
//! real clock in its vDSO calls.

use crate::handler::HandlerCtx;
use crate::sys::host::{force_read, force_write};

/// `AT_SYSINFO_EHDR`.
const AT_SYSINFO_EHDR: u64 = 33;
/// `SHT_DYNSYM`.
const SHT_DYNSYM: u32 = 11;
/// Most of the vDSO image read (it is one or two pages).
const IMAGE_MAX: usize = 64 * 1024;

/// The names of the clock functions, as x86_64 and aarch64 export them.
pub(crate) const CLOCK_SYMBOLS: &[&str] = &[
    "__vdso_clock_gettime",
    "clock_gettime",
    "__vdso_gettimeofday",
    "gettimeofday",
    "__vdso_time",
    "time",
    "__kernel_clock_gettime",
    "__kernel_gettimeofday",
];
/// The names of the `getrandom` function.
pub(crate) const RANDOM_SYMBOLS: &[&str] = &["__vdso_getrandom", "getrandom", "__kernel_getrandom"];

/// Hides `names` in the vDSO of the trapped task, if they are not hidden
/// yet. Returns how many symbols were hidden now.
pub(crate) fn hide(cx: &HandlerCtx<'_>, names: &[&str]) -> std::io::Result<usize> {
    let pid = cx.pid() as i32;
    let Some(base) = vdso_base(pid)? else {
        return Ok(0);
    };
    let mut head = [0u8; 64];
    force_read(pid, base, &mut head)?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 {
        return Err(bad("the vDSO is not a 64-bit ELF image"));
    }
    let shoff = u64_at(&head, 0x28) as usize;
    let shentsize = u16_at(&head, 0x3a) as usize;
    let shnum = u16_at(&head, 0x3c) as usize;
    let end = shoff + shentsize * shnum;
    if shentsize < 64 || end > IMAGE_MAX {
        return Err(bad("the vDSO's section headers are out of range"));
    }
    let mut image = vec![0u8; end];
    force_read(pid, base, &mut image)?;
    // The dynamic symbol table and its string table.
    let section = |i: usize| &image[shoff + i * shentsize..shoff + (i + 1) * shentsize];
    let Some(dynsym) = (0..shnum).map(section).find(|s| u32_at(s, 4) == SHT_DYNSYM) else {
        return Err(bad("the vDSO has no dynamic symbol table"));
    };
    let (sym_off, sym_size) = (u64_at(dynsym, 0x18) as usize, u64_at(dynsym, 0x20) as usize);
    let link = u32_at(dynsym, 0x28) as usize;
    if link >= shnum {
        return Err(bad("the vDSO's symbol table has no string table"));
    }
    let strtab = section(link);
    let (str_off, str_size) = (u64_at(strtab, 0x18) as usize, u64_at(strtab, 0x20) as usize);
    if sym_off + sym_size > image.len() || str_off + str_size > image.len() {
        return Err(bad("the vDSO's tables are out of range"));
    }
    let strings = &image[str_off..str_off + str_size];
    let mut hidden = 0;
    for i in 0..sym_size / 24 {
        let sym = &image[sym_off + i * 24..sym_off + (i + 1) * 24];
        let name_at = u32_at(sym, 0) as usize;
        let Some(rest) = strings.get(name_at..) else {
            continue;
        };
        let name = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
        let wanted = names.iter().any(|n| n.as_bytes() == name);
        // `st_shndx` and `st_value`: zero once hidden.
        if wanted && sym[6..16].iter().any(|&b| b != 0) {
            force_write(pid, base + (sym_off + i * 24 + 6) as u64, &[0u8; 10])?;
            hidden += 1;
        }
    }
    Ok(hidden)
}

/// The vDSO's address in process `pid`, from its auxiliary vector.
fn vdso_base(pid: i32) -> std::io::Result<Option<u64>> {
    let auxv = std::fs::read(format!("/proc/{pid}/auxv"))?;
    Ok(auxv
        .chunks_exact(16)
        .find(|e| u64_at(e, 0) == AT_SYSINFO_EHDR)
        .map(|e| u64_at(e, 8))
        .filter(|&a| a != 0))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}
