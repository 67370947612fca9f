//! `/elevations`: just-in-time access.
//!
//! Someone asks for a workspace role, or a level on a source, a destination or a label,
//! with a reason and a duration (at most the workspace's `elevationMaxMinutes`, 8 hours
//! by default). Someone who holds what is asked approves or denies it; nobody approves
//! their own. Approved, it counts from the approval for its duration and then ends by
//! itself: `authorize` decides with `now`, so nothing has to clean it up. Its requester
//! or an approver may end it early. Explanations name the elevation a decision used, and
//! every audit event of its holder during the window names it (`actorDetail.elevations`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::prose::{Remark, Why, prose};
use super::wire::{Data, Pagination};
use super::{Api, ApiError, Body, Caller, Path, Query, data, page_of};
use crate::control::audit::Kind;
use crate::control::policy::{
    self, Action, DestinationRef, ElevationRef, Grant, Level, Raise, ResourceRef, Role, Target,
    Wanted,
};
use crate::control::store::destinations::{self, DestinationRow};
use crate::control::store::elevations::{self as store, ElevationRow, Stored};
use crate::control::store::sources::{self, SourceRow};
use crate::control::store::{new_id, users};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/elevations", get(list).post(request))
        .route("/elevations/{id}", get(read))
        .route("/elevations/{id}/approve", post(approve))
        .route("/elevations/{id}/deny", post(deny))
        .route("/elevations/{id}/end", post(end))
}

/// An elevation request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Elevation {
    /// Id (`elv_…`).
    pub id: String,
    /// Who asked.
    pub user_id: String,
    /// The workspace role asked for, or none.
    pub role: Option<String>,
    /// The source, destination or label asked for (`{"kind":"source","id":…}`), or none.
    #[schema(value_type = Option<Object>)]
    pub resource: Option<Target>,
    /// The level asked for on `resource`.
    pub level: Option<String>,
    /// Why.
    pub reason: String,
    /// How long it lasts once approved.
    pub duration_minutes: i64,
    /// `PENDING`, `ACTIVE`, `EXPIRED`, `DENIED`, `CANCELLED` or `ENDED`.
    pub status: String,
    /// Asked.
    pub requested_at: DateTime<Utc>,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// The decider's comment.
    pub comment: String,
    /// When its window opened.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it ends (ended).
    pub ends_at: Option<DateTime<Utc>>,
}

/// `{"elevation": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ElevationOne {
    /// The request.
    pub elevation: Elevation,
}

/// A page of elevations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ElevationList {
    /// The page.
    pub elevations: Vec<Elevation>,
    /// Paging.
    pub pagination: Pagination,
}

fn wire(row: &ElevationRow, now: DateTime<Utc>) -> Elevation {
    let status = match (row.status, row.window) {
        (Stored::Pending, _) => "PENDING",
        (Stored::Approved, Some((_, ends))) if now < ends => "ACTIVE",
        (Stored::Approved, _) => "EXPIRED",
        (Stored::Denied, _) => "DENIED",
        (Stored::Cancelled, _) => "CANCELLED",
        (Stored::Ended, _) => "ENDED",
    };
    let (role, resource, level) = match &row.raise {
        Raise::Role { role } => (Some(role.name().to_owned()), None, None),
        Raise::Level(g) => (
            None,
            Some(g.target.clone()),
            Some(g.level.name().to_owned()),
        ),
    };
    Elevation {
        id: row.id.clone(),
        user_id: row.user_id.clone(),
        role,
        resource,
        level,
        reason: row.reason.clone(),
        duration_minutes: row.duration.num_minutes(),
        status: status.to_owned(),
        requested_at: row.requested_at,
        decided_by: row.decided_by.clone(),
        decided_at: row.decided_at,
        comment: row.comment.clone(),
        starts_at: row.window.map(|w| w.0),
        ends_at: row.window.map(|w| w.1),
    }
}

/// The source or destination an elevation names, loaded for the policy to see.
#[derive(Default)]
struct Subject {
    source: Option<SourceRow>,
    destination: Option<DestinationRow>,
}

impl Subject {
    /// Loads what `raise` names; a source or destination that does not exist is 404.
    async fn load(api: &Api, caller: &Caller, raise: &Raise) -> Result<Self, ApiError> {
        let mut conn = api.store.read().await?;
        let ws = &caller.workspace.id;
        Ok(match raise {
            Raise::Level(Grant {
                target: Target::Source { id },
                ..
            }) => Self {
                source: Some(
                    sources::get(&mut conn, ws, id)
                        .await?
                        .ok_or_else(|| ApiError::missing("source", id))?,
                ),
                destination: None,
            },
            Raise::Level(Grant {
                target: Target::Destination { id },
                ..
            }) => Self {
                source: None,
                destination: Some(
                    destinations::get(&mut conn, api.store.key(), ws, id)
                        .await?
                        .ok_or_else(|| ApiError::missing("destination", id))?,
                ),
            },
            _ => Self::default(),
        })
    }

