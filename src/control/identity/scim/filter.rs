//! SCIM filters (RFC 7644 §3.4.2.2): parsed by `scim_v2` (depth and term budgets
//! included), evaluated here against a resource held as JSON, so SQLite and PostgreSQL
//! answer alike. Strings compare ignoring case except `id`, `externalId` and
//! `meta.version`; `meta.created` and `meta.lastModified` compare as times; `gt`/`lt`
//! on a boolean or a complex attribute is an `invalidFilter`.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::{Map, Value};

use super::error::ScimError;
use super::resource::{get, holder};

/// Longest filter text accepted.
pub const MAX_FILTER_BYTES: usize = 4096;

/// Parses `?filter=`.
pub fn parse(text: &str) -> Result<Filter, ScimError> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(ScimError::InvalidFilter(format!(
            "filter longer than {MAX_FILTER_BYTES} bytes"
        )));
    }
    text.parse::<Filter>()
        .map_err(|e| ScimError::InvalidFilter(format!("invalid filter: {e}")))
}

/// Whether `resource` matches `filter`.
pub fn matches(filter: &Filter, resource: &Map<String, Value>) -> Result<bool, ScimError> {
    match filter {
        Filter::Attr(exp) => attr(exp, resource),
        Filter::ValuePath(path) => {
            let Some(found) = resolve(resource, &path.attr) else {
                return Ok(false);
            };
            for item in elements(found) {
                if let Value::Object(item) = item
                    && val_matches(&path.filter, item)?
                {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Filter::Not(inner) => Ok(!matches(inner, resource)?),
        Filter::And(all) => {
            for f in all.as_slice() {
                if !matches(f, resource)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Filter::Or(any) => {
            for f in any.as_slice() {
                if matches(f, resource)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// Whether one element of a multi-valued attribute matches a value filter.
pub fn val_matches(filter: &ValFilter, item: &Map<String, Value>) -> Result<bool, ScimError> {
    match filter {
        ValFilter::Attr(exp) => attr(exp, item),
        ValFilter::Not(inner) => Ok(!val_matches(inner, item)?),
        ValFilter::And(all) => {
            for f in all.as_slice() {
                if !val_matches(f, item)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        ValFilter::Or(any) => {
            for f in any.as_slice() {
                if val_matches(f, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// The value at `path` in `resource` (an extension's attributes under its URN).
fn resolve<'a>(resource: &'a Map<String, Value>, path: &AttrPath) -> Option<&'a Value> {
    let holder = holder(resource, path.uri.as_deref())?;
    get(holder, &path.name)
}

/// A multi-valued attribute's elements, or a single value as one.
fn elements(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The values an attribute path yields: `emails.value` yields every email's value; a
/// complex multi-valued attribute compared whole yields its elements' `value`.
fn values<'a>(resource: &'a Map<String, Value>, path: &AttrPath) -> Vec<&'a Value> {
    let Some(found) = resolve(resource, path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in elements(found) {
        match (&path.sub_attr, item) {
            (Some(sub), Value::Object(map)) => {
                if let Some(v) = get(map, sub) {
                    out.extend(elements(v));
                }
            }
            (Some(_), _) => {}
            (None, Value::Object(map)) if found.is_array() => {
                if let Some(v) = get(map, "value") {
                    out.push(v);
                }
            }
            (None, v) => out.push(v),
        }
    }
    out
}

fn case_exact(path: &AttrPath) -> bool {
    match &path.sub_attr {
        None => {
            path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId")
        }
        Some(sub) => path.name.eq_ignore_ascii_case("meta") && sub.eq_ignore_ascii_case("version"),
    }
}

fn is_time(path: &AttrPath) -> bool {
    path.name.eq_ignore_ascii_case("meta")
        && path.sub_attr.as_deref().is_some_and(|s| {
            s.eq_ignore_ascii_case("created") || s.eq_ignore_ascii_case("lastModified")
        })
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        _ => true,
    }
}

fn attr(exp: &AttrExp, resource: &Map<String, Value>) -> Result<bool, ScimError> {
    match exp {
        AttrExp::Present(path) => Ok(values(resource, path).into_iter().any(present)),
        AttrExp::Comparison(path, op, wanted) => {
            let found = values(resource, path);
            if matches!(wanted, CompValue::Null) {
                let any = found.iter().any(|v| present(v));
                return match op {
                    CompareOp::Eq => Ok(!any),
                    CompareOp::Ne => Ok(any),
                    _ => Err(ScimError::InvalidFilter(format!(
                        "{path} can only be compared with null by eq or ne"
                    ))),
                };
            }
            if matches!(wanted, CompValue::True | CompValue::False)
                && !matches!(op, CompareOp::Eq | CompareOp::Ne)
            {
                return Err(ScimError::InvalidFilter(format!(
                    "booleans compare only by eq or ne ({path})"
                )));
            }
            let mut hit = false;
            for value in &found {
                if let Value::Object(_) | Value::Array(_) = value {
                    return Err(ScimError::InvalidFilter(format!(
                        "{path} is complex: name a sub-attribute"
                    )));
                }
                if compare(path, op, value, wanted)? {
                    hit = true;
                }
            }
            // `ne` holds when no value equals (also when there is none).
            if matches!(op, CompareOp::Ne) {
                return Ok(found
                    .iter()
                    .all(|v| compare(path, op, v, wanted).unwrap_or(false)));
            }
            Ok(hit)
        }
    }
}

fn compare(
    path: &AttrPath,
    op: &CompareOp,
    value: &Value,
    wanted: &CompValue,
) -> Result<bool, ScimError> {
    match (value, wanted) {
        (Value::Bool(b), CompValue::True | CompValue::False) => {
            let w = matches!(wanted, CompValue::True);
            Ok(match op {
                CompareOp::Eq => *b == w,
                CompareOp::Ne => *b != w,
                _ => false,
            })
        }
        // Entra sends `active eq "true"` sometimes; a string boolean compares as one.
        (Value::Bool(b), CompValue::Str(s))
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            let w = s.eq_ignore_ascii_case("true");
            Ok(match op {
                CompareOp::Eq => *b == w,
                CompareOp::Ne => *b != w,
                _ => false,
            })
        }
        (Value::Number(n), CompValue::Number(w)) => {
            let (Some(a), Some(b)) = (n.as_f64(), w.as_f64()) else {
                return Ok(false);
            };
            let order = a.partial_cmp(&b);
            Ok(ordered(op, order))
        }
        (Value::String(s), CompValue::Str(w)) => {
            if is_time(path) {
                let (Some(a), Some(b)) = (time(s), time(w)) else {
                    return Err(ScimError::InvalidFilter(format!(
                        "{path} compares with a date-time (RFC 3339), not {w:?}"
                    )));
                };
                return Ok(ordered(op, Some(a.cmp(&b))));
            }
            let (a, b) = if case_exact(path) {
                (s.clone(), w.clone())
            } else {
                (s.to_lowercase(), w.to_lowercase())
            };
            Ok(match op {
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordered(op, Some(a.cmp(&b))),
            })
        }
        (Value::Bool(_), _) | (_, CompValue::True | CompValue::False) => {
            if matches!(op, CompareOp::Eq | CompareOp::Ne) {
                Ok(matches!(op, CompareOp::Ne))
            } else {
                Err(ScimError::InvalidFilter(format!(
                    "booleans compare only by eq or ne ({path})"
                )))
            }
        }
        // Different types: never equal.
        _ => Ok(matches!(op, CompareOp::Ne)),
    }
}

fn ordered(op: &CompareOp, order: Option<Ordering>) -> bool {
    let Some(order) = order else { return false };
    match op {
        CompareOp::Eq => order == Ordering::Equal,
        CompareOp::Ne => order != Ordering::Equal,
        CompareOp::Gt => order == Ordering::Greater,
        CompareOp::Ge => order != Ordering::Less,
        CompareOp::Lt => order == Ordering::Less,
        CompareOp::Le => order != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ada() -> Map<String, Value> {
        json!({
            "id": "usr_A",
            "externalId": "00u1",
            "userName": "Ada@Example.com",
            "displayName": "Ada Lovelace",
            "active": true,
            "emails": [
                {"value": "ada@example.com", "type": "work", "primary": true},
                {"value": "ada@home.example", "type": "home"}
            ],
            "groups": [{"value": "grp_1", "display": "segment-analysts"}],
            "meta": {"created": "2026-01-02T03:04:05Z", "lastModified": "2026-06-01T00:00:00Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Maths"}
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    fn check(text: &str) -> bool {
        let filter = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        matches(&filter, &ada()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn operators_on_the_attributes_identity_providers_filter_by() {
        for (text, want) in [
            (r#"userName eq "ada@example.com""#, true),
            (r#"USERNAME Eq "ADA@EXAMPLE.COM""#, true),
            (r#"userName ne "ada@example.com""#, false),
            (r#"userName co "example""#, true),
            (r#"userName sw "ada@""#, true),
            (r#"userName ew ".org""#, false),
            (r#"externalId eq "00u1""#, true),
            (r#"externalId eq "00U1""#, false),
            (r#"id eq "usr_A""#, true),
            (r#"emails.value eq "ada@home.example""#, true),
            (
                r#"emails[type eq "work" and value co "@example.com"]"#,
                true,
            ),
            (r#"emails[type eq "home" and primary eq true]"#, false),
            (r#"displayName pr"#, true),
            (r#"title pr"#, false),
            (r#"active eq true"#, true),
            (r#"active eq "true""#, true),
            (r#"active ne true"#, false),
            (r#"meta.created gt "2026-01-01T00:00:00Z""#, true),
            (r#"meta.lastModified lt "2026-01-01T00:00:00+00:00""#, false),
            (r#"groups.value eq "grp_1""#, true),
            (r#"groups eq "grp_1""#, true),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "maths""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "ada""#,
                true,
            ),
            (
                r#"not (userName eq "x") and (active eq false or displayName co "love")"#,
                true,
            ),
            (r#"userName eq "x" or emails[type eq "home"]"#, true),
            (r#"title eq null"#, true),
            (r#"title ne "x""#, true),
        ] {
            assert_eq!(check(text), want, "{text}");
        }
    }

    #[test]
    fn impossible_comparisons_and_bad_text_are_invalid_filters() {
        for text in [
            "active gt true",
            r#"meta.created gt "yesterday""#,
            r#"userName eq"#,
            r#"userName xx "a""#,
            r#"(userName eq "a""#,
        ] {
            let refused = parse(text).and_then(|f| matches(&f, &ada()));
            assert!(
                matches!(refused, Err(ScimError::InvalidFilter(_))),
                "{text}: {refused:?}"
            );
        }
    }

    #[test]
    fn absurd_depth_and_length_are_refused_without_recursion_trouble() {
        let deep = format!("{}userName eq \"a\"{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(parse(&deep), Err(ScimError::InvalidFilter(_))));
        let nested = format!(
            "{}userName eq \"a\"{}",
            "not (".repeat(100),
            ")".repeat(100)
        );
        assert!(matches!(parse(&nested), Err(ScimError::InvalidFilter(_))));
    }
}
