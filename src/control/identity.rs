//! How people (not machines) prove who they are to the control plane: local password
//! sign-in into a browser session, signing out, the session's own description, and
//! setting one's password. Routes under `/auth`.
//!
//! A session resolves to the same [`Caller`] as an API token and is decided by the same
//! `authorize` (see [`session`]); every change made with one is CSRF-guarded.
//! Sign-in is rate limited per account and per address and says the same thing, after
//! the same work, whether the email or the password was wrong.

pub mod password;
pub mod reset;
pub mod scim;
pub mod session;
pub mod signin;
pub mod sso;
pub mod totp;

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::wire::Data;
use super::api::{
    Api, ApiError, Body, Caller, Forbidden, Unauthenticated, Via, client, client_key,
};
use super::audit::Kind;
use super::policy::Scope;
use super::store::sessions;
use super::store::{passwords, users, workspaces};

/// Sign-in attempts per account from one client address per minute (a burst of this
/// many, refilled over it).
pub const PER_ACCOUNT_PER_MINUTE: u32 = 5;
/// Sign-in attempts per account from all addresses per minute: guessing from many
/// addresses is bounded, and one address alone cannot lock the account's owner out.
pub const PER_ACCOUNT_ALL_ADDRESSES_PER_MINUTE: u32 = 60;
/// Sign-in attempts per client address (an IPv6 address's /64) per minute.
pub const PER_ADDRESS_PER_MINUTE: u32 = 30;
/// Longest email (RFC 5321's path limit) and workspace slug a sign-in names.
const MAX_EMAIL: usize = 254;
const MAX_SLUG: usize = 64;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// The sign-in budgets: per client address, per account from that address, and per
/// account from everywhere.
#[derive(Debug)]
pub struct SignInLimits {
    address: Keyed,
    account_here: Keyed,
    account: Keyed,
}

impl Default for SignInLimits {
    fn default() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            address: RateLimiter::keyed(per_minute(PER_ADDRESS_PER_MINUTE)),
            account_here: RateLimiter::keyed(per_minute(PER_ACCOUNT_PER_MINUTE)),
            account: RateLimiter::keyed(per_minute(PER_ACCOUNT_ALL_ADDRESSES_PER_MINUTE)),
        }
    }
}

impl SignInLimits {
    /// Spends one attempt of each budget in turn; `false` at the first spent (the
    /// later ones are not charged, nor their keys kept).
    pub(crate) fn admit(&self, email: &str, address: &str) -> bool {
        self.address.check_key(&address.to_owned()).is_ok()
            && self
                .account_here
                .check_key(&format!("{address} {email}"))
                .is_ok()
            && self.account.check_key(&email.to_owned()).is_ok()
    }

    /// Drops budgets that have refilled (the same as none).
    pub fn sweep(&self) {
        for limiter in [&self.address, &self.account_here, &self.account] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// `/auth/*`.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/session", get(current))
        .route("/auth/password", put(set_password))
        .route("/auth/sessions", get(list_sessions))
        .route("/auth/sessions/{id}", axum::routing::delete(end_session))
        .route("/auth/sessions/end-others", post(end_others))
        .merge(totp::routes())
        .merge(sso::routes())
        .merge(reset::routes())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
    /// Workspace slug (default `default`).
    #[serde(default)]
    workspace: Option<String>,
    /// A code from the authenticator app (or a recovery code), when one is on.
    #[serde(default)]
    code: Option<String>,
}

/// A session as its holder sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    id: String,
    user_id: String,
    email: String,
    workspace_id: String,
    /// Echo it in `X-CSRF-Token` on every change made with this session.
    csrf_token: String,
    method: String,
    idle_expires_at: DateTime<Utc>,
    absolute_expires_at: DateTime<Utc>,
}

fn view(session: &sessions::SessionRow, email: &str) -> SessionView {
    SessionView {
        id: session.id.clone(),
        user_id: session.user_id.clone(),
        email: email.to_owned(),
        workspace_id: session.workspace_id.clone(),
        csrf_token: session.csrf.clone(),
        method: session.method.clone(),
        idle_expires_at: session.idle_expires_at,
        absolute_expires_at: session.absolute_expires_at,
    }
}

