//! The `#!` line of a script, parsed as the kernel parses it (shared by
//! path denial, which checks a script's interpreters, and argv safety,
//! which checks that the interpreter chain it decided on is what ran).

use crate::action::Errno;

/// The interpreter a `#!` header names, as the kernel parses it (`None`
/// for a file that is not a script; `Err(ENOEXEC)` for a `#!` line the
/// kernel refuses).
pub(crate) fn interpreter(header: &[u8]) -> Result<Option<&[u8]>, Errno> {
    let Some(rest) = header.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let spacetab = |b: &u8| *b == b' ' || *b == b'\t';
    let line = match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => &rest[..nl],
        None => {
            // No end of line within the buffer: the name must end before it.
            let start = rest
                .iter()
                .position(|b| !spacetab(b))
                .ok_or(Errno::of(libc::ENOEXEC))?;
            if !rest[start..].iter().any(|&b| spacetab(&b) || b == 0) {
                return Err(Errno::of(libc::ENOEXEC));
            }
            rest
        }
    };
    let start = line
        .iter()
        .position(|b| !spacetab(b))
        .ok_or(Errno::of(libc::ENOEXEC))?;
    let name = &line[start..];
    let end = name
        .iter()
        .position(|&b| spacetab(&b) || b == 0)
        .unwrap_or(name.len());
    if end == 0 {
        return Err(Errno::of(libc::ENOEXEC));
    }
    Ok(Some(&name[..end]))
}

/// A `#!` line: the interpreter as written, and its argument if any.
pub(crate) type Shebang<'a> = (&'a [u8], Option<&'a [u8]>);

/// The interpreter of a `#!` header and its optional argument (the rest of
/// the line, blanks around it removed, up to a NUL), as the kernel passes
/// them to the interpreter.
pub(crate) fn interpreter_and_arg(header: &[u8]) -> Result<Option<Shebang<'_>>, Errno> {
    let Some(name) = interpreter(header)? else {
        return Ok(None);
    };
    // `name` lies inside `header`: what follows it on the line.
    let end = name.as_ptr() as usize - header.as_ptr() as usize + name.len();
    let rest = &header[end..];
    if rest.first().is_none_or(|&b| b == 0 || b == b'\n') {
        return Ok(Some((name, None)));
    }
    let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let Some(start) = line.iter().position(|b| !blank(b)) else {
        return Ok(Some((name, None)));
    };
    let stop = line
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    let arg = &line[start..stop];
    let arg = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
    Ok(Some((name, (!arg.is_empty()).then_some(arg))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_is_the_rest_of_the_line() {
        let p = |h: &[u8]| {
            interpreter_and_arg(h)
                .unwrap()
                .map(|(n, a)| (n.to_vec(), a.map(<[u8]>::to_vec)))
        };
        assert_eq!(p(b"#!/bin/sh\n"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(
            p(b"#! /usr/bin/env  python3 -u \t\nx"),
            Some((b"/usr/bin/env".to_vec(), Some(b"python3 -u".to_vec())))
        );
        assert_eq!(p(b"#!/bin/sh   \n"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(p(b"ELF"), None);
    }
}
