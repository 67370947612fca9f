//! Sources, their labels and write keys; the SQL that hides sources a user may not see.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, opt_time, time};
use crate::catalog::KeyDigest;
use crate::consent::WithoutConsent;
use crate::control::policy;
use crate::pii::RuleDoc;

/// A source row with its labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRow {
    /// Id: the slug, globally unique (the data plane's source id).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Source type (Segment catalog metadata id), free text for Sluice.
    pub metadata_id: String,
    /// A disabled source's keys get 401.
    pub enabled: bool,
    /// Requests per second (with `rate_burst`), if limited.
    pub rate_per_second: Option<u32>,
    /// Burst for the rate limit.
    pub rate_burst: Option<u32>,
    /// Tracking plan id.
    pub tracking_plan_id: Option<String>,
    /// `off` | `warn` | `block`.
    pub enforcement: String,
    /// Protocols controls (catalog `protocols` table) as JSON.
    pub controls: serde_json::Value,
    /// What destinations with consent categories get of its events without consent
    /// preferences.
    pub without_consent: WithoutConsent,
    /// Paths its events have dropped, hashed or masked before they are stored.
    pub pii: Vec<RuleDoc>,
    /// Labels `(key, value)`.
    pub labels: Vec<(String, String)>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

impl SourceRow {
    /// The policy's view.
    pub fn as_ref(&self) -> policy::SourceRef<'_> {
        policy::SourceRef {
            id: &self.id,
            labels: &self.labels,
        }
    }
}

const COLUMNS: &str = "s.id, s.name, s.metadata_id, s.enabled, s.rate_per_second, s.rate_burst, s.tracking_plan_id, s.enforcement, s.controls, s.created_at, s.updated_at, s.without_consent, s.pii_rules";

fn decode(row: &sqlx::any::AnyRow) -> Result<SourceRow, StoreError> {
    let controls: String = row.try_get(8)?;
    let small = |v: Option<i64>| v.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(SourceRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        metadata_id: row.try_get(2)?,
        enabled: row.try_get::<i64, _>(3)? != 0,
        rate_per_second: small(row.try_get(4)?),
        rate_burst: small(row.try_get(5)?),
        tracking_plan_id: row.try_get(6)?,
        enforcement: row.try_get(7)?,
        controls: serde_json::from_str(&controls)
            .map_err(|e| StoreError::Corrupt(format!("source controls: {e}")))?,
        without_consent: consent_from(&row.try_get::<String, _>(11)?)?,
        pii: serde_json::from_str(&row.try_get::<String, _>(12)?)
            .map_err(|e| StoreError::Corrupt(format!("source pii_rules: {e}")))?,
        labels: Vec::new(),
        created_at: time(row.try_get(9)?)?,
        updated_at: time(row.try_get(10)?)?,
    })
}

/// The column's text of a consent default.
fn consent_name(value: WithoutConsent) -> &'static str {
    match value {
        WithoutConsent::Deliver => "deliver",
        WithoutConsent::Withhold => "withhold",
    }
}

