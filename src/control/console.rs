//! The console: server-rendered pages for the governance tasks, served by the control
//! listener at `/`.
//!
//! The console is a client of the API, in process. Every page reads what it shows with
//! `/api/v1` requests made on the viewer's session ([`mod@inner`]), and every form posts to
//! a console route that makes the one API request the change is: the API's handler asks
//! `authorize`, checks the session's CSRF token and the page's origin, validates, audits
//! and answers, exactly as for any other client. A resource the viewer may not see is
//! absent from the lists and answers "not found" by its address, because the API does.
//! The console asks `authorize` itself only to leave out buttons the viewer may not use
//! ([`Viewer::may`]); leaving one out decides nothing (the post is refused all the same).
//!
//! Pages work without JavaScript: links and forms, post/redirect/get, secrets shown once
//! on the page that made them. With JavaScript, htmx (vendored, served from this origin)
//! enhances them: links and forms swap the page's body instead of loading a new page, and
//! a source's last hour refreshes itself. Styles and the script come from this origin
//! only, under a Content-Security-Policy that allows nothing else.

mod account;
mod audit;
mod changes;
mod destinations;
mod elevations;
mod form;
mod groups;
mod identity;
pub mod inner;
pub mod links;
mod nodes;
mod operations;
mod people;
mod plans;
mod reviews;
mod settings;
mod sign_in;
mod sources;
mod team;
mod tokens;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts as _;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::api::{Api, ApiError, Caller, Via};
use super::policy::{Action, ResourceRef};
use inner::Inner;

/// The console's state: the API's shared state (to resolve the viewer) and the API's
/// own router (every read and change goes through it).
#[derive(Clone)]
pub struct Console {
    api: Arc<Api>,
    inner: Router,
}

impl Console {
    /// The console over `api`, whose requests `inner` (the API's router) answers.
    pub fn new(api: Arc<Api>, inner: Router) -> Self {
        Self { api, inner }
    }
}

/// The console's routes (pages, their forms, its stylesheet).
pub fn routes(console: Console) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/htmx.min.js", get(script))
        .merge(sign_in::routes())
        .merge(sources::routes())
        .merge(destinations::routes())
        .merge(tokens::routes())
        .merge(team::routes())
        .merge(people::routes())
        .merge(plans::routes())
        .merge(operations::routes())
        .merge(identity::routes())
        .merge(reviews::routes())
        .merge(elevations::routes())
        .merge(audit::routes())
        .merge(account::routes())
        .merge(groups::routes())
        .merge(settings::routes())
        .merge(changes::routes())
        .merge(nodes::routes())
        .layer(axum::middleware::from_fn(stay_on_the_form))
        .with_state(console)
}

/// A post answered with a page (a secret shown once, a form shown again with why) is
/// no address to come back to: the page's own is kept (`HX-Push-Url: false`), so that a
/// reload or "back" asks for the page, never a post's route. A post answered with a
/// redirect goes where it says.
async fn stay_on_the_form(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let post = request.method() == Method::POST;
    let mut response = next.run(request).await;
    if post && !response.status().is_redirection() {
        response
            .headers_mut()
            .insert("hx-push-url", HeaderValue::from_static("false"));
    }
    response
}

/// The stylesheet.
const STYLESHEET: &str = include_str!("../../assets/console/console.css");

/// htmx, vendored (`assets/console/VENDORED.md`): the pages' progressive enhancement.
const SCRIPT: &str = include_str!("../../assets/console/htmx.min.js");

