//! The documented file format is the format: journals built here from the byte tables in
//! `format.rs`'s documentation, with an independent encoder, are read by the store, and the
//! store's own journals are byte-identical to them. Hand-built journals also reach the cases a
//! store never writes: an intact record the ledger rejects, an intact record this build cannot
//! decode, and a broken hash chain.

use ledger::{Address, Op};
use ledger_store::codec::encode_op;
use ledger_store::{Corruption, Store, StoreError, read_records, verify};
use sha2::{Digest, Sha256};

use crate::support::*;

/// One record, encoded from the documentation's table.
struct Frame {
    sequence: u64,
    commit_first_sequence: u64,
    time_seconds: u64,
    signer: Address,
    signature: Vec<u8>,
    op_bytes: Vec<u8>,
    previous_record_hash: [u8; 32],
}

impl Frame {
    fn encode(&self) -> (Vec<u8>, [u8; 32]) {
        let body_length = 8 + 8 + 8 + 20 + 4 + self.signature.len() + 4 + self.op_bytes.len() + 32;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&u32::try_from(body_length).expect("small").to_le_bytes());
        bytes.extend_from_slice(&self.sequence.to_le_bytes());
        bytes.extend_from_slice(&self.commit_first_sequence.to_le_bytes());
        bytes.extend_from_slice(&self.time_seconds.to_le_bytes());
        bytes.extend_from_slice(&self.signer.0);
        bytes.extend_from_slice(
            &u32::try_from(self.signature.len())
                .expect("small")
                .to_le_bytes(),
        );
        bytes.extend_from_slice(&self.signature);
        bytes.extend_from_slice(
            &u32::try_from(self.op_bytes.len())
                .expect("small")
                .to_le_bytes(),
        );
        bytes.extend_from_slice(&self.op_bytes);
        bytes.extend_from_slice(&self.previous_record_hash);
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        bytes.extend_from_slice(&hash);
        (bytes, hash)
    }
}

fn header() -> Vec<u8> {
    let mut header = b"GNDLJRNL".to_vec();
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    header
}

fn op_bytes(op: &Op) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_op(op, &mut bytes);
    bytes
}

/// A journal of the first `records` workload operations in commits of [`COMMIT_RECORDS`], as
/// [`filled_store`] writes them, built by hand; also each frame's start and hash.
fn hand_built_journal(records: u64) -> (Vec<u8>, Vec<usize>, Vec<[u8; 32]>) {
    let mut journal = header();
    let mut starts = Vec::new();
    let mut hashes = Vec::new();
    let mut previous = [0u8; 32];
    for index in 0..records {
        let submission = WORKLOAD.submission(index);
        let (bytes, hash) = Frame {
            sequence: index + 1,
            commit_first_sequence: index / COMMIT_RECORDS * COMMIT_RECORDS + 1,
            time_seconds: submission.now_seconds,
            signer: submission.signer,
            signature: submission.signature,
            op_bytes: op_bytes(&submission.op),
            previous_record_hash: previous,
        }
        .encode();
        starts.push(journal.len());
        journal.extend_from_slice(&bytes);
        hashes.push(hash);
        previous = hash;
    }
    (journal, starts, hashes)
}

#[test]
fn the_store_writes_exactly_the_documented_bytes() {
    let dir = filled_store(12);
    let (expected, _, _) = hand_built_journal(12);
    assert!(journal_bytes(dir.path()) == expected, "byte for byte");
}

#[test]
fn a_hand_built_journal_is_read_and_replayed() {
    let dir = tempfile::tempdir().expect("scratch");
    let (journal, starts, hashes) = hand_built_journal(8);
    write_journal(dir.path(), &journal);
    let mut seen = Vec::new();
    let report = read_records(dir.path(), |record| {
        seen.push((record.sequence, record.offset_bytes, record.record_hash.0));
        Ok(())
    })
    .expect("read");
    assert_eq!(report.records, 8);
    let expected: Vec<(u64, u64, [u8; 32])> = (0..8)
        .map(|index| (index as u64 + 1, starts[index] as u64, hashes[index]))
        .collect();
    assert_eq!(seen, expected);
    let (store, _) = Store::open(dir.path(), create_options()).expect("open");
    assert_eq!(store.ledger().state_hash(), replayed_state_hash(8));
}

