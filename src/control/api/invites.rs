//! `/invites`: one-time links that bring people in with a role.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::permissions::{self, PermissionIn};
use super::roles::parse_role;
use super::wire::{Data, Pagination, Status};
use super::{Api, ApiError, Body, Caller, PageQuery, Query, data, page_in_memory, success};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Role};
use crate::control::store::invites::Terms;
use crate::control::store::{Change, groups, invites};
use crate::control::token;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/invites", get(list_invites).post(invite).delete(withdraw))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Invites {
    #[schema(min_items = 1, max_items = 100)]
    invites: Vec<InviteWire>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteWire {
    #[schema(
        pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s.\\u0000-\\u001f\\u007f-\\u009f][^@\\s\\u0000-\\u001f\\u007f-\\u009f]*\\.[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$",
        max_length = 254
    )]
    email: String,
    /// Sluice: the role (`member` when neither it nor permissions are given).
    #[serde(default)]
    #[schema(pattern = "^(owner|admin|member|read_only)$")]
    role: Option<String>,
    /// Segment's permissions (see `/users/{id}/permissions`): workspace roles and source
    /// roles. Source roles alone make a scoped member who reaches those sources only.
    #[serde(default)]
    permissions: Option<Vec<PermissionIn>>,
    /// Sluice: why they get this access (kept on each grant the invite brings).
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    justification: Option<String>,
    /// Sluice: when the grants the invite brings end (in the future). The role itself
    /// does not end: lend a role with an elevation instead.
    #[serde(rename = "accessExpiresAt", default)]
    access_expires_at: Option<DateTime<Utc>>,
}

/// An invite made, with its one-time link (shown in this answer only).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteMade {
    /// Who is invited.
    pub email: String,
    /// The role they join with.
    pub role: String,
    /// The one-time link that makes their account.
    pub link: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// Invites made.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitesMade {
    /// Their emails.
    pub emails: Vec<String>,
    /// Each with its one-time link.
    pub invites: Vec<InviteMade>,
}

/// A pending invite's email and role.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingInvite {
    /// Email.
    pub email: String,
    /// The role they would join with.
    pub role: String,
}

/// A page of pending invites.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteList {
    /// The page's emails.
    pub invites: Vec<String>,
    /// Paging.
    pub pagination: Pagination,
    /// Every pending invite with its role.
    pub roles: Vec<PendingInvite>,
}

/// Lifetime of an invite link.
const INVITE_HOURS: i64 = 72;

pub(super) fn valid_email(field: &str, email: &str) -> Result<String, ApiError> {
    let length = email.trim().chars().count();
    let email = email.trim().to_lowercase();
    let ok = length <= 254
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
    responses((status = 200, description = "Invite people (one-time links).", body = Data<InvitesMade>))
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
        let given = match &inv.permissions {
            Some(p) => Some(permissions::parse(&format!("invites[{i}].permissions"), p)?),
            None => None,
        };
        let (role, terms) = match (&inv.role, given) {
            (Some(name), given) => {
                let role = parse_role(&format!("invites[{i}].role"), name)?;
                let grants = given.map(|a| a.grants).unwrap_or_default();
                (
                    role,
                    Terms {
                        scoped: false,
                        grants,
                        ..Terms::default()
                    },
                )
            }
            (None, Some(a)) => (
                a.role_or_least(),
                Terms {
                    scoped: a.scoped(),
                    grants: a.grants,
                    ..Terms::default()
                },
            ),
            (None, None) => (Role::Member, Terms::default()),
        };
        let mut terms = terms;
        if let Some(why) = &inv.justification {
            terms.justification = super::prose::prose(&format!("invites[{i}].justification"), why)?;
        }
        if let Some(at) = inv.access_expires_at {
            let field = format!("invites[{i}].accessExpiresAt");
            if at <= caller.now {
                return Err(ApiError::field(&field, "must be in the future"));
            }
            if terms.grants.is_empty() {
                return Err(ApiError::field(
                    &field,
                    "ends the grants an invite brings: name permissions on resources (a role is lent with an elevation)",
                ));
            }
            terms.access_expires_at = Some(at);
        }
        terms.invited_by = caller.user.id.clone();
        wanted.push((email, role, terms));
    }
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    if wanted.iter().any(|(_, r, _)| *r == Role::Owner) {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    for (_, _, terms) in &wanted {
        let named = permissions::Assignment {
            role: None,
            grants: terms.grants.clone(),
        };
        permissions::check_targets(&api, &caller, &named).await?;
    }
    let mut change = api.store.change().await?;
    let mut out = Vec::new();
    for (email, role, terms) in wanted {
        out.push(make_invite(&api, &mut change, &caller, &email, role, &terms).await?);
    }
    change.commit().await?;
    Ok(data(InvitesMade {
        emails: out.iter().map(|i| i.email.clone()).collect(),
        invites: out,
    }))
}

