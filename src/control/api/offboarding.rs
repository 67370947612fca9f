//! Offboarding: a departure as one audited workflow, dry run first.
//!
//! `POST /users/{id}/offboard` answers the plan without changing anything unless the
//! body says `"dryRun": false`. Carried out, in one change: what the person owned goes to
//! a named successor (the tracking plans they own, their open change requests, and the
//! workspace's ownership when they were an owner); their membership, sessions, personal
//! tokens, grants, elevations and local group memberships are revoked, and so are the
//! node credentials and SCIM tokens they made (they saw those secrets: the dry run lists
//! them so replacements can be made first); a removal record keeps the report. The report also lists
//! what Sluice cannot do itself: the identity-provider groups and connections to clean
//! up there, and the live write keys of every source they could read ("rotate if
//! shared"), which `POST /offboardings/{id}/rotate-write-keys` rotates in one call.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::wire::{Data, Pagination};
use super::{Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of};
use crate::catalog::KeyDigest;
use crate::control::audit::Kind;
use crate::control::policy::{self, Action, ResourceRef, Role};
use crate::control::store::offboardings::{self, OffboardingRow};
use crate::control::store::users::{self, UserRow};
use crate::control::store::{
    change_requests, grants, groups, new_id, nodes, plans, resource_changes, scim, sessions,
    sources, sso, tokens,
};
use crate::control::token;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/users/{id}/offboard", post(offboard))
        .route("/offboardings", get(list))
        .route("/offboardings/{id}", get(read))
        .route(
            "/offboardings/{id}/rotate-write-keys",
            post(rotate_write_keys),
        )
}

/// Someone named in a report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// User id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Their own workspace role.
    pub role: String,
}

/// Something with an id and a name (a token, a credential, a key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Named {
    /// Id.
    pub id: String,
    /// Name (or a key's first characters).
    pub name: String,
}

/// What goes to the successor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transferred {
    /// Tracking plans they own.
    pub tracking_plans: Vec<String>,
    /// Their open change requests, of tracking plans (`cr_…`) and of protected resources
    /// (`rc_…`): the successor becomes the author.
    pub change_requests: Vec<String>,
    /// The successor becomes an owner (the leaver was one).
    pub ownership: bool,
}

/// What is revoked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    /// Their membership of the workspace.
    pub membership: bool,
    /// Their personal API tokens still live.
    pub tokens: Vec<Named>,
    /// Node credentials they made: gateways and delivery nodes using them need new ones
    /// (the leaver saw their secrets).
    pub node_credentials: Vec<Named>,
    /// SCIM tokens they made: the identity provider needs a new one.
    pub scim_tokens: Vec<Named>,
    /// How many browser sessions were live.
    pub sessions: usize,
    /// Their own grants (`{resource, level, justification, approvedBy, expiresAt}` each).
    #[schema(value_type = Vec<Object>)]
    pub grants: Vec<Value>,
    /// Local groups they are taken out of.
    pub local_groups: Vec<String>,
}

/// What to clean up in the identity provider (Sluice cannot).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProvider {
    /// Groups pushed by SCIM: remove the person there, or the next push adds them back.
    pub groups: Vec<String>,
    /// Single sign-on connections they signed in through (`kind:name`): unassign them.
    pub connections: Vec<String>,
    /// Whether SCIM provisions them: deprovision them there.
    pub scim_managed: bool,
}

/// A source whose live write keys the leaver could read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedKeys {
    /// Source id.
    pub source_id: String,
    /// Its live keys (id and first characters).
    pub keys: Vec<Named>,
}

/// An offboarding's plan, or its report once carried out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffboardingReport {
    /// Who leaves.
    pub user: Person,
    /// Who takes over.
    pub successor: Person,
    /// Whether this is only the plan (nothing changed).
    pub dry_run: bool,
    /// The removal record (when carried out).
    pub record_id: Option<String>,
    /// What goes to the successor.
    pub transferred: Transferred,
    /// What is revoked.
    pub revoked: Revoked,
    /// What to do in the identity provider.
    pub identity_provider: IdentityProvider,
    /// Sources whose write keys the leaver could read: rotate if shared.
    pub rotate_if_shared: Vec<SharedKeys>,
}

/// `{"offboarding": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OffboardingOne {
    /// The plan or report.
    pub offboarding: OffboardingReport,
}

/// A removal record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// Id (`off_…`).
    pub id: String,
    /// Who left.
    pub user_id: String,
    /// Their email then.
    pub email: String,
    /// Who took over.
    pub successor_id: String,
    /// Who ran it.
    pub performed_by: String,
    /// When.
    pub performed_at: DateTime<Utc>,
    /// When the listed write keys were rotated.
    pub keys_rotated_at: Option<DateTime<Utc>>,
    /// By whom.
    pub keys_rotated_by: Option<String>,
    /// The report.
    pub report: OffboardingReport,
}

