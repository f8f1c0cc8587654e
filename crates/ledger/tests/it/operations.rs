//! One test per operation, each with the published number it must reproduce: genesis and its
//! allocations, vesting at 0, 12 and 24 months, the airdrop and the burn of its unclaimed 33.68M,
//! cooldowns of 7 days and 1 day, the emission split at utilization 0, ½ and 1, mint rates of 90
//! and 93.34, path-independent minting, the 0.1 DIEM minimum, and every admin operation; then the
//! signers' nonces and the gateway's usage settlement (debits, all-or-nothing, the allowance day,
//! late batches and the 400-day history).

use ledger::{
    Address, Asset, CurvePoint, GenesisConfig, Ledger, MAXIMUM_USAGE_ENTRIES, MintCurve, Op,
    Outcome, Parameters, Rejection, SplitPoint, UNITS_PER_TOKEN, USAGE_HISTORY_DAYS, UsageCharge,
    UsageDay, UtilizationSplit,
};

use crate::support::*;

#[test]
fn genesis_allocates_the_seed_supply_and_happens_once() {
    let mut empty = Ledger::new();
    reject(
        &mut empty,
        GENESIS_SECONDS,
        ALICE,
        Op::Stake { vvv_units: 1 },
        Rejection::NotInitialized,
    );
    let config = venice_genesis_config();
    reject(
        &mut empty,
        GENESIS_SECONDS,
        ALICE,
        Op::Genesis(Box::new(config.clone())),
        Rejection::NotAdmin,
    );
    let mut duplicated = config.clone();
    duplicated.airdrop.push(duplicated.airdrop[0]);
    reject(
        &mut empty,
        GENESIS_SECONDS,
        ADMIN,
        Op::Genesis(Box::new(duplicated)),
        Rejection::InvalidGenesis,
    );
    let mut bad_curve = config.clone();
    bad_curve.mint_curve_points.pop();
    reject(
        &mut empty,
        GENESIS_SECONDS,
        ADMIN,
        Op::Genesis(Box::new(bad_curve)),
        Rejection::InvalidGenesis,
    );

    let mut ledger = Ledger::new();
    let outcome = accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::Genesis(Box::new(config.clone())),
    );
    assert_eq!(
        outcome,
        Outcome::GenesisApplied {
            genesis_supply_units: tokens(100_000_000)
        }
    );
    let supply = ledger.supply();
    assert_eq!(supply.total_vvv_units, tokens(100_000_000));
    assert_eq!(supply.unclaimed_airdrop_vvv_units, tokens(50_000_000));
    assert_eq!(supply.unclaimed_team_vvv_units, tokens(7_500_000));
    assert_eq!(supply.circulating_vvv_units, tokens(42_500_000));
    let vvv = |who: Address| ledger.balances(who, GENESIS_SECONDS).vvv_units;
    // The company's 35M: 25M to the treasury and the team's 10M grant.
    assert_eq!(vvv(TREASURY), tokens(25_000_000));
    assert_eq!(vvv(INCENTIVE_FUND), tokens(10_000_000));
    assert_eq!(vvv(LIQUIDITY), tokens(5_000_000));
    assert_eq!(vvv(TEAM), tokens(2_500_000));
    assert_eq!(ledger.admin(), Some(ADMIN));
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::Genesis(Box::new(config)),
        Rejection::AlreadyInitialized,
    );
}

#[test]
fn team_grant_vests_a_quarter_at_genesis_and_the_rest_linearly_over_24_months() {
    let mut ledger = quiet_ledger();
    let month_seconds = ledger::VENICE_TEAM_VESTING_SECONDS / 24;
    // 0 months: 25% of 10M is already liquid; nothing more has vested.
    assert_eq!(
        ledger.balances(TEAM, GENESIS_SECONDS).vvv_units,
        tokens(2_500_000)
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        TEAM,
        Op::ClaimVested,
        Rejection::NothingVestedYet,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::ClaimVested,
        Rejection::NoVestingGrant,
    );
    // 12 months: half of the 7.5M vesting part.
    let twelve_months = GENESIS_SECONDS + 12 * month_seconds;
    assert_eq!(
        ledger.balances(TEAM, twelve_months).vesting_claimable_units,
        tokens(3_750_000)
    );
    let outcome = accept(&mut ledger, twelve_months, TEAM, Op::ClaimVested);
    assert_eq!(
        outcome,
        Outcome::VestedClaimed {
            vvv_units: tokens(3_750_000)
        }
    );
    reject(
        &mut ledger,
        twelve_months,
        TEAM,
        Op::ClaimVested,
        Rejection::NothingVestedYet,
    );
    // 24 months: the rest, and nothing after.
    let twenty_four_months = GENESIS_SECONDS + 24 * month_seconds;
    let outcome = accept(&mut ledger, twenty_four_months, TEAM, Op::ClaimVested);
    assert_eq!(
        outcome,
        Outcome::VestedClaimed {
            vvv_units: tokens(3_750_000)
        }
    );
    assert_eq!(
        ledger.balances(TEAM, twenty_four_months).vvv_units,
        tokens(10_000_000)
    );
    assert_eq!(ledger.supply().unclaimed_team_vvv_units, 0);
    reject(
        &mut ledger,
        twenty_four_months + DAY_SECONDS,
        TEAM,
        Op::ClaimVested,
        Rejection::NothingVestedYet,
    );
}

#[test]
fn airdrop_is_claimable_in_its_window_and_the_unclaimed_33_68m_is_burned_after() {
    let mut ledger = quiet_ledger();
    let deadline = GENESIS_SECONDS + ledger::VENICE_AIRDROP_CLAIM_WINDOW_SECONDS;
    assert_eq!(ledger.airdrop_claim_deadline_seconds(), Some(deadline));
    let outcome = accept(&mut ledger, GENESIS_SECONDS + 1, ALICE, Op::ClaimAirdrop);
    assert_eq!(
        outcome,
        Outcome::AirdropClaimed {
            vvv_units: tokens(10_000_000)
        }
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS + 2,
        ALICE,
        Op::ClaimAirdrop,
        Rejection::NoAirdropAllocation,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS + 2,
        NOBODY,
        Op::ClaimAirdrop,
        Rejection::NoAirdropAllocation,
    );
    accept(&mut ledger, deadline - 1, BOB, Op::ClaimAirdrop);
    reject(
        &mut ledger,
        deadline - 1,
        ADMIN,
        Op::BurnUnclaimedAirdrop,
        Rejection::AirdropWindowOpen,
    );
    reject(
        &mut ledger,
        deadline,
        CAROL,
        Op::ClaimAirdrop,
        Rejection::AirdropWindowClosed,
    );
    reject(
        &mut ledger,
        deadline,
        CAROL,
        Op::BurnUnclaimedAirdrop,
        Rejection::NotAdmin,
    );
    let outcome = accept(&mut ledger, deadline, ADMIN, Op::BurnUnclaimedAirdrop);
    assert_eq!(
        outcome,
        Outcome::UnclaimedAirdropBurned {
            vvv_units: tokens(33_680_000)
        }
    );
    let supply = ledger.supply();
    assert_eq!(
        supply.burned_unclaimed_airdrop_vvv_units,
        tokens(33_680_000)
    );
    assert_eq!(supply.total_vvv_units, tokens(66_320_000));
    assert_eq!(supply.unclaimed_airdrop_vvv_units, 0);
    reject(
        &mut ledger,
        deadline,
        ADMIN,
        Op::BurnUnclaimedAirdrop,
        Rejection::NoUnclaimedAirdrop,
    );
    reject(
        &mut ledger,
        deadline,
        CAROL,
        Op::ClaimAirdrop,
        Rejection::NoAirdropAllocation,
    );
}

