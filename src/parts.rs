//! The parts a Sluice process is wired from. Each starts through one function here and
//! comes back as a [`Part`]: its tasks and the token that stops them. [`serve`] and
//! [`deliver`] start the parts they need and, at shutdown, stop them one by one in the
//! order their comments give.
//!
//! [`serve`]: crate::serve
//! [`deliver`]: crate::deliver

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::{
    ADMIN_TIMEOUT, LAST_KNOWN_GOOD, METRICS_UPKEEP, ServeError, admin_listener, catalog,
    catalog_origin, control, delivery, gateway, log, suppression, telemetry, usage,
};

/// The gateway's saved copy of the suppression list, in `log.dir`.
pub const SUPPRESSIONS_FILE: &str = "suppressions.bin";

/// What a part does once its tasks have ended (a log's flush).
type Finish = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A running part of the process.
#[must_use = "a part runs until it is stopped"]
pub struct Part {
    name: &'static str,
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    finish: Option<Finish>,
}

impl Drop for Part {
    /// A part dropped without being stopped (start-up failed after it started) stops its
    /// tasks all the same.
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Part {
    /// Whether one of its tasks has ended (a part whose work ends only when stopped has
    /// failed).
    pub fn ended(&self) -> bool {
        self.tasks.iter().any(JoinHandle::is_finished)
    }

    /// A part with nothing running yet.
    fn new(name: &'static str) -> Self {
        Self {
            name,
            token: CancellationToken::new(),
            tasks: Vec::new(),
            finish: None,
        }
    }

    /// The token its tasks stop on.
    fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Adds a task.
    fn with(mut self, task: JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }

    /// Stops the part: cancels its token, waits for its tasks, then finishes it.
    pub async fn stop(mut self) {
        self.token.cancel();
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await {
                tracing::warn!(part = self.name, %error, "a task of this part failed");
            }
        }
        if let Some(finish) = self.finish.take() {
            finish.await;
        }
        tracing::debug!(part = self.name, "stopped");
    }
}

