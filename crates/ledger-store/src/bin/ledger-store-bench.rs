//! The store's benchmark (not a test): journal appends per second with one fsync per operation
//! and with group commit (batches of 64), bulk append with the largest batches, the time to
//! recover (`Store::open`) N operations from the checkpoint and without one, the time to write a
//! checkpoint, and the time to `verify`. Prints a
//! markdown table and, with `--out`, writes it to a file.
//!
//! Usage: `ledger-store-bench [--ops N] [--single-ops N] [--batched-ops N] [--dir PATH]
//! [--out FILE]`. Defaults: 100,000 operations to replay (`--ops 1000000` for the issue's
//! figure), 2,000 single-op appends, 64,000 batched appends, scratch directories under the
//! current directory (not the system temp directory, which may be a tmpfs where fsync is free).
//! Build with `--release`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ledger_store::workload::Workload;
use ledger_store::{MAXIMUM_BATCH_OPERATIONS, Store, StoreOptions, Submission, verify};

/// The batch size the issue asks about: a plausible number of concurrent submitters to gather
/// in one commit.
const GROUP_COMMIT_BATCH_OPERATIONS: usize = 64;

struct Arguments {
    replay_operations: u64,
    single_operations: u64,
    batched_operations: u64,
    dir: PathBuf,
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let arguments = match parse_arguments() {
        Ok(arguments) => arguments,
        Err(message) => {
            eprintln!("ledger-store-bench: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ledger-store-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_arguments() -> Result<Arguments, String> {
    let mut arguments = Arguments {
        replay_operations: 100_000,
        single_operations: 2_000,
        batched_operations: 64_000,
        dir: PathBuf::from("."),
        out: None,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or(format!("{flag} needs a value"));
        let count = |text: String| {
            text.replace('_', "")
                .parse::<u64>()
                .map_err(|error| format!("{text}: {error}"))
        };
        match flag.as_str() {
            "--ops" => arguments.replay_operations = count(value()?)?,
            "--single-ops" => arguments.single_operations = count(value()?)?,
            "--batched-ops" => arguments.batched_operations = count(value()?)?,
            "--dir" => arguments.dir = PathBuf::from(value()?),
            "--out" => arguments.out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(arguments)
}

fn run(arguments: &Arguments) -> Result<(), Box<dyn std::error::Error>> {
    let workload = Workload::default();
    let mut rows = Vec::new();

    let single = timed_appends(&arguments.dir, &workload, arguments.single_operations, 1)?;
    rows.push(append_row("append, one fsync per operation", &single));
    let batched = timed_appends(
        &arguments.dir,
        &workload,
        arguments.batched_operations,
        GROUP_COMMIT_BATCH_OPERATIONS,
    )?;
    rows.push(append_row(
        &format!("append, group commit of {GROUP_COMMIT_BATCH_OPERATIONS}"),
        &batched,
    ));

    let scratch = tempfile::tempdir_in(&arguments.dir)?;
    let bulk = fill(scratch.path(), &workload, arguments.replay_operations)?;
    rows.push(append_row(
        &format!("append, group commit of {MAXIMUM_BATCH_OPERATIONS} (filling the journal)"),
        &bulk,
    ));
    // `fill` closed the store, so its checkpoint (a snapshot of the whole state) covers the
    // last record: recovery reads and checks every record and applies none.
    let started = Instant::now();
    let (store, report) = Store::open(scratch.path(), StoreOptions::default())?;
    let restored = started.elapsed();
    let journal_bytes = store.journal_bytes();
    drop(store);
    rows.push(rate_row(
        &format!(
            "recover from the checkpoint: read and check {} records, apply {}",
            report.records_read, report.records_replayed
        ),
        report.records_read,
        restored,
    ));
    // Without the checkpoint, recovery replays the whole journal.
    std::fs::remove_file(scratch.path().join(ledger_store::CHECKPOINT_FILE_NAME))?;
    let started = Instant::now();
    let (store, report) = Store::open(scratch.path(), StoreOptions::default())?;
    let replay = started.elapsed();
    rows.push(rate_row(
        &format!(
            "recover without a checkpoint: read, check and apply {} records",
            report.records_replayed
        ),
        report.records_replayed,
        replay,
    ));
    let accounts = store.ledger().account_addresses().count();
    let started = Instant::now();
    store.close()?;
    let written = started.elapsed();
    let checkpoint_bytes =
        std::fs::metadata(scratch.path().join(ledger_store::CHECKPOINT_FILE_NAME))?.len();
    rows.push(format!(
        "| write a checkpoint ({accounts} accounts, {checkpoint_bytes} bytes) | {:.1} ms |",
        written.as_secs_f64() * 1e3
    ));
    let started = Instant::now();
    let verified = verify(scratch.path())?;
    rows.push(rate_row(
        &format!("verify {} ops", verified.records),
        verified.records,
        started.elapsed(),
    ));
    rows.push(format!(
        "| journal size | {journal_bytes} bytes, {:.0} bytes a record |",
        journal_bytes as f64 / verified.records.max(1) as f64
    ));

    let mut table = String::from("| measurement | result |\n|---|---|\n");
    for row in rows {
        table.push_str(&row);
        table.push('\n');
    }
    print!("{table}");
    if let Some(out) = &arguments.out {
        std::fs::write(out, &table)?;
    }
    Ok(())
}

struct Appends {
    operations: u64,
    syncs: u64,
    elapsed: Duration,
}

/// Appends `operations` workload operations (after genesis) to a fresh store in batches of
/// `batch_operations`, timing the appends only.
fn timed_appends(
    dir: &Path,
    workload: &Workload,
    operations: u64,
    batch_operations: usize,
) -> Result<Appends, Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir_in(dir)?;
    let (mut store, _) = Store::open(scratch.path(), create_options())?;
    let genesis = workload.submission(0);
    submit_accepted(&mut store, vec![genesis])?;
    let syncs_before = store.journal_syncs();
    let started = Instant::now();
    let mut index = 1;
    while index <= operations {
        let end = (index + batch_operations as u64).min(operations + 1);
        if batch_operations == 1 {
            let submission = workload.submission(index);
            store
                .submit(
                    submission.now_seconds,
                    submission.signer,
                    &submission.signature,
                    submission.op,
                )?
                .map_err(|rejection| format!("operation {index} rejected: {rejection}"))?;
        } else {
            submit_accepted(
                &mut store,
                (index..end)
                    .map(|index| workload.submission(index))
                    .collect(),
            )?;
        }
        index = end;
    }
    Ok(Appends {
        operations,
        syncs: store.journal_syncs() - syncs_before,
        elapsed: started.elapsed(),
    })
}

/// Writes genesis and `operations` more with the largest batches, then closes the store (which
/// writes a checkpoint at the end, so the replay below also compares the final state root).
fn fill(
    dir: &Path,
    workload: &Workload,
    operations: u64,
) -> Result<Appends, Box<dyn std::error::Error>> {
    let (mut store, _) = Store::open(dir, create_options())?;
    let started = Instant::now();
    let mut index = 0;
    while index <= operations {
        let end = (index + MAXIMUM_BATCH_OPERATIONS as u64).min(operations + 1);
        submit_accepted(
            &mut store,
            (index..end)
                .map(|index| workload.submission(index))
                .collect(),
        )?;
        index = end;
    }
    let elapsed = started.elapsed();
    let syncs = store.journal_syncs();
    store.close()?;
    Ok(Appends {
        operations: operations + 1,
        syncs,
        elapsed,
    })
}

fn submit_accepted(
    store: &mut Store,
    batch: Vec<Submission>,
) -> Result<(), Box<dyn std::error::Error>> {
    for result in store.submit_batch(batch)? {
        result.map_err(|rejection| format!("workload operation rejected: {rejection}"))?;
    }
    Ok(())
}

fn create_options() -> StoreOptions {
    StoreOptions {
        create_if_missing: true,
        ..StoreOptions::default()
    }
}

fn append_row(name: &str, appends: &Appends) -> String {
    let seconds = appends.elapsed.as_secs_f64();
    format!(
        "| {name} | {:.0} ops/s ({} ops, {} fsyncs, {:.0} µs an fsync'd commit) |",
        appends.operations as f64 / seconds,
        appends.operations,
        appends.syncs,
        seconds * 1e6 / appends.syncs.max(1) as f64,
    )
}

fn rate_row(name: &str, operations: u64, elapsed: Duration) -> String {
    format!(
        "| {name} | {:.2} s ({:.0} ops/s) |",
        elapsed.as_secs_f64(),
        operations as f64 / elapsed.as_secs_f64()
    )
}
