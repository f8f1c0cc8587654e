//! The store: a [`Ledger`] in memory in front of its journal on disk. It owns opening and
//! recovery, the submission path (apply, then append and fsync, then acknowledge), group commit
//! per batch, checkpoints and `verify`. It decides no economics (that is `Ledger::apply`) and
//! runs no threads (batching concurrent callers is the gateway's committer).

use std::io;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ledger::{Address, Ledger, Op, Outcome, Rejection, StateHash};

use crate::codec::encode_op;
use crate::error::{Corruption, StoreError};
use crate::format::{self, Checkpoint, NewRecord, Record, RecordHash};
use crate::journal::{self, JournalWriter, ReadReport, TornTail};
use crate::{
    CHECKPOINT_FILE_NAME, DEFAULT_CHECKPOINT_INTERVAL_RECORDS, MAXIMUM_BATCH_OPERATIONS,
    MAXIMUM_CHECKPOINT_BYTES, MAXIMUM_RECORD_BYTES, MAXIMUM_SIGNATURE_BYTES,
};

/// How to open a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Create the directory and an empty journal when there is none. Off by default, so that a
    /// mistyped path fails instead of starting a new, empty economy.
    pub create_if_missing: bool,
    /// Write a checkpoint each time this many records have been appended since the last one.
    /// The commit that crosses the interval pays for it (a `state_hash` and two fsyncs) before
    /// it returns.
    pub checkpoint_interval_records: NonZeroU64,
}

const DEFAULT_CHECKPOINT_INTERVAL: NonZeroU64 =
    match NonZeroU64::new(DEFAULT_CHECKPOINT_INTERVAL_RECORDS) {
        Some(interval) => interval,
        None => panic!("the default checkpoint interval is zero"),
    };

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            create_if_missing: false,
            checkpoint_interval_records: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

/// One operation to submit in a batch, with the signature the gateway checked (stored as is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub now_seconds: u64,
    pub signer: Address,
    pub signature: Vec<u8>,
    pub op: Op,
}

/// An accepted operation, durable in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub sequence: u64,
    pub record_hash: RecordHash,
    pub outcome: Outcome,
}

/// The records of one commit, as [`Store::submit_batch_published`] hands them to the shared
/// journal: each record's sequence and hash, and its frame (the bytes the journal file holds).
pub struct Published<'a> {
    frames: &'a [u8],
    records: &'a [(u64, RecordHash, std::ops::Range<usize>)],
}

impl Published<'_> {
    /// Each record's sequence, hash and frame, in order.
    pub fn records(&self) -> impl Iterator<Item = (u64, RecordHash, &[u8])> {
        self.records.iter().map(|(sequence, hash, range)| {
            (
                *sequence,
                *hash,
                self.frames.get(range.clone()).unwrap_or_default(),
            )
        })
    }
}

/// What became of the checkpoint file when a journal was opened or verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointCheck {
    /// There is none (a new store, or one that never reached a checkpoint).
    Absent,
    /// Recovery started from the checkpoint's state: the journal's record at its sequence has
    /// the checkpoint's record hash, and only the records after it were applied.
    Restored { sequence: u64 },
    /// A replay from genesis passed the checkpoint's record with the same record hash and state
    /// hash (what `verify` does, and recovery when the checkpoint had no usable state).
    Matched { sequence: u64 },
    /// The file is unusable (bad checksum, unknown version, a state that does not decode or
    /// fails its hash or the invariant audit). Recovery then replays from genesis, and the next
    /// checkpoint replaces it.
    Ignored { reason: String },
}

/// What [`Store::open`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records read and checked (hash chain and record hashes): the whole journal.
    pub records_read: u64,
    /// Records applied to the ledger: those after the checkpoint it restored, or all of them.
    pub records_replayed: u64,
    pub last_sequence: u64,
    pub last_record_hash: RecordHash,
    /// The tail that was cut off, if the journal ended in one.
    pub torn_tail: Option<TornTail>,
    pub checkpoint: CheckpointCheck,
    /// Reading, checking and replaying the journal.
    pub replay_duration: Duration,
}

/// What [`verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub last_sequence: u64,
    pub last_record_hash: RecordHash,
    /// The state root after replaying every valid record.
    pub state_hash: StateHash,
    /// A torn tail that recovery would cut off; `verify` leaves it in place.
    pub torn_tail: Option<TornTail>,
    pub checkpoint: CheckpointCheck,
}

