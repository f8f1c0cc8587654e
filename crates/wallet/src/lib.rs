//! Accounts for Gondola's ledger: a wallet key (secp256k1, so an account is an Ethereum address)
//! and signatures over ledger operations. Every operation a user submits is signed with EIP-712
//! typed data (what wallets display field by field) or EIP-191 `personal_sign`, and carries the
//! signer's nonce and a deadline, so a signature authorizes exactly one operation, once, for a
//! bounded time. The ledger itself never sees keys: the gateway recovers the signer here and
//! passes the address to `Ledger::apply`; the journal keeps the [`Authorization`] bytes so
//! `gondola ledger verify` can check every signature again.

mod audit;
mod authorization;
mod key;
mod operation;
mod typed;

pub use audit::{JournalAuditError, SignatureAudit, SignatureProblem, audit_journal_signatures};
pub use authorization::{Authorization, AuthorizationError, Scheme, recover_signer, sign};
pub use key::{Wallet, WalletError};
pub use operation::{
    AssetName, JsonAddress, Operation, OperationError, SIGNATURE_FORM, SignatureBytes,
    SignedOperation, Units,
};
pub use typed::{Domain, eip191_message, eip712_digest};

/// Converts a ledger address to alloy's.
pub fn to_alloy(address: ledger::Address) -> alloy_primitives::Address {
    alloy_primitives::Address::from(address.0)
}

/// Converts alloy's address to the ledger's.
pub fn from_alloy(address: alloy_primitives::Address) -> ledger::Address {
    ledger::Address(address.into_array())
}
