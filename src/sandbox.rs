//! [`Sandbox`]: a policy (filter + handlers) that spawns supervised children.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::arch::Arch;
use crate::command::{cstring, env_entry, Command, Stdio};
use crate::error::{Error, Result};
use crate::filter::FilterBuilder;
use crate::handler::{Chains, Handler};
use crate::supervisor::enforcement::{Enforcement, Install};
use crate::supervisor::{
    Config, Supervisor, SupervisorHandle, DEFAULT_DEFER_LIMIT, DEFAULT_DEFER_TIMEOUT,
};
use crate::sys::cgroup::Containment;
use crate::sys::ptrace::{self, Peeked};
use crate::sys::spawn::{fork_child, ChildStep, ExecPlan, StartFailure};
use crate::sys::{process, seccomp};
use crate::syscalls;

/// How long a child may take to install its filter before spawn gives up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

enum Rule {
    Handle(String, Arc<dyn Handler>),
    HandleNr(u32, Arc<dyn Handler>),
    Deny(String, i32),
    Trace(String),
}

/// The features of a sandbox, resolved ([`SandboxBuilder::plan`]).
struct Plan {
    features: Vec<Arc<dyn Enforcement>>,
    /// Under a chroot, the host directory the program starts in.
    chroot_cwd: Option<std::path::PathBuf>,
    /// The memory limit is a memory cgroup's.
    memory_cgroup: bool,
    /// The program may not dump core (see [`Sandbox::no_core_dumps`]).
    no_core_dumps: bool,
    /// Path denial's kernel backstop, if in force (see `paths::backstop`).
    path_backstop: Option<Arc<crate::paths::backstop::Backstop>>,
    /// The sandbox's cgroup refuses block devices (see `devices`).
    refuse_block: bool,
}

/// Builds a [`Sandbox`]. Errors (an unknown syscall name, a handler on a
/// denied call, ...) are reported by [`build`](Self::build).
pub struct SandboxBuilder {
    rules: Vec<Rule>,
    workers: Option<usize>,
    defer_limit: usize,
    defer_timeout: Duration,
    sync_wake_up: bool,
    limits: crate::process::Limits,
    network: Option<crate::net::NetPolicy>,
    denied_paths: Option<Arc<crate::paths::DeniedPaths>>,
    deny_paths: Vec<std::path::PathBuf>,
    policy_fn: Option<Arc<parking_lot::Mutex<Box<crate::policy::PolicyCallback>>>>,
    audit: Option<std::path::PathBuf>,
    /// An audit log already open ([`audit_to`](Self::audit_to)).
    audit_file: Option<File>,
    foreground: bool,
    argv_safety: Option<bool>,
    allow_weak_isolation: bool,
    landlock_abi_cap: Option<u32>,
    keep_caps: bool,
    cgroups: bool,
    confinement: crate::confine::Spec,
    determinism: crate::determinism::Settings,
    /// The chroot view ([`chroot`](Self::chroot), [`mount`](Self::mount)).
    chroot: crate::chroot::Spec,
    /// Told when a rule fires ([`observe`](Self::observe)).
    events: Option<crate::events::EventSink>,
    /// The observer accepts that the kernel's own refusals reach it not
    /// ([`observe_decisions`](Self::observe_decisions)).
    events_decided_only: bool,
    /// A copy-on-write work directory ([`workdir`](Self::workdir)).
    cow: Option<crate::cow::CowSettings>,
    /// The work directory's layer, made at build.
    cow_dir: Option<Arc<crate::cow::WorkDir>>,
}

impl std::fmt::Debug for SandboxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxBuilder")
            .field("rules", &self.rules.len())
            .field("limits", &self.limits)
            .field("argv_safety", &self.argv_safety)
            .finish_non_exhaustive()
    }
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            rules: Vec::new(),
            workers: None,
            defer_limit: DEFAULT_DEFER_LIMIT,
            defer_timeout: DEFAULT_DEFER_TIMEOUT,
            sync_wake_up: true,
            limits: crate::process::Limits::default(),
            network: None,
            denied_paths: None,
            deny_paths: Vec::new(),
            policy_fn: None,
            audit: None,
            audit_file: None,
            foreground: false,
            argv_safety: None,
            allow_weak_isolation: false,
            landlock_abi_cap: None,
            keep_caps: false,
            cgroups: true,
            confinement: crate::confine::Spec::default(),
            determinism: Default::default(),
            chroot: Default::default(),
            events: None,
            events_decided_only: false,
            cow: None,
            cow_dir: None,
        }
    }
}

impl SandboxBuilder {
    /// Gives the terminal to the sandbox: when the program inherits a
    /// terminal on stdin and the caller is in the foreground, the sandbox's
    /// process group becomes the foreground group (so an interactive program
    /// can read it and gets the terminal's signals), and the caller takes it
    /// back when the program has exited. Off by default; the `unotify`
    /// command turns it on.
    pub fn foreground(mut self, on: bool) -> Self {
        self.foreground = on;
        self
    }

    /// Lets the program keep every capability it would have. By default it
    /// keeps only `CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `KILL`,
    /// `SETGID`, `SETUID` and `NET_BIND_SERVICE` (dropped from its
    /// effective, permitted, inheritable and bounding sets, ambient set
    /// cleared, before exec): root inside is not root outside. Without
    /// `SYS_ADMIN`, `MKNOD`, `SYS_PTRACE`, `SYS_MODULE`, `SYS_RAWIO`,
    /// `NET_ADMIN`, `NET_RAW` and the rest, a root program cannot mount,
    /// make device nodes, load modules or reconfigure the host. (A program
    /// that is not root has none of them anyway.)
    pub fn keep_caps(mut self, keep: bool) -> Self {
        self.keep_caps = keep;
        self
    }

    /// Runs `f` for each trapped call, one call at a time, in the order the
    /// calls came: on the supervisor's policy thread, or, for a held call
    /// that finds `f` idle (nothing queued for it, nothing running it), on
    /// the worker handling that call (no hand-off between threads: a held
    /// call costs two wake-ups less). `f` must not count on running on one
    /// thread.
    ///
    /// Calls of [`policy::is_held`](crate::policy::is_held) kinds (exec,
    /// open, every call that creates, changes or removes a file by path,
    /// connect, bind, send; [`SyscallEvent::held`](crate::policy::SyscallEvent::held)
    /// says so) wait for its [`Verdict`](crate::policy::Verdict)
    /// for up to 5 s ([`HOLD_TIMEOUT`](crate::policy::HOLD_TIMEOUT)), then
    /// are denied with `EPERM`; a call `f` runs for on its worker cannot be
    /// cut short: it is denied when `f` returns after the timeout, whatever
    /// the verdict (meanwhile the other held calls queue and keep their
    /// 5 s; an `f` that never returns keeps that worker for good, as it
    /// would keep the policy thread). A panic of `f` denies the call
    /// (`EPERM`). A verdict only tightens and is taken before any side
    /// effect of the call (a denied connect sends nothing; a `sendmmsg` is
    /// asked about once per distinct destination). A verdict on a call
    /// that is not held changes nothing: it was answered already. Through the [`PolicyContext`](crate::policy::PolicyContext)
    /// the callback narrows the running policy (network, limits, paths),
    /// never beyond the starting one.
    pub fn policy_fn<F>(mut self, f: F) -> Self
    where
        F: FnMut(
                &crate::policy::SyscallEvent,
                &mut crate::policy::PolicyContext<'_>,
            ) -> crate::policy::Verdict
            + Send
            + 'static,
    {
        self.policy_fn = Some(Arc::new(parking_lot::Mutex::new(Box::new(f))));
        self
    }

    /// Appends one JSON object per trapped call to `path`, once the call
    /// is answered: its path and destination, what happened, the errno
    /// returned and the rule that decided (see
    /// [`SyscallEvent::to_json`](crate::policy::SyscallEvent::to_json) for
    /// the schema). Turns the policy machinery on (with an allow-all
    /// callback if none). The log is the supervisor's: it is opened by
    /// [`build`](Self::build), before any program starts, and its path is
    /// denied to the program (as with [`deny_path`](Self::deny_path)), so
    /// the program can neither forge nor erase records, by any name.
    pub fn audit(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.audit = Some(path.as_ref().to_path_buf());
        self
    }

    /// Like [`audit`](Self::audit), to a file already open (a pipe, the
    /// host's stdout). Nothing is denied: keeping the program away from it
    /// is the caller's part.
    pub fn audit_to(mut self, file: File) -> Self {
        self.audit_file = Some(file);
        self
    }

    /// Calls `observer` each time a rule of the sandbox fires: a fork
    /// refused at the process limit, a network destination refused, a call
    /// on a denied path refused, processes killed over the memory limit
    /// (see [`Event`](crate::events::Event)). It runs on the supervisor
    /// thread that decided, so it must be quick and must not block; the
    /// call's answer waits for it. Traps nothing by itself.
    pub fn observe<F>(mut self, observer: F) -> Self
    where
        F: Fn(&crate::events::Event) + Send + Sync + 'static,
    {
        self.events = Some(crate::events::EventSink(Arc::new(observer)));
        self.events_decided_only = false;
        self
    }

    /// Like [`observe`](Self::observe), for the refusals the supervisor
    /// decides: refusals the program's Landlock domain makes in the kernel
    /// are not told. This lets path denial keep its kernel backstop
    /// ([`Sandbox::path_backstop`]), which [`observe`](Self::observe)
    /// turns off since the domain's refusals are silent: under it, a
    /// denied file reached by an exec (or its `#!` or ELF interpreter) or
    /// by an open racing a change of its path is refused by the kernel
    /// with no event. Opens, links, renames and the other path calls that
    /// name a denied path are still refused by the supervisor and told.
    /// `unotify run` observes this way.
    ///
    /// ```no_run
    /// use unotify::Sandbox;
    /// let sandbox = Sandbox::builder()
    ///     .deny_path("/etc/shadow")
    ///     .observe_decisions(|event| log::info!("{event:?}"))
    ///     .build()?;
    /// # Ok::<(), unotify::Error>(())
    /// ```
    pub fn observe_decisions<F>(mut self, observer: F) -> Self
    where
        F: Fn(&crate::events::Event) + Send + Sync + 'static,
    {
        self.events = Some(crate::events::EventSink(Arc::new(observer)));
        self.events_decided_only = true;
        self
    }

