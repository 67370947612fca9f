//! Single sign-on: people of a workspace sign in through its identity provider
//! (OpenID Connect or SAML 2.0; everything here but the protocol is shared).
//!
//! - `GET /auth/methods?workspace=<slug>`: how a workspace signs in (its enabled
//!   connections, whether SSO is required), for a sign-in page.
//! - `GET /auth/sso/{connectionId}?returnTo=/path`: starts a sign-in; the browser goes
//!   to the provider, bound to this browser by a short-lived cookie.
//! - `GET /auth/oidc/callback`: the provider sends the browser back; the sign-in is
//!   checked, the person provisioned or updated ([`provision`]) and a session opened.
//! - `GET /auth/saml/{connectionId}/metadata`: the service provider's metadata, and
//!   `POST /auth/saml/{connectionId}/acs`: where the identity provider posts its
//!   response (started here or, when the connection allows it, at the provider).
//!
//! Provisioning at sign-in (just in time): a person the connection has not seen is
//! matched by email to a member, or created with the connection's default role
//! (`read_only` unless set otherwise). The role claim, when mapped, sets their own role
//! at each sign-in (never to or from owner); the groups claim sets their membership of
//! the groups the identity provider manages (made by SCIM or SSO, never owner groups).
//! A deactivated member stays out.

pub mod oidc;
pub mod saml;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use super::{session, signin};
use crate::control::api::wire::Data;
use crate::control::api::{Api, ApiError, Forbidden, client};
use crate::control::audit::{Actor, Draft, Kind};
use crate::control::policy::Role;
use crate::control::store::sso::{self as store, ConnectionRow, FlowRow};
use crate::control::store::users::{self, NewUser, UserRow};
use crate::control::store::{Change, StoreError, groups, scim as scim_store, workspaces};
use crate::control::token;

/// How long a sign-in may take at the identity provider.
pub const FLOW_LIFETIME: TimeDelta = TimeDelta::minutes(10);
/// Longest `returnTo` path kept.
const MAX_RETURN_TO: usize = 512;
/// Most groups read from one sign-in's groups claim.
pub const MAX_GROUPS: usize = 1_000;

/// Which claim (OIDC) or attribute (SAML) carries what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMap {
    /// The person's email (their account in Sluice).
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Group names (each matched to a Sluice group, and so to a group mapping); none
    /// to leave group membership alone.
    #[serde(default)]
    pub groups: Option<String>,
    /// A workspace role (`admin`, `member`, `read_only`; never owner); none to leave
    /// roles to Sluice and group mappings.
    #[serde(default)]
    pub role: Option<String>,
}

impl ClaimMap {
    /// OpenID Connect's standard claims, and `groups`.
    pub fn oidc() -> Self {
        Self {
            email: "email".into(),
            first_name: "given_name".into(),
            last_name: "family_name".into(),
            groups: Some("groups".into()),
            role: None,
        }
    }

    /// The attribute names the reference maps for SAML (`email`, `firstName`,
    /// `lastName`, `groups`); the NameID stands in for a missing email.
    pub fn saml() -> Self {
        Self {
            email: "email".into(),
            first_name: "firstName".into(),
            last_name: "lastName".into(),
            groups: Some("groups".into()),
            role: None,
        }
    }

    /// The default map of a connection kind.
    pub fn default_for(kind: &str) -> Self {
        if kind == "saml" {
            Self::saml()
        } else {
            Self::oidc()
        }
    }
}

/// What the identity provider said of a person, read through the claim map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Who they are at the provider (OIDC `sub`, SAML NameID).
    pub subject: String,
    /// Email, lower-cased ('' when none was sent).
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Group names, when the groups claim is mapped and was sent.
    pub groups: Option<Vec<String>>,
    /// The role claim's value, when mapped and sent.
    pub role: Option<String>,
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.first().and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    }
}

fn clean(text: &str, limit: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(limit)
        .collect::<String>()
        .trim()
        .to_owned()
}

impl Profile {
    /// Reads a profile from claims (OIDC) or attributes (SAML, each a list of values).
    pub fn read(subject: &str, claims: &Map<String, Value>, map: &ClaimMap) -> Self {
        let groups = map.groups.as_ref().and_then(|name| {
            let list: Vec<String> = match claims.get(name)? {
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .take(MAX_GROUPS)
                    .map(|g| clean(g, 100))
                    .filter(|g| !g.is_empty())
                    .collect(),
                Value::String(one) => vec![clean(one, 100)],
                _ => return None,
            };
            Some(list)
        });
        Self {
            subject: subject.to_owned(),
            email: text(claims.get(&map.email))
                .map(|e| clean(&e, 254).to_lowercase())
                .unwrap_or_default(),
            first_name: text(claims.get(&map.first_name))
                .map(|n| clean(&n, 100))
                .unwrap_or_default(),
            last_name: text(claims.get(&map.last_name))
                .map(|n| clean(&n, 100))
                .unwrap_or_default(),
            groups,
            role: map
                .role
                .as_ref()
                .and_then(|name| text(claims.get(name)))
                .map(|r| clean(&r, 32)),
        }
    }

