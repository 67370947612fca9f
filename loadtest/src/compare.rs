//! Baselines and Sluice configurations under the same load, back to back.
//!
//! Each scenario starts its server pinned to core 0 and the generator pinned to
//! core 1 (`taskset`), runs for a fixed time, and stops the server. Scenarios are
//! interleaved across repetitions (A B C, A B C, …) so slow phases of a noisy machine
//! spread over all of them; the table reports medians and ratios to the baselines
//! measured in the same run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::payload::RouteKind;
use crate::report::Report;

/// Write key the compare command's Sluice accepts.
const KEY: &str = "compare-write-key";

/// Server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Server {
    /// Bare hyper, body read, 200.
    Baseline,
    /// Bare hyper plus simd-json parse.
    BaselineParse,
    /// Sluice with durability `os`.
    SluiceOs,
    /// Sluice with durability `fsync`.
    SluiceFsync,
    /// Sluice (`os`) validating against a tracking plan, enforcement `warn`.
    SluiceWarn,
    /// Sluice (`os`) validating against a tracking plan, enforcement `block`.
    SluiceBlock,
    /// Sluice with the event log on NATS JetStream (R=1, file storage).
    SluiceJetStream,
    /// Publishing to JetStream without Sluice: the stream's ceiling on this machine.
    BaselineJetStream,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::BaselineParse => "baseline --parse",
            Self::SluiceOs => "sluice (os)",
            Self::SluiceFsync => "sluice (fsync)",
            Self::SluiceWarn => "sluice (os, plan: warn)",
            Self::SluiceBlock => "sluice (os, plan: block)",
            Self::SluiceJetStream => "sluice (jetstream R=1)",
            Self::BaselineJetStream => "baseline jetstream publish",
        }
    }
}

/// Compare settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repetitions of every scenario.
    pub runs: usize,
    /// Seconds per run.
    pub seconds: f64,
    /// Connections for single-event scenarios.
    pub connections: usize,
    /// Connections for batch scenarios.
    pub batch_connections: usize,
    /// Events per batch.
    pub batch_size: usize,
    /// The `sluice` binary (release build).
    pub sluice: PathBuf,
    /// This binary (for `baseline` and `run` children).
    pub itself: PathBuf,
    /// Scratch directory on the disk under test.
    pub work: PathBuf,
    /// NATS URL for the JetStream scenarios (empty: skipped).
    pub nats: String,
    /// Only scenarios whose name contains one of these (empty: all).
    pub only: Vec<String>,
    /// The fixed payload instead of the realistic ones.
    pub fixed: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Measured {
    scenario: String,
    server: Server,
    route: RouteKind,
    requests_per_sec: f64,
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mb: f64,
    non_200: u64,
    /// The server process's own CPU time (user + system, from `/proc`) per event
    /// answered 200, microseconds (0 where not measured).
    cpu_us_per_event: f64,
}