    /// Traps `syscall` (by name, e.g. `"openat"`) and adds `handler` to its
    /// chain, after the builtin handlers and earlier user handlers.
    pub fn handle(mut self, syscall: &str, handler: impl Handler) -> Self {
        self.rules
            .push(Rule::Handle(syscall.to_owned(), Arc::new(handler)));
        self
    }

    /// Like [`handle`](Self::handle), by syscall number.
    pub fn handle_nr(mut self, nr: u32, handler: impl Handler) -> Self {
        self.rules.push(Rule::HandleNr(nr, Arc::new(handler)));
        self
    }

    /// Makes `syscall` fail with `errno` in the filter itself, without a
    /// round trip to the supervisor.
    pub fn deny(mut self, syscall: &str, errno: i32) -> Self {
        self.rules.push(Rule::Deny(syscall.to_owned(), errno));
        self
    }

    /// Traps `syscall`, lets it run, and logs each call and its decision at
    /// info level under the log target `unotify::trace`.
    pub fn trace(mut self, syscall: &str) -> Self {
        self.rules.push(Rule::Trace(syscall.to_owned()));
        self
    }

    /// Number of worker threads (default: one per CPU, at least 2).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Deferrals allowed in flight before further ones get `EAGAIN` (default 64).
    pub fn defer_limit(mut self, n: usize) -> Self {
        self.defer_limit = n;
        self
    }

    /// Deadline of a deferral, after which it is answered `EIO` (default 30 s).
    pub fn defer_timeout(mut self, d: Duration) -> Self {
        self.defer_timeout = d;
        self
    }

    /// Whether to ask the kernel for sync wake-up (default on; off only to
    /// measure its effect).
    pub fn sync_wake_up(mut self, on: bool) -> Self {
        self.sync_wake_up = on;
        self
    }

    /// Allows at most `n` processes in the sandbox at once, the first one
    /// and zombies not yet reaped included (`-P`). A fork beyond fails with
    /// `EAGAIN`; threads are not counted; with a cgroup, a process that left
    /// the program's tree and session (`setsid` after a double fork) still
    /// counts, and is killed when the sandbox ends; a fork asking for a new namespace
    /// fails with `EPERM`; `clone3` fails with `ENOSYS` (its flags are in
    /// memory the program could change after the check; the C library then
    /// uses `clone`). `n` must be at least 1, and the sandbox needs its
    /// cgroup ([`cgroups`](Self::cgroups) on, and a host where one can be
    /// made): [`build`](Self::build) refuses the limit without one, and a
    /// spawn that cannot make it fails, since a process that left the
    /// program's process group would not be counted.
    pub fn max_processes(mut self, n: u32) -> Self {
        self.limits.max_processes = Some(n);
        self
    }

