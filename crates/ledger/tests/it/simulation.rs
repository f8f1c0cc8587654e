//! The seeded simulation: a random workload of valid and invalid operations, checked after every
//! step against the auditor and the full invariant audit, with rejected operations proven to
//! change nothing and the whole run replayed into a fresh ledger to the same state hash.
//! It prints its seed; `SIM_SEED=<seed>` reruns a failure and `SIM_STEPS=<n>` runs longer.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ledger::{
    Address, Asset, CurvePoint, Ledger, MintCurve, Op, Outcome, Parameters, Rejection, SplitPoint,
    StateHash, UsageCharge, UtilizationSplit,
};

use crate::auditor::Auditor;
use crate::support::*;

/// Steps in a default `cargo test` run: a few seconds in a debug build, enough to pass the airdrop
/// deadline and the whole vesting period.
const DEFAULT_STEPS: u64 = 3_000;

const DAVE: Address = Address([0xDA; 20]);
const ERIN: Address = Address([0xE2; 20]);

const PEOPLE: [Address; 11] = [
    ADMIN,
    TREASURY,
    INCENTIVE_FUND,
    LIQUIDITY,
    TEAM,
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    NOBODY,
];
const USERS: [Address; 6] = [ALICE, BOB, CAROL, DAVE, ERIN, TEAM];

