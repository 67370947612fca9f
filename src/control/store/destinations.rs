//! Destinations (their settings sealed at rest) and their connections to sources.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::sources::Viewer;
use super::{StoreError, ms, time};
use crate::catalog::DestinationDoc;
use crate::control::secret::Key;

/// A destination: its catalog document (settings in the clear, in memory only) and the
/// sources connected to it.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRow {
    /// Id (also `doc.id`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Destination type in Segment's catalog (free text for Sluice).
    pub metadata_id: String,
    /// A disabled destination receives nothing.
    pub enabled: bool,
    /// The catalog document: type, settings (credentials), filter, retry.
    pub doc: DestinationDoc,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "d.id, d.name, d.metadata_id, d.enabled, d.sealed_doc, d.created_at, d.updated_at, d.consent_categories";

/// The AEAD context binds a sealed document to its destination: a sealed blob copied
/// onto another row does not open.
fn context(id: &str) -> String {
    format!("destination:{id}")
}

async fn decode(
    conn: &mut AnyConnection,
    key: &Key,
    row: &sqlx::any::AnyRow,
) -> Result<DestinationRow, StoreError> {
    let id: String = row.try_get(0)?;
    let sealed: String = row.try_get(4)?;
    let opened = key.open(&sealed, &context(&id))?;
    let mut doc: DestinationDoc = serde_json::from_str(opened.expose())
        .map_err(|e| StoreError::Corrupt(format!("destination {id}: {e}")))?;
    doc.id.clone_from(&id);
    doc.enabled = row.try_get::<i64, _>(3)? != 0;
    doc.consent_categories = serde_json::from_str(&row.try_get::<String, _>(7)?)
        .map_err(|e| StoreError::Corrupt(format!("destination {id} consent categories: {e}")))?;
    doc.sources = connected(conn, &id).await?;
    Ok(DestinationRow {
        name: row.try_get(1)?,
        metadata_id: row.try_get(2)?,
        enabled: doc.enabled,
        created_at: time(row.try_get(5)?)?,
        updated_at: time(row.try_get(6)?)?,
        id,
        doc,
    })
}

async fn connected(conn: &mut AnyConnection, id: &str) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT source_id FROM connections WHERE destination_id = $1 ORDER BY source_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// The level of the viewer on destination `d`, as SQL (binds as the sources' filter).
const DESTINATION_LEVEL: &str = "CASE WHEN $4 = 1 THEN 3 ELSE COALESCE(
    (SELECT g.level FROM grants g WHERE g.principal_kind = 'user' AND g.principal_id = $2
        AND g.target_kind = 'destination' AND g.target_id = d.id
        AND (g.expires_at IS NULL OR g.expires_at > $3)),
    (SELECT MAX(g.level) FROM grants g JOIN group_members gm ON gm.group_id = g.principal_id
        WHERE g.principal_kind = 'group' AND gm.user_id = $2
        AND g.target_kind = 'destination' AND g.target_id = d.id
        AND (g.expires_at IS NULL OR g.expires_at > $3)),
    $5) END";

/// Destinations of `workspace` the viewer may see, by id after `after`.
pub async fn list_visible(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    viewer: Viewer<'_>,
    after: &str,
    limit: u32,
) -> Result<Vec<DestinationRow>, StoreError> {
    let role = viewer.user.effective_role();
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM destinations d WHERE d.workspace_id = $1 AND d.id > $6
           AND ({DESTINATION_LEVEL}) > 0 ORDER BY d.id LIMIT $7"
    ))
    .bind(workspace)
    .bind(&viewer.user.id)
    .bind(ms(viewer.now))
    .bind(i64::from(role.is_unrestricted()))
    .bind(viewer.user.default_level().rank())
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(decode(conn, key, row).await?);
    }
    Ok(out)
}

/// A destination of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    id: &str,
) -> Result<Option<DestinationRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM destinations d WHERE d.workspace_id = $1 AND d.id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some(decode(conn, key, &row).await?)),
        None => Ok(None),
    }
}

/// Every destination of `workspace` (catalog export).
pub async fn all(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
) -> Result<Vec<DestinationRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM destinations d WHERE d.workspace_id = $1 ORDER BY d.id"
    ))
    .bind(workspace)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(decode(conn, key, row).await?);
    }
    Ok(out)
}

fn seal(key: &Key, row: &DestinationRow) -> Result<String, StoreError> {
    let mut doc = row.doc.clone();
    doc.sources.clear();
    // Its insert function is kept with the function's instances, its consent categories
    // in their own column ([`set_consent`]), not here.
    doc.function = None;
    doc.consent_categories.clear();
    let text = serde_json::to_string(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(key.seal(&text, &context(&row.id))?)
}

/// Inserts a destination and its connections.
pub async fn insert(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    row: &DestinationRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO destinations (id, workspace_id, name, metadata_id, enabled, sealed_doc, created_at, updated_at, consent_categories)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&row.id)
    .bind(workspace)
    .bind(&row.name)
    .bind(&row.metadata_id)
    .bind(i64::from(row.enabled))
    .bind(seal(key, row)?)
    .bind(ms(row.created_at))
    .bind(ms(row.updated_at))
    .bind(
        serde_json::to_string(&row.doc.consent_categories)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    )
    .execute(&mut *conn)
    .await
    .map_err(StoreError::conflict_as(format!("destination {}", row.id)))?;
    set_connections(conn, &row.id, &row.doc.sources).await
}

/// Replaces a destination's fields, sealed document and connections.
pub async fn update(
    conn: &mut AnyConnection,
    key: &Key,
    row: &DestinationRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE destinations SET name = $2, metadata_id = $3, enabled = $4, sealed_doc = $5, updated_at = $6 WHERE id = $1",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.metadata_id)
    .bind(i64::from(row.enabled))
    .bind(seal(key, row)?)
    .bind(ms(row.updated_at))
    .execute(&mut *conn)
    .await?;
    set_connections(conn, &row.id, &row.doc.sources).await
}

async fn set_connections(
    conn: &mut AnyConnection,
    id: &str,
    sources: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM connections WHERE destination_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let mut seen = std::collections::HashSet::new();
    for source in sources.iter().filter(|s| seen.insert(*s)) {
        sqlx::query("INSERT INTO connections (destination_id, source_id) VALUES ($1, $2)")
            .bind(id)
            .bind(source)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Replaces a destination's consent categories (and nothing else).
pub async fn set_consent(
    conn: &mut AnyConnection,
    id: &str,
    categories: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(categories).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE destinations SET consent_categories = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(text)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a destination with its connections and grants.
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM function_instances WHERE destination_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM grants WHERE target_kind = 'destination' AND target_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM connections WHERE destination_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM destinations WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
