//! The access policy: one pure function, [`authorize`], and the types it reads.
//!
//! A decision is made in three layers (the model of `shared/CONTROL-PLANE.md`):
//! 1. **Role baseline**: the workspace role (`owner`, `admin`, `member`, `read_only`)
//!    allows or refuses each workspace-wide action ([`Action::role_allows`], the
//!    reference's permission matrix, every row).
//! 2. **Resource level** on one source or destination: the principal's own grant on
//!    that resource, else its own label grants (highest), else the highest grant of
//!    its groups (direct or label), else the role's default level (owner/admin `full`,
//!    member `read_write`, read_only `read_only`). Owners and admins are never
//!    restricted by grants; expired grants count as absent. `no_access` hides.
//! 3. **Tokens**: a request made with a token is allowed only if one of the token's
//!    scopes covers the action *and* the token's owner is allowed now.
//!
//! Every [`Decision`] lists the rules that made it, for `GET /api/v1/access/explain`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A workspace role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// View only.
    ReadOnly,
    /// Create and edit sources and destinations, edit tracking plans.
    Member,
    /// Everything but usage & limits (billing) and ownership transfer.
    Admin,
    /// Everything.
    Owner,
}

impl Role {
    /// The level this role has on a source or destination without any grant.
    pub fn default_level(self) -> Level {
        match self {
            Self::Owner | Self::Admin => Level::Full,
            Self::Member => Level::ReadWrite,
            Self::ReadOnly => Level::ReadOnly,
        }
    }

    /// Owners and admins are never restricted by resource grants.
    pub fn is_unrestricted(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }

    /// Every role, lowest first.
    pub const ALL: [Self; 4] = [Self::ReadOnly, Self::Member, Self::Admin, Self::Owner];

    /// The wire and database name (`read_only`, `member`, `admin`, `owner`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// The role of a wire or database name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// An access level on one source or destination, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Hidden: absent from lists, 404 on direct reads.
    NoAccess,
    /// View the configuration (secrets redacted).
    ReadOnly,
    /// Edit settings; on a destination, see its credentials.
    ReadWrite,
    /// Everything, including delete, write keys, enable/disable, connections.
    Full,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Self; 4] = [Self::NoAccess, Self::ReadOnly, Self::ReadWrite, Self::Full];

    /// The wire name (`no_access`, `read_only`, `read_write`, `full`).
    pub fn name(self) -> &'static str {
        match self {
            Self::NoAccess => "no_access",
            Self::ReadOnly => "read_only",
            Self::ReadWrite => "read_write",
            Self::Full => "full",
        }
    }

    /// The level of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Its rank as stored (0 = `no_access` … 3 = `full`), so SQL can compare levels.
    pub fn rank(self) -> i64 {
        match self {
            Self::NoAccess => 0,
            Self::ReadOnly => 1,
            Self::ReadWrite => 2,
            Self::Full => 3,
        }
    }

    /// The level of a stored rank.
    pub fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.rank() == rank)
    }
}

/// What a grant applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// One source.
    Source {
        /// Its id.
        id: String,
    },
    /// One destination.
    Destination {
        /// Its id.
        id: String,
    },
    /// Every source carrying the label `key:value` (e.g. `environment:prod`).
    SourceLabel {
        /// Label key.
        key: String,
        /// Label value.
        value: String,
    },
}

/// A grant of a level on a target, held by a user or by a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// What it applies to.
    pub target: Target,
    /// The level it gives.
    pub level: Level,
    /// After this it counts as absent (just-in-time access).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Grant {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }

    /// Whether the grant names this very resource (not through a label).
    fn names(&self, resource: &ResourceRef<'_>) -> bool {
        match (&self.target, resource) {
            (Target::Source { id }, ResourceRef::Source(s)) => id == s.id,
            (Target::Destination { id }, ResourceRef::Destination(d)) => id == d.id,
            _ => false,
        }
    }

    /// Whether the grant applies to the resource, by name or through a label.
    pub fn reaches(&self, resource: &ResourceRef<'_>) -> bool {
        self.names(resource) || self.labels(resource)
    }

    /// Whether the grant reaches the resource through one of its labels.
    fn labels(&self, resource: &ResourceRef<'_>) -> bool {
        match (&self.target, resource) {
            (Target::SourceLabel { key, value }, ResourceRef::Source(s)) => {
                s.labels.iter().any(|(k, v)| k == key && v == value)
            }
            _ => false,
        }
    }
}

/// A group the user belongs to, with its grants (and the role it maps to, if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Its name (for explanations).
    pub name: String,
    /// A workspace role every member gets at least (`segment-admins → admin`).
    pub role: Option<Role>,
    /// Its grants.
    pub grants: Vec<Grant>,
}

/// What an elevation raises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Raise {
    /// A workspace role (never owner: ownership is transferred, not lent).
    Role {
        /// The role.
        role: Role,
    },
    /// A level on a source, a destination or the sources carrying a label.
    Level(Grant),
}

/// Temporary access someone approved: it counts from `starts_at` until `ends_at`,
/// decided with `now` by [`authorize`] (nothing has to clean it up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Elevation {
    /// Its id (`elv_…`), named by explanations and audit events.
    pub id: String,
    /// What it raises.
    pub raise: Raise,
    /// When its window opened (its approval).
    pub starts_at: DateTime<Utc>,
    /// When it ends by itself.
    pub ends_at: DateTime<Utc>,
}

impl Elevation {
    /// Whether it counts at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// A user as the policy sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// User id.
    pub id: String,
    /// Their own workspace role.
    pub role: Role,
    /// A deactivated user may do nothing.
    pub active: bool,
    /// Their own grants.
    pub grants: Vec<Grant>,
    /// Their groups.
    pub groups: Vec<Group>,
    /// A scoped member reaches only what grants give them: their level on any other
    /// source or destination is `no_access`, not their role's default.
    pub scoped: bool,
    /// Their approved elevations (live or not: [`authorize`] decides with `now`).
    pub elevations: Vec<Elevation>,
}

impl User {
    /// The ids of their elevations live at `now` (audit events name them).
    pub fn live_elevations(&self, now: DateTime<Utc>) -> Vec<String> {
        self.elevations
            .iter()
            .filter(|e| e.live(now))
            .map(|e| e.id.clone())
            .collect()
    }

    /// The highest role a live elevation raises them to, above their own.
    fn elevated_role(&self, now: DateTime<Utc>) -> Option<(&Elevation, Role)> {
        let base = self.effective_role();
        self.elevations
            .iter()
            .filter(|e| e.live(now))
            .filter_map(|e| match e.raise {
                Raise::Role { role } if role > base => Some((e, role)),
                _ => None,
            })
            .max_by_key(|(_, role)| *role)
    }

    /// The level on a source or destination that no grant speaks of: `full` for owners
    /// and admins, `no_access` for a scoped member, else the role's default.
    pub fn default_level(&self) -> Level {
        let role = self.effective_role();
        if self.scoped && !role.is_unrestricted() {
            Level::NoAccess
        } else {
            role.default_level()
        }
    }

    /// The role that counts: their own, or a higher one one of their groups maps to.
    pub fn effective_role(&self) -> Role {
        self.groups
            .iter()
            .filter_map(|g| g.role)
            .fold(self.role, Ord::max)
    }
}

