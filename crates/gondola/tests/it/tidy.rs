//! Tidiness as a test: every Rust file says what it is in a `//!` line, and nothing meant for a
//! debugging session reaches `main`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            // npm's installs (the web app's libraries) are not Gondola's sources.
            if path.file_name().is_some_and(|name| name == "node_modules") {
                continue;
            }
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_source_file_has_a_module_doc_and_no_debugging_leftovers() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates dir");
    let mut files = Vec::new();
    rust_files(crates, &mut files);
    assert!(files.len() > 20, "found the sources");
    let forbidden = [
        concat!("db", "g!("),
        concat!("to", "do!("),
        concat!("FIX", "ME"),
        concat!("unimpl", "emented!("),
    ];
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        if !text.starts_with("//!") {
            problems.push(format!(
                "{}: does not start with a //! doc line",
                file.display()
            ));
        }
        for word in forbidden {
            if text.contains(word) {
                problems.push(format!("{}: contains {word}", file.display()));
            }
        }
        if text.contains("unsafe ") && !text.contains("// SAFETY:") {
            problems.push(format!(
                "{}: unsafe code without a SAFETY comment",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
