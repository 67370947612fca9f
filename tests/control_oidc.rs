//! OpenID Connect sign-in against a real provider on loopback (`oidc-provider-mock`
//! from PyPI, installed by `scripts/identity-peers.sh`): the whole browser flow with
//! PKCE, state and nonce; just-in-time provisioning with the default role; groups from
//! the ID token applied at each sign-in through group mappings; a test of the
//! connection that signs nobody in; and the refusals: a replayed or foreign callback,
//! a wrong nonce, an expired ID token, a deactivated member.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{Browser, location};
use common::control::{Api, groups_of, map_group, server};
use common::databases::{self, TestDb};
use common::peer::Peer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const CLIENT_SECRET: &str = "sluice-client-secret";

/// `oidc-provider-mock` on a free loopback port, stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider_binary() -> std::path::PathBuf {
    let path = std::env::var_os("SLUICE_OIDC_PROVIDER").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/venv-identity/bin/oidc-provider-mock")
        },
        Into::into,
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/identity-peers.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

impl Provider {
    /// Starts a provider whose tokens live `max_age` seconds.
    async fn start(max_age: i64) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(provider_binary())
            .args(["-p", &port.to_string(), "-e", &max_age.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start oidc-provider-mock");
        let provider = Self {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = common::client();
        loop {
            let ready = http
                .get(format!(
                    "{}/.well-known/openid-configuration",
                    provider.issuer
                ))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return provider;
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider-mock did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets what the provider says of `sub`.
    async fn set_user(&self, sub: &str, claims: Value) {
        let status = common::client()
            .put(format!("{}/users/{sub}", self.issuer))
            .json(&claims)
            .send()
            .await
            .expect("set user")
            .status();
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}

/// Signs `sub` in at the provider's authorization page (what the person's click does):
/// the provider's redirect back, with `code` and `state`.
async fn approve(browser: &Browser, authorize: &str, sub: &str) -> String {
    let response = browser
        .http
        .post(authorize)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("sub={sub}"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), StatusCode::FOUND, "{authorize}");
    location(&response)
}

/// The callback on the test server (the provider redirects to the public URL).
fn callback_on(api: &Api, redirect: &str) -> String {
    let query = redirect.split_once('?').map(|(_, q)| q).unwrap_or_default();
    format!("{}/auth/oidc/callback?{query}", api.base)
}

/// Starts a sign-in in `browser`: the provider's authorization URL.
async fn start(api: &Api, browser: &mut Browser, connection: &str) -> String {
    let response = browser
        .get(&format!(
            "{}/auth/sso/{connection}?returnTo=/sources",
            api.base
        ))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    location(&response)
}

/// The whole flow: start, approve at the provider as `sub`, come back.
async fn sign_in(
    api: &Api,
    browser: &mut Browser,
    connection: &str,
    sub: &str,
) -> reqwest::Response {
    let authorize = start(api, browser, connection).await;
    let back = approve(browser, &authorize, sub).await;
    browser.get(&callback_on(api, &back)).await
}

async fn connect(api: &Api, owner: &str, issuer: &str) -> String {
    let (status, body) = api
        .post(
            owner,
            "/api/v1/identity/sso-connections",
            json!({
                "name": "Test IdP",
                "kind": "oidc",
                "oidc": {"issuer": issuer, "clientId": "sluice"},
                "clientSecret": CLIENT_SECRET,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = &body["data"]["ssoConnection"];
    assert_eq!(
        connection["defaultRole"], "read_only",
        "least privilege by default"
    );
    assert_eq!(connection["hasClientSecret"], true);
    assert!(
        !body.to_string().contains(CLIENT_SECRET),
        "the secret is never shown"
    );
    assert_eq!(connection["claims"]["email"], "email", "defaults shown");
    connection["id"].as_str().expect("id").to_owned()
}

async fn user_by_email(api: &Api, owner: &str, email: &str) -> Value {
    let (status, body) = api.get(owner, "/api/v1/users?pagination.count=200").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == email)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn people_sign_in_through_their_provider(db: &TestDb) {
    let provider = Provider::start(300).await;
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let connection = connect(&api, &owner, &provider.issuer).await;
    map_group(&api, &owner, "segment-analysts", "read_only").await;
    map_group(&api, &owner, "segment-engineers", "member").await;
    provider
        .set_user(
            "alice-sub",
            json!({"email": "Alice@Example.com", "given_name": "Alice", "family_name": "Liddell",
                   "groups": ["segment-analysts"]}),
        )
        .await;

    // The sign-in page learns the connection from the public methods list.
    let methods: Value = common::client()
        .get(format!("{}/auth/methods?workspace=default", api.base))
        .send()
        .await
        .expect("methods")
        .json()
        .await
        .expect("json");
    assert_eq!(methods["data"]["connections"][0]["id"], connection.as_str());

    let mut browser = Browser::new();
    let authorize = start(&api, &mut browser, &connection).await;
    assert!(authorize.starts_with(&format!("{}/oauth2/authorize?", provider.issuer)));
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "scope=openid",
    ] {
        assert!(authorize.contains(part), "{part} in {authorize}");
    }
    let binding = browser.cookies.join("; ");
    assert!(
        binding.contains("sluice_sso="),
        "the flow is bound to this browser"
    );
    let back = approve(&browser, &authorize, "alice-sub").await;
    let callback = callback_on(&api, &back);

    // Another browser bringing the same answer back gets nothing.
    let mut thief = Browser::new();
    let stolen = thief.get(&callback).await;
    assert_eq!(stolen.status(), StatusCode::FORBIDDEN);
    assert!(thief.session().is_none());
    // (The thief's attempt spent the flow: one use, whoever comes first.)
    let spent = browser.get(&callback).await;
    assert_eq!(spent.status(), StatusCode::FORBIDDEN);

    // Again, properly: a session, sent where the sign-in started.
    let mut browser = Browser::new();
    let done = sign_in(&api, &mut browser, &connection, "alice-sub").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/sources");
    let session = browser.session().expect("a session cookie").clone();
    // The same answer twice is refused (state used once).
    let alice = user_by_email(&api, &owner, "alice@example.com").await;
    let alice_id = alice["id"].as_str().expect("JIT-provisioned").to_owned();
    assert_eq!(
        groups_of(&api, &owner, &alice_id).await,
        ["segment-analysts"],
        "the groups claim made the mapped group and put her in it"
    );
    let me: Value = browser
        .http
        .get(format!("{}/auth/session", api.base))
        .header("cookie", &session)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert_eq!(me["data"]["method"], "oidc");
    assert_eq!(me["data"]["email"], "alice@example.com");
    let csrf = me["data"]["csrfToken"].as_str().expect("csrf").to_owned();
    // Read-only: a change of the source is refused.
    let refused = browser
        .http
        .patch(format!("{}/api/v1/sources/demo", api.base))
        .header("cookie", &session)
        .header("origin", &api.base)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Signing in again from the same browser ends the session it held: the provider's
    // answer comes back without that cookie, so the flow remembered it at the start.
    let done = sign_in(&api, &mut browser, &connection, "alice-sub").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let renewed = browser.session().expect("a new session").clone();
    assert_ne!(renewed, session);
    for (cookie, live) in [(&session, false), (&renewed, true)] {
        let status = browser
            .http
            .get(format!("{}/auth/session", api.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("session")
            .status();
        assert_eq!(status == StatusCode::OK, live, "{cookie}: {status}");
    }

    // Moved to engineers at the provider: at the next sign-in she is in that group
    // (member through its mapping) and out of the analysts.
    provider
        .set_user(
            "alice-sub",
            json!({"email": "alice@example.com", "groups": ["segment-engineers", "unmapped"]}),
        )
        .await;
    let mut again = Browser::new();
    let done = sign_in(&api, &mut again, &connection, "alice-sub").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        groups_of(&api, &owner, &alice_id).await,
        ["segment-engineers"],
        "an unmapped group name makes no group"
    );

    // A test of the connection shows what the provider sent and how it maps, and signs
    // nobody in.
    let (status, test) = api
        .post(
            &owner,
            &format!("/api/v1/identity/sso-connections/{connection}/test"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{test}");
    let url = test["data"]["url"].as_str().expect("url");
    provider
        .set_user(
            "bob-sub",
            json!({"email": "bob@example.com", "groups": ["segment-analysts"]}),
        )
        .await;
    let tester = Browser::new();
    let back = approve(&tester, url, "bob-sub").await;
    let shown: Value = tester
        .http
        .get(callback_on(&api, &back))
        .send()
        .await
        .expect("test callback")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["data"]["ok"], true, "{shown}");
    assert_eq!(shown["data"]["profile"]["email"], "bob@example.com");
    assert_eq!(shown["data"]["outcome"]["created"], true);
    assert_eq!(shown["data"]["outcome"]["role"], "read_only");
    let (status, kept) = api
        .get(
            &owner,
            &format!(
                "/api/v1/identity/sso-connections/{connection}/tests/{}",
                test["data"]["testId"].as_str().expect("test id")
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["data"]["finished"], true);
    assert_eq!(
        user_by_email(&api, &owner, "bob@example.com").await,
        Value::Null,
        "nobody made"
    );

    // A wrong nonce (the authorization request altered on its way) is refused.
    let mut browser = Browser::new();
    let authorize = start(&api, &mut browser, &connection).await;
    let forged = regex_replace_nonce(&authorize);
    let back = approve(&browser, &forged, "alice-sub").await;
    let refused = browser.get(&callback_on(&api, &back)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.expect("json");
    assert!(body.to_string().to_lowercase().contains("nonce"), "{body}");
    assert!(browser.session().is_none());

    // Deactivated by the identity provider's SCIM, she cannot sign in again, even
    // though the provider still lets her through.
    let (status, made) = api
        .post(
            &owner,
            "/api/v1/identity/scim-tokens",
            json!({"name": "idp"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let scim = made["data"]["secret"].as_str().expect("scim token");
    let status = common::client()
        .patch(format!("{}/scim/v2/Users/{alice_id}", api.base))
        .bearer_auth(scim)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("scim patch")
        .status();
    assert_eq!(status, StatusCode::OK);
    let mut browser = Browser::new();
    let refused = sign_in(&api, &mut browser, &connection, "alice-sub").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.expect("json");
    assert!(body.to_string().contains("deactivated"), "{body}");
    assert!(browser.session().is_none());

    // Who can manage connections: not an admin.
    let (admin, _) = api
        .invited(&owner, &server, "admin@example.com", "admin")
        .await;
    let (status, _) = api
        .post(
            &admin,
            "/api/v1/identity/sso-connections",
            json!({"name": "x", "kind": "oidc", "oidc": {"issuer": provider.issuer, "clientId": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .post(
            &admin,
            &format!("/api/v1/identity/sso-connections/{connection}/test"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Every step is in the audit trail, and the chain holds.
    let (status, body) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for action in [
        "sso_connection.create",
        "user.provision",
        "session.create",
        "session.refused",
        "group.create",
        "group.member.remove",
        "sso_connection.test",
    ] {
        assert!(
            events.iter().any(|e| e["type"] == json!(action)),
            "{action} audited: {body}"
        );
    }
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("verify");
    assert!(verified.is_ok(), "{verified:?}");
    server.stop();
}

/// Changes the authorization request's nonce, as an attacker replaying another
/// request's ID token would need to.
fn regex_replace_nonce(url: &str) -> String {
    let (base, query) = url.split_once('?').expect("query");
    let parts: Vec<String> = query
        .split('&')
        .map(|p| {
            if p.starts_with("nonce=") {
                "nonce=forged-nonce-value".to_owned()
            } else {
                p.to_owned()
            }
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_their_provider_sqlite() {
    let db = databases::sqlite().await;
    people_sign_in_through_their_provider(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_their_provider_postgres() {
    let db = databases::postgres().await;
    people_sign_in_through_their_provider(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_id_token_is_refused() {
    let db = databases::sqlite().await;
    // Tokens that expired a minute before they were issued.
    let provider = Provider::start(-60).await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let connection = connect(&api, &owner, &provider.issuer).await;
    provider
        .set_user("carol", json!({"email": "carol@example.com"}))
        .await;
    let mut browser = Browser::new();
    let refused = sign_in(&api, &mut browser, &connection, "carol").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.expect("json");
    assert!(body.to_string().to_lowercase().contains("expir"), "{body}");
    assert!(browser.session().is_none());
    assert_eq!(
        user_by_email(&api, &owner, "carol@example.com").await,
        Value::Null
    );
    server.stop();
    db.finish().await;
}

/// The forging provider (`tests/peers/oidc/forge.py`), requiring our client secret.
fn forge() -> Peer {
    Peer::start(
        "tests/peers/oidc/forge.py",
        &["--client-secret", CLIENT_SECRET],
        "scripts/oidc-forge.sh",
    )
}

/// A client that follows no redirects (to read where a provider sends the browser).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// ID tokens forged one way each by a provider of our own (`tests/peers/oidc/forge.py`,
/// set up by `scripts/oidc-forge.sh`): every one is refused, nobody is made, and the
/// good one still signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_id_tokens_are_refused() {
    let db = databases::sqlite().await;
    let forge = forge();
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let connection = connect(&api, &owner, &forge.base).await;
    let plain = no_redirects();
    let cases = [
        ("wrong-issuer", "issuer"),
        ("wrong-audience", "audience"),
        ("extra-audience", "audience"),
        ("expired", "expir"),
        ("wrong-nonce", "nonce"),
        ("wrong-state", "start again"),
        ("rogue-key", "signature"),
        ("alg-none", "signature"),
        ("hs256", "alg"),
        ("bad-at-hash", "at_hash"),
        ("no-id-token", "no ID token"),
        ("valid", ""),
    ];
    for (case, words) in cases {
        let mut browser = Browser::new();
        let authorize = start(&api, &mut browser, &connection).await;
        let approved = plain
            .get(format!("{authorize}&case={case}&email={case}@example.com"))
            .send()
            .await
            .expect("authorize");
        assert_eq!(approved.status(), StatusCode::FOUND, "{case}");
        let back = callback_on(&api, &location(&approved));
        let response = browser.get(&back).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if case == "valid" {
            assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
            assert!(browser.session().is_some());
            continue;
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {body}");
        assert!(browser.session().is_none(), "{case}");
        let message = body.to_string().to_lowercase();
        assert!(
            message.contains(&words.to_lowercase()),
            "{case}: {words:?} in {message}"
        );
        assert_eq!(
            user_by_email(&api, &owner, &format!("{case}@example.com")).await,
            Value::Null,
            "{case}: nobody made"
        );
    }
    assert_ne!(
        user_by_email(&api, &owner, "valid@example.com").await,
        Value::Null
    );
    server.stop();
    db.finish().await;
}

/// The provider's discovery document and keys are reused between sign-ins; when the
/// provider rotates its signing key, the next sign-in fetches the new one and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_are_reused_and_fetched_again_after_a_rotation() {
    let db = databases::sqlite().await;
    let forge = forge();
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let connection = connect(&api, &owner, &forge.base).await;
    let plain = no_redirects();
    let fetched = || async {
        let stats: Value = plain
            .get(format!("{}/stats", forge.base))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        (stats["discovery"].as_i64(), stats["jwks"].as_i64())
    };
    let sign_in_as = |email: &'static str| {
        let (api, plain, connection) = (&api, &plain, &connection);
        async move {
            let mut browser = Browser::new();
            let authorize = start(api, &mut browser, connection).await;
            let approved = plain
                .get(format!("{authorize}&email={email}"))
                .send()
                .await
                .expect("authorize");
            let response = browser.get(&callback_on(api, &location(&approved))).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{email}");
        }
    };
    sign_in_as("first@example.com").await;
    sign_in_as("second@example.com").await;
    assert_eq!(fetched().await, (Some(1), Some(1)), "fetched once for both");
    let rotated = plain
        .post(format!("{}/rotate", forge.base))
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), StatusCode::OK);
    sign_in_as("third@example.com").await;
    assert_eq!(
        fetched().await,
        (Some(2), Some(2)),
        "the new key fetched once"
    );
    server.stop();
    db.finish().await;
}
