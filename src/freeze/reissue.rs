//! Re-issuing a trapped call as another one: the supervisor makes the
//! program's task run a call of the supervisor's choosing in place of the
//! one it trapped (an exec of a file the kernel cannot find by the
//! program's path: the chroot view's). Handlers answer with a [`Reissue`]
//! (`NotifAction::Reissue`, defined with the actions); this module owns the
//! layout of what is written in the task and the register rewrite; the
//! tracer ([`super::tracer`]) drives it, the exec freeze's answer
//! ([`super::exec`]) starts it.
//!
//! # How (x86_64)
//!
//! 1. The worker adds the call's files to the task (`SECCOMP_IOCTL_NOTIF_ADDFD`,
//!    close-on-exec) and hands the tracer the rewrite with their numbers.
//! 2. The tracer seizes the task if it is not its tracee yet and interrupts
//!    it. The task sleeps in its seccomp wait, which is killable only once
//!    the notification was received (`WAIT_KILLABLE_RECV`): the trap stays
//!    pending.
//! 3. The call is answered `EACCES`. On its way back to user mode the
//!    task takes the trap (jobctl traps come before any signal) before it
//!    runs one instruction.
//! 4. In that stop the tracer checks the task is at the return of the
//!    trapped call (`orig_rax`, the answer in `rax`, `syscall` at
//!    `rip - 2`), writes the new strings and pointer arrays below the
//!    stack's red zone, sets the new number and arguments, `rip -= 2`, and
//!    lets it go: the task executes `syscall` again.
//!
//! The re-issued call is trapped and decided like any other (an exec: a
//! new freeze, copy, handlers, the exec-event check). A thread that swaps
//! an added fd or rewrites the memory in between changes what is decided,
//! never what runs unchecked. If any step fails the task sees the `EACCES`
//! (fail closed).
//!
//! # Limits
//!
//! - The added fds are close-on-exec, and closed by the task itself when a
//!   re-issued exec fails ([`close_added`]): the exec freeze has the task
//!   interrupted before the re-issued call is let through, so that a
//!   refusal by the kernel (`ETXTBSY`, `E2BIG`, `ENOMEM`...) stops it at
//!   the call's return. The chroot also checks first what the kernel would
//!   refuse (rights, `noexec`, `#!` lines, a file it cannot load:
//!   `ENOEXEC`). Left open: a re-issued call refused by the supervisor's
//!   own decision (its freeze failing: `EPERM`), a task whose seccomp wait
//!   is not killable-only (no `WAIT_KILLABLE_RECV`: its interrupt is asked
//!   after the answer and may stop it later), or one stopped by signals or
//!   stops coming again and again before its close (given up after a few
//!   steps; what stopped it is kept).
//! - A re-issued call that fails returns with its argument registers set
//!   to the re-issued values (the C library's wrappers and every calling
//!   convention treat them as clobbered by the call).
//! - A signal handler run between the rewrite and the re-issued call that
//!   uses more than [`MARGIN`] bytes of stack below the red zone overwrites
//!   what was written there; the call is then decided on what it finds.
//! - x86_64 only; elsewhere [`supported`] is false and callers refuse.

pub(crate) use crate::action::{ReArg, Reissue};

/// Bytes left free between the red zone and what is written below it (a
/// signal frame delivered before the re-issued call fits in it).
pub(crate) const MARGIN: u64 = 8192;
/// The x86_64 red zone under the stack pointer, which leaf code may use.
const RED_ZONE: u64 = 128;
/// Bound on what is written in the task.
const BLOCK_MAX: usize = 256 << 10;

/// What the tracer does at the task's stop: the files are in the task.
#[derive(Debug)]
pub(crate) struct Rewrite {
    /// The call that was trapped (checked at the stop).
    pub(crate) trapped: u64,
    pub(crate) nr: u64,
    /// [`ReArg::File`] replaced by the numbers.
    pub(crate) args: Vec<ReArg>,
    /// The files added to the task for it, closed if the re-issued call
    /// fails ([`close_added`]).
    pub(crate) added: Added,
}

