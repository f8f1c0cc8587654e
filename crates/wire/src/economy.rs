//! The economy's HTTP bodies (`/ledger/*`, `/api_keys*`, `/billing/*`), written by the gateway
//! and read by the CLI and the web app: one definition, so a renamed field fails to compile
//! instead of failing an end-to-end test.
//!
//! Amounts a client computes with are base units (10^-18) as decimal strings
//! ([`BaseUnits`], `*_units`); amounts in Venice's own shapes are exact decimal dollars
//! ([`Dollars`]). Neither ever passes through a float.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::money::Amount;

/// Base units (10^-18 of a token or a dollar), written as a string of decimal digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BaseUnits(pub u128);

impl Serialize for BaseUnits {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BaseUnits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map(Self)
            .map_err(|_| D::Error::custom("base units are a string of decimal digits"))
    }
}

/// Dollars (or DIEM), written as an exact decimal string (`"0.25"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dollars(pub u128);

impl Serialize for Dollars {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&Amount(self.0).to_decimal_string())
    }
}

impl<'de> Deserialize<'de> for Dollars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Amount::parse_decimal(&text)
            .map(|amount| Self(amount.0))
            .map_err(|error| D::Error::custom(error.to_string()))
    }
}

/// Dollars (or DIEM), written as a JSON number with the exact decimal digits (`0.25`), as
/// Venice's API writes amounts. Read from a number or a string, never through a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DollarNumber(pub u128);

impl Serialize for DollarNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = Amount(self.0).to_decimal_string();
        let number =
            serde_json::value::RawValue::from_string(text).map_err(serde::ser::Error::custom)?;
        number.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DollarNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
        let text = raw.get().trim_matches('"');
        Amount::parse_decimal(text)
            .map(|amount| Self(amount.0))
            .map_err(|error| D::Error::custom(error.to_string()))
    }
}

/// A moment, written as Venice writes them: ISO 8601 in UTC with milliseconds
/// (`2026-12-06T18:00:00.000Z`). Held as Unix seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn to_iso(self) -> String {
        i64::try_from(self.0)
            .ok()
            .and_then(|seconds| chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, 0))
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Reads the forms Venice accepts for a moment: ISO 8601 / RFC 3339 (`…Z` or with an
    /// offset), a date alone (`2026-12-31`, its start in UTC), or Unix seconds.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(seconds) = text.parse::<u64>() {
            return Some(Self(seconds));
        }
        let seconds = chrono::DateTime::parse_from_rfc3339(text)
            .map(|moment| moment.timestamp())
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|date| {
                    date.and_hms_opt(0, 0, 0)
                        .unwrap_or_default()
                        .and_utc()
                        .timestamp()
                })
            })
            .ok()?;
        u64::try_from(seconds).ok().map(Self)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_iso())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
        Self::parse(raw.get().trim_matches('"')).ok_or_else(|| {
            D::Error::custom("a moment is ISO 8601 (2026-12-31T00:00:00Z), a date or Unix seconds")
        })
    }
}

