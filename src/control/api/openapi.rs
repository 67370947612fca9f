//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' annotations and
//! the answer types they construct (each resource's own, and [`super::wire`]'s envelope);
//! served at `/api/v1/openapi.json` and committed as
//! `docs/openapi.json` (a test keeps the two equal; schemathesis checks the server
//! against it in CI).

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};

use crate::control::policy::Role;

use axum::http::Method;

use super::{
    access, access_reviews, audit, catalog, change_requests, consent, destinations, elevations,
    evidence, function_instances, function_runs, functions, grants, groups, internal, invites,
    labels, nodes, offboarding, permissions, pii, plans, protected, provisioning, regulations,
    roles, sign_in, source_functions, source_settings, sources, sso, tokens, usage, users, wire,
    workspace,
};
use crate::control::identity::reset;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice control plane API",
        description = "Sources, write keys, destinations, tracking plans, members, groups, grants, tokens and the audit trail of a Sluice workspace. Compatible with Segment's Public API for the resources both have. Every request needs `Authorization: Bearer <token>`; errors are `{\"errors\":[{\"type\",\"message\",\"field\"}]}`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        sources::list,
        sources::create,
        sources::read,
        sources::update,
        sources::remove,
        sources::add_key,
        sources::remove_key,
        sources::list_keys,
        sources::add_labels,
        sources::replace_labels,
        sources::connected,
        sources::warehouses,
        source_settings::read,
        source_settings::update,
        destinations::list,
        destinations::create,
        destinations::read,
        destinations::update,
        destinations::remove,
        destinations::credentials,
        plans::list,
        plans::create,
        plans::read,
        plans::rename,
        plans::remove,
        plans::rules,
        plans::replace_rules,
        plans::update_rules,
        plans::remove_rules,
        plans::plan_sources,
        access_reviews::open,
        access_reviews::list,
        access_reviews::read,
        access_reviews::items,
        access_reviews::decide,
        access_reviews::close,
        access_reviews::evidence,
        evidence::user_report,
        evidence::workspace_report,
        elevations::request,
        elevations::list,
        elevations::read,
        elevations::approve,
        elevations::deny,
        elevations::end,
        offboarding::offboard,
        offboarding::list,
        offboarding::read,
        offboarding::rotate_write_keys,
        change_requests::propose,
        change_requests::list,
        change_requests::read,
        change_requests::approve,
        change_requests::reject,
        change_requests::withdraw,
        change_requests::rebase,
        plans::connect_source,
        plans::disconnect_source,
        workspace::workspace,
        workspace::settings,
        workspace::update_settings,
        users::list_users,
        users::read_user,
        users::update_user,
        users::remove_user,
        users::remove_users,
        invites::invite,
        invites::list_invites,
        invites::withdraw,
        roles::roles,
        groups::list_groups,
        groups::create_group,
        groups::read_group,
        groups::remove_group,
        groups::group_members,
        groups::add_members,
        groups::remove_member,
        groups::update_group,
        groups::group_invites,
        groups::groups_of_user,
        groups::replace_members,
        groups::remove_members,
        permissions::add_to_user,
        permissions::replace_for_user,
        permissions::add_to_group,
        permissions::replace_for_group,
        grants::list_grants,
        grants::create_grant,
        grants::remove_grant,
        provisioning::list_tokens,
        provisioning::create_token,
        provisioning::revoke_token,
        provisioning::list_mappings,
        provisioning::set_mapping,
        provisioning::delete_mapping,
        sso::list,
        sso::one,
        sso::create,
        sso::update,
        sso::remove,
        sso::test,
        sso::test_result,
        sign_in::policy,
        sign_in::update,
        sign_in::mark,
        sign_in::unmark,
        reset::create,
        labels::labels,
        labels::create_label,
        labels::delete_label,
        catalog::sources,
        catalog::source,
        catalog::destinations,
        catalog::destination,
        access::explain,
        tokens::list,
        tokens::create,
        tokens::read,
        tokens::revoke,
        tokens::rotate,
        nodes::list,
        nodes::create,
        nodes::read,
        nodes::revoke,
        audit::list,
        audit::chain,
        audit::catalog,
        internal::catalog,
        internal::suppressions,
        internal::report_function_errors,
        internal::report_usage,
        internal::list,
        usage::read,
        usage::set_workspace,
        usage::set_source,
        usage::recent,
        protected::list,
        protected::read,
        protected::approve,
        protected::reject,
        protected::withdraw,
        protected::read_labels,
        protected::set_labels,
        function_runs::test_run,
        functions::list,
        functions::create,
        functions::read,
        functions::update,
        functions::remove,
        functions::deploy,
        functions::versions,
        functions::version,
        functions::restore,
        functions::errors,
        function_instances::list,
        function_instances::create,
        function_instances::read,
        function_instances::update,
        function_instances::remove,
        source_functions::read,
        source_functions::put,
        source_functions::rotate,
        source_functions::remove,
        regulations::create,
        regulations::list,
        regulations::read,
        regulations::remove,
        regulations::create_for_source,
        regulations::list_for_source,
        regulations::suppressions,
        consent::read_source,
        consent::put_source,
        consent::read_destination,
        consent::put_destination,
        pii::read,
        pii::put
    ),
    components(schemas(
        wire::ErrorEnvelope,
        regulations::RegulationStatus,
        regulations::RegulationType
    )),
    modifiers(&Refusals),
)]
pub struct Doc;

