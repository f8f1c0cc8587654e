//! Recovery: a torn tail is cut off at every byte offset and the state is the replay of the
//! records before it; an unfinished last commit is cut off even with intact records after the
//! tear; damage to an earlier commit is refused with its location and the journal left
//! untouched; recovery starts from the checkpoint's state and applies only what follows it;
//! checkpoints that the journal contradicts are refused, and unusable ones ignored.

use ledger::Ledger;
use ledger_store::{CHECKPOINT_FILE_NAME, CheckpointCheck, Corruption, Store, StoreError, verify};
use sha2::{Digest, Sha256};

use crate::support::*;

const RECORDS: u64 = 30;

#[test]
fn a_torn_last_record_is_cut_off_at_every_byte_offset() {
    let dir = filled_store(RECORDS);
    let whole = journal_bytes(dir.path());
    let offsets = frame_offsets(dir.path());
    let last_start = offsets[offsets.len() - 1] as usize;
    let expected = replayed_state_hash(RECORDS - 1);
    // From a cut exactly at the record's start (a clean journal of N-1 records) to a cut one
    // byte short of its end.
    for cut in last_start..whole.len() {
        write_journal(dir.path(), &whole[..cut]);
        let (mut store, report) = Store::open(dir.path(), create_options())
            .unwrap_or_else(|error| panic!("{cut}: {error}"));
        assert_eq!(report.records_replayed, RECORDS - 1, "cut at {cut}");
        assert_eq!(store.ledger().state_hash(), expected, "cut at {cut}");
        let dropped = (cut - last_start) as u64;
        match report.torn_tail {
            None => assert_eq!(dropped, 0),
            Some(tail) => {
                assert_eq!(tail.offset_bytes, last_start as u64);
                assert_eq!(tail.dropped_bytes, dropped, "cut at {cut}");
            }
        }
        assert_eq!(
            journal_bytes(dir.path()).len(),
            last_start,
            "truncated on disk"
        );
        // Now and then, show that the repaired journal takes the lost operation again.
        if cut % 23 == 0 {
            let submission = WORKLOAD.submission(RECORDS - 1);
            let receipt = store
                .submit(
                    submission.now_seconds,
                    submission.signer,
                    &submission.signature,
                    submission.op,
                )
                .expect("store works")
                .expect("accepted");
            assert_eq!(receipt.sequence, RECORDS);
            drop(store);
            let report = verify(dir.path()).expect("verify");
            assert_eq!(report.state_hash, replayed_state_hash(RECORDS));
        }
    }
}

