//! Copy-on-write work directory (`--workdir DIR`): the program sees DIR
//! and its own changes, which go to an upper tree outside DIR; at the end
//! the changes are committed to DIR, dropped, or kept.
//!
//! Owns the layer ([`layer`]), its change set ([`changes`]), the journaled
//! commit ([`commit`]), the cap on its size ([`quota`]) and the calls it
//! answers itself ([`handlers`]). It plugs into path denial's on-behalf
//! calls through [`crate::paths::Layered`] (paths beneath DIR are
//! rewritten to the upper tree, a placeholder is read from DIR's file and
//! copied up before its first change, and nothing in DIR is written for
//! the program), and is built by `SandboxBuilder::workdir`; no user
//! namespace and no mount.
//!
//! That is the *seccomp route*, which the rest of these docs describe.
//! Where the supervisor may mount and no other option needs this view
//! (see `SandboxBuilder::overlay_refusal`), [`WorkdirRoute::Auto`] takes
//! the *overlay route* instead ([`overlay`]): overlayfs over DIR in a
//! mount namespace of the program's own, nothing trapped for the layer,
//! the upper directory read into the same change set at the end. It
//! exists for speed: most of the seccomp route's cost is calls trapped
//! only to be let through (below), which the overlay route does not trap.
//!
//! # The upper tree: placeholders
//!
//! The upper tree is a shadow of DIR: its directories are made anew, its
//! symlinks and special files made again, and each regular file is a
//! *placeholder*: an empty file of the lower file's mode and owner, known
//! to the layer by inode (upper device, inode number → the lower file's
//! path and inode; the names of a lower file with hard links share one
//! placeholder). A second link to every placeholder is kept beside the
//! upper tree (`held`) so that no placeholder's inode is freed, and its
//! number reused by a file the program makes, while the layer lives.
//!
//! Why this is sound: nothing of DIR is linked into the upper tree, so no
//! call the kernel performs on the upper tree without the supervisor can
//! reach DIR's bytes or inodes — at worst it meets an empty placeholder
//! (a wrong answer, never a change of DIR). DIR's files reach the program
//! only as read-only fds the supervisor opens, and everything that could
//! change a file through such an fd is trapped (below). The supervisor
//! answers for a placeholder wherever its bytes or metadata show:
//!
//! - through the supervisor: `open`/`openat`/`openat2`/`creat` (path
//!   denial performs every open: a read or `O_PATH` open of a placeholder
//!   gets DIR's file, read-only; a write or `O_TRUNC` open copies it up
//!   first; but see *untrapped reads* below), `truncate`, `chmod`/`chown`/`utimensat`/`utimes`/the xattr
//!   writes and `file_setattr` by path (copy-up first), `link`/`rename`/
//!   `unlink`/`symlink`/`mkdir` (performed in the upper tree; a link whose
//!   source is DIR's file is refused), `stat`/`lstat`/`newfstatat`/`statx`
//!   by path (a placeholder is answered with DIR's file's stat), `access`
//!   (the placeholder has the file's mode and owner), `getxattr`/
//!   `listxattr` by path (DIR's file's), `readlink` (procfs links into the
//!   upper tree read as DIR's paths), `getcwd` (DIR's path), `execve`/
//!   `execveat` (a placeholder the kernel would run is copied up before
//!   the exec is decided, in stage 1, so argv safety's freeze pins the
//!   copy; an absolute path of DIR runs DIR's file when the view's is its
//!   placeholder or an unchanged copy of it; one the kernel would resolve
//!   in DIR to another file than the view's is re-issued by its path in
//!   the upper tree), `chdir` (one the kernel would resolve in DIR is
//!   re-issued as the `chdir` of the upper tree's counterpart, so the
//!   working directory stays in the view), `fchmod`/`fchown`/
//!   `fsetxattr`/`fremovexattr`/`futimens` and the inode-flag `ioctl`s on
//!   an fd (a placeholder's copy, or the copy of the placeholder standing
//!   for the DIR file the fd reads; refused on any other file of DIR);
//! - not through the supervisor, and why that is sound: `read`/`mmap`/
//!   `pread`/`sendfile`/`copy_file_range`/`splice` from an fd (the fd is
//!   DIR's file opened read-only, or an upper file), the write family on
//!   an fd (no fd of the program is writable on a DIR file: every
//!   writable open is the supervisor's), `fstat` and `statx`/`newfstatat`
//!   with `AT_EMPTY_PATH` and a dirfd (an fd is DIR's file or an upper
//!   file, never a placeholder; the filter tells these by the flag and
//!   the dirfd alone, so one that also names a path runs as the kernel
//!   resolves it: read-only, at worst a placeholder's own stat; with
//!   `AT_FDCWD` they stop, and an empty path is answered `CONTINUE`), `getdents` (names and types are right; `d_ino` is the
//!   placeholder's own), `fchdir` (directories are real), and the kernel's
//!   own reads of an exec's file (copied up before, or DIR's file).
//!
//! *Untrapped reads.* When the layer's storage is all path denial denies
//! and nothing else decides opens by path (no policy or audit, no virtual
//! files, no allow lists), an `open`/`openat` with `O_RDONLY` and neither
//! `O_CREAT`, `O_TRUNC` nor `O_PATH` of an absolute path that names
//! nothing of the layer (not beneath DIR by either name, the upper tree,
//! the held links or the state directory, `/proc` or `/dev/fd`, compared
//! after `.` and `..` are removed) is answered `CONTINUE`: the kernel's
//! open is the view's, at half the cost of one made on the program's
//! behalf. Why a thread rewriting the path after the supervisor's look
//! cannot reach a write of DIR: the flags are the call's registers (not
//! `openat2`'s `struct open_how`, which is memory), so the kernel opens
//! whatever the new path names read-only; a read-only fd of DIR's file
//! is what a read open of a placeholder gives anyway, and every change
//! through an fd (`fchmod`, the inode-flag `ioctl`s, a reopen of
//! `/proc/self/fd/N` for writing) is decided by the supervisor on the
//! file itself. What such a race, or a symlink outside DIR, can get that
//! the supervisor's open would not give: a read-only fd of DIR's file as
//! it was (as a `..` route already gives), of a placeholder (empty), or
//! of the state directory's lock (empty; the journal exists only while
//! the program is gone). The kernel's open runs with the program's
//! credentials and Landlock domain, so the supervisor's own `/proc`
//! files stay out of reach. Attack test: `cow::racing_untrapped_reads_…`.
//!
//! A copy-up replaces every name of the placeholder (the program's hard
//! links to it too, found by a walk of the upper tree when the
//! placeholder has more than its held link left), so linked names stay
//! one file; it carries the lower file's xattrs.
//!
//! The change set counts a placeholder at its own lower file's path as
//! unchanged without reading it; a placeholder the program renamed or
//! linked elsewhere is copied up before the change set is taken, and a
//! kept tree is filled (every placeholder copied up).
//!
//! The cost of this design: the start makes one empty file and one link
//! per file of DIR (no bytes copied, whatever file system holds the
//! storage); a read open costs what path denial's on-behalf open costs
//! (the placeholder's origin is opened beneath a pinned DIR instead); a
//! stat of a relative path beneath the upper tree is performed by the
//! supervisor (the kernel's answer for a placeholder would be wrong).
//! What stays trapped only to be let through (`CONTINUE`): `readlink`,
//! the stat family by path and `access` of paths outside the layer (the
//! filter cannot tell them from DIR's paths, `/proc` links and
//! placeholders), and the read opens above; `gcc -O2 hello.c` makes
//! about 1000 such calls of 1057 trapped (489 of its 498 `readlink`s,
//! glibc's `realpath` on every component; 214 of 222 stats; 219 of 230
//! opens; 62 `access`; `cargo bench --bench cow` lists them). The
//! handler's own work for one of them is a read of the path and a
//! comparison; what they cost is the hand-off itself (about three
//! context switches each, 10 µs of CPU in a loop of them), so fewer
//! traps or a cheaper hand-off, not a faster handler, is what would
//! bring gcc under 1.5x (the overlay route traps none of them). None of these calls can go untrapped while the
//! kernel's answer for a path of DIR is the lower tree's: a `readlink`
//! left to the kernel would read DIR's symlink instead of one the
//! program changed, and `/proc/self/cwd` the upper tree's path; and the
//! filter sees registers only (a `readlink` of `/usr` and one of DIR
//! differ in memory alone). Where the rest of a gcc run's cost goes,
//! measured here (2 cores, shared): the supervisor's CPU for the trapped
//! calls (~7 µs each, ~3.6 context switches), the program's own slowdown
//! from them (~4.5 ms: the trap's entry and exit, cold caches), the
//! freeze of each exec of a `vfork` child (cc1, as, collect2, ld: ~0.3 ms
//! each), and the commit: its three syncs (the journal, its directory,
//! the journal's removal; 1-5 ms each while other processes write) and
//! its look for holders (every process's fds and mappings, ~2.3 ms of
//! CPU with ~90 processes), which runs on a thread of its own while the
//! journal is synced. A run that changes nothing writes no commit
//! journal.
//!
//! *Unix sockets.* `bind`, `connect` and the sends resolve an `AF_UNIX`
//! pathname in the view (the network's handlers, through a
//! `UnixPathHook`): a bind's directory is pinned, and one of DIR is its
//! upper counterpart, so that a socket is never made in DIR (by a path
//! of DIR, a symlink outside or in the layer leading there, or a thread
//! rewriting the address: the address is read once); a socket of DIR's
//! own, made anew in the upper tree where nothing listens, is reached as
//! DIR's (while its upper node is unchanged: same inode, same change
//! time). Attack test: `cow::binds_by_a_name_of_the_work_directory_…`.