/// The answers every operation may give besides its success, and the Bearer scheme.
struct Refusals;

impl utoipa::Modify for Refusals {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("slc_pat_…")
                    .build(),
            ),
        );
        api.security = Some(vec![SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
        let refusals = [
            ("400", "Invalid input; `field` names it"),
            (
                "401",
                "Missing, malformed, unknown, expired or revoked token",
            ),
            ("403", "The token's owner or scopes may not do this"),
            ("404", "No such resource, or one the caller may not see"),
            ("409", "A name or id is taken, or the change conflicts"),
            ("413", "Body larger than 1 MiB"),
            (
                "429",
                "The token's request budget is spent; see Retry-After",
            ),
        ];
        for (path, item) in &mut api.paths.paths {
            for (method, op) in [
                (Method::GET, &mut item.get),
                (Method::POST, &mut item.post),
                (Method::PUT, &mut item.put),
                (Method::PATCH, &mut item.patch),
                (Method::DELETE, &mut item.delete),
            ] {
                let Some(op) = op else { continue };
                if protected::guarded(&method, path.trim_start_matches("/api/v1")) {
                    let response = ResponseBuilder::new()
                        .description(
                            "The resource is protected: the change is kept as a resource \
                             change request for review (`{resourceChangeRequest}`)",
                        )
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                    "Data_ResourceChangeOne",
                                ))))
                                .build(),
                        )
                        .build();
                    op.responses
                        .responses
                        .insert("202".to_owned(), RefOr::T(response));
                }
                for (status, description) in refusals {
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                    "ErrorEnvelope",
                                ))))
                                .build(),
                        )
                        .build();
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert(RefOr::T(response));
                }
            }
        }
    }
}

