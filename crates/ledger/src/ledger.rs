//! The ledger's state and its one state transition, `Ledger::apply(now, signer, op)`. Owns the
//! order of checks and the all-or-nothing rule: an operation does its fallible work on copies,
//! then commits, so a rejected operation leaves the state exactly as it was. It must never read
//! the clock, draw randomness, do IO, or use floats; time and the signer are arguments.

use std::collections::{BTreeMap, BTreeSet};

use crate::account::{Account, Totals};
use crate::address::Address;
use crate::curve::MintCurve;
use crate::emissions::{self, Emissions, MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND};
use crate::op::{Asset, GenesisConfig, Op, Outcome};
use crate::params::Parameters;
use crate::rejection::Rejection;
use crate::usage_days::{AccountUsage, UsageTotals};
use crate::wide::mul_div_floor;
use crate::{
    BASIS_POINTS, MAXIMUM_GENESIS_SUPPLY_UNITS, MAXIMUM_GENESIS_TERM_SECONDS, SECONDS_PER_DAY,
};

/// What genesis fixed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GenesisTerms {
    pub(crate) admin: Address,
    pub(crate) treasury: Address,
    pub(crate) genesis_seconds: u64,
    pub(crate) team_vesting_seconds: u64,
    pub(crate) airdrop_claim_deadline_seconds: u64,
}

/// Supply counters. Together with [`Totals`] they make conservation checkable in O(1):
/// `genesis + emitted − burned = VVV in accounts + unclaimed airdrop + unclaimed team grants +
/// reward pool`, where the reward pool is `emitted to stakers − rewards claimed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Supply {
    pub(crate) genesis_units: u128,
    pub(crate) emitted_to_stakers_units: u128,
    pub(crate) emitted_to_company_units: u128,
    pub(crate) rewards_claimed_units: u128,
    pub(crate) burned_unclaimed_airdrop_units: u128,
    pub(crate) burned_by_buyback_units: u128,
    pub(crate) buyback_revenue_usd_units: u128,
    pub(crate) airdrop_unclaimed_units: u128,
    /// The vesting part of team grants not yet claimed, whether vested or not.
    pub(crate) team_unclaimed_units: u128,
    pub(crate) diem_supply_units: u128,
    /// Every USD and bundled credit the admin ever granted: what is still in accounts plus what
    /// usage settlements spent.
    pub(crate) credited_usd_units: u128,
    pub(crate) credited_bundled_credit_units: u128,
}

/// The vesting part of one team grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VestingGrant {
    pub(crate) vesting_units: u128,
    pub(crate) claimed_units: u128,
}

/// Buy-back-and-burn activity on one UTC day (day number = seconds since the epoch / 86,400),
/// so the dashboard can show burn per epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuybackDay {
    pub vvv_burned_units: u128,
    pub revenue_usd_units: u128,
}

/// The whole economy: a pure function of the operations applied to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    pub(crate) genesis: Option<GenesisTerms>,
    /// The time of the last applied operation; emissions have accrued up to it.
    pub(crate) now_seconds: u64,
    pub(crate) parameters: Parameters,
    pub(crate) mint_curve: MintCurve,
    pub(crate) emissions: Emissions,
    pub(crate) supply: Supply,
    pub(crate) totals: Totals,
    pub(crate) accounts: BTreeMap<Address, Account>,
    pub(crate) vesting_grants: BTreeMap<Address, VestingGrant>,
    pub(crate) airdrop_unclaimed: BTreeMap<Address, u128>,
    pub(crate) buybacks_by_day: BTreeMap<u64, BuybackDay>,
    /// Usage history and allowance drawn, for every account that was ever charged.
    pub(crate) usage: BTreeMap<Address, AccountUsage>,
    pub(crate) usage_totals: UsageTotals,
    /// Every operation accepted, genesis included: the sum of all accounts' nonces.
    pub(crate) operations_accepted: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

/// The parts of the state that accruing emissions changes, saved so that a rejected operation
/// can put them back.
struct BeforeAccrual {
    now_seconds: u64,
    emissions: Emissions,
    supply: Supply,
    totals: Totals,
    treasury: Option<Account>,
}

