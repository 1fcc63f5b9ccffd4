//! The host's name and CPU count, as the program sees them.
//!
//! `uname` is performed by the supervisor (the program shares its UTS
//! namespace: the filter refuses new namespaces only under path denial,
//! so a program in another one sees the supervisor's fields) and written
//! back with the virtual nodename; `sched_getaffinity` answers a mask of
//! CPUs `0..N` once the real call for the same thread has succeeded.

use std::sync::Arc;

use crate::action::NotifAction;
use crate::arch::Arch;
use crate::error::Result;
use crate::handler::HandlerCtx;
use crate::supervisor::enforcement::Install;
use crate::sys::host::{self, UTS_FIELD, UTS_NODENAME};

use super::files::VirtualFiles;

/// Answers `uname` with `name` as the nodename, and serves the host-name
/// files.
pub(crate) fn install_hostname(
    install: &mut Install<'_>,
    name: &str,
    files: &mut VirtualFiles,
) -> Result<()> {
    let mut field = [0u8; UTS_FIELD];
    let n = name.len().min(UTS_FIELD - 1);
    field[..n].copy_from_slice(&name.as_bytes()[..n]);
    if let Some(nr) = crate::syscalls::number(Arch::native(), "uname") {
        install.builtin(nr, Arc::new(move |cx: &HandlerCtx<'_>| uname(cx, &field)))?;
    }
    let line = format!("{name}\n").into_bytes();
    files.file("/etc/hostname", line.clone());
    files.file("/proc/sys/kernel/hostname", line);
    Ok(())
}

fn uname(cx: &HandlerCtx<'_>, nodename: &[u8; UTS_FIELD]) -> NotifAction {
    let mut uts = match host::uname() {
        Ok(u) => u,
        Err(e) => return NotifAction::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    uts[UTS_NODENAME..UTS_NODENAME + UTS_FIELD].copy_from_slice(nodename);
    match cx.write_mem(cx.arg(0), &uts) {
        Ok(()) => NotifAction::ReturnValue(0),
        Err(_) => NotifAction::Errno(libc::EFAULT),
    }
}

/// Answers `sched_getaffinity` with `n` CPUs, and serves the CPU files.
pub(crate) fn install_num_cpus(
    install: &mut Install<'_>,
    n: u32,
    files: &mut VirtualFiles,
) -> Result<()> {
    let n = n as usize;
    // The kernel's mask size: its CPU ids, or ours if more, in longs.
    let real = possible_cpus().max(n);
    let mask_len = real.div_ceil(64) * 8;
    if let Some(nr) = crate::syscalls::number(Arch::native(), "sched_getaffinity") {
        install.builtin(
            nr,
            Arc::new(move |cx: &HandlerCtx<'_>| getaffinity(cx, n, mask_len)),
        )?;
    }
    let range = if n == 1 {
        "0\n".to_owned()
    } else {
        format!("0-{}\n", n - 1)
    };
    files.file("/sys/devices/system/cpu/online", range.clone().into_bytes());
    files.file("/sys/devices/system/cpu/possible", range.into_bytes());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    files.file("/proc/cpuinfo", cpuinfo_for(&cpuinfo, n).into_bytes());
    Ok(())
}

/// How many CPU ids the kernel has (`/sys/devices/system/cpu/possible`).
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            let last = s.trim().rsplit([',', '-']).next()?.parse::<usize>().ok()?;
            Some(last + 1)
        })
        .unwrap_or(1)
}

fn getaffinity(cx: &HandlerCtx<'_>, n: usize, mask_len: usize) -> NotifAction {
    let len = cx.arg(1) as usize;
    if len < mask_len || !len.is_multiple_of(8) {
        return NotifAction::Errno(libc::EINVAL);
    }
    // The real call first: a thread that does not exist is ESRCH.
    let pid = cx.arg(0) as u32 as i32;
    let target = if pid == 0 { cx.pid() as i32 } else { pid };
    if let Err(e) = crate::sys::process::cpus_of(target) {
        return NotifAction::Errno(e.raw_os_error().unwrap_or(libc::ESRCH));
    }
    let mut mask = vec![0u8; mask_len];
    for cpu in 0..n {
        mask[cpu / 8] |= 1 << (cpu % 8);
    }
    match cx.write_mem(cx.arg(2), &mask) {
        Ok(()) => NotifAction::ReturnValue(mask_len as i64),
        Err(_) => NotifAction::Errno(libc::EFAULT),
    }
}

/// `/proc/cpuinfo` with `n` processors: the first processor's block,
/// renumbered (its `processor`, `core id`, `apicid` lines) and counted
/// (`siblings`, `cpu cores`).
pub(crate) fn cpuinfo_for(real: &str, n: usize) -> String {
    let first = real.split("\n\n").next().unwrap_or("").trim_end();
    let mut out = String::new();
    for i in 0..n {
        for line in first.lines() {
            let key = line.split(':').next().unwrap_or("").trim();
            let value = match key {
                "processor" | "core id" | "apicid" | "initial apicid" => Some(i.to_string()),
                "siblings" | "cpu cores" => Some(n.to_string()),
                _ => None,
            };
            match value {
                Some(v) => {
                    let (k, _) = line.split_once(':').unwrap_or((line, ""));
                    out.push_str(&format!("{k}: {v}\n"));
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_is_renumbered() {
        let real =
            "processor\t: 0\ncore id\t\t: 0\nmodel name\t: X\ncpu cores\t: 8\n\nprocessor\t: 1\n";
        let v = cpuinfo_for(real, 3);
        assert_eq!(v.matches("processor").count(), 3);
        assert!(v.contains("processor\t: 2\n"));
        assert!(v.contains("cpu cores\t: 3\n"));
        assert_eq!(v.matches("model name\t: X").count(), 3);
    }
}
