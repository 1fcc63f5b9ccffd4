//! The overlay route of a work directory: where the host lets the
//! supervisor mount (`CAP_SYS_ADMIN`), the program gets a mount namespace
//! of its own with `overlayfs` over DIR (lower: DIR, upper and work
//! directories in the storage) and the kernel gives it its view: no path
//! call is trapped for the layer. The storage is covered by an empty
//! read-only `tmpfs` in that namespace, and the calls that would change
//! it (the mount family, new mount namespaces, `setns`) are refused in
//! the filter (`paths::view`).
//!
//! Owns the upper tree's reading: once the program ended, the overlay's
//! upper directory is turned into the same change set the seccomp route
//! gives ([`diff`]), which the commit, dry run, abort and keep use as
//! they are. Called by [`super::WorkDir`]; mounted by the spawned child
//! (`sys::overlay`).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::changes::{self, Change, ChangeKind, EntryType};
use crate::error::Result;
use crate::supervisor::enforcement::{Enforcement, Install, Running, StartEnv};
use crate::sys::overlay::{escape_option, OverlayMount};

/// The overlay of one work directory.
#[derive(Debug)]
pub(crate) struct Overlay {
    /// The work directory, canonical (the overlay's target and lower).
    pub(crate) lower: PathBuf,
    /// The upper directory (what the program changed).
    pub(crate) upper: PathBuf,
    /// The overlay's work directory (same file system as `upper`).
    work: PathBuf,
    /// What the child mounts.
    mount: OverlayMount,
    /// The sandbox's cgroup membership, set when it starts.
    members: OnceLock<Option<crate::sys::cgroup::Members>>,
}

impl Overlay {
    /// Makes the upper and work directories (which must not exist) and
    /// the mount the child makes, covering `covers` too (the storage).
    pub(crate) fn make(
        lower: &Path,
        upper: &Path,
        work: &Path,
        covers: &[&Path],
    ) -> io::Result<Overlay> {
        fs::create_dir(upper)?;
        if let Err(e) = fs::create_dir(work) {
            let _ = fs::remove_dir(upper);
            return Err(e);
        }
        let upper = fs::canonicalize(upper)?;
        let work = fs::canonicalize(work)?;
        let mut data = b"lowerdir=".to_vec();
        data.extend(escape_option(lower.as_os_str().as_bytes()));
        data.extend(b",upperdir=");
        data.extend(escape_option(upper.as_os_str().as_bytes()));
        data.extend(b",workdir=");
        data.extend(escape_option(work.as_os_str().as_bytes()));
        // Redirects (a directory of DIR renamed, as on bare Linux; filled
        // in by `redirects::fill` before it is read), no metadata-only
        // copies or index: the upper tree then holds whole files,
        // whiteouts, opaque and redirected directories only.
        data.extend(b",redirect_dir=on,metacopy=off,index=off,volatile");
        let c = crate::sys::overlay::c_path;
        let mut cover = vec![c(&upper)?, c(&work)?];
        for p in covers {
            cover.push(c(p)?);
        }
        let mut pins: Vec<&Path> = std::iter::once(lower)
            .chain([upper.as_path(), work.as_path()])
            .chain(covers.iter().copied())
            .flat_map(|p| p.ancestors().skip(1))
            .filter(|a| a.parent().is_some())
            .collect();
        pins.sort_by_key(|a| (a.components().count(), a.to_path_buf()));
        pins.dedup();
        let pins = pins.into_iter().map(c).collect::<io::Result<Vec<_>>>()?;
        let mount = OverlayMount {
            pins,
            target: c(lower)?,
            data: std::ffi::CString::new(data)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
            covers: cover,
        };
        Ok(Overlay {
            lower: lower.to_path_buf(),
            upper,
            work,
            mount,
            members: OnceLock::new(),
        })
    }

    /// What the spawned child mounts.
    pub(crate) fn mount(&self) -> &OverlayMount {
        &self.mount
    }

    /// The overlay's work directory (removed with the upper tree).
    pub(crate) fn work(&self) -> &Path {
        &self.work
    }

    /// Whether a process of the sandbox may still run (see
    /// `Layer::survivors_possible`).
    pub(crate) fn survivors_possible(&self) -> bool {
        super::layer::survivors_in(self.members.get())
    }