/// `{"removal": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemovalOne {
    /// The record.
    pub removal: Removal,
}

/// A page of removal records.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemovalList {
    /// The page.
    pub removals: Vec<Removal>,
    /// Paging.
    pub pagination: Pagination,
}

fn removal(row: OffboardingRow) -> Result<Removal, ApiError> {
    let report = serde_json::from_value(row.report).map_err(|e| {
        tracing::error!(id = row.id, error = %e, "an offboarding report does not read back");
        ApiError::Internal
    })?;
    Ok(Removal {
        id: row.id,
        user_id: row.user_id,
        email: row.email,
        successor_id: row.successor_id,
        performed_by: row.performed_by,
        performed_at: row.performed_at,
        keys_rotated_at: row.keys_rotated_at,
        keys_rotated_by: row.keys_rotated_by,
        report,
    })
}

fn person(u: &UserRow) -> Person {
    Person {
        id: u.id.clone(),
        email: u.email.clone(),
        role: u.role.name().to_owned(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Offboard {
    /// The member who takes over what the leaver owned.
    successor_id: String,
    /// Only answer the plan (default `true`): send `false` to carry it out.
    #[serde(default)]
    dry_run: Option<bool>,
}

/// Reads everything the report names (no change).
async fn plan(
    api: &Api,
    caller: &Caller,
    leaver: &UserRow,
    successor: &UserRow,
) -> Result<OffboardingReport, ApiError> {
    let ws = &caller.workspace.id;
    let now = caller.now;
    let mut conn = api.store.read().await?;
    let principal = users::principal(&mut conn, ws, &leaver.id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &leaver.id))?;
    let open = change_requests::list(
        &mut conn,
        ws,
        change_requests::Filter {
            status: "OPEN",
            author: &leaver.id,
            plan: "",
        },
        "",
        u32::MAX,
    )
    .await?;
    let open_resource_changes: Vec<String> =
        resource_changes::list(&mut conn, ws, "OPEN", "", u32::MAX)
            .await?
            .into_iter()
            .filter(|rc| rc.author_id == leaver.id)
            .map(|rc| rc.id)
            .collect();
    let node_credentials = nodes::list(&mut conn, ws, "", u32::MAX)
        .await?
        .into_iter()
        .filter(|n| n.created_by == leaver.id && n.live(now))
        .map(|n| Named {
            id: n.id,
            name: n.name,
        })
        .collect();
    let scim_tokens = scim::tokens(&mut conn, ws)
        .await?
        .into_iter()
        .filter(|t| t.created_by == leaver.id && t.revoked_at.is_none())
        .map(|t| Named {
            id: t.id,
            name: t.name,
        })
        .collect();
    let personal = tokens::list(&mut conn, ws, "", u32::MAX)
        .await?
        .into_iter()
        .filter(|t| t.user_id == leaver.id && t.revoked_at.is_none() && t.expires_at > now)
        .map(|t| Named {
            id: t.id,
            name: t.name,
        })
        .collect();
    let grants = grants::of(&mut conn, &grants::Holder::User(leaver.id.clone()))
        .await?
        .into_iter()
        .map(|g| {
            json!({"resource": g.resource, "level": g.level, "justification": g.justification,
                   "approvedBy": g.approved_by, "expiresAt": g.expires_at})
        })
        .collect();
    let (local, pushed): (Vec<_>, Vec<_>) = groups::of_user(&mut conn, ws, &leaver.id)
        .await?
        .into_iter()
        .partition(|g| g.origin == "local");
    // Every source the leaver could read, by the policy, with its live keys.
    let mut rotate_if_shared = Vec::new();
    for source in sources::all(&mut conn, ws).await? {
        let readable = policy::authorize(
            policy::Principal {
                user: &principal,
                token: None,
            },
            Action::ViewSource,
            ResourceRef::Source(source.as_ref()),
            caller.workspace.settings.policy(),
            now,
        )
        .allowed;
        if !readable {
            continue;
        }
        let keys: Vec<Named> = sources::keys_of(&mut conn, &source.id)
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|at| at > now))
            .map(|k| Named {
                id: k.id,
                name: k.display,
            })
            .collect();
        if !keys.is_empty() {
            rotate_if_shared.push(SharedKeys {
                source_id: source.id.clone(),
                keys,
            });
        }
    }
    Ok(OffboardingReport {
        user: person(leaver),
        successor: person(successor),
        dry_run: true,
        record_id: None,
        transferred: Transferred {
            tracking_plans: plans::owned_by(&mut conn, ws, &leaver.id).await?,
            change_requests: open
                .into_iter()
                .map(|cr| cr.id)
                .chain(open_resource_changes)
                .collect(),
            ownership: principal.effective_role() == Role::Owner && successor.role != Role::Owner,
        },
        revoked: Revoked {
            membership: true,
            tokens: personal,
            node_credentials,
            scim_tokens,
            sessions: sessions::live_of(&mut conn, ws, &leaver.id, now)
                .await?
                .len(),
            grants,
            local_groups: local.into_iter().map(|g| g.name).collect(),
        },
        identity_provider: IdentityProvider {
            groups: pushed.into_iter().map(|g| g.name).collect(),
            connections: sso::connections_of(&mut conn, &leaver.id).await?,
            scim_managed: scim::user(&mut conn, ws, &leaver.id).await?.is_some(),
        },
        rotate_if_shared,
    })
}

