//! Invites and one-time links (the first owner's setup link, invite acceptance).

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, time};
use crate::control::policy::{Level, Role, Target};

/// What an invite brings besides its role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    /// The person reaches only what `grants` give (no role default).
    pub scoped: bool,
    /// Grants they get on joining.
    pub grants: Vec<(Target, Level)>,
    /// Why they are given that access (kept on each grant).
    pub justification: String,
    /// When the grants end (`None`: never).
    pub access_expires_at: Option<DateTime<Utc>>,
    /// Who invited them (user id): the grants' approver.
    pub invited_by: String,
}

/// Records an invite (replacing an earlier one for the same email, and its links).
pub async fn put(
    conn: &mut AnyConnection,
    workspace: &str,
    email: &str,
    role: Role,
    terms: &Terms,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let email = email.trim().to_lowercase();
    remove(conn, workspace, &email).await?;
    let grants: Vec<serde_json::Value> = terms
        .grants
        .iter()
        .map(|(target, level)| serde_json::json!({"target": target, "level": level.name()}))
        .collect();
    sqlx::query(
        "INSERT INTO invites (workspace_id, email, role, created_at, scoped, grants, justification, invited_by, access_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(workspace)
    .bind(&email)
    .bind(role.name())
    .bind(ms(now))
    .bind(i64::from(terms.scoped))
    .bind(serde_json::Value::Array(grants).to_string())
    .bind(&terms.justification)
    .bind(&terms.invited_by)
    .bind(terms.access_expires_at.map(ms))
    .execute(conn)
    .await?;
    Ok(())
}

/// The terms of `email`'s pending invite (`None`: no invite).
pub async fn terms(
    conn: &mut AnyConnection,
    workspace: &str,
    email: &str,
) -> Result<Option<Terms>, StoreError> {
    let row =
        sqlx::query("SELECT scoped, grants, justification, invited_by, access_expires_at FROM invites WHERE workspace_id = $1 AND email = $2")
            .bind(workspace)
            .bind(email.trim().to_lowercase())
            .fetch_optional(conn)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt = |what: String| StoreError::Corrupt(format!("invite grants: {what}"));
    let text: String = row.try_get(1)?;
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    let mut grants = Vec::new();
    for item in list {
        let target: Target =
            serde_json::from_value(item["target"].clone()).map_err(|e| corrupt(e.to_string()))?;
        let level = item["level"]
            .as_str()
            .and_then(Level::parse)
            .ok_or_else(|| corrupt(item.to_string()))?;
        grants.push((target, level));
    }
    Ok(Some(Terms {
        scoped: row.try_get::<i64, _>(0)? != 0,
        grants,
        justification: row.try_get(2)?,
        invited_by: row.try_get(3)?,
        access_expires_at: super::opt_time(row.try_get(4)?)?,
    }))
}

/// Pending invites' emails and roles.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<(String, Role)>, StoreError> {
    let rows =
        sqlx::query("SELECT email, role FROM invites WHERE workspace_id = $1 ORDER BY email")
            .bind(workspace)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(1)?;
            Ok((
                r.try_get(0)?,
                Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("invite role {role}")))?,
            ))
        })
        .collect()
}

/// Withdraws an invite and kills every unused link made for it (a withdrawn or
/// superseded invite's link answers as unknown).
pub async fn remove(
    conn: &mut AnyConnection,
    workspace: &str,
    email: &str,
) -> Result<(), StoreError> {
    let email = email.trim().to_lowercase();
    sqlx::query("DELETE FROM invites WHERE workspace_id = $1 AND email = $2")
        .bind(workspace)
        .bind(&email)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM setup_links WHERE workspace_id = $1 AND email = $2 AND used_at IS NULL",
    )
    .bind(workspace)
    .bind(&email)
    .execute(conn)
    .await?;
    Ok(())
}

/// Kills every unused first-owner setup link of `workspace`: called whenever an owner
/// comes to be, by whatever path.
pub async fn kill_setup_links(conn: &mut AnyConnection, workspace: &str) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM setup_links WHERE workspace_id = $1 AND email = '' AND used_at IS NULL",
    )
    .bind(workspace)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a one-time link's digest (hex), valid until `expires_at`.
pub async fn add_link(
    conn: &mut AnyConnection,
    workspace: &str,
    digest: &str,
    role: Role,
    email: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO setup_links (digest, workspace_id, role, email, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(digest)
        .bind(workspace)
        .bind(role.name())
        .bind(email.trim().to_lowercase())
        .bind(ms(expires_at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Why a link cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Unknown (or never existed).
    Unknown,
    /// Used already.
    Used,
    /// Past its expiry.
    Expired,
}

/// What a usable link gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Workspace joined.
    pub workspace_id: String,
    /// Role given.
    pub role: Role,
    /// The only email that may use it (empty: any).
    pub email: String,
}

/// Looks a link up without using it (the form page).
pub async fn peek_link(
    conn: &mut AnyConnection,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Result<Link, LinkState>, StoreError> {
    let row = sqlx::query(
        "SELECT workspace_id, role, expires_at, used_at, email FROM setup_links WHERE digest = $1",
    )
    .bind(digest)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(Err(LinkState::Unknown));
    };
    if row.try_get::<Option<i64>, _>(3)?.is_some() {
        return Ok(Err(LinkState::Used));
    }
    if time(row.try_get(2)?)? <= now {
        return Ok(Err(LinkState::Expired));
    }
    let role: String = row.try_get(1)?;
    let link = Link {
        workspace_id: row.try_get(0)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("link role {role}")))?,
        email: row.try_get(4)?,
    };
    if !still_wanted(conn, &link).await? {
        return Ok(Err(LinkState::Unknown));
    }
    Ok(Ok(link))
}

/// Whether what made the link still holds: an invite's link needs that very invite
/// (same email, same role) still pending; the first-owner link needs a workspace with
/// no owner. Links are also deleted when either changes; this check stands even if a
/// path forgets to.
async fn still_wanted(conn: &mut AnyConnection, link: &Link) -> Result<bool, StoreError> {
    if link.email.is_empty() {
        return Ok(link.role == Role::Owner
            && super::users::owner_count(conn, &link.workspace_id).await? == 0);
    }
    let pending = sqlx::query("SELECT role FROM invites WHERE workspace_id = $1 AND email = $2")
        .bind(&link.workspace_id)
        .bind(&link.email)
        .fetch_optional(conn)
        .await?;
    Ok(match pending {
        Some(row) => row.try_get::<String, _>(0)? == link.role.name(),
        None => false,
    })
}

/// Uses a one-time link: marks it used and returns what it gives, or why not.
pub async fn use_link(
    conn: &mut AnyConnection,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Result<Link, LinkState>, StoreError> {
    let link = match peek_link(conn, digest, now).await? {
        Ok(link) => link,
        Err(state) => return Ok(Err(state)),
    };
    let used =
        sqlx::query("UPDATE setup_links SET used_at = $2 WHERE digest = $1 AND used_at IS NULL")
            .bind(digest)
            .bind(ms(now))
            .execute(conn)
            .await?;
    if used.rows_affected() != 1 {
        return Ok(Err(LinkState::Used));
    }
    Ok(Ok(link))
}
