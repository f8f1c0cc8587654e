//! Read-only views for the gateway, CLI and dashboard: balances, supply, the mint rate and
//! quotes, the emission split, APR and the DIEM liability. Pure reads: nothing here changes the
//! ledger, and every figure is an integer or an integer ratio, never a float.

use std::collections::BTreeMap;

use crate::address::Address;
use crate::curve::{MintCurve, MintQuote};
use crate::emissions::{self, MINIMUM_STAKE_FOR_EMISSIONS_UNITS};
use crate::ledger::{BuybackDay, Ledger, vested_units};
use crate::params::Parameters;
use crate::usage_days::UsageDay;
use crate::wide::mul_div_floor;
use crate::{BASIS_POINTS, SECONDS_PER_YEAR};

/// One account's holdings. Amounts are in base units; times are seconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountBalances {
    pub vvv_units: u128,
    /// Unlocked staked sVVV.
    pub staked_svvv_units: u128,
    pub cooling_svvv_units: u128,
    pub svvv_unlock_at_seconds: Option<u64>,
    /// sVVV locked behind DIEM this account minted.
    pub locked_svvv_units: u128,
    /// DIEM this account minted and has not burned; burning it unlocks the locked sVVV.
    pub diem_minted_outstanding_units: u128,
    pub diem_units: u128,
    pub staked_diem_units: u128,
    pub cooling_diem_units: u128,
    pub diem_unlock_at_seconds: Option<u64>,
    /// Staking rewards claimable now, projected to the time asked for.
    pub pending_rewards_units: u128,
    pub usd_credit_units: u128,
    pub bundled_credit_units: u128,
    /// The airdrop allocation, while the claim window is open.
    pub airdrop_claimable_units: u128,
    /// Team grant vested and not yet claimed.
    pub vesting_claimable_units: u128,
    /// Team grant not yet vested.
    pub vesting_unvested_units: u128,
    /// The DIEM part of the daily allowance: staked DIEM as USD base units per day (one DIEM is
    /// $1 a day), or zero below the spendable minimum.
    pub diem_allowance_usd_units_per_day: u128,
    /// Operations this address signed that the ledger accepted: the nonce its next signed
    /// operation must carry (see [`Ledger::next_nonce`]).
    pub nonce: u64,
}

/// The supply, in base units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SupplySummary {
    pub genesis_vvv_units: u128,
    pub emitted_to_stakers_vvv_units: u128,
    pub emitted_to_company_vvv_units: u128,
    pub burned_unclaimed_airdrop_vvv_units: u128,
    pub burned_by_buyback_vvv_units: u128,
    /// Every burn: the unclaimed airdrop and buy-backs.
    pub burned_vvv_units: u128,
    /// Genesis plus emissions minus burns.
    pub total_vvv_units: u128,
    /// Total minus what nobody can move yet: unclaimed airdrop, unclaimed team grants (vested
    /// or not) and the reward pool.
    pub circulating_vvv_units: u128,
    pub liquid_vvv_units: u128,
    pub staked_svvv_units: u128,
    pub cooling_svvv_units: u128,
    pub locked_svvv_units: u128,
    pub unclaimed_airdrop_vvv_units: u128,
    pub unclaimed_team_vvv_units: u128,
    /// Emitted to stakers and not yet claimed, rounding dust included.
    pub reward_pool_vvv_units: u128,
    pub rewards_claimed_vvv_units: u128,
    pub diem_supply_units: u128,
    pub liquid_diem_units: u128,
    pub staked_diem_units: u128,
    pub cooling_diem_units: u128,
    pub buyback_revenue_usd_units: u128,
    pub usd_credit_units: u128,
    pub bundled_credit_units: u128,
    /// Allowance drawn by every usage settlement ever accepted (USD base units).
    pub usage_allowance_units: u128,
    /// Bundled credits spent by every usage settlement.
    pub usage_bundled_credit_units: u128,
    /// USD credit spent by every usage settlement.
    pub usage_usd_units: u128,
    /// What all settled usage was worth: allowance + bundled credits + USD.
    pub usage_revenue_usd_units: u128,
}

/// How emissions are divided right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmissionSplit {
    pub emission_rate_vvv_units_per_second: u128,
    pub utilization_bps: u32,
    /// The company's share of what accrues to unlocked stake.
    pub company_share_of_unlocked_bps: u32,
    /// The stakers' share of what accrues to unlocked stake.
    pub stakers_share_of_unlocked_bps: u32,
    /// The stakers' share of what accrues to locked stake (the rest goes to the company).
    pub stakers_share_of_locked_bps: u32,
}

