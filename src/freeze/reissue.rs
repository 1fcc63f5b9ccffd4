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
//! 1. The worker hands the call to the tracer, which seizes the task if it
//!    is not its tracee yet, then (every check that can refuse passed)
//!    adds the call's files to it (`SECCOMP_IOCTL_NOTIF_ADDFD`,
//!    close-on-exec), notes the rewrite with their numbers and interrupts
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
//! (fail closed), and no file stays added: a failure after files were
//! added (one that cannot be added after another was, a rewrite that
//! cannot be made at the stop) has them closed at that stop
//! ([`close_added`]), or the task's process killed if they cannot be.
//!
//! # Limits
//!
//! - The added fds are close-on-exec, and closed by the task itself when a
//!   re-issued exec fails ([`close_added`]): the exec freeze has the task
//!   interrupted before the re-issued call is let through, so that a
//!   refusal by the kernel (`ETXTBSY`, `E2BIG`, `ENOMEM`...) stops it at
//!   the call's return. The chroot also checks first what the kernel would
//!   refuse (rights, `noexec`, `#!` lines, a file it cannot load:
//!   `ENOEXEC`). A re-issued call refused by the supervisor's own decision
//!   (its freeze failing: `EPERM`) has the task interrupted before that
//!   answer too, and the files closed at its return
//!   (`Tracer::before_refused_reissued_answer`). Left open: the files of
//!   a task no longer traced then, a task whose seccomp wait
//!   is not killable-only (no `WAIT_KILLABLE_RECV`: its interrupt is asked
//!   after the answer and may stop it later). A task whose close cannot be
//!   seen through (stops coming again and again before it for
//!   [`STOP_TIMEOUT`](super::STOP_TIMEOUT), a `close` that blocks) is
//!   killed. A `SIGTRAP` aimed at the task with `tgkill` in the moment
//!   between its close and the step's trap is merged by the kernel with
//!   that trap (standard signals do not queue), which is not delivered.
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