    /// Allows at most `bytes` of memory over the sandbox (`-m`; see
    /// [`process::parse_size`](crate::process::parse_size)).
    ///
    /// With a memory cgroup (see [`cgroups`](Self::cgroups)) the kernel
    /// bounds what is really used, of every kind (private, shared, SysV,
    /// tmpfs files, copy-on-write copies), without swap; the task the
    /// kernel picks when the limit is reached is killed (`SIGKILL`).
    /// Without one, every call that can make memory writable (`mmap`,
    /// `mprotect`, `mremap`, `brk`, `shmget`, a fork's copy) is charged its
    /// size, untouched or not, and nothing is credited that was not
    /// charged; the task whose call would exceed the limit is killed (a
    /// fork or `shmget` gets `ENOMEM`).
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.limits.max_memory = Some(bytes);
        self
    }

    /// Exec argv safety (default: on when a handler is bound to `execve`
    /// or `execveat`, a policy callback is set or a path is denied). Before
    /// anything reads the arguments of an exec, the tasks sharing the
    /// caller's memory are stopped (ptrace) until the kernel has copied
    /// them, handlers read one copy, and the new image is checked against
    /// that copy at its exec event (killed on a mismatch). Other processes
    /// cannot write the caller's memory: `ptrace`, asynchronous I/O,
    /// `io_uring` and `userfaultfd` are refused (`EPERM`), and opens are
    /// performed on the program's behalf, refusing a procfs `mem` file for
    /// writing. A freeze that cannot be established fails the exec with
    /// `EPERM`, as does a `Defer` or `Hold` on an exec.
    pub fn argv_safety(mut self, on: bool) -> Self {
        self.argv_safety = Some(on);
        self
    }

    /// Whether to use cgroups (default on). Where this process may make
    /// them (root, or a delegated cgroup v2 subtree; v1 or v2), each sandbox
    /// gets its own (`unotify-<pid>-<random>-<n>`, under this process's cgroup): the
    /// memory limit is then the kernel's (`memory.max` or
    /// `memory.limit_in_bytes`, every kind of memory), every process of the
    /// sandbox is counted and killed from its creation on, and a watchdog
    /// process kills the sandbox if this process dies. Off, or where none
    /// can be made: memory is charged at the calls the supervisor traps,
    /// only the program's process group is killed at the end, and
    /// [`max_processes`](Self::max_processes) is refused.
    /// [`probe::probe_features`](crate::probe::probe_features) (`unotify
    /// check`) says which applies.
    pub fn cgroups(mut self, on: bool) -> Self {
        self.cgroups = on;
        self
    }

    /// Tracks processes and traps forks without a limit, so that the
    /// sandbox can be paused ([`SupervisorHandle::pause`]).
    pub fn track_processes(mut self) -> Self {
        self.limits.track = true;
        self
    }

    /// Enforces a network policy (allow or deny list, bind list) on the
    /// program's behalf; see [`crate::net`]. Host names in the rules are
    /// resolved by [`build`](Self::build).
    pub fn network(mut self, policy: crate::net::NetPolicy) -> Self {
        self.network = Some(policy);
        self
    }

    /// Denies `path` to the program (`--deny-path`): it cannot be opened,
    /// executed, linked, renamed, symlinked to, replaced or removed, under
    /// any name (`EACCES`); a directory denies everything beneath it; a unix
    /// socket beneath it cannot be connected, sent to or bound (`connect`
    /// and the sends are then made on the program's behalf). See
    /// [`crate::paths`]. Relative paths are taken from the current directory.
    pub fn deny_path(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.deny_paths.push(path.as_ref().to_path_buf());
        self
    }

    /// Enforces the shared, changeable set `set` (paths from
    /// [`deny_path`](Self::deny_path) are added to it for good): path
    /// calls are trapped even while it is empty, and changes made with
    /// [`DeniedPaths::deny`](crate::paths::DeniedPaths::deny) and
    /// [`allow`](crate::paths::DeniedPaths::allow) apply at once.
    pub fn denied_paths(mut self, set: Arc<crate::paths::DeniedPaths>) -> Self {
        self.denied_paths = Some(set);
        self
    }

    /// Accepts a kernel that cannot fully isolate the sandbox from the host
    /// (default: refuse). Every sandboxed program runs in a Landlock domain
    /// that cannot signal, ptrace, read or write the memory of, take fds
    /// from, or connect to the abstract unix sockets of any process outside
    /// it, the host first; that needs Landlock ABI 6 (Linux 6.12), and
    /// [`build`](Self::build) fails with [`Error::WeakIsolation`] below it.
    /// With `true` it takes what the kernel has: on ABI 1 to 5 a domain
    /// without signal and socket scoping, without Landlock none; the filter
    /// still refuses `pidfd_getfd` and `process_vm_writev`. A host that must
    /// not be traced even then can make itself non-dumpable
    /// (`prctl(PR_SET_DUMPABLE, 0)`, as `unotify run` does); the library
    /// does not, since that changes the whole host process.
    pub fn allow_weak_isolation(mut self, on: bool) -> Self {
        self.allow_weak_isolation = on;
        self
    }

    /// Lets the program read (and execute) files beneath `path` (`-r`).
    /// Once any of `fs_read`, [`fs_write`](Self::fs_write) or
    /// [`fs_system`](Self::fs_system) is given, the program can read,
    /// write, create or remove nothing else: the kernel refuses it
    /// (Landlock, `EACCES`; `EXDEV` for a link or rename that would move a
    /// file to where it gets more rights), whatever name the program uses
    /// (`..`, symlinks, `/proc/self/root`, `/proc/self/fd/N`, a dirfd).
    /// Landlock decides by the path a file is reached through: a hard link
    /// placed beneath an allowed path before the sandbox started makes its
    /// file readable there. Fds the program inherits keep the access they
    /// were opened with. Changes of mode, owner, times and extended
    /// attributes, which Landlock does not restrict, are checked by the
    /// supervisor and refused outside the write paths. Paths beneath an
    /// allowed one stay refused if [`deny_path`](Self::deny_path) denies
    /// them (Landlock only allows; path denial keeps refusing them on the
    /// program's behalf), and the calls path denial makes for the program
    /// are held to the same lists. The path must exist ([`build`](Self::build)
    /// fails otherwise); symlinks are resolved. See [`crate::landlock`]
    /// for the rights each part needs.
    pub fn fs_read(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.confinement.read.push(path.as_ref().to_path_buf());
        self
    }

    /// Lets the program read, write, create, remove, rename, truncate and
    /// `ioctl` files beneath `path` (`-w`; see [`fs_read`](Self::fs_read)).
    /// No file of a cgroup file system can be written even beneath it (the
    /// sandbox's cgroups are the supervisor's).
    pub fn fs_write(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.confinement.write.push(path.as_ref().to_path_buf());
        self
    }

    /// Adds the minimal system set a dynamically linked program needs
    /// ([`landlock::SYSTEM_READ`](crate::landlock::SYSTEM_READ) to read,
    /// [`landlock::SYSTEM_WRITE`](crate::landlock::SYSTEM_WRITE) to
    /// write; `--fs-system`) to the allow lists.
    pub fn fs_system(mut self) -> Self {
        self.confinement.system = true;
        self
    }

    /// Accepts running without `right` when the kernel's Landlock lacks
    /// it (by default [`build`](Self::build) fails with
    /// [`Error::MissingRight`]); what was lost is listed by
    /// [`Sandbox::degraded`] and logged at warn level.
    /// [`Right::Scoping`](crate::landlock::Right::Scoping) is
    /// [`allow_weak_isolation`](Self::allow_weak_isolation).
    pub fn allow_degraded(mut self, right: crate::landlock::Right) -> Self {
        if right == crate::landlock::Right::Scoping {
            self.allow_weak_isolation = true;
        }
        self.confinement.allow_degraded.push(right);
        self
    }

    /// Caps the Landlock ABI the sandbox believes the kernel has (it can
    /// only lower it), so that tests see the weaker branches on a new
    /// kernel. Not a public interface.
    #[doc(hidden)]
    pub fn landlock_abi_cap(mut self, abi: u32) -> Self {
        self.landlock_abi_cap = Some(abi);
        self
    }

    /// Makes the program see `name` as the host's name (`--hostname`):
    /// in `uname` (so `gethostname`, `hostname`, python's
    /// `socket.gethostname()`), `/etc/hostname` and
    /// `/proc/sys/kernel/hostname`. 1 to 64 bytes; see
    /// [`determinism`](crate::determinism).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.determinism.hostname = Some(name.into());
        self
    }

    /// Makes the program see `n` CPUs (`--num-cpus`): `sched_getaffinity`
    /// (`nproc`, most runtimes), `sysconf(_SC_NPROCESSORS_ONLN)` and
    /// `_CONF`, `/proc/cpuinfo`, `/sys/devices/system/cpu/online` and
    /// `possible`. It still runs on every CPU it may use. 1 to
    /// [`MAX_CPUS`](crate::determinism::MAX_CPUS).
    pub fn num_cpus(mut self, n: u32) -> Self {
        self.determinism.num_cpus = Some(n);
        self
    }

    /// Makes the program's randomness a deterministic stream derived from
    /// `seed` (`--random-seed`): `getrandom` (python's `os.urandom`, C++'s
    /// `random_device`, hash seeds), `/dev/urandom` and `/dev/random`. Two
    /// runs with the same seed read the same bytes (in the same order, for
    /// a single-threaded program); not for keys.
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.determinism.random_seed = Some(seed);
        self
    }

    /// Makes directories list in byte order of their names
    /// (`--deterministic-dirs`): `getdents64` (so `readdir`, `ls -f`,
    /// `os.listdir`, `find`) gives the same order on every file system.
    /// Each call reads the whole directory: slower on huge directories.
    pub fn deterministic_dirs(mut self, on: bool) -> Self {
        self.determinism.deterministic_dirs = on;
        self
    }

    /// Starts the program's wall clock at `start` (`--time-start`; see
    /// [`determinism::parse_time_start`](crate::determinism::parse_time_start)):
    /// it then advances in real time. `clock_gettime` on the wall clocks
    /// (also through the vDSO), `gettimeofday`, `time`, and absolute
    /// `clock_nanosleep` deadlines follow it; monotonic clocks and file
    /// times stay real. A wall-clock read costs a round trip to the
    /// supervisor (see [`determinism`](crate::determinism)).
    pub fn time_start(mut self, start: std::time::SystemTime) -> Self {
        self.determinism.time_start = Some(start);
        self
    }

    /// Gives each port the program binds a free real port behind it
    /// (`--port-remap`): TCP and UDP `bind` of port `P` binds a free port
    /// on the program's behalf and remembers it for this run; `connect`
    /// and sends to `P` on loopback reach it, and `getsockname` (and
    /// `getpeername` of a loopback peer) show `P`. Two sandboxes can both
    /// listen on "8080" at once. It turns the network's on-behalf calls
    /// on (an empty deny list if no [`network`](Self::network) policy is
    /// given: raw and packet sockets are then refused, see [`crate::net`]).
    pub fn port_remap(mut self, on: bool) -> Self {
        self.determinism.port_remap = on;
        self
    }

    /// Makes `dir` a copy-on-write work directory: the program's writes
    /// beneath it go to an upper layer outside it, which the program sees
    /// as `dir`; at the end [`WorkDir::finish`](crate::WorkDir::finish)
    /// commits, drops or keeps them (see [`Sandbox::workdir`]). No user
    /// namespace and no mount: path calls are performed on the program's
    /// behalf. Needs [`argv_safety`](Self::argv_safety) (on by default
    /// here; [`build`](Self::build) refuses it off).
    pub fn workdir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.cow = Some(crate::cow::CowSettings::new(dir.as_ref().to_path_buf()));
        self
    }

    fn cow_mut(&mut self) -> &mut crate::cow::CowSettings {
        self.cow
            .get_or_insert_with(|| crate::cow::CowSettings::new(std::path::PathBuf::new()))
    }

    /// Where the work directory's upper layer and commit journal are kept
    /// (default: next to the work directory).
    pub fn cow_storage(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.cow_mut().storage = Some(path.as_ref().to_path_buf());
        self
    }

    /// What [`WorkDir::finish`](crate::WorkDir::finish) does after a
    /// successful run (default: commit).
    pub fn on_exit(mut self, action: crate::cow::ExitAction) -> Self {
        self.cow_mut().on_exit = action;
        self
    }

    /// What [`WorkDir::finish`](crate::WorkDir::finish) does after a failed
    /// run, a non-zero exit or a kill (default: abort).
    pub fn on_error(mut self, action: crate::cow::ExitAction) -> Self {
        self.cow_mut().on_error = action;
        self
    }

    /// [`WorkDir::finish`](crate::WorkDir::finish) lists the changes and
    /// drops them.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.cow_mut().dry_run = on;
        self
    }

    /// Caps the bytes the work directory's upper layer holds: a write past
    /// it fails with `ENOSPC`.
    pub fn max_disk(mut self, bytes: u64) -> Self {
        self.cow_mut().max_disk = Some(bytes);
        self
    }

    /// How the work directory's view is made (`--workdir-route`):
    /// [`WorkdirRoute::Auto`](crate::WorkdirRoute::Auto) by default (the
    /// overlay route where the host allows it and no other option needs
    /// the seccomp route), or one of the two routes forced.
    pub fn workdir_route(mut self, route: crate::cow::WorkdirRoute) -> Self {
        self.cow_mut().route = route;
        self
    }

    /// Shows the program `dir` as `/` (`--chroot DIR`), without privileges:
    /// every path the program gives is resolved inside `dir` (and the
    /// [`mount`](Self::mount)s) by the supervisor, which performs the call
    /// for it; `..`, symlinks and fds from outside never lead out. The
    /// program starts in [`chroot_cwd`](Self::chroot_cwd) (`/`). Programs
    /// are run by the kernel, which finds them by their host paths: an
    /// exec is let through only when the file (and its ELF and `#!`
    /// interpreters) is the same in the view and on the host, as for
    /// programs in a mount at its host path (`mount("/usr", "/usr",
    /// true)`). Turns argv safety on. See the README's chroot section for
    /// what is virtual and the known limits.
    pub fn chroot(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.chroot.root = Some(dir.as_ref().to_owned());
        self
    }

    /// Shows the host directory `host` at `virtual_path` in the chroot
    /// (`--mount VIRTUAL:HOST[:ro]`); with `read_only`, writes beneath it
    /// fail with `EROFS`. Needs [`chroot`](Self::chroot).
    pub fn mount(
        mut self,
        virtual_path: impl AsRef<std::path::Path>,
        host: impl AsRef<std::path::Path>,
        read_only: bool,
    ) -> Self {
        self.chroot.mounts.push((
            virtual_path.as_ref().to_owned(),
            host.as_ref().to_owned(),
            read_only,
        ));
        self
    }

    /// The virtual directory the program starts in under a
    /// [`chroot`](Self::chroot) (`--chroot-cwd`; `/` by default).
    pub fn chroot_cwd(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.chroot.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Checks the rules, builds the filter and returns the sandbox.
    pub fn build(mut self) -> Result<Sandbox> {
        if self.limits.max_processes == Some(0) {
            return Err(Error::InvalidConfig {
                message: "max_processes must be at least 1 (the sandboxed program itself counts)"
                    .into(),
            });
        }
        // Without a cgroup, a process that left the program's process group
        // and tree (`setsid` after a double fork) and makes no trapped call
        // is nowhere the count can find it: the limit would not hold.
        // (A policy's own limit, set below, is only ever lowered by it.)
        let counts_processes = self.limits.max_processes.is_some();
        if counts_processes && !self.cgroups {
            return Err(Error::InvalidConfig {
                message: "max_processes needs the sandbox's cgroup (a process that left the program's process group is counted only there): drop cgroups(false), or the process limit".into(),
            });
        }
        if counts_processes
            && matches!(
                crate::sys::cgroup::contain_mode(),
                crate::sys::cgroup::ContainMode::ProcessGroup(_)
            )
        {
            return Err(Error::InvalidConfig {
                message: "max_processes needs a cgroup for the sandbox, and none can be made here: run as root or in a delegated cgroup v2 subtree (`unotify check` tells), or drop the process limit".into(),
            });
        }
        // A call the filter denies outright needs no builtin handler.
        let denied: Vec<u32> = self
            .rules
            .iter()
            .filter_map(|r| match r {
                Rule::Deny(name, _) => syscalls::resolve(name).ok(),
                _ => None,
            })
            .collect();
        seccomp::check_sizes().map_err(|e| Error::Unsupported {
            feature: "seccomp user notification",
            source: e,
        })?;
        let mut domain = crate::isolation::plan(self.landlock_abi_cap, self.allow_weak_isolation)?;
        // The features the options ask for, resolved into a plan; each
        // phase of the filter and the handler chains runs over it.
        let workdir = match self.cow.take() {
            Some(c) if c.dir.as_os_str().is_empty() => {
                return Err(Error::InvalidConfig {
                    message: "copy-on-write options without a work directory; call workdir(DIR) (--workdir DIR)".into(),
                })
            }
            Some(c) => {
                let refusal = self.overlay_refusal(&c, domain.is_some());
                Some(Arc::new(crate::cow::WorkDir::open(c, refusal)?))
            }
            None => None,
        };
        // The layer's storage (lock, commit journal) is the supervisor's:
        // a journal the program wrote would be applied by the next run.
        // (On the overlay route the program's namespace covers it.)
        if let Some(w) = workdir.as_ref().filter(|w| w.traps()) {
            self.deny_paths.push(w.storage().to_path_buf());
        }
        // Under allow lists, the layer is where the program writes DIR.
        if let Some(w) = &workdir {
            if self.confinement.confines_fs() {
                self.confinement.write.push(w.upper().to_path_buf());
            }
        }
        self.cow_dir = workdir.clone();
        let no_file_writes = workdir.as_ref().is_some_and(|w| w.caps_disk());
        if no_file_writes {
            max_disk_file_size_limit()?;
        }
        // The sandbox's cgroups are the supervisor's to manage; and a root
        // program writing beneath /proc or /sys changes the host: its
        // sysctls (a pipe in `kernel.core_pattern` runs any program as root
        // outside the sandbox at the next crash), devices, power, tracing,
        // other processes' /proc files (unless it keeps its capabilities:
        // then it is trusted to reconfigure the host).
        let mut places = Vec::new();
        if self.cgroups {
            places.extend(crate::sys::cgroup::mount_points());
        }
        if crate::sys::process::euid() == 0 && !self.keep_caps {
            places.extend(["/proc", "/sys"].map(std::path::PathBuf::from));
        }
        if let Some(d) = domain.as_mut() {
            d.forbid_writes_beneath(&places)
                .map_err(|e| Error::setup("create the Landlock ruleset", e))?;
        }
        let plan = self.plan(&denied, domain.as_mut())?;
        let confined =
            crate::confine::apply(&self.confinement, domain.as_mut(), self.network.as_ref())?;
        let workers = match self.workers {
            Some(0) => {
                return Err(Error::InvalidConfig {
                    message: "the worker pool needs at least 1 thread; use workers(1) or more"
                        .into(),
                })
            }
            Some(n) => n,
            None => process::allowed_cpus().map(|c| c.len()).unwrap_or(2).max(2),
        };
        if self.defer_limit == 0 {
            return Err(Error::InvalidConfig {
                message: "defer_limit must be at least 1".into(),
            });
        }
        let mut filter = FilterBuilder::new(Arch::native());
        let mut chains = Chains::default();
        let mut traced = Vec::new();
        // The caller's denials first, so a handler on a denied call is
        // caught below.
        for rule in &self.rules {
            if let Rule::Deny(name, errno) = rule {
                filter.deny(syscalls::resolve(name)?, *errno)?;
            }
        }
        for feature in &plan.features {
            feature.rules(&mut filter)?;
        }
        if no_file_writes && self.keep_caps {
            refuse_file_size_changes(&mut filter)?;
        }
        {
            let mut install = Install::new(&mut filter, &mut chains, &denied);
            // Builtin handlers run before the caller's.
            for feature in &plan.features {
                feature.builtins(&mut install)?;
            }
            for rule in self.rules {
                match rule {
                    Rule::Handle(name, h) => {
                        let nr = syscalls::resolve(&name)?;
                        install.named_handler(nr, &name, h)?;
                    }
                    Rule::HandleNr(nr, h) => install.handler(nr, h)?,
                    Rule::Trace(name) => {
                        let nr = syscalls::resolve(&name)?;
                        install.trap(nr, &name)?;
                        let i = nr as usize;
                        if traced.len() <= i {
                            traced.resize(i + 1, false);
                        }
                        traced[i] = true;
                    }
                    Rule::Deny(..) => {}
                }
            }
            for feature in &plan.features {
                feature.late_rules(&mut install)?;
            }
        }
        let program = filter.build()?;
        Ok(Sandbox {
            workdir,
            chroot_cwd: plan.chroot_cwd,
            no_core_dumps: plan.no_core_dumps,
            no_file_writes,
            degraded: confined.degraded,
            path_backstop: plan.path_backstop,
            refuse_block: plan.refuse_block,
            ruleset: domain
                .map(|d| d.ruleset().map(|r| Arc::new(OwnedFd::from(r))))
                .transpose()
                .map_err(|e| Error::setup("create the Landlock ruleset", e))?,
            cgroups: self.cgroups,
            max_memory: self.limits.max_memory,
            counts_processes,
            memory_cgroup: plan.memory_cgroup,
            events: self.events,
            foreground: self.foreground,
            keep_caps: (!self.keep_caps).then_some(crate::sys::caps::SANDBOX_KEEP),
            filter: program.instructions().to_vec(),
            config: Config {
                workers,
                defer_limit: self.defer_limit,
                defer_timeout: self.defer_timeout,
                chains,
                traced,
                sync_wake_up: self.sync_wake_up,
                notifies: crate::filter::may_notify(program.instructions()),
                features: plan.features,
                members: None,
                memory_cgroup: None,
            },
        })
    }

    /// Resolves the features the options ask for, and those they need,
    /// into a plan, in the order their phases run and their supervisors
    /// start them (a feature after those it uses). `denied`: the calls the
    /// caller denies.
    ///
    /// - a policy callback needs the network on-behalf (to restrict it at
    ///   run time), counted forks (to lower the limit) and path denial;
    /// - argv safety is on when an exec is handled, a policy callback may
    ///   read argv, or a path is denied; it needs opens on-behalf (a write
    ///   open of a `/proc/<pid>/mem` is refused there; see `freeze`);
    /// - a memory cgroup bounds memory in the kernel: then no memory call
    ///   is trapped.
    fn plan(
        &mut self,
        denied: &[u32],
        domain: Option<&mut crate::isolation::DomainPlan>,
    ) -> Result<Plan> {
        let policy = self.policy_setup()?;
        if policy.is_some() {
            if self.network.is_none() {
                self.network = Some(crate::net::NetPolicy::deny_list(Vec::new())?);
            }
            if self.limits.max_processes.is_none() {
                self.limits.max_processes = Some(u32::MAX);
            }
        }
        // Port remap translates inside the network's on-behalf calls.
        if self.determinism.port_remap && self.network.is_none() {
            self.network = Some(crate::net::NetPolicy::deny_list(Vec::new())?);
        }
        // Under a chroot, `AF_UNIX` pathnames in socket addresses are resolved
        // in the view inside the network's on-behalf calls (the kernel would
        // resolve them in the host's root).
        if self.chroot.any() && self.network.is_none() {
            self.network = Some(crate::net::NetPolicy::deny_list(Vec::new())?);
        }
        let handled = |nr: Option<u32>| {
            self.rules.iter().any(|r| match r {
                Rule::Handle(name, _) => nr.is_some() && syscalls::resolve(name).ok() == nr,
                Rule::HandleNr(n, _) => Some(*n) == nr,
                _ => false,
            })
        };
        let exec_handled = ["execve", "execveat"]
            .iter()
            .filter_map(|n| syscalls::resolve(n).ok())
            .filter(|nr| !denied.contains(nr))
            .any(|nr| handled(Some(nr)));
        let paths_denied = !self.deny_paths.is_empty() || self.denied_paths.is_some();
        // A work directory on the seccomp route (path calls trapped).
        let cow_traps = self.cow_dir.as_ref().is_some_and(|w| w.traps());
        let chroot = self.chroot_feature(policy.is_some(), paths_denied)?;
        // File system allow lists: the calls path denial makes for the
        // program, and the metadata calls Landlock does not restrict, are
        // held to them (see `confine`).
        let fs_lists = crate::confine::fs_lists(&self.confinement)?;
        // Determinism's virtual files are served by path denial's
        // on-behalf opens (the path read once).
        let serves_files = self.determinism.serves_files();
        // Confined files hold only if the program cannot reach their blocks
        // through a block device (see `devices`): refused by the sandbox's
        // cgroup where one can do it; else every open is made on-behalf
        // (no backstop, no `CONTINUE` on a path check), where they are
        // refused too.
        let confines_files = paths_denied
            || policy.is_some()
            || fs_lists.is_some()
            || chroot.is_some()
            || self.cow_dir.is_some();
        let refuse_block = confines_files
            && self.cgroups
            && !matches!(
                crate::sys::cgroup::device_mode(),
                crate::sys::cgroup::DeviceMode::Unavailable(_)
            );
        let opens_on_behalf = confines_files && !refuse_block;
        if opens_on_behalf {
            log::debug!("block devices cannot be refused to the sandbox's cgroup: every open is made on its behalf");
        }
        // The kernel backstop of a fixed denied set (see `paths::backstop`).
        // `UNOTIFY_PATH_BACKSTOP=off` keeps the on-behalf route for
        // every call (for comparisons; see README).
        let backstop: Option<Arc<crate::paths::backstop::Backstop>> = if paths_denied
            && std::env::var_os("UNOTIFY_PATH_BACKSTOP").is_none_or(|v| v != "off")
            && self.denied_paths.is_none()
            // Argv safety for another reason (an exec handler, asked for)
            // needs every open made on-behalf: a write open of a
            // `/proc/<pid>/mem` reached through a swapped symlink would
            // write the memory of an exec the freeze holds (see `freeze`).
            && !exec_handled
            && self.argv_safety != Some(true)
            && policy.is_none()
            // An observer is told of every refusal (the domain's own are
            // silent) unless it asked for the supervisor's decisions only.
            && (self.events.is_none() || self.events_decided_only)
            && chroot.is_none()
            && !cow_traps
            && fs_lists.is_none()
            && !serves_files
            && !opens_on_behalf
        {
            crate::paths::backstop::plan_for(&self.deny_paths, domain).map(Arc::new)
        } else {
            None
        };
        let path_backstop = backstop.clone();
        let argv_safety = self.argv_safety.unwrap_or(
            exec_handled
                || policy.is_some()
                || (paths_denied && backstop.is_none())
                || chroot.is_some(),
        );
        // The work directory's `chdir` and exec into DIR are re-issued in
        // its upper tree by argv safety's ptrace thread: without it they
        // would fail (`EACCES`).
        if cow_traps && !argv_safety {
            return Err(Error::InvalidConfig {
                message: "a copy-on-write work directory (--workdir) needs argv safety (its chdir and exec into the directory are re-issued by argv safety's ptrace thread): drop argv_safety(false)".into(),
            });
        }
        // A shared set the host may fill at any time (`denied_paths`).
        let shared_set = self.denied_paths.is_some();
        let path_set = match (self.denied_paths.take(), self.deny_paths.is_empty()) {
            (None, true)
                if policy.is_none()
                    && (!argv_safety || chroot.is_some())
                    && fs_lists.is_none()
                    && !serves_files
                    && !cow_traps =>
            {
                None
            }
            (set, _) => Some(set.unwrap_or_default()),
        };
        let metadata_only = fs_lists.is_some()
            && !opens_on_behalf
            && !cow_traps
            && !paths_denied
            && policy.is_none()
            && !argv_safety
            && !serves_files;
        // Path denial for argv safety alone (`--exec-deny`, an exec
        // handler): nothing is denied now or later, and nothing else
        // decides an open by path, so only the opens that could write an
        // exec caller's memory are taken (see `paths::PathScope`).
        // (A user handler or trace on `open`/`openat` wants every call:
        // the filter would trap only the writing ones.)
        let open_nrs: Vec<u32> = ["open", "openat"]
            .iter()
            .filter_map(|n| syscalls::number(Arch::native(), n))
            .collect();
        let opens_watched = self.rules.iter().any(|r| match r {
            Rule::Handle(name, _) | Rule::Trace(name) => syscalls::resolve(name)
                .ok()
                .is_some_and(|nr| open_nrs.contains(&nr)),
            Rule::HandleNr(n, _) => open_nrs.contains(n),
            Rule::Deny(..) => false,
        });
        let write_opens_only = argv_safety
            && !opens_watched
            && !paths_denied
            && !shared_set
            && policy.is_none()
            && fs_lists.is_none()
            && !serves_files
            && !cow_traps
            && chroot.is_none();
        // Path denial for a policy callback that may deny paths later,
        // and nothing else deciding an open by path: a read-only open runs
        // as the kernel resolves it while nothing is denied (see
        // `paths::FreeReads::WhileEmpty`).
        let reads_while_empty = policy.is_some()
            && !opens_on_behalf
            && !paths_denied
            && fs_lists.is_none()
            && !serves_files
            && !cow_traps
            && chroot.is_none();
        let path_set = path_set.map(|set| {
            if write_opens_only {
                Arc::new(set.with_free_reads(crate::paths::FreeReads::Always))
            } else if reads_while_empty {
                Arc::new(set.with_free_reads(crate::paths::FreeReads::WhileEmpty))
            } else {
                set
            }
        });
        // Under a work directory denying nothing but its own storage, with
        // nothing else deciding opens by path, a read-only open outside the
        // layer runs as the kernel resolves it (see `cow`).
        let untrapped_reads = !opens_on_behalf
            && self
                .cow_dir
                .as_ref()
                .filter(|w| w.traps())
                .is_some_and(|w| {
                    self.deny_paths.iter().all(|p| p == w.storage())
                        && !shared_set
                        && policy.is_none()
                        && !serves_files
                        && fs_lists.is_none()
                });
        if let Some(set) = &path_set {
            for p in std::mem::take(&mut self.deny_paths) {
                set.deny_fixed(&p);
            }
        }
        // `bind` is path denial's unless the network's handlers own it (a
        // bind deny list, port remap, a chroot or work directory: they check denied paths
        // themselves) or a user handler is on it.
        let net_binds = self
            .network
            .as_ref()
            .is_some_and(|n| n.deny_bind().is_some())
            || self.determinism.port_remap
            || self.chroot.any()
            || cow_traps;
        let with_bind = !net_binds && !handled(syscalls::number(Arch::native(), "bind"));
        // A unix socket beneath a denied path is reached by `connect` and
        // the sends, which the network's handlers make on the program's
        // behalf: they check the socket file against the denied paths.
        let net_for_unix_paths = paths_denied && self.network.is_none();
        // A connected `sendto` (no address) runs untrapped then, unless
        // the user handles or traces `sendto`.
        let sendto_nr = syscalls::number(Arch::native(), "sendto");
        let sendto_watched = self.rules.iter().any(|r| match r {
            Rule::Handle(name, _) | Rule::Trace(name) => {
                sendto_nr.is_some() && syscalls::resolve(name).ok() == sendto_nr
            }
            Rule::HandleNr(n, _) => Some(*n) == sendto_nr,
            Rule::Deny(..) => false,
        });
        if net_for_unix_paths {
            self.network = Some(crate::net::NetPolicy::deny_list(Vec::new())?);
        }
        // The set path denial's handlers (and the network's) check.
        let held_set = path_set.as_ref().map(|set| {
            let set = crate::confine::held_to(set, fs_lists.clone());
            let set = match backstop {
                Some(b) => Arc::new(set.with_backstop(b)),
                None => set,
            };
            match self.cow_dir.as_ref().filter(|w| w.traps()) {
                Some(w) => w.hold(set, untrapped_reads),
                None => set,
            }
        });
        let memory_cgroup = self.cgroups
            && self.limits.max_memory.is_some()
            && !matches!(
                crate::sys::cgroup::memory_mode(),
                crate::sys::cgroup::MemoryMode::Accounting(_)
            );

        let mut features: Vec<Arc<dyn Enforcement>> =
            vec![Arc::new(crate::isolation::HostIsolation)];
        if let Some(sink) = &self.events {
            features.push(Arc::new(Observing(sink.clone())));
        }
        if let Some(net) = &self.network {
            let network = crate::net::Network::new(
                net,
                self.determinism.port_remap,
                // A view resolves unix pathnames (a chroot's, a work
                // directory's: its `UnixPathHook`); binds are made for it.
                self.chroot.any() || cow_traps,
                held_set
                    .clone()
                    .filter(|_| paths_denied || policy.is_some()),
                held_set.clone(),
            )?;
            features.push(Arc::new(if net_for_unix_paths {
                network.unix_paths_only(!sendto_watched)
            } else {
                network
            }));
        }
        if self.determinism.any() {
            features.push(Arc::new(crate::determinism::Determinism::new(
                self.determinism.clone(),
            )?));
        }
        if let Some(setup) = policy {
            features.push(Arc::new(crate::policy::PolicyFeature {
                setup,
                denied_paths: path_set.clone(),
            }));
        }
        // The work directory's view answers the stat family and exec
        // first; path denial's on-behalf calls take its hooks.
        if let Some(w) = &self.cow_dir {
            features.push(w.feature());
        }
        if let Some(set) = held_set {
            features.push(Arc::new(crate::paths::PathDenial {
                set,
                with_bind,
                scope: if metadata_only {
                    crate::paths::PathScope::Metadata
                } else if write_opens_only {
                    crate::paths::PathScope::WriteOpens
                } else {
                    crate::paths::PathScope::All
                },
            }));
        }
        let chroot_cwd = chroot.as_ref().map(|c| c.host_cwd.clone());
        if let Some(c) = chroot {
            features.push(Arc::new(c));
        }
        features.push(Arc::new(crate::process::ProcessTracking {
            limits: self.limits,
            memory_cgroup,
        }));
        if argv_safety {
            features.push(Arc::new(crate::freeze::ArgvSafetyFeature));
        }
        if confines_files {
            features.push(Arc::new(crate::devices::BlockDevices));
        }
        if path_set.is_some() {
            features.push(Arc::new(crate::paths::PathView));
        }
        // The kernel writes a core dump itself, in the dumping process's
        // working directory: a file no trapped call creates, which path
        // denial (a denied directory the program changed into) and the
        // chroot view (its host directory) would not see.
        let no_core_dumps = path_set.is_some() || chroot_cwd.is_some();
        Ok(Plan {
            features,
            chroot_cwd,
            memory_cgroup,
            no_core_dumps,
            path_backstop,
            refuse_block,
        })
    }

    /// The chroot, if asked for; refused (with what to do) alongside the
    /// features whose paths are the host's: path denial, file system
    /// allow lists, virtual files, a policy callback or audit log.
    fn chroot_feature(
        &self,
        policy: bool,
        paths_denied: bool,
    ) -> Result<Option<crate::chroot::Chroot>> {
        if !self.chroot.any() {
            return Ok(None);
        }
        if self.cow.is_some() || self.cow_dir.is_some() {
            // The chroot answers every path call itself, on files it walks
            // in its view; the layer rewrites the program's host paths to
            // its upper tree. Together the chroot would have to walk the
            // layer (upper, lower, whiteouts, copy-up) component by
            // component: not done.
            return Err(Error::InvalidConfig {
                message: "a chroot cannot be combined with a copy-on-write work directory (--workdir) yet: the chroot resolves every path in its view, the layer rewrites host paths, and neither would see the other's files; to keep a tree untouched, mount it read-only (--mount VIRTUAL:HOST:ro) and work in a copy inside the chroot directory".into(),
            });
        }
        let clash = if paths_denied {
            Some("denied paths (--deny-path)")
        } else if crate::confine::fs_lists(&self.confinement)?.is_some() {
            Some("file system allow lists (-r/-w/--fs-system)")
        } else if self.determinism.serves_files() {
            Some("virtual files (--hostname, --num-cpus, --random-seed)")
        } else if policy {
            Some("a policy callback or audit log")
        } else if self.argv_safety == Some(false) {
            Some("argv safety turned off (an exec is checked under its freeze)")
        } else {
            None
        };
        if let Some(what) = clash {
            return Err(Error::InvalidConfig {
                message: format!("a chroot cannot be combined with {what} yet: their paths are the host's; drop one of the two"),
            });
        }
        crate::chroot::Chroot::new(&self.chroot).map(Some)
    }

    /// The policy callback and audit log, if either was asked for.
    /// Why a work directory cannot take the overlay route here (`None`:
    /// it can, if the host lets the supervisor mount): each of these needs
    /// the seccomp route's view, judged in the supervisor's mount
    /// namespace or kept by its traps. `landlock`: the program gets a
    /// Landlock domain (its ptrace scoping keeps `/proc/<pid>/root` of a
    /// host process, which shows DIR itself, out of reach).
    fn overlay_refusal(&self, c: &crate::cow::CowSettings, landlock: bool) -> Option<&'static str> {
        let user_handlers = self
            .rules
            .iter()
            .any(|r| matches!(r, Rule::Handle(..) | Rule::HandleNr(..)));
        let why = if c.max_disk.is_some() {
            "--max-disk is enforced by the seccomp route"
        } else if !self.cgroups
            || matches!(
                crate::sys::cgroup::device_mode(),
                crate::sys::cgroup::DeviceMode::Unavailable(_)
            )
        {
            // The overlay route traps no open: the block device holding
            // DIR or the storage must be refused by the cgroup (`devices`).
            "no cgroup can refuse block devices (the seccomp route makes every open on-behalf)"
        } else if !landlock {
            "no Landlock domain (its ptrace scoping keeps host processes' /proc/PID/root away)"
        } else if !self.deny_paths.is_empty() || self.denied_paths.is_some() {
            "denied paths are judged in the supervisor's mount namespace"
        } else if self.policy_fn.is_some() || self.audit.is_some() || self.audit_file.is_some() {
            "a policy callback or audit log sees paths in the supervisor's mount namespace"
        } else if self.confinement.confines_fs() {
            "file system allow lists (Landlock rules do not reach into an overlay)"
        } else if self.determinism.serves_files() {
            "virtual files are served by on-behalf opens"
        } else if self.network.is_some() || self.determinism.port_remap {
            "the network's handlers resolve unix socket paths in the supervisor's mount namespace"
        } else if self.argv_safety == Some(true) || user_handlers {
            "argv safety or user handlers (their on-behalf calls use the supervisor's mount namespace)"
        } else if self.chroot.any() {
            "a chroot"
        } else {
            return None;
        };
        Some(why)
    }

    fn policy_setup(&mut self) -> Result<Option<crate::policy::PolicySetup>> {
        if self.policy_fn.is_none() && self.audit.is_none() && self.audit_file.is_none() {
            return Ok(None);
        }
        if let Some(file) = self.audit_file.take() {
            return Ok(Some(crate::policy::PolicySetup {
                callback: self.policy_fn.take(),
                audit: Some(Arc::new(parking_lot::Mutex::new(file))),
                hold_timeout: crate::policy::HOLD_TIMEOUT,
            }));
        }
        let audit = match &self.audit {
            Some(path) => {
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::InvalidConfig {
                        message: format!("cannot open the audit log {}: {e}; check the directory exists and is writable", path.display()),
                    })?;
                // The log is the supervisor's: denied to the program by
                // any name (opened first, so its identity is known).
                self.deny_paths.push(path.clone());
                Some(Arc::new(parking_lot::Mutex::new(file)))
            }
            None => None,
        };
        Ok(Some(crate::policy::PolicySetup {
            callback: self.policy_fn.take(),
            audit,
            hold_timeout: crate::policy::HOLD_TIMEOUT,
        }))
    }
}

