//! Local passwords: argon2id with its defaults (19 MiB, two passes, one lane: OWASP's
//! minimum), hashed off the async threads and at most [`AT_ONCE`] at a time, so sign-ins
//! cannot take every core. An unknown account is checked against a dummy hash, so the
//! answer's timing does not tell which emails exist.

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

/// Shortest password, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest password, in bytes (hashing cost does not depend on it, but reading does).
pub const MAX_BYTES: usize = 1024;
/// Hashes computed at once.
pub const AT_ONCE: usize = 2;

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than [`MIN_CHARS`].
    #[error("at least {MIN_CHARS} characters")]
    TooShort,
    /// Longer than [`MAX_BYTES`].
    #[error("at most {MAX_BYTES} bytes")]
    TooLong,
    /// The system gave no randomness for the salt, or hashing failed.
    #[error("cannot hash: {0}")]
    Hash(String),
}

fn slots() -> &'static Semaphore {
    static SLOTS: Semaphore = Semaphore::const_new(AT_ONCE);
    &SLOTS
}

/// Checks a new password's length.
pub fn acceptable(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

fn hash_now(password: &[u8]) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password_with_salt(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// The PHC string of a new password (checked with [`acceptable`] first).
pub async fn hash(password: String) -> Result<String, PasswordError> {
    acceptable(&password)?;
    let _slot = slots()
        .acquire()
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    tokio::task::spawn_blocking(move || hash_now(password.as_bytes()))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// A hash of nothing anyone knows, checked when the account has no password.
fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password_with_salt(b"no account has this password", b"sluice-dummy-salt")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` matches `phc`. With no hash (no such account, or no password
/// set) the same work is done against a dummy and the answer is no.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    let Ok(_slot) = slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let stored = phc.unwrap_or_else(|| dummy().to_owned());
        let matches = PasswordHash::new(&stored).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        known && matches
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery".into()).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await);
        assert!(!verify("correct horse batterx".into(), Some(phc)).await);
        assert!(!verify("no account has this password".into(), None).await);
    }

    #[tokio::test]
    async fn lengths_are_bounded() {
        assert!(matches!(
            hash("short".into()).await,
            Err(PasswordError::TooShort)
        ));
        let long = "x".repeat(MAX_BYTES + 1);
        assert!(matches!(
            hash(long.clone()).await,
            Err(PasswordError::TooLong)
        ));
        assert!(!verify(long, None).await);
    }
}
