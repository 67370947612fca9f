//! `sluice admin …`: the control plane from a shell.
//!
//! Operator commands (`bootstrap`, `import`, `export`, `explain`, `audit verify`) open the
//! store the configuration names, on this host; the others call the REST API with the
//! token in `SLUICE_TOKEN`, like any client.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::Subcommand;
use serde_json::{Value, json};

use sluice::config::Config;
use sluice::control::audit::{Actor, Draft};
use sluice::control::bootstrap;
use sluice::control::policy::{self, Action, DestinationRef, ResourceRef};
use sluice::control::store::{self, Store, catalog, users, workspaces};

/// `sluice admin`.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Make the first owner of workspace `default` and print their API token (once).
    Bootstrap {
        /// The owner's email.
        #[arg(long)]
        email: String,
    },
    /// Add a catalog file's sources, keys (as digests), destinations and plans to a workspace.
    Import {
        /// The catalog file (TOML, as `config/catalog.toml`).
        file: PathBuf,
        /// Workspace slug.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Print a workspace as a catalog file (write keys as SHA-256 digests).
    Export {
        /// Workspace slug.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Explain whether a user may do an action, with every rule that decided it.
    Explain {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// The action, e.g. `edit_source`, `manage_write_keys`, `view_destination`.
        #[arg(long)]
        action: String,
        /// A source id.
        #[arg(long, conflicts_with = "destination")]
        source: Option<String>,
        /// A destination id.
        #[arg(long)]
        destination: Option<String>,
        /// Workspace slug.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Call the REST API: `sluice admin api POST /sources --data '{"slug":"web"}'`.
    Api {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// Path under `/api/v1`, e.g. `/sources`.
        path: String,
        /// JSON body.
        #[arg(long)]
        data: Option<String>,
        /// Base URL [default: control.public_url].
        #[arg(long, env = "SLUICE_URL")]
        url: Option<String>,
    },
}

/// `sluice admin audit`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exits 1 and names the first bad event if any row was
    /// edited, deleted or reordered.
    Verify,
}

/// Runs `sluice admin …`.
pub fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if let AdminCommand::Api {
            method,
            path,
            data,
            url,
        } = command
        {
            let url = url.unwrap_or_else(|| config.control.public_url());
            return api(&url, &method, &path, data.as_deref()).await;
        }
        let store = sluice::feed::open_store(config)
            .await
            .context("opening the control-plane store")?;
        let result = operator(&store, command).await;
        store.close().await;
        result
    })
}

async fn operator(store: &Store, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Bootstrap { email } => {
            let (user, token) = bootstrap::owner(store, &email, Utc::now()).await?;
            eprintln!(
                "owner {} created; their API token (shown once, valid {} days):",
                user.email,
                bootstrap::BOOTSTRAP_TOKEN_DAYS
            );
            println!("{}", token.expose());
        }
        AdminCommand::Import { file, workspace } => {
            let doc = bootstrap::read_catalog(&file)?;
            let ws = workspace_by_slug(store, &workspace).await?;
            let now = Utc::now();
            let mut change = store.change().await?;
            let done = catalog::import(change.conn(), store.key(), &ws.id, &doc, now).await?;
            change
                .record(Draft {
                    time: now,
                    actor: Actor::System,
                    action: "catalog.import".into(),
                    resource_type: "workspace".into(),
                    resource_id: ws.id.clone(),
                    before: None,
                    after: Some(json!({"file": file.display().to_string(), "sources": done.sources,
                        "writeKeys": done.keys, "destinations": done.destinations, "trackingPlans": done.plans})),
                    ip: None,
                    user_agent: Some("sluice admin import".into()),
                })
                .await?;
            change.commit().await?;
            eprintln!(
                "imported {} sources, {} write keys, {} destinations, {} tracking plans into {workspace}",
                done.sources, done.keys, done.destinations, done.plans
            );
        }
        AdminCommand::Export { workspace } => {
            let ws = workspace_by_slug(store, &workspace).await?;
            let mut conn = store.read().await?;
            let doc = catalog::export(&mut conn, store.key(), &ws.id).await?;
            println!(
                "# Sluice catalog exported from workspace {workspace} at {}",
                Utc::now()
            );
            println!("# Write keys are SHA-256 digests; destination settings include credentials.");
            print!("{}", toml::to_string(&doc).context("writing TOML")?);
        }
        AdminCommand::Explain {
            email,
            action,
            source,
            destination,
            workspace,
        } => {
            let ws = workspace_by_slug(store, &workspace).await?;
            let action: Action = serde_json::from_value(json!(action))
                .context("unknown action (e.g. view_source, edit_source, manage_write_keys)")?;
            let mut conn = store.read().await?;
            let user_row = users::by_email(&mut conn, &ws.id, &email)
                .await?
                .with_context(|| format!("no member {email} in {workspace}"))?;
            let user = users::principal(&mut conn, &ws.id, &user_row.id)
                .await?
                .context("member vanished")?;
            let source_row = match &source {
                Some(id) => Some(
                    store::sources::get(&mut conn, &ws.id, id)
                        .await?
                        .with_context(|| format!("no source {id}"))?,
                ),
                None => None,
            };
            let resource = match (&source_row, &destination) {
                (Some(s), _) => ResourceRef::Source(s.as_ref()),
                (None, Some(d)) => ResourceRef::Destination(DestinationRef { id: d }),
                (None, None) => ResourceRef::Workspace,
            };
            let decision = policy::authorize(
                policy::Principal {
                    user: &user,
                    token: None,
                },
                action,
                resource,
                ws.settings.policy(),
                Utc::now(),
            );
            println!("{}", serde_json::to_string_pretty(&decision)?);
        }
        AdminCommand::Audit {
            command: AuditCommand::Verify,
        } => match store::verify_audit(store).await? {
            Ok(n) => println!("audit chain intact: {n} events"),
            Err(broken) => bail!("audit chain BROKEN: {broken}"),
        },
        AdminCommand::Api { .. } => unreachable!("handled before the store is opened"),
    }
    Ok(())
}

async fn workspace_by_slug(store: &Store, slug: &str) -> anyhow::Result<workspaces::Workspace> {
    let mut conn = store.read().await?;
    workspaces::by_slug(&mut conn, slug)
        .await?
        .with_context(|| format!("no workspace {slug:?}"))
}

async fn api(base: &str, method: &str, path: &str, data: Option<&str>) -> anyhow::Result<()> {
    let token = std::env::var("SLUICE_TOKEN").context("set SLUICE_TOKEN to an API token")?;
    let method: reqwest::Method = method.to_uppercase().parse().context("HTTP method")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/api/v1{}", base.trim_end_matches('/'), path);
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token)
        .header("accept", "application/json");
    if let Some(data) = data {
        let body: Value = serde_json::from_str(data).context("--data is not JSON")?;
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    match serde_json::from_str::<Value>(&text) {
        Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        Err(_) => println!("{text}"),
    }
    if !status.is_success() {
        bail!("{url}: {status}");
    }
    Ok(())
}