    /// The role the role claim names, if it names one an identity provider may give
    /// (never owner).
    pub fn role(&self) -> Option<Role> {
        self.role
            .as_deref()
            .and_then(|r| Role::parse(&r.to_lowercase()))
            .filter(|r| *r != Role::Owner)
    }
}

/// Why a sign-in through an identity provider is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The provider sent no email (check the claim map).
    #[error("the identity provider sent no email in the mapped claim")]
    NoEmail,
    /// The member is deactivated (by SCIM or an admin): SSO does not bring them back.
    #[error("this account is deactivated in the workspace")]
    Deactivated,
    /// The email belongs to an account of another workspace.
    #[error("this email belongs to an account outside this workspace")]
    EmailElsewhere,
    /// The connection is switched off.
    #[error("this sign-in connection is disabled")]
    Disabled,
    /// The sign-in came back to another browser, late, twice, or never started.
    #[error(
        "this sign-in is unknown, expired, already used or was started in another browser: start again"
    )]
    Flow,
    /// The provider's answer failed verification.
    #[error("{0}")]
    Provider(String),
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        ApiError::Forbidden(Forbidden::SignIn(format!(
            "single sign-on refused: {refused}"
        )))
    }
}

/// What a sign-in changed of the person.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The member, as they are now.
    #[serde(skip)]
    pub user: Option<UserRow>,
    /// Their id (`new` in a test, for someone who would be created).
    pub user_id: String,
    /// Created at this sign-in.
    pub created: bool,
    /// Their own role after.
    pub role: String,
    /// Groups joined.
    pub joined: Vec<String>,
    /// Groups left.
    pub left: Vec<String>,
}

fn sso_draft(
    connection: &ConnectionRow,
    action: Kind,
    kind: &str,
    id: &str,
    before: Option<Value>,
    after: Option<Value>,
    now: DateTime<Utc>,
) -> Draft {
    let mut after = after.unwrap_or_else(|| json!({}));
    if let Some(map) = after.as_object_mut() {
        map.insert("connectionId".into(), json!(connection.id));
    }
    Draft {
        time: now,
        actor: Actor::Sso,
        action: action.name().into_owned(),
        resource_type: kind.into(),
        resource_id: id.into(),
        before,
        after: Some(after),
        ip: None,
        user_agent: None,
    }
}

/// Applies a sign-in to the workspace: finds (by subject, then email) or creates the
/// member, applies the role and groups claims, links the subject. With `dry_run` (a
/// connection test) nothing is written; the outcome says what would be.
pub async fn provision(
    change: &mut Change,
    connection: &ConnectionRow,
    profile: &Profile,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Outcome, ApiError> {
    let ws = connection.workspace_id.clone();
    let linked = store::identity(change.conn(), &connection.id, &profile.subject).await?;
    let mut user = match linked {
        Some(id) => users::get(change.conn(), &ws, &id).await?,
        None => None,
    };
    if user.is_none() {
        if profile.email.is_empty() {
            return Err(Refused::NoEmail.into());
        }
        user = users::by_email(change.conn(), &ws, &profile.email).await?;
    }
    let mut created = false;
    let user = match user {
        Some(user) if !user.active => return Err(Refused::Deactivated.into()),
        Some(user) => user,
        None if dry_run => {
            return Ok(Outcome {
                user: None,
                user_id: "new".into(),
                created: true,
                role: profile
                    .role()
                    .unwrap_or(connection.default_role)
                    .name()
                    .into(),
                joined: profile.groups.clone().unwrap_or_default(),
                left: Vec::new(),
            });
        }
        None => {
            if scim_store::email_taken(change.conn(), &profile.email).await? {
                return Err(Refused::EmailElsewhere.into());
            }
            let role = profile.role().unwrap_or(connection.default_role);
            let made = users::create(
                change.conn(),
                &ws,
                NewUser {
                    email: &profile.email,
                    first_name: &profile.first_name,
                    last_name: &profile.last_name,
                    role,
                    origin: "sso",
                },
                now,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ApiError::from(Refused::EmailElsewhere),
                other => other.into(),
            })?;
            change
                .record(sso_draft(
                    connection,
                    Kind::UserProvision,
                    "user",
                    &made.id,
                    None,
                    Some(json!({"email": made.email, "role": role.name(), "origin": "sso"})),
                    now,
                ))
                .await?;
            created = true;
            made
        }
    };
    // The role claim sets their own role; owners are Sluice's to make and unmake.
    let mut role = user.role;
    if let Some(claimed) = profile.role()
        && user.role != Role::Owner
        && claimed != user.role
    {
        role = claimed;
        if !dry_run {
            users::set_role(change.conn(), &ws, &user.id, claimed).await?;
            change
                .record(sso_draft(
                    connection,
                    Kind::UserRoleUpdate,
                    "user",
                    &user.id,
                    Some(json!({"role": user.role.name()})),
                    Some(json!({"role": claimed.name()})),
                    now,
                ))
                .await?;
        }
    }
    let (joined, left) = match &profile.groups {
        Some(names) => sync_groups(change, connection, &user.id, names, dry_run, now).await?,
        None => (Vec::new(), Vec::new()),
    };
    if !dry_run {
        store::link(
            change.conn(),
            &connection.id,
            &profile.subject,
            &user.id,
            now,
        )
        .await?;
    }
    Ok(Outcome {
        user_id: user.id.clone(),
        user: Some(user),
        created,
        role: role.name().into(),
        joined,
        left,
    })
}

