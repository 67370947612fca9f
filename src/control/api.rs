//! The control plane's REST API under `/api/v1`, compatible with Segment's Public API
//! for the resources both have (wire facts: `shared/spec/public-api.md`).
//!
//! A request goes: rate limit (per token) → [`Caller`] (Bearer token → user, as the
//! policy sees them) → handler: load the resource, ask [`Api::allow`] (which asks
//! [`policy::authorize`]), act in a store [`Change`](super::store::Change) with its audit
//! event, answer `{"data": …}`. Every failure is an [`ApiError`], answered as
//! `{"errors":[{"type","message","field"?}]}` with its status.
//!
//! One file per resource family below; wire types live with their handlers.

pub mod access;
pub mod access_reviews;
pub mod audit;
mod body;
pub mod catalog;
pub mod change_requests;
pub mod consent;
pub mod destinations;
pub mod elevations;
pub mod evidence;
pub mod function_instances;
pub mod function_runs;
pub mod functions;
pub mod grants;
pub mod groups;
pub mod identities;
pub mod internal;
pub mod invites;
pub mod labels;
pub mod nodes;
pub mod offboarding;
pub mod openapi;
pub mod permissions;
pub mod pii;
pub mod plans;
pub mod prose;
pub mod protected;
pub mod provisioning;
pub mod regulations;
pub mod roles;
pub mod setup;
pub mod sign_in;
pub mod source_functions;
pub mod source_settings;
pub mod sources;
pub mod sso;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod wire;
pub mod workspace;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use governor::clock::DefaultClock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::audit::{Actor, Draft, Kind};
use super::identity::session;
use super::policy::{self, Action, Decision, Reason, ResourceRef};
use super::store::sessions::SessionRow;
use super::store::tokens::TokenRow;
use super::store::workspaces::Workspace;
use super::store::{self, Store, StoreError};
use super::token;
pub use body::Body;
use wire::{Data, Pagination, Status};

/// How stale a token's recorded last use may get before a request updates it.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Largest request body the API reads (tracking plans with many rules fit).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Default and largest page size.
pub const PAGE_DEFAULT: u32 = 10;
/// Largest page size.
pub const PAGE_MAX: u32 = 200;

type Limiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Shared state of the API.
#[derive(Debug)]
pub struct Api {
    /// The store.
    pub store: Store,
    /// The published catalog (remote gateways' long polls read it).
    pub published: super::feed::Publisher,
    /// Requests per minute per token.
    pub rate_per_minute: NonZeroU32,
    limiter: Limiter,
    /// Lookups of tokens not remembered yet, per address (four times the request
    /// budget): made-up tokens cannot make the database work without bound.
    lookups: Limiter,
    /// The URL people reach the control listener at (setup links).
    pub public_url: String,
    /// `delivery.allow_private_destinations`: otherwise a destination whose URL the
    /// delivery guard would always refuse is refused when it is made.
    pub allow_private_destinations: bool,
    /// `control.functions`: the program function code runs in (test runs), if any.
    pub functions_runner: Option<std::path::PathBuf>,
    /// Test runs under way on this API (one at a time; more answer 429).
    pub functions_running: tokio::sync::Semaphore,
    /// One audit chain verification at a time (each reads the whole chain), and the
    /// last one's answer, given again for a minute.
    pub audit_verifying: tokio::sync::Mutex<Option<audit::AuditChain>>,
    /// Cancelled when the listener shuts down: long polls answer at once.
    pub closing: tokio_util::sync::CancellationToken,
    /// Callers' identities, remembered per revision.
    identities: identities::Identities,
    /// When idle rate-limit buckets were last dropped (Unix ms).
    swept: std::sync::atomic::AtomicI64,
    /// Which refused setup/invite link attempts are audited.
    pub link_refusals: setup::LinkRefusals,
    /// Which refused SAML responses (before any was verified: anyone may post them)
    /// reach the audit log: the first per address per minute, with a count of the rest.
    pub saml_refusals: setup::LinkRefusals,
    /// Sign-in attempts per account and per address.
    pub sign_in: super::identity::SignInLimits,
    /// SCIM requests per address.
    pub scim_limits: super::identity::scim::ScimLimits,
    /// The clock callers' decisions are taken at.
    pub clock: crate::clock::Clock,
}

