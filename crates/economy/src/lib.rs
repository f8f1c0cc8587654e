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
//!   never an acknowledged ledger operation.

pub mod keys;
pub mod meter;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger::{Address, GenesisConfig, Op, Rejection};
use ledger_store::{Receipt, Store, StoreOptions, Submission};
use tokio::sync::{mpsc, oneshot};
use wallet::{Authorization, Domain, Scheme, Wallet};

use crate::keys::KeyStore;
use crate::meter::{Capacity, Meter};

pub use keys::{KeyKind, hash_secret};
pub use ledger::SECONDS_PER_DAY;
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
}

struct Job {
    signer: Address,
    op: Op,
    signing: Signing,
    reply: oneshot::Sender<Result<Receipt, Refusal>>,
}

pub struct Economy {
    store: Arc<Mutex<Store>>,
    jobs: mpsc::Sender<Job>,
    pub domain: Domain,
    pub operator: Address,
    pub clock: Arc<Clock>,
    pub meter: Arc<Meter>,
    pub keys: KeyStore,
    pub config: EconomyConfig,
    healthy: Arc<AtomicBool>,
    /// Each account's latest rate-limit refusals, for `/api_keys/rate_limits/log`.
    pub rate_limit_log: RateLimitLog,
    /// The UTC day whose flush last reported utilization (for the day before it); zero until
    /// the first flush, so a restarted gateway reports again (the same figure: it is computed
    /// from the ledger alone).
    utilization_reported_on: AtomicU64,
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
    let usage = ledger.usage_on_day(day);
    let spent = usage
        .allowance_units
        .saturating_add(usage.bundled_credit_units)
        .saturating_add(usage.usd_units);
    let capacity = network_capacity_usd_units.saturating_add(ledger.supply().staked_diem_units);
    let full = u32::try_from(ledger::BASIS_POINTS).unwrap_or(u32::MAX);
    if capacity == 0 {
        return if spent > 0 { full } else { 0 };
    }
    ledger::mul_div_floor(spent, ledger::BASIS_POINTS, capacity)
        .and_then(|bps| u32::try_from(bps).ok())
        .map_or(full, |bps| bps.min(full))
}