async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// An asset compiled into the binary, cached by browsers for an hour.
fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `/`: the sources, for a signed-in viewer.
async fn home(
    axum::extract::State(console): axum::extract::State<Console>,
    parts: Parts,
) -> Response {
    match Viewer::of(&console, &parts).await {
        Ok(_) => Redirect::to("/sources").into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The signed-in person looking at a page: who they are (for `authorize`), their
/// session's CSRF token (for the forms), and the request's credentials (for the API).
pub struct Viewer {
    caller: Caller,
    email: String,
    csrf: String,
}

impl Viewer {
    /// The viewer behind the request's session cookie. No session (or a token instead of
    /// one) sends the browser to sign in, and back here after.
    pub async fn of(console: &Console, parts: &Parts) -> Result<Self, Refusal> {
        // The session as the API describes it: a budgeted request (the client address's
        // rate limit pays for the lookup), answering 401 for no live session.
        let session: SessionView = Inner::new(&console.inner, parts)
            .get("/auth/session")
            .await?;
        // Who is asking, for `authorize` to leave out the buttons they may not use. Read
        // as a GET: this caller decides nothing, and a change is guarded by the API when
        // the form's request reaches it.
        let mut head = viewing_head(parts);
        let caller = match Caller::from_request_parts(&mut head, &console.api).await {
            Ok(caller) => caller,
            Err(ApiError::Unauthorized(_)) => return Err(Refusal::SignIn(return_path(parts))),
            Err(other) => return Err(Refusal::from_api(&other)),
        };
        if !matches!(caller.via, Via::Session(_)) {
            return Err(Refusal::SignIn(return_path(parts)));
        }
        Ok(Self {
            caller,
            email: session.email,
            csrf: session.csrf_token,
        })
    }

    /// Whether `authorize` lets the viewer do `action` on `resource` (to show a button
    /// or a form; the API decides again when it is used).
    pub fn may(&self, action: Action, resource: ResourceRef<'_>) -> bool {
        self.caller.decide(action, resource).allowed
    }

    /// The check the API makes of a change, made here for the console's own two cases
    /// that reach no API change first: a form answered from the page (what was typed
    /// shown again) and a read with an effect (credentials revealed, which is
    /// audited). The form must come from this origin and carry this session's token.
    pub fn guard(
        &self,
        parts: &Parts,
        console: &Console,
        posted_csrf: &str,
    ) -> Result<(), Refusal> {
        let same = super::identity::session::same_origin(&parts.headers, &console.api.public_url);
        let token = bool::from(subtle::ConstantTimeEq::ct_eq(
            posted_csrf.as_bytes(),
            self.csrf.as_bytes(),
        ));
        if same && token {
            return Ok(());
        }
        Err(Refusal::Api {
            status: StatusCode::FORBIDDEN,
            message: "This form is not one of this session's pages: reload the page and try again."
                .into(),
        })
    }

    /// The viewer's user id.
    pub fn id(&self) -> &str {
        &self.caller.user.id
    }

    /// Whether the viewer may do a workspace-wide `action`.
    pub fn may_here(&self, action: Action) -> bool {
        self.may(action, ResourceRef::Workspace)
    }

    /// The frame of a page titled `title` in `section`, saying what the last change did
    /// when the request names it.
    pub fn frame(&self, title: impl Into<String>, section: Section, parts: &Parts) -> Frame {
        Frame {
            title: title.into(),
            section,
            who: Some(Who {
                email: self.email.clone(),
                csrf: self.csrf.clone(),
                team: self.may_here(Action::ViewMembers),
                tokens: self.may_here(Action::ManageTokens),
                audit: self.may_here(Action::ReadAudit),
                plans: self.may_here(Action::ViewTrackingPlans),
                team_admin: self.may_here(Action::ManageMembers),
            }),
            flash: Outcome::of(parts).map(Outcome::message),
        }
    }
}

/// The session as `GET /auth/session` answers it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    email: String,
    csrf_token: String,
}

/// A copy of the request's head as a `GET`, for resolving who views a page (never for
/// a change): its cookies, origin and connection, no `Authorization` (the console is a
/// session's, never a token's).
fn viewing_head(parts: &Parts) -> Parts {
    let (mut copy, ()) = axum::http::Request::new(()).into_parts();
    copy.method = Method::GET;
    copy.uri = parts.uri.clone();
    copy.headers = parts.headers.clone();
    copy.headers.remove(header::AUTHORIZATION);
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        copy.extensions.insert(*info);
    }
    copy
}

/// The path (and query) of the page asked for, to come back to after sign-in: a page
/// (a form's post answers no `GET`: after sign-in, the console's home instead).
fn return_path(parts: &Parts) -> String {
    if parts.method != Method::GET {
        return "/".to_owned();
    }
    parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

/// The first value of `name` in the request's query, if any.
pub fn query_value(parts: &Parts, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query()?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A time the API gave, shown to the minute in UTC.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(transparent)]
pub struct When(chrono::DateTime<chrono::Utc>);

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M UTC"))
    }
}

