//! Socket calls on raw socket descriptors, for network calls made on a
//! sandboxed program's behalf: `connect`, `bind`, `sendto`, `sendmsg`,
//! `sendmmsg`, `listen`, `shutdown`, `getsockopt`, `getsockname` and
//! `fcntl(F_GETFL)`; plus what an `AF_UNIX` bind made for the program needs
//! (a thread with its own working directory and umask) and `poll(2)` over
//! many descriptors.
//!
//! Addresses are passed as the raw `struct sockaddr` bytes the program gave,
//! so the kernel interprets exactly what the supervisor checked. None of
//! these calls retries on `EINTR`: the error is the program's answer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, cvt_long};

/// `sizeof(struct sockaddr_storage)`: the largest address the kernel copies.
pub const SOCKADDR_MAX: usize = 128;

/// One message to send: an optional destination address (raw `sockaddr`
/// bytes; `Some(&[])` passes a non-null address of length 0), the payload
/// (the concatenation of the program's iovecs) and the ancillary data.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutMsg<'a> {
    /// Destination address bytes, or `None` for the connected peer.
    pub name: Option<&'a [u8]>,
    /// The bytes to send.
    pub data: &'a [u8],
    /// Control messages (`msg_control`), possibly empty.
    pub control: &'a [u8],
}

fn addr_len(addr: &[u8]) -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(addr.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `connect(2)` with the raw address `addr`.
pub fn connect(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let len = addr_len(addr)?;
    // SAFETY: `addr` is a live byte slice of `len` bytes; the kernel only
    // reads that many bytes and copies them before returning.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr().cast(), len) }).map(drop)
}

/// Raw `sockaddr_un` bytes for the pathname `path` (NUL-terminated).
pub fn unix_path_addr(path: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + path.len() + 1);
    b.extend_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    b.extend_from_slice(path);
    b.push(0);
    b
}

/// `bind(2)` with the raw address `addr`.
pub fn bind(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let len = addr_len(addr)?;
    // SAFETY: as in `connect`: the kernel reads `len` bytes of `addr`.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr().cast(), len) }).map(drop)
}

/// Storage that keeps the iovec a `msghdr` points at alive.
struct RawMsg {
    hdr: libc::msghdr,
    _iov: Box<libc::iovec>,
}

fn raw_msg(m: &OutMsg<'_>) -> io::Result<RawMsg> {
    let mut iov = Box::new(libc::iovec {
        iov_base: m.data.as_ptr() as *mut libc::c_void,
        iov_len: m.data.len(),
    });
    // SAFETY: msghdr is plain old data (pointers and integers, possibly with
    // private padding fields on some targets); all-zero is a valid value.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(name) = m.name {
        hdr.msg_name = name.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr_len(name)?;
    }
    hdr.msg_iov = &mut *iov;
    hdr.msg_iovlen = 1;
    if !m.control.is_empty() {
        hdr.msg_control = m.control.as_ptr() as *mut libc::c_void;
        hdr.msg_controllen = m.control.len() as _;
    }
    Ok(RawMsg { hdr, _iov: iov })
}

/// `sendmsg(2)` of one message.
pub fn sendmsg(fd: BorrowedFd<'_>, msg: &OutMsg<'_>, flags: i32) -> io::Result<usize> {
    let raw = raw_msg(msg)?;
    // SAFETY: `raw.hdr` points at the name, payload and control slices of
    // `msg` and at the boxed iovec in `raw`, all alive for the call; the
    // kernel only reads them for a send.
    let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &raw.hdr, flags) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `sendmmsg(2)`: returns how many messages were sent and, for each of them,
/// the bytes sent (`msg_len`).
pub fn sendmmsg(fd: BorrowedFd<'_>, msgs: &[OutMsg<'_>], flags: i32) -> io::Result<Vec<u32>> {
    let raws = msgs.iter().map(raw_msg).collect::<io::Result<Vec<_>>>()?;
    let mut vec: Vec<libc::mmsghdr> = raws
        .iter()
        .map(|r| libc::mmsghdr {
            msg_hdr: r.hdr,
            msg_len: 0,
        })
        .collect();
    let vlen = libc::c_uint::try_from(vec.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `vec` holds `vlen` initialised mmsghdr whose pointers refer to
    // slices of `msgs` and iovecs boxed in `raws`, all alive for the call;
    // the kernel writes only the `msg_len` fields of `vec`.
    let ret = unsafe { libc::sendmmsg(fd.as_raw_fd(), vec.as_mut_ptr(), vlen, flags as _) };
    let n = cvt(ret)? as usize;
    Ok(vec.iter().take(n).map(|m| m.msg_len).collect())
}

/// `getsockopt(2)` of an `int` option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live locals; the kernel writes at most
    // `len` bytes into `val` and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(val)
}

/// The socket's address family (`SO_DOMAIN`); `ENOTSOCK` if `fd` is not a socket.
pub fn socket_domain(fd: BorrowedFd<'_>) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// The socket's protocol (`SO_PROTOCOL`), e.g. `IPPROTO_TCP`.
pub fn socket_protocol(fd: BorrowedFd<'_>) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
}

/// The socket's local address as raw `sockaddr` bytes (`getsockname(2)`).
pub fn getsockname(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; SOCKADDR_MAX];
    let mut len = SOCKADDR_MAX as libc::socklen_t;
    // SAFETY: `buf` has room for `len` bytes; the kernel writes at most that
    // many and stores the full address length in `len`.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) })?;
    Ok(buf[..(len as usize).min(SOCKADDR_MAX)].to_vec())
}

