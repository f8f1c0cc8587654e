//! A provider's identity: an Ed25519 key pair created on first start and kept in the data dir,
//! readable by its owner only. The gateway knows the provider by its public key.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

const KEY_FILE_NAME: &str = "provider-ed25519.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {action} the provider key {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the provider key {0} is damaged (expected 64 hex digits); move it away to create a new identity"
    )]
    Damaged(PathBuf),
}

/// Loads the key from `data_dir`, creating it on first start (if another process creates it
/// at the same moment, both use that one).
pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, IdentityError> {
    let path = data_dir.join(KEY_FILE_NAME);
    let text = keyfile::read_or_create(&path, || {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        hex::encode(seed).into_bytes()
    })
    .map_err(|error| IdentityError::Io {
        action: "read or create",
        path: path.clone(),
        error,
    })?;
    let bytes: [u8; 32] = std::str::from_utf8(&text)
        .ok()
        .and_then(|text| hex::decode(text.trim()).ok())
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| IdentityError::Damaged(path.clone()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path()).expect("created");
        let second = load_or_create(dir.path()).expect("loaded");
        assert_eq!(first.verifying_key(), second.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only");
        }
        std::fs::write(dir.path().join(KEY_FILE_NAME), "nonsense").expect("write");
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Damaged(_))
        ));
    }
}