impl VerifyReport {
    /// Whether the final state root was compared with a recorded one: true when the checkpoint
    /// (written by [`Store::close`] on a clean shutdown) covers the last record.
    pub fn final_state_checked(&self) -> bool {
        self.checkpoint
            == CheckpointCheck::Matched {
                sequence: self.last_sequence,
            }
    }
}

/// The ledger and its journal. One `Store` per directory: the journal is locked while open.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    journal: JournalWriter,
    ledger: Ledger,
    last_sequence: u64,
    last_record_hash: RecordHash,
    last_checkpoint_sequence: u64,
    checkpoint_error: Option<StoreError>,
    journal_syncs: u64,
    /// Set while the in-memory ledger may be ahead of the journal: from the moment an operation
    /// is applied until its record is durable (or it was rejected). It stays set if a write or
    /// fsync fails, or if a submission unwinds, and then every call refuses with `Poisoned`.
    poisoned: bool,
    /// Reused buffers: encoded operations and the frames of one commit.
    op_bytes: Vec<u8>,
    frames: Vec<u8>,
}

impl Store {
    /// Opens the store in `dir`: locks the journal, replays it into a fresh ledger, compares
    /// the checkpoint, and cuts off a torn tail. Refuses (changing nothing) on damage in the
    /// middle of the journal, on a journaled operation the ledger now rejects, and on a
    /// checkpoint the replay contradicts.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<(Self, RecoveryReport), StoreError> {
        let started = Instant::now();
        let path = journal::journal_path(dir);
        let exists = path
            .try_exists()
            .map_err(|error| StoreError::io("look for journal", &path, error))?;
        if !exists {
            if !options.create_if_missing {
                return Err(StoreError::Missing { path });
            }
            std::fs::create_dir_all(dir)
                .map_err(|error| StoreError::io("create store directory", dir, error))?;
            journal::create(dir, &path)?;
        }
        // Lock before reading, so that the replay sees a journal nobody else is appending to.
        let mut writer = JournalWriter::open_locked(&path)?;
        let replayed = replay(dir, &path, Start::FromCheckpoint)?;
        // Only now that the journal is known to be sound does anything on disk change.
        journal::remove_temporary_files(dir)?;
        writer.truncate_and_position(replayed.read.valid_bytes)?;
        let last_checkpoint_sequence = match replayed.checkpoint {
            CheckpointCheck::Matched { sequence } | CheckpointCheck::Restored { sequence } => {
                sequence
            }
            CheckpointCheck::Absent | CheckpointCheck::Ignored { .. } => 0,
        };
        let report = RecoveryReport {
            records_read: replayed.read.records,
            records_replayed: replayed.records_applied,
            last_sequence: replayed.read.last_sequence,
            last_record_hash: replayed.read.last_record_hash,
            torn_tail: replayed.read.torn_tail,
            checkpoint: replayed.checkpoint,
            replay_duration: started.elapsed(),
        };
        let mut store = Self {
            dir: dir.to_owned(),
            options,
            journal: writer,
            ledger: replayed.ledger,
            last_sequence: replayed.read.last_sequence,
            last_record_hash: replayed.read.last_record_hash,
            last_checkpoint_sequence,
            checkpoint_error: None,
            journal_syncs: 0,
            poisoned: false,
            op_bytes: Vec::new(),
            frames: Vec::new(),
        };
        store.checkpoint_if_due();
        Ok((store, report))
    }

    /// Applies one operation signed by `signer` (whose `signature` the caller has checked; it
    /// is stored as given) at `now_seconds`. Accepted: the record is appended and fsync'd
    /// before this returns `Ok(Ok(receipt))`. Rejected: `Ok(Err(rejection))`, nothing is
    /// written, because a rejection changes nothing and replaying accepted operations alone
    /// rebuilds the same state.
    ///
    /// `Err` means the outcome is unknown: the record may or may not be in the journal after
    /// recovery (a write can reach the disk although its fsync reported failure), and the store
    /// refuses further work until it is reopened.
    pub fn submit(
        &mut self,
        now_seconds: u64,
        signer: Address,
        signature: &[u8],
        op: Op,
    ) -> Result<Result<Receipt, Rejection>, StoreError> {
        self.refuse_if_poisoned()?;
        self.op_bytes.clear();
        encode_op(&op, &mut self.op_bytes);
        check_record_size(0, signature.len(), self.op_bytes.len())?;
        self.poisoned = true;
        let outcome = match self.ledger.apply(now_seconds, signer, op) {
            Ok(outcome) => outcome,
            Err(rejection) => {
                self.poisoned = false;
                return Ok(Err(rejection));
            }
        };
        let sequence = self.last_sequence + 1;
        self.frames.clear();
        let record_hash = format::encode_record(
            &NewRecord {
                sequence,
                commit_first_sequence: sequence,
                time_seconds: now_seconds,
                signer,
                signature,
                op_bytes: &self.op_bytes,
                previous_record_hash: self.last_record_hash,
            },
            &mut self.frames,
        );
        self.journal.append_durably(&self.frames)?;
        self.journal_syncs += 1;
        self.last_sequence = sequence;
        self.last_record_hash = record_hash;
        self.poisoned = false;
        self.checkpoint_if_due();
        Ok(Ok(Receipt {
            sequence,
            record_hash,
            outcome,
        }))
    }

    /// Group commit: applies the submissions in order (each sees the effects of the ones
    /// before it), writes the records of the accepted ones with one write and one fsync, and
    /// returns one result per submission, in order. Nothing is acknowledged before the fsync.
    ///
    /// A signature or record over its limit, or a batch over [`MAXIMUM_BATCH_OPERATIONS`],
    /// fails the whole call before anything is applied: those are the caller's bugs, bounded at
    /// its edge. `Err` otherwise means what it means for [`Store::submit`].
    pub fn submit_batch(
        &mut self,
        submissions: Vec<Submission>,
    ) -> Result<Vec<Result<Receipt, Rejection>>, StoreError> {
        self.submit_batch_published(submissions, |_| Ok::<(), std::convert::Infallible>(()))
    }

    /// [`Store::submit_batch`] for a journal shared by several stores: the accepted records are
    /// handed to `publish` (which makes them durable in the shared journal, or fails) before
    /// they are appended here, so this journal never holds a record the shared one lacks.
    /// `publish` is not called when every submission was rejected. If it fails, the call fails
    /// with [`StoreError::Publish`] and the store refuses work until [`Store::recover`].
    pub fn submit_batch_published<E: std::fmt::Display>(
        &mut self,
        submissions: Vec<Submission>,
        publish: impl FnOnce(&Published<'_>) -> Result<(), E>,
    ) -> Result<Vec<Result<Receipt, Rejection>>, StoreError> {
        self.refuse_if_poisoned()?;
        if submissions.len() > MAXIMUM_BATCH_OPERATIONS {
            return Err(StoreError::BatchTooLarge {
                operations: submissions.len(),
                maximum: MAXIMUM_BATCH_OPERATIONS,
            });
        }
        // Encode and size-check everything first, so a bad submission fails the call before the
        // ledger has applied any of the batch.
        self.op_bytes.clear();
        let mut op_ends = Vec::with_capacity(submissions.len());
        for (index, submission) in submissions.iter().enumerate() {
            let start = self.op_bytes.len();
            encode_op(&submission.op, &mut self.op_bytes);
            check_record_size(
                index,
                submission.signature.len(),
                self.op_bytes.len() - start,
            )?;
            op_ends.push(self.op_bytes.len());
        }

        self.poisoned = true;
        self.frames.clear();
        let mut results = Vec::with_capacity(submissions.len());
        let mut records = Vec::new();
        let mut sequence = self.last_sequence;
        // Every record of this commit names its first sequence, so that recovery can tell an
        // unfinished last commit from damage to an acknowledged one.
        let commit_first_sequence = self.last_sequence + 1;
        let mut previous_record_hash = self.last_record_hash;
        let mut op_start = 0;
        for (submission, op_end) in submissions.into_iter().zip(op_ends) {
            let op_bytes = self.op_bytes.get(op_start..op_end).unwrap_or_default();
            op_start = op_end;
            let Submission {
                now_seconds,
                signer,
                signature,
                op,
            } = submission;
            match self.ledger.apply(now_seconds, signer, op) {
                Ok(outcome) => {
                    sequence += 1;
                    let frame_start = self.frames.len();
                    previous_record_hash = format::encode_record(
                        &NewRecord {
                            sequence,
                            commit_first_sequence,
                            time_seconds: now_seconds,
                            signer,
                            signature: &signature,
                            op_bytes,
                            previous_record_hash,
                        },
                        &mut self.frames,
                    );
                    records.push((
                        sequence,
                        previous_record_hash,
                        frame_start..self.frames.len(),
                    ));
                    results.push(Ok(Receipt {
                        sequence,
                        record_hash: previous_record_hash,
                        outcome,
                    }));
                }
                Err(rejection) => results.push(Err(rejection)),
            }
        }
        if !self.frames.is_empty() {
            if let Err(error) = publish(&Published {
                frames: &self.frames,
                records: &records,
            }) {
                return Err(StoreError::Publish {
                    reason: error.to_string(),
                    pending: results,
                });
            }
            self.journal.append_durably(&self.frames)?;
            self.journal_syncs += 1;
        }
        self.last_sequence = sequence;
        self.last_record_hash = previous_record_hash;
        self.poisoned = false;
        self.checkpoint_if_due();
        Ok(results)
    }

    /// Applies records another store published to the journal this one shares (in order, each
    /// continuing this journal's chain), appends their frames as they are with one fsync, and
    /// returns them decoded. A frame that is damaged, out of order, from another history, or
    /// that the ledger rejects fails the call; records before it are applied and kept.
    pub fn apply_published(
        &mut self,
        frames: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Vec<Record>, StoreError> {
        self.refuse_if_poisoned()?;
        let mut applied = Vec::new();
        let mut written = Vec::new();
        let mut failure = None;
        for frame in frames {
            let record = match self.check_published(&frame) {
                Ok(record) => record,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            self.poisoned = true;
            if let Err(rejection) =
                self.ledger
                    .apply(record.time_seconds, record.signer, record.op.clone())
            {
                // The ledger leaves its state unchanged when it rejects.
                self.poisoned = false;
                failure = Some(StoreError::ReplayRejected {
                    sequence: record.sequence,
                    offset_bytes: self.journal.end_bytes() + written.len() as u64,
                    rejection,
                });
                break;
            }
            written.extend_from_slice(&frame);
            self.last_sequence = record.sequence;
            self.last_record_hash = record.record_hash;
            applied.push(record);
        }
        if !written.is_empty() {
            self.poisoned = true;
            self.journal.append_durably(&written)?;
            self.journal_syncs += 1;
        }
        self.poisoned = false;
        self.checkpoint_if_due();
        match failure {
            Some(error) => Err(error),
            None => Ok(applied),
        }
    }

    /// Decodes a published frame and checks that it is the next record of this journal.
    fn check_published(&self, frame: &[u8]) -> Result<Record, StoreError> {
        let sequence = self.last_sequence + 1;
        let diverged = |reason| StoreError::Diverged { sequence, reason };
        let prefix: [u8; format::LENGTH_PREFIX_BYTES] = frame
            .get(..format::LENGTH_PREFIX_BYTES)
            .and_then(|prefix| prefix.try_into().ok())
            .ok_or_else(|| diverged(Corruption::BadLength { body_bytes: 0 }))?;
        let declared = format::frame_bytes_from_prefix(prefix).map_err(diverged)?;
        if declared != frame.len() {
            return Err(diverged(Corruption::InnerLengths));
        }
        let record = format::decode_frame(frame, self.journal.end_bytes()).map_err(diverged)?;
        if record.sequence != sequence {
            return Err(diverged(Corruption::SequenceGap {
                expected: sequence,
                found: record.sequence,
            }));
        }
        if record.previous_record_hash != self.last_record_hash {
            return Err(diverged(Corruption::ChainBroken));
        }
        if record.commit_first_sequence > record.sequence
            || (record.commit_first_sequence != record.sequence
                && record.commit_first_sequence > self.last_sequence)
        {
            return Err(diverged(Corruption::CommitBroken));
        }
        Ok(record)
    }

    /// Rebuilds the ledger from this store's journal after a failed submission or publication,
    /// as [`Store::open`] would, and takes work again.
    pub fn recover(&mut self) -> Result<(), StoreError> {
        let path = journal::journal_path(&self.dir);
        let replayed = replay(&self.dir, &path, Start::FromCheckpoint)?;
        self.journal
            .truncate_and_position(replayed.read.valid_bytes)?;
        self.ledger = replayed.ledger;
        self.last_sequence = replayed.read.last_sequence;
        self.last_record_hash = replayed.read.last_record_hash;
        self.poisoned = false;
        Ok(())
    }

    /// The frames of this journal's records after `sequence`, in order, as a shared journal
    /// stores them: for publishing a journal that was kept alone until now.
    pub fn frames_after(
        &self,
        sequence: u64,
    ) -> Result<Vec<(u64, RecordHash, Vec<u8>)>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};

        let path = journal::journal_path(&self.dir);
        let mut starts = Vec::new();
        journal::scan(&path, |record| {
            if record.sequence > sequence {
                starts.push((record.sequence, record.record_hash, record.offset_bytes));
            }
            Ok(())
        })?;
        let mut file = std::fs::File::open(&path)
            .map_err(|error| StoreError::io("open journal", &path, error))?;
        let mut frames = Vec::with_capacity(starts.len());
        for (sequence, record_hash, offset) in starts {
            let mut prefix = [0u8; format::LENGTH_PREFIX_BYTES];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut prefix))
                .map_err(|error| StoreError::io("read journal", &path, error))?;
            let length = format::frame_bytes_from_prefix(prefix).map_err(|reason| {
                StoreError::Unreadable {
                    path: path.clone(),
                    offset_bytes: offset,
                    sequence,
                    reason,
                }
            })?;
            let mut frame = vec![0u8; length];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut frame))
                .map_err(|error| StoreError::io("read journal", &path, error))?;
            frames.push((sequence, record_hash, frame));
        }
        Ok(frames)
    }

    /// Writes a checkpoint of the current state now (the store also writes one every
    /// [`StoreOptions::checkpoint_interval_records`] records and on [`Store::close`]): the
    /// whole state, encoded, with the sequence and record hash it follows.
    pub fn write_checkpoint(&mut self) -> Result<Checkpoint, StoreError> {
        self.refuse_if_poisoned()?;
        let mut state = Vec::new();
        self.ledger.encode_state(&mut state);
        let checkpoint = Checkpoint {
            sequence: self.last_sequence,
            record_hash: self.last_record_hash,
            state_hash: self.ledger.state_hash(),
        };
        write_checkpoint_file(&self.dir, &checkpoint, &state)?;
        self.last_checkpoint_sequence = checkpoint.sequence;
        self.checkpoint_error = None;
        Ok(checkpoint)
    }

    /// A clean shutdown: writes a checkpoint at the last record, so that `verify` can check the
    /// final state root, and releases the journal's lock. Dropping a store without closing it
    /// loses nothing (every acknowledged record is already durable).
    pub fn close(mut self) -> Result<Checkpoint, StoreError> {
        self.write_checkpoint()
    }

    /// The ledger as of the last acknowledged operation, for queries.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The sequence of the last record in the journal (0 when there is none).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    pub fn last_record_hash(&self) -> RecordHash {
        self.last_record_hash
    }

    /// The time of the last accepted operation (0 before genesis).
    pub fn last_time_seconds(&self) -> u64 {
        self.ledger.now_seconds()
    }

    /// The journal's length: header and records.
    pub fn journal_bytes(&self) -> u64 {
        self.journal.end_bytes()
    }

    /// How many fsyncs of the journal this store has made since it was opened: one per commit
    /// that wrote records.
    pub fn journal_syncs(&self) -> u64 {
        self.journal_syncs
    }

    /// Why the last automatic checkpoint failed, until one succeeds. A failed checkpoint does not
    /// fail the submission that triggered it: the records are already durable, and the
    /// checkpoint is only a cross-check; it is retried at the next commit.
    pub fn last_checkpoint_error(&self) -> Option<&StoreError> {
        self.checkpoint_error.as_ref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn refuse_if_poisoned(&self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    fn checkpoint_if_due(&mut self) {
        let since = self.last_sequence - self.last_checkpoint_sequence;
        if since >= self.options.checkpoint_interval_records.get()
            && let Err(error) = self.write_checkpoint()
        {
            self.checkpoint_error = Some(error);
        }
    }
}

/// Replays the journal in `dir` from genesis without changing anything, checks the hash chain,
/// every record hash and the checkpoint, confirms that the ledger accepts every journaled
/// operation again, and returns the final state root. Takes no lock: against a live store it
/// reads the records that existed when it started (and may see the store's in-flight write as a
/// torn tail).
pub fn verify(dir: &Path) -> Result<VerifyReport, StoreError> {
    let replayed = replay(dir, &journal::journal_path(dir), Start::FromGenesis)?;
    Ok(VerifyReport {
        records: replayed.read.records,
        last_sequence: replayed.read.last_sequence,
        last_record_hash: replayed.read.last_record_hash,
        state_hash: replayed.ledger.state_hash(),
        torn_tail: replayed.read.torn_tail,
        checkpoint: replayed.checkpoint,
    })
}

struct Replayed {
    ledger: Ledger,
    read: ReadReport,
    records_applied: u64,
    checkpoint: CheckpointCheck,
}

/// Where a replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// From the checkpoint's state when it is usable (recovery).
    FromCheckpoint,
    /// From an empty ledger, comparing the checkpoint on the way (`verify`).
    FromGenesis,
}

