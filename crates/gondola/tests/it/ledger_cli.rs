//! `gondola ledger verify|export` on a journal written by the real store.

use std::num::NonZeroU64;
use std::process::Command;

use ledger::{Asset, GenesisConfig, Op, UNITS_PER_TOKEN};
use ledger_store::{Store, StoreOptions, Submission};
use wallet::{Domain, Scheme, Wallet};

use crate::support::binary;

/// Genesis, then transfers from the operator to users and back.
const OPERATIONS: u64 = 60;
const GENESIS_SECONDS: u64 = 1_750_000_000;

/// Writes a journal of `OPERATIONS` operations, each signed as the gateway signs them (EIP-712
/// over the ledger's domain, with the signer's nonce), except that the record at
/// `bad_nonce_at` (if any) carries a signature over the wrong nonce.
fn write_journal(data_dir: &std::path::Path, bad_nonce_at: Option<u64>) {
    let options = StoreOptions {
        create_if_missing: true,
        checkpoint_interval_records: NonZeroU64::new(1_000).expect("non-zero"),
    };
    let (mut store, _recovery) =
        Store::open(&data_dir.join("ledger"), options).expect("a new store");
    let operator = Wallet::generate();
    let users: Vec<Wallet> = (0..3).map(|_| Wallet::generate()).collect();
    let admin = operator.address();
    let domain = Domain::for_ledger(admin, GENESIS_SECONDS);
    let mut nonces = std::collections::HashMap::new();
    let mut submissions = Vec::new();
    for index in 0..OPERATIONS {
        let now = GENESIS_SECONDS + index;
        let (signer, op) = match index {
            0 => (
                &operator,
                Op::Genesis(Box::new(GenesisConfig::venice(
                    admin,
                    admin,
                    admin,
                    admin,
                    admin,
                    Vec::new(),
                ))),
            ),
            // The first half funds the users; the second half sends some back.
            index if index < OPERATIONS / 2 => (
                &operator,
                Op::Transfer {
                    asset: Asset::Vvv,
                    to: users[index as usize % users.len()].address(),
                    amount_units: 10 * UNITS_PER_TOKEN,
                },
            ),
            index => (
                &users[index as usize % users.len()],
                Op::Transfer {
                    asset: Asset::Vvv,
                    to: admin,
                    amount_units: UNITS_PER_TOKEN,
                },
            ),
        };
        let nonce = nonces.entry(signer.address()).or_insert(0u64);
        let signed_nonce = if bad_nonce_at == Some(index) {
            *nonce + 7
        } else {
            *nonce
        };
        let authorization =
            wallet::sign(signer, &domain, &op, signed_nonce, now + 60, Scheme::Eip712);
        *nonce += 1;
        submissions.push(Submission {
            now_seconds: now,
            signer: signer.address(),
            signature: authorization.encode(),
            op,
        });
    }
    for result in store.submit_batch(submissions).expect("durable") {
        result.expect("every operation is accepted");
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
    write_journal(dir.path(), None);
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
    assert_eq!(report["signatures_checked"], OPERATIONS);
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

#[test]
fn verify_finds_a_record_whose_signature_does_not_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Record 40 (sequence 41), a user's transfer, is signed over the wrong nonce: its hashes
    // and its operation are sound, only the signature is not.
    write_journal(dir.path(), Some(40));
    let data = dir.path().display().to_string();
    let verified = gondola(&["ledger", "verify", "--data-dir", &data]);
    assert!(!verified.status.success());
    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(stderr.contains("signatures"), "{stderr}");
    assert!(stderr.contains("journal record 41"), "{stderr}");
    assert!(stderr.contains("nonce"), "{stderr}");
}
