//! The functions sandbox, with real JavaScript: every handler, Segment's error classes
//! mapped to what becomes of the event, and each limit against hostile code (endless
//! loops, memory bombs, deep recursion, prototype pollution across invocations, huge
//! answers). After a limit stops a function, its next event runs on a fresh engine.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::functions::{Failure, Handler, Limits, LoadError, Outcome, Sandbox};

fn limits() -> Limits {
    Limits {
        time: Duration::from_millis(200),
        memory: 16 << 20,
        stack: 256 << 10,
        output: 64 << 10,
        ..Limits::default()
    }
}

fn load(code: &str) -> Sandbox {
    Sandbox::load(code, &json!({"apiKey": "k-1", "mask": "email"}), limits())
        .unwrap_or_else(|e| panic!("loads: {e}"))
}

fn event(kind: &str) -> String {
    json!({"type": kind, "event": "Signed Up", "userId": "u-1", "messageId": "m-1",
           "properties": {"email": "ada@example.com", "plan": "pro"},
           "traits": {"email": "ada@example.com"}})
    .to_string()
}

fn returned(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Event(json) => serde_json::from_str(json).expect("JSON"),
        other => panic!("expected an event, got {other:?}"),
    }
}

fn failed(outcome: &Outcome) -> (Failure, &str) {
    match outcome {
        Outcome::Failed(failure, message) => (*failure, message.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn every_handler_runs_on_its_event_type_and_missing_ones_pass() {
    let mut fx = load(
        r#"
        const mark = (event, settings, by) => { event.by = by; event.key = settings.apiKey; return event; };
        async function onTrack(event, settings) { return mark(event, settings, "onTrack"); }
        async function onIdentify(event, settings) { return mark(event, settings, "onIdentify"); }
        async function onPage(event, settings) { return mark(event, settings, "onPage"); }
        async function onScreen(event, settings) { return mark(event, settings, "onScreen"); }
        function onGroup(event, settings) { return mark(event, settings, "onGroup"); }
        async function onBatch(events, settings) { return events.map((e) => mark(e, settings, "onBatch")); }
        "#,
    );
    for kind in ["track", "identify", "page", "screen", "group"] {
        let handler = Handler::of(kind).expect("a handler");
        let out = returned(&fx.invoke(handler, &event(kind)).outcome);
        assert_eq!(out["by"], handler.name(), "{out}");
        assert_eq!(out["key"], "k-1", "{out}");
        assert_eq!(out["properties"]["plan"], "pro", "{out}");
    }
    assert_eq!(
        fx.invoke(Handler::Alias, &event("alias")).outcome,
        Outcome::Passed,
        "no onAlias: the event goes on unchanged"
    );
    let batch = format!("[{},{}]", event("track"), event("page"));
    let out = returned(&fx.invoke(Handler::Batch, &batch).outcome);
    assert_eq!(out[1]["by"], "onBatch", "{out}");
    assert_eq!(Handler::of("nonsense"), None);
}

#[test]
fn segment_error_classes_decide_what_becomes_of_the_event() {
    let mut fx = load(
        r#"
        async function onTrack(event) {
            switch (event.event) {
                case "nothing": return;
                case "null": return null;
                case "drop": throw new DropEvent("not wanted");
                case "retry": throw new RetryError("upstream busy");
                case "invalid": throw new ValidationError("no email");
                case "unsupported": throw new EventNotSupported("track");
                case "payload": throw new InvalidEventPayload("bad");
                case "bug": return event.missing.field;
                case "string": throw "plain string";
                case "number": return 42;
                case "cycle": { const a = {}; a.a = a; return a; }
                case "pending": return new Promise(() => {});
                default: await null; return { ...event, seen: true };
            }
        }
        "#,
    );
    let run = |fx: &mut Sandbox, name: &str| {
        let input = json!({"type": "track", "event": name}).to_string();
        fx.invoke(Handler::Track, &input).outcome
    };
    assert_eq!(run(&mut fx, "nothing"), Outcome::Dropped);
    assert_eq!(run(&mut fx, "null"), Outcome::Dropped);
    assert_eq!(run(&mut fx, "drop"), Outcome::Dropped);
    let retry = run(&mut fx, "retry");
    let (failure, message) = failed(&retry);
    assert_eq!((failure, message), (Failure::Retry, "upstream busy"));
    assert!(failure.retryable());
    for (name, class) in [
        ("invalid", "ValidationError"),
        ("unsupported", "EventNotSupported"),
        ("payload", "InvalidEventPayload"),
    ] {
        let outcome = run(&mut fx, name);
        let (failure, message) = failed(&outcome);
        assert_eq!(failure, Failure::Invalid, "{name}");
        assert!(!failure.retryable());
        assert!(message.starts_with(class), "{message}");
    }
    for name in ["bug", "string", "number", "cycle", "pending"] {
        let outcome = run(&mut fx, name);
        let (failure, message) = failed(&outcome);
        assert_eq!(failure, Failure::Error, "{name}: {message}");
        assert!(!message.is_empty(), "{name}");
    }
    assert!(failed(&run(&mut fx, "bug")).1.starts_with("TypeError"));
    assert_eq!(returned(&run(&mut fx, "ok"))["seen"], true);
}

#[test]
fn an_endless_function_is_stopped_and_its_next_event_runs_on_a_fresh_engine() {
    let mut fx = load(
        r#"
        let calls = 0;
        async function onTrack(event) {
            calls += 1;
            if (event.event === "spin") { for (;;) {} }
            if (event.event === "catch") { for (;;) { try { for (;;) {} } catch (e) {} } }
            if (event.event === "await") { for (;;) { await null; } }
            return { calls };
        }
        "#,
    );
    for name in ["spin", "catch", "await"] {
        let input = json!({"type": "track", "event": name}).to_string();
        let ran = fx.invoke(Handler::Track, &input);
        assert_eq!(failed(&ran.outcome).0, Failure::Timeout, "{name}");
        assert!(ran.took < Duration::from_secs(5), "{name}: {:?}", ran.took);
        let out = returned(&fx.invoke(Handler::Track, &event("track")).outcome);
        assert_eq!(out["calls"], 1, "rebuilt after {name}: {out}");
    }
}

#[test]
fn a_memory_bomb_is_stopped_and_the_engine_recovers() {
    // Time enough that the memory limit, not the clock, stops it on a busy machine.
    let roomy = Limits {
        time: Duration::from_secs(5),
        ..limits()
    };
    let mut fx = Sandbox::load(
        r#"
        async function onTrack(event) {
            if (event.event === "grow") { const a = []; for (;;) a.push("x".repeat(1024) + a.length); }
            if (event.event === "string") { let s = "x"; for (;;) s += s; }
            if (event.event === "deep") { const f = (n) => f(n + 1) + 1; return f(0); }
            return { ok: true };
        }
        "#,
        &json!({}),
        roomy,
    )
    .expect("loads");
    for (name, expected) in [
        ("grow", Failure::Memory),
        ("string", Failure::Memory),
        ("deep", Failure::Error),
    ] {
        let input = json!({"type": "track", "event": name}).to_string();
        let outcome = fx.invoke(Handler::Track, &input).outcome;
        let (failure, message) = failed(&outcome);
        assert_eq!(failure, expected, "{name}: {message}");
        assert_eq!(
            returned(&fx.invoke(Handler::Track, &event("track")).outcome)["ok"],
            true,
            "after {name}"
        );
    }
    assert!(fx.memory() < (16 << 20), "{}", fx.memory());
}

#[test]
fn nothing_one_invocation_does_to_the_built_ins_or_settings_reaches_the_next() {
    let mut fx = load(
        r#"
        async function onTrack(event, settings) {
            if (event.event === "pollute") {
                const tries = [
                    () => { Object.prototype.polluted = "yes"; },
                    () => { Array.prototype.push = () => 0; },
                    () => { JSON.stringify = () => "{}"; },
                    () => { Object.prototype.toString = () => "owned"; },
                    () => { Object.defineProperty(Object.prototype, "polluted2", { value: 1 }); },
                    () => { Object.setPrototypeOf(Object.prototype, { polluted: "yes" }); },
                    () => { ({}).__proto__.polluted = "yes"; },
                    () => { settings.apiKey = "stolen"; },
                    () => { delete settings.mask; },
                ];
                let refused = 0;
                for (const t of tries) { try { t(); } catch (e) { refused += 1; } }
                // A class of its own may still name its errors, and objects their methods.
                class Mine extends Error { constructor(m) { super(m); this.name = "Mine"; } }
                const o = {}; o.toString = () => "mine";
                return { done: true, refused, name: new Mine("x").name, own: String(o) };
            }
            const a = [];
            a.push(1);
            return { polluted: ({}).polluted ?? null, polluted2: ({}).polluted2 ?? null,
                     pushed: a.length, key: settings.apiKey, mask: settings.mask ?? null };
        }
        "#,
    );
    let pollute = json!({"type": "track", "event": "pollute"}).to_string();
    let first = returned(&fx.invoke(Handler::Track, &pollute).outcome);
    assert_eq!(first["name"], "Mine", "{first}");
    assert_eq!(first["own"], "mine", "{first}");
    let out = returned(&fx.invoke(Handler::Track, &event("track")).outcome);
    assert_eq!(
        out,
        json!({"polluted": null, "polluted2": null, "pushed": 1, "key": "k-1", "mask": "email"})
    );
}

#[test]
fn an_answer_over_the_output_limit_is_refused() {
    let mut fx = load(
        r#"async function onTrack(event) { event.blob = "x".repeat(100 * 1024); return event; }"#,
    );
    let outcome = fx.invoke(Handler::Track, &event("track")).outcome;
    let (failure, message) = failed(&outcome);
    assert_eq!(failure, Failure::TooLarge, "{message}");
}

#[test]
fn the_engine_has_no_file_system_process_environment_or_modules() {
    let mut fx = load(
        r#"
        async function onTrack() {
            let imported = "no";
            try { await import("os"); imported = "yes"; } catch (e) { imported = "refused"; }
            return { require: typeof require, process: typeof process, std: typeof std,
                     os: typeof os, Deno: typeof Deno, scriptArgs: typeof scriptArgs, imported };
        }
        "#,
    );
    let out = returned(&fx.invoke(Handler::Track, &event("track")).outcome);
    assert_eq!(
        out,
        json!({"require": "undefined", "process": "undefined", "std": "undefined",
               "os": "undefined", "Deno": "undefined", "scriptArgs": "undefined",
               "imported": "refused"})
    );
}

#[test]
fn console_lines_are_kept_per_invocation_and_bounded() {
    let mut fx = load(
        r#"
        async function onTrack(event) {
            console.log("saw", event.messageId, { n: 1 });
            console.error("x".repeat(5000));
            for (let i = 0; i < 100; i++) console.info(i);
            return event;
        }
        "#,
    );
    let ran = fx.invoke(Handler::Track, &event("track"));
    assert_eq!(ran.logs.len(), 50);
    assert_eq!(ran.logs[0], r#"log saw m-1 {"n":1}"#);
    assert!(ran.logs[1].len() <= 1010, "{}", ran.logs[1].len());
    let ran = fx.invoke(Handler::Alias, &event("alias"));
    assert!(ran.logs.is_empty(), "{:?}", ran.logs);
}

#[test]
fn code_that_does_not_load_is_refused_with_its_error() {
    let settings = json!({});
    for (code, expected) in [
        ("async function onTrack( {", "SyntaxError"),
        ("throw new Error('boom at load')", "boom at load"),
        ("for (;;) {}", "time limit"),
    ] {
        match Sandbox::load(code, &settings, limits()) {
            Err(LoadError::Code(message)) => {
                assert!(message.contains(expected), "{code}: {message}");
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    assert!(matches!(
        Sandbox::load("", &json!([1]), limits()),
        Err(LoadError::Settings)
    ));
}

#[test]
fn one_function_stopped_leaves_another_untouched() {
    let mut spinner = load("async function onTrack() { for (;;) {} }");
    let mut steady = load("let n = 0; async function onTrack(e) { n += 1; return { n }; }");
    assert_eq!(
        returned(&steady.invoke(Handler::Track, &event("track")).outcome)["n"],
        1
    );
    assert_eq!(
        failed(&spinner.invoke(Handler::Track, &event("track")).outcome).0,
        Failure::Timeout
    );
    assert_eq!(
        returned(&steady.invoke(Handler::Track, &event("track")).outcome)["n"],
        2
    );
}

#[test]
fn work_queued_after_the_deadline_is_not_run_and_the_engine_is_replaced() {
    // Every job it schedules spins: after the deadline none more run.
    let mut fx = load(
        r#"
        let calls = 0;
        function loop() { Promise.resolve({ then() { for (;;) {} } }).catch(loop); }
        async function onTrack(event) {
            calls += 1;
            if (event.event === "jobs") loop();
            return { calls };
        }
        "#,
    );
    let input = json!({"type": "track", "event": "jobs"}).to_string();
    let ran = fx.invoke(Handler::Track, &input);
    assert_eq!(
        failed(&ran.outcome).0,
        Failure::Timeout,
        "{:?}",
        ran.outcome
    );
    assert!(ran.took < Duration::from_secs(5), "{:?}", ran.took);
    let out = returned(&fx.invoke(Handler::Track, &event("track")).outcome);
    assert_eq!(out["calls"], 1, "a fresh engine: {out}");
}

#[test]
fn what_reaches_the_host_is_an_event_and_bounded_text() {
    let mut fx = load(
        r#"
        async function onTrack(event) {
            switch (event.event) {
                case "tojson-number": return { toJSON() { return 5; } };
                case "tojson-undefined": return { toJSON() { return undefined; } };
                case "array": return [event];
                case "date": return new Date(0);
                case "huge-error": throw new Error("\u0001".repeat(1e6));
                case "surrogate":
                    console.log("a".repeat(999) + "\u{1F600}");
                    console.log("line one\nerror forged");
                    return { text: "\ud800 lone" };
                case "rebind":
                    try { JSON = { stringify: () => "{}" }; } catch (e) {}
                    try { globalThis.String = null; } catch (e) {}
                    return { ok: true };
                default: return { json: typeof JSON.stringify, string: typeof String };
            }
        }
        async function onBatch(events) { return events[0]; }
        "#,
    );
    let run = |fx: &mut Sandbox, name: &str| {
        fx.invoke(
            Handler::Track,
            &json!({"type": "track", "event": name}).to_string(),
        )
    };
    for name in ["tojson-number", "tojson-undefined", "array", "date"] {
        let outcome = run(&mut fx, name).outcome;
        assert_eq!(failed(&outcome).0, Failure::Error, "{name}: {outcome:?}");
    }
    let batch = fx
        .invoke(Handler::Batch, &format!("[{}]", event("track")))
        .outcome;
    assert_eq!(
        failed(&batch).0,
        Failure::Error,
        "onBatch must answer an array"
    );
    let outcome = run(&mut fx, "huge-error").outcome;
    assert!(failed(&outcome).1.len() <= 1000, "bounded");
    let ran = run(&mut fx, "surrogate");
    assert_eq!(failed(&ran.outcome).0, Failure::Error, "{:?}", ran.outcome);
    assert_eq!(ran.logs.len(), 2, "{:?}", ran.logs);
    assert!(ran.logs[1].starts_with("log line one\n"), "{:?}", ran.logs);
    assert_eq!(returned(&run(&mut fx, "rebind").outcome)["ok"], true);
    assert_eq!(
        returned(&run(&mut fx, "after").outcome),
        json!({"json": "function", "string": "function"})
    );
}

#[test]
fn on_request_turns_a_webhook_into_events_with_segment_calls() {
    let mut fx = load(
        r#"
        async function onRequest(request, settings) {
          const body = await request.json();
          if (body.bad) throw new ValidationError("bad payload");
          const fields = { event: "Order Paid", userId: body.user, properties: { total: body.total } };
          Segment.track(fields);
          fields.event = "changed after the call";
          Segment.identify({ userId: body.user, traits: { via: request.headers.get("X-Sender"), key: settings.apiKey } });
          Segment.page({ name: request.method + " " + request.url });
          return "ignored";
        }
        "#,
    );
    let request = |body: Value| {
        json!({"url": "/v1/functions/x", "method": "POST",
               "headers": {"x-sender": "stripe"}, "body": body.to_string()})
        .to_string()
    };
    let ran = fx.invoke(
        Handler::Request,
        &request(json!({"user": "u-9", "total": 12})),
    );
    let events = returned(&ran.outcome);
    assert_eq!(
        events,
        json!([
            {"event": "Order Paid", "userId": "u-9", "properties": {"total": 12}, "type": "track"},
            {"userId": "u-9", "traits": {"via": "stripe", "key": "k-1"}, "type": "identify"},
            {"name": "POST /v1/functions/x", "type": "page"}
        ]),
        "a copy of each call's object, typed"
    );
    // Each request starts with no events; a refusal makes none.
    let ran = fx.invoke(Handler::Request, &request(json!({"bad": true})));
    assert_eq!(failed(&ran.outcome).0, Failure::Invalid);
    let ran = fx.invoke(
        Handler::Request,
        &request(json!({"user": "u-1", "total": 1})),
    );
    assert_eq!(returned(&ran.outcome).as_array().map(Vec::len), Some(3));
    // A body that is not JSON fails in `request.json()`; `Segment` cannot be replaced.
    let ran = fx.invoke(Handler::Request, &json!({"body": "not json"}).to_string());
    assert_eq!(failed(&ran.outcome).0, Failure::Error);
    let mut fx = load(
        r#"
        async function onRequest(request) {
          try { Segment.track = () => {}; } catch (_) {}
          Segment.track("not an object");
        }
        "#,
    );
    let ran = fx.invoke(Handler::Request, &json!({"body": "{}"}).to_string());
    let (failure, message) = failed(&ran.outcome);
    assert_eq!(failure, Failure::Error);
    assert!(message.contains("takes an object"), "{message}");
    let mut fx = load("async function onRequest() { for (;;) Segment.track({ event: 'x' }); }");
    let ran = fx.invoke(Handler::Request, &json!({"body": "{}"}).to_string());
    let (_, message) = failed(&ran.outcome);
    assert!(message.contains("at most 2500 events"), "{message}");
}
