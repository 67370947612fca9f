//! `/health` and `/ready`, answered on both listeners.

use bytes::Bytes;
use http::StatusCode;

use super::response::{self, Reply};
use super::{Route, State};

/// Liveness (always 200 while the process serves) or readiness: the catalog is
/// loaded, the log is writable and below its high-water mark.
pub fn probe(state: &State, route: Route) -> Reply {
    if route != Route::Ready {
        return alive();
    }
    let catalog_version = state.catalog.snapshot().version();
    let log_writable = state.log.is_writable();
    let below_high_water = !state.log.is_over_high_water();
    readiness(
        catalog_version > 0 && log_writable && below_high_water,
        serde_json::json!({
            "catalog_version": catalog_version,
            "log_writable": log_writable,
            "log_below_high_water": below_high_water,
        }),
    )
}

/// `/health`: 200 while the process answers.
pub fn alive() -> Reply {
    response::json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// `/ready`: 200 or 503 by `ready`, with `"ready"` and what it was decided from
/// (`details`, a JSON object) in the body.
pub fn readiness(ready: bool, mut details: serde_json::Value) -> Reply {
    if let Some(fields) = details.as_object_mut() {
        fields.insert("ready".into(), ready.into());
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response::json(status, details.to_string().into())
}
