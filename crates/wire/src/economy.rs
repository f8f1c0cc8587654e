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
    pub outcome: serde_json::Value,
}

/// A spend cap in dollars.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumptionLimit {
    pub usd: Dollars,
}

/// What a key has spent in its lifetime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    pub usd: Dollars,
}

/// An API key of an account, in Venice's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    /// `INFERENCE` or `ADMIN`.
    pub api_key_type: String,
    pub description: String,
    pub last6_chars: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub last_used_at: Option<u64>,
    pub consumption_limit: Option<ConsumptionLimit>,
    /// `EPOCH` (the UTC day), `MONTH` or `LIFETIME`.
    pub limit_period: Option<String>,
    pub usage: KeyUsage,
    /// The secret, present only in the answer that creates the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
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
    /// `DIEM` while today's allowance lasts, then `USD`.
    pub consumption_currency: String,
    pub balances: BillingBalances,
    pub diem_epoch_allocation: Dollars,
    pub next_epoch_begins: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingBalances {
    pub diem: Dollars,
    pub usd: Dollars,
    pub bundled_credits: Dollars,
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

/// `GET /billing/usage-history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageHistory {
    pub object: String,
    pub data: Vec<UsageDay>,
    pub note: String,
}

/// `GET /api_keys/rate_limits`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    pub access_permitted: bool,
    pub api_tier: ApiTier,
    /// By currency: `DIEM`, `USD`, `BUNDLED_CREDITS`.
    pub balances: std::collections::BTreeMap<String, Dollars>,
    pub next_epoch_begins: u64,
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
    fn a_key_created_carries_its_secret_and_one_listed_does_not() {
        let key = ApiKey {
            id: "key_1".into(),
            api_key_type: "INFERENCE".into(),
            description: "laptop".into(),
            last6_chars: "abcdef".into(),
            created_at: 1,
            expires_at: None,
            last_used_at: None,
            consumption_limit: Some(ConsumptionLimit {
                usd: Dollars(1_000_000_000_000_000_000),
            }),
            limit_period: Some("EPOCH".into()),
            usage: KeyUsage { usd: Dollars(0) },
            api_key: None,
        };
        let listed = serde_json::to_value(&key).expect("serializes");
        assert!(listed.get("apiKey").is_none());
        assert_eq!(listed["apiKeyType"], "INFERENCE");
        assert_eq!(listed["consumptionLimit"]["usd"], "1");
        let created = ApiKey {
            api_key: Some("gk-secret".into()),
            ..key
        };
        let text = serde_json::to_string(&Data {
            data: created.clone(),
        })
        .expect("serializes");
        let read: Data<ApiKey> = serde_json::from_str(&text).expect("parses");
        assert_eq!(read.data, created);
    }
}
