//! The on-disk formats, byte by byte: the journal header, journal records and the checkpoint
//! file. Owns encoding and validating single frames; it reads no files (that is `journal.rs`).
//! Integers are little-endian and fixed-width; every length is explicit; nothing is derived.
//!
//! # Journal (`ledger.journal`), format version 1
//!
//! A 16-byte header, then records back to back, nothing else:
//!
//! | bytes | field |
//! |-------|-------|
//! | 8 | magic `GNDLJRNL` |
//! | 4 | format version, u32 (1) |
//! | 4 | reserved, zero |
//!
//! Each record (a "frame"):
//!
//! | bytes | field |
//! |-------|-------|
//! | 4 | `body_length`, u32: the bytes from `sequence` to `previous_record_hash` inclusive |
//! | 8 | `sequence`, u64: 1 for the first record, then +1 each |
//! | 8 | `commit_first_sequence`, u64: the sequence of the first record of this record's commit |
//! | 8 | `time_seconds`, u64: the `now` the operation was applied at |
//! | 20 | `signer`, the address |
//! | 4 | `signature_length`, u32, at most [`crate::MAXIMUM_SIGNATURE_BYTES`] |
//! | s | `signature`, opaque |
//! | 4 | `op_length`, u32, at least 1 |
//! | o | `op`, encoded by [`crate::codec`] |
//! | 32 | `previous_record_hash`: the previous record's `record_hash`, zeros for the first |
//! | 32 | `record_hash`: SHA-256 of every byte of the frame before it (length prefix included) |
//!
//! so `body_length = 84 + s + o` exactly, and a frame is at most
//! [`crate::MAXIMUM_RECORD_BYTES`]. The record hash is both the frame's checksum (a torn or
//! flipped frame fails it) and the link of the hash chain (a record cannot be removed, reordered
//! or replaced without breaking every later `previous_record_hash`).
//!
//! A commit is the records of one append that ends in one fsync (one [`crate::Store::submit`]
//! or [`crate::Store::submit_batch`]); its records are consecutive and all name its first
//! sequence. Recovery uses this to tell an unfinished last commit (whose pages the disk may
//! have persisted in any order, so intact records can follow a torn one) from damage to a
//! commit that was acknowledged (see `journal.rs`).
//!
//! # Checkpoint (`ledger.checkpoint`), format version 3: a snapshot of the whole state
//!
//! | bytes | field |
//! |-------|-------|
//! | 8 | magic `GNDLCKPT` |
//! | 4 | format version, u32 (3) |
//! | 4 | reserved, zero |
//! | 8 | `sequence` of the last record covered |
//! | 32 | that record's `record_hash` |
//! | 16 | the ledger's `state_hash` after it, u128 |
//! | 8 | `state_length`, u64, at most [`crate::MAXIMUM_CHECKPOINT_BYTES`] in all |
//! | n | the state: `ledger::Ledger::encode_state`'s bytes, which carry their own version tag |
//! | 32 | SHA-256 of every byte before it |
//!
//! Recovery starts from the state in it and replays only the records after `sequence`, once
//! the journal's record at `sequence` is found to have the same record hash; `verify` replays
//! from genesis and compares the state hash when it passes `sequence`. The state hash is the
//! FNV fingerprint of the state bytes, so a decoded state is also checked against it.

use ledger::{Address, Op, StateHash};
use sha2::{Digest, Sha256};

use crate::codec::{self, DecodeError};
use crate::error::Corruption;
pub use crate::record_hash::RecordHash;
use crate::{MAXIMUM_RECORD_BYTES, MAXIMUM_SIGNATURE_BYTES};

/// The journal file's first eight bytes.
pub const JOURNAL_MAGIC: [u8; 8] = *b"GNDLJRNL";

/// The journal format this build writes and reads.
pub const JOURNAL_FORMAT_VERSION: u32 = 1;

/// Magic, version and the reserved word.
pub const JOURNAL_HEADER_BYTES: usize = 16;

/// The checkpoint file's first eight bytes.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"GNDLCKPT";

/// The checkpoint format this build writes and reads. Version 2 had no state in it; version 1's
/// state hash had no nonces or usage. An older checkpoint is unreadable to this build (and
/// ignored: recovery replays from genesis, and the next checkpoint replaces it) rather than read
/// as a contradiction of the replay, which would refuse to start. Bump it whenever the layout
/// or the state hash's meaning changes.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 3;

