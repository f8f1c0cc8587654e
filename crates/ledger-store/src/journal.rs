//! The journal file: creating it, appending to it durably, and reading it back frame by frame
//! with the one rule that decides between repair and refusal. It owns no ledger state; replay is
//! the caller's visitor.
//!
//! The rule: reading stops at the first frame that is not the valid next record (partial, failing
//! its hash, or out of sequence, chain or commit). Then the rest of the file is searched for
//! intact records (a correct record hash and a plausible later sequence):
//!
//! - one that belongs to a later commit than the bad frame's means the bad frame was in a commit
//!   that had been fsync'd and acknowledged before that later commit was written: damage in the
//!   middle. Reading fails with [`StoreError::Corrupt`] and the file is left alone.
//! - otherwise the bad frame is in the last commit, which a crash interrupted before its fsync
//!   returned, so none of it was acknowledged: everything from the bad frame on is a torn tail
//!   ([`TornTail`]), including intact records of that commit after it (the disk may persist a
//!   write's pages in any order), and [`crate::Store::open`] truncates it.
//!
//! Why this is safe: a commit is written and fsync'd before any of it is acknowledged and before
//! the next commit is written, so a crash can only damage the last commit. What it cannot tell
//! apart: media damage to the last commit after it was acknowledged looks like a torn write,
//! and that commit is dropped. Guarding against that needs redundant copies of recent records
//! (TigerBeetle keeps redundant headers), which this format does not have.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Corruption, StoreError};
use crate::format::{
    self, HeaderProblem, JOURNAL_FORMAT_VERSION, JOURNAL_HEADER_BYTES, LENGTH_PREFIX_BYTES,
    MINIMUM_RECORD_BYTES, Record, RecordHash,
};
use crate::{JOURNAL_FILE_NAME, MAXIMUM_RECORD_BYTES};

/// Read buffer for replay: large enough that reading is a few hundred system calls for a
/// million records, small enough not to matter beside the ledger.
const READ_BUFFER_BYTES: usize = 1024 * 1024;

/// Window for the search for valid records after a bad frame.
const SEARCH_WINDOW_BYTES: usize = 1024 * 1024;

/// Bytes of a frame the search's cheap filter looks at: the length prefix and the sequence.
const FILTER_BYTES: usize = LENGTH_PREFIX_BYTES + 8;

/// The end of a journal that is not a valid record and has no valid record after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where the valid records end and the tail begins.
    pub offset_bytes: u64,
    /// How many bytes the tail has (all of them are dropped by recovery).
    pub dropped_bytes: u64,
    /// Intact records of the unfinished last commit found after the bad frame. They are
    /// dropped with it: their predecessor is gone, and none of their commit was acknowledged.
    /// The bad frame itself, and any records too damaged to recognise, are not counted.
    pub intact_records_dropped: u64,
    /// Why the first frame of the tail is not a valid record.
    pub reason: Corruption,
}

/// What reading a journal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadReport {
    /// Valid records read.
    pub records: u64,
    /// The last valid record's sequence (0 when there is none).
    pub last_sequence: u64,
    /// The last valid record's hash ([`RecordHash::GENESIS_PREVIOUS`] when there is none).
    pub last_record_hash: RecordHash,
    /// The last valid record's time (0 when there is none).
    pub last_time_seconds: u64,
    /// Bytes of header and valid records: where the next record goes.
    pub valid_bytes: u64,
    pub torn_tail: Option<TornTail>,
}

/// The journal's path inside a store directory.
pub(crate) fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE_NAME)
}

