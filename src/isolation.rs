//! Isolation from the host: nothing in the sandbox may signal, trace, read
//! or write the memory of, or take fds from a process outside it, the
//! supervisor first.
//!
//! Owns the choice of Landlock domain for a sandbox (made once by
//! `build()`, from the kernel's ABI), the ruleset each spawn creates from
//! it, and the filter refusals that hold whatever the ABI. Calls
//! [`crate::sys::landlock`]; called by [`crate::sandbox`] and
//! [`crate::probe`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::filter::FilterBuilder;
use crate::sys::landlock::{
    self, Ruleset, RulesetAttr, ABI_SCOPING, SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL,
};
use crate::sys::process;
use crate::syscalls;

use crate::sys::landlock::{
    ACCESS_FS_MAKE_BLOCK, ACCESS_FS_MAKE_DIR, ACCESS_FS_REFER, ACCESS_FS_REMOVE_DIR,
    ACCESS_FS_TRUNCATE, ACCESS_FS_WRITE_FILE,
};

/// `LANDLOCK_ACCESS_FS_WRITE_FILE` (ABI 1) and `LANDLOCK_ACCESS_FS_TRUNCATE`
/// (ABI 3): writing to a file; `MAKE_DIR` and `REMOVE_DIR` (ABI 1): making
/// and removing directories (in a cgroup file system, cgroups: a root
/// program would make cgroups that outlive the sandbox, or remove the
/// host's).
const ACCESS_FS_WRITE: u64 =
    ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE | ACCESS_FS_MAKE_DIR | ACCESS_FS_REMOVE_DIR;

/// File system rights each ABI knows: ABI 1 has bits 0..=12, ABI 2 adds
/// `REFER` (13), ABI 3 `TRUNCATE` (14), ABI 5 `IOCTL_DEV` (15).
pub(crate) fn fs_rights_known(abi: u32) -> u64 {
    match abi {
        0 => 0,
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        3 | 4 => (1 << 15) - 1,
        _ => (1 << 16) - 1,
    }
}

/// Network rights each ABI knows: `BIND_TCP` and `CONNECT_TCP` since ABI 4.
pub(crate) fn net_rights_known(abi: u32) -> u64 {
    if abi >= 4 {
        0b11
    } else {
        0
    }
}

/// The Landlock domain every spawn of a sandbox enters, chosen by
/// [`plan`]. One ruleset and one `landlock_restrict_self` per program:
/// later features add their handled rights and rules here, trimmed to what
/// the running ABI knows.
#[derive(Clone, Debug)]
pub(crate) struct DomainPlan {
    /// The ABI the plan was made for (the kernel's, or lower in tests).
    abi: u32,
    /// What the ruleset restricts (trimmed to `abi` when it is created).
    attr: RulesetAttr,
    /// `LANDLOCK_ACCESS_FS_*` rights allowed beneath each path (opened
    /// when the ruleset is made).
    path_rules: Vec<(PathBuf, u64)>,
    /// Rights allowed beneath places opened (`O_PATH`) while planning, by
    /// a walk that has the directory at hand: each is opened relative to
    /// it, once per sandbox. (The rules of the kernel backstop of path
    /// denial, [`adopt`](Self::adopt)ed.)
    opened_rules: Vec<OpenedRule>,
    /// The write rules of [`forbid_writes_beneath`](Self::forbid_writes_beneath)
    /// without an allow list are still to be made, by
    /// [`ruleset`](Self::ruleset): their walk is left until then, since
    /// the backstop's rules ([`adopt`](Self::adopt)) or an allow list
    /// ([`confine_fs`](Self::confine_fs)) replace them (a `--deny-path`
    /// run walked `/` twice).
    write_walk_pending: bool,
    /// `LANDLOCK_ACCESS_NET_*` rights allowed on each TCP port.
    port_rules: Vec<(u16, u64)>,
    /// Where no file may be written, whatever the allow lists say
    /// ([`forbid_writes_beneath`](Self::forbid_writes_beneath)).
    write_forbidden: Vec<PathBuf>,
    /// The file system rules are an allow list ([`confine_fs`](Self::confine_fs)).
    confined: bool,
}

/// A rule on a place opened while planning.
#[derive(Clone, Debug)]
struct OpenedRule {
    /// The place (`O_PATH`).
    fd: Arc<OwnedFd>,
    /// The rights allowed beneath it.
    access: u64,
    /// Whether it is a directory, as the walk that opened it listed it
    /// (`None`: not known, asked with `fstat`): a rule on a file takes
    /// only the rights that apply to files. The listing saves an `fstat`
    /// per rule (163 for `--deny-path /etc/shadow`); an entry replaced by
    /// a file since it was listed is asked again ([`DomainPlan::ruleset`]).
    dir: Option<bool>,
}

