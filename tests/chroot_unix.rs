//! Unix socket pathnames under `--chroot`: `bind`, `connect` and sends
//! resolve them in the view. A server and its client inside the view
//! talk; the escapes (`..` past the root, absolute symlinks to the host's
//! directories, a thread swapping a directory for such a symlink) reach no
//! host socket and make no socket file outside the view, each counted in a
//! bounded loop (0).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The rootfs (`root`) and a directory outside it holding host sockets.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    for d in ["tmp", "proc", "work", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    Setup {
        _tmp: tmp,
        root,
        outside,
    }
}

fn cli(s: &Setup) -> Vec<String> {
    let mut v = vec![
        "run".to_owned(),
        "--chroot".into(),
        s.root.display().to_string(),
    ];
    for m in ["/usr", "/bin", "/lib", "/lib64", "/etc/alternatives"] {
        if Path::new(m).is_dir() {
            std::fs::create_dir_all(s.root.join(&m[1..])).ok();
            v.extend(["--mount".into(), format!("{m}:{m}:ro")]);
        }
    }
    v.extend(["--mount".into(), "/dev:/dev:ro".into()]);
    v
}

fn run(s: &Setup, argv: &[&str]) -> std::process::Output {
    let mut args = cli(s);
    args.push("--".into());
    args.extend(argv.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_unotify(&args)
}

#[test]
fn a_server_and_its_client_talk_through_a_socket_of_the_view() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "unix in the view");
    let s = setup();
    let py = r#"
import os, socket, threading
srv = socket.socket(socket.AF_UNIX)
srv.bind("/tmp/srv.sock")
srv.listen(1)
def serve():
    c, _ = srv.accept()
    c.sendall(c.recv(64).upper())
    c.close()
t = threading.Thread(target=serve)
t.start()
k = socket.socket(socket.AF_UNIX)
k.connect("/tmp/srv.sock")
k.sendall(b"hello")
print(k.recv(64).decode())
t.join()
os.chdir("/work")
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.bind("dg.sock")
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"datagram", "/work/dg.sock")
print(d.recv(64).decode())
for bad in ["/work", "/no/such.sock"]:
    try:
        socket.socket(socket.AF_UNIX).connect(bad)
    except OSError as e:
        print(bad, e.errno)
"#;
    let out = run(&s, &["python3", "-c", py]);
    assert_eq!(common::stderr_of(&out), "", "python printed errors");
    assert_eq!(
        common::stdout_of(&out),
        format!(
            "HELLO\ndatagram\n/work {}\n/no/such.sock {}\n",
            libc::ECONNREFUSED,
            libc::ENOENT
        )
    );
    // The socket files are in the rootfs.
    use std::os::unix::fs::FileTypeExt;
    for f in ["tmp/srv.sock", "work/dg.sock"] {
        let m = std::fs::symlink_metadata(s.root.join(f)).expect("socket file in the rootfs");
        assert!(m.file_type().is_socket(), "{f}");
    }
}

/// In the view: `argv[1]` the host directory (outside the view) holding
/// `host.sock` (stream) and `host.dgram`, `argv[2]` rounds. Counts, per
/// escape, connects and sends that reached a socket and binds that
/// succeeded (each also checked from the host afterwards).
const ATTACK_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static const char *host;
static volatile int stop;
static int addr(struct sockaddr_un *a, const char *p) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (strlen(p) >= sizeof a->sun_path) return -1;
    strcpy(a->sun_path, p);
    return 0;
}
static int try_connect(const char *p) {
    struct sockaddr_un a;
    if (addr(&a, p)) return 0;
    int s = socket(AF_UNIX, SOCK_STREAM, 0), ok = 0;
    if (s < 0) return 0;
    ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}
static int try_send(const char *p) {
    struct sockaddr_un a;
    if (addr(&a, p)) return 0;
    int s = socket(AF_UNIX, SOCK_DGRAM, 0), ok = 0;
    if (s < 0) return 0;
    ok = sendto(s, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&a, sizeof a) == 1;
    close(s);
    return ok;
}
static int try_bind(const char *p) {
    struct sockaddr_un a;
    if (addr(&a, p)) return 0;
    int s = socket(AF_UNIX, SOCK_STREAM, 0), ok = 0;
    if (s < 0) return 0;
    ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}