impl Api {
    /// The API over `published`'s store; `rate_per_minute` requests per token per minute.
    pub fn new(
        published: super::feed::Publisher,
        rate_per_minute: NonZeroU32,
        public_url: String,
        allow_private_destinations: bool,
        functions_runner: Option<std::path::PathBuf>,
        clock: crate::clock::Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: published.store().clone(),
            published,
            rate_per_minute,
            limiter: RateLimiter::keyed(Quota::per_minute(rate_per_minute))
                .with_middleware::<StateInformationMiddleware>(),
            lookups: RateLimiter::keyed(Quota::per_minute(
                rate_per_minute.saturating_mul(NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN)),
            ))
            .with_middleware::<StateInformationMiddleware>(),
            public_url,
            allow_private_destinations,
            functions_runner,
            functions_running: tokio::sync::Semaphore::new(1),
            audit_verifying: tokio::sync::Mutex::new(None),
            closing: tokio_util::sync::CancellationToken::new(),
            identities: identities::Identities::default(),
            swept: std::sync::atomic::AtomicI64::new(0),
            link_refusals: setup::LinkRefusals::default(),
            saml_refusals: setup::LinkRefusals::default(),
            sign_in: super::identity::SignInLimits::default(),
            scim_limits: super::identity::scim::ScimLimits::default(),
            clock,
        })
    }

    /// Asks the policy. A refusal becomes the right error: 401 for a dead token, 404 for
    /// a hidden resource (exactly as a missing one, `missing` says what to call it), 403
    /// otherwise; refusals of anything but a read are written to the audit log.
    pub async fn allow(
        &self,
        caller: &Caller,
        action: Action,
        resource: ResourceRef<'_>,
        missing: ApiError,
    ) -> Result<Decision, ApiError> {
        self.settle(
            caller,
            action,
            resource,
            caller.decide(action, resource),
            missing,
        )
        .await
    }

    /// [`Api::allow`] with the decision already taken (each decision is asked once).
    pub async fn settle(
        &self,
        caller: &Caller,
        action: Action,
        resource: ResourceRef<'_>,
        decision: Decision,
        missing: ApiError,
    ) -> Result<Decision, ApiError> {
        if decision.allowed {
            return Ok(decision);
        }
        crate::telemetry::CONTROL_DENIALS
            .with([&reason_name(decision.reason)])
            .increment(1);
        if let Some(dead) = Unauthenticated::of(decision.reason) {
            return Err(ApiError::Unauthorized(dead));
        }
        // Refused changes are audited, on hidden resources too (the caller still gets
        // exactly the answer a missing resource gets).
        if !is_read(action) {
            let (kind, id) = describe(resource);
            let draft = caller.draft(
                Kind::AccessDenied(action),
                kind,
                &id,
                None,
                Some(json!({"reason": decision.reason, "rules": decision.rules})),
            );
            self.store.record_alone(draft).await?;
        }
        if decision.reason == Reason::Hidden {
            return Err(missing);
        }
        Err(ApiError::Forbidden(Forbidden::Policy {
            action,
            reason: decision.reason,
        }))
    }
}

impl Api {
    /// The answer to a change attempted on a resource that does not exist: audited like
    /// a refusal on a hidden one, so that the two cost the same and answer the same.
    pub async fn missing_target(
        &self,
        caller: &Caller,
        action: Action,
        kind: &str,
        id: &str,
        missing: ApiError,
    ) -> ApiError {
        if is_read(action) {
            return missing;
        }
        let draft = caller.draft(
            Kind::AccessDenied(action),
            kind,
            id,
            None,
            Some(json!({"reason": "not_found"})),
        );
        match self.store.record_alone(draft).await {
            Ok(_) => missing,
            Err(error) => ApiError::from(error),
        }
    }

    /// Asks whether the caller sees the resource (`view` on `seen`), then whether they
    /// may do `action` (on `acted`: the same resource, with what the action may rest on).
    /// A change to a hidden resource is asked as the change, so its refusal is audited,
    /// and answered as missing.
    pub async fn allow_seen(
        &self,
        caller: &Caller,
        view: Action,
        action: Action,
        seen: ResourceRef<'_>,
        acted: ResourceRef<'_>,
        missing: impl Fn() -> ApiError,
    ) -> Result<(), ApiError> {
        let sight = caller.decide(view, seen);
        if action != view && sight.hidden() {
            self.allow(caller, action, acted, missing()).await?;
        }
        self.settle(caller, view, seen, sight, missing()).await?;
        if action != view {
            self.allow(caller, action, acted, missing()).await?;
        }
        Ok(())
    }

