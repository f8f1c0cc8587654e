//! The submission path: acknowledged operations survive a reopen, rejections are answered but
//! never journaled, a batch is one fsync, limits fail before anything is applied, one process
//! at a time, and checkpoints are written and checked.

use std::num::NonZeroU64;

use ledger::{Address, Op, Rejection};
use ledger_store::{
    CHECKPOINT_FILE_NAME, CheckpointCheck, MAXIMUM_BATCH_OPERATIONS, MAXIMUM_SIGNATURE_BYTES,
    Store, StoreError, StoreOptions, Submission, export, verify,
};

use crate::support::*;

const NOBODY: Address = Address([0x99; 20]);

#[test]
fn acknowledged_operations_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("scratch");
    let (mut store, report) = Store::open(dir.path(), create_options()).expect("create");
    assert_eq!(report.records_replayed, 0);
    assert_eq!(report.checkpoint, CheckpointCheck::Absent);
    let mut receipts = Vec::new();
    for index in 0..20 {
        receipts.push(submit_workload(&mut store, index));
    }
    assert_eq!(
        receipts
            .iter()
            .map(|receipt| receipt.sequence)
            .collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(store.journal_syncs(), 20, "one fsync per single submission");
    let state_hash = store.ledger().state_hash();
    let last_record_hash = store.last_record_hash();
    // Dropped, not closed: what a crash right after the last acknowledgement leaves.
    drop(store);
    let (store, report) = Store::open(dir.path(), create_options()).expect("reopen");
    assert_eq!(report.records_replayed, 20);
    assert_eq!(report.torn_tail, None);
    assert_eq!(store.ledger().state_hash(), state_hash);
    assert_eq!(store.ledger().state_hash(), replayed_state_hash(20));
    assert_eq!(store.last_record_hash(), last_record_hash);
    assert_eq!(
        store.last_time_seconds(),
        WORKLOAD.submission(19).now_seconds
    );
}

#[test]
fn rejections_are_answered_but_not_journaled() {
    let dir = filled_store(5);
    let (mut store, _) = Store::open(dir.path(), create_options()).expect("open");
    let bytes_before = store.journal_bytes();
    let hash_before = store.ledger().state_hash();
    let now = store.last_time_seconds() + 1;
    let result = store
        .submit(now, NOBODY, b"signature", Op::Stake { vvv_units: 1 })
        .expect("store works");
    assert_eq!(result, Err(Rejection::InsufficientVvv));
    assert_eq!(store.journal_bytes(), bytes_before);
    assert_eq!(journal_bytes(dir.path()).len() as u64, bytes_before);
    assert_eq!(store.last_sequence(), 5);
    assert_eq!(store.journal_syncs(), 0, "nothing to make durable");
    assert_eq!(store.ledger().state_hash(), hash_before);
    // The store goes on normally after a rejection.
    assert_eq!(submit_workload(&mut store, 5).sequence, 6);
}

#[test]
fn a_batch_is_applied_in_order_and_committed_with_one_fsync() {
    let dir = tempfile::tempdir().expect("scratch");
    let (mut store, _) = Store::open(dir.path(), create_options()).expect("create");
    let first = WORKLOAD.submission(1);
    let batch = vec![
        WORKLOAD.submission(0),
        // Needs genesis, earlier in the same batch.
        first.clone(),
        Submission {
            now_seconds: first.now_seconds,
            signer: NOBODY,
            signature: vec![1; 65],
            op: Op::Stake { vvv_units: 1 },
        },
        // Needs the transfer two places before it.
        WORKLOAD.submission(2),
    ];
    let results = store.submit_batch(batch).expect("store works");
    assert_eq!(results.len(), 4);
    let sequences: Vec<Option<u64>> = results
        .iter()
        .map(|result| result.as_ref().ok().map(|receipt| receipt.sequence))
        .collect();
    assert_eq!(sequences, vec![Some(1), Some(2), None, Some(3)]);
    assert_eq!(results[2], Err(Rejection::InsufficientVvv));
    assert_eq!(store.journal_syncs(), 1, "one fsync for the whole batch");
    assert_eq!(store.last_sequence(), 3);
    drop(store);
    let (store, report) = Store::open(dir.path(), create_options()).expect("reopen");
    assert_eq!(report.records_replayed, 3);
    assert_eq!(store.ledger().state_hash(), replayed_state_hash(3));

    // A batch of rejections alone, or an empty one, writes nothing and fsyncs nothing.
    let mut store = store;
    let bytes_before = store.journal_bytes();
    let results = store
        .submit_batch(vec![Submission {
            now_seconds: store.last_time_seconds(),
            signer: NOBODY,
            signature: Vec::new(),
            op: Op::ClaimRewards,
        }])
        .expect("store works");
    assert_eq!(results, vec![Err(Rejection::NoRewards)]);
    assert!(store.submit_batch(Vec::new()).expect("empty").is_empty());
    assert_eq!(store.journal_syncs(), 0);
    assert_eq!(store.journal_bytes(), bytes_before);
}

