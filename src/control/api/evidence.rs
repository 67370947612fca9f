//! `/evidence`: who has which access and why, for auditors, generated from the store and
//! the audit trail (never typed by hand).
//!
//! Per person: their role and who set it when (from the audit trail), their groups, and
//! for every source and destination they can reach the level, where it comes from (the
//! policy's own answer), the grant's justification, who approved it, when, and its next
//! review date; their recent elevations; and the last access review that decided their
//! role. Per workspace: the same for every member. JSON, or Markdown. Reading them is
//! reading the audit trail (owners and admins; a token needs `audit:read`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, Caller, Path, Query, data};
use crate::control::policy::{self, Action, DestinationRef, ResourceRef};
use crate::control::store::audit_log::{self, Filter};
use crate::control::store::grants::{self, GrantRow, Holder};
use crate::control::store::users::{self, UserRow};
use crate::control::store::{access_reviews, destinations, elevations, groups, sources};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/evidence/users/{id}", get(user_report))
        .route("/evidence/workspace", get(workspace_report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FormatQuery {
    /// `json` (default) or `markdown`.
    #[serde(default)]
    #[param(pattern = "^(json|markdown)$")]
    format: Option<String>,
}

/// Audit actions that set or change someone's role (`user.invite` is the acceptance: the
/// role was set by whoever made the invite).
const ROLE_ACTIONS: [&str; 9] = [
    "user.invite",
    "user.role.update",
    "user.permissions.replace",
    "user.permissions.add",
    "user.setup",
    "user.bootstrap",
    "user.provision",
    "user.reactivate",
    "owner.recover",
];

/// Everything the reports read, once.
struct World {
    grants: Vec<GrantRow>,
    groups: Vec<groups::GroupRow>,
    sources: Vec<sources::SourceRow>,
    destinations: Vec<String>,
    reviews: Vec<access_reviews::ReviewRow>,
}

async fn world(api: &Api, caller: &Caller) -> Result<World, ApiError> {
    let ws = &caller.workspace.id;
    let mut conn = api.store.read().await?;
    let mut reviews = access_reviews::list(&mut conn, ws, "", u32::MAX).await?;
    reviews.retain(|r| !r.open);
    reviews.sort_by_key(|r| r.closed_at);
    Ok(World {
        grants: grants::list(&mut conn, ws).await?,
        groups: groups::all(&mut conn, ws).await?,
        sources: sources::all(&mut conn, ws).await?,
        destinations: destinations::all(&mut conn, api.store.key(), ws)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect(),
        reviews,
    })
}

/// The grant a level came from, by the policy's `from`.
fn grant_behind<'a>(
    world: &'a World,
    user: &str,
    from: &str,
    resource: &ResourceRef<'_>,
) -> Option<&'a GrantRow> {
    let holder = if let Some(name) = from.strip_prefix("group_grant:") {
        let group = world.groups.iter().find(|g| g.name == name)?;
        Holder::Group(group.id.clone())
    } else if from.starts_with("own_") {
        Holder::User(user.to_owned())
    } else {
        return None;
    };
    world
        .grants
        .iter()
        .filter(|g| g.principal == holder && g.grant().reaches(resource))
        .max_by_key(|g| g.level)
}

/// One person's report.
async fn report(
    api: &Api,
    caller: &Caller,
    world: &World,
    row: &UserRow,
) -> Result<Value, ApiError> {
    let ws = &caller.workspace.id;
    let mut conn = api.store.read().await?;
    let user = users::principal(&mut conn, ws, &row.id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &row.id))?;
    let mut access = Vec::new();
    let destinations: Vec<ResourceRef<'_>> = world
        .destinations
        .iter()
        .map(|id| ResourceRef::Destination(DestinationRef { id, connected: &[] }))
        .collect();
    let resources = world
        .sources
        .iter()
        .map(|s| ResourceRef::Source(s.as_ref()))
        .chain(destinations);
    for resource in resources {
        let (level, from) = policy::level(&user, &resource, caller.now, &mut Vec::new());
        if level == policy::Level::NoAccess {
            continue;
        }
        let (kind, id) = match &resource {
            ResourceRef::Source(s) => ("source", s.id),
            ResourceRef::Destination(d) => ("destination", d.id),
            _ => continue,
        };
        let grant = grant_behind(world, &row.id, &from, &resource);
        access.push(json!({
            "resource": format!("{kind}:{id}"), "level": level, "via": from,
            "justification": grant.map(|g| g.justification.clone()),
            "approvedBy": grant.map(|g| g.approved_by.clone()),
            "grantedAt": grant.map(|g| g.created_at),
            "expiresAt": grant.and_then(|g| g.expires_at),
            "nextReview": grant.map(GrantRow::next_review),
        }));
    }
    // Who set their role, and when: the newest role-setting event of the audit trail.
    let events = audit_log::list(
        &mut conn,
        &Filter {
            resource_type: Some("user".into()),
            resource_id: Some(row.id.clone()),
            ..Filter::default()
        },
        500,
    )
    .await?;
    let mut role_set = events
        .iter()
        .find(|e| ROLE_ACTIONS.contains(&e.what.action.as_str()))
        .map(|e| {
            json!({"action": e.what.action, "by": super::audit::wire(e).actor, "at": e.what.time,
                   "auditEvent": e.seq})
        });
    if role_set
        .as_ref()
        .is_some_and(|r| r["action"] == "user.invite")
    {
        let invites = audit_log::list(
            &mut conn,
            &Filter {
                action: Some("invite.create".into()),
                resource_type: Some("invite".into()),
                resource_id: Some(row.email.clone()),
                ..Filter::default()
            },
            1,
        )
        .await?;
        if let (Some(r), Some(e)) = (role_set.as_mut(), invites.first()) {
            r["action"] = json!("invite.create");
            r["acceptedAt"] = r["at"].take();
            r["by"] = json!(super::audit::wire(e).actor);
            r["at"] = json!(e.what.time);
            r["auditEvent"] = json!(e.seq);
        }
    }
    let elevations: Vec<Value> = elevations::list(&mut conn, ws, &row.id, "", 200)
        .await?
        .into_iter()
        .filter(|e| e.window.is_some())
        .map(|e| {
            json!({"id": e.id, "reason": e.reason, "approvedBy": e.decided_by,
                   "window": e.window.map(|(a, b)| [a, b])})
        })
        .collect();
    let mut last_review = Value::Null;
    for r in &world.reviews {
        let items = access_reviews::items(&mut conn, &r.id).await?;
        if let Some(i) = items
            .iter()
            .find(|i| i.kind == "role" && i.subject_id == row.id)
        {
            last_review = json!({"accessReview": r.id, "name": r.name, "decision": i.decision,
                                 "decidedBy": i.decided_by, "decidedAt": i.decided_at,
                                 "note": i.note});
        }
    }
    let group_names: Vec<String> = groups::of_user(&mut conn, ws, &row.id)
        .await?
        .into_iter()
        .map(|g| g.name)
        .collect();
    Ok(json!({
        "user": {"id": row.id, "email": row.email, "active": row.active, "origin": row.origin,
                 "createdAt": row.created_at, "lastLogin": row.last_login},
        "workspace": caller.workspace.name,
        "role": row.role.name(),
        "scoped": row.scoped,
        "roleSet": role_set,
        "groups": group_names,
        "access": access,
        "elevations": elevations,
        "lastReview": last_review,
    }))
}

