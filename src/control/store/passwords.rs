//! Local sign-in credentials: one argon2id hash (PHC string) per user.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms};

/// A user's password hash, if they have one.
pub async fn get(conn: &mut AnyConnection, user_id: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT phc FROM passwords WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Sets (or replaces) a user's password hash.
pub async fn set(
    conn: &mut AnyConnection,
    user_id: &str,
    phc: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO passwords (user_id, phc, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET phc = excluded.phc, updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(phc)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(())
}
