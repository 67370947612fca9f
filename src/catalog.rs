//! The immutable, versioned snapshot the data plane reads: write key → source,
//! source → compiled tracking plan and enforcement, and the destinations.
//!
//! Invariants:
//! - A [`Snapshot`] never changes after it is built; a new one replaces it atomically
//!   in the [`Live`] (an `ArcSwap`). A request loads the snapshot once and sees
//!   either the old or the new catalog, never a mix.
//! - Write keys are held only as SHA-256 digests; a lookup hashes the presented key
//!   and probes a hash map, so the time taken does not depend on how many leading
//!   characters of a real key were guessed. Plaintext keys are never logged or saved.
//! - The request path never does I/O to read the catalog. A [`CatalogSource`] (the
//!   file watcher today, the control plane later) feeds the store from a background
//!   task, and every installed snapshot is saved as last-known-good so a restart
//!   works even when the source is unreadable.

mod document;
mod file;
pub mod reach;
mod reload;
mod remote;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

pub use document::{
    DestinationDoc, Document, FileDoc, FilterDoc, FunctionDoc, Invalid, KeyDoc, KindDoc, NatsDoc,
    Problems, QuotaDoc, REDACTED, RateLimitDoc, RetryDoc, SourceDoc, SourceFunctionDoc, WebhookDoc,
    consent_categories_problem, file_name_problem, redacted_url,
};
// The tracking-plan document types belong to `protocols`; the catalog holds them.
pub use crate::protocols::{ControlsDoc, Enforcement, PlanDoc, RuleDoc};
pub use file::FileSource;
pub use reload::{CatalogSource, LastKnownGood, LoadError, open_store, spawn_reloader};
pub use remote::{RemoteSource, percent};

/// SHA-256 of a write key: the one form a write key takes anywhere but in the answer
/// that creates it (the store, catalog documents, the gateway's lookup).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Digest of a plaintext key.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// Lower-case hex form.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time comparison (a presented key's digest against a stored one).
    pub fn matches(&self, other: &KeyDigest) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not a secret, but a short prefix is all a reader needs.
        write!(f, "KeyDigest({}…)", &self.to_hex()[..8])
    }
}

/// Requests per second a source may send, with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests that may arrive at once above the sustained rate.
    pub burst: u32,
}

/// A source: where events come from (a website, an app, a server).
#[derive(Debug, Clone)]
pub struct Source {
    /// Stable id, used in metrics labels and stored events.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its control-plane workspace, when it has one.
    pub workspace: Option<String>,
    /// A disabled source's keys are refused.
    pub enabled: bool,
    /// Per-source request rate limit; `None` means unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Tracking plan and enforcement; `None` when enforcement is `off` (no work at all).
    pub protocols: Option<Arc<crate::protocols::SourceProtocols>>,
    /// The monthly event quotas it draws on (none: unlimited).
    pub quotas: Vec<crate::usage::Quota>,
    /// What destinations with consent categories get of its events without consent
    /// preferences.
    pub without_consent: crate::consent::WithoutConsent,
    /// Paths dropped, hashed or masked before its events are stored (`None`: no rules).
    pub pii: Option<Arc<crate::pii::Rules>>,
}

/// A destination: where the events of its connected sources are forwarded.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// Stable id.
    pub id: String,
    /// The name `integrations` objects refer to (case-sensitive).
    pub name: String,
    /// A disabled destination receives nothing.
    pub enabled: bool,
    /// Ids of the connected sources.
    pub sources: Vec<String>,
    /// Event type and name filters.
    pub filter: FilterDoc,
    /// Retry policy.
    pub retry: RetryDoc,
    /// Batches in flight at once at most.
    pub max_in_flight: u32,
    /// Request rate cap.
    pub rate_limit: Option<RateLimit>,
    /// The insert function run on each event before the send.
    pub function: Option<Arc<FunctionDoc>>,
    /// Its consent categories, and the connected sources that withhold events without
    /// consent preferences.
    pub consent: crate::consent::Consent,
    /// Type and settings.
    pub kind: KindDoc,
}

impl Destination {
    /// Whether events of `source_id` go here (enabled and connected).
    pub fn takes_from(&self, source_id: &str) -> bool {
        self.enabled && self.sources.iter().any(|s| s == source_id)
    }
}

/// One write key of a source.
#[derive(Debug, Clone)]
struct KeyEntry {
    source: Arc<Source>,
    revoked: bool,
    expires_at: Option<DateTime<Utc>>,
}

