//! Control groups for one sandbox: where they can be made, the memory limit
//! they carry, the sandbox's membership, and the kill that ends it.
//!
//! Owns the directories it creates (`unotify-<pid>-<random>-<n>`, under this
//! process's own cgroup in each hierarchy it uses) and removes them when the
//! sandbox ends, on every path ([`Containment`]'s `Drop`). Uses the file
//! system and raw system calls only; the sandbox's spawn path calls it.
//!
//! What is used, in order of preference:
//! - membership and the kill: cgroup v2 (`cgroup.kill`, Linux 5.14; also
//!   the unified hierarchy of a hybrid host), else the v1 `freezer` (freeze,
//!   kill every listed process, thaw), else any v1 hierarchy made for the
//!   sandbox (kill every listed process, until none is left);
//! - memory: v2 `memory.max` + `memory.swap.max = 0` where the `memory`
//!   controller is enabled for (or can be enabled in) this process's
//!   cgroup, else the v1 `memory` controller (`memory.limit_in_bytes`, and
//!   `memory.memsw.limit_in_bytes` where swap is accounted, and
//!   `memory.kmem.tcp.limit_in_bytes`: v1 counts TCP socket buffers only
//!   once it is written).
//!
//! Not `memory.oom.group`: a v2 host would then kill the whole sandbox
//! where a v1 host and the accounting fallback kill the one task that went
//! over, and a shell could no longer report its child's death.
//!
//! The pids controller is not used for the process limit: `pids.max` counts
//! threads, and the limit counts processes (threads are free). The limit
//! stays the supervisor's count of trapped forks, reconciled against the
//! membership here, which holds every process from its creation (a child
//! starts in its parent's cgroups), `setsid` or not.
//!
//! [`Watchdog`]: a small process outside the sandbox that ends it when the
//! supervisor's process dies (see its documentation).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::raw::syscall;

/// How the sandbox's memory is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryMode {
    /// A cgroup v2 `memory.max` (every kind of memory the sandbox uses).
    CgroupV2(PathBuf),
    /// A cgroup v1 `memory.limit_in_bytes` (every kind of memory).
    CgroupV1(PathBuf),
    /// No memory cgroup could be made (the reason): the supervisor charges
    /// the memory calls it traps.
    Accounting(String),
}

/// How the whole sandbox is found and killed when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainMode {
    /// A cgroup v2 directory, killed with `cgroup.kill`.
    CgroupV2Kill(PathBuf),
    /// A cgroup v1 freezer directory: frozen, every process killed, thawed.
    CgroupV1Freezer(PathBuf),
    /// A cgroup v1 directory: every listed process killed until none is left.
    CgroupV1Procs(PathBuf),
    /// No cgroup could be made (the reason): only the program's process
    /// group is killed, and what left it survives.
    ProcessGroup(String),
}

/// How block devices are refused to a sandbox (file confinement needs it:
/// see `sys::devices`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceMode {
    /// A device program attached to the sandbox's cgroup v2 directory.
    CgroupV2,
    /// A cgroup v1 `devices` directory made for the sandbox, beneath this
    /// one.
    CgroupV1(PathBuf),
    /// Neither can be had here (the reason).
    Unavailable(String),
}

/// One cgroup hierarchy this process is in.
#[derive(Debug, Clone)]
struct Hierarchy {
    /// The v1 controllers (`["memory"]`, `["cpu", "cpuacct"]`), or empty for v2.
    controllers: Vec<String>,
    v2: bool,
    /// This process's cgroup directory in it.
    dir: PathBuf,
}

/// The hierarchies mounted here and this process's place in each, from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`: found once per process
/// (from the mount table [`mount_points`] read, if it came first).
fn hierarchies() -> &'static [Hierarchy] {
    HIERARCHIES.get_or_init(|| hierarchies_in(&read_mountinfo()))
}

static HIERARCHIES: OnceLock<Vec<Hierarchy>> = OnceLock::new();

/// `/proc/self/mountinfo` (empty if it cannot be read).
fn read_mountinfo() -> String {
    read_proc("/proc/self/mountinfo")
}

/// A small procfs file (empty if it cannot be read), in one or two reads:
/// its size is unknown, and `read_to_string` alone starts at 32 bytes.
///
/// Read into a buffer of that size with plain `read`s: `read_to_string`
/// would first ask the file's size (`statx`, then `lseek`), which procfs
/// does not know, on the start path of every `unotify run`.
fn read_proc(path: &str) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    let read = fs::File::open(path).and_then(|mut f| loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => return Ok(()),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    });
    buf.truncate(len);
    match read.map(|()| String::from_utf8(buf)) {
        Ok(Ok(text)) => text,
        _ => String::new(),
    }
}

/// [`hierarchies`] in the mount table `mounts`.
fn hierarchies_in(mounts: &str) -> Vec<Hierarchy> {
    hierarchies_of(mounts, &read_proc("/proc/self/cgroup"))
}

/// The hierarchies mounted in the mount table `mounts` (mountinfo's text)
/// that this process is in, by `own` (`/proc/self/cgroup`'s text).
///
/// On the start path of every `unotify run`: a line that is not a cgroup
/// mount is passed over after one search, with nothing allocated.
fn hierarchies_of(mounts: &str, own: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mounts.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let v2 = match r.next() {
            Some("cgroup2") => true,
            Some("cgroup") => false,
            _ => continue,
        };
        let (Some(_source), Some(superopts)) = (r.next(), r.next()) else {
            continue;
        };
        let mut l = left.split(' ').skip(3);
        let (Some(root), Some(point)) = (l.next(), l.next()) else {
            continue;
        };
        let controllers: Vec<&str> = if v2 {
            Vec::new()
        } else {
            superopts
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                .collect()
        };
        if !v2 && controllers.is_empty() {
            continue; // a named hierarchy (name=systemd): no controller
        }
        // Our path in it: "0::/x" for v2, "N:ctrl,ctrl:/x" for v1.
        let path = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let matches = if v2 {
                ctrls.is_empty()
            } else {
                controllers
                    .iter()
                    .all(|c| ctrls.split(',').any(|x| x == *c))
            };
            matches.then_some(path)
        });
        let Some(path) = path else { continue };
        if out.iter().any(|h: &Hierarchy| {
            h.v2 == v2
                && h.controllers
                    .iter()
                    .map(String::as_str)
                    .eq(controllers.iter().copied())
        }) {
            continue; // mounted twice
        }
        let (root, point) = (
            super::mountinfo::unescape(root),
            super::mountinfo::unescape(point),
        );
        // Paths are relative to the mount's root (a cgroup namespace or a
        // bind mount of a sub-tree).
        let rel = Path::new(path)
            .strip_prefix(&root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| PathBuf::from(path.trim_start_matches('/')));
        let dir = Path::new(&point).join(rel.strip_prefix("/").unwrap_or(&rel));
        out.push(Hierarchy {
            controllers: controllers.into_iter().map(str::to_owned).collect(),
            v2,
            dir,
        });
    }
    out
}

/// Where a cgroup file system (v1 or v2) is mounted here, from
/// `/proc/self/mountinfo`: the places a sandboxed program must not write
/// (moving itself out of its cgroups, or raising their limits).
///
/// Read afresh at each call (a cgroup file system mounted since counts);
/// the hierarchies of this process are taken from the same read when they
/// are not known yet, which spares a sandbox's first spawn a second one.
pub fn mount_points() -> Vec<PathBuf> {
    let mounts = read_mountinfo();
    HIERARCHIES.get_or_init(|| hierarchies_in(&mounts));
    mounts
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            matches!(right.split(' ').next()?, "cgroup" | "cgroup2")
                .then(|| super::mountinfo::unescape(point))
        })
        .collect()
}

/// Whether `fd` is on a cgroup file system (v1 or v2).
pub fn is_cgroup_fs(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    matches!(
        fs_magic(fd),
        Some(libc::CGROUP_SUPER_MAGIC | libc::CGROUP2_SUPER_MAGIC)
    )
}

