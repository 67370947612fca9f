//! The shapes of the API's answers, for the OpenAPI document. Handlers build their JSON
//! with these field names; schemathesis (CI) checks every answer against the document,
//! so a drift between the two fails the build.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// `{"data": …}`: every successful answer.
#[derive(Serialize, ToSchema)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// `{"errors":[…]}`: every refusal.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// One error (Sluice reports the first problem found).
    pub errors: Vec<ErrorItem>,
}

/// One error.
#[derive(Serialize, ToSchema)]
pub struct ErrorItem {
    /// `validation`, `invalid_token`, `token_expired`, `token_revoked`, `forbidden`,
    /// `not_found`, `conflict`, `too_large`, `rate_limited`, `internal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What is wrong, for people.
    pub message: String,
    /// The field (JSON path or query key) at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `pagination` of a list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// This page's cursor.
    pub current: String,
    /// The next page's cursor (absent on the last page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Number of entries, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_entries: Option<u64>,
}

/// `{"status":"SUCCESS"}`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `SUCCESS`.
    pub status: String,
}

/// A label.
#[derive(Serialize, ToSchema)]
pub struct Label {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// A source.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Id (= slug; the data plane's source id).
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Workspace.
    pub workspace_id: String,
    /// Disabled sources' keys get 401.
    pub enabled: bool,
    /// Key prefixes; a new key's plaintext only in the answer that creates it.
    pub write_keys: Vec<String>,
    /// Source type (Segment catalog shape).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Always `{}`.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Labels.
    pub labels: Vec<Label>,
    /// Tracking plan.
    pub tracking_plan_id: Option<String>,
    /// `off`, `warn` or `block`.
    pub enforcement: String,
    /// `{requestsPerSecond, burst}` or null.
    pub rate_limit: Option<serde_json::Map<String, serde_json::Value>>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Updated (RFC 3339).
    pub updated_at: String,
}

/// `{"source": …}`.
#[derive(Serialize, ToSchema)]
pub struct SourceOne {
    /// The source.
    pub source: Source,
}

/// A list of sources.
#[derive(Serialize, ToSchema)]
pub struct SourceList {
    /// The page.
    pub sources: Vec<Source>,
    /// Paging.
    pub pagination: Pagination,
}

/// A new write key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewWriteKey {
    /// Key id (`wk_…`).
    pub id: String,
    /// The key: shown here only.
    pub key: String,
    /// Its end, if any.
    pub expires_at: Option<String>,
}

/// The answer to a new write key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteKeyCreated {
    /// The source, `writeKeys` holding the new key's plaintext.
    pub source: Source,
    /// The new key.
    pub write_key: NewWriteKey,
}

/// A stored write key (never the key).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteKey {
    /// Id.
    pub id: String,
    /// Source.
    pub source_id: String,
    /// Prefix.
    pub display: String,
    /// Creator.
    pub created_by: String,
    /// Created.
    pub created_at: String,
    /// End of a rotation overlap.
    pub expires_at: Option<String>,
    /// Revoked at.
    pub revoked_at: Option<String>,
}

/// `{"writeKeys": […]}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteKeyList {
    /// Keys.
    pub write_keys: Vec<WriteKey>,
}

/// `{"labels": […], "source": …}`.
#[derive(Serialize, ToSchema)]
pub struct LabelsSet {
    /// The source's labels.
    pub labels: Vec<Label>,
    /// The source.
    pub source: Source,
}

/// A destination.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Enabled.
    pub enabled: bool,
    /// Workspace.
    pub workspace_id: String,
    /// First connected source.
    pub source_id: Option<String>,
    /// Connected sources.
    pub sources: Vec<String>,
    /// Type (`webhook`, `file`, `nats`) in Segment's catalog shape.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Settings with credentials redacted.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Event filter.
    pub filter: serde_json::Map<String, serde_json::Value>,
    /// Retry policy.
    pub retry: serde_json::Map<String, serde_json::Value>,
    /// Batches in flight at most.
    pub max_in_flight: u32,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
}

/// `{"destination": …}`.
#[derive(Serialize, ToSchema)]
pub struct DestinationOne {
    /// The destination.
    pub destination: Destination,
}

/// A list of destinations.
#[derive(Serialize, ToSchema)]
pub struct DestinationList {
    /// The page.
    pub destinations: Vec<Destination>,
    /// Paging (absent on a source's connected destinations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

/// A tracking plan.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPlan {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Slug (= id).
    pub slug: String,
    /// Description.
    pub description: String,
    /// Plan type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Newest published version (0: none).
    pub version: u32,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
}

