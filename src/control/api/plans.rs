//! `/tracking-plans`: plans, their rules (each publish an immutable version), and the
//! sources they govern.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use utoipa::ToSchema;

use super::destinations::installable;
use super::sources::{Source, SourceList};
use super::wire::{Data, Outcome, Pagination, Status, document};
use super::{
    Api, ApiError, Body, Caller, Forbidden, PageQuery, Path, Query, data, page_in_memory, page_of,
    success, text_field,
};
use crate::control::audit::{Draft, Kind};
use crate::control::policy::{Action, ResourceRef};
use crate::control::store::plans::{self, PlanRow};
use crate::control::store::{new_id, resource_changes, sources};
use crate::protocols::{Plan, PlanDoc, RuleDoc};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/tracking-plans", get(list).post(create))
        .route(
            "/tracking-plans/{id}",
            get(read).patch(rename).delete(remove),
        )
        .route(
            "/tracking-plans/{id}/rules",
            get(rules)
                .put(replace_rules)
                .patch(update_rules)
                .delete(remove_rules),
        )
        .route(
            "/tracking-plans/{id}/sources",
            get(plan_sources)
                .post(connect_source)
                .delete(disconnect_source),
        )
}

/// Rule names listed at most in an audit event's summary of a rules change.
const AUDIT_RULE_NAMES: usize = 50;

/// What the audit log keeps of a plan's rules: their count and content hash, never the
/// rules themselves (a 1 MB plan saved twice would cost 4 MB of audit log).
pub(super) fn rules_digest(rules: &[RuleDoc], version: u32) -> Value {
    let bytes = serde_json::to_vec(rules).unwrap_or_default();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    json!({"version": version, "ruleCount": rules.len(), "rulesSha256": sha})
}

/// Which rules a change adds, removes and modifies, by `TYPE key vN` (at most
/// [`AUDIT_RULE_NAMES`] of each, with the totals).
pub(super) fn rules_change(before: &[RuleDoc], after: &[RuleDoc]) -> Value {
    use std::collections::BTreeMap;
    let index = |rules: &[RuleDoc]| -> BTreeMap<String, String> {
        rules
            .iter()
            .map(|r| {
                let name = format!(
                    "{} {} v{}",
                    r.kind,
                    r.key.as_deref().unwrap_or("-"),
                    r.version
                );
                (name, r.json_schema.to_string())
            })
            .collect()
    };
    let (old, new) = (index(before), index(after));
    let added: Vec<&String> = new.keys().filter(|k| !old.contains_key(*k)).collect();
    let removed: Vec<&String> = old.keys().filter(|k| !new.contains_key(*k)).collect();
    let modified: Vec<&String> = new
        .iter()
        .filter(|(k, schema)| old.get(*k).is_some_and(|was| was != *schema))
        .map(|(k, _)| k)
        .collect();
    let some = |names: &[&String]| -> Value {
        json!({"count": names.len(), "names": names.iter().take(AUDIT_RULE_NAMES).collect::<Vec<_>>()})
    };
    json!({"added": some(&added), "removed": some(&removed), "modified": some(&modified)})
}

