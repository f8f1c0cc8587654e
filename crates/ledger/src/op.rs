//! The ledger's inputs and outputs: every operation (`Op`), the genesis configuration with the
//! seed's allocations, and what an accepted operation did (`Outcome`). Plain data: no checks and
//! no encoding here, and these types must not become a wire or disk format by derivation.

use crate::address::Address;
use crate::curve::{CurvePoint, MintCurve};
use crate::params::Parameters;
use crate::{SECONDS_PER_DAY, SECONDS_PER_YEAR, UNITS_PER_TOKEN};

/// A transferable asset. sVVV is not transferable; it is staked VVV bound to its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Asset {
    Vvv,
    Diem,
}

/// An amount of VVV granted to one address at genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub address: Address,
    pub vvv_units: u128,
}

/// What one account's API usage cost on the day of an [`Op::SettleUsage`], as the gateway
/// metered and priced it. Amounts are USD base units (10^-18 of a dollar).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageCharge {
    pub account: Address,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Drawn from the day's allowance (DIEM + staking capacity share), USD base units.
    pub allowance_units: u128,
    /// Debited from the account's bundled credits.
    pub bundled_credit_units: u128,
    /// Debited from the account's USD credit balance.
    pub usd_units: u128,
}

/// Genesis supply of the seed: 100,000,000 VVV.
pub const VENICE_GENESIS_SUPPLY_VVV: u128 = 100_000_000;
/// User airdrop (25M) plus AI-community airdrop (25M) [seed].
pub const VENICE_AIRDROP_VVV: u128 = 50_000_000;
/// The company's allocation [seed, V]: 35%.
pub const VENICE_COMPANY_VVV: u128 = 35_000_000;
/// The team's grant [seed]. The seed lists it beside the company's 35M, but 50 + 35 + 10 + 10 +
/// 5 is 110M, not the stated 100M; Venice's own split is 50 / 35 / 10 / 5, so the team's 10M is
/// read as part of the company's 35M [INF].
pub const VENICE_TEAM_VVV: u128 = 10_000_000;
/// The company's allocation less the team grant.
pub const VENICE_TREASURY_VVV: u128 = VENICE_COMPANY_VVV - VENICE_TEAM_VVV;
pub const VENICE_INCENTIVE_FUND_VVV: u128 = 10_000_000;
pub const VENICE_LIQUIDITY_VVV: u128 = 5_000_000;
const _: () = assert!(
    VENICE_AIRDROP_VVV
        + VENICE_TREASURY_VVV
        + VENICE_TEAM_VVV
        + VENICE_INCENTIVE_FUND_VVV
        + VENICE_LIQUIDITY_VVV
        == VENICE_GENESIS_SUPPLY_VVV
);
/// 25% of the team's allocation is unlocked at genesis [seed].
pub const VENICE_TEAM_UNLOCKED_AT_GENESIS_BPS: u32 = 2_500;
/// The other 75% vests linearly over 24 months [seed], taken as 730 days.
pub const VENICE_TEAM_VESTING_SECONDS: u64 = 730 * SECONDS_PER_DAY;
/// The claim window is not published; the unclaimed rest was burned about six weeks after
/// launch (Jan 27 → March 2025) [seed], so 45 days [INF].
pub const VENICE_AIRDROP_CLAIM_WINDOW_SECONDS: u64 = 45 * SECONDS_PER_DAY;
/// Emissions at launch: 14M VVV a year [seed].
pub const VENICE_LAUNCH_EMISSIONS_VVV_PER_YEAR: u128 = 14_000_000;

/// The rate in base units per second that emits `vvv_per_year` whole VVV over a 365-day year,
/// rounded down.
pub const fn emission_rate_for_vvv_per_year(vvv_per_year: u128) -> u128 {
    vvv_per_year * UNITS_PER_TOKEN / SECONDS_PER_YEAR as u128
}

