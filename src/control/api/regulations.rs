//! `/regulations` and `/suppressions`: Segment's Deletion & Suppression API, for
//! suppression. A `SUPPRESS_ONLY` regulation stops the named users' new events at every
//! gateway (acknowledged, never stored or forwarded); `UNSUPPRESS` lets them in again.
//! Workspace regulations need `regulate` (owners, admins); a source's need `full` on it.
//! Deleting stored events (`DELETE_ONLY`, `SUPPRESS_WITH_DELETE`, `DELETE_INTERNAL`) is
//! not built: those types answer 501.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::sources::visible;
use super::wire::{Data, Pagination, Status};
use super::{Api, ApiError, Body, Caller, PageQuery, Path, data, page_of, success};
use crate::control::audit::Kind;
use crate::control::policy::{Action, ResourceRef};
use crate::control::store::regulations::{self as store, Filter, RegulationRow};
use crate::control::store::sources;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/regulations", get(list).post(create))
        .route("/regulations/{id}", get(read).delete(remove))
        .route(
            "/regulations/sources/{source_id}",
            get(list_for_source).post(create_for_source),
        )
        .route("/suppressions", get(suppressions))
}

/// Most subjects one regulation may name (Segment's bound).
pub const MAX_SUBJECTS: usize = 5_000;
/// Longest subject id, in characters.
pub const MAX_SUBJECT_CHARS: usize = 1_024;

/// What a regulation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegulationType {
    /// Stop the subjects' new events at the edge.
    SuppressOnly,
    /// Let the subjects' events in again.
    Unsuppress,
    /// Delete the subjects' stored events (not built: 501).
    DeleteOnly,
    /// Suppress, and delete the stored events (not built: 501).
    SuppressWithDelete,
    /// Delete from Sluice's own storage only (not built: 501).
    DeleteInternal,
}

impl RegulationType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuppressOnly => "SUPPRESS_ONLY",
            Self::Unsuppress => "UNSUPPRESS",
            Self::DeleteOnly => "DELETE_ONLY",
            Self::SuppressWithDelete => "SUPPRESS_WITH_DELETE",
            Self::DeleteInternal => "DELETE_INTERNAL",
        }
    }

    const ALL: [Self; 5] = [
        Self::SuppressOnly,
        Self::Unsuppress,
        Self::DeleteOnly,
        Self::SuppressWithDelete,
        Self::DeleteInternal,
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Whom a regulation names (Segment's `OBJECT_ID`, objects of cloud sources, is not a
/// Sluice thing and is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubjectType {
    /// Events' `userId`.
    UserId,
}

impl SubjectType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserId => "USER_ID",
        }
    }
}

/// A regulation's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegulationStatus {
    /// Recorded, not started.
    Initialized,
    /// In progress.
    Running,
    /// Done: a suppression is in force (or lifted) at every gateway that follows the
    /// control plane, within a second.
    Finished,
    /// Failed.
    Failed,
    /// Could not be carried out as asked (Sluice makes none).
    Invalid,
    /// Not supported by a destination (Sluice makes none).
    NotSupported,
    /// Done for some destinations only (Sluice makes none).
    PartialSuccess,
}

impl RegulationStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialized => "INITIALIZED",
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Invalid => "INVALID",
            Self::NotSupported => "NOT_SUPPORTED",
            Self::PartialSuccess => "PARTIAL_SUCCESS",
        }
    }

    const ALL: [Self; 7] = [
        Self::Initialized,
        Self::Running,
        Self::Finished,
        Self::Failed,
        Self::Invalid,
        Self::NotSupported,
        Self::PartialSuccess,
    ];
}

/// `{"regulationType", "subjectType", "subjectIds"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRegulation {
    /// What to do.
    pub regulation_type: RegulationType,
    /// `USER_ID`.
    pub subject_type: SubjectType,
    /// The users' ids (1 to 5,000, each 1 to 1,024 characters, no NUL).
    #[schema(min_items = 1, max_items = 5000)]
    pub subject_ids: Vec<String>,
}

/// `{"regulateId"}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The new regulation's id.
    pub regulate_id: String,
}

/// One regulation in a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegulationEntry {
    /// Id.
    pub id: String,
    /// `USER_ID`.
    pub subject_type: String,
    /// The subjects.
    pub subjects: Vec<String>,
    /// Progress.
    pub status: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// What it asks for.
    pub regulation_type: String,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// `{"regulations": […], "pagination": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegulationList {
    /// The page.
    pub regulations: Vec<RegulationEntry>,
    /// Cursors.
    pub pagination: Pagination,
}

