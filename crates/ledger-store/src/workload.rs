//! A synthetic workload: a deterministic stream of operations the ledger accepts, for the crash
//! helper, the benchmark and tests. The store never uses it. Submission `index` is a pure
//! function of `index`, so a process that restarts on an existing journal resumes at
//! `index = last_sequence` without keeping any state of its own.
//!
//! Index 0 is the seed's genesis with launch emissions switched on. After it, each account in
//! turn runs a cycle of four operations that every ledger state reached this way accepts: the
//! treasury sends it 10 VVV, it stakes 5, sends 1 to the next account and starts unstaking 1.
//! The treasury's 25M VVV lasts for ten million operations.

use ledger::{Address, Allocation, Asset, GenesisConfig, Op, UNITS_PER_TOKEN};

use crate::store::Submission;

/// 2025-01-27 00:00:00 UTC, the day VVV launched.
pub const GENESIS_SECONDS: u64 = 1_737_936_000;

pub const ADMIN: Address = Address([0xAD; 20]);
pub const TREASURY: Address = Address([0x7E; 20]);
const INCENTIVE_FUND: Address = Address([0x1F; 20]);
const LIQUIDITY: Address = Address([0x11; 20]);
const TEAM: Address = Address([0x7A; 20]);

/// Bytes of the stand-in signature: the size of an Ethereum signature, so that records have
/// their production size.
pub const SIGNATURE_BYTES: usize = 65;

/// The workload's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// How many accounts the cycles rotate through (at least 2, since each sends to the next).
    pub accounts: u32,
}

impl Default for Workload {
    /// A thousand accounts: enough that the ledger's maps have some depth.
    fn default() -> Self {
        Self { accounts: 1_000 }
    }
}

impl Workload {
    /// The account with number `number`.
    pub fn account(number: u32) -> Address {
        let mut address = [0xACu8; 20];
        address[16..].copy_from_slice(&number.to_be_bytes());
        Address(address)
    }

    /// Submission `index` of the stream.
    pub fn submission(&self, index: u64) -> Submission {
        let now_seconds = GENESIS_SECONDS + index;
        let signature = stand_in_signature(index);
        if index == 0 {
            return Submission {
                now_seconds,
                signer: ADMIN,
                signature,
                op: Op::Genesis(Box::new(genesis_config())),
            };
        }
        let accounts = u64::from(self.accounts.max(2));
        let cycle = (index - 1) / 4;
        let number = u32::try_from(cycle % accounts).unwrap_or(0);
        let next = u32::try_from((cycle + 1) % accounts).unwrap_or(0);
        let account = Self::account(number);
        let tokens = |whole: u128| whole * UNITS_PER_TOKEN;
        let (signer, op) = match (index - 1) % 4 {
            0 => (
                TREASURY,
                Op::Transfer {
                    asset: Asset::Vvv,
                    to: account,
                    amount_units: tokens(10),
                },
            ),
            1 => (
                account,
                Op::Stake {
                    vvv_units: tokens(5),
                },
            ),
            2 => (
                account,
                Op::Transfer {
                    asset: Asset::Vvv,
                    to: Self::account(next),
                    amount_units: tokens(1),
                },
            ),
            _ => (
                account,
                Op::InitiateUnstake {
                    svvv_units: tokens(1),
                },
            ),
        };
        Submission {
            now_seconds,
            signer,
            signature,
            op,
        }
    }
}

/// The seed's genesis, with a small airdrop.
pub fn genesis_config() -> GenesisConfig {
    GenesisConfig::venice(
        ADMIN,
        TREASURY,
        INCENTIVE_FUND,
        LIQUIDITY,
        TEAM,
        vec![Allocation {
            address: Workload::account(0),
            vvv_units: 50_000_000 * UNITS_PER_TOKEN,
        }],
    )
}

/// Deterministic bytes standing in for a signature (the store does not check signatures).
fn stand_in_signature(index: u64) -> Vec<u8> {
    let mut state = index;
    (0..SIGNATURE_BYTES)
        .map(|_| {
            // SplitMix64's increment and output mix; any scrambling would do.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut mixed = state;
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (mixed ^ (mixed >> 31)) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::Ledger;

    #[test]
    fn the_ledger_accepts_every_submission_of_the_workload() {
        // Two laps of a small ring of accounts, so every operation meets an account that has
        // already been through a cycle.
        let workload = Workload { accounts: 50 };
        let mut ledger = Ledger::new();
        for index in 0..=400 {
            let submission = workload.submission(index);
            let op = submission.op.clone();
            ledger
                .apply(submission.now_seconds, submission.signer, submission.op)
                .unwrap_or_else(|rejection| panic!("{index}: {op:?}: {rejection}"));
        }
        assert_eq!(workload.submission(7), workload.submission(7));
        assert_eq!(workload.submission(7).signature.len(), SIGNATURE_BYTES);
    }
}
