//! Load generator, physical-limit baselines and the compare command for Sluice.
//!
//! # Layout
//! - [`payload`]: SDK-shaped request bodies.
//! - [`generator`]: closed- and open-loop load with HdrHistogram latency.
//! - [`report`]: results as text and JSON.
//! - [`baseline`]: bare hyper servers (with and without simd-json parsing).
//! - [`probe`]: the disk's fsync latency.
//! - [`compare`]: baselines and Sluice configurations back to back, medians and ratios.

pub mod baseline;
pub mod compare;
pub mod generator;
pub mod jetstream_baseline;
pub mod payload;
pub mod probe;
pub mod report;
