//! `/access-reviews`: the quarterly access review as an audited campaign.
//!
//! Opening a campaign snapshots one item per member's role, per grant (of a member or a
//! group), per group membership and per live API token, flags what deserves a look
//! (tokens older than 90 days or unused for 90, members without a sign-in or API use for
//! 90 days, grants past their review date or without a justification) and assigns each
//! to a reviewer who is not its subject. Reviewers keep, revoke or change each item with
//! a note; a revocation or change applies at once, in the same transaction as its
//! decision. Nobody decides their own access unless the workspace allows self-approval.
//! Once every item is decided the campaign closes into an evidence record (JSON, or
//! Markdown for auditors).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::prose::prose;
use super::users::is_owner;
use super::wire::{Data, Pagination};
use super::{Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of, text_field};
use crate::control::audit::Kind;
use crate::control::policy::{self, Action, Level, ResourceRef, ReviewItemRef, Role};
use crate::control::store::access_reviews::{self as store, ItemRow, ReviewRow};
use crate::control::store::grants::{self, Holder, NewGrant};
use crate::control::store::{Change, groups, new_id, tokens, users};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/access-reviews", get(list).post(open))
        .route("/access-reviews/{id}", get(read))
        .route("/access-reviews/{id}/items", get(items))
        .route("/access-reviews/{id}/items/{item}/decision", post(decide))
        .route("/access-reviews/{id}/close", post(close))
        .route("/access-reviews/{id}/evidence", get(evidence))
}

/// How long before a token, a member's inactivity or an unreviewed grant is flagged.
const STALE_DAYS: i64 = 90;

/// A campaign with its progress.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessReview {
    /// Id (`arv_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// `OPEN` or `CLOSED`.
    pub status: String,
    /// Who opened it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<DateTime<Utc>>,
    /// Items in all.
    pub items: usize,
    /// Items decided.
    pub decided: usize,
    /// Items with at least one flag.
    pub flagged: usize,
}

/// `{"accessReview": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewOne {
    /// The campaign.
    pub access_review: AccessReview,
}

/// A page of campaigns.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewList {
    /// The page.
    pub access_reviews: Vec<AccessReview>,
    /// Paging.
    pub pagination: Pagination,
}

