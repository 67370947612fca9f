//! `sluice log …` and `sluice blocked …`: reading the event log from the shell.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use sluice::config::Config;

/// `sluice log`.
#[derive(Subcommand)]
pub enum LogCommand {
    /// Print the newest stored events as pretty JSON.
    Tail {
        /// How many of the newest events.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// Keep printing events as they arrive.
        #[arg(short, long)]
        follow: bool,
        /// One compact JSON object per line (for scripts) instead of pretty JSON.
        #[arg(long)]
        ndjson: bool,
    },
    /// Print segment, record and byte counts as JSON.
    Stats,
}

/// `sluice blocked`.
#[derive(Subcommand)]
pub enum BlockedCommand {
    /// Print blocked events (NDJSON: `{"offset", "record"}`, the record as stored: its
    /// source, why it was blocked and the event).
    List {
        /// Only this source's.
        #[arg(long)]
        source: Option<String>,
        /// At most this many of the newest.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
}

/// Runs `sluice log …`.
pub fn run(config: &Config, command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Tail {
            lines,
            follow,
            ndjson,
        } => tail(config, lines, follow, ndjson),
        LogCommand::Stats => {
            let stats = sluice::log::stats(&config.log.dir)
                .with_context(|| format!("reading {}", config.log.dir.display()))?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(())
        }
    }
}

/// Runs `sluice blocked …`.
pub fn run_blocked(config: &Config, command: BlockedCommand) -> anyhow::Result<()> {
    let BlockedCommand::List { source, lines } = command;
    blocked(config, source.as_deref(), lines)
}

fn blocked(config: &Config, source: Option<&str>, lines: usize) -> anyhow::Result<()> {
    let mut found = std::collections::VecDeque::new();
    for item in sluice::log::Reader::open(&config.log.dir, 0)? {
        let (offset, payload) = item?;
        let Ok(record) = sluice::record::Stored::read(&payload) else {
            continue;
        };
        if !record.is_blocked() || source.is_some_and(|s| record.source_id != s) {
            continue;
        }
        found.push_back(serde_json::json!({"offset": offset, "record": record}));
        if found.len() > lines {
            found.pop_front();
        }
    }
    for entry in found {
        println!("{entry}");
    }
    Ok(())
}

fn tail(config: &Config, lines: u64, follow: bool, ndjson: bool) -> anyhow::Result<()> {
    let dir = &config.log.dir;
    let stats = sluice::log::stats(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut from = stats
        .next_offset
        .saturating_sub(lines)
        .max(stats.first_offset);
    let stdout = std::io::stdout();
    loop {
        let reader = sluice::log::Reader::open(dir, from)?;
        for item in reader {
            let (offset, payload) = item?;
            let entry = match serde_json::from_slice::<serde_json::Value>(&payload) {
                Ok(record) => serde_json::json!({"offset": offset, "record": record}),
                Err(_) => serde_json::json!({"offset": offset, "undecodable": true}),
            };
            let text = if ndjson {
                serde_json::to_string(&entry)?
            } else {
                serde_json::to_string_pretty(&entry)?
            };
            let mut out = stdout.lock();
            writeln!(out, "{text}")?;
            from = offset + 1;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