impl OpenedRule {
    /// The rule `access` beneath the walk's entry `fd` of `kind`.
    fn listed(fd: OwnedFd, kind: Kind, access: u64) -> OpenedRule {
        OpenedRule {
            fd: Arc::new(fd),
            access,
            dir: Some(kind == Kind::Dir),
        }
    }
}

/// The rules of the kernel backstop of path denial, planned
/// ([`DomainPlan::deny_rules`]) and not yet adopted.
#[derive(Debug)]
pub(crate) struct DenyRules {
    /// Every right allowed beneath each opened place.
    rules: Vec<OpenedRule>,
    /// The rights handled.
    handled: u64,
    /// The directories beneath no rule (the domain refuses them, and
    /// whatever is made in them later): `/` and each one on the way to a
    /// denied or a write-forbidden place.
    pub(crate) ways: Vec<PathBuf>,
}

impl Drop for DomainPlan {
    /// The walk's few dozen fds, closed together (see
    /// [`close_all`](crate::sys::fs::close_all)); those a clone still
    /// shares are left to it.
    fn drop(&mut self) {
        let owned = std::mem::take(&mut self.opened_rules)
            .into_iter()
            .filter_map(|r| Arc::try_unwrap(r.fd).ok())
            .collect();
        crate::sys::fs::close_all(owned);
    }
}

impl DomainPlan {
    /// Whether signals and abstract unix sockets are scoped to the sandbox
    /// (full isolation). Without it (ABI 1 to 5, accepted as weak) the
    /// domain still forbids ptrace-like access (ptrace, `pidfd_getfd`,
    /// `process_vm_*`, `/proc/<pid>/mem`) to processes outside it.
    #[cfg(test)]
    pub(crate) fn is_scoped(&self) -> bool {
        self.attr.scoped != 0
    }

    /// No file beneath any of `places` can be written or truncated by the
    /// program (`LANDLOCK_ACCESS_FS_WRITE_FILE`, and `TRUNCATE` from ABI
    /// 3), and no directory made or removed there (`MAKE_DIR`,
    /// `REMOVE_DIR`); nothing else changes. Landlock rules only allow, so the rights
    /// are handled, then allowed beneath every entry of `/` and of each
    /// ancestor of a place that neither is nor holds a place ([`complement`]).
    /// Used for the cgroup file systems, through which a root program would
    /// move itself out of its sandbox's cgroups or raise their limits.
    ///
    /// The price: no directory can be made or removed directly in `/` or
    /// in an ancestor of a place (`/sys`, `/sys/fs`), and a file made later
    /// directly in `/` or in an ancestor of a
    /// place (`/sys`, `/sys/fs`) cannot be written either.
    ///
    /// Under an allow list ([`confine_fs`](Self::confine_fs), before or
    /// after this call) writes are allowed only beneath its write paths,
    /// and still not beneath `places`: a write path that holds one of them
    /// is split the same way, one beneath one of them loses its write rights.
    ///
    /// The entries are opened when the ruleset is made
    /// ([`ruleset`](Self::ruleset)), once for the sandbox; an entry that
    /// cannot be opened is an error (a rule left out would only forbid
    /// more, but silently), except one gone since it was listed.
    pub(crate) fn forbid_writes_beneath(&mut self, places: &[PathBuf]) -> io::Result<()> {
        if places.is_empty() {
            return Ok(());
        }
        self.write_forbidden.extend_from_slice(places);
        // `REFER` too: a domain that does not allow it refuses every link
        // or rename into another directory (`EXDEV`), which bare Linux
        // allows; allowed wherever writes are, it refuses nothing more.
        self.attr.handled_access_fs |= ACCESS_FS_WRITE | ACCESS_FS_REFER;
        if self.confined {
            return self.carve_forbidden();
        }
        self.write_walk_pending = true;
        Ok(())
    }

    /// The write rules of [`forbid_writes_beneath`](Self::forbid_writes_beneath)
    /// without an allow list: writing allowed beneath every entry of `/`
    /// and of each ancestor of a forbidden place that neither is nor holds
    /// one ([`complement`]).
    fn write_rules(&self) -> io::Result<Vec<OpenedRule>> {
        let walk = complement(Path::new("/"), None, &self.write_forbidden)?;
        Ok(walk
            .allowed
            .into_iter()
            .map(|(_, fd, kind)| OpenedRule::listed(fd, kind, ACCESS_FS_WRITE | ACCESS_FS_REFER))
            .collect())
    }

