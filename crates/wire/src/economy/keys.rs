//! API keys' kinds and spend periods, and the requests that create, change and mint keys
//! (`/api_keys*`).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::Timestamp;

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
    fn months_of_day_numbers() {
        // 1970-01-01 is day 0; 2026-11-24 is day 20781; 2024-02-29 is day 19782.
        assert_eq!(civil_month(0), (1970, 1));
        assert_eq!(civil_month(20_781), (2026, 11));
        assert_eq!(civil_month(19_782), (2024, 2));
        assert_eq!(civil_month(19_783), (2024, 3));
    }
}