/// A token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `workspace:read`
    WorkspaceRead,
    /// `workspace:write`
    WorkspaceWrite,
    /// `sources:read`
    SourcesRead,
    /// `sources:write`
    SourcesWrite,
    /// `destinations:read`
    DestinationsRead,
    /// `destinations:write`
    DestinationsWrite,
    /// `tracking_plan:read`
    TrackingPlanRead,
    /// `tracking_plan:write`
    TrackingPlanWrite,
    /// `members:read`
    MembersRead,
    /// `members:write`
    MembersWrite,
    /// `audit:read`
    AuditRead,
    /// Formerly the scope of a remote gateway's token. It grants nothing now: gateways
    /// and delivery nodes use node credentials ([`NodeRole`]); kept so tokens stored
    /// with it still read back.
    CatalogRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 12] = [
        Self::WorkspaceRead,
        Self::WorkspaceWrite,
        Self::SourcesRead,
        Self::SourcesWrite,
        Self::DestinationsRead,
        Self::DestinationsWrite,
        Self::TrackingPlanRead,
        Self::TrackingPlanWrite,
        Self::MembersRead,
        Self::MembersWrite,
        Self::AuditRead,
        Self::CatalogRead,
    ];

    /// The scopes a person's token may carry (all but the retired `catalog:read`).
    pub const PERSONAL: [Self; 11] = [
        Self::WorkspaceRead,
        Self::WorkspaceWrite,
        Self::SourcesRead,
        Self::SourcesWrite,
        Self::DestinationsRead,
        Self::DestinationsWrite,
        Self::TrackingPlanRead,
        Self::TrackingPlanWrite,
        Self::MembersRead,
        Self::MembersWrite,
        Self::AuditRead,
    ];

    /// The scope's name on the wire (`sources:write`).
    pub fn name(self) -> &'static str {
        match self {
            Self::WorkspaceRead => "workspace:read",
            Self::WorkspaceWrite => "workspace:write",
            Self::SourcesRead => "sources:read",
            Self::SourcesWrite => "sources:write",
            Self::DestinationsRead => "destinations:read",
            Self::DestinationsWrite => "destinations:write",
            Self::TrackingPlanRead => "tracking_plan:read",
            Self::TrackingPlanWrite => "tracking_plan:write",
            Self::MembersRead => "members:read",
            Self::MembersWrite => "members:write",
            Self::AuditRead => "audit:read",
            Self::CatalogRead => "catalog:read",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A token as the policy sees it (its owner is the [`Principal`]'s user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Token id (for explanations).
    pub id: String,
    /// What it may be used for.
    pub scopes: Vec<Scope>,
    /// It stops working at this time.
    pub expires_at: DateTime<Utc>,
    /// Set once revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who is asking: a user, directly (a console session) or through one of their tokens.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    /// The user (a token's owner).
    pub user: &'a User,
    /// The token the request came with, if any.
    pub token: Option<&'a Token>,
}

/// Workspace settings the policy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Settings {
    /// Members may publish tracking-plan changes without approval.
    pub members_can_publish: bool,
    /// A reviewer may approve their own change request.
    pub self_approval: bool,
}

/// A source as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct SourceRef<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its labels, `(key, value)`.
    pub labels: &'a [(String, String)],
}

/// A destination as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct DestinationRef<'a> {
    /// Its id.
    pub id: &'a str,
    /// The sources it is connected to, where the decision may depend on them (editing,
    /// deleting): `full` on every one of them covers the destination. Empty elsewhere.
    pub connected: &'a [SourceRef<'a>],
}

/// A change of one source's labels. Labels decide access (label grants), so who may
/// change them is itself a policy question: see [`Action::ChangeLabels`].
#[derive(Debug, Clone, Copy)]
pub struct LabelChange<'a> {
    /// The source with its labels before the change (none for a source being created).
    pub source: SourceRef<'a>,
    /// Its labels after the change.
    pub after: &'a [(String, String)],
    /// Every label some grant of the workspace targets (expired grants included): the
    /// labels that carry access.
    pub governed: &'a [(String, String)],
}