/// Why a write key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// No source has this key.
    #[error("unknown write key")]
    Unknown,
    /// The key's source is disabled.
    #[error("source disabled")]
    SourceDisabled,
    /// The key was revoked.
    #[error("write key revoked")]
    Revoked,
    /// The key's rotation overlap has ended.
    #[error("write key expired")]
    Expired,
}

impl KeyRejection {
    /// Stable reason code for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_key",
            Self::SourceDisabled => "source_disabled",
            Self::Revoked => "key_revoked",
            Self::Expired => "key_expired",
        }
    }
}

/// An immutable catalog version.
#[derive(Debug, Default)]
pub struct Snapshot {
    version: u64,
    sources: Vec<Arc<Source>>,
    keys: HashMap<KeyDigest, KeyEntry>,
    destinations: Vec<Arc<Destination>>,
    source_functions: HashMap<String, Arc<SourceFunctionDoc>>,
}

impl Snapshot {
    /// The one function that decides whether a catalog document can be installed: it
    /// checks everything (every problem is reported, not the first), compiles each
    /// tracking plan once, and builds the snapshot from the result. Every producer of
    /// catalog documents (the file, the last-known-good copy, the control plane) goes
    /// through it.
    pub fn try_build(version: u64, doc: &Document) -> Result<Self, Problems> {
        let plans = doc.check()?;
        Ok(Self::assemble(version, doc, &plans))
    }

    fn assemble(
        version: u64,
        doc: &Document,
        plans: &HashMap<&str, Arc<crate::protocols::Plan>>,
    ) -> Self {
        let mut sources = Vec::with_capacity(doc.sources.len());
        let mut keys = HashMap::new();
        let mut quotas: HashMap<&str, Vec<crate::usage::Quota>> = HashMap::new();
        for q in &doc.quotas {
            let pool: Arc<str> = q.id.as_str().into();
            for source in &q.sources {
                quotas.entry(source).or_default().push(crate::usage::Quota {
                    pool: Arc::clone(&pool),
                    monthly_events: q.monthly_events,
                });
            }
        }
        for s in &doc.sources {
            let protocols = match (&s.tracking_plan, s.enforcement) {
                (Some(plan), Enforcement::Warn | Enforcement::Block) => {
                    plans.get(plan.as_str()).and_then(|plan| {
                        crate::protocols::Controls::resolve(s.enforcement, &s.protocols)
                            .ok()
                            .map(|controls| {
                                Arc::new(crate::protocols::SourceProtocols {
                                    plan: Arc::clone(plan),
                                    enforcement: s.enforcement,
                                    controls,
                                })
                            })
                    })
                }
                _ => None,
            };
            let source = Arc::new(Source {
                id: s.id.clone(),
                name: s.name.clone().unwrap_or_else(|| s.id.clone()),
                workspace: s.workspace.clone(),
                enabled: s.enabled,
                rate_limit: s.rate_limit.map(|r| RateLimit {
                    per_second: r.requests_per_second,
                    burst: r.burst.unwrap_or(r.requests_per_second),
                }),
                protocols,
                quotas: quotas.remove(s.id.as_str()).unwrap_or_default(),
                without_consent: s.without_consent,
                pii: crate::pii::Rules::compile(
                    &s.pii,
                    s.pii_salt.as_ref().map(|salt| salt.0.as_str()),
                ),
            });
            for k in &s.write_keys {
                if let Some(digest) = k.digest() {
                    keys.insert(
                        digest,
                        KeyEntry {
                            source: Arc::clone(&source),
                            revoked: k.revoked,
                            expires_at: k.expires_at,
                        },
                    );
                }
            }
            sources.push(source);
        }
        let withholding: std::collections::HashSet<&str> = doc
            .sources
            .iter()
            .filter(|s| s.without_consent == crate::consent::WithoutConsent::Withhold)
            .map(|s| s.id.as_str())
            .collect();
        let destinations = doc
            .destinations
            .iter()
            .map(|d| {
                Arc::new(Destination {
                    id: d.id.clone(),
                    name: d.name.clone().unwrap_or_else(|| d.id.clone()),
                    enabled: d.enabled,
                    sources: d.sources.clone(),
                    filter: d.filter.clone(),
                    retry: d.retry.clone(),
                    max_in_flight: d.max_in_flight,
                    rate_limit: d.rate_limit.map(|r| RateLimit {
                        per_second: r.requests_per_second,
                        burst: r.burst.unwrap_or(r.requests_per_second),
                    }),
                    function: d.function.clone().map(Arc::new),
                    consent: crate::consent::Consent {
                        categories: d.consent_categories.clone(),
                        withholding: d
                            .sources
                            .iter()
                            .filter(|id| withholding.contains(id.as_str()))
                            .cloned()
                            .collect(),
                    },
                    kind: d.kind.clone(),
                })
            })
            .collect();
        let source_functions = doc
            .source_functions
            .iter()
            .map(|f| (f.id.clone(), Arc::new(f.clone())))
            .collect();
        Self {
            version,
            sources,
            keys,
            destinations,
            source_functions,
        }
    }

