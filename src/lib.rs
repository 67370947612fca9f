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
//!
//! [`serve`] runs everything in one process; `src/main.rs` only wires the command line to it.

pub mod admin_listener;
pub mod catalog;
pub mod catalog_origin;
pub mod clock;
pub mod config;
pub mod control;
pub mod delivery;
pub mod disk;
pub mod event;
pub mod functions;
pub mod gateway;
pub mod log;
pub mod protocols;
pub mod record;
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
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often histogram summaries are refreshed for `/metrics`.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

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
    let Starting {
        source,
        control_store,
        store,
        doc,
        lkg,
    } = open_catalog(&config).await?;
    let background = CancellationToken::new();
    // Where accepted events go: this machine's segment files, or a JetStream stream.
    let (event_log, local_log) = match config.log.backend {
        config::LogBackend::Local => {
            let holds = delivery::saved_holds(&config.log.dir, &store.snapshot());
            let log = log::Log::open_with(
                &config.log,
                log::Opening {
                    holds,
                    ..log::Opening::default()
                },
            )?;
            (log::EventLog::Local(log.clone()), Some(log))
        }
        config::LogBackend::Jetstream => {
            let publisher =
                log::jetstream::Publisher::open(&config.log.jetstream, background.clone()).await?;
            // Every destination's consumer exists before the first request is accepted.
            delivery::stream::keep_consumers(
                publisher.context().clone(),
                &config.log.jetstream,
                store.clone(),
                background.clone(),
            )
            .await?;
            (log::EventLog::JetStream(Box::new(publisher)), None)
        }
    };
    let reloader = catalog::spawn_reloader(source, store.clone(), doc, lkg, background.clone());
    let upkeep = spawn_metrics_upkeep(background.clone());

    let delivery_stop = CancellationToken::new();
    let network = delivery::Network::of(&config.delivery, &config.functions);
    let delivery = match (&local_log, config.delivery.enabled) {
        (Some(log), true) => Some(delivery::Delivery::spawn(
            log.clone(),
            store.clone(),
            network.clone(),
            delivery_stop.clone(),
        )),
        _ => None,
    };
    let stream_delivery = match (&event_log, config.delivery.enabled) {
        (log::EventLog::JetStream(publisher), true) => Some(
            delivery::stream::spawn(
                publisher.context().clone(),
                config.log.jetstream.clone(),
                store.clone(),
                network,
                delivery::dead_letter_dir(&config.log.dir),
                delivery_stop.clone(),
            )
            .await?,
        ),
        _ => None,
    };
    let state = Arc::new(gateway::State::new(
        Arc::clone(&config),
        store,
        event_log.clone(),
    ));
    // The month's standing before the first request, so a restart enforces quotas at once.
    let usage_stop = CancellationToken::new();
    let usage_task = match catalog_origin::books(&config, control_store.as_ref()) {
        Some(catalog_origin::Books::Store(ledger)) => {
            Some(spawn_usage(state.usage(), ledger, usage_stop.clone()).await)
        }
        Some(catalog_origin::Books::Remote(ledger)) => {
            Some(spawn_usage(state.usage(), ledger, usage_stop.clone()).await)
        }
        None => None,
    };
    let admin_state = Arc::new(admin_listener::State {
        probes: admin_listener::Probes::Gateway(Arc::clone(&state)),
        delivery: delivery.as_ref().map(|(d, _)| d.clone()),
        token: config.server.admin_token.clone(),
    });
    let settings = gateway::ListenerSettings {
        max_connections: config.server.max_connections,
        header_timeout: Duration::from_millis(config.server.header_timeout_ms),
        idle_timeout: Duration::from_millis(config.server.idle_timeout_ms),
        grace: Duration::from_millis(config.server.shutdown_grace_ms),
        tls,
        max_header_bytes: config.server.max_header_bytes,
        max_streams: config.server.max_streams_per_connection,
        max_per_ip: config.server.max_connections_per_ip,
        exempt: config.server.trusted_proxies.clone(),
    };
    let admin_settings = admin_listener_settings(&config);
    tracing::info!(
        data = %listeners.data.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        admin = %listeners.admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        durability = ?config.log.durability,
        "sluice is serving"
    );
    let control_stop = CancellationToken::new();
    let control_api = match (control_store, listeners.control) {
        (Some(publisher), Some(listener)) => {
            tracing::info!(control = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "control plane API listening");
            let api = catalog_origin::api(&config, publisher);
            for sink in control::audit_stream::sinks(&config) {
                tokio::spawn(control::audit_stream::run(
                    api.store.clone(),
                    sink,
                    control_stop.clone(),
                ));
            }
            Some(tokio::spawn(control::api::serve(
                listener,
                api,
                control_stop.clone(),
            )))
        }
        _ => None,
    };
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(gateway::run_listener(
        listeners.admin,
        admin_settings,
        move |req, _peer| admin_listener::handle(Arc::clone(&admin_state), req),
        admin_stop.clone(),
    ));
    gateway::run_listener(
        listeners.data,
        settings,
        {
            let state = Arc::clone(&state);
            move |req, peer| gateway::handle(Arc::clone(&state), req, peer)
        },
        shutdown,
    )
    .await;

    // Shutdown order; each step needs everything after it still running:
    // 1. the Tracking API stopped accepting and drained its requests (above); its last
    //    usage counts are reported; the control plane's API stops (its changes are
    //    committed or not at all);
    // 2. delivery stops: its workers save their cursors;
    // 3. the event log flushes and syncs (no appender or reader is left);
    // 4. the catalog reloader and metrics upkeep stop;
    // 5. the admin listener stops last: /metrics and /ready answer until the end.
    usage_stop.cancel();
    if let Some(task) = usage_task {
        let _ = task.await;
    }
    control_stop.cancel();
    if let Some(task) = control_api {
        match task.await {
            Ok(Err(error)) => tracing::warn!(%error, "control plane API stopped with an error"),
            Err(error) => tracing::warn!(%error, "control plane API task failed"),
            Ok(Ok(())) => {}
        }
    }
    tracing::info!("stopped accepting; stopping delivery and flushing the event log");
    delivery_stop.cancel();
    if let Some((_, task)) = delivery {
        let _ = task.await;
    }
    if let Some(task) = stream_delivery {
        let _ = task.await;
    }
    if let Some(log) = local_log {
        log.close(Duration::from_secs(10)).await;
    }
    background.cancel();
    let _ = tokio::join!(reloader, upkeep);
    admin_stop.cancel();
    let _ = admin.await;
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
    let Starting {
        source,
        store,
        doc,
        lkg,
        ..
    } = open_catalog(&config).await?;
    let background = CancellationToken::new();
    let reloader = catalog::spawn_reloader(source, store.clone(), doc, lkg, background.clone());
    let context = async_nats::jetstream::new(log::jetstream::connect(&config.log.jetstream).await?);
    log::jetstream::spawn_connection_gauge(context.client(), background.clone());
    let workers = delivery::stream::spawn(
        context.clone(),
        config.log.jetstream.clone(),
        store.clone(),
        delivery::Network::of(&config.delivery, &config.functions),
        delivery::dead_letter_dir(&config.log.dir),
        shutdown.clone(),
    )
    .await?;
    let admin_state = Arc::new(admin_listener::State {
        probes: admin_listener::Probes::Deliver {
            catalog: store,
            nats: context.client(),
        },
        delivery: None,
        token: config.server.admin_token.clone(),
    });
    let admin_settings = admin_listener_settings(&config);
    tracing::info!(
        stream = %config.log.jetstream.stream,
        admin = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "sluice deliver is running"
    );
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(gateway::run_listener(
        admin,
        admin_settings,
        move |req, _peer| admin_listener::handle(Arc::clone(&admin_state), req),
        admin_stop.clone(),
    ));
    let upkeep = spawn_metrics_upkeep(background.clone());
    let _ = workers.await;
    background.cancel();
    let _ = tokio::join!(reloader, upkeep);
    admin_stop.cancel();
    let _ = admin.await;
    tracing::info!("sluice deliver stopped");
    Ok(())
}