    /// The kernel backstop of path denial (see `paths::backstop`): every
    /// file system right this ABI knows is handled, and allowed beneath
    /// every entry of `/` and of each directory on the way to a place of
    /// `denied` that neither is nor leads to one of them ([`complement`]);
    /// beneath a place of [`forbid_writes_beneath`](Self::forbid_writes_beneath)
    /// (called before this), everything but writing. So nothing beneath
    /// `denied` can be opened, executed, made or removed by the program,
    /// nor anything made later directly in one of those directories
    /// (which path denial's on-behalf route, outside the domain, serves).
    /// The rules are planned here, not yet made part of the plan
    /// ([`adopt`](Self::adopt)). `None` under an allow list, when a denied
    /// place and a forbidden one lie beneath one another, or when a
    /// directory on the way could not be listed (nothing beneath it would
    /// be allowed, and the backstop could not tell what lies beneath it).
    pub(crate) fn deny_rules(&self, denied: &[PathBuf]) -> io::Result<Option<DenyRules>> {
        let nested = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        if self.confined
            || self
                .write_forbidden
                .iter()
                .any(|f| denied.iter().any(|d| nested(f, d)))
        {
            return Ok(None);
        }
        let all = fs_rights_known(self.abi);
        let mut places = denied.to_vec();
        places.extend(self.write_forbidden.iter().cloned());
        let walk = complement(Path::new("/"), None, &places)?;
        if let Some(dir) = walk.unlisted.first() {
            log::debug!(
                "{} is on the way to a denied path and cannot be listed",
                dir.display()
            );
            return Ok(None);
        }
        let mut rules: Vec<OpenedRule> = walk
            .allowed
            .into_iter()
            .map(|(_, fd, kind)| OpenedRule::listed(fd, kind, all))
            .collect();
        for place in &self.write_forbidden {
            match open_beneath(None, place.as_os_str()) {
                Ok(fd) => rules.push(OpenedRule {
                    fd: Arc::new(fd),
                    access: all & !ACCESS_FS_WRITE,
                    dir: None,
                }),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(DenyRules {
            rules,
            handled: all,
            ways: walk.ways,
        }))
    }

    /// Makes the rules of [`deny_rules`](Self::deny_rules) the plan's file
    /// system rules; how many there are.
    pub(crate) fn adopt(&mut self, planned: DenyRules) -> usize {
        self.attr.handled_access_fs |= planned.handled;
        // The write rules allow writing everywhere but the forbidden
        // places; rules of one layer add up, so they would allow writing
        // beneath `denied`: these rules replace them (and hold the
        // forbidden places, see `deny_rules`).
        self.opened_rules = planned.rules;
        self.write_walk_pending = false;
        self.opened_rules.len()
    }

    /// Makes the file system rules an allow list: `handled` are the rights
    /// the domain restricts, `rules` (canonical paths, no symlinks) what
    /// is allowed beneath each path; everything else is refused. Replaces
    /// the rules made so far (each allowed a restricted right everywhere
    /// but where it was forbidden), keeping the write ban of
    /// [`forbid_writes_beneath`](Self::forbid_writes_beneath).
    pub(crate) fn confine_fs(
        &mut self,
        handled: u64,
        rules: Vec<(PathBuf, u64)>,
    ) -> io::Result<()> {
        self.attr.handled_access_fs |= handled;
        self.path_rules = rules;
        // The write rules made without an allow list allowed writes
        // everywhere but the forbidden places: gone with it.
        self.opened_rules.clear();
        self.write_walk_pending = false;
        self.confined = true;
        self.carve_forbidden()
    }

    /// Restricts the `LANDLOCK_ACCESS_NET_*` rights `handled` to the TCP
    /// ports of `rules`.
    pub(crate) fn confine_net(&mut self, handled: u64, rules: Vec<(u16, u64)>) {
        self.attr.handled_access_net |= handled;
        self.port_rules = rules;
    }

    /// Under an allow list: no write right beneath the forbidden places.
    fn carve_forbidden(&mut self) -> io::Result<()> {
        let places = &self.write_forbidden;
        if places.is_empty() {
            return Ok(());
        }
        let mut split = Vec::new();
        for (path, access) in &mut self.path_rules {
            if *access & ACCESS_FS_WRITE == 0 {
                continue;
            }
            if places.iter().any(|q| path.starts_with(q)) {
                *access &= !ACCESS_FS_WRITE;
            } else if places.iter().any(|q| q.starts_with(&*path)) {
                let all = *access;
                *access &= !ACCESS_FS_WRITE;
                let walk = complement(path, None, places)?;
                split.extend(walk.allowed.into_iter().map(|(p, _, _)| (p, all)));
            }
        }
        self.path_rules.extend(split);
        Ok(())
    }

    /// How many rules were opened while planning or are still to be
    /// opened by [`ruleset`](Self::ruleset), for tests.
    #[cfg(test)]
    pub(crate) fn opened_rule_count(&self) -> usize {
        let pending = match self.write_walk_pending {
            true => self.write_rules().map_or(0, |r| r.len()),
            false => 0,
        };
        self.opened_rules.len() + pending
    }

    /// The ABI the plan was made for.
    pub(crate) fn abi(&self) -> u32 {
        self.abi
    }

    /// The path rules, for tests.
    #[cfg(test)]
    pub(crate) fn path_rules(&self) -> &[(PathBuf, u64)] {
        &self.path_rules
    }

    /// The port rules and the handled network rights, for tests.
    #[cfg(test)]
    pub(crate) fn port_rules(&self) -> (u64, &[(u16, u64)]) {
        (self.attr.handled_access_net, &self.port_rules)
    }

    /// Creates the ruleset every child of the sandbox enforces on itself
    /// (made once, by `build()`, in the parent): the handled rights, then the path rules, each trimmed
    /// to what the running ABI knows (a rule left with no right is skipped).
    pub(crate) fn ruleset(&self) -> io::Result<Ruleset> {
        let mut attr = self.attr;
        attr.handled_access_fs &= fs_rights_known(self.abi);
        attr.handled_access_net &= net_rights_known(self.abi);
        let ruleset = Ruleset::create(&attr)?;
        let write_rules = match self.write_walk_pending {
            true => self.write_rules()?,
            false => Vec::new(),
        };
        for rule in self.opened_rules.iter().chain(&write_rules) {
            let beneath = rule.fd.as_fd();
            let is_dir = |listed: Option<bool>| match listed {
                Some(dir) => Ok(dir),
                None => crate::sys::path::fstat(beneath).map(|st| st.is_dir()),
            };
            // A rule on a file takes only the rights that apply to files.
            let trim = |dir: bool| match dir {
                true => rule.access & attr.handled_access_fs,
                false => rule.access & attr.handled_access_fs & landlock::ACCESS_FILE,
            };
            let access = trim(is_dir(rule.dir)?);
            if access == 0 {
                continue;
            }
            match ruleset.allow_path_beneath(beneath, access) {
                // Listed as a directory, replaced by a file since: as it is.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && rule.dir == Some(true) => {
                    let access = trim(is_dir(None)?);
                    if access != 0 {
                        ruleset.allow_path_beneath(beneath, access)?;
                    }
                }
                r => r?,
            }
        }
        for (path, access) in &self.path_rules {
            let access = access & attr.handled_access_fs;
            if access == 0 {
                continue;
            }
            let beneath = match std::fs::File::options()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(path)
            {
                Ok(f) => f,
                // Gone since the plan was made: nothing beneath it to allow
                // (a rule only allows, so leaving it out cannot widen).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            // A rule on a file takes only the rights that apply to files.
            let access = if beneath.metadata()?.is_dir() {
                access
            } else {
                access & landlock::ACCESS_FILE
            };
            ruleset.allow_path_beneath(beneath.as_fd(), access)?;
        }
        for (port, access) in &self.port_rules {
            let access = access & attr.handled_access_net;
            if access != 0 {
                ruleset.allow_net_port(*port, access)?;
            }
        }
        Ok(ruleset)
    }
}

/// What [`complement`] found.
#[derive(Debug, Default)]
struct Walk {
    /// Every entry that neither is one of the places nor lies on the way
    /// to one, with its path, opened (`O_PATH`), and its type as listed.
    allowed: Vec<(PathBuf, OwnedFd, Kind)>,
    /// The directories listed (the first one, then those on the way): no
    /// entry of `allowed` is one of them or above one.
    ways: Vec<PathBuf>,
    /// Directories on the way that could not be listed (nothing beneath
    /// them is in `allowed`).
    unlisted: Vec<PathBuf>,
}

/// Every entry of `dir` that neither is one of `places` nor lies on the
/// way to one, with its path and opened (`O_PATH`, relative to `dir`),
/// descending into those that lie on the way. Symbolic links are left
/// out: what they point to is covered where it is. `at`: `dir` opened for
/// reading (listed and opened beneath through it), if the caller has it.
///
/// On the start path of every `unotify run` (the cgroup write rules): one
/// open per directory serves both its listing and the opens beneath it,
/// and paths are compared as bytes, normalised once.
fn complement(dir: &Path, at: Option<OwnedFd>, places: &[PathBuf]) -> io::Result<Walk> {
    let places: Vec<PathBuf> = places
        .iter()
        .map(|p| p.components().collect::<PathBuf>())
        .collect();
    let mut walk = Walk::default();
    complement_in(dir, at, &places, &mut walk)?;
    Ok(walk)
}

/// [`complement`] with `places` normalised.
fn complement_in(
    dir: &Path,
    at: Option<OwnedFd>,
    places: &[PathBuf],
    out: &mut Walk,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let dir_fd = match at {
        Some(fd) => fd,
        None => match open_dir(None, dir.as_os_str()) {
            Ok(fd) => fd,
            // A symbolic link or not a directory: nothing to open beneath.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(e)
            }
            Err(_) => {
                log::debug!("cannot list {} for the domain's write rules", dir.display());
                out.unlisted.push(dir.to_path_buf());
                return Ok(());
            }
        },
    };
    let names = match list_dir(dir_fd.as_fd()) {
        Ok(names) => names,
        Err(_) => {
            log::debug!("cannot list {} for the domain's write rules", dir.display());
            out.unlisted.push(dir.to_path_buf());
            return Ok(());
        }
    };
    out.ways.push(dir.to_path_buf());
    for (name, kind) in names {
        let path = dir.join(std::ffi::OsStr::from_bytes(&name));
        let p = path.as_os_str().as_bytes();
        if places.iter().any(|q| q.as_os_str().as_bytes() == p) {
            continue;
        }
        let on_the_way = places
            .iter()
            .any(|q| is_beneath(q.as_os_str().as_bytes(), p));
        let name = std::ffi::OsStr::from_bytes(&name);
        let kind = match kind {
            Some(k) => k,
            // The file system gave no type: asked of the entry itself.
            None => match open_beneath(Some(dir_fd.as_fd()), name)
                .and_then(|fd| std::fs::File::from(fd).metadata())
            {
                Ok(m) if m.file_type().is_symlink() => Kind::Symlink,
                Ok(m) if m.is_dir() => Kind::Dir,
                Ok(_) => Kind::Other,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            },
        };
        if kind == Kind::Symlink {
            continue;
        }
        let descend = kind == Kind::Dir && on_the_way;
        let opened = if descend {
            open_dir(Some(dir_fd.as_fd()), name)
        } else {
            open_beneath(Some(dir_fd.as_fd()), name)
        };
        let opened = match opened {
            Ok(fd) => fd,
            // Gone since it was listed: nothing beneath it to allow (a
            // rule only allows, so leaving it out cannot widen).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            // A directory on the way that cannot be listed: no rule
            // beneath it (as for `dir` itself above).
            Err(_) if descend => {
                log::debug!(
                    "cannot list {} for the domain's write rules",
                    path.display()
                );
                out.unlisted.push(path);
                continue;
            }
            Err(e) => return Err(e),
        };
        if descend {
            complement_in(&path, Some(opened), places, out)?;
        } else {
            out.allowed.push((path, opened, kind));
        }
    }
    Ok(())
}

