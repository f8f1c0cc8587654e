//! A provider's identity: an Ed25519 key pair created on first start and kept in the data dir,
//! readable by its owner only. The gateway knows the provider by its public key.

use std::io::Write;
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

/// Loads the key from `data_dir`, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, IdentityError> {
    let path = data_dir.join(KEY_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| IdentityError::Damaged(path.clone()))?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|error| IdentityError::Io {
                action: "create the folder of",
                path: path.clone(),
                error,
            })?;
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            let key = SigningKey::from_bytes(&seed);
            let io = |action: &'static str| {
                let path = path.clone();
                move |error| IdentityError::Io {
                    action,
                    path,
                    error,
                }
            };
            let mut file = tempfile::NamedTempFile::new_in(data_dir).map_err(io("create"))?;
            file.write_all(hex::encode(seed).as_bytes())
                .map_err(io("write"))?;
            file.as_file().sync_all().map_err(io("write"))?;
            // NamedTempFile is created with mode 0600: the key stays private to its owner.
            file.persist(&path).map_err(|error| IdentityError::Io {
                action: "save",
                path: path.clone(),
                error: error.error,
            })?;
            Ok(key)
        }
        Err(error) => Err(IdentityError::Io {
            action: "read",
            path,
            error,
        }),
    }
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
