//! `sluice admin usage` and `sluice admin quota`: the month's events and the monthly
//! event quotas, through the REST API.

use clap::Args;
use serde_json::{Value, json};

use super::{api, segment};

/// `sluice admin usage`.
#[derive(Args)]
pub struct UsageArgs {
    /// The month, `YYYY-MM` (UTC) [default: this month].
    #[arg(long)]
    period: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `sluice admin quota`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("limit").required(true).args(["monthly_events", "none"])))]
pub struct QuotaArgs {
    /// Events a month (UTC calendar month) the workspace, or `--source`, may send.
    #[arg(long)]
    monthly_events: Option<u64>,
    /// Remove the quota.
    #[arg(long)]
    none: bool,
    /// A source's own quota instead of the workspace's.
    #[arg(long)]
    source: Option<String>,
}

fn number(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// Prints a month's usage as a table.
fn print(usage: &Value) {
    let total = &usage["total"];
    println!(
        "{}: {} accepted, {} refused, {} violating (quota {}; resets {})",
        usage["period"].as_str().unwrap_or_default(),
        number(&total["accepted"]),
        number(&total["refused"]),
        number(&total["violating"]),
        usage["monthlyEventQuota"]
            .as_u64()
            .map_or_else(|| "none".to_owned(), |n| n.to_string()),
        usage["resetsAt"].as_str().unwrap_or_default(),
    );
    let sources = usage["sources"].as_array().cloned().unwrap_or_default();
    if sources.is_empty() {
        return;
    }
    println!(
        "{:<32} {:>12} {:>12} {:>12} {:>12}",
        "SOURCE", "ACCEPTED", "REFUSED", "VIOLATING", "QUOTA"
    );
    for source in &sources {
        println!(
            "{:<32} {:>12} {:>12} {:>12} {:>12}",
            source["sourceId"].as_str().unwrap_or_default(),
            number(&source["accepted"]),
            number(&source["refused"]),
            number(&source["violating"]),
            number(&source["monthlyEventQuota"]),
        );
    }
}

/// Runs `sluice admin usage`.
pub async fn usage(base: &str, args: UsageArgs) -> anyhow::Result<()> {
    let path = match &args.period {
        Some(period) => format!("/usage?period={}", segment(period)),
        None => "/usage".to_owned(),
    };
    let answer = api(base, "GET", &path, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print(&answer["data"]["usage"]);
    }
    Ok(())
}

/// Runs `sluice admin quota`.
pub async fn quota(base: &str, args: QuotaArgs) -> anyhow::Result<()> {
    let path = match &args.source {
        Some(source) => format!("/sources/{}/quota", segment(source)),
        None => "/usage/quota".to_owned(),
    };
    let events = if args.none {
        Value::Null
    } else {
        json!(args.monthly_events)
    };
    let answer = api(base, "PUT", &path, Some(json!({ "monthlyEvents": events }))).await?;
    let quota = &answer["data"]["quota"];
    match quota["monthlyEvents"].as_u64() {
        Some(n) => println!(
            "{}: {n} events a month",
            quota["pool"].as_str().unwrap_or_default()
        ),
        None => println!("{}: no quota", quota["pool"].as_str().unwrap_or_default()),
    }
    Ok(())
}