mod changes;
mod commit;
mod handlers;
mod layer;
mod mounts;
mod overlay;
mod quota;
mod redirects;
mod reflink;
mod storage;
mod writes;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;

pub use changes::{Change, ChangeKind, EntryType};

use crate::error::{Error, Result};
use crate::supervisor::enforcement::{Enforcement, Install, Running, Stage, StartEnv};
use layer::Layer;
use storage::Storage;

/// What to do with the changes of a run when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitAction {
    /// Apply them to the work directory.
    Commit,
    /// Drop them.
    Abort,
    /// Leave the upper tree where it is (and say where).
    Keep,
}

impl std::str::FromStr for ExitAction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "commit" => Ok(ExitAction::Commit),
            "abort" => Ok(ExitAction::Abort),
            "keep" => Ok(ExitAction::Keep),
            _ => Err(format!("`{s}`: expected commit, abort or keep")),
        }
    }
}

/// The copy-on-write options of a [`SandboxBuilder`](crate::SandboxBuilder).
#[derive(Debug, Clone)]
pub(crate) struct CowSettings {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Option<PathBuf>,
    pub(crate) on_exit: ExitAction,
    pub(crate) on_error: ExitAction,
    pub(crate) dry_run: bool,
    pub(crate) max_disk: Option<u64>,
    pub(crate) route: WorkdirRoute,
}

