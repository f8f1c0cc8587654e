//! The suite on a real node: deployed by `chain::deploy` on anvil over JSON-RPC, from the same
//! genesis the ledger starts with; then an airdrop claimed with its proof, stake, the unstake
//! cooldown crossed with anvil's clock, and DIEM minted and staked, each a real transaction.

use std::time::Duration;

use alloy::network::{EthereumWallet, ReceiptResponse, TransactionBuilder};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, U256};
use chain::bindings::{Airdrop, Diem, Staking, TeamVesting, VVV};
use ledger::{Allocation, GenesisConfig, Ledger, Op, UNITS_PER_TOKEN};
use test_servers::{ANVIL_FIRST_KEY, AnvilServer};

/// anvil's second development account (funded like the first).
const CLAIMANT_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const RECEIPT: Option<Duration> = Some(Duration::from_secs(30));

fn ledger_address(address: Address) -> ledger::Address {
    ledger::Address(address.into_array())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_suite_deploys_from_the_ledgers_genesis_and_serves_real_transactions() {
    let anvil = AnvilServer::start();
    let admin: PrivateKeySigner = ANVIL_FIRST_KEY.parse().expect("key");
    let claimant: PrivateKeySigner = CLAIMANT_KEY.parse().expect("key");
    let at = |byte: u8| ledger::Address([byte; 20]);
    let mut genesis = GenesisConfig::venice(
        ledger_address(admin.address()),
        at(0xA1),
        at(0xA2),
        at(0xA3),
        at(0xA4),
        vec![
            Allocation {
                address: ledger_address(claimant.address()),
                vvv_units: 5_000 * UNITS_PER_TOKEN,
            },
            Allocation {
                address: at(0xB0),
                vvv_units: 7 * UNITS_PER_TOKEN,
            },
        ],
    );
    genesis.airdrop_claim_window_seconds = 86_400;

    let deployment = chain::deploy::deploy(anvil.url(), admin.clone(), &genesis)
        .await
        .expect("the suite deploys");
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(claimant.clone()))
        .connect_http(anvil.url().parse().expect("url"));
    let vvv = VVV::new(deployment.vvv, &provider);
    let staking = Staking::new(deployment.staking, &provider);
    let diem = Diem::new(deployment.diem, &provider);

    // What the chain holds is what the ledger's genesis holds.
    let mut reference = Ledger::new();
    reference
        .apply(
            deployment.genesis_seconds,
            genesis.admin,
            Op::Genesis(Box::new(genesis.clone())),
        )
        .expect("genesis");
    let supply = reference.supply();
    assert_eq!(
        vvv.totalSupply().call().await.expect("supply"),
        U256::from(supply.total_vvv_units)
    );
    for holder in [at(0xA1), at(0xA2), at(0xA3), at(0xA4), genesis.admin] {
        let on_chain = vvv
            .balanceOf(Address::from(holder.0))
            .call()
            .await
            .expect("balance");
        let expected = reference
            .balances(holder, deployment.genesis_seconds)
            .vvv_units;
        assert_eq!(on_chain, U256::from(expected), "{holder:?}");
    }
    assert_eq!(
        vvv.balanceOf(deployment.airdrop)
            .call()
            .await
            .expect("airdrop"),
        U256::from(supply.unclaimed_airdrop_vvv_units)
    );
    assert_eq!(
        vvv.balanceOf(deployment.team_vesting)
            .call()
            .await
            .expect("vesting"),
        U256::from(supply.unclaimed_team_vvv_units)
    );
    let vesting = TeamVesting::new(deployment.team_vesting, &provider);
    assert_eq!(
        vesting.start().call().await.expect("start"),
        deployment.genesis_seconds
    );

    // The claimant claims with its proof, stakes, and unstakes after the cooldown.
    let (_, proofs) = chain::deploy::airdrop_proofs(&genesis);
    let mine = proofs
        .iter()
        .find(|proof| proof.account == claimant.address())
        .expect("the claimant's proof");
    let airdrop = Airdrop::new(deployment.airdrop, &provider);
    // Every transaction goes out as Gondola sends it: with chain::gas::limit's room for an
    // accrual (see below).
    chain::transact::send(
        &provider,
        claimant.address(),
        airdrop
            .claim(mine.amount, mine.proof.clone())
            .into_transaction_request(),
    )
    .await
    .expect("claimed");
    let wrong = airdrop.claim(mine.amount, mine.proof.clone()).call().await;
    assert!(wrong.is_err(), "an allocation is claimed once");

    let send = async |call: alloy::rpc::types::TransactionRequest, what: &str| {
        let receipt = chain::transact::send(&provider, claimant.address(), call)
            .await
            .unwrap_or_else(|error| panic!("{what} {error}"));
        eprintln!("{what}: {} gas", receipt.gas_used());
        receipt
    };
    let stake = U256::from(4_000 * UNITS_PER_TOKEN);
    send(
        vvv.approve(deployment.staking, U256::MAX)
            .into_transaction_request(),
        "approve",
    )
    .await;
    send(staking.stake(stake).into_transaction_request(), "stake").await;
    send(
        staking
            .initiateUnstake(U256::from(1_000 * UNITS_PER_TOKEN))
            .into_transaction_request(),
        "initiateUnstake",
    )
    .await;
    let early = staking
        .finalizeUnstake()
        .call()
        .await
        .expect_err("too early");
    let decoded = early
        .as_decoded_interface_error::<Staking::StakingErrors>()
        .expect("a staking error");
    assert!(
        matches!(decoded, Staking::StakingErrors::CooldownNotElapsed(_)),
        "{decoded:?}"
    );
    provider
        .raw_request::<_, serde_json::Value>("evm_increaseTime".into(), (7 * 86_400,))
        .await
        .expect("time travel");
    provider
        .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
        .await
        .expect("a block");
    send(
        staking.finalizeUnstake().into_transaction_request(),
        "finalizeUnstake",
    )
    .await;
    let position = staking
        .positions(claimant.address())
        .call()
        .await
        .expect("position");
    assert_eq!(position.staked, U256::from(3_000 * UNITS_PER_TOKEN));
    assert_eq!(position.cooling, U256::ZERO);

    // DIEM: minted at the quoted amount, then staked for an allowance.
    let lock = U256::from(1_000 * UNITS_PER_TOKEN);
    let quote = staking.previewMint(lock).call().await.expect("quote");
    assert!(quote._0 && quote._1 > U256::ZERO);
    send(
        staking.mintDiem(lock, quote._1).into_transaction_request(),
        "mintDiem",
    )
    .await;
    let minted = diem
        .balanceOf(claimant.address())
        .call()
        .await
        .expect("DIEM");
    assert_eq!(minted, quote._1);
    send(diem.stake(minted).into_transaction_request(), "DIEM stake").await;
    assert_eq!(
        diem.allowanceOf(claimant.address())
            .call()
            .await
            .expect("allowance"),
        minted
    );
    // Eleven DIEM for 1,000 sVVV at a rate of 90 at zero supply.
    assert_eq!(minted / U256::from(UNITS_PER_TOKEN), U256::from(11));
}

