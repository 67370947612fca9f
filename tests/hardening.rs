//! Regression tests for the hardening review: what a restart, a damaged directory or a
//! bad cursor must never cost (acknowledged events), and what it must say.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{TestServer, metric};
use serde_json::{Value, json};
use sluice::config::{self, Config};
use sluice::log::{Batch, Log, Reader, segment};

/// A catalog with source `web` and a file destination `id` writing to `out`.
fn catalog(id: &str, out: &Path) -> String {
    format!(
        "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
         [[destinations]]\nid = \"{id}\"\ntype = \"file\"\nsources = [\"web\"]\nsettings = {{ path = \"{}\" }}\n",
        out.file_name().and_then(|n| n.to_str()).unwrap_or_default()
    )
}

fn log_config(dir: &Path) -> config::Log {
    config::Log {
        dir: dir.join("log"),
        durability: config::Durability::Os,
        segment_bytes: 4096,
        ..config::Log::default()
    }
}

/// Stores `n` events of source `web` (ids `old-0`…) straight into the log, then makes
/// every segment look 8 days old (past the default 168 h retention).
fn backlog(dir: &Path, n: usize) {
    // On a thread of its own: async tests call this from inside their runtime.
    let dir = dir.to_owned();
    std::thread::spawn(move || write_backlog(&dir, n))
        .join()
        .expect("backlog");
}

/// A log of its own runtime (tests outside one).
fn open_log(cfg: &config::Log) -> (tokio::runtime::Runtime, Log) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let log = {
        let _guard = rt.enter();
        Log::open(cfg).expect("open")
    };
    (rt, log)
}

fn write_backlog(dir: &Path, n: usize) {
    let cfg = log_config(dir);
    let (rt, log) = open_log(&cfg);
    for i in 0..n {
        let record = json!({"sourceId":"web","event":{"type":"track","event":"E","userId":"u",
            "messageId":format!("old-{i}"),"receivedAt":"2026-01-01T00:00:00.000Z",
            "properties":{"padding":"p".repeat(300)}}});
        let bytes = serde_json::to_vec(&record).expect("json");
        rt.block_on(log.append(Batch::of([bytes]))).expect("append");
    }
    rt.block_on(log.close(Duration::from_secs(5)));
    let old = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    for base in segment::list(&cfg.dir).expect("list") {
        std::fs::File::options()
            .write(true)
            .open(segment::path(&cfg.dir, base))
            .and_then(|f| f.set_modified(old))
            .expect("age the segment");
    }
    assert!(
        segment::list(&cfg.dir).expect("list").len() > 2,
        "several segments"
    );
}

fn save_cursor(dir: &Path, id: &str, text: &str) {
    let cursors = sluice::log::reading::local::cursor_dir(&dir.join("log"));
    std::fs::create_dir_all(&cursors).expect("mkdir");
    std::fs::write(cursors.join(format!("{id}.cursor")), text).expect("cursor");
}

fn start(dir: tempfile::TempDir, id: &str, out: &Path) -> TestServer {
    std::fs::write(dir.path().join("catalog.toml"), catalog(id, out)).expect("catalog");
    let mut config = Config::default();
    config.catalog.source = sluice::config::CatalogSourceKind::File;
    config.catalog.path = dir.path().join("catalog.toml");
    config.catalog.poll_interval_ms = 100;
    config.log = log_config(dir.path());
    config.delivery.file_dir = out.parent().expect("a file in a directory").to_owned();
    config.server.shutdown_grace_ms = 5_000;
    TestServer::start_in(dir, config)
}