/// Makes the person's membership of the identity provider's groups what `names` says:
/// joins the named groups (a named group that does not exist is made when a group
/// mapping names it), leaves the provider's groups not named. Groups made in Sluice
/// and owner groups are left alone.
async fn sync_groups(
    change: &mut Change,
    connection: &ConnectionRow,
    user: &str,
    names: &[String],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let ws = connection.workspace_id.clone();
    let managed = |g: &groups::GroupRow| {
        (g.origin == "scim" || g.origin == "sso") && g.role != Some(Role::Owner)
    };
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let current = groups::of_user(change.conn(), &ws, user).await?;
    let mut joined = Vec::new();
    for name in &wanted {
        if current.iter().any(|g| g.name == *name) {
            continue;
        }
        let group = match groups::by_name(change.conn(), &ws, name).await? {
            Some(g) if managed(&g) => g,
            Some(_) => continue,
            None => {
                let Some(role) = scim_store::mapped_role(change.conn(), &ws, name).await? else {
                    continue;
                };
                if dry_run {
                    joined.push((*name).to_owned());
                    continue;
                }
                let made = groups::create(change.conn(), &ws, name, Some(role), "sso", now).await?;
                change
                    .record(sso_draft(
                        connection,
                        Kind::GroupCreate,
                        "group",
                        &made.id,
                        None,
                        Some(json!({"name": name, "role": role.name(), "origin": "sso"})),
                        now,
                    ))
                    .await?;
                made
            }
        };
        joined.push(group.name.clone());
        if !dry_run {
            groups::add_member(change.conn(), &group.id, user).await?;
            change
                .record(sso_draft(
                    connection,
                    Kind::GroupMemberAdd,
                    "group",
                    &group.id,
                    None,
                    Some(json!({"userId": user})),
                    now,
                ))
                .await?;
        }
    }
    let mut left = Vec::new();
    for group in current
        .iter()
        .filter(|g| managed(g) && !wanted.contains(g.name.as_str()))
    {
        left.push(group.name.clone());
        if !dry_run {
            groups::remove_member(change.conn(), &group.id, user).await?;
            change
                .record(sso_draft(
                    connection,
                    Kind::GroupMemberRemove,
                    "group",
                    &group.id,
                    Some(json!({"userId": user})),
                    None,
                    now,
                ))
                .await?;
        }
    }
    Ok((joined, left))
}

/// `/auth/methods`, `/auth/sso/{connectionId}`, `/auth/oidc/callback`, and the SAML
/// service provider's `/auth/saml/{connectionId}/metadata` and `…/acs`.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/auth/methods", get(methods))
        .route("/auth/sso/{connectionId}", get(start))
        .route("/auth/oidc/callback", get(oidc_callback))
        .route("/auth/saml/{connectionId}/metadata", get(saml_metadata))
        .route(
            "/auth/saml/{connectionId}/acs",
            axum::routing::post(saml_acs),
        )
}

/// Where an OpenID Connect provider sends the browser back (register it at the
/// provider as the redirect URI).
pub fn oidc_redirect(public_url: &str) -> String {
    format!("{}/auth/oidc/callback", public_url.trim_end_matches('/'))
}

/// The browser-binding cookie's name.
fn flow_cookie(public_url: &str) -> &'static str {
    if public_url.starts_with("https://") {
        "__Host-sluice_sso"
    } else {
        "sluice_sso"
    }
}