static void *swapper(void *arg) {
    (void)arg;
    while (!stop) {
        rename("/tmp/swap-link", "/tmp/swap");
        mkdir("/tmp/swap-dir", 0755);
        rename("/tmp/swap-dir", "/tmp/swap");
        symlink(host, "/tmp/swap-link");
        unlink("/tmp/swap");
        rmdir("/tmp/swap");
    }
    return 0;
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    host = argv[1];
    int n = atoi(argv[2]);
    char dotdot[300], dotdot_dg[300], dotdot_bind[300];
    snprintf(dotdot, sizeof dotdot, "/../../../..%s/host.sock", host);
    snprintf(dotdot_dg, sizeof dotdot_dg, "/../../../..%s/host.dgram", host);
    snprintf(dotdot_bind, sizeof dotdot_bind, "/../../../..%s/made-dotdot.sock", host);
    /* An absolute symlink to the host's socket and one to its directory. */
    char target[300];
    snprintf(target, sizeof target, "%s/host.sock", host);
    symlink(target, "/tmp/to-sock");
    symlink(host, "/tmp/to-dir");
    symlink(host, "/tmp/swap-link");
    int dd = 0, ddg = 0, ddb = 0, ls = 0, ld = 0, lb = 0, sw = 0, swb = 0, rel = 0;
    chdir("/tmp");
    for (int i = 0; i < n; i++) {
        dd += try_connect(dotdot);
        ddg += try_send(dotdot_dg);
        ddb += try_bind(dotdot_bind);
        ls += try_connect("/tmp/to-sock");
        ld += try_connect("/tmp/to-dir/host.sock") + try_send("/tmp/to-dir/host.dgram");
        lb += try_bind("/tmp/to-dir/made-link.sock");
        rel += try_connect("../../../../../../..") + try_connect("to-dir/host.sock");
    }
    pthread_t t;
    if (pthread_create(&t, 0, swapper, 0)) return 2;
    for (int i = 0; i < 20 * n; i++) {
        sw += try_connect("/tmp/swap/host.sock") + try_send("/tmp/swap/host.dgram");
        swb += try_bind("/tmp/swap/made-swap.sock");
    }
    stop = 1;
    pthread_join(t, 0);
    printf("dotdot-connect %d\ndotdot-send %d\ndotdot-bind %d\nlink-to-socket %d\n"
           "link-to-dir %d\nlink-to-dir-bind %d\nrelative %d\nswap %d\nswap-bind %d\n",
           dd, ddg, ddb, ls, ld, lb, rel, sw, swb);
    return 0;
}
"#;

#[test]
fn socket_paths_reach_nothing_outside_the_view() {
    let _w = common::watchdog(std::time::Duration::from_secs(180), "unix escapes");
    let s = setup();
    // Host sockets outside the view, counting what reaches them.
    let listener = UnixListener::bind(s.outside.join("host.sock")).expect("bind");
    let dgram = UnixDatagram::bind(s.outside.join("host.dgram")).expect("bind");
    dgram.set_nonblocking(true).expect("nonblocking");
    let accepted = Arc::new(AtomicU32::new(0));
    {
        let accepted = Arc::clone(&accepted);
        listener.set_nonblocking(false).expect("blocking");
        std::thread::spawn(move || {
            for c in listener.incoming() {
                match c {
                    Ok(mut c) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = c.write_all(b"HOST");
                        let mut b = [0u8; 1];
                        let _ = c.read(&mut b);
                    }
                    Err(_) => break,
                }
            }
        });
    }
    let exe = common::build_c("chroot_unix_attack", ATTACK_C, &["-pthread"]);
    std::fs::copy(&exe, s.root.join("work/attack")).expect("copy");
    let out = run(&s, &["/work/attack", s.outside.to_str().unwrap(), "30"]);
    let text = common::stdout_of(&out);
    println!("{text}");
    assert!(out.status.success(), "{text}{}", common::stderr_of(&out));
    let lines: Vec<(&str, u64)> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.parse().ok()?))
        })
        .collect();
    assert_eq!(lines.len(), 9, "every attack reports: {text}");
    let leaks: Vec<_> = lines.iter().filter(|(_, n)| *n > 0).collect();
    let mut buf = [0u8; 16];
    let mut datagrams = 0;
    while dgram.recv(&mut buf).is_ok() {
        datagrams += 1;
    }
    let made: Vec<_> = std::fs::read_dir(&s.outside)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("made"))
        .collect();
    assert!(leaks.is_empty(), "escapes got through: {leaks:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "host connections");
    assert_eq!(datagrams, 0, "host datagrams");
    assert!(made.is_empty(), "sockets made outside the view: {made:?}");
}
