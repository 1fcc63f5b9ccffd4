//! The rule language of `--net-allow` / `--net-deny` / `--net-deny-bind`.
//!
//! ```text
//! SPEC   = [tcp://|udp://|icmp://]TARGET[:PORTS]
//! TARGET = * | (empty) | IPv4 | IPv4/len | IPv6 | IPv6/len | [IPv6] | [IPv6/len] | hostname
//! PORTS  = * | PORT[,PORT...]      PORT = 1..65535 | a-b
//! ```
//! No scheme means TCP and UDP; `icmp://` takes no port. An IPv6 target
//! followed by ports must be bracketed (`[::1]:80`): unbracketed, every colon
//! belongs to the address. Host names are for allow lists only.
//!
//! `AF_UNIX` destinations (connect, and sends with an address) are rules too:
//!
//! ```text
//! UNIX   = unix:* | unix:/absolute/path | unix:/absolute/dir/ | unix:@abstract-name
//! ```
//! `unix:/run/app.sock` names one socket file (matched by where the path the
//! program gave resolves to, in its root and working directory, symlinks
//! followed); a trailing `/` names every socket below a directory;
//! `unix:@name` names an abstract socket (the bytes after the leading NUL);
//! `unix:*` any of them. Under an allow list, a unix destination that no
//! `unix:` rule names is refused; under a deny list, the `unix:` rules name
//! what is refused and every other unix destination is allowed.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;

use super::policy::{NetRule, Ports, Protocols, Target, UnixTarget};

/// Whether `spec` is a `unix:` rule.
pub(crate) fn is_unix(spec: &str) -> bool {
    spec.get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("unix:"))
}

/// Parses a `unix:` rule (see the module documentation).
pub(crate) fn parse_unix(spec: &str) -> Result<UnixTarget, NetSpecError> {
    let err = |k| NetSpecError::new(spec, k);
    let rest = spec.get(5..).filter(|_| is_unix(spec));
    let Some(rest) = rest else {
        return Err(err(NetSpecErrorKind::BadUnixTarget));
    };
    if let Some(c) = rest.chars().find(|c| c.is_control()) {
        return Err(err(NetSpecErrorKind::BadCharacter(c)));
    }
    if rest == "*" {
        return Ok(UnixTarget::Any);
    }
    if let Some(name) = rest.strip_prefix('@') {
        if name.is_empty() || name.len() > 107 {
            return Err(err(NetSpecErrorKind::BadUnixTarget));
        }
        return Ok(UnixTarget::Abstract(name.as_bytes().to_vec()));
    }
    if !rest.starts_with('/') || rest.len() > 4095 {
        return Err(err(NetSpecErrorKind::BadUnixTarget));
    }
    let path = crate::paths::normalize_abs(std::path::Path::new(rest));
    if rest.ends_with('/') {
        Ok(UnixTarget::Dir(path))
    } else {
        Ok(UnixTarget::Path(path))
    }
}

/// Which list a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleKind {
    /// `--net-allow`.
    Allow,
    /// `--net-deny`.
    Deny,
}

/// What is wrong with a network rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetSpecErrorKind {
    /// The rule is empty.
    Empty,
    /// The rule contains whitespace or a control character.
    BadCharacter(char),
    /// A scheme other than `tcp`, `udp`, `icmp`.
    UnknownScheme(String),
    /// Port 0.
    PortZero,
    /// A port above 65535.
    PortTooLarge(String),
    /// A port that is not a decimal number.
    BadPort(String),
    /// Nothing after the `:` (or an empty port list).
    EmptyPortList,
    /// An empty entry in a port list (`80,,443`).
    EmptyPortEntry,
    /// `*` together with numbers (`*,80`).
    WildcardMixed,
    /// A range whose start is above its end (`90-80`).
    BadRange(String),
    /// A prefix length that is not a number or too long for the address.
    BadPrefix(String),
    /// An IPv6 address or network followed by ports without brackets.
    UnbracketedIpv6WithPort,
    /// Brackets that do not hold exactly an IPv6 address or network, or
    /// something other than `:PORTS` after them.
    BadBrackets,
    /// Neither an address, a network nor a valid host name.
    BadAddress(String),
    /// A host name in a deny rule (names cannot be denied reliably).
    HostnameInDeny,
    /// Ports on an `icmp://` rule.
    IcmpWithPort,
    /// Both allow and deny rules were given.
    AllowAndDeny,
    /// A host name that did not resolve.
    Unresolved(String),
    /// A `unix:` rule that is neither `*`, an absolute path nor `@name`.
    BadUnixTarget,
}

