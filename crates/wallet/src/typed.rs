//! The EIP-712 typed data of every ledger operation, and the EIP-191 message that stands for
//! it. The typed structs are what a wallet shows the user before signing; each carries the
//! signer's `nonce` and a `deadline` (seconds since the epoch) after which it is void.
//!
//! Operations that only the gateway or the operator sign and that have no natural flat shape
//! (genesis, curve and parameter changes, utilization reports, usage settlements) are signed as
//! a `LedgerOperation`: their name and the keccak-256 of their journal encoding.

use alloy_primitives::{Address as EthAddress, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, sol};
use ledger::{Asset, Op};

sol! {
    struct Transfer { string asset; address to; uint256 amount; uint64 nonce; uint64 deadline; }
    struct ClaimAirdrop { uint64 nonce; uint64 deadline; }
    struct BurnUnclaimedAirdrop { uint64 nonce; uint64 deadline; }
    struct ClaimVested { uint64 nonce; uint64 deadline; }
    struct Stake { uint256 vvv; uint64 nonce; uint64 deadline; }
    struct InitiateUnstake { uint256 svvv; uint64 nonce; uint64 deadline; }
    struct FinalizeUnstake { uint64 nonce; uint64 deadline; }
    struct ClaimRewards { uint64 nonce; uint64 deadline; }
    struct ClaimAndStakeRewards { uint64 nonce; uint64 deadline; }
    struct MintDiem { uint256 svvvToLock; uint256 minDiemOut; uint64 nonce; uint64 deadline; }
    struct BurnDiem { uint256 diem; uint64 nonce; uint64 deadline; }
    struct StakeDiem { uint256 diem; uint64 nonce; uint64 deadline; }
    struct InitiateDiemUnstake { uint256 diem; uint64 nonce; uint64 deadline; }
    struct FinalizeDiemUnstake { uint64 nonce; uint64 deadline; }
    struct SetEmissionRate { uint256 vvvPerSecond; uint64 nonce; uint64 deadline; }
    struct BuybackAndBurn { uint256 vvv; uint256 revenueUsd; uint64 nonce; uint64 deadline; }
    struct CreditAccount { address account; uint256 usd; uint256 bundledCredit; uint64 nonce; uint64 deadline; }
    struct LedgerOperation { string kind; bytes32 encoding; uint64 nonce; uint64 deadline; }
}

/// The EIP-712 domain of one ledger: name "Gondola", version "1", and as salt the keccak-256 of
/// the operator's address and the genesis time, so a signature made for one deployment is void
/// in every other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain {
    pub salt: [u8; 32],
}

impl Domain {
    pub const NAME: &'static str = "Gondola";
    pub const VERSION: &'static str = "1";

    /// The domain of the ledger whose genesis was signed by `admin` at `genesis_seconds`.
    pub fn for_ledger(admin: ledger::Address, genesis_seconds: u64) -> Self {
        let mut preimage = Vec::with_capacity(16 + 20 + 8);
        preimage.extend_from_slice(b"gondola-ledger\0\0");
        preimage.extend_from_slice(&admin.0);
        preimage.extend_from_slice(&genesis_seconds.to_be_bytes());
        Self {
            salt: keccak256(&preimage).0,
        }
    }

    pub fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(Self::NAME.into()),
            Some(Self::VERSION.into()),
            None,
            None,
            Some(B256::from(self.salt)),
        )
    }
}

fn uint(units: u128) -> U256 {
    U256::from(units)
}

fn eth(address: &ledger::Address) -> EthAddress {
    crate::to_alloy(*address)
}

