//! SCIM 2.0 provisioning over real HTTP against a running control plane: an identity
//! provider's token, Users and Groups with filters, paging and the PATCH shapes Entra
//! ID and Okta send, group mappings to roles, deprovisioning that takes access at once,
//! and every refusal in the RFC's error envelope.

mod common;

use common::control::{Api, as_person, server};
use common::databases::{self, TestDb};
use common::scim::{Scim, scim_token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::control::identity::password;
use sluice::control::store::passwords;

const PASSWORD: &str = "a long enough passphrase";
/// The SCIM error's `scimType` (and that the envelope is the RFC's).
fn scim_type(status: StatusCode, body: &Value) -> &str {
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], json!(status.as_u16().to_string()), "{body}");
    body["scimType"].as_str().unwrap_or_default()
}

/// The person signs in with a password (set in the store here; tests/control_saml.rs
/// walks the same life signing in with SAML); their session cookie and CSRF token.
async fn sign_in(api: &Api, db: &TestDb, user_id: &str, email: &str) -> (String, String) {
    let phc = password::hash(PASSWORD.into()).await.expect("hash");
    let mut change = db.store.change().await.expect("change");
    passwords::set(change.conn(), user_id, &phc, chrono::Utc::now())
        .await
        .expect("password");
    change.commit().await.expect("commit");
    let response = api
        .http
        .post(format!("{}/auth/login", api.base))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_owned();
    let body: Value = response.json().await.expect("json");
    (
        cookie,
        body["data"]["csrfToken"].as_str().expect("csrf").to_owned(),
    )
}

/// `PUT /identity/group-mappings/{group}` with `role`, as `token`.
async fn map_group(api: &Api, token: &str, group: &str, role: &str) -> (StatusCode, Value) {
    api.call(
        token,
        Method::PUT,
        &format!("/api/v1/identity/group-mappings/{group}"),
        Some(json!({"role": role})),
    )
    .await
}