/// One item to review.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewItem {
    /// Id (`ari_…`).
    pub id: String,
    /// `role`, `grant`, `group_membership` or `token`.
    pub kind: String,
    /// Whose access (user id, or the group's id for a group's grant).
    pub subject_id: String,
    /// Their email, or `group:<name>`.
    pub subject_name: String,
    /// Who is asked to decide it.
    pub reviewer_id: String,
    /// The line as it stood when the campaign opened.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// Why it deserves a look.
    pub flags: Vec<String>,
    /// `keep`, `revoke` or `change`; none while undecided.
    pub decision: Option<String>,
    /// The reviewer's note.
    pub note: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// What a change set, or why nothing was applied.
    #[schema(value_type = Option<Object>)]
    pub changed_to: Option<Value>,
}

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewItemList {
    /// The page.
    pub items: Vec<ReviewItem>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"item": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewItemOne {
    /// The item after the decision.
    pub item: ReviewItem,
}

fn item_wire(i: &ItemRow) -> ReviewItem {
    ReviewItem {
        id: i.id.clone(),
        kind: i.kind.clone(),
        subject_id: i.subject_id.clone(),
        subject_name: i.subject_name.clone(),
        reviewer_id: i.reviewer_id.clone(),
        detail: i.detail.clone(),
        flags: i.flags.clone(),
        decision: i.decision.clone(),
        note: i.note.clone(),
        decided_by: i.decided_by.clone(),
        decided_at: i.decided_at,
        changed_to: i.changed_to.clone(),
    }
}

fn review_wire(r: &ReviewRow, items: &[ItemRow]) -> AccessReview {
    AccessReview {
        id: r.id.clone(),
        name: r.name.clone(),
        status: if r.open { "OPEN" } else { "CLOSED" }.to_owned(),
        created_by: r.created_by.clone(),
        created_at: r.created_at,
        closed_by: r.closed_by.clone(),
        closed_at: r.closed_at,
        items: items.len(),
        decided: items.iter().filter(|i| i.decision.is_some()).count(),
        flagged: items.iter().filter(|i| !i.flags.is_empty()).count(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Open {
    /// e.g. `2026 Q4` (1 to 200 characters).
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 200
    )]
    name: String,
    /// Who reviews (owners or admins; default: every owner and admin).
    #[serde(default)]
    #[schema(max_items = 100)]
    reviewer_ids: Option<Vec<String>>,
}

/// What the items of a new campaign are made from.
struct Snapshot {
    people: Vec<users::UserRow>,
    grants: Vec<grants::GrantRow>,
    groups: Vec<(groups::GroupRow, Vec<String>)>,
    tokens: Vec<tokens::TokenRow>,
}

async fn snapshot(api: &Api, caller: &Caller) -> Result<Snapshot, ApiError> {
    let ws = &caller.workspace.id;
    let mut conn = api.store.read().await?;
    let people: Vec<users::UserRow> = users::all(&mut conn, ws)
        .await?
        .into_iter()
        .filter(|u| u.active)
        .collect();
    let mut groups_and_members = Vec::new();
    for g in groups::all(&mut conn, ws).await? {
        let members = groups::members(&mut conn, &g.id).await?;
        groups_and_members.push((g, members));
    }
    let live_tokens = tokens::list(&mut conn, ws, "", u32::MAX)
        .await?
        .into_iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at > caller.now)
        .collect();
    Ok(Snapshot {
        people,
        grants: grants::list(&mut conn, ws).await?,
        groups: groups_and_members,
        tokens: live_tokens,
    })
}

/// The items of a campaign, flagged and assigned round-robin to reviewers other than
/// their subject (the first reviewer when they are the only one).
fn itemize(snap: &Snapshot, reviewers: &[String], now: DateTime<Utc>) -> Vec<ItemRow> {
    let stale = now - TimeDelta::days(STALE_DAYS);
    let email = |id: &str| {
        snap.people
            .iter()
            .find(|u| u.id == id)
            .map_or_else(|| id.to_owned(), |u| u.email.clone())
    };
    let mut out = Vec::new();
    let mut push = |kind: &str, subject: &str, name: String, detail: Value, flags: Vec<&str>| {
        let position = i64::try_from(out.len()).unwrap_or(i64::MAX);
        let skip = usize::try_from(position).unwrap_or(0);
        let reviewer = reviewers
            .iter()
            .cycle()
            .skip(skip % reviewers.len().max(1))
            .take(reviewers.len())
            .find(|r| r.as_str() != subject)
            .or(reviewers.first())
            .cloned()
            .unwrap_or_default();
        out.push(ItemRow {
            id: new_id("ari_"),
            review_id: String::new(),
            position,
            kind: kind.to_owned(),
            subject_id: subject.to_owned(),
            subject_name: name,
            reviewer_id: reviewer,
            detail,
            flags: flags.into_iter().map(str::to_owned).collect(),
            decision: None,
            note: String::new(),
            decided_by: None,
            decided_at: None,
            changed_to: None,
        });
    };
    for u in &snap.people {
        let last_api_use = snap
            .tokens
            .iter()
            .filter(|t| t.user_id == u.id)
            .filter_map(|t| t.last_used_at)
            .max();
        let active_since = u.last_login.max(last_api_use).unwrap_or(u.created_at);
        let mut flags = Vec::new();
        if active_since < stale {
            flags.push("no_sign_in_90_days");
        }
        push(
            "role",
            &u.id,
            u.email.clone(),
            json!({"role": u.role.name(), "scoped": u.scoped, "origin": u.origin,
                   "lastLogin": u.last_login, "lastApiUse": last_api_use, "createdAt": u.created_at}),
            flags,
        );
    }
    for g in &snap.grants {
        let (subject, name) = match &g.principal {
            Holder::User(id) => (id.clone(), email(id)),
            Holder::Group(id) => {
                let group = snap.groups.iter().find(|(grp, _)| grp.id == *id);
                (
                    id.clone(),
                    format!("group:{}", group.map_or(id.as_str(), |(grp, _)| &grp.name)),
                )
            }
        };
        let mut flags = Vec::new();
        if g.next_review() < now {
            flags.push("past_review_date");
        }
        if g.justification.trim().is_empty() {
            flags.push("no_justification");
        }
        push(
            "grant",
            &subject,
            name,
            json!({"grantId": g.id, "holder": g.principal, "resource": g.resource,
                   "level": g.level, "justification": g.justification,
                   "approvedBy": g.approved_by, "expiresAt": g.expires_at,
                   "createdAt": g.created_at, "nextReview": g.next_review()}),
            flags,
        );
    }
    for (g, members) in &snap.groups {
        for m in members {
            push(
                "group_membership",
                m,
                email(m),
                json!({"groupId": g.id, "group": g.name, "groupRole": g.role, "origin": g.origin}),
                Vec::new(),
            );
        }
    }
    for t in &snap.tokens {
        let mut flags = Vec::new();
        if t.created_at < stale {
            flags.push("token_older_than_90_days");
        }
        if t.last_used_at.unwrap_or(t.created_at) < stale {
            flags.push("token_unused_90_days");
        }
        push(
            "token",
            &t.user_id,
            email(&t.user_id),
            json!({"tokenId": t.id, "name": t.name, "scopes": t.scopes, "createdAt": t.created_at,
                   "lastUsedAt": t.last_used_at, "expiresAt": t.expires_at}),
            flags,
        );
    }
    out
}

/// Open a campaign: every role, grant, group membership and live token of the
/// workspace becomes an item, flagged and assigned.
#[utoipa::path(
    post,
    path = "/api/v1/access-reviews",
    tag = "Access Reviews",
    request_body = Open,
    responses((status = 200, description = "The campaign, open.", body = Data<AccessReviewOne>))
)]
async fn open(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<Open>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 200)?;
    api.allow_workspace(&caller, Action::ReviewAccess).await?;
    let snap = snapshot(&api, &caller).await?;
    // Reviewers: those named (each must be allowed to review), or every owner and admin.
    let mut conn = api.store.read().await?;
    let ws = &caller.workspace.id;
    let candidates: Vec<String> = match &body.reviewer_ids {
        Some(ids) if !ids.is_empty() => ids.clone(),
        _ => snap.people.iter().map(|u| u.id.clone()).collect(),
    };
    let named = body
        .reviewer_ids
        .as_ref()
        .is_some_and(|ids| !ids.is_empty());
    let mut reviewers = Vec::new();
    for id in candidates {
        // A named reviewer who is no member is a missing user (404); one who may not
        // review is a value the workspace refuses (409).
        let Some(user) = users::principal(&mut conn, ws, &id).await? else {
            return Err(ApiError::missing("user", &id));
        };
        let may = policy::authorize(
            policy::Principal {
                user: &user,
                token: None,
            },
            Action::ReviewAccess,
            ResourceRef::Workspace,
            caller.workspace.settings.policy(),
            caller.now,
        )
        .allowed;
        if may {
            reviewers.push(id);
        } else if named {
            return Err(ApiError::FieldConflict {
                message: format!("{id} is not an owner or admin of this workspace"),
                field: "reviewerIds",
            });
        }
    }
    drop(conn);
    let review = ReviewRow {
        id: new_id("arv_"),
        name,
        created_by: caller.user.id.clone(),
        created_at: caller.now,
        open: true,
        closed_by: None,
        closed_at: None,
        evidence: None,
    };
    let mut items = itemize(&snap, &reviewers, caller.now);
    for item in &mut items {
        item.review_id = review.id.clone();
    }
    let shown = review_wire(&review, &items);
    let mut change = api.store.change().await?;
    store::insert(change.conn(), ws, &review, &items).await?;
    change
        .record(caller.draft(
            Kind::AccessReviewOpen,
            "access_review",
            &review.id,
            None,
            Some(
                json!({"name": review.name, "items": shown.items, "flagged": shown.flagged,
                        "reviewers": reviewers}),
            ),
        ))
        .await?;
    change.commit().await?;
    Ok(data(AccessReviewOne {
        access_review: shown,
    }))
}

