//! Authenticator apps (RFC 6238) of local accounts and their one-time recovery codes.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, opt_time};

/// A person's authenticator: its secret (sealed), whether a first code confirmed it,
/// and the last time step a code was accepted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRow {
    /// The shared secret, sealed for `totp:<user id>`.
    pub secret: String,
    /// Set once a first code matched: from then on sign-in asks for a code.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last step a code was accepted for (a code is good once).
    pub last_step: u64,
}

/// The user's authenticator, confirmed or not.
pub async fn get(conn: &mut AnyConnection, user: &str) -> Result<Option<TotpRow>, StoreError> {
    let row = sqlx::query("SELECT secret, confirmed_at, last_step FROM totp WHERE user_id = $1")
        .bind(user)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(TotpRow {
            secret: r.try_get(0)?,
            confirmed_at: opt_time(r.try_get(1)?)?,
            last_step: u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
        })
    })
    .transpose()
}

/// Starts enrolling a new (unconfirmed) authenticator, replacing an unconfirmed one.
pub async fn begin(
    conn: &mut AnyConnection,
    user: &str,
    sealed: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    remove(&mut *conn, user).await?;
    sqlx::query("INSERT INTO totp (user_id, secret, created_at) VALUES ($1, $2, $3)")
        .bind(user)
        .bind(sealed)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Accepts `step` if it is later than every step accepted before (whether it was).
/// Two requests racing with one code: one wins.
pub async fn use_step(conn: &mut AnyConnection, user: &str, step: u64) -> Result<bool, StoreError> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let done = sqlx::query("UPDATE totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2")
        .bind(user)
        .bind(step)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the authenticator confirmed and replaces the recovery codes with `digests`.
pub async fn confirm(
    conn: &mut AnyConnection,
    user: &str,
    digests: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE totp SET confirmed_at = $2 WHERE user_id = $1")
        .bind(user)
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    for digest in digests {
        sqlx::query("INSERT INTO recovery_codes (user_id, digest) VALUES ($1, $2)")
            .bind(user)
            .bind(digest)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Spends a recovery code (by digest); whether it was unused.
pub async fn use_recovery(
    conn: &mut AnyConnection,
    user: &str,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND digest = $2 AND used_at IS NULL",
    )
    .bind(user)
    .bind(digest)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Recovery codes left unused.
pub async fn recovery_left(conn: &mut AnyConnection, user: &str) -> Result<i64, StoreError> {
    let row =
        sqlx::query("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
            .bind(user)
            .fetch_one(conn)
            .await?;
    Ok(row.try_get(0)?)
}

/// Removes the authenticator and its recovery codes.
pub async fn remove(conn: &mut AnyConnection, user: &str) -> Result<(), StoreError> {
    for table in ["totp", "recovery_codes"] {
        sqlx::query(sql!("DELETE FROM {table} WHERE user_id = $1"))
            .bind(user)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
