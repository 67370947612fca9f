//! Browser sessions: issued at sign-in, looked up by the digest of the cookie's secret,
//! kept alive by use up to an absolute end, revoked at logout or when access is taken.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, opt_time, time};

/// A session's row (never the cookie's secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Id (`ses_…`), for listing and revoking.
    pub id: String,
    /// The workspace it signs into.
    pub workspace_id: String,
    /// Its user.
    pub user_id: String,
    /// The synchronizer token changes must echo in `X-CSRF-Token`.
    pub csrf: String,
    /// How it was opened: `password` (later also `saml`, `oidc`).
    pub method: String,
    /// Opened.
    pub created_at: DateTime<Utc>,
    /// Last request.
    pub last_seen_at: DateTime<Utc>,
    /// Ends unless used before.
    pub idle_expires_at: DateTime<Utc>,
    /// Ends whatever happens.
    pub absolute_expires_at: DateTime<Utc>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Client address at sign-in.
    pub ip: String,
    /// Client user agent at sign-in.
    pub user_agent: String,
}

impl SessionRow {
    /// Whether it may be used at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

const COLUMNS: &str = "id, workspace_id, user_id, csrf, method, created_at, last_seen_at, \
                       idle_expires_at, absolute_expires_at, revoked_at, ip, user_agent";

fn decode(row: &sqlx::any::AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        csrf: row.try_get(3)?,
        method: row.try_get(4)?,
        created_at: time(row.try_get(5)?)?,
        last_seen_at: time(row.try_get(6)?)?,
        idle_expires_at: time(row.try_get(7)?)?,
        absolute_expires_at: time(row.try_get(8)?)?,
        revoked_at: opt_time(row.try_get(9)?)?,
        ip: row.try_get(10)?,
        user_agent: row.try_get(11)?,
    })
}

/// What a new session says.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// SHA-256 of the cookie's secret, lower-case hex.
    pub digest: &'a str,
    /// Workspace.
    pub workspace_id: &'a str,
    /// User.
    pub user_id: &'a str,
    /// Synchronizer token.
    pub csrf: &'a str,
    /// How it was opened.
    pub method: &'a str,
    /// Idle lifetime.
    pub idle: chrono::Duration,
    /// Absolute lifetime.
    pub absolute: chrono::Duration,
    /// Client address.
    pub ip: &'a str,
    /// Client user agent.
    pub user_agent: &'a str,
}

/// Opens a session.
pub async fn create(
    conn: &mut AnyConnection,
    new: &NewSession<'_>,
    now: DateTime<Utc>,
) -> Result<SessionRow, StoreError> {
    let row = SessionRow {
        id: new_id("ses_"),
        workspace_id: new.workspace_id.to_owned(),
        user_id: new.user_id.to_owned(),
        csrf: new.csrf.to_owned(),
        method: new.method.to_owned(),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: (now + new.idle).min(now + new.absolute),
        absolute_expires_at: now + new.absolute,
        revoked_at: None,
        ip: new.ip.to_owned(),
        user_agent: new.user_agent.to_owned(),
    };
    sqlx::query(
        "INSERT INTO sessions (id, digest, workspace_id, user_id, csrf, method, created_at, \
         last_seen_at, idle_expires_at, absolute_expires_at, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11)",
    )
    .bind(&row.id)
    .bind(new.digest)
    .bind(&row.workspace_id)
    .bind(&row.user_id)
    .bind(&row.csrf)
    .bind(&row.method)
    .bind(ms(now))
    .bind(ms(row.idle_expires_at))
    .bind(ms(row.absolute_expires_at))
    .bind(new.ip)
    .bind(new.user_agent)
    .execute(conn)
    .await?;
    Ok(row)
}

/// The session behind a cookie's digest, live or not (the caller decides, at its time).
pub async fn by_digest(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<SessionRow>, StoreError> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM sessions WHERE digest = $1"))
        .bind(digest)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// A user's live sessions in `workspace` at `now`, newest first.
pub async fn live_of(
    conn: &mut AnyConnection,
    workspace: &str,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<SessionRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM sessions WHERE workspace_id = $1 AND user_id = $2 \
         AND revoked_at IS NULL AND idle_expires_at > $3 AND absolute_expires_at > $3 \
         ORDER BY created_at DESC, id"
    ))
    .bind(workspace)
    .bind(user_id)
    .bind(ms(now))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Records a use: the idle end moves to `now + idle`, never past the absolute end.
pub async fn touch(
    conn: &mut AnyConnection,
    session: &SessionRow,
    idle: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let idle_end = (now + idle).min(session.absolute_expires_at);
    sqlx::query(
        "UPDATE sessions SET last_seen_at = $2, idle_expires_at = $3 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(&session.id)
    .bind(ms(now))
    .bind(ms(idle_end))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends one session.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every session of a user but `keep` (password changed, access taken away); how
/// many ended.
pub async fn revoke_others(
    conn: &mut AnyConnection,
    user_id: &str,
    keep: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $2 \
         WHERE user_id = $1 AND revoked_at IS NULL AND id <> $3",
    )
    .bind(user_id)
    .bind(ms(now))
    .bind(keep.unwrap_or_default())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Ends the sessions of `workspace` opened without its identity provider (password or
/// link), but those of `keep`; how many ended.
pub async fn revoke_local(
    conn: &mut AnyConnection,
    workspace: &str,
    keep: &[String],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let live = sqlx::query(
        "SELECT id, user_id FROM sessions WHERE workspace_id = $1 AND revoked_at IS NULL \
         AND method NOT IN ('oidc', 'saml')",
    )
    .bind(workspace)
    .fetch_all(&mut *conn)
    .await?;
    let mut ended = 0;
    for row in live {
        let user: String = row.try_get(1)?;
        if keep.contains(&user) {
            continue;
        }
        let id: String = row.try_get(0)?;
        revoke(&mut *conn, &id, now).await?;
        ended += 1;
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_its_first_end_or_revocation() {
        let start = Utc::now();
        let mut s = SessionRow {
            id: "ses_x".into(),
            workspace_id: "ws".into(),
            user_id: "usr".into(),
            csrf: "c".into(),
            method: "password".into(),
            created_at: start,
            last_seen_at: start,
            idle_expires_at: start + chrono::Duration::hours(12),
            absolute_expires_at: start + chrono::Duration::days(7),
            revoked_at: None,
            ip: String::new(),
            user_agent: String::new(),
        };
        assert!(s.live(start + chrono::Duration::hours(11)));
        assert!(!s.live(start + chrono::Duration::hours(12)), "idle end");
        s.idle_expires_at = start + chrono::Duration::days(30);
        assert!(!s.live(start + chrono::Duration::days(7)), "absolute end");
        s.idle_expires_at = start + chrono::Duration::hours(12);
        s.revoked_at = Some(start);
        assert!(!s.live(start + chrono::Duration::minutes(1)), "revoked");
    }
}
