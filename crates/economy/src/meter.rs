//! The metering hot path: per-account spendable amounts in memory, reservations for requests in
//! flight, and usage not yet settled in the ledger. Every call is O(1) under one mutex; nothing
//! here touches the disk or the ledger. The committer refreshes the per-account figures from the
//! ledger after each commit, and the flusher moves pending usage into a `SettleUsage` operation.
//!
//! A request reserves the most it could cost before it is sent; the reservation is drawn in the
//! spend order (the day's allowance, then bundled credits, then USD) and held until the request
//! ends, when the real cost replaces it. Concurrent first requests therefore cannot spend the
//! same dollar twice.

use std::collections::HashMap;
use std::sync::Mutex;

use ledger::{Address, Ledger, UsageCharge};

/// What the ledger says about one account, as of the last commit that touched it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct AccountView {
    diem_allowance_per_day: u128,
    /// Staked and locked sVVV: the weight of the account's share of network capacity.
    staked_svvv: u128,
    usd: u128,
    bundled: u128,
    allowance_day: u64,
    allowance_spent: u128,
    last_usage_day: Option<u64>,
}

/// Amounts drawn from each source, in USD base units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Draw {
    pub allowance: u128,
    pub bundled: u128,
    pub usd: u128,
}

impl Draw {
    pub fn total(&self) -> u128 {
        self.allowance
            .saturating_add(self.bundled)
            .saturating_add(self.usd)
    }

    fn add(&mut self, other: Draw) {
        self.allowance = self.allowance.saturating_add(other.allowance);
        self.bundled = self.bundled.saturating_add(other.bundled);
        self.usd = self.usd.saturating_add(other.usd);
    }

    fn sub(&mut self, other: Draw) {
        self.allowance = self.allowance.saturating_sub(other.allowance);
        self.bundled = self.bundled.saturating_sub(other.bundled);
        self.usd = self.usd.saturating_sub(other.usd);
    }
}

/// Usage counted but not yet in the ledger, for one account and day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    draw: Draw,
}

impl Usage {
    fn add(&mut self, other: Usage) {
        self.requests = self.requests.saturating_add(other.requests);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.draw.add(other.draw);
    }
}

/// One day's usage moved into a settlement: its entries, and in a cluster the rows of the
/// shared usage queue they came from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    pub day: u64,
    pub entries: Vec<UsageCharge>,
    pub rows: Vec<u64>,
}

#[derive(Debug, Default)]
struct AccountState {
    view: AccountView,
    reserved: Draw,
    /// Usage not yet handed to the committer, by day.
    pending: Vec<(u64, Usage)>,
    /// Usage in the settlement being committed, by day.
    settling: Vec<(u64, Usage)>,
    /// In a cluster, usage whose row in the shared usage queue is being written, by day, with
    /// the rows (`recording_rows`, one per entry). It is counted as unsettled, but is not
    /// settled until its row is durable ([`Meter::recorded`]).
    recording: Vec<(u64, Usage)>,
    recording_rows: Vec<u64>,
    /// The queue rows of `pending` and `settling` usage, as (day, row).
    pending_rows: Vec<(u64, u64)>,
    settling_rows: Vec<(u64, u64)>,
    /// What this account adds to `MeterState::active_staked` now: its stake if it is active,
    /// else zero. Kept so that one account's change adjusts the sum in O(1).
    counted_stake: u128,
    /// The last network share computed: (stake, active stake it was divided by, share). The
    /// division is 256-bit wide and would otherwise run twice per request; the inputs change
    /// only when stakes or the active set do.
    share_cache: std::cell::Cell<(u128, u128, u128)>,
}

impl AccountState {
    fn unsettled(&self) -> impl Iterator<Item = &(u64, Usage)> {
        self.pending
            .iter()
            .chain(self.settling.iter())
            .chain(self.recording.iter())
    }