    /// [`Api::allow`] for a change that reaches `resource` through the one asked about (a
    /// plan's sources, a function's destinations and sources): every refusal, a hidden
    /// resource's included, answers `refused()`, so the answer never tells whether the
    /// caller sees it; refusals are audited as usual.
    pub async fn allow_reached(
        &self,
        caller: &Caller,
        action: Action,
        resource: ResourceRef<'_>,
        refused: impl Fn() -> ApiError,
    ) -> Result<(), ApiError> {
        let decision = caller.decide(action, resource);
        if decision.allowed {
            return Ok(());
        }
        Err(
            match self
                .settle(caller, action, resource, decision, refused())
                .await
            {
                Err(ApiError::Forbidden(_)) | Ok(_) => refused(),
                Err(other) => other,
            },
        )
    }

    /// [`Api::allow`] for a workspace-wide action.
    pub async fn allow_workspace(
        &self,
        caller: &Caller,
        action: Action,
    ) -> Result<Decision, ApiError> {
        self.allow(
            caller,
            action,
            ResourceRef::Workspace,
            ApiError::missing("workspace", ""),
        )
        .await
    }
}

/// A page of a list read from the store: `list` makes the answer of the items shown and
/// the page's `pagination`; `rows` is how many rows were read and `last` the id of the
/// last one shown (the next page starts after it).
pub fn page_of<T, L: Serialize>(
    items: Vec<T>,
    page: &Page,
    rows: usize,
    last: Option<&str>,
    list: impl FnOnce(Vec<T>, Pagination) -> L,
) -> Response {
    let pagination = pagination(page, rows, last);
    data(list(items, pagination))
}

/// A page of a list held in memory, in Segment's shape: the items sorted by their id
/// (the first of each pair), those after the cursor, at most `page.count`, made into the
/// answer by `list` with a `pagination` that has `totalEntries`.
pub fn page_in_memory<T, L: Serialize>(
    mut items: Vec<(String, T)>,
    page: &Page,
    list: impl FnOnce(Vec<T>, Pagination) -> L,
) -> Response {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let total = items.len();
    let chosen: Vec<(String, T)> = items
        .into_iter()
        .filter(|(id, _)| page.after.is_empty() || *id > page.after)
        .take(page.count as usize)
        .collect();
    let last = chosen.last().map(|(id, _)| id.clone());
    let values: Vec<T> = chosen.into_iter().map(|(_, v)| v).collect();
    let pagination = Pagination {
        total_entries: Some(total),
        ..pagination(page, values.len(), last.as_deref())
    };
    data(list(values, pagination))
}

fn is_read(action: Action) -> bool {
    matches!(
        action,
        Action::ViewWorkspace
            | Action::ViewMembers
            | Action::ViewTrackingPlans
            | Action::ViewSource
            | Action::ViewDestination
            | Action::ViewDestinationSecrets
    )
}

fn describe(resource: ResourceRef<'_>) -> (&'static str, String) {
    match resource {
        ResourceRef::Workspace => ("workspace", String::new()),
        ResourceRef::Source(s) => ("source", s.id.to_owned()),
        ResourceRef::Destination(d) => ("destination", d.id.to_owned()),
        ResourceRef::Connection(s, d) => ("connection", format!("{}->{}", s.id, d.id)),
        ResourceRef::Labels(change) => ("source", change.source.id.to_owned()),
        ResourceRef::ChangeRequest(cr) => ("change_request", cr.id.to_owned()),
        ResourceRef::Elevation(e) => ("elevation", e.id.to_owned()),
        ResourceRef::ReviewItem(item) => ("access_review_item", item.id.to_owned()),
    }
}

