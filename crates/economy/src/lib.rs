//! The economy at run time: the ledger store behind a committer thread, the meter on the
//! request path, the key table, and the clock they share. The gateway serves it over HTTP;
//! nothing here knows of HTTP.
//!
//! - Operations (users' signed ones from HTTP, and the gateway's own usage settlements) go to
//!   the committer through a bounded queue. The committer takes what is queued, at most one
//!   operation per signer, checks nonces against the ledger, and commits the batch with one
//!   fsync before any caller hears back (`Store::submit_batch`).
//! - Chat requests never wait on the ledger: they reserve and settle against the meter in
//!   memory. Every `usage_flush_interval` the flusher turns settled usage into `SettleUsage`
//!   operations signed with the operator key; a crash loses at most that interval of usage and
//!   never an acknowledged ledger operation. In a cluster (`shared.rs`) each request's usage is
//!   also written to PostgreSQL's usage queue before its response ends (`usage.rs`), and a
//!   crash loses none of the usage it answered.

mod committer;
pub mod keys;
pub mod meter;
pub mod shared;
pub mod usage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger::{Address, Op, Rejection};
use ledger_store::{Receipt, Store, StoreOptions};
use tokio::sync::{mpsc, oneshot};
use wallet::{Authorization, Domain, Wallet};

use crate::keys::KeyStore;
use crate::meter::{Capacity, Meter};

pub use keys::{KeyKind, hash_secret};
pub use ledger::SECONDS_PER_DAY;
pub use shared::SharedLedgerConfig;
pub use usage::Recorded;
/// Operations waiting for the committer; beyond this, submitters get 503.
const JOB_QUEUE: usize = 4_096;
/// Entries of one usage settlement (the ledger's own bound).
const SETTLEMENT_ENTRIES: usize = ledger::MAXIMUM_USAGE_ENTRIES;
/// Longest a signature may stay valid: a signed operation names a deadline at most this far
/// ahead, so a signature that was never submitted cannot be used much later.
pub const MAX_DEADLINE_AHEAD_SECONDS: u64 = 86_400;

/// The economy's configuration.
#[derive(Debug, Clone)]
pub struct EconomyConfig {
    /// The ledger's journal directory (created on first start, with genesis).
    pub ledger_dir: PathBuf,
    /// The operator's wallet key: created on first start; signs genesis and usage settlements.
    pub operator_key: PathBuf,
    /// The API key table.
    pub keys_file: PathBuf,
    /// USD base units of inference a day shared among active stakers by staked sVVV.
    pub network_capacity_usd_units_per_day: u128,
    /// An account counts as an active API user for this many days after a request.
    pub active_window_days: u64,
    /// How often metered usage is written to the ledger.
    pub usage_flush_interval: Duration,
    /// Airdrop allocations written at genesis.
    pub airdrop: Vec<ledger::Allocation>,
    /// Ledger operations one signer may commit a minute through the API (each is a journal
    /// record kept forever); the operator's own are not limited.
    pub operations_per_minute_per_signer: u32,
    /// Lets the operator's ADMIN keys move the gateway's clock forward
    /// (`POST /api/v1/admin/clock`), for tests of daily allowances and cooldowns. Never on in
    /// production.
    pub adjustable_clock: bool,
    /// The journal the gateways of a cluster share (PostgreSQL), with the operator key they
    /// derive alike; `None`: this gateway's ledger is its own, in `ledger_dir` alone.
    pub shared: Option<SharedLedgerConfig>,
}

impl EconomyConfig {
    /// The defaults for a data directory.
    pub fn in_dir(dir: &std::path::Path) -> Self {
        Self {
            ledger_dir: dir.join("ledger"),
            operator_key: dir.join("operator.key"),
            keys_file: dir.join("api-keys.json"),
            network_capacity_usd_units_per_day: 1_000 * wire::money::BASE_UNITS_PER_WHOLE,
            active_window_days: 7,
            usage_flush_interval: Duration::from_secs(1),
            airdrop: Vec::new(),
            // People stake, claim and mint a few times a day.
            operations_per_minute_per_signer: 60,
            adjustable_clock: false,
            shared: None,
        }
    }
}