/// Files a re-issue added to a task: `(number, file)`.
pub(crate) type Added = Vec<(i32, super::FileId)>;

/// Whether re-issuing is implemented on this architecture.
pub(crate) const fn supported() -> bool {
    cfg!(target_arch = "x86_64")
}

/// The rewrite of `r`, with its file `i` at number `numbers[i]` in the
/// task, for trapped call `trapped`.
pub(crate) fn rewrite(r: &Reissue, trapped: u64, numbers: &[i32], added: Added) -> Option<Rewrite> {
    fn map(a: &ReArg, numbers: &[i32]) -> Option<ReArg> {
        Some(match a {
            ReArg::File(i) => ReArg::Value(*numbers.get(*i)? as u64),
            ReArg::Ptrs(v) => {
                ReArg::Ptrs(v.iter().map(|a| map(a, numbers)).collect::<Option<_>>()?)
            }
            other => other.clone(),
        })
    }
    if r.args.len() > 6 {
        return None;
    }
    Some(Rewrite {
        trapped,
        nr: r.nr,
        added,
        args: r
            .args
            .iter()
            .map(|a| map(a, numbers))
            .collect::<Option<_>>()?,
    })
}

/// Lays `args` out in a block placed at `base`: the block's bytes and
/// each argument's value. `None`: an element kind an array cannot hold, or
/// the block is too big.
pub(crate) fn layout(args: &[ReArg], base: u64) -> Option<(Vec<u8>, Vec<u64>)> {
    let mut block: Vec<u8> = Vec::new();
    let put_str = |block: &mut Vec<u8>, s: &[u8]| -> u64 {
        let at = base + block.len() as u64;
        block.extend_from_slice(s);
        block.push(0);
        at
    };
    let mut values = Vec::with_capacity(args.len());
    for a in args {
        let v = match a {
            ReArg::Value(v) => *v,
            ReArg::File(_) => return None,
            ReArg::Str(s) => put_str(&mut block, s),
            ReArg::Ptrs(elems) => {
                while !block.len().is_multiple_of(8) {
                    block.push(0);
                }
                let at = block.len();
                block.resize(at + 8 * (elems.len() + 1), 0);
                for (i, e) in elems.iter().enumerate() {
                    let p = match e {
                        ReArg::Value(v) => *v,
                        ReArg::Str(s) => put_str(&mut block, s),
                        _ => return None,
                    };
                    block[at + 8 * i..at + 8 * i + 8].copy_from_slice(&p.to_ne_bytes());
                }
                base + at as u64
            }
        };
        values.push(v);
        if block.len() > BLOCK_MAX {
            return None;
        }
    }
    Some((block, values))
}

/// Why a rewrite was not made (the task then sees the `EACCES` answer).
#[derive(Debug)]
pub(crate) enum NotMade {
    /// The task is not at the return of the trapped call.
    Elsewhere(&'static str),
    /// Its registers or memory could not be read or written.
    Io(std::io::Error),
    /// No room below its stack pointer.
    NoRoom,
    /// Not implemented on this architecture.
    #[cfg_attr(
        target_arch = "x86_64",
        expect(dead_code, reason = "made only where re-issuing is not implemented")
    )]
    Unsupported,
}

impl std::fmt::Display for NotMade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotMade::Elsewhere(what) => write!(f, "the task is not where it was trapped ({what})"),
            NotMade::Io(e) => write!(f, "{e}"),
            NotMade::NoRoom => f.write_str("no room on its stack"),
            NotMade::Unsupported => f.write_str("not implemented on this architecture"),
        }
    }
}

/// The start of the mapping of `tid` that holds `addr`.
fn mapping_start(tid: i32, addr: u64) -> Option<u64> {
    let maps = crate::sys::procfs::read(&format!("/proc/{tid}/maps")).ok()?;
    for line in maps.split(|&b| b == b'\n') {
        let range = line.split(|&b| b == b' ').next()?;
        let text = std::str::from_utf8(range).ok()?;
        let (lo, hi) = text.split_once('-')?;
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).ok()?,
            u64::from_str_radix(hi, 16).ok()?,
        );
        if lo <= addr && addr < hi {
            return Some(lo);
        }
    }
    None
}

