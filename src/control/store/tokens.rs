//! Personal access tokens: digest, scopes, expiry, revocation, last use.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, opt_time, time};
use crate::control::policy::{self, Scope};
use crate::control::token;

/// A token row (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRow {
    /// Id.
    pub id: String,
    /// Workspace.
    #[serde(skip)]
    pub workspace_id: String,
    /// Owner.
    pub user_id: String,
    /// Name given by its owner.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// The prefix and first characters, for people to recognise it.
    pub display: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Refused from then on.
    pub expires_at: DateTime<Utc>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Address of the last use.
    pub last_used_ip: Option<String>,
}

impl TokenRow {
    /// The policy's view.
    pub fn policy(&self) -> policy::Token {
        policy::Token {
            id: self.id.clone(),
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

const COLUMNS: &str = "id, workspace_id, user_id, name, scopes, display, created_at, expires_at, revoked_at, last_used_at, last_used_ip";

fn decode(row: &sqlx::any::AnyRow) -> Result<TokenRow, StoreError> {
    let scopes: String = row.try_get(4)?;
    let scopes = scopes
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| Scope::parse(s).ok_or_else(|| StoreError::Corrupt(format!("token scope {s}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TokenRow {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        name: row.try_get(3)?,
        scopes,
        display: row.try_get(5)?,
        created_at: time(row.try_get(6)?)?,
        expires_at: time(row.try_get(7)?)?,
        revoked_at: opt_time(row.try_get(8)?)?,
        last_used_at: opt_time(row.try_get(9)?)?,
        last_used_ip: row.try_get(10)?,
    })
}

/// What a new token says: whose it is, its name, scopes and expiry.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// The person it acts as (only ever its maker, or a person being set up).
    pub user_id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Scopes.
    pub scopes: &'a [Scope],
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The operating system had no randomness to give.
    #[error(transparent)]
    Random(#[from] token::NoRandomness),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes a personal access token and stores its digest: its row and its plaintext (to
/// show once). The one way a token comes to be, for the API, setup links, `sluice admin
/// bootstrap` and `recover-owner` alike; callers decide who may and record the event.
pub async fn issue(
    conn: &mut AnyConnection,
    workspace: &str,
    new: NewToken<'_>,
    now: DateTime<Utc>,
) -> Result<(TokenRow, token::Plaintext), IssueError> {
    let issued = token::issue()?;
    let row = TokenRow {
        id: new_id("tok_"),
        workspace_id: workspace.to_owned(),
        user_id: new.user_id.to_owned(),
        name: new.name.to_owned(),
        scopes: new.scopes.to_vec(),
        display: issued.display.clone(),
        created_at: now,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
        last_used_ip: None,
    };
    let scopes: Vec<&str> = row.scopes.iter().map(|s| s.name()).collect();
    sqlx::query(
        "INSERT INTO tokens (id, workspace_id, user_id, name, scopes, digest, display, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&row.id)
    .bind(workspace)
    .bind(new.user_id)
    .bind(new.name)
    .bind(scopes.join(" "))
    .bind(issued.digest.to_hex())
    .bind(&issued.display)
    .bind(ms(now))
    .bind(ms(new.expires_at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as("token"))?;
    Ok((row, issued.plaintext))
}

/// The token with this digest (hex), whatever its state: the policy judges it.
pub async fn by_digest(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<TokenRow>, StoreError> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM tokens WHERE digest = $1"))
        .bind(digest)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// A token of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<TokenRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM tokens WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Tokens of `workspace` after the cursor id.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<TokenRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM tokens WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Records a use (time and address). Not audited by itself: changes it makes are.
pub async fn touch(
    conn: &mut AnyConnection,
    id: &str,
    ip: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tokens SET last_used_at = $2, last_used_ip = $3 WHERE id = $1")
        .bind(id)
        .bind(ms(now))
        .bind(ip)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes a token.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}
