//! Sending one transaction the way every part of Gondola does (the CLI, the gateway's operator
//! duties, the tests): tried first with `eth_call`, so a refusal is found before anything is
//! signed and costs nothing; sent with [`crate::gas::limit`]'s room for an accrual; and waited
//! for, a bounded time.

use std::time::Duration;

use alloy::network::{ReceiptResponse, TransactionBuilder};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::transports::TransportError;
use alloy_primitives::Address;

/// How long a transaction is waited for once sent.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a transaction did not go through. It reads after the transaction's name: "the anchor
/// was refused: …".
#[derive(Debug)]
pub enum SendError {
    /// The call, or its gas estimate, was refused: nothing was sent. The node's error holds
    /// the revert data, for the caller to name.
    Refused(TransportError),
    NotSent(TransportError),
    NoReceipt(String),
    Reverted(Option<u64>),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(error) => write!(f, "was refused: {error}"),
            Self::NotSent(error) => write!(f, "was not sent: {error}"),
            Self::NoReceipt(error) => write!(f, "has no receipt: {error}"),
            Self::Reverted(block) => write!(f, "reverted in block {block:?}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Sends `request` from `from` (an account `provider`'s wallet signs for); its receipt, once
/// mined without reverting.
pub async fn send<P: Provider>(
    provider: &P,
    from: Address,
    request: TransactionRequest,
) -> Result<TransactionReceipt, SendError> {
    let request = request.with_from(from);
    provider
        .call(request.clone())
        .await
        .map_err(SendError::Refused)?;
    let request = crate::gas::with_limit(provider, request)
        .await
        .map_err(SendError::Refused)?;
    let receipt = provider
        .send_transaction(request)
        .await
        .map_err(SendError::NotSent)?
        .with_timeout(Some(RECEIPT_TIMEOUT))
        .get_receipt()
        .await
        .map_err(|error| SendError::NoReceipt(error.to_string()))?;
    if !receipt.status() {
        return Err(SendError::Reverted(receipt.block_number()));
    }
    Ok(receipt)
}
