//! Reading raw `struct sockaddr` bytes copied from the program, the way the
//! kernel's IPv4/IPv6 code reads them, and rewriting the address in place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::policy::canonical_ip;

/// `sizeof(struct sockaddr_in)`.
pub(crate) const SIN_LEN: usize = 16;
/// The shortest `sockaddr_in6` the kernel accepts (`SIN6_LEN_RFC2133`).
pub(crate) const SIN6_MIN_LEN: usize = 24;

/// Which call the address was given to; `AF_UNSPEC` means different things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `connect`: `AF_UNSPEC` dissolves the association.
    Connect,
    /// `sendto`/`sendmsg`: on IPv4, `AF_UNSPEC` is read as `AF_INET`; on
    /// IPv6, as "no address".
    Send,
    /// `bind`: on IPv4, `AF_UNSPEC` with `INADDR_ANY` is read as `AF_INET`.
    Bind,
}

/// What an address means for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    /// No destination: a disconnect, or a send to the connected peer.
    None,
    /// An IP destination, canonical (IPv4-mapped IPv6 as IPv4).
    Ip(SocketAddr),
    /// The kernel refuses this address with this errno; the supervisor
    /// refuses it too rather than guess.
    Invalid(i32),
}

fn family(b: &[u8]) -> Option<i32> {
    Some(i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?])))
}

fn v4(b: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([b[2], b[3]]);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])), port)
}

fn v6(b: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([b[2], b[3]]);
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[8..24]);
    SocketAddr::new(canonical_ip(IpAddr::V6(Ipv6Addr::from(o))), port)
}

/// Reads `bytes` given to `op` on a socket of family `domain`
/// (`AF_INET`/`AF_INET6`).
pub(crate) fn parse(bytes: &[u8], domain: i32, op: Op) -> Dest {
    let Some(fam) = family(bytes) else {
        return Dest::Invalid(libc::EINVAL);
    };
    match fam {
        libc::AF_INET if bytes.len() < SIN_LEN => Dest::Invalid(libc::EINVAL),
        libc::AF_INET => Dest::Ip(v4(bytes)),
        libc::AF_INET6 if bytes.len() < SIN6_MIN_LEN => Dest::Invalid(libc::EINVAL),
        libc::AF_INET6 => Dest::Ip(v6(bytes)),
        libc::AF_UNSPEC => match op {
            Op::Connect => Dest::None,
            Op::Send if domain == libc::AF_INET6 => Dest::None,
            Op::Send if bytes.len() < SIN_LEN => Dest::Invalid(libc::EINVAL),
            Op::Send => Dest::Ip(v4(bytes)),
            Op::Bind
                if domain == libc::AF_INET && bytes.len() >= SIN_LEN && bytes[4..8] == [0; 4] =>
            {
                Dest::Ip(v4(bytes))
            }
            Op::Bind => Dest::Invalid(libc::EAFNOSUPPORT),
        },
        _ => Dest::Invalid(libc::EAFNOSUPPORT),
    }
}

/// Replaces the IP address in `bytes` (already accepted by [`parse`] as
/// [`Dest::Ip`]) with `ip`, keeping the family and everything else.
pub(crate) fn set_ip(bytes: &mut [u8], ip: IpAddr) {
    match family(bytes) {
        Some(libc::AF_INET6) => {
            let o = match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            bytes[8..24].copy_from_slice(&o);
        }
        _ => {
            if let IpAddr::V4(a) = ip {
                bytes[4..8].copy_from_slice(&a.octets());
            }
        }
    }
}

/// Reads an address returned by `getsockname` (IPv4 or IPv6), if it is one.
pub(crate) fn local(bytes: &[u8]) -> Option<SocketAddr> {
    match family(bytes)? {
        libc::AF_INET if bytes.len() >= SIN_LEN => Some(v4(bytes)),
        libc::AF_INET6 if bytes.len() >= SIN6_MIN_LEN => Some(v6(bytes)),
        _ => None,
    }
}

/// Raw `sockaddr_in`/`sockaddr_in6` bytes for `addr`.
#[cfg(test)]
pub(crate) fn encode(addr: SocketAddr) -> Vec<u8> {
    crate::sys::net::encode_sockaddr(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mapped() {
        let a: SocketAddr = "127.0.0.2:80".parse().unwrap();
        assert_eq!(parse(&encode(a), libc::AF_INET, Op::Connect), Dest::Ip(a));
        let m: SocketAddr = "[::ffff:127.0.0.2]:80".parse().unwrap();
        assert_eq!(parse(&encode(m), libc::AF_INET6, Op::Connect), Dest::Ip(a));
        let mut b = encode(m);
        set_ip(&mut b, "127.0.0.1".parse().unwrap());
        assert_eq!(
            parse(&b, libc::AF_INET6, Op::Send),
            Dest::Ip("127.0.0.1:80".parse().unwrap())
        );
        let mut un = encode(a);
        un[..2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(parse(&un, libc::AF_INET, Op::Connect), Dest::None);
        assert_eq!(parse(&un, libc::AF_INET, Op::Send), Dest::Ip(a));
        assert_eq!(parse(&un, libc::AF_INET6, Op::Send), Dest::None);
        assert_eq!(
            parse(&un[..8], libc::AF_INET, Op::Send),
            Dest::Invalid(libc::EINVAL)
        );
        assert_eq!(
            parse(&[1], libc::AF_INET, Op::Send),
            Dest::Invalid(libc::EINVAL)
        );
        assert_eq!(
            parse(&encode(a)[..15], libc::AF_INET, Op::Connect),
            Dest::Invalid(libc::EINVAL)
        );
    }
}
