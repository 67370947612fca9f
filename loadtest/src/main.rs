//! `loadtest`: load generator, baselines, compare. See loadtest/README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use loadtest::generator::{self, Pace, Settings};
use loadtest::payload::{RouteKind, Workload};

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Load generator and baselines for Sluice (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send load to a server and report.
    Run(RunArgs),
    /// Serve the bare-hyper baseline.
    Baseline {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8181")]
        listen: SocketAddr,
        /// Also parse each body with simd-json.
        #[arg(long)]
        parse: bool,
    },
    /// Baselines and Sluice back to back; prints a markdown table.
    Compare {
        /// Repetitions of each scenario (medians are reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Connections for single-event scenarios.
        #[arg(long, default_value_t = 256)]
        connections: usize,
        /// Connections for batch scenarios.
        #[arg(long, default_value_t = 32)]
        batch_connections: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// The sluice binary.
        #[arg(long, default_value = "target/release/sluice")]
        sluice: PathBuf,
        /// Scratch directory (on the disk to measure).
        #[arg(long, default_value = "target/loadtest")]
        work: PathBuf,
        /// NATS JetStream for the `jetstream` scenarios ("" skips them).
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// Run only the scenarios whose name contains this text (repeatable), e.g.
        /// `--only batch` or `--only jetstream --only "(os)"`.
        #[arg(long)]
        only: Vec<String>,
        /// Send the fixed payload (the same small event in every request, as `wrk`
        /// sends) instead of the realistic ones.
        #[arg(long)]
        fixed: bool,
    },
    /// The JetStream ceiling: publish to a stream of its own without Sluice (each round
    /// publishes --batch-size messages with Nats-Msg-Id and awaits their acks).
    JetstreamBaseline {
        /// NATS URL (loopback only).
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        url: String,
        /// Stream to create and delete afterwards.
        #[arg(long, default_value = "SLUICE_BASELINE")]
        stream: String,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent publishers.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Messages per round.
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Bytes per message.
        #[arg(long, default_value_t = 800)]
        event_bytes: usize,
        /// NATS connections to spread the publishers over.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Also write the report as JSON here.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
    /// Measure the disk's write+fdatasync latency.
    FsyncProbe {
        /// Directory on the disk to measure.
        #[arg(long, default_value = "target/loadtest")]
        dir: PathBuf,
        /// Rounds.
        #[arg(long, default_value_t = 500)]
        count: u32,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: SocketAddr,
    /// Connections (closed loop: concurrent requests).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Open loop at this many requests/s (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many seconds (at most 900).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop after this many requests.
    #[arg(long, default_value_t = 10_000_000)]
    requests: u64,
    /// Request shape.
    #[arg(long, value_enum, default_value_t = RouteKind::Track)]
    route: RouteKind,
    /// Events per batch (with --route batch).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Approximate bytes per event (300 to 2000).
    #[arg(long, default_value_t = 800)]
    event_bytes: usize,
    /// Write key (repeat for several).
    #[arg(long = "key", default_values_t = ["demo-write-key".to_owned()])]
    keys: Vec<String>,
    /// gzip request bodies.
    #[arg(long)]
    gzip: bool,
    /// Share of events without user ids (0..1).
    #[arg(long, default_value_t = 0.0)]
    invalid_share: f64,
    /// Share of requests with a wrong write key (0..1).
    #[arg(long, default_value_t = 0.0)]
    wrong_key_share: f64,
    /// HTTP/2 (prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// The same small body in every request (the server mints messageIds), as `wrk`
    /// sends: figures comparable with other servers' published numbers.
    #[arg(long)]
    fixed: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(a) => {
            let settings = Settings {
                target: a.target,
                connections: a.connections.max(1),
                pace: a.rate.map_or(Pace::Closed, |rate| Pace::Open { rate }),
                duration: Duration::from_secs_f64(a.seconds.max(0.0)),
                max_requests: a.requests,
                http2: a.http2,
                workload: Workload {
                    route: a.route,
                    batch_size: a.batch_size.max(1),
                    keys: a.keys,
                    gzip: a.gzip,
                    invalid_share: a.invalid_share,
                    wrong_key_share: a.wrong_key_share,
                    event_bytes: a.event_bytes.clamp(300, 2000),
                    fixed: a.fixed,
                },
                progress: !a.quiet,
            };
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(generator::run(settings))?;
            println!("{}", report.text());
            if let Some(path) = a.json_out {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Cmd::Baseline { listen, parse } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                eprintln!(
                    "baseline{} listening on {listen}",
                    if parse { " --parse" } else { "" }
                );
                loadtest::baseline::serve(listener, parse).await;
                Ok(())
            })
        }
        Cmd::Compare {
            runs,
            seconds,
            connections,
            batch_connections,
            batch_size,
            sluice,
            work,
            nats,
            only,
            fixed,
        } => {
            let options = loadtest::compare::Options {
                runs: runs.max(1),
                seconds,
                connections,
                batch_connections,
                batch_size,
                sluice,
                itself: std::env::current_exe()?,
                work,
                nats,
                only,
                fixed,
            };
            let table = loadtest::compare::run(&options)?;
            println!("{table}");
            Ok(())
        }
        Cmd::JetstreamBaseline {
            url,
            stream,
            seconds,
            connections,
            batch_size,
            event_bytes,
            clients,
            json_out,
        } => {
            if !url.contains("127.0.0.1") && !url.contains("[::1]") && !url.contains("localhost") {
                anyhow::bail!("the JetStream baseline only talks to a loopback NATS ({url})");
            }
            let options = loadtest::jetstream_baseline::Options {
                url,
                stream,
                seconds,
                tasks: connections.max(1),
                batch: batch_size.max(1),
                bytes: event_bytes,
                clients,
            };
            let report = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(loadtest::jetstream_baseline::run(&options))?;
            println!("{}", report.text());
            if let Some(path) = json_out {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(())
        }
        Cmd::FsyncProbe { dir, count } => {
            let (p50, p99) = loadtest::probe::fsync_latency(&dir, count)?;
            println!("write+fdatasync of 512 B: p50 {p50:.3} ms, p99 {p99:.3} ms ({count} rounds)");
            Ok(())
        }
    }
}
