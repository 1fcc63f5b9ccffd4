//! Wiring the policy into a sandbox: the builtin handlers and the `socket`
//! argument filter.

use std::sync::Arc;

use crate::arch::Arch;
use crate::error::Result;
use crate::filter::{ArgCheck, FilterBuilder, SyscallAction};
use crate::handler::{Handler, HandlerCtx};
use crate::supervisor::enforcement::{Enforcement, Install};
use crate::syscalls;

use super::hosts::HostsFile;
use super::onbehalf::Enforcer;
use super::policy::{Mode, NetPolicy, Protocol, ResolvedNetPolicy};

const M32: u64 = 0xffff_ffff;
/// `SOCK_TYPE_MASK`: the type without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`.
const TYPE_MASK: u64 = 0xf;

/// What a [`NetPolicy`] adds to a sandbox: a feature of its plan.
pub(crate) struct Network {
    policy: Arc<ResolvedNetPolicy>,
    handlers: Vec<(u32, Arc<dyn Handler>)>,
    /// The socket-family and `setsockopt` rules apply (they keep raw
    /// sockets and source routes from going round destination rules); off
    /// when the network is there only for unix socket paths.
    family_rules: bool,
    /// `sendto` without an address (a connected send, which names no
    /// socket file) runs untrapped: set with [`Self::unix_paths_only`]
    /// when no handler or trace of the user's is on `sendto`.
    connected_sends_untrapped: bool,
}

fn nr(name: &str) -> Option<u32> {
    syscalls::number(Arch::native(), name)
}

impl Enforcement for Network {
    fn rules(&self, filter: &mut FilterBuilder) -> Result<()> {
        self.install(filter)
    }

    fn builtins(&self, install: &mut Install<'_>) -> Result<()> {
        for (nr, h) in &self.handlers {
            install.handler(*nr, Arc::clone(h))?;
        }
        Ok(())
    }
}

