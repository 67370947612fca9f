//! Test support for the control plane: a bootstrapped server on a store, and a small
//! API client.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::config::{CatalogSourceKind, Secret};
use sluice::control::bootstrap;

use super::databases::TestDb;
use super::{TestServer, basic, client};

pub const CATALOG: &str = r#"
[[sources]]
id = "demo"
write_keys = [{ key = "demo-write-key" }]
"#;

/// A server on the control plane over `db`, bootstrapped; returns it and the setup link.
pub async fn server(db: &TestDb) -> (TestServer, String) {
    server_with(db, |_| {}).await
}

/// [`server`] with config tweaks applied last.
pub async fn server_with(
    db: &TestDb,
    tweak: impl FnOnce(&mut sluice::config::Config),
) -> (TestServer, String) {
    let public = "http://sluice.test";
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG).expect("catalog");
    let first = bootstrap::first_run(&db.store, &catalog, public, chrono::Utc::now())
        .await
        .expect("first run")
        .expect("a new store");
    assert_eq!(first.imported.map(|i| (i.sources, i.keys)), Some((1, 1)));
    let link = first
        .setup_link
        .strip_prefix(public)
        .expect("link on the public URL")
        .to_owned();
    let url = db.url.clone();
    let server = TestServer::start_with(CATALOG, move |config| {
        config.catalog.source = CatalogSourceKind::Control;
        config.catalog.path = catalog;
        config.catalog.poll_interval_ms = 200;
        config.control.database_url = Secret::new(url);
        std::fs::create_dir_all(&config.log.dir).expect("log dir");
        std::fs::write(config.log.dir.join("secret.key"), "07".repeat(32)).expect("key");
        tweak(config);
    });
    (server, link)
}