/// The checkpoint file of `dir`: its fields and its state, decoded, checked against its state
/// hash and audited. `Err` only for IO failures; an unusable file is `Ignored` with the reason.
fn read_checkpoint(
    dir: &Path,
) -> Result<(Option<(Checkpoint, Ledger)>, CheckpointCheck), StoreError> {
    use std::io::Read;

    let path = dir.join(CHECKPOINT_FILE_NAME);
    let ignored = |reason: String| Ok((None, CheckpointCheck::Ignored { reason }));
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok((None, CheckpointCheck::Absent));
        }
        Err(error) => return Err(StoreError::io("open checkpoint", path, error)),
    };
    let mut bytes = Vec::new();
    file.take(MAXIMUM_CHECKPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| StoreError::io("read checkpoint", &path, error))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAXIMUM_CHECKPOINT_BYTES {
        return ignored(format!(
            "larger than the limit of {MAXIMUM_CHECKPOINT_BYTES} bytes"
        ));
    }
    let (checkpoint, state) = match format::decode_checkpoint(&bytes) {
        Ok(decoded) => decoded,
        Err(reason) => return ignored(reason),
    };
    // The fingerprint is the hash of the encoding, so the bytes are checked before decoding.
    if StateHash::of_encoding(state) != checkpoint.state_hash {
        return ignored("its state does not have its state hash".to_owned());
    }
    let ledger = match Ledger::decode_state(state) {
        Ok(ledger) => ledger,
        Err(error) => return ignored(format!("its state does not decode: {error}")),
    };
    // The audit panics on the first broken invariant: a state that passed its checksum and
    // hash yet breaks one was written by a faulty build, and recovery must not start from it.
    let audited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ledger.assert_invariants_full();
    }));
    if audited.is_err() {
        return ignored("its state fails the invariant audit".to_owned());
    }
    Ok((Some((checkpoint, ledger)), CheckpointCheck::Absent))
}

