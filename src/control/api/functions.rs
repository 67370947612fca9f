//! `/functions`: functions' lifecycle in Segment's shape. Every change of code is a new,
//! immutable version; deploying makes the newest version the one that runs on events (on
//! every destination an instance attaches it to, and every source it is put on);
//! restoring an old version makes its code the newest again (deploy it to roll back).
//! Reading needs a workspace role; changing a function needs the "Create Functions"
//! permission, and deploying also needs the right to edit every destination and source it
//! runs on, and to change production at once where one is protected.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::function_instances::guard_protected;
use super::function_runs::MAX_CODE_CHARS;
use super::wire::{Data, Pagination, Status, document};
use super::{
    Api, ApiError, Body, Caller, Forbidden, PageQuery, Path, Query, data, page_of, pagination,
    success, text_field,
};
use crate::control::audit::Kind;
use crate::control::policy::{Action, DestinationRef, ResourceRef, SourceRef};
use crate::control::store::functions::{
    self as store, FunctionKind, FunctionRow, SettingDef, VersionRow,
};
use crate::control::store::{Change, destinations, new_id, resource_changes, sources};

/// Settings a function may declare, at most.
const MAX_SETTINGS: usize = 50;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/functions", get(list).post(create))
        .route("/functions/{id}", get(read).patch(update).delete(remove))
        .route("/functions/{id}/deploy", post(deploy))
        .route("/functions/{id}/versions", get(versions).post(restore))
        .route("/functions/{id}/versions/{version}", get(version))
        .route("/functions/{id}/errors", get(errors))
}

/// A function (Segment's `FunctionV1`): its newest code and the version deployed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    /// Id.
    pub id: String,
    /// `INSERT_DESTINATION` (runs before a destination's send) or `SOURCE`.
    pub resource_type: FunctionKind,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Who created it (user id).
    pub created_by: String,
    /// The newest version's code.
    pub code: String,
    /// When a version was last deployed (`null`: never).
    pub deployed_at: Option<DateTime<Utc>>,
    /// The settings it declares.
    pub settings: Vec<SettingDef>,
    /// Display name.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Logo URL, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// The id the catalog knows it by (its id).
    pub catalog_id: String,
    /// Whether the newest version is the one deployed.
    pub is_latest_version: bool,
    /// The newest version (1, 2, …).
    pub version: u32,
    /// The version that runs on events (`null`: none deployed).
    pub deployed_version: Option<u32>,
}

/// A function without its code, as lists show it (Segment's `ListFunctionItemV1`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionItem {
    /// Id.
    pub id: String,
    /// `INSERT_DESTINATION` or `SOURCE`.
    pub resource_type: FunctionKind,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Who created it (user id).
    pub created_by: String,
    /// Display name.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Logo URL, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// The id the catalog knows it by (its id).
    pub catalog_id: String,
}

/// One version of a function's code (Segment's `Version`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    /// The version's number, as text (`"1"`, `"2"`, …).
    pub id: String,
    /// Who wrote it (user id).
    pub author: String,
    /// Its code.
    pub code: String,
    /// Whether it is the version that runs on events.
    pub is_deployed: bool,
    /// Written.
    pub created_at: DateTime<Utc>,
    /// Versions never change: when it was written.
    pub updated_at: DateTime<Utc>,
    /// When it was deployed, if it is the version deployed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<DateTime<Utc>>,
}

/// `{"function": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionOne {
    /// The function.
    pub function: Function,
}

/// `{"functions": […], "pagination": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionList {
    /// The functions.
    pub functions: Vec<FunctionItem>,
    /// Where this page is.
    pub pagination: Pagination,
}

/// `{"version": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionOne {
    /// The version.
    pub version: Version,
}

/// `{"versions": […], "pagination": …}`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// The versions.
    pub versions: Vec<Version>,
    /// Where this page is.
    pub pagination: Pagination,
}

