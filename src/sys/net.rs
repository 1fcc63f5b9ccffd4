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

use super::cvt;

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

/// `bind(2)` with the raw address `addr`.
pub fn bind(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let len = addr_len(addr)?;
    // SAFETY: as in `connect`: the kernel reads `len` bytes of `addr`.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr().cast(), len) }).map(drop)
}

/// `sendto(2)`: sends `data` to `addr` (or to the connected peer for `None`).
pub fn sendto(
    fd: BorrowedFd<'_>,
    data: &[u8],
    flags: i32,
    addr: Option<&[u8]>,
) -> io::Result<usize> {
    let (ptr, len) = match addr {
        Some(a) => (a.as_ptr(), addr_len(a)?),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `data` and `addr` are live slices whose lengths we pass; the
    // kernel only reads them. A null address with length 0 means "no address".
    let ret = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            flags,
            ptr.cast(),
            len,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
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

/// Binds `fd` to the `AF_UNIX` path `name` inside directory `dir`, with
/// file mode bits masked by `umask`, from a short-lived thread that has its
/// own working directory and umask (`unshare(CLONE_FS)`), so neither the
/// supervisor's directory nor its umask changes. `name` is one path
/// component.
pub fn bind_unix_in(
    fd: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &[u8],
    umask: u32,
) -> io::Result<()> {
    if name.is_empty() || name.len() >= 108 || name.contains(&b'/') || name.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut addr = vec![0u8; 2 + name.len() + 1];
    addr[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    addr[2..2 + name.len()].copy_from_slice(name);
    let (sock, dir) = (fd.as_raw_fd(), dir.as_raw_fd());
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<()> {
            // SAFETY: unshare(CLONE_FS) gives this thread a private copy of
            // the root, working directory and umask; it touches no memory.
            cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
            // SAFETY: fchdir on a directory fd borrowed for the scope.
            cvt(unsafe { libc::fchdir(dir) })?;
            // SAFETY: umask takes an integer and cannot fail.
            unsafe { libc::umask(umask as libc::mode_t) };
            let len = addr.len() as libc::socklen_t;
            // SAFETY: `addr` is a live buffer of `len` bytes; the socket fd
            // is borrowed for the scope.
            cvt(unsafe { libc::bind(sock, addr.as_ptr().cast(), len) }).map(drop)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::from_raw_os_error(libc::EIO)))
    })
}