/// A JSON value as one Markdown table cell (`|` escaped, one line, `—` for nothing).
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.replace('|', "\\|").replace('\n', " "),
        Value::Null => "—".to_owned(),
        other => other.to_string().replace('|', "\\|"),
    }
}

/// One person's report as Markdown.
fn markdown(r: &Value) -> String {
    let mut out = format!(
        "## {} ({})\n\nWorkspace: {}  \nRole set: {}  \nGroups: {}  \nLast access review: {}\n\n\
         | resource | level | via | justification | approved by | granted | next review |\n\
         |---|---|---|---|---|---|---|\n",
        cell(&r["user"]["email"]),
        cell(&r["role"]),
        cell(&r["workspace"]),
        match &r["roleSet"] {
            Value::Null => "—".to_owned(),
            s => format!(
                "{} by {} at {}",
                cell(&s["action"]),
                cell(&s["by"]),
                cell(&s["at"])
            ),
        },
        r["groups"]
            .as_array()
            .map(|g| g.iter().map(cell).collect::<Vec<_>>().join(", "))
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "—".to_owned()),
        match &r["lastReview"] {
            Value::Null => "—".to_owned(),
            v => format!(
                "{} ({}) by {} at {}",
                cell(&v["name"]),
                cell(&v["decision"]),
                cell(&v["decidedBy"]),
                cell(&v["decidedAt"])
            ),
        }
    );
    for a in r["access"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&a["resource"]),
            cell(&a["level"]),
            cell(&a["via"]),
            cell(&a["justification"]),
            cell(&a["approvedBy"]),
            cell(&a["grantedAt"]),
            cell(&a["nextReview"])
        ));
    }
    out.push('\n');
    out
}

fn answer(
    format: Option<&str>,
    json_body: Value,
    md: impl FnOnce() -> String,
) -> Result<Response, ApiError> {
    match format {
        None | Some("json") => Ok(data(json_body)),
        Some("markdown") => Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            md(),
        )
            .into_response()),
        Some(_) => Err(ApiError::field("format", "json or markdown")),
    }
}

/// One person's access evidence: role and who set it, every source and destination they
/// reach with why, justification, approver, dates and next review.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/users/{id}",
    tag = "Access Reviews",
    params(("id" = String, Path, description = "User id"), FormatQuery),
    responses((status = 200, description = "The person's evidence report.", content(
        (Data<Object> = "application/json"),
        (String = "text/markdown"),
    )))
)]
async fn user_report(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ReadAudit).await?;
    let mut conn = api.store.read().await?;
    let row = users::get(&mut conn, &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &id))?;
    drop(conn);
    let world = world(&api, &caller).await?;
    let r = report(&api, &caller, &world, &row).await?;
    let generated = caller.now;
    answer(
        q.format.as_deref(),
        json!({"generatedAt": generated, "report": r}),
        || {
            format!(
                "# Access evidence\n\nGenerated {generated}\n\n{}",
                markdown(&r)
            )
        },
    )
}

/// Every member's access evidence.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/workspace",
    tag = "Access Reviews",
    params(FormatQuery),
    responses((status = 200, description = "The workspace's evidence report.", content(
        (Data<Object> = "application/json"),
        (String = "text/markdown"),
    )))
)]
async fn workspace_report(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ReadAudit).await?;
    let mut conn = api.store.read().await?;
    let people: Vec<UserRow> = users::all(&mut conn, &caller.workspace.id)
        .await?
        .into_iter()
        .filter(|u| u.active)
        .collect();
    drop(conn);
    let world = world(&api, &caller).await?;
    let mut reports = Vec::new();
    for p in &people {
        reports.push(report(&api, &caller, &world, p).await?);
    }
    let generated = caller.now;
    let name = caller.workspace.name.clone();
    answer(
        q.format.as_deref(),
        json!({"generatedAt": generated, "workspace": name, "reports": reports}),
        || {
            let mut out = format!("# Access evidence: {name}\n\nGenerated {generated}\n\n");
            for r in &reports {
                out.push_str(&markdown(r));
            }
            out
        },
    )
}