/// Everything genesis sets. Amounts are in base units; the seed's numbers are in
/// [`GenesisConfig::venice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisConfig {
    /// The operator key: the only signer of admin operations, and the signer of genesis.
    pub admin: Address,
    /// The company's account; it also receives the company's share of emissions and is the
    /// account buy-back-and-burn burns from.
    pub treasury: Allocation,
    pub incentive_fund: Allocation,
    pub liquidity: Allocation,
    /// Each grant is split: `team_unlocked_at_genesis_bps` is paid at genesis, the rest vests
    /// linearly over `team_vesting_seconds` from genesis and is claimed with `Op::ClaimVested`.
    pub team_grants: Vec<Allocation>,
    pub team_unlocked_at_genesis_bps: u32,
    pub team_vesting_seconds: u64,
    /// Claimable with `Op::ClaimAirdrop` until `airdrop_claim_window_seconds` after genesis;
    /// afterwards the admin burns what is left with `Op::BurnUnclaimedAirdrop`.
    pub airdrop: Vec<Allocation>,
    pub airdrop_claim_window_seconds: u64,
    pub emission_rate_vvv_units_per_second: u128,
    pub parameters: Parameters,
    pub mint_curve_points: Vec<CurvePoint>,
}

impl GenesisConfig {
    /// The seed's genesis: 25M to the treasury and a 10M team grant (the company's 35M), 10M
    /// incentive fund, 5M liquidity, and the airdrop list as given (the seed's is 50M), with launch
    /// emissions, default parameters and the default mint curve.
    pub fn venice(
        admin: Address,
        treasury: Address,
        incentive_fund: Address,
        liquidity: Address,
        team: Address,
        airdrop: Vec<Allocation>,
    ) -> Self {
        let whole = |vvv: u128| vvv * UNITS_PER_TOKEN;
        Self {
            admin,
            treasury: Allocation {
                address: treasury,
                vvv_units: whole(VENICE_TREASURY_VVV),
            },
            incentive_fund: Allocation {
                address: incentive_fund,
                vvv_units: whole(VENICE_INCENTIVE_FUND_VVV),
            },
            liquidity: Allocation {
                address: liquidity,
                vvv_units: whole(VENICE_LIQUIDITY_VVV),
            },
            team_grants: vec![Allocation {
                address: team,
                vvv_units: whole(VENICE_TEAM_VVV),
            }],
            team_unlocked_at_genesis_bps: VENICE_TEAM_UNLOCKED_AT_GENESIS_BPS,
            team_vesting_seconds: VENICE_TEAM_VESTING_SECONDS,
            airdrop,
            airdrop_claim_window_seconds: VENICE_AIRDROP_CLAIM_WINDOW_SECONDS,
            emission_rate_vvv_units_per_second: emission_rate_for_vvv_per_year(
                VENICE_LAUNCH_EMISSIONS_VVV_PER_YEAR,
            ),
            parameters: Parameters::default(),
            mint_curve_points: MintCurve::venice_default_points(),
        }
    }
}

