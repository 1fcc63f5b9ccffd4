//! Reading `/proc`: one reader for its small files, and one parser each for
//! `stat` and `status`; the supervisor's own fd links (`/proc/self/fd/N`).
//!
//! Why a reader of its own: procfs reports a size of 0, so
//! `std::fs::read` asks `statx` for a size hint and then grows its buffer
//! from 32 bytes, one `read` per doubling (eight calls for a `status`).
//! Workers read `/proc` on the path of trapped calls, so [`read`] opens,
//! reads into one page-sized buffer until end of file and closes: four
//! system calls.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `/proc/self/fd/N` for the supervisor's own fd `fd`: a name of exactly
/// the file it holds (reopened, linked, read as a link).
pub(crate) fn fd_link(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// First buffer size: every `stat`, `status`, `children` or `cmdline` of a
/// usual process fits.
const FIRST: usize = 4096;

/// The whole content of the procfs file at `path`.
pub(crate) fn read(path: &str) -> io::Result<Vec<u8>> {
    read_sized(path, FIRST, false)
}

/// [`read`] for a file the kernel renders as one record (a single-record
/// `seq_file`: `stat`, `status`, `statm`, `wchan`): the kernel renders the
/// whole record before copying, so a read that leaves room in the buffer
/// got all of it, and the usual final empty read is skipped (three system
/// calls). Not for files of many records (`children`, `maps`), whose
/// reads may stop short of the buffer between records.
pub(crate) fn read_rendered(path: &str) -> io::Result<Vec<u8>> {
    read_sized(path, FIRST, true)
}

/// [`read_rendered`] as text.
pub(crate) fn read_rendered_text(path: &str) -> io::Result<String> {
    read_rendered(path).map(into_text)
}

/// [`read`] starting with a buffer of `first` bytes (at least 1); with
/// `short_ends`, a read that does not fill the buffer ends the file.
fn read_sized(path: &str, first: usize, short_ends: bool) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; first.max(1)];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) if short_ends && len + n < buf.len() => {
                len += n;
                break;
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// [`read`] as text (procfs text files are ASCII; other bytes are
/// replaced).
pub(crate) fn read_text(path: &str) -> io::Result<String> {
    read(path).map(into_text)
}

fn into_text(b: Vec<u8>) -> String {
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// One line of `/proc/<pid>/maps`: `start-end perms offset maj:min inode
/// [path]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping<'a> {
    /// The range as written (`start-end`, hex), as `map_files` names it.
    pub(crate) range: &'a str,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// `rwxp` or `rwxs`.
    pub(crate) perms: &'a [u8],
    /// The device as written (`maj:min`, hex: the superblock's).
    pub(crate) dev_text: &'a str,
    /// The inode (0: not a file).
    pub(crate) ino: u64,
}

impl Mapping<'_> {
    /// The device as a `dev_t` (`None` if it is not `maj:min` in hex).
    pub(crate) fn dev(&self) -> Option<u64> {
        let (maj, min) = self.dev_text.split_once(':')?;
        let maj = u32::from_str_radix(maj, 16).ok()?;
        let min = u32::from_str_radix(min, 16).ok()?;
        Some(libc::makedev(maj, min))
    }
}

/// The lines of a `/proc/<pid>/maps` text (empty lines left out), each
/// `None` if it is not one: its caller decides whether that fails.
pub(crate) fn mappings(text: &str) -> impl Iterator<Item = Option<Mapping<'_>>> {
    text.lines().filter(|l| !l.is_empty()).map(|line| {
        let mut f = line.split_ascii_whitespace();
        let (range, perms, _offset, dev_text, ino) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        let (a, b) = range.split_once('-')?;
        Some(Mapping {
            range,
            start: u64::from_str_radix(a, 16).ok()?,
            end: u64::from_str_radix(b, 16).ok()?,
            perms: perms.as_bytes(),
            dev_text,
            ino: ino.parse().ok()?,
        })
    })
}

/// The fields of a `/proc/<pid>/stat` line.
///
/// The command name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so the fields are counted after its *last* `)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    /// The command name, without its parentheses.
    pub(crate) comm: Vec<u8>,
    /// The scheduling state letter (field 3).
    pub(crate) state: u8,
    /// Fields 4 and on, as numbers (a field that is not one is 0).
    rest: Vec<i64>,
}

impl Stat {
    /// Parses a `stat` line; `None` if it is not one.
    pub(crate) fn parse(text: &[u8]) -> Option<Stat> {
        let open = text.iter().position(|&b| b == b'(')?;
        let close = text.iter().rposition(|&b| b == b')')?;
        if close < open {
            return None;
        }
        let after = std::str::from_utf8(text.get(close + 1..)?).ok()?;
        let mut fields = after.split_ascii_whitespace();
        let state = *fields.next()?.as_bytes().first()?;
        let rest = fields.map(|f| f.parse().unwrap_or(0)).collect();
        Some(Stat {
            comm: text[open + 1..close].to_vec(),
            state,
            rest,
        })
    }

