//! Network policy, end to end: a C client (`tests/net_client.c`) runs under a
//! real supervisor and talks to loopback listeners owned by the test
//! (127.0.0.1, 127.0.0.2 and ::1 only). The test checks what the client saw
//! (return values, errnos, `msg_len`s) and, from outside, what the listeners
//! received: a denied destination never gets a connection or a datagram.

mod common;

use std::io::{self, BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use unotify::net::NetPolicy;
use unotify::{Command, Sandbox, Stdio};

fn client() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| common::build_c("net_client", include_str!("net_client.c"), &["-pthread"]))
        .clone()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn allow(specs: &[&str]) -> NetPolicy {
    NetPolicy::from_specs(&strings(specs), &[], &[]).expect("valid allow rules")
}

fn deny(specs: &[&str]) -> NetPolicy {
    NetPolicy::from_specs(&[], &strings(specs), &[]).expect("valid deny rules")
}

/// Runs the client with `args` under `policy`; returns its stdout.
fn run(policy: NetPolicy, args: &[String]) -> String {
    run_with(
        Sandbox::builder()
            .network(policy)
            .build()
            .expect("build sandbox"),
        args,
    )
}

fn run_with(sandbox: Sandbox, args: &[String]) -> String {
    let mut child = sandbox
        .spawn(Command::new(client()).args(args).stdout(Stdio::Piped))
        .expect("spawn client");
    let out = common::read_all(&mut child.stdout);
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "client {args:?} ended with {status:?}; output:\n{out}"
    );
    out
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { [$($a.to_string()),*] };
}

