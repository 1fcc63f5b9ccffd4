//! The crate's `use crate::` module graph, read from the sources: the
//! supervisor imports no feature module, its answer core only `sys`,
//! `action` and `notification`, and the graph has no cycle (arrows point
//! one way). `cargo test --test module_graph -- --nocapture` prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Modules that plug into the supervisor through its `Enforcement` trait
/// (and the builder above them).
const FEATURES: &[&str] = &[
    "determinism",
    "freeze",
    "confine",
    "isolation",
    "net",
    "paths",
    "policy",
    "probe",
    "process",
    "sandbox",
];

/// Submodules shown as nodes of their own.
const SPLIT: &[(&str, &str)] = &[
    ("supervisor", "notifier"),
    ("supervisor", "services"),
    ("supervisor", "enforcement"),
    ("supervisor", "handle"),
    // The C ABI: a client of the whole public API, kept below `sys` only
    // because its exported (`no_mangle`) functions count as unsafe code.
    ("sys", "capi"),
];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The node of a module path (`["supervisor", "notifier"]`).
fn node(parts: &[&str]) -> String {
    match parts {
        [top, sub, ..] if SPLIT.contains(&(*top, *sub)) => format!("{top}::{sub}"),
        [top, ..] => (*top).to_owned(),
        [] => String::new(),
    }
}

/// Drops `//` comments (doc comments name modules they do not import).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path in `code`, as `[a, b]` (or `[a]`).
fn crate_paths(code: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let before = rest[..i].chars().next_back();
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `mycrate::` or `$crate::`
        }
        let ident = |s: &str| {
            s.chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .count()
        };
        let n = ident(after);
        if n == 0 {
            continue;
        }
        let first = &after[..n];
        let tail = &after[n..];
        let second = tail
            .strip_prefix("::")
            .map(|t| &t[..ident(t)])
            .filter(|s| !s.is_empty());
        let mut p = vec![first];
        p.extend(second);
        out.push(p);
    }
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] {
            continue;
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let from = node(&parts);
        let code = code_of(&fs::read_to_string(&f).expect("read"));
        let deps = g.entry(from.clone()).or_default();
        for p in crate_paths(&code) {
            let to = node(&p);
            // Items of the crate root (`crate::Error`) are not modules.
            if to != from && !to.is_empty() && to.chars().all(|c| !c.is_uppercase()) {
                deps.insert(to);
            }
        }
    }
    g
}

fn top(n: &str) -> &str {
    n.split("::").next().unwrap_or(n)
}

fn reaches(g: &Graph, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        for d in g.get(&n).into_iter().flatten() {
            if top(d) == to || d == to {
                return true;
            }
            stack.push(d.clone());
        }
    }
    false
}

#[test]
fn the_supervisor_imports_no_feature_and_its_core_is_a_leaf() {
    let g = graph();
    for (n, deps) in &g {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("{n} -> {}", deps.join(" "));
    }
    for (n, deps) in g.iter().filter(|(n, _)| top(n) == "supervisor") {
        for d in deps {
            assert!(
                !FEATURES.contains(&top(d)),
                "{n} imports the feature module {d}: features plug in through supervisor::enforcement"
            );
        }
    }
    let core = &g["supervisor::notifier"];
    for d in core {
        assert!(
            ["sys", "action", "notification"].contains(&d.as_str()),
            "the answer core imports {d}; it may use only sys, action and notification"
        );
    }
    for f in FEATURES {
        assert!(
            !(reaches(&g, "supervisor", f) && reaches(&g, f, "supervisor")),
            "a cycle between the supervisor and {f}"
        );
    }
}

/// A cycle of `g`, if it has one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    if let Some(c) = cycle(&g) {
        panic!("import cycle: {}", c.join(" -> "));
    }
    let mut with_one = g.clone();
    with_one
        .entry("supervisor::notifier".into())
        .or_default()
        .insert("handler".into());
    assert!(cycle(&with_one).is_some(), "the cycle finder finds one");
}

#[test]
fn the_graph_reader_sees_imports() {
    let code =
        code_of("use crate::supervisor::notifier::Notifier; // crate::net\nlet x = $crate::foo;");
    assert_eq!(crate_paths(&code), vec![vec!["supervisor", "notifier"]]);
    assert_eq!(node(&["supervisor", "notifier"]), "supervisor::notifier");
    assert_eq!(node(&["supervisor", "pipeline"]), "supervisor");
    let g = graph();
    assert!(
        g["sandbox"].contains("supervisor"),
        "sandbox uses the supervisor"
    );
}
