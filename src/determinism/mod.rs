//! Determinism and identity: what a sandboxed run sees of the host's name,
//! CPU count, randomness, directory order and clock, made the same on
//! every run and every machine.
//!
//! Owns one feature of the sandbox's plan (`Determinism`), which adds
//! builtin handlers through the supervisor's `Enforcement` trait; it uses
//! `handler` (the trapped task's memory, under `ID_VALID`), `paths` (to
//! recognise a file under any spelling) and `sys`. The sandbox builder
//! calls it; the supervisor does not know it.
//!
//! - `hostname` ([`SandboxBuilder::hostname`](crate::SandboxBuilder::hostname)):
//!   `uname` (so `gethostname`) is performed by the supervisor and the
//!   nodename replaced in the copy written back; `/etc/hostname` and
//!   `/proc/sys/kernel/hostname` opened for reading give the name.
//! - `num_cpus` ([`SandboxBuilder::num_cpus`](crate::SandboxBuilder::num_cpus)):
//!   `sched_getaffinity` shows CPUs `0..N`; `/proc/cpuinfo` lists `N`
//!   processors; `/sys/devices/system/cpu/online` and `possible` read
//!   `0-(N-1)`. The program still runs on every CPU it may use.
//! - `random_seed` ([`SandboxBuilder::random_seed`](crate::SandboxBuilder::random_seed)):
//!   `getrandom` and opens of `/dev/urandom` and `/dev/random` (any
//!   device node with their numbers) give a ChaCha20 stream derived from
//!   the seed; see `random`. `AT_RANDOM` (the 16 bytes the kernel puts in
//!   the auxiliary vector, which the C library uses for its stack
//!   protector) and address-space randomisation stay the kernel's.
//! - `deterministic_dirs` ([`SandboxBuilder::deterministic_dirs`](crate::SandboxBuilder::deterministic_dirs)):
//!   `getdents64` lists entries sorted by name; see `dirs`.
//! - `time_start` ([`SandboxBuilder::time_start`](crate::SandboxBuilder::time_start)):
//!   the wall clocks start at the given time and advance in real time;
//!   see `clock`, and `vdso` for the calls the C library makes without
//!   entering the kernel, and what a clock read costs.
//! - `port_remap` ([`SandboxBuilder::port_remap`](crate::SandboxBuilder::port_remap)):
//!   each port the program binds is virtual, with a free real port behind
//!   it (this run's map, `ports`); the network's on-behalf `bind`,
//!   `connect` and sends translate through `net`'s port hook, and
//!   `getsockname` shows the virtual port.
//!
//! Virtual files are served by an open handler that reads the path once,
//! pins what it names (relative to the task's dirfd or working directory,
//! `..`, symlinks and `/proc/<pid>/root` followed) and compares the pinned
//! file with the virtual ones; a match gets a sealed memfd with the
//! content, injected as the call's result. Opens of anything else are left
//! to the next handler or the kernel (which reads the path again: a second
//! thread rewriting it in between makes that open reach the real file;
//! these features make a run reproducible, they are not a confinement).

mod clock;
mod dirs;
mod files;
mod identity;
mod ports;
mod random;
mod vdso;

use std::sync::Arc;

use crate::error::Result;
use crate::filter::FilterBuilder;
use crate::supervisor::enforcement::{Enforcement, Install, Running, Stage, StartEnv};

/// What the determinism feature is asked for (the builder's options).
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// The name `uname`, `/etc/hostname` and `/proc/sys/kernel/hostname`
    /// show.
    pub(crate) hostname: Option<String>,
    /// The CPU count the program sees.
    pub(crate) num_cpus: Option<u32>,
    /// The seed of the random stream.
    pub(crate) random_seed: Option<u64>,
    /// Directories list in name order.
    pub(crate) deterministic_dirs: bool,
    /// Where the program's wall clock starts.
    pub(crate) time_start: Option<std::time::SystemTime>,
    /// Bound ports are virtual, with real ports behind them.
    pub(crate) port_remap: bool,
}

impl Settings {
    /// Whether any determinism option is set.
    /// Whether opens of some files get virtual content (served by path
    /// denial's on-behalf opens, which the plan turns on for it).
    pub(crate) fn serves_files(&self) -> bool {
        self.hostname.is_some() || self.num_cpus.is_some() || self.random_seed.is_some()
    }

    pub(crate) fn any(&self) -> bool {
        self.hostname.is_some()
            || self.num_cpus.is_some()
            || self.random_seed.is_some()
            || self.deterministic_dirs
            || self.time_start.is_some()
            || self.port_remap
    }
}

/// The determinism feature of a sandbox's plan.
pub(crate) struct Determinism {
    settings: Settings,
    /// The virtual files, made with the builtin handlers; served by path
    /// denial's on-behalf opens (see `files`).
    table: std::sync::OnceLock<Arc<files::Table>>,
}

