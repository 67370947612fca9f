//! `/change-requests`: tracking-plan changes proposed for review.
//!
//! Anyone who may edit tracking plans proposes new rules against the published version
//! they start from; who may publish approves (publishing a new version at once) or
//! rejects; the author amends, rebases or withdraws. A proposal whose base is no longer
//! the published version is never approved: its author rebases it first. Members who may
//! not publish reach this through the rules API too: their edits there amend their own
//! open proposal on the plan. Every step asks `authorize` and is audited.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::destinations::installable;
use super::plans::{self as plan_api, RulesSaved};
use super::prose::{Why, prose};
use super::wire::{Data, Outcome, Pagination};
use super::{Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of};
use crate::control::audit::Kind;
use crate::control::plan_diff::{self, PlanDiff};
use crate::control::policy::{Action, ChangeRequestRef, ResourceRef};
use crate::control::store::change_requests::{self as store, ChangeRequestRow, Filter, Status};
use crate::control::store::{Change, new_id, plans};
use crate::protocols::RuleDoc;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/tracking-plans/{id}/change-requests", post(propose))
        .route("/change-requests", get(list))
        .route("/change-requests/{id}", get(read))
        .route("/change-requests/{id}/approve", post(approve))
        .route("/change-requests/{id}/reject", post(reject))
        .route("/change-requests/{id}/withdraw", post(withdraw))
        .route("/change-requests/{id}/rebase", post(rebase))
}

/// A change request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequest {
    /// Id (`cr_…`).
    pub id: String,
    /// The plan it changes.
    pub tracking_plan_id: String,
    /// Who proposed it (user id).
    pub author_id: String,
    /// Why.
    pub description: String,
    /// `OPEN`, `PUBLISHED`, `REJECTED` or `WITHDRAWN`.
    #[schema(value_type = String, pattern = "^(OPEN|PUBLISHED|REJECTED|WITHDRAWN)$")]
    pub status: Status,
    /// The published version it starts from (0: the plan had none).
    pub base_version: u32,
    /// Open, and the plan has published another version since: its author must rebase it
    /// before it can be approved.
    pub stale: bool,
    /// How many rules the plan would hold.
    pub rule_count: usize,
    /// Proposed.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Who approved, rejected or withdrew it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// The reviewer's comment.
    pub comment: String,
    /// The version its approval published.
    pub published_version: Option<u32>,
}

/// One change request with its rules and what it changes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequestOne {
    /// The request.
    pub change_request: ChangeRequest,
    /// The proposed rules, whole.
    pub rules: Vec<RuleDoc>,
    /// What it changes against its base version, rule by rule.
    pub diff: PlanDiff,
    /// The same diff as text.
    pub diff_text: String,
}

/// A page of change requests.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequestList {
    /// The page.
    pub change_requests: Vec<ChangeRequest>,
    /// Paging.
    pub pagination: Pagination,
}

fn wire(cr: &ChangeRequestRow, published: u32) -> ChangeRequest {
    ChangeRequest {
        id: cr.id.clone(),
        tracking_plan_id: cr.plan_id.clone(),
        author_id: cr.author_id.clone(),
        description: cr.description.clone(),
        status: cr.status,
        base_version: cr.base_version,
        stale: cr.status == Status::Open && cr.base_version != published,
        rule_count: cr.rules.len(),
        created_at: cr.created_at,
        updated_at: cr.updated_at,
        decided_by: cr.decided_by.clone(),
        decided_at: cr.decided_at,
        comment: cr.comment.clone(),
        published_version: cr.published_version,
    }
}

/// The rules of a plan's published version `version`.
async fn rules_at(
    conn: &mut sqlx::AnyConnection,
    plan: &str,
    version: u32,
) -> Result<Vec<RuleDoc>, ApiError> {
    plans::version_rules(conn, plan, version)
        .await?
        .ok_or_else(|| {
            tracing::error!(plan, version, "a published plan version is missing");
            ApiError::Internal
        })
}