fn reason_name(reason: Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Builds the `/api/v1` router (and the setup pages), layers listed outside in.
pub fn router(api: Arc<Api>) -> Router {
    // Per-token rate limit, with the X-RateLimit-* headers on every answer.
    let limited = axum::middleware::from_fn_with_state(api.clone(), rate_limit);
    let v1 = Router::new()
        .merge(sources::routes())
        .merge(source_settings::routes())
        .merge(destinations::routes())
        .merge(plans::routes())
        .merge(change_requests::routes())
        .merge(workspace::routes())
        .merge(users::routes())
        .merge(offboarding::routes())
        .merge(elevations::routes())
        .merge(usage::routes())
        .merge(access_reviews::routes())
        .merge(evidence::routes())
        .merge(invites::routes())
        .merge(roles::routes())
        .merge(groups::routes())
        .merge(grants::routes())
        .merge(permissions::routes())
        .merge(provisioning::routes())
        .merge(sign_in::routes())
        .merge(sso::routes())
        .merge(super::identity::reset::api_routes())
        .merge(labels::routes())
        .merge(access::routes())
        .merge(tokens::routes())
        .merge(nodes::routes())
        .merge(audit::routes())
        .merge(catalog::routes())
        .merge(internal::routes())
        .merge(protected::routes())
        .merge(functions::routes())
        .merge(function_runs::routes())
        .merge(function_instances::routes())
        .merge(source_functions::routes())
        .merge(regulations::routes())
        .merge(consent::routes())
        .merge(pii::routes())
        // Changes to protected (production) resources: at once, or kept for review.
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            protected::guard,
        ))
        .layer(limited.clone());
    let app = Router::new()
        .nest("/api/v1", v1)
        // Segment's clients ask for the workspace at the base URL with its slash.
        .route(
            "/api/v1/",
            axum::routing::get(workspace::workspace).layer(limited.clone()),
        )
        .merge(internal::internal_routes().layer(limited.clone()))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(openapi::serve).layer(limited.clone()),
        )
        // Setup and invite links: a guessed link costs the guesser's address budget.
        .merge(super::identity::routes().layer(limited.clone()))
        .merge(setup::routes().layer(limited))
        // SCIM answers in its own envelope and counts its own budget (per address).
        .merge(super::identity::scim::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        // A known path with another method: the error envelope too (clients unwrap it).
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Bodies are bounded before any handler reads them.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Every request counted and timed by its route template.
        .route_layer(axum::middleware::from_fn(measure))
        .with_state(api.clone());
    // The console: pages over this same router (every read and change is an API call).
    let console = super::console::routes(super::console::Console::new(api, app.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn(measure));
    app.merge(console)
}

/// Serves the router on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let closing = api.closing.clone();
    let app = router(api).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            closing.cancel();
        })
        .await
}

/// Rate-limit buckets are swept of idle ones at most this often.
const SWEEP_EVERY_MS: i64 = 1_000;

/// The token a request carries, resolved once by the rate limiter for the [`Caller`].
#[derive(Debug, Clone)]
struct Resolved {
    digest: String,
    identity: Option<identities::Identity>,
}

/// The key the rate limiter counts a request under: a *known* token's id; anything else
/// (no token, a malformed or made-up one, the setup pages, the OpenAPI document) counts
/// under the client's address (its /64 for IPv6), so made-up tokens share one budget.
fn limiter_key(resolved: Option<&Resolved>, addr: Option<SocketAddr>) -> String {
    if let Some(identity) = resolved.and_then(|r| r.identity.as_ref()) {
        return format!("token:{}", identity.token.id);
    }
    addr.map_or_else(|| "addr:unknown".into(), |a| address_key(a.ip()))
}

/// The budget key of a request's client address ([`address_key`]; `addr:unknown` when
/// the connection's address is not known).
pub fn client_key(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "addr:unknown".to_owned(), |c| address_key(c.0.ip()))
}

/// An address as budgets count it: IPv4 as is, IPv6 by its /64.
pub fn address_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("addr:{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        ip => format!("addr:{ip}"),
    }
}

/// Counts and times every request by its route template (never the raw path).
async fn measure(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    crate::telemetry::CONTROL_REQUEST_DURATION
        .with([&route])
        .record(start.elapsed().as_secs_f64());
    let status = response.status().as_u16().to_string();
    crate::telemetry::CONTROL_REQUESTS
        .with([&route, &status])
        .increment(1);
    response
}