/// The file system type (`f_type`) of the file `fd` is on, `None` if
/// `fstatfs` fails.
fn fs_magic(fd: std::os::fd::BorrowedFd<'_>) -> Option<libc::__fsword_t> {
    // SAFETY: statfs is plain old data; fstatfs fills it for a live fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable statfs; the fd is borrowed.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_type)
}

/// Whether `fd` is on a file system through which a write changes the host
/// rather than a file: a cgroup file system, procfs (`/proc/sys`, other
/// processes' `/proc/<pid>` files), sysfs, and the kernel's control file
/// systems usually mounted beneath `/sys` (tracefs, debugfs, securityfs,
/// bpf; pstore and efivarfs are beneath `/sys`, which Landlock covers).
pub fn is_host_control_fs(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    // Unknown (fstatfs failed): refuse the write (fail closed).
    let Some(magic) = fs_magic(fd) else {
        return true;
    };
    matches!(
        magic,
        libc::CGROUP_SUPER_MAGIC
            | libc::CGROUP2_SUPER_MAGIC
            | libc::PROC_SUPER_MAGIC
            | libc::SYSFS_MAGIC
            | libc::TRACEFS_MAGIC
            | libc::DEBUGFS_MAGIC
            | libc::SECURITYFS_MAGIC
            | libc::BPF_FS_MAGIC
    )
}

/// Names never repeat, in this process or any other: `unotify-<pid>-<r>-<n>`,
/// where `r` is 64 random bits drawn once per process (again in a child of
/// `fork`). The pid alone repeats: a host that died with a sandbox in its
/// [`Watchdog`]'s list (in the moment between removing its cgroups and
/// leaving the list) leaves a watchdog that ends that sandbox by its
/// paths; another host given the same pid later would make the same
/// paths for its own first sandbox, and that watchdog would kill it. With
/// the random part the paths a watchdog holds name only cgroups of its own
/// process.
fn fresh_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static TAG: parking_lot::Mutex<(u32, u64)> = parking_lot::Mutex::new((0, 0));
    let me = std::process::id();
    let tag = {
        let mut tag = TAG.lock();
        if tag.0 != me {
            *tag = (me, random_u64());
        }
        tag.1
    };
    format!(
        "unotify-{me}-{tag:016x}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// 64 bits from the kernel's random pool (`getrandom`); from the clock and
/// the pid if it fails (it does not block after boot).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the live buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    if n == b.len() as isize {
        return u64::from_ne_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Whether the v2 directory `dir` lets a child use the `memory`
/// controller, enabling it if it can (it cannot where `dir` holds
/// processes, unless it is the root).
fn v2_memory_delegated(dir: &Path) -> io::Result<()> {
    let subtree = dir.join("cgroup.subtree_control");
    if read_words(&subtree)?.iter().any(|w| w == "memory") {
        return Ok(());
    }
    if !read_words(&dir.join("cgroup.controllers"))?
        .iter()
        .any(|w| w == "memory")
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "the memory controller is not available in {}",
                dir.display()
            ),
        ));
    }
    fs::write(&subtree, "+memory")
}

fn read_words(path: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

fn probe_dir(parent: &Path) -> io::Result<PathBuf> {
    let dir = parent.join(fresh_name());
    fs::create_dir(&dir)?;
    Ok(dir)
}

fn remove_probe(dir: &Path) {
    if let Err(e) = fs::remove_dir(dir) {
        log::debug!("cannot remove probe cgroup {}: {e}", dir.display());
    }
}

/// The v2 hierarchy, and the v1 hierarchy of controller `c`.
fn v2_hierarchy() -> Option<&'static Hierarchy> {
    hierarchies().iter().find(|h| h.v2)
}

fn v1_hierarchy(c: &str) -> Option<&'static Hierarchy> {
    hierarchies()
        .iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|x| x == c))
}

/// Where the memory limit would be had, found once per process (only when
/// asked: a sandbox without a memory limit does not probe the memory
/// controller) by making and removing a probe directory.
fn memory_modes() -> &'static MemoryMode {
    static MEMORY: OnceLock<MemoryMode> = OnceLock::new();
    MEMORY.get_or_init(|| {
        let mut why = Vec::new();
        if let Some(h) = v2_hierarchy() {
            match v2_memory_delegated(&h.dir).and_then(|()| probe_dir(&h.dir)) {
                Ok(d) => {
                    let ok = d.join("memory.max").exists();
                    remove_probe(&d);
                    if ok {
                        return MemoryMode::CgroupV2(h.dir.clone());
                    }
                    why.push(format!("no memory.max under {}", h.dir.display()));
                }
                Err(e) => why.push(format!("cgroup v2 {}: {e}", h.dir.display())),
            }
        }
        if let Some(h) = v1_hierarchy("memory") {
            match probe_dir(&h.dir) {
                Ok(d) => {
                    remove_probe(&d);
                    return MemoryMode::CgroupV1(h.dir.clone());
                }
                Err(e) => why.push(format!("cgroup v1 {}: {e}", h.dir.display())),
            }
        }
        if why.is_empty() {
            why.push("no memory cgroup hierarchy is mounted".into());
        }
        let mode = MemoryMode::Accounting(why.join("; "));
        log::debug!("cgroups: memory {mode:?}");
        mode
    })
}

static CONTAIN: OnceLock<ContainMode> = OnceLock::new();

/// Finds how a sandbox would be contained, by making a directory named
/// `name` in each candidate hierarchy in turn. The directory of the mode
/// found is returned with it when `keep` (a sandbox's first
/// [`Containment::create`] keeps it as its own, instead of making a probe
/// and then its directory), and removed otherwise.
fn probe_contain(name: &str, keep: bool) -> (ContainMode, Option<PathBuf>) {
    let found = |mode: ContainMode, d: PathBuf| {
        if keep {
            (mode, Some(d))
        } else {
            remove_probe(&d);
            (mode, None)
        }
    };
    let mut why = Vec::new();
    if let Some(h) = v2_hierarchy() {
        let d = h.dir.join(name);
        match fs::create_dir(&d) {
            Ok(()) => {
                if d.join("cgroup.kill").exists() {
                    return found(ContainMode::CgroupV2Kill(h.dir.clone()), d);
                }
                remove_probe(&d);
                why.push("cgroup.kill needs Linux 5.14".to_string());
            }
            Err(e) => why.push(format!("cgroup v2 {}: {e}", h.dir.display())),
        }
    }
    for c in ["freezer", "pids", "memory"] {
        let Some(h) = v1_hierarchy(c) else { continue };
        let d = h.dir.join(name);
        match fs::create_dir(&d) {
            Ok(()) => {
                let mode = if c == "freezer" {
                    ContainMode::CgroupV1Freezer(h.dir.clone())
                } else {
                    ContainMode::CgroupV1Procs(h.dir.clone())
                };
                return found(mode, d);
            }
            Err(e) => why.push(format!("cgroup v1 {}: {e}", h.dir.display())),
        }
    }
    if why.is_empty() {
        why.push("no cgroup hierarchy is mounted".into());
    }
    (ContainMode::ProcessGroup(why.join("; ")), None)
}

/// How a sandbox is contained here, found once per process; `name`: the
/// directory the caller is about to make, made here if this is the probe
/// (then returned too).
fn contain_modes(name: Option<&str>) -> (&'static ContainMode, Option<PathBuf>) {
    let mut kept = None;
    let mode = CONTAIN.get_or_init(|| {
        let (mode, dir) = match name {
            Some(n) => probe_contain(n, true),
            None => probe_contain(&fresh_name(), false),
        };
        log::debug!("cgroups: containment {mode:?}");
        kept = dir;
        mode
    });
    (mode, kept)
}

/// How a sandbox's memory limit would be enforced here.
pub fn memory_mode() -> MemoryMode {
    memory_modes().clone()
}

/// How a sandbox would be contained and killed here.
pub fn contain_mode() -> ContainMode {
    contain_modes(None).0.clone()
}

