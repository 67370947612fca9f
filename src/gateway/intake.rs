//! The phases every request that stores events ends with (a source function's events
//! too): **enforce** each message (normalise it, drop it if its messageId was seen,
//! apply the source's tracking plan, write its record), then **append** the records to
//! the log (durable before the 200) and **answer**.

use std::time::Instant;

use chrono::Utc;
use simd_json::borrowed::Value;
use simd_json::prelude::*;

use super::dedup::{Dedup, DigestSet};
use super::meters::SourceMeters;
use super::response::{self, RejectedItem};
use super::{Rejection, Reply, State};
use crate::catalog::Source;
use crate::event::{self, Enrichment};
use crate::log;
use crate::protocols::{self, SourceName};
use crate::suppression::Suppressions;
use crate::usage::Counts;

/// Why an item of a request is not stored.
enum Skip {
    /// It breaks a message rule.
    Invalid(event::ItemRejection),
    /// Its messageId was stored recently (or earlier in this request).
    Duplicate,
    /// Its user is suppressed: acknowledged, never stored.
    Suppressed,
}

/// One request's events on their way to the log.
pub(super) struct Intake<'r> {
    state: &'r State,
    source: &'r Source,
    meters: &'r SourceMeters,
    enrichment: Enrichment<'r>,
    /// Items in the request.
    items: u64,
    batch: log::Batch,
    /// De-duplication keys of the records in `batch`.
    remembered: Vec<u64>,
    in_request: DigestSet,
    rejected: Vec<RejectedItem>,
    /// Copies the tracking plan sends to other sources, appended after the events.
    forwarded: Vec<(String, Vec<u8>)>,
    blocked: u64,
    violating: u64,
    /// Whether the log routes and de-duplicates by per-record ids.
    tagging: bool,
}

impl<'r> Intake<'r> {
    /// An intake for `items` messages of a `body_len`-byte body from `source`.
    pub(super) fn new(
        state: &'r State,
        source: &'r Source,
        meters: &'r SourceMeters,
        now: chrono::DateTime<Utc>,
        ip: std::net::IpAddr,
        (items, body_len): (usize, usize),
    ) -> Self {
        let limits = &state.config.limits;
        Self {
            state,
            source,
            meters,
            enrichment: Enrichment::new(now, Some(ip), &source.id, limits),
            items: items as u64,
            batch: log::Batch::with_capacity(body_len + items * 256),
            remembered: Vec::with_capacity(items),
            in_request: DigestSet::default(),
            rejected: Vec::new(),
            forwarded: Vec::new(),
            blocked: 0,
            violating: 0,
            tagging: state.log.wants_ids(),
        }
    }

    /// Enforce, for one message. An invalid item of a batch is listed and the rest go
    /// on; an invalid single message, or a request that grows past what one request may
    /// store, refuses the request.
    pub(super) fn enforce<'a>(
        &mut self,
        index: usize,
        item: Result<Value<'a>, event::ItemRejection>,
        envelope: (Option<event::Kind>, &event::Defaults<'a>),
    ) -> Result<(), Rejection> {
        let outcome = self.write(index, item, envelope);
        // One request may not make the log store more than this, whatever it expands to.
        let limit = self.state.config.limits.max_stored_request_bytes;
        if self.batch.byte_len() > limit {
            // Items already refused on their own were counted then.
            let rest = self.items - self.rejected.len() as u64;
            self.meters.rejected.add("request_too_large", rest);
            return Err(self.refuse(Rejection::StoredTooLarge { limit }, self.items));
        }
        match outcome {
            Ok(()) => {}
            Err(Skip::Duplicate) => self.meters.deduplicated.increment(1),
            Err(Skip::Suppressed) => self.meters.suppressed.increment(1),
            Err(Skip::Invalid(problem)) if envelope.0.is_some() => {
                self.meters.rejected.add(problem.code(), 1);
                return Err(self.refuse(Rejection::Message(problem), 1));
            }
            Err(Skip::Invalid(problem)) => {
                self.meters.rejected.add(problem.code(), 1);
                self.rejected.push(RejectedItem {
                    index,
                    code: problem.code(),
                    message: problem.message(),
                });
            }
        }
        Ok(())
    }

