//! What the ledger records of API usage: each account's usage by UTC day and the allowance it
//! drew on its latest day, and the ledger-wide sums; with the bounds on a settlement and on an
//! account's history. The settlement that writes them is `usage.rs`.

use std::collections::BTreeMap;

use crate::op::UsageCharge;

/// Most entries in one settlement: one per account that used the API that day. The gateway
/// settles in batches of at most this many; 4,096 entries is one journal record of about
/// 370 KiB, and the settlement's work (a map lookup per entry) stays well under a millisecond.
pub const MAXIMUM_USAGE_ENTRIES: usize = 4_096;

/// Days of usage history kept per account: the latest 400 days that have any usage, which covers
/// a year of dashboards with room for late batches. Older days are dropped (oldest first) as new
/// ones arrive, so an account's history is bounded whatever the gateway sends.
pub const USAGE_HISTORY_DAYS: usize = 400;

/// One account's usage on one UTC day: the sum of every entry settled for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageDay {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Drawn from the allowance (DIEM + staking capacity share), USD base units.
    pub allowance_units: u128,
    pub bundled_credit_units: u128,
    pub usd_units: u128,
}

impl UsageDay {
    /// This day with `charge` added, or `None` if any figure would leave its integer.
    pub(crate) fn plus(&self, charge: &UsageCharge) -> Option<Self> {
        Some(Self {
            requests: self.requests.checked_add(charge.requests)?,
            prompt_tokens: self.prompt_tokens.checked_add(charge.prompt_tokens)?,
            completion_tokens: self
                .completion_tokens
                .checked_add(charge.completion_tokens)?,
            allowance_units: self.allowance_units.checked_add(charge.allowance_units)?,
            bundled_credit_units: self
                .bundled_credit_units
                .checked_add(charge.bundled_credit_units)?,
            usd_units: self.usd_units.checked_add(charge.usd_units)?,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One account's usage record, stored from its first settled entry on.
///
/// `allowance_day` is the latest day any entry was settled for and `allowance_spent_units` the
/// allowance drawn on that day: a later day resets it, the same day adds to it, and an earlier
/// day (a late batch) leaves it alone. So it always equals the latest history day's allowance,
/// which the invariants check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountUsage {
    pub(crate) allowance_day: u64,
    pub(crate) allowance_spent_units: u128,
    /// Never empty, at most [`USAGE_HISTORY_DAYS`] days, none of them empty.
    pub(crate) days: BTreeMap<u64, UsageDay>,
}

/// Ledger-wide sums over every settlement ever accepted; never truncated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UsageTotals {
    pub(crate) allowance_units: u128,
    pub(crate) bundled_credit_units: u128,
    pub(crate) usd_units: u128,
}

impl UsageTotals {
    /// Allowance plus bundled credits plus USD: what all settled usage was worth. The settlement
    /// refuses to make it overflow, so it always fits.
    pub(crate) fn revenue_usd_units(&self) -> Option<u128> {
        self.allowance_units
            .checked_add(self.bundled_credit_units)?
            .checked_add(self.usd_units)
    }
}
