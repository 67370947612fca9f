//! `/labels`: the workspace's labels.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::wire::{Data, Status, document};
use super::{Api, ApiError, Body, Caller, data, slug_field};
use crate::control::audit::Kind;
use crate::control::policy::Action;
use crate::control::store::labels as labels_store;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/labels", get(labels).post(create_label))
        .route("/labels/{key}/{value}", axum::routing::delete(delete_label))
}

/// A workspace label.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceLabel {
    /// Key, e.g. `environment`.
    pub key: String,
    /// Value, e.g. `prod`.
    pub value: String,
    /// Free text.
    pub description: String,
}

/// `{"labels": […]}`: every label of the workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelList {
    /// The labels.
    pub labels: Vec<WorkspaceLabel>,
}

/// `{"label": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelOne {
    /// The label.
    pub label: WorkspaceLabel,
}

/// Workspace labels.
#[utoipa::path(
    get,
    path = "/api/v1/labels",
    tag = "Labels",
    responses((status = 200, description = "Workspace labels.", body = Data<LabelList>))
)]
async fn labels(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = crate::control::store::labels::list(&mut conn, &caller.workspace.id).await?;
    let labels = rows
        .into_iter()
        .map(|(key, value, description)| WorkspaceLabel {
            key,
            value,
            description,
        })
        .collect();
    Ok(data(LabelList { labels }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateLabel {
    label: super::sources::LabelWire,
}

/// Create a label.
#[utoipa::path(
    post,
    path = "/api/v1/labels",
    tag = "Labels",
    request_body = CreateLabel,
    responses((status = 200, description = "Create a label.", body = Data<LabelOne>))
)]
async fn create_label(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateLabel>,
) -> Result<Response, ApiError> {
    let key = slug_field("label.key", &body.label.key)?;
    let value = slug_field("label.value", &body.label.value)?;
    let description = body.label.description("label.description")?;
    api.allow_workspace(&caller, Action::ModifySettings).await?;
    let mut change = api.store.change().await?;
    crate::control::store::labels::create(
        change.conn(),
        &caller.workspace.id,
        &key,
        &value,
        &description,
    )
    .await?;
    let label = WorkspaceLabel {
        key,
        value,
        description,
    };
    change
        .record(caller.draft(
            Kind::LabelCreate,
            "label",
            &format!("{}:{}", label.key, label.value),
            None,
            Some(document(&label)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(LabelOne { label }))
}

/// Delete a label no source carries and no grant names (a label in use is refused:
/// taking it off sources is a change of access, made on each source).
#[utoipa::path(
    delete,
    path = "/api/v1/labels/{key}/{value}",
    tag = "Labels",
    params(("key" = String, Path, description = "Label key"), ("value" = String, Path, description = "Label value")),
    responses((status = 200, description = "Delete a label.", body = Data<Status>))
)]
async fn delete_label(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path((key, value)): super::Path<(String, String)>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ModifySettings).await?;
    let mut conn = api.store.read().await?;
    let exists = labels_store::list(&mut conn, &caller.workspace.id)
        .await?
        .iter()
        .any(|(k, v, _)| *k == key && *v == value);
    if !exists {
        return Err(ApiError::missing("label", &format!("{key}:{value}")));
    }
    let governed = crate::control::store::grants::governed_labels(&mut conn, &caller.workspace.id)
        .await?
        .contains(&(key.clone(), value.clone()));
    let carried = crate::control::store::sources::all(&mut conn, &caller.workspace.id)
        .await?
        .iter()
        .any(|s| s.labels.contains(&(key.clone(), value.clone())));
    drop(conn);
    if governed || carried {
        return Err(ApiError::Conflict(format!(
            "label {key}:{value} is in use ({}): take it off first",
            if governed {
                "a grant names it"
            } else {
                "sources carry it"
            }
        )));
    }
    let mut change = api.store.change().await?;
    labels_store::delete(change.conn(), &caller.workspace.id, &key, &value).await?;
    change
        .record(caller.draft(
            Kind::LabelDelete,
            "label",
            &format!("{key}:{value}"),
            Some(json!({"key": key, "value": value})),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(super::success())
}