/// Sets what a source's events without consent preferences do (and nothing else).
pub async fn set_without_consent(
    conn: &mut AnyConnection,
    id: &str,
    value: WithoutConsent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sources SET without_consent = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(consent_name(value))
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces a source's PII rules (and nothing else).
pub async fn set_pii(
    conn: &mut AnyConnection,
    id: &str,
    rules: &[RuleDoc],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sources SET pii_rules = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(rules_text(rules)?)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

fn rules_text(rules: &[RuleDoc]) -> Result<String, StoreError> {
    serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn consent_from(text: &str) -> Result<WithoutConsent, StoreError> {
    match text {
        "deliver" => Ok(WithoutConsent::Deliver),
        "withhold" => Ok(WithoutConsent::Withhold),
        other => Err(StoreError::Corrupt(format!(
            "source without_consent {other:?}"
        ))),
    }
}

/// Who is looking, for the SQL visibility filter: owners and admins see everything;
/// others see what their level (own grant › own label grants › best group grant ›
/// role default, exactly as [`policy::level`]) puts at `read_only` or above.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    /// The user.
    pub user: &'a policy::User,
    /// Decision time (expired grants count as absent).
    pub now: DateTime<Utc>,
}

/// The level of the viewer on source `s` (alias), as SQL; binds `$2` user, `$3` now,
/// `$4` unrestricted flag, `$5` role default rank.
const SOURCE_LEVEL: &str = "CASE WHEN $4 = 1 THEN 3 ELSE COALESCE(
    (SELECT g.level FROM grants g WHERE g.principal_kind = 'user' AND g.principal_id = $2
        AND g.target_kind = 'source' AND g.target_id = s.id
        AND (g.expires_at IS NULL OR g.expires_at > $3)),
    (SELECT MAX(g.level) FROM grants g JOIN source_labels l
        ON l.source_id = s.id AND l.label_key = g.target_id AND l.label_value = g.target_value
        WHERE g.principal_kind = 'user' AND g.principal_id = $2 AND g.target_kind = 'source_label'
        AND (g.expires_at IS NULL OR g.expires_at > $3)),
    (SELECT MAX(g.level) FROM grants g JOIN group_members gm ON gm.group_id = g.principal_id
        WHERE g.principal_kind = 'group' AND gm.user_id = $2
        AND (g.expires_at IS NULL OR g.expires_at > $3)
        AND ((g.target_kind = 'source' AND g.target_id = s.id)
          OR (g.target_kind = 'source_label' AND EXISTS (SELECT 1 FROM source_labels l
                WHERE l.source_id = s.id AND l.label_key = g.target_id AND l.label_value = g.target_value)))),
    $5) END";

/// Sources of `workspace` the viewer may see, by id after `after`, at most `limit`.
pub async fn list_visible(
    conn: &mut AnyConnection,
    workspace: &str,
    viewer: Viewer<'_>,
    after: &str,
    limit: u32,
) -> Result<Vec<SourceRow>, StoreError> {
    let role = viewer.user.effective_role();
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM sources s WHERE s.workspace_id = $1 AND s.id > $6
           AND ({SOURCE_LEVEL}) > 0 ORDER BY s.id LIMIT $7"
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
    let mut out = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    if let (Some(first), Some(last)) = (out.first(), out.last()) {
        // One query for the page's labels (ids are ordered: a range covers the page; ids
        // are unique across workspaces and only the page's ids are looked up, so the
        // range needs no join, which keeps SQLite's planner on the index range).
        let rows = sqlx::query(
            "SELECT source_id, label_key, label_value FROM source_labels
             WHERE source_id >= $1 AND source_id <= $2 ORDER BY label_key, label_value",
        )
        .bind(&first.id)
        .bind(&last.id)
        .fetch_all(conn)
        .await?;
        let mut by_source: std::collections::HashMap<String, Vec<(String, String)>> =
            std::collections::HashMap::new();
        for row in &rows {
            by_source
                .entry(row.try_get(0)?)
                .or_default()
                .push((row.try_get(1)?, row.try_get(2)?));
        }
        for source in &mut out {
            source.labels = by_source.remove(&source.id).unwrap_or_default();
        }
    }
    Ok(out)
}

/// Keys of the sources with ids from `first` to `last` (a page), by source id. Ids are
/// unique across workspaces: look up only the ids of a page already filtered by workspace.
pub async fn keys_of_many(
    conn: &mut AnyConnection,
    first: &str,
    last: &str,
) -> Result<std::collections::HashMap<String, Vec<WriteKeyRow>>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {KEY_COLUMNS} FROM write_keys
         WHERE source_id >= $1 AND source_id <= $2 ORDER BY created_at, id"
    ))
    .bind(first)
    .bind(last)
    .fetch_all(conn)
    .await?;
    let mut out: std::collections::HashMap<String, Vec<WriteKeyRow>> =
        std::collections::HashMap::new();
    for row in &rows {
        let key = decode_key(row)?;
        out.entry(key.source_id.clone()).or_default().push(key);
    }
    Ok(out)
}

/// A source of `workspace` (whoever looks; the caller asks the policy).
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<SourceRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM sources s WHERE s.workspace_id = $1 AND s.id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut source = decode(&row)?;
    source.labels = labels_of(conn, id).await?;
    Ok(Some(source))
}

/// Every source of `workspace` (catalog export).
pub async fn all(conn: &mut AnyConnection, workspace: &str) -> Result<Vec<SourceRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM sources s WHERE s.workspace_id = $1 ORDER BY s.id"
    ))
    .bind(workspace)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let labels = sqlx::query(
        "SELECT l.source_id, l.label_key, l.label_value FROM source_labels l JOIN sources s ON s.id = l.source_id WHERE s.workspace_id = $1 ORDER BY l.source_id, l.label_key, l.label_value",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    let mut by_source: std::collections::HashMap<String, Vec<(String, String)>> =
        std::collections::HashMap::new();
    for row in &labels {
        by_source
            .entry(row.try_get(0)?)
            .or_default()
            .push((row.try_get(1)?, row.try_get(2)?));
    }
    for source in &mut out {
        source.labels = by_source.remove(&source.id).unwrap_or_default();
    }
    Ok(out)
}

async fn labels_of(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT label_key, label_value FROM source_labels WHERE source_id = $1 ORDER BY label_key, label_value",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Inserts a source (its id must be new across all workspaces).
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    source: &SourceRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sources (id, workspace_id, name, metadata_id, enabled, rate_per_second, rate_burst, tracking_plan_id, enforcement, controls, created_at, updated_at, without_consent, pii_rules)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&source.id)
    .bind(workspace)
    .bind(&source.name)
    .bind(&source.metadata_id)
    .bind(i64::from(source.enabled))
    .bind(source.rate_per_second.map(i64::from))
    .bind(source.rate_burst.map(i64::from))
    .bind(source.tracking_plan_id.clone())
    .bind(&source.enforcement)
    .bind(source.controls.to_string())
    .bind(ms(source.created_at))
    .bind(ms(source.updated_at))
    .bind(consent_name(source.without_consent))
    .bind(rules_text(&source.pii)?)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::conflict_as(format!("source {}", source.id)))?;
    set_labels(conn, &source.id, &source.labels).await
}

