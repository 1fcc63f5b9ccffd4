//! `/proc/self/mountinfo`, parsed: the mounts path features check a place
//! against (the work directory's layer, path denial's kernel backstop).

use std::path::PathBuf;

/// One line of mountinfo: its id, device, root within the file system
/// and mount point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mount id.
    pub id: u64,
    /// The device, `major:minor`.
    pub dev: String,
    /// The root of the mount within its file system.
    pub root: PathBuf,
    /// Where it is mounted.
    pub point: PathBuf,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mounts of mountinfo's `text`.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(Mount {
                id: f.first()?.parse().ok()?,
                dev: (*f.get(2)?).to_string(),
                root: unescape(f.get(3)?),
                point: unescape(f.get(4)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        // Not octal: left as it is.
        assert_eq!(unescape(r"/a\089"), PathBuf::from(r"/a\089"));
    }
}