/// Which part of the console a page belongs to (the navigation marks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Sources and their keys.
    Sources,
    /// Destinations.
    Destinations,
    /// Tracking plans and change requests.
    Plans,
    /// Usage, quotas and gateways.
    Operations,
    /// Single sign-on, SCIM and the sign-in policy.
    Identity,
    /// Access reviews and evidence.
    Reviews,
    /// Temporary access.
    Elevations,
    /// API tokens.
    Tokens,
    /// Members and invites.
    Team,
    /// The audit trail.
    Audit,
    /// The viewer's own account and sessions.
    Account,
    /// The workspace's settings and labels.
    Settings,
    /// Changes to protected resources, kept for review.
    Changes,
    /// Sign-in and other pages outside a session.
    Outside,
}

/// What every page shows around its content.
pub struct Frame {
    /// The page's title (and heading).
    pub title: String,
    /// Its section.
    pub section: Section,
    /// The signed-in viewer, if any.
    pub who: Option<Who>,
    /// What the last change did ("Token revoked.").
    pub flash: Option<&'static str>,
}

impl Frame {
    /// A frame for a page outside a session.
    pub fn outside(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            section: Section::Outside,
            who: None,
            flash: None,
        }
    }

    /// The navigation: the sections the viewer may use, the page's marked.
    pub fn nav(&self) -> Vec<Nav> {
        let Some(who) = &self.who else {
            return Vec::new();
        };
        [
            (Section::Sources, "/sources", "Sources", true),
            (Section::Destinations, "/destinations", "Destinations", true),
            (Section::Plans, "/plans", "Tracking plans", who.plans),
            (Section::Team, "/team", "Team", who.team),
            (Section::Tokens, "/tokens", "API tokens", who.tokens),
            (Section::Audit, "/audit", "Audit trail", who.audit),
            (Section::Operations, "/operations", "Usage", true),
            (Section::Identity, "/identity", "Sign-in", who.team_admin),
            (Section::Reviews, "/reviews", "Reviews", who.team_admin),
            (Section::Changes, "/changes", "Changes for review", true),
            (Section::Elevations, "/elevations", "Temporary access", true),
            (Section::Settings, "/settings", "Settings", true),
            (Section::Account, "/account", "Your account", true),
        ]
        .into_iter()
        .filter(|(_, _, _, shown)| *shown)
        .map(|(section, href, label, _)| Nav {
            href,
            label,
            current: section == self.section,
        })
        .collect()
    }
}

/// A link of the navigation.
pub struct Nav {
    /// Where it goes.
    pub href: &'static str,
    /// What it says.
    pub label: &'static str,
    /// Whether it is the page's own section.
    pub current: bool,
}

/// The signed-in viewer, as the frame shows them.
pub struct Who {
    /// Their email.
    pub email: String,
    /// Their session's CSRF token (every form carries it).
    pub csrf: String,
    /// Whether the navigation shows the team.
    pub team: bool,
    /// Whether it shows tokens.
    pub tokens: bool,
    /// Whether it shows the audit trail.
    pub audit: bool,
    /// Whether it shows tracking plans.
    pub plans: bool,
    /// Whether it shows sign-in and provisioning (who manages members).
    pub team_admin: bool,
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum Refusal {
    /// Not signed in: to the sign-in page, then back to this path.
    SignIn(String),
    /// The API refused: its status and message.
    Api {
        /// The API's status.
        status: StatusCode,
        /// The API's message.
        message: String,
    },
    /// Something broke on our side (logged where it happened).
    Broken,
}

impl Refusal {
    /// The refusal an API error is.
    pub fn from_api(error: &ApiError) -> Self {
        let response = error_response(error);
        Self::Api {
            status: response,
            message: error.to_string(),
        }
    }
}

fn error_response(error: &ApiError) -> StatusCode {
    match error {
        ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The page that says why.
#[derive(Template)]
#[template(path = "console/refusal.html")]
struct RefusalPage {
    frame: Frame,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn(back) => {
                let query =
                    serde_urlencoded::to_string([("returnTo", back.as_str())]).unwrap_or_default();
                Redirect::to(&format!("/sign-in?{query}")).into_response()
            }
            Self::Api { status, message } => {
                let title = match status {
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                    s if s.is_client_error() => "Not done",
                    _ => "Something went wrong",
                };
                render(
                    status,
                    &RefusalPage {
                        frame: Frame::outside(title),
                        message,
                    },
                )
            }
            Self::Broken => render(
                StatusCode::INTERNAL_SERVER_ERROR,
                &RefusalPage {
                    frame: Frame::outside("Something went wrong"),
                    message: "The control plane could not answer. Try again; the logs say more."
                        .into(),
                },
            ),
        }
    }
}

/// The Content-Security-Policy of every page: this origin's stylesheet and script,
/// requests and forms to this origin, nothing else (no inline script or style, no eval,
/// no frame, no plug-in, no base).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self'; connect-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// A rendered page, with the headers every page has.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    let html = match page.render() {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(%error, "console: a page did not render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response();
        }
    };
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A page's status: `422` when it shows its form again with what was wrong (`error`),
/// `200` otherwise.
pub fn form_status(error: Option<&str>) -> StatusCode {
    if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    }
}