fn delivered_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["messageId"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until `ok` holds for what `path` received, or fails after `secs`.
fn wait_delivered(path: &Path, secs: u64, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ids = delivered_ids(path);
        if ok(&ids) || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn send(server: &TestServer, id: &str) {
    let r = common::client()
        .post(server.url("/v1/track"))
        .header("authorization", common::basic("web-key"))
        .json(&json!({"userId":"u","event":"E","messageId":id}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

#[test]
fn start_up_retention_keeps_what_a_saved_cursor_still_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.ndjson");
    backlog(dir.path(), 60);
    save_cursor(dir.path(), "archive", "0\n");
    let server = start(dir, "archive", &out);
    let ids = wait_delivered(&out, 10, |ids| ids.len() >= 60);
    let want: Vec<String> = (0..60).map(|i| format!("old-{i}")).collect();
    assert_eq!(
        ids, want,
        "the whole backlog is delivered after the restart"
    );
    drop(server);
}

#[tokio::test]
async fn a_cursor_below_the_oldest_segment_is_a_counted_gap_not_a_silent_jump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.ndjson");
    backlog(dir.path(), 60);
    let log_dir = dir.path().join("log");
    let first = segment::list(&log_dir).expect("list")[0];
    let lost = segment::list(&log_dir).expect("list")[1];
    std::fs::remove_file(segment::path(&log_dir, first)).expect("lose a segment");
    save_cursor(dir.path(), "gappy", "0\n");
    let server = start(dir, "gappy", &out);
    let ids = wait_delivered(&out, 10, |ids| ids.len() as u64 >= 60 - lost);
    assert_eq!(ids.len() as u64, 60 - lost);
    assert_eq!(
        ids.first().map(String::as_str),
        Some(&*format!("old-{lost}"))
    );
    let m = server.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_delivery_gap_events_total{destination=\"gappy\"}"
        ),
        lost as f64
    );
}

#[tokio::test]
async fn a_corrupt_cursor_holds_the_destination_and_its_backlog_until_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.ndjson");
    backlog(dir.path(), 60);
    save_cursor(dir.path(), "held", "\0\0not an offset");
    let server = start(dir, "held", &out);
    send(&server, "new-1").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(delivered_ids(&out).is_empty(), "nothing guessed");
    let m = server.metrics().await;
    assert!(
        metric(
            &m,
            "sluice_delivery_cursor_errors_total{destination=\"held\",reason=\"corrupt\"}"
        ) >= 1.0
    );
    let log_dir = server.config.log.dir.clone();
    assert_eq!(
        segment::list(&log_dir).expect("list")[0],
        0,
        "the backlog is kept"
    );
    // The operator puts the destination back at the start of its backlog.
    save_cursor(server.dir.path(), "held", "0\n");
    let ids = wait_delivered(&out, 20, |ids| ids.len() >= 61);
    assert_eq!(ids.len(), 61);
    assert_eq!(ids.last().map(String::as_str), Some("new-1"));
}

#[tokio::test]
async fn a_cursor_ahead_of_the_log_is_clamped_and_new_events_are_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.ndjson");
    save_cursor(dir.path(), "ahead", "1000000\n");
    let server = start(dir, "ahead", &out);
    send(&server, "after-clamp").await;
    let ids = wait_delivered(&out, 10, |ids| !ids.is_empty());
    assert_eq!(ids, ["after-clamp"]);
    let m = server.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_delivery_cursor_errors_total{destination=\"ahead\",reason=\"ahead\"}"
        ),
        1.0
    );
}

#[test]
fn empty_and_partial_header_segments_never_wedge_readers_stats_or_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    backlog(dir.path(), 30);
    let cfg = config::Log {
        retention_hours: 24 * 365,
        ..log_config(dir.path())
    };
    let bases = segment::list(&cfg.dir).expect("list");
    let last = *bases.last().expect("segment");
    let records = sluice::log::stats(&cfg.dir).expect("stats").records;
    // A roll cut short by a full disk, in the middle and at the end of the log.
    std::fs::write(segment::path(&cfg.dir, last + 1000), b"").expect("empty");
    std::fs::write(segment::path(&cfg.dir, last + 2000), b"SLU").expect("partial header");
    let stats = sluice::log::stats(&cfg.dir).expect("stats with short segments");
    assert_eq!(stats.records, records);
    let read: Vec<_> = Reader::open(&cfg.dir, 0)
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("reader steps over short segments");
    assert_eq!(read.len() as u64, records);

    let (rt, log) = open_log(&cfg);
    let range = rt
        .block_on(log.append(Batch::of([b"{}".to_vec()])))
        .expect("append");
    assert!(range.start >= records);
    rt.block_on(log.close(Duration::from_secs(5)));
    let read: Vec<_> = Reader::open(&cfg.dir, 0)
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(read.len() as u64, records + 1);
}

