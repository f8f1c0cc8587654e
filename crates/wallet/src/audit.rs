//! Checking a journal's signatures again, record by record, in order: what `gondola ledger
//! verify` does after the store has checked hashes and replayed the operations. Every record
//! must carry an [`Authorization`] whose signature recovers to the record's signer over its
//! operation in this ledger's EIP-712 domain, with the signer's next nonce, and a deadline the
//! record's time had not passed. The domain comes from the first record, the genesis, which the
//! operator signed at genesis time.

use std::collections::HashMap;

use ledger::{Address, Op};

use crate::authorization::{Authorization, recover_signer};
use crate::typed::Domain;

/// Why a record's signature does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error("the first record is not a genesis, so the ledger's domain is unknown")]
    NoGenesis,
    #[error("its authorization is unreadable: {0}")]
    Unreadable(String),
    #[error("its signature recovers to {recovered}, not the record's signer {signer}")]
    WrongSigner { signer: Address, recovered: Address },
    #[error("it names nonce {got}, but the signer's next nonce was {expected}")]
    Nonce { expected: u64, got: u64 },
    #[error("it was applied at {time_seconds}, after its deadline {deadline_seconds}")]
    Expired {
        time_seconds: u64,
        deadline_seconds: u64,
    },
}

/// Why a journal's signatures do not verify.
#[derive(Debug, thiserror::Error)]
pub enum JournalAuditError {
    #[error(transparent)]
    Store(#[from] ledger_store::StoreError),
    #[error("journal record {sequence}: {problem}")]
    Signature {
        sequence: u64,
        problem: SignatureProblem,
    },
}

/// Checks the signature of every valid record of the journal in `dir`, in order, changing
/// nothing. Returns how many were checked. Safe beside a live store (see
/// `ledger_store::read_records`).
pub fn audit_journal_signatures(dir: &std::path::Path) -> Result<u64, JournalAuditError> {
    let mut audit = SignatureAudit::new();
    let mut failure = None;
    let read = ledger_store::read_records(dir, |record| {
        if failure.is_none()
            && let Err(problem) = audit.check(
                record.time_seconds,
                record.signer,
                &record.signature,
                &record.op,
            )
        {
            failure = Some(JournalAuditError::Signature {
                sequence: record.sequence,
                problem,
            });
        }
        Ok(())
    });
    if let Some(failure) = failure {
        return Err(failure);
    }
    read?;
    Ok(audit.checked())
}

/// Walks a journal's records in order, checking each one's signature.
#[derive(Debug, Default)]
pub struct SignatureAudit {
    domain: Option<Domain>,
    next_nonces: HashMap<Address, u64>,
    checked: u64,
}

impl SignatureAudit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next record. Records must come in journal order: nonces are counted along.
    pub fn check(
        &mut self,
        time_seconds: u64,
        signer: Address,
        signature: &[u8],
        op: &Op,
    ) -> Result<(), SignatureProblem> {
        let domain = match (&self.domain, op) {
            (Some(domain), _) => *domain,
            // The genesis sets the domain: its signer is the admin, its time the genesis time.
            (None, Op::Genesis(_)) => Domain::for_ledger(signer, time_seconds),
            (None, _) => return Err(SignatureProblem::NoGenesis),
        };
        let authorization = Authorization::decode(signature)
            .map_err(|error| SignatureProblem::Unreadable(error.to_string()))?;
        let recovered = recover_signer(&domain, op, &authorization)
            .map_err(|error| SignatureProblem::Unreadable(error.to_string()))?;
        if recovered != signer {
            return Err(SignatureProblem::WrongSigner { signer, recovered });
        }
        let expected = self.next_nonces.get(&signer).copied().unwrap_or(0);
        if authorization.nonce != expected {
            return Err(SignatureProblem::Nonce {
                expected,
                got: authorization.nonce,
            });
        }
        if authorization.deadline_seconds < time_seconds {
            return Err(SignatureProblem::Expired {
                time_seconds,
                deadline_seconds: authorization.deadline_seconds,
            });
        }
        self.domain = Some(domain);
        self.next_nonces.insert(signer, expected + 1);
        self.checked += 1;
        Ok(())
    }

    /// Records whose signatures held.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}

#[cfg(test)]
mod tests {
    use ledger::{Asset, GenesisConfig};

    use super::*;
    use crate::authorization::{Scheme, sign};
    use crate::key::Wallet;