/// How the program's view of a work directory is made (see the module
/// docs of `cow` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WorkdirRoute {
    /// The overlay route where the host allows it (the supervisor may
    /// mount) and no other option needs the seccomp route's view; else the
    /// seccomp route. The choice is logged at `debug` and told by
    /// [`WorkDir::route`].
    #[default]
    Auto,
    /// The supervisor performs the program's path calls (no privileges,
    /// no namespace, no mount; `--max-disk` and every other option work
    /// with it).
    Seccomp,
    /// `overlayfs` over DIR in a mount namespace of the program's own (the
    /// kernel gives the view; nothing is trapped for it). Needs
    /// `CAP_SYS_ADMIN`; an error where it cannot be taken.
    Overlay,
}

impl std::str::FromStr for WorkdirRoute {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(WorkdirRoute::Auto),
            "seccomp" => Ok(WorkdirRoute::Seccomp),
            "overlay" => Ok(WorkdirRoute::Overlay),
            _ => Err(format!("`{s}`: expected auto, seccomp or overlay")),
        }
    }
}

impl CowSettings {
    pub(crate) fn new(dir: PathBuf) -> CowSettings {
        CowSettings {
            dir,
            storage: None,
            on_exit: ExitAction::Commit,
            on_error: ExitAction::Abort,
            dry_run: false,
            max_disk: None,
            route: WorkdirRoute::Auto,
        }
    }
}

