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
use sluice::control::bootstrap;
use sluice::control::explain::{self, Question, Subject};
use sluice::control::policy::{self, Action};
use sluice::control::store::{self, Store, catalog, users, workspaces};

mod change_requests;
mod offboard;
mod usage;

use change_requests::ChangeRequestsCommand;
use offboard::OffboardArgs;
use usage::{QuotaArgs, UsageArgs};

/// `sluice admin`.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Make the first owner of workspace `default` and print their API token (once).
    Bootstrap {
        /// The owner's email.
        #[arg(long)]
        email: String,
    },
    /// Break-glass: make EMAIL an owner and print a new owner token (once), working on
    /// the store directly (needs this host, not the API). For when every owner token is
    /// revoked or expired. Audited as `owner.recover`.
    RecoverOwner {
        /// The person to make an owner (a member is promoted; anyone else is added).
        #[arg(long)]
        email: String,
        /// Workspace slug.
        #[arg(long, default_value = "default")]
        workspace: String,
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
    /// Sources, through the REST API (token in `SLUICE_TOKEN`).
    Sources {
        #[command(subcommand)]
        command: SourcesCommand,
        /// Base URL [default: control.public_url].
        #[arg(long, env = "SLUICE_URL", global = true)]
        url: Option<String>,
    },
    /// Write keys of a source, through the REST API (token in `SLUICE_TOKEN`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        /// Base URL [default: control.public_url].
        #[arg(long, env = "SLUICE_URL", global = true)]
        url: Option<String>,
    },
    /// Tracking-plan change requests, through the REST API (token in `SLUICE_TOKEN`).
    ChangeRequests {
        #[command(subcommand)]
        command: ChangeRequestsCommand,
        /// Base URL [default: control.public_url].
        #[arg(long, env = "SLUICE_URL", global = true)]
        url: Option<String>,
    },
    /// Offboard a member through the REST API (token in `SLUICE_TOKEN`): prints the plan;
    /// `--execute` carries it out, `--rotate-write-keys` then rotates the keys they could
    /// read.
    Offboard {
        #[command(flatten)]
        args: OffboardArgs,
        /// Base URL [default: control.public_url].
        #[arg(long, env = "SLUICE_URL")]
        url: Option<String>,
    },
    /// The month's events per source and the quotas, through the REST API (token in
    /// `SLUICE_TOKEN`).
    Usage {
        #[command(flatten)]
        args: UsageArgs,
        /// Base URL [default: control.public_url].
        #[arg(long, env = "SLUICE_URL")]
        url: Option<String>,
    },
    /// Set or remove a monthly event quota (owners), through the REST API (token in
    /// `SLUICE_TOKEN`): `sluice admin quota --monthly-events 1000000 [--source web]`.
    Quota {
        #[command(flatten)]
        args: QuotaArgs,
        /// Base URL [default: control.public_url].
        #[arg(long, env = "SLUICE_URL")]
        url: Option<String>,
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

/// `sluice admin sources`.
#[derive(Subcommand)]
pub enum SourcesCommand {
    /// The sources your token may see: id, enabled, labels.
    List,
    /// Create a source; its id is the slug.
    Create {
        /// Lower-case letters, digits, `-` and `_`.
        slug: String,
        /// Display name [default: the slug].
        #[arg(long)]
        name: Option<String>,
        /// A label `key:value` (repeat for more), e.g. `environment:prod`.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Delete a source with its keys, connections and grants.
    Delete {
        /// Source id.
        source: String,
    },
}

/// `sluice admin keys`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a write key and print it (shown once).
    Add {
        /// Source id.
        source: String,
        /// Refuse the key after this many days (rotation overlap).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// The source's keys: id, first characters, expiry, revocation.
    List {
        /// Source id.
        source: String,
    },
    /// Revoke a key, named by its id (`wk_…`) or the key itself.
    Revoke {
        /// Source id.
        source: String,
        /// Key id or key.
        key: String,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?} is not key:value")),
    }
}

/// `sluice admin audit`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exits 1 and names the first bad event if any row was
    /// edited, deleted or reordered.
    Verify {
        /// Also check the database against this audit stream file
        /// (`control.audit_stream`): every event streamed must still be there, unchanged.
        #[arg(long)]
        stream: Option<PathBuf>,
    },
}

