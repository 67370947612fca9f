//! Test support: a real Sluice server on 127.0.0.1:0 that shuts down on drop.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use sluice::config::Config;

pub mod browser;
pub mod control;
pub mod databases;
pub mod peer;
pub mod receiver;
pub mod scim;

/// The catalog most tests use.
pub const CATALOG: &str = r#"
[[sources]]
id = "web"
name = "Website"
write_keys = [{ key = "web-key" }, { key = "web-revoked", revoked = true },
              { key = "web-expired", expires_at = "2020-01-01T00:00:00Z" }]

[[sources]]
id = "server"
write_keys = [{ key = "server-key" }]

[[sources]]
id = "off"
enabled = false
write_keys = [{ key = "off-key" }]

[[sources]]
id = "slow"
rate_limit = { requests_per_second = 1, burst = 2 }
write_keys = [{ key = "limited-key" }]
"#;

/// The default catalog plus a source `id` (key `<id>-key`) that only one test uses,
/// so that test's metric assertions are not disturbed by others in the same process
/// (the metrics recorder is process-wide).
pub fn catalog_with(id: &str) -> String {
    format!("{CATALOG}\n[[sources]]\nid = \"{id}\"\nwrite_keys = [{{ key = \"{id}-key\" }}]\n")
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The control plane's API (served when `catalog.source = "control"`).
    pub control: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: Config,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// A server with the default catalog and config tweaks applied by `tweak`.
    pub fn start_with(catalog: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("catalog.toml"), catalog).expect("write catalog");
        let mut config = Config::default();
        config.catalog.source = sluice::config::CatalogSourceKind::File;
        config.catalog.path = dir.path().join("catalog.toml");
        config.catalog.poll_interval_ms = 100;
        config.log.dir = dir.path().join("log");
        // File destinations write here, never into the working directory.
        config.delivery.file_dir = dir.path().join("exports");
        config.log.durability = sluice::config::Durability::Os;
        config.server.shutdown_grace_ms = 5_000;
        // Insert functions run in `sluice function-host`, not in this test binary.
        config.functions.program = env!("CARGO_BIN_EXE_sluice").into();
        tweak(&mut config);
        Self::start_in(dir, config)
    }

    pub fn start() -> Self {
        Self::start_with(CATALOG, |_| {})
    }

    /// Starts on an existing directory and config (for restarts).
    pub fn start_in(dir: tempfile::TempDir, config: Config) -> Self {
        let data = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = data.local_addr().expect("addr");
        let admin_addr = admin.local_addr().expect("addr");
        let control = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let control_addr = control.local_addr().expect("addr");
        data.set_nonblocking(true).expect("nonblocking");
        admin.set_nonblocking(true).expect("nonblocking");
        control.set_nonblocking(true).expect("nonblocking");
        let shutdown = CancellationToken::new();
        let thread = {
            let config = config.clone();
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listeners = sluice::Listeners {
                        data: tokio::net::TcpListener::from_std(data).expect("listener"),
                        admin: tokio::net::TcpListener::from_std(admin).expect("listener"),
                        control: Some(
                            tokio::net::TcpListener::from_std(control).expect("listener"),
                        ),
                    };
                    if let Err(error) = sluice::serve(config, listeners, shutdown).await {
                        eprintln!("serve failed: {error}");
                    }
                });
            })
        };
        let server = Self {
            addr,
            admin: admin_addr,
            control: control_addr,
            dir,
            config,
            shutdown,
            thread: Some(thread),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.admin).is_ok()
                && http_get_status(self.admin, "/ready") == Some(200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.config.catalog.path.clone()
    }

    /// Replaces the catalog file atomically (write + rename).
    pub fn write_catalog(&self, text: &str) {
        replace_file(&self.catalog_path(), text);
    }

    /// Every stored record, in order.
    pub fn stored(&self) -> Vec<Value> {
        stored_in(&self.config.log.dir)
    }

    /// Stops the server and waits for it; returns the directory for a restart.
    pub fn stop(mut self) -> (tempfile::TempDir, Config) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (dir, self.config.clone())
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

pub fn stored_in(dir: &Path) -> Vec<Value> {
    sluice::log::Reader::open(dir, 0)
        .expect("reader")
        .map(|r| {
            let (_, payload) = r.expect("record");
            serde_json::from_slice(&payload).expect("record JSON")
        })
        .collect()
}

/// The value of one metric series (summing nothing: exact line match on name+labels).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

pub fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

/// A TCP port on 127.0.0.1 that is free right now (for child processes that bind it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The Prometheus text of the admin listener at `addr`.
pub async fn metrics_at(addr: impl std::fmt::Display) -> String {
    client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

pub fn client() -> reqwest::Client {
    sluice::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}
