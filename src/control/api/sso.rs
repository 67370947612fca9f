//! `/identity/sso-connections`: a workspace's single sign-on connections (Sluice's own,
//! not Segment's). Admins list and read them; owners make, change, test and delete them
//! (a connection decides who gets in). The client secret is sealed and never shown.
//!
//! A test (`POST …/{id}/test`) returns the provider's URL to open, as the person to try
//! (the reference: a non-admin first); when they come back, the callback shows what the
//! provider sent and how it maps, and `GET …/{id}/tests/{testId}` keeps it for a day.
//! Nobody is signed in or provisioned by a test.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::provisioning::owners_only;
use super::{Api, ApiError, Body, Caller, data, success, text_field};
use crate::control::audit::Kind;
use crate::control::identity::sso::oidc::OidcSettings;
use crate::control::identity::sso::saml::{self, SamlSettings};
use crate::control::identity::sso::{self, ClaimMap};
use crate::control::policy::{Action, Role};
use crate::control::store::sso::{self as store, ConnectionRow};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/identity/sso-connections", get(list).post(create))
        .route(
            "/identity/sso-connections/{id}",
            get(one).patch(update).delete(remove),
        )
        .route("/identity/sso-connections/{id}/test", post(test))
        .route(
            "/identity/sso-connections/{id}/tests/{testId}",
            get(test_result),
        )
}

/// A connection as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Id (`sso_…`).
    id: String,
    /// Shown on the sign-in page.
    name: String,
    /// `saml` or `oidc`.
    kind: String,
    /// Off: nobody signs in through it (tests still run).
    enabled: bool,
    /// The role of a person it creates (never `owner`).
    default_role: String,
    /// OpenID Connect settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc: Option<OidcSettings>,
    /// SAML settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    saml: Option<SamlSettings>,
    /// Which attribute or claim carries what.
    claims: ClaimMap,
    /// An OIDC client secret is set (it is never shown).
    has_client_secret: bool,
    /// OpenID Connect: register this at the identity provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<String>,
    /// SAML: this service provider, to register at the identity provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    service_provider: Option<ServiceProvider>,
    /// Created.
    created_at: DateTime<Utc>,
    /// Last changed.
    updated_at: DateTime<Utc>,
}

/// What a SAML identity provider is told of Sluice.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProvider {
    /// The entity id (the Audience of assertions).
    entity_id: String,
    /// Where the SP metadata is (the entity id itself).
    metadata_url: String,
    /// The assertion consumer service (HTTP-POST).
    acs_url: String,
    /// The NameID format asked for.
    name_id_format: String,
}

/// `{"ssoConnection": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionOne {
    /// The connection.
    sso_connection: Connection,
}

/// `{"ssoConnections": […]}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionList {
    /// The workspace's connections.
    sso_connections: Vec<Connection>,
}

/// A test sign-in started.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestStarted {
    /// Open it as the person to try.
    url: String,
    /// Read the result at `…/tests/{testId}`.
    test_id: String,
}

/// What a test sign-in saw.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// The person came back.
    finished: bool,
    /// What the provider sent and how it maps (`null` until finished).
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    /// Kept until.
    expires_at: DateTime<Utc>,
}

