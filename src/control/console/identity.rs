//! `/identity`: single sign-on connections (adding an OpenID Connect or SAML one, a
//! "test connection" sign-in that signs nobody in, turning one off), the sign-in
//! policy (require SSO), SCIM tokens (shown once), and identity-provider group
//! mappings.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::Form;
use super::sources::encode;
use super::team::about_the_form;
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, inner, render};
use super::{Secret, shown_once};
use crate::control::policy::Action;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/identity", get(read))
        .route("/identity/connections", post(add_connection))
        .route("/identity/connections/{id}/enabled", post(set_enabled))
        .route("/identity/connections/{id}/test", post(test))
        .route("/identity/connections/{id}/tests/{test}", get(test_result))
        .route("/identity/sign-in", post(set_policy))
        .route("/identity/scim-tokens", post(new_scim_token))
        .route("/identity/scim-tokens/{id}/revoke", post(revoke_scim_token))
        .route("/identity/group-mappings", post(map_group))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceProvider {
    metadata_url: String,
    acs_url: String,
}

/// A connection as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connection {
    id: String,
    name: String,
    kind: String,
    enabled: bool,
    default_role: String,
    redirect_uri: Option<String>,
    service_provider: Option<ServiceProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connections {
    sso_connections: Vec<Connection>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    session_idle_minutes: u32,
    session_absolute_hours: u32,
    require_sso: bool,
    break_glass_owners: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyOne {
    sign_in: Policy,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimToken {
    id: String,
    name: String,
    display: String,
    created_at: When,
    revoked_at: Option<When>,
    last_used_at: Option<When>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimTokens {
    scim_tokens: Vec<ScimToken>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mapping {
    idp_group: String,
    role: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mappings {
    group_mappings: Vec<Mapping>,
}

#[derive(Template)]
#[template(path = "console/identity.html")]
struct IdentityPage {
    frame: Frame,
    connections: Vec<Connection>,
    policy: Policy,
    scim_tokens: Vec<ScimToken>,
    mappings: Vec<Mapping>,
    /// Owners change connections, tokens and the policy's SSO requirement.
    may_configure: bool,
    may_manage: bool,
    /// A SCIM token made just now: shown on this answer only.
    secret: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/sso_test.html")]
struct TestPage {
    frame: Frame,
    /// Where the person to try signs in (a test started), or what the test saw.
    url: Option<String>,
    result_path: String,
    finished: bool,
    result: String,
}

async fn page(
    console: &Console,
    parts: &Parts,
    secret: Option<String>,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let connections: Connections = api.get("/api/v1/identity/sso-connections").await?;
    let policy: PolicyOne = api.get("/api/v1/identity/sign-in").await?;
    let scim: ScimTokens = api.get("/api/v1/identity/scim-tokens").await?;
    let mappings: Mappings = api.get("/api/v1/identity/group-mappings").await?;
    Ok(render(
        super::form_status(error.as_deref()),
        &IdentityPage {
            frame: viewer.frame("Sign-in and provisioning", Section::Identity, parts),
            connections: connections.sso_connections,
            policy: policy.sign_in,
            scim_tokens: scim.scim_tokens,
            mappings: mappings.group_mappings,
            may_configure: viewer.may_here(Action::TransferOwnership),
            may_manage: viewer.may_here(Action::ManageMembers),
            secret,
            error,
        },
    ))
}

/// `GET /identity`.
async fn read(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// One change from this page's forms: `method path body`, then back with `outcome`, or
/// the page again with what was wrong in the form.
async fn change(
    console: &Console,
    parts: &Parts,
    form: &Form,
    (method, path, body): (Method, String, Option<Value>),
    outcome: Outcome,
) -> Result<Response, Refusal> {
    let again = |why| page(console, parts, None, Some(why));
    super::submit(
        console,
        parts,
        form,
        super::Change::new(method, path, body),
        ("/identity", outcome),
        Some(again),
    )
    .await
}

/// `POST /identity/connections`: an OpenID Connect connection (issuer, client id and
/// secret) or a SAML one (the provider's metadata XML).
async fn add_connection(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        // Off until tested: a wrong issuer must not let anyone in meanwhile.
        let mut request =
            json!({"name": form.get("name"), "kind": form.get("kind"), "enabled": false});
        if let Some(role) = form.some("default_role") {
            request["defaultRole"] = role.into();
        }
        if form.get("kind") == "saml" {
            request["saml"] = json!({"metadataXml": form.raw("metadata_xml")});
        } else {
            request["oidc"] =
                json!({"issuer": form.get("issuer"), "clientId": form.get("client_id")});
            if let Some(secret) = form.some("client_secret") {
                request["clientSecret"] = secret.into();
            }
        }
        change(
            &console,
            &parts,
            &form,
            (
                Method::POST,
                "/api/v1/identity/sso-connections".into(),
                Some(request),
            ),
            Outcome::ConnectionAdded,
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /identity/connections/{id}/enabled`: `enabled=true|false`.
async fn set_enabled(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let enabled = form.get("enabled") == "true";
        change(
            &console,
            &parts,
            &form,
            (
                Method::PATCH,
                format!("/api/v1/identity/sso-connections/{}", encode(&id)),
                Some(json!({"enabled": enabled})),
            ),
            Outcome::ConnectionChanged,
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /identity/connections/{id}/test`: a test sign-in: the page links to the
/// provider, and to what the test saw once it is done. Nobody is signed in or made.
async fn test(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let started = async {
        let form = Form::read(&body)?;
        let viewer = Viewer::of(&console, &parts).await?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                &format!("/api/v1/identity/sso-connections/{}/test", encode(&id)),
                None,
            )
            .await?;
        let text = |k: &str| {
            answer
                .data
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &TestPage {
                frame: viewer.frame("Test a sign-in connection", Section::Identity, &parts),
                url: Some(text("url")),
                result_path: format!(
                    "/identity/connections/{}/tests/{}",
                    encode(&id),
                    encode(&text("testId"))
                ),
                finished: false,
                result: String::new(),
            },
        ))
    };
    started.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /identity/connections/{id}/tests/{test}`: what a test sign-in saw.
async fn test_result(
    State(console): State<Console>,
    Path((id, test)): Path<(String, String)>,
    parts: Parts,
) -> Response {
    let shown = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let path = format!(
            "/identity/connections/{}/tests/{}",
            encode(&id),
            encode(&test)
        );
        let answer: Value = inner(&console, &parts)
            .get(&format!(
                "/api/v1/identity/sso-connections/{}/tests/{}",
                encode(&id),
                encode(&test)
            ))
            .await?;
        let finished = answer
            .get("finished")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let result = answer
            .get("result")
            .filter(|r| !r.is_null())
            .map(|r| serde_json::to_string_pretty(r).unwrap_or_default())
            .unwrap_or_default();
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &TestPage {
                frame: viewer.frame("Test a sign-in connection", Section::Identity, &parts),
                url: None,
                result_path: path,
                finished,
                result,
            },
        ))
    };
    shown.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /identity/sign-in`: `require_sso=true|false`.
async fn set_policy(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let require = form.get("require_sso") == "true";
        change(
            &console,
            &parts,
            &form,
            (
                Method::PATCH,
                "/api/v1/identity/sign-in".into(),
                Some(json!({"requireSso": require})),
            ),
            Outcome::PolicyChanged,
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

const NEW_SCIM_TOKEN: Secret = Secret {
    title: "New SCIM token",
    note: "Give it to your identity provider's SCIM settings now: Sluice keeps only its digest and will not show it again.",
    element: "scim-secret",
};

/// `POST /identity/scim-tokens`: `name`; the secret shown once.
async fn new_scim_token(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                "/api/v1/identity/scim-tokens",
                Some(json!({"name": form.get("name")})),
            )
            .await;
        match answer {
            Ok(answer) => {
                let secret = answer
                    .data
                    .get("secret")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                shown_once(
                    page(&console, &parts, secret.clone(), None).await,
                    NEW_SCIM_TOKEN,
                    secret,
                    "/identity",
                )
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => page(&console, &parts, None, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /identity/scim-tokens/{id}/revoke`.
async fn revoke_scim_token(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        change(
            &console,
            &parts,
            &form,
            (
                Method::DELETE,
                format!("/api/v1/identity/scim-tokens/{}", encode(&id)),
                None,
            ),
            Outcome::TokenRevoked,
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /identity/group-mappings`: `group` and `role` (`none` removes the mapping).
async fn map_group(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let path = format!(
            "/api/v1/identity/group-mappings/{}",
            encode(form.get("group"))
        );
        let request = if form.get("role") == "none" {
            (Method::DELETE, path, None)
        } else {
            (Method::PUT, path, Some(json!({"role": form.get("role")})))
        };
        change(&console, &parts, &form, request, Outcome::MappingChanged).await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}