/// One operation, applied by [`crate::Ledger::apply`] with a time and a signer. Amounts are in
/// base units (10^-18 of a token or a dollar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The first operation of every ledger, signed by `config.admin`.
    Genesis(Box<GenesisConfig>),
    /// Moves liquid VVV or DIEM from the signer to `to`.
    Transfer {
        asset: Asset,
        to: Address,
        amount_units: u128,
    },
    /// Pays the signer's whole airdrop allocation while the claim window is open.
    ClaimAirdrop,
    /// Admin: after the claim window, burns every unclaimed allocation.
    BurnUnclaimedAirdrop,
    /// Pays the part of the signer's team grant that has vested and is not yet claimed.
    ClaimVested,
    /// Liquid VVV → staked sVVV, which earns emissions.
    Stake { vvv_units: u128 },
    /// Staked sVVV → cooling down; it stops earning now and is withdrawable after the cooldown.
    /// A second initiation adds to the amount cooling and restarts the cooldown for all of it.
    InitiateUnstake { svvv_units: u128 },
    /// Cooled-down sVVV → liquid VVV.
    FinalizeUnstake,
    /// Pays the signer's pending staking rewards as liquid VVV.
    ClaimRewards,
    /// Stakes the signer's pending staking rewards directly.
    ClaimAndStakeRewards,
    /// Locks at most `svvv_to_lock_units` of the signer's staked sVVV and mints the most DIEM it
    /// buys along the curve; refused if that is less than `min_diem_out_units`. Only the exact
    /// cost is locked; the rest stays staked.
    MintDiem {
        svvv_to_lock_units: u128,
        min_diem_out_units: u128,
    },
    /// Burns liquid DIEM the signer minted and unlocks the proportional share of its locked sVVV
    /// (all of it when the last minted DIEM is burned).
    BurnDiem { diem_units: u128 },
    /// Liquid DIEM → staked DIEM, which is $1 a day of API credit per DIEM.
    StakeDiem { diem_units: u128 },
    /// Staked DIEM → cooling down; like `InitiateUnstake`, it restarts the cooldown.
    InitiateDiemUnstake { diem_units: u128 },
    /// Cooled-down DIEM → liquid DIEM.
    FinalizeDiemUnstake,
    /// Admin: the emission rate from now on (emissions up to now accrue at the old rate).
    SetEmissionRate { vvv_units_per_second: u128 },
    /// Admin: replaces the mint curve (validated: 256 points, non-decreasing).
    SetMintCurve { points: Vec<CurvePoint> },
    /// Admin: replaces the parameters (validated).
    SetParameters(Box<Parameters>),
    /// Admin (the gateway signs with the operator key): API utilization from now on.
    ReportUtilization { utilization_bps: u32 },
    /// Admin: burns VVV from the treasury, recording the revenue (USD base units) that bought it.
    BuybackAndBurn {
        vvv_units: u128,
        revenue_usd_units: u128,
    },
    /// Admin: credits USD balance and bundled credits (both USD base units) to an account.
    CreditAccount {
        account: Address,
        usd_units: u128,
        bundled_credit_units: u128,
    },
    /// Admin (the gateway): what API usage cost, per account, for one UTC day (`day` is days
    /// since the Unix epoch, at most today). Debits each entry's bundled and USD credits, all or
    /// nothing, and adds the entry to the account's usage history and allowance drawn.
    SettleUsage { day: u64, entries: Vec<UsageCharge> },
}

impl Op {
    /// Whether only the admin may sign this operation.
    pub const fn requires_admin(&self) -> bool {
        matches!(
            self,
            Self::Genesis(_)
                | Self::BurnUnclaimedAirdrop
                | Self::SetEmissionRate { .. }
                | Self::SetMintCurve { .. }
                | Self::SetParameters(_)
                | Self::ReportUtilization { .. }
                | Self::BuybackAndBurn { .. }
                | Self::CreditAccount { .. }
                | Self::SettleUsage { .. }
        )
    }
}

/// What an accepted operation did, with the amounts the caller could not know in advance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    GenesisApplied {
        genesis_supply_units: u128,
    },
    Transferred {
        asset: Asset,
        amount_units: u128,
    },
    AirdropClaimed {
        vvv_units: u128,
    },
    UnclaimedAirdropBurned {
        vvv_units: u128,
    },
    VestedClaimed {
        vvv_units: u128,
    },
    Staked {
        svvv_units: u128,
    },
    UnstakeInitiated {
        cooling_svvv_units: u128,
        unlock_at_seconds: u64,
    },
    UnstakeFinalized {
        vvv_units: u128,
    },
    RewardsClaimed {
        vvv_units: u128,
    },
    RewardsStaked {
        svvv_units: u128,
    },
    DiemMinted {
        diem_units: u128,
        svvv_locked_units: u128,
        mint_rate_after_svvv_units_per_diem: u128,
    },
    DiemBurned {
        diem_units: u128,
        svvv_unlocked_units: u128,
    },
    DiemStaked {
        diem_units: u128,
    },
    DiemUnstakeInitiated {
        cooling_diem_units: u128,
        unlock_at_seconds: u64,
    },
    DiemUnstakeFinalized {
        diem_units: u128,
    },
    EmissionRateSet {
        vvv_units_per_second: u128,
    },
    MintCurveSet,
    ParametersSet,
    UtilizationReported {
        utilization_bps: u32,
        company_share_bps: u32,
    },
    BoughtBackAndBurned {
        vvv_units: u128,
        revenue_usd_units: u128,
    },
    AccountCredited {
        usd_units: u128,
        bundled_credit_units: u128,
    },
    /// Sums over the settlement's entries.
    UsageSettled {
        entries: u32,
        usd_units: u128,
        bundled_credit_units: u128,
        allowance_units: u128,
    },
}
