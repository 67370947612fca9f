//! `/scim/v2/Users`: the workspace's members as SCIM Users.
//!
//! Every member is a User (those invited by hand too, so an identity provider can match
//! them by `userName`, which is their email unless SCIM set another). A User's email is
//! its primary `emails` value, else its `userName` when that is an email. New people
//! are `read_only` with nothing else. `active: false` deactivates the member in place
//! (tokens, sessions, grants and groups gone, role `read_only`); `true` brings them back
//! with exactly that. DELETE removes them. The workspace's last owner can be neither.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::resource::{USER_SCHEMA, get, is_urn};
use super::{
    ListQuery, OneQuery, Provisioner, ScimError, answer, created, list_answer, meta, patch,
    read_json,
};
use crate::control::api::Api;
use crate::control::audit::Kind;
use crate::control::policy::Role;
use crate::control::store::groups::{self, GroupRow};
use crate::control::store::scim::{self as scim_store, ScimUser};
use crate::control::store::users::{self, NewUser, UserRow};

/// Longest userName, name part or email accepted.
const MAX_TEXT: usize = 256;
/// Largest set of extra attributes kept for one User (serialized).
const MAX_ATTRS_BYTES: usize = 64 * 1024;
/// Attributes Sluice computes or never keeps (a password is never stored).
const NOT_KEPT: [&str; 7] = [
    "id",
    "meta",
    "groups",
    "schemas",
    "password",
    "userName",
    "externalId",
];

/// The workspace's members as SCIM Users, in id order.
pub(super) async fn everyone(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
) -> Result<Vec<Map<String, Value>>, ScimError> {
    let ws = &who.workspace.id;
    let members = users::all(conn, ws).await?;
    let names = scim_store::users(conn, ws).await?;
    let memberships = memberships(conn, ws).await?;
    Ok(members
        .iter()
        .map(|u| {
            render(
                who,
                u,
                names.get(&u.id),
                memberships.get(&u.id).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect())
}

/// Each member's groups.
async fn memberships(
    conn: &mut sqlx::AnyConnection,
    workspace: &str,
) -> Result<HashMap<String, Vec<GroupRow>>, ScimError> {
    let mut out: HashMap<String, Vec<GroupRow>> = HashMap::new();
    for group in groups::all(conn, workspace).await? {
        for user in groups::members(conn, &group.id).await? {
            out.entry(user).or_default().push(group.clone());
        }
    }
    Ok(out)
}

/// One member as a SCIM User.
async fn load(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
    id: &str,
) -> Result<(UserRow, Map<String, Value>), ScimError> {
    let ws = &who.workspace.id;
    let row = users::get(conn, ws, id)
        .await?
        .ok_or_else(|| ScimError::NotFound(format!("User {id}")))?;
    let name = scim_store::user(conn, ws, id).await?;
    let groups = groups::of_user(conn, ws, id).await?;
    let resource = render(who, &row, name.as_ref(), &groups);
    Ok((row, resource))
}

/// The SCIM User of a member: what the identity provider sent, with what Sluice holds
/// laid over it.
fn render(
    who: &Provisioner,
    row: &UserRow,
    name: Option<&ScimUser>,
    groups: &[GroupRow],
) -> Map<String, Value> {
    let mut out = Map::new();
    let kept = name
        .and_then(|n| n.attrs.as_object())
        .cloned()
        .unwrap_or_default();
    let mut schemas = vec![json!(USER_SCHEMA)];
    schemas.extend(kept.keys().filter(|k| is_urn(k)).map(|k| json!(k)));
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), json!(row.id));
    if let Some(external) = name.and_then(|n| n.external_id.as_ref()) {
        out.insert("externalId".into(), json!(external));
    }
    let user_name = name.map_or(row.email.as_str(), |n| n.user_name.as_str());
    out.insert("userName".into(), json!(user_name));
    for (k, v) in kept {
        out.insert(k, v);
    }
    let mut full_name = out
        .get("name")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, part) in [
        ("givenName", &row.first_name),
        ("familyName", &row.last_name),
    ] {
        full_name.remove(key);
        if !part.is_empty() {
            full_name.insert(key.into(), json!(part));
        }
    }
    if full_name.is_empty() {
        out.remove("name");
    } else {
        out.insert("name".into(), Value::Object(full_name));
    }
    if !out.contains_key("displayName") {
        let display = format!("{} {}", row.first_name, row.last_name)
            .trim()
            .to_owned();
        if !display.is_empty() && name.is_none() {
            out.insert("displayName".into(), json!(display));
        }
    }
    // Emails as the identity provider sent them; a member it never described has theirs.
    if name.is_none() {
        out.insert(
            "emails".into(),
            json!([{"value": row.email, "type": "work", "primary": true}]),
        );
    }
    // `active` is what Sluice holds; left out only when the identity provider never
    // set it (or removed it) and the member is active.
    if name.is_none() || out.contains_key("active") || !row.active {
        out.insert("active".into(), json!(row.active));
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "value": g.id,
                "display": g.name,
                "$ref": format!("{}/Groups/{}", who.base, g.id),
                "type": "direct",
            })
        })
        .collect();
    out.insert("groups".into(), Value::Array(groups));
    let modified = name.map_or(row.created_at, |n| n.updated_at);
    out.insert(
        "meta".into(),
        meta("User", &who.base, &row.id, row.created_at, modified),
    );
    out
}