/// A TCP listener on `addr` (port 0 = any).
fn listen(ip: &str) -> (TcpListener, u16) {
    let l = TcpListener::bind((ip, 0)).expect("bind listener");
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Connections waiting in `l`'s accept queue (non-blocking accept).
fn pending(l: &TcpListener) -> usize {
    let mut n = 0;
    loop {
        match l.accept() {
            Ok(_) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A UDP socket on `ip` (port 0), non-blocking.
fn udp(ip: &str) -> (UdpSocket, u16) {
    let s = UdpSocket::bind((ip, 0)).expect("bind udp");
    s.set_nonblocking(true).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// Every datagram waiting on `s`, as strings.
fn received(s: &UdpSocket) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match s.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// Accepts and closes connections on `l` in a thread, counting them.
struct Acceptor {
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(l: TcpListener) -> Acceptor {
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&count), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok(_) => {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Acceptor {
            count,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const ECONNREFUSED: i32 = libc::ECONNREFUSED;

#[test]
fn tcp_allow_list_connects_only_to_allowed_endpoints() {
    let (ok_l, ok_port) = listen("127.0.0.1");
    let (bad_l, bad_port) = listen("127.0.0.1");
    let (other_ip_l, other_ip_port) = listen("127.0.0.2");
    let policy = || {
        allow(&[
            &format!("tcp://127.0.0.1:{ok_port}"),
            &format!("127.0.0.2:{},1", other_ip_port + 1),
        ])
    };

    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.1", ok_port]),
        "connect ok=0\n"
    );
    assert_eq!(pending(&ok_l), 1, "the allowed listener got the connection");

    let out = run(policy(), &args!["connect", "127.0.0.1", bad_port]);
    assert_eq!(out, format!("connect err={ECONNREFUSED}\n"));
    let out = run(policy(), &args!["connect", "127.0.0.2", other_ip_port]);
    assert_eq!(out, format!("connect err={ECONNREFUSED}\n"));
    assert_eq!(
        pending(&bad_l),
        0,
        "a denied listener never sees a connection"
    );
    assert_eq!(pending(&other_ip_l), 0);

    // The kernel's own answer passes through: nothing listens there.
    let closed = free_port();
    let out = run(
        allow(&[&format!("tcp://127.0.0.1:{closed}")]),
        &args!["connect", "127.0.0.1", closed],
    );
    assert_eq!(out, format!("connect err={ECONNREFUSED}\n"));

    // An IPv4-mapped IPv6 destination is matched as IPv4, both ways.
    let out = run(policy(), &args!["mapped", "127.0.0.1", ok_port]);
    assert_eq!(out, "mapped ok=0\n");
    assert_eq!(pending(&ok_l), 1);
    let out = run(policy(), &args!["mapped", "127.0.0.1", bad_port]);
    assert_eq!(out, format!("mapped err={ECONNREFUSED}\n"));
    assert_eq!(pending(&bad_l), 0);
}

#[test]
fn udp_rules_do_not_open_tcp() {
    let (l, port) = listen("127.0.0.1");
    let out = run(
        allow(&[&format!("udp://127.0.0.1:{port}")]),
        &args!["connect", "127.0.0.1", port],
    );
    assert_eq!(out, format!("connect err={ECONNREFUSED}\n"));
    assert_eq!(pending(&l), 0);
}

#[test]
fn cidr_rules() {
    let (a, pa) = listen("127.0.0.1");
    let (b, pb) = listen("127.0.0.2");
    // 127.0.0.0/31 holds .0 and .1, not .2.
    let policy = || allow(&["tcp://127.0.0.0/31"]);
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.1", pa]),
        "connect ok=0\n"
    );
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.2", pb]),
        format!("connect err={ECONNREFUSED}\n")
    );
    assert_eq!((pending(&a), pending(&b)), (1, 0));
    // A wider network with a port list: both addresses, only those ports.
    let policy = || allow(&[&format!("127.0.0.0/30:{pa},{pb}")]);
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.2", pb]),
        "connect ok=0\n"
    );
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.1", pa]),
        "connect ok=0\n"
    );
    assert_eq!((pending(&a), pending(&b)), (1, 1));
}

#[test]
fn deny_list_refuses_only_what_it_names() {
    let (a, pa) = listen("127.0.0.1");
    let (b, pb) = listen("127.0.0.2");
    let (c, pc) = listen("127.0.0.1");
    let policy = || deny(&["127.0.0.2", &format!("tcp://127.0.0.1:{pc}")]);
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.1", pa]),
        "connect ok=0\n"
    );
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.2", pb]),
        format!("connect err={ECONNREFUSED}\n")
    );
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.1", pc]),
        format!("connect err={ECONNREFUSED}\n")
    );
    assert_eq!(
        run(policy(), &args!["mapped", "127.0.0.2", pb]),
        format!("mapped err={ECONNREFUSED}\n")
    );
    assert_eq!((pending(&a), pending(&b), pending(&c)), (1, 0, 0));
    // Under a deny list, UDP sockets work and only denied ports are refused.
    let (u, pu) = udp("127.0.0.1");
    let out = run(policy(), &args!["sendto", "127.0.0.1", pu, "hello"]);
    assert_eq!(out, "sendto ok=5\n");
    assert_eq!(received(&u), ["hello"]);
}

#[test]
fn ipv6_brackets() {
    let (l6, p6) = listen("::1");
    let (l4, p4) = listen("127.0.0.1");
    let policy = || allow(&[&format!("tcp://[::1]:{p6}")]);
    assert_eq!(
        run(policy(), &args!["connect", "::1", p6]),
        "connect ok=0\n"
    );
    assert_eq!(pending(&l6), 1);
    assert_eq!(
        run(policy(), &args!["connect", "127.0.0.1", p4]),
        format!("connect err={ECONNREFUSED}\n")
    );
    assert_eq!(pending(&l4), 0);
    // A bracketed network with a port.
    let policy = allow(&[&format!("[::1/128]:{p6}")]);
    assert_eq!(run(policy, &args!["connect", "::1", p6]), "connect ok=0\n");
    assert_eq!(pending(&l6), 1);
    // And denied by a bracketed deny rule.
    let out = run(
        deny(&[&format!("tcp://[::1]:{p6}")]),
        &args!["connect", "::1", p6],
    );
    assert_eq!(out, format!("connect err={ECONNREFUSED}\n"));
    assert_eq!(pending(&l6), 0);
}

