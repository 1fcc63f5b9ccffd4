//! The policy callback for C: `unotify_builder_policy` and the
//! `unotify_policy_*` functions that narrow the running policy from it.

use std::ffi::{c_char, c_int, c_void, CString};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

use ipnet::IpNet;

use super::builder::{os, utf8, UnotifyBuilder};
use super::error::{guard, Fail, UNOTIFY_E_CONFIG};
use crate::policy::{PolicyContext, SyscallCategory, SyscallEvent, Verdict};
use crate::sys::capi_raw::{self, HostPtr};

/// `unotify_policy_event`: one trapped call, as the policy callback sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UnotifyPolicyEvent {
    /// System call name (static, NUL-terminated).
    pub syscall: *const c_char,
    /// One of `UNOTIFY_CATEGORY_*`.
    pub category: c_int,
    /// Thread id of the caller.
    pub pid: u32,
    /// Parent process of the caller, 0 if unknown.
    pub parent_pid: u32,
    /// `AF_INET`, `AF_INET6`, or 0 without an address.
    pub addr_family: c_int,
    /// The address (4 bytes for `AF_INET`), network byte order.
    pub addr: [u8; 16],
    /// Destination or bind port, -1 without one.
    pub port: c_int,
    /// Whether `size` is set.
    pub has_size: c_int,
    /// A size argument (the length of an `mmap`).
    pub size: u64,
    /// Number of exec arguments (0 with `argv` null when unknown).
    pub argc: usize,
    /// The exec's argument vector, null-terminated; null when unknown.
    pub argv: *const *const c_char,
    /// Whether the supervisor had already denied the call.
    pub denied: c_int,
    /// Whether the call waits for this verdict; 0: it was answered
    /// already, a denying verdict changes nothing for it.
    pub held: c_int,
}

/// Files: open, link, rename, exec of a path.
pub const UNOTIFY_CATEGORY_FILE: c_int = 0;
/// Sockets: connect, bind, send.
pub const UNOTIFY_CATEGORY_NETWORK: c_int = 1;
/// Process creation and exec.
pub const UNOTIFY_CATEGORY_PROCESS: c_int = 2;
/// Memory mappings and the heap.
pub const UNOTIFY_CATEGORY_MEMORY: c_int = 3;

/// Let the supervisor's decision stand.
pub const UNOTIFY_VERDICT_ALLOW: c_int = 0;
/// As allow, and log the call (`log` target `unotify::audit`).
pub const UNOTIFY_VERDICT_AUDIT: c_int = 1;

/// `unotify_policy_ctx`: narrows the running policy, during one callback.
pub type UnotifyPolicyCtx = PolicyContext<'static>;

/// `unotify_policy_fn`: returns a verdict, or `-errno` to deny.
pub type PolicyFn = Option<
    extern "C" fn(
        user: *mut c_void,
        ev: *const UnotifyPolicyEvent,
        pc: *mut UnotifyPolicyCtx,
    ) -> c_int,
>;

fn category(c: SyscallCategory) -> c_int {
    match c {
        SyscallCategory::File => UNOTIFY_CATEGORY_FILE,
        SyscallCategory::Network => UNOTIFY_CATEGORY_NETWORK,
        SyscallCategory::Process => UNOTIFY_CATEGORY_PROCESS,
        SyscallCategory::Memory => UNOTIFY_CATEGORY_MEMORY,
    }
}

/// The callback's answer: 0 allow, 1 audit, `-errno` deny with it; any
/// other value denies with `EPERM`.
fn verdict(rc: c_int) -> Verdict {
    match rc {
        UNOTIFY_VERDICT_ALLOW => Verdict::Allow,
        UNOTIFY_VERDICT_AUDIT => Verdict::Audit,
        e if (-4095..0).contains(&e) => Verdict::DenyWith(-e),
        _ => Verdict::Deny,
    }
}

/// Calls the C callback with a C view of `ev` (valid for the call).
fn decide(
    f: extern "C" fn(*mut c_void, *const UnotifyPolicyEvent, *mut UnotifyPolicyCtx) -> c_int,
    user: HostPtr,
    ev: &SyscallEvent,
    pc: &mut PolicyContext<'_>,
) -> Verdict {
    let name = CString::new(ev.syscall).unwrap_or_default();
    let args: Option<Vec<CString>> = ev.argv.as_ref().map(|v| {
        v.iter()
            // The exact bytes (an argument read up to its NUL holds none).
            .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
            .collect()
    });
    let mut argv: Vec<*const c_char> = args
        .iter()
        .flatten()
        .map(|a| a.as_ptr())
        .collect::<Vec<_>>();
    argv.push(std::ptr::null());
    let (family, addr) = match ev.host {
        Some(IpAddr::V4(a)) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (libc::AF_INET, b)
        }
        Some(IpAddr::V6(a)) => (libc::AF_INET6, a.octets()),
        None => (0, [0u8; 16]),
    };
    let c_ev = UnotifyPolicyEvent {
        syscall: name.as_ptr(),
        category: category(ev.category),
        pid: ev.pid,
        parent_pid: ev.parent_pid.unwrap_or(0),
        addr_family: family,
        addr,
        port: ev.port.map(c_int::from).unwrap_or(-1),
        has_size: ev.size.is_some() as c_int,
        size: ev.size.unwrap_or(0),
        argc: args.as_ref().map_or(0, Vec::len),
        argv: if args.is_some() {
            argv.as_ptr()
        } else {
            std::ptr::null()
        },
        denied: ev.denied as c_int,
        held: ev.held as c_int,
    };
    // Lifetimes erased for C; the accessors use it only during this call.
    let pc_ptr = pc as *mut PolicyContext<'_> as *mut UnotifyPolicyCtx;
    verdict(f(user.0, &c_ev, pc_ptr))
}

