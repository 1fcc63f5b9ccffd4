//! Readable traces of trapped calls, as strace shows them: paths and argv
//! read from the task's memory, flags and modes by name, socket addresses
//! as `127.0.0.1:8080`, `[::1]:443`, `@abstract` or `/path`, errnos by
//! name; a call it does not know keeps its arguments in hex. Pure
//! formatting over a memory reader it is given; the answer core calls it
//! (reading under `ID_VALID`) when it traces a call.

use std::fmt::Write;

/// Reads `buf.len()` bytes at an address of the trapped task; `false` if
/// it cannot.
pub(crate) type Reader<'a> = &'a dyn Fn(u64, &mut [u8]) -> bool;

/// How one argument is shown.
#[derive(Clone, Copy)]
enum Arg {
    /// A number, in decimal.
    Int,
    /// A file descriptor (an `int`: `-1` for none).
    Fd,
    /// Hex (pointers, unknown values).
    Hex,
    /// A directory fd (`AT_FDCWD`).
    DirFd,
    /// A path: a string in the task's memory.
    Path,
    /// `O_*` open flags.
    OpenFlags,
    /// A file mode, in octal.
    Mode,
    /// `F_OK`/`R_OK`/... of access.
    Access,
    /// `AT_*` flags.
    AtFlags,
    /// An argv array in the task's memory.
    Argv,
    /// A socket address; its length is argument `usize`.
    Sockaddr(usize),
    /// `AF_*`.
    Domain,
    /// `SOCK_*`.
    SockType,
    /// `CLONE_*` and the exit signal.
    CloneFlags,
    /// `PROT_*`.
    Prot,
    /// `MAP_*`.
    MapFlags,
    /// `MSG_*`.
    MsgFlags,
}

/// The arguments shown for each known call.
fn spec(name: &str) -> Option<&'static [Arg]> {
    use Arg::*;
    Some(match name {
        "open" => &[Path, OpenFlags, Mode],
        "creat" => &[Path, Mode],
        "openat" => &[DirFd, Path, OpenFlags, Mode],
        "openat2" => &[DirFd, Path, Hex, Int],
        "access" => &[Path, Access],
        "faccessat" => &[DirFd, Path, Access],
        "faccessat2" => &[DirFd, Path, Access, AtFlags],
        "stat" | "lstat" => &[Path, Hex],
        "newfstatat" | "fstatat64" => &[DirFd, Path, Hex, AtFlags],
        "statx" => &[DirFd, Path, AtFlags, Hex, Hex],
        "readlink" => &[Path, Hex, Int],
        "readlinkat" => &[DirFd, Path, Hex, Int],
        "unlink" | "rmdir" | "chdir" | "chroot" => &[Path],
        "unlinkat" => &[DirFd, Path, AtFlags],
        "mkdir" => &[Path, Mode],
        "mkdirat" => &[DirFd, Path, Mode],
        "rename" | "link" | "symlink" => &[Path, Path],
        "renameat" => &[DirFd, Path, DirFd, Path],
        "renameat2" => &[DirFd, Path, DirFd, Path, Hex],
        "linkat" => &[DirFd, Path, DirFd, Path, AtFlags],
        "symlinkat" => &[Path, DirFd, Path],
        "chmod" => &[Path, Mode],
        "fchmodat" => &[DirFd, Path, Mode],
        "chown" | "lchown" => &[Path, Int, Int],
        "fchownat" => &[DirFd, Path, Int, Int, AtFlags],
        "truncate" => &[Path, Int],
        "execve" => &[Path, Argv, Hex],
        "execveat" => &[DirFd, Path, Argv, Hex, AtFlags],
        "socket" => &[Domain, SockType, Int],
        "socketpair" => &[Domain, SockType, Int, Hex],
        "connect" | "bind" => &[Fd, Sockaddr(2), Int],
        "sendto" => &[Fd, Hex, Int, MsgFlags, Sockaddr(5), Int],
        "sendmsg" | "recvmsg" => &[Fd, Hex, MsgFlags],
        "listen" => &[Fd, Int],
        "accept" => &[Fd, Hex, Hex],
        "accept4" => &[Fd, Hex, Hex, SockType],
        "clone" => &[CloneFlags, Hex, Hex, Hex, Hex],
        "fork" | "vfork" => &[],
        "mmap" => &[Hex, Int, Prot, MapFlags, Fd, Hex],
        "mprotect" => &[Hex, Int, Prot],
        "munmap" => &[Hex, Int],
        "brk" => &[Hex],
        "mremap" => &[Hex, Int, Int, Hex, Hex],
        "read" | "write" => &[Fd, Hex, Int],
        "close" => &[Fd],
        _ => return None,
    })
}

