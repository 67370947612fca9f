//! SCIM 2.0 provisioning (RFC 7643/7644) at `/scim/v2`: an identity provider (Okta,
//! Entra ID, Google Workspace…) creates, updates, deactivates and deletes the
//! workspace's members and groups with a SCIM token of the workspace.
//!
//! A request goes: address budget → [`Provisioner`] (Bearer `slc_scim_…` → its
//! workspace) → handler: read the resources as JSON, filter/patch them in memory,
//! write the result in one store change with its audit events, answer
//! `application/scim+json`. Every failure is a [`ScimError`] in the RFC's envelope.
//!
//! What a SCIM token may do is fixed: provision people and groups of its workspace. It
//! never acts as a person and never reaches the `/api/v1` API. People it creates are
//! `read_only` with nothing else; roles come from group mappings (see
//! [`crate::control::store::scim::Mapping`]) and grants given to groups.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod groups;
pub mod patch;
pub mod resource;
pub mod users;

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::control::api::{Api, client, client_key};
use crate::control::audit::{Actor, Draft, Kind};
use crate::control::store::scim as scim_store;
use crate::control::store::workspaces::{self, Workspace};
use crate::control::token;
pub use error::{SCIM_JSON, ScimError};

/// Requests per minute one client address may make to `/scim/v2` (identity providers
/// sync in bursts; Okta's own limit for an app is of this order).
pub const PER_ADDRESS_PER_MINUTE: u32 = 1200;
/// Largest SCIM request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest page a list answers (`filter.maxResults` in the ServiceProviderConfig).
pub const MAX_RESULTS: usize = 200;
/// How stale a SCIM token's recorded last use may get before a request updates it.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// The `/scim/v2` request budget per client address.
#[derive(Debug)]
pub struct ScimLimits(Keyed);

impl Default for ScimLimits {
    fn default() -> Self {
        let quota =
            Quota::per_minute(NonZeroU32::new(PER_ADDRESS_PER_MINUTE).unwrap_or(NonZeroU32::MIN));
        Self(RateLimiter::keyed(quota))
    }
}

impl ScimLimits {
    /// Drops budgets that have refilled.
    pub fn sweep(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

/// `/scim/v2/*`.
pub fn routes() -> Router<Arc<Api>> {
    let v2 = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{name}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .route(
            "/.search",
            post(|State(api), who, body| search(api, who, body, Searched::Both)),
        )
        .route("/Users", get(users::list).post(users::create))
        .route(
            "/Users/.search",
            post(|State(api), who, body| search(api, who, body, Searched::Users)),
        )
        .route(
            "/Users/{id}",
            get(users::one)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(groups::list).post(groups::create))
        .route(
            "/Groups/.search",
            post(|State(api), who, body| search(api, who, body, Searched::Groups)),
        )
        .route(
            "/Groups/{id}",
            get(groups::one)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .fallback(|| async { ScimError::NotFound("endpoint".into()) })
        .method_not_allowed_fallback(|| async { ScimError::MethodNotAllowed });
    Router::new().nest("/scim/v2", v2)
}

/// The identity provider behind a request: its SCIM token and the workspace it
/// provisions.
#[derive(Debug, Clone)]
pub struct Provisioner {
    /// The SCIM token's id (the audit's actor).
    pub token: String,
    /// Its workspace.
    pub workspace: Workspace,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request time.
    pub now: DateTime<Utc>,
    /// `…/scim/v2`, for `meta.location`.
    pub base: String,
}

impl Provisioner {
    /// An audit event by this identity provider.
    pub fn draft(
        &self,
        kind: Kind,
        resource_type: &str,
        resource_id: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Draft {
        Draft {
            time: self.now,
            actor: Actor::Scim {
                token: self.token.clone(),
            },
            action: kind.name().into_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
            before,
            after,
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

impl FromRequestParts<Arc<Api>> for Provisioner {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ScimError> {
        api.sweep_buckets();
        let addr = client_key(parts);
        if api.scim_limits.0.check_key(&addr).is_err() {
            return Err(ScimError::TooMany);
        }
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim())
            })
            .ok_or(ScimError::Unauthorized)?;
        let digest = token::parse_scim(presented).map_err(|_| ScimError::Unauthorized)?;
        let now = Utc::now();
        let mut conn = api.store.read().await?;
        let row = scim_store::token_by_digest(&mut conn, &digest.to_hex())
            .await?
            .filter(|row| row.revoked_at.is_none())
            .ok_or(ScimError::Unauthorized)?;
        let workspace = workspaces::get(&mut conn, &row.workspace_id)
            .await?
            .ok_or(ScimError::Unauthorized)?;
        drop(conn);
        if row.last_used_at.is_none_or(|t| now - t > TOUCH_EVERY) {
            let mut conn = api.store.read().await?;
            scim_store::touch_token(&mut conn, &row.id, now).await?;
        }
        let (ip, user_agent) = client(parts);
        Ok(Self {
            token: row.id,
            workspace,
            ip,
            user_agent,
            now,
            base: format!("{}/scim/v2", api.public_url.trim_end_matches('/')),
        })
    }
}

/// What a `POST …/.search` covers.
#[derive(Debug, Clone, Copy)]
enum Searched {
    Users,
    Groups,
    Both,
}

/// `POST /.search`, `/Users/.search`, `/Groups/.search`: a list asked in the body (RFC
/// 7644 §3.4.3); at the root, Users then Groups.
async fn search(
    api: Arc<Api>,
    who: Provisioner,
    body: axum::body::Body,
    searched: Searched,
) -> Result<Response, ScimError> {
    let query = ListQuery::of_search(&read_json(body).await?)?;
    let mut conn = api.store.read().await?;
    let mut all = Vec::new();
    if matches!(searched, Searched::Users | Searched::Both) {
        all.extend(users::everyone(&mut conn, &who).await?);
    }
    if matches!(searched, Searched::Groups | Searched::Both) {
        all.extend(groups::everyone(&mut conn, &who).await?);
    }
    list_answer(&query, all)
}

/// A SCIM JSON answer with `status`.
pub fn answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, SCIM_JSON)],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

/// `201 Created` with the resource and its `Location`.
pub fn created(resource: Map<String, Value>) -> Response {
    let location = resource
        .get("meta")
        .and_then(|m| m.get("location"))
        .and_then(Value::as_str)
        .and_then(|l| HeaderValue::from_str(l).ok());
    let mut response = answer(StatusCode::CREATED, &Value::Object(resource));
    if let Some(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// Reads a request body as JSON (any content type: identity providers send
/// `application/scim+json` or `application/json`), bounded.
pub async fn read_json(body: axum::body::Body) -> Result<Value, ScimError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ScimError::TooLarge(MAX_BODY_BYTES))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::InvalidSyntax(format!("body is not JSON: {e}")))
}

/// `?filter=&startIndex=&count=&attributes=&excludedAttributes=`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// A filter expression.
    pub filter: Option<String>,
    /// 1-based index of the first result.
    pub start_index: Option<String>,
    /// Page size.
    pub count: Option<String>,
    /// Only these attributes.
    pub attributes: Option<String>,
    /// All but these attributes.
    pub excluded_attributes: Option<String>,
}

