//! `control`: the control plane's figures at scale (README, Performance).
//!
//! 1. Fills a store (SQLite file or PostgreSQL) with N sources, K keys each and P plans.
//! 2. Times building the gateway's catalog from it (export + `Snapshot::try_build`).
//! 3. Serves Sluice on it (loopback) and reads the API at a fixed rate: p50 / p99.
//! 4. With tracking traffic running, revokes fresh keys and times the first 401.
//!
//! `cargo run --release -p loadtest --bin control -- --database sqlite` (or a
//! `postgres://…/db` URL of an empty database).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use sluice::catalog::Snapshot;
use sluice::control::store::plans::PlanRow;
use sluice::control::store::sources::SourceRow;
use sluice::control::store::{Store, plans, sources, workspaces};
use sluice::control::{bootstrap, feed, secret};

#[derive(Parser)]
struct Args {
    /// `sqlite` (a file in a temporary directory) or a `postgres://…` URL of an empty database.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Sources.
    #[arg(long, default_value_t = 10_000)]
    sources: usize,
    /// Write keys per source.
    #[arg(long, default_value_t = 2)]
    keys: usize,
    /// Tracking plans (every tenth source follows one).
    #[arg(long, default_value_t = 1_000)]
    plans: usize,
    /// API reads per second.
    #[arg(long, default_value_t = 200)]
    rps: u64,
    /// Seconds of API reads.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Key revocations to time.
    #[arg(long, default_value_t = 20)]
    revocations: usize,
    /// Page size of the list reads (half of the reads list a page, half get one source).
    #[arg(long, default_value_t = 10)]
    page: u32,
    /// Only fill the store and stop (to inspect it).
    #[arg(long)]
    fill_only: bool,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn fill(store: &Store, args: &Args) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut change = store.change().await?;
    let ws = workspaces::create(change.conn(), "Default", "default", now).await?;
    for p in 0..args.plans {
        let plan = PlanRow {
            id: format!("plan-{p}"),
            name: format!("Plan {p}"),
            description: String::new(),
            plan_type: "LIVE".into(),
            rules: serde_json::from_value(json!([{
                "type": "TRACK", "key": "Order Completed", "version": 1,
                "jsonSchema": {"type": "object", "properties": {"properties": {"type": "object",
                    "properties": {"total": {"type": "number"}}, "required": ["total"]}}}
            }]))?,
            published_version: 0,
            created_at: now,
            updated_at: now,
            owner_id: None,
        };
        plans::insert(change.conn(), &ws.id, &plan).await?;
        plans::publish(change.conn(), &plan, "bench", now).await?;
    }
    for s in 0..args.sources {
        let id = format!("src-{s}");
        let row = SourceRow {
            id: id.clone(),
            name: id.clone(),
            metadata_id: String::new(),
            enabled: true,
            rate_per_second: None,
            rate_burst: None,
            tracking_plan_id: (s % 10 == 0 && args.plans > 0)
                .then(|| format!("plan-{}", (s / 10) % args.plans)),
            enforcement: if s % 10 == 0 {
                "warn".into()
            } else {
                "off".into()
            },
            controls: json!({}),
            without_consent: sluice::consent::WithoutConsent::Deliver,
            pii: Vec::new(),
            labels: vec![(
                "environment".into(),
                if s % 2 == 0 { "prod" } else { "dev" }.into(),
            )],
            created_at: now,
            updated_at: now,
        };
        sources::insert(change.conn(), &ws.id, &row).await?;
        for k in 0..args.keys {
            let digest = sluice::catalog::KeyDigest::of(&format!("key-{s}-{k}"));
            sources::add_key(change.conn(), &id, digest, "key-…", "bench", None, now).await?;
        }
    }
    change.commit().await?;
    Ok(())
}

