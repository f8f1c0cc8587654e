//! The spent-token store: every redeemed token's nonce for the current epoch, in memory for the
//! check and on disk so a restart does not let a token be spent twice.
//!
//! A request's nonces are reserved together (all or none) before it is dispatched; a request
//! that then fails releases them, and one that reaches a provider commits them. A commit is
//! acknowledged once its nonces are on disk: one append-only file per epoch (`<epoch>.spent`,
//! 32 bytes a nonce), written by one thread that groups whatever is waiting into one write and
//! one `fdatasync`. Files of earlier epochs are deleted, since their tokens are refused anyway.
//!
//! Many gateways share one store in Redis instead ([`SpentStore::Shared`]): a request's
//! nonces are reserved there by one script, all or none, and kept there as spent (Redis syncs
//! them to its append-only file before it answers); a release removes them again.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

pub type Nonce = [u8; 32];

const NONCE_BYTES: usize = 32;
/// Commits waiting for the writer; beyond this, requests are refused rather than queued.
const MAX_WAITING_COMMITS: usize = 4096;
/// Most commits the writer folds into one write and one sync.
const MAX_GROUP: usize = 512;

/// Why nonces could not be reserved.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// One of them was spent before (or appears twice in the request).
    Reused,
    /// The epoch is over.
    PastEpoch,
    /// The shared store cannot be reached.
    Unavailable,
}

/// Where spent nonces are kept: this process's memory and disk, or the store the replicas
/// share.
#[derive(Clone)]
pub enum SpentStore {
    Local(Arc<SpentTokens>),
    Shared(Arc<crate::cluster::Cluster>),
}

impl SpentStore {
    /// Reserves `nonces` for one request: all of them, or none if any is spent already.
    pub async fn reserve(&self, epoch: u64, nonces: Vec<Nonce>) -> Result<Reservation, Refused> {
        match self {
            Self::Local(store) => store.reserve(epoch, nonces),
            Self::Shared(cluster) => {
                let reserved = cluster
                    .reserve_nonces(epoch, &nonces)
                    .await
                    .map_err(|error| {
                        tracing::error!(error = %error, "cannot reserve spent tokens");
                        Refused::Unavailable
                    })?;
                if !reserved {
                    return Err(Refused::Reused);
                }
                Ok(Reservation {
                    store: Backing::Shared(Arc::clone(cluster)),
                    epoch,
                    nonces,
                    settled: false,
                })
            }
        }
    }
}

/// The store a reservation was made in.
#[derive(Clone)]
enum Backing {
    Local(Arc<SpentTokens>),
    Shared(Arc<crate::cluster::Cluster>),
}

pub struct SpentTokens {
    dir: PathBuf,
    state: Mutex<Spent>,
    writer: SyncSender<Commit>,
}

struct Spent {
    epoch: u64,
    nonces: HashSet<Nonce>,
}

struct Commit {
    epoch: u64,
    nonces: Vec<Nonce>,
    done: tokio::sync::oneshot::Sender<io::Result<()>>,
}

fn file_of(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("{epoch}.spent"))
}

/// The nonces recorded for `epoch`, cutting off a torn last record.
fn load(dir: &Path, epoch: u64) -> io::Result<HashSet<Nonce>> {
    let path = file_of(dir, epoch);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes)?;
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(error) => return Err(error),
    }
    let whole = bytes.len() - bytes.len() % NONCE_BYTES;
    if whole != bytes.len() {
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(u64::try_from(whole).unwrap_or(u64::MAX))?;
        file.sync_all()?;
    }
    Ok(bytes[..whole]
        .chunks_exact(NONCE_BYTES)
        .filter_map(|chunk| Nonce::try_from(chunk).ok())
        .collect())
}

/// Deletes the files of epochs before `epoch`.
fn forget_before(dir: &Path, epoch: u64) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|name| name.strip_suffix(".spent")) else {
            continue;
        };
        if stem.parse::<u64>().is_ok_and(|old| old < epoch) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