/// Reads every valid record of the journal in `dir`, in order, without changing the file, and
/// calls `visit` with each. Fails on damage in the middle (see the module documentation); a torn
/// tail is reported, not removed. Safe to run beside a live store: the file's length is read
/// once at the start, and records appended later are not read.
pub fn read_records(
    dir: &Path,
    visit: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<ReadReport, StoreError> {
    scan(&journal_path(dir), visit)
}

/// [`read_records`] for a journal path.
pub(crate) fn scan(
    path: &Path,
    mut visit: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<ReadReport, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        Err(error) => return Err(StoreError::io("open journal", path, error)),
    };
    let end_bytes = file
        .metadata()
        .map_err(|error| StoreError::io("read journal metadata", path, error))?
        .len();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    read_header(&mut reader, end_bytes, path)?;
    let read_error = |error| StoreError::io("read journal", path, error);

    let mut report = ReadReport {
        records: 0,
        last_sequence: 0,
        last_record_hash: RecordHash::GENESIS_PREVIOUS,
        last_time_seconds: 0,
        valid_bytes: JOURNAL_HEADER_BYTES as u64,
        torn_tail: None,
    };
    let mut frame = Vec::new();
    let mut last_commit_first_sequence = 0;
    'records: loop {
        let offset_bytes = report.valid_bytes;
        let remaining_bytes = end_bytes - offset_bytes;
        if remaining_bytes == 0 {
            return Ok(report);
        }
        let expected_sequence = report.last_sequence + 1;
        // A frame that cannot be the next record; `declared_bytes` is its claimed size when the
        // prefix was readable, which the search tries first.
        let (reason, declared_bytes) = 'frame: {
            if remaining_bytes < LENGTH_PREFIX_BYTES as u64 {
                break 'frame (
                    Corruption::Truncated {
                        needed_bytes: LENGTH_PREFIX_BYTES as u64,
                        available_bytes: remaining_bytes,
                    },
                    None,
                );
            }
            let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
            reader.read_exact(&mut prefix).map_err(read_error)?;
            let frame_bytes = match format::frame_bytes_from_prefix(prefix) {
                Ok(frame_bytes) => frame_bytes,
                Err(reason) => break 'frame (reason, None),
            };
            if frame_bytes as u64 > remaining_bytes {
                break 'frame (
                    Corruption::Truncated {
                        needed_bytes: frame_bytes as u64,
                        available_bytes: remaining_bytes,
                    },
                    None,
                );
            }
            frame.clear();
            frame.extend_from_slice(&prefix);
            frame.resize(frame_bytes, 0);
            reader
                .read_exact(&mut frame[LENGTH_PREFIX_BYTES..])
                .map_err(read_error)?;
            let record = match format::decode_frame(&frame, offset_bytes) {
                Ok(record) => record,
                Err(Corruption::HashMismatch) => {
                    break 'frame (Corruption::HashMismatch, Some(frame_bytes));
                }
                Err(reason) => {
                    return Err(StoreError::Unreadable {
                        path: path.to_owned(),
                        offset_bytes,
                        sequence: expected_sequence,
                        reason,
                    });
                }
            };
            if record.sequence != expected_sequence {
                break 'frame (
                    Corruption::SequenceGap {
                        expected: expected_sequence,
                        found: record.sequence,
                    },
                    Some(frame_bytes),
                );
            }
            if record.previous_record_hash != report.last_record_hash {
                break 'frame (Corruption::ChainBroken, Some(frame_bytes));
            }
            let starts_commit = record.commit_first_sequence == record.sequence;
            let continues_commit =
                record.sequence > 1 && record.commit_first_sequence == last_commit_first_sequence;
            if !(starts_commit || continues_commit) {
                break 'frame (Corruption::CommitBroken, Some(frame_bytes));
            }
            last_commit_first_sequence = record.commit_first_sequence;
            report.records += 1;
            report.last_sequence = record.sequence;
            report.last_record_hash = record.record_hash;
            report.last_time_seconds = record.time_seconds;
            report.valid_bytes += frame_bytes as u64;
            visit(record)?;
            continue 'records;
        };
        let mut file = reader.into_inner();
        let tail = classify_tail(
            &mut file,
            offset_bytes,
            end_bytes,
            expected_sequence,
            declared_bytes,
        )
        .map_err(|error| StoreError::io("search journal", path, error))?;
        return match tail {
            Tail::LaterCommitAt(next_valid_offset_bytes) => Err(StoreError::Corrupt {
                path: path.to_owned(),
                offset_bytes,
                sequence: expected_sequence,
                reason,
                next_valid_offset_bytes,
            }),
            Tail::Torn {
                intact_records_dropped,
            } => {
                report.torn_tail = Some(TornTail {
                    offset_bytes,
                    dropped_bytes: remaining_bytes,
                    intact_records_dropped,
                    reason,
                });
                Ok(report)
            }
        };
    }
}

/// What follows a bad frame.
enum Tail {
    /// An intact record of a later commit starts here: the bad frame is damage in the middle.
    LaterCommitAt(u64),
    /// Only the bad frame's own (last) commit, with this many of its records intact after it.
    Torn { intact_records_dropped: u64 },
}

/// Walks the intact records after the bad frame at `bad_offset_bytes`, whose sequence would be
/// `expected_sequence`, until one belongs to a later commit or the file ends.
fn classify_tail(
    file: &mut File,
    bad_offset_bytes: u64,
    end_bytes: u64,
    expected_sequence: u64,
    declared_bytes: Option<usize>,
) -> io::Result<Tail> {
    let mut intact_records_dropped = 0;
    let mut from_offset_bytes = bad_offset_bytes;
    let mut earliest_sequence = expected_sequence;
    let mut hint_bytes = declared_bytes;
    loop {
        let Some(intact) = find_intact_record(
            file,
            from_offset_bytes,
            end_bytes,
            earliest_sequence,
            hint_bytes,
        )?
        else {
            return Ok(Tail::Torn {
                intact_records_dropped,
            });
        };
        // The bad frame's commit started at or before `expected_sequence`; a commit that starts
        // after it was written after the bad frame's commit had been made durable.
        if intact.commit_first_sequence > expected_sequence {
            return Ok(Tail::LaterCommitAt(intact.offset_bytes));
        }
        intact_records_dropped += 1;
        from_offset_bytes = intact.offset_bytes;
        earliest_sequence = intact.sequence + 1;
        hint_bytes = Some(intact.frame_bytes);
    }
}

