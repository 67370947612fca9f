//! Insert functions in delivery, through a real server: each event goes through the
//! destination's function in a `sluice function-host` process before the send. What it
//! returns is sent, dropped events are settled, failures go to the dead letters with the
//! failure as reason, a `RetryError` is retried until `max_age_secs`, and code that the
//! engine cannot stop is killed without holding up the events after it.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, basic, client, metric};
use serde_json::{Value, json};

const MASK: &str = r#"
async function onTrack(event, settings) {
  if (event.event === "Skip") throw new DropEvent("not for this destination");
  if (event.event === "Later") throw new RetryError("rate limited");
  if (event.event === "Bad") throw new ValidationError("no email");
  if (event.event === "Hang") for (;;) new Promise(() => { for (;;) {} });
  const email = event.properties.email;
  event.properties.email = email.replace(/^[^@]+/, settings.mask);
  event.properties.masked_by = settings.mask.length;
  return event;
}
async function onIdentify(event) {
  return;
}
"#;

fn catalog(function: &str) -> String {
    format!(
        "[[sources]]\nid = \"web\"\nwrite_keys = [{{ key = \"web-key\" }}]\n\
         [[destinations]]\nid = \"disk\"\ntype = \"file\"\nsources = [\"web\"]\n\
         retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200, max_age_secs = 2 }}\n\
         settings = {{ path = \"events.ndjson\" }}\n{function}"
    )
}

/// A function section; each test names its own function, so the counters one test reads
/// (the process has one metrics recorder) are never moved by another.
fn function(id: &str, code: &str) -> String {
    format!(
        "[destinations.function]\nid = \"{id}\"\nversion = 3\ncode = '''{code}'''\n\
         settings = {{ mask = \"***\" }}\n"
    )
}

