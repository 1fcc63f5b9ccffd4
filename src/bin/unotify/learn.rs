//! `unotify learn`: runs a command allowing everything while recording what
//! the rules of `run` would have to allow (files read and written, network
//! destinations, programs executed, the peak process count and memory),
//! then writes a profile for `run --profile` in `run`'s own flags, one
//! comment per rule saying what used it. Installs user handlers on the
//! sandbox builder (`Recorder::install`), samples the sandbox's processes
//! while it runs, and renders the profile (`Recorder::profile`, see
//! `render`); `main`'s `run` drives it, and `output` writes the profile.
//!
//! Names are kept as the program gave them (bytes): the program chooses
//! them, and they reach the profile only through `render`, shown escaped.

mod output;
mod render;

pub use output::ProfileFile;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use unotify::{HandlerCtx, NotifAction, SandboxBuilder};

/// Examples of what used a rule, kept per rule.
const EXAMPLES: usize = 3;
/// Files read from one directory before the directory itself is allowed.
const FILES_FOR_DIR: usize = 3;
/// The smallest memory limit a profile sets.
const MIN_MEMORY: u64 = 128 << 20;
/// How often the sandbox's processes are counted and measured.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// What used one rule: the programs, how often, a few examples (names
/// as the program gave them, any bytes).
#[derive(Debug, Default, Clone)]
struct Users {
    programs: BTreeSet<Vec<u8>>,
    examples: Vec<Vec<u8>>,
    count: u64,
}

impl Users {
    fn add(&mut self, program: &[u8], example: &[u8]) {
        self.count += 1;
        if self.programs.len() < 8 {
            self.programs.insert(program.to_owned());
        }
        if self.examples.len() < EXAMPLES && !self.examples.iter().any(|e| e == example) {
            self.examples.push(example.to_owned());
        }
    }

    fn merge(&mut self, other: &Users) {
        self.count += other.count;
        for p in &other.programs {
            if self.programs.len() < 8 {
                self.programs.insert(p.clone());
            }
        }
        for e in &other.examples {
            if self.examples.len() < EXAMPLES && !self.examples.contains(e) {
                self.examples.push(e.clone());
            }
        }
    }

    /// `make, cc1 (12 calls; e.g. main.c, parts.h)`, each name shown on
    /// one line (`unotify::shown`: control bytes as `\xNN`).
    fn describe(&self) -> String {
        let shown = |names: &mut dyn Iterator<Item = &Vec<u8>>| -> Vec<String> {
            names.map(|n| unotify::shown::bytes(n)).collect()
        };
        let mut s = shown(&mut self.programs.iter()).join(", ");
        s.push_str(&format!(
            " ({} call{}",
            self.count,
            if self.count == 1 { "" } else { "s" }
        ));
        if !self.examples.is_empty() {
            s.push_str("; e.g. ");
            s.push_str(&shown(&mut self.examples.iter()).join(", "));
        }
        s.push(')');
        s
    }
}

/// How a path was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    /// Read (or listed, or executed) as it is.
    Read,
    /// Written as it is (an existing file opened for writing, truncated).
    Write,
    /// A name made or removed in this directory (created, unlinked,
    /// renamed): the directory needs the write rights.
    WriteIn,
}

/// Everything recorded so far.
#[derive(Debug, Default)]
struct Seen {
    paths: BTreeMap<(PathBuf, Access), Users>,
    /// Directories read as directories (listed).
    listed: BTreeSet<PathBuf>,
    execs: BTreeMap<PathBuf, Users>,
    /// `--net-allow` specs, as bytes: a unix socket's name may be any.
    destinations: BTreeMap<Vec<u8>, Users>,
    peak_processes: u32,
    peak_memory: u64,
}

/// Records what the sandboxed command uses.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Seen>,
    /// The program's pid, once spawned (0 before).
    root: AtomicI32,
    stop: AtomicBool,
}

