//! Redirected directories of the overlay route's upper tree, filled in.
//!
//! The overlay is mounted with `redirect_dir=on` so that renaming a
//! directory of DIR works as on bare Linux (without it, overlayfs answers
//! `EXDEV`). The kernel then copies up the directory alone, at its new
//! path, with the extended attribute `trusted.overlay.redirect` naming
//! the lower directory it shows (`/a/b`: from DIR's root; a single name:
//! beside the lower directory its parent shows), and whites out the old
//! path. Its files stay in DIR, at the old path.
//!
//! [`fill`] turns such a tree into one the change set's reader
//! (`overlay::diff`) and the commit take as it is: every directory whose
//! merged contents come from another lower directory than DIR's at its
//! own path gets copies of that directory's entries it does not hold
//! itself (a name it holds, a whiteout included, hides the lower one, as
//! in the view), beneath it too, nested redirects included; it is then
//! marked opaque and its redirect removed. The program cannot plant a
//! redirect or an opaque mark: the upper tree is hidden from it, and
//! `trusted.overlay.*` names it sets through the overlay are stored
//! escaped (`trusted.overlay.overlay.*`); `user.overlay.*` is not read.
//!
//! A copy is made in a staging path beside the upper tree and renamed into
//! place, and the marks are changed last, so a fill cut short is finished
//! by the next.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::sys::path::{fchownat, getxattr_path, removexattr, setxattr};

/// The mark of a directory that hides the lower one at its path.
pub(super) const OPAQUE: &str = "trusted.overlay.opaque";
const REDIRECT: &str = "trusted.overlay.redirect";

