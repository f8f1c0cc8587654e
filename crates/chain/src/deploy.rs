//! Deploys the contract suite on a chain from a ledger genesis: VVV with the genesis
//! allocations, the airdrop (its Merkle root and claim deadline) and team vesting holding their
//! parts, staking with the emission rate and the mint curve, DIEM, and the journal anchor; then
//! links them. The
//! deployer's key is the admin (every role), as the operator key is the ledger's admin.

use alloy::network::EthereumWallet;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::bindings::{Airdrop, Diem, JournalAnchor, Staking, TeamVesting, VVV};
use crate::merkle;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the genesis is not deployable: {0}")]
    Genesis(String),
    #[error("the chain refused or failed a step ({step}): {reason}")]
    Step { step: &'static str, reason: String },
}

/// Where the suite is, and what a gateway or wallet needs to use it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployment {
    pub chain_id: u64,
    pub vvv: Address,
    pub staking: Address,
    pub diem: Address,
    pub airdrop: Address,
    pub team_vesting: Address,
    /// Where the operator anchors the off-chain journal's head.
    pub journal_anchor: Address,
    pub airdrop_root: B256,
    /// The block time the suite's genesis counts from (emissions, vesting, the airdrop window).
    pub genesis_seconds: u64,
    /// The block that holds the last deployment transaction.
    pub block: u64,
}

/// An airdrop allocation and its proof, for the claimant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AirdropProof {
    pub account: Address,
    pub amount: U256,
    pub proof: Vec<B256>,
}

fn to_address(address: ledger::Address) -> Address {
    Address::from(address.0)
}

fn step<T, E: std::fmt::Display>(
    step: &'static str,
    result: Result<T, E>,
) -> Result<T, DeployError> {
    result.map_err(|error| DeployError::Step {
        step,
        reason: error.to_string(),
    })
}

/// The airdrop's tree and every allocation's proof.
pub fn airdrop_proofs(genesis: &ledger::GenesisConfig) -> (merkle::Tree, Vec<AirdropProof>) {
    let allocations: Vec<(Address, U256)> = genesis
        .airdrop
        .iter()
        .map(|allocation| {
            (
                to_address(allocation.address),
                U256::from(allocation.vvv_units),
            )
        })
        .collect();
    let tree = merkle::Tree::new(&allocations);
    let proofs = allocations
        .iter()
        .map(|(account, amount)| AirdropProof {
            account: *account,
            amount: *amount,
            proof: tree.proof(*account, *amount).unwrap_or_default(),
        })
        .collect();
    (tree, proofs)
}

