//! Network policy: allow and deny lists enforced on the program's behalf.
//!
//! A [`NetPolicy`] is an allow list or a deny list of [`NetRule`]s
//! (protocols × addresses × ports), plus an optional list of TCP ports the
//! program may not `bind`. Given to
//! [`SandboxBuilder::network`](crate::SandboxBuilder::network), it is
//! enforced like this:
//!
//! - `connect`, `sendto`, `sendmsg` and `sendmmsg` are trapped (and `bind`
//!   with a bind list). On an IPv4/IPv6 socket the supervisor copies the
//!   address and payload once, decides on the copy by the socket's real
//!   protocol (`SO_PROTOCOL`), and performs the call itself on a
//!   `pidfd_getfd` duplicate of the socket, so no later rewrite of the
//!   program's memory changes where data goes. The program gets the
//!   kernel's own answer (`EINPROGRESS`, `ECONNREFUSED`, partial sends, each
//!   `sendmmsg` entry's `msg_len`). A denied destination gets
//!   `ECONNREFUSED`; a denied bind port `EACCES`.
//! - A call that may block (a blocking connect; a send on a full buffer) runs
//!   on the deferral pool, not on a worker.
//! - IPv4-mapped IPv6 destinations are matched as IPv4; the unspecified
//!   address as the address the kernel would use (the bound one, or loopback).
//! - Raw and packet sockets are refused (`EPERM`) in the seccomp filter;
//!   under an allow list UDP and ICMP sockets can be created only if a rule
//!   allows that protocol, and other IP protocols not at all (`EACCES`).
//!   `io_uring_setup` is refused (`EPERM`): its operations are not trapped.
//! - When rules name hosts, reading `/etc/hosts` shows localhost and the
//!   names with the addresses resolved when the sandbox was built.
//!
//! Non-IP sockets (`AF_UNIX`, ...) and connected sends are left alone. With
//! no policy, nothing network-related is trapped.
//!
//! Rules are written as `[tcp://|udp://|icmp://]TARGET[:PORTS]` (see
//! [`NetRule::parse`] and [`NetPolicy::from_specs`]).

mod handlers;
mod hosts;
mod onbehalf;
mod policy;
mod sockaddr;
mod spec;

pub(crate) use handlers::Enforcement;
pub use policy::{
    canonical_ip, canonical_net, Mode, NetPolicy, NetRule, Ports, Protocol, Protocols,
    ResolvedNetPolicy, Target,
};
pub use spec::{NetSpecError, NetSpecErrorKind, RuleKind};