/// The host's observer, as a feature: each supervisor makes it findable by
/// the handlers that report events (`HandlerCtx::report`).
struct Observing(crate::events::EventSink);

impl Enforcement for Observing {
    fn start(
        &self,
        _env: &crate::supervisor::enforcement::StartEnv<'_>,
    ) -> Result<Option<crate::supervisor::enforcement::Running>> {
        Ok(Some(
            crate::supervisor::enforcement::Running::new(Arc::new(NoStage))
                .with_service(Arc::new(self.0.clone())),
        ))
    }
}

/// A running feature without pipeline hooks.
struct NoStage;

impl crate::supervisor::enforcement::Stage for NoStage {}

/// A sandbox policy: a seccomp filter and the handlers that decide what it
/// traps. Each [`spawn`](Self::spawn) starts one child under its own
/// supervisor.
pub struct Sandbox {
    filter: Vec<libc::sock_filter>,
    /// Under a chroot, the host directory each program starts in.
    chroot_cwd: Option<std::path::PathBuf>,
    /// `RLIMIT_CORE` is 0 (soft and hard) for the program: under path
    /// denial and a chroot, whose guarantees a core file written by the
    /// kernel would get round.
    no_core_dumps: bool,
    /// `RLIMIT_FSIZE` is 0 (soft and hard) for the program: under
    /// `--max-disk` (see `cow::writes`).
    no_file_writes: bool,
    config: Config,
    foreground: bool,
    /// The ruleset of the Landlock domain each program enters, made once
    /// (every spawn's child enforces it on itself before its filter; `None`:
    /// weak isolation accepted on a kernel without Landlock).
    ruleset: Option<Arc<OwnedFd>>,
    /// Capabilities the program keeps (`None`: all).
    keep_caps: Option<u64>,
    /// Each spawn makes cgroups (where it can).
    cgroups: bool,
    /// The memory limit, for the memory cgroup.
    max_memory: Option<u64>,
    /// A process limit is set: it counts in the cgroup, so a spawn that
    /// cannot make one fails.
    counts_processes: bool,
    /// The memory limit is a memory cgroup's (decided at build: the memory
    /// calls are not trapped then, so a spawn that cannot make one fails).
    memory_cgroup: bool,
    /// The Landlock rights the kernel lacks and the caller let degrade.
    degraded: Vec<crate::landlock::Right>,
    /// See [`path_backstop`](Self::path_backstop).
    path_backstop: Option<Arc<crate::paths::backstop::Backstop>>,
    /// Each spawn's cgroup refuses block devices (decided at build: opens
    /// may run unchecked then, so a spawn that cannot fails).
    refuse_block: bool,
    /// The host's observer, told of a memory cgroup's kills at exit.
    events: Option<crate::events::EventSink>,
    /// The copy-on-write work directory, if any.
    workdir: Option<Arc<crate::cow::WorkDir>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("filter_len", &self.filter.len())
            .field("features", &self.config.features.len())
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts building a sandbox.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The copy-on-write work directory ([`SandboxBuilder::workdir`]): its
    /// change set once the program ended, and its commit, abort or keep.
    pub fn workdir(&self) -> Option<&Arc<crate::cow::WorkDir>> {
        self.workdir.as_ref()
    }

