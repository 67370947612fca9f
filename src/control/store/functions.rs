//! Functions: their code in immutable versions, which version is deployed, and the
//! insert-function instances that attach a function to a destination (their settings
//! sealed at rest, like a destination's).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{StoreError, ms, opt_time, time};
use crate::control::secret::Key;

/// Where a function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FunctionKind {
    /// Before a destination's send, on each event (an insert function).
    InsertDestination,
    /// Behind its own webhook URL, turning any JSON into events (a source function).
    Source,
}

impl FunctionKind {
    /// As stored and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::InsertDestination => "INSERT_DESTINATION",
            Self::Source => "SOURCE",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "INSERT_DESTINATION" => Ok(Self::InsertDestination),
            "SOURCE" => Ok(Self::Source),
            other => Err(StoreError::Corrupt(format!("function kind {other:?}"))),
        }
    }
}

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SettingType {
    /// A list of strings.
    Array,
    /// `true` or `false`.
    Boolean,
    /// A string.
    String,
    /// An object of strings.
    TextMap,
}

impl SettingType {
    /// Whether `value` is of this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            Self::Array => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Self::Boolean => value.is_boolean(),
            Self::String => value.is_string(),
            Self::TextMap => value
                .as_object()
                .is_some_and(|map| map.values().all(Value::is_string)),
        }
    }
}

/// A setting a function declares; each instance gives it a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingDef {
    /// The name the code reads (`settings.apiKey`): a letter, then letters and digits.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z][A-Za-z0-9]*$")]
    pub name: String,
    /// Shown to people.
    #[schema(max_length = 200)]
    pub label: String,
    /// Free text.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
    /// The value's type.
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// An instance must give it a value.
    #[serde(default)]
    pub required: bool,
    /// A secret: sealed at rest and never shown again; only the processes that run the
    /// function get it (delivery for an insert function, the data listener for a source
    /// function).
    #[serde(default)]
    pub sensitive: bool,
}

/// A function: what it is, its newest version and the version deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionRow {
    /// Id.
    pub id: String,
    /// Where it runs.
    pub kind: FunctionKind,
    /// Display name (unique in the workspace).
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Logo URL (free text).
    pub logo_url: String,
    /// The settings it declares.
    pub settings: Vec<SettingDef>,
    /// Who created it (user id).
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Changed (anything, versions and deployments included).
    pub updated_at: DateTime<Utc>,
    /// The newest version (versions count from 1).
    pub latest_version: u32,
    /// The version that runs on events, if one was deployed.
    pub deployed_version: Option<u32>,
    /// When it was deployed.
    pub deployed_at: Option<DateTime<Utc>>,
}

/// One version of a function's code; never changed once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// The function.
    pub function_id: String,
    /// 1, 2, …
    pub version: u32,
    /// The code.
    pub code: String,
    /// Who wrote it (user id).
    pub author_id: String,
    /// Written.
    pub created_at: DateTime<Utc>,
}