fn view(api: &Api, row: &ConnectionRow) -> Result<Connection, ApiError> {
    Ok(Connection {
        id: row.id.clone(),
        name: row.name.clone(),
        kind: row.kind.clone(),
        enabled: row.enabled,
        default_role: row.default_role.name().into(),
        oidc: row
            .settings
            .get("oidc")
            .map(|o| serde_json::from_value(o.clone()))
            .transpose()
            .map_err(|_| ApiError::Internal)?,
        saml: row
            .settings
            .get("saml")
            .map(|o| serde_json::from_value(o.clone()))
            .transpose()
            .map_err(|_| ApiError::Internal)?,
        claims: sso::claim_map(row)?,
        has_client_secret: !row.secret.is_empty(),
        redirect_uri: (row.kind == "oidc").then(|| sso::oidc_redirect(&api.public_url)),
        service_provider: (row.kind == "saml").then(|| {
            let entity = saml::sp_entity_id(&api.public_url, &row.id);
            ServiceProvider {
                metadata_url: entity.clone(),
                entity_id: entity,
                acs_url: saml::acs_url(&api.public_url, &row.id),
                name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into(),
            }
        }),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// A connection to make, or what to change of one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wanted {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    default_role: Option<String>,
    #[serde(default)]
    oidc: Option<OidcSettings>,
    #[serde(default)]
    saml: Option<SamlInput>,
    /// '' removes it.
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    claims: Option<ClaimMap>,
}

/// SAML settings as given: the identity provider's metadata XML, or its fields (which
/// also override what the metadata says).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SamlInput {
    #[serde(default)]
    metadata_xml: Option<String>,
    #[serde(default)]
    idp_entity_id: Option<String>,
    #[serde(default)]
    sso_url: Option<String>,
    #[serde(default)]
    certificates: Option<Vec<String>>,
    #[serde(default)]
    allow_idp_initiated: Option<bool>,
    #[serde(default)]
    want_assertions_signed: Option<bool>,
}

/// The SAML settings `input` makes of `before` (none for a new connection).
fn checked_saml(input: &SamlInput, before: Option<SamlSettings>) -> Result<SamlSettings, ApiError> {
    let field = |e: saml::SamlError| ApiError::field("saml", e.to_string());
    let mut settings = match (&input.metadata_xml, before) {
        (Some(xml), before) => {
            let mut read = saml::from_metadata(xml).map_err(field)?;
            if let Some(before) = before {
                read.allow_idp_initiated = before.allow_idp_initiated;
                read.want_assertions_signed = before.want_assertions_signed;
            }
            read
        }
        (None, Some(before)) => before,
        (None, None) => SamlSettings {
            idp_entity_id: String::new(),
            sso_url: String::new(),
            certificates: Vec::new(),
            allow_idp_initiated: false,
            want_assertions_signed: false,
        },
    };
    if let Some(entity) = &input.idp_entity_id {
        settings.idp_entity_id.clone_from(entity);
    }
    if let Some(url) = &input.sso_url {
        settings.sso_url.clone_from(url);
    }
    if let Some(certificates) = &input.certificates {
        settings.certificates.clone_from(certificates);
    }
    if let Some(allow) = input.allow_idp_initiated {
        settings.allow_idp_initiated = allow;
    }
    if let Some(want) = input.want_assertions_signed {
        settings.want_assertions_signed = want;
    }
    saml::checked(&settings).map_err(field)
}

fn checked_oidc(settings: &OidcSettings) -> Result<OidcSettings, ApiError> {
    let issuer = settings.issuer.trim().trim_end_matches('/').to_owned();
    let parsed = reqwest::Url::parse(&issuer)
        .map_err(|e| ApiError::field("oidc.issuer", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || issuer.len() > 2048
    {
        return Err(ApiError::field(
            "oidc.issuer",
            "an http(s) URL without query or fragment, at most 2048 bytes",
        ));
    }
    let client_id = text_field("oidc.clientId", &settings.client_id, 512)?;
    if settings.scopes.len() > 20
        || settings.scopes.iter().any(|s| {
            s.is_empty()
                || s.len() > 100
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        })
    {
        return Err(ApiError::field(
            "oidc.scopes",
            "at most 20 scopes of printable ASCII without quotes or backslashes",
        ));
    }
    Ok(OidcSettings {
        issuer,
        client_id,
        scopes: settings.scopes.clone(),
    })
}

fn checked_claims(map: &ClaimMap) -> Result<ClaimMap, ApiError> {
    let name = |field: &str, v: &str| text_field(&format!("claims.{field}"), v, 256);
    Ok(ClaimMap {
        email: name("email", &map.email)?,
        first_name: name("firstName", &map.first_name)?,
        last_name: name("lastName", &map.last_name)?,
        groups: map
            .groups
            .as_deref()
            .map(|g| name("groups", g))
            .transpose()?,
        role: map.role.as_deref().map(|r| name("role", r)).transpose()?,
    })
}

fn checked_role(role: &str) -> Result<Role, ApiError> {
    match Role::parse(role) {
        Some(Role::Owner) => Err(ApiError::field(
            "defaultRole",
            "an identity provider never makes owners: admin, member or read_only",
        )),
        Some(role) => Ok(role),
        None => Err(ApiError::field("defaultRole", "admin, member or read_only")),
    }
}

/// A connection's protocol settings, checked.
enum Protocol {
    Oidc(OidcSettings),
    Saml(SamlSettings),
}

/// `settings` of a row: `{"oidc" or "saml": …, "claims": …}`.
fn settings(protocol: &Protocol, claims: &ClaimMap) -> Value {
    match protocol {
        Protocol::Oidc(oidc) => json!({"oidc": oidc, "claims": claims}),
        Protocol::Saml(saml) => json!({"saml": saml, "claims": claims}),
    }
}

fn redacted(row: &ConnectionRow) -> Value {
    json!({"name": row.name, "kind": row.kind, "enabled": row.enabled,
        "defaultRole": row.default_role.name(), "settings": row.settings,
        "hasClientSecret": !row.secret.is_empty()})
}

/// A client secret sealed for connection `id` of `kind` ('' for none; SAML has none).
fn sealed_secret(api: &Api, id: &str, kind: &str, secret: &str) -> Result<String, ApiError> {
    if secret.is_empty() {
        return Ok(String::new());
    }
    if kind == "saml" {
        return Err(ApiError::field(
            "clientSecret",
            "a SAML connection has no client secret",
        ));
    }
    if secret.len() > 2048 {
        return Err(ApiError::field("clientSecret", "at most 2048 bytes"));
    }
    api.store
        .key()
        .seal(secret, &sso::secret_context(id))
        .map_err(|_| ApiError::Internal)
}

#[utoipa::path(
    get,
    path = "/api/v1/identity/sso-connections",
    tag = "Identity",
    responses((status = 200, description = "The workspace's single sign-on connections.", body = super::wire::Data<ConnectionList>))
)]
async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = store::list(&mut conn, &caller.workspace.id).await?;
    let connections = rows
        .iter()
        .map(|r| view(&api, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(data(ConnectionList {
        sso_connections: connections,
    }))
}

async fn load(api: &Api, caller: &Caller, id: &str) -> Result<ConnectionRow, ApiError> {
    let mut conn = api.store.read().await?;
    store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("ssoConnection", id))
}

#[utoipa::path(
    get,
    path = "/api/v1/identity/sso-connections/{id}",
    tag = "Identity",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, description = "A single sign-on connection.", body = super::wire::Data<ConnectionOne>))
)]
async fn one(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(id): super::Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let row = load(&api, &caller, &id).await?;
    Ok(data(ConnectionOne {
        sso_connection: view(&api, &row)?,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/identity/sso-connections",
    tag = "Identity",
    request_body = Wanted,
    responses((status = 200, description = "The connection made (owners).", body = super::wire::Data<ConnectionOne>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<Wanted>,
) -> Result<Response, ApiError> {
    // Who may, before what: a body is read only for those who may make a connection.
    owners_only(&api, &caller).await?;
    let name = text_field("name", body.name.as_deref().unwrap_or_default(), 100)?;
    let (kind, protocol) = match body.kind.as_deref() {
        Some("oidc") => {
            let Some(oidc) = body.oidc.as_ref() else {
                return Err(ApiError::field("oidc", "issuer and clientId are required"));
            };
            ("oidc", Protocol::Oidc(checked_oidc(oidc)?))
        }
        Some("saml") => {
            let Some(input) = body.saml.as_ref() else {
                return Err(ApiError::field(
                    "saml",
                    "metadataXml, or idpEntityId, ssoUrl and certificates",
                ));
            };
            ("saml", Protocol::Saml(checked_saml(input, None)?))
        }
        _ => return Err(ApiError::field("kind", "oidc or saml")),
    };
    let claims = checked_claims(&body.claims.unwrap_or_else(|| ClaimMap::default_for(kind)))?;
    let role = checked_role(body.default_role.as_deref().unwrap_or("read_only"))?;
    let id = store::connection_id();
    let row = ConnectionRow {
        secret: sealed_secret(
            &api,
            &id,
            kind,
            body.client_secret.as_deref().unwrap_or_default(),
        )?,
        id,
        workspace_id: caller.workspace.id.clone(),
        kind: kind.into(),
        name,
        enabled: body.enabled.unwrap_or(true),
        default_role: role,
        settings: settings(&protocol, &claims),
        created_at: caller.now,
        updated_at: caller.now,
    };
    let mut change = api.store.change().await?;
    store::put(change.conn(), &row).await?;
    change
        .record(caller.draft(
            Kind::SsoConnectionCreate,
            "sso_connection",
            &row.id,
            None,
            Some(redacted(&row)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ConnectionOne {
        sso_connection: view(&api, &row)?,
    }))
}

#[utoipa::path(
    patch,
    path = "/api/v1/identity/sso-connections/{id}",
    tag = "Identity",
    params(("id" = String, Path, description = "Connection id")),
    request_body = Wanted,
    responses((status = 200, description = "The connection changed (owners; its kind never changes).", body = super::wire::Data<ConnectionOne>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(id): super::Path<String>,
    Body(body): Body<Wanted>,
) -> Result<Response, ApiError> {
    owners_only(&api, &caller).await?;
    let before = load(&api, &caller, &id).await?;
    if body.kind.as_deref().is_some_and(|k| k != before.kind) {
        return Err(ApiError::field(
            "kind",
            "a connection's kind does not change",
        ));
    }
    let mut row = before.clone();
    if let Some(name) = &body.name {
        row.name = text_field("name", name, 100)?;
    }
    if let Some(enabled) = body.enabled {
        row.enabled = enabled;
    }
    if let Some(role) = &body.default_role {
        row.default_role = checked_role(role)?;
    }
    let stored = |name: &str| before.settings.get(name).cloned().unwrap_or_default();
    let protocol = match (before.kind.as_str(), &body.oidc, &body.saml) {
        ("oidc", _, Some(_)) | ("saml", Some(_), _) => {
            return Err(ApiError::field(
                "kind",
                "settings of the other kind: a connection's kind does not change",
            ));
        }
        ("oidc", Some(o), _) => Protocol::Oidc(checked_oidc(o)?),
        ("oidc", None, _) => {
            Protocol::Oidc(serde_json::from_value(stored("oidc")).map_err(|_| ApiError::Internal)?)
        }
        (_, _, input) => {
            let kept: SamlSettings =
                serde_json::from_value(stored("saml")).map_err(|_| ApiError::Internal)?;
            match input {
                Some(input) => Protocol::Saml(checked_saml(input, Some(kept))?),
                None => Protocol::Saml(kept),
            }
        }
    };
    let claims = match &body.claims {
        Some(c) => checked_claims(c)?,
        None => sso::claim_map(&before)?,
    };
    row.settings = settings(&protocol, &claims);
    if let Some(secret) = &body.client_secret {
        row.secret = sealed_secret(&api, &id, &row.kind, secret)?;
    }
    row.updated_at = caller.now;
    let mut change = api.store.change().await?;
    if before.enabled && !row.enabled {
        last_way_in(&mut change, &caller, &id).await?;
    }
    store::put(change.conn(), &row).await?;
    change
        .record(caller.draft(
            Kind::SsoConnectionUpdate,
            "sso_connection",
            &id,
            Some(redacted(&before)),
            Some(redacted(&row)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ConnectionOne {
        sso_connection: view(&api, &row)?,
    }))
}

/// While SSO is required, the last enabled connection stays (or nobody but the
/// break-glass owners could sign in).
async fn last_way_in(
    change: &mut crate::control::store::Change,
    caller: &Caller,
    id: &str,
) -> Result<(), ApiError> {
    if !caller.workspace.sign_in.require_sso {
        return Ok(());
    }
    let others = store::list(change.conn(), &caller.workspace.id)
        .await?
        .into_iter()
        .filter(|c| c.enabled && c.id != id)
        .count();
    if others == 0 {
        return Err(ApiError::Conflict(
            "the workspace requires SSO and this is its last enabled connection: \
             turn requireSso off first"
                .into(),
        ));
    }
    Ok(())
}

#[utoipa::path(
    delete,
    path = "/api/v1/identity/sso-connections/{id}",
    tag = "Identity",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, description = "The connection deleted (owners).", body = super::wire::Data<super::wire::Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(id): super::Path<String>,
) -> Result<Response, ApiError> {
    owners_only(&api, &caller).await?;
    let before = load(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    last_way_in(&mut change, &caller, &id).await?;
    store::delete(change.conn(), &caller.workspace.id, &id).await?;
    change
        .record(caller.draft(
            Kind::SsoConnectionDelete,
            "sso_connection",
            &id,
            Some(redacted(&before)),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}

#[utoipa::path(
    post,
    path = "/api/v1/identity/sso-connections/{id}/test",
    tag = "Identity",
    params(("id" = String, Path, description = "Connection id")),
    responses((status = 200, description = "A test sign-in to open as the person to try (owners); nobody is signed in or made.", body = super::wire::Data<TestStarted>))
)]
async fn test(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(id): super::Path<String>,
) -> Result<Response, ApiError> {
    owners_only(&api, &caller).await?;
    let row = load(&api, &caller, &id).await?;
    let begun = sso::begin(&api, &row, ("", ""), "/".into(), true, caller.now).await?;
    let mut change = api.store.change().await?;
    change
        .record(caller.draft(
            Kind::SsoConnectionTest,
            "sso_connection",
            &id,
            None,
            Some(json!({"testId": begun.flow})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(TestStarted {
        url: begun.url,
        test_id: begun.flow,
    }))
}

#[derive(Debug, Deserialize)]
struct TestPath {
    id: String,
    #[serde(rename = "testId")]
    test_id: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/identity/sso-connections/{id}/tests/{testId}",
    tag = "Identity",
    params(("id" = String, Path, description = "Connection id"), ("testId" = String, Path, description = "Test id")),
    responses((status = 200, description = "What a test sign-in saw (owners).", body = super::wire::Data<TestResult>))
)]
async fn test_result(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(path): super::Path<TestPath>,
) -> Result<Response, ApiError> {
    owners_only(&api, &caller).await?;
    let row = load(&api, &caller, &path.id).await?;
    let mut conn = api.store.read().await?;
    let flow = store::test_flow(&mut conn, &row.id, &path.test_id)
        .await?
        .ok_or_else(|| ApiError::missing("test", &path.test_id))?;
    Ok(data(TestResult {
        finished: flow.result.is_some(),
        result: flow.result,
        expires_at: flow.expires_at,
    }))
}