/// Header (16), sequence (8), record hash (32), state hash (16), state length (8) and the
/// checksum (32): everything but the state.
pub const CHECKPOINT_FIXED_BYTES: usize = 112;

pub(crate) const LENGTH_PREFIX_BYTES: usize = 4;
pub(crate) const HASH_BYTES: usize = 32;

/// Sequence, commit, time, signer, the two inner lengths and the previous record hash.
pub(crate) const FIXED_BODY_BYTES: usize = 8 + 8 + 8 + 20 + 4 + 4 + HASH_BYTES;

/// The smallest body: no signature and a one-byte operation (a bare tag).
pub(crate) const MINIMUM_BODY_BYTES: usize = FIXED_BODY_BYTES + 1;

/// The largest body a frame of [`MAXIMUM_RECORD_BYTES`] can have.
pub(crate) const MAXIMUM_BODY_BYTES: usize =
    MAXIMUM_RECORD_BYTES - LENGTH_PREFIX_BYTES - HASH_BYTES;

/// The smallest whole frame.
pub(crate) const MINIMUM_RECORD_BYTES: usize =
    LENGTH_PREFIX_BYTES + MINIMUM_BODY_BYTES + HASH_BYTES;

const _: () = assert!(MINIMUM_RECORD_BYTES == 121);
const _: () = assert!(MAXIMUM_BODY_BYTES <= u32::MAX as usize);
const _: () = assert!(MAXIMUM_SIGNATURE_BYTES < MAXIMUM_BODY_BYTES);

/// One decoded journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub sequence: u64,
    /// The first sequence of the commit (one fsync'd append) this record was written in.
    pub commit_first_sequence: u64,
    pub time_seconds: u64,
    pub signer: Address,
    /// Opaque: whatever the submitter passed, checked before the store saw it.
    pub signature: Vec<u8>,
    pub op: Op,
    pub previous_record_hash: RecordHash,
    pub record_hash: RecordHash,
    /// Where the frame starts in the journal file.
    pub offset_bytes: u64,
}

/// A point of the journal whose state hash is known: written by the store, compared by
/// recovery and `verify` when their replay passes `sequence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub record_hash: RecordHash,
    pub state_hash: StateHash,
}

/// The journal header of this format version.
pub(crate) fn journal_header() -> [u8; JOURNAL_HEADER_BYTES] {
    let mut header = [0u8; JOURNAL_HEADER_BYTES];
    header[..8].copy_from_slice(&JOURNAL_MAGIC);
    header[8..12].copy_from_slice(&JOURNAL_FORMAT_VERSION.to_le_bytes());
    header
}

/// Why a journal header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    NotAJournal,
    UnsupportedVersion(u32),
}

pub(crate) fn check_journal_header(
    header: &[u8; JOURNAL_HEADER_BYTES],
) -> Result<(), HeaderProblem> {
    let mut reader = FieldReader { bytes: header };
    let (Ok(magic), Ok(version), Ok(reserved)) = (reader.array::<8>(), reader.u32(), reader.u32())
    else {
        return Err(HeaderProblem::NotAJournal);
    };
    if magic != JOURNAL_MAGIC {
        return Err(HeaderProblem::NotAJournal);
    }
    if version != JOURNAL_FORMAT_VERSION {
        return Err(HeaderProblem::UnsupportedVersion(version));
    }
    // Reserved must be zero so that a later version can give it a meaning this one refuses.
    if reserved != 0 {
        return Err(HeaderProblem::NotAJournal);
    }
    Ok(())
}

/// The fields of a record to be written; the op is already encoded.
pub(crate) struct NewRecord<'a> {
    pub sequence: u64,
    pub commit_first_sequence: u64,
    pub time_seconds: u64,
    pub signer: Address,
    pub signature: &'a [u8],
    pub op_bytes: &'a [u8],
    pub previous_record_hash: RecordHash,
}

/// The size of the frame `encode_record` would write, or `None` above [`MAXIMUM_RECORD_BYTES`]
/// or with a signature above [`MAXIMUM_SIGNATURE_BYTES`].
pub(crate) fn record_bytes(signature_bytes: usize, op_bytes: usize) -> Option<usize> {
    if signature_bytes > MAXIMUM_SIGNATURE_BYTES || op_bytes == 0 {
        return None;
    }
    let total = LENGTH_PREFIX_BYTES
        .checked_add(FIXED_BODY_BYTES)?
        .checked_add(signature_bytes)?
        .checked_add(op_bytes)?
        .checked_add(HASH_BYTES)?;
    (total <= MAXIMUM_RECORD_BYTES).then_some(total)
}

