//! First start and break-glass: the `default` workspace, the file catalog imported into
//! it, a one-time setup link for the first owner; `sluice admin bootstrap` making an
//! owner and their token from a shell.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::audit::{Actor, Draft, Kind};
use super::policy::{Role, Scope};
use super::store::catalog::{self, Imported};
use super::store::users::{self, NewUser, UserRow};
use super::store::{Change, Store, StoreError, invites, labels, tokens, workspaces};
use super::token;
use crate::catalog::{Document, Snapshot};

/// How long the first owner's setup link is valid.
pub const SETUP_LINK_HOURS: i64 = 24;
/// Days the token `sluice admin bootstrap` prints is valid.
pub const BOOTSTRAP_TOKEN_DAYS: i64 = 30;

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog file to import is unreadable or not installable.
    #[error("cannot import {path}: {reason}")]
    Catalog {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No randomness for a secret.
    #[error(transparent)]
    Random(#[from] token::NoRandomness),
    /// No workspace has this slug.
    #[error("no workspace {0:?}")]
    NoWorkspace(String),
    /// `sluice admin bootstrap` on a workspace that has an owner already.
    #[error(
        "workspace {0:?} has an owner already; ask them for access, or, if no owner can reach the API, run `sluice admin recover-owner --email …` on this host"
    )]
    HasOwner(String),
}

impl From<tokens::IssueError> for BootstrapError {
    fn from(error: tokens::IssueError) -> Self {
        match error {
            tokens::IssueError::Random(e) => Self::Random(e),
            tokens::IssueError::Store(e) => Self::Store(e),
        }
    }
}

/// What the first start did.
#[derive(Debug)]
pub struct FirstRun {
    /// The workspace made.
    pub workspace: workspaces::Workspace,
    /// What the catalog file brought (none when there was no file).
    pub imported: Option<Imported>,
    /// The one-time setup link (print it once).
    pub setup_link: String,
}

