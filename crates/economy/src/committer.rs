//! The committer thread: the one writer of the ledger store. It takes queued operations in
//! batches (at most one per signer, so each nonce is checked against a ledger that has applied
//! the signer's earlier ones), signs the operator's own, and commits each batch with one fsync.
//! With a journal the replicas of a cluster share (`shared.rs`), it also follows the journal and
//! the key table when idle, writes key changes, writes each batch inside the writer's lock
//! after catching up, and decides a commit whose answer was lost.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ledger::{Address, GenesisConfig, Op};
use ledger_store::{Receipt, Store, Submission};
use tokio::sync::{mpsc, oneshot};
use wallet::{Domain, Scheme, Wallet};

use crate::keys::{self, KeyStore};
use crate::meter::Meter;
use crate::usage;
use crate::{Clock, Refusal, SECONDS_PER_DAY, Signing, lock_store, shared, stop_the_process};

/// A change to the key table, for the table the replicas of a cluster share: the key's JSON,
/// or `None` for a deletion.
pub(crate) struct KeyJob {
    pub(crate) id: String,
    pub(crate) key: Option<String>,
    pub(crate) reply: oneshot::Sender<Result<(), String>>,
}

pub(crate) struct Job {
    pub(crate) signer: Address,
    pub(crate) op: Op,
    pub(crate) signing: Signing,
    /// For a usage settlement in a cluster: the rows of the usage queue it takes, which make
    /// its entries (`op`'s are replaced by what the rows hold inside the writer's transaction).
    pub(crate) rows: Option<usage::Rows>,
    pub(crate) reply: oneshot::Sender<Result<Receipt, Refusal>>,
}

/// What the committer thread is started with.
pub(crate) struct Start {
    pub(crate) queues: Queues,
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) meter: Arc<Meter>,
    pub(crate) keys: Arc<KeyStore>,
    pub(crate) clock: Arc<Clock>,
    pub(crate) healthy: Arc<AtomicBool>,
    pub(crate) shared_up: Arc<AtomicBool>,
    pub(crate) operator: Wallet,
    pub(crate) airdrop: Vec<ledger::Allocation>,
    pub(crate) shared: Option<shared::SharedJournal>,
}

/// Starts the committer thread and waits until it has joined the shared journal, if there is
/// one (writing genesis there if nobody has); its failure to join is this call's error.
pub(crate) fn start(start: Start) -> std::io::Result<()> {
    let (started, joined) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ledger-committer".into())
        .spawn(move || {
            let Start {
                queues,
                store,
                meter,
                keys,
                clock,
                healthy,
                shared_up,
                operator,
                airdrop,
                mut shared,
            } = start;
            let mut followed = Followed::default();
            if let Some(journal) = shared.as_mut() {
                let joined =
                    join_shared(journal, &store, &operator, airdrop, &clock).and_then(|()| {
                        join_keys(journal, &keys, &store, &meter, &clock, &mut followed)
                    });
                let failed = joined.is_err();
                let _ = started.send(joined.map_err(|error| error.to_string()));
                if failed {
                    return;
                }
            } else {
                let _ = started.send(Ok(()));
            }
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                commit_loop(
                    queues,
                    Parts {
                        store: &store,
                        meter: &meter,
                        keys: &keys,
                        clock: &clock,
                    },
                    Health {
                        store: &healthy,
                        shared: &shared_up,
                    },
                    &operator,
                    shared,
                    followed,
                );
            }));
            if committed.is_err() {
                stop_the_process(
                    "the ledger committer stopped on a broken invariant (see the panic above)",
                );
            }
        })?;
    joined
        .recv()
        .map_err(|_| std::io::Error::other("the ledger committer stopped while starting"))?
        .map_err(std::io::Error::other)
}

fn touched_accounts(signer: Address, op: &Op, into: &mut Vec<Address>) {
    into.push(signer);
    match op {
        Op::Transfer { to, .. } => into.push(*to),
        Op::CreditAccount { account, .. } => into.push(*account),
        Op::SettleUsage { entries, .. } => into.extend(entries.iter().map(|entry| entry.account)),
        _ => {}
    }
}

