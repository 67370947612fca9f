//! `/sources/{id}/function`: a source function on a source. Its deployed version runs at
//! `POST /v1/functions/{endpoint id}` on the data listener, behind the endpoint's own
//! secret (shown once, when made or rotated); the events it makes are the source's.
//! Changing it changes what the source takes in: it needs the "Create Functions"
//! permission and the right to edit the source (a hidden source answers as a missing
//! one); on a protected source, it is made at once only by who may change production at
//! once, and kept for review (`202`, [`super::protected`]) for the others.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::function_instances::{Access, checked_settings, guard_protected, shown_settings};
use super::wire::{Data, Status, document};
use super::{Api, ApiError, Body, Caller, Path, data, success};
use crate::catalog::KeyDigest;
use crate::control::audit::Kind;
use crate::control::policy::{Action, ResourceRef};
use crate::control::store::functions::{self as store, FunctionKind, SourceFunctionRow};
use crate::control::store::sources::SourceRow;
use crate::control::store::{new_id, resource_changes};
use crate::control::token;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/sources/{id}/function", get(read).put(put).delete(remove))
        .route("/sources/{id}/function/secret", post(rotate))
}

/// A source function on a source.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceFunction {
    /// The endpoint's id.
    pub id: String,
    /// The function.
    pub function_id: String,
    /// The source its events belong to.
    pub source_id: String,
    /// Where webhooks are sent, on the data listener: `/v1/functions/{id}`.
    pub path: String,
    /// A disabled endpoint answers 404.
    pub enabled: bool,
    /// The values of settings that are not sensitive.
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// The sensitive settings that have a value, each shown as `<redacted>`.
    #[schema(value_type = Object)]
    pub encrypted_settings: Map<String, Value>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

/// `{"sourceFunction": …}`, with the endpoint's secret when it was just made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceFunctionOne {
    /// The source function.
    pub source_function: SourceFunction,
    /// The endpoint's secret: only in the answer that makes it (a request presents it as
    /// `Authorization: Bearer <secret>` or `?token=<secret>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A source function for the source (replacing the one it has: the secret is kept).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutSourceFunction {
    /// A `SOURCE` function.
    #[schema(max_length = 200)]
    function_id: String,
    /// Default `true`.
    enabled: Option<bool>,
    /// A value for each setting the function declares (`{}` for none); a sensitive one
    /// given as `<redacted>` keeps its value.
    #[schema(value_type = Object)]
    settings: Map<String, Value>,
}

fn wire(row: &SourceFunctionRow, declared: &[store::SettingDef]) -> SourceFunction {
    let (settings, encrypted_settings) = shown_settings(&row.settings, declared);
    SourceFunction {
        id: row.id.clone(),
        function_id: row.function_id.clone(),
        source_id: row.source_id.clone(),
        path: format!("/v1/functions/{}", row.id),
        enabled: row.enabled,
        settings,
        encrypted_settings,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// The source, as the caller may see (to change: and edit) it; a protected one changed
/// only by who may change production at once (unless production protection weighs the
/// change: it proposes what may not be made at once).
async fn source(
    api: &Api,
    caller: &Caller,
    id: &str,
    access: Access,
) -> Result<SourceRow, ApiError> {
    if access == Access::Read {
        return super::sources::visible(api, caller, id, Action::ViewSource).await;
    }
    api.allow_workspace(caller, Action::CreateFunctions).await?;
    let row = super::sources::visible(api, caller, id, Action::EditSource).await?;
    if access == Access::Weigh {
        return Ok(row);
    }
    let mut conn = api.store.read().await?;
    let labels = resource_changes::protected_labels(&mut conn, &caller.workspace.id).await?;
    drop(conn);
    guard_protected(
        api,
        caller,
        ResourceRef::Source(row.as_ref()),
        std::slice::from_ref(&row),
        &labels,
    )
    .await?;
    Ok(row)
}

async fn current(
    api: &Api,
    caller: &Caller,
    source: &str,
) -> Result<Option<(SourceFunctionRow, store::FunctionRow)>, ApiError> {
    let mut conn = api.store.read().await?;
    let Some(row) =
        store::source_function_of(&mut conn, api.store.key(), &caller.workspace.id, source).await?
    else {
        return Ok(None);
    };
    let function = store::get(&mut conn, &caller.workspace.id, &row.function_id)
        .await?
        .ok_or_else(|| ApiError::missing("function", &row.function_id))?;
    Ok(Some((row, function)))
}

fn missing(source: &str) -> ApiError {
    ApiError::NotFound(format!("source {source:?} has no source function"))
}

/// A new endpoint secret and its digest.
fn new_secret() -> Result<(String, String), ApiError> {
    let secret = token::random_base62(40).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a source function's secret");
        ApiError::Internal
    })?;
    let digest = KeyDigest::of(&secret).to_hex();
    Ok((secret, digest))
}

/// The source's source function.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/function",
    tag = "Functions",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "The source's source function.", body = Data<SourceFunctionOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (row, function) = existing(&api, &caller, &id, Access::Read).await?;
    Ok(data(SourceFunctionOne {
        source_function: wire(&row, &function.settings),
        secret: None,
    }))
}