/// The document as pretty JSON (what is served and committed): what the annotations
/// generate, with the rules they cannot state added.
pub fn json() -> String {
    let mut doc = match serde_json::to_value(Doc::openapi()) {
        Ok(doc) => doc,
        Err(e) => return format!("{{\"error\": \"{e}\"}}"),
    };
    state_the_rules(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Adds what the handlers check but the annotations cannot say, so that every request the
/// document allows is one the server takes (schemathesis checks both directions):
/// - a body whose fields are all optional may be left out ([`super::Body`] reads an
///   empty body as `{}`);
/// - a permission's role decides its resources: a workspace role may name none (the
///   workspace), a source role names at least one, each a `SOURCE` or one with labels;
/// - a token's expiry is `expiresAt` or `expiresInDays`, exactly one;
/// - a grant's target has its variant's fields only;
/// - a TRACK rule has a key;
/// - a function test run's event is an event with a handled `type`, or an array;
/// - an unsigned 32-bit field takes up to 2^32 - 1 (utoipa writes `int32`).
fn state_the_rules(doc: &mut Value) {
    optional_bodies(doc);
    unsigned_ranges(doc);
    rule_keys(doc);
    permission_roles(doc);
    grant_targets(doc);
    token_expiry(doc);
    protected_labels(doc);
    test_run_event(doc);
    subject_ids(doc);
    privacy_bounds(doc);
}

/// A destination's consent categories: at most [`crate::consent::MAX_CATEGORIES`], no
/// repeats, each 1 to [`crate::consent::MAX_CATEGORY_CHARS`] printable characters. A
/// source's PII rules: at most [`crate::pii::MAX_RULES`], each path dotted names, none
/// empty (what else a path may not do is in `scripts/schemathesis.toml`).
fn privacy_bounds(doc: &mut Value) {
    if let Some(consent) = schema_mut(doc, "DestinationConsent") {
        let categories = &mut consent["properties"]["categories"];
        categories["maxItems"] = json!(crate::consent::MAX_CATEGORIES);
        categories["uniqueItems"] = json!(true);
        categories["items"] = json!({
            "type": "string",
            "minLength": 1,
            "maxLength": crate::consent::MAX_CATEGORY_CHARS,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        });
    }
    if let Some(rules) = schema_mut(doc, "PiiRules") {
        rules["properties"]["rules"]["maxItems"] = json!(crate::pii::MAX_RULES);
    }
    if let Some(rule) = schema_mut(doc, "PiiRule") {
        rule["properties"]["path"]["pattern"] = json!("^[^.]+(\\.[^.]+)*$");
    }
}

/// A regulation's user ids are 1 to [`regulations::MAX_SUBJECT_CHARS`] characters.
fn subject_ids(doc: &mut Value) {
    if let Some(create) = schema_mut(doc, "CreateRegulation") {
        create["properties"]["subjectIds"]["items"] = json!({
            "type": "string",
            "minLength": 1,
            "maxLength": regulations::MAX_SUBJECT_CHARS,
            "pattern": "^[^\\u0000]*$",
        });
    }
}

/// A test run's event is an event object whose `type` has a handler, or an array of
/// events (run by `onBatch`).
fn test_run_event(doc: &mut Value) {
    if let Some(run) = schema_mut(doc, "TestRun") {
        let description = run["properties"]["event"]["description"].clone();
        let event = json!({
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["track", "identify", "page", "screen", "group", "alias"]}},
        });
        run["properties"]["event"] = json!({
            "description": description,
            "oneOf": [event, {"type": "array", "items": {"type": "object"}}],
        });
    }
}

/// A protected label is `key:value`, each part as a source label's (a slug).
fn protected_labels(doc: &mut Value) {
    if let Some(labels) = schema_mut(doc, "ProtectedLabels") {
        let part = super::SLUG_PATTERN
            .trim_start_matches('^')
            .trim_end_matches('$');
        labels["properties"]["labels"]["items"] = json!({
            "type": "string",
            "maxLength": 129,
            "pattern": format!("^{part}:{part}$"),
        });
    }
}

/// A TRACK rule names its event; a rule's JSON Schema is an object or a boolean.
fn rule_keys(doc: &mut Value) {
    // A TRACK rule names its event: `key` (or, in an update, `newKey`) is not empty.
    let named = |field: &str| json!({"required": [field], "properties": {field: {"type": "string", "minLength": 1}}});
    let not_track = json!({"properties": {"type": {"not": {"const": "TRACK"}}}});
    // A rule's JSON Schema is an object or a boolean (`true`, `false`), as JSON Schema
    // allows; an update may leave it out or null (`{}`).
    if let Some(rule) = schema_mut(doc, "RuleDoc") {
        rule["anyOf"] = json!([not_track, named("key")]);
        rule["properties"]["jsonSchema"]["type"] = json!(["object", "boolean"]);
    }
    if let Some(update) = schema_mut(doc, "RuleUpdate") {
        update["properties"]["jsonSchema"]["type"] = json!(["object", "boolean", "null"]);
        let mut kept = named("key");
        kept["properties"]["newKey"] = json!({"type": "null"});
        update["anyOf"] = json!([not_track, named("newKey"), kept]);
    }
}