    /// Normalises one message, checks it against the plan and writes its record.
    fn write<'a>(
        &mut self,
        index: usize,
        item: Result<Value<'a>, event::ItemRejection>,
        (kind, defaults): (Option<event::Kind>, &event::Defaults<'a>),
    ) -> Result<(), Skip> {
        let item = item.map_err(Skip::Invalid)?;
        let (source, state, meters) = (self.source, self.state, self.meters);
        let enrichment = &self.enrichment;
        let in_request = &mut self.in_request;
        let forwarded = &mut self.forwarded;
        let violating = &mut self.violating;
        let tagging = self.tagging;
        let (key, blocked, id) = self.batch.record(|buf| {
            let mut prepared =
                event::prepare(item, kind, defaults, enrichment).map_err(Skip::Invalid)?;
            let list = &state.suppressions;
            // The `userId` as sent: PII rules may hash it, suppression matches it raw.
            let user = (!list.is_empty()).then(|| user_id(&prepared)).flatten();
            if suppressed_in(list, source, &source.id, user.as_deref()) {
                return Err(Skip::Suppressed);
            }
            if let Some(rules) = &source.pii {
                rules.apply(&mut prepared.message);
            }
            let key = Dedup::key(&source.id, &prepared.message_id);
            if state.dedup.seen(key) || !in_request.insert(key) {
                return Err(Skip::Duplicate);
            }
            let decision = source.protocols.as_deref().and_then(|sp| {
                // Time one event in eight: the histogram keeps its shape, the clock
                // reads stay off most events.
                let started = index.is_multiple_of(8).then(Instant::now);
                let from = SourceName {
                    id: &source.id,
                    name: &source.name,
                };
                let decision = protocols::decide(sp, from, &mut prepared);
                if let Some(started) = started {
                    let seconds = started.elapsed().as_secs_f64();
                    state.meters.validation.record(seconds);
                }
                decision
            });
            let block = decision.as_ref().and_then(|d| d.block_record.as_deref());
            event::write(&prepared, block, enrichment, buf).map_err(Skip::Invalid)?;
            let blocked = block.is_some();
            if let Some(decision) = decision {
                meters.decision(&decision);
                *violating += u64::from(!decision.violations.is_empty());
                // A copy for another source is that source's event: not where its user
                // is suppressed, and with that source's PII rules applied.
                forwarded.extend(
                    decision
                        .forwards
                        .into_iter()
                        .filter(|(target, _)| !suppressed_in(list, source, target, user.as_deref()))
                        .filter_map(|(target, event)| {
                            protected(state, &target, event).map(|event| (target, event))
                        }),
                );
            }
            let id = tagging.then(|| prepared.message_id.clone());
            Ok((key, blocked, id))
        })?;
        if let Some(id) = id {
            self.batch.tag(&source.id, id);
        }
        self.remembered.push(key);
        self.blocked += u64::from(blocked);
        Ok(())
    }

    /// Counts the refusal of a whole request of `n` events in the source's usage.
    fn refuse(&self, rejection: Rejection, n: u64) -> Rejection {
        self.tally(Counts {
            refused: n,
            violating: self.violating,
            ..Counts::default()
        });
        rejection
    }

    fn tally(&self, counts: Counts) {
        let source = self.source;
        self.state.usage.count(&source.id, &source.quotas, counts);
    }

    /// Append (durable before it returns), then answer.
    pub(super) async fn append(mut self) -> Result<Reply, Rejection> {
        let stored = self.remembered.len() as u64;
        for (target, event) in std::mem::take(&mut self.forwarded) {
            let _ = self.batch.record(|buf| {
                event::write_forwarded(&target, &event, buf);
                Ok::<(), ()>(())
            });
            if self.tagging {
                // A forwarded event is named by its content: a retried request forwards
                // the same.
                let digest = xxhash_rust::xxh3::xxh3_128(&event);
                self.batch.tag(&target, format!("forwarded-{digest:032x}"));
            }
        }
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, log::Batch::with_capacity(0));
            if let Err(error) = self.state.log.append(batch).await {
                let rejection = Rejection::Log(error);
                let code = rejection.code();
                let refused = stored + self.rejected.len() as u64;
                self.meters.rejected.add(code, stored);
                self.tally(Counts {
                    refused,
                    violating: self.violating,
                    ..Counts::default()
                });
                return Err(rejection);
            }
            self.state
                .dedup
                .remember(std::mem::take(&mut self.remembered));
            self.meters.accepted.increment(stored - self.blocked);
        }
        self.tally(Counts {
            accepted: stored - self.blocked,
            refused: self.blocked + self.rejected.len() as u64,
            violating: self.violating,
        });
        Ok(response::accepted(&self.rejected, self.blocked))
    }
}