    /// Adds `usage` to the pending usage of `day`; true if there was none before.
    fn add_pending(&mut self, day: u64, usage: Usage) -> bool {
        let first_pending = self.pending.is_empty();
        match self.pending.iter_mut().find(|(seen, _)| *seen == day) {
            Some((_, pending)) => pending.add(usage),
            None => self.pending.push((day, usage)),
        }
        first_pending
    }
}

/// The spendable amounts an account has now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// Today's allowance (DIEM plus the capacity share) in total and what is left of it.
    pub allowance_per_day: u128,
    pub free: Draw,
}

/// Why a reservation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub needed: u128,
    pub balance: Balance,
}

/// Capacity rules, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// USD base units a day shared among active stakers by staked sVVV.
    pub network_usd_units_per_day: u128,
    /// An account is active if it used the API on one of this many days up to today.
    pub active_window_days: u64,
}

pub struct Meter {
    capacity: Capacity,
    state: Mutex<MeterState>,
    /// Gateways sharing the ledger (see [`Meter::set_replicas`]); 1 alone.
    replicas: std::sync::atomic::AtomicU64,
    /// In chain mode, where staked sVVV and staked DIEM come from instead of the ledger.
    stakes: std::sync::OnceLock<std::sync::Arc<dyn StakeSource>>,
}

/// Where an account's stake comes from when it is held on a chain rather than in the ledger
/// (the gateway's chain mode): what the chain says, already held back for confirmations.
pub trait StakeSource: Send + Sync {
    /// The account's staked and locked sVVV (its weight in the capacity share) and the DIEM
    /// part of its daily allowance (USD base units a day); zero for an account not known yet.
    fn stake_of(&self, account: Address) -> OnChainStake;
}

/// An account's stake on a chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnChainStake {
    pub staked_svvv_units: u128,
    pub diem_allowance_usd_units_per_day: u128,
}

#[derive(Default)]
struct MeterState {
    accounts: HashMap<Address, AccountState>,
    /// Σ staked sVVV of active accounts: every account's `counted_stake`.
    active_staked: u128,
    active_day: u64,
    /// Accounts with pending usage, so a settlement visits only them.
    pending_accounts: Vec<Address>,
    /// Accounts in the settlement being committed.
    settling_accounts: Vec<Address>,
}

impl MeterState {
    /// Brings `address`'s share of the active stake up to date after its view or unsettled
    /// usage changed. O(1).
    fn recount(&mut self, window_days: u64, address: Address) {
        let first_active_day = first_active_day(window_days, self.active_day);
        if let Some(account) = self.accounts.get_mut(&address) {
            let stake = contribution(account, first_active_day);
            self.active_staked = self
                .active_staked
                .saturating_sub(account.counted_stake)
                .saturating_add(stake);
            account.counted_stake = stake;
        }
    }
}

/// Bounds the accounts kept in memory; an account appears when it gets a key.
const MAX_ACCOUNTS: usize = 1_000_000;

impl Meter {
    pub fn new(capacity: Capacity) -> Self {
        Self {
            capacity,
            state: Mutex::new(MeterState::default()),
            replicas: std::sync::atomic::AtomicU64::new(1),
            stakes: std::sync::OnceLock::new(),
        }
    }

    /// Takes stake from a chain from now on (chain mode); once. Accounts already loaded keep
    /// their views until they are refreshed.
    pub fn set_stake_source(&self, source: std::sync::Arc<dyn StakeSource>) {
        let _ = self.stakes.set(source);
    }