#[test]
fn udp_sendto_sendmsg_sendmmsg() {
    let (ok, pok) = udp("127.0.0.1");
    let (bad, pbad) = udp("127.0.0.1");
    let policy = || allow(&[&format!("udp://127.0.0.1:{pok}")]);

    assert_eq!(
        run(policy(), &args!["sendto", "127.0.0.1", pok, "to-ok"]),
        "sendto ok=5\n"
    );
    assert_eq!(
        run(policy(), &args!["sendto", "127.0.0.1", pbad, "to-bad"]),
        format!("sendto err={ECONNREFUSED}\n")
    );
    assert_eq!(
        run(policy(), &args!["sendmsg", "127.0.0.1", pok, "msg-ok"]),
        "sendmsg ok=6\n"
    );
    assert_eq!(
        run(policy(), &args!["sendmsg", "127.0.0.1", pbad, "msg-bad"]),
        format!("sendmsg err={ECONNREFUSED}\n")
    );
    // All three entries allowed: each msg_len written back.
    assert_eq!(
        run(policy(), &args!["sendmmsg", "127.0.0.1", pok, pok, "m"]),
        "sendmmsg ret=3 err=0 lens=3,3,3\n"
    );
    // The third is denied: the first two are sent, the third untouched.
    assert_eq!(
        run(policy(), &args!["sendmmsg", "127.0.0.1", pok, pbad, "n"]),
        "sendmmsg ret=2 err=0 lens=3,3,777\n"
    );
    // All denied: the first entry's error.
    assert_eq!(
        run(policy(), &args!["sendmmsg", "127.0.0.1", pbad, pbad, "x"]),
        format!("sendmmsg ret=-1 err={ECONNREFUSED} lens=777,777,777\n")
    );
    // A connected UDP socket: connect is checked, send() then just runs.
    assert_eq!(
        run(policy(), &args!["udpconnect", "127.0.0.1", pok, "conn"]),
        "udpconnect ok=0\nsend ok=4\n"
    );
    assert_eq!(
        run(
            policy(),
            &args!["udpconnect", "127.0.0.1", pbad, "conn-bad"]
        ),
        format!("udpconnect err={ECONNREFUSED}\n")
    );

    assert_eq!(
        received(&ok),
        ["to-ok", "msg-ok", "m-0", "m-1", "m-2", "n-0", "n-1", "conn"]
    );
    assert_eq!(
        received(&bad),
        Vec::<String>::new(),
        "nothing reached the denied port"
    );
}

/// A policy callback's denial of a send without a destination (connected
/// socket; the send is made on the program's behalf) comes before the
/// send: nothing arrives.
#[test]
fn a_denied_destinationless_sendmsg_sends_nothing() {
    let (rx, port) = udp("127.0.0.1");
    let sandbox = Sandbox::builder()
        .network(allow(&[&format!("udp://127.0.0.1:{port}")]))
        .policy_fn(
            |ev: &unotify::policy::SyscallEvent, _: &mut unotify::policy::PolicyContext<'_>| {
                if ev.syscall == "sendmsg" {
                    unotify::policy::Verdict::Deny
                } else {
                    unotify::policy::Verdict::Allow
                }
            },
        )
        .build()
        .expect("build sandbox");
    let out = run_with(sandbox, &args!["udpconnmsg", "127.0.0.1", port, "sneaky"]);
    assert_eq!(
        out,
        format!("udpconnect ok=0\nsendmsg err={}\n", libc::EPERM)
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(received(&rx), Vec::<String>::new(), "a denied send arrived");
}

#[test]
fn udp_over_ipv6() {
    let (ok, pok) = udp("::1");
    let policy = || allow(&[&format!("udp://[::1]:{pok}")]);
    assert_eq!(
        run(policy(), &args!["sendto", "::1", pok, "six"]),
        "sendto ok=3\n"
    );
    let (bad, pbad) = udp("::1");
    assert_eq!(
        run(policy(), &args!["sendmsg", "::1", pbad, "nope"]),
        format!("sendmsg err={ECONNREFUSED}\n")
    );
    assert_eq!(received(&ok), ["six"]);
    assert!(received(&bad).is_empty());
}