/// `GET /ledger/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus {
    /// `ledger.status`.
    pub object: String,
    pub sequence: u64,
    pub record_hash: String,
    pub now: u64,
    pub today: u64,
    pub next_epoch_begins: u64,
    pub operator: String,
    pub genesis_seconds: Option<u64>,
    pub eip712_domain: Eip712Domain,
    pub supply: Supply,
    pub mint_rate_svvv_units_per_diem: BaseUnits,
    pub emissions: Emissions,
    pub apr_bps: Apr,
    pub diem_liability: DiemLiability,
    pub parameters: Parameters,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eip712Domain {
    pub name: String,
    pub version: String,
    /// `0x` and 64 hex digits.
    pub salt: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    pub genesis_vvv_units: BaseUnits,
    pub total_vvv_units: BaseUnits,
    pub circulating_vvv_units: BaseUnits,
    pub burned_vvv_units: BaseUnits,
    pub burned_by_buyback_vvv_units: BaseUnits,
    pub burned_unclaimed_airdrop_vvv_units: BaseUnits,
    pub emitted_to_stakers_vvv_units: BaseUnits,
    pub emitted_to_company_vvv_units: BaseUnits,
    pub liquid_vvv_units: BaseUnits,
    pub staked_svvv_units: BaseUnits,
    pub cooling_svvv_units: BaseUnits,
    pub locked_svvv_units: BaseUnits,
    pub reward_pool_vvv_units: BaseUnits,
    pub diem_supply_units: BaseUnits,
    pub staked_diem_units: BaseUnits,
    pub buyback_revenue_usd_units: BaseUnits,
    pub usage_revenue_usd_units: BaseUnits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emissions {
    pub rate_vvv_units_per_second: BaseUnits,
    pub utilization_bps: u32,
    pub company_share_of_unlocked_bps: u32,
    pub stakers_share_of_unlocked_bps: u32,
    pub stakers_share_of_locked_bps: u32,
}

/// Staking APR in basis points, as base units of a basis point; `None` with nothing staked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Apr {
    pub unlocked: Option<BaseUnits>,
    pub locked: Option<BaseUnits>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiemLiability {
    pub outstanding_diem_units: BaseUnits,
    pub liability_usd_units_per_day: BaseUnits,
    pub staked_diem_units: BaseUnits,
    pub locked_svvv_units: BaseUnits,
    pub locked_svvv_units_per_diem: Option<BaseUnits>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    pub unstake_cooldown_seconds: u64,
    pub diem_unstake_cooldown_seconds: u64,
    pub locked_yield_bps: u32,
    pub minimum_spendable_staked_diem_units: BaseUnits,
}

/// `GET /ledger/accounts/{address}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerAccount {
    /// `ledger.account`.
    pub object: String,
    pub address: String,
    pub nonce: u64,
    pub vvv_units: BaseUnits,
    pub staked_svvv_units: BaseUnits,
    pub cooling_svvv_units: BaseUnits,
    pub svvv_unlock_at: Option<u64>,
    pub locked_svvv_units: BaseUnits,
    pub diem_minted_outstanding_units: BaseUnits,
    pub diem_units: BaseUnits,
    pub staked_diem_units: BaseUnits,
    pub cooling_diem_units: BaseUnits,
    pub diem_unlock_at: Option<u64>,
    pub pending_rewards_units: BaseUnits,
    pub usd_credit_units: BaseUnits,
    pub bundled_credit_units: BaseUnits,
    pub airdrop_claimable_units: BaseUnits,
    pub vesting_claimable_units: BaseUnits,
    pub vesting_unvested_units: BaseUnits,
    pub allowance: Allowance,
    pub spendable: Spendable,
}

/// Today's API allowance of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    pub day: u64,
    pub diem_usd_units_per_day: BaseUnits,
    pub total_usd_units_per_day: BaseUnits,
    pub remaining_usd_units: BaseUnits,
    pub next_epoch_begins: u64,
}

/// What an account can spend now, by source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spendable {
    pub allowance_usd_units: BaseUnits,
    pub bundled_credit_units: BaseUnits,
    pub usd_units: BaseUnits,
}

/// `GET /ledger/quote`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintQuote {
    /// `ledger.mint_quote`.
    pub object: String,
    pub svvv_units: BaseUnits,
    pub diem_units: BaseUnits,
    pub mint_rate_svvv_units_per_diem: BaseUnits,
}

/// `POST /ledger/operations`: the operation is on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerReceipt {
    /// `ledger.receipt`.
    pub object: String,
    pub sequence: u64,
    pub record_hash: String,
    /// What the operation did, tagged by `type` (`staked`, `diem_minted`, …), with its amounts.
    pub outcome: ReceiptOutcome,
}

