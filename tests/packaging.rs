//! The package ships what its manifest claims: both licence texts, a
//! changelog, and the command behind a feature a library user can turn off.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn licences_changelog_and_metadata() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains(r#"license = "MIT OR Apache-2.0""#));
    assert!(read("LICENSE-MIT").contains("Permission is hereby granted"));
    assert!(read("LICENSE-APACHE").contains("Apache License"));
    assert!(read("CHANGELOG.md").contains("## [Unreleased]"));
    assert!(manifest.contains("documentation = "));
    for f in ["LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md"] {
        assert!(manifest.contains(&format!("\"{f}\"")), "{f} not in include");
    }
    // The command's dependencies are optional, behind `cli`.
    for dep in ["clap", "env_logger", "clap_complete", "clap_mangen"] {
        let line = manifest
            .lines()
            .find(|l| l.starts_with(&format!("{dep} = ")))
            .unwrap_or_else(|| panic!("{dep} missing"));
        assert!(line.contains("optional = true"), "{line}");
    }
    assert!(read("README.md").contains("default-features = false"));
}
