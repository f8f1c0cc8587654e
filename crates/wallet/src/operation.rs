//! The JSON form of a signed operation, as clients submit it over HTTP:
//!
//! ```json
//! {"operation": {"type": "stake", "vvv_units": "1000000000000000000"},
//!  "signer": "0x…", "nonce": 3, "deadline": 1767225600,
//!  "scheme": "eip712", "signature": "0x…65 bytes…"}
//! ```
//!
//! Amounts are base units (10^-18) as decimal strings, so that no JSON number ever rounds them.
//! Only operations a user or the operator may submit have a JSON form; the gateway's own
//! (genesis, utilization, usage settlement) and the curve and parameter tables do not.

use std::fmt;

use ledger::{Address, Asset, Op};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::authorization::{Authorization, Scheme};

/// Base units as a decimal string in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Units(pub u128);

impl Serialize for Units {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Units {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Units;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("base units (10^-18) as a string of decimal digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Units, E> {
                if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(E::invalid_value(serde::de::Unexpected::Str(text), &self));
                }
                text.parse::<u128>()
                    .map(Units)
                    .map_err(|_| E::custom("amount too large for 128 bits of base units"))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// An address as `0x` and 40 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonAddress(pub Address);

impl Serialize for JsonAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JsonAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Address::from_hex(&text)
            .map(JsonAddress)
            .ok_or_else(|| serde::de::Error::custom("an address is 0x and 40 hex digits"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssetName {
    #[serde(rename = "VVV")]
    Vvv,
    #[serde(rename = "DIEM")]
    Diem,
}

/// Every operation that can be submitted over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    Transfer {
        asset: AssetName,
        to: JsonAddress,
        amount_units: Units,
    },
    ClaimAirdrop,
    ClaimVested,
    Stake {
        vvv_units: Units,
    },
    InitiateUnstake {
        svvv_units: Units,
    },
    FinalizeUnstake,
    ClaimRewards,
    ClaimAndStakeRewards,
    MintDiem {
        svvv_to_lock_units: Units,
        min_diem_out_units: Units,
    },
    BurnDiem {
        diem_units: Units,
    },
    StakeDiem {
        diem_units: Units,
    },
    InitiateDiemUnstake {
        diem_units: Units,
    },
    FinalizeDiemUnstake,
    BurnUnclaimedAirdrop,
    SetEmissionRate {
        vvv_units_per_second: Units,
    },
    BuybackAndBurn {
        vvv_units: Units,
        revenue_usd_units: Units,
    },
    CreditAccount {
        account: JsonAddress,
        usd_units: Units,
        bundled_credit_units: Units,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    #[error("{0} operations are the gateway's own and cannot be submitted")]
    Internal(&'static str),
}

impl Operation {
    pub fn to_op(&self) -> Op {
        match self {
            Self::Transfer {
                asset,
                to,
                amount_units,
            } => Op::Transfer {
                asset: match asset {
                    AssetName::Vvv => Asset::Vvv,
                    AssetName::Diem => Asset::Diem,
                },
                to: to.0,
                amount_units: amount_units.0,
            },
            Self::ClaimAirdrop => Op::ClaimAirdrop,
            Self::ClaimVested => Op::ClaimVested,
            Self::Stake { vvv_units } => Op::Stake {
                vvv_units: vvv_units.0,
            },
            Self::InitiateUnstake { svvv_units } => Op::InitiateUnstake {
                svvv_units: svvv_units.0,
            },
            Self::FinalizeUnstake => Op::FinalizeUnstake,
            Self::ClaimRewards => Op::ClaimRewards,
            Self::ClaimAndStakeRewards => Op::ClaimAndStakeRewards,
            Self::MintDiem {
                svvv_to_lock_units,
                min_diem_out_units,
            } => Op::MintDiem {
                svvv_to_lock_units: svvv_to_lock_units.0,
                min_diem_out_units: min_diem_out_units.0,
            },
            Self::BurnDiem { diem_units } => Op::BurnDiem {
                diem_units: diem_units.0,
            },
            Self::StakeDiem { diem_units } => Op::StakeDiem {
                diem_units: diem_units.0,
            },
            Self::InitiateDiemUnstake { diem_units } => Op::InitiateDiemUnstake {
                diem_units: diem_units.0,
            },
            Self::FinalizeDiemUnstake => Op::FinalizeDiemUnstake,
            Self::BurnUnclaimedAirdrop => Op::BurnUnclaimedAirdrop,
            Self::SetEmissionRate {
                vvv_units_per_second,
            } => Op::SetEmissionRate {
                vvv_units_per_second: vvv_units_per_second.0,
            },
            Self::BuybackAndBurn {
                vvv_units,
                revenue_usd_units,
            } => Op::BuybackAndBurn {
                vvv_units: vvv_units.0,
                revenue_usd_units: revenue_usd_units.0,
            },
            Self::CreditAccount {
                account,
                usd_units,
                bundled_credit_units,
            } => Op::CreditAccount {
                account: account.0,
                usd_units: usd_units.0,
                bundled_credit_units: bundled_credit_units.0,
            },
        }
    }

    /// The JSON form of `op`, if it has one.
    pub fn from_op(op: &Op) -> Result<Self, OperationError> {
        Ok(match op {
            Op::Transfer {
                asset,
                to,
                amount_units,
            } => Self::Transfer {
                asset: match asset {
                    Asset::Vvv => AssetName::Vvv,
                    Asset::Diem => AssetName::Diem,
                },
                to: JsonAddress(*to),
                amount_units: Units(*amount_units),
            },
            Op::ClaimAirdrop => Self::ClaimAirdrop,
            Op::ClaimVested => Self::ClaimVested,
            Op::Stake { vvv_units } => Self::Stake {
                vvv_units: Units(*vvv_units),
            },
            Op::InitiateUnstake { svvv_units } => Self::InitiateUnstake {
                svvv_units: Units(*svvv_units),
            },
            Op::FinalizeUnstake => Self::FinalizeUnstake,
            Op::ClaimRewards => Self::ClaimRewards,
            Op::ClaimAndStakeRewards => Self::ClaimAndStakeRewards,
            Op::MintDiem {
                svvv_to_lock_units,
                min_diem_out_units,
            } => Self::MintDiem {
                svvv_to_lock_units: Units(*svvv_to_lock_units),
                min_diem_out_units: Units(*min_diem_out_units),
            },
            Op::BurnDiem { diem_units } => Self::BurnDiem {
                diem_units: Units(*diem_units),
            },
            Op::StakeDiem { diem_units } => Self::StakeDiem {
                diem_units: Units(*diem_units),
            },
            Op::InitiateDiemUnstake { diem_units } => Self::InitiateDiemUnstake {
                diem_units: Units(*diem_units),
            },
            Op::FinalizeDiemUnstake => Self::FinalizeDiemUnstake,
            Op::BurnUnclaimedAirdrop => Self::BurnUnclaimedAirdrop,
            Op::SetEmissionRate {
                vvv_units_per_second,
            } => Self::SetEmissionRate {
                vvv_units_per_second: Units(*vvv_units_per_second),
            },
            Op::BuybackAndBurn {
                vvv_units,
                revenue_usd_units,
            } => Self::BuybackAndBurn {
                vvv_units: Units(*vvv_units),
                revenue_usd_units: Units(*revenue_usd_units),
            },
            Op::CreditAccount {
                account,
                usd_units,
                bundled_credit_units,
            } => Self::CreditAccount {
                account: JsonAddress(*account),
                usd_units: Units(*usd_units),
                bundled_credit_units: Units(*bundled_credit_units),
            },
            other => return Err(OperationError::Internal(crate::typed::kind(other))),
        })
    }
}

/// 65 bytes as `0x` and 130 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 65]);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "0x{}", hex::encode(self.0))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("0x{}", hex::encode(self.0)))
    }
}

impl SignatureBytes {
    /// Reads `0x` and 130 hex digits (r, s, v).
    pub fn from_hex(text: &str) -> Option<Self> {
        text.strip_prefix("0x")
            .and_then(|digits| hex::decode(digits).ok())
            .and_then(|bytes| <[u8; 65]>::try_from(bytes).ok())
            .map(SignatureBytes)
    }
}

/// What a signature that does not read looks like instead.
pub const SIGNATURE_FORM: &str = "a signature is 0x and 130 hex digits (r, s, v)";

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom(SIGNATURE_FORM))
    }
}