/// An insert function attached to a destination, with its settings' values.
#[derive(Clone, PartialEq)]
pub struct InstanceRow {
    /// Id.
    pub id: String,
    /// The function.
    pub function_id: String,
    /// The destination (one instance per destination).
    pub destination_id: String,
    /// Display name.
    pub name: String,
    /// A disabled instance lets events through unchanged.
    pub enabled: bool,
    /// The settings' values, in the clear (in memory only).
    pub settings: Map<String, Value>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for InstanceRow {
    /// Setting values are left out: they may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceRow")
            .field("id", &self.id)
            .field("function_id", &self.function_id)
            .field("destination_id", &self.destination_id)
            .field("enabled", &self.enabled)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SourceFunctionRow {
    /// Setting values are left out: they may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFunctionRow")
            .field("id", &self.id)
            .field("function_id", &self.function_id)
            .field("source_id", &self.source_id)
            .field("enabled", &self.enabled)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

const FUNCTION_COLUMNS: &str = "f.id, f.resource_type, f.display_name, f.description, f.logo_url, f.settings, f.created_by, f.created_at, f.updated_at, f.deployed_version, f.deployed_at,
    (SELECT MAX(v.version) FROM function_versions v WHERE v.function_id = f.id)";

fn decode_function(row: &sqlx::any::AnyRow) -> Result<FunctionRow, StoreError> {
    let id: String = row.try_get(0)?;
    let settings: String = row.try_get(5)?;
    let settings = serde_json::from_str(&settings)
        .map_err(|e| StoreError::Corrupt(format!("function {id} settings: {e}")))?;
    let deployed: Option<i64> = row.try_get(9)?;
    let latest: Option<i64> = row.try_get(11)?;
    Ok(FunctionRow {
        kind: FunctionKind::parse(&row.try_get::<String, _>(1)?)?,
        display_name: row.try_get(2)?,
        description: row.try_get(3)?,
        logo_url: row.try_get(4)?,
        settings,
        created_by: row.try_get(6)?,
        created_at: time(row.try_get(7)?)?,
        updated_at: time(row.try_get(8)?)?,
        deployed_version: deployed.map(version_of).transpose()?,
        deployed_at: opt_time(row.try_get(10)?)?,
        latest_version: version_of(latest.unwrap_or(0))?,
        id,
    })
}

fn version_of(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("function version {n}")))
}

fn settings_text(row: &FunctionRow) -> Result<String, StoreError> {
    serde_json::to_string(&row.settings).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Functions of `workspace` by id after `after`, of `kind` if given.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    kind: Option<FunctionKind>,
    after: &str,
    limit: u32,
) -> Result<Vec<FunctionRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {FUNCTION_COLUMNS} FROM functions f
         WHERE f.workspace_id = $1 AND f.id > $2 AND ($3 = '' OR f.resource_type = $3)
         ORDER BY f.id LIMIT $4"
    ))
    .bind(workspace)
    .bind(after)
    .bind(kind.map_or("", FunctionKind::name))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_function).collect()
}

/// A function of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<FunctionRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {FUNCTION_COLUMNS} FROM functions f WHERE f.workspace_id = $1 AND f.id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_function).transpose()
}

/// Inserts a function and its first version (`row.latest_version` is 1).
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    row: &FunctionRow,
    code: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO functions (id, workspace_id, resource_type, display_name, description, logo_url, settings, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&row.id)
    .bind(workspace)
    .bind(row.kind.name())
    .bind(&row.display_name)
    .bind(&row.description)
    .bind(&row.logo_url)
    .bind(settings_text(row)?)
    .bind(&row.created_by)
    .bind(ms(row.created_at))
    .bind(ms(row.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::conflict_as(format!(
        "function named {:?}",
        row.display_name
    )))?;
    add_version(conn, &row.id, code, &row.created_by, row.created_at)
        .await
        .map(drop)
}

/// Replaces a function's name, description, logo and settings (never its deployment:
/// [`deploy`] alone changes that, so a concurrent edit cannot undo a deployment).
pub async fn update(conn: &mut AnyConnection, row: &FunctionRow) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE functions SET display_name = $2, description = $3, logo_url = $4, settings = $5,
           updated_at = $6 WHERE id = $1",
    )
    .bind(&row.id)
    .bind(&row.display_name)
    .bind(&row.description)
    .bind(&row.logo_url)
    .bind(settings_text(row)?)
    .bind(ms(row.updated_at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!(
        "function named {:?}",
        row.display_name
    )))?;
    Ok(())
}

