//! The control plane: who may see and change which source, destination and tracking
//! plan (the governance side of Sluice; design in `shared/CONTROL-PLANE.md`).
//!
//! # Layout
//! - [`policy`]: `authorize(principal, action, resource, now) -> Decision`, the only
//!   place that decides. Pure: no I/O, no clock of its own, no role tests anywhere else.
//! - [`audit`]: audit events and their SHA-256 hash chain; `verify` finds any edited,
//!   deleted or reordered event.
//! - [`audit_stream`]: the chain appended to a file outside the database as it commits,
//!   and checked against the database.
//! - [`secret`]: the AEAD key (env or a `0600` key file), sealing destination
//!   credentials at rest, and `Sensitive` strings that never print.
//! - [`token`]: API token format (prefix + checksum), issuing, and checking a presented
//!   one; only SHA-256 digests are stored.
//! - [`store`]: the only code that speaks SQL (sqlx; SQLite or PostgreSQL, one code
//!   path); a change and its audit event(s) commit in one transaction.
//! - [`api`]: the REST API `/api/v1` (axum), setup links, the remote gateways' feed;
//!   one file per resource family, one error type answered as Segment's envelope.
//! - [`feed`]: the published catalog: one export per catalog revision, read by the
//!   in-process gateway (its `CatalogSource`) and the remote gateways' long polls.
//! - [`explain`]: a decision as the API takes it, for `/access/explain` and the CLI.
//! - [`plan_diff`]: a tracking-plan change rule by rule and field by field, and the
//!   three-way rebase of a change request onto a newer published version.
//! - [`usage`]: gateways' usage reports booked into the store, the month's standing back.
//! - [`bootstrap`]: first start (workspace `default`, catalog import, setup link) and
//!   `sluice admin bootstrap`.
//!
//! # Invariants
//! - Handlers, the console and the CLI ask [`policy::authorize`] and never test roles.
//! - A resource the principal may not see (`no_access`) answers exactly like a missing
//!   one: [`policy::Decision::hidden`] tells the API to say 404, never 403. List queries
//!   filter hidden rows in SQL (the policy still decides each row that comes back).
//! - A token never does more than its owner may do now: its scopes are intersected
//!   with the owner's current rights at every decision.
//! - Every change commits together with its audit event; the chain's head row is taken
//!   first, so writers queue on it and the chain has no gaps.
//! - Only write-key digests leave the control plane; destination settings are sealed at
//!   rest and redacted on every read.
//!
//! `control` depends on `catalog`, `config`, `telemetry` and `protocols`, never on
//! `gateway`, `delivery` or `log`; only `serve` (via [`crate::catalog_origin`]) and the CLI use it.

pub mod api;
pub mod audit;
pub mod audit_stream;
pub mod bootstrap;
pub mod console;
pub mod explain;
pub mod feed;
pub mod identity;
pub mod plan_diff;
pub mod policy;
pub mod secret;
pub mod store;
pub mod suppression;
pub mod token;
pub mod usage;