/// What [`WorkDir::finish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settled {
    /// The changes were applied to the work directory.
    Committed(Vec<Change>),
    /// The changes were dropped (a dry run lists them).
    Aborted(Vec<Change>),
    /// The upper tree was left at this path.
    Kept(PathBuf),
}

/// A copy-on-write work directory of a sandbox: its change set once the
/// program has run, and the commit, abort or keep of it.
#[derive(Debug)]
pub struct WorkDir {
    view: View,
    storage: Storage,
    settings: CowSettings,
    settled: parking_lot::Mutex<bool>,
}

/// How the view is made (the route taken).
#[derive(Debug)]
enum View {
    /// The seccomp route: the supervisor's layer.
    Layered(Arc<Layer>),
    /// The overlay route.
    Overlay(Arc<overlay::Overlay>),
}

impl WorkDir {
    /// Makes the layer over `settings.dir` (finishing a commit an earlier
    /// run left unfinished first), on the route `settings` asks for;
    /// `refusal`: why the sandbox's other options need the seccomp route.
    pub(crate) fn open(settings: CowSettings, refusal: Option<&str>) -> Result<WorkDir> {
        let given = crate::paths::normalize_abs(
            &std::env::current_dir()
                .unwrap_or_default()
                .join(&settings.dir),
        );
        let lower = std::fs::canonicalize(&settings.dir).map_err(|e| Error::InvalidConfig {
            message: format!(
                "--workdir {}: {e}; give an existing directory",
                settings.dir.display()
            ),
        })?;
        if !lower.is_dir() || lower == Path::new("/") {
            return Err(Error::InvalidConfig {
                message: format!(
                    "--workdir {}: not a directory below /; give a project directory",
                    lower.display()
                ),
            });
        }
        mounts::check(&lower).map_err(|why| Error::InvalidConfig {
            message: format!("--workdir {}: {why}", lower.display()),
        })?;
        let storage = Storage::open(&lower, settings.storage.as_deref())?;
        if let Some(view) = Self::try_overlay(&settings, refusal, &lower, &storage)? {
            return Ok(WorkDir {
                view,
                storage,
                settings,
                settled: parking_lot::Mutex::new(false),
            });
        }
        let held = storage.held.clone();
        let built = Layer::build(&lower, &given, &storage.upper, &held, settings.max_disk);
        if built.is_err() {
            // Nothing of a failed start is left behind.
            let _ = storage::remove_tree(&storage.upper);
            let _ = storage::remove_tree(&held);
            storage.release();
        }
        let layer = built.map_err(|e| Error::InvalidConfig {
            message: format!(
                "cannot make the upper layer of {} in {}: {e}; check the storage directory is writable, or pass --storage elsewhere",
                lower.display(),
                storage.upper.display()
            ),
        })?;
        layer.set_private(vec![storage.held.clone(), storage.state.clone()]);
        Ok(WorkDir {
            view: View::Layered(Arc::new(layer)),
            storage,
            settings,
            settled: parking_lot::Mutex::new(false),
        })
    }

