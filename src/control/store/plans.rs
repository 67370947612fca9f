//! Tracking plans: the draft rules and immutable published versions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, time};
use crate::protocols::RuleDoc;

/// A tracking plan row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Segment's plan type (`LIVE`, `RULE_PROPERTY`, …), kept as given.
    #[serde(rename = "type")]
    pub plan_type: String,
    /// The rules being edited (what the next publish makes a version of).
    pub rules: Vec<RuleDoc>,
    /// The newest published version (0: never published).
    pub published_version: u32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
    /// Who owns it (its creator, or a successor named at their offboarding); none for
    /// plans imported from a catalog file.
    pub owner_id: Option<String>,
}

const COLUMNS: &str =
    "id, name, plan_type, rules, published_version, created_at, updated_at, description, owner_id";

fn decode(row: &sqlx::any::AnyRow) -> Result<PlanRow, StoreError> {
    let id: String = row.try_get(0)?;
    let rules: String = row.try_get(3)?;
    Ok(PlanRow {
        rules: serde_json::from_str(&rules)
            .map_err(|e| StoreError::Corrupt(format!("plan {id} rules: {e}")))?,
        id,
        name: row.try_get(1)?,
        plan_type: row.try_get(2)?,
        published_version: u32::try_from(row.try_get::<i64, _>(4)?).unwrap_or(0),
        created_at: time(row.try_get(5)?)?,
        updated_at: time(row.try_get(6)?)?,
        description: row.try_get(7)?,
        owner_id: row.try_get(8)?,
    })
}

fn rules_json(rules: &[RuleDoc]) -> Result<String, StoreError> {
    serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Inserts a plan.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    plan: &PlanRow,
) -> Result<(), StoreError> {
    sqlx::query(sql!(
        "INSERT INTO tracking_plans (workspace_id, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(workspace)
    .bind(&plan.id)
    .bind(&plan.name)
    .bind(&plan.plan_type)
    .bind(rules_json(&plan.rules)?)
    .bind(i64::from(plan.published_version))
    .bind(ms(plan.created_at))
    .bind(ms(plan.updated_at))
    .bind(&plan.description)
    .bind(&plan.owner_id)
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("tracking plan {}", plan.id)))?;
    Ok(())
}

/// A plan of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<PlanRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM tracking_plans WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Plans of `workspace` after the cursor id, of one type (`""`: any).
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    plan_type: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<PlanRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM tracking_plans WHERE workspace_id = $1 AND id > $2 AND ($4 = '' OR plan_type = $4) ORDER BY id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .bind(plan_type)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Replaces the draft's name, description and rules.
pub async fn update(conn: &mut AnyConnection, plan: &PlanRow) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tracking_plans SET name = $2, rules = $3, updated_at = $4, description = $5 WHERE id = $1",
    )
        .bind(&plan.id)
        .bind(&plan.name)
        .bind(rules_json(&plan.rules)?)
        .bind(ms(plan.updated_at))
        .bind(&plan.description)
        .execute(conn)
        .await?;
    Ok(())
}

/// Publishes the draft as the next immutable version; returns its number.
pub async fn publish(
    conn: &mut AnyConnection,
    plan: &PlanRow,
    by: &str,
    now: DateTime<Utc>,
) -> Result<u32, StoreError> {
    let version = plan.published_version + 1;
    sqlx::query(
        "INSERT INTO tracking_plan_versions (plan_id, version, rules, published_at, published_by) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&plan.id)
    .bind(i64::from(version))
    .bind(rules_json(&plan.rules)?)
    .bind(ms(now))
    .bind(by)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::conflict_as(format!("version {version} of plan {}", plan.id)))?;
    sqlx::query("UPDATE tracking_plans SET published_version = $2 WHERE id = $1")
        .bind(&plan.id)
        .bind(i64::from(version))
        .execute(conn)
        .await?;
    Ok(version)
}

/// The newest published version of every plan of `workspace`: `(id, name, version, rules)`.
pub async fn published(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<(String, String, u32, Vec<RuleDoc>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.id, p.name, v.version, v.rules FROM tracking_plans p
         JOIN tracking_plan_versions v ON v.plan_id = p.id AND v.version = p.published_version
         WHERE p.workspace_id = $1 ORDER BY p.id",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get(0)?;
        let rules: String = r.try_get(3)?;
        let rules = serde_json::from_str(&rules)
            .map_err(|e| StoreError::Corrupt(format!("plan {id} version rules: {e}")))?;
        let version = u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0);
        out.push((id, r.try_get(1)?, version, rules));
    }
    Ok(out)
}

/// The rules of one published version of a plan (version 0: none, the empty plan).
pub async fn version_rules(
    conn: &mut AnyConnection,
    plan: &str,
    version: u32,
) -> Result<Option<Vec<RuleDoc>>, StoreError> {
    if version == 0 {
        return Ok(Some(Vec::new()));
    }
    let row =
        sqlx::query("SELECT rules FROM tracking_plan_versions WHERE plan_id = $1 AND version = $2")
            .bind(plan)
            .bind(i64::from(version))
            .fetch_optional(conn)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let rules: String = row.try_get(0)?;
    serde_json::from_str(&rules)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("plan {plan} version {version} rules: {e}")))
}

/// Hands every plan `from` owns in `workspace` to `to`; the plans' ids.
pub async fn transfer(
    conn: &mut AnyConnection,
    workspace: &str,
    from: &str,
    to: &str,
) -> Result<Vec<String>, StoreError> {
    let ids = owned_by(&mut *conn, workspace, from).await?;
    sqlx::query(
        "UPDATE tracking_plans SET owner_id = $3 WHERE workspace_id = $1 AND owner_id = $2",
    )
    .bind(workspace)
    .bind(from)
    .bind(to)
    .execute(conn)
    .await?;
    Ok(ids)
}

/// The ids of the plans `user` owns in `workspace`.
pub async fn owned_by(
    conn: &mut AnyConnection,
    workspace: &str,
    user: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM tracking_plans WHERE workspace_id = $1 AND owner_id = $2 ORDER BY id",
    )
    .bind(workspace)
    .bind(user)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Deletes a plan (its versions and change requests go with it; sources that named it
/// enforce nothing).
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM change_requests WHERE plan_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE sources SET tracking_plan_id = NULL WHERE tracking_plan_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM tracking_plan_versions WHERE plan_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM tracking_plans WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