async fn send(server: &TestServer, events: &[Value]) {
    let r = client()
        .post(server.url("/v1/batch"))
        .header("authorization", basic("web-key"))
        .json(&json!({ "batch": events }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

fn track(id: &str, name: &str) -> Value {
    json!({"type": "track", "userId": "u", "event": name, "messageId": id,
           "properties": {"email": "ada@example.com"}})
}

fn written(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect()
}

/// The destination's dead letters, as JSON (read from the store's file).
async fn dead_letters(server: &TestServer) -> Vec<Value> {
    let dir = sluice::delivery::dead_letter_dir(&server.config.log.dir);
    let contents = sluice::delivery::dead_letter::read(&dir, "disk").expect("dead letters");
    contents
        .entries
        .iter()
        .map(|e| serde_json::to_value(e).expect("entry"))
        .collect()
}

async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_function_changes_drops_and_fails_events_before_the_send() {
    let out = tempfile::tempdir().expect("tempdir");
    let path = out.path().join("events.ndjson");
    let server = TestServer::start_with(&catalog(&function("mask-email", MASK)), |c| {
        c.delivery.file_dir = out.path().to_owned();
        c.functions.program = env!("CARGO_BIN_EXE_sluice").into();
    });
    send(
        &server,
        &[
            track("m-1", "Signed Up"),
            track("m-2", "Skip"),
            track("m-3", "Bad"),
            json!({"type": "identify", "userId": "u", "messageId": "m-4"}),
            json!({"type": "page", "userId": "u", "name": "Home", "messageId": "m-5"}),
            track("m-6", "Later"),
            track("m-7", "Hang"),
            track("m-8", "Signed Up"),
        ],
    )
    .await;
    // The events it answers are sent; `page` has no handler and goes through unchanged.
    eventually("sent", Duration::from_secs(20), async || {
        written(&path).len() >= 3
    })
    .await;
    let sent = written(&path);
    let ids: Vec<&str> = sent
        .iter()
        .filter_map(|e| e["messageId"].as_str())
        .collect();
    assert_eq!(ids, ["m-1", "m-5", "m-8"], "{sent:?}");
    assert_eq!(sent[0]["properties"]["email"], "***@example.com");
    assert_eq!(
        sent[0]["properties"]["masked_by"], 3,
        "settings reach the code"
    );
    assert_eq!(sent[1]["name"], "Home");

    // Failures are kept with the dead letters, each with its reason; the retried event
    // goes there once older than max_age_secs.
    eventually("dead-lettered", Duration::from_secs(20), async || {
        dead_letters(&server).await.len() == 3
    })
    .await;
    let mut reasons: Vec<(String, String)> = dead_letters(&server)
        .await
        .iter()
        .map(|e| {
            (
                e["event"]["messageId"].as_str().unwrap_or("").to_owned(),
                e["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("m-3".to_owned(), "function_invalid".to_owned()),
            ("m-6".to_owned(), "function_retry".to_owned()),
            ("m-7".to_owned(), "function_timeout".to_owned()),
        ]
    );
    // The dead letters keep the event as it was stored, not as the function saw it.
    let kept = dead_letters(&server).await;
    assert!(
        kept.iter()
            .all(|e| e["event"]["properties"]["email"] == "ada@example.com"
                || e["event"]["properties"].is_null())
    );

    let m = server.metrics().await;
    for (outcome, at_least) in [
        ("event", 2.0),
        ("passed", 1.0),
        ("dropped", 2.0),
        ("invalid", 1.0),
        ("retry", 1.0),
        ("timeout", 1.0),
    ] {
        let series = format!(
            "sluice_function_invocations_total{{function=\"mask-email\",destination=\"disk\",outcome=\"{outcome}\"}}"
        );
        assert!(metric(&m, &series) >= at_least, "{series} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_does_not_load_sends_nothing_and_keeps_every_event() {
    let out = tempfile::tempdir().expect("tempdir");
    let path = out.path().join("events.ndjson");
    let server = TestServer::start_with(
        &catalog(&function("does-not-load", "async function onTrack( {")),
        |c| {
            c.delivery.file_dir = out.path().to_owned();
            c.functions.program = env!("CARGO_BIN_EXE_sluice").into();
        },
    );
    send(
        &server,
        &[track("m-1", "Signed Up"), track("m-2", "Signed Up")],
    )
    .await;
    eventually("dead-lettered", Duration::from_secs(20), async || {
        dead_letters(&server).await.len() == 2
    })
    .await;
    let kept = dead_letters(&server).await;
    assert!(
        kept.iter().all(|e| e["reason"] == "function_load"),
        "{kept:?}"
    );
    assert!(
        kept[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("SyntaxError"),
        "{kept:?}"
    );
    assert!(written(&path).is_empty(), "nothing bypasses the function");
}

/// A function host whose parent dies (SIGKILL: no chance to kill its children) ends by
/// itself, even while it runs code the engine cannot stop, instead of keeping a core.
#[test]
fn a_host_whose_parent_died_ends_even_while_its_code_hangs() {
    let dir = tempfile::tempdir().expect("dir");
    let load = json!({"load": {"code": "async function onTrack(e) { for (;;) new Promise(() => { for (;;) {} }); }",
                               "settings": {}}});
    let run = json!({"run": {"events": [["onTrack", "{\"type\":\"track\"}"]]}});
    std::fs::write(dir.path().join("requests"), format!("{load}\n{run}\n")).expect("write");
    let pid_file = dir.path().join("pid");
    // A parent shell that starts the host, says its pid, and waits on it.
    let mut parent = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "\"{}\" function-host < \"{}\" > /dev/null 2>&1 & echo $! > \"{}\"; wait",
            env!("CARGO_BIN_EXE_sluice"),
            dir.path().join("requests").display(),
            pid_file.display()
        ))
        .spawn()
        .expect("sh");
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the host never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the outcome, the host does not outlive the test.
    struct Reaped(u32);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .status();
        }
    }
    let _reaped = Reaped(pid);
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
            .flatten()
    };
    // It is running its endless code.
    std::thread::sleep(Duration::from_millis(700));
    assert!(matches!(state(), Some('R' | 'S')), "{:?}", state());
    parent.kill().expect("SIGKILL the parent");
    let _ = parent.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(state(), None | Some('Z' | 'X')) {
        assert!(
            Instant::now() < deadline,
            "the orphaned host still runs: {:?}",
            state()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