/// The work of a regulation on one source.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// The source.
    pub id: String,
    /// Per destination (suppression involves none).
    pub destination_status: Vec<serde_json::Value>,
}

/// A regulation in full.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Regulation {
    /// Id.
    pub id: String,
    /// The workspace.
    pub workspace_id: String,
    /// Progress.
    pub overall_status: String,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// The source it is about, if any.
    pub stream_status: Vec<StreamStatus>,
}

/// `{"regulation": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegulationOne {
    /// The regulation.
    pub regulation: Regulation,
}

/// Suppressed subjects of one type.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suppressed {
    /// `USER_ID`.
    pub subject_type: String,
    /// Their ids.
    pub subject_ids: Vec<String>,
}

/// `{"suppressed": […], "pagination": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressedList {
    /// The page (one entry, `USER_ID`, when any is suppressed).
    pub suppressed: Vec<Suppressed>,
    /// Cursors.
    pub pagination: Pagination,
}

/// The query of regulation lists (`regulationTypes` repeated, with or without `[]` or
/// `[n]`, as clients write arrays).
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size (1 to 200, default 10).
    #[param(rename = "pagination[count]", value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub count: Option<String>,
    /// Cursor from the previous page.
    #[param(
        rename = "pagination[cursor]",
        pattern = "^(MA|YWZ0ZXI6([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?)?$"
    )]
    pub cursor: Option<String>,
    /// Only regulations in this status.
    #[param(value_type = Option<RegulationStatus>)]
    pub status: Option<String>,
    /// Only regulations of these types.
    #[param(rename = "regulationTypes", value_type = Option<Vec<RegulationType>>, explode = true)]
    pub regulation_types: Vec<String>,
}

impl ListQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
            .map_err(|e| ApiError::Invalid {
                message: format!("invalid query string: {e}"),
                field: None,
            })?;
        let mut query = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "pagination[count]" => query.count = Some(value),
                "pagination[cursor]" => query.cursor = Some(value),
                "status" => {
                    if !RegulationStatus::ALL.iter().any(|s| s.as_str() == value) {
                        return Err(ApiError::field("status", "not a regulation status"));
                    }
                    query.status = Some(value);
                }
                _ if is_types_key(&key) => {
                    if RegulationType::parse(&value).is_none() {
                        return Err(ApiError::field("regulationTypes", "not a regulation type"));
                    }
                    query.regulation_types.push(value);
                }
                _ => {
                    return Err(ApiError::Invalid {
                        message: format!("unknown query parameter {key:?}"),
                        field: Some(key),
                    });
                }
            }
        }
        Ok(query)
    }

    fn page(&self) -> Result<super::Page, ApiError> {
        PageQuery {
            count: self.count.clone(),
            cursor: self.cursor.clone(),
        }
        .page()
    }
}

