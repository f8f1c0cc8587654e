//! Shared scaffolding for the store's integration tests: scratch stores filled with the
//! synthetic workload, raw access to the journal's bytes, and a fresh in-memory replay to
//! compare recovered states with.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use ledger::{Ledger, StateHash};
use ledger_store::workload::Workload;
use ledger_store::{JOURNAL_FILE_NAME, Store, StoreOptions, read_records};
use tempfile::TempDir;

/// The tests' workload: a small ring of accounts.
pub const WORKLOAD: Workload = Workload { accounts: 10 };

/// Creates a missing store, with checkpoints far enough apart that a test only gets one when
/// it asks.
pub fn create_options() -> StoreOptions {
    StoreOptions {
        create_if_missing: true,
        checkpoint_interval_records: NonZeroU64::new(1_000_000).expect("non-zero"),
    }
}

/// Records per commit in [`filled_store`]'s journals.
pub const COMMIT_RECORDS: u64 = 4;

/// The sequence of the first record of the commit after the one holding `sequence`, in a
/// [`filled_store`] journal.
pub fn next_commit_first_sequence(sequence: u64) -> u64 {
    (sequence - 1) / COMMIT_RECORDS * COMMIT_RECORDS + COMMIT_RECORDS + 1
}

/// A scratch directory holding a store with the first `records` workload operations, committed
/// in batches of [`COMMIT_RECORDS`] (one fsync each), dropped without `close`, so there is no
/// checkpoint.
pub fn filled_store(records: u64) -> TempDir {
    let dir = tempfile::tempdir().expect("scratch directory");
    let (mut store, _) = Store::open(dir.path(), create_options()).expect("create store");
    let mut index = 0;
    while index < records {
        let end = (index + COMMIT_RECORDS).min(records);
        let batch = (index..end)
            .map(|index| WORKLOAD.submission(index))
            .collect();
        for result in store.submit_batch(batch).expect("batch") {
            result.expect("the workload is accepted");
        }
        index = end;
    }
    dir
}

pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE_NAME)
}

pub fn journal_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(journal_path(dir)).expect("read journal")
}

pub fn write_journal(dir: &Path, bytes: &[u8]) {
    std::fs::write(journal_path(dir), bytes).expect("write journal");
}

/// Where each record's frame starts, in order.
pub fn frame_offsets(dir: &Path) -> Vec<u64> {
    let mut offsets = Vec::new();
    read_records(dir, |record| {
        offsets.push(record.offset_bytes);
        Ok(())
    })
    .expect("read records");
    offsets
}

/// The first `records` workload operations, applied to a fresh ledger with no store involved.
pub fn replayed_ledger(records: u64) -> Ledger {
    let mut ledger = Ledger::new();
    for index in 0..records {
        let submission = WORKLOAD.submission(index);
        ledger
            .apply(submission.now_seconds, submission.signer, submission.op)
            .expect("the workload is accepted");
    }
    ledger
}

/// The state hash of [`replayed_ledger`].
pub fn replayed_state_hash(records: u64) -> StateHash {
    replayed_ledger(records).state_hash()
}

/// Submits workload operation `index` to `store`, which must accept it.
pub fn submit_workload(store: &mut Store, index: u64) -> ledger_store::Receipt {
    let submission = WORKLOAD.submission(index);
    store
        .submit(
            submission.now_seconds,
            submission.signer,
            &submission.signature,
            submission.op,
        )
        .expect("store works")
        .expect("the workload is accepted")
}