/// `bytes` random bytes as lower-case hex: ids and secrets.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(buffer.as_mut_slice());
    hex::encode(buffer)
}

/// Wall-clock seconds plus an offset that only an adjustable clock ever moves.
pub struct Clock {
    offset: AtomicU64,
}

impl Clock {
    pub fn now(&self) -> u64 {
        wire::clock::unix_seconds().saturating_add(self.offset.load(Ordering::Relaxed))
    }

    pub fn today(&self) -> u64 {
        self.now() / SECONDS_PER_DAY
    }

    pub fn advance(&self, seconds: u64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// How an operation is signed.
pub enum Signing {
    /// By a user, checked before it was queued; the nonce is checked at commit.
    User(Authorization),
    /// By the operator key, inside the committer (so the nonce is exact).
    Operator,
}

/// Why the committer did not commit an operation.
#[derive(Debug)]
pub enum Refusal {
    Nonce {
        expected: u64,
        got: u64,
    },
    /// The signature's deadline passed while the operation waited to be committed.
    Expired {
        deadline: u64,
        now: u64,
    },
    Rejected(Rejection),
    /// The store failed; the economy is read-only until the gateway restarts.
    Unavailable(String),
    /// The shared journal could not be reached, or did not take the batch: nothing was
    /// written, and the operation may be sent again.
    NotTaken(String),
    /// A usage settlement found none of its usage left in the cluster's usage queue: another
    /// replica settled it (or, taking stale rows, there were none).
    AlreadySettled,
}

/// Longest wait for the shared key table to take a change.
const KEY_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Economy {
    store: Arc<Mutex<Store>>,
    jobs: mpsc::Sender<committer::Job>,
    pub domain: Domain,
    pub operator: Address,
    pub clock: Arc<Clock>,
    pub meter: Arc<Meter>,
    pub keys: Arc<KeyStore>,
    /// Key changes for the shared key table (with a shared journal only).
    key_jobs: Option<mpsc::Sender<committer::KeyJob>>,
    pub config: EconomyConfig,
    healthy: Arc<AtomicBool>,
    /// Whether the shared journal answered the committer's last query (always true without
    /// one): metered requests are refused while it does not, since their usage could not be
    /// settled.
    shared_up: Arc<AtomicBool>,
    /// Each account's latest rate-limit refusals, for `/api_keys/rate_limits/log`.
    pub rate_limit_log: RateLimitLog,
    /// The UTC day whose flush last reported utilization (for the day before it); zero until
    /// the first flush, so a restarted gateway reports again (the same figure: it is computed
    /// from the ledger alone).
    utilization_reported_on: AtomicU64,
    /// In a cluster: the usage queue each metered request's usage is written to before its
    /// response ends (`usage.rs`).
    usage: Option<usage::UsageQueue>,
    /// How old rows of the usage queue are before this replica settles them for another.
    adopt_after: Duration,
    /// When this replica last looked for such rows.
    adopted_at: Mutex<Option<std::time::Instant>>,
}

/// Latest rate-limit refusals kept per account.
pub const RATE_LIMIT_LOG_ENTRIES: usize = 50;
/// Accounts the rate-limit log keeps entries for; further accounts' refusals are not logged
/// until the gateway restarts (the log lives in memory only).
const RATE_LIMIT_LOG_ACCOUNTS: usize = 100_000;

/// One rate-limit refusal: which key, model, tier and limit, and when. No content, no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitHit {
    pub key_id: Option<String>,
    pub model_id: String,
    pub tier: String,
    /// `RPM` or `TPM`.
    pub limit_type: &'static str,
    pub timestamp_seconds: u64,
}

/// Each account's latest [`RATE_LIMIT_LOG_ENTRIES`] rate-limit refusals, in memory.
#[derive(Default)]
pub struct RateLimitLog {
    hits: Mutex<HashMap<Address, std::collections::VecDeque<RateLimitHit>>>,
}

impl RateLimitLog {
    pub fn record(&self, account: Address, hit: RateLimitHit) {
        let mut hits = self
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hits.len() >= RATE_LIMIT_LOG_ACCOUNTS && !hits.contains_key(&account) {
            return;
        }
        let entries = hits.entry(account).or_default();
        if entries.len() >= RATE_LIMIT_LOG_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(hit);
    }

