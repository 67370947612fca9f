//! `/insert-function-instances`: an insert function attached to a destination, with its
//! settings' values (sensitive ones write-only, sealed at rest). Attaching, changing or
//! removing one changes what the destination receives: it needs the "Create Functions"
//! permission and the right to edit the destination; on a destination a protected source
//! feeds, the change is made at once only by who may change production at once, and
//! kept for review (`202`, [`super::protected`]) for the others. A destination the
//! caller may not see answers exactly as a missing instance or destination.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::wire::{Data, Pagination, Status, document};
use super::{
    Api, ApiError, Body, Caller, Forbidden, Path, Query, data, page_in_memory, success, text_field,
};
use crate::catalog::REDACTED;
use crate::control::audit::Kind;
use crate::control::policy::{Action, DestinationRef, ResourceRef, SourceRef};
use crate::control::store::destinations::DestinationRow;
use crate::control::store::functions::{
    self as store, FunctionKind, FunctionRow, InstanceRow, SettingDef,
};
use crate::control::store::sources::SourceRow;
use crate::control::store::{new_id, resource_changes};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/insert-function-instances", get(list).post(create))
        .route(
            "/insert-function-instances/{id}",
            get(read).patch(update).delete(remove),
        )
}

/// An insert function on a destination (Segment's `InsertFunctionInstanceAlpha`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The destination it runs on.
    pub integration_id: String,
    /// The function (its id).
    pub class_id: String,
    /// A disabled instance lets events through unchanged.
    pub enabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
    /// The values of settings that are not sensitive.
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// The sensitive settings that have a value, each shown as `<redacted>`.
    #[schema(value_type = Object)]
    pub encrypted_settings: Map<String, Value>,
}

/// `{"insertFunctionInstance": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceOne {
    /// The instance.
    pub insert_function_instance: Instance,
}

/// `{"instances": […], "pagination": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    /// The instances on destinations the caller may see.
    pub instances: Vec<Instance>,
    /// Where this page is.
    pub pagination: Pagination,
}

/// A function attached to a destination.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInstance {
    /// The insert function.
    #[schema(max_length = 200)]
    function_id: String,
    /// The destination (one insert function each).
    #[schema(max_length = 200)]
    integration_id: String,
    /// Default `true`.
    enabled: Option<bool>,
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: String,
    /// A value for each setting the function declares (required ones must be given).
    #[schema(value_type = Object)]
    settings: Map<String, Value>,
}

/// Changes to an instance. `settings`, when given, replaces them all (a sensitive
/// setting given as `<redacted>` keeps its value); left out, they stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateInstance {
    /// Enabled.
    enabled: Option<bool>,
    /// Display name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: Option<String>,
    /// Every setting's value.
    #[schema(value_type = Object)]
    settings: Option<Map<String, Value>>,
}

/// `GET /insert-function-instances`: those of one function.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Page size (1 to 200, default 10).
    #[serde(rename = "pagination[count]", default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    count: Option<String>,
    /// Opaque cursor from the previous page's `pagination.next`.
    #[serde(rename = "pagination[cursor]", default)]
    #[param(pattern = "^(MA|YWZ0ZXI6([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?)?$")]
    cursor: Option<String>,
    /// The function.
    #[serde(rename = "functionId")]
    #[param(max_length = 200)]
    function: String,
}

/// Settings' values as the API shows them: those that are not sensitive, and the
/// sensitive ones that have a value, each as `<redacted>`.
pub(super) fn shown_settings(
    values: &Map<String, Value>,
    declared: &[SettingDef],
) -> (Map<String, Value>, Map<String, Value>) {
    let mut settings = Map::new();
    let mut encrypted = Map::new();
    for (name, value) in values {
        let sensitive = declared.iter().any(|s| s.name == *name && s.sensitive);
        if sensitive {
            encrypted.insert(name.clone(), Value::String(REDACTED.to_owned()));
        } else {
            settings.insert(name.clone(), value.clone());
        }
    }
    (settings, encrypted)
}

/// An instance as the API shows it: sensitive values never leave.
fn wire(row: &InstanceRow, function: &FunctionRow) -> Instance {
    let (settings, encrypted) = shown_settings(&row.settings, &function.settings);
    Instance {
        id: row.id.clone(),
        name: row.name.clone(),
        integration_id: row.destination_id.clone(),
        class_id: row.function_id.clone(),
        enabled: row.enabled,
        created_at: row.created_at,
        updated_at: row.updated_at,
        settings,
        encrypted_settings: encrypted,
    }
}

