//! The audit trail: append-only events linked by a keyed hash chain.
//!
//! Each event's `hash` is HMAC-SHA256, under a [`ChainKey`] derived from Sluice's secret
//! key (which lives outside the database), over the previous event's hash and the
//! event's own fields in a fixed, length-prefixed encoding. [`verify`] recomputes the
//! chain: an edited row changes its hash, a deleted or reordered row breaks the link to
//! the next, and someone who can write the database but lacks the key cannot forge a
//! chain that verifies. Events written before chains were keyed carry plain SHA-256
//! (`keyed: false`); once a keyed event appears, every later one must be keyed.
//! (A truncated or wholly rewritten tail needs an anchor outside the table: the store
//! keeps the head in a separate row and, where configured, checkpoints it to a file
//! outside the database; `sluice admin audit verify` checks both.)
//!
//! Secrets never enter an event: `before`/`after` are written by callers from types
//! whose `Serialize` redacts them.

use chrono::{DateTime, Utc};
use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The key of the audit chain's MACs (derived from the secret key; never stored in the
/// database).
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(redacted)")
    }
}

impl ChainKey {
    /// The chain key derived from 32 secret bytes (HMAC-SHA256 with a fixed label, so it
    /// is independent of every other use of those bytes).
    pub fn derive(secret: &[u8; 32]) -> Self {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"sluice audit chain v1");
        Self(mac.finalize().into_bytes().into())
    }
}

