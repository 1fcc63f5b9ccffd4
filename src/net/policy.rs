//! Typed network rules and the policy that matches destinations against them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};

use super::spec::{self, NetSpecError, NetSpecErrorKind, RuleKind};

/// A transport protocol a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP (and MPTCP, which the program uses like TCP).
    Tcp,
    /// UDP (and UDP-Lite).
    Udp,
    /// ICMP echo ("ping") sockets, IPv4 and IPv6.
    Icmp,
}

/// A set of [`Protocol`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Protocols {
    /// TCP.
    pub tcp: bool,
    /// UDP.
    pub udp: bool,
    /// ICMP.
    pub icmp: bool,
}

impl Protocols {
    /// TCP only (`tcp://`).
    pub const TCP: Protocols = Protocols {
        tcp: true,
        udp: false,
        icmp: false,
    };
    /// UDP only (`udp://`).
    pub const UDP: Protocols = Protocols {
        tcp: false,
        udp: true,
        icmp: false,
    };
    /// ICMP only (`icmp://`).
    pub const ICMP: Protocols = Protocols {
        tcp: false,
        udp: false,
        icmp: true,
    };
    /// TCP and UDP (a rule without a scheme).
    pub const TCP_UDP: Protocols = Protocols {
        tcp: true,
        udp: true,
        icmp: false,
    };

    /// Whether `p` is in the set.
    pub fn contains(self, p: Protocol) -> bool {
        match p {
            Protocol::Tcp => self.tcp,
            Protocol::Udp => self.udp,
            Protocol::Icmp => self.icmp,
        }
    }
}

/// The addresses a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Every address (`*` or an empty target).
    Any,
    /// An address or a network (an address is a `/32` or `/128` network).
    /// IPv4-mapped IPv6 networks are stored as IPv4 networks.
    Net(IpNet),
    /// A host name, resolved once when the sandbox is built (allow lists only).
    Host(String),
}

impl Target {
    /// A target for one address (IPv4-mapped IPv6 becomes IPv4).
    pub fn addr(ip: IpAddr) -> Target {
        let ip = canonical_ip(ip);
        let len = if ip.is_ipv4() { 32 } else { 128 };
        Target::Net(IpNet::new(ip, len).expect("full-length prefix is valid"))
    }

    /// A target for a network; host bits are cleared and IPv4-mapped IPv6
    /// networks (`::ffff:a.b.c.d/96+n`) become IPv4 networks.
    pub fn net(net: IpNet) -> Target {
        Target::Net(canonical_net(net))
    }
}

/// An `AF_UNIX` destination named by a `unix:` rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnixTarget {
    /// Every unix destination (`unix:*`).
    Any,
    /// One socket file (`unix:/run/app.sock`), absolute and normalised.
    Path(PathBuf),
    /// Every socket below a directory (`unix:/run/app/`).
    Dir(PathBuf),
    /// An abstract socket (`unix:@name`): the name without its leading NUL.
    Abstract(Vec<u8>),
}

impl UnixTarget {
    /// Parses `unix:*`, `unix:/path`, `unix:/dir/` or `unix:@name`.
    pub fn parse(spec: &str) -> Result<UnixTarget, NetSpecError> {
        spec::parse_unix(spec)
    }
}

/// A unix destination as the supervisor found it: where a pathname
/// resolved (in the supervisor's view), or an abstract name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UnixDest {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// The ports a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ports {
    /// Every port (`*`, or no port given).
    Any,
    /// These inclusive ranges (a single port `p` is `p..=p`), none containing 0.
    Ranges(Vec<RangeInclusive<u16>>),
}

impl Ports {
    /// Whether `port` is covered.
    pub fn contains(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Ranges(r) => r.iter().any(|r| r.contains(&port)),
        }
    }

    /// Parses a port list: `*`, or `p[,p...]` where each `p` is a port
    /// (1..=65535) or a range `a-b`.
    pub fn parse(list: &str) -> Result<Ports, NetSpecError> {
        spec::parse_ports(list).map_err(|kind| NetSpecError::new(list, kind))
    }
}