#[test]
fn transfer_moves_liquid_vvv_and_diem_only() {
    let mut ledger = quiet_ledger();
    let now = GENESIS_SECONDS;
    let transfer = |asset, to, amount_units| Op::Transfer {
        asset,
        to,
        amount_units,
    };
    accept(
        &mut ledger,
        now,
        TREASURY,
        transfer(Asset::Vvv, ALICE, tokens(1_000)),
    );
    assert_eq!(ledger.balances(ALICE, now).vvv_units, tokens(1_000));
    assert_eq!(ledger.balances(TREASURY, now).vvv_units, tokens(24_999_000));
    reject(
        &mut ledger,
        now,
        ALICE,
        transfer(Asset::Vvv, BOB, 0),
        Rejection::ZeroAmount,
    );
    reject(
        &mut ledger,
        now,
        ALICE,
        transfer(Asset::Vvv, ALICE, 1),
        Rejection::SelfTransfer,
    );
    reject(
        &mut ledger,
        now,
        ALICE,
        transfer(Asset::Vvv, BOB, tokens(1_000) + 1),
        Rejection::InsufficientVvv,
    );
    reject(
        &mut ledger,
        now,
        ALICE,
        transfer(Asset::Diem, BOB, 1),
        Rejection::InsufficientDiem,
    );
    // Staked VVV is not liquid.
    accept(
        &mut ledger,
        now,
        ALICE,
        Op::Stake {
            vvv_units: tokens(600),
        },
    );
    reject(
        &mut ledger,
        now,
        ALICE,
        transfer(Asset::Vvv, BOB, tokens(401)),
        Rejection::InsufficientVvv,
    );
    // DIEM moves like VVV once minted.
    accept(
        &mut ledger,
        now,
        ALICE,
        Op::MintDiem {
            svvv_to_lock_units: tokens(600),
            min_diem_out_units: 0,
        },
    );
    let diem = ledger.balances(ALICE, now).diem_units;
    accept(&mut ledger, now, ALICE, transfer(Asset::Diem, BOB, diem));
    assert_eq!(ledger.balances(BOB, now).diem_units, diem);
    assert_eq!(ledger.balances(ALICE, now).diem_units, 0);
}

#[test]
fn unstaking_takes_a_7_day_cooldown() {
    let mut ledger = quiet_ledger();
    let start = GENESIS_SECONDS;
    fund_and_stake(&mut ledger, start, ALICE, 1_000);
    reject(
        &mut ledger,
        start,
        ALICE,
        Op::Stake { vvv_units: 1 },
        Rejection::InsufficientVvv,
    );
    reject(
        &mut ledger,
        start,
        ALICE,
        Op::InitiateUnstake { svvv_units: 0 },
        Rejection::ZeroAmount,
    );
    reject(
        &mut ledger,
        start,
        ALICE,
        Op::InitiateUnstake {
            svvv_units: tokens(1_001),
        },
        Rejection::InsufficientStakedVvv,
    );
    reject(
        &mut ledger,
        start,
        ALICE,
        Op::FinalizeUnstake,
        Rejection::NothingCoolingDown,
    );
    let outcome = accept(
        &mut ledger,
        start,
        ALICE,
        Op::InitiateUnstake {
            svvv_units: tokens(400),
        },
    );
    let unlock_at_seconds = start + 7 * DAY_SECONDS;
    assert_eq!(
        outcome,
        Outcome::UnstakeInitiated {
            cooling_svvv_units: tokens(400),
            unlock_at_seconds
        }
    );
    let balances = ledger.balances(ALICE, start);
    assert_eq!(
        (balances.staked_svvv_units, balances.cooling_svvv_units),
        (tokens(600), tokens(400))
    );
    assert_eq!(balances.svvv_unlock_at_seconds, Some(unlock_at_seconds));
    reject(
        &mut ledger,
        unlock_at_seconds - 1,
        ALICE,
        Op::FinalizeUnstake,
        Rejection::CooldownNotElapsed,
    );
    let outcome = accept(&mut ledger, unlock_at_seconds, ALICE, Op::FinalizeUnstake);
    assert_eq!(
        outcome,
        Outcome::UnstakeFinalized {
            vvv_units: tokens(400)
        }
    );
    let balances = ledger.balances(ALICE, unlock_at_seconds);
    assert_eq!(
        (balances.vvv_units, balances.cooling_svvv_units),
        (tokens(400), 0)
    );
    assert_eq!(balances.svvv_unlock_at_seconds, None);
    // A second initiation restarts the cooldown for everything cooling.
    accept(
        &mut ledger,
        unlock_at_seconds,
        ALICE,
        Op::InitiateUnstake {
            svvv_units: tokens(100),
        },
    );
    let outcome = accept(
        &mut ledger,
        unlock_at_seconds + DAY_SECONDS,
        ALICE,
        Op::InitiateUnstake {
            svvv_units: tokens(100),
        },
    );
    assert_eq!(
        outcome,
        Outcome::UnstakeInitiated {
            cooling_svvv_units: tokens(200),
            unlock_at_seconds: unlock_at_seconds + 8 * DAY_SECONDS
        }
    );
}

/// Rewards round down, never up: one accrual loses less than `stake / scale + 1` base units
/// (the accumulator increment's rounding, then the settlement's), which is 10^-15 VVV per
/// thousand staked.
fn assert_rewards_close(actual: u128, exact: u128, stake_units: u128) {
    assert!(actual <= exact, "{actual} exceeds the exact {exact}");
    let bound = stake_units / ledger::REWARD_PER_SHARE_SCALE + 2;
    assert!(
        exact - actual <= bound,
        "{actual} is more than {bound} below {exact}"
    );
}

/// Alice alone stakes; the emission rate is 1 VVV a second for 1,000 seconds at a given
/// utilization. Returns what Alice can claim and what the treasury received.
fn rewards_at_utilization(utilization_bps: u32) -> (u128, u128) {
    let mut ledger = quiet_ledger();
    fund_and_stake(&mut ledger, GENESIS_SECONDS, ALICE, 1_000);
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::ReportUtilization { utilization_bps },
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetEmissionRate {
            vvv_units_per_second: UNITS_PER_TOKEN,
        },
    );
    let treasury_before = ledger.balances(TREASURY, GENESIS_SECONDS).vvv_units;
    let later = GENESIS_SECONDS + 1_000;
    let projected = ledger.balances(ALICE, later).pending_rewards_units;
    let Outcome::RewardsClaimed { vvv_units } = accept(&mut ledger, later, ALICE, Op::ClaimRewards)
    else {
        panic!("claim outcome");
    };
    assert_eq!(projected, vvv_units, "the projection matches the claim");
    let supply = ledger.supply();
    assert_eq!(
        supply.emitted_to_stakers_vvv_units + supply.emitted_to_company_vvv_units,
        tokens(1_000)
    );
    let to_company = ledger.balances(TREASURY, later).vvv_units - treasury_before;
    (vvv_units, to_company)
}