/// `{"errors": […]}`: a function's last failed runs, newest first (this process's, and
/// those remote nodes reported).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorList {
    /// At most 50.
    pub errors: Vec<crate::functions::errors::Recorded>,
}

/// `{"functionDeployment": {"status": "SUCCESS"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The deployment.
    pub function_deployment: Status,
}

/// A new function.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateFunction {
    /// Its JavaScript (`async function onTrack(event, settings) { … }`): version 1.
    #[schema(max_length = 65_536)]
    code: String,
    /// The settings it declares (at most 50; names unique).
    #[serde(default)]
    #[schema(max_items = 50)]
    settings: Vec<SettingDef>,
    /// Display name, unique in the workspace.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    display_name: String,
    /// Logo URL (free text).
    #[serde(default)]
    #[schema(max_length = 2000)]
    logo_url: String,
    /// `INSERT_DESTINATION` or `SOURCE`.
    resource_type: FunctionKind,
    /// Free text.
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: String,
}

/// Changes to a function; a new `code` is a new version (not deployed until deployed).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateFunction {
    /// New code: a new version.
    #[schema(max_length = 65_536)]
    code: Option<String>,
    /// The settings it declares, all of them. While instances hold values, a sensitive
    /// setting can be neither removed nor made not sensitive.
    #[schema(max_items = 50)]
    settings: Option<Vec<SettingDef>>,
    /// Display name, unique in the workspace.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    display_name: Option<String>,
    /// Logo URL (free text).
    #[schema(max_length = 2000)]
    logo_url: Option<String>,
    /// Free text.
    #[schema(max_length = 1000)]
    description: Option<String>,
}

/// `{"versionId": "3"}`: the version whose code becomes the newest again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreVersion {
    /// The version's id (its number, as text).
    #[schema(max_length = 10)]
    version_id: String,
}

/// `GET /functions`: a page, optionally of one kind.
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
    /// Only functions of this kind (`INSERT_DESTINATION`, `SOURCE`).
    #[serde(rename = "resourceType", default)]
    #[param(value_type = Option<FunctionKind>)]
    kind: Option<FunctionKind>,
}

fn item(row: &FunctionRow) -> FunctionItem {
    FunctionItem {
        id: row.id.clone(),
        resource_type: row.kind,
        created_at: row.created_at,
        created_by: row.created_by.clone(),
        display_name: row.display_name.clone(),
        description: row.description.clone(),
        logo_url: (!row.logo_url.is_empty()).then(|| row.logo_url.clone()),
        catalog_id: row.id.clone(),
    }
}

fn wire(row: &FunctionRow, code: String) -> Function {
    Function {
        id: row.id.clone(),
        resource_type: row.kind,
        created_at: row.created_at,
        created_by: row.created_by.clone(),
        code,
        deployed_at: row.deployed_at,
        settings: row.settings.clone(),
        display_name: row.display_name.clone(),
        description: row.description.clone(),
        logo_url: (!row.logo_url.is_empty()).then(|| row.logo_url.clone()),
        catalog_id: row.id.clone(),
        is_latest_version: row.deployed_version == Some(row.latest_version),
        version: row.latest_version,
        deployed_version: row.deployed_version,
    }
}

/// The function as the audit log keeps it: everything but the code (each version's code
/// is kept, unchanged, in its version).
fn audited(row: &FunctionRow) -> Result<serde_json::Value, ApiError> {
    let mut doc = document(&wire(row, String::new()))?;
    if let Some(map) = doc.as_object_mut() {
        map.remove("code");
    }
    Ok(doc)
}

fn version_wire(function: &FunctionRow, v: VersionRow) -> Version {
    let deployed = function.deployed_version == Some(v.version);
    Version {
        id: v.version.to_string(),
        author: v.author_id,
        code: v.code,
        is_deployed: deployed,
        created_at: v.created_at,
        updated_at: v.created_at,
        deployed_at: function.deployed_at.filter(|_| deployed),
    }
}