/// Appends one frame to `out` and returns its record hash. The caller has checked the sizes
/// with [`record_bytes`]; lengths are written as u32, which that bound makes exact.
pub(crate) fn encode_record(record: &NewRecord<'_>, out: &mut Vec<u8>) -> RecordHash {
    let start = out.len();
    let body_length = FIXED_BODY_BYTES + record.signature.len() + record.op_bytes.len();
    out.extend_from_slice(&length_u32(body_length).to_le_bytes());
    out.extend_from_slice(&record.sequence.to_le_bytes());
    out.extend_from_slice(&record.commit_first_sequence.to_le_bytes());
    out.extend_from_slice(&record.time_seconds.to_le_bytes());
    out.extend_from_slice(&record.signer.0);
    out.extend_from_slice(&length_u32(record.signature.len()).to_le_bytes());
    out.extend_from_slice(record.signature);
    out.extend_from_slice(&length_u32(record.op_bytes.len()).to_le_bytes());
    out.extend_from_slice(record.op_bytes);
    out.extend_from_slice(&record.previous_record_hash.0);
    let hash = RecordHash(Sha256::digest(&out[start..]).into());
    out.extend_from_slice(&hash.0);
    hash
}

/// Lengths are bounded by [`MAXIMUM_RECORD_BYTES`] before encoding, which fits in u32 (checked
/// at compile time above); saturating keeps this function total without a panic path.
fn length_u32(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

/// Reads a frame's length prefix: the whole frame's size, or why it cannot be a frame.
pub(crate) fn frame_bytes_from_prefix(
    prefix: [u8; LENGTH_PREFIX_BYTES],
) -> Result<usize, Corruption> {
    let body_bytes = u32::from_le_bytes(prefix) as usize;
    if !(MINIMUM_BODY_BYTES..=MAXIMUM_BODY_BYTES).contains(&body_bytes) {
        return Err(Corruption::BadLength {
            body_bytes: body_bytes as u64,
        });
    }
    Ok(LENGTH_PREFIX_BYTES + body_bytes + HASH_BYTES)
}

/// Checks one whole frame (`frame` is exactly the size its prefix declares) and decodes it. The
/// chain is checked by the caller, which knows the expected sequence and previous hash.
pub(crate) fn decode_frame(frame: &[u8], offset_bytes: u64) -> Result<Record, Corruption> {
    let Some((covered, stored_hash)) = frame.split_last_chunk::<HASH_BYTES>() else {
        return Err(Corruption::BadLength { body_bytes: 0 });
    };
    let computed: [u8; HASH_BYTES] = Sha256::digest(covered).into();
    if computed != *stored_hash {
        return Err(Corruption::HashMismatch);
    }
    let mut reader = FieldReader {
        bytes: covered.get(LENGTH_PREFIX_BYTES..).unwrap_or_default(),
    };
    // The hash matched, so these fields are what a writer wrote; a failure below is a writer
    // bug or a format this build does not understand, never a torn write.
    let sequence = reader.u64()?;
    let commit_first_sequence = reader.u64()?;
    let time_seconds = reader.u64()?;
    let signer = Address(reader.array::<20>()?);
    let signature_bytes = reader.u32()? as usize;
    if signature_bytes > MAXIMUM_SIGNATURE_BYTES {
        return Err(Corruption::InnerLengths);
    }
    let signature = reader.take(signature_bytes)?.to_vec();
    let op_bytes = reader.u32()? as usize;
    let op_slice = reader.take(op_bytes)?;
    let previous_record_hash = RecordHash(reader.array::<HASH_BYTES>()?);
    if !reader.bytes.is_empty() {
        return Err(Corruption::InnerLengths);
    }
    let op = codec::decode_op(op_slice).map_err(|error: DecodeError| Corruption::Op(error))?;
    Ok(Record {
        sequence,
        commit_first_sequence,
        time_seconds,
        signer,
        signature,
        op,
        previous_record_hash,
        record_hash: RecordHash(*stored_hash),
        offset_bytes,
    })
}

/// The commit a frame (exactly one declared frame) belongs to, if it carries a correct record
/// hash: the cheap test used when searching for intact records after a bad one.
pub(crate) fn intact_frame_commit(frame: &[u8]) -> Option<u64> {
    let (covered, stored_hash) = frame.split_last_chunk::<HASH_BYTES>()?;
    if <[u8; HASH_BYTES]>::from(Sha256::digest(covered)) != *stored_hash {
        return None;
    }
    let commit = covered.get(LENGTH_PREFIX_BYTES + 8..LENGTH_PREFIX_BYTES + 16)?;
    Some(u64::from_le_bytes(commit.try_into().ok()?))
}

/// Field reader for a frame whose hash already matched.
struct FieldReader<'a> {
    bytes: &'a [u8],
}

