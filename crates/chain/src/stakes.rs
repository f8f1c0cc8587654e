//! What a gateway in chain mode knows of its accounts' stake on the chain: each account's
//! staked and locked sVVV and the allowance its staked DIEM gives, read from the suite's
//! contracts at the chain's head and `confirmations` blocks below it. Of the two readings the
//! smaller counts, so an increase counts once it is that deep and a decrease at once.
//!
//! Each poll follows the contracts' events since the last: an account is read again when an
//! event names it (a stake, an unstake, a mint or burn of DIEM, DIEM staked or unstaked), or
//! while an increase of its stake is not yet deep enough. Everyone is read again at the first
//! poll, when DIEM's parameters change, when the block the last poll ended at is no longer the
//! chain's (a reorganization), and after a gap too long to scan.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use alloy_primitives::{Address, B256, U256};

use crate::bindings::{Diem, Staking};
use crate::deploy::Deployment;

/// Most accounts one poll reads; past it, accounts wait for a later poll.
pub const MAXIMUM_ACCOUNTS_PER_POLL: usize = 10_000;

/// Most blocks one poll scans for events; after a longer gap everyone is read again.
const MAXIMUM_BLOCKS_PER_SCAN: u64 = 5_000;

/// One account's stake as the gateway counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stake {
    /// Staked and locked sVVV, base units.
    pub svvv_units: u128,
    /// The DIEM part of the daily allowance, USD base units a day.
    pub diem_allowance_units: u128,
}

impl Stake {
    fn smaller(self, other: Self) -> Self {
        Self {
            svvv_units: self.svvv_units.min(other.svvv_units),
            diem_allowance_units: self.diem_allowance_units.min(other.diem_allowance_units),
        }
    }
}

/// Where the chain is and how deep an increase must be.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    pub rpc_url: String,
    /// The JSON-RPC URL the web app's wallet page reads the contracts and sends its
    /// transactions through, straight from the browser; none where the operator publishes
    /// none (`rpc_url` may hold a provider's key, so it is never published).
    pub public_rpc_url: Option<String>,
    pub deployment: Deployment,
    pub confirmations: u64,
    pub poll: Duration,
    /// The key file of a wallet with the journal anchor's role: with it, the gateway anchors
    /// its journal's head every `anchor_every`.
    pub anchor_key: Option<std::path::PathBuf>,
    pub anchor_every: Duration,
    /// The airdrop's allocations and proofs by address (from the file `gondola chain deploy`
    /// wrote, each checked against the deployment's root), served to claimants; empty without.
    pub airdrop: std::sync::Arc<HashMap<Address, crate::deploy::AirdropProof>>,
}

/// The stakes of the accounts the gateway follows.
pub struct Stakes {
    config: ChainConfig,
    provider: DynProvider,
    known: Mutex<HashMap<Address, Stake>>,
    followed: Mutex<HashSet<Address>>,
    /// Followed accounts not read yet.
    fresh: Mutex<HashSet<Address>>,
    /// Accounts whose stake at the head is above the confirmed one: read until it is not.
    unconfirmed: Mutex<HashSet<Address>>,
    /// The block (number and hash) the last poll scanned to.
    scanned: Mutex<Option<(u64, B256)>>,
    /// The head block of the last complete poll.
    head: std::sync::atomic::AtomicU64,
    /// Accounts read so far (each read is two `eth_call` pairs): what following events saves.
    reads: std::sync::atomic::AtomicU64,
    /// When the last poll completed.
    polled: Mutex<Option<std::time::Instant>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn units(value: U256) -> u128 {
    u128::try_from(value).unwrap_or(u128::MAX)
}

impl Stakes {
    pub fn new(config: ChainConfig) -> Result<Arc<Self>, String> {
        let url = config
            .rpc_url
            .parse()
            .map_err(|error| format!("the chain's RPC URL: {error}"))?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        Ok(Arc::new(Self {
            config,
            provider,
            known: Mutex::new(HashMap::new()),
            followed: Mutex::new(HashSet::new()),
            fresh: Mutex::new(HashSet::new()),
            unconfirmed: Mutex::new(HashSet::new()),
            scanned: Mutex::new(None),
            head: std::sync::atomic::AtomicU64::new(0),
            reads: std::sync::atomic::AtomicU64::new(0),
            polled: Mutex::new(None),
        }))
    }

    /// The stake counted for `account` now (zero until a poll has read it).
    pub fn get(&self, account: Address) -> Stake {
        locked(&self.known)
            .get(&account)
            .copied()
            .unwrap_or_default()
    }

    /// What it was configured with.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// Whether `account` is followed (see [`Stakes::follow`]).
    pub fn follows(&self, account: Address) -> bool {
        locked(&self.followed).contains(&account)
    }

    pub fn confirmations(&self) -> u64 {
        self.config.confirmations
    }