    /// The overlay route's view, if `settings` and `refusal` allow it and
    /// the host lets this process mount it (a probe on a thread of its
    /// own); `Ok(None)`: the seccomp route.
    fn try_overlay(
        settings: &CowSettings,
        refusal: Option<&str>,
        lower: &Path,
        storage: &Storage,
    ) -> Result<Option<View>> {
        let forced = match (settings.route, refusal) {
            (WorkdirRoute::Seccomp, _) => {
                log::debug!("--workdir {}: the seccomp route (asked for)", lower.display());
                return Ok(None);
            }
            (WorkdirRoute::Auto, Some(why)) => {
                log::debug!("--workdir {}: the seccomp route ({why})", lower.display());
                return Ok(None);
            }
            (WorkdirRoute::Overlay, Some(why)) => {
                return Err(Error::InvalidConfig {
                    message: format!(
                        "--workdir-route overlay cannot be taken with these options: {why}; drop --workdir-route (the seccomp route is taken then)"
                    ),
                })
            }
            (WorkdirRoute::Overlay, None) => true,
            (_, None) => false,
        };
        let work = storage.overlay_work();
        let _ = storage::remove_tree(&work);
        // The probe mounts an overlay of its own (a volatile overlay's
        // work directory is not mounted twice), beside the upper tree.
        let probe_dirs = [".probe", ".probe.work"].map(|s| {
            let mut name = work.file_name().unwrap_or_default().to_os_string();
            name.push(s);
            work.with_file_name(name)
        });
        for d in &probe_dirs {
            let _ = storage::remove_tree(d);
        }
        let probed = overlay::Overlay::make(lower, &probe_dirs[0], &probe_dirs[1], &[])
            .and_then(|o| crate::sys::overlay::probe(o.mount()));
        for d in &probe_dirs {
            let _ = storage::remove_tree(d);
        }
        let made = probed
            .and_then(|()| overlay::Overlay::make(lower, &storage.upper, &work, &[&storage.state]));
        match made {
            Ok(o) => {
                log::debug!("--workdir {}: the overlay route", lower.display());
                Ok(Some(View::Overlay(Arc::new(o))))
            }
            Err(e) => {
                let _ = storage::remove_tree(&storage.upper);
                let _ = storage::remove_tree(&work);
                if forced {
                    storage.release();
                    return Err(Error::InvalidConfig {
                        message: format!(
                            "--workdir-route overlay: cannot mount an overlay over {} ({e}); it needs CAP_SYS_ADMIN and overlayfs: drop --workdir-route (the seccomp route is taken then)",
                            lower.display()
                        ),
                    });
                }
                log::debug!(
                    "--workdir {}: the seccomp route (no overlay here: {e})",
                    lower.display()
                );
                Ok(None)
            }
        }
    }

    /// The route this work directory takes ([`WorkdirRoute::Seccomp`] or
    /// [`WorkdirRoute::Overlay`]).
    pub fn route(&self) -> WorkdirRoute {
        match self.view {
            View::Layered(_) => WorkdirRoute::Seccomp,
            View::Overlay(_) => WorkdirRoute::Overlay,
        }
    }

    /// Whether the work directory traps the program's path calls (the
    /// seccomp route).
    pub(crate) fn traps(&self) -> bool {
        matches!(self.view, View::Layered(_))
    }

    /// Whether the size of the layer is capped (`--max-disk`, the seccomp
    /// route): the program then runs with `RLIMIT_FSIZE` 0 and its writes
    /// into regular files are made on its behalf (`writes`).
    pub(crate) fn caps_disk(&self) -> bool {
        self.traps() && self.settings.max_disk.is_some()
    }

    /// What the spawned child mounts (the overlay route).
    pub(crate) fn overlay_mount(&self) -> Option<crate::sys::overlay::OverlayMount> {
        match &self.view {
            View::Overlay(o) => Some(o.mount().clone()),
            View::Layered(_) => None,
        }
    }

    /// The work directory (canonical).
    pub fn dir(&self) -> &Path {
        match &self.view {
            View::Layered(l) => &l.lower,
            View::Overlay(o) => &o.lower,
        }
    }

    /// The upper tree, where the program's changes are (on the overlay
    /// route: overlayfs's upper directory, whiteouts and all).
    pub fn upper(&self) -> &Path {
        match &self.view {
            View::Layered(l) => &l.upper,
            View::Overlay(o) => &o.upper,
        }
    }

    /// The storage directory (the journal of a commit, the lock).
    pub fn storage(&self) -> &Path {
        &self.storage.state
    }