    fn view(&self, ledger: &Ledger, account: Address, today: u64) -> AccountView {
        let mut view = view_of(ledger, account, today);
        if let Some(stakes) = self.stakes.get() {
            let stake = stakes.stake_of(account);
            view.staked_svvv = stake.staked_svvv_units;
            view.diem_allowance_per_day = stake.diem_allowance_usd_units_per_day;
        }
        view
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|_| {
            crate::stop_the_process("the meter was left half changed by a thread that panicked")
        })
    }

    /// Loads or refreshes `accounts` from the ledger and their share of the active stake:
    /// O(`accounts`), except on the first call of a new day, which recounts every account.
    pub fn refresh(&self, ledger: &Ledger, accounts: &[Address], today: u64) {
        let mut state = self.lock();
        let new_day = state.active_day != today;
        for account in accounts {
            if state.accounts.len() >= MAX_ACCOUNTS && !state.accounts.contains_key(account) {
                tracing::warn!("metered account table full; account not tracked");
                continue;
            }
            // An account whose usage is being settled keeps its view until the settlement is
            // finished: the ledger may already hold that usage while the meter still counts it
            // as unsettled, and refreshing now would count it twice. `finish_settlement`
            // refreshes it from the ledger under the same lock that forgets the usage.
            if state
                .accounts
                .get(account)
                .is_some_and(|entry| !entry.settling.is_empty())
            {
                continue;
            }
            let view = self.view(ledger, *account, today);
            state.accounts.entry(*account).or_default().view = view;
            if !new_day {
                state.recount(self.capacity.active_window_days, *account);
            }
        }
        if new_day {
            recompute_active(&mut state, self.capacity.active_window_days, today);
        }
    }

    /// Recomputes the active stake for `today` (called when the day changes).
    pub fn roll_day(&self, today: u64) {
        let mut state = self.lock();
        if state.active_day != today {
            recompute_active(&mut state, self.capacity.active_window_days, today);
        }
    }

    pub fn balance(&self, account: Address, day: u64) -> Balance {
        let state = self.lock();
        balance_of(&state, &self.capacity, account, day)
    }

    /// Reserves `max_cost` for a request of `account` on `day`.
    pub fn reserve(
        &self,
        account: Address,
        day: u64,
        max_cost: u128,
    ) -> Result<(Draw, Balance), Shortfall> {
        let mut state = self.lock();
        let balance = balance_of(&state, &self.capacity, account, day);
        if balance.free.total() < max_cost {
            return Err(Shortfall {
                needed: max_cost,
                balance,
            });
        }
        let replicas = u128::from(self.replicas());
        if replicas > 1
            && let Some(entry) = state.accounts.get(&account)
        {
            // This gateway's share of what the account can spend: what it holds now (reserved
            // and not yet settled) and this request within 1/replicas of the whole.
            let mut held = entry.reserved;
            for (_, usage) in entry.unsettled() {
                held.add(usage.draw);
            }
            let whole = balance.free.total().saturating_add(held.total());
            if held.total().saturating_add(max_cost) > whole / replicas {
                return Err(Shortfall {
                    needed: max_cost,
                    balance: Balance {
                        free: draw_in_order(
                            balance.free,
                            (whole / replicas).saturating_sub(held.total()),
                        ),
                        ..balance
                    },
                });
            }
        }
        let draw = draw_in_order(balance.free, max_cost);
        state
            .accounts
            .entry(account)
            .or_default()
            .reserved
            .add(draw);
        Ok((draw, balance))
    }

    /// Gives back a reservation whose request never ran.
    pub fn release(&self, account: Address, reserved: Draw) {
        let mut state = self.lock();
        if let Some(entry) = state.accounts.get_mut(&account) {
            entry.reserved.sub(reserved);
        }
    }

    /// Ends a request: releases its reservation and charges `cost` (capped at what the account
    /// can pay, which the reservation guarantees covers it unless the estimate was exceeded).
    /// Returns what was charged.
    pub fn settle(
        &self,
        account: Address,
        day: u64,
        reserved: Draw,
        cost: u128,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Draw {
        self.charge(
            account,
            day,
            reserved,
            cost,
            (prompt_tokens, completion_tokens),
            None,
        )
    }

    /// As [`Meter::settle`], in a cluster: the charge waits as `row` of the shared usage queue
    /// until [`Meter::recorded`] says the row is durable, and only then can be settled.
    pub fn settle_recording(
        &self,
        account: Address,
        day: u64,
        reserved: Draw,
        cost: u128,
        tokens: (u64, u64),
        row: u64,
    ) -> Draw {
        self.charge(account, day, reserved, cost, tokens, Some(row))
    }

    fn charge(
        &self,
        account: Address,
        day: u64,
        reserved: Draw,
        cost: u128,
        (prompt_tokens, completion_tokens): (u64, u64),
        row: Option<u64>,
    ) -> Draw {
        let mut state = self.lock();
        if let Some(entry) = state.accounts.get_mut(&account) {
            entry.reserved.sub(reserved);
        }
        let balance = balance_of(&state, &self.capacity, account, day);
        let charge = draw_in_order(balance.free, cost.min(balance.free.total()));
        if charge.total() < cost {
            tracing::warn!(
                shortfall_units = %(cost - charge.total()),
                "a request cost more than its reservation and the account could cover"
            );
        }
        let usage = Usage {
            requests: 1,
            prompt_tokens,
            completion_tokens,
            draw: charge,
        };
        let entry = state.accounts.entry(account).or_default();
        let first_pending = match row {
            Some(row) => {
                entry.recording.push((day, usage));
                entry.recording_rows.push(row);
                false
            }
            None => entry.add_pending(day, usage),
        };
        if first_pending {
            state.pending_accounts.push(account);
        }
        // Its first request of the day may have made it active.
        state.recount(self.capacity.active_window_days, account);
        charge
    }

    /// `account`'s usage recorded as `row` is durable in the shared usage queue: it becomes
    /// pending, to be settled by the next settlement.
    pub fn recorded(&self, account: Address, row: u64) {
        let mut state = self.lock();
        let Some(entry) = state.accounts.get_mut(&account) else {
            return;
        };
        let Some(index) = entry.recording_rows.iter().position(|seen| *seen == row) else {
            return;
        };
        entry.recording_rows.swap_remove(index);
        let (day, usage) = entry.recording.swap_remove(index);
        let first_pending = entry.add_pending(day, usage);
        entry.pending_rows.push((day, row));
        if first_pending {
            state.pending_accounts.push(account);
        }
    }

    /// Moves pending usage into a settlement, one per day, or nothing when there is none or a
    /// settlement is still being committed.
    pub fn begin_settlement(&self, max_entries: usize) -> Vec<Settlement> {
        let mut state = self.lock();
        if !state.settling_accounts.is_empty() {
            return Vec::new();
        }
        let take = state.pending_accounts.len().min(max_entries);
        let settling: Vec<Address> = state.pending_accounts.drain(..take).collect();
        let mut by_day: std::collections::BTreeMap<u64, Settlement> =
            std::collections::BTreeMap::new();
        for address in &settling {
            let Some(account) = state.accounts.get_mut(address) else {
                continue;
            };
            account.settling = std::mem::take(&mut account.pending);
            account.settling_rows = std::mem::take(&mut account.pending_rows);
            for (day, usage) in &account.settling {
                by_day
                    .entry(*day)
                    .or_insert_with(|| Settlement {
                        day: *day,
                        ..Settlement::default()
                    })
                    .entries
                    .push(UsageCharge {
                        account: *address,
                        requests: usage.requests,
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                        allowance_units: usage.draw.allowance,
                        bundled_credit_units: usage.draw.bundled,
                        usd_units: usage.draw.usd,
                    });
            }
            for (day, row) in &account.settling_rows {
                if let Some(settlement) = by_day.get_mut(day) {
                    settlement.rows.push(*row);
                }
            }
        }
        state.settling_accounts = settling;
        by_day.into_values().collect()
    }

    /// The settlement begun last is in the ledger (or was lost): forgets it and refreshes the
    /// accounts it charged, under one lock, so no moment counts it twice or not at all.
    pub fn finish_settlement(&self, ledger: &Ledger, today: u64) {
        self.finish_settlement_keeping(ledger, today, &[]);
    }

    /// As [`Meter::finish_settlement`], except that the usage of `kept_days` (whose settlement
    /// the ledger did not take) goes back to pending, to be settled by the next settlement.
    pub fn finish_settlement_keeping(&self, ledger: &Ledger, today: u64, kept_days: &[u64]) {
        let mut state = self.lock();
        let settled = std::mem::take(&mut state.settling_accounts);
        let new_day = state.active_day != today;
        for address in settled {
            let view = self.view(ledger, address, today);
            let mut back_to_pending = false;
            if let Some(account) = state.accounts.get_mut(&address) {
                let was_pending = !account.pending.is_empty();
                for (day, usage) in std::mem::take(&mut account.settling) {
                    if kept_days.contains(&day) {
                        account.add_pending(day, usage);
                    }
                }
                for (day, row) in std::mem::take(&mut account.settling_rows) {
                    if kept_days.contains(&day) {
                        account.pending_rows.push((day, row));
                    }
                }
                back_to_pending = !was_pending && !account.pending.is_empty();
                account.view = view;
            }
            if back_to_pending {
                state.pending_accounts.push(address);
            }
            if !new_day {
                state.recount(self.capacity.active_window_days, address);
            }
        }
        if new_day {
            recompute_active(&mut state, self.capacity.active_window_days, today);
        }
    }

    /// The number of gateways that meter the same accounts against one shared ledger. Each
    /// may then have at most its share (1/`replicas`) of what an account can spend reserved
    /// or unsettled at once, so together they cannot pass it between two settlements.
    pub fn set_replicas(&self, replicas: u64) {
        self.replicas
            .store(replicas.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn replicas(&self) -> u64 {
        self.replicas.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn view_of(ledger: &Ledger, account: Address, today: u64) -> AccountView {
    let balances = ledger.balances(account, ledger.now_seconds());
    AccountView {
        diem_allowance_per_day: balances.diem_allowance_usd_units_per_day,
        staked_svvv: balances
            .staked_svvv_units
            .saturating_add(balances.locked_svvv_units),
        usd: balances.usd_credit_units,
        bundled: balances.bundled_credit_units,
        allowance_day: today,
        allowance_spent: ledger.allowance_spent_units(account, today),
        last_usage_day: ledger.last_usage_day(account),
    }
}

/// The first day of the active window that ends on `day`.
fn first_active_day(window_days: u64, day: u64) -> u64 {
    day.saturating_sub(window_days.saturating_sub(1))
}

/// An account's stake if it is active (it used the API on a day of the window, settled or not),
/// else zero.
fn contribution(account: &AccountState, first_active_day: u64) -> u128 {
    let active = account
        .view
        .last_usage_day
        .is_some_and(|day| day >= first_active_day)
        || account.unsettled().any(|(day, _)| *day >= first_active_day);
    if active { account.view.staked_svvv } else { 0 }
}

/// Recounts every account's share of the active stake for `today`: O(accounts), once a day.
fn recompute_active(state: &mut MeterState, window_days: u64, today: u64) {
    let first_active_day = first_active_day(window_days, today);
    let mut total: u128 = 0;
    for account in state.accounts.values_mut() {
        account.counted_stake = contribution(account, first_active_day);
        total = total.saturating_add(account.counted_stake);
    }
    state.active_staked = total;
    state.active_day = today;
}

fn balance_of(state: &MeterState, capacity: &Capacity, account: Address, day: u64) -> Balance {
    let Some(entry) = state.accounts.get(&account) else {
        return Balance::default();
    };
    let view = &entry.view;
    // The active stake as it is with this account in it: an account that is not yet active
    // joins the active set with its first request.
    let denominator = state
        .active_staked
        .saturating_sub(entry.counted_stake)
        .saturating_add(view.staked_svvv);
    let share = if denominator == 0 {
        0
    } else {
        let (stake, divided_by, share) = entry.share_cache.get();
        if stake == view.staked_svvv && divided_by == denominator {
            share
        } else {
            let share = ledger::mul_div_floor(
                capacity.network_usd_units_per_day,
                view.staked_svvv,
                denominator,
            )
            .unwrap_or(0);
            entry
                .share_cache
                .set((view.staked_svvv, denominator, share));
            share
        }
    };
    let allowance_per_day = view.diem_allowance_per_day.saturating_add(share);
    let mut spent_today = if view.allowance_day == day {
        view.allowance_spent
    } else {
        0
    };
    let mut unsettled = Draw::default();
    for (seen, usage) in entry.unsettled() {
        if *seen == day {
            spent_today = spent_today.saturating_add(usage.draw.allowance);
        }
        unsettled.bundled = unsettled.bundled.saturating_add(usage.draw.bundled);
        unsettled.usd = unsettled.usd.saturating_add(usage.draw.usd);
    }
    Balance {
        allowance_per_day,
        free: Draw {
            allowance: allowance_per_day
                .saturating_sub(spent_today)
                .saturating_sub(entry.reserved.allowance),
            bundled: view
                .bundled
                .saturating_sub(unsettled.bundled)
                .saturating_sub(entry.reserved.bundled),
            usd: view
                .usd
                .saturating_sub(unsettled.usd)
                .saturating_sub(entry.reserved.usd),
        },
    }
}

/// Takes `amount` from `free` in the spend order: allowance, bundled credits, USD.
fn draw_in_order(free: Draw, amount: u128) -> Draw {
    let allowance = amount.min(free.allowance);
    let bundled = (amount - allowance).min(free.bundled);
    let usd = (amount - allowance - bundled).min(free.usd);
    Draw {
        allowance,
        bundled,
        usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_spend_order() {
        let free = Draw {
            allowance: 5,
            bundled: 3,
            usd: 10,
        };
        assert_eq!(
            draw_in_order(free, 4),
            Draw {
                allowance: 4,
                bundled: 0,
                usd: 0
            }
        );
        assert_eq!(
            draw_in_order(free, 9),
            Draw {
                allowance: 5,
                bundled: 3,
                usd: 1
            }
        );
    }

    /// Accounts 1..=5 with 100·i sVVV staked (so different weights) and $10 of USD credit each.
    fn staked_ledger() -> (Ledger, Vec<Address>) {
        use ledger::{Asset, GenesisConfig, Op, UNITS_PER_TOKEN};
        let admin = Address([1; 20]);
        let now = 1_750_000_000;
        let mut ledger = Ledger::new();
        let genesis = GenesisConfig::venice(admin, admin, admin, admin, admin, Vec::new());
        let mut apply = |signer, op| {
            assert!(ledger.apply(now, signer, op).is_ok());
        };
        apply(admin, Op::Genesis(Box::new(genesis)));
        let accounts: Vec<Address> = (1..=5u8).map(|index| Address([index + 10; 20])).collect();
        for (index, account) in accounts.iter().enumerate() {
            let vvv = 100 * (index as u128 + 1) * UNITS_PER_TOKEN;
            apply(
                admin,
                Op::Transfer {
                    asset: Asset::Vvv,
                    to: *account,
                    amount_units: vvv,
                },
            );
            apply(*account, Op::Stake { vvv_units: vvv });
            apply(
                admin,
                Op::CreditAccount {
                    account: *account,
                    usd_units: 10 * UNITS_PER_TOKEN,
                    bundled_credit_units: 0,
                },
            );
        }
        (ledger, accounts)
    }

    /// The active stake recounted from scratch, without changing anything.
    fn recounted(meter: &Meter) -> u128 {
        let state = meter.lock();
        let first = first_active_day(meter.capacity.active_window_days, state.active_day);
        state
            .accounts
            .values()
            .map(|account| contribution(account, first))
            .sum()
    }

    #[test]
    fn usage_is_never_counted_twice_while_its_settlement_is_committed() {
        let (mut ledger, accounts) = staked_ledger();
        let admin = Address([1; 20]);
        let now = ledger.now_seconds();
        let day = now / 86_400;
        let meter = Meter::new(Capacity {
            network_usd_units_per_day: 1_000_000,
            active_window_days: 3,
        });
        let account = accounts[0];
        meter.refresh(&ledger, &accounts, day);
        let (draw, _) = meter.reserve(account, day, 10_000).expect("reserved");
        meter.settle(account, day, draw, 4_000, 10, 5);
        let after_request = meter.balance(account, day).free.total();
        let settlements = meter.begin_settlement(16);
        assert_eq!(settlements.len(), 1);
        for super::Settlement { day, entries, .. } in settlements {
            assert!(
                ledger
                    .apply(now, admin, ledger::Op::SettleUsage { day, entries })
                    .is_ok()
            );
        }
        // The committer refreshes every account an operation touched, before the flusher
        // finishes the settlement: the usage is in the ledger and still in the meter.
        meter.refresh(&ledger, &accounts, day);
        assert_eq!(meter.balance(account, day).free.total(), after_request);
        meter.finish_settlement(&ledger, day);
        assert_eq!(meter.balance(account, day).free.total(), after_request);
        meter.refresh(&ledger, &accounts, day);
        assert_eq!(meter.balance(account, day).free.total(), after_request);
    }

    #[test]
    fn usage_being_recorded_counts_against_the_balance_but_is_settled_only_once_durable() {
        let (ledger, accounts) = staked_ledger();
        let day = ledger.now_seconds() / 86_400;
        let meter = Meter::new(Capacity {
            network_usd_units_per_day: 1_000_000,
            active_window_days: 3,
        });
        let account = accounts[0];
        meter.refresh(&ledger, &accounts, day);
        let before = meter.balance(account, day).free.total();
        let (draw, _) = meter.reserve(account, day, 10_000).expect("reserved");
        meter.settle_recording(account, day, draw, 4_000, (10, 5), 7);
        assert_eq!(meter.balance(account, day).free.total(), before - 4_000);
        assert!(
            meter.begin_settlement(16).is_empty(),
            "its row is not durable yet"
        );
        meter.recorded(account, 7);
        let settlements = meter.begin_settlement(16);
        assert_eq!(settlements.len(), 1);
        assert_eq!(settlements[0].rows, [7]);
        assert_eq!(
            settlements[0].entries[0].usd_units
                + settlements[0].entries[0].allowance_units
                + settlements[0].entries[0].bundled_credit_units,
            4_000
        );
        // Not taken: the usage and its row go back to be settled next time.
        meter.finish_settlement_keeping(&ledger, day, &[day]);
        assert_eq!(meter.balance(account, day).free.total(), before - 4_000);
        let again = meter.begin_settlement(16);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].rows, [7]);
    }

    #[test]
    fn the_active_stake_kept_in_o1_steps_equals_a_full_recount_after_every_call() {
        let (ledger, accounts) = staked_ledger();
        let meter = Meter::new(Capacity {
            network_usd_units_per_day: 1_000,
            active_window_days: 3,
        });
        let mut day = 20_000;
        meter.refresh(&ledger, &accounts, day);
        assert_eq!(recounted(&meter), 0, "nobody has used the API yet");
        // A small deterministic generator picks the call and the account.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let mut became_active = false;
        for step in 0..2_000 {
            let account = accounts[next(accounts.len() as u64) as usize];
            match next(6) {
                0 | 1 => {
                    if let Ok((draw, _)) = meter.reserve(account, day, 1_000) {
                        meter.settle(account, day, draw, 500, 10, 5);
                    }
                }
                2 => {
                    let _ = meter.begin_settlement(2);
                }
                3 => meter.finish_settlement(&ledger, day),
                4 => meter.refresh(&ledger, &[account], day),
                _ => {
                    if next(50) == 0 {
                        day += 1;
                        meter.roll_day(day);
                    }
                }
            }
            let kept = meter.lock().active_staked;
            became_active |= kept > 0;
            assert_eq!(kept, recounted(&meter), "step {step}, day {day}");
        }
        assert!(became_active, "the walk made accounts active");
    }
}