/// Where a block of `len` bytes goes below stack pointer `sp` in a mapping
/// starting at `floor`: [`MARGIN`] under the red zone if it fits, else
/// just under it; 16-byte aligned.
pub(crate) fn place(sp: u64, len: u64, floor: u64) -> Option<u64> {
    for margin in [MARGIN, 0] {
        let at = sp.checked_sub(RED_ZONE + margin + len).map(|a| a & !15);
        if let Some(at) = at.filter(|&a| a >= floor) {
            return Some(at);
        }
    }
    None
}

/// Makes the rewrite in `tid`, stopped at the return of its trapped call
/// (see the module documentation).
#[cfg(target_arch = "x86_64")]
pub(crate) fn apply(tid: i32, rw: &Rewrite) -> Result<(), NotMade> {
    use crate::sys::{mem, ptrace};
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    // The answer, or (a seccomp wait that an interrupt cut short: not
    // killable) the restart the kernel would make.
    const RETURNS: [i64; 3] = [-(libc::EACCES as i64), -512, -513];
    let mut regs = ptrace::get_regs(tid).map_err(NotMade::Io)?;
    if regs.orig_rax != rw.trapped {
        return Err(NotMade::Elsewhere("another call"));
    }
    if !RETURNS.contains(&(regs.rax as i64)) {
        return Err(NotMade::Elsewhere("another return value"));
    }
    let at = regs.rip.checked_sub(2).ok_or(NotMade::Elsewhere("rip"))?;
    let mut ins = [0u8; 2];
    match mem::read(tid, at, &mut ins) {
        Ok(2) if ins == SYSCALL => {}
        Ok(_) => return Err(NotMade::Elsewhere("no syscall instruction before rip")),
        Err(e) => return Err(NotMade::Io(e)),
    }
    let (probe, plain) = layout(&rw.args, 0).ok_or(NotMade::NoRoom)?;
    let values = if probe.is_empty() {
        plain
    } else {
        let floor = mapping_start(tid, regs.rsp).ok_or(NotMade::NoRoom)?;
        let base = place(regs.rsp, probe.len() as u64, floor).ok_or(NotMade::NoRoom)?;
        let (block, values) = layout(&rw.args, base).ok_or(NotMade::NoRoom)?;
        match mem::write(tid, base, &block) {
            Ok(n) if n == block.len() => {}
            Ok(_) => return Err(NotMade::NoRoom),
            Err(e) => return Err(NotMade::Io(e)),
        }
        values
    };
    let slots: [&mut u64; 6] = [
        &mut regs.rdi,
        &mut regs.rsi,
        &mut regs.rdx,
        &mut regs.r10,
        &mut regs.r8,
        &mut regs.r9,
    ];
    for (slot, v) in slots.into_iter().zip(values) {
        *slot = v;
    }
    regs.rax = rw.nr;
    // Not in a call any more: no restart is applied on the way out.
    regs.orig_rax = u64::MAX;
    regs.rip = at;
    ptrace::set_regs(tid, &regs).map_err(NotMade::Io)
}

/// See the x86_64 version: not implemented here.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn apply(_tid: i32, _rw: &Rewrite) -> Result<(), NotMade> {
    Err(NotMade::Unsupported)
}

