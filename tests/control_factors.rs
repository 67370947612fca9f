//! Second factors and the sign-in policy, over real HTTP against a running control
//! plane: TOTP enrolment, codes good once, recovery codes, turning it off; `requireSso`
//! with break-glass owners, the session lifetimes it sets, and who may change it; the
//! setup, invite and password reset links that end in a session.

mod common;

use chrono::{DateTime, Utc};
use common::control::{Api, cookie_set, error_type, server};
use common::databases;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use totp_rs::{Algorithm, Builder, Secret};

const PASSWORD: &str = "a long enough passphrase";

async fn set_password(api: &Api, token: &str) {
    let (status, body) = api
        .call(
            token,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// What the person's authenticator app shows at `at` (seconds from now).
fn code(secret: &str, at: i64) -> String {
    let bytes = Secret::try_from_base32(secret).expect("base32");
    let app = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(bytes.as_bytes().to_vec())
        .build()
        .expect("totp");
    let now = Utc::now().timestamp() + at;
    app.generate(u64::try_from(now).expect("time")).to_string()
}

fn sign_in(email: &str, code: Option<&str>) -> Value {
    match code {
        Some(code) => json!({"email": email, "password": PASSWORD, "code": code}),
        None => json!({"email": email, "password": PASSWORD}),
    }
}

async fn audit_types(api: &Api, token: &str) -> Vec<String> {
    let (status, body) = api
        .get(token, "/api/v1/audit-events?pagination[count]=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_authenticator_code_is_good_once_and_recovery_codes_once_each() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    set_password(&api, &owner).await;
    let email = "owner@example.com";

    // Enrolled but not confirmed: sign-in does not ask for a code yet.
    let (status, body) = api.post(&owner, "/auth/totp", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["data"]["secret"].as_str().expect("secret").to_owned();
    let url = body["data"]["otpauthUrl"].as_str().expect("url");
    assert!(
        url.starts_with("otpauth://totp/Sluice:owner%40example.com?"),
        "{url}"
    );
    let (status, body, _) = api.login(11, sign_in(email, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A wrong first code does not turn it on; the app's current one does, once.
    let wrong = if code(&secret, 0) == "123456" {
        "654321"
    } else {
        "123456"
    };
    let (status, body) = api
        .post(&owner, "/auth/totp/confirm", json!({"code": wrong}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let first = code(&secret, 0);
    let (status, body) = api
        .post(&owner, "/auth/totp/confirm", json!({"code": first}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recovery: Vec<String> = body["data"]["recoveryCodes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    let (status, body) = api
        .post(&owner, "/auth/totp/confirm", json!({"code": first}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api.post(&owner, "/auth/totp", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "on already: {body}");

    // Now the password alone opens nothing, and says a code is wanted.
    let (status, body, cookie) = api.login(12, sign_in(email, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_type(&body), "second_factor_required");
    assert!(cookie.is_none());
    // The code that confirmed it is spent: replayed, it is refused like a bad password.
    let (status, body, cookie) = api.login(13, sign_in(email, Some(&first))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_type(&body), "invalid_credentials");
    assert!(cookie.is_none());
    // The next step's code (one step of skew) opens a session, once.
    let next = code(&secret, 30);
    let (status, body, cookie) = api.login(14, sign_in(email, Some(&next))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(cookie.is_some());
    let (status, body, _) = api.login(15, sign_in(email, Some(&next))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "replayed: {body}");
    // An earlier step's code is older than the last accepted: refused too.
    let (status, _, _) = api
        .login(16, sign_in(email, Some(&code(&secret, -30))))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Recovery codes: each good once, typed with or without the dash, in any case.
    let (status, body, _) = api.login(17, sign_in(email, Some(&recovery[0]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = api.login(18, sign_in(email, Some(&recovery[0]))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a recovery code is single use"
    );
    let typed = recovery[1].replace('-', " ");
    let (status, body, _) = api.login(19, sign_in(email, Some(&typed))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = api.login(20, sign_in(email, Some("ABCDE-FGHIJ"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "not one of them");
    let (status, body) = api.get(&owner, "/auth/totp").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["confirmed"], true);
    assert_eq!(body["data"]["recoveryCodesLeft"], 8);

    // Turning it off takes a good code; a spent one does not do.
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            "/auth/totp",
            Some(json!({"code": recovery[0]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            "/auth/totp",
            Some(json!({"code": recovery[2]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = api.login(21, sign_in(email, None)).await;
    assert_eq!(status, StatusCode::OK, "off again: {body}");

    let types = audit_types(&api, &owner).await;
    for kind in ["user.totp.enrol", "user.totp.confirm", "user.totp.disable"] {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("audit chain");
    assert!(matches!(verified, Ok(n) if n > 5), "{verified:?}");
    db.finish().await;
}

/// The session cookie's answer at `/auth/session`.
async fn session_status(api: &Api, cookie: &str) -> StatusCode {
    api.http
        .get(format!("{}/auth/session", api.base))
        .header("cookie", cookie)
        .send()
        .await
        .expect("session")
        .status()
}

fn at(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

#[tokio::test]
async fn when_sso_is_required_only_break_glass_owners_use_a_password() {
    let db = databases::postgres().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (admin, admin_id) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    set_password(&api, &owner).await;
    set_password(&api, &admin).await;
    let (status, me) = api.get(&owner, "/api/v1/identity/sign-in").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["data"]["signIn"]["requireSso"], false);
    assert_eq!(me["data"]["signIn"]["sessionIdleMinutes"], 720);
    assert_eq!(me["data"]["signIn"]["sessionAbsoluteHours"], 168);
    let (_, owner_view) = api.get(&owner, "/api/v1/users?pagination[count]=50").await;
    let owner_id = owner_view["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == "owner@example.com")
        .and_then(|u| u["id"].as_str())
        .expect("owner id")
        .to_owned();

    // Lifetimes: bounds are checked, and a new session carries the ones set.
    let patch = |body: Value| {
        api.call(
            &owner,
            Method::PATCH,
            "/api/v1/identity/sign-in",
            Some(body),
        )
    };
    let (status, body) = patch(json!({"sessionIdleMinutes": 4})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = patch(json!({"sessionAbsoluteHours": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = patch(json!({"sessionIdleMinutes": 30, "sessionAbsoluteHours": 8})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, session, admin_cookie) = api.login(31, sign_in("admin@example.com", None)).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let now = Utc::now();
    let idle = at(&session["data"]["idleExpiresAt"]) - now;
    let absolute = at(&session["data"]["absoluteExpiresAt"]) - now;
    assert!((29..=30).contains(&idle.num_minutes()), "{idle}");
    assert!((7..=8).contains(&absolute.num_hours()), "{absolute}");
    let admin_cookie = admin_cookie.expect("cookie");
    let (status, _, owner_cookie) = api.login(32, sign_in("owner@example.com", None)).await;
    assert_eq!(status, StatusCode::OK);
    let owner_cookie = owner_cookie.expect("cookie");

    // An admin may read the policy but not change it, nor name break-glass owners.
    let (status, _) = api.get(&admin, "/api/v1/identity/sign-in").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(
            &admin,
            Method::PATCH,
            "/api/v1/identity/sign-in",
            Some(json!({"requireSso": false})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .call(
            &admin,
            Method::PUT,
            &format!("/api/v1/identity/break-glass/{owner_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Requiring SSO needs an enabled connection and a break-glass owner first.
    let (status, body) = patch(json!({"requireSso": true})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/identity/sso-connections",
            json!({"name": "Corp", "kind": "oidc",
                   "oidc": {"issuer": "http://127.0.0.1:9", "clientId": "sluice"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = patch(json!({"requireSso": true})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "no break-glass owner yet: {body}"
    );
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/identity/break-glass/{admin_id}"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "admins are not owners: {body}"
    );
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            &format!("/api/v1/identity/break-glass/{owner_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = patch(json!({"requireSso": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["signIn"]["requireSso"], true);
    assert_eq!(
        body["data"]["signIn"]["breakGlassOwners"],
        json!([owner_id])
    );

    // The admin's password session ended with it; the break-glass owner's did not.
    assert_eq!(
        session_status(&api, &admin_cookie).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(session_status(&api, &owner_cookie).await, StatusCode::OK);
    // Nor does a reset link give them a password that opens anything.
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/users/{admin_id}/password-reset"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The admin's right password now answers exactly as a wrong one.
    let (status, right, cookie) = api.login(33, sign_in("admin@example.com", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    let (_, wrong, _) = api
        .login(
            34,
            json!({"email": "admin@example.com", "password": "not it at all"}),
        )
        .await;
    assert_eq!(right, wrong);
    let (status, body, _) = api.login(35, sign_in("owner@example.com", None)).await;
    assert_eq!(status, StatusCode::OK, "break-glass: {body}");
    // The sign-in page learns SSO is required, and which connections there are.
    let methods: Value = api
        .http
        .get(format!("{}/auth/methods?workspace=default", api.base))
        .send()
        .await
        .expect("methods")
        .json()
        .await
        .expect("json");
    assert_eq!(methods["data"]["requireSso"], true, "{methods}");
    assert_eq!(
        methods["data"]["connections"][0]["name"], "Corp",
        "{methods}"
    );
    // The last break-glass owner stays while SSO is required.
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/identity/break-glass/{owner_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Turned off again, passwords work for everyone.
    let (status, body) = patch(json!({"requireSso": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = api.login(36, sign_in("admin@example.com", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let types = audit_types(&api, &owner).await;
    for kind in ["workspace.sign_in.update", "user.break_glass.update"] {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("audit chain");
    assert!(matches!(verified, Ok(n) if n > 5), "{verified:?}");
    db.finish().await;
}

/// POSTs `body` to `path` (a link of the server) from 127.0.0.`from`, as a browser on
/// `origin`, asking for JSON: the status, the answer and the session cookie set.
async fn post_link(
    api: &Api,
    from: u8,
    path: &str,
    body: Value,
    origin: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, from]))
        .build()
        .expect("client");
    let mut request = http
        .post(format!("{}{path}", api.base))
        .header("accept", "application/json")
        .json(&body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.expect("post");
    let status = response.status();
    let cookie = cookie_set(&response);
    (status, response.json().await.unwrap_or(Value::Null), cookie)
}

/// The path of a reset link just made (`POST …/password-reset` answered 200).
fn link_made((status, body): (StatusCode, Value)) -> String {
    assert_eq!(status, StatusCode::OK, "{body}");
    reqwest::Url::parse(body["data"]["url"].as_str().expect("url"))
        .expect("url")
        .path()
        .to_owned()
}

/// The method of the session `cookie` holds.
async fn method_of(api: &Api, cookie: &str) -> String {
    let response = api
        .http
        .get(format!("{}/auth/session", api.base))
        .header("cookie", cookie)
        .send()
        .await
        .expect("session");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["data"]["method"].as_str().expect("method").to_owned()
}

#[tokio::test]
async fn setup_invite_and_reset_links_end_in_a_session() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let evil = Some("https://evil.example");

    // The first owner's setup link: a token and a session.
    let (status, body, cookie) = post_link(
        &api,
        1,
        &link,
        json!({"email": "owner@example.com", "first_name": "O"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let owner = body["data"]["secret"].as_str().expect("token").to_owned();
    let owner_id = body["data"]["user"]["id"].as_str().expect("id").to_owned();
    assert!(
        body["data"]["csrfToken"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(method_of(&api, &cookie.expect("a session")).await, "setup");

    // An invite posted from another site is refused before the link is spent.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/invites",
            json!({"invites": [{"email": "member@example.com", "role": "member"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let invite = reqwest::Url::parse(body["data"]["invites"][0]["link"].as_str().expect("link"))
        .expect("url")
        .path()
        .to_owned();
    let accept = json!({"email": "member@example.com"});
    let (status, body, cookie) = post_link(&api, 1, &invite, accept.clone(), evil).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(cookie.is_none());
    let (status, body, cookie) = post_link(&api, 1, &invite, accept, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member = body["data"]["secret"].as_str().expect("token").to_owned();
    let member_id = body["data"]["user"]["id"].as_str().expect("id").to_owned();
    let member_cookie = cookie.expect("a session");
    assert_eq!(method_of(&api, &member_cookie).await, "invite");

    // Reset links: an admin makes them for members, never for an owner.
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let reset_for = |token: String, user: String| {
        let api = &api;
        async move {
            api.post(
                &token,
                &format!("/api/v1/users/{user}/password-reset"),
                json!({}),
            )
            .await
        }
    };
    let (status, body) = reset_for(admin.clone(), owner_id.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = reset_for(admin.clone(), "usr_nope".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = reset_for(member.clone(), admin.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a member makes none: {body}");
    let reset = link_made(reset_for(admin.clone(), member_id.clone()).await);
    let page = api
        .http
        .get(format!("{}{reset}", api.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("New password"));

    // Too short, or from another site: refused, the link still good. Then it sets the
    // password, ends the member's other sessions and signs them in, once.
    let new_password = "a brand new long passphrase";
    let (status, _, _) = post_link(&api, 1, &reset, json!({"password": "short"}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, cookie) =
        post_link(&api, 1, &reset, json!({"password": new_password}), evil).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(cookie.is_none());
    let (status, body, cookie) =
        post_link(&api, 1, &reset, json!({"password": new_password}), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(method_of(&api, &cookie.expect("a session")).await, "reset");
    assert_eq!(
        session_status(&api, &member_cookie).await,
        StatusCode::UNAUTHORIZED,
        "the other sessions ended"
    );
    let (status, body, _) =
        post_link(&api, 1, &reset, json!({"password": new_password}), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "used once: {body}");
    let (status, body, _) = api
        .login(
            51,
            json!({"email": "member@example.com", "password": new_password}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // With an authenticator on, the link asks for a code too, and stays good until one
    // is right.
    let (status, body) = api.post(&member, "/auth/totp", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["data"]["secret"].as_str().expect("secret").to_owned();
    let (status, body) = api
        .post(
            &member,
            "/auth/totp/confirm",
            json!({"code": code(&secret, 0)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reset = link_made(reset_for(owner.clone(), member_id.clone()).await);
    let again = "yet another long passphrase";
    let (status, body, _) = post_link(&api, 1, &reset, json!({"password": again}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_type(&body), "second_factor_required", "{body}");
    let (status, body, cookie) = post_link(
        &api,
        1,
        &reset,
        json!({"password": again, "code": code(&secret, 30)}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(cookie.is_some());

    // Five wrong codes spend a link.
    let reset = link_made(reset_for(owner.clone(), member_id.clone()).await);
    let right = code(&secret, 60);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for from in 61..66 {
        let (status, _, _) = post_link(
            &api,
            from,
            &reset,
            json!({"password": again, "code": wrong}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body, _) = post_link(
        &api,
        1,
        &reset,
        json!({"password": again, "code": right}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "spent: {body}");

    // A link is asked about again when used: a member promoted past what its maker may
    // reach is out of it.
    let (_, rising_id) = api
        .invited(&owner, &server, "rising@example.com", "member")
        .await;
    let risen = link_made(reset_for(admin.clone(), rising_id.clone()).await);
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            &format!("/api/v1/users/{rising_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, cookie) = post_link(&api, 1, &risen, json!({"password": again}), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(cookie.is_none());

    // Removed and invited back (the same account comes back): the old link is dead.
    let (_, leaving_id) = api
        .invited(&owner, &server, "leaving@example.com", "member")
        .await;
    let old_link = link_made(reset_for(admin.clone(), leaving_id.clone()).await);
    let (status, body) = api
        .call(
            &owner,
            Method::DELETE,
            &format!("/api/v1/users/{leaving_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, back_id) = api
        .invited(&owner, &server, "leaving@example.com", "member")
        .await;
    assert_eq!(back_id, leaving_id, "the same account");
    let (status, body, _) = post_link(&api, 1, &old_link, json!({"password": again}), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let types = audit_types(&api, &owner).await;
    for kind in [
        "user.password_reset.create",
        "user.password.reset",
        "session.create",
    ] {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("audit chain");
    assert!(matches!(verified, Ok(n) if n > 10), "{verified:?}");
    db.finish().await;
}
