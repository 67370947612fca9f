//! The workspace's labels (`key:value`, e.g. `environment:prod`).

use sqlx::{AnyConnection, Row};

use super::StoreError;

/// Every workspace starts with these.
pub const DEFAULTS: [(&str, &str); 3] = [
    ("environment", "prod"),
    ("environment", "staging"),
    ("environment", "dev"),
];

/// Adds a label.
pub async fn create(
    conn: &mut AnyConnection,
    workspace: &str,
    key: &str,
    value: &str,
    description: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO labels (workspace_id, label_key, label_value, description) VALUES ($1, $2, $3, $4)")
        .bind(workspace)
        .bind(key)
        .bind(value)
        .bind(description)
        .execute(conn)
        .await
        .map_err(StoreError::conflict_as(format!("label {key}:{value}")))?;
    Ok(())
}

/// The workspace's labels: `(key, value, description)`.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let rows = sqlx::query("SELECT label_key, label_value, description FROM labels WHERE workspace_id = $1 ORDER BY label_key, label_value")
        .bind(workspace)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Deletes a label of `workspace`.
pub async fn delete(
    conn: &mut AnyConnection,
    workspace: &str,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM labels WHERE workspace_id = $1 AND label_key = $2 AND label_value = $3",
    )
    .bind(workspace)
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}
