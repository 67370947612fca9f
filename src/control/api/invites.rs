//! `/invites`: one-time links that bring people in with a role.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};

use super::roles::parse_role;
use super::schema;
use super::{Api, ApiError, Body, Caller, Query, data, success};
use crate::control::policy::{Action, Role};
use crate::control::store::invites;
use crate::control::token;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/invites", get(list_invites).post(invite).delete(withdraw))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Invites {
    invites: Vec<InviteWire>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteWire {
    email: String,
    /// Sluice: the role (`member` when absent).
    #[serde(default)]
    role: Option<String>,
    /// Segment's permission list: a `roleId` naming a Sluice role is honoured.
    #[serde(default)]
    permissions: Option<Vec<Value>>,
}

/// Lifetime of an invite link.
const INVITE_HOURS: i64 = 72;

pub(super) fn valid_email(field: &str, email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(ApiError::field(field, "not an email address"))
    }
}

/// Invites people: each gets a one-time link (valid 72 h) to join with the role.
#[utoipa::path(
    post,
    path = "/api/v1/invites",
    tag = "IAM Users",
    request_body = Invites,
    responses((status = 200, description = "Invite people (one-time links).", body = schema::Data<schema::InvitesMade>))
)]
async fn invite(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<Invites>,
) -> Result<Response, ApiError> {
    if body.invites.is_empty() || body.invites.len() > 100 {
        return Err(ApiError::field("invites", "1 to 100 invites"));
    }
    let mut wanted = Vec::new();
    for (i, inv) in body.invites.iter().enumerate() {
        let email = valid_email(&format!("invites[{i}].email"), &inv.email)?;
        let from_permissions = inv
            .permissions
            .iter()
            .flatten()
            .filter_map(|p| p.get("roleId").and_then(Value::as_str))
            .find_map(Role::parse);
        let role = match &inv.role {
            Some(name) => parse_role(&format!("invites[{i}].role"), name)?,
            None => from_permissions.unwrap_or(Role::Member),
        };
        wanted.push((email, role));
    }
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    if wanted.iter().any(|(_, r)| *r == Role::Owner) {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    let mut out = Vec::new();
    for (email, role) in wanted {
        let secret = token::random_base62(32).map_err(|_| ApiError::Internal)?;
        let digest = token::digest_of(&secret).to_hex();
        let expires = caller.now + Duration::hours(INVITE_HOURS);
        invites::put(
            change.conn(),
            &caller.workspace.id,
            &email,
            role,
            caller.now,
        )
        .await?;
        invites::add_link(
            change.conn(),
            &caller.workspace.id,
            &digest,
            role,
            &email,
            expires,
        )
        .await?;
        change
            .record(caller.draft(
                "invite.create",
                "invite",
                &email,
                None,
                Some(json!({"email": email, "role": role.name()})),
            ))
            .await?;
        out.push(json!({
            "email": email,
            "role": role.name(),
            "link": format!("{}/setup/{secret}", api.public_url.trim_end_matches('/')),
            "expiresAt": expires,
        }));
    }
    change.commit().await?;
    let emails: Vec<&Value> = out.iter().map(|i| &i["email"]).collect();
    Ok(data(json!({ "emails": emails, "invites": out })))
}

/// Pending invites.
#[utoipa::path(
    get,
    path = "/api/v1/invites",
    tag = "IAM Users",
    responses((status = 200, description = "Pending invites.", body = schema::Data<schema::InviteList>))
)]
async fn list_invites(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = invites::list(&mut conn, &caller.workspace.id).await?;
    let emails: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
    Ok(data(json!({
        "invites": emails,
        "roles": rows.iter().map(|(e, r)| json!({"email": e, "role": r.name()})).collect::<Vec<_>>(),
        "pagination": {"current": "MA", "totalEntries": rows.len()},
    })))
}

/// Withdraw invites.
#[utoipa::path(
    delete,
    path = "/api/v1/invites",
    tag = "IAM Users",
    params(("emails[0]" = String, Query, description = "Email of an invite to withdraw (emails[1], … for more)")),
    responses((status = 200, description = "Withdraw invites.", body = schema::Data<schema::Status>))
)]
async fn withdraw(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut emails = Vec::new();
    for (key, value) in &q {
        if key.starts_with("emails[") && key.ends_with(']') {
            emails.push(valid_email(key, value)?);
        } else {
            return Err(ApiError::field(key, "unknown query parameter"));
        }
    }
    if emails.is_empty() {
        return Err(ApiError::field(
            "emails",
            "name the invites to withdraw: emails[0]=…",
        ));
    }
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut change = api.store.change().await?;
    for email in &emails {
        invites::remove(change.conn(), &caller.workspace.id, email).await?;
        change
            .record(caller.draft(
                "invite.delete",
                "invite",
                email,
                Some(json!({"email": email})),
                None,
            ))
            .await?;
    }
    change.commit().await?;
    Ok(success())
}