#[test]
fn socket_creation_filters() {
    let raw = |d: i32| args!["socket", d, libc::SOCK_RAW, libc::IPPROTO_ICMP];
    let dgram = args!["socket", libc::AF_INET, libc::SOCK_DGRAM, 0];
    let dgram_cloexec = args![
        "socket",
        libc::AF_INET6,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        libc::IPPROTO_UDP
    ];
    let ping = args![
        "socket",
        libc::AF_INET,
        libc::SOCK_DGRAM,
        libc::IPPROTO_ICMP
    ];
    let seqpacket = args![
        "socket",
        libc::AF_INET,
        libc::SOCK_SEQPACKET,
        libc::IPPROTO_SCTP
    ];
    let tcp = args![
        "socket",
        libc::AF_INET6,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
        0
    ];
    let unix = args!["socket", libc::AF_UNIX, libc::SOCK_DGRAM, 0];
    let eperm = format!("socket err={}\n", libc::EPERM);
    let eacces = format!("socket err={}\n", libc::EACCES);
    let ok = |out: String| assert!(out.starts_with("socket ok="), "{out}");
    // Ping sockets are refused by the kernel itself unless the group range
    // allows them; allow every group for this test, so that an EACCES below
    // is the policy's.
    let _ping = PingGroups::allow_all();

    // Raw sockets: refused under any policy (this test runs as root, so
    // the kernel alone would have allowed them).
    let tcp_only = || allow(&["tcp://127.0.0.1:80"]);
    assert_eq!(run(tcp_only(), &raw(libc::AF_INET)), eperm);
    assert_eq!(run(tcp_only(), &raw(libc::AF_INET6)), eperm);
    assert_eq!(run(deny(&["127.0.0.2"]), &raw(libc::AF_INET)), eperm);
    // Allow list without UDP/ICMP rules: no such sockets; TCP and AF_UNIX fine.
    assert_eq!(run(tcp_only(), &dgram), eacces);
    assert_eq!(run(tcp_only(), &dgram_cloexec), eacces);
    assert_eq!(run(tcp_only(), &ping), eacces);
    assert_eq!(run(tcp_only(), &seqpacket), eacces);
    ok(run(tcp_only(), &tcp));
    ok(run(tcp_only(), &unix));
    // A UDP rule allows UDP sockets (not ICMP ones).
    let with_udp = || allow(&["udp://127.0.0.1:53"]);
    ok(run(with_udp(), &dgram));
    ok(run(with_udp(), &dgram_cloexec));
    assert_eq!(run(with_udp(), &ping), eacces);
    // An ICMP rule allows them.
    ok(run(allow(&["icmp://127.0.0.1"]), &ping));
    // Deny list: everything not denied works.
    ok(run(deny(&["127.0.0.2"]), &dgram));
    // No policy: nothing filtered (raw sockets work for root, if it keeps
    // CAP_NET_RAW, which the sandbox drops by default).
    let plain = Sandbox::builder().keep_caps(true).build().unwrap();
    ok(run_with(plain, &raw(libc::AF_INET)));
    let plain = Sandbox::builder().build().unwrap();
    assert_eq!(run_with(plain, &raw(libc::AF_INET)), eperm);
}

/// `net.ipv4.ping_group_range` widened to every group until dropped.
struct PingGroups(String);

const PING_GROUPS: &str = "/proc/sys/net/ipv4/ping_group_range";

impl PingGroups {
    fn allow_all() -> PingGroups {
        let old = std::fs::read_to_string(PING_GROUPS).expect("read ping_group_range");
        std::fs::write(PING_GROUPS, "0 2147483647")
            .expect("widen ping_group_range (the tests run as root)");
        PingGroups(old)
    }
}

impl Drop for PingGroups {
    fn drop(&mut self) {
        let _ = std::fs::write(PING_GROUPS, self.0.trim());
    }
}