    /// Reads and parses `/proc/<pid>/stat` (a thread id works too).
    pub(crate) fn of(pid: i32) -> Option<Stat> {
        Stat::parse(&read_rendered(&format!("/proc/{pid}/stat")).ok()?)
    }

    /// Field `n` as numbered in proc(5) (4 and on).
    pub(crate) fn field(&self, n: usize) -> Option<i64> {
        n.checked_sub(4).and_then(|i| self.rest.get(i)).copied()
    }

    /// The parent process id (field 4).
    pub(crate) fn ppid(&self) -> Option<i32> {
        self.field(4).map(|v| v as i32)
    }

    /// The process group id (field 5).
    pub(crate) fn pgrp(&self) -> Option<i32> {
        self.field(5).map(|v| v as i32)
    }
}

/// The value of `key` (with its colon, e.g. `"Tgid:"`) in a `status` text,
/// trimmed.
pub(crate) fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// The thread group (process id) of thread `tid`: `tid` itself for a
/// thread-group leader (a process pidfd opens only for one, which costs
/// less than the kernel's rendering of a `status`), else `Tgid:` of its
/// `status`.
pub(crate) fn thread_group_of(tid: i32) -> Option<i32> {
    if super::pidfd::pidfd_open(tid, 0).is_ok() {
        return Some(tid);
    }
    let status = read_rendered_text(&format!("/proc/{tid}/status")).ok()?;
    status_field(&status, "Tgid:").and_then(|v| v.parse().ok())
}

/// The processes in the trees below `root` (not `root` itself), each
/// once, read from its threads' `children` lists; at most `max`. A list
/// that cannot be read (a task gone meanwhile) adds nothing.
pub(crate) fn descendants(root: i32, max: usize) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for tid in tasks
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            let Ok(list) = read_text(&format!("/proc/{pid}/task/{tid}/children")) else {
                continue;
            };
            for child in list
                .split_ascii_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if out.len() >= max {
                    return out;
                }
                if child != root && !out.contains(&child) {
                    out.push(child);
                    stack.push(child);
                }
            }
        }
    }
    out
}

/// Whether thread `tid` has a signal pending that it does not block and
/// that is surely its own to take: directed at it (`SigPnd`), or at its
/// process (`ShdPnd`) when it is the process's only thread (with more,
/// the kernel may have picked another thread, and only the picked one
/// returns from an interrupted call to take it). `None` if the status
/// cannot be read (the thread is gone). The caller checks afterwards that
/// `tid` is still the thread it means (a notification id still valid).
pub(crate) fn signal_to_take(tid: i32) -> Option<bool> {
    let status = read_rendered_text(&format!("/proc/{tid}/status")).ok()?;
    let mask = |key: &str| status_field(&status, key).and_then(|v| u64::from_str_radix(v, 16).ok());
    let blocked = mask("SigBlk:")?;
    let own = mask("SigPnd:")? & !blocked;
    let shared = mask("ShdPnd:")? & !blocked;
    let alone = status_field(&status, "Threads:") == Some("1");
    Some(own != 0 || (alone && shared != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped_whole() {
        let line =
            b"4242 (a) b (c)) d) S 17 4242 4242 0 -1 4194560 99 0 0 0 0 0 0 0 20 0 1 0 12345 0\n";
        let st = Stat::parse(line).expect("parses");
        assert_eq!(st.comm, b"a) b (c)) d");
        assert_eq!(st.state, b'S');
        assert_eq!(st.ppid(), Some(17));
        assert_eq!(st.pgrp(), Some(4242));
        assert_eq!(st.field(8), Some(-1));
        assert_eq!(st.field(22), Some(12345));
        assert_eq!(st.field(3), None);
        assert_eq!(st.field(99), None);
        assert!(Stat::parse(b"no parentheses here").is_none());
        assert!(Stat::parse(b"1 (x)").is_none());
    }

    #[test]
    fn reads_this_process_whole() {
        let me = std::process::id() as i32;
        let st = Stat::of(me).expect("own stat");
        assert_eq!(st.ppid(), Some(std::os::unix::process::parent_id() as i32));
        assert_eq!(thread_group_of(me), Some(me));
        let status = read_text("/proc/self/status").expect("status");
        assert_eq!(
            status_field(&status, "Pid:").and_then(|v| v.parse().ok()),
            Some(me)
        );
        // Past the first buffer: grown, nothing lost.
        let big = std::fs::read("/proc/self/mountinfo").expect("mountinfo");
        assert_eq!(
            read_sized("/proc/self/mountinfo", 16, false).expect("mountinfo"),
            big
        );
        let rendered = read_rendered_text("/proc/self/status").expect("status");
        assert_eq!(rendered.lines().next(), status.lines().next());
        assert!(rendered.ends_with('\n') && rendered.contains("\nPid:\t"));
        let auxv = read("/proc/self/auxv").expect("auxv");
        assert_eq!(auxv, std::fs::read("/proc/self/auxv").expect("auxv"));
    }
}