/// After a change: back to `path` (post/redirect/get), saying what was done there. The
/// address carries the outcome's code, never its text: a link made elsewhere can only
/// show one of these sentences.
pub fn done(path: &str, outcome: Outcome) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}done={}", outcome.code())).into_response()
}

/// What a change did, shown on the page the browser is sent back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A write key revoked.
    KeyRevoked,
    /// A source enabled or disabled.
    SourceChanged,
    /// A source created.
    SourceCreated,
    /// A token revoked.
    TokenRevoked,
    /// A member's role changed.
    RoleChanged,
    /// An invite sent.
    Invited,
    /// Every other session ended.
    SessionsEnded,
    /// One session ended.
    SessionEnded,
    /// The viewer's password set.
    PasswordSet,
    /// A grant given.
    Granted,
    /// A grant taken away.
    GrantRemoved,
    /// Someone offboarded.
    Offboarded,
    /// A destination enabled or disabled.
    DestinationChanged,
    /// A tracking-plan change request opened.
    RequestOpened,
    /// A change request approved and its rules published.
    Published,
    /// A change request rejected.
    Rejected,
    /// A change request withdrawn.
    Withdrawn,
    /// A monthly event quota set.
    QuotaSet,
    /// A tracking plan created.
    PlanCreated,
    /// A sign-in connection added.
    ConnectionAdded,
    /// A sign-in connection turned on or off.
    ConnectionChanged,
    /// The sign-in policy changed.
    PolicyChanged,
    /// A group mapping set or removed.
    MappingChanged,
    /// An access review opened.
    ReviewOpened,
    /// A line of an access review decided.
    Decided,
    /// An access review closed.
    ReviewClosed,
    /// Temporary access asked for.
    ElevationAsked,
    /// Temporary access approved.
    ElevationApproved,
    /// Temporary access denied.
    ElevationDenied,
    /// Temporary access ended.
    ElevationEnded,
    /// Signed out.
    SignedOut,
    /// A destination created.
    DestinationCreated,
    /// A destination deleted.
    DestinationDeleted,
    /// A source deleted.
    SourceDeleted,
    /// The workspace's settings changed.
    SettingsChanged,
    /// A workspace label added or deleted.
    LabelsChanged,
    /// A group made or changed.
    GroupChanged,
    /// A group deleted.
    GroupDeleted,
    /// A gateway credential revoked.
    NodeRevoked,
    /// A change to a protected resource, kept for review as a change request.
    Proposed,
}

impl Outcome {
    const ALL: [Self; 40] = [
        Self::KeyRevoked,
        Self::SourceChanged,
        Self::SourceCreated,
        Self::TokenRevoked,
        Self::RoleChanged,
        Self::Invited,
        Self::SessionsEnded,
        Self::SessionEnded,
        Self::PasswordSet,
        Self::Granted,
        Self::GrantRemoved,
        Self::Offboarded,
        Self::DestinationChanged,
        Self::RequestOpened,
        Self::Published,
        Self::Rejected,
        Self::Withdrawn,
        Self::QuotaSet,
        Self::PlanCreated,
        Self::ConnectionAdded,
        Self::ConnectionChanged,
        Self::PolicyChanged,
        Self::MappingChanged,
        Self::ReviewOpened,
        Self::Decided,
        Self::ReviewClosed,
        Self::ElevationAsked,
        Self::ElevationApproved,
        Self::ElevationDenied,
        Self::ElevationEnded,
        Self::SignedOut,
        Self::DestinationCreated,
        Self::DestinationDeleted,
        Self::SourceDeleted,
        Self::SettingsChanged,
        Self::LabelsChanged,
        Self::GroupChanged,
        Self::GroupDeleted,
        Self::NodeRevoked,
        Self::Proposed,
    ];

    /// `outcome`, or [`Outcome::Proposed`] when the API kept the change for review
    /// (`202`).
    pub fn applied(status: StatusCode, outcome: Self) -> Self {
        if status == StatusCode::ACCEPTED {
            Self::Proposed
        } else {
            outcome
        }
    }