/// Whether the normalised path `p` is `dir` or lies beneath it.
fn is_beneath(p: &[u8], dir: &[u8]) -> bool {
    p.starts_with(dir) && (p.len() == dir.len() || dir.ends_with(b"/") || p[dir.len()] == b'/')
}

/// An entry's type, as far as the walk cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Dir,
    Symlink,
    Other,
}

/// The names in the directory open at `fd` (without `.` and `..`), with
/// their type when the file system reports it.
fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Option<Kind>)>> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut names = Vec::new();
    loop {
        let n = crate::sys::host::getdents64(fd, &mut buf)?;
        if n == 0 {
            return Ok(names);
        }
        // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16,
        // d_type u8, then the NUL-terminated name.
        let mut off = 0;
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen < 19 || off + reclen > n {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let d_type = buf[off + 18];
            let raw = &buf[off + 19..off + reclen];
            let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
            if name != b"." && name != b".." {
                let kind = match d_type {
                    libc::DT_DIR => Some(Kind::Dir),
                    libc::DT_LNK => Some(Kind::Symlink),
                    libc::DT_UNKNOWN => None,
                    _ => Some(Kind::Other),
                };
                names.push((name.to_vec(), kind));
            }
            off += reclen;
        }
    }
}

/// Opens the directory `name` (relative to `dir`, or a path) for listing,
/// without following a final symbolic link.
fn open_dir(dir: Option<BorrowedFd<'_>>, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    open_with(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
    )
}

