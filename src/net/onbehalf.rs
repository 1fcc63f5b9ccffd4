//! Network calls decided on a copy and performed on the program's behalf.
//!
//! Under a network policy, `connect`, `sendto` (with an address), `sendmsg`,
//! `sendmmsg`, and with a bind list `bind` and `listen`, are never answered
//! `Continue` once the socket or the program's memory has been looked at:
//! a second thread could `dup2` another socket onto the fd, or rewrite the
//! memory, between the check and the kernel's own call. Instead the
//! supervisor copies the address (and, for sends, the payload and control
//! data) out of the program once, decides on that copy, and performs the
//! call itself on a `pidfd_getfd` duplicate of the program's socket, for
//! every socket family. The program gets the kernel's own result or errno.
//!
//! - IPv4/IPv6: destinations are matched by the socket's real protocol
//!   (`SO_PROTOCOL`); source routes (`IP_OPTIONS`, `IP_RETOPTS`,
//!   `IPV6_RTHDR` control messages) are refused (`EPERM`).
//! - `AF_UNIX`: a pathname is resolved in the program's root and working
//!   directory and reached through `/proc/self/fd/<n>` (see `unix`); a bind
//!   is checked and made by path denial's `paths::bind_unix` (from a thread
//!   with the program's working directory and umask);
//!   `SCM_RIGHTS` descriptors are duplicated from the program first. A call
//!   carries the credentials of the thread that makes it (`SO_PEERCRED`,
//!   `SCM_CREDENTIALS`, the permission checks of the path walk): for a
//!   program whose user, groups or capabilities differ from the
//!   supervisor's, the path walk and the call are made by a short-lived
//!   thread that has taken on the program's (`sys::net::run_as`). The peer
//!   still sees the supervisor's process id. Abstract names are reached only
//!   from the supervisor's network namespace.
//! - Other families (netlink): performed as given.
//!
//! `sendto` without an address is left to the kernel: that decision reads
//! only a register, which nothing can change after the check.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::action::{Errno, NotifAction};
use crate::handler::{HandlerCtx, MemoryError};
use crate::sys::net::{self as sysnet, Creds, OutMsg, ThreadSetup, SOCKADDR_MAX};
use crate::sys::{mem, pidfd};

use super::cancel::Canceller;
use super::policy::{canonical_ip, loopback_of, Mode, Protocol, ResolvedNetPolicy, UnixDest};
use super::remap::{self, PortHook, PortRemap};
use super::sockaddr::{self, Dest, Op};
use super::unix::{self, UnixAddr};

/// Largest datagram payload the kernel accepts (UDP and ICMP refuse more
/// with `EMSGSIZE`).
const DGRAM_MAX: usize = 0xffff;
/// Most stream bytes copied for one send (a stream send may legitimately
/// be partial).
const STREAM_MAX: usize = 1 << 20;
/// Most bytes copied for one datagram of another family (`AF_UNIX`: the
/// kernel's own limit is the send buffer, a few hundred KiB by default).
const OTHER_DGRAM_MAX: usize = 8 << 20;
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
/// Source-route control messages and options (`<linux/in.h>`, `<linux/in6.h>`).
pub(crate) const IP_OPTIONS: i32 = 4;
pub(crate) const IP_RETOPTS: i32 = 7;
pub(crate) const IPV6_2292RTHDR: i32 = 5;
pub(crate) const IPV6_2292PKTOPTIONS: i32 = 6;
pub(crate) const IPV6_RTHDR: i32 = 57;

/// The network side of the supervisor: the policy and what it needs to
/// enforce it.
pub(crate) struct Enforcer {
    pub(crate) policy: Arc<ResolvedNetPolicy>,
    /// The supervisor's effective capabilities: when not empty, calls made
    /// on the program's behalf must not lend it privileges it lacks.
    own_caps: u64,
    /// The supervisor's `Uid`, `Gid` and `Groups` lines of
    /// `/proc/self/status`: an `AF_UNIX` call made for the program carries
    /// these credentials.
    own_ids: Option<String>,
    /// The supervisor's network namespace (abstract unix names live there).
    own_netns: Option<(u64, u64)>,
    /// `net.ipv4.ip_unprivileged_port_start`.
    unprivileged_port_start: u16,
    /// Blocking calls in flight, cancelled when their program is gone.
    canceller: Option<Arc<Canceller>>,
    /// Under a chroot: `AF_UNIX` pathnames are refused (`EACCES`) unless
    /// the view resolves them (a [`unix::UnixPathHook`] service): the
    /// program's kernel root is not the view's.
    pub(crate) refuse_unix_paths: bool,
    /// Path denial's set, when paths are denied: an `AF_UNIX` pathname
    /// beneath a denied path is refused (`EACCES`), as its open would be.
    pub(crate) denied: Option<Arc<crate::paths::DeniedPaths>>,
    /// The set a pathname `AF_UNIX` `bind` is checked against (see
    /// `paths::bind_unix`): path denial's, with the write allow list and a
    /// copy-on-write view's lower tree, whenever there is one.
    pub(crate) bind_denied: Option<Arc<crate::paths::DeniedPaths>>,
}

/// The socket's family, as far as the policy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Ip,
    Unix,
    Other,
}