impl SpentTokens {
    /// Opens the store in `dir` (created if missing) for `epoch`.
    pub fn open(dir: &Path, epoch: u64) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        forget_before(dir, epoch)?;
        let nonces = load(dir, epoch)?;
        let (writer, queue) = std::sync::mpsc::sync_channel(MAX_WAITING_COMMITS);
        let thread_dir = dir.to_owned();
        std::thread::Builder::new()
            .name("gondola-spent-tokens".into())
            .spawn(move || write_loop(&thread_dir, &queue))?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            state: Mutex::new(Spent { epoch, nonces }),
            writer,
        }))
    }

    /// Reserves `nonces` for one request: all of them, or none if any is spent already.
    pub fn reserve(
        self: &Arc<Self>,
        epoch: u64,
        nonces: Vec<Nonce>,
    ) -> Result<Reservation, Refused> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if epoch < state.epoch {
            return Err(Refused::PastEpoch);
        }
        if epoch > state.epoch {
            // A new day: earlier nonces no longer matter. Any already written for this epoch
            // (by an earlier run of the gateway) do.
            let recorded = load(&self.dir, epoch).unwrap_or_else(|error| {
                tracing::error!(error = %error, epoch, "cannot read the spent tokens of an epoch");
                HashSet::new()
            });
            *state = Spent {
                epoch,
                nonces: recorded,
            };
        }
        let mut fresh = HashSet::with_capacity(nonces.len());
        if nonces
            .iter()
            .any(|nonce| state.nonces.contains(nonce) || !fresh.insert(*nonce))
        {
            return Err(Refused::Reused);
        }
        state.nonces.extend(nonces.iter().copied());
        Ok(Reservation {
            store: Backing::Local(Arc::clone(self)),
            epoch,
            nonces,
            settled: false,
        })
    }

    /// How many nonces the current epoch holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .nonces
            .len()
    }
}

/// Nonces reserved for a request: released when dropped uncommitted.
pub struct Reservation {
    store: Backing,
    epoch: u64,
    nonces: Vec<Nonce>,
    settled: bool,
}

impl Reservation {
    /// Splits off the nonces from `at` on into a reservation of their own (each part is then
    /// committed or released on its own).
    pub fn split_off(&mut self, at: usize) -> Reservation {
        Reservation {
            store: self.store.clone(),
            epoch: self.epoch,
            nonces: self.nonces.split_off(at.min(self.nonces.len())),
            settled: false,
        }
    }

    /// Makes the spend permanent: returns once the nonces are on disk. On an error they stay
    /// spent in memory (a token is never honoured twice), and the request should fail.
    pub async fn commit(mut self) -> io::Result<()> {
        self.settled = true;
        let store = match &self.store {
            Backing::Local(store) => Arc::clone(store),
            // Reserved in the shared store is spent there already, and on its disk.
            Backing::Shared(_) => return Ok(()),
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        let commit = Commit {
            epoch: self.epoch,
            nonces: std::mem::take(&mut self.nonces),
            done,
        };
        match store.writer.try_send(commit) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(io::Error::other("too many token commits are waiting"));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(io::Error::other("the spent-token writer has stopped"));
            }
        }
        finished
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the spent-token writer has stopped")))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let store = match &self.store {
            Backing::Local(store) => store,
            Backing::Shared(cluster) => {
                // Given back in the background; if the store is down they stay spent (a token
                // lost, never one paid twice).
                let (cluster, epoch) = (Arc::clone(cluster), self.epoch);
                let nonces = std::mem::take(&mut self.nonces);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Err(error) = cluster.release_nonces(epoch, &nonces).await {
                            tracing::warn!(error = %error, "cannot give back unspent tokens");
                        }
                    });
                }
                return;
            }
        };
        let mut state = store.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.epoch == self.epoch {
            for nonce in &self.nonces {
                state.nonces.remove(nonce);
            }
        }
    }
}

fn write_loop(dir: &Path, queue: &Receiver<Commit>) {
    let mut open: Option<(u64, File)> = None;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(commit) => group.push(commit),
                Err(_) => break,
            }
        }
        let result = write_group(dir, &mut open, &group);
        for commit in group {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            };
            // A request that went away no longer waits for the answer.
            let _ = commit.done.send(outcome);
        }
    }
}