/// What an audit event records: every kind named once, here (the stored `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `catalog.import`
    CatalogImport,
    /// `destination.create`
    DestinationCreate,
    /// `destination.credentials.reveal`
    DestinationCredentialsReveal,
    /// `destination.delete`
    DestinationDelete,
    /// `destination.update`
    DestinationUpdate,
    /// `function.create`
    FunctionCreate,
    /// `function.update`
    FunctionUpdate,
    /// `function.delete`
    FunctionDelete,
    /// `function.deploy`
    FunctionDeploy,
    /// `function.version.restore`
    FunctionRestore,
    /// `function_instance.create`
    FunctionInstanceCreate,
    /// `function_instance.update`
    FunctionInstanceUpdate,
    /// `function_instance.delete`
    FunctionInstanceDelete,
    /// `source.function.put`
    SourceFunctionPut,
    /// `source.function.secret.rotate`
    SourceFunctionSecretRotate,
    /// `source.function.delete`
    SourceFunctionDelete,
    /// `grant.create`
    GrantCreate,
    /// `grant.delete`
    GrantDelete,
    /// `group.create`
    GroupCreate,
    /// `group.delete`
    GroupDelete,
    /// `group.invite.add`
    GroupInviteAdd,
    /// `group.member.add`
    GroupMemberAdd,
    /// `group.member.remove`
    GroupMemberRemove,
    /// `group.permissions.add`
    GroupPermissionsAdd,
    /// `group.permissions.replace`
    GroupPermissionsReplace,
    /// `group.update`
    GroupUpdate,
    /// `invite.create`
    InviteCreate,
    /// `invite.delete`
    InviteDelete,
    /// `label.create`
    LabelCreate,
    /// `label.delete`
    LabelDelete,
    /// `node.create`
    NodeCreate,
    /// `node.revoke`
    NodeRevoke,
    /// `owner.recover`
    OwnerRecover,
    /// `session.create`: a person signed in.
    SessionCreate,
    /// `session.revoke`: a person signed out (or their sessions were ended).
    SessionRevoke,
    /// `session.refused`: a sign-in with a wrong email or password.
    SessionRefused,
    /// `user.password.set`
    UserPasswordSet,
    /// A password reset link made for a member.
    PasswordResetCreate,
    /// A password set through a reset link.
    PasswordReset,
    /// An authenticator app enrolled (not on until confirmed).
    TotpEnrol,
    /// An authenticator app confirmed: sign-in asks for its codes.
    TotpConfirm,
    /// An authenticator app turned off.
    TotpDisable,
    /// A single sign-on connection made.
    SsoConnectionCreate,
    /// A single sign-on connection changed.
    SsoConnectionUpdate,
    /// A single sign-on connection deleted.
    SsoConnectionDelete,
    /// A test sign-in through a connection started.
    SsoConnectionTest,
    /// The workspace's sign-in policy changed.
    SignInPolicyUpdate,
    /// An owner made (or unmade) a break-glass owner.
    BreakGlassUpdate,
    /// `setup_link.create`
    SetupLinkCreate,
    /// `setup_link.refused`
    SetupLinkRefused,
    /// `source.create`
    SourceCreate,
    /// `source.delete`
    SourceDelete,
    /// `source.labels.update`
    SourceLabelsUpdate,
    /// `source.settings.update`
    SourceSettingsUpdate,
    /// `source.update`
    SourceUpdate,
    /// `source.writekey.create`
    SourceWritekeyCreate,
    /// `source.writekey.revoke`
    SourceWritekeyRevoke,
    /// `token.create`
    TokenCreate,
    /// `token.revoke`
    TokenRevoke,
    /// `token.rotate`
    TokenRotate,
    /// `change_request.create`: rules proposed for review.
    ChangeRequestCreate,
    /// `change_request.update`: a proposal amended or rebased by its author.
    ChangeRequestUpdate,
    /// `change_request.approve`: approved and published.
    ChangeRequestApprove,
    /// `change_request.reject`
    ChangeRequestReject,
    /// `change_request.withdraw`
    ChangeRequestWithdraw,
    /// `quota.update`: a monthly event quota set or removed (workspace or source).
    QuotaUpdate,
    /// `resource_change.create`: a change to a protected source or destination proposed.
    ResourceChangeCreate,
    /// `resource_change.approve`: approved and applied (the change's own event follows).
    ResourceChangeApprove,
    /// `resource_change.reject`
    ResourceChangeReject,
    /// `resource_change.withdraw`
    ResourceChangeWithdraw,
    /// `settings.protected_labels`: the labels that protect sources changed.
    ProtectedLabelsUpdate,
    /// `elevation.request`: temporary access asked for.
    ElevationRequest,
    /// `elevation.approve`: its window opens.
    ElevationApprove,
    /// `elevation.deny`
    ElevationDeny,
    /// `elevation.end`: cancelled before a decision, or ended before its window closed.
    ElevationEnd,
    /// `access_review.open`: a campaign and its items.
    AccessReviewOpen,
    /// `access_review.decide`: one item kept, revoked or changed.
    AccessReviewDecide,
    /// `access_review.close`: every item decided; the evidence record.
    AccessReviewClose,
    /// `tracking_plan.create`
    TrackingPlanCreate,
    /// `tracking_plan.delete`
    TrackingPlanDelete,
    /// `tracking_plan.publish`
    TrackingPlanPublish,
    /// `tracking_plan.source.connect`
    TrackingPlanSourceConnect,
    /// `tracking_plan.source.disconnect`
    TrackingPlanSourceDisconnect,
    /// `tracking_plan.update`
    TrackingPlanUpdate,
    /// `user.bootstrap`
    UserBootstrap,
    /// `user.provision`: an identity provider created a member (SCIM).
    UserProvision,
    /// `user.provision.update`: an identity provider changed a member (SCIM).
    UserProvisionUpdate,
    /// `user.deactivate`: a member deactivated in place (SCIM `active: false`).
    UserDeactivate,
    /// `user.reactivate`: a deactivated member back, `read_only` with nothing else.
    UserReactivate,
    /// `scim_token.create`
    ScimTokenCreate,
    /// `scim_token.revoke`
    ScimTokenRevoke,
    /// `group_mapping.set`: an identity-provider group mapped to a role.
    GroupMappingSet,
    /// `group_mapping.delete`
    GroupMappingDelete,
    /// `user.permissions.add`
    UserPermissionsAdd,
    /// `user.permissions.replace`
    UserPermissionsReplace,
    /// `user.remove`
    UserRemove,
    /// `user.offboard`: a member offboarded, with the removal record's report.
    UserOffboard,
    /// `offboarding.rotate_write_keys`: the keys a leaver could read, rotated.
    OffboardingRotateWriteKeys,
    /// `user.role.update`
    UserRoleUpdate,
    /// `user.setup`
    UserSetup,
    /// `user.invite`
    UserInvite,
    /// `workspace.create`
    WorkspaceCreate,
    /// `workspace.settings.update`
    WorkspaceSettingsUpdate,
    /// `regulation.create`: users suppressed or unsuppressed.
    RegulationCreate,
    /// `regulation.delete`: a regulation deleted (it lifts nothing).
    RegulationDelete,
    /// `source.consent.update`: what a source's events without consent preferences do.
    SourceConsentUpdate,
    /// `destination.consent.update`: a destination's consent categories.
    DestinationConsentUpdate,
    /// `source.pii.update`: the paths a source's events have dropped, hashed or masked.
    SourcePiiUpdate,
    /// `access.denied.<action>`: a refused change.
    AccessDenied(crate::control::policy::Action),
}