/// The program's socket, duplicated.
struct Sock {
    fd: OwnedFd,
    domain: i32,
    family: Family,
    /// TCP/UDP/ICMP, or `None` for another IP protocol or another family.
    proto: Option<Protocol>,
    /// The raw `SO_PROTOCOL` (IP sockets only; 0 otherwise).
    raw_proto: i32,
    /// `SOCK_STREAM` (bytes, partial sends are normal).
    stream: bool,
    /// Neither `SOCK_DGRAM` nor `SOCK_RAW`: its connect may block.
    connection: bool,
    /// Whether the file description has `O_NONBLOCK`.
    nonblocking: bool,
    /// For an `AF_UNIX` socket of a program whose credentials differ from
    /// the supervisor's: them, taken on by a helper thread for each call.
    creds: Option<Arc<Creds>>,
}

/// Runs `f` with the program's credentials when they differ.
fn as_program<T: Send>(
    creds: &Option<Arc<Creds>>,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    match creds {
        None => f(),
        Some(c) => sysnet::run_as(
            &ThreadSetup {
                creds: Some(c),
                fs: None,
            },
            f,
        ),
    }
}

/// A message copied out of the program, with what must stay alive until
/// it is sent (the resolved unix destination, duplicated `SCM_RIGHTS` fds).
struct Msg {
    name: Option<Vec<u8>>,
    data: Vec<u8>,
    control: Vec<u8>,
    keep: Vec<OwnedFd>,
    /// Stream payload past what was copied (address, length in the
    /// program): a blocking stream send copies and sends it in turn.
    more: Vec<(u64, u64)>,
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

/// A step of an on-behalf call: its value, or the errno the call fails with.
type Answer<T> = Result<T, Errno>;

fn errno(e: i32) -> Errno {
    Errno::or_eperm(e)
}

fn io_errno(e: &io::Error) -> i32 {
    crate::action::Errno::from_io(e).get()
}

fn to_action(r: io::Result<usize>) -> NotifAction {
    match r {
        Ok(n) => NotifAction::ReturnValue(n as i64),
        Err(e) => NotifAction::Errno(io_errno(&e)),
    }
}

fn unit_action(r: io::Result<()>) -> NotifAction {
    match r {
        Ok(()) => NotifAction::ReturnValue(0),
        Err(e) => NotifAction::Errno(io_errno(&e)),
    }
}

/// The errno for memory that could not be copied: `EFAULT` as the kernel
/// gives for a bad pointer (or anything, when the call is gone anyway).
fn mem_errno(e: MemoryError) -> Errno {
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

/// The `field:` line of `/proc/<pid>/status` (`self` for the supervisor).
fn status_field(status: &str, field: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
}

fn read_status(pid: &str) -> Option<String> {
    crate::sys::procfs::read_rendered_text(&format!("/proc/{pid}/status")).ok()
}

/// `CapEff` of `/proc/<pid>/status` (`self` for the supervisor).
fn effective_caps(pid: &str) -> Option<u64> {
    let status = read_status(pid)?;
    u64::from_str_radix(&status_field(&status, "CapEff:")?, 16).ok()
}

/// The credentials an `AF_UNIX` peer sees: user, group and groups lines.
fn ids(status: &str) -> Option<String> {
    Some(format!(
        "{}|{}|{}",
        status_field(status, "Uid:")?,
        status_field(status, "Gid:")?,
        status_field(status, "Groups:").unwrap_or_default()
    ))
}

impl Enforcer {
    pub(crate) fn new(policy: Arc<ResolvedNetPolicy>) -> Enforcer {
        let own = read_status("self");
        let own_caps = own
            .as_deref()
            .and_then(|s| status_field(s, "CapEff:"))
            .and_then(|h| u64::from_str_radix(&h, 16).ok())
            .unwrap_or(u64::MAX);
        let unprivileged_port_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1024);
        Enforcer {
            policy,
            own_caps,
            own_ids: own.as_deref().and_then(ids),
            own_netns: unix::net_ns("self"),
            unprivileged_port_start,
            canceller: Canceller::new().map(Arc::new),
            refuse_unix_paths: false,
            denied: None,
            bind_denied: None,
        }
    }

    /// Refuses (`EACCES`) a socket file, or the directory a socket is bound
    /// in under `name`, that path denial denies.
    fn unix_file_allowed(
        &self,
        cx: &HandlerCtx<'_>,
        fd: BorrowedFd<'_>,
        name: Option<&[u8]>,
    ) -> Answer<()> {
        let Some(d) = &self.denied else {
            return Ok(());
        };
        // The name first: a connect or send has none, and then needs no
        // readlink of the directory.
        let named = || {
            let name = std::ffi::OsStr::from_bytes(name?);
            Some(crate::paths::path_of_fd(fd)?.join(name))
        };
        let path = if d.check_fd(fd) {
            d.last_hit()
        } else {
            match named().filter(|p| d.name_denied(p)) {
                Some(p) => Some(p),
                None => return Ok(()),
            }
        };
        log::debug!("network: a unix socket path beneath a denied path refused");
        cx.note_rule(true, || d.rule_for(path.as_deref()));
        cx.report(|| crate::events::Event::PathDenied {
            pid: cx.pid(),
            syscall: cx.notification().syscall_name().unwrap_or("unknown"),
            path: path.clone(),
        });
        Err(errno(libc::EACCES))
    }

    /// Refuses an `AF_UNIX` pathname under a chroot (`EACCES`).
    fn unix_path_allowed(&self, p: &[u8]) -> Answer<()> {
        if self.refuse_unix_paths {
            log::debug!(
                "network: unix path {} refused under a chroot",
                crate::shown::bytes(p)
            );
            return Err(errno(libc::EACCES));
        }
        Ok(())
    }

    /// Whether the rules can say anything about this protocol: if not (an
    /// unknown IP protocol under a deny list), no destination is checked.
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

    /// An `AF_UNIX` call made by the supervisor carries the credentials of
    /// the thread that makes it (`SO_PEERCRED`, `SCM_CREDENTIALS`, file
    /// permission checks). `None` when the program's are the supervisor's;
    /// else the program's, for a helper thread to take on (`sys::net::run_as`).
    fn program_creds(&self, cx: &HandlerCtx<'_>) -> Answer<Option<Arc<Creds>>> {
        let status = read_status(&cx.pid().to_string()).ok_or(errno(libc::EIO))?;
        let caps =
            |f: &str| status_field(&status, f).and_then(|h| u64::from_str_radix(&h, 16).ok());
        if ids(&status).is_some()
            && ids(&status) == self.own_ids
            && caps("CapEff:") == Some(self.own_caps)
        {
            return Ok(None);
        }
        let nums = |f: &str| -> Vec<u32> {
            status_field(&status, f)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        };
        let (u, g) = (nums("Uid:"), nums("Gid:"));
        let (Some(eff), Some(prm), Some(inh)) = (caps("CapEff:"), caps("CapPrm:"), caps("CapInh:"))
        else {
            return Err(errno(libc::EIO));
        };
        if u.len() < 3 || g.len() < 3 {
            return Err(errno(libc::EIO));
        }
        Ok(Some(Arc::new(Creds {
            uids: [u[0], u[1], u[2]],
            gids: [g[0], g[1], g[2]],
            groups: nums("Groups:"),
            caps: [eff, prm, inh],
        })))
    }

    /// The socket of argument 0, with the program's credentials when they
    /// matter (an `AF_UNIX` socket) and differ from the supervisor's.
    fn open_sock_creds(&self, cx: &HandlerCtx<'_>) -> Answer<Sock> {
        let mut sock = Self::open_sock(cx, cx.arg(0))?;
        if sock.family == Family::Unix {
            sock.creds = self.program_creds(cx)?;
        }
        Ok(sock)
    }

    /// Duplicates the program's fd and classifies it.
    fn open_sock(cx: &HandlerCtx<'_>, fd_arg: u64) -> Answer<Sock> {
        let fd = fd_arg as u32 as i32;
        let dup = cx.dup_fd(fd).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => errno(libc::EIO),
            _ => errno(io_errno(&e)),
        })?;
        let domain = sysnet::socket_domain(dup.as_fd()).map_err(|e| errno(io_errno(&e)))?;
        let family = match domain {
            libc::AF_INET | libc::AF_INET6 => Family::Ip,
            libc::AF_UNIX => Family::Unix,
            _ => Family::Other,
        };
        let raw_proto = if family == Family::Ip {
            sysnet::socket_protocol(dup.as_fd()).map_err(|e| errno(io_errno(&e)))?
        } else {
            0
        };
        let proto = match (family, raw_proto) {
            (Family::Ip, libc::IPPROTO_TCP | libc::IPPROTO_MPTCP) => Some(Protocol::Tcp),
            (Family::Ip, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => Some(Protocol::Udp),
            (Family::Ip, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) => Some(Protocol::Icmp),
            _ => None,
        };
        let ty = sysnet::socket_type(dup.as_fd()).map_err(|e| errno(io_errno(&e)))?;
        let flags = sysnet::status_flags(dup.as_fd()).map_err(|e| errno(io_errno(&e)))?;
        Ok(Sock {
            fd: dup,
            domain,
            family,
            proto,
            raw_proto,
            stream: ty == libc::SOCK_STREAM,
            connection: ty != libc::SOCK_DGRAM && ty != libc::SOCK_RAW,
            nonblocking: flags & libc::O_NONBLOCK != 0,
            creds: None,
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
            Dest::None => Self::policy_gate(cx),
            Dest::Ip(mut dest) => {
                if dest.ip().is_unspecified() {
                    let ip = self.unspecified_target(sock, dest.ip());
                    sockaddr::set_ip(addr, ip);
                    dest.set_ip(ip);
                }
                let allowed = self.allowed(sock.proto, dest);
                if let Some(p) = sock.proto {
                    cx.note_rule(!allowed, || {
                        self.policy.deciding_rule(p, dest.ip(), dest.port())
                    });
                }
                if allowed {
                    match cx.check_policy(Some(dest)) {
                        Some(e) => Err(errno(e)),
                        None => Ok(()),
                    }
                } else {
                    log::debug!("network: {:?} to {dest} denied", sock.proto);
                    cx.report(|| crate::events::Event::DestinationRefused {
                        pid: cx.pid(),
                        syscall: cx.notification().syscall_name().unwrap_or("unknown"),
                        destination: crate::events::destination(dest),
                    });
                    Err(errno(libc::ECONNREFUSED))
                }
            }
        }
    }

    /// Checks the address of a connect or send on `sock`, whatever its
    /// family, and returns the bytes to give the kernel (an `AF_UNIX`
    /// pathname becomes `/proc/self/fd/<n>` of the file it resolved to, kept
    /// open in `keep`).
    fn check_any_dest(
        &self,
        cx: &HandlerCtx<'_>,
        sock: &Sock,
        mut addr: Vec<u8>,
        op: Op,
        flags: i32,
        keep: &mut Vec<OwnedFd>,
    ) -> Answer<Vec<u8>> {
        // The audit record names this copy, not a read made later.
        cx.note_destination(&addr);
        match sock.family {
            Family::Ip => {
                // TCP uses a send's address only to open a connection (fast
                // open); otherwise the kernel ignores it.
                let ignored = op == Op::Send
                    && sock.proto == Some(Protocol::Tcp)
                    && flags & libc::MSG_FASTOPEN == 0;
                if self.covers(sock.proto) && !ignored {
                    self.check_dest(cx, sock, &mut addr, op)?;
                } else {
                    Self::policy_gate(cx)?;
                }
                // Port remap: decided on the virtual port, sent to the real.
                if let Some(hook) = cx.service::<PortHook>() {
                    if let Dest::Ip(d) = sockaddr::parse(&addr, sock.domain, op) {
                        remap::translate_dest(&*hook.0, sock.proto, d, &mut addr);
                    }
                }
                Ok(addr)
            }
            Family::Unix => {
                let dest = match unix::parse(&addr).map_err(errno)? {
                    UnixAddr::Unspec | UnixAddr::Unnamed => None,
                    UnixAddr::Abstract(name) => {
                        self.same_netns(cx)?;
                        Some((UnixDest::Abstract(name), None))
                    }
                    UnixAddr::Path(p) => {
                        let r = if let Some(hook) = cx.service::<unix::UnixPathHook>() {
                            let fd = hook.0.socket(cx, &p).map_err(errno)?;
                            unix::Resolved::of(fd).map_err(|e| errno(io_errno(&e)))?
                        } else {
                            self.unix_path_allowed(&p)?;
                            let view = unix::view(cx.pid(), &p).map_err(|e| errno(io_errno(&e)))?;
                            as_program(&sock.creds, || unix::resolve(&view))
                                .map_err(|e| errno(io_errno(&e)))?
                        };
                        self.unix_file_allowed(cx, r.fd.as_fd(), None)?;
                        Some((UnixDest::Path(r.real.clone()), Some(r)))
                    }
                };
                if let Some((dest, resolved)) = dest {
                    if !self.policy.allows_unix(&dest) {
                        log::debug!("network: unix destination {dest:?} denied");
                        cx.note_rule(true, || match self.policy.policy().mode() {
                            Mode::Deny => "net-deny unix rules".to_owned(),
                            _ => "net-allow list: no unix rule matches".to_owned(),
                        });
                        cx.report(|| crate::events::Event::DestinationRefused {
                            pid: cx.pid(),
                            syscall: cx.notification().syscall_name().unwrap_or("unknown"),
                            destination: match &dest {
                                UnixDest::Path(p) => format!("unix:{}", crate::shown::path(p)),
                                UnixDest::Abstract(n) => {
                                    format!("unix:@{}", crate::shown::bytes(n))
                                }
                            },
                        });
                        return Err(errno(libc::ECONNREFUSED));
                    }
                    if let Some(r) = resolved {
                        addr = r.proc_addr();
                        keep.push(r.fd);
                    }
                }
                Self::policy_gate(cx)?;
                Ok(addr)
            }
            Family::Other => {
                Self::policy_gate(cx)?;
                Ok(addr)
            }
        }
    }

    /// Abstract unix names belong to a network namespace: the supervisor
    /// reaches the program's only if it shares it.
    fn same_netns(&self, cx: &HandlerCtx<'_>) -> Answer<()> {
        let theirs = unix::net_ns(&cx.pid().to_string());
        if theirs.is_some() && theirs == self.own_netns {
            Ok(())
        } else {
            Err(errno(libc::EACCES))
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

    /// Runs `call` on `fd` now, or, if `blocking`, on the deferral pool,
    /// registered so that it is cancelled (its socket shut down) if the
    /// program's process goes away meanwhile.
    fn run_maybe_blocking<F>(
        &self,
        cx: &HandlerCtx<'_>,
        sock: Sock,
        blocking: bool,
        call: F,
    ) -> NotifAction
    where
        F: FnOnce(BorrowedFd<'_>) -> NotifAction + Send + 'static,
    {
        let Sock { fd, creds, .. } = sock;
        // With the program's credentials, the whole call runs in a helper
        // thread that has taken them on.
        let call = move |fd: BorrowedFd<'_>| match &creds {
            None => call(fd),
            Some(c) => {
                let setup = ThreadSetup {
                    creds: Some(c),
                    fs: None,
                };
                sysnet::run_as(&setup, || Ok(call(fd))).unwrap_or_else(|e| {
                    log::debug!("network: cannot take on the program's credentials: {e}");
                    errno(libc::EACCES).into()
                })
            }
        };
        if !blocking {
            return call(fd.as_fd());
        }
        let process = open_process(cx.pid() as i32);
        let watch = fd.try_clone().ok();
        let canceller = self.canceller.clone();
        NotifAction::defer(move || {
            let _reg = match (canceller, process, watch) {
                (Some(c), Some(p), Some(w)) => c.register(p, w),
                _ => None,
            };
            call(fd.as_fd())
        })
    }

    /// `connect(fd, addr, len)`.
    pub(crate) fn connect(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.connect_inner(cx).unwrap_or_else(NotifAction::from)
    }

    fn connect_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let sock = self.open_sock_creds(cx)?;
        let addr = Self::read_addr(cx, cx.arg(1), i64::from(cx.arg(2) as u32 as i32))?;
        let mut keep = Vec::new();
        let addr = self.check_any_dest(cx, &sock, addr, Op::Connect, 0, &mut keep)?;
        let blocking = !sock.nonblocking && sock.connection;
        Ok(self.run_maybe_blocking(cx, sock, blocking, move |fd| {
            let _keep = keep;
            unit_action(sysnet::connect(fd, &addr))
        }))
    }

    /// `bind(fd, addr, len)` under a bind deny list (the ports apply to TCP).
    pub(crate) fn bind(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.bind_inner(cx).unwrap_or_else(NotifAction::from)
    }

    fn bind_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let sock = self.open_sock_creds(cx)?;
        let addr = Self::read_addr(cx, cx.arg(1), i64::from(cx.arg(2) as u32 as i32))?;
        cx.note_destination(&addr);
        match sock.family {
            Family::Ip if matches!(sock.proto, Some(Protocol::Tcp | Protocol::Udp)) => {
                let tcp = sock.proto == Some(Protocol::Tcp);
                let dest = sockaddr::parse(&addr, sock.domain, Op::Bind);
                match dest {
                    Dest::Invalid(e) if tcp => return Err(errno(e)),
                    Dest::Ip(a) if tcp => self.check_bind_port(cx, a.port())?,
                    _ => {}
                }
                // Port remap: a free real port behind the virtual one.
                if let (Some(hook), Dest::Ip(a), Some(proto)) =
                    (cx.service::<PortHook>(), dest, sock.proto)
                {
                    if a.port() != 0 {
                        Self::policy_gate(cx)?;
                        return Ok(Self::bind_remapped(&sock, addr, proto, a.port(), &*hook.0));
                    }
                }
            }
            Family::Ip | Family::Other => {}
            Family::Unix => match unix::parse(&addr).map_err(errno)? {
                UnixAddr::Path(p) => {
                    let hook = cx.service::<unix::UnixPathHook>();
                    if hook.is_none() {
                        self.unix_path_allowed(&p)?;
                    }
                    let tid = cx.pid();
                    let umask = read_status(&tid.to_string())
                        .and_then(|s| status_field(&s, "Umask:"))
                        .and_then(|u| u32::from_str_radix(&u, 8).ok())
                        .ok_or(errno(libc::EIO))?;
                    // The directory the name goes in, pinned: a view of a
                    // feature's (a chroot's, a work directory's) resolves
                    // it; else it is resolved in the program's root. With
                    // the supervisor's root and mount namespace, the path
                    // as given may be bound from the program's working
                    // directory (see `paths::bind_unix`).
                    let (dir, name, cwd) = match hook {
                        Some(hook) => {
                            let (dir, name) = hook.0.parent(cx, &p).map_err(errno)?;
                            (dir, name, None)
                        }
                        None => {
                            let view = unix::view(tid, &p).map_err(|e| errno(io_errno(&e)))?;
                            let (dir, name) =
                                as_program(&sock.creds, || unix::resolve_parent(&view))
                                    .map_err(|e| errno(io_errno(&e)))?;
                            let cwd = match unix::same_view(tid) {
                                true => Some(unix::cwd(tid).map_err(|e| errno(io_errno(&e)))?),
                                false => None,
                            };
                            (dir.fd, name, cwd)
                        }
                    };
                    let bind = crate::paths::UnixBind {
                        sock: sock.fd.as_fd(),
                        dir,
                        name,
                        as_given: cwd.as_ref().map(|c| (c.as_fd(), &addr[..])),
                        creds: sock.creds.as_deref(),
                        umask,
                    };
                    let d = self.bind_denied.as_deref();
                    let hits = d.map(|d| d.hit_mark());
                    let r = crate::paths::bind_unix(cx, d, bind);
                    if let (Some(d), Some(hits), Err(e)) = (d, hits, &r) {
                        if e.get() == libc::EACCES {
                            crate::paths::report_denied(cx, d, hits);
                        }
                    }
                    return r.map(|()| NotifAction::ReturnValue(0));
                }
                UnixAddr::Abstract(_) | UnixAddr::Unnamed => self.same_netns(cx)?,
                UnixAddr::Unspec => {}
            },
        }
        Self::policy_gate(cx)?;
        let fd = sock.fd.as_fd();
        Ok(unit_action(as_program(&sock.creds, || {
            sysnet::bind(fd, &addr)
        })))
    }

    /// Binds `sock` to the real port behind virtual port `virt`: the one
    /// recorded for it (`EADDRINUSE` if that is taken), or a free one,
    /// then recorded.
    fn bind_remapped(
        sock: &Sock,
        mut addr: Vec<u8>,
        proto: Protocol,
        virt: u16,
        hook: &dyn PortRemap,
    ) -> NotifAction {
        let fd = sock.fd.as_fd();
        if let Some(real) = hook.real(proto, virt) {
            remap::set_port(&mut addr, real);
            return unit_action(sysnet::bind(fd, &addr));
        }
        remap::set_port(&mut addr, 0);
        if let Err(e) = sysnet::bind(fd, &addr) {
            return errno(io_errno(&e)).into();
        }
        let Some(real) = sysnet::getsockname(fd)
            .ok()
            .and_then(|b| sockaddr::local(&b))
            .map(|a| a.port())
        else {
            return errno(libc::EIO).into();
        };
        if !hook.record(proto, virt, real) {
            // Another thread bound the virtual port meanwhile.
            return errno(libc::EADDRINUSE).into();
        }
        log::debug!("port remap: {proto:?} port {virt} is real port {real}");
        NotifAction::ReturnValue(0)
    }

    /// Refuses a TCP port of the bind list (`EACCES`), and a privileged
    /// port the program could not bind itself.
    fn check_bind_port(&self, cx: &HandlerCtx<'_>, port: u16) -> Answer<()> {
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
        Ok(())
    }

    /// `listen(fd, backlog)` under a bind deny list: a TCP socket that is
    /// not bound yet is bound here to a free port of its family (what the
    /// kernel's autobind would do), and refused with `EACCES` if that port
    /// is on the list. The listen itself is made on the duplicate.
    pub(crate) fn listen(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.listen_inner(cx).unwrap_or_else(NotifAction::from)
    }

    fn listen_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let sock = self.open_sock_creds(cx)?;
        let backlog = cx.arg(1) as u32 as i32;
        if sock.family == Family::Ip && sock.proto == Some(Protocol::Tcp) {
            let local = |fd: BorrowedFd<'_>| {
                sysnet::getsockname(fd)
                    .ok()
                    .and_then(|b| sockaddr::local(&b))
                    .ok_or(errno(libc::EINVAL))
            };
            let bound = local(sock.fd.as_fd())?;
            if bound.port() == 0 {
                let any: IpAddr = if sock.domain == libc::AF_INET6 {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                };
                Self::policy_gate(cx)?;
                sysnet::bind(
                    sock.fd.as_fd(),
                    &sysnet::encode_sockaddr(SocketAddr::new(any, 0)),
                )
                .map_err(|e| errno(io_errno(&e)))?;
                let port = local(sock.fd.as_fd())?.port();
                if !self.policy.bind_allowed(port) {
                    log::debug!("network: listen autobound port {port}, which is denied");
                    return Err(errno(libc::EACCES));
                }
            }
        }
        Self::policy_gate(cx)?;
        // A unix listener records the credentials of whoever listens.
        let fd = sock.fd.as_fd();
        Ok(unit_action(as_program(&sock.creds, || {
            sysnet::listen(fd, backlog)
        })))
    }

    /// The most payload copied for one message on `sock`; `Err(EMSGSIZE)`
    /// past a datagram limit.
    fn payload_limit(sock: &Sock, len: u64) -> Answer<usize> {
        if sock.stream {
            return Ok((len as usize).min(STREAM_MAX));
        }
        let cap = if sock.family == Family::Ip {
            DGRAM_MAX
        } else {
            OTHER_DGRAM_MAX
        };
        if len > cap as u64 {
            return Err(errno(libc::EMSGSIZE));
        }
        Ok(len as usize)
    }

    /// `sendto(fd, buf, len, flags, addr, addrlen)`.
    pub(crate) fn sendto(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.sendto_inner(cx).unwrap_or_else(NotifAction::from)
    }

    fn sendto_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        if cx.arg(4) == 0 {
            // Connected send: the destination is the socket's, not memory's;
            // this reads a register only, which a second thread cannot change.
            return Ok(NotifAction::Continue);
        }
        let flags = cx.arg(3) as u32 as i32;
        let sock = self.open_sock_creds(cx)?;
        let addr = Self::read_addr(cx, cx.arg(4), i64::from(cx.arg(5) as u32 as i32))?;
        let mut keep = Vec::new();
        let addr = self.check_any_dest(cx, &sock, addr, Op::Send, flags, &mut keep)?;
        let len = Self::payload_limit(&sock, cx.arg(2))?;
        let data = if len == 0 {
            Vec::new()
        } else {
            cx.read_mem(cx.arg(1), len).map_err(mem_errno)?
        };
        let more = if sock.stream && cx.arg(2) as usize > len {
            vec![(cx.arg(1) + len as u64, cx.arg(2) - len as u64)]
        } else {
            Vec::new()
        };
        let msg = Msg {
            name: Some(addr),
            data,
            control: Vec::new(),
            keep,
            more,
        };
        Ok(self.perform_send(cx, sock, flags, msg))
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
        let limit = Self::payload_limit(sock, total)?.min(budget.max(1));
        let mut data = Vec::with_capacity(limit);
        let mut more = Vec::new();
        for (base, len) in parts {
            let room = limit - data.len();
            let take = (len as usize).min(room);
            if take < len as usize && sock.stream {
                more.push((base + take as u64, len - take as u64));
            }
            if take == 0 {
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
            keep: Vec::new(),
            more,
        })
    }

    /// Checks one copied message: its destination, and its control data
    /// (source routes refused; privileged messages refused for a program
    /// that lacks the privilege; `SCM_RIGHTS` descriptors duplicated from
    /// the program).
    fn check_msg(&self, cx: &HandlerCtx<'_>, sock: &Sock, m: &mut Msg, flags: i32) -> Answer<()> {
        if let Some(name) = m.name.take() {
            m.name = Some(self.check_any_dest(cx, sock, name, Op::Send, flags, &mut m.keep)?);
        }
        if control_has_source_route(&m.control) {
            log::debug!("network: a source route in a control message refused");
            return Err(errno(libc::EPERM));
        }
        if sock.family != Family::Ip {
            // Descriptor numbers mean the program's table, not the
            // supervisor's (netlink also reads them, then drops them).
            let fds = translate_rights(cx, &mut m.control)?;
            m.keep.extend(fds);
        }
        if sock.family != Family::Unix {
            self.check_control(cx, &m.control)?;
        }
        Ok(())
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
        self.sendmsg_inner(cx).unwrap_or_else(NotifAction::from)
    }

    fn sendmsg_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let flags = cx.arg(2) as u32 as i32;
        let sock = self.open_sock_creds(cx)?;
        let hdr = cx.read_mem(cx.arg(1), MSGHDR_LEN).map_err(mem_errno)?;
        let mut msg = self.read_msg(cx, &sock, &hdr, usize::MAX)?;
        self.check_msg(cx, &sock, &mut msg, flags)?;
        // A send without a destination (connected socket) asks here.
        Self::policy_gate(cx)?;
        Ok(self.perform_send(cx, sock, flags, msg))
    }

    /// `sendmmsg(fd, msgvec, vlen, flags)`.
    pub(crate) fn sendmmsg(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        self.sendmmsg_inner(cx).unwrap_or_else(NotifAction::from)
    }

    fn sendmmsg_inner(&self, cx: &HandlerCtx<'_>) -> Answer<NotifAction> {
        let flags = cx.arg(3) as u32 as i32;
        let sock = self.open_sock_creds(cx)?;
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
        let mut stop: Option<Errno> = None;
        let mut used = 0usize;
        for entry in headers.chunks_exact(MMSGHDR_LEN) {
            if used >= SENDMMSG_BUDGET {
                break;
            }
            let hdr = &entry[..MSGHDR_LEN];
            let res = self
                .read_msg(cx, &sock, hdr, SENDMMSG_BUDGET - used)
                .and_then(|mut m| {
                    self.check_msg(cx, &sock, &mut m, flags)?;
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
        let first = if sock.creds.is_some() {
            // Every call goes through the helper thread, below.
            Ok(Vec::new())
        } else if blocking && self.can_try_nonblocking(&sock, flags) {
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
            Err(e) => return Ok(errno(io_errno(&e)).into()),
        };
        if sock.creds.is_none() && (!blocking || sent.len() == msgs.len()) {
            return Ok(write_lens_now(cx, vec_ptr, &sent));
        }
        // The rest may block: finish it on the deferral pool. The lengths are
        // written back with a liveness check on the program's process.
        let proc_fd = open_process(pid);
        Ok(self.run_maybe_blocking(cx, sock, blocking, move |fd| {
            let rest = &msgs[sent.len()..];
            let more = sysnet::sendmmsg(fd, &outs(rest), flags | libc::MSG_NOSIGNAL);
            let mut lens = sent;
            match more {
                Ok(l) => lens.extend(l),
                Err(e) if lens.is_empty() => return errno(io_errno(&e)).into(),
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

    /// Whether a blocking send may first be tried with `MSG_DONTWAIT`
    /// without changing its meaning: not a fast open (it would answer
    /// `EINPROGRESS`), not while a corked UDP datagram is being built (a
    /// failed non-blocking append would drop it). A stream send that goes
    /// out in part is finished blocking.
    fn can_try_nonblocking(&self, sock: &Sock, flags: i32) -> bool {
        if flags & libc::MSG_FASTOPEN != 0 {
            return false;
        }
        if sock.stream {
            return true;
        }
        if flags & libc::MSG_MORE != 0 {
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
    /// A stream send that went out in part is finished there.
    fn perform_send(&self, cx: &HandlerCtx<'_>, sock: Sock, flags: i32, msg: Msg) -> NotifAction {
        let flags = flags | libc::MSG_NOSIGNAL;
        let blocking = !sock.nonblocking && flags & libc::MSG_DONTWAIT == 0;
        if !blocking && sock.creds.is_none() {
            return to_action(sysnet::sendmsg(sock.fd.as_fd(), &msg.out(), flags));
        }
        let mut done = 0usize;
        if sock.creds.is_none() && self.can_try_nonblocking(&sock, flags) {
            match sysnet::sendmsg(sock.fd.as_fd(), &msg.out(), flags | libc::MSG_DONTWAIT) {
                Err(e) if would_block(&e) => {}
                Ok(n) if sock.stream && n > 0 && (n < msg.data.len() || !msg.more.is_empty()) => {
                    done = n
                }
                other => return to_action(other),
            }
        }
        let pid = cx.pid() as i32;
        let process = open_process(pid);
        self.run_maybe_blocking(cx, sock, blocking, move |fd| {
            if done == 0 {
                match sysnet::sendmsg(fd, &msg.out(), flags) {
                    Ok(n) => done = n,
                    Err(e) => return errno(io_errno(&e)).into(),
                }
                if !has_more(&msg) || !blocking {
                    return NotifAction::ReturnValue(done as i64);
                }
            }
            // A blocking stream send sends everything: the rest of the
            // copy, then what was not copied, read from the program while
            // it waits (bytes only: the name and control data went first).
            let _ = send_all(fd, &msg.data[done.min(msg.data.len())..], flags, &mut done);
            if done >= msg.data.len() {
                for &(base, len) in &msg.more {
                    let alive = process
                        .as_ref()
                        .is_some_and(|p| matches!(sysnet::poll_readable(p.as_fd(), 0), Ok(false)));
                    if !alive || !stream_from_memory(fd, pid, base, len, flags, &mut done) {
                        break;
                    }
                }
            }
            NotifAction::ReturnValue(done as i64)
        })
    }
}

/// Whether stream bytes are left that were not copied yet.
fn has_more(msg: &Msg) -> bool {
    !msg.more.is_empty()
}

/// Sends all of `data` (blocking), adding what went out to `done`; false
/// at the first error or short progress.
fn send_all(fd: BorrowedFd<'_>, mut data: &[u8], flags: i32, done: &mut usize) -> bool {
    while !data.is_empty() {
        let part = OutMsg {
            name: None,
            data,
            control: &[],
        };
        match sysnet::sendmsg(fd, &part, flags) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                *done += n;
                data = &data[n..];
            }
        }
    }
    true
}

/// Copies `len` bytes at `base` of process `pid` in chunks and sends them.
fn stream_from_memory(
    fd: BorrowedFd<'_>,
    pid: i32,
    base: u64,
    len: u64,
    flags: i32,
    done: &mut usize,
) -> bool {
    let mut off = 0u64;
    let mut buf = vec![0u8; STREAM_MAX];
    while off < len {
        let want = ((len - off) as usize).min(STREAM_MAX);
        let got = match mem::read(pid, base + off, &mut buf[..want]) {
            Ok(n) if n > 0 => n,
            _ => return false,
        };
        if !send_all(fd, &buf[..got], flags, done) {
            return false;
        }
        off += got as u64;
    }
    true
}

/// Whether control data carries a source route (`IP_OPTIONS`/`IP_RETOPTS`,
/// an IPv6 routing header): a packet could reach a refused host as a hop.
fn control_has_source_route(control: &[u8]) -> bool {
    cmsgs(control).any(|(level, kind, _)| {
        matches!(
            (level, kind),
            (libc::IPPROTO_IP, IP_OPTIONS | IP_RETOPTS)
                | (
                    libc::IPPROTO_IPV6,
                    IPV6_RTHDR | IPV6_2292RTHDR | IPV6_2292PKTOPTIONS
                )
        )
    })
}

/// The control messages of `c`: level, type and the data's byte range.
fn cmsgs(c: &[u8]) -> impl Iterator<Item = (i32, i32, std::ops::Range<usize>)> + '_ {
    const HDR: usize = 16;
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off + HDR > c.len() {
            return None;
        }
        let len = u64_at(c, off) as usize;
        if len < HDR || len > c.len() - off {
            return None;
        }
        let item = (
            u32_at(c, off + 8) as i32,
            u32_at(c, off + 12) as i32,
            off + HDR..off + len,
        );
        off += (len + 7) & !7;
        Some(item)
    })
}

/// Replaces the program's descriptor numbers in `SCM_RIGHTS` messages by
/// duplicates in the supervisor (sent in their place), and refuses
/// `SCM_CREDENTIALS` that claim another process than the program.
fn translate_rights(cx: &HandlerCtx<'_>, control: &mut [u8]) -> Answer<Vec<OwnedFd>> {
    let mut keep = Vec::new();
    let list: Vec<_> = cmsgs(control).collect();
    for (level, kind, range) in list {
        if level != libc::SOL_SOCKET {
            continue;
        }
        if kind == libc::SCM_RIGHTS {
            let mut at = range.start;
            while at + 4 <= range.end {
                let fd = u32_at(control, at) as i32;
                let dup = cx.dup_fd(fd).map_err(|_| errno(libc::EBADF))?;
                control[at..at + 4].copy_from_slice(&dup.as_raw_fd().to_ne_bytes());
                keep.push(dup);
                at += 4;
            }
        } else if kind == libc::SCM_CREDENTIALS && range.len() >= 4 {
            let pid = u32_at(control, range.start) as i32;
            let tgid = crate::sys::procfs::thread_group_of(cx.pid() as i32);
            if Some(pid) != tgid {
                return Err(errno(libc::EPERM));
            }
        }
    }
    Ok(keep)
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
    pidfd::pidfd_open(tid, 0).ok().or_else(|| {
        crate::sys::procfs::thread_group_of(tid).and_then(|p| pidfd::pidfd_open(p, 0).ok())
    })
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