impl<'a> FieldReader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], Corruption> {
        let (head, tail) = self
            .bytes
            .split_at_checked(count)
            .ok_or(Corruption::InnerLengths)?;
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corruption> {
        let (head, tail) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(Corruption::InnerLengths)?;
        self.bytes = tail;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, Corruption> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Corruption> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// The checkpoint file's bytes: `checkpoint` and the ledger's encoded `state`.
pub(crate) fn encode_checkpoint(checkpoint: &Checkpoint, state: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CHECKPOINT_FIXED_BYTES + state.len());
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&checkpoint.sequence.to_le_bytes());
    bytes.extend_from_slice(&checkpoint.record_hash.0);
    bytes.extend_from_slice(&checkpoint.state_hash.0.to_le_bytes());
    let state_length = u64::try_from(state.len()).unwrap_or(u64::MAX);
    bytes.extend_from_slice(&state_length.to_le_bytes());
    bytes.extend_from_slice(state);
    let checksum: [u8; HASH_BYTES] = Sha256::digest(&bytes).into();
    bytes.extend_from_slice(&checksum);
    bytes
}

/// Decodes a checkpoint file into its fields and the encoded state it holds, or says why it is
/// not one. The state bytes are checksummed but not decoded here.
pub(crate) fn decode_checkpoint(bytes: &[u8]) -> Result<(Checkpoint, &[u8]), String> {
    if bytes.len() < CHECKPOINT_FIXED_BYTES {
        return Err(format!(
            "{} bytes where a checkpoint has at least {CHECKPOINT_FIXED_BYTES}",
            bytes.len()
        ));
    }
    let (covered, checksum) = bytes.split_at(bytes.len() - HASH_BYTES);
    if <[u8; HASH_BYTES]>::from(Sha256::digest(covered)) != *checksum {
        return Err("checksum mismatch".to_owned());
    }
    let mut reader = FieldReader { bytes: covered };
    let wrong = |_| "malformed".to_owned();
    if reader.array::<8>().map_err(wrong)? != CHECKPOINT_MAGIC {
        return Err("not a checkpoint (bad magic)".to_owned());
    }
    let version = reader.u32().map_err(wrong)?;
    if version != CHECKPOINT_FORMAT_VERSION {
        return Err(format!("unsupported checkpoint format version {version}"));
    }
    if reader.u32().map_err(wrong)? != 0 {
        return Err("reserved field is not zero".to_owned());
    }
    let sequence = reader.u64().map_err(wrong)?;
    let record_hash = RecordHash(reader.array::<HASH_BYTES>().map_err(wrong)?);
    let state_hash = StateHash(u128::from_le_bytes(reader.array::<16>().map_err(wrong)?));
    let state_length = reader.u64().map_err(wrong)?;
    if u64::try_from(reader.bytes.len()).ok() != Some(state_length) {
        return Err(format!(
            "the state length says {state_length} bytes but {} follow",
            reader.bytes.len()
        ));
    }
    Ok((
        Checkpoint {
            sequence,
            record_hash,
            state_hash,
        },
        reader.bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::Asset;

    fn sample_frame(sequence: u64, previous: RecordHash) -> (Vec<u8>, RecordHash) {
        let mut op_bytes = Vec::new();
        codec::encode_op(
            &Op::Transfer {
                asset: Asset::Diem,
                to: Address([7; 20]),
                amount_units: 42,
            },
            &mut op_bytes,
        );
        let mut frame = Vec::new();
        let hash = encode_record(
            &NewRecord {
                sequence,
                commit_first_sequence: sequence,
                time_seconds: 1_700_000_000,
                signer: Address([9; 20]),
                signature: &[1, 2, 3],
                op_bytes: &op_bytes,
                previous_record_hash: previous,
            },
            &mut frame,
        );
        (frame, hash)
    }

    #[test]
    fn a_frame_round_trips_and_its_size_is_the_documented_one() {
        let (frame, hash) = sample_frame(5, RecordHash([3; 32]));
        let op_length = frame.len() - (LENGTH_PREFIX_BYTES + FIXED_BODY_BYTES + HASH_BYTES) - 3;
        assert_eq!(record_bytes(3, op_length), Some(frame.len()));
        let prefix = frame.first_chunk::<4>().copied().expect("prefix");
        assert_eq!(frame_bytes_from_prefix(prefix), Ok(frame.len()));
        let record = decode_frame(&frame, 16).expect("valid frame");
        assert_eq!(record.sequence, 5);
        assert_eq!(record.signature, vec![1, 2, 3]);
        assert_eq!(record.previous_record_hash, RecordHash([3; 32]));
        assert_eq!(record.record_hash, hash);
        assert_eq!(record.offset_bytes, 16);
        assert_eq!(intact_frame_commit(&frame), Some(5));
    }

    #[test]
    fn any_flipped_bit_in_a_frame_is_detected() {
        let (frame, _) = sample_frame(1, RecordHash::GENESIS_PREVIOUS);
        for index in 0..frame.len() {
            for bit in 0..8 {
                let mut damaged = frame.clone();
                damaged[index] ^= 1 << bit;
                assert!(
                    decode_frame(&damaged, 16).is_err(),
                    "byte {index} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn lengths_outside_the_bounds_are_not_frames() {
        assert!(frame_bytes_from_prefix([0; 4]).is_err());
        assert!(frame_bytes_from_prefix(u32::MAX.to_le_bytes()).is_err());
        let too_small = u32::try_from(MINIMUM_BODY_BYTES - 1).expect("small");
        assert!(frame_bytes_from_prefix(too_small.to_le_bytes()).is_err());
        assert_eq!(record_bytes(MAXIMUM_SIGNATURE_BYTES + 1, 1), None);
        assert_eq!(record_bytes(0, 0), None);
        assert_eq!(record_bytes(0, MAXIMUM_RECORD_BYTES), None);
    }

    #[test]
    fn checkpoints_round_trip_and_damage_is_refused() {
        let checkpoint = Checkpoint {
            sequence: 77,
            record_hash: RecordHash([0xAB; 32]),
            state_hash: StateHash(0x1234_5678_9abc_def0_1122_3344_5566_7788),
        };
        let state = b"any state bytes";
        let bytes = encode_checkpoint(&checkpoint, state);
        assert_eq!(bytes.len(), CHECKPOINT_FIXED_BYTES + state.len());
        assert_eq!(decode_checkpoint(&bytes), Ok((checkpoint, &state[..])));
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x10;
            assert!(decode_checkpoint(&damaged).is_err(), "byte {index}");
        }
        for length in [0, 50, CHECKPOINT_FIXED_BYTES, bytes.len() - 1] {
            assert!(
                decode_checkpoint(&bytes[..length]).is_err(),
                "{length} bytes"
            );
        }

        // A checkpoint of the previous version, with a valid checksum, is not read.
        let mut previous = bytes.clone();
        previous[8..12].copy_from_slice(&2u32.to_le_bytes());
        let covered = previous.len() - HASH_BYTES;
        let checksum = Sha256::digest(&previous[..covered]);
        previous[covered..].copy_from_slice(&checksum);
        assert_eq!(
            decode_checkpoint(&previous),
            Err("unsupported checkpoint format version 2".to_owned())
        );
    }

    #[test]
    fn the_header_is_checked() {
        let header = journal_header();
        assert_eq!(check_journal_header(&header), Ok(()));
        let mut wrong_version = header;
        wrong_version[8] = 2;
        assert_eq!(
            check_journal_header(&wrong_version),
            Err(HeaderProblem::UnsupportedVersion(2))
        );
        let mut wrong_magic = header;
        wrong_magic[0] = b'X';
        assert_eq!(
            check_journal_header(&wrong_magic),
            Err(HeaderProblem::NotAJournal)
        );
        let mut reserved = header;
        reserved[15] = 1;
        assert_eq!(
            check_journal_header(&reserved),
            Err(HeaderProblem::NotAJournal)
        );
    }
}
