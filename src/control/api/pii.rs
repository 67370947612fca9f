//! `/sources/{id}/pii`: the paths of a source's events dropped, hashed or masked at the
//! edge before they are stored (see [`crate::pii`]). Reading needs sight of the source;
//! replacing them needs `full` on it (`edit_source_privacy`: fewer rules let more
//! personal data in) and is audited with the rules before and after. `hash` rules use
//! the workspace's salt, made (random, sealed at rest) the first time one is set.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{Api, ApiError, Body, Caller, Path, data};
use crate::control::audit::Kind;
use crate::control::policy::Action;
use crate::control::store::{sources, workspaces};
use crate::pii::{self, RuleDoc};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/sources/{id}/pii", get(read).put(put))
}

/// What a rule does to the value at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PiiAction {
    /// Remove the value and its key.
    Drop,
    /// Replace it with the lower-case hex SHA-256 of the workspace's salt and the value.
    Hash,
    /// Replace it with `*`s, keeping the last four characters of one of eight or more.
    Mask,
}

/// One rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PiiRule {
    /// Dotted path from the event's root (`properties.email`, `context.ip`); `*` for
    /// every key or element.
    pub path: String,
    /// What to do there.
    pub action: PiiAction,
}

/// A source's PII rules, applied in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PiiRules {
    /// The rules (at most 100).
    pub rules: Vec<PiiRule>,
}

/// A source's PII rules, with its id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourcePii {
    /// The source.
    pub source_id: String,
    /// Its rules.
    pub pii: PiiRules,
}

fn wire(rules: &[RuleDoc]) -> PiiRules {
    PiiRules {
        rules: rules
            .iter()
            .map(|r| PiiRule {
                path: r.path.clone(),
                action: match r.action {
                    pii::Action::Drop => PiiAction::Drop,
                    pii::Action::Hash => PiiAction::Hash,
                    pii::Action::Mask => PiiAction::Mask,
                },
            })
            .collect(),
    }
}

fn docs(rules: PiiRules) -> Vec<RuleDoc> {
    rules
        .rules
        .into_iter()
        .map(|r| RuleDoc {
            path: r.path,
            action: match r.action {
                PiiAction::Drop => pii::Action::Drop,
                PiiAction::Hash => pii::Action::Hash,
                PiiAction::Mask => pii::Action::Mask,
            },
        })
        .collect()
}

/// Read a source's PII rules.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/pii",
    tag = "Privacy",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "The source's PII rules.", body = super::wire::Data<SourcePii>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = super::sources::visible(&api, &caller, &id, Action::ViewSource).await?;
    Ok(data(SourcePii {
        source_id: row.id,
        pii: wire(&row.pii),
    }))
}

/// Replace a source's PII rules (`full` on the source); `[]` removes them.
#[utoipa::path(
    put,
    path = "/api/v1/sources/{id}/pii",
    tag = "Privacy",
    params(("id" = String, Path, description = "Source id")),
    request_body = PiiRules,
    responses((status = 200, description = "The source's PII rules, as set.", body = super::wire::Data<SourcePii>))
)]
async fn put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PiiRules>,
) -> Result<Response, ApiError> {
    super::sources::visible(&api, &caller, &id, Action::EditSourcePrivacy).await?;
    let rules = docs(body);
    // The salt is the store's to make: only the rules are checked here.
    if let Some(why) = pii::rules_problem(&rules) {
        return Err(ApiError::field("rules", why));
    }
    let mut change = api.store.change().await?;
    // Read again inside the change: the audit says what this change replaced.
    let before = sources::get(change.conn(), &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("source", &id))?;
    let mut row = before.clone();
    row.pii = rules;
    if pii::hashes(&row.pii) {
        workspaces::ensure_pii_salt(change.conn(), api.store.key(), &caller.workspace.id, None)
            .await?;
    }
    sources::set_pii(change.conn(), &id, &row.pii, caller.now).await?;
    change
        .record(caller.draft(
            Kind::SourcePiiUpdate,
            "source",
            &id,
            Some(json!(wire(&before.pii))),
            Some(json!(wire(&row.pii))),
        ))
        .await?;
    change.commit().await?;
    Ok(data(SourcePii {
        source_id: row.id,
        pii: wire(&row.pii),
    }))
}
