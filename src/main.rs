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
    /// Events blocked by tracking plans (kept in the event log, never delivered).
    Blocked {
        #[command(subcommand)]
        command: BlockedCommand,
    },
    /// Inspect and replay the dead-letter store.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Tools for trying Sluice out.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Subcommand)]
enum BlockedCommand {
    /// Print blocked events (NDJSON: offset, source, reason, violations, event).
    List {
        /// Only this source's.
        #[arg(long)]
        source: Option<String>,
        /// At most this many of the newest.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Dead letters per destination, or one destination's entries as NDJSON.
    List {
        /// Print this destination's entries.
        destination: Option<String>,
    },
    /// Send a destination's dead letters again (asks the running server's admin listener).
    Replay {
        /// Destination id.
        destination: String,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// A webhook receiver that prints every request body it gets and answers 200.
    Receiver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: std::net::SocketAddr,
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
        Command::Dlq { command } => dlq(&config, command),
        Command::Blocked {
            command: BlockedCommand::List { source, lines },
        } => blocked(&config, source.as_deref(), lines),
        Command::Dev {
            command: DevCommand::Receiver { listen },
        } => receiver(listen),
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

fn blocked(config: &Config, source: Option<&str>, lines: usize) -> anyhow::Result<()> {
    let mut found = std::collections::VecDeque::new();
    for item in sluice::log::Reader::open(&config.log.dir, 0)? {
        let (offset, payload) = item?;
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        if record.get("blocked").is_none() || source.is_some_and(|s| record["sourceId"] != s) {
            continue;
        }
        found.push_back(serde_json::json!({"offset": offset, "record": record}));
        if found.len() > lines {
            found.pop_front();
        }
    }
    for entry in found {
        println!("{entry}");
    }
    Ok(())
}

fn dlq(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    let dir = sluice::delivery::dead_letter_dir(&config.log.dir);
    match command {
        DlqCommand::List { destination: None } => {
            let list = sluice::delivery::dead_letter::list(&dir)?;
            if list.is_empty() {
                println!("no dead letters in {}", dir.display());
            }
            for s in list {
                if s.unreadable > 0 {
                    println!(
                        "{}\t{}\t({} unreadable lines kept in the file)",
                        s.destination, s.entries, s.unreadable
                    );
                } else {
                    println!("{}\t{}", s.destination, s.entries);
                }
            }
        }
        DlqCommand::List {
            destination: Some(id),
        } => {
            let contents = sluice::delivery::dead_letter::read(&dir, &id)?;
            for e in contents.entries {
                println!("{}", serde_json::to_string(&e)?);
            }
            for line in &contents.unreadable {
                eprintln!("unreadable (kept in the file): {line}");
            }
        }
        DlqCommand::Replay { destination } => {
            let url = format!(
                "http://{}/dlq/{destination}/replay",
                config.server.admin_listen
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let text = runtime.block_on(async {
                let mut request = reqwest::Client::new().post(&url);
                if let Some(token) = &config.server.admin_token {
                    request = request.bearer_auth(token.expose());
                }
                let response = request.send().await.with_context(|| {
                    format!("asking the running server at {url} (is it running?)")
                })?;
                let status = response.status();
                let text = response.text().await?;
                anyhow::ensure!(status.is_success(), "replay refused ({status}): {text}");
                Ok::<_, anyhow::Error>(text)
            })?;
            println!("{text}");
        }
    }
    Ok(())
}

/// `sluice dev receiver`: prints each request's body (one line) and answers 200.
fn receiver(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use http_body_util::BodyExt as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        eprintln!("receiver listening on http://{listen}/ (Ctrl-C to stop)");
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let signature = req
                            .headers()
                            .get("x-signature")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let mut out = std::io::stdout().lock();
                        let _ = match signature {
                            Some(sig) => {
                                writeln!(out, "{} [{sig}]", String::from_utf8_lossy(&body))
                            }
                            None => writeln!(out, "{}", String::from_utf8_lossy(&body)),
                        };
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"{\"ok\":true}")),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
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
