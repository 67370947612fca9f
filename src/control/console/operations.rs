//! `/operations`: this month's usage against the quotas (the workspace's and each
//! visible source's, with a small chart of events a day), setting a quota, and the
//! gateways with the catalog revision each applied.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::Form;
use super::sources::encode;
use super::team::about_the_form;
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};
use crate::control::policy::Action;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/operations", get(read))
        .route("/operations/quota", post(set_quota))
}

#[derive(Debug, Deserialize)]
struct Counts {
    accepted: u64,
    refused: u64,
    violating: u64,
}

#[derive(Debug, Deserialize)]
struct Day {
    day: String,
    accepted: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourceUsage {
    source_id: String,
    #[serde(flatten)]
    counts: Counts,
    monthly_event_quota: Option<u64>,
    #[serde(default)]
    days: Vec<Day>,
}

impl SourceUsage {
    /// Its days as bars of a chart `WIDTH` × `HEIGHT`: `(x, y, width, height, label)`.
    fn bars(&self) -> Vec<Bar> {
        let most = self
            .days
            .iter()
            .map(|d| d.accepted)
            .max()
            .unwrap_or(0)
            .max(1);
        let n = u32::try_from(self.days.len()).unwrap_or(u32::MAX).max(1);
        let step = WIDTH / n;
        self.days
            .iter()
            .zip(0u32..)
            .map(|(d, i)| {
                let scaled = u128::from(d.accepted) * u128::from(HEIGHT) / u128::from(most);
                let height = u32::try_from(scaled).unwrap_or(HEIGHT).max(1);
                Bar {
                    x: i * step,
                    y: HEIGHT - height,
                    width: step.saturating_sub(2).max(1),
                    height,
                    label: format!("{}: {} accepted", d.day, d.accepted),
                }
            })
            .collect()
    }
}

/// A chart's size in SVG units.
const WIDTH: u32 = 300;
const HEIGHT: u32 = 60;

/// One bar of a chart.
struct Bar {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    label: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    period: String,
    resets_at: When,
    total: Counts,
    monthly_event_quota: Option<u64>,
    sources: Vec<SourceUsage>,
}

#[derive(Debug, Deserialize)]
struct UsageOne {
    usage: Usage,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Gateway {
    id: String,
    revision: u64,
    address: String,
    seen_at: When,
}

#[derive(Debug, Deserialize)]
struct Gateways {
    gateways: Vec<Gateway>,
    revision: u64,
}

#[derive(Template)]
#[template(path = "console/operations.html")]
struct OperationsPage {
    frame: Frame,
    usage: Usage,
    gateways: Gateways,
    may_set_quota: bool,
    /// Whether the viewer may manage gateway credentials (a link to them is shown).
    may_nodes: bool,
    error: Option<String>,
    width: u32,
    height: u32,
}

async fn page(
    console: &Console,
    parts: &Parts,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let usage = api.get::<UsageOne>("/api/v1/usage").await?.usage;
    let gateways = api.get::<Gateways>("/api/v1/gateways").await?;
    Ok(render(
        super::form_status(error.as_deref()),
        &OperationsPage {
            frame: viewer.frame("Usage and gateways", Section::Operations, parts),
            usage,
            gateways,
            may_set_quota: viewer.may_here(Action::ManageUsage),
            may_nodes: viewer.may_here(Action::ManageTokens),
            error,
            width: WIDTH,
            height: HEIGHT,
        },
    ))
}

/// `GET /operations`.
async fn read(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /operations/quota`: `source` (blank: the workspace's) and `monthly_events`
/// (blank: no quota).
async fn set_quota(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let set = async {
        let form = Form::read(&body)?;
        let quota = match form.some("monthly_events") {
            None => Value::Null,
            Some(text) => match text.parse::<u64>() {
                Ok(n) => json!(n),
                Err(_) => {
                    let why = "The quota is a whole number of events a month.".to_owned();
                    return page(&console, &parts, Some(why)).await;
                }
            },
        };
        let path = match form.some("source") {
            Some(source) => format!("/api/v1/sources/{}/quota", encode(source)),
            None => "/api/v1/usage/quota".to_owned(),
        };
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(Method::PUT, &path, Some(json!({"monthlyEvents": quota})))
            .await;
        match answer {
            Ok(answer) => Ok(done(
                "/operations",
                Outcome::applied(answer.status, Outcome::QuotaSet),
            )),
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => page(&console, &parts, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    set.await.unwrap_or_else(IntoResponse::into_response)
}