    /// What the request asks for, as the policy sees it.
    fn wants<'a>(&'a self, raise: &'a Raise) -> Wanted<'a> {
        match (raise, &self.source, &self.destination) {
            (Raise::Role { role }, _, _) => Wanted::Role(*role),
            (Raise::Level(g), Some(s), _) => Wanted::Source(s.as_ref(), g.level),
            (Raise::Level(g), _, Some(d)) => Wanted::Destination(
                DestinationRef {
                    id: &d.id,
                    connected: &[],
                },
                g.level,
            ),
            (Raise::Level(g), None, None) => Wanted::Label(g.level),
        }
    }

    /// The resource the requester must be able to see (none for roles and labels).
    fn resource(&self) -> Option<(Action, ResourceRef<'_>, ApiError)> {
        if let Some(s) = &self.source {
            return Some((
                Action::ViewSource,
                ResourceRef::Source(s.as_ref()),
                ApiError::missing("source", &s.id),
            ));
        }
        self.destination.as_ref().map(|d| {
            (
                Action::ViewDestination,
                ResourceRef::Destination(DestinationRef {
                    id: &d.id,
                    connected: &[],
                }),
                ApiError::missing("destination", &d.id),
            )
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Ask {
    /// A workspace role (`admin`, `member`, `read_only`); or `resource` and `level`.
    #[serde(default)]
    #[schema(pattern = "^(admin|member|read_only)$")]
    role: Option<String>,
    /// `{"kind":"source","id":…}`, `{"kind":"destination","id":…}` or
    /// `{"kind":"source_label","key":…,"value":…}`.
    #[serde(default)]
    resource: Option<Target>,
    /// `read_only`, `read_write` or `full`, on `resource`.
    #[serde(default)]
    #[schema(pattern = "^(full|read_write|read_only)$")]
    level: Option<String>,
    /// Why (1 to 2000 characters).
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    reason: String,
    /// How long, once approved: 1 minute to the workspace's `elevationMaxMinutes`.
    #[schema(minimum = 1, maximum = 1440)]
    duration_minutes: u32,
}

fn raise_of(ask: &Ask) -> Result<Raise, ApiError> {
    match (&ask.role, &ask.resource, &ask.level) {
        (Some(role), None, None) => match Role::parse(role) {
            Some(Role::Owner) => Err(ApiError::field(
                "role",
                "ownership is transferred, not lent: ask for admin",
            )),
            Some(role) => Ok(Raise::Role { role }),
            None => Err(ApiError::field("role", "admin, member or read_only")),
        },
        (None, Some(target), Some(level)) => match Level::parse(level) {
            Some(Level::NoAccess) | None => {
                Err(ApiError::field("level", "read_only, read_write or full"))
            }
            Some(level) => Ok(Raise::Level(Grant {
                target: target.clone(),
                level,
                expires_at: None,
            })),
        },
        _ => Err(ApiError::field(
            "role",
            "ask for a role, or for a resource and a level",
        )),
    }
}

/// Ask for temporary access: a role, or a level on a source, a destination or a label,
/// with a reason and a duration. A source or destination the caller cannot see answers
/// as a missing one; asking for what you already have is refused (409).
#[utoipa::path(
    post,
    path = "/api/v1/elevations",
    tag = "Elevations",
    request_body = Ask,
    responses((status = 200, description = "The request, pending.", body = Data<ElevationOne>))
)]
async fn request(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<Ask>,
) -> Result<Response, ApiError> {
    let reason = prose("reason", &body.reason)?;
    if !(1..=1440).contains(&body.duration_minutes) {
        return Err(ApiError::field("durationMinutes", "1 to 1440"));
    }
    let max = caller.workspace.settings.elevation_max_minutes;
    if body.duration_minutes > max {
        return Err(ApiError::FieldConflict {
            message: format!("at most {max} minutes (the workspace's elevationMaxMinutes)"),
            field: "durationMinutes",
        });
    }
    let raise = raise_of(&body)?;
    api.allow_workspace(&caller, Action::RequestElevation)
        .await?;
    let subject = Subject::load(&api, &caller, &raise).await?;
    if let Some((view, resource, missing)) = subject.resource() {
        api.allow(&caller, view, resource, missing).await?;
    }
    let held = match (&raise, subject.resource()) {
        (Raise::Role { role }, _) => caller.user.effective_role() >= *role,
        (Raise::Level(g), Some((_, resource, _))) => {
            policy::level(&caller.user, &resource, caller.now, &mut Vec::new()).0 >= g.level
        }
        (Raise::Level(_), None) => false,
    };
    if held {
        return Err(ApiError::Conflict(
            "you already have what you ask for".into(),
        ));
    }
    let row = ElevationRow {
        id: new_id("elv_"),
        user_id: caller.user.id.clone(),
        raise,
        reason,
        duration: TimeDelta::minutes(i64::from(body.duration_minutes)),
        status: Stored::Pending,
        requested_at: caller.now,
        decided_by: None,
        decided_at: None,
        comment: String::new(),
        window: None,
    };
    let shown = wire(&row, caller.now);
    let mut change = api.store.change().await?;
    store::insert(change.conn(), &caller.workspace.id, &row).await?;
    change
        .record(caller.draft(
            Kind::ElevationRequest,
            "elevation",
            &row.id,
            None,
            Some(json!(shown)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ElevationOne { elevation: shown }))
}

/// The request, if the caller may see it: their own, or one they may approve, or any
/// for those who manage members. Anyone else gets the answer a missing one gets.
async fn seen(api: &Api, caller: &Caller, id: &str) -> Result<ElevationRow, ApiError> {
    let missing = || ApiError::missing("elevation", id);
    let mut conn = api.store.read().await?;
    let row = store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(missing)?;
    drop(conn);
    if may_see(api, caller, &row).await? {
        Ok(row)
    } else {
        Err(missing())
    }
}

async fn may_see(api: &Api, caller: &Caller, row: &ElevationRow) -> Result<bool, ApiError> {
    if row.user_id == caller.user.id
        || caller
            .decide(Action::ManageMembers, ResourceRef::Workspace)
            .allowed
    {
        return Ok(true);
    }
    let subject = match Subject::load(api, caller, &row.raise).await {
        Ok(subject) => subject,
        Err(ApiError::NotFound(_)) => return Ok(false),
        Err(other) => return Err(other),
    };
    Ok(caller
        .decide(
            Action::ApproveElevation,
            ResourceRef::Elevation(ElevationRef {
                id: &row.id,
                requester: &row.user_id,
                wants: subject.wants(&row.raise),
            }),
        )
        .allowed)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Page size (1 to 200, default 10).
    #[serde(rename = "pagination[count]", default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    count: Option<String>,
    /// Opaque cursor from the previous page's `pagination.next`.
    #[serde(rename = "pagination[cursor]", default)]
    #[param(pattern = "^(MA|YWZ0ZXI6([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?)?$")]
    cursor: Option<String>,
    /// Only this person's requests.
    #[serde(rename = "userId", default)]
    user: Option<String>,
}

/// List the elevations the caller may see: their own, those they may approve, and all
/// of them for those who manage members (a page may hold fewer than asked).
#[utoipa::path(
    get,
    path = "/api/v1/elevations",
    tag = "Elevations",
    params(ListQuery),
    responses((status = 200, description = "List elevations.", body = Data<ElevationList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = super::PageQuery {
        count: q.count,
        cursor: q.cursor,
    }
    .page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = store::list(
        &mut conn,
        &caller.workspace.id,
        q.user.as_deref().unwrap_or_default(),
        &page.after,
        page.count,
    )
    .await?;
    drop(conn);
    let mut out = Vec::new();
    for row in &rows {
        if may_see(&api, &caller, row).await? {
            out.push(wire(row, caller.now));
        }
    }
    let last = rows.last().map(|r| r.id.as_str());
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |elevations, pagination| ElevationList {
            elevations,
            pagination,
        },
    ))
}

/// Get an elevation.
#[utoipa::path(
    get,
    path = "/api/v1/elevations/{id}",
    tag = "Elevations",
    params(("id" = String, Path, description = "Elevation id")),
    responses((status = 200, description = "Get an elevation.", body = Data<ElevationOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let row = seen(&api, &caller, &id).await?;
    Ok(data(ElevationOne {
        elevation: wire(&row, caller.now),
    }))
}

/// Asks the policy whether the caller may `action` (approve, deny, end) the request.
async fn allowed(
    api: &Api,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<ElevationRow, ApiError> {
    let missing = || ApiError::missing("elevation", id);
    let mut conn = api.store.read().await?;
    let row = store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(missing)?;
    drop(conn);
    // A source or destination deleted since: only owners and admins decide (as for a
    // label), its requester may still end it.
    let subject = match Subject::load(api, caller, &row.raise).await {
        Err(ApiError::NotFound(_)) => Subject::default(),
        other => other?,
    };
    let resource = ResourceRef::Elevation(ElevationRef {
        id: &row.id,
        requester: &row.user_id,
        wants: subject.wants(&row.raise),
    });
    let decision = caller.decide(action, resource);
    // Who may not decide it and may not see it gets the answer a missing one gets.
    let sees = row.user_id == caller.user.id
        || caller
            .decide(Action::ManageMembers, ResourceRef::Workspace)
            .allowed;
    match api
        .settle(caller, action, resource, decision, missing())
        .await
    {
        Err(ApiError::Forbidden(_)) if !sees => Err(missing()),
        Err(other) => Err(other),
        Ok(_) => Ok(row),
    }
}

/// Records a decision on a pending request, with its audit event.
async fn decide(
    api: &Api,
    caller: &Caller,
    mut row: ElevationRow,
    status: Stored,
    comment: String,
    kind: Kind,
) -> Result<Response, ApiError> {
    if row.status != Stored::Pending {
        return Err(ApiError::Conflict(format!(
            "elevation {:?} is {}, not PENDING",
            row.id,
            wire(&row, caller.now).status
        )));
    }
    row.status = status;
    row.decided_by = Some(caller.user.id.clone());
    row.decided_at = Some(caller.now);
    row.comment = comment;
    if status == Stored::Approved {
        row.window = Some((caller.now, caller.now + row.duration));
    }
    let shown = wire(&row, caller.now);
    let mut change = api.store.change().await?;
    if !store::decide(change.conn(), &row).await? {
        return Err(ApiError::Conflict(format!(
            "elevation {:?} was decided while this request ran",
            row.id
        )));
    }
    change
        .record(caller.draft(
            kind,
            "elevation",
            &row.id,
            Some(json!({"status": "PENDING"})),
            Some(json!(shown)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ElevationOne { elevation: shown }))
}

/// Approve someone's request: it is live from now for its duration. Only someone who
/// holds what it asks for, never its requester; never longer than the workspace allows.
#[utoipa::path(
    post,
    path = "/api/v1/elevations/{id}/approve",
    tag = "Elevations",
    params(("id" = String, Path, description = "Elevation id")),
    request_body = Remark,
    responses((status = 200, description = "The elevation, active.", body = Data<ElevationOne>))
)]
async fn approve(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Remark>,
) -> Result<Response, ApiError> {
    let comment = body.text()?;
    let row = allowed(&api, &caller, Action::ApproveElevation, &id).await?;
    let mut conn = api.store.read().await?;
    let requester = users::get(&mut conn, &caller.workspace.id, &row.user_id).await?;
    drop(conn);
    if !requester.is_some_and(|u| u.active) {
        return Err(ApiError::Conflict(
            "its requester is no longer an active member".into(),
        ));
    }
    let max = i64::from(caller.workspace.settings.elevation_max_minutes);
    if row.duration.num_minutes() > max {
        return Err(ApiError::Conflict(format!(
            "it asks for {} minutes and the workspace now allows {max}: ask again",
            row.duration.num_minutes()
        )));
    }
    decide(
        &api,
        &caller,
        row,
        Stored::Approved,
        comment,
        Kind::ElevationApprove,
    )
    .await
}

/// Deny someone's request, saying why.
#[utoipa::path(
    post,
    path = "/api/v1/elevations/{id}/deny",
    tag = "Elevations",
    params(("id" = String, Path, description = "Elevation id")),
    request_body = Why,
    responses((status = 200, description = "The elevation, denied.", body = Data<ElevationOne>))
)]
async fn deny(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Why>,
) -> Result<Response, ApiError> {
    let comment = prose("comment", &body.comment)?;
    let row = allowed(&api, &caller, Action::ApproveElevation, &id).await?;
    decide(
        &api,
        &caller,
        row,
        Stored::Denied,
        comment,
        Kind::ElevationDeny,
    )
    .await
}

/// End an elevation now: a pending one is cancelled, an active one's window closes.
/// Its requester or anyone who may approve it.
#[utoipa::path(
    post,
    path = "/api/v1/elevations/{id}/end",
    tag = "Elevations",
    params(("id" = String, Path, description = "Elevation id")),
    responses((status = 200, description = "The elevation, ended.", body = Data<ElevationOne>))
)]
async fn end(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = allowed(&api, &caller, Action::EndElevation, &id).await?;
    let before = wire(&row, caller.now);
    let mut change = api.store.change().await?;
    if !store::end(change.conn(), &row.id, &caller.user.id, caller.now).await? {
        return Err(ApiError::Conflict(format!(
            "elevation {id:?} is {}: nothing to end",
            before.status
        )));
    }
    let after = store::get(change.conn(), &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("elevation", &id))?;
    let shown = wire(&after, caller.now);
    change
        .record(caller.draft(
            Kind::ElevationEnd,
            "elevation",
            &id,
            Some(json!({"status": before.status})),
            Some(json!(shown)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ElevationOne { elevation: shown }))
}
