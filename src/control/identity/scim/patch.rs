//! SCIM PATCH (RFC 7644 §3.5.2) applied to a resource held as JSON; the handler then
//! stores the result as it would a PUT, so a PATCH is never partly applied.
//!
//! Besides the RFC's shapes, what identity providers send: operation names in any case
//! (`Replace`), no path with a value object whose keys are attributes, dotted paths
//! (`name.givenName`) or extension URNs (Okta, Entra), removal of members by a value
//! array (Entra) or by `members[value eq "…"]` (Okta), and adding to
//! `emails[type eq "work"].value` when no such email exists yet (Entra).

use std::str::FromStr;

use scim_v2::filter::{AttrExp, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::val_matches;
use super::resource::{is_core, is_urn, key_of, split_urn};

/// The PatchOp message schema.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Replace,
}

/// Applies a PatchOp request `body` to `resource`.
pub fn apply(resource: &mut Map<String, Value>, body: &Value) -> Result<(), ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::InvalidSyntax(
            "a PATCH body is a JSON object".into(),
        ));
    };
    let operations = body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .map(|(_, v)| v)
        .ok_or_else(|| ScimError::InvalidSyntax("a PATCH body needs \"Operations\"".into()))?;
    let Value::Array(operations) = operations else {
        return Err(ScimError::InvalidSyntax(
            "\"Operations\" is an array".into(),
        ));
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::InvalidValue(format!(
            "at most {MAX_OPERATIONS} operations per PATCH"
        )));
    }
    for operation in operations {
        let Value::Object(operation) = operation else {
            return Err(ScimError::InvalidSyntax(
                "each operation is a JSON object".into(),
            ));
        };
        let field = |name: &str| {
            operation
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let op = match field("op").and_then(Value::as_str) {
            Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
            Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
            Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
            other => {
                return Err(ScimError::InvalidValue(format!(
                    "op is add, remove or replace, not {other:?}"
                )));
            }
        };
        let path = match field("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(p.as_str()),
            Some(_) => return Err(ScimError::InvalidPath("path is a string".into())),
        };
        let value = field("value").filter(|v| !v.is_null()).cloned();
        one(resource, op, path, value)?;
    }
    Ok(())
}