/// One rule: protocols × addresses × ports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NetRule {
    /// The protocols it applies to.
    pub protocols: Protocols,
    /// The addresses it applies to.
    pub target: Target,
    /// The ports it applies to (ignored for ICMP).
    pub ports: Ports,
}

impl NetRule {
    /// A rule from its parts.
    pub fn new(protocols: Protocols, target: Target, ports: Ports) -> NetRule {
        NetRule {
            protocols,
            target,
            ports,
        }
    }

    /// Parses one `--net-allow` / `--net-deny` rule,
    /// `[tcp://|udp://|icmp://]TARGET[:PORTS]`. `kind` says which list it is
    /// for (host names are refused in deny rules).
    pub fn parse(spec: &str, kind: RuleKind) -> Result<NetRule, NetSpecError> {
        spec::parse_rule(spec, kind)
    }

    /// The rule as `--net-allow` writes it: `tcp://127.0.0.1:8080`,
    /// `10.0.0.0/8`, `[::1]:443`, `*`.
    pub(crate) fn spec(&self) -> String {
        let scheme = match (self.protocols.tcp, self.protocols.udp, self.protocols.icmp) {
            (true, false, false) => "tcp://",
            (false, true, false) => "udp://",
            (false, false, true) => "icmp://",
            _ => "",
        };
        let ports = match &self.ports {
            Ports::Any => None,
            Ports::Ranges(r) => Some(
                r.iter()
                    .map(|r| {
                        if r.start() == r.end() {
                            r.start().to_string()
                        } else {
                            format!("{}-{}", r.start(), r.end())
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        let target = match &self.target {
            Target::Any => "*".to_owned(),
            Target::Host(h) => h.clone(),
            Target::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
            Target::Net(n) => n.to_string(),
        };
        let bracket = ports.is_some() && target.contains(':');
        match (ports, bracket) {
            (Some(p), true) => format!("{scheme}[{target}]:{p}"),
            (Some(p), false) => format!("{scheme}{target}:{p}"),
            (None, _) => format!("{scheme}{target}"),
        }
    }

    fn matches(&self, proto: Protocol, ip: IpAddr, port: u16, hosts: &[IpAddr]) -> bool {
        if !self.protocols.contains(proto) {
            return false;
        }
        if proto != Protocol::Icmp && !self.ports.contains(port) {
            return false;
        }
        match &self.target {
            Target::Any => true,
            Target::Net(net) => net.contains(&ip),
            Target::Host(_) => hosts.contains(&ip),
        }
    }
}

/// Whether the rules list what is allowed or what is denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// No destination rules: every destination is allowed and connect/send
    /// are not trapped.
    Unrestricted,
    /// Only destinations matching a rule are allowed.
    Allow,
    /// Destinations matching a rule are denied; everything else is allowed.
    Deny,
}

/// A network policy: destination rules (an allow list or a deny list) and
/// an optional list of TCP ports the program may not bind.
///
/// ```
/// use unotify::net::NetPolicy;
/// let p = NetPolicy::from_specs(
///     &["tcp://127.0.0.1:8080".into(), "udp://[::1]:53".into()],
///     &[],
///     &["9000-9005".into()],
/// )?;
/// let r = p.resolve()?;
/// assert!(r.allows(unotify::net::Protocol::Tcp, "127.0.0.1".parse().unwrap(), 8080));
/// assert!(!r.allows(unotify::net::Protocol::Udp, "127.0.0.1".parse().unwrap(), 8080));
/// assert!(!r.bind_allowed(9001));
/// # Ok::<(), unotify::net::NetSpecError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPolicy {
    mode: Mode,
    rules: Vec<NetRule>,
    unix: Vec<UnixTarget>,
    deny_bind: Option<Ports>,
}

impl Default for NetPolicy {
    fn default() -> Self {
        NetPolicy::unrestricted()
    }
}

impl NetPolicy {
    /// No destination rules and no bind rules.
    pub fn unrestricted() -> NetPolicy {
        NetPolicy {
            mode: Mode::Unrestricted,
            rules: Vec::new(),
            unix: Vec::new(),
            deny_bind: None,
        }
    }

    /// An allow list: only destinations matching one of `rules` are
    /// reachable. An empty list denies every TCP, UDP and ICMP destination.
    pub fn allow_list(rules: Vec<NetRule>) -> NetPolicy {
        NetPolicy {
            mode: Mode::Allow,
            rules,
            unix: Vec::new(),
            deny_bind: None,
        }
    }

    /// A deny list: destinations matching one of `rules` are refused.
    ///
    /// # Errors
    ///
    /// A rule with a host name target ([`NetSpecErrorKind::HostnameInDeny`]).
    pub fn deny_list(rules: Vec<NetRule>) -> Result<NetPolicy, NetSpecError> {
        if let Some(r) = rules.iter().find(|r| matches!(r.target, Target::Host(_))) {
            let name = match &r.target {
                Target::Host(h) => h.clone(),
                _ => unreachable!(),
            };
            return Err(NetSpecError::new(&name, NetSpecErrorKind::HostnameInDeny));
        }
        Ok(NetPolicy {
            mode: Mode::Deny,
            rules,
            unix: Vec::new(),
            deny_bind: None,
        })
    }

    /// Adds `AF_UNIX` destinations to the list (allowed under an allow
    /// list, refused under a deny list; ignored when unrestricted).
    pub fn with_unix(mut self, targets: Vec<UnixTarget>) -> NetPolicy {
        self.unix.extend(targets);
        self
    }

    /// Also refuses `bind` of a TCP socket to these ports (`EACCES`).
    pub fn with_deny_bind(mut self, ports: Ports) -> NetPolicy {
        self.deny_bind = Some(ports);
        self
    }

    /// Builds a policy from command-line style specs: `--net-allow`,
    /// `--net-deny` (rules) and `--net-deny-bind` (port lists), each
    /// repeatable.
    ///
    /// # Errors
    ///
    /// The first invalid spec, with the spec quoted and what is wrong with
    /// it; [`NetSpecErrorKind::AllowAndDeny`] if both lists are given.
    pub fn from_specs(
        allow: &[String],
        deny: &[String],
        deny_bind: &[String],
    ) -> Result<NetPolicy, NetSpecError> {
        if !allow.is_empty() && !deny.is_empty() {
            let both = format!("--net-allow {} --net-deny {}", allow[0], deny[0]);
            return Err(NetSpecError::new(&both, NetSpecErrorKind::AllowAndDeny));
        }
        let split = |specs: &[String], kind| -> Result<_, NetSpecError> {
            let mut rules = Vec::new();
            let mut unix = Vec::new();
            for s in specs {
                if spec::is_unix(s) {
                    unix.push(spec::parse_unix(s)?);
                } else {
                    rules.push(NetRule::parse(s, kind)?);
                }
            }
            Ok((rules, unix))
        };
        let mut policy = if !allow.is_empty() {
            let (rules, unix) = split(allow, RuleKind::Allow)?;
            NetPolicy::allow_list(rules).with_unix(unix)
        } else if !deny.is_empty() {
            let (rules, unix) = split(deny, RuleKind::Deny)?;
            NetPolicy::deny_list(rules)?.with_unix(unix)
        } else {
            NetPolicy::unrestricted()
        };
        if !deny_bind.is_empty() {
            let mut ranges = Vec::new();
            for list in deny_bind {
                match Ports::parse(list)? {
                    Ports::Any => {
                        ranges.clear();
                        ranges.push(1..=u16::MAX);
                    }
                    Ports::Ranges(r) => ranges.extend(r),
                }
            }
            policy.deny_bind = Some(Ports::Ranges(ranges));
        }
        Ok(policy)
    }

    /// Allow list, deny list or unrestricted.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The destination rules.
    pub fn rules(&self) -> &[NetRule] {
        &self.rules
    }

    /// The `AF_UNIX` destinations of the list.
    pub fn unix_rules(&self) -> &[UnixTarget] {
        &self.unix
    }

    /// The TCP ports `bind` refuses, if any.
    pub fn deny_bind(&self) -> Option<&Ports> {
        self.deny_bind.as_ref()
    }

    /// Whether any rule names a host.
    pub fn has_hostnames(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.target, Target::Host(_)))
    }

    /// Resolves host names (with the system resolver, once) and returns the
    /// policy ready to match destinations.
    ///
    /// # Errors
    ///
    /// [`NetSpecErrorKind::Unresolved`] for a name that does not resolve.
    pub fn resolve(&self) -> Result<ResolvedNetPolicy, NetSpecError> {
        let mut names = Vec::new();
        let mut hosts: Vec<Vec<IpAddr>> = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let mut addrs = Vec::new();
            if let Target::Host(name) = &rule.target {
                let resolved = (name.as_str(), 0u16).to_socket_addrs().map_err(|e| {
                    NetSpecError::new(name, NetSpecErrorKind::Unresolved(e.to_string()))
                })?;
                let mut set = BTreeSet::new();
                for sa in resolved {
                    set.insert(canonical_ip(sa.ip()));
                }
                if set.is_empty() {
                    return Err(NetSpecError::new(
                        name,
                        NetSpecErrorKind::Unresolved("no addresses".into()),
                    ));
                }
                addrs.extend(set.iter().copied());
                names.push((name.clone(), addrs.clone()));
            }
            hosts.push(addrs);
        }
        // A rule's path as written and where it resolves now, so that
        // `unix:/var/run/x` also matches the program reaching /run/x.
        let unix = self
            .unix
            .iter()
            .map(|t| {
                let real = match t {
                    UnixTarget::Path(p) | UnixTarget::Dir(p) => std::fs::canonicalize(p).ok(),
                    _ => None,
                };
                (t.clone(), real)
            })
            .collect();
        Ok(ResolvedNetPolicy {
            policy: self.clone(),
            hosts,
            names,
            unix,
        })
    }
}

