//! `gondola chain` against a real anvil node: the suite `deploy` puts there holds the ledger's
//! genesis, an airdrop allocation is claimed with the proof it wrote, and a wallet's real
//! transactions (claim, stake, unstake across anvil's clock, DIEM) leave what the ledger crate
//! says they should.

use alloy::network::EthereumWallet;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, U256};
use chain::bindings::{Airdrop, VVV};
use serde_json::json;
use test_servers::{ANVIL_FIRST_KEY, AnvilServer};

/// anvil's second development account.
const CLAIMANT_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const WHOLE: u128 = 1_000_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn chain_deploy_puts_the_genesis_on_chain_and_its_airdrop_proofs_claim() {
    let anvil = AnvilServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let claimant: PrivateKeySigner = CLAIMANT_KEY.parse().expect("key");
    let treasury = "0x00000000000000000000000000000000000000a1";
    let deployed = deploy(
        &anvil,
        dir.path(),
        &format!(
            "# address,VVV\n{},1234.5\n0x00000000000000000000000000000000000000b0,7\n",
            claimant.address()
        ),
        &["--treasury", treasury],
    );
    let (deployment, proofs_file) = (deployed.json, deployed.proofs);
    let at = |name: &str| -> Address {
        deployment[name]
            .as_str()
            .expect("an address")
            .parse()
            .expect("an address")
    };

    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(claimant.clone()))
        .connect_http(anvil.url().parse().expect("url"));
    let vvv = VVV::new(at("vvv"), &provider);
    // The seed's genesis: 25M treasury, 10M incentive fund, 5M liquidity, 10M team, plus the
    // airdrop given.
    let airdrop_total = U256::from(1_241_500_000_000_000_000_000u128);
    assert_eq!(
        vvv.totalSupply().call().await.expect("supply"),
        U256::from(50_000_000 * WHOLE) + airdrop_total
    );
    assert_eq!(
        vvv.balanceOf(treasury.parse().expect("address"))
            .call()
            .await
            .expect("treasury"),
        U256::from(25_000_000 * WHOLE)
    );
    assert_eq!(
        vvv.balanceOf(at("airdrop")).call().await.expect("airdrop"),
        airdrop_total
    );

    let proofs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proofs_file).expect("proofs")).expect("JSON");
    let mine = proofs
        .as_array()
        .expect("a list")
        .iter()
        .find(|entry| {
            entry["account"].as_str().map(str::to_lowercase)
                == Some(claimant.address().to_string().to_lowercase())
        })
        .expect("the claimant's proof");
    let amount: U256 = mine["amount"]
        .as_str()
        .expect("amount")
        .parse()
        .expect("U256");
    assert_eq!(amount, U256::from(1_234_500_000_000_000_000_000u128));
    let proof: Vec<B256> = mine["proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(|hash| hash.as_str().expect("hash").parse().expect("B256"))
        .collect();
    chain::transact::send(
        &provider,
        claimant.address(),
        Airdrop::new(at("airdrop"), &provider)
            .claim(amount, proof)
            .into_transaction_request(),
    )
    .await
    .expect("the claim went through");
    assert_eq!(
        vvv.balanceOf(claimant.address())
            .call()
            .await
            .expect("balance"),
        amount
    );
}

/// The claimant (anvil's second development account) and its key file in `dir`.
fn claimant_wallet(dir: &std::path::Path) -> (PrivateKeySigner, std::path::PathBuf) {
    let wallet = dir.join("claimant.key");
    std::fs::write(&wallet, format!("{CLAIMANT_KEY}\n")).expect("wallet");
    (CLAIMANT_KEY.parse().expect("key"), wallet)
}

/// Runs `gondola chain ARGS` as the claimant, against `anvil` and `deployment`.
fn as_claimant(
    anvil: &AnvilServer,
    deployment: &std::path::Path,
    wallet: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(crate::support::binary())
        .arg("chain")
        .args(args)
        .env("GONDOLA_RPC_URL", anvil.url())
        .env("GONDOLA_DEPLOYMENT", deployment)
        .env("GONDOLA_WALLET", wallet)
        .output()
        .expect("run gondola")
}

/// The suite `gondola chain deploy --json` put on `anvil`, signed with anvil's first key.
struct Deployed {
    /// The deployer's key file (`dir/deployer.key`).
    key: std::path::PathBuf,
    /// The deployment as the command printed it (`dir/deployment.json`), and parsed.
    file: std::path::PathBuf,
    json: serde_json::Value,
    /// The airdrop's proofs (`dir/proofs.json`), when there is an airdrop.
    proofs: std::path::PathBuf,
}