    /// The Landlock rights this sandbox runs without, because the kernel
    /// lacks them and the caller allowed them to degrade
    /// ([`SandboxBuilder::allow_degraded`], or
    /// [`allow_weak_isolation`](SandboxBuilder::allow_weak_isolation) for
    /// [`Right::Scoping`](crate::landlock::Right::Scoping)). Empty on a
    /// kernel with every right the policy needs.
    pub fn degraded(&self) -> &[crate::landlock::Right] {
        &self.degraded
    }

    /// Whether the program's Landlock domain refuses the denied paths
    /// itself (path denial's kernel backstop; README, "Path denial"):
    /// then opens beneath its rules run without the supervisor, and execs
    /// are checked by the kernel alone. `false` where the domain could not
    /// refuse everything path denial refuses (a denied file with other
    /// hard links, shown by another mount or named through a symlink; a
    /// shared or policy-changed set; allow lists, a chroot or work
    /// directory; an event observer, unless given by
    /// [`observe_decisions`](SandboxBuilder::observe_decisions)), or with
    /// `UNOTIFY_PATH_BACKSTOP=off`.
    pub fn path_backstop(&self) -> bool {
        self.path_backstop.is_some()
    }

    /// Runs `cmd` under supervision and returns its handle once it has
    /// exec'd. Errors like `std::process::Command::spawn`:
    /// [`Error::NotFound`], [`Error::CannotExecute`], [`Error::Setup`].
    ///
    /// The child gets `SIGKILL` as its parent-death signal, which Linux ties
    /// to the *thread* that spawned it: spawn from a thread that outlives the
    /// child (a short-lived thread's exit kills the sandbox).
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child> {
        let env = cmd.environment();
        let candidates = cmd.candidates(&env)?;
        let mut argv = vec![cstring(&cmd.program)?];
        for a in &cmd.args {
            argv.push(cstring(a)?);
        }
        let envp = env
            .iter()
            .map(|(k, v)| env_entry(k, v))
            .collect::<Result<Vec<_>>>()?;
        let mut envp = envp;
        // The backstop was planned with this process's `HOME`, which a
        // program inherits; one given another that lies on the way to a
        // denied path could not run what it makes there (README, "Path
        // denial's kernel backstop").
        if let (Some(b), Some((_, home))) = (
            &self.path_backstop,
            env.iter().find(|(k, _)| k.as_os_str() == "HOME"),
        ) {
            if b.on_the_way(std::path::Path::new(home)) {
                return Err(Error::InvalidConfig {
                    message: format!(
                        "the program's HOME ({}) is a directory on the way to a denied path: under path denial's kernel backstop it could not run what it makes there; give it another HOME, or build the sandbox with argv_safety(true) (unotify run: UNOTIFY_PATH_BACKSTOP=off), which keeps path denial on its on-behalf route",
                        std::path::Path::new(home).display()
                    ),
                });
            }
        }
        if self.chroot_cwd.is_some() && cmd.cwd.is_some() {
            return Err(Error::InvalidConfig {
                message: "under a chroot the working directory is a path in the view: set it with SandboxBuilder::chroot_cwd, not Command::current_dir".into(),
            });
        }
        let mut cwd = cmd
            .cwd
            .as_ref()
            .or(self.chroot_cwd.as_ref())
            .map(|d| cstring(d.as_os_str()))
            .transpose()?;
        // In a copy-on-write work directory, the program starts in its
        // upper layer's counterpart; PWD names the work directory's path,
        // as `getcwd` answers it.
        if let Some(w) = &self.workdir {
            let here = cmd
                .cwd
                .clone()
                .or_else(|| std::env::current_dir().ok())
                .unwrap_or_default();
            if let Some(up) = w.child_cwd(&here) {
                cwd = Some(cstring(up.as_os_str())?);
                if let Some(pwd) = w.child_pwd(&here) {
                    envp.retain(|e| !e.as_bytes().starts_with(b"PWD="));
                    envp.push(env_entry(std::ffi::OsStr::new("PWD"), pwd.as_os_str())?);
                }
            }
        }

        let mut keep: Vec<OwnedFd> = Vec::new();
        let mut ours: [Option<File>; 3] = [None, None, None];
        let mut stdio: [Option<RawFd>; 3] = [None; 3];
        for (i, s) in cmd.stdio.iter_mut().enumerate() {
            match std::mem::take(s) {
                Stdio::Inherit => {}
                Stdio::Null => {
                    let f = File::options()
                        .read(i == 0)
                        .write(i != 0)
                        .open("/dev/null")
                        .map_err(|e| Error::setup("open /dev/null for stdio", e))?;
                    stdio[i] = Some(f.as_raw_fd());
                    keep.push(f.into());
                }
                Stdio::Piped => {
                    let (r, w) =
                        std::io::pipe().map_err(|e| Error::setup("create a stdio pipe", e))?;
                    let (child_end, our_end): (OwnedFd, OwnedFd) = if i == 0 {
                        (r.into(), w.into())
                    } else {
                        (w.into(), r.into())
                    };
                    stdio[i] = Some(child_end.as_raw_fd());
                    keep.push(child_end);
                    ours[i] = Some(File::from(our_end));
                }
                Stdio::Fd(fd) => {
                    stdio[i] = Some(fd.as_raw_fd());
                    keep.push(fd);
                }
            }
        }
        // Enforced by the child on itself before its filter.
        let ruleset = self.ruleset.as_ref().map(|r| r.as_raw_fd());
        // The sandbox's cgroups, made before the child: dropped on any
        // error below, which kills what is in them and removes them.
        let mut containment = self.containment()?;
        let plan = ExecPlan {
            landlock_ruleset: ruleset,
            candidates,
            argv,
            envp,
            cwd,
            // (A process that raised its own limit for the supervisor
            // gives the program the one it had.)
            nofile: cmd
                .max_open_files
                .map(|n| libc::rlimit64 {
                    rlim_cur: n,
                    rlim_max: n,
                })
                .or_else(process::original_open_files_limit),
            no_core: self.no_core_dumps,
            no_file_writes: self.no_file_writes,
            new_ipc: own_ipc_namespace(),
            overlay: self.workdir.as_ref().and_then(|w| w.overlay_mount()),
            stdio,
            filter: self.filter.clone(),
            foreground: self.foreground,
            blocked_signals: cmd.blocked_signals,
            ignored_signals: cmd.ignored_signals,
            keep_caps: self.keep_caps,
            cgroup: containment.as_ref().and_then(Containment::clone_into),
        };
        let program = crate::shown::path(std::path::Path::new(&cmd.program));
        let reap = |pid: i32| {
            let _ = process::waitpid_raw(pid, 0);
        };
        let mut forked = fork_child(plan).map_err(|e| {
            // A fork refused (`EPERM`) while this process is under a
            // seccomp filter: that filter's refusal (an outer sandbox's
            // argv safety refuses the `CLONE_VM` child the spawn makes).
            if e.raw_os_error() == Some(libc::EPERM) && under_seccomp_filter() {
                Error::Nested { source: e }
            } else {
                Error::setup("fork the child", e)
            }
        })?;
        drop(keep);
        let pid = forked.pid();
        if let Some(c) = containment.as_mut() {
            // In every cgroup, and watched, before it may run.
            c.set_group(pid);
            if let Err(e) = c.add(pid, forked.in_cgroup()).and_then(|()| c.arm()) {
                // (Not `abort`: the child holds its go pipe's write end
                // too, and would wait for ever.)
                let _ = process::kill(pid, libc::SIGKILL);
                reap(pid);
                return Err(Error::setup(
                    "put the child in the sandbox's cgroups and start its watchdog",
                    e,
                ));
            }
        }
        // Dumpable while the child shares our memory (until its exec):
        // see `DumpableWindow`.
        let window = crate::isolation::DumpableWindow::open()
            .map_err(|e| Error::setup("make this process dumpable while the child starts", e));
        let window = match window {
            Ok(w) => w,
            Err(e) => {
                let _ = process::kill(pid, libc::SIGKILL);
                reap(pid);
                return Err(e);
            }
        };
        let child_fd = match forked.listener_fd(START_TIMEOUT) {
            Ok(fd) => fd,
            Err(f) => {
                let _ = process::kill(pid, libc::SIGKILL);
                reap(pid);
                return Err(start_error(f, &program));
            }
        };
        let listener = crate::sys::pidfd::pidfd_getfd(forked.pidfd(), child_fd);
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                // (Its go pipe's write end is open in the child too: it
                // would wait for ever.)
                let _ = process::kill(pid, libc::SIGKILL);
                reap(pid);
                return Err(Error::setup(
                    "take the seccomp listener with pidfd_getfd",
                    e,
                ));
            }
        };
        // The child may run on now: its trapped calls wait in the kernel
        // until the supervisor receives them, and starting the supervisor's
        // threads overlaps with its exec.
        if let Err(f) = forked.go() {
            reap(pid);
            return Err(start_error(f, &program));
        }
        let mut config = self.config.clone();
        config.members = containment.as_ref().and_then(Containment::members);
        config.memory_cgroup = containment.as_ref().and_then(Containment::memory_cgroup);
        let supervisor = match Supervisor::start(listener, pid, config) {
            Ok(s) => s,
            Err(e) => {
                // Released without a supervisor: it must not run on.
                let _ = process::kill(pid, libc::SIGKILL);
                reap(pid);
                return Err(e);
            }
        };
        let outcome = forked.exec_outcome();
        drop(window);
        match outcome {
            Ok(()) => {}
            Err(f) => {
                reap(pid);
                supervisor.stop();
                supervisor.join();
                return Err(start_error(f, &program));
            }
        }
        let [stdin, stdout, stderr] = ours;
        Ok(Child {
            pid,
            events: self.events.clone(),
            containment,
            supervisor: Some(supervisor),
            status: None,
            stdin,
            stdout,
            stderr,
        })
    }

    /// The cgroups of a new sandbox, or `None` when they are off.
    fn containment(&self) -> Result<Option<Containment>> {
        if !self.cgroups {
            return Ok(None);
        }
        let memory = if self.memory_cgroup {
            self.max_memory
        } else {
            None
        };
        match Containment::create(memory, self.refuse_block) {
            Ok(c) if self.counts_processes && c.members().is_none() => Err(Error::setup(
                "make the sandbox's cgroup (the process limit counts in it)",
                io::Error::from_raw_os_error(libc::ENOTSUP),
            )),
            Ok(c) => Ok(Some(c)),
            // Opens are let run on the cgroup's refusal of block devices.
            Err(e) if self.refuse_block => Err(Error::setup(
                "make the sandbox's cgroup that refuses block devices (its file confinement needs it; build with cgroups(false) to make every open on the program's behalf instead)",
                e,
            )),
            Err(e) if self.counts_processes => Err(Error::setup(
                "make the sandbox's cgroup (the process limit counts in it)",
                e,
            )),
            // The memory calls are not trapped: without its cgroup the
            // limit would not hold.
            Err(e) if memory.is_some() => Err(Error::setup(
                "make the sandbox's memory cgroup (build with cgroups(false) to charge memory calls instead)",
                e,
            )),
            Err(e) => {
                log::warn!("cannot make the sandbox's cgroup ({e}); only its process group will be killed at the end");
                Ok(None)
            }
        }
    }

    /// Spawns `cmd` and waits for it.
    pub fn run(&self, cmd: &mut Command) -> Result<ExitStatus> {
        self.spawn(cmd)?
            .wait()
            .map_err(|e| Error::io("wait for the child", e))
    }
}