async fn rate_limit(State(api): State<Arc<Api>>, mut request: Request, next: Next) -> Response {
    let addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    api.sweep_buckets();
    let limit = api.rate_per_minute.get();
    // A token not remembered yet costs a database lookup: the address's lookup budget
    // pays for it first, so made-up tokens past that budget cost nothing.
    let presented = presented_digest(request.headers());
    if presented.as_ref().is_some_and(|d| !api.identities.knows(d))
        && let Err(not_until) = api.lookups.check_key(&limiter_key(None, addr))
    {
        return with_limit_headers(refusal(&not_until), limit, 0, wait_secs(&not_until));
    }
    let resolved = match resolve(&api, presented).await {
        Ok(resolved) => resolved,
        Err(error) => return error.into_response(),
    };
    let key = limiter_key(resolved.as_ref(), addr);
    if let Some(resolved) = resolved {
        request.extensions_mut().insert(resolved);
    }
    match api.limiter.check_key(&key) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            with_limit_headers(next.run(request).await, limit, remaining, 0)
        }
        Err(not_until) => with_limit_headers(refusal(&not_until), limit, 0, wait_secs(&not_until)),
    }
}

type NotUntil = governor::NotUntil<<DefaultClock as governor::clock::Clock>::Instant>;

/// Seconds until the budget has room again (at least 1).
fn wait_secs(not_until: &NotUntil) -> u64 {
    let wait = not_until.wait_time_from(governor::clock::Clock::now(
        &governor::clock::DefaultClock::default(),
    ));
    wait.as_secs() + 1
}

/// The 429 answer, with `Retry-After`.
fn refusal(not_until: &NotUntil) -> Response {
    let mut response = ApiError::RateLimited.into_response();
    if let Ok(v) = HeaderValue::from_str(&wait_secs(not_until).to_string()) {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

/// Adds the `X-RateLimit-*` headers every answer carries.
fn with_limit_headers(mut response: Response, limit: u32, remaining: u32, reset: u64) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", u64::from(limit)),
        ("x-ratelimit-remaining", u64::from(remaining)),
        ("x-ratelimit-reset", reset),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, v);
        }
    }
    response
}

/// The digest (hex) of the request's Bearer token, if it is a well-formed one.
fn presented_digest(headers: &HeaderMap) -> Option<String> {
    bearer(headers)
        .and_then(|t| token::parse(t).ok())
        .map(|d| d.to_hex())
}

/// Looks a presented token's digest up once (`None` without a well-formed token).
async fn resolve(api: &Api, digest: Option<String>) -> Result<Option<Resolved>, ApiError> {
    let Some(digest) = digest else {
        return Ok(None);
    };
    let mut conn = api.store.read().await?;
    let identity = api.identities.resolve(&mut conn, &digest).await?;
    Ok(Some(Resolved { digest, identity }))
}

impl Api {
    /// Drops idle rate-limit buckets (at most once a second): a bucket that has refilled
    /// is the same as none, so the map holds only callers seen within the last minute.
    pub(crate) fn sweep_buckets(&self) {
        let now = Utc::now().timestamp_millis();
        let last = self.swept.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= SWEEP_EVERY_MS
            && self
                .swept
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            for limiter in [&self.limiter, &self.lookups] {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
            self.sign_in.sweep();
            self.scim_limits.sweep();
        }
    }

    /// Rate-limit buckets held now (callers seen within about the last minute).
    pub fn buckets(&self) -> usize {
        self.limiter.len()
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Who is calling: the token, its owner as the policy sees them, their workspace.
#[derive(Debug, Clone)]
pub struct Caller {
    /// How they proved who they are: a token or a browser session.
    pub via: Via,
    /// Its owner, with grants and groups, loaded for this request.
    pub user: policy::User,
    /// The token's workspace.
    pub workspace: Workspace,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Decision time.
    pub now: DateTime<Utc>,
}

/// How a caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    /// An API token (`Authorization: Bearer`): its scopes bound what it may do.
    Token(TokenRow),
    /// A browser session (cookie): the person, with everything their access gives.
    Session(SessionRow),
}

impl Caller {
    /// The token the policy weighs: the API token's, none for a session (a person in
    /// the console acts with all their own rights, as the policy's `Principal` says).
    pub fn policy_token(&self) -> Option<policy::Token> {
        match &self.via {
            Via::Token(token) => Some(token.policy()),
            Via::Session(_) => None,
        }
    }

    /// The scopes the caller acts with: a token's own, or every scope a person's token
    /// may carry for a session.
    pub fn scopes(&self) -> &[policy::Scope] {
        match &self.via {
            Via::Token(token) => &token.scopes,
            Via::Session(_) => &policy::Scope::PERSONAL,
        }
    }