fn code_field(field: &str, code: String) -> Result<String, ApiError> {
    if code.chars().count() > MAX_CODE_CHARS {
        return Err(ApiError::field(
            field,
            format!("at most {MAX_CODE_CHARS} characters"),
        ));
    }
    Ok(code)
}

fn bounded(field: &str, value: String, max: usize) -> Result<String, ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::field(field, format!("at most {max} characters")));
    }
    Ok(value)
}

/// Checks declared settings: names well-formed and unique, labels and descriptions within
/// bounds.
fn settings_field(settings: Vec<SettingDef>) -> Result<Vec<SettingDef>, ApiError> {
    if settings.len() > MAX_SETTINGS {
        return Err(ApiError::field(
            "settings",
            format!("at most {MAX_SETTINGS} settings"),
        ));
    }
    let mut names = HashSet::new();
    for (i, s) in settings.iter().enumerate() {
        let well_formed = s.name.len() <= 64
            && s.name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
            && s.name.bytes().all(|b| b.is_ascii_alphanumeric());
        if !well_formed {
            return Err(ApiError::field(
                &format!("settings[{i}].name"),
                "1 to 64 letters and digits, starting with a letter",
            ));
        }
        // Each item is valid on its own: two of them together conflict.
        if !names.insert(s.name.as_str()) {
            return Err(ApiError::FieldConflict {
                message: format!("settings[{i}]: {:?} is declared twice", s.name),
                field: "settings",
            });
        }
        bounded(&format!("settings[{i}].label"), s.label.clone(), 200)?;
        bounded(
            &format!("settings[{i}].description"),
            s.description.clone(),
            1000,
        )?;
    }
    Ok(settings)
}

/// Loads a function of the caller's workspace (functions are seen workspace-wide).
async fn found(api: &Api, caller: &Caller, id: &str) -> Result<FunctionRow, ApiError> {
    let mut conn = api.store.read().await?;
    store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("function", id))
}

/// Loads a function for a change: a missing one is audited like a refusal.
async fn changing(api: &Api, caller: &Caller, id: &str) -> Result<FunctionRow, ApiError> {
    api.allow_workspace(caller, Action::CreateFunctions).await?;
    match found(api, caller, id).await {
        Err(ApiError::NotFound(message)) => Err(api
            .missing_target(
                caller,
                Action::CreateFunctions,
                "function",
                id,
                ApiError::NotFound(message),
            )
            .await),
        other => other,
    }
}

async fn latest_code(api: &Api, row: &FunctionRow) -> Result<String, ApiError> {
    let mut conn = api.store.read().await?;
    Ok(store::version(&mut conn, &row.id, row.latest_version)
        .await?
        .map(|v| v.code)
        .unwrap_or_default())
}

/// Deploying changes every destination the function is attached to and every source it
/// is put on: the caller must be allowed to edit each one, and to change at once any that
/// is (or is fed by) a protected source. One hidden from the caller answers as one they
/// may see but not edit.
async fn may_change_where_it_runs(
    api: &Api,
    caller: &Caller,
    function: &str,
) -> Result<(), ApiError> {
    where_it_runs(api, caller, function, true).await.map(drop)
}

/// A deployment's checks without production protection's (which proposes what may not
/// be made at once): the function the caller may change, and the sources that feed
/// where it runs.
pub(super) async fn check_deploy(
    api: &Api,
    caller: &Caller,
    id: &str,
) -> Result<(FunctionRow, Vec<sources::SourceRow>), ApiError> {
    let function = changing(api, caller, id).await?;
    let feeding = where_it_runs(api, caller, id, false).await?;
    Ok((function, feeding))
}