fn start_error(f: StartFailure, program: &str) -> Error {
    match f {
        StartFailure::Child(ChildStep::Exec, e) => match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Error::NotFound {
                program: program.to_owned(),
                source: e,
            },
            _ => Error::CannotExecute {
                program: program.to_owned(),
                source: e,
            },
        },
        // `EBUSY` from the listener's install: a filter of this process
        // already has a listener (the kernel allows one per chain).
        StartFailure::Child(ChildStep::Filter, e) if e.raw_os_error() == Some(libc::EBUSY) => {
            Error::Nested { source: e }
        }
        StartFailure::Child(ChildStep::Filter, e) => Error::setup(
            "drop capabilities and install the seccomp filter in the child",
            e,
        ),
        StartFailure::Child(ChildStep::Isolation, e) => {
            Error::setup("enter the Landlock domain in the child", e)
        }
        StartFailure::Child(ChildStep::Prepare, e) => Error::setup(
            "prepare the child (process group, stdio, working directory, open-file limit)",
            e,
        ),
        StartFailure::Vanished => Error::setup(
            "start the child (it exited or stopped answering before exec)",
            io::Error::from_raw_os_error(libc::ECHILD),
        ),
    }
}

/// Whether this process runs under a seccomp filter (`Seccomp: 2` in its
/// status).
fn under_seccomp_filter() -> bool {
    crate::sys::procfs::read_text("/proc/self/status").is_ok_and(|s| {
        crate::sys::procfs::status_field(&s, "Seccomp:").is_some_and(|v| v.trim() == "2")
    })
}

