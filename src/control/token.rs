//! API tokens and node credentials: how they look, how they are made, and how a
//! presented one is checked.
//!
//! Format: `slc_pat_` (a person's token) or `slc_node_` (a gateway's or delivery node's
//! credential) + 30 random base62 characters + 6 base62 characters of a CRC32 of those
//! 30, e.g. `slc_pat_4Fq…Zx0aB12`. The fixed prefix and the checksum let secret
//! scanners recognise a leaked token (and reject look-alikes) without asking us; the
//! 30 random characters carry ~178 bits from the operating system's CSPRNG.
//!
//! Only the SHA-256 [`Digest`] is stored; the plaintext exists once, in the answer that
//! creates it, inside a [`Plaintext`] whose `Debug` redacts it. [`parse`] checks the
//! shape and checksum before any lookup, so garbage never reaches the store.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Every personal access token starts with this.
pub const PREFIX: &str = "slc_pat_";
/// Every node credential starts with this.
pub const NODE_PREFIX: &str = "slc_node_";
/// Every SCIM token (an identity provider's, not a person's) starts with this.
pub const SCIM_PREFIX: &str = "slc_scim_";
const RANDOM_CHARS: usize = 30;
const CHECKSUM_CHARS: usize = 6;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented string is not a token (answered `401 invalid_token`, no lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// It does not start with [`PREFIX`].
    #[error("not a Sluice token (wrong prefix)")]
    Prefix,
    /// Wrong length or a character outside base62.
    #[error("not a Sluice token (wrong length or characters)")]
    Shape,
    /// The checksum does not match: mistyped or made up.
    #[error("not a Sluice token (checksum mismatch)")]
    Checksum,
}

/// The operating system has no randomness to give.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available for a new token: {0}")]
pub struct NoRandomness(String);

/// SHA-256 of a token: what the store keeps and looks up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Constant-time comparison.
    pub fn matches(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Lower-case hex.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({}…)", &self.to_hex()[..8])
    }
}

/// A token in plaintext: shown once, never logged.
pub struct Plaintext(String);

impl Plaintext {
    /// The token, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plaintext(redacted)")
    }
}

/// A newly made token.
#[derive(Debug)]
pub struct Issued {
    /// Shown once to its owner.
    pub plaintext: Plaintext,
    /// Stored.
    pub digest: Digest,
    /// What lists show: the prefix and the first four random characters.
    pub display: String,
}

/// Makes a new personal access token.
pub fn issue() -> Result<Issued, NoRandomness> {
    issue_prefixed(PREFIX)
}

/// Makes a new node credential.
pub fn issue_node() -> Result<Issued, NoRandomness> {
    issue_prefixed(NODE_PREFIX)
}

/// Makes a new SCIM token.
pub fn issue_scim() -> Result<Issued, NoRandomness> {
    issue_prefixed(SCIM_PREFIX)
}

fn issue_prefixed(prefix: &str) -> Result<Issued, NoRandomness> {
    let random = random_base62(RANDOM_CHARS)?;
    let text = format!("{prefix}{random}{}", checksum(&random));
    Ok(Issued {
        digest: digest(&text),
        display: text[..prefix.len() + 4].to_owned(),
        plaintext: Plaintext(text),
    })
}

/// `len` characters from the operating system's CSPRNG, each of the 62 equally likely
/// (write keys and one-time links are made of these too).
pub fn random_base62(len: usize) -> Result<String, NoRandomness> {
    let mut random = String::with_capacity(len);
    let mut bytes = [0u8; 64];
    while random.len() < len {
        getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        for b in bytes.iter().filter(|&&b| b < 248) {
            if random.len() == len {
                break;
            }
            random.push(char::from(ALPHABET[usize::from(*b % 62)]));
        }
    }
    Ok(random)
}

/// The SHA-256 of any secret text (write keys, one-time links), for lookups.
pub fn digest_of(text: &str) -> Digest {
    digest(text)
}

/// Checks a presented token's shape and checksum and returns its digest for the lookup.
pub fn parse(presented: &str) -> Result<Digest, Malformed> {
    parse_prefixed(PREFIX, presented)
}

/// [`parse`] for a node credential.
pub fn parse_node(presented: &str) -> Result<Digest, Malformed> {
    parse_prefixed(NODE_PREFIX, presented)
}

/// [`parse`] for a SCIM token.
pub fn parse_scim(presented: &str) -> Result<Digest, Malformed> {
    parse_prefixed(SCIM_PREFIX, presented)
}

fn parse_prefixed(prefix: &str, presented: &str) -> Result<Digest, Malformed> {
    let body = presented.strip_prefix(prefix).ok_or(Malformed::Prefix)?;
    if body.len() != RANDOM_CHARS + CHECKSUM_CHARS || !body.bytes().all(|b| ALPHABET.contains(&b)) {
        return Err(Malformed::Shape);
    }
    let (random, sum) = body.split_at(RANDOM_CHARS);
    if checksum(random) != sum {
        return Err(Malformed::Checksum);
    }
    Ok(digest(presented))
}

fn digest(text: &str) -> Digest {
    Digest(Sha256::digest(text.as_bytes()).into())
}

/// CRC32 (Castagnoli) of the random part, as 6 base62 characters.
fn checksum(random: &str) -> String {
    let mut n = u64::from(crc32c::crc32c(random.as_bytes()));
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_to_their_digest_and_never_print() {
        let a = issue().expect("random");
        let b = issue().expect("random");
        assert_ne!(a.plaintext.expose(), b.plaintext.expose());
        assert_eq!(a.plaintext.expose().len(), PREFIX.len() + 36);
        assert!(a.plaintext.expose().starts_with(&a.display));
        assert_eq!(parse(a.plaintext.expose()), Ok(a.digest));
        assert!(
            a.digest
                .matches(&parse(a.plaintext.expose()).expect("valid"))
        );
        assert!(!a.digest.matches(&b.digest));
        let printed = format!("{a:?}");
        assert!(
            !printed.contains(&a.plaintext.expose()[PREFIX.len()..]),
            "{printed}"
        );
    }

    #[test]
    fn look_alikes_are_refused_before_any_lookup() {
        let token = issue().expect("random");
        let text = token.plaintext.expose();
        assert_eq!(parse(&text.replace(PREFIX, "ghp_")), Err(Malformed::Prefix));
        assert_eq!(parse(&text[..text.len() - 1]), Err(Malformed::Shape));
        assert_eq!(parse(&format!("{text}!")), Err(Malformed::Shape));
        // One character changed in the random part: the checksum catches it.
        let mut typo: Vec<char> = text.chars().collect();
        let at = PREFIX.len() + 3;
        typo[at] = if typo[at] == 'a' { 'b' } else { 'a' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(parse(&typo), Err(Malformed::Checksum));
    }

    #[test]
    fn node_credentials_and_tokens_never_pass_for_each_other() {
        let node = issue_node().expect("random");
        let person = issue().expect("random");
        assert!(node.plaintext.expose().starts_with(NODE_PREFIX));
        assert_eq!(parse_node(node.plaintext.expose()), Ok(node.digest));
        assert_eq!(parse(node.plaintext.expose()), Err(Malformed::Prefix));
        assert_eq!(
            parse_node(person.plaintext.expose()),
            Err(Malformed::Prefix)
        );
    }
}