/// `{"trackingPlan": …}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPlanOne {
    /// The plan.
    pub tracking_plan: TrackingPlan,
}

/// A list of plans.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackingPlanList {
    /// The page.
    pub tracking_plans: Vec<TrackingPlan>,
    /// Paging.
    pub pagination: Pagination,
}

/// A plan's rules.
#[derive(Serialize, ToSchema)]
pub struct Rules {
    /// `{type, key?, version, jsonSchema}` each.
    pub rules: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Newest published version.
    pub version: u32,
    /// Whether this change was published (PUT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    /// Paging (GET only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

/// The workspace.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Always `self-hosted`.
    pub region: String,
    /// Created.
    pub created_at: String,
}

/// `{"workspace": …}`.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceOne {
    /// The workspace.
    pub workspace: Workspace,
}

/// Workspace settings.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Members publish tracking plans directly.
    pub members_can_publish: bool,
    /// Longest token lifetime, days.
    pub token_max_days: u32,
}

/// `{"settings": …}`.
#[derive(Serialize, ToSchema)]
pub struct SettingsOne {
    /// Settings.
    pub settings: Settings,
    /// The workspace name (PATCH only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A member.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Full name.
    pub name: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// `owner`, `admin`, `member`, `read_only`.
    pub role: String,
    /// Deactivated users can do nothing.
    pub active: bool,
    /// How they came.
    pub origin: String,
    /// Created.
    pub created_at: String,
    /// Last login.
    pub last_login: Option<String>,
    /// Segment-shaped permissions (the role).
    pub permissions: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// `{"user": …}`.
#[derive(Serialize, ToSchema)]
pub struct UserOne {
    /// The user.
    pub user: User,
}

/// Members.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// The page.
    pub users: Vec<User>,
    /// Paging (absent on a group's members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

/// Invites made.
#[derive(Serialize, ToSchema)]
pub struct InvitesMade {
    /// Their emails.
    pub emails: Vec<String>,
    /// Each with its one-time link.
    pub invites: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Pending invites.
#[derive(Serialize, ToSchema)]
pub struct InviteList {
    /// Emails.
    pub invites: Vec<String>,
    /// Emails with roles.
    pub roles: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Paging.
    pub pagination: Pagination,
}

/// Roles.
#[derive(Serialize, ToSchema)]
pub struct RoleList {
    /// `{id, name, description}` each.
    pub roles: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Paging.
    pub pagination: Pagination,
}

/// A group.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Members.
    pub member_count: i64,
    /// Role members get at least.
    pub role: Option<String>,
    /// `local` or `scim`.
    pub origin: String,
    /// Segment-shaped permissions.
    pub permissions: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// `{"userGroup": …}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupOne {
    /// The group.
    pub user_group: Group,
}

/// Groups.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    /// The page.
    pub user_groups: Vec<Group>,
    /// Paging.
    pub pagination: Pagination,
}

/// A grant.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Id.
    pub id: String,
    /// `{"type":"user"|"group","id":…}`.
    pub principal: serde_json::Map<String, serde_json::Value>,
    /// `{"kind":"source"|"destination"|"source_label", …}`.
    pub resource: serde_json::Map<String, serde_json::Value>,
    /// `full`, `read_write`, `read_only`, `no_access`.
    pub level: String,
    /// Why.
    pub justification: String,
    /// Who approved.
    pub approved_by: String,
    /// End (just-in-time).
    pub expires_at: Option<String>,
    /// Created.
    pub created_at: String,
}

/// `{"grant": …}`.
#[derive(Serialize, ToSchema)]
pub struct GrantOne {
    /// The grant.
    pub grant: Grant,
}

/// Grants.
#[derive(Serialize, ToSchema)]
pub struct GrantList {
    /// All of them.
    pub grants: Vec<Grant>,
}

/// Workspace labels.
#[derive(Serialize, ToSchema)]
pub struct LabelList {
    /// `{key, value, description}` each.
    pub labels: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// `{"label": …}`.
#[derive(Serialize, ToSchema)]
pub struct LabelOne {
    /// `{key, value, description}`.
    pub label: serde_json::Map<String, serde_json::Value>,
}

/// A decision and the rules that made it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Whose access.
    pub user_id: String,
    /// The action.
    pub action: String,
    /// The answer.
    pub allowed: bool,
    /// Why (`allowed`, `hidden`, `role_denies`, …).
    pub reason: String,
    /// Every rule that counted.
    pub rules: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// A token (never the secret, except in `secret` when made).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Prefix.
    pub display: String,
    /// Created.
    pub created_at: String,
    /// Expiry.
    pub expires_at: String,
    /// Revoked at.
    pub revoked_at: Option<String>,
    /// Last use.
    pub last_used_at: Option<String>,
    /// Last address.
    pub last_used_ip: Option<String>,
}

