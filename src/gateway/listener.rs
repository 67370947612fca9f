//! Accepting connections and serving HTTP/1.1 and HTTP/2 on them (TLS optional).
//!
//! Bounds: at most `max_connections` open connections (the rest wait in the kernel
//! backlog) and `max_per_ip` per client address (more are closed at once), a header
//! timeout that starts at accept (a connection that never sends a request is closed
//! when it runs out; slowloris), a bound on the request head (431), HTTP/2 streams per
//! connection, an idle timeout, a TLS handshake timeout.
//! On shutdown the listener stops accepting, every connection finishes its in-flight
//! requests and closes, and [`run`] returns once all are gone or the grace period ends.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::response::Reply;
use crate::telemetry;

/// Connection-level settings.
#[derive(Clone)]
pub struct Settings {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time to send request headers (and to finish a TLS handshake).
    pub header_timeout: Duration,
    /// Close a connection without requests for this long.
    pub idle_timeout: Duration,
    /// How long shutdown waits for connections to finish.
    pub grace: Duration,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Largest request head, in bytes (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// HTTP/2 streams open at once per connection.
    pub max_streams: u32,
    /// Open connections per client address.
    pub max_per_ip: usize,
    /// Addresses the per-address cap does not apply to (trusted proxies).
    pub exempt: Vec<ipnet::IpNet>,
}

/// Open connections per client address; an entry lives while its address has one.
#[derive(Default)]
struct PerIp(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

/// A connection's place in its address's count, given back when dropped (however the
/// connection's task ends).
struct Slot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.per_ip.leave(self.ip);
    }
}

impl PerIp {
    /// Counts a new connection from `ip`, unless it already has `max`.
    fn admit(&self, ip: IpAddr, max: usize) -> bool {
        let Ok(mut open) = self.0.lock() else {
            return true;
        };
        let n = open.entry(ip).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        if let Ok(mut open) = self.0.lock()
            && let Some(n) = open.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Serves `handler` on `listener` until `shutdown`, then drains connections.
pub async fn run<H, F>(
    listener: TcpListener,
    settings: Settings,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip().to_canonical();
        let capped = !settings.exempt.iter().any(|net| net.contains(&ip));
        if capped && !per_ip.admit(ip, settings.max_per_ip) {
            telemetry::HTTP_CONNECTIONS_REFUSED.with([]).increment(1);
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let settings = settings.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let slot = capped.then(|| Slot {
            per_ip: Arc::clone(&per_ip),
            ip,
        });
        tracker.spawn(async move {
            let open = telemetry::Held::of(&telemetry::HTTP_CONNECTIONS.with([]));
            serve_stream(stream, peer, &settings, handler, shutdown).await;
            drop((open, slot, permit));
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(settings.grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = settings.grace.as_millis() as u64,
            "connections still open after the grace period; closing them"
        );
    }
}

async fn serve_stream<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    settings: &Settings,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    match &settings.tls {
        None => serve_io(stream, peer, settings, handler, shutdown).await,
        Some(acceptor) => {
            match tokio::time::timeout(settings.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_io(tls, peer, settings, handler, shutdown).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I, H, F>(
    io: I,
    peer: SocketAddr,
    settings: &Settings,
    handler: H,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let started = Instant::now();
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let handler = handler.clone();
            let activity = Arc::clone(&activity);
            async move {
                activity.begin(started);
                let reply = handler(req, peer).await;
                activity.end(started);
                Ok::<_, Infallible>(reply)
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_streams)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(settings.idle_timeout / 2)
        .keep_alive_timeout(settings.header_timeout);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    let tick = settings.idle_timeout.min(settings.header_timeout) / 4;
    let mut idle_check = tokio::time::interval(tick.max(Duration::from_millis(10)));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = idle_check.tick(), if !closing => {
                if !activity.ever_used() && started.elapsed() >= settings.header_timeout {
                    // Silent since accept (or still sending its first headers): a held
                    // socket, not a client. Close it outright.
                    tracing::debug!(%peer, "closing a connection that sent no request");
                    return;
                }
                if activity.idle_for(started) >= settings.idle_timeout {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Requests under way on a connection and when the last one ended.
#[derive(Default)]
struct Activity {
    active: AtomicUsize,
    last_ms: AtomicU64,
    used: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn begin(&self, since: Instant) {
        self.used.store(true, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        self.touch(since);
    }

    /// Whether a request ever started on this connection.
    fn ever_used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    fn end(&self, since: Instant) {
        self.touch(since);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    fn touch(&self, since: Instant) {
        self.last_ms
            .store(since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self, since: Instant) -> Duration {
        if self.active.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let now = since.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}
