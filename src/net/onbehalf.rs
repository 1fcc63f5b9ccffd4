//! Network calls decided on a copy and performed on the program's behalf.
//!
//! For `connect`, `sendto`, `sendmsg`, `sendmmsg` and `bind` on an IPv4 or
//! IPv6 socket, the supervisor copies the address (and, for sends, the
//! payload and control data) out of the program once, decides on that copy,
//! and performs the call itself on a `pidfd_getfd` duplicate of the
//! program's socket. The program's memory is never read again, so a thread
//! rewriting it after the check changes nothing. The program gets the
//! kernel's own result or errno.
//!
//! Calls that carry no destination the kernel would use are left to the
//! kernel (`Continue`): sockets that are not IPv4/IPv6, `sendto` without an
//! address, sends on TCP without `MSG_FASTOPEN` (TCP ignores the address),
//! and protocols no rule can match under a deny list.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::action::NotifAction;
use crate::handler::{HandlerCtx, MemoryError};
use crate::sys::net::{self as sysnet, OutMsg, SOCKADDR_MAX};
use crate::sys::{mem, pidfd};

use super::policy::{canonical_ip, loopback_of, Mode, Protocol, ResolvedNetPolicy};
use super::sockaddr::{self, Dest, Op};

/// Largest datagram payload the kernel accepts (UDP and ICMP refuse more
/// with `EMSGSIZE`).
const DGRAM_MAX: usize = 0xffff;
/// Most stream bytes copied for one `MSG_FASTOPEN` send (a stream send may
/// legitimately be partial).
const STREAM_MAX: usize = 1 << 20;
/// Most payload copied for one `sendmmsg`; later entries are left unsent
/// and the call returns how many were sent, as the kernel may.
const SENDMMSG_BUDGET: usize = 4 << 20;
/// `UIO_MAXIOV`.
const IOV_MAX: usize = 1024;
/// Most control data copied (the kernel's `optmem_max` is smaller).
const CONTROL_MAX: usize = 1 << 16;
/// `sizeof(struct msghdr)` and `sizeof(struct mmsghdr)` on 64-bit Linux.
const MSGHDR_LEN: usize = 56;
const MMSGHDR_LEN: usize = 64;
const _: () = assert!(std::mem::size_of::<libc::msghdr>() == MSGHDR_LEN);
const _: () = assert!(std::mem::size_of::<libc::mmsghdr>() == MMSGHDR_LEN);

const SOL_UDP: i32 = 17;
const UDP_CORK: i32 = 1;
const CAP_NET_BIND_SERVICE: u32 = 10;

/// The network side of the supervisor: the policy and what it needs to
/// enforce it.
pub(crate) struct Enforcer {
    pub(crate) policy: Arc<ResolvedNetPolicy>,
    /// The supervisor's effective capabilities: when not empty, calls made
    /// on the program's behalf must not lend it privileges it lacks.
    own_caps: u64,
    /// `net.ipv4.ip_unprivileged_port_start`.
    unprivileged_port_start: u16,
}

/// The program's socket, duplicated.
struct Sock {
    fd: OwnedFd,
    domain: i32,
    /// TCP/UDP/ICMP, or `None` for another IP protocol.
    proto: Option<Protocol>,
    /// Whether the file description has `O_NONBLOCK`.
    nonblocking: bool,
    /// The raw `SO_PROTOCOL`.
    raw_proto: i32,
}

/// A message copied out of the program.
struct Msg {
    name: Option<Vec<u8>>,
    data: Vec<u8>,
    control: Vec<u8>,
}

impl Msg {
    fn out(&self) -> OutMsg<'_> {
        OutMsg {
            name: self.name.as_deref(),
            data: &self.data,
            control: &self.control,
        }
    }
}

type Answer<T> = Result<T, NotifAction>;

fn errno(e: i32) -> NotifAction {
    NotifAction::Errno(e)
}