impl ListQuery {
    /// The query of a `POST …/.search` body (RFC 7644 §3.4.3): the same parameters,
    /// attribute lists as arrays.
    pub fn of_search(body: &Value) -> Result<Self, ScimError> {
        let Value::Object(body) = body else {
            return Err(ScimError::InvalidSyntax(
                "a search request is a JSON object".into(),
            ));
        };
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match resource::get(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(ScimError::InvalidValue(format!(
                    "{name} is a string or number"
                ))),
            }
        };
        let list = |name: &str| -> Result<Option<String>, ScimError> {
            match resource::get(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| ScimError::InvalidValue(format!("{name} lists strings")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| Some(v.join(","))),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::InvalidValue(format!(
                    "{name} is an array of strings"
                ))),
            }
        };
        Ok(Self {
            filter: text("filter")?,
            start_index: text("startIndex")?,
            count: text("count")?,
            attributes: list("attributes")?,
            excluded_attributes: list("excludedAttributes")?,
        })
    }
}

/// `?attributes=&excludedAttributes=` on a single resource.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneQuery {
    /// Only these attributes.
    pub attributes: Option<String>,
    /// All but these attributes.
    pub excluded_attributes: Option<String>,
}

impl OneQuery {
    /// `resource` as asked.
    pub fn project(&self, resource: Map<String, Value>) -> Map<String, Value> {
        resource::project(
            resource,
            &resource::attribute_list(self.attributes.as_deref()),
            &resource::attribute_list(self.excluded_attributes.as_deref()),
        )
    }
}

/// A 1-based index or count parameter: numbers only (RFC 7644 §3.4.2.4 says to read a
/// start below 1 as 1 and a negative count as 0).
fn number(param: Option<&str>, name: &str) -> Result<Option<i64>, ScimError> {
    match param.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::InvalidValue(format!("{name} is an integer, not {text:?}"))),
    }
}

/// The list answer for `query` over `resources` (already in a stable order).
pub fn list_answer(
    query: &ListQuery,
    resources: Vec<Map<String, Value>>,
) -> Result<Response, ScimError> {
    let start = number(query.start_index.as_deref(), "startIndex")?
        .unwrap_or(1)
        .max(1);
    let count = number(query.count.as_deref(), "count")?
        .unwrap_or(MAX_RESULTS as i64)
        .clamp(0, MAX_RESULTS as i64);
    let filter = query.filter.as_deref().map(filter::parse).transpose()?;
    let mut matched = Vec::new();
    for resource in resources {
        if let Some(filter) = &filter
            && !filter::matches(filter, &resource)?
        {
            continue;
        }
        matched.push(resource);
    }
    let total = matched.len();
    let attributes = resource::attribute_list(query.attributes.as_deref());
    let excluded = resource::attribute_list(query.excluded_attributes.as_deref());
    let page: Vec<Value> = matched
        .into_iter()
        .skip(usize::try_from(start - 1).unwrap_or(usize::MAX))
        .take(usize::try_from(count).unwrap_or(0))
        .map(|r| Value::Object(resource::project(r, &attributes, &excluded)))
        .collect();
    Ok(answer(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    ))
}

/// RFC 3339 with milliseconds, as SCIM's `dateTime`.
pub fn date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `meta` of a resource.
pub fn meta(
    kind: &str,
    base: &str,
    id: &str,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
) -> Value {
    let plural = if kind == "User" { "Users" } else { "Groups" };
    json!({
        "resourceType": kind,
        "created": date(created),
        "lastModified": date(modified.max(created)),
        "location": format!("{base}/{plural}/{id}"),
    })
}
