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
