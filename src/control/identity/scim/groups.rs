//! `/scim/v2/Groups`: the workspace's groups as SCIM Groups.
//!
//! An identity provider's group is a Sluice group of the same name: a grant principal
//! like any other, whose members get at least the role its name is mapped to (see the
//! group mappings). A group created by SCIM has the mapped role or none; renamed to a
//! mapped name, it takes that role. Membership changes apply at the next request.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::resource::{GROUP_SCHEMA, get};
use super::{
    ListQuery, OneQuery, Provisioner, ScimError, answer, created, list_answer, meta, patch,
    read_json,
};
use crate::control::api::Api;
use crate::control::audit::Kind;
use crate::control::policy::Role;
use crate::control::store::groups::{self, GroupRow};
use crate::control::store::scim::{self as scim_store, ScimGroup};
use crate::control::store::users;

/// Longest group name (as the Public API allows).
const MAX_NAME: usize = 100;
/// Most members one Group body names.
pub const MAX_MEMBERS: usize = 10_000;

/// One group as a SCIM Group.
async fn render(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
    group: &GroupRow,
    scim: Option<&ScimGroup>,
) -> Result<Map<String, Value>, ScimError> {
    let mut members = Vec::new();
    for user in groups::members(conn, &group.id).await? {
        // What the identity provider said of the member (its `type`), over the defaults.
        let mut member = Map::new();
        member.insert("value".into(), json!(user));
        member.insert("$ref".into(), json!(format!("{}/Users/{user}", who.base)));
        let said = scim
            .and_then(|s| s.members.get(&user))
            .and_then(Value::as_object)
            .and_then(|m| get(m, "type"))
            .cloned();
        member.insert("type".into(), said.unwrap_or_else(|| json!("User")));
        members.push(Value::Object(member));
    }
    let mut out = Map::new();
    out.insert("schemas".into(), json!([GROUP_SCHEMA]));
    out.insert("id".into(), json!(group.id));
    if let Some(external) = scim.and_then(|s| s.external_id.as_ref()) {
        out.insert("externalId".into(), json!(external));
    }
    out.insert("displayName".into(), json!(group.name));
    out.insert("members".into(), Value::Array(members));
    let modified = scim.map_or(group.created_at, |s| s.updated_at);
    out.insert(
        "meta".into(),
        meta("Group", &who.base, &group.id, group.created_at, modified),
    );
    Ok(out)
}

pub(super) async fn everyone(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
) -> Result<Vec<Map<String, Value>>, ScimError> {
    let ws = &who.workspace.id;
    let scim = scim_store::groups(conn, ws).await?;
    let mut all = Vec::new();
    for group in groups::all(conn, ws)
        .await?
        .iter()
        .filter(|g| provisionable(g))
    {
        all.push(render(conn, who, group, scim.get(&group.id)).await?);
    }
    Ok(all)
}

/// Whether SCIM may see and change `group`: not a group that makes owners (joining one
/// makes an owner, which only an owner may do), which SCIM sees as missing.
fn provisionable(group: &GroupRow) -> bool {
    group.role != Some(Role::Owner)
}

async fn load(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
    id: &str,
) -> Result<(GroupRow, Map<String, Value>), ScimError> {
    let group = groups::get(conn, &who.workspace.id, id)
        .await?
        .filter(provisionable)
        .ok_or_else(|| ScimError::NotFound(format!("Group {id}")))?;
    let scim = scim_store::groups(conn, &who.workspace.id).await?;
    let resource = render(conn, who, &group, scim.get(id)).await?;
    Ok((group, resource))
}

/// What a Group body asks for.
#[derive(Debug)]
struct Wanted {
    name: String,
    external_id: Option<String>,
    members: BTreeSet<String>,
    /// What the body said of each member besides its id (`type`).
    said: Map<String, Value>,
}