async fn load(api: &Api, caller: &Caller, id: &str) -> Result<(ReviewRow, Vec<ItemRow>), ApiError> {
    let mut conn = api.store.read().await?;
    let review = store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("access review", id))?;
    let items = store::items(&mut conn, id).await?;
    Ok((review, items))
}

/// List campaigns.
#[utoipa::path(
    get,
    path = "/api/v1/access-reviews",
    tag = "Access Reviews",
    params(PageQuery),
    responses((status = 200, description = "List access reviews.", body = Data<AccessReviewList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ReviewAccess).await?;
    let mut conn = api.store.read().await?;
    let rows = store::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let mut out = Vec::new();
    for r in &rows {
        let items = store::items(&mut conn, &r.id).await?;
        out.push(review_wire(r, &items));
    }
    let last = rows.last().map(|r| r.id.as_str());
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |access_reviews, pagination| AccessReviewList {
            access_reviews,
            pagination,
        },
    ))
}

/// Get a campaign and its progress.
#[utoipa::path(
    get,
    path = "/api/v1/access-reviews/{id}",
    tag = "Access Reviews",
    params(("id" = String, Path, description = "Access review id")),
    responses((status = 200, description = "Get an access review.", body = Data<AccessReviewOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ReviewAccess).await?;
    let (review, items) = load(&api, &caller, &id).await?;
    Ok(data(AccessReviewOne {
        access_review: review_wire(&review, &items),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ItemQuery {
    /// Page size (1 to 200, default 10).
    #[serde(rename = "pagination[count]", default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    count: Option<String>,
    /// Opaque cursor from the previous page's `pagination.next`.
    #[serde(rename = "pagination[cursor]", default)]
    #[param(pattern = "^(MA|YWZ0ZXI6([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?)?$")]
    cursor: Option<String>,
    /// Only items assigned to this reviewer (user id).
    #[serde(rename = "reviewerId", default)]
    reviewer: Option<String>,
    /// Only undecided (`false`) or decided (`true`) items.
    #[serde(default)]
    decided: Option<bool>,
    /// Only flagged items.
    #[serde(default)]
    flagged: Option<bool>,
}

/// A campaign's items, in order, optionally one reviewer's, undecided or flagged.
#[utoipa::path(
    get,
    path = "/api/v1/access-reviews/{id}/items",
    tag = "Access Reviews",
    params(("id" = String, Path, description = "Access review id"), ItemQuery),
    responses((status = 200, description = "The campaign's items.", body = Data<ReviewItemList>))
)]
async fn items(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ItemQuery>,
) -> Result<Response, ApiError> {
    let page = PageQuery {
        count: q.count,
        cursor: q.cursor,
    }
    .page()?;
    api.allow_workspace(&caller, Action::ReviewAccess).await?;
    let (_, all) = load(&api, &caller, &id).await?;
    let chosen: Vec<(String, ReviewItem)> = all
        .iter()
        .filter(|i| q.reviewer.as_ref().is_none_or(|r| *r == i.reviewer_id))
        .filter(|i| q.decided.is_none_or(|d| d == i.decision.is_some()))
        .filter(|i| q.flagged.is_none_or(|f| f != i.flags.is_empty()))
        .map(|i| (format!("{:08}", i.position), item_wire(i)))
        .collect();
    Ok(super::page_in_memory(chosen, &page, |items, pagination| {
        ReviewItemList { items, pagination }
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ItemDecision {
    /// `keep`, `revoke` or `change`.
    #[schema(pattern = "^(keep|revoke|change)$")]
    decision: String,
    /// Why (1 to 2000 characters).
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    note: String,
    /// With `change` on a role item: the new role.
    #[serde(default)]
    #[schema(pattern = "^(owner|admin|member|read_only)$")]
    role: Option<String>,
    /// With `change` on a grant item: the new level.
    #[serde(default)]
    #[schema(pattern = "^(full|read_write|read_only|no_access)$")]
    level: Option<String>,
}

/// Decisions that reach an owner are ownership transfers, for owners only: revoking or
/// changing the role of an owner (by their own role or a group's) or making one, taking
/// someone out of a group that makes owners, revoking an owner's token. Asked before the
/// decision's change opens (a refusal is audited in its own change).
async fn may_apply(
    api: &Api,
    caller: &Caller,
    item: &ItemRow,
    body: &ItemDecision,
) -> Result<(), ApiError> {
    if body.decision == "keep" {
        return Ok(());
    }
    let reaches_owner = match item.kind.as_str() {
        "role" => {
            body.role.as_deref() == Some(Role::Owner.name())
                || is_owner(api, caller, &item.subject_id).await?
        }
        "group_membership" => {
            // The group's role now, not as the campaign saw it.
            let group = item.detail["groupId"].as_str().unwrap_or_default();
            let mut conn = api.store.read().await?;
            groups::get(&mut conn, &caller.workspace.id, group)
                .await?
                .is_some_and(|g| g.role == Some(Role::Owner))
        }
        "token" => is_owner(api, caller, &item.subject_id).await?,
        _ => false,
    };
    if reaches_owner {
        api.allow_workspace(caller, Action::TransferOwnership)
            .await?;
    }
    Ok(())
}

/// What a decision does to the store, with its audit events; the `changedTo` record.
/// Its authorisation was asked first ([`may_apply`]).
async fn apply(
    caller: &Caller,
    change: &mut Change,
    item: &ItemRow,
    body: &ItemDecision,
) -> Result<Option<Value>, ApiError> {
    let ws = &caller.workspace.id;
    let text = |key: &str| item.detail[key].as_str().unwrap_or_default().to_owned();
    match (item.kind.as_str(), body.decision.as_str()) {
        (_, "keep") => {
            if item.kind == "grant" {
                grants::mark_reviewed(change.conn(), &text("grantId"), caller.now).await?;
            }
            Ok(None)
        }
        ("role", verb) => {
            let Some(user) = users::get(change.conn(), ws, &item.subject_id).await? else {
                return Ok(Some(json!({"applied": false, "why": "no longer a member"})));
            };
            let new_role =
                match verb {
                    "revoke" => None,
                    _ => Some(body.role.as_deref().and_then(Role::parse).ok_or_else(|| {
                        ApiError::field("role", "owner, admin, member or read_only")
                    })?),
                };
            if user.role == Role::Owner
                && new_role != Some(Role::Owner)
                && users::owner_count(change.conn(), ws).await? <= 1
            {
                return Err(ApiError::Conflict("the last owner keeps their role".into()));
            }
            match new_role {
                None => {
                    users::remove(change.conn(), ws, &user.id, caller.now).await?;
                    change
                        .record(caller.draft(
                            Kind::UserRemove,
                            "user",
                            &user.id,
                            Some(json!({"email": user.email, "role": user.role.name()})),
                            None,
                        ))
                        .await?;
                    Ok(Some(json!({"removed": true})))
                }
                Some(role) => {
                    users::set_role(change.conn(), ws, &user.id, role).await?;
                    change
                        .record(caller.draft(
                            Kind::UserRoleUpdate,
                            "user",
                            &user.id,
                            Some(json!({"role": user.role.name()})),
                            Some(json!({"role": role.name()})),
                        ))
                        .await?;
                    Ok(Some(json!({"role": role.name()})))
                }
            }
        }
        ("grant", verb) => {
            let Some(grant) = grants::get(change.conn(), ws, &text("grantId")).await? else {
                return Ok(Some(json!({"applied": false, "why": "the grant is gone"})));
            };
            grants::delete(change.conn(), &grant.id).await?;
            change
                .record(caller.draft(
                    Kind::GrantDelete,
                    "grant",
                    &grant.id,
                    Some(json!(grant)),
                    None,
                ))
                .await?;
            if verb == "revoke" {
                return Ok(Some(json!({"revoked": true})));
            }
            let level = body
                .level
                .as_deref()
                .and_then(Level::parse)
                .ok_or_else(|| {
                    ApiError::field("level", "full, read_write, read_only or no_access")
                })?;
            let made = grants::put(
                change.conn(),
                ws,
                NewGrant {
                    principal: grant.principal.clone(),
                    resource: grant.resource.clone(),
                    level,
                    justification: grant.justification.clone(),
                    approved_by: caller.user.id.clone(),
                    expires_at: grant.expires_at,
                },
                caller.now,
            )
            .await?;
            grants::mark_reviewed(change.conn(), &made.id, caller.now).await?;
            change
                .record(caller.draft(
                    Kind::GrantCreate,
                    "grant",
                    &made.id,
                    None,
                    Some(json!(made)),
                ))
                .await?;
            Ok(Some(json!({"grantId": made.id, "level": level})))
        }
        ("group_membership", "revoke") => {
            let group = text("groupId");
            groups::remove_member(change.conn(), &group, &item.subject_id).await?;
            change
                .record(caller.draft(
                    Kind::GroupMemberRemove,
                    "group",
                    &group,
                    Some(json!({"userId": item.subject_id})),
                    None,
                ))
                .await?;
            Ok(Some(json!({"removedFrom": group})))
        }
        ("token", "revoke") => {
            let token = text("tokenId");
            tokens::revoke(change.conn(), &token, caller.now).await?;
            change
                .record(caller.draft(Kind::TokenRevoke, "token", &token, None, None))
                .await?;
            Ok(Some(json!({"revoked": true})))
        }
        (_, _) => Err(ApiError::field(
            "decision",
            format!("a {} item is kept or revoked", item.kind),
        )),
    }
}

/// Decide one item: keep (a grant's review date moves on), revoke or change (applied at
/// once). Revoking a member's role removes them; their other undecided items are
/// decided with it.
#[utoipa::path(
    post,
    path = "/api/v1/access-reviews/{id}/items/{item}/decision",
    tag = "Access Reviews",
    params(("id" = String, Path, description = "Access review id"), ("item" = String, Path, description = "Item id")),
    request_body = ItemDecision,
    responses((status = 200, description = "The item, decided.", body = Data<ReviewItemOne>))
)]
async fn decide(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    Body(body): Body<ItemDecision>,
) -> Result<Response, ApiError> {
    let note = prose("note", &body.note)?;
    if !["keep", "revoke", "change"].contains(&body.decision.as_str()) {
        return Err(ApiError::field("decision", "keep, revoke or change"));
    }
    let (review, all) = load(&api, &caller, &id).await?;
    let mut item = all
        .iter()
        .find(|i| i.id == item_id)
        .cloned()
        .ok_or_else(|| ApiError::missing("access review item", &item_id))?;
    if body.decision == "change" && !matches!(item.kind.as_str(), "role" | "grant") {
        return Err(ApiError::field(
            "decision",
            format!("a {} item is kept or revoked", item.kind),
        ));
    }
    api.allow(
        &caller,
        Action::ReviewAccess,
        ResourceRef::ReviewItem(ReviewItemRef {
            id: &item.id,
            subject: &item.subject_id,
        }),
        ApiError::missing("access review item", &item_id),
    )
    .await?;
    if !review.open || item.decision.is_some() {
        return Err(ApiError::Conflict(format!(
            "item {item_id:?} is already decided"
        )));
    }
    may_apply(&api, &caller, &item, &body).await?;
    let mut change = api.store.change().await?;
    item.changed_to = apply(&caller, &mut change, &item, &body).await?;
    item.decision = Some(body.decision.clone());
    item.note = note;
    item.decided_by = Some(caller.user.id.clone());
    item.decided_at = Some(caller.now);
    if !store::decide(change.conn(), &item).await? {
        return Err(ApiError::Conflict(format!(
            "item {item_id:?} was decided while this request ran"
        )));
    }
    let mut decided = vec![item.clone()];
    if item.kind == "role" && body.decision == "revoke" {
        for other in all
            .iter()
            .filter(|o| o.subject_id == item.subject_id && o.id != item.id && o.decision.is_none())
        {
            let mut other = other.clone();
            other.decision = Some("revoke".into());
            other.note = format!("removed with their membership ({})", item.id);
            other.decided_by = Some(caller.user.id.clone());
            other.decided_at = Some(caller.now);
            store::decide(change.conn(), &other).await?;
            decided.push(other);
        }
    }
    for d in &decided {
        change
            .record(caller.draft(
                Kind::AccessReviewDecide,
                "access_review",
                &id,
                Some(json!({"item": d.id, "kind": d.kind, "subject": d.subject_id, "detail": d.detail})),
                Some(json!({"item": d.id, "decision": d.decision, "note": d.note,
                            "changedTo": d.changed_to})),
            ))
            .await?;
    }
    change.commit().await?;
    Ok(data(ReviewItemOne {
        item: item_wire(&item),
    }))
}

/// The evidence record of a closed campaign: who reviewed what, when, and the outcome.
fn evidence_of(caller: &Caller, review: &ReviewRow, items: &[ItemRow]) -> Value {
    let count = |d: &str| {
        items
            .iter()
            .filter(|i| i.decision.as_deref() == Some(d))
            .count()
    };
    json!({
        "campaign": {"id": review.id, "name": review.name, "workspace": caller.workspace.name,
                     "openedBy": review.created_by, "openedAt": review.created_at,
                     "closedBy": caller.user.id, "closedAt": caller.now},
        "summary": {"items": items.len(), "kept": count("keep"), "revoked": count("revoke"),
                    "changed": count("change"),
                    "flagged": items.iter().filter(|i| !i.flags.is_empty()).count()},
        "items": items.iter().map(item_wire).collect::<Vec<_>>(),
    })
}

/// Close a campaign whose every item is decided: it becomes an evidence record.
#[utoipa::path(
    post,
    path = "/api/v1/access-reviews/{id}/close",
    tag = "Access Reviews",
    params(("id" = String, Path, description = "Access review id")),
    responses((status = 200, description = "The campaign, closed.", body = Data<AccessReviewOne>))
)]
async fn close(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ReviewAccess).await?;
    let (mut review, items) = load(&api, &caller, &id).await?;
    let open = items.iter().filter(|i| i.decision.is_none()).count();
    if open > 0 {
        return Err(ApiError::Conflict(format!(
            "{open} item(s) are still undecided"
        )));
    }
    let evidence = evidence_of(&caller, &review, &items);
    let mut change = api.store.change().await?;
    if !store::close(change.conn(), &id, &caller.user.id, caller.now, &evidence).await? {
        return Err(ApiError::Conflict(format!(
            "access review {id:?} is already closed"
        )));
    }
    change
        .record(caller.draft(
            Kind::AccessReviewClose,
            "access_review",
            &id,
            None,
            Some(evidence["summary"].clone()),
        ))
        .await?;
    change.commit().await?;
    review.open = false;
    review.closed_by = Some(caller.user.id.clone());
    review.closed_at = Some(caller.now);
    Ok(data(AccessReviewOne {
        access_review: review_wire(&review, &items),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EvidenceQuery {
    /// `json` (default) or `markdown`.
    #[serde(default)]
    #[param(pattern = "^(json|markdown)$")]
    format: Option<String>,
}

/// The campaign's evidence record as Markdown.
fn markdown(evidence: &Value) -> String {
    let c = &evidence["campaign"];
    let s = &evidence["summary"];
    let t = super::evidence::cell;
    let mut out = format!(
        "# Access review: {}\n\nWorkspace: {}  \nOpened by {} at {}  \nClosed by {} at {}\n\n\
         {} items: {} kept, {} revoked, {} changed ({} flagged)\n\n\
         | subject | kind | access | flags | decision | note | decided by | at |\n\
         |---|---|---|---|---|---|---|---|\n",
        t(&c["name"]),
        t(&c["workspace"]),
        t(&c["openedBy"]),
        t(&c["openedAt"]),
        t(&c["closedBy"]),
        t(&c["closedAt"]),
        s["items"],
        s["kept"],
        s["revoked"],
        s["changed"],
        s["flagged"]
    );
    for i in evidence["items"].as_array().into_iter().flatten() {
        let d = &i["detail"];
        let access = match i["kind"].as_str() {
            Some("role") => format!("role {}", t(&d["role"])),
            Some("grant") => format!(
                "{} on {}:{}{} (justification: {}; approved by {})",
                t(&d["level"]),
                t(&d["resource"]["kind"]),
                t(&d["resource"]["id"]),
                d["resource"]["value"]
                    .as_str()
                    .map(|v| format!(":{v}"))
                    .unwrap_or_default(),
                t(&d["justification"]),
                t(&d["approvedBy"])
            ),
            Some("group_membership") => format!("member of {}", t(&d["group"])),
            Some("token") => format!("token {} ({})", t(&d["name"]), t(&d["scopes"])),
            _ => String::new(),
        };
        let flags: Vec<String> = i["flags"].as_array().into_iter().flatten().map(t).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            t(&i["subjectName"]),
            t(&i["kind"]),
            access,
            flags.join(", "),
            t(&i["decision"]),
            t(&i["note"]),
            t(&i["decidedBy"]),
            t(&i["decidedAt"])
        ));
    }
    out
}

/// The evidence record of a closed campaign, as JSON or Markdown.
#[utoipa::path(
    get,
    path = "/api/v1/access-reviews/{id}/evidence",
    tag = "Access Reviews",
    params(("id" = String, Path, description = "Access review id"), EvidenceQuery),
    responses((status = 200, description = "The evidence record.", content(
        (Data<Object> = "application/json"),
        (String = "text/markdown"),
    )))
)]
async fn evidence(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<EvidenceQuery>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ReviewAccess).await?;
    let (review, _) = load(&api, &caller, &id).await?;
    let Some(evidence) = review.evidence else {
        return Err(ApiError::Conflict(format!(
            "access review {id:?} is still open: close it first"
        )));
    };
    match q.format.as_deref() {
        None | Some("json") => Ok(data(json!({"evidence": evidence}))),
        Some("markdown") => Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            markdown(&evidence),
        )
            .into_response()),
        Some(_) => Err(ApiError::field("format", "json or markdown")),
    }
}