/// Holds each entry of a usage settlement to the credits its account has now, so that one
/// account charged past them (by usage counted on several gateways at once, or metered wrong)
/// cannot make the ledger refuse the whole settlement, and everyone's usage in it with it.
/// What could not be charged is logged as a sum, never by account. Credits only grow between
/// this check and the settlement's commit: other operations in the batch add to them, and the
/// only thing that takes them away is a settlement, which is the operator's, one per batch.
fn clamp_to_credits(ledger: &ledger::Ledger, entries: &mut [ledger::UsageCharge], now: u64) {
    let (mut clamped, mut unpaid) = (0usize, 0u128);
    for entry in entries.iter_mut() {
        let balances = ledger.balances(entry.account, now);
        let (bundled, usd) = (
            entry
                .bundled_credit_units
                .min(balances.bundled_credit_units),
            entry.usd_units.min(balances.usd_credit_units),
        );
        let short = (entry.bundled_credit_units - bundled).saturating_add(entry.usd_units - usd);
        if short > 0 {
            clamped += 1;
            unpaid = unpaid.saturating_add(short);
            entry.bundled_credit_units = bundled;
            entry.usd_units = usd;
        }
    }
    if clamped > 0 {
        tracing::warn!(
            accounts = clamped,
            unpaid_usd_units = %unpaid,
            "usage was charged past accounts' credits; settled what they hold"
        );
    }
}

/// The genesis operation of a new ledger, signed by the operator.
pub(crate) fn genesis(operator: &Wallet, airdrop: Vec<ledger::Allocation>, now: u64) -> Submission {
    let admin = operator.address();
    let op = Op::Genesis(Box::new(GenesisConfig::venice(
        admin, admin, admin, admin, admin, airdrop,
    )));
    let domain = Domain::for_ledger(admin, now);
    let authorization = wallet::sign(operator, &domain, &op, 0, now, Scheme::Eip712);
    Submission {
        now_seconds: now,
        signer: admin,
        signature: authorization.encode(),
        op,
    }
}

/// Joins the shared journal at start, writing genesis there if nobody has.
pub(crate) fn join_shared(
    journal: &mut shared::SharedJournal,
    store: &Mutex<Store>,
    operator: &Wallet,
    airdrop: Vec<ledger::Allocation>,
    clock: &Clock,
) -> Result<(), shared::SharedError> {
    let mut guard = lock_store(store);
    let mut writer = journal.start(&mut guard)?;
    if guard.ledger().is_initialized() {
        writer.commit()?;
        journal.give_back(writer);
        return Ok(());
    }
    let now = clock.now();
    let mut results = guard
        .submit_batch_published(vec![genesis(operator, airdrop, now)], |published| {
            writer.publish(published)
        })?;
    journal.give_back(writer);
    match results.pop() {
        Some(Ok(_)) => {
            tracing::info!("shared ledger created with genesis");
            Ok(())
        }
        refused => Err(shared::SharedError::Config(format!(
            "the ledger refused its genesis: {refused:?}"
        ))),
    }
}

/// How far the committer has followed the shared key table.
#[derive(Default)]
pub(crate) struct Followed {
    pub(crate) key_version: i64,
}

/// At start: publishes the keys this replica held alone (any the table lacks), then takes the
/// shared table's.
pub(crate) fn join_keys(
    journal: &mut shared::SharedJournal,
    keys: &KeyStore,
    store: &Mutex<Store>,
    meter: &Meter,
    clock: &Clock,
    followed: &mut Followed,
) -> Result<(), shared::SharedError> {
    let local: Vec<(String, String)> = keys
        .all()
        .into_iter()
        .filter_map(|key| Some((key.id.clone(), serde_json::to_string(&key).ok()?)))
        .collect();
    journal.publish_keys(&local)?;
    while follow_keys(journal, keys, store, meter, clock, followed)? {}
    Ok(())
}

/// Takes the key changes after the last one seen: `Ok(true)` while there may be more.
fn follow_keys(
    journal: &mut shared::SharedJournal,
    keys: &KeyStore,
    store: &Mutex<Store>,
    meter: &Meter,
    clock: &Clock,
    followed: &mut Followed,
) -> Result<bool, shared::SharedError> {
    let changes = journal.fetch_keys(followed.key_version)?;
    let full = changes.len() >= shared::FETCH_RECORDS_USIZE;
    let mut accounts = Vec::new();
    for (version, id, key) in changes {
        followed.key_version = version;
        let key = match key.map(|key| serde_json::from_str::<keys::StoredKey>(&key)) {
            Some(Ok(key)) => Some(key),
            Some(Err(error)) => {
                tracing::warn!(%error, "a key in the shared key table does not parse; skipped");
                continue;
            }
            None => None,
        };
        accounts.extend(keys.apply_shared(&id, key));
    }
    if !accounts.is_empty() {
        // An account new to this replica gets its balance into the meter.
        meter.refresh(lock_store(store).ledger(), &accounts, clock.today());
        if let Err(error) = keys.flush() {
            tracing::error!(%error, "cannot save the key table");
        }
    }
    Ok(full)
}

