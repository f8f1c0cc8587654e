//! Posting the ledger journal's head to the suite's `JournalAnchor` contract: what `gondola
//! chain anchor` does by hand and a gateway in chain mode does on a timer.

use alloy::network::{EthereumWallet, ReceiptResponse};
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, U256};

use crate::bindings::JournalAnchor;

/// The last anchored record's sequence (zero before the first anchor).
pub async fn last_anchored(rpc_url: &str, contract: Address) -> Result<u64, String> {
    let url = rpc_url
        .parse()
        .map_err(|error| format!("the RPC URL: {error}"))?;
    let provider = ProviderBuilder::new().connect_http(url);
    let anchors = JournalAnchor::new(contract, &provider);
    let count = anchors
        .count()
        .call()
        .await
        .map_err(|error| format!("reading the anchors: {error}"))?;
    if count.is_zero() {
        return Ok(0);
    }
    let last = anchors
        .anchors(count - U256::from(1))
        .call()
        .await
        .map_err(|error| format!("reading the last anchor: {error}"))?;
    Ok(last.sequence)
}

/// Anchors record `sequence` with `record_hash`, signed by `signer` (who holds the anchor
/// role); the block it landed in.
pub async fn post(
    rpc_url: &str,
    signer: PrivateKeySigner,
    contract: Address,
    sequence: u64,
    record_hash: B256,
) -> Result<u64, String> {
    let url = rpc_url
        .parse()
        .map_err(|error| format!("the RPC URL: {error}"))?;
    let from = signer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);
    let call = JournalAnchor::new(contract, &provider)
        .anchor(sequence, record_hash)
        .into_transaction_request();
    let receipt = crate::transact::send(&provider, from, call)
        .await
        .map_err(|error| format!("the anchor {error}"))?;
    Ok(receipt.block_number().unwrap_or_default())
}