/// Chain mode's follower on anvil: the first poll reads every followed account; later polls
/// read only the accounts the contracts' events name (and those not yet confirmed), count an
/// increase once it is deep enough, and read everyone again after a reorganization.
#[tokio::test(flavor = "multi_thread")]
async fn the_follower_reads_only_what_the_events_name_and_everyone_after_a_reorg() {
    use chain::stakes::{ChainConfig, Stakes};

    let anvil = AnvilServer::start();
    let admin: PrivateKeySigner = ANVIL_FIRST_KEY.parse().expect("key");
    let claimant: PrivateKeySigner = CLAIMANT_KEY.parse().expect("key");
    let bystander = Address::repeat_byte(0xB7);
    let genesis = GenesisConfig::venice(
        ledger_address(admin.address()),
        ledger_address(claimant.address()),
        ledger::Address([0xA2; 20]),
        ledger::Address([0xA3; 20]),
        ledger::Address([0xA4; 20]),
        vec![],
    );
    let deployment = chain::deploy::deploy(anvil.url(), admin.clone(), &genesis)
        .await
        .expect("the suite deploys");
    let stakes = Stakes::new(ChainConfig {
        rpc_url: anvil.url().to_owned(),
        public_rpc_url: None,
        deployment: deployment.clone(),
        confirmations: 1,
        poll: Duration::from_millis(100),
        anchor_key: None,
        anchor_every: Duration::from_secs(86_400),
        airdrop: Default::default(),
    })
    .expect("a follower");
    stakes.follow(claimant.address());
    stakes.follow(bystander);
    stakes.poll().await.expect("the first poll");
    assert_eq!(stakes.reads(), 2, "the first poll reads everyone");
    stakes.poll().await.expect("a quiet poll");
    assert_eq!(stakes.reads(), 2, "no event, no read");

    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(claimant.clone()))
        .connect_http(anvil.url().parse().expect("url"));
    let rpc = async |method: &str| {
        provider
            .raw_request::<_, serde_json::Value>(method.to_owned().into(), ())
            .await
            .expect("anvil answers")
    };
    let snapshot = rpc("evm_snapshot").await;
    let (vvv, staking) = (
        VVV::new(deployment.vvv, &provider),
        Staking::new(deployment.staking, &provider),
    );
    for request in [
        vvv.approve(deployment.staking, U256::MAX)
            .into_transaction_request(),
        staking
            .stake(U256::from(100 * UNITS_PER_TOKEN))
            .into_transaction_request(),
    ] {
        chain::transact::send(&provider, claimant.address(), request)
            .await
            .expect("mined");
    }
    let changed = stakes.poll().await.expect("a poll after the stake");
    assert_eq!(stakes.reads(), 3, "only the staker is read");
    assert!(changed.is_empty(), "one block deep is not yet deep enough");
    assert_eq!(stakes.get(claimant.address()).svvv_units, 0);
    rpc("evm_mine").await;
    let changed = stakes.poll().await.expect("a poll once confirmed");
    assert_eq!(changed, [claimant.address()]);
    assert_eq!(
        stakes.reads(),
        4,
        "the unconfirmed staker is read again, alone"
    );
    assert_eq!(
        stakes.get(claimant.address()).svvv_units,
        100 * UNITS_PER_TOKEN
    );
    stakes.poll().await.expect("a quiet poll");
    assert_eq!(stakes.reads(), 4, "confirmed: read no more");

    // The chain goes back to before the stake: everyone is read, the stake is gone.
    provider
        .raw_request::<_, serde_json::Value>("evm_revert".into(), (snapshot,))
        .await
        .expect("reverted");
    let changed = stakes
        .poll()
        .await
        .expect("a poll after the reorganization");
    assert_eq!(stakes.reads(), 6, "everyone is read after a reorganization");
    assert_eq!(changed, [claimant.address()]);
    assert_eq!(stakes.get(claimant.address()).svvv_units, 0);
}

