//! Password reset links. Sluice sends no mail: an admin makes a one-time link for a
//! member (`POST /api/v1/users/{id}/password-reset`) and hands it over; the member opens
//! `/reset/{link}`, sets a new password (with their authenticator code when they have
//! one) and is signed in. Their other sessions end.
//!
//! Who may make one is `authorize`'s to say: managing members for members and
//! read-only members; an owner's action for admins and owners (a link is a way into
//! the account). It is asked again when the link is used, of its maker and the member
//! as they are then. While the workspace requires SSO, only break-glass owners get one.
//! Five wrong authenticator codes spend a link; each is audited and paid from the
//! account's sign-in budget. Removing or deactivating a member spends the links made
//! for them and by them.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{password, session, signin, totp};
use crate::control::api::{
    Api, ApiError, Caller, Forbidden, Path, Unauthenticated, client, client_key, data,
};
use crate::control::audit::{Actor, Draft, Kind};
use crate::control::console::links;
use crate::control::policy::{self, Action, Role};
use crate::control::store::{passwords, resets, sessions, users, workspaces};
use crate::control::token;

/// How long a reset link is good for.
pub const LIFETIME: TimeDelta = TimeDelta::hours(1);

/// `POST /api/v1/users/{id}/password-reset` (merged under `/api/v1`).
pub fn api_routes() -> Router<Arc<Api>> {
    Router::new().route("/users/{id}/password-reset", post(create))
}

/// `GET` and `POST /reset/{link}`.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/reset/{link}", get(form).post(use_link))
}

/// What making a reset link for `target` takes: managing members; for an admin or an
/// owner (through a group too), an owner's action as well (a link is a way into the
/// account).
fn actions_for(target: &policy::User) -> &'static [Action] {
    if matches!(target.effective_role(), Role::Owner | Role::Admin) {
        &[Action::ManageMembers, Action::TransferOwnership]
    } else {
        &[Action::ManageMembers]
    }
}

/// Whether the link's maker may still make it for its member as they are now: asked of
/// `authorize` again when the link is used (a member promoted since, or a maker
/// demoted, deactivated or gone, spends the link).
async fn still_allowed(
    conn: &mut sqlx::AnyConnection,
    workspace: &workspaces::Workspace,
    maker: &str,
    target: &str,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let Some(maker) = users::principal(conn, &workspace.id, maker).await? else {
        return Ok(false);
    };
    let Some(target) = users::principal(conn, &workspace.id, target).await? else {
        return Ok(false);
    };
    let settings = workspace.settings.policy();
    Ok(actions_for(&target).iter().all(|action| {
        policy::authorize(
            policy::Principal {
                user: &maker,
                token: None,
            },
            *action,
            policy::ResourceRef::Workspace,
            settings,
            now,
        )
        .allowed
    }))
}

/// Where a reset link is opened.
fn link_url(public_url: &str, secret: &str) -> String {
    format!("{}/reset/{secret}", public_url.trim_end_matches('/'))
}

/// A reset link, shown once.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetLink {
    /// Where the member sets a new password (hand it to them; it is not kept).
    pub url: String,
    /// Good until.
    pub expires_at: DateTime<Utc>,
}

/// Make a one-time password reset link for a member (good for an hour).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/password-reset",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "A one-time link that sets the member's password and signs them in.", body = crate::control::api::wire::Data<ResetLink>))
)]
pub(crate) async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let target = users::principal(&mut conn, &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &id))?;
    let row = users::get(&mut conn, &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &id))?;
    drop(conn);
    for action in actions_for(&target) {
        api.allow_workspace(&caller, *action).await?;
    }
    if !row.active {
        return Err(ApiError::Conflict(
            "this member is deactivated: reactivate them first".into(),
        ));
    }
    let mut change = api.store.change().await?;
    if !signin::local_allowed(change.conn(), &caller.workspace, &row.id, row.role).await? {
        return Err(ApiError::Conflict(
            "the workspace requires SSO: only break-glass owners use a password".into(),
        ));
    }
    let secret = token::random_base62(43).map_err(|_| ApiError::Internal)?;
    let expires_at = caller.now + LIFETIME;
    resets::create(
        change.conn(),
        &resets::NewReset {
            digest: &token::digest_of(&secret).to_hex(),
            workspace_id: &caller.workspace.id,
            user_id: &row.id,
            created_by: &caller.user.id,
            expires_at,
        },
        caller.now,
    )
    .await?;
    change
        .record(caller.draft(
            Kind::PasswordResetCreate,
            "user",
            &row.id,
            None,
            Some(json!({"expiresAt": expires_at})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ResetLink {
        url: link_url(&api.public_url, &secret),
        expires_at,
    }))
}

const GONE: &str = "This reset link is not valid: it was used, has expired or never existed. \
                    Ask an admin for a new one.";

async fn form(State(api): State<Arc<Api>>, Path(link): Path<String>) -> Result<Response, ApiError> {
    let mut conn = api.store.read().await?;
    let reset = resets::peek(&mut conn, &token::digest_of(&link).to_hex(), Utc::now()).await?;
    let Some(reset) = reset else {
        return Ok(gone(false));
    };
    let factor = totp::enabled(&mut conn, &reset.user_id).await?.is_some();
    Ok(links::reset_form(password::MIN_CHARS, factor))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
    #[serde(default)]
    code: Option<String>,
}

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<(NewPassword, bool), ApiError> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed: Result<NewPassword, String> = if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
    };
    parsed.map(|p| (p, json)).map_err(|e| ApiError::Invalid {
        message: format!("invalid form: {e}"),
        field: None,
    })
}