    /// Whether this caller may act at all (a live token, an active person), asked of the
    /// policy: `Some` is the 401 to answer.
    pub fn standing(&self) -> Option<Unauthenticated> {
        let token = self.policy_token();
        let principal = policy::Principal {
            user: &self.user,
            token: token.as_ref(),
        };
        policy::standing(principal, self.now).and_then(Unauthenticated::of)
    }

    /// The policy's decision for this caller.
    pub fn decide(&self, action: Action, resource: ResourceRef<'_>) -> Decision {
        let token = self.policy_token();
        policy::authorize(
            policy::Principal {
                user: &self.user,
                token: token.as_ref(),
            },
            action,
            resource,
            self.workspace.settings.policy(),
            self.now,
        )
    }

    /// An audit draft with this caller as the actor.
    pub fn draft(
        &self,
        action: Kind,
        resource_type: &str,
        resource_id: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Draft {
        Draft {
            time: self.now,
            actor: match &self.via {
                Via::Token(token) => Actor::Token {
                    id: token.id.clone(),
                    user: self.user.id.clone(),
                    elevations: self.user.live_elevations(self.now),
                },
                Via::Session(_) => Actor::User {
                    id: self.user.id.clone(),
                    elevations: self.user.live_elevations(self.now),
                },
            },
            action: action.name().into_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
            before,
            after,
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let now = api.clock.now();
        let (ip, user_agent) = client(parts);
        // Without an Authorization header, a session cookie may say who is asking.
        if bearer(&parts.headers).is_none()
            && let Some(digest) = session::presented(&parts.headers, &api.public_url)
        {
            let presented = session::Presented {
                digest: &digest,
                method: &parts.method,
                headers: &parts.headers,
                ip,
                user_agent,
                now,
            };
            return session::caller(api, presented).await;
        }
        // The rate limiter resolved the token already (every route that takes a caller
        // sits behind it); resolve here only where it did not.
        let resolved = match parts.extensions.remove::<Resolved>() {
            Some(resolved) => Some(resolved),
            None => resolve(api, presented_digest(&parts.headers)).await?,
        };
        let Some(Resolved {
            digest,
            identity: Some(identity),
        }) = resolved
        else {
            return Err(ApiError::Unauthorized(Unauthenticated::InvalidToken));
        };
        let identities::Identity {
            token,
            workspace,
            user,
        } = identity;
        let mut conn = api.store.read().await?;
        let (last_used_at, last_used_ip, token_id) = (
            token.last_used_at,
            token.last_used_ip.clone(),
            token.id.clone(),
        );
        let caller = Self {
            via: Via::Token(token),
            user,
            workspace,
            ip,
            user_agent,
            now,
        };
        // A dead token is refused before anything else (the policy says which way).
        if let Some(dead) = caller.standing() {
            return Err(ApiError::Unauthorized(dead));
        }
        // Last use is kept to the minute: a write per request would queue every read
        // behind the database's single writer.
        let stale =
            last_used_at.is_none_or(|at| now - at > TOUCH_EVERY) || last_used_ip != caller.ip;
        if stale {
            store::tokens::touch(
                &mut conn,
                &token_id,
                caller.ip.as_deref().unwrap_or_default(),
                now,
            )
            .await?;
            api.identities.touched(&digest, now, caller.ip.as_deref());
        }
        Ok(caller)
    }
}

/// The client's address and user agent (at most 256 characters), for the audit trail.
pub fn client(parts: &Parts) -> (Option<String>, Option<String>) {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    (ip, user_agent)
}

/// Why a request is not authenticated (401): each with its stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// Missing, malformed, unknown, or its owner is gone or deactivated.
    InvalidToken,
    /// Past its expiry.
    TokenExpired,
    /// Revoked.
    TokenRevoked,
    /// A session cookie for no live session: unknown, expired, signed out or revoked.
    SessionEnded,
    /// A sign-in with an email and password that do not match (which one is not said),
    /// a wrong second factor, or local sign-in where the workspace requires SSO.
    InvalidCredentials,
    /// A right password for an account with an authenticator app, sent without a code.
    SecondFactorRequired,
}

impl Unauthenticated {
    /// The policy's reason as a 401, when it is one (a dead token or user).
    pub fn of(reason: Reason) -> Option<Self> {
        match reason {
            Reason::TokenExpired => Some(Self::TokenExpired),
            Reason::TokenRevoked => Some(Self::TokenRevoked),
            Reason::UserInactive => Some(Self::InvalidToken),
            Reason::Allowed
            | Reason::ScopeMissing
            | Reason::RoleDenies
            | Reason::LevelTooLow
            | Reason::Hidden
            | Reason::GovernedLabel
            | Reason::OwnRequest
            | Reason::NotAuthor
            | Reason::NotApplicable => None,
        }
    }