/// `a + b` for amounts bounded by a supply that fits in u128: overflow would mean conservation
/// is already broken, so it is a bug, not a rejection.
pub(crate) fn add_within_supply(left: u128, right: u128) -> u128 {
    match left.checked_add(right) {
        Some(sum) => sum,
        None => panic!("an amount bounded by the supply overflowed u128"),
    }
}

/// `a − b` where the ledger's own bookkeeping guarantees `b ≤ a`.
fn subtract_within_supply(left: u128, right: u128) -> u128 {
    match left.checked_sub(right) {
        Some(difference) => difference,
        None => panic!("bookkeeping went negative"),
    }
}

impl Ledger {
    /// An empty ledger awaiting its genesis operation.
    pub fn new() -> Self {
        Self {
            genesis: None,
            now_seconds: 0,
            parameters: Parameters::default(),
            mint_curve: MintCurve::venice_default(),
            emissions: Emissions::default(),
            supply: Supply::default(),
            totals: Totals::default(),
            accounts: BTreeMap::new(),
            vesting_grants: BTreeMap::new(),
            airdrop_unclaimed: BTreeMap::new(),
            buybacks_by_day: BTreeMap::new(),
            usage: BTreeMap::new(),
            usage_totals: UsageTotals::default(),
            operations_accepted: 0,
        }
    }

    /// Applies one operation at `now_seconds`, signed by `signer` (whose signature the caller has
    /// already checked). Accrues emissions up to `now_seconds` first, so the operation sees them.
    /// A rejection leaves the state exactly as it was, accrual included; an acceptance counts
    /// toward the signer's nonce ([`Ledger::next_nonce`]) and is followed by the O(1) invariant
    /// checks, which panic on a bug in release builds too.
    pub fn apply(
        &mut self,
        now_seconds: u64,
        signer: Address,
        op: Op,
    ) -> Result<Outcome, Rejection> {
        let Some(terms) = self.genesis else {
            return match op {
                Op::Genesis(config) => self.apply_genesis(now_seconds, signer, *config),
                _ => Err(Rejection::NotInitialized),
            };
        };
        if matches!(op, Op::Genesis(_)) {
            return Err(Rejection::AlreadyInitialized);
        }
        if now_seconds < self.now_seconds {
            return Err(Rejection::TimeWentBackwards);
        }
        if op.requires_admin() && signer != terms.admin {
            return Err(Rejection::NotAdmin);
        }
        let touched = touched_addresses(signer, &op, terms.treasury);
        let before_accrual = BeforeAccrual {
            now_seconds: self.now_seconds,
            emissions: self.emissions,
            supply: self.supply,
            totals: self.totals,
            treasury: self.accounts.get(&terms.treasury).copied(),
        };
        self.accrue_until(now_seconds, terms.treasury);
        match self.execute(now_seconds, signer, op, terms) {
            Ok(outcome) => {
                self.count_accepted(signer);
                self.assert_invariants(&touched);
                Ok(outcome)
            }
            Err(rejection) => {
                self.now_seconds = before_accrual.now_seconds;
                self.emissions = before_accrual.emissions;
                self.supply = before_accrual.supply;
                self.totals = before_accrual.totals;
                match before_accrual.treasury {
                    Some(account) => self.accounts.insert(terms.treasury, account),
                    None => self.accounts.remove(&terms.treasury),
                };
                Err(rejection)
            }
        }
    }

