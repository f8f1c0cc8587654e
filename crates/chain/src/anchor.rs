//! Posting the ledger journal's head to the suite's `JournalAnchor` contract: what `gondola
//! chain anchor` does by hand and a gateway in chain mode does on a timer.

use std::time::Duration;

use alloy::network::{EthereumWallet, ReceiptResponse};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, U256};

use crate::bindings::JournalAnchor;

const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

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
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);
    let anchors = JournalAnchor::new(contract, &provider);
    let call = anchors.anchor(sequence, record_hash);
    // Tried first, so a refusal costs nothing and sends nothing.
    call.call()
        .await
        .map_err(|error| format!("the anchor was refused: {error}"))?;
    let request = crate::gas::with_limit(&provider, call.into_transaction_request())
        .await
        .map_err(|error| format!("the anchor was refused: {error}"))?;
    let receipt = provider
        .send_transaction(request)
        .await
        .map_err(|error| format!("the anchor was not sent: {error}"))?
        .with_timeout(Some(RECEIPT_TIMEOUT))
        .get_receipt()
        .await
        .map_err(|error| format!("no receipt for the anchor: {error}"))?;
    if !receipt.status() {
        return Err("the anchor reverted".into());
    }
    Ok(receipt.block_number().unwrap_or_default())
}