impl LabelChange<'_> {
    /// The governed labels the change puts on or takes off, sorted.
    pub fn governed_changes(&self) -> Vec<String> {
        let before = self.source.labels;
        let mut out: Vec<String> = self
            .governed
            .iter()
            .filter(|l| before.contains(l) != self.after.contains(l))
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// What an action is done to.
#[derive(Debug, Clone, Copy)]
pub enum ResourceRef<'a> {
    /// The workspace itself (members, settings, tokens, plans, audit, new resources).
    Workspace,
    /// One source.
    Source(SourceRef<'a>),
    /// One destination.
    Destination(DestinationRef<'a>),
    /// Connecting or disconnecting a destination and a source.
    Connection(SourceRef<'a>, DestinationRef<'a>),
    /// Changing a source's labels.
    Labels(LabelChange<'a>),
    /// Reviewing or amending a tracking-plan change request.
    ChangeRequest(ChangeRequestRef<'a>),
    /// Approving, denying or ending someone's elevation.
    Elevation(ElevationRef<'a>),
    /// Deciding one line of an access review.
    ReviewItem(ReviewItemRef<'a>),
}

/// One line of an access review as the policy sees it: whose access it is.
#[derive(Debug, Clone, Copy)]
pub struct ReviewItemRef<'a> {
    /// Its id.
    pub id: &'a str,
    /// Whose access it is (user id; a group's grant: the group's id).
    pub subject: &'a str,
}

/// An elevation request as the policy sees it: who asks, and for what.
#[derive(Debug, Clone, Copy)]
pub struct ElevationRef<'a> {
    /// Its id.
    pub id: &'a str,
    /// Who asked (user id).
    pub requester: &'a str,
    /// What they asked for.
    pub wants: Wanted<'a>,
}

/// What an elevation request asks for, with the resource it names.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// A workspace role.
    Role(Role),
    /// A level on one source.
    Source(SourceRef<'a>, Level),
    /// A level on one destination.
    Destination(DestinationRef<'a>, Level),
    /// A level on the sources carrying a label.
    Label(Level),
}

/// A tracking-plan change request as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRequestRef<'a> {
    /// Its id.
    pub id: &'a str,
    /// Who proposed it (user id).
    pub author: &'a str,
}

/// Something a principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// See the workspace.
    ViewWorkspace,
    /// See the workspace's people and groups (a token needs `members:read`).
    ViewMembers,
    /// See tracking plans and their rules (a token needs `tracking_plan:read`).
    ViewTrackingPlans,
    /// See a source (or list sources: hidden ones are left out).
    ViewSource,
    /// Create a source.
    CreateSource,
    /// Change a source's settings.
    EditSource,
    /// Delete a source.
    DeleteSource,
    /// Add, rotate or revoke a source's write keys.
    ManageWriteKeys,
    /// Put labels on a source or take them off (at creation too). Needs `read_write` on
    /// the source; a label that carries a grant (a *governed* label) is put on or taken
    /// off only by owners and admins, so a change never raises anyone's level nor lifts
    /// anyone's restriction.
    ChangeLabels,
    /// See a destination (secrets redacted).
    ViewDestination,
    /// See a destination's credentials.
    ViewDestinationSecrets,
    /// Create a destination.
    CreateDestination,
    /// Change a destination's settings.
    EditDestination,
    /// Enable or disable a destination.
    EnableDestination,
    /// Delete a destination.
    DeleteDestination,
    /// Connect a destination and a source (`read_write` on both).
    Connect,
    /// Cut a destination's connection to a source (`full` on the source, `read_write` on
    /// the destination): a team cuts only its own sources' connections.
    Disconnect,
    /// Invite, remove, change the role or grants of members; groups.
    ManageMembers,
    /// Change workspace settings.
    ModifySettings,
    /// Usage and limits (the reference's "billing").
    ManageUsage,
    /// Make another user the owner.
    TransferOwnership,
    /// Edit tracking plans (propose changes).
    EditTrackingPlans,
    /// Publish a tracking-plan version.
    PublishTrackingPlans,
    /// Approve (publish) or reject a tracking-plan change request: those who may
    /// publish, never on their own request unless the workspace allows self-approval.
    ReviewChangeRequest,
    /// Amend, rebase or withdraw a change request: its author only.
    AmendChangeRequest,
    /// Ask for temporary access (anyone active).
    RequestElevation,
    /// Approve or deny someone else's elevation: who holds what it asks for (the role,
    /// or the level on that source or destination; owners and admins for a label).
    ApproveElevation,
    /// End an elevation (pending or active): its requester, or who may approve it.
    EndElevation,
    /// Open, decide and close access reviews: owners and admins, never on their own
    /// access unless the workspace allows self-approval.
    ReviewAccess,
    /// Create functions.
    CreateFunctions,
    /// Create, rotate and revoke API tokens.
    ManageTokens,
    /// Read the audit log.
    ReadAudit,
    /// Fetch the catalog feed: node credentials only ([`node_may`]).
    ReadCatalog,
    /// Report a gateway's usage counts: gateway node credentials only ([`node_may`]).
    ReportUsage,
    /// Report the failed runs of functions (a gateway's source functions, a delivery
    /// node's insert functions): node credentials only ([`node_may`]).
    ReportFunctionErrors,
    /// Change a protected (production) source, or a destination connected to one, at
    /// once: owners and admins (standing or elevated). Anyone else who may make the
    /// change proposes it for review instead. Reviewing such a proposal needs this too,
    /// never on one's own proposal unless the workspace allows self-approval.
    ApplyProtectedChange,
    /// Suppress or unsuppress users in the whole workspace, and see its regulations and
    /// who is suppressed (Segment's Deletion & Suppression API): owners and admins.
    Regulate,
    /// Suppress or unsuppress users in one source, and see that source's regulations:
    /// `full` on the source.
    RegulateSource,
    /// Follow the suppression list (user ids): gateway node credentials only
    /// ([`node_may`]), the nodes that drop suppressed users' events.
    ReadSuppressions,
    /// Change what a source lets through of personal data (what its events without
    /// consent preferences do, its PII rules): `full` on the source.
    EditSourcePrivacy,
    /// Change a destination's consent categories (fewer categories let more events
    /// reach it): `full` on the destination.
    EditDestinationPrivacy,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 41] = [
        Self::ViewWorkspace,
        Self::ViewMembers,
        Self::ViewTrackingPlans,
        Self::ViewSource,
        Self::CreateSource,
        Self::EditSource,
        Self::DeleteSource,
        Self::ManageWriteKeys,
        Self::ChangeLabels,
        Self::ViewDestination,
        Self::ViewDestinationSecrets,
        Self::CreateDestination,
        Self::EditDestination,
        Self::EnableDestination,
        Self::DeleteDestination,
        Self::Connect,
        Self::Disconnect,
        Self::ManageMembers,
        Self::ModifySettings,
        Self::ManageUsage,
        Self::TransferOwnership,
        Self::EditTrackingPlans,
        Self::PublishTrackingPlans,
        Self::ReviewChangeRequest,
        Self::AmendChangeRequest,
        Self::RequestElevation,
        Self::ApproveElevation,
        Self::EndElevation,
        Self::ReviewAccess,
        Self::CreateFunctions,
        Self::ManageTokens,
        Self::ReadAudit,
        Self::ReadCatalog,
        Self::ReportUsage,
        Self::ReportFunctionErrors,
        Self::ApplyProtectedChange,
        Self::Regulate,
        Self::RegulateSource,
        Self::ReadSuppressions,
        Self::EditSourcePrivacy,
        Self::EditDestinationPrivacy,
    ];

    /// Whether the action changes who may do what. These are decided on standing access
    /// only, never on an elevation.
    pub fn governs_access(self) -> bool {
        matches!(
            self,
            Self::ManageMembers
                | Self::TransferOwnership
                | Self::ModifySettings
                | Self::ManageTokens
                | Self::ManageUsage
                | Self::ChangeLabels
                | Self::ApproveElevation
                | Self::EndElevation
                | Self::ReviewAccess
        )
    }

    /// The wire name (`edit_source`, …), as explanations and audit events say it.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The role baseline for workspace-wide actions: the reference's matrix.
    /// `None` for actions on one source or destination, which the resource level decides.
    pub fn role_allows(self, role: Role, settings: Settings) -> Option<bool> {
        use Role::{Admin, Member, Owner};
        let allowed = match self {
            Self::ViewWorkspace
            | Self::ViewMembers
            | Self::ViewTrackingPlans
            | Self::RequestElevation => true,
            Self::CreateSource | Self::CreateDestination | Self::CreateFunctions => role >= Member,
            Self::EditTrackingPlans | Self::AmendChangeRequest => role >= Member,
            Self::PublishTrackingPlans | Self::ReviewChangeRequest => {
                role >= Admin || (role == Member && settings.members_can_publish)
            }
            Self::ManageMembers
            | Self::ModifySettings
            | Self::ManageTokens
            | Self::ReadAudit
            | Self::ReviewAccess
            | Self::ApplyProtectedChange
            | Self::Regulate => role >= Admin,
            // The catalog feed and usage reports are for node credentials ([`node_may`]),
            // never a person.
            Self::ReadCatalog
            | Self::ReportUsage
            | Self::ReportFunctionErrors
            | Self::ReadSuppressions => false,
            Self::ManageUsage | Self::TransferOwnership => role == Owner,
            Self::ViewSource
            | Self::EditSource
            | Self::DeleteSource
            | Self::ManageWriteKeys
            | Self::ChangeLabels
            | Self::ViewDestination
            | Self::ViewDestinationSecrets
            | Self::EditDestination
            | Self::EnableDestination
            | Self::DeleteDestination
            | Self::Connect
            | Self::Disconnect
            | Self::ApproveElevation
            | Self::EndElevation
            | Self::RegulateSource
            | Self::EditSourcePrivacy
            | Self::EditDestinationPrivacy => return None,
        };
        Some(allowed)
    }

    /// The level a source action needs on the source.
    fn source_level(self) -> Option<Level> {
        match self {
            Self::ViewSource => Some(Level::ReadOnly),
            Self::EditSource => Some(Level::ReadWrite),
            Self::Connect => Some(Level::ReadWrite),
            Self::DeleteSource
            | Self::ManageWriteKeys
            | Self::Disconnect
            | Self::RegulateSource
            | Self::EditSourcePrivacy => Some(Level::Full),
            _ => None,
        }
    }

    /// The level a destination action needs on the destination.
    fn destination_level(self) -> Option<Level> {
        match self {
            Self::ViewDestination => Some(Level::ReadOnly),
            Self::ViewDestinationSecrets
            | Self::EditDestination
            | Self::Connect
            | Self::Disconnect => Some(Level::ReadWrite),
            Self::EnableDestination | Self::DeleteDestination | Self::EditDestinationPrivacy => {
                Some(Level::Full)
            }
            _ => None,
        }
    }

    /// The scope a token needs for this action.
    pub fn scope(self) -> Scope {
        match self {
            Self::ViewWorkspace => Scope::WorkspaceRead,
            Self::ViewMembers => Scope::MembersRead,
            Self::ViewTrackingPlans => Scope::TrackingPlanRead,
            Self::ModifySettings | Self::ManageUsage | Self::TransferOwnership => {
                Scope::WorkspaceWrite
            }
            Self::ViewSource => Scope::SourcesRead,
            Self::CreateSource
            | Self::EditSource
            | Self::DeleteSource
            | Self::ManageWriteKeys
            | Self::ChangeLabels => Scope::SourcesWrite,
            Self::ViewDestination => Scope::DestinationsRead,
            // Credentials are what a write token could set: a read token never reveals them.
            Self::ViewDestinationSecrets
            | Self::CreateDestination
            | Self::EditDestination
            | Self::EnableDestination
            | Self::DeleteDestination
            | Self::Connect
            | Self::Disconnect => Scope::DestinationsWrite,
            Self::EditTrackingPlans
            | Self::PublishTrackingPlans
            | Self::ReviewChangeRequest
            | Self::AmendChangeRequest
            | Self::CreateFunctions => Scope::TrackingPlanWrite,
            Self::ManageMembers
            | Self::ManageTokens
            | Self::RequestElevation
            | Self::ApproveElevation
            | Self::EndElevation
            | Self::ReviewAccess => Scope::MembersWrite,
            Self::ReadAudit => Scope::AuditRead,
            Self::ReadCatalog
            | Self::ReportUsage
            | Self::ReportFunctionErrors
            | Self::ReadSuppressions => Scope::CatalogRead,
            Self::ApplyProtectedChange => Scope::SourcesWrite,
            // Who is suppressed is personal data: reading it needs a write scope too.
            Self::Regulate => Scope::WorkspaceWrite,
            Self::RegulateSource | Self::EditSourcePrivacy => Scope::SourcesWrite,
            Self::EditDestinationPrivacy => Scope::DestinationsWrite,
        }
    }
}

/// Why a decision came out as it did (the last rule that decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Allowed.
    Allowed,
    /// The user is deactivated.
    UserInactive,
    /// The token has expired (API: 401 `token_expired`).
    TokenExpired,
    /// The token was revoked (API: 401 `token_revoked`).
    TokenRevoked,
    /// None of the token's scopes covers the action.
    ScopeMissing,
    /// The role does not allow the action.
    RoleDenies,
    /// The level on the resource is too low (the resource is visible).
    LevelTooLow,
    /// The resource is hidden from the principal (`no_access`): answer as if missing.
    Hidden,
    /// The change puts on or takes off a label that carries a grant, and the role is
    /// not owner or admin.
    GovernedLabel,
    /// The request (a change request, an elevation) is the principal's own: nobody
    /// approves their own (change requests: unless the workspace allows self-approval).
    OwnRequest,
    /// Only the author of a change request amends, rebases or withdraws it.
    NotAuthor,
    /// The action does not apply to this kind of resource.
    NotApplicable,
}

/// One rule consulted, for explanations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// The role and whether its matrix cell allows the action.
    RoleCell {
        /// The effective role.
        role: Role,
        /// The action.
        action: Action,
        /// The cell.
        allows: bool,
    },
    /// A group raised the user's role.
    GroupRole {
        /// The group.
        group: String,
        /// The role it maps to.
        role: Role,
    },
    /// The level on a resource and where it came from.
    Level {
        /// `source` or `destination`.
        resource: &'static str,
        /// Its id.
        id: String,
        /// The level that counts.
        level: Level,
        /// `role_default`, `unrestricted_role`, `own_grant`, `own_label_grant`,
        /// `group_grant:<name>`.
        from: String,
        /// The level the action needs.
        needs: Level,
    },
    /// A grant that had expired and was ignored.
    ExpiredGrant {
        /// Its target.
        target: Target,
    },
    /// The token check.
    TokenScope {
        /// Token id.
        token: String,
        /// The scope the action needs.
        needs: Scope,
        /// Whether the token has it.
        has: bool,
    },
    /// Governed labels a label change touches.
    GovernedLabels {
        /// The labels, `key:value`.
        labels: Vec<String>,
        /// Whether the role may change them (owner or admin).
        allows: bool,
    },
    /// An elevation that raised the role for this decision.
    Elevation {
        /// Its id.
        id: String,
        /// The role it raises to.
        role: Role,
        /// When it ends.
        ends_at: DateTime<Utc>,
    },
    /// Who proposed a change request, against who asks.
    Authorship {
        /// The author (user id).
        author: String,
        /// Whether the principal is the author.
        own: bool,
        /// Whether this rule allows the action.
        allows: bool,
    },
    /// The token's validity.
    TokenState {
        /// Token id.
        token: String,
        /// `expired`, `revoked` or `valid`.
        state: &'static str,
    },
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the action may go ahead.
    pub allowed: bool,
    /// The deciding rule.
    pub reason: Reason,
    /// Every rule consulted, in order.
    pub rules: Vec<Rule>,
}

