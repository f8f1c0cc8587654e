//! `gondola ledger verify|export` on a journal written by the real store.

use std::num::NonZeroU64;
use std::process::Command;

use ledger_store::workload::Workload;
use ledger_store::{Store, StoreOptions};

use crate::support::binary;

const OPERATIONS: u64 = 60;

fn write_journal(data_dir: &std::path::Path) {
    let options = StoreOptions {
        create_if_missing: true,
        checkpoint_interval_records: NonZeroU64::new(1_000).expect("non-zero"),
    };
    let (mut store, _recovery) =
        Store::open(&data_dir.join("ledger"), options).expect("a new store");
    let workload = Workload::default();
    let submissions = (0..OPERATIONS)
        .map(|index| workload.submission(index))
        .collect();
    for result in store.submit_batch(submissions).expect("durable") {
        result.expect("the workload's operations are all accepted");
    }
    store.close().expect("a final checkpoint");
}

fn gondola(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run gondola")
}

#[test]
fn verify_and_export_read_a_journal_and_a_damaged_one_fails_verification() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_journal(dir.path());
    let data = dir.path().display().to_string();

    let verified = gondola(&["ledger", "verify", "--json", "--data-dir", &data]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&verified.stdout).expect("a JSON report");
    assert_eq!(report["records"], OPERATIONS);
    assert_eq!(report["final_state_checked"], true, "{report}");

    let exported = gondola(&["ledger", "export", "--data-dir", &data]);
    assert!(exported.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len() as u64, OPERATIONS);

    // Flip one byte in the middle of the journal: acknowledged data is damaged.
    let journal = dir
        .path()
        .join("ledger")
        .join(ledger_store::JOURNAL_FILE_NAME);
    let mut bytes = std::fs::read(&journal).expect("journal");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&journal, bytes).expect("write");
    let damaged = gondola(&["ledger", "verify", "--data-dir", &data]);
    assert!(!damaged.status.success());
    assert!(
        String::from_utf8_lossy(&damaged.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&damaged.stderr)
    );

    let missing = gondola(&[
        "ledger",
        "verify",
        "--data-dir",
        &dir.path().join("nowhere").display().to_string(),
    ]);
    assert!(!missing.status.success());
}