/// The request with its rules and its diff against its base version.
async fn one(api: &Api, caller: &Caller, cr: ChangeRequestRow) -> Result<Response, ApiError> {
    let mut conn = api.store.read().await?;
    let plan = plans::get(&mut conn, &caller.workspace.id, &cr.plan_id).await?;
    let base = rules_at(&mut conn, &cr.plan_id, cr.base_version).await?;
    drop(conn);
    let published = plan.map_or(0, |p| p.published_version);
    let diff = plan_diff::diff(&base, &cr.rules);
    Ok(data(ChangeRequestOne {
        change_request: wire(&cr, published),
        diff_text: diff.text(),
        diff,
        rules: cr.rules,
    }))
}

async fn load(api: &Api, caller: &Caller, id: &str) -> Result<ChangeRequestRow, ApiError> {
    let mut conn = api.store.read().await?;
    store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("change request", id))
}

/// What the audit log keeps of a proposal: the plan, its base, why, and which rules it
/// touches (never the rules themselves).
fn summary(cr: &ChangeRequestRow, base: &[RuleDoc]) -> Value {
    let mut out = plan_api::rules_digest(&cr.rules, cr.base_version);
    out["trackingPlanId"] = json!(cr.plan_id);
    out["description"] = json!(cr.description);
    out["status"] = json!(cr.status);
    out["changes"] = plan_api::rules_change(base, &cr.rules);
    out
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Proposal {
    /// Why the change is needed (1 to 2000 characters).
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    description: String,
    /// Every rule the plan would hold.
    #[schema(max_items = 2000)]
    rules: Vec<RuleDoc>,
}

/// Propose new rules for a plan, for review. Invalid JSON Schema is refused here, with
/// the schema error; a proposal that changes nothing is refused too.
#[utoipa::path(
    post,
    path = "/api/v1/tracking-plans/{id}/change-requests",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Plan id")),
    request_body = Proposal,
    responses((status = 200, description = "Propose a change to a plan's rules.", body = Data<ChangeRequestOne>))
)]
async fn propose(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Proposal>,
) -> Result<Response, ApiError> {
    let description = prose("description", &body.description)?;
    api.allow_workspace(&caller, Action::EditTrackingPlans)
        .await?;
    plan_api::checked(&id, &body.rules)?;
    let plan = plan_api::load(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    let base = rules_at(change.conn(), &plan.id, plan.published_version).await?;
    if plan_diff::diff(&base, &body.rules).is_empty() {
        return Err(ApiError::field(
            "rules",
            format!(
                "the proposal changes nothing against version {}",
                plan.published_version
            ),
        ));
    }
    let cr = ChangeRequestRow {
        id: new_id("cr_"),
        plan_id: plan.id.clone(),
        author_id: caller.user.id.clone(),
        description,
        base_version: plan.published_version,
        rules: body.rules,
        status: Status::Open,
        created_at: caller.now,
        updated_at: caller.now,
        decided_by: None,
        decided_at: None,
        comment: String::new(),
        published_version: None,
    };
    store::insert(change.conn(), &caller.workspace.id, &cr).await?;
    change
        .record(caller.draft(
            Kind::ChangeRequestCreate,
            "change_request",
            &cr.id,
            None,
            Some(summary(&cr, &base)),
        ))
        .await?;
    change.commit().await?;
    one(&api, &caller, cr).await
}

/// A member's edit through the rules API, for those who may not publish: it amends
/// their open proposal on the plan (or opens one from the plan's rules), never the plan.
pub(super) async fn propose_through_rules(
    api: &Api,
    caller: &Caller,
    plan: &plans::PlanRow,
    edit: impl FnOnce(&[RuleDoc]) -> Result<Vec<RuleDoc>, ApiError>,
) -> Result<Response, ApiError> {
    let mut change = api.store.change().await?;
    let open = store::open_of(change.conn(), &plan.id, &caller.user.id).await?;
    let base = rules_at(
        change.conn(),
        &plan.id,
        open.as_ref()
            .map_or(plan.published_version, |cr| cr.base_version),
    )
    .await?;
    let from = open.as_ref().map_or(&plan.rules, |cr| &cr.rules);
    let rules = edit(from)?;
    plan_api::checked(&plan.id, &rules)?;
    let saved = |rules: Vec<RuleDoc>, id: Option<String>| RulesSaved {
        status: Outcome::Success,
        rules,
        published: false,
        version: plan.published_version,
        change_request_id: id,
    };
    let (cr, kind, before) = match open {
        Some(mut cr) => {
            let before = summary(&cr, &base);
            cr.rules = rules;
            cr.updated_at = caller.now;
            if !store::amend(change.conn(), &cr).await? {
                return Err(decided_meanwhile(&cr.id));
            }
            (cr, Kind::ChangeRequestUpdate, Some(before))
        }
        None if plan_diff::diff(&base, &rules).is_empty() => {
            // Nothing to propose: the plan already says this.
            return Ok(data(saved(rules, None)));
        }
        None => {
            let cr = ChangeRequestRow {
                id: new_id("cr_"),
                plan_id: plan.id.clone(),
                author_id: caller.user.id.clone(),
                description: "Proposed through the rules API".to_owned(),
                base_version: plan.published_version,
                rules,
                status: Status::Open,
                created_at: caller.now,
                updated_at: caller.now,
                decided_by: None,
                decided_at: None,
                comment: String::new(),
                published_version: None,
            };
            store::insert(change.conn(), &caller.workspace.id, &cr).await?;
            (cr, Kind::ChangeRequestCreate, None)
        }
    };
    change
        .record(caller.draft(
            kind,
            "change_request",
            &cr.id,
            before,
            Some(summary(&cr, &base)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(saved(cr.rules, Some(cr.id))))
}

fn changed_since(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "change request {id:?} changed since it was read: read it again before approving"
    ))
}

fn decided_meanwhile(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "change request {id:?} was decided while this request ran"
    ))
}

