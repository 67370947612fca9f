//! `fetch` inside functions, against a real HTTP server on this machine: what a function
//! sends and reads back, the private-address guard against every spelling of a loopback,
//! link-local or metadata address (the server counts that none of them reached it), and
//! the limits on time, calls and size. Time spent waiting on the network is not run
//! time, in the engine and in the watchdog of delivery's function host.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, basic, client};
use serde_json::{Value, json};
use sluice::functions::{FetchLimits, Handler, Limits, Outcome, Sandbox};

/// An HTTP/1.1 server on 127.0.0.1 that counts the requests it gets:
/// `/echo` answers the request (method, a header, body) as JSON; `/big` 2 MiB;
/// `/slow?ms=N` answers after N ms; `/redirect` sends to `/echo`, `/away` to `/echo`
/// on another origin.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || answer(stream, port));
            }
        });
        Self { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn answer(stream: TcpStream, port: u16) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut headers = Vec::new();
    if reader.read_line(&mut head).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim().split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (status, extra, payload) = if target == "/echo" {
        let echoed = json!({"method": method, "key": header("x-key"),
                            "body": String::from_utf8_lossy(&body)});
        (
            "200 OK",
            "Content-Type: application/json\r\nX-Upstream: yes\r\n".to_owned(),
            echoed.to_string(),
        )
    } else if target == "/big" {
        ("200 OK", String::new(), "x".repeat(2 << 20))
    } else if let Some(ms) = target.strip_prefix("/slow?ms=") {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        (
            "200 OK",
            "Content-Type: application/json\r\n".to_owned(),
            r#"{"tier":"gold"}"#.to_owned(),
        )
    } else if target == "/away" {
        // The same server under another name: another origin.
        (
            "302 Found",
            format!("Location: http://localhost:{port}/echo\r\n"),
            String::new(),
        )
    } else if target == "/redirect" {
        (
            "302 Found",
            format!("Location: http://127.0.0.1:{port}/echo\r\n"),
            String::new(),
        )
    } else {
        ("404 Not Found", String::new(), String::new())
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
}

fn limits(fetch: FetchLimits) -> Limits {
    Limits {
        time: Duration::from_millis(200),
        fetch,
        ..Limits::default()
    }
}

fn open() -> FetchLimits {
    FetchLimits {
        allow_private: true,
        ..FetchLimits::default()
    }
}

fn run(code: &str, limits: Limits, event: &Value) -> Outcome {
    let mut fx = Sandbox::load(code, &json!({"apiKey": "k-1"}), limits)
        .unwrap_or_else(|e| panic!("loads: {e}"));
    fx.invoke(Handler::Track, &event.to_string()).outcome
}

fn returned(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Event(json) => serde_json::from_str(json).expect("JSON"),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Tries `event.url` and says what happened, as the event.
const TRY: &str = r#"
async function onTrack(event) {
  try {
    const r = await fetch(event.url);
    return { reached: r.status };
  } catch (e) {
    return { refused: e.message, name: e.name };
  }
}
"#;

#[test]
fn a_function_sends_a_request_and_reads_the_answer() {
    let up = Upstream::start();
    let code = r#"
    async function onTrack(event, settings) {
      const r = await fetch(event.url, {
        method: "post",
        headers: { "X-Key": settings.apiKey, "Content-Type": "application/json" },
        body: JSON.stringify({ user: event.userId }),
      });
      const echoed = await r.json();
      event.properties = { ok: r.ok, status: r.status, type: r.headers.get("content-type"),
                           upstream: r.headers.get("X-UPSTREAM"), missing: r.headers.get("nope"),
                           redirected: r.redirected, echoed };
      return event;
    }
    "#;
    let out = returned(&run(
        code,
        limits(open()),
        &json!({"type": "track", "userId": "u-7", "url": up.url("/echo")}),
    ));
    let p = &out["properties"];
    assert_eq!(p["ok"], true, "{out}");
    assert_eq!(p["status"], 200);
    assert_eq!(p["type"], "application/json");
    assert_eq!(p["upstream"], "yes");
    assert_eq!(p["missing"], Value::Null);
    assert_eq!(p["redirected"], false);
    assert_eq!(p["echoed"]["method"], "POST");
    assert_eq!(p["echoed"]["key"], "k-1");
    assert_eq!(p["echoed"]["body"], r#"{"user":"u-7"}"#);

    // A redirect is followed, and the response says so.
    let code = "async function onTrack(e) { const r = await fetch(e.url); \
                return { redirected: r.redirected, url: r.url, body: await r.json() }; }";
    let out = returned(&run(
        code,
        limits(open()),
        &json!({"url": up.url("/redirect")}),
    ));
    assert_eq!(out["redirected"], true, "{out}");
    assert_eq!(out["url"], up.url("/echo"));
    assert_eq!(out["body"]["method"], "GET");
}

#[test]
fn private_loopback_and_metadata_addresses_are_refused_in_every_spelling() {
    let up = Upstream::start();
    let port = up.port;
    let urls = [
        format!("http://127.0.0.1:{port}/echo"),
        format!("http://localhost:{port}/echo"),
        format!("http://LOCALHOST:{port}/echo"),
        format!("http://api.localhost:{port}/echo"),
        // The fully qualified form.
        format!("http://localhost.:{port}/echo"),
        format!("http://127.1:{port}/echo"),
        format!("http://2130706433:{port}/echo"),
        format!("http://0x7f000001:{port}/echo"),
        format!("http://0177.0.0.1:{port}/echo"),
        format!("http://0.0.0.0:{port}/echo"),
        format!("http://[::1]:{port}/echo"),
        format!("http://[::ffff:127.0.0.1]:{port}/echo"),
        format!("http://[::ffff:7f00:1]:{port}/echo"),
        format!("http://[::127.0.0.1]:{port}/echo"),
        format!("http://[64:ff9b::7f00:1]:{port}/echo"),
        format!("http://[2002:7f00:1::]:{port}/echo"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://100.64.0.1/".to_owned(),
    ];
    for url in &urls {
        let out = returned(&run(
            TRY,
            limits(FetchLimits::default()),
            &json!({"url": url}),
        ));
        let refused = out["refused"].as_str().unwrap_or_default();
        assert!(
            refused.contains("private"),
            "{url} was not refused as private: {out}"
        );
        assert_eq!(out["name"], "TypeError", "{url}: {out}");
    }
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/",
        "data:text/plain,hi",
        "not a url",
    ] {
        let out = returned(&run(
            TRY,
            limits(FetchLimits::default()),
            &json!({"url": url}),
        ));
        assert!(out["refused"].is_string(), "{url}: {out}");
    }
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "a refused fetch reached the server"
    );
    // The same function, allowed private addresses, does reach it.
    let out = returned(&run(TRY, limits(open()), &json!({"url": up.url("/echo")})));
    assert_eq!(out["reached"], 200, "{out}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn fetch_is_bounded_in_size_calls_and_time_and_waiting_is_not_run_time() {
    let up = Upstream::start();
    let tight = limits(FetchLimits {
        time: Duration::from_millis(600),
        calls: 3,
        bytes: 64 << 10,
        allow_private: true,
    });
    // A response over the size limit.
    let out = returned(&run(TRY, tight, &json!({"url": up.url("/big")})));
    assert!(
        out["refused"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than 65536 bytes"),
        "{out}"
    );
    // A request body over it.
    let code = "async function onTrack(e) { try { await fetch(e.url, {method: 'POST', \
                body: 'x'.repeat(70000)}); return {sent: true}; } catch (x) { return {refused: x.message}; } }";
    let out = returned(&run(code, tight, &json!({"url": up.url("/echo")})));
    assert!(
        out["refused"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 65536"),
        "{out}"
    );
    // A server slower than the budget: the call times out, the function goes on.
    let began = Instant::now();
    let out = returned(&run(TRY, tight, &json!({"url": up.url("/slow?ms=3000")})));
    assert_eq!(out["refused"], "fetch: timed out", "{out}");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    // A fourth call in one invocation.
    let code = "async function onTrack(e) { const seen = []; for (let i = 0; i < 4; i++) { \
                try { seen.push((await fetch(e.url)).status); } catch (x) { seen.push(x.message); } } \
                return { seen }; }";
    let out = returned(&run(code, tight, &json!({"url": up.url("/echo")})));
    assert_eq!(out["seen"][0], 200, "{out}");
    assert_eq!(out["seen"][2], 200, "{out}");
    assert_eq!(
        out["seen"][3], "fetch: at most 3 calls per invocation",
        "{out}"
    );
    // Two waits of 150 ms each under a 200 ms run-time limit: waiting is not run time.
    let code = "async function onTrack(e) { const a = await (await fetch(e.url)).json(); \
                const b = await (await fetch(e.url)).json(); return { a, b }; }";
    let out = returned(&run(code, tight, &json!({"url": up.url("/slow?ms=150")})));
    assert_eq!(out["b"]["tier"], "gold", "{out}");
    // The budget is per invocation: the next event has all of it again.
    let mut fx = Sandbox::load(code, &json!({}), tight).expect("loads");
    for _ in 0..2 {
        let event = json!({"url": up.url("/slow?ms=150")}).to_string();
        let out = returned(&fx.invoke(Handler::Track, &event).outcome);
        assert_eq!(out["a"]["tier"], "gold", "{out}");
    }
}

#[test]
fn what_a_function_passes_to_fetch_is_checked() {
    let up = Upstream::start();
    for (call, says) in [
        (
            "fetch(e.url, { body: { a: 1 } })",
            "a body must be a string",
        ),
        (
            "fetch(e.url, { headers: 'x' })",
            "headers must be an object",
        ),
        ("fetch(e.url, { headers: [['a']] })", "name-value pairs"),
        ("fetch(e.url, 'GET')", "options must be an object"),
        (
            "fetch(e.url, { redirect: 'error' })",
            "redirect must be follow or manual",
        ),
        ("fetch(e.url, { method: 'G E T' })", "not an HTTP method"),
        (
            "fetch(e.url, { headers: { 'bad name': 'v' } })",
            "fetch: not a header name",
        ),
        (
            "fetch(e.url, { headers: { 'x-a': 'v\\n' } })",
            "fetch: not a header value",
        ),
        (
            "fetch(e.url + '?' + 'a'.repeat(9000))",
            "a URL may be at most 8192 bytes",
        ),
        (
            "fetch(e.url, { headers: { 'x-a': 'v'.repeat(70000) } })",
            "headers may hold at most 65536 bytes",
        ),
    ] {
        let code = format!(
            "async function onTrack(e) {{ try {{ await {call}; return {{ sent: true }}; }} \
             catch (x) {{ return {{ refused: x.message }}; }} }}"
        );
        let out = returned(&run(
            &code,
            limits(open()),
            &json!({"url": up.url("/echo")}),
        ));
        assert!(
            out["refused"].as_str().unwrap_or_default().contains(says),
            "{call}: {out}"
        );
    }
    // `fetch` is fixed: a function cannot replace it for the next invocation.
    let code = "async function onTrack(e) { try { globalThis.fetch = null; } catch (_) {} \
                return { kind: typeof fetch, host: typeof __sluice_fetch }; }";
    let out = returned(&run(code, limits(open()), &json!({})));
    assert_eq!(out, json!({"kind": "function", "host": "undefined"}));
}

/// In delivery: a function that waits 1.5 s on an enrichment service (past the function
/// host's watchdog of 200 ms per event plus a second) is not killed, and what it read
/// reaches the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_function_enriches_events_from_a_slow_service_in_delivery() {
    let up = Upstream::start();
    let code = format!(
        "async function onTrack(event) {{ const r = await fetch('{}'); \
         event.properties.tier = (await r.json()).tier; return event; }}",
        up.url("/slow?ms=1500")
    );
    let catalog = format!(
        "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
         [[destinations]]\nid = \"disk\"\ntype = \"file\"\nsources = [\"web\"]\n\
         settings = {{ path = \"events.ndjson\" }}\n\
         [destinations.function]\nid = \"fn_enrich\"\nversion = 1\ncode = '''{code}'''\nsettings = {{}}\n"
    );
    let server = TestServer::start_with(&catalog, |c| {
        c.delivery.allow_private_destinations = true;
    });
    let path = server.config.delivery.file_dir.join("events.ndjson");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    loop {
        sent += 1;
        let r = client()
            .post(server.url("/v1/track"))
            .header("authorization", basic("web-key"))
            .json(
                &json!({"userId": "u", "event": "Viewed", "messageId": format!("m-{sent}"),
                          "properties": {}}),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let written: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if let Some(first) = written.first() {
            assert_eq!(first["properties"]["tier"], "gold", "{first}");
            break;
        }
        assert!(Instant::now() < deadline, "no enriched event arrived");
    }
    let dir = sluice::delivery::dead_letter_dir(&server.config.log.dir);
    let dead = sluice::delivery::dead_letter::read(&dir, "disk").expect("dead letters");
    assert!(dead.entries.is_empty(), "an event went to the dead letters");
}

/// The watchdog's extra time is what the calls took, not what they might have: a
/// function that makes a quick call and then hangs where the engine cannot stop it is
/// killed within the watchdog's usual 1.2 s, not that plus the 5 s a call may take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_call_does_not_buy_a_hanging_function_more_time() {
    use sluice::functions::Failure;
    use sluice::functions::host::{Host, Loaded};
    let up = Upstream::start();
    let mut host = Host::new(env!("CARGO_BIN_EXE_sluice").into(), true);
    let function = Loaded {
        id: "fn_hang".into(),
        version: 1,
        code: "async function onTrack(e) { await fetch(e.url); \
               for (;;) new Promise(() => { for (;;) {} }); }"
            .into(),
        settings: json!({}),
    };
    let event = json!({"type": "track", "url": up.url("/echo")}).to_string();
    let began = Instant::now();
    let ran = host
        .run(&function, &[(Handler::Track, event.as_str())])
        .await
        .expect("runs");
    let took = began.elapsed();
    host.stop().await;
    assert!(
        matches!(ran[0].outcome, Outcome::Failed(Failure::Timeout, _)),
        "{:?}",
        ran[0].outcome
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 1, "the call was made");
    assert!(took < Duration::from_secs(4), "killed after {took:?}");
}

#[test]
fn headers_of_a_functions_own_never_follow_a_redirect_to_another_origin() {
    let up = Upstream::start();
    let code = "async function onTrack(e, settings) { \
                const plain = await fetch(e.away); \
                const keyed = await fetch(e.away, { headers: { 'X-Key': settings.apiKey } }); \
                const same = await fetch(e.same, { headers: { 'X-Key': settings.apiKey } }); \
                const manual = await fetch(e.same, { redirect: 'manual' }); \
                return { plain: plain.status, keyed: keyed.status, location: keyed.headers.get('location'), \
                         same: (await same.json()).key, manual: manual.status }; }";
    let out = returned(&run(
        code,
        limits(open()),
        &json!({"away": up.url("/away"), "same": up.url("/redirect")}),
    ));
    assert_eq!(out["plain"], 200, "{out}");
    assert_eq!(out["keyed"], 302, "the key went to another origin: {out}");
    assert_eq!(
        out["location"],
        format!("http://localhost:{}/echo", up.port)
    );
    assert_eq!(out["same"], "k-1", "{out}");
    assert_eq!(out["manual"], 302, "{out}");
}

#[test]
fn errors_never_show_the_url_and_refused_calls_count() {
    // Nothing listens on port 9 of this machine: the call fails to connect.
    let code = "async function onTrack(e) { try { await fetch(e.url); return {}; } \
                catch (x) { return { said: x.message }; } }";
    for (url, fetch) in [
        ("http://user:s3cr3t@127.0.0.1:9/x?api_key=t0k3n", open()),
        (
            "http://user:s3cr3t@127.0.0.1:9/x?api_key=t0k3n",
            FetchLimits::default(),
        ),
        (
            "http://user:s3cr3t@[::1/x?api_key=t0k3n",
            FetchLimits::default(),
        ),
    ] {
        let out = returned(&run(code, limits(fetch), &json!({ "url": url })));
        let said = out["said"].as_str().unwrap_or_default();
        assert!(said.starts_with("fetch"), "{said}");
        assert!(
            !said.contains("s3cr3t") && !said.contains("t0k3n"),
            "{said}"
        );
    }
    // Refused calls are calls: the eleventh is over the limit of ten.
    let code = "async function onTrack(e) { let last = ''; for (let i = 0; i < 11; i++) { \
                try { await fetch('http://127.0.0.1/'); } catch (x) { last = x.message; } } \
                return { last }; }";
    let out = returned(&run(code, limits(FetchLimits::default()), &json!({})));
    assert_eq!(
        out["last"], "fetch: at most 10 calls per invocation",
        "{out}"
    );
}

#[test]
fn code_cannot_fetch_while_it_loads() {
    let up = Upstream::start();
    let code = format!(
        "let said = ''; fetch('{}').catch((e) => {{ said = e.message; }}); \
         async function onTrack() {{ return {{ said }}; }}",
        up.url("/echo")
    );
    let out = returned(&run(&code, limits(open()), &json!({})));
    assert!(
        out["said"]
            .as_str()
            .unwrap_or_default()
            .contains("while the function loads"),
        "{out}"
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

/// A name (not `localhost`, which the URL's text gives away) that resolves to a
/// loopback or private address, as every machine's own name does (`/etc/hosts`).
#[test]
fn a_name_that_resolves_to_a_private_address_is_refused() {
    use std::net::ToSocketAddrs;
    let up = Upstream::start();
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("this machine's name")
        .trim()
        .to_owned();
    let addrs: Vec<_> = (name.as_str(), up.port)
        .to_socket_addrs()
        .expect("this machine's name resolves")
        .collect();
    assert!(
        addrs
            .iter()
            .all(|a| sluice::catalog::reach::is_private(a.ip())),
        "{name} resolves to a public address here: {addrs:?}"
    );
    let url = format!("http://{name}:{}/echo", up.port);
    let out = returned(&run(
        TRY,
        limits(FetchLimits::default()),
        &json!({ "url": url }),
    ));
    let refused = out["refused"].as_str().unwrap_or_default();
    assert!(
        refused.contains("every address of this host is private"),
        "{out}"
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
    // Allowed, the same name reaches the server: the refusal was the guard's.
    let out = returned(&run(TRY, limits(open()), &json!({ "url": url })));
    assert_eq!(out["reached"], 200, "{out}");
}

/// A host process that asks its watchdog for more time than any call may take is cut
/// off at once, not waited on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_asks_to_wait_without_bound_is_stopped() {
    use sluice::functions::Failure;
    use sluice::functions::host::{Host, Loaded};
    let dir = tempfile::tempdir().expect("dir");
    let program = dir.path().join("greedy-host");
    std::fs::write(
        &program,
        "#!/bin/sh\nread load\necho '{\"status\":\"loaded\"}'\nread run\n\
         echo '{\"status\":\"waiting\",\"millis\":18446744073709551615}'\n\
         echo '{\"status\":\"waiting\",\"millis\":5000}'\nsleep 30\n",
    )
    .expect("write");
    let mut permissions = std::fs::metadata(&program).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&program, permissions).expect("chmod");
    let mut host = Host::new(program, false);
    let function = Loaded {
        id: "fn_greedy".into(),
        version: 1,
        code: "async function onTrack(e) { return e; }".into(),
        settings: json!({}),
    };
    let began = Instant::now();
    let ran = host
        .run(&function, &[(Handler::Track, r#"{"type":"track"}"#)])
        .await
        .expect("runs");
    host.stop().await;
    assert!(
        matches!(ran[0].outcome, Outcome::Failed(Failure::Error, _)),
        "{:?}",
        ran[0].outcome
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
}

/// A run abandoned half-way (its caller went away) leaves the child's answer in the
/// pipe: the next run must not take it for its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_run_does_not_answer_the_next() {
    use sluice::functions::host::{Host, Loaded};
    let up = Upstream::start();
    let mut host = Host::new(env!("CARGO_BIN_EXE_sluice").into(), true);
    let function = Loaded {
        id: "fn_echo".into(),
        version: 1,
        code: "async function onTrack(e) { if (e.url) await fetch(e.url); return { id: e.messageId }; }"
            .into(),
        settings: json!({}),
    };
    let slow =
        json!({"type": "track", "messageId": "first", "url": up.url("/slow?ms=800")}).to_string();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        host.run(&function, &[(Handler::Track, slow.as_str())]),
    )
    .await;
    assert!(abandoned.is_err(), "the first run was to be cut short");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let next = json!({"type": "track", "messageId": "second"}).to_string();
    let ran = host
        .run(&function, &[(Handler::Track, next.as_str())])
        .await
        .expect("runs");
    host.stop().await;
    assert_eq!(returned(&ran[0].outcome)["id"], "second");
}
