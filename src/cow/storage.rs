//! Where a layer lives: the upper tree and the state directory (the lock
//! that keeps two runs off one work directory, the commit journal, the
//! mark of a kept layer). By default both sit next to the work directory
//! (`.NAME.unotify-cow` and `.NAME.unotify-cow.state`), on its file system
//! (so the upper tree can link to its files, and `..` from the top of the
//! upper tree is the work directory's parent); with `--storage PATH`, in
//! `PATH/upper` and `PATH/state`. The state directory is denied to the
//! program; the upper tree is its working tree.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const LOCK: &str = "lock";
const KEPT: &str = "kept";

#[derive(Debug)]
pub(crate) struct Storage {
    /// The upper tree.
    pub(crate) upper: PathBuf,
    /// Beside it, the second links that keep the placeholders' inodes
    /// (`upper` + `.held`; not in the state directory, whose denial
    /// would deny every file linked from it).
    pub(crate) held: PathBuf,
    /// The state directory.
    pub(crate) state: PathBuf,
    /// Held (locked) while the layer is in use.
    lock: parking_lot::Mutex<Option<fs::File>>,
    /// The state directory is ours to remove at the end.
    default_place: bool,
}

impl Storage {
    /// Takes the storage for the work directory `lower` (canonical): locks
    /// it, finishes an unfinished commit there (and says so), refuses a
    /// kept layer, removes a stale upper tree.
    pub(crate) fn open(lower: &Path, given: Option<&Path>) -> Result<Storage> {
        let (upper, state, default_place) = match given {
            Some(p) => {
                let p = canonical(&crate::paths::normalize_abs(
                    &std::env::current_dir().unwrap_or_default().join(p),
                ));
                (p.join("upper"), p.join("state"), false)
            }
            None => {
                let parent = lower.parent().unwrap_or(Path::new("/"));
                // The name's exact bytes: two work directories whose
                // names differ only in bytes that are not UTF-8 must not
                // share a storage.
                let name = lower.file_name().unwrap_or_default();
                let upper = parent.join(hidden_name(name, ".unotify-cow"));
                let state = parent.join(hidden_name(name, ".unotify-cow.state"));
                (upper, state, true)
            }
        };
        let cfg = |message: String| Error::InvalidConfig { message };
        if state.starts_with(lower)
            || upper.starts_with(lower)
            || lower.starts_with(&state)
            || lower.starts_with(&upper)
        {
            return Err(cfg(format!(
                "--storage {} lies in the work directory {}; give a place outside it",
                crate::shown::path(&state),
                crate::shown::path(lower)
            )));
        }
        if let Some(parent) = state.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                cfg(format!(
                    "cannot make the storage directory {}: {e}; pass --storage PATH somewhere writable",
                    crate::shown::path(parent)
                ))
            })?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&state) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(cfg(format!(
                "cannot make the storage directory {}: {e}; pass --storage PATH somewhere writable",
                crate::shown::path(&state)
            )))
            }
        }
        check_state(&state).map_err(|e| {
            cfg(format!(
                "the storage directory {}: {e}; another user may have planted it: look at it, remove it, or pass --storage PATH to a directory of your own",
                crate::shown::path(&state)
            ))
        })?;
        let lock = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(state.join(LOCK))
            .map_err(|e| {
                cfg(format!(
                    "cannot open {}: {e}",
                    crate::shown::path(&state.join(LOCK))
                ))
            })?;
        match crate::sys::path::try_lock_exclusive(std::os::fd::AsFd::as_fd(&lock)) {
            Ok(true) => {}
            Ok(false) => {
                return Err(cfg(format!(
                    "another run uses the work directory {} (its storage {} is locked); wait for it to end",
                    crate::shown::path(lower),
                    crate::shown::path(&state)
                )))
            }
            Err(e) => return Err(cfg(format!("cannot lock {}: {e}", crate::shown::path(&state.join(LOCK))))),
        }
        match super::commit::recover_for(&state, Some((lower, &upper))) {
            Ok(Some((n, dir))) => log::warn!(
                "an earlier run's commit into {} was left unfinished (killed?); finished it now ({n} operations)",
                crate::shown::path(&dir)
            ),
            Ok(None) => {}
            Err(e) => {
                return Err(cfg(format!(
                    "an earlier run left an unfinished commit in {} that cannot be finished: {e}; fix the cause and run `unotify cow-recover {}`",
                    crate::shown::path(&state),
                    crate::shown::path(&state)
                )))
            }
        }
        if state.join(KEPT).exists() {
            return Err(cfg(format!(
                "a kept layer of an earlier run is at {}; look at it, then remove it and {} (or pass --storage elsewhere)",
                crate::shown::path(&upper),
                crate::shown::path(&state)
            )));
        }
        if fs::symlink_metadata(&upper).is_ok() {
            log::info!(
                "removing the stale upper layer {} of an earlier run",
                crate::shown::path(&upper)
            );
            remove_tree(&upper).map_err(|e| {
                cfg(format!(
                    "cannot remove the stale upper layer {}: {e}; remove it by hand",
                    crate::shown::path(&upper)
                ))
            })?;
        }
        let held = held_of(&upper);
        if fs::symlink_metadata(&held).is_ok() {
            remove_tree(&held).map_err(|e| {
                cfg(format!(
                    "cannot remove {} of an earlier run: {e}; remove it by hand",
                    crate::shown::path(&held)
                ))
            })?;
        }
        Ok(Storage {
            upper,
            held,
            state,
            lock: parking_lot::Mutex::new(Some(lock)),
            default_place,
        })
    }

    /// The overlay route's work directory: beside the upper tree, on its
    /// file system (`upper` + `.work`).
    pub(crate) fn overlay_work(&self) -> PathBuf {
        let mut name = self.upper.file_name().unwrap_or_default().to_os_string();
        name.push(".work");
        self.upper.with_file_name(name)
    }

    /// Marks the layer kept (a later run over the same directory refuses
    /// to start until it is removed).
    pub(crate) fn mark_kept(&self) {
        let made = fs::File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.state.join(KEPT));
        if let Err(e) = made {
            log::warn!(
                "cannot mark the kept layer in {}: {e}",
                crate::shown::path(&self.state)
            );
        }
        self.lock.lock().take();
    }

    /// Unlocks, and removes the state directory if it is the default one
    /// and holds nothing else.
    pub(crate) fn release(&self) {
        if self.lock.lock().take().is_some() && self.default_place {
            let _ = fs::remove_file(self.state.join(LOCK));
            let _ = fs::remove_dir(&self.state);
        }
    }
}