/// `GET /change-requests`: a page, optionally filtered.
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
    /// Only requests in this state (`OPEN`, `PUBLISHED`, `REJECTED`, `WITHDRAWN`).
    #[serde(default)]
    #[param(pattern = "^(OPEN|PUBLISHED|REJECTED|WITHDRAWN)$")]
    status: Option<String>,
    /// Only requests by this user id.
    #[serde(default)]
    author: Option<String>,
    /// Only requests on this plan.
    #[serde(rename = "trackingPlanId", default)]
    plan: Option<String>,
}

/// List change requests, oldest id first.
#[utoipa::path(
    get,
    path = "/api/v1/change-requests",
    tag = "Change Requests",
    params(ListQuery),
    responses((status = 200, description = "List change requests.", body = Data<ChangeRequestList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = PageQuery {
        count: q.count,
        cursor: q.cursor,
    }
    .page()?;
    let status = match q.status.as_deref() {
        None => "",
        Some(s) => Status::parse(s)
            .ok_or_else(|| ApiError::field("status", "OPEN, PUBLISHED, REJECTED or WITHDRAWN"))?
            .name(),
    };
    api.allow_workspace(&caller, Action::ViewTrackingPlans)
        .await?;
    let mut conn = api.store.read().await?;
    let filter = Filter {
        status,
        author: q.author.as_deref().unwrap_or_default(),
        plan: q.plan.as_deref().unwrap_or_default(),
    };
    let rows = store::list(
        &mut conn,
        &caller.workspace.id,
        filter,
        &page.after,
        page.count,
    )
    .await?;
    let mut published: BTreeMap<&str, u32> = BTreeMap::new();
    for cr in &rows {
        if !published.contains_key(cr.plan_id.as_str()) {
            let plan = plans::get(&mut conn, &caller.workspace.id, &cr.plan_id).await?;
            published.insert(&cr.plan_id, plan.map_or(0, |p| p.published_version));
        }
    }
    let out: Vec<ChangeRequest> = rows
        .iter()
        .map(|cr| wire(cr, published.get(cr.plan_id.as_str()).copied().unwrap_or(0)))
        .collect();
    let last = rows.last().map(|cr| cr.id.as_str());
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |change_requests, pagination| ChangeRequestList {
            change_requests,
            pagination,
        },
    ))
}

/// Get a change request, its rules and its diff (JSON and text).
#[utoipa::path(
    get,
    path = "/api/v1/change-requests/{id}",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "Get a change request.", body = Data<ChangeRequestOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewTrackingPlans)
        .await?;
    let cr = load(&api, &caller, &id).await?;
    one(&api, &caller, cr).await
}