#[test]
fn emission_split_is_80_20_at_0_and_100_percent_and_20_80_at_half_utilization() {
    for (utilization_bps, stakers_whole, company_whole) in [
        (0, 800, 200),
        (5_000, 200, 800),
        (10_000, 800, 200),
        (2_500, 500, 500),
    ] {
        let (staker, company) = rewards_at_utilization(utilization_bps);
        assert_rewards_close(staker, tokens(stakers_whole), tokens(1_000));
        assert_eq!(
            company,
            tokens(company_whole),
            "utilization {utilization_bps}"
        );
    }
    let mut ledger = quiet_ledger();
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::ReportUtilization {
            utilization_bps: 5_000,
        },
    );
    let split = ledger.emission_split();
    assert_eq!(
        (
            split.company_share_of_unlocked_bps,
            split.stakers_share_of_unlocked_bps
        ),
        (8_000, 2_000)
    );
    assert_eq!(split.stakers_share_of_locked_bps, 1_600);
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::ReportUtilization {
            utilization_bps: 10_001,
        },
        Rejection::UtilizationOutOfRange,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::ReportUtilization { utilization_bps: 0 },
        Rejection::NotAdmin,
    );
}

#[test]
fn rewards_are_claimed_or_staked_and_never_exceed_emissions() {
    let mut ledger = quiet_ledger();
    fund_and_stake(&mut ledger, GENESIS_SECONDS, ALICE, 3_000);
    fund_and_stake(&mut ledger, GENESIS_SECONDS, BOB, 1_000);
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::ClaimRewards,
        Rejection::NoRewards,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetEmissionRate {
            vvv_units_per_second: UNITS_PER_TOKEN,
        },
    );
    let later = GENESIS_SECONDS + 100;
    // 100 VVV emitted, 80% to stakers at 0% utilization, split 3:1.
    let Outcome::RewardsStaked { svvv_units } =
        accept(&mut ledger, later, ALICE, Op::ClaimAndStakeRewards)
    else {
        panic!("claim-and-stake outcome");
    };
    assert_rewards_close(svvv_units, tokens(60), tokens(3_000));
    assert_eq!(
        ledger.balances(ALICE, later).staked_svvv_units,
        tokens(3_000) + svvv_units
    );
    let Outcome::RewardsClaimed { vvv_units } = accept(&mut ledger, later, BOB, Op::ClaimRewards)
    else {
        panic!("claim outcome");
    };
    assert_rewards_close(vvv_units, tokens(20), tokens(1_000));
    let supply = ledger.supply();
    assert!(supply.rewards_claimed_vvv_units <= supply.emitted_to_stakers_vvv_units);
    reject(
        &mut ledger,
        later,
        BOB,
        Op::ClaimRewards,
        Rejection::NoRewards,
    );
    reject(
        &mut ledger,
        later,
        BOB,
        Op::ClaimAndStakeRewards,
        Rejection::NoRewards,
    );
}

#[test]
fn svvv_locked_behind_diem_earns_80_percent_of_the_unlocked_yield() {
    let mut ledger = quiet_ledger();
    // Bob locks exactly what 1,000 DIEM costs; Alice stakes the same amount unlocked.
    let cost = ledger
        .quote_mint_svvv_units(tokens(1_000))
        .expect("quotable");
    for who in [ALICE, BOB] {
        accept(
            &mut ledger,
            GENESIS_SECONDS,
            INCENTIVE_FUND,
            Op::Transfer {
                asset: Asset::Vvv,
                to: who,
                amount_units: cost,
            },
        );
        accept(
            &mut ledger,
            GENESIS_SECONDS,
            who,
            Op::Stake { vvv_units: cost },
        );
    }
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        BOB,
        Op::MintDiem {
            svvv_to_lock_units: cost,
            min_diem_out_units: tokens(1_000),
        },
    );
    let bob = ledger.balances(BOB, GENESIS_SECONDS);
    assert_eq!((bob.locked_svvv_units, bob.staked_svvv_units), (cost, 0));
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetEmissionRate {
            vvv_units_per_second: UNITS_PER_TOKEN,
        },
    );
    let later = GENESIS_SECONDS + 10_000;
    let alice_rewards = ledger.balances(ALICE, later).pending_rewards_units;
    let bob_rewards = ledger.balances(BOB, later).pending_rewards_units;
    // At 0% utilization unlocked stake keeps 80% of its emissions and locked stake 80% of that:
    // of 10,000 VVV split evenly, Alice earns 4,000 and Bob 3,200.
    assert_rewards_close(alice_rewards, tokens(4_000), cost);
    assert_rewards_close(bob_rewards, tokens(3_200), cost);
    let ratio_ppb = bob_rewards * 1_000_000_000 / alice_rewards;
    assert!(ratio_ppb.abs_diff(800_000_000) <= 1, "{ratio_ppb}");
    let apr = ledger.staking_apr();
    assert_eq!(apr.locked.numerator * 10 / apr.unlocked.numerator, 8);
}

#[test]
fn mint_rate_is_90_at_zero_supply_and_93_34_once_10_000_diem_are_minted() {
    let mut ledger = quiet_ledger();
    assert_eq!(ledger.mint_rate_svvv_units_per_diem(), 90 * UNITS_PER_TOKEN);
    let cost = ledger
        .quote_mint_svvv_units(tokens(10_000))
        .expect("quotable");
    // The table's trapezoids from 0 to 10,000 DIEM: 908,308.30 sVVV. (The formula's exact
    // integral is 908,287.04; chords over a convex curve cost 0.002% more.)
    assert_eq!(two_decimals(cost), "908308.30");
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        TREASURY,
        Op::Stake {
            vvv_units: tokens(1_000_000),
        },
    );
    let outcome = accept(
        &mut ledger,
        GENESIS_SECONDS,
        TREASURY,
        Op::MintDiem {
            svvv_to_lock_units: cost,
            min_diem_out_units: tokens(10_000),
        },
    );
    let Outcome::DiemMinted {
        diem_units,
        svvv_locked_units,
        mint_rate_after_svvv_units_per_diem,
    } = outcome
    else {
        panic!("mint outcome");
    };
    assert_eq!((diem_units, svvv_locked_units), (tokens(10_000), cost));
    assert_eq!(two_decimals(mint_rate_after_svvv_units_per_diem), "93.34");
    assert_eq!(
        two_decimals(ledger.mint_rate_svvv_units_per_diem()),
        "93.34"
    );
    let liability = ledger.diem_liability();
    assert_eq!(liability.outstanding_diem_units, tokens(10_000));
    assert_eq!(liability.liability_usd_units_per_day, tokens(10_000));
    assert_eq!(liability.locked_svvv_units, cost);
    assert_eq!(liability.locked_svvv_units_per_diem, Some(cost / 10_000));
    // At the target supply the rate is 90 · e² ≈ 665.02.
    let to_target = ledger
        .quote_mint_svvv_units(tokens(28_000))
        .expect("quotable");
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        TREASURY,
        Op::Stake {
            vvv_units: tokens(20_000_000),
        },
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        TREASURY,
        Op::MintDiem {
            svvv_to_lock_units: to_target,
            min_diem_out_units: tokens(28_000),
        },
    );
    assert_eq!(
        two_decimals(ledger.mint_rate_svvv_units_per_diem()),
        "665.02"
    );
}

