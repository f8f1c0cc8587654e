//! State shared by many gateways in Redis (`[cluster] redis_url`): privacy tokens' spent
//! nonces, the per-minute request and token budgets, the failed-request budget, the live
//! replicas, web3 key challenges taken, and accounts' rate-limit refusals. With it,
//! any number of gateways behind a load balancer act as one: a token pays once whichever
//! replica sees it, and a caller's budget of N is N in all, not N per replica.
//!
//! Each check is one Lua script, so it is atomic in Redis and one round trip, and most
//! requests need none: a replica borrows a slice of a caller's per-minute budget at a time
//! (a fiftieth of it, at least one request and at most a thousand) and admits from it
//! locally, so N is never passed in all and at most a slice per replica goes unused; the
//! tokens requests used are added up locally and sent every [`FLUSH_INTERVAL`]; whether a
//! caller is blocked for failing is asked at most once a [`BLOCK_RECHECK`] per replica (at
//! once where this replica blocked it). Spent tokens always go to Redis. When Redis cannot
//! be reached, the requests that need it are refused with a 503 (nothing is let through
//! unchecked, nothing spent twice); the connection manager reconnects when Redis returns.
//!
//! Durability: a spent nonce must survive a Redis restart, so the gateway refuses to start
//! against a Redis that does not write its append-only file with `appendfsync always`
//! (Redis then syncs the file before it answers, so a reply means the nonce is on disk).
//!
//! The seeds replicas must agree on come from the cluster seed, one file every replica is
//! given: the Privacy Pass issuer's, the Oblivious HTTP key's and the video queue ids' are
//! derived from it ([`Cluster::derived_seed`]), so a token, an encapsulated request or a queue
//! id made at one replica is good at every other.
//!
//! Privacy: Redis sees no API key, account address or IP. A caller's budget is kept under an
//! HMAC of its identity, keyed by the cluster's seed (one file every replica is given); the
//! nonces are the tokens' random ones.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use sha2::Sha256;

use crate::config::RateLimit;
use crate::rate_limit::RateStatus;

/// How long a command may take before the store counts as down.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts per failed command before it fails.
const RETRIES: usize = 2;
/// A rate window's length: one UTC minute, the same on every replica.
const WINDOW_SECONDS: u64 = 60;
/// How long an epoch's spent nonces are kept: the epoch (a UTC day) and a day of slack.
const SPENT_TTL_SECONDS: u64 = 2 * 86_400;
/// Bytes of an identity's HMAC kept in a key (128 bits).
const IDENTITY_BYTES: usize = 16;
/// How often the tokens requests used are sent to Redis.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// How long a replica trusts that a caller is not blocked before asking again.
pub const BLOCK_RECHECK: Duration = Duration::from_secs(1);
/// A borrowed slice is this fraction of the per-minute budget...
const SLICE_DIVISOR: u32 = 50;
/// ...and at most this many requests.
const MAX_SLICE: u32 = 1_000;
/// Callers a replica keeps local figures for; past it, the oldest window's are dropped.
const MAX_LOCAL_CALLERS: usize = 100_000;
/// How long an account's rate-limit refusals are kept after its last one.
const REFUSAL_LOG_TTL_SECONDS: i64 = 7 * 86_400;

/// A rate-limit refusal as the log in Redis keeps it: no content, no address.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRefusal {
    key_id: Option<String>,
    model_id: String,
    tier: String,
    limit_type: String,
    timestamp_seconds: u64,
}

/// How often a replica says it is alive, and counts the replicas that do.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A replica not heard from for this long no longer counts.
const REPLICA_TTL: Duration = Duration::from_secs(3);

/// What a replica holds of one caller's current window.
#[derive(Debug, Clone, Copy)]
struct Borrowed {
    window: u64,
    /// Requests borrowed and not yet admitted.
    left: u32,
    /// The window's counts in Redis at the last borrow.
    requests: u64,
    tokens: u64,
}