/// Runs everything and prints the table; returns it as markdown.
pub fn run(o: &Options) -> anyhow::Result<String> {
    let pinned = Command::new("taskset").arg("-V").output().is_ok();
    if !pinned {
        eprintln!("warning: taskset not found; server and generator are not pinned");
    }
    std::fs::create_dir_all(&o.work)?;
    let (fsync_p50, fsync_p99) = crate::probe::fsync_latency(&o.work, 300)?;
    eprintln!("disk fsync latency: p50 {fsync_p50:.3} ms, p99 {fsync_p99:.3} ms");

    let scenarios: Vec<(String, Server, RouteKind)> = [
        (Server::Baseline, RouteKind::Track),
        (Server::BaselineParse, RouteKind::Track),
        (Server::SluiceOs, RouteKind::Track),
        (Server::SluiceFsync, RouteKind::Track),
        (Server::SluiceWarn, RouteKind::Track),
        (Server::SluiceBlock, RouteKind::Track),
        (Server::BaselineJetStream, RouteKind::Track),
        (Server::SluiceJetStream, RouteKind::Track),
        (Server::BaselineParse, RouteKind::Batch),
        (Server::SluiceOs, RouteKind::Batch),
        (Server::SluiceFsync, RouteKind::Batch),
        (Server::SluiceWarn, RouteKind::Batch),
        (Server::BaselineJetStream, RouteKind::Batch),
        (Server::SluiceJetStream, RouteKind::Batch),
    ]
    .into_iter()
    .map(|(s, r)| {
        (
            format!("{} {}", route_label(r, o.batch_size), s.label()),
            s,
            r,
        )
    })
    .filter(|(name, server, _)| {
        (o.only.is_empty() || o.only.iter().any(|w| name.contains(w.as_str())))
            && (!matches!(server, Server::SluiceJetStream | Server::BaselineJetStream)
                || !o.nats.is_empty())
    })
    .collect();
    if o.nats.is_empty() {
        eprintln!("--nats \"\": JetStream scenarios skipped");
    }

    let mut all: Vec<Vec<Measured>> = vec![Vec::new(); scenarios.len()];
    for rep in 0..o.runs {
        for (i, (name, server, route)) in scenarios.iter().enumerate() {
            eprintln!("run {}/{}: {name}", rep + 1, o.runs);
            let m = measure(o, name, *server, *route, pinned)
                .with_context(|| format!("scenario {name}"))?;
            eprintln!(
                "  {:.0} req/s, {:.0} events/s, p99 {:.2} ms, rss {:.1} MB",
                m.requests_per_sec, m.events_per_sec, m.p99_ms, m.rss_mb
            );
            all[i].push(m);
        }
    }
    let medians: Vec<Measured> = all.iter().map(|runs| median(runs)).collect();
    let table = table(&medians, o, fsync_p50, fsync_p99);
    let json = serde_json::json!({
        "runs": o.runs, "seconds": o.seconds, "connections": o.connections,
        "fsync_ms": { "p50": fsync_p50, "p99": fsync_p99 },
        "medians": medians, "all": all,
    });
    std::fs::write(
        o.work.join("compare.json"),
        serde_json::to_vec_pretty(&json)?,
    )?;
    Ok(table)
}

fn route_label(route: RouteKind, batch: usize) -> String {
    match route {
        RouteKind::Track => "/v1/track".to_owned(),
        RouteKind::Mix => "/v1/{t,p,i}".to_owned(),
        RouteKind::Batch => format!("/v1/batch x{batch}"),
    }
}

fn median(runs: &[Measured]) -> Measured {
    let pick = |f: &dyn Fn(&Measured) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut m = runs[0].clone();
    m.requests_per_sec = pick(&|m| m.requests_per_sec);
    m.events_per_sec = pick(&|m| m.events_per_sec);
    m.p50_ms = pick(&|m| m.p50_ms);
    m.p99_ms = pick(&|m| m.p99_ms);
    m.rss_mb = pick(&|m| m.rss_mb);
    m.cpu_us_per_event = pick(&|m| m.cpu_us_per_event);
    m.non_200 = runs.iter().map(|m| m.non_200).max().unwrap_or(0);
    m
}

