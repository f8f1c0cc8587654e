//! The ledger's invariants as assertions that stay on in release builds: the O(1) set checked
//! after every accepted operation, and the full audit that recounts everything from the
//! accounts. Owns checking only; it never repairs state, because a failed invariant is a bug
//! to stop on, not a condition to handle.

use crate::BASIS_POINTS;
use crate::account::{Account, Totals};
use crate::address::Address;
use crate::emissions::MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND;
use crate::ledger::{Ledger, vested_units};

impl Ledger {
    /// The reward pool: emitted to stakers and not yet claimed, rounding dust included.
    pub(crate) fn reward_pool_units(&self) -> u128 {
        match self
            .supply
            .emitted_to_stakers_units
            .checked_sub(self.supply.rewards_claimed_units)
        {
            Some(pool) => pool,
            None => panic!("invariant: rewards claimed exceed rewards emitted to stakers"),
        }
    }

    /// Checked after every accepted operation, in O(1) plus the accounts it touched.
    ///
    /// - Supply conservation: `genesis + emitted − burned` equals liquid + staked + cooling +
    ///   locked VVV in accounts, plus unclaimed airdrop, unclaimed team grants and the reward pool.
    /// - Rewards never exceed emissions: claims are at most what was emitted to stakers, and
    ///   the settled-but-unclaimed rewards fit in the pool.
    /// - DIEM supply equals all DIEM held (liquid, staked, cooling) and all DIEM minted and not
    ///   burned, account by account.
    /// - Credits are conserved: everything the admin credited is either still in accounts or was
    ///   spent by a usage settlement, for USD and bundled credits alike; and the usage revenue
    ///   (allowance + bundled + USD ever settled) fits.
    /// - Every touched account's usage record is bounded and its allowance drawn is its latest
    ///   day's.
    /// - No negative amounts: every amount is a u128, so there is nothing to check; a debit
    ///   that would go below zero is refused or asserted where it is computed.
    pub(crate) fn assert_invariants(&self, touched: &[Address]) {
        let supply = &self.supply;
        let minted = [
            supply.genesis_units,
            supply.emitted_to_stakers_units,
            supply.emitted_to_company_units,
        ]
        .into_iter()
        .fold(0u128, checked_sum);
        let burned = checked_sum(
            supply.burned_unclaimed_airdrop_units,
            supply.burned_by_buyback_units,
        );
        assert!(burned <= minted, "invariant: more VVV burned than minted");
        let reward_pool = self.reward_pool_units();
        let held = [
            self.totals.vvv_in_accounts_units(),
            supply.airdrop_unclaimed_units,
            supply.team_unclaimed_units,
            reward_pool,
        ]
        .into_iter()
        .fold(0u128, checked_sum);
        assert_eq!(
            minted - burned,
            held,
            "invariant: VVV supply is not conserved (minted − burned ≠ everything held)"
        );
        assert!(
            self.totals.rewards_owed_units <= reward_pool,
            "invariant: settled rewards exceed the reward pool"
        );
        assert_eq!(
            supply.diem_supply_units,
            self.totals.diem_in_accounts_units(),
            "invariant: DIEM supply ≠ DIEM held"
        );
        assert_eq!(
            supply.diem_supply_units, self.totals.diem_minted_outstanding_units,
            "invariant: DIEM supply ≠ DIEM minted and not burned"
        );
        assert!(self.emissions.rate_vvv_units_per_second <= MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND);
        assert!(u128::from(self.emissions.utilization_bps) <= BASIS_POINTS);
        assert_eq!(
            supply.credited_usd_units,
            checked_sum(self.totals.usd_credit_units, self.usage_totals.usd_units),
            "invariant: USD credited ≠ USD held + USD spent on usage"
        );
        assert_eq!(
            supply.credited_bundled_credit_units,
            checked_sum(
                self.totals.bundled_credit_units,
                self.usage_totals.bundled_credit_units
            ),
            "invariant: bundled credits granted ≠ bundled held + bundled spent on usage"
        );
        assert!(
            self.usage_totals.revenue_usd_units().is_some(),
            "invariant: the usage revenue exceeds u128"
        );
        for address in touched {
            if let Some(account) = self.accounts.get(address) {
                self.assert_account(address, account);
            }
            if let Some(usage) = self.usage.get(address) {
                self.assert_usage(address, usage, false);
            }
        }
    }

