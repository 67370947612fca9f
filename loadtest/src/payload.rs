//! Requests shaped like the official SDKs': analytics.js-style page/track/identify
//! events (context with library, page, userAgent…; 300 B to 2 KB), single-event
//! routes or batches, several write keys, optional gzip, a share of invalid events and
//! of wrong keys.
//!
//! Bodies come from a pool of pre-rendered templates; only each event's `messageId`
//! (a fixed-width slot) is rewritten per request, so ids are unique (the gateway's
//! de-duplication never short-cuts the work) and generation stays cheap.

use std::io::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;

/// Digits in a messageId slot.
const ID_WIDTH: usize = 20;
const ID_PLACEHOLDER: &str = "00000000000000000000";
const TEMPLATES: usize = 128;

/// What requests look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum RouteKind {
    /// `/v1/track` with one track event per request.
    Track,
    /// Browser short paths `/v1/t`, `/v1/p`, `/v1/i` in a 50/30/20 mix.
    Mix,
    /// `/v1/batch` with `batch_size` events per request.
    Batch,
}

/// Workload settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Workload {
    /// Route shape.
    pub route: RouteKind,
    /// Events per batch request.
    pub batch_size: usize,
    /// Write keys, used round-robin.
    pub keys: Vec<String>,
    /// gzip bodies (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Share of events missing their user ids (0..1).
    pub invalid_share: f64,
    /// Share of requests with a wrong write key (0..1).
    pub wrong_key_share: f64,
    /// Approximate event size in bytes (300 to 2000).
    pub event_bytes: usize,
    /// Send [`FIXED_EVENT`] (or a batch of it) unchanged in every request, as `wrk` and
    /// other servers' published benchmarks do; the server mints each `messageId`.
    pub fixed: bool,
}

/// The fixed payload: a small track event without a `messageId`, the same bytes in
/// every request.
pub const FIXED_EVENT: &str = r#"{"type":"track","userId":"user-1","event":"Order Completed","properties":{"order_id":"o-1","revenue":42.5,"currency":"USD"},"context":{"library":{"name":"analytics.js","version":"next-1.84.3"}},"timestamp":"2026-11-27T09:59:58.123Z"}"#;

/// One request ready to send.
pub struct Prepared {
    /// Request path.
    pub path: &'static str,
    /// `Authorization` header.
    pub auth: HeaderValue,
    /// Body bytes.
    pub body: Bytes,
    /// Events in the body.
    pub events: u64,
}

struct Template {
    path: &'static str,
    bytes: Vec<u8>,
    id_slots: Vec<usize>,
    events: u64,
}

/// Rendered bodies, built once and shared by every worker.
pub struct Templates {
    valid: Vec<Template>,
    invalid: Vec<Template>,
}

impl Templates {
    /// Renders the pool for `workload`.
    pub fn build(workload: &Workload) -> Self {
        if workload.fixed {
            return Self {
                valid: vec![fixed(workload)],
                invalid: vec![fixed(workload)],
            };
        }
        let mut rng = fastrand::Rng::with_seed(42);
        let count = if workload.route == RouteKind::Batch {
            TEMPLATES / 8
        } else {
            TEMPLATES
        };
        Self {
            valid: (0..count)
                .map(|_| template(workload, &mut rng, false))
                .collect(),
            invalid: (0..4).map(|_| template(workload, &mut rng, true)).collect(),
        }
    }
}

/// Produces requests for one worker.
pub struct Generator {
    workload: Workload,
    templates: std::sync::Arc<Templates>,
    auths: Vec<HeaderValue>,
    wrong_auth: HeaderValue,
    rng: fastrand::Rng,
    /// Leading digits of every messageId, random per process, so separate runs
    /// against one server never repeat ids (its de-duplication would skip them).
    nonce: u64,
}

