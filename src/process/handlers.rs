//! Builtin handlers installed by the sandbox for the process and memory
//! limits. They run first in their chains and return `Continue` when the
//! call is not theirs to refuse.

use std::sync::Arc;

use crate::action::NotifAction;
use crate::handler::{Handler, HandlerCtx};
use crate::syscalls;

use super::clone_args::{CloneRequest, ForkKind};
use super::limits::{page_up, Charge};
use super::{park_fork_token, Limits, Tracker};

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
    if limits.traps_forks() {
        add("clone", Arc::new(ForkHandler(ForkKind::Clone)));
        add("clone3", Arc::new(Clone3Refused));
        add("fork", Arc::new(ForkHandler(ForkKind::Fork)));
        add("vfork", Arc::new(ForkHandler(ForkKind::Vfork)));
    }
    if limits.max_memory.is_some() && !memory_cgroup {
        add("mmap", Arc::new(MemHandler(MemCall::Mmap)));
        add("munmap", Arc::new(MemHandler(MemCall::Munmap)));
        add("brk", Arc::new(MemHandler(MemCall::Brk)));
        add("mremap", Arc::new(MemHandler(MemCall::Mremap)));
        add("execve", Arc::new(MemHandler(MemCall::Exec)));
        add("execveat", Arc::new(MemHandler(MemCall::Exec)));
    }
    out
}

/// Runs `f` with this supervisor's tracker. (These builtins are installed
/// only with one; without it, fail closed.)
fn with_tracker(cx: &HandlerCtx<'_>, f: impl FnOnce(&Tracker) -> NotifAction) -> NotifAction {
    let shared = cx.shared();
    let Some(t) = shared.tracker.as_ref() else {
        return NotifAction::Errno(libc::EPERM);
    };
    // Limits lowered at run time by the policy callback.
    if let Some(policy) = &shared.policy {
        t.apply_dynamic(&policy.dynamic);
    }
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
/// through uncounted, processes held while frozen and counted with a token
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
            if t.hold_if_frozen(cx.notification()) {
                return NotifAction::Hold;
            }
            let Some(counter) = &t.counter else {
                return NotifAction::Continue;
            };
            match counter.try_take(cx.pid() as i32, || t.index.pids()) {
                Some(token) => {
                    park_fork_token(token);
                    NotifAction::Continue
                }
                None => {
                    log::debug!(
                        "pid {}: process limit {} reached",
                        cx.pid(),
                        counter.limit()
                    );
                    NotifAction::Errno(libc::EAGAIN)
                }
            }
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum MemCall {
    Mmap,
    Munmap,
    Brk,
    Mremap,
    Exec,
}

/// Anonymous-memory accounting; over the limit the task is killed.
struct MemHandler(MemCall);

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
            let charge = match self.0 {
                MemCall::Mmap => {
                    let (len, prot, flags) = (cx.arg(1), cx.arg(2) as i32, cx.arg(3) as i32);
                    let shared = flags & 0x3 != libc::MAP_PRIVATE;
                    let anon = flags & libc::MAP_ANONYMOUS != 0;
                    // Charged: anonymous memory, private or shared, and
                    // private writable file mappings (copy-on-write memory:
                    // /dev/zero is anonymous memory by another name). A
                    // PROT_NONE reservation uses nothing until an mprotect,
                    // which the statm reconciliation sees.
                    let charged = if anon {
                        prot != libc::PROT_NONE
                    } else {
                        !shared && prot & libc::PROT_WRITE != 0
                    };
                    if !charged {
                        return NotifAction::Continue;
                    }
                    mem.charge(&proc, page_up(len), shared)
                }
                MemCall::Munmap => {
                    mem.credit(&proc, page_up(cx.arg(1)));
                    Charge::Allowed
                }
                MemCall::Brk => {
                    let addr = cx.arg(0);
                    if addr == 0 {
                        return NotifAction::Continue;
                    }
                    mem.set_brk(&proc, addr)
                }
                MemCall::Mremap => {
                    let (old, new) = (page_up(cx.arg(1)), page_up(cx.arg(2)));
                    if new > old {
                        mem.charge(&proc, new - old, false)
                    } else {
                        mem.credit(&proc, old - new);
                        Charge::Allowed
                    }
                }
                MemCall::Exec => {
                    mem.reset(&proc);
                    Charge::Allowed
                }
            };
            let charge = match (charge, self.0) {
                // Processes that exited but whose exit the poll thread has
                // not handled yet still hold charges: release them and try
                // once more before killing.
                (Charge::Refused, MemCall::Mmap | MemCall::Mremap | MemCall::Brk)
                    if t.sweep_now() > 0 =>
                {
                    match self.0 {
                        MemCall::Mmap => mem.charge(
                            &proc,
                            page_up(cx.arg(1)),
                            cx.arg(3) as i32 & 0x3 != libc::MAP_PRIVATE,
                        ),
                        MemCall::Mremap => mem.charge(
                            &proc,
                            page_up(cx.arg(2)).saturating_sub(page_up(cx.arg(1))),
                            false,
                        ),
                        _ => mem.set_brk(&proc, cx.arg(0)),
                    }
                }
                (c, _) => c,
            };
            match charge {
                Charge::Allowed => NotifAction::Continue,
                Charge::Refused => {
                    log::info!(
                        "pid {}: memory limit of {} bytes exceeded ({:?}); killing it",
                        cx.pid(),
                        mem.limit(),
                        self.0
                    );
                    NotifAction::KillTask {
                        signal: libc::SIGKILL,
                    }
                }
            }
        })
    }
}
