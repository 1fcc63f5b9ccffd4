//! Builtin handlers installed by the sandbox for the process and memory
//! limits. They run first in their chains and return `Continue` when the
//! call is not theirs to refuse.

use std::sync::Arc;

use crate::action::NotifAction;
use crate::handler::{Handler, HandlerCtx};
use crate::syscalls;

use super::clone_args::{CloneRequest, ForkKind};
use super::limits::{page_up, statm_data, Charge};
use super::{Limits, Tracker};

/// The builtin handlers `limits` needs, by syscall number.
/// With `memory_cgroup`, the kernel bounds memory and no memory call is
/// trapped.
pub(crate) fn builtins(limits: &Limits, memory_cgroup: bool) -> Vec<(u32, Arc<dyn Handler>)> {
    let mut out: Vec<(u32, Arc<dyn Handler>)> = Vec::new();
    let mut add = |name: &str, h: Arc<dyn Handler>| {
        // fork and vfork do not exist on every architecture.
        if let Ok(nr) = syscalls::resolve(name) {
            out.push((nr, h));
        }
    };
    // Without a memory cgroup, a fork is a memory call too: its child
    // gets a copy-on-write image of its parent.
    let memory_calls = limits.max_memory.is_some() && !memory_cgroup;
    if limits.traps_forks() || memory_calls {
        add("clone", Arc::new(ForkHandler(ForkKind::Clone)));
        add("clone3", Arc::new(Clone3Refused));
        add("fork", Arc::new(ForkHandler(ForkKind::Fork)));
        add("vfork", Arc::new(ForkHandler(ForkKind::Vfork)));
    }
    if memory_calls {
        // munmap is not trapped: it is never credited (a hole was never
        // charged), and an exit or the next count sees what it freed.
        add("mmap", Arc::new(MemHandler(MemCall::Mmap)));
        add("mprotect", Arc::new(MemHandler(MemCall::Mprotect)));
        add("brk", Arc::new(MemHandler(MemCall::Brk)));
        add("mremap", Arc::new(MemHandler(MemCall::Mremap)));
        add("shmget", Arc::new(MemHandler(MemCall::Shmget)));
        // A new image has a new program break.
        add("execve", Arc::new(MemHandler(MemCall::Exec)));
        add("execveat", Arc::new(MemHandler(MemCall::Exec)));
    }
    out
}

/// Runs `f` with this supervisor's tracker. (These builtins are installed
/// only with one; without it, fail closed.)
fn with_tracker(cx: &HandlerCtx<'_>, f: impl FnOnce(&Tracker) -> NotifAction) -> NotifAction {
    let Some(t) = cx.service::<Tracker>() else {
        return NotifAction::Errno(libc::EPERM);
    };
    // Limits lowered at run time by the policy callback.
    t.apply_dynamic();
    f(t)
}

/// `clone3` takes its flags from memory, which the kernel copies again after
/// a `CONTINUE`: another thread could clear `CLONE_THREAD` or add a namespace
/// flag in between, past the count and the namespace check. So it is refused
/// as unknown (`ENOSYS`), and the C library falls back to `clone`, whose
/// flags are in registers.
struct Clone3Refused;

impl Handler for Clone3Refused {
    fn handle(&self, _: &HandlerCtx<'_>) -> NotifAction {
        NotifAction::Errno(libc::ENOSYS)
    }
}

/// `clone`, `fork`, `vfork`: namespaces refused (`EPERM`), threads let
/// through uncounted, processes held while paused and counted with a token
/// (`EAGAIN` at the limit).
struct ForkHandler(ForkKind);