impl Generator {
    /// A generator over shared templates, seeded by `seed` (each worker its own).
    pub fn new(workload: &Workload, templates: std::sync::Arc<Templates>, seed: u64) -> Self {
        let rng = fastrand::Rng::with_seed(seed);
        let basic = |k: &str| {
            let v = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{k}:"))
            );
            HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Basic invalid"))
        };
        Self {
            auths: workload.keys.iter().map(|k| basic(k)).collect(),
            wrong_auth: basic("loadtest-wrong-key"),
            workload: workload.clone(),
            templates,
            rng,
            nonce: run_nonce(),
        }
    }

    /// The request with sequence number `seq` (unique across workers when callers
    /// partition the sequence space).
    pub fn next(&mut self, seq: u64) -> Prepared {
        let invalid =
            self.workload.invalid_share > 0.0 && self.rng.f64() < self.workload.invalid_share;
        let pool = if invalid {
            &self.templates.invalid
        } else {
            &self.templates.valid
        };
        let t = &pool[self.rng.usize(..pool.len())];
        let mut body = t.bytes.clone();
        for (n, &slot) in t.id_slots.iter().enumerate() {
            let id = seq.wrapping_mul(10_000).wrapping_add(n as u64) % 100_000_000_000_000;
            let digits = format!("{:06}{id:014}", self.nonce);
            body[slot..slot + ID_WIDTH].copy_from_slice(digits.as_bytes());
        }
        let wrong =
            self.workload.wrong_key_share > 0.0 && self.rng.f64() < self.workload.wrong_key_share;
        let auth = if wrong || self.auths.is_empty() {
            self.wrong_auth.clone()
        } else {
            self.auths[(seq as usize) % self.auths.len()].clone()
        };
        let body = if self.workload.gzip {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 3),
                flate2::Compression::fast(),
            );
            let _ = e.write_all(&body);
            e.finish().unwrap_or(body)
        } else {
            body
        };
        Prepared {
            path: t.path,
            auth,
            body: Bytes::from(body),
            events: t.events,
        }
    }
}

/// Six random digits, the same for every generator of this process.
fn run_nonce() -> u64 {
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| fastrand::u64(..1_000_000))
}

fn template(w: &Workload, rng: &mut fastrand::Rng, invalid: bool) -> Template {
    match w.route {
        RouteKind::Batch => {
            let mut events = Vec::with_capacity(w.batch_size);
            for n in 0..w.batch_size {
                // In an invalid batch only the first item is invalid.
                let kind = kind_for(rng);
                events.push(event(rng, kind, w.event_bytes, invalid && n == 0, true));
            }
            let body = serde_json::json!({ "batch": events, "sentAt": "2026-11-27T10:00:00.000Z" });
            finish("/v1/batch", &body)
        }
        RouteKind::Track => finish(
            "/v1/track",
            &event(rng, "track", w.event_bytes, invalid, false),
        ),
        RouteKind::Mix => {
            let kind = kind_for(rng);
            let path = match kind {
                "track" => "/v1/t",
                "page" => "/v1/p",
                _ => "/v1/i",
            };
            finish(path, &event(rng, kind, w.event_bytes, invalid, false))
        }
    }
}

/// Call types in the proportions browsers send them: 50 % track, 30 % page, 20 % identify.
fn kind_for(rng: &mut fastrand::Rng) -> &'static str {
    match rng.u8(0..10) {
        0..5 => "track",
        5..8 => "page",
        _ => "identify",
    }
}

fn finish(path: &'static str, body: &serde_json::Value) -> Template {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let needle = ID_PLACEHOLDER.as_bytes();
    let id_slots = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    let events = if path == "/v1/batch" {
        body["batch"].as_array().map_or(0, Vec::len) as u64
    } else {
        1
    };
    Template {
        path,
        bytes,
        id_slots,
        events,
    }
}