    /// The error `type` (`invalid_token`, `token_expired`, `token_revoked`).
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::SessionEnded => "session_ended",
            Self::InvalidCredentials => "invalid_credentials",
            Self::SecondFactorRequired => "second_factor_required",
        }
    }

    /// The message people read.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidToken => "missing, malformed or unknown Bearer token",
            Self::TokenExpired => "the token has expired",
            Self::TokenRevoked => "the token has been revoked",
            Self::SessionEnded => {
                "the session has ended (signed out, expired or revoked): sign in again"
            }
            Self::InvalidCredentials => {
                "wrong email, password or code (where the workspace requires single sign-on, \
                 only its break-glass owners sign in with a password)"
            }
            Self::SecondFactorRequired => {
                "this account has an authenticator app: send its current code (or a recovery \
                 code) as `code`"
            }
        }
    }
}

/// Why a request is refused (403): each with its message, written once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// The policy refused the action (any reason but a dead token or a hidden resource).
    #[error("not allowed to {} ({})", action.name(), reason_name(*reason))]
    Policy {
        /// What was asked.
        action: Action,
        /// The policy's reason.
        reason: Reason,
    },
    /// A token would carry a scope the token that makes it lacks.
    #[error("the calling token lacks the scope {} it would grant", .0.name())]
    ScopeBeyondCaller(policy::Scope),
    /// A token that acts as someone else cannot be rotated (its secret would act as them).
    #[error("only the person a token acts as may rotate it")]
    NotTokenHolder,
    /// A plan's change reaches a source the caller may not edit.
    #[error("the plan is used by a source you may not edit: ask an owner or admin")]
    PlanInUse,
    /// A plan's change reaches a protected source the caller may not change at once.
    #[error(
        "the plan is used by a protected source: an owner or admin publishes it (or approves its change request)"
    )]
    PlanProtected,
    /// Deploying a function reaches a destination or source the caller may not edit.
    #[error("the function runs on a destination or source you may not edit: ask an owner or admin")]
    FunctionInUse,
    /// A function change reaches a destination a protected source feeds.
    #[error(
        "the function runs on a destination a protected source feeds: an owner or admin makes this change"
    )]
    FunctionProtected,
    /// A node credential's role does not allow the action.
    #[error("this credential may not {}", .0.name())]
    NodeRole(Action),
    /// A change made with a session cookie without the session's `X-CSRF-Token`, or
    /// from a page of another origin.
    #[error("{0}")]
    Csrf(&'static str),
    /// A sign-in through an identity provider refused, and why.
    #[error("{0}")]
    SignIn(String),
}

/// Everything the API answers with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// Which field (JSON path or query key), when one is to blame.
        field: Option<String>,
    },
    /// 401, and why: no usable token, or the token's state.
    #[error("{}", .0.message())]
    Unauthorized(Unauthenticated),
    /// 403: the caller may not do this, and why.
    #[error("{0}")]
    Forbidden(Forbidden),
    /// 404: no such resource, or one the caller may not see (answered alike).
    #[error("{0}")]
    NotFound(String),
    /// 501: a Segment feature Sluice does not have (what it says instead).
    #[error("{0}")]
    Unsupported(&'static str),
    /// 405: the path exists, the method does not.
    #[error("this path does not take this method")]
    MethodNotAllowed,
    /// 409: a unique name or id is taken, or the change conflicts with the state.
    #[error("{0}")]
    Conflict(String),
    /// 409 about one field: a value the API takes that the current state refuses (a
    /// lifetime past the workspace's `tokenMaxDays`, a new slug for a source whose
    /// slug is its id in stored events).
    #[error("{message}")]
    FieldConflict {
        /// What the state allows.
        message: String,
        /// The field at fault.
        field: &'static str,
    },
    /// 413: the body is larger than [`MAX_BODY_BYTES`].
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// 429: the token's (or, without a known token, the address's) budget is spent.
    #[error("too many requests; see Retry-After")]
    RateLimited,
    /// 500: the store failed (details in the server's log, not in the answer).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// 400 about one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// The 404 of a resource kind and id (the same words whether missing or hidden).
    pub fn missing(kind: &str, id: &str) -> Self {
        Self::NotFound(format!("{kind} {id:?} not found"))
    }

    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid { .. } => (StatusCode::BAD_REQUEST, "validation"),
            Self::Unauthorized(why) => (StatusCode::UNAUTHORIZED, why.code()),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Unsupported(_) => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            Self::Conflict(_) | Self::FieldConflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            other => {
                tracing::error!(error = %other, "control-plane store error");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_type();
        let error = wire::ErrorItem {
            kind: kind.to_owned(),
            message: self.to_string(),
            field: match self {
                Self::Invalid { field, .. } => field,
                Self::FieldConflict { field, .. } => Some(field.to_owned()),
                _ => None,
            },
        };
        let envelope = wire::ErrorEnvelope {
            errors: vec![error],
        };
        let mut response = (status, Json(envelope)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        response
    }
}

/// `{"data": value}` with 200.
pub fn data(value: impl Serialize) -> Response {
    Json(Data { data: value }).into_response()
}

/// `{"data":{"status":"SUCCESS"}}`, the answer to deletes and removals.
pub fn success() -> Response {
    data(Status::SUCCESS)
}

/// A query string that refuses unknown keys, answered in the error envelope.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Self::parse(parts.uri.query().unwrap_or_default())
    }
}