/// `POST /reset/{link}`: sets the password, ends every other session, opens one. A
/// wrong authenticator code changes nothing but the link's count of wrong codes.
async fn use_link(
    State(api): State<Arc<Api>>,
    Path(link): Path<String>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let now: DateTime<Utc> = Utc::now();
    let (ip, user_agent) = client(&parts);
    // Login CSRF: a page elsewhere must not sign this browser into an account.
    if session::from_elsewhere(&parts.headers, &api.public_url) {
        return Err(ApiError::Forbidden(Forbidden::Csrf(
            "use the reset link from the console's own origin",
        )));
    }
    let (wanted, json) = parse(&parts.headers, &body)?;
    let digest = token::digest_of(&link).to_hex();
    // A cheap look first: hashing is dear, and only a live link earns it.
    let mut conn = api.store.read().await?;
    let live = resets::peek(&mut conn, &digest, now).await?.is_some();
    drop(conn);
    if !live {
        return Ok(gone(json));
    }
    password::acceptable(&wanted.password)
        .map_err(|e| ApiError::field("password", e.to_string()))?;
    let phc = password::hash(wanted.password).await.map_err(|e| {
        tracing::error!(error = %e, "cannot hash a password");
        ApiError::Internal
    })?;
    let mut change = api.store.change().await?;
    let Some(reset) = resets::peek(change.conn(), &digest, now).await? else {
        drop(change);
        return Ok(gone(json));
    };
    let Some((workspace, user)) = still_for(change.conn(), &reset, now).await? else {
        // Spent, nothing set.
        resets::take(change.conn(), &digest, now).await?;
        change.commit().await?;
        return Ok(gone(json));
    };
    if let Some(factor) = totp::enabled(change.conn(), &user.id).await? {
        let Some(code) = wanted.code.as_deref() else {
            drop(change);
            return Err(ApiError::Unauthorized(
                Unauthenticated::SecondFactorRequired,
            ));
        };
        // The account's sign-in budget pays for each code tried, as at sign-in.
        if !api.sign_in.admit(&user.email, &client_key(&parts)) {
            drop(change);
            return Err(ApiError::RateLimited);
        }
        if !totp::spend(change.conn(), api.store.key(), &user.id, &factor, code, now).await? {
            let usable = resets::failed(change.conn(), &digest, now).await?;
            signin::refused(
                &mut change,
                &user.id,
                json!({"reason": "second_factor", "via": "reset", "linkSpent": !usable}),
                ip,
                user_agent,
                now,
            )
            .await?;
            change.commit().await?;
            return Err(ApiError::Unauthorized(Unauthenticated::InvalidCredentials));
        }
    }
    if resets::take(change.conn(), &digest, now).await?.is_none() {
        drop(change);
        return Ok(gone(json));
    }
    passwords::set(change.conn(), &user.id, &phc, now).await?;
    let ended = sessions::revoke_others(change.conn(), &user.id, None, now).await?;
    change
        .record(Draft {
            time: now,
            actor: Actor::User {
                id: user.id.clone(),
                elevations: Vec::new(),
            },
            action: Kind::PasswordReset.name().into_owned(),
            resource_type: "user".into(),
            resource_id: user.id.clone(),
            before: None,
            after: Some(json!({"otherSessionsEnded": ended, "linkBy": reset.created_by})),
            ip: ip.clone(),
            user_agent: user_agent.clone(),
        })
        .await?;
    let opened = signin::open(
        &mut change,
        signin::Opening {
            workspace: &workspace,
            user_id: &user.id,
            method: "reset",
            detail: json!({}),
            ip,
            user_agent,
            replacing: super::session::presented(&parts.headers, &api.public_url),
        },
        now,
    )
    .await?;
    change.commit().await?;
    let mut response = if json {
        data(json!({"userId": user.id, "csrfToken": opened.row.csrf}))
    } else {
        links::notice(
            StatusCode::OK,
            "Password set",
            "Your new password is set and you are signed in.",
            Some(("/", "Go to the console")),
        )
    };
    if let Some(cookie) = opened.cookie(&api.public_url) {
        response
            .headers_mut()
            .insert(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The link's workspace and member, while the link is still good for them: none once
/// they are deactivated or removed, SSO is required of them, they were promoted past
/// what the link's maker may reach, or its maker is demoted or gone.
async fn still_for(
    conn: &mut sqlx::AnyConnection,
    reset: &resets::Reset,
    now: DateTime<Utc>,
) -> Result<Option<(workspaces::Workspace, users::UserRow)>, ApiError> {
    let workspace = workspaces::get(conn, &reset.workspace_id)
        .await?
        .ok_or(ApiError::Internal)?;
    let Some(user) = users::get(conn, &workspace.id, &reset.user_id).await? else {
        return Ok(None);
    };
    let good = user.active
        && signin::local_allowed(conn, &workspace, &user.id, user.role).await?
        && still_allowed(conn, &workspace, &reset.created_by, &user.id, now).await?;
    Ok(good.then_some((workspace, user)))
}

fn gone(json: bool) -> Response {
    if json {
        return ApiError::NotFound(GONE.into()).into_response();
    }
    links::notice(StatusCode::NOT_FOUND, "Reset your password", GONE, None)
}