/// SplitMix64: tiny, seedable, good enough to drive a workload. Test scaffolding only.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn u128_below(&mut self, bound: u128) -> u128 {
        if bound == 0 {
            return 0;
        }
        ((u128::from(self.next()) << 64) | u128::from(self.next())) % bound
    }

    /// An amount with the shapes that find bugs: dust, a fraction of what is held, all of it,
    /// one unit too much, or an arbitrary figure.
    fn amount(&mut self, held: u128) -> u128 {
        match self.below(10) {
            0 => self.u128_below(1_000) + 1,
            1 => held,
            2 => held + 1,
            3 => 0,
            4 => tokens(u128::from(self.below(1_000_000))),
            _ => self.u128_below(held.max(1)) + 1,
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
}

fn valid_parameters(random: &mut Random) -> Parameters {
    let splits = [
        UtilizationSplit::venice_default(),
        UtilizationSplit {
            points: vec![
                SplitPoint {
                    utilization_bps: 0,
                    company_share_bps: 0,
                },
                SplitPoint {
                    utilization_bps: 10_000,
                    company_share_bps: 0,
                },
            ],
        },
        UtilizationSplit {
            points: vec![
                SplitPoint {
                    utilization_bps: 0,
                    company_share_bps: 1_000,
                },
                SplitPoint {
                    utilization_bps: 3_333,
                    company_share_bps: 9_000,
                },
                SplitPoint {
                    utilization_bps: 10_000,
                    company_share_bps: 10_000,
                },
            ],
        },
    ];
    Parameters {
        unstake_cooldown_seconds: random.below(14 * DAY_SECONDS),
        diem_unstake_cooldown_seconds: random.below(3 * DAY_SECONDS),
        locked_yield_bps: random.below(10_001) as u32,
        minimum_spendable_staked_diem_units: random.u128_below(tokens(2)),
        utilization_split: splits[random.below(splits.len() as u64) as usize].clone(),
    }
}

fn invalid_parameters(random: &mut Random) -> Parameters {
    let mut parameters = valid_parameters(random);
    match random.below(4) {
        0 => parameters.unstake_cooldown_seconds = 400 * DAY_SECONDS,
        1 => parameters.locked_yield_bps = 10_001,
        2 => {
            parameters.utilization_split.points.remove(0);
        }
        _ => parameters.minimum_spendable_staked_diem_units = tokens(1_001),
    };
    parameters
}

fn curve(random: &mut Random) -> Vec<CurvePoint> {
    let mut points = MintCurve::venice_default_points();
    match random.below(5) {
        // Scaled: every rate times 1/2 … 2, capped.
        0 | 1 => {
            let numerator = u128::from(random.below(4)) + 1;
            for point in &mut points {
                point.rate_svvv_units_per_diem = (point.rate_svvv_units_per_diem * numerator / 2)
                    .clamp(1, ledger::MAXIMUM_MINT_RATE_SVVV_UNITS_PER_DIEM);
            }
        }
        2 => points[1 + random.below(254) as usize].rate_svvv_units_per_diem = 1,
        3 => {
            points.pop();
        }
        _ => {}
    }
    points
}

/// A charge against credits of `held`: mostly affordable, sometimes any shape of amount.
fn charge(random: &mut Random, held: u128) -> u128 {
    if random.chance(75) {
        random.u128_below(held.saturating_add(1))
    } else {
        random.amount(held)
    }
}

/// A usage settlement: mostly today's, sometimes a late batch (up to well past the history
/// bound), a future day, an empty or oversized batch, a repeated account, an entry that records
/// nothing, an overdraft, or a figure that overflows.
fn usage_settlement(random: &mut Random, ledger: &Ledger) -> Op {
    let now = ledger.now_seconds();
    let today = now / DAY_SECONDS;
    let day = match random.below(20) {
        0 => today + 1 + random.below(3),
        1..=3 => today.saturating_sub(1 + random.below(10)),
        4 => today.saturating_sub(random.below(1_000)),
        _ => today,
    };
    if random.chance(2) {
        return Op::SettleUsage {
            day,
            entries: Vec::new(),
        };
    }
    if random.chance(1) {
        let entries = (0..=ledger::MAXIMUM_USAGE_ENTRIES)
            .map(|index| UsageCharge {
                account: Address([(index % 200) as u8; 20]),
                requests: 1,
                ..UsageCharge::default()
            })
            .collect();
        return Op::SettleUsage { day, entries };
    }
    let revenue = ledger.supply().usage_revenue_usd_units;
    let count = 1 + random.below(4);
    let entries = (0..count)
        .map(|_| {
            let account = random.pick(&PEOPLE);
            let held = ledger.balances(account, now);
            if random.chance(3) {
                return UsageCharge {
                    account,
                    ..UsageCharge::default()
                };
            }
            let allowance_units = if random.chance(2) && revenue > 0 {
                // Brings the ledger-wide revenue one unit past u128.
                u128::MAX - revenue + 1
            } else if random.chance(30) {
                0
            } else {
                random.u128_below(tokens(5))
            };
            UsageCharge {
                account,
                requests: if random.chance(1) {
                    u64::MAX
                } else {
                    random.below(500)
                },
                prompt_tokens: random.below(2_000_000),
                completion_tokens: random.below(500_000),
                allowance_units,
                bundled_credit_units: charge(random, held.bundled_credit_units),
                usd_units: charge(random, held.usd_credit_units),
            }
        })
        .collect();
    Op::SettleUsage { day, entries }
}

/// One random operation, with a signer; about a third of them are meant to be rejected.
fn random_operation(random: &mut Random, ledger: &Ledger) -> (Address, Op) {
    let user = random.pick(&USERS);
    let anyone = random.pick(&PEOPLE);
    let admin = if random.chance(90) { ADMIN } else { anyone };
    let now = ledger.now_seconds();
    let held = ledger.balances(user, now);
    match random.below(100) {
        0..=7 => {
            let asset = if random.chance(70) {
                Asset::Vvv
            } else {
                Asset::Diem
            };
            let from = if random.chance(20) {
                random.pick(&[TREASURY, INCENTIVE_FUND, LIQUIDITY])
            } else {
                user
            };
            let from_held = ledger.balances(from, now);
            let available = if asset == Asset::Vvv {
                from_held.vvv_units
            } else {
                from_held.diem_units
            };
            let to = if random.chance(5) {
                from
            } else {
                random.pick(&PEOPLE)
            };
            (
                from,
                Op::Transfer {
                    asset,
                    to,
                    amount_units: random.amount(available),
                },
            )
        }
        8..=9 => (random.pick(&[ALICE, BOB, CAROL, DAVE]), Op::ClaimAirdrop),
        10 => (admin, Op::BurnUnclaimedAirdrop),
        11..=12 => (random.pick(&[TEAM, ALICE]), Op::ClaimVested),
        13..=24 => (
            user,
            Op::Stake {
                vvv_units: random.amount(held.vvv_units),
            },
        ),
        25..=30 => (
            user,
            Op::InitiateUnstake {
                svvv_units: random.amount(held.staked_svvv_units),
            },
        ),
        31..=34 => (user, Op::FinalizeUnstake),
        35..=39 => (user, Op::ClaimRewards),
        40..=42 => (user, Op::ClaimAndStakeRewards),
        43..=54 => {
            let budget = random.amount(held.staked_svvv_units);
            let min_diem_out_units = match random.below(4) {
                0 => u128::MAX,
                1 => ledger
                    .preview_mint(budget)
                    .map_or(0, |quote| quote.diem_units),
                2 => ledger
                    .preview_mint(budget)
                    .map_or(0, |quote| quote.diem_units + 1),
                _ => 0,
            };
            (
                user,
                Op::MintDiem {
                    svvv_to_lock_units: budget,
                    min_diem_out_units,
                },
            )
        }
        55..=61 => {
            let diem_units = if random.chance(50) {
                random.amount(held.diem_minted_outstanding_units)
            } else {
                random.amount(held.diem_units)
            };
            (user, Op::BurnDiem { diem_units })
        }
        62..=67 => (
            user,
            Op::StakeDiem {
                diem_units: random.amount(held.diem_units),
            },
        ),
        68..=71 => (
            user,
            Op::InitiateDiemUnstake {
                diem_units: random.amount(held.staked_diem_units),
            },
        ),
        72..=74 => (user, Op::FinalizeDiemUnstake),
        75..=77 => {
            let vvv_units_per_second = match random.below(5) {
                0 => 0,
                1 => ledger::MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND + 1,
                2 => ledger::MAXIMUM_EMISSION_RATE_UNITS_PER_SECOND,
                _ => random.u128_below(tokens(2)),
            };
            (
                admin,
                Op::SetEmissionRate {
                    vvv_units_per_second,
                },
            )
        }
        78..=81 => {
            let utilization_bps = if random.chance(10) {
                10_001 + random.below(1_000) as u32
            } else {
                random.below(10_001) as u32
            };
            (admin, Op::ReportUtilization { utilization_bps })
        }
        82..=83 => (
            admin,
            Op::SetMintCurve {
                points: curve(random),
            },
        ),
        84..=85 => {
            let parameters = if random.chance(70) {
                valid_parameters(random)
            } else {
                invalid_parameters(random)
            };
            (admin, Op::SetParameters(Box::new(parameters)))
        }
        86..=89 => {
            let treasury = ledger.balances(TREASURY, now).vvv_units;
            let revenue_usd_units = if random.chance(3) {
                u128::MAX
            } else {
                random.u128_below(tokens(100_000))
            };
            (
                admin,
                Op::BuybackAndBurn {
                    vvv_units: random.amount(treasury / 100),
                    revenue_usd_units,
                },
            )
        }
        90..=93 => {
            let usd_units = if random.chance(3) {
                u128::MAX
            } else {
                random.amount(tokens(1_000))
            };
            (
                admin,
                Op::CreditAccount {
                    account: anyone,
                    usd_units,
                    bundled_credit_units: random.amount(tokens(100)),
                },
            )
        }
        94 => (admin, Op::Genesis(Box::new(venice_genesis_config()))),
        95 => (anyone, Op::ClaimRewards),
        _ => (admin, usage_settlement(random, ledger)),
    }
}

fn next_time(random: &mut Random, now: u64) -> u64 {
    match random.below(100) {
        0..=1 => now.saturating_sub(1 + random.below(100)),
        2..=39 => now,
        40..=79 => now + random.below(3_600),
        80..=94 => now + random.below(2 * DAY_SECONDS),
        _ => now + random.below(12 * DAY_SECONDS),
    }
}

struct Step {
    now_seconds: u64,
    signer: Address,
    op: Op,
    result: Result<Outcome, Rejection>,
    hash_after: StateHash,
}

#[test]
fn random_workload_agrees_with_the_auditor_and_replays_to_the_same_state() {
    let seed = env_number("SIM_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
    });
    let steps = env_number("SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    const SNAPSHOT_EVERY_STEPS: u64 = 487;
    println!("simulation seed {seed}, {steps} steps (rerun with SIM_SEED={seed})");
    let started = Instant::now();
    let mut random = Random(seed);

    let config = venice_genesis_config();
    let mut ledger = Ledger::new();
    let genesis = Op::Genesis(Box::new(config.clone()));
    let genesis_result = ledger.apply(GENESIS_SECONDS, ADMIN, genesis.clone());
    assert!(genesis_result.is_ok());
    let mut auditor = Auditor::from_genesis(GENESIS_SECONDS, &config);
    let mut history = vec![Step {
        now_seconds: GENESIS_SECONDS,
        signer: ADMIN,
        op: genesis,
        result: genesis_result,
        hash_after: ledger.state_hash(),
    }];
    let mut accepted = 0u64;
    let mut usage_settled = 0u64;
    let mut rejections = std::collections::BTreeMap::<Rejection, u64>::new();
    let mut now = GENESIS_SECONDS;
    // A snapshot of the state every so often (the history index it follows, and its bytes).
    let mut snapshot: Option<(usize, Vec<u8>)> = None;
    for step in 0..steps {
        now = next_time(&mut random, now.max(ledger.now_seconds()));
        let (signer, op) = random_operation(&mut random, &ledger);
        let before = ledger.clone();
        let hash_before = ledger.state_hash();
        let result = ledger.apply(now, signer, op.clone());
        let context = || {
            let mut text = format!("{op:?}");
            text.truncate(2_000);
            format!("step {step} (SIM_SEED={seed}): {text} by {signer} at {now} → {result:?}")
        };
        match &result {
            Ok(outcome) => {
                accepted += 1;
                if matches!(outcome, Outcome::UsageSettled { .. }) {
                    usage_settled += 1;
                }
                assert_eq!(
                    ledger.next_nonce(signer),
                    before.next_nonce(signer) + 1,
                    "an acceptance counts once toward its signer's nonce: {}",
                    context()
                );
                if ledger != before {
                    assert_ne!(
                        ledger.state_hash(),
                        hash_before,
                        "the hash missed a change: {}",
                        context()
                    );
                }
            }
            Err(rejection) => {
                *rejections.entry(*rejection).or_default() += 1;
                assert!(
                    ledger == before,
                    "a rejection changed the state: {}",
                    context()
                );
                assert_eq!(ledger.state_hash(), hash_before, "{}", context());
            }
        }
        let audited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ledger.assert_invariants_full();
            auditor.check(now, signer, &op, &result);
            auditor.compare(&ledger);
        }));
        if audited.is_err() {
            panic!("disagreement at {}", context());
        }
        if step % SNAPSHOT_EVERY_STEPS == 0 {
            let mut bytes = Vec::new();
            ledger.encode_state(&mut bytes);
            let decoded = Ledger::decode_state(&bytes)
                .unwrap_or_else(|error| panic!("snapshot at {}: {error}", context()));
            assert!(
                decoded == ledger,
                "a snapshot changed the state: {}",
                context()
            );
            // The step about to be pushed is the last one the snapshot includes.
            snapshot = Some((history.len(), bytes));
        }
        history.push(Step {
            now_seconds: now,
            signer,
            op,
            result,
            hash_after: ledger.state_hash(),
        });
    }
    let run_time = started.elapsed();

    // Recovery from a snapshot: the last one, plus the steps after it, gives the same state as
    // the whole history.
    if let Some((index, bytes)) = snapshot {
        let mut recovered = Ledger::decode_state(&bytes).expect("the snapshot decodes");
        recovered.assert_invariants_full();
        for step in history.iter().skip(index + 1) {
            let result = recovered.apply(step.now_seconds, step.signer, step.op.clone());
            assert_eq!(result, step.result, "replay after the snapshot diverged");
        }
        assert!(
            recovered == ledger,
            "snapshot + replay ≠ the ledger (SIM_SEED={seed})"
        );
    }

    // Replay: the same (now, signer, op) sequence into a fresh ledger gives the same results and
    // the same state after every step.
    let mut replayed = Ledger::new();
    for (index, step) in history.iter().enumerate() {
        let result = replayed.apply(step.now_seconds, step.signer, step.op.clone());
        assert_eq!(
            result, step.result,
            "replay diverged at step {index} (SIM_SEED={seed})"
        );
        assert_eq!(
            replayed.state_hash(),
            step.hash_after,
            "replay state diverged at step {index} (SIM_SEED={seed})"
        );
    }
    assert!(replayed == ledger);

    let supply = ledger.supply();
    let longest_history = PEOPLE
        .iter()
        .map(|&who| ledger.usage_history(who).count())
        .max()
        .unwrap_or(0);
    println!(
        "{accepted} accepted ({usage_settled} usage settlements, longest history {longest_history} days), {} rejected in {run_time:?}; {} days simulated; DIEM supply {}, total VVV {}, rejections {rejections:?}",
        steps - accepted,
        (ledger.now_seconds() - GENESIS_SECONDS) / DAY_SECONDS,
        supply.diem_supply_units,
        supply.total_vvv_units,
    );
    assert!(
        accepted > steps / 4,
        "the workload should be mostly meaningful"
    );
    assert!(
        usage_settled > 0 || steps < 1_000,
        "the workload should settle some usage"
    );
}
