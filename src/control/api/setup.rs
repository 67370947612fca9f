//! `/setup/{link}`: one-time links that create a user (the first owner, or an invited
//! member), hand them their first API token, shown once, and sign them in (a session
//! cookie), unless the workspace requires SSO.
//!
//! The link's secret is the only credential: it is stored as a SHA-256 digest, used
//! once, and expires (24 h for the first owner, 72 h for invites). The page works
//! without JavaScript; `Accept: application/json` gets JSON instead.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::tokens::Token;
use super::wire::{ErrorEnvelope, ErrorItem};
use super::{Api, ApiError, Path};
use crate::control::audit::{Actor, Draft, Kind};
use crate::control::console::links;
use crate::control::identity::signin;
use crate::control::policy::Scope;
use crate::control::store::invites::{self, LinkState};
use crate::control::store::users::{self, NewUser};
use crate::control::store::workspaces;
use crate::control::token;

/// Who a setup link made.
#[derive(Debug, Serialize)]
pub struct SetupUser {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Role: `owner`, `admin`, `member`, `read_only`.
    pub role: String,
}

/// The JSON answer to a setup link used: the new user and their first token.
#[derive(Debug, Serialize)]
pub struct SetupDone {
    /// The user made.
    pub user: SetupUser,
    /// Their first API token.
    pub token: Token,
    /// The token's secret, shown here only.
    pub secret: String,
    /// The CSRF token of the session opened (none when the workspace requires SSO).
    #[serde(rename = "csrfToken", skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// Days the first token made at setup lives (capped by the workspace's maximum).
pub const SETUP_TOKEN_DAYS: i64 = 30;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/setup/{link}", get(form).post(accept))
}

fn refused(state: LinkState) -> (StatusCode, &'static str) {
    match state {
        LinkState::Unknown => (StatusCode::NOT_FOUND, "This link is not valid."),
        LinkState::Used => (StatusCode::GONE, "This link has been used already."),
        LinkState::Expired => (StatusCode::GONE, "This link has expired."),
    }
}

/// The answer to a refused link: the error envelope or the page.
fn refusal_answer(state: LinkState, json: bool) -> Response {
    let (status, text) = refused(state);
    if json {
        return (
            status,
            axum::Json(ErrorEnvelope {
                errors: vec![ErrorItem {
                    kind: "link".to_owned(),
                    message: text.to_owned(),
                    field: None,
                }],
            }),
        )
            .into_response();
    }
    links::notice(status, "Sluice setup", text, None)
}

/// Which refused link attempts reach the audit log: the first per address (its /64 for
/// IPv6) per minute, carrying how many went unrecorded since the address's last event.
#[derive(Debug, Default)]
pub struct LinkRefusals(std::sync::Mutex<std::collections::HashMap<String, (DateTime<Utc>, u64)>>);

/// Addresses remembered at most (older windows are dropped first when it is full).
const REFUSAL_ADDRESSES: usize = 10_000;