#[test]
fn unix_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    let unix = || args!["unix", path.display()];
    // Under an allow list a unix destination is a destination too: refused
    // unless a `unix:` rule names it (the socket, its directory, or `*`).
    assert_eq!(
        run(allow(&["tcp://127.0.0.1:1"]), &unix()),
        format!("unix err={ECONNREFUSED}\n")
    );
    assert!(l.accept().is_err(), "nothing reached the unix listener");
    for rule in [
        format!("unix:{}", path.display()),
        format!("unix:{}/", dir.path().display()),
        "unix:*".to_string(),
    ] {
        let out = run(allow(&["tcp://127.0.0.1:1", &rule]), &unix());
        assert_eq!(out, "unix ok=0\n", "{rule}");
        assert!(l.accept().is_ok(), "the unix listener got the connection");
    }
    // A deny list leaves unix destinations alone unless it names them.
    assert_eq!(run(deny(&["127.0.0.2"]), &unix()), "unix ok=0\n");
    assert!(l.accept().is_ok());
    assert_eq!(
        run(deny(&[&format!("unix:{}", path.display())]), &unix()),
        format!("unix err={ECONNREFUSED}\n")
    );
    assert!(l.accept().is_err());
}

#[test]
fn bind_deny_list() {
    let a = free_port();
    let b = free_port();
    let policy = || {
        NetPolicy::from_specs(
            &[],
            &[],
            &strings(&[&format!("{a}"), &format!("{}-{}", b, b)]),
        )
        .unwrap()
    };
    assert_eq!(
        run(policy(), &args!["bind", "tcp", "127.0.0.1", a]),
        format!("bind err={}\n", libc::EACCES)
    );
    assert_eq!(
        run(policy(), &args!["bind", "tcp", "::1", b]),
        format!("bind err={}\n", libc::EACCES)
    );
    // Other ports, port 0, and UDP bind normally.
    let c = free_port();
    assert_eq!(
        run(policy(), &args!["bind", "tcp", "127.0.0.1", c]),
        "bind ok=0\n"
    );
    assert_eq!(
        run(policy(), &args!["bind", "tcp", "127.0.0.1", 0]),
        "bind ok=0\n"
    );
    assert_eq!(
        run(policy(), &args!["bind", "udp", "127.0.0.1", a]),
        "bind ok=0\n"
    );
    // The kernel's own errors come back: the port is in use.
    let (_held, used) = listen("127.0.0.1");
    assert_eq!(
        run(policy(), &args!["bind", "tcp", "127.0.0.1", used]),
        format!("bind err={}\n", libc::EADDRINUSE)
    );
    // Combined with a destination policy.
    let both = NetPolicy::from_specs(
        &strings(&["tcp://127.0.0.1:1"]),
        &[],
        &strings(&[&a.to_string()]),
    )
    .unwrap();
    assert_eq!(
        run(both, &args!["bind", "tcp", "127.0.0.1", a]),
        format!("bind err={}\n", libc::EACCES)
    );
}