    /// Where a program started in `cwd` runs: its counterpart in the upper
    /// tree if `cwd` lies in the work directory.
    ///
    /// On the overlay route, its own path wherever it lies: the child
    /// changes to it after the mounts (the directory it inherits is on
    /// the mounts beneath them).
    pub(crate) fn child_cwd(&self, cwd: &Path) -> Option<PathBuf> {
        let abs = std::fs::canonicalize(cwd).ok()?;
        match &self.view {
            View::Layered(l) => Some(l.upper.join(abs.strip_prefix(self.dir()).ok()?)),
            // Taken again after the mounts wherever it is: an inherited
            // working directory beneath an ancestor of DIR (bound onto
            // itself there) stays on the mount beneath, where a relative
            // path reaches DIR itself, not the overlay.
            View::Overlay(_) => Some(abs),
        }
    }

    /// What the program is told its working directory is (`$PWD`) when
    /// it starts in `cwd` of the work directory: the work directory's
    /// path, as `getcwd` answers it.
    pub(crate) fn child_pwd(&self, cwd: &Path) -> Option<PathBuf> {
        let abs = std::fs::canonicalize(cwd).ok()?;
        abs.starts_with(self.dir()).then_some(abs)
    }

    /// The changes the program made so far (after it ended: all of them),
    /// sorted by path.
    ///
    /// On the overlay route this fills the upper directory's renamed
    /// directories in with DIR's files first (see the README): called
    /// while the program still runs, a change it makes meanwhile in such
    /// a directory may fail or be missed; call it after the program ended.
    pub fn changes(&self) -> Result<Vec<Change>> {
        let layer = match &self.view {
            View::Layered(l) => l,
            View::Overlay(o) => {
                return o
                    .changes()
                    .map_err(|e| Error::io("list the changes of the work directory", e))
            }
        };
        layer
            .materialize(false)
            .and_then(|()| {
                changes::diff(&layer.lower, &layer.upper, &|rel, dev, ino| {
                    layer.unchanged_placeholder(rel, dev, ino)
                })
            })
            .map_err(|e| Error::io("list the changes of the work directory", e))
    }

    /// Applies the changes to the work directory, crash-safe (see the
    /// module docs), and drops the upper tree. Call it after the program
    /// (and everything it started) has ended.
    pub fn commit(&self) -> Result<Vec<Change>> {
        let changes = self.changes()?;
        let survivors = match &self.view {
            View::Layered(l) => l.survivors_possible(),
            View::Overlay(o) => o.survivors_possible(),
        };
        commit::commit(
            self.dir(),
            self.upper(),
            &self.storage.state,
            &changes,
            survivors,
        )
        .map_err(|e| {
            Error::io(
                "commit the work directory (run `unotify cow-recover STORAGE` to finish it)",
                e,
            )
        })?;
        self.drop_upper();
        Ok(changes)
    }

    /// Drops the changes.
    pub fn abort(&self) -> Result<()> {
        self.drop_upper();
        Ok(())
    }

    /// Keeps the upper tree (returned) and the storage after the sandbox.
    ///
    /// On the seccomp route the kept tree is the program's view, readable
    /// without the layer; on the overlay route it is overlayfs's upper
    /// directory (what changed, with whiteouts for deletions: mount it
    /// with DIR as the lower layer to see the view).
    pub fn keep(&self) -> PathBuf {
        // The placeholders get their files' bytes.
        if let View::Layered(l) = &self.view {
            if let Err(e) = l.materialize(true) {
                log::warn!(
                    "cannot fill the kept upper layer {} with the unchanged files: {e}",
                    l.upper.display()
                );
            }
        }
        if let View::Overlay(o) = &self.view {
            // A renamed directory of DIR is kept whole.
            if let Err(e) = o.fill() {
                log::warn!(
                    "cannot fill the renamed directories of the kept upper layer {}: {e}",
                    o.upper.display()
                );
            }
            let _ = storage::remove_tree(o.work());
        }
        let _ = storage::remove_tree(&self.storage.held);
        *self.settled.lock() = true;
        self.storage.mark_kept();
        self.upper().to_path_buf()
    }