/// Runs `sluice admin …`.
pub fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let base = |url: Option<String>| url.unwrap_or_else(|| config.control.public_url());
        match command {
            AdminCommand::Api {
                method,
                path,
                data,
                url,
            } => {
                let body = data
                    .as_deref()
                    .map(serde_json::from_str::<Value>)
                    .transpose()
                    .context("--data is not JSON")?;
                let answer = api(&base(url), &method, &path, body).await?;
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            AdminCommand::Sources { command, url } => return sources(&base(url), command).await,
            AdminCommand::Keys { command, url } => return keys(&base(url), command).await,
            AdminCommand::ChangeRequests { command, url } => {
                return change_requests::run(&base(url), command).await;
            }
            AdminCommand::Offboard { args, url } => return offboard::run(&base(url), args).await,
            AdminCommand::Usage { args, url } => return usage::usage(&base(url), args).await,
            AdminCommand::Quota { args, url } => return usage::quota(&base(url), args).await,
            _ => {}
        }
        let store = sluice::catalog_origin::open_store(config)
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
        AdminCommand::RecoverOwner { email, workspace } => {
            let (user, token) =
                bootstrap::recover_owner(store, &workspace, &email, Utc::now()).await?;
            eprintln!(
                "{} is an owner of {workspace:?} again (recorded in the audit log as owner.recover); their new API token (shown once, valid {} days):",
                user.email,
                bootstrap::BOOTSTRAP_TOKEN_DAYS
            );
            println!("{}", token.expose());
        }
        AdminCommand::Import { file, workspace } => {
            let done = bootstrap::import(store, &workspace, &file, Utc::now()).await?;
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
            println!(
                "# Write keys are SHA-256 digests; destination settings include credentials, and sources' pii_salt the workspace's PII salt."
            );
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
            let subject = match (&source, &destination) {
                (Some(s), _) => Subject::Source(s),
                (None, Some(d)) => Subject::Destination(d),
                (None, None) => Subject::Workspace,
            };
            let question = Question {
                workspace: &ws.id,
                settings: ws.settings.policy(),
                principal: policy::Principal {
                    user: &user,
                    token: None,
                },
                action,
                subject,
                connect_to: None,
                now: Utc::now(),
            };
            let decision = explain::explain(&mut conn, store.key(), question).await?;
            println!("{}", serde_json::to_string_pretty(&decision)?);
        }
        AdminCommand::Audit {
            command: AuditCommand::Verify { stream },
        } => match store::verify_audit(store).await? {
            Ok(n) => {
                if let Some(path) = stream {
                    if !path.exists() {
                        bail!("no audit stream at {}", path.display());
                    }
                    let streamed = sluice::control::audit_stream::read(&path)?;
                    let mut conn = store.read().await?;
                    let stored = store::audit_log::all(&mut conn).await?;
                    drop(conn);
                    match sluice::control::audit_stream::compare(
                        &streamed,
                        &stored,
                        store.key().chain_key(),
                    ) {
                        Ok(upto) => println!(
                            "audit stream {} matches the database through event {upto} \
                             (the database holds {n}; {} not streamed yet)",
                            path.display(),
                            n.saturating_sub(upto)
                        ),
                        Err(mismatch) => bail!("audit stream MISMATCH: {mismatch}"),
                    }
                }
                if store.checkpoint_present() == Some(false) {
                    eprintln!(
                        "warning: no audit checkpoint on this host ({}): a chain rewritten wholesale in the database would not be noticed here",
                        store::CHECKPOINT_FILE
                    );
                }
                println!("audit chain intact: {n} events");
            }
            Err(broken) => bail!("audit chain BROKEN: {broken}"),
        },
        AdminCommand::Api { .. }
        | AdminCommand::Sources { .. }
        | AdminCommand::Keys { .. }
        | AdminCommand::ChangeRequests { .. }
        | AdminCommand::Offboard { .. }
        | AdminCommand::Usage { .. }
        | AdminCommand::Quota { .. } => bail!("API commands do not open the store"),
    }
    Ok(())
}

async fn workspace_by_slug(store: &Store, slug: &str) -> anyhow::Result<workspaces::Workspace> {
    let mut conn = store.read().await?;
    workspaces::by_slug(&mut conn, slug)
        .await?
        .with_context(|| format!("no workspace {slug:?}"))
}

