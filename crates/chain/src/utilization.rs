//! The network's utilization reported to the staking contract, as the ledger's operator reports
//! it in the journal: once a UTC day, yesterday's spending over the day's capacity (the
//! network's, plus a dollar for every DIEM staked on the chain), which sets the company's share
//! of emissions from then on. Sent by a key holding `REPORTER_ROLE` (the deployer's holds it).

use alloy::network::{EthereumWallet, ReceiptResponse};
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::Address;

use crate::bindings::{Diem, Staking};

/// All DIEM staked on the chain, in base units: a dollar a day of capacity each.
pub async fn total_staked_diem(rpc_url: &str, diem: Address) -> Result<u128, String> {
    let url = rpc_url
        .parse()
        .map_err(|error| format!("the RPC URL: {error}"))?;
    let provider = ProviderBuilder::new().connect_http(url);
    let staked = Diem::new(diem, &provider)
        .totalStaked()
        .call()
        .await
        .map_err(|error| format!("reading the staked DIEM: {error}"))?;
    Ok(u128::try_from(staked).unwrap_or(u128::MAX))
}

/// Reports `utilization_bps` to the staking contract at `staking`, signed by `signer`: the block
/// it landed in, or none where the contract holds that figure already (nothing is sent: the
/// split it sets would not change, and replicas reporting the same day send it once).
pub async fn report(
    rpc_url: &str,
    signer: PrivateKeySigner,
    staking: Address,
    utilization_bps: u32,
) -> Result<Option<u64>, String> {
    let url = rpc_url
        .parse()
        .map_err(|error| format!("the RPC URL: {error}"))?;
    let from = signer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);
    let contract = Staking::new(staking, &provider);
    let current = contract
        .utilizationBps()
        .call()
        .await
        .map_err(|error| format!("reading the utilization: {error}"))?;
    if current == utilization_bps {
        return Ok(None);
    }
    // Tried first: a key without the role is refused before anything is sent.
    let call = contract
        .reportUtilization(utilization_bps)
        .into_transaction_request();
    let receipt = crate::transact::send(&provider, from, call)
        .await
        .map_err(|error| format!("the report {error}"))?;
    Ok(Some(receipt.block_number().unwrap_or_default()))
}