#[derive(Debug, Deserialize)]
struct MethodsQuery {
    #[serde(default)]
    workspace: Option<String>,
}

/// `GET /auth/methods?workspace=<slug>`: the enabled connections and whether SSO is
/// required (an unknown workspace answers like one with none: nothing to learn).
async fn methods(
    State(api): State<Arc<Api>>,
    Query(query): Query<MethodsQuery>,
) -> Result<Response, ApiError> {
    let slug = query.workspace.unwrap_or_else(|| "default".into());
    let mut conn = api.store.read().await?;
    let (require_sso, connections) = match workspaces::by_slug(&mut conn, &slug).await? {
        Some(ws) => (
            ws.sign_in.require_sso,
            store::list(&mut conn, &ws.id).await?,
        ),
        None => (false, Vec::new()),
    };
    let connections: Vec<Value> = connections
        .iter()
        .filter(|c| c.enabled)
        .map(|c| json!({"id": c.id, "name": c.name, "kind": c.kind, "start": format!("/auth/sso/{}", c.id)}))
        .collect();
    Ok(axum::Json(Data {
        data: json!({"requireSso": require_sso, "password": true, "connections": connections}),
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// A path of this listener to go to after sign-in (`/` for anything else: never
/// another host).
fn safe_return(path: Option<&str>) -> String {
    match path {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= MAX_RETURN_TO
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".into(),
    }
}

/// A sign-in under way, as started by a browser or by a connection test.
pub struct Begun {
    /// The provider's URL to send the browser to.
    pub url: String,
    /// The flow's id.
    pub flow: String,
}

/// Starts a sign-in through `connection`: the provider's URL, with the flow recorded.
/// `browser` is the digest of the binding cookie ('' for a test); `replacing`, of the
/// session cookie the browser presented ('' for none: it ends when the sign-in opens a
/// new session).
pub async fn begin(
    api: &Api,
    connection: &ConnectionRow,
    (browser, replacing): (&str, &str),
    return_to: String,
    test: bool,
    now: DateTime<Utc>,
) -> Result<Begun, ApiError> {
    // Where the browser goes, the flow's id, and what OIDC keeps until it comes back.
    let (url, flow, nonce, verifier) = match connection.kind.as_str() {
        "oidc" => {
            let settings = oidc_settings(connection)?;
            let secret = open_secret(api, connection)?;
            let started = oidc::start(
                &settings,
                secret.as_ref().map(|s| s.expose()),
                &oidc_redirect(&api.public_url),
            )
            .await
            .map_err(|e| {
                tracing::warn!(connection = %connection.id, error = %e, "OIDC sign-in could not start");
                Refused::Provider(e.to_string())
            })?;
            let sealed = api
                .store
                .key()
                .seal(&started.verifier, &format!("sso_flow:{}", connection.id))
                .map_err(|_| ApiError::Internal)?;
            let flow = token::digest_of(&started.state).to_hex();
            (started.url, flow, started.nonce, sealed)
        }
        "saml" => {
            let settings = saml_settings(connection)?;
            let id = saml::request_id().map_err(|_| ApiError::Internal)?;
            let url = saml::authn_request_url(
                &settings,
                &saml::sp_entity_id(&api.public_url, &connection.id),
                &saml::acs_url(&api.public_url, &connection.id),
                &id,
                now,
            )
            .map_err(|e| Refused::Provider(e.to_string()))?;
            (url, id, String::new(), String::new())
        }
        other => {
            return Err(Refused::Provider(format!("{other} sign-in is not available")).into());
        }
    };
    let mut change = api.store.change().await?;
    store::start_flow(
        change.conn(),
        &FlowRow {
            id: flow.clone(),
            connection_id: connection.id.clone(),
            browser: browser.to_owned(),
            nonce,
            verifier,
            return_to,
            test,
            created_at: now,
            expires_at: now + FLOW_LIFETIME,
            result: None,
            replacing: replacing.to_owned(),
        },
    )
    .await?;
    store::sweep(change.conn(), now).await?;
    change.commit().await?;
    Ok(Begun { url, flow })
}

fn open_secret(
    api: &Api,
    connection: &ConnectionRow,
) -> Result<Option<crate::control::secret::Sensitive>, ApiError> {
    if connection.secret.is_empty() {
        return Ok(None);
    }
    api.store
        .key()
        .open(&connection.secret, &secret_context(&connection.id))
        .map(Some)
        .map_err(|e| {
            tracing::error!(connection = %connection.id, error = %e, "an SSO client secret does not open");
            ApiError::Internal
        })
}

/// What a connection's client secret is sealed for.
pub fn secret_context(connection: &str) -> String {
    format!("sso_connection:{connection}:secret")
}

fn redirect(to: &str, cookie: Option<HeaderValue>, session: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    for value in [cookie, session].into_iter().flatten() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// `GET /auth/sso/{connectionId}`: sends the browser to the identity provider.
async fn start(
    State(api): State<Arc<Api>>,
    crate::control::api::Path(id): crate::control::api::Path<String>,
    Query(query): Query<StartQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let mut conn = api.store.read().await?;
    let connection = store::by_id(&mut conn, &id).await?;
    drop(conn);
    let Some(connection) = connection else {
        return Err(ApiError::missing("connection", &id));
    };
    if !connection.enabled {
        return Err(Refused::Disabled.into());
    }
    let binding = token::random_base62(43).map_err(|_| ApiError::Internal)?;
    let replacing = session::presented(&headers, &api.public_url).unwrap_or_default();
    let begun = begin(
        &api,
        &connection,
        (&session::digest(&binding), &replacing),
        safe_return(query.return_to.as_deref()),
        false,
        now,
    )
    .await?;
    // A SAML response comes back in a cross-site POST, which a Lax cookie does not
    // follow: on TLS the binding cookie is SameSite=None (with Secure, as browsers ask).
    let tls = api.public_url.starts_with("https://");
    let attributes = match (tls, connection.kind.as_str()) {
        (true, "saml") => "SameSite=None; Secure",
        (true, _) => "SameSite=Lax; Secure",
        (false, _) => "SameSite=Lax",
    };
    let cookie = HeaderValue::from_str(&format!(
        "{}={binding}; Path=/; HttpOnly; {attributes}; Max-Age={}",
        flow_cookie(&api.public_url),
        FLOW_LIFETIME.num_seconds()
    ))
    .ok();
    Ok(redirect(&begun.url, cookie, None))
}

/// The binding cookie the browser brought back, if exactly one.
fn binding(headers: &HeaderMap, public_url: &str) -> Option<String> {
    let name = flow_cookie(public_url);
    let mut found = None;
    for header in headers.get_all(axum::http::header::COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(v.to_owned());
            }
        }
    }
    found
}

/// A real sign-in must come back to the browser that started it (a test, started
/// through the API, has no browser to bind).
fn same_browser(flow: &FlowRow, headers: &HeaderMap, public_url: &str) -> bool {
    if flow.test {
        return true;
    }
    let brought = binding(headers, public_url)
        .map(|b| session::digest(&b))
        .unwrap_or_default();
    bool::from(brought.as_bytes().ct_eq(flow.browser.as_bytes()))
}

#[derive(Debug, Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `GET /auth/oidc/callback`: the provider's answer → a session (or, for a test, what
/// the provider sent and how it maps).
async fn oidc_callback(
    State(api): State<Arc<Api>>,
    parts: Parts,
    Query(query): Query<Callback>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (ip, user_agent) = client(&parts);
    let Some(state) = query.state.filter(|s| s.len() <= 512) else {
        return Err(Refused::Flow.into());
    };
    let mut change = api.store.change().await?;
    let flow = store::take_flow(change.conn(), &token::digest_of(&state).to_hex(), now).await?;
    change.commit().await?;
    let Some(flow) = flow else {
        return Err(Refused::Flow.into());
    };
    if !same_browser(&flow, &parts.headers, &api.public_url) {
        return Err(Refused::Flow.into());
    }
    let mut conn = api.store.read().await?;
    let connection = store::by_id(&mut conn, &flow.connection_id).await?;
    drop(conn);
    let Some(connection) = connection else {
        return Err(Refused::Flow.into());
    };
    let fail = |why: String| Refused::Provider(why);
    if let Some(error) = query.error {
        let detail = query.error_description.unwrap_or_default();
        return Err(fail(format!("the identity provider answered {error}: {detail}")).into());
    }
    let Some(code) = query.code.filter(|c| c.len() <= 4096) else {
        return Err(fail("the identity provider sent no code".into()).into());
    };
    let settings = oidc_settings(&connection)?;
    let secret = open_secret(&api, &connection)?;
    let verifier = api
        .store
        .key()
        .open(&flow.verifier, &format!("sso_flow:{}", connection.id))
        .map_err(|_| ApiError::Internal)?;
    let verified = oidc::finish(
        &settings,
        secret.as_ref().map(|s| s.expose()),
        &oidc_redirect(&api.public_url),
        &code,
        &flow.nonce,
        verifier.expose(),
    )
    .await;
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(connection = %connection.id, error = %e, "OIDC sign-in refused");
            let kept = flow.test.then(|| {
                (
                    flow.id.as_str(),
                    json!({"ok": false, "error": e.to_string()}),
                )
            });
            audit_refusal(
                &api,
                &connection,
                &e.to_string(),
                kept,
                (ip, user_agent),
                now,
            )
            .await?;
            return Err(fail(e.to_string()).into());
        }
    };
    let map = claim_map(&connection)?;
    let profile = Profile::read(&verified.subject, &verified.claims, &map);
    complete(
        &api,
        &connection,
        &flow,
        profile,
        verified.claims,
        (ip, user_agent),
        now,
    )
    .await
}

/// An OpenID Connect connection's settings.
fn oidc_settings(connection: &ConnectionRow) -> Result<oidc::OidcSettings, ApiError> {
    serde_json::from_value(connection.settings.get("oidc").cloned().unwrap_or_default())
        .map_err(|e| Refused::Provider(format!("connection settings: {e}")).into())
}

/// A SAML connection's settings.
fn saml_settings(connection: &ConnectionRow) -> Result<saml::SamlSettings, ApiError> {
    serde_json::from_value(connection.settings.get("saml").cloned().unwrap_or_default())
        .map_err(|e| Refused::Provider(format!("connection settings: {e}")).into())
}

/// A SAML connection by id (any other id answers like a missing one).
async fn saml_connection(api: &Api, id: &str) -> Result<ConnectionRow, ApiError> {
    let mut conn = api.store.read().await?;
    store::by_id(&mut conn, id)
        .await?
        .filter(|c| c.kind == "saml")
        .ok_or_else(|| ApiError::missing("connection", id))
}

/// `GET /auth/saml/{connectionId}/metadata`: this service provider, for the identity
/// provider (entity id, ACS URL with HTTP-POST, NameID format email).
async fn saml_metadata(
    State(api): State<Arc<Api>>,
    crate::control::api::Path(id): crate::control::api::Path<String>,
) -> Result<Response, ApiError> {
    let connection = saml_connection(&api, &id).await?;
    let settings = saml_settings(&connection)?;
    let xml = saml::sp_metadata(
        &saml::sp_entity_id(&api.public_url, &connection.id),
        &saml::acs_url(&api.public_url, &connection.id),
        settings.want_assertions_signed,
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/samlmetadata+xml",
        )],
        xml,
    )
        .into_response())
}