async fn send(client: &reqwest::Client, url: &str, key: &str, n: u64) -> u16 {
    client
        .post(url)
        .basic_auth(key, Some(""))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"userId":"u","event":"Bench","messageId":"bench-{n}"}}"#
        ))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = if args.database == "sqlite" {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("control.db").display()
        )
    } else {
        args.database.clone()
    };
    let key_hex = "07".repeat(32);
    let store = Store::open(&url, secret::Key::load(Some(&key_hex), dir.path())?).await?;
    let started = Instant::now();
    fill(&store, &args).await?;
    eprintln!(
        "filled {} sources, {} keys, {} plans in {:.1} s",
        args.sources,
        args.sources * args.keys,
        args.plans,
        started.elapsed().as_secs_f64()
    );

    // Catalog build: export + installable snapshot, 5 times.
    let mut builds = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (_, doc) = feed::export_all(&store).await?;
        let snapshot = Snapshot::try_build(1, &doc).map_err(|e| anyhow::anyhow!("{e}"))?;
        builds.push(t.elapsed().as_secs_f64() * 1000.0);
        if snapshot.key_count() != args.sources * args.keys {
            bail!("snapshot has {} keys", snapshot.key_count());
        }
    }
    builds.sort_by(f64::total_cmp);
    if args.fill_only {
        let kept = dir.keep();
        println!("{}", kept.display());
        return Ok(());
    }
    eprintln!("catalog builds (ms): {builds:?}");
    let (_, owner) = bootstrap::owner(&store, "bench@example.com", Utc::now()).await?;
    let owner = owner.expose().to_owned();
    store.close().await;

    // Serve Sluice on this store.
    let (data, admin, control) = (free_port()?, free_port()?, free_port()?);
    let mut config = sluice::config::Config::default();
    config.server.listen = data;
    config.server.admin_listen = admin;
    config.control.listen = control;
    config.control.database_url = sluice::config::Secret::new(url.clone());
    config.control.rate_limit_per_minute = 1_000_000;
    config.catalog.path = dir.path().join("none.toml");
    config.catalog.poll_interval_ms = 1000;
    config.log.dir = dir.path().join("log");
    config.log.durability = sluice::config::Durability::Os;
    config.delivery.enabled = false;
    // The revocation loop polls with unknown and revoked keys on purpose.
    config.server.max_key_failures_per_minute = 0;
    std::fs::create_dir_all(&config.log.dir)?;
    std::fs::write(config.log.dir.join("secret.key"), &key_hex)?;
    config.telemetry.log_filter =
        std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn,sqlx=error".into());
    sluice::telemetry::init_tracing(&config.telemetry);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listeners = sluice::Listeners {
        data: tokio::net::TcpListener::bind(data).await?,
        admin: tokio::net::TcpListener::bind(admin).await?,
        control: Some(tokio::net::TcpListener::bind(control).await?),
    };
    let server = tokio::spawn(sluice::serve(config, listeners, shutdown.clone()));
    sluice::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let api = format!("http://{control}/api/v1");
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{api}/"))
        .bearer_auth(&owner)
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("sluice did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // API reads at a fixed rate: a page of 50 sources, or one source.
    let mut reads = Histogram::<u64>::new(3)?;
    let mut tasks = tokio::task::JoinSet::new();
    let total = args.rps * args.seconds;
    let page = args.page;
    let start = tokio::time::Instant::now();
    for n in 0..total {
        tokio::time::sleep_until(start + Duration::from_micros(n * 1_000_000 / args.rps)).await;
        let (client, owner) = (client.clone(), owner.clone());
        let path = if n % 2 == 0 {
            format!("{api}/sources?pagination[count]={page}")
        } else {
            format!("{api}/sources/src-{}", (n * 7919) as usize % args.sources)
        };
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = client
                .get(path)
                .bearer_auth(owner)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (ok, t.elapsed())
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let (ok, took) = done?;
        failed += usize::from(!ok);
        reads.record(took.as_micros() as u64)?;
    }

    // Revocation under tracking traffic.
    let track = format!("http://{data}/v1/track");
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (client, track, running, sent) =
            (client.clone(), track.clone(), running.clone(), sent.clone());
        tokio::spawn(async move {
            // A steady 500 requests/s on another source's key.
            let mut n = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let (client, track, sent) = (client.clone(), track.clone(), sent.clone());
                tokio::spawn(async move {
                    send(&client, &track, "key-1-0", n).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                });
            }
        })
    };
    let mut revokes = Histogram::<u64>::new(3)?;
    for i in 0..args.revocations {
        let source = format!("src-{}", i + 1);
        let made = client
            .post(format!("{api}/sources/{source}/writekey"))
            .bearer_auth(&owner)
            .send()
            .await?
            .bytes()
            .await?;
        let made: Value = serde_json::from_slice(&made)?;
        let key = made["data"]["writeKey"]["key"]
            .as_str()
            .context("key")?
            .to_owned();
        let t = Instant::now();
        while send(&client, &track, &key, 0).await != 200 {
            if t.elapsed() > Duration::from_secs(10) {
                let metrics = client
                    .get(format!("http://{admin}/metrics"))
                    .send()
                    .await?
                    .text()
                    .await?;
                let catalog: Vec<&str> = metrics
                    .lines()
                    .filter(|l| {
                        l.starts_with("sluice_catalog") || l.starts_with("sluice_control_revision")
                    })
                    .collect();
                bail!("new key never accepted: {catalog:#?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = client
            .delete(format!("{api}/sources/{source}/writekey/{key}"))
            .bearer_auth(&owner)
            .send()
            .await?
            .status();
        let t = Instant::now();
        if !status.is_success() {
            bail!("revoke answered {status}");
        }
        let mut n = 0;
        while send(&client, &track, &key, n).await != 401 {
            n += 1;
            if t.elapsed() > Duration::from_secs(10) {
                bail!("revoked key still accepted after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        revokes.record(t.elapsed().as_micros() as u64)?;
    }
    running.store(false, Ordering::Relaxed);
    let _ = traffic.await;
    shutdown.cancel();
    let _ = server.await;

    let db = if args.database == "sqlite" {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "| {db} | {} sources, {} keys, {} plans |",
        args.sources,
        args.sources * args.keys,
        args.plans
    );
    println!("|---|---|");
    println!(
        "| catalog export + build, median of 5 | {:.0} ms (min {:.0}, max {:.0}) |",
        builds[2], builds[0], builds[4]
    );
    println!(
        "| API reads at {} req/s for {} s ({} requests, {failed} failed) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        args.rps,
        args.seconds,
        total,
        ms(&reads, 0.5),
        ms(&reads, 0.99),
        reads.max() as f64 / 1000.0
    );
    println!(
        "| revoke → first 401, {} keys, with {} tracking requests alongside | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
        args.revocations,
        sent.load(Ordering::Relaxed),
        ms(&revokes, 0.5),
        ms(&revokes, 0.99),
        revokes.max() as f64 / 1000.0
    );
    Ok(())
}