/// The committer's queues: ledger operations, and key changes (with a shared journal).
pub(crate) struct Queues {
    pub(crate) operations: mpsc::Receiver<Job>,
    pub(crate) keys: Option<mpsc::Receiver<KeyJob>>,
}

/// What the committer works on.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) store: &'a Mutex<Store>,
    pub(crate) meter: &'a Meter,
    pub(crate) keys: &'a KeyStore,
    pub(crate) clock: &'a Clock,
}

/// Writes a key change to the shared key table and answers whoever asked.
fn write_key(journal: &mut shared::SharedJournal, job: KeyJob) {
    let result = journal.write_key(&job.id, job.key.as_deref());
    if result.is_err() {
        journal.disconnect();
    }
    let _ = job.reply.send(result.map_err(|error| error.to_string()));
}

/// What the committer reports on: its store, and the shared journal's reachability.
pub(crate) struct Health<'a> {
    pub(crate) store: &'a AtomicBool,
    pub(crate) shared: &'a AtomicBool,
}

/// Refreshes the meter for the accounts that `records` (written by other replicas) touched.
fn refresh_applied(
    meter: &Meter,
    ledger: &ledger::Ledger,
    records: &[ledger_store::Record],
    today: u64,
) {
    if records.is_empty() {
        return;
    }
    let mut touched = Vec::new();
    for record in records {
        touched_accounts(record.signer, &record.op, &mut touched);
    }
    meter.refresh(ledger, &touched, today);
}

/// Applies what other replicas wrote to the shared journal and key table since the last look.
/// The records are read before the store is locked, so readers wait only for their
/// application. `false` when PostgreSQL could not be reached.
fn follow(
    journal: &mut shared::SharedJournal,
    parts: &Parts<'_>,
    followed: &mut Followed,
    up: &AtomicBool,
) -> bool {
    let Parts {
        store,
        meter,
        keys,
        clock,
    } = *parts;
    let unreachable = |journal: &mut shared::SharedJournal, error: shared::SharedError| {
        if up.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "the shared ledger cannot be reached; metered requests are refused until it can");
        }
        journal.disconnect();
        false
    };
    loop {
        let after = lock_store(store).last_sequence();
        let frames = match journal.fetch(after) {
            Ok(frames) => frames,
            Err(error) => return unreachable(journal, error),
        };
        let full = frames.len() >= shared::FETCH_RECORDS_USIZE;
        let mut guard = lock_store(store);
        if guard.last_sequence() == after {
            match guard.apply_published(frames) {
                Ok(applied) => refresh_applied(meter, guard.ledger(), &applied, clock.today()),
                Err(error) => stop_the_process(&format!(
                    "the shared ledger journal holds a record this gateway cannot apply: {error}"
                )),
            }
        }
        drop(guard);
        if !full {
            break;
        }
    }
    loop {
        match follow_keys(journal, keys, store, meter, clock, followed) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => return unreachable(journal, error),
        }
    }
    if !up.swap(true, Ordering::Relaxed) {
        tracing::info!("the shared ledger is reachable again");
    }
    true
}

/// Decides a commit whose outcome was not heard: the store is rebuilt from its own journal,
/// then PostgreSQL is asked (as long as it takes to answer) whether it holds the batch's first
/// record; if it does, the batch is applied from it.
fn resolve(
    journal: &mut shared::SharedJournal,
    parts: &Parts<'_>,
    followed: &mut Followed,
    first: Option<(u64, ledger_store::RecordHash)>,
    up: &AtomicBool,
) -> bool {
    journal.disconnect();
    if let Err(error) = lock_store(parts.store).recover() {
        stop_the_process(&format!(
            "the ledger journal cannot be replayed after a commit failed: {error}"
        ));
    }
    let Some((sequence, record_hash)) = first else {
        return false;
    };
    let landed = loop {
        match journal.holds(sequence, record_hash) {
            Ok(landed) => break landed,
            Err(error) => {
                tracing::warn!(%error, sequence, "waiting for the shared ledger journal to learn whether a commit was taken");
                journal.disconnect();
                std::thread::sleep(shared::RESOLVE_RETRY);
            }
        }
    };
    if landed {
        while !follow(journal, parts, followed, up) {
            std::thread::sleep(shared::RESOLVE_RETRY);
        }
    }
    landed
}