/// Reads and checks the header. The journal is created with its header in place (written to a
/// temporary file, fsync'd, then renamed), so a short or wrong header is never a torn write.
fn read_header(reader: &mut impl Read, end_bytes: u64, path: &Path) -> Result<(), StoreError> {
    let not_a_journal = || StoreError::NotAJournal {
        path: path.to_owned(),
    };
    if end_bytes < JOURNAL_HEADER_BYTES as u64 {
        return Err(not_a_journal());
    }
    let mut header = [0u8; JOURNAL_HEADER_BYTES];
    reader
        .read_exact(&mut header)
        .map_err(|error| StoreError::io("read journal header", path, error))?;
    match format::check_journal_header(&header) {
        Ok(()) => Ok(()),
        Err(HeaderProblem::NotAJournal) => Err(not_a_journal()),
        Err(HeaderProblem::UnsupportedVersion(found)) => Err(StoreError::UnsupportedVersion {
            path: path.to_owned(),
            found,
            supported: JOURNAL_FORMAT_VERSION,
        }),
    }
}

/// An intact record found by the search.
struct IntactRecord {
    offset_bytes: u64,
    sequence: u64,
    frame_bytes: usize,
    commit_first_sequence: u64,
}

/// The first intact record starting after `after_offset_bytes`, if any. A candidate must have a
/// plausible length, fit in the file, carry a sequence no earlier than `earliest_sequence` and
/// no later than the rest of the file could hold, and match its record hash; the cheap checks run first so
/// that a long garbage tail costs one pass, not a hash per byte. `hint_bytes` is where the frame
/// at `after_offset_bytes` claims to end, which is tried first.
fn find_intact_record(
    file: &mut File,
    after_offset_bytes: u64,
    end_bytes: u64,
    earliest_sequence: u64,
    hint_bytes: Option<usize>,
) -> io::Result<Option<IntactRecord>> {
    let most_records_left = (end_bytes - after_offset_bytes) / MINIMUM_RECORD_BYTES as u64;
    let latest_sequence = earliest_sequence.saturating_add(most_records_left);
    let mut frame = Vec::new();
    let mut intact_at = |file: &mut File, offset_bytes: u64, filter: &[u8; FILTER_BYTES]| {
        let Some((prefix, sequence)) = filter.split_first_chunk::<LENGTH_PREFIX_BYTES>() else {
            return Ok(None);
        };
        let Ok(frame_bytes) = format::frame_bytes_from_prefix(*prefix) else {
            return Ok(None);
        };
        let Some(sequence) = sequence.first_chunk::<8>().copied().map(u64::from_le_bytes) else {
            return Ok(None);
        };
        if !(earliest_sequence..=latest_sequence).contains(&sequence)
            || offset_bytes + frame_bytes as u64 > end_bytes
        {
            return Ok(None);
        }
        frame.resize(frame_bytes, 0);
        file.seek(SeekFrom::Start(offset_bytes))?;
        file.read_exact(&mut frame)?;
        Ok::<_, io::Error>(
            format::intact_frame_commit(&frame).map(|commit_first_sequence| IntactRecord {
                offset_bytes,
                sequence,
                frame_bytes,
                commit_first_sequence,
            }),
        )
    };

    // The common cases: a few flipped bytes inside one record leave its length intact, and
    // intact records of one commit follow each other; either way the next record starts right
    // where the current frame claims to end.
    if let Some(hint_bytes) = hint_bytes {
        let offset_bytes = after_offset_bytes + hint_bytes as u64;
        if offset_bytes + FILTER_BYTES as u64 <= end_bytes {
            let mut filter = [0u8; FILTER_BYTES];
            file.seek(SeekFrom::Start(offset_bytes))?;
            file.read_exact(&mut filter)?;
            if let Some(intact) = intact_at(file, offset_bytes, &filter)? {
                return Ok(Some(intact));
            }
        }
    }

    // Otherwise every later byte is a candidate start, read a window at a time; windows overlap
    // by `FILTER_BYTES - 1` so that no candidate's filter bytes straddle two reads unseen.
    let mut window = vec![0u8; SEARCH_WINDOW_BYTES + FILTER_BYTES - 1];
    let mut window_start = after_offset_bytes + 1;
    while window_start + FILTER_BYTES as u64 <= end_bytes {
        let window_bytes = usize::try_from(end_bytes - window_start)
            .unwrap_or(usize::MAX)
            .min(window.len());
        file.seek(SeekFrom::Start(window_start))?;
        file.read_exact(&mut window[..window_bytes])?;
        let candidates = window_bytes + 1 - FILTER_BYTES;
        for index in 0..candidates.min(SEARCH_WINDOW_BYTES) {
            let Some(filter) = window
                .get(index..index + FILTER_BYTES)
                .and_then(|bytes| <[u8; FILTER_BYTES]>::try_from(bytes).ok())
            else {
                continue;
            };
            if let Some(intact) = intact_at(file, window_start + index as u64, &filter)? {
                return Ok(Some(intact));
            }
        }
        window_start += SEARCH_WINDOW_BYTES as u64;
    }
    Ok(None)
}