/// The catalog a process starts with, and where it keeps following it from.
pub struct Starting {
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
pub async fn open_catalog(config: &Config) -> Result<Starting, ServeError> {
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

/// Following the catalog: the reloader (file, store or remote control plane, with the
/// last-known-good copy) and the metrics recorder's upkeep. Also hands out the live
/// catalog and, where this process hosts the control plane, its store.
pub fn catalog(starting: Starting) -> (catalog::Live, Option<control::feed::Publisher>, Part) {
    let part = Part::new("catalog");
    let store = starting.store.clone();
    let reloader = catalog::spawn_reloader(
        starting.source,
        starting.store,
        starting.doc,
        starting.lkg,
        part.token(),
    );
    let upkeep = metrics_upkeep(part.token());
    let part = part.with(reloader).with(upkeep);
    (store, starting.control_store, part)
}

/// The event log a gateway appends to: this machine's segment files (held for every
/// destination's saved cursor, flushed and synced when stopped), or a JetStream stream
/// (every destination's consumer made before the first request).
pub async fn event_log(
    config: &Config,
    store: &catalog::Live,
) -> Result<(log::EventLog, Option<log::Log>, Part), ServeError> {
    let mut part = Part::new("event log");
    match config.log.backend {
        config::LogBackend::Local => {
            let holds = log::reading::local::saved_holds(&config.log.dir, &store.snapshot());
            let opening = log::Opening {
                holds,
                ..log::Opening::default()
            };
            let local = log::Log::open_with(&config.log, opening)?;
            let closing = local.clone();
            part.finish = Some(Box::pin(async move {
                closing.close(Duration::from_secs(10)).await;
            }));
            Ok((log::EventLog::Local(local.clone()), Some(local), part))
        }
        config::LogBackend::Jetstream => {
            let settings = &config.log.jetstream;
            let publisher = log::jetstream::Publisher::open(settings, part.token()).await?;
            let context = publisher.context().clone();
            let keeper =
                delivery::stream::keep_consumers(context, settings, store.clone(), part.token())
                    .await?;
            let event_log = log::EventLog::JetStream(Box::new(publisher));
            Ok((event_log, None, part.with(keeper)))
        }
    }
}

/// Delivery inside `serve`: from the local log (its handle serves the admin listener's
/// dead-letter routes), or from JetStream; nothing when `delivery.enabled` is off.
pub async fn delivery(
    config: &Config,
    event_log: &log::EventLog,
    local: Option<&log::Log>,
    store: &catalog::Live,
) -> Result<(Option<admin_listener::Delivered>, Part), ServeError> {
    let part = Part::new("delivery");
    if !config.delivery.enabled {
        return Ok((None, part));
    }
    if let Some(local) = local {
        let network = delivery::Network::of(&config.delivery, &config.functions);
        let (handle, task) =
            delivery::Delivery::spawn(local.clone(), store.clone(), network, part.token());
        let delivered = admin_listener::Delivered {
            dead_letters: handle.dead_letters().clone(),
            local: Some(handle),
        };
        return Ok((Some(delivered), part.with(task)));
    }
    let log::EventLog::JetStream(publisher) = event_log else {
        return Ok((None, part));
    };
    let (dead_letters, task) =
        jetstream_workers(config, publisher.context(), store, part.token()).await?;
    let delivered = admin_listener::Delivered {
        local: None,
        dead_letters,
    };
    Ok((Some(delivered), part.with(task)))
}

/// One delivery worker per destination on the destination's durable consumer, until
/// `stop`; their dead-letter store.
async fn jetstream_workers(
    config: &Config,
    context: &async_nats::jetstream::Context,
    store: &catalog::Live,
    stop: CancellationToken,
) -> Result<(delivery::dead_letter::Store, JoinHandle<()>), ServeError> {
    let dead_letters =
        delivery::dead_letter::Store::new(delivery::dead_letter_dir(&config.log.dir));
    let workers = delivery::stream::spawn(
        context.clone(),
        config.log.jetstream.clone(),
        store.clone(),
        delivery::Network::of(&config.delivery, &config.functions),
        dead_letters.clone(),
        stop,
    );
    Ok((dead_letters, workers))
}

/// `sluice deliver`'s delivery: a connection to NATS (its state in
/// `sluice_jetstream_connected`), one worker per destination on the destination's
/// durable consumer, and their dead-letter store.
pub async fn stream_delivery(
    config: &Config,
    store: &catalog::Live,
) -> Result<
    (
        async_nats::jetstream::Context,
        delivery::dead_letter::Store,
        Part,
    ),
    ServeError,
> {
    let part = Part::new("delivery");
    let client = log::jetstream::connect(&config.log.jetstream).await?;
    log::jetstream::spawn_connection_gauge(client.clone(), part.token());
    let context = async_nats::jetstream::new(client);
    let (dead_letters, workers) = jetstream_workers(config, &context, store, part.token()).await?;
    Ok((context, dead_letters, part.with(workers)))
}

/// Usage reporting: the month's standing is read before the first request (so a restart
/// enforces quotas at once), then the tally is booked every second and once more when
/// stopped. Nothing without a control plane to book it.
pub async fn usage(
    config: &Config,
    control_store: Option<&control::feed::Publisher>,
    tally: &Arc<usage::Tally>,
) -> Part {
    let part = Part::new("usage");
    let task = match catalog_origin::books(config, control_store) {
        Some(catalog_origin::Books::Store(ledger)) => {
            spawn_usage(tally, ledger, part.token()).await
        }
        Some(catalog_origin::Books::Remote(ledger)) => {
            spawn_usage(tally, ledger, part.token()).await
        }
        None => return part,
    };
    part.with(task)
}

async fn spawn_usage<L: usage::Ledger + 'static>(
    tally: &Arc<usage::Tally>,
    mut ledger: L,
    stop: CancellationToken,
) -> JoinHandle<()> {
    usage::start(tally, &mut ledger).await;
    tokio::spawn(usage::run(Arc::clone(tally), ledger, stop))
}

/// Following the control plane's suppression list into the gateway's copy, from the
/// store in this process or from a remote control plane (nothing with a file catalog),
/// saved in `log.dir` so a restart resumes from it. The first copy is loaded before this
/// returns, so the gateway serves with it (up to 10 s; then it serves with the saved copy
/// while the list loads).
pub async fn suppressions(
    config: &Config,
    control_store: Option<&control::feed::Publisher>,
    list: &Arc<suppression::Suppressions>,
) -> Part {
    let part = Part::new("suppressions");
    let list = Arc::clone(list);
    let saved = Some(config.log.dir.join(SUPPRESSIONS_FILE));
    let task = match (config.catalog.source, control_store) {
        (config::CatalogSourceKind::Control, Some(publisher)) => {
            let feed = control::suppression::StoreFeed::new(publisher.store().clone());
            suppression::start(feed, list, saved, part.token()).await
        }
        (config::CatalogSourceKind::Remote, _) => {
            let feed = suppression::RemoteFeed::new(
                &config.catalog.control_url,
                config.catalog.node_token.clone(),
            );
            suppression::start(feed, list, saved, part.token()).await
        }
        _ => return part,
    };
    part.with(task)
}

/// A remote node's reports of its functions' failed runs to its control plane (none
/// otherwise).
pub fn function_errors(config: &Config) -> Part {
    let part = Part::new("function errors");
    match catalog_origin::function_errors(config) {
        Some(reporter) => {
            let task = tokio::spawn(reporter.run(part.token()));
            part.with(task)
        }
        None => part,
    }
}

/// The control plane's API and its audit streams, when this process hosts the control
/// plane and has its listener. Stopping it lets every change commit or not at all.
pub fn control(
    config: &Config,
    control_store: Option<control::feed::Publisher>,
    listener: Option<TcpListener>,
) -> Part {
    let mut part = Part::new("control plane");
    let (Some(publisher), Some(listener)) = (control_store, listener) else {
        return part;
    };
    let address = listener.local_addr().map(|a| a.to_string());
    tracing::info!(control = %address.unwrap_or_default(), "control plane API listening");
    let api = catalog_origin::api(config, publisher);
    for sink in control::audit_stream::sinks(config) {
        let stream = control::audit_stream::run(api.store.clone(), sink, part.token());
        part = part.with(tokio::spawn(stream));
    }
    let serving = control::api::serve(listener, api, part.token());
    part.with(tokio::spawn(async move {
        match serving.await {
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "control plane API stopped with an error"),
        }
    }))
}