/// Another control-plane process on the store of `first` (already bootstrapped).
pub fn replica(first: &TestServer, tweak: impl FnOnce(&mut sluice::config::Config)) -> TestServer {
    let mut config = first.config.clone();
    tweak(&mut config);
    TestServer::start_with(CATALOG, move |c| {
        let log = c.log.dir.clone();
        *c = config;
        c.log.dir = log;
        std::fs::create_dir_all(&c.log.dir).expect("log dir");
        std::fs::write(c.log.dir.join("secret.key"), "07".repeat(32)).expect("key");
    })
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    /// A client of `server`'s control listener.
    pub fn of(server: &TestServer) -> Self {
        Self {
            base: format!("http://{}", server.control),
            http: client(),
        }
    }

    /// Uses the first owner's setup link; returns their API token.
    pub async fn owner(&self, link: &str) -> String {
        let (status, body) = self.accept(link, "owner@example.com").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["secret"]
            .as_str()
            .expect("owner token")
            .to_owned()
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(token, Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(token, Method::POST, path, Some(body)).await
    }

    /// Labels `source` `environment:prod` and protects that label (as `owner`).
    pub async fn protect(&self, owner: &str, source: &str) {
        let (status, body) = self
            .post(
                owner,
                &format!("/api/v1/sources/{source}/labels"),
                serde_json::json!({"labels": [{"key": "environment", "value": "prod"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .call(
                owner,
                Method::PUT,
                "/api/v1/settings/protected-labels",
                Some(serde_json::json!({"labels": ["environment:prod"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Invites `email` as `role` and accepts the link: their token and user id.
    pub async fn invited(
        &self,
        owner: &str,
        server: &TestServer,
        email: &str,
        role: &str,
    ) -> (String, String) {
        let (status, body) = self
            .post(
                owner,
                "/api/v1/invites",
                json!({"invites": [{"email": email, "role": role}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let invite = body["data"]["invites"][0]["link"]
            .as_str()
            .expect("link")
            .trim_start_matches(&server.config.control.public_url())
            .to_owned();
        let (status, body) = self.accept(&invite, email).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["data"]["secret"].as_str().expect("token").to_owned(),
            body["data"]["user"]["id"].as_str().expect("id").to_owned(),
        )
    }

    /// A node credential named `name` in `role` (`gateway`, `delivery`), made by `owner`.
    pub async fn node(&self, owner: &str, name: &str, role: &str) -> String {
        let (status, body) = self
            .post(
                owner,
                "/api/v1/nodes",
                json!({"name": name, "role": role, "expiresInDays": 30}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["secret"]
            .as_str()
            .expect("node secret")
            .to_owned()
    }

    /// Creates source `slug` and a write key for it (as `owner`); returns the key once
    /// `server`'s gateway takes it.
    pub async fn new_source(&self, owner: &str, server: &TestServer, slug: &str) -> String {
        let body = json!({"slug": slug, "enabled": true});
        let (status, body) = self.post(owner, "/api/v1/sources", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let path = format!("/api/v1/sources/{slug}/writekey");
        let (status, body) = self.post(owner, &path, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let key = body["data"]["writeKey"]["key"]
            .as_str()
            .expect("key")
            .to_owned();
        until(server, &key, StatusCode::OK).await;
        key
    }

    /// Asserts that `method` on `path` (holding `{id}`) answers `token` the same 404 for
    /// `hidden` (a resource out of the caller's sight) as for `missing` (none at all).
    pub async fn hidden_like_missing(
        &self,
        token: &str,
        method: Method,
        path: &str,
        (hidden, missing): (&str, &str),
        body: Option<Value>,
    ) {
        let at = |id: &str| path.replace("{id}", id);
        let (status, seen) = self
            .call(token, method.clone(), &at(hidden), body.clone())
            .await;
        let (missing_status, unseen) = self.call(token, method, &at(missing), body).await;
        assert_eq!(
            (status, missing_status),
            (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND),
            "{seen}"
        );
        assert_eq!(
            seen.to_string().replace(hidden, "ID"),
            unseen.to_string().replace(missing, "ID")
        );
    }

    /// Gives user `user_id` `level` on source `source` (as `owner`).
    pub async fn grant_source(&self, owner: &str, user_id: &str, source: &str, level: &str) {
        let (status, body) = self
            .post(
                owner,
                "/api/v1/grants",
                json!({
                    "principal": {"type": "user", "id": user_id},
                    "resource": {"kind": "source", "id": source},
                    "level": level,
                    "justification": "test",
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// `POST /auth/login` with `body`, from loopback address `127.0.0.{from}` (each
    /// address has its own sign-in budget): the status, the body and the session
    /// cookie's `name=value` when one was set.
    pub async fn login(&self, from: u8, body: Value) -> (StatusCode, Value, Option<String>) {
        let http = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, from]))
            .build()
            .expect("client");
        let response = http
            .post(format!("{}/auth/login", self.base))
            .json(&body)
            .send()
            .await
            .expect("login");
        let status = response.status();
        let cookie = cookie_set(&response);
        (status, response.json().await.unwrap_or(Value::Null), cookie)
    }

    /// Accepts a one-time link; returns the new user's token.
    pub async fn accept(&self, link: &str, email: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{link}", self.base))
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "email={}&first_name=Test&last_name=User",
                email.replace('@', "%40")
            ))
            .send()
            .await
            .expect("accept");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

pub async fn track(server: &TestServer, key: &str, id: &str) -> StatusCode {
    client()
        .post(server.url("/v1/track"))
        .header("authorization", basic(key))
        .json(&json!({"event": "Signed Up", "userId": "u1", "messageId": id}))
        .send()
        .await
        .expect("track")
        .status()
}

/// Polls until `track` answers `want`; returns how long it took.
pub async fn until(server: &TestServer, key: &str, want: StatusCode) -> Duration {
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let status = track(server, key, &format!("poll-{n}-{}", uuid::Uuid::new_v4())).await;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {status} after 5 s (want {want})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn error_type(body: &Value) -> &str {
    body["errors"][0]["type"].as_str().unwrap_or_default()
}

/// A request made in the person's browser session.
pub async fn as_person(
    api: &Api,
    session: &(String, String),
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = api
        .http
        .request(method, format!("{}{path}", api.base))
        .header("cookie", &session.0)
        .header("origin", &api.base)
        .header("x-csrf-token", &session.1);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Maps an identity-provider group to a role (as `owner`).
pub async fn map_group(api: &Api, owner: &str, group: &str, role: &str) {
    let (status, body) = api
        .call(
            owner,
            Method::PUT,
            &format!("/api/v1/identity/group-mappings/{group}"),
            Some(json!({"role": role})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The names of the groups `user` is in, sorted.
pub async fn groups_of(api: &Api, owner: &str, user: &str) -> Vec<String> {
    let (status, body) = api
        .get(owner, &format!("/api/v1/users/{user}/groups"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut names: Vec<String> = body["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The `name=value` of the first cookie a response sets.
pub fn cookie_set(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Asserts that each action is in the newest 200 audit events; returns those events.
pub async fn audited(api: &Api, owner: &str, actions: &[&str]) -> Vec<Value> {
    let (status, body) = api
        .get(owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for action in actions {
        assert!(
            events.iter().any(|e| e["type"] == json!(action)),
            "{action} audited"
        );
    }
    events
}

/// Asserts that the audit chain of `db` verifies; returns its length.
pub async fn chain_holds(db: &TestDb) -> u64 {
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("verify");
    verified.unwrap_or_else(|broken| panic!("the audit chain is broken: {broken}"))
}
