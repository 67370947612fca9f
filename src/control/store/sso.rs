//! Single sign-on: a workspace's identity-provider connections, the sign-ins under way
//! at them, who people are there (their subject), and the SAML assertions already used.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, time};
use crate::control::policy::Role;

/// A connection's row: its settings as JSON (the identity layer reads them by kind) and
/// its secret sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRow {
    /// Id (`sso_…`).
    pub id: String,
    /// Workspace.
    pub workspace_id: String,
    /// `oidc` or `saml`.
    pub kind: String,
    /// Name shown on the sign-in page.
    pub name: String,
    /// Off: nobody signs in through it (tests still run).
    pub enabled: bool,
    /// The role a person it creates gets.
    pub default_role: Role,
    /// Public settings (JSON object).
    pub settings: serde_json::Value,
    /// The OIDC client secret, sealed ('' when none).
    pub secret: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, workspace_id, kind, name, enabled, default_role, settings, secret, created_at, updated_at";

fn decode(row: &sqlx::any::AnyRow) -> Result<ConnectionRow, StoreError> {
    let role: String = row.try_get(5)?;
    let settings: String = row.try_get(6)?;
    Ok(ConnectionRow {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        name: row.try_get(3)?,
        enabled: row.try_get::<i64, _>(4)? != 0,
        default_role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("connection role {role}")))?,
        settings: serde_json::from_str(&settings)
            .map_err(|e| StoreError::Corrupt(format!("connection settings: {e}")))?,
        secret: row.try_get(7)?,
        created_at: time(row.try_get(8)?)?,
        updated_at: time(row.try_get(9)?)?,
    })
}

/// A new connection's id.
pub fn connection_id() -> String {
    new_id("sso_")
}

