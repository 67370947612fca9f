//! Secrets at rest: destination credentials are sealed with an AEAD key before they
//! reach the store, and redacted everywhere else.
//!
//! - The key: 32 bytes from `SLUICE_SECRET_KEY` (64 hex characters), else from the key
//!   file in the data directory, created `0600` on first start. Losing it loses the
//!   sealed secrets (they must be entered again), never anything else.
//! - [`Key::seal`]: ChaCha20-Poly1305 (ring) with a random 96-bit nonce, bound to an
//!   associated context (`destination:<id>:<field>`), so a sealed value copied to another
//!   row does not open. Text form: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
//! - [`Sensitive`]: a string whose `Debug` and `Serialize` print `<redacted>`.

use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::disk::{self, Access, Faults};

/// The environment variable holding the key (64 hex characters).
pub const ENV_KEY: &str = "SLUICE_SECRET_KEY";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secret.key";
const VERSION: &str = "v1:";

/// Why a key or a sealed value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `SLUICE_SECRET_KEY` or the key file does not hold 64 hex characters.
    #[error("the secret key must be 64 hex characters (32 bytes): {0}")]
    BadKey(&'static str),
    /// Reading or creating the key file failed.
    #[error("secret key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No randomness for a key or a nonce.
    #[error("no randomness available: {0}")]
    NoRandomness(String),
    /// A sealed value that does not open: wrong key, wrong context, or altered.
    #[error("a sealed secret does not open (wrong key, moved, or altered)")]
    Unsealable,
}

/// The key secrets are sealed with.
pub struct Key(LessSafeKey, super::audit::ChainKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(redacted)")
    }
}

impl Key {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        // 32 bytes is always the right length for ChaCha20-Poly1305.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 keys are 32 bytes"));
        Self(
            LessSafeKey::new(unbound),
            super::audit::ChainKey::derive(bytes),
        )
    }

    /// A key derived from another secret (e.g. a node credential) for one purpose:
    /// HMAC-SHA256 keyed by the secret over `purpose`. Whoever lacks the secret cannot
    /// open what it seals.
    pub fn derived(secret: &[u8], purpose: &str) -> Self {
        use hmac::{KeyInit as _, Mac as _};
        // HMAC takes keys of any length.
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(purpose.as_bytes());
        Self::from_bytes(&mac.finalize().into_bytes().into())
    }

    /// The audit chain's MAC key, derived from this key.
    pub fn chain_key(&self) -> &super::audit::ChainKey {
        &self.1
    }

    /// The key from `env_value` (`SLUICE_SECRET_KEY`) if set, else from `<dir>/secret.key`,
    /// which is created (random, `0600`) when missing.
    pub fn load(env_value: Option<&str>, dir: &Path) -> Result<Self, SecretError> {
        if let Some(hex) = env_value {
            return Ok(Self::from_bytes(&parse_hex(hex.trim(), ENV_KEY)?));
        }
        let path = dir.join(KEY_FILE);
        let io = |source| SecretError::KeyFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self::from_bytes(&parse_hex(text.trim(), KEY_FILE)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)
                    .map_err(|e| SecretError::NoRandomness(e.to_string()))?;
                let hex = hex::encode(bytes);
                disk::replace(
                    &path,
                    format!("{hex}\n").as_bytes(),
                    Access::Private,
                    &Faults::default(),
                )
                .map_err(io)?;
                tracing::warn!(path = %path.display(), "created a new secret key; back it up (destination credentials cannot be opened without it)");
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plaintext` for `context` (e.g. `destination:hooks:secret`).
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::NoRandomness(e.to_string()))?;
        let mut buf = plaintext.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Unsealable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{VERSION}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Sensitive, SecretError> {
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .filter(|b| b.len() >= NONCE_LEN)
            .ok_or(SecretError::Unsealable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Unsealable)?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Unsealable)?;
        String::from_utf8(plain.to_vec())
            .map(Sensitive)
            .map_err(|_| SecretError::Unsealable)
    }
}

fn parse_hex(text: &str, what: &'static str) -> Result<[u8; 32], SecretError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| SecretError::BadKey(what))?;
    Ok(out)
}

/// A secret in plaintext, for the code that must use it: `Debug` and `Serialize` print
/// `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for Sensitive {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Key::load(None, dir.path()).expect("key");
        let sealed = key
            .seal("hook-secret", "destination:hooks:secret")
            .expect("seal");
        assert!(!sealed.contains("hook-secret"));
        let opened = key.open(&sealed, "destination:hooks:secret").expect("open");
        assert_eq!(opened.expose(), "hook-secret");
        assert_ne!(
            sealed,
            key.seal("hook-secret", "destination:hooks:secret")
                .expect("seal"),
            "fresh nonce"
        );
        assert!(
            key.open(&sealed, "destination:other:secret").is_err(),
            "moved to another row"
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            key.open(
                &String::from_utf8(tampered).expect("utf8"),
                "destination:hooks:secret"
            )
            .is_err()
        );
        let other = Key::from_bytes(&[7; 32]);
        assert!(
            other.open(&sealed, "destination:hooks:secret").is_err(),
            "another key"
        );
        assert!(key.open("v1:!!", "x").is_err() && key.open("plain", "x").is_err());
    }

    #[test]
    fn the_key_file_is_created_once_owner_only_and_the_environment_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Key::load(None, dir.path()).expect("created");
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.seal("s", "c").expect("seal");
        let again = Key::load(None, dir.path()).expect("reused");
        assert_eq!(again.open(&sealed, "c").expect("same key").expose(), "s");
        let from_env = Key::load(Some(&"ab".repeat(32)), dir.path()).expect("env");
        assert!(
            from_env.open(&sealed, "c").is_err(),
            "the environment's key is used"
        );
        assert!(Key::load(Some("short"), dir.path()).is_err());
    }

    #[test]
    fn sensitive_values_never_print() {
        let s = Sensitive::new("Bearer abc");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"<redacted>\"");
        assert_eq!(s.expose(), "Bearer abc");
    }
}
