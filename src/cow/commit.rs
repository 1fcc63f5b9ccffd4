//! Applying a change set to the work directory, crash-safe.
//!
//! The change set is first written to a journal in the storage directory
//! (a temporary file renamed into place: it exists whole or not at all).
//! Then each operation is applied so that it can be applied again: a file
//! is put by linking (or copying) the upper file to a temporary name in
//! its directory and renaming that over the target, so that the target is
//! the old file or the new one, never a torn one; deletions and
//! directories are idempotent. The journal is removed last. A commit that
//! was killed is finished by applying the journal again ([`recover`]);
//! every path in the work directory is reached without following
//! symlinks, so an entry the program made cannot lead the commit outside.

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::changes::{Change, ChangeKind, EntryType};
use super::layer::RESOLVE_NO_SYMLINKS;
use crate::sys::fs::{openat2, OpenHow, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS};
use crate::sys::path::{fstatat, linkat, mkdirat, readlinkat, renameat2, symlinkat, unlinkat};

/// The journal's name in the storage directory.
pub(crate) const JOURNAL: &str = "journal";
/// The journal being written (renamed to [`JOURNAL`] once complete).
pub(crate) const JOURNAL_TMP: &str = "journal.tmp";
const MAGIC: &str = "unotify-cow-journal 1";

/// One operation of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Remove the entry (a directory: empty by then).
    Remove(PathBuf),
    /// Make the directory, with this mode.
    Mkdir(PathBuf, u32),
    /// Put the upper entry (file or symlink) at the path.
    Put(PathBuf),
    /// Give the directory this mode.
    Chmod(PathBuf, u32),
}

fn hex(p: &Path) -> String {
    p.as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(s: &str) -> Option<PathBuf> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes?)))
}

/// The operations for `changes`, in the order they apply: removals
/// deepest first, new directories parents first, files, directory modes.
fn plan(upper: &Path, changes: &[Change]) -> io::Result<Vec<Op>> {
    let mut removes = Vec::new();
    let mut mkdirs = Vec::new();
    let mut puts = Vec::new();
    let mut chmods = Vec::new();
    for c in changes {
        let mode = || -> io::Result<u32> {
            Ok(fs::symlink_metadata(upper.join(&c.path))?.mode() & 0o7777)
        };
        match (c.kind, c.entry) {
            (ChangeKind::Deleted, _) => removes.push(c.path.clone()),
            (ChangeKind::Added, EntryType::Dir) => mkdirs.push(Op::Mkdir(c.path.clone(), mode()?)),
            (ChangeKind::Modified, EntryType::Dir) if c.was.is_some() => {
                removes.push(c.path.clone());
                mkdirs.push(Op::Mkdir(c.path.clone(), mode()?));
            }
            (ChangeKind::Modified, EntryType::Dir) => {
                chmods.push(Op::Chmod(c.path.clone(), mode()?))
            }
            (_, _) => {
                if c.was == Some(EntryType::Dir) {
                    removes.push(c.path.clone());
                }
                puts.push(Op::Put(c.path.clone()));
            }
        }
    }
    removes.sort_by(|a, b| {
        b.components()
            .count()
            .cmp(&a.components().count())
            .then(b.cmp(a))
    });
    mkdirs.sort_by_key(|op| match op {
        Op::Mkdir(p, _) => p.components().count(),
        _ => 0,
    });
    chmods.reverse();
    let mut ops: Vec<Op> = removes.into_iter().map(Op::Remove).collect();
    ops.extend(mkdirs);
    ops.extend(puts);
    ops.extend(chmods);
    Ok(ops)
}

