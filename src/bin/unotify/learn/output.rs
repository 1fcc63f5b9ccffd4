//! Where `unotify learn --output FILE` puts the profile: FILE is checked
//! before the command runs (its directory writable), left alone while it
//! runs (the command may write there, as anything else), and replaced
//! whole after it, once nothing of the sandbox is left: the profile is
//! written to a new file beside FILE, renamed over it. So FILE is exactly
//! the profile rendered, whatever the command did to it. Used by `main`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The `--output` file.
#[derive(Debug)]
pub struct ProfileFile {
    /// As the user gave it.
    path: PathBuf,
}

impl ProfileFile {
    /// Checks that `path` can be replaced (a new file made beside it):
    /// said before a long run, not after it.
    pub fn check(path: &Path) -> Result<ProfileFile, String> {
        let cannot = |e: &dyn std::fmt::Display| {
            format!("cannot open the profile output {}: {e}", path.display())
        };
        if path.is_dir() {
            return Err(cannot(&"it is a directory; give a file name"));
        }
        let file = ProfileFile {
            path: path.to_path_buf(),
        };
        let (probe, _) = file.new_beside().map_err(|e| {
            cannot(&format_args!(
                "{e}; check the directory exists and is writable"
            ))
        })?;
        let _ = std::fs::remove_file(probe);
        Ok(file)
    }

    /// A new file beside the output, made now (`O_EXCL`).
    fn new_beside(&self) -> std::io::Result<(PathBuf, std::fs::File)> {
        let name = self
            .path
            .file_name()
            .ok_or_else(|| std::io::Error::other("no file name"))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tries = 0;
        loop {
            let mut tmp = std::ffi::OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".unotify-learn-{}-{tries}", std::process::id()));
            let tmp = dir.join(tmp);
            match std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(f) => return Ok((tmp, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 100 => {
                    tries += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Replaces the output with `text`: a new file renamed over it (what
    /// is there now, a file or a symlink, is not written through). Keeps
    /// the permissions of a file that was there.
    pub fn replace(&self, text: &str) -> Result<(), String> {
        let fail =
            |e: std::io::Error| format!("cannot write the profile to {}: {e}", self.path.display());
        let (tmp, mut f) = self.new_beside().map_err(fail)?;
        let written = (|| {
            if let Ok(old) = std::fs::symlink_metadata(&self.path) {
                if old.is_file() {
                    let mode = old.permissions().mode() & 0o777;
                    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                }
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        Ok(())
    }
}
