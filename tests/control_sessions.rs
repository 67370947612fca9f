//! Browser sessions and local sign-in, over real HTTP against a running control plane:
//! password, cookie, CSRF and origin guard, fixation, logout, rate limits, and the
//! session resolving to the same access as the person's token.

mod common;

use common::control::{Api, error_type, server};
use common::databases;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough passphrase";

struct Browser {
    cookie: String,
    csrf: String,
}

/// Signs in; the answer's status and body, and the session cookie when one was set.
async fn sign_in(
    api: &Api,
    email: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value, Option<String>) {
    let mut request = api
        .http
        .post(format!("{}/auth/login", api.base))
        .json(&json!({"email": email, "password": password}));
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("login");
    let status = response.status();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, cookie)
}

async fn browser(api: &Api, email: &str, password: &str) -> Browser {
    let (status, body, cookie) = sign_in(api, email, password, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cookie = cookie.expect("set-cookie");
    let pair = cookie.split(';').next().expect("pair").to_owned();
    Browser {
        cookie: pair,
        csrf: body["data"]["csrfToken"].as_str().expect("csrf").to_owned(),
    }
}

/// A request with the browser's cookie; `origin` and `csrf` as a page would send them.
async fn as_browser(
    api: &Api,
    b: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
    origin: Option<&str>,
    csrf: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = api
        .http
        .request(method, format!("{}{path}", api.base))
        .header("cookie", &b.cookie);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A read with the browser's cookie only (reads need no CSRF token or origin).
async fn get_as(api: &Api, b: &Browser, path: &str) -> (StatusCode, Value) {
    as_browser(api, b, Method::GET, path, None, None, None).await
}

async fn set_password(api: &Api, token: &str, new: &str) {
    let (status, body) = api
        .call(
            token,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": new})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_session_acts_as_its_person_and_every_change_is_guarded() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let origin = api.base.clone();

    // A password too short is refused; then the owner sets one with their token.
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": "short"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    set_password(&api, &owner, PASSWORD).await;

    // Wrong password and unknown email: the same 401, saying neither which.
    let (status, wrong, cookie) =
        sign_in(&api, "owner@example.com", "not the passphrase", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    let (status, unknown, _) = sign_in(&api, "nobody@example.com", PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown, "the answers tell nothing apart");
    assert_eq!(error_type(&wrong), "invalid_credentials");

    // Signed in: the cookie's flags, and a session id the browser did not choose.
    let planted = format!("sluice_session={}", "A".repeat(43));
    let (status, body, cookie) = sign_in(
        &api,
        "Owner@Example.com",
        PASSWORD,
        &[("cookie", planted.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cookie = cookie.expect("set-cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert!(!cookie.contains(&"A".repeat(43)), "fixation: {cookie}");
    let b = Browser {
        cookie: cookie.split(';').next().expect("pair").to_owned(),
        csrf: body["data"]["csrfToken"].as_str().expect("csrf").to_owned(),
    };
    // The planted cookie is no session.
    let planted_browser = Browser {
        cookie: planted,
        csrf: String::new(),
    };
    let (status, body) = get_as(&api, &planted_browser, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_type(&body), "session_ended");

    // Reads need only the cookie; it reaches what the owner's token reaches.
    let (status, body) = get_as(&api, &b, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get_as(&api, &b, "/auth/session").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["email"], "owner@example.com");

    // A change: a forged form (no CSRF token), another origin, no origin: refused.
    let source = json!({"slug": "from-console"});
    for (origin, csrf) in [
        (Some(origin.as_str()), None),
        (Some(origin.as_str()), Some("not-the-token")),
        (Some("https://evil.example"), Some(b.csrf.as_str())),
        (None, Some(b.csrf.as_str())),
    ] {
        let (status, body) = as_browser(
            &api,
            &b,
            Method::POST,
            "/api/v1/sources",
            Some(source.clone()),
            origin,
            csrf,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin:?} {csrf:?}: {body}");
    }
    let (status, body) = as_browser(
        &api,
        &b,
        Method::POST,
        "/api/v1/sources",
        Some(source),
        Some(&origin),
        Some(&b.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Signing in from another origin's page (login CSRF) is refused.
    let (status, body, _) = sign_in(
        &api,
        "owner@example.com",
        PASSWORD,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // A second session; changing the password (through the first) ends the second.
    let other = browser(&api, "owner@example.com", PASSWORD).await;
    let (status, body) = as_browser(
        &api,
        &b,
        Method::PUT,
        "/auth/password",
        Some(json!({"currentPassword": "wrong", "newPassword": "another long passphrase"})),
        Some(&origin),
        Some(&b.csrf),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the current one first: {body}"
    );
    let (status, body) = as_browser(
        &api,
        &b,
        Method::PUT,
        "/auth/password",
        Some(json!({"currentPassword": PASSWORD, "newPassword": "another long passphrase"})),
        Some(&origin),
        Some(&b.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = get_as(&api, &other, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the other session ended");
    let (status, _) = get_as(&api, &b, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK, "the one that changed it stays");

    // Logout ends it on the server: the same cookie is worth nothing after.
    let (status, _) = as_browser(
        &api,
        &b,
        Method::POST,
        "/auth/logout",
        None,
        Some(&origin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "logout is a change too");
    let (status, _) = as_browser(
        &api,
        &b,
        Method::POST,
        "/auth/logout",
        None,
        Some(&origin),
        Some(&b.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get_as(&api, &b, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_type(&body), "session_ended");

    // Every sign-in, refusal, sign-out and the change made in the console are audited.
    let (_, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    let actions: Vec<&str> = body["data"]["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["type"].as_str()).collect())
        .unwrap_or_default();
    for action in [
        "session.create",
        "session.refused",
        "session.revoke",
        "user.password.set",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}: {body}");
    }
    db.finish().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_account() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    set_password(&api, &owner, PASSWORD).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, _, _) = sign_in(&api, "owner@example.com", "guess guess guess", &[]).await;
        statuses.push(status);
    }
    assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    // The budget is the account's: even the right password waits.
    let (status, _, _) = sign_in(&api, "owner@example.com", PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    db.finish().await;
}

/// A member's session has exactly their role's access, and dies with their membership.
#[tokio::test]
async fn a_session_has_its_persons_role_and_ends_with_their_access() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let origin = api.base.clone();
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [{"email": "viewer@example.com", "role": "read_only"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let link = body["data"]["invites"][0]["link"].as_str().expect("link");
    let link = &link[link.find("/setup/").expect("setup path")..];
    let (status, body) = api.accept(link, "viewer@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let viewer_token = body["data"]["secret"].as_str().expect("token").to_owned();
    let viewer_id = body["data"]["user"]["id"].as_str().expect("id").to_owned();
    set_password(&api, &viewer_token, PASSWORD).await;
    let viewer = browser(&api, "viewer@example.com", PASSWORD).await;

    // Read-only: reads pass, a change is refused by the policy (CSRF passed).
    let (status, _) = get_as(&api, &viewer, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = as_browser(
        &api,
        &viewer,
        Method::POST,
        "/api/v1/sources",
        Some(json!({"slug": "not-mine"})),
        Some(&origin),
        Some(&viewer.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_type(&body), "forbidden");

    // Removed from the workspace: the session answers as an ended one at once.
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/users?userIds[0]={viewer_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get_as(&api, &viewer, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_type(&body), "session_ended");

    // Invited again: the old session stays ended (it was revoked, not just unusable).
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [{"email": "viewer@example.com", "role": "read_only"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let link = body["data"]["invites"][0]["link"].as_str().expect("link");
    let link = &link[link.find("/setup/").expect("setup path")..];
    let (status, body) = api.accept(link, "viewer@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = get_as(&api, &viewer, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nor does the old password sign the new holder of the email in: it went with them.
    let (status, body, _) = sign_in(&api, "viewer@example.com", PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    db.finish().await;
}

/// A narrowly scoped token cannot turn itself into a full session by setting a password.
#[tokio::test]
async fn a_narrow_token_cannot_set_a_password() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/tokens",
            json!({"name": "audit only", "scopes": ["audit:read"], "expiresInDays": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let narrow = body["data"]["secret"].as_str().expect("secret").to_owned();
    let (status, body) = api
        .call(
            &narrow,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = sign_in(&api, "owner@example.com", PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no password was set");
    db.finish().await;
}

/// Sign-in takes a JSON body only (a cross-origin form cannot send one unasked), with
/// bounded fields; the session routes are for sessions.
#[tokio::test]
async fn sign_in_refuses_forms_and_absurd_input() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    set_password(&api, &owner, PASSWORD).await;
    // A form posting JSON-looking text (login CSRF from a page elsewhere).
    let response = api
        .http
        .post(format!("{}/auth/login", api.base))
        .header("content-type", "text/plain")
        .body(format!(
            r#"{{"email":"owner@example.com","password":"{PASSWORD}"}}"#
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none());
    // An email far too long: a clear 400, no budget kept for it.
    let (status, body, _) = sign_in(&api, &"x".repeat(300), PASSWORD, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A token has no session to show or end.
    for (method, path) in [
        (Method::GET, "/auth/session"),
        (Method::POST, "/auth/logout"),
    ] {
        let (status, body) = api.call(&owner, method, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(error_type(&body), "session_ended");
    }
    db.finish().await;
}

#[tokio::test]
async fn people_list_and_end_their_own_sessions_only() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let origin = api.base.clone();
    set_password(&api, &owner, PASSWORD).await;
    let laptop = browser(&api, "owner@example.com", PASSWORD).await;
    let phone = browser(&api, "owner@example.com", PASSWORD).await;
    let tablet = browser(&api, "owner@example.com", PASSWORD).await;

    // The list: every live session, the current one marked, no secrets.
    let (status, body) = get_as(&api, &laptop, "/auth/sessions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["data"]["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 3, "{body}");
    assert_eq!(
        list.iter().filter(|s| s["current"] == json!(true)).count(),
        1
    );
    assert!(
        !body.to_string().contains(&laptop.csrf),
        "no CSRF token in the list"
    );
    let current = list
        .iter()
        .find(|s| s["current"] == json!(true))
        .and_then(|s| s["id"].as_str())
        .expect("current")
        .to_owned();

    // Ending the phone's session from the laptop: the phone is signed out.
    let (_, phone_view) = get_as(&api, &phone, "/auth/session").await;
    let phone_id = phone_view["data"]["id"].as_str().expect("id").to_owned();
    let (status, _) = as_browser(
        &api,
        &laptop,
        Method::DELETE,
        &format!("/auth/sessions/{phone_id}"),
        None,
        Some(&origin),
        Some(&laptop.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_as(&api, &phone, "/auth/session").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Without the CSRF token, nothing ends.
    let (status, _) = as_browser(
        &api,
        &laptop,
        Method::POST,
        "/auth/sessions/end-others",
        None,
        Some(&origin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_as(&api, &tablet, "/auth/session").await;
    assert_eq!(status, StatusCode::OK);

    // Someone else's session answers as a missing one.
    let (ada, _) = api
        .invited(&owner, &server, "ada@example.com", "admin")
        .await;
    let (status, body) = api
        .call(
            &ada,
            Method::DELETE,
            &format!("/auth/sessions/{current}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get_as(&api, &laptop, "/auth/session").await;
    assert_eq!(status, StatusCode::OK, "the owner's session lives on");

    // "Sign out everywhere else": the tablet goes, the laptop stays.
    let (status, body) = as_browser(
        &api,
        &laptop,
        Method::POST,
        "/auth/sessions/end-others",
        None,
        Some(&origin),
        Some(&laptop.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["ended"], json!(1));
    let (status, _) = get_as(&api, &tablet, "/auth/session").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get_as(&api, &laptop, "/auth/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["sessions"].as_array().map(Vec::len), Some(1));
    db.finish().await;
}