/// A workspace role may name no resources (the workspace); a source role names at least
/// one, each a `SOURCE` or one with labels.
fn permission_roles(doc: &mut Value) {
    let workspace_roles: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
    let source_roles: Vec<&str> = permissions::SOURCE_ROLES
        .iter()
        .map(|(id, ..)| *id)
        .collect();
    let resource = json!({"$ref": "#/components/schemas/ResourceIn"});
    let source_resource = json!({"allOf": [resource, {"anyOf": [
        {"properties": {"type": {"const": "SOURCE"}}},
        {"required": ["labels"], "properties": {"labels": {"type": "array", "minItems": 1}}},
    ]}]});
    let role = |roles: &[&str], description: &str| json!({"type": "string", "enum": roles, "description": description});
    let permission = json!({
        "description": "One permission: a role on resources.",
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["roleId"],
                "properties": {
                    "roleId": role(&workspace_roles, "A workspace role."),
                    "resources": {
                        "type": "array",
                        "items": resource,
                        "description": "May be left out (the workspace); on sources or labels, the role's level there."
                    },
                },
            },
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["roleId", "resources"],
                "properties": {
                    "roleId": role(&source_roles, "A source role."),
                    "resources": {
                        "type": "array",
                        "minItems": 1,
                        "items": source_resource,
                        "description": "Sources (`SOURCE`), or resources with labels (every source carrying them)."
                    },
                },
            },
        ],
    });
    if let Some(slot) = schema_mut(doc, "PermissionIn") {
        *slot = permission;
    }
}

/// A grant's target takes its variant's fields only; label keys and values are slugs.
fn grant_targets(doc: &mut Value) {
    // A grant's target takes its variant's fields only; labels are slugs.
    if let Some(Value::Array(variants)) = doc.pointer_mut("/components/schemas/Target/oneOf") {
        for variant in variants {
            variant["additionalProperties"] = json!(false);
            for field in ["key", "value"] {
                if let Some(property) = variant.pointer_mut(&format!("/properties/{field}")) {
                    property["pattern"] = json!(super::SLUG_PATTERN);
                }
            }
        }
    }
}

/// A token's expiry is `expiresAt` or `expiresInDays`, exactly one.
fn token_expiry(doc: &mut Value) {
    if let Some(token) = schema_mut(doc, "CreateToken") {
        // Each branch: its field given (and not null), the other absent or null.
        token["oneOf"] = json!([
            {
                "required": ["expiresAt"],
                "properties": {"expiresAt": {"type": "string"}, "expiresInDays": {"type": "null"}},
            },
            {
                "required": ["expiresInDays"],
                "properties": {"expiresInDays": {"type": "integer"}, "expiresAt": {"type": "null"}},
            },
        ]);
    }
}

/// Marks a request body optional when its schema requires no field.
fn optional_bodies(doc: &mut Value) {
    let schemas = doc
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or_default();
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let Some(body) = operation.get_mut("requestBody") else {
            continue;
        };
        let target = body
            .pointer("/content/application~1json/schema/$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|name| schemas.get(name));
        let requires_nothing = target.is_some_and(|schema| {
            schema
                .get("required")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        });
        if requires_nothing {
            body["required"] = json!(false);
        }
    }
}

/// utoipa writes a `u32` as `int32` with `minimum` (0 or more): as written that stops at
/// 2^31 - 1, which the server does not. The API has no signed 32-bit field, so every such
/// schema is a `u32`: its range is stated.
fn unsigned_ranges(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let unsigned = map.get("format").and_then(Value::as_str) == Some("int32")
                && map
                    .get("minimum")
                    .and_then(Value::as_i64)
                    .is_some_and(|m| m >= 0);
            if unsigned {
                map.insert("format".into(), json!("int64"));
                map.entry("maximum").or_insert(json!(u32::MAX));
            }
            map.values_mut().for_each(unsigned_ranges);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_ranges),
        _ => {}
    }
}

fn schema_mut<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    doc.pointer_mut(&format!("/components/schemas/{name}"))
}

/// `GET /api/v1/openapi.json` (no token needed).
pub async fn serve() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json(),
    )
        .into_response()
}