fn io_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn to_action(r: io::Result<usize>) -> NotifAction {
    match r {
        Ok(n) => NotifAction::ReturnValue(n as i64),
        Err(e) => NotifAction::Errno(io_errno(&e)),
    }
}

/// The errno for memory that could not be copied: `EFAULT` as the kernel
/// gives for a bad pointer (or anything, when the call is gone anyway).
fn mem_errno(e: MemoryError) -> NotifAction {
    match e {
        MemoryError::Fault(_) => errno(libc::EFAULT),
        other => errno(other.errno()),
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

/// `CapEff` of `/proc/<pid>/status` (`self` for the supervisor).
fn effective_caps(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

impl Enforcer {
    pub(crate) fn new(policy: Arc<ResolvedNetPolicy>) -> Enforcer {
        let own_caps = effective_caps("self").unwrap_or(u64::MAX);
        let unprivileged_port_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1024);
        Enforcer {
            policy,
            own_caps,
            unprivileged_port_start,
        }
    }

    /// Whether the rules can say anything about this protocol: if not (an
    /// unknown protocol under a deny list), the call is left to the kernel.
    fn covers(&self, proto: Option<Protocol>) -> bool {
        proto.is_some() || self.policy.policy().mode() == Mode::Allow
    }

    fn allowed(&self, proto: Option<Protocol>, dest: SocketAddr) -> bool {
        match proto {
            Some(p) => self.policy.allows_addr(p, dest),
            None => self.policy.policy().mode() != Mode::Allow,
        }
    }

    /// Whether the program lacks capabilities the supervisor has (so a call
    /// made for it must be checked for privileged parts).
    fn program_less_privileged(&self, cx: &HandlerCtx<'_>) -> bool {
        if self.own_caps == 0 {
            return false;
        }
        let theirs = effective_caps(&cx.pid().to_string()).unwrap_or(0);
        theirs & self.own_caps != self.own_caps
    }

    fn program_has_cap(cx: &HandlerCtx<'_>, cap: u32) -> bool {
        effective_caps(&cx.pid().to_string()).is_some_and(|c| c & (1 << cap) != 0)
    }

    /// Duplicates the program's fd and classifies it. `Err(Continue)` for a
    /// socket that is not IPv4/IPv6.
    fn open_sock(cx: &HandlerCtx<'_>, fd_arg: u64) -> Answer<Sock> {
        let fd = fd_arg as u32 as i32;
        let dup = cx.dup_fd(fd).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => errno(libc::EIO),
            _ => errno(io_errno(&e)),
        })?;
        let domain = sysnet::socket_domain(dup.as_fd()).map_err(|e| errno(io_errno(&e)))?;
        if domain != libc::AF_INET && domain != libc::AF_INET6 {
            return Err(NotifAction::Continue);
        }
        let raw_proto = sysnet::socket_protocol(dup.as_fd()).map_err(|e| errno(io_errno(&e)))?;
        let proto = match raw_proto {
            libc::IPPROTO_TCP | libc::IPPROTO_MPTCP => Some(Protocol::Tcp),
            libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE => Some(Protocol::Udp),
            libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6 => Some(Protocol::Icmp),
            _ => None,
        };
        let flags = sysnet::status_flags(dup.as_fd()).map_err(|e| errno(io_errno(&e)))?;
        Ok(Sock {
            fd: dup,
            domain,
            proto,
            nonblocking: flags & libc::O_NONBLOCK != 0,
            raw_proto,
        })
    }

    /// Copies a `sockaddr` of `len` bytes (the kernel's checks first).
    fn read_addr(cx: &HandlerCtx<'_>, ptr: u64, len: i64) -> Answer<Vec<u8>> {
        if len < 0 || len as usize > SOCKADDR_MAX {
            return Err(errno(libc::EINVAL));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        if ptr == 0 {
            return Err(errno(libc::EFAULT));
        }
        cx.read_mem(ptr, len as usize).map_err(mem_errno)
    }

    /// Checks a destination address: `Ok` to go ahead (the bytes may have
    /// been rewritten: an unspecified address becomes the one the kernel
    /// would use, so the call goes where it was checked to go).
    /// Checks the destination against the policy, then asks the sandbox's
    /// policy callback (if any) before the call is made on the program's
    /// behalf.
    fn check_dest(&self, cx: &HandlerCtx<'_>, sock: &Sock, addr: &mut [u8], op: Op) -> Answer<()> {
        match sockaddr::parse(addr, sock.domain, op) {
            Dest::Invalid(e) => Err(errno(e)),
            Dest::None => match cx.check_policy(None) {
                Some(e) => Err(errno(e)),
                None => Ok(()),
            },
            Dest::Ip(mut dest) => {
                if dest.ip().is_unspecified() {
                    let ip = self.unspecified_target(sock, dest.ip());
                    sockaddr::set_ip(addr, ip);
                    dest.set_ip(ip);
                }
                if self.allowed(sock.proto, dest) {
                    match cx.check_policy(Some(dest)) {
                        Some(e) => Err(errno(e)),
                        None => Ok(()),
                    }
                } else {
                    log::debug!("network: {:?} to {dest} denied", sock.proto);
                    Err(errno(libc::ECONNREFUSED))
                }
            }
        }
    }

    /// Asks the sandbox's policy callback (if any, and not asked yet for
    /// this call) before a side effect made on the program's behalf.
    fn policy_gate(cx: &HandlerCtx<'_>) -> Answer<()> {
        match cx.check_policy(None) {
            Some(e) => Err(errno(e)),
            None => Ok(()),
        }
    }

    /// Where the kernel sends a packet addressed to "any": the socket's own
    /// bound address if it has one of that family, else loopback.
    fn unspecified_target(&self, sock: &Sock, ip: IpAddr) -> IpAddr {
        let bound = sysnet::getsockname(sock.fd.as_fd())
            .ok()
            .and_then(|b| sockaddr::local(&b))
            .map(|a| canonical_ip(a.ip()));
        match bound {
            Some(b) if !b.is_unspecified() && b.is_ipv4() == ip.is_ipv4() => b,
            _ => loopback_of(ip),
        }
    }

    /// `connect(fd, addr, len)`.
    pub(crate) fn connect(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.connect_inner(cx).unwrap_or_else(|a| a)
    }

    fn connect_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let sock = Self::open_sock(cx, cx.arg(0))?;
        if !self.covers(sock.proto) {
            return Ok(NotifAction::Continue);
        }
        let mut addr = Self::read_addr(cx, cx.arg(1), i64::from(cx.arg(2) as u32 as i32))?;
        self.check_dest(cx, &sock, &mut addr, Op::Connect)?;
        let Sock {
            fd, nonblocking, ..
        } = sock;
        let run = move || match sysnet::connect(fd.as_fd(), &addr) {
            Ok(()) => NotifAction::ReturnValue(0),
            Err(e) => NotifAction::Errno(io_errno(&e)),
        };
        Ok(if nonblocking {
            run()
        } else {
            NotifAction::defer(run)
        })
    }

    /// `bind(fd, addr, len)` under a bind deny list (TCP only).
    pub(crate) fn bind(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.bind_inner(cx).unwrap_or_else(|a| a)
    }

    fn bind_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let sock = Self::open_sock(cx, cx.arg(0))?;
        if sock.proto != Some(Protocol::Tcp) {
            return Ok(NotifAction::Continue);
        }
        let addr = Self::read_addr(cx, cx.arg(1), i64::from(cx.arg(2) as u32 as i32))?;
        match sockaddr::parse(&addr, sock.domain, Op::Bind) {
            Dest::Invalid(e) => return Err(errno(e)),
            Dest::None => {}
            Dest::Ip(a) => {
                let port = a.port();
                if !self.policy.bind_allowed(port) {
                    log::debug!("network: bind to port {port} denied");
                    return Err(errno(libc::EACCES));
                }
                if port != 0
                    && port < self.unprivileged_port_start
                    && self.own_caps != 0
                    && !Self::program_has_cap(cx, CAP_NET_BIND_SERVICE)
                {
                    return Err(errno(libc::EACCES));
                }
            }
        }
        Self::policy_gate(cx)?;
        Ok(match sysnet::bind(sock.fd.as_fd(), &addr) {
            Ok(()) => NotifAction::ReturnValue(0),
            Err(e) => NotifAction::Errno(io_errno(&e)),
        })
    }

    /// Whether a send of this kind must be decided here (else `Continue`).
    fn send_needs_check(&self, sock: &Sock, flags: i32) -> bool {
        if !self.covers(sock.proto) {
            return false;
        }
        // TCP uses a send's address only to open a connection (fast open).
        !(sock.proto == Some(Protocol::Tcp) && flags & libc::MSG_FASTOPEN == 0)
    }

    fn payload_cap(sock: &Sock) -> Option<usize> {
        if sock.proto == Some(Protocol::Tcp) {
            None
        } else {
            Some(DGRAM_MAX)
        }
    }

    /// `sendto(fd, buf, len, flags, addr, addrlen)`.
    pub(crate) fn sendto(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.sendto_inner(cx).unwrap_or_else(|a| a)
    }

    fn sendto_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        if cx.arg(4) == 0 {
            // Connected send: the destination is the socket's, not memory's.
            return Ok(NotifAction::Continue);
        }
        let flags = cx.arg(3) as u32 as i32;
        let sock = Self::open_sock(cx, cx.arg(0))?;
        if !self.send_needs_check(&sock, flags) {
            return Ok(NotifAction::Continue);
        }
        let mut addr = Self::read_addr(cx, cx.arg(4), i64::from(cx.arg(5) as u32 as i32))?;
        self.check_dest(cx, &sock, &mut addr, Op::Send)?;
        let len = cx.arg(2) as usize;
        let len = match Self::payload_cap(&sock) {
            Some(cap) if len > cap => return Err(errno(libc::EMSGSIZE)),
            Some(_) => len,
            None => len.min(STREAM_MAX),
        };
        let data = if len == 0 {
            Vec::new()
        } else {
            cx.read_mem(cx.arg(1), len).map_err(mem_errno)?
        };
        let msg = Msg {
            name: Some(addr),
            data,
            control: Vec::new(),
        };
        Ok(self.perform_send(sock, flags, move |fd, fl| {
            sysnet::sendto(fd, &msg.data, fl, msg.name.as_deref())
        }))
    }

    /// Copies one `msghdr` (56 bytes already read) and what it points at.
    fn read_msg(&self, cx: &HandlerCtx<'_>, sock: &Sock, hdr: &[u8], budget: usize) -> Answer<Msg> {
        let name_ptr = u64_at(hdr, 0);
        let name_len = u32_at(hdr, 8) as i32;
        let name = if name_ptr == 0 || name_len == 0 {
            None
        } else if name_len < 0 {
            return Err(errno(libc::EINVAL));
        } else {
            let len = (name_len as usize).min(SOCKADDR_MAX);
            Some(cx.read_mem(name_ptr, len).map_err(mem_errno)?)
        };
        let iov_ptr = u64_at(hdr, 16);
        let iov_len = u64_at(hdr, 24);
        if iov_len > IOV_MAX as u64 {
            return Err(errno(libc::EMSGSIZE));
        }
        let iov_len = iov_len as usize;
        let iovs = if iov_len == 0 {
            Vec::new()
        } else {
            cx.read_mem(iov_ptr, iov_len * 16).map_err(mem_errno)?
        };
        let mut total: u64 = 0;
        let mut parts = Vec::with_capacity(iov_len);
        for i in 0..iov_len {
            let base = u64_at(&iovs, i * 16);
            let len = u64_at(&iovs, i * 16 + 8);
            if len > isize::MAX as u64 {
                return Err(errno(libc::EINVAL));
            }
            total = total.saturating_add(len);
            parts.push((base, len));
        }
        let cap = Self::payload_cap(sock);
        if let Some(c) = cap {
            if total > c as u64 {
                return Err(errno(libc::EMSGSIZE));
            }
        }
        let limit = cap.unwrap_or(STREAM_MAX).min(budget.max(1));
        let mut data = Vec::with_capacity((total as usize).min(limit));
        for (base, len) in parts {
            let room = limit - data.len();
            let take = (len as usize).min(room);
            if take == 0 {
                if data.len() >= limit {
                    break;
                }
                continue;
            }
            let chunk = cx.read_mem(base, take).map_err(mem_errno)?;
            data.extend_from_slice(&chunk);
        }
        let ctl_ptr = u64_at(hdr, 32);
        let ctl_len = u64_at(hdr, 40);
        let control = if ctl_len == 0 {
            Vec::new()
        } else if ctl_len > CONTROL_MAX as u64 {
            return Err(errno(libc::ENOBUFS));
        } else {
            cx.read_mem(ctl_ptr, ctl_len as usize).map_err(mem_errno)?
        };
        Ok(Msg {
            name,
            data,
            control,
        })
    }

    /// Refuses control messages that would need privileges the program
    /// lacks but the supervisor has (only when that is the case).
    fn check_control(&self, cx: &HandlerCtx<'_>, control: &[u8]) -> Answer<()> {
        if control.is_empty() || self.own_caps == 0 || !self.program_less_privileged(cx) {
            return Ok(());
        }
        if control_is_unprivileged(control) {
            Ok(())
        } else {
            Err(errno(libc::EPERM))
        }
    }

    /// `sendmsg(fd, msg, flags)`.
    pub(crate) fn sendmsg(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.sendmsg_inner(cx).unwrap_or_else(|a| a)
    }

    fn sendmsg_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let flags = cx.arg(2) as u32 as i32;
        let sock = Self::open_sock(cx, cx.arg(0))?;
        if !self.send_needs_check(&sock, flags) {
            return Ok(NotifAction::Continue);
        }
        let hdr = cx.read_mem(cx.arg(1), MSGHDR_LEN).map_err(mem_errno)?;
        let mut msg = self.read_msg(cx, &sock, &hdr, usize::MAX)?;
        if let Some(name) = msg.name.as_mut() {
            self.check_dest(cx, &sock, name, Op::Send)?;
        }
        self.check_control(cx, &msg.control)?;
        // A send without a destination (connected socket) asks here.
        Self::policy_gate(cx)?;
        Ok(self.perform_send(sock, flags, move |fd, fl| {
            sysnet::sendmsg(fd, &msg.out(), fl)
        }))
    }

    /// `sendmmsg(fd, msgvec, vlen, flags)`.
    pub(crate) fn sendmmsg(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.sendmmsg_inner(cx).unwrap_or_else(|a| a)
    }

    fn sendmmsg_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let flags = cx.arg(3) as u32 as i32;
        let sock = Self::open_sock(cx, cx.arg(0))?;
        if !self.send_needs_check(&sock, flags) {
            return Ok(NotifAction::Continue);
        }
        let vec_ptr = cx.arg(1);
        let vlen = (cx.arg(2) as u32 as usize).min(IOV_MAX);
        if vlen == 0 {
            return Ok(NotifAction::ReturnValue(0));
        }
        // The headers, as far as they are readable (the kernel also stops
        // at the first entry it cannot read).
        let headers = match cx.read_mem(vec_ptr, vlen * MMSGHDR_LEN) {
            Ok(h) => h,
            Err(MemoryError::Fault(_)) => {
                let mut h = Vec::new();
                for i in 0..vlen {
                    match cx.read_mem(vec_ptr + (i * MMSGHDR_LEN) as u64, MMSGHDR_LEN) {
                        Ok(e) => h.extend_from_slice(&e),
                        Err(_) => break,
                    }
                }
                if h.is_empty() {
                    return Err(errno(libc::EFAULT));
                }
                h
            }
            Err(e) => return Err(mem_errno(e)),
        };
        let mut msgs = Vec::new();
        let mut stop: Option<NotifAction> = None;
        let mut used = 0usize;
        for entry in headers.chunks_exact(MMSGHDR_LEN) {
            if used >= SENDMMSG_BUDGET {
                break;
            }
            let hdr = &entry[..MSGHDR_LEN];
            let res = self
                .read_msg(cx, &sock, hdr, SENDMMSG_BUDGET - used)
                .and_then(|mut m| {
                    if let Some(name) = m.name.as_mut() {
                        self.check_dest(cx, &sock, name, Op::Send)?;
                    }
                    self.check_control(cx, &m.control)?;
                    Ok(m)
                });
            match res {
                Ok(m) => {
                    used += m.data.len().max(1);
                    msgs.push(m);
                }
                Err(a) => {
                    stop = Some(a);
                    break;
                }
            }
        }
        if msgs.is_empty() {
            return Err(stop.unwrap_or(errno(libc::EFAULT)));
        }
        // Messages without a destination (connected socket) ask here.
        Self::policy_gate(cx)?;
        let pid = cx.pid() as i32;
        let blocking = !sock.nonblocking && flags & libc::MSG_DONTWAIT == 0;
        let fd = sock.fd.as_fd();
        let first = if blocking && self.can_try_nonblocking(&sock, flags) {
            sysnet::sendmmsg(
                fd,
                &outs(&msgs),
                (flags | libc::MSG_DONTWAIT) | libc::MSG_NOSIGNAL,
            )
        } else if blocking {
            Ok(Vec::new())
        } else {
            sysnet::sendmmsg(fd, &outs(&msgs), flags | libc::MSG_NOSIGNAL)
        };
        let sent = match first {
            Ok(lens) => lens,
            Err(e) if blocking && would_block(&e) => Vec::new(),
            Err(e) => return Ok(errno(io_errno(&e))),
        };
        if !blocking || sent.len() == msgs.len() {
            return Ok(write_lens_now(cx, vec_ptr, &sent));
        }
        // The rest may block: finish it on the deferral pool. The lengths are
        // written back with a liveness check on the program's process.
        let proc_fd = open_process(pid);
        let Sock { fd, .. } = sock;
        Ok(NotifAction::defer(move || {
            let rest = &msgs[sent.len()..];
            let more = sysnet::sendmmsg(fd.as_fd(), &outs(rest), flags | libc::MSG_NOSIGNAL);
            let mut lens = sent;
            match more {
                Ok(l) => lens.extend(l),
                Err(e) if lens.is_empty() => return errno(io_errno(&e)),
                Err(_) => {}
            }
            let alive = proc_fd
                .as_ref()
                .is_some_and(|p| matches!(sysnet::poll_readable(p.as_fd(), 0), Ok(false)));
            if alive {
                for (i, l) in lens.iter().enumerate() {
                    let _ = mem::write(
                        pid,
                        vec_ptr + (i * MMSGHDR_LEN + MSGHDR_LEN) as u64,
                        &l.to_ne_bytes(),
                    );
                }
            }
            NotifAction::ReturnValue(lens.len() as i64)
        }))
    }

    /// Whether a blocking datagram send may first be tried with
    /// `MSG_DONTWAIT` without changing its meaning (not for streams, not
    /// while a corked UDP datagram is being built: a failed non-blocking
    /// append would drop it).
    fn can_try_nonblocking(&self, sock: &Sock, flags: i32) -> bool {
        if sock.proto == Some(Protocol::Tcp) || flags & libc::MSG_MORE != 0 {
            return false;
        }
        if sock.raw_proto == libc::IPPROTO_UDP || sock.raw_proto == libc::IPPROTO_UDPLITE {
            return matches!(
                sysnet::getsockopt_int(sock.fd.as_fd(), SOL_UDP, UDP_CORK),
                Ok(0)
            );
        }
        true
    }

    /// Runs a send: now if it cannot block (or does not, tried with
    /// `MSG_DONTWAIT`), else on the deferral pool with the program's flags.
    fn perform_send<F>(&self, sock: Sock, flags: i32, send: F) -> NotifAction
    where
        F: Fn(BorrowedFd<'_>, i32) -> io::Result<usize> + Send + 'static,
    {
        let flags = flags | libc::MSG_NOSIGNAL;
        let blocking = !sock.nonblocking && flags & libc::MSG_DONTWAIT == 0;
        if !blocking {
            return to_action(send(sock.fd.as_fd(), flags));
        }
        if self.can_try_nonblocking(&sock, flags) {
            match send(sock.fd.as_fd(), flags | libc::MSG_DONTWAIT) {
                Err(e) if would_block(&e) => {}
                other => return to_action(other),
            }
        }
        let fd = sock.fd;
        NotifAction::defer(move || to_action(send(fd.as_fd(), flags)))
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN))
}