/// An operation with its signer's authorization, as submitted over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedOperation {
    pub operation: Operation,
    /// The address the client claims signed; the gateway recovers the signer from the signature
    /// and refuses the operation if they differ.
    pub signer: JsonAddress,
    pub nonce: u64,
    /// Seconds since the epoch.
    pub deadline: u64,
    pub scheme: Scheme,
    pub signature: SignatureBytes,
}

impl SignedOperation {
    /// Signs `operation` for submission.
    pub fn sign(
        wallet: &crate::Wallet,
        domain: &crate::Domain,
        operation: Operation,
        nonce: u64,
        deadline: u64,
        scheme: Scheme,
    ) -> Self {
        let authorization =
            crate::authorization::sign(wallet, domain, &operation.to_op(), nonce, deadline, scheme);
        Self {
            operation,
            signer: JsonAddress(wallet.address()),
            nonce,
            deadline,
            scheme,
            signature: SignatureBytes(authorization.signature),
        }
    }

    pub fn authorization(&self) -> Authorization {
        Authorization {
            scheme: self.scheme,
            nonce: self.nonce,
            deadline_seconds: self.deadline,
            signature: self.signature.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_operations_round_trip_through_json_and_recover_their_signer() {
        let wallet = crate::Wallet::generate();
        let domain = crate::Domain { salt: [1; 32] };
        let operation = Operation::Transfer {
            asset: AssetName::Diem,
            to: JsonAddress(Address([9; 20])),
            amount_units: Units(u128::MAX),
        };
        let signed = SignedOperation::sign(
            &wallet,
            &domain,
            operation.clone(),
            4,
            2_000_000_000,
            Scheme::Eip712,
        );
        let text = serde_json::to_string(&signed).expect("serializes");
        assert!(text.contains(&format!("\"{}\"", u128::MAX)), "{text}");
        let back: SignedOperation = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, signed);
        let op = back.operation.to_op();
        assert_eq!(Operation::from_op(&op), Ok(operation));
        assert_eq!(
            crate::recover_signer(&domain, &op, &back.authorization()),
            Ok(wallet.address())
        );
    }

    #[test]
    fn bad_json_is_refused_with_the_reason() {
        for (text, reason) in [
            (r#"{"type":"stake","vvv_units":5}"#, "decimal digits"),
            (r#"{"type":"stake","vvv_units":"-5"}"#, "decimal digits"),
            (r#"{"type":"stake","vvv_units":"1e18"}"#, "decimal digits"),
            (
                r#"{"type":"stake","vvv_units":"999999999999999999999999999999999999999999"}"#,
                "too large",
            ),
            (r#"{"type":"mint","vvv_units":"5"}"#, "unknown variant"),
            (
                r#"{"type":"transfer","asset":"VVV","to":"0x12","amount_units":"1"}"#,
                "40 hex digits",
            ),
            (
                r#"{"type":"stake","vvv_units":"1","extra":1}"#,
                "unknown field",
            ),
        ] {
            let error = serde_json::from_str::<Operation>(text)
                .expect_err(text)
                .to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