/// The index of the first path argument of call `name`, if it has one.
pub(crate) fn path_arg(name: &str) -> Option<usize> {
    spec(name)?.iter().position(|a| matches!(a, Arg::Path))
}

/// The socket address argument of call `name` (connect, bind, sendto,
/// sendmsg, sendmmsg's first message), readable for every family (see
/// [`sockaddr_text`]); `None` when it has none.
pub(crate) fn destination(name: &str, args: &[u64; 6], read: Reader<'_>) -> Option<String> {
    let (addr, len) = match name {
        "connect" | "bind" => (args[1], args[2]),
        "sendto" => (args[4], args[5]),
        "sendmsg" | "sendmmsg" => {
            // struct msghdr (first in struct mmsghdr): msg_name, msg_namelen.
            let mut hdr = [0u8; 12];
            if args[1] == 0 || !read(args[1], &mut hdr) {
                return None;
            }
            let name = u64::from_ne_bytes(hdr[..8].try_into().ok()?);
            let len = u32::from_ne_bytes(hdr[8..12].try_into().ok()?);
            (name, u64::from(len))
        }
        _ => return None,
    };
    if addr == 0 || len == 0 {
        return None;
    }
    let mut buf = vec![0u8; (len as usize).min(128)];
    if !read(addr, &mut buf) {
        return None;
    }
    Some(sockaddr_text(&buf))
}

/// A socket address for records: `127.0.0.1:8080`, `[::1]:443`,
/// `unix:/path`, `unix:@name`, `unix:unnamed`, `netlink:pid=0,groups=0x0`,
/// `unspec`, or `family=AF_X` for the others.
pub(crate) fn sockaddr_text(buf: &[u8]) -> String {
    if buf.len() < 2 {
        return "invalid".into();
    }
    let family = u16::from_ne_bytes([buf[0], buf[1]]) as i32;
    let len = buf.len();
    if let Some(ip) = inet_text(family, buf) {
        return ip;
    }
    match family {
        libc::AF_UNIX => match unix_name(buf) {
            UnixName::Unnamed => "unix:unnamed".into(),
            UnixName::Abstract(n) => format!("unix:@{}", crate::shown::bytes(n)),
            UnixName::Path(p) => format!("unix:{}", crate::shown::bytes(p)),
        },
        libc::AF_NETLINK if len >= 12 => {
            let pid = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let groups = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
            format!("netlink:pid={pid},groups={groups:#x}")
        }
        libc::AF_UNSPEC => "unspec".into(),
        other => format!("family={}", name_of(other as u64, DOMAINS)),
    }
}

/// `127.0.0.1:8080` or `[::1]:443` for an `AF_INET`/`AF_INET6` address
/// `buf` long enough to hold one.
fn inet_text(family: i32, buf: &[u8]) -> Option<String> {
    let port = || u16::from_be_bytes([buf[2], buf[3]]);
    match family {
        libc::AF_INET if buf.len() >= 8 => {
            let ip = std::net::Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            Some(format!("{ip}:{}", port()))
        }
        libc::AF_INET6 if buf.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&buf[8..24]);
            Some(format!("[{}]:{}", std::net::Ipv6Addr::from(a), port()))
        }
        _ => None,
    }
}