    /// All destinations.
    pub fn destinations(&self) -> &[Arc<Destination>] {
        &self.destinations
    }

    /// The destination with this id.
    pub fn destination(&self, id: &str) -> Option<&Arc<Destination>> {
        self.destinations.iter().find(|d| d.id == id)
    }

    /// A source function's endpoint, by id.
    pub fn source_function(&self, id: &str) -> Option<&Arc<SourceFunctionDoc>> {
        self.source_functions.get(id)
    }

    /// The snapshot's version (increases with every installed change).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// All sources.
    pub fn sources(&self) -> &[Arc<Source>] {
        &self.sources
    }

    /// Number of write keys (revoked ones included).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The source a write key belongs to, if the key may send now.
    pub fn authenticate(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<&Arc<Source>, KeyRejection> {
        let entry = self
            .keys
            .get(&KeyDigest::of(key))
            .ok_or(KeyRejection::Unknown)?;
        if entry.revoked {
            return Err(KeyRejection::Revoked);
        }
        if entry.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyRejection::Expired);
        }
        if !entry.source.enabled {
            return Err(KeyRejection::SourceDisabled);
        }
        Ok(&entry.source)
    }
}

/// Holder of the current snapshot; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Live {
    current: Arc<ArcSwap<Snapshot>>,
}

impl Live {
    /// A store serving `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
        }
    }

    /// The current snapshot: load it once per request and use only that.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot atomically.
    pub fn install(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(toml_text: &str) -> Document {
        Document::parse(toml_text).expect("valid document")
    }

    #[test]
    fn authenticates_by_key_and_reports_each_refusal() {
        let d = doc(r#"
            [[sources]]
            id = "web"
            write_keys = [{ key = "good" }, { key = "old", revoked = true },
                          { key = "rotated", expires_at = "2020-01-01T00:00:00Z" }]
            [[sources]]
            id = "off"
            enabled = false
            write_keys = [{ key = "off-key" }]
        "#);
        let s = Snapshot::try_build(1, &d).expect("installable");
        let now = Utc::now();
        assert_eq!(
            s.authenticate("good", now).map(|s| s.id.as_str()),
            Ok("web")
        );
        assert_eq!(
            s.authenticate("nope", now).err(),
            Some(KeyRejection::Unknown)
        );
        assert_eq!(
            s.authenticate("old", now).err(),
            Some(KeyRejection::Revoked)
        );
        assert_eq!(
            s.authenticate("rotated", now).err(),
            Some(KeyRejection::Expired)
        );
        assert_eq!(
            s.authenticate("off-key", now).err(),
            Some(KeyRejection::SourceDisabled)
        );
    }

    #[test]
    fn digest_keys_match_their_plaintext() {
        let hex = KeyDigest::of("secret").to_hex();
        let d = doc(&format!(
            "[[sources]]\nid = \"s\"\nwrite_keys = [{{ sha256 = \"{hex}\" }}]\n"
        ));
        let s = Snapshot::try_build(1, &d).expect("installable");
        assert!(s.authenticate("secret", Utc::now()).is_ok());
        assert_eq!(KeyDigest::from_hex(&hex), Some(KeyDigest::of("secret")));
        assert!(!format!("{:?}", KeyDigest::of("secret")).contains(&hex));
    }

    #[test]
    fn store_swaps_whole_snapshots() {
        let store = Live::new(Snapshot::default());
        let before = store.snapshot();
        store.install(
            Snapshot::try_build(2, &doc("[[sources]]\nid = \"a\"\n")).expect("installable"),
        );
        assert_eq!(before.version(), 0);
        assert_eq!(store.snapshot().version(), 2);
        assert_eq!(store.snapshot().sources().len(), 1);
    }
}