    /// The change set: the upper directory read as overlayfs writes it,
    /// its redirected directories filled in first.
    pub(crate) fn changes(&self) -> io::Result<Vec<Change>> {
        self.fill()?;
        diff(&self.lower, &self.upper)
    }

    /// Fills in the upper tree's redirected directories (a renamed
    /// directory of DIR: see `redirects`), so that the tree holds what
    /// the view shows wherever it differs from DIR.
    pub(crate) fn fill(&self) -> io::Result<()> {
        super::redirects::fill(&self.lower, &self.upper, &self.work.join("unotify-fill"))
    }
}

/// The changes an overlay upper directory `upper` makes to `lower`, sorted
/// by path: an entry of the upper tree is added or compared with the
/// lower one as the seccomp route's upper tree is; a whiteout (a
/// character device 0:0) deletes the lower entry; an opaque directory
/// (`trusted.overlay.opaque`, which the program cannot set: `user.*`
/// names are the program's) hides what the lower one holds (deleted,
/// beneath it too). Redirected directories must have been filled in.
pub(crate) fn diff(lower: &Path, upper: &Path) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(lower, upper, Path::new(""), false, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn lstat_opt(p: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The directory `rel`; `opaque`: an ancestor hides the lower tree.
fn walk(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    opaque: bool,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    let opaque =
        opaque || (!rel.as_os_str().is_empty() && super::redirects::is_opaque(&upper.join(rel)));
    let up_names = changes::names(&upper.join(rel))?;
    for name in &up_names {
        let r = rel.join(name);
        let um = fs::symlink_metadata(upper.join(&r))?;
        let lm = lstat_opt(&lower.join(&r))?;
        if is_whiteout(&um) {
            if lm.is_some() {
                changes::all(lower, &r, ChangeKind::Deleted, out, true)?;
            }
            continue;
        }
        let Some(lm) = lm else {
            added(upper, &r, out, true)?;
            continue;
        };
        let beneath = |r: &Path, out: &mut Vec<Change>| added(upper, r, out, false);
        let pair = changes::Pair {
            lower,
            upper,
            r: &r,
            um: &um,
            lm: &lm,
        };
        // Every upper file is the program's (no placeholders).
        if pair.compare(&|_, _, _| false, &beneath, out)? {
            walk(lower, upper, &r, opaque, out)?;
        }
    }
    if opaque {
        for name in changes::names(&lower.join(rel))? {
            if !up_names.contains(&name) {
                changes::all(lower, &rel.join(name), ChangeKind::Deleted, out, true)?;
            }
        }
    }
    Ok(())
}

/// `r` of the upper tree and what it holds, as added (`with_self`: `r`
/// too); whiteouts in it stand for nothing.
fn added(upper: &Path, r: &Path, out: &mut Vec<Change>, with_self: bool) -> io::Result<()> {
    let m = fs::symlink_metadata(upper.join(r))?;
    if is_whiteout(&m) {
        return Ok(());
    }
    let t = EntryType::of(m.file_type());
    if with_self {
        out.push(Change {
            path: r.to_path_buf(),
            kind: ChangeKind::Added,
            entry: t,
            was: None,
        });
    }
    if t == EntryType::Dir {
        for name in changes::names(&upper.join(r))? {
            added(upper, &r.join(name), out, true)?;
        }
    }
    Ok(())
}

/// The feature in the sandbox's plan: the filter keeps the program's
/// mount namespace as the child left it; nothing is trapped.
pub(crate) struct OverlayFeature(pub(crate) Arc<Overlay>);

impl Enforcement for OverlayFeature {
    fn late_rules(&self, install: &mut Install<'_>) -> Result<()> {
        // Opens by handle reach DIR's own files and the storage beneath
        // the overlay (`name_to_handle_at` of a file of the view gives
        // the lower file's handle): refused as under path denial.
        crate::paths::install(install.filter)?;
        crate::paths::install_view(install.filter)
    }

    fn start(&self, env: &StartEnv<'_>) -> Result<Option<Running>> {
        let _ = self.0.members.set(env.members.clone());
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_escaped() {
        assert_eq!(escape_option(b"/a,b:c\\d"), b"/a\\,b\\:c\\\\d".to_vec());
    }
}
