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
}

/// An audit event as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    timestamp: When,
    #[serde(rename = "type")]
    kind: String,
    actor: String,
    actor_type: String,
    resource_type: String,
    resource_id: String,
    ip: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EventList {
    events: Vec<Event>,
    pagination: super::team::Pagination,
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
    let mut extra = vec![("pagination[count]", "50".to_owned())];
    if let Some(cursor) = cursor(parts) {
        extra.push(("pagination[cursor]", cursor));
    }
    let list: EventList = inner(console, parts)
        .get(&format!("/api/v1/audit-events?{}", filter.query(&extra)))
        .await?;
    let next = list
        .pagination
        .next
        .map(|cursor| format!("/audit?{}", filter.query(&[("cursor", cursor)])));
    let csv = format!("/audit.csv?{}", filter.query(&[]));
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            frame: viewer.frame("Audit trail", Section::Audit, parts),
            events: list.events,
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
        inner(&console, &parts)
            .raw(&format!(
                "/api/v1/audit-events?{}",
                filter.query(&[("format", "csv".to_owned())])
            ))
            .await
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
