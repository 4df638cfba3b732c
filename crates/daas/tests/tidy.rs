//! Tidy checks over the source tree: every Rust file opens with a `//!` comment saying what it
//! owns, and no `todo!()`/`unimplemented!()` sits in non-test code.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    assert!(files.len() > 10, "found only {} Rust files under {}", files.len(), root.display());
    files
}

#[test]
fn every_file_opens_with_a_module_comment() {
    let missing: Vec<_> =
        workspace_files().into_iter().filter(|p| !std::fs::read_to_string(p).unwrap_or_default().trim_start().starts_with("//!")).collect();
    assert!(missing.is_empty(), "these files do not open with a //! comment: {missing:#?}");
}

#[test]
fn no_stubs_in_non_test_code() {
    let bad: Vec<_> = workspace_files()
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "tests"))
        .filter(|p| {
            let s = std::fs::read_to_string(p).unwrap_or_default();
            let code = s.split("#[cfg(test)]").next().unwrap_or_default().to_string();
            code.contains(concat!("todo", "!(")) || code.contains(concat!("unimplemented", "!("))
        })
        .collect();
    assert!(bad.is_empty(), "stubs in non-test code: {bad:#?}");
}