/// Appends one hand-made record after the first `records` workload records.
fn journal_with_extra(records: u64, extra: impl FnOnce(&mut Frame)) -> (Vec<u8>, usize) {
    let (mut journal, _, hashes) = hand_built_journal(records);
    let previous = WORKLOAD.submission(records - 1);
    let mut frame = Frame {
        sequence: records + 1,
        commit_first_sequence: records + 1,
        time_seconds: previous.now_seconds + 1,
        signer: Address([0x99; 20]),
        signature: vec![7; 65],
        op_bytes: op_bytes(&Op::Stake { vvv_units: 1 }),
        previous_record_hash: hashes[hashes.len() - 1],
    };
    extra(&mut frame);
    let start = journal.len();
    journal.extend_from_slice(&frame.encode().0);
    (journal, start)
}

#[test]
fn an_intact_record_the_ledger_rejects_is_refused_as_nondeterminism() {
    let dir = tempfile::tempdir().expect("scratch");
    // A stake by an account that holds nothing: intact, chained, and rejected.
    let (journal, start) = journal_with_extra(5, |_| {});
    write_journal(dir.path(), &journal);
    for result in [
        Store::open(dir.path(), create_options()).map(|_| ()),
        verify(dir.path()).map(|_| ()),
    ] {
        match result {
            Err(StoreError::ReplayRejected {
                sequence: 6,
                offset_bytes,
                rejection: ledger::Rejection::InsufficientVvv,
            }) => assert_eq!(offset_bytes, start as u64),
            other => panic!("{other:?}"),
        }
    }
    assert!(journal_bytes(dir.path()) == journal, "left as it was");
}

#[test]
fn an_intact_record_this_build_cannot_decode_is_refused_not_truncated() {
    let dir = tempfile::tempdir().expect("scratch");
    let (journal, _) = journal_with_extra(5, |frame| frame.op_bytes = vec![200]);
    write_journal(dir.path(), &journal);
    match Store::open(dir.path(), create_options()).map(|_| ()) {
        Err(StoreError::Unreadable {
            sequence: 6,
            reason: Corruption::Op(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(journal_bytes(dir.path()) == journal, "left as it was");
}

/// A change to a hand-made frame.
type Change = fn(&mut Frame);

#[test]
fn a_broken_chain_is_a_torn_tail_at_the_end_and_corruption_in_the_middle() {
    let dir = tempfile::tempdir().expect("scratch");
    // A last record that names the wrong predecessor, the wrong sequence or a commit it is not
    // part of is cut off...
    let changes: [(Change, Corruption); 3] = [
        (
            |frame| frame.previous_record_hash[0] ^= 1,
            Corruption::ChainBroken,
        ),
        (
            |frame| frame.sequence += 1,
            Corruption::SequenceGap {
                expected: 6,
                found: 7,
            },
        ),
        // Record 5 started its own commit, so record 6 cannot continue one that began at 4.
        (
            |frame| frame.commit_first_sequence = 4,
            Corruption::CommitBroken,
        ),
    ];
    for (change, reason) in changes {
        let (journal, start) = journal_with_extra(5, |frame| {
            // An operation the ledger would accept, so only the chain is wrong.
            let next = WORKLOAD.submission(5);
            frame.signer = next.signer;
            frame.op_bytes = op_bytes(&next.op);
            change(frame);
        });
        write_journal(dir.path(), &journal);
        let (_, report) = Store::open(dir.path(), create_options()).expect("open");
        let tail = report.torn_tail.expect("cut off");
        assert_eq!(tail.offset_bytes, start as u64);
        assert_eq!(tail.reason, reason);
    }
    // A record may continue the previous record's commit.
    let (journal, _) = journal_with_extra(5, |frame| {
        let next = WORKLOAD.submission(5);
        frame.signer = next.signer;
        frame.op_bytes = op_bytes(&next.op);
        frame.commit_first_sequence = 5;
    });
    write_journal(dir.path(), &journal);
    let (_, report) = Store::open(dir.path(), create_options()).expect("open");
    assert_eq!((report.records_replayed, report.torn_tail), (6, None));
    // ...but a record whose chain is broken with valid records after it is refused.
    let (mut journal, starts, _) = hand_built_journal(6);
    let (tampered, _) = Frame {
        sequence: 3,
        commit_first_sequence: 1,
        time_seconds: WORKLOAD.submission(2).now_seconds,
        signer: WORKLOAD.submission(2).signer,
        signature: WORKLOAD.submission(2).signature,
        op_bytes: op_bytes(&WORKLOAD.submission(2).op),
        previous_record_hash: [0x33; 32],
    }
    .encode();
    journal.splice(starts[2]..starts[3], tampered);
    write_journal(dir.path(), &journal);
    match verify(dir.path()) {
        Err(StoreError::Corrupt {
            sequence: 3,
            reason: Corruption::ChainBroken,
            offset_bytes,
            ..
        }) => assert_eq!(offset_bytes, starts[2] as u64),
        other => panic!("{other:?}"),
    }
}