/// Creates an empty journal at `path`: the header goes to a temporary file in the same
/// directory, which is fsync'd and renamed into place (failing if a journal appeared meanwhile),
/// and the directory is fsync'd so that the name survives a crash too.
pub(crate) fn create(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let mut temporary = temporary_file_in(dir)?;
    temporary
        .write_all(&format::journal_header())
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(|error| StoreError::io("write journal header", temporary.path(), error))?;
    temporary
        .persist_noclobber(path)
        .map_err(|error| StoreError::io("create journal", path, error.error))?;
    sync_directory(dir)
}

/// Names of the store's temporary files: a crash between creating one and renaming it leaves it
/// behind, and [`remove_temporary_files`] clears them when the store is next opened.
const TEMPORARY_FILE_PREFIX: &str = ".ledger-store-tmp-";

/// A new temporary file in `dir`, for a write that ends in an atomic rename.
pub(crate) fn temporary_file_in(dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
    tempfile::Builder::new()
        .prefix(TEMPORARY_FILE_PREFIX)
        .tempfile_in(dir)
        .map_err(|error| StoreError::io("create temporary file in", dir, error))
}

/// Deletes temporary files left by a crash. Called with the journal locked, so no live store
/// is using one.
pub(crate) fn remove_temporary_files(dir: &Path) -> Result<(), StoreError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| StoreError::io("list store directory", dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| StoreError::io("list store directory", dir, error))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TEMPORARY_FILE_PREFIX))
        {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(StoreError::io("remove temporary file", entry.path(), error));
                }
            }
        }
    }
    Ok(())
}

/// Makes a directory's entries (a new or renamed file) durable.
pub(crate) fn sync_directory(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| StoreError::io("sync directory", dir, error))
}

/// The journal open for appending, locked against every other store process.
pub(crate) struct JournalWriter {
    file: File,
    path: PathBuf,
    end_bytes: u64,
}

impl JournalWriter {
    /// Opens the journal for writing and takes its exclusive lock, so that two processes can
    /// never append to one journal. The lock is advisory (`flock`), released by the kernel when
    /// the process exits, however it exits.
    pub(crate) fn open_locked(path: &Path) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|error| StoreError::io("open journal", path, error))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(StoreError::io("lock journal", path, error));
            }
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            end_bytes: 0,
        })
    }

    /// Cuts the file to `valid_bytes` (dropping a torn tail, if there is one) and positions
    /// appends there. The cut is fsync'd before any new record can follow it, so a crash cannot
    /// leave new records after an old torn tail.
    pub(crate) fn truncate_and_position(&mut self, valid_bytes: u64) -> Result<(), StoreError> {
        let length = self
            .file
            .metadata()
            .map_err(|error| StoreError::io("read journal metadata", &self.path, error))?
            .len();
        if length != valid_bytes {
            self.file
                .set_len(valid_bytes)
                .and_then(|()| self.file.sync_all())
                .map_err(|error| StoreError::io("truncate journal", &self.path, error))?;
        }
        self.file
            .seek(SeekFrom::Start(valid_bytes))
            .map_err(|error| StoreError::io("seek journal", &self.path, error))?;
        self.end_bytes = valid_bytes;
        Ok(())
    }

    /// Appends whole frames and returns once they are on stable storage. `fdatasync` suffices:
    /// it also makes the new file length durable, which is what reading the records back needs.
    pub(crate) fn append_durably(&mut self, frames: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(frames)
            .and_then(|()| self.file.sync_data())
            .map_err(|error| StoreError::io("append to journal", &self.path, error))?;
        self.end_bytes += frames.len() as u64;
        Ok(())
    }

    pub(crate) fn end_bytes(&self) -> u64 {
        self.end_bytes
    }
}

const _: () = assert!(SEARCH_WINDOW_BYTES >= FILTER_BYTES);
const _: () = assert!(MAXIMUM_RECORD_BYTES > MINIMUM_RECORD_BYTES);
