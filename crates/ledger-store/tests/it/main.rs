//! The ledger store's integration tests, one binary: recovery from torn and damaged journals,
//! the submission path, checkpoints, the documented file format, verify and export, a journal
//! shared by several stores, and the kill -9 crash test with a real process.

mod crash;
mod format;
mod recovery;
mod shared;
mod submit;
mod support;
mod verify_export;
