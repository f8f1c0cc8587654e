//! The airdrop's Merkle tree, as OpenZeppelin's `MerkleProof` checks it: a leaf is the double
//! keccak-256 of the ABI-encoded account and amount, and each inner node the hash of its two
//! children in sorted order, so a proof is the list of siblings from the leaf up.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::SolValue;

/// An allocation's leaf.
pub fn leaf(account: Address, amount: U256) -> B256 {
    keccak256(keccak256((account, amount).abi_encode()))
}

fn node(left: B256, right: B256) -> B256 {
    let (low, high) = if left <= right {
        (left, right)
    } else {
        (right, left)
    };
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(low.as_slice());
    both[32..].copy_from_slice(high.as_slice());
    keccak256(both)
}

/// A tree over allocations: every level, from the leaves (sorted) up to the root.
pub struct Tree {
    levels: Vec<Vec<B256>>,
}

impl Tree {
    /// The tree of `allocations`; an empty list has the zero root, which no proof meets.
    pub fn new(allocations: &[(Address, U256)]) -> Self {
        let mut leaves: Vec<B256> = allocations
            .iter()
            .map(|(account, amount)| leaf(*account, *amount))
            .collect();
        leaves.sort();
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node(*left, *right),
                    [single] => *single,
                    _ => B256::ZERO,
                })
                .collect();
            levels.push(above);
        }
        Self { levels }
    }

    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or(B256::ZERO)
    }

    /// The proof of an allocation, or `None` if it is not in the tree.
    pub fn proof(&self, account: Address, amount: U256) -> Option<Vec<B256>> {
        let wanted = leaf(account, amount);
        let mut index = self
            .levels
            .first()?
            .iter()
            .position(|leaf| *leaf == wanted)?;
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(index ^ 1) {
                proof.push(*sibling);
            }
            index /= 2;
        }
        Some(proof)
    }
}

/// Whether `proof` takes `leaf` to `root` (what `MerkleProof.verify` computes).
pub fn verify(proof: &[B256], root: B256, leaf: B256) -> bool {
    proof
        .iter()
        .fold(leaf, |hash, sibling| node(hash, *sibling))
        == root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allocation_proves_and_nothing_else_does() {
        for count in 1..=9u8 {
            let allocations: Vec<(Address, U256)> = (0..count)
                .map(|i| {
                    (
                        Address::repeat_byte(i + 1),
                        U256::from(u64::from(i) * 1_000 + 7),
                    )
                })
                .collect();
            let tree = Tree::new(&allocations);
            for (account, amount) in &allocations {
                let proof = tree.proof(*account, *amount).expect("in the tree");
                assert!(verify(&proof, tree.root(), leaf(*account, *amount)));
                let more = *amount + U256::from(1);
                assert!(!verify(&proof, tree.root(), leaf(*account, more)));
            }
            assert!(
                tree.proof(Address::repeat_byte(0xEE), U256::from(7))
                    .is_none()
            );
        }
    }
}
