//! `/access/explain`: a decision with every rule that made it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::schema;
use super::{Api, ApiError, Caller, Query, data};
use crate::control::policy::{self, Action, DestinationRef, ResourceRef, SourceRef};
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
    action: String,
    /// `workspace`, `source` or `destination`.
    #[serde(default)]
    resource_type: Option<String>,
    /// The resource's id.
    #[serde(default)]
    resource_id: Option<String>,
    /// With `create_destination`: the source it would be connected to. The answer is then
    /// the compound decision the API takes (create, and connect to that source).
    #[serde(default)]
    source_id: Option<String>,
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
    responses((status = 200, description = "Explain a decision with every rule that made it.", body = schema::Data<schema::Explanation>))
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
    let source;
    let mut connected = Vec::new();
    let connected_refs: Vec<SourceRef<'_>>;
    let resource = match q.resource_type.as_deref().unwrap_or("workspace") {
        "workspace" => ResourceRef::Workspace,
        "source" => {
            source = sources::get(&mut conn, ws, &rid)
                .await?
                .ok_or_else(|| ApiError::missing("source", &rid))?;
            // The caller must see it too: explain never reveals a hidden source.
            api.allow(
                &caller,
                Action::ViewSource,
                ResourceRef::Source(source.as_ref()),
                ApiError::missing("source", &rid),
            )
            .await?;
            ResourceRef::Source(SourceRef {
                id: &source.id,
                labels: &source.labels,
            })
        }
        "destination" => {
            let row =
                crate::control::store::destinations::get(&mut conn, api.store.key(), ws, &rid)
                    .await?
                    .ok_or_else(|| ApiError::missing("destination", &rid))?;
            let r = ResourceRef::Destination(DestinationRef {
                id: &rid,
                connected: &[],
            });
            api.allow(
                &caller,
                Action::ViewDestination,
                r,
                ApiError::missing("destination", &rid),
            )
            .await?;
            for id in &row.doc.sources {
                if let Some(s) = sources::get(&mut conn, ws, id).await? {
                    connected.push(s);
                }
            }
            connected_refs = connected.iter().map(|s| s.as_ref()).collect();
            ResourceRef::Destination(DestinationRef {
                id: &rid,
                connected: &connected_refs,
            })
        }
        _ => {
            return Err(ApiError::field(
                "resourceType",
                "workspace, source or destination",
            ));
        }
    };
    // Your own access through the token you ask with; someone else's as themselves.
    let token = caller.token.policy();
    let principal = policy::Principal {
        user: &user,
        token: (user_id == caller.user.id).then_some(&token),
    };
    let settings = caller.workspace.settings.policy();
    let mut decision = policy::authorize(principal, action, resource, settings, caller.now);
    // Creating a destination connected to a source is two decisions, as in the API.
    if let (Action::CreateDestination, Some(sid)) = (action, &q.source_id) {
        let connect_to = sources::get(&mut conn, ws, sid)
            .await?
            .ok_or_else(|| ApiError::missing("source", sid))?;
        api.allow(
            &caller,
            Action::ViewSource,
            ResourceRef::Source(connect_to.as_ref()),
            ApiError::missing("source", sid),
        )
        .await?;
        let new = DestinationRef {
            id: "(new)",
            connected: &[],
        };
        let connect = policy::authorize(
            principal,
            Action::Connect,
            ResourceRef::Connection(connect_to.as_ref(), new),
            settings,
            caller.now,
        );
        if decision.allowed && !connect.allowed {
            decision.allowed = false;
            decision.reason = connect.reason;
        }
        decision.rules.extend(connect.rules);
    }
    Ok(data(json!({
        "userId": user_id,
        "action": action,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "rules": decision.rules,
    })))
}