    /// Newest first.
    pub fn recent(&self, account: Address) -> Vec<RateLimitHit> {
        let hits = self
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hits.get(&account)
            .map(|entries| entries.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// API utilization on one UTC day, in basis points of the network's daily capacity: everything
/// settled for that day (allowance, bundled credits and USD) over the configured network
/// capacity plus the allowance of all staked DIEM ($1 per DIEM), capped at 100%. With no
/// capacity at all, any usage is full utilization.
pub fn utilization_bps(ledger: &ledger::Ledger, day: u64, network_capacity_usd_units: u128) -> u32 {
    utilization_of(
        spent_on_day(ledger, day),
        network_capacity_usd_units.saturating_add(ledger.supply().staked_diem_units),
    )
}

/// Everything settled for `day`: allowance, bundled credits and USD.
pub fn spent_on_day(ledger: &ledger::Ledger, day: u64) -> u128 {
    let usage = ledger.usage_on_day(day);
    usage
        .allowance_units
        .saturating_add(usage.bundled_credit_units)
        .saturating_add(usage.usd_units)
}

/// `spent` over `capacity` in basis points, capped at 100%; with no capacity at all, any
/// spending is full utilization. (In chain mode the staked DIEM in the capacity is the chain's.)
pub fn utilization_of(spent: u128, capacity: u128) -> u32 {
    let full = u32::try_from(ledger::BASIS_POINTS).unwrap_or(u32::MAX);
    if capacity == 0 {
        return if spent > 0 { full } else { 0 };
    }
    ledger::mul_div_floor(spent, ledger::BASIS_POINTS, capacity)
        .and_then(|bps| u32::try_from(bps).ok())
        .map_or(full, |bps| bps.min(full))
}

impl Economy {
    /// Opens (or creates, with genesis) the ledger and starts the committer thread. With a
    /// shared journal, the committer first joins it: the local journal must be a prefix of the
    /// shared one (or is published into an empty one), and genesis is written there by the
    /// first replica to start.
    pub fn open(config: EconomyConfig) -> std::io::Result<Arc<Self>> {
        let operator = match &config.shared {
            // A replica of a cluster signs as the key derived from the cluster's seed, written
            // into its data directory (for the operator's CLI) unless one is there already: a
            // cluster grown from one gateway gives every replica that gateway's key.
            Some(shared) => {
                let derived = Wallet::from_hex(&hex::encode(shared.operator_secret))
                    .map_err(std::io::Error::other)?;
                let text = keyfile::read_or_create(&config.operator_key, || {
                    format!("{}\n", derived.secret_hex()).into_bytes()
                })?;
                Wallet::from_hex(&String::from_utf8_lossy(&text)).map_err(std::io::Error::other)?
            }
            None => Wallet::load_or_create(&config.operator_key).map_err(std::io::Error::other)?,
        };
        let (store, report) = Store::open(
            &config.ledger_dir,
            StoreOptions {
                create_if_missing: true,
                ..StoreOptions::default()
            },
        )
        .map_err(std::io::Error::other)?;
        if report.torn_tail.is_some() {
            tracing::warn!(
                records = report.records_read,
                "the ledger journal ended in a torn write, which was cut off"
            );
        }
        let restored_from = match &report.checkpoint {
            ledger_store::CheckpointCheck::Restored { sequence } => Some(*sequence),
            ledger_store::CheckpointCheck::Ignored { reason } => {
                tracing::warn!(%reason, "the ledger checkpoint was unusable; replayed the whole journal");
                None
            }
            ledger_store::CheckpointCheck::Absent
            | ledger_store::CheckpointCheck::Matched { .. } => None,
        };
        tracing::info!(
            records = report.records_read,
            replayed = report.records_replayed,
            restored_from,
            elapsed_ms = report.replay_duration.as_millis() as u64,
            "ledger recovered"
        );
        let clock = Arc::new(Clock {
            offset: AtomicU64::new(0),
        });
        let keys = Arc::new(KeyStore::open(&config.keys_file)?);
        let meter = Arc::new(Meter::new(Capacity {
            network_usd_units_per_day: config.network_capacity_usd_units_per_day,
            active_window_days: config.active_window_days.max(1),
        }));
        let store = Arc::new(Mutex::new(store));
        let shared = match &config.shared {
            Some(shared) => {
                Some(shared::SharedJournal::new(shared).map_err(std::io::Error::other)?)
            }
            None => {
                let mut guard = lock_store(&store);
                if !guard.ledger().is_initialized() {
                    let genesis =
                        committer::genesis(&operator, config.airdrop.clone(), clock.now());
                    match guard.submit_batch(vec![genesis]) {
                        Ok(mut results) => match results.pop() {
                            Some(Ok(_)) => tracing::info!("ledger created with genesis"),
                            refused => {
                                return Err(std::io::Error::other(format!(
                                    "the ledger refused its genesis: {refused:?}"
                                )));
                            }
                        },
                        Err(error) => return Err(std::io::Error::other(error)),
                    }
                }
                None
            }
        };
        // The usage queue's writer is started once the committer has joined the cluster (and
        // made the queue's table).
        let usage_queue = shared.as_ref().map(|journal| {
            (
                journal.connector(),
                journal.usage_table().to_owned(),
                journal.replica(),
            )
        });
        let operator_address = operator.address();
        let (jobs, receiver) = mpsc::channel(JOB_QUEUE);
        let (key_jobs, key_receiver) = match &shared {
            Some(_) => {
                let (sender, receiver) = mpsc::channel(JOB_QUEUE);
                (Some(sender), Some(receiver))
            }
            None => (None, None),
        };
        let healthy = Arc::new(AtomicBool::new(true));
        let shared_up = Arc::new(AtomicBool::new(true));
        committer::start(committer::Start {
            queues: committer::Queues {
                operations: receiver,
                keys: key_receiver,
            },
            store: Arc::clone(&store),
            meter: Arc::clone(&meter),
            keys: Arc::clone(&keys),
            clock: Arc::clone(&clock),
            healthy: Arc::clone(&healthy),
            shared_up: Arc::clone(&shared_up),
            operator,
            airdrop: config.airdrop.clone(),
            shared,
        })?;
        let usage = match usage_queue {
            Some((connector, table, replica)) => Some(usage::UsageQueue::start(
                connector,
                table,
                replica,
                Arc::clone(&meter),
            )?),
            None => None,
        };
        let guard = lock_store(&store);
        let ledger = guard.ledger();
        let (Some(admin), Some(genesis_seconds)) = (ledger.admin(), ledger.genesis_seconds())
        else {
            return Err(std::io::Error::other("the ledger has no genesis"));
        };
        if admin != operator_address {
            return Err(std::io::Error::other(format!(
                "the operator key {} is not this ledger's operator{}",
                config.operator_key.display(),
                if config.shared.is_some() {
                    " (every replica of a cluster needs the same one: derived from the cluster \
                     seed, or copied from the gateway whose ledger the cluster grew from)"
                } else {
                    ""
                }
            )));
        }
        let domain = Domain::for_ledger(admin, genesis_seconds);
        let today = clock.today();
        let config_flush = config.usage_flush_interval;
        meter.refresh(ledger, &keys.accounts(), today);
        tracing::info!(
            sequence = guard.last_sequence(),
            shared = config.shared.is_some(),
            replay_ms = report.replay_duration.as_millis() as u64,
            "ledger open"
        );
        drop(guard);
        Ok(Arc::new(Self {
            store,
            jobs,
            domain,
            operator: admin,
            clock,
            meter,
            keys,
            key_jobs,
            config,
            healthy,
            shared_up,
            utilization_reported_on: AtomicU64::new(0),
            rate_limit_log: RateLimitLog::default(),
            adopt_after: usage::adopt_after(config_flush),
            usage,
            adopted_at: Mutex::new(None),
        }))
    }

    /// Reads the ledger. Waits for a commit in progress (an fsync) at most.
    pub fn read<T>(&self, read: impl FnOnce(&Store) -> T) -> T {
        read(&lock_store(&self.store))
    }

    /// Loads an account into the meter (when it gets its first key).
    pub fn refresh_account(&self, account: Address) {
        let today = self.clock.today();
        self.read(|store| self.meter.refresh(store.ledger(), &[account], today));
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.shared_up.load(Ordering::Relaxed)
    }

    /// Whether each metered request's usage is written to the cluster's usage queue, and its
    /// response should end only once [`Metering::finish`]'s [`usage::Recorded`] says so.
    pub fn records_usage(&self) -> bool {
        self.usage.is_some()
    }

    /// Queues an operation and waits until it is durable or refused.
    pub async fn submit(
        &self,
        signer: Address,
        op: Op,
        signing: Signing,
    ) -> Result<Receipt, Refusal> {
        self.submit_job(signer, op, signing, None).await
    }

    async fn submit_job(
        &self,
        signer: Address,
        op: Op,
        signing: Signing,
        rows: Option<usage::Rows>,
    ) -> Result<Receipt, Refusal> {
        let (reply, answer) = oneshot::channel();
        let job = committer::Job {
            signer,
            op,
            signing,
            rows,
            reply,
        };
        self.jobs.try_send(job).map_err(|_| {
            Refusal::Unavailable("the ledger's queue is full; try again shortly".into())
        })?;
        answer
            .await
            .map_err(|_| Refusal::Unavailable("the ledger committer stopped".into()))?
    }

    /// Creates a key for `account` (see [`KeyStore::create`]); in a cluster, the key reaches
    /// the shared key table before its secret is returned, or is not made.
    pub async fn create_key(
        &self,
        account: Address,
        kind: KeyKind,
        description: String,
        expires_at: Option<u64>,
        limit: Option<keys::SpendLimit>,
        now: u64,
    ) -> Result<keys::Minted, keys::KeyError> {
        let minted = self
            .keys
            .create(account, kind, description, expires_at, limit, now)?;
        if let Err(error) = self.share_key(&minted.key.id, Some(&minted.key)).await {
            self.keys.forget(&minted.key.id);
            return Err(error);
        }
        Ok(minted)
    }

    /// Changes a key of `account`; in a cluster, the change is in the shared key table when
    /// this returns `Ok`.
    pub async fn update_key(
        &self,
        account: Address,
        id: &str,
        change: impl FnOnce(&mut keys::StoredKey),
    ) -> Result<keys::StoredKey, keys::KeyError> {
        let updated = self.keys.update(account, id, change)?;
        self.share_key(id, Some(&updated)).await?;
        Ok(updated)
    }

    /// Deletes a key of `account`; in a cluster, the deletion is in the shared key table
    /// before it is made here, and the other replicas refuse the key within
    /// [`shared::TAIL_INTERVAL`] of it.
    pub async fn delete_key(&self, account: Address, id: &str) -> Result<(), keys::KeyError> {
        if self.keys.get(account, id).is_none() {
            return Err(keys::KeyError::NotFound);
        }
        self.share_key(id, None).await?;
        self.keys.delete(account, id)
    }

    /// Sends a key change to the shared key table, with a shared journal; nothing without.
    async fn share_key(
        &self,
        id: &str,
        key: Option<&keys::StoredKey>,
    ) -> Result<(), keys::KeyError> {
        let Some(jobs) = &self.key_jobs else {
            return Ok(());
        };
        let unavailable = keys::KeyError::Unavailable;
        let key = key
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| unavailable(error.to_string()))?;
        let (reply, answer) = oneshot::channel();
        jobs.try_send(committer::KeyJob {
            id: id.to_owned(),
            key,
            reply,
        })
        .map_err(|_| unavailable("the ledger's queue is full".into()))?;
        match tokio::time::timeout(KEY_WRITE_TIMEOUT, answer).await {
            Ok(Ok(result)) => result.map_err(unavailable),
            Ok(Err(_)) => Err(unavailable("the ledger committer stopped".into())),
            Err(_) => Err(unavailable("no answer in time".into())),
        }
    }

    /// Writes pending usage to the ledger and the key table to disk.
    pub async fn flush(&self) {
        let today = self.clock.today();
        self.meter.roll_day(today);
        let settlements = self.meter.begin_settlement(SETTLEMENT_ENTRIES);
        let mut lost = false;
        // Days whose settlement was not taken (the shared journal was out of reach): their
        // usage stays in the meter for the next flush.
        let mut kept_days = Vec::new();
        for meter::Settlement { day, entries, rows } in settlements {
            let count = entries.len();
            // In a cluster the queue's rows are what is settled; the entries summed here are
            // what they hold unless another replica settled some of them.
            let rows = self.usage.as_ref().map(|_| usage::Rows::Own { day, rows });
            let op = Op::SettleUsage { day, entries };
            match self
                .submit_job(self.operator, op, Signing::Operator, rows)
                .await
            {
                Ok(receipt) => {
                    tracing::debug!(
                        sequence = receipt.sequence,
                        entries = count,
                        "usage settled"
                    );
                }
                Err(Refusal::AlreadySettled) => {
                    tracing::info!(entries = count, day, "usage was settled by another replica");
                }
                Err(Refusal::NotTaken(reason)) => {
                    kept_days.push(day);
                    tracing::warn!(
                        %reason,
                        entries = count,
                        day,
                        "usage settlement not taken; it is kept for the next flush"
                    );
                }
                Err(refusal) => {
                    lost = true;
                    tracing::error!(
                        ?refusal,
                        entries = count,
                        day,
                        "usage settlement failed; its usage is lost"
                    );
                }
            }
        }
        self.read(|store| {
            self.meter
                .finish_settlement_keeping(store.ledger(), today, &kept_days);
        });
        if lost {
            self.healthy.store(false, Ordering::Relaxed);
        }
        self.adopt_stale_usage().await;
        self.report_utilization(today).await;
        if let Err(error) = self.keys.flush() {
            tracing::error!(%error, "cannot save the key table");
        }
    }

    /// In a cluster, at most every half `adopt_after`: settles one day's rows of the usage
    /// queue that no replica settled in time (their replica stopped).
    async fn adopt_stale_usage(&self) {
        if self.usage.is_none() {
            return;
        }
        {
            let mut adopted_at = self
                .adopted_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if adopted_at.is_some_and(|at| at.elapsed() < self.adopt_after / 2) {
                return;
            }
            *adopted_at = Some(std::time::Instant::now());
        }
        let op = Op::SettleUsage {
            day: 0,
            entries: Vec::new(),
        };
        let rows = usage::Rows::Adopt {
            older_than: self.adopt_after,
        };
        match self
            .submit_job(self.operator, op, Signing::Operator, Some(rows))
            .await
        {
            Ok(receipt) => tracing::info!(
                sequence = receipt.sequence,
                "settled usage another replica left unsettled"
            ),
            Err(Refusal::AlreadySettled) => {}
            Err(refusal) => {
                tracing::warn!(?refusal, "cannot settle usage another replica left");
            }
        }
    }

    /// Once per UTC day, after yesterday's usage is settled: reports yesterday's utilization to
    /// the ledger, which sets the company's share of emissions from then on.
    async fn report_utilization(&self, today: u64) {
        if self.utilization_reported_on.swap(today, Ordering::Relaxed) == today {
            return;
        }
        let Some(yesterday) = today.checked_sub(1) else {
            return;
        };
        let utilization = self.read(|store| {
            utilization_bps(
                store.ledger(),
                yesterday,
                self.config.network_capacity_usd_units_per_day,
            )
        });
        let op = Op::ReportUtilization {
            utilization_bps: utilization,
        };
        match self.submit(self.operator, op, Signing::Operator).await {
            Ok(receipt) => tracing::info!(
                sequence = receipt.sequence,
                day = yesterday,
                utilization_bps = utilization,
                "utilization reported"
            ),
            Err(refusal) => {
                // Tried again at the next flush.
                self.utilization_reported_on.store(0, Ordering::Relaxed);
                tracing::warn!(?refusal, day = yesterday, "cannot report utilization");
            }
        }
    }

    /// Flushes usage, then writes a checkpoint so `ledger verify` can check the final state.
    pub async fn close(&self) {
        self.flush().await;
        let mut store = lock_store(&self.store);
        if let Err(error) = store.write_checkpoint() {
            tracing::warn!(%error, "cannot write the ledger checkpoint at shutdown");
        }
    }
}

/// A metered request's hold on its account: the reservation made before it was sent, settled
/// with the real cost when the request ends (or released, if it never produced anything).
pub struct Metering {
    economy: Arc<Economy>,
    account: Address,
    key_id: Option<String>,
    day: u64,
    reserved: meter::Draw,
    /// What is reserved under the key's spend cap (zero without one).
    cap_reserved: u128,
    /// What the account could spend before this request, for the balance headers.
    pub balance: meter::Balance,
    settled: bool,
}

impl Metering {
    /// How `cost` falls on the account's sources, in the order a charge takes them (today's
    /// allowance, then bundled credits, then dollars), within what the request reserved.
    pub fn split(&self, cost: u128) -> meter::Draw {
        let allowance = cost.min(self.reserved.allowance);
        let bundled = (cost - allowance).min(self.reserved.bundled);
        meter::Draw {
            allowance,
            bundled,
            usd: cost - allowance - bundled,
        }
    }
}

/// Why a metered request may not start.
pub enum MeterRefusal {
    Insufficient(meter::Shortfall),
    KeyCap {
        remaining: u128,
        period: keys::LimitPeriod,
    },
    Unavailable,
}

impl Metering {
    /// Reserves `max_cost` for `account`, within the key's spend cap.
    pub fn begin(
        economy: &Arc<Economy>,
        account: Address,
        key_id: Option<&str>,
        max_cost: u128,
    ) -> Result<Self, MeterRefusal> {
        if !economy.is_healthy() {
            return Err(MeterRefusal::Unavailable);
        }
        let day = economy.clock.today();
        // The cap is reserved like the balance, so requests in flight together cannot pass it.
        let cap_reserved = match key_id {
            Some(id) => economy
                .keys
                .reserve_cap_share(id, day, max_cost, economy.meter.replicas())
                .map_err(|(remaining, period)| MeterRefusal::KeyCap { remaining, period })?,
            None => 0,
        };
        let (reserved, balance) = match economy.meter.reserve(account, day, max_cost) {
            Ok(reserved) => reserved,
            Err(shortfall) => {
                if let Some(id) = key_id {
                    economy.keys.release_cap(id, cap_reserved);
                }
                return Err(MeterRefusal::Insufficient(shortfall));
            }
        };
        Ok(Self {
            economy: Arc::clone(economy),
            account,
            key_id: key_id.map(str::to_owned),
            day,
            reserved,
            cap_reserved,
            balance,
            settled: false,
        })
    }

    /// Charges the request's real cost. In a cluster, the usage is also written to the shared
    /// usage queue, and the response should not end before the returned [`usage::Recorded`]
    /// says it is durable.
    pub fn finish(
        &mut self,
        cost: u128,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Option<usage::Recorded> {
        if self.settled {
            return None;
        }
        self.settled = true;
        let meter = &self.economy.meter;
        let tokens = (prompt_tokens, completion_tokens);
        let (charged, recorded) = match &self.economy.usage {
            Some(queue) => {
                let row = queue.next_row();
                let charged = meter.settle_recording(
                    self.account,
                    self.day,
                    self.reserved,
                    cost,
                    tokens,
                    row,
                );
                let recorded = queue.record(row, self.day, self.account, charged, tokens);
                (charged, Some(recorded))
            }
            None => (
                meter.settle(
                    self.account,
                    self.day,
                    self.reserved,
                    cost,
                    prompt_tokens,
                    completion_tokens,
                ),
                None,
            ),
        };
        if let Some(id) = &self.key_id {
            self.economy.keys.record_use(
                id,
                self.day,
                self.economy.clock.now(),
                self.cap_reserved,
                charged.total(),
            );
        }
        recorded
    }
}

impl Drop for Metering {
    fn drop(&mut self) {
        // A request that ended before the relay took it over (no provider, a refusal) costs
        // nothing and counts as no request.
        if !self.settled {
            self.settled = true;
            self.economy.meter.release(self.account, self.reserved);
            if let Some(id) = &self.key_id {
                self.economy.keys.release_cap(id, self.cap_reserved);
            }
        }
    }
}

/// The exit status of a process stopped because the economy's state can no longer be trusted
/// (sysexits' EX_SOFTWARE).
pub const BROKEN_INVARIANT_EXIT_CODE: i32 = 70;

/// Stops the process: the ledger's state in memory can no longer be trusted (a thread panicked
/// while changing it, or the committer died). The journal on disk is the truth, and a restart
/// replays it; serving on would answer from a state that may be half changed.
pub fn stop_the_process(why: &str) -> ! {
    tracing::error!(
        why,
        "stopping: the ledger's state in memory is no longer trusted"
    );
    eprintln!("gondola: stopping: {why}; the journal is the truth and a restart replays it");
    std::process::exit(BROKEN_INVARIANT_EXIT_CODE)
}

/// The store, or a stop of the process if a thread panicked while holding it.
pub(crate) fn lock_store(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|_| {
        stop_the_process("the ledger store was left half changed by a thread that panicked")
    })
}

/// Flushes usage every interval, for as long as the economy lives.
pub async fn flush_loop(economy: std::sync::Weak<Economy>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(economy) = economy.upgrade() else {
            return;
        };
        economy.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(account: Address, usd_units: u128) -> ledger::UsageCharge {
        ledger::UsageCharge {
            account,
            requests: 1,
            prompt_tokens: 10,
            completion_tokens: 10,
            allowance_units: 0,
            bundled_credit_units: 0,
            usd_units,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_account_charged_past_its_credits_does_not_sink_the_settlement() {
        let dir = tempfile::tempdir().expect("temp dir");
        let economy = Economy::open(EconomyConfig::in_dir(dir.path())).expect("opened");
        let (short, fine) = (Address([1; 20]), Address([2; 20]));
        for account in [short, fine] {
            economy
                .submit(
                    economy.operator,
                    Op::CreditAccount {
                        account,
                        usd_units: 1_000,
                        bundled_credit_units: 0,
                    },
                    Signing::Operator,
                )
                .await
                .expect("credited");
        }
        // One account is charged more than it holds (as two gateways could, each metering it
        // against the same balance); the other within its credits.
        let day = economy.clock.today();
        let receipt = economy
            .submit(
                economy.operator,
                Op::SettleUsage {
                    day,
                    entries: vec![charge(short, 1_500), charge(fine, 400)],
                },
                Signing::Operator,
            )
            .await;
        assert!(receipt.is_ok(), "{receipt:?}");
        let now = economy.clock.now();
        let (short_left, fine_left) = economy.read(|store| {
            (
                store.ledger().balances(short, now).usd_credit_units,
                store.ledger().balances(fine, now).usd_credit_units,
            )
        });
        assert_eq!(short_left, 0, "the short account paid what it had");
        assert_eq!(fine_left, 600, "the other paid what it owed");
    }

    /// Set (to a data directory) in the child process the test below starts.
    const CHILD: &str = "GONDOLA_ECONOMY_TEST_POISONED_CHILD";
    const TEST_NAME: &str = "tests::a_store_left_half_changed_stops_the_process_instead_of_serving";

    #[test]
    fn a_store_left_half_changed_stops_the_process_instead_of_serving() {
        if let Some(dir) = std::env::var_os(CHILD) {
            // The child: a thread panics while it holds the store; the next reader must not be
            // served the state it left.
            let economy = Economy::open(EconomyConfig::in_dir(std::path::Path::new(&dir)))
                .expect("the economy opens");
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                economy.read(|_| panic!("a broken invariant, mid-change"))
            }));
            assert!(panicked.is_err());
            let sequence = economy.read(|store| store.last_sequence());
            println!("served on at sequence {sequence}");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new(std::env::current_exe().expect("this test"))
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .output()
            .expect("the child runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(BROKEN_INVARIANT_EXIT_CODE),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(!stdout.contains("served on"), "{stdout}");
        assert!(
            stderr.contains("stopping: the ledger store was left half changed"),
            "{stderr}"
        );
    }
}