/// Replaces a source's editable fields and labels.
pub async fn update(conn: &mut AnyConnection, source: &SourceRow) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sources SET name = $2, enabled = $3, rate_per_second = $4, rate_burst = $5, tracking_plan_id = $6, enforcement = $7, controls = $8, updated_at = $9 WHERE id = $1",
    )
    .bind(&source.id)
    .bind(&source.name)
    .bind(i64::from(source.enabled))
    .bind(source.rate_per_second.map(i64::from))
    .bind(source.rate_burst.map(i64::from))
    .bind(source.tracking_plan_id.clone())
    .bind(&source.enforcement)
    .bind(source.controls.to_string())
    .bind(ms(source.updated_at))
    .execute(&mut *conn)
    .await?;
    set_labels(conn, &source.id, &source.labels).await
}

async fn set_labels(
    conn: &mut AnyConnection,
    id: &str,
    labels: &[(String, String)],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM source_labels WHERE source_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in labels.iter().filter(|l| seen.insert(*l)) {
        sqlx::query(
            "INSERT INTO source_labels (source_id, label_key, label_value) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes a source with its keys, labels, connections and grants.
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM grants WHERE target_kind = 'source' AND target_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for table in [
        "write_keys",
        "source_labels",
        "connections",
        "source_functions",
    ] {
        sqlx::query(sql!("DELETE FROM {table} WHERE source_id = $1"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    // Its suppressions are lifted, so that a new source given this id inherits none.
    super::regulations::forget_source(&mut *conn, id).await?;
    sqlx::query("DELETE FROM sources WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A write key as stored: its digest, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteKeyRow {
    /// Id.
    pub id: String,
    /// Source id.
    pub source_id: String,
    /// SHA-256 of the key (what the gateway matches).
    #[serde(skip)]
    pub digest: KeyDigest,
    /// The key's first characters, for people to tell keys apart.
    pub display: String,
    /// Who made it (user id, or `system`).
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// After this the key is refused (rotation overlap).
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when revoked: refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str =
    "id, source_id, digest, display, created_by, created_at, expires_at, revoked_at";

fn decode_key(row: &sqlx::any::AnyRow) -> Result<WriteKeyRow, StoreError> {
    Ok(WriteKeyRow {
        id: row.try_get(0)?,
        source_id: row.try_get(1)?,
        digest: {
            let text: String = row.try_get(2)?;
            KeyDigest::from_hex(&text)
                .ok_or_else(|| StoreError::Corrupt(format!("write key digest {text:?}")))?
        },
        display: row.try_get(3)?,
        created_by: row.try_get(4)?,
        created_at: time(row.try_get(5)?)?,
        expires_at: opt_time(row.try_get(6)?)?,
        revoked_at: opt_time(row.try_get(7)?)?,
    })
}

/// Stores a new write key's digest.
pub async fn add_key(
    conn: &mut AnyConnection,
    source: &str,
    digest: KeyDigest,
    display: &str,
    created_by: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<WriteKeyRow, StoreError> {
    let row = WriteKeyRow {
        id: new_id("wk_"),
        source_id: source.to_owned(),
        digest,
        display: display.to_owned(),
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    sqlx::query(sql!(
        "INSERT INTO write_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
    ))
    .bind(&row.id)
    .bind(source)
    .bind(digest.to_hex())
    .bind(display)
    .bind(created_by)
    .bind(ms(now))
    .bind(expires_at.map(ms))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as("write key"))?;
    Ok(row)
}

/// A source's keys, oldest first.
pub async fn keys_of(
    conn: &mut AnyConnection,
    source: &str,
) -> Result<Vec<WriteKeyRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {KEY_COLUMNS} FROM write_keys WHERE source_id = $1 ORDER BY created_at, id"
    ))
    .bind(source)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_key).collect()
}

/// Every key of a workspace's sources (catalog export).
pub async fn all_keys(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<WriteKeyRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT k.id, k.source_id, k.digest, k.display, k.created_by, k.created_at, k.expires_at, k.revoked_at
         FROM write_keys k JOIN sources s ON s.id = k.source_id WHERE s.workspace_id = $1 ORDER BY k.source_id, k.created_at, k.id",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_key).collect()
}

/// Makes a key expire at `at` at the latest (a rotation's overlap); a key that expires
/// sooner keeps its expiry.
pub async fn expire_key(
    conn: &mut AnyConnection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE write_keys SET expires_at = $2 WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(id)
    .bind(ms(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a key revoked (it stays listed, refused).
pub async fn revoke_key(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE write_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}