/// `regulationTypes`, `regulationTypes[]` or `regulationTypes[<n>]`.
fn is_types_key(key: &str) -> bool {
    match key.strip_prefix("regulationTypes") {
        Some("") | Some("[]") => true,
        Some(rest) => rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|n| n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// The subjects of a request, checked, repeats removed (first kept).
fn subjects(body: &CreateRegulation) -> Result<Vec<String>, ApiError> {
    if body.subject_ids.is_empty() || body.subject_ids.len() > MAX_SUBJECTS {
        return Err(ApiError::field(
            "subjectIds",
            format!("1 to {MAX_SUBJECTS} user ids"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(body.subject_ids.len());
    for id in &body.subject_ids {
        if id.is_empty() || id.chars().count() > MAX_SUBJECT_CHARS || id.contains('\0') {
            return Err(ApiError::field(
                "subjectIds",
                format!("each user id is 1 to {MAX_SUBJECT_CHARS} characters, none of them NUL"),
            ));
        }
        if seen.insert(id.as_str()) {
            out.push(id.clone());
        }
    }
    Ok(out)
}

/// Refuses what is not built yet.
fn supported(kind: RegulationType) -> Result<(), ApiError> {
    match kind {
        RegulationType::SuppressOnly | RegulationType::Unsuppress => Ok(()),
        RegulationType::DeleteOnly
        | RegulationType::SuppressWithDelete
        | RegulationType::DeleteInternal => Err(ApiError::Unsupported(
            "deleting stored events is not built yet: use SUPPRESS_ONLY to stop a user's \
             new events, and UNSUPPRESS to let them in again",
        )),
    }
}

/// Makes a regulation in `scope` (a source id, or `None` for the workspace) and applies
/// it to the suppression list, in one audited change.
async fn make(
    api: &Api,
    caller: &Caller,
    scope: Option<&str>,
    body: &CreateRegulation,
) -> Result<Response, ApiError> {
    let subjects = subjects(body)?;
    let now = caller.now;
    let row = RegulationRow {
        id: store::new_id(now),
        source_id: scope.map(str::to_owned),
        regulation_type: body.regulation_type.as_str().to_owned(),
        subject_type: body.subject_type.as_str().to_owned(),
        subjects,
        status: RegulationStatus::Finished.as_str().to_owned(),
        created_at: now,
        finished_at: Some(now),
    };
    let workspace = &caller.workspace.id;
    let mut change = api.store.change().await?;
    // The source may have been deleted since it was looked at: its suppressions would
    // outlive it (and pass to a new source of the same id).
    if let Some(source) = scope
        && sources::get(change.conn(), workspace, source)
            .await?
            .is_none()
    {
        return Err(ApiError::missing("source", source));
    }
    store::insert(change.conn(), workspace, &row).await?;
    let affected = match body.regulation_type {
        RegulationType::SuppressOnly => {
            store::suppress(change.conn(), workspace, scope, &row.subjects, &row.id).await?;
            row.subjects.len()
        }
        RegulationType::Unsuppress => {
            store::lift(change.conn(), workspace, scope, &row.subjects, &row.id).await?
        }
        _ => 0,
    };
    // The audit log is kept forever: it says how many users, never who.
    change
        .record(caller.draft(
            Kind::RegulationCreate,
            "regulation",
            &row.id,
            None,
            Some(json!({
                "regulationType": row.regulation_type,
                "subjectType": row.subject_type,
                "subjects": row.subjects.len(),
                "changed": affected,
                "sourceId": scope,
            })),
        ))
        .await?;
    change.commit().await?;
    Ok(data(Created {
        regulate_id: row.id,
    }))
}

/// Create a workspace regulation.
#[utoipa::path(
    post,
    path = "/api/v1/regulations",
    tag = "Deletion and Suppression",
    request_body = CreateRegulation,
    responses((status = 200, description = "The regulation is in force.", body = Data<Created>), (status = 501, description = "A deletion type: not built yet"))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateRegulation>,
) -> Result<Response, ApiError> {
    supported(body.regulation_type)?;
    api.allow_workspace(&caller, Action::Regulate).await?;
    make(&api, &caller, None, &body).await
}

/// Create a regulation for one source.
#[utoipa::path(
    post,
    path = "/api/v1/regulations/sources/{source_id}",
    tag = "Deletion and Suppression",
    params(("source_id" = String, Path, description = "Source id")),
    request_body = CreateRegulation,
    responses((status = 200, description = "The regulation is in force.", body = Data<Created>), (status = 501, description = "A deletion type: not built yet"))
)]
async fn create_for_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(source_id): Path<String>,
    Body(body): Body<CreateRegulation>,
) -> Result<Response, ApiError> {
    supported(body.regulation_type)?;
    let source = visible(&api, &caller, &source_id, Action::RegulateSource).await?;
    make(&api, &caller, Some(&source.id), &body).await
}

fn entry(row: RegulationRow) -> RegulationEntry {
    RegulationEntry {
        id: row.id,
        subject_type: row.subject_type,
        subjects: row.subjects,
        status: row.status,
        created_at: row.created_at,
        regulation_type: row.regulation_type,
        finished_at: row.finished_at,
    }
}

async fn page_of_regulations(
    api: &Api,
    caller: &Caller,
    source: Option<&str>,
    query: &ListQuery,
) -> Result<Response, ApiError> {
    let page = query.page()?;
    let filter = Filter {
        source,
        status: query.status.as_deref(),
        types: &query.regulation_types,
    };
    let mut conn = api.store.read().await?;
    let rows = store::list(
        &mut conn,
        &caller.workspace.id,
        filter,
        &page.after,
        page.count,
    )
    .await?;
    let last = rows.last().map(|r| r.id.clone());
    let n = rows.len();
    let regulations = rows.into_iter().map(entry).collect();
    Ok(page_of(
        regulations,
        &page,
        n,
        last.as_deref(),
        |regulations, pagination| RegulationList {
            regulations,
            pagination,
        },
    ))
}

/// List the workspace's regulations (its sources' too), oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/regulations",
    tag = "Deletion and Suppression",
    params(ListQuery),
    responses((status = 200, description = "A page of regulations.", body = Data<RegulationList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(raw.as_deref())?;
    api.allow_workspace(&caller, Action::Regulate).await?;
    page_of_regulations(&api, &caller, None, &query).await
}

/// List one source's regulations, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/regulations/sources/{source_id}",
    tag = "Deletion and Suppression",
    params(("source_id" = String, Path, description = "Source id"), ListQuery),
    responses((status = 200, description = "A page of the source's regulations.", body = Data<RegulationList>))
)]
async fn list_for_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(source_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(raw.as_deref())?;
    let source = visible(&api, &caller, &source_id, Action::RegulateSource).await?;
    page_of_regulations(&api, &caller, Some(&source.id), &query).await
}

/// The regulation `id` if the caller may act on it: `regulate` for a workspace
/// regulation, `full` on its source for a source's. Every refusal answers as a missing
/// regulation does, so an id never tells whether it exists.
async fn reachable(
    api: &Api,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<RegulationRow, ApiError> {
    let missing = || ApiError::missing("regulation", id);
    let mut conn = api.store.read().await?;
    let row = store::get(&mut conn, &caller.workspace.id, id).await?;
    let Some(row) = row else {
        drop(conn);
        return Err(api
            .missing_target(caller, action, "regulation", id, missing())
            .await);
    };
    match &row.source_id {
        None => {
            drop(conn);
            api.allow_reached(caller, Action::Regulate, ResourceRef::Workspace, missing)
                .await?;
        }
        Some(source_id) => {
            let source = sources::get(&mut conn, &caller.workspace.id, source_id).await?;
            drop(conn);
            match source {
                Some(source) => {
                    let resource = ResourceRef::Source(source.as_ref());
                    api.allow_reached(caller, Action::RegulateSource, resource, missing)
                        .await?;
                }
                // The source is gone: its regulations are the workspace's to see.
                None => {
                    api.allow_reached(caller, Action::Regulate, ResourceRef::Workspace, missing)
                        .await?;
                }
            }
        }
    }
    Ok(row)
}

/// Get a regulation.
#[utoipa::path(
    get,
    path = "/api/v1/regulations/{id}",
    tag = "Deletion and Suppression",
    params(("id" = String, Path, description = "Regulation id")),
    responses((status = 200, description = "The regulation.", body = Data<RegulationOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = reachable(&api, &caller, &id, Action::Regulate).await?;
    let stream_status = row
        .source_id
        .iter()
        .map(|source| StreamStatus {
            id: source.clone(),
            destination_status: Vec::new(),
        })
        .collect();
    Ok(data(RegulationOne {
        regulation: Regulation {
            id: row.id,
            workspace_id: caller.workspace.id.clone(),
            overall_status: row.status,
            finished_at: row.finished_at,
            created_at: row.created_at,
            stream_status,
        },
    }))
}

/// Delete a regulation: it leaves the lists. It lifts no suppression (`UNSUPPRESS` does),
/// so deleting a record never lets anyone in by accident.
#[utoipa::path(
    delete,
    path = "/api/v1/regulations/{id}",
    tag = "Deletion and Suppression",
    params(("id" = String, Path, description = "Regulation id")),
    responses((status = 200, description = "Deleted.", body = Data<Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = reachable(&api, &caller, &id, Action::Regulate).await?;
    let workspace = &caller.workspace.id;
    let scope = row.source_id.as_deref();
    let mut change = api.store.change().await?;
    if !store::delete(change.conn(), workspace, &row.id).await? {
        return Err(ApiError::missing("regulation", &id));
    }
    change
        .record(caller.draft(
            Kind::RegulationDelete,
            "regulation",
            &row.id,
            Some(json!({
                "regulationType": row.regulation_type,
                "subjects": row.subjects.len(),
                "sourceId": scope,
            })),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// List who is suppressed (workspace-wide or in any source), by id.
#[utoipa::path(
    get,
    path = "/api/v1/suppressions",
    tag = "Deletion and Suppression",
    params(PageQuery),
    responses((status = 200, description = "A page of suppressed user ids.", body = Data<SuppressedList>))
)]
async fn suppressions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Query(q): super::Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::Regulate).await?;
    let mut conn = api.store.read().await?;
    let ids = store::suppressed(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = ids.last().cloned();
    let n = ids.len();
    let suppressed = if ids.is_empty() {
        Vec::new()
    } else {
        vec![Suppressed {
            subject_type: SubjectType::UserId.as_str().to_owned(),
            subject_ids: ids,
        }]
    };
    Ok(page_of(
        suppressed,
        &page,
        n,
        last.as_deref(),
        |suppressed, pagination| SuppressedList {
            suppressed,
            pagination,
        },
    ))
}