/// An invalid network rule: the rule as given and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpecError {
    rule: String,
    kind: NetSpecErrorKind,
}

impl NetSpecError {
    pub(crate) fn new(rule: &str, kind: NetSpecErrorKind) -> NetSpecError {
        NetSpecError {
            rule: rule.to_owned(),
            kind,
        }
    }

    /// The rule as given.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &NetSpecErrorKind {
        &self.kind
    }
}

impl fmt::Display for NetSpecErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use NetSpecErrorKind::*;
        match self {
            Empty => f.write_str("the rule is empty; use `*` for any address"),
            BadCharacter(c) => write!(f, "character {c:?} is not allowed in a rule"),
            UnknownScheme(s) => write!(f, "unknown scheme `{s}://`; use tcp://, udp:// or icmp://"),
            PortZero => f.write_str("port 0 is not a destination port; use 1-65535"),
            PortTooLarge(p) => write!(f, "port {p} is above 65535"),
            BadPort(p) => write!(f, "`{p}` is not a port number (1-65535)"),
            EmptyPortList => {
                f.write_str("the port list is empty; give ports after `:` or leave out the `:`")
            }
            EmptyPortEntry => f.write_str("the port list has an empty entry"),
            WildcardMixed => f.write_str("`*` cannot be mixed with port numbers"),
            BadRange(r) => write!(f, "port range `{r}` ends before it starts"),
            BadPrefix(p) => write!(f, "bad prefix length `{p}` (0-32 for IPv4, 0-128 for IPv6)"),
            UnbracketedIpv6WithPort => {
                f.write_str("an IPv6 address with ports must be bracketed, e.g. [::1]:80")
            }
            BadBrackets => f.write_str(
                "brackets must hold an IPv6 address or network, optionally followed by :PORTS",
            ),
            BadAddress(a) => write!(f, "`{a}` is not an IP address, a network or a host name"),
            HostnameInDeny => f.write_str(
                "host names are allowed only in allow rules; deny an address or network",
            ),
            IcmpWithPort => f.write_str("icmp:// rules take no port"),
            AllowAndDeny => {
                f.write_str("allow and deny rules cannot be used together; choose one list")
            }
            Unresolved(e) => write!(f, "the host name does not resolve ({e})"),
            BadUnixTarget => f.write_str(
                "a unix rule is unix:*, unix:/absolute/path, unix:/dir/ or unix:@abstract-name",
            ),
        }
    }
}

impl fmt::Display for NetSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid network rule \"{}\": {}",
            self.rule.escape_debug(),
            self.kind
        )
    }
}

impl std::error::Error for NetSpecError {}

impl From<NetSpecError> for crate::Error {
    fn from(e: NetSpecError) -> crate::Error {
        crate::Error::InvalidConfig {
            message: e.to_string(),
        }
    }
}