#[test]
fn one_large_mint_locks_exactly_what_many_small_mints_lock() {
    let total_diem = tokens(12_345) + 678;
    for pieces in [1u128, 2, 7, 100] {
        let mut ledger = quiet_ledger();
        accept(
            &mut ledger,
            GENESIS_SECONDS,
            TREASURY,
            Op::Stake {
                vvv_units: tokens(10_000_000),
            },
        );
        let mut minted = 0;
        for piece in 0..pieces {
            let diem = if piece + 1 == pieces {
                total_diem - minted
            } else {
                total_diem / pieces
            };
            let cost = ledger.quote_mint_svvv_units(diem).expect("quotable");
            accept(
                &mut ledger,
                GENESIS_SECONDS,
                TREASURY,
                Op::MintDiem {
                    svvv_to_lock_units: cost,
                    min_diem_out_units: diem,
                },
            );
            minted += diem;
        }
        let locked = ledger.balances(TREASURY, GENESIS_SECONDS).locked_svvv_units;
        let single = Ledger::new()
            .mint_curve()
            .quote_svvv_units(0, total_diem)
            .expect("quotable");
        // Prices are differences of one cumulative cost function, so they telescope: equal, not
        // merely close, whatever the number of pieces.
        assert_eq!(locked, single, "{pieces} pieces");
        assert_eq!(ledger.supply().diem_supply_units, total_diem);
    }
    // Spending a budget in pieces never buys more DIEM than spending it at once: each piece
    // leaves less than one base unit's price unspent.
    let budget = tokens(1_000_000) + 12_345;
    let mut at_once = quiet_ledger();
    accept(
        &mut at_once,
        GENESIS_SECONDS,
        TREASURY,
        Op::Stake { vvv_units: budget },
    );
    accept(
        &mut at_once,
        GENESIS_SECONDS,
        TREASURY,
        Op::MintDiem {
            svvv_to_lock_units: budget,
            min_diem_out_units: 0,
        },
    );
    let mut in_pieces = quiet_ledger();
    accept(
        &mut in_pieces,
        GENESIS_SECONDS,
        TREASURY,
        Op::Stake { vvv_units: budget },
    );
    for _ in 0..10 {
        accept(
            &mut in_pieces,
            GENESIS_SECONDS,
            TREASURY,
            Op::MintDiem {
                svvv_to_lock_units: budget / 10,
                min_diem_out_units: 0,
            },
        );
    }
    let diem_at_once = at_once.supply().diem_supply_units;
    let diem_in_pieces = in_pieces.supply().diem_supply_units;
    assert!(diem_in_pieces <= diem_at_once);
    assert!(
        diem_at_once - diem_in_pieces <= 10,
        "{diem_at_once} vs {diem_in_pieces}"
    );
}

#[test]
fn minting_respects_the_slippage_guard_and_the_staked_balance() {
    let mut ledger = quiet_ledger();
    fund_and_stake(&mut ledger, GENESIS_SECONDS, ALICE, 900);
    let mint = |svvv_to_lock_units, min_diem_out_units| Op::MintDiem {
        svvv_to_lock_units,
        min_diem_out_units,
    };
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        mint(0, 0),
        Rejection::ZeroAmount,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        mint(tokens(901), 0),
        Rejection::InsufficientStakedVvv,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        mint(89, 0),
        Rejection::MintsNoDiem,
    );
    // 900 sVVV buys a little under 10 DIEM at 90 rising: asking for 10 is refused.
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        mint(tokens(900), tokens(10)),
        Rejection::SlippageExceeded,
    );
    let preview = ledger.preview_mint(tokens(900)).expect("quotable");
    assert!(preview.diem_units < tokens(10) && preview.diem_units > tokens(9_999) / 1_000);
    let outcome = accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        mint(tokens(900), preview.diem_units),
    );
    assert!(
        matches!(outcome, Outcome::DiemMinted { diem_units, svvv_locked_units, .. }
        if diem_units == preview.diem_units && svvv_locked_units == preview.svvv_units)
    );
}

#[test]
fn burning_diem_unlocks_the_proportional_svvv() {
    let mut ledger = quiet_ledger();
    fund_and_stake(&mut ledger, GENESIS_SECONDS, ALICE, 10_000);
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::MintDiem {
            svvv_to_lock_units: tokens(9_000),
            min_diem_out_units: 0,
        },
    );
    let minted = ledger.balances(ALICE, GENESIS_SECONDS);
    let rate_before_burn = ledger.mint_rate_svvv_units_per_diem();
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::BurnDiem { diem_units: 0 },
        Rejection::ZeroAmount,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::BurnDiem {
            diem_units: minted.diem_units + 1,
        },
        Rejection::InsufficientDiem,
    );
    let third = minted.diem_units / 3;
    let outcome = accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::BurnDiem { diem_units: third },
    );
    let expected_unlock =
        ledger::mul_div_floor(minted.locked_svvv_units, third, minted.diem_units).expect("fits");
    assert_eq!(
        outcome,
        Outcome::DiemBurned {
            diem_units: third,
            svvv_unlocked_units: expected_unlock
        }
    );
    assert!(
        ledger.mint_rate_svvv_units_per_diem() < rate_before_burn,
        "burning lowers the rate"
    );
    // DIEM received from someone else cannot unlock sVVV its holder never locked.
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::Transfer {
            asset: Asset::Diem,
            to: BOB,
            amount_units: third,
        },
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        BOB,
        Op::BurnDiem { diem_units: 1 },
        Rejection::BurnExceedsMintedDiem,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        BOB,
        Op::Transfer {
            asset: Asset::Diem,
            to: ALICE,
            amount_units: third,
        },
    );
    // The last burn unlocks everything that is left.
    let rest = ledger
        .balances(ALICE, GENESIS_SECONDS)
        .diem_minted_outstanding_units;
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::BurnDiem { diem_units: rest },
    );
    let after = ledger.balances(ALICE, GENESIS_SECONDS);
    assert_eq!(
        (
            after.locked_svvv_units,
            after.diem_units,
            after.diem_minted_outstanding_units
        ),
        (0, 0, 0)
    );
    assert_eq!(after.staked_svvv_units, tokens(10_000));
    assert_eq!(ledger.supply().diem_supply_units, 0);
    assert_eq!(ledger.mint_rate_svvv_units_per_diem(), 90 * UNITS_PER_TOKEN);
}