impl Wanted {
    fn of(body: &Value) -> Result<Self, ScimError> {
        let Value::Object(body) = body else {
            return Err(ScimError::InvalidSyntax("a Group is a JSON object".into()));
        };
        let name = match get(body, "displayName") {
            Some(Value::String(s)) => s.trim().to_owned(),
            _ => {
                return Err(ScimError::InvalidValue(
                    "displayName is a required string".into(),
                ));
            }
        };
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(ScimError::InvalidValue(format!(
                "displayName is 1 to {MAX_NAME} characters, no control characters"
            )));
        }
        let external_id = match get(body, "externalId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() <= 256 => Some(s.clone()),
            Some(_) => {
                return Err(ScimError::InvalidValue(
                    "externalId is a string of at most 256 characters".into(),
                ));
            }
        };
        let mut members = BTreeSet::new();
        let mut said = Map::new();
        if let Some(Value::Array(items)) = get(body, "members")
            && items.len() > MAX_MEMBERS
        {
            return Err(ScimError::InvalidValue(format!(
                "a group takes at most {MAX_MEMBERS} members per request"
            )));
        }
        match get(body, "members") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_object().and_then(|m| get(m, "value")) {
                        Some(Value::String(id)) => {
                            members.insert(id.clone());
                            if let Some(Value::String(kind)) =
                                item.as_object().and_then(|m| get(m, "type"))
                                && kind.chars().count() <= 64
                            {
                                said.insert(id.clone(), json!({"type": kind}));
                            }
                        }
                        _ => {
                            return Err(ScimError::InvalidValue(
                                "each member is {\"value\": \"<user id>\"}".into(),
                            ));
                        }
                    }
                }
            }
            Some(_) => return Err(ScimError::InvalidValue("members is an array".into())),
        }
        Ok(Self {
            name,
            external_id,
            members,
            said,
        })
    }
}

/// Keeps of `wanted.members` those that are active members of the workspace. An id
/// that names none cannot come to (ids are Sluice's), so it is left out, as lenient
/// servers do for identity providers that send membership out of order, and logged.
async fn keep_known(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
    group: &str,
    wanted: &mut Wanted,
) -> Result<(), ScimError> {
    let mut unknown = Vec::new();
    for id in &wanted.members {
        match users::get(conn, &who.workspace.id, id).await? {
            Some(user) if user.active => {}
            _ => unknown.push(id.clone()),
        }
    }
    if !unknown.is_empty() {
        tracing::info!(
            group,
            left_out = unknown.len(),
            first = ?unknown.first(),
            "SCIM named group members that are no active members"
        );
        for id in &unknown {
            wanted.members.remove(id);
            wanted.said.remove(id);
        }
    }
    Ok(())
}

/// Refuses a displayName another group has.
async fn unique_name(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
    name: &str,
    except: Option<&str>,
) -> Result<(), ScimError> {
    match groups::by_name(conn, &who.workspace.id, name).await? {
        Some(other) if Some(other.id.as_str()) != except => Err(ScimError::Uniqueness(format!(
            "a group named {name} exists"
        ))),
        _ => Ok(()),
    }
}

/// `GET /Groups`.
pub async fn list(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Query(query): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let mut conn = api.store.read().await?;
    let all = everyone(&mut conn, &who).await?;
    list_answer(&query, all)
}

/// `GET /Groups/{id}`.
pub async fn one(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
    Query(query): Query<OneQuery>,
) -> Result<Response, ScimError> {
    let mut conn = api.store.read().await?;
    let (_, resource) = load(&mut conn, &who, &id).await?;
    Ok(answer(
        StatusCode::OK,
        &Value::Object(query.project(resource)),
    ))
}

/// `POST /Groups`.
pub async fn create(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let mut wanted = Wanted::of(&read_json(body).await?)?;
    let ws = who.workspace.id.clone();
    let mut change = api.store.change().await?;
    unique_name(change.conn(), &who, &wanted.name, None).await?;
    let name = wanted.name.clone();
    keep_known(change.conn(), &who, &name, &mut wanted).await?;
    let role = scim_store::mapped_role(change.conn(), &ws, &wanted.name).await?;
    let group = groups::create(change.conn(), &ws, &wanted.name, role, "scim", who.now).await?;
    scim_store::put_group(
        change.conn(),
        &group.id,
        &ScimGroup {
            external_id: wanted.external_id.clone(),
            members: wanted.said.clone(),
            updated_at: who.now,
        },
    )
    .await?;
    change
        .record(who.draft(
            Kind::GroupCreate,
            "group",
            &group.id,
            None,
            Some(json!({"name": wanted.name, "role": role.map(|r| r.name()), "externalId": wanted.external_id})),
        ))
        .await?;
    for user in &wanted.members {
        groups::add_member(change.conn(), &group.id, user).await?;
        change
            .record(who.draft(
                Kind::GroupMemberAdd,
                "group",
                &group.id,
                None,
                Some(json!({"userId": user})),
            ))
            .await?;
    }
    let (_, resource) = load(change.conn(), &who, &group.id).await?;
    change.commit().await?;
    Ok(created(resource))
}