/// What a replica knows of whether a caller is blocked for failing.
#[derive(Debug, Clone, Copy)]
struct BlockSeen {
    checked: std::time::Instant,
    until: Option<std::time::Instant>,
}

#[derive(Default)]
struct Local {
    borrowed: std::collections::HashMap<String, Borrowed>,
    blocks: std::collections::HashMap<String, BlockSeen>,
    /// Tokens used, by window key, not yet sent.
    tokens: std::collections::HashMap<String, u64>,
}

/// Where the shared store is.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db`, `rediss://…` or `redis+unix:///path/to/socket`.
    pub redis_url: String,
    /// The seed every replica shares (32 random bytes; made if missing).
    pub seed: PathBuf,
    /// Prefix of every key (several clusters can share one Redis).
    pub prefix: String,
    /// Start even if Redis does not sync its append-only file before answering (a spent
    /// token could then pay again after a Redis crash).
    pub allow_volatile: bool,
    /// The certificate authority (PEM) a `rediss://` server's certificate is checked against,
    /// instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The PostgreSQL server holding the ledger journal the replicas share; without it each
    /// replica keeps a ledger of its own.
    pub postgres_url: Option<String>,
    /// The certificate authority (PEM) PostgreSQL's certificate is checked against, instead
    /// of the system's.
    pub postgres_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the Redis URL is not usable: {0}")]
    Url(String),
    #[error("Redis at the configured URL cannot be reached: {0}")]
    Unreachable(String),
    #[error(
        "Redis does not sync its append-only file before answering (appendonly {appendonly}, \
         appendfsync {appendfsync}); a spent token could pay again after a crash. Run it with \
         `appendonly yes` and `appendfsync always`, or set [cluster] allow_volatile = true"
    )]
    Volatile {
        appendonly: String,
        appendfsync: String,
    },
    #[error("the cluster seed cannot be read: {0}")]
    Seed(String),
}

/// Why the shared store did not answer: the request is refused with a 503.
#[derive(Debug, thiserror::Error)]
#[error("the shared store cannot be reached: {0}")]
pub struct Unavailable(String);