impl Kind {
    /// The name stored in the event's `action` (e.g. `source.create`).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let fixed = match self {
            Self::CatalogImport => "catalog.import",
            Self::DestinationCreate => "destination.create",
            Self::DestinationCredentialsReveal => "destination.credentials.reveal",
            Self::DestinationDelete => "destination.delete",
            Self::DestinationUpdate => "destination.update",
            Self::FunctionCreate => "function.create",
            Self::FunctionUpdate => "function.update",
            Self::FunctionDelete => "function.delete",
            Self::FunctionDeploy => "function.deploy",
            Self::FunctionRestore => "function.version.restore",
            Self::FunctionInstanceCreate => "function_instance.create",
            Self::FunctionInstanceUpdate => "function_instance.update",
            Self::FunctionInstanceDelete => "function_instance.delete",
            Self::SourceFunctionPut => "source.function.put",
            Self::SourceFunctionSecretRotate => "source.function.secret.rotate",
            Self::SourceFunctionDelete => "source.function.delete",
            Self::GrantCreate => "grant.create",
            Self::GrantDelete => "grant.delete",
            Self::GroupCreate => "group.create",
            Self::GroupDelete => "group.delete",
            Self::GroupInviteAdd => "group.invite.add",
            Self::GroupMemberAdd => "group.member.add",
            Self::GroupMemberRemove => "group.member.remove",
            Self::GroupPermissionsAdd => "group.permissions.add",
            Self::GroupPermissionsReplace => "group.permissions.replace",
            Self::GroupUpdate => "group.update",
            Self::InviteCreate => "invite.create",
            Self::InviteDelete => "invite.delete",
            Self::RegulationCreate => "regulation.create",
            Self::RegulationDelete => "regulation.delete",
            Self::SourceConsentUpdate => "source.consent.update",
            Self::DestinationConsentUpdate => "destination.consent.update",
            Self::SourcePiiUpdate => "source.pii.update",
            Self::LabelCreate => "label.create",
            Self::LabelDelete => "label.delete",
            Self::NodeCreate => "node.create",
            Self::NodeRevoke => "node.revoke",
            Self::OwnerRecover => "owner.recover",
            Self::SessionCreate => "session.create",
            Self::SessionRevoke => "session.revoke",
            Self::SessionRefused => "session.refused",
            Self::UserPasswordSet => "user.password.set",
            Self::PasswordResetCreate => "user.password_reset.create",
            Self::PasswordReset => "user.password.reset",
            Self::TotpEnrol => "user.totp.enrol",
            Self::TotpConfirm => "user.totp.confirm",
            Self::TotpDisable => "user.totp.disable",
            Self::SsoConnectionCreate => "sso_connection.create",
            Self::SsoConnectionUpdate => "sso_connection.update",
            Self::SsoConnectionDelete => "sso_connection.delete",
            Self::SsoConnectionTest => "sso_connection.test",
            Self::SignInPolicyUpdate => "workspace.sign_in.update",
            Self::BreakGlassUpdate => "user.break_glass.update",
            Self::SetupLinkCreate => "setup_link.create",
            Self::SetupLinkRefused => "setup_link.refused",
            Self::SourceCreate => "source.create",
            Self::SourceDelete => "source.delete",
            Self::SourceLabelsUpdate => "source.labels.update",
            Self::SourceSettingsUpdate => "source.settings.update",
            Self::SourceUpdate => "source.update",
            Self::SourceWritekeyCreate => "source.writekey.create",
            Self::SourceWritekeyRevoke => "source.writekey.revoke",
            Self::TokenCreate => "token.create",
            Self::TokenRevoke => "token.revoke",
            Self::TokenRotate => "token.rotate",
            Self::ChangeRequestCreate => "change_request.create",
            Self::ChangeRequestUpdate => "change_request.update",
            Self::ChangeRequestApprove => "change_request.approve",
            Self::ChangeRequestReject => "change_request.reject",
            Self::ChangeRequestWithdraw => "change_request.withdraw",
            Self::QuotaUpdate => "quota.update",
            Self::ResourceChangeCreate => "resource_change.create",
            Self::ResourceChangeApprove => "resource_change.approve",
            Self::ResourceChangeReject => "resource_change.reject",
            Self::ResourceChangeWithdraw => "resource_change.withdraw",
            Self::ProtectedLabelsUpdate => "settings.protected_labels",
            Self::ElevationRequest => "elevation.request",
            Self::ElevationApprove => "elevation.approve",
            Self::ElevationDeny => "elevation.deny",
            Self::ElevationEnd => "elevation.end",
            Self::AccessReviewOpen => "access_review.open",
            Self::AccessReviewDecide => "access_review.decide",
            Self::AccessReviewClose => "access_review.close",
            Self::TrackingPlanCreate => "tracking_plan.create",
            Self::TrackingPlanDelete => "tracking_plan.delete",
            Self::TrackingPlanPublish => "tracking_plan.publish",
            Self::TrackingPlanSourceConnect => "tracking_plan.source.connect",
            Self::TrackingPlanSourceDisconnect => "tracking_plan.source.disconnect",
            Self::TrackingPlanUpdate => "tracking_plan.update",
            Self::UserBootstrap => "user.bootstrap",
            Self::UserProvision => "user.provision",
            Self::UserProvisionUpdate => "user.provision.update",
            Self::UserDeactivate => "user.deactivate",
            Self::UserReactivate => "user.reactivate",
            Self::ScimTokenCreate => "scim_token.create",
            Self::ScimTokenRevoke => "scim_token.revoke",
            Self::GroupMappingSet => "group_mapping.set",
            Self::GroupMappingDelete => "group_mapping.delete",
            Self::UserPermissionsAdd => "user.permissions.add",
            Self::UserPermissionsReplace => "user.permissions.replace",
            Self::UserRemove => "user.remove",
            Self::UserOffboard => "user.offboard",
            Self::OffboardingRotateWriteKeys => "offboarding.rotate_write_keys",
            Self::UserRoleUpdate => "user.role.update",
            Self::UserSetup => "user.setup",
            Self::UserInvite => "user.invite",
            Self::WorkspaceCreate => "workspace.create",
            Self::WorkspaceSettingsUpdate => "workspace.settings.update",
            Self::AccessDenied(action) => {
                return std::borrow::Cow::Owned(format!("access.denied.{}", action.name()));
            }
        };
        std::borrow::Cow::Borrowed(fixed)
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A user in the console.
    User {
        /// User id.
        id: String,
        /// Their elevations live at the time: everything they did in a window names it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        elevations: Vec<String>,
    },
    /// A user through one of their tokens.
    Token {
        /// Token id.
        id: String,
        /// Its owner.
        user: String,
        /// Their elevations live at the time.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        elevations: Vec<String>,
    },
    /// SCIM provisioning, through one of the workspace's SCIM tokens.
    Scim {
        /// SCIM token id.
        token: String,
    },
    /// Single sign-on.
    Sso,
    /// Sluice itself (bootstrap, expiry).
    System,
}

