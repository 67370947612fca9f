//! Between the store and the gateway's catalog document: export (what the gateway
//! serves) and import (a catalog file into a workspace).

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::destinations::{self, DestinationRow};
use super::sources::{self, SourceRow};
use super::{StoreError, functions, plans, usage, workspaces};
use crate::catalog::{
    Document, FunctionDoc, KeyDoc, QuotaDoc, RateLimitDoc, SourceDoc, SourceFunctionDoc,
};
use crate::control::secret::Key;
use crate::protocols::{ControlsDoc, Enforcement, PlanDoc};

/// The workspace as a catalog document: every source with its key *digests* (never a
/// key), every destination with its settings, every plan at its published version.
pub async fn export(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
) -> Result<Document, StoreError> {
    let mut keys = sources::all_keys(conn, workspace)
        .await?
        .into_iter()
        .peekable();
    let mut doc = Document::default();
    let salt = workspaces::pii_salt(conn, key, workspace)
        .await?
        .map(crate::pii::Salt);
    for source in sources::all(conn, workspace).await? {
        let mut write_keys = Vec::new();
        while let Some(k) = keys.next_if(|k| k.source_id == source.id) {
            write_keys.push(KeyDoc {
                key: None,
                sha256: Some(k.digest.to_hex()),
                revoked: k.revoked_at.is_some(),
                expires_at: k.expires_at,
            });
        }
        let mut source = source_doc(source, write_keys)?;
        source.workspace = Some(workspace.to_owned());
        if crate::pii::hashes(&source.pii) {
            match &salt {
                Some(salt) => source.pii_salt = Some(salt.clone()),
                None => {
                    // Never the case through the API (a hash rule makes the salt); a
                    // store restored without it drops those values rather than store
                    // them or stop every gateway's catalog.
                    tracing::error!(workspace, source = %source.id, "PII hash rules but the workspace has no salt: dropping those values instead");
                    for rule in &mut source.pii {
                        if rule.action == crate::pii::Action::Hash {
                            rule.action = crate::pii::Action::Drop;
                        }
                    }
                }
            }
        }
        doc.sources.push(source);
    }
    for (id, name, version, rules) in plans::published(conn, workspace).await? {
        doc.tracking_plans.push(PlanDoc {
            id,
            name: Some(name),
            version,
            rules,
        });
    }
    // A source may name a plan that was never published: it has nothing to enforce yet.
    let published: std::collections::HashSet<&str> =
        doc.tracking_plans.iter().map(|p| p.id.as_str()).collect();
    let unpublished: Vec<usize> = doc
        .sources
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.tracking_plan
                .as_deref()
                .is_some_and(|p| !published.contains(p))
        })
        .map(|(i, _)| i)
        .collect();
    for i in unpublished {
        doc.sources[i].tracking_plan = None;
    }
    let mut attached = deployed_functions(conn, key, workspace).await?;
    for row in destinations::all(conn, key, workspace).await? {
        let mut destination = row.doc;
        destination.function = attached.remove(&destination.id);
        doc.destinations.push(destination);
    }
    doc.source_functions = deployed_source_functions(conn, key, workspace).await?;
    let quotas = usage::quotas(conn, workspace).await?;
    if let Some(monthly_events) = quotas.workspace {
        doc.quotas.push(QuotaDoc {
            id: format!("workspace:{workspace}"),
            monthly_events,
            sources: doc.sources.iter().map(|s| s.id.clone()).collect(),
        });
    }
    for (source, monthly_events) in quotas.sources {
        doc.quotas.push(QuotaDoc {
            id: format!("source:{source}"),
            monthly_events,
            sources: vec![source],
        });
    }
    Ok(doc)
}

/// The insert function each destination runs, by destination id: its instance enabled
/// and its function deployed (the deployed version's code, the instance's settings).
async fn deployed_functions(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
) -> Result<std::collections::HashMap<String, FunctionDoc>, StoreError> {
    let mut out = std::collections::HashMap::new();
    for instance in functions::instances(conn, key, workspace, "").await? {
        if !instance.enabled {
            continue;
        }
        let Some((function, version, code)) =
            deployed(conn, workspace, &instance.function_id).await?
        else {
            continue;
        };
        out.insert(
            instance.destination_id,
            FunctionDoc {
                id: function.id,
                version,
                code,
                settings: instance.settings,
            },
        );
    }
    Ok(out)
}