fn outs(msgs: &[Msg]) -> Vec<OutMsg<'_>> {
    msgs.iter().map(Msg::out).collect()
}

/// Writes each sent entry's `msg_len` and answers the count.
fn write_lens_now(cx: &HandlerCtx<'_>, vec_ptr: u64, lens: &[u32]) -> NotifAction {
    for (i, l) in lens.iter().enumerate() {
        if let Err(e) = cx.write_mem(
            vec_ptr + (i * MMSGHDR_LEN + MSGHDR_LEN) as u64,
            &l.to_ne_bytes(),
        ) {
            log::debug!("sendmmsg: cannot write msg_len back: {e}");
        }
    }
    NotifAction::ReturnValue(lens.len() as i64)
}

/// A pidfd for the process of thread `tid`, to see later whether it is
/// still the same process.
fn open_process(tid: i32) -> Option<OwnedFd> {
    pidfd::pidfd_open(tid, 0)
        .ok()
        .or_else(|| crate::handler::thread_group_of(tid).and_then(|p| pidfd::pidfd_open(p, 0).ok()))
}

/// Whether every control message is one an unprivileged program may send.
fn control_is_unprivileged(mut c: &[u8]) -> bool {
    const HDR: usize = 16;
    while c.len() >= HDR {
        let len = u64_at(c, 0) as usize;
        let level = u32_at(c, 8) as i32;
        let kind = u32_at(c, 12) as i32;
        if len < HDR {
            // Malformed: the kernel refuses it (EINVAL).
            return true;
        }
        let ok = matches!(
            (level, kind),
            (libc::IPPROTO_IP, libc::IP_TOS | libc::IP_TTL | libc::IP_PKTINFO)
                | (
                    libc::IPPROTO_IPV6,
                    libc::IPV6_PKTINFO | libc::IPV6_HOPLIMIT | libc::IPV6_TCLASS | libc::IPV6_DONTFRAG
                )
                | (SOL_UDP, 103) // UDP_SEGMENT
                | (libc::SOL_SOCKET, libc::SO_TIMESTAMPING | libc::SCM_TXTIME)
        );
        if !ok {
            return false;
        }
        let next = (len + 7) & !7;
        if next >= c.len() {
            break;
        }
        c = &c[next..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + payload.len()) as u64).to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn control_whitelist() {
        let mut c = cmsg(libc::IPPROTO_IP, libc::IP_TTL, &[64, 0, 0, 0]);
        assert!(control_is_unprivileged(&c));
        c.extend(cmsg(libc::SOL_SOCKET, libc::SO_MARK, &[1, 0, 0, 0]));
        assert!(!control_is_unprivileged(&c));
    }
}