    fn apply_genesis(
        &mut self,
        now_seconds: u64,
        signer: Address,
        config: GenesisConfig,
    ) -> Result<Outcome, Rejection> {
        if signer != config.admin {
            return Err(Rejection::NotAdmin);
        }
        let mint_curve = MintCurve::new(config.mint_curve_points.clone())
            .map_err(|_| Rejection::InvalidGenesis)?;
        let genesis_supply_units = validate_genesis(now_seconds, &config)?;
        let terms = GenesisTerms {
            admin: config.admin,
            treasury: config.treasury.address,
            genesis_seconds: now_seconds,
            team_vesting_seconds: config.team_vesting_seconds,
            airdrop_claim_deadline_seconds: now_seconds + config.airdrop_claim_window_seconds,
        };
        let mut ledger = Self {
            genesis: Some(terms),
            now_seconds,
            parameters: config.parameters.clone(),
            mint_curve,
            emissions: Emissions {
                rate_vvv_units_per_second: config.emission_rate_vvv_units_per_second,
                ..Emissions::default()
            },
            supply: Supply {
                genesis_units: genesis_supply_units,
                ..Supply::default()
            },
            ..Self::new()
        };
        let mut credited = BTreeSet::new();
        for allocation in [config.treasury, config.incentive_fund, config.liquidity] {
            let mut account = ledger.load(allocation.address);
            account.vvv_units = add_within_supply(account.vvv_units, allocation.vvv_units);
            ledger.store(allocation.address, account);
            credited.insert(allocation.address);
        }
        for grant in &config.team_grants {
            let unlocked_units = mul_div_floor(
                grant.vvv_units,
                u128::from(config.team_unlocked_at_genesis_bps),
                BASIS_POINTS,
            )
            .unwrap_or(grant.vvv_units);
            let vesting_units = grant.vvv_units - unlocked_units;
            let mut account = ledger.load(grant.address);
            account.vvv_units = add_within_supply(account.vvv_units, unlocked_units);
            ledger.store(grant.address, account);
            ledger.vesting_grants.insert(
                grant.address,
                VestingGrant {
                    vesting_units,
                    claimed_units: 0,
                },
            );
            ledger.supply.team_unclaimed_units =
                add_within_supply(ledger.supply.team_unclaimed_units, vesting_units);
            credited.insert(grant.address);
        }
        for allocation in &config.airdrop {
            ledger
                .airdrop_unclaimed
                .insert(allocation.address, allocation.vvv_units);
            ledger.supply.airdrop_unclaimed_units =
                add_within_supply(ledger.supply.airdrop_unclaimed_units, allocation.vvv_units);
        }
        credited.insert(config.treasury.address);
        ledger.count_accepted(config.admin);
        credited.insert(config.admin);
        let touched: Vec<Address> = credited.into_iter().collect();
        ledger.assert_invariants(&touched);
        *self = ledger;
        Ok(Outcome::GenesisApplied {
            genesis_supply_units,
        })
    }

    /// A copy of an account, settled against the current accumulators, ready to be changed.
    pub(crate) fn load(&self, address: Address) -> Account {
        let mut account = self.accounts.get(&address).copied().unwrap_or_default();
        account.settle(
            self.emissions.reward_per_share,
            self.emissions.reward_per_locked_share,
        );
        account
    }

    /// Stores a changed account, keeping the totals equal to the sum of the accounts. An empty
    /// account is removed, so emptied and never-used accounts are the same state.
    pub(crate) fn store(&mut self, address: Address, account: Account) {
        if let Some(previous) = self.accounts.get(&address) {
            self.totals.subtract(previous);
        }
        self.totals.add(&account);
        if account.is_empty() {
            self.accounts.remove(&address);
        } else {
            self.accounts.insert(address, account);
        }
    }

    /// Counts an accepted operation toward its signer's nonce. The stored account is changed as
    /// it is, not settled: settling is the operations' business, and settling here would move
    /// reward rounding to points the operations did not choose.
    fn count_accepted(&mut self, signer: Address) {
        let mut account = self.accounts.get(&signer).copied().unwrap_or_default();
        // 2^64 operations at a billion a second would take 584 years.
        account.nonce = match account.nonce.checked_add(1) {
            Some(nonce) => nonce,
            None => panic!("a nonce reached 2^64"),
        };
        self.operations_accepted = match self.operations_accepted.checked_add(1) {
            Some(count) => count,
            None => panic!("the operation count reached 2^64"),
        };
        self.store(signer, account);
    }