/// The admin listener: `/metrics`, `/health`, `/ready` and the dead-letter routes. It is
/// stopped last, so monitoring sees a process until its end.
pub fn admin(config: &Config, listener: TcpListener, state: admin_listener::State) -> Part {
    let part = Part::new("admin listener");
    let state = Arc::new(state);
    let task = tokio::spawn(gateway::run_listener(
        listener,
        admin_settings(config),
        move |req, _peer| admin_listener::handle(Arc::clone(&state), req),
        part.token(),
    ));
    part.with(task)
}

/// The admin listener's settings: the Tracking API's with its own, tighter caps (probes
/// and scrapes are short, and held sockets there must not blind monitoring), no TLS.
fn admin_settings(config: &Config) -> gateway::ListenerSettings {
    let server = &config.server;
    let data = data_settings(config, None);
    gateway::ListenerSettings {
        max_connections: server.admin_max_connections,
        header_timeout: data.header_timeout.min(ADMIN_TIMEOUT),
        idle_timeout: data.idle_timeout.min(ADMIN_TIMEOUT),
        max_per_ip: server.admin_max_connections,
        exempt: Vec::new(),
        ..data
    }
}

/// The Tracking API listener's settings.
pub fn data_settings(
    config: &Config,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> gateway::ListenerSettings {
    let server = &config.server;
    gateway::ListenerSettings {
        max_connections: server.max_connections,
        header_timeout: Duration::from_millis(server.header_timeout_ms),
        idle_timeout: Duration::from_millis(server.idle_timeout_ms),
        grace: Duration::from_millis(server.shutdown_grace_ms),
        tls,
        max_header_bytes: server.max_header_bytes,
        max_streams: server.max_streams_per_connection,
        max_per_ip: server.max_connections_per_ip,
        exempt: server.trusted_proxies.clone(),
    }
}

/// Runs the metrics recorder's upkeep (histogram windows) until `stop`.
fn metrics_upkeep(stop: CancellationToken) -> JoinHandle<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(start_paused = true)]
    async fn stopping_a_part_ends_its_tasks_before_it_finishes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut part = Part::new("test");
        let (token, log) = (part.token(), Arc::clone(&seen));
        part = part.with(tokio::spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            log.lock().expect("lock").push("task ended");
        }));
        let log = Arc::clone(&seen);
        part.finish = Some(Box::pin(async move {
            log.lock().expect("lock").push("finished");
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(seen.lock().expect("lock").is_empty(), "ran before stop");
        part.stop().await;
        assert_eq!(*seen.lock().expect("lock"), ["task ended", "finished"]);
    }
}