fn encode(lower: &Path, upper: &Path, ops: &[Op]) -> String {
    let mut s = format!("{MAGIC}\nlower {}\nupper {}\n", hex(lower), hex(upper));
    for op in ops {
        let line = match op {
            Op::Remove(p) => format!("R {}", hex(p)),
            Op::Mkdir(p, m) => format!("K {} {m:o}", hex(p)),
            Op::Put(p) => format!("P {}", hex(p)),
            Op::Chmod(p, m) => format!("C {} {m:o}", hex(p)),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("end\n");
    s
}

fn decode(text: &str) -> Option<(PathBuf, PathBuf, Vec<Op>)> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let lower = unhex(lines.next()?.strip_prefix("lower ")?)?;
    let upper = unhex(lines.next()?.strip_prefix("upper ")?)?;
    let mut ops = Vec::new();
    for line in lines {
        if line == "end" {
            return Some((lower, upper, ops));
        }
        let mut f = line.split(' ');
        let (tag, p) = (f.next()?, unhex(f.next()?)?);
        let mode = || {
            f.clone()
                .next()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
        };
        ops.push(match tag {
            "R" => Op::Remove(p),
            "K" => Op::Mkdir(p, mode()?),
            "P" => Op::Put(p),
            "C" => Op::Chmod(p, mode()?),
            _ => return None,
        });
    }
    None
}

/// Commits `changes` (from [`super::changes::diff`]) of `upper` into
/// `lower`, journaled in `state`; `survivors`: a process of the sandbox
/// may still run (every regular file is then copied, see [`apply`]).
pub(crate) fn commit(
    lower: &Path,
    upper: &Path,
    state: &Path,
    changes: &[Change],
    survivors: bool,
) -> io::Result<()> {
    let ops = plan(upper, changes)?;
    if ops.is_empty() {
        // Nothing to apply, nothing a crash could leave half done: no
        // journal (its writes and syncs cost more than most runs that
        // change nothing).
        return Ok(());
    }
    // The look for holders (CPU: every process's fds and mappings) runs
    // while the journal's writes wait for the disk.
    let holders = Holders::look(upper, &ops, survivors);
    let tmp = state.join(JOURNAL_TMP);
    {
        // Never through a symlink, never into a file already there.
        let _ = fs::remove_file(&tmp);
        let mut f = fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(encode(lower, upper, &ops).as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, state.join(JOURNAL))?;
    sync_dir(state);
    apply(lower, upper, &ops, holders.found())?;
    fs::remove_file(state.join(JOURNAL))?;
    sync_dir(state);
    Ok(())
}

/// Finishes the commit a killed run left in `state`, if any: the number
/// of operations applied again, and the work directory.
pub(crate) fn recover(state: &Path) -> io::Result<Option<(usize, PathBuf)>> {
    recover_for(state, None)
}

/// The journal of `state`, read without following a symlink.
fn read_journal(state: &Path) -> io::Result<String> {
    let mut f = fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(state.join(JOURNAL))?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    Ok(text)
}

/// The upper tree a journal in `state` may name: `PATH/upper` next to
/// `PATH/state` (`--storage PATH`) or, for the default place,
/// `.NAME.unotify-cow` next to `.NAME.unotify-cow.state`, whose work
/// directory is `NAME`.
fn own_upper(state: &Path, upper: &Path, lower: &Path) -> bool {
    if state.file_name() == Some(std::ffi::OsStr::new("state"))
        && state.parent().is_some_and(|p| upper == p.join("upper"))
    {
        return true;
    }
    // By the names' bytes: work directories whose names differ only in
    // bytes that are not UTF-8 have storages of their own.
    let Some(stem) = state
        .file_name()
        .and_then(|n| n.as_bytes().strip_suffix(b".unotify-cow.state"))
    else {
        return false;
    };
    let parent = state.parent().unwrap_or(Path::new("/"));
    let mut own = stem.to_vec();
    own.extend_from_slice(b".unotify-cow");
    upper == parent.join(std::ffi::OsStr::from_bytes(&own))
        && stem
            .strip_prefix(b".")
            .is_some_and(|n| lower == parent.join(std::ffi::OsStr::from_bytes(n)))
}

/// [`recover`], refusing a journal of another work directory than
/// `run.0` or another upper tree than `run.1`; either way, refusing a
/// state directory another user could have written.
pub(crate) fn recover_for(
    state: &Path,
    run: Option<(&Path, &Path)>,
) -> io::Result<Option<(usize, PathBuf)>> {
    super::storage::check_state(state).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the storage directory {}: {e}", state.display()),
        )
    })?;
    let _ = fs::remove_file(state.join(JOURNAL_TMP));
    let text = match read_journal(state) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (lower, upper, ops) = decode(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a journal of unotify's; remove it by hand",
                state.join(JOURNAL).display()
            ),
        )
    })?;
    let ours = match run {
        Some((l, u)) => l == lower && u == upper,
        None => own_upper(state, &upper, &lower),
    };
    if !ours {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the journal names the work directory {} and the upper tree {}, not this storage's; it was not applied: remove it by hand",
                lower.display(),
                upper.display()
            ),
        ));
    }
    // Whoever ran the sandbox may still run: nothing is known of them
    // (every regular file is copied).
    apply(&lower, &upper, &ops, None)?;
    fs::remove_file(state.join(JOURNAL))?;
    sync_dir(state);
    Ok(Some((ops.len(), lower)))
}