/// A node's gas estimate has no slack, and the suite's costs grow with the block time: a
/// transaction estimated in the second of the last accrual sees no accrual, and runs out of
/// gas if it is mined a second later with that estimate. With `chain::gas::limit` it goes
/// through, and what the accrual added is within the headroom.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_estimated_before_an_accrual_is_sent_with_room_for_it() {
    let anvil = AnvilServer::start();
    let admin: PrivateKeySigner = ANVIL_FIRST_KEY.parse().expect("key");
    let claimant: PrivateKeySigner = CLAIMANT_KEY.parse().expect("key");
    let at = |byte: u8| ledger::Address([byte; 20]);
    let genesis = GenesisConfig::venice(
        ledger_address(admin.address()),
        at(0xA1),
        at(0xA2),
        at(0xA3),
        at(0xA4),
        vec![Allocation {
            address: ledger_address(claimant.address()),
            vvv_units: 5_000 * UNITS_PER_TOKEN,
        }],
    );
    let deployment = chain::deploy::deploy(anvil.url(), admin, &genesis)
        .await
        .expect("the suite deploys");
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(claimant.clone()))
        .connect_http(anvil.url().parse().expect("url"));
    let vvv = VVV::new(deployment.vvv, &provider);
    let staking = Staking::new(deployment.staking, &provider);
    let (_, proofs) = chain::deploy::airdrop_proofs(&genesis);
    let mine = proofs
        .iter()
        .find(|proof| proof.account == claimant.address())
        .expect("the claimant's proof");
    let mined = async |request: alloy::rpc::types::TransactionRequest| {
        provider
            .send_transaction(request)
            .await
            .expect("sent")
            .with_timeout(RECEIPT)
            .get_receipt()
            .await
            .expect("a receipt")
    };
    let sent = async |request: alloy::rpc::types::TransactionRequest, what: &str| {
        chain::transact::send(&provider, claimant.address(), request)
            .await
            .unwrap_or_else(|error| panic!("{what} {error}"));
    };
    sent(
        Airdrop::new(deployment.airdrop, &provider)
            .claim(mine.amount, mine.proof.clone())
            .into_transaction_request(),
        "claim",
    )
    .await;
    sent(
        vvv.approve(deployment.staking, U256::MAX)
            .into_transaction_request(),
        "approve",
    )
    .await;
    sent(
        staking
            .stake(U256::from(4_000 * UNITS_PER_TOKEN))
            .into_transaction_request(),
        "stake",
    )
    .await;

    let transfer = vvv
        .transfer(Address::repeat_byte(0xB0), U256::from(1))
        .into_transaction_request();
    let mut clock = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .expect("the latest block")
        .expect("a block")
        .header
        .timestamp;
    let mut gas_at = async |limit: &dyn Fn(u64) -> u64| {
        // A transfer accrues at `clock`; the next one is estimated on that block, where no time
        // has passed since, and mined an hour later.
        clock += 60;
        provider
            .raw_request::<_, serde_json::Value>("evm_setNextBlockTimestamp".into(), (clock,))
            .await
            .expect("set the clock");
        sent(transfer.clone(), "accruing transfer").await;
        let estimate = provider
            .estimate_gas(transfer.clone())
            .block(alloy::eips::BlockId::latest())
            .await
            .expect("an estimate");
        clock += 3_600;
        provider
            .raw_request::<_, serde_json::Value>("evm_setNextBlockTimestamp".into(), (clock,))
            .await
            .expect("set the clock");
        let receipt = mined(transfer.clone().with_gas_limit(limit(estimate))).await;
        (estimate, receipt)
    };
    let (_, bare) = gas_at(&|estimate| estimate).await;
    assert!(
        !bare.status(),
        "with its bare estimate, a transfer that meets an accrual runs out of gas"
    );
    let (estimate, roomy) = gas_at(&chain::gas::limit).await;
    assert!(roomy.status(), "with the headroom it goes through");
    let added = roomy.gas_used().saturating_sub(estimate);
    eprintln!(
        "estimate {estimate}, used {} with an accrual (+{added})",
        roomy.gas_used()
    );
    assert!(
        added > 0 && added <= chain::gas::ACCRUAL_HEADROOM,
        "the accrual added {added} gas"
    );
}