/// A non-negative rational number; a zero denominator means "undefined" (nothing staked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub numerator: u128,
    pub denominator: u128,
}

impl Ratio {
    /// The ratio in basis points, rounded down; `None` when undefined.
    pub fn basis_points(&self) -> Option<u128> {
        mul_div_floor(self.numerator, BASIS_POINTS, self.denominator)
    }
}

/// Yearly staking yield at the current rate, split and stake: VVV per year per staked VVV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StakingApr {
    pub unlocked: Ratio,
    pub locked: Ratio,
}

/// What outstanding DIEM promises against what backs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiemLiability {
    pub outstanding_diem_units: u128,
    /// One DIEM is $1 of API credit a day, forever: the liability in USD base units per day.
    pub liability_usd_units_per_day: u128,
    /// The part of the liability that is staked, hence spendable (subject to the minimum).
    pub staked_diem_units: u128,
    pub locked_svvv_units: u128,
    /// Locked sVVV per outstanding DIEM (base units per whole DIEM), `None` with no DIEM.
    pub locked_svvv_units_per_diem: Option<u128>,
    pub mint_rate_svvv_units_per_diem: u128,
}

impl Ledger {
    pub fn is_initialized(&self) -> bool {
        self.genesis.is_some()
    }

    pub fn admin(&self) -> Option<Address> {
        self.genesis.map(|terms| terms.admin)
    }

    pub fn treasury(&self) -> Option<Address> {
        self.genesis.map(|terms| terms.treasury)
    }

    pub fn genesis_seconds(&self) -> Option<u64> {
        self.genesis.map(|terms| terms.genesis_seconds)
    }

    pub fn airdrop_claim_deadline_seconds(&self) -> Option<u64> {
        self.genesis
            .map(|terms| terms.airdrop_claim_deadline_seconds)
    }