/// Opens `name` (relative to `dir`, or a path) as an `O_PATH` handle,
/// without following a final symbolic link.
fn open_beneath(dir: Option<BorrowedFd<'_>>, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    open_with(dir, name, libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW)
}

fn open_with(
    dir: Option<BorrowedFd<'_>>,
    name: &std::ffi::OsStr,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = crate::sys::fs::OpenHow {
        flags: flags as u64,
        ..Default::default()
    };
    crate::sys::fs::openat2(dir, &name, &how)
}

/// How a sandbox is isolated from the host, as `unotify check` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// Landlock ABI 6 or newer: the full guarantee.
    Full { abi: u32 },
    /// Landlock ABI 1 to 5: no ptrace-like access outside, but signals and
    /// abstract unix sockets reach out.
    PtraceOnly { abi: u32 },
    /// No Landlock: only the filter refusals hold.
    FilterOnly { why: String },
}

impl Level {
    /// The level a kernel with Landlock `abi` gives.
    pub(crate) fn of(abi: &io::Result<u32>) -> Level {
        match abi {
            Ok(abi) if *abi >= ABI_SCOPING => Level::Full { abi: *abi },
            Ok(abi) if *abi >= 1 => Level::PtraceOnly { abi: *abi },
            Ok(_) => Level::FilterOnly {
                why: "Landlock is not available".into(),
            },
            Err(e) => Level::FilterOnly {
                why: match e.raw_os_error() {
                    Some(libc::EOPNOTSUPP) => {
                        "Landlock is built in but disabled at boot (add landlock to lsm=)".into()
                    }
                    Some(libc::ENOSYS) => "the kernel is built without Landlock".into(),
                    _ => format!("Landlock cannot be used: {e}"),
                },
            },
        }
    }