    /// The head block the last poll read at.
    pub fn head(&self) -> u64 {
        self.head.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Follows `account` from the next poll on.
    pub fn follow(&self, account: Address) {
        if locked(&self.followed).insert(account) {
            locked(&self.fresh).insert(account);
        }
    }

    /// Reads `account`'s stake now (at the head and `confirmations` below it) and follows it.
    pub async fn read_now(&self, account: Address) -> Result<Stake, String> {
        self.follow(account);
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(|error| format!("the chain: {error}"))?;
        let stake = self.read_at(account, head).await?;
        locked(&self.known).insert(account, stake);
        Ok(stake)
    }

    async fn read_one(&self, account: Address, block: u64) -> Result<Stake, String> {
        let at = BlockId::number(block);
        let staking = Staking::new(self.config.deployment.staking, &self.provider);
        let diem = Diem::new(self.config.deployment.diem, &self.provider);
        let position = staking
            .positions(account)
            .block(at)
            .call()
            .await
            .map_err(|error| format!("reading a position: {error}"))?;
        let allowance = diem
            .allowanceOf(account)
            .block(at)
            .call()
            .await
            .map_err(|error| format!("reading an allowance: {error}"))?;
        Ok(Stake {
            svvv_units: units(position.staked).saturating_add(units(position.locked)),
            diem_allowance_units: units(allowance),
        })
    }

    /// How many account reads the polls have made.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many accounts are followed.
    pub fn followed(&self) -> usize {
        locked(&self.followed).len()
    }

    /// How long since the last poll completed; none before the first.
    pub fn since_last_poll(&self) -> Option<Duration> {
        locked(&self.polled).map(|at| at.elapsed())
    }

    async fn read_at(&self, account: Address, head: u64) -> Result<Stake, String> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let confirmed = head.saturating_sub(self.config.confirmations);
        let now = self.read_one(account, head).await?;
        let deep = self.read_one(account, confirmed).await?;
        if now.smaller(deep) == now {
            locked(&self.unconfirmed).remove(&account);
        } else {
            locked(&self.unconfirmed).insert(account);
        }
        Ok(now.smaller(deep))
    }

    /// The accounts this poll must read, from the events since the last poll's block; `None`
    /// when everyone must be read.
    async fn touched(&self, head: u64) -> Result<Option<HashSet<Address>>, String> {
        let Some((scanned, hash)) = *locked(&self.scanned) else {
            return Ok(None);
        };
        let still = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(scanned))
            .await
            .map_err(|error| format!("the chain: {error}"))?;
        if still.is_none_or(|block| block.header.hash != hash) || head < scanned {
            tracing::info!(
                block = scanned,
                "the chain reorganized; reading every stake again"
            );
            return Ok(None);
        }
        if head - scanned > MAXIMUM_BLOCKS_PER_SCAN {
            return Ok(None);
        }
        let mut touched: HashSet<Address> = locked(&self.unconfirmed).iter().copied().collect();
        if head == scanned {
            return Ok(Some(touched));
        }
        let deployment = &self.config.deployment;
        let filter = Filter::new()
            .address(vec![deployment.staking, deployment.diem])
            .from_block(scanned + 1)
            .to_block(head);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|error| format!("the chain's events: {error}"))?;
        let naming = [
            Staking::Staked::SIGNATURE_HASH,
            Staking::UnstakeInitiated::SIGNATURE_HASH,
            Staking::RewardsStaked::SIGNATURE_HASH,
            Staking::DiemMinted::SIGNATURE_HASH,
            Staking::DiemBurned::SIGNATURE_HASH,
            Diem::DiemStaked::SIGNATURE_HASH,
            Diem::DiemUnstakeInitiated::SIGNATURE_HASH,
        ];
        for log in logs {
            let topics = log.topics();
            let Some(signature) = topics.first() else {
                continue;
            };
            if *signature == Diem::DiemParametersSet::SIGNATURE_HASH {
                return Ok(None);
            }
            if naming.contains(signature)
                && let Some(account) = topics.get(1)
            {
                touched.insert(Address::from_word(*account));
            }
        }
        Ok(Some(touched))
    }

    /// One poll: the accounts the events name (or everyone) read at the head; returns the
    /// accounts whose stake changed.
    pub async fn poll(&self) -> Result<Vec<Address>, String> {
        let head_block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(|error| format!("the chain: {error}"))?
            .ok_or("the chain has no head block")?;
        let (head, head_hash) = (head_block.header.number, head_block.header.hash);
        let followed: HashSet<Address> = locked(&self.followed).clone();
        let mut reading: Vec<Address> = match self.touched(head).await? {
            Some(touched) => touched
                .into_iter()
                .filter(|account| followed.contains(account))
                .chain(locked(&self.fresh).drain())
                .collect(),
            None => {
                locked(&self.fresh).clear();
                followed.into_iter().collect()
            }
        };
        reading.sort_unstable();
        reading.dedup();
        let later = reading.split_off(reading.len().min(MAXIMUM_ACCOUNTS_PER_POLL));
        locked(&self.fresh).extend(later);
        let mut changed = Vec::new();
        for account in reading {
            let stake = match self.read_at(account, head).await {
                Ok(stake) => stake,
                Err(error) => {
                    // Read again from scratch next time.
                    *locked(&self.scanned) = None;
                    return Err(error);
                }
            };
            if locked(&self.known).insert(account, stake) != Some(stake) {
                changed.push(account);
            }
        }
        *locked(&self.scanned) = Some((head, head_hash));
        self.head.store(head, std::sync::atomic::Ordering::Relaxed);
        *locked(&self.polled) = Some(std::time::Instant::now());
        Ok(changed)
    }

    /// Polls every `poll` for as long as the gateway runs: `accounts` says which accounts to
    /// follow (those with keys), `changed` is told of each account whose stake changed. While
    /// the chain cannot be read, the last stakes stay counted.
    pub async fn run(
        self: Arc<Self>,
        accounts: impl Fn() -> Vec<Address>,
        changed: impl Fn(Address),
    ) {
        let mut ticker = tokio::time::interval(self.config.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticker.tick().await;
            for account in accounts() {
                self.follow(account);
            }
            match self.poll().await {
                Ok(accounts) => {
                    if failing {
                        tracing::info!("the chain can be read again");
                        failing = false;
                    }
                    for account in accounts {
                        changed(account);
                    }
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "cannot read stakes from the chain; the last ones stay counted");
                        failing = true;
                    }
                }
            }
        }
    }
}