/// The name a task goes by (`/proc/<tid>/comm`, which the task sets).
fn program_of(tid: u32) -> Vec<u8> {
    match std::fs::read(format!("/proc/{tid}/comm")) {
        Ok(mut name) => {
            if name.last() == Some(&b'\n') {
                name.pop();
            }
            name
        }
        Err(_) => format!("pid {tid}").into_bytes(),
    }
}

/// `path` without `.` and `..` (lexically; `..` of the root stays there).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Where `path` (as the task gave it, relative to `dirfd`) is: absolute,
/// symlinks resolved where it exists; `None` for what needs no rule
/// (the task's own `/proc` files and open fds, covered by `--fs-system`).
/// The flag says whether the file exists.
fn locate(tid: u32, dirfd: Option<i32>, path: &[u8]) -> Option<(PathBuf, bool)> {
    let given = Path::new(std::ffi::OsStr::from_bytes(path));
    let joined = if given.is_absolute() {
        given.to_path_buf()
    } else {
        let base = match dirfd {
            Some(fd) if fd != libc::AT_FDCWD => format!("/proc/{tid}/fd/{fd}"),
            _ => format!("/proc/{tid}/cwd"),
        };
        std::fs::read_link(base).ok()?.join(given)
    };
    let joined = normalize(&joined);
    if joined.starts_with("/proc") || joined.starts_with("/dev/fd") {
        return None;
    }
    if let Ok(real) = std::fs::canonicalize(&joined) {
        return Some((real, true));
    }
    let parent = std::fs::canonicalize(joined.parent()?).ok()?;
    Some((parent.join(joined.file_name()?), false))
}

/// A readable destination as a `--net-allow` SPEC, from a socket address
/// in the task's memory: `127.0.0.1:53`, `[::1]:443`, `unix:/path`,
/// `unix:@name`; `None` for other families and unnamed sockets.
fn destination(cx: &HandlerCtx<'_>, addr: u64, len: u64) -> Option<Vec<u8>> {
    if addr == 0 || len < 2 {
        return None;
    }
    let len = len.min(128) as usize;
    let bytes = cx.read_mem(addr, len).ok()?;
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]) as i32;
    match family {
        libc::AF_INET if len >= 8 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = std::net::Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(format!("{ip}:{port}").into_bytes())
        }
        libc::AF_INET6 if len >= 24 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[8..24]);
            Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(a)).into_bytes())
        }
        libc::AF_UNIX if len > 2 => {
            let path = &bytes[2..];
            if path[0] == 0 {
                let name = &path[1..];
                (!name.is_empty()).then(|| [b"unix:@", name].concat())
            } else {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                let (real, _) = locate(cx.pid(), None, &path[..end])?;
                Some([b"unix:", real.as_os_str().as_bytes()].concat())
            }
        }
        _ => None,
    }
}

