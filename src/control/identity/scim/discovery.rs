//! SCIM discovery (RFC 7644 §4): what this server supports, its resource types and
//! their schemas, so an identity provider can configure itself.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::resource::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use super::{MAX_RESULTS, Provisioner, ScimError, answer};
use crate::control::api::Api;

const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// `GET /ServiceProviderConfig`.
pub async fn service_provider_config(State(_api): State<Arc<Api>>, who: Provisioner) -> Response {
    answer(
        StatusCode::OK,
        &json!({
            "schemas": [SPC],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A workspace SCIM token (slc_scim_…) in Authorization: Bearer",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/ServiceProviderConfig", who.base),
            },
        }),
    )
}

fn resource_types_of(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "A member of the workspace",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "A group of members: a grant principal, mapped to a role by name",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

fn list_of(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

/// `GET /ResourceTypes`.
pub async fn resource_types(State(_api): State<Arc<Api>>, who: Provisioner) -> Response {
    answer(StatusCode::OK, &list_of(resource_types_of(&who.base)))
}

/// `GET /ResourceTypes/{name}`.
pub async fn resource_type(
    State(_api): State<Arc<Api>>,
    who: Provisioner,
    Path(name): Path<String>,
) -> Result<Response, ScimError> {
    resource_types_of(&who.base)
        .into_iter()
        .find(|t| t["id"] == json!(name))
        .map(|t| answer(StatusCode::OK, &t))
        .ok_or_else(|| ScimError::NotFound(format!("ResourceType {name}")))
}

/// An attribute definition (RFC 7643 §7).
fn attr(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    uniqueness: &str,
) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": name,
        "required": required,
        "caseExact": matches!(name, "id" | "externalId"),
        "mutability": mutability,
        "returned": if name == "password" { "never" } else { "default" },
        "uniqueness": uniqueness,
    })
}

/// A reference attribute to resources of `types` (`User`, `Group`, `external`).
fn reference(name: &str, mutability: &str, types: &[&str]) -> Value {
    let mut a = attr(name, "reference", false, false, mutability, "none");
    a["referenceTypes"] = json!(types);
    a
}

fn complex(name: &str, multi: bool, mutability: &str, subs: Vec<Value>) -> Value {
    let mut a = attr(name, "complex", multi, false, mutability, "none");
    a["subAttributes"] = Value::Array(subs);
    a
}

fn schemas_of(base: &str) -> Vec<Value> {
    let rw = "readWrite";
    let multi_sub = |extra: Vec<Value>| {
        let mut subs = vec![
            attr("value", "string", false, false, rw, "none"),
            attr("display", "string", false, false, rw, "none"),
            attr("type", "string", false, false, rw, "none"),
            attr("primary", "boolean", false, false, rw, "none"),
        ];
        subs.extend(extra);
        subs
    };
    let user = json!({
        "schemas": [SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A member of the workspace",
        "attributes": [
            attr("userName", "string", false, true, rw, "server"),
            complex("name", false, rw, vec![
                attr("formatted", "string", false, false, rw, "none"),
                attr("familyName", "string", false, false, rw, "none"),
                attr("givenName", "string", false, false, rw, "none"),
                attr("middleName", "string", false, false, rw, "none"),
                attr("honorificPrefix", "string", false, false, rw, "none"),
                attr("honorificSuffix", "string", false, false, rw, "none"),
            ]),
            attr("displayName", "string", false, false, rw, "none"),
            attr("nickName", "string", false, false, rw, "none"),
            reference("profileUrl", rw, &["external"]),
            attr("title", "string", false, false, rw, "none"),
            attr("userType", "string", false, false, rw, "none"),
            attr("preferredLanguage", "string", false, false, rw, "none"),
            attr("locale", "string", false, false, rw, "none"),
            attr("timezone", "string", false, false, rw, "none"),
            attr("active", "boolean", false, false, rw, "none"),
            attr("password", "string", false, false, "writeOnly", "none"),
            complex("emails", true, rw, multi_sub(vec![])),
            complex("phoneNumbers", true, rw, multi_sub(vec![])),
            complex("ims", true, rw, multi_sub(vec![])),
            complex("photos", true, rw, multi_sub(vec![])),
            complex("addresses", true, rw, vec![
                attr("formatted", "string", false, false, rw, "none"),
                attr("streetAddress", "string", false, false, rw, "none"),
                attr("locality", "string", false, false, rw, "none"),
                attr("region", "string", false, false, rw, "none"),
                attr("postalCode", "string", false, false, rw, "none"),
                attr("country", "string", false, false, rw, "none"),
                attr("type", "string", false, false, rw, "none"),
                attr("primary", "boolean", false, false, rw, "none"),
            ]),
            complex("groups", true, "readOnly", vec![
                attr("value", "string", false, false, "readOnly", "none"),
                reference("$ref", "readOnly", &["Group"]),
                attr("display", "string", false, false, "readOnly", "none"),
                attr("type", "string", false, false, "readOnly", "none"),
            ]),
            complex("entitlements", true, rw, multi_sub(vec![])),
            complex("roles", true, rw, multi_sub(vec![])),
            complex("x509Certificates", true, rw, multi_sub(vec![])),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}")},
    });
    let group = json!({
        "schemas": [SCHEMA],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "A group of members",
        "attributes": [
            attr("displayName", "string", false, true, rw, "server"),
            complex("members", true, rw, vec![
                attr("value", "string", false, false, "immutable", "none"),
                reference("$ref", "immutable", &["User"]),
                attr("display", "string", false, false, "readOnly", "none"),
                attr("type", "string", false, false, "immutable", "none"),
            ]),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{GROUP_SCHEMA}")},
    });
    let enterprise = json!({
        "schemas": [SCHEMA],
        "id": ENTERPRISE_SCHEMA,
        "name": "EnterpriseUser",
        "description": "Enterprise user",
        "attributes": [
            attr("employeeNumber", "string", false, false, rw, "none"),
            attr("costCenter", "string", false, false, rw, "none"),
            attr("organization", "string", false, false, rw, "none"),
            attr("division", "string", false, false, rw, "none"),
            attr("department", "string", false, false, rw, "none"),
            complex("manager", false, rw, vec![
                attr("value", "string", false, false, rw, "none"),
                reference("$ref", rw, &["User"]),
                attr("displayName", "string", false, false, "readOnly", "none"),
            ]),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{ENTERPRISE_SCHEMA}")},
    });
    vec![user, group, enterprise]
}

/// `GET /Schemas`.
pub async fn schemas(State(_api): State<Arc<Api>>, who: Provisioner) -> Response {
    answer(StatusCode::OK, &list_of(schemas_of(&who.base)))
}

/// `GET /Schemas/{id}`.
pub async fn schema(
    State(_api): State<Arc<Api>>,
    who: Provisioner,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    schemas_of(&who.base)
        .into_iter()
        .find(|s| {
            s["id"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(&id))
        })
        .map(|s| answer(StatusCode::OK, &s))
        .ok_or_else(|| ScimError::NotFound(format!("Schema {id}")))
}