impl Decision {
    /// The resource must be answered as missing (404), not as forbidden.
    pub fn hidden(&self) -> bool {
        self.reason == Reason::Hidden
    }

    fn deny(reason: Reason, rules: Vec<Rule>) -> Self {
        Self {
            allowed: false,
            reason,
            rules,
        }
    }
}

/// What a node credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// A gateway: the catalog without destination credentials.
    Gateway,
    /// A delivery node: the catalog with destination credentials (it calls them).
    Delivery,
}

impl NodeRole {
    /// Every role.
    pub const ALL: [Self; 2] = [Self::Gateway, Self::Delivery];

    /// The wire and database name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Delivery => "delivery",
        }
    }

    /// The role of a wire or database name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Whether a node credential of `role` may do `action`: both roles read the catalog
/// feed; only delivery nodes see destination credentials in it. Nothing else.
pub fn node_may(role: NodeRole, action: Action) -> bool {
    match action {
        Action::ReadCatalog => true,
        Action::ViewDestinationSecrets => role == NodeRole::Delivery,
        Action::ReportUsage | Action::ReadSuppressions => role == NodeRole::Gateway,
        // Both run functions: a gateway its source functions, a delivery node its insert
        // functions.
        Action::ReportFunctionErrors => true,
        _ => false,
    }
}

/// The level `user` has on one source or destination, with where it comes from. A
/// destination connected only to sources the user has `full` on is theirs in `full` too
/// (the reference's "full: create, edit and delete the source and its connected
/// destinations"), unless it is hidden from them.
pub fn level(
    user: &User,
    resource: &ResourceRef<'_>,
    now: DateTime<Utc>,
    rules: &mut Vec<Rule>,
) -> (Level, String) {
    let (level, from) = own_level(user, resource, now, rules);
    if let ResourceRef::Destination(d) = resource
        && level != Level::NoAccess
        && level != Level::Full
        && !d.connected.is_empty()
        && d.connected.iter().all(|s| {
            own_level(user, &ResourceRef::Source(*s), now, &mut Vec::new()).0 == Level::Full
        })
    {
        return (Level::Full, "full_on_connected_sources".to_owned());
    }
    (level, from)
}

/// [`level`] from the user's role, grants and elevations on the resource itself: a
/// live elevation only ever raises what the rest gives.
fn own_level(
    user: &User,
    resource: &ResourceRef<'_>,
    now: DateTime<Utc>,
    rules: &mut Vec<Rule>,
) -> (Level, String) {
    let (level, from) = granted_level(user, resource, now, rules);
    let raised = user
        .elevations
        .iter()
        .filter(|e| e.live(now))
        .filter_map(|e| match &e.raise {
            Raise::Level(g) if g.reaches(resource) => Some((e, g.level)),
            _ => None,
        })
        .max_by_key(|(_, level)| *level);
    match raised {
        Some((e, raised)) if raised > level => (raised, format!("elevation:{}", e.id)),
        _ => (level, from),
    }
}

/// [`own_level`] without elevations: the role, the grants, the groups.
fn granted_level(
    user: &User,
    resource: &ResourceRef<'_>,
    now: DateTime<Utc>,
    rules: &mut Vec<Rule>,
) -> (Level, String) {
    let role = user.effective_role();
    if role.is_unrestricted() {
        return (Level::Full, "unrestricted_role".to_owned());
    }
    let mut live = |g: &Grant| {
        if g.live(now) {
            true
        } else {
            if g.reaches(resource) {
                rules.push(Rule::ExpiredGrant {
                    target: g.target.clone(),
                });
            }
            false
        }
    };
    // The user's own grant on this very resource wins; then their label grants.
    let own: Vec<&Grant> = user.grants.iter().filter(|g| live(g)).collect();
    if let Some(g) = own.iter().find(|g| g.names(resource)) {
        return (g.level, "own_grant".to_owned());
    }
    if let Some(level) = own
        .iter()
        .filter(|g| g.labels(resource))
        .map(|g| g.level)
        .max()
    {
        return (level, "own_label_grant".to_owned());
    }
    // Else the highest grant of any of their groups.
    let best = user
        .groups
        .iter()
        .flat_map(|group| group.grants.iter().map(move |g| (group, g)))
        .filter(|(_, g)| g.reaches(resource) && live(g))
        .max_by_key(|(_, g)| g.level);
    if let Some((group, g)) = best {
        return (g.level, format!("group_grant:{}", group.name));
    }
    let from = if user.scoped {
        "scoped_default"
    } else {
        "role_default"
    };
    (user.default_level(), from.to_owned())
}

/// Whether `principal` may act at all at `now`: `None` while the token is live and its
/// person active, else why not. The first check of every [`authorize`], asked alone
/// once per request before anything else.
pub fn standing(principal: Principal<'_>, now: DateTime<Utc>) -> Option<Reason> {
    standing_of(principal, now, &mut Vec::new())
}

/// [`standing`], noting the token's state among `rules`.
fn standing_of(
    principal: Principal<'_>,
    now: DateTime<Utc>,
    rules: &mut Vec<Rule>,
) -> Option<Reason> {
    if let Some(token) = principal.token {
        let state = if token.revoked_at.is_some_and(|at| at <= now) {
            Some((Reason::TokenRevoked, "revoked"))
        } else if now >= token.expires_at {
            Some((Reason::TokenExpired, "expired"))
        } else {
            None
        };
        rules.push(Rule::TokenState {
            token: token.id.clone(),
            state: state.map_or("valid", |(_, s)| s),
        });
        if let Some((reason, _)) = state {
            return Some(reason);
        }
    }
    (!principal.user.active).then_some(Reason::UserInactive)
}