#[test]
fn a_full_log_frees_itself_once_readers_let_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config::Log {
        max_bytes: 32 << 10,
        ..log_config(dir.path())
    };
    let (rt, log) = open_log(&cfg);
    // A reader that has read nothing pins every segment: the log fills up.
    log.hold("slow", 0);
    let record = vec![b'x'; 1000];
    let mut full = false;
    for _ in 0..100 {
        match rt.block_on(log.append(Batch::of([&record]))) {
            Ok(_) => {}
            Err(sluice::log::AppendError::Full) => {
                full = true;
                break;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(full, "the bound is enforced");
    // The reader catches up: the very next append gets room, whatever the segments' age
    // (retention is 168 h; nothing here is that old).
    log.hold("slow", log.next_offset());
    rt.block_on(log.append(Batch::of([&record])))
        .expect("ingestion resumes by itself");
    assert!(log.total_bytes() <= cfg.max_bytes);
    // And without traffic, the once-a-second housekeeping brings it under the high-water mark.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(1500)).await });
    assert!(!log.is_over_high_water());
    rt.block_on(log.close(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_dead_destination_moves_its_backlog_aside_instead_of_pinning_the_log() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.ndjson");
    let catalog = format!(
        "{}\n[[destinations]]\nid = \"dead\"\ntype = \"webhook\"\nsources = [\"web\"]\n\
         retry = {{ initial_backoff_ms = 10, max_backoff_ms = 50, max_lag_bytes = 8192 }}\n\
         [destinations.settings]\nurl = \"http://127.0.0.1:{closed_port}/\"\ntimeout_ms = 200\n",
        catalog("disk", &out)
    );
    std::fs::write(dir.path().join("catalog.toml"), catalog).expect("catalog");
    let mut config = Config::default();
    config.catalog.source = sluice::config::CatalogSourceKind::File;
    config.catalog.path = dir.path().join("catalog.toml");
    config.log = config::Log {
        max_bytes: 96 << 10,
        ..log_config(dir.path())
    };
    config.delivery.allow_private_destinations = true;
    config.delivery.file_dir = dir.path().to_owned();
    let server = TestServer::start_in(dir, config);

    // 300 events of ~500 bytes: three times what the log may hold.
    let client = common::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    for batch in 0..30 {
        let events: Vec<Value> = (0..10)
            .map(|i| {
                json!({"type":"track","userId":"u","event":"E",
                "messageId":format!("m-{batch}-{i}"),"properties":{"p":"x".repeat(400)}})
            })
            .collect();
        loop {
            let r = client
                .post(server.url("/v1/batch"))
                .header("authorization", common::basic("web-key"))
                .json(&json!({ "batch": events }))
                .send()
                .await
                .expect("send");
            if r.status() == 200 {
                break;
            }
            assert_eq!(r.status(), 503, "only back-pressure, briefly");
            assert!(Instant::now() < deadline, "the log stayed full");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ids = wait_delivered(&out, 20, |ids| ids.len() >= 300);
    assert_eq!(ids.len(), 300, "the healthy destination got everything");
    let m = server.metrics().await;
    assert!(
        metric(
            &m,
            "sluice_delivery_dead_lettered_total{destination=\"dead\"}"
        ) > 0.0
    );
    let dead_letters = sluice::delivery::dead_letter::read(
        &sluice::delivery::dead_letter_dir(&server.config.log.dir),
        "dead",
    )
    .expect("dead letters");
    assert!(
        dead_letters
            .entries
            .iter()
            .all(|e| e.reason == "max_lag" || e.reason == "connection")
    );
    assert!(dead_letters.entries.iter().any(|e| e.reason == "max_lag"));
}

#[tokio::test]
async fn a_small_batch_cannot_expand_into_megabytes_of_log() {
    let server = TestServer::start();
    // A 30 KB batch context copied into 100 tiny events would store 3 MB.
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"type":"track","userId":"u","event":"E","messageId":format!("amp-{i}")}))
        .collect();
    let body = json!({"batch": items, "context": {"blob": "c".repeat(30_000)}});
    let r = common::client()
        .post(server.url("/v1/batch"))
        .header("authorization", common::basic("web-key"))
        .header("content-encoding", "gzip")
        .body(common::gzip(&serde_json::to_vec(&body).expect("json")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    let reply: Value = r.json().await.expect("json");
    assert_eq!(reply["code"], "request_too_large");
    assert!(server.stored().is_empty(), "nothing of it is stored");
}

mod hostile_clients {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use super::common::{self, TestServer};

    /// Reads until the server closes (Ok(bytes read)) or `wait` passes (Err).
    fn read_until_closed(s: &mut TcpStream, wait: Duration) -> std::io::Result<String> {
        s.set_read_timeout(Some(wait))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn status_of(reply: &str) -> Option<u16> {
        reply.split_whitespace().nth(1)?.parse().ok()
    }

    fn auth_header() -> String {
        format!("Authorization: {}\r\n", common::basic("web-key"))
    }

    #[test]
    fn a_connection_that_never_speaks_is_closed_after_the_header_timeout() {
        let server = TestServer::start_with(common::CATALOG, |c| c.server.header_timeout_ms = 300);
        let started = Instant::now();
        let mut s = TcpStream::connect(server.addr).expect("connect");
        let reply = read_until_closed(&mut s, Duration::from_secs(5)).expect("closed, not held");
        assert!(reply.is_empty());
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn held_admin_sockets_do_not_blind_monitoring() {
        let server =
            TestServer::start_with(common::CATALOG, |c| c.server.admin_max_connections = 8);
        let held: Vec<TcpStream> = (0..16)
            .map(|_| TcpStream::connect(server.admin).expect("connect"))
            .collect();
        let started = Instant::now();
        let mut s = TcpStream::connect(server.admin).expect("connect");
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let reply = read_until_closed(&mut s, Duration::from_secs(20)).expect("answered");
        assert_eq!(status_of(&reply), Some(200), "{reply}");
        assert!(started.elapsed() < Duration::from_secs(15));
        drop(held);
    }

    #[test]
    fn admin_changes_are_refused_while_no_admin_token_is_set() {
        let server = TestServer::start();
        let mut s = TcpStream::connect(server.admin).expect("connect");
        s.write_all(b"POST /dlq/any/replay HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .expect("send");
        let reply = read_until_closed(&mut s, Duration::from_secs(5)).expect("answered");
        assert_eq!(status_of(&reply), Some(403), "{reply}");
        assert!(reply.contains("admin_token_not_configured"));
    }

    #[test]
    fn an_oversized_request_head_gets_431() {
        let server = TestServer::start();
        let mut s = TcpStream::connect(server.addr).expect("connect");
        let big = "x".repeat(100_000);
        let request = format!(
            "POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n{}Content-Length: 2\r\n\r\n{{}}",
            auth_header()
        );
        let _ = s.write_all(request.as_bytes());
        let reply = read_until_closed(&mut s, Duration::from_secs(5)).expect("answered");
        assert_eq!(status_of(&reply), Some(431), "{reply}");
    }

    /// Starts a POST with `headers` announcing a 10 KB body and sends 10 bytes of it.
    fn trickle(addr: SocketAddr, path: &str, headers: &str) -> TcpStream {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{{\"userId\":"
        )
        .expect("send");
        s
    }

    #[test]
    fn a_trickling_body_gets_408() {
        let server = TestServer::start();
        let started = Instant::now();
        let mut s = trickle(server.addr, "/v1/track", &auth_header());
        for _ in 0..40 {
            if s.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let reply = read_until_closed(&mut s, Duration::from_secs(10)).expect("answered");
        assert_eq!(status_of(&reply), Some(408), "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "long before body_timeout_ms"
        );
    }

    #[test]
    fn keyless_requests_have_their_own_budget() {
        let server =
            TestServer::start_with(common::CATALOG, |c| c.server.max_in_flight_keyless = 2);
        let _slow: Vec<TcpStream> = (0..2)
            .map(|_| trickle(server.addr, "/v1/track", ""))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let post = |headers: &str| {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            let body = r#"{"userId":"u","event":"E","writeKey":"web-key"}"#;
            write!(
                s,
                "POST /v1/track HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .expect("send");
            status_of(&read_until_closed(&mut s, Duration::from_secs(5)).expect("answered"))
        };
        assert_eq!(post(""), Some(503), "the keyless budget is taken");
        assert_eq!(
            post(&auth_header()),
            Some(200),
            "a header key still gets in"
        );
        // Client metrics come from the keyless budget too, and are bounded in size.
        let mut s = TcpStream::connect(server.addr).expect("connect");
        write!(
            s,
            "POST /v1/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .expect("send");
        let reply = read_until_closed(&mut s, Duration::from_secs(5)).expect("answered");
        assert_eq!(status_of(&reply), Some(503), "{reply}");
    }

    #[test]
    fn client_metrics_are_bounded_and_never_buffered() {
        let server = TestServer::start();
        let mut s = TcpStream::connect(server.addr).expect("connect");
        let body = vec![b'x'; 200_000];
        write!(
            s,
            "POST /v1/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("send");
        let _ = s.write_all(&body);
        let reply = read_until_closed(&mut s, Duration::from_secs(5)).expect("answered");
        assert_eq!(status_of(&reply), Some(413), "{reply}");
    }

    /// One HTTP/2 frame: length, type, flags, stream id, payload.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn an_http2_connection_cannot_open_more_streams_than_its_cap() {
        let server =
            TestServer::start_with(common::CATALOG, |c| c.server.max_streams_per_connection = 2);
        let mut s = TcpStream::connect(server.addr).expect("connect");
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(0x4, 0, 0, &[])); // our SETTINGS
        out.extend(frame(0x4, 0x1, 0, &[])); // ACK of the server's
        // Three requests whose bodies never come (no END_STREAM): streams 1, 3, 5.
        // HPACK: :method POST (idx 3), :scheme http (idx 6), :path /v1/track, :authority x.
        let mut block = vec![0x83, 0x86, 0x04, 9];
        block.extend_from_slice(b"/v1/track");
        block.extend_from_slice(&[0x01, 1, b'x']);
        for stream in [1u32, 3, 5] {
            out.extend(frame(0x1, 0x4, stream, &block));
        }
        s.write_all(&out).expect("send");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        let refused = loop {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 || Instant::now() > deadline {
                break false;
            }
            seen.extend_from_slice(&buf[..n]);
            // Walk the frames received so far: RST_STREAM(REFUSED_STREAM) on stream 5?
            let mut at = 0;
            let mut found = false;
            while seen.len() >= at + 9 {
                let len = usize::from(seen[at]) << 16
                    | usize::from(seen[at + 1]) << 8
                    | usize::from(seen[at + 2]);
                if seen.len() < at + 9 + len {
                    break;
                }
                let (kind, stream) = (
                    seen[at + 3],
                    u32::from_be_bytes([seen[at + 5], seen[at + 6], seen[at + 7], seen[at + 8]])
                        & 0x7fff_ffff,
                );
                let payload = &seen[at + 9..at + 9 + len];
                found |= kind == 0x3 && stream == 5 && payload == [0, 0, 0, 7];
                at += 9 + len;
            }
            if found {
                break true;
            }
        };
        assert!(refused, "the third stream is refused (REFUSED_STREAM)");
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let server =
            TestServer::start_with(common::CATALOG, |c| c.server.max_connections_per_ip = 4);
        let _held: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(server.addr).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let mut fifth = TcpStream::connect(server.addr).expect("connect");
        let reply = read_until_closed(&mut fifth, Duration::from_secs(5)).expect("closed at once");
        assert!(reply.is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn key_guessing_is_throttled_per_address() {
    let server = TestServer::start_with(common::CATALOG, |c| {
        c.server.max_key_failures_per_minute = 5;
    });
    let client = common::client();
    let settings = |key: &str| client.get(server.url(&format!("/v1/projects/{key}/settings")));
    for n in 0..5 {
        let r = settings(&format!("guess-{n}")).send().await.expect("send");
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    for path in ["guess-6", "web-key"] {
        let r = settings(path).send().await.expect("send");
        assert_eq!(
            r.status(),
            429,
            "{path}: the address is stopped before any lookup"
        );
        assert!(r.headers().contains_key("retry-after"));
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["code"], "too_many_failed_keys");
    }
    let r = client
        .post(server.url("/v1/track"))
        .header("authorization", common::basic("another-guess"))
        .json(&json!({"userId":"u","event":"E"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429, "the Tracking API routes share the budget");
}

#[tokio::test]
async fn settings_never_reflect_an_arbitrary_host() {
    let server = TestServer::start();
    let mut s = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    s.write_all(b"GET /v1/projects/web-key/settings HTTP/1.1\r\nHost: evil.example/\"><script>\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.expect("read");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(!reply.contains("evil.example"));

    let configured = TestServer::start_with(common::CATALOG, |c| {
        c.server.public_url = Some("https://events.example.com/".into());
    });
    let r = common::client()
        .get(configured.url("/v1/projects/web-key/settings"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["integrations"]["Segment.io"]["apiHost"],
        "events.example.com/v1"
    );
    assert_eq!(body["integrations"]["Segment.io"]["protocol"], "https");
}

/// The webhook client never goes through `HTTP_PROXY`: the address guard could not see
/// where a proxy sends the request.
#[test]
fn webhooks_ignore_proxy_environment_variables() {
    use std::io::Read as _;
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy");
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("receiver");
    proxy.set_nonblocking(true).expect("nonblocking");
    receiver.set_nonblocking(true).expect("nonblocking");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("addr").port();
    std::fs::write(
        dir.path().join("catalog.toml"),
        format!(
            "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
             [[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nsources = [\"web\"]\n\
             [destinations.settings]\nurl = \"http://127.0.0.1:{}/hook\"\n",
            port(&receiver)
        ),
    )
    .expect("catalog");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    };
    let (data, admin) = (free(), free());
    let proxy_url = format!("http://127.0.0.1:{}", port(&proxy));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .current_dir(dir.path())
        .env("SLUICE__SERVER__LISTEN", format!("127.0.0.1:{data}"))
        .env("SLUICE__SERVER__ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("SLUICE__LOG__DIR", dir.path().join("log"))
        .env("SLUICE__LOG__DURABILITY", "os")
        .env("SLUICE__CATALOG__SOURCE", "file")
        .env("SLUICE__CATALOG__PATH", dir.path().join("catalog.toml"))
        .env("SLUICE__DELIVERY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let sent = loop {
        let body = r#"{"userId":"u","event":"E","writeKey":"web-key"}"#;
        let request = format!(
            "POST /v1/track HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let reply = std::net::TcpStream::connect(("127.0.0.1", data)).and_then(|mut s| {
            use std::io::Write as _;
            s.write_all(request.as_bytes())?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        });
        match reply {
            Ok(out) if out.starts_with("HTTP/1.1 200") => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(sent, "the event was accepted");
    let mut direct = false;
    let mut proxied = false;
    while Instant::now() < deadline && !direct && !proxied {
        direct |= receiver.accept().is_ok();
        proxied |= proxy.accept().is_ok();
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!proxied, "the webhook went through HTTP_PROXY");
    assert!(direct, "the webhook connected directly");
}

#[test]
fn the_catalog_copy_holding_destination_secrets_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = TestServer::start();
    let lkg = server.config.log.dir.join(sluice::LAST_KNOWN_GOOD);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lkg.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::fs::metadata(&lkg).expect("lkg").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Posts `body` to `path` with the `web` source's key: the status and the JSON answer.
async fn post_json(server: &TestServer, path: &str, body: String) -> (u16, Value) {
    let r = common::client()
        .post(server.url(path))
        .header("authorization", common::basic("web-key"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

#[tokio::test]
async fn a_key_sent_twice_is_refused_so_plans_and_destinations_read_the_same_event() {
    let server = TestServer::start();
    let (status, body) = post_json(
        &server,
        "/v1/track",
        r#"{"userId":"u","event":"E","integrations":{"All":false,"All":true}}"#.to_owned(),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!("duplicate_key")));
    assert!(server.stored().is_empty());

    // In a batch only the offending item is refused.
    let (status, body) = post_json(
        &server,
        "/v1/batch",
        r#"{"batch":[{"type":"track","userId":"u","event":"A","properties":{"plan":"free","plan":"paid"}},
                     {"type":"track","userId":"u","event":"B","properties":{"plan":"paid"}}]}"#
            .to_owned(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["rejected"][0]["index"], 0);
    assert_eq!(body["rejected"][0]["code"], "duplicate_key");
    let stored = server.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["event"]["event"], "B");

    // Objects of more than 32 members, which the parser's DOM would merge (last copy
    // wins): the repeat is still seen, in a single message and in a batch item.
    let mut members: Vec<String> = (0..40).map(|i| format!(r#""p{i}":{i}"#)).collect();
    members.push(r#""p5":"again""#.to_owned());
    let large = format!("{{{}}}", members.join(","));
    let single = format!(r#"{{"userId":"u","event":"E","properties":{large}}}"#);
    let (status, body) = post_json(&server, "/v1/track", single).await;
    assert_eq!((status, &body["code"]), (400, &json!("duplicate_key")));
    let batch = format!(
        r#"{{"batch":[{{"type":"track","userId":"u","event":"C"}},
                      {{"type":"track","userId":"u","event":"D","properties":{large}}}]}}"#
    );
    let (status, body) = post_json(&server, "/v1/batch", batch).await;
    assert_eq!(status, 200);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["code"], "duplicate_key");

    // A repeat in what every item inherits (the batch's context) refuses the request.
    let (status, body) = post_json(
        &server,
        "/v1/batch",
        r#"{"batch":[{"type":"track","userId":"u","event":"F"}],"context":{"ip":"1.2.3.4","ip":"5.6.7.8"}}"#
            .to_owned(),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!("duplicate_key")));
    let events: Vec<String> = server
        .stored()
        .iter()
        .map(|s| s["event"]["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(events, ["B", "C"]);
}

#[tokio::test]
async fn removing_a_destination_is_explicit_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file destination that cannot write (its path is a directory): a backlog builds.
    let blocked = dir.path().join("not-a-file");
    std::fs::create_dir_all(&blocked).expect("dir");
    let server = start(dir, "gone", &blocked);
    send(&server, "pending-1").await;
    let cursor =
        sluice::log::reading::local::cursor_dir(&server.config.log.dir).join("gone.cursor");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cursor.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cursor.exists());
    server.write_catalog("[[sources]]\nid = \"web\"\nwrite_keys = [{ key = \"web-key\" }]\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cursor.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!cursor.exists(), "the cursor is forgotten");
    let m = server.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_delivery_destinations_removed_total{destination=\"gone\"}"
        ),
        1.0
    );
}

/// A real full disk (a 1 MiB tmpfs, mounted for the test; CI runs as root): appends get
/// 503, `/ready` turns red, nothing acknowledged is lost (each event is in the log or
/// already delivered: segments every destination has finished with may go to make
/// room), and everything recovers by itself once space is freed.
#[tokio::test]
async fn a_full_disk_turns_ready_red_and_recovers_by_itself() {
    struct Mount(std::path::PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&disk)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a tmpfs");
    let _mount = Mount(disk.clone());
    let out = dir.path().join("delivered.ndjson");
    std::fs::write(dir.path().join("catalog.toml"), catalog("disk-out", &out)).expect("catalog");
    let mut config = Config::default();
    config.catalog.source = sluice::config::CatalogSourceKind::File;
    config.catalog.path = dir.path().join("catalog.toml");
    config.log = config::Log {
        dir: disk.join("log"),
        durability: config::Durability::Fsync,
        segment_bytes: 64 << 10,
        ..config::Log::default()
    };
    config.delivery.file_dir = dir.path().to_owned();
    let server = TestServer::start_in(dir, config);
    // Fill the disk.
    let filler = disk.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 2 << 20]);

    let client = common::client();
    let post = |id: String| {
        client
            .post(server.url("/v1/track"))
            .header("authorization", common::basic("web-key"))
            .json(&json!({"userId":"u","event":"E","messageId":id,"properties":{"p":"x".repeat(500)}}))
            .send()
    };
    let ready = || async {
        reqwest::get(server.admin_url("/ready"))
            .await
            .expect("ready")
            .status()
    };
    let mut acked = Vec::new();
    let mut refused = 0;
    for n in 0..200 {
        let r = post(format!("full-{n}")).await.expect("send");
        match r.status().as_u16() {
            200 => acked.push(format!("full-{n}")),
            503 => refused += 1,
            other => panic!("unexpected {other}"),
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "a full disk refuses appends");
    assert_eq!(ready().await, 503, "/ready is red with the disk full");

    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post("after-free".into()).await.expect("send");
        if r.status() == 200 {
            acked.push("after-free".into());
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready().await, 200, "/ready is green again");
    let delivered = wait_delivered(&out, 10, |ids| acked.iter().all(|id| ids.contains(id)));
    let stored: Vec<String> = server
        .stored()
        .iter()
        .filter_map(|r| r["event"]["messageId"].as_str().map(str::to_owned))
        .collect();
    for id in &acked {
        assert!(delivered.contains(id), "acknowledged {id} is delivered");
    }
    assert!(stored.contains(&"after-free".to_owned()));
}