/// How block devices would be refused to a sandbox here, found once per
/// process (only when asked: a sandbox without file confinement does not
/// probe), without making a directory: the device program on the v2
/// hierarchy when it can be written (where the containment makes its
/// directory) and the program loads (`CAP_BPF` or `CAP_SYS_ADMIN`), else a
/// v1 `devices` directory where that hierarchy can be written.
fn device_modes() -> &'static DeviceMode {
    static DEVICES: OnceLock<DeviceMode> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut why = Vec::new();
        if let Some(h) = v2_hierarchy() {
            match writable(&h.dir).and_then(|()| super::devices::block_program()) {
                Ok(_) => return DeviceMode::CgroupV2,
                Err(e) => why.push(format!(
                    "cgroup v2 device program in {}: {e}",
                    h.dir.display()
                )),
            }
        }
        if let Some(h) = v1_hierarchy("devices") {
            match writable(&h.dir) {
                Ok(()) => return DeviceMode::CgroupV1(h.dir.clone()),
                Err(e) => why.push(format!("cgroup v1 devices {}: {e}", h.dir.display())),
            }
        }
        if why.is_empty() {
            why.push("no cgroup v2 hierarchy and no v1 devices hierarchy".into());
        }
        let mode = DeviceMode::Unavailable(why.join("; "));
        log::debug!("cgroups: devices {mode:?}");
        mode
    })
}

/// Whether this process may make directories in `dir` (`faccessat`, with
/// the effective ids: a read-only mount says `EROFS`).
fn writable(dir: &Path) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: faccessat reads a NUL-terminated path.
    super::cvt(unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    })
    .map(drop)
}

/// How block devices would be refused to a sandbox here.
pub fn device_mode() -> DeviceMode {
    device_modes().clone()
}

// ---------------------------------------------------------------------------
// The kill, in raw system calls (it also runs in the watchdog)
// ---------------------------------------------------------------------------

/// What ending the sandbox takes: files opened and paths prepared when the
/// cgroups were made, so that the kill itself allocates nothing and makes
/// raw system calls only (it runs in the [`Watchdog`] too).
#[derive(Debug)]
pub struct KillPlan {
    /// v2 `cgroup.kill`, opened for writing.
    kill: Option<OwnedFd>,
    /// v1 `freezer.state`, opened for reading and writing.
    freezer: Option<OwnedFd>,
    /// `cgroup.procs` of the membership directory, opened for reading.
    procs: Option<OwnedFd>,
    /// The paths of the three files above, for the [`Watchdog`], which has
    /// fds of its own (it opens them when it ends the sandbox).
    paths: [Option<CString>; 3],
    /// The program's process group (killed too: it is all there is without
    /// a cgroup).
    pgid: std::sync::atomic::AtomicI32,
    /// Directories to remove, as NUL-terminated paths.
    dirs: Vec<CString>,
}

/// The open files a kill works on, borrowed from a [`KillPlan`] or opened
/// from its paths.
#[derive(Clone, Copy)]
struct KillFds {
    kill: Option<RawFd>,
    freezer: Option<RawFd>,
    procs: Option<RawFd>,
}

impl KillPlan {
    fn new() -> KillPlan {
        KillPlan {
            kill: None,
            freezer: None,
            procs: None,
            paths: [None, None, None],
            pgid: std::sync::atomic::AtomicI32::new(0),
            dirs: Vec::new(),
        }
    }

    fn fds(&self) -> KillFds {
        let raw = |f: &Option<OwnedFd>| f.as_ref().map(|f| f.as_raw_fd());
        KillFds {
            kill: raw(&self.kill),
            freezer: raw(&self.freezer),
            procs: raw(&self.procs),
        }
    }

    /// Opens `path` for the kill and records it for the watchdog.
    fn open(&mut self, which: usize, path: &Path, flags: i32) -> io::Result<()> {
        let fd = open_file(path, flags)?;
        let slot = match which {
            0 => &mut self.kill,
            1 => &mut self.freezer,
            _ => &mut self.procs,
        };
        *slot = Some(fd);
        self.paths[which] = CString::new(path.as_os_str().as_bytes()).ok();
        Ok(())
    }
}

/// The open flags of the plan's three files.
const KILL_FLAGS: [i32; 3] = [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY];

/// Opens `path` with raw calls (the watchdog's side); `None` if it cannot.
fn open_raw(path: &Option<CString>, flags: i32) -> Option<RawFd> {
    let path = path.as_ref()?;
    // SAFETY: openat reads a NUL-terminated path owned by the plan.
    let fd = unsafe {
        syscall(
            libc::SYS_openat,
            &[
                libc::AT_FDCWD as usize,
                path.as_ptr() as usize,
                (flags | libc::O_CLOEXEC) as usize,
            ],
        )
    };
    (fd >= 0).then_some(fd as RawFd)
}

fn close_raw(fd: Option<RawFd>) {
    if let Some(fd) = fd {
        // SAFETY: close takes an integer; the fd is the caller's own.
        unsafe { syscall(libc::SYS_close, &[fd as usize]) };
    }
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: nanosleep reads one live timespec; the remainder is not wanted.
    unsafe { syscall(libc::SYS_nanosleep, &[&ts as *const _ as usize, 0]) };
}

fn write_raw(fd: RawFd, what: &[u8]) -> isize {
    // SAFETY: writes `what.len()` bytes from a live slice.
    unsafe {
        syscall(
            libc::SYS_write,
            &[fd as usize, what.as_ptr() as usize, what.len()],
        )
    }
}

/// Reads a small file from its start into `buf`; the length read.
fn pread_raw(fd: RawFd, buf: &mut [u8]) -> usize {
    // SAFETY: reads at most `buf.len()` bytes into a live buffer.
    let n = unsafe {
        syscall(
            libc::SYS_pread64,
            &[fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0],
        )
    };
    n.max(0) as usize
}

/// Calls `f` with each pid listed in `procs`; returns how many. Reads the
/// whole list in pieces without allocating (a number may span two reads).
fn each_listed(procs: RawFd, mut f: impl FnMut(i32)) -> usize {
    // SAFETY: lseek takes integers.
    unsafe {
        syscall(
            libc::SYS_lseek,
            &[procs as usize, 0, libc::SEEK_SET as usize],
        )
    };
    let mut buf = [0u8; 512];
    let (mut n, mut cur, mut in_num) = (0usize, 0i64, false);
    loop {
        // SAFETY: reads at most 512 bytes into a live buffer.
        let got = unsafe {
            syscall(
                libc::SYS_read,
                &[procs as usize, buf.as_mut_ptr() as usize, buf.len()],
            )
        };
        if got <= 0 {
            break;
        }
        for &b in &buf[..got as usize] {
            if b.is_ascii_digit() {
                cur = (cur * 10 + (b - b'0') as i64).min(i32::MAX as i64);
                in_num = true;
            } else if in_num {
                f(cur as i32);
                n += 1;
                cur = 0;
                in_num = false;
            }
        }
    }
    if in_num {
        f(cur as i32);
        n += 1;
    }
    n
}

fn kill_pid(pid: i32) {
    if pid > 1 {
        // SAFETY: kill takes integers; pid > 1 never means a group or everyone.
        unsafe { syscall(libc::SYS_kill, &[pid as usize, libc::SIGKILL as usize]) };
    }
}

/// Kills every process of the sandbox and removes its directories. Makes
/// raw system calls only, allocates nothing; bounded in time (a few
/// seconds at worst). Safe to repeat.
fn kill_and_remove(plan: &KillPlan) {
    if removed_at_once(plan) {
        return;
    }
    end_with(plan, plan.fds());
}

