//! The network rule language (`--net-allow`, `--net-deny`, `--net-deny-bind`)
//! and policy matching, without running anything: valid rules, every
//! refusal with its message, and a fuzz test that the parser never panics.

use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ipnet::IpNet;
use unotify::net::{
    Mode, NetPolicy, NetRule, NetSpecErrorKind, Ports, Protocol, Protocols, ResolvedNetPolicy,
    RuleKind, Target,
};

fn rule(s: &str) -> NetRule {
    NetRule::parse(s, RuleKind::Allow).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str, kind: RuleKind) -> NetSpecErrorKind {
    match NetRule::parse(s, kind) {
        Ok(r) => panic!("{s:?} parsed as {r:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("\"{}\"", s.escape_debug())),
                "message quotes the rule: {msg}"
            );
            assert_eq!(e.rule(), s);
            e.kind().clone()
        }
    }
}

fn net(s: &str) -> Target {
    Target::Net(s.parse::<IpNet>().unwrap())
}

fn ports(v: &[(u16, u16)]) -> Ports {
    Ports::Ranges(v.iter().map(|&(a, b)| a..=b).collect())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn resolved(allow: &[&str], deny: &[&str]) -> ResolvedNetPolicy {
    NetPolicy::from_specs(&strings(allow), &strings(deny), &[])
        .unwrap()
        .resolve()
        .unwrap()
}

#[test]
fn valid_rules() {
    let r = rule("127.0.0.1:8080");
    assert_eq!(
        r,
        NetRule::new(
            Protocols::TCP_UDP,
            net("127.0.0.1/32"),
            ports(&[(8080, 8080)])
        )
    );
    let r = rule("tcp://*:80,443,9000-9005");
    assert_eq!(
        r,
        NetRule::new(
            Protocols::TCP,
            Target::Any,
            ports(&[(80, 80), (443, 443), (9000, 9005)])
        )
    );
    assert_eq!(
        rule("udp://10.1.2.3/8"),
        NetRule::new(Protocols::UDP, net("10.0.0.0/8"), Ports::Any)
    );
    assert_eq!(
        rule("[::1]:80"),
        NetRule::new(Protocols::TCP_UDP, net("::1/128"), ports(&[(80, 80)]))
    );
    assert_eq!(
        rule("tcp://[2001:db8::/32]:443"),
        NetRule::new(Protocols::TCP, net("2001:db8::/32"), ports(&[(443, 443)]))
    );
    assert_eq!(
        rule("[::1]"),
        NetRule::new(Protocols::TCP_UDP, net("::1/128"), Ports::Any)
    );
    // Unbracketed IPv6 without a port: every colon is the address's.
    assert_eq!(
        rule("::1"),
        NetRule::new(Protocols::TCP_UDP, net("::1/128"), Ports::Any)
    );
    assert_eq!(
        rule("2001:db8::/48"),
        NetRule::new(Protocols::TCP_UDP, net("2001:db8::/48"), Ports::Any)
    );
    assert_eq!(
        rule("icmp://127.0.0.1"),
        NetRule::new(Protocols::ICMP, net("127.0.0.1/32"), Ports::Any)
    );
    assert_eq!(
        rule("icmp://*"),
        NetRule::new(Protocols::ICMP, Target::Any, Ports::Any)
    );
    assert_eq!(
        rule(":53"),
        NetRule::new(Protocols::TCP_UDP, Target::Any, ports(&[(53, 53)]))
    );
    assert_eq!(
        rule("*"),
        NetRule::new(Protocols::TCP_UDP, Target::Any, Ports::Any)
    );
    assert_eq!(
        rule("*:*"),
        NetRule::new(Protocols::TCP_UDP, Target::Any, Ports::Any)
    );
    assert_eq!(
        rule("tcp://"),
        NetRule::new(Protocols::TCP, Target::Any, Ports::Any)
    );
    assert_eq!(
        rule("UDP://:1-65535"),
        NetRule::new(Protocols::UDP, Target::Any, ports(&[(1, 65535)]))
    );
    assert_eq!(
        rule("localhost:80"),
        NetRule::new(
            Protocols::TCP_UDP,
            Target::Host("localhost".into()),
            ports(&[(80, 80)])
        )
    );
    assert_eq!(
        rule("Example-1.COM."),
        NetRule::new(
            Protocols::TCP_UDP,
            Target::Host("example-1.com".into()),
            Ports::Any
        )
    );
    // IPv4-mapped IPv6 targets are IPv4 targets.
    assert_eq!(rule("[::ffff:127.0.0.1]:80").target, net("127.0.0.1/32"));
    assert_eq!(rule("[::ffff:10.0.0.0/104]").target, net("10.0.0.0/8"));
    // Leading zeros are harmless.
    assert_eq!(rule("127.0.0.1:0080").ports, ports(&[(80, 80)]));
}

#[test]
fn refused_rules() {
    use NetSpecErrorKind as K;
    let a = RuleKind::Allow;
    assert_eq!(err("127.0.0.1:0", a), K::PortZero);
    assert_eq!(err("127.0.0.1:0-10", a), K::PortZero);
    assert!(matches!(err("127.0.0.1:65536", a), K::PortTooLarge(_)));
    assert!(matches!(
        err("127.0.0.1:99999999999999999999999", a),
        K::PortTooLarge(_)
    ));
    assert_eq!(err("127.0.0.1:", a), K::EmptyPortList);
    assert_eq!(err("127.0.0.1:80,,81", a), K::EmptyPortEntry);
    assert_eq!(err("127.0.0.1:80,", a), K::EmptyPortEntry);
    assert_eq!(err("127.0.0.1:*,80", a), K::WildcardMixed);
    assert_eq!(err("127.0.0.1:80,*", a), K::WildcardMixed);
    assert_eq!(err("127.0.0.1:1-*", a), K::WildcardMixed);
    assert!(matches!(err("127.0.0.1:90-80", a), K::BadRange(_)));
    assert!(matches!(err("127.0.0.1:http", a), K::BadPort(_)));
    assert!(matches!(err("127.0.0.1:-5", a), K::BadPort(_)));
    assert!(matches!(err("10.0.0.0/33", a), K::BadPrefix(_)));
    assert!(matches!(err("10.0.0.0/", a), K::BadPrefix(_)));
    assert!(matches!(err("10.0.0.0/x:80", a), K::BadPrefix(_)));
    assert!(matches!(err("[2001:db8::/129]:80", a), K::BadPrefix(_)));
    assert!(matches!(err("2001:db8::/200", a), K::BadPrefix(_)));
    assert_eq!(err("::1:99999", a), K::UnbracketedIpv6WithPort);
    assert_eq!(err("2001:db8::/32:443", a), K::UnbracketedIpv6WithPort);
    assert_eq!(err("tcp://fe80::1:*", a), K::UnbracketedIpv6WithPort);
    assert_eq!(err("::1:80,443", a), K::UnbracketedIpv6WithPort);
    assert!(matches!(err("http://127.0.0.1", a), K::UnknownScheme(s) if s == "http"));
    assert!(matches!(err("://127.0.0.1", a), K::UnknownScheme(s) if s.is_empty()));
    assert_eq!(err("localhost", RuleKind::Deny), K::HostnameInDeny);
    assert_eq!(
        err("tcp://example.com:80", RuleKind::Deny),
        K::HostnameInDeny
    );
    assert_eq!(err("icmp://127.0.0.1:7", a), K::IcmpWithPort);
    assert_eq!(err("[::1", a), K::BadBrackets);
    assert_eq!(err("[::1]80", a), K::BadBrackets);
    assert_eq!(err("[127.0.0.1]:80", a), K::BadBrackets);
    assert_eq!(err("[]:80", a), K::BadBrackets);
    assert!(matches!(err("1.2.3.400", a), K::BadAddress(_)));
    assert!(matches!(err("a..b:80", a), K::BadAddress(_)));
    assert!(matches!(err("1.2.3.4:5:6", a), K::BadAddress(_)));
    assert_eq!(err("", a), K::Empty);
    assert_eq!(err("127.0.0.1 :80", a), K::BadCharacter(' '));
}

#[test]
fn messages_say_what_is_wrong() {
    let e = NetRule::parse("tcp://127.0.0.1:0", RuleKind::Allow).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid network rule \"tcp://127.0.0.1:0\": port 0 is not a destination port; use 1-65535"
    );
    let e = NetRule::parse("::1:8080,8081", RuleKind::Allow).unwrap_err();
    assert!(
        e.to_string().contains("must be bracketed, e.g. [::1]:80"),
        "{e}"
    );
    let e = NetRule::parse("ftp://x", RuleKind::Allow).unwrap_err();
    assert!(e.to_string().contains("unknown scheme `ftp://`"), "{e}");
    // Into the crate's error: InvalidConfig, message kept.
    match unotify::Error::from(e) {
        unotify::Error::InvalidConfig { message } => {
            assert!(message.contains("\"ftp://x\""), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn from_specs() {
    use NetSpecErrorKind as K;
    let e = NetPolicy::from_specs(&strings(&["127.0.0.1"]), &strings(&["10.0.0.0/8"]), &[])
        .unwrap_err();
    assert_eq!(e.kind(), &K::AllowAndDeny);
    assert!(
        e.to_string().contains("127.0.0.1") && e.to_string().contains("10.0.0.0/8"),
        "{e}"
    );
    let e =
        NetPolicy::from_specs(&strings(&["127.0.0.1:1", "127.0.0.1:70000"]), &[], &[]).unwrap_err();
    assert_eq!(e.rule(), "127.0.0.1:70000");
    let e = NetPolicy::from_specs(&[], &strings(&["localhost"]), &[]).unwrap_err();
    assert_eq!(e.kind(), &K::HostnameInDeny);
    let e = NetPolicy::from_specs(&[], &[], &strings(&["8080,0"])).unwrap_err();
    assert_eq!((e.rule(), e.kind()), ("8080,0", &K::PortZero));
    let e = NetPolicy::from_specs(&[], &[], &strings(&[""])).unwrap_err();
    assert_eq!(e.kind(), &K::EmptyPortList);

    let p = NetPolicy::from_specs(&[], &[], &[]).unwrap();
    assert_eq!((p.mode(), p.deny_bind()), (Mode::Unrestricted, None));
    let p = NetPolicy::from_specs(&[], &[], &strings(&["8080,9000-9005", "22"])).unwrap();
    assert_eq!(p.mode(), Mode::Unrestricted);
    let r = p.resolve().unwrap();
    for port in [8080, 9000, 9003, 9005, 22] {
        assert!(!r.bind_allowed(port), "{port}");
    }
    for port in [0, 8079, 8081, 8999, 9006, 80] {
        assert!(r.bind_allowed(port), "{port}");
    }
    assert!(!NetPolicy::from_specs(&[], &[], &strings(&["*"]))
        .unwrap()
        .resolve()
        .unwrap()
        .bind_allowed(1));
}

#[test]
fn allow_list_matching() {
    let r = resolved(
        &[
            "tcp://127.0.0.1:80,8000-8010",
            "udp://10.0.0.0/8:53",
            "[::1]:443",
            "icmp://192.168.0.0/16",
        ],
        &[],
    );
    assert!(r.allows(Protocol::Tcp, ip("127.0.0.1"), 80));
    assert!(r.allows(Protocol::Tcp, ip("127.0.0.1"), 8005));
    assert!(!r.allows(Protocol::Tcp, ip("127.0.0.1"), 8011));
    assert!(
        !r.allows(Protocol::Udp, ip("127.0.0.1"), 80),
        "tcp:// is TCP only"
    );
    assert!(!r.allows(Protocol::Tcp, ip("127.0.0.2"), 80));
    // IPv4-mapped IPv6 is IPv4.
    assert!(r.allows(Protocol::Tcp, ip("::ffff:127.0.0.1"), 80));
    assert!(r.allows(Protocol::Udp, ip("10.200.0.1"), 53));
    assert!(!r.allows(Protocol::Tcp, ip("10.200.0.1"), 53));
    assert!(!r.allows(Protocol::Udp, ip("11.0.0.1"), 53));
    assert!(r.allows(Protocol::Tcp, ip("::1"), 443));
    assert!(r.allows(Protocol::Udp, ip("::1"), 443));
    assert!(!r.allows(Protocol::Tcp, ip("::2"), 443));
    // ICMP ignores ports and needs an icmp:// rule.
    assert!(r.allows(Protocol::Icmp, ip("192.168.3.4"), 0));
    assert!(r.allows(Protocol::Icmp, ip("192.168.3.4"), 1234));
    assert!(!r.allows(Protocol::Icmp, ip("127.0.0.1"), 80));
    assert!(r.allows_protocol(Protocol::Udp) && r.allows_protocol(Protocol::Icmp));
    let tcp_only = resolved(&["tcp://*:443"], &[]);
    assert!(!tcp_only.allows_protocol(Protocol::Udp) && !tcp_only.allows_protocol(Protocol::Icmp));
    assert!(tcp_only.allows(Protocol::Tcp, ip("8.8.8.8"), 443));
    // An empty allow list allows nothing.
    let none = NetPolicy::allow_list(Vec::new()).resolve().unwrap();
    assert!(!none.allows(Protocol::Tcp, ip("127.0.0.1"), 80));
}

#[test]
fn deny_list_matching() {
    let r = resolved(
        &[],
        &["10.0.0.0/8", "tcp://127.0.0.1:25", ":9999", "icmp://*"],
    );
    assert!(!r.allows(Protocol::Tcp, ip("10.1.2.3"), 443));
    assert!(!r.allows(Protocol::Udp, ip("10.1.2.3"), 53));
    assert!(!r.allows(Protocol::Tcp, ip("::ffff:10.1.2.3"), 443));
    assert!(r.allows(Protocol::Tcp, ip("8.8.8.8"), 443));
    assert!(!r.allows(Protocol::Tcp, ip("127.0.0.1"), 25));
    assert!(r.allows(Protocol::Udp, ip("127.0.0.1"), 25));
    assert!(!r.allows(Protocol::Udp, ip("1.1.1.1"), 9999));
    assert!(!r.allows(Protocol::Icmp, ip("1.1.1.1"), 0));
    assert!(r.allows_protocol(Protocol::Udp));
}

#[test]
fn hostnames_resolve_once_into_hosts_file() {
    let r = resolved(&["tcp://localhost:80"], &[]);
    let (name, addrs) = &r.resolved_names()[0];
    assert_eq!(name, "localhost");
    assert!(addrs.contains(&ip("127.0.0.1")), "{addrs:?}");
    assert!(r.allows(Protocol::Tcp, ip("127.0.0.1"), 80));
    assert!(!r.allows(Protocol::Tcp, ip("127.0.0.2"), 80));
    let hosts = String::from_utf8(r.hosts_file()).unwrap();
    assert!(
        hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost"),
        "{hosts}"
    );
    assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
    assert_eq!(hosts.lines().count(), 2 + addrs.len());
}

#[test]
fn typed_api() {
    let p = NetPolicy::deny_list(vec![NetRule::new(
        Protocols::TCP,
        Target::Host("localhost".into()),
        Ports::Any,
    )]);
    assert_eq!(p.unwrap_err().kind(), &NetSpecErrorKind::HostnameInDeny);
    let p = NetPolicy::allow_list(vec![NetRule::new(
        Protocols::UDP,
        Target::addr(ip("::ffff:127.0.0.9")),
        Ports::parse("5000-5001").unwrap(),
    )])
    .with_deny_bind(Ports::parse("80").unwrap());
    let r = p.resolve().unwrap();
    assert!(r.allows(Protocol::Udp, ip("127.0.0.9"), 5001));
    assert!(!r.bind_allowed(80));
    assert_eq!(Ports::parse("*").unwrap(), Ports::Any);
}

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "127.0.0.1:8080",
    "tcp://*:80,443",
    "udp://10.0.0.0/8:53",
    "[::1]:80",
    "tcp://[2001:db8::/32]:443,8000-9000",
    "icmp://192.168.1.1",
    "localhost:22",
    ":*",
    "::ffff:1.2.3.4",
    "9000-9005",
];
const ALPHABET: &[u8] = b"0123456789:[]/*,.-abcdefxtcpudpicm ffff%\0\xff";

/// Feeds arbitrary strings to every parser: none may panic, and whatever
/// parses must satisfy the invariants.
#[test]
fn fuzz_parsers_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for case in 0..30_000 {
        let input: String = if case % 3 == 0 {
            // Random bytes, made UTF-8.
            let len = rng.below(40);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            // A valid spec, mutated a few times.
            let mut s = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let pos = rng.below(s.len() + 1);
                let c = ALPHABET[rng.below(ALPHABET.len())];
                match rng.below(3) {
                    0 => s.insert(pos, c),
                    1 if pos < s.len() => {
                        s.remove(pos);
                    }
                    _ if pos < s.len() => s[pos] = c,
                    _ => s.push(c),
                }
            }
            String::from_utf8_lossy(&s).into_owned()
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut ok = 0;
            for kind in [RuleKind::Allow, RuleKind::Deny] {
                match NetRule::parse(&input, kind) {
                    Ok(r) => {
                        ok += 1;
                        if kind == RuleKind::Deny {
                            assert!(!matches!(r.target, Target::Host(_)), "{input:?}");
                        }
                        if let Ports::Ranges(v) = &r.ports {
                            assert!(
                                !v.is_empty()
                                    && v.iter().all(|p| *p.start() >= 1 && p.start() <= p.end())
                            );
                        }
                        if r.protocols == Protocols::ICMP {
                            assert_eq!(r.ports, Ports::Any);
                        }
                    }
                    Err(e) => {
                        assert_eq!(e.rule(), input);
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
            let _ = Ports::parse(&input);
            let list = vec![input.clone()];
            let _ = NetPolicy::from_specs(&list, &[], &[]);
            let _ = NetPolicy::from_specs(&[], &list, &list);
            ok
        }));
        match result {
            Ok(n) => parsed += n,
            Err(_) => panic!("the parser panicked on {input:?}"),
        }
    }
    // The mutations keep a fair share valid: both paths are exercised.
    assert!(parsed > 1000, "only {parsed} inputs parsed");
}