    /// Applies the builder's choice for a run that ended with `status`:
    /// `on_error` for a failure (non-zero exit or killed), else `on_exit`;
    /// a dry run lists the changes and drops them.
    pub fn finish(&self, status: &ExitStatus) -> Result<Settled> {
        if self.settings.dry_run {
            let changes = self.changes()?;
            self.abort()?;
            return Ok(Settled::Aborted(changes));
        }
        let action = if status.success() {
            self.settings.on_exit
        } else {
            self.settings.on_error
        };
        match action {
            ExitAction::Commit => self.commit().map(Settled::Committed),
            ExitAction::Abort => {
                let changes = self.changes().unwrap_or_default();
                self.abort()?;
                Ok(Settled::Aborted(changes))
            }
            ExitAction::Keep => Ok(Settled::Kept(self.keep())),
        }
    }

    fn drop_upper(&self) {
        let mut settled = self.settled.lock();
        if *settled {
            return;
        }
        *settled = true;
        if let Err(e) = storage::remove_tree(self.upper()) {
            log::warn!(
                "cannot remove the upper layer {}: {e}; remove it by hand",
                self.upper().display()
            );
        }
        if let View::Overlay(o) = &self.view {
            // A renamed directory of DIR is kept whole.
            if let Err(e) = o.fill() {
                log::warn!(
                    "cannot fill the renamed directories of the kept upper layer {}: {e}",
                    o.upper.display()
                );
            }
            let _ = storage::remove_tree(o.work());
        }
        let _ = storage::remove_tree(&self.storage.held);
        self.storage.release();
    }

    /// The feature for the sandbox's plan.
    pub(crate) fn feature(&self) -> Arc<dyn Enforcement> {
        match &self.view {
            View::Layered(l) => Arc::new(CowFeature {
                layer: Arc::clone(l),
            }),
            View::Overlay(o) => Arc::new(overlay::OverlayFeature(Arc::clone(o))),
        }
    }

    /// `set` held to the layer (nothing in the lower tree written);
    /// `untrapped_reads`: a read-only open outside the layer runs without
    /// the supervisor (for a set that denies only the layer's storage).
    pub(crate) fn hold(
        &self,
        set: Arc<crate::paths::DeniedPaths>,
        untrapped_reads: bool,
    ) -> Arc<crate::paths::DeniedPaths> {
        let View::Layered(l) = &self.view else {
            // The overlay route holds nothing (the kernel gives the view).
            return set;
        };
        let layer: Arc<dyn crate::paths::Layered> = Arc::clone(l) as _;
        let set = set.with_layer(layer);
        let held = Arc::new(if untrapped_reads {
            set.with_untrapped_reads()
        } else {
            set
        });
        l.set_denied(&held);
        held
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Neither committed nor kept: the changes are dropped.
        self.drop_upper();
    }
}

/// Finishes the commit a killed run left in the storage directory `state`:
/// the number of operations applied and the work directory, or `None` if
/// there was none.
pub fn recover(state: &Path) -> Result<Option<(usize, PathBuf)>> {
    commit::recover(state).map_err(|e| Error::io("finish the unfinished commit", e))
}

/// The number of operations of an unfinished commit in `state`, if any.
pub fn pending_commit(state: &Path) -> Result<Option<usize>> {
    commit::pending(state).map_err(|e| Error::io("read the commit journal", e))
}

fn nr_of(name: &str) -> Option<i32> {
    crate::syscalls::number(crate::arch::Arch::native(), name).map(|n| n as i32)
}

/// The feature in the sandbox's plan.
struct CowFeature {
    layer: Arc<Layer>,
}

/// Before an exec is decided (by anyone: argv safety's freeze pins the
/// file the kernel will run before the handlers run), a placeholder the
/// kernel would run is copied up ([`handlers::prepare_exec`]).
struct CowStage {
    layer: Arc<Layer>,
    execve: Option<i32>,
    execveat: Option<i32>,
}