/// The name of an `AF_UNIX` address `buf` (family included).
enum UnixName<'a> {
    Unnamed,
    /// Without its leading NUL.
    Abstract(&'a [u8]),
    /// Up to its first NUL.
    Path(&'a [u8]),
}

fn unix_name(buf: &[u8]) -> UnixName<'_> {
    let path = &buf[2..];
    match path.first() {
        None => UnixName::Unnamed,
        Some(0) => UnixName::Abstract(&path[1..]),
        Some(_) => {
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            UnixName::Path(&path[..end])
        }
    }
}

/// `name(args...)`: the call, decoded.
pub(crate) fn call(name: &str, args: &[u64; 6], read: Reader<'_>) -> String {
    let mut out = format!("{name}(");
    match spec(name) {
        Some(kinds) => {
            for (i, kind) in kinds.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&arg(*kind, args, i, read));
            }
        }
        None => {
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{a:#x}");
            }
        }
    }
    out.push(')');
    out
}

/// A decision label with the errno by name: `ERRNO(2)` becomes
/// `ERRNO(ENOENT)`.
pub(crate) fn decision(label: &str) -> String {
    if let Some(n) = label
        .strip_prefix("ERRNO(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|n| n.parse::<i32>().ok())
    {
        if let Some(name) = errno_name(n) {
            return format!("ERRNO({name})");
        }
    }
    label.to_owned()
}

fn arg(kind: Arg, args: &[u64; 6], i: usize, read: Reader<'_>) -> String {
    let v = args[i];
    match kind {
        Arg::Int => (v as i64).to_string(),
        Arg::Fd => (v as i32).to_string(),
        Arg::Hex => format!("{v:#x}"),
        Arg::DirFd => {
            if v as i32 == libc::AT_FDCWD {
                "AT_FDCWD".into()
            } else {
                (v as i32).to_string()
            }
        }
        Arg::Path => string_at(v, 4096, read),
        Arg::OpenFlags => open_flags(v as i32),
        Arg::Mode => format!("{:#o}", v as u32),
        Arg::Access => access(v as i32),
        Arg::AtFlags => flags(v, AT_FLAGS, "0"),
        Arg::Argv => argv_at(v, read),
        Arg::Sockaddr(len_arg) => sockaddr_at(v, args[len_arg] as usize, read),
        Arg::Domain => name_of(v, DOMAINS),
        Arg::SockType => {
            let base = name_of(v & 0xf, SOCK_TYPES);
            let rest = flags(v & !0xf, SOCK_FLAGS, "");
            if rest.is_empty() {
                base
            } else {
                format!("{base}|{rest}")
            }
        }
        Arg::CloneFlags => {
            let sig = v & 0xff;
            let mut s = flags(v & !0xff, CLONE_FLAGS, "");
            if sig != 0 {
                if !s.is_empty() {
                    s.push('|');
                }
                s.push_str(&signal_name(sig as i32));
            }
            if s.is_empty() {
                "0".into()
            } else {
                s
            }
        }
        Arg::Prot => flags(v, PROT, "PROT_NONE"),
        Arg::MapFlags => flags(v, MAP, "0"),
        Arg::MsgFlags => flags(v, MSG, "0"),
    }
}

/// Reads a NUL-terminated string at `addr` (at most `max` bytes), a page
/// piece at a time; quoted and escaped, `...` when cut.
fn string_at(addr: u64, max: usize, read: Reader<'_>) -> String {
    if addr == 0 {
        return "NULL".into();
    }
    let mut bytes = Vec::new();
    let mut at = addr;
    while bytes.len() < max {
        let to_page_end = 4096 - (at % 4096) as usize;
        let mut chunk = vec![0u8; to_page_end.min(256).min(max - bytes.len())];
        if !read(at, &mut chunk) {
            if bytes.is_empty() {
                return format!("{addr:#x}");
            }
            break;
        }
        if let Some(end) = chunk.iter().position(|&b| b == 0) {
            bytes.extend_from_slice(&chunk[..end]);
            return quote(&bytes, false);
        }
        at += chunk.len() as u64;
        bytes.extend_from_slice(&chunk);
    }
    quote(&bytes, true)
}

fn quote(bytes: &[u8], cut: bool) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    if cut {
        out.push_str("...");
    }
    out
}