/// What a User body asks for.
#[derive(Debug)]
struct Wanted {
    user_name: String,
    external_id: Option<String>,
    email: String,
    first_name: String,
    last_name: String,
    /// As sent; absent keeps the member's state (a new member is active).
    active: Option<bool>,
    attrs: Map<String, Value>,
}

fn text(value: Option<&Value>, field: &str) -> Result<Option<String>, ScimError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT => Err(ScimError::InvalidValue(
            format!("{field} is longer than {MAX_TEXT} characters"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(ScimError::InvalidValue(
            format!("{field} has control characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(ScimError::InvalidValue(format!("{field} is a string"))),
    }
}

/// `true`, `false`, or Entra's `"True"` / `"False"`.
fn boolean(value: Option<&Value>, field: &str) -> Result<Option<bool>, ScimError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ScimError::InvalidValue(format!("{field} is a boolean"))),
    }
}

impl Wanted {
    fn of(body: &Value) -> Result<Self, ScimError> {
        let Value::Object(body) = body else {
            return Err(ScimError::InvalidSyntax("a User is a JSON object".into()));
        };
        let user_name = text(get(body, "userName"), "userName")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ScimError::InvalidValue("userName is required".into()))?;
        let external_id = text(get(body, "externalId"), "externalId")?;
        let name = match get(body, "name") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(name)) => name.clone(),
            Some(_) => return Err(ScimError::InvalidValue("name is an object".into())),
        };
        let first_name = text(get(&name, "givenName"), "name.givenName")?.unwrap_or_default();
        let last_name = text(get(&name, "familyName"), "name.familyName")?.unwrap_or_default();
        // The sign-in identifier: the primary email, else the userName (which is the
        // email at most identity providers).
        let email = primary_email(get(body, "emails"))?.unwrap_or_else(|| user_name.clone());
        let given = boolean(get(body, "active"), "active")?;
        let active = given;
        let mut attrs: Map<String, Value> = body
            .iter()
            .filter(|(k, _)| !NOT_KEPT.iter().any(|n| n.eq_ignore_ascii_case(k)))
            .filter(|(k, _)| !k.eq_ignore_ascii_case("active"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(given) = given {
            attrs.insert("active".into(), json!(given));
        }
        if serde_json::to_vec(&attrs).map_or(0, |v| v.len()) > MAX_ATTRS_BYTES {
            return Err(ScimError::InvalidValue(format!(
                "a User's attributes take at most {MAX_ATTRS_BYTES} bytes"
            )));
        }
        Ok(Self {
            user_name,
            external_id,
            email: email.to_lowercase(),
            first_name,
            last_name,
            active,
            attrs,
        })
    }

    fn scim(&self, now: DateTime<Utc>) -> ScimUser {
        ScimUser {
            user_name: self.user_name.clone(),
            external_id: self.external_id.clone(),
            attrs: Value::Object(self.attrs.clone()),
            updated_at: now,
        }
    }
}

/// The primary email of an `emails` value: the one marked primary, else the first.
fn primary_email(emails: Option<&Value>) -> Result<Option<String>, ScimError> {
    let items = match emails {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ScimError::InvalidValue("emails is an array".into())),
    };
    let mut first = None;
    for item in items {
        let Value::Object(item) = item else {
            return Err(ScimError::InvalidValue("each email is an object".into()));
        };
        let Some(value) = text(get(item, "value"), "emails.value")? else {
            continue;
        };
        if value.is_empty() || value.chars().any(char::is_whitespace) {
            return Err(ScimError::InvalidValue(format!(
                "{value:?} is not an email"
            )));
        }
        if boolean(get(item, "primary"), "emails.primary")? == Some(true) {
            return Ok(Some(value));
        }
        first.get_or_insert(value);
    }
    Ok(first)
}

