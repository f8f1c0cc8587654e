//! The record hash: a record's SHA-256 checksum and its link in the journal's hash chain, as
//! the format writes it and errors name it.

use std::fmt;

use crate::hex;

/// A SHA-256 record hash: a record's checksum and its link in the hash chain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordHash(pub [u8; 32]);

impl RecordHash {
    /// What the first record names as its predecessor.
    pub const GENESIS_PREVIOUS: Self = Self([0; 32]);
}

impl fmt::Display for RecordHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for RecordHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "RecordHash({self})")
    }
}