/// What happened, before it is linked into the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// When.
    pub time: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// What (`source.create`, `write_key.revoke`, `access.denied`…).
    pub action: String,
    /// Kind of resource (`source`, `destination`, `user`…).
    pub resource_type: String,
    /// Its id.
    pub resource_id: String,
    /// State before (secrets redacted), if any.
    pub before: Option<serde_json::Value>,
    /// State after (secrets redacted), if any.
    pub after: Option<serde_json::Value>,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
}

/// One audited change or refusal, linked into the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub what: Draft,
    /// The previous event's hash.
    #[serde(with = "hex")]
    pub prev_hash: [u8; 32],
    /// This event's hash.
    #[serde(with = "hex")]
    pub hash: [u8; 32],
    /// Whether `hash` is a MAC under the [`ChainKey`] (false: plain SHA-256, events
    /// written before chains were keyed).
    #[serde(default)]
    pub keyed: bool,
}

impl Draft {
    /// Links the draft after the event whose hash is `prev_hash` (or the genesis) as
    /// event `seq`, its hash a MAC under `key`.
    pub fn seal(self, seq: u64, prev_hash: [u8; 32], key: &ChainKey) -> Event {
        let mut event = Event {
            seq,
            what: self,
            prev_hash,
            hash: [0; 32],
            keyed: true,
        };
        event.hash = mac(&event, key);
        event
    }
}

