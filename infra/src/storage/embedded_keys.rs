//! The embedded store's account when no `S3_ACCESS_KEY_ID`/`S3_SECRET_ACCESS_KEY` are configured: generated
//! at first start (a 256-bit random secret), kept in `DATA_DIR/embedded-s3-credentials.json` readable by the
//! service's user only, and read from there by every process that shares `DATA_DIR` (the api serves the
//! store, the worker calls it). No constant account exists, so no published secret opens the store.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use rand::{distributions::Alphanumeric, Rng, RngCore};
use serde::{Deserialize, Serialize};

/// The file under `DATA_DIR` that holds the generated account.
pub const FILE_NAME: &str = "embedded-s3-credentials.json";

#[derive(Debug, Serialize, Deserialize)]
struct Account {
    access_key_id: String,
    secret_access_key: String,
}

/// The path of the account file in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the account kept in `data_dir`, creating it first if there is none. Two processes starting together
/// agree: the file appears whole (written aside, then linked into place only if absent) and the one that
/// loses the race reads the winner's.
pub fn load_or_create(data_dir: &Path) -> io::Result<(String, String)> {
    let file = path(data_dir);
    if !file.exists() {
        fs::create_dir_all(data_dir)?;
        let account = Account {
            access_key_id: format!(
                "EH{}",
                rand::thread_rng()
                    .sample_iter(Alphanumeric)
                    .take(18)
                    .map(|c| char::from(c).to_ascii_uppercase())
                    .collect::<String>()
            ),
            secret_access_key: {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                hex::encode(bytes)
            },
        };
        let aside = data_dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        write_private(&aside, &serde_json::to_vec_pretty(&account)?)?;
        let linked = fs::hard_link(&aside, &file);
        fs::remove_file(&aside)?;
        match linked {
            Ok(()) => {
                tracing::info!(file = %file.display(), "generated the embedded store's account")
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let account: Account = serde_json::from_slice(&fs::read(&file)?)?;
    Ok((account.access_key_id, account.secret_access_key))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_account_is_random_private_and_the_same_for_every_reader() {
        let dir = std::env::temp_dir().join(format!("ehealth-keys-{}", uuid::Uuid::new_v4()));
        let first = load_or_create(&dir).unwrap();
        let again = load_or_create(&dir).unwrap();
        assert_eq!(first, again, "a second process reads the same account");
        assert_eq!(first.1.len(), 64, "256 bits, hex");
        let other = std::env::temp_dir().join(format!("ehealth-keys-{}", uuid::Uuid::new_v4()));
        assert_ne!(load_or_create(&other).unwrap(), first, "random per store");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path(&dir)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "readable by the service's user only");
        }
        fs::remove_dir_all(dir).unwrap();
        fs::remove_dir_all(other).unwrap();
    }
}