/// An argv array: `["sh", "-c", "ls"]` (at most 32 entries shown).
fn argv_at(addr: u64, read: Reader<'_>) -> String {
    if addr == 0 {
        return "NULL".into();
    }
    let mut items = Vec::new();
    for i in 0..33u64 {
        let mut p = [0u8; 8];
        if !read(addr + i * 8, &mut p) {
            return format!("{addr:#x}");
        }
        let ptr = u64::from_ne_bytes(p);
        if ptr == 0 {
            return format!("[{}]", items.join(", "));
        }
        if i == 32 {
            items.push("...".to_owned());
            break;
        }
        items.push(string_at(ptr, 256, read));
    }
    format!("[{}]", items.join(", "))
}

/// A socket address: `127.0.0.1:8080`, `[::1]:443`, `"/path"`,
/// `@abstract`, `unnamed`.
fn sockaddr_at(addr: u64, len: usize, read: Reader<'_>) -> String {
    if addr == 0 {
        return "NULL".into();
    }
    let len = len.min(128);
    let mut buf = vec![0u8; len];
    if len < 2 || !read(addr, &mut buf) {
        return format!("{addr:#x}");
    }
    let family = u16::from_ne_bytes([buf[0], buf[1]]) as i32;
    if let Some(ip) = inet_text(family, &buf) {
        return ip;
    }
    match family {
        libc::AF_UNIX => match unix_name(&buf) {
            UnixName::Unnamed => "unnamed".into(),
            UnixName::Abstract(n) => format!("@{}", crate::shown::bytes(n)),
            UnixName::Path(p) => quote(p, false),
        },
        other => format!("{{family={}}}", name_of(other as u64, DOMAINS)),
    }
}

fn open_flags(v: i32) -> String {
    let mode = match v & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = flags((v & !libc::O_ACCMODE) as u32 as u64, OPEN_FLAGS, "");
    if rest.is_empty() {
        mode.into()
    } else {
        format!("{mode}|{rest}")
    }
}

fn access(v: i32) -> String {
    if v == 0 {
        return "F_OK".into();
    }
    flags(
        v as u64,
        &[
            ("R_OK", libc::R_OK as u64),
            ("W_OK", libc::W_OK as u64),
            ("X_OK", libc::X_OK as u64),
        ],
        "F_OK",
    )
}

/// `A|B|0x40`: the named bits of `v`, then what is left in hex; `zero`
/// when `v` is 0.
fn flags(v: u64, names: &[(&str, u64)], zero: &str) -> String {
    if v == 0 {
        return zero.into();
    }
    let mut parts = Vec::new();
    let mut left = v;
    for &(name, bit) in names {
        if bit != 0 && left & bit == bit {
            parts.push(name.to_owned());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("{left:#x}"));
    }
    parts.join("|")
}

fn name_of(v: u64, names: &[(&str, u64)]) -> String {
    names
        .iter()
        .find(|&&(_, n)| n == v)
        .map_or_else(|| v.to_string(), |&(name, _)| name.to_owned())
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return sig.to_string(),
    };
    name.into()
}

/// The name of errno `n`, if it is a common one.
pub(crate) fn errno_name(n: i32) -> Option<&'static str> {
    crate::action::errno_name(n)
}

const OPEN_FLAGS: &[(&str, u64)] = &[
    ("O_CREAT", libc::O_CREAT as u64),
    ("O_EXCL", libc::O_EXCL as u64),
    ("O_NOCTTY", libc::O_NOCTTY as u64),
    ("O_TRUNC", libc::O_TRUNC as u64),
    ("O_APPEND", libc::O_APPEND as u64),
    ("O_NONBLOCK", libc::O_NONBLOCK as u64),
    // O_SYNC contains O_DSYNC's bit: the larger first.
    ("O_SYNC", libc::O_SYNC as u64),
    ("O_DSYNC", libc::O_DSYNC as u64),
    ("O_ASYNC", libc::O_ASYNC as u64),
    ("O_DIRECT", libc::O_DIRECT as u64),
    ("O_LARGEFILE", 0o100000),
    // O_TMPFILE contains O_DIRECTORY's bit: the larger first.
    ("O_TMPFILE", libc::O_TMPFILE as u64),
    ("O_DIRECTORY", libc::O_DIRECTORY as u64),
    ("O_NOFOLLOW", libc::O_NOFOLLOW as u64),
    ("O_NOATIME", libc::O_NOATIME as u64),
    ("O_CLOEXEC", libc::O_CLOEXEC as u64),
    ("O_PATH", libc::O_PATH as u64),
];

