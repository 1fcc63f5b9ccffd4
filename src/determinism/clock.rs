//! `--time-start`: the program's wall clock starts at a given time and
//! advances in real time.
//!
//! The supervisor keeps one offset per run (the start time minus the real
//! time when the supervisor started). Trapped: `clock_gettime` on
//! `CLOCK_REALTIME`, `CLOCK_REALTIME_COARSE` and `CLOCK_TAI` (the filter
//! lets every other clock through), `gettimeofday`, `time`, and
//! `clock_nanosleep` with `TIMER_ABSTIME` on the wall clocks. The real
//! call is made by the supervisor and the shifted result written back.
//! An absolute sleep is translated to the real deadline and slept on the
//! deferral pool in steps of at most a second: a step that ends before the
//! deadline answers `EINTR`, and the caller (which loops on `EINTR`, as
//! absolute sleeps are written) sleeps on to the same deadline. The vDSO
//! is handled in `vdso`.
//!
//! Not shifted: file times (`stat`, and `utimensat` with `UTIME_NOW`,
//! which the kernel sets from its own clock), absolute `timerfd_settime`
//! and `timer_settime` on the wall clock, `SO_TIMESTAMP`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::action::NotifAction;
use crate::arch::Arch;
use crate::error::Result;
use crate::filter::{ArgCheck, FilterBuilder, SyscallAction};
use crate::handler::HandlerCtx;
use crate::supervisor::enforcement::Install;
use crate::sys::host::clock_gettime;

const CLOCK_REALTIME: u64 = 0;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_TAI: u64 = 11;
const TIMER_ABSTIME: u64 = 1;
const NS: i128 = 1_000_000_000;
/// The longest step of a translated absolute sleep.
const SLEEP_STEP: Duration = Duration::from_secs(1);

/// Filter rules: the wall clocks of `clock_gettime` and absolute
/// `clock_nanosleep` go to the supervisor, other clocks run.
pub(crate) fn rules(filter: &mut FilterBuilder) -> Result<()> {
    let arch = Arch::native();
    let clock = |c: u64| ArgCheck::new(0, 0xffff_ffff, c);
    if let Some(nr) = crate::syscalls::number(arch, "clock_gettime") {
        if filter.is_denied(nr).is_none() {
            let cases = [CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_TAI]
                .map(|c| (vec![clock(c)], SyscallAction::Notify))
                .to_vec();
            filter.rule(nr, cases, SyscallAction::Allow)?;
        }
    }
    if let Some(nr) = crate::syscalls::number(arch, "clock_nanosleep") {
        if filter.is_denied(nr).is_none() {
            let abs = ArgCheck::new(1, TIMER_ABSTIME, TIMER_ABSTIME);
            let cases = [CLOCK_REALTIME, CLOCK_TAI]
                .map(|c| (vec![clock(c), abs], SyscallAction::Notify))
                .to_vec();
            filter.rule(nr, cases, SyscallAction::Allow)?;
        }
    }
    // They report the real wall clock (`struct timex`'s `time`), even as
    // a read (`modes` 0, what `ntp_gettime` does): refused.
    filter.refuse_undecided(&["adjtimex", "clock_adjtime"], libc::EPERM)?;
    Ok(())
}

/// The handlers.
pub(crate) fn install(install: &mut Install<'_>) -> Result<()> {
    let arch = Arch::native();
    // (A call the caller denies keeps its denial: `builtin` skips it.)
    let mut add = |name: &str, h: Arc<dyn crate::handler::Handler>| -> Result<()> {
        match crate::syscalls::number(arch, name) {
            Some(nr) => install.builtin(nr, h),
            None => Ok(()),
        }
    };
    add("clock_gettime", Arc::new(gettime))?;
    add("gettimeofday", Arc::new(gettimeofday))?;
    add("time", Arc::new(time))?;
    add("clock_nanosleep", Arc::new(nanosleep_abs))?;
    Ok(())
}

/// The run's offset, in nanoseconds.
fn offset(cx: &HandlerCtx<'_>) -> Option<i128> {
    cx.service::<super::Run>().and_then(|r| r.clock_offset_ns)
}

/// The virtual time of `clock` as (seconds, nanoseconds).
fn now(cx: &HandlerCtx<'_>, clock: libc::clockid_t) -> std::result::Result<(i64, i64), i32> {
    let off = offset(cx).ok_or(libc::EIO)?;
    let (s, n) = clock_gettime(clock).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))?;
    let t = i128::from(s) * NS + i128::from(n) + off;
    Ok((t.div_euclid(NS) as i64, t.rem_euclid(NS) as i64))
}

fn write_pair(cx: &HandlerCtx<'_>, addr: u64, a: i64, b: i64) -> std::result::Result<(), i32> {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_ne_bytes());
    buf[8..].copy_from_slice(&b.to_ne_bytes());
    cx.write_mem(addr, &buf).map_err(|_| libc::EFAULT)
}

fn gettime(cx: &HandlerCtx<'_>) -> NotifAction {
    let clock = cx.arg(0) as u32 as i32;
    match now(cx, clock).and_then(|(s, n)| write_pair(cx, cx.arg(1), s, n)) {
        Ok(()) => NotifAction::ReturnValue(0),
        Err(e) => NotifAction::Errno(e),
    }
}