#[test]
fn staked_diem_is_spendable_from_0_1_and_unstakes_after_1_day() {
    let mut ledger = quiet_ledger();
    fund_and_stake(&mut ledger, GENESIS_SECONDS, ALICE, 1_000);
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::MintDiem {
            svvv_to_lock_units: tokens(1_000),
            min_diem_out_units: 0,
        },
    );
    let tenth = UNITS_PER_TOKEN / 10;
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::StakeDiem { diem_units: 0 },
        Rejection::ZeroAmount,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::StakeDiem {
            diem_units: tenth - 1,
        },
    );
    assert_eq!(
        ledger.diem_allowance_usd_units_per_day(ALICE),
        0,
        "0.099… DIEM is not spendable"
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::StakeDiem { diem_units: 1 },
    );
    assert_eq!(
        ledger.diem_allowance_usd_units_per_day(ALICE),
        tenth,
        "0.1 DIEM is $0.10 a day"
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::StakeDiem {
            diem_units: tokens(9) - tenth,
        },
    );
    assert_eq!(
        ledger
            .balances(ALICE, GENESIS_SECONDS)
            .diem_allowance_usd_units_per_day,
        tokens(9)
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::InitiateDiemUnstake {
            diem_units: tokens(9) + 1,
        },
        Rejection::InsufficientStakedDiem,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::FinalizeDiemUnstake,
        Rejection::NoDiemCoolingDown,
    );
    let outcome = accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::InitiateDiemUnstake {
            diem_units: tokens(4),
        },
    );
    let unlock_at_seconds = GENESIS_SECONDS + DAY_SECONDS;
    assert_eq!(
        outcome,
        Outcome::DiemUnstakeInitiated {
            cooling_diem_units: tokens(4),
            unlock_at_seconds
        }
    );
    assert_eq!(ledger.diem_allowance_usd_units_per_day(ALICE), tokens(5));
    reject(
        &mut ledger,
        unlock_at_seconds - 1,
        ALICE,
        Op::FinalizeDiemUnstake,
        Rejection::DiemCooldownNotElapsed,
    );
    let before = ledger.balances(ALICE, unlock_at_seconds).diem_units;
    accept(
        &mut ledger,
        unlock_at_seconds,
        ALICE,
        Op::FinalizeDiemUnstake,
    );
    assert_eq!(
        ledger.balances(ALICE, unlock_at_seconds).diem_units,
        before + tokens(4)
    );
    assert_eq!(
        ledger
            .balances(ALICE, unlock_at_seconds)
            .diem_unlock_at_seconds,
        None
    );
}

#[test]
fn admin_operations_are_refused_from_anyone_but_the_admin() {
    let mut ledger = quiet_ledger();
    let admin_ops = [
        Op::BurnUnclaimedAirdrop,
        Op::SetEmissionRate {
            vvv_units_per_second: 1,
        },
        Op::SetMintCurve {
            points: MintCurve::venice_default_points(),
        },
        Op::SetParameters(Box::default()),
        Op::ReportUtilization { utilization_bps: 1 },
        Op::BuybackAndBurn {
            vvv_units: 1,
            revenue_usd_units: 1,
        },
        Op::CreditAccount {
            account: ALICE,
            usd_units: 1,
            bundled_credit_units: 0,
        },
        Op::SettleUsage {
            day: GENESIS_SECONDS / DAY_SECONDS,
            entries: vec![UsageCharge {
                account: ALICE,
                requests: 1,
                ..UsageCharge::default()
            }],
        },
    ];
    for op in admin_ops {
        assert!(op.requires_admin());
        for signer in [TREASURY, ALICE, Address::ZERO] {
            reject(
                &mut ledger,
                GENESIS_SECONDS,
                signer,
                op.clone(),
                Rejection::NotAdmin,
            );
        }
    }
}

#[test]
fn the_emission_rate_is_bounded_and_applies_from_now_on() {
    let mut ledger = quiet_ledger();
    fund_and_stake(&mut ledger, GENESIS_SECONDS, ALICE, 1_000);
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetEmissionRate {
            vvv_units_per_second: ledger::MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND + 1,
        },
        Rejection::EmissionRateTooHigh,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetEmissionRate {
            vvv_units_per_second: UNITS_PER_TOKEN,
        },
    );
    // 100 s at 1 VVV/s, then 100 s at 3 VVV/s: 400 VVV in all.
    accept(
        &mut ledger,
        GENESIS_SECONDS + 100,
        ADMIN,
        Op::SetEmissionRate {
            vvv_units_per_second: 3 * UNITS_PER_TOKEN,
        },
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS + 200,
        ADMIN,
        Op::ReportUtilization { utilization_bps: 0 },
    );
    let supply = ledger.supply();
    assert_eq!(
        supply.emitted_to_stakers_vvv_units + supply.emitted_to_company_vvv_units,
        tokens(400)
    );
    assert_eq!(
        ledger.emission_rate_vvv_units_per_second(),
        3 * UNITS_PER_TOKEN
    );
    let apr = ledger.staking_apr();
    // 3 VVV/s · 31,536,000 s · 80% over 1,000 staked = 75,686.4 = 756,864,000 bps.
    assert_eq!(apr.unlocked.basis_points(), Some(756_864_000));
    assert_eq!(Ledger::new().staking_apr().unlocked.basis_points(), None);
}

#[test]
fn time_never_goes_backwards() {
    let mut ledger = quiet_ledger();
    accept(
        &mut ledger,
        GENESIS_SECONDS + 10,
        TREASURY,
        Op::Stake { vvv_units: 1 },
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS + 9,
        TREASURY,
        Op::Stake { vvv_units: 1 },
        Rejection::TimeWentBackwards,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS + 10,
        TREASURY,
        Op::Stake { vvv_units: 1 },
    );
    assert_eq!(ledger.now_seconds(), GENESIS_SECONDS + 10);
}

#[test]
fn the_mint_curve_can_be_replaced_only_by_a_valid_table() {
    let mut ledger = quiet_ledger();
    let mut falling = MintCurve::venice_default_points();
    falling[10].rate_svvv_units_per_diem = 1;
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetMintCurve { points: falling },
        Rejection::InvalidMintCurve,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetMintCurve { points: vec![] },
        Rejection::InvalidMintCurve,
    );
    let doubled: Vec<CurvePoint> = MintCurve::venice_default_points()
        .into_iter()
        .map(|point| CurvePoint {
            rate_svvv_units_per_diem: (point.rate_svvv_units_per_diem * 2)
                .min(ledger::MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM),
            ..point
        })
        .collect();
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetMintCurve {
            points: doubled.clone(),
        },
    );
    assert_eq!(
        ledger.mint_rate_svvv_units_per_diem(),
        180 * UNITS_PER_TOKEN
    );
    assert_eq!(ledger.mint_curve().points(), doubled.as_slice());
}

#[test]
fn parameters_are_validated_and_take_effect() {
    let mut ledger = quiet_ledger();
    let invalid = Parameters {
        utilization_split: UtilizationSplit {
            points: vec![SplitPoint {
                utilization_bps: 0,
                company_share_bps: 0,
            }],
        },
        ..Parameters::default()
    };
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetParameters(Box::new(invalid)),
        Rejection::InvalidParameters,
    );
    let parameters = Parameters {
        unstake_cooldown_seconds: 3 * DAY_SECONDS,
        ..Parameters::default()
    };
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::SetParameters(Box::new(parameters.clone())),
    );
    assert_eq!(ledger.parameters(), &parameters);
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        TREASURY,
        Op::Stake {
            vvv_units: tokens(1),
        },
    );
    let outcome = accept(
        &mut ledger,
        GENESIS_SECONDS,
        TREASURY,
        Op::InitiateUnstake {
            svvv_units: tokens(1),
        },
    );
    assert_eq!(
        outcome,
        Outcome::UnstakeInitiated {
            cooling_svvv_units: tokens(1),
            unlock_at_seconds: GENESIS_SECONDS + 3 * DAY_SECONDS
        }
    );
}