/// Invites `email` with `role` inside `change` (replacing any earlier invite and its
/// links) and audits it; returns the invite with its one-time link, shown once.
pub(super) async fn make_invite(
    api: &Api,
    change: &mut Change,
    caller: &Caller,
    email: &str,
    role: Role,
    terms: &Terms,
) -> Result<InviteMade, ApiError> {
    let secret = token::random_base62(32).map_err(|_| ApiError::Internal)?;
    let digest = token::digest_of(&secret).to_hex();
    let expires = caller.now + Duration::hours(INVITE_HOURS);
    invites::put(
        change.conn(),
        &caller.workspace.id,
        email,
        role,
        terms,
        caller.now,
    )
    .await?;
    invites::add_link(
        change.conn(),
        &caller.workspace.id,
        &digest,
        role,
        email,
        expires,
    )
    .await?;
    change
        .record(caller.draft(
            Kind::InviteCreate,
            "invite",
            email,
            None,
            Some(json!({"email": email, "role": role.name(), "scoped": terms.scoped,
                        "grants": terms.grants.iter().map(|(t, l)| json!({"target": t, "level": l.name()})).collect::<Vec<_>>(),
                        "justification": terms.justification, "accessExpiresAt": terms.access_expires_at})),
        ))
        .await?;
    Ok(InviteMade {
        email: email.to_owned(),
        role: role.name().to_owned(),
        link: format!("{}/setup/{secret}", api.public_url.trim_end_matches('/')),
        expires_at: expires,
    })
}

/// Pending invites.
#[utoipa::path(
    get,
    path = "/api/v1/invites",
    tag = "IAM Users",
    params(PageQuery),
    responses((status = 200, description = "Pending invites.", body = Data<InviteList>))
)]
async fn list_invites(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = invites::list(&mut conn, &caller.workspace.id).await?;
    let roles: Vec<PendingInvite> = rows
        .iter()
        .map(|(e, r)| PendingInvite {
            email: e.clone(),
            role: r.name().to_owned(),
        })
        .collect();
    let emails: Vec<(String, String)> = rows.into_iter().map(|(e, _)| (e.clone(), e)).collect();
    Ok(page_in_memory(emails, &page, |invites, pagination| {
        InviteList {
            invites,
            pagination,
            roles,
        }
    }))
}

/// Withdraw invites.
#[utoipa::path(
    delete,
    path = "/api/v1/invites",
    tag = "IAM Users",
    params(("emails[0]" = String, Query, description = "Email of an invite to withdraw (emails[1], … for more)", pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s.\\u0000-\\u001f\\u007f-\\u009f][^@\\s\\u0000-\\u001f\\u007f-\\u009f]*\\.[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$", max_length = 254)),
    responses((status = 200, description = "Withdraw invites.", body = Data<Status>))
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
        groups::drop_invites(change.conn(), &caller.workspace.id, email).await?;
        change
            .record(caller.draft(
                Kind::InviteDelete,
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