fn with_cookie(mut response: Response, cookie: Option<axum::http::HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `POST /auth/login`: email and password → a new session (a new id whatever the
/// browser held: no fixation), its cookie and its CSRF token.
async fn login(
    State(api): State<Arc<Api>>,
    parts: Parts,
    Body(body): Body<SignIn>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (ip, user_agent) = client(&parts);
    // Login CSRF: a page elsewhere must not sign the browser into another account. A
    // form cannot send JSON across origins without asking first, and a browser's
    // cross-origin request names its origin.
    let json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json || session::from_elsewhere(&parts.headers, &api.public_url) {
        return Err(ApiError::Forbidden(Forbidden::Csrf(
            "sign in with a JSON body from the console's own origin",
        )));
    }
    let email = body.email.trim().to_lowercase();
    let slug = body.workspace.as_deref().unwrap_or("default");
    if email.len() > MAX_EMAIL {
        return Err(ApiError::field(
            "email",
            format!("at most {MAX_EMAIL} bytes"),
        ));
    }
    if slug.len() > MAX_SLUG {
        return Err(ApiError::field(
            "workspace",
            format!("at most {MAX_SLUG} bytes"),
        ));
    }
    let address = client_key(&parts);
    if !api.sign_in.admit(&email, &address) {
        return Err(ApiError::RateLimited);
    }
    let mut conn = api.store.read().await?;
    let workspace = workspaces::by_slug(&mut conn, slug).await?;
    let user = match &workspace {
        Some(ws) => users::by_email(&mut conn, &ws.id, &email).await?,
        None => None,
    };
    // When the workspace requires SSO, only its break-glass owners have a password that
    // opens anything (everyone else's is checked all the same: the answer and its time
    // say nothing of who is one).
    let local_allowed = match (&workspace, &user) {
        (Some(ws), Some(u)) => signin::local_allowed(&mut conn, ws, &u.id, u.role).await?,
        _ => true,
    };
    let phc = match &user {
        Some(u) if u.active => passwords::get(&mut conn, &u.id).await?,
        _ => None,
    };
    drop(conn);
    let matched = password::verify(body.password, phc).await && local_allowed;
    // Who was tried, by id when they exist: never the typed email, which may be a
    // password typed in the wrong field.
    let tried = user.as_ref().map(|u| u.id.clone()).unwrap_or_default();
    let client = (ip.clone(), user_agent.clone());
    let (Some(workspace), Some(user), true) = (workspace, user, matched) else {
        return refuse(&api, &tried, "credentials", client, now).await;
    };
    let mut change = api.store.change().await?;
    // The second factor, when the person turned one on.
    if let Some(factor) = totp::enabled(change.conn(), &user.id).await? {
        let Some(code) = body.code.as_deref() else {
            drop(change);
            return Err(ApiError::Unauthorized(
                Unauthenticated::SecondFactorRequired,
            ));
        };
        if !totp::spend(change.conn(), api.store.key(), &user.id, &factor, code, now).await? {
            drop(change);
            return refuse(&api, &tried, "second_factor", client, now).await;
        }
    }
    let opened = signin::open(
        &mut change,
        signin::Opening {
            workspace: &workspace,
            user_id: &user.id,
            method: "password",
            detail: json!({}),
            ip: ip.clone(),
            user_agent: user_agent.clone(),
            replacing: session::presented(&parts.headers, &api.public_url),
        },
        now,
    )
    .await?;
    change.commit().await?;
    let answer = Json(Data {
        data: view(&opened.row, &user.email),
    })
    .into_response();
    Ok(with_cookie(answer, opened.cookie(&api.public_url)))
}

/// Audits a refused sign-in and answers it (the same answer whatever was wrong).
async fn refuse(
    api: &Api,
    tried: &str,
    why: &str,
    (ip, user_agent): (Option<String>, Option<String>),
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    let mut change = api.store.change().await?;
    signin::refused(
        &mut change,
        tried,
        json!({"reason": why}),
        ip,
        user_agent,
        now,
    )
    .await?;
    change.commit().await?;
    Err(ApiError::Unauthorized(Unauthenticated::InvalidCredentials))
}

/// The caller's session, or `401 session_ended` for a token (no session to speak of).
fn session_of(caller: &Caller) -> Result<&sessions::SessionRow, ApiError> {
    match &caller.via {
        Via::Session(session) => Ok(session),
        Via::Token(_) => Err(ApiError::Unauthorized(Unauthenticated::SessionEnded)),
    }
}

/// `GET /auth/session`: the current session (with its CSRF token).
async fn current(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    let session = session_of(&caller)?;
    let mut conn = api.store.read().await?;
    let email = users::get(&mut conn, &caller.workspace.id, &caller.user.id)
        .await?
        .map(|u| u.email)
        .unwrap_or_default();
    Ok(Json(Data {
        data: view(session, &email),
    })
    .into_response())
}

/// `POST /auth/logout`: ends the session on the server (the cookie alone is worth
/// nothing after) and removes the cookie.
async fn logout(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    let session = session_of(&caller)?;
    let mut change = api.store.change().await?;
    sessions::revoke(change.conn(), &session.id, caller.now).await?;
    change
        .record(caller.draft(Kind::SessionRevoke, "session", &session.id, None, None))
        .await?;
    change.commit().await?;
    Ok(with_cookie(
        super::api::success(),
        session::clear_cookie(&api.public_url),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewPassword {
    /// Required when a password is set already.
    #[serde(default)]
    current_password: Option<String>,
    new_password: String,
}

/// `PUT /auth/password`: sets the caller's own password (their current one first, when
/// they have one); through a token, only one with every personal scope. Every other
/// session of theirs ends.
async fn set_password(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<NewPassword>,
) -> Result<Response, ApiError> {
    // A password opens a session, and a session has every scope a person's token may
    // carry: a token lacking one of them cannot set it (a narrow token is no way to the
    // person's full rights).
    if let Via::Token(_) = caller.via {
        super::api::tokens::within_caller_scopes(&caller, &Scope::PERSONAL)?;
    }
    password::acceptable(&body.new_password)
        .map_err(|e| ApiError::field("newPassword", e.to_string()))?;
    let mut conn = api.store.read().await?;
    let existing = passwords::get(&mut conn, &caller.user.id).await?;
    drop(conn);
    if existing.is_some() {
        let current = body.current_password.unwrap_or_default();
        if !password::verify(current, existing).await {
            return Err(ApiError::field(
                "currentPassword",
                "not the current password",
            ));
        }
    }
    let phc = password::hash(body.new_password).await.map_err(|e| {
        tracing::error!(error = %e, "cannot hash a password");
        ApiError::Internal
    })?;
    let keep = match &caller.via {
        Via::Session(session) => Some(session.id.clone()),
        Via::Token(_) => None,
    };
    let mut change = api.store.change().await?;
    passwords::set(change.conn(), &caller.user.id, &phc, caller.now).await?;
    let ended =
        sessions::revoke_others(change.conn(), &caller.user.id, keep.as_deref(), caller.now)
            .await?;
    change
        .record(caller.draft(
            Kind::UserPasswordSet,
            "user",
            &caller.user.id,
            None,
            Some(json!({"otherSessionsEnded": ended})),
        ))
        .await?;
    change.commit().await?;
    Ok(super::api::success())
}

/// One of the caller's sessions, as their session list shows it (never a secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionEntry {
    id: String,
    method: String,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    idle_expires_at: DateTime<Utc>,
    absolute_expires_at: DateTime<Utc>,
    ip: String,
    user_agent: String,
    /// The session this request came with.
    current: bool,
}

#[derive(Debug, Serialize)]
struct SessionList {
    sessions: Vec<SessionEntry>,
}

/// `GET /auth/sessions`: the caller's own live sessions, newest first.
async fn list_sessions(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    let current = match &caller.via {
        Via::Session(s) => Some(s.id.as_str()),
        Via::Token(_) => None,
    };
    let mut conn = api.store.read().await?;
    let rows =
        sessions::live_of(&mut conn, &caller.workspace.id, &caller.user.id, caller.now).await?;
    let sessions = rows
        .into_iter()
        .map(|r| SessionEntry {
            current: current == Some(r.id.as_str()),
            id: r.id,
            method: r.method,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            idle_expires_at: r.idle_expires_at,
            absolute_expires_at: r.absolute_expires_at,
            ip: r.ip,
            user_agent: r.user_agent,
        })
        .collect();
    Ok(Json(Data {
        data: SessionList { sessions },
    })
    .into_response())
}

/// `DELETE /auth/sessions/{id}`: ends one of the caller's own sessions (someone
/// else's, or none, answers 404 alike).
async fn end_session(
    State(api): State<Arc<Api>>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let mut change = api.store.change().await?;
    let own = sessions::live_of(
        change.conn(),
        &caller.workspace.id,
        &caller.user.id,
        caller.now,
    )
    .await?
    .into_iter()
    .any(|s| s.id == id);
    if !own {
        return Err(ApiError::missing("session", &id));
    }
    sessions::revoke(change.conn(), &id, caller.now).await?;
    change
        .record(caller.draft(Kind::SessionRevoke, "session", &id, None, None))
        .await?;
    change.commit().await?;
    Ok(super::api::success())
}

/// `POST /auth/sessions/end-others`: "sign out everywhere else": every session of the
/// caller but the one this request came with (all of them, through a token).
async fn end_others(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    let keep = match &caller.via {
        Via::Session(s) => Some(s.id.clone()),
        Via::Token(_) => None,
    };
    let mut change = api.store.change().await?;
    let ended =
        sessions::revoke_others(change.conn(), &caller.user.id, keep.as_deref(), caller.now)
            .await?;
    change
        .record(caller.draft(
            Kind::SessionRevoke,
            "user",
            &caller.user.id,
            None,
            Some(json!({"sessionsEnded": ended})),
        ))
        .await?;
    change.commit().await?;
    Ok(Json(Data {
        data: json!({"ended": ended}),
    })
    .into_response())
}
