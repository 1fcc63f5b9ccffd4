//! How the supervisor shows a name that is bytes (a path, an abstract
//! socket name, an argument) in text it prints: trace and `denied:`
//! lines, audit records, error messages, the comments of a profile
//! `unotify learn` writes. Pure formatting; anything may call it (the
//! command too), it calls nothing of the crate.
//!
//! One form everywhere, so that two different names never print the
//! same: valid UTF-8 as it is, except `\` shown as `\\`; every other byte
//! (not UTF-8, or a control character) as `\xNN`. A name that is plain
//! printable text without `\` prints unchanged.

use std::fmt::Write;

/// `b` as text on one line, invalid and control bytes as `\xNN`, `\`
/// as `\\` (see the module documentation).
pub fn bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                // C1 controls: the character, not the byte `\x80`.
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for &x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    out
}

/// `s` as a string literal of both JSON and TOML (a basic string), on
/// one line: `"` and `\` escaped, every control character as `\n`, `\r`,
/// `\t` or `\u00XX`; either format reads it back as `s`.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character is in the BMP: four digits.
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// [`bytes`] of a path.
pub fn path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    bytes(p.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_print_differently() {
        assert_eq!(bytes(b"/tmp/a b/\xc3\xa9"), "/tmp/a b/\u{e9}");
        assert_eq!(bytes(b"a\xffb"), "a\\xffb");
        assert_eq!(bytes(b"a\\xffb"), "a\\\\xffb");
        assert_eq!(bytes("a\u{fffd}b".as_bytes()), "a\u{fffd}b");
        assert_eq!(bytes(b"a\nb\x7f"), "a\\x0ab\\x7f");
        assert_eq!(bytes(b"\xc2\x80\x80"), "\\u{0080}\\x80");
        // Every pair of these distinct names prints differently.
        let names: [&[u8]; 9] = [
            b"a\xff",
            b"a\xfe",
            "a\u{fffd}".as_bytes(),
            b"a\\xff",
            b"a\\\xff",
            b"a\\\\xff",
            b"a\xc3",
            b"a\xc2\x80",
            b"a\x80",
        ];
        for (i, x) in names.iter().enumerate() {
            for y in &names[i + 1..] {
                assert_ne!(bytes(x), bytes(y), "{x:?} and {y:?}");
            }
        }
    }
}
