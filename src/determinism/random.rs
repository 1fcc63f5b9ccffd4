//! `--random-seed`: a deterministic stream in place of the kernel's
//! randomness.
//!
//! The stream is ChaCha20 keyed by the seed (expanded with SplitMix64),
//! with one 64-bit nonce per stream: `getrandom` draws from stream 0,
//! under one lock per sandbox, so a single-threaded program gets the same
//! bytes in the same order on every run; each open of `/dev/urandom` or
//! `/dev/random` gets a pipe fed by a thread of its own from the next
//! stream (1, 2, ...), in the order of the opens. Nothing here is secret:
//! a run with a seed must not make keys.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::action::{Errno, NotifAction};
use crate::arch::Arch;
use crate::error::Result;
use crate::handler::HandlerCtx;
use crate::supervisor::enforcement::Install;

use super::files::VirtualFiles;

/// Most bytes one `getrandom` returns (a larger request is answered in
/// part, as the kernel may: callers loop).
const GETRANDOM_MAX: usize = 1 << 20;
/// `GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE`.
const GRND_VALID: u64 = 0x7;
const GRND_RANDOM_INSECURE: u64 = 0x6;
/// `/dev/random` and `/dev/urandom` (major 1, minors 8 and 9).
const DEV_RANDOM: u64 = (1 << 8) | 8;
const DEV_URANDOM: u64 = (1 << 8) | 9;

/// One supervisor's random state: a service, found by the handlers.
pub(crate) struct RandomState {
    seed: u64,
    /// Stream 0, for `getrandom`.
    main: Mutex<ChaCha>,
    /// The next stream an open of a random device gets.
    next_stream: AtomicU64,
}

impl RandomState {
    pub(crate) fn new(seed: u64) -> Self {
        RandomState {
            seed,
            main: Mutex::new(ChaCha::new(seed, 0)),
            next_stream: AtomicU64::new(1),
        }
    }
}

/// Traps `getrandom` and serves the random devices.
pub(crate) fn install(install: &mut Install<'_>, files: &mut VirtualFiles) -> Result<()> {
    if let Some(nr) = crate::syscalls::number(Arch::native(), "getrandom") {
        install.builtin(nr, Arc::new(getrandom))?;
    }
    let serve: super::files::Serve = Arc::new(open_device);
    files.device(DEV_URANDOM, Arc::clone(&serve));
    files.device(DEV_RANDOM, serve);
    Ok(())
}

fn state<'a>(cx: &HandlerCtx<'a>) -> std::result::Result<&'a RandomState, Errno> {
    // Started with the feature: missing only if the supervisor failed to
    // start it (fail closed).
    cx.service::<super::Run>()
        .and_then(|r| r.random.as_ref())
        .ok_or(Errno::of(libc::EIO))
}

