//! `sluice admin change-requests …`: the tracking-plan review queue from a shell.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};

use super::{api, segment};

/// `sluice admin change-requests`.
#[derive(Subcommand)]
pub enum ChangeRequestsCommand {
    /// The queue: id, status, plan, author, base version (stale ones marked).
    List {
        /// Only this status: OPEN, PUBLISHED, REJECTED or WITHDRAWN.
        #[arg(long)]
        status: Option<String>,
        /// Only this author (user id).
        #[arg(long)]
        author: Option<String>,
        /// Only this tracking plan.
        #[arg(long)]
        plan: Option<String>,
    },
    /// One request: what it is and its diff, rule by rule.
    Show {
        /// Change request id (`cr_…`).
        id: String,
    },
    /// Propose new rules for a plan (a JSON file: the rules array, or `{"rules": […]}`).
    Propose {
        /// Tracking plan id.
        plan: String,
        /// The rules file.
        #[arg(long)]
        rules: PathBuf,
        /// Why the change is needed.
        #[arg(long)]
        description: String,
    },
    /// Approve a request: its rules are published as the plan's next version.
    Approve {
        /// Change request id.
        id: String,
        /// The version you reviewed (`updated` as `show` printed it): refused if the
        /// request changed since.
        #[arg(long)]
        updated_at: Option<String>,
        /// A comment kept with the decision.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a request, saying why.
    Reject {
        /// Change request id.
        id: String,
        /// Why.
        #[arg(long)]
        comment: String,
    },
    /// Withdraw your own request.
    Withdraw {
        /// Change request id.
        id: String,
    },
    /// Carry your own request onto the plan's published version (or replace its rules).
    Rebase {
        /// Change request id.
        id: String,
        /// Rules to propose instead (needed when both sides changed the same rule).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

/// A rules file: the array itself or `{"rules": […]}`.
fn rules_file(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(match doc {
        Value::Object(mut o) if o.contains_key("rules") => o.remove("rules").unwrap_or_default(),
        other => other,
    })
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Prints a request and its diff.
fn print_one(answer: &Value) {
    let cr = &answer["data"]["changeRequest"];
    println!(
        "{} {} on {} by {} (from version {}{})",
        text(&cr["id"]),
        text(&cr["status"]),
        text(&cr["trackingPlanId"]),
        text(&cr["authorId"]),
        cr["baseVersion"],
        if cr["stale"] == json!(true) {
            ", stale: rebase it"
        } else {
            ""
        }
    );
    println!("updated {}", text(&cr["updatedAt"]));
    println!("{}", text(&cr["description"]));
    if let Some(v) = cr["publishedVersion"].as_u64() {
        println!("published as version {v}");
    }
    if !text(&cr["comment"]).is_empty() {
        println!("reviewer: {}", text(&cr["comment"]));
    }
    println!();
    println!("{}", text(&answer["data"]["diffText"]));
}

/// Runs one command against the API at `base`.
pub async fn run(base: &str, command: ChangeRequestsCommand) -> anyhow::Result<()> {
    let decide = |id: &str, verb: &str| format!("/change-requests/{}/{verb}", segment(id));
    match command {
        ChangeRequestsCommand::List {
            status,
            author,
            plan,
        } => {
            let mut cursor: Option<String> = None;
            loop {
                let mut path = "/change-requests?pagination[count]=200".to_owned();
                for (key, value) in [
                    ("status", &status),
                    ("author", &author),
                    ("trackingPlanId", &plan),
                    ("pagination[cursor]", &cursor),
                ] {
                    if let Some(v) = value {
                        path.push_str(&format!("&{key}={}", segment(v)));
                    }
                }
                let answer = api(base, "GET", &path, None).await?;
                for cr in answer["data"]["changeRequests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "{}\t{}\t{}\t{}\tv{}{}",
                        text(&cr["id"]),
                        text(&cr["status"]),
                        text(&cr["trackingPlanId"]),
                        text(&cr["authorId"]),
                        cr["baseVersion"],
                        if cr["stale"] == json!(true) {
                            " (stale)"
                        } else {
                            ""
                        }
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
        ChangeRequestsCommand::Show { id } => {
            let answer = api(
                base,
                "GET",
                &format!("/change-requests/{}", segment(&id)),
                None,
            )
            .await?;
            print_one(&answer);
        }
        ChangeRequestsCommand::Propose {
            plan,
            rules,
            description,
        } => {
            let body = json!({"description": description, "rules": rules_file(&rules)?});
            let path = format!("/tracking-plans/{}/change-requests", segment(&plan));
            print_one(&api(base, "POST", &path, Some(body)).await?);
        }
        ChangeRequestsCommand::Approve {
            id,
            updated_at,
            comment,
        } => {
            let mut body = json!({});
            if let Some(c) = comment {
                body["comment"] = json!(c);
            }
            if let Some(at) = updated_at {
                body["updatedAt"] = json!(at);
            }
            print_one(&api(base, "POST", &decide(&id, "approve"), Some(body)).await?);
        }
        ChangeRequestsCommand::Reject { id, comment } => {
            let body = json!({"comment": comment});
            print_one(&api(base, "POST", &decide(&id, "reject"), Some(body)).await?);
        }
        ChangeRequestsCommand::Withdraw { id } => {
            print_one(&api(base, "POST", &decide(&id, "withdraw"), Some(json!({}))).await?);
        }
        ChangeRequestsCommand::Rebase { id, rules } => {
            let body = match rules {
                Some(path) => json!({"rules": rules_file(&path)?}),
                None => json!({}),
            };
            print_one(&api(base, "POST", &decide(&id, "rebase"), Some(body)).await?);
        }
    }
    Ok(())
}
