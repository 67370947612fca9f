//! `/usage`: events accepted, refused and violating per source, by day and month, as
//! the gateways reported them; and the monthly event quotas the gateways enforce
//! (the reference's owner-only "billing" row: only owners change them).
//!
//! Everyone in the workspace sees its totals; the per-source rows are the sources the
//! caller may see. Quotas travel to the gateways with the catalog (within a second) and
//! are counted against the month's books (UTC calendar months), summed over every
//! gateway; a source over a quota it draws on gets `429 quota_exceeded` with
//! `Retry-After` until the next month.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, put};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::sources::visible;
use super::wire::Data;
use super::{Api, ApiError, Body, Caller, Path, Query, data};
use crate::control::audit::Kind;
use crate::control::policy::{Action, ResourceRef};
use crate::control::store::sources;
use crate::control::store::usage::{self as store, DayRow};
use crate::usage::{Counts, next_period, period_of};

/// Largest quota: a trillion events a month.
const MAX_QUOTA: u64 = 1_000_000_000_000;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/usage", get(read))
        .route("/usage/quota", put(set_workspace))
        .route("/sources/{id}/quota", put(set_source))
        .route("/sources/{id}/usage/recent", get(recent))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    /// The month, `YYYY-MM` (UTC; default: this month).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: Option<String>,
}

/// Events counted.
#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageCounts {
    /// Stored for delivery.
    pub accepted: u64,
    /// Read and not stored for delivery (invalid, blocked by a tracking plan, or in a
    /// request refused after its body was read).
    pub refused: u64,
    /// With at least one tracking-plan violation.
    pub violating: u64,
}

impl From<Counts> for UsageCounts {
    fn from(c: Counts) -> Self {
        Self {
            accepted: c.accepted,
            refused: c.refused,
            violating: c.violating,
        }
    }
}

/// One day's usage.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// A source's usage in the month.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceUsage {
    /// The source.
    pub source_id: String,
    /// Its month.
    #[serde(flatten)]
    pub counts: UsageCounts,
    /// Its monthly event quota (none: only the workspace's applies).
    pub monthly_event_quota: Option<u64>,
    /// Day by day (days without events left out).
    pub days: Vec<UsageDay>,
}

/// A workspace's usage in a month.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceUsage {
    /// The month, `YYYY-MM` (UTC).
    pub period: String,
    /// When the month ends and quotas start again.
    pub resets_at: DateTime<Utc>,
    /// Every source's events (deleted ones and ones hidden from the caller included).
    pub total: UsageCounts,
    /// The workspace's monthly event quota (none: unlimited).
    pub monthly_event_quota: Option<u64>,
    /// The sources the caller may see.
    pub sources: Vec<SourceUsage>,
}

/// `{"usage": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageOne {
    /// The month's usage.
    pub usage: WorkspaceUsage,
}

/// A monthly event quota to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaInput {
    /// Events a month (UTC calendar month), at most 10^12; `null` removes the quota.
    #[serde(deserialize_with = "present")]
    #[schema(required = true, minimum = 0, maximum = 1_000_000_000_000_u64)]
    pub monthly_events: Option<u64>,
}

/// A field that must be present, `null` allowed.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

/// A quota as set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// What it limits: `workspace:<id>` or `source:<id>`.
    pub pool: String,
    /// Events a month (none: unlimited).
    pub monthly_events: Option<u64>,
}

/// `{"quota": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaOne {
    /// The quota.
    pub quota: Quota,
}

/// The first instant of `period` (`YYYY-MM`).
fn month_of(period: &str) -> Result<DateTime<Utc>, ApiError> {
    NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| period.len() == 7)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| ApiError::field("period", "a month, YYYY-MM"))
}

fn checked(input: &QuotaInput) -> Result<Option<u64>, ApiError> {
    match input.monthly_events {
        Some(n) if n > MAX_QUOTA => Err(ApiError::field(
            "monthlyEvents",
            "at most 1000000000000 events a month (or null for none)",
        )),
        other => Ok(other),
    }
}