fn sync_dir(p: &Path) {
    if let Ok(d) = fs::File::open(p) {
        let _ = d.sync_all();
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn beneath(root: BorrowedFd<'_>, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        Some(root),
        &c(rel),
        &OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        },
    )
}

/// The pinned parent directory of `rel` beneath `root`, and its name.
fn parent_of(root: BorrowedFd<'_>, rel: &Path) -> io::Result<(OwnedFd, PathBuf)> {
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let dir = beneath(
        root,
        rel.parent().unwrap_or(Path::new("")),
        libc::O_PATH | libc::O_DIRECTORY,
    )?;
    Ok((dir, PathBuf::from(name)))
}

/// Who may still write the upper tree's regular files, for [`apply`]: a
/// regular file is linked into the lower tree only when nothing can write
/// it afterwards; else it is copied (a write through a holder's fd or
/// mapping would land in the work directory after the commit). With
/// `survivors` (a process of the sandbox may still run) every regular
/// file is copied: a holder may be invisible, e.g. an fd in flight in a
/// unix socket, sent and closed, received after the commit. Without, a
/// scan of the user's processes ([`super::quota::held_files`]) finds the
/// files still held by one outside the sandbox; it is started before the
/// journal is written and synced, on a thread of its own (the sandbox has
/// ended by then: what it finds is what it would find after the syncs,
/// but for what a process outside does meanwhile, which no scan can
/// foresee).
enum Holders {
    /// Every regular file is copied.
    Unknown,
    /// No file is put: nothing to look for.
    NoneNeeded,
    /// The scan, running.
    Looking(std::thread::JoinHandle<Option<std::collections::HashSet<u64>>>),
    /// The scan's result.
    Found(std::collections::HashSet<u64>),
}

impl Holders {
    /// Starts the scan for `ops` of `upper`, if it is needed.
    fn look(upper: &Path, ops: &[Op], survivors: bool) -> Holders {
        if survivors {
            return Holders::Unknown;
        }
        if !ops.iter().any(|op| matches!(op, Op::Put(_))) {
            return Holders::NoneNeeded;
        }
        let Ok(dev) = fs::metadata(upper).map(|m| m.dev()) else {
            return Holders::Unknown;
        };
        match std::thread::Builder::new()
            .name("unotify-holders".into())
            .spawn(move || super::quota::held_files(dev, true))
        {
            Ok(scan) => Holders::Looking(scan),
            // No thread: the scan runs here.
            Err(_) => match super::quota::held_files(dev, true) {
                Some(held) => Holders::Found(held),
                None => Holders::Unknown,
            },
        }
    }

    /// The inodes held (`None`: any file may be held, every regular file
    /// is copied).
    fn found(self) -> Option<std::collections::HashSet<u64>> {
        match self {
            Holders::Unknown => None,
            Holders::NoneNeeded => Some(Default::default()),
            Holders::Looking(scan) => scan.join().ok().flatten(),
            Holders::Found(held) => Some(held),
        }
    }
}

