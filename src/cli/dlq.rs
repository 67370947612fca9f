//! `sluice dlq …`: the dead-letter store from the shell (replay asks the running server).

use anyhow::Context as _;
use clap::Subcommand;

use sluice::config::Config;

/// `sluice dlq`.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// Dead letters per destination, or one destination's entries as NDJSON.
    List {
        /// Print this destination's entries.
        destination: Option<String>,
    },
    /// Send a destination's dead letters again (asks the running server's admin listener).
    Replay {
        /// Destination id.
        destination: String,
    },
}

/// Runs `sluice dlq …`.
pub fn run(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    let dir = sluice::delivery::dead_letter_dir(&config.log.dir);
    match command {
        DlqCommand::List { destination: None } => {
            let list = sluice::delivery::dead_letter::list(&dir)?;
            if list.is_empty() {
                println!("no dead letters in {}", dir.display());
            }
            for s in list {
                if s.unreadable > 0 {
                    println!(
                        "{}\t{}\t({} unreadable lines kept in the file)",
                        s.destination, s.entries, s.unreadable
                    );
                } else {
                    println!("{}\t{}", s.destination, s.entries);
                }
            }
        }
        DlqCommand::List {
            destination: Some(id),
        } => {
            let contents = sluice::delivery::dead_letter::read(&dir, &id)?;
            for e in contents.entries {
                println!("{}", serde_json::to_string(&e)?);
            }
            for line in &contents.unreadable {
                eprintln!("unreadable (kept in the file): {line}");
            }
        }
        DlqCommand::Replay { destination } => {
            let url = format!(
                "http://{}/dlq/{destination}/replay",
                config.server.admin_listen
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let text = runtime.block_on(async {
                let mut request = reqwest::Client::new().post(&url);
                if let Some(token) = &config.server.admin_token {
                    request = request.bearer_auth(token.expose());
                }
                let response = request.send().await.with_context(|| {
                    format!("asking the running server at {url} (is it running?)")
                })?;
                let status = response.status();
                let text = response.text().await?;
                anyhow::ensure!(status.is_success(), "replay refused ({status}): {text}");
                Ok::<_, anyhow::Error>(text)
            })?;
            println!("{text}");
        }
    }
    Ok(())
}
