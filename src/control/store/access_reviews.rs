//! Access review campaigns and their items.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, opt_time, time};

/// A campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRow {
    /// Id (`arv_…`).
    pub id: String,
    /// Name (e.g. `2026 Q4`).
    pub name: String,
    /// Who opened it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Still open (items to decide) or closed.
    pub open: bool,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<DateTime<Utc>>,
    /// The evidence record a closed campaign keeps.
    pub evidence: Option<Value>,
}

/// One line to review.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    /// Id (`ari_…`).
    pub id: String,
    /// Its campaign.
    pub review_id: String,
    /// Order within the campaign.
    pub position: i64,
    /// `role`, `grant`, `group_membership` or `token`.
    pub kind: String,
    /// Whose access it is (a user id; a group's grant: the group id).
    pub subject_id: String,
    /// Their email (or `group:<name>`).
    pub subject_name: String,
    /// Who is asked to decide it.
    pub reviewer_id: String,
    /// The line as it stood when the campaign opened.
    pub detail: Value,
    /// Why it deserves a look.
    pub flags: Vec<String>,
    /// `keep`, `revoke` or `change`, once decided.
    pub decision: Option<String>,
    /// The reviewer's note.
    pub note: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// What a change set.
    pub changed_to: Option<Value>,
}

fn json(id: &str, text: Option<String>) -> Result<Option<Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("access review {id}: {e}")))
    })
    .transpose()
}

const REVIEW_COLUMNS: &str =
    "id, name, created_by, created_at, status, closed_by, closed_at, evidence";

fn decode_review(row: &sqlx::any::AnyRow) -> Result<ReviewRow, StoreError> {
    let id: String = row.try_get(0)?;
    let status: String = row.try_get(4)?;
    Ok(ReviewRow {
        evidence: json(&id, row.try_get(7)?)?,
        name: row.try_get(1)?,
        created_by: row.try_get(2)?,
        created_at: time(row.try_get(3)?)?,
        open: status == "OPEN",
        closed_by: row.try_get(5)?,
        closed_at: opt_time(row.try_get(6)?)?,
        id,
    })
}

const ITEM_COLUMNS: &str = "id, review_id, position, kind, subject_id, subject_name, \
                            reviewer_id, detail, flags, decision, note, decided_by, decided_at, \
                            changed_to";

fn decode_item(row: &sqlx::any::AnyRow) -> Result<ItemRow, StoreError> {
    let id: String = row.try_get(0)?;
    let flags: String = row.try_get(8)?;
    Ok(ItemRow {
        review_id: row.try_get(1)?,
        position: row.try_get(2)?,
        kind: row.try_get(3)?,
        subject_id: row.try_get(4)?,
        subject_name: row.try_get(5)?,
        reviewer_id: row.try_get(6)?,
        detail: json(&id, Some(row.try_get(7)?))?.unwrap_or_default(),
        flags: flags
            .split(' ')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        decision: row.try_get(9)?,
        note: row.try_get(10)?,
        decided_by: row.try_get(11)?,
        decided_at: opt_time(row.try_get(12)?)?,
        changed_to: json(&id, row.try_get(13)?)?,
        id,
    })
}

/// Opens a campaign with its items.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    review: &ReviewRow,
    items: &[ItemRow],
) -> Result<(), StoreError> {
    sqlx::query(sql!(
        "INSERT INTO access_reviews (workspace_id, {REVIEW_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, 'OPEN', NULL, NULL, NULL)"
    ))
    .bind(workspace)
    .bind(&review.id)
    .bind(&review.name)
    .bind(&review.created_by)
    .bind(ms(review.created_at))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::conflict_as(format!(
        "access review {}",
        review.id
    )))?;
    for item in items {
        sqlx::query(sql!(
            "INSERT INTO access_review_items ({ITEM_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, '', NULL, NULL, NULL)"
        ))
        .bind(&item.id)
        .bind(&review.id)
        .bind(item.position)
        .bind(&item.kind)
        .bind(&item.subject_id)
        .bind(&item.subject_name)
        .bind(&item.reviewer_id)
        .bind(item.detail.to_string())
        .bind(item.flags.join(" "))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A campaign of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<ReviewRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {REVIEW_COLUMNS} FROM access_reviews WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_review).transpose()
}

/// Campaigns of `workspace` after the cursor id.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<ReviewRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {REVIEW_COLUMNS} FROM access_reviews WHERE workspace_id = $1 AND id > $2 \
         ORDER BY id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_review).collect()
}

/// Every item of a campaign, in order.
pub async fn items(conn: &mut AnyConnection, review: &str) -> Result<Vec<ItemRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {ITEM_COLUMNS} FROM access_review_items WHERE review_id = $1 ORDER BY position"
    ))
    .bind(review)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_item).collect()
}

/// One item of a campaign.
pub async fn item(
    conn: &mut AnyConnection,
    review: &str,
    id: &str,
) -> Result<Option<ItemRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {ITEM_COLUMNS} FROM access_review_items WHERE review_id = $1 AND id = $2"
    ))
    .bind(review)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_item).transpose()
}

/// Records an item's decision; false when it was already decided.
pub async fn decide(conn: &mut AnyConnection, item: &ItemRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE access_review_items SET decision = $2, note = $3, decided_by = $4, \
         decided_at = $5, changed_to = $6 WHERE id = $1 AND decision IS NULL",
    )
    .bind(&item.id)
    .bind(&item.decision)
    .bind(&item.note)
    .bind(&item.decided_by)
    .bind(item.decided_at.map(ms))
    .bind(item.changed_to.as_ref().map(Value::to_string))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Closes an open campaign with its evidence; false when it was not open.
pub async fn close(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
    at: DateTime<Utc>,
    evidence: &Value,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE access_reviews SET status = 'CLOSED', closed_by = $2, closed_at = $3, \
         evidence = $4 WHERE id = $1 AND status = 'OPEN'",
    )
    .bind(id)
    .bind(by)
    .bind(ms(at))
    .bind(evidence.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