/// What woke the committer with a shared journal.
enum Wake {
    Operation(Option<Job>),
    Key(KeyJob),
    Follow,
}

pub(crate) fn commit_loop(
    queues: Queues,
    parts: Parts<'_>,
    health: Health<'_>,
    operator: &Wallet,
    mut shared: Option<shared::SharedJournal>,
    mut followed: Followed,
) {
    let Queues {
        operations: mut receiver,
        keys: mut key_receiver,
    } = queues;
    let Parts {
        store,
        meter,
        clock,
        ..
    } = parts;
    let domain = {
        let guard = lock_store(store);
        match (guard.ledger().admin(), guard.ledger().genesis_seconds()) {
            (Some(admin), Some(genesis_seconds)) => Domain::for_ledger(admin, genesis_seconds),
            _ => return,
        }
    };
    // With a shared journal the committer wakes every tail interval to follow it.
    let waiter = match shared {
        Some(_) => match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => Some(runtime),
            Err(error) => stop_the_process(&format!(
                "the ledger committer cannot start its timer: {error}"
            )),
        },
        None => None,
    };
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if let (Some(journal), Some(key_receiver)) = (shared.as_mut(), key_receiver.as_mut()) {
            while let Ok(job) = key_receiver.try_recv() {
                write_key(journal, job);
            }
        }
        if waiting.is_empty() {
            let wake = match (&waiter, key_receiver.as_mut()) {
                // The timer is made inside the runtime, which drives it.
                (Some(runtime), Some(key_receiver)) => runtime.block_on(async {
                    tokio::select! {
                        job = receiver.recv() => Wake::Operation(job),
                        Some(job) = key_receiver.recv() => Wake::Key(job),
                        () = tokio::time::sleep(shared::TAIL_INTERVAL) => Wake::Follow,
                    }
                }),
                _ => Wake::Operation(receiver.blocking_recv()),
            };
            match (wake, shared.as_mut()) {
                (Wake::Operation(Some(job)), _) => waiting.push_back(job),
                (Wake::Operation(None), _) => return,
                (Wake::Key(job), Some(journal)) => {
                    write_key(journal, job);
                    continue;
                }
                (Wake::Follow, Some(journal)) => {
                    follow(journal, &parts, &mut followed, health.shared);
                    continue;
                }
                (Wake::Key(_) | Wake::Follow, None) => continue,
            }
        }
        while waiting.len() < ledger_store::MAXIMUM_BATCH_OPERATIONS {
            match receiver.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => break,
            }
        }
        // One operation per signer per batch, so each nonce is checked against a ledger that
        // has applied every earlier operation of its signer.
        let mut signers = HashSet::new();
        let mut batch = Vec::new();
        let mut later = VecDeque::new();
        for job in waiting.drain(..) {
            if batch.len() < ledger_store::MAXIMUM_BATCH_OPERATIONS && signers.insert(job.signer) {
                batch.push(job);
            } else {
                later.push_back(job);
            }
        }
        waiting = later;

        let mut guard = lock_store(store);
        // With a shared journal: a transaction holding the writer's lock, with this ledger
        // caught up to the journal inside it, so nonces and balances are checked against every
        // replica's commits.
        let mut writer = None;
        if let Some(journal) = shared.as_mut() {
            match journal.begin(&mut guard) {
                Ok((begun, applied)) => {
                    health.shared.store(true, Ordering::Relaxed);
                    refresh_applied(meter, guard.ledger(), &applied, clock.today());
                    writer = Some(begun);
                }
                Err(error) => {
                    journal.disconnect();
                    if let shared::SharedError::Store(error) = &error {
                        stop_the_process(&format!(
                            "the shared ledger journal holds a record this gateway cannot apply: {error}"
                        ));
                    }
                    health.shared.store(false, Ordering::Relaxed);
                    tracing::warn!(%error, "the shared ledger journal cannot be reached");
                    for job in batch {
                        let _ = job.reply.send(Err(Refusal::NotTaken(
                            "the shared ledger cannot be reached; try again shortly".into(),
                        )));
                    }
                    continue;
                }
            }
        }
        let now = clock.now().max(guard.last_time_seconds());
        let mut submissions = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut touched = Vec::new();
        let mut unusable = None;
        for mut job in batch {
            if unusable.is_some() {
                let _ = job.reply.send(Err(Refusal::NotTaken(
                    "the shared ledger cannot be reached; try again shortly".into(),
                )));
                continue;
            }
            if let Some(rows) = job.rows.take() {
                let taken = match writer.as_mut() {
                    Some(writer) => writer.usage_queue().and_then(|(client, table, replica)| {
                        usage::take(client, table, replica, &rows)
                    }),
                    None => Err(shared::SharedError::Config(
                        "usage rows without a shared journal".into(),
                    )),
                };
                match taken {
                    Ok(Some((day, entries))) => job.op = Op::SettleUsage { day, entries },
                    Ok(None) => {
                        let _ = job.reply.send(Err(Refusal::AlreadySettled));
                        continue;
                    }
                    Err(error) => {
                        let _ = job.reply.send(Err(Refusal::NotTaken(format!(
                            "the shared usage queue cannot be read: {error}"
                        ))));
                        unusable = Some(error);
                        continue;
                    }
                }
            }
            let expected = guard.ledger().next_nonce(job.signer);
            let authorization = match job.signing {
                Signing::User(authorization) => {
                    if authorization.nonce != expected {
                        let _ = job.reply.send(Err(Refusal::Nonce {
                            expected,
                            got: authorization.nonce,
                        }));
                        continue;
                    }
                    // Checked again here, at the time the record will carry, so that every
                    // journaled signature was applied before its deadline.
                    if authorization.deadline_seconds < now {
                        let _ = job.reply.send(Err(Refusal::Expired {
                            deadline: authorization.deadline_seconds,
                            now,
                        }));
                        continue;
                    }
                    authorization
                }
                Signing::Operator => {
                    if let Op::SettleUsage { entries, .. } = &mut job.op {
                        clamp_to_credits(guard.ledger(), entries, now);
                    }
                    wallet::sign(operator, &domain, &job.op, expected, now, Scheme::Eip712)
                }
            };
            touched_accounts(job.signer, &job.op, &mut touched);
            submissions.push(Submission {
                now_seconds: now,
                signer: job.signer,
                signature: authorization.encode(),
                op: job.op,
            });
            replies.push(job.reply);
        }
        if let Some(error) = unusable {
            // The transaction is broken: nothing of this batch is written.
            drop(writer);
            if let Some(journal) = shared.as_mut() {
                journal.disconnect();
            }
            health.shared.store(false, Ordering::Relaxed);
            tracing::warn!(%error, "the shared ledger journal cannot be reached");
            for reply in replies {
                let _ = reply.send(Err(Refusal::NotTaken(
                    "the shared ledger cannot be reached; try again shortly".into(),
                )));
            }
            continue;
        }
        let mut first = None;
        let result = match writer.as_mut() {
            _ if submissions.is_empty() => Ok(Vec::new()),
            None => guard.submit_batch(submissions),
            Some(writer) => guard.submit_batch_published(submissions, |published| {
                first = published
                    .records()
                    .next()
                    .map(|(sequence, record_hash, _)| (sequence, record_hash));
                writer.publish(published)
            }),
        };
        // The connection is kept if the transaction ended cleanly (committed, or rolled back
        // when nothing was accepted).
        if let (Some(journal), Some(writer)) = (shared.as_mut(), writer.take()) {
            journal.give_back(writer);
        }
        match result {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map_err(Refusal::Rejected));
                }
                meter.refresh(guard.ledger(), &touched, now / SECONDS_PER_DAY);
            }
            Err(ledger_store::StoreError::Publish { reason, pending }) => {
                drop(guard);
                health.shared.store(false, Ordering::Relaxed);
                tracing::warn!(%reason, "a commit to the shared ledger journal failed; learning whether it was taken");
                let landed = match shared.as_mut() {
                    Some(journal) => resolve(journal, &parts, &mut followed, first, health.shared),
                    None => false,
                };
                if landed {
                    for (reply, result) in replies.into_iter().zip(pending) {
                        let _ = reply.send(result.map_err(Refusal::Rejected));
                    }
                    meter.refresh(lock_store(store).ledger(), &touched, now / SECONDS_PER_DAY);
                } else {
                    for reply in replies {
                        let _ = reply.send(Err(Refusal::NotTaken(format!(
                            "the shared ledger did not take the operation: {reason}"
                        ))));
                    }
                }
            }
            Err(error) => {
                health.store.store(false, Ordering::Relaxed);
                tracing::error!(%error, "the ledger store failed; operations are refused until restart");
                for reply in replies {
                    let _ = reply.send(Err(Refusal::Unavailable(format!(
                        "the ledger store failed: {error}"
                    ))));
                }
            }
        }
    }
}