/// Makes `version` the one that runs on events.
pub async fn deploy(
    conn: &mut AnyConnection,
    id: &str,
    version: u32,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE functions SET deployed_version = $2, deployed_at = $3, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(i64::from(version))
    .bind(ms(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a function changed (a new version was written).
pub async fn touch(
    conn: &mut AnyConnection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE functions SET updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(ms(at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes the next version of a function's code; returns its number.
pub async fn add_version(
    conn: &mut AnyConnection,
    function: &str,
    code: &str,
    author: &str,
    at: DateTime<Utc>,
) -> Result<u32, StoreError> {
    let latest: Option<i64> =
        sqlx::query("SELECT MAX(version) FROM function_versions WHERE function_id = $1")
            .bind(function)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    let next = latest.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO function_versions (function_id, version, code, author_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(function)
    .bind(next)
    .bind(code)
    .bind(author)
    .bind(ms(at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!(
        "version {next} of {function}"
    )))?;
    version_of(next)
}

fn decode_version(row: &sqlx::any::AnyRow) -> Result<VersionRow, StoreError> {
    Ok(VersionRow {
        function_id: row.try_get(0)?,
        version: version_of(row.try_get(1)?)?,
        code: row.try_get(2)?,
        author_id: row.try_get(3)?,
        created_at: time(row.try_get(4)?)?,
    })
}

/// One version of a function.
pub async fn version(
    conn: &mut AnyConnection,
    function: &str,
    version: u32,
) -> Result<Option<VersionRow>, StoreError> {
    let row = sqlx::query(
        "SELECT function_id, version, code, author_id, created_at FROM function_versions
         WHERE function_id = $1 AND version = $2",
    )
    .bind(function)
    .bind(i64::from(version))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_version).transpose()
}

/// Versions of a function, newest first, older than `before` (0: from the newest).
pub async fn versions(
    conn: &mut AnyConnection,
    function: &str,
    before: u32,
    limit: u32,
) -> Result<Vec<VersionRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT function_id, version, code, author_id, created_at FROM function_versions
         WHERE function_id = $1 AND ($2 = 0 OR version < $2) ORDER BY version DESC LIMIT $3",
    )
    .bind(function)
    .bind(i64::from(before))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_version).collect()
}

/// Deletes a function and its versions (it must have no instances).
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    for table in ["function_versions", "function_errors"] {
        sqlx::query(sql!("DELETE FROM {table} WHERE function_id = $1"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM functions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

const INSTANCE_COLUMNS: &str =
    "id, function_id, destination_id, name, enabled, sealed_settings, created_at, updated_at";

/// The AEAD context binds sealed settings to their instance.
fn context(id: &str) -> String {
    format!("function-instance:{id}")
}

fn decode_instance(key: &Key, row: &sqlx::any::AnyRow) -> Result<InstanceRow, StoreError> {
    let id: String = row.try_get(0)?;
    let sealed: String = row.try_get(5)?;
    let opened = key.open(&sealed, &context(&id))?;
    let settings = serde_json::from_str(opened.expose())
        .map_err(|e| StoreError::Corrupt(format!("function instance {id}: {e}")))?;
    Ok(InstanceRow {
        function_id: row.try_get(1)?,
        destination_id: row.try_get(2)?,
        name: row.try_get(3)?,
        enabled: row.try_get::<i64, _>(4)? != 0,
        settings,
        created_at: time(row.try_get(6)?)?,
        updated_at: time(row.try_get(7)?)?,
        id,
    })
}

/// Instances of `workspace`, of one function if `function` is not empty.
pub async fn instances(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    function: &str,
) -> Result<Vec<InstanceRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {INSTANCE_COLUMNS} FROM function_instances
         WHERE workspace_id = $1 AND ($2 = '' OR function_id = $2) ORDER BY id"
    ))
    .bind(workspace)
    .bind(function)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| decode_instance(key, r)).collect()
}

/// An instance of `workspace`.
pub async fn instance(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    id: &str,
) -> Result<Option<InstanceRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {INSTANCE_COLUMNS} FROM function_instances WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(|r| decode_instance(key, r)).transpose()
}

/// The instance on destination `destination` of `workspace`, if it has one.
pub async fn instance_on(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    destination: &str,
) -> Result<Option<InstanceRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {INSTANCE_COLUMNS} FROM function_instances
         WHERE workspace_id = $1 AND destination_id = $2"
    ))
    .bind(workspace)
    .bind(destination)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(|r| decode_instance(key, r)).transpose()
}