/// Reads the journal at `path` into a ledger: from the checkpoint's state (recovery, when the
/// checkpoint is usable) or from genesis (comparing the checkpoint when the replay passes it).
/// Every record's hash and the hash chain are checked either way.
///
/// The checkpoint is read before the journal's length is taken. A live store writes a
/// checkpoint only after the records it covers are durable, so a `verify` running beside it
/// never sees a checkpoint ahead of the journal it reads.
fn replay(dir: &Path, path: &Path, start: Start) -> Result<Replayed, StoreError> {
    let (loaded, mut check) = read_checkpoint(dir)?;
    let checkpoint = loaded.as_ref().map(|(checkpoint, _)| *checkpoint);
    let mut restore = match (start, loaded) {
        (Start::FromCheckpoint, Some((checkpoint, state))) => Some((checkpoint, state)),
        _ => None,
    };
    let mut ledger = Ledger::new();
    let compare = |ledger: &Ledger, sequence, record_hash| -> Result<CheckpointCheck, StoreError> {
        let state_hash = ledger.state_hash();
        match checkpoint {
            Some(checkpoint)
                if checkpoint.record_hash != record_hash || checkpoint.state_hash != state_hash =>
            {
                Err(StoreError::CheckpointMismatch {
                    sequence,
                    checkpoint_record_hash: checkpoint.record_hash,
                    checkpoint_state_hash: checkpoint.state_hash,
                    replayed_record_hash: record_hash,
                    replayed_state_hash: state_hash,
                })
            }
            _ => Ok(CheckpointCheck::Matched { sequence }),
        }
    };
    // Takes the checkpoint's state as the ledger once the journal has shown the same record at
    // the checkpoint's sequence.
    let restore_at = |restore: &mut Option<(Checkpoint, Ledger)>,
                      ledger: &mut Ledger,
                      sequence: u64,
                      record_hash: RecordHash|
     -> Result<CheckpointCheck, StoreError> {
        match restore.take() {
            Some((checkpoint, _)) if checkpoint.record_hash != record_hash => {
                Err(StoreError::CheckpointRecordMismatch {
                    sequence,
                    checkpoint_record_hash: checkpoint.record_hash,
                    journal_record_hash: record_hash,
                })
            }
            Some((_, state)) => {
                *ledger = state;
                Ok(CheckpointCheck::Restored { sequence })
            }
            None => Ok(CheckpointCheck::Absent),
        }
    };
    let checkpoint_sequence = checkpoint.map(|checkpoint| checkpoint.sequence);
    let restore_sequence = restore.as_ref().map(|(checkpoint, _)| checkpoint.sequence);
    if checkpoint_sequence == Some(0) {
        check = if restore.is_some() {
            restore_at(&mut restore, &mut ledger, 0, RecordHash::GENESIS_PREVIOUS)?
        } else {
            compare(&ledger, 0, RecordHash::GENESIS_PREVIOUS)?
        };
    }
    let mut records_applied = 0u64;
    let read = journal::scan(path, |record| {
        let sequence = record.sequence;
        let record_hash = record.record_hash;
        if let Some(restore_sequence) = restore_sequence
            && sequence <= restore_sequence
        {
            if sequence == restore_sequence {
                check = restore_at(&mut restore, &mut ledger, sequence, record_hash)?;
            }
            return Ok(());
        }
        let offset_bytes = record.offset_bytes;
        ledger
            .apply(record.time_seconds, record.signer, record.op)
            .map_err(|rejection| StoreError::ReplayRejected {
                sequence,
                offset_bytes,
                rejection,
            })?;
        records_applied += 1;
        if checkpoint_sequence == Some(sequence) {
            check = compare(&ledger, sequence, record_hash)?;
        }
        Ok(())
    })?;
    if let Some(checkpoint_sequence) = checkpoint_sequence
        && checkpoint_sequence > read.last_sequence
    {
        return Err(StoreError::CheckpointAhead {
            checkpoint_sequence,
            journal_sequence: read.last_sequence,
        });
    }
    Ok(Replayed {
        ledger,
        read,
        records_applied,
        checkpoint: check,
    })
}

