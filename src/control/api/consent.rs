//! `/sources/{id}/consent` and `/destinations/{id}/consent`: consent-aware forwarding
//! (see [`crate::consent`]). A destination's consent categories decide which events reach
//! it by their `context.consent.categoryPreferences`; a source's default decides what its
//! events without preferences do there. Reading needs sight of the resource; changing
//! needs `full` on it (`edit_source_privacy`, `edit_destination_privacy`), and every
//! change is audited with the value before and after.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::destinations::installable;
use super::{Api, ApiError, Body, Caller, Path, data};
use crate::catalog::consent_categories_problem;
use crate::consent::WithoutConsent;
use crate::control::audit::Kind;
use crate::control::policy::Action;
use crate::control::store::{destinations, sources};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/sources/{id}/consent", get(read_source).put(put_source))
        .route(
            "/destinations/{id}/consent",
            get(read_destination).put(put_destination),
        )
}

/// What a source's events without consent preferences do at destinations with consent
/// categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsentDefault {
    /// Delivered (Segment's behaviour: no preferences, no enforcement).
    Deliver,
    /// Withheld.
    Withhold,
}

impl From<WithoutConsent> for ConsentDefault {
    fn from(value: WithoutConsent) -> Self {
        match value {
            WithoutConsent::Deliver => Self::Deliver,
            WithoutConsent::Withhold => Self::Withhold,
        }
    }
}

impl From<ConsentDefault> for WithoutConsent {
    fn from(value: ConsentDefault) -> Self {
        match value {
            ConsentDefault::Deliver => Self::Deliver,
            ConsentDefault::Withhold => Self::Withhold,
        }
    }
}

/// A source's consent setting.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConsent {
    /// What its events without `context.consent.categoryPreferences` do at destinations
    /// with consent categories.
    pub without_consent: ConsentDefault,
}

/// A source's consent setting, with its id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceConsentOut {
    /// The source.
    pub source_id: String,
    /// Its setting.
    pub consent: SourceConsent,
}

/// A destination's consent categories.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationConsent {
    /// Category ids of the consent management platform; an event reaches the
    /// destination only when its preferences are `true` for every one. Empty: no consent
    /// enforcement.
    pub categories: Vec<String>,
}

/// A destination's consent categories, with its id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationConsentOut {
    /// The destination.
    pub destination_id: String,
    /// Its categories.
    pub consent: DestinationConsent,
}

fn source_out(row: &sources::SourceRow) -> SourceConsentOut {
    SourceConsentOut {
        source_id: row.id.clone(),
        consent: SourceConsent {
            without_consent: row.without_consent.into(),
        },
    }
}

fn destination_out(row: &destinations::DestinationRow) -> DestinationConsentOut {
    DestinationConsentOut {
        destination_id: row.id.clone(),
        consent: DestinationConsent {
            categories: row.doc.consent_categories.clone(),
        },
    }
}

/// Read what a source's events without consent preferences do.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/consent",
    tag = "Consent",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "The source's consent setting.", body = super::wire::Data<SourceConsentOut>))
)]
async fn read_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = super::sources::visible(&api, &caller, &id, Action::ViewSource).await?;
    Ok(data(source_out(&row)))
}

/// Set what a source's events without consent preferences do (`full` on the source).
#[utoipa::path(
    put,
    path = "/api/v1/sources/{id}/consent",
    tag = "Consent",
    params(("id" = String, Path, description = "Source id")),
    request_body = SourceConsent,
    responses((status = 200, description = "The source's consent setting, as set.", body = super::wire::Data<SourceConsentOut>))
)]
async fn put_source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<SourceConsent>,
) -> Result<Response, ApiError> {
    super::sources::visible(&api, &caller, &id, Action::EditSourcePrivacy).await?;
    let mut change = api.store.change().await?;
    // Read again inside the change: the audit says what this change replaced.
    let before = sources::get(change.conn(), &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("source", &id))?;
    let mut row = before.clone();
    row.without_consent = body.without_consent.into();
    sources::set_without_consent(change.conn(), &id, row.without_consent, caller.now).await?;
    change
        .record(caller.draft(
            Kind::SourceConsentUpdate,
            "source",
            &id,
            Some(json!(source_out(&before).consent)),
            Some(json!(source_out(&row).consent)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(source_out(&row)))
}

/// Read a destination's consent categories.
#[utoipa::path(
    get,
    path = "/api/v1/destinations/{id}/consent",
    tag = "Consent",
    params(("id" = String, Path, description = "Destination id")),
    responses((status = 200, description = "The destination's consent categories.", body = super::wire::Data<DestinationConsentOut>))
)]
async fn read_destination(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = super::destinations::visible(&api, &caller, &id, Action::ViewDestination).await?;
    Ok(data(destination_out(&row)))
}

/// Replace a destination's consent categories (`full` on the destination).
#[utoipa::path(
    put,
    path = "/api/v1/destinations/{id}/consent",
    tag = "Consent",
    params(("id" = String, Path, description = "Destination id")),
    request_body = DestinationConsent,
    responses((status = 200, description = "The destination's consent categories, as set.", body = super::wire::Data<DestinationConsentOut>))
)]
async fn put_destination(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<DestinationConsent>,
) -> Result<Response, ApiError> {
    super::destinations::visible(&api, &caller, &id, Action::EditDestinationPrivacy).await?;
    if let Some(why) = consent_categories_problem(&body.categories) {
        return Err(ApiError::field("categories", why));
    }
    let mut change = api.store.change().await?;
    // Read again inside the change: the audit says what this change replaced.
    let before = destinations::get(change.conn(), api.store.key(), &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("destination", &id))?;
    let mut row = before.clone();
    row.doc.consent_categories = body.categories;
    destinations::set_consent(change.conn(), &id, &row.doc.consent_categories, caller.now).await?;
    installable(&api, &mut change, &caller.workspace.id).await?;
    change
        .record(caller.draft(
            Kind::DestinationConsentUpdate,
            "destination",
            &id,
            Some(json!(destination_out(&before).consent)),
            Some(json!(destination_out(&row).consent)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(destination_out(&row)))
}
