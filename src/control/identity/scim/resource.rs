//! Reading a SCIM resource held as JSON: attribute names are case-insensitive
//! (RFC 7643 §2.1), an attribute of an extension lives under its schema URN, and a list
//! answer keeps only the attributes asked for (RFC 7644 §3.9).

use serde_json::{Map, Value};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The key of `map` equal to `name` ignoring ASCII case.
pub fn key_of(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// `map[name]`, ignoring ASCII case.
pub fn get<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Whether `uri` names one of the core schemas (attributes of which sit at the top).
pub fn is_core(uri: &str) -> bool {
    uri.eq_ignore_ascii_case(USER_SCHEMA) || uri.eq_ignore_ascii_case(GROUP_SCHEMA)
}

/// Whether `key` is a schema URN (an extension's attributes sit under it).
pub fn is_urn(key: &str) -> bool {
    key.get(..4)
        .is_some_and(|head| head.eq_ignore_ascii_case("urn:"))
}

/// The object that holds the attributes of schema `uri` in `resource` (the resource
/// itself for a core schema or none).
pub fn holder<'a>(
    resource: &'a Map<String, Value>,
    uri: Option<&str>,
) -> Option<&'a Map<String, Value>> {
    match uri {
        None => Some(resource),
        Some(uri) if is_core(uri) => Some(resource),
        Some(uri) => get(resource, uri).and_then(Value::as_object),
    }
}

/// Attributes that every answer carries whatever `attributes` says.
const ALWAYS: [&str; 2] = ["id", "schemas"];

/// `resource` with only the `attributes` asked for (plus `id` and `schemas`), or
/// without the `excluded` ones. Names are `attr`, `attr.sub` or `urn:…:attr[.sub]`.
pub fn project(
    mut resource: Map<String, Value>,
    attributes: &[String],
    excluded: &[String],
) -> Map<String, Value> {
    if !attributes.is_empty() {
        let mut kept = Map::new();
        for (key, value) in std::mem::take(&mut resource) {
            if ALWAYS.iter().any(|a| a.eq_ignore_ascii_case(&key)) {
                kept.insert(key, value);
                continue;
            }
            if let Some(value) = keep_asked(&key, value, attributes) {
                kept.insert(key, value);
            }
        }
        return kept;
    }
    for path in excluded {
        let (uri, rest) = split_urn(path);
        let holder = match uri {
            Some(uri) if !is_core(uri) => match key_of(&resource, uri) {
                Some(k) => resource.get_mut(&k).and_then(Value::as_object_mut),
                None => None,
            },
            _ => Some(&mut resource),
        };
        let Some(holder) = holder else { continue };
        let (name, sub) = rest
            .split_once('.')
            .map_or((rest, None), |(n, s)| (n, Some(s)));
        if ALWAYS.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            continue;
        }
        let Some(key) = key_of(holder, name) else {
            continue;
        };
        match sub {
            None => {
                holder.remove(&key);
            }
            Some(sub) => drop_sub(holder.get_mut(&key), sub),
        }
    }
    resource
}

/// What of attribute `key` (holding `value`) the asked `attributes` keep.
fn keep_asked(key: &str, value: Value, attributes: &[String]) -> Option<Value> {
    if is_urn(key) {
        // An extension: asked whole, or some of its attributes.
        let asked: Vec<String> = attributes
            .iter()
            .filter_map(|a| {
                let (uri, rest) = split_urn(a);
                match uri {
                    Some(uri) if uri.eq_ignore_ascii_case(key) => Some(rest.to_owned()),
                    _ if a.eq_ignore_ascii_case(key) => Some(String::new()),
                    _ => None,
                }
            })
            .collect();
        if asked.iter().any(String::is_empty) {
            return Some(value);
        }
        if asked.is_empty() {
            return None;
        }
        let Value::Object(inner) = value else {
            return None;
        };
        let kept: Map<String, Value> = inner
            .into_iter()
            .filter_map(|(k, v)| keep_asked(&k, v, &asked).map(|v| (k, v)))
            .collect();
        return Some(Value::Object(kept));
    }
    let mut subs = Vec::new();
    for asked in attributes {
        let (uri, rest) = split_urn(asked);
        if uri.is_some_and(|u| !is_core(u)) {
            continue;
        }
        let (name, sub) = rest
            .split_once('.')
            .map_or((rest, None), |(n, s)| (n, Some(s)));
        if !name.eq_ignore_ascii_case(key) {
            continue;
        }
        match sub {
            None => return Some(value),
            Some(sub) => subs.push(sub.to_owned()),
        }
    }
    if subs.is_empty() {
        return None;
    }
    Some(keep_subs(value, &subs))
}

fn keep_subs(value: Value, subs: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| keep_subs(v, subs)).collect())
        }
        other => other,
    }
}

fn drop_sub(value: Option<&mut Value>, sub: &str) {
    match value {
        Some(Value::Object(map)) => {
            if let Some(k) = key_of(map, sub) {
                map.remove(&k);
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                drop_sub(Some(item), sub);
            }
        }
        _ => {}
    }
}

/// Splits `urn:…:User:name.givenName` into the URN and `name.givenName` (a name alone
/// has no URN).
pub fn split_urn(path: &str) -> (Option<&str>, &str) {
    if !is_urn(path) {
        return (None, path);
    }
    for known in [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA] {
        let (Some(head), Some(rest)) = (path.get(..known.len()), path.get(known.len()..)) else {
            continue;
        };
        if head.eq_ignore_ascii_case(known) {
            if rest.is_empty() {
                return (Some(head), "");
            }
            if let Some(rest) = rest.strip_prefix(':') {
                return (Some(head), rest);
            }
        }
    }
    match path.rsplit_once(':') {
        Some((uri, rest)) => (Some(uri), rest),
        None => (Some(path), ""),
    }
}

/// A comma-separated `attributes` / `excludedAttributes` parameter.
pub fn attribute_list(param: Option<&str>) -> Vec<String> {
    param
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
            "id": "usr_1",
            "userName": "ada@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "primary": true}],
            ENTERPRISE_SCHEMA: {"department": "Maths", "costCenter": "7"},
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    #[test]
    fn asked_attributes_keep_id_and_schemas_and_subattributes() {
        let asked = attribute_list(Some(
            "userName, name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        ));
        let got = Value::Object(project(user(), &asked, &[]));
        assert_eq!(
            got,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
                "id": "usr_1",
                "userName": "ada@example.com",
                "name": {"givenName": "Ada"},
                ENTERPRISE_SCHEMA: {"department": "Maths"},
            })
        );
    }

    #[test]
    fn excluded_attributes_go_but_id_stays() {
        let excluded = attribute_list(Some("emails,ID,name.familyName"));
        let got = project(user(), &[], &excluded);
        assert!(got.get("emails").is_none());
        assert_eq!(got.get("id"), Some(&json!("usr_1")));
        assert_eq!(got.get("name"), Some(&json!({"givenName": "Ada"})));
    }

    #[test]
    fn urns_split_at_the_attribute() {
        assert_eq!(
            split_urn("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"),
            (Some(USER_SCHEMA), "name.givenName")
        );
        assert_eq!(split_urn(ENTERPRISE_SCHEMA), (Some(ENTERPRISE_SCHEMA), ""));
        assert_eq!(split_urn("userName"), (None, "userName"));
    }
}