/// Whether `r` can be rewritten once its files are added: at most six
/// arguments, each file argument naming one of its files. Checked before
/// anything is added.
pub(crate) fn well_formed(r: &Reissue) -> bool {
    rewrite(r, 0, &vec![0; r.files.len()], Vec::new()).is_some()
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
    let maps = crate::sys::procfs::read_text(&format!("/proc/{tid}/maps")).ok()?;
    for m in crate::sys::procfs::mappings(&maps) {
        let m = m?;
        if m.start <= addr && addr < m.end {
            return Some(m.start);
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

/// Where a task stands when the files a re-issue added to it are closed
/// ([`close_added`]): stopped at the return of a call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Return {
    /// The failed return of the re-issued call (this number; its first
    /// argument the first file): the exec freeze's trap after a failed
    /// exec.
    Failed(u64),
    /// The answered return of the trapped call (this number) that was not
    /// rewritten: the re-issue failed after its files were added.
    Trapped(u64),
}

/// What [`close_added`] did.
#[derive(Debug)]
pub(crate) enum Closed {
    /// Every file closed (or no longer at its number): the task is left
    /// in its stop, as it was; the signal to deliver when it is let go.
    Done(i32),
    /// Nothing was run in the task (it is not at the return said): the
    /// files are still there; the signal to deliver when it is let go.
    Left(i32, NotMade),
    /// A close was started and could not be seen through (the task kept
    /// being stopped for [`STOP_TIMEOUT`](super::STOP_TIMEOUT), or was left
    /// in a state that is not before or after it): the task's process was
    /// killed, fail closed; it is not in a stop any more.
    Killed(NotMade),
}

/// Closes in `tid`, stopped at the return `at` (`sig`: the signal of that
/// stop, 0 for a trap), the files `added` that a re-issue added to it.
/// Each `close` is made by the task itself: its registers set to
/// `close(fd)` at the `syscall` instruction, one instruction stepped
/// (`PTRACE_SINGLESTEP` stops it right after the call), then its
/// registers put back as they were (the failed call's errno in `rax`). A
/// file is closed only if that number still holds it. `root`: the
/// sandbox's first process (its exit is left to its parent).
///
/// Whether a close ran is read from the registers at each stop, whatever
/// the stop: after it the task is right after the `syscall` instruction
/// with `close` as its call, before it still at the instruction. A group
/// stop, an interrupt or a signal may come before the close or after it
/// (a stop found pending on the way back from the call is taken before
/// the step's trap): a close that ran is never made again (the number may
/// hold a file another task sharing the table opened since), one that did
/// not is tried again. The step's own trap (a `SIGTRAP` the kernel made,
/// `si_code > 0`) is never delivered: if another stop came first, the
/// task is stepped once more on `close(-1)`, which takes that trap before
/// it runs or else runs harmlessly and traps. While stepping the task
/// blocks every signal it can but `SIGTRAP` (its mask put back after), so
/// only a `SIGSTOP`, a `SIGTRAP` sent by a process (`si_code <= 0`) and
/// group stops or interrupts come in between: the signals are kept with
/// their siginfo (a group stop is put back by the kernel when the task is
/// detached). Each stop is waited for until a deadline
/// ([`STOP_TIMEOUT`](super::STOP_TIMEOUT) for all): past it, or in a state
/// that is neither, the task's process is killed ([`Closed::Killed`]).
///
/// Returns, but when killed, the signal to deliver when the task is let
/// go from the stop it is left in (its siginfo set there; further kept
/// signals are sent to it again, pending when it runs).
#[cfg(target_arch = "x86_64")]
pub(crate) fn close_added(tid: i32, at: Return, added: &Added, root: bool, sig: i32) -> Closed {
    use crate::sys::ptrace::{self, TraceeState};
    use std::time::Instant;
    const CLOSE: u64 = libc::SYS_close as u64;
    let saved = match ptrace::get_regs(tid) {
        Ok(r) => r,
        Err(e) => return Closed::Left(sig, NotMade::Io(e)),
    };
    let failed = (saved.rax as i64) < 0 && (saved.rax as i64) >= -4095;
    let first = added.first().map(|a| a.0 as u64);
    let here = match at {
        Return::Failed(nr) => saved.orig_rax == nr && failed && first == Some(saved.rdi),
        Return::Trapped(nr) => saved.orig_rax == nr && failed,
    };
    let mut ins = [0u8; 2];
    let syscall = saved.rip.checked_sub(2).filter(|&a| {
        matches!(crate::sys::mem::read(tid, a, &mut ins), Ok(2)) && ins == [0x0f, 0x05]
    });
    let Some(syscall_at) = syscall.filter(|_| here) else {
        return Closed::Left(
            sig,
            NotMade::Elsewhere("not at the return of the call said"),
        );
    };
    // The signals to deliver (their siginfo), and whether the task is in
    // a signal-delivery stop (where one can be given with its siginfo).
    let mut kept: Vec<ptrace::SigInfo> = Vec::new();
    let mut at_delivery = sig != 0;
    if sig != 0 {
        match ptrace::get_siginfo(tid) {
            Ok(info) => kept.push(info),
            Err(e) => return Closed::Left(sig, NotMade::Io(e)),
        }
    }
    let mask = match ptrace::get_sigmask(tid) {
        Ok(m) => m,
        Err(e) => return Closed::Left(sig, NotMade::Io(e)),
    };
    // Not SIGTRAP: the kernel resets the handler of a trap it forces on a
    // task that blocks it.
    let all_but_trap = !(1u64 << (libc::SIGTRAP - 1));
    if let Err(e) = ptrace::set_sigmask(tid, all_but_trap) {
        return Closed::Left(sig, NotMade::Io(e));
    }
    let deadline = Instant::now() + super::STOP_TIMEOUT;
    let holds = |fd: i32, id: super::FileId| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{tid}/fd/{fd}")).is_ok_and(|m| (m.dev(), m.ino()) == id)
    };
    // One close made by the task, its step's trap taken. An error: the
    // task's state is not known (stepped, or its stop not seen).
    let mut close_one = |fd: i32, id: super::FileId| -> Result<(), NotMade> {
        let mut closed = false;
        loop {
            if !closed && !holds(fd, id) {
                // Not our file any more (the program closed it): nothing
                // of ours to close, no step made that could trap.
                return Ok(());
            }
            let mut regs = saved;
            regs.rax = CLOSE;
            // Once closed: `close(-1)`, to take the step's trap.
            regs.rdi = if closed { u64::MAX } else { fd as u64 };
            regs.orig_rax = u64::MAX;
            regs.rip = syscall_at;
            ptrace::set_regs(tid, &regs).map_err(NotMade::Io)?;
            ptrace::single_step(tid).map_err(NotMade::Io)?;
            let stop = wait_step(tid, root, deadline).map_err(NotMade::Io)?;
            let stop = match stop {
                Some(TraceeState::Gone) => return Err(NotMade::Elsewhere("gone")),
                Some(s) => s,
                None => return Err(NotMade::Elsewhere("its stop did not come in time")),
            };
            let now = ptrace::get_regs(tid).map_err(NotMade::Io)?;
            if now.rip == saved.rip && now.orig_rax == CLOSE {
                closed = true;
            } else if now.rip != syscall_at {
                return Err(NotMade::Elsewhere("neither before nor after its close"));
            }
            match stop {
                TraceeState::Signal(s) => {
                    at_delivery = true;
                    let info = ptrace::get_siginfo(tid).map_err(NotMade::Io)?;
                    if s == libc::SIGTRAP && info.si_code > 0 {
                        // A step's trap (made by the kernel: no code of
                        // the task ran): taken, never delivered. Before
                        // the close, none of ours is left pending.
                        if closed {
                            return Ok(());
                        }
                    } else {
                        kept.push(info);
                    }
                }
                // A group stop (put back at the detach) or an interrupt.
                _ => at_delivery = false,
            }
        }
    };
    let mut failure = None;
    for &(fd, id) in added {
        if let Err(e) = close_one(fd, id) {
            failure = Some(e);
            break;
        }
    }
    if let Some(why) = failure {
        // The task may be anywhere: stepped with the close's registers,
        // or running. It must not go on with the file or those registers.
        super::kill_task(
            tid,
            format_args!(
                "task {tid}: the files a re-issue added cannot be closed ({why}); killing it"
            ),
        );
        return Closed::Killed(why);
    }
    // The failed call's return as it was (a task left with the close's
    // registers would run it again), and its own mask.
    let put_back = ptrace::set_regs(tid, &saved).and_then(|()| ptrace::set_sigmask(tid, mask));
    if let Err(e) = put_back {
        super::kill_task(
            tid,
            format_args!(
                "task {tid}: its registers cannot be put back after a close ({e}); killing it"
            ),
        );
        return Closed::Killed(NotMade::Io(e));
    }
    // One signal of each number (a process's standard signals do not
    // queue), and the kernel's rule between stops and `SIGCONT`: each
    // discards the other sent before it (kept in order, a `SIGSTOP` then a
    // `SIGCONT` leave the task running, as on bare Linux; given back
    // as they were, the stop came last and the task stayed stopped for
    // good); the first given at the release with its siginfo if the task
    // is in a delivery stop, the others sent again.
    let is_stop = |s: i32| {
        matches!(
            s,
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
        )
    };
    let mut signals: Vec<ptrace::SigInfo> = Vec::new();
    for info in kept {
        if info.si_signo == libc::SIGCONT {
            signals.retain(|k| !is_stop(k.si_signo));
        } else if is_stop(info.si_signo) {
            signals.retain(|k| k.si_signo != libc::SIGCONT);
        }
        if !signals.iter().any(|k| k.si_signo == info.si_signo) {
            signals.push(info);
        }
    }
    // A `SIGCONT` sent after the loop (queued: the task is traced, and in
    // a stop that it does not end) also came after every kept stop.
    if signals.iter().any(|k| is_stop(k.si_signo)) && cont_pending(tid) {
        signals.retain(|k| !is_stop(k.si_signo));
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
    Closed::Done(deliver)
}

/// The next stop of tracee `tid` after it was resumed, polled for until
/// `deadline`: `None` then (it did not stop in time).
#[cfg(target_arch = "x86_64")]
fn wait_step(
    tid: i32,
    root: bool,
    deadline: std::time::Instant,
) -> std::io::Result<Option<crate::sys::ptrace::TraceeState>> {
    use std::time::{Duration, Instant};
    let mut nap = Duration::from_micros(2);
    loop {
        if let Some(s) = crate::sys::ptrace::wait_tracee(tid, true, root)? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(1));
    }
}

/// See the x86_64 version: not implemented here.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn close_added(_tid: i32, _at: Return, _added: &Added, _root: bool, sig: i32) -> Closed {
    Closed::Left(sig, NotMade::Unsupported)
}

/// Whether a `SIGCONT` is pending for task `tid` (its own or its
/// process's queue, `/proc/<tid>/status`); unknown: no.
fn cont_pending(tid: i32) -> bool {
    let Ok(st) = crate::sys::procfs::read_text(&format!("/proc/{tid}/status")) else {
        return false;
    };
    ["SigPnd:", "ShdPnd:"].iter().any(|f| {
        crate::sys::procfs::status_field(&st, f)
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (libc::SIGCONT - 1)) != 0)
    })
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