/// The socket's peer address as raw `sockaddr` bytes (`getpeername(2)`).
pub fn getpeername(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; SOCKADDR_MAX];
    let mut len = SOCKADDR_MAX as libc::socklen_t;
    // SAFETY: as in `getsockname`.
    cvt(unsafe { libc::getpeername(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) })?;
    Ok(buf[..(len as usize).min(SOCKADDR_MAX)].to_vec())
}

/// The file status flags of the open file description (`fcntl(F_GETFL)`),
/// e.g. to see `O_NONBLOCK`.
pub fn status_flags(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// Whether `fd` is readable within `timeout_ms` (`poll(2)`); for a pidfd,
/// readable means the process has exited.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one live pollfd and we pass a count of 1.
    let n = cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
}

#[cfg(feature = "internals")]
/// A TCP listener on `addr` with an accept queue of `backlog` (std's
/// `TcpListener::bind` always asks for 128).
pub fn listen_tcp(addr: std::net::SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket takes integers; the result is checked below.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = encode_sockaddr(addr);
    bind(std::os::fd::AsFd::as_fd(&fd), &raw)?;
    // SAFETY: listen takes an fd we own and an integer.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(std::net::TcpListener::from(fd))
}

/// The raw `sockaddr_in` / `sockaddr_in6` bytes of `addr`.
pub fn encode_sockaddr(addr: std::net::SocketAddr) -> Vec<u8> {
    match addr {
        std::net::SocketAddr::V4(a) => {
            let mut b = vec![0u8; std::mem::size_of::<libc::sockaddr_in>()];
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            b
        }
        std::net::SocketAddr::V6(a) => {
            let mut b = vec![0u8; std::mem::size_of::<libc::sockaddr_in6>()];
            b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.flowinfo().to_ne_bytes());
            b[8..24].copy_from_slice(&a.ip().octets());
            b[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            b
        }
    }
}

/// `listen(2)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes a descriptor and an integer.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// `shutdown(2)` of both directions: wakes any call blocked on the socket.
pub fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown takes a descriptor and an integer.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) }).map(drop)
}

/// The socket's type (`SO_TYPE`), e.g. `SOCK_STREAM`.
pub fn socket_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)
}

/// `poll(2)` for readability on every fd of `fds`, waiting at most
/// `timeout_ms` (-1: no limit); returns, per fd, whether it is readable (or
/// hung up). `EINTR` is answered as "nothing ready".
pub fn poll_many(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` holds `p.len()` live pollfds, the count we pass.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(vec![false; p.len()]);
        }
        return Err(e);
    }
    Ok(p.iter()
        .map(|x| x.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
}

/// Credentials a helper thread takes on before making a call for a
/// program (see [`run_as`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    /// Real, effective and saved user ids.
    pub uids: [u32; 3],
    /// Real, effective and saved group ids.
    pub gids: [u32; 3],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective, permitted and inheritable capability sets.
    pub caps: [u64; 3],
}

/// What a helper thread of [`run_as`] takes on.
#[derive(Debug, Default)]
pub struct ThreadSetup<'a> {
    /// These credentials (per thread: raw `setgroups`, `setresgid`,
    /// `setresuid`, `capset`), if given.
    pub creds: Option<&'a Creds>,
    /// This working directory and umask (after `unshare(CLONE_FS)`), if given.
    pub fs: Option<(BorrowedFd<'a>, u32)>,
}

fn take_on(setup: &ThreadSetup<'_>) -> io::Result<()> {
    if let Some((dir, umask)) = setup.fs {
        // SAFETY: unshare(CLONE_FS) gives this thread a private copy of
        // the root, working directory and umask; it touches no memory.
        cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
        // SAFETY: fchdir on a directory fd borrowed for the call.
        cvt(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
        // SAFETY: umask takes an integer and cannot fail.
        unsafe { libc::umask(umask as libc::mode_t) };
    }
    let Some(c) = setup.creds else {
        return Ok(());
    };
    // Raw system calls: the libc wrappers would change every thread of the
    // supervisor; the kernel changes only the calling thread.
    // SAFETY: `c.groups` is a live slice of `len` gid_t.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            c.groups.len() as libc::c_long,
            c.groups.as_ptr(),
        )
    })?;
    // SAFETY: setresgid/setresuid take integers.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresgid, c.gids[0], c.gids[1], c.gids[2]) })?;
    // SAFETY: as above.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, c.uids[0], c.uids[1], c.uids[2]) })?;
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let half = |v: u64, hi: bool| if hi { (v >> 32) as u32 } else { v as u32 };
    let data = [false, true].map(|hi| CapData {
        effective: half(c.caps[0], hi),
        permitted: half(c.caps[1], hi),
        inheritable: half(c.caps[2], hi),
    });
    let mut hdr = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: `hdr` and the two `data` entries are live, laid out as the
    // kernel's version 3 structures; pid 0 is the calling thread.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) }).map(drop)
}

/// Runs `f` in a short-lived thread set up as `setup` says, and returns its
/// result; the supervisor's own threads keep their credentials, directory
/// and umask.
pub fn run_as<T: Send>(
    setup: &ThreadSetup<'_>,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || {
            take_on(setup)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::from_raw_os_error(libc::EIO)))
    })
}
