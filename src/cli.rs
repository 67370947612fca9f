//! The `sluice` binary's subcommands other than `serve`, one file per family. These
//! modules belong to the binary (declared in `main.rs`), not to the library: they only
//! parse arguments, call into the library and print.

pub mod admin;
pub mod dev;
pub mod dlq;
pub mod log;