/// Asks the policy whether the caller may `action` this request; a missing one is 404.
async fn allowed(
    api: &Api,
    caller: &Caller,
    action: Action,
    id: &str,
) -> Result<ChangeRequestRow, ApiError> {
    let cr = load(api, caller, id).await?;
    let resource = ResourceRef::ChangeRequest(ChangeRequestRef {
        id: &cr.id,
        author: &cr.author_id,
    });
    api.allow(
        caller,
        action,
        resource,
        ApiError::missing("change request", id),
    )
    .await?;
    if cr.status != Status::Open {
        return Err(ApiError::Conflict(format!(
            "change request {id:?} is {}, not OPEN",
            cr.status.name()
        )));
    }
    Ok(cr)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangeApproval {
    /// The `updatedAt` of the request as the reviewer read it: if it changed since, the
    /// approval is refused (409) rather than publishing rules nobody reviewed.
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    /// The reviewer's comment (1 to 2000 characters).
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    comment: Option<String>,
}

/// Closes `cr` as decided in `change`, with its audit event.
async fn close(
    change: &mut Change,
    caller: &Caller,
    cr: &mut ChangeRequestRow,
    status: Status,
    comment: String,
    kind: Kind,
) -> Result<(), ApiError> {
    let before = json!({"status": cr.status});
    cr.status = status;
    cr.decided_by = Some(caller.user.id.clone());
    cr.decided_at = Some(caller.now);
    cr.comment = comment;
    if !store::decide(change.conn(), cr).await? {
        return Err(decided_meanwhile(&cr.id));
    }
    change
        .record(caller.draft(
            kind,
            "change_request",
            &cr.id,
            Some(before),
            Some(json!({
                "status": cr.status,
                "trackingPlanId": cr.plan_id,
                "comment": cr.comment,
                "publishedVersion": cr.published_version,
            })),
        ))
        .await?;
    Ok(())
}

/// Approve a change request: its rules become the plan's next published version, which
/// every gateway enforces within a second. Refused for a stale request (rebase it), for
/// its author unless the workspace allows self-approval, and when the plan is used by a
/// source the reviewer may not edit.
#[utoipa::path(
    post,
    path = "/api/v1/change-requests/{id}/approve",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Change request id")),
    request_body = ChangeApproval,
    responses((status = 200, description = "Approve and publish a change request.", body = Data<ChangeRequestOne>))
)]
async fn approve(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ChangeApproval>,
) -> Result<Response, ApiError> {
    let comment = match &body.comment {
        Some(c) => prose("comment", c)?,
        None => String::new(),
    };
    let read = allowed(&api, &caller, Action::ReviewChangeRequest, &id).await?;
    if body.updated_at.is_some_and(|at| at != read.updated_at) {
        return Err(changed_since(&id));
    }
    plan_api::may_change_sources_of(&api, &caller, &read.plan_id).await?;
    let mut change = api.store.change().await?;
    // What is published is what was authorised and (with `updatedAt`) reviewed: the
    // request read again under the writers' lock, unchanged.
    let mut cr = store::get(change.conn(), &caller.workspace.id, &id)
        .await?
        .filter(|now| now.status == Status::Open && now.updated_at == read.updated_at)
        .ok_or_else(|| changed_since(&id))?;
    let mut plan = plans::get(change.conn(), &caller.workspace.id, &cr.plan_id)
        .await?
        .ok_or_else(|| ApiError::missing("tracking plan", &cr.plan_id))?;
    if plan.published_version != cr.base_version {
        return Err(ApiError::Conflict(format!(
            "the plan is at version {} and this request starts from version {}: its author \
             must rebase it (POST /change-requests/{}/rebase)",
            plan.published_version, cr.base_version, cr.id
        )));
    }
    plan_api::checked(&plan.id, &cr.rules)?;
    let before = plan.clone();
    plan.rules = cr.rules.clone();
    plan.updated_at = caller.now;
    plans::update(change.conn(), &plan).await?;
    let version = plans::publish(change.conn(), &plan, &caller.user.id, caller.now).await?;
    plan.published_version = version;
    installable(&api, &mut change, &caller.workspace.id).await?;
    cr.published_version = Some(version);
    close(
        &mut change,
        &caller,
        &mut cr,
        Status::Published,
        comment,
        Kind::ChangeRequestApprove,
    )
    .await?;
    change
        .record(plan_api::publish_event(
            &caller,
            &before,
            &plan,
            Some(&cr.id),
        ))
        .await?;
    change.commit().await?;
    one(&api, &caller, cr).await
}