/// The program's process group killed, then every directory of the plan
/// removed straight away: true if that emptied the plan (each removed, or
/// gone already). The kernel removes only a cgroup that holds no process
/// (else `EBUSY`), so a removal here proves the sandbox empty, and nothing
/// can be started in a removed cgroup; the usual end of a sandbox (its
/// program collected, nothing left) then takes one call per directory
/// instead of a kill, a read of the member list and the removal. Anything
/// left is for [`end_with`].
fn removed_at_once(plan: &KillPlan) -> bool {
    let pgid = plan.pgid.load(Ordering::Acquire);
    if pgid > 1 {
        // SAFETY: kill takes integers; -pgid (pgid > 1) names one group.
        unsafe { syscall(libc::SYS_kill, &[(-pgid) as usize, libc::SIGKILL as usize]) };
    }
    plan.dirs.iter().all(|dir| {
        // SAFETY: rmdir reads a NUL-terminated path owned by the plan.
        let r = unsafe { syscall(libc::SYS_rmdir, &[dir.as_ptr() as usize]) };
        r == 0 || r == -(libc::ENOENT as isize)
    })
}

/// [`kill_and_remove`] from the watchdog, which opens the plan's files
/// from their paths (they were opened in this process after the watchdog
/// copied its fds, or not at all).
fn kill_and_remove_by_path(plan: &KillPlan) {
    if removed_at_once(plan) {
        return;
    }
    let fds = KillFds {
        kill: open_raw(&plan.paths[0], KILL_FLAGS[0]),
        freezer: open_raw(&plan.paths[1], KILL_FLAGS[1]),
        procs: open_raw(&plan.paths[2], KILL_FLAGS[2]),
    };
    end_with(plan, fds);
    close_raw(fds.kill);
    close_raw(fds.freezer);
    close_raw(fds.procs);
}

fn end_with(plan: &KillPlan, fds: KillFds) {
    kill_all(plan, fds);
    remove_dirs(plan);
}

/// The kill of [`kill_and_remove`], without the removal: every process of
/// the sandbox killed, and waited for until its membership list is empty.
fn kill_all(plan: &KillPlan, fds: KillFds) {
    let pgid = plan.pgid.load(Ordering::Acquire);
    if pgid > 1 {
        // SAFETY: kill takes integers; -pgid (pgid > 1) names one group.
        unsafe { syscall(libc::SYS_kill, &[(-pgid) as usize, libc::SIGKILL as usize]) };
    }
    if let Some(k) = fds.kill {
        // Every process of the cgroup and of its descendants, at once.
        write_raw(k, b"1");
    }
    if let (Some(state), Some(procs)) = (fds.freezer, fds.procs) {
        // Frozen, nothing forks or exits: every listed pid is the
        // sandbox's, and the kill takes effect at the thaw.
        for _ in 0..50 {
            let (s, p) = (state, procs);
            write_raw(s, b"FROZEN");
            let mut buf = [0u8; 16];
            for _ in 0..1000 {
                let n = pread_raw(s, &mut buf);
                if buf[..n].starts_with(b"FROZEN") {
                    break;
                }
                sleep_ms(1);
            }
            let listed = each_listed(p, kill_pid);
            write_raw(s, b"THAWED");
            if listed == 0 {
                break;
            }
            sleep_ms(2);
        }
    }
    if let Some(procs) = fds.procs {
        // Until the list is empty (tasks leave it as they exit). Without a
        // freezer or cgroup.kill, a pid read here could in principle be
        // reused by the time it is killed; there is nothing better then.
        let kill_each = fds.kill.is_none() && fds.freezer.is_none();
        for _ in 0..5000 {
            let listed = each_listed(procs, |pid| {
                if kill_each {
                    kill_pid(pid)
                }
            });
            if listed == 0 {
                break;
            }
            sleep_ms(1);
        }
    }
}

/// Removes the sandbox's directories (emptied by [`kill_all`]).
fn remove_dirs(plan: &KillPlan) {
    for dir in &plan.dirs {
        for _ in 0..2000 {
            // SAFETY: rmdir reads a NUL-terminated path owned by the plan.
            let r = unsafe { syscall(libc::SYS_rmdir, &[dir.as_ptr() as usize]) };
            if r == 0 || r == -(libc::ENOENT as isize) || r != -(libc::EBUSY as isize) {
                break;
            }
            sleep_ms(1);
        }
    }
}

// ---------------------------------------------------------------------------
// Containment: the cgroups of one sandbox
// ---------------------------------------------------------------------------

/// The cgroups of one sandbox. Dropping it kills whatever is in them and
/// removes them.
#[derive(Debug)]
pub struct Containment {
    plan: Arc<KillPlan>,
    /// `cgroup.procs` of every directory made (a new process goes into
    /// each), and whether it is in the v2 hierarchy.
    joins: Vec<(PathBuf, bool)>,
    /// The v2 directory made, if any, to start the child in.
    v2_dir: Option<OwnedFd>,
    /// `cgroup.procs` of the membership directory.
    members: Option<PathBuf>,
    /// The memory cgroup, if one was made.
    memory_cgroup: Option<Arc<MemoryCgroup>>,
    /// Its place in the list the process's [`Watchdog`] ends at its death.
    registered: Option<Registration>,
    ended: bool,
    /// Its one directory may serve the process's next sandbox ([`Spare`]).
    reusable: bool,
    /// Block devices are refused to it (a device program on its v2
    /// directory: a spare keeps it).
    refuses_block: bool,
}

/// The emptied cgroup of an ended sandbox, kept for the process's next one:
/// a directory made and removed costs about 30 µs of CPU on every spawn of
/// a host that runs many. Only a v2 membership cgroup without a memory
/// limit (whose charges would carry over) is kept, only once its
/// `cgroup.events` says nothing is left in it or beneath, and it stays in
/// the watchdog's list, which removes it if this process dies or exits.
/// [`Containment::keep_nothing`] is for a process that exits after its
/// sandbox (`unotify run`): nothing of the sandbox may outlive it then.
#[derive(Debug)]
struct Spare {
    /// The process it was made in (a child of `fork` has a copy).
    owner: u32,
    plan: Arc<KillPlan>,
    registered: Option<Registration>,
    v2_dir: OwnedFd,
    procs: PathBuf,
    /// Block devices are refused in it: it serves only a sandbox that
    /// refuses them too.
    refuses_block: bool,
}

/// The process's spare cgroup, if any.
static SPARE: parking_lot::Mutex<Option<Spare>> = parking_lot::Mutex::new(None);

impl Spare {
    /// The spare of this process, if there is one (`refuses_block`: only
    /// one that refuses block devices or only one that does not).
    fn take(refuses_block: Option<bool>) -> Option<Spare> {
        let me = std::process::id();
        let mut spare = SPARE.lock();
        match spare.take() {
            Some(s) if s.owner == me && refuses_block.is_some_and(|r| r != s.refuses_block) => {
                *spare = Some(s);
                None
            }
            Some(s) if s.owner == me => Some(s),
            Some(s) => {
                // Its parent's: not ours to use or remove.
                std::mem::forget(s);
                None
            }
            None => None,
        }
    }
}

/// Removes the emptied cgroup this process keeps for its next sandbox, if
/// it keeps one: for a process that starts no more sandboxes (`unotify
/// run` whose program failed to start: the failed spawn's cgroup was kept).
pub fn release_spare() {
    if let Some(spare) = Spare::take(None) {
        kill_and_remove(&spare.plan);
        // Its registration goes with it: the watchdog has nothing left to do.
    }
}

/// Whether the v2 cgroup whose `cgroup.procs` is `procs` has no process
/// left in it or beneath it (its `cgroup.events`).
///
/// In one read (the file is two short lines): on the path that ends every
/// sandbox of a host that runs many.
fn unpopulated(procs: &Path) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let Ok(n) =
        fs::File::open(procs.with_file_name("cgroup.events")).and_then(|mut f| f.read(&mut buf))
    else {
        return false;
    };
    buf[..n].split(|&b| b == b'\n').any(|l| l == b"populated 0")
}

