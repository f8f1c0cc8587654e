//! The store's errors: what went wrong with the files, the journal's contents or a submission.
//! A rejection by the ledger is not an error here; it is the inner `Result` of a submission.

use std::io;
use std::path::PathBuf;

use ledger::{Rejection, StateHash};

use crate::codec::DecodeError;
use crate::record_hash::RecordHash;

/// Why a frame of the journal is not a valid next record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("the record needs {needed_bytes} bytes but the file ends after {available_bytes}")]
    Truncated {
        needed_bytes: u64,
        available_bytes: u64,
    },
    #[error("length prefix {body_bytes} is outside the bounds of a record")]
    BadLength { body_bytes: u64 },
    #[error("the record hash does not match its contents")]
    HashMismatch,
    #[error("the inner lengths do not add up to the record's length")]
    InnerLengths,
    #[error("expected sequence {expected}, found {found}")]
    SequenceGap { expected: u64, found: u64 },
    #[error("the previous-record hash does not match the record before it")]
    ChainBroken,
    #[error("the record's commit does not continue the previous record's or start at itself")]
    CommitBroken,
    #[error("the operation does not decode: {0}")]
    Op(DecodeError),
}

/// Everything [`crate::Store`], [`crate::verify`] and [`crate::export`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("no ledger store at {} (and creating one was not asked for)", path.display())]
    Missing { path: PathBuf },

    #[error("the ledger store at {} is open in another process", path.display())]
    Locked { path: PathBuf },

    #[error("{} is not a Gondola ledger journal (bad header)", path.display())]
    NotAJournal { path: PathBuf },

    #[error(
        "{} has journal format version {found}; this build reads version {supported}",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// A bad record with valid records after it: not a torn tail, so nothing is truncated and
    /// the store refuses to start. The journal is left exactly as it was found.
    #[error(
        "journal {} is corrupt at byte {offset_bytes}, where record {sequence} should be: \
         {reason}; a valid record follows at byte {next_valid_offset_bytes}, so this is damage \
         in the middle of the journal, not a torn tail; refusing to continue",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset_bytes: u64,
        sequence: u64,
        reason: Corruption,
        next_valid_offset_bytes: u64,
    },

    /// A record whose hash is valid but whose contents cannot be decoded (an operation this
    /// build does not know, inner lengths that do not add up). The bytes are what a writer
    /// wrote, so truncating them would destroy data rather than a torn write.
    #[error(
        "journal {} record {sequence} at byte {offset_bytes} is intact but unusable: {reason}",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        offset_bytes: u64,
        sequence: u64,
        reason: Corruption,
    },

    /// A journaled operation the ledger now rejects: the journal only holds accepted
    /// operations, so this is nondeterminism (rules changed under an existing journal) or a
    /// record that was forged with a valid hash.
    #[error(
        "journal record {sequence} at byte {offset_bytes} was accepted when written but is \
         rejected on replay ({rejection}): the ledger's rules changed or the journal was forged"
    )]
    ReplayRejected {
        sequence: u64,
        offset_bytes: u64,
        rejection: Rejection,
    },

    #[error(
        "checkpoint at record {sequence} does not match the replay: checkpoint has record hash \
         {checkpoint_record_hash} and state hash {checkpoint_state_hash}, replay has \
         {replayed_record_hash} and {replayed_state_hash}"
    )]
    CheckpointMismatch {
        sequence: u64,
        checkpoint_record_hash: RecordHash,
        checkpoint_state_hash: StateHash,
        replayed_record_hash: RecordHash,
        replayed_state_hash: StateHash,
    },

    /// Recovery from the checkpoint's state found a different record at its sequence: the
    /// journal is not the one the checkpoint was taken from.
    #[error(
        "the checkpoint at record {sequence} has record hash {checkpoint_record_hash} but the \
         journal's record there has {journal_record_hash}: they are not the same history"
    )]
    CheckpointRecordMismatch {
        sequence: u64,
        checkpoint_record_hash: RecordHash,
        journal_record_hash: RecordHash,
    },

    /// The checkpoint is written only after the records it covers are fsync'd, so a journal
    /// that ends before it has lost acknowledged operations (or was replaced).
    #[error(
        "the checkpoint covers record {checkpoint_sequence} but the journal's valid records end \
         at {journal_sequence}: acknowledged operations are missing"
    )]
    CheckpointAhead {
        checkpoint_sequence: u64,
        journal_sequence: u64,
    },

    #[error(
        "submission {index}: a signature of {signature_bytes} bytes is over the limit of {maximum_bytes}"
    )]
    SignatureTooLong {
        index: usize,
        signature_bytes: usize,
        maximum_bytes: usize,
    },

    #[error("submission {index}: the record would be over the limit of {maximum_bytes} bytes")]
    RecordTooLarge { index: usize, maximum_bytes: usize },

    #[error("a batch of {operations} operations is over the limit of {maximum}")]
    BatchTooLarge { operations: usize, maximum: usize },

    /// A write or fsync failed, or a submission panicked, after the in-memory ledger had
    /// applied operations: memory may be ahead of the disk, so the store refuses further work
    /// until it is reopened and recovers from the journal.
    #[error(
        "the store stopped after a failed write or fsync; reopen it to recover from the journal"
    )]
    Poisoned,

    /// The shared journal a batch was published to did not take it (see
    /// [`crate::Store::submit_batch_published`]): the ledger in memory had applied it, so the
    /// store refuses further work until [`crate::Store::recover`] has replayed the journal.
    /// `pending` is what the batch's results are if the shared journal did take it after all
    /// (an answer lost with its connection).
    #[error("the shared journal did not take the records: {reason}")]
    Publish {
        reason: String,
        pending: Vec<Result<crate::Receipt, Rejection>>,
    },

    /// A record from the shared journal does not continue this store's journal: another
    /// history, or a gap.
    #[error("the shared journal's record {sequence} does not continue this journal: {reason}")]
    Diverged { sequence: u64, reason: Corruption },
}

impl StoreError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}