/// Lists the processes of a running sandbox ([`Child::processes`]).
#[derive(Debug, Clone)]
pub struct SandboxProcesses {
    root: i32,
    members: Option<crate::sys::cgroup::Members>,
}

impl SandboxProcesses {
    /// Every live process of the sandbox: the members of its cgroup when
    /// one holds it (whatever their group, session or parent); else the
    /// program's process group and the program's descendants, in any
    /// group or session (an orphan given to a subreaper is then its own
    /// parent's business).
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = match &self.members {
            Some(m) => m.pids(),
            None => {
                let mut v = crate::process::limits::group_members(self.root);
                v.extend(crate::process::limits::tree_pids(&[self.root]));
                v
            }
        };
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Whether a cgroup holds the sandbox (then [`pids`](Self::pids) is
    /// every process of it).
    pub fn contained(&self) -> bool {
        self.members.is_some()
    }
}

/// A running sandboxed program.
///
/// The sandbox is the program's cgroup (every process it started, whatever
/// its session), or without cgroups its process group. When the program
/// exits (seen by [`wait`](Self::wait) or [`try_wait`](Self::try_wait)),
/// what is left of the sandbox is killed, its cgroups removed and the
/// supervisor stops; if this process dies first, a watchdog process does
/// the same (one per process, started with its first sandbox and shared by
/// the others; it exits with the process). Dropping a `Child` that has not
/// been waited for kills the sandbox and waits.
#[non_exhaustive]
pub struct Child {
    pid: i32,
    /// The host's observer.
    events: Option<crate::events::EventSink>,
    /// The sandbox's cgroups and watchdog (ended after the supervisor).
    containment: Option<Containment>,
    supervisor: Option<Supervisor>,
    status: Option<ExitStatus>,
    /// The write end of a [`Stdio::Piped`] standard input.
    pub stdin: Option<File>,
    /// The read end of a [`Stdio::Piped`] standard output.
    pub stdout: Option<File>,
    /// The read end of a [`Stdio::Piped`] standard error.
    pub stderr: Option<File>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// The program's process id (also the sandbox's process group id).
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The processes of the sandbox, to be listed from any thread (to
    /// signal them all: a process that made its own process group or
    /// session is outside the program's group).
    pub fn processes(&self) -> SandboxProcesses {
        SandboxProcesses {
            root: self.pid,
            members: self.containment.as_ref().and_then(Containment::members),
        }
    }

    /// Says this process exits once the program has (a launcher such as
    /// `unotify run`): the sandbox's cgroup is then removed when it ends,
    /// rather than kept, emptied, for the process's next sandbox (which
    /// spares a spawn the making of one, about 30 µs of CPU here; a kept
    /// one is removed when the process exits, by the watchdog, which is
    /// one per process and exits with it: see [`Child`]).
    pub fn process_exits_after(&mut self) {
        if let Some(c) = self.containment.as_mut() {
            c.keep_nothing();
        }
    }

    /// Removes the emptied cgroup this process keeps for its next sandbox
    /// (see [`process_exits_after`](Self::process_exits_after)), if any: for
    /// a launcher whose spawn failed, so that it has no [`Child`] to say it
    /// exits, and that starts no other sandbox.
    pub fn release_kept_cgroup() {
        crate::sys::cgroup::release_spare();
    }

    /// A handle on this child's supervisor.
    pub fn supervisor(&self) -> Option<SupervisorHandle> {
        self.supervisor.as_ref().map(Supervisor::handle)
    }

    /// Kills the whole sandbox with `SIGKILL`.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        let r = match process::kill_group(self.pid, libc::SIGKILL) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                process::kill(self.pid, libc::SIGKILL)
            }
            other => other,
        };
        // Every process of the sandbox, in a session of its own or not.
        if let Some(c) = self.containment.as_mut() {
            c.end();
        }
        r
    }

    /// Waits for the program to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            // Sleeps until the program exits; returns at once while a
            // ptrace stop of it is reported (see `try_wait`): then retry
            // shortly, once the tracing worker has collected it.
            if let Some(Peeked::Other) = ptrace::peek(self.pid, libc::WEXITED)? {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// The exit status if the program has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(st) = self.status {
            return Ok(Some(st));
        }
        // Only an exit is collected. Under argv safety a supervisor worker
        // may trace the program, and since this process is both its parent
        // and (in another thread) its tracer, a plain waitpid here would
        // also report, and take, the ptrace stops that worker waits for.
        match ptrace::peek(self.pid, libc::WEXITED | libc::WNOHANG)? {
            Some(Peeked::Exited) => {
                Ok(process::waitpid_raw(self.pid, libc::WNOHANG)?
                    .map(|(_, raw)| self.finished(raw)))
            }
            _ => Ok(None),
        }
    }

    fn finished(&mut self, raw: i32) -> ExitStatus {
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        process::reclaim_terminal(self.pid);
        // What is left of the sandbox goes with its program.
        let _ = process::kill_group(self.pid, libc::SIGKILL);
        self.report_memory_kills();
        if let Some(c) = self.containment.as_mut() {
            c.end();
        }
        if let Some(sup) = self.supervisor.take() {
            sup.stop();
            sup.join();
        }
        status
    }
}

