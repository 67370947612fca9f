//! Password reset links: made by an admin for a member, used once before they expire.
//! Only the link's SHA-256 is kept.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, time};

/// A reset link, as made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReset<'a> {
    /// SHA-256 of the link's secret (hex).
    pub digest: &'a str,
    /// Workspace.
    pub workspace_id: &'a str,
    /// Whose password it sets.
    pub user_id: &'a str,
    /// Who made it.
    pub created_by: &'a str,
    /// Good until.
    pub expires_at: DateTime<Utc>,
}

/// Wrong authenticator codes a link takes before it is spent.
pub const MAX_FAILURES: i64 = 5;

/// What a usable link is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// Workspace.
    pub workspace_id: String,
    /// Whose password it sets.
    pub user_id: String,
    /// Who made it.
    pub created_by: String,
}

/// Makes a link, and ends the user's earlier unused ones (the newest one counts).
pub async fn create(
    conn: &mut AnyConnection,
    reset: &NewReset<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
        .bind(reset.user_id)
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO password_resets (digest, workspace_id, user_id, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(reset.digest)
    .bind(reset.workspace_id)
    .bind(reset.user_id)
    .bind(reset.created_by)
    .bind(ms(now))
    .bind(ms(reset.expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// The link, if it is unused and unexpired.
pub async fn peek(
    conn: &mut AnyConnection,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Option<Reset>, StoreError> {
    let row = sqlx::query(
        "SELECT workspace_id, user_id, expires_at, created_by FROM password_resets \
         WHERE digest = $1 AND used_at IS NULL",
    )
    .bind(digest)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if time(row.try_get(2)?)? <= now {
        return Ok(None);
    }
    Ok(Some(Reset {
        workspace_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        created_by: row.try_get(3)?,
    }))
}

/// Uses the link (once): what it is for, or `None` when unknown, used or expired.
pub async fn take(
    conn: &mut AnyConnection,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Option<Reset>, StoreError> {
    let Some(reset) = peek(conn, digest, now).await? else {
        return Ok(None);
    };
    let used = sqlx::query(
        "UPDATE password_resets SET used_at = $2 WHERE digest = $1 AND used_at IS NULL",
    )
    .bind(digest)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok((used.rows_affected() == 1).then_some(reset))
}

/// Counts a wrong authenticator code sent with the link; at [`MAX_FAILURES`] the link
/// is spent. `true` when it still works.
pub async fn failed(
    conn: &mut AnyConnection,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    sqlx::query("UPDATE password_resets SET failures = failures + 1 WHERE digest = $1")
        .bind(digest)
        .execute(&mut *conn)
        .await?;
    let spent = sqlx::query(
        "UPDATE password_resets SET used_at = $3 WHERE digest = $1 AND failures >= $2 AND used_at IS NULL",
    )
    .bind(digest)
    .bind(MAX_FAILURES)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(spent.rows_affected() == 0)
}

/// Spends every unused link for, or made by, a user (they left or were deactivated).
pub async fn end_for(
    conn: &mut AnyConnection,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE password_resets SET used_at = $2 WHERE (user_id = $1 OR created_by = $1) AND used_at IS NULL",
    )
    .bind(user_id)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(())
}