    /// Whether this is the full guarantee.
    pub(crate) fn is_full(&self) -> bool {
        matches!(self, Level::Full { .. })
    }

    /// One line for `unotify check`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Level::Full { abi } => format!(
                "Landlock ABI {abi} domain: no signal, ptrace, memory access, fd theft or abstract unix socket reaches outside the sandbox"
            ),
            Level::PtraceOnly { abi } => format!(
                "weak: Landlock ABI {abi} forbids ptrace, memory access and fd theft outside the sandbox, but signals and abstract unix sockets reach out (scoping needs ABI {ABI_SCOPING}, Linux 6.12); `run` refuses to start without --allow-weak-isolation"
            ),
            Level::FilterOnly { why } => format!(
                "weak: {why}; only the filter refuses pidfd_getfd and process_vm_writev; `run` refuses to start without --allow-weak-isolation"
            ),
        }
    }
}

/// The kernel's Landlock ABI, capped at `cap` when given (tests use the cap
/// to see the weaker branches on a new kernel; it can only lower the ABI).
pub(crate) fn abi(cap: Option<u32>) -> io::Result<u32> {
    let abi = landlock::abi_version()?;
    Ok(cap.map_or(abi, |c| abi.min(c)))
}

/// Chooses the domain for a sandbox: full isolation on ABI 6 and newer;
/// below, [`Error::WeakIsolation`] unless `allow_weak`, and then the most
/// the kernel offers (a ptrace-only domain, or none).
pub(crate) fn plan(cap: Option<u32>, allow_weak: bool) -> Result<Option<DomainPlan>> {
    let abi = abi(cap);
    let level = Level::of(&abi);
    match level {
        Level::Full { abi } => Ok(Some(DomainPlan {
            abi,
            attr: RulesetAttr {
                // No file system or network right yet: scoping alone.
                handled_access_fs: 0,
                handled_access_net: 0,
                scoped: SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET,
            },
            path_rules: Vec::new(),
            opened_rules: Vec::new(),
            write_walk_pending: false,
            port_rules: Vec::new(),
            write_forbidden: Vec::new(),
            confined: false,
        })),
        _ if !allow_weak => Err(Error::WeakIsolation {
            detail: match &level {
                Level::PtraceOnly { abi } => format!(
                    "this kernel's Landlock is ABI {abi}, which cannot keep the sandboxed program from signalling processes outside the sandbox (the supervisor first) or connecting to their abstract unix sockets (that needs ABI {ABI_SCOPING})"
                ),
                Level::FilterOnly { why } => format!(
                    "{why}, so nothing keeps the sandboxed program from signalling, tracing or reading the memory of processes outside the sandbox (the supervisor first)"
                ),
                Level::Full { .. } => unreachable!("handled above"),
            },
        }),
        Level::PtraceOnly { abi } => {
            log::debug!("weak isolation accepted: Landlock ABI {abi} has no scoping");
            Ok(Some(DomainPlan {
                abi,
                // Before ABI 6 a domain must restrict some right: this one
                // restricts creating block devices, and allows it beneath
                // the root, so that it changes nothing but ptrace-like
                // access to processes outside.
                attr: RulesetAttr {
                    handled_access_fs: ACCESS_FS_MAKE_BLOCK,
                    ..RulesetAttr::default()
                },
                path_rules: vec![(PathBuf::from("/"), ACCESS_FS_MAKE_BLOCK)],
                opened_rules: Vec::new(),
                write_walk_pending: false,
                port_rules: Vec::new(),
                write_forbidden: Vec::new(),
                confined: false,
            }))
        }
        Level::FilterOnly { why } => {
            log::debug!("weak isolation accepted: {why}");
            Ok(None)
        }
    }
}