/// Deploys the suite at `rpc_url` with `signer` (who must be `genesis.admin`), waiting for each
/// transaction's receipt.
pub async fn deploy(
    rpc_url: &str,
    signer: PrivateKeySigner,
    genesis: &ledger::GenesisConfig,
) -> Result<Deployment, DeployError> {
    let admin = signer.address();
    if to_address(genesis.admin) != admin {
        return Err(DeployError::Genesis(format!(
            "the deployer {admin} is not the genesis admin {}",
            to_address(genesis.admin)
        )));
    }
    // The same checks as the ledger's genesis, by applying it to an empty ledger.
    ledger::Ledger::new()
        .apply(
            0,
            genesis.admin,
            ledger::Op::Genesis(Box::new(genesis.clone())),
        )
        .map_err(|rejection| DeployError::Genesis(format!("{rejection:?}")))?;
    let url = step("the RPC URL", rpc_url.parse())?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);
    let chain_id = step("asking the chain id", provider.get_chain_id().await)?;
    let latest = step(
        "reading the latest block",
        provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await,
    )?;
    let genesis_seconds = latest.map_or(0, |block| block.header.timestamp);

    let grant_parts: Vec<(Address, u128, u128)> = genesis
        .team_grants
        .iter()
        .map(|grant| {
            let unlocked = ledger::mul_div_floor(
                grant.vvv_units,
                u128::from(genesis.team_unlocked_at_genesis_bps),
                ledger::BASIS_POINTS,
            )
            .unwrap_or(grant.vvv_units);
            (
                to_address(grant.address),
                unlocked,
                grant.vvv_units - unlocked,
            )
        })
        .collect();
    let vesting_total: u128 = grant_parts.iter().map(|(_, _, vesting)| vesting).sum();
    let airdrop_total: u128 = genesis.airdrop.iter().map(|a| a.vvv_units).sum();
    let mut holders: Vec<(Address, u128)> =
        [genesis.treasury, genesis.incentive_fund, genesis.liquidity]
            .iter()
            .map(|allocation| (to_address(allocation.address), allocation.vvv_units))
            .collect();
    holders.extend(
        grant_parts
            .iter()
            .map(|(address, unlocked, _)| (*address, *unlocked)),
    );
    // The deployer holds the airdrop and the vesting parts for a moment, to hand them on.
    holders.push((admin, airdrop_total + vesting_total));
    holders.retain(|(_, amount)| *amount > 0);

    let vvv = step(
        "deploying VVV",
        VVV::deploy(
            &provider,
            holders.iter().map(|(address, _)| *address).collect(),
            holders
                .iter()
                .map(|(_, amount)| U256::from(*amount))
                .collect(),
        )
        .await,
    )?;
    let vvv = VVV::new(*vvv.address(), &provider);
    let (tree, _) = airdrop_proofs(genesis);
    let deadline = genesis_seconds + genesis.airdrop_claim_window_seconds;
    let airdrop = step(
        "deploying the airdrop",
        Airdrop::deploy(&provider, *vvv.address(), tree.root(), deadline, admin).await,
    )?;
    let team_vesting = step(
        "deploying team vesting",
        TeamVesting::deploy(
            &provider,
            *vvv.address(),
            grant_parts.iter().map(|(address, _, _)| *address).collect(),
            grant_parts
                .iter()
                .map(|(_, _, vesting)| U256::from(*vesting))
                .collect(),
            genesis_seconds,
            genesis.team_vesting_seconds,
        )
        .await,
    )?;
    for (what, to, amount) in [
        (
            "handing the airdrop over",
            *airdrop.address(),
            airdrop_total,
        ),
        (
            "handing the team's vesting over",
            *team_vesting.address(),
            vesting_total,
        ),
    ] {
        if amount > 0 {
            let pending = step(what, vvv.transfer(to, U256::from(amount)).send().await)?;
            confirmed(what, pending).await?;
        }
    }
    let curve: Vec<Staking::CurvePoint> = genesis
        .mint_curve_points
        .iter()
        .map(|point| Staking::CurvePoint {
            supplyDiem: point.supply_diem,
            rateSvvvUnitsPerDiem: U256::from(point.rate_svvv_units_per_diem),
        })
        .collect();
    let staking = step(
        "deploying staking",
        Staking::deploy(
            &provider,
            *vvv.address(),
            to_address(genesis.treasury.address),
            admin,
            U256::from(genesis.emission_rate_vvv_units_per_second),
            curve,
        )
        .await,
    )?;
    let diem = step(
        "deploying DIEM",
        Diem::deploy(&provider, *staking.address()).await,
    )?;
    let journal_anchor = step(
        "deploying the journal anchor",
        JournalAnchor::deploy(&provider, admin).await,
    )?;
    let pending = step(
        "linking staking to VVV",
        vvv.setStaking(*staking.address()).send().await,
    )?;
    confirmed("linking staking to VVV", pending).await?;
    let pending = step(
        "linking DIEM to staking",
        staking.setDiem(*diem.address()).send().await,
    )?;
    let block = confirmed("linking DIEM to staking", pending).await?;
    Ok(Deployment {
        chain_id,
        vvv: *vvv.address(),
        staking: *staking.address(),
        diem: *diem.address(),
        airdrop: *airdrop.address(),
        team_vesting: *team_vesting.address(),
        journal_anchor: *journal_anchor.address(),
        airdrop_root: tree.root(),
        genesis_seconds,
        block,
    })
}

/// Waits for a transaction's receipt; its block, or an error if it reverted.
async fn confirmed<N: alloy::network::Network>(
    what: &'static str,
    pending: alloy::providers::PendingTransactionBuilder<N>,
) -> Result<u64, DeployError> {
    let receipt = step(
        what,
        pending
            .with_timeout(Some(crate::transact::RECEIPT_TIMEOUT))
            .get_receipt()
            .await,
    )?;
    use alloy::network::ReceiptResponse;
    if !receipt.status() {
        return Err(DeployError::Step {
            step: what,
            reason: "the transaction reverted".into(),
        });
    }
    Ok(receipt.block_number().unwrap_or_default())
}
