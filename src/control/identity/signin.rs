//! Opening a session, whichever way the person proved who they are (password, OpenID
//! Connect, SAML, a setup, invite or reset link): one place gives it the workspace's
//! lifetimes, records it in the audit chain and hands back its cookie.

use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::session;
use crate::control::api::ApiError;
use crate::control::audit::{Actor, Draft, Kind};
use crate::control::policy::Role;
use crate::control::store::Change;
use crate::control::store::sessions::{self, NewSession, SessionRow};
use crate::control::store::users;
use crate::control::store::workspaces::Workspace;

/// Who is signing in, how and from where.
#[derive(Debug)]
pub struct Opening<'a> {
    /// Their workspace (its sign-in policy sets the session's lifetimes).
    pub workspace: &'a Workspace,
    /// The user.
    pub user_id: &'a str,
    /// `password`, `oidc`, `saml`, `setup`, `invite`, `reset`.
    pub method: &'a str,
    /// What the audit entry says besides (e.g. the SSO connection).
    pub detail: serde_json::Value,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// The digest of the session cookie the browser presented, if any: that session
    /// ends as this one opens (signing in again never leaves the earlier one live,
    /// unseen, in the same browser).
    pub replacing: Option<String>,
}

/// A session just opened, with the secret its cookie carries.
pub struct Opened {
    /// The session.
    pub row: SessionRow,
    secret: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// `Set-Cookie` carrying it.
    pub fn cookie(&self, public_url: &str) -> Option<HeaderValue> {
        session::set_cookie(public_url, &self.secret)
    }
}

/// Opens a session inside `change` (a new id, whatever the browser held: no fixation),
/// records the sign-in as the user's last login and audits it.
pub async fn open(
    change: &mut Change,
    opening: Opening<'_>,
    now: DateTime<Utc>,
) -> Result<Opened, ApiError> {
    let (secret, csrf) = session::secrets().map_err(|e| {
        tracing::error!(error = %e, "no randomness for a session");
        ApiError::Internal
    })?;
    let digest = session::digest(&secret);
    let policy = opening.workspace.sign_in;
    let row = sessions::create(
        change.conn(),
        &NewSession {
            digest: &digest,
            workspace_id: &opening.workspace.id,
            user_id: opening.user_id,
            csrf: &csrf,
            method: opening.method,
            idle: policy.idle(),
            absolute: policy.absolute(),
            ip: opening.ip.as_deref().unwrap_or_default(),
            user_agent: opening.user_agent.as_deref().unwrap_or_default(),
        },
        now,
    )
    .await?;
    let mut replaced = None;
    if let Some(earlier) = &opening.replacing
        && let Some(earlier) = sessions::by_digest(change.conn(), earlier).await?
        && earlier.revoked_at.is_none()
    {
        sessions::revoke(change.conn(), &earlier.id, now).await?;
        change
            .record(Draft {
                time: now,
                actor: Actor::User {
                    id: earlier.user_id.clone(),
                    elevations: Vec::new(),
                },
                action: Kind::SessionRevoke.name().into_owned(),
                resource_type: "session".into(),
                resource_id: earlier.id.clone(),
                before: None,
                after: Some(json!({"replacedBy": row.id})),
                ip: opening.ip.clone(),
                user_agent: opening.user_agent.clone(),
            })
            .await?;
        replaced = Some(earlier.id);
    }
    users::touch_login(change.conn(), opening.user_id, now).await?;
    let mut after = json!({"method": opening.method, "userId": opening.user_id});
    if let (Some(after), Some(replaced)) = (after.as_object_mut(), replaced) {
        after.insert("replaces".into(), replaced.into());
    }
    if let (Some(after), serde_json::Value::Object(detail)) =
        (after.as_object_mut(), opening.detail)
    {
        after.extend(detail);
    }
    change
        .record(Draft {
            time: now,
            actor: Actor::User {
                id: opening.user_id.to_owned(),
                elevations: Vec::new(),
            },
            action: Kind::SessionCreate.name().into_owned(),
            resource_type: "session".into(),
            resource_id: row.id.clone(),
            before: None,
            after: Some(after),
            ip: opening.ip,
            user_agent: opening.user_agent,
        })
        .await?;
    Ok(Opened { row, secret })
}

/// Records a refused sign-in (never what was typed: an email may be a password typed
/// in the wrong field): `tried` is the user's id when known, else ''.
pub async fn refused(
    change: &mut Change,
    tried: &str,
    why: serde_json::Value,
    ip: Option<String>,
    user_agent: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    change
        .record(Draft {
            time: now,
            actor: Actor::System,
            action: Kind::SessionRefused.name().into_owned(),
            resource_type: "user".into(),
            resource_id: tried.to_owned(),
            before: None,
            after: Some(why),
            ip,
            user_agent,
        })
        .await?;
    Ok(())
}

/// Whether a password (or a setup, invite or reset link) may open a session for this
/// member: always, unless the workspace requires SSO; then only for its break-glass
/// owners.
pub async fn local_allowed(
    conn: &mut sqlx::AnyConnection,
    workspace: &Workspace,
    user_id: &str,
    role: Role,
) -> Result<bool, ApiError> {
    if !workspace.sign_in.require_sso {
        return Ok(true);
    }
    Ok(role == Role::Owner
        && users::break_glass_owners(conn, &workspace.id)
            .await?
            .iter()
            .any(|id| id == user_id))
}