    const GENESIS: u64 = 1_750_000_000;

    fn transfer() -> Op {
        Op::Transfer {
            asset: Asset::Vvv,
            to: Address([5; 20]),
            amount_units: 1,
        }
    }

    /// A genesis by `operator` and the audit that has checked it.
    fn started(operator: &Wallet) -> (SignatureAudit, Domain) {
        let admin = operator.address();
        let genesis = Op::Genesis(Box::new(GenesisConfig::venice(
            admin,
            admin,
            admin,
            admin,
            admin,
            Vec::new(),
        )));
        let domain = Domain::for_ledger(admin, GENESIS);
        let authorization = sign(operator, &domain, &genesis, 0, GENESIS, Scheme::Eip712);
        let mut audit = SignatureAudit::new();
        assert_eq!(
            audit.check(GENESIS, admin, &authorization.encode(), &genesis),
            Ok(())
        );
        (audit, domain)
    }

    #[test]
    fn a_journal_of_good_signatures_passes_with_nonces_counted_per_signer() {
        let operator = Wallet::generate();
        let user = Wallet::generate();
        let (mut audit, domain) = started(&operator);
        for (wallet, nonce, scheme) in [
            (&user, 0, Scheme::Eip712),
            (&operator, 1, Scheme::Eip712),
            (&user, 1, Scheme::Eip191),
        ] {
            let authorization = sign(wallet, &domain, &transfer(), nonce, GENESIS + 60, scheme);
            assert_eq!(
                audit.check(
                    GENESIS + 10,
                    wallet.address(),
                    &authorization.encode(),
                    &transfer()
                ),
                Ok(())
            );
        }
        assert_eq!(audit.checked(), 4);
    }

    #[test]
    fn forged_replayed_expired_and_foreign_signatures_are_found() {
        let operator = Wallet::generate();
        let user = Wallet::generate();
        let (mut audit, domain) = started(&operator);
        let good = sign(&user, &domain, &transfer(), 0, GENESIS + 60, Scheme::Eip712);

        // Signed by someone else than the record says.
        let problem = audit.check(GENESIS, operator.address(), &good.encode(), &transfer());
        assert_eq!(
            problem,
            Err(SignatureProblem::WrongSigner {
                signer: operator.address(),
                recovered: user.address()
            })
        );
        // Over another operation.
        let other = Op::Transfer {
            asset: Asset::Vvv,
            to: Address([5; 20]),
            amount_units: 2,
        };
        assert!(matches!(
            audit.check(GENESIS, user.address(), &good.encode(), &other),
            Err(SignatureProblem::WrongSigner { .. })
        ));
        // In another ledger's domain.
        let foreign = sign(
            &user,
            &Domain::for_ledger(operator.address(), GENESIS + 1),
            &transfer(),
            0,
            GENESIS + 60,
            Scheme::Eip712,
        );
        assert!(matches!(
            audit.check(GENESIS, user.address(), &foreign.encode(), &transfer()),
            Err(SignatureProblem::WrongSigner { .. })
        ));
        // Applied after its deadline.
        assert_eq!(
            audit.check(GENESIS + 61, user.address(), &good.encode(), &transfer()),
            Err(SignatureProblem::Expired {
                time_seconds: GENESIS + 61,
                deadline_seconds: GENESIS + 60
            })
        );
        // Garbage.
        assert!(matches!(
            audit.check(GENESIS, user.address(), &[1, 2, 3], &transfer()),
            Err(SignatureProblem::Unreadable(_))
        ));
        // Once is fine; the same signature again is a replay.
        assert_eq!(
            audit.check(GENESIS, user.address(), &good.encode(), &transfer()),
            Ok(())
        );
        assert_eq!(
            audit.check(GENESIS, user.address(), &good.encode(), &transfer()),
            Err(SignatureProblem::Nonce {
                expected: 1,
                got: 0
            })
        );
    }

    #[test]
    fn a_journal_must_open_with_its_genesis() {
        let user = Wallet::generate();
        let domain = Domain::for_ledger(user.address(), GENESIS);
        let authorization = sign(&user, &domain, &transfer(), 0, GENESIS, Scheme::Eip712);
        assert_eq!(
            SignatureAudit::new().check(
                GENESIS,
                user.address(),
                &authorization.encode(),
                &transfer()
            ),
            Err(SignatureProblem::NoGenesis)
        );
    }
}