/// Where `function` runs, as one opaque digest: the destinations it is attached to, the
/// sources it is a source function of, and the sources feeding those destinations. An
/// approved deployment compares it with the proposal's (the ids themselves are not shown
/// to the request's readers, who may not see every destination).
pub(super) async fn placement(
    api: &Api,
    workspace: &str,
    function: &str,
) -> Result<String, ApiError> {
    let mut conn = api.store.read().await?;
    let mut ids: Vec<String> = Vec::new();
    for instance in store::instances(&mut conn, api.store.key(), workspace, function).await? {
        ids.push(format!("destination:{}", instance.destination_id));
        if let Some(row) = destinations::get(
            &mut conn,
            api.store.key(),
            workspace,
            &instance.destination_id,
        )
        .await?
        {
            let fed_by = super::destinations::feeding(&mut conn, workspace, &row).await?;
            ids.extend(fed_by.iter().map(|s| format!("fed-by:{}:{}", row.id, s.id)));
        }
    }
    for on in store::source_functions(&mut conn, api.store.key(), workspace, function).await? {
        ids.push(format!("source:{}", on.source_id));
    }
    ids.sort();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(ids.join("\n").as_bytes());
    Ok(hex::encode(digest))
}

/// Checks that the caller may edit every place `function` runs (and, if `protect`, may
/// change at once those a protected source feeds); the sources feeding those places.
async fn where_it_runs(
    api: &Api,
    caller: &Caller,
    function: &str,
    protect: bool,
) -> Result<Vec<sources::SourceRow>, ApiError> {
    let mut conn = api.store.read().await?;
    let attached =
        store::instances(&mut conn, api.store.key(), &caller.workspace.id, function).await?;
    let labels = resource_changes::protected_labels(&mut conn, &caller.workspace.id).await?;
    let refused = || ApiError::Forbidden(Forbidden::FunctionInUse);
    let mut feeding: Vec<sources::SourceRow> = Vec::new();
    for instance in attached {
        let Some(row) = destinations::get(
            &mut conn,
            api.store.key(),
            &caller.workspace.id,
            &instance.destination_id,
        )
        .await?
        else {
            continue;
        };
        let fed_by = super::destinations::feeding(&mut conn, &caller.workspace.id, &row).await?;
        let refs: Vec<SourceRef<'_>> = fed_by.iter().map(|s| s.as_ref()).collect();
        let resource = ResourceRef::Destination(DestinationRef {
            id: &row.id,
            connected: &refs,
        });
        api.allow_reached(caller, Action::EditDestination, resource, refused)
            .await?;
        if protect {
            guard_protected(api, caller, resource, &fed_by, &labels).await?;
        }
        feeding.extend(fed_by);
    }
    // And every source it runs on as a source function.
    for on in
        store::source_functions(&mut conn, api.store.key(), &caller.workspace.id, function).await?
    {
        let Some(source) = sources::get(&mut conn, &caller.workspace.id, &on.source_id).await?
        else {
            continue;
        };
        let resource = ResourceRef::Source(source.as_ref());
        api.allow_reached(caller, Action::EditSource, resource, refused)
            .await?;
        if protect {
            let one = std::slice::from_ref(&source);
            guard_protected(api, caller, resource, one, &labels).await?;
        }
        feeding.push(source);
    }
    let mut seen = HashSet::new();
    feeding.retain(|s| seen.insert(s.id.clone()));
    Ok(feeding)
}