/// Decides whether `principal` may do `action` to `resource` at `now`.
pub fn authorize(
    principal: Principal<'_>,
    action: Action,
    resource: ResourceRef<'_>,
    settings: Settings,
    now: DateTime<Utc>,
) -> Decision {
    let mut rules = Vec::new();
    if let Some(reason) = standing_of(principal, now, &mut rules) {
        return Decision::deny(reason, rules);
    }
    // A live role elevation decides as that role (and names itself), except who may
    // change access: that is decided on standing access alone, so an elevation can
    // neither make itself permanent nor be passed on (approving another's, inviting,
    // changing roles, grants, tokens, settings, governed labels).
    let raised;
    let user = match principal.user.elevated_role(now) {
        _ if action.governs_access() => {
            raised = User {
                elevations: Vec::new(),
                ..principal.user.clone()
            };
            &raised
        }
        Some((elevation, role)) => {
            rules.push(Rule::Elevation {
                id: elevation.id.clone(),
                role,
                ends_at: elevation.ends_at,
            });
            raised = User {
                role,
                ..principal.user.clone()
            };
            &raised
        }
        None => principal.user,
    };
    let role = user.effective_role();
    if role != user.role {
        for g in &user.groups {
            if g.role == Some(role) {
                rules.push(Rule::GroupRole {
                    group: g.name.clone(),
                    role,
                });
                break;
            }
        }
    }
    // What the owner may do, resource by resource.
    let user_decision = match (action.role_allows(role, settings), resource) {
        (Some(allows), resource) => {
            rules.push(Rule::RoleCell {
                role,
                action,
                allows,
            });
            match resource {
                _ if !allows => Reason::RoleDenies,
                ResourceRef::ChangeRequest(cr) => {
                    authorship(user, action, cr, settings, &mut rules)
                }
                ResourceRef::ReviewItem(item) => {
                    let own = item.subject == user.id;
                    let allows = !own || settings.self_approval;
                    rules.push(Rule::Authorship {
                        author: item.subject.to_owned(),
                        own,
                        allows,
                    });
                    if allows {
                        Reason::Allowed
                    } else {
                        Reason::OwnRequest
                    }
                }
                _ => Reason::Allowed,
            }
        }
        (None, ResourceRef::Source(s)) => match action.source_level() {
            Some(needs) => check_level(
                user,
                ResourceRef::Source(s),
                "source",
                s.id,
                needs,
                now,
                &mut rules,
            ),
            None => Reason::NotApplicable,
        },
        (None, ResourceRef::Destination(d)) => match action.destination_level() {
            Some(needs) => check_level(
                user,
                ResourceRef::Destination(d),
                "destination",
                d.id,
                needs,
                now,
                &mut rules,
            ),
            None => Reason::NotApplicable,
        },
        (None, ResourceRef::Connection(s, d))
            if matches!(action, Action::Connect | Action::Disconnect) =>
        {
            let on_source = check_level(
                user,
                ResourceRef::Source(s),
                "source",
                s.id,
                action.source_level().unwrap_or(Level::Full),
                now,
                &mut rules,
            );
            if on_source == Reason::Allowed {
                check_level(
                    user,
                    ResourceRef::Destination(d),
                    "destination",
                    d.id,
                    Level::ReadWrite,
                    now,
                    &mut rules,
                )
            } else {
                on_source
            }
        }
        (None, ResourceRef::Labels(change)) if action == Action::ChangeLabels => {
            let on_source = check_level(
                user,
                ResourceRef::Source(change.source),
                "source",
                change.source.id,
                Level::ReadWrite,
                now,
                &mut rules,
            );
            let touched = change.governed_changes();
            if on_source != Reason::Allowed || touched.is_empty() {
                on_source
            } else {
                let allows = role.is_unrestricted();
                rules.push(Rule::GovernedLabels {
                    labels: touched,
                    allows,
                });
                if allows {
                    Reason::Allowed
                } else {
                    Reason::GovernedLabel
                }
            }
        }
        (None, ResourceRef::Elevation(e))
            if matches!(action, Action::ApproveElevation | Action::EndElevation) =>
        {
            approver(user, role, action, e, now, &mut rules)
        }
        (None, _) => Reason::NotApplicable,
    };
    if user_decision != Reason::Allowed {
        return Decision::deny(user_decision, rules);
    }
    if let Some(token) = principal.token {
        let needs = action.scope();
        let has = token.scopes.contains(&needs);
        rules.push(Rule::TokenScope {
            token: token.id.clone(),
            needs,
            has,
        });
        if !has {
            return Decision::deny(Reason::ScopeMissing, rules);
        }
    }
    Decision {
        allowed: true,
        reason: Reason::Allowed,
        rules,
    }
}

/// Who may approve, deny or end an elevation: never its requester (who may end it,
/// though); else who holds what it asks for.
fn approver(
    user: &User,
    role: Role,
    action: Action,
    e: ElevationRef<'_>,
    now: DateTime<Utc>,
    rules: &mut Vec<Rule>,
) -> Reason {
    let own = e.requester == user.id;
    if own {
        let allows = action == Action::EndElevation;
        rules.push(Rule::Authorship {
            author: e.requester.to_owned(),
            own,
            allows,
        });
        return if allows {
            Reason::Allowed
        } else {
            Reason::OwnRequest
        };
    }
    let by_role = |allows: bool, rules: &mut Vec<Rule>| {
        rules.push(Rule::RoleCell {
            role,
            action,
            allows,
        });
        if allows {
            Reason::Allowed
        } else {
            Reason::RoleDenies
        }
    };
    match e.wants {
        Wanted::Role(wanted) => by_role(role >= wanted, rules),
        Wanted::Label(_) => by_role(role.is_unrestricted(), rules),
        Wanted::Source(s, level) => check_level(
            user,
            ResourceRef::Source(s),
            "source",
            s.id,
            level,
            now,
            rules,
        ),
        Wanted::Destination(d, level) => check_level(
            user,
            ResourceRef::Destination(d),
            "destination",
            d.id,
            level,
            now,
            rules,
        ),
    }
}

/// Who may review or amend a change request, by who wrote it: its author amends it and
/// never reviews it, unless the workspace allows self-approval.
fn authorship(
    user: &User,
    action: Action,
    cr: ChangeRequestRef<'_>,
    settings: Settings,
    rules: &mut Vec<Rule>,
) -> Reason {
    let own = cr.author == user.id;
    let (allows, refusal) = match action {
        Action::ReviewChangeRequest | Action::ApplyProtectedChange => {
            (!own || settings.self_approval, Reason::OwnRequest)
        }
        Action::AmendChangeRequest => (own, Reason::NotAuthor),
        _ => return Reason::Allowed,
    };
    rules.push(Rule::Authorship {
        author: cr.author.to_owned(),
        own,
        allows,
    });
    if allows { Reason::Allowed } else { refusal }
}