fn seal(key: &Key, row: &InstanceRow) -> Result<String, StoreError> {
    let text =
        serde_json::to_string(&row.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(key.seal(&text, &context(&row.id))?)
}

/// Inserts an instance; a destination holds one at most (a second is a conflict).
pub async fn insert_instance(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    row: &InstanceRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO function_instances (id, workspace_id, function_id, destination_id, name, enabled, sealed_settings, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&row.id)
    .bind(workspace)
    .bind(&row.function_id)
    .bind(&row.destination_id)
    .bind(&row.name)
    .bind(i64::from(row.enabled))
    .bind(seal(key, row)?)
    .bind(ms(row.created_at))
    .bind(ms(row.updated_at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!(
        "an insert function on destination {}",
        row.destination_id
    )))?;
    Ok(())
}

/// Replaces an instance's name, enabled flag and settings.
pub async fn update_instance(
    conn: &mut AnyConnection,
    key: &Key,
    row: &InstanceRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE function_instances SET name = $2, enabled = $3, sealed_settings = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(i64::from(row.enabled))
    .bind(seal(key, row)?)
    .bind(ms(row.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes an instance.
pub async fn delete_instance(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM function_instances WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A source function attached to a source: its webhook endpoint, its settings' values
/// and the digest of the endpoint's secret.
#[derive(Clone, PartialEq)]
pub struct SourceFunctionRow {
    /// Id: the endpoint is `POST /v1/functions/{id}` on the data listener.
    pub id: String,
    /// The function.
    pub function_id: String,
    /// The source whose path its events take (one source function per source).
    pub source_id: String,
    /// A disabled endpoint answers 404.
    pub enabled: bool,
    /// The settings' values, in the clear (in memory only).
    pub settings: Map<String, Value>,
    /// SHA-256 of the endpoint's secret (hex): the secret itself is shown once.
    pub secret_sha256: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

const SOURCE_FUNCTION_COLUMNS: &str =
    "id, function_id, source_id, enabled, sealed_settings, secret_sha256, created_at, updated_at";

fn source_context(id: &str) -> String {
    format!("source-function:{id}")
}

fn decode_source_function(
    key: &Key,
    row: &sqlx::any::AnyRow,
) -> Result<SourceFunctionRow, StoreError> {
    let id: String = row.try_get(0)?;
    let sealed: String = row.try_get(4)?;
    let opened = key.open(&sealed, &source_context(&id))?;
    let settings = serde_json::from_str(opened.expose())
        .map_err(|e| StoreError::Corrupt(format!("source function {id}: {e}")))?;
    Ok(SourceFunctionRow {
        function_id: row.try_get(1)?,
        source_id: row.try_get(2)?,
        enabled: row.try_get::<i64, _>(3)? != 0,
        settings,
        secret_sha256: row.try_get(5)?,
        created_at: time(row.try_get(6)?)?,
        updated_at: time(row.try_get(7)?)?,
        id,
    })
}

/// Source functions of `workspace`: of one function if `function` is not empty.
pub async fn source_functions(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    function: &str,
) -> Result<Vec<SourceFunctionRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {SOURCE_FUNCTION_COLUMNS} FROM source_functions
         WHERE workspace_id = $1 AND ($2 = '' OR function_id = $2) ORDER BY id"
    ))
    .bind(workspace)
    .bind(function)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| decode_source_function(key, r))
        .collect()
}

/// The source function of a source, if it has one.
pub async fn source_function_of(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    source: &str,
) -> Result<Option<SourceFunctionRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {SOURCE_FUNCTION_COLUMNS} FROM source_functions
         WHERE workspace_id = $1 AND source_id = $2"
    ))
    .bind(workspace)
    .bind(source)
    .fetch_optional(conn)
    .await?;
    row.as_ref()
        .map(|r| decode_source_function(key, r))
        .transpose()
}

fn seal_source(key: &Key, row: &SourceFunctionRow) -> Result<String, StoreError> {
    let text =
        serde_json::to_string(&row.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(key.seal(&text, &source_context(&row.id))?)
}

/// Inserts or replaces (by id) a source function.
pub async fn put_source_function(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    row: &SourceFunctionRow,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM source_functions WHERE id = $1")
        .bind(&row.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO source_functions (id, workspace_id, function_id, source_id, enabled, sealed_settings, secret_sha256, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&row.id)
    .bind(workspace)
    .bind(&row.function_id)
    .bind(&row.source_id)
    .bind(i64::from(row.enabled))
    .bind(seal_source(key, row)?)
    .bind(&row.secret_sha256)
    .bind(ms(row.created_at))
    .bind(ms(row.updated_at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!(
        "a source function on source {}",
        row.source_id
    )))?;
    Ok(())
}

/// Deletes a source's source function.
pub async fn delete_source_function(
    conn: &mut AnyConnection,
    source: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM source_functions WHERE source_id = $1")
        .bind(source)
        .execute(conn)
        .await?;
    Ok(())
}
