//! `unotify run --profile FILE`: `run`'s flags written in a TOML file, one
//! key per long flag (`net-allow = ["127.0.0.1:8080"]`, `max-memory =
//! "512M"`, `keep-caps = true`). The file's flags go first, so flags on the
//! command line add to a list (`--deny-path`) and override a single value
//! (`-m`). Errors name the file, the line and the key. Used by `cli`'s
//! `parse_from`, before clap parses the command line.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use clap::CommandFactory;

/// `args` with the flags of every `--profile FILE` of `run` put in front
/// of the command line's (after `run`); the `--profile` flags stay, for
/// clap to accept. An error is the message to print.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    if args.get(1).is_none_or(|a| a != "run") {
        return Ok(args);
    }
    let mut files = Vec::new();
    let mut i = 2;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--profile" {
            if let Some(f) = args.get(i + 1) {
                files.push(std::path::PathBuf::from(f));
            }
            i += 2;
            continue;
        }
        if let Some(f) = args[i].as_bytes().strip_prefix(b"--profile=") {
            // The file's exact bytes.
            files.push(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(f)));
        } else if !a.starts_with('-') {
            // The command starts here (no `--`).
            break;
        }
        i += 1;
    }
    if files.is_empty() {
        return Ok(args);
    }
    let mut from_files = Vec::new();
    for f in &files {
        from_files.extend(flags_of(f)?);
    }
    let mut out = args[..2].to_vec();
    out.extend(from_files);
    out.extend_from_slice(&args[2..]);
    Ok(out)
}

/// The long flags of `run` a profile may set.
fn run_flags() -> Vec<String> {
    let cmd = crate::cli::Cli::command();
    let run = cmd.find_subcommand("run").expect("run subcommand");
    run.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .filter(|l| l != "profile")
        .collect()
}

/// The line (1-based) where `key` is set in `text`, if found.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

/// The command-line flags `file` stands for, each checked by clap alone
/// (so that an error names the file, line and key).
fn flags_of(file: &Path) -> Result<Vec<OsString>, String> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the profile {name}: {e}; check the path"))?;
    flags_in(&name, &text)
}

/// The command-line flags the profile `text` stands for (`name` says
/// where it is from, in errors), as `run --profile` takes them; `learn`
/// checks the profile it wrote with it.
pub fn flags_in(name: &str, text: &str) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let at = line.map_or(String::new(), |l| format!(", line {l}"));
        format!("profile {name}{at}: {}", e.message())
    })?;
    let known = run_flags();
    let mut out = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let line = line_of(text, key);
        let here = format!("profile {name}, line {line}, key `{key}`");
        if !known.contains(&flag) {
            let near = crate::cli::did_you_mean(&flag, known.iter().map(String::as_str))
                .map_or(String::new(), |n| format!("; did you mean `{n}`?"));
            return Err(format!(
                "{here}: not a flag of `unotify run`{near} (keys are its long flags, like net-allow = [\"127.0.0.1:8080\"])"
            ));
        }
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        let mut these = Vec::new();
        for v in values {
            match v {
                toml::Value::Boolean(true) => these.push(OsString::from(format!("--{flag}"))),
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => these.push(OsString::from(format!("--{flag}={s}"))),
                toml::Value::Integer(n) => these.push(OsString::from(format!("--{flag}={n}"))),
                other => {
                    return Err(format!(
                        "{here}: a {} is not a value of --{flag}; give a string, a number, true, or a list of them",
                        other.type_str()
                    ))
                }
            }
        }
        // Each key checked alone, so that clap's message can be placed.
        let mut probe: Vec<OsString> = vec!["unotify".into(), "run".into()];
        probe.extend(these.iter().cloned());
        probe.extend(["--".into(), "true".into()]);
        if let Err(e) = crate::cli::Cli::try_parse_from_raw(probe) {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            let first = text.lines().next().unwrap_or(text);
            return Err(format!("{here}: {first}"));
        }
        out.extend(these);
    }
    Ok(out)
}