/// Function `id` if it exists and has a deployed version: the function, that version
/// and its code.
async fn deployed(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<(functions::FunctionRow, u32, String)>, StoreError> {
    let Some(function) = functions::get(conn, workspace, id).await? else {
        return Ok(None);
    };
    let Some(version) = function.deployed_version else {
        return Ok(None);
    };
    let Some(code) = functions::version(conn, &function.id, version).await? else {
        return Err(StoreError::Corrupt(format!(
            "function {} has no version {version}",
            function.id
        )));
    };
    Ok(Some((function, version, code.code)))
}

/// The source functions whose function is deployed, with the deployed version's code.
async fn deployed_source_functions(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
) -> Result<Vec<SourceFunctionDoc>, StoreError> {
    let mut out = Vec::new();
    for row in functions::source_functions(conn, key, workspace, "").await? {
        if !row.enabled {
            continue;
        }
        let Some((function, version, code)) = deployed(conn, workspace, &row.function_id).await?
        else {
            continue;
        };
        out.push(SourceFunctionDoc {
            id: row.id,
            source: row.source_id,
            function: function.id,
            version,
            code,
            settings: row.settings,
            secret_sha256: row.secret_sha256,
        });
    }
    Ok(out)
}

fn source_doc(source: SourceRow, write_keys: Vec<KeyDoc>) -> Result<SourceDoc, StoreError> {
    let enforcement: Enforcement =
        serde_json::from_value(serde_json::Value::String(source.enforcement.clone()))
            .map_err(|e| StoreError::Corrupt(format!("source {} enforcement: {e}", source.id)))?;
    let protocols: ControlsDoc = serde_json::from_value(source.controls.clone())
        .map_err(|e| StoreError::Corrupt(format!("source {} controls: {e}", source.id)))?;
    Ok(SourceDoc {
        name: Some(source.name),
        workspace: None,
        enabled: source.enabled,
        rate_limit: source.rate_per_second.map(|rps| RateLimitDoc {
            requests_per_second: rps,
            burst: source.rate_burst,
        }),
        write_keys,
        tracking_plan: source.tracking_plan_id,
        enforcement,
        protocols,
        without_consent: source.without_consent,
        pii: source.pii,
        pii_salt: None,
        id: source.id,
    })
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Sources created.
    pub sources: usize,
    /// Write keys stored (as digests).
    pub keys: usize,
    /// Destinations created.
    pub destinations: usize,
    /// Tracking plans created and published.
    pub plans: usize,
}

/// Adds a catalog document's plans, sources (with their keys, as digests) and
/// destinations to `workspace`. Ids already present are conflicts: nothing is replaced.
/// Functions are not imported (they are made, versioned and deployed through the API):
/// a document that carries some says so in the log.
pub async fn import(
    conn: &mut AnyConnection,
    key: &Key,
    workspace: &str,
    doc: &Document,
    now: DateTime<Utc>,
) -> Result<Imported, StoreError> {
    let functions = doc
        .destinations
        .iter()
        .filter(|d| d.function.is_some())
        .count()
        + doc.source_functions.len();
    if functions > 0 {
        tracing::warn!(
            functions,
            "the catalog file's insert and source functions are not imported into the control plane: make them through the API (/api/v1/functions)"
        );
    }
    let mut done = Imported::default();
    for plan in &doc.tracking_plans {
        let row = plans::PlanRow {
            id: plan.id.clone(),
            name: plan.name.clone().unwrap_or_else(|| plan.id.clone()),
            plan_type: "LIVE".into(),
            description: String::new(),
            rules: plan.rules.clone(),
            published_version: plan.version.saturating_sub(1),
            created_at: now,
            updated_at: now,
            owner_id: None,
        };
        plans::insert(conn, workspace, &row).await?;
        plans::publish(conn, &row, "import", now).await?;
        done.plans += 1;
    }
    // The salt the file hashed with (its first source's that has one).
    let file_salt = doc.sources.iter().find_map(|s| s.pii_salt.as_ref());
    for s in &doc.sources {
        let row = SourceRow {
            id: s.id.clone(),
            name: s.name.clone().unwrap_or_else(|| s.id.clone()),
            metadata_id: String::new(),
            enabled: s.enabled,
            rate_per_second: s.rate_limit.map(|r| r.requests_per_second),
            rate_burst: s.rate_limit.and_then(|r| r.burst),
            tracking_plan_id: s.tracking_plan.clone(),
            enforcement: enforcement_name(s.enforcement),
            controls: serde_json::to_value(&s.protocols)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            without_consent: s.without_consent,
            pii: s.pii.clone(),
            labels: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        sources::insert(conn, workspace, &row).await?;
        done.sources += 1;
        // `hash` rules hash with the workspace's salt: the file's when the workspace
        // has none yet (hashes made before the import still match).
        if crate::pii::hashes(&row.pii) {
            let file = s
                .pii_salt
                .as_ref()
                .or(file_salt)
                .map(|salt| salt.0.as_str());
            let salt = workspaces::ensure_pii_salt(conn, key, workspace, file).await?;
            if file.is_some_and(|file| file != salt) {
                tracing::warn!(workspace, source = %s.id, "the source's pii_salt differs from the workspace's: its hashes change with the import");
            }
        }
        for k in &s.write_keys {
            let Some(digest) = k.digest() else { continue };
            let k_row =
                sources::add_key(conn, &s.id, digest, "imported", "import", k.expires_at, now)
                    .await?;
            if k.revoked {
                sources::revoke_key(conn, &k_row.id, now).await?;
            }
            done.keys += 1;
        }
    }
    for d in &doc.destinations {
        let row = DestinationRow {
            id: d.id.clone(),
            name: d.name.clone().unwrap_or_else(|| d.id.clone()),
            metadata_id: String::new(),
            enabled: d.enabled,
            doc: d.clone(),
            created_at: now,
            updated_at: now,
        };
        destinations::insert(conn, key, workspace, &row).await?;
        done.destinations += 1;
    }
    Ok(done)
}

/// The stored name of an enforcement mode.
pub fn enforcement_name(e: Enforcement) -> String {
    match serde_json::to_value(e) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "off".into(),
    }
}