impl Determinism {
    /// Checks `settings`.
    pub(crate) fn new(settings: Settings) -> Result<Self> {
        if let Some(name) = &settings.hostname {
            check_hostname(name)?;
        }
        if let Some(n) = settings.num_cpus {
            check_num_cpus(n)?;
        }
        Ok(Determinism {
            settings,
            table: std::sync::OnceLock::new(),
        })
    }
}

/// One run's state (a supervisor's): a service the handlers find.
pub(crate) struct Run {
    /// The random streams.
    random: Option<random::RandomState>,
    /// Virtual minus real wall-clock time, in nanoseconds.
    clock_offset_ns: Option<i128>,
}

impl Stage for Run {}

/// Nanoseconds since the Unix epoch (negative before it).
fn unix_ns(t: std::time::SystemTime) -> i128 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

impl Determinism {
    /// The vDSO symbols the program must not call (its calls would not be
    /// trapped).
    fn vdso_hidden(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.settings.time_start.is_some() {
            names.extend_from_slice(vdso::CLOCK_SYMBOLS);
        }
        if self.settings.random_seed.is_some() {
            names.extend_from_slice(vdso::RANDOM_SYMBOLS);
        }
        names
    }
}

impl Enforcement for Determinism {
    fn rules(&self, filter: &mut FilterBuilder) -> Result<()> {
        if self.settings.time_start.is_some() {
            clock::rules(filter)?;
        }
        Ok(())
    }

    fn builtins(&self, install: &mut Install<'_>) -> Result<()> {
        let hidden = self.vdso_hidden();
        if !hidden.is_empty() {
            // The first `brk` after an exec comes before the C library
            // looks at the vDSO (see `vdso`).
            if let Some(nr) = crate::syscalls::number(crate::arch::Arch::native(), "brk") {
                install.builtin(
                    nr,
                    Arc::new(move |cx: &crate::handler::HandlerCtx<'_>| {
                        if let Err(e) = vdso::hide(cx, &hidden) {
                            log::debug!(
                                "cannot hide the vDSO's functions of pid {}: {e}",
                                cx.pid()
                            );
                        }
                        crate::action::NotifAction::Continue
                    }),
                )?;
            }
        }
        if self.settings.time_start.is_some() {
            clock::install(install)?;
        }
        let mut files = files::VirtualFiles::default();
        if let Some(name) = &self.settings.hostname {
            identity::install_hostname(install, name, &mut files)?;
        }
        if let Some(n) = self.settings.num_cpus {
            identity::install_num_cpus(install, n, &mut files)?;
        }
        if self.settings.random_seed.is_some() {
            random::install(install, &mut files)?;
        }
        if self.settings.deterministic_dirs {
            dirs::install(install)?;
        }
        if !files.is_empty() {
            // (Once per build: `set` fails only if it was set before.)
            let _ = self.table.set(files.into_table());
        }
        Ok(())
    }

    fn start(&self, _env: &StartEnv<'_>) -> Result<Option<Running>> {
        // Per supervisor: each run starts its streams from the seed and
        // its clock at the start time.
        let run = Run {
            random: self.settings.random_seed.map(random::RandomState::new),
            clock_offset_ns: self
                .settings
                .time_start
                .map(|t| unix_ns(t) - unix_ns(std::time::SystemTime::now())),
        };
        let mut running = Running::new(Arc::new(run));
        if let Some(table) = self.table.get() {
            let serve: Arc<dyn crate::paths::ServeOpen> = Arc::clone(table) as _;
            running = running.with_service(Arc::new(crate::paths::OpenHook(serve)));
        }
        Ok(Some(if self.settings.port_remap {
            let map: Arc<dyn crate::net::PortRemap> = Arc::new(ports::PortMap::default());
            running.with_service(Arc::new(crate::net::PortHook(map)))
        } else {
            running
        }))
    }
}

/// Checks a CPU count for [`SandboxBuilder::num_cpus`](crate::SandboxBuilder::num_cpus).
fn check_num_cpus(n: u32) -> Result<()> {
    if n == 0 || n > MAX_CPUS {
        return Err(crate::Error::InvalidConfig {
            message: format!("num_cpus must be between 1 and {MAX_CPUS}, not {n}"),
        });
    }
    Ok(())
}

/// Checks a host name for [`SandboxBuilder::hostname`](crate::SandboxBuilder::hostname).
fn check_hostname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || name.contains(['\0', '\n', '/']) {
        return Err(crate::Error::InvalidConfig {
            message: format!(
                "hostname `{name}` must be 1 to 64 bytes, without NUL, newline or `/`"
            ),
        });
    }
    Ok(())
}

/// The largest CPU count a sandbox may show (the kernel's `NR_CPUS` limit).
pub const MAX_CPUS: u32 = 8192;

/// Parses a `--time-start` value: RFC 3339 (`2024-01-02T03:04:05Z`, with
/// an optional fraction, and `Z` or a `±hh:mm` offset) or a Unix timestamp
/// in seconds (`1704164645`). The error says what to give.
pub fn parse_time_start(s: &str) -> std::result::Result<std::time::SystemTime, String> {
    clock::parse(s)
}