/// SAML responses verified at once (each is CPU work on a blocking thread).
static SAML_VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The ACS form (HTTP-POST binding).
#[derive(Debug, Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState", default)]
    relay_state: Option<String>,
}

/// How a refused SAML response is answered: input that is not a SAML response at all
/// is a 400; anything else a refused sign-in (403).
fn saml_refusal(error: &saml::SamlError) -> ApiError {
    match error {
        saml::SamlError::Encoding(_) | saml::SamlError::Xml(_) => {
            ApiError::field("SAMLResponse", error.to_string())
        }
        _ => Refused::Provider(error.to_string()).into(),
    }
}

/// `POST /auth/saml/{connectionId}/acs`: the identity provider's response → a session
/// (or, for a test, what it sent and how it maps). SP-initiated responses must answer
/// a stored request of this connection from the browser that made it; IdP-initiated
/// ones are taken only when the connection allows them. An assertion is used once.
async fn saml_acs(
    State(api): State<Arc<Api>>,
    crate::control::api::Path(id): crate::control::api::Path<String>,
    parts: Parts,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let form = acs_form(body)?;
    let connection = saml_connection(&api, &id).await?;
    let settings = saml_settings(&connection)?;
    let asserted =
        match verify_off_thread(&api, &connection, &settings, form.saml_response, now).await? {
            Ok(asserted) => asserted,
            Err(e) => {
                refuse_unverified(&api, &connection, &parts, &e, now).await?;
                return Err(saml_refusal(&e));
            }
        };
    let flow = bind(
        &api,
        &connection,
        &settings,
        &asserted,
        &parts,
        form.relay_state,
        now,
    )
    .await?;
    let map = claim_map(&connection)?;
    let mut claims = asserted.attributes;
    if !claims.contains_key(&map.email) && asserted.name_id_is_email {
        claims.insert(map.email.clone(), json!([asserted.name_id]));
    }
    let profile = Profile::read(&asserted.name_id, &claims, &map);
    complete(
        &api,
        &connection,
        &flow,
        profile,
        claims,
        client(&parts),
        now,
    )
    .await
}

