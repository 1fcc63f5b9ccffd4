//! The change set of a run: the upper tree compared with the lower one,
//! entry by entry, without following symlinks. A placeholder at its
//! lower file's path is unchanged without being read (placeholders
//! elsewhere were copied up first); another file is changed if its type,
//! mode, modification time or contents differ.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a run did to one path of the work directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ChangeKind {
    /// Created (`A`).
    Added,
    /// Changed (`M`): contents, mode, time, or a different type of file.
    Modified,
    /// Removed (`D`).
    Deleted,
}

impl ChangeKind {
    /// The letter `git status --short` shows for it.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// The type of file a change is about (for a deletion: what was there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

impl EntryType {
    pub(super) fn of(ft: fs::FileType) -> EntryType {
        if ft.is_dir() {
            EntryType::Dir
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else if ft.is_file() {
            EntryType::File
        } else {
            EntryType::Other
        }
    }
}

/// One changed path, relative to the work directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Change {
    /// The path, relative to the work directory.
    pub path: PathBuf,
    /// What happened to it.
    pub kind: ChangeKind,
    /// What it is now (for a deletion: what it was).
    pub entry: EntryType,
    /// For [`ChangeKind::Modified`]: the type it had before, when the
    /// type changed (a directory replaced by a file...).
    pub was: Option<EntryType>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slash = if self.entry == EntryType::Dir {
            "/"
        } else {
            ""
        };
        write!(f, "{} {}{slash}", self.kind.letter(), quoted(&self.path))
    }
}

/// `p` as git shows a path (`core.quotePath`): as is if it is printable
/// ASCII without `"` or `\`, else in double quotes with C escapes (octal
/// for other bytes), so a name cannot forge or hide a line.
fn quoted(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let b = p.as_os_str().as_bytes();
    if b.iter()
        .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
    {
        return b.iter().map(|&c| char::from(c)).collect();
    }
    let mut out = String::from("\"");
    for &c in b {
        match c {
            b'\x07' => out.push_str("\\a"),
            b'\x08' => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\x0b' => out.push_str("\\v"),
            b'\x0c' => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\{c:03o}")),
        }
    }
    out.push('"');
    out
}

/// The changes that turn `lower` into `upper`, sorted by path (a
/// directory before what it holds).
pub(crate) fn diff(
    lower: &Path,
    upper: &Path,
    unchanged: Unchanged<'_>,
) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(lower, upper, Path::new(""), unchanged, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub(super) fn names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.file_name())).collect(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Whether the upper entry at this path with this `(dev, ino)` is the
/// placeholder of the lower file at the same path.
pub(crate) type Unchanged<'a> = &'a dyn Fn(&Path, u64, u64) -> bool;

fn walk(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    unchanged: Unchanged<'_>,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    let up_names = names(&upper.join(rel))?;
    let low_names = names(&lower.join(rel))?;
    for name in &up_names {
        let r = rel.join(name);
        let um = fs::symlink_metadata(upper.join(&r))?;
        match fs::symlink_metadata(lower.join(&r)) {
            Ok(lm) => {
                let beneath =
                    |r: &Path, out: &mut Vec<Change>| all(upper, r, ChangeKind::Added, out, false);
                let pair = Pair {
                    lower,
                    upper,
                    r: &r,
                    um: &um,
                    lm: &lm,
                };
                if pair.compare(unchanged, &beneath, out)? {
                    walk(lower, upper, &r, unchanged, out)?;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                all(upper, &r, ChangeKind::Added, out, true)?;
            }
            Err(e) => return Err(e),
        }
    }
    for name in &low_names {
        if !up_names.contains(name) {
            all(lower, &rel.join(name), ChangeKind::Deleted, out, true)?;
        }
    }
    Ok(())
}

/// One path present in both trees, with its upper and lower metadata.
pub(super) struct Pair<'a> {
    pub(super) lower: &'a Path,
    pub(super) upper: &'a Path,
    pub(super) r: &'a Path,
    pub(super) um: &'a fs::Metadata,
    pub(super) lm: &'a fs::Metadata,
}

impl Pair<'_> {
    /// Pushes what changed at the path (a change of type: the lower
    /// subtree deleted, and what `added_beneath` lists of the upper one),
    /// and says whether both are directories (to be walked).
    pub(super) fn compare(
        &self,
        unchanged: Unchanged<'_>,
        added_beneath: &dyn Fn(&Path, &mut Vec<Change>) -> io::Result<()>,
        out: &mut Vec<Change>,
    ) -> io::Result<bool> {
        let (lower, upper, r, um, lm) = (self.lower, self.upper, self.r, self.um, self.lm);
        let ut = EntryType::of(um.file_type());
        let lt = EntryType::of(lm.file_type());
        if lt != ut {
            if lt == EntryType::Dir {
                all(lower, r, ChangeKind::Deleted, out, false)?;
            }
            out.push(Change {
                path: r.to_path_buf(),
                kind: ChangeKind::Modified,
                entry: ut,
                was: Some(lt),
            });
            if ut == EntryType::Dir {
                added_beneath(r, out)?;
            }
            return Ok(false);
        }
        let changed = match ut {
            EntryType::Dir => (um.mode() & 0o7777) != (lm.mode() & 0o7777),
            EntryType::Symlink => fs::read_link(upper.join(r))? != fs::read_link(lower.join(r))?,
            EntryType::File if unchanged(r, um.dev(), um.ino()) => false,
            _ => file_changed(&upper.join(r), um, &lower.join(r), lm)?,
        };
        if changed {
            out.push(Change {
                path: r.to_path_buf(),
                kind: ChangeKind::Modified,
                entry: ut,
                was: None,
            });
        }
        Ok(ut == EntryType::Dir)
    }
}

/// `r` in `root` and everything beneath it, as `kind` (`with_self`: `r`
/// itself too).
pub(super) fn all(
    root: &Path,
    r: &Path,
    kind: ChangeKind,
    out: &mut Vec<Change>,
    with_self: bool,
) -> io::Result<()> {
    let m = fs::symlink_metadata(root.join(r))?;
    let t = EntryType::of(m.file_type());
    if with_self {
        out.push(Change {
            path: r.to_path_buf(),
            kind,
            entry: t,
            was: None,
        });
    }
    if t == EntryType::Dir {
        for name in names(&root.join(r))? {
            all(root, &r.join(name), kind, out, true)?;
        }
    }
    Ok(())
}

fn file_changed(up: &Path, um: &fs::Metadata, low: &Path, lm: &fs::Metadata) -> io::Result<bool> {
    if um.dev() == lm.dev() && um.ino() == lm.ino() {
        return Ok(false);
    }
    if um.mode() != lm.mode()
        || um.len() != lm.len()
        || um.mtime() != lm.mtime()
        || um.mtime_nsec() != lm.mtime_nsec()
        || um.rdev() != lm.rdev()
    {
        return Ok(true);
    }
    if !um.file_type().is_file() {
        return Ok(false);
    }
    same_bytes(up, low).map(|same| !same)
}

fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