/// Checks values against what the function declares: each named, of its type, every
/// required one given. `kept` gives the stored value of a sensitive setting sent back as
/// `<redacted>`.
pub(super) fn checked_settings(
    function: &FunctionRow,
    given: Map<String, Value>,
    kept: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, ApiError> {
    let conflict = |message: String| ApiError::FieldConflict {
        message,
        field: "settings",
    };
    let mut out = Map::new();
    for (name, value) in given {
        let Some(def) = function.settings.iter().find(|s| s.name == name) else {
            return Err(conflict(format!(
                "the function declares no setting {name:?}"
            )));
        };
        if def.sensitive && value.as_str() == Some(REDACTED) {
            if let Some(old) = kept.and_then(|k| k.get(&name)) {
                out.insert(name, old.clone());
            }
            continue;
        }
        if !def.kind.admits(&value) {
            return Err(conflict(format!(
                "setting {name:?} takes a value of type {}",
                serde_json::to_value(def.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
        out.insert(name, value);
    }
    if let Some(missing) = function
        .settings
        .iter()
        .find(|s| s.required && !out.contains_key(&s.name))
    {
        return Err(conflict(format!("setting {:?} is required", missing.name)));
    }
    Ok(out)
}

/// Refuses a change at once to a destination a protected source feeds, unless the caller
/// may change production at once (owners and admins).
pub(super) async fn may_change_production(
    api: &Api,
    caller: &Caller,
    resource: ResourceRef<'_>,
) -> Result<(), ApiError> {
    api.allow(
        caller,
        Action::ApplyProtectedChange,
        resource,
        ApiError::Forbidden(Forbidden::FunctionProtected),
    )
    .await
    .map(drop)
    .map_err(|e| match e {
        ApiError::Forbidden(_) => ApiError::Forbidden(Forbidden::FunctionProtected),
        other => other,
    })
}

/// Refuses a change at once to `resource` when one of `sources` (the resource itself, or
/// the sources feeding it) is protected, unless the caller may change production at once.
/// Asked only of a resource the caller may edit, so it never tells a hidden one.
pub(super) async fn guard_protected(
    api: &Api,
    caller: &Caller,
    resource: ResourceRef<'_>,
    sources: &[SourceRow],
    labels: &[String],
) -> Result<(), ApiError> {
    if sources
        .iter()
        .any(|s| super::protected::is_protected(s, labels))
    {
        may_change_production(api, caller, resource).await?;
    }
    Ok(())
}

/// The destination an instance change touches, as the caller may edit it; if `protect`,
/// on a destination a protected source feeds only for who may change production at
/// once (false when production protection weighs the change: it proposes what may not
/// be made at once).
async fn editable(
    api: &Api,
    caller: &Caller,
    id: &str,
    protect: bool,
) -> Result<DestinationRow, ApiError> {
    let row = super::destinations::visible(api, caller, id, Action::EditDestination).await?;
    if !protect {
        return Ok(row);
    }
    let mut conn = api.store.read().await?;
    let labels = resource_changes::protected_labels(&mut conn, &caller.workspace.id).await?;
    let fed_by = super::destinations::feeding(&mut conn, &caller.workspace.id, &row).await?;
    drop(conn);
    let refs: Vec<SourceRef<'_>> = fed_by.iter().map(|s| s.as_ref()).collect();
    let resource = ResourceRef::Destination(DestinationRef {
        id,
        connected: &refs,
    });
    guard_protected(api, caller, resource, &fed_by, &labels).await?;
    Ok(row)
}

/// Whether the caller sees the destination (and so the instance on it).
fn sees(caller: &Caller, destination: &str) -> bool {
    caller
        .decide(
            Action::ViewDestination,
            ResourceRef::Destination(DestinationRef {
                id: destination,
                connected: &[],
            }),
        )
        .allowed
}

async fn function_of(api: &Api, caller: &Caller, id: &str) -> Result<FunctionRow, ApiError> {
    let mut conn = api.store.read().await?;
    store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("function", id))
}

/// What a caller does with a function's instance or endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Reads it.
    Read,
    /// Changes it (on a protected destination, only if they may change production).
    Change,
    /// Changes it, as production protection weighs it before the call is made.
    Weigh,
}

/// Loads an instance the caller may see (and, for a change, act on).
async fn visible(
    api: &Api,
    caller: &Caller,
    id: &str,
    access: Access,
) -> Result<(InstanceRow, FunctionRow), ApiError> {
    let change = access != Access::Read;
    let missing = || ApiError::missing("insert function instance", id);
    if change {
        api.allow_workspace(caller, Action::CreateFunctions).await?;
    }
    let mut conn = api.store.read().await?;
    let found = store::instance(&mut conn, api.store.key(), &caller.workspace.id, id).await?;
    drop(conn);
    let Some(row) = found else {
        return Err(if change {
            api.missing_target(
                caller,
                Action::EditDestination,
                "insert_function_instance",
                id,
                missing(),
            )
            .await
        } else {
            missing()
        });
    };
    if change {
        editable(api, caller, &row.destination_id, access == Access::Change)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => missing(),
                other => other,
            })?;
    } else if !sees(caller, &row.destination_id) {
        return Err(missing());
    }
    let function = function_of(api, caller, &row.function_id).await?;
    Ok((row, function))
}

/// The instance a create call makes, checked as the call is (`protect`: and on a
/// protected destination only for who may change production at once), with its function.
async fn created(
    api: &Api,
    caller: &Caller,
    body: CreateInstance,
    protect: bool,
) -> Result<(InstanceRow, FunctionRow), ApiError> {
    let name = text_field("name", &body.name, 100)?;
    api.allow_workspace(caller, Action::CreateFunctions).await?;
    editable(api, caller, &body.integration_id, protect).await?;
    let function = function_of(api, caller, &body.function_id).await?;
    if function.kind != FunctionKind::InsertDestination {
        return Err(ApiError::FieldConflict {
            message: format!(
                "function {:?} is a {} function, not an insert function",
                function.id,
                function.kind.name()
            ),
            field: "functionId",
        });
    }
    let mut conn = api.store.read().await?;
    let taken = store::instance_on(
        &mut conn,
        api.store.key(),
        &caller.workspace.id,
        &body.integration_id,
    )
    .await?;
    drop(conn);
    if taken.is_some() {
        return Err(ApiError::Conflict(format!(
            "destination {:?} already has an insert function",
            body.integration_id
        )));
    }
    let row = InstanceRow {
        id: new_id("ifi_"),
        function_id: function.id.clone(),
        destination_id: body.integration_id,
        name,
        enabled: body.enabled.unwrap_or(true),
        settings: checked_settings(&function, body.settings, None)?,
        created_at: caller.now,
        updated_at: caller.now,
    };
    Ok((row, function))
}

/// An instance as it was and as an update call makes it, checked as the call is.
async fn updated(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: UpdateInstance,
    access: Access,
) -> Result<(InstanceRow, FunctionRow, InstanceRow), ApiError> {
    let name = body.name.map(|n| text_field("name", &n, 100)).transpose()?;
    let (before, function) = visible(api, caller, id, access).await?;
    let mut row = before.clone();
    if let Some(settings) = body.settings {
        row.settings = checked_settings(&function, settings, Some(&before.settings))?;
    }
    if let Some(name) = name {
        row.name = name;
    }
    if let Some(enabled) = body.enabled {
        row.enabled = enabled;
    }
    row.updated_at = caller.now;
    Ok((before, function, row))
}

/// What production protection weighs of a call on an instance: the destination it
/// changes, the function it runs, and the settings it would have as a reviewer may read
/// them (sensitive values `<redacted>`).
pub(super) struct Weighed {
    /// The destination.
    pub destination: String,
    /// The function.
    pub function: String,
    /// The settings as shown (`None`: the call sets none).
    pub settings: Option<Value>,
}

/// Settings' values as one object a reviewer may read: sensitive ones `<redacted>`.
pub(super) fn readable_settings(values: &Map<String, Value>, declared: &[SettingDef]) -> Value {
    let (mut shown, encrypted) = shown_settings(values, declared);
    shown.extend(encrypted);
    Value::Object(shown)
}

/// An attach call (`POST /insert-function-instances`) checked as its handler checks it
/// but for production protection, which weighs it with this answer.
pub(super) async fn check_create(
    api: &Api,
    caller: &Caller,
    body: CreateInstance,
) -> Result<Weighed, ApiError> {
    let (row, function) = created(api, caller, body, false).await?;
    Ok(Weighed {
        settings: Some(readable_settings(&row.settings, &function.settings)),
        destination: row.destination_id,
        function: function.id,
    })
}

/// A change to instance `id` (`update`: the body of a `PATCH`, else a `DELETE`),
/// checked as its handler checks it but for production protection.
pub(super) async fn check_change(
    api: &Api,
    caller: &Caller,
    id: &str,
    update: Option<UpdateInstance>,
) -> Result<Weighed, ApiError> {
    let (row, function, settings) = match update {
        Some(body) => {
            let touches = body.settings.is_some();
            let (_, function, row) = updated(api, caller, id, body, Access::Weigh).await?;
            let shown = touches.then(|| readable_settings(&row.settings, &function.settings));
            (row, function, shown)
        }
        None => {
            let (row, function) = visible(api, caller, id, Access::Weigh).await?;
            (row, function, None)
        }
    };
    Ok(Weighed {
        destination: row.destination_id,
        function: function.id,
        settings,
    })
}

/// List the instances of a function on destinations the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/insert-function-instances",
    tag = "Functions",
    params(ListQuery),
    responses((status = 200, description = "List the instances of a function on destinations the caller may see.", body = Data<InstanceList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = super::PageQuery {
        count: q.count,
        cursor: q.cursor,
    }
    .page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let function = function_of(&api, &caller, &q.function).await?;
    let mut conn = api.store.read().await?;
    let rows = store::instances(
        &mut conn,
        api.store.key(),
        &caller.workspace.id,
        &q.function,
    )
    .await?;
    let shown = rows
        .iter()
        .filter(|r| sees(&caller, &r.destination_id))
        .map(|r| (r.id.clone(), wire(r, &function)))
        .collect();
    Ok(page_in_memory(shown, &page, |instances, pagination| {
        InstanceList {
            instances,
            pagination,
        }
    }))
}

/// Attach an insert function to a destination.
#[utoipa::path(
    post,
    path = "/api/v1/insert-function-instances",
    tag = "Functions",
    request_body = CreateInstance,
    responses((status = 200, description = "Attach an insert function to a destination.", body = Data<InstanceOne>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateInstance>,
) -> Result<Response, ApiError> {
    let (row, function) = created(&api, &caller, body, true).await?;
    let shown = wire(&row, &function);
    let mut change = api.store.change().await?;
    store::insert_instance(change.conn(), api.store.key(), &caller.workspace.id, &row).await?;
    change
        .record(caller.draft(
            Kind::FunctionInstanceCreate,
            "insert_function_instance",
            &row.id,
            None,
            Some(document(&shown)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(InstanceOne {
        insert_function_instance: shown,
    }))
}

/// Get an insert-function instance.
#[utoipa::path(
    get,
    path = "/api/v1/insert-function-instances/{id}",
    tag = "Functions",
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, description = "Get an insert-function instance.", body = Data<InstanceOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let (row, function) = visible(&api, &caller, &id, Access::Read).await?;
    Ok(data(InstanceOne {
        insert_function_instance: wire(&row, &function),
    }))
}

/// Update an insert-function instance: enabled, name, settings.
#[utoipa::path(
    patch,
    path = "/api/v1/insert-function-instances/{id}",
    tag = "Functions",
    params(("id" = String, Path, description = "Instance id")),
    request_body = UpdateInstance,
    responses((status = 200, description = "Update an insert-function instance: enabled, name, settings.", body = Data<InstanceOne>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UpdateInstance>,
) -> Result<Response, ApiError> {
    let (before, function, row) = updated(&api, &caller, &id, body, Access::Change).await?;
    let shown = wire(&row, &function);
    let mut change = api.store.change().await?;
    store::update_instance(change.conn(), api.store.key(), &row).await?;
    change
        .record(caller.draft(
            Kind::FunctionInstanceUpdate,
            "insert_function_instance",
            &id,
            Some(document(&wire(&before, &function))?),
            Some(document(&shown)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(InstanceOne {
        insert_function_instance: shown,
    }))
}

/// Remove an insert function from its destination.
#[utoipa::path(
    delete,
    path = "/api/v1/insert-function-instances/{id}",
    tag = "Functions",
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, description = "Remove an insert function from its destination.", body = Data<Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (before, function) = visible(&api, &caller, &id, Access::Change).await?;
    let mut change = api.store.change().await?;
    store::delete_instance(change.conn(), &id).await?;
    change
        .record(caller.draft(
            Kind::FunctionInstanceDelete,
            "insert_function_instance",
            &id,
            Some(document(&wire(&before, &function))?),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
