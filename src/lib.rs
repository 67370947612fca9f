//! Sluice: a self-hosted, Segment-compatible event ingestion gateway.
//!
//! # Layout
//! - [`config`]: loading and validating the TOML configuration, env overrides, defaults.
//! - [`control`]: the control plane: policy, store, API, tokens, audit, the published catalog.
//! - [`catalog_origin`]: where `serve`'s catalog comes from (a file, the control plane, a remote one).
//! - [`catalog`]: the hot-reloaded, versioned snapshot of sources and write keys.
//! - [`gateway`]: the Tracking API: HTTP, routing, auth, limits, bodies, responses.
//! - [`event`]: the Segment message model: decoding and normalisation.
//! - [`protocols`]: tracking plans, validation and enforcement at the edge.
//! - [`log`]: the durable event log (group commit, segments, recovery, retention).
//! - [`admin_listener`]: the admin listener: metrics, probes, dead letters.
//! - [`delivery`]: forwarding stored events to connected destinations, at least once.
//! - [`disk`]: atomic, durable file replacement and the fault-injection seam.
//! - [`telemetry`]: metric names and registration, tracing setup.
//! - [`usage`]: events counted per source at the edge, booked by the control plane; monthly quotas.
//! - [`parts`]: the parts a process is wired from, each started by one function and
//!   stopped through its handle.
//!
//! [`serve`] runs everything in one process; `src/main.rs` only wires the command line to it.

pub mod admin_listener;
pub mod catalog;
pub mod catalog_origin;
pub mod clock;
pub mod config;
pub mod consent;
pub mod control;
pub mod delivery;
pub mod disk;
pub mod event;
pub mod functions;
pub mod gateway;
pub mod log;
pub mod parts;
pub mod pii;
pub mod protocols;
pub mod record;
pub mod suppression;
pub mod telemetry;
pub mod tls;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Name of the catalog's last-known-good copy inside the log directory.
pub const LAST_KNOWN_GOOD: &str = "catalog.lkg.json";
/// Header and idle timeout on the admin listener.
pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often histogram summaries are refreshed for `/metrics`.
pub(crate) const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The two sockets Sluice serves on.
pub struct Listeners {
    /// The Tracking API.
    pub data: TcpListener,
    /// `/metrics`, `/health`, `/ready`.
    pub admin: TcpListener,
    /// The control plane's API (with `catalog.source = "control"`; none: not served).
    pub control: Option<TcpListener>,
}

/// Why Sluice could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The event log could not be opened.
    #[error(transparent)]
    Log(#[from] log::OpenError),
    /// Neither the catalog nor its last-known-good copy could be loaded.
    #[error(transparent)]
    Catalog(#[from] catalog::LoadError),
    /// TLS is configured but unusable.
    #[error(transparent)]
    Tls(#[from] gateway::TlsError),
    /// The control plane could not start.
    #[error(transparent)]
    Control(#[from] catalog_origin::ControlError),
    /// The JetStream event log could not be reached or set up.
    #[error(transparent)]
    JetStream(#[from] log::jetstream::JetStreamError),
    /// `sluice deliver` reads JetStream only.
    #[error(
        "sluice deliver needs log.backend = \"jetstream\" (with the local log, `sluice serve` delivers)"
    )]
    NotJetStream,
}

/// Runs the gateway until `shutdown` is cancelled, then stops accepting, lets
/// in-flight requests finish (up to `shutdown_grace_ms`), and flushes the log.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // The recorder first: whatever is recorded before it is installed is lost.
    let _ = telemetry::metrics();
    let config = Arc::new(config);
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(gateway::tls_acceptor(cert, key)?),
        _ => None,
    };
    // The catalog first: every destination's saved cursor must hold its place in the
    // log before the log's start-up retention runs.
    let (store, control_store, catalog) = parts::catalog(parts::open_catalog(&config).await?);
    let (event_log, local_log, log) = parts::event_log(&config, &store).await?;
    let (delivered, delivery) =
        parts::delivery(&config, &event_log, local_log.as_ref(), &store).await?;
    let state = Arc::new(gateway::State::new(Arc::clone(&config), store, event_log));
    let usage = parts::usage(&config, control_store.as_ref(), state.usage()).await;
    let suppressions =
        parts::suppressions(&config, control_store.as_ref(), state.suppressions()).await;
    let function_errors = parts::function_errors(&config);
    let admin_state = admin_listener::State {
        probes: admin_listener::Probes::Gateway(Arc::clone(&state)),
        delivery: delivered,
        token: config.server.admin_token.clone(),
    };
    tracing::info!(
        data = %listeners.data.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        admin = %listeners.admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        durability = ?config.log.durability,
        "sluice is serving"
    );
    let control = parts::control(&config, control_store, listeners.control);
    let admin = parts::admin(&config, listeners.admin, admin_state);
    let data = parts::data_settings(&config, tls);
    gateway::run_listener(
        listeners.data,
        data,
        move |req, peer| gateway::handle(Arc::clone(&state), req, peer),
        shutdown,
    )
    .await;

    // The Tracking API has stopped accepting and drained its requests. The rest stops
    // in this order, each part needing those after it still running: usage books its
    // last counts; the control plane's API stops (its changes committed or not at
    // all); delivery's workers save their cursors; functions' failed runs are reported
    // a last time; the event log flushes and syncs (no appender or reader is left); the
    // suppression list and the catalog stop following; the admin listener goes last, so
    // /metrics and /ready answer until the end.
    tracing::info!("stopped accepting; stopping the other parts in order");
    for part in [
        usage,
        control,
        delivery,
        function_errors,
        log,
        suppressions,
        catalog,
        admin,
    ] {
        part.stop().await;
    }
    tracing::info!("sluice stopped");
    Ok(())
}

/// Runs only delivery from the JetStream event log (`sluice deliver`) until `shutdown`:
/// the catalog as `serve` takes it (file, control-plane store, or a remote control
/// plane), one worker per destination sharing the destination's durable consumer with
/// every other delivery process; `/metrics`, `/health`, `/ready` and the dead-letter
/// count on `admin`.
pub async fn deliver(
    config: Config,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if config.log.backend != config::LogBackend::Jetstream {
        return Err(ServeError::NotJetStream);
    }
    let _ = telemetry::metrics();
    let (store, _, catalog) = parts::catalog(parts::open_catalog(&config).await?);
    let (context, dead_letters, delivery) = parts::stream_delivery(&config, &store).await?;
    let admin_state = admin_listener::State {
        probes: admin_listener::Probes::Deliver {
            catalog: store,
            nats: context.client(),
        },
        delivery: Some(admin_listener::Delivered {
            local: None,
            dead_letters,
        }),
        token: config.server.admin_token.clone(),
    };
    tracing::info!(
        stream = %config.log.jetstream.stream,
        admin = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "sluice deliver is running"
    );
    let admin = parts::admin(&config, admin, admin_state);
    let function_errors = parts::function_errors(&config);
    // Until asked to stop, or until the workers end by themselves (a failure: the
    // process must not stay up delivering nothing).
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = check.tick() => if delivery.ended() {
                tracing::error!("delivery's workers ended by themselves; stopping");
                break;
            },
        }
    }
    // Delivery first (its workers settle what they hold), then its functions' failed
    // runs reported a last time, then the catalog, then the admin listener.
    for part in [delivery, function_errors, catalog, admin] {
        part.stop().await;
    }
    tracing::info!("sluice deliver stopped");
    Ok(())
}