fn table(rows: &[Measured], o: &Options, fsync_p50: f64, fsync_p99: f64) -> String {
    let find = |server: Server, route: RouteKind| {
        rows.iter().find(|m| m.server == server && m.route == route)
    };
    let mut out = format!(
        "{} runs of {:.0} s each, medians; server on core 0, generator on core 1; {} connections (batches: {}).\n\
         Payload: {}.\n\
         Disk fsync latency (same run): p50 {:.3} ms, p99 {:.3} ms.\n\n\
         | scenario | req/s | events/s | p50 ms | p99 ms | RSS MB | server CPU µs/event | vs baseline | vs baseline --parse |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        o.runs,
        o.seconds,
        o.connections,
        o.batch_connections,
        if o.fixed {
            format!(
                "fixed, the same {} B track event in every request (`--fixed`)",
                crate::payload::FIXED_EVENT.len()
            )
        } else {
            "realistic analytics.js-shaped events (~800 B alone, ~700 B in batches)".to_owned()
        },
        fsync_p50,
        fsync_p99
    );
    for m in rows {
        let base = find(Server::Baseline, m.route);
        let parse = find(Server::BaselineParse, m.route);
        let ratio = |b: Option<&Measured>| {
            b.map_or("".to_owned(), |b| {
                let (num, den) = if m.route == RouteKind::Batch {
                    (m.events_per_sec, b.events_per_sec)
                } else {
                    (m.requests_per_sec, b.requests_per_sec)
                };
                format!("{:.0} %", 100.0 * num / den.max(1e-9))
            })
        };
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} |{}\n",
            m.scenario,
            m.requests_per_sec,
            m.events_per_sec,
            m.p50_ms,
            m.p99_ms,
            m.rss_mb,
            if m.cpu_us_per_event > 0.0 {
                format!("{:.2}", m.cpu_us_per_event)
            } else {
                String::new()
            },
            ratio(base),
            ratio(parse),
            if m.non_200 > 0 {
                format!(" ({} non-200)", m.non_200)
            } else {
                String::new()
            }
        ));
    }
    for route in [RouteKind::Track, RouteKind::Batch] {
        if let (Some(os), Some(js)) = (
            find(Server::SluiceOs, route),
            find(Server::SluiceJetStream, route),
        ) {
            out.push_str(&format!(
                "\njetstream vs os ({}): {:.0} % of the events/s; p99 {:.2} ms vs {:.2} ms.\n",
                route_label(route, o.batch_size),
                100.0 * js.events_per_sec / os.events_per_sec.max(1e-9),
                js.p99_ms,
                os.p99_ms
            ));
            if os.cpu_us_per_event > 0.0 {
                out.push_str(&format!(
                    "Sluice's own CPU per event ({}): {:.2} µs on JetStream vs {:.2} µs on the local log, {:.2}× (target ≤ 1.15×).\n",
                    route_label(route, o.batch_size),
                    js.cpu_us_per_event,
                    os.cpu_us_per_event,
                    js.cpu_us_per_event / os.cpu_us_per_event
                ));
            }
            if let Some(bare) = find(Server::BaselineJetStream, route) {
                out.push_str(&format!(
                    "jetstream vs bare JetStream publishing ({}): {:.0} % of the events/s.\n",
                    route_label(route, o.batch_size),
                    100.0 * js.events_per_sec / bare.events_per_sec.max(1e-9),
                ));
            }
        }
    }
    if let (Some(os), Some(fs), Some(base)) = (
        find(Server::SluiceOs, RouteKind::Track),
        find(Server::SluiceFsync, RouteKind::Track),
        find(Server::Baseline, RouteKind::Track),
    ) {
        out.push_str(&format!(
            "\nfsync vs os (/v1/track): {:.0} % of the throughput; fsync p99 {:.2} ms vs bound (disk fsync p99 + baseline p99) {:.2} ms.\n",
            100.0 * fs.requests_per_sec / os.requests_per_sec.max(1e-9),
            fs.p99_ms,
            fsync_p99 + base.p99_ms
        ));
    }
    out
}

