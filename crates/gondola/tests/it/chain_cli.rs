//! `gondola chain deploy` against a real anvil node: the suite it deploys holds the ledger's
//! genesis, and an airdrop allocation is claimed on chain with the proof it wrote.

use alloy::network::EthereumWallet;
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, U256};
use chain::bindings::{Airdrop, VVV};
use test_servers::{ANVIL_FIRST_KEY, AnvilServer};

/// anvil's second development account.
const CLAIMANT_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const WHOLE: u128 = 1_000_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn chain_deploy_puts_the_genesis_on_chain_and_its_airdrop_proofs_claim() {
    let anvil = AnvilServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("deployer.key");
    std::fs::write(&key, format!("{ANVIL_FIRST_KEY}\n")).expect("key");
    let claimant: PrivateKeySigner = CLAIMANT_KEY.parse().expect("key");
    let airdrop_file = dir.path().join("airdrop.csv");
    std::fs::write(
        &airdrop_file,
        format!(
            "# address,VVV\n{},1234.5\n0x00000000000000000000000000000000000000b0,7\n",
            claimant.address()
        ),
    )
    .expect("csv");
    let proofs_file = dir.path().join("proofs.json");
    let treasury = "0x00000000000000000000000000000000000000a1";
    let deployed = std::process::Command::new(crate::support::binary())
        .args([
            "chain",
            "deploy",
            "--json",
            "--rpc-url",
            anvil.url(),
            "--treasury",
            treasury,
        ])
        .arg("--key")
        .arg(&key)
        .arg("--airdrop")
        .arg(&airdrop_file)
        .arg("--proofs")
        .arg(&proofs_file)
        .output()
        .expect("run gondola");
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let deployment: serde_json::Value =
        serde_json::from_slice(&deployed.stdout).expect("the deployment as JSON");
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
    let receipt = Airdrop::new(at("airdrop"), &provider)
        .claim(amount, proof)
        .send()
        .await
        .expect("sent")
        .with_timeout(Some(std::time::Duration::from_secs(30)))
        .get_receipt()
        .await
        .expect("mined");
    assert!(receipt.status(), "the claim went through");
    assert_eq!(
        vvv.balanceOf(claimant.address())
            .call()
            .await
            .expect("balance"),
        amount
    );
}