#[test]
fn buyback_burns_treasury_vvv_and_records_the_revenue_per_day() {
    let mut ledger = quiet_ledger();
    let op = |vvv_units, revenue_usd_units| Op::BuybackAndBurn {
        vvv_units,
        revenue_usd_units,
    };
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        op(0, 5),
        Rejection::ZeroAmount,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        op(tokens(25_000_001), 5),
        Rejection::InsufficientVvv,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        op(tokens(1_000), tokens(2_500)),
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS + 3_600,
        ADMIN,
        op(tokens(500), tokens(1_000)),
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS + DAY_SECONDS,
        ADMIN,
        op(tokens(1), 0),
    );
    let supply = ledger.supply();
    assert_eq!(supply.burned_by_buyback_vvv_units, tokens(1_501));
    assert_eq!(supply.buyback_revenue_usd_units, tokens(3_500));
    assert_eq!(supply.total_vvv_units, tokens(100_000_000 - 1_501));
    let day = GENESIS_SECONDS / DAY_SECONDS;
    let days: Vec<_> = ledger
        .buybacks_by_day()
        .iter()
        .map(|(day, record)| (*day, record.vvv_burned_units, record.revenue_usd_units))
        .collect();
    assert_eq!(
        days,
        vec![(day, tokens(1_500), tokens(3_500)), (day + 1, tokens(1), 0)]
    );
}

#[test]
fn usd_and_bundled_credits_are_credited_by_the_admin() {
    let mut ledger = quiet_ledger();
    let credit = |usd_units, bundled_credit_units| Op::CreditAccount {
        account: ALICE,
        usd_units,
        bundled_credit_units,
    };
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        credit(0, 0),
        Rejection::ZeroAmount,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        credit(tokens(10), tokens(5)),
    );
    accept(&mut ledger, GENESIS_SECONDS, ADMIN, credit(tokens(1), 0));
    let balances = ledger.balances(ALICE, GENESIS_SECONDS);
    assert_eq!(
        (balances.usd_credit_units, balances.bundled_credit_units),
        (tokens(11), tokens(5))
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        credit(u128::MAX, 0),
        Rejection::Overflow,
    );
    assert_eq!(ledger.supply().usd_credit_units, tokens(11));
}

#[test]
fn genesis_rejects_out_of_range_terms() {
    let base = venice_genesis_config();
    let variants: [fn(&mut GenesisConfig); 9] = [
        |config| config.admin = Address::ZERO,
        |config| config.treasury.address = Address::ZERO,
        |config| config.team_unlocked_at_genesis_bps = 10_001,
        |config| config.team_vesting_seconds = ledger::MAXIMUM_GENESIS_TERM_SECONDS + 1,
        |config| config.airdrop_claim_window_seconds = ledger::MAXIMUM_GENESIS_TERM_SECONDS + 1,
        |config| config.emission_rate_vvv_units_per_second = u128::MAX,
        |config| config.airdrop[1].vvv_units = 0,
        |config| config.treasury.vvv_units = u128::MAX,
        |config| config.parameters.locked_yield_bps = 20_000,
    ];
    for (index, change) in variants.iter().enumerate() {
        let mut config = base.clone();
        change(&mut config);
        let signer = config.admin;
        let mut ledger = Ledger::new();
        let result = ledger.apply(GENESIS_SECONDS, signer, Op::Genesis(Box::new(config)));
        assert_eq!(result, Err(Rejection::InvalidGenesis), "variant {index}");
        assert!(!ledger.is_initialized());
    }
}

#[test]
fn nonces_count_each_signers_accepted_operations_and_nothing_else() {
    let mut ledger = Ledger::new();
    assert_eq!(ledger.next_nonce(ADMIN), 0);
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::Genesis(Box::new(venice_genesis_config())),
        Rejection::NotAdmin,
    );
    assert_eq!(ledger.next_nonce(ALICE), 0);
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::Genesis(Box::new(venice_genesis_config())),
    );
    // Genesis is the admin's first operation; the accounts it funded signed nothing.
    assert_eq!(ledger.next_nonce(ADMIN), 1);
    assert_eq!(ledger.balances(ADMIN, GENESIS_SECONDS).nonce, 1);
    assert_eq!(ledger.next_nonce(TREASURY), 0);
    assert_eq!(ledger.operations_accepted(), 1);

    accept(&mut ledger, GENESIS_SECONDS, ALICE, Op::ClaimAirdrop);
    assert_eq!(ledger.next_nonce(ALICE), 1);
    // Rejections count for nobody, whatever the reason.
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::ClaimAirdrop,
        Rejection::NoAirdropAllocation,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS - 1,
        ALICE,
        Op::Stake { vvv_units: 1 },
        Rejection::TimeWentBackwards,
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::ReportUtilization { utilization_bps: 1 },
        Rejection::NotAdmin,
    );
    assert_eq!(ledger.next_nonce(ALICE), 1);
    // Admin operations count for the admin, not for the account they touch.
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::CreditAccount {
            account: BOB,
            usd_units: tokens(1),
            bundled_credit_units: 0,
        },
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        Op::ReportUtilization { utilization_bps: 1 },
    );
    assert_eq!(ledger.next_nonce(ADMIN), 3);
    assert_eq!(ledger.next_nonce(BOB), 0);
    // A signer that gives everything away is still stored, for its nonce alone.
    let everything = ledger.balances(ALICE, GENESIS_SECONDS).vvv_units;
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ALICE,
        Op::Transfer {
            asset: Asset::Vvv,
            to: CAROL,
            amount_units: everything,
        },
    );
    let alice = ledger.balances(ALICE, GENESIS_SECONDS);
    assert_eq!((alice.vvv_units, alice.nonce), (0, 2));
    assert!(ledger.account_addresses().any(|address| address == ALICE));
    assert!(!ledger.account_addresses().any(|address| address == NOBODY));
    assert_eq!(ledger.operations_accepted(), 5);
    // The nonce is state: two ledgers whose holdings are the same but whose operations were
    // signed by different people have different hashes.
    let mut by_users = quiet_ledger();
    accept(&mut by_users, GENESIS_SECONDS, ALICE, Op::ClaimAirdrop);
    accept(&mut by_users, GENESIS_SECONDS, BOB, Op::ClaimAirdrop);
    let mut by_admin = by_users.clone();
    let to = |to| Op::Transfer {
        asset: Asset::Vvv,
        to,
        amount_units: 1,
    };
    accept(&mut by_users, GENESIS_SECONDS, ALICE, to(BOB));
    accept(&mut by_users, GENESIS_SECONDS, BOB, to(ALICE));
    let unchanged = Op::ReportUtilization { utilization_bps: 0 };
    accept(&mut by_admin, GENESIS_SECONDS, ADMIN, unchanged.clone());
    accept(&mut by_admin, GENESIS_SECONDS, ADMIN, unchanged);
    for who in [ALICE, BOB] {
        let (users, admin) = (
            by_users.balances(who, GENESIS_SECONDS),
            by_admin.balances(who, GENESIS_SECONDS),
        );
        assert_eq!(users.vvv_units, admin.vvv_units);
        assert_eq!(users.nonce, admin.nonce + 1);
    }
    assert_eq!(
        by_users.operations_accepted(),
        by_admin.operations_accepted()
    );
    assert_ne!(by_users.state_hash(), by_admin.state_hash());
}

const TODAY: u64 = GENESIS_SECONDS / DAY_SECONDS;

/// A usage entry with only its money set.
fn usage(account: Address, allowance_units: u128, bundled: u128, usd: u128) -> UsageCharge {
    UsageCharge {
        account,
        requests: 1,
        prompt_tokens: 100,
        completion_tokens: 10,
        allowance_units,
        bundled_credit_units: bundled,
        usd_units: usd,
    }
}

fn settle(day: u64, entries: Vec<UsageCharge>) -> Op {
    Op::SettleUsage { day, entries }
}