/// Parses one rule.
pub(crate) fn parse_rule(spec: &str, kind: RuleKind) -> Result<NetRule, NetSpecError> {
    let err = |k| NetSpecError::new(spec, k);
    if spec.is_empty() {
        return Err(err(NetSpecErrorKind::Empty));
    }
    if let Some(c) = spec.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(NetSpecErrorKind::BadCharacter(c)));
    }
    let (protocols, rest) = match spec.find("://") {
        Some(i) => {
            let scheme = &spec[..i];
            let p = match scheme.to_ascii_lowercase().as_str() {
                "tcp" => Protocols::TCP,
                "udp" => Protocols::UDP,
                "icmp" => Protocols::ICMP,
                _ => return Err(err(NetSpecErrorKind::UnknownScheme(scheme.to_owned()))),
            };
            (p, &spec[i + 3..])
        }
        None => (Protocols::TCP_UDP, spec),
    };
    let (target, ports) = split_target(rest).map_err(err)?;
    if let Target::Host(_) = target {
        if kind == RuleKind::Deny {
            return Err(err(NetSpecErrorKind::HostnameInDeny));
        }
    }
    let ports = match ports {
        None => Ports::Any,
        Some(_) if protocols == Protocols::ICMP => return Err(err(NetSpecErrorKind::IcmpWithPort)),
        Some(p) => parse_ports(p).map_err(err)?,
    };
    Ok(NetRule::new(protocols, target, ports))
}

/// Splits `TARGET[:PORTS]` and parses the target.
fn split_target(rest: &str) -> Result<(Target, Option<&str>), NetSpecErrorKind> {
    if let Some(inner_and_more) = rest.strip_prefix('[') {
        let close = inner_and_more
            .find(']')
            .ok_or(NetSpecErrorKind::BadBrackets)?;
        let inner = &inner_and_more[..close];
        let after = &inner_and_more[close + 1..];
        let ports = if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(p)
        } else {
            return Err(NetSpecErrorKind::BadBrackets);
        };
        let net = match parse_ip_or_net(inner)? {
            Some(net @ IpNet::V6(_)) => net,
            _ => return Err(NetSpecErrorKind::BadBrackets),
        };
        return Ok((Target::net(net), ports));
    }
    let colons = rest.matches(':').count();
    if colons >= 2 {
        // Unbracketed: all of it must be an IPv6 address or network.
        let whole = parse_ip_or_net(rest);
        if let Ok(Some(net)) = whole {
            return Ok((Target::net(net), None));
        }
        let (head, _) = rest.rsplit_once(':').expect("has colons");
        if matches!(parse_ip_or_net(head), Ok(Some(IpNet::V6(_)))) {
            return Err(NetSpecErrorKind::UnbracketedIpv6WithPort);
        }
        return match whole {
            Err(NetSpecErrorKind::BadPrefix(p)) => Err(NetSpecErrorKind::BadPrefix(p)),
            _ => Err(NetSpecErrorKind::BadAddress(rest.to_owned())),
        };
    }
    let (t, ports) = match rest.split_once(':') {
        Some((t, p)) => (t, Some(p)),
        None => (rest, None),
    };
    Ok((parse_target(t)?, ports))
}

/// A non-bracketed target without ports: `*`, empty, address, network or name.
fn parse_target(t: &str) -> Result<Target, NetSpecErrorKind> {
    if t.is_empty() || t == "*" {
        return Ok(Target::Any);
    }
    if let Some(net) = parse_ip_or_net(t)? {
        return Ok(Target::net(net));
    }
    if is_hostname(t) {
        return Ok(Target::Host(t.trim_end_matches('.').to_ascii_lowercase()));
    }
    Err(NetSpecErrorKind::BadAddress(t.to_owned()))
}

