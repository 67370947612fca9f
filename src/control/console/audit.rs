//! `/audit`: the audit trail, newest first, filtered by actor, action, resource and
//! time, a page at a time; `/audit.csv`: the same filter exported as CSV.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{Console, Frame, Refusal, Section, Viewer, When, inner, render};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/audit", get(list))
        .route("/audit.csv", get(export))
        .route("/audit/chain", get(chain))
}

/// The chain check as the API answers it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chain {
    intact: bool,
    events: u64,
    problem: Option<String>,
    checkpoint: String,
    checked_at: When,
}

#[derive(Debug, Deserialize)]
struct ChainOne {
    chain: Chain,
}

#[derive(Template)]
#[template(path = "console/audit_chain.html")]
struct ChainPage {
    frame: Frame,
    chain: Chain,
}

/// `GET /audit/chain`: the chain verified now (the API's check; it reads the whole
/// chain, so it runs when asked, not on every page of the trail).
async fn chain(State(console): State<Console>, parts: Parts) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let chain = inner(&console, &parts)
            .get::<ChainOne>("/api/v1/audit-events/chain")
            .await?
            .chain;
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &ChainPage {
                frame: viewer.frame("Audit chain", Section::Audit, &parts),
                chain,
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
}

/// An audit event as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    id: String,
    timestamp: When,
    #[serde(rename = "type")]
    kind: String,
    actor: String,
    actor_type: String,
    resource_type: String,
    resource_id: String,
    ip: Option<String>,
}

/// Events shown on a page.
const PAGE: usize = 50;
/// The longest event line read (an event carries whole before/after states, each at most
/// the API's body limit).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// The first `want` events of an NDJSON export, read a line at a time: memory holds one
/// event, however large the page's events are together.
async fn first_events(response: Response, want: usize) -> Result<Vec<Event>, Refusal> {
    use http_body_util::BodyExt as _;
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let take = |line: &[u8], events: &mut Vec<Event>| {
        if !line.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Event>(line) {
                Ok(event) => events.push(event),
                Err(error) => tracing::warn!(%error, "console: an audit line did not read"),
            }
        }
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            take(&line, &mut events);
            if events.len() >= want {
                return Ok(events);
            }
        }
        if pending.len() > MAX_LINE {
            tracing::error!("console: an audit event is longer than {MAX_LINE} bytes");
            return Err(Refusal::Broken);
        }
    }
    take(&pending, &mut events);
    events.truncate(want);
    Ok(events)
}

/// The filter's fields: the page's query names, which are the API's.
const FILTERS: [&str; 6] = [
    "actor",
    "action",
    "resourceType",
    "resourceId",
    "startTime",
    "endTime",
];

/// The filter a request names (blank fields left out).
#[derive(Debug, Default)]
struct Filter(Vec<(&'static str, String)>);

impl Filter {
    fn of(parts: &Parts) -> Self {
        let pairs: Vec<(String, String)> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        Self(
            FILTERS
                .iter()
                .filter_map(|name| {
                    pairs
                        .iter()
                        .find(|(k, v)| k == name && !v.trim().is_empty())
                        .map(|(_, v)| (*name, v.trim().to_owned()))
                })
                .collect(),
        )
    }

    fn value(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The query string of the filter, with `extra` pairs.
    fn query(&self, extra: &[(&'static str, String)]) -> String {
        let pairs: Vec<_> = self.0.iter().chain(extra).cloned().collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    frame: Frame,
    events: Vec<Event>,
    filter: Filter,
    /// The next page's address.
    next: Option<String>,
    /// The CSV export's address.
    csv: String,
}

/// `GET /audit`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn cursor(parts: &Parts) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query()?).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v)
}

async fn page(console: &Console, parts: &Parts) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let filter = Filter::of(parts);
    // One more than shown: whether there is an older page.
    let mut extra = vec![
        ("format", "ndjson".to_owned()),
        ("pagination[count]", (PAGE + 1).to_string()),
    ];
    if let Some(cursor) = cursor(parts) {
        extra.push(("pagination[cursor]", cursor));
    }
    let export = inner(console, parts)
        .raw(&format!("/api/v1/audit-events?{}", filter.query(&extra)))
        .await?;
    let mut events = first_events(export, PAGE + 1).await?;
    let next = (events.len() > PAGE).then(|| {
        events.truncate(PAGE);
        let last = events.last().map(|e| e.id.clone()).unwrap_or_default();
        format!("/audit?{}", filter.query(&[("cursor", last)]))
    });
    let csv = format!("/audit.csv?{}", filter.query(&[]));
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            frame: viewer.frame("Audit trail", Section::Audit, parts),
            events,
            filter,
            next,
            csv,
        },
    ))
}

/// `GET /audit.csv`: the API's CSV export of the filter, as the API streams it.
async fn export(State(console): State<Console>, parts: Parts) -> Response {
    let answer = async {
        Viewer::of(&console, &parts).await?;
        let filter = Filter::of(&parts);
        let mut csv = inner(&console, &parts)
            .raw(&format!(
                "/api/v1/audit-events?{}",
                filter.query(&[("format", "csv".to_owned())])
            ))
            .await?;
        // Addresses, user agents and states: never kept by a cache, never sniffed.
        let headers = csv.headers_mut();
        headers.insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        headers.insert(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        );
        Ok::<_, Refusal>(csv)
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