/// Refuses a userName another member has (ignoring case).
async fn unique_user_name(
    conn: &mut sqlx::AnyConnection,
    who: &Provisioner,
    wanted: &str,
    except: Option<&str>,
) -> Result<(), ScimError> {
    if !scim_store::users_named(conn, &who.workspace.id, wanted, except)
        .await?
        .is_empty()
    {
        return Err(ScimError::Uniqueness(format!("userName {wanted} is taken")));
    }
    Ok(())
}

/// `GET /Users`.
pub async fn list(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Query(query): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let mut conn = api.store.read().await?;
    // Identity providers look a person up by `userName eq "…"` before each create: that
    // one is answered from an index; the filter still decides what is shown.
    let named = query
        .filter
        .as_deref()
        .map(super::filter::parse)
        .transpose()?
        .as_ref()
        .and_then(user_name_eq);
    let all = match named {
        Some(name) => {
            let mut found = Vec::new();
            for id in scim_store::users_named(&mut conn, &who.workspace.id, &name, None).await? {
                found.push(load(&mut conn, &who, &id).await?.1);
            }
            found
        }
        None => everyone(&mut conn, &who).await?,
    };
    list_answer(&query, all)
}

/// The value of a filter that is exactly `userName eq "…"` (core schema, no sub-attribute).
fn user_name_eq(filter: &scim_v2::filter::Filter) -> Option<String> {
    use scim_v2::filter::{AttrExp, CompValue, CompareOp, Filter};
    let Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value))) = filter
    else {
        return None;
    };
    let core = path.uri.as_deref().is_none_or(super::resource::is_core);
    (core && path.sub_attr.is_none() && path.name.eq_ignore_ascii_case("userName"))
        .then(|| value.clone())
}

/// `GET /Users/{id}`.
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

/// `POST /Users`.
pub async fn create(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let wanted = Wanted::of(&read_json(body).await?)?;
    let mut change = api.store.change().await?;
    unique_user_name(change.conn(), &who, &wanted.user_name, None).await?;
    if scim_store::email_taken(change.conn(), &wanted.email).await? {
        return Err(ScimError::Uniqueness(format!(
            "email {} is taken",
            wanted.email
        )));
    }
    let ws = who.workspace.id.clone();
    let row = users::create(
        change.conn(),
        &ws,
        NewUser {
            email: &wanted.email,
            first_name: &wanted.first_name,
            last_name: &wanted.last_name,
            role: Role::ReadOnly,
            origin: "scim",
        },
        who.now,
    )
    .await?;
    scim_store::put_user(change.conn(), &ws, &row.id, &wanted.scim(who.now)).await?;
    change
        .record(who.draft(
            Kind::UserProvision,
            "user",
            &row.id,
            None,
            Some(summary(&wanted)),
        ))
        .await?;
    if wanted.active == Some(false) {
        users::deactivate(change.conn(), &ws, &row.id, who.now).await?;
        change
            .record(who.draft(Kind::UserDeactivate, "user", &row.id, None, None))
            .await?;
    }
    let (_, resource) = load(change.conn(), &who, &row.id).await?;
    change.commit().await?;
    Ok(created(resource))
}

/// What the audit keeps of a provisioned User (no free-form attributes).
fn summary(wanted: &Wanted) -> Value {
    json!({
        "userName": wanted.user_name,
        "externalId": wanted.external_id,
        "email": wanted.email,
        "givenName": wanted.first_name,
        "familyName": wanted.last_name,
        "active": wanted.active,
    })
}

/// `PUT /Users/{id}`.
pub async fn replace(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let body = read_json(body).await?;
    let wanted = Wanted::of(&body)?;
    write(&api, &who, &id, |_| Ok(wanted)).await
}

/// `PATCH /Users/{id}`: the operations applied to the User as it is, then stored as a
/// PUT of the result would be.
pub async fn patch(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let body = read_json(body).await?;
    write(&api, &who, &id, |mut current| {
        let had_active = current.contains_key("active");
        patch::apply(&mut current, &body)?;
        let mut wanted = Wanted::of(&Value::Object(current))?;
        // `remove active` unassigns it: the default (active) applies, as RFC 7643 reads
        // an absent value; only a PUT that leaves it out keeps the member's state.
        if had_active && wanted.active.is_none() {
            wanted.active = Some(true);
        }
        Ok(wanted)
    })
    .await
}

