//! Attacks on the network policy, run under a real supervisor: each C
//! program (`tests/net_attack.c`) tries, in a bounded loop, to get past the
//! policy; the test counts, from outside, what got through, and asserts 0.

mod common;

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use unotify::net::NetPolicy;
use unotify::{Command, Sandbox, Stdio};

fn attacker() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| common::build_c("net_attack", include_str!("net_attack.c"), &["-pthread"]))
        .clone()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn run(policy: NetPolicy, args: &[String]) -> String {
    let sandbox = Sandbox::builder().network(policy).build().expect("build");
    let mut child = sandbox
        .spawn(Command::new(attacker()).args(args).stdout(Stdio::Piped))
        .expect("spawn");
    let out = common::read_all(&mut child.stdout);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{args:?}: {status:?}\n{out}");
    out
}

fn field(out: &str, name: &str) -> u64 {
    out.split(&format!("{name}="))
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// Accepts connections on `l` until `stop`, counting them (a full accept
/// queue would leave later connects hanging).
fn acceptor(l: TcpListener, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut n = 0;
        loop {
            match l.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::Relaxed) {
                        return n;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    })
}

fn drain_udp(s: &UdpSocket) -> u64 {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0;
    loop {
        match s.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// A second thread `dup2`s a socket that would reach a refused port onto
/// the fd the first thread is calling on: no call may reach it.
#[test]
fn fd_swap_never_reaches_a_refused_port() {
    let mut results = Vec::new();
    for op in ["connect", "sendto", "sendmsg", "sendmmsg"] {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let policy =
            NetPolicy::from_specs(&[], &strings(&[&format!("127.0.0.1:{port}")]), &[]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = acceptor(tcp, Arc::clone(&stop));
        let out = run(policy, &strings(&["swap", op, &port.to_string(), "2000"]));
        stop.store(true, Ordering::Relaxed);
        let reached = accepted.join().unwrap() + drain_udp(&udp);
        eprintln!("{op}: {out} reached={reached}");
        assert!(field(&out, "calls") > 0, "{out}");
        results.push((op, reached, out));
    }
    for (op, reached, out) in &results {
        assert_eq!(*reached, 0, "{op}: {out}; all: {results:?}");
    }
}

#[test]
fn fd_swap_never_binds_a_denied_port() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let policy = NetPolicy::from_specs(&[], &[], &strings(&[&port.to_string()])).unwrap();
    let out = run(
        policy,
        &strings(&["swap", "bind", &port.to_string(), "2000"]),
    );
    eprintln!("bind: {out}");
    assert!(field(&out, "calls") > 0, "{out}");
    assert_eq!(field(&out, "bound"), 0, "{out}");
}

/// Only the families a user expects can be created under a network policy.
#[test]
fn odd_socket_families_are_refused() {
    let policy = NetPolicy::from_specs(&[], &strings(&["127.0.0.2"]), &[]).unwrap();
    let out = run(policy, &strings(&["families"]));
    assert_eq!(field(&out, "created"), 0, "{out}");
    assert_eq!(field(&out, "usable"), 4, "{out}");
    let eafnosupport = "Address family not supported by protocol"; // strerror(EAFNOSUPPORT)
    for name in [
        "vsock",
        "xdp",
        "netlink_diag",
        "netlink_audit",
        "netlink_uevent",
    ] {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(line.ends_with(eafnosupport), "{line}");
    }
}

/// A source route would take a packet to a refused host as a hop, whatever
/// the destination: refused as a socket option and as a control message.
#[test]
fn source_routes_are_refused() {
    let u4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = u4.local_addr().unwrap().port();
    let u6 = UdpSocket::bind(("::1", port)).unwrap();
    let policy = NetPolicy::from_specs(
        &strings(&[
            &format!("udp://127.0.0.1:{port}"),
            &format!("udp://[::1]:{port}"),
        ]),
        &[],
        &[],
    )
    .unwrap();
    let out = run(policy, &strings(&["srcroute", &port.to_string()]));
    eprintln!("{out}");
    assert_eq!(field(&out, "through"), 0, "{out}");
    assert_eq!(out.matches("Operation not permitted").count(), 5, "{out}");
    assert_eq!(drain_udp(&u4) + drain_udp(&u6), 0);
}

/// `listen()` without `bind()` picks a port: it is checked like a bind.
#[test]
fn listen_autobind_is_checked() {
    let policy = NetPolicy::from_specs(&[], &[], &strings(&["1024-65535"])).unwrap();
    let out = run(policy, &strings(&["autolisten", "1024", "65535", "50"]));
    eprintln!("{out}");
    assert_eq!(field(&out, "inrange"), 0, "{out}");
    // Outside the list, it listens as usual.
    let policy = NetPolicy::from_specs(&[], &[], &strings(&["80"])).unwrap();
    let out = run(policy, &strings(&["autolisten", "1024", "65535", "10"]));
    assert_eq!(field(&out, "listening"), 10, "{out}");
}

/// A program that exits while an on-behalf connect is blocked: the
/// sandbox ends at once, not when the connect or its deferral times out.
#[test]
fn exit_with_a_blocked_connect_returns_at_once() {
    // A listener with backlog 1 and a full accept queue: SYNs are dropped,
    // a blocking connect waits (SYN retransmits).
    let full = unotify::sys::net::listen_tcp(([127, 0, 0, 1], 0).into(), 1).unwrap();
    let addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(c) => fillers.push(c),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(fillers.len() < 10, "the accept queue does not fill up");
    }
    let policy = NetPolicy::from_specs(&strings(&[&format!("tcp://{addr}")]), &[], &[]).unwrap();
    let sandbox = Sandbox::builder().network(policy).build().unwrap();
    let t = std::time::Instant::now();
    let mut child = sandbox
        .spawn(
            Command::new(attacker())
                .args(strings(&["exitconnect", &addr.port().to_string()]))
                .stdout(Stdio::Piped),
        )
        .unwrap();
    let out = common::read_all(&mut child.stdout);
    assert!(child.wait().unwrap().success(), "{out}");
    let took = t.elapsed();
    eprintln!("exitconnect: {took:?}; {out}");
    assert_eq!(out, "exiting\n");
    assert!(took < Duration::from_secs(2), "wait took {took:?}");
}

/// Under an allow list a unix path is a destination: a thread rewriting the
/// path between an allowed and a refused socket never reaches the refused one.
#[test]
fn unix_path_rewrite_never_reaches_a_refused_socket() {
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir().unwrap();
    let (ok_path, bad_path) = (dir.path().join("ok"), dir.path().join("bad"));
    let count = |l: UnixListener, stop: Arc<AtomicBool>| {
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                match l.accept() {
                    Ok(_) => n += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if stop.load(Ordering::Relaxed) {
                            return n;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let ok = count(UnixListener::bind(&ok_path).unwrap(), Arc::clone(&stop));
    let bad = count(UnixListener::bind(&bad_path).unwrap(), Arc::clone(&stop));
    let policy = NetPolicy::from_specs(
        &strings(&[&format!("unix:{}", ok_path.display())]),
        &[],
        &[],
    )
    .unwrap();
    let out = run(
        policy,
        &strings(&[
            "unixflip",
            &ok_path.display().to_string(),
            &bad_path.display().to_string(),
            "2000",
        ]),
    );
    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = (ok.join().unwrap(), bad.join().unwrap());
    eprintln!("unixflip: {out} ok={ok} bad={bad}");
    // (Whether the copy ever shows the allowed path depends on timing; the
    // allowed path itself is tested in tests/net.rs, unix_destinations.)
    assert!(field(&out, "calls") > 0, "{out}");
    assert_eq!(field(&out, "ok"), ok, "{out}");
    assert_eq!(bad, 0, "{out}");
}
