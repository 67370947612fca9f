//! `/access/explain`: a decision with every rule that made it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::wire::Data;
use super::{Api, ApiError, Caller, Query, data};
use crate::control::explain::{ExplainError, Question, Subject};
use crate::control::policy::{self, Action, DestinationRef, Reason, ResourceRef, Rule};
use crate::control::store::sources;
use crate::control::store::users::{self};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/access/explain", get(explain))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExplainQuery {
    /// Whose access (default: the caller).
    #[serde(default)]
    user_id: Option<String>,
    /// The action, e.g. `edit_source`.
    #[param(
        pattern = "^(view_workspace|view_members|view_tracking_plans|view_source|create_source|edit_source|delete_source|manage_write_keys|change_labels|view_destination|view_destination_secrets|create_destination|edit_destination|enable_destination|delete_destination|connect|disconnect|manage_members|modify_settings|manage_usage|transfer_ownership|edit_tracking_plans|publish_tracking_plans|review_change_request|amend_change_request|request_elevation|approve_elevation|end_elevation|review_access|create_functions|manage_tokens|read_audit|read_catalog|report_usage|report_function_errors|apply_protected_change|regulate|regulate_source|read_suppressions|edit_source_privacy|edit_destination_privacy)$"
    )]
    action: String,
    /// `workspace`, `source` or `destination`.
    #[serde(default)]
    #[param(pattern = "^(workspace|source|destination)$")]
    resource_type: Option<String>,
    /// The resource's id.
    #[serde(default)]
    resource_id: Option<String>,
    /// With `create_destination`: the source it would be connected to. The answer is then
    /// the compound decision the API takes (create, and connect to that source).
    #[serde(default)]
    source_id: Option<String>,
}

/// A decision and the rules that made it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Whose access.
    pub user_id: String,
    /// The action, e.g. `edit_source`.
    #[schema(value_type = String)]
    pub action: Action,
    /// The answer.
    pub allowed: bool,
    /// Why: the deciding rule (`allowed`, `hidden`, `role_denies`, …).
    #[schema(value_type = String)]
    pub reason: Reason,
    /// Every rule consulted, in order (`{"rule": …, …}` each).
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<Rule>,
}

/// The decision for a user, an action and a resource, with every rule that made it:
/// exactly the decision the API takes. Explaining your own access counts the token you
/// ask with (its scopes); explaining someone else's takes the right to manage members
/// and speaks of them without a token. A destination's decision counts its connected
/// sources, as edits and deletions do.
#[utoipa::path(
    get,
    path = "/api/v1/access/explain",
    tag = "Access",
    params(ExplainQuery),
    responses((status = 200, description = "Explain a decision with every rule that made it.", body = Data<Explanation>))
)]
async fn explain(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ExplainQuery>,
) -> Result<Response, ApiError> {
    let action: Action = serde_json::from_value(json!(q.action))
        .map_err(|_| ApiError::field("action", "not an action name (e.g. edit_source)"))?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let user_id = q.user_id.clone().unwrap_or_else(|| caller.user.id.clone());
    if user_id != caller.user.id {
        api.allow_workspace(&caller, Action::ManageMembers).await?;
    }
    let mut conn = api.store.read().await?;
    let ws = &caller.workspace.id;
    let user = users::principal(&mut conn, ws, &user_id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &user_id))?;
    let rid = q.resource_id.clone().unwrap_or_default();
    let subject = match q.resource_type.as_deref().unwrap_or("workspace") {
        "workspace" => Subject::Workspace,
        "source" => Subject::Source(&rid),
        "destination" => Subject::Destination(&rid),
        _ => {
            return Err(ApiError::field(
                "resourceType",
                "workspace, source or destination",
            ));
        }
    };
    // The caller must see what is asked about: explain never reveals a hidden resource.
    let mut seen = Vec::new();
    match subject {
        Subject::Source(id) => seen.push(("source", id)),
        Subject::Destination(id) => seen.push(("destination", id)),
        Subject::Workspace => {}
    }
    if let Some(sid) = &q.source_id {
        seen.push(("source", sid));
    }
    for (kind, id) in seen {
        let missing = || ApiError::missing(kind, id);
        if kind == "source" {
            let row = sources::get(&mut conn, ws, id).await?.ok_or_else(missing)?;
            api.allow(
                &caller,
                Action::ViewSource,
                ResourceRef::Source(row.as_ref()),
                missing(),
            )
            .await?;
        } else {
            crate::control::store::destinations::get(&mut conn, api.store.key(), ws, id)
                .await?
                .ok_or_else(missing)?;
            let r = ResourceRef::Destination(DestinationRef { id, connected: &[] });
            api.allow(&caller, Action::ViewDestination, r, missing())
                .await?;
        }
    }
    // Your own access through the token you ask with; someone else's as themselves.
    let token = caller.policy_token();
    let question = Question {
        workspace: ws,
        settings: caller.workspace.settings.policy(),
        principal: policy::Principal {
            user: &user,
            token: if user_id == caller.user.id {
                token.as_ref()
            } else {
                None
            },
        },
        action,
        subject,
        connect_to: q.source_id.as_deref(),
        now: caller.now,
    };
    let decision = crate::control::explain::explain(&mut conn, api.store.key(), question)
        .await
        .map_err(|e| match e {
            ExplainError::NoSource(id) => ApiError::missing("source", &id),
            ExplainError::NoDestination(id) => ApiError::missing("destination", &id),
            ExplainError::Store(e) => ApiError::from(e),
        })?;
    Ok(data(Explanation {
        user_id,
        action,
        allowed: decision.allowed,
        reason: decision.reason,
        rules: decision.rules,
    }))
}