/// The month's usage of the workspace and of the sources the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/usage",
    tag = "Usage",
    params(UsageQuery),
    responses((status = 200, description = "The month's usage.", body = Data<UsageOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let at = match &q.period {
        Some(period) => month_of(period)?,
        None => caller.now,
    };
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let ws = &caller.workspace.id;
    let mut conn = api.store.read().await?;
    let rows = store::month(&mut conn, ws, at).await?;
    let quotas = store::quotas(&mut conn, ws).await?;
    let all = sources::all(&mut conn, ws).await?;
    drop(conn);
    let mut total = Counts::default();
    for row in &rows {
        total.add(row.counts);
    }
    let mut out = Vec::new();
    for source in &all {
        if !caller
            .decide(Action::ViewSource, ResourceRef::Source(source.as_ref()))
            .allowed
        {
            continue;
        }
        let own: Vec<&DayRow> = rows.iter().filter(|r| r.source_id == source.id).collect();
        let mut counts = Counts::default();
        for r in &own {
            counts.add(r.counts);
        }
        out.push(SourceUsage {
            source_id: source.id.clone(),
            counts: counts.into(),
            monthly_event_quota: quotas.sources.get(&source.id).copied(),
            days: own
                .into_iter()
                .map(|r| UsageDay {
                    day: r.day.clone(),
                    counts: r.counts.into(),
                })
                .collect(),
        });
    }
    Ok(data(UsageOne {
        usage: WorkspaceUsage {
            period: period_of(at),
            resets_at: next_period(at),
            total: total.into(),
            monthly_event_quota: quotas.workspace,
            sources: out,
        },
    }))
}

/// Sets or removes the workspace's monthly event quota (owners only).
#[utoipa::path(
    put,
    path = "/api/v1/usage/quota",
    tag = "Usage",
    request_body = QuotaInput,
    responses((status = 200, description = "The quota as set; gateways apply it within a second.", body = Data<QuotaOne>))
)]
async fn set_workspace(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(input): Body<QuotaInput>,
) -> Result<Response, ApiError> {
    let quota = checked(&input)?;
    api.allow_workspace(&caller, Action::ManageUsage).await?;
    let ws = caller.workspace.id.clone();
    let mut change = api.store.change().await?;
    let before = store::quotas(change.conn(), &ws).await?.workspace;
    store::set_workspace_quota(change.conn(), &ws, quota).await?;
    change
        .record(caller.draft(
            Kind::QuotaUpdate,
            "workspace",
            &ws,
            Some(json!({"monthlyEvents": before})),
            Some(json!({"monthlyEvents": quota})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(QuotaOne {
        quota: Quota {
            pool: format!("workspace:{ws}"),
            monthly_events: quota,
        },
    }))
}

/// Sets or removes a source's monthly event quota (owners only).
#[utoipa::path(
    put,
    path = "/api/v1/sources/{id}/quota",
    tag = "Usage",
    params(("id" = String, Path, description = "Source id")),
    request_body = QuotaInput,
    responses((status = 200, description = "The quota as set; gateways apply it within a second.", body = Data<QuotaOne>))
)]
async fn set_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(input): Body<QuotaInput>,
) -> Result<Response, ApiError> {
    let quota = checked(&input)?;
    api.allow_workspace(&caller, Action::ManageUsage).await?;
    let source = visible(&api, &caller, &id, Action::ViewSource).await?;
    let ws = caller.workspace.id.clone();
    let mut change = api.store.change().await?;
    let before = store::quotas(change.conn(), &ws)
        .await?
        .sources
        .get(&source.id)
        .copied();
    if !store::set_source_quota(change.conn(), &ws, &source.id, quota).await? {
        return Err(ApiError::missing("source", &id));
    }
    change
        .record(caller.draft(
            Kind::QuotaUpdate,
            "source",
            &source.id,
            Some(json!({"monthlyEvents": before})),
            Some(json!({"monthlyEvents": quota})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(QuotaOne {
        quota: Quota {
            pool: format!("source:{}", source.id),
            monthly_events: quota,
        },
    }))
}

/// One minute of a source's usage.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageMinute {
    /// The minute's start (UTC).
    pub minute: DateTime<Utc>,
    /// What the gateways counted in it.
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// A source's last hour, a minute at a time.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentUsage {
    /// The source.
    pub source_id: String,
    /// The last 60 minutes, oldest first; the last one is the current minute so far.
    pub minutes: Vec<UsageMinute>,
    /// Events accepted in the hour.
    #[serde(flatten)]
    pub hour: UsageCounts,
}

/// Minutes in a [`RecentUsage`].
const RECENT_MINUTES: i64 = 60;

/// A source's last hour of usage a minute at a time (events accepted, refused and
/// violating its tracking plan), as the gateways reported it.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/usage/recent",
    tag = "Usage",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "The source's last hour, a minute at a time.", body = Data<RecentUsage>))
)]
async fn recent(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let source = visible(&api, &caller, &id, Action::ViewSource).await?;
    let mut conn = api.store.read().await?;
    let rows = store::recent(
        &mut conn,
        &caller.workspace.id,
        &source.id,
        RECENT_MINUTES,
        caller.now,
    )
    .await?;
    let mut hour = Counts::default();
    for row in &rows {
        hour.accepted += row.counts.accepted;
        hour.refused += row.counts.refused;
        hour.violating += row.counts.violating;
    }
    Ok(data(RecentUsage {
        source_id: source.id,
        minutes: rows
            .into_iter()
            .map(|r| UsageMinute {
                minute: r.minute,
                counts: r.counts.into(),
            })
            .collect(),
        hour: hour.into(),
    }))
}