    /// Mints the emissions of the time since the last operation: the stakers' part into the
    /// reward pool (through the accumulators), the company's part to the treasury.
    fn accrue_until(&mut self, now_seconds: u64, treasury: Address) {
        let accrual = emissions::accrual(
            &self.emissions,
            &self.parameters,
            now_seconds - self.now_seconds,
            self.totals.staked_svvv_units,
            self.totals.locked_svvv_units,
        );
        self.now_seconds = now_seconds;
        if accrual.gross_units == 0 {
            return;
        }
        self.emissions.reward_per_share = accrual.reward_per_share_after;
        self.emissions.reward_per_locked_share = accrual.reward_per_locked_share_after;
        self.supply.emitted_to_stakers_units = add_within_supply(
            self.supply.emitted_to_stakers_units,
            accrual.to_stakers_units,
        );
        self.supply.emitted_to_company_units = add_within_supply(
            self.supply.emitted_to_company_units,
            accrual.to_company_units,
        );
        if accrual.to_company_units > 0 {
            let mut account = self.load(treasury);
            account.vvv_units = add_within_supply(account.vvv_units, accrual.to_company_units);
            self.store(treasury, account);
        }
    }

    /// Runs one operation after the common checks and accrual. Every branch does its checks
    /// and fallible arithmetic before its first write.
    fn execute(
        &mut self,
        now_seconds: u64,
        signer: Address,
        op: Op,
        terms: GenesisTerms,
    ) -> Result<Outcome, Rejection> {
        match op {
            Op::Genesis(_) => Err(Rejection::AlreadyInitialized),
            Op::Transfer {
                asset,
                to,
                amount_units,
            } => self.transfer(signer, asset, to, amount_units),
            Op::ClaimAirdrop => self.claim_airdrop(now_seconds, signer, terms),
            Op::BurnUnclaimedAirdrop => self.burn_unclaimed_airdrop(now_seconds, terms),
            Op::ClaimVested => self.claim_vested(now_seconds, signer, terms),
            Op::Stake { vvv_units } => {
                require_nonzero(vvv_units)?;
                let mut account = self.load(signer);
                account.vvv_units = account
                    .vvv_units
                    .checked_sub(vvv_units)
                    .ok_or(Rejection::InsufficientVvv)?;
                account.staked_svvv_units = add_within_supply(account.staked_svvv_units, vvv_units);
                self.store(signer, account);
                Ok(Outcome::Staked {
                    svvv_units: vvv_units,
                })
            }
            Op::InitiateUnstake { svvv_units } => {
                require_nonzero(svvv_units)?;
                let mut account = self.load(signer);
                account.staked_svvv_units = account
                    .staked_svvv_units
                    .checked_sub(svvv_units)
                    .ok_or(Rejection::InsufficientStakedVvv)?;
                let unlock_at_seconds = now_seconds
                    .checked_add(self.parameters.unstake_cooldown_seconds)
                    .ok_or(Rejection::Overflow)?;
                account.cooling_svvv_units =
                    add_within_supply(account.cooling_svvv_units, svvv_units);
                account.svvv_unlock_at_seconds = unlock_at_seconds;
                self.store(signer, account);
                Ok(Outcome::UnstakeInitiated {
                    cooling_svvv_units: account.cooling_svvv_units,
                    unlock_at_seconds,
                })
            }
            Op::FinalizeUnstake => {
                let mut account = self.load(signer);
                if account.cooling_svvv_units == 0 {
                    return Err(Rejection::NothingCoolingDown);
                }
                if now_seconds < account.svvv_unlock_at_seconds {
                    return Err(Rejection::CooldownNotElapsed);
                }
                let vvv_units = account.cooling_svvv_units;
                account.vvv_units = add_within_supply(account.vvv_units, vvv_units);
                account.cooling_svvv_units = 0;
                account.svvv_unlock_at_seconds = 0;
                self.store(signer, account);
                Ok(Outcome::UnstakeFinalized { vvv_units })
            }
            Op::ClaimRewards => {
                let mut account = self.load(signer);
                let vvv_units = self.take_rewards(&mut account)?;
                account.vvv_units = add_within_supply(account.vvv_units, vvv_units);
                self.store(signer, account);
                Ok(Outcome::RewardsClaimed { vvv_units })
            }
            Op::ClaimAndStakeRewards => {
                let mut account = self.load(signer);
                let svvv_units = self.take_rewards(&mut account)?;
                account.staked_svvv_units =
                    add_within_supply(account.staked_svvv_units, svvv_units);
                self.store(signer, account);
                Ok(Outcome::RewardsStaked { svvv_units })
            }
            Op::MintDiem {
                svvv_to_lock_units,
                min_diem_out_units,
            } => self.mint_diem(signer, svvv_to_lock_units, min_diem_out_units),
            Op::BurnDiem { diem_units } => self.burn_diem(signer, diem_units),
            Op::StakeDiem { diem_units } => {
                require_nonzero(diem_units)?;
                let mut account = self.load(signer);
                account.diem_units = account
                    .diem_units
                    .checked_sub(diem_units)
                    .ok_or(Rejection::InsufficientDiem)?;
                account.staked_diem_units =
                    add_within_supply(account.staked_diem_units, diem_units);
                self.store(signer, account);
                Ok(Outcome::DiemStaked { diem_units })
            }
            Op::InitiateDiemUnstake { diem_units } => {
                require_nonzero(diem_units)?;
                let mut account = self.load(signer);
                account.staked_diem_units = account
                    .staked_diem_units
                    .checked_sub(diem_units)
                    .ok_or(Rejection::InsufficientStakedDiem)?;
                let unlock_at_seconds = now_seconds
                    .checked_add(self.parameters.diem_unstake_cooldown_seconds)
                    .ok_or(Rejection::Overflow)?;
                account.cooling_diem_units =
                    add_within_supply(account.cooling_diem_units, diem_units);
                account.diem_unlock_at_seconds = unlock_at_seconds;
                self.store(signer, account);
                Ok(Outcome::DiemUnstakeInitiated {
                    cooling_diem_units: account.cooling_diem_units,
                    unlock_at_seconds,
                })
            }
            Op::FinalizeDiemUnstake => {
                let mut account = self.load(signer);
                if account.cooling_diem_units == 0 {
                    return Err(Rejection::NoDiemCoolingDown);
                }
                if now_seconds < account.diem_unlock_at_seconds {
                    return Err(Rejection::DiemCooldownNotElapsed);
                }
                let diem_units = account.cooling_diem_units;
                account.diem_units = add_within_supply(account.diem_units, diem_units);
                account.cooling_diem_units = 0;
                account.diem_unlock_at_seconds = 0;
                self.store(signer, account);
                Ok(Outcome::DiemUnstakeFinalized { diem_units })
            }
            Op::SetEmissionRate {
                vvv_units_per_second,
            } => {
                if vvv_units_per_second > MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND {
                    return Err(Rejection::EmissionRateTooHigh);
                }
                self.emissions.rate_vvv_units_per_second = vvv_units_per_second;
                Ok(Outcome::EmissionRateSet {
                    vvv_units_per_second,
                })
            }
            Op::SetMintCurve { points } => {
                self.mint_curve =
                    MintCurve::new(points).map_err(|_| Rejection::InvalidMintCurve)?;
                Ok(Outcome::MintCurveSet)
            }
            Op::SetParameters(parameters) => {
                if !parameters.is_valid() {
                    return Err(Rejection::InvalidParameters);
                }
                self.parameters = *parameters;
                Ok(Outcome::ParametersSet)
            }
            Op::ReportUtilization { utilization_bps } => {
                if u128::from(utilization_bps) > BASIS_POINTS {
                    return Err(Rejection::UtilizationOutOfRange);
                }
                self.emissions.utilization_bps = utilization_bps;
                Ok(Outcome::UtilizationReported {
                    utilization_bps,
                    company_share_bps: emissions::company_share_bps(
                        &self.emissions,
                        &self.parameters,
                    ),
                })
            }
            Op::BuybackAndBurn {
                vvv_units,
                revenue_usd_units,
            } => self.buyback_and_burn(now_seconds, terms.treasury, vvv_units, revenue_usd_units),
            Op::CreditAccount {
                account: address,
                usd_units,
                bundled_credit_units,
            } => {
                if usd_units == 0 && bundled_credit_units == 0 {
                    return Err(Rejection::ZeroAmount);
                }
                // Everything ever credited must fit; what is in accounts (less what usage spent)
                // then fits too.
                let credited_usd_units = self
                    .supply
                    .credited_usd_units
                    .checked_add(usd_units)
                    .ok_or(Rejection::Overflow)?;
                let credited_bundled_credit_units = self
                    .supply
                    .credited_bundled_credit_units
                    .checked_add(bundled_credit_units)
                    .ok_or(Rejection::Overflow)?;
                let mut account = self.load(address);
                account.usd_credit_units = add_within_supply(account.usd_credit_units, usd_units);
                account.bundled_credit_units =
                    add_within_supply(account.bundled_credit_units, bundled_credit_units);
                self.supply.credited_usd_units = credited_usd_units;
                self.supply.credited_bundled_credit_units = credited_bundled_credit_units;
                self.store(address, account);
                Ok(Outcome::AccountCredited {
                    usd_units,
                    bundled_credit_units,
                })
            }
            Op::SettleUsage { day, entries } => self.settle_usage(now_seconds, day, &entries),
        }
    }