    /// Its code in the address.
    pub fn code(self) -> &'static str {
        match self {
            Self::KeyRevoked => "key-revoked",
            Self::SourceChanged => "source-changed",
            Self::SourceCreated => "source-created",
            Self::TokenRevoked => "token-revoked",
            Self::RoleChanged => "role-changed",
            Self::Invited => "invited",
            Self::SessionsEnded => "sessions-ended",
            Self::SessionEnded => "session-ended",
            Self::PasswordSet => "password-set",
            Self::Granted => "granted",
            Self::GrantRemoved => "grant-removed",
            Self::Offboarded => "offboarded",
            Self::DestinationChanged => "destination-changed",
            Self::RequestOpened => "request-opened",
            Self::Published => "published",
            Self::Rejected => "rejected",
            Self::Withdrawn => "withdrawn",
            Self::QuotaSet => "quota-set",
            Self::PlanCreated => "plan-created",
            Self::ConnectionAdded => "connection-added",
            Self::ConnectionChanged => "connection-changed",
            Self::PolicyChanged => "policy-changed",
            Self::MappingChanged => "mapping-changed",
            Self::ReviewOpened => "review-opened",
            Self::Decided => "decided",
            Self::ReviewClosed => "review-closed",
            Self::ElevationAsked => "elevation-asked",
            Self::ElevationApproved => "elevation-approved",
            Self::ElevationDenied => "elevation-denied",
            Self::ElevationEnded => "elevation-ended",
            Self::SignedOut => "signed-out",
            Self::DestinationCreated => "destination-created",
            Self::DestinationDeleted => "destination-deleted",
            Self::SourceDeleted => "source-deleted",
            Self::SettingsChanged => "settings-changed",
            Self::LabelsChanged => "labels-changed",
            Self::GroupChanged => "group-changed",
            Self::GroupDeleted => "group-deleted",
            Self::NodeRevoked => "node-revoked",
            Self::Proposed => "proposed",
        }
    }

    /// The sentence shown.
    pub fn message(self) -> &'static str {
        match self {
            Self::KeyRevoked => "Write key revoked: events sent with it are refused from now on.",
            Self::SourceChanged => "Source updated.",
            Self::SourceCreated => "Source created.",
            Self::TokenRevoked => "Token revoked.",
            Self::RoleChanged => "Role changed.",
            Self::Invited => "Invite created.",
            Self::SessionsEnded => "Every other session of yours has ended.",
            Self::SessionEnded => "That session has ended.",
            Self::PasswordSet => "Password set. Your other sessions have ended.",
            Self::Granted => "Access granted.",
            Self::DestinationChanged => "Destination updated.",
            Self::RequestOpened => {
                "Change request opened: its rules are published when a reviewer approves it."
            }
            Self::Published => "Approved: the rules are published as the plan's new version.",
            Self::Rejected => "Change request rejected.",
            Self::Withdrawn => "Change request withdrawn.",
            Self::QuotaSet => "Quota set: gateways apply it within a second.",
            Self::PlanCreated => "Tracking plan created: propose its rules below.",
            Self::ConnectionAdded => "Connection added, turned off: test it, then turn it on.",
            Self::ConnectionChanged => "Connection updated.",
            Self::PolicyChanged => "Sign-in policy changed.",
            Self::MappingChanged => "Group mapping changed.",
            Self::ReviewOpened => "Access review opened: each line waits for a decision.",
            Self::Decided => "Decision recorded.",
            Self::ReviewClosed => "Access review closed: its evidence record is ready.",
            Self::ElevationAsked => "Asked: it starts when someone who may approves it.",
            Self::ElevationApproved => "Approved: the access is live until it ends.",
            Self::ElevationDenied => "Denied.",
            Self::ElevationEnded => "Ended: the access is gone.",
            Self::GrantRemoved => "Grant removed.",
            Self::Offboarded => {
                "Offboarded: their access is revoked and what they owned has a new owner."
            }
            Self::SignedOut => "You are signed out.",
            Self::DestinationCreated => {
                "Destination created: it gets the events of its sources from now on."
            }
            Self::DestinationDeleted => "Destination deleted: nothing more is delivered to it.",
            Self::SourceDeleted => "Source deleted: its write keys no longer let events in.",
            Self::SettingsChanged => "Settings saved.",
            Self::LabelsChanged => "Labels changed.",
            Self::GroupChanged => "Group updated.",
            Self::GroupDeleted => "Group deleted: its members keep their own access.",
            Self::NodeRevoked => "Credential revoked: the node is refused from its next request.",
            Self::Proposed => {
                "The resource is protected: the change was proposed for review, not made."
            }
        }
    }

    /// The outcome a request's `done` names, if it names one.
    pub fn of(parts: &Parts) -> Option<Self> {
        let code = query_value(parts, "done")?;
        Self::ALL.into_iter().find(|o| o.code() == code)
    }
}

