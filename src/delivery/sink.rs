//! The destination trait: send a batch, say how it went. Errors are classified where
//! they are made: retryable (with an optional Retry-After) or permanent.

mod file;
mod nats;
mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::catalog::{Destination, KindDoc};

pub use file::FileSink;
pub use nats::NatsSink;
pub use webhook::{WebhookSink, is_private};

/// One event on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its offset in the event log.
    pub offset: u64,
    /// The source it came from.
    pub source_id: String,
    /// The stored event, as JSON (it keeps its original `messageId`).
    pub event: Box<RawValue>,
    /// When Sluice received it (for delivery latency and max age).
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a send failed: whether to retry (the variant), who is to blame, and a stable
/// reason label. Each sink decides all three where the failure is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying later (network, timeout, 408, 429, 5xx).
    Retryable {
        /// Stable reason label (`timeout`, `connection`, `status_5xx`, `rate_limited`…).
        reason: &'static str,
        /// Who the failure is down to.
        blame: Blame,
        /// What the destination asked for, if anything.
        retry_after: Option<Duration>,
    },
    /// Will not succeed by retrying (other 4xx, refused address, bad settings).
    Permanent {
        /// Stable reason label.
        reason: &'static str,
        /// Who the failure is down to.
        blame: Blame,
        /// Human detail for the dead-letter store.
        detail: String,
    },
}

impl SendError {
    /// The reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Retryable { reason, .. } | Self::Permanent { reason, .. } => reason,
        }
    }

    /// Who the failure is down to.
    pub fn blame(&self) -> Blame {
        match self {
            Self::Retryable { blame, .. } | Self::Permanent { blame, .. } => *blame,
        }
    }
}

/// Who a failed delivery is down to: where an operator has to look. Written into
/// dead-letter entries and delivery log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The destination: it answered with an error (5xx, 408, 429, a missing stream) or
    /// not at all in time.
    Destination,
    /// The network on the way: its name did not resolve.
    Network,
    /// The destination's settings in the catalog: a URL Sluice may not reach, a header
    /// that is not one, a file path outside `delivery.file_dir`.
    Settings,
    /// The events themselves: the destination refused them as they are (a 4xx other
    /// than 408 and 429), or one is larger than it takes.
    Events,
    /// The destination's insert function: it threw, ran too long, or asked for a retry.
    Function,
    /// This Sluice: a write to its own disk failed, or a function host could not be
    /// used.
    Sluice,
    /// Written by a newer Sluice than this one (read back, never written).
    #[serde(other)]
    Unknown,
}

impl Blame {
    /// Who a failed insert-function run is down to: the function, unless its host
    /// could not be used (`function_host`).
    pub fn of_function_failure(reason: &str) -> Self {
        if reason == "function_host" {
            Self::Sluice
        } else {
            Self::Function
        }
    }

    /// The snake_case name (as in dead-letter entries).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Destination => "destination",
            Self::Network => "network",
            Self::Settings => "settings",
            Self::Events => "events",
            Self::Function => "function",
            Self::Sluice => "sluice",
            Self::Unknown => "unknown",
        }
    }
}

/// A boxed send future.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// A destination type.
pub trait Sink: Send + Sync {
    /// Delivers `batch` (at least one event) in order, all or nothing.
    fn send<'a>(&'a self, batch: &'a [Outgoing]) -> Sending<'a>;
    /// Most events per send.
    fn batch_size(&self) -> usize {
        1
    }
    /// Most bytes of events per send.
    fn batch_bytes(&self) -> usize {
        usize::MAX
    }
    /// How long to wait for a batch to fill.
    fn batch_wait(&self) -> Duration {
        Duration::ZERO
    }
}

/// Where destinations may reach: private and loopback addresses or not, and the one
/// directory `file` destinations write in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `delivery.allow_private_destinations`.
    pub allow_private: bool,
    /// `delivery.file_dir`.
    pub file_dir: Arc<std::path::Path>,
    /// The program run as `PROGRAM function-host` for a destination's insert function
    /// (`functions.program`, or this executable).
    pub function_host: Arc<std::path::Path>,
}

impl Network {
    /// What `[delivery]` and `[functions]` say.
    pub fn of(config: &crate::config::Delivery, functions: &crate::config::Functions) -> Self {
        Self {
            allow_private: config.allow_private_destinations,
            file_dir: Arc::from(config.file_dir.as_path()),
            function_host: Arc::from(functions.program().as_path()),
        }
    }
}

/// Builds the sink for a destination's type and settings.
pub fn build(destination: &Destination, network: &Network) -> Result<Arc<dyn Sink>, SendError> {
    Ok(match &destination.kind {
        KindDoc::Webhook(settings) => Arc::new(WebhookSink::new(settings, network.clone())?),
        KindDoc::File(settings) => Arc::new(FileSink::new(settings, &network.file_dir)?),
        KindDoc::Nats(settings) => Arc::new(NatsSink::new(settings)),
    })
}