async fn may(api: &Api, owner: &str, user: &str, action: &str, source: Option<&str>) -> bool {
    let mut path = format!("/api/v1/access/explain?userId={user}&action={action}");
    if let Some(source) = source {
        path.push_str(&format!("&resourceType=source&resourceId={source}"));
    }
    let (status, body) = api.get(owner, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["allowed"].as_bool().expect("allowed")
}

/// The issue's "done means", on each backend: provisioned into analysts → read-only;
/// moved to engineers → member at the next request; a group grant of full on a source →
/// they change it; deactivated → they lose access at once, sessions and tokens too.
#[tokio::test]
async fn provisioned_people_follow_their_identity_provider() {
    for db in databases::both().await {
        lifecycle(&db).await;
        db.finish().await;
    }
}

async fn lifecycle(db: &TestDb) {
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    for (group, role) in [
        ("segment-analysts", "read_only"),
        ("segment-engineers", "member"),
    ] {
        let (status, body) = map_group(&api, &owner, group, role).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let scim = Scim {
        api: &api,
        token: scim_token(&api, &owner).await,
    };

    let ada = scim
        .user(
            "ada@example.com",
            json!({"externalId": "00u1", "emails": [{"value": "ada@example.com", "primary": true, "type": "work"}]}),
        )
        .await;
    let analysts = scim.group("segment-analysts", &[&ada]).await;
    let engineers = scim.group("segment-engineers", &[]).await;

    // The Public API's IAM calls see what SCIM made.
    let (_, users) = api.get(&owner, "/api/v1/users").await;
    assert!(users.to_string().contains(&ada), "{users}");
    let (_, groups) = api.get(&owner, "/api/v1/groups").await;
    assert!(groups.to_string().contains("segment-analysts"), "{groups}");

    // Read-only: she sees the source and changes nothing.
    let session = sign_in(&api, db, &ada, "ada@example.com").await;
    let (status, body) = as_person(&api, &session, Method::GET, "/api/v1/sources/demo", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = as_person(
        &api,
        &session,
        Method::PATCH,
        "/api/v1/sources/demo",
        Some(json!({"name": "renamed by ada"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!may(&api, &owner, &ada, "create_source", None).await);
    // Moved to engineers (Okta's remove-by-filter, Entra's add): member at the next request.
    let (status, body) = scim
        .patch(
            &format!("/Groups/{analysts}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{ada}\"]")}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["members"], json!([]));
    let (status, body) = scim
        .patch(
            &format!("/Groups/{engineers}"),
            json!([{"op": "Add", "path": "members", "value": [{"value": ada}]}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(may(&api, &owner, &ada, "create_source", None).await);

    // A group grant of full on the source: she changes it.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/grants",
            json!({"principal": {"type": "group", "id": engineers}, "resource": {"kind": "source", "id": "demo"}, "level": "full"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = as_person(
        &api,
        &session,
        Method::PATCH,
        "/api/v1/sources/demo",
        Some(json!({"name": "staging, renamed by ada"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Deactivated (Entra's string boolean): session and token refused at once.
    let (status, body) = scim
        .patch(
            &format!("/Users/{ada}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], json!(false));
    assert_eq!(body["groups"], json!([]));
    let (status, _) = as_person(&api, &session, Method::GET, "/api/v1/sources/demo", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .http
        .post(format!("{}/auth/login", api.base))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .expect("login");
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a deactivated person signs in no more"
    );

    // Reactivated (Okta's path-less replace): read-only, no groups, no grants, the old
    // token still dead.
    let (status, body) = scim
        .patch(
            &format!("/Users/{ada}"),
            json!([{"op": "replace", "value": {"active": true}}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!may(&api, &owner, &ada, "create_source", None).await);
    assert!(!may(&api, &owner, &ada, "edit_source", Some("demo")).await);

    // DELETE removes her; she is gone from SCIM and the Public API.
    let (status, _) = scim
        .call(Method::DELETE, &format!("/Users/{ada}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = scim.get(&format!("/Users/{ada}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    scim_type(status, &body);

    // Every step is audited with the SCIM token as actor, and the chain verifies.
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    let events = body["data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for action in [
        "user.provision",
        "group.create",
        "group.member.add",
        "group.member.remove",
        "user.deactivate",
        "user.reactivate",
        "user.remove",
        "scim_token.create",
        "group_mapping.set",
    ] {
        assert!(
            events.iter().any(|e| e["type"] == json!(action)),
            "{action} audited: {body}"
        );
    }
    assert!(
        events
            .iter()
            .filter(|e| e["type"] == json!("user.provision"))
            .all(|e| e.to_string().contains("scim")),
        "{body}"
    );
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("verify");
    assert!(verified.is_ok(), "{verified:?}");
}

#[tokio::test]
async fn lists_filter_and_page_as_identity_providers_ask() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let scim = Scim {
        api: &api,
        token: scim_token(&api, &owner).await,
    };
    for i in 0..5 {
        scim.user(
            &format!("person{i}@example.com"),
            json!({"externalId": format!("ext-{i}"), "active": i != 3}),
        )
        .await;
    }
    let count = |body: &Value| body["totalResults"].as_u64().expect("total");
    for (filter, want) in [
        (r#"userName eq "PERSON1@example.com""#, 1),
        (r#"externalId eq "ext-2""#, 1),
        (r#"emails.value co "person""#, 5),
        (r#"emails[value sw "person4"]"#, 1),
        ("active eq false", 1),
        (r#"not (active eq false) and userName ew "example.com""#, 5),
        (
            r#"userName eq "person0@example.com" or userName eq "person1@example.com""#,
            2,
        ),
        (r#"meta.created gt "2000-01-01T00:00:00Z""#, 6),
        ("name.givenName pr", 6),
        ("displayName pr", 1),
        ("title pr", 0),
        (r#"userName ne "owner@example.com""#, 5),
    ] {
        let (status, body) = scim
            .get(&format!("/Users?filter={}", urlencode(filter)))
            .await;
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
        assert_eq!(count(&body), want, "{filter}: {body}");
    }
    // Pages: 1-based, counted, `count=0` answers only the total.
    let (_, page) = scim.get("/Users?startIndex=2&count=2").await;
    assert_eq!(count(&page), 6);
    assert_eq!(page["startIndex"], json!(2));
    assert_eq!(page["itemsPerPage"], json!(2));
    let (_, all) = scim.get("/Users").await;
    assert_eq!(page["Resources"][0]["id"], all["Resources"][1]["id"]);
    let (_, none) = scim.get("/Users?count=0").await;
    assert_eq!(none["Resources"], json!([]));
    assert_eq!(count(&none), 6);
    // attributes / excludedAttributes.
    let (_, slim) = scim.get("/Users?attributes=userName&count=1").await;
    let first = slim["Resources"][0].as_object().expect("object");
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "schemas", "userName"]);
    let (_, slim) = scim
        .get("/Users?excludedAttributes=emails,groups&count=1")
        .await;
    assert!(slim["Resources"][0].get("emails").is_none());
    assert!(slim["Resources"][0].get("userName").is_some());

    // Bad filters: the RFC's invalidFilter, whatever the absurdity.
    let deep = format!("{}userName eq \"a\"{}", "(".repeat(3000), ")".repeat(3000));
    for filter in [
        "userName zz \"a\"",
        "active gt true",
        "userName eq",
        deep.as_str(),
    ] {
        let (status, body) = scim
            .get(&format!("/Users?filter={}", urlencode(filter)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{filter}");
        assert_eq!(scim_type(status, &body), "invalidFilter");
    }
    let (status, body) = scim.get("/Users?startIndex=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(scim_type(status, &body), "invalidValue");
    db.finish().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn refusals_answer_in_the_rfc_envelope_and_change_nothing() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let token = scim_token(&api, &owner).await;
    let scim = Scim {
        api: &api,
        token: token.clone(),
    };

    // No token, a personal token, a made-up one: 401 with the envelope.
    for bearer in [
        "",
        owner.as_str(),
        "slc_scim_0000000000000000000000000000000000000",
    ] {
        let response = api
            .http
            .get(format!("{}/scim/v2/Users", api.base))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json().await.expect("json");
        scim_type(StatusCode::UNAUTHORIZED, &body);
    }

    let ada = scim.user("ada@example.com", json!({})).await;
    // Uniqueness: userName in any case, and the email.
    let (status, body) = scim
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "ADA@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(scim_type(status, &body), "uniqueness");
    let (status, body) = scim
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "ada2", "emails": [{"value": "ada@example.com"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(scim_type(status, &body), "uniqueness");
    // Bad bodies: not JSON, not an object, no userName, no email, a wrong type.
    for (body, want) in [
        (Value::String("{not json".into()), "invalidSyntax"),
        (json!([1, 2]), "invalidSyntax"),
        (json!({"name": {"givenName": "x"}}), "invalidValue"),
        (
            json!({"userName": "b@example.com", "active": 3}),
            "invalidValue",
        ),
        (
            json!({"userName": "b@example.com", "emails": "b@example.com"}),
            "invalidValue",
        ),
    ] {
        let raw = match &body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let response = api
            .http
            .post(format!("{}/scim/v2/Users", api.base))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(raw)
            .send()
            .await
            .expect("post");
        let status = response.status();
        let answer: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(scim_type(status, &answer), want, "{body}");
    }
    // Megabytes: 413, nothing read past the bound (the server closes that connection,
    // so the request goes on a client of its own).
    let huge = json!({"userName": "c@example.com", "title": "x".repeat(2 << 20)});
    let response = reqwest::Client::new()
        .post(format!("{}/scim/v2/Users", api.base))
        .bearer_auth(&token)
        .body(huge.to_string())
        .send()
        .await
        .expect("post");
    let status = response.status();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    scim_type(status, &response.json().await.expect("json"));
    // A PATCH that fails half-way applies nothing.
    let (status, body) = scim
        .patch(
            &format!("/Users/{ada}"),
            json!([
                {"op": "replace", "path": "name.givenName", "value": "Changed"},
                {"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "x@y.example"}},
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(scim_type(status, &body), "noTarget");
    let (_, now) = scim.get(&format!("/Users/{ada}")).await;
    assert_eq!(now["name"]["givenName"], json!("Ada"));
    // Groups: an id that names no member is left out (ids are Sluice's: it never will);
    // a name is unique.
    let (status, body) = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "g", "members": [{"value": "usr_nobody"}, {"value": ada}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["members"][0]["value"], json!(ada));
    let (status, body) = scim
        .call(Method::POST, "/Groups", Some(json!({"displayName": "g"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(scim_type(status, &body), "uniqueness");

    // The last owner is neither deactivated nor deleted.
    let (_, list) = scim
        .get(&format!(
            "/Users?filter={}",
            urlencode(r#"userName eq "owner@example.com""#)
        ))
        .await;
    let owner_id = list["Resources"][0]["id"]
        .as_str()
        .expect("owner id")
        .to_owned();
    let (status, body) = scim
        .patch(
            &format!("/Users/{owner_id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(scim_type(status, &body), "mutability");
    let (status, _) = scim
        .call(Method::DELETE, &format!("/Users/{owner_id}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get(&owner, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK, "the owner is untouched");

    // Unknown endpoint and method: the envelope too.
    let (status, body) = scim.get("/Nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    scim_type(status, &body);

    // A revoked SCIM token is refused at once.
    let (_, tokens) = api.get(&owner, "/api/v1/identity/scim-tokens").await;
    let id = tokens["data"]["scimTokens"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/identity/scim-tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = scim.get("/Users").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    db.finish().await;
}

#[tokio::test]
async fn only_owners_hold_scim_tokens_and_no_mapping_makes_owners() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let scim = Scim {
        api: &api,
        token: scim_token(&api, &owner).await,
    };
    // An admin (provisioned, then made admin by a mapped group) signs in.
    let (status, body) = map_group(&api, &owner, "segment-admins", "admin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grace = scim.user("grace@example.com", json!({})).await;
    scim.group("segment-admins", &[&grace]).await;
    let session = sign_in(&api, &db, &grace, "grace@example.com").await;
    let (status, body) = as_person(
        &api,
        &session,
        Method::GET,
        "/api/v1/identity/scim-tokens",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an admin sees them: {body}");
    let (status, _) = as_person(
        &api,
        &session,
        Method::POST,
        "/api/v1/identity/scim-tokens",
        Some(json!({"name": "mine"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a SCIM token can remove owners: owners only"
    );
    let (status, body) = as_person(
        &api,
        &session,
        Method::PUT,
        "/api/v1/identity/group-mappings/founders",
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = map_group(&api, &owner, "founders", "owner").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "not even an owner maps to owner: {body}"
    );
    // Removing the mapping takes the mapped role from the group.
    let (status, _) = api
        .call(
            &owner,
            Method::DELETE,
            "/api/v1/identity/group-mappings/segment-admins",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = as_person(
        &api,
        &session,
        Method::GET,
        "/api/v1/identity/scim-tokens",
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no longer an admin at the next request"
    );
    db.finish().await;
}

/// From an attacker's review: SCIM never reaches a group that makes owners, a mapping
/// never overwrites one, a mapped role leaves with its name, a SCIM token dies with its
/// maker, a PUT without `active` does not bring anyone back, and an owner's email is not
/// SCIM's to change.
#[tokio::test]
async fn provisioning_never_reaches_ownership() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let scim = Scim {
        api: &api,
        token: scim_token(&api, &owner).await,
    };
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/groups",
            json!({"name": "Owners", "role": "owner"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let owners = body["data"]["userGroup"]["id"]
        .as_str()
        .expect("group id")
        .to_owned();
    let mallory = scim.user("mallory@example.com", json!({})).await;

    // The owner group is missing to SCIM: not listed, not read, not joined, not deleted.
    let (_, list) = scim.get("/Groups").await;
    assert!(!list.to_string().contains(&owners), "{list}");
    let (status, _) = scim.get(&format!("/Groups/{owners}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = scim
        .patch(
            &format!("/Groups/{owners}"),
            json!([{"op": "add", "path": "members", "value": [{"value": mallory}]}]),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = scim
        .call(
            Method::PUT,
            &format!("/Groups/{owners}"),
            Some(json!({"displayName": "Owners", "members": [{"value": mallory}]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = scim
        .call(Method::DELETE, &format!("/Groups/{owners}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!may(&api, &owner, &mallory, "transfer_ownership", None).await);

    // A mapping never overwrites the role of a group that makes owners.
    let (status, body) = map_group(&api, &owner, "Owners", "read_only").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A role that came from a mapping leaves with the name.
    let (status, _) = map_group(&api, &owner, "segment-admins", "admin").await;
    assert_eq!(status, StatusCode::OK);
    let admins = scim.group("segment-admins", &[&mallory]).await;
    assert!(may(&api, &owner, &mallory, "manage_members", None).await);
    let (status, body) = scim
        .patch(
            &format!("/Groups/{admins}"),
            json!([{"op": "replace", "path": "displayName", "value": "contractors"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!may(&api, &owner, &mallory, "manage_members", None).await);

    // Deactivated, then PUT without `active`: still deactivated.
    let (status, _) = scim
        .patch(
            &format!("/Users/{mallory}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = scim
        .call(
            Method::PUT,
            &format!("/Users/{mallory}"),
            Some(json!({"userName": "mallory@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], json!(false));

    // An owner's email is not SCIM's to change.
    let (_, list) = scim
        .get(&format!(
            "/Users?filter={}",
            urlencode(r#"userName eq "owner@example.com""#)
        ))
        .await;
    let owner_id = list["Resources"][0]["id"]
        .as_str()
        .expect("owner id")
        .to_owned();
    let (status, body) = scim
        .patch(
            &format!("/Users/{owner_id}"),
            json!([{"op": "replace", "path": "emails", "value": [{"value": "mallory@evil.example", "primary": true}]}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(scim_type(status, &body), "mutability");

    // A second owner makes a SCIM token and is removed: the token dies with them.
    let (second, second_id) = api
        .invited(&owner, &server, "second@example.com", "owner")
        .await;
    let theirs = Scim {
        api: &api,
        token: scim_token(&api, &second).await,
    };
    let (status, _) = theirs.get("/Users").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/users/{second_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = theirs.get("/Users").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    db.finish().await;
}