    /// The time of the last applied operation; emissions have accrued up to it.
    pub fn now_seconds(&self) -> u64 {
        self.now_seconds
    }

    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }

    pub fn mint_curve(&self) -> &MintCurve {
        &self.mint_curve
    }

    pub fn emission_rate_vvv_units_per_second(&self) -> u128 {
        self.emissions.rate_vvv_units_per_second
    }

    /// Every address that holds something, in order.
    pub fn account_addresses(&self) -> impl Iterator<Item = Address> + '_ {
        self.accounts.keys().copied()
    }

    /// An account's holdings. Rewards, vesting and the airdrop window are projected to
    /// `now_seconds` (a time before the last operation counts as the last operation's); all
    /// other amounts are as of the last operation.
    pub fn balances(&self, address: Address, now_seconds: u64) -> AccountBalances {
        let now_seconds = now_seconds.max(self.now_seconds);
        let account = self.accounts.get(&address).copied().unwrap_or_default();
        let accrual = emissions::accrual(
            &self.emissions,
            &self.parameters,
            now_seconds - self.now_seconds,
            self.totals.staked_svvv_units,
            self.totals.locked_svvv_units,
        );
        let pending_rewards_units = account.pending_rewards_units(
            accrual.reward_per_share_after,
            accrual.reward_per_locked_share_after,
        );
        let (vesting_claimable_units, vesting_unvested_units) =
            match (self.genesis, self.vesting_grants.get(&address)) {
                (Some(terms), Some(grant)) => {
                    let vested = vested_units(grant, &terms, now_seconds);
                    (vested - grant.claimed_units, grant.vesting_units - vested)
                }
                _ => (0, 0),
            };
        let window_open = self
            .genesis
            .is_some_and(|terms| now_seconds < terms.airdrop_claim_deadline_seconds);
        let airdrop_claimable_units = if window_open {
            self.airdrop_unclaimed.get(&address).copied().unwrap_or(0)
        } else {
            0
        };
        let nonzero_time = |time: u64| (time != 0).then_some(time);
        AccountBalances {
            vvv_units: account.vvv_units,
            staked_svvv_units: account.staked_svvv_units,
            cooling_svvv_units: account.cooling_svvv_units,
            svvv_unlock_at_seconds: nonzero_time(account.svvv_unlock_at_seconds),
            locked_svvv_units: account.locked_svvv_units,
            diem_minted_outstanding_units: account.diem_minted_outstanding_units,
            diem_units: account.diem_units,
            staked_diem_units: account.staked_diem_units,
            cooling_diem_units: account.cooling_diem_units,
            diem_unlock_at_seconds: nonzero_time(account.diem_unlock_at_seconds),
            pending_rewards_units,
            usd_credit_units: account.usd_credit_units,
            bundled_credit_units: account.bundled_credit_units,
            airdrop_claimable_units,
            vesting_claimable_units,
            vesting_unvested_units,
            diem_allowance_usd_units_per_day: self.allowance_for(account.staked_diem_units),
            nonce: account.nonce,
        }
    }

    fn allowance_for(&self, staked_diem_units: u128) -> u128 {
        if staked_diem_units >= self.parameters.minimum_spendable_staked_diem_units {
            staked_diem_units
        } else {
            0
        }
    }

    /// The DIEM part of an account's daily allowance, in USD base units per day: its staked
    /// DIEM if at least the spendable minimum (0.1 DIEM by default), else zero.
    pub fn diem_allowance_usd_units_per_day(&self, address: Address) -> u128 {
        let staked = self
            .accounts
            .get(&address)
            .map_or(0, |account| account.staked_diem_units);
        self.allowance_for(staked)
    }

    pub fn supply(&self) -> SupplySummary {
        let supply = &self.supply;
        let totals = &self.totals;
        let burned_vvv_units =
            supply.burned_unclaimed_airdrop_units + supply.burned_by_buyback_units;
        let total_vvv_units = supply.genesis_units
            + supply.emitted_to_stakers_units
            + supply.emitted_to_company_units
            - burned_vvv_units;
        let reward_pool_vvv_units = self.reward_pool_units();
        SupplySummary {
            genesis_vvv_units: supply.genesis_units,
            emitted_to_stakers_vvv_units: supply.emitted_to_stakers_units,
            emitted_to_company_vvv_units: supply.emitted_to_company_units,
            burned_unclaimed_airdrop_vvv_units: supply.burned_unclaimed_airdrop_units,
            burned_by_buyback_vvv_units: supply.burned_by_buyback_units,
            burned_vvv_units,
            total_vvv_units,
            circulating_vvv_units: total_vvv_units
                - supply.airdrop_unclaimed_units
                - supply.team_unclaimed_units
                - reward_pool_vvv_units,
            liquid_vvv_units: totals.vvv_units,
            staked_svvv_units: totals.staked_svvv_units,
            cooling_svvv_units: totals.cooling_svvv_units,
            locked_svvv_units: totals.locked_svvv_units,
            unclaimed_airdrop_vvv_units: supply.airdrop_unclaimed_units,
            unclaimed_team_vvv_units: supply.team_unclaimed_units,
            reward_pool_vvv_units,
            rewards_claimed_vvv_units: supply.rewards_claimed_units,
            diem_supply_units: supply.diem_supply_units,
            liquid_diem_units: totals.diem_units,
            staked_diem_units: totals.staked_diem_units,
            cooling_diem_units: totals.cooling_diem_units,
            buyback_revenue_usd_units: supply.buyback_revenue_usd_units,
            usd_credit_units: totals.usd_credit_units,
            bundled_credit_units: totals.bundled_credit_units,
            usage_allowance_units: self.usage_totals.allowance_units,
            usage_bundled_credit_units: self.usage_totals.bundled_credit_units,
            usage_usd_units: self.usage_totals.usd_units,
            // The settlement refuses to let it overflow; the invariants check it.
            usage_revenue_usd_units: self.usage_totals.revenue_usd_units().unwrap_or(u128::MAX),
        }
    }

    /// The mint rate at the current DIEM supply: sVVV base units per whole DIEM.
    pub fn mint_rate_svvv_units_per_diem(&self) -> u128 {
        self.mint_curve.rate_at(self.supply.diem_supply_units)
    }

    /// The sVVV (base units) that minting `diem_units` now would lock; `None` if beyond range.
    /// Passing it as `svvv_to_lock_units` mints exactly `diem_units` if nobody mints first.
    pub fn quote_mint_svvv_units(&self, diem_units: u128) -> Option<u128> {
        self.mint_curve
            .quote_svvv_units(self.supply.diem_supply_units, diem_units)
    }

    /// What `Op::MintDiem` with this much sVVV would mint and lock now.
    pub fn preview_mint(&self, svvv_to_lock_units: u128) -> Option<MintQuote> {
        self.mint_curve
            .mint_for_budget(self.supply.diem_supply_units, svvv_to_lock_units)
    }

    pub fn emission_split(&self) -> EmissionSplit {
        let company = emissions::company_share_bps(&self.emissions, &self.parameters);
        let locked = emissions::locked_staker_share_bps(&self.emissions, &self.parameters);
        EmissionSplit {
            emission_rate_vvv_units_per_second: self.emissions.rate_vvv_units_per_second,
            utilization_bps: self.emissions.utilization_bps,
            company_share_of_unlocked_bps: company,
            stakers_share_of_unlocked_bps: 10_000 - company,
            stakers_share_of_locked_bps: u32::try_from(locked).unwrap_or(0),
        }
    }

    /// Yearly staker rewards per staked sVVV at the current rate, split and stake (unlocked and
    /// locked together share the gross pro rata). Undefined (zero denominator) while the stake
    /// is below the emission minimum, when nothing is emitted.
    pub fn staking_apr(&self) -> StakingApr {
        let stake_units = self.totals.staked_svvv_units + self.totals.locked_svvv_units;
        let denominator = if stake_units < MINIMUM_STAKE_FOR_EMISSIONS_UNITS {
            0
        } else {
            stake_units
        };
        let yearly_units = self.emissions.rate_vvv_units_per_second * u128::from(SECONDS_PER_YEAR);
        let company = u128::from(emissions::company_share_bps(
            &self.emissions,
            &self.parameters,
        ));
        let locked = emissions::locked_staker_share_bps(&self.emissions, &self.parameters);
        let share = |bps: u128| mul_div_floor(yearly_units, bps, BASIS_POINTS).unwrap_or(0);
        StakingApr {
            unlocked: Ratio {
                numerator: share(BASIS_POINTS - company),
                denominator,
            },
            locked: Ratio {
                numerator: share(locked),
                denominator,
            },
        }
    }

    pub fn diem_liability(&self) -> DiemLiability {
        let outstanding = self.supply.diem_supply_units;
        let locked = self.totals.locked_svvv_units;
        DiemLiability {
            outstanding_diem_units: outstanding,
            liability_usd_units_per_day: outstanding,
            staked_diem_units: self.totals.staked_diem_units,
            locked_svvv_units: locked,
            locked_svvv_units_per_diem: mul_div_floor(locked, crate::UNITS_PER_TOKEN, outstanding),
            mint_rate_svvv_units_per_diem: self.mint_rate_svvv_units_per_diem(),
        }
    }

    /// How many operations `address` has signed that the ledger accepted (admin operations and
    /// genesis included): the nonce its next signed operation must carry. The ledger counts; the
    /// gateway compares a signed nonce with this before it submits.
    pub fn next_nonce(&self, address: Address) -> u64 {
        self.accounts
            .get(&address)
            .map_or(0, |account| account.nonce)
    }

    /// Every operation accepted so far, genesis included (the sum of all nonces).
    pub fn operations_accepted(&self) -> u64 {
        self.operations_accepted
    }

    /// The allowance (USD base units) that usage settlements drew for `address` on UTC `day`, if
    /// `day` is the latest day settled for it; zero for any other day.
    pub fn allowance_spent_units(&self, address: Address, day: u64) -> u128 {
        match self.usage.get(&address) {
            Some(usage) if usage.allowance_day == day => usage.allowance_spent_units,
            _ => 0,
        }
    }

    /// An account's usage by UTC day, oldest first: at most the latest
    /// [`crate::USAGE_HISTORY_DAYS`] days that had any usage.
    pub fn usage_history(&self, address: Address) -> impl Iterator<Item = (u64, &UsageDay)> + '_ {
        self.usage
            .get(&address)
            .into_iter()
            .flat_map(|usage| usage.days.iter().map(|(day, record)| (*day, record)))
    }

    /// Every account's usage on UTC `day`, added up (days older than the kept history count as
    /// nothing). O(accounts that were ever charged): for a daily report, not per request.
    pub fn usage_on_day(&self, day: u64) -> UsageDay {
        let mut total = UsageDay::default();
        for usage in self.usage.values() {
            if let Some(record) = usage.days.get(&day) {
                total = UsageDay {
                    requests: total.requests.saturating_add(record.requests),
                    prompt_tokens: total.prompt_tokens.saturating_add(record.prompt_tokens),
                    completion_tokens: total
                        .completion_tokens
                        .saturating_add(record.completion_tokens),
                    allowance_units: total.allowance_units.saturating_add(record.allowance_units),
                    bundled_credit_units: total
                        .bundled_credit_units
                        .saturating_add(record.bundled_credit_units),
                    usd_units: total.usd_units.saturating_add(record.usd_units),
                };
            }
        }
        total
    }

    /// The latest UTC day any usage was settled for `address`.
    pub fn last_usage_day(&self, address: Address) -> Option<u64> {
        self.usage.get(&address).map(|usage| usage.allowance_day)
    }

    /// Buy-back-and-burn by UTC day number (seconds since the epoch / 86,400).
    pub fn buybacks_by_day(&self) -> &BTreeMap<u64, BuybackDay> {
        &self.buybacks_by_day
    }
}