/// The event's `userId` as suppression matches it: a string, or a number as written.
fn user_id(prepared: &event::Prepared<'_>) -> Option<String> {
    match prepared.message.get("userId") {
        Some(Value::String(id)) => Some(id.to_string()),
        Some(number @ Value::Static(_)) if number.is_number() => Some(number.encode()),
        _ => None,
    }
}

/// Whether `user` (an event's raw `userId`) is suppressed in `target`: `from` itself, or
/// a source of its workspace a tracking plan forwards the event to.
fn suppressed_in(list: &Suppressions, from: &Source, target: &str, user: Option<&str>) -> bool {
    user.is_some_and(|user| list.holds(from.workspace.as_deref(), target, user))
}

/// A copy of an event forwarded into `target`, with `target`'s PII rules applied on top
/// of its own source's (a path both hash is hashed twice). `None`, said at WARN or ERROR,
/// when the rules made it too large to store, or should it not read back as an object:
/// that copy is not forwarded (the event itself is stored).
fn protected(state: &State, target: &str, event: Vec<u8>) -> Option<Vec<u8>> {
    let snapshot = state.catalog.snapshot();
    let rules = snapshot
        .sources()
        .iter()
        .find(|s| s.id == target)
        .and_then(|s| s.pii.clone());
    let Some(rules) = rules else {
        return Some(event);
    };
    let mut bytes = event;
    let Ok(Value::Object(mut object)) = simd_json::to_borrowed_value(&mut bytes) else {
        tracing::error!(
            source = target,
            "a forwarded copy did not read back as an object; not forwarded"
        );
        return None;
    };
    rules.apply(&mut object);
    let copy = Value::Object(object).encode().into_bytes();
    // The bound of the event's own record (`event::write`): hashing can grow a copy.
    let bound = (state.config.limits.max_message_bytes + event::STAMP_ALLOWANCE)
        .min(crate::record::MAX_RECORD as usize);
    if copy.len() > bound {
        tracing::warn!(
            source = target,
            bytes = copy.len(),
            limit = bound,
            "a forwarded copy grew past the record limit under the target's PII rules; not forwarded"
        );
        return None;
    }
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppression::Change;

    #[test]
    fn a_user_is_suppressed_where_the_list_says_and_only_there() {
        let limits = crate::config::Limits::default();
        let source = Source {
            id: "web".into(),
            name: "web".into(),
            workspace: Some("ws".into()),
            enabled: true,
            rate_limit: None,
            protocols: None,
            quotas: Vec::new(),
            without_consent: Default::default(),
            pii: None,
        };
        let list = Suppressions::new();
        list.apply(&[Change {
            seq: 1,
            workspace: "ws".into(),
            source: Some("quarantine".into()),
            subject: "42".into(),
            suppressed: true,
        }]);
        let enrichment = Enrichment::new(Utc::now(), None, "web", &limits);
        for (body, in_web, in_quarantine) in [
            (r#"{"userId":"42","event":"E"}"#, false, true),
            (r#"{"userId":42,"event":"E"}"#, false, true),
            (r#"{"userId":"420","event":"E"}"#, false, false),
            (r#"{"anonymousId":"42","event":"E"}"#, false, false),
        ] {
            let mut bytes = body.as_bytes().to_vec();
            let value = simd_json::to_borrowed_value(&mut bytes).expect("json");
            let prepared = event::prepare(
                value,
                Some(event::Kind::Track),
                &event::Defaults::default(),
                &enrichment,
            )
            .expect("valid");
            let user = user_id(&prepared);
            assert_eq!(
                suppressed_in(&list, &source, "web", user.as_deref()),
                in_web,
                "{body}"
            );
            // A copy a tracking plan forwards to `quarantine` is that source's event.
            assert_eq!(
                suppressed_in(&list, &source, "quarantine", user.as_deref()),
                in_quarantine,
                "{body}"
            );
        }
    }
}