    fn transfer(
        &mut self,
        signer: Address,
        asset: Asset,
        to: Address,
        amount_units: u128,
    ) -> Result<Outcome, Rejection> {
        require_nonzero(amount_units)?;
        if to == signer {
            return Err(Rejection::SelfTransfer);
        }
        let mut sender = self.load(signer);
        let mut receiver = self.load(to);
        match asset {
            Asset::Vvv => {
                sender.vvv_units = sender
                    .vvv_units
                    .checked_sub(amount_units)
                    .ok_or(Rejection::InsufficientVvv)?;
                receiver.vvv_units = add_within_supply(receiver.vvv_units, amount_units);
            }
            Asset::Diem => {
                sender.diem_units = sender
                    .diem_units
                    .checked_sub(amount_units)
                    .ok_or(Rejection::InsufficientDiem)?;
                receiver.diem_units = add_within_supply(receiver.diem_units, amount_units);
            }
        }
        self.store(signer, sender);
        self.store(to, receiver);
        Ok(Outcome::Transferred {
            asset,
            amount_units,
        })
    }

    fn claim_airdrop(
        &mut self,
        now_seconds: u64,
        signer: Address,
        terms: GenesisTerms,
    ) -> Result<Outcome, Rejection> {
        let Some(&vvv_units) = self.airdrop_unclaimed.get(&signer) else {
            return Err(Rejection::NoAirdropAllocation);
        };
        if now_seconds >= terms.airdrop_claim_deadline_seconds {
            return Err(Rejection::AirdropWindowClosed);
        }
        let mut account = self.load(signer);
        account.vvv_units = add_within_supply(account.vvv_units, vvv_units);
        self.airdrop_unclaimed.remove(&signer);
        self.supply.airdrop_unclaimed_units =
            subtract_within_supply(self.supply.airdrop_unclaimed_units, vvv_units);
        self.store(signer, account);
        Ok(Outcome::AirdropClaimed { vvv_units })
    }

