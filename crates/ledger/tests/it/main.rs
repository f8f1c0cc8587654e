//! The ledger's integration tests, through the public API only: one test per operation with the
//! published numbers, the seeded simulation against a reference model, and the dependency check.

mod auditor;
mod dependencies;
mod operations;
mod simulation;
mod support;