fn one(
    resource: &mut Map<String, Value>,
    op: Op,
    path: Option<&str>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(path) = path else {
        if op == Op::Remove {
            return Err(ScimError::NoTarget("remove needs a path".into()));
        }
        let Some(Value::Object(fields)) = value else {
            return Err(ScimError::InvalidValue(
                "an operation without a path takes an object of attributes".into(),
            ));
        };
        for (key, inner) in fields {
            match (split_urn(&key), inner) {
                // An extension's attributes as an object under its URN.
                ((Some(uri), ""), Value::Object(attrs)) if !is_core(uri) => {
                    for (name, v) in attrs {
                        one(resource, op, Some(&format!("{uri}:{name}")), Some(v))?;
                    }
                }
                ((Some(_), ""), Value::Object(attrs)) => {
                    for (name, v) in attrs {
                        one(resource, op, Some(&name), Some(v))?;
                    }
                }
                (_, inner) => one(resource, op, Some(&key), Some(inner))?,
            }
        }
        return Ok(());
    };
    // An extension as a whole, named by its URN.
    if let (Some(uri), "") = split_urn(path)
        && !is_core(uri)
    {
        let key = key_of(resource, uri).unwrap_or_else(|| uri.to_owned());
        return whole(resource, op, &key, value);
    }
    let parsed = PatchPath::from_str(path)
        .map_err(|e| ScimError::InvalidPath(format!("invalid path {path:?}: {e}")))?;
    match parsed {
        PatchPath::Attr(attr) => {
            let holder = holder_mut(resource, attr.uri.as_deref(), op != Op::Remove)?;
            let Some(holder) = holder else { return Ok(()) };
            match attr.sub_attr {
                None => whole(holder, op, &attr.name, value),
                Some(sub) => {
                    let key = match key_of(holder, &attr.name) {
                        Some(key) => key,
                        None if op == Op::Remove => return Ok(()),
                        None => {
                            holder.insert(attr.name.clone(), Value::Object(Map::new()));
                            attr.name.clone()
                        }
                    };
                    match holder.get_mut(&key) {
                        Some(Value::Object(inner)) => whole(inner, op, &sub, value),
                        Some(Value::Array(items)) => {
                            for item in items.iter_mut() {
                                if let Value::Object(inner) = item {
                                    whole(inner, op, &sub, value.clone())?;
                                }
                            }
                            Ok(())
                        }
                        _ => Err(ScimError::InvalidPath(format!(
                            "{path}: {} is not complex",
                            attr.name
                        ))),
                    }
                }
            }
        }
        PatchPath::Value(vp) => {
            let holder = holder_mut(resource, vp.attr.uri.as_deref(), op != Op::Remove)?;
            let Some(holder) = holder else { return Ok(()) };
            let key = key_of(holder, &vp.attr.name).unwrap_or_else(|| vp.attr.name.clone());
            let items = holder
                .entry(key.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = items else {
                return Err(ScimError::InvalidPath(format!(
                    "{path}: {key} is not multi-valued"
                )));
            };
            let mut hits = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(map) = item
                    && val_matches(&vp.filter, map)?
                {
                    hits.push(i);
                }
            }
            match (op, vp.sub_attr) {
                (Op::Remove, None) => {
                    let mut i = 0;
                    items.retain(|_| {
                        let keep = !hits.contains(&i);
                        i += 1;
                        keep
                    });
                }
                (Op::Remove, Some(sub)) => {
                    for i in hits {
                        if let Some(Value::Object(map)) = items.get_mut(i)
                            && let Some(k) = key_of(map, &sub)
                        {
                            map.remove(&k);
                        }
                    }
                }
                (_, Some(sub)) => {
                    let value = value
                        .ok_or_else(|| ScimError::InvalidValue(format!("{path} needs a value")))?;
                    if hits.is_empty() {
                        // Entra adds `emails[type eq "work"].value` to a user without one.
                        let mut made = equalities(&vp.filter).ok_or_else(|| {
                            ScimError::NoTarget(format!("{path} matches no value"))
                        })?;
                        made.insert(sub.clone(), value.clone());
                        items.push(Value::Object(made));
                    }
                    for i in hits {
                        if let Some(Value::Object(map)) = items.get_mut(i) {
                            let k = key_of(map, &sub).unwrap_or_else(|| sub.clone());
                            map.insert(k, value.clone());
                        }
                    }
                }
                (_, None) => {
                    let Some(Value::Object(value)) = value else {
                        return Err(ScimError::InvalidValue(format!("{path} takes an object")));
                    };
                    if hits.is_empty() {
                        if op == Op::Replace {
                            return Err(ScimError::NoTarget(format!("{path} matches no value")));
                        }
                        items.push(Value::Object(value.clone()));
                    }
                    for i in hits {
                        if let Some(Value::Object(map)) = items.get_mut(i) {
                            for (k, v) in &value {
                                let k = key_of(map, k).unwrap_or_else(|| k.clone());
                                map.insert(k, v.clone());
                            }
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// The object that holds schema `uri`'s attributes, made when `create` and missing.
fn holder_mut<'a>(
    resource: &'a mut Map<String, Value>,
    uri: Option<&str>,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, ScimError> {
    let Some(uri) = uri.filter(|u| !is_core(u)) else {
        return Ok(Some(resource));
    };
    if !is_urn(uri) {
        return Err(ScimError::InvalidPath(format!("{uri} is not a schema URN")));
    }
    let key = match key_of(resource, uri) {
        Some(key) => key,
        None if create => {
            resource.insert(uri.to_owned(), Value::Object(Map::new()));
            uri.to_owned()
        }
        None => return Ok(None),
    };
    match resource.get_mut(&key) {
        Some(Value::Object(map)) => Ok(Some(map)),
        _ => Err(ScimError::InvalidPath(format!("{uri} is not an object"))),
    }
}

/// An operation on attribute `name` of `holder` as a whole.
fn whole(
    holder: &mut Map<String, Value>,
    op: Op,
    name: &str,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let key = key_of(holder, name);
    match op {
        Op::Remove => {
            let Some(key) = key else { return Ok(()) };
            match (holder.get_mut(&key), value) {
                // Entra: remove these members (by their `value`).
                (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                    let gone: std::collections::HashSet<String> =
                        gone.iter().map(|g| item_key(g).to_string()).collect();
                    items.retain(|item| !gone.contains(&item_key(item).to_string()));
                }
                _ => {
                    holder.remove(&key);
                }
            }
            Ok(())
        }
        Op::Replace => {
            let value = value.ok_or_else(|| {
                ScimError::InvalidValue(format!("replace of {name} needs a value"))
            })?;
            holder.insert(key.unwrap_or_else(|| name.to_owned()), value);
            Ok(())
        }
        Op::Add => {
            let value = value
                .ok_or_else(|| ScimError::InvalidValue(format!("add to {name} needs a value")))?;
            let key = key.unwrap_or_else(|| name.to_owned());
            match (holder.get_mut(&key), value) {
                (Some(Value::Array(items)), Value::Array(more)) => {
                    let mut seen: std::collections::HashSet<String> =
                        items.iter().map(|i| item_key(i).to_string()).collect();
                    for item in more {
                        if seen.insert(item_key(&item).to_string()) {
                            items.push(item);
                        }
                    }
                }
                (Some(Value::Array(items)), one) => {
                    if !items.iter().any(|i| item_key(i) == item_key(&one)) {
                        items.push(one);
                    }
                }
                (Some(Value::Object(map)), Value::Object(more)) => {
                    for (k, v) in more {
                        let k = key_of(map, &k).unwrap_or(k);
                        map.insert(k, v);
                    }
                }
                (_, value) => {
                    holder.insert(key, value);
                }
            }
            Ok(())
        }
    }
}

/// What identifies an element of a multi-valued attribute: its `value` when it has one.
fn item_key(item: &Value) -> &Value {
    match item {
        Value::Object(map) => map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("value"))
            .map_or(item, |(_, v)| v),
        other => other,
    }
}

/// The attributes a value filter fixes by `eq` alone (`type eq "work"` → `{type: work}`),
/// or `None` when it says anything else.
fn equalities(filter: &ValFilter) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut add = |f: &ValFilter| -> Option<()> {
        let ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value)) = f else {
            return None;
        };
        let value = match value {
            CompValue::Str(s) => Value::String(s.clone()),
            CompValue::True => Value::Bool(true),
            CompValue::False => Value::Bool(false),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::Null => return None,
        };
        out.insert(path.name.clone(), value);
        Some(())
    };
    match filter {
        ValFilter::And(all) => {
            for f in all.as_slice() {
                add(f)?;
            }
        }
        other => add(other)?,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(resource: Value, ops: Value) -> Value {
        let mut map = resource.as_object().cloned().unwrap_or_default();
        apply(
            &mut map,
            &json!({"schemas": [PATCH_SCHEMA], "Operations": ops}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Value::Object(map)
    }

    #[test]
    fn entra_shapes() {
        let user = json!({"userName": "a@x", "active": true, "name": {"givenName": "A"}});
        let got = patched(
            user,
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b.example"},
                {"op": "Replace", "path": "name.givenName", "value": "Ada"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "usr_m"}},
            ]),
        );
        assert_eq!(got["active"], json!("False"));
        assert_eq!(
            got["emails"],
            json!([{"type": "work", "value": "a@b.example"}])
        );
        assert_eq!(got["name"]["givenName"], json!("Ada"));
        assert_eq!(
            got["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"],
            json!({"value": "usr_m"})
        );
        let group = json!({"displayName": "g", "members": [{"value": "u1"}, {"value": "u2"}]});
        let got = patched(
            group,
            json!([
                {"op": "Add", "path": "members", "value": [{"value": "u3"}, {"value": "u1"}]},
                {"op": "Remove", "path": "members", "value": [{"value": "u2"}]},
            ]),
        );
        assert_eq!(got["members"], json!([{"value": "u1"}, {"value": "u3"}]));
    }

    #[test]
    fn okta_shapes() {
        let user = json!({"userName": "a@x", "active": true});
        let got = patched(
            user,
            json!([{"op": "replace", "value": {"active": false, "name.familyName": "L"}}]),
        );
        assert_eq!(got["active"], json!(false));
        assert_eq!(got["name"], json!({"familyName": "L"}));
        let group =
            json!({"id": "g", "displayName": "old", "members": [{"value": "u1"}, {"value": "u2"}]});
        let got = patched(
            group,
            json!([
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "replace", "value": {"id": "g", "displayName": "new"}},
            ]),
        );
        assert_eq!(got["members"], json!([{"value": "u2"}]));
        assert_eq!(got["displayName"], json!("new"));
    }

    #[test]
    fn bad_operations_are_refused_by_name() {
        let user = json!({"userName": "a@x", "emails": [{"value": "a@x", "type": "work"}]});
        for (ops, want) in [
            (json!([{"op": "move", "path": "userName"}]), "invalidValue"),
            (json!([{"op": "remove"}]), "noTarget"),
            (
                json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "b"}}]),
                "noTarget",
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq", "value": 1}]),
                "invalidPath",
            ),
            (json!([{"op": "add", "value": "x"}]), "invalidValue"),
            (json!("nope"), "invalidSyntax"),
        ] {
            let mut map = user.as_object().cloned().unwrap_or_default();
            let body = if ops.is_array() {
                json!({"Operations": ops})
            } else {
                ops
            };
            let got = apply(&mut map, &body);
            let kind = match got {
                Err(ScimError::InvalidValue(_)) => "invalidValue",
                Err(ScimError::NoTarget(_)) => "noTarget",
                Err(ScimError::InvalidPath(_)) => "invalidPath",
                Err(ScimError::InvalidSyntax(_)) => "invalidSyntax",
                other => panic!("{other:?}"),
            };
            assert_eq!(kind, want);
        }
    }
}
