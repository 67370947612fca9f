//! Explaining a decision: the question the API asks [`policy::authorize`], with what it
//! depends on loaded as the API loads it, so the answer is the API's own. The REST API
//! (`GET /api/v1/access/explain`) and `sluice admin explain` both call [`explain`].
//!
//! - A destination comes with its connected sources (`full` on all of them covers it).
//! - `create_destination` with a source to connect is two decisions, as the API takes
//!   them: create, then connect; the first refusal decides, every rule is listed.
//!
//! Who may ask about whom, and whether the asker may see the resource, stays with the
//! caller (the API answers a hidden resource as missing before explaining it).

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::policy::{self, Action, Decision, DestinationRef, ResourceRef, SourceRef};
use super::secret::Key;
use super::store::{StoreError, destinations, sources};

/// What a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// The workspace (role-wide actions).
    Workspace,
    /// A source, by id.
    Source(&'a str),
    /// A destination, by id.
    Destination(&'a str),
}

/// Why a decision could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// No such source in the workspace.
    #[error("no source {0:?}")]
    NoSource(String),
    /// No such destination in the workspace.
    #[error("no destination {0:?}")]
    NoDestination(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The question: who (with which token, if any), what, on what, and for
/// `create_destination` the source it would be connected to.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The workspace.
    pub workspace: &'a str,
    /// Its policy settings.
    pub settings: policy::Settings,
    /// Whose access.
    pub principal: policy::Principal<'a>,
    /// The action.
    pub action: Action,
    /// On what.
    pub subject: Subject<'a>,
    /// With `create_destination`: the source it would be connected to.
    pub connect_to: Option<&'a str>,
    /// Decision time.
    pub now: DateTime<Utc>,
}

/// The decision the API takes for `question`, with every rule that made it.
pub async fn explain(
    conn: &mut AnyConnection,
    key: &Key,
    question: Question<'_>,
) -> Result<Decision, ExplainError> {
    let Question {
        workspace,
        settings,
        principal,
        action,
        subject,
        connect_to,
        now,
    } = question;
    let source;
    let mut connected = Vec::new();
    let connected_refs: Vec<SourceRef<'_>>;
    let resource = match subject {
        Subject::Workspace => ResourceRef::Workspace,
        Subject::Source(id) => {
            source = sources::get(conn, workspace, id)
                .await?
                .ok_or_else(|| ExplainError::NoSource(id.to_owned()))?;
            ResourceRef::Source(source.as_ref())
        }
        Subject::Destination(id) => {
            let row = destinations::get(conn, key, workspace, id)
                .await?
                .ok_or_else(|| ExplainError::NoDestination(id.to_owned()))?;
            for s in &row.doc.sources {
                if let Some(s) = sources::get(conn, workspace, s).await? {
                    connected.push(s);
                }
            }
            connected_refs = connected.iter().map(|s| s.as_ref()).collect();
            ResourceRef::Destination(DestinationRef {
                id,
                connected: &connected_refs,
            })
        }
    };
    let mut decision = policy::authorize(principal, action, resource, settings, now);
    if let (Action::CreateDestination, Some(sid)) = (action, connect_to) {
        let to = sources::get(conn, workspace, sid)
            .await?
            .ok_or_else(|| ExplainError::NoSource(sid.to_owned()))?;
        let new = DestinationRef {
            id: "(new)",
            connected: &[],
        };
        let connect = policy::authorize(
            principal,
            Action::Connect,
            ResourceRef::Connection(to.as_ref(), new),
            settings,
            now,
        );
        if decision.allowed && !connect.allowed {
            decision.allowed = false;
            decision.reason = connect.reason;
        }
        decision.rules.extend(connect.rules);
    }
    Ok(decision)
}
