//! `metering`: the gateway's per-request quota check, in memory. One admission is what the chat
//! path does per request: `Meter::reserve` (the most the request could cost, drawn in spend
//! order) and, when the request ends, `Meter::settle` (the real cost). Measured side by side
//! with the floor of any "one mutex, one map" design (a locked `HashMap` lookup and add), with
//! 1 and 2 threads, 1,000 and 100,000 accounts, and with a thread refreshing accounts from the
//! ledger as the committer does after every commit. Results go to
//! `bench/results/metering.{md,json}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use economy::meter::{Capacity, Meter};
use ledger::{Address, Asset, GenesisConfig, Ledger, Op, UNITS_PER_TOKEN};
use serde::Serialize;

const GENESIS_SECONDS: u64 = 1_750_000_000;
const TODAY: u64 = GENESIS_SECONDS / 86_400;
/// Admissions per thread per measurement.
const ADMISSIONS: u64 = 400_000;
const ROUNDS: usize = 5;
/// The committer refreshes the accounts a commit touched; this many commits a second is a busy
/// ledger (every signed operation and usage settlement is one).
const COMMITS_PER_SECOND: u64 = 1_000;

#[derive(Serialize, Clone)]
struct Row {
    accounts: usize,
    threads: usize,
    refreshing: bool,
    /// Admissions (reserve + settle) per second, all threads together; median of the rounds.
    meter_per_second: f64,
    /// The locked-map floor, same threads and accounts.
    floor_per_second: f64,
    /// p99 of one admission, from the meter's rounds.
    meter_p99_ns: f64,
}

fn address(index: usize) -> Address {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&(index as u64 + 1).to_be_bytes());
    bytes[19] = 0xAA;
    Address(bytes)
}

/// A ledger where each of `accounts` holds staked sVVV (a share of network capacity) and $1,000
/// of USD credit.
fn ledger_with(accounts: usize) -> anyhow::Result<Ledger> {
    let admin = Address([1; 20]);
    let mut ledger = Ledger::new();
    let genesis = GenesisConfig::venice(admin, admin, admin, admin, admin, Vec::new());
    let apply = |ledger: &mut Ledger, signer, op| {
        ledger
            .apply(GENESIS_SECONDS, signer, op)
            .map_err(|rejection| anyhow::anyhow!("{rejection:?}"))
    };
    apply(&mut ledger, admin, Op::Genesis(Box::new(genesis)))?;
    for index in 0..accounts {
        let account = address(index);
        let vvv = 100 * UNITS_PER_TOKEN;
        apply(
            &mut ledger,
            admin,
            Op::Transfer {
                asset: Asset::Vvv,
                to: account,
                amount_units: vvv,
            },
        )?;
        apply(&mut ledger, account, Op::Stake { vvv_units: vvv })?;
        apply(
            &mut ledger,
            admin,
            Op::CreditAccount {
                account,
                usd_units: 1_000 * UNITS_PER_TOKEN,
                bundled_credit_units: 0,
            },
        )?;
    }
    Ok(ledger)
}