impl Recorder {
    fn with_seen<R>(&self, f: impl FnOnce(&mut Seen) -> R) -> R {
        f(&mut self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn path(&self, cx: &HandlerCtx<'_>, dirfd: Option<i32>, addr: u64, access: Access) {
        let Ok(bytes) = cx.read_cstr(addr, 4096) else {
            return;
        };
        let Some((path, exists)) = locate(cx.pid(), dirfd, &bytes) else {
            return;
        };
        let (target, access) = match access {
            // A file that is not there is a probe that fails: no rule.
            Access::Read | Access::Write if !exists => return,
            Access::WriteIn => match path.parent() {
                Some(p) => (p.to_path_buf(), Access::WriteIn),
                None => return,
            },
            a => (path.clone(), a),
        };
        let program = program_of(cx.pid());
        let example = path.file_name().unwrap_or(path.as_os_str());
        self.with_seen(|s| {
            s.paths
                .entry((target, access))
                .or_default()
                .add(&program, example.as_bytes());
        });
    }

    /// An open: read, write or create, from its flags.
    fn open(&self, cx: &HandlerCtx<'_>, dirfd: Option<i32>, addr: u64, flags: u64) {
        let flags = flags as i32;
        if flags & libc::O_PATH != 0 {
            return;
        }
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if flags & libc::O_CREAT != 0 {
            // Allowed if it exists and is written; else made in its directory.
            if let Ok(bytes) = cx.read_cstr(addr, 4096) {
                if let Some((_, false)) = locate(cx.pid(), dirfd, &bytes) {
                    self.path(cx, dirfd, addr, Access::WriteIn);
                    return;
                }
            }
        }
        if flags & libc::O_DIRECTORY != 0 && !writes {
            if let Ok(bytes) = cx.read_cstr(addr, 4096) {
                if let Some((p, true)) = locate(cx.pid(), dirfd, &bytes) {
                    self.with_seen(|s| s.listed.insert(p));
                }
            }
        }
        let access = if writes { Access::Write } else { Access::Read };
        self.path(cx, dirfd, addr, access);
    }

    fn exec(&self, cx: &HandlerCtx<'_>, dirfd: Option<i32>, addr: u64) {
        let Ok(bytes) = cx.read_cstr(addr, 4096) else {
            return;
        };
        let Some((path, true)) = locate(cx.pid(), dirfd, &bytes) else {
            return;
        };
        // The first exec is the launcher's, starting the command.
        let program = match self.root.load(Ordering::Relaxed) {
            0 => b"unotify (the command itself)".to_vec(),
            _ => program_of(cx.pid()),
        };
        let argv = cx
            .read_exec_argv_os()
            .map(|a| a.join(std::ffi::OsStr::new(" ")).into_vec())
            .unwrap_or_default();
        // 60 bytes, not cutting a character in two.
        let mut cut = argv.len().min(60);
        while cut < argv.len() && cut > 0 && argv[cut] & 0xc0 == 0x80 {
            cut -= 1;
        }
        let mut example = argv[..cut].to_vec();
        if cut < argv.len() {
            example.extend_from_slice("…".as_bytes());
        }
        self.with_seen(|s| {
            s.execs
                .entry(path.clone())
                .or_default()
                .add(&program, &example);
            s.paths
                .entry((path, Access::Read))
                .or_default()
                .add(&program, b"exec");
        });
    }

    fn connect(&self, cx: &HandlerCtx<'_>, addr: u64, len: u64) {
        let Some(dest) = destination(cx, addr, len) else {
            return;
        };
        let program = program_of(cx.pid());
        let call = cx.notification().syscall_label();
        self.with_seen(|s| {
            s.destinations
                .entry(dest)
                .or_default()
                .add(&program, call.as_bytes())
        });
    }

    /// A fork about to happen: the processes now, and the new one.
    fn fork(&self, cx: &HandlerCtx<'_>) {
        let thread = match cx.notification().syscall_name() {
            Some("clone") => cx.arg(0) & libc::CLONE_THREAD as u64 != 0,
            Some("clone3") => cx
                .read_mem(cx.arg(0), 8)
                .map(|b| u64::from_ne_bytes(b[..8].try_into().unwrap_or([0; 8])))
                .is_ok_and(|f| f & libc::CLONE_THREAD as u64 != 0),
            _ => false,
        };
        let root = self.root.load(Ordering::Relaxed);
        if thread || root == 0 {
            return;
        }
        let n = tree(root).len() as u32 + 1;
        self.with_seen(|s| s.peak_processes = s.peak_processes.max(n));
    }

    /// Adds the recording handlers to `builder`.
    pub fn install(self: &Arc<Self>, builder: SandboxBuilder) -> SandboxBuilder {
        // Argv safety performs opens on the program's behalf, before any
        // user handler: off, every open reaches the recorder (nothing is
        // refused while learning, so it guards nothing here).
        let mut builder = builder.argv_safety(false);
        type Rec = dyn Fn(&Recorder, &HandlerCtx<'_>) + Send + Sync;
        let fd = |cx: &HandlerCtx<'_>, i: usize| Some(cx.arg(i) as i32);
        let calls: Vec<(&str, Box<Rec>)> = vec![
            (
                "open",
                Box::new(|r, cx| r.open(cx, None, cx.arg(0), cx.arg(1))),
            ),
            (
                "openat",
                Box::new(move |r, cx| r.open(cx, fd(cx, 0), cx.arg(1), cx.arg(2))),
            ),
            (
                "openat2",
                Box::new(move |r, cx| {
                    let flags = cx
                        .read_mem(cx.arg(2), 8)
                        .map(|b| u64::from_ne_bytes(b[..8].try_into().unwrap_or([0; 8])))
                        .unwrap_or(0);
                    r.open(cx, fd(cx, 0), cx.arg(1), flags)
                }),
            ),
            (
                "creat",
                Box::new(|r, cx| r.path(cx, None, cx.arg(0), Access::WriteIn)),
            ),
            (
                "truncate",
                Box::new(|r, cx| r.path(cx, None, cx.arg(0), Access::Write)),
            ),
            ("execve", Box::new(|r, cx| r.exec(cx, None, cx.arg(0)))),
            (
                "execveat",
                Box::new(move |r, cx| r.exec(cx, fd(cx, 0), cx.arg(1))),
            ),
            (
                "mkdir",
                Box::new(|r, cx| r.path(cx, None, cx.arg(0), Access::WriteIn)),
            ),
            (
                "mkdirat",
                Box::new(move |r, cx| r.path(cx, fd(cx, 0), cx.arg(1), Access::WriteIn)),
            ),
            (
                "mknod",
                Box::new(|r, cx| r.path(cx, None, cx.arg(0), Access::WriteIn)),
            ),
            (
                "mknodat",
                Box::new(move |r, cx| r.path(cx, fd(cx, 0), cx.arg(1), Access::WriteIn)),
            ),
            (
                "unlink",
                Box::new(|r, cx| r.path(cx, None, cx.arg(0), Access::WriteIn)),
            ),
            (
                "rmdir",
                Box::new(|r, cx| r.path(cx, None, cx.arg(0), Access::WriteIn)),
            ),
            (
                "unlinkat",
                Box::new(move |r, cx| r.path(cx, fd(cx, 0), cx.arg(1), Access::WriteIn)),
            ),
            (
                "symlink",
                Box::new(|r, cx| r.path(cx, None, cx.arg(1), Access::WriteIn)),
            ),
            (
                "symlinkat",
                Box::new(move |r, cx| r.path(cx, fd(cx, 1), cx.arg(2), Access::WriteIn)),
            ),
            (
                "link",
                Box::new(|r, cx| {
                    r.path(cx, None, cx.arg(0), Access::Read);
                    r.path(cx, None, cx.arg(1), Access::WriteIn);
                }),
            ),
            (
                "linkat",
                Box::new(move |r, cx| {
                    r.path(cx, fd(cx, 0), cx.arg(1), Access::Read);
                    r.path(cx, fd(cx, 2), cx.arg(3), Access::WriteIn);
                }),
            ),
            (
                "rename",
                Box::new(|r, cx| {
                    r.path(cx, None, cx.arg(0), Access::WriteIn);
                    r.path(cx, None, cx.arg(1), Access::WriteIn);
                }),
            ),
            (
                "renameat",
                Box::new(move |r, cx| {
                    r.path(cx, fd(cx, 0), cx.arg(1), Access::WriteIn);
                    r.path(cx, fd(cx, 2), cx.arg(3), Access::WriteIn);
                }),
            ),
            (
                "renameat2",
                Box::new(move |r, cx| {
                    r.path(cx, fd(cx, 0), cx.arg(1), Access::WriteIn);
                    r.path(cx, fd(cx, 2), cx.arg(3), Access::WriteIn);
                }),
            ),
            (
                "connect",
                Box::new(|r, cx| r.connect(cx, cx.arg(1), cx.arg(2))),
            ),
            (
                "sendto",
                Box::new(|r, cx| r.connect(cx, cx.arg(4), cx.arg(5))),
            ),
            (
                "sendmsg",
                Box::new(|r, cx| {
                    // struct msghdr: msg_name, msg_namelen first.
                    if let Ok(b) = cx.read_mem(cx.arg(1), 12) {
                        let name = u64::from_ne_bytes(b[..8].try_into().unwrap_or([0; 8]));
                        let len = u32::from_ne_bytes(b[8..12].try_into().unwrap_or([0; 4]));
                        r.connect(cx, name, u64::from(len));
                    }
                }),
            ),
            ("clone", Box::new(|r, cx| r.fork(cx))),
            ("clone3", Box::new(|r, cx| r.fork(cx))),
            ("fork", Box::new(|r, cx| r.fork(cx))),
            ("vfork", Box::new(|r, cx| r.fork(cx))),
        ];
        for (name, record) in calls {
            // Calls this architecture does not have (open, fork on aarch64).
            if unotify::syscalls::resolve(name).is_err() {
                continue;
            }
            let me = Arc::clone(self);
            builder = builder.handle(name, move |cx: &HandlerCtx<'_>| {
                record(&me, cx);
                NotifAction::Continue
            });
        }
        builder
    }

    /// Starts counting the processes of the sandbox rooted at `root` and
    /// their memory, until [`finish`](Self::finish).
    pub fn watch(self: &Arc<Self>, root: i32) {
        self.root.store(root, Ordering::Relaxed);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("unotify-learn".into())
            .spawn(move || {
                while !me.stop.load(Ordering::Relaxed) {
                    me.sample(root);
                    std::thread::sleep(SAMPLE_EVERY);
                }
            });
        if let Err(e) = spawned {
            log::warn!(
                "cannot start the learn sampler: {e}; the peak memory is from exit figures only"
            );
        }
    }

    fn sample(&self, root: i32) {
        let page = 4096u64;
        let pids = tree(root);
        let memory: u64 = pids
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/statm")).ok())
            .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>()
            * page;
        let n = pids.len() as u32;
        self.with_seen(|s| {
            s.peak_processes = s.peak_processes.max(n);
            s.peak_memory = s.peak_memory.max(memory);
        });
    }

    /// Stops the sampler.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The profile, in TOML, for `run --profile`, checked: it reads back
    /// as exactly the rules rendered (see [`render::Profile`]); an error
    /// says why it cannot be written.
    pub fn profile(
        &self,
        command: &[std::ffi::OsString],
        status: &str,
    ) -> Result<render::Profile, String> {
        let seen = self.with_seen(std::mem::take);
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|d| std::fs::canonicalize(d).ok());
        let tmp = std::fs::canonicalize(std::env::temp_dir()).ok();
        let home = std::env::var_os("HOME").and_then(|h| std::fs::canonicalize(h).ok());
        let rules = Rules::collapse(&seen, cwd.as_deref(), tmp.as_deref(), home.as_deref());
        render::render(&seen, &rules, command, status)
    }
}

/// The processes of the tree rooted at `root` (a scan of `/proc`).
fn tree(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent: BTreeMap<i32, i32> = BTreeMap::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command name's closing parenthesis: state, ppid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            parent.insert(pid, ppid);
        }
    }
    parent
        .keys()
        .copied()
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..4096 {
                if p == root {
                    return true;
                }
                match parent.get(&p) {
                    Some(&pp) if pp > 0 => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// The rules of a profile, collapsed.
#[derive(Debug, Default)]
struct Rules {
    read: BTreeMap<PathBuf, Users>,
    write: BTreeMap<PathBuf, Users>,
    /// Used, but not allowed: `/` or the home directory (listed, say).
    too_broad: BTreeMap<PathBuf, Users>,
}

fn covered(path: &Path, by: &[PathBuf]) -> bool {
    by.iter().any(|b| path.starts_with(b))
}

/// The `--fs-system` entries, as the kernel will see them.
fn system(list: &[&str]) -> Vec<PathBuf> {
    list.iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect()
}

impl Rules {
    /// Files collapse into the project (the current directory) and the
    /// temporary directory when beneath them, else into their directory
    /// when it was listed or several of its files were read; never into
    /// `/` or the home directory itself. What `--fs-system` covers is left
    /// out, and so is a rule beneath another.
    fn collapse(seen: &Seen, cwd: Option<&Path>, tmp: Option<&Path>, home: Option<&Path>) -> Rules {
        let sys_read = system(unotify::landlock::SYSTEM_READ);
        let sys_write = system(unotify::landlock::SYSTEM_WRITE);
        let broad = |p: &Path| -> Option<PathBuf> {
            for root in [cwd, tmp].into_iter().flatten() {
                // The project or /tmp itself, not a parent of either.
                if p.starts_with(root) && root != Path::new("/") && Some(root) != home {
                    return Some(root.to_path_buf());
                }
            }
            None
        };
        let mut rules = Rules::default();
        for ((path, access), users) in &seen.paths {
            if *access == Access::Read {
                continue;
            }
            if covered(path, &sys_write) {
                continue;
            }
            let target = broad(path).unwrap_or_else(|| path.clone());
            rules.write.entry(target).or_default().merge(users);
        }
        // Reads, by directory.
        let mut by_dir: BTreeMap<PathBuf, Vec<(&PathBuf, &Users)>> = BTreeMap::new();
        for ((path, access), users) in &seen.paths {
            if *access != Access::Read || covered(path, &sys_read) {
                continue;
            }
            if let Some(target) = broad(path) {
                rules.read.entry(target).or_default().merge(users);
                continue;
            }
            let dir = if seen.listed.contains(path) {
                path.clone()
            } else {
                path.parent()
                    .map_or_else(|| path.clone(), Path::to_path_buf)
            };
            by_dir.entry(dir).or_default().push((path, users));
        }
        for (dir, files) in by_dir {
            let safe = dir != Path::new("/") && Some(dir.as_path()) != home;
            if safe && (seen.listed.contains(&dir) || files.len() >= FILES_FOR_DIR) {
                let entry = rules.read.entry(dir).or_default();
                for (_, users) in files {
                    entry.merge(users);
                }
            } else {
                for (path, users) in files {
                    rules.read.entry(path.clone()).or_default().merge(users);
                }
            }
        }
        // Too broad to allow: the root, and the home directory or what
        // holds it (every secret of the user is beneath).
        let too_broad = |p: &Path| p == Path::new("/") || home.is_some_and(|h| h.starts_with(p));
        for list in [&mut rules.read, &mut rules.write] {
            let broad: Vec<PathBuf> = list.keys().filter(|p| too_broad(p)).cloned().collect();
            for p in broad {
                if let Some(users) = list.remove(&p) {
                    rules.too_broad.entry(p).or_default().merge(&users);
                }
            }
        }
        // Siblings go into their directory (objects/54 and objects/8e
        // into objects), when it is deep enough to name one tree (three
        // levels, or a directory of the home directory) and not too broad.
        let mergeable = |t: &Path| {
            !too_broad(t)
                && (t.components().count() >= 4 || home.is_some_and(|h| t.parent() == Some(h)))
        };
        loop {
            let mut by_parent: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
            for p in rules.read.keys() {
                if let Some(parent) = p.parent() {
                    by_parent
                        .entry(parent.to_path_buf())
                        .or_default()
                        .push(p.clone());
                }
            }
            let Some((parent, kids)) = by_parent
                .into_iter()
                .find(|(parent, kids)| kids.len() >= 2 && mergeable(parent))
            else {
                break;
            };
            let mut users = rules.read.remove(&parent).unwrap_or_default();
            for k in kids {
                if let Some(u) = rules.read.remove(&k) {
                    users.merge(&u);
                }
            }
            rules.read.insert(parent, users);
        }
        // A rule beneath another one (of the same or a wider kind) goes.
        let writes: Vec<PathBuf> = rules.write.keys().cloned().collect();
        rules
            .write
            .retain(|p, _| !writes.iter().any(|w| w != p && p.starts_with(w)));
        let writes: Vec<PathBuf> = rules.write.keys().cloned().collect();
        let reads: Vec<PathBuf> = rules.read.keys().cloned().collect();
        let mut covered_reads = Vec::new();
        rules.read.retain(|p, users| {
            if let Some(w) = writes.iter().find(|w| p.starts_with(w)) {
                covered_reads.push((w.clone(), users.clone()));
                return false;
            }
            !reads.iter().any(|r| r != p && p.starts_with(r))
        });
        for (w, users) in covered_reads {
            if let Some(rule) = rules.write.get_mut(&w) {
                rule.merge(&users);
            }
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(p: &str) -> Users {
        let mut u = Users::default();
        u.add(p.as_bytes(), b"x");
        u
    }

    #[test]
    fn collapses_into_the_project_tmp_and_busy_directories() {
        let mut seen = Seen::default();
        let cwd = Path::new("/work/proj");
        let tmp = Path::new("/tmp");
        let home = Path::new("/home/me");
        for (p, a) in [
            ("/work/proj/main.c", Access::Read),
            ("/work/proj/sub/x.h", Access::Read),
            ("/work/proj/main.o", Access::Write),
            ("/tmp", Access::WriteIn),
            ("/opt/sdk/include/a.h", Access::Read),
            ("/opt/sdk/include/b.h", Access::Read),
            ("/opt/sdk/include/c.h", Access::Read),
            ("/opt/one/file", Access::Read),
            ("/home/me/.config", Access::Read),
            ("/home/me/.netrc", Access::Read),
            ("/home/me/.profile", Access::Read),
            ("/usr/include/stdio.h", Access::Read),
            ("/", Access::Read),
            ("/home/me", Access::Read),
            ("/srv/repo/.git/objects/54", Access::Read),
            ("/srv/repo/.git/objects/8e", Access::Read),
            ("/srv/repo/.git/config", Access::Read),
            ("/etc/one.conf", Access::Read),
            ("/etc/two.conf", Access::Read),
        ] {
            seen.paths.insert((PathBuf::from(p), a), users("cc"));
        }
        seen.listed.insert(PathBuf::from("/"));
        seen.listed.insert(PathBuf::from("/home/me"));
        seen.listed
            .insert(PathBuf::from("/srv/repo/.git/objects/54"));
        seen.listed
            .insert(PathBuf::from("/srv/repo/.git/objects/8e"));
        let rules = Rules::collapse(&seen, Some(cwd), Some(tmp), Some(home));
        let write: Vec<_> = rules.write.keys().map(|p| p.to_str().unwrap()).collect();
        let read: Vec<_> = rules.read.keys().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(write, ["/tmp", "/work/proj"]);
        assert_eq!(
            read,
            [
                "/etc/one.conf",
                "/etc/two.conf",
                "/home/me/.config",
                "/home/me/.netrc",
                "/home/me/.profile",
                "/opt/one/file",
                "/opt/sdk/include",
                "/srv/repo/.git",
            ]
        );
        let broad: Vec<_> = rules
            .too_broad
            .keys()
            .map(|p| p.to_str().unwrap())
            .collect();
        assert_eq!(broad, ["/", "/home/me"]);
    }
}
