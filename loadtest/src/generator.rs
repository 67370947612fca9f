//! Sending load: closed loop (N connections as fast as they can) or open loop
//! (a constant arrival rate; latency measured from each request's intended start,
//! so a stalled server is charged for the requests it delayed: no coordinated
//! omission). Bounded by a request count and a duration; loopback targets only.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::payload::{Generator, Templates, Workload};
use crate::report::Report;

/// Longest run allowed.
pub const MAX_DURATION: Duration = Duration::from_secs(900);

/// How requests are paced.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub enum Pace {
    /// Each connection sends its next request when the previous one is answered.
    Closed,
    /// Requests start at this many per second in total, whatever the answers do.
    Open {
        /// Target requests per second.
        rate: f64,
    },
}

/// A run's settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Target address (loopback only).
    pub target: SocketAddr,
    /// Connections (each its own worker).
    pub connections: usize,
    /// Pacing.
    pub pace: Pace,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many requests.
    pub max_requests: u64,
    /// Speak HTTP/2 (prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// What to send.
    pub workload: Workload,
    /// Print a progress line every second (to stderr).
    pub progress: bool,
}

/// Why a run could not start.
#[derive(Debug)]
pub enum RunError {
    /// Not a loopback address.
    NotLoopback(IpAddr),
    /// Over the bounds.
    Unbounded,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotLoopback(ip) => write!(
                f,
                "refusing to load {ip}: only loopback targets are allowed"
            ),
            Self::Unbounded => write!(f, "duration must be at most {}s", MAX_DURATION.as_secs()),
        }
    }
}

impl std::error::Error for RunError {}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
}

struct Tally {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    events_ok: u64,
    bytes: u64,
    errors: u64,
    requests: u64,
}

/// Runs the load and reports.
pub async fn run(settings: Settings) -> Result<Report, RunError> {
    if !settings.target.ip().is_loopback() {
        return Err(RunError::NotLoopback(settings.target.ip()));
    }
    if settings.duration > MAX_DURATION {
        return Err(RunError::Unbounded);
    }
    let settings = Arc::new(settings);
    let counters = Arc::new(Counters::default());
    let tickets = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let progress_started = Instant::now();
    let progress = settings.progress.then(|| {
        let (counters, stop) = (Arc::clone(&counters), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = counters.requests.load(Ordering::Relaxed);
                eprintln!(
                    "  t={:>4.0}s requests={now:>9} rps={:>8} errors={}",
                    progress_started.elapsed().as_secs_f64(),
                    now - last,
                    counters.errors.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    });
    let templates = Arc::new(Templates::build(&settings.workload));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(settings.connections);
    for id in 0..settings.connections {
        let (settings, counters, tickets, stop, templates) = (
            Arc::clone(&settings),
            Arc::clone(&counters),
            Arc::clone(&tickets),
            Arc::clone(&stop),
            Arc::clone(&templates),
        );
        workers.push(tokio::spawn(async move {
            let generator = Generator::new(&settings.workload, templates, id as u64 + 1);
            worker(generator, &settings, &counters, &tickets, &stop, started).await
        }));
    }
    let mut total = Tally::new();
    for w in workers {
        if let Ok(t) = w.await {
            total.merge(t);
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.abort();
    }
    Ok(Report::new(
        &settings,
        elapsed,
        total.requests,
        total.events_ok,
        total.bytes,
        total.errors,
        &total.latency,
        total.statuses,
    ))
}

impl Tally {
    fn new() -> Self {
        Self {
            // 1 µs .. 100 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("constant bounds are valid"),
            statuses: BTreeMap::new(),
            events_ok: 0,
            bytes: 0,
            errors: 0,
            requests: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.events_ok += other.events_ok;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.requests += other.requests;
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type Sender2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

enum Conn {
    H1(Sender),
    H2(Sender2),
}

async fn connect(target: SocketAddr, http2: bool) -> Option<Conn> {
    let stream = TcpStream::connect(target).await.ok()?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    if http2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .ok()?;
        tokio::spawn(conn);
        Some(Conn::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
        tokio::spawn(conn);
        Some(Conn::H1(sender))
    }
}

async fn worker(
    mut generator: Generator,
    settings: &Settings,
    counters: &Counters,
    tickets: &AtomicU64,
    stop: &AtomicBool,
    started: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let deadline = started + settings.duration;
    let host = settings.target.to_string();
    let mut conn: Option<Conn> = None;
    loop {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        if ticket >= settings.max_requests || stop.load(Ordering::Relaxed) {
            break;
        }
        let intended = match settings.pace {
            Pace::Closed => None,
            Pace::Open { rate } => Some(started + Duration::from_secs_f64(ticket as f64 / rate)),
        };
        if let Some(at) = intended {
            if at >= deadline {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        } else if Instant::now() >= deadline {
            break;
        }
        let prepared = generator.next(ticket);
        let mut builder = http::Request::post(prepared.path)
            .header(HOST, host.as_str())
            .header(AUTHORIZATION, prepared.auth)
            .header(CONTENT_TYPE, "application/json");
        if settings.workload.gzip {
            builder = builder.header(CONTENT_ENCODING, "gzip");
        }
        let body_len = prepared.body.len() as u64;
        let Ok(request) = builder.body(Full::new(prepared.body)) else {
            tally.errors += 1;
            continue;
        };
        let sent_at = Instant::now();
        if conn.is_none() {
            conn = connect(settings.target, settings.http2).await;
        }
        let result = match conn.as_mut() {
            Some(Conn::H1(s)) => match s.ready().await {
                Ok(()) => s.send_request(request).await.ok(),
                Err(_) => None,
            },
            Some(Conn::H2(s)) => match s.ready().await {
                Ok(()) => s.send_request(request).await.ok(),
                Err(_) => None,
            },
            None => None,
        };
        let status = match result {
            Some(resp) => {
                let status = resp.status().as_u16();
                // Read the whole answer, as a client must.
                match resp.into_body().collect().await {
                    Ok(_) => Some(status),
                    Err(_) => None,
                }
            }
            None => None,
        };
        let finished = Instant::now();
        tally.requests += 1;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            Some(s) => {
                *tally.statuses.entry(s).or_default() += 1;
                tally.bytes += body_len;
                if s == 200 {
                    tally.events_ok += prepared.events;
                }
                let from = intended.unwrap_or(sent_at);
                let micros = finished.saturating_duration_since(from).as_micros() as u64;
                let _ = tally.latency.record(micros.max(1));
            }
            None => {
                tally.errors += 1;
                counters.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}