    fn burn_unclaimed_airdrop(
        &mut self,
        now_seconds: u64,
        terms: GenesisTerms,
    ) -> Result<Outcome, Rejection> {
        if now_seconds < terms.airdrop_claim_deadline_seconds {
            return Err(Rejection::AirdropWindowOpen);
        }
        let vvv_units = self.supply.airdrop_unclaimed_units;
        if vvv_units == 0 {
            return Err(Rejection::NoUnclaimedAirdrop);
        }
        self.airdrop_unclaimed.clear();
        self.supply.airdrop_unclaimed_units = 0;
        self.supply.burned_unclaimed_airdrop_units =
            add_within_supply(self.supply.burned_unclaimed_airdrop_units, vvv_units);
        Ok(Outcome::UnclaimedAirdropBurned { vvv_units })
    }

    fn claim_vested(
        &mut self,
        now_seconds: u64,
        signer: Address,
        terms: GenesisTerms,
    ) -> Result<Outcome, Rejection> {
        let Some(&grant) = self.vesting_grants.get(&signer) else {
            return Err(Rejection::NoVestingGrant);
        };
        let vvv_units = subtract_within_supply(
            vested_units(&grant, &terms, now_seconds),
            grant.claimed_units,
        );
        if vvv_units == 0 {
            return Err(Rejection::NothingVestedYet);
        }
        let mut account = self.load(signer);
        account.vvv_units = add_within_supply(account.vvv_units, vvv_units);
        self.vesting_grants.insert(
            signer,
            VestingGrant {
                claimed_units: grant.claimed_units + vvv_units,
                ..grant
            },
        );
        self.supply.team_unclaimed_units =
            subtract_within_supply(self.supply.team_unclaimed_units, vvv_units);
        self.store(signer, account);
        Ok(Outcome::VestedClaimed { vvv_units })
    }

