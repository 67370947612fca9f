//! `/team`: the workspace's members (role, how they came, last sign-in), pending
//! invites, inviting someone (their one-time link shown once), and changing a role.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::form::Form;
use super::sources::{cursor_query, encode};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};
use super::{Secret, shown_once};
use crate::control::policy::Action;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/team", get(list))
        .route("/team/invites", post(invite))
        .route("/team/{id}/role", post(set_role))
}

/// A list's paging as the API shows it.
#[derive(Debug, Deserialize)]
pub struct Pagination {
    /// The next page's cursor.
    #[serde(default)]
    pub next: Option<String>,
}

/// A member as the console shows them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub(super) id: String,
    pub(super) email: String,
    name: String,
    pub(super) role: String,
    active: bool,
    origin: String,
    last_login: Option<When>,
}

#[derive(Debug, Deserialize)]
struct MemberList {
    users: Vec<Member>,
    pagination: Pagination,
}

#[derive(Debug, Deserialize)]
struct Pending {
    email: String,
    role: String,
}

#[derive(Debug, Deserialize)]
struct InviteList {
    #[serde(default)]
    roles: Vec<Pending>,
}

/// The roles a form may name, in the matrix's order.
const ROLES: [&str; 4] = ["owner", "admin", "member", "read_only"];

#[derive(Template)]
#[template(path = "console/team.html")]
struct TeamPage {
    frame: Frame,
    members: Vec<Member>,
    next: Option<String>,
    invites: Vec<Pending>,
    may_manage: bool,
    may_transfer: bool,
    roles: [&'static str; 4],
    /// An invite made just now: its one-time link, shown on this answer only.
    link: Option<String>,
    /// Why the form's invite was not made.
    error: Option<String>,
}

async fn page(
    console: &Console,
    parts: &Parts,
    link: Option<String>,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let list: MemberList = api
        .get(&format!("/api/v1/users?{}", cursor_query(parts)))
        .await?;
    let may_manage = viewer.may_here(Action::ManageMembers);
    let invites = if may_manage {
        api.get::<InviteList>("/api/v1/invites?pagination%5Bcount%5D=200")
            .await?
            .roles
    } else {
        Vec::new()
    };
    Ok(render(
        super::form_status(error.as_deref()),
        &TeamPage {
            frame: viewer.frame("Team", Section::Team, parts),
            members: list.users,
            next: list.pagination.next,
            invites,
            may_manage,
            may_transfer: viewer.may_here(Action::TransferOwnership),
            roles: ROLES,
            link,
            error,
        },
    ))
}

/// `GET /team`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Whether a refusal is about the form's content (shown beside the form again) rather
/// than about who may do it.
pub fn about_the_form(refusal: &Refusal) -> Option<String> {
    match refusal {
        Refusal::Api { status, message }
            if status.is_client_error()
                && ![StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(status) =>
        {
            Some(message.clone())
        }
        _ => None,
    }
}

const INVITE_LINK: Secret = Secret {
    title: "Invite link",
    note: "Send this one-time link to the person invited. It works once, for 72 hours, and is not shown again.",
    element: "invite-url",
};

/// `POST /team/invites`: email and role.
async fn invite(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let request = json!({"invites": [{"email": form.get("email"), "role": form.get("role")}]});
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(Method::POST, "/api/v1/invites", Some(request))
            .await;
        match answer {
            Ok(answer) => {
                let link = answer
                    .data
                    .pointer("/invites/0/link")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
                shown_once(
                    page(&console, &parts, link.clone(), None).await,
                    INVITE_LINK,
                    link,
                    "/team",
                )
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(message) => page(&console, &parts, None, Some(message)).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /team/{id}/role`.
async fn set_role(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::PATCH,
                &format!("/api/v1/users/{}", encode(&id)),
                Some(json!({"role": form.get("role")})),
            )
            .await?;
        Ok::<_, Refusal>(done(
            "/team",
            Outcome::applied(answer.status, Outcome::RoleChanged),
        ))
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}