#[test]
fn a_zero_filled_or_garbage_tail_is_cut_off() {
    let dir = filled_store(RECORDS);
    let whole = journal_bytes(dir.path());
    let expected = replayed_state_hash(RECORDS);
    // A filesystem may persist a file's new length before its data: the tail reads as zeros.
    let mut zeros = whole.clone();
    zeros.extend_from_slice(&[0; 4096]);
    // Or the tail is whatever a partial write left; deterministic noise stands in for it.
    let mut noise = whole.clone();
    let mut state = 0x1234_5678_u64;
    noise.extend((0..1000).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    for (name, bytes) in [("zeros", zeros), ("noise", noise)] {
        write_journal(dir.path(), &bytes);
        let (store, report) = Store::open(dir.path(), create_options()).expect(name);
        assert_eq!(report.records_replayed, RECORDS, "{name}");
        assert_eq!(store.ledger().state_hash(), expected, "{name}");
        let tail = report.torn_tail.expect("a torn tail");
        assert_eq!(tail.offset_bytes, whole.len() as u64, "{name}");
        assert_eq!(
            tail.dropped_bytes,
            (bytes.len() - whole.len()) as u64,
            "{name}"
        );
        drop(store);
        assert!(
            journal_bytes(dir.path()) == whole,
            "{name}: truncated to the valid records"
        );
    }
}

#[test]
fn an_unfinished_last_commit_is_cut_off_even_with_intact_records_after_the_tear() {
    // Commits of four up to record 24, then a last commit of ten (records 25 to 34) that loses
    // a stretch in its middle, as a power cut before its fsync can: the disk persisted the
    // write's pages in some other order.
    let dir = filled_store(24);
    let (mut store, _) = Store::open(dir.path(), create_options()).expect("open");
    let batch = (24..34).map(|index| WORKLOAD.submission(index)).collect();
    for result in store.submit_batch(batch).expect("batch") {
        result.expect("accepted");
    }
    drop(store);
    let whole = journal_bytes(dir.path());
    let offsets = frame_offsets(dir.path());
    assert_eq!(offsets.len(), 34);
    // Zeros from the middle of record 27 to the middle of record 29; records 30 to 34 intact.
    let mut torn = whole.clone();
    torn[offsets[26] as usize + 50..offsets[28] as usize + 50].fill(0);
    write_journal(dir.path(), &torn);

    let (store, report) = Store::open(dir.path(), create_options()).expect("open");
    assert_eq!(report.records_replayed, 26);
    assert_eq!(store.ledger().state_hash(), replayed_state_hash(26));
    let tail = report.torn_tail.expect("cut off");
    assert_eq!(tail.offset_bytes, offsets[26]);
    assert_eq!(tail.dropped_bytes, whole.len() as u64 - offsets[26]);
    assert_eq!(tail.intact_records_dropped, 5, "records 30 to 34");
    drop(store);
    assert_eq!(journal_bytes(dir.path()).len() as u64, offsets[26]);

    // The same damage two commits earlier is in a commit that was acknowledged: refused.
    let mut earlier = whole.clone();
    earlier[offsets[17] as usize + 50..offsets[18] as usize + 50].fill(0);
    write_journal(dir.path(), &earlier);
    match Store::open(dir.path(), create_options()).map(|_| ()) {
        Err(StoreError::Corrupt {
            sequence: 18,
            next_valid_offset_bytes,
            ..
        }) => assert_eq!(
            next_valid_offset_bytes, offsets[20],
            "record 21 starts the next commit"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_flipped_byte_in_the_middle_is_refused_with_its_location_and_the_journal_left_alone() {
    let dir = filled_store(RECORDS);
    let whole = journal_bytes(dir.path());
    let offsets = frame_offsets(dir.path());
    // Every byte of record 10, and a sample of the large genesis record.
    let damaged_record = 10usize;
    let start = offsets[damaged_record - 1] as usize;
    let end = offsets[damaged_record] as usize;
    let genesis_sample = (offsets[0] as usize..offsets[1] as usize).step_by(97);
    for position in (start..end).chain(genesis_sample) {
        let sequence = if position < offsets[1] as usize {
            1
        } else {
            damaged_record as u64
        };
        let mut damaged = whole.clone();
        damaged[position] ^= 0x5A;
        write_journal(dir.path(), &damaged);
        for (name, result) in [
            (
                "open",
                Store::open(dir.path(), create_options()).map(|_| ()),
            ),
            ("verify", verify(dir.path()).map(|_| ())),
        ] {
            match result {
                Err(StoreError::Corrupt {
                    offset_bytes,
                    sequence: found_sequence,
                    next_valid_offset_bytes,
                    ..
                }) => {
                    assert_eq!(found_sequence, sequence, "{name} at {position}");
                    assert_eq!(offset_bytes, offsets[sequence as usize - 1], "{name}");
                    // The evidence: an intact record of a later commit.
                    let next_commit = next_commit_first_sequence(sequence);
                    assert_eq!(
                        next_valid_offset_bytes,
                        offsets[next_commit as usize - 1],
                        "{name}"
                    );
                }
                other => panic!("{name} with byte {position} flipped: {other:?}"),
            }
        }
        assert!(
            journal_bytes(dir.path()) == damaged,
            "nothing was truncated"
        );
    }
    // The message names the place, for the operator who reads it.
    let mut damaged = whole.clone();
    damaged[start + 30] ^= 1;
    write_journal(dir.path(), &damaged);
    let message = Store::open(dir.path(), create_options())
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains(&format!("corrupt at byte {start}")),
        "{message}"
    );
    assert!(message.contains("record 10"), "{message}");
    assert!(message.contains("not a torn tail"), "{message}");
}

#[test]
fn a_bad_header_is_refused() {
    let dir = filled_store(2);
    let whole = journal_bytes(dir.path());
    let mut wrong_magic = whole.clone();
    wrong_magic[0] = b'X';
    let mut newer_version = whole.clone();
    newer_version[8] = 2;
    for (bytes, expected_version) in [
        (wrong_magic, None),
        (newer_version, Some(2)),
        (whole[..5].to_vec(), None),
    ] {
        write_journal(dir.path(), &bytes);
        match (
            Store::open(dir.path(), create_options()).map(|_| ()),
            expected_version,
        ) {
            (Err(StoreError::NotAJournal { .. }), None) => {}
            (
                Err(StoreError::UnsupportedVersion {
                    found,
                    supported: 1,
                    ..
                }),
                Some(version),
            ) => {
                assert_eq!(found, version)
            }
            (other, _) => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_journal_shorter_than_its_checkpoint_is_refused() {
    let dir = filled_store(RECORDS);
    let (store, _) = Store::open(dir.path(), create_options()).expect("open");
    store
        .close()
        .expect("close writes a checkpoint at the last record");
    let offsets = frame_offsets(dir.path());
    let whole = journal_bytes(dir.path());
    // The last record was fsync'd before the checkpoint named it, so losing it is not a torn
    // write: something lost acknowledged data.
    write_journal(
        dir.path(),
        &whole[..offsets[offsets.len() - 1] as usize + 7],
    );
    match Store::open(dir.path(), create_options()).map(|_| ()) {
        Err(StoreError::CheckpointAhead {
            checkpoint_sequence: RECORDS,
            journal_sequence,
        }) => assert_eq!(journal_sequence, RECORDS - 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        journal_bytes(dir.path()).len(),
        offsets[offsets.len() - 1] as usize + 7
    );
}

/// The fields of a checkpoint file, read by its documented layout (`format.rs`).
struct CheckpointFile {
    version: u32,
    sequence: u64,
    record_hash: [u8; 32],
    state_hash: u128,
    state: Vec<u8>,
}

impl CheckpointFile {
    fn parse(bytes: &[u8]) -> Self {
        let field = |range: std::ops::Range<usize>| bytes[range].to_vec();
        assert_eq!(&bytes[..8], b"GNDLCKPT");
        let state_length = u64::from_le_bytes(field(72..80).try_into().expect("8 bytes"));
        assert_eq!(
            bytes.len() as u64,
            80 + state_length + 32,
            "the documented size"
        );
        Self {
            version: u32::from_le_bytes(field(8..12).try_into().expect("4 bytes")),
            sequence: u64::from_le_bytes(field(16..24).try_into().expect("8 bytes")),
            record_hash: field(24..56).try_into().expect("32 bytes"),
            state_hash: u128::from_le_bytes(field(56..72).try_into().expect("16 bytes")),
            state: field(80..bytes.len() - 32),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = b"GNDLCKPT".to_vec();
        bytes.extend_from_slice(&self.version.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&self.sequence.to_le_bytes());
        bytes.extend_from_slice(&self.record_hash);
        bytes.extend_from_slice(&self.state_hash.to_le_bytes());
        bytes.extend_from_slice(&(self.state.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&self.state);
        let checksum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&checksum);
        bytes
    }
}

#[test]
fn recovery_starts_from_the_checkpoint_state_and_applies_only_the_records_after_it() {
    let dir = filled_store(RECORDS);
    let (store, _) = Store::open(dir.path(), create_options()).expect("open");
    store.close().expect("close");
    let file = CheckpointFile::parse(
        &std::fs::read(dir.path().join(CHECKPOINT_FILE_NAME)).expect("checkpoint"),
    );
    assert_eq!((file.version, file.sequence), (3, RECORDS));
    let state = Ledger::decode_state(&file.state).expect("the state decodes");
    assert_eq!(state.state_hash(), replayed_state_hash(RECORDS));
    assert_eq!(state.state_hash().0, file.state_hash);

    // Five more records after the checkpoint: recovery reads all, applies five.
    let (mut store, report) = Store::open(dir.path(), create_options()).expect("open");
    assert_eq!(
        (report.checkpoint.clone(), report.records_replayed),
        (CheckpointCheck::Restored { sequence: RECORDS }, 0)
    );
    for index in RECORDS..RECORDS + 5 {
        submit_workload(&mut store, index);
    }
    drop(store);
    let (store, report) = Store::open(dir.path(), create_options()).expect("reopen");
    assert_eq!(
        (
            report.checkpoint,
            report.records_read,
            report.records_replayed
        ),
        (
            CheckpointCheck::Restored { sequence: RECORDS },
            RECORDS + 5,
            5
        )
    );
    assert_eq!(
        store.ledger().state_hash(),
        replayed_state_hash(RECORDS + 5)
    );
    assert_eq!(*store.ledger(), replayed_ledger(RECORDS + 5));
}

#[test]
fn a_checkpoint_the_journal_contradicts_is_refused_and_an_unusable_one_ignored() {
    let dir = filled_store(RECORDS);
    let (store, _) = Store::open(dir.path(), create_options()).expect("open");
    store.close().expect("close");
    let checkpoint_path = dir.path().join(CHECKPOINT_FILE_NAME);
    let original = std::fs::read(&checkpoint_path).expect("checkpoint");
    let file = CheckpointFile::parse(&original);

    // Another history's record at the checkpoint's sequence: recovery refuses to start from it.
    let mut other_history = CheckpointFile::parse(&original);
    other_history.record_hash[0] ^= 1;
    std::fs::write(&checkpoint_path, other_history.bytes()).expect("write");
    match Store::open(dir.path(), create_options()).map(|_| ()) {
        Err(StoreError::CheckpointRecordMismatch { sequence, .. }) => assert_eq!(sequence, RECORDS),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        verify(dir.path()),
        Err(StoreError::CheckpointMismatch { .. })
    ));

    // A sound state that is not the replay's (what a build whose rules changed would find):
    // `verify`, which replays from genesis, refuses it.
    let empty = Ledger::new();
    let mut state = Vec::new();
    empty.encode_state(&mut state);
    let other_state = CheckpointFile {
        state_hash: empty.state_hash().0,
        state,
        ..CheckpointFile::parse(&original)
    };
    std::fs::write(&checkpoint_path, other_state.bytes()).expect("write");
    match verify(dir.path()) {
        Err(StoreError::CheckpointMismatch { sequence, .. }) => assert_eq!(sequence, RECORDS),
        other => panic!("{other:?}"),
    }

    // Unusable checkpoints are ignored, and recovery replays the whole journal instead: a
    // damaged byte, a state hash the state does not have, a state that breaks an invariant,
    // and the previous format version.
    let mut damaged = original.clone();
    damaged[100] ^= 1;
    let wrong_hash = CheckpointFile {
        state_hash: file.state_hash ^ 1,
        ..CheckpointFile::parse(&original)
    };
    // The state's last field counts the operations accepted; one more than the accounts'
    // nonces add up to still decodes, but fails the audit.
    let mut unsound_state = file.state.clone();
    if let Some(last) = unsound_state.last_mut() {
        *last ^= 1;
    }
    let unsound_hash = Ledger::decode_state(&unsound_state)
        .expect("still decodes")
        .state_hash()
        .0;
    let unsound = CheckpointFile {
        state_hash: unsound_hash,
        state: unsound_state,
        ..CheckpointFile::parse(&original)
    };
    let previous_version = CheckpointFile {
        version: 2,
        ..CheckpointFile::parse(&original)
    };
    for (name, bytes) in [
        ("damaged", damaged),
        ("wrong state hash", wrong_hash.bytes()),
        ("unsound state", unsound.bytes()),
        ("version 2", previous_version.bytes()),
    ] {
        std::fs::write(&checkpoint_path, &bytes).expect("write");
        let (store, report) = Store::open(dir.path(), create_options()).expect("open");
        assert!(
            matches!(report.checkpoint, CheckpointCheck::Ignored { .. }),
            "{name}: {:?}",
            report.checkpoint
        );
        assert_eq!(report.records_replayed, RECORDS, "{name}");
        assert_eq!(store.ledger().state_hash(), replayed_state_hash(RECORDS));
    }

    std::fs::write(&checkpoint_path, &original).expect("write");
    let (_, report) = Store::open(dir.path(), create_options()).expect("open");
    assert_eq!(
        report.checkpoint,
        CheckpointCheck::Restored { sequence: RECORDS }
    );
    let report = verify(dir.path()).expect("verify");
    assert_eq!(
        report.checkpoint,
        CheckpointCheck::Matched { sequence: RECORDS }
    );
}

#[test]
fn the_truncation_reason_names_the_kind_of_tear() {
    let dir = filled_store(3);
    let whole = journal_bytes(dir.path());
    let offsets = frame_offsets(dir.path());
    let last_start = offsets[2] as usize;
    write_journal(dir.path(), &whole[..last_start + 2]);
    let (_, report) = Store::open(dir.path(), create_options()).expect("open");
    assert_eq!(
        report.torn_tail.map(|tail| tail.reason),
        Some(Corruption::Truncated {
            needed_bytes: 4,
            available_bytes: 2
        })
    );
    let mut flipped = whole.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    write_journal(dir.path(), &flipped);
    let (_, report) = Store::open(dir.path(), create_options()).expect("open");
    assert_eq!(
        report.torn_tail.map(|tail| tail.reason),
        Some(Corruption::HashMismatch)
    );
}
