//! What the kernel runs for an executable besides the file itself: the
//! interpreter on a script's `#!` line, and the ELF interpreter an ELF
//! file names in its `PT_INTERP` program header (the dynamic loader),
//! each parsed as the kernel parses it. Shared by path denial, which
//! checks these interpreters like the executable, and argv safety, which
//! pins them and checks at the exec event that they are what ran.

use std::os::unix::fs::FileExt;

use crate::action::Errno;

/// Bytes of an executable the kernel parses a `#!` line in
/// (`BINPRM_BUF_SIZE`).
pub(crate) const SCRIPT_HEADER: usize = 256;

/// Bytes read from the start of an executable in one go: the `#!` line,
/// and, for an ELF file, its header, program headers and `PT_INTERP`
/// name as linkers lay them out (so one read serves them all).
pub(crate) const HEAD: usize = 4096;

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

/// Reads the first [`HEAD`] bytes of `file` (fewer for a shorter file).
pub(crate) fn read_head(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; HEAD];
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// The ELF interpreter `file` names, as the kernel's ELF loader finds it:
/// the first `PT_INTERP` program header of an `ET_EXEC` or `ET_DYN` file
/// (either class, either byte order), its name up to the first NUL.
/// `head` is the start of the file ([`read_head`]); bytes beyond it are
/// read from `file`. `None`: not an ELF executable, no `PT_INTERP`, or a
/// file the kernel refuses to load (`ENOEXEC`); a caller that must know
/// what was loaded checks the new image itself.
pub(crate) fn elf_interpreter(head: &[u8], file: &std::fs::File) -> Option<Vec<u8>> {
    if head.len() < 52 || head[..4] != *b"\x7fELF" {
        return None;
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let num = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate() {
            let shift = if little { i } else { b.len() - 1 - i };
            v |= (x as u64) << (8 * shift);
        }
        v
    };
    // Field offsets of the ELF header and of one program header, by class.
    if wide && head.len() < 64 {
        return None;
    }
    let (phoff, phentsize, phnum, ent) = if wide {
        (
            num(&head[32..40]),
            num(&head[54..56]),
            num(&head[56..58]),
            56,
        )
    } else {
        (
            num(&head[28..32]),
            num(&head[42..44]),
            num(&head[44..46]),
            32,
        )
    };
    let e_type = num(&head[16..18]);
    // ET_EXEC, ET_DYN; and the kernel loads only its own program header size.
    if !(e_type == 2 || e_type == 3) || phentsize != ent || phnum == 0 || phnum * ent > 65536 {
        return None;
    }
    let table_len = (phnum * ent) as usize;
    let owned;
    let table: &[u8] = match usize::try_from(phoff)
        .ok()
        .and_then(|o| head.get(o..o.checked_add(table_len)?))
    {
        Some(t) => t,
        None => {
            let mut t = vec![0u8; table_len];
            file.read_exact_at(&mut t, phoff).ok()?;
            owned = t;
            &owned
        }
    };
    let ph = table
        .chunks_exact(ent as usize)
        .find(|ph| num(&ph[..4]) == 3)?;
    let (off, size) = if wide {
        (num(&ph[8..16]), num(&ph[32..40]))
    } else {
        (num(&ph[4..8]), num(&ph[16..20]))
    };
    if !(2..=libc::PATH_MAX as u64).contains(&size) {
        return None;
    }
    let owned_name;
    let name: &[u8] = match usize::try_from(off)
        .ok()
        .and_then(|o| head.get(o..o.checked_add(size as usize)?))
    {
        Some(n) => n,
        None => {
            let mut n = vec![0u8; size as usize];
            file.read_exact_at(&mut n, off).ok()?;
            owned_name = n;
            &owned_name
        }
    };
    // The kernel wants the name NUL-terminated within the header's size.
    if name.last() != Some(&0) {
        return None;
    }
    let end = name.iter().position(|&b| b == 0)?;
    if end == 0 {
        return None;
    }
    Some(name[..end].to_vec())
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

    fn interp_of(path: &str) -> Option<Vec<u8>> {
        let f = std::fs::File::open(path).expect(path);
        elf_interpreter(&read_head(&f).expect("read"), &f)
    }

    #[test]
    fn reads_the_interpreter_of_a_dynamic_program() {
        // The test binary itself is dynamic: the system's loader.
        let me = std::env::current_exe().expect("exe");
        let name = interp_of(me.to_str().unwrap()).expect("a PT_INTERP");
        assert!(
            name.starts_with(b"/"),
            "{:?}",
            String::from_utf8_lossy(&name)
        );
        use std::os::unix::ffi::OsStrExt;
        assert!(std::path::Path::new(std::ffi::OsStr::from_bytes(&name)).exists());
        // The loader itself names none.
        assert_eq!(interp_of(&String::from_utf8(name).unwrap()), None);
        assert_eq!(interp_of("/etc/passwd"), None);
    }

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