impl<T: DeserializeOwned> Query<T> {
    /// Reads a query string as the extractor does.
    ///
    /// # Errors
    /// `400` naming what does not decode.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(query)
            .map(Self)
            .map_err(|e| ApiError::Invalid {
                message: format!("invalid query string: {e}"),
                field: None,
            })
    }
}

/// Path parameters, answered in the error envelope when they do not decode.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::Invalid {
                message: format!("invalid path: {e}"),
                field: None,
            })
    }
}

/// `pagination[count]` and `pagination[cursor]` of list requests.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (1 to 200, default 10).
    #[serde(rename = "pagination[count]", default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub count: Option<String>,
    /// Opaque cursor from the previous page's `pagination.next` (or `current`).
    #[serde(rename = "pagination[cursor]", default)]
    #[param(pattern = "^(MA|YWZ0ZXI6([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?)?$")]
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct Page {
    /// Size.
    pub count: u32,
    /// Resume after this id (empty: from the start).
    pub after: String,
}

impl PageQuery {
    /// Checks the bounds and decodes the cursor.
    pub fn page(&self) -> Result<Page, ApiError> {
        let count = match &self.count {
            None => PAGE_DEFAULT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=PAGE_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::field(
                        "pagination[count]",
                        format!("must be a whole number from 1 to {PAGE_MAX}"),
                    )
                })?,
        };
        let after = match &self.cursor {
            None => String::new(),
            Some(c) if c.is_empty() => String::new(),
            Some(c) => decode_cursor(c).ok_or_else(|| {
                ApiError::field("pagination[cursor]", "not a cursor this API gave")
            })?,
        };
        Ok(Page { count, after })
    }
}

fn decode_cursor(cursor: &str) -> Option<String> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // Lenient about padding and trailing bits: any base64url text the document allows.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT.decode(cursor).ok()?;
    // An id is text; bytes that are not (a cursor edited by hand) still order a page.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if text == "0" {
        // `MA`, the first page's `pagination.current`, given back: the first page.
        return Some(String::new());
    }
    text.strip_prefix("after:").map(str::to_owned)
}

/// The `pagination` of a page whose items' last id is `last` (when the page is full).
pub fn pagination(page: &Page, returned: usize, last: Option<&str>) -> Pagination {
    use base64::Engine as _;
    let encode =
        |id: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{id}"));
    let current = if page.after.is_empty() {
        "MA".to_owned()
    } else {
        encode(&page.after)
    };
    let next = (returned == page.count as usize)
        .then_some(last)
        .flatten()
        .map(encode);
    Pagination {
        current,
        next,
        total_entries: None,
    }
}

/// Checks a free-text field: present, trimmed length within bounds, no control chars.
pub fn text_field(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ApiError::field(field, format!("at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// What [`slug_field`] takes, as the OpenAPI document states it.
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// Checks an id-like field (slugs): 1–64 of `a-z 0-9 - _`, starting with a letter or digit.
pub fn slug_field(field: &str, value: &str) -> Result<String, ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::field(
            field,
            "1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
        ))
    }
}