/// What a committed ledger operation did, as `POST /ledger/operations` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiptOutcome {
    GenesisApplied {
        genesis_supply_units: BaseUnits,
    },
    Transferred {
        amount_units: BaseUnits,
    },
    AirdropClaimed {
        vvv_units: BaseUnits,
    },
    UnclaimedAirdropBurned {
        vvv_units: BaseUnits,
    },
    VestedClaimed {
        vvv_units: BaseUnits,
    },
    Staked {
        svvv_units: BaseUnits,
    },
    UnstakeInitiated {
        cooling_svvv_units: BaseUnits,
        /// Unix seconds.
        unlock_at: u64,
    },
    UnstakeFinalized {
        vvv_units: BaseUnits,
    },
    RewardsClaimed {
        vvv_units: BaseUnits,
    },
    RewardsStaked {
        svvv_units: BaseUnits,
    },
    DiemMinted {
        diem_units: BaseUnits,
        svvv_locked_units: BaseUnits,
        mint_rate_after_svvv_units_per_diem: BaseUnits,
    },
    DiemBurned {
        diem_units: BaseUnits,
        svvv_unlocked_units: BaseUnits,
    },
    DiemStaked {
        diem_units: BaseUnits,
    },
    DiemUnstakeInitiated {
        cooling_diem_units: BaseUnits,
        /// Unix seconds.
        unlock_at: u64,
    },
    DiemUnstakeFinalized {
        diem_units: BaseUnits,
    },
    EmissionRateSet {
        vvv_units_per_second: BaseUnits,
    },
    MintCurveSet,
    ParametersSet,
    UtilizationReported {
        utilization_bps: u32,
        company_share_bps: u32,
    },
    BoughtBackAndBurned {
        vvv_units: BaseUnits,
        revenue_usd_units: BaseUnits,
    },
    AccountCredited {
        usd_units: BaseUnits,
        bundled_credit_units: BaseUnits,
    },
    /// Sums over a usage settlement's entries.
    UsageSettled {
        entries: u32,
        usd_units: BaseUnits,
        bundled_credit_units: BaseUnits,
        allowance_units: BaseUnits,
    },
}

impl ReceiptOutcome {
    /// The `type` it is tagged with (`staked`, `diem_minted`, …).
    pub fn kind(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| Some(value.get("type")?.as_str()?.to_owned()))
            .unwrap_or_default()
    }

    /// Its amounts in base units, each with its name less `_units` (`("svvv", …)`), and the
    /// moment a cooldown ends, if it started one.
    pub fn amounts(&self) -> (Vec<(&'static str, BaseUnits)>, Option<u64>) {
        match *self {
            Self::GenesisApplied {
                genesis_supply_units,
            } => (vec![("genesis supply", genesis_supply_units)], None),
            Self::Transferred { amount_units } => (vec![("amount", amount_units)], None),
            Self::AirdropClaimed { vvv_units }
            | Self::UnclaimedAirdropBurned { vvv_units }
            | Self::VestedClaimed { vvv_units }
            | Self::UnstakeFinalized { vvv_units }
            | Self::RewardsClaimed { vvv_units } => (vec![("vvv", vvv_units)], None),
            Self::Staked { svvv_units } | Self::RewardsStaked { svvv_units } => {
                (vec![("svvv", svvv_units)], None)
            }
            Self::UnstakeInitiated {
                cooling_svvv_units,
                unlock_at,
            } => (vec![("cooling svvv", cooling_svvv_units)], Some(unlock_at)),
            Self::DiemMinted {
                diem_units,
                svvv_locked_units,
                mint_rate_after_svvv_units_per_diem,
            } => (
                vec![
                    ("diem", diem_units),
                    ("svvv locked", svvv_locked_units),
                    (
                        "mint rate after svvv per diem",
                        mint_rate_after_svvv_units_per_diem,
                    ),
                ],
                None,
            ),
            Self::DiemBurned {
                diem_units,
                svvv_unlocked_units,
            } => (
                vec![("diem", diem_units), ("svvv unlocked", svvv_unlocked_units)],
                None,
            ),
            Self::DiemStaked { diem_units } | Self::DiemUnstakeFinalized { diem_units } => {
                (vec![("diem", diem_units)], None)
            }
            Self::DiemUnstakeInitiated {
                cooling_diem_units,
                unlock_at,
            } => (vec![("cooling diem", cooling_diem_units)], Some(unlock_at)),
            Self::EmissionRateSet {
                vvv_units_per_second,
            } => (vec![("vvv per second", vvv_units_per_second)], None),
            Self::MintCurveSet | Self::ParametersSet | Self::UtilizationReported { .. } => {
                (Vec::new(), None)
            }
            Self::BoughtBackAndBurned {
                vvv_units,
                revenue_usd_units,
            } => (
                vec![("vvv", vvv_units), ("revenue usd", revenue_usd_units)],
                None,
            ),
            Self::AccountCredited {
                usd_units,
                bundled_credit_units,
            } => (
                vec![("usd", usd_units), ("bundled credit", bundled_credit_units)],
                None,
            ),
            Self::UsageSettled {
                usd_units,
                bundled_credit_units,
                allowance_units,
                ..
            } => (
                vec![
                    ("usd", usd_units),
                    ("bundled credit", bundled_credit_units),
                    ("allowance", allowance_units),
                ],
                None,
            ),
        }
    }
}

