//! An authorization: the scheme, nonce, deadline and 65-byte signature that make a signer's
//! consent to one operation. It is what the journal stores beside each record, in a fixed
//! 82-byte form, so every signature can be checked again by replaying the journal.

use alloy_primitives::Signature;
use ledger::{Address, Op};

use crate::Wallet;
use crate::typed::{Domain, eip191_message, eip712_digest};

/// How the signer signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// EIP-712 typed data (`eth_signTypedData_v4`).
    Eip712,
    /// EIP-191 `personal_sign` of [`eip191_message`].
    Eip191,
}

impl Scheme {
    const fn tag(self) -> u8 {
        match self {
            Self::Eip712 => 1,
            Self::Eip191 => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub scheme: Scheme,
    pub nonce: u64,
    /// Seconds since the epoch after which the signature is void.
    pub deadline_seconds: u64,
    /// r ‖ s ‖ v, with v 27 or 28.
    pub signature: [u8; 65],
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("an authorization is {expected} bytes, not {actual}")]
    Length { expected: usize, actual: usize },
    #[error("unknown signature scheme {0}")]
    UnknownScheme(u8),
    #[error("the signature is malformed: {0}")]
    Malformed(String),
}

impl Authorization {
    pub const ENCODED_BYTES: usize = 1 + 8 + 8 + 65;

    /// scheme (1) ‖ nonce (8, big-endian) ‖ deadline (8, big-endian) ‖ signature (65).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::ENCODED_BYTES);
        out.push(self.scheme.tag());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.deadline_seconds.to_be_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, AuthorizationError> {
        let bytes: &[u8; Self::ENCODED_BYTES] =
            bytes.try_into().map_err(|_| AuthorizationError::Length {
                expected: Self::ENCODED_BYTES,
                actual: bytes.len(),
            })?;
        let scheme = match bytes[0] {
            1 => Scheme::Eip712,
            2 => Scheme::Eip191,
            other => return Err(AuthorizationError::UnknownScheme(other)),
        };
        let word = |range: std::ops::Range<usize>| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[range]);
            u64::from_be_bytes(word)
        };
        let mut signature = [0u8; 65];
        signature.copy_from_slice(&bytes[17..]);
        Ok(Self {
            scheme,
            nonce: word(1..9),
            deadline_seconds: word(9..17),
            signature,
        })
    }
}

/// Signs `op` with `wallet`.
pub fn sign(
    wallet: &Wallet,
    domain: &Domain,
    op: &Op,
    nonce: u64,
    deadline_seconds: u64,
    scheme: Scheme,
) -> Authorization {
    let digest = match scheme {
        Scheme::Eip712 => eip712_digest(domain, op, nonce, deadline_seconds),
        Scheme::Eip191 => alloy_primitives::eip191_hash_message(eip191_message(
            domain,
            op,
            nonce,
            deadline_seconds,
        )),
    };
    let (signature, recovery) = match wallet.signing_key().sign_prehash_recoverable(&digest[..]) {
        Ok(signed) => signed,
        // A 32-byte digest is always a valid prehash for secp256k1.
        Err(error) => panic!("signing a 32-byte digest failed: {error}"),
    };
    let signature = Signature::from((signature, recovery));
    Authorization {
        scheme,
        nonce,
        deadline_seconds,
        signature: signature.as_bytes(),
    }
}

/// The address whose key made `authorization` over `op` in `domain`.
pub fn recover_signer(
    domain: &Domain,
    op: &Op,
    authorization: &Authorization,
) -> Result<Address, AuthorizationError> {
    let signature = Signature::from_raw(&authorization.signature)
        .map_err(|error| AuthorizationError::Malformed(error.to_string()))?;
    let nonce = authorization.nonce;
    let deadline = authorization.deadline_seconds;
    let recovered = match authorization.scheme {
        Scheme::Eip712 => {
            signature.recover_address_from_prehash(&eip712_digest(domain, op, nonce, deadline))
        }
        Scheme::Eip191 => {
            signature.recover_address_from_msg(eip191_message(domain, op, nonce, deadline))
        }
    }
    .map_err(|error| AuthorizationError::Malformed(error.to_string()))?;
    Ok(crate::from_alloy(recovered))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        Domain { salt: [7; 32] }
    }

    #[test]
    fn signatures_recover_their_signer_in_both_schemes_and_round_trip() {
        let wallet = Wallet::generate();
        let op = Op::Stake {
            vvv_units: 5 * 10u128.pow(18),
        };
        for scheme in [Scheme::Eip712, Scheme::Eip191] {
            let authorization = sign(&wallet, &domain(), &op, 3, 1_900_000_000, scheme);
            let decoded =
                Authorization::decode(&authorization.encode()).expect("round trip decodes");
            assert_eq!(decoded, authorization);
            assert_eq!(
                recover_signer(&domain(), &op, &decoded),
                Ok(wallet.address())
            );
        }
    }

    #[test]
    fn any_change_to_what_was_signed_recovers_someone_else() {
        let wallet = Wallet::generate();
        let op = Op::MintDiem {
            svvv_to_lock_units: 1_000,
            min_diem_out_units: 10,
        };
        let authorization = sign(&wallet, &domain(), &op, 0, 100, Scheme::Eip712);
        let other_op = Op::MintDiem {
            svvv_to_lock_units: 1_000,
            min_diem_out_units: 9,
        };
        let other_domain = Domain { salt: [8; 32] };
        let later = Authorization {
            deadline_seconds: 101,
            ..authorization
        };
        let replayed = Authorization {
            nonce: 1,
            ..authorization
        };
        for (what, domain, op, authorization) in [
            ("operation", domain(), &other_op, authorization),
            ("domain", other_domain, &op, authorization),
            ("deadline", domain(), &op, later),
            ("nonce", domain(), &op, replayed),
        ] {
            let recovered = recover_signer(&domain, op, &authorization);
            assert_ne!(recovered, Ok(wallet.address()), "{what} not bound");
        }
    }

    #[test]
    fn malformed_authorizations_are_refused() {
        assert!(matches!(
            Authorization::decode(&[1; 81]),
            Err(AuthorizationError::Length { .. })
        ));
        let mut bytes = vec![9u8];
        bytes.extend_from_slice(&[0; 81]);
        assert_eq!(
            Authorization::decode(&bytes),
            Err(AuthorizationError::UnknownScheme(9))
        );
        let zero = Authorization {
            scheme: Scheme::Eip712,
            nonce: 0,
            deadline_seconds: 0,
            signature: [0; 65],
        };
        assert!(recover_signer(&domain(), &Op::ClaimRewards, &zero).is_err());
    }
}