/// Applies `ops`; `held`: the inodes of the regular files some process
/// may still write ([`Holders`]; `None`: any, every regular file is
/// copied).
fn apply(
    lower: &Path,
    upper: &Path,
    ops: &[Op],
    held: Option<std::collections::HashSet<u64>>,
) -> io::Result<()> {
    let open_root = |p: &Path| {
        openat2(
            None,
            &c(p),
            &OpenHow {
                flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
                mode: 0,
                resolve: 0,
            },
        )
    };
    let low = open_root(lower)?;
    let up = open_root(upper)?;
    for op in ops {
        apply_one(low.as_fd(), up.as_fd(), op, held.as_ref()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("committing {op:?} into {}: {e}", lower.display()),
            )
        })?;
    }
    Ok(())
}

fn apply_one(
    low: BorrowedFd<'_>,
    up: BorrowedFd<'_>,
    op: &Op,
    held: Option<&std::collections::HashSet<u64>>,
) -> io::Result<()> {
    let missing = |e: &io::Error| e.raw_os_error() == Some(libc::ENOENT);
    match op {
        Op::Remove(rel) => {
            let (dir, name) = match parent_of(low, rel) {
                Ok(x) => x,
                Err(e) if missing(&e) => return Ok(()),
                Err(e) => return Err(e),
            };
            let st = match fstatat(Some(dir.as_fd()), &c(&name), libc::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) if missing(&e) => return Ok(()),
                Err(e) => return Err(e),
            };
            let flags = if st.is_dir() { libc::AT_REMOVEDIR } else { 0 };
            match unlinkat(Some(dir.as_fd()), &c(&name), flags) {
                Err(e) if missing(&e) => Ok(()),
                r => r,
            }
        }
        Op::Mkdir(rel, mode) => {
            let (dir, name) = parent_of(low, rel)?;
            match mkdirat(Some(dir.as_fd()), &c(&name), 0o700) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                r => r?,
            }
            let made = beneath(low, rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
            fs::File::from(made).set_permissions(fs::Permissions::from_mode(*mode))
        }
        Op::Chmod(rel, mode) => {
            let d = beneath(low, rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
            fs::File::from(d).set_permissions(fs::Permissions::from_mode(*mode))
        }
        Op::Put(rel) => put(low, up, rel, held),
    }
}

/// Puts the upper entry `rel` (a file or symlink) at `rel` in the lower
/// tree: through a temporary name in the same directory, renamed over.
fn put(
    low: BorrowedFd<'_>,
    up: BorrowedFd<'_>,
    rel: &Path,
    held: Option<&std::collections::HashSet<u64>>,
) -> io::Result<()> {
    let (ldir, name) = parent_of(low, rel)?;
    let (udir, _) = parent_of(up, rel)?;
    let ust = fstatat(Some(udir.as_fd()), &c(&name), libc::AT_SYMLINK_NOFOLLOW)?;
    if let Ok(lst) = fstatat(Some(ldir.as_fd()), &c(&name), libc::AT_SYMLINK_NOFOLLOW) {
        if lst.dev == ust.dev && lst.ino == ust.ino {
            return Ok(()); // put already
        }
    }
    let tmp = PathBuf::from(super::storage::hidden_name(
        name.as_os_str(),
        ".unotify-commit",
    ));
    match unlinkat(Some(ldir.as_fd()), &c(&tmp), 0) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        _ => {}
    }
    if ust.is_symlink() {
        let target = readlinkat(Some(udir.as_fd()), &c(&name))?;
        symlinkat(
            &CString::new(target).unwrap_or_default(),
            Some(ldir.as_fd()),
            &c(&tmp),
        )?;
    } else {
        let src = openat2(
            Some(udir.as_fd()),
            &c(&name),
            &OpenHow {
                flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
                mode: 0,
                resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
            },
        )?;
        let proc_path = CString::new(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&src)
        ))
        .unwrap_or_default();
        let st = fstatat(Some(src.as_fd()), c"", libc::AT_EMPTY_PATH)?;
        // Only a regular file's bytes can be written through a held fd or
        // mapping; a FIFO or a socket is linked (a copy would open it: a
        // FIFO blocks, a socket fails `ENXIO`).
        if st.is_file() && held.is_none_or(|h| h.contains(&st.ino)) {
            copy_to(&src, ldir.as_fd(), &tmp)?
        } else {
            match linkat(
                None,
                &proc_path,
                Some(ldir.as_fd()),
                &c(&tmp),
                libc::AT_SYMLINK_FOLLOW,
            ) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EPERM)) => {
                    copy_to(&src, ldir.as_fd(), &tmp)?
                }
                Err(e) => return Err(e),
            }
        }
    }
    renameat2(
        Some(ldir.as_fd()),
        &c(&tmp),
        Some(ldir.as_fd()),
        &c(&name),
        0,
    )
}