/// The name of an operation, as in JSON (`"type"`) and in `LedgerOperation.kind`.
pub(crate) fn kind(op: &Op) -> &'static str {
    match op {
        Op::Genesis(_) => "genesis",
        Op::Transfer { .. } => "transfer",
        Op::ClaimAirdrop => "claim_airdrop",
        Op::BurnUnclaimedAirdrop => "burn_unclaimed_airdrop",
        Op::ClaimVested => "claim_vested",
        Op::Stake { .. } => "stake",
        Op::InitiateUnstake { .. } => "initiate_unstake",
        Op::FinalizeUnstake => "finalize_unstake",
        Op::ClaimRewards => "claim_rewards",
        Op::ClaimAndStakeRewards => "claim_and_stake_rewards",
        Op::MintDiem { .. } => "mint_diem",
        Op::BurnDiem { .. } => "burn_diem",
        Op::StakeDiem { .. } => "stake_diem",
        Op::InitiateDiemUnstake { .. } => "initiate_diem_unstake",
        Op::FinalizeDiemUnstake => "finalize_diem_unstake",
        Op::SetEmissionRate { .. } => "set_emission_rate",
        Op::SetMintCurve { .. } => "set_mint_curve",
        Op::SetParameters(_) => "set_parameters",
        Op::ReportUtilization { .. } => "report_utilization",
        Op::BuybackAndBurn { .. } => "buyback_and_burn",
        Op::CreditAccount { .. } => "credit_account",
        Op::SettleUsage { .. } => "settle_usage",
    }
}

/// The EIP-712 signing hash of `op` with `nonce` and `deadline` in `domain`.
pub fn eip712_digest(domain: &Domain, op: &Op, nonce: u64, deadline: u64) -> B256 {
    let domain = domain.eip712();
    match op {
        Op::Transfer {
            asset,
            to,
            amount_units,
        } => Transfer {
            asset: match asset {
                Asset::Vvv => "VVV".into(),
                Asset::Diem => "DIEM".into(),
            },
            to: eth(to),
            amount: uint(*amount_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::ClaimAirdrop => ClaimAirdrop { nonce, deadline }.eip712_signing_hash(&domain),
        Op::BurnUnclaimedAirdrop => {
            BurnUnclaimedAirdrop { nonce, deadline }.eip712_signing_hash(&domain)
        }
        Op::ClaimVested => ClaimVested { nonce, deadline }.eip712_signing_hash(&domain),
        Op::Stake { vvv_units } => Stake {
            vvv: uint(*vvv_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::InitiateUnstake { svvv_units } => InitiateUnstake {
            svvv: uint(*svvv_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::FinalizeUnstake => FinalizeUnstake { nonce, deadline }.eip712_signing_hash(&domain),
        Op::ClaimRewards => ClaimRewards { nonce, deadline }.eip712_signing_hash(&domain),
        Op::ClaimAndStakeRewards => {
            ClaimAndStakeRewards { nonce, deadline }.eip712_signing_hash(&domain)
        }
        Op::MintDiem {
            svvv_to_lock_units,
            min_diem_out_units,
        } => MintDiem {
            svvvToLock: uint(*svvv_to_lock_units),
            minDiemOut: uint(*min_diem_out_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::BurnDiem { diem_units } => BurnDiem {
            diem: uint(*diem_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::StakeDiem { diem_units } => StakeDiem {
            diem: uint(*diem_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::InitiateDiemUnstake { diem_units } => InitiateDiemUnstake {
            diem: uint(*diem_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::FinalizeDiemUnstake => {
            FinalizeDiemUnstake { nonce, deadline }.eip712_signing_hash(&domain)
        }
        Op::SetEmissionRate {
            vvv_units_per_second,
        } => SetEmissionRate {
            vvvPerSecond: uint(*vvv_units_per_second),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::BuybackAndBurn {
            vvv_units,
            revenue_usd_units,
        } => BuybackAndBurn {
            vvv: uint(*vvv_units),
            revenueUsd: uint(*revenue_usd_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        Op::CreditAccount {
            account,
            usd_units,
            bundled_credit_units,
        } => CreditAccount {
            account: eth(account),
            usd: uint(*usd_units),
            bundledCredit: uint(*bundled_credit_units),
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain),
        other => {
            let mut encoded = Vec::new();
            ledger_store::codec::encode_op(other, &mut encoded);
            LedgerOperation {
                kind: kind(other).into(),
                encoding: keccak256(&encoded),
                nonce,
                deadline,
            }
            .eip712_signing_hash(&domain)
        }
    }
}

/// The text signed with EIP-191 `personal_sign` instead of typed data: a fixed line and the
/// EIP-712 digest, which binds the operation, nonce, deadline and domain.
pub fn eip191_message(domain: &Domain, op: &Op, nonce: u64, deadline: u64) -> String {
    format!(
        "Gondola ledger operation\n{}",
        eip712_digest(domain, op, nonce, deadline)
    )
}
