//! The `sluice` command: wires the command line to the library. `serve` is here; the
//! other subcommand families live in `cli/`, one file each.

mod cli;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sluice::config::Config;

/// mimalloc: the request path allocates many small, short-lived objects (JSON values);
/// measured ~15 % of CPU in glibc malloc/free under load before this (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Config file used when `--config` is not given (if it exists).
const DEFAULT_CONFIG: &str = "config/sluice.toml";

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Segment-compatible event ingestion gateway"
)]
struct Cli {
    /// Config file [default: config/sluice.toml if present, else built-in defaults].
    #[arg(long, short, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (Tracking API and admin listener) and, by default, the control plane.
    Serve {
        #[command(flatten)]
        remote: Remote,
        /// `all`: Tracking API and delivery; `gateway`: the Tracking API only (with
        /// log.backend = "jetstream", `sluice deliver` processes deliver).
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// Keep one function loaded and run events through it: requests on stdin, answers
    /// on stdout, a line each (delivery, the data listener and test runs start it; not
    /// for people).
    #[command(hide = true)]
    FunctionHost,
    /// Run only delivery, from the JetStream event log (log.backend = "jetstream"):
    /// start as many as you like, they share each destination's consumer. Metrics and
    /// probes on server.admin_listen.
    Deliver {
        #[command(flatten)]
        remote: Remote,
    },
    /// Load the configuration (file and SLUICE__… variables), check it, and print a
    /// summary; exits non-zero with the reason when it is not valid.
    CheckConfig {
        #[command(flatten)]
        remote: Remote,
    },
    /// Inspect the event log.
    Log {
        #[command(subcommand)]
        command: cli::log::LogCommand,
    },
    /// Events blocked by tracking plans (kept in the event log, never delivered).
    Blocked {
        #[command(subcommand)]
        command: cli::log::BlockedCommand,
    },
    /// Inspect and replay the dead-letter store.
    Dlq {
        #[command(subcommand)]
        command: cli::dlq::DlqCommand,
    },
    /// The control plane: first owner, catalog import/export, explain, audit, API calls.
    Admin {
        #[command(subcommand)]
        command: cli::admin::AdminCommand,
    },
    /// Tools for trying Sluice out.
    Dev {
        #[command(subcommand)]
        command: cli::dev::DevCommand,
    },
}

/// What `sluice serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Tracking API, delivery (and the control plane with catalog.source = "control").
    All,
    /// Tracking API only (and the control plane with catalog.source = "control").
    Gateway,
}

/// Where a process without a store of its own takes its catalog from.
#[derive(clap::Args)]
struct Remote {
    /// Take the catalog from the control plane at this URL (a process without a store
    /// of its own; sets catalog.source = "remote").
    #[arg(long, env = "SLUICE_CONTROL_URL", requires = "node_token")]
    control_url: Option<String>,
    /// The node credential (`slc_node_…`, `POST /api/v1/nodes`) for --control-url.
    #[arg(long, env = "SLUICE_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
    /// This process's name in /api/v1/gateways [default: the host name].
    #[arg(long)]
    node_name: Option<String>,
}

impl Remote {
    /// Applies the flags to the configuration.
    fn apply(self, config: &mut Config) {
        if let (Some(url), Some(token)) = (self.control_url, self.node_token) {
            config.catalog.source = sluice::config::CatalogSourceKind::Remote;
            config.catalog.control_url = url;
            config.catalog.node_token = sluice::config::Secret::new(token);
        }
        if let Some(name) = self.node_name {
            config.catalog.node_name = name;
        }
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let default = Path::new(DEFAULT_CONFIG);
    let path = path.or_else(|| default.exists().then_some(default));
    Config::load(path).with_context(|| {
        format!(
            "loading configuration from {}",
            path.map_or("defaults".into(), |p| p.display().to_string())
        )
    })
}

fn main() -> anyhow::Result<()> {
    // Before any subcommand: every one that builds an HTTP client needs it.
    sluice::tls::install_crypto_provider();
    let cli = Cli::parse();
    // Children of the control plane and of delivery: no configuration, no environment.
    if matches!(cli.command, Command::FunctionHost) {
        return sluice::functions::host::serve_stdio();
    }
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        // Answered above, before any configuration is read.
        Command::FunctionHost => sluice::functions::host::serve_stdio(),
        Command::Serve { remote, role } => {
            let mut config = config;
            remote.apply(&mut config);
            if role == Role::Gateway {
                config.delivery.enabled = false;
            }
            serve(config)
        }
        Command::Deliver { remote } => {
            let mut config = config;
            remote.apply(&mut config);
            deliver(config)
        }
        Command::CheckConfig { remote } => {
            let mut config = config;
            remote.apply(&mut config);
            println!(
                "configuration is valid: Tracking API {}, admin {}, catalog from {:?}, event log {:?}{}",
                config.server.listen,
                config.server.admin_listen,
                config.catalog.source,
                config.log.backend,
                match config.log.backend {
                    sluice::config::LogBackend::Local =>
                        format!(" in {}", config.log.dir.display()),
                    sluice::config::LogBackend::Jetstream => format!(
                        " (stream {} at {}, {} replicas)",
                        config.log.jetstream.stream,
                        config.log.jetstream.url,
                        config.log.jetstream.replicas
                    ),
                }
            );
            Ok(())
        }
        Command::Log { command } => cli::log::run(&config, command),
        Command::Blocked { command } => cli::log::run_blocked(&config, command),
        Command::Dlq { command } => cli::dlq::run(&config, command),
        Command::Admin { command } => cli::admin::run(&config, command),
        Command::Dev { command } => cli::dev::run(command),
    }
}

/// Logging as `config` says, and the multi-threaded runtime the long-running commands use.
fn runtime_for(config: &Config) -> anyhow::Result<tokio::runtime::Runtime> {
    sluice::telemetry::init_tracing(&config.telemetry);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = runtime_for(&config)?;
    runtime.block_on(async move {
        let data = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let admin = TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| format!("binding admin {}", config.server.admin_listen))?;
        let control = match config.catalog.source {
            sluice::config::CatalogSourceKind::Control => Some(
                TcpListener::bind(config.control.listen)
                    .await
                    .with_context(|| format!("binding control {}", config.control.listen))?,
            ),
            sluice::config::CatalogSourceKind::File | sluice::config::CatalogSourceKind::Remote => {
                None
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let listeners = sluice::Listeners {
            data,
            admin,
            control,
        };
        sluice::serve(config, listeners, shutdown).await?;
        Ok(())
    })
}

fn deliver(config: Config) -> anyhow::Result<()> {
    let runtime = runtime_for(&config)?;
    runtime.block_on(async move {
        let admin = TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| format!("binding admin {}", config.server.admin_listen))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        sluice::deliver(config, admin, shutdown).await?;
        Ok(())
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