/// `{"token": …}`.
#[derive(Serialize, ToSchema)]
pub struct TokenOne {
    /// The token.
    pub token: Token,
}

/// A token made: shown once.
#[derive(Serialize, ToSchema)]
pub struct TokenMade {
    /// The token.
    pub token: Token,
    /// The secret: shown here only.
    pub secret: String,
}

/// Tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    /// The page.
    pub tokens: Vec<Token>,
    /// Paging.
    pub pagination: Pagination,
}

/// An audit event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Sequence number.
    pub id: String,
    /// When.
    pub timestamp: String,
    /// Action, e.g. `source.create`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who (user id, `system`, `scim`, `sso`).
    pub actor: String,
    /// `user`, `token`, `system`, `scim`, `sso`.
    pub actor_type: String,
    /// The actor in full.
    pub actor_detail: serde_json::Map<String, serde_json::Value>,
    /// Resource id.
    pub resource_id: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource name.
    pub resource_name: String,
    /// Before (secrets redacted).
    pub before: Option<serde_json::Value>,
    /// After (secrets redacted).
    pub after: Option<serde_json::Value>,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// Audit events.
#[derive(Serialize, ToSchema)]
pub struct AuditEventList {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"catalog":{"revision":…}}`.
#[derive(Serialize, ToSchema)]
pub struct CatalogRevision {
    /// `{revision}`.
    pub catalog: serde_json::Map<String, serde_json::Value>,
}

/// A gateway's report.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Name.
    pub id: String,
    /// Revision applied.
    pub revision: u64,
    /// Address.
    pub address: String,
    /// Last seen.
    pub seen_at: String,
}

/// Gateways.
#[derive(Serialize, ToSchema)]
pub struct GatewayList {
    /// Every gateway that reported.
    pub gateways: Vec<Gateway>,
    /// The control plane's revision.
    pub revision: u64,
}

/// The catalog for a gateway.
#[derive(Serialize, ToSchema)]
pub struct CatalogFeed {
    /// Its revision.
    pub revision: u64,
    /// The catalog document (write keys as digests).
    pub catalog: serde_json::Map<String, serde_json::Value>,
}

/// `{"sourcesCatalog": […], "pagination"}`: source types.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourcesCatalog {
    /// Segment's `SourceMetadataV1` of each type.
    #[schema(value_type = Vec<Object>)]
    pub sources_catalog: Vec<serde_json::Value>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"sourceMetadata": …}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceMetadataOne {
    /// Segment's `SourceMetadataV1`.
    #[schema(value_type = Object)]
    pub source_metadata: serde_json::Value,
}

/// `{"destinationsCatalog": […], "pagination"}`: destination types.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationsCatalog {
    /// Segment's `DestinationMetadataV1` of each type.
    #[schema(value_type = Vec<Object>)]
    pub destinations_catalog: Vec<serde_json::Value>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"destinationMetadata": …}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationMetadataOne {
    /// Segment's `DestinationMetadataV1`.
    #[schema(value_type = Object)]
    pub destination_metadata: serde_json::Value,
}

/// `{"emails": […], "pagination"}`.
#[derive(Serialize, ToSchema)]
pub struct EmailPage {
    /// Emails.
    pub emails: Vec<String>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"groups": […], "pagination"}`: a member's groups.
#[derive(Serialize, ToSchema)]
pub struct UserGroupPage {
    /// The groups.
    pub groups: Vec<Group>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"warehouses": [], "pagination"}`: Sluice has no warehouses.
#[derive(Serialize, ToSchema)]
pub struct WarehousePage {
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub warehouses: Vec<serde_json::Value>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"permissions": […]}`: Segment's permission shape.
#[derive(Serialize, ToSchema)]
pub struct PermissionList {
    /// `{roleId, roleName, resources: [{id, type, labels?}]}` each.
    #[schema(value_type = Vec<Object>)]
    pub permissions: Vec<serde_json::Value>,
}

/// `{"destinationId", "settings"}`: a destination's credentials, revealed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The destination.
    pub destination_id: String,
    /// Its settings, unredacted.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}