/// A secret just made (a write key, a token, an invite link): what it is, for the page
/// that shows it once.
#[derive(Debug, Clone, Copy)]
pub struct Secret {
    /// The page's title.
    pub title: &'static str,
    /// What to do with it.
    pub note: &'static str,
    /// The `id` of the element that holds it.
    pub element: &'static str,
}

#[derive(Template)]
#[template(path = "console/once.html")]
struct OncePage {
    frame: Frame,
    secret: Secret,
    value: String,
    back: String,
}

/// The page that shows a new secret: `rendered` (the full page), or when that page could
/// not be made (a read after the change failed), a bare one with the secret all the same:
/// a credential that exists is never lost to a failed read.
pub fn shown_once(
    rendered: Result<Response, Refusal>,
    secret: Secret,
    value: Option<String>,
    back: &str,
) -> Result<Response, Refusal> {
    match (rendered, value) {
        (Ok(page), _) => Ok(page),
        (Err(refusal), Some(value)) => {
            tracing::warn!(
                ?refusal,
                "console: the page after a new secret did not render; showing the secret alone"
            );
            Ok(render(
                StatusCode::OK,
                &OncePage {
                    frame: Frame::outside(secret.title),
                    secret,
                    value,
                    back: back.to_owned(),
                },
            ))
        }
        (Err(refusal), None) => Err(refusal),
    }
}

/// The one API change a form makes.
pub struct Change {
    /// Its method.
    pub method: Method,
    /// Its path (and query).
    pub path: String,
    /// Its JSON body, if any.
    pub body: Option<serde_json::Value>,
}

impl Change {
    /// `method path` with `body`.
    pub fn new(method: Method, path: impl Into<String>, body: Option<serde_json::Value>) -> Self {
        Self {
            method,
            path: path.into(),
            body,
        }
    }
}

/// Makes `change` with the form's CSRF token; the API's answer.
pub async fn apply(
    console: &Console,
    parts: &Parts,
    form: &form::Form,
    change: Change,
) -> Result<inner::Answer, Refusal> {
    inner(console, parts)
        .with_csrf(form.csrf())
        .change(change.method, &change.path, change.body)
        .await
}

/// Makes `change`, then back to `back` saying `outcome` (or that the change was kept
/// for review, on a `202`). A refusal about the form's content (a `4xx` other than
/// 403/404) is shown with the form again by `again`, when the page has one; any other
/// refusal is the answer.
pub async fn submit<F, Fut>(
    console: &Console,
    parts: &Parts,
    form: &form::Form,
    change: Change,
    (back, outcome): (&str, Outcome),
    again: Option<F>,
) -> Result<Response, Refusal>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Response, Refusal>>,
{
    match apply(console, parts, form, change).await {
        Ok(answer) => Ok(done(back, Outcome::applied(answer.status, outcome))),
        Err(refusal) => match (team::about_the_form(&refusal), again) {
            (Some(why), Some(again)) => again(why).await,
            _ => Err(refusal),
        },
    }
}

/// A form whose one API change `change` makes of it: the form read, the change made,
/// then back to `back` saying `outcome` ([`submit`]); any refusal is the page answered.
pub async fn one_change(
    console: &Console,
    parts: &Parts,
    body: &[u8],
    (back, outcome): (&str, Outcome),
    change: impl FnOnce(&form::Form) -> Result<Change, Refusal>,
) -> Response {
    let made = async {
        let form = form::Form::read(body)?;
        let change = change(&form)?;
        submit(console, parts, &form, change, (back, outcome), NO_FORM).await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// A page that shows a form again with why (for [`submit`]).
pub type Again = fn(String) -> std::future::Ready<Result<Response, Refusal>>;

/// No page to show a form again on (for [`submit`]).
pub const NO_FORM: Option<Again> = None;

/// The API client of a request: the viewer's session, for reads and changes.
pub fn inner<'a>(console: &'a Console, parts: &'a Parts) -> Inner<'a> {
    Inner::new(&console.inner, parts)
}