/// Publishing or deleting a plan changes what every source using it enforces: the
/// caller must be allowed to edit each of them (a member with `membersCanPublish` never
/// reaches a source hidden from them, or one they may only read, through its plan), and
/// to change a protected one at once (production protection is not bypassed through
/// the plan a protected source enforces).
pub(super) async fn may_change_sources_of(
    api: &Api,
    caller: &Caller,
    plan: &str,
) -> Result<(), ApiError> {
    let mut conn = api.store.read().await?;
    let using = sources::all(&mut conn, &caller.workspace.id).await?;
    let labels = resource_changes::protected_labels(&mut conn, &caller.workspace.id).await?;
    drop(conn);
    let refused = || ApiError::Forbidden(Forbidden::PlanInUse);
    for s in using
        .iter()
        .filter(|s| s.tracking_plan_id.as_deref() == Some(plan))
    {
        // Asked of the policy as an edit of that source: refusals are audited, and a
        // hidden source answers exactly as a visible one the caller may not edit.
        let resource = ResourceRef::Source(s.as_ref());
        api.allow_reached(caller, Action::EditSource, resource, refused)
            .await?;
        // Asked only of a source the caller may edit, so it never tells a hidden one.
        if super::protected::is_protected(s, &labels) {
            api.allow(
                caller,
                Action::ApplyProtectedChange,
                resource,
                ApiError::Forbidden(Forbidden::PlanProtected),
            )
            .await
            .map_err(|e| match e {
                ApiError::Forbidden(_) => ApiError::Forbidden(Forbidden::PlanProtected),
                other => other,
            })?;
        }
    }
    Ok(())
}

/// A tracking plan (its rules are read on their own: `/tracking-plans/{id}/rules`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPlan {
    /// Id (`tp_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Slug (= id).
    pub slug: String,
    /// Free text.
    pub description: String,
    /// `LIVE`, `PROPERTY_LIBRARY`, `RULE_LIBRARY` or `TEMPLATE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Newest published version (0: never published).
    pub version: u32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

/// `{"trackingPlan": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPlanOne {
    /// The plan.
    pub tracking_plan: TrackingPlan,
}

/// `{"trackingPlan": …, "status": "SUCCESS"}`: a plan renamed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPlanRenamed {
    /// The plan after the change.
    pub tracking_plan: TrackingPlan,
    /// Always `SUCCESS`.
    pub status: Outcome,
}

/// A page of tracking plans.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPlanList {
    /// The page.
    pub tracking_plans: Vec<TrackingPlan>,
    /// Paging.
    pub pagination: Pagination,
}

/// A page of a plan's rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    /// `{type, key?, version, jsonSchema}` each (the rules being edited).
    pub rules: Vec<RuleDoc>,
    /// Paging (the cursor is a rule's position).
    pub pagination: Pagination,
    /// Newest published version (0: never published).
    pub version: u32,
}

/// A plan's rules after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesSaved {
    /// Always `SUCCESS`.
    pub status: Outcome,
    /// `{type, key?, version, jsonSchema}` each: every rule of the plan.
    pub rules: Vec<RuleDoc>,
    /// Whether the change was published as a new version (else it was proposed for
    /// review: `changeRequestId`).
    pub published: bool,
    /// Newest published version.
    pub version: u32,
    /// The caller's open change request that now holds the change (those who may not
    /// publish propose instead).
    #[serde(rename = "changeRequestId", skip_serializing_if = "Option::is_none")]
    pub change_request_id: Option<String>,
}

fn wire(plan: &PlanRow) -> TrackingPlan {
    TrackingPlan {
        id: plan.id.clone(),
        name: plan.name.clone(),
        slug: plan.id.clone(),
        description: plan.description.clone(),
        kind: plan.plan_type.clone(),
        version: plan.published_version,
        created_at: plan.created_at,
        updated_at: plan.updated_at,
    }
}

pub(super) async fn load(api: &Api, caller: &Caller, id: &str) -> Result<PlanRow, ApiError> {
    let mut conn = api.store.read().await?;
    plans::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("tracking plan", id))
}

