//! Private key files (a wallet's key, a provider's identity, the gateway's seeds): every one
//! is created the same way, so that none is ever readable by another user, half written, or
//! replaced. A new file is written to a temporary file in the same folder (mode 0600 from its
//! creation), synced, and linked into place only if nothing is there yet; when another process
//! created the file in the meantime, its contents win, so two processes starting together
//! still share one key.

use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to a new file at `path` (mode 0600, synced, atomic): `AlreadyExists` if
/// a file is there, which is never replaced.
pub fn create_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // A NamedTempFile is created with mode 0600: the secret is private from its first byte.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist_noclobber(path)
        .map(drop)
        .map_err(|error| error.error)
}

/// The contents of the file at `path`, or, when there is none, `make()`'s, written there as
/// [`create_new`] does. If another process creates the file first, its contents are read and
/// returned instead.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(contents) => return Ok(contents),
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        Err(_) => {}
    }
    let contents = make();
    match create_new(path, &contents) {
        Ok(()) => Ok(contents),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => std::fs::read(path),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_private_and_never_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys").join("secret.key");
        let first = read_or_create(&path, || b"first".to_vec()).expect("created");
        assert_eq!(first, b"first");
        // Later callers read what is there, whatever they would have made.
        let again = read_or_create(&path, || b"second".to_vec()).expect("read");
        assert_eq!(again, b"first");
        assert_eq!(
            create_new(&path, b"third").map_err(|error| error.kind()),
            Err(io::ErrorKind::AlreadyExists)
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn processes_starting_together_end_up_with_one_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shared.key");
        let threads: Vec<_> = (0..8u8)
            .map(|index| {
                let path = path.clone();
                std::thread::spawn(move || {
                    read_or_create(&path, || vec![index; 32]).expect("read or created")
                })
            })
            .collect();
        let keys: Vec<Vec<u8>> = threads
            .into_iter()
            .map(|thread| thread.join().expect("thread"))
            .collect();
        assert!(
            keys.iter().all(|key| *key == keys[0]),
            "every caller got the one key on disk"
        );
        assert_eq!(std::fs::read(&path).expect("read"), keys[0]);
    }
}
