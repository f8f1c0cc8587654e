//! Gondola's economy on an EVM chain.
//!
//! - [`bindings`]: the Solidity contracts in `contracts/` (VVV, staking, DIEM, the airdrop and team vesting), from the artifacts
//!   `contracts/build.mjs` compiles with the pinned solc-js and commits, through alloy's `sol!`:
//!   calls, events and errors as Rust types, and each contract's bytecode.
//! - [`anchor`]: the ledger journal's head posted to the journal anchor.
//! - [`gas`]: the gas limit every transaction is sent with (the estimate, with headroom for
//!   an accrual the estimate did not see).
//! - [`deploy`]: deploys the suite on a chain (over JSON-RPC, alloy) from a ledger genesis.
//! - [`stakes`]: a gateway's view of its accounts' stake on the chain (chain mode), held back
//!   for confirmations.
//! - [`transact`]: one transaction sent as every part of Gondola sends it (tried first,
//!   with the gas limit's room, waited for).
//! - [`utilization`]: yesterday's utilization reported to the staking contract, which splits
//!   emissions by it.
//! - [`merkle`]: the airdrop's Merkle tree (OpenZeppelin's standard leaves), its root and
//!   proofs.
//! - [`evm`]: an in-process EVM (revm) to deploy and run them at a chosen block time, for tests
//!   that need thousands of transactions quickly (the differential test against the `ledger`
//!   crate).

pub mod anchor;
pub mod bindings;
pub mod deploy;
pub mod evm;
pub mod gas;
pub mod merkle;
pub mod stakes;
pub mod transact;
pub mod utilization;
