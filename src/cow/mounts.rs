//! The work directory's place among the mounts: the layer tells the lower
//! tree by its device and by the path of DIR, so a mount inside DIR (other
//! device, written freely) and another mount of DIR's file system that
//! shows DIR, or a directory inside it, at a second path (a bind mount:
//! same device, another path) would be written for the program. All are
//! refused when the layer is made (read from `/proc/self/mountinfo`): a
//! refusal at the start rather than a decision per call by mount id,
//! since a file reached through another mount can only be placed inside
//! or outside DIR through that mount's root, which is in the same table,
//! and the program cannot add mounts (the mount family is refused to it,
//! see `paths::view`). Mounts the host adds while the program runs are
//! not seen.

use std::path::Path;

use crate::sys::mountinfo::{parse, Mount};

/// `Err(what to say)` if a mount lies inside `lower` (canonical) or
/// `lower` can be reached through another mount; fails closed when the
/// mount table cannot be read.
pub(crate) fn check(lower: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo ({e}) to check for mounts in it"))?;
    check_in(&parse(&text), lower)
}

fn check_in(mounts: &[Mount], lower: &Path) -> Result<(), String> {
    if let Some(m) = mounts
        .iter()
        .find(|m| m.point != lower && m.point.starts_with(lower))
    {
        return Err(format!(
            "{} is mounted inside it (the layer cannot hold another file system's changes); unmount it, or give a directory without mounts in it",
            m.point.display()
        ));
    }
    // The mount that shows `lower` (the last of the longest mount points
    // above it: later mounts cover earlier ones).
    let Some(home) = mounts
        .iter()
        .filter(|m| lower.starts_with(&m.point))
        .max_by_key(|m| m.point.as_os_str().len())
    else {
        return Err("no mount holds it in /proc/self/mountinfo".into());
    };
    let within = home
        .root
        .join(lower.strip_prefix(&home.point).unwrap_or(Path::new("")));
    if let Some(m) = mounts
        .iter()
        .find(|m| m.id != home.id && m.dev == home.dev && within.starts_with(&m.root))
    {
        let rest = within.strip_prefix(&m.root).unwrap_or(Path::new(""));
        return Err(format!(
            "it is also reachable at {} (another mount of its file system; the layer tells the work directory by its path); unmount that, or give a directory that is mounted once",
            m.point.join(rest).display()
        ));
    }
    // A part of it mounted elsewhere (a bind mount of a subdirectory):
    // its files are DIR's, at a path outside DIR.
    if let Some(m) = mounts
        .iter()
        .find(|m| m.id != home.id && m.dev == home.dev && m.root.starts_with(&within))
    {
        let part = lower.join(m.root.strip_prefix(&within).unwrap_or(Path::new("")));
        return Err(format!(
            "{} is also reachable at {} (another mount of its file system; the layer tells the work directory by its path); unmount that, or give a directory none of which is mounted elsewhere",
            part.display(),
            m.point.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
        30 27 0:40 / /p/a\\040b/mnt rw - tmpfs t rw\n\
        31 27 254:0 /p/c /alias rw - ext4 /dev/vda rw\n\
        32 27 254:0 /q/r/s /sub-alias rw - ext4 /dev/vda rw\n";

    #[test]
    fn mounts_inside_and_aliases_are_found() {
        let m = parse(INFO);
        assert_eq!(m[1].point, Path::new("/p/a b/mnt"));
        assert!(check_in(&m, Path::new("/p/a b")).is_err());
        assert!(check_in(&m, Path::new("/p/a b/mnt")).is_ok());
        assert!(check_in(&m, Path::new("/p/c/d"))
            .unwrap_err()
            .contains("/alias/d"));
        assert!(check_in(&m, Path::new("/p/e")).is_ok());
        // A directory inside it is mounted elsewhere.
        assert!(check_in(&m, Path::new("/q/r"))
            .unwrap_err()
            .contains("/q/r/s is also reachable at /sub-alias"));
        assert!(check_in(&m, Path::new("/q/t")).is_ok());
    }
}