/// `Ok(Some)` for an address or `addr/len`, `Ok(None)` if `s` is not an
/// address at all, `Err(BadPrefix)` for an address with a bad prefix length.
fn parse_ip_or_net(s: &str) -> Result<Option<IpNet>, NetSpecErrorKind> {
    match s.split_once('/') {
        None => Ok(s.parse::<IpAddr>().ok().map(|ip| {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            IpNet::new(ip, len).expect("full-length prefix is valid")
        })),
        Some((addr, len)) => {
            let Ok(ip) = addr.parse::<IpAddr>() else {
                return Err(NetSpecErrorKind::BadAddress(s.to_owned()));
            };
            let bad = || NetSpecErrorKind::BadPrefix(len.to_owned());
            if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let len: u8 = len.parse().map_err(|_| bad())?;
            IpNet::new(ip, len).map(Some).map_err(|_| bad())
        }
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, 1 to 63 bytes each,
/// not starting or ending with `-`, at most 253 bytes, not all-numeric.
fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok
        && s.bytes()
            .any(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
}

/// Parses `*` or `p[,p...]` (each a port or `a-b`).
pub(crate) fn parse_ports(s: &str) -> Result<Ports, NetSpecErrorKind> {
    if s.is_empty() {
        return Err(NetSpecErrorKind::EmptyPortList);
    }
    if s == "*" {
        return Ok(Ports::Any);
    }
    let mut ranges: Vec<RangeInclusive<u16>> = Vec::new();
    for item in s.split(',') {
        if item.is_empty() {
            return Err(NetSpecErrorKind::EmptyPortEntry);
        }
        if item == "*" {
            return Err(NetSpecErrorKind::WildcardMixed);
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_port(a)?, parse_port(b)?);
                if a > b {
                    return Err(NetSpecErrorKind::BadRange(item.to_owned()));
                }
                ranges.push(a..=b);
            }
            None => {
                let p = parse_port(item)?;
                ranges.push(p..=p);
            }
        }
    }
    Ok(Ports::Ranges(ranges))
}

fn parse_port(s: &str) -> Result<u16, NetSpecErrorKind> {
    if s == "*" {
        return Err(NetSpecErrorKind::WildcardMixed);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NetSpecErrorKind::BadPort(s.to_owned()));
    }
    let digits = s.trim_start_matches('0');
    if digits.is_empty() {
        return Err(NetSpecErrorKind::PortZero);
    }
    if digits.len() > 5 {
        return Err(NetSpecErrorKind::PortTooLarge(s.to_owned()));
    }
    let n: u32 = digits
        .parse()
        .map_err(|_| NetSpecErrorKind::BadPort(s.to_owned()))?;
    u16::try_from(n).map_err(|_| NetSpecErrorKind::PortTooLarge(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(is_hostname("localhost"));
        assert!(is_hostname("a-b.example.com."));
        assert!(!is_hostname("1.2.3.300"));
        assert!(!is_hostname("-a"));
        assert!(!is_hostname("a..b"));
    }

    #[test]
    fn unix_rules() {
        use std::path::PathBuf;
        assert_eq!(parse_unix("unix:*").unwrap(), UnixTarget::Any);
        assert_eq!(
            parse_unix("UNIX:/run/./a.sock").unwrap(),
            UnixTarget::Path(PathBuf::from("/run/a.sock"))
        );
        assert_eq!(
            parse_unix("unix:/run/app/").unwrap(),
            UnixTarget::Dir(PathBuf::from("/run/app"))
        );
        assert_eq!(
            parse_unix("unix:@name").unwrap(),
            UnixTarget::Abstract(b"name".to_vec())
        );
        for bad in ["unix:", "unix:rel", "unix:@", "tcp://x"] {
            assert_eq!(
                parse_unix(bad).unwrap_err().kind(),
                &NetSpecErrorKind::BadUnixTarget,
                "{bad}"
            );
        }
        assert!(is_unix("Unix:/x") && !is_unix("uni") && !is_unix("ü:/x"));
    }

    #[test]
    fn ports() {
        assert_eq!(parse_ports("80").unwrap(), Ports::Ranges(vec![80..=80]));
        assert_eq!(parse_ports("007").unwrap(), Ports::Ranges(vec![7..=7]));
        assert_eq!(parse_ports("0"), Err(NetSpecErrorKind::PortZero));
        assert!(matches!(
            parse_ports("99999999999999999999"),
            Err(NetSpecErrorKind::PortTooLarge(_))
        ));
    }
}