/// The calls that reach into another process and that the filter refuses
/// with `EPERM` in every sandbox, whatever the Landlock ABI: taking an fd
/// (`pidfd_getfd`, the listener first), writing memory
/// (`process_vm_writev`), setting another process's resource limits
/// (`prlimit64` with a pid and a new limit: Landlock's scoping does not
/// cover it, and a limit is enforced by the kernel's own signals, so a
/// program could kill any process of its user, the supervisor included, or
/// starve it of fds), and typing into a terminal (`TIOCSTI` pushes bytes
/// into the input of the terminal the program shares with the shell that
/// started it, which runs them once the sandbox exits; `TIOCLINUX` pastes
/// a console selection), and the kernel's keyrings (`add_key`,
/// `request_key`, `keyctl`: they are not per sandbox, so the user keyring
/// is the host user's, its keys readable and replaceable from inside, and
/// a key added to it outlives the sandbox, uncounted by any limit), and
/// userfaultfd (`userfaultfd`, and `ioctl(USERFAULTFD_IOC_NEW)` on
/// `/dev/userfaultfd`: a page the program leaves unfilled stalls every
/// read the supervisor makes of it, and enough such pointer arguments stall
/// every worker, so that later calls go unanswered). A call the caller
/// already denies keeps its errno. And leases (`fcntl(F_SETLEASE)`,
/// `EACCES`, see [`refuse_leases`]).
pub(crate) fn install(filter: &mut FilterBuilder) -> Result<()> {
    refuse_host_access(filter)?;
    refuse_foreign_limits(filter)?;
    refuse_terminal_input(filter)?;
    refuse_leases(filter)
}

/// `fcntl(fd, F_SETLEASE, ...)`: `EACCES`, the kernel's own answer to a
/// caller that may not take a lease. A lease on a host file (a root
/// program owns every root file, so dropping `CAP_LEASE` would not stop
/// it) makes every host process that opens it for writing (a read lease)
/// or at all (a write lease) wait for the lease-break time, 45 s by
/// default, again at each open while the sandbox takes it again.
fn refuse_leases(filter: &mut FilterBuilder) -> Result<()> {
    let Some(nr) = syscalls::number(filter.arch(), "fcntl") else {
        return Ok(());
    };
    // The kernel reads the command as a 32-bit `unsigned int`.
    let check = crate::filter::ArgCheck::new(1, 0xffff_ffff, libc::F_SETLEASE as u64);
    filter.refuse_first(nr, vec![check], libc::EACCES)?;
    Ok(())
}

/// `prlimit64(pid, resource, new, old)`: allowed on the caller itself
/// (`pid` 0, what `setrlimit` sends) and to read (`new` null); else `EPERM`.
fn refuse_foreign_limits(filter: &mut FilterBuilder) -> Result<()> {
    let Some(nr) = syscalls::number(filter.arch(), "prlimit64") else {
        return Ok(());
    };
    if filter.is_denied(nr).is_some() {
        return Ok(());
    }
    use crate::filter::{ArgCheck, SyscallAction};
    // The kernel reads the pid as a 32-bit `pid_t`.
    let own = ArgCheck::new(0, 0xffff_ffff, 0);
    let read_only = ArgCheck::equals(2, 0);
    filter.rule(
        nr,
        vec![
            (vec![own], SyscallAction::Allow),
            (vec![read_only], SyscallAction::Allow),
        ],
        SyscallAction::Errno(libc::EPERM as u16),
    )?;
    Ok(())
}

/// `_IO(0xAA, 0x00)`: a new userfaultfd from `/dev/userfaultfd`.
const USERFAULTFD_IOC_NEW: libc::c_ulong = 0xAA00;

/// `ioctl(fd, TIOCSTI | TIOCLINUX | USERFAULTFD_IOC_NEW, ...)`: `EPERM`
/// (see [`install`]).
fn refuse_terminal_input(filter: &mut FilterBuilder) -> Result<()> {
    let Some(nr) = syscalls::number(filter.arch(), "ioctl") else {
        return Ok(());
    };
    for req in [libc::TIOCSTI, libc::TIOCLINUX, USERFAULTFD_IOC_NEW] {
        // The kernel reads the request as a 32-bit `unsigned int`.
        let check = crate::filter::ArgCheck::new(1, 0xffff_ffff, u64::from(req as u32));
        filter.refuse_first(nr, vec![check], libc::EPERM)?;
    }
    Ok(())
}

/// Keeping the program away from the host, as the first feature of every
/// sandbox's plan (its filter rules; the Landlock domain is the builder's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostIsolation;

impl crate::supervisor::enforcement::Enforcement for HostIsolation {
    fn rules(&self, filter: &mut FilterBuilder) -> Result<()> {
        install(filter)
    }
}

fn refuse_host_access(filter: &mut FilterBuilder) -> Result<()> {
    for name in REFUSED {
        let nr = syscalls::resolve(name)?;
        if filter.is_denied(nr).is_none() {
            filter.deny(nr, libc::EPERM)?;
        }
    }
    Ok(())
}

/// Keeps this process dumpable while a child it launches still shares its
/// address space, and with it its dumpable flag (until the child's first
/// exec): a non-dumpable caller (`unotify run`) without `CAP_SYS_PTRACE`
/// would be refused taking the child's listener (`pidfd_getfd`) and, under
/// argv safety, reading the exec caller's `/proc` entries and seizing it.
/// Nothing of the new sandbox runs its program in that time (the child runs
/// the launcher's code until its exec), and programs of running sandboxes
/// are kept out by their Landlock domains. Windows of concurrent spawns
/// overlap: the flag is put back when the last one closes. A caller that
/// is dumpable already is left alone.
#[derive(Debug)]
pub(crate) struct DumpableWindow(());

