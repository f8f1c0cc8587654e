//! kill -9 under a stream of signed operations: a real `gondola gateway` takes transfers signed
//! by four wallets, concurrently, over HTTP; it is killed without warning mid-stream and
//! restarted on the same data directory. Every operation it acknowledged is there, nothing is
//! half-applied (each wallet's nonce counts exactly the transfers the sink received), and the
//! journal verifies, signatures included.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use wallet::{AssetName, Domain, JsonAddress, Operation, Scheme, SignedOperation, Units, Wallet};

use crate::support::{Process, binary, client, get_json, url_in};

const WALLETS: usize = 4;
/// Acknowledged operations to see before the kill.
const BEFORE_KILL: u64 = 150;

fn start_gateway(dir: &Arc<tempfile::TempDir>) -> (Process, String) {
    let data = dir.path().join("data").display().to_string();
    let config = dir.path().join("gateway.toml");
    // Each wallet streams transfers as fast as the ledger commits them.
    std::fs::write(
        &config,
        "[gateway.ledger]\noperations_per_minute_per_signer = 1000000\n",
    )
    .expect("write config");
    let config = config.display().to_string();
    let mut process = Process::start(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config,
            "--data-dir",
            &data,
        ],
        Arc::clone(dir),
    );
    let url = url_in(&process.wait_for_line("gateway listening on"));
    (process, url)
}

fn cli(args: &[&str], url: &str, data: &Path) {
    let output = Command::new(binary())
        .args(args)
        .args(["--gateway", url, "--data-dir"])
        .arg(data)
        .output()
        .expect("run gondola");
    assert!(
        output.status.success(),
        "gondola {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn nonce_and_vvv(http: &reqwest::Client, url: &str, address: &str) -> (u64, u128) {
    let account = get_json(http, format!("{url}/api/v1/ledger/accounts/{address}")).await;
    let vvv = account["vvv_units"]
        .as_str()
        .and_then(|units| units.parse().ok())
        .unwrap_or_else(|| panic!("{account}"));
    (account["nonce"].as_u64().expect("a nonce"), vvv)
}

/// Submits transfers of one base unit to `sink`, signed by `wallet`, one after another, until the
/// gateway stops answering. Counts the acknowledged ones in `acknowledged`.
async fn stream_transfers(
    url: String,
    wallet: Wallet,
    domain: Domain,
    sink: ledger::Address,
    deadline: u64,
    acknowledged: Arc<AtomicU64>,
) -> Result<u64, String> {
    let http = client();
    let mut nonce = 0;
    loop {
        let signed = SignedOperation::sign(
            &wallet,
            &domain,
            Operation::Transfer {
                asset: AssetName::Vvv,
                to: JsonAddress(sink),
                amount_units: Units(1),
            },
            nonce,
            deadline,
            Scheme::Eip712,
        );
        let Ok(response) = http
            .post(format!("{url}/api/v1/ledger/operations"))
            .json(&signed)
            .send()
            .await
        else {
            return Ok(nonce);
        };
        let status = response.status();
        let Ok(body) = response.bytes().await else {
            return Ok(nonce);
        };
        if status != 200 {
            return Err(format!(
                "the transfer with nonce {nonce} was refused: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        nonce += 1;
        acknowledged.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_operations_survive_kill_9_mid_stream_and_the_journal_verifies() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let data = dir.path().join("data");
    let (mut process, url) = start_gateway(&dir);
    let http = client();

    let operator = data.join("operator.key");
    let operator = operator.to_str().expect("utf-8 path");
    let wallets: Vec<Wallet> = (0..WALLETS).map(|_| Wallet::generate()).collect();
    for wallet in &wallets {
        cli(
            &[
                "transfer",
                "--wallet",
                operator,
                "--to",
                &wallet.address().to_string(),
                "--vvv",
                "1",
            ],
            &url,
            &data,
        );
    }
    let status = get_json(&http, format!("{url}/api/v1/ledger/status")).await;
    let admin = status["operator"]
        .as_str()
        .and_then(ledger::Address::from_hex)
        .expect("the operator's address");
    let domain = Domain::for_ledger(admin, status["genesis_seconds"].as_u64().expect("genesis"));
    let sink = ledger::Address([0x5A; 20]);
    let signature_deadline = status["now"].as_u64().expect("the gateway's clock") + 3_600;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let streams: Vec<_> = wallets
        .iter()
        .map(|wallet| {
            tokio::spawn(stream_transfers(
                url.clone(),
                wallet.clone(),
                domain,
                sink,
                signature_deadline,
                Arc::clone(&acknowledged),
            ))
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acknowledged.load(Ordering::Relaxed) < BEFORE_KILL
        && !streams.iter().any(tokio::task::JoinHandle::is_finished)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} transfers acknowledged",
            acknowledged.load(Ordering::Relaxed)
        );
        tokio::task::yield_now().await;
    }
    process.kill();
    let mut acked_by_wallet = Vec::new();
    for stream in streams {
        let acked = stream.await.expect("the stream task");
        acked_by_wallet.push(acked.unwrap_or_else(|error| panic!("{error}")));
    }
    let acked: u64 = acked_by_wallet.iter().sum();
    assert!(acked >= BEFORE_KILL);

    let (mut process, url) = start_gateway(&dir);
    let mut committed = 0;
    for (wallet, acked) in wallets.iter().zip(&acked_by_wallet) {
        let (nonce, _) = nonce_and_vvv(&http, &url, &wallet.address().to_string()).await;
        assert!(
            nonce >= *acked,
            "{} acknowledged transfers but the ledger has {nonce}",
            acked
        );
        // At most the one in flight when the process died can be in the journal unacknowledged.
        assert!(nonce <= acked + 1, "nonce {nonce}, acknowledged {acked}");
        committed += nonce;
    }
    let (_, sink_vvv) = nonce_and_vvv(&http, &url, &sink.to_string()).await;
    assert_eq!(
        sink_vvv,
        u128::from(committed),
        "every committed transfer, and only those, reached the sink"
    );
    process.kill();

    let verified = Command::new(binary())
        .args(["ledger", "verify", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("run gondola");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: Value = serde_json::from_slice(&verified.stdout).expect("JSON");
    assert_eq!(report["signatures_checked"], report["records"], "{report}");
    assert!(
        report["records"].as_u64().expect("records") > committed,
        "{report}"
    );
}
