//! Gondola's ledger store: the IO half of the ledger. It owns the journal (an append-only,
//! hash-chained, versioned binary file of accepted operations, fsync'd before an operation is
//! acknowledged), recovery (replay, torn-tail truncation, refusal on mid-journal corruption),
//! checkpoints, `verify` and `export`. It must never decide economics: every rule lives in the
//! pure `ledger` crate, and the state is always `replay(journal)`.
//!
//! - [`Store::open`] → ([`Store`], [`RecoveryReport`]); [`Store::submit`] and
//!   [`Store::submit_batch`] apply operations to the in-memory [`ledger::Ledger`] and make the
//!   accepted ones durable (one fsync per call) before returning their [`Receipt`]s.
//! - [`verify`] replays a journal from genesis without changing it; [`export`] writes it as JSON
//!   lines; [`read_records`] walks its records.
//! - [`codec`] is the explicit binary encoding of [`ledger::Op`]; [`mod@format`] documents the
//!   journal and checkpoint files byte by byte.
//!
//! # Decisions
//!
//! **Rejected operations are not journaled.** A rejection changes nothing (the ledger guarantees
//! it and its simulation checks it), so replaying the accepted operations alone reproduces the
//! state exactly, and a flood of invalid submissions cannot grow the journal. Who submitted what
//! and was refused is the gateway's log, not the ledger's history.
//!
//! **Checkpoints are snapshots.** Every [`StoreOptions::checkpoint_interval_records`] records
//! and on [`Store::close`], the store writes the whole state (the ledger's own canonical
//! encoding, `Ledger::encode_state`) with the sequence, record hash and `state_hash` it follows,
//! atomically and checksummed. Recovery loads it (checking its checksum, its state hash and the
//! ledger's full invariant audit), reads and hash-checks the whole journal, confirms the record
//! at the checkpoint's sequence is the one the checkpoint names, and applies only the records
//! after it. A checkpoint that fails any check is ignored and recovery replays from genesis, so
//! it can never make a store unopenable. [`verify`] always replays from genesis and compares
//! the state hash when it passes the checkpoint, which catches nondeterminism (a build whose
//! rules changed) and a journal rewritten or cut short behind the store's back.
//!
//! **Torn tails are decided per commit.** Every record names the first sequence of its commit
//! (its fsync'd append). A bad record followed by an intact record of a later commit is damage
//! to acknowledged data: the store refuses to start and changes nothing. A bad record with
//! nothing after it but its own unfinished commit is a torn write: it is cut off, along with
//! any intact records of that commit after it (a disk may persist a write's pages in any order,
//! and none of that commit was acknowledged).
//!
//! **Group commit is per call.** [`Store::submit_batch`] writes every accepted record of the
//! batch with one `write` and one `fsync`. `Store` takes `&mut self`: batching concurrent callers
//! (a committer thread that drains a bounded queue into `submit_batch`) belongs to the gateway,
//! which owns its threads and queues.

pub mod codec;
mod error;
mod export;
pub mod format;
mod hex;
mod journal;
mod record_hash;
mod store;
pub mod workload;

pub use error::{Corruption, StoreError};
pub use export::{ExportReport, export};
pub use format::{Checkpoint, Record, RecordHash};
pub use journal::{ReadReport, TornTail, read_records};
pub use store::{
    CheckpointCheck, Published, Receipt, RecoveryReport, Store, StoreOptions, Submission,
    VerifyReport, verify,
};

/// The journal's file name inside the store directory.
pub const JOURNAL_FILE_NAME: &str = "ledger.journal";

/// Largest checkpoint file recovery reads (a state of some four million accounts); a larger one
/// is ignored and the journal replayed from genesis instead.
pub const MAXIMUM_CHECKPOINT_BYTES: u64 = 1 << 30;

/// The checkpoint's file name inside the store directory.
pub const CHECKPOINT_FILE_NAME: &str = "ledger.checkpoint";

/// Largest signature the store records. Signatures are opaque here (they are checked before an
/// operation reaches the store): an EIP-191/712 signature is 65 bytes, and smart-contract
/// (ERC-1271) or passkey signatures carry authenticator data and run to a few hundred bytes or
/// about 2 KiB, so 4 KiB leaves room without letting one record carry a payload.
pub const MAXIMUM_SIGNATURE_BYTES: usize = 4 * 1024;

/// Largest whole record (length prefix to record hash). The only large operation is genesis,
/// whose airdrop list costs 36 bytes an address: 64 MiB holds about 1.8 million allocations,
/// more than any airdrop the ledger is meant to model, while a corrupt length prefix can make
/// recovery allocate at most this much. (The next largest, a usage settlement, is at most
/// `ledger::MAXIMUM_USAGE_ENTRIES` entries of 92 bytes: about 370 KiB.)
pub const MAXIMUM_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Most operations in one [`Store::submit_batch`] call. At about 180 bytes a record, 1,024
/// records are one ~180 KiB write: the fsync already costs the same as for one record long
/// before this, and a larger batch would only make its first caller wait longer.
pub const MAXIMUM_BATCH_OPERATIONS: usize = 1_024;

/// Default checkpoint interval. A checkpoint costs encoding and hashing the state (linear in the
/// number of accounts, a few hundred bytes each) and two fsyncs; every 10,000 records that is
/// well under 1% of the journal's work.
pub const DEFAULT_CHECKPOINT_INTERVAL_RECORDS: u64 = 10_000;