const AT_FLAGS: &[(&str, u64)] = &[
    ("AT_SYMLINK_NOFOLLOW", libc::AT_SYMLINK_NOFOLLOW as u64),
    ("AT_REMOVEDIR", libc::AT_REMOVEDIR as u64),
    ("AT_SYMLINK_FOLLOW", libc::AT_SYMLINK_FOLLOW as u64),
    ("AT_NO_AUTOMOUNT", libc::AT_NO_AUTOMOUNT as u64),
    ("AT_EMPTY_PATH", libc::AT_EMPTY_PATH as u64),
];

const DOMAINS: &[(&str, u64)] = &[
    ("AF_UNSPEC", libc::AF_UNSPEC as u64),
    ("AF_UNIX", libc::AF_UNIX as u64),
    ("AF_INET", libc::AF_INET as u64),
    ("AF_INET6", libc::AF_INET6 as u64),
    ("AF_NETLINK", libc::AF_NETLINK as u64),
    ("AF_PACKET", libc::AF_PACKET as u64),
];

const SOCK_TYPES: &[(&str, u64)] = &[
    ("SOCK_STREAM", libc::SOCK_STREAM as u64),
    ("SOCK_DGRAM", libc::SOCK_DGRAM as u64),
    ("SOCK_RAW", libc::SOCK_RAW as u64),
    ("SOCK_SEQPACKET", libc::SOCK_SEQPACKET as u64),
];

const SOCK_FLAGS: &[(&str, u64)] = &[
    ("SOCK_NONBLOCK", libc::SOCK_NONBLOCK as u64),
    ("SOCK_CLOEXEC", libc::SOCK_CLOEXEC as u64),
];

const CLONE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_VM", libc::CLONE_VM as u64),
    ("CLONE_FS", libc::CLONE_FS as u64),
    ("CLONE_FILES", libc::CLONE_FILES as u64),
    ("CLONE_SIGHAND", libc::CLONE_SIGHAND as u64),
    ("CLONE_PIDFD", libc::CLONE_PIDFD as u64),
    ("CLONE_PTRACE", libc::CLONE_PTRACE as u64),
    ("CLONE_VFORK", libc::CLONE_VFORK as u64),
    ("CLONE_PARENT", libc::CLONE_PARENT as u64),
    ("CLONE_THREAD", libc::CLONE_THREAD as u64),
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_SYSVSEM", libc::CLONE_SYSVSEM as u64),
    ("CLONE_SETTLS", libc::CLONE_SETTLS as u64),
    ("CLONE_PARENT_SETTID", libc::CLONE_PARENT_SETTID as u64),
    ("CLONE_CHILD_CLEARTID", libc::CLONE_CHILD_CLEARTID as u64),
    ("CLONE_UNTRACED", libc::CLONE_UNTRACED as u64),
    ("CLONE_CHILD_SETTID", libc::CLONE_CHILD_SETTID as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
    ("CLONE_IO", libc::CLONE_IO as u64),
];

const PROT: &[(&str, u64)] = &[
    ("PROT_READ", libc::PROT_READ as u64),
    ("PROT_WRITE", libc::PROT_WRITE as u64),
    ("PROT_EXEC", libc::PROT_EXEC as u64),
];

const MAP: &[(&str, u64)] = &[
    ("MAP_SHARED", libc::MAP_SHARED as u64),
    ("MAP_PRIVATE", libc::MAP_PRIVATE as u64),
    ("MAP_FIXED", libc::MAP_FIXED as u64),
    ("MAP_ANONYMOUS", libc::MAP_ANONYMOUS as u64),
    ("MAP_NORESERVE", libc::MAP_NORESERVE as u64),
    ("MAP_POPULATE", libc::MAP_POPULATE as u64),
    ("MAP_STACK", libc::MAP_STACK as u64),
    ("MAP_DENYWRITE", libc::MAP_DENYWRITE as u64),
    ("MAP_FIXED_NOREPLACE", libc::MAP_FIXED_NOREPLACE as u64),
];