/// What a key may do: call inference (and read), or also manage keys. An account's ADMIN key
/// manages that account's keys; the operator's powers go with the operator's own configured
/// ADMIN keys, which belong to no account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    #[serde(rename = "INFERENCE")]
    Inference,
    #[serde(rename = "ADMIN")]
    Admin,
}

impl KeyKind {
    /// The name it is written with (`INFERENCE`, `ADMIN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inference => "INFERENCE",
            Self::Admin => "ADMIN",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitPeriod {
    /// The UTC day.
    #[serde(rename = "EPOCH")]
    Epoch,
    #[serde(rename = "MONTH")]
    Month,
    #[serde(rename = "LIFETIME")]
    Lifetime,
}

impl LimitPeriod {
    /// The name it is written with (`EPOCH`, `MONTH`, `LIFETIME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epoch => "EPOCH",
            Self::Month => "MONTH",
            Self::Lifetime => "LIFETIME",
        }
    }

    /// The period containing `day` (days since the epoch): the day, the month, or 0.
    pub fn period_of(self, day: u64) -> u64 {
        match self {
            Self::Epoch => day,
            Self::Month => {
                let (year, month) = civil_month(day);
                year * 12 + month
            }
            Self::Lifetime => 0,
        }
    }

    pub fn error_code(self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            Self::Epoch => ErrorCode::ApiKeyEpochSpendLimitExceeded,
            Self::Month => ErrorCode::ApiKeyMonthSpendLimitExceeded,
            Self::Lifetime => ErrorCode::ApiKeyLifetimeSpendLimitExceeded,
        }
    }
}

/// Year and month (1–12) of a day number, by Howard Hinnant's civil-from-days algorithm.
fn civil_month(day: u64) -> (u64, u64) {
    let z = day + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// A spend cap as a request gives it: Venice's JSON numbers of dollars or DIEM, worth the same
/// here (`vcu`, Venice's deprecated unit, is not accepted). Kept as the number's own digits,
/// never a float.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestedLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diem: Option<serde_json::Number>,
}

/// `POST /api_keys`: a new key for the caller's account (or, for the operator's own ADMIN
/// keys, for the account named).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateApiKey {
    pub api_key_type: KeyKind,
    pub description: String,
    /// `""` or `null` (or nothing) for a key that does not expire.
    #[serde(
        default,
        deserialize_with = "expiry",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption_limit: Option<RequestedLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_period: Option<LimitPeriod>,
    /// Only for the operator's own (configured) ADMIN keys: the account (`0x` and 40 hex
    /// digits) to create the key for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// `PATCH /api_keys`: what changes of the key `id`; what is absent stays. `expiresAt: null`
/// removes the expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateApiKey {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "changed_expiry",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<Option<Timestamp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption_limit: Option<RequestedLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_period: Option<LimitPeriod>,
}

