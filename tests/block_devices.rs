//! Attack: a root program reads (or gets write access to) the blocks of a
//! denied file through the block device its file system is on, around
//! every path rule (`debugfs -R 'cat /secret' /dev/loopN`). Under file
//! confinement the sandbox refuses block devices: in its cgroup (the
//! kernel backstop's `CONTINUE`d opens and the program's own `mknod`s),
//! and in the opens made on its behalf (outside that cgroup; the only
//! refusal when no cgroup is made). A sandbox that confines no file keeps
//! block devices as bare Linux has them.
//!
//! Each test makes an 8 MiB ext4 image on a loop device, mounted in a
//! directory of its own, holding a file with a marker; the image and the
//! device are released even when the test fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use common::{build_c, run_piped, stderr_of};

/// `attack DEV MARK SCRATCH ROUNDS`: each round tries to reach `DEV`'s
/// blocks five ways and counts a leak for each that works: a read-only
/// open that finds `MARK`; a read-write open; an open through a symlink
/// made in `SCRATCH` that finds `MARK`; an `O_PATH` open reopened through
/// `/proc/self/fd` that finds `MARK`; a block node made in `SCRATCH` with
/// `DEV`'s number (made at all, or opened and `MARK` found). Prints
/// `leaks N`.
const ATTACK_C: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
static char buf[1 << 20];
static int finds(int fd, const char *mark) {
    if (fd < 0) return 0;
    off_t off = 0; ssize_t n; int found = 0;
    while (!found && (n = pread(fd, buf, sizeof buf, off)) > 0) {
        found = memmem(buf, n, mark, strlen(mark)) != NULL;
        off += n;
    }
    close(fd);
    return found;
}
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *dev = argv[1], *mark = argv[2], *dir = argv[3];
    int rounds = atoi(argv[4]), leaks = 0;
    struct stat st;
    if (stat(dev, &st) != 0) { perror("stat"); return 1; }
    char lnk[4096], node[4096], proc[64];
    snprintf(lnk, sizeof lnk, "%s/lnk", dir);
    snprintf(node, sizeof node, "%s/node", dir);
    for (int r = 0; r < rounds; r++) {
        leaks += finds(open(dev, O_RDONLY), mark);
        int w = open(dev, O_RDWR);
        if (w >= 0) { leaks++; close(w); }
        unlink(lnk);
        if (symlink(dev, lnk) == 0) leaks += finds(open(lnk, O_RDONLY), mark);
        int p = open(dev, O_PATH);
        if (p >= 0) {
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", p);
            leaks += finds(open(proc, O_RDONLY), mark);
            close(p);
        }
        unlink(node);
        if (mknod(node, S_IFBLK | 0600, st.st_rdev) == 0) {
            leaks++;
            leaks += finds(open(node, O_RDONLY), mark);
            unlink(node);
        }
    }
    printf("leaks %d\n", leaks);
    return 0;
}
"#;

const MARK: &str = "unotify-block-device-marker-5b1f";
const ROUNDS: &str = "3";

/// An ext4 image on a loop device, mounted; unmounted and released when
/// dropped.
struct LoopExt4 {
    dir: PathBuf,
    mnt: PathBuf,
    dev: Option<String>,
}