/// Writes the checkpoint atomically: a temporary file in the same directory, fsync'd, renamed
/// over the old one, and the directory fsync'd. A crash leaves the old checkpoint or the new
/// one, never a mixture.
fn write_checkpoint_file(
    dir: &Path,
    checkpoint: &Checkpoint,
    state: &[u8],
) -> Result<(), StoreError> {
    use std::io::Write;

    let path = dir.join(CHECKPOINT_FILE_NAME);
    let mut temporary = journal::temporary_file_in(dir)?;
    temporary
        .write_all(&format::encode_checkpoint(checkpoint, state))
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(|error| StoreError::io("write checkpoint", temporary.path(), error))?;
    temporary
        .persist(&path)
        .map_err(|error| StoreError::io("replace checkpoint", &path, error.error))?;
    journal::sync_directory(dir)
}

fn check_record_size(
    index: usize,
    signature_bytes: usize,
    op_bytes: usize,
) -> Result<(), StoreError> {
    if signature_bytes > MAXIMUM_SIGNATURE_BYTES {
        return Err(StoreError::SignatureTooLong {
            index,
            signature_bytes,
            maximum_bytes: MAXIMUM_SIGNATURE_BYTES,
        });
    }
    if format::record_bytes(signature_bytes, op_bytes).is_none() {
        return Err(StoreError::RecordTooLarge {
            index,
            maximum_bytes: MAXIMUM_RECORD_BYTES,
        });
    }
    Ok(())
}