const MSG: &[(&str, u64)] = &[
    ("MSG_OOB", libc::MSG_OOB as u64),
    ("MSG_PEEK", libc::MSG_PEEK as u64),
    ("MSG_DONTROUTE", libc::MSG_DONTROUTE as u64),
    ("MSG_DONTWAIT", libc::MSG_DONTWAIT as u64),
    ("MSG_NOSIGNAL", libc::MSG_NOSIGNAL as u64),
    ("MSG_MORE", libc::MSG_MORE as u64),
    ("MSG_FASTOPEN", libc::MSG_FASTOPEN as u64),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader over a fake memory: `base` holds `mem`.
    fn reader(base: u64, mem: Vec<u8>) -> impl Fn(u64, &mut [u8]) -> bool {
        move |addr, buf| {
            let Some(off) = addr.checked_sub(base) else {
                return false;
            };
            let off = off as usize;
            if off + buf.len() > mem.len() {
                return false;
            }
            buf.copy_from_slice(&mem[off..off + buf.len()]);
            true
        }
    }

    #[test]
    fn an_open_reads_like_strace() {
        let mut mem = b"/etc/hostname\0".to_vec();
        mem.resize(4096, 0);
        let r = reader(0x1000, mem);
        let args = [
            libc::AT_FDCWD as u32 as u64,
            0x1000,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ];
        assert_eq!(
            call("openat", &args, &r),
            r#"openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC, 0o0)"#
        );
        assert_eq!(decision("ERRNO(2)"), "ERRNO(ENOENT)");
        assert_eq!(decision("CONTINUE"), "CONTINUE");
    }

    #[test]
    fn sockaddrs_and_argv() {
        let mut mem = vec![0u8; 4096];
        // sockaddr_in 127.0.0.1:8080 at 0x2000.
        mem[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        mem[2..4].copy_from_slice(&8080u16.to_be_bytes());
        mem[4..8].copy_from_slice(&[127, 0, 0, 1]);
        // argv at 0x2040: two pointers to "sh" (0x2080) and "-c" (0x2084).
        mem[0x40..0x48].copy_from_slice(&0x2080u64.to_ne_bytes());
        mem[0x48..0x50].copy_from_slice(&0x2084u64.to_ne_bytes());
        mem[0x80..0x83].copy_from_slice(b"sh\0");
        mem[0x84..0x87].copy_from_slice(b"-c\0");
        // sockaddr_un "@abs" at 0x20a0.
        mem[0xa0..0xa2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        mem[0xa3..0xa6].copy_from_slice(b"abs");
        let r = reader(0x2000, mem);
        assert_eq!(
            call("connect", &[3, 0x2000, 16, 0, 0, 0], &r),
            "connect(3, 127.0.0.1:8080, 16)"
        );
        assert_eq!(
            call("connect", &[3, 0x20a0, 6, 0, 0, 0], &r),
            "connect(3, @abs, 6)"
        );
        assert_eq!(
            call("execve", &[0x2080, 0x2040, 0, 0, 0, 0], &r),
            r#"execve("sh", ["sh", "-c"], 0x0)"#
        );
        let st = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64;
        assert_eq!(
            call("socket", &[libc::AF_INET6 as u64, st, 0, 0, 0, 0], &r),
            "socket(AF_INET6, SOCK_STREAM|SOCK_CLOEXEC, 0)"
        );
        // Unknown calls keep hex; unreadable memory shows the pointer.
        assert_eq!(
            call("ioctl", &[1, 0x5401, 0, 0, 0, 0], &r),
            "ioctl(0x1, 0x5401, 0x0, 0x0, 0x0, 0x0)"
        );
        assert_eq!(
            call("unlink", &[0x9000, 0, 0, 0, 0, 0], &r),
            "unlink(0x9000)"
        );
    }
}