/// A [`NetPolicy`] with its host names resolved: what the supervisor
/// enforces.
#[derive(Clone, Debug)]
pub struct ResolvedNetPolicy {
    policy: NetPolicy,
    /// Per rule, the addresses of its host name (empty for other targets).
    hosts: Vec<Vec<IpAddr>>,
    /// Each host name and its addresses, in rule order.
    names: Vec<(String, Vec<IpAddr>)>,
    /// The unix rules, each with its path resolved when the sandbox was built.
    unix: Vec<(UnixTarget, Option<PathBuf>)>,
}

impl ResolvedNetPolicy {
    /// The policy as given.
    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }

    /// Each host name of the rules with the addresses it resolved to.
    pub fn resolved_names(&self) -> &[(String, Vec<IpAddr>)] {
        &self.names
    }

    /// Whether a `proto` packet or connection to `ip:port` is allowed.
    /// `ip` is canonicalised first (IPv4-mapped IPv6 → IPv4); `port` is
    /// ignored for ICMP.
    pub fn allows(&self, proto: Protocol, ip: IpAddr, port: u16) -> bool {
        let hit = self.first_hit(proto, ip, port).is_some();
        match self.policy.mode {
            Mode::Unrestricted => true,
            Mode::Allow => hit,
            Mode::Deny => !hit,
        }
    }

    /// The first rule that matches a `proto` destination `ip:port`
    /// (canonicalised first).
    fn first_hit(&self, proto: Protocol, ip: IpAddr, port: u16) -> Option<&NetRule> {
        let ip = canonical_ip(ip);
        self.policy
            .rules
            .iter()
            .zip(&self.hosts)
            .find(|(r, h)| r.matches(proto, ip, port, h))
            .map(|(r, _)| r)
    }

    /// The rule that decides a `proto` destination `ip:port`, as the
    /// command line names it: `net-allow 127.0.0.1:8080`, `net-deny
    /// 10.0.0.0/8`, or the list when no rule of it matches (`net-allow
    /// list: no rule matches`).
    pub(crate) fn deciding_rule(&self, proto: Protocol, ip: IpAddr, port: u16) -> String {
        let hit = self.first_hit(proto, ip, port);
        let list = match self.policy.mode {
            Mode::Unrestricted => return "no network rule".to_owned(),
            Mode::Allow => "net-allow",
            Mode::Deny => "net-deny",
        };
        match hit {
            Some(r) => format!("{list} {}", r.spec()),
            None => format!("{list} list: no rule matches"),
        }
    }

    /// Like [`allows`](Self::allows) for a socket address.
    pub fn allows_addr(&self, proto: Protocol, addr: SocketAddr) -> bool {
        self.allows(proto, addr.ip(), addr.port())
    }

    /// Whether a unix destination is allowed.
    ///
    /// An abstract name is reached by the supervisor, which is outside the
    /// sandbox's Landlock domain (whose scoping keeps the program from the
    /// host's abstract sockets): only an allow list's `unix:@name` rule for
    /// that very name lets it through; `unix:*`, deny lists and unrestricted
    /// unix refuse it.
    pub(crate) fn allows_unix(&self, dest: &UnixDest) -> bool {
        if let UnixDest::Abstract(a) = dest {
            return matches!(self.policy.mode, Mode::Allow)
                && self
                    .unix
                    .iter()
                    .any(|(t, _)| matches!(t, UnixTarget::Abstract(r) if r == a));
        }
        let under = |p: &Path, dir: &Path| p.starts_with(dir) && p != dir;
        let hit = self.unix.iter().any(|(t, real)| match (t, dest) {
            (UnixTarget::Any, _) => true,
            (UnixTarget::Path(r), UnixDest::Path(p)) => {
                p == r || real.as_deref().is_some_and(|x| p == x)
            }
            (UnixTarget::Dir(r), UnixDest::Path(p)) => {
                under(p, r) || real.as_deref().is_some_and(|x| under(p, x))
            }
            (UnixTarget::Abstract(r), UnixDest::Abstract(a)) => r == a,
            _ => false,
        });
        match self.policy.mode {
            Mode::Unrestricted => true,
            Mode::Allow => hit,
            Mode::Deny => !hit,
        }
    }

    /// Whether some rule allows `proto` at all (under an allow list: whether
    /// sockets of that protocol may be created).
    pub fn allows_protocol(&self, proto: Protocol) -> bool {
        match self.policy.mode {
            Mode::Allow => self
                .policy
                .rules
                .iter()
                .any(|r| r.protocols.contains(proto)),
            Mode::Deny | Mode::Unrestricted => true,
        }
    }

    /// Whether a TCP socket may bind `port` (port 0, "any free port", always may).
    pub fn bind_allowed(&self, port: u16) -> bool {
        port == 0
            || !self
                .policy
                .deny_bind
                .as_ref()
                .is_some_and(|p| p.contains(port))
    }

    /// The `/etc/hosts` the program is shown when rules name hosts:
    /// localhost lines, then one line per resolved address of each name.
    pub fn hosts_file(&self) -> Vec<u8> {
        let mut out =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (name, addrs) in &self.names {
            for a in addrs {
                out.push_str(&format!("{a}\t{name}\n"));
            }
        }
        out.into_bytes()
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        })
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) → IPv4; anything else unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Clears host bits and turns an IPv4-mapped IPv6 network into IPv4.
pub fn canonical_net(net: IpNet) -> IpNet {
    match net.trunc() {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).expect("prefix below 33")),
            None => IpNet::V6(n),
        },
        other => other,
    }
}

/// The loopback address of `ip`'s family.
pub(crate) fn loopback_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}