/// Put a source function on the source (its endpoint's secret is made the first time).
#[utoipa::path(
    put,
    path = "/api/v1/sources/{id}/function",
    tag = "Functions",
    params(("id" = String, Path, description = "Source id")),
    request_body = PutSourceFunction,
    responses((status = 200, description = "Put a source function on the source (its endpoint's secret is made the first time).", body = Data<SourceFunctionOne>))
)]
async fn put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PutSourceFunction>,
) -> Result<Response, ApiError> {
    let (before, function, row, secret) = planned(&api, &caller, &id, body, Access::Change).await?;
    let shown = wire(&row, &function.settings);
    let was = before
        .as_ref()
        .map(|(old, f)| document(&wire(old, &f.settings)))
        .transpose()?;
    save(
        &api,
        &caller,
        Kind::SourceFunctionPut,
        &row,
        was,
        shown,
        secret,
    )
    .await
}

/// What a put makes of the source's source function: as it was, the function, as it
/// will be, and a secret if it is new; checked as the call is.
async fn planned(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: PutSourceFunction,
    access: Access,
) -> Result<Planned, ApiError> {
    source(api, caller, id, access).await?;
    let mut conn = api.store.read().await?;
    let function = store::get(&mut conn, &caller.workspace.id, &body.function_id)
        .await?
        .ok_or_else(|| ApiError::missing("function", &body.function_id))?;
    drop(conn);
    if function.kind != FunctionKind::Source {
        return Err(ApiError::FieldConflict {
            message: format!(
                "function {:?} is an {} function, not a source function",
                function.id,
                function.kind.name()
            ),
            field: "functionId",
        });
    }
    let before = current(api, caller, id).await?;
    let kept = before
        .as_ref()
        .filter(|(row, _)| row.function_id == function.id)
        .map(|(row, _)| &row.settings);
    let settings = checked_settings(&function, body.settings, kept)?;
    let (secret, row) = match &before {
        Some((old, _)) => (
            None,
            SourceFunctionRow {
                function_id: function.id.clone(),
                enabled: body.enabled.unwrap_or(old.enabled),
                settings,
                updated_at: caller.now,
                ..old.clone()
            },
        ),
        None => {
            let (secret, digest) = new_secret()?;
            (
                Some(secret),
                SourceFunctionRow {
                    id: new_id("sfn_"),
                    function_id: function.id.clone(),
                    source_id: id.to_owned(),
                    enabled: body.enabled.unwrap_or(true),
                    settings,
                    secret_sha256: digest,
                    created_at: caller.now,
                    updated_at: caller.now,
                },
            )
        }
    };
    Ok((before, function, row, secret))
}

/// A put's plan: the endpoint as it was (with its function), the function put, the
/// endpoint as it will be, its new secret.
type Planned = (
    Option<(SourceFunctionRow, store::FunctionRow)>,
    store::FunctionRow,
    SourceFunctionRow,
    Option<String>,
);

/// A put of the source function on source `id` checked as its handler checks it, but
/// for production protection, which weighs it.
pub(super) async fn check_put(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: PutSourceFunction,
) -> Result<(String, Value), ApiError> {
    let (_, function, row, _) = planned(api, caller, id, body, Access::Weigh).await?;
    let shown = super::function_instances::readable_settings(&row.settings, &function.settings);
    Ok((function.id, shown))
}

/// A removal of source `id`'s source function, or a new secret for it, checked as its
/// handler checks it, but for production protection, which weighs it.
pub(super) async fn check_change(api: &Api, caller: &Caller, id: &str) -> Result<(), ApiError> {
    existing(api, caller, id, Access::Weigh).await.map(drop)
}

/// Source `id`'s source function and its function, the source as the caller may reach
/// it for `access`; a source without one answers 404.
async fn existing(
    api: &Api,
    caller: &Caller,
    id: &str,
    access: Access,
) -> Result<(SourceFunctionRow, store::FunctionRow), ApiError> {
    source(api, caller, id, access).await?;
    current(api, caller, id).await?.ok_or_else(|| missing(id))
}

/// Writes `row` with its audit event and answers with it (and a secret just made).
async fn save(
    api: &Api,
    caller: &Caller,
    kind: Kind,
    row: &SourceFunctionRow,
    was: Option<Value>,
    shown: SourceFunction,
    secret: Option<String>,
) -> Result<Response, ApiError> {
    let mut change = api.store.change().await?;
    store::put_source_function(change.conn(), api.store.key(), &caller.workspace.id, row).await?;
    change
        .record(caller.draft(kind, "source", &row.source_id, was, Some(document(&shown)?)))
        .await?;
    change.commit().await?;
    Ok(data(SourceFunctionOne {
        source_function: shown,
        secret,
    }))
}

/// Rotate the endpoint's secret (the old one stops working at once).
#[utoipa::path(
    post,
    path = "/api/v1/sources/{id}/function/secret",
    tag = "Functions",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "Rotate the endpoint's secret (the old one stops working at once).", body = Data<SourceFunctionOne>))
)]
async fn rotate(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (old, function) = existing(&api, &caller, &id, Access::Change).await?;
    let (secret, digest) = new_secret()?;
    let row = SourceFunctionRow {
        secret_sha256: digest,
        updated_at: caller.now,
        ..old
    };
    let shown = wire(&row, &function.settings);
    save(
        &api,
        &caller,
        Kind::SourceFunctionSecretRotate,
        &row,
        None,
        shown,
        Some(secret),
    )
    .await
}

/// Take the source function off the source (its endpoint answers 404 from then on).
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}/function",
    tag = "Functions",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "Take the source function off the source (its endpoint answers 404 from then on).", body = Data<Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (old, function) = existing(&api, &caller, &id, Access::Change).await?;
    let mut change = api.store.change().await?;
    store::delete_source_function(change.conn(), &id).await?;
    change
        .record(caller.draft(
            Kind::SourceFunctionDelete,
            "source",
            &id,
            Some(document(&wire(&old, &function.settings))?),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
