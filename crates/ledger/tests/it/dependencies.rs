//! The architecture invariant that makes the ledger pure, checked with `cargo tree`: its normal
//! dependency graph holds no async runtime, HTTP, randomness or serialization crate; in fact it
//! holds nothing but the ledger itself.

use std::process::Command;

/// Crates whose presence would mean the core can do IO, run async code, draw randomness, or
/// turn its state into a format by derivation.
const FORBIDDEN: [&str; 5] = ["tokio", "hyper", "reqwest", "rand", "serde"];

#[test]
fn the_ledger_depends_on_nothing_but_std() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            "ledger",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"ledger"),
        "cargo tree listed the ledger itself:\n{tree}"
    );
    for name in crates.iter().copied() {
        assert!(
            !FORBIDDEN.iter().any(|forbidden| name == *forbidden
                || name.starts_with(&format!("{forbidden}_"))
                || name.starts_with(&format!("{forbidden}-"))),
            "the ledger depends on {name}:\n{tree}"
        );
    }
    assert_eq!(
        crates,
        ["ledger"],
        "the ledger is std-only; a new dependency must do no IO, hold no clock and use no floats, \
         and this test must be updated on purpose:\n{tree}"
    );
}