/// Inserts `row`, or replaces the one of its id.
pub async fn put(conn: &mut AnyConnection, row: &ConnectionRow) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sso_connections WHERE id = $1 AND workspace_id = $2")
        .bind(&row.id)
        .bind(&row.workspace_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql!(
        "INSERT INTO sso_connections ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&row.id)
    .bind(&row.workspace_id)
    .bind(&row.kind)
    .bind(&row.name)
    .bind(i64::from(row.enabled))
    .bind(row.default_role.name())
    .bind(row.settings.to_string())
    .bind(&row.secret)
    .bind(ms(row.created_at))
    .bind(ms(row.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// A connection of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<ConnectionRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM sso_connections WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// A connection by id alone (a browser coming back from its identity provider names
/// no workspace).
pub async fn by_id(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<ConnectionRow>, StoreError> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM sso_connections WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// `workspace`'s connections, oldest first.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<ConnectionRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM sso_connections WHERE workspace_id = $1 ORDER BY created_at, id"
    ))
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Deletes a connection with its flows, identities and replay records; whether it was
/// there.
pub async fn delete(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<bool, StoreError> {
    if get(&mut *conn, workspace, id).await?.is_none() {
        return Ok(false);
    }
    for table in ["sso_flows", "external_identities", "saml_replay"] {
        sqlx::query(sql!("DELETE FROM {table} WHERE connection_id = $1"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM sso_connections WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(true)
}

/// A sign-in under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    /// Digest of the OIDC `state`, or the SAML request id.
    pub id: String,
    /// Its connection.
    pub connection_id: String,
    /// Digest of the browser-binding cookie ('' for a test started through the API).
    pub browser: String,
    /// OIDC nonce.
    pub nonce: String,
    /// OIDC PKCE verifier, sealed.
    pub verifier: String,
    /// Where the browser goes after (a path of the control listener).
    pub return_to: String,
    /// Only tests the connection: nobody is signed in or provisioned.
    pub test: bool,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Good until.
    pub expires_at: DateTime<Utc>,
    /// What a finished test saw (JSON).
    pub result: Option<serde_json::Value>,
    /// Digest of the session cookie the browser presented when it started ('' for
    /// none): that session ends when the sign-in opens a new one.
    pub replacing: String,
}

const FLOW_COLUMNS: &str = "id, connection_id, browser, nonce, verifier, return_to, test, \
                            created_at, expires_at, result, replacing";

fn decode_flow(row: &sqlx::any::AnyRow) -> Result<FlowRow, StoreError> {
    let result: Option<String> = row.try_get(9)?;
    Ok(FlowRow {
        id: row.try_get(0)?,
        connection_id: row.try_get(1)?,
        browser: row.try_get(2)?,
        nonce: row.try_get(3)?,
        verifier: row.try_get(4)?,
        return_to: row.try_get(5)?,
        test: row.try_get::<i64, _>(6)? != 0,
        created_at: time(row.try_get(7)?)?,
        expires_at: time(row.try_get(8)?)?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("flow result: {e}")))?,
        replacing: row.try_get(10)?,
    })
}

/// Records a sign-in started.
pub async fn start_flow(conn: &mut AnyConnection, flow: &FlowRow) -> Result<(), StoreError> {
    sqlx::query(sql!(
        "INSERT INTO sso_flows ({FLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10)"
    ))
    .bind(&flow.id)
    .bind(&flow.connection_id)
    .bind(&flow.browser)
    .bind(&flow.nonce)
    .bind(&flow.verifier)
    .bind(&flow.return_to)
    .bind(i64::from(flow.test))
    .bind(ms(flow.created_at))
    .bind(ms(flow.expires_at))
    .bind(&flow.replacing)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes a flow for its one use: `None` when unknown, used or expired. Two requests
/// racing for it: one gets it.
pub async fn take_flow(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<FlowRow>, StoreError> {
    let done = sqlx::query(
        "UPDATE sso_flows SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL AND expires_at > $2",
    )
    .bind(id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    let row = sqlx::query(sql!("SELECT {FLOW_COLUMNS} FROM sso_flows WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_flow).transpose()
}

/// Keeps what a test sign-in saw.
pub async fn keep_result(
    conn: &mut AnyConnection,
    id: &str,
    result: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sso_flows SET result = $2 WHERE id = $1")
        .bind(id)
        .bind(result.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// A test flow of `connection`, with what it saw once finished.
pub async fn test_flow(
    conn: &mut AnyConnection,
    connection: &str,
    id: &str,
) -> Result<Option<FlowRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {FLOW_COLUMNS} FROM sso_flows WHERE id = $1 AND connection_id = $2 AND test = 1"
    ))
    .bind(id)
    .bind(connection)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_flow).transpose()
}

/// Drops flows and replay records past their expiry (a test's result is kept a day).
pub async fn sweep(conn: &mut AnyConnection, now: DateTime<Utc>) -> Result<(), StoreError> {
    let day = ms(now - chrono::TimeDelta::days(1));
    sqlx::query("DELETE FROM sso_flows WHERE (test = 0 AND expires_at < $1) OR expires_at < $2")
        .bind(ms(now))
        .bind(day)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM saml_replay WHERE expires_at < $1")
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// The names of the connections a user has signed in through (`kind:name`).
pub async fn connections_of(
    conn: &mut AnyConnection,
    user: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.kind, c.name FROM external_identities e JOIN sso_connections c \
         ON c.id = e.connection_id WHERE e.user_id = $1 ORDER BY c.kind, c.name",
    )
    .bind(user)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(format!(
                "{}:{}",
                r.try_get::<String, _>(0)?,
                r.try_get::<String, _>(1)?
            ))
        })
        .collect()
}

/// The user a connection's subject is linked to.
pub async fn identity(
    conn: &mut AnyConnection,
    connection: &str,
    subject: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT user_id FROM external_identities WHERE connection_id = $1 AND subject = $2",
    )
    .bind(connection)
    .bind(subject)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get(0).map_err(StoreError::from))
        .transpose()
}

/// Links a connection's subject to a user, or records the sign-in of a linked one.
pub async fn link(
    conn: &mut AnyConnection,
    connection: &str,
    subject: &str,
    user: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE external_identities SET last_login_at = $4 WHERE connection_id = $1 AND subject = $2 AND user_id = $3",
    )
    .bind(connection)
    .bind(subject)
    .bind(user)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO external_identities (connection_id, subject, user_id, created_at, last_login_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(connection)
        .bind(subject)
        .bind(user)
        .bind(ms(now))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Records a SAML assertion id as used until `expires`; `false` when it was already
/// (a replay).
pub async fn first_use(
    conn: &mut AnyConnection,
    connection: &str,
    assertion: &str,
    expires: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let seen =
        sqlx::query("SELECT 1 FROM saml_replay WHERE connection_id = $1 AND assertion_id = $2")
            .bind(connection)
            .bind(assertion)
            .fetch_optional(&mut *conn)
            .await?;
    if seen.is_some() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO saml_replay (connection_id, assertion_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(connection)
    .bind(assertion)
    .bind(ms(expires))
    .execute(conn)
    .await?;
    Ok(true)
}
