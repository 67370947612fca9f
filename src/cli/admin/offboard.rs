//! `sluice admin offboard`: a departure from a shell, the plan first.

use clap::Args;
use serde_json::{Value, json};

use super::{api, segment};

/// `sluice admin offboard`.
#[derive(Args)]
pub struct OffboardArgs {
    /// The leaver: email or user id.
    #[arg(long)]
    user: String,
    /// Who takes over what they own: email or user id.
    #[arg(long)]
    successor: String,
    /// Carry it out (without it, only the plan is printed and nothing changes).
    #[arg(long)]
    execute: bool,
    /// With --execute: then rotate the write keys listed "rotate if shared", printing
    /// the new keys (once).
    #[arg(long, requires = "execute")]
    rotate_write_keys: bool,
    /// Hours the old write keys keep working beside the new ones (0 revokes them now).
    #[arg(long, default_value_t = 24)]
    overlap_hours: u32,
}

/// A user id for an email (or the id itself).
async fn user_id(base: &str, who: &str) -> anyhow::Result<String> {
    if !who.contains('@') {
        return Ok(who.to_owned());
    }
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/users?pagination[count]=200".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&pagination[cursor]={}", segment(c)));
        }
        let answer = api(base, "GET", &path, None).await?;
        for user in answer["data"]["users"].as_array().into_iter().flatten() {
            if user["email"].as_str() == Some(who) {
                return Ok(user["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        cursor = answer["data"]["pagination"]["next"]
            .as_str()
            .map(str::to_owned);
        if cursor.is_none() {
            anyhow::bail!("no member {who}");
        }
    }
}

fn names(list: &Value, field: &str) -> String {
    let items: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => format!(
                "{} ({})",
                other["id"].as_str().unwrap_or_default(),
                other[field].as_str().unwrap_or_default()
            ),
        })
        .collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Prints a plan or report.
fn print(report: &Value) {
    let (user, successor) = (&report["user"], &report["successor"]);
    println!(
        "Offboarding {} ({}); successor {}{}",
        user["email"].as_str().unwrap_or_default(),
        user["role"].as_str().unwrap_or_default(),
        successor["email"].as_str().unwrap_or_default(),
        if report["dryRun"] == json!(true) {
            "\nDRY RUN: nothing has changed (add --execute to carry it out)"
        } else {
            ""
        }
    );
    let t = &report["transferred"];
    println!("Transfer to the successor:");
    println!("  tracking plans: {}", names(&t["trackingPlans"], "name"));
    println!(
        "  open change requests: {}",
        names(&t["changeRequests"], "name")
    );
    if t["ownership"] == json!(true) {
        println!("  workspace ownership: the successor becomes an owner");
    }
    let r = &report["revoked"];
    println!("Revoke:");
    println!("  membership of the workspace");
    println!("  personal tokens: {}", names(&r["tokens"], "name"));
    println!(
        "  node credentials they made (give those gateways new ones first): {}",
        names(&r["nodeCredentials"], "name")
    );
    println!(
        "  SCIM tokens they made (give the identity provider a new one first): {}",
        names(&r["scimTokens"], "name")
    );
    println!("  browser sessions: {}", r["sessions"]);
    println!("  grants: {}", r["grants"].as_array().map_or(0, Vec::len));
    println!("  local groups: {}", names(&r["localGroups"], "name"));
    let idp = &report["identityProvider"];
    println!("In the identity provider (Sluice cannot do this):");
    println!("  remove from groups: {}", names(&idp["groups"], "name"));
    println!("  unassign from: {}", names(&idp["connections"], "name"));
    if idp["scimManaged"] == json!(true) {
        println!("  deprovision the user (SCIM pushes them)");
    }
    println!("Rotate if shared (live write keys of the sources they could read):");
    for s in report["rotateIfShared"].as_array().into_iter().flatten() {
        println!(
            "  {}: {}",
            s["sourceId"].as_str().unwrap_or_default(),
            names(&s["keys"], "name")
        );
    }
    if let Some(id) = report["recordId"].as_str() {
        println!("Removal record: {id}");
    }
}

/// Runs `sluice admin offboard` against the API at `base`.
pub async fn run(base: &str, args: OffboardArgs) -> anyhow::Result<()> {
    let user = user_id(base, &args.user).await?;
    let successor = user_id(base, &args.successor).await?;
    let path = format!("/users/{}/offboard", segment(&user));
    let body = json!({"successorId": successor, "dryRun": !args.execute});
    let answer = api(base, "POST", &path, Some(body)).await?;
    let report = &answer["data"]["offboarding"];
    print(report);
    if args.rotate_write_keys {
        let record = report["recordId"].as_str().unwrap_or_default();
        let path = format!("/offboardings/{}/rotate-write-keys", segment(record));
        let body = json!({"overlapHours": args.overlap_hours});
        let answer = api(base, "POST", &path, Some(body)).await?;
        eprintln!("New write keys (shown once); deploy them before the old ones end:");
        for r in answer["data"]["rotated"].as_array().into_iter().flatten() {
            println!(
                "{}\t{}\t{}\told keys end {}",
                r["sourceId"].as_str().unwrap_or_default(),
                r["writeKeyId"].as_str().unwrap_or_default(),
                r["writeKey"].as_str().unwrap_or_default(),
                r["oldKeysEndAt"].as_str().unwrap_or_default()
            );
        }
        for s in answer["data"]["skipped"].as_array().into_iter().flatten() {
            eprintln!(
                "not rotated (deleted since): {}",
                s.as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