/// A tracking plan that the generator's events satisfy: typed, with an enum and
/// required properties (the padding properties are listed too, so every event is clean).
fn plan() -> String {
    let padding: Vec<String> = (0..64)
        .map(|n| format!("attr_{n} = {{ type = \"string\" }}"))
        .collect();
    let track = format!(
        "{{ type = \"object\", properties = {{ properties = {{ type = \"object\", required = [\"product_id\", \"price\"], properties = {{ product_id = {{ type = \"string\" }}, name = {{ type = \"string\" }}, price = {{ type = \"number\", minimum = 0 }}, currency = {{ type = \"string\", enum = [\"EUR\", \"USD\"] }}, quantity = {{ type = \"integer\" }}, {} }} }} }} }}",
        padding.join(", ")
    );
    format!(
        "[[tracking_plans]]\nid = \"load\"\n[[tracking_plans.rules]]\ntype = \"TRACK\"\nkey = \"Product Viewed\"\njsonSchema = {track}\n\
         [[tracking_plans.rules]]\ntype = \"COMMON\"\njsonSchema = {{ type = \"object\", required = [\"type\", \"messageId\"] }}\n"
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn pinned_command(pinned: bool, core: &str, program: &Path) -> Command {
    if pinned {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(core).arg(program);
        c
    } else {
        Command::new(program)
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure(
    o: &Options,
    name: &str,
    server: Server,
    route: RouteKind,
    pinned: bool,
) -> anyhow::Result<Measured> {
    if server == Server::BaselineJetStream {
        return measure_jetstream_baseline(o, name, route, pinned);
    }
    let port = free_port()?;
    let dir = o.work.join("server");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut cmd = match server {
        Server::Baseline | Server::BaselineParse => {
            let mut c = pinned_command(pinned, "0", &o.itself);
            c.args(["baseline", "--listen", &format!("127.0.0.1:{port}")]);
            if server == Server::BaselineParse {
                c.arg("--parse");
            }
            c
        }
        Server::BaselineJetStream => bail!("measured apart"),
        Server::SluiceOs
        | Server::SluiceFsync
        | Server::SluiceWarn
        | Server::SluiceBlock
        | Server::SluiceJetStream => {
            let durability = if server == Server::SluiceFsync {
                "fsync"
            } else {
                "os"
            };
            let enforcement = match server {
                Server::SluiceWarn => "warn",
                Server::SluiceBlock => "block",
                _ => "off",
            };
            std::fs::write(
                dir.join("catalog.toml"),
                format!(
                    "{}[[sources]]\nid = \"compare\"\nwrite_keys = [{{ key = \"{KEY}\" }}]\ntracking_plan = \"load\"\nenforcement = \"{enforcement}\"\n",
                    plan()
                ),
            )?;
            let jetstream = if server == Server::SluiceJetStream {
                // A stream of its own per run, deleted afterwards.
                format!(
                    "backend = \"jetstream\"\n[log.jetstream]\nurl = \"{}\"\nstream = \"{}\"\nsubject_prefix = \"{}\"\n",
                    o.nats,
                    stream_name(port),
                    format_args!("sluice_compare.p{port}"),
                )
            } else {
                String::new()
            };
            let config = format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{}\"\n\
                 [catalog]\nsource = \"file\"\npath = \"{}\"\n\
                 [telemetry]\nlog_filter = \"warn\"\n\
                 [log]\ndir = \"{}\"\ndurability = \"{durability}\"\n{jetstream}",
                free_port()?,
                dir.join("catalog.toml").display(),
                dir.join("log").display()
            );
            std::fs::write(dir.join("sluice.toml"), config)?;
            let mut c = pinned_command(pinned, "0", &o.sluice);
            c.arg("--config").arg(dir.join("sluice.toml")).arg("serve");
            c
        }
    };
    let child = Running(
        cmd.stdout(Stdio::null())
            .spawn()
            .context("starting the server")?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = o.work.join("report.json");
    let connections = if route == RouteKind::Batch {
        o.batch_connections
    } else {
        o.connections
    };
    let mut generator = pinned_command(pinned, "1", &o.itself);
    generator
        .args([
            "run",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--connections",
            &connections.to_string(),
            "--seconds",
            &o.seconds.to_string(),
            "--route",
            match route {
                RouteKind::Track => "track",
                RouteKind::Mix => "mix",
                RouteKind::Batch => "batch",
            },
            "--batch-size",
            &o.batch_size.to_string(),
            "--key",
            KEY,
            "--quiet",
            "--json-out",
        ])
        .arg(&out);
    if o.fixed {
        generator.arg("--fixed");
    }
    let cpu_before = cpu_seconds(child.0.id());
    let status = generator
        .stdout(Stdio::null())
        .status()
        .context("running the generator")?;
    if !status.success() {
        bail!("generator failed: {status}");
    }
    let rss_mb = rss_mb(child.0.id());
    let cpu = cpu_seconds(child.0.id()) - cpu_before;
    drop(child);
    if server == Server::SluiceJetStream {
        delete_stream(&o.nats, &stream_name(port));
    }
    let report: Report = serde_json::from_slice(&std::fs::read(&out)?)?;
    let non_200 = report
        .statuses
        .iter()
        .filter(|(s, _)| **s != 200)
        .map(|(_, n)| n)
        .sum::<u64>()
        + report.errors;
    Ok(Measured {
        scenario: name.to_owned(),
        server,
        route,
        requests_per_sec: report.requests_per_sec,
        events_per_sec: report.events_per_sec,
        p50_ms: report.latency_ms.p50,
        p99_ms: report.latency_ms.p99,
        rss_mb,
        non_200,
        cpu_us_per_event: 1e6 * cpu / (report.events_ok.max(1) as f64),
    })
}

/// The JetStream baseline in place of the server, pinned where the server would be (the
/// generator's core stays free, as NATS shares both cores in the Sluice scenario too).
fn measure_jetstream_baseline(
    o: &Options,
    name: &str,
    route: RouteKind,
    pinned: bool,
) -> anyhow::Result<Measured> {
    let out = o.work.join("report.json");
    let (tasks, batch) = if route == RouteKind::Batch {
        (o.batch_connections, o.batch_size)
    } else {
        (o.connections, 1)
    };
    let mut c = pinned_command(pinned, "0", &o.itself);
    c.args([
        "jetstream-baseline",
        "--url",
        &o.nats,
        "--stream",
        &stream_name(free_port()?),
        "--seconds",
        &o.seconds.to_string(),
        "--connections",
        &tasks.to_string(),
        "--batch-size",
        &batch.to_string(),
        "--event-bytes",
        // The generator's events are ~700 B in batches, ~800 B alone.
        if route == RouteKind::Batch {
            "700"
        } else {
            "800"
        },
        "--json-out",
    ])
    .arg(&out);
    let status = c
        .stdout(Stdio::null())
        .status()
        .context("running the JetStream baseline")?;
    if !status.success() {
        bail!("JetStream baseline failed: {status}");
    }
    let report: Report = serde_json::from_slice(&std::fs::read(&out)?)?;
    Ok(Measured {
        scenario: name.to_owned(),
        server: Server::BaselineJetStream,
        route,
        requests_per_sec: report.requests_per_sec,
        events_per_sec: report.events_per_sec,
        p50_ms: report.latency_ms.p50,
        p99_ms: report.latency_ms.p99,
        rss_mb: 0.0,
        non_200: report.errors,
        cpu_us_per_event: 0.0,
    })
}

fn stream_name(port: u16) -> String {
    format!("SLUICE_COMPARE_{port}")
}

/// Deletes a run's stream (best effort: a leftover one only takes disk space).
fn delete_stream(url: &str, stream: &str) {
    let deleted = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let client = async_nats::connect(url).await?;
                async_nats::jetstream::new(client)
                    .delete_stream(stream)
                    .await?;
                Ok(())
            })
        });
    if let Err(error) = deleted {
        eprintln!("warning: could not delete JetStream stream {stream}: {error}");
    }
}

/// CPU time a process has used so far, user + system, seconds (0 where /proc is not
/// available).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' come state (field 3) …; utime and stime are fields 14 and 15.
    let ticks = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    match (ticks(14), ticks(15)) {
        (Some(user), Some(system)) => (user + system) / clock_ticks_per_second(),
        _ => 0.0,
    }
}

/// The kernel's clock ticks per second for `/proc` times (`getconf CLK_TCK`; 100 on
/// Linux unless told otherwise).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Resident set of a process in MB (0 where /proc is not available).
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