fn c(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn xattr(p: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = CString::new(name).expect("no NUL");
    match getxattr_path(&c(p)?, &name, 4096, false) {
        Ok((_, v)) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the upper directory `p` is marked opaque.
pub(super) fn is_opaque(p: &Path) -> bool {
    xattr(p, OPAQUE).is_ok_and(|v| v.is_some_and(|v| v.first() == Some(&b'y')))
}

/// The lower directory (relative to DIR) a redirect `r` of a directory
/// whose parent shows the lower directory `parent` names; an error for a
/// redirect that is not plain components.
fn resolve(r: &[u8], parent: Option<&Path>) -> io::Result<Option<PathBuf>> {
    let bad = || {
        io::Error::other(format!(
            "the overlay's upper tree holds a redirect `{}` that is not a path beneath the work directory; keep the run (--on-exit keep) and inspect it",
            crate::shown::bytes(r)
        ))
    };
    let (base, rest) = match r.strip_prefix(b"/") {
        Some(rest) => (Some(PathBuf::new()), rest),
        None if r.contains(&b'/') => return Err(bad()),
        None => (parent.map(Path::to_path_buf), r),
    };
    let rest = Path::new(OsStr::from_bytes(rest));
    if rest.as_os_str().is_empty()
        || rest
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(bad());
    }
    Ok(base.map(|b| b.join(rest)))
}

/// Fills every redirected directory of `upper` (an overlay's upper tree
/// over `lower`, no longer written by the kernel's redirects) with what
/// it shows of the lower tree.
/// `stage`: a free path on the upper tree's file system, where copies
/// are made before they are renamed into place.
pub(super) fn fill(lower: &Path, upper: &Path, stage: &Path) -> io::Result<()> {
    dir(lower, upper, stage, Path::new(""), Some(Path::new("")))
}

/// The lower directory, if any, at `rel` of `lower`.
fn lower_dir(lower: &Path, rel: &Path) -> io::Result<Option<PathBuf>> {
    match fs::symlink_metadata(lower.join(rel)) {
        Ok(m) if m.is_dir() => Ok(Some(rel.to_path_buf())),
        Ok(_) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The upper directory `rel`, which shows the lower directory `origin`
/// (`None`: none) beneath its own entries.
fn dir(
    lower: &Path,
    upper: &Path,
    stage: &Path,
    rel: &Path,
    origin: Option<&Path>,
) -> io::Result<()> {
    let at = upper.join(rel);
    let names = super::changes::names(&at)?;
    for name in &names {
        let r = rel.join(name);
        let p = upper.join(&r);
        if !fs::symlink_metadata(&p)?.is_dir() {
            continue;
        }
        let sub = match xattr(&p, REDIRECT)? {
            Some(v) => resolve(&v, origin)?,
            None if is_opaque(&p) => None,
            None => origin.map(|o| o.join(name)),
        };
        let sub = match sub {
            Some(s) => lower_dir(lower, &s)?,
            None => None,
        };
        dir(lower, upper, stage, &r, sub.as_deref())?;
    }
    // What the change set's reader takes it to show: DIR's directory at
    // the same path, unless marked opaque.
    let assumed = if rel.as_os_str().is_empty() || !is_opaque(&at) {
        lower_dir(lower, rel)?
    } else {
        None
    };
    if origin == assumed.as_deref() {
        return Ok(());
    }
    if let Some(o) = origin {
        for name in super::changes::names(&lower.join(o))? {
            if !names.contains(&name) {
                copy(&lower.join(o).join(&name), stage, &at, &name)?;
            }
        }
    }
    let at_c = c(&at)?;
    setxattr(
        &at_c,
        &CString::new(OPAQUE).expect("no NUL"),
        b"y",
        0,
        false,
    )?;
    match removexattr(&at_c, &CString::new(REDIRECT).expect("no NUL"), false) {
        Err(e) if e.raw_os_error() != Some(libc::ENODATA) => Err(e),
        _ => Ok(()),
    }
}

/// Copies the lower entry `from` (and what it holds) to `stage` with
/// its mode, owner, times and extended attributes (a directory copied is
/// whole: marked opaque), then renames it to `name` in the upper
/// directory `to`.
fn copy(from: &Path, stage: &Path, to: &Path, name: &OsStr) -> io::Result<()> {
    if fs::symlink_metadata(stage).is_ok() {
        super::storage::remove_tree(stage)?;
    }
    copy_entry(from, stage)?;
    fs::rename(stage, to.join(name))
}

fn copy_entry(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir(to)?;
        for n in super::changes::names(from)? {
            copy_entry(&from.join(&n), &to.join(&n))?;
        }
        let (f, t) = (fs::File::open(from)?, fs::File::open(to)?);
        super::layer::copy_xattrs(f.as_fd(), t.as_fd());
        let to_c = c(to)?;
        // A redirect DIR itself holds is not the kernel's: dropped.
        let _ = removexattr(&to_c, &CString::new(REDIRECT).expect("no NUL"), false);
        setxattr(
            &to_c,
            &CString::new(OPAQUE).expect("no NUL"),
            b"y",
            0,
            false,
        )?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_file() {
        let src = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(from)?;
        let dir = fs::File::open(to.parent().unwrap_or(Path::new("/")))?;
        let name = Path::new(to.file_name().unwrap_or_default());
        super::commit::copy_to(&src.into(), dir.as_fd(), name)?;
    } else {
        return super::layer::make_node(from, to, &meta);
    }
    let _ = fchownat(
        None,
        &c(to)?,
        meta.uid(),
        meta.gid(),
        libc::AT_SYMLINK_NOFOLLOW,
    );
    if !ft.is_symlink() {
        // chown clears set-id bits; a directory's times after its entries.
        super::layer::copy_dir_meta(&meta, to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::path::Path;

    #[test]
    fn redirects_resolve_beneath_the_work_directory_only() {
        let p = Some(Path::new("a/b"));
        assert_eq!(resolve(b"/x/y", p).unwrap(), Some("x/y".into()));
        assert_eq!(resolve(b"z", p).unwrap(), Some("a/b/z".into()));
        assert_eq!(resolve(b"z", None).unwrap(), None);
        for bad in [&b"/../x"[..], b"..", b"/", b"", b"a/b"] {
            assert!(resolve(bad, p).is_err(), "{bad:?}");
        }
    }
}
