//! The `sluice` command: wires the command line to the library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Run the gateway (Tracking API and admin listener).
    Serve,
    /// Inspect the event log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print the newest stored events as pretty JSON.
    Tail {
        /// How many of the newest events.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// Keep printing events as they arrive.
        #[arg(short, long)]
        follow: bool,
        /// One compact JSON object per line (for scripts) instead of pretty JSON.
        #[arg(long)]
        ndjson: bool,
    },
    /// Print segment, record and byte counts as JSON.
    Stats,
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
    let cli = Cli::parse();
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Log { command } => match command {
            LogCommand::Tail {
                lines,
                follow,
                ndjson,
            } => tail(&config, lines, follow, ndjson),
            LogCommand::Stats => {
                let stats = sluice::log::stats(&config.log.dir)
                    .with_context(|| format!("reading {}", config.log.dir.display()))?;
                println!("{}", serde_json::to_string_pretty(&stats)?);
                Ok(())
            }
        },
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    sluice::telemetry::init_tracing(&config.telemetry);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let data = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let admin = TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| format!("binding admin {}", config.server.admin_listen))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        sluice::serve(config, sluice::Listeners { data, admin }, shutdown).await?;
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

fn tail(config: &Config, lines: u64, follow: bool, ndjson: bool) -> anyhow::Result<()> {
    let dir = &config.log.dir;
    let stats = sluice::log::stats(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut from = stats
        .next_offset
        .saturating_sub(lines)
        .max(stats.first_offset);
    let stdout = std::io::stdout();
    loop {
        let reader = sluice::log::Reader::open(dir, from)?;
        for item in reader {
            let (offset, payload) = item?;
            let entry = match serde_json::from_slice::<serde_json::Value>(&payload) {
                Ok(record) => serde_json::json!({"offset": offset, "record": record}),
                Err(_) => serde_json::json!({"offset": offset, "undecodable": true}),
            };
            let text = if ndjson {
                serde_json::to_string(&entry)?
            } else {
                serde_json::to_string_pretty(&entry)?
            };
            let mut out = stdout.lock();
            writeln!(out, "{text}")?;
            from = offset + 1;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
