//! Gondola's ledger: the VVV / sVVV / DIEM economy as a pure, deterministic state machine.
//! It owns every economic rule and number, and it must never do IO, read the clock, draw
//! randomness, run async code, or use floats: time and the signer are arguments, amounts are
//! integers, and the state is a function of the operations applied to it.
//!
//! - [`Ledger::apply`]`(now_seconds, signer, op)` → [`Outcome`] or a numbered [`Rejection`]; a
//!   rejected operation changes nothing, an accepted one is followed by invariant assertions that
//!   stay on in release builds.
//! - [`Op`]: genesis, transfers, the airdrop and team vesting, staking and its cooldown, rewards,
//!   DIEM minting along the [`MintCurve`], DIEM burning and staking, and the admin operations,
//!   among them the gateway's daily usage settlement ([`Op::SettleUsage`]).
//! - Queries on [`Ledger`]: [`Ledger::balances`], [`Ledger::supply`], the mint rate and quotes,
//!   [`Ledger::emission_split`], [`Ledger::staking_apr`], [`Ledger::diem_liability`], the
//!   signer nonces ([`Ledger::next_nonce`]), usage history and allowance drawn
//!   ([`Ledger::usage_history`], [`Ledger::allowance_spent_units`]), and [`Ledger::state_hash`]
//!   for comparing a replay with the original.
//! - The state's canonical encoding: [`Ledger::encode_state`] and [`Ledger::decode_state`], the
//!   body of the store's snapshots.
//!
//! Amounts are u128 base units: 10^-18 of a VVV, sVVV or DIEM, or of a US dollar for credits.
//! Signatures, the journal and snapshot files belong to the store, outside this crate.

mod account;
mod address;
mod curve;
mod emissions;
mod fingerprint;
mod invariants;
mod ledger;
mod op;
mod params;
mod queries;
mod rejection;
mod snapshot;
mod usage;
mod usage_days;
mod wide;

pub use address::Address;
pub use curve::{
    CURVE_POINT_COUNT, CurveError, CurvePoint, DEFAULT_ADJUSTMENT_POWER,
    DEFAULT_BASE_RATE_SVVV_PER_DIEM, DEFAULT_SUPPLY_STEP_DIEM, DEFAULT_TARGET_SUPPLY_DIEM,
    MAXIMUM_CURVE_SUPPLY_DIEM, MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM, MintCurve, MintQuote,
};
pub use emissions::{
    MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND, MINIMUM_STAKE_FOR_EMISSIONS_UNITS,
    REWARD_PER_SHARE_SCALE,
};
pub use fingerprint::StateHash;
pub use ledger::{BuybackDay, Ledger};
pub use op::{
    Allocation, Asset, GenesisConfig, Op, Outcome, UsageCharge,
    VENICE_AIRDROP_CLAIM_WINDOW_SECONDS, VENICE_AIRDROP_VVV, VENICE_COMPANY_VVV,
    VENICE_GENESIS_SUPPLY_VVV, VENICE_INCENTIVE_FUND_VVV, VENICE_LAUNCH_EMISSIONS_VVV_PER_YEAR,
    VENICE_LIQUIDITY_VVV, VENICE_TEAM_UNLOCKED_AT_GENESIS_BPS, VENICE_TEAM_VESTING_SECONDS,
    VENICE_TEAM_VVV, VENICE_TREASURY_VVV, emission_rate_for_vvv_per_year,
};
pub use params::{
    DEFAULT_DIEM_UNSTAKE_COOLDOWN_SECONDS, DEFAULT_LOCKED_YIELD_BPS,
    DEFAULT_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS, DEFAULT_UNSTAKE_COOLDOWN_SECONDS,
    MAXIMUM_COOLDOWN_SECONDS, MAXIMUM_MINIMUM_SPENDABLE_STAKED_DIEM_UNITS, MAXIMUM_SPLIT_POINTS,
    Parameters, SplitPoint, UtilizationSplit,
};
pub use queries::{
    AccountBalances, DiemLiability, EmissionSplit, Ratio, StakingApr, SupplySummary,
};
pub use rejection::Rejection;
pub use snapshot::StateDecodeError;
pub use usage_days::{MAXIMUM_USAGE_ENTRIES, USAGE_HISTORY_DAYS, UsageDay};
pub use wide::{mul_div_ceil, mul_div_floor};

/// Base units in one whole VVV, sVVV or DIEM (18 decimals, like an ERC-20), and in one dollar.
pub const UNITS_PER_TOKEN: u128 = 1_000_000_000_000_000_000;

/// Shares are in basis points: 10,000 is 100%.
pub const BASIS_POINTS: u128 = 10_000;

pub const SECONDS_PER_DAY: u64 = 86_400;

/// Emission rates and APRs use a 365-day year.
pub const SECONDS_PER_YEAR: u64 = 365 * SECONDS_PER_DAY;

/// Ceiling on the genesis supply: a trillion tokens, ten thousand times the seed's. Together with
/// the emission rate ceiling it keeps every supply figure inside u128 forever.
pub const MAXIMUM_GENESIS_SUPPLY_UNITS: u128 = 1_000_000_000_000 * UNITS_PER_TOKEN;

/// Ceiling on the vesting period and the airdrop window: ten years.
pub const MAXIMUM_GENESIS_TERM_SECONDS: u64 = 10 * 365 * SECONDS_PER_DAY;