/// List tracking plans.
#[utoipa::path(
    get,
    path = "/api/v1/tracking-plans",
    tag = "Tracking Plans",
    params(PageQuery),
    responses((status = 200, description = "List tracking plans.", body = Data<TrackingPlanList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PlanListQuery>,
) -> Result<Response, ApiError> {
    let page = PageQuery {
        count: q.count,
        cursor: q.cursor,
    }
    .page()?;
    let plan_type = match q.plan_type.as_deref() {
        None => "",
        Some(t) if PLAN_TYPES.contains(&t) => t,
        Some(_) => return Err(ApiError::field("type", PLAN_TYPES.join(", "))),
    };
    api.allow_workspace(&caller, Action::ViewTrackingPlans)
        .await?;
    let mut conn = api.store.read().await?;
    let rows = plans::list(
        &mut conn,
        &caller.workspace.id,
        plan_type,
        &page.after,
        page.count,
    )
    .await?;
    let last = rows.last().map(|p| p.id.as_str());
    let out: Vec<TrackingPlan> = rows.iter().map(wire).collect();
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |tracking_plans, pagination| TrackingPlanList {
            tracking_plans,
            pagination,
        },
    ))
}

/// Segment's plan types.
const PLAN_TYPES: [&str; 4] = ["LIVE", "PROPERTY_LIBRARY", "RULE_LIBRARY", "TEMPLATE"];

/// `GET /tracking-plans`: a page, optionally of one type.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PlanListQuery {
    /// Page size (1 to 200, default 10).
    #[serde(rename = "pagination[count]", default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    count: Option<String>,
    /// Opaque cursor from the previous page's `pagination.next`.
    #[serde(rename = "pagination[cursor]", default)]
    #[param(pattern = "^(MA|YWZ0ZXI6([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?)?$")]
    cursor: Option<String>,
    /// Only plans of this type (`LIVE`, `PROPERTY_LIBRARY`, `RULE_LIBRARY`, `TEMPLATE`).
    #[serde(rename = "type", default)]
    plan_type: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePlan {
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 200
    )]
    name: String,
    #[serde(rename = "type", default = "live")]
    #[schema(pattern = "^(LIVE|PROPERTY_LIBRARY|RULE_LIBRARY|TEMPLATE)$")]
    plan_type: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: Option<String>,
}

fn live() -> String {
    "LIVE".into()
}