/// The ACS form, from a body of at most the API's size.
fn acs_form(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<AcsForm, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::field("SAMLResponse", e.body_text())
        }
    })?;
    serde_urlencoded::from_bytes(&body).map_err(|e| {
        ApiError::field(
            "SAMLResponse",
            format!("the ACS takes a form with SAMLResponse: {e}"),
        )
    })
}

/// Decodes and verifies a response for `connection`. Parsing and signature checks are
/// CPU work: off the async workers, a few at once.
async fn verify_off_thread(
    api: &Api,
    connection: &ConnectionRow,
    settings: &saml::SamlSettings,
    response: String,
    now: DateTime<Utc>,
) -> Result<Result<saml::Asserted, saml::SamlError>, ApiError> {
    let _turn = SAML_VERIFYING
        .acquire()
        .await
        .map_err(|_| ApiError::Internal)?;
    let settings = settings.clone();
    let acs = saml::acs_url(&api.public_url, &connection.id);
    let audience = saml::sp_entity_id(&api.public_url, &connection.id);
    tokio::task::spawn_blocking(move || {
        saml::decode(&response).and_then(|xml| {
            saml::verify(
                &xml,
                &settings,
                saml::Expected {
                    acs: &acs,
                    audience: &audience,
                    now,
                },
            )
        })
    })
    .await
    .map_err(|_| ApiError::Internal)
}