impl Handler for ForkHandler {
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        let req = CloneRequest::decode(self.0, cx.arg(0));
        if req.wants_namespace() {
            log::debug!(
                "pid {}: {:?} with namespace flags {:#x} refused",
                cx.pid(),
                req.kind,
                req.flags
            );
            return NotifAction::Errno(libc::EPERM);
        }
        if req.is_thread() {
            return NotifAction::Continue;
        }
        with_tracker(cx, |t| {
            if cx.paused() {
                // Held in the core, past the pipeline's verdict stage: the
                // policy callback is told now, as it would be for any fork.
                if let Some(e) = cx.check_policy(None) {
                    return NotifAction::Errno(e);
                }
                if let Some(held) = cx.hold_if_paused() {
                    return held;
                }
            }
            // A copy of the parent's private writable memory, charged
            // before the fork is counted (nothing to roll back then).
            if !req.shares_memory() {
                if let Some(mem) = &t.memory {
                    let Some(proc) = t.index.get(cx.pid() as i32) else {
                        return NotifAction::Errno(libc::ENOMEM);
                    };
                    let image = statm_data(proc.key().pid).unwrap_or(0);
                    if mem.charge(&proc, image, false, || t.writable_memory()) == Charge::Refused {
                        log::info!(
                            "pid {}: fork refused (ENOMEM): a copy of {image} bytes is over the memory limit of {}",
                            cx.pid(),
                            mem.limit()
                        );
                        return NotifAction::Errno(libc::ENOMEM);
                    }
                }
            }
            let Some(counter) = &t.counter else {
                return NotifAction::Continue;
            };
            match counter.try_take(cx.pid() as i32, || t.index.pids()) {
                Some(token) => {
                    cx.set_fork_token(Box::new(token));
                    NotifAction::Continue
                }
                None => {
                    log::debug!(
                        "pid {}: process limit {} reached",
                        cx.pid(),
                        counter.limit()
                    );
                    cx.report(|| crate::events::Event::ProcessLimitRefused {
                        pid: cx.pid(),
                        limit: counter.limit(),
                    });
                    NotifAction::Errno(libc::EAGAIN)
                }
            }
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum MemCall {
    Mmap,
    Mprotect,
    Brk,
    Mremap,
    Shmget,
    Exec,
}

/// Memory accounting without a memory cgroup (see
/// [`MemoryLimit`](super::limits::MemoryLimit)): each call that can make
/// memory writable is charged its size; over the limit the task is killed
/// (a `shmget` that would create a segment gets `ENOMEM`).
struct MemHandler(MemCall);

impl MemHandler {
    /// What the call can make writable, and whether it is shared memory.
    fn growth(&self, cx: &HandlerCtx<'_>) -> (u64, bool) {
        let writable = |prot: u64| prot as i32 & libc::PROT_WRITE != 0;
        match self.0 {
            MemCall::Mmap => {
                let (len, prot, flags) = (cx.arg(1), cx.arg(2), cx.arg(3) as i32);
                // Private or shared, anonymous or a file (tmpfs, memfd,
                // /dev/zero): writable pages can become memory. PROT_NONE
                // or read-only: nothing until an mprotect.
                let shared = flags & 0x3 != libc::MAP_PRIVATE;
                (if writable(prot) { page_up(len) } else { 0 }, shared)
            }
            MemCall::Mprotect => {
                // Whether the range was writable already is not known
                // here: charged, and the next count corrects it.
                (
                    if writable(cx.arg(2)) {
                        page_up(cx.arg(1))
                    } else {
                        0
                    },
                    false,
                )
            }
            MemCall::Mremap => {
                let (old, new) = (page_up(cx.arg(1)), page_up(cx.arg(2)));
                (new.saturating_sub(old), false)
            }
            MemCall::Shmget => {
                let creates = cx.arg(2) as i32 & libc::IPC_CREAT != 0;
                (if creates { page_up(cx.arg(1)) } else { 0 }, true)
            }
            MemCall::Brk | MemCall::Exec => (0, false),
        }
    }
}

impl Handler for MemHandler {
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        with_tracker(cx, |t| {
            let Some(mem) = &t.memory else {
                return NotifAction::Continue;
            };
            // Registered by pipeline stage 1.
            let Some(proc) = t.index.get(cx.pid() as i32) else {
                // Not indexed (stage 1 could not read it): the memory could
                // not be accounted, so it is not given.
                log::warn!(
                    "pid {}: not in the process index; memory call refused",
                    cx.pid()
                );
                return NotifAction::Errno(libc::ENOMEM);
            };
            let count = || t.writable_memory();
            let charge = match self.0 {
                MemCall::Exec => {
                    // The break of the image to come is not known yet (a
                    // failed exec keeps the old one: then its growth is
                    // counted from start_brk, too much, and corrected by
                    // the next count). Nothing is credited.
                    proc.mem.lock().brk = None;
                    return NotifAction::Continue;
                }
                MemCall::Brk => {
                    let addr = cx.arg(0);
                    if addr == 0 {
                        return NotifAction::Continue;
                    }
                    mem.set_brk(&proc, addr, count)
                }
                _ => match self.growth(cx) {
                    (0, _) => return NotifAction::Continue,
                    (bytes, shared) => mem.charge(&proc, bytes, shared, count),
                },
            };
            match (charge, self.0) {
                (Charge::Allowed, _) => NotifAction::Continue,
                (Charge::Refused, MemCall::Shmget) => NotifAction::Errno(libc::ENOMEM),
                (Charge::Refused, call) => {
                    log::info!(
                        "pid {}: memory limit of {} bytes exceeded ({call:?}); killing it",
                        cx.pid(),
                        mem.limit(),
                    );
                    cx.report(|| crate::events::Event::MemoryLimitKilled {
                        pid: Some(cx.pid()),
                        limit: mem.limit(),
                        count: 1,
                    });
                    NotifAction::KillTask {
                        signal: libc::SIGKILL,
                    }
                }
            }
        })
    }
}