/// The operator's utilization report sends a transaction only where the figure changes: the
/// split it sets would not move otherwise, and replicas reporting the same day send it once.
#[tokio::test(flavor = "multi_thread")]
async fn a_utilization_report_is_sent_only_when_the_figure_changes() {
    let anvil = AnvilServer::start();
    let admin: PrivateKeySigner = ANVIL_FIRST_KEY.parse().expect("key");
    let at = |byte: u8| ledger::Address([byte; 20]);
    let genesis = GenesisConfig::venice(
        ledger_address(admin.address()),
        at(0xA1),
        at(0xA2),
        at(0xA3),
        at(0xA4),
        Vec::new(),
    );
    let deployment = chain::deploy::deploy(anvil.url(), admin.clone(), &genesis)
        .await
        .expect("the suite deploys");
    let report =
        |bps| chain::utilization::report(anvil.url(), admin.clone(), deployment.staking, bps);
    assert_eq!(report(0).await, Ok(None), "none yet, and none to report");
    assert!(
        matches!(report(4_200).await, Ok(Some(_))),
        "a change is sent"
    );
    assert_eq!(
        report(4_200).await,
        Ok(None),
        "the same figure again is not"
    );
    let provider = ProviderBuilder::new().connect_http(anvil.url().parse().expect("url"));
    assert_eq!(
        Staking::new(deployment.staking, &provider)
            .utilizationBps()
            .call()
            .await
            .expect("bps"),
        4_200
    );
    // A key without REPORTER_ROLE is refused before anything is sent.
    let stranger: PrivateKeySigner = CLAIMANT_KEY.parse().expect("key");
    let refused = chain::utilization::report(anvil.url(), stranger, deployment.staking, 1)
        .await
        .expect_err("no role");
    assert!(refused.contains("refused"), "{refused}");
}