/// A quiet ledger with $10 of USD credit and $5 of bundled credit for Alice and Bob each.
fn credited_ledger() -> Ledger {
    let mut ledger = quiet_ledger();
    for account in [ALICE, BOB] {
        accept(
            &mut ledger,
            GENESIS_SECONDS,
            ADMIN,
            Op::CreditAccount {
                account,
                usd_units: tokens(10),
                bundled_credit_units: tokens(5),
            },
        );
    }
    ledger
}

#[test]
fn usage_settlement_debits_credits_and_records_the_day() {
    let mut ledger = credited_ledger();
    let admin_nonce = ledger.next_nonce(ADMIN);
    let outcome = accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(
            TODAY,
            vec![
                UsageCharge {
                    account: ALICE,
                    requests: 12,
                    prompt_tokens: 3_400,
                    completion_tokens: 560,
                    allowance_units: tokens(4),
                    bundled_credit_units: tokens(2),
                    usd_units: tokens(3),
                },
                // Carol has no credits, but usage drawn from the allowance alone needs none.
                usage(CAROL, tokens(1), 0, 0),
            ],
        ),
    );
    assert_eq!(
        outcome,
        Outcome::UsageSettled {
            entries: 2,
            usd_units: tokens(3),
            bundled_credit_units: tokens(2),
            allowance_units: tokens(5),
        }
    );
    let alice = ledger.balances(ALICE, GENESIS_SECONDS);
    assert_eq!(
        (alice.usd_credit_units, alice.bundled_credit_units),
        (tokens(7), tokens(3))
    );
    // The gateway signs settlements: they count for the admin, not for the accounts charged.
    assert_eq!(ledger.next_nonce(ADMIN), admin_nonce + 1);
    assert_eq!(alice.nonce, 0);
    assert_eq!(
        ledger.usage_history(ALICE).collect::<Vec<_>>(),
        vec![(
            TODAY,
            &UsageDay {
                requests: 12,
                prompt_tokens: 3_400,
                completion_tokens: 560,
                allowance_units: tokens(4),
                bundled_credit_units: tokens(2),
                usd_units: tokens(3),
            }
        )]
    );
    assert_eq!(ledger.last_usage_day(ALICE), Some(TODAY));
    assert_eq!(ledger.last_usage_day(BOB), None);
    assert_eq!(ledger.usage_history(BOB).count(), 0);
    assert_eq!(ledger.allowance_spent_units(ALICE, TODAY), tokens(4));
    assert_eq!(ledger.allowance_spent_units(CAROL, TODAY), tokens(1));
    assert_eq!(ledger.allowance_spent_units(ALICE, TODAY - 1), 0);
    let supply = ledger.supply();
    assert_eq!(supply.usd_credit_units, tokens(17));
    assert_eq!(supply.bundled_credit_units, tokens(8));
    assert_eq!(
        (
            supply.usage_allowance_units,
            supply.usage_bundled_credit_units,
            supply.usage_usd_units,
            supply.usage_revenue_usd_units,
        ),
        (tokens(5), tokens(2), tokens(3), tokens(10))
    );

    // A second batch for the same day adds to it.
    accept(
        &mut ledger,
        GENESIS_SECONDS + 60,
        ADMIN,
        settle(TODAY, vec![usage(ALICE, tokens(1), tokens(3), tokens(7))]),
    );
    let alice = ledger.balances(ALICE, GENESIS_SECONDS + 60);
    assert_eq!((alice.usd_credit_units, alice.bundled_credit_units), (0, 0));
    let (_, today) = ledger.usage_history(ALICE).last().expect("a day");
    assert_eq!(
        (today.requests, today.allowance_units, today.usd_units),
        (13, tokens(5), tokens(10))
    );
    assert_eq!(ledger.allowance_spent_units(ALICE, TODAY), tokens(5));
    assert_eq!(ledger.supply().usage_revenue_usd_units, tokens(21));

    // Usage history is state: the same totals charged to different accounts, or on different
    // days, or as different token counts, are different states.
    let base = credited_ledger();
    let hashes: Vec<_> = [
        usage(ALICE, 1, 0, 0),
        usage(BOB, 1, 0, 0),
        UsageCharge {
            prompt_tokens: 101,
            ..usage(ALICE, 1, 0, 0)
        },
    ]
    .into_iter()
    .flat_map(|entry| [(TODAY, entry), (TODAY - 1, entry)])
    .map(|(day, entry)| {
        let mut ledger = base.clone();
        accept(
            &mut ledger,
            GENESIS_SECONDS,
            ADMIN,
            settle(day, vec![entry]),
        );
        ledger.state_hash()
    })
    .collect();
    let distinct: std::collections::BTreeSet<_> = hashes.iter().collect();
    assert_eq!(distinct.len(), hashes.len());
}

#[test]
fn an_overdrawing_entry_rejects_the_whole_settlement() {
    let mut ledger = credited_ledger();
    let fine = usage(ALICE, tokens(1), tokens(1), tokens(1));
    for overdraft in [
        usage(BOB, 0, tokens(5) + 1, 0),
        usage(BOB, 0, 0, tokens(10) + 1),
        usage(CAROL, 0, 0, 1),
    ] {
        // Whether the overdraft comes first or last, nothing is debited or recorded.
        for entries in [vec![fine, overdraft], vec![overdraft, fine]] {
            reject(
                &mut ledger,
                GENESIS_SECONDS,
                ADMIN,
                settle(TODAY, entries),
                Rejection::InsufficientCredit,
            );
        }
    }
    assert_eq!(ledger.usage_history(ALICE).count(), 0);
    assert_eq!(ledger.supply().usage_revenue_usd_units, 0);
    // Exactly everything is not an overdraft.
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![fine, usage(BOB, 0, tokens(5), tokens(10))]),
    );
    let bob = ledger.balances(BOB, GENESIS_SECONDS);
    assert_eq!((bob.usd_credit_units, bob.bundled_credit_units), (0, 0));
}

#[test]
fn usage_settlement_arguments_are_checked_in_order() {
    let mut ledger = credited_ledger();
    let one = usage(ALICE, 1, 0, 0);
    let now = GENESIS_SECONDS + DAY_SECONDS - 1;
    // The day is the UTC day of `now` at the latest.
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY + 1, vec![one]),
        Rejection::UsageDayInFuture,
    );
    accept(&mut ledger, now, ADMIN, settle(TODAY, vec![one]));
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY, Vec::new()),
        Rejection::EmptyUsageSettlement,
    );
    let distinct = |count: usize| -> Vec<UsageCharge> {
        (0..count)
            .map(|index| {
                let mut address = [0xEEu8; 20];
                address[..8].copy_from_slice(&(index as u64).to_be_bytes());
                usage(Address(address), 1, 0, 0)
            })
            .collect()
    };
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY, distinct(MAXIMUM_USAGE_ENTRIES + 1)),
        Rejection::TooManyUsageEntries,
    );
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY, vec![one, usage(BOB, 1, 0, 0), usage(ALICE, 2, 0, 0)]),
        Rejection::DuplicateUsageAccount,
    );
    let nothing = UsageCharge {
        account: BOB,
        ..UsageCharge::default()
    };
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY, vec![one, nothing]),
        Rejection::ZeroAmount,
    );
    // Earlier checks win: a duplicate is reported before an overdraft, an empty entry before an
    // overdraft, the future before everything.
    let overdraft = usage(CAROL, 0, 0, 1);
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY, vec![overdraft, overdraft]),
        Rejection::DuplicateUsageAccount,
    );
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY, vec![overdraft, nothing]),
        Rejection::ZeroAmount,
    );
    reject(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY + 1, Vec::new()),
        Rejection::UsageDayInFuture,
    );
    reject(
        &mut ledger,
        now,
        ALICE,
        settle(TODAY + 1, Vec::new()),
        Rejection::NotAdmin,
    );
    // The largest batch is accepted.
    let outcome = accept(
        &mut ledger,
        now,
        ADMIN,
        settle(TODAY, distinct(MAXIMUM_USAGE_ENTRIES)),
    );
    assert_eq!(
        outcome,
        Outcome::UsageSettled {
            entries: MAXIMUM_USAGE_ENTRIES as u32,
            usd_units: 0,
            bundled_credit_units: 0,
            allowance_units: MAXIMUM_USAGE_ENTRIES as u128,
        }
    );
}