/// Runs the client with no sandbox at all: what the kernel alone answers.
fn run_bare(args: &[String]) -> String {
    let out = std::process::Command::new(client())
        .args(args)
        .output()
        .expect("run client");
    assert!(
        out.status.success(),
        "bare client {args:?}: {:?}",
        out.status
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn nonblocking_connect() {
    let (l, port) = listen("127.0.0.1");
    let a = args!["nbconnect", "127.0.0.1", port];
    let out = run(allow(&[&format!("tcp://127.0.0.1:{port}")]), &a);
    // EINPROGRESS, then the connection completes; a second connect on the
    // connected socket answers what the kernel answers without a sandbox.
    assert!(
        out.starts_with(&format!(
            "nbconnect err={}\npoll=1 so_error=0\n",
            libc::EINPROGRESS
        )),
        "{out}"
    );
    assert_eq!(pending(&l), 1);
    assert_eq!(out, run_bare(&a), "the same answers as the kernel's");
    assert_eq!(pending(&l), 1);
    let (bad, bport) = listen("127.0.0.2");
    let out = run(
        allow(&[&format!("tcp://127.0.0.1:{port}")]),
        &args!["nbconnect", "127.0.0.2", bport],
    );
    assert!(
        out.starts_with(&format!("nbconnect err={ECONNREFUSED}\n")),
        "{out}"
    );
    assert_eq!(pending(&bad), 0);
}

#[test]
fn blocking_connect_to_full_backlog_does_not_stall_others() {
    // A listener with backlog 1 holds two unaccepted connections; after that
    // its accept queue is full and further SYNs are dropped: a blocking
    // connect waits (SYN retransmits) until the queue drains.
    let full = listener_backlog1();
    let full_port = full.local_addr().unwrap().port();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match TcpStream::connect_timeout(&full_addr, Duration::from_millis(300)) {
            Ok(c) => fillers.push(c),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(fillers.len() < 10, "the accept queue does not fill up");
    }
    let (other, other_port) = listen("127.0.0.1");
    let acceptor = Acceptor::start(other);

    let sandbox = Sandbox::builder()
        .workers(1)
        .network(allow(&[&format!(
            "tcp://127.0.0.1:{full_port},{other_port}"
        )]))
        .build()
        .unwrap();
    let mut child = sandbox
        .spawn(
            Command::new(client())
                .args(args!["stall", "127.0.0.1", full_port, other_port, 50])
                .stdout(Stdio::Piped),
        )
        .unwrap();
    // Lines from the client, with a deadline: a supervisor that let the
    // blocked connect hold its only worker would stall here for minutes.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next_line = |child: &mut unotify::Child| match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("the client stalled: trapped calls stopped completing");
        }
    };
    let first = next_line(&mut child);
    // 50 connects went through while the first thread was blocked in
    // connect, on a single worker.
    assert!(first.starts_with("others ok=50 "), "{first}");
    assert!(first.ends_with("blocked_done=0"), "{first}");
    let ms: u64 = first
        .split("ms=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms < 5000, "other connects took {ms} ms");
    // Drain the full listener: the blocked connect completes with success.
    let t = Instant::now();
    full.set_nonblocking(true).unwrap();
    let mut drained = 0;
    while drained == 0 && t.elapsed() < Duration::from_secs(5) {
        if let Ok(c) = full.accept() {
            drained += 1;
            drop(c);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(drained > 0);
    assert_eq!(next_line(&mut child), "blocked ret=0 err=0");
    assert!(child.wait().unwrap().success());
    assert!(acceptor.count() >= 50);
}

/// `listen(2)` with backlog 1 (std always uses 128).
fn listener_backlog1() -> TcpListener {
    unotify::sys::net::listen_tcp(([127, 0, 0, 1], 0).into(), 1).expect("listen")
}

#[test]
fn toctou_rewrite_never_reaches_denied_listener() {
    let (ok_l, ok_port) = listen("127.0.0.1");
    let (bad_l, bad_port) = listen("127.0.0.1");
    let acceptor = Acceptor::start(ok_l);
    let out = run(
        allow(&[&format!("tcp://127.0.0.1:{ok_port}")]),
        &args!["toctou", "127.0.0.1", ok_port, bad_port, 2000],
    );
    let field = |name: &str| -> u64 {
        out.split(&format!("{name}="))
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    let (ok, refused, other) = (field("ok"), field("refused"), field("other"));
    assert!(ok > 0 && refused > 0, "both endpoints were tried: {out}");
    assert_eq!(other, 0, "{out}");
    assert_eq!(
        pending(&bad_l),
        0,
        "the denied listener accepted nothing ({out})"
    );
    // Every allowed connect arrived at the allowed listener.
    let t = Instant::now();
    while (acceptor.count() as u64) < ok && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(acceptor.count() as u64, ok);
}

#[test]
fn etc_hosts_shows_resolved_names() {
    let (l, port) = listen("127.0.0.1");
    let policy = || allow(&[&format!("tcp://localhost:{port}")]);
    let expected = policy().resolve().unwrap();
    let hosts = String::from_utf8(expected.hosts_file()).unwrap();
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(
        expected.resolved_names()[0]
            .1
            .contains(&"127.0.0.1".parse().unwrap()),
        "localhost resolves to 127.0.0.1"
    );
    let out = run(policy(), &args!["hosts"]);
    assert_eq!(out, hosts);
    // The program resolves the name the policy resolved, and may connect.
    assert_eq!(
        run(policy(), &args!["resolve", "localhost", port]),
        "resolve ok=0\n"
    );
    assert_eq!(pending(&l), 1);
    // Without host names in the rules, /etc/hosts is the real one.
    let real = std::fs::read_to_string("/etc/hosts").unwrap();
    let out = run(allow(&["tcp://127.0.0.1:1"]), &args!["hosts"]);
    assert_eq!(out, real.chars().take(4095).collect::<String>());
}

#[test]
fn without_policy_nothing_network_is_trapped() {
    let (l, port) = listen("127.0.0.2");
    let (u, uport) = udp("127.0.0.1");
    // The client connects, sends a datagram, then waits for stdin to close;
    // meanwhile the supervisor's counters show what reached it.
    let trapped = |sandbox: Sandbox| -> u64 {
        let mut child = sandbox
            .spawn(
                Command::new(client())
                    .args(args!["netpause", "127.0.0.2", port, uport])
                    .stdin(Stdio::Piped)
                    .stdout(Stdio::Piped),
            )
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "connect ok=0");
        assert_eq!(lines.next().unwrap().unwrap(), "sendto ok=2");
        let stats = child.supervisor().unwrap().stats().unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        stats.received
    };
    assert_eq!(
        trapped(Sandbox::builder().build().unwrap()),
        0,
        "no call reached the supervisor"
    );
    // The same client under a deny list: connect and sendto are trapped.
    let with_policy = Sandbox::builder()
        .network(deny(&["127.0.0.3"]))
        .build()
        .unwrap();
    assert!(trapped(with_policy) >= 2);
    assert_eq!(pending(&l), 2);
    assert_eq!(received(&u), ["hi", "hi"]);
}

#[test]
fn invalid_rules_are_config_errors() {
    let bad = NetPolicy::from_specs(&strings(&["tcp://127.0.0.1:0"]), &[], &[]).unwrap_err();
    let msg = unotify::Error::from(bad).to_string();
    assert!(
        msg.contains("\"tcp://127.0.0.1:0\"") && msg.contains("port 0"),
        "{msg}"
    );
}

/// AF_UNIX calls made on the program's behalf behave as the kernel's own:
/// a relative bind with the program's umask, `SCM_RIGHTS`, a datagram to a
/// path, abstract names (refused under a deny list: see `allows_unix`),
/// and a 3 MiB blocking stream `sendmsg` sent whole.
#[test]
fn unix_calls_on_behalf_behave_as_the_kernels() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/net_unix_ops.py");
    let policy = NetPolicy::from_specs(&[], &strings(&["10.0.0.0/8"]), &strings(&["8080"]))
        .expect("valid rules");
    let sandbox = Sandbox::builder().network(policy).build().unwrap();
    let mut child = sandbox
        .spawn(Command::new("python3").args([script]).stdout(Stdio::Piped))
        .expect("spawn python3");
    let out = common::read_all(&mut child.stdout);
    assert!(child.wait().unwrap().success(), "{out}");
    assert_eq!(
        out,
        "mode 0o700 fd b'hello' dgram b'dgram' abstract refused sent 3145728 3145728\n"
    );
}

/// A program that dropped to another user: its unix calls, made for it by
/// a helper thread with its credentials, see what the kernel would show it
/// (a private directory refused, `SO_PEERCRED` its own user, a bind in a
/// private directory refused).
#[test]
fn unix_calls_carry_the_programs_credentials() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/net_unix_creds.py");
    let expected = "errno=13 ok peer uid=65534 gid=65534 bind errno=13\n";
    let bare = std::process::Command::new("python3")
        .arg(script)
        .output()
        .expect("run python3");
    assert_eq!(String::from_utf8_lossy(&bare.stdout), expected);
    let policy = NetPolicy::from_specs(&[], &strings(&["10.0.0.0/8"]), &strings(&["8080"]))
        .expect("valid rules");
    let sandbox = Sandbox::builder().network(policy).build().unwrap();
    let mut child = sandbox
        .spawn(Command::new("python3").args([script]).stdout(Stdio::Piped))
        .expect("spawn python3");
    let out = common::read_all(&mut child.stdout);
    assert!(child.wait().unwrap().success(), "{out}");
    assert_eq!(out, expected);
}
