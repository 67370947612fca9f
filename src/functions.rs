//! Functions: custom JavaScript run on events, written as Segment documents its
//! functions (`async function onTrack(event, settings) { … return event }`).
//!
//! [`sandbox`] runs one function's code in an engine of its own under limits;
//! [`runner`] runs it in a child process that is killed if it overruns. What
//! calls it (delivery's insert functions, the data listener's source functions) and
//! how functions are kept, versioned and deployed live beside it as they land.

pub mod errors;
pub mod host;
pub mod runner;
pub mod sandbox;

pub use sandbox::{Failure, Handler, Invocation, Limits, LoadError, Outcome, Sandbox};