fn open_file(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open reads a NUL-terminated path; the fd returned is ours.
    let fd = super::cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Containment {
    /// Makes the sandbox's cgroups: one for membership and the kill, and a
    /// memory cgroup limited to `memory` bytes when asked (an error if the
    /// probe said one could be had and it cannot be made now: the caller
    /// has no other bound in place), and block devices refused when
    /// `refuse_block` (an error if [`device_mode`] cannot, or it fails
    /// now). Without any cgroup it still kills the process group (see
    /// [`set_group`](Self::set_group)).
    pub fn create(memory: Option<u64>, refuse_block: bool) -> io::Result<Containment> {
        let devices = if refuse_block {
            match device_modes() {
                DeviceMode::Unavailable(why) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("block devices cannot be refused here: {why}"),
                    ))
                }
                mode => Some(mode),
            }
        } else {
            None
        };
        if memory.is_none() {
            if let Some(spare) = Spare::take(Some(refuse_block)) {
                spare.plan.pgid.store(0, Ordering::Release);
                return Ok(Containment {
                    plan: spare.plan,
                    joins: vec![(spare.procs.clone(), true)],
                    v2_dir: Some(spare.v2_dir),
                    members: Some(spare.procs),
                    memory_cgroup: None,
                    registered: spare.registered,
                    ended: false,
                    reusable: true,
                    refuses_block: spare.refuses_block,
                });
            }
        }
        let name = fresh_name();
        // The first sandbox of this process probes with its own directory.
        let (contain, kept) = contain_modes(Some(&name));
        // Probed only for a sandbox with a memory limit.
        let mem_mode = memory.map(|_| memory_modes());
        // The device program goes on the v2 directory of the containment:
        // without one (an older kernel's v2 has no `cgroup.kill`), a v1
        // devices directory instead.
        let v1_devices;
        let devices = match devices {
            Some(DeviceMode::CgroupV2) if !matches!(contain, ContainMode::CgroupV2Kill(_)) => {
                match v1_hierarchy("devices") {
                    Some(h) => {
                        v1_devices = DeviceMode::CgroupV1(h.dir.clone());
                        Some(&v1_devices)
                    }
                    None => {
                        if let Some(d) = &kept {
                            remove_probe(d);
                        }
                        return Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            format!("block devices cannot be refused here: no cgroup v2 containment ({contain:?}) for the device program, no v1 devices hierarchy"),
                        ));
                    }
                }
            }
            d => d,
        };
        let mut made: Vec<PathBuf> = kept.into_iter().collect();
        let mut c = Containment {
            plan: Arc::new(KillPlan::new()),
            joins: Vec::new(),
            v2_dir: None,
            members: None,
            memory_cgroup: None,
            registered: None,
            ended: false,
            // (A v1 devices directory is a second one: not kept.)
            reusable: memory.is_none()
                && matches!(contain, ContainMode::CgroupV2Kill(_))
                && !matches!(devices, Some(DeviceMode::CgroupV1(_))),
            refuses_block: refuse_block,
        };
        let result = (|| -> io::Result<KillPlan> {
            let mut plan = KillPlan::new();
            let mut mkdir = |parent: &Path| -> io::Result<PathBuf> {
                let d = parent.join(&name);
                if !made.contains(&d) {
                    fs::create_dir(&d)?;
                    made.push(d.clone());
                }
                Ok(d)
            };
            if let (Some(bytes), Some(mode)) = (memory, mem_mode) {
                match mode {
                    MemoryMode::CgroupV2(parent) => {
                        let d = mkdir(parent)?;
                        fs::write(d.join("memory.max"), bytes.to_string())?;
                        let swap = d.join("memory.swap.max");
                        if swap.exists() {
                            fs::write(swap, "0")?;
                        }
                        c.memory_cgroup = Some(Arc::new(MemoryCgroup {
                            dir: d,
                            v2: true,
                            limit: AtomicU64::new(bytes),
                        }));
                    }
                    MemoryMode::CgroupV1(parent) => {
                        let d = mkdir(parent)?;
                        fs::write(d.join("memory.limit_in_bytes"), bytes.to_string())?;
                        let sw = d.join("memory.memsw.limit_in_bytes");
                        if sw.exists() {
                            fs::write(sw, bytes.to_string())?;
                        }
                        limit_tcp_v1(&d, bytes);
                        c.memory_cgroup = Some(Arc::new(MemoryCgroup {
                            dir: d,
                            v2: false,
                            limit: AtomicU64::new(bytes),
                        }));
                    }
                    MemoryMode::Accounting(_) => {}
                }
            }
            match contain {
                ContainMode::CgroupV2Kill(parent) => {
                    let d = mkdir(parent)?;
                    plan.open(0, &d.join("cgroup.kill"), KILL_FLAGS[0])?;
                    plan.open(2, &d.join("cgroup.procs"), KILL_FLAGS[2])?;
                    c.members = Some(d.join("cgroup.procs"));
                }
                ContainMode::CgroupV1Freezer(parent) => {
                    let d = mkdir(parent)?;
                    plan.open(1, &d.join("freezer.state"), KILL_FLAGS[1])?;
                    plan.open(2, &d.join("cgroup.procs"), KILL_FLAGS[2])?;
                    c.members = Some(d.join("cgroup.procs"));
                }
                ContainMode::CgroupV1Procs(parent) => {
                    let d = mkdir(parent)?;
                    plan.open(2, &d.join("cgroup.procs"), KILL_FLAGS[2])?;
                    c.members = Some(d.join("cgroup.procs"));
                }
                ContainMode::ProcessGroup(_) => {}
            }
            if let Some(DeviceMode::CgroupV1(parent)) = devices {
                super::devices::refuse_block_v1(&mkdir(parent)?)?;
            }
            Ok(plan)
        })();
        let v2_mounts: Vec<PathBuf> = mem_mode
            .into_iter()
            .filter_map(|mm| match mm {
                MemoryMode::CgroupV2(p) => Some(p.clone()),
                _ => None,
            })
            .chain(match contain {
                ContainMode::CgroupV2Kill(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        c.joins = made
            .iter()
            .map(|d| {
                let v2 = d.parent().is_some_and(|p| v2_mounts.iter().any(|m| m == p));
                (d.join("cgroup.procs"), v2)
            })
            .collect();
        if let Some((procs, _)) = c.joins.iter().find(|(_, v2)| *v2) {
            let dir = procs.parent().expect("a directory");
            c.v2_dir = open_file(dir, libc::O_RDONLY | libc::O_DIRECTORY).ok();
        }
        // The device program, on the v2 directory the child starts in.
        let result = result.and_then(|plan| match devices {
            Some(DeviceMode::CgroupV2) => match &c.v2_dir {
                Some(d) => super::devices::refuse_block_v2(d.as_fd()).map(|()| plan),
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no cgroup v2 directory to refuse block devices in (containment: {contain:?})"),
                )),
            },
            _ => Ok(plan),
        });
        let dirs = made
            .iter()
            .filter_map(|d| CString::new(d.as_os_str().as_bytes()).ok())
            .collect();
        match result {
            Ok(mut plan) => {
                plan.dirs = dirs;
                c.plan = Arc::new(plan);
                Ok(c)
            }
            Err(e) => {
                // Remove what was made (Drop does it from the plan).
                Arc::get_mut(&mut c.plan).expect("not shared yet").dirs = dirs;
                Err(e)
            }
        }
    }

    /// The v2 directory to start the program in (`CLONE_INTO_CGROUP`).
    pub fn clone_into(&self) -> Option<RawFd> {
        self.v2_dir.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Puts process `pid` in every cgroup of the sandbox (before it runs);
    /// `in_v2`: it started in the [`clone_into`](Self::clone_into) one.
    pub fn add(&self, pid: i32, in_v2: bool) -> io::Result<()> {
        for (procs, v2) in &self.joins {
            if !(in_v2 && *v2) {
                fs::write(procs, pid.to_string())?;
            }
        }
        Ok(())
    }

    /// Records the program's process group, killed with the rest.
    pub fn set_group(&self, pgid: i32) {
        self.plan.pgid.store(pgid, Ordering::Release);
    }

    /// Has the sandbox ended by the process's [`Watchdog`] if this process
    /// dies (started with the first sandbox of the process).
    pub fn arm(&mut self) -> io::Result<()> {
        Watchdog::ensure()?;
        if self.registered.is_none() {
            self.registered = Some(Registration::new(Arc::clone(&self.plan)));
        }
        Ok(())
    }

    /// Says this process exits once the sandbox has ended: its cgroup is
    /// removed then, not kept for a next sandbox ([`Spare`]).
    pub fn keep_nothing(&mut self) {
        self.reusable = false;
    }

    /// The sandbox's memory cgroup, if one was made.
    pub fn memory_cgroup(&self) -> Option<Arc<MemoryCgroup>> {
        self.memory_cgroup.clone()
    }

    /// A reader of the sandbox's membership, if a cgroup holds it.
    pub fn members(&self) -> Option<Members> {
        self.members.clone().map(|procs| Members { procs })
    }

    /// Kills everything of the sandbox and removes its cgroups (once).
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        // Here, not by the watchdog: asking it would cost two wake-ups
        // (its, then ours) on the path that ends every sandbox. It is only
        // told afterwards (the plan leaves its list); a watchdog that never
        // hears (this process died before) ends the sandbox again, which
        // is safe to repeat.
        if self.reusable {
            if self.left_empty() && self.keep_as_spare() {
                return;
            }
            kill_and_remove(&self.plan);
        } else {
            kill_and_remove(&self.plan);
        }
        self.registered = None;
    }

    /// Whether the sandbox left nothing running (its process group killed
    /// first): then its cgroup can be kept without a `cgroup.kill`. A
    /// cgroup that was killed cannot be: a child cloned into it afterwards
    /// (`CLONE_INTO_CGROUP`) is killed at once (seen on Linux 6.18: the
    /// kill is remembered against the fork).
    fn left_empty(&self) -> bool {
        let pgid = self.plan.pgid.load(Ordering::Acquire);
        if pgid > 1 {
            // SAFETY: kill takes integers; -pgid (pgid > 1) names one group.
            unsafe { syscall(libc::SYS_kill, &[(-pgid) as usize, libc::SIGKILL as usize]) };
        }
        // `populated 0` counts the cgroup and every one beneath it: its
        // member list is empty then, without a read of its own.
        self.plan.procs.is_some() && self.members.as_deref().is_some_and(unpopulated)
    }

    /// Keeps the emptied cgroup for the process's next sandbox, if there is
    /// no spare yet and nothing is left in it.
    fn keep_as_spare(&mut self) -> bool {
        let mut spare = SPARE.lock();
        let (Some(procs), None) = (&self.members, spare.as_ref()) else {
            return false;
        };
        // Not armed (the spawn failed before `arm`): nothing would remove
        // a kept cgroup when this process exits.
        if self.v2_dir.is_none() || self.registered.is_none() {
            return false;
        }
        // The ended sandbox's group is not the next one's: the watchdog
        // must not kill a group of that number (reused by then) if the
        // process dies while the cgroup is only kept.
        self.plan.pgid.store(0, Ordering::Release);
        *spare = Some(Spare {
            owner: std::process::id(),
            plan: Arc::clone(&self.plan),
            registered: self.registered.take(),
            v2_dir: self.v2_dir.take().expect("checked above"),
            procs: procs.clone(),
            refuses_block: self.refuses_block,
        });
        true
    }
}