impl Economy {
    /// Opens (or creates, with genesis) the ledger and starts the committer thread.
    pub fn open(config: EconomyConfig) -> std::io::Result<Arc<Self>> {
        let operator =
            Wallet::load_or_create(&config.operator_key).map_err(std::io::Error::other)?;
        let (mut store, report) = Store::open(
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
        if !store.ledger().is_initialized() {
            let admin = operator.address();
            let genesis =
                GenesisConfig::venice(admin, admin, admin, admin, admin, config.airdrop.clone());
            let now = clock.now();
            let op = Op::Genesis(Box::new(genesis));
            let domain = Domain::for_ledger(admin, now);
            let authorization = wallet::sign(&operator, &domain, &op, 0, now, Scheme::Eip712);
            match store.submit(now, admin, &authorization.encode(), op) {
                Ok(Ok(_)) => tracing::info!("ledger created with genesis"),
                Ok(Err(rejection)) => {
                    return Err(std::io::Error::other(format!(
                        "the ledger refused its genesis: {rejection:?}"
                    )));
                }
                Err(error) => return Err(std::io::Error::other(error)),
            }
        }
        let ledger = store.ledger();
        let (Some(admin), Some(genesis_seconds)) = (ledger.admin(), ledger.genesis_seconds())
        else {
            return Err(std::io::Error::other("the ledger has no genesis"));
        };
        if admin != operator.address() {
            return Err(std::io::Error::other(format!(
                "the operator key {} is not this ledger's operator",
                config.operator_key.display()
            )));
        }
        let domain = Domain::for_ledger(admin, genesis_seconds);
        let keys = KeyStore::open(&config.keys_file)?;
        let meter = Arc::new(Meter::new(Capacity {
            network_usd_units_per_day: config.network_capacity_usd_units_per_day,
            active_window_days: config.active_window_days.max(1),
        }));
        let today = clock.today();
        meter.refresh(store.ledger(), &keys.accounts(), today);
        tracing::info!(
            sequence = store.last_sequence(),
            replay_ms = report.replay_duration.as_millis() as u64,
            "ledger open"
        );
        let store = Arc::new(Mutex::new(store));
        let (jobs, receiver) = mpsc::channel(JOB_QUEUE);
        let healthy = Arc::new(AtomicBool::new(true));
        {
            let store = Arc::clone(&store);
            let meter = Arc::clone(&meter);
            let clock = Arc::clone(&clock);
            let healthy = Arc::clone(&healthy);
            std::thread::Builder::new()
                .name("ledger-committer".into())
                .spawn(move || {
                    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        commit_loop(
                            receiver, &store, &meter, &clock, &healthy, &operator, domain,
                        );
                    }));
                    if committed.is_err() {
                        stop_the_process(
                            "the ledger committer stopped on a broken invariant (see the panic \
                             above)",
                        );
                    }
                })?;
        }
        Ok(Arc::new(Self {
            store,
            jobs,
            domain,
            operator: admin,
            clock,
            meter,
            keys,
            config,
            healthy,
            utilization_reported_on: AtomicU64::new(0),
            rate_limit_log: RateLimitLog::default(),
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
        self.healthy.load(Ordering::Relaxed)
    }

    /// Queues an operation and waits until it is durable or refused.
    pub async fn submit(
        &self,
        signer: Address,
        op: Op,
        signing: Signing,
    ) -> Result<Receipt, Refusal> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            signer,
            op,
            signing,
            reply,
        };
        self.jobs.try_send(job).map_err(|_| {
            Refusal::Unavailable("the ledger's queue is full; try again shortly".into())
        })?;
        answer
            .await
            .map_err(|_| Refusal::Unavailable("the ledger committer stopped".into()))?
    }

    /// Writes pending usage to the ledger and the key table to disk.
    pub async fn flush(&self) {
        let today = self.clock.today();
        self.meter.roll_day(today);
        let settlements = self.meter.begin_settlement(SETTLEMENT_ENTRIES);
        let mut lost = false;
        for (day, entries) in settlements {
            let count = entries.len();
            let op = Op::SettleUsage { day, entries };
            match self.submit(self.operator, op, Signing::Operator).await {
                Ok(receipt) => {
                    tracing::debug!(
                        sequence = receipt.sequence,
                        entries = count,
                        "usage settled"
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
        self.read(|store| self.meter.finish_settlement(store.ledger(), today));
        if lost {
            self.healthy.store(false, Ordering::Relaxed);
        }
        self.report_utilization(today).await;
        if let Err(error) = self.keys.flush() {
            tracing::error!(%error, "cannot save the key table");
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
                .reserve_cap(id, day, max_cost)
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

    /// Charges the request's real cost.
    pub fn finish(&mut self, cost: u128, prompt_tokens: u64, completion_tokens: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        let charged = self.economy.meter.settle(
            self.account,
            self.day,
            self.reserved,
            cost,
            prompt_tokens,
            completion_tokens,
        );
        if let Some(id) = &self.key_id {
            self.economy.keys.record_use(
                id,
                self.day,
                self.economy.clock.now(),
                self.cap_reserved,
                charged.total(),
            );
        }
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
fn lock_store(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
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

fn commit_loop(
    mut receiver: mpsc::Receiver<Job>,
    store: &Mutex<Store>,
    meter: &Meter,
    clock: &Clock,
    healthy: &AtomicBool,
    operator: &Wallet,
    domain: Domain,
) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match receiver.blocking_recv() {
                Some(job) => waiting.push_back(job),
                None => return,
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
        let now = clock.now().max(guard.last_time_seconds());
        let mut submissions = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut touched = Vec::new();
        for mut job in batch {
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
        if submissions.is_empty() {
            continue;
        }
        match guard.submit_batch(submissions) {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map_err(Refusal::Rejected));
                }
                meter.refresh(guard.ledger(), &touched, now / SECONDS_PER_DAY);
            }
            Err(error) => {
                healthy.store(false, Ordering::Relaxed);
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