/// Reads and checks a catalog file for import: parsed and installable, or why not.
pub fn read_catalog(path: &Path) -> Result<Document, BootstrapError> {
    let fail = |reason: String| BootstrapError::Catalog {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let doc = Document::parse(&text).map_err(|e| fail(e.to_string()))?;
    Snapshot::try_build(1, &doc).map_err(|e| fail(e.to_string()))?;
    Ok(doc)
}

fn system(
    action: Kind,
    resource_type: &str,
    id: &str,
    after: serde_json::Value,
    now: DateTime<Utc>,
) -> Draft {
    Draft {
        time: now,
        actor: Actor::System,
        action: action.name().into_owned(),
        resource_type: resource_type.into(),
        resource_id: id.into(),
        before: None,
        after: Some(after),
        ip: None,
        user_agent: None,
    }
}

/// `sluice admin import`: adds a catalog file's sources, keys (as digests), destinations
/// and plans to workspace `slug`, audited as the system's act (the first start imports
/// the same way).
pub async fn import(
    store: &Store,
    slug: &str,
    file: &Path,
    now: DateTime<Utc>,
) -> Result<Imported, BootstrapError> {
    let doc = read_catalog(file)?;
    let mut change = store.change().await?;
    let ws = workspaces::by_slug(change.conn(), slug)
        .await?
        .ok_or_else(|| BootstrapError::NoWorkspace(slug.to_owned()))?;
    let done = import_into(&mut change, store, &ws.id, &doc, file, now).await?;
    change.commit().await?;
    Ok(done)
}

/// Imports `doc` (read from `file`) into `workspace` inside `change`, with its audit event.
async fn import_into(
    change: &mut Change,
    store: &Store,
    workspace: &str,
    doc: &Document,
    file: &Path,
    now: DateTime<Utc>,
) -> Result<Imported, BootstrapError> {
    let done = catalog::import(change.conn(), store.key(), workspace, doc, now).await?;
    change
        .record(system(
            Kind::CatalogImport,
            "workspace",
            workspace,
            json!({"file": file.display().to_string(), "sources": done.sources,
                   "writeKeys": done.keys, "destinations": done.destinations, "trackingPlans": done.plans}),
            now,
        ))
        .await?;
    Ok(done)
}

/// On an empty store: makes workspace `default` (with the standard labels), imports
/// `catalog` when the file exists, and a one-time owner setup link. `None` when the
/// store has a workspace already.
pub async fn first_run(
    store: &Store,
    catalog_file: &Path,
    public_url: &str,
    now: DateTime<Utc>,
) -> Result<Option<FirstRun>, BootstrapError> {
    let doc = if catalog_file.exists() {
        Some(read_catalog(catalog_file)?)
    } else {
        None
    };
    let mut change = store.change().await?;
    if !workspaces::all_ids(change.conn()).await?.is_empty() {
        return Ok(None);
    }
    let ws = workspaces::create(change.conn(), "Default", "default", now).await?;
    for (key, value) in labels::DEFAULTS {
        labels::create(change.conn(), &ws.id, key, value, "").await?;
    }
    change
        .record(system(
            Kind::WorkspaceCreate,
            "workspace",
            &ws.id,
            json!({"slug": ws.slug}),
            now,
        ))
        .await?;
    let imported = match &doc {
        Some(doc) => Some(import_into(&mut change, store, &ws.id, doc, catalog_file, now).await?),
        None => None,
    };
    let secret = token::random_base62(32)?;
    let expires = now + Duration::hours(SETUP_LINK_HOURS);
    invites::add_link(
        change.conn(),
        &ws.id,
        &token::digest_of(&secret).to_hex(),
        Role::Owner,
        "",
        expires,
    )
    .await?;
    change
        .record(system(
            Kind::SetupLinkCreate,
            "workspace",
            &ws.id,
            json!({"role": "owner", "expiresAt": expires}),
            now,
        ))
        .await?;
    change.commit().await?;
    Ok(Some(FirstRun {
        workspace: ws,
        imported,
        setup_link: format!("{}/setup/{secret}", public_url.trim_end_matches('/')),
    }))
}

/// `sluice admin bootstrap --email`: the first owner of `default` and a token (every
/// scope, 30 days), printed once. Refused when the workspace has an owner.
pub async fn owner(
    store: &Store,
    email: &str,
    now: DateTime<Utc>,
) -> Result<(UserRow, token::Plaintext), BootstrapError> {
    let mut change = store.change().await?;
    let ws = match workspaces::by_slug(change.conn(), "default").await? {
        Some(ws) => ws,
        None => {
            let ws = workspaces::create(change.conn(), "Default", "default", now).await?;
            for (key, value) in labels::DEFAULTS {
                labels::create(change.conn(), &ws.id, key, value, "").await?;
            }
            ws
        }
    };
    if users::owner_count(change.conn(), &ws.id).await? > 0 {
        return Err(BootstrapError::HasOwner(ws.slug));
    }
    let user = users::create(
        change.conn(),
        &ws.id,
        NewUser {
            email,
            first_name: "",
            last_name: "",
            role: Role::Owner,
            origin: "bootstrap",
        },
        now,
    )
    .await?;
    let (row, plaintext) = owner_token(&mut change, &ws, &user.id, "bootstrap", now).await?;
    change
        .record(system(
            Kind::UserBootstrap,
            "user",
            &user.id,
            json!({"email": user.email, "role": "owner", "token": row.id}),
            now,
        ))
        .await?;
    change.commit().await?;
    Ok((user, plaintext))
}

/// A token for a new or recovered owner: every scope a person holds, 30 days (capped by
/// the workspace's maximum).
async fn owner_token(
    change: &mut Change,
    ws: &workspaces::Workspace,
    user: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(tokens::TokenRow, token::Plaintext), BootstrapError> {
    let new = tokens::NewToken {
        user_id: user,
        name,
        scopes: &Scope::PERSONAL,
        expires_at: now
            + Duration::days(BOOTSTRAP_TOKEN_DAYS.min(i64::from(ws.settings.token_max_days))),
    };
    Ok(tokens::issue(change.conn(), &ws.id, new, now).await?)
}

/// `sluice admin recover-owner --email`: the break-glass way back in when no owner can
/// reach the API (every owner token revoked or expired). It needs the store, so access
/// to the machine, never the API. The person becomes an owner of workspace `slug` (a
/// member is promoted, a former or new person is made one) and gets a fresh token; the
/// audit log records it as the system's act.
pub async fn recover_owner(
    store: &Store,
    slug: &str,
    email: &str,
    now: DateTime<Utc>,
) -> Result<(UserRow, token::Plaintext), BootstrapError> {
    let mut change = store.change().await?;
    let ws = workspaces::by_slug(change.conn(), slug)
        .await?
        .ok_or_else(|| BootstrapError::NoWorkspace(slug.to_owned()))?;
    let (user, before) = match users::by_email(change.conn(), &ws.id, email).await? {
        Some(member) => {
            users::set_role(change.conn(), &ws.id, &member.id, Role::Owner).await?;
            let before = member.role;
            (
                UserRow {
                    role: Role::Owner,
                    ..member
                },
                Some(before),
            )
        }
        None => {
            let user = users::create(
                change.conn(),
                &ws.id,
                NewUser {
                    email,
                    first_name: "",
                    last_name: "",
                    role: Role::Owner,
                    origin: "recovery",
                },
                now,
            )
            .await?;
            (user, None)
        }
    };
    let (row, plaintext) = owner_token(&mut change, &ws, &user.id, "recovery", now).await?;
    change
        .record(Draft {
            before: before.map(|r| json!({"email": user.email, "role": r.name()})),
            ..system(
                Kind::OwnerRecover,
                "user",
                &user.id,
                json!({"email": user.email, "role": "owner", "token": row.id, "via": "sluice admin recover-owner"}),
                now,
            )
        })
        .await?;
    change.commit().await?;
    Ok((user, plaintext))
}
