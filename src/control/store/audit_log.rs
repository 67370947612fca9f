//! Audit events: append and read (never update or delete: the tables' triggers refuse).

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, hex32, ms};
use crate::control::audit::Event;

/// Appends a sealed event.
pub(super) async fn insert(conn: &mut AnyConnection, event: &Event) -> Result<(), StoreError> {
    let body = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO audit_events (seq, time, actor_id, action, resource_type, resource_id, body, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(i64::try_from(event.seq).unwrap_or(i64::MAX))
    .bind(ms(event.what.time))
    .bind(actor_id(event))
    .bind(&event.what.action)
    .bind(&event.what.resource_type)
    .bind(&event.what.resource_id)
    .bind(body)
    .bind(hex32(&event.prev_hash))
    .bind(hex32(&event.hash))
    .execute(conn)
    .await?;
    Ok(())
}

/// The id a filter on "actor" matches: the user (also for their tokens) or the kind.
fn actor_id(event: &Event) -> String {
    use crate::control::audit::Actor;
    match &event.what.actor {
        Actor::User { id, .. } | Actor::Token { user: id, .. } => id.clone(),
        Actor::Scim { .. } => "scim".into(),
        Actor::Sso => "sso".into(),
        Actor::System => "system".into(),
    }
}

/// Filters for [`list`]; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// User id (`system`, `scim`, `sso` for those actors).
    pub actor: Option<String>,
    /// Action name, e.g. `source.create`.
    pub action: Option<String>,
    /// Resource type, e.g. `source`.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// From this time (inclusive).
    pub start: Option<DateTime<Utc>>,
    /// Until this time (exclusive).
    pub end: Option<DateTime<Utc>>,
    /// Newest first, before this sequence number.
    pub before_seq: Option<u64>,
}

/// Events matching `filter`, newest first, at most `limit`.
pub async fn list(
    conn: &mut AnyConnection,
    filter: &Filter,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let rows = sqlx::query(
        "SELECT body FROM audit_events
         WHERE ($1 = '' OR actor_id = $1) AND ($2 = '' OR action = $2)
           AND ($3 = '' OR resource_type = $3) AND ($4 = '' OR resource_id = $4)
           AND time >= $5 AND time < $6 AND seq < $7
         ORDER BY seq DESC LIMIT $8",
    )
    .bind(filter.actor.clone().unwrap_or_default())
    .bind(filter.action.clone().unwrap_or_default())
    .bind(filter.resource_type.clone().unwrap_or_default())
    .bind(filter.resource_id.clone().unwrap_or_default())
    .bind(filter.start.map_or(i64::MIN, ms))
    .bind(filter.end.map_or(i64::MAX, ms))
    .bind(
        filter
            .before_seq
            .map_or(i64::MAX, |s| i64::try_from(s).unwrap_or(i64::MAX)),
    )
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// The whole chain in order, for verification. A row whose columns disagree with its
/// body counts as altered: the body is what the hash covers, the columns what filters see.
pub async fn all(conn: &mut AnyConnection) -> Result<Vec<Event>, StoreError> {
    after(conn, 0, i64::MAX).await
}

/// At most `limit` events after sequence number `seq`, in order, read as [`all`] reads
/// them (the audit stream's feed).
pub async fn after(
    conn: &mut AnyConnection,
    seq: u64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows = sqlx::query(
        "SELECT body, seq, hash FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut event = decode(row)?;
        let seq: i64 = row.try_get(1)?;
        let hash: String = row.try_get(2)?;
        if i64::try_from(event.seq).ok() != Some(seq) {
            event.seq = u64::try_from(seq).unwrap_or(0);
        }
        if hex32(&event.hash) != hash {
            event.hash = super::from_hex32(&hash).unwrap_or([0xff; 32]);
        }
        events.push(event);
    }
    Ok(events)
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Event, StoreError> {
    let body: String = row.try_get(0)?;
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("audit event: {e}")))
}
