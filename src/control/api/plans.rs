//! `/tracking-plans`: plans, their rules (each publish an immutable version), and the
//! sources they govern.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::destinations::installable;
use super::schema;
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of, success, text_field,
};
use crate::control::policy::{Action, ResourceRef};
use crate::control::store::plans::{self, PlanRow};
use crate::control::store::{new_id, sources};
use crate::protocols::RuleDoc;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/tracking-plans", get(list).post(create))
        .route(
            "/tracking-plans/{id}",
            get(read).patch(rename).delete(remove),
        )
        .route("/tracking-plans/{id}/rules", get(rules).put(replace_rules))
        .route("/tracking-plans/{id}/sources", post(connect_source))
}

/// Rule names listed at most in an audit event's summary of a rules change.
const AUDIT_RULE_NAMES: usize = 50;

/// What the audit log keeps of a plan's rules: their count and content hash, never the
/// rules themselves (a 1 MB plan saved twice would cost 4 MB of audit log).
fn rules_digest(rules: &[RuleDoc], version: u32) -> Value {
    let bytes = serde_json::to_vec(rules).unwrap_or_default();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({"version": version, "ruleCount": rules.len(), "rulesSha256": sha})
}

/// Which rules a change adds, removes and modifies, by `TYPE key vN` (at most
/// [`AUDIT_RULE_NAMES`] of each, with the totals).
fn rules_change(before: &[RuleDoc], after: &[RuleDoc]) -> Value {
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
/// reaches a source hidden from them, or one they may only read, through its plan).
async fn may_change_sources_of(api: &Api, caller: &Caller, plan: &str) -> Result<(), ApiError> {
    let mut conn = api.store.read().await?;
    let using = sources::all(&mut conn, &caller.workspace.id).await?;
    drop(conn);
    let blocked = using
        .iter()
        .filter(|s| s.tracking_plan_id.as_deref() == Some(plan))
        .any(|s| {
            !caller
                .decide(Action::EditSource, ResourceRef::Source(s.as_ref()))
                .allowed
        });
    if blocked {
        return Err(ApiError::Forbidden(
            "the plan is used by a source you may not edit: ask an owner or admin".into(),
        ));
    }
    Ok(())
}

fn wire(plan: &PlanRow) -> Value {
    json!({
        "id": plan.id,
        "name": plan.name,
        "slug": plan.id,
        "description": "",
        "type": plan.plan_type,
        "version": plan.published_version,
        "createdAt": plan.created_at,
        "updatedAt": plan.updated_at,
    })
}

async fn load(api: &Api, caller: &Caller, id: &str) -> Result<PlanRow, ApiError> {
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
    responses((status = 200, description = "List tracking plans.", body = schema::Data<schema::TrackingPlanList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = plans::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|p| p.id.as_str());
    let out: Vec<Value> = rows.iter().map(wire).collect();
    Ok(page_of("trackingPlans", out, &page, rows.len(), last))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePlan {
    name: String,
    #[serde(rename = "type", default = "live")]
    plan_type: String,
    #[serde(default)]
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
    responses((status = 200, description = "Create a tracking plan.", body = schema::Data<schema::TrackingPlanOne>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreatePlan>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 200)?;
    if !["LIVE", "PROPERTY_LIBRARY", "RULE_LIBRARY", "TEMPLATE"].contains(&body.plan_type.as_str())
    {
        return Err(ApiError::field(
            "type",
            "one of LIVE, PROPERTY_LIBRARY, RULE_LIBRARY, TEMPLATE",
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
        plan_type: body.plan_type,
        rules: Vec::new(),
        published_version: 0,
        created_at: caller.now,
        updated_at: caller.now,
    };
    let mut change = api.store.change().await?;
    plans::insert(change.conn(), &caller.workspace.id, &plan).await?;
    let after = wire(&plan);
    change
        .record(caller.draft(
            "tracking_plan.create",
            "tracking_plan",
            &plan.id,
            None,
            Some(after.clone()),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({ "trackingPlan": after })))
}

/// Get a tracking plan.
#[utoipa::path(
    get,
    path = "/api/v1/tracking-plans/{id}",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "Get a tracking plan.", body = schema::Data<schema::TrackingPlanOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let plan = load(&api, &caller, &id).await?;
    Ok(data(json!({"trackingPlan": wire(&plan)})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rename {
    name: String,
}

/// Rename a tracking plan.
#[utoipa::path(
    patch,
    path = "/api/v1/tracking-plans/{id}",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = Rename,
    responses((status = 200, description = "Rename a tracking plan.", body = schema::Data<schema::TrackingPlanOne>))
)]
async fn rename(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Rename>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 200)?;
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
    plan.name = name;
    plan.updated_at = caller.now;
    let mut change = api.store.change().await?;
    plans::update(change.conn(), &plan).await?;
    change
        .record(caller.draft(
            "tracking_plan.update",
            "tracking_plan",
            &id,
            Some(wire(&before)),
            Some(wire(&plan)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({"trackingPlan": wire(&plan)})))
}

/// Delete a tracking plan.
#[utoipa::path(
    delete,
    path = "/api/v1/tracking-plans/{id}",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "Delete a tracking plan.", body = schema::Data<schema::Status>))
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
            "tracking_plan.delete",
            "tracking_plan",
            &id,
            Some(wire(&before)),
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
    responses((status = 200, description = "Get a plan's rules.", body = schema::Data<schema::Rules>))
)]
async fn rules(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let plan = load(&api, &caller, &id).await?;
    Ok(data(json!({
        "rules": plan.rules,
        "version": plan.published_version,
        "pagination": {"current": "MA", "totalEntries": plan.rules.len()},
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RulesBody {
    #[schema(value_type = Vec<Object>)]
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
    responses((status = 200, description = "Replace a plan's rules (published as a new version by those who may publish).", body = schema::Data<schema::Rules>))
)]
async fn replace_rules(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RulesBody>,
) -> Result<Response, ApiError> {
    if body.rules.len() > 2000 {
        return Err(ApiError::field("rules", "at most 2000 rules"));
    }
    let ws = || ApiError::missing("workspace", "");
    api.allow(
        &caller,
        Action::EditTrackingPlans,
        ResourceRef::Workspace,
        ws(),
    )
    .await?;
    let publish = caller
        .decide(Action::PublishTrackingPlans, ResourceRef::Workspace)
        .allowed;
    let before = load(&api, &caller, &id).await?;
    if publish {
        may_change_sources_of(&api, &caller, &id).await?;
    }
    let mut plan = before.clone();
    plan.rules = body.rules;
    plan.updated_at = caller.now;
    let mut change = api.store.change().await?;
    plans::update(change.conn(), &plan).await?;
    let version = if publish {
        let v = plans::publish(change.conn(), &plan, &caller.user.id, caller.now).await?;
        plan.published_version = v;
        installable(&api, &mut change, &caller.workspace.id).await?;
        Some(v)
    } else {
        None
    };
    let action = if publish {
        "tracking_plan.publish"
    } else {
        "tracking_plan.rules.update"
    };
    change
        .record(caller.draft(
            action,
            "tracking_plan",
            &id,
            Some(rules_digest(&before.rules, before.published_version)),
            Some({
                let mut after = rules_digest(&plan.rules, plan.published_version);
                after["changes"] = rules_change(&before.rules, &plan.rules);
                after
            }),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({
        "rules": plan.rules,
        "published": version.is_some(),
        "version": plan.published_version,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectSource {
    source_id: String,
}

/// Connect a source to the plan.
#[utoipa::path(
    post,
    path = "/api/v1/tracking-plans/{id}/sources",
    tag = "Tracking Plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = ConnectSource,
    responses((status = 200, description = "Connect a source to the plan.", body = schema::Data<schema::Status>))
)]
async fn connect_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ConnectSource>,
) -> Result<Response, ApiError> {
    let ws = ApiError::missing("workspace", "");
    api.allow(
        &caller,
        Action::EditTrackingPlans,
        ResourceRef::Workspace,
        ws,
    )
    .await?;
    let plan = load(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let missing = || ApiError::missing("source", &body.source_id);
    let mut source = sources::get(&mut conn, &caller.workspace.id, &body.source_id)
        .await?
        .ok_or_else(missing)?;
    drop(conn);
    let resource = ResourceRef::Source(source.as_ref());
    api.allow(&caller, Action::ViewSource, resource, missing())
        .await?;
    api.allow(&caller, Action::EditSource, resource, missing())
        .await?;
    let before = source.tracking_plan_id.clone();
    source.tracking_plan_id = Some(plan.id.clone());
    source.updated_at = caller.now;
    let mut change = api.store.change().await?;
    sources::update(change.conn(), &source).await?;
    installable(&api, &mut change, &caller.workspace.id).await?;
    change
        .record(caller.draft(
            "tracking_plan.source.connect",
            "source",
            &source.id,
            Some(json!({"trackingPlanId": before})),
            Some(json!({"trackingPlanId": plan.id})),
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
