//! Workspaces and their settings.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, time};
use crate::control::policy;
use crate::control::secret::Key;

/// A workspace row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workspace {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// URL-safe unique name (`default` for the first one).
    pub slug: String,
    /// Settings.
    pub settings: Settings,
    /// How people sign in, and for how long.
    pub sign_in: SignInPolicy,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Workspace settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Members may publish tracking plans without review.
    pub members_can_publish: bool,
    /// Longest lifetime of an API token, in days.
    pub token_max_days: u32,
    /// A reviewer may approve their own tracking-plan change request.
    #[serde(default)]
    pub self_approval: bool,
    /// The longest elevation approved, in minutes.
    #[serde(default = "eight_hours")]
    pub elevation_max_minutes: u32,
}

fn eight_hours() -> u32 {
    480
}

impl Settings {
    /// What the policy needs of them.
    pub fn policy(self) -> policy::Settings {
        policy::Settings {
            members_can_publish: self.members_can_publish,
            self_approval: self.self_approval,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            members_can_publish: false,
            token_max_days: 365,
            self_approval: false,
            elevation_max_minutes: eight_hours(),
        }
    }
}

/// How people of a workspace sign in, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInPolicy {
    /// A session unused this many minutes ends.
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in, whatever happens.
    pub session_absolute_hours: u32,
    /// Local (password) sign-in is off except for break-glass owners.
    pub require_sso: bool,
}

impl Default for SignInPolicy {
    fn default() -> Self {
        Self {
            session_idle_minutes: 12 * 60,
            session_absolute_hours: 7 * 24,
            require_sso: false,
        }
    }
}

impl SignInPolicy {
    /// A session's idle lifetime.
    pub fn idle(self) -> chrono::TimeDelta {
        chrono::TimeDelta::minutes(i64::from(self.session_idle_minutes))
    }

    /// A session's absolute lifetime.
    pub fn absolute(self) -> chrono::TimeDelta {
        chrono::TimeDelta::hours(i64::from(self.session_absolute_hours))
    }
}

const COLUMNS: &str = "id, name, slug, members_can_publish, token_max_days, created_at, \
                       session_idle_minutes, session_absolute_hours, require_sso, self_approval, elevation_max_minutes";

fn count(row: &sqlx::any::AnyRow, at: usize) -> Result<u32, StoreError> {
    Ok(u32::try_from(row.try_get::<i64, _>(at)?).unwrap_or(u32::MAX))
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        slug: row.try_get(2)?,
        settings: Settings {
            members_can_publish: row.try_get::<i64, _>(3)? != 0,
            token_max_days: count(row, 4)?,
            self_approval: row.try_get::<i64, _>(9)? != 0,
            elevation_max_minutes: count(row, 10)?,
        },
        created_at: time(row.try_get(5)?)?,
        sign_in: SignInPolicy {
            session_idle_minutes: count(row, 6)?,
            session_absolute_hours: count(row, 7)?,
            require_sso: row.try_get::<i64, _>(8)? != 0,
        },
    })
}

/// Creates a workspace.
pub async fn create(
    conn: &mut AnyConnection,
    name: &str,
    slug: &str,
    now: DateTime<Utc>,
) -> Result<Workspace, StoreError> {
    let ws = Workspace {
        id: new_id("ws_"),
        name: name.to_owned(),
        slug: slug.to_owned(),
        settings: Settings::default(),
        sign_in: SignInPolicy::default(),
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO workspaces (id, name, slug, members_can_publish, token_max_days, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&ws.id)
    .bind(&ws.name)
    .bind(&ws.slug)
    .bind(i64::from(ws.settings.members_can_publish))
    .bind(i64::from(ws.settings.token_max_days))
    .bind(ms(now))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("workspace {slug}")))?;
    Ok(ws)
}

/// A workspace by id.
pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Workspace>, StoreError> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM workspaces WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// A workspace by slug.
pub async fn by_slug(
    conn: &mut AnyConnection,
    slug: &str,
) -> Result<Option<Workspace>, StoreError> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM workspaces WHERE slug = $1"))
        .bind(slug)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Replaces a workspace's name and settings.
pub async fn update(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
    settings: Settings,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE workspaces SET name = $2, members_can_publish = $3, token_max_days = $4, \
         self_approval = $5, elevation_max_minutes = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(i64::from(settings.members_can_publish))
    .bind(i64::from(settings.token_max_days))
    .bind(i64::from(settings.self_approval))
    .bind(i64::from(settings.elevation_max_minutes))
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces a workspace's sign-in policy.
pub async fn set_sign_in(
    conn: &mut AnyConnection,
    id: &str,
    policy: SignInPolicy,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE workspaces SET session_idle_minutes = $2, session_absolute_hours = $3, require_sso = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(i64::from(policy.session_idle_minutes))
    .bind(i64::from(policy.session_absolute_hours))
    .bind(i64::from(policy.require_sso))
    .execute(conn)
    .await?;
    Ok(())
}

/// Every workspace's id, oldest first.
pub async fn all_ids(conn: &mut AnyConnection) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT id FROM workspaces ORDER BY created_at, id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// The salt of `workspace`'s PII `hash` rules (sealed at rest with `key`), if it has
/// one.
pub async fn pii_salt(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
) -> Result<Option<String>, StoreError> {
    let sealed: Option<String> = sqlx::query("SELECT pii_salt FROM workspaces WHERE id = $1")
        .bind(workspace)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get::<Option<String>, _>(0))
        .transpose()?
        .flatten();
    match sealed {
        Some(sealed) => Ok(Some(
            key.open(&sealed, &salt_context(workspace))?
                .expose()
                .to_owned(),
        )),
        None => Ok(None),
    }
}

/// Gives `workspace` a PII salt if it has none: `adopted` (a catalog file's, so hashes
/// made before an import still match), else 32 random bytes in hex. Returns the salt.
pub async fn ensure_pii_salt(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    adopted: Option<&str>,
) -> Result<String, StoreError> {
    if let Some(salt) = pii_salt(conn, key, workspace).await? {
        return Ok(salt);
    }
    let salt = match adopted {
        Some(salt) => salt.to_owned(),
        None => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)
                .map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
            hex::encode(bytes)
        }
    };
    sqlx::query("UPDATE workspaces SET pii_salt = $2 WHERE id = $1 AND pii_salt IS NULL")
        .bind(workspace)
        .bind(key.seal(&salt, &salt_context(workspace))?)
        .execute(&mut *conn)
        .await?;
    // Writers queue on the change's lock, so this is the salt now; read it to be sure.
    pii_salt(conn, key, workspace)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("workspace {workspace} has no PII salt")))
}

fn salt_context(workspace: &str) -> String {
    format!("pii-salt:{workspace}")
}