/// The MAC of a keyed event: HMAC-SHA256 under `key` over the event's encoding.
pub fn mac(e: &Event, key: &ChainKey) -> [u8; 32] {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(&key.0)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    encode(e, &mut |bytes| m.update(bytes));
    m.finalize().into_bytes().into()
}

/// The hash of an unkeyed event (written before chains were keyed): SHA-256 over
/// the event's encoding.
pub fn hash(e: &Event) -> [u8; 32] {
    let mut h = Sha256::new();
    encode(e, &mut |bytes| h.update(bytes));
    h.finalize().into()
}

/// The previous hash and every field of `e`, each length-prefixed so no two different
/// events encode alike, fed to `sink`.
fn encode(e: &Event, sink: &mut dyn FnMut(&[u8])) {
    let mut field = |bytes: &[u8]| {
        sink(&(bytes.len() as u64).to_le_bytes());
        sink(bytes);
    };
    let w = &e.what;
    field(&e.prev_hash);
    field(&e.seq.to_le_bytes());
    field(
        w.time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .as_bytes(),
    );
    field(
        serde_json::to_string(&w.actor)
            .unwrap_or_default()
            .as_bytes(),
    );
    field(w.action.as_bytes());
    field(w.resource_type.as_bytes());
    field(w.resource_id.as_bytes());
    for json in [&w.before, &w.after] {
        field(
            json.as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    for text in [&w.ip, &w.user_agent] {
        field(text.as_deref().unwrap_or_default().as_bytes());
    }
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The event's fields no longer give its hash: it was edited.
    #[error("audit event {seq} was altered (its hash does not match its contents)")]
    Altered {
        /// Its sequence number.
        seq: u64,
    },
    /// The event does not follow the one before: one was deleted, inserted or moved.
    #[error("audit chain broken before event {seq} (an event was removed, inserted or reordered)")]
    Unlinked {
        /// The first event that does not link.
        seq: u64,
    },
    /// An unkeyed event after a keyed one: the chain was rewritten without the key.
    #[error("audit event {seq} is not keyed though earlier ones are (the chain was rewritten)")]
    Downgraded {
        /// Its sequence number.
        seq: u64,
    },
    /// The chain does not hold the head checkpointed outside the database.
    #[error(
        "audit event {seq} is not the one checkpointed outside the database (the chain was rewritten or cut)"
    )]
    Checkpoint {
        /// The checkpointed sequence number.
        seq: u64,
    },
    /// The chain ends before its recorded head: events at the end were deleted.
    #[error(
        "audit chain ends at event {found} but its head records {expected} (events were deleted)"
    )]
    Truncated {
        /// The head's sequence number.
        expected: u64,
        /// The last event found.
        found: u64,
    },
}