fn write_group(dir: &Path, open: &mut Option<(u64, File)>, group: &[Commit]) -> io::Result<()> {
    let mut epochs: Vec<u64> = group.iter().map(|commit| commit.epoch).collect();
    epochs.sort_unstable();
    epochs.dedup();
    for epoch in epochs {
        if open.as_ref().is_none_or(|(current, _)| *current != epoch) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(file_of(dir, epoch))?;
            if open.as_ref().is_some_and(|(current, _)| *current < epoch) {
                forget_before(dir, epoch)?;
            }
            *open = Some((epoch, file));
        }
        let Some((_, file)) = open.as_mut() else {
            continue;
        };
        let mut bytes = Vec::new();
        for commit in group.iter().filter(|commit| commit.epoch == epoch) {
            for nonce in &commit.nonces {
                bytes.extend_from_slice(nonce);
            }
        }
        file.write_all(&bytes)?;
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(byte: u8) -> Nonce {
        [byte; 32]
    }

    #[tokio::test]
    async fn a_committed_nonce_stays_spent_across_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SpentTokens::open(dir.path(), 7).expect("opened");
        store
            .reserve(7, vec![nonce(1), nonce(2)])
            .expect("fresh")
            .commit()
            .await
            .expect("written");
        assert_eq!(
            store.reserve(7, vec![nonce(3), nonce(2)]).err(),
            Some(Refused::Reused)
        );
        drop(store);
        let reopened = SpentTokens::open(dir.path(), 7).expect("reopened");
        assert_eq!(reopened.len(), 2);
        assert_eq!(
            reopened.reserve(7, vec![nonce(1)]).err(),
            Some(Refused::Reused)
        );
        assert!(reopened.reserve(7, vec![nonce(3)]).is_ok());
    }

    #[tokio::test]
    async fn a_released_reservation_can_be_spent_later_and_a_duplicate_cannot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SpentTokens::open(dir.path(), 1).expect("opened");
        let reservation = store.reserve(1, vec![nonce(9)]).expect("fresh");
        assert_eq!(
            store.reserve(1, vec![nonce(9)]).err(),
            Some(Refused::Reused),
            "a reserved nonce is not free"
        );
        drop(reservation);
        assert!(store.reserve(1, vec![nonce(9)]).is_ok());
        assert_eq!(
            store.reserve(1, vec![nonce(4), nonce(4)]).err(),
            Some(Refused::Reused),
            "one token twice in one request"
        );
        assert_eq!(store.len(), 0, "nothing stays reserved");
    }

    #[tokio::test]
    async fn a_new_epoch_starts_empty_and_deletes_the_old_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SpentTokens::open(dir.path(), 1).expect("opened");
        store
            .reserve(1, vec![nonce(1)])
            .expect("fresh")
            .commit()
            .await
            .expect("written");
        store
            .reserve(2, vec![nonce(1)])
            .expect("a new epoch forgets the last one")
            .commit()
            .await
            .expect("written");
        assert_eq!(
            store.reserve(1, vec![nonce(5)]).err(),
            Some(Refused::PastEpoch)
        );
        assert!(!file_of(dir.path(), 1).exists());
        assert!(file_of(dir.path(), 2).exists());
    }

    #[tokio::test]
    async fn a_torn_record_is_cut_off() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bytes = nonce(1).to_vec();
        bytes.extend_from_slice(&[7; 5]);
        std::fs::write(file_of(dir.path(), 3), &bytes).expect("written");
        let store = SpentTokens::open(dir.path(), 3).expect("opened");
        assert_eq!(store.len(), 1);
        assert_eq!(
            std::fs::metadata(file_of(dir.path(), 3))
                .expect("file")
                .len(),
            32
        );
        assert_eq!(
            store.reserve(3, vec![nonce(1)]).err(),
            Some(Refused::Reused)
        );
    }
}