impl Drop for Containment {
    fn drop(&mut self) {
        self.end();
    }
}

/// The memory limit of a sandbox's memory cgroup, which a policy may lower
/// while it runs.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
    /// The limit in force, in bytes.
    limit: AtomicU64,
}

impl MemoryCgroup {
    /// How many processes the kernel killed for going over the limit
    /// (`oom_kill` of `memory.events`, or of `memory.oom_control` in v1);
    /// 0 if it cannot be read.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The limit in force.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    /// Lowers the limit to `bytes` (a higher value changes nothing). Where
    /// v1 refuses a limit below what is in use (`EBUSY`), the limit goes
    /// down to what is in use, so that any growth is refused, and a later
    /// call lowers it further. Returns the limit in force.
    pub fn lower(&self, bytes: u64) -> io::Result<u64> {
        let cur = self.limit();
        if bytes >= cur {
            return Ok(cur);
        }
        let set = |v: u64| -> io::Result<()> {
            if self.v2 {
                fs::write(self.dir.join("memory.max"), v.to_string())
            } else {
                // memsw may never be below the limit: the limit first.
                fs::write(self.dir.join("memory.limit_in_bytes"), v.to_string())?;
                let sw = self.dir.join("memory.memsw.limit_in_bytes");
                if sw.exists() {
                    fs::write(sw, v.to_string())?;
                }
                limit_tcp_v1(&self.dir, v);
                Ok(())
            }
        };
        let mut target = bytes;
        for _ in 0..8 {
            match set(target) {
                Ok(()) => {
                    self.limit.fetch_min(target, Ordering::AcqRel);
                    return Ok(self.limit());
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !self.v2 => {
                    let used: u64 = fs::read_to_string(self.dir.join("memory.usage_in_bytes"))?
                        .trim()
                        .parse()
                        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                    target = used.max(bytes).min(cur);
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    }
}

/// Reads the processes of a sandbox's cgroup.
#[derive(Debug, Clone)]
pub struct Members {
    procs: PathBuf,
}

impl Members {
    /// Every live process of the sandbox (zombies are not listed),
    /// including those of cgroups made beneath it (a nested sandbox).
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let _ = self.walk(false, &mut out);
        out
    }

    /// [`pids`](Self::pids), or an error if any list could not be read
    /// (the supervisor short of file descriptors or memory): a list read
    /// in part is not a count. A cgroup made beneath the sandbox's and
    /// removed meanwhile is not an error.
    pub fn try_pids(&self) -> io::Result<Vec<i32>> {
        let mut out = Vec::new();
        self.walk(true, &mut out)?;
        Ok(out)
    }

    /// Collects the live processes of the sandbox's cgroup and those
    /// beneath it into `out`. `strict`: the first list or directory that
    /// cannot be read is an error (but a nested cgroup removed meanwhile);
    /// else what cannot be read is skipped.
    fn walk(&self, strict: bool, out: &mut Vec<i32>) -> io::Result<()> {
        let gone = |e: &io::Error| !strict || e.raw_os_error() == Some(libc::ENOENT);
        let mut dirs: Vec<PathBuf> = self
            .procs
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .collect();
        let top = dirs.first().cloned();
        while let Some(d) = dirs.pop() {
            let nested = Some(&d) != top.as_ref();
            match fs::read_to_string(d.join("cgroup.procs")) {
                Ok(list) => out.extend(
                    list.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                ),
                Err(e) if nested && gone(&e) => continue,
                Err(_) if !strict => {}
                Err(e) => return Err(e),
            }
            match fs::read_dir(&d) {
                Ok(rd) => {
                    for e in rd {
                        let e = match e {
                            Ok(e) => e,
                            Err(_) if !strict => continue,
                            Err(e) => return Err(e),
                        };
                        match e.file_type() {
                            Ok(t) if t.is_dir() => dirs.push(e.path()),
                            Ok(_) => {}
                            Err(err) if gone(&err) => {}
                            Err(err) => return Err(err),
                        }
                    }
                }
                Err(e) if nested && gone(&e) => {}
                Err(e) if !strict => drop(e),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The watchdog
// ---------------------------------------------------------------------------

/// A process outside the sandboxes that ends them if the supervisor's
/// process dies: one per process, started with its first sandbox, serving
/// every sandbox the process runs from then on.
///
/// Why this mechanism: `PR_SET_PDEATHSIG` reaches only the program itself
/// (and fires on the death of the spawning *thread*); a pid namespace would
/// give the program pid 1's signal semantics and other pids. The watchdog
/// is cloned (`CLONE_VM`, a stack of its own, every signal blocked, in a
/// process group of its own so that a signal to the supervisor's group misses it)
/// and waits in `poll` on a pidfd of the supervisor's process and on a
/// command pipe whose write end only this process holds. When the process
/// exits (for any reason, `SIGKILL` included), it runs the same kill as the
/// supervisor would on every sandbox still in its list
/// ([`Registration`]; a sandbox leaves the list once the supervisor has
/// ended it itself, its normal end) and exits. It opens the cgroup files
/// of that kill by path: those of a sandbox started after it were opened
/// in this process after it copied its fds. It is not in the sandboxes'
/// cgroups, and their Landlock domain keeps the programs from signalling
/// it (without one, a program running as the same user could kill it, and
/// then a later death of the supervisor would leave what escaped the
/// process group running).
///
/// One per process, not one per sandbox: starting a process and ending it
/// again cost about 0.1 ms of CPU and two wake-ups on every spawn. It exits
/// with the process (it shares the process's memory, so it is the one that
/// frees it, after the process's parent was told of the exit), and is
/// reaped by whoever the process's children go to then.
///
/// Like the spawn child, it shares the supervisor's memory and so makes raw
/// system calls only, reads only what its arguments and the list hold
/// (never freed while it may read them), allocates nothing and never
/// returns.
#[derive(Debug)]
pub struct Watchdog {
    /// The process it watches (a child of `fork` starts its own).
    owner: u32,
    /// The command pipe's write end: closed only with the process.
    _command: OwnedFd,
}

#[derive(Debug)]
struct WatchdogArgs {
    host: RawFd,
    command: RawFd,
}

const WATCHDOG_STACK: usize = 64 * 1024;

/// The process's watchdog, once started.
static WATCHDOG: parking_lot::Mutex<Option<Watchdog>> = parking_lot::Mutex::new(None);

/// A sandbox in the list the process's [`Watchdog`] ends when the process
/// dies; leaves it when dropped.
#[derive(Debug)]
pub struct Registration {
    slot: &'static AtomicPtr<KillPlan>,
}

/// The list: chunks of slots, each a leaked `Arc<KillPlan>` or null,
/// chained and never freed (the watchdog walks them after the process
/// died, at whatever point it died).
struct Chunk {
    slots: [AtomicPtr<KillPlan>; CHUNK],
    next: AtomicPtr<Chunk>,
}

const CHUNK: usize = 64;

static FIRST_CHUNK: Chunk = Chunk {
    slots: [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNK],
    next: AtomicPtr::new(std::ptr::null_mut()),
};

/// The process the list's entries belong to (a child of `fork` has a copy
/// of its parent's, which are not its own).
static LIST_OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Registration {
    fn new(plan: Arc<KillPlan>) -> Registration {
        let me = std::process::id();
        if LIST_OWNER.swap(me, Ordering::AcqRel) != me {
            // The parent's sandboxes, copied by fork: forgotten (their
            // plans leak; their files are this process's copies).
            each_chunk(|c| {
                for slot in &c.slots {
                    slot.store(std::ptr::null_mut(), Ordering::Release);
                }
            });
        }
        let ptr = Arc::into_raw(plan).cast_mut();
        let mut chunk: &'static Chunk = &FIRST_CHUNK;
        loop {
            for slot in &chunk.slots {
                // Release: pairs with the watchdog's Acquire load; the
                // plan is complete before it can be seen.
                if slot
                    .compare_exchange(
                        std::ptr::null_mut(),
                        ptr,
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return Registration { slot };
                }
            }
            let next = chunk.next.load(Ordering::Acquire);
            chunk = if next.is_null() {
                let fresh: &'static mut Chunk = Box::leak(Box::new(Chunk {
                    slots: [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNK],
                    next: AtomicPtr::new(std::ptr::null_mut()),
                }));
                let fresh_ptr: *mut Chunk = fresh;
                match chunk.next.compare_exchange(
                    std::ptr::null_mut(),
                    fresh_ptr,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => fresh,
                    // SAFETY: another thread published this chunk; chunks
                    // are never freed. (Ours stays leaked: rare, small.)
                    Err(other) => unsafe { &*other },
                }
            } else {
                // SAFETY: published chunks are never freed.
                unsafe { &*next }
            };
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ptr = self.slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !ptr.is_null() {
            // SAFETY: the pointer `Registration::new` made with
            // `Arc::into_raw` and left in the slot until now.
            drop(unsafe { Arc::from_raw(ptr.cast_const()) });
        }
    }
}

/// Calls `f` with each chunk of the list, allocation-free.
fn each_chunk(mut f: impl FnMut(&Chunk)) {
    let mut chunk: *const Chunk = &FIRST_CHUNK;
    while !chunk.is_null() {
        // SAFETY: the first chunk is static; the others are leaked
        // allocations, published whole before their pointer.
        let c = unsafe { &*chunk };
        f(c);
        chunk = c.next.load(Ordering::Acquire);
    }
}

extern "C" fn watchdog_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `Watchdog::start` leaks the args: alive for ever.
    let args = unsafe { &*(arg as *const WatchdogArgs) };
    watchdog_main(args)
}

fn watchdog_main(args: &WatchdogArgs) -> ! {
    // A process group of its own: out of reach of signals to the
    // supervisor's group (`kill -KILL -PGID`, a shell's job control); the
    // terminal's signals go to the foreground group, never this one, and
    // every other signal is blocked (cloned so). Not `setsid`: where the
    // kernel groups sessions for the scheduler (`sched_autogroup`, on by
    // default), a new session makes a scheduling group (a C loop here,
    // at load 5: 50-200 µs a `setsid`, about 10 a `setpgid`), on the path
    // of every `unotify run`; and nothing more is out of reach in one.
    // SAFETY: setpgid takes integers.
    unsafe { syscall(libc::SYS_setpgid, &[0, 0]) };
    // Keep only its own fds: copies of the supervisor's would hold pipes
    // and sockets open after the supervisor closed them.
    let mut keep = [args.host, args.command];
    keep.sort_unstable();
    let mut from = 0usize;
    for fd in keep {
        let fd = fd as usize;
        if fd > from {
            // SAFETY: close_range takes integers.
            unsafe { syscall(libc::SYS_close_range, &[from, fd - 1, 0]) };
        }
        from = fd + 1;
    }
    // SAFETY: close_range takes integers.
    unsafe { syscall(libc::SYS_close_range, &[from, u32::MAX as usize, 0]) };
    let mut fds = [
        libc::pollfd {
            fd: args.host,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: args.command,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: poll reads and writes two live pollfds.
        let n = unsafe {
            syscall(
                libc::SYS_poll,
                &[
                    fds.as_mut_ptr() as usize,
                    2,
                    usize::MAX, /* -1: no limit */
                ],
            )
        };
        // Any event: the supervisor's process exited or closed the
        // command pipe (it died). An error other than EINTR: end the
        // sandboxes too, rather than keep them with nothing watching.
        if n != -(libc::EINTR as isize) && n != 0 {
            break;
        }
    }
    // Every sandbox still listed: the process died before it ended it.
    each_chunk(|c| {
        for slot in &c.slots {
            // Acquire: pairs with the Release of `Registration::new`.
            let plan = slot.load(Ordering::Acquire);
            if !plan.is_null() {
                // SAFETY: a listed plan is alive: it is freed only after
                // leaving the list, and nothing leaves it any more.
                kill_and_remove_by_path(unsafe { &*plan });
            }
        }
    });
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe { syscall(libc::SYS_exit_group, &[0]) };
    }
}

impl Watchdog {
    /// Starts the process's watchdog unless it runs.
    fn ensure() -> io::Result<()> {
        let mut w = WATCHDOG.lock();
        let me = std::process::id();
        if w.as_ref().is_none_or(|w| w.owner != me) {
            // (A child of fork: its parent's watchdog watches its parent.)
            if let Some(old) = w.take() {
                std::mem::forget(old);
            }
            *w = Some(Watchdog::start(me)?);
        }
        Ok(())
    }

    fn start(owner: u32) -> io::Result<Watchdog> {
        let host = super::pidfd::pidfd_open(owner as i32, 0)?;
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array.
        super::cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: both just created, owned by nobody else.
        let (cmd_r, cmd_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let args = Box::new(WatchdogArgs {
            host: host.as_raw_fd(),
            command: cmd_r.as_raw_fd(),
        });
        let page = super::page_size();
        let len = WATCHDOG_STACK + page;
        // SAFETY: an anonymous private mapping; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // The lowest page is the guard.
        // SAFETY: the first page of the mapping just made.
        if let Err(e) = super::cvt(unsafe { libc::mprotect(base, page, libc::PROT_NONE) }) {
            // SAFETY: unmapping the mapping just made, used by nobody.
            unsafe { libc::munmap(base, len) };
            return Err(e);
        }
        let arg_ptr = (&*args as *const WatchdogArgs)
            .cast_mut()
            .cast::<libc::c_void>();
        // SAFETY: an all-ones sigset_t is a valid full set.
        let full: libc::sigset_t = unsafe {
            let mut s = std::mem::zeroed();
            libc::sigfillset(&mut s);
            s
        };
        // SAFETY: an all-zero sigset_t is valid, overwritten below.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: reads and writes live sigsets.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &full, &mut old) };
        // SAFETY: the watchdog runs `watchdog_entry` on the stack with
        // `args`, both leaked below (never freed: it runs until this
        // process has died); it exits with no signal to us (0).
        let pid = unsafe {
            libc::clone(
                watchdog_entry,
                base.cast::<u8>().add(len).cast(),
                libc::CLONE_VM,
                arg_ptr,
            )
        };
        let err = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if pid < 0 {
            // SAFETY: no watchdog runs on it.
            unsafe { libc::munmap(base, len) };
            return Err(err);
        }
        // Its own copies of these are the ones it uses; ours close.
        std::mem::forget(args);
        drop((host, cmd_r));
        Ok(Watchdog {
            owner,
            _command: cmd_w,
        })
    }
}

/// Caps the TCP socket buffers of the v1 memory cgroup `dir` at `bytes`
/// (`memory.kmem.tcp.limit_in_bytes`): v1 counts them only once a limit is
/// written, and outside `memory.limit_in_bytes`, so without it a program
/// holds any amount of kernel memory in loopback connections it never
/// reads (512 MiB under a 64 MiB limit). A kernel without the file, or
/// refusing the write, keeps v1's default (logged).
fn limit_tcp_v1(dir: &Path, bytes: u64) {
    let tcp = dir.join("memory.kmem.tcp.limit_in_bytes");
    if !tcp.exists() {
        log::debug!("no {}: TCP buffers are not counted", tcp.display());
        return;
    }
    if let Err(e) = fs::write(&tcp, bytes.to_string()) {
        log::warn!(
            "cannot cap TCP socket buffers in {} ({e}): they are not counted in the memory limit",
            tcp.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_from_the_mount_table() {
        let mounts = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw,relatime - cgroup cgroup rw,memory
36 31 0:32 / /elsewhere rw,relatime - cgroup cgroup rw,memory
39 31 0:36 /sub /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
42 31 0:39 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
bad line without a separator
";
        let own = "9:name=systemd:/\n8:pids:/sub/box\n4:memory:/api/x\n1:cpuacct,cpu:/\n0::/user\n";
        let got: Vec<(Vec<String>, bool, PathBuf)> = hierarchies_of(mounts, own)
            .into_iter()
            .map(|h| (h.controllers, h.v2, h.dir))
            .collect();
        let want = |c: &[&str], v2: bool, dir: &str| {
            (
                c.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                v2,
                PathBuf::from(dir),
            )
        };
        assert_eq!(
            got,
            vec![
                want(&["cpu", "cpuacct"], false, "/sys/fs/cgroup/cpu,cpuacct"),
                want(&["memory"], false, "/sys/fs/cgroup/mem ory/api/x"),
                want(&["pids"], false, "/sys/fs/cgroup/pids/box"),
                want(&[], true, "/sys/fs/cgroup/unified/user"),
            ]
        );
    }

    #[test]
    fn lists_are_read_across_buffers() {
        // A pipe holding more than one read's worth of numbers.
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: just created.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let text: String = (100_000..100_300).map(|p| format!("{p}\n")).collect();
        write_raw(w.as_raw_fd(), text.as_bytes());
        drop(w);
        let mut seen = Vec::new();
        assert_eq!(each_listed(r.as_raw_fd(), |p| seen.push(p)), 300);
        assert_eq!(seen, (100_000..100_300).collect::<Vec<_>>());
    }

    /// A sleeping process (our child), for the kill tests.
    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap()
    }

    fn v1_dir(controller: &str) -> Option<PathBuf> {
        v1_hierarchy(controller).map(|h| h.dir.clone())
    }

    /// Each kill mechanism empties its cgroup and removes it.
    #[test]
    fn each_mechanism_kills_and_removes() {
        let mut cases: Vec<(PathBuf, &str)> = Vec::new();
        if let Some(h) = v2_hierarchy() {
            cases.push((h.dir.clone(), "v2"));
        }
        if let Some(d) = v1_dir("freezer") {
            cases.push((d, "freezer"));
        }
        if let Some(d) = v1_dir("pids") {
            cases.push((d, "procs"));
        }
        // The supervisor's kill (its open files) and the watchdog's (the
        // files opened from their paths).
        let cases = cases
            .into_iter()
            .flat_map(|(p, how)| [(p.clone(), how, false), (p, how, true)]);
        for (parent, how, by_path) in cases {
            let Ok(d) = probe_dir(&parent) else { continue };
            if how == "v2" && !d.join("cgroup.kill").exists() {
                remove_probe(&d);
                continue;
            }
            let mut kids: Vec<_> = (0..3).map(|_| sleeper()).collect();
            for k in &kids {
                fs::write(d.join("cgroup.procs"), k.id().to_string()).unwrap();
            }
            let mut plan = KillPlan::new();
            if how == "v2" {
                plan.open(0, &d.join("cgroup.kill"), KILL_FLAGS[0]).unwrap();
            }
            if how == "freezer" {
                plan.open(1, &d.join("freezer.state"), KILL_FLAGS[1])
                    .unwrap();
            }
            plan.open(2, &d.join("cgroup.procs"), KILL_FLAGS[2])
                .unwrap();
            plan.dirs = vec![CString::new(d.as_os_str().as_bytes()).unwrap()];
            if by_path {
                // The watchdog has none of the plan's fds.
                plan.kill = None;
                plan.freezer = None;
                plan.procs = None;
                kill_and_remove_by_path(&plan);
            } else {
                kill_and_remove(&plan);
            }
            for k in &mut kids {
                let st = k.wait().unwrap();
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(st.signal(), Some(libc::SIGKILL), "{how} by path {by_path}");
            }
            assert!(!d.exists(), "{how}: {} not removed", d.display());
        }
    }

    /// An emptied sandbox is removed by one `rmdir` per directory; one
    /// that still holds a process is not (the kernel refuses: `EBUSY`),
    /// and is then killed and removed as before.
    #[test]
    fn only_an_empty_sandbox_is_removed_at_once() {
        let mut parents: Vec<PathBuf> = v2_hierarchy().map(|h| h.dir.clone()).into_iter().collect();
        parents.extend(v1_dir("pids"));
        for parent in parents {
            let Ok(d) = probe_dir(&parent) else { continue };
            let mut plan = KillPlan::new();
            plan.open(2, &d.join("cgroup.procs"), KILL_FLAGS[2])
                .unwrap();
            plan.dirs = vec![CString::new(d.as_os_str().as_bytes()).unwrap()];
            let mut kid = sleeper();
            fs::write(d.join("cgroup.procs"), kid.id().to_string()).unwrap();
            assert!(
                !removed_at_once(&plan),
                "{}: removed with a process in it",
                d.display()
            );
            assert!(d.exists());
            assert_eq!(kid.try_wait().unwrap(), None, "killed by the removal");
            kid.kill().unwrap();
            kid.wait().unwrap();
            // Its exit leaves the member list at once (reaped above).
            assert!(
                removed_at_once(&plan),
                "{}: empty, not removed",
                d.display()
            );
            assert!(!d.exists());
            // Gone already counts as removed.
            assert!(removed_at_once(&plan));
        }
    }
}