/// Reject a change request, with a comment saying why.
#[utoipa::path(
    post,
    path = "/api/v1/change-requests/{id}/reject",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Change request id")),
    request_body = Why,
    responses((status = 200, description = "Reject a change request.", body = Data<ChangeRequestOne>))
)]
async fn reject(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Why>,
) -> Result<Response, ApiError> {
    let comment = prose("comment", &body.comment)?;
    let cr = allowed(&api, &caller, Action::ReviewChangeRequest, &id).await?;
    end_as(
        &api,
        &caller,
        cr,
        Status::Rejected,
        comment,
        Kind::ChangeRequestReject,
    )
    .await
}

/// Closes `cr` in a change of its own and answers it.
async fn end_as(
    api: &Api,
    caller: &Caller,
    mut cr: ChangeRequestRow,
    status: Status,
    comment: String,
    kind: Kind,
) -> Result<Response, ApiError> {
    let mut change = api.store.change().await?;
    close(&mut change, caller, &mut cr, status, comment, kind).await?;
    change.commit().await?;
    one(api, caller, cr).await
}

/// Withdraw your own change request.
#[utoipa::path(
    post,
    path = "/api/v1/change-requests/{id}/withdraw",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Change request id")),
    responses((status = 200, description = "Withdraw a change request.", body = Data<ChangeRequestOne>))
)]
async fn withdraw(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cr = allowed(&api, &caller, Action::AmendChangeRequest, &id).await?;
    end_as(
        &api,
        &caller,
        cr,
        Status::Withdrawn,
        String::new(),
        Kind::ChangeRequestWithdraw,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rebase {
    /// The rules to propose instead (needed when the published version changed the same
    /// rules); without them the proposal's changes are carried onto the published
    /// version rule by rule.
    #[serde(default)]
    #[schema(max_items = 2000)]
    rules: Option<Vec<RuleDoc>>,
    /// A new description.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    description: Option<String>,
}

/// Rebase your own change request onto the plan's published version. Without `rules`,
/// each rule the proposal changed is carried over unless the published version changed
/// it differently too: then nothing is merged and the answer (409) names those rules, to
/// be resolved by sending `rules`.
#[utoipa::path(
    post,
    path = "/api/v1/change-requests/{id}/rebase",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Change request id")),
    request_body = Rebase,
    responses((status = 200, description = "Rebase a change request onto the published version.", body = Data<ChangeRequestOne>))
)]
async fn rebase(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Rebase>,
) -> Result<Response, ApiError> {
    let description = body
        .description
        .as_deref()
        .map(|d| prose("description", d))
        .transpose()?;
    let mut cr = allowed(&api, &caller, Action::AmendChangeRequest, &id).await?;
    let mut change = api.store.change().await?;
    let plan = plans::get(change.conn(), &caller.workspace.id, &cr.plan_id)
        .await?
        .ok_or_else(|| ApiError::missing("tracking plan", &cr.plan_id))?;
    let base = rules_at(change.conn(), &plan.id, cr.base_version).await?;
    let published = rules_at(change.conn(), &plan.id, plan.published_version).await?;
    let rules = match body.rules {
        Some(rules) => rules,
        None => plan_diff::rebase(&base, &published, &cr.rules).map_err(|conflicts| {
            ApiError::Conflict(format!(
                "version {} changed these rules too: {}; send the rules you want with `rules`",
                plan.published_version,
                conflicts.join(", ")
            ))
        })?,
    };
    plan_api::checked(&plan.id, &rules)?;
    let before = summary(&cr, &base);
    cr.rules = rules;
    cr.base_version = plan.published_version;
    cr.description = description.unwrap_or(cr.description);
    cr.updated_at = caller.now;
    if !store::amend(change.conn(), &cr).await? {
        return Err(decided_meanwhile(&cr.id));
    }
    change
        .record(caller.draft(
            Kind::ChangeRequestUpdate,
            "change_request",
            &cr.id,
            Some(before),
            Some(summary(&cr, &published)),
        ))
        .await?;
    change.commit().await?;
    one(&api, &caller, cr).await
}