/// List functions.
#[utoipa::path(
    get,
    path = "/api/v1/functions",
    tag = "Functions",
    params(ListQuery),
    responses((status = 200, description = "List functions.", body = Data<FunctionList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = PageQuery {
        count: q.count,
        cursor: q.cursor,
    }
    .page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = store::list(
        &mut conn,
        &caller.workspace.id,
        q.kind,
        &page.after,
        page.count,
    )
    .await?;
    let last = rows.last().map(|r| r.id.clone());
    let items = rows.iter().map(item).collect::<Vec<_>>();
    let count = items.len();
    Ok(page_of(
        items,
        &page,
        count,
        last.as_deref(),
        |functions, pagination| FunctionList {
            functions,
            pagination,
        },
    ))
}

/// Create a function (its code is version 1, not deployed).
#[utoipa::path(
    post,
    path = "/api/v1/functions",
    tag = "Functions",
    request_body = CreateFunction,
    responses((status = 200, description = "Create a function (its code is version 1, not deployed).", body = Data<FunctionOne>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateFunction>,
) -> Result<Response, ApiError> {
    let code = code_field("code", body.code)?;
    let display_name = text_field("displayName", &body.display_name, 100)?;
    let row = FunctionRow {
        id: new_id("fn_"),
        kind: body.resource_type,
        display_name,
        description: bounded("description", body.description, 1000)?,
        logo_url: bounded("logoUrl", body.logo_url, 2000)?,
        settings: settings_field(body.settings)?,
        created_by: caller.user.id.clone(),
        created_at: caller.now,
        updated_at: caller.now,
        latest_version: 1,
        deployed_version: None,
        deployed_at: None,
    };
    api.allow_workspace(&caller, Action::CreateFunctions)
        .await?;
    let mut change = api.store.change().await?;
    store::insert(change.conn(), &caller.workspace.id, &row, &code).await?;
    change
        .record(caller.draft(
            Kind::FunctionCreate,
            "function",
            &row.id,
            None,
            Some(audited(&row)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(FunctionOne {
        function: wire(&row, code),
    }))
}

/// Get a function, with its newest code.
#[utoipa::path(
    get,
    path = "/api/v1/functions/{id}",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id")),
    responses((status = 200, description = "Get a function, with its newest code.", body = Data<FunctionOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let row = found(&api, &caller, &id).await?;
    let code = latest_code(&api, &row).await?;
    Ok(data(FunctionOne {
        function: wire(&row, code),
    }))
}

/// Update a function; new code is a new version, which runs once deployed.
#[utoipa::path(
    patch,
    path = "/api/v1/functions/{id}",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id")),
    request_body = UpdateFunction,
    responses((status = 200, description = "Update a function; new code is a new version, which runs once deployed.", body = Data<FunctionOne>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UpdateFunction>,
) -> Result<Response, ApiError> {
    let code = body.code.map(|c| code_field("code", c)).transpose()?;
    let display_name = body
        .display_name
        .map(|n| text_field("displayName", &n, 100))
        .transpose()?;
    let settings = body.settings.map(settings_field).transpose()?;
    let description = body
        .description
        .map(|d| bounded("description", d, 1000))
        .transpose()?;
    let logo_url = body
        .logo_url
        .map(|l| bounded("logoUrl", l, 2000))
        .transpose()?;
    let before = changing(&api, &caller, &id).await?;
    let mut row = before.clone();
    if let Some(settings) = settings {
        row.settings = settings;
    }
    if let Some(name) = display_name {
        row.display_name = name;
    }
    if let Some(description) = description {
        row.description = description;
    }
    if let Some(logo_url) = logo_url {
        row.logo_url = logo_url;
    }
    row.updated_at = caller.now;
    let current = latest_code(&api, &before).await?;
    let mut change = api.store.change().await?;
    keeps_secrets(&api, &mut change, &caller, &before, &row.settings).await?;
    let latest = match code {
        Some(code) if code != current => {
            row.latest_version =
                store::add_version(change.conn(), &id, &code, &caller.user.id, caller.now).await?;
            code
        }
        _ => current,
    };
    store::update(change.conn(), &row).await?;
    change
        .record(caller.draft(
            Kind::FunctionUpdate,
            "function",
            &id,
            Some(audited(&before)?),
            Some(audited(&row)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(FunctionOne {
        function: wire(&row, latest),
    }))
}

/// While instances or source functions hold values, a sensitive setting is neither
/// removed nor made not sensitive: its secret would otherwise be shown (or kept where no
/// one sees it). Asked inside the change that makes it, so nothing attached meanwhile
/// escapes it.
async fn keeps_secrets(
    api: &Api,
    change: &mut Change,
    caller: &Caller,
    before: &FunctionRow,
    after: &[SettingDef],
) -> Result<(), ApiError> {
    let dropped: Vec<&str> = before
        .settings
        .iter()
        .filter(|s| s.sensitive)
        .filter(|s| !after.iter().any(|a| a.name == s.name && a.sensitive))
        .map(|s| s.name.as_str())
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    let attached = store::instances(
        change.conn(),
        api.store.key(),
        &caller.workspace.id,
        &before.id,
    )
    .await?;
    let on_sources = store::source_functions(
        change.conn(),
        api.store.key(),
        &caller.workspace.id,
        &before.id,
    )
    .await?;
    if attached.is_empty() && on_sources.is_empty() {
        return Ok(());
    }
    Err(ApiError::FieldConflict {
        message: format!(
            "the sensitive setting {:?} stays sensitive while instances or source functions hold values: remove them first",
            dropped[0]
        ),
        field: "settings",
    })
}

/// Delete a function (one attached to destinations is refused: delete its instances).
#[utoipa::path(
    delete,
    path = "/api/v1/functions/{id}",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id")),
    responses((status = 200, description = "Delete a function (one attached to destinations is refused: delete its instances).", body = Data<Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let before = changing(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    let attached =
        store::instances(change.conn(), api.store.key(), &caller.workspace.id, &id).await?;
    let on_sources =
        store::source_functions(change.conn(), api.store.key(), &caller.workspace.id, &id).await?;
    if !attached.is_empty() || !on_sources.is_empty() {
        return Err(ApiError::Conflict(
            "the function is in use: delete its insert-function instances and take it off its sources first"
                .into(),
        ));
    }
    store::delete(change.conn(), &id).await?;
    change
        .record(caller.draft(
            Kind::FunctionDelete,
            "function",
            &id,
            Some(audited(&before)?),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// What a deployment may ask for.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeployRequest {
    /// Deploy only if this is still the newest version (`409` otherwise). An approved
    /// resource change request deploys exactly the version its reviewer saw this way.
    #[serde(default)]
    pub version: Option<u32>,
}

/// Deploy a function's newest version: it runs on events from now on.
#[utoipa::path(
    post,
    path = "/api/v1/functions/{id}/deploy",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id")),
    request_body(content = DeployRequest, description = "Optional: `{version}` deploys only that version, if it is still the newest."),
    responses((status = 200, description = "Deploy a function's newest version: it runs on events from now on.", body = Data<Deployment>))
)]
async fn deploy(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(asked): Body<DeployRequest>,
) -> Result<Response, ApiError> {
    let before = changing(&api, &caller, &id).await?;
    may_change_where_it_runs(&api, &caller, &id).await?;
    let mut row = before.clone();
    row.deployed_version = Some(before.latest_version);
    row.deployed_at = Some(caller.now);
    row.updated_at = caller.now;
    let mut change = api.store.change().await?;
    // The newest version as this transaction reads it: one written meanwhile waits for
    // its own deployment.
    let current = store::get(change.conn(), &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("function", &id))?;
    if asked
        .version
        .is_some_and(|version| version != current.latest_version)
    {
        return Err(ApiError::Conflict(format!(
            "version {} is no longer the newest of function {id}: deploy again to deploy version {}",
            asked.version.unwrap_or_default(),
            current.latest_version
        )));
    }
    row.deployed_version = Some(current.latest_version);
    store::deploy(change.conn(), &id, current.latest_version, caller.now).await?;
    change
        .record(caller.draft(
            Kind::FunctionDeploy,
            "function",
            &id,
            Some(audited(&before)?),
            Some(audited(&row)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(Deployment {
        function_deployment: Status::SUCCESS,
    }))
}

/// A function's last failed runs where this control plane runs (delivery's insert
/// functions and the data listener's source functions in the same process), newest
/// first: when, the event's `messageId`, the destination or source, what failed, the
/// error. Every failed event is also in the dead-letter store (`sluice dlq`).
#[utoipa::path(
    get,
    path = "/api/v1/functions/{id}/errors",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id")),
    responses((status = 200, description = "A function's last failed runs, newest first: this process's, and those remote nodes reported (`node` names where they ran).", body = Data<ErrorList>))
)]
async fn errors(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let function = found(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let mut errors =
        crate::control::store::function_errors::last(&mut conn, &caller.workspace.id, &function.id)
            .await?;
    drop(conn);
    errors.extend(crate::functions::errors::last(&function.id));
    errors.sort_by_key(|e| std::cmp::Reverse(e.at));
    errors.truncate(crate::functions::errors::KEEP);
    Ok(data(ErrorList { errors }))
}

/// The version number a version id names (404 for anything else).
fn version_number(function: &str, text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>()
        .ok()
        .filter(|n| *n > 0 && n.to_string() == text)
        .ok_or_else(|| ApiError::missing("version", &format!("{function}/{text}")))
}

/// List a function's versions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/functions/{id}/versions",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id"), PageQuery),
    responses((status = 200, description = "List a function's versions, newest first.", body = Data<VersionList>))
)]
async fn versions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    // A page starts below the last version shown; a position that is no version's
    // (a cursor not from this list) has nothing after it.
    let before = if page.after.is_empty() {
        0
    } else {
        page.after.parse::<u32>().unwrap_or(1).max(1)
    };
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let function = found(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let rows = store::versions(&mut conn, &id, before, page.count).await?;
    let last = rows.last().map(|v| v.version.to_string());
    let versions: Vec<Version> = rows
        .into_iter()
        .map(|v| version_wire(&function, v))
        .collect();
    let pagination = pagination(&page, versions.len(), last.as_deref());
    Ok(data(VersionList {
        versions,
        pagination,
    }))
}

/// Get one version of a function.
#[utoipa::path(
    get,
    path = "/api/v1/functions/{id}/versions/{version}",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id"), ("version" = String, Path, description = "Version id (its number)")),
    responses((status = 200, description = "Get one version of a function.", body = Data<VersionOne>))
)]
async fn version(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let function = found(&api, &caller, &id).await?;
    let number = version_number(&id, &version)?;
    let mut conn = api.store.read().await?;
    let row = store::version(&mut conn, &id, number)
        .await?
        .ok_or_else(|| ApiError::missing("version", &format!("{id}/{version}")))?;
    Ok(data(VersionOne {
        version: version_wire(&function, row),
    }))
}

/// Restore a version: its code becomes the newest version (deploy it to roll back).
#[utoipa::path(
    post,
    path = "/api/v1/functions/{id}/versions",
    tag = "Functions",
    params(("id" = String, Path, description = "Function id")),
    request_body = RestoreVersion,
    responses((status = 200, description = "Restore a version: its code becomes the newest version (deploy it to roll back).", body = Data<VersionOne>))
)]
async fn restore(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RestoreVersion>,
) -> Result<Response, ApiError> {
    let before = changing(&api, &caller, &id).await?;
    let number = version_number(&id, &body.version_id)?;
    let mut change = api.store.change().await?;
    let old = store::version(change.conn(), &id, number)
        .await?
        .ok_or_else(|| ApiError::missing("version", &format!("{id}/{}", body.version_id)))?;
    let mut row = before.clone();
    row.latest_version =
        store::add_version(change.conn(), &id, &old.code, &caller.user.id, caller.now).await?;
    row.updated_at = caller.now;
    store::touch(change.conn(), &id, caller.now).await?;
    change
        .record(caller.draft(
            Kind::FunctionRestore,
            "function",
            &id,
            Some(audited(&before)?),
            Some(serde_json::json!({"restored": number, "version": row.latest_version})),
        ))
        .await?;
    change.commit().await?;
    let written = VersionRow {
        function_id: id,
        version: row.latest_version,
        code: old.code,
        author_id: caller.user.id.clone(),
        created_at: caller.now,
    };
    Ok(data(VersionOne {
        version: version_wire(&row, written),
    }))
}
