//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' annotations and
//! the answer types they construct (each resource's own, and [`super::wire`]'s envelope);
//! served at `/api/v1/openapi.json` and committed as
//! `docs/openapi.json` (a test keeps the two equal; schemathesis checks the server
//! against it in CI).

use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};

use super::{
    access, audit, catalog, destinations, grants, groups, internal, invites, labels, nodes,
    permissions, plans, roles, source_settings, sources, tokens, users, wire, workspace,
};

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
        audit::catalog,
        internal::catalog,
        internal::list
    ),
    components(schemas(wire::ErrorEnvelope)),
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
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
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

/// The document as pretty JSON (what is served and committed).
pub fn json() -> String {
    Doc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `GET /api/v1/openapi.json` (no token needed).
pub async fn serve() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json(),
    )
        .into_response()
}
