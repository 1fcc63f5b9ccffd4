//! What `restrict_process_network` costs the processes it does not reach
//! (their network checks) and those it does (their forks).
//!
//! The client (C, built into the target directory) first forks a helper
//! that binds a socket (the callback restricts the binder, if asked, to
//! 127.0.0.0/8) and waits; then it forks a chain of `--depth` processes
//! (default 8) and the last one runs the measured loop, printing
//! `ns_per_iter=`:
//!
//! * **connect, nothing restricted** / **connect, another restricted**:
//!   `--iters` loopback connects of a process no restriction reaches, while
//!   no process / the helper is restricted (each connect is held for the
//!   callback either way; the difference is the restriction lookup);
//! * **fork, free** / **fork, restricted**: `--forks` fork + exit + wait
//!   cycles of the helper, unrestricted / restricted (a restricted
//!   process's fork is traced for its creation event).
//!
//! Each configuration runs `--runs` times (default 5), interleaved; the
//! medians are printed.
//!
//! `cargo bench --bench policy_restricted [-- --runs N --iters N --forks N --depth N]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::TcpListener;

use unotify::policy::{PolicyContext, SyscallEvent, Verdict};
use unotify::{Command, Sandbox, Stdio};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const CLIENT: &str = r#"
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static struct sockaddr_in to(int port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(0x7f000001);
    return sa;
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}
/* argv: port, what (connect|fork), n, depth, bind (b|-) */
int main(int argc, char **argv) {
    if (argc < 6) return 2;
    int port = atoi(argv[1]), fork_loop = !strcmp(argv[2], "fork");
    long n = atol(argv[3]);
    int depth = atoi(argv[4]), binds = argv[5][0] == 'b';
    int hold[2], done[2];
    if (pipe(hold) || pipe(done)) return 3;
    pid_t helper = fork();
    if (helper == 0) {
        close(hold[1]);
        if (binds) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = to(0);
            bind(s, (struct sockaddr *)&sa, sizeof sa);
            close(s);
        }
        if (fork_loop) {
            double a = now();
            for (long i = 0; i < n; i++) {
                pid_t p = fork();
                if (p == 0) _exit(0);
                if (p < 0) { perror("fork"); _exit(1); }
                waitpid(p, NULL, 0);
            }
            printf("ns_per_iter=%.0f\n", (now() - a) / n);
            fflush(stdout);
        }
        write(done[1], "x", 1);
        char c;
        read(hold[0], &c, 1);
        _exit(0);
    }
    char c;
    read(done[0], &c, 1);
    if (!fork_loop) {
        for (int d = 0; d < depth; d++) {
            pid_t p = fork();
            if (p != 0) { waitpid(p, NULL, 0); goto out; }
        }
        int fails = 0;
        double a = now();
        for (long i = 0; i < n; i++) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = to(port);
            fails += connect(s, (struct sockaddr *)&sa, sizeof sa) != 0;
            close(s);
        }
        printf("ns_per_iter=%.0f fails=%d\n", (now() - a) / n, fails);
        fflush(stdout);
        _exit(0);
    }
out:
    close(hold[1]);
    waitpid(helper, NULL, 0);
    return 0;
}
"#;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> BenchResult<()> {
    let (mut runs, mut iters, mut forks, mut depth) = (5usize, 2000u64, 500u64, 8u32);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} N"));
        match a.as_str() {
            "--runs" => runs = value()?.parse()?,
            "--iters" => iters = value()?.parse()?,
            "--forks" => forks = value()?.parse()?,
            "--depth" => depth = value()?.parse()?,
            _ => {} // cargo passes --bench
        }
    }
    let prog = common::build_c("policy_restricted", CLIENT, &[]);
    // A deep accept queue, drained by a thread: an overflowing queue drops
    // SYNs, and a retransmitted SYN costs a whole second.
    let listener: TcpListener = unotify::sys::net::listen_tcp(([127, 0, 0, 1], 0).into(), 4096)?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let sandbox = Sandbox::builder()
        .policy_fn(|ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "bind" {
                let lo = "127.0.0.0/8".parse().expect("a network");
                cx.restrict_process_network(ev.pid, &[lo]);
            }
            Verdict::Allow
        })
        .build()?;
    let configs: [(&str, &str, u64, &str); 4] = [
        ("connect, nothing restricted", "connect", iters, "-"),
        ("connect, another restricted", "connect", iters, "b"),
        ("fork, free", "fork", forks, "-"),
        ("fork, restricted", "fork", forks, "b"),
    ];
    let mut times = vec![Vec::new(); configs.len()];
    for _ in 0..runs {
        for (i, (_, what, n, binds)) in configs.iter().enumerate() {
            let args = [
                port.to_string(),
                (*what).into(),
                n.to_string(),
                depth.to_string(),
                (*binds).into(),
            ];
            let mut child = sandbox.spawn(Command::new(&prog).args(&args).stdout(Stdio::Piped))?;
            let out = common::read_all(&mut child.stdout);
            child.wait()?;
            times[i].push(common::ns_per_iter(&out)?);
        }
    }
    println!("policy_restricted: depth {depth}, {runs} runs, medians");
    for ((name, ..), t) in configs.iter().zip(&mut times) {
        println!("  {name:<30} {:>9.1} us/iter", median(t) / 1000.0);
    }
    Ok(())
}
