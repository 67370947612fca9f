//! Functions: custom JavaScript run on events, written as Segment documents its
//! functions (`async function onTrack(event, settings) { … return event }`).
//!
//! [`sandbox`] runs one function's code in an engine of its own under limits, its
//! `fetch` in [`fetch`]; [`host`] runs it in a child process that a watchdog kills if it
//! overruns, for delivery's insert functions, the data listener's source functions and
//! the control plane's test runs. [`errors`] keeps the failed runs, and [`report`] sends
//! a remote node's to its control plane.

pub mod errors;
pub mod fetch;
pub mod host;
pub mod report;
pub mod sandbox;

pub use fetch::FetchLimits;
pub use sandbox::{Failure, Handler, Invocation, Limits, LoadError, Outcome, Sandbox};
