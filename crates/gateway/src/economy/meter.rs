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
pub(crate) struct Draw {
    pub allowance: u128,
    pub bundled: u128,
    pub usd: u128,
}

impl Draw {
    pub(crate) fn total(&self) -> u128 {
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

#[derive(Debug, Default)]
struct AccountState {
    view: AccountView,
    reserved: Draw,
    /// Usage not yet handed to the committer, by day.
    pending: Vec<(u64, Usage)>,
    /// Usage in the settlement being committed, by day.
    settling: Vec<(u64, Usage)>,
}

impl AccountState {
    fn unsettled(&self) -> impl Iterator<Item = &(u64, Usage)> {
        self.pending.iter().chain(self.settling.iter())
    }

    fn used_on(&self, day: u64) -> bool {
        self.view.last_usage_day == Some(day) || self.unsettled().any(|(seen, _)| *seen == day)
    }
}

/// The spendable amounts an account has now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Balance {
    /// Today's allowance (DIEM plus the capacity share) in total and what is left of it.
    pub allowance_per_day: u128,
    pub free: Draw,
}

/// Why a reservation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shortfall {
    pub needed: u128,
    pub balance: Balance,
}

/// Capacity rules, from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Capacity {
    /// USD base units a day shared among active stakers by staked sVVV.
    pub network_usd_units_per_day: u128,
    /// An account is active if it used the API on one of this many days up to today.
    pub active_window_days: u64,
}

pub(crate) struct Meter {
    capacity: Capacity,
    state: Mutex<MeterState>,
}

#[derive(Default)]
struct MeterState {
    accounts: HashMap<Address, AccountState>,
    /// Σ staked sVVV of active accounts, as of the last refresh.
    active_staked: u128,
    active_day: u64,
}

/// Bounds the accounts kept in memory; an account appears when it gets a key.
const MAX_ACCOUNTS: usize = 1_000_000;

impl Meter {
    pub(crate) fn new(capacity: Capacity) -> Self {
        Self {
            capacity,
            state: Mutex::new(MeterState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads or refreshes `accounts` from the ledger, and recomputes the active stake.
    pub(crate) fn refresh(&self, ledger: &Ledger, accounts: &[Address], today: u64) {
        let mut state = self.lock();
        for account in accounts {
            if state.accounts.len() >= MAX_ACCOUNTS && !state.accounts.contains_key(account) {
                tracing::warn!("metered account table full; account not tracked");
                continue;
            }
            let view = view_of(ledger, *account, today);
            state.accounts.entry(*account).or_default().view = view;
        }
        recompute_active(&mut state, self.capacity.active_window_days, today);
    }

    /// Recomputes the active stake for `today` (called when the day changes).
    pub(crate) fn roll_day(&self, today: u64) {
        let mut state = self.lock();
        if state.active_day != today {
            recompute_active(&mut state, self.capacity.active_window_days, today);
        }
    }

    pub(crate) fn balance(&self, account: Address, day: u64) -> Balance {
        let state = self.lock();
        balance_of(&state, &self.capacity, account, day)
    }

    /// Reserves `max_cost` for a request of `account` on `day`.
    pub(crate) fn reserve(
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
    pub(crate) fn release(&self, account: Address, reserved: Draw) {
        let mut state = self.lock();
        if let Some(entry) = state.accounts.get_mut(&account) {
            entry.reserved.sub(reserved);
        }
    }

    /// Ends a request: releases its reservation and charges `cost` (capped at what the account
    /// can pay, which the reservation guarantees covers it unless the estimate was exceeded).
    /// Returns what was charged.
    pub(crate) fn settle(
        &self,
        account: Address,
        day: u64,
        reserved: Draw,
        cost: u128,
        prompt_tokens: u64,
        completion_tokens: u64,
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
        let entry = state.accounts.entry(account).or_default();
        let usage = match entry.pending.iter_mut().find(|(seen, _)| *seen == day) {
            Some((_, usage)) => usage,
            None => {
                entry.pending.push((day, Usage::default()));
                let last = entry.pending.len() - 1;
                &mut entry.pending[last].1
            }
        };
        usage.requests = usage.requests.saturating_add(1);
        usage.prompt_tokens = usage.prompt_tokens.saturating_add(prompt_tokens);
        usage.completion_tokens = usage.completion_tokens.saturating_add(completion_tokens);
        usage.draw.add(charge);
        charge
    }

    /// Moves pending usage into a settlement for `day` and earlier days, one operation per day,
    /// or nothing when there is none or a settlement is still being committed.
    pub(crate) fn begin_settlement(&self, max_entries: usize) -> Vec<(u64, Vec<UsageCharge>)> {
        let mut state = self.lock();
        if state
            .accounts
            .values()
            .any(|account| !account.settling.is_empty())
        {
            return Vec::new();
        }
        let mut by_day: std::collections::BTreeMap<u64, Vec<UsageCharge>> =
            std::collections::BTreeMap::new();
        let mut taken = 0;
        for (address, account) in &mut state.accounts {
            if account.pending.is_empty() || taken >= max_entries {
                continue;
            }
            taken += 1;
            account.settling = std::mem::take(&mut account.pending);
            for (day, usage) in &account.settling {
                by_day.entry(*day).or_default().push(UsageCharge {
                    account: *address,
                    requests: usage.requests,
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    allowance_units: usage.draw.allowance,
                    bundled_credit_units: usage.draw.bundled,
                    usd_units: usage.draw.usd,
                });
            }
        }
        by_day.into_iter().collect()
    }

    /// The settlement begun last is in the ledger (or was lost): forgets it and refreshes the
    /// accounts it charged, under one lock, so no moment counts it twice or not at all.
    pub(crate) fn finish_settlement(&self, ledger: &Ledger, today: u64) {
        let mut state = self.lock();
        let settled: Vec<Address> = state
            .accounts
            .iter()
            .filter(|(_, account)| !account.settling.is_empty())
            .map(|(address, _)| *address)
            .collect();
        for address in settled {
            let view = view_of(ledger, address, today);
            if let Some(account) = state.accounts.get_mut(&address) {
                account.settling.clear();
                account.view = view;
            }
        }
        recompute_active(&mut state, self.capacity.active_window_days, today);
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

fn recompute_active(state: &mut MeterState, window_days: u64, today: u64) {
    let first_active_day = first_active_day(window_days, today);
    state.active_staked = state
        .accounts
        .values()
        .filter(|account| {
            account
                .view
                .last_usage_day
                .is_some_and(|day| day >= first_active_day)
                || account.unsettled().any(|(day, _)| *day >= first_active_day)
        })
        .map(|account| account.view.staked_svvv)
        .fold(0u128, u128::saturating_add);
    state.active_day = today;
}

fn balance_of(state: &MeterState, capacity: &Capacity, account: Address, day: u64) -> Balance {
    let Some(entry) = state.accounts.get(&account) else {
        return Balance::default();
    };
    let view = &entry.view;
    // An account that is not yet active joins the active set with its first request.
    let denominator = if entry.used_on(day) || was_active(view, capacity, day) {
        state.active_staked
    } else {
        state.active_staked.saturating_add(view.staked_svvv)
    };
    let share = if denominator == 0 {
        0
    } else {
        ledger::mul_div_floor(
            capacity.network_usd_units_per_day,
            view.staked_svvv,
            denominator,
        )
        .unwrap_or(0)
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

fn was_active(view: &AccountView, capacity: &Capacity, day: u64) -> bool {
    let first_active_day = first_active_day(capacity.active_window_days, day);
    view.last_usage_day
        .is_some_and(|seen| seen >= first_active_day)
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
}
