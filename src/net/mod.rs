//! Network policy: allow and deny lists enforced on the program's behalf.
//!
//! A [`NetPolicy`] is an allow list or a deny list of [`NetRule`]s
//! (protocols × addresses × ports), plus an optional list of TCP ports the
//! program may not `bind`. Given to
//! [`SandboxBuilder::network`](crate::SandboxBuilder::network), it is
//! enforced like this:
//!
//! - `connect`, `sendto` (with an address), `sendmsg` and `sendmmsg` are
//!   trapped (and `bind` and `listen` with a bind list). For every socket
//!   family the supervisor copies the address and payload once, decides on
//!   the copy (for IP by the socket's real protocol, `SO_PROTOCOL`), and
//!   performs the call itself on a `pidfd_getfd` duplicate of the socket:
//!   neither a rewrite of the program's memory nor another socket `dup2`ed
//!   onto the fd changes where data goes. The program gets the kernel's own
//!   answer (`EINPROGRESS`, `ECONNREFUSED`, partial sends, each `sendmmsg`
//!   entry's `msg_len`). A denied destination gets `ECONNREFUSED`; a denied
//!   bind port `EACCES` (also the port a `listen` without `bind` would
//!   pick).
//! - `AF_UNIX` destinations are rules too (`unix:/path`, `unix:/dir/`,
//!   `unix:@abstract`, `unix:*`): under an allow list only those named are
//!   reachable. A unix call is made with the program's credentials (by a
//!   helper thread when they differ from the supervisor's), so permission
//!   checks and `SO_PEERCRED` are the program's; the peer sees the
//!   supervisor's process id (see `onbehalf`).
//! - A call that may block (a blocking connect; a send on a full buffer) runs
//!   on the deferral pool, not on a worker, and is cancelled (its socket
//!   shut down) as soon as the program's process is gone.
//! - IPv4-mapped IPv6 destinations are matched as IPv4; the unspecified
//!   address as the address the kernel would use (the bound one, or loopback).
//! - Sockets: only `AF_INET`, `AF_INET6`, `AF_UNIX` and `AF_NETLINK` with
//!   `NETLINK_ROUTE` can be created (`socketpair`: `AF_UNIX`); other
//!   families get `EAFNOSUPPORT`, raw and packet sockets `EPERM`. Under an
//!   allow list UDP and ICMP sockets can be created only if a rule allows
//!   that protocol, and other IP protocols not at all (`EACCES`).
//! - Source routes (`setsockopt` `IP_OPTIONS`, `IPV6_RTHDR`, and the same as
//!   control messages) are refused with `EPERM`: a packet would visit a
//!   refused host as a hop. `io_uring_setup` is refused (`EPERM`): its
//!   operations are not trapped.
//! - When rules name hosts, reading `/etc/hosts` shows localhost and the
//!   names with the addresses resolved when the sandbox was built.
//!
//! `sendto` without an address (a connected send) is left to the kernel.
//! With no policy, nothing network-related is trapped.
//!
//! Rules are written as `[tcp://|udp://|icmp://]TARGET[:PORTS]` (see
//! [`NetRule::parse`] and [`NetPolicy::from_specs`]).

mod cancel;
mod handlers;
mod hosts;
mod onbehalf;
mod policy;
mod remap;
mod sockaddr;
mod spec;
mod unix;

pub(crate) use handlers::Network;
pub use policy::{
    canonical_ip, canonical_net, Mode, NetPolicy, NetRule, Ports, Protocol, Protocols,
    ResolvedNetPolicy, Target, UnixTarget,
};
pub(crate) use remap::{PortHook, PortRemap};
pub use spec::{NetSpecError, NetSpecErrorKind, RuleKind};
pub(crate) use unix::{UnixPathHook, UnixPaths};
