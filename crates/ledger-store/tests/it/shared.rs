//! A journal several stores share: one store publishes its commits, another applies them and
//! ends with the same state and the same bytes; a frame out of order, damaged or from another
//! history is refused; a failed publication leaves nothing behind once the store recovers.

use ledger_store::{Store, StoreError};

use crate::support::*;

/// The frames `source` publishes for workload operations `range`, one commit of them.
fn publish(store: &mut Store, range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let results = store
        .submit_batch_published(
            range.map(|index| WORKLOAD.submission(index)).collect(),
            |published| {
                frames.extend(published.records().map(|(_, _, frame)| frame.to_vec()));
                Ok::<(), std::convert::Infallible>(())
            },
        )
        .expect("published");
    assert!(results.iter().all(Result::is_ok));
    frames
}

#[test]
fn a_follower_applies_what_was_published_and_holds_the_same_journal() {
    let (one, two) = (
        tempfile::tempdir().expect("scratch"),
        tempfile::tempdir().expect("scratch"),
    );
    let (mut writer, _) = Store::open(one.path(), create_options()).expect("create");
    let (mut follower, _) = Store::open(two.path(), create_options()).expect("create");
    let first = publish(&mut writer, 0..5);
    let second = publish(&mut writer, 5..9);
    let applied = follower
        .apply_published(first.iter().chain(&second).cloned())
        .expect("applied");
    assert_eq!(applied.len(), 9);
    assert_eq!(follower.ledger().state_hash(), writer.ledger().state_hash());
    assert_eq!(follower.last_record_hash(), writer.last_record_hash());
    drop((writer, follower));
    assert_eq!(
        journal_bytes(one.path()),
        journal_bytes(two.path()),
        "the same records, byte for byte"
    );
    // The follower's copy reopens as a journal of its own.
    let (reopened, report) = Store::open(two.path(), create_options()).expect("reopen");
    assert_eq!(report.records_replayed, 9);
    assert_eq!(reopened.last_sequence(), 9);
}

#[test]
fn frames_out_of_order_damaged_or_from_another_history_are_refused() {
    let (one, two, three) = (
        tempfile::tempdir().expect("scratch"),
        tempfile::tempdir().expect("scratch"),
        tempfile::tempdir().expect("scratch"),
    );
    let (mut writer, _) = Store::open(one.path(), create_options()).expect("create");
    let frames = publish(&mut writer, 0..4);
    let (mut follower, _) = Store::open(two.path(), create_options()).expect("create");

    let skipped = follower.apply_published(frames[1..].iter().cloned());
    assert!(
        matches!(skipped, Err(StoreError::Diverged { sequence: 1, .. })),
        "{skipped:?}"
    );
    let mut damaged = frames[0].clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    let refused = follower.apply_published([damaged]);
    assert!(
        matches!(refused, Err(StoreError::Diverged { sequence: 1, .. })),
        "{refused:?}"
    );
    // Another store's history: the same operations at other times chain differently.
    let (mut other, _) = Store::open(three.path(), create_options()).expect("create");
    let mut shifted = WORKLOAD.submission(0);
    shifted.now_seconds += 1;
    other.submit_batch(vec![shifted]).expect("committed");
    let mut foreign = Vec::new();
    let _ = other.submit_batch_published(vec![WORKLOAD.submission(1)], |published| {
        foreign.extend(published.records().map(|(_, _, frame)| frame.to_vec()));
        Ok::<(), std::convert::Infallible>(())
    });
    follower
        .apply_published(frames[..1].iter().cloned())
        .expect("the first record applies");
    let refused = follower.apply_published(foreign);
    assert!(
        matches!(refused, Err(StoreError::Diverged { sequence: 2, .. })),
        "{refused:?}"
    );
    // What was refused changed nothing: the rest of the right history still applies.
    follower
        .apply_published(frames[1..].iter().cloned())
        .expect("the rest applies");
    assert_eq!(follower.ledger().state_hash(), writer.ledger().state_hash());
}

#[test]
fn a_batch_the_shared_journal_did_not_take_is_gone_once_the_store_recovers() {
    let dir = tempfile::tempdir().expect("scratch");
    let (mut store, _) = Store::open(dir.path(), create_options()).expect("create");
    publish(&mut store, 0..3);
    let (state, bytes) = (store.ledger().state_hash(), journal_bytes(dir.path()));
    let failed = store.submit_batch_published(
        (3..6).map(|index| WORKLOAD.submission(index)).collect(),
        |_| Err("the connection dropped"),
    );
    let Err(StoreError::Publish { pending, .. }) = failed else {
        panic!("{failed:?}");
    };
    assert_eq!(pending.len(), 3, "what the batch would have been");
    assert_eq!(journal_bytes(dir.path()), bytes, "nothing appended");
    assert!(matches!(
        store.submit_batch(vec![WORKLOAD.submission(3)]),
        Err(StoreError::Poisoned)
    ));
    store.recover().expect("recovered");
    assert_eq!(store.ledger().state_hash(), state);
    assert_eq!(store.last_sequence(), 3);
    publish(&mut store, 3..6);
    assert_eq!(store.ledger().state_hash(), replayed_state_hash(6));
}
