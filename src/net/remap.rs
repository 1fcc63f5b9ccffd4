//! The port-translation hook of the on-behalf network calls: a feature
//! (determinism's port remap) gives the sandbox a [`PortRemap`] as a
//! service ([`PortHook`]); `onbehalf` then binds a free real port behind
//! each port the program binds, sends connects and sends to a virtual
//! port on loopback to the real one, and `getsockname`/`getpeername`
//! (trapped only with the hook) show the virtual port.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::action::NotifAction;
use crate::handler::HandlerCtx;
use crate::sys::net as sysnet;

use super::policy::Protocol;
use super::sockaddr;

/// A sandbox's map between the ports its program sees and real ports.
pub(crate) trait PortRemap: Send + Sync {
    /// The real port behind virtual port `virt`, if one was bound.
    fn real(&self, proto: Protocol, virt: u16) -> Option<u16>;
    /// The virtual port real port `real` stands for, if any.
    fn virtual_of(&self, proto: Protocol, real: u16) -> Option<u16>;
    /// Records `virt` → `real`; `false` if `virt` has another real port.
    fn record(&self, proto: Protocol, virt: u16, real: u16) -> bool;
}

/// The [`PortRemap`] of a sandbox, in its services.
pub(crate) struct PortHook(pub(crate) Arc<dyn PortRemap>);

/// Sets the port of IPv4/IPv6 `sockaddr` bytes.
pub(crate) fn set_port(bytes: &mut [u8], port: u16) {
    if bytes.len() >= 4 {
        bytes[2..4].copy_from_slice(&port.to_be_bytes());
    }
}

/// The destination of a connect or send, translated if it is a virtual
/// port on loopback.
pub(crate) fn translate_dest(
    hook: &dyn PortRemap,
    proto: Option<Protocol>,
    dest: SocketAddr,
    addr: &mut [u8],
) {
    let Some(proto) = proto else { return };
    if !dest.ip().is_loopback() && !dest.ip().is_unspecified() {
        return;
    }
    if let Some(real) = hook.real(proto, dest.port()) {
        set_port(addr, real);
    }
}

/// `getsockname(fd, addr, len)` (`peer`: `getpeername`) with a real port
/// shown as its virtual one: performed on a duplicate of the socket, the
/// result written after the call (under `ID_VALID`), `len` read once.
pub(crate) fn sockname(cx: &HandlerCtx<'_>, peer: bool) -> NotifAction {
    let Some(hook) = cx.service::<PortHook>() else {
        return NotifAction::Continue;
    };
    let fd = match cx.dup_fd(cx.arg(0) as u32 as i32) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return NotifAction::Errno(libc::EIO),
        Err(e) => return NotifAction::Errno(e.raw_os_error().unwrap_or(libc::EBADF)),
    };
    let proto = match sysnet::socket_protocol(fd.as_fd()) {
        Ok(libc::IPPROTO_TCP | libc::IPPROTO_MPTCP) => Protocol::Tcp,
        Ok(libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => Protocol::Udp,
        // Not an IP socket of a remapped protocol: the kernel's answer.
        _ => return NotifAction::Continue,
    };
    let got = if peer {
        sysnet::getpeername(fd.as_fd())
    } else {
        sysnet::getsockname(fd.as_fd())
    };
    let mut addr = match got {
        Ok(a) => a,
        Err(e) => return NotifAction::Errno(e.raw_os_error().unwrap_or(libc::EINVAL)),
    };
    if let Some(a) = sockaddr::local(&addr) {
        if !peer || a.ip().is_loopback() {
            if let Some(v) = hook.0.virtual_of(proto, a.port()) {
                set_port(&mut addr, v);
            }
        }
    }
    let Ok(len) = cx.read_mem(cx.arg(2), 4) else {
        return NotifAction::Errno(libc::EFAULT);
    };
    let room = i32::from_ne_bytes(len.try_into().expect("4 bytes"));
    if room < 0 {
        return NotifAction::Errno(libc::EINVAL);
    }
    let n = addr.len().min(room as usize);
    if cx.write_mem(cx.arg(1), &addr[..n]).is_err()
        || cx
            .write_mem(cx.arg(2), &(addr.len() as u32).to_ne_bytes())
            .is_err()
    {
        return NotifAction::Errno(libc::EFAULT);
    }
    NotifAction::ReturnValue(0)
}
