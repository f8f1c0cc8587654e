//! A wallet key: a secp256k1 private key kept in a file readable by its owner only, as 64 hex
//! digits (the form `cast wallet` and browser wallets import and export).

use std::path::{Path, PathBuf};

use k256::ecdsa::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("cannot {action} the wallet key {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the wallet key {0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error(
        "not a private key: expected 64 hex digits (optionally 0x-prefixed) of a valid secp256k1 scalar"
    )]
    BadKey,
}

/// A private key and its address.
#[derive(Clone)]
pub struct Wallet {
    key: SigningKey,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        write!(formatter, "Wallet({})", self.address())
    }
}

impl Wallet {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        loop {
            let mut secret = [0u8; 32];
            rand::fill(&mut secret);
            // Fails only for zero or a value at or above the curve order (probability ~2^-128).
            if let Ok(key) = SigningKey::from_slice(&secret) {
                return Self { key };
            }
        }
    }

    /// Parses 64 hex digits, with or without `0x`.
    pub fn from_hex(text: &str) -> Result<Self, WalletError> {
        let text = text.trim();
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        let bytes: [u8; 32] = hex::decode(digits)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(WalletError::BadKey)?;
        let key = SigningKey::from_slice(&bytes).map_err(|_| WalletError::BadKey)?;
        Ok(Self { key })
    }

    /// The private key as `0x` and 64 hex digits. Only for export at the user's request.
    pub fn secret_hex(&self) -> String {
        format!("0x{}", hex::encode(self.key.to_bytes()))
    }

    pub fn address(&self) -> ledger::Address {
        crate::from_alloy(alloy_primitives::Address::from_private_key(&self.key))
    }

    /// Signs `message` as `personal_sign` (EIP-191) does: r ‖ s ‖ v with v 27 or 28.
    pub fn personal_sign(&self, message: &[u8]) -> [u8; 65] {
        let digest = alloy_primitives::eip191_hash_message(message);
        let (signature, recovery) = match self.key.sign_prehash_recoverable(&digest[..]) {
            Ok(signed) => signed,
            Err(error) => panic!("signing a 32-byte digest failed: {error}"),
        };
        alloy_primitives::Signature::from((signature, recovery)).as_bytes()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Reads a key file written by [`Wallet::save`] (or any file holding 64 hex digits).
    pub fn load(path: &Path) -> Result<Self, WalletError> {
        let text = std::fs::read_to_string(path).map_err(|error| WalletError::Io {
            action: "read",
            path: path.to_owned(),
            error,
        })?;
        Self::from_hex(&text)
    }

    /// Loads the key at `path`, creating a new one there on first use (if another process
    /// creates it at the same moment, both use that one).
    pub fn load_or_create(path: &Path) -> Result<Self, WalletError> {
        let text = keyfile::read_or_create(path, || {
            format!("{}\n", Self::generate().secret_hex()).into_bytes()
        })
        .map_err(|error| WalletError::Io {
            action: "read or create",
            path: path.to_owned(),
            error,
        })?;
        Self::from_hex(&String::from_utf8_lossy(&text))
    }

    /// Writes the key to a new file, mode 0600, atomically; refuses to replace an existing key.
    pub fn save(&self, path: &Path) -> Result<(), WalletError> {
        keyfile::create_new(path, format!("{}\n", self.secret_hex()).as_bytes()).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                WalletError::Exists(path.to_owned())
            } else {
                WalletError::Io {
                    action: "save",
                    path: path.to_owned(),
                    error,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_key_has_its_known_address() {
        // The first account of the widely published Hardhat/Anvil test mnemonic.
        let wallet =
            Wallet::from_hex("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
                .expect("valid key");
        assert_eq!(
            wallet.address().to_string(),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        for text in [
            "",
            "0x12",
            &"0".repeat(64),
            &"g".repeat(64),
            &"f".repeat(64),
        ] {
            assert!(
                matches!(Wallet::from_hex(text), Err(WalletError::BadKey)),
                "{text:?} accepted"
            );
        }
    }

    #[test]
    fn saved_keys_load_back_private_and_are_never_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys").join("wallet.key");
        let wallet = Wallet::load_or_create(&path).expect("created");
        let again = Wallet::load_or_create(&path).expect("loaded");
        assert_eq!(wallet.address(), again.address());
        assert!(matches!(
            Wallet::generate().save(&path),
            Err(WalletError::Exists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{wallet:?}").contains(&wallet.secret_hex()[2..]));
    }
}