/// Deploys with `airdrop` as the CSV's lines (none when empty) and `extra` arguments.
fn deploy(anvil: &AnvilServer, dir: &std::path::Path, airdrop: &str, extra: &[&str]) -> Deployed {
    let key = dir.join("deployer.key");
    std::fs::write(&key, format!("{ANVIL_FIRST_KEY}\n")).expect("key");
    let proofs = dir.join("proofs.json");
    let mut command = std::process::Command::new(crate::support::binary());
    command
        .args(["chain", "deploy", "--json", "--rpc-url", anvil.url()])
        .args(extra)
        .arg("--key")
        .arg(&key);
    if !airdrop.is_empty() {
        let csv = dir.join("airdrop.csv");
        std::fs::write(&csv, airdrop).expect("csv");
        command
            .arg("--airdrop")
            .arg(&csv)
            .arg("--proofs")
            .arg(&proofs);
    }
    let deployed = command.output().expect("run gondola");
    succeeded(&deployed, "deploy");
    let file = dir.join("deployment.json");
    std::fs::write(&file, &deployed.stdout).expect("deployment");
    Deployed {
        key,
        file,
        json: serde_json::from_slice(&deployed.stdout).expect("the deployment as JSON"),
        proofs,
    }
}

fn succeeded(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_claims_stakes_waits_out_the_cooldown_and_mints_diem_on_chain() {
    let anvil = AnvilServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (claimant, wallet) = claimant_wallet(dir.path());
    let deployed = deploy(
        &anvil,
        dir.path(),
        &format!("{},1234.5\n", claimant.address()),
        &[],
    );
    let (deployment, proofs, contracts) = (deployed.file, deployed.proofs, deployed.json);
    let cli = |args: &[&str]| as_claimant(&anvil, &deployment, &wallet, args);

    succeeded(
        &cli(&["claim-airdrop", "--proofs", proofs.to_str().expect("path")]),
        "claim the airdrop",
    );
    succeeded(&cli(&["stake", "1000"]), "stake");
    succeeded(&cli(&["unstake", "400"]), "unstake");
    let early = cli(&["finalize-unstake"]);
    assert!(!early.status.success(), "finalized before the cooldown");
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("CooldownNotElapsed"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    // Seven days on anvil's clock.
    let http = reqwest::Client::new();
    for (method, params) in [
        ("evm_increaseTime", json!([7 * 86_400])),
        ("evm_mine", json!([])),
    ] {
        let answer: serde_json::Value = http
            .post(anvil.url())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert!(answer.get("error").is_none(), "{method}: {answer}");
    }
    succeeded(&cli(&["finalize-unstake"]), "finalize");
    succeeded(
        &cli(&["diem", "mint", "300", "--slippage-bps", "0"]),
        "mint DIEM",
    );

    // What the ledger crate, the reference model, says 300 sVVV mints at zero supply.
    let quote = ledger::MintCurve::venice_default()
        .mint_for_budget(0, 300 * WHOLE)
        .expect("a quote");
    let balance = cli(&["balance", "--json"]);
    succeeded(&balance, "balance");
    let figures: serde_json::Value = serde_json::from_slice(&balance.stdout).expect("JSON");
    let decimal = |units: u128| wire::money::Amount(units).to_decimal_string();
    assert_eq!(
        figures["vvv"],
        decimal(634_500_000_000_000_000_000),
        "{figures}"
    );
    assert_eq!(
        figures["staked_svvv"],
        decimal(600 * WHOLE - quote.svvv_units)
    );
    assert_eq!(figures["locked_svvv"], decimal(quote.svvv_units));
    assert_eq!(figures["diem"], decimal(quote.diem_units));
    assert_eq!(figures["cooling_svvv"], decimal(0));

    // VVV and DIEM go to another address as plain ERC-20 transfers; a refusal is named.
    let friend = Address::repeat_byte(0xB0).to_string();
    succeeded(
        &cli(&["transfer", "--to", &friend, "--vvv", "34.5"]),
        "send VVV",
    );
    let too_much = cli(&["transfer", "--to", &friend, "--diem", "1000000"]);
    assert!(!too_much.status.success(), "sent DIEM it does not have");
    let said = String::from_utf8_lossy(&too_much.stderr);
    assert!(said.contains("ERC20InsufficientBalance"), "{said}");
    let provider = ProviderBuilder::new().connect_http(anvil.url().parse().expect("url"));
    let at = |name: &str| -> Address {
        contracts[name]
            .as_str()
            .expect("address")
            .parse()
            .expect("address")
    };
    assert_eq!(
        VVV::new(at("vvv"), &provider)
            .balanceOf(Address::repeat_byte(0xB0))
            .call()
            .await
            .expect("balance"),
        U256::from(345 * WHOLE / 10)
    );
    let balance = cli(&["balance", "--json"]);
    let figures: serde_json::Value = serde_json::from_slice(&balance.stdout).expect("JSON");
    assert_eq!(figures["vvv"], decimal(600 * WHOLE));

    let minted = decimal(quote.diem_units);
    succeeded(&cli(&["diem", "stake", &minted]), "stake DIEM");
    let balance = cli(&["balance", "--json"]);
    let figures: serde_json::Value = serde_json::from_slice(&balance.stdout).expect("JSON");
    assert_eq!(figures["staked_diem"], minted);
    assert_eq!(figures["diem_allowance_usd_per_day"], minted);
}

/// A journal of the first `records` operations of a synthetic workload over `accounts`.
fn journal(dir: &std::path::Path, accounts: u32, records: u64) {
    let (mut store, _) = ledger_store::Store::open(
        &dir.join("ledger"),
        ledger_store::StoreOptions {
            create_if_missing: true,
            ..ledger_store::StoreOptions::default()
        },
    )
    .expect("a store");
    let workload = ledger_store::workload::Workload { accounts };
    let first = store.last_sequence();
    let submissions = (first..records)
        .map(|index| workload.submission(index))
        .collect();
    for result in store.submit_batch(submissions).expect("written") {
        result.expect("accepted");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_is_anchored_on_chain_and_a_rewritten_or_cut_history_is_caught() {
    let anvil = AnvilServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let deployed = deploy(&anvil, dir.path(), "", &[]);
    let (key, deployment) = (deployed.key, deployed.file);
    let (kept, rewritten, cut) = (
        dir.path().join("kept"),
        dir.path().join("rewritten"),
        dir.path().join("cut"),
    );
    journal(&kept, 10, 50);
    // Another history of the same length, and the kept one's first 20 records.
    journal(&rewritten, 3, 50);
    journal(&cut, 10, 20);
    let cli = |args: &[&str], data_dir: &std::path::Path| {
        std::process::Command::new(crate::support::binary())
            .arg("chain")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("GONDOLA_RPC_URL", anvil.url())
            .env("GONDOLA_DEPLOYMENT", &deployment)
            .env("GONDOLA_WALLET", &key)
            .output()
            .expect("run gondola")
    };

    succeeded(&cli(&["anchor"], &kept), "anchor");
    let verified = cli(&["verify-anchors"], &kept);
    succeeded(&verified, "verify");
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("covers records 1 to 50 of 50"),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let again = cli(&["anchor"], &kept);
    assert!(!again.status.success(), "the same head anchored twice");
    assert!(String::from_utf8_lossy(&again.stderr).contains("SequenceNotAfterLast"));

    // The journal grows and is anchored again; both anchors hold.
    journal(&kept, 10, 80);
    succeeded(&cli(&["anchor"], &kept), "anchor again");
    succeeded(&cli(&["verify-anchors"], &kept), "verify both");

    let other = cli(&["verify-anchors"], &rewritten);
    assert!(!other.status.success(), "a rewritten history passed");
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(
        said.contains("record 50 is 0x") && said.contains("on chain"),
        "{said}"
    );
    let short = cli(&["verify-anchors"], &cut);
    assert!(!short.status.success(), "a cut history passed");
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("is not in this journal (it ends at 20)"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
}

/// A JSON-RPC call to anvil; its result.
async fn anvil_rpc(
    http: &reqwest::Client,
    anvil: &AnvilServer,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let answer: serde_json::Value = http
        .post(anvil.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

/// The gateway's view of `address`, once `holds` is true of it (at most 20 seconds).
async fn account_until(
    http: &reqwest::Client,
    url: &str,
    address: &str,
    holds: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let account =
            crate::support::get_json(http, format!("{url}/api/v1/ledger/accounts/{address}")).await;
        if holds(&account) {
            return account;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the gateway's view never held: {account}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_mode_counts_a_stake_once_confirmed_and_a_reorg_takes_it_away() {
    let anvil = AnvilServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (claimant, wallet) = claimant_wallet(dir.path());
    let deployed = deploy(
        &anvil,
        dir.path(),
        &format!("{},2000\n", claimant.address()),
        &[],
    );
    let (key, deployment, proofs, deployed_json) =
        (deployed.key, deployed.file, deployed.proofs, deployed.json);
    let cli = |args: &[&str]| as_claimant(&anvil, &deployment, &wallet, args);
    succeeded(
        &cli(&["claim-airdrop", "--proofs", proofs.to_str().expect("path")]),
        "claim",
    );
    succeeded(&cli(&["stake", "1000"]), "stake");
    succeeded(
        &cli(&["diem", "mint", "500", "--slippage-bps", "0"]),
        "mint DIEM",
    );
    let minted = ledger::MintCurve::venice_default()
        .mint_for_budget(0, 500 * WHOLE)
        .expect("a quote")
        .diem_units;
    // The operator reported a busy day by hand; the gateway's report of yesterday replaces it.
    succeeded(
        &as_claimant(
            &anvil,
            &deployment,
            &key,
            &["admin", "report-utilization", "2500"],
        ),
        "report utilization",
    );

    // A gateway in chain mode: no capacity shared out, so the only allowance is staked DIEM.
    let mut config = crate::economy::ledger_config("0", "sk-chain-operator", "1");
    config.push_str(&format!(
        "\n[gateway.chain]\nrpc_url = \"{}\"\ndeployment = \"{}\"\nconfirmations = 2\npoll_ms = 100\nanchor_key = \"{}\"\nanchor_every_ms = 200\n",
        anvil.url(),
        deployment.display(),
        key.display()
    ));
    let (_gateway, url, gateway_dir) = crate::support::serve(&[], Some(&config));
    let http = crate::support::client();
    // The stake is two blocks deep once two more are mined.
    for _ in 0..2 {
        anvil_rpc(&http, &anvil, "evm_mine", json!([])).await;
    }
    let data = gateway_dir.path().join("data");
    let minted_key = crate::economy::gondola(
        &["key", "--wallet", wallet.to_str().expect("path")],
        &url,
        &data,
    );
    let api_key = minted_key["data"]["apiKey"]
        .as_str()
        .expect("a key")
        .to_owned();
    let http = crate::support::client();
    let chat = async || {
        http.post(format!("{url}/api/v1/chat/completions"))
            .bearer_auth(&api_key)
            .json(&crate::support::chat_body(
                "smollm2-135m-instruct",
                "Say hi.",
                4,
                false,
            ))
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    };
    assert_eq!(chat().await, 402, "nothing staked as DIEM yet");

    let address = claimant.address().to_string().to_lowercase();
    // As the operator, it reports yesterday's utilization to the staking contract once a day,
    // at its first tick: nothing was spent yesterday, so none, over the network's capacity and
    // the chain's DIEM; it replaces the hand-made 2,500. (Seen before the snapshot below, which
    // a revert goes back to.)
    let provider = ProviderBuilder::new().connect_http(anvil.url().parse().expect("url"));
    let staking: Address = deployed_json["staking"]
        .as_str()
        .expect("address")
        .parse()
        .expect("address");
    let reports = async || {
        provider
            .get_logs(
                &alloy::rpc::types::Filter::new()
                    .address(staking)
                    .event_signature(
                        <chain::bindings::Staking::UtilizationReported as alloy::sol_types::SolEvent>::SIGNATURE_HASH,
                    )
                    .from_block(0),
            )
            .await
            .expect("logs")
    };
    let reported = std::time::Instant::now();
    while reports().await.len() < 2 {
        assert!(
            reported.elapsed() < std::time::Duration::from_secs(20),
            "no utilization report from the gateway"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let figures: Vec<u32> = reports()
        .await
        .iter()
        .map(|log| {
            log.log_decode::<chain::bindings::Staking::UtilizationReported>()
                .expect("a report")
                .inner
                .data
                .utilizationBps
        })
        .collect();
    assert_eq!(figures, [2500, 0]);

    let before = anvil_rpc(&http, &anvil, "evm_snapshot", json!([])).await;
    let decimal = wire::money::Amount(minted).to_decimal_string();
    succeeded(&cli(&["diem", "stake", &decimal]), "stake DIEM");
    let staked_at = anvil_rpc(&http, &anvil, "eth_blockNumber", json!([])).await;
    let staked_at = u64::from_str_radix(
        staked_at.as_str().expect("hex").trim_start_matches("0x"),
        16,
    )
    .expect("a block number");
    // Read at the stake's block, but not yet two blocks deep: not counted.
    let seen = account_until(&http, &url, &address, |account| {
        account["chain"]["head_block"].as_u64() >= Some(staked_at)
    })
    .await;
    assert_eq!(seen["allowance"]["diem_usd_units_per_day"], "0", "{seen}");
    assert_eq!(chat().await, 402, "an unconfirmed stake counts for nothing");

    let mined = std::time::Instant::now();
    for _ in 0..2 {
        anvil_rpc(&http, &anvil, "evm_mine", json!([])).await;
    }
    let counted = account_until(&http, &url, &address, |account| {
        account["allowance"]["diem_usd_units_per_day"] == minted.to_string()
    })
    .await;
    eprintln!(
        "the stake counted {} ms after its second confirmation",
        mined.elapsed().as_millis()
    );
    assert_eq!(
        counted["chain"]["diem_allowance_usd_units_per_day"],
        minted.to_string()
    );
    assert_eq!(chat().await, 200, "the confirmed DIEM pays");
    // The follower is visible to the operator: its head, whom it follows, and how fresh it is.
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(
        figure("gondola_chain_head_block")
            >= counted["chain"]["head_block"].as_f64().expect("head")
    );
    assert_eq!(figure("gondola_chain_followed_accounts"), 1.0);
    assert!(figure("gondola_chain_account_reads_total") >= 1.0);
    let age = figure("gondola_chain_seconds_since_poll");
    assert!((0.0..5.0).contains(&age), "the last poll {age} s ago");

    // The chain reorganizes back to before the stake: the allowance goes at once.
    anvil_rpc(&http, &anvil, "evm_revert", json!([before])).await;
    account_until(&http, &url, &address, |account| {
        account["allowance"]["diem_usd_units_per_day"] == "0"
    })
    .await;
    assert_eq!(chat().await, 402, "a stake the chain lost pays for nothing");

    // The gateway anchored its journal as it grew (genesis, then the served request's
    // settlement): a copy of it checks against every anchor.
    let started = std::time::Instant::now();
    loop {
        let checked = cli(&["verify-anchors", "--data-dir", data.to_str().expect("path")]);
        let said = String::from_utf8_lossy(&checked.stdout).to_string();
        assert!(
            checked.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let anchors: u64 = said
            .split_whitespace()
            .next()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        if anchors >= 2 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the gateway anchored too little: {said}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        reports().await.len(),
        2,
        "the gateway reported once for the day"
    );
}

/// `scripts/chain-demo.sh serve`, the README's second command, against a running anvil (the
/// first command's): it deploys the suite with an airdrop for the demo wallet, and serves in
/// chain mode with the chain and the airdrop's proofs published to the web app; run again, it
/// keeps the deployment.
#[tokio::test(flavor = "multi_thread")]
async fn the_chain_demo_deploys_an_airdrop_for_the_demo_wallet_and_serves_in_chain_mode() {
    let anvil = AnvilServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = dir.path().join("demo");
    for model in [
        crate::support::model_path,
        crate::support::embedding_model_path,
        crate::support::speech_model_path,
        crate::support::transcription_model_path,
        crate::support::background_model_path,
        crate::support::upscale_model_path,
    ] {
        model();
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/chain-demo.sh");
    let http = crate::support::client();
    let mut served = Vec::new();
    for _ in 0..2 {
        let mut child = std::process::Command::new("bash")
            .arg(&script)
            .args(["serve", "--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(crate::support::cache_dir())
            .env("GONDOLA_BIN", crate::support::binary())
            .env("GONDOLA_DEMO_RPC_URL", anvil.url())
            .env("GONDOLA_DEMO_DIR", &demo)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run the demo");
        // Read to the end on a thread of its own, so that the server never writes to a closed pipe.
        let stdout = child.stdout.take().expect("stdout");
        let (lines, heard) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        let (said, url) = tokio::task::spawn_blocking(move || {
            let mut said = String::new();
            while let Ok(line) = heard.recv_timeout(std::time::Duration::from_secs(180)) {
                said.push_str(&line);
                said.push('\n');
                if let Some(at) = line
                    .find("http")
                    .filter(|_| line.contains("gateway listening on"))
                {
                    let url = line[at..].split_whitespace().next().unwrap_or_default();
                    return (said, url.trim_end_matches("/v1").to_owned());
                }
            }
            panic!("the demo stopped before serving:\n{said}");
        })
        .await
        .expect("the demo's output");
        let config: serde_json::Value = http
            .get(format!("{url}/app-config.json"))
            .send()
            .await
            .expect("app config")
            .json()
            .await
            .expect("JSON");
        let holder = CLAIMANT_KEY
            .parse::<PrivateKeySigner>()
            .expect("key")
            .address();
        let allocation: serde_json::Value = http
            .get(format!("{url}/api/v1/chain/airdrop/{holder}"))
            .send()
            .await
            .expect("the airdrop")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            allocation["amount_units"],
            (20_000 * WHOLE).to_string(),
            "the demo wallet's airdrop is offered: {allocation}"
        );
        let _ = child.kill();
        let _ = child.wait();
        let deployment: serde_json::Value = serde_json::from_slice(
            &std::fs::read(demo.join("deployment.json")).expect("the deployment"),
        )
        .expect("JSON");
        assert_eq!(config["chain"]["rpc_url"], anvil.url(), "{said}");
        assert_eq!(
            config["chain"]["contracts"]["staking"],
            deployment["staking"]
        );
        assert!(
            said.contains(CLAIMANT_KEY),
            "the demo key is printed: {said}"
        );
        served.push(deployment["staking"].clone());
    }
    assert_eq!(served[0], served[1], "the second run keeps the deployment");
    let balance = std::process::Command::new(crate::support::binary())
        .args(["chain", "balance", "--json"])
        .env("GONDOLA_RPC_URL", anvil.url())
        .env("GONDOLA_DEPLOYMENT", demo.join("deployment.json"))
        .env("GONDOLA_WALLET", demo.join("holder.key"))
        .output()
        .expect("balance");
    succeeded(&balance, "balance");
    let figures: serde_json::Value = serde_json::from_slice(&balance.stdout).expect("JSON");
    assert_eq!(
        figures["vvv"], "0",
        "the airdrop is left for the page to claim"
    );
}

/// `gondola chain admin`, as the deployer (who holds every role): the emission rate, a day's
/// utilization, a buy-back and burn from the treasury (approved on the way), and the unclaimed
/// airdrop burned once its window closed; each refused by name before its time or without
/// the role.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_transactions_set_the_economy_and_are_refused_by_name_without_the_role() {
    let anvil = AnvilServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (claimant, stranger) = claimant_wallet(dir.path());
    let deployed = deploy(
        &anvil,
        dir.path(),
        &format!("{},10\n", claimant.address()),
        &[],
    );
    let operator = |args: &[&str]| as_claimant(&anvil, &deployed.file, &deployed.key, args);
    let provider = ProviderBuilder::new().connect_http(anvil.url().parse().expect("url"));
    let at = |name: &str| -> Address {
        deployed.json[name]
            .as_str()
            .expect("address")
            .parse()
            .expect("address")
    };
    let staking = chain::bindings::Staking::new(at("staking"), &provider);
    let vvv = VVV::new(at("vvv"), &provider);

    succeeded(
        &operator(&["admin", "set-emissions", "31536000"]),
        "set emissions",
    );
    assert_eq!(
        staking.emissionRate().call().await.expect("rate"),
        U256::from(WHOLE),
        "31,536,000 VVV a year is one a second"
    );
    succeeded(
        &operator(&["admin", "report-utilization", "2500"]),
        "report utilization",
    );
    assert_eq!(staking.utilizationBps().call().await.expect("bps"), 2500);

    succeeded(
        &operator(&["admin", "buyback", "--vvv", "100", "--revenue-usd", "25"]),
        "buy back",
    );
    assert_eq!(
        staking.burnedByBuyback().call().await.expect("burned"),
        U256::from(100 * WHOLE)
    );
    let refused = as_claimant(
        &anvil,
        &deployed.file,
        &stranger,
        &["admin", "set-emissions", "1"],
    );
    assert!(
        !refused.status.success(),
        "a key without the role set the rate"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("AccessControlUnauthorizedAccount"), "{said}");

    let early = operator(&["admin", "burn-unclaimed-airdrop"]);
    assert!(!early.status.success(), "burned while the airdrop is open");
    let said = String::from_utf8_lossy(&early.stderr);
    assert!(said.contains("AirdropWindowOpen"), "{said}");
    let http = crate::support::client();
    anvil_rpc(&http, &anvil, "evm_increaseTime", json!([46 * 86_400])).await;
    anvil_rpc(&http, &anvil, "evm_mine", json!([])).await;
    succeeded(
        &operator(&["admin", "burn-unclaimed-airdrop"]),
        "burn the unclaimed airdrop",
    );
    assert_eq!(
        vvv.balanceOf(at("airdrop")).call().await.expect("balance"),
        U256::ZERO
    );
}
