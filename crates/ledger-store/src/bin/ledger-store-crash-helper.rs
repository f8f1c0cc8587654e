//! Crash-test helper: opens (or creates) a ledger store and submits the synthetic workload in a
//! loop, printing `ack <sequence> <record hash>` for each operation once it is durable. The
//! crash test kills it with SIGKILL at random moments and checks that every ack survived. It
//! alternates single submissions with batches so that both commit paths are killed mid-write.
//!
//! Usage: `ledger-store-crash-helper <store dir>`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ledger_store::workload::Workload;
use ledger_store::{MAXIMUM_BATCH_OPERATIONS, Store, StoreOptions};

/// Operations per run: a bound so that a test which fails to kill the helper does not fill the
/// disk; a test kills it long before this.
const MAXIMUM_OPERATIONS_PER_RUN: u64 = 200_000;

/// Largest batch the helper submits: small enough that many commits happen before a kill,
/// large enough that a kill often lands inside a multi-record write.
const LARGEST_BATCH_OPERATIONS: u64 = 13;
const _: () = assert!(LARGEST_BATCH_OPERATIONS as usize <= MAXIMUM_BATCH_OPERATIONS);

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: ledger-store-crash-helper <store dir>");
        return ExitCode::from(2);
    };
    match run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ledger-store-crash-helper: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let options = StoreOptions {
        create_if_missing: true,
        // Frequent checkpoints, so that kills also land around checkpoint writes.
        checkpoint_interval_records: std::num::NonZeroU64::new(50).ok_or("zero interval")?,
    };
    let (mut store, _report) = Store::open(&dir, options)?;
    let workload = Workload { accounts: 20 };
    let mut stdout = std::io::stdout().lock();
    let first_index = store.last_sequence();
    let mut index = first_index;
    while index < first_index + MAXIMUM_OPERATIONS_PER_RUN {
        // Every workload submission is accepted, so the record with sequence `s` is submission
        // `s - 1`: a restarted helper resumes exactly where the journal ends.
        let batch_operations = if (index / 7) % 2 == 0 {
            1
        } else {
            1 + index % LARGEST_BATCH_OPERATIONS
        };
        let results = if batch_operations == 1 {
            let submission = workload.submission(index);
            vec![store.submit(
                submission.now_seconds,
                submission.signer,
                &submission.signature,
                submission.op,
            )?]
        } else {
            let batch = (index..index + batch_operations)
                .map(|index| workload.submission(index))
                .collect();
            store.submit_batch(batch)?
        };
        for result in results {
            match result {
                Ok(receipt) => {
                    writeln!(stdout, "ack {} {}", receipt.sequence, receipt.record_hash)?
                }
                Err(rejection) => {
                    return Err(format!("submission {index} rejected: {rejection}").into());
                }
            }
        }
        stdout.flush()?;
        index += batch_operations;
    }
    if let Some(error) = store.last_checkpoint_error() {
        return Err(format!("checkpoint failed: {error}").into());
    }
    store.close()?;
    Ok(())
}
