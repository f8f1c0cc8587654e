//! One account's holdings (`Account`), their sums over all accounts (`Totals`), and reward
//! settlement against the accumulators. Owns per-account arithmetic only; which account changes,
//! and when, is the ledger's business. Amounts are u128, so a negative balance cannot be
//! represented at all: every debit is a checked subtraction that refuses or asserts first.

use crate::emissions::REWARD_PER_SHARE_SCALE;
use crate::wide::mul_div_floor;

/// Everything one address holds. Copied out, changed, and stored back whole, so an operation
/// can do all its fallible work on copies before it changes the ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) vvv_units: u128,
    /// Unlocked staked sVVV: earns at the full rate and can be unstaked or locked for DIEM.
    pub(crate) staked_svvv_units: u128,
    /// sVVV in its unstake cooldown: earns nothing.
    pub(crate) cooling_svvv_units: u128,
    /// When the cooling sVVV may be withdrawn; zero when nothing is cooling.
    pub(crate) svvv_unlock_at_seconds: u64,
    /// sVVV locked behind DIEM this account minted.
    pub(crate) locked_svvv_units: u128,
    /// DIEM this account minted and has not burned: the claim its locked sVVV answers to.
    pub(crate) diem_minted_outstanding_units: u128,
    pub(crate) diem_units: u128,
    pub(crate) staked_diem_units: u128,
    pub(crate) cooling_diem_units: u128,
    /// When the cooling DIEM may be withdrawn; zero when nothing is cooling.
    pub(crate) diem_unlock_at_seconds: u64,
    /// Rewards settled into the account and not yet claimed.
    pub(crate) rewards_owed_units: u128,
    /// The unlocked accumulator at the last settlement.
    pub(crate) reward_per_share_paid: u128,
    /// The locked accumulator at the last settlement.
    pub(crate) reward_per_locked_share_paid: u128,
    pub(crate) usd_credit_units: u128,
    pub(crate) bundled_credit_units: u128,
    /// How many operations this address signed that the ledger accepted. It only grows, so an
    /// account that has signed anything is stored for good.
    pub(crate) nonce: u64,
}

impl Account {
    /// True when the account holds nothing and has signed nothing; such accounts are not stored,
    /// so that an account that was emptied and one that never existed are the same state. (The
    /// reward checkpoints are not holdings: with nothing staked they earn nothing.)
    pub(crate) fn is_empty(&self) -> bool {
        self.nonce == 0
            && self.vvv_units == 0
            && self.staked_svvv_units == 0
            && self.cooling_svvv_units == 0
            && self.locked_svvv_units == 0
            && self.diem_minted_outstanding_units == 0
            && self.diem_units == 0
            && self.staked_diem_units == 0
            && self.cooling_diem_units == 0
            && self.rewards_owed_units == 0
            && self.usd_credit_units == 0
            && self.bundled_credit_units == 0
    }

    /// Rewards earned since the last settlement, rounded down per accumulator.
    fn unsettled_rewards_units(
        &self,
        reward_per_share: u128,
        reward_per_locked_share: u128,
    ) -> u128 {
        let earned = |shares: u128, now: u128, paid: u128| {
            assert!(now >= paid, "accumulators only grow");
            match mul_div_floor(shares, now - paid, REWARD_PER_SHARE_SCALE) {
                Some(earned) => earned,
                None => panic!("one account's rewards are bounded by all emissions"),
            }
        };
        let unlocked = earned(
            self.staked_svvv_units,
            reward_per_share,
            self.reward_per_share_paid,
        );
        let locked = earned(
            self.locked_svvv_units,
            reward_per_locked_share,
            self.reward_per_locked_share_paid,
        );
        match unlocked.checked_add(locked) {
            Some(total) => total,
            None => panic!("one account's rewards are bounded by all emissions"),
        }
    }