/// Create a tracking plan.
#[utoipa::path(
    post,
    path = "/api/v1/tracking-plans",
    tag = "Tracking Plans",
    request_body = CreatePlan,
    responses((status = 200, description = "Create a tracking plan.", body = Data<TrackingPlanOne>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreatePlan>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 200)?;
    if !PLAN_TYPES.contains(&body.plan_type.as_str()) {
        return Err(ApiError::field(
            "type",
            format!("one of {}", PLAN_TYPES.join(", ")),
        ));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        return Err(ApiError::field("description", "at most 2000 characters"));
    }
    let ws = ApiError::missing("workspace", "");
    api.allow(
        &caller,
        Action::EditTrackingPlans,
        ResourceRef::Workspace,
        ws,
    )
    .await?;
    let plan = PlanRow {
        id: new_id("tp_"),
        name,
        description: body.description.unwrap_or_default(),
        plan_type: body.plan_type,
        rules: Vec::new(),
        published_version: 0,
        created_at: caller.now,
        updated_at: caller.now,
        owner_id: Some(caller.user.id.clone()),
    };
    let mut change = api.store.change().await?;
    plans::insert(change.conn(), &caller.workspace.id, &plan).await?;
    let after = wire(&plan);
    change
        .record(caller.draft(
            Kind::TrackingPlanCreate,
            "tracking_plan",
            &plan.id,
            None,
            Some(document(&after)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(TrackingPlanOne {
        tracking_plan: after,
    }))
}

/// Get a tracking plan.
#[utoipa::path(
    get,
    path = "/api/v1/tracking-plans/{id}",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "Get a tracking plan.", body = Data<TrackingPlanOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewTrackingPlans)
        .await?;
    let plan = load(&api, &caller, &id).await?;
    Ok(data(TrackingPlanOne {
        tracking_plan: wire(&plan),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rename {
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 200
    )]
    name: Option<String>,
    /// At most 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: Option<String>,
}

/// Rename a tracking plan.
#[utoipa::path(
    patch,
    path = "/api/v1/tracking-plans/{id}",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = Rename,
    responses((status = 200, description = "Rename a tracking plan.", body = Data<TrackingPlanRenamed>))
)]
async fn rename(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Rename>,
) -> Result<Response, ApiError> {
    let name = body
        .name
        .as_deref()
        .map(|n| text_field("name", n, 200))
        .transpose()?;
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        return Err(ApiError::field("description", "at most 2000 characters"));
    }
    let ws = ApiError::missing("workspace", "");
    api.allow(
        &caller,
        Action::EditTrackingPlans,
        ResourceRef::Workspace,
        ws,
    )
    .await?;
    let before = load(&api, &caller, &id).await?;
    let mut plan = before.clone();
    if let Some(name) = name {
        plan.name = name;
    }
    if let Some(description) = body.description {
        plan.description = description;
    }
    plan.updated_at = caller.now;
    let mut change = api.store.change().await?;
    plans::update(change.conn(), &plan).await?;
    change
        .record(caller.draft(
            Kind::TrackingPlanUpdate,
            "tracking_plan",
            &id,
            Some(document(&wire(&before))?),
            Some(document(&wire(&plan))?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(TrackingPlanRenamed {
        tracking_plan: wire(&plan),
        status: Outcome::Success,
    }))
}

/// Delete a tracking plan.
#[utoipa::path(
    delete,
    path = "/api/v1/tracking-plans/{id}",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "Delete a tracking plan.", body = Data<Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = ApiError::missing("workspace", "");
    api.allow(
        &caller,
        Action::PublishTrackingPlans,
        ResourceRef::Workspace,
        ws,
    )
    .await?;
    let before = load(&api, &caller, &id).await?;
    may_change_sources_of(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    plans::delete(change.conn(), &id).await?;
    change
        .record(caller.draft(
            Kind::TrackingPlanDelete,
            "tracking_plan",
            &id,
            Some(document(&wire(&before))?),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// Get a plan's rules.
#[utoipa::path(
    get,
    path = "/api/v1/tracking-plans/{id}/rules",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "Get a plan's rules.", body = Data<RuleList>))
)]
async fn rules(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewTrackingPlans)
        .await?;
    let plan = load(&api, &caller, &id).await?;
    // Rules have no id of their own: the page cursor is the rule's position.
    let items: Vec<(String, RuleDoc)> = plan
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| (format!("{i:08}"), r))
        .collect();
    Ok(page_in_memory(items, &page, |rules, pagination| RuleList {
        rules,
        pagination,
        version: plan.published_version,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RulesBody {
    #[schema(max_items = 2000)]
    rules: Vec<RuleDoc>,
}

/// Replaces the rules. Who may publish (owners, admins; members when the workspace
/// allows it) publishes a new immutable version at once; others save a draft.
#[utoipa::path(
    put,
    path = "/api/v1/tracking-plans/{id}/rules",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = RulesBody,
    responses((status = 200, description = "Replace a plan's rules (published as a new version by those who may publish).", body = Data<RulesSaved>))
)]
async fn replace_rules(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RulesBody>,
) -> Result<Response, ApiError> {
    save_rules(&api, &caller, &id, |_| Ok(body.rules)).await
}

/// The most rules a plan holds.
pub(super) const MAX_RULES: usize = 2000;

/// Refuses rules the gateways could not install: more than [`MAX_RULES`], or a rule
/// that does not compile (the schema error is the answer). Checked whenever rules are
/// written, whether a source uses the plan yet or not: connecting one later must not find
/// a plan the gateways cannot install.
pub(super) fn checked(plan: &str, rules: &[RuleDoc]) -> Result<(), ApiError> {
    if rules.len() > MAX_RULES {
        return Err(ApiError::field(
            "rules",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    // One rule per type, key and version: gateways enforce the first of two, and a diff
    // would show the other, so a duplicate could hide a change from its reviewers.
    let mut seen = std::collections::HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        let key = r.key.as_deref().filter(|k| !k.is_empty());
        if !seen.insert((r.kind.as_str(), key, r.version)) {
            return Err(ApiError::field(
                &format!("rules[{i}]"),
                format!(
                    "a second {} rule {:?} version {}: one rule per type, key and version",
                    r.kind,
                    key.unwrap_or_default(),
                    r.version
                ),
            ));
        }
    }
    Plan::compile(&PlanDoc {
        id: plan.to_owned(),
        name: None,
        version: 1,
        rules: rules.to_vec(),
    })
    .map(|_| ())
    .map_err(|e| ApiError::field("rules", e.to_string()))
}

/// The audit event of a publish: the rules' digests before and after, the rules it
/// changed, and the change request it carried out, if any.
pub(super) fn publish_event(
    caller: &Caller,
    before: &PlanRow,
    after: &PlanRow,
    change_request: Option<&str>,
) -> Draft {
    let mut state = rules_digest(&after.rules, after.published_version);
    state["changes"] = rules_change(&before.rules, &after.rules);
    if let Some(id) = change_request {
        state["changeRequestId"] = json!(id);
    }
    caller.draft(
        Kind::TrackingPlanPublish,
        "tracking_plan",
        &after.id,
        Some(rules_digest(&before.rules, before.published_version)),
        Some(state),
    )
}

/// Changes a plan's rules with `edit` (given the current ones): published as a new
/// version at once by those who may publish; for the others, a change request.
async fn save_rules(
    api: &Api,
    caller: &Caller,
    id: &str,
    edit: impl FnOnce(&[RuleDoc]) -> Result<Vec<RuleDoc>, ApiError>,
) -> Result<Response, ApiError> {
    let ws = || ApiError::missing("workspace", "");
    api.allow(
        caller,
        Action::EditTrackingPlans,
        ResourceRef::Workspace,
        ws(),
    )
    .await?;
    let before = load(api, caller, id).await?;
    if !caller
        .decide(Action::PublishTrackingPlans, ResourceRef::Workspace)
        .allowed
    {
        return super::change_requests::propose_through_rules(api, caller, &before, edit).await;
    }
    may_change_sources_of(api, caller, id).await?;
    let mut plan = before.clone();
    plan.rules = edit(&before.rules)?;
    checked(id, &plan.rules)?;
    plan.updated_at = caller.now;
    let mut change = api.store.change().await?;
    plans::update(change.conn(), &plan).await?;
    plan.published_version =
        plans::publish(change.conn(), &plan, &caller.user.id, caller.now).await?;
    installable(api, &mut change, &caller.workspace.id).await?;
    change
        .record(publish_event(caller, &before, &plan, None))
        .await?;
    change.commit().await?;
    Ok(data(RulesSaved {
        status: Outcome::Success,
        rules: plan.rules,
        published: true,
        version: plan.published_version,
        change_request_id: None,
    }))
}

/// A rule to add or change (Segment's shape): matched by `type` and `key`; `newKey`
/// renames it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleUpdate {
    #[serde(rename = "type")]
    #[schema(pattern = "^(TRACK|IDENTIFY|GROUP|PAGE|SCREEN|COMMON)$")]
    kind: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    new_key: Option<String>,
    #[serde(default = "first_version")]
    version: u32,
    #[schema(value_type = Option<Object>)]
    json_schema: Option<Value>,
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RuleUpdates {
    #[schema(max_items = 2000)]
    rules: Vec<RuleUpdate>,
}

/// Add or change rules (Segment's `updateRulesInTrackingPlan`): a rule with the same type,
/// key and version is replaced (renamed by `newKey`), others are added.
#[utoipa::path(
    patch,
    path = "/api/v1/tracking-plans/{id}/rules",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = RuleUpdates,
    responses((status = 200, description = "Add or change rules.", body = Data<RulesSaved>))
)]
async fn update_rules(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RuleUpdates>,
) -> Result<Response, ApiError> {
    if body.rules.len() > MAX_RULES {
        return Err(ApiError::field(
            "rules",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    save_rules(&api, &caller, &id, move |current| {
        let mut rules = current.to_vec();
        for (i, u) in body.rules.into_iter().enumerate() {
            let schema = u.json_schema.unwrap_or_else(|| json!({}));
            let found = rules
                .iter_mut()
                .find(|r| r.kind == u.kind && r.key == u.key && r.version == u.version);
            let key = u.new_key.or(u.key);
            match found {
                Some(rule) => {
                    rule.key = key;
                    rule.json_schema = schema;
                }
                None => {
                    let rule: RuleDoc = serde_json::from_value(json!({
                        "type": u.kind, "key": key, "version": u.version, "jsonSchema": schema,
                    }))
                    .map_err(|e| ApiError::field(&format!("rules[{i}]"), e.to_string()))?;
                    rules.push(rule);
                }
            }
        }
        Ok(rules)
    })
    .await
}

/// A rule named for removal: type, key, version (key and version optional).
type RuleName = (Option<String>, Option<String>, Option<u32>);

/// Remove rules (Segment's `removeRulesFromTrackingPlan`): the query names them as
/// `rules[0][type]=TRACK&rules[0][key]=…&rules[0][version]=1`.
#[utoipa::path(
    delete,
    path = "/api/v1/tracking-plans/{id}/rules",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id"), ("rules[0][type]" = String, Query, description = "Type of a rule to remove (rules[i][key], rules[i][version] name it further)")),
    responses((status = 200, description = "Remove rules.", body = Data<RulesSaved>))
)]
async fn remove_rules(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut wanted: std::collections::BTreeMap<usize, RuleName> = std::collections::BTreeMap::new();
    for (name, value) in &q {
        let parsed = name
            .strip_prefix("rules[")
            .and_then(|rest| rest.split_once("]["))
            .and_then(|(i, field)| Some((i.parse::<usize>().ok()?, field.strip_suffix(']')?)));
        let Some((i, field)) = parsed.filter(|(i, _)| *i < MAX_RULES) else {
            return Err(ApiError::field(name, "not rules[i][type|key|version]"));
        };
        let entry = wanted.entry(i).or_default();
        match field {
            "type" => entry.0 = Some(value.clone()),
            "key" => entry.1 = Some(value.clone()),
            "version" => {
                entry.2 = Some(
                    value
                        .parse()
                        .map_err(|_| ApiError::field(name, "a whole number"))?,
                );
            }
            _ => return Err(ApiError::field(name, "not rules[i][type|key|version]")),
        }
    }
    if wanted.is_empty() {
        return Err(ApiError::field(
            "rules",
            "name the rules to remove: rules[0][type]=…",
        ));
    }
    let mut named = Vec::new();
    for (i, (kind, key, version)) in wanted {
        let kind = kind.ok_or_else(|| ApiError::field(&format!("rules[{i}][type]"), "required"))?;
        named.push((kind, key, version));
    }
    save_rules(&api, &caller, &id, move |current| {
        Ok(current
            .iter()
            .filter(|r| {
                !named.iter().any(|(kind, key, version)| {
                    *kind == r.kind
                        && (key.is_none() || *key == r.key)
                        && version.is_none_or(|v| v == r.version)
                })
            })
            .cloned()
            .collect())
    })
    .await
}

/// The sources a plan is connected to (those the caller may see).
#[utoipa::path(
    get,
    path = "/api/v1/tracking-plans/{id}/sources",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id"), PageQuery),
    responses((status = 200, description = "The plan's sources.", body = Data<SourceList>))
)]
async fn plan_sources(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewTrackingPlans)
        .await?;
    load(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let all = sources::all(&mut conn, &caller.workspace.id).await?;
    drop(conn);
    let items: Vec<(String, Source)> = all
        .iter()
        .filter(|s| s.tracking_plan_id.as_deref() == Some(id.as_str()))
        .filter(|s| {
            caller
                .decide(Action::ViewSource, ResourceRef::Source(s.as_ref()))
                .allowed
        })
        .map(|s| {
            (
                s.id.clone(),
                super::sources::wire(s, &caller.workspace.id, &[], None),
            )
        })
        .collect();
    Ok(page_in_memory(items, &page, |sources, pagination| {
        SourceList {
            sources,
            pagination,
        }
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SourceQuery {
    /// The source to disconnect.
    pub(super) source_id: String,
}

/// Disconnect a source from the plan (its events are no longer checked against it).
#[utoipa::path(
    delete,
    path = "/api/v1/tracking-plans/{id}/sources",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id"), SourceQuery),
    responses((status = 200, description = "Disconnect a source from the plan.", body = Data<Status>))
)]
async fn disconnect_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<SourceQuery>,
) -> Result<Response, ApiError> {
    link_source(&api, &caller, &id, &q.source_id, false).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ConnectSource {
    pub(super) source_id: String,
}

/// Connect a source to the plan.
#[utoipa::path(
    post,
    path = "/api/v1/tracking-plans/{id}/sources",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = ConnectSource,
    responses((status = 200, description = "Connect a source to the plan.", body = Data<Status>))
)]
async fn connect_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ConnectSource>,
) -> Result<Response, ApiError> {
    link_source(&api, &caller, &id, &body.source_id, true).await
}

