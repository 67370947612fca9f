//! `/audit-events` (JSON pages, CSV and JSON export) and `/catalog` (the revision the
//! gateways are fed).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::wire::{Data, Pagination};
use super::{Api, ApiError, Caller, PAGE_DEFAULT, PAGE_MAX, Query, data};
use crate::control::audit::{Actor, Event};
use crate::control::policy::Action;
use crate::control::store::audit_log::{self, Filter};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/audit-events", get(list))
        .route("/audit-events/chain", get(chain))
        .route("/catalog", get(catalog))
}

/// Most events one export returns.
pub const EXPORT_MAX: u32 = 100_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Page size (1 to 200, default 10; exports: every match up to 100 000).
    #[serde(rename = "pagination[count]", default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    count: Option<String>,
    /// The previous page's `pagination.next` (an event sequence number).
    #[serde(rename = "pagination[cursor]", default)]
    #[param(pattern = "^[0-9]{0,19}$")]
    cursor: Option<String>,
    #[serde(default)]
    #[param(max_length = 200)]
    actor: Option<String>,
    #[serde(default)]
    #[param(max_length = 200)]
    action: Option<String>,
    #[serde(rename = "resourceType", default)]
    #[param(max_length = 200)]
    resource_type: Option<String>,
    #[serde(rename = "resourceId", default)]
    #[param(max_length = 200)]
    resource_id: Option<String>,
    #[serde(rename = "startTime", default)]
    start: Option<DateTime<Utc>>,
    #[serde(rename = "endTime", default)]
    end: Option<DateTime<Utc>>,
    /// `json` (default, paged), `csv` or `ndjson` (exports: every match, newest first).
    #[serde(default)]
    #[param(pattern = "^(json|csv|ndjson)$")]
    format: Option<String>,
}

/// An audit event on the wire: Segment's fields first, then Sluice's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Position in the chain (a decimal number).
    pub id: String,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// What happened, e.g. `source.create`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who: a user id, `scim`, `sso` or `system`.
    pub actor: String,
    /// `user`, `token`, `scim`, `sso` or `system`.
    pub actor_type: String,
    /// The actor in full (`{"type": …, …}`).
    #[schema(value_type = Object)]
    pub actor_detail: Actor,
    /// The resource's id.
    pub resource_id: String,
    /// The resource's type, e.g. `source`.
    pub resource_type: String,
    /// The resource's name (its id).
    pub resource_name: String,
    /// The resource before (secrets never kept).
    pub before: Option<Value>,
    /// The resource after, or what a refusal was (secrets never kept).
    pub after: Option<Value>,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// The previous event's hash (hex).
    pub prev_hash: String,
    /// This event's hash (hex).
    pub hash: String,
}

/// A page of audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventList {
    /// The page.
    pub events: Vec<AuditEvent>,
    /// Paging (the cursor is an event's id).
    pub pagination: Pagination,
}

/// `{"catalog": {"revision": …}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogRevision {
    /// The catalog the gateways are fed.
    pub catalog: Revision,
}

/// A catalog revision.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revision {
    /// Its number (it grows with every change to the catalog).
    pub revision: u64,
}

/// An event on the wire: Segment's fields first, then Sluice's.
pub fn wire(e: &Event) -> AuditEvent {
    let (actor, actor_type) = match &e.what.actor {
        Actor::User { id, .. } => (id.clone(), "user"),
        Actor::Token { user, .. } => (user.clone(), "token"),
        Actor::Scim { .. } => ("scim".into(), "scim"),
        Actor::Sso => ("sso".into(), "sso"),
        Actor::System => ("system".into(), "system"),
    };
    AuditEvent {
        id: e.seq.to_string(),
        timestamp: e.what.time,
        kind: e.what.action.clone(),
        actor,
        actor_type: actor_type.to_owned(),
        actor_detail: e.what.actor.clone(),
        resource_id: e.what.resource_id.clone(),
        resource_type: e.what.resource_type.clone(),
        resource_name: e.what.resource_id.clone(),
        before: e.what.before.clone(),
        after: e.what.after.clone(),
        ip: e.what.ip.clone(),
        user_agent: e.what.user_agent.clone(),
        prev_hash: crate::control::store::hex32(&e.prev_hash),
        hash: crate::control::store::hex32(&e.hash),
    }
}

/// Audit events, newest first; format=csv|ndjson exports.
#[utoipa::path(
    get,
    path = "/api/v1/audit-events",
    tag = "Audit Trail",
    params(AuditQuery),
    responses((status = 200, description = "Audit events, newest first (JSON pages; `format=csv` or `format=ndjson` exports every match)", content(
        (Data<AuditEventList> = "application/json"),
        (String = "text/csv"),
        (String = "application/x-ndjson"),
    )))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let export = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv" | "ndjson") => true,
        Some(_) => return Err(ApiError::field("format", "json, csv or ndjson")),
    };
    let count = match &q.count {
        None if export => EXPORT_MAX,
        None => PAGE_DEFAULT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| ApiError::field("pagination[count]", format!("from 1 to {PAGE_MAX}")))?,
    };
    let before_seq = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ApiError::field("pagination[cursor]", "not a cursor this API gave"))?,
        ),
    };
    for (field, value) in [
        ("actor", &q.actor),
        ("action", &q.action),
        ("resourceType", &q.resource_type),
        ("resourceId", &q.resource_id),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 200) {
            return Err(ApiError::field(field, "at most 200 characters"));
        }
    }
    api.allow_workspace(&caller, Action::ReadAudit).await?;
    let filter = Filter {
        actor: q.actor,
        action: q.action,
        resource_type: q.resource_type,
        resource_id: q.resource_id,
        start: q.start,
        end: q.end,
        before_seq,
    };
    match q.format.as_deref() {
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"audit-events.csv\"",
                ),
            ],
            export_body(&api, filter, count, Some(CSV_COLUMNS.join(",")), csv_row),
        )
            .into_response()),
        Some("ndjson") => Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            export_body(&api, filter, count, None, |e| {
                serde_json::to_string(&wire(e)).unwrap_or_default()
            }),
        )
            .into_response()),
        _ => {
            let mut conn = api.store.read().await?;
            let events = audit_log::list(&mut conn, &filter, count).await?;
            let next = events
                .last()
                .filter(|_| events.len() == count as usize)
                .map(|last| last.seq.to_string());
            Ok(data(AuditEventList {
                events: events.iter().map(wire).collect(),
                pagination: Pagination {
                    current: before_seq.map_or_else(|| "MA".to_owned(), |s| s.to_string()),
                    next,
                    total_entries: None,
                },
            }))
        }
    }
}