/// `p` with symlinks resolved: of `p` itself when it exists, else of its
/// longest existing ancestor, the rest appended.
fn canonical(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = p;
    loop {
        if let Ok(c) = fs::canonicalize(cur) {
            return rest.iter().rev().fold(c, |acc: PathBuf, n| acc.join(n));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Refuses a state directory that another user could have written (a
/// journal planted there would be applied by this run): the directory and
/// every entry in it must be this user's (effective uid), not symlinks,
/// and (but for the upper tree, whose top mirrors the work directory's
/// mode) not writable by group or others.
pub(crate) fn check_state(state: &Path) -> io::Result<()> {
    let euid = crate::sys::process::euid();
    let refuse = |what: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, what));
    let m = fs::symlink_metadata(state)?;
    if !m.is_dir() {
        return refuse("is not a directory (a symlink?)".into());
    }
    if m.uid() != euid {
        return refuse(format!(
            "is owned by uid {}, not by this user ({euid})",
            m.uid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return refuse(format!(
            "is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        ));
    }
    for entry in fs::read_dir(state)? {
        let entry = entry?;
        let m = entry.metadata()?;
        let name = entry.file_name();
        let name = crate::shown::bytes(name.as_bytes());
        if m.uid() != euid {
            return refuse(format!(
                "holds {name}, owned by uid {}, not by this user ({euid})",
                m.uid()
            ));
        }
        if m.file_type().is_symlink() {
            return refuse(format!("holds {name}, a symlink"));
        }
        if !m.is_dir() && m.mode() & 0o022 != 0 {
            return refuse(format!("holds {name}, writable by group or others"));
        }
    }
    Ok(())
}

/// Where the second links to the placeholders of `upper` are.
fn held_of(upper: &Path) -> PathBuf {
    let mut name = upper.file_name().unwrap_or_default().to_owned();
    name.push(".held");
    upper.with_file_name(name)
}

/// Removes a tree (making its directories writable first: the upper tree
/// may have read-only ones).
pub(crate) fn remove_tree(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            fn open_up(p: &Path) {
                if let Ok(m) = fs::symlink_metadata(p) {
                    if m.is_dir() {
                        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
                        if let Ok(rd) = fs::read_dir(p) {
                            for e in rd.flatten() {
                                open_up(&e.path());
                            }
                        }
                    }
                }
            }
            open_up(p);
            fs::remove_dir_all(p)
        }
    }
}

/// `.NAME` followed by `suffix`, by `name`'s exact bytes: a name that is
/// not UTF-8 makes a name of its own (no two names make the same one).
pub(super) fn hidden_name(name: &std::ffi::OsStr, suffix: &str) -> std::ffi::OsString {
    let mut out = std::ffi::OsString::from(".");
    out.push(name);
    out.push(suffix);
    out
}