impl LoopExt4 {
    fn new(name: &str) -> LoopExt4 {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("unotify-blk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("scratch")).unwrap();
        let mnt = dir.join("mnt");
        fs::create_dir(&mnt).unwrap();
        let mut l = LoopExt4 {
            dir,
            mnt,
            dev: None,
        };
        let img = l.dir.join("img");
        fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let run = |cmd: &mut StdCommand| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {}", stderr_of(&out));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        run(StdCommand::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        l.dev = Some(run(StdCommand::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)));
        run(StdCommand::new("mount").arg(l.dev()).arg(&l.mnt));
        let secret = l.secret();
        fs::write(&secret, format!("{MARK}\n")).unwrap();
        fs::File::open(&secret).unwrap().sync_all().unwrap();
        run(&mut StdCommand::new("sync"));
        l
    }

    fn dev(&self) -> &str {
        self.dev.as_deref().expect("a loop device")
    }

    fn secret(&self) -> PathBuf {
        self.mnt.join("secret")
    }

    fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        // (A process of the sandbox may hold the mount for a moment after
        // the program's exit: tried again, then detached lazily.)
        let umount = |lazy: bool| {
            let mut cmd = StdCommand::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.mnt)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut done = false;
        for _ in 0..50 {
            done = umount(false);
            if done {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !done {
            umount(true);
        }
        if let Some(dev) = &self.dev {
            let _ = StdCommand::new("losetup").arg("-d").arg(dev).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The leaks the attack counts under `sandbox` (`None`: bare).
fn leaks(img: &LoopExt4, sandbox: Option<&unotify::Sandbox>) -> u32 {
    let exe = build_c("block_attack", ATTACK_C, &[]);
    let scratch = img.scratch();
    let args = [img.dev(), MARK, scratch.to_str().unwrap(), ROUNDS];
    let out = match sandbox {
        Some(sb) => {
            let (out, status) = run_piped(sb, &exe, &args);
            assert!(status.success(), "attack failed: {status:?} {out}");
            out
        }
        None => {
            let o = StdCommand::new(&exe).args(args).output().unwrap();
            assert!(o.status.success(), "bare attack failed: {}", stderr_of(&o));
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
    };
    out.lines()
        .find_map(|l| l.strip_prefix("leaks "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"))
}

/// The attack's leaks under the sandbox `make` builds for an image,
/// checking the route its denied paths take (`backstop`).
fn leaks_on_route(
    name: &str,
    backstop: bool,
    make: impl FnOnce(&LoopExt4) -> unotify::SandboxBuilder,
) -> u32 {
    let img = LoopExt4::new(name);
    let sb = make(&img).build().unwrap();
    assert_eq!(sb.path_backstop(), backstop, "the route this test is for");
    leaks(&img, Some(&sb))
}

/// Kernel backstop route: the denied path is refused by the program's
/// Landlock domain, opens beneath its rules (all of `/dev`) run as the
/// program's own: its cgroup refuses the device.
#[test]
fn backstop_route_reaches_no_block_device() {
    let n = leaks_on_route("backstop", true, |_| {
        unotify::Sandbox::builder().deny_path("/etc/shadow")
    });
    assert_eq!(n, 0);
}

/// On-behalf route: the denied file's device is opened by the supervisor
/// (outside the sandbox's cgroup) for the program: refused there.
#[test]
fn on_behalf_route_reaches_no_block_device() {
    let n = leaks_on_route("onbehalf", false, |img| {
        unotify::Sandbox::builder()
            .deny_path(img.secret())
            .argv_safety(true)
    });
    assert_eq!(n, 0);
}

/// Without any cgroup: every open is made on the program's behalf (no
/// backstop), and refuses the device.
#[test]
fn without_cgroups_no_block_device_is_reached() {
    let n = leaks_on_route("nocgroup", false, |img| {
        unotify::Sandbox::builder()
            .deny_path(img.secret())
            .cgroups(false)
    });
    assert_eq!(n, 0);
}

/// Allow lists that grant the device node (all of `/`) and a copy-on-write
/// work directory confine files too.
#[test]
fn allow_lists_and_work_directories_reach_no_block_device() {
    let img = LoopExt4::new("lists");
    let lists = unotify::Sandbox::builder()
        .fs_read("/")
        .fs_write(img.scratch())
        .build()
        .unwrap();
    assert_eq!(leaks(&img, Some(&lists)), 0, "allow lists");
    let wd = img.dir.join("wd");
    fs::create_dir(&wd).unwrap();
    let cow = unotify::Sandbox::builder().workdir(&wd).build().unwrap();
    assert_eq!(leaks(&img, Some(&cow)), 0, "work directory");
}

/// The default: a sandbox that confines no file reaches block devices
/// as bare Linux does (here, as root: every way the attack tries but the
/// block node, whose `mknod` needs `CAP_MKNOD`, dropped by default).
#[test]
fn without_file_confinement_block_devices_stay_as_bare() {
    let img = LoopExt4::new("plain");
    let bare = leaks(&img, None);
    assert!(bare > 0, "bare Linux reads the device (run as root)");
    let sb = unotify::Sandbox::builder().build().unwrap();
    let rounds: u32 = ROUNDS.parse().unwrap();
    // Bare: 5 per round (+1 for making the node). Sandboxed: 4 per round.
    assert_eq!(leaks(&img, Some(&sb)), 4 * rounds);
    assert_eq!(bare, 6 * rounds);
}

/// A program that keeps its capabilities (`CAP_MKNOD` among them) makes
/// no block node either: path denial makes nodes on its behalf, outside
/// the sandbox's cgroup; the filter refuses a block device's `mknod`.
#[test]
fn kept_capabilities_make_no_block_node() {
    let img = LoopExt4::new("caps");
    let sb = unotify::Sandbox::builder()
        .deny_path(img.secret())
        .keep_caps(true)
        .build()
        .unwrap();
    assert_eq!(leaks(&img, Some(&sb)), 0);
}

/// `detach PROGRAM ARGS...`: detaches every device program of its own
/// cgroup v2 directory (found, as a program with `CAP_SYS_ADMIN` would
/// find it, through `BPF_PROG_QUERY` and `BPF_PROG_GET_FD_BY_ID`), prints
/// how many it detached, then runs PROGRAM.
const DETACH_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static long bpf(int c, union bpf_attr *a) { return syscall(SYS_bpf, c, a, sizeof *a); }
int main(int argc, char **argv) {
    char cg[4096] = {0}, line[4096];
    const char *root = access("/sys/fs/cgroup/unified", F_OK) == 0 ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
    FILE *f = fopen("/proc/self/cgroup", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(cg, sizeof cg, "%s%s", root, line + 3);
        }
    int detached = 0, cfd = open(cg, O_RDONLY | O_DIRECTORY);
    __u32 ids[16];
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.query.target_fd = cfd;
    a.query.attach_type = BPF_CGROUP_DEVICE;
    a.query.prog_ids = (unsigned long)ids;
    a.query.prog_cnt = 16;
    if (cfd >= 0 && bpf(BPF_PROG_QUERY, &a) == 0)
        for (unsigned i = 0; i < a.query.prog_cnt; i++) {
            union bpf_attr g, d;
            memset(&g, 0, sizeof g);
            g.prog_id = ids[i];
            int pfd = bpf(BPF_PROG_GET_FD_BY_ID, &g);
            memset(&d, 0, sizeof d);
            d.target_fd = cfd;
            d.attach_bpf_fd = pfd;
            d.attach_type = BPF_CGROUP_DEVICE;
            if (pfd >= 0 && bpf(BPF_PROG_DETACH, &d) == 0) detached++;
        }
    printf("detached %d\n", detached);
    fflush(stdout);
    execv(argv[1], argv + 1);
    return 127;
}
"#;

/// Red team: a program that keeps its capabilities (`CAP_SYS_ADMIN`)
/// detached the cgroup v2 device program with `bpf` and read the device
/// (detached 1, then 9 leaks in 3 rounds, before); `bpf` is refused
/// under file confinement.
#[test]
fn kept_capabilities_detach_no_device_program() {
    let img = LoopExt4::new("detach");
    let sb = unotify::Sandbox::builder()
        .deny_path(img.secret())
        .keep_caps(true)
        .build()
        .unwrap();
    let detach = build_c("block_detach", DETACH_C, &[]);
    let attack = build_c("block_attack", ATTACK_C, &[]);
    let scratch = img.scratch();
    let args = [
        attack.to_str().unwrap(),
        img.dev(),
        MARK,
        scratch.to_str().unwrap(),
        ROUNDS,
    ];
    let (out, status) = run_piped(&sb, &detach, &args);
    assert!(status.success(), "{status:?} {out}");
    assert!(out.contains("detached 0\n"), "{out}");
    let leaks: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("leaks "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"));
    assert_eq!(leaks, 0, "{out}");
}
