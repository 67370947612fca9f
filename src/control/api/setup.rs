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
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::tokens::Token;
use super::wire::{ErrorEnvelope, ErrorItem};
use super::{Api, ApiError, Path};
use crate::control::audit::{Actor, Draft, Kind};
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

/// Escapes text for HTML.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small self-contained page (no scripts, forms post to this origin only, never cached).
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Sluice</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto\">\
         <h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", "no-store".parse().expect("static header"));
    // `strict-origin`, not `no-referrer`: under `no-referrer` a browser posts the page's
    // forms with `Origin: null`, which the login-CSRF guard refuses as coming from
    // elsewhere. The link (in the address) never leaves in a `Referer`: only the origin.
    headers.insert(
        "referrer-policy",
        "strict-origin".parse().expect("static header"),
    );
    headers.insert(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
            .parse()
            .expect("static header"),
    );
    response
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
    page(status, "Sluice setup", &format!("<p>{text}</p>"))
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
        Err(state) => {
            let (status, text) = refused(state);
            return Ok(page(status, "Sluice setup", &format!("<p>{text}</p>")));
        }
    };
    let email = if link.email.is_empty() {
        "<input name=\"email\" type=\"email\" required autocomplete=\"email\">".to_owned()
    } else {
        format!(
            "<input name=\"email\" type=\"email\" value=\"{}\" readonly>",
            escape(&link.email)
        )
    };
    let body = format!(
        "<p>Create your account: you will join as <b>{role}</b> and get an API token, shown once.</p>\
         <form method=\"post\">\
         <p><label>Email<br>{email}</label></p>\
         <p><label>First name<br><input name=\"first_name\" maxlength=\"100\"></label></p>\
         <p><label>Last name<br><input name=\"last_name\" maxlength=\"100\"></label></p>\
         <p><button type=\"submit\">Create account</button></p></form>",
        role = link.role.name()
    );
    Ok(page(StatusCode::OK, "Welcome to Sluice", &body))
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

async fn accept(
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
    let body = format!(
        "<p>Your account <b>{email}</b> ({role}) is ready.</p>\
         <p>Your API token, shown <b>this once</b> (valid {days} days):</p>\
         <pre style=\"background:#eee;padding:1rem;overflow-x:auto\">{token}</pre>\
         <p>Use it as <code>Authorization: Bearer …</code> on <code>{url}/api/v1</code>, \
         or export it as <code>SLUICE_TOKEN</code> for <code>sluice admin</code>.</p>{console}",
        console = if signed_in {
            "<p><a href=\"/sources\">Open the console</a>: you are signed in on this browser. \
             Set a password on <a href=\"/account\">your account</a> page to sign in again later \
             (or sign in through your identity provider when the workspace has one).</p>"
        } else {
            "<p><a href=\"/sign-in\">Sign in to the console</a> through your identity provider.</p>"
        },
        email = escape(&user.email),
        role = user.role.name(),
        token = escape(plain.expose()),
        url = escape(api.public_url.trim_end_matches('/')),
    );
    Ok(with_cookie(page(StatusCode::OK, "You're set up", &body)))
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