    /// Settled plus unsettled rewards, without changing anything.
    pub(crate) fn pending_rewards_units(
        &self,
        reward_per_share: u128,
        reward_per_locked_share: u128,
    ) -> u128 {
        let unsettled = self.unsettled_rewards_units(reward_per_share, reward_per_locked_share);
        match self.rewards_owed_units.checked_add(unsettled) {
            Some(total) => total,
            None => panic!("one account's rewards are bounded by all emissions"),
        }
    }

    /// Moves earned rewards into `rewards_owed_units` and checkpoints the accumulators. Must run
    /// before staked or locked sVVV changes, or the new amount would earn for the past.
    pub(crate) fn settle(&mut self, reward_per_share: u128, reward_per_locked_share: u128) {
        self.rewards_owed_units =
            self.pending_rewards_units(reward_per_share, reward_per_locked_share);
        self.reward_per_share_paid = reward_per_share;
        self.reward_per_locked_share_paid = reward_per_locked_share;
    }
}

/// Sums of every account's holdings, kept up to date as accounts are stored so that the
/// invariants after each operation are O(1). The full audit recounts them from the accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) vvv_units: u128,
    pub(crate) staked_svvv_units: u128,
    pub(crate) cooling_svvv_units: u128,
    pub(crate) locked_svvv_units: u128,
    pub(crate) diem_minted_outstanding_units: u128,
    pub(crate) diem_units: u128,
    pub(crate) staked_diem_units: u128,
    pub(crate) cooling_diem_units: u128,
    pub(crate) rewards_owed_units: u128,
    pub(crate) usd_credit_units: u128,
    pub(crate) bundled_credit_units: u128,
}

impl Totals {
    pub(crate) fn add(&mut self, account: &Account) {
        self.apply(account, |total, amount| total.checked_add(amount));
    }

    pub(crate) fn subtract(&mut self, account: &Account) {
        self.apply(account, |total, amount| total.checked_sub(amount));
    }

    fn apply(&mut self, account: &Account, combine: impl Fn(u128, u128) -> Option<u128>) {
        let pairs: [(&mut u128, u128); 11] = [
            (&mut self.vvv_units, account.vvv_units),
            (&mut self.staked_svvv_units, account.staked_svvv_units),
            (&mut self.cooling_svvv_units, account.cooling_svvv_units),
            (&mut self.locked_svvv_units, account.locked_svvv_units),
            (
                &mut self.diem_minted_outstanding_units,
                account.diem_minted_outstanding_units,
            ),
            (&mut self.diem_units, account.diem_units),
            (&mut self.staked_diem_units, account.staked_diem_units),
            (&mut self.cooling_diem_units, account.cooling_diem_units),
            (&mut self.rewards_owed_units, account.rewards_owed_units),
            (&mut self.usd_credit_units, account.usd_credit_units),
            (&mut self.bundled_credit_units, account.bundled_credit_units),
        ];
        for (total, amount) in pairs {
            match combine(*total, amount) {
                Some(next) => *total = next,
                None => panic!("a total left its range: the totals no longer match the accounts"),
            }
        }
    }

    /// VVV that exists as an account holding in any form, rewards not yet settled aside.
    pub(crate) fn vvv_in_accounts_units(&self) -> u128 {
        [
            self.vvv_units,
            self.staked_svvv_units,
            self.cooling_svvv_units,
            self.locked_svvv_units,
        ]
        .into_iter()
        .fold(0u128, |sum, amount| match sum.checked_add(amount) {
            Some(next) => next,
            None => panic!("VVV in accounts exceeds u128, so supply was not conserved"),
        })
    }

    /// DIEM that exists in any form.
    pub(crate) fn diem_in_accounts_units(&self) -> u128 {
        [
            self.diem_units,
            self.staked_diem_units,
            self.cooling_diem_units,
        ]
        .into_iter()
        .fold(0u128, |sum, amount| match sum.checked_add(amount) {
            Some(next) => next,
            None => panic!("DIEM in accounts exceeds u128, so DIEM supply was not conserved"),
        })
    }
}
