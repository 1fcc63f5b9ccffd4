//! Loopback `connect` + `close` under a network policy, against bare.
//!
//! The client is `tests/net_client.c` (`connloop HOST PORT N`: N times
//! socket, connect, close; it prints `ns_per_iter=`). A thread here accepts
//! and drops the connections. Three configurations, run `--runs` times
//! (default 5), interleaved, reported as the median:
//!
//! * **bare**: the client without any sandbox;
//! * **trapped**: a sandbox whose `connect` handler answers `Continue`
//!   (the cost of the round trip alone);
//! * **on-behalf**: a sandbox with an allow list for the listener: each
//!   connect is copied, checked, and performed by the supervisor on a
//!   `pidfd_getfd` duplicate (a blocking connect runs on the deferral pool).
//!
//! `cargo bench --bench net_connect [-- --runs N --iters N]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use unotify::net::NetPolicy;
use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Config {
    Bare,
    Trapped,
    OnBehalf,
}

impl Config {
    const ALL: [Config; 3] = [Config::Bare, Config::Trapped, Config::OnBehalf];

    fn name(self) -> &'static str {
        match self {
            Config::Bare => "bare",
            Config::Trapped => "trapped",
            Config::OnBehalf => "on-behalf",
        }
    }
}

fn parse_ns(out: &str) -> BenchResult<f64> {
    if !out.contains("fails=") {
        return Err(format!("no fails= in {out:?}").into());
    }
    Ok(common::ns_per_iter(out)?)
}

fn run(cfg: Config, prog: &Path, port: u16, iters: u64) -> BenchResult<f64> {
    let args = [
        "connloop".to_string(),
        "127.0.0.1".into(),
        port.to_string(),
        iters.to_string(),
    ];
    let out = match cfg {
        Config::Bare => {
            let out = std::process::Command::new(prog).args(&args).output()?;
            String::from_utf8(out.stdout)?
        }
        Config::Trapped | Config::OnBehalf => {
            let sandbox = if cfg == Config::Trapped {
                Sandbox::builder()
                    .handle("connect", |_cx: &HandlerCtx<'_>| NotifAction::Continue)
                    .build()?
            } else {
                let policy = NetPolicy::from_specs(&[format!("tcp://127.0.0.1:{port}")], &[], &[])?;
                Sandbox::builder().network(policy).build()?
            };
            let mut child = sandbox.spawn(Command::new(prog).args(&args).stdout(Stdio::Piped))?;
            let out = common::read_all(&mut child.stdout);
            child.wait()?;
            out
        }
    };
    parse_ns(&out)
}

/// A listener on 127.0.0.1 with a 4096-deep accept queue (std uses 128).
fn listen_deep() -> io::Result<TcpListener> {
    unotify::sys::net::listen_tcp(([127, 0, 0, 1], 0).into(), 4096)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> BenchResult<()> {
    let mut runs = 5usize;
    let mut iters = 2000u64;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().ok_or("--runs N")?.parse()?,
            "--iters" => iters = it.next().ok_or("--iters N")?.parse()?,
            _ => {} // cargo passes --bench
        }
    }
    let prog = common::build_c(
        "net_client",
        include_str!("../tests/net_client.c"),
        &["-pthread"],
    );
    // A deep accept queue and a blocking acceptor: an overflowing queue
    // drops SYNs, and a retransmitted SYN costs a whole second.
    let listener = listen_deep()?;
    let port = listener.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let acceptor = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            if let Err(e) = listener.accept() {
                panic!("accept: {e}");
            }
        }
    });
    println!("net_connect: loopback socket+connect+close ×{iters}, {runs} runs per configuration (median)");
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); Config::ALL.len()];
    for _ in 0..runs {
        for (i, &cfg) in Config::ALL.iter().enumerate() {
            samples[i].push(run(cfg, &prog, port, iters)?);
        }
    }
    let mut med = Vec::new();
    for (i, cfg) in Config::ALL.iter().enumerate() {
        let all: Vec<String> = samples[i]
            .iter()
            .map(|ns| format!("{:.1}", ns / 1e3))
            .collect();
        let m = median(&mut samples[i]);
        println!(
            "  {:<10} µs/iter median {:>7.1}   runs: {}",
            cfg.name(),
            m / 1e3,
            all.join(" ")
        );
        med.push(m);
    }
    println!(
        "  ratio on-behalf/bare = {:.2}x, trapped/bare = {:.2}x, on-behalf/trapped = {:.2}x",
        med[2] / med[0],
        med[1] / med[0],
        med[2] / med[1]
    );
    stop.store(true, Ordering::Relaxed);
    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    let _ = acceptor.join();
    Ok(())
}