impl Child {
    /// Tells the observer how many processes the memory cgroup's limit
    /// killed, if any (before the cgroup is removed).
    fn report_memory_kills(&self) {
        let (Some(sink), Some(mc)) = (
            &self.events,
            self.containment
                .as_ref()
                .and_then(Containment::memory_cgroup),
        ) else {
            return;
        };
        let count = mc.oom_kills();
        if count > 0 {
            sink.report(&crate::events::Event::MemoryLimitKilled {
                pid: None,
                limit: mc.limit(),
                count,
            });
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}

/// Whether each program gets an IPC namespace of its own: where this
/// process may make one (`CAP_SYS_ADMIN`, as root). System V shared memory,
/// semaphores and message queues, and POSIX message queues, are kernel
/// objects no process owns: without it, what a program leaves there
/// outlives the sandbox (memory included) and is shared with the host.
fn own_ipc_namespace() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    crate::sys::caps::current()
        .is_ok_and(|c| c.effective & crate::sys::caps::bit(CAP_SYS_ADMIN) != 0)
}

/// Under `--max-disk` the supervisor makes the program's writes into
/// regular files, under its own `RLIMIT_FSIZE`, which must then be
/// unlimited: a limit set by the user (`ulimit -f`) would stop the
/// supervisor's writes (and `SIGXFSZ` kill it) rather than the program's.
fn max_disk_file_size_limit() -> Result<()> {
    let lim = process::file_size_limit()
        .map_err(|e| Error::setup("read the file size limit (RLIMIT_FSIZE)", e))?;
    if lim.rlim_cur == libc::RLIM64_INFINITY {
        return Ok(());
    }
    Err(Error::InvalidConfig {
        message: format!(
            "--max-disk needs an unlimited file size limit (RLIMIT_FSIZE is {} bytes, `ulimit -f`): the program runs with 0 and its writes are made for it; run `ulimit -f unlimited` first, or leave --max-disk out",
            lim.rlim_cur
        ),
    })
}

/// Under `--max-disk` a program that keeps `CAP_SYS_RESOURCE`
/// (`keep_caps`) could raise its `RLIMIT_FSIZE` of 0: `setrlimit` and
/// `prlimit64` of `RLIMIT_FSIZE` with a new limit fail with `EPERM`
/// (reading it still works). The filter compares registers only for
/// equality: a new-limit pointer that is not null has one of its 64 bits
/// set, one case each.
fn refuse_file_size_changes(filter: &mut FilterBuilder) -> Result<()> {
    use crate::filter::ArgCheck;
    let fsize = u64::from(libc::RLIMIT_FSIZE);
    if let Some(nr) = syscalls::number(filter.arch(), "setrlimit") {
        filter.refuse_first(nr, vec![ArgCheck::new(0, 0xffff_ffff, fsize)], libc::EPERM)?;
    }
    if let Some(nr) = syscalls::number(filter.arch(), "prlimit64") {
        for bit in 0..64 {
            let set = ArgCheck::new(2, 1 << bit, 1 << bit);
            filter.refuse_first(
                nr,
                vec![ArgCheck::new(1, 0xffff_ffff, fsize), set],
                libc::EPERM,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `--max-disk` with kept capabilities, a new `RLIMIT_FSIZE`
    /// is refused whatever the pointer's bits; reading it, and other
    /// limits, are not (evaluated on the built program: the test machine
    /// has no `CAP_SYS_RESOURCE` to show the raise).
    #[test]
    fn the_filter_refuses_a_new_file_size_limit_only() {
        use crate::filter::interp::{run, Data};
        let arch = Arch::native();
        let mut b = FilterBuilder::new(arch);
        crate::isolation::install(&mut b).unwrap();
        refuse_file_size_changes(&mut b).unwrap();
        let f = b.build().unwrap();
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let nr = |n| syscalls::number(arch, n).unwrap();
        let call = |name, args| run(f.instructions(), &Data::new(arch, nr(name)).with_args(args)).0;
        let fsize = u64::from(libc::RLIMIT_FSIZE);
        for new in [0x1000u64, 0x7ffd_1234_5678, 1 << 63, 1] {
            assert_eq!(
                call("prlimit64", [0, fsize, new, 0, 0, 0]),
                eperm,
                "{new:#x}"
            );
        }
        assert_eq!(
            call("prlimit64", [0, fsize, 0, 0x1000, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            call("prlimit64", [0, 7, 0x1000, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        if syscalls::number(arch, "setrlimit").is_some() {
            assert_eq!(call("setrlimit", [fsize, 0x1000, 0, 0, 0, 0]), eperm);
            assert_eq!(
                call("setrlimit", [7, 0x1000, 0, 0, 0, 0]),
                libc::SECCOMP_RET_ALLOW
            );
        }
    }
}