/// Copies the file `src` (an `O_PATH` fd) to the new name `tmp` in `dir`,
/// with its mode and times, synced.
pub(super) fn copy_to(src: &OwnedFd, dir: BorrowedFd<'_>, tmp: &Path) -> io::Result<()> {
    let from = fs::File::from(crate::paths::reopen_fd(src.as_fd(), libc::O_RDONLY)?);
    let meta = from.metadata()?;
    let out = openat2(
        Some(dir),
        &c(tmp),
        &OpenHow {
            flags: (libc::O_WRONLY
                | libc::O_CREAT
                | libc::O_EXCL
                | libc::O_NOFOLLOW
                | libc::O_CLOEXEC) as u64,
            mode: 0o600,
            resolve: RESOLVE_BENEATH,
        },
    )?;
    let mut out = fs::File::from(out);
    io::copy(&mut (&from), &mut out)?;
    super::layer::copy_xattrs(from.as_fd(), out.as_fd());
    out.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    out.set_times(
        fs::FileTimes::new()
            .set_accessed(meta.accessed()?)
            .set_modified(meta.modified()?),
    )?;
    out.sync_all()
}

/// Reads the lines of a journal (for `unotify cow-recover`'s report).
pub(crate) fn pending(state: &Path) -> io::Result<Option<usize>> {
    match fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(state.join(JOURNAL))
    {
        Ok(f) => Ok(Some(
            io::BufReader::new(f).lines().count().saturating_sub(4),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_may_name_only_its_storage_s_upper_tree() {
        let p = Path::new;
        assert!(own_upper(p("/s/state"), p("/s/upper"), p("/any")));
        assert!(!own_upper(p("/s/state"), p("/evil"), p("/any")));
        assert!(own_upper(
            p("/w/.d.unotify-cow.state"),
            p("/w/.d.unotify-cow"),
            p("/w/d")
        ));
        assert!(!own_upper(
            p("/w/.d.unotify-cow.state"),
            p("/w/.d.unotify-cow"),
            p("/w/e")
        ));
        assert!(!own_upper(
            p("/w/.d.unotify-cow.state"),
            p("/evil"),
            p("/w/d")
        ));
    }

    #[test]
    fn an_empty_change_set_writes_no_journal() {
        // A storage directory that cannot hold a journal: an empty commit
        // never tries.
        let none = Path::new("/nonexistent/unotify-cow-state");
        commit(Path::new("/"), Path::new("/"), none, &[], true).expect("nothing to write");
        let dir = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        fs::create_dir(&lower).expect("lower");
        fs::create_dir(&upper).expect("upper");
        fs::write(upper.join("new"), "x").expect("write");
        let added = [Change {
            path: "new".into(),
            kind: ChangeKind::Added,
            entry: EntryType::File,
            was: None,
        }];
        assert!(commit(&lower, &upper, none, &added, true).is_err());
    }

    #[test]
    fn journal_round_trips() {
        let ops = vec![
            Op::Remove("a/b c".into()),
            Op::Mkdir("d\ne".into(), 0o755),
            Op::Put("f".into()),
            Op::Chmod("g".into(), 0o700),
        ];
        let text = encode(Path::new("/l"), Path::new("/u"), &ops);
        assert_eq!(
            decode(&text),
            Some((PathBuf::from("/l"), PathBuf::from("/u"), ops))
        );
        // A journal cut short is not one.
        assert_eq!(decode(&text[..text.len() - 4]), None);
    }
}