/// Sets the policy callback, run on one dedicated thread per sandbox
/// (serially) for each trapped call; the held ones (exec, open, every call
/// that changes a file by path, connect, bind, send: the event's `held`)
/// wait for its verdict.
#[no_mangle]
pub extern "C" fn unotify_builder_policy(
    b: *mut UnotifyBuilder,
    policy: PolicyFn,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        let b = capi_raw::handle_mut(b).ok_or_else(|| Fail::invalid("null unotify_builder"))?;
        let f = policy.ok_or_else(|| Fail::invalid("null policy callback"))?;
        let user = HostPtr(user);
        b.apply(move |x| x.policy_fn(move |ev, pc| decide(f, user, ev, pc)))
    })
}

fn policy_ctx<'a>(pc: *mut UnotifyPolicyCtx) -> Result<&'a mut UnotifyPolicyCtx, Fail> {
    capi_raw::handle_mut(pc).ok_or_else(|| Fail::invalid("null unotify_policy_ctx"))
}

/// `n` networks (`"10.0.0.0/8"`, `"::1"`) at `cidrs`.
fn nets(cidrs: *const *const c_char, n: usize) -> Result<Vec<IpNet>, Fail> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = capi_raw::get(cidrs.wrapping_add(i)).ok_or_else(|| Fail::invalid("null cidrs"))?;
        let s = utf8(p, "network")?;
        let net = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                Fail::new(
                    UNOTIFY_E_CONFIG,
                    format!("`{s}` is not an address or a CIDR network (10.0.0.0/8, ::1)"),
                )
            })?;
        out.push(net);
    }
    Ok(out)
}

/// Runs `f` on the policy context and the `n` networks at `cidrs`.
fn with_nets(
    pc: *mut UnotifyPolicyCtx,
    cidrs: *const *const c_char,
    n: usize,
    f: impl FnOnce(&mut UnotifyPolicyCtx, &[IpNet]),
) -> c_int {
    guard(|| {
        let pc = policy_ctx(pc)?;
        f(pc, &nets(cidrs, n)?);
        Ok(())
    })
}

/// From now on, destinations must also lie in one of the `n` networks.
#[no_mangle]
pub extern "C" fn unotify_policy_restrict_network(
    pc: *mut UnotifyPolicyCtx,
    cidrs: *const *const c_char,
    n: usize,
) -> c_int {
    with_nets(pc, cidrs, n, |pc, nets| pc.restrict_network(nets))
}

/// Re-admits networks after a restriction (never beyond the start).
#[no_mangle]
pub extern "C" fn unotify_policy_grant_network(
    pc: *mut UnotifyPolicyCtx,
    cidrs: *const *const c_char,
    n: usize,
) -> c_int {
    with_nets(pc, cidrs, n, |pc, nets| pc.grant_network(nets))
}

/// Restricts one process (any of its thread ids) to the `n` networks.
#[no_mangle]
pub extern "C" fn unotify_policy_restrict_process_network(
    pc: *mut UnotifyPolicyCtx,
    pid: u32,
    cidrs: *const *const c_char,
    n: usize,
) -> c_int {
    with_nets(pc, cidrs, n, |pc, nets| {
        pc.restrict_process_network(pid, nets)
    })
}

/// Lowers the process limit (a higher value is ignored).
#[no_mangle]
pub extern "C" fn unotify_policy_restrict_max_processes(
    pc: *mut UnotifyPolicyCtx,
    n: u64,
) -> c_int {
    guard(|| {
        policy_ctx(pc)?.restrict_max_processes(n);
        Ok(())
    })
}

/// Lowers the memory limit in bytes (a higher value is ignored).
#[no_mangle]
pub extern "C" fn unotify_policy_restrict_max_memory(
    pc: *mut UnotifyPolicyCtx,
    bytes: u64,
) -> c_int {
    guard(|| {
        policy_ctx(pc)?.restrict_max_memory(bytes);
        Ok(())
    })
}

/// Denies `path` from now on (nothing changes if it already is; path
/// denial is always on in a sandbox with a policy callback).
#[no_mangle]
pub extern "C" fn unotify_policy_deny_path(
    pc: *mut UnotifyPolicyCtx,
    path: *const c_char,
) -> c_int {
    guard(|| {
        let pc = policy_ctx(pc)?;
        // `false`: denied already (a policy callback always has path denial).
        let _newly = pc.deny_path(os(path, "path")?);
        Ok(())
    })
}

/// Allows again a path denied by `unotify_policy_deny_path`.
#[no_mangle]
pub extern "C" fn unotify_policy_allow_path(
    pc: *mut UnotifyPolicyCtx,
    path: *const c_char,
) -> c_int {
    guard(|| {
        let pc = policy_ctx(pc)?;
        if pc.allow_path(os(path, "path")?) {
            Ok(())
        } else {
            Err(Fail::new(
                UNOTIFY_E_CONFIG,
                "no such path was denied at run time (or the sandbox has no path denial)",
            ))
        }
    })
}