/// Runs `admit` `ADMISSIONS` times on each of `threads` threads; returns admissions per second
/// and, if `sample` is set, every 64th admission's duration.
fn drive(
    threads: usize,
    accounts: usize,
    sample: bool,
    admit: &(dyn Fn(Address) + Sync),
) -> (f64, Vec<u64>) {
    let started = Instant::now();
    let samples: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut samples = Vec::new();
                    // A large odd stride walks the accounts in an order the cache cannot guess.
                    let mut index = thread * 7_919;
                    for admission in 0..ADMISSIONS {
                        index = (index + 104_729) % accounts;
                        let account = address(index);
                        if sample && admission % 64 == 0 {
                            let before = Instant::now();
                            admit(account);
                            samples.push(before.elapsed().as_nanos() as u64);
                        } else {
                            admit(account);
                        }
                    }
                    samples
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    (
        (threads as u64 * ADMISSIONS) as f64 / elapsed,
        samples.into_iter().flatten().collect(),
    )
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn measure(ledger: &Ledger, accounts: usize, threads: usize, refreshing: bool) -> Row {
    let meter = Meter::new(Capacity {
        network_usd_units_per_day: 1_000 * UNITS_PER_TOKEN,
        active_window_days: 7,
    });
    let all: Vec<Address> = (0..accounts).map(address).collect();
    meter.refresh(ledger, &all, TODAY);
    let floor: Mutex<HashMap<Address, u128>> =
        Mutex::new(all.iter().map(|account| (*account, 0u128)).collect());

    let admit_meter = |account: Address| {
        let max_cost = UNITS_PER_TOKEN / 1_000;
        if let Ok((draw, _balance)) = meter.reserve(account, TODAY, max_cost) {
            meter.settle(account, TODAY, draw, max_cost / 2, 100, 20);
        }
    };
    let admit_floor = |account: Address| {
        let mut map = floor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(spent) = map.get_mut(&account) {
            *spent = spent.saturating_add(1);
        }
        drop(map);
        let mut map = floor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(spent) = map.get_mut(&account) {
            *spent = spent.saturating_add(1);
        }
    };

    let stop = AtomicBool::new(false);
    let mut meter_rates = Vec::new();
    let mut floor_rates = Vec::new();
    let mut samples = Vec::new();
    std::thread::scope(|scope| {
        if refreshing {
            let (meter, stop, all) = (&meter, &stop, &all);
            scope.spawn(move || {
                let interval = Duration::from_secs(1) / COMMITS_PER_SECOND as u32;
                let mut next = Instant::now();
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    index = (index + 1) % all.len();
                    meter.refresh(ledger, &all[index..=index], TODAY);
                    next += interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::park_timeout(wait);
                    }
                }
            });
        }
        for _ in 0..ROUNDS {
            let (rate, round_samples) = drive(threads, accounts, true, &admit_meter);
            meter_rates.push(rate);
            samples.extend(round_samples);
            floor_rates.push(drive(threads, accounts, false, &admit_floor).0);
        }
        stop.store(true, Ordering::Relaxed);
    });
    samples.sort_unstable();
    let p99 = samples
        .get(samples.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    Row {
        accounts,
        threads,
        refreshing,
        meter_per_second: median(meter_rates),
        floor_per_second: median(floor_rates),
        meter_p99_ns: p99 as f64,
    }
}

pub fn run() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for accounts in [1_000, 100_000] {
        eprintln!("metering: building a ledger of {accounts} accounts");
        let ledger = ledger_with(accounts)?;
        for threads in [1, 2] {
            for refreshing in [false, true] {
                let row = measure(&ledger, accounts, threads, refreshing);
                eprintln!(
                    "metering: {accounts} accounts, {threads} thread(s), refreshing {refreshing}: {:.0}/s",
                    row.meter_per_second
                );
                rows.push(row);
            }
        }
    }
    let results = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("metering.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    let mut table = format!(
        "# Metering: quota checks on the request path\n\nOne admission = `Meter::reserve` + `Meter::settle`. Floor = a locked `HashMap` lookup-and-add, twice. \
         Medians of {ROUNDS} interleaved rounds of {ADMISSIONS} admissions per thread; \"refreshing\" = a thread refreshing one account from the ledger {COMMITS_PER_SECOND} times a second, as the committer does after each commit.\n\n\
         | accounts | threads | refreshing | admissions/s | floor/s | meter ÷ floor | p99 per admission |\n|---|---|---|---|---|---|---|\n"
    );
    for row in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {:.2} M | {:.2} M | {:.2} | {:.2} µs |\n",
            row.accounts,
            row.threads,
            if row.refreshing { "yes" } else { "no" },
            row.meter_per_second / 1e6,
            row.floor_per_second / 1e6,
            row.meter_per_second / row.floor_per_second,
            row.meter_p99_ns / 1e3,
        ));
    }
    std::fs::write(results.join("metering.md"), &table)?;
    println!("{table}");
    Ok(())
}
