//! The auditor: a deliberately simple reference model of the economy that the simulation checks
//! the ledger against. It shares no code with the ledger: rewards are handed to every staker on
//! every accrual (O(accounts), no accumulators), arithmetic on wide products is a slow bit-by-bit
//! loop, and where exact agreement would mean copying the ledger's algorithm (the mint bisection,
//! accumulator rounding) it checks bounds that any correct answer must satisfy instead. Usage is
//! kept as a full, never-truncated history per account: the ledger's bounded history must be its
//! latest days, and the ledger's allowance drawn must be the latest day's figure.

use std::collections::BTreeMap;

use ledger::{
    AccountBalances, Address, Asset, CurvePoint, GenesisConfig, Ledger, Op, Outcome, Parameters,
    Rejection, SupplySummary, UsageCharge, UsageDay,
};

const UNITS: u128 = 1_000_000_000_000_000_000;
const BPS: u128 = 10_000;
/// Below one whole staked sVVV nothing is emitted (the ledger's documented floor).
const MINIMUM_STAKE_FOR_EMISSIONS: u128 = UNITS;
const MAXIMUM_EMISSION_RATE: u128 = 10 * UNITS;
const MAXIMUM_COOLDOWN_SECONDS: u64 = 365 * 86_400;
const MAXIMUM_CURVE_SUPPLY_DIEM: u64 = 1_000_000;
const MAXIMUM_RATE: u128 = 1_000_000_000 * UNITS;
/// The documented bounds of a usage settlement and of an account's history.
const MAXIMUM_USAGE_ENTRIES: usize = 4_096;
const USAGE_HISTORY_DAYS: usize = 400;