/// Checks a whole chain, in sequence order, from the genesis, keyed events under `key`.
pub fn verify(events: &[Event], key: &ChainKey) -> Result<(), Broken> {
    let mut prev = GENESIS;
    let mut keyed = false;
    for (i, e) in events.iter().enumerate() {
        if e.prev_hash != prev || e.seq != i as u64 + 1 {
            return Err(Broken::Unlinked { seq: e.seq });
        }
        if keyed && !e.keyed {
            return Err(Broken::Downgraded { seq: e.seq });
        }
        keyed = e.keyed;
        let expected = if e.keyed { mac(e, key) } else { hash(e) };
        // Constant time: the expected MAC is a secret-derived value.
        if !constant_time_eq(&expected, &e.hash) {
            return Err(Broken::Altered { seq: e.seq });
        }
        prev = e.hash;
    }
    Ok(())
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChainKey {
        ChainKey::derive(&[7; 32])
    }

    fn chain(n: usize) -> Vec<Event> {
        let mut events: Vec<Event> = Vec::new();
        for i in 0..n {
            let prev = events.last().map_or(GENESIS, |e| e.hash);
            let draft = Draft {
                time: DateTime::from_timestamp(1_800_000_000 + i as i64, 0).expect("time"),
                actor: Actor::User {
                    id: "u1".into(),
                    elevations: Vec::new(),
                },
                action: "source.update".into(),
                resource_type: "source".into(),
                resource_id: format!("s{i}"),
                before: Some(serde_json::json!({"enabled": true})),
                after: Some(serde_json::json!({"enabled": false})),
                ip: Some("203.0.113.9".into()),
                user_agent: None,
            };
            events.push(draft.seal(i as u64 + 1, prev, &key()));
        }
        events
    }

    #[test]
    fn an_intact_chain_verifies_and_round_trips() {
        let events = chain(5);
        assert_eq!(verify(&events, &key()), Ok(()));
        let json = serde_json::to_string(&events).expect("json");
        let back: Vec<Event> = serde_json::from_str(&json).expect("parse");
        assert_eq!(verify(&back, &key()), Ok(()));
    }

    #[test]
    fn any_edit_deletion_or_reordering_is_found() {
        let events = chain(5);
        let mut edited = events.clone();
        edited[2].what.after = Some(serde_json::json!({"enabled": true}));
        assert_eq!(verify(&edited, &key()), Err(Broken::Altered { seq: 3 }));
        let mut actor = events.clone();
        actor[1].what.actor = Actor::System;
        assert_eq!(verify(&actor, &key()), Err(Broken::Altered { seq: 2 }));
        let mut deleted = events.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted, &key()), Err(Broken::Unlinked { seq: 3 }));
        let mut swapped = events.clone();
        swapped.swap(3, 4);
        assert_eq!(verify(&swapped, &key()), Err(Broken::Unlinked { seq: 5 }));
        // Re-hashing an edited row does not help: the next one no longer links.
        let mut rehashed = events.clone();
        rehashed[2].what.resource_id = "other".into();
        rehashed[2].hash = mac(&rehashed[2], &key());
        assert_eq!(verify(&rehashed, &key()), Err(Broken::Unlinked { seq: 4 }));
    }

    #[test]
    fn without_the_key_no_rewrite_verifies() {
        let events = chain(4);
        // Someone who can write the database rewrites an actor and re-links every
        // later event, but has no key: plain SHA-256 in place of the MACs.
        let mut forged = events.clone();
        forged[1].what.actor = Actor::System;
        for i in 1..forged.len() {
            forged[i].prev_hash = forged[i - 1].hash;
            forged[i].hash = hash(&forged[i]);
        }
        assert_eq!(verify(&forged, &key()), Err(Broken::Altered { seq: 2 }));
        // Marking the rewritten events unkeyed is a downgrade.
        for e in &mut forged[1..] {
            e.keyed = false;
        }
        assert_eq!(verify(&forged, &key()), Err(Broken::Downgraded { seq: 2 }));
        // Another key does not verify either.
        assert_eq!(
            verify(&events, &ChainKey::derive(&[8; 32])),
            Err(Broken::Altered { seq: 1 })
        );
        // Chains written before keying still verify, and may turn keyed.
        let mut legacy = events;
        legacy[0].keyed = false;
        legacy[0].hash = hash(&legacy[0]);
        for i in 1..legacy.len() {
            legacy[i].prev_hash = legacy[i - 1].hash;
            legacy[i].hash = mac(&legacy[i], &key());
        }
        assert_eq!(verify(&legacy, &key()), Ok(()));
    }
}