impl Network {
    /// Resolves the policy's host names and prepares its handlers. With
    /// `remap` (a feature gives a `PortHook`), `bind` is made on the
    /// program's behalf and `getsockname`/`getpeername` translated.
    ///
    /// With `chroot` (a chroot view is set up), `AF_UNIX` pathnames given to
    /// `bind`, `connect` and the sends are resolved by the view (its
    /// `UnixPathHook`), refused with `EACCES` without one: the kernel would
    /// resolve them in the host's root. `bind` is then made on the
    /// program's behalf too.
    ///
    /// With `denied` (paths are denied), an `AF_UNIX` pathname beneath a
    /// denied path is refused (`EACCES`) by `connect`, the sends and `bind`:
    /// the calls are trapped even without network rules. `bind_denied`:
    /// the set a pathname `bind` is checked against (path denial's, also
    /// when it holds only allow lists or a copy-on-write view's lower tree).
    pub(crate) fn new(
        policy: &NetPolicy,
        remap: bool,
        chroot: bool,
        denied: Option<Arc<crate::paths::DeniedPaths>>,
        bind_denied: Option<Arc<crate::paths::DeniedPaths>>,
    ) -> Result<Network> {
        let resolved = Arc::new(policy.resolve()?);
        let mut enforcer = Enforcer::new(Arc::clone(&resolved));
        enforcer.refuse_unix_paths = chroot;
        enforcer.denied = denied.clone();
        enforcer.bind_denied = bind_denied;
        let enforcer = Arc::new(enforcer);
        let mut handlers: Vec<(u32, Arc<dyn Handler>)> = Vec::new();
        let mut add = |name: &str, h: Arc<dyn Handler>| {
            if let Some(n) = nr(name) {
                handlers.push((n, h));
            }
        };
        if policy.mode() != Mode::Unrestricted || chroot || denied.is_some() {
            let e = Arc::clone(&enforcer);
            add(
                "connect",
                Arc::new(move |cx: &HandlerCtx<'_>| e.connect(cx)),
            );
            let e = Arc::clone(&enforcer);
            add("sendto", Arc::new(move |cx: &HandlerCtx<'_>| e.sendto(cx)));
            let e = Arc::clone(&enforcer);
            add(
                "sendmsg",
                Arc::new(move |cx: &HandlerCtx<'_>| e.sendmsg(cx)),
            );
            let e = Arc::clone(&enforcer);
            add(
                "sendmmsg",
                Arc::new(move |cx: &HandlerCtx<'_>| e.sendmmsg(cx)),
            );
        }
        if remap {
            add(
                "getsockname",
                Arc::new(|cx: &HandlerCtx<'_>| super::remap::sockname(cx, false)),
            );
            add(
                "getpeername",
                Arc::new(|cx: &HandlerCtx<'_>| super::remap::sockname(cx, true)),
            );
        }
        if policy.deny_bind().is_some() || remap || chroot {
            let e = Arc::clone(&enforcer);
            add("bind", Arc::new(move |cx: &HandlerCtx<'_>| e.bind(cx)));
        }
        if policy.deny_bind().is_some() {
            let e = Arc::clone(&enforcer);
            add("listen", Arc::new(move |cx: &HandlerCtx<'_>| e.listen(cx)));
        }
        if policy.has_hostnames() {
            let hosts = Arc::new(HostsFile::new(resolved.hosts_file()));
            let h = Arc::clone(&hosts);
            add(
                "openat",
                Arc::new(move |cx: &HandlerCtx<'_>| {
                    h.open(
                        cx,
                        cx.arg(0) as u32 as i32,
                        cx.arg(1),
                        cx.arg(2) as u32 as i32,
                    )
                }),
            );
            let h = Arc::clone(&hosts);
            add(
                "open",
                Arc::new(move |cx: &HandlerCtx<'_>| {
                    h.open(cx, libc::AT_FDCWD, cx.arg(0), cx.arg(1) as u32 as i32)
                }),
            );
        }
        Ok(Network {
            policy: resolved,
            handlers,
            family_rules: true,
            connected_sends_untrapped: false,
        })
    }

    /// The network is there only for the unix socket paths of path denial
    /// (no destination rule of the user's): no socket family or socket
    /// option is refused, as without it (`io_uring` stays refused: its
    /// calls would go round the trapped ones).
    ///
    /// With `connected_sends` (no handler or trace of the user's on
    /// `sendto`), a `sendto` whose address argument is null runs
    /// untrapped: its handler would answer `CONTINUE` anyway (the
    /// destination is the socket's peer, fixed at `connect`, which was
    /// checked), and the filter reads the very register the kernel uses.
    pub(crate) fn unix_paths_only(mut self, connected_sends: bool) -> Network {
        self.family_rules = false;
        self.connected_sends_untrapped = connected_sends;
        self
    }

    /// Adds the filter rules, all decided on register arguments only:
    /// - `socket`: only `AF_INET`, `AF_INET6`, `AF_UNIX` and `AF_NETLINK`
    ///   with `NETLINK_ROUTE`; other families (`AF_VSOCK`, `AF_XDP`, other
    ///   netlink families, ...) get `EAFNOSUPPORT`, raw and packet sockets
    ///   `EPERM`; under an allow list, UDP and ICMP sockets only if a rule
    ///   allows the protocol, other IP protocols `EACCES`;
    /// - `socketpair`: `AF_UNIX` only (others `EAFNOSUPPORT`);
    /// - `setsockopt` of a source route (`IP_OPTIONS`, `IPV6_RTHDR`,
    ///   `IPV6_2292RTHDR`, `IPV6_2292PKTOPTIONS`): `EPERM`;
    /// - `io_uring_setup`: `EPERM` (its operations would bypass the trapped
    ///   calls).
    pub(crate) fn install(&self, filter: &mut FilterBuilder) -> Result<()> {
        if !self.family_rules {
            filter.refuse_undecided(crate::filter::IO_URING, libc::EPERM)?;
            if let Some(nr) = syscalls::number(filter.arch(), "sendto") {
                if self.connected_sends_untrapped
                    && filter.is_denied(nr).is_none()
                    && !filter.is_notified(nr)
                {
                    let no_address = vec![ArgCheck::equals(4, 0)];
                    filter.rule(
                        nr,
                        vec![(no_address, SyscallAction::Allow)],
                        SyscallAction::Notify,
                    )?;
                }
            }
            return Ok(());
        }
        let arch = filter.arch();
        let eafnosupport = SyscallAction::Errno(libc::EAFNOSUPPORT as u16);
        if let Some(socket) = syscalls::number(arch, "socket") {
            if filter.is_denied(socket).is_none() {
                let (cases, otherwise) = self.socket_cases();
                filter.rule(socket, cases, otherwise)?;
            }
        }
        if let Some(pair) = syscalls::number(arch, "socketpair") {
            if filter.is_denied(pair).is_none() {
                let cases = vec![(
                    vec![ArgCheck::new(0, M32, libc::AF_UNIX as u64)],
                    SyscallAction::Allow,
                )];
                filter.rule(pair, cases, eafnosupport)?;
            }
        }
        if let Some(sso) = syscalls::number(arch, "setsockopt") {
            if filter.is_denied(sso).is_none() {
                let eperm = SyscallAction::Errno(libc::EPERM as u16);
                let opt = |level: i32, name: i32| {
                    (
                        vec![
                            ArgCheck::new(1, M32, level as u64),
                            ArgCheck::new(2, M32, name as u64),
                        ],
                        eperm,
                    )
                };
                let cases = vec![
                    opt(libc::IPPROTO_IP, super::onbehalf::IP_OPTIONS),
                    opt(libc::IPPROTO_IPV6, super::onbehalf::IPV6_RTHDR),
                    opt(libc::IPPROTO_IPV6, super::onbehalf::IPV6_2292RTHDR),
                    opt(libc::IPPROTO_IPV6, super::onbehalf::IPV6_2292PKTOPTIONS),
                ];
                filter.rule(sso, cases, SyscallAction::Allow)?;
            }
        }
        filter.refuse_undecided(crate::filter::IO_URING, libc::EPERM)?;
        Ok(())
    }

    fn socket_cases(&self) -> (Vec<(Vec<ArgCheck>, SyscallAction)>, SyscallAction) {
        let eperm = SyscallAction::Errno(libc::EPERM as u16);
        let eacces = SyscallAction::Errno(libc::EACCES as u16);
        let dom = |d: i32| ArgCheck::new(0, M32, d as u64);
        let ty = |t: i32| ArgCheck::new(1, TYPE_MASK, t as u64);
        let proto = |p: i32| ArgCheck::new(2, M32, p as u64);
        let allow_list = self.policy.policy().mode() == Mode::Allow;
        let verdict = |ok: bool| if ok { SyscallAction::Allow } else { eacces };
        let udp = verdict(self.policy.allows_protocol(Protocol::Udp));
        let icmp = verdict(self.policy.allows_protocol(Protocol::Icmp));
        let mut cases = vec![
            (vec![dom(libc::AF_PACKET)], eperm),
            (vec![dom(libc::AF_UNIX)], SyscallAction::Allow),
            (
                vec![dom(libc::AF_NETLINK), proto(libc::NETLINK_ROUTE)],
                SyscallAction::Allow,
            ),
        ];
        for (d, icmp_proto) in [
            (libc::AF_INET, libc::IPPROTO_ICMP),
            (libc::AF_INET6, libc::IPPROTO_ICMPV6),
        ] {
            cases.push((vec![dom(d), ty(libc::SOCK_RAW)], eperm));
            if !allow_list {
                cases.push((vec![dom(d)], SyscallAction::Allow));
                continue;
            }
            for p in [0, libc::IPPROTO_TCP, libc::IPPROTO_MPTCP] {
                cases.push((
                    vec![dom(d), ty(libc::SOCK_STREAM), proto(p)],
                    SyscallAction::Allow,
                ));
            }
            for p in [0, libc::IPPROTO_UDP] {
                cases.push((vec![dom(d), ty(libc::SOCK_DGRAM), proto(p)], udp));
            }
            cases.push((vec![dom(d), ty(libc::SOCK_DGRAM), proto(icmp_proto)], icmp));
            cases.push((vec![dom(d)], eacces));
        }
        (cases, SyscallAction::Errno(libc::EAFNOSUPPORT as u16))
    }
}
