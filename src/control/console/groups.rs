//! `/groups`: the workspace's groups (a role their members get at least, grants their
//! members share), a new one; one group's members (added by email: someone not yet a
//! member is invited), its grants, renaming and deleting it. The API decides who may
//! (a group provisioned by SCIM changes there, not here).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::form::Form;
use super::people::{Grant, GrantList, grant_request};
use super::sources::{cursor_query, encode};
use super::team::{Member, about_the_form};
use super::{Change, apply, done, one_change, submit};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, inner, render};
use crate::control::policy::Action;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/groups", get(list).post(create))
        .route("/groups/{id}", get(read))
        .route("/groups/{id}/rename", post(rename))
        .route("/groups/{id}/delete", post(remove))
        .route("/groups/{id}/members", post(add_members))
        .route("/groups/{id}/members/{user}/remove", post(remove_member))
        .route("/groups/{id}/grants", post(grant))
        .route("/groups/{id}/grants/{grant}/remove", post(remove_grant))
}

/// A group as the API shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    id: String,
    name: String,
    member_count: i64,
    role: Option<String>,
    origin: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    user_groups: Vec<Group>,
    pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupOne {
    user_group: Group,
}

#[derive(Debug, Deserialize)]
struct MemberList {
    users: Vec<Member>,
    pagination: super::team::Pagination,
}

/// An invite a group change made, with its one-time link.
#[derive(Debug, Deserialize)]
struct Invited {
    email: String,
    link: String,
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct ListPage {
    frame: Frame,
    groups: Vec<Group>,
    next: Option<String>,
    may_manage: bool,
    roles: [&'static str; 4],
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/group.html")]
struct GroupPage {
    frame: Frame,
    group: Group,
    members: Vec<Member>,
    more_members: bool,
    grants: Vec<Grant>,
    may_manage: bool,
    /// Invites made just now by adding emails: their links, shown on this answer only.
    invited: Vec<Invited>,
    error: Option<String>,
}

/// The roles a group may give (or none).
const ROLES: [&str; 4] = ["read_only", "member", "admin", "owner"];

async fn list_page(
    console: &Console,
    parts: &Parts,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let list: GroupList = inner(console, parts)
        .get(&format!("/api/v1/groups?{}", cursor_query(parts)))
        .await?;
    Ok(render(
        super::form_status(error.as_deref()),
        &ListPage {
            frame: viewer.frame("Groups", Section::Team, parts),
            groups: list.user_groups,
            next: list.pagination.next,
            may_manage: viewer.may_here(Action::ManageMembers),
            roles: ROLES,
            error,
        },
    ))
}

/// `GET /groups`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    list_page(&console, &parts, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /groups`: a name, and the role its members get at least (blank: none).
async fn create(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let request = json!({"name": form.get("name"), "role": form.some("role")});
        match apply(
            &console,
            &parts,
            &form,
            Change::new(Method::POST, "/api/v1/groups", Some(request)),
        )
        .await
        {
            Ok(answer) => {
                let id = answer
                    .data
                    .pointer("/userGroup/id")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                Ok(done(
                    &format!("/groups/{}", encode(id)),
                    Outcome::GroupChanged,
                ))
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => list_page(&console, &parts, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// Members shown on a group's page.
const MEMBERS_SHOWN: u32 = 200;

async fn group_page(
    console: &Console,
    parts: &Parts,
    id: &str,
    invited: Vec<Invited>,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let group = api
        .get::<GroupOne>(&format!("/api/v1/groups/{}", encode(id)))
        .await?
        .user_group;
    let members: MemberList = api
        .get(&format!(
            "/api/v1/groups/{}/users?pagination%5Bcount%5D={MEMBERS_SHOWN}",
            encode(id)
        ))
        .await?;
    let may_manage = viewer.may_here(Action::ManageMembers);
    let grants = if may_manage {
        api.get::<GrantList>("/api/v1/grants")
            .await?
            .grants
            .into_iter()
            .filter(|g| g.held_by("group", &group.id))
            .collect()
    } else {
        Vec::new()
    };
    let title = group.name.clone();
    Ok(render(
        super::form_status(error.as_deref()),
        &GroupPage {
            frame: viewer.frame(title, Section::Team, parts),
            group,
            members: members.users,
            more_members: members.pagination.next.is_some(),
            grants,
            may_manage,
            invited,
            error,
        },
    ))
}

/// `GET /groups/{id}`.
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    group_page(&console, &parts, &id, Vec::new(), None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The group's own page, after a change to it.
fn back(id: &str) -> String {
    format!("/groups/{}", encode(id))
}

/// `POST /groups/{id}/rename`: `name`.
async fn rename(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        submit(
            &console,
            &parts,
            &form,
            Change::new(
                Method::PATCH,
                format!("/api/v1/groups/{}", encode(&id)),
                Some(json!({"name": form.get("name")})),
            ),
            (&back(&id), Outcome::GroupChanged),
            Some(|why| group_page(&console, &parts, &id, Vec::new(), Some(why))),
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /groups/{id}/delete`.
async fn remove(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        ("/groups", Outcome::GroupDeleted),
        |_form| {
            Ok(Change::new(
                Method::DELETE,
                format!("/api/v1/groups/{}", encode(&id)),
                None,
            ))
        },
    )
    .await
}

/// `POST /groups/{id}/members`: `emails`, separated by commas or spaces. Someone not
/// yet a member is invited: the page this answers with shows each invite's link once.
async fn add_members(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let emails: Vec<&str> = form
            .get("emails")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .collect();
        let answer = apply(
            &console,
            &parts,
            &form,
            Change::new(
                Method::POST,
                format!("/api/v1/groups/{}/users", encode(&id)),
                Some(json!({ "emails": emails })),
            ),
        )
        .await;
        match answer {
            Ok(answer) => {
                let invited: Vec<Invited> = answer
                    .data
                    .get("invites")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                if invited.is_empty() {
                    Ok(done(&back(&id), Outcome::GroupChanged))
                } else {
                    group_page(&console, &parts, &id, invited, None).await
                }
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => group_page(&console, &parts, &id, Vec::new(), Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /groups/{id}/members/{user}/remove`.
async fn remove_member(
    State(console): State<Console>,
    Path((id, user)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        (&back(&id), Outcome::GroupChanged),
        |_form| {
            Ok(Change::new(
                Method::DELETE,
                format!("/api/v1/groups/{}/users/{}", encode(&id), encode(&user)),
                None,
            ))
        },
    )
    .await
}

/// `POST /groups/{id}/grants`: a level on a source, a destination or a label's sources,
/// for every member.
async fn grant(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let request = grant_request(&form, json!({"type": "group", "id": id}));
        submit(
            &console,
            &parts,
            &form,
            Change::new(Method::POST, "/api/v1/grants", Some(request)),
            (&back(&id), Outcome::Granted),
            Some(|why| group_page(&console, &parts, &id, Vec::new(), Some(why))),
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /groups/{id}/grants/{grant}/remove`.
async fn remove_grant(
    State(console): State<Console>,
    Path((id, grant)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        (&back(&id), Outcome::GrantRemoved),
        |_form| {
            Ok(Change::new(
                Method::DELETE,
                format!("/api/v1/grants/{}", encode(&grant)),
                None,
            ))
        },
    )
    .await
}