/// `PUT /Groups/{id}`.
pub async fn replace(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let wanted = Wanted::of(&read_json(body).await?)?;
    write(&api, &who, &id, |_| Ok(wanted)).await
}

/// `PATCH /Groups/{id}`.
pub async fn patch(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let body = read_json(body).await?;
    write(&api, &who, &id, |mut current| {
        patch::apply(&mut current, &body)?;
        Wanted::of(&Value::Object(current))
    })
    .await
}

async fn write(
    api: &Api,
    who: &Provisioner,
    id: &str,
    wanted: impl FnOnce(Map<String, Value>) -> Result<Wanted, ScimError>,
) -> Result<Response, ScimError> {
    let ws = who.workspace.id.clone();
    let mut change = api.store.change().await?;
    let (group, current) = load(change.conn(), who, id).await?;
    let had: BTreeSet<String> = groups::members(change.conn(), id)
        .await?
        .into_iter()
        .collect();
    let current_external = current
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut wanted = wanted(current)?;
    keep_known(change.conn(), who, id, &mut wanted).await?;
    if wanted.name != group.name {
        unique_name(change.conn(), who, &wanted.name, Some(id)).await?;
        groups::rename(change.conn(), id, &wanted.name).await?;
        // A role that came from the old name's mapping goes with the old name; the new
        // name's mapping, if any, applies.
        let mapped = scim_store::mapped_role(change.conn(), &ws, &wanted.name).await?;
        let was_mapped = scim_store::mapped_role(change.conn(), &ws, &group.name).await?;
        let role = match mapped {
            Some(role) => Some(role),
            None if was_mapped.is_some() && group.role == was_mapped => None,
            None => group.role,
        };
        if role != group.role {
            groups::set_role(change.conn(), id, role).await?;
        }
        change
            .record(who.draft(
                Kind::GroupUpdate,
                "group",
                id,
                Some(json!({"name": group.name, "role": group.role.map(|r| r.name())})),
                Some(json!({"name": wanted.name, "role": role.map(|r| r.name())})),
            ))
            .await?;
    } else if wanted.external_id != current_external {
        change
            .record(who.draft(
                Kind::GroupUpdate,
                "group",
                id,
                Some(json!({"externalId": current_external})),
                Some(json!({"externalId": wanted.external_id})),
            ))
            .await?;
    }
    scim_store::put_group(
        change.conn(),
        id,
        &ScimGroup {
            external_id: wanted.external_id.clone(),
            members: wanted.said.clone(),
            updated_at: who.now,
        },
    )
    .await?;
    for user in wanted.members.difference(&had) {
        groups::add_member(change.conn(), id, user).await?;
        change
            .record(who.draft(
                Kind::GroupMemberAdd,
                "group",
                id,
                None,
                Some(json!({"userId": user})),
            ))
            .await?;
    }
    for user in had.difference(&wanted.members) {
        groups::remove_member(change.conn(), id, user).await?;
        change
            .record(who.draft(
                Kind::GroupMemberRemove,
                "group",
                id,
                Some(json!({"userId": user})),
                None,
            ))
            .await?;
    }
    let (_, resource) = load(change.conn(), who, id).await?;
    change.commit().await?;
    Ok(answer(StatusCode::OK, &Value::Object(resource)))
}

/// `DELETE /Groups/{id}`: the group with its memberships and grants.
pub async fn delete(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let mut change = api.store.change().await?;
    let group = groups::get(change.conn(), &who.workspace.id, &id)
        .await?
        .filter(provisionable)
        .ok_or_else(|| ScimError::NotFound(format!("Group {id}")))?;
    groups::delete(change.conn(), &id).await?;
    change
        .record(who.draft(
            Kind::GroupDelete,
            "group",
            &id,
            Some(json!({"name": group.name})),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