#[test]
fn usage_figures_that_would_overflow_are_refused_not_saturated() {
    let mut ledger = credited_ledger();
    let requests = |count| UsageCharge {
        account: ALICE,
        requests: count,
        ..UsageCharge::default()
    };
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![requests(u64::MAX)]),
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![requests(1)]),
        Rejection::Overflow,
    );
    // Another day is another count.
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY - 1, vec![requests(1)]),
    );
    // The ledger-wide revenue must fit too, whoever's allowance makes it overflow.
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![usage(BOB, u128::MAX - tokens(1), 0, 0)]),
    );
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![usage(CAROL, tokens(1) + 1, 0, 0)]),
        Rejection::Overflow,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![usage(CAROL, tokens(1) - 1, 0, 0)]),
    );
    // Spending credits is revenue too.
    let usd = |usd_units| UsageCharge {
        account: ALICE,
        usd_units,
        ..UsageCharge::default()
    };
    reject(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![usd(2)]),
        Rejection::Overflow,
    );
    accept(
        &mut ledger,
        GENESIS_SECONDS,
        ADMIN,
        settle(TODAY, vec![usd(1)]),
    );
    assert_eq!(ledger.supply().usage_revenue_usd_units, u128::MAX);
}

#[test]
fn the_allowance_resets_on_a_new_day_and_late_batches_leave_it_alone() {
    let mut ledger = credited_ledger();
    let allowance = |units| vec![usage(ALICE, units, 0, 0)];
    let day_seconds = |day: u64| day * DAY_SECONDS + 3_600;
    accept(
        &mut ledger,
        day_seconds(TODAY),
        ADMIN,
        settle(TODAY, allowance(3)),
    );
    accept(
        &mut ledger,
        day_seconds(TODAY),
        ADMIN,
        settle(TODAY, allowance(2)),
    );
    assert_eq!(ledger.allowance_spent_units(ALICE, TODAY), 5);
    // A new day starts from that day's first entry.
    let tomorrow = TODAY + 1;
    accept(
        &mut ledger,
        day_seconds(tomorrow),
        ADMIN,
        settle(tomorrow, allowance(1)),
    );
    assert_eq!(ledger.allowance_spent_units(ALICE, tomorrow), 1);
    assert_eq!(ledger.allowance_spent_units(ALICE, TODAY), 0);
    assert_eq!(ledger.last_usage_day(ALICE), Some(tomorrow));
    // A late batch for yesterday goes into yesterday's history, not into today's allowance.
    accept(
        &mut ledger,
        day_seconds(tomorrow),
        ADMIN,
        settle(TODAY, allowance(4)),
    );
    assert_eq!(ledger.allowance_spent_units(ALICE, tomorrow), 1);
    assert_eq!(ledger.allowance_spent_units(ALICE, TODAY), 0);
    assert_eq!(ledger.last_usage_day(ALICE), Some(tomorrow));
    let history: Vec<(u64, u128)> = ledger
        .usage_history(ALICE)
        .map(|(day, usage)| (day, usage.allowance_units))
        .collect();
    assert_eq!(history, vec![(TODAY, 9), (tomorrow, 1)]);
    // A day skipped is simply absent; the next day with usage resets again.
    let later = TODAY + 5;
    accept(
        &mut ledger,
        day_seconds(later),
        ADMIN,
        settle(later, allowance(7)),
    );
    assert_eq!(ledger.allowance_spent_units(ALICE, later), 7);
    assert_eq!(ledger.usage_history(ALICE).count(), 3);
}

#[test]
fn usage_history_keeps_the_latest_400_days() {
    let mut ledger = credited_ledger();
    let first = TODAY;
    let days = USAGE_HISTORY_DAYS as u64 + 1;
    for offset in 0..days {
        let day = first + offset;
        accept(
            &mut ledger,
            day * DAY_SECONDS,
            ADMIN,
            settle(day, vec![usage(ALICE, u128::from(offset) + 1, 0, 0)]),
        );
    }
    let last = first + days - 1;
    let kept: Vec<u64> = ledger.usage_history(ALICE).map(|(day, _)| day).collect();
    assert_eq!(kept.len(), USAGE_HISTORY_DAYS);
    assert_eq!(kept.first(), Some(&(first + 1)), "the oldest day went");
    assert_eq!(kept.last(), Some(&last));
    assert_eq!(ledger.last_usage_day(ALICE), Some(last));
    // The ledger-wide total is never truncated: 1 + 2 + … + 401.
    let total = u128::from(days * (days + 1) / 2);
    assert_eq!(ledger.supply().usage_allowance_units, total);

    // A late batch older than every kept day is charged and counted, then dropped at once.
    let now = last * DAY_SECONDS;
    let hash_before = ledger.state_hash();
    accept(
        &mut ledger,
        now,
        ADMIN,
        settle(first, vec![usage(ALICE, 0, tokens(1), tokens(1))]),
    );
    assert_ne!(ledger.state_hash(), hash_before);
    let after: Vec<u64> = ledger.usage_history(ALICE).map(|(day, _)| day).collect();
    assert_eq!(after, kept);
    let alice = ledger.balances(ALICE, now);
    assert_eq!(
        (alice.usd_credit_units, alice.bundled_credit_units),
        (tokens(9), tokens(4))
    );
    assert_eq!(ledger.supply().usage_revenue_usd_units, total + tokens(2));
    assert_eq!(ledger.allowance_spent_units(ALICE, last), u128::from(days));
    // A late batch inside the window fills its own day and pushes out the oldest.
    accept(
        &mut ledger,
        now,
        ADMIN,
        settle(first + 1, vec![usage(ALICE, 1_000, 0, 0)]),
    );
    let (day, oldest) = ledger.usage_history(ALICE).next().expect("a day");
    assert_eq!((day, oldest.allowance_units), (first + 1, 2 + 1_000));
    accept(
        &mut ledger,
        now,
        ADMIN,
        settle(last + 1 - days, vec![usage(BOB, 5, 0, 0)]),
    );
    assert_eq!(ledger.usage_history(BOB).count(), 1, "Bob's own history");
    accept(
        &mut ledger,
        (last + 1) * DAY_SECONDS,
        ADMIN,
        settle(last + 1, vec![usage(ALICE, 1, 0, 0)]),
    );
    let (day, _) = ledger.usage_history(ALICE).next().expect("a day");
    assert_eq!(day, first + 2);
    assert_eq!(ledger.usage_history(ALICE).count(), USAGE_HISTORY_DAYS);
}