/// Offboard a member: the plan (dry run, the default), or carried out with
/// `"dryRun": false`. Needs the right to manage members, and to transfer ownership when
/// the leaver is an owner. Nobody offboards themselves.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/offboard",
    tag = "Offboarding",
    params(("id" = String, Path, description = "The leaver's user id")),
    request_body = Offboard,
    responses((status = 200, description = "The offboarding's plan or report.", body = Data<OffboardingOne>))
)]
async fn offboard(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Offboard>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let ws = caller.workspace.id.clone();
    let mut conn = api.store.read().await?;
    let leaver = users::get(&mut conn, &ws, &id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &id))?;
    let successor = users::get(&mut conn, &ws, &body.successor_id)
        .await?
        .filter(|u| u.active)
        .ok_or_else(|| ApiError::missing("user", &body.successor_id))?;
    drop(conn);
    let leaver_is_owner = super::users::is_owner(&api, &caller, &leaver.id).await?;
    if leaver.id == caller.user.id {
        return Err(ApiError::Conflict(
            "nobody offboards themselves: ask another admin".into(),
        ));
    }
    if successor.id == leaver.id {
        return Err(ApiError::field(
            "successorId",
            "the successor is someone other than the leaver",
        ));
    }
    if leaver_is_owner {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut report = plan(&api, &caller, &leaver, &successor).await?;
    if body.dry_run.unwrap_or(true) {
        return Ok(data(OffboardingOne {
            offboarding: report,
        }));
    }
    report.dry_run = false;
    let record = new_id("off_");
    report.record_id = Some(record.clone());
    let mut change = api.store.change().await?;
    if report.transferred.ownership {
        users::set_role(change.conn(), &ws, &successor.id, Role::Owner).await?;
    }
    plans::transfer(change.conn(), &ws, &leaver.id, &successor.id).await?;
    offboardings::hand_over(change.conn(), &ws, &leaver.id, &successor.id).await?;
    users::remove(change.conn(), &ws, &leaver.id, caller.now).await?;
    if leaver_is_owner && users::owner_count(change.conn(), &ws).await? < 1 {
        return Err(ApiError::Conflict(
            "the workspace would be left without an owner".into(),
        ));
    }
    let document = serde_json::to_value(&report).map_err(|_| ApiError::Internal)?;
    offboardings::insert(
        change.conn(),
        &ws,
        &OffboardingRow {
            id: record,
            user_id: leaver.id.clone(),
            email: leaver.email.clone(),
            successor_id: successor.id.clone(),
            performed_by: caller.user.id.clone(),
            performed_at: caller.now,
            report: document.clone(),
            keys_rotated_at: None,
            keys_rotated_by: None,
        },
    )
    .await?;
    change
        .record(caller.draft(
            Kind::UserOffboard,
            "user",
            &leaver.id,
            Some(json!({"email": leaver.email, "role": leaver.role.name()})),
            Some(document),
        ))
        .await?;
    change.commit().await?;
    Ok(data(OffboardingOne {
        offboarding: report,
    }))
}

/// List removal records.
#[utoipa::path(
    get,
    path = "/api/v1/offboardings",
    tag = "Offboarding",
    params(PageQuery),
    responses((status = 200, description = "List removal records.", body = Data<RemovalList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = offboardings::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|r| r.id.clone());
    let count = rows.len();
    let out = rows
        .into_iter()
        .map(removal)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page_of(
        out,
        &page,
        count,
        last.as_deref(),
        |removals, pagination| RemovalList {
            removals,
            pagination,
        },
    ))
}

async fn load(api: &Api, caller: &Caller, id: &str) -> Result<OffboardingRow, ApiError> {
    let mut conn = api.store.read().await?;
    offboardings::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("offboarding", id))
}

