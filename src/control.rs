//! The control plane: who may see and change which source, destination and tracking
//! plan (the governance side of Sluice; design in `shared/CONTROL-PLANE.md`).
//!
//! # Layout
//! - [`policy`]: `authorize(principal, action, resource, now) -> Decision`, the only
//!   place that decides. Pure: no I/O, no clock of its own, no role tests anywhere else.
//! - [`audit`]: audit events and their SHA-256 hash chain; `verify` finds any edited,
//!   deleted or reordered event.
//! - [`secret`]: the AEAD key (env or a `0600` key file), sealing destination
//!   credentials at rest, and `Sensitive` strings that never print.
//! - [`token`]: API token format (prefix + checksum), issuing, and checking a presented
//!   one; only SHA-256 digests are stored.
//!
//! # Invariants
//! - Handlers, the console and the CLI ask [`policy::authorize`] and never test roles.
//! - A resource the principal may not see (`no_access`) answers exactly like a missing
//!   one: [`policy::Decision::hidden`] tells the API to say 404, never 403.
//! - A token never does more than its owner may do now: its scopes are intersected
//!   with the owner's current rights at every decision.
//!
//! The store (SQLite / PostgreSQL), the REST API, tokens, audit and the catalog feed are
//! built on this in later steps; see the closing notes of the control-plane issue.

pub mod api;
pub mod audit;
pub mod bootstrap;
pub mod feed;
pub mod policy;
pub mod secret;
pub mod store;
pub mod token;
