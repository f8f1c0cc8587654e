//! What a gateway in chain mode knows of its accounts' stake on the chain: each account's
//! staked and locked sVVV and the allowance its staked DIEM gives, read from the suite's
//! contracts at the chain's head and `confirmations` blocks below it, every poll. Of the two
//! readings the smaller counts, so an increase counts once it is that deep and a decrease at
//! once, and a reorganization that takes a stake away takes it from the next poll's head.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alloy::eips::BlockId;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy_primitives::{Address, U256};

use crate::bindings::{Diem, Staking};
use crate::deploy::Deployment;

/// Most accounts one poll reads; past it, accounts wait for a later poll.
pub const MAXIMUM_ACCOUNTS_PER_POLL: usize = 10_000;

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
    pub deployment: Deployment,
    pub confirmations: u64,
    pub poll: Duration,
    /// The key file of a wallet with the journal anchor's role: with it, the gateway anchors
    /// its journal's head every `anchor_every`.
    pub anchor_key: Option<std::path::PathBuf>,
    pub anchor_every: Duration,
}

/// The stakes of the accounts the gateway follows.
pub struct Stakes {
    config: ChainConfig,
    provider: DynProvider,
    known: Mutex<HashMap<Address, Stake>>,
    followed: Mutex<HashSet<Address>>,
    /// The head block of the last complete poll.
    head: std::sync::atomic::AtomicU64,
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
            head: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The stake counted for `account` now (zero until a poll has read it).
    pub fn get(&self, account: Address) -> Stake {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&account)
            .copied()
            .unwrap_or_default()
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
        self.followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account);
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
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account, stake);
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

    async fn read_at(&self, account: Address, head: u64) -> Result<Stake, String> {
        let confirmed = head.saturating_sub(self.config.confirmations);
        let now = self.read_one(account, head).await?;
        let deep = self.read_one(account, confirmed).await?;
        Ok(now.smaller(deep))
    }

    /// One poll: every followed account read at the head; returns the accounts whose stake
    /// changed.
    pub async fn poll(&self) -> Result<Vec<Address>, String> {
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(|error| format!("the chain: {error}"))?;
        let accounts: Vec<Address> = self
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .take(MAXIMUM_ACCOUNTS_PER_POLL)
            .copied()
            .collect();
        let mut changed = Vec::new();
        for account in accounts {
            let stake = self.read_at(account, head).await?;
            let previous = self
                .known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(account, stake);
            if previous != Some(stake) {
                changed.push(account);
            }
        }
        self.head.store(head, std::sync::atomic::Ordering::Relaxed);
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