impl LinkRefusals {
    /// `Some(n)`: record this attempt, with `n` earlier ones unrecorded; `None`: count
    /// it for the address's next recorded event.
    pub fn admit(&self, ip: std::net::IpAddr, now: DateTime<Utc>) -> Option<u64> {
        let key = super::address_key(ip);
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= REFUSAL_ADDRESSES {
            map.retain(|_, (since, _)| now - *since < Duration::minutes(1));
        }
        let room = map.len() < REFUSAL_ADDRESSES;
        match map.get_mut(&key) {
            Some((since, unrecorded)) if now - *since < Duration::minutes(1) => {
                *unrecorded += 1;
                None
            }
            Some((since, unrecorded)) => {
                let earlier = std::mem::take(unrecorded);
                *since = now;
                Some(earlier)
            }
            None => {
                // Full of addresses seen within the minute: recorded, not remembered.
                if room {
                    map.insert(key, (now, 0));
                }
                Some(0)
            }
        }
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

async fn form(State(api): State<Arc<Api>>, Path(link): Path<String>) -> Result<Response, ApiError> {
    let digest = token::digest_of(&link).to_hex();
    let mut conn = api.store.read().await?;
    let link = match invites::peek_link(&mut conn, &digest, Utc::now()).await? {
        Ok(link) => link,
        Err(state) => return Ok(refusal_answer(state, false)),
    };
    Ok(links::setup_form(&link.email, link.role.name()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    email: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Accept, ApiError> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed: Result<Accept, String> = if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::Invalid {
        message: format!("invalid form: {e}"),
        field: None,
    })
}

/// `POST /setup/{link}`: the account made. A browser's form that cannot be taken (a bad
/// email, a form from elsewhere) is answered with a page saying why; a JSON client gets
/// the error envelope.
async fn accept(
    state: State<Arc<Api>>,
    link: Path<String>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json = wants_json(&headers);
    // Back to the form, when the link is one a form could be at (base62).
    let form = link
        .0
        .bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then(|| format!("/setup/{}", link.0));
    match make_account(state, link, peer, headers, body).await {
        Ok(response) => response,
        Err(error) if !json => {
            let message = error.to_string();
            let refused = error.into_response();
            let mut page = links::notice(
                refused.status(),
                "Sluice setup",
                &message,
                form.as_deref().map(|f| (f, "Back to the form")),
            );
            // A `429` says when to come back, on the page as in the envelope.
            if let Some(after) = refused.headers().get(axum::http::header::RETRY_AFTER) {
                page.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, after.clone());
            }
            page
        }
        Err(error) => error.into_response(),
    }
}

async fn make_account(
    State(api): State<Arc<Api>>,
    Path(link): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let json = wants_json(&headers);
    // Login CSRF: a page elsewhere must not make this browser sign into an account.
    if crate::control::identity::session::from_elsewhere(&headers, &api.public_url) {
        return Err(ApiError::Forbidden(super::Forbidden::Csrf(
            "use the link from the console's own origin",
        )));
    }
    let form = parse_form(&headers, &body)?;
    let now = Utc::now();
    let email = super::invites::valid_email("email", &form.email)?;
    for (field, value) in [
        ("first_name", &form.first_name),
        ("last_name", &form.last_name),
    ] {
        if value.chars().count() > 100 || value.chars().any(char::is_control) {
            return Err(ApiError::field(
                field,
                "at most 100 characters, no control characters",
            ));
        }
    }
    let digest = token::digest_of(&link).to_hex();
    let mut change = api.store.change().await?;
    let link = match invites::use_link(change.conn(), &digest, now).await? {
        Ok(link) => link,
        Err(state) => {
            // A failed attempt is audited (who tried, from where), never the link; an
            // address's further failures within the minute are counted into its next
            // event instead, so guessing (or many people behind one proxy) cannot flood
            // the audit log.
            let state_name = match state {
                LinkState::Unknown => "unknown",
                LinkState::Used => "used",
                LinkState::Expired => "expired",
            };
            crate::telemetry::CONTROL_DENIALS
                .with(["link_refused"])
                .increment(1);
            let Some(suppressed) = api.link_refusals.admit(peer.ip(), now) else {
                drop(change);
                return Ok(refusal_answer(state, json));
            };
            change
                .record(Draft {
                    time: now,
                    actor: Actor::System,
                    action: Kind::SetupLinkRefused.name().into_owned(),
                    resource_type: "setup_link".into(),
                    resource_id: state_name.into(),
                    before: None,
                    after: Some(json!({"email": email, "reason": state_name,
                        "earlierUnrecorded": suppressed})),
                    ip: Some(peer.ip().to_canonical().to_string()),
                    user_agent: headers
                        .get("user-agent")
                        .and_then(|v| v.to_str().ok())
                        .map(|s| s.chars().take(256).collect()),
                })
                .await?;
            change.commit().await?;
            return Ok(refusal_answer(state, json));
        }
    };
    if !link.email.is_empty() && link.email != email {
        return Err(ApiError::field(
            "email",
            "this invite is for another email address",
        ));
    }
    let workspace = workspaces::get(change.conn(), &link.workspace_id)
        .await?
        .ok_or(ApiError::Internal)?;
    let origin = if link.email.is_empty() {
        "setup"
    } else {
        "invite"
    };
    let user = users::create(
        change.conn(),
        &workspace.id,
        NewUser {
            email: &email,
            first_name: form.first_name.trim(),
            last_name: form.last_name.trim(),
            role: link.role,
            origin,
        },
        now,
    )
    .await?;
    // What the invite brought besides the role: scoped or not, and grants.
    if let Some(terms) = invites::terms(change.conn(), &workspace.id, &email).await? {
        if terms.scoped {
            users::set_scoped(change.conn(), &workspace.id, &user.id, true).await?;
        }
        for (target, level) in terms.grants {
            crate::control::store::grants::put(
                change.conn(),
                &workspace.id,
                crate::control::store::grants::NewGrant {
                    principal: crate::control::store::grants::Holder::User(user.id.clone()),
                    resource: target,
                    level,
                    justification: if terms.justification.is_empty() {
                        "invite".into()
                    } else {
                        terms.justification.clone()
                    },
                    approved_by: terms.invited_by.clone(),
                    expires_at: terms.access_expires_at,
                },
                now,
            )
            .await?;
        }
    }
    invites::remove(change.conn(), &workspace.id, &email).await?;
    // Groups they were invited into before they joined.
    for group in
        crate::control::store::groups::take_invites(change.conn(), &workspace.id, &email).await?
    {
        crate::control::store::groups::add_member(change.conn(), &group, &user.id).await?;
    }
    let days = SETUP_TOKEN_DAYS.min(i64::from(workspace.settings.token_max_days));
    let (row, plain) = super::tokens::issue(
        &mut change,
        &workspace.id,
        &user.id,
        "setup",
        &Scope::PERSONAL,
        now + Duration::days(days),
        now,
    )
    .await?;
    // The peer's address, as every API request records it: a client-set header such as
    // X-Forwarded-For is never taken at its word.
    let ip = Some(peer.ip().to_canonical().to_string());
    let user_agent: Option<String> = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    change
        .record(Draft {
            time: now,
            actor: Actor::User {
                id: user.id.clone(),
                elevations: Vec::new(),
            },
            action: if link.email.is_empty() {
                Kind::UserSetup
            } else {
                Kind::UserInvite
            }
            .name()
            .into_owned(),
            resource_type: "user".into(),
            resource_id: user.id.clone(),
            before: None,
            after: Some(json!({"email": user.email, "role": user.role.name(), "token": row.id})),
            ip: ip.clone(),
            user_agent: user_agent.clone(),
        })
        .await?;
    let opened = if signin::local_allowed(change.conn(), &workspace, &user.id, user.role).await? {
        Some(
            signin::open(
                &mut change,
                signin::Opening {
                    workspace: &workspace,
                    user_id: &user.id,
                    method: origin,
                    detail: json!({}),
                    ip,
                    user_agent,
                    replacing: crate::control::identity::session::presented(
                        &headers,
                        &api.public_url,
                    ),
                },
                now,
            )
            .await?,
        )
    } else {
        None
    };
    change.commit().await?;
    let cookie = opened.as_ref().and_then(|o| o.cookie(&api.public_url));
    let signed_in = cookie.is_some();
    let with_cookie = |mut response: Response| {
        if let Some(cookie) = cookie {
            response
                .headers_mut()
                .insert(axum::http::header::SET_COOKIE, cookie);
        }
        response
    };
    if json {
        return Ok(with_cookie(super::data(SetupDone {
            user: SetupUser {
                id: user.id.clone(),
                email: user.email.clone(),
                role: user.role.name().to_owned(),
            },
            token: Token::from(&row),
            secret: plain.expose().to_owned(),
            csrf_token: opened.map(|o| o.row.csrf),
        })));
    }
    let page = links::setup_done(
        &user.email,
        user.role.name(),
        plain.expose(),
        api.public_url.trim_end_matches('/'),
        signed_in,
    );
    Ok(with_cookie(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_one_recorded_refusal_a_minute_carrying_the_unrecorded_count() {
        let refusals = LinkRefusals::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let one: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
        let other: std::net::IpAddr = "2001:db8:1:2::9".parse().expect("ip");
        let same_64: std::net::IpAddr = "2001:db8:1:2::77".parse().expect("ip");
        assert_eq!(refusals.admit(one, t0), Some(0));
        for s in 1..=5 {
            assert_eq!(refusals.admit(one, t0 + Duration::seconds(s)), None);
        }
        assert_eq!(refusals.admit(other, t0), Some(0), "its own window");
        assert_eq!(refusals.admit(same_64, t0), None, "the same /64");
        assert_eq!(refusals.admit(one, t0 + Duration::seconds(61)), Some(5));
        assert_eq!(refusals.admit(other, t0 + Duration::seconds(61)), Some(1));
    }
}
