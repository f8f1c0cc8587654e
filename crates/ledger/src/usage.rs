//! API usage settlement: `Op::SettleUsage`, the gateway's priced usage per account for one UTC
//! day. Owns the settlement's checks and bookkeeping: debiting credits, each account's usage
//! history by day and the allowance it drew on its latest day, and the ledger-wide usage revenue.
//! It never prices or meters anything (the gateway does) and never reads the clock: the day is an
//! argument, bounded by the operation's `now`.

use std::collections::{BTreeMap, BTreeSet};

use crate::SECONDS_PER_DAY;
use crate::account::Account;
use crate::address::Address;
use crate::ledger::{Ledger, add_within_supply};
use crate::op::{Outcome, UsageCharge};
use crate::rejection::Rejection;
use crate::usage_days::{
    AccountUsage, MAXIMUM_USAGE_ENTRIES, USAGE_HISTORY_DAYS, UsageDay, UsageTotals,
};

/// True when an entry records nothing at all: no request, no token, no amount.
fn charges_nothing(charge: &UsageCharge) -> bool {
    let UsageCharge {
        account: _,
        requests,
        prompt_tokens,
        completion_tokens,
        allowance_units,
        bundled_credit_units,
        usd_units,
    } = *charge;
    requests == 0
        && prompt_tokens == 0
        && completion_tokens == 0
        && allowance_units == 0
        && bundled_credit_units == 0
        && usd_units == 0
}

/// One entry's effect, computed before anything is written.
struct Planned {
    address: Address,
    account: Account,
    day_after: UsageDay,
    allowance_day: u64,
    allowance_spent_units: u128,
}

impl Ledger {
    /// `Op::SettleUsage`. Checks, in order: the day is not after today, there is at least one
    /// and at most [`MAXIMUM_USAGE_ENTRIES`] entries, no account appears twice, every entry
    /// records something, every entry's credits cover it, and every sum fits. Only then does it
    /// write, so a rejection (of any one entry) changes nothing.
    pub(crate) fn settle_usage(
        &mut self,
        now_seconds: u64,
        day: u64,
        entries: &[UsageCharge],
    ) -> Result<Outcome, Rejection> {
        if day > now_seconds / SECONDS_PER_DAY {
            return Err(Rejection::UsageDayInFuture);
        }
        if entries.is_empty() {
            return Err(Rejection::EmptyUsageSettlement);
        }
        if entries.len() > MAXIMUM_USAGE_ENTRIES {
            return Err(Rejection::TooManyUsageEntries);
        }
        let mut seen = BTreeSet::new();
        if !entries.iter().all(|charge| seen.insert(charge.account)) {
            return Err(Rejection::DuplicateUsageAccount);
        }
        if entries.iter().any(charges_nothing) {
            return Err(Rejection::ZeroAmount);
        }
        let mut accounts = Vec::with_capacity(entries.len());
        for charge in entries {
            let mut account = self.load(charge.account);
            account.bundled_credit_units = account
                .bundled_credit_units
                .checked_sub(charge.bundled_credit_units)
                .ok_or(Rejection::InsufficientCredit)?;
            account.usd_credit_units = account
                .usd_credit_units
                .checked_sub(charge.usd_units)
                .ok_or(Rejection::InsufficientCredit)?;
            accounts.push(account);
        }
        // Only the money is summed over entries: request and token counts are per account.
        let (mut allowance_sum, mut bundled_sum, mut usd_sum) = (0u128, 0u128, 0u128);
        let mut planned = Vec::with_capacity(entries.len());
        for (charge, account) in entries.iter().zip(accounts) {
            allowance_sum = allowance_sum
                .checked_add(charge.allowance_units)
                .ok_or(Rejection::Overflow)?;
            // Each was just debited from a different account, so their sum is within the
            // credits held.
            bundled_sum = add_within_supply(bundled_sum, charge.bundled_credit_units);
            usd_sum = add_within_supply(usd_sum, charge.usd_units);
            let record = self.usage.get(&charge.account);
            let day_before = record
                .and_then(|record| record.days.get(&day))
                .copied()
                .unwrap_or_default();
            let day_after = day_before.plus(charge).ok_or(Rejection::Overflow)?;
            let (allowance_day, allowance_spent_units) = match record {
                None => (day, charge.allowance_units),
                Some(record) if day > record.allowance_day => (day, charge.allowance_units),
                Some(record) if day == record.allowance_day => (
                    day,
                    record
                        .allowance_spent_units
                        .checked_add(charge.allowance_units)
                        .ok_or(Rejection::Overflow)?,
                ),
                // A late batch for an earlier day leaves the latest day's allowance alone.
                Some(record) => (record.allowance_day, record.allowance_spent_units),
            };
            planned.push(Planned {
                address: charge.account,
                account,
                day_after,
                allowance_day,
                allowance_spent_units,
            });
        }
        let totals = UsageTotals {
            allowance_units: self
                .usage_totals
                .allowance_units
                .checked_add(allowance_sum)
                .ok_or(Rejection::Overflow)?,
            // Credits spent are bounded by the credits ever granted, which fit.
            bundled_credit_units: add_within_supply(
                self.usage_totals.bundled_credit_units,
                bundled_sum,
            ),
            usd_units: add_within_supply(self.usage_totals.usd_units, usd_sum),
        };
        totals.revenue_usd_units().ok_or(Rejection::Overflow)?;

        for plan in planned {
            self.store(plan.address, plan.account);
            let record = self
                .usage
                .entry(plan.address)
                .or_insert_with(|| AccountUsage {
                    allowance_day: plan.allowance_day,
                    allowance_spent_units: 0,
                    days: BTreeMap::new(),
                });
            record.allowance_day = plan.allowance_day;
            record.allowance_spent_units = plan.allowance_spent_units;
            record.days.insert(day, plan.day_after);
            // Oldest first: a late batch older than every kept day is dropped at once (its
            // credits were still debited and it still counts in the ledger-wide totals).
            while record.days.len() > USAGE_HISTORY_DAYS {
                record.days.pop_first();
            }
        }
        self.usage_totals = totals;
        Ok(Outcome::UsageSettled {
            // At most MAXIMUM_USAGE_ENTRIES, checked above.
            entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            usd_units: usd_sum,
            bundled_credit_units: bundled_sum,
            allowance_units: allowance_sum,
        })
    }

    /// Checks one account's usage record: never empty, within the history bound, and the
    /// allowance drawn is the latest day's. With `every_day`, also that no day is empty (O(days),
    /// for the full audit).
    pub(crate) fn assert_usage(&self, address: &Address, usage: &AccountUsage, every_day: bool) {
        assert!(
            !usage.days.is_empty() && usage.days.len() <= USAGE_HISTORY_DAYS,
            "invariant: {address} has {} usage days",
            usage.days.len()
        );
        let latest = usage.days.last_key_value();
        assert_eq!(
            latest.map(|(day, record)| (*day, record.allowance_units)),
            Some((usage.allowance_day, usage.allowance_spent_units)),
            "invariant: {address}'s allowance drawn is not its latest usage day's"
        );
        if every_day {
            assert!(
                usage.days.values().all(|day| !day.is_empty()),
                "invariant: {address} has an empty usage day"
            );
        }
    }
}