/// Venice's expiry: a moment, or `""` or `null` for none.
fn expiry<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    match Option::<Box<serde_json::value::RawValue>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(raw) if raw.get() == "\"\"" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// An expiry that is present, `""` and `null` included (`Some(None)`: remove it), as opposed to
/// absent (`None`: leave it).
fn changed_expiry<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Timestamp>>, D::Error> {
    expiry(deserializer).map(Some)
}

/// `POST /api_keys/generate_web3_key`: a key minted by a wallet's `personal_sign` signature
/// over a challenge `token` from `GET /api_keys/generate_web3_key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Web3KeyRequest {
    /// `0x` and 40 hex digits.
    pub address: String,
    /// `0x` and 130 hex digits (r, s, v).
    pub signature: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_type: Option<KeyKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption_limit: Option<RequestedLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_period: Option<LimitPeriod>,
}

/// An API key of an account, in Venice's shape (`GET /api_keys`, `GET /api_keys/{id}`,
/// `PATCH /api_keys`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    /// `INFERENCE` or `ADMIN`.
    pub api_key_type: String,
    pub description: String,
    pub last6_chars: String,
    pub created_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub consumption_limits: ConsumptionLimits,
    /// `EPOCH` (the UTC day), `MONTH` or `LIFETIME`.
    pub limit_period: String,
    /// Which models the key may use: `ALL` (every model here is private).
    pub model_privacy: String,
    /// What the key spent in the last seven UTC days (absent from an update's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<KeyUsage>,
    /// What the key spent in its limit's current period, when it has a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_usage: Option<PeriodUsage>,
}

/// A key just made (`POST /api_keys`, `POST /api_keys/generate_web3_key`): its secret, shown
/// this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    pub id: String,
    pub api_key: String,
    pub api_key_type: String,
    pub description: String,
    pub expires_at: Option<Timestamp>,
    pub consumption_limit: ConsumptionLimits,
    pub limit_period: String,
    pub model_privacy: String,
}

/// A key's spend caps. Gondola prices everything in dollars and DIEM is worth a dollar, so a
/// key has one cap, given in both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumptionLimits {
    pub usd: Option<DollarNumber>,
    pub diem: Option<DollarNumber>,
}

/// `usage` of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsage {
    pub trailing_seven_days: SpentAmounts,
}

/// What a key spent, priced in dollars (`usd`), whatever paid for it; `diem` and `vcu` are
/// always zero here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpentAmounts {
    pub usd: Dollars,
    pub vcu: Dollars,
    pub diem: Dollars,
}

/// `currentPeriodUsage` of a key with a limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodUsage {
    pub usd: Dollars,
    pub diem: Dollars,
}

/// `{"data": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

/// `{"object": "list", "data": […]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct List<T> {
    pub object: String,
    pub data: Vec<T>,
}

/// `{"success": …, "data": …}`, as Venice answers its web3 key routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Succeeded<T> {
    pub success: bool,
    pub data: T,
}

/// `GET /api_keys/generate_web3_key`: the text a wallet signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Web3Challenge {
    pub token: String,
    pub expires_at: u64,
}

/// `DELETE /api_keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub success: bool,
}

/// `GET /billing/balance`: what the account can spend now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingBalance {
    pub can_consume: bool,
    /// `DIEM` while today's allowance lasts, then `BUNDLED_CREDITS`, then `USD`.
    pub consumption_currency: String,
    pub balances: BillingBalances,
    pub diem_epoch_allocation: DollarNumber,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingBalances {
    pub diem: DollarNumber,
    pub usd: DollarNumber,
    /// Gondola: credits bundled with a purchase, spent before dollars.
    pub bundled_credits: DollarNumber,
}

/// One UTC day of an account's settled usage (`GET /billing/usage-history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    pub day: u64,
    /// The day's start, Unix seconds.
    pub date: u64,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub diem: Dollars,
    pub bundled_credits: Dollars,
    pub usd: Dollars,
}

/// `GET /billing/usage-days`: the account's settled usage, one entry per UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDays {
    pub object: String,
    pub data: Vec<UsageDay>,
    pub note: String,
}