/// Get a removal record.
#[utoipa::path(
    get,
    path = "/api/v1/offboardings/{id}",
    tag = "Offboarding",
    params(("id" = String, Path, description = "Removal record id")),
    responses((status = 200, description = "Get a removal record.", body = Data<RemovalOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let row = load(&api, &caller, &id).await?;
    Ok(data(RemovalOne {
        removal: removal(row)?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotate {
    /// Hours the old keys keep working beside the new ones (0 to 720, default 24): time
    /// to deploy the new keys. 0 revokes them at once.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 720)]
    overlap_hours: Option<u32>,
}

/// One source's rotation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    /// Source id.
    pub source_id: String,
    /// The new key's id.
    pub write_key_id: String,
    /// The new key (shown once).
    pub write_key: String,
    /// The old keys' ids.
    pub replaced: Vec<String>,
    /// When the old keys stop working.
    pub old_keys_end_at: DateTime<Utc>,
}

/// The rotations, and the sources the caller may not manage keys of (or that are gone).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Rotated sources.
    pub rotated: Vec<Rotated>,
    /// Sources left alone: deleted since.
    pub skipped: Vec<String>,
}

/// Rotate, in one call, the write keys a removal record lists "rotate if shared": each
/// source gets a new key (in the answer, once) and its listed keys end after the overlap.
/// Once per record; refused whole when any listed source is not the caller's to rotate.
#[utoipa::path(
    post,
    path = "/api/v1/offboardings/{id}/rotate-write-keys",
    tag = "Offboarding",
    params(("id" = String, Path, description = "Removal record id")),
    request_body = Rotate,
    responses((status = 200, description = "The new keys.", body = Data<Rotation>))
)]
async fn rotate_write_keys(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Rotate>,
) -> Result<Response, ApiError> {
    let overlap = body.overlap_hours.unwrap_or(24);
    if overlap > 720 {
        return Err(ApiError::field("overlapHours", "0 to 720"));
    }
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let row = load(&api, &caller, &id).await?;
    let report = removal(row)?.report;
    let ends = caller.now + TimeDelta::hours(i64::from(overlap));
    // Every listed source still there must be the caller's to rotate: asked (and any
    // refusal audited) before anything changes, so a narrow token cannot spend the record.
    let mut gone = Vec::new();
    for shared in &report.rotate_if_shared {
        let mut conn = api.store.read().await?;
        let found = sources::get(&mut conn, &caller.workspace.id, &shared.source_id).await?;
        drop(conn);
        match found {
            None => gone.push(shared.source_id.clone()),
            Some(source) => {
                let missing = ApiError::missing("source", &source.id);
                api.allow(
                    &caller,
                    Action::ManageWriteKeys,
                    ResourceRef::Source(source.as_ref()),
                    missing,
                )
                .await?;
            }
        }
    }
    let mut change = api.store.change().await?;
    if !offboardings::keys_rotated(change.conn(), &id, &caller.user.id, caller.now).await? {
        return Err(ApiError::Conflict(format!(
            "the write keys of offboarding {id:?} were already rotated"
        )));
    }
    let mut out = Rotation {
        rotated: Vec::new(),
        skipped: gone,
    };
    for shared in &report.rotate_if_shared {
        if out.skipped.contains(&shared.source_id) {
            continue;
        }
        let plain = token::random_base62(32).map_err(|e| {
            tracing::error!(error = %e, "no randomness for a write key");
            ApiError::Internal
        })?;
        let display = format!("{}…", &plain[..4]);
        let key = sources::add_key(
            change.conn(),
            &shared.source_id,
            KeyDigest::of(&plain),
            &display,
            &caller.user.id,
            None,
            caller.now,
        )
        .await?;
        let replaced: Vec<String> = shared.keys.iter().map(|k| k.id.clone()).collect();
        for old in &replaced {
            if overlap == 0 {
                sources::revoke_key(change.conn(), old, caller.now).await?;
            } else {
                sources::expire_key(change.conn(), old, ends).await?;
            }
        }
        change
            .record(caller.draft(
                Kind::SourceWritekeyCreate,
                "source",
                &shared.source_id,
                None,
                Some(json!({"writeKey": key, "replaces": replaced, "oldKeysEndAt": ends, "offboarding": id})),
            ))
            .await?;
        out.rotated.push(Rotated {
            source_id: shared.source_id.clone(),
            write_key_id: key.id,
            write_key: plain,
            replaced,
            old_keys_end_at: ends,
        });
    }
    change
        .record(caller.draft(
            Kind::OffboardingRotateWriteKeys,
            "offboarding",
            &id,
            None,
            Some(json!({
                "rotated": out.rotated.iter().map(|r| &r.source_id).collect::<Vec<_>>(),
                "skipped": out.skipped,
                "overlapHours": overlap,
            })),
        ))
        .await?;
    change.commit().await?;
    Ok(data(out))
}
