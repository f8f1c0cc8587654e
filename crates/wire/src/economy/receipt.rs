//! What a committed ledger operation did (`POST /ledger/operations`'s receipt).

use serde::{Deserialize, Serialize};

use super::BaseUnits;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