fn check_level(
    user: &User,
    resource: ResourceRef<'_>,
    kind: &'static str,
    id: &str,
    needs: Level,
    now: DateTime<Utc>,
    rules: &mut Vec<Rule>,
) -> Reason {
    let (level, from) = level(user, &resource, now, rules);
    rules.push(Rule::Level {
        resource: kind,
        id: id.to_owned(),
        level,
        from,
        needs,
    });
    if level == Level::NoAccess {
        Reason::Hidden
    } else if level >= needs {
        Reason::Allowed
    } else {
        Reason::LevelTooLow
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn node_credentials_do_only_what_their_role_is_for() {
        let rows = [
            (Action::ReadCatalog, true, true),
            (Action::ViewDestinationSecrets, false, true),
            (Action::ReportUsage, true, false),
            (Action::ReportFunctionErrors, true, true),
            (Action::ManageTokens, false, false),
            (Action::EditSource, false, false),
        ];
        for (action, gateway, delivery) in rows {
            assert_eq!(node_may(NodeRole::Gateway, action), gateway, "{action:?}");
            assert_eq!(node_may(NodeRole::Delivery, action), delivery, "{action:?}");
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn user(role: Role) -> User {
        User {
            id: "u".into(),
            role,
            active: true,
            grants: Vec::new(),
            groups: Vec::new(),
            scoped: false,
            elevations: Vec::new(),
        }
    }

    fn grant(target: Target, level: Level) -> Grant {
        Grant {
            target,
            level,
            expires_at: None,
        }
    }

    fn source(id: &str) -> Target {
        Target::Source { id: id.into() }
    }

    fn prod() -> Target {
        Target::SourceLabel {
            key: "environment".into(),
            value: "prod".into(),
        }
    }

    const NO_LABELS: &[(String, String)] = &[];

    fn src(id: &str) -> ResourceRef<'_> {
        ResourceRef::Source(SourceRef {
            id,
            labels: NO_LABELS,
        })
    }

    fn dst(id: &str) -> ResourceRef<'_> {
        ResourceRef::Destination(DestinationRef { id, connected: &[] })
    }

    fn allowed(u: &User, action: Action, resource: ResourceRef<'_>) -> bool {
        authorize(
            Principal {
                user: u,
                token: None,
            },
            action,
            resource,
            Settings::default(),
            now(),
        )
        .allowed
    }

    /// The reference's matrix, every row and column: (row, resource the row is about,
    /// owner, admin, member, read_only).
    #[test]
    fn every_cell_of_the_role_matrix() {
        use Action as A;
        let ws = ResourceRef::Workspace;
        // Cells in role order owner, admin, member, read_only: Y allowed, - refused.
        #[rustfmt::skip]
        let rows: &[(&str, Action, ResourceRef<'_>, &str)] = &[
            ("view workspace", A::ViewWorkspace, ws, "YYYY"),
            ("view members and groups", A::ViewMembers, ws, "YYYY"),
            ("view tracking plans", A::ViewTrackingPlans, ws, "YYYY"),
            ("view sources", A::ViewSource, src("s"), "YYYY"),
            ("view destinations", A::ViewDestination, dst("d"), "YYYY"),
            ("create sources", A::CreateSource, ws, "YYY-"),
            ("edit sources", A::EditSource, src("s"), "YYY-"),
            ("delete sources", A::DeleteSource, src("s"), "YY--"),
            ("create destinations", A::CreateDestination, ws, "YYY-"),
            ("edit destinations", A::EditDestination, dst("d"), "YYY-"),
            ("delete destinations", A::DeleteDestination, dst("d"), "YY--"),
            ("manage team members", A::ManageMembers, ws, "YY--"),
            ("modify workspace settings", A::ModifySettings, ws, "YY--"),
            ("manage billing (usage & limits)", A::ManageUsage, ws, "Y---"),
            ("transfer ownership", A::TransferOwnership, ws, "Y---"),
            ("manage tracking plans", A::EditTrackingPlans, ws, "YYY-"),
            ("publish tracking plans (no members_can_publish)", A::PublishTrackingPlans, ws, "YY--"),
            ("create functions", A::CreateFunctions, ws, "YYY-"),
            ("manage API tokens", A::ManageTokens, ws, "YY--"),
            ("change production sources at once", A::ApplyProtectedChange, src("s"), "YY--"),
            ("suppress users workspace-wide", A::Regulate, ws, "YY--"),
            ("suppress users in a source", A::RegulateSource, src("s"), "YY--"),
            ("change a source's consent default", A::EditSourcePrivacy, src("s"), "YY--"),
            ("change a destination's consent categories", A::EditDestinationPrivacy, dst("d"), "YY--"),
        ];
        let roles = [Role::Owner, Role::Admin, Role::Member, Role::ReadOnly];
        for (row, action, resource, expected) in rows {
            for (role, cell) in roles.iter().zip(expected.chars()) {
                let want = cell == 'Y';
                assert_eq!(
                    allowed(&user(*role), *action, *resource),
                    want,
                    "{row} × {role:?}"
                );
            }
        }
        // The starred cell: members publish only with members_can_publish.
        let member = user(Role::Member);
        let open = Settings {
            members_can_publish: true,
            ..Settings::default()
        };
        let d = authorize(
            Principal {
                user: &member,
                token: None,
            },
            A::PublishTrackingPlans,
            ResourceRef::Workspace,
            open,
            now(),
        );
        assert!(d.allowed);
    }

    /// Change requests: reviewers are those who may publish, never the author unless the
    /// workspace allows self-approval; only the author amends.
    #[test]
    fn change_requests_by_role_and_authorship() {
        let ask = |u: &User, action, author: &str, settings| {
            authorize(
                Principal {
                    user: u,
                    token: None,
                },
                action,
                ResourceRef::ChangeRequest(ChangeRequestRef { id: "cr", author }),
                settings,
                now(),
            )
        };
        let strict = Settings::default();
        let relaxed = Settings {
            self_approval: true,
            ..Settings::default()
        };
        let members_publish = Settings {
            members_can_publish: true,
            ..Settings::default()
        };
        let (admin, member, viewer) = (user(Role::Admin), user(Role::Member), user(Role::ReadOnly));
        // `user()` is id "u": "other" is someone else's request.
        assert!(ask(&admin, Action::ReviewChangeRequest, "other", strict).allowed);
        let own = ask(&admin, Action::ReviewChangeRequest, "u", strict);
        assert_eq!(own.reason, Reason::OwnRequest);
        assert!(own.rules.contains(&Rule::Authorship {
            author: "u".into(),
            own: true,
            allows: false
        }));
        assert!(ask(&admin, Action::ReviewChangeRequest, "u", relaxed).allowed);
        assert_eq!(
            ask(&member, Action::ReviewChangeRequest, "other", strict).reason,
            Reason::RoleDenies
        );
        assert!(
            ask(
                &member,
                Action::ReviewChangeRequest,
                "other",
                members_publish
            )
            .allowed
        );
        assert_eq!(
            ask(&member, Action::ReviewChangeRequest, "u", members_publish).reason,
            Reason::OwnRequest
        );
        assert!(ask(&member, Action::AmendChangeRequest, "u", strict).allowed);
        assert_eq!(
            ask(&admin, Action::AmendChangeRequest, "other", strict).reason,
            Reason::NotAuthor
        );
        assert_eq!(
            ask(&viewer, Action::AmendChangeRequest, "u", strict).reason,
            Reason::RoleDenies
        );
    }

    /// Elevations count in their window only (decided with `now`), only ever raise, and
    /// name themselves in the decision.
    #[test]
    fn elevations_raise_within_their_window_only() {
        let start = now();
        let end = start + chrono::TimeDelta::hours(1);
        let on_source = |level| Elevation {
            id: "elv_s".into(),
            raise: Raise::Level(grant(source("s"), level)),
            starts_at: start,
            ends_at: end,
        };
        let ask = |u: &User, action, resource, at| {
            authorize(
                Principal {
                    user: u,
                    token: None,
                },
                action,
                resource,
                Settings::default(),
                at,
            )
        };
        // A restricted member (no_access on s) lent full on s for an hour.
        let mut m = user(Role::Member);
        m.grants = vec![grant(source("s"), Level::NoAccess)];
        m.elevations = vec![on_source(Level::Full)];
        let before = start - chrono::TimeDelta::seconds(1);
        let last = end - chrono::TimeDelta::seconds(1);
        assert_eq!(
            ask(&m, Action::DeleteSource, src("s"), before).reason,
            Reason::Hidden
        );
        let during = ask(&m, Action::DeleteSource, src("s"), start);
        assert!(during.allowed);
        assert!(during.rules.iter().any(|r| matches!(r,
            Rule::Level { from, .. } if from == "elevation:elv_s")));
        assert!(ask(&m, Action::DeleteSource, src("s"), last).allowed);
        assert_eq!(
            ask(&m, Action::DeleteSource, src("s"), end).reason,
            Reason::Hidden
        );
        // It never lowers: full by grant stays full with a read_only elevation.
        let mut g = user(Role::Member);
        g.grants = vec![grant(source("s"), Level::Full)];
        g.elevations = vec![on_source(Level::ReadOnly)];
        let d = ask(&g, Action::DeleteSource, src("s"), start);
        assert!(d.allowed);
        assert!(d.rules.iter().any(|r| matches!(r,
            Rule::Level { from, .. } if from == "own_grant")));
        // A role, for its window.
        let mut r = user(Role::ReadOnly);
        r.elevations = vec![Elevation {
            id: "elv_r".into(),
            raise: Raise::Role { role: Role::Admin },
            starts_at: start,
            ends_at: end,
        }];
        let d = ask(&r, Action::ReadAudit, ResourceRef::Workspace, start);
        assert!(d.allowed);
        assert_eq!(
            d.rules.first(),
            Some(&Rule::Elevation {
                id: "elv_r".into(),
                role: Role::Admin,
                ends_at: end
            })
        );
        assert!(!ask(&r, Action::ReadAudit, ResourceRef::Workspace, end).allowed);
        // Never for changing access: it cannot make itself permanent or be passed on.
        for governs in [
            Action::ManageMembers,
            Action::ManageTokens,
            Action::ModifySettings,
        ] {
            assert_eq!(
                ask(&r, governs, ResourceRef::Workspace, start).reason,
                Reason::RoleDenies,
                "{governs:?}"
            );
        }
        let lend = ask(
            &r,
            Action::ApproveElevation,
            ResourceRef::Elevation(ElevationRef {
                id: "elv_x",
                requester: "someone",
                wants: Wanted::Role(Role::Member),
            }),
            start,
        );
        assert_eq!(lend.reason, Reason::RoleDenies);
        let mut lent = user(Role::Member);
        lent.elevations = vec![on_source(Level::Full)];
        let pass_on = ask(
            &lent,
            Action::ApproveElevation,
            ResourceRef::Elevation(ElevationRef {
                id: "elv_x",
                requester: "someone",
                wants: Wanted::Source(
                    SourceRef {
                        id: "s",
                        labels: NO_LABELS,
                    },
                    Level::Full,
                ),
            }),
            start,
        );
        assert_eq!(pass_on.reason, Reason::LevelTooLow);
        assert_eq!(r.live_elevations(start), ["elv_r"]);
        assert!(r.live_elevations(end).is_empty());
    }

    /// Who approves an elevation: who holds what it asks for, never the requester.
    #[test]
    fn elevation_approvers_hold_what_is_asked() {
        let source_ref = SourceRef {
            id: "s",
            labels: NO_LABELS,
        };
        let ask = |u: &User, wants| {
            authorize(
                Principal {
                    user: u,
                    token: None,
                },
                Action::ApproveElevation,
                ResourceRef::Elevation(ElevationRef {
                    id: "elv",
                    requester: "someone",
                    wants,
                }),
                Settings::default(),
                now(),
            )
        };
        let mut holder = user(Role::Member);
        holder.grants = vec![grant(source("s"), Level::Full)];
        assert!(ask(&holder, Wanted::Source(source_ref, Level::Full)).allowed);
        assert_eq!(
            ask(&user(Role::Member), Wanted::Source(source_ref, Level::Full)).reason,
            Reason::LevelTooLow
        );
        assert_eq!(
            ask(&holder, Wanted::Role(Role::Admin)).reason,
            Reason::RoleDenies
        );
        assert!(ask(&user(Role::Admin), Wanted::Role(Role::Admin)).allowed);
        assert_eq!(
            ask(&holder, Wanted::Label(Level::ReadOnly)).reason,
            Reason::RoleDenies
        );
        let mut own = user(Role::Owner);
        own.id = "someone".into();
        assert_eq!(
            ask(&own, Wanted::Role(Role::Member)).reason,
            Reason::OwnRequest
        );
    }

    /// Every level × action on one source and one destination (a member, so the grant
    /// decides).
    #[test]
    fn every_level_by_every_resource_action() {
        use Action as A;
        use Level as L;
        let source_actions = [
            (A::ViewSource, L::ReadOnly),
            (A::EditSource, L::ReadWrite),
            (A::DeleteSource, L::Full),
            (A::ManageWriteKeys, L::Full),
            (A::RegulateSource, L::Full),
            (A::EditSourcePrivacy, L::Full),
        ];
        let destination_actions = [
            (A::ViewDestination, L::ReadOnly),
            (A::ViewDestinationSecrets, L::ReadWrite),
            (A::EditDestination, L::ReadWrite),
            (A::EnableDestination, L::Full),
            (A::DeleteDestination, L::Full),
            (A::EditDestinationPrivacy, L::Full),
        ];
        for level in [L::NoAccess, L::ReadOnly, L::ReadWrite, L::Full] {
            let mut u = user(Role::Member);
            u.grants = vec![
                grant(source("s"), level),
                grant(Target::Destination { id: "d".into() }, level),
            ];
            for (action, needs) in source_actions {
                let d = authorize(
                    Principal {
                        user: &u,
                        token: None,
                    },
                    action,
                    src("s"),
                    Settings::default(),
                    now(),
                );
                assert_eq!(d.allowed, level >= needs, "{level:?} {action:?}");
                assert_eq!(
                    d.hidden(),
                    level == L::NoAccess,
                    "{level:?} {action:?} hides"
                );
            }
            for (action, needs) in destination_actions {
                let d = authorize(
                    Principal {
                        user: &u,
                        token: None,
                    },
                    action,
                    dst("d"),
                    Settings::default(),
                    now(),
                );
                assert_eq!(d.allowed, level >= needs, "{level:?} {action:?}");
                assert_eq!(
                    d.hidden(),
                    level == L::NoAccess,
                    "{level:?} {action:?} hides"
                );
            }
            // Connecting needs write on both.
            let connect = ResourceRef::Connection(
                SourceRef {
                    id: "s",
                    labels: NO_LABELS,
                },
                DestinationRef {
                    id: "d",
                    connected: &[],
                },
            );
            assert_eq!(
                allowed(&u, A::Connect, connect),
                level >= L::ReadWrite,
                "{level:?} connect"
            );
        }
        // Other resources keep the role default.
        let mut u = user(Role::Member);
        u.grants = vec![grant(source("s"), L::NoAccess)];
        assert!(allowed(&u, A::EditSource, src("other")));
    }

    #[test]
    fn precedence_own_then_label_then_groups_then_role() {
        let labels = [("environment".to_owned(), "prod".to_owned())];
        let prod_source = ResourceRef::Source(SourceRef {
            id: "web",
            labels: &labels,
        });
        let mut u = user(Role::Member);
        u.groups = vec![
            Group {
                name: "viewers".into(),
                role: None,
                grants: vec![grant(prod(), Level::ReadOnly)],
            },
            Group {
                name: "ops".into(),
                role: None,
                grants: vec![grant(source("web"), Level::Full)],
            },
        ];
        // The highest of the groups.
        assert!(allowed(&u, Action::DeleteSource, prod_source));
        // A label grant of the user's own beats their groups.
        u.grants = vec![grant(prod(), Level::ReadOnly)];
        assert!(!allowed(&u, Action::EditSource, prod_source));
        assert!(allowed(&u, Action::ViewSource, prod_source));
        // Their own grant on the very source beats their label grant.
        u.grants.push(grant(source("web"), Level::NoAccess));
        let d = authorize(
            Principal {
                user: &u,
                token: None,
            },
            Action::ViewSource,
            prod_source,
            Settings::default(),
            now(),
        );
        assert!(d.hidden());
        assert!(
            d.rules
                .iter()
                .any(|r| matches!(r, Rule::Level { from, .. } if from == "own_grant"))
        );
        // Expired grants count as absent (and are named in the explanation).
        u.grants = vec![Grant {
            expires_at: Some(now()),
            ..grant(source("web"), Level::NoAccess)
        }];
        u.groups.clear();
        let d = authorize(
            Principal {
                user: &u,
                token: None,
            },
            Action::EditSource,
            prod_source,
            Settings::default(),
            now(),
        );
        assert!(d.allowed, "back to the member default");
        assert!(
            d.rules
                .iter()
                .any(|r| matches!(r, Rule::ExpiredGrant { .. }))
        );
        // Owners and admins are never restricted.
        for role in [Role::Owner, Role::Admin] {
            let mut boss = user(role);
            boss.grants = vec![grant(source("web"), Level::NoAccess)];
            boss.groups = vec![Group {
                name: "g".into(),
                role: None,
                grants: vec![grant(prod(), Level::NoAccess)],
            }];
            assert!(allowed(&boss, Action::DeleteSource, prod_source));
        }
        // A group mapped to a role raises the member.
        let mut m = user(Role::Member);
        m.groups = vec![Group {
            name: "segment-admins".into(),
            role: Some(Role::Admin),
            grants: vec![],
        }];
        let d = authorize(
            Principal {
                user: &m,
                token: None,
            },
            Action::ManageMembers,
            ResourceRef::Workspace,
            Settings::default(),
            now(),
        );
        assert!(d.allowed);
        assert!(d.rules.contains(&Rule::GroupRole {
            group: "segment-admins".into(),
            role: Role::Admin
        }));
    }

    #[test]
    fn tokens_are_scopes_intersected_with_the_owner_now() {
        let owner = user(Role::Admin);
        let token = Token {
            id: "t".into(),
            scopes: vec![Scope::SourcesRead, Scope::MembersWrite],
            expires_at: now() + chrono::TimeDelta::days(1),
            revoked_at: None,
        };
        let ask = |u: &User, t: &Token, action, resource| {
            authorize(
                Principal {
                    user: u,
                    token: Some(t),
                },
                action,
                resource,
                Settings::default(),
                now(),
            )
        };
        assert!(ask(&owner, &token, Action::ViewSource, src("s")).allowed);
        assert_eq!(
            ask(&owner, &token, Action::EditSource, src("s")).reason,
            Reason::ScopeMissing
        );
        assert!(
            ask(
                &owner,
                &token,
                Action::ManageMembers,
                ResourceRef::Workspace
            )
            .allowed
        );
        // Demote the owner: the same token shrinks with them.
        let demoted = user(Role::ReadOnly);
        assert_eq!(
            ask(
                &demoted,
                &token,
                Action::ManageMembers,
                ResourceRef::Workspace
            )
            .reason,
            Reason::RoleDenies
        );
        let mut gone = user(Role::Admin);
        gone.active = false;
        assert_eq!(
            ask(&gone, &token, Action::ViewSource, src("s")).reason,
            Reason::UserInactive
        );
        let expired = Token {
            expires_at: now(),
            ..token.clone()
        };
        assert_eq!(
            ask(&owner, &expired, Action::ViewSource, src("s")).reason,
            Reason::TokenExpired
        );
        let revoked = Token {
            revoked_at: Some(now() - chrono::TimeDelta::hours(1)),
            ..token
        };
        assert_eq!(
            ask(&owner, &revoked, Action::ViewSource, src("s")).reason,
            Reason::TokenRevoked
        );
    }

    #[test]
    fn scopes_round_trip_their_wire_names() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.name()), Some(s));
        }
        assert_eq!(Scope::parse("sources:admin"), None);
    }

    fn arb_role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Owner),
            Just(Role::Admin),
            Just(Role::Member),
            Just(Role::ReadOnly)
        ]
    }

    fn arb_level() -> impl Strategy<Value = Level> {
        prop_oneof![
            Just(Level::NoAccess),
            Just(Level::ReadOnly),
            Just(Level::ReadWrite),
            Just(Level::Full)
        ]
    }

    fn arb_grant() -> impl Strategy<Value = Grant> {
        let target = prop_oneof![
            (0..3u8).prop_map(|n| Target::Source {
                id: format!("s{n}")
            }),
            (0..3u8).prop_map(|n| Target::Destination {
                id: format!("d{n}")
            }),
            Just(prod()),
        ];
        (target, arb_level(), proptest::option::of(-2i64..3)).prop_map(|(target, level, h)| Grant {
            target,
            level,
            expires_at: h.map(|h| now() + chrono::TimeDelta::hours(h)),
        })
    }

    fn arb_user() -> impl Strategy<Value = User> {
        let group = (
            proptest::option::of(arb_role()),
            prop::collection::vec(arb_grant(), 0..4),
        )
            .prop_map(|(role, grants)| Group {
                name: "g".into(),
                role,
                grants,
            });
        (
            arb_role(),
            prop::collection::vec(arb_grant(), 0..5),
            prop::collection::vec(group, 0..3),
        )
            .prop_map(|(role, grants, groups)| User {
                id: "u".into(),
                role,
                active: true,
                grants,
                groups,
                scoped: false,
                elevations: Vec::new(),
            })
    }

    fn label_universe() -> Vec<(String, String)> {
        [
            ("environment", "prod"),
            ("environment", "dev"),
            ("team", "web"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// Grants over one source, one destination and the labels of [`label_universe`].
    fn arb_labelled_grant() -> impl Strategy<Value = Grant> {
        let target = prop_oneof![
            Just(Target::Source { id: "s0".into() }),
            Just(Target::Destination { id: "d0".into() }),
            prop::sample::select(label_universe())
                .prop_map(|(key, value)| Target::SourceLabel { key, value }),
        ];
        (target, arb_level(), proptest::option::of(-2i64..3)).prop_map(|(target, level, h)| Grant {
            target,
            level,
            expires_at: h.map(|h| now() + chrono::TimeDelta::hours(h)),
        })
    }

    fn arb_labelled_user() -> impl Strategy<Value = User> {
        let group = (
            proptest::option::of(arb_role()),
            prop::collection::vec(arb_labelled_grant(), 0..4),
        )
            .prop_map(|(role, grants)| Group {
                name: "g".into(),
                role,
                grants,
            });
        (
            arb_role(),
            prop::collection::vec(arb_labelled_grant(), 0..4),
            prop::collection::vec(group, 0..3),
        )
            .prop_map(|(role, grants, groups)| User {
                id: "u".into(),
                role,
                active: true,
                grants,
                groups,
                scoped: false,
                elevations: Vec::new(),
            })
    }

    fn every_question<'a>(labels: &'a [(String, String)]) -> Vec<(Action, ResourceRef<'a>)> {
        let mut out = Vec::new();
        for action in Action::ALL {
            out.push((action, ResourceRef::Workspace));
            for n in 0..3 {
                let id: &'static str = ["s0", "s1", "s2"][n];
                let d: &'static str = ["d0", "d1", "d2"][n];
                out.push((action, ResourceRef::Source(SourceRef { id, labels })));
                out.push((
                    action,
                    ResourceRef::Destination(DestinationRef {
                        id: d,
                        connected: &[],
                    }),
                ));
                out.push((
                    action,
                    ResourceRef::Connection(
                        SourceRef { id, labels },
                        DestinationRef {
                            id: d,
                            connected: &[],
                        },
                    ),
                ));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Workspace-wide checks of owners and admins (members, settings, usage,
        /// ownership, tokens, audit) depend on the role alone: no grant changes them.
        #[test]
        fn no_grant_ever_changes_a_role_check(u in arb_user()) {
            let mut bare = u.clone();
            bare.grants.clear();
            for g in &mut bare.groups { g.grants.clear(); }
            for action in Action::ALL.into_iter().filter(|a| a.role_allows(Role::Owner, Settings::default()).is_some()) {
                prop_assert_eq!(allowed(&u, action, ResourceRef::Workspace), allowed(&bare, action, ResourceRef::Workspace), "{:?}", action);
            }
        }

        /// Removing a grant never widens access, except by lifting a restriction that
        /// grant itself made: the design's precedence lets a more specific grant (the
        /// user's own, on the very resource) set a level below what groups or the role
        /// would give, and `no_access` must hide. Any widening must be explained by the
        /// removed grant being the deciding rule, at a lower level than what remains.
        #[test]
        fn removing_a_grant_widens_only_by_lifting_its_own_restriction(
            u in arb_user(), extra in arb_grant(), labelled in any::<bool>(), own in any::<bool>()
        ) {
            let labels = if labelled { vec![("environment".to_owned(), "prod".to_owned())] } else { vec![] };
            let mut with = u.clone();
            if own || with.groups.is_empty() {
                with.grants.push(extra.clone());
            } else {
                with.groups[0].grants.push(extra.clone());
            }
            for (action, resource) in every_question(&labels) {
                let ask = |who: &User| authorize(Principal { user: who, token: None }, action, resource, Settings::default(), now());
                let (before, after) = (ask(&with), ask(&u));
                if after.allowed && !before.allowed {
                    // The rule that refused: the last level check made with the grant.
                    let deciding = before.rules.iter().rev().find_map(|r| match r {
                        Rule::Level { resource, id, level, .. } => Some((*resource, id.clone(), *level)),
                        _ => None,
                    });
                    let Some((kind, id, level)) = deciding else {
                        return Err(TestCaseError::fail(format!("{action:?} on {resource:?}: widened without a level rule")));
                    };
                    prop_assert_eq!(level, extra.level, "{:?} on {:?}: widened, not by {:?}", action, resource, extra);
                    // Without the grant, the same resource gets a higher level.
                    let remaining = after.rules.iter().find_map(|r| match r {
                        Rule::Level { resource, id: other, level, .. } if *resource == kind && *other == id => Some(*level),
                        _ => None,
                    });
                    prop_assert!(remaining.is_some_and(|l| l > extra.level), "{:?} on {:?}", action, resource);
                }
                // Adding `no_access` never widens anything.
                if extra.level == Level::NoAccess {
                    prop_assert!(!before.allowed || after.allowed);
                }
            }
        }

        /// The label rule: whoever is allowed to change a source's labels, unless they are
        /// an owner or admin, changes nobody's level on it: not their own (no raise), not
        /// anyone else's (no restriction lifted, none added), whatever the grants.
        #[test]
        fn a_label_change_by_a_restricted_role_moves_no_ones_level(
            caller in arb_labelled_user(),
            others in prop::collection::vec(arb_labelled_user(), 1..4),
            before in prop::sample::subsequence(label_universe(), 0..=3),
            after in prop::sample::subsequence(label_universe(), 0..=3),
        ) {
            let everyone: Vec<&User> = std::iter::once(&caller).chain(others.iter()).collect();
            let mut governed: Vec<(String, String)> = everyone
                .iter()
                .flat_map(|u| u.grants.iter().chain(u.groups.iter().flat_map(|g| g.grants.iter())))
                .filter_map(|g| match &g.target {
                    Target::SourceLabel { key, value } => Some((key.clone(), value.clone())),
                    _ => None,
                })
                .collect();
            governed.sort();
            governed.dedup();
            let change = LabelChange {
                source: SourceRef { id: "s0", labels: &before },
                after: &after,
                governed: &governed,
            };
            let decision = authorize(
                Principal { user: &caller, token: None },
                Action::ChangeLabels,
                ResourceRef::Labels(change),
                Settings::default(),
                now(),
            );
            if decision.allowed && !caller.effective_role().is_unrestricted() {
                for u in &everyone {
                    let at = |labels: &[(String, String)]| {
                        level(u, &ResourceRef::Source(SourceRef { id: "s0", labels }), now(), &mut Vec::new()).0
                    };
                    prop_assert_eq!(at(&before), at(&after), "{:?}", u);
                }
            }
            // Owners and admins may always (given the level, which they have).
            if caller.effective_role().is_unrestricted() {
                prop_assert!(decision.allowed);
            }
        }

        /// A token never allows what its owner, asking directly, may not do.
        #[test]
        fn a_token_never_exceeds_its_owner(u in arb_user(), scopes in prop::collection::vec(prop::sample::select(Scope::ALL.to_vec()), 0..11)) {
            let token = Token { id: "t".into(), scopes, expires_at: now() + chrono::TimeDelta::days(1), revoked_at: None };
            for (action, resource) in every_question(&[]) {
                let with_token = authorize(Principal { user: &u, token: Some(&token) }, action, resource, Settings::default(), now()).allowed;
                prop_assert!(!with_token || allowed(&u, action, resource), "{:?} on {:?}", action, resource);
            }
        }
    }
}
