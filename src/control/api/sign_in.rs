//! `/identity/sign-in` and `/identity/break-glass/{userId}`: how people of the workspace
//! sign in, and for how long (Sluice's own, not Segment's).
//!
//! Admins read the policy; only owners change it, because requiring SSO shuts every
//! password out but the break-glass owners'. Requiring SSO needs an enabled connection
//! and a break-glass owner first, so no change of policy locks the workspace out.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::provisioning::owners_only;
use super::wire::{Data, Status};
use super::{Api, ApiError, Body, Caller, data, success};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Role};
use crate::control::store::workspaces::{self, SignInPolicy};
use crate::control::store::{sessions, sso, users};

/// Idle lifetimes a workspace may set, in minutes (5 minutes to 30 days).
pub const IDLE_MINUTES: std::ops::RangeInclusive<u32> = 5..=43_200;
/// Absolute lifetimes a workspace may set, in hours (1 hour to 90 days).
pub const ABSOLUTE_HOURS: std::ops::RangeInclusive<u32> = 1..=2_160;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/identity/sign-in", get(policy).patch(update))
        .route("/identity/break-glass/{userId}", put(mark).delete(unmark))
}

/// The workspace's sign-in policy.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignIn {
    /// A session unused this many minutes ends.
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in.
    pub session_absolute_hours: u32,
    /// Passwords open nothing but break-glass owners' sessions.
    pub require_sso: bool,
    /// Owners who may still sign in with a password when SSO is required.
    pub break_glass_owners: Vec<String>,
}

/// `{"signIn": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInOne {
    /// The policy.
    pub sign_in: SignIn,
}

async fn view(api: &Api, workspace: &str, policy: SignInPolicy) -> Result<Response, ApiError> {
    let mut conn = api.store.read().await?;
    let break_glass_owners = users::break_glass_owners(&mut conn, workspace).await?;
    Ok(data(SignInOne {
        sign_in: SignIn {
            session_idle_minutes: policy.session_idle_minutes,
            session_absolute_hours: policy.session_absolute_hours,
            require_sso: policy.require_sso,
            break_glass_owners,
        },
    }))
}

/// Get the sign-in policy.
#[utoipa::path(
    get,
    path = "/api/v1/identity/sign-in",
    tag = "Identity",
    responses((status = 200, description = "The sign-in policy.", body = Data<SignInOne>))
)]
async fn policy(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    view(&api, &caller.workspace.id, caller.workspace.sign_in).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignInPatch {
    #[serde(default)]
    #[schema(minimum = 5, maximum = 43200)]
    session_idle_minutes: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2160)]
    session_absolute_hours: Option<u32>,
    #[serde(default)]
    require_sso: Option<bool>,
}

/// Change the sign-in policy (owners).
#[utoipa::path(
    patch,
    path = "/api/v1/identity/sign-in",
    tag = "Identity",
    request_body = SignInPatch,
    responses((status = 200, description = "The changed policy.", body = Data<SignInOne>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<SignInPatch>,
) -> Result<Response, ApiError> {
    if body
        .session_idle_minutes
        .is_some_and(|m| !IDLE_MINUTES.contains(&m))
    {
        return Err(ApiError::field("sessionIdleMinutes", "from 5 to 43200"));
    }
    if body
        .session_absolute_hours
        .is_some_and(|h| !ABSOLUTE_HOURS.contains(&h))
    {
        return Err(ApiError::field("sessionAbsoluteHours", "from 1 to 2160"));
    }
    owners_only(&api, &caller).await?;
    let ws = caller.workspace.id.clone();
    let before = caller.workspace.sign_in;
    let after = SignInPolicy {
        session_idle_minutes: body
            .session_idle_minutes
            .unwrap_or(before.session_idle_minutes),
        session_absolute_hours: body
            .session_absolute_hours
            .unwrap_or(before.session_absolute_hours),
        require_sso: body.require_sso.unwrap_or(before.require_sso),
    };
    let mut change = api.store.change().await?;
    let mut ended = 0;
    if after.require_sso && !before.require_sso {
        let connections = sso::list(change.conn(), &ws).await?;
        if !connections.iter().any(|c| c.enabled) {
            return Err(ApiError::FieldConflict {
                field: "requireSso",
                message: "no enabled SSO connection: nobody could sign in".into(),
            });
        }
        let keep = users::break_glass_owners(change.conn(), &ws).await?;
        if keep.is_empty() {
            return Err(ApiError::FieldConflict {
                field: "requireSso",
                message: "name a break-glass owner first (PUT /identity/break-glass/{userId}): \
                          the way in when the identity provider is down"
                    .into(),
            });
        }
        // Sessions opened with a password (or a link) end, but break-glass owners'.
        ended = sessions::revoke_local(change.conn(), &ws, &keep, caller.now).await?;
    }
    workspaces::set_sign_in(change.conn(), &ws, after).await?;
    change
        .record(caller.draft(
            Kind::SignInPolicyUpdate,
            "workspace",
            &ws,
            Some(json!(before)),
            Some(json!({"policy": after, "localSessionsEnded": ended})),
        ))
        .await?;
    change.commit().await?;
    view(&api, &ws, after).await
}

/// Path parameter of `/identity/break-glass/{userId}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct BreakGlassPath {
    /// An owner's id.
    #[serde(rename = "userId")]
    #[param(rename = "userId")]
    user_id: String,
}

/// Make an owner a break-glass owner (owners).
#[utoipa::path(
    put,
    path = "/api/v1/identity/break-glass/{userId}",
    tag = "Identity",
    params(BreakGlassPath),
    responses((status = 200, description = "The owner may sign in with a password when SSO is required.", body = Data<Status>))
)]
async fn mark(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(path): super::Path<BreakGlassPath>,
) -> Result<Response, ApiError> {
    set(&api, &caller, &path.user_id, true).await
}

/// Stop an owner being a break-glass owner (owners).
#[utoipa::path(
    delete,
    path = "/api/v1/identity/break-glass/{userId}",
    tag = "Identity",
    params(BreakGlassPath),
    responses((status = 200, description = "The owner signs in through SSO like everyone when it is required.", body = Data<Status>))
)]
async fn unmark(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(path): super::Path<BreakGlassPath>,
) -> Result<Response, ApiError> {
    set(&api, &caller, &path.user_id, false).await
}

async fn set(api: &Api, caller: &Caller, user: &str, on: bool) -> Result<Response, ApiError> {
    owners_only(api, caller).await?;
    let ws = caller.workspace.id.clone();
    let mut change = api.store.change().await?;
    let target = users::get(change.conn(), &ws, user).await?;
    let Some(target) = target.filter(|t| t.active) else {
        return Err(ApiError::missing("user", user));
    };
    if on && target.role != Role::Owner {
        return Err(ApiError::field(
            "userId",
            "only an owner can be a break-glass owner",
        ));
    }
    let before = users::break_glass_owners(change.conn(), &ws).await?;
    if !on && caller.workspace.sign_in.require_sso && before.iter().all(|id| id == user) {
        return Err(ApiError::FieldConflict {
            field: "userId",
            message: "the last break-glass owner stays while SSO is required".into(),
        });
    }
    users::set_break_glass(change.conn(), &ws, user, on).await?;
    change
        .record(caller.draft(
            Kind::BreakGlassUpdate,
            "user",
            user,
            Some(json!({"breakGlass": before.iter().any(|id| id == user)})),
            Some(json!({"breakGlass": on})),
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