/// Asks `ledger` for the month's standing, then reports `tally` to it every second
/// until `stop` (and once more then).
async fn spawn_usage<L: usage::Ledger + 'static>(
    tally: &Arc<usage::Tally>,
    mut ledger: L,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    usage::start(tally, &mut ledger).await;
    tokio::spawn(usage::run(Arc::clone(tally), ledger, stop))
}

/// The admin listener's settings: its own, tighter caps than the Tracking API's (probes
/// and scrapes are short, and held sockets there must not blind monitoring), no TLS.
fn admin_listener_settings(config: &Config) -> gateway::ListenerSettings {
    let server = &config.server;
    gateway::ListenerSettings {
        max_connections: server.admin_max_connections,
        header_timeout: Duration::from_millis(server.header_timeout_ms).min(ADMIN_TIMEOUT),
        idle_timeout: Duration::from_millis(server.idle_timeout_ms).min(ADMIN_TIMEOUT),
        grace: Duration::from_millis(server.shutdown_grace_ms),
        tls: None,
        max_header_bytes: server.max_header_bytes,
        max_streams: server.max_streams_per_connection,
        max_per_ip: server.admin_max_connections,
        exempt: Vec::new(),
    }
}

/// Runs the metrics recorder's upkeep (histogram windows) until `stop`.
fn spawn_metrics_upkeep(stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let metrics = telemetry::metrics();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => metrics.run_upkeep(),
            }
        }
    })
}

/// The catalog a process starts with, and where it keeps following it from.
struct Starting {
    source: catalog_origin::Source,
    /// The control plane's published catalog (and its store), with
    /// `catalog.source = "control"`.
    control_store: Option<control::feed::Publisher>,
    store: catalog::Live,
    doc: catalog::Document,
    /// The last-known-good copy.
    lkg: catalog::LastKnownGood,
}

/// Creates `log.dir`, opens the catalog's source and loads the catalog (or its
/// last-known-good copy).
async fn open_catalog(config: &Config) -> Result<Starting, ServeError> {
    std::fs::create_dir_all(&config.log.dir).map_err(|source| log::OpenError::Io {
        path: config.log.dir.clone(),
        source,
    })?;
    let (mut source, control_store) = catalog_origin::open(config).await?;
    let lkg = catalog::LastKnownGood {
        path: config.log.dir.join(LAST_KNOWN_GOOD),
        seal: source.seal(),
    };
    let (store, doc) = catalog::open_store(&mut source, &lkg).await?;
    Ok(Starting {
        source,
        control_store,
        store,
        doc,
        lkg,
    })
}