/// Logs and audits a refused SAML sign-in.
async fn refuse_saml(
    api: &Api,
    connection: &ConnectionRow,
    parts: &Parts,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    tracing::warn!(connection = %connection.id, error = %why, "SAML sign-in refused");
    audit_refusal(api, connection, why, None, client(parts), now).await
}

/// A response that failed verification: anyone may post junk here, so an address's
/// refusals reach the audit log once a minute, carrying how many went unrecorded since.
async fn refuse_unverified(
    api: &Api,
    connection: &ConnectionRow,
    parts: &Parts,
    error: &saml::SamlError,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let address = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let admitted = match address {
        Some(ip) => api.saml_refusals.admit(ip, now),
        None => Some(0),
    };
    match admitted {
        Some(0) => refuse_saml(api, connection, parts, &error.to_string(), now).await,
        Some(n) => {
            let why = format!("{error} (and {n} earlier refusals from this address)");
            refuse_saml(api, connection, parts, &why, now).await
        }
        None => {
            tracing::warn!(connection = %connection.id, error = %error, "SAML sign-in refused");
            Ok(())
        }
    }
}

/// The sign-in a verified assertion belongs to: the stored request it answers (of this
/// connection, from this browser), or an IdP-initiated one when the connection takes
/// them. Spends the request and the assertion (a replay is refused).
async fn bind(
    api: &Api,
    connection: &ConnectionRow,
    settings: &saml::SamlSettings,
    asserted: &saml::Asserted,
    parts: &Parts,
    relay_state: Option<String>,
    now: DateTime<Utc>,
) -> Result<FlowRow, ApiError> {
    let refuse = async |why: &str, answer: ApiError| -> Result<FlowRow, ApiError> {
        refuse_saml(api, connection, parts, why, now).await?;
        Err(answer)
    };
    let mut change = api.store.change().await?;
    let taken = match &asserted.in_response_to {
        Some(request) => store::take_flow(change.conn(), request, now).await?,
        None => None,
    };
    // A request of another connection is not this response's to spend.
    if taken
        .as_ref()
        .is_some_and(|flow| flow.connection_id != connection.id)
    {
        drop(change);
        return refuse(&Refused::Flow.to_string(), Refused::Flow.into()).await;
    }
    let first = store::first_use(
        change.conn(),
        &connection.id,
        &asserted.id,
        asserted.expires + saml::SKEW,
    )
    .await?;
    change.commit().await?;
    if !first {
        let why = "this SAML assertion was already used (a replay)";
        return refuse(why, Refused::Provider(why.into()).into()).await;
    }
    match (asserted.in_response_to.is_some(), taken) {
        (true, Some(flow)) if same_browser(&flow, &parts.headers, &api.public_url) => Ok(flow),
        (true, _) => refuse(&Refused::Flow.to_string(), Refused::Flow.into()).await,
        (false, _) if !settings.allow_idp_initiated => {
            let why = "this connection does not take sign-ins started at the identity provider";
            refuse(why, Refused::Provider(why.into()).into()).await
        }
        (false, _) => Ok(FlowRow {
            id: asserted.id.clone(),
            connection_id: connection.id.clone(),
            browser: String::new(),
            nonce: String::new(),
            verifier: String::new(),
            return_to: safe_return(relay_state.as_deref()),
            test: false,
            created_at: now,
            expires_at: asserted.expires,
            result: None,
            replacing: String::new(),
        }),
    }
}