#[test]
fn oversized_submissions_fail_before_anything_is_applied() {
    let dir = filled_store(3);
    let (mut store, _) = Store::open(dir.path(), create_options()).expect("open");
    let hash_before = store.ledger().state_hash();
    let long_signature = vec![0; MAXIMUM_SIGNATURE_BYTES + 1];
    let next = WORKLOAD.submission(3);
    match store.submit(
        next.now_seconds,
        next.signer,
        &long_signature,
        next.op.clone(),
    ) {
        Err(StoreError::SignatureTooLong {
            index: 0,
            signature_bytes,
            ..
        }) => assert_eq!(signature_bytes, MAXIMUM_SIGNATURE_BYTES + 1),
        other => panic!("{other:?}"),
    }
    // The second submission is bad, so the first (valid) one must not be applied either.
    let batch = vec![
        next.clone(),
        Submission {
            signature: long_signature,
            ..WORKLOAD.submission(4)
        },
    ];
    assert!(matches!(
        store.submit_batch(batch),
        Err(StoreError::SignatureTooLong { index: 1, .. })
    ));
    let too_many = (0..=MAXIMUM_BATCH_OPERATIONS as u64)
        .map(|index| WORKLOAD.submission(3 + index))
        .collect();
    assert!(matches!(
        store.submit_batch(too_many),
        Err(StoreError::BatchTooLarge { .. })
    ));
    assert_eq!(store.ledger().state_hash(), hash_before);
    assert_eq!(store.last_sequence(), 3);
    // None of those failures is the store's: it still works.
    assert_eq!(submit_workload(&mut store, 3).sequence, 4);
}