    /// Empties a settled account's rewards out of the reward pool.
    fn take_rewards(&mut self, account: &mut Account) -> Result<u128, Rejection> {
        let vvv_units = account.rewards_owed_units;
        if vvv_units == 0 {
            return Err(Rejection::NoRewards);
        }
        account.rewards_owed_units = 0;
        self.supply.rewards_claimed_units =
            add_within_supply(self.supply.rewards_claimed_units, vvv_units);
        Ok(vvv_units)
    }

    fn mint_diem(
        &mut self,
        signer: Address,
        svvv_to_lock_units: u128,
        min_diem_out_units: u128,
    ) -> Result<Outcome, Rejection> {
        require_nonzero(svvv_to_lock_units)?;
        let mut account = self.load(signer);
        if account.staked_svvv_units < svvv_to_lock_units {
            return Err(Rejection::InsufficientStakedVvv);
        }
        let quote = self
            .mint_curve
            .mint_for_budget(self.supply.diem_supply_units, svvv_to_lock_units)
            .ok_or(Rejection::Overflow)?;
        if quote.diem_units == 0 {
            return Err(Rejection::MintsNoDiem);
        }
        if quote.diem_units < min_diem_out_units {
            return Err(Rejection::SlippageExceeded);
        }
        let diem_supply_units = self
            .supply
            .diem_supply_units
            .checked_add(quote.diem_units)
            .ok_or(Rejection::Overflow)?;
        account.staked_svvv_units -= quote.svvv_units;
        account.locked_svvv_units = add_within_supply(account.locked_svvv_units, quote.svvv_units);
        account.diem_units = add_within_supply(account.diem_units, quote.diem_units);
        account.diem_minted_outstanding_units =
            add_within_supply(account.diem_minted_outstanding_units, quote.diem_units);
        self.supply.diem_supply_units = diem_supply_units;
        self.store(signer, account);
        Ok(Outcome::DiemMinted {
            diem_units: quote.diem_units,
            svvv_locked_units: quote.svvv_units,
            mint_rate_after_svvv_units_per_diem: self.mint_curve.rate_at(diem_supply_units),
        })
    }

    fn burn_diem(&mut self, signer: Address, diem_units: u128) -> Result<Outcome, Rejection> {
        require_nonzero(diem_units)?;
        let mut account = self.load(signer);
        if account.diem_units < diem_units {
            return Err(Rejection::InsufficientDiem);
        }
        let outstanding = account.diem_minted_outstanding_units;
        if diem_units > outstanding {
            return Err(Rejection::BurnExceedsMintedDiem);
        }
        // The last burn unlocks everything, so rounding never strands sVVV behind no DIEM.
        let svvv_unlocked_units = if diem_units == outstanding {
            account.locked_svvv_units
        } else {
            match mul_div_floor(account.locked_svvv_units, diem_units, outstanding) {
                Some(share) => share,
                None => panic!("a share of the locked sVVV is at most the locked sVVV"),
            }
        };
        account.diem_units -= diem_units;
        account.diem_minted_outstanding_units -= diem_units;
        account.locked_svvv_units -= svvv_unlocked_units;
        account.staked_svvv_units =
            add_within_supply(account.staked_svvv_units, svvv_unlocked_units);
        self.supply.diem_supply_units =
            subtract_within_supply(self.supply.diem_supply_units, diem_units);
        self.store(signer, account);
        Ok(Outcome::DiemBurned {
            diem_units,
            svvv_unlocked_units,
        })
    }