    fn assert_account(&self, address: &Address, account: &Account) {
        assert!(
            !account.is_empty(),
            "invariant: {address} is stored but empty"
        );
        assert!(
            account.diem_minted_outstanding_units > 0 || account.locked_svvv_units == 0,
            "invariant: {address} has sVVV locked behind no DIEM"
        );
        assert!(
            account.cooling_svvv_units > 0 || account.svvv_unlock_at_seconds == 0,
            "invariant: {address} has an unlock time with nothing cooling"
        );
        assert!(
            account.cooling_diem_units > 0 || account.diem_unlock_at_seconds == 0,
            "invariant: {address} has a DIEM unlock time with nothing cooling"
        );
        assert!(
            account.reward_per_share_paid <= self.emissions.reward_per_share
                && account.reward_per_locked_share_paid <= self.emissions.reward_per_locked_share,
            "invariant: {address} was settled against a future accumulator"
        );
    }

    /// Recounts everything from the accounts and checks it against the running totals and
    /// counters, then checks the O(1) invariants and every account. O(accounts): for tests,
    /// `ledger verify` and after a snapshot is loaded, not for every operation. Panics on the
    /// first broken invariant.
    pub fn assert_invariants_full(&self) {
        let mut recounted = Totals::default();
        let mut pending_rewards: u128 = 0;
        for (address, account) in &self.accounts {
            recounted.add(account);
            self.assert_account(address, account);
            pending_rewards = checked_sum(
                pending_rewards,
                account.pending_rewards_units(
                    self.emissions.reward_per_share,
                    self.emissions.reward_per_locked_share,
                ),
            );
        }
        assert_eq!(
            recounted, self.totals,
            "invariant: totals ≠ the sum of the accounts"
        );
        assert!(
            pending_rewards <= self.reward_pool_units(),
            "invariant: rewards owed to accounts exceed the reward pool"
        );
        let airdrop = self
            .airdrop_unclaimed
            .values()
            .copied()
            .fold(0u128, checked_sum);
        assert_eq!(
            airdrop, self.supply.airdrop_unclaimed_units,
            "invariant: airdrop list ≠ its counter"
        );
        assert!(self.airdrop_unclaimed.values().all(|&amount| amount > 0));
        if let Some(terms) = &self.genesis {
            let mut team_unclaimed: u128 = 0;
            for grant in self.vesting_grants.values() {
                let vested = vested_units(grant, terms, self.now_seconds);
                assert!(
                    grant.claimed_units <= vested && vested <= grant.vesting_units,
                    "invariant: a team grant was claimed beyond what vested"
                );
                team_unclaimed =
                    checked_sum(team_unclaimed, grant.vesting_units - grant.claimed_units);
            }
            assert_eq!(
                team_unclaimed, self.supply.team_unclaimed_units,
                "invariant: grants ≠ their counter"
            );
        }
        let (burned, revenue) =
            self.buybacks_by_day
                .values()
                .fold((0u128, 0u128), |(burned, revenue), day| {
                    (
                        checked_sum(burned, day.vvv_burned_units),
                        checked_sum(revenue, day.revenue_usd_units),
                    )
                });
        assert_eq!(
            burned, self.supply.burned_by_buyback_units,
            "invariant: buyback days ≠ burned"
        );
        assert_eq!(
            revenue, self.supply.buyback_revenue_usd_units,
            "invariant: buyback days ≠ revenue"
        );
        for (address, usage) in &self.usage {
            self.assert_usage(address, usage, true);
        }
        let nonces = self.accounts.values().fold(0u64, |sum, account| {
            match sum.checked_add(account.nonce) {
                Some(next) => next,
                None => panic!("invariant: the nonces add up beyond u64"),
            }
        });
        assert_eq!(
            nonces, self.operations_accepted,
            "invariant: the nonces ≠ the operations accepted"
        );
        let all: Vec<Address> = Vec::new();
        self.assert_invariants(&all);
    }
}

fn checked_sum(left: u128, right: u128) -> u128 {
    match left.checked_add(right) {
        Some(sum) => sum,
        None => panic!("invariant: a sum of holdings exceeds u128"),
    }
}
