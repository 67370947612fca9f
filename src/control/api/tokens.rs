//! `/tokens`: personal access tokens (owners and admins manage them, per the matrix).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::wire::{Data, Pagination, Status};
use super::workspace::{TOKEN_DAYS, days_message};
use super::{
    Api, ApiError, Body, Caller, Forbidden, PageQuery, Path, Query, data, page_of, success,
    text_field,
};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Role, Scope};
use crate::control::store::tokens::{self, IssueError, NewToken, TokenRow};
use crate::control::store::{Change, users};
use crate::control::token;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", get(read).delete(revoke))
        .route("/tokens/{id}/rotate", post(rotate))
}

/// An API token (never its secret, except in [`TokenMade`]).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Id.
    pub id: String,
    /// Whom it acts as.
    pub user_id: String,
    /// Name given by its owner.
    pub name: String,
    /// Scopes, e.g. `sources:write`.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// The prefix and first characters, for people to recognise it.
    pub display: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Refused from then on.
    pub expires_at: DateTime<Utc>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last use (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Address of the last use.
    pub last_used_ip: Option<String>,
}

impl From<&TokenRow> for Token {
    fn from(row: &TokenRow) -> Self {
        Self {
            id: row.id.clone(),
            user_id: row.user_id.clone(),
            name: row.name.clone(),
            scopes: row.scopes.clone(),
            display: row.display.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
            last_used_ip: row.last_used_ip.clone(),
        }
    }
}

/// `{"token": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOne {
    /// The token.
    pub token: Token,
}

/// A token made: its secret is shown here only.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenMade {
    /// The token.
    pub token: Token,
    /// `slc_pat_…`: the secret to send as `Authorization: Bearer …`.
    pub secret: String,
}

/// A page of tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// The page.
    pub tokens: Vec<Token>,
    /// Paging.
    pub pagination: Pagination,
}

/// List API tokens.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "Tokens",
    params(PageQuery),
    responses((status = 200, description = "List API tokens.", body = Data<TokenList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let mut conn = api.store.read().await?;
    let rows = tokens::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|t| t.id.as_str());
    Ok(page_of(
        rows.iter().map(Token::from).collect(),
        &page,
        rows.len(),
        last,
        |tokens, pagination| TokenList { tokens, pagination },
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateToken {
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 100
    )]
    name: String,
    /// At least one of the scopes a person's token may carry.
    #[schema(
        min_items = 1,
        value_type = Vec<String>,
        pattern = "^(workspace:read|workspace:write|sources:read|sources:write|destinations:read|destinations:write|tracking_plan:read|tracking_plan:write|members:read|members:write|audit:read)$"
    )]
    scopes: Vec<String>,
    /// Required: `expiresAt`, or `expiresInDays`.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
    /// Whose token: only the caller's own id is accepted (a token always acts as the
    /// person who made it; nobody holds a secret that acts as someone else).
    #[serde(default)]
    user_id: Option<String>,
}

