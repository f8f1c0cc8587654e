//! The crash test with a real process: the helper binary submits operations and prints each
//! acknowledged sequence and record hash; the test kills it with SIGKILL after a random number
//! of acknowledgements, reopens the store and checks that every acknowledged record is there,
//! unchanged, and that `verify` passes. Several rounds on one journal, each resuming where the
//! last left off. Prints its seed; `CRASH_SEED=<seed>` reruns a failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use ledger_store::{Store, read_records, verify};

use crate::support::*;

const ROUNDS: u32 = 5;

/// Most acknowledgements to wait for before a kill: a few hundred, so the test stays short in a
/// debug build.
const MOST_ACKS_BEFORE_KILL: u64 = 300;

/// SplitMix64, to pick the kill points from the seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Parses `ack <sequence> <record hash>`.
fn parse_ack(line: &str) -> (u64, String) {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("ack"), Some(sequence), Some(hash), None) => {
            (sequence.parse().expect("a sequence"), hash.to_owned())
        }
        _ => panic!("unexpected helper output {line:?}"),
    }
}

#[test]
fn every_acknowledged_operation_survives_kill_9_at_random_moments() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        });
    println!("crash test seed: {seed} (rerun with CRASH_SEED={seed})");
    let mut random = Random(seed);
    let dir = tempfile::tempdir().expect("scratch");
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();

    for round in 0..ROUNDS {
        // A quarter of the kills (never the first) land before the first ack: during the
        // helper's own recovery, or its first commit.
        let kill_after_acks = if round > 0 && random.next().is_multiple_of(4) {
            0
        } else {
            1 + random.next() % MOST_ACKS_BEFORE_KILL
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-store-crash-helper"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the helper");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = Vec::new();
        let mut acks_this_round = 0;
        while acks_this_round < kill_after_acks {
            line.clear();
            let read = stdout
                .read_until(b'\n', &mut line)
                .expect("read helper output");
            if read == 0 {
                let mut errors = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    stderr.read_to_string(&mut errors).expect("read stderr");
                }
                panic!("round {round}: the helper exited early: {errors}");
            }
            let (sequence, hash) = parse_ack(std::str::from_utf8(&line).expect("utf-8"));
            acknowledged.insert(sequence, hash);
            acks_this_round += 1;
        }
        // SIGKILL on Unix: no destructor, no flush, no close.
        child.kill().expect("kill the helper");
        // Acknowledgements the helper printed before it died count too; only a line cut short
        // by the kill (no newline) was never an acknowledgement.
        loop {
            line.clear();
            if stdout.read_until(b'\n', &mut line).expect("drain") == 0 {
                break;
            }
            if line.ends_with(b"\n") {
                let (sequence, hash) = parse_ack(std::str::from_utf8(&line).expect("utf-8"));
                acknowledged.insert(sequence, hash);
            }
        }
        child.wait().expect("reap the helper");

        let (store, report) = Store::open(dir.path(), create_options())
            .unwrap_or_else(|error| panic!("round {round}, seed {seed}: {error}"));
        let highest_acknowledged = acknowledged.keys().last().copied().unwrap_or(0);
        assert!(
            report.last_sequence >= highest_acknowledged,
            "round {round}, seed {seed}: journal ends at {} but {highest_acknowledged} was acknowledged",
            report.last_sequence
        );
        println!(
            "round {round}: killed after {kill_after_acks} acks; recovered {} records, torn tail {:?}, checkpoint {:?}",
            report.last_sequence, report.torn_tail, report.checkpoint
        );
        drop(store);
        // A kill between writing a temporary checkpoint and renaming it leaves the temporary
        // file; opening the store removes it.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names.retain(|name| name != ledger_store::CHECKPOINT_FILE_NAME);
        assert_eq!(names, vec![ledger_store::JOURNAL_FILE_NAME.to_owned()]);
        let mut journaled = BTreeMap::new();
        read_records(dir.path(), |record| {
            journaled.insert(record.sequence, record.record_hash.to_string());
            Ok(())
        })
        .expect("read records");
        for (sequence, hash) in &acknowledged {
            assert_eq!(
                journaled.get(sequence),
                Some(hash),
                "round {round}, seed {seed}: acknowledged record {sequence}"
            );
        }
        let verified = verify(dir.path())
            .unwrap_or_else(|error| panic!("round {round}, seed {seed}: verify: {error}"));
        assert_eq!(verified.torn_tail, None, "recovery cut the tail");
        assert_eq!(verified.state_hash, replayed_state_hash_of(&verified));
    }
}

/// The state of a fresh replay of the same number of workload operations (the helper's
/// workload uses 20 accounts).
fn replayed_state_hash_of(report: &ledger_store::VerifyReport) -> ledger::StateHash {
    let workload = ledger_store::workload::Workload { accounts: 20 };
    let mut ledger = ledger::Ledger::new();
    for index in 0..report.records {
        let submission = workload.submission(index);
        ledger
            .apply(submission.now_seconds, submission.signer, submission.op)
            .expect("accepted");
    }
    ledger.state_hash()
}