/// Calls the API with the token in `SLUICE_TOKEN`; the answer's JSON, or an error with
/// the API's own message.
async fn api(base: &str, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let token = std::env::var("SLUICE_TOKEN").context("set SLUICE_TOKEN to an API token")?;
    let method: reqwest::Method = method.to_uppercase().parse().context("HTTP method")?;
    let url = format!("{}/api/v1{}", base.trim_end_matches('/'), path);
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token)
        .header("accept", "application/json");
    if let Some(body) = body {
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
    let json = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let why = json["errors"][0]["message"]
            .as_str()
            .map_or_else(|| json.to_string(), str::to_owned);
        bail!("{url}: {status}: {why}");
    }
    // A protected resource: nothing changed yet, and the command must not say it did.
    if let Some(id) = json["data"]["resourceChangeRequest"]["id"].as_str() {
        bail!(
            "not applied: the change touches a protected (production) resource and is kept \
             for review as resource change request {id}; an owner or admin approves it \
             (POST /api/v1/resource-change-requests/{id}/approve)"
        );
    }
    Ok(json)
}

/// A path segment (or query value) for an id typed by the user: percent-encoded but
/// for RFC 3986's unreserved characters.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn sources(base: &str, command: SourcesCommand) -> anyhow::Result<()> {
    match command {
        SourcesCommand::List => {
            let mut cursor: Option<String> = None;
            loop {
                let mut path = "/sources?pagination[count]=200".to_owned();
                if let Some(c) = &cursor {
                    path.push_str(&format!("&pagination[cursor]={}", segment(c)));
                }
                let answer = api(base, "GET", &path, None).await?;
                for source in answer["data"]["sources"].as_array().into_iter().flatten() {
                    let labels: Vec<String> = source["labels"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| {
                            format!(
                                "{}:{}",
                                l["key"].as_str().unwrap_or_default(),
                                l["value"].as_str().unwrap_or_default()
                            )
                        })
                        .collect();
                    println!(
                        "{}\t{}\t{}",
                        source["id"].as_str().unwrap_or_default(),
                        if source["enabled"] == json!(true) {
                            "enabled"
                        } else {
                            "disabled"
                        },
                        labels.join(",")
                    );
                }
                cursor = answer["data"]["pagination"]["next"]
                    .as_str()
                    .map(str::to_owned);
                if cursor.is_none() {
                    return Ok(());
                }
            }
        }
        SourcesCommand::Create { slug, name, labels } => {
            let labels: Vec<Value> = labels
                .iter()
                .map(|(key, value)| json!({"key": key, "value": value}))
                .collect();
            let mut body = json!({"slug": slug, "labels": labels});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            let answer = api(base, "POST", "/sources", Some(body)).await?;
            println!(
                "{}",
                answer["data"]["source"]["id"].as_str().unwrap_or_default()
            );
        }
        SourcesCommand::Delete { source } => {
            api(
                base,
                "DELETE",
                &format!("/sources/{}", segment(&source)),
                None,
            )
            .await?;
            eprintln!("source {source} deleted");
        }
    }
    Ok(())
}

async fn keys(base: &str, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Add {
            source,
            expires_in_days,
        } => {
            let mut body = json!({});
            if let Some(days) = expires_in_days {
                body["expiresAt"] = json!(Utc::now() + chrono::Duration::days(i64::from(days)));
            }
            let path = format!("/sources/{}/writekey", segment(&source));
            let answer = api(base, "POST", &path, Some(body)).await?;
            let key = &answer["data"]["writeKey"];
            eprintln!(
                "write key {} for {source} (shown once){}:",
                key["id"].as_str().unwrap_or_default(),
                key["expiresAt"]
                    .as_str()
                    .map(|at| format!(", refused after {at}"))
                    .unwrap_or_default()
            );
            println!("{}", key["key"].as_str().unwrap_or_default());
        }
        KeysCommand::List { source } => {
            let path = format!("/sources/{}/writekeys", segment(&source));
            let answer = api(base, "GET", &path, None).await?;
            for key in answer["data"]["writeKeys"].as_array().into_iter().flatten() {
                let state = if key["revokedAt"].is_string() {
                    "revoked".to_owned()
                } else if let Some(at) = key["expiresAt"].as_str() {
                    format!("expires {at}")
                } else {
                    "active".to_owned()
                };
                println!(
                    "{}\t{}\t{state}",
                    key["id"].as_str().unwrap_or_default(),
                    key["display"].as_str().unwrap_or_default()
                );
            }
        }
        KeysCommand::Revoke { source, key } => {
            let path = format!("/sources/{}/writekey/{}", segment(&source), segment(&key));
            api(base, "DELETE", &path, None).await?;
            eprintln!("key revoked: refused by every gateway within a second");
        }
    }
    Ok(())
}