/// Open windows, and whether the process was non-dumpable before the first.
static WINDOWS: parking_lot::Mutex<(usize, bool)> = parking_lot::Mutex::new((0, false));

impl DumpableWindow {
    /// Opens a window (see the type).
    pub(crate) fn open() -> io::Result<DumpableWindow> {
        let mut w = WINDOWS.lock();
        if w.0 == 0 {
            let restore = !process::is_dumpable()?;
            if restore {
                process::set_dumpable(true)?;
            }
            w.1 = restore;
        }
        w.0 += 1;
        Ok(DumpableWindow(()))
    }
}

impl Drop for DumpableWindow {
    fn drop(&mut self) {
        let mut w = WINDOWS.lock();
        w.0 -= 1;
        if w.0 == 0 && w.1 {
            if let Err(e) = process::set_dumpable(false) {
                log::warn!("cannot make this process non-dumpable again: {e}");
            }
        }
    }
}

/// See [`install`].
pub(crate) const REFUSED: [&str; 6] = [
    "pidfd_getfd",
    "process_vm_writev",
    "add_key",
    "request_key",
    "keyctl",
    "userfaultfd",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals every sandbox's filter makes, evaluated on the built
    /// program (the attack tests see them only where the kernel would let
    /// the call through: `TIOCSTI` needs `dev.tty.legacy_tiocsti`).
    #[test]
    fn the_filter_refuses_terminal_input_and_foreign_limits() {
        use crate::filter::interp::{run, Data};
        let arch = crate::arch::Arch::native();
        let mut b = FilterBuilder::new(arch);
        install(&mut b).unwrap();
        let f = b.build().unwrap();
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let nr = |n| syscalls::number(arch, n).unwrap();
        let call = |name, args| run(f.instructions(), &Data::new(arch, nr(name)).with_args(args)).0;
        for req in [
            u64::from(libc::TIOCSTI as u32),
            u64::from(libc::TIOCLINUX as u32),
            0xdead_0000_5412,
        ] {
            assert_eq!(call("ioctl", [0, req, 0, 0, 0, 0]), eperm, "{req:#x}");
        }
        assert_eq!(
            call("ioctl", [0, u64::from(libc::TIOCGWINSZ as u32), 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        // prlimit64(pid, resource, new, old)
        assert_eq!(
            call("prlimit64", [0, 7, 0x1000, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            call("prlimit64", [1 << 32, 7, 0x1000, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            call("prlimit64", [42, 7, 0, 0x1000, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(call("prlimit64", [42, 7, 0x1000, 0, 0, 0]), eperm);
        assert_eq!(call("prlimit64", [42, 7, 0x1000, 0x2000, 0, 0]), eperm);
        for name in ["add_key", "request_key", "keyctl", "userfaultfd"] {
            assert_eq!(call(name, [0; 6]), eperm, "{name}");
        }
        assert_eq!(call("ioctl", [3, 0xAA00, 0, 0, 0, 0]), eperm);
    }

    #[test]
    fn levels_by_abi() {
        assert!(matches!(Level::of(&Ok(7)), Level::Full { abi: 7 }));
        assert!(matches!(Level::of(&Ok(6)), Level::Full { abi: 6 }));
        assert!(matches!(Level::of(&Ok(5)), Level::PtraceOnly { abi: 5 }));
        assert!(matches!(Level::of(&Ok(0)), Level::FilterOnly { .. }));
        let weak = Level::of(&Ok(5)).describe();
        assert!(weak.contains("--allow-weak-isolation"), "{weak}");
        let off = Level::of(&Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)));
        assert!(off.describe().contains("lsm="), "{}", off.describe());
    }

    #[test]
    fn plans_by_abi() {
        let full = plan(None, false).unwrap().unwrap();
        assert!(full.is_scoped());
        assert!(full.abi() >= ABI_SCOPING);
        full.ruleset().unwrap();
        for cap in [5, 0] {
            let err = plan(Some(cap), false).unwrap_err();
            assert!(matches!(err, Error::WeakIsolation { .. }), "{err}");
            assert!(err.to_string().contains("allow_weak_isolation"), "{err}");
        }
        let weak = plan(Some(5), true).unwrap().unwrap();
        assert!(!weak.is_scoped());
        weak.ruleset().unwrap();
        let weak = plan(Some(1), true).unwrap().unwrap();
        weak.ruleset().unwrap();
        assert!(plan(Some(0), true).unwrap().is_none());
    }

    #[test]
    fn rights_grow_with_the_abi() {
        for abi in 1..8 {
            assert_eq!(
                fs_rights_known(abi) & fs_rights_known(abi + 1),
                fs_rights_known(abi)
            );
        }
        assert_eq!(net_rights_known(3), 0);
        assert_eq!(fs_rights_known(0), 0);
    }
}
