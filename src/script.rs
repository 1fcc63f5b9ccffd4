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