/// Applies what `wanted` makes of the current User.
async fn write(
    api: &Api,
    who: &Provisioner,
    id: &str,
    wanted: impl FnOnce(Map<String, Value>) -> Result<Wanted, ScimError>,
) -> Result<Response, ScimError> {
    let ws = who.workspace.id.clone();
    let mut change = api.store.change().await?;
    let (row, current) = load(change.conn(), who, id).await?;
    let wanted = wanted(current)?;
    unique_user_name(change.conn(), who, &wanted.user_name, Some(id)).await?;
    if wanted.email != row.email && row.role == Role::Owner {
        // An owner's sign-in email is theirs to change: an identity provider changing it
        // would lock them out, or hand their account to whoever holds the new address.
        return Err(ScimError::Mutability(
            "an owner's email is not changed by provisioning".into(),
        ));
    }
    if wanted.email != row.email {
        if scim_store::email_taken(change.conn(), &wanted.email).await? {
            return Err(ScimError::Uniqueness(format!(
                "email {} is taken",
                wanted.email
            )));
        }
        users::set_email(change.conn(), id, &wanted.email).await?;
    }
    if wanted.first_name != row.first_name || wanted.last_name != row.last_name {
        users::set_names(change.conn(), id, &wanted.first_name, &wanted.last_name).await?;
    }
    let before = scim_store::user(change.conn(), &ws, id).await?;
    scim_store::put_user(change.conn(), &ws, id, &wanted.scim(who.now)).await?;
    let was = json!({
        "userName": before.as_ref().map_or(row.email.as_str(), |b| b.user_name.as_str()),
        "email": row.email,
        "givenName": row.first_name,
        "familyName": row.last_name,
        "active": row.active,
    });
    change
        .record(who.draft(
            Kind::UserProvisionUpdate,
            "user",
            id,
            Some(was),
            Some(summary(&wanted)),
        ))
        .await?;
    match (row.active, wanted.active.unwrap_or(row.active)) {
        (true, false) => {
            last_owner_stays(change.conn(), &ws, &row).await?;
            let groups: Vec<String> = groups::of_user(change.conn(), &ws, id)
                .await?
                .into_iter()
                .map(|g| g.id)
                .collect();
            users::deactivate(change.conn(), &ws, id, who.now).await?;
            change
                .record(who.draft(
                    Kind::UserDeactivate,
                    "user",
                    id,
                    Some(json!({"role": row.role.name(), "scoped": row.scoped, "groups": groups})),
                    Some(json!({"role": "read_only", "groups": []})),
                ))
                .await?;
        }
        (false, true) => {
            users::reactivate(change.conn(), &ws, id).await?;
            change
                .record(who.draft(
                    Kind::UserReactivate,
                    "user",
                    id,
                    None,
                    Some(json!({"role": "read_only"})),
                ))
                .await?;
        }
        _ => {}
    }
    let (_, resource) = load(change.conn(), who, id).await?;
    change.commit().await?;
    Ok(answer(StatusCode::OK, &Value::Object(resource)))
}

/// The workspace's last active owner is neither deactivated nor deleted by SCIM.
async fn last_owner_stays(
    conn: &mut sqlx::AnyConnection,
    workspace: &str,
    row: &UserRow,
) -> Result<(), ScimError> {
    if row.role == Role::Owner && row.active && users::owner_count(conn, workspace).await? <= 1 {
        return Err(ScimError::Mutability(
            "this is the workspace's last owner: make another owner first".into(),
        ));
    }
    Ok(())
}

/// `DELETE /Users/{id}`: removes the member (tokens, sessions, grants, groups, password).
pub async fn delete(
    State(api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let ws = who.workspace.id.clone();
    let mut change = api.store.change().await?;
    let row = users::get(change.conn(), &ws, &id)
        .await?
        .ok_or_else(|| ScimError::NotFound(format!("User {id}")))?;
    last_owner_stays(change.conn(), &ws, &row).await?;
    users::remove(change.conn(), &ws, &id, who.now).await?;
    change
        .record(who.draft(
            Kind::UserRemove,
            "user",
            &id,
            Some(json!({"email": row.email})),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_user_name_equality_takes_the_index() {
        let named = |text: &str| {
            super::super::filter::parse(text)
                .ok()
                .as_ref()
                .and_then(user_name_eq)
        };
        assert_eq!(
            named(r#"userName eq "Ada@x.example""#),
            Some("Ada@x.example".into())
        );
        assert_eq!(
            named(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#),
            Some("a".into())
        );
        for other in [
            r#"userName ne "a""#,
            r#"userName co "a""#,
            r#"userName eq "a" or userName eq "b""#,
            r#"externalId eq "a""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:userName eq "a""#,
        ] {
            assert_eq!(named(other), None, "{other}");
        }
    }
}