/// Audits a refused SSO sign-in (and keeps a failed test's result, when `kept`).
async fn audit_refusal(
    api: &Api,
    connection: &ConnectionRow,
    detail: &str,
    kept: Option<(&str, Value)>,
    (ip, user_agent): (Option<String>, Option<String>),
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    // Bounded: the detail may quote what an anonymous poster sent.
    let detail: String = detail.chars().take(400).collect();
    let mut change = api.store.change().await?;
    signin::refused(
        &mut change,
        "",
        json!({"reason": "sso", "connectionId": connection.id, "detail": detail}),
        ip,
        user_agent,
        now,
    )
    .await?;
    if let Some((flow, result)) = kept {
        store::keep_result(change.conn(), flow, &result).await?;
    }
    change.commit().await?;
    Ok(())
}

/// A connection's claim map (its default when it has none).
pub fn claim_map(connection: &ConnectionRow) -> Result<ClaimMap, ApiError> {
    match connection.settings.get("claims") {
        Some(map) => serde_json::from_value(map.clone())
            .map_err(|e| Refused::Provider(format!("claim map: {e}")).into()),
        None => Ok(ClaimMap::default_for(&connection.kind)),
    }
}

/// Ends a verified sign-in: a test keeps and shows what was sent and how it maps; a
/// real one provisions the person and opens their session.
pub async fn complete(
    api: &Api,
    connection: &ConnectionRow,
    flow: &FlowRow,
    profile: Profile,
    sent: Map<String, Value>,
    (ip, user_agent): (Option<String>, Option<String>),
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    let mut change = api.store.change().await?;
    if flow.test {
        let outcome = provision(&mut change, connection, &profile, true, now).await;
        let result = match outcome {
            Ok(outcome) => {
                json!({"ok": true, "sent": sent, "profile": profile, "outcome": outcome})
            }
            Err(e) => {
                json!({"ok": false, "sent": sent, "profile": profile, "error": e.to_string()})
            }
        };
        store::keep_result(change.conn(), &flow.id, &result).await?;
        change.commit().await?;
        return Ok(axum::Json(Data { data: result }).into_response());
    }
    if !connection.enabled {
        return Err(Refused::Disabled.into());
    }
    let outcome = provision(&mut change, connection, &profile, false, now).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            drop(change);
            audit_refusal(api, connection, &e.to_string(), None, (ip, user_agent), now).await?;
            return Err(e);
        }
    };
    let Some(user) = outcome.user else {
        return Err(ApiError::Internal);
    };
    let Some(workspace) = workspaces::get(change.conn(), &connection.workspace_id).await? else {
        return Err(ApiError::Internal);
    };
    let opened = signin::open(
        &mut change,
        signin::Opening {
            workspace: &workspace,
            user_id: &user.id,
            method: &connection.kind,
            detail: json!({"connectionId": connection.id, "created": outcome.created}),
            ip,
            user_agent,
            // A provider's answer comes back cross-site, without the session cookie:
            // the one the browser held when it started, as the flow remembers it.
            replacing: Some(flow.replacing.clone()).filter(|r| !r.is_empty()),
        },
        now,
    )
    .await?;
    change.commit().await?;
    let clear = HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        flow_cookie(&api.public_url)
    ))
    .ok();
    Ok(redirect(
        &flow.return_to,
        clear,
        opened.cookie(&api.public_url),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_listener_are_returned_to() {
        assert_eq!(safe_return(Some("/sources?x=1")), "/sources?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "relative",
            "",
        ] {
            assert_eq!(safe_return(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_return(None), "/");
    }

    #[test]
    fn a_profile_reads_mapped_claims_and_never_an_owner_role() {
        let claims = json!({
            "sub": "s", "email": " Alice@Example.COM ", "given_name": "Alice",
            "family_name": "Liddell", "groups": ["segment-analysts", "x\u{0007}y"],
            "sluice_role": "owner"
        });
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        let mut map = ClaimMap::oidc();
        map.role = Some("sluice_role".into());
        let p = Profile::read("s", &claims, &map);
        assert_eq!(p.email, "alice@example.com");
        assert_eq!(
            p.groups.as_deref(),
            Some(&["segment-analysts".to_owned(), "xy".to_owned()][..])
        );
        assert_eq!(p.role(), None, "an identity provider never makes owners");
        let mut claims = claims;
        claims.insert("sluice_role".into(), json!("Admin"));
        assert_eq!(Profile::read("s", &claims, &map).role(), Some(Role::Admin));
        map.groups = None;
        assert_eq!(
            Profile::read("s", &claims, &map).groups,
            None,
            "unmapped: left alone"
        );
    }
}
