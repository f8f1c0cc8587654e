//! Shared scaffolding for the ledger's integration tests: named addresses, whole-token amounts and
//! the seed's genesis. Test code only; nothing here is part of the ledger.

use ledger::{Address, Allocation, GenesisConfig, Ledger, Op, Outcome, Rejection, UNITS_PER_TOKEN};

/// 2025-01-27 00:00:00 UTC, the day VVV launched.
pub const GENESIS_SECONDS: u64 = 1_737_936_000;

pub const DAY_SECONDS: u64 = 86_400;

pub const ADMIN: Address = Address([0xAD; 20]);
pub const TREASURY: Address = Address([0x7E; 20]);
pub const INCENTIVE_FUND: Address = Address([0x1F; 20]);
pub const LIQUIDITY: Address = Address([0x11; 20]);
pub const TEAM: Address = Address([0x7A; 20]);
pub const ALICE: Address = Address([0xA1; 20]);
pub const BOB: Address = Address([0xB0; 20]);
pub const CAROL: Address = Address([0xCA; 20]);
pub const NOBODY: Address = Address([0x99; 20]);

pub fn tokens(whole: u128) -> u128 {
    whole * UNITS_PER_TOKEN
}

/// The seed's genesis, with the 50M airdrop split so that 16.32M is claimed by Alice and Bob
/// and 33.68M is left for Carol, who never claims (the seed's unclaimed figure).
pub fn venice_genesis_config() -> GenesisConfig {
    GenesisConfig::venice(
        ADMIN,
        TREASURY,
        INCENTIVE_FUND,
        LIQUIDITY,
        TEAM,
        vec![
            Allocation {
                address: ALICE,
                vvv_units: tokens(10_000_000),
            },
            Allocation {
                address: BOB,
                vvv_units: tokens(6_320_000),
            },
            Allocation {
                address: CAROL,
                vvv_units: tokens(33_680_000),
            },
        ],
    )
}

/// A ledger after the seed's genesis at [`GENESIS_SECONDS`], with emissions switched off so
/// that balances only move when a test says so.
pub fn quiet_ledger() -> Ledger {
    let mut config = venice_genesis_config();
    config.emission_rate_vvv_units_per_second = 0;
    let mut ledger = Ledger::new();
    ledger
        .apply(GENESIS_SECONDS, ADMIN, Op::Genesis(Box::new(config)))
        .expect("genesis is accepted");
    ledger
}

/// Applies an operation that must succeed, and checks the full audit afterwards.
pub fn accept(ledger: &mut Ledger, now_seconds: u64, signer: Address, op: Op) -> Outcome {
    let outcome = ledger
        .apply(now_seconds, signer, op.clone())
        .unwrap_or_else(|rejection| panic!("{op:?} by {signer} was rejected: {rejection}"));
    ledger.assert_invariants_full();
    outcome
}

/// Applies an operation that must be rejected for `expected`, and checks it changed nothing.
pub fn reject(ledger: &mut Ledger, now_seconds: u64, signer: Address, op: Op, expected: Rejection) {
    let before = ledger.clone();
    let hash_before = ledger.state_hash();
    let result = ledger.apply(now_seconds, signer, op.clone());
    assert_eq!(result, Err(expected), "{op:?} by {signer}");
    assert_eq!(
        ledger.state_hash(),
        hash_before,
        "a rejection changed the state hash"
    );
    assert!(*ledger == before, "a rejection changed the state");
}

/// Gives `who` `whole` VVV from the incentive fund and stakes it.
pub fn fund_and_stake(ledger: &mut Ledger, now_seconds: u64, who: Address, whole: u128) {
    accept(
        ledger,
        now_seconds,
        INCENTIVE_FUND,
        Op::Transfer {
            asset: ledger::Asset::Vvv,
            to: who,
            amount_units: tokens(whole),
        },
    );
    accept(
        ledger,
        now_seconds,
        who,
        Op::Stake {
            vvv_units: tokens(whole),
        },
    );
}

/// Formats base units as a decimal with two places, rounded half up, for comparing with
/// published figures such as "93.34".
pub fn two_decimals(units: u128) -> String {
    let hundredths = (units + UNITS_PER_TOKEN / 200) / (UNITS_PER_TOKEN / 100);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}