/// `GET /billing/usage-history`, in Venice's shape: entries in ascending time, and a cursor
/// for the next page (`None` on the last).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageHistory {
    pub data: Vec<UsageEntry>,
    pub next_cursor: Option<String>,
}

/// One charge of the history. Gondola keeps no record of single requests: an entry is what one
/// UTC day cost in one currency, its requests and tokens told in `notes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageEntry {
    /// What was charged, as a negative number (a charge takes from the balance).
    pub amount: Charge,
    /// `DIEM`, `BUNDLED_CREDITS` or `USD`.
    pub currency: String,
    /// Always `None`: no single request is on record.
    pub inference_details: Option<InferenceDetails>,
    pub notes: String,
    pub price_per_unit_usd: DollarNumber,
    pub sku: String,
    pub timestamp: Timestamp,
    pub units: DollarNumber,
}

/// Venice's details of one request; never filled in here (see [`UsageEntry`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceDetails {
    pub completion_tokens: Option<u64>,
    pub inference_execution_time: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub request_id: String,
}

/// A charge: dollars written as a negative JSON number with exact digits (`-0.25`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Charge(pub u128);

impl Serialize for Charge {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let digits = Amount(self.0).to_decimal_string();
        let text = if self.0 == 0 {
            digits
        } else {
            format!("-{digits}")
        };
        let number =
            serde_json::value::RawValue::from_string(text).map_err(serde::ser::Error::custom)?;
        number.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Charge {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
        let text = raw.get().trim_matches('"');
        Amount::parse_decimal(text.strip_prefix('-').unwrap_or(text))
            .map(|amount| Self(amount.0))
            .map_err(|error| D::Error::custom(error.to_string()))
    }
}