/// Checks scopes and expiry against the workspace's maximum.
fn terms(caller: &Caller, body: &CreateToken) -> Result<(Vec<Scope>, DateTime<Utc>), ApiError> {
    if body.scopes.is_empty() {
        return Err(ApiError::field("scopes", "at least one scope"));
    }
    let scopes = body
        .scopes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Scope::parse(s)
                .filter(|s| Scope::PERSONAL.contains(s))
                .ok_or_else(|| {
                    let known: Vec<&str> = Scope::PERSONAL.iter().map(|s| s.name()).collect();
                    ApiError::field(
                        &format!("scopes[{i}]"),
                        format!(
                            "not a scope of a person's token; one of {} (gateways and delivery nodes use node credentials: POST /api/v1/nodes)",
                            known.join(", ")
                        ),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    within_caller_scopes(caller, &scopes)?;
    let max_days = caller.workspace.settings.token_max_days;
    let expires = match (body.expires_at, body.expires_in_days) {
        (Some(at), None) => at,
        (None, Some(days)) if !TOKEN_DAYS.contains(&days) => {
            return Err(ApiError::field("expiresInDays", days_message()));
        }
        (None, Some(days)) if days > max_days => {
            return Err(ApiError::FieldConflict {
                field: "expiresInDays",
                message: format!("at most {max_days} days (the workspace's tokenMaxDays)"),
            });
        }
        (None, Some(days)) => caller.now + Duration::days(i64::from(days)),
        _ => {
            return Err(ApiError::field(
                "expiresAt",
                "a token needs an expiry: give expiresAt or expiresInDays",
            ));
        }
    };
    if expires <= caller.now {
        return Err(ApiError::field("expiresAt", "must be in the future"));
    }
    if expires > caller.now + Duration::days(i64::from(max_days)) {
        return Err(ApiError::FieldConflict {
            field: "expiresAt",
            message: format!("at most {max_days} days ahead (the workspace's tokenMaxDays)"),
        });
    }
    Ok((scopes, expires))
}

/// A token never carries a scope the token that made it lacks: a narrow token cannot
/// mint (or rotate its way to) a broader one.
pub fn within_caller_scopes(caller: &Caller, scopes: &[Scope]) -> Result<(), ApiError> {
    match scopes.iter().find(|s| !caller.scopes().contains(s)) {
        Some(extra) => Err(ApiError::Forbidden(Forbidden::ScopeBeyondCaller(*extra))),
        None => Ok(()),
    }
}

/// Issues a token inside `change`; returns its row and plaintext.
pub async fn issue(
    change: &mut Change,
    workspace: &str,
    user: &str,
    name: &str,
    scopes: &[Scope],
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(TokenRow, token::Plaintext), ApiError> {
    let new = NewToken {
        user_id: user,
        name,
        scopes,
        expires_at,
    };
    tokens::issue(change.conn(), workspace, new, now)
        .await
        .map_err(|e| match e {
            IssueError::Store(e) => ApiError::from(e),
            IssueError::Random(e) => {
                tracing::error!(error = %e, "no randomness for a token");
                ApiError::Internal
            }
        })
}

/// Create an API token (secret shown once).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "Tokens",
    request_body = CreateToken,
    responses((status = 200, description = "Create an API token (secret shown once).", body = Data<TokenMade>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateToken>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 100)?;
    let (scopes, expires) = terms(&caller, &body)?;
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    if body.user_id.as_ref().is_some_and(|u| *u != caller.user.id) {
        return Err(ApiError::field(
            "userId",
            "a token acts only as the person who makes it; leave userId out",
        ));
    }
    let mut change = api.store.change().await?;
    let (row, plain) = issue(
        &mut change,
        &caller.workspace.id,
        &caller.user.id,
        &name,
        &scopes,
        expires,
        caller.now,
    )
    .await?;
    change
        .record(caller.draft(Kind::TokenCreate, "token", &row.id, None, Some(json!(row))))
        .await?;
    change.commit().await?;
    Ok(data(TokenMade {
        token: Token::from(&row),
        secret: plain.expose().to_owned(),
    }))
}

async fn load(api: &Api, caller: &Caller, id: &str) -> Result<TokenRow, ApiError> {
    let mut conn = api.store.read().await?;
    tokens::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("token", id))
}

/// Get a token (never its secret).
#[utoipa::path(
    get,
    path = "/api/v1/tokens/{id}",
    tag = "Tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "Get a token (never its secret).", body = Data<TokenOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let row = load(&api, &caller, &id).await?;
    Ok(data(TokenOne {
        token: Token::from(&row),
    }))
}

/// Revoke a token.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "Tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "Revoke a token.", body = Data<Status>))
)]
async fn revoke(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let before = load(&api, &caller, &id).await?;
    if before.user_id != caller.user.id {
        let mut conn = api.store.read().await?;
        let holder = users::principal(&mut conn, &caller.workspace.id, &before.user_id).await?;
        drop(conn);
        if holder.is_some_and(|u| u.effective_role() == Role::Owner) {
            // Only an owner may cut an owner off (an admin revoking every owner token
            // would lock the workspace out).
            api.allow_workspace(&caller, Action::TransferOwnership)
                .await?;
        }
    }
    let mut change = api.store.change().await?;
    tokens::revoke(change.conn(), &id, caller.now).await?;
    change
        .record(caller.draft(Kind::TokenRevoke, "token", &id, Some(json!(before)), None))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// A new token with the same owner, name, scopes and lifetime; the old one is revoked.
#[utoipa::path(
    post,
    path = "/api/v1/tokens/{id}/rotate",
    tag = "Tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "Replace a token with a new one (the old one is revoked).", body = Data<TokenMade>))
)]
async fn rotate(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let old = load(&api, &caller, &id).await?;
    if old.user_id != caller.user.id {
        // The new secret would act as the token's holder: only they may have it.
        return Err(ApiError::Forbidden(Forbidden::NotTokenHolder));
    }
    within_caller_scopes(&caller, &old.scopes)?;
    if old.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "a revoked token cannot be rotated".into(),
        ));
    }
    let lifetime = (old.expires_at - old.created_at).min(Duration::days(i64::from(
        caller.workspace.settings.token_max_days,
    )));
    let mut change = api.store.change().await?;
    tokens::revoke(change.conn(), &id, caller.now).await?;
    let (row, plain) = issue(
        &mut change,
        &caller.workspace.id,
        &caller.user.id,
        &old.name,
        &old.scopes,
        caller.now + lifetime,
        caller.now,
    )
    .await?;
    change
        .record(caller.draft(
            Kind::TokenRotate,
            "token",
            &row.id,
            Some(json!(old)),
            Some(json!(row)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(TokenMade {
        token: Token::from(&row),
        secret: plain.expose().to_owned(),
    }))
}