impl From<redis::RedisError> for Unavailable {
    fn from(error: redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

impl Unavailable {
    pub(crate) fn to_api_error(&self) -> wire::error::ApiError {
        wire::error::ApiError::new(
            wire::error::ErrorCode::ModelAtCapacity,
            "the gateway's shared store cannot be reached; try again shortly",
        )
        .with_retry_after(1)
    }
}

/// Reserves a request's nonces, all or none: 1 if none was spent (they are now), 0 if one
/// was (or appears twice).
const RESERVE: &str = r"
local seen = {}
for i = 2, #ARGV do
  if seen[ARGV[i]] or redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then
    return 0
  end
  seen[ARGV[i]] = true
end
for i = 2, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

/// Borrows up to ARGV[4] requests of a window if its budgets allow: {granted, requests,
/// tokens}, the counts after the grant.
const BORROW: &str = r"
local requests = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local granted = 0
if tokens < tonumber(ARGV[2]) then
  granted = math.min(tonumber(ARGV[4]), tonumber(ARGV[1]) - requests)
  if granted > 0 then
    requests = redis.call('HINCRBY', KEYS[1], 'r', granted)
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  else
    granted = 0
  end
end
return {granted, requests, tokens}
";

/// Says replica ARGV[1] is alive now (Redis's clock), forgets those silent for ARGV[2] ms,
/// and counts the rest.
const HEARTBEAT: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
";

/// Takes challenge stamp ARGV[1] (20 digits, so strings compare as numbers) for a party if it
/// is newer than the party's last: 1 if taken, 0 if not newer. The party is forgotten after
/// ARGV[2] ms, when none of its stamps can still be presented.
const TAKE_STAMP: &str = r"
local last = redis.call('GET', KEYS[1])
if last and ARGV[1] <= last then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Counts a failure; the budget-th within a window blocks for the window: 1 if now blocked.
const RECORD_FAILURE: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if count >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return 1
end
return 0
";

/// The shared store, connected.
pub struct Cluster {
    redis: ConnectionManager,
    prefix: String,
    identity_key: [u8; 32],
    reserve: redis::Script,
    borrow: redis::Script,
    record_failure: redis::Script,
    heartbeat: redis::Script,
    take_stamp: redis::Script,
    local: std::sync::Mutex<Local>,
    /// This process's name among the replicas (random, nothing else).
    replica_id: String,
    /// Replicas heard from in the last [`REPLICA_TTL`], this one included.
    replicas: std::sync::atomic::AtomicU64,
    /// The meter that divides accounts' balances among the replicas, once the economy is open.
    meter: std::sync::Mutex<Option<std::sync::Weak<economy::meter::Meter>>>,
    postgres_url: Option<String>,
    postgres_ca_file: Option<PathBuf>,
}

impl Cluster {
    /// Connects, and checks that Redis keeps what it acknowledges.
    pub async fn connect(config: &ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let client = match &config.ca_file {
            Some(ca_file) => {
                let root_cert = std::fs::read(ca_file).map_err(|error| {
                    ClusterError::Url(format!("{}: {error}", ca_file.display()))
                })?;
                redis::Client::build_with_tls(
                    config.redis_url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(config.redis_url.as_str()),
        }
        .map_err(|error| ClusterError::Url(error.to_string()))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_number_of_retries(RETRIES)
            .set_max_delay(200);
        let mut redis = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(|error| ClusterError::Unreachable(error.to_string()))?;
        let setting = |values: Vec<String>| values.get(1).cloned().unwrap_or_default();
        let appendonly: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut redis)
            .await
            .unwrap_or_default();
        let appendfsync: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async(&mut redis)
            .await
            .unwrap_or_default();
        let (appendonly, appendfsync) = (setting(appendonly), setting(appendfsync));
        if !config.allow_volatile && (appendonly != "yes" || appendfsync != "always") {
            return Err(ClusterError::Volatile {
                appendonly,
                appendfsync,
            });
        }
        let seed = crate::oblivious::read_or_create_seed(&config.seed)
            .map_err(|error| ClusterError::Seed(error.to_string()))?;
        let identity_key: [u8; 32] = seed.try_into().map_err(|_| {
            ClusterError::Seed(format!("{} is not 32 bytes", config.seed.display()))
        })?;
        tracing::info!(prefix = %config.prefix, "connected to the shared store");
        let cluster = Arc::new(Self {
            redis,
            prefix: config.prefix.clone(),
            identity_key,
            reserve: redis::Script::new(RESERVE),
            borrow: redis::Script::new(BORROW),
            record_failure: redis::Script::new(RECORD_FAILURE),
            heartbeat: redis::Script::new(HEARTBEAT),
            take_stamp: redis::Script::new(TAKE_STAMP),
            local: std::sync::Mutex::new(Local::default()),
            replica_id: economy::random_hex(16),
            replicas: std::sync::atomic::AtomicU64::new(1),
            meter: std::sync::Mutex::new(None),
            postgres_url: config.postgres_url.clone(),
            postgres_ca_file: config.postgres_ca_file.clone(),
        });
        cluster
            .beat()
            .await
            .map_err(|error| ClusterError::Unreachable(error.to_string()))?;
        if cluster.postgres_url.is_some() {
            // Every other replica counts this one at its next heartbeat; until then it would
            // still divide accounts' balances among one replica fewer, so this one waits for
            // that before it meters anything.
            tokio::time::sleep(HEARTBEAT_INTERVAL + FLUSH_INTERVAL).await;
            cluster
                .beat()
                .await
                .map_err(|error| ClusterError::Unreachable(error.to_string()))?;
        }
        tokio::spawn(flush_loop(Arc::downgrade(&cluster)));
        tokio::spawn(heartbeat_loop(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// The shared ledger's configuration, when the cluster has one: its PostgreSQL server,
    /// and the operator key every replica derives from the cluster seed.
    pub fn shared_ledger(&self) -> Option<economy::SharedLedgerConfig> {
        self.postgres_url
            .as_ref()
            .map(|postgres_url| economy::SharedLedgerConfig {
                postgres_url: postgres_url.clone(),
                prefix: self
                    .prefix
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                operator_secret: self.derived_seed("ledger operator key"),
                ca_file: self.postgres_ca_file.clone(),
            })
    }

    /// Takes a challenge's `stamp` for `party` (a wallet), if it is newer than any stamp the
    /// party used at any replica: `Ok(false)` if it is not. Stamps can be presented for
    /// `ttl_nanos`; the party is remembered that long.
    pub(crate) async fn take_stamp(
        &self,
        party: &str,
        stamp: u64,
        ttl_nanos: u64,
    ) -> Result<bool, Unavailable> {
        let taken: i64 = self
            .take_stamp
            .key(format!(
                "{}:challenge:{}",
                self.prefix,
                self.identity(&format!("wallet {party}"))
            ))
            .arg(format!("{stamp:020}"))
            .arg((ttl_nanos / 1_000_000).max(1))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(taken == 1)
    }

    /// Keeps a rate-limit refusal in `account`'s log, the newest
    /// [`economy::RATE_LIMIT_LOG_ENTRIES`] of them, for a week.
    pub(crate) async fn log_refusal(
        &self,
        account: ledger::Address,
        hit: &economy::RateLimitHit,
    ) -> Result<(), Unavailable> {
        let entry = serde_json::to_string(&StoredRefusal {
            key_id: hit.key_id.clone(),
            model_id: hit.model_id.clone(),
            tier: hit.tier.clone(),
            limit_type: hit.limit_type.to_owned(),
            timestamp_seconds: hit.timestamp_seconds,
        })
        .map_err(|error| Unavailable(error.to_string()))?;
        let key = self.refusals_key(account);
        let entries = economy::RATE_LIMIT_LOG_ENTRIES as isize;
        let _: () = redis::pipe()
            .atomic()
            .lpush(&key, entry)
            .ignore()
            .ltrim(&key, 0, entries - 1)
            .ignore()
            .expire(&key, REFUSAL_LOG_TTL_SECONDS)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// `account`'s logged refusals, newest first.
    pub(crate) async fn refusals(
        &self,
        account: ledger::Address,
    ) -> Result<Vec<economy::RateLimitHit>, Unavailable> {
        let entries = economy::RATE_LIMIT_LOG_ENTRIES as isize;
        let stored: Vec<String> = redis::cmd("LRANGE")
            .arg(self.refusals_key(account))
            .arg(0)
            .arg(entries - 1)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(stored
            .iter()
            .filter_map(|entry| serde_json::from_str::<StoredRefusal>(entry).ok())
            .map(|stored| economy::RateLimitHit {
                key_id: stored.key_id,
                model_id: stored.model_id,
                tier: stored.tier,
                limit_type: if stored.limit_type == "TPM" {
                    "TPM"
                } else {
                    "RPM"
                },
                timestamp_seconds: stored.timestamp_seconds,
            })
            .collect())
    }

    fn refusals_key(&self, account: ledger::Address) -> String {
        format!(
            "{}:refusals:{}",
            self.prefix,
            self.identity(&format!("account {account}"))
        )
    }

    /// Replicas heard from lately, this one included.
    pub fn replicas(&self) -> u64 {
        self.replicas.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lets `meter` divide balances among the replicas from now on.
    pub fn attach_meter(&self, meter: &Arc<economy::meter::Meter>) {
        meter.set_replicas(self.replicas());
        *self
            .meter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::downgrade(meter));
    }

    /// Says this replica is alive and counts the replicas.
    async fn beat(&self) -> Result<u64, Unavailable> {
        let count: u64 = self
            .heartbeat
            .key(format!("{}:replicas", self.prefix))
            .arg(&self.replica_id)
            .arg(REPLICA_TTL.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        self.replicas
            .store(count.max(1), std::sync::atomic::Ordering::Relaxed);
        let meter = self
            .meter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .and_then(std::sync::Weak::upgrade);
        if let Some(meter) = meter {
            meter.set_replicas(count);
        }
        Ok(count)
    }

    /// Leaves the replica set (a clean shutdown), so the others stop dividing by this one.
    pub async fn leave(&self) {
        let left: Result<(), redis::RedisError> = redis::cmd("ZREM")
            .arg(format!("{}:replicas", self.prefix))
            .arg(&self.replica_id)
            .query_async(&mut self.redis.clone())
            .await;
        if let Err(error) = left {
            tracing::warn!(%error, "cannot leave the replica set; the others forget this replica within seconds");
        }
    }

    /// The seed named `purpose` that every replica derives alike: HMAC-SHA256 of the purpose
    /// under the cluster seed.
    pub fn derived_seed(&self, purpose: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.identity_key)
            .expect("HMAC takes a key of any length");
        mac.update(b"gondola cluster seed: ");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The key part standing for `identity` (a caller's name, an account and tier): its HMAC.
    fn identity(&self, identity: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.identity_key)
            .expect("HMAC takes a key of any length");
        mac.update(b"gondola caller: ");
        mac.update(identity.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..IDENTITY_BYTES])
    }

    fn spent_key(&self, epoch: u64) -> String {
        format!("{}:spent:{epoch}", self.prefix)
    }

    /// Reserves `nonces` for `epoch`: `Ok(false)` if one was spent before.
    pub(crate) async fn reserve_nonces(
        &self,
        epoch: u64,
        nonces: &[[u8; 32]],
    ) -> Result<bool, Unavailable> {
        let mut invocation = self.reserve.key(self.spent_key(epoch));
        invocation.arg(SPENT_TTL_SECONDS);
        for nonce in nonces {
            invocation.arg(nonce.as_slice());
        }
        let reserved: i64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(reserved == 1)
    }

    /// Gives back nonces whose request found no provider.
    pub(crate) async fn release_nonces(
        &self,
        epoch: u64,
        nonces: &[[u8; 32]],
    ) -> Result<(), Unavailable> {
        if nonces.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("SREM");
        command.arg(self.spent_key(epoch));
        for nonce in nonces {
            command.arg(nonce.as_slice());
        }
        let _: i64 = command.query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// The current window's index and the time left in it.
    fn window() -> (u64, Duration) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seconds = now.as_secs();
        let left = Duration::from_secs(WINDOW_SECONDS - seconds % WINDOW_SECONDS)
            .saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())));
        (seconds / WINDOW_SECONDS, left)
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one request for `caller` if its budgets allow it (as
    /// [`crate::rate_limit::RateLimiter::check`], over UTC minutes shared by every replica):
    /// from the slice this replica borrowed, else from a new one.
    pub(crate) async fn rate_check(
        &self,
        caller: &str,
        limit: RateLimit,
    ) -> Result<RateStatus, Unavailable> {
        let (window, left) = Self::window();
        let identity = self.identity(caller);
        let status = |allowed: bool, requests: u64, tokens: u64| RateStatus {
            limit,
            remaining_requests: limit
                .requests_per_minute
                .saturating_sub(u32::try_from(requests).unwrap_or(u32::MAX)),
            remaining_tokens: limit.tokens_per_minute.saturating_sub(tokens),
            reset_after: left,
            allowed,
        };
        {
            let mut local = self.local();
            let pending = local
                .tokens
                .get(&self.rate_key_of(&identity, window))
                .copied()
                .unwrap_or(0);
            if let Some(borrowed) = local.borrowed.get_mut(&identity)
                && borrowed.window == window
                && borrowed.left > 0
                && borrowed.tokens.saturating_add(pending) < limit.tokens_per_minute
            {
                borrowed.left -= 1;
                let used = borrowed.requests.saturating_sub(u64::from(borrowed.left));
                return Ok(status(true, used, borrowed.tokens.saturating_add(pending)));
            }
        }
        let slice = (limit.requests_per_minute / SLICE_DIVISOR).clamp(1, MAX_SLICE);
        let (granted, requests, tokens): (u32, u64, u64) = self
            .borrow
            .key(self.rate_key_of(&identity, window))
            .arg(limit.requests_per_minute)
            .arg(limit.tokens_per_minute)
            .arg(WINDOW_SECONDS * 2)
            .arg(slice)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let mut local = self.local();
        if local.borrowed.len() >= MAX_LOCAL_CALLERS {
            local
                .borrowed
                .retain(|_, borrowed| borrowed.window == window);
        }
        local.borrowed.insert(
            identity,
            Borrowed {
                window,
                left: granted.saturating_sub(1),
                requests,
                tokens,
            },
        );
        Ok(status(
            granted > 0,
            requests.saturating_sub(u64::from(granted.saturating_sub(1))),
            tokens,
        ))
    }

    fn rate_key_of(&self, identity: &str, window: u64) -> String {
        format!("{}:rate:{identity}:{window}", self.prefix)
    }

    /// Adds the tokens a request used to `caller`'s current window (sent within
    /// [`FLUSH_INTERVAL`]).
    pub(crate) fn record_tokens(&self, caller: &str, tokens: u64) {
        let (window, _) = Self::window();
        let key = self.rate_key_of(&self.identity(caller), window);
        let mut local = self.local();
        if local.tokens.len() < MAX_LOCAL_CALLERS || local.tokens.contains_key(&key) {
            let count = local.tokens.entry(key).or_insert(0);
            *count = count.saturating_add(tokens);
        }
    }

    /// Sends the tokens counted since the last flush.
    async fn flush_tokens(&self) -> Result<(), Unavailable> {
        let pending = std::mem::take(&mut self.local().tokens);
        if pending.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, tokens) in &pending {
            pipe.hincr(key, "t", *tokens)
                .ignore()
                .expire(key, i64::try_from(WINDOW_SECONDS * 2).unwrap_or(i64::MAX))
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    fn block_key(&self, identity: &str) -> String {
        format!("{}:block:{identity}", self.prefix)
    }

    /// If `caller` spent its failed-request budget, how long it stays refused (as this replica
    /// last learnt it, if within [`BLOCK_RECHECK`]).
    pub(crate) async fn failure_block(
        &self,
        caller: &str,
    ) -> Result<Option<Duration>, Unavailable> {
        let identity = self.identity(caller);
        let now = std::time::Instant::now();
        if let Some(seen) = self.local().blocks.get(&identity).copied()
            && now.duration_since(seen.checked) < BLOCK_RECHECK
        {
            return Ok(seen
                .until
                .and_then(|until| until.checked_duration_since(now)));
        }
        let left: i64 = redis::cmd("PTTL")
            .arg(self.block_key(&identity))
            .query_async(&mut self.redis.clone())
            .await?;
        let blocked = (left > 0).then(|| Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        let mut local = self.local();
        if local.blocks.len() >= MAX_LOCAL_CALLERS {
            local
                .blocks
                .retain(|_, seen| now.duration_since(seen.checked) < BLOCK_RECHECK);
        }
        local.blocks.insert(
            identity,
            BlockSeen {
                checked: now,
                until: blocked.map(|left| now + left),
            },
        );
        Ok(blocked)
    }

    /// Counts a failed request of `caller`; the `budget`-th within `window` blocks it for
    /// `window`.
    pub(crate) async fn record_failure(
        &self,
        caller: &str,
        budget: u32,
        window: Duration,
    ) -> Result<(), Unavailable> {
        let identity = self.identity(caller);
        let milliseconds = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let blocked: i64 = self
            .record_failure
            .key(format!("{}:fail:{identity}", self.prefix))
            .key(self.block_key(&identity))
            .arg(budget)
            .arg(milliseconds)
            .invoke_async(&mut self.redis.clone())
            .await?;
        if blocked == 1 {
            let now = std::time::Instant::now();
            self.local().blocks.insert(
                identity,
                BlockSeen {
                    checked: now,
                    until: Some(now + window),
                },
            );
        }
        Ok(())
    }
}

/// Sends the tokens requests used every [`FLUSH_INTERVAL`], while the cluster is in use.
async fn flush_loop(cluster: std::sync::Weak<Cluster>) {
    let mut interval = tokio::time::interval(FLUSH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if let Err(error) = cluster.flush_tokens().await {
            // A rate budget only, not money: what could not be sent is dropped.
            tracing::warn!(error = %error, "tokens used were not counted");
        }
    }
}

async fn heartbeat_loop(cluster: std::sync::Weak<Cluster>) {
    let mut interval = tokio::time::interval(HEARTBEAT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if let Err(error) = cluster.beat().await {
            // The count stays as last heard; a replica that cannot reach Redis refuses the
            // requests that need it anyway.
            tracing::warn!(%error, "cannot count the replicas");
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use test_servers::RedisServer;

    fn config(server: &RedisServer, dir: &Path) -> ClusterConfig {
        ClusterConfig {
            redis_url: server.url(),
            seed: dir.join("cluster.seed"),
            prefix: "test".into(),
            allow_volatile: false,
            ca_file: None,
            postgres_url: None,
            postgres_ca_file: None,
        }
    }

    /// Calls `attempt` until the store answers (it reconnects after a restart), at most for
    /// five seconds.
    async fn answered<T, F, Fut>(mut attempt: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Unavailable>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match attempt().await {
                Ok(value) => return value,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    panic!("the store did not come back: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_nonce_is_spent_once_across_replicas_and_stays_spent_across_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer::start(dir.path());
        let config = config(&server, dir.path());
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(Cluster::connect(&config).await.expect("connected"));
        }
        // The same token at all three at once: one takes it.
        let nonce = [7u8; 32];
        let outcomes = futures_util::future::join_all(
            replicas
                .iter()
                .map(|replica| replica.reserve_nonces(1, std::slice::from_ref(&nonce))),
        )
        .await;
        let taken = outcomes
            .into_iter()
            .map(|outcome| outcome.expect("answered"))
            .filter(|taken| *taken)
            .count();
        assert_eq!(taken, 1);
        // All or none: a request with a fresh token and the spent one takes neither.
        assert!(
            !replicas[0]
                .reserve_nonces(1, &[[8; 32], nonce])
                .await
                .expect("answered")
        );
        assert!(
            replicas[1]
                .reserve_nonces(1, &[[8; 32]])
                .await
                .expect("answered")
        );
        // Twice in one request is refused too; a released token can be spent again.
        assert!(
            !replicas[2]
                .reserve_nonces(1, &[[9; 32], [9; 32]])
                .await
                .expect("answered")
        );
        replicas[2]
            .release_nonces(1, &[[8; 32]])
            .await
            .expect("released");
        assert!(
            replicas[0]
                .reserve_nonces(1, &[[8; 32]])
                .await
                .expect("answered")
        );
        // Redis restarts (killed, not shut down): what it acknowledged is still spent.
        server.restart();
        assert!(!answered(|| replicas[2].reserve_nonces(1, std::slice::from_ref(&nonce))).await);
        assert!(!answered(|| replicas[1].reserve_nonces(1, &[[8; 32]])).await);
        // Redis down: refused, not let through; back: served again.
        server.stop();
        assert!(replicas[0].reserve_nonces(1, &[[10; 32]]).await.is_err());
        assert!(replicas[0].rate_check("caller", limit(5)).await.is_err());
        server.restart();
        assert!(answered(|| replicas[0].reserve_nonces(1, &[[10; 32]])).await);
    }

    fn limit(requests_per_minute: u32) -> RateLimit {
        RateLimit {
            requests_per_minute,
            tokens_per_minute: 1_000,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn replicas_share_one_budget_per_caller() {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = RedisServer::start(dir.path());
        let config = config(&server, dir.path());
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(Cluster::connect(&config).await.expect("connected"));
        }
        // A window may turn over mid-way: then the count is taken again for another caller.
        for attempt in 0..3 {
            let caller = format!("caller-{attempt}");
            let (before, _) = Cluster::window();
            let mut allowed = 0;
            for request in 0..12 {
                let status = replicas[request % 3]
                    .rate_check(&caller, limit(4))
                    .await
                    .expect("answered");
                allowed += usize::from(status.allowed);
            }
            if Cluster::window().0 != before {
                continue;
            }
            assert_eq!(allowed, 4, "a budget of 4 admits 4 in all");
            // A larger budget is borrowed in slices (500 a minute: 10 at a time), and still
            // admits no more than the budget in all.
            let large = format!("large-{attempt}");
            let mut allowed = 0;
            for request in 0..600 {
                let status = replicas[request % 3]
                    .rate_check(&large, limit(500))
                    .await
                    .expect("answered");
                allowed += usize::from(status.allowed);
            }
            if Cluster::window().0 != before {
                continue;
            }
            assert_eq!(allowed, 500, "a budget of 500 admits 500 in all");
            // Tokens used count against the same budget everywhere.
            let other = format!("tokens-{attempt}");
            replicas[0].record_tokens(&other, 1_000);
            replicas[0].flush_tokens().await.expect("sent");
            let status = replicas[1]
                .rate_check(&other, limit(4))
                .await
                .expect("answered");
            if Cluster::window().0 == before {
                assert!(!status.allowed, "the token budget is spent");
                assert_eq!(status.remaining_tokens, 0);
            }
            // The failure budget: the third failure blocks on every replica.
            // The failure budget: the third failure, wherever it happens, blocks: at once at the
            // replica that saw it, and at another as soon as it asks Redis (a replica that
            // asked less than a second ago may answer from what it learnt then).
            for replica in &replicas {
                assert_eq!(
                    replica.failure_block(&caller).await.expect("answered"),
                    None
                );
                replica
                    .record_failure(&caller, 3, Duration::from_secs(30))
                    .await
                    .expect("counted");
            }
            let fresh = Cluster::connect(&config).await.expect("connected");
            for replica in [&replicas[2], &fresh] {
                let blocked = replica
                    .failure_block(&caller)
                    .await
                    .expect("answered")
                    .expect("blocked");
                assert!(blocked > Duration::from_secs(25) && blocked <= Duration::from_secs(30));
            }
            // The store holds no caller's name.
            let mut connection = replicas[0].redis.clone();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("*")
                .query_async(&mut connection)
                .await
                .expect("keys");
            assert!(!keys.is_empty());
            assert!(keys.iter().all(|key| !key.contains("caller")), "{keys:?}");
            return;
        }
        panic!("three windows turned over mid-count");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_redis_that_does_not_sync_before_answering_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = RedisServer::start_volatile(dir.path());
        let mut config = config(&server, dir.path());
        let error = Cluster::connect(&config).await.expect_err("refused");
        assert!(matches!(error, ClusterError::Volatile { .. }), "{error}");
        config.allow_volatile = true;
        assert!(Cluster::connect(&config).await.is_ok());
    }
}
