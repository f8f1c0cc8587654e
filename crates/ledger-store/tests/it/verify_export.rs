//! `verify` and `export`: verify replays to the same root as the store and changes nothing,
//! even on a torn journal; export writes one valid JSON object per record, with exact amounts.

use ledger_store::{Store, export, read_records, verify};

use crate::support::*;

#[test]
fn verify_replays_to_the_stores_state_root_and_changes_nothing() {
    let dir = filled_store(40);
    let (store, _) = Store::open(dir.path(), create_options()).expect("open");
    let state_hash = store.ledger().state_hash();
    let last_record_hash = store.last_record_hash();
    drop(store);
    let report = verify(dir.path()).expect("verify");
    assert_eq!(report.records, 40);
    assert_eq!(report.last_sequence, 40);
    assert_eq!(report.state_hash, state_hash);
    assert_eq!(report.last_record_hash, last_record_hash);
    assert_eq!(report.torn_tail, None);

    // A torn tail is reported, and left for recovery to cut.
    let mut torn = journal_bytes(dir.path());
    torn.extend_from_slice(&[1, 2, 3]);
    write_journal(dir.path(), &torn);
    let report = verify(dir.path()).expect("verify");
    assert_eq!(report.state_hash, state_hash);
    assert_eq!(report.torn_tail.map(|tail| tail.dropped_bytes), Some(3));
    assert!(journal_bytes(dir.path()) == torn, "left as it was");
}

#[test]
fn export_writes_one_json_object_per_record_with_exact_amounts() {
    let dir = filled_store(9);
    let mut hashes = Vec::new();
    read_records(dir.path(), |record| {
        hashes.push(record.record_hash.to_string());
        Ok(())
    })
    .expect("read");
    let mut out = Vec::new();
    let report = export(dir.path(), &mut out).expect("export");
    assert_eq!(report.records, 9);
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9);
    for (index, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        assert_eq!(value["sequence"], index as u64 + 1);
        assert_eq!(value["record_hash"], hashes[index].as_str());
        let previous = if index == 0 {
            "0".repeat(64)
        } else {
            hashes[index - 1].clone()
        };
        assert_eq!(value["previous_record_hash"], previous.as_str());
        assert_eq!(value["signature"].as_str().map(str::len), Some(2 + 2 * 65));
        assert!(
            value["signer"]
                .as_str()
                .is_some_and(|signer| signer.starts_with("0x"))
        );
    }
    let genesis: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
    assert_eq!(genesis["op"]["type"], "genesis");
    assert_eq!(genesis["op"]["points"].as_array().map(Vec::len), Some(256));
    assert_eq!(
        genesis["op"]["treasury"]["vvv_units"], "25000000000000000000000000",
        "u128 amounts are exact decimal strings"
    );
    let transfer: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
    assert_eq!(transfer["op"]["type"], "transfer");
    assert_eq!(transfer["op"]["asset"], "vvv");
    assert_eq!(transfer["op"]["amount_units"], "10000000000000000000");
    let stake: serde_json::Value = serde_json::from_str(lines[2]).expect("json");
    assert_eq!(stake["op"]["type"], "stake");
}