/// `⌊a · b / d⌋` by shift-and-add multiplication into four 64-bit limbs and bit-by-bit
/// division. Slow and obviously correct; panics if the quotient does not fit in u128.
pub fn slow_mul_div(a: u128, b: u128, d: u128) -> u128 {
    assert!(d != 0, "division by zero in the auditor");
    let mut product = [0u64; 4];
    for bit in (0..128).rev() {
        let mut carry = 0u64;
        for limb in product.iter_mut() {
            let next_carry = *limb >> 63;
            *limb = (*limb << 1) | carry;
            carry = next_carry;
        }
        if (b >> bit) & 1 == 1 {
            let addend = [a as u64, (a >> 64) as u64, 0, 0];
            let mut carry = 0u128;
            for (limb, extra) in product.iter_mut().zip(addend) {
                let sum = u128::from(*limb) + u128::from(extra) + carry;
                *limb = sum as u64;
                carry = sum >> 64;
            }
        }
    }
    let mut remainder: u128 = 0;
    let mut quotient = [0u64; 4];
    for bit in (0..256).rev() {
        let next = u128::from((product[bit / 64] >> (bit % 64)) & 1);
        let top = remainder >> 127;
        let shifted = (remainder << 1) | next;
        if top == 1 || shifted >= d {
            remainder = shifted.wrapping_sub(d);
            quotient[bit / 64] |= 1 << (bit % 64);
        } else {
            remainder = shifted;
        }
    }
    assert!(
        quotient[2] == 0 && quotient[3] == 0,
        "auditor quotient overflow"
    );
    u128::from(quotient[0]) | (u128::from(quotient[1]) << 64)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedAccount {
    pub vvv: u128,
    pub staked: u128,
    pub cooling: u128,
    pub cooling_unlock: u64,
    pub locked: u128,
    pub minted_outstanding: u128,
    pub diem: u128,
    pub staked_diem: u128,
    pub cooling_diem: u128,
    pub diem_unlock: u64,
    pub usd: u128,
    pub bundled: u128,
    /// Rewards as the auditor distributes them (exact per accrual, then floored).
    pub rewards: i128,
    /// How far the ledger's accumulators may legitimately differ from `rewards`.
    pub reward_slack: u128,
    /// Operations this address signed that were accepted.
    pub nonce: u64,
}

#[derive(Clone, Debug)]
pub struct Auditor {
    admin: Address,
    treasury: Address,
    genesis: u64,
    now: u64,
    accounts: BTreeMap<Address, ExpectedAccount>,
    airdrop: BTreeMap<Address, u128>,
    airdrop_deadline: u64,
    team: BTreeMap<Address, (u128, u128)>,
    team_vesting_seconds: u64,
    emission_rate: u128,
    utilization_bps: u32,
    parameters: Parameters,
    curve: Vec<CurvePoint>,
    genesis_supply: u128,
    emitted_to_stakers: u128,
    emitted_to_company: u128,
    rewards_claimed: u128,
    burned: u128,
    revenue: u128,
    diem_supply: u128,
    credited_usd: u128,
    credited_bundled: u128,
    /// Every usage day ever settled, per account, never truncated.
    usage: BTreeMap<Address, BTreeMap<u64, UsageDay>>,
    usage_allowance: u128,
    usage_bundled: u128,
    usage_usd: u128,
    accepted: u64,
}

enum Verdict {
    Reject(Rejection),
    Accept(Option<Outcome>),
}

impl Auditor {
    pub fn from_genesis(now: u64, config: &GenesisConfig) -> Self {
        let mut auditor = Self {
            admin: config.admin,
            treasury: config.treasury.address,
            genesis: now,
            now,
            accounts: BTreeMap::new(),
            airdrop: config
                .airdrop
                .iter()
                .map(|a| (a.address, a.vvv_units))
                .collect(),
            airdrop_deadline: now + config.airdrop_claim_window_seconds,
            team: BTreeMap::new(),
            team_vesting_seconds: config.team_vesting_seconds,
            emission_rate: config.emission_rate_vvv_units_per_second,
            utilization_bps: 0,
            parameters: config.parameters.clone(),
            curve: config.mint_curve_points.clone(),
            genesis_supply: 0,
            emitted_to_stakers: 0,
            emitted_to_company: 0,
            rewards_claimed: 0,
            burned: 0,
            revenue: 0,
            diem_supply: 0,
            credited_usd: 0,
            credited_bundled: 0,
            usage: BTreeMap::new(),
            usage_allowance: 0,
            usage_bundled: 0,
            usage_usd: 0,
            accepted: 1,
        };
        auditor.account(config.admin).nonce = 1;
        for allocation in [config.treasury, config.incentive_fund, config.liquidity] {
            auditor.account(allocation.address).vvv += allocation.vvv_units;
            auditor.genesis_supply += allocation.vvv_units;
        }
        for grant in &config.team_grants {
            let unlocked = grant.vvv_units * u128::from(config.team_unlocked_at_genesis_bps) / BPS;
            auditor.account(grant.address).vvv += unlocked;
            auditor
                .team
                .insert(grant.address, (grant.vvv_units - unlocked, 0));
            auditor.genesis_supply += grant.vvv_units;
        }
        auditor.genesis_supply += config.airdrop.iter().map(|a| a.vvv_units).sum::<u128>();
        auditor
    }

    fn account(&mut self, address: Address) -> &mut ExpectedAccount {
        self.accounts.entry(address).or_default()
    }

    fn get(&self, address: Address) -> ExpectedAccount {
        self.accounts.get(&address).cloned().unwrap_or_default()
    }

    /// The company's share at the current utilization, by linear interpolation, rounded down.
    fn company_bps(&self) -> u128 {
        let points = &self.parameters.utilization_split.points;
        let u = self.utilization_bps;
        for pair in points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if u <= b.utilization_bps {
                let (u0, u1) = (u128::from(a.utilization_bps), u128::from(b.utilization_bps));
                let (s0, s1) = (
                    u128::from(a.company_share_bps),
                    u128::from(b.company_share_bps),
                );
                let u = u128::from(u);
                return (s0 * (u1 - u) + s1 * (u - u0)) / (u1 - u0);
            }
        }
        u128::from(points.last().expect("points").company_share_bps)
    }

    /// Emissions for the time since the last accepted operation, handed out account by account.
    fn accrue(&mut self, now: u64) {
        let elapsed = now - self.now;
        self.now = now;
        let unlocked: u128 = self.accounts.values().map(|a| a.staked).sum();
        let locked: u128 = self.accounts.values().map(|a| a.locked).sum();
        let stake = unlocked + locked;
        if stake < MINIMUM_STAKE_FOR_EMISSIONS || self.emission_rate == 0 || elapsed == 0 {
            return;
        }
        let gross = self.emission_rate * u128::from(elapsed);
        let gross_unlocked = slow_mul_div(gross, unlocked, stake);
        let gross_locked = gross - gross_unlocked;
        let company = self.company_bps();
        let to_unlocked = slow_mul_div(gross_unlocked, BPS - company, BPS);
        let to_locked = slow_mul_div(
            gross_locked,
            (BPS - company) * u128::from(self.parameters.locked_yield_bps),
            BPS * BPS,
        );
        for account in self.accounts.values_mut() {
            let mut earned = 0;
            if account.staked > 0 {
                earned += slow_mul_div(to_unlocked, account.staked, unlocked);
            }
            if account.locked > 0 {
                earned += slow_mul_div(to_locked, account.locked, locked);
            }
            if account.staked > 0 || account.locked > 0 {
                account.rewards += i128::try_from(earned).expect("fits");
                account.reward_slack += 2 * ((account.staked + account.locked) / UNITS) + 6;
            }
        }
        self.emitted_to_stakers += to_unlocked + to_locked;
        let to_company = gross - to_unlocked - to_locked;
        self.emitted_to_company += to_company;
        let treasury = self.treasury;
        self.account(treasury).vvv += to_company;
    }

    fn rate_at(&self, supply: u128) -> u128 {
        let index = self
            .curve
            .iter()
            .rposition(|p| u128::from(p.supply_diem) * UNITS <= supply)
            .expect("first point at zero");
        let start = self.curve[index];
        match self.curve.get(index + 1) {
            None => start.rate_svvv_units_per_diem,
            Some(end) => {
                let width = u128::from(end.supply_diem - start.supply_diem) * UNITS;
                let rise = end.rate_svvv_units_per_diem - start.rate_svvv_units_per_diem;
                start.rate_svvv_units_per_diem
                    + slow_mul_div(rise, supply - u128::from(start.supply_diem) * UNITS, width)
            }
        }
    }

    fn curve_is_valid(points: &[CurvePoint]) -> bool {
        points.len() == 256
            && points[0].supply_diem == 0
            && points[0].rate_svvv_units_per_diem > 0
            && points.iter().all(|p| {
                p.supply_diem <= MAXIMUM_CURVE_SUPPLY_DIEM
                    && p.rate_svvv_units_per_diem <= MAXIMUM_RATE
            })
            && points.windows(2).all(|w| {
                w[0].supply_diem < w[1].supply_diem
                    && w[0].rate_svvv_units_per_diem <= w[1].rate_svvv_units_per_diem
            })
    }

    fn parameters_are_valid(parameters: &Parameters) -> bool {
        let points = &parameters.utilization_split.points;
        parameters.unstake_cooldown_seconds <= MAXIMUM_COOLDOWN_SECONDS
            && parameters.diem_unstake_cooldown_seconds <= MAXIMUM_COOLDOWN_SECONDS
            && parameters.locked_yield_bps <= 10_000
            && parameters.minimum_spendable_staked_diem_units <= 1_000 * UNITS
            && (2..=16).contains(&points.len())
            && points.first().is_some_and(|p| p.utilization_bps == 0)
            && points.last().is_some_and(|p| p.utilization_bps == 10_000)
            && points.iter().all(|p| p.company_share_bps <= 10_000)
            && points
                .windows(2)
                .all(|w| w[0].utilization_bps < w[1].utilization_bps)
    }

    fn vested(&self, vesting: u128, now: u64) -> u128 {
        let elapsed = now - self.genesis;
        if elapsed >= self.team_vesting_seconds {
            vesting
        } else {
            vesting * u128::from(elapsed) / u128::from(self.team_vesting_seconds)
        }
    }

    /// Checks the ledger's answer to one operation against the model, and takes the operation
    /// into the model if it was accepted. Panics, naming the disagreement, if they differ.
    pub fn check(
        &mut self,
        now: u64,
        signer: Address,
        op: &Op,
        actual: &Result<Outcome, Rejection>,
    ) {
        let early = if matches!(op, Op::Genesis(_)) {
            Some(Rejection::AlreadyInitialized)
        } else if now < self.now {
            Some(Rejection::TimeWentBackwards)
        } else if op.requires_admin() && signer != self.admin {
            Some(Rejection::NotAdmin)
        } else {
            None
        };
        if let Some(rejection) = early {
            assert_eq!(actual, &Err(rejection), "{op:?}");
            return;
        }
        let mut next = self.clone();
        next.accrue(now);
        match next.execute(now, signer, op, actual) {
            Verdict::Reject(rejection) => assert_eq!(actual, &Err(rejection), "{op:?} by {signer}"),
            Verdict::Accept(expected) => {
                let outcome = actual
                    .as_ref()
                    .unwrap_or_else(|r| panic!("{op:?} by {signer}: expected acceptance, got {r}"));
                if let Some(expected) = expected {
                    assert_eq!(outcome, &expected, "{op:?} by {signer}");
                }
                next.account(signer).nonce += 1;
                next.accepted += 1;
                *self = next;
            }
        }
    }

    fn execute(
        &mut self,
        now: u64,
        signer: Address,
        op: &Op,
        actual: &Result<Outcome, Rejection>,
    ) -> Verdict {
        use Verdict::{Accept, Reject};
        let me = self.get(signer);
        match op.clone() {
            Op::Genesis(_) => Reject(Rejection::AlreadyInitialized),
            Op::Transfer {
                asset,
                to,
                amount_units,
            } => {
                if amount_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if to == signer {
                    return Reject(Rejection::SelfTransfer);
                }
                match asset {
                    Asset::Vvv if me.vvv < amount_units => Reject(Rejection::InsufficientVvv),
                    Asset::Diem if me.diem < amount_units => Reject(Rejection::InsufficientDiem),
                    Asset::Vvv => {
                        self.account(signer).vvv -= amount_units;
                        self.account(to).vvv += amount_units;
                        Accept(Some(Outcome::Transferred {
                            asset,
                            amount_units,
                        }))
                    }
                    Asset::Diem => {
                        self.account(signer).diem -= amount_units;
                        self.account(to).diem += amount_units;
                        Accept(Some(Outcome::Transferred {
                            asset,
                            amount_units,
                        }))
                    }
                }
            }
            Op::ClaimAirdrop => {
                let Some(&amount) = self.airdrop.get(&signer) else {
                    return Reject(Rejection::NoAirdropAllocation);
                };
                if now >= self.airdrop_deadline {
                    return Reject(Rejection::AirdropWindowClosed);
                }
                self.airdrop.remove(&signer);
                self.account(signer).vvv += amount;
                Accept(Some(Outcome::AirdropClaimed { vvv_units: amount }))
            }
            Op::BurnUnclaimedAirdrop => {
                if now < self.airdrop_deadline {
                    return Reject(Rejection::AirdropWindowOpen);
                }
                let amount: u128 = self.airdrop.values().sum();
                if amount == 0 {
                    return Reject(Rejection::NoUnclaimedAirdrop);
                }
                self.airdrop.clear();
                self.burned += amount;
                Accept(Some(Outcome::UnclaimedAirdropBurned { vvv_units: amount }))
            }
            Op::ClaimVested => {
                let Some(&(vesting, claimed)) = self.team.get(&signer) else {
                    return Reject(Rejection::NoVestingGrant);
                };
                let claimable = self.vested(vesting, now) - claimed;
                if claimable == 0 {
                    return Reject(Rejection::NothingVestedYet);
                }
                self.team.insert(signer, (vesting, claimed + claimable));
                self.account(signer).vvv += claimable;
                Accept(Some(Outcome::VestedClaimed {
                    vvv_units: claimable,
                }))
            }
            Op::Stake { vvv_units } => {
                if vvv_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if me.vvv < vvv_units {
                    return Reject(Rejection::InsufficientVvv);
                }
                let account = self.account(signer);
                account.vvv -= vvv_units;
                account.staked += vvv_units;
                Accept(Some(Outcome::Staked {
                    svvv_units: vvv_units,
                }))
            }
            Op::InitiateUnstake { svvv_units } => {
                if svvv_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if me.staked < svvv_units {
                    return Reject(Rejection::InsufficientStakedVvv);
                }
                let unlock = now + self.parameters.unstake_cooldown_seconds;
                let account = self.account(signer);
                account.staked -= svvv_units;
                account.cooling += svvv_units;
                account.cooling_unlock = unlock;
                let cooling = account.cooling;
                Accept(Some(Outcome::UnstakeInitiated {
                    cooling_svvv_units: cooling,
                    unlock_at_seconds: unlock,
                }))
            }
            Op::FinalizeUnstake => {
                if me.cooling == 0 {
                    return Reject(Rejection::NothingCoolingDown);
                }
                if now < me.cooling_unlock {
                    return Reject(Rejection::CooldownNotElapsed);
                }
                let account = self.account(signer);
                account.vvv += account.cooling;
                account.cooling = 0;
                account.cooling_unlock = 0;
                Accept(Some(Outcome::UnstakeFinalized {
                    vvv_units: me.cooling,
                }))
            }
            Op::ClaimRewards | Op::ClaimAndStakeRewards => {
                let stake = matches!(op, Op::ClaimAndStakeRewards);
                let slack = i128::try_from(me.reward_slack).expect("fits");
                let paid = match actual {
                    Ok(Outcome::RewardsClaimed { vvv_units }) if !stake => *vvv_units,
                    Ok(Outcome::RewardsStaked { svvv_units }) if stake => *svvv_units,
                    Err(Rejection::NoRewards) => {
                        assert!(
                            me.rewards <= slack,
                            "NoRewards while {} are expected (slack {slack})",
                            me.rewards
                        );
                        return Reject(Rejection::NoRewards);
                    }
                    other => panic!("{op:?}: unexpected {other:?}"),
                };
                let paid_signed = i128::try_from(paid).expect("fits");
                assert!(
                    (paid_signed - me.rewards).abs() <= slack,
                    "paid {paid}, expected {} ± {slack}",
                    me.rewards
                );
                self.rewards_claimed += paid;
                let account = self.account(signer);
                account.rewards -= paid_signed;
                if stake {
                    account.staked += paid;
                } else {
                    account.vvv += paid;
                }
                Accept(None)
            }
            Op::MintDiem {
                svvv_to_lock_units: budget,
                min_diem_out_units: min_out,
            } => {
                if budget == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if me.staked < budget {
                    return Reject(Rejection::InsufficientStakedVvv);
                }
                let supply = self.diem_supply;
                let rate_now = self.rate_at(supply);
                // Cost of d DIEM is at least d · rate_now / w − 1, so more than this is never affordable.
                let most = slow_mul_div(budget + 1, UNITS, rate_now) + 1;
                match actual {
                    Ok(Outcome::DiemMinted {
                        diem_units: d,
                        svvv_locked_units: cost,
                        mint_rate_after_svvv_units_per_diem: rate_after,
                    }) => {
                        let (d, cost) = (*d, *cost);
                        assert!(
                            d >= 1 && d >= min_out && d <= most,
                            "minted {d}, at most {most}, min {min_out}"
                        );
                        assert!(cost <= budget, "locked {cost} of a {budget} budget");
                        let rate_end = self.rate_at(supply + d);
                        let low = slow_mul_div(d, rate_now, UNITS).saturating_sub(1);
                        let high = slow_mul_div(d, rate_end, UNITS) + 2;
                        assert!(
                            low <= cost && cost <= high,
                            "cost {cost} outside [{low}, {high}] for {d}"
                        );
                        let next_unit = slow_mul_div(1, self.rate_at(supply + d + 1), UNITS) + 2;
                        assert!(
                            budget - cost < next_unit,
                            "one more unit was affordable: {budget} − {cost} ≥ {next_unit}"
                        );
                        assert_eq!(*rate_after, rate_end, "rate after the mint");
                        let account = self.account(signer);
                        account.staked -= cost;
                        account.locked += cost;
                        account.diem += d;
                        account.minted_outstanding += d;
                        self.diem_supply += d;
                        Accept(None)
                    }
                    Err(Rejection::MintsNoDiem) => {
                        let one_unit = slow_mul_div(1, self.rate_at(supply + 1), UNITS) + 1;
                        assert!(
                            budget <= one_unit,
                            "{budget} buys no DIEM at rate {rate_now}?"
                        );
                        Reject(Rejection::MintsNoDiem)
                    }
                    Err(Rejection::SlippageExceeded) => {
                        let rate_high = self.rate_at(supply + most);
                        let surely_affordable =
                            slow_mul_div(budget.saturating_sub(2), UNITS, rate_high);
                        assert!(
                            min_out > surely_affordable,
                            "slippage refused though {surely_affordable} ≥ {min_out} was affordable"
                        );
                        Reject(Rejection::SlippageExceeded)
                    }
                    other => panic!("mint: unexpected {other:?}"),
                }
            }
            Op::BurnDiem { diem_units } => {
                if diem_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if me.diem < diem_units {
                    return Reject(Rejection::InsufficientDiem);
                }
                if diem_units > me.minted_outstanding {
                    return Reject(Rejection::BurnExceedsMintedDiem);
                }
                let unlocked = if diem_units == me.minted_outstanding {
                    me.locked
                } else {
                    slow_mul_div(me.locked, diem_units, me.minted_outstanding)
                };
                let account = self.account(signer);
                account.diem -= diem_units;
                account.minted_outstanding -= diem_units;
                account.locked -= unlocked;
                account.staked += unlocked;
                self.diem_supply -= diem_units;
                Accept(Some(Outcome::DiemBurned {
                    diem_units,
                    svvv_unlocked_units: unlocked,
                }))
            }
            Op::StakeDiem { diem_units } => {
                if diem_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if me.diem < diem_units {
                    return Reject(Rejection::InsufficientDiem);
                }
                let account = self.account(signer);
                account.diem -= diem_units;
                account.staked_diem += diem_units;
                Accept(Some(Outcome::DiemStaked { diem_units }))
            }
            Op::InitiateDiemUnstake { diem_units } => {
                if diem_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if me.staked_diem < diem_units {
                    return Reject(Rejection::InsufficientStakedDiem);
                }
                let unlock = now + self.parameters.diem_unstake_cooldown_seconds;
                let account = self.account(signer);
                account.staked_diem -= diem_units;
                account.cooling_diem += diem_units;
                account.diem_unlock = unlock;
                let cooling = account.cooling_diem;
                Accept(Some(Outcome::DiemUnstakeInitiated {
                    cooling_diem_units: cooling,
                    unlock_at_seconds: unlock,
                }))
            }
            Op::FinalizeDiemUnstake => {
                if me.cooling_diem == 0 {
                    return Reject(Rejection::NoDiemCoolingDown);
                }
                if now < me.diem_unlock {
                    return Reject(Rejection::DiemCooldownNotElapsed);
                }
                let account = self.account(signer);
                account.diem += account.cooling_diem;
                account.cooling_diem = 0;
                account.diem_unlock = 0;
                Accept(Some(Outcome::DiemUnstakeFinalized {
                    diem_units: me.cooling_diem,
                }))
            }
            Op::SetEmissionRate {
                vvv_units_per_second,
            } => {
                if vvv_units_per_second > MAXIMUM_EMISSION_RATE {
                    return Reject(Rejection::EmissionRateTooHigh);
                }
                self.emission_rate = vvv_units_per_second;
                Accept(Some(Outcome::EmissionRateSet {
                    vvv_units_per_second,
                }))
            }
            Op::SetMintCurve { points } => {
                if !Self::curve_is_valid(&points) {
                    return Reject(Rejection::InvalidMintCurve);
                }
                self.curve = points;
                Accept(Some(Outcome::MintCurveSet))
            }
            Op::SetParameters(parameters) => {
                if !Self::parameters_are_valid(&parameters) {
                    return Reject(Rejection::InvalidParameters);
                }
                self.parameters = *parameters;
                Accept(Some(Outcome::ParametersSet))
            }
            Op::ReportUtilization { utilization_bps } => {
                if utilization_bps > 10_000 {
                    return Reject(Rejection::UtilizationOutOfRange);
                }
                self.utilization_bps = utilization_bps;
                let company_share_bps = u32::try_from(self.company_bps()).expect("fits");
                Accept(Some(Outcome::UtilizationReported {
                    utilization_bps,
                    company_share_bps,
                }))
            }
            Op::BuybackAndBurn {
                vvv_units,
                revenue_usd_units,
            } => {
                if vvv_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                if self.get(self.treasury).vvv < vvv_units {
                    return Reject(Rejection::InsufficientVvv);
                }
                let Some(revenue) = self.revenue.checked_add(revenue_usd_units) else {
                    return Reject(Rejection::Overflow);
                };
                self.revenue = revenue;
                let treasury = self.treasury;
                self.account(treasury).vvv -= vvv_units;
                self.burned += vvv_units;
                Accept(Some(Outcome::BoughtBackAndBurned {
                    vvv_units,
                    revenue_usd_units,
                }))
            }
            Op::CreditAccount {
                account,
                usd_units,
                bundled_credit_units,
            } => {
                if usd_units == 0 && bundled_credit_units == 0 {
                    return Reject(Rejection::ZeroAmount);
                }
                let target = self.get(account);
                let fits = target.usd.checked_add(usd_units).is_some()
                    && target.bundled.checked_add(bundled_credit_units).is_some()
                    && self.credited_usd.checked_add(usd_units).is_some()
                    && self
                        .credited_bundled
                        .checked_add(bundled_credit_units)
                        .is_some();
                if !fits {
                    return Reject(Rejection::Overflow);
                }
                self.credited_usd += usd_units;
                self.credited_bundled += bundled_credit_units;
                let target = self.account(account);
                target.usd += usd_units;
                target.bundled += bundled_credit_units;
                Accept(Some(Outcome::AccountCredited {
                    usd_units,
                    bundled_credit_units,
                }))
            }
            Op::SettleUsage { day, entries } => self.settle_usage(now, day, &entries),
        }
    }

    fn settle_usage(&mut self, now: u64, day: u64, entries: &[UsageCharge]) -> Verdict {
        use Verdict::{Accept, Reject};
        if day > now / 86_400 {
            return Reject(Rejection::UsageDayInFuture);
        }
        if entries.is_empty() {
            return Reject(Rejection::EmptyUsageSettlement);
        }
        if entries.len() > MAXIMUM_USAGE_ENTRIES {
            return Reject(Rejection::TooManyUsageEntries);
        }
        let mut named: Vec<Address> = entries.iter().map(|entry| entry.account).collect();
        named.sort();
        if named.windows(2).any(|pair| pair[0] == pair[1]) {
            return Reject(Rejection::DuplicateUsageAccount);
        }
        let records_nothing = |entry: &UsageCharge| {
            entry.requests == 0
                && entry.prompt_tokens == 0
                && entry.completion_tokens == 0
                && entry.allowance_units == 0
                && entry.bundled_credit_units == 0
                && entry.usd_units == 0
        };
        if entries.iter().any(records_nothing) {
            return Reject(Rejection::ZeroAmount);
        }
        for entry in entries {
            let held = self.get(entry.account);
            if held.bundled < entry.bundled_credit_units || held.usd < entry.usd_units {
                return Reject(Rejection::InsufficientCredit);
            }
        }
        let mut days_after = Vec::new();
        for entry in entries {
            let before = self
                .usage
                .get(&entry.account)
                .and_then(|days| days.get(&day))
                .copied()
                .unwrap_or_default();
            let after = (|| {
                Some(UsageDay {
                    requests: before.requests.checked_add(entry.requests)?,
                    prompt_tokens: before.prompt_tokens.checked_add(entry.prompt_tokens)?,
                    completion_tokens: before
                        .completion_tokens
                        .checked_add(entry.completion_tokens)?,
                    allowance_units: before.allowance_units.checked_add(entry.allowance_units)?,
                    bundled_credit_units: before
                        .bundled_credit_units
                        .checked_add(entry.bundled_credit_units)?,
                    usd_units: before.usd_units.checked_add(entry.usd_units)?,
                })
            })();
            let Some(after) = after else {
                return Reject(Rejection::Overflow);
            };
            days_after.push(after);
        }
        let revenue_after = entries.iter().try_fold(
            self.usage_allowance + self.usage_bundled + self.usage_usd,
            |sum, entry| {
                sum.checked_add(entry.allowance_units)?
                    .checked_add(entry.bundled_credit_units)?
                    .checked_add(entry.usd_units)
            },
        );
        if revenue_after.is_none() {
            return Reject(Rejection::Overflow);
        }
        let (mut allowance, mut bundled, mut usd) = (0u128, 0u128, 0u128);
        for (entry, after) in entries.iter().zip(days_after) {
            let account = self.account(entry.account);
            account.bundled -= entry.bundled_credit_units;
            account.usd -= entry.usd_units;
            self.usage
                .entry(entry.account)
                .or_default()
                .insert(day, after);
            allowance += entry.allowance_units;
            bundled += entry.bundled_credit_units;
            usd += entry.usd_units;
        }
        self.usage_allowance += allowance;
        self.usage_bundled += bundled;
        self.usage_usd += usd;
        Accept(Some(Outcome::UsageSettled {
            entries: u32::try_from(entries.len()).expect("bounded"),
            usd_units: usd,
            bundled_credit_units: bundled,
            allowance_units: allowance,
        }))
    }

    /// The ledger keeps the latest [`USAGE_HISTORY_DAYS`] days of the full history, and the
    /// allowance drawn on the latest day only.
    fn compare_usage(&self, ledger: &Ledger, address: Address) {
        let full = self.usage.get(&address);
        let expected: Vec<(u64, UsageDay)> = full.map_or_else(Vec::new, |days| {
            let skip = days.len().saturating_sub(USAGE_HISTORY_DAYS);
            days.iter()
                .skip(skip)
                .map(|(day, usage)| (*day, *usage))
                .collect()
        });
        let actual: Vec<(u64, UsageDay)> = ledger
            .usage_history(address)
            .map(|(day, usage)| (day, *usage))
            .collect();
        assert_eq!(actual, expected, "{address}: usage history");
        let latest = full.and_then(|days| days.last_key_value());
        assert_eq!(
            ledger.last_usage_day(address),
            latest.map(|(day, _)| *day),
            "{address}: last usage day"
        );
        let Some((&latest_day, latest_usage)) = latest else {
            return;
        };
        assert_eq!(
            ledger.allowance_spent_units(address, latest_day),
            latest_usage.allowance_units,
            "{address}: allowance drawn on the latest day"
        );
        // The earliest day and the one before the latest, if any: not the latest, so nothing.
        let earlier = full.into_iter().flat_map(|days| {
            days.keys()
                .next()
                .into_iter()
                .chain(days.keys().rev().nth(1))
        });
        for &day in earlier.filter(|day| **day != latest_day) {
            assert_eq!(
                ledger.allowance_spent_units(address, day),
                0,
                "{address}: allowance drawn on an earlier day {day}"
            );
        }
        assert_eq!(
            ledger.allowance_spent_units(address, latest_day + 1),
            0,
            "{address}: allowance drawn on a later day"
        );
    }

    /// Compares every account and the supply with the ledger's queries.
    pub fn compare(&self, ledger: &Ledger) {
        let mut addresses: Vec<Address> = self.accounts.keys().copied().collect();
        addresses.extend(ledger.account_addresses());
        addresses.sort();
        addresses.dedup();
        for address in addresses {
            let expected = self.get(address);
            let actual: AccountBalances = ledger.balances(address, self.now);
            let pairs = [
                ("vvv", expected.vvv, actual.vvv_units),
                ("staked", expected.staked, actual.staked_svvv_units),
                ("cooling", expected.cooling, actual.cooling_svvv_units),
                ("locked", expected.locked, actual.locked_svvv_units),
                (
                    "minted outstanding",
                    expected.minted_outstanding,
                    actual.diem_minted_outstanding_units,
                ),
                ("diem", expected.diem, actual.diem_units),
                (
                    "staked diem",
                    expected.staked_diem,
                    actual.staked_diem_units,
                ),
                (
                    "cooling diem",
                    expected.cooling_diem,
                    actual.cooling_diem_units,
                ),
                ("usd", expected.usd, actual.usd_credit_units),
                ("bundled", expected.bundled, actual.bundled_credit_units),
            ];
            assert_eq!(actual.nonce, expected.nonce, "{address}: nonce");
            assert_eq!(
                ledger.next_nonce(address),
                expected.nonce,
                "{address}: next nonce"
            );
            self.compare_usage(ledger, address);
            for (name, expected_units, actual_units) in pairs {
                assert_eq!(actual_units, expected_units, "{address}: {name}");
            }
            let time = |t: u64| (t != 0).then_some(t);
            assert_eq!(
                actual.svvv_unlock_at_seconds,
                time(expected.cooling_unlock),
                "{address}: unlock"
            );
            assert_eq!(
                actual.diem_unlock_at_seconds,
                time(expected.diem_unlock),
                "{address}: diem unlock"
            );
            let pending = i128::try_from(actual.pending_rewards_units).expect("fits");
            let slack = i128::try_from(expected.reward_slack).expect("fits");
            assert!(
                (pending - expected.rewards).abs() <= slack,
                "{address}: pending rewards {pending}, auditor {} ± {slack}",
                expected.rewards
            );
            let allowance =
                if expected.staked_diem >= self.parameters.minimum_spendable_staked_diem_units {
                    expected.staked_diem
                } else {
                    0
                };
            assert_eq!(
                ledger.diem_allowance_usd_units_per_day(address),
                allowance,
                "{address}: allowance"
            );
            if let Some(&(vesting, claimed)) = self.team.get(&address) {
                assert_eq!(
                    actual.vesting_claimable_units,
                    self.vested(vesting, self.now) - claimed,
                    "{address}: vesting"
                );
            }
        }
        let supply: SupplySummary = ledger.supply();
        let minted = self.genesis_supply + self.emitted_to_stakers + self.emitted_to_company;
        assert_eq!(supply.genesis_vvv_units, self.genesis_supply);
        assert_eq!(
            supply.emitted_to_stakers_vvv_units, self.emitted_to_stakers,
            "emitted to stakers"
        );
        assert_eq!(
            supply.emitted_to_company_vvv_units, self.emitted_to_company,
            "emitted to company"
        );
        assert_eq!(supply.burned_vvv_units, self.burned, "burned");
        assert_eq!(supply.total_vvv_units, minted - self.burned, "total supply");
        assert_eq!(
            supply.rewards_claimed_vvv_units, self.rewards_claimed,
            "rewards claimed"
        );
        assert_eq!(
            supply.unclaimed_airdrop_vvv_units,
            self.airdrop.values().sum::<u128>(),
            "unclaimed airdrop"
        );
        assert_eq!(supply.diem_supply_units, self.diem_supply, "DIEM supply");
        assert_eq!(supply.buyback_revenue_usd_units, self.revenue, "revenue");
        assert_eq!(
            (
                supply.usage_allowance_units,
                supply.usage_bundled_credit_units,
                supply.usage_usd_units,
                supply.usage_revenue_usd_units,
            ),
            (
                self.usage_allowance,
                self.usage_bundled,
                self.usage_usd,
                self.usage_allowance + self.usage_bundled + self.usage_usd,
            ),
            "usage totals"
        );
        assert_eq!(
            supply.usd_credit_units + supply.usage_usd_units,
            self.credited_usd,
            "USD credits are held or spent"
        );
        assert_eq!(
            supply.bundled_credit_units + supply.usage_bundled_credit_units,
            self.credited_bundled,
            "bundled credits are held or spent"
        );
        assert_eq!(
            ledger.operations_accepted(),
            self.accepted,
            "operations accepted"
        );
        assert_eq!(
            self.accounts.values().map(|a| a.nonce).sum::<u64>(),
            self.accepted,
            "auditor nonces"
        );
        assert_eq!(
            ledger.mint_rate_svvv_units_per_diem(),
            self.rate_at(self.diem_supply),
            "mint rate"
        );
        // Independent conservation: everything the auditor holds adds up to what it minted.
        let held: u128 = self
            .accounts
            .values()
            .map(|a| a.vvv + a.staked + a.cooling + a.locked)
            .sum::<u128>()
            + self.airdrop.values().sum::<u128>()
            + self
                .team
                .values()
                .map(|(vesting, claimed)| vesting - claimed)
                .sum::<u128>()
            + (self.emitted_to_stakers - self.rewards_claimed);
        assert_eq!(held, minted - self.burned, "auditor conservation");
        let diem_held: u128 = self
            .accounts
            .values()
            .map(|a| a.diem + a.staked_diem + a.cooling_diem)
            .sum();
        assert_eq!(diem_held, self.diem_supply, "auditor DIEM conservation");
    }
}