/// Events read a page at a time for an export.
const EXPORT_PAGE: u32 = 500;

/// An export as a streamed body: pages of [`EXPORT_PAGE`] events are read and written
/// one after the other (at most `limit` events), so memory stays bounded whatever the
/// log's size. A store failure midway ends the body early (and is logged).
fn export_body(
    api: &Arc<Api>,
    mut filter: Filter,
    limit: u32,
    header: Option<String>,
    line: fn(&Event) -> String,
) -> axum::body::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let store = api.store.clone();
    tokio::spawn(async move {
        if let Some(header) = header
            && tx.send(Ok(format!("{header}\n"))).await.is_err()
        {
            return;
        }
        let mut left = limit;
        while left > 0 {
            let page = async {
                let mut conn = store.read().await?;
                audit_log::list(&mut conn, &filter, left.min(EXPORT_PAGE)).await
            };
            let events = match page.await {
                Ok(events) => events,
                Err(error) => {
                    tracing::error!(%error, "audit export stopped");
                    let _ = tx.send(Err(std::io::Error::other("store error"))).await;
                    return;
                }
            };
            let mut chunk = String::new();
            for e in &events {
                chunk.push_str(&line(e));
                chunk.push('\n');
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
            let read = u32::try_from(events.len()).unwrap_or(u32::MAX);
            match events.last() {
                Some(last) if read == left.min(EXPORT_PAGE) => {
                    filter.before_seq = Some(last.seq);
                    left -= read;
                }
                _ => return,
            }
        }
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    axum::body::Body::from_stream(chunks)
}

const CSV_COLUMNS: [&str; 12] = [
    "id",
    "timestamp",
    "type",
    "actor",
    "actorType",
    "resourceType",
    "resourceId",
    "ip",
    "userAgent",
    "before",
    "after",
    "hash",
];

fn csv_row(e: &Event) -> String {
    let w = serde_json::to_value(wire(e)).unwrap_or_default();
    let cells: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|c| match &w[*c] {
            Value::Null => String::new(),
            Value::String(s) => cell(s),
            other => cell(&other.to_string()),
        })
        .collect();
    cells.join(",")
}

/// A CSV cell: quoted when needed; a leading `= + - @` is neutralised so a spreadsheet
/// never runs a cell as a formula.
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The control plane's catalog revision.
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "Catalog",
    responses((status = 200, description = "The control plane's catalog revision.", body = Data<CatalogRevision>))
)]
async fn catalog(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let revision = api.store.catalog_revision().await?;
    Ok(data(CatalogRevision {
        catalog: Revision { revision },
    }))
}

/// Whether the audit chain holds: every event linked to the one before under the chain
/// key, none missing at the end, and (where a checkpoint file is kept) the head it
/// records still in the chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditChain {
    /// The chain verifies.
    pub intact: bool,
    /// Events verified (the chain's length when intact).
    pub events: u64,
    /// Where it is broken, when it is.
    pub problem: Option<String>,
    /// The checkpoint kept outside the database: `present`, `missing` (configured, no
    /// file yet: a chain rewritten wholesale would go unnoticed) or `off`.
    pub checkpoint: String,
    /// When it was checked.
    pub checked_at: DateTime<Utc>,
}

/// `{"chain": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditChainOne {
    /// The check's result.
    pub chain: AuditChain,
}

/// How long a check's answer is given again (each reads the whole chain).
const CHAIN_CHECK_KEPT: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Verify the audit chain (as `sluice admin audit verify` does): one check at a time
/// (`429` while one runs), its answer given again for a minute (`checkedAt` says when).
#[utoipa::path(
    get,
    path = "/api/v1/audit-events/chain",
    tag = "Audit Trail",
    responses((status = 200, description = "Verify the audit chain.", body = Data<AuditChainOne>))
)]
async fn chain(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ReadAudit).await?;
    let Ok(mut last) = api.audit_verifying.try_lock() else {
        return Err(ApiError::RateLimited);
    };
    if let Some(kept) = last
        .as_ref()
        .filter(|c| caller.now - c.checked_at < CHAIN_CHECK_KEPT)
    {
        return Ok(data(AuditChainOne {
            chain: kept.clone(),
        }));
    }
    let checked = crate::control::store::verify_audit(&api.store).await?;
    let (intact, events, problem) = match checked {
        Ok(n) => (true, n, None),
        Err(broken) => {
            tracing::error!(%broken, "the audit chain does not verify");
            (false, 0, Some(broken.to_string()))
        }
    };
    let checkpoint = match api.store.checkpoint_present() {
        Some(true) => "present",
        Some(false) => "missing",
        None => "off",
    };
    let chain = AuditChain {
        intact,
        events,
        problem,
        checkpoint: checkpoint.to_owned(),
        checked_at: caller.now,
    };
    *last = Some(chain.clone());
    Ok(data(AuditChainOne { chain }))
}