/// Everything linking plan `id` and `source_id` (connecting, else disconnecting) asks
/// before it changes anything: editing plans, seeing the plan, editing the source, and
/// to disconnect, the source connected to the plan.
pub(super) async fn check_link(
    api: &Api,
    caller: &Caller,
    id: &str,
    source_id: &str,
    connect: bool,
) -> Result<(PlanRow, sources::SourceRow), ApiError> {
    let ws = ApiError::missing("workspace", "");
    api.allow(
        caller,
        Action::EditTrackingPlans,
        ResourceRef::Workspace,
        ws,
    )
    .await?;
    let plan = load(api, caller, id).await?;
    let mut conn = api.store.read().await?;
    let missing = || ApiError::missing("source", source_id);
    let source = sources::get(&mut conn, &caller.workspace.id, source_id)
        .await?
        .ok_or_else(missing)?;
    drop(conn);
    let resource = ResourceRef::Source(source.as_ref());
    api.allow_seen(
        caller,
        Action::ViewSource,
        Action::EditSource,
        resource,
        resource,
        missing,
    )
    .await?;
    if !connect && source.tracking_plan_id.as_deref() != Some(plan.id.as_str()) {
        // No such connection: a missing thing, as `DELETE` of one answers.
        return Err(ApiError::NotFound(format!(
            "source {:?} is not connected to this plan",
            source.id
        )));
    }
    Ok((plan, source))
}

/// Connects (or disconnects) a source and a plan: editing plans, and editing the source.
async fn link_source(
    api: &Api,
    caller: &Caller,
    id: &str,
    source_id: &str,
    connect: bool,
) -> Result<Response, ApiError> {
    let (plan, mut source) = check_link(api, caller, id, source_id, connect).await?;
    let before = source.tracking_plan_id.clone();
    source.tracking_plan_id = connect.then(|| plan.id.clone());
    source.updated_at = caller.now;
    let mut change = api.store.change().await?;
    sources::update(change.conn(), &source).await?;
    installable(api, &mut change, &caller.workspace.id).await?;
    let action = if connect {
        Kind::TrackingPlanSourceConnect
    } else {
        Kind::TrackingPlanSourceDisconnect
    };
    change
        .record(caller.draft(
            action,
            "source",
            &source.id,
            Some(json!({"trackingPlanId": before})),
            Some(json!({"trackingPlanId": source.tracking_plan_id})),
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