fn gettimeofday(cx: &HandlerCtx<'_>) -> NotifAction {
    let r = now(cx, libc::CLOCK_REALTIME).and_then(|(s, n)| {
        if cx.arg(0) != 0 {
            write_pair(cx, cx.arg(0), s, n / 1000)?;
        }
        if cx.arg(1) != 0 {
            // `struct timezone`: the kernel's is UTC unless set at boot.
            cx.write_mem(cx.arg(1), &[0u8; 8])
                .map_err(|_| libc::EFAULT)?;
        }
        Ok(())
    });
    match r {
        Ok(()) => NotifAction::ReturnValue(0),
        Err(e) => NotifAction::Errno(e),
    }
}

fn time(cx: &HandlerCtx<'_>) -> NotifAction {
    let r = now(cx, libc::CLOCK_REALTIME).and_then(|(s, _)| {
        if cx.arg(0) != 0 {
            cx.write_mem(cx.arg(0), &s.to_ne_bytes())
                .map_err(|_| libc::EFAULT)?;
        }
        Ok(s)
    });
    match r {
        Ok(s) => NotifAction::ReturnValue(s),
        Err(e) => NotifAction::Errno(e),
    }
}

/// `clock_nanosleep(clock, TIMER_ABSTIME, req, _)` on a wall clock: the
/// deadline, read once, is a virtual time.
fn nanosleep_abs(cx: &HandlerCtx<'_>) -> NotifAction {
    let Some(off) = offset(cx) else {
        return NotifAction::Errno(libc::EIO);
    };
    let clock = cx.arg(0) as u32 as i32;
    let Ok(req) = cx.read_mem(cx.arg(2), 16) else {
        return NotifAction::Errno(libc::EFAULT);
    };
    let sec = i64::from_ne_bytes(req[..8].try_into().expect("8 bytes"));
    let nsec = i64::from_ne_bytes(req[8..].try_into().expect("8 bytes"));
    if !(0..1_000_000_000).contains(&nsec) || sec < 0 {
        return NotifAction::Errno(libc::EINVAL);
    }
    let (rs, rn) = match clock_gettime(clock) {
        Ok(t) => t,
        Err(e) => return NotifAction::Errno(e.raw_os_error().unwrap_or(libc::EINVAL)),
    };
    let real_deadline = i128::from(sec) * NS + i128::from(nsec) - off;
    let left = real_deadline - (i128::from(rs) * NS + i128::from(rn));
    if left <= 0 {
        return NotifAction::ReturnValue(0);
    }
    let deadline = Instant::now() + Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX));
    NotifAction::defer(move || {
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep((deadline - now).min(SLEEP_STEP));
        }
        if Instant::now() >= deadline {
            NotifAction::ReturnValue(0)
        } else {
            NotifAction::Errno(libc::EINTR)
        }
    })
}

/// Parses `--time-start`: RFC 3339 (`2024-01-02T03:04:05Z`, with an
/// optional fraction and a `Z` or `±hh:mm` offset; a space may replace the
/// `T`) or a Unix timestamp in seconds (`1704164645`, `-86400`, `1.5`).
pub(crate) fn parse(s: &str) -> std::result::Result<std::time::SystemTime, String> {
    let s = s.trim();
    let ns = if s.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.') {
        parse_unix(s)
    } else {
        parse_rfc3339(s)
    }
    .ok_or_else(|| {
        format!("`{s}` is not a time: give RFC 3339 like 2024-01-02T03:04:05Z or a Unix timestamp like 1704164645")
    })?;
    let epoch = std::time::UNIX_EPOCH;
    let d = |n: i128| Duration::from_nanos(u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX));
    Ok(if ns >= 0 {
        epoch + d(ns)
    } else {
        epoch - d(ns)
    })
}

fn parse_unix(s: &str) -> Option<i128> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || int.len() > 12 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = i128::from(int.parse::<i64>().ok()?) * NS + fraction(frac)?;
    Some(if neg { -v } else { v })
}

/// Nanoseconds of a decimal fraction (up to 9 digits).
fn fraction(frac: &str) -> Option<i128> {
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.is_empty() {
        return Some(0);
    }
    Some(i128::from(frac.parse::<i64>().ok()?) * 10i128.pow(9 - frac.len() as u32))
}

fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=days_in(y, mo)).contains(&d) || h > 23 || mi > 59 || se > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        frac = fraction(&r[..n])?;
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = &rest[1..];
            if r.len() != 5 || r.as_bytes()[2] != b':' {
                return None;
            }
            let oh: i64 = r[..2].parse().ok()?;
            let om: i64 = r[3..].parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
    Some(i128::from(secs) * NS + frac)
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> i64 {
        let t = parse(s).unwrap_or_else(|e| panic!("{e}"));
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }

    #[test]
    fn parses_times() {
        assert_eq!(secs("1704164645"), 1_704_164_645);
        assert_eq!(secs("-86400"), -86400);
        assert_eq!(secs("2024-01-02T03:04:05Z"), 1_704_164_645);
        assert_eq!(secs("2024-01-02 05:04:05.25+02:00"), 1_704_164_645);
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2000-02-29T00:00:00Z"), 951_782_400);
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05+2",
            "1.2.3",
            "12-3",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