/// The fixed payload's template: one event, or a batch of `batch_size` copies.
fn fixed(w: &Workload) -> Template {
    let (path, bytes, events) = match w.route {
        RouteKind::Batch => {
            let items = vec![FIXED_EVENT; w.batch_size].join(",");
            let body = format!(r#"{{"batch":[{items}]}}"#);
            ("/v1/batch", body.into_bytes(), w.batch_size as u64)
        }
        RouteKind::Track | RouteKind::Mix => ("/v1/track", FIXED_EVENT.as_bytes().to_vec(), 1),
    };
    Template {
        path,
        bytes,
        id_slots: Vec::new(),
        events,
    }
}

const PRODUCTS: &[&str] = &[
    "Sneakers",
    "Backpack",
    "Rain Jacket",
    "Water Bottle",
    "Headphones",
];
const PAGES: &[&str] = &["/", "/pricing", "/products/42", "/checkout", "/blog/launch"];

fn event(
    rng: &mut fastrand::Rng,
    kind: &str,
    size: usize,
    invalid: bool,
    in_batch: bool,
) -> serde_json::Value {
    let page = PAGES[rng.usize(..PAGES.len())];
    let mut e = serde_json::json!({
        "timestamp": "2026-11-27T09:59:58.123Z",
        "integrations": {},
        "type": kind,
        "userId": format!("user-{}", rng.u32(..100_000)),
        "anonymousId": "4f9c1a2e-8b7d-4c3a-9e1f-2a6b5c8d7e90",
        "context": {
            "library": { "name": "analytics.js", "version": "next-1.84.3" },
            "page": {
                "path": page, "referrer": "https://www.google.com/", "search": "?utm_source=newsletter",
                "title": "Acme Store", "url": format!("https://shop.example.com{page}")
            },
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "locale": "en-US",
            "timezone": "Europe/Berlin",
            "campaign": { "source": "newsletter", "medium": "email", "name": "autumn" }
        },
        "messageId": format!("ajs-next-{ID_PLACEHOLDER}"),
    });
    if !in_batch {
        e["sentAt"] = "2026-11-27T09:59:58.200Z".into();
    }
    match kind {
        "track" => {
            e["event"] = "Product Viewed".into();
            e["properties"] = serde_json::json!({
                "product_id": format!("p-{}", rng.u32(..10_000)),
                "name": PRODUCTS[rng.usize(..PRODUCTS.len())],
                "price": rng.u32(100..20_000) as f64 / 100.0,
                "currency": "EUR",
                "quantity": rng.u8(1..5),
            });
        }
        "page" => {
            e["name"] = "Product".into();
            e["properties"] = serde_json::json!({ "path": page, "title": "Acme Store" });
        }
        _ => {
            e["traits"] = serde_json::json!({ "email": "ada@example.com", "plan": "pro", "logins": rng.u8(..100) });
        }
    }
    // Pad toward the target size with realistic-looking properties.
    let field = if kind == "identify" {
        "traits"
    } else {
        "properties"
    };
    let mut len = serde_json::to_vec(&e).map(|v| v.len()).unwrap_or(size);
    let mut n = 0;
    while len + 40 < size {
        let filler = "x".repeat(rng.usize(8..40));
        let key = format!("attr_{n}");
        len += key.len() + filler.len() + 6; // "key":"value",
        e[field][key] = filler.into();
        n += 1;
    }
    if invalid && let Some(obj) = e.as_object_mut() {
        obj.remove("userId");
        obj.remove("anonymousId");
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_bodies_are_json() {
        let w = Workload {
            route: RouteKind::Batch,
            batch_size: 10,
            keys: vec!["k".into()],
            gzip: false,
            invalid_share: 0.0,
            wrong_key_share: 0.0,
            event_bytes: 700,
            fixed: false,
        };
        let mut g = Generator::new(&w, std::sync::Arc::new(Templates::build(&w)), 1);
        let a = g.next(1);
        let b = g.next(2);
        assert_eq!(a.events, 10);
        let va: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
        let vb: serde_json::Value = serde_json::from_slice(&b.body).expect("json");
        let ids = |v: &serde_json::Value| -> Vec<String> {
            v["batch"]
                .as_array()
                .expect("batch")
                .iter()
                .map(|e| e["messageId"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        let mut all = ids(&va);
        all.extend(ids(&vb));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        let size = a.body.len() / 10;
        assert!((500..1000).contains(&size), "~700 B per event, got {size}");
    }

    #[test]
    fn the_fixed_payload_is_the_same_bytes_every_time() {
        let w = Workload {
            route: RouteKind::Batch,
            batch_size: 3,
            keys: vec!["k".into()],
            gzip: false,
            invalid_share: 0.0,
            wrong_key_share: 0.0,
            event_bytes: 700,
            fixed: true,
        };
        let mut g = Generator::new(&w, std::sync::Arc::new(Templates::build(&w)), 1);
        let (a, b) = (g.next(1), g.next(2));
        assert_eq!((a.body.clone(), a.events, a.path), (b.body, 3, "/v1/batch"));
        let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
        let event: serde_json::Value = serde_json::from_str(FIXED_EVENT).expect("json");
        assert_eq!(v["batch"], serde_json::json!([event, event, event]));
        assert!(event.get("messageId").is_none(), "the server mints them");
    }
}