/// `GET /api_keys/rate_limits`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    pub access_permitted: bool,
    pub api_tier: ApiTier,
    /// By currency: `DIEM`, `USD`, `BUNDLED_CREDITS`.
    pub balances: std::collections::BTreeMap<String, DollarNumber>,
    /// When the calling key expires; `None` when it does not.
    pub key_expiration: Option<Timestamp>,
    pub next_epoch_begins: Timestamp,
    pub rate_limits: Vec<ModelRateLimits>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiTier {
    pub id: String,
    pub is_charged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRateLimits {
    pub api_model_id: String,
    pub rate_limits: Vec<RateLimitAmount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitAmount {
    /// `RPM` or `TPM`.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: u64,
}

/// One rate-limit refusal (`GET /api_keys/rate_limits/log`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitHit {
    pub api_key_id: Option<String>,
    pub model_id: String,
    pub rate_limit_tier: String,
    /// `RPM` or `TPM`.
    pub rate_limit_type: String,
    pub timestamp: u64,
}

/// `POST /admin/clock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockAdvanced {
    pub now: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_a_moment_or_empty_and_an_update_tells_removed_from_absent() {
        let create = |expiry: &str| {
            serde_json::from_str::<CreateApiKey>(&format!(
                r#"{{"apiKeyType": "INFERENCE", "description": "d"{expiry}}}"#
            ))
        };
        assert_eq!(create("").expect("absent").expires_at, None);
        assert_eq!(
            create(r#", "expiresAt": """#).expect("empty").expires_at,
            None
        );
        assert_eq!(
            create(r#", "expiresAt": null"#).expect("null").expires_at,
            None
        );
        assert_eq!(
            create(r#", "expiresAt": "2026-12-31""#)
                .expect("a date")
                .expires_at,
            Some(Timestamp(1_798_675_200))
        );
        assert!(create(r#", "expiresAt": "soon""#).is_err());

        let update = |expiry: &str| {
            serde_json::from_str::<UpdateApiKey>(&format!(r#"{{"id": "k"{expiry}}}"#))
                .expect("an update")
                .expires_at
        };
        assert_eq!(update(""), None);
        assert_eq!(update(r#", "expiresAt": null"#), Some(None));
        assert_eq!(update(r#", "expiresAt": """#), Some(None));
        assert_eq!(
            update(r#", "expiresAt": "2026-12-31T00:00:00.000Z""#),
            Some(Some(Timestamp(1_798_675_200)))
        );
    }

    #[test]
    fn receipt_outcomes_read_back_with_their_kind() {
        let outcomes = [
            (
                ReceiptOutcome::Staked {
                    svvv_units: BaseUnits(5),
                },
                "staked",
            ),
            (
                ReceiptOutcome::UnstakeInitiated {
                    cooling_svvv_units: BaseUnits(2),
                    unlock_at: 9,
                },
                "unstake_initiated",
            ),
            (ReceiptOutcome::MintCurveSet, "mint_curve_set"),
            (
                ReceiptOutcome::UsageSettled {
                    entries: 3,
                    usd_units: BaseUnits(1),
                    bundled_credit_units: BaseUnits(0),
                    allowance_units: BaseUnits(7),
                },
                "usage_settled",
            ),
        ];
        for (outcome, kind) in outcomes {
            assert_eq!(outcome.kind(), kind);
            let text = serde_json::to_string(&outcome).expect("serializes");
            let back: ReceiptOutcome = serde_json::from_str(&text).expect("reads back");
            assert_eq!(back, outcome);
        }
        let unlock: ReceiptOutcome = serde_json::from_str(
            r#"{"type": "diem_unstake_initiated", "cooling_diem_units": "10", "unlock_at": 77}"#,
        )
        .expect("a receipt's outcome");
        assert_eq!(
            unlock.amounts(),
            (vec![("cooling diem", BaseUnits(10))], Some(77))
        );
    }

    #[test]
    fn months_of_day_numbers() {
        // 1970-01-01 is day 0; 2026-11-24 is day 20781; 2024-02-29 is day 19782.
        assert_eq!(civil_month(0), (1970, 1));
        assert_eq!(civil_month(20_781), (2026, 11));
        assert_eq!(civil_month(19_782), (2024, 2));
        assert_eq!(civil_month(19_783), (2024, 3));
    }

    #[test]
    fn amounts_are_exact_strings_both_ways() {
        let units = BaseUnits(123_456_789_012_345_678_901_234_567);
        let text = serde_json::to_string(&units).expect("serializes");
        assert_eq!(text, "\"123456789012345678901234567\"");
        assert_eq!(
            serde_json::from_str::<BaseUnits>(&text).expect("parses"),
            units
        );
        assert!(
            serde_json::from_str::<BaseUnits>("12").is_err(),
            "not a string"
        );
        assert!(serde_json::from_str::<BaseUnits>("\"1.5\"").is_err());
        let dollars = Dollars(250_000_000_000_000_000);
        let text = serde_json::to_string(&dollars).expect("serializes");
        assert_eq!(text, "\"0.25\"");
        assert_eq!(
            serde_json::from_str::<Dollars>(&text).expect("parses"),
            dollars
        );
    }

    #[test]
    fn venice_amounts_are_exact_json_numbers_and_moments_are_iso() {
        let amount = DollarNumber(123_456_789_012_345_678_901);
        let text = serde_json::to_string(&amount).expect("serializes");
        assert_eq!(text, "123.456789012345678901");
        assert_eq!(
            serde_json::from_str::<DollarNumber>(&text).expect("parses"),
            amount
        );
        assert_eq!(
            serde_json::from_str::<DollarNumber>("\"0.5\"").expect("a string too"),
            DollarNumber(500_000_000_000_000_000)
        );
        let moment = Timestamp(1_796_601_600);
        assert_eq!(
            serde_json::to_string(&moment).expect("serializes"),
            "\"2026-12-07T00:00:00.000Z\""
        );
        for form in [
            "\"2026-12-07T00:00:00.000Z\"",
            "\"2026-12-07T01:00:00+01:00\"",
            "\"2026-12-07\"",
            "1796601600",
        ] {
            assert_eq!(
                serde_json::from_str::<Timestamp>(form).expect(form),
                moment,
                "{form}"
            );
        }
        assert!(serde_json::from_str::<Timestamp>("\"next tuesday\"").is_err());
    }
}
