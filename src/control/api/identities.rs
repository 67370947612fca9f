//! Who a token belongs to, remembered for one store revision.
//!
//! Resolving a token takes its row, its workspace and its owner's role, grants and groups:
//! several queries per request. Every change that could alter them (revoking a token,
//! a role, a grant, a group, a membership, the workspace's settings) commits through a
//! [`Change`](crate::control::store::Change) and so moves the store's revision; the
//! revision is read from the database on every request, so a change made by any process
//! on the same database is seen by the next request. What depends on the clock (token
//! and grant expiry) is decided by the policy at request time, never remembered.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::control::policy;
use crate::control::store::tokens::TokenRow;
use crate::control::store::workspaces::Workspace;
use crate::control::store::{self, StoreError};

/// Tokens remembered at most; past this the memory starts again empty.
pub const CAPACITY: usize = 10_000;

/// A token with its workspace and owner as the policy sees them.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The token's row.
    pub token: TokenRow,
    /// Its workspace.
    pub workspace: Workspace,
    /// Its owner with grants and groups.
    pub user: policy::User,
}

#[derive(Debug)]
struct Remembered {
    revision: u64,
    identity: Identity,
}

/// Identities by token digest, each valid for the revision it was read at.
#[derive(Debug, Default)]
pub struct Identities {
    map: Mutex<HashMap<String, Remembered>>,
}

impl Identities {
    /// The identity behind a token digest (lower-case hex), or `None` for a token that
    /// was never issued (or whose owner or workspace is gone). Unknown digests are not
    /// remembered: each costs its lookup, and the rate limiter bounds them.
    pub async fn resolve(
        &self,
        conn: &mut AnyConnection,
        digest: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let revision = store::revision_on(conn).await?;
        if let Some(known) = self.remembered(digest, revision) {
            return Ok(Some(known));
        }
        // Read after the revision: what is read is at least as new as the revision
        // it is remembered under (a newer state only costs a reload next time).
        let Some(token) = store::tokens::by_digest(conn, digest).await? else {
            return Ok(None);
        };
        let Some(workspace) = store::workspaces::get(conn, &token.workspace_id).await? else {
            return Ok(None);
        };
        let Some(user) = store::users::principal(conn, &workspace.id, &token.user_id).await? else {
            return Ok(None);
        };
        let identity = Identity {
            token,
            workspace,
            user,
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(
            digest.to_owned(),
            Remembered {
                revision,
                identity: identity.clone(),
            },
        );
        Ok(Some(identity))
    }

    /// Whether a token with this digest is remembered (at any revision): a known caller.
    pub fn knows(&self, digest: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(digest)
    }

    /// Notes a recorded use of the token (last use is not part of the revision).
    pub fn touched(&self, digest: &str, at: DateTime<Utc>, ip: Option<&str>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = map.get_mut(digest) {
            known.identity.token.last_used_at = Some(at);
            known.identity.token.last_used_ip = ip.map(str::to_owned);
        }
    }

    fn remembered(&self, digest: &str, revision: u64) -> Option<Identity> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(digest)
            .filter(|known| known.revision == revision)
            .map(|known| known.identity.clone())
    }
}