fn getrandom(cx: &HandlerCtx<'_>) -> NotifAction {
    let flags = cx.arg(2);
    if flags & !GRND_VALID != 0 || flags & GRND_RANDOM_INSECURE == GRND_RANDOM_INSECURE {
        return NotifAction::Errno(libc::EINVAL);
    }
    let len = (cx.arg(1) as usize).min(GETRANDOM_MAX);
    if len == 0 {
        return NotifAction::ReturnValue(0);
    }
    let st = match state(cx) {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    let mut buf = vec![0u8; len];
    st.main.lock().fill(&mut buf);
    match cx.write_mem(cx.arg(0), &buf) {
        Ok(()) => NotifAction::ReturnValue(len as i64),
        Err(_) => NotifAction::Errno(libc::EFAULT),
    }
}

/// A pipe whose read end the open gets, fed from a new stream by a thread
/// until the read end is closed everywhere.
fn open_device(cx: &HandlerCtx<'_>) -> std::result::Result<OwnedFd, Errno> {
    let st = state(cx)?;
    let stream = st.next_stream.fetch_add(1, Ordering::Relaxed);
    let mut gen = ChaCha::new(st.seed, stream);
    let (reader, mut writer) = std::io::pipe().map_err(|e| Errno::from_io(&e))?;
    std::thread::Builder::new()
        .name("unotify-random".into())
        .spawn(move || {
            // A write to a pipe without readers raises SIGPIPE: blocked in
            // this thread, the write fails with EPIPE instead.
            let mut pipe = crate::sys::signals::SigSet::empty();
            if pipe.add(libc::SIGPIPE).is_err() || crate::sys::signals::block(&pipe).is_err() {
                return;
            }
            let mut buf = [0u8; 16 * 1024];
            loop {
                gen.fill(&mut buf);
                if writer.write_all(&buf).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Errno::from_io(&e))?;
    Ok(reader.into())
}

/// ChaCha20 (RFC 8439's block function) as a byte stream.
pub(crate) struct ChaCha {
    key: [u32; 8],
    nonce: u64,
    counter: u64,
    block: [u8; 64],
    /// Bytes of `block` already given out.
    used: usize,
}

impl ChaCha {
    /// The stream `nonce` of the key derived from `seed`.
    pub(crate) fn new(seed: u64, nonce: u64) -> Self {
        let mut sm = seed;
        let mut key = [0u32; 8];
        for pair in key.chunks_mut(2) {
            let w = splitmix64(&mut sm);
            pair[0] = w as u32;
            pair[1] = (w >> 32) as u32;
        }
        ChaCha {
            key,
            nonce,
            counter: 0,
            block: [0; 64],
            used: 64,
        }
    }

    /// Fills `out` with the next bytes of the stream.
    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            if self.used == 64 {
                self.block = self.next_block();
                self.used = 0;
            }
            let n = (64 - self.used).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.block[self.used..self.used + n]);
            self.used += n;
            done += n;
        }
    }

    fn next_block(&mut self) -> [u8; 64] {
        const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
        let mut s = [0u32; 16];
        s[..4].copy_from_slice(&SIGMA);
        s[4..12].copy_from_slice(&self.key);
        s[12] = self.counter as u32;
        s[13] = (self.counter >> 32) as u32;
        s[14] = self.nonce as u32;
        s[15] = (self.nonce >> 32) as u32;
        self.counter = self.counter.wrapping_add(1);
        let mut w = s;
        fn qr(w: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
            w[a] = w[a].wrapping_add(w[b]);
            w[d] = (w[d] ^ w[a]).rotate_left(16);
            w[c] = w[c].wrapping_add(w[d]);
            w[b] = (w[b] ^ w[c]).rotate_left(12);
            w[a] = w[a].wrapping_add(w[b]);
            w[d] = (w[d] ^ w[a]).rotate_left(8);
            w[c] = w[c].wrapping_add(w[d]);
            w[b] = (w[b] ^ w[c]).rotate_left(7);
        }
        for _ in 0..10 {
            qr(&mut w, 0, 4, 8, 12);
            qr(&mut w, 1, 5, 9, 13);
            qr(&mut w, 2, 6, 10, 14);
            qr(&mut w, 3, 7, 11, 15);
            qr(&mut w, 0, 5, 10, 15);
            qr(&mut w, 1, 6, 11, 12);
            qr(&mut w, 2, 7, 8, 13);
            qr(&mut w, 3, 4, 9, 14);
        }
        let mut out = [0u8; 64];
        for i in 0..16 {
            out[i * 4..i * 4 + 4].copy_from_slice(&w[i].wrapping_add(s[i]).to_le_bytes());
        }
        out
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 2.3.2's block function vector (key 00..1f, counter 1,
    /// nonce 09 00 00 00 4a 00 00 00: our 64-bit counter and nonce words
    /// laid out as the RFC's 32-bit counter and 96-bit nonce).
    #[test]
    fn chacha20_block_vector() {
        let mut c = ChaCha::new(0, 0);
        for (i, k) in c.key.iter_mut().enumerate() {
            let b = (i * 4) as u32;
            *k = u32::from_le_bytes([b as u8, b as u8 + 1, b as u8 + 2, b as u8 + 3]);
        }
        c.counter = 1 | (0x0900_0000u64 << 32);
        c.nonce = 0x4a00_0000;
        let block = c.next_block();
        assert_eq!(
            &block[..16],
            &[
                0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15, 0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20,
                0x71, 0xc4
            ]
        );
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |seed, nonce| {
            let mut c = ChaCha::new(seed, nonce);
            let mut b = [0u8; 100];
            c.fill(&mut b[..3]);
            c.fill(&mut b[3..]);
            b
        };
        assert_eq!(draw(7, 0), draw(7, 0));
        assert_ne!(draw(7, 0), draw(8, 0));
        assert_ne!(draw(7, 0), draw(7, 1));
        let mut whole = [0u8; 100];
        ChaCha::new(7, 0).fill(&mut whole);
        assert_eq!(whole, draw(7, 0));
    }
}