impl Stage for CowStage {
    fn register(
        &self,
        _core: &crate::supervisor::notifier::Notifier,
        notif: &crate::notification::Notification,
    ) {
        let nr = Some(notif.nr);
        if nr == self.execve {
            handlers::prepare_exec(&self.layer, notif.pid as i32, libc::AT_FDCWD, notif.args[0]);
        } else if nr == self.execveat {
            handlers::prepare_exec(
                &self.layer,
                notif.pid as i32,
                notif.args[0] as u32 as i32,
                notif.args[1],
            );
        }
    }
}

impl Enforcement for CowFeature {
    fn rules(&self, filter: &mut crate::filter::FilterBuilder) -> Result<()> {
        if let Some(nr) = crate::syscalls::number(filter.arch(), "ioctl") {
            // The kernel reads the request as a 32-bit `unsigned int`.
            filter.refuse_first(
                nr,
                // Through a read-only fd of DIR's file: no copy-up would
                // make sense of it.
                vec![crate::filter::ArgCheck::new(
                    1,
                    0xffff_ffff,
                    crate::paths::fs_ioctl::ENABLE_VERITY,
                )],
                libc::EPERM,
            )?;
        }
        Ok(())
    }

    fn builtins(&self, install: &mut Install<'_>) -> Result<()> {
        let by_fd = handlers::by_fd_stats();
        for (nr, h) in handlers::builtins(&self.layer) {
            if !by_fd.iter().any(|(n, _)| *n == nr) {
                install.builtin(nr, h)?;
            }
        }
        Ok(())
    }

    fn late_rules(&self, install: &mut Install<'_>) -> Result<()> {
        // The stat calls stop unless they may name an fd's own file
        // (`AT_EMPTY_PATH` with a dirfd: glibc's `fstat`), whose answer
        // the kernel gives right (an fd is DIR's file or an upper file,
        // never a placeholder). The filter cannot see whether the path is
        // empty: with the flag and `AT_FDCWD` (no fd's own file but the
        // working directory's) they stop too, and the handler answers an
        // empty path `CONTINUE`. With the flag, a dirfd and a name, the
        // kernel resolves the name (see the README's limits): trapping
        // those would trap every `fstat` (a quarter to a third more
        // trapped calls for gcc and python). Unless the caller traps every
        // one already (then this handler comes after the caller's) or
        // denies it.
        let by_fd = handlers::by_fd_stats();
        for (nr, h) in handlers::builtins(&self.layer) {
            let Some((_, flags)) = by_fd.iter().find(|(n, _)| *n == nr) else {
                continue;
            };
            if install.user_denied(nr) || install.filter.is_denied(nr).is_some() {
                continue;
            }
            if !install.filter.is_notified(nr) {
                use crate::filter::ArgCheck;
                let at_fdcwd = libc::AT_FDCWD as u32 as u64;
                install.filter.notify_if(
                    nr,
                    vec![ArgCheck::new(*flags, libc::AT_EMPTY_PATH as u64, 0)],
                )?;
                install
                    .filter
                    .notify_if(nr, vec![ArgCheck::new(0, 0xffff_ffff, at_fdcwd)])?;
            }
            install.builtin(nr, h)?;
        }
        // The ioctls that change inode flags and every other file-system
        // request stop.
        let set: Vec<u64> = crate::paths::fs_ioctl::SET_INODE
            .iter()
            .map(|(cmd, _)| *cmd)
            .collect();
        crate::paths::fs_ioctl::install_answer(
            install,
            &set,
            handlers::set_flags_handler(&self.layer),
        )
    }

    fn start(&self, env: &StartEnv<'_>) -> Result<Option<Running>> {
        self.layer.set_members(env.members.clone());
        let layered: Arc<dyn crate::paths::Layered> = Arc::clone(&self.layer) as _;
        Ok(Some(
            Running::new(Arc::new(CowStage {
                layer: Arc::clone(&self.layer),
                execve: nr_of("execve"),
                execveat: nr_of("execveat"),
            }))
            .with_service(Arc::new(crate::paths::LayerHook(layered)))
            .with_service(Arc::new(crate::net::UnixPathHook(Arc::new(
                handlers::UnixView::new(&self.layer),
            )))),
        ))
    }
}