    fn buyback_and_burn(
        &mut self,
        now_seconds: u64,
        treasury: Address,
        vvv_units: u128,
        revenue_usd_units: u128,
    ) -> Result<Outcome, Rejection> {
        require_nonzero(vvv_units)?;
        let mut account = self.load(treasury);
        account.vvv_units = account
            .vvv_units
            .checked_sub(vvv_units)
            .ok_or(Rejection::InsufficientVvv)?;
        let day = now_seconds / SECONDS_PER_DAY;
        let today = self.buybacks_by_day.get(&day).copied().unwrap_or_default();
        let revenue_total = self
            .supply
            .buyback_revenue_usd_units
            .checked_add(revenue_usd_units)
            .ok_or(Rejection::Overflow)?;
        let today = BuybackDay {
            vvv_burned_units: add_within_supply(today.vvv_burned_units, vvv_units),
            // Bounded by the revenue total just checked.
            revenue_usd_units: today.revenue_usd_units + revenue_usd_units,
        };
        self.buybacks_by_day.insert(day, today);
        self.supply.buyback_revenue_usd_units = revenue_total;
        self.supply.burned_by_buyback_units =
            add_within_supply(self.supply.burned_by_buyback_units, vvv_units);
        self.store(treasury, account);
        Ok(Outcome::BoughtBackAndBurned {
            vvv_units,
            revenue_usd_units,
        })
    }
}

fn require_nonzero(amount_units: u128) -> Result<(), Rejection> {
    if amount_units == 0 {
        Err(Rejection::ZeroAmount)
    } else {
        Ok(())
    }
}

/// The vesting part of a grant that has vested by `now_seconds`: linear from genesis, rounded
/// down, all of it once the vesting period has passed.
pub(crate) fn vested_units(grant: &VestingGrant, terms: &GenesisTerms, now_seconds: u64) -> u128 {
    let elapsed = now_seconds.saturating_sub(terms.genesis_seconds);
    if elapsed >= terms.team_vesting_seconds {
        return grant.vesting_units;
    }
    match mul_div_floor(
        grant.vesting_units,
        u128::from(elapsed),
        u128::from(terms.team_vesting_seconds),
    ) {
        Some(vested) => vested,
        None => panic!("a fraction of a grant is at most the grant"),
    }
}

/// The accounts an operation can change, for the per-account invariant checks.
fn touched_addresses(signer: Address, op: &Op, treasury: Address) -> Vec<Address> {
    let mut touched = vec![signer, treasury];
    match op {
        Op::Transfer { to, .. } => touched.push(*to),
        Op::CreditAccount { account, .. } => touched.push(*account),
        Op::SettleUsage { entries, .. } => {
            touched.extend(entries.iter().map(|charge| charge.account));
        }
        _ => {}
    }
    touched
}

/// Checks a genesis configuration and returns its total supply.
fn validate_genesis(now_seconds: u64, config: &GenesisConfig) -> Result<u128, Rejection> {
    let invalid = Rejection::InvalidGenesis;
    let terms_in_range = config.admin != Address::ZERO
        && config.treasury.address != Address::ZERO
        && u128::from(config.team_unlocked_at_genesis_bps) <= BASIS_POINTS
        && config.team_vesting_seconds <= MAXIMUM_GENESIS_TERM_SECONDS
        && config.airdrop_claim_window_seconds <= MAXIMUM_GENESIS_TERM_SECONDS
        && now_seconds
            .checked_add(MAXIMUM_GENESIS_TERM_SECONDS)
            .is_some()
        && config.emission_rate_vvv_units_per_second <= MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND
        && config.parameters.is_valid();
    if !terms_in_range {
        return Err(invalid);
    }
    for list in [&config.team_grants, &config.airdrop] {
        let mut seen = BTreeSet::new();
        for allocation in list {
            if allocation.vvv_units == 0 || !seen.insert(allocation.address) {
                return Err(invalid);
            }
        }
    }
    let mut total: u128 = 0;
    for allocation in [config.treasury, config.incentive_fund, config.liquidity]
        .iter()
        .chain(&config.team_grants)
        .chain(&config.airdrop)
    {
        total = total.checked_add(allocation.vvv_units).ok_or(invalid)?;
    }
    if total == 0 || total > MAXIMUM_GENESIS_SUPPLY_UNITS {
        return Err(invalid);
    }
    Ok(total)
}