/// Closes in `tid` the files `added` that a re-issued call `nr` had added
/// to it, when that call failed: `tid` is stopped at its return (the
/// exec freeze's trap after a failed exec; `sig`: the signal of that stop,
/// 0 for a trap), the call's first argument the first file. Each `close`
/// is made by the task itself: its registers set to `close(fd)` at the
/// `syscall` instruction, one instruction stepped (`PTRACE_SINGLESTEP`
/// stops it right after the call), then its registers put back as the
/// failed call left them (its errno in `rax`). A file is closed only if
/// that number still holds it. `root`: the sandbox's first process (its
/// exit is left to its parent).
///
/// A stop that comes before the step's own trap means the close has not
/// run, and is kept: while stepping the task blocks every signal it can
/// but `SIGTRAP` (its mask put back after), so only a `SIGSTOP`, a
/// `SIGTRAP` sent by a process (`si_code <= 0`; the step's is the
/// kernel's) or a group stop or interrupt come first; the signals are
/// kept with their siginfo and the step is tried again (a group stop is
/// put back by the kernel when the task is detached). A close counts as
/// done only at the kernel's trap with the task right after the
/// `syscall` instruction and `close` as its call.
///
/// Returns the signal to deliver when the task is let go from the stop
/// it is left in (its siginfo set there; further kept signals are sent
/// to it again, pending when it runs), and whether every file was closed.
#[cfg(target_arch = "x86_64")]
pub(crate) fn close_added(
    tid: i32,
    nr: u64,
    added: &Added,
    root: bool,
    sig: i32,
) -> (i32, Result<(), NotMade>) {
    use crate::sys::ptrace::{self, TraceeState};
    use std::os::unix::fs::MetadataExt;
    /// Steps of one close before it is given up (each taken by a stop).
    const TRIES: usize = 16;
    let saved = match ptrace::get_regs(tid) {
        Ok(r) => r,
        Err(e) => return (sig, Err(NotMade::Io(e))),
    };
    let failed = (saved.rax as i64) < 0 && (saved.rax as i64) >= -4095;
    let first = added.first().map(|a| a.0 as u64);
    if saved.orig_rax != nr || !failed || first != Some(saved.rdi) {
        return (
            sig,
            Err(NotMade::Elsewhere(
                "not the failed return of the re-issued call",
            )),
        );
    }
    // The signals to deliver (their siginfo), and whether the task is in
    // a signal-delivery stop (where one can be given with its siginfo).
    let mut kept: Vec<ptrace::SigInfo> = Vec::new();
    let mut at_delivery = sig != 0;
    if sig != 0 {
        match ptrace::get_siginfo(tid) {
            Ok(info) => kept.push(info),
            Err(e) => return (sig, Err(NotMade::Io(e))),
        }
    }
    let mask = match ptrace::get_sigmask(tid) {
        Ok(m) => m,
        Err(e) => return (sig, Err(NotMade::Io(e))),
    };
    // Not SIGTRAP: the kernel resets the handler of a trap it forces on a
    // task that blocks it.
    let all_but_trap = !(1u64 << (libc::SIGTRAP - 1));
    if let Err(e) = ptrace::set_sigmask(tid, all_but_trap) {
        return (sig, Err(NotMade::Io(e)));
    }
    // One close made by the task: `Ok(true)` once done, `Ok(false)` if
    // stops kept coming.
    let mut close_one = |fd: i32| -> Result<bool, NotMade> {
        let mut regs = saved;
        regs.rax = libc::SYS_close as u64;
        regs.rdi = fd as u64;
        regs.orig_rax = u64::MAX;
        regs.rip = saved.rip - 2;
        for _ in 0..TRIES {
            ptrace::set_regs(tid, &regs).map_err(NotMade::Io)?;
            ptrace::single_step(tid).map_err(NotMade::Io)?;
            match ptrace::wait_tracee(tid, false, root).map_err(NotMade::Io)? {
                Some(TraceeState::Signal(s)) => {
                    at_delivery = true;
                    let info = ptrace::get_siginfo(tid).map_err(NotMade::Io)?;
                    let now = ptrace::get_regs(tid).map_err(NotMade::Io)?;
                    let stepped = s == libc::SIGTRAP
                        && info.si_code > 0
                        && now.rip == saved.rip
                        && now.orig_rax == libc::SYS_close as u64;
                    if stepped {
                        return Ok(true);
                    }
                    // Came before the call: kept, the step tried again.
                    kept.push(info);
                }
                // A group stop (put back at the detach) or an interrupt.
                Some(TraceeState::Trapped | TraceeState::Event(_)) => at_delivery = false,
                Some(TraceeState::Gone) | None => {
                    return Err(NotMade::Elsewhere("gone while its files were closed"))
                }
            }
        }
        Ok(false)
    };
    let mut result = Ok(());
    for &(fd, id) in added {
        let same = std::fs::metadata(format!("/proc/{tid}/fd/{fd}"))
            .is_ok_and(|m| (m.dev(), m.ino()) == id);
        if same {
            match close_one(fd) {
                Ok(true) => {}
                Ok(false) => {
                    result = Err(NotMade::Elsewhere("stops kept coming before its close"));
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    // Whatever happened, the failed call's return as it was (a task left
    // with the close's registers would run it again and see 0 from the
    // failed exec), and its own mask.
    if let Err(e) = ptrace::set_regs(tid, &saved) {
        result = result.and(Err(NotMade::Io(e)));
    }
    if let Err(e) = ptrace::set_sigmask(tid, mask) {
        result = result.and(Err(NotMade::Io(e)));
    }
    // One signal of each number (a process's standard signals do not
    // queue); the first given at the release with its siginfo if the task
    // is in a delivery stop, the others sent again.
    let mut signals: Vec<ptrace::SigInfo> = Vec::new();
    for info in kept {
        if !signals.iter().any(|k| k.si_signo == info.si_signo) {
            signals.push(info);
        }
    }
    let mut deliver = 0;
    for info in signals {
        if deliver == 0 && at_delivery && ptrace::set_siginfo(tid, &info).is_ok() {
            deliver = info.si_signo;
        } else if let Err(e) = crate::sys::signals::send_to_thread(None, tid, info.si_signo) {
            // ESRCH: killed meanwhile, nothing to deliver any more.
            if e.raw_os_error() == Some(libc::ESRCH) {
                continue;
            }
            log::warn!(
                "task {tid}: signal {} that came while its files were closed is lost: {e}",
                info.si_signo
            );
        }
    }
    (deliver, result)
}

/// See the x86_64 version: not implemented here.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn close_added(
    _tid: i32,
    _nr: u64,
    _added: &Added,
    _root: bool,
    sig: i32,
) -> (i32, Result<(), NotMade>) {
    (sig, Err(NotMade::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_strings_and_arrays_in_one_block() {
        let args = [
            ReArg::Value(7),
            ReArg::Str(b"ab".to_vec()),
            ReArg::Ptrs(vec![ReArg::Str(b"x".to_vec()), ReArg::Value(0x1234)]),
        ];
        let (block, values) = layout(&args, 0x1000).expect("layout");
        assert_eq!(values[0], 7);
        assert_eq!(values[1], 0x1000);
        assert_eq!(&block[..3], b"ab\0");
        // The array, 8-aligned after the string, then its string.
        assert_eq!(values[2], 0x1008);
        let word = |i: usize| u64::from_ne_bytes(block[i..i + 8].try_into().unwrap());
        assert_eq!(word(8), 0x1020);
        assert_eq!(word(16), 0x1234);
        assert_eq!(word(24), 0);
        assert_eq!(&block[32..34], b"x\0");
        // Nothing to write for plain values.
        assert!(layout(&[ReArg::Value(1)], 0).unwrap().0.is_empty());
        assert!(layout(&[ReArg::File(0)], 0).is_none());
    }

    #[test]
    fn blocks_go_below_the_red_zone_within_the_mapping() {
        let sp = 0x10_0000;
        assert_eq!(place(sp, 100, 0), Some((sp - 128 - MARGIN - 100) & !15));
        // Not enough room for the margin: just under the red zone.
        let floor = sp - 128 - 200;
        assert_eq!(place(sp, 100, floor), Some((sp - 228) & !15));
        assert_eq!(place(sp, 1000, floor), None);
    }

    #[test]
    fn files_become_their_numbers() {
        let r = Reissue {
            nr: 322,
            args: vec![ReArg::File(0), ReArg::Value(5)],
            files: Vec::new(),
        };
        let rw = rewrite(&r, 59, &[9], Vec::new()).expect("rewrite");
        assert_eq!(rw.args, vec![ReArg::Value(9), ReArg::Value(5)]);
        assert!(rewrite(&r, 59, &[], Vec::new()).is_none());
    }
}