#[test]
fn a_store_is_open_in_one_process_or_handle_at_a_time() {
    let dir = filled_store(1);
    let (store, _) = Store::open(dir.path(), create_options()).expect("open");
    match Store::open(dir.path(), create_options()).map(|_| ()) {
        Err(error @ StoreError::Locked { .. }) => {
            assert!(
                error.to_string().contains("open in another process"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    // `verify` takes no lock, so an operator can check a live store.
    assert_eq!(verify(dir.path()).expect("verify").records, 1);
    drop(store);
    Store::open(dir.path(), create_options()).expect("the lock went with the store");
}

#[test]
fn a_missing_store_is_created_only_when_asked() {
    let dir = tempfile::tempdir().expect("scratch");
    let missing = dir.path().join("not-there");
    assert!(matches!(
        Store::open(&missing, StoreOptions::default()).map(|_| ()),
        Err(StoreError::Missing { .. })
    ));
    assert!(!missing.exists(), "nothing was created");
    assert!(matches!(verify(&missing), Err(StoreError::Missing { .. })));
    let (store, _) = Store::open(&missing, create_options()).expect("create");
    assert_eq!(store.last_sequence(), 0);
    assert_eq!(store.journal_bytes(), 16, "a header and nothing else");
}

#[test]
fn checkpoints_are_written_every_interval_and_checked_on_reopen() {
    let dir = tempfile::tempdir().expect("scratch");
    let options = StoreOptions {
        create_if_missing: true,
        checkpoint_interval_records: NonZeroU64::new(10).expect("non-zero"),
    };
    let (mut store, _) = Store::open(dir.path(), options).expect("create");
    for index in 0..25 {
        submit_workload(&mut store, index);
    }
    assert!(store.last_checkpoint_error().is_none());
    assert!(dir.path().join(CHECKPOINT_FILE_NAME).exists());
    drop(store);
    let (store, report) = Store::open(dir.path(), options).expect("reopen");
    assert_eq!(
        report.checkpoint,
        CheckpointCheck::Restored { sequence: 20 }
    );
    assert_eq!((report.records_read, report.records_replayed), (25, 5));
    assert_eq!(store.ledger().state_hash(), replayed_state_hash(25));
    let report = verify(dir.path()).expect("verify");
    assert!(
        !report.final_state_checked(),
        "records 21 to 25 are past it"
    );
    let checkpoint = store.close().expect("close");
    assert_eq!(checkpoint.sequence, 25);
    assert_eq!(checkpoint.state_hash, replayed_state_hash(25));
    let report = verify(dir.path()).expect("verify");
    assert_eq!(report.checkpoint, CheckpointCheck::Matched { sequence: 25 });
    assert!(report.final_state_checked());
}

#[test]
fn a_usage_settlement_is_journaled_replayed_with_nonces_and_exported() {
    use ledger::{Outcome, UsageCharge};
    use ledger_store::workload::{ADMIN, TREASURY};

    let dir = filled_store(9);
    let (mut store, _) = Store::open(dir.path(), create_options()).expect("open");
    let account = ledger_store::workload::Workload::account(0);
    let now = store.last_time_seconds() + 1;
    let today = now / 86_400;
    let credit = Op::CreditAccount {
        account,
        usd_units: 1_000,
        bundled_credit_units: 500,
    };
    let charge = |usd_units| UsageCharge {
        account,
        requests: 2,
        prompt_tokens: 300,
        completion_tokens: 40,
        allowance_units: 7,
        bundled_credit_units: 100,
        usd_units,
    };
    let settle = |usd_units| Op::SettleUsage {
        day: today,
        entries: vec![charge(usd_units)],
    };
    let admin_nonce = store.ledger().next_nonce(ADMIN);
    store
        .submit(now, ADMIN, b"signature", credit)
        .expect("store works")
        .expect("credit accepted");
    let bytes_before = store.journal_bytes();
    let overdraw = store
        .submit(now, ADMIN, b"signature", settle(1_001))
        .expect("store works");
    assert_eq!(overdraw, Err(Rejection::InsufficientCredit));
    assert_eq!(store.journal_bytes(), bytes_before, "not journaled");
    let receipt = store
        .submit(now, ADMIN, b"signature", settle(600))
        .expect("store works")
        .expect("settlement accepted");
    assert_eq!(
        receipt.outcome,
        Outcome::UsageSettled {
            entries: 1,
            usd_units: 600,
            bundled_credit_units: 100,
            allowance_units: 7,
        }
    );
    assert_eq!(store.ledger().next_nonce(ADMIN), admin_nonce + 2);
    let state_hash = store.ledger().state_hash();
    drop(store);

    let (store, report) = Store::open(dir.path(), create_options()).expect("reopen");
    assert_eq!(report.records_replayed, 11);
    assert_eq!(store.ledger().state_hash(), state_hash);
    let ledger = store.ledger();
    assert_eq!(ledger.next_nonce(ADMIN), admin_nonce + 2);
    assert_eq!(ledger.balances(account, now).usd_credit_units, 400);
    assert_eq!(ledger.allowance_spent_units(account, today), 7);
    assert_eq!(ledger.last_usage_day(account), Some(today));
    assert!(ledger.next_nonce(TREASURY) > 0, "the workload's sender");
    drop(store);

    let mut out = Vec::new();
    export(dir.path(), &mut out).expect("export");
    let text = String::from_utf8(out).expect("utf-8");
    let last = text.lines().last().expect("a line");
    let value: serde_json::Value = serde_json::from_str(last).expect("valid JSON");
    assert_eq!(value["op"]["type"], "settle_usage");
    assert_eq!(value["op"]["day"], today);
    assert_eq!(value["op"]["entries"][0]["usd_units"], "600");
    assert_eq!(value["op"]["entries"][0]["prompt_tokens"], 300);
}
