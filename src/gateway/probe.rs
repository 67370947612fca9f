//! `/health` and `/ready`, answered on both listeners.

use bytes::Bytes;
use http::StatusCode;

use super::response::{self, Reply};
use super::{Route, State};

/// Liveness (always 200 while the process serves) or readiness: the catalog is
/// loaded, the log is writable and below its high-water mark.
pub fn probe(state: &State, route: Route) -> Reply {
    if route != Route::Ready {
        return response::json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#));
    }
    let catalog_version = state.catalog.snapshot().version();
    let log_writable = state.log.is_writable();
    let below_high_water = !state.log.is_over_high_water();
    let ready = catalog_version > 0 && log_writable && below_high_water;
    let body = serde_json::json!({
        "ready": ready,
        "catalog_version": catalog_version,
        "log_writable": log_writable,
        "log_below_high_water": below_high_water,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response::json(status, body.to_string().into())
}
