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

mod keys;
mod receipt;

pub use keys::{CreateApiKey, KeyKind, LimitPeriod, RequestedLimit, UpdateApiKey, Web3KeyRequest};
pub use receipt::ReceiptOutcome;

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
    /// In chain mode: the stake the gateway counts from the chain (staked sVVV and DIEM held
    /// back until `confirmations` blocks deep), as of its last read at `head_block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainStake>,
}

/// `GET /chain/airdrop/{address}`: an address's airdrop allocation in chain mode and its Merkle
/// proof, as `Airdrop.claim(amount, proof)` takes them (the proof is public: it reveals only
/// the allocation it proves).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AirdropAllocation {
    pub object: String,
    pub address: String,
    pub chain_id: u64,
    /// The airdrop contract.
    pub contract: String,
    pub amount_units: BaseUnits,
    /// The proof's hashes, 0x and 64 hex digits each.
    pub proof: Vec<String>,
}

/// An account's stake on the chain, as a gateway in chain mode counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStake {
    pub head_block: u64,
    pub confirmations: u64,
    /// Whether the gateway follows this account: it does from the account's first API key on
    /// (minting one reads the stake at once), and counts nothing for an account it does not.
    #[serde(default)]
    pub followed: bool,
    /// Staked and locked sVVV.
    pub svvv_units: BaseUnits,
    pub diem_allowance_usd_units_per_day: BaseUnits,
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
