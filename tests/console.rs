//! The console over real HTTP: the sign-in form, what each role sees and may do, forged
//! and crafted form posts refused (and changing nothing), secrets shown once, hidden
//! resources answering as missing ones, and the pages' headers.

mod common;

use common::control::{Api, server, server_with, track, until};
use common::databases;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough passphrase";

/// A browser: its session cookie and the CSRF token the console's forms carry.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    csrf: String,
}

/// A page as a browser gets it (redirects not followed).
struct Page {
    status: StatusCode,
    location: String,
    cookie: Option<String>,
    csp: String,
    /// `HX-Push-Url`: what htmx puts in the address bar after this answer.
    push: String,
    text: String,
}

impl Browser {
    fn new(api: &Api) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: api.base.clone(),
            cookie: None,
            csrf: String::new(),
        }
    }

    async fn answer(response: reqwest::Response) -> Page {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let location = header(LOCATION);
        let csp = header(CONTENT_SECURITY_POLICY);
        let push = header(reqwest::header::HeaderName::from_static("hx-push-url"));
        let cookie = response
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        Page {
            status: response.status(),
            location,
            cookie,
            csp,
            push,
            text: response.text().await.expect("body"),
        }
    }

    async fn get(&self, path: &str) -> Page {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Self::answer(request.send().await.expect("get")).await
    }

    /// Posts a form as a page would: from `origin`, with the session's CSRF token unless
    /// `fields` name their own `csrf`.
    async fn post_from(&self, origin: Option<&str>, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut pairs: Vec<(&str, &str)> = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            pairs.push(("csrf", &self.csrf));
        }
        let body = serde_urlencoded::to_string(&pairs).expect("form");
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Self::answer(request.send().await.expect("post")).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        self.post_from(Some(&origin), path, fields).await
    }

    /// Signs in with the console's form; the page answered.
    async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let page = self
            .post(
                "/sign-in",
                &[
                    ("workspace", "default"),
                    ("email", email),
                    ("password", password),
                    ("returnTo", "/sources"),
                ],
            )
            .await;
        if let Some(cookie) = &page.cookie {
            self.cookie = Some(cookie.clone());
            self.csrf = csrf_of(&self.get("/sources").await.text);
        }
        page
    }
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with the CSRF token") + marker.len();
    html[start..start + html[start..].find('"').expect("end")].to_owned()
}

/// A person with a session: their setup link used from a browser (which signs them in);
/// their browser and first API token.
async fn person_with_token(api: &Api, link: &str, email: &str) -> (Browser, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{link}", api.base))
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "email={}&first_name=Test&last_name=User",
            email.replace('@', "%40")
        ))
        .send()
        .await
        .expect("accept");
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("json");
    let mut browser = Browser::new(api);
    browser.cookie = Some(cookie.expect("a session cookie"));
    browser.csrf = body["data"]["csrfToken"].as_str().expect("csrf").to_owned();
    let token = body["data"]["secret"].as_str().expect("token").to_owned();
    (browser, token)
}

/// [`person_with_token`]'s browser.
async fn person(api: &Api, link: &str, email: &str) -> Browser {
    person_with_token(api, link, email).await.0
}

/// Invites `email` as `role` (or with `permissions`); the link's path.
async fn invite(api: &Api, owner: &str, invite: Value) -> String {
    let (status, body) = api
        .post(owner, "/api/v1/invites", json!({"invites": [invite]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let link = body["data"]["invites"][0]["link"].as_str().expect("link");
    link[link.find("/setup/").expect("setup path")..].to_owned()
}

/// Someone invited as `role` whose link was used from a browser: that browser.
async fn joined(api: &Api, owner: &str, email: &str, role: &str) -> Browser {
    let link = invite(api, owner, json!({"email": email, "role": role})).await;
    person(api, &link, email).await
}

/// The id of the member with `email` (as `token` sees the members).
async fn user_id(api: &Api, token: &str, email: &str) -> String {
    let (status, body) = api.get(token, "/api/v1/users").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == email)
        .and_then(|u| u["id"].as_str())
        .expect("a member with that email")
        .to_owned()
}

/// The ids of a source's write keys, revoked ones too.
async fn key_ids(api: &Api, owner: &str, source: &str) -> Vec<String> {
    let (status, body) = api
        .get(owner, &format!("/api/v1/sources/{source}/writekeys"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["writeKeys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str().map(str::to_owned))
        .collect()
}

async fn key_count(api: &Api, owner: &str, source: &str) -> usize {
    key_ids(api, owner, source).await.len()
}

async fn source(api: &Api, owner: &str, slug: &str) {
    let (status, body) = api
        .post(owner, "/api/v1/sources", json!({"slug": slug}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_sign_in_form_opens_a_session_from_this_origin_only() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (status, body) = api
        .call(
            &owner,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut browser = Browser::new(&api);

    // Signed out, a page sends the browser to sign in, and back after.
    let page = browser.get("/sources").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location, "/sign-in?returnTo=%2Fsources");
    let page = browser.get("/sign-in?returnTo=%2Fsources").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("action=\"/sign-in\""), "{}", page.text);
    assert!(page.csp.contains("default-src 'none'"), "{}", page.csp);
    assert!(page.csp.contains("script-src 'self';"), "{}", page.csp);
    assert!(!page.csp.contains("unsafe"), "no inline script, no eval");
    // The enhancement is this origin's own copy of htmx, its config refusing eval.
    assert!(
        page.text
            .contains("<script src=\"/console/assets/htmx.min.js\" defer>")
    );
    assert!(page.text.contains("\"allowEval\":false"));
    let script = reqwest::get(format!("{}/console/assets/htmx.min.js", api.base))
        .await
        .expect("script");
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    assert!(script.text().await.expect("body").starts_with("var htmx="));

    // A form posted from elsewhere, or without an origin, signs nobody in.
    let fields = [("email", "owner@example.com"), ("password", PASSWORD)];
    for origin in [Some("http://evil.example"), None] {
        let page = browser.post_from(origin, "/sign-in", &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert_eq!(page.cookie, None);
    }

    // A wrong password: the form again, saying so, and no session.
    let page = browser
        .sign_in("owner@example.com", "not the password")
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("is not right"), "{}", page.text);
    // Answered with a page, a post keeps the address it came from (a reload asks for the
    // page, not the post's route); answered with a redirect, it goes where it says.
    assert_eq!(page.push, "false");
    assert_eq!(page.cookie, None);
    assert!(
        !page.text.contains("not the password"),
        "a password is never echoed"
    );

    // The right one: a session, and on to the page asked for.
    let page = browser.sign_in("owner@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location, "/sources");
    assert_eq!(page.push, "");
    let sources = browser.get("/sources").await;
    assert_eq!(sources.status, StatusCode::OK);
    assert!(sources.text.contains("owner@example.com"));
    assert!(
        sources.text.contains("href=\"/tokens\""),
        "owners see tokens"
    );
    assert!(
        sources.text.contains("<code>demo</code>"),
        "{}",
        sources.text
    );

    // A return address elsewhere is never followed.
    let page = browser
        .post(
            "/sign-in",
            &[
                ("email", "owner@example.com"),
                ("password", PASSWORD),
                ("returnTo", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(page.location, "/");
    // That sign-in replaced the browser's session (the earlier one ended with it).
    browser.cookie = page.cookie.clone();
    browser.csrf = csrf_of(&browser.get("/sources").await.text);

    // Signing out ends the session on the server: the old cookie opens nothing.
    let page = browser.post("/sign-out", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location, "/sign-in?done=signed-out");
    let page = browser.get("/sources").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
}

#[tokio::test]
async fn forged_posts_change_nothing_and_a_key_made_here_is_shown_once_and_works() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner_token = api.owner(&link).await;
    let (status, body) = api
        .call(
            &owner_token,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut owner = Browser::new(&api);
    owner.sign_in("owner@example.com", PASSWORD).await;
    let earlier = key_ids(&api, &owner_token, "demo").await;
    let before = earlier.len();

    // Without the session's token, with another's, or from another origin: refused.
    for (origin, csrf) in [
        (Some(api.base.as_str()), ""),
        (Some(api.base.as_str()), "forged-token"),
        (Some("http://evil.example"), owner.csrf.as_str()),
        (None, owner.csrf.as_str()),
    ] {
        let page = owner
            .post_from(origin, "/sources/demo/keys", &[("csrf", csrf)])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{origin:?} {csrf}");
    }
    assert_eq!(key_count(&api, &owner_token, "demo").await, before);

    // The real form: the key, shown on this page only, and it works at once.
    let page = owner.post("/sources/demo/keys", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let marker = "<output id=\"write-key\"><code>";
    let start = page.text.find(marker).expect("the new key") + marker.len();
    let key = page.text[start..start + page.text[start..].find('<').expect("end")].to_owned();
    assert_eq!(key_count(&api, &owner_token, "demo").await, before + 1);
    let again = owner.get("/sources/demo").await;
    assert!(!again.text.contains(&key), "a key is shown once");
    until(&server, &key, StatusCode::OK).await;
    // The source's last hour counts them (booked from the gateway once a second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = owner.get("/sources/demo").await;
        let marker = "<p id=\"live-numbers\"><strong>";
        let start = page.text.find(marker).expect("live numbers") + marker.len();
        let accepted: u64 = page.text[start..start + page.text[start..].find('<').expect("end")]
            .parse()
            .expect("a count");
        if accepted >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no usage booked: {}",
            page.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Revoked from the console: refused at the gateway.
    let id = key_ids(&api, &owner_token, "demo")
        .await
        .into_iter()
        .find(|id| !earlier.contains(id))
        .expect("the new key's id");
    let page = owner
        .post(&format!("/sources/demo/keys/{id}/revoke"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location, "/sources/demo?done=key-revoked");
    let shown = owner.get(&page.location).await;
    assert!(shown.text.contains("Write key revoked"), "{}", shown.text);
    until(&server, &key, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        track(&server, &key, "after-revoke").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn each_role_sees_and_may_do_what_the_matrix_says_even_when_a_post_is_crafted() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let reader = joined(&api, &owner, "r@example.com", "read_only").await;
    let admin = joined(&api, &owner, "a@example.com", "admin").await;
    let before = key_count(&api, &owner, "demo").await;

    // Read-only: sources yes, but no forms that change them and no tokens or team admin.
    let page = reader.get("/sources").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("<code>demo</code>"));
    assert!(!page.text.contains("action=\"/sources\""), "no create form");
    assert!(
        !page.text.contains("href=\"/tokens\""),
        "no tokens in the nav"
    );
    let page = reader.get("/sources/demo").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("New write key"));
    assert!(!page.text.contains("Disable this source"));
    assert_eq!(reader.get("/tokens").await.status, StatusCode::FORBIDDEN);
    let page = reader.get("/team").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("action=\"/team/invites\""));

    // Crafted by hand with the reader's own valid token and origin: refused by the API.
    for (path, fields) in [
        ("/sources/demo/keys", vec![]),
        ("/sources/demo/enabled", vec![("enabled", "false")]),
        ("/sources", vec![("slug", "sneaky")]),
        (
            "/tokens",
            vec![("name", "t"), ("scope", "sources:read"), ("days", "1")],
        ),
        (
            "/team/invites",
            vec![("email", "x@example.com"), ("role", "admin")],
        ),
    ] {
        let page = reader.post(path, &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.text);
    }
    assert_eq!(key_count(&api, &owner, "demo").await, before);
    let (_, body) = api.get(&owner, "/api/v1/sources/demo").await;
    assert_eq!(body["data"]["source"]["enabled"], true);
    let (status, _) = api.get(&owner, "/api/v1/sources/sneaky").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Admin: manages members, but no owner role is offered, and a crafted one is refused.
    let page = admin.get("/team").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("action=\"/team/invites\""));
    assert!(
        !page.text.contains("<option value=\"owner\""),
        "{}",
        page.text
    );
    let (_, body) = api.get(&owner, "/api/v1/users").await;
    let id_of = |email: &str| {
        body["data"]["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["email"] == email)
            .and_then(|u| u["id"].as_str())
            .expect("user")
            .to_owned()
    };
    let (owner_id, reader_id, admin_id) = (
        id_of("owner@example.com"),
        id_of("r@example.com"),
        id_of("a@example.com"),
    );
    for (who, role) in [
        (&admin_id, "owner"),
        (&owner_id, "member"),
        (&reader_id, "owner"),
    ] {
        let page = admin
            .post(&format!("/team/{who}/role"), &[("role", role)])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{who} → {role}");
    }
    let page = admin
        .post(&format!("/team/{reader_id}/role"), &[("role", "member")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let (_, body) = api.get(&owner, "/api/v1/users").await;
    let roles: Vec<(String, String)> = body["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["email"].as_str().unwrap_or_default().to_owned(),
                u["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (email, role) in [
        ("owner@example.com", "owner"),
        ("a@example.com", "admin"),
        ("r@example.com", "member"),
    ] {
        assert!(
            roles.contains(&(email.to_owned(), role.to_owned())),
            "{roles:?}"
        );
    }

    // An invite from the console: its link shown once, and it works.
    let page = admin
        .post(
            "/team/invites",
            &[("email", "new@example.com"), ("role", "member")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let marker = "<output id=\"invite-url\"><code>";
    let start = page.text.find(marker).expect("the link") + marker.len();
    let url = &page.text[start..start + page.text[start..].find('<').expect("end")];
    let path = &url[url.find("/setup/").expect("setup path")..];
    let (status, body) = api.accept(path, "new@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A bad email is shown beside the form, not as a refusal.
    let page = admin
        .post("/team/invites", &[("email", "nope"), ("role", "member")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text.contains("role=\"alert\""));
}

#[tokio::test]
async fn a_hidden_source_answers_exactly_like_a_missing_one() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    source(&api, &owner, "mine").await;
    source(&api, &owner, "theirs").await;
    let scoped = person(
        &api,
        &invite(
            &api,
            &owner,
            json!({"email": "s@example.com",
                "permissions": [{"roleId": "source_admin", "resources": [{"id": "mine", "type": "SOURCE"}]}]}),
        )
        .await,
        "s@example.com",
    )
    .await;
    let list = scoped.get("/sources").await;
    assert!(list.text.contains("<code>mine</code>"));
    assert!(!list.text.contains("theirs"), "a hidden source is absent");
    let hidden = scoped.get("/sources/theirs").await;
    let missing = scoped.get("/sources/nosuch").await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, hidden.status);
    assert_eq!(
        hidden.text.replace("theirs", "X"),
        missing.text.replace("nosuch", "X"),
        "a hidden source answers exactly like a missing one"
    );
    // And a change posted to it too.
    let hidden = scoped.post("/sources/theirs/keys", &[]).await;
    let missing = scoped.post("/sources/nosuch/keys", &[]).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(
        hidden.text.replace("theirs", "X"),
        missing.text.replace("nosuch", "X")
    );
    assert_eq!(key_count(&api, &owner, "theirs").await, 0);
}

#[tokio::test]
async fn tokens_audit_and_sessions_from_the_console() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;

    // A token made here: its secret shown once, working, then revoked here.
    let page = owner
        .post(
            "/tokens",
            &[
                ("name", "ci"),
                ("scope", "sources:read"),
                ("scope", "audit:read"),
                ("days", "7"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let marker = "<output id=\"token-secret\"><code>";
    let start = page.text.find(marker).expect("the secret") + marker.len();
    let secret = page.text[start..start + page.text[start..].find('<').expect("end")].to_owned();
    let (status, _) = api.get(&secret, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.get(&secret, "/api/v1/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the scopes ticked");
    assert!(!owner.get("/tokens").await.text.contains(&secret));
    let (_, body) = api.get(&owner_token, "/api/v1/tokens").await;
    let id = body["data"]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["name"] == "ci")
        .and_then(|t| t["id"].as_str())
        .expect("ci token")
        .to_owned();
    // Rotated: a new secret shown once, the old one refused; another member's token
    // offers no rotation, and a crafted one is refused (only its holder may have it).
    let page = owner.get("/tokens").await;
    assert!(
        page.text
            .contains(&format!("action=\"/tokens/{id}/rotate\""))
    );
    let page = owner.post(&format!("/tokens/{id}/rotate"), &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let start = page.text.find(marker).expect("the new secret") + marker.len();
    let rotated = page.text[start..start + page.text[start..].find('<').expect("end")].to_owned();
    assert_ne!(rotated, secret);
    let (status, _) = api.get(&secret, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old secret");
    let (status, _) = api.get(&rotated, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::OK, "the new one");
    let admin = joined(&api, &owner_token, "a@example.com", "admin").await;
    let (_, body) = api.get(&owner_token, "/api/v1/tokens").await;
    let id = body["data"]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["name"] == "ci" && t["revokedAt"].is_null())
        .and_then(|t| t["id"].as_str())
        .expect("the rotated token")
        .to_owned();
    let page = admin.get("/tokens").await;
    assert!(
        page.text
            .contains(&format!("action=\"/tokens/{id}/revoke\""))
    );
    assert!(
        !page
            .text
            .contains(&format!("action=\"/tokens/{id}/rotate\""))
    );
    let page = admin.post(&format!("/tokens/{id}/rotate"), &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    let page = owner.post(&format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!(page.location, "/tokens?done=token-revoked");
    let (status, _) = api.get(&rotated, "/api/v1/sources").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Scopes that are no person's: the form again, with why.
    let page = owner
        .post(
            "/tokens",
            &[("name", "x"), ("scope", "catalog:read"), ("days", "7")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );

    // The audit trail, filtered, and its CSV export.
    let page = owner.get("/audit?action=token.revoke").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("token.revoke"), "{}", page.text);
    assert!(!page.text.contains("token.create"), "the filter holds");
    let csv = owner.get("/audit.csv?action=token.create").await;
    assert_eq!(csv.status, StatusCode::OK);
    let mut lines = csv.text.lines();
    assert!(lines.next().expect("header").contains("timestamp"));
    assert!(lines.all(|l| l.contains("token.create")), "{}", csv.text);

    // Sessions: a second one ended from the first.
    let (status, body) = api
        .call(
            &owner_token,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut second = Browser::new(&api);
    second.sign_in("owner@example.com", PASSWORD).await;
    assert_eq!(second.get("/account").await.status, StatusCode::OK);
    let mut first = Browser::new(&api);
    first.sign_in("owner@example.com", PASSWORD).await;
    let page = first.post("/account/sessions/end-others", &[]).await;
    assert_eq!(page.location, "/account?done=sessions-ended");
    assert_eq!(second.get("/account").await.status, StatusCode::SEE_OTHER);
    assert_eq!(first.get("/account").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_persons_access_is_explained_granted_and_offboarded_from_the_console() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    source(&api, &owner_token, "mine").await;
    let scoped_link = invite(
        &api,
        &owner_token,
        json!({"email": "s@example.com",
            "permissions": [{"roleId": "source_admin", "resources": [{"id": "demo", "type": "SOURCE"}]}]}),
    )
    .await;
    let (scoped, _) = person_with_token(&api, &scoped_link, "s@example.com").await;
    let id = user_id(&api, &owner_token, "s@example.com").await;
    let owner_id = user_id(&api, &owner_token, "owner@example.com").await;

    // Effective access, as the API decides it: "mine" is hidden from them.
    let explain = format!("/team/{id}?action=view_source&resourceType=source&resourceId=mine");
    let page = owner.get(&explain).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("<strong>Refused</strong>"),
        "{}",
        page.text
    );
    assert_eq!(
        scoped.get("/sources/mine").await.status,
        StatusCode::NOT_FOUND
    );

    // Nobody but who manages members sees the page's forms or may post them.
    let page = scoped
        .post(
            &format!("/team/{id}/grants"),
            &[("kind", "source"), ("resource", "mine"), ("level", "full")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    assert_eq!(
        scoped.get(&format!("/team/{owner_id}")).await.status,
        StatusCode::OK
    );
    assert!(
        !scoped
            .get(&format!("/team/{owner_id}"))
            .await
            .text
            .contains("Grant access")
    );

    // Granted here: the same question now answers allowed, and the source is theirs.
    let page = owner
        .post(
            &format!("/team/{id}/grants"),
            &[
                ("kind", "source"),
                ("resource", "mine"),
                ("level", "read_only"),
                ("justification", "on-call"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = owner.get(&explain).await;
    assert!(
        page.text.contains("<strong>Allowed</strong>"),
        "{}",
        page.text
    );
    assert_eq!(scoped.get("/sources/mine").await.status, StatusCode::OK);
    assert!(page.text.contains("source mine"), "the grant is listed");

    // Offboarding: the plan first (nothing changes), then carried out.
    let page = owner
        .post(
            &format!("/team/{id}/offboard"),
            &[("successor", owner_id.as_str())],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("offboarding-plan"), "{}", page.text);
    assert_eq!(
        scoped.get("/sources").await.status,
        StatusCode::OK,
        "a plan changes nothing"
    );
    let page = owner
        .post(
            &format!("/team/{id}/offboard"),
            &[("successor", owner_id.as_str()), ("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location, "/team?done=offboarded");
    assert_eq!(
        scoped.get("/sources").await.status,
        StatusCode::SEE_OTHER,
        "their session ended"
    );
}

#[tokio::test]
async fn every_form_refuses_a_forged_post_and_changes_nothing() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let (_, body) = api.get(&owner_token, "/api/v1/users").await;
    let me = body["data"]["users"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, body) = api.get(&owner_token, "/api/v1/tokens").await;
    let token = body["data"]["tokens"][0]["id"]
        .as_str()
        .expect("token")
        .to_owned();
    let key = key_ids(&api, &owner_token, "demo").await[0].clone();
    let (status, body) = api
        .post(
            &owner_token,
            "/api/v1/destinations",
            json!({"id": "hook", "sourceId": "demo", "metadataId": "webhook",
                   "settings": {"url": "https://hooks.example.com/p"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    source(&api, &owner_token, "other").await;
    let destination_before = api.get(&owner_token, "/api/v1/destinations/hook").await.1;
    let settings_before = api.get(&owner_token, "/api/v1/settings").await.1;
    let labels_before = api.get(&owner_token, "/api/v1/labels").await.1;
    let audit_before = api.get(&owner_token, "/api/v1/audit-events").await.1["data"]["events"]
        .as_array()
        .map(Vec::len);
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/sign-out".into(), vec![]),
        ("/sources".into(), vec![("slug", "forged")]),
        ("/sources/demo/enabled".into(), vec![("enabled", "false")]),
        ("/sources/demo/keys".into(), vec![]),
        (format!("/sources/demo/keys/{key}/revoke"), vec![]),
        (
            "/destinations/any/enabled".into(),
            vec![("enabled", "false")],
        ),
        ("/destinations/any/reveal".into(), vec![]),
        (
            "/tokens".into(),
            vec![("name", "forged"), ("scope", "sources:read"), ("days", "1")],
        ),
        (format!("/tokens/{token}/revoke"), vec![]),
        (format!("/tokens/{token}/rotate"), vec![]),
        (
            "/team/invites".into(),
            vec![("email", "forged@example.com"), ("role", "admin")],
        ),
        (format!("/team/{me}/role"), vec![("role", "member")]),
        (
            format!("/team/{me}/grants"),
            vec![("kind", "source"), ("resource", "demo"), ("level", "full")],
        ),
        (format!("/team/{me}/grants/g_x/remove"), vec![]),
        (format!("/team/{me}/offboard"), vec![("successor", "x")]),
        ("/account/sessions/end-others".into(), vec![]),
        ("/account/sessions/ses_x/end".into(), vec![]),
        (
            "/account/password".into(),
            vec![("new_password", PASSWORD), ("repeat_password", PASSWORD)],
        ),
        (
            "/sources/demo/plan".into(),
            vec![("plan", ""), ("enforcement", "block")],
        ),
        ("/sources/demo/labels".into(), vec![("labels", "env:prod")]),
        ("/plans".into(), vec![("name", "forged")]),
        (
            "/plans/tp_x/change-requests".into(),
            vec![("description", "x"), ("rules", "[]")],
        ),
        ("/change-requests/cr_x/approve".into(), vec![]),
        (
            "/change-requests/cr_x/reject".into(),
            vec![("comment", "x")],
        ),
        ("/change-requests/cr_x/withdraw".into(), vec![]),
        ("/operations/quota".into(), vec![("monthly_events", "1")]),
        (
            "/identity/connections".into(),
            vec![
                ("name", "x"),
                ("kind", "oidc"),
                ("issuer", "http://127.0.0.1:9"),
                ("client_id", "c"),
            ],
        ),
        (
            "/identity/connections/sso_x/enabled".into(),
            vec![("enabled", "false")],
        ),
        ("/identity/connections/sso_x/test".into(), vec![]),
        ("/identity/sign-in".into(), vec![("require_sso", "true")]),
        ("/identity/scim-tokens".into(), vec![("name", "forged")]),
        ("/identity/scim-tokens/st_x/revoke".into(), vec![]),
        (
            "/identity/group-mappings".into(),
            vec![("group", "forged"), ("role", "admin")],
        ),
        ("/reviews".into(), vec![("name", "forged")]),
        (
            "/reviews/ar_x/items/it_x".into(),
            vec![("decision", "keep"), ("note", "x")],
        ),
        ("/reviews/ar_x/close".into(), vec![]),
        (
            "/elevations".into(),
            vec![("role", "admin"), ("reason", "x"), ("minutes", "5")],
        ),
        ("/elevations/el_x/approve".into(), vec![]),
        ("/elevations/el_x/end".into(), vec![]),
        (
            "/destinations".into(),
            vec![
                ("name", "forged"),
                ("type", "webhook"),
                ("source", "demo"),
                ("settings", r#"{"url": "https://evil.example/x"}"#),
            ],
        ),
        (
            "/destinations/hook/settings".into(),
            vec![
                ("name", "x"),
                ("settings", r#"{"url": "https://evil.example/x"}"#),
            ],
        ),
        (
            "/destinations/hook/connect".into(),
            vec![("source", "other")],
        ),
        (
            "/destinations/hook/disconnect".into(),
            vec![("source", "demo")],
        ),
        ("/destinations/hook/delete".into(), vec![]),
        ("/sources/demo/delete".into(), vec![("confirm", "demo")]),
        (
            "/settings".into(),
            vec![
                ("name", "forged"),
                ("membersCanPublish", "on"),
                ("tokenMaxDays", "1"),
                ("elevationMaxMinutes", "1"),
            ],
        ),
        (
            "/settings/protected-labels".into(),
            vec![("labels", "env:prod")],
        ),
        (
            "/settings/labels".into(),
            vec![("key", "env"), ("value", "prod")],
        ),
        (
            "/settings/labels/delete".into(),
            vec![("key", "env"), ("value", "prod")],
        ),
        ("/groups".into(), vec![("name", "forged")]),
        ("/groups/grp_x/rename".into(), vec![("name", "x")]),
        ("/groups/grp_x/delete".into(), vec![]),
        (
            "/groups/grp_x/members".into(),
            vec![("emails", "forged@example.com")],
        ),
        ("/groups/grp_x/members/usr_x/remove".into(), vec![]),
        (
            "/groups/grp_x/grants".into(),
            vec![("kind", "source"), ("resource", "demo"), ("level", "full")],
        ),
        ("/groups/grp_x/grants/g_x/remove".into(), vec![]),
        ("/changes/rc_x/approve".into(), vec![]),
        ("/changes/rc_x/reject".into(), vec![("comment", "x")]),
        ("/changes/rc_x/withdraw".into(), vec![]),
        (
            "/nodes".into(),
            vec![("name", "forged"), ("role", "delivery")],
        ),
        ("/nodes/nd_x/revoke".into(), vec![]),
    ];
    let base = api.base.clone();
    for (path, fields) in &forms {
        for (origin, csrf) in [
            (Some(base.as_str()), None),
            (Some(base.as_str()), Some("forged-token")),
            (Some("http://evil.example"), Some(owner.csrf.as_str())),
            (None, Some(owner.csrf.as_str())),
        ] {
            let mut fields = fields.clone();
            fields.push(("csrf", csrf.unwrap_or("")));
            let page = owner.post_from(origin, path, &fields).await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{path} from {origin:?} with {csrf:?}: {}",
                page.text
            );
        }
    }
    // Nothing changed: the session lives, the source and its keys, the token, the roles.
    assert_eq!(owner.get("/sources").await.status, StatusCode::OK);
    let (_, body) = api.get(&owner_token, "/api/v1/sources/demo").await;
    assert_eq!(body["data"]["source"]["enabled"], true);
    assert_eq!(key_ids(&api, &owner_token, "demo").await, vec![key]);
    let (status, _) = api.get(&owner_token, "/api/v1/sources/forged").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = api.get(&owner_token, "/api/v1/tokens").await;
    assert_eq!(body["data"]["tokens"].as_array().map(Vec::len), Some(1));
    let (_, body) = api.get(&owner_token, "/api/v1/users").await;
    assert_eq!(body["data"]["users"][0]["role"], "owner");
    let (_, body) = api.get(&owner_token, "/api/v1/invites").await;
    assert_eq!(body["data"]["invites"], json!([]));
    let (_, body) = api.get(&owner_token, "/api/v1/sources/demo").await;
    assert_eq!(body["data"]["source"]["labels"], json!([]));
    assert_eq!(body["data"]["source"]["enforcement"], "off");
    let (_, body) = api.get(&owner_token, "/api/v1/tracking-plans").await;
    assert_eq!(body["data"]["trackingPlans"], json!([]));
    let (_, body) = api.get(&owner_token, "/api/v1/identity/scim-tokens").await;
    assert_eq!(body["data"]["scimTokens"], json!([]));
    let (_, body) = api
        .get(&owner_token, "/api/v1/identity/sso-connections")
        .await;
    assert_eq!(body["data"]["ssoConnections"], json!([]));
    let (_, body) = api.get(&owner_token, "/api/v1/identity/sign-in").await;
    assert_eq!(body["data"]["signIn"]["requireSso"], false);
    let (_, body) = api.get(&owner_token, "/api/v1/access-reviews").await;
    assert_eq!(body["data"]["accessReviews"], json!([]));
    let (_, body) = api.get(&owner_token, "/api/v1/elevations").await;
    assert_eq!(body["data"]["elevations"], json!([]));
    assert_eq!(
        api.get(&owner_token, "/api/v1/destinations/hook").await.1,
        destination_before
    );
    let (_, body) = api.get(&owner_token, "/api/v1/destinations").await;
    assert_eq!(
        body["data"]["destinations"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        api.get(&owner_token, "/api/v1/settings").await.1,
        settings_before
    );
    let (_, body) = api
        .get(&owner_token, "/api/v1/settings/protected-labels")
        .await;
    assert_eq!(body["data"]["labels"], json!([]));
    assert_eq!(
        api.get(&owner_token, "/api/v1/labels").await.1,
        labels_before
    );
    let (_, body) = api.get(&owner_token, "/api/v1/groups").await;
    assert_eq!(body["data"]["userGroups"], json!([]));
    let (_, body) = api.get(&owner_token, "/api/v1/nodes").await;
    assert_eq!(body["data"]["nodes"], json!([]));
    let audit_after = api.get(&owner_token, "/api/v1/audit-events").await.1["data"]["events"]
        .as_array()
        .map(Vec::len);
    assert_eq!(
        audit_before, audit_after,
        "no change was made, none audited"
    );
}

#[tokio::test]
async fn sign_in_returns_only_to_this_listener_and_ends_the_browsers_earlier_session() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (earlier, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let (status, body) = api
        .call(
            &owner_token,
            Method::PUT,
            "/auth/password",
            Some(json!({"newPassword": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The password change ended the setup session; sign in with the form from a browser
    // that still holds an old cookie.
    let mut browser = Browser::new(&api);
    browser.sign_in("owner@example.com", PASSWORD).await;
    let first = browser.cookie.clone().expect("first session");
    assert_eq!(browser.get("/account").await.status, StatusCode::OK);
    let page = browser.sign_in("owner@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_ne!(browser.cookie.as_deref(), Some(first.as_str()));
    let mut old = Browser::new(&api);
    old.cookie = Some(first);
    assert_eq!(
        old.get("/account").await.status,
        StatusCode::SEE_OTHER,
        "signing in again ends the session the browser held"
    );
    assert_eq!(earlier.get("/account").await.status, StatusCode::SEE_OTHER);

    // Signed in, the sign-in page sends the browser on to where it asked: this
    // listener's paths only.
    for bad in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "/\t/evil.example",
        "evil",
        "/sign-out",
    ] {
        let query = serde_urlencoded::to_string([("returnTo", bad)]).expect("query");
        let page = browser.get(&format!("/sign-in?{query}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{bad:?}");
        assert_eq!(page.location, "/", "{bad:?}");
    }
    let page = browser.get("/sign-in?returnTo=%2Faudit%3Faction%3Dx").await;
    assert_eq!(page.location, "/audit?action=x");
}

#[tokio::test]
async fn a_change_request_is_proposed_reviewed_with_its_diff_and_published_from_the_console() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let member = joined(&api, &owner_token, "m@example.com", "member").await;
    let reader = joined(&api, &owner_token, "r@example.com", "read_only").await;
    let (status, body) = api
        .post(
            &owner_token,
            "/api/v1/tracking-plans",
            json!({"name": "Web"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plan = body["data"]["trackingPlan"]["id"]
        .as_str()
        .expect("plan")
        .to_owned();

    // The member proposes; bad JSON comes back to the form with what they typed.
    let page = member
        .post(
            &format!("/plans/{plan}/change-requests"),
            &[("description", "orders"), ("rules", "[{not json")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text.contains("[{not json"), "what they typed is kept");
    // Shown again only to this session's own form: a forged one shows nothing.
    let page = member
        .post_from(
            Some("http://evil.example"),
            &format!("/plans/{plan}/change-requests"),
            &[("description", "orders"), ("rules", "[{planted")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.text.contains("[{planted"));
    let rules = json!([{"type": "TRACK", "key": "Order Completed", "version": 1,
        "jsonSchema": {"type": "object", "properties": {"properties": {"type": "object",
            "required": ["total"]}}}}])
    .to_string();
    let page = member
        .post(
            &format!("/plans/{plan}/change-requests"),
            &[("description", "Orders need a total"), ("rules", &rules)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let path = page.location.split('?').next().expect("path").to_owned();
    let id = path.trim_start_matches("/change-requests/").to_owned();

    // Its page: the diff, and no approve button for its own author or a reader.
    let page = member.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Order Completed"), "{}", page.text);
    assert!(page.text.contains("class=\"added\""), "{}", page.text);
    assert!(!page.text.contains("Approve and publish"));
    assert!(page.text.contains("Withdraw this request"));
    assert!(!reader.get(&path).await.text.contains("Approve and publish"));
    // Posted all the same: refused by the API, nothing published.
    for who in [&member, &reader] {
        let page = who
            .post(
                &format!("{path}/approve"),
                &[("updatedAt", ""), ("comment", "self")],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    }
    assert_eq!(
        reader.post(&format!("{path}/withdraw"), &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let (_, body) = api
        .get(&owner_token, &format!("/api/v1/tracking-plans/{plan}"))
        .await;
    assert_eq!(body["data"]["trackingPlan"]["version"], 0);

    // The owner approves what they read: published as version 1.
    let page = owner.get(&path).await;
    assert!(page.text.contains("Approve and publish"), "{}", page.text);
    let marker = "name=\"updatedAt\" value=\"";
    let start = page.text.find(marker).expect("updatedAt") + marker.len();
    let updated = page.text[start..start + page.text[start..].find('"').expect("end")].to_owned();
    // A stale read is refused (the request changed since the reviewer read it).
    let page = owner
        .post(
            &format!("{path}/approve"),
            &[("updatedAt", "2020-01-01T00:00:00Z")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );
    let page = owner
        .post(
            &format!("{path}/approve"),
            &[("updatedAt", updated.as_str()), ("comment", "ok")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(
        page.location,
        format!("/change-requests/{id}?done=published")
    );
    let (_, body) = api
        .get(&owner_token, &format!("/api/v1/tracking-plans/{plan}"))
        .await;
    assert_eq!(body["data"]["trackingPlan"]["version"], 1);
    let page = owner.get(&format!("/plans/{plan}")).await;
    assert!(
        page.text.contains("TRACK Order Completed v1"),
        "{}",
        page.text
    );
    let page = owner.get("/change-requests?status=PUBLISHED").await;
    assert!(page.text.contains(&id));

    // The source checks its events against the plan, blocking violations; and labels.
    let page = owner
        .post(
            "/sources/demo/plan",
            &[("plan", plan.as_str()), ("enforcement", "block")],
        )
        .await;
    assert_eq!(
        page.location, "/sources/demo?done=source-changed",
        "{}",
        page.text
    );
    let page = owner
        .post(
            "/sources/demo/labels",
            &[("labels", "team: web, tier:gold")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = owner
        .post("/sources/demo/labels", &[("labels", "nocolon")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = api.get(&owner_token, "/api/v1/sources/demo").await;
    assert_eq!(body["data"]["source"]["trackingPlanId"], plan.as_str());
    assert_eq!(body["data"]["source"]["enforcement"], "block");
    assert_eq!(
        body["data"]["source"]["labels"],
        json!([{"key": "team", "value": "web"}, {"key": "tier", "value": "gold"}])
    );
    let page = reader
        .post(
            "/sources/demo/plan",
            &[("plan", ""), ("enforcement", "off")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = owner.get("/sources/demo").await;
    assert!(page.text.contains("team: web, tier: gold"), "{}", page.text);
}

#[tokio::test]
async fn usage_quotas_and_gateways_from_the_console() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let reader = joined(&api, &owner_token, "r@example.com", "read_only").await;
    let page = reader.get("/operations").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("catalog is at revision"));
    assert!(!page.text.contains("Set quota"));
    let page = reader
        .post("/operations/quota", &[("monthly_events", "5")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    let page = owner
        .post("/operations/quota", &[("monthly_events", "lots")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = owner
        .post(
            "/operations/quota",
            &[("source", "demo"), ("monthly_events", "1000")],
        )
        .await;
    assert_eq!(page.location, "/operations?done=quota-set", "{}", page.text);
    let (_, body) = api.get(&owner_token, "/api/v1/usage").await;
    assert_eq!(body["data"]["usage"]["monthlyEventQuota"], Value::Null);
    let page = owner.get("/operations?done=quota-set").await;
    assert!(page.text.contains("Quota set"), "{}", page.text);
}

#[tokio::test]
async fn sign_in_settings_scim_tokens_and_group_mappings_from_the_console() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let admin = joined(&api, &owner_token, "a@example.com", "admin").await;
    let member = joined(&api, &owner_token, "m@example.com", "member").await;

    // Members see no sign-in settings; admins see them but change no connection.
    assert!(
        !member
            .get("/sources")
            .await
            .text
            .contains("href=\"/identity\"")
    );
    assert_eq!(member.get("/identity").await.status, StatusCode::FORBIDDEN);
    let page = admin.get("/identity").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(!page.text.contains("Add connection"));
    assert!(page.text.contains("Set mapping"));
    for (path, fields) in [
        (
            "/identity/connections",
            vec![
                ("name", "x"),
                ("kind", "oidc"),
                ("issuer", "http://127.0.0.1:9"),
                ("client_id", "c"),
            ],
        ),
        ("/identity/scim-tokens", vec![("name", "idp")]),
        ("/identity/sign-in", vec![("require_sso", "true")]),
    ] {
        let page = admin.post(path, &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.text);
    }

    // The owner: a SCIM token shown once, that works at /scim/v2, then revoked.
    let page = owner
        .post("/identity/scim-tokens", &[("name", "okta")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let marker = "<output id=\"scim-secret\"><code>";
    let start = page.text.find(marker).expect("secret") + marker.len();
    let secret = page.text[start..start + page.text[start..].find('<').expect("end")].to_owned();
    let scim = |token: String| {
        let url = format!("{}/scim/v2/Users", api.base);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("scim")
                .status()
        }
    };
    assert_eq!(scim(secret.clone()).await, StatusCode::OK);
    assert!(!owner.get("/identity").await.text.contains(&secret));
    let (_, body) = api.get(&owner_token, "/api/v1/identity/scim-tokens").await;
    let id = body["data"]["scimTokens"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let page = owner
        .post(&format!("/identity/scim-tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(scim(secret).await, StatusCode::UNAUTHORIZED);

    // Group mappings: an admin maps, never to owner; a connection the owner adds.
    let page = admin
        .post(
            "/identity/group-mappings",
            &[("group", "eng"), ("role", "member")],
        )
        .await;
    assert_eq!(
        page.location, "/identity?done=mapping-changed",
        "{}",
        page.text
    );
    let page = admin
        .post(
            "/identity/group-mappings",
            &[("group", "eng"), ("role", "owner")],
        )
        .await;
    assert_ne!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert!(
        admin
            .get("/identity")
            .await
            .text
            .contains("<code>eng</code> → member")
    );
    let page = owner
        .post(
            "/identity/connections",
            &[
                ("name", "Corp IdP"),
                ("kind", "oidc"),
                ("default_role", "read_only"),
                ("issuer", "http://127.0.0.1:9"),
                ("client_id", "sluice"),
                ("client_secret", "s3cret-value"),
            ],
        )
        .await;
    assert_eq!(
        page.location, "/identity?done=connection-added",
        "{}",
        page.text
    );
    let page = owner.get("/identity").await;
    assert!(page.text.contains("Corp IdP"));
    assert!(
        !page.text.contains("s3cret-value"),
        "a client secret is never shown"
    );
    assert!(
        page.text.contains("/auth/oidc/callback"),
        "the redirect URI to give"
    );
    // Off until turned on: no button on the sign-in page before.
    let page = Browser::new(&api).get("/sign-in").await;
    assert!(
        !page.text.contains("Sign in with Corp IdP"),
        "{}",
        page.text
    );
    let (_, body) = api
        .get(&owner_token, "/api/v1/identity/sso-connections")
        .await;
    let id = body["data"]["ssoConnections"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let page = owner
        .post(
            &format!("/identity/connections/{id}/enabled"),
            &[("enabled", "true")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = Browser::new(&api).get("/sign-in").await;
    assert!(page.text.contains("Sign in with Corp IdP"), "{}", page.text);
}

#[tokio::test]
async fn an_access_review_is_decided_and_closed_from_the_console_with_its_evidence() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let member = joined(&api, &owner_token, "m@example.com", "member").await;
    let admin = joined(&api, &owner_token, "a@example.com", "admin").await;
    let member_id = user_id(&api, &owner_token, "m@example.com").await;
    assert_eq!(member.get("/reviews").await.status, StatusCode::FORBIDDEN);
    assert!(
        !member
            .get("/sources")
            .await
            .text
            .contains("href=\"/reviews\"")
    );
    let page = member.post("/reviews", &[("name", "sneaky")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);

    let page = owner.post("/reviews", &[("name", "2026 Q4")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let path = page.location.split('?').next().expect("path").to_owned();
    let page = owner.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("m@example.com"), "{}", page.text);
    // Every undecided line the owner may decide: decide each (revoke the member's role).
    let (_, body) = api
        .get(
            &owner_token,
            &format!(
                "/api/v1/access-reviews/{}/items?pagination%5Bcount%5D=200",
                path.trim_start_matches("/reviews/")
            ),
        )
        .await;
    let items = body["data"]["items"].as_array().expect("items").clone();
    assert!(!items.is_empty());
    // A note is required: the form comes back with why.
    let first = items[0]["id"].as_str().expect("id");
    let page = owner
        .post(
            &format!("{path}/items/{first}"),
            &[("decision", "keep"), ("note", "")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );
    for item in &items {
        let id = item["id"].as_str().expect("id");
        let page = member
            .post(
                &format!("{path}/items/{id}"),
                &[("decision", "keep"), ("note", "mine")],
            )
            .await;
        assert_ne!(
            page.status,
            StatusCode::SEE_OTHER,
            "a member decides nothing"
        );
        // The member's role is lowered; every other line kept.
        let member_role = item["kind"] == "role" && item["subjectId"] == member_id.as_str();
        let fields: &[(&str, &str)] = if member_role {
            &[
                ("decision", "change"),
                ("role", "read_only"),
                ("note", "reads only"),
            ]
        } else {
            &[("decision", "keep"), ("note", "still needed")]
        };
        // Nobody decides their own line: the owner's own go to the admin, and back.
        let mut decided = false;
        for reviewer in [&owner, &admin] {
            let page = reviewer.post(&format!("{path}/items/{id}"), fields).await;
            match page.status {
                StatusCode::SEE_OTHER => {
                    decided = true;
                    break;
                }
                StatusCode::FORBIDDEN => {}
                other => panic!("{other}: {}", page.text),
            }
        }
        assert!(decided, "{item}");
    }
    let page = owner.post(&format!("{path}/close"), &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let (_, body) = api
        .get(&owner_token, &format!("/api/v1/users/{member_id}"))
        .await;
    assert_eq!(body["data"]["user"]["role"], "read_only", "{body}");
    let page = owner.get(&path).await;
    assert!(page.text.contains("CLOSED"), "{}", page.text);
    let evidence = owner.get(&format!("{path}/evidence.md")).await;
    assert_eq!(evidence.status, StatusCode::OK);
    assert!(
        evidence.text.starts_with("# Access review: 2026 Q4"),
        "{}",
        evidence.text
    );
    let workspace = owner.get("/evidence/workspace.md").await;
    assert_eq!(workspace.status, StatusCode::OK);
    assert!(workspace.text.contains("m@example.com"));
    assert_eq!(
        member.get("/evidence/workspace.md").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn temporary_access_is_asked_approved_and_ended_from_the_console() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let member = joined(&api, &owner_token, "m@example.com", "member").await;
    let reader = joined(&api, &owner_token, "r@example.com", "read_only").await;
    let page = member
        .post(
            "/elevations",
            &[
                ("role", ""),
                ("kind", "source"),
                ("resource", "demo"),
                ("level", "full"),
                ("reason", "incident 42"),
                ("minutes", "30"),
            ],
        )
        .await;
    assert_eq!(
        page.location, "/elevations?done=elevation-asked",
        "{}",
        page.text
    );
    let (_, body) = api.get(&owner_token, "/api/v1/elevations").await;
    let id = body["data"]["elevations"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // The requester sees it, may end it, not approve it; a reader sees nothing of it.
    let page = member.get("/elevations").await;
    assert!(page.text.contains("full on source demo"), "{}", page.text);
    assert!(!page.text.contains(&format!("/elevations/{id}/approve")));
    assert!(page.text.contains(&format!("/elevations/{id}/end")));
    assert!(!reader.get("/elevations").await.text.contains(&id));
    for who in [&member, &reader] {
        let page = who.post(&format!("/elevations/{id}/approve"), &[]).await;
        assert_ne!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    }
    // The owner approves: the member may now manage the source's keys; then it ends.
    let page = owner.get("/elevations").await;
    assert!(
        page.text.contains(&format!("/elevations/{id}/approve")),
        "{}",
        page.text
    );
    let page = owner.post(&format!("/elevations/{id}/approve"), &[]).await;
    assert_eq!(
        page.location, "/elevations?done=elevation-approved",
        "{}",
        page.text
    );
    assert!(
        member
            .get("/sources/demo")
            .await
            .text
            .contains("New write key")
    );
    let page = member.post(&format!("/elevations/{id}/end"), &[]).await;
    assert_eq!(
        page.location, "/elevations?done=elevation-ended",
        "{}",
        page.text
    );
    assert!(
        !member
            .get("/sources/demo")
            .await
            .text
            .contains("New write key")
    );
    assert_eq!(
        owner.post("/elevations/x/promote", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn destination_secrets_stay_hidden_until_a_post_from_this_session_reveals_them() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let reader = joined(&api, &owner_token, "r@example.com", "read_only").await;
    let (status, body) = api
        .post(
            &owner_token,
            "/api/v1/destinations",
            json!({"id": "hook", "sourceId": "demo", "metadataId": "webhook",
                   "settings": {"url": "https://hooks.example.com/p", "secret": "s3cr3t-value"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let page = owner.get("/destinations").await;
    assert!(
        page.text.contains("href=\"/destinations/hook\""),
        "{}",
        page.text
    );
    let page = owner.get("/destinations/hook").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("s3cr3t-value"), "redacted on a read");
    assert!(page.text.contains("Show credentials"));
    // A link (a GET) reveals nothing; nor a post without this session's token or origin.
    let page = owner.get("/destinations/hook?reveal=credentials").await;
    assert!(!page.text.contains("s3cr3t-value"));
    for (origin, csrf) in [
        (Some(api.base.as_str()), "forged"),
        (Some("http://evil.example"), owner.csrf.as_str()),
        (None, owner.csrf.as_str()),
    ] {
        let page = owner
            .post_from(origin, "/destinations/hook/reveal", &[("csrf", csrf)])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert!(!page.text.contains("s3cr3t-value"));
    }
    // Nor the API's own read, reached by a link with the session cookie: it needs the
    // session's token too (a link elsewhere reveals nothing in anyone's name).
    let reveals = |body: &Value| {
        body["data"]["events"].as_array().map_or(0, |events| {
            events
                .iter()
                .filter(|e| e["type"].to_string().to_lowercase().contains("credentials"))
                .count()
        })
    };
    let before = reveals(
        &api.get(&owner_token, "/api/v1/audit-events?pagination[count]=200")
            .await
            .1,
    );
    let linked = owner
        .http
        .get(format!("{}/api/v1/destinations/hook/credentials", api.base))
        .header("cookie", owner.cookie.clone().unwrap_or_default())
        .send()
        .await
        .expect("credentials");
    assert_eq!(linked.status(), StatusCode::FORBIDDEN);
    assert!(!linked.text().await.expect("body").contains("s3cr3t-value"));
    let page = owner.post("/destinations/hook/reveal", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("s3cr3t-value"), "{}", page.text);
    let after = reveals(
        &api.get(&owner_token, "/api/v1/audit-events?pagination[count]=200")
            .await
            .1,
    );
    assert_eq!(
        after,
        before + 1,
        "the console's reveal is audited, the link's never ran"
    );
    // A reader: no button, and the post refused by the API.
    let page = reader.get("/destinations/hook").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("Show credentials"));
    let page = reader.post("/destinations/hook/reveal", &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    assert!(!page.text.contains("s3cr3t-value"));
    // Disabled from the console.
    let page = owner
        .post("/destinations/hook/enabled", &[("enabled", "false")])
        .await;
    assert_eq!(page.location, "/destinations/hook?done=destination-changed");
    let (_, body) = api.get(&owner_token, "/api/v1/destinations/hook").await;
    assert_eq!(body["data"]["destination"]["enabled"], false);
}

/// The text of the element with `id` (up to its first tag inside).
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let start = at + html[at..].find('>').expect("tag end") + 1;
    let inner = &html[start..];
    let start = inner.find("<code>").map_or(0, |i| i + "<code>".len());
    let inner = &inner[start..];
    &inner[..inner.find('<').expect("end")]
}

#[tokio::test]
async fn destinations_are_created_edited_connected_and_deleted_and_a_source_deleted_from_the_console()
 {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let reader = joined(&api, &owner_token, "r@example.com", "read_only").await;
    source(&api, &owner_token, "other").await;

    // The new-destination form: settings that are not JSON come back with why, as typed.
    let page = owner.get("/destinations").await;
    assert!(
        page.text.contains("action=\"/destinations\""),
        "{}",
        page.text
    );
    let fields = |settings: &'static str| {
        vec![
            ("name", "Hook"),
            ("type", "webhook"),
            ("source", "demo"),
            ("settings", settings),
        ]
    };
    let page = owner
        .post(
            "/destinations",
            &fields(r#"{"url": "https://hooks.example.com/p""#),
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text.contains("not JSON"), "{}", page.text);
    assert!(
        page.text.contains("https://hooks.example.com/p"),
        "as typed"
    );
    // Settings the API refuses (a file path outside the directory) come back too.
    let page = owner
        .post(
            "/destinations",
            &[
                ("name", "File"),
                ("type", "file"),
                ("source", "demo"),
                ("settings", r#"{"path": "../escape"}"#),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );
    assert!(page.text.contains("settings.path"), "{}", page.text);
    let page = owner
        .post(
            "/destinations",
            &fields(r#"{"url": "https://hooks.example.com/p", "secret": "first-secret"}"#),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert!(
        page.location.ends_with("?done=destination-created"),
        "{}",
        page.location
    );
    let path = page.location[..page.location.find('?').expect("query")].to_owned();
    let id = path.trim_start_matches("/destinations/").to_owned();
    let (_, body) = api
        .get(&owner_token, &format!("/api/v1/destinations/{id}"))
        .await;
    assert_eq!(body["data"]["destination"]["name"], "Hook");
    assert_eq!(body["data"]["destination"]["sources"], json!(["demo"]));

    // Its page: settings redacted in the edit form; saving them unchanged is refused
    // (a secret is write-only), saving them with the secret typed again works.
    let page = owner.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("first-secret"));
    assert!(page.text.contains("&lt;redacted&gt;"), "{}", page.text);
    for left in [
        r#"{"url": "https://hooks.example.com/q", "secret": "<redacted>"}"#,
        r#"{"url": "https://hooks.example.com/…", "secret": "new"}"#,
    ] {
        let page = owner
            .post(
                &format!("{path}/settings"),
                &[("name", "Hook 2"), ("settings", left)],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{left}");
        assert!(page.text.contains("write-only"), "{}", page.text);
    }
    let page = owner
        .post(
            &format!("{path}/settings"),
            &[
                ("name", "Hook 2"),
                (
                    "settings",
                    r#"{"url": "https://hooks.example.com/q", "secret": "second-secret"}"#,
                ),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let (_, body) = api
        .get(
            &owner_token,
            &format!("/api/v1/destinations/{id}/credentials"),
        )
        .await;
    assert_eq!(body["data"]["settings"]["secret"], "second-secret");
    assert_eq!(
        body["data"]["settings"]["url"],
        "https://hooks.example.com/q"
    );

    // The API itself refuses settings sent back as a read shows them (a URL without its
    // path or user info, a secret's placeholder): a client's round trip loses nothing.
    let (status, body) = api
        .post(
            &owner_token,
            "/api/v1/destinations",
            json!({"id": "bus", "sourceId": "demo", "metadataId": "nats",
                   "settings": {"url": "nats://user:pw@nats.example.com:4222", "subject": "s"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for destination in [id.as_str(), "bus"] {
        let path = format!("/api/v1/destinations/{destination}");
        let (_, read) = api.get(&owner_token, &path).await;
        let shown = read["data"]["destination"]["settings"].clone();
        let (status, body) = api
            .call(
                &owner_token,
                Method::PATCH,
                &path,
                Some(json!({ "settings": shown })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{destination}: {body}");
        assert!(body.to_string().contains("write-only"), "{body}");
    }
    let (_, body) = api
        .get(&owner_token, "/api/v1/destinations/bus/credentials")
        .await;
    assert_eq!(
        body["data"]["settings"]["url"],
        "nats://user:pw@nats.example.com:4222"
    );

    // Connected to a second source, then disconnected from the first.
    let page = owner.get(&path).await;
    assert!(
        page.text.contains("<option value=\"other\">"),
        "{}",
        page.text
    );
    let page = owner
        .post(&format!("{path}/connect"), &[("source", "other")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = owner
        .post(&format!("{path}/disconnect"), &[("source", "demo")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let (_, body) = api
        .get(&owner_token, &format!("/api/v1/destinations/{id}"))
        .await;
    assert_eq!(body["data"]["destination"]["sources"], json!(["other"]));

    // A reader sees it, with no form that changes it, and a crafted post is refused.
    let page = reader.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    for form in ["settings", "connect", "disconnect", "delete"] {
        let action = format!("action=\"{path}/{form}\"");
        assert!(!page.text.contains(&action), "{form}: {}", page.text);
    }
    let page = reader.get("/destinations").await;
    assert!(!page.text.contains("action=\"/destinations\""));
    for (action, fields) in [
        ("delete", vec![]),
        ("connect", vec![("source", "demo")]),
        ("settings", vec![("name", "x"), ("settings", "{}")]),
    ] {
        let page = reader.post(&format!("{path}/{action}"), &fields).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{action}: {}",
            page.text
        );
    }
    let page = reader
        .post(
            "/destinations",
            &fields(r#"{"url": "https://x.example.com"}"#),
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);

    // Deleted.
    let page = owner.post(&format!("{path}/delete"), &[]).await;
    assert_eq!(page.location, "/destinations?done=destination-deleted");
    let (status, _) = api
        .get(&owner_token, &format!("/api/v1/destinations/{id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A source: deleting it asks for its id typed; a reader has no such form.
    assert!(
        !reader
            .get("/sources/other")
            .await
            .text
            .contains("/delete\"")
    );
    let page = reader
        .post("/sources/other/delete", &[("confirm", "other")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = owner
        .post("/sources/other/delete", &[("confirm", "demo")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api.get(&owner_token, "/api/v1/sources/other").await;
    assert_eq!(status, StatusCode::OK, "still there");
    let page = owner
        .post("/sources/other/delete", &[("confirm", "other")])
        .await;
    assert_eq!(
        page.location, "/sources?done=source-deleted",
        "{}",
        page.text
    );
    let (status, _) = api.get(&owner_token, "/api/v1/sources/other").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn settings_labels_groups_protected_changes_gateway_credentials_and_the_audit_chain_from_the_console()
 {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let member = joined(&api, &owner_token, "m@example.com", "member").await;
    let member_id = user_id(&api, &owner_token, "m@example.com").await;

    // Settings: a member reads them, with no form; the owner changes them.
    let page = member.get("/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("action=\"/settings\""), "{}", page.text);
    let fields = [
        ("name", "Acme"),
        ("membersCanPublish", "on"),
        ("tokenMaxDays", "90"),
        ("elevationMaxMinutes", "60"),
    ];
    let page = member.post("/settings", &fields).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = owner.post("/settings", &fields).await;
    assert_eq!(
        page.location, "/settings?done=settings-changed",
        "{}",
        page.text
    );
    let (_, body) = api.get(&owner_token, "/api/v1/settings").await;
    assert_eq!(body["data"]["settings"]["tokenMaxDays"], 90);
    assert_eq!(body["data"]["settings"]["membersCanPublish"], true);
    assert_eq!(body["data"]["settings"]["allowSelfApproval"], false);
    assert_eq!(body["data"]["settings"]["elevationMaxMinutes"], 60);
    let page = owner
        .post(
            "/settings",
            &[
                ("name", "Acme"),
                ("tokenMaxDays", "many"),
                ("elevationMaxMinutes", "60"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Labels: added and deleted.
    let page = owner
        .post(
            "/settings/labels",
            &[
                ("key", "environment"),
                ("value", "qa"),
                ("description", "Try-outs"),
            ],
        )
        .await;
    assert_eq!(
        page.location, "/settings?done=labels-changed",
        "{}",
        page.text
    );
    assert!(owner.get("/settings").await.text.contains("environment:qa"));
    let page = owner
        .post(
            "/settings/labels/delete",
            &[("key", "environment"), ("value", "qa")],
        )
        .await;
    assert_eq!(
        page.location, "/settings?done=labels-changed",
        "{}",
        page.text
    );
    let (_, body) = api.get(&owner_token, "/api/v1/labels").await;
    assert!(
        !body["data"]["labels"].to_string().contains("\"qa\""),
        "{body}"
    );

    // Protection: the demo source labelled prod and prod protected; the member's change
    // to it waits for review on /changes, where the owner approves it.
    let (status, body) = api
        .post(
            &owner_token,
            "/api/v1/grants",
            json!({"principal": {"type": "user", "id": member_id},
                   "resource": {"kind": "source", "id": "demo"}, "level": "full"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = owner
        .post("/sources/demo/labels", &[("labels", "environment:prod")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = member
        .post(
            "/settings/protected-labels",
            &[("labels", "environment:prod")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = owner
        .post(
            "/settings/protected-labels",
            &[("labels", "environment:prod")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = member
        .post("/sources/demo/enabled", &[("enabled", "false")])
        .await;
    assert_eq!(
        page.location, "/sources/demo?done=proposed",
        "{}",
        page.text
    );
    let (_, body) = api.get(&owner_token, "/api/v1/sources/demo").await;
    assert_eq!(body["data"]["source"]["enabled"], true, "not made yet");
    let page = owner.get("/changes").await;
    assert_eq!(page.status, StatusCode::OK);
    let marker = "href=\"/changes/";
    let start = page.text.find(marker).expect("a change listed") + marker.len();
    let change = page.text[start..start + page.text[start..].find('"').expect("end")].to_owned();
    // The member may withdraw it but not approve it; the owner approves it.
    let page = member.get(&format!("/changes/{change}")).await;
    assert!(page.text.contains("/withdraw\""), "{}", page.text);
    assert!(!page.text.contains("/approve\""));
    let page = member
        .post(&format!("/changes/{change}/approve"), &[])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    let page = owner.get(&format!("/changes/{change}")).await;
    assert!(
        page.text.contains("PATCH /api/v1/sources/demo"),
        "{}",
        page.text
    );
    let page = owner
        .post(
            &format!("/changes/{change}/approve"),
            &[("comment", "Fine")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("APPLIED"), "{}", page.text);
    let (_, body) = api.get(&owner_token, "/api/v1/sources/demo").await;
    assert_eq!(body["data"]["source"]["enabled"], false, "made on approval");

    // Groups: made, a member added (an unknown email invited, its link shown once), a
    // grant given and taken away, renamed, deleted.
    let page = member.get("/groups").await;
    assert!(!page.text.contains("action=\"/groups\""));
    assert_eq!(
        member.post("/groups", &[("name", "Sneaky")]).await.status,
        StatusCode::FORBIDDEN
    );
    let page = owner
        .post("/groups", &[("name", "Analysts"), ("role", "")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let group = page.location[..page.location.find('?').expect("query")].to_owned();
    let page = owner
        .post(
            &format!("{group}/members"),
            &[("emails", "m@example.com, new@example.com")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("new@example.com: <code>"),
        "{}",
        page.text
    );
    let setup = {
        let marker = "new@example.com: <code>";
        let start = page.text.find(marker).expect("link") + marker.len();
        let url = &page.text[start..start + page.text[start..].find('<').expect("end")];
        url[url.find("/setup/").expect("setup path")..].to_owned()
    };
    let (status, body) = api.accept(&setup, "new@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = owner
        .post(
            &format!("{group}/grants"),
            &[
                ("kind", "source_label"),
                ("resource", "environment:prod"),
                ("level", "read_only"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = owner.get(&group).await;
    assert!(
        page.text.contains("sources labelled environment: prod"),
        "{}",
        page.text
    );
    assert!(page.text.contains("m@example.com"));
    let (_, body) = api.get(&owner_token, "/api/v1/grants").await;
    let grant = body["data"]["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .find(|g| g["principal"]["type"] == "group")
        .and_then(|g| g["id"].as_str())
        .expect("the group's grant")
        .to_owned();
    let page = owner
        .post(&format!("{group}/grants/{grant}/remove"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = owner
        .post(&format!("{group}/members/{member_id}/remove"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = owner
        .post(&format!("{group}/rename"), &[("name", "Readers")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let (_, body) = api.get(&owner_token, "/api/v1/groups").await;
    assert_eq!(body["data"]["userGroups"][0]["name"], "Readers");
    assert_eq!(body["data"]["userGroups"][0]["memberCount"], 1);
    let page = owner.post(&format!("{group}/delete"), &[]).await;
    assert_eq!(page.location, "/groups?done=group-deleted");
    let (_, body) = api.get(&owner_token, "/api/v1/groups").await;
    assert_eq!(body["data"]["userGroups"], json!([]));

    // Gateway credentials: the secret shown once works against the catalog feed; revoked,
    // it is refused. A member may not make one.
    assert_eq!(member.get("/nodes").await.status, StatusCode::FORBIDDEN);
    let page = owner
        .post(
            "/nodes",
            &[("name", "edge-1"), ("role", "gateway"), ("days", "7")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let secret = text_of(&page.text, "node-secret").to_owned();
    assert!(secret.starts_with("slc_node_"), "{secret}");
    let feed = |secret: String| {
        let base = api.base.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/internal/v1/catalog"))
                .bearer_auth(secret)
                .send()
                .await
                .expect("catalog")
                .status()
        }
    };
    assert_eq!(feed(secret.clone()).await, StatusCode::OK);
    assert!(
        !owner.get("/nodes").await.text.contains(&secret),
        "shown once"
    );
    let (_, body) = api.get(&owner_token, "/api/v1/nodes").await;
    let node = body["data"]["nodes"][0]["id"]
        .as_str()
        .expect("node")
        .to_owned();
    let page = owner.post(&format!("/nodes/{node}/revoke"), &[]).await;
    assert_eq!(page.location, "/nodes?done=node-revoked");
    assert_eq!(feed(secret).await, StatusCode::UNAUTHORIZED);

    // The audit chain, verified from the console; a member (no audit) is refused.
    let page = owner.get("/audit/chain").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("<strong>Intact.</strong>"),
        "{}",
        page.text
    );
    assert_eq!(
        member.get("/audit/chain").await.status,
        StatusCode::FORBIDDEN
    );
    // A check reads the whole chain: its answer is given again for a minute.
    let (status, first) = api.get(&owner_token, "/api/v1/audit-events/chain").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["data"]["chain"]["intact"], true);
    source(&api, &owner_token, "later").await;
    let (_, again) = api.get(&owner_token, "/api/v1/audit-events/chain").await;
    assert_eq!(again, first, "the minute-old answer");
}

#[tokio::test]
async fn a_setup_link_opens_a_console_page_and_a_bad_form_is_answered_with_a_page() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = http
        .get(format!("{}{link}", api.base))
        .send()
        .await
        .expect("setup page");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    assert!(text.contains("Welcome to Sluice"), "{text}");
    assert!(text.contains("id=\"setup-email\""), "{text}");
    assert_eq!(
        headers[CONTENT_SECURITY_POLICY],
        sluice::control::console::CSP
    );
    assert_eq!(
        headers["referrer-policy"], "strict-origin",
        "the link stays"
    );
    assert_eq!(headers["cache-control"], "no-store");

    // A bad email from a browser: a page saying why (the link still good), not JSON.
    let response = http
        .post(format!("{}{link}", api.base))
        .header("origin", &api.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=not-an-email")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    let text = response.text().await.expect("body");
    assert!(text.contains("email"), "{text}");
    assert!(text.contains(&format!("href=\"{link}\"")), "{text}");
    // The same from a JSON client: the error envelope.
    let (status, body) = api.accept(&link, "not-an-email").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    // And done properly: the token shown once on the page.
    let response = http
        .post(format!("{}{link}", api.base))
        .header("origin", &api.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=owner%40example.com")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(text.contains("id=\"setup-token\""), "{text}");
    assert!(text.contains("Open the console"), "{text}");
    let used = http
        .get(format!("{}{link}", api.base))
        .send()
        .await
        .expect("again");
    assert_eq!(used.status(), StatusCode::GONE);
}

/// Whether each role (owner, admin, member, read_only) is let in: a `YYYY` row.
fn row(cells: &str) -> [bool; 4] {
    let mut out = [false; 4];
    for (slot, cell) in out.iter_mut().zip(cells.chars()) {
        *slot = cell == 'Y';
    }
    out
}

#[tokio::test]
async fn every_page_and_form_follows_the_role_matrix() {
    let db = databases::sqlite().await;
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let (status, body) = api
        .post(
            &owner_token,
            "/api/v1/destinations",
            json!({"id": "hook", "sourceId": "demo", "metadataId": "webhook",
                   "settings": {"url": "https://hooks.example.com/p"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let browsers = [
        owner,
        joined(&api, &owner_token, "a@example.com", "admin").await,
        joined(&api, &owner_token, "m@example.com", "member").await,
        joined(&api, &owner_token, "r@example.com", "read_only").await,
    ];
    let roles = ["owner", "admin", "member", "read_only"];

    // Pages: shown (200) or refused (403), as `authorize` answers for the role.
    let pages = [
        ("/sources", "YYYY"),
        ("/sources/demo", "YYYY"),
        ("/destinations", "YYYY"),
        ("/destinations/hook", "YYYY"),
        ("/plans", "YYYY"),
        ("/change-requests", "YYYY"),
        ("/changes", "YYYY"),
        ("/team", "YYYY"),
        ("/groups", "YYYY"),
        ("/elevations", "YYYY"),
        ("/operations", "YYYY"),
        ("/settings", "YYYY"),
        ("/account", "YYYY"),
        ("/tokens", "YY--"),
        ("/nodes", "YY--"),
        ("/audit", "YY--"),
        ("/audit/chain", "YY--"),
        ("/identity", "YY--"),
        ("/reviews", "YY--"),
    ];
    for (path, cells) in pages {
        for ((browser, role), shown) in browsers.iter().zip(roles).zip(row(cells)) {
            let page = browser.get(path).await;
            let want = if shown {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(page.status, want, "{path} as {role}: {}", page.text);
        }
    }

    // Forms: present only for the roles that may use them.
    let forms = [
        ("/sources", "/sources", "YYY-"),
        ("/sources/demo", "/sources/demo/enabled", "YYY-"),
        ("/sources/demo", "/sources/demo/labels", "YYY-"),
        ("/sources/demo", "/sources/demo/keys", "YY--"),
        ("/sources/demo", "/sources/demo/delete", "YY--"),
        ("/destinations", "/destinations", "YYY-"),
        ("/destinations/hook", "/destinations/hook/settings", "YYY-"),
        ("/destinations/hook", "/destinations/hook/delete", "YY--"),
        ("/plans", "/plans", "YYY-"),
        ("/team", "/team/invites", "YY--"),
        ("/groups", "/groups", "YY--"),
        ("/settings", "/settings", "YY--"),
        ("/settings", "/settings/labels", "YY--"),
        ("/operations", "/operations/quota", "Y---"),
    ];
    for (path, action, cells) in forms {
        for ((browser, role), shown) in browsers.iter().zip(roles).zip(row(cells)) {
            let page = browser.get(path).await;
            let has = page.text.contains(&format!("action=\"{action}\""));
            assert_eq!(has, shown, "the form {action} on {path} as {role}");
        }
    }

    // The navigation offers only what the role may open.
    for ((browser, role), shown) in browsers.iter().zip(roles).zip(row("YY--")) {
        let page = browser.get("/sources").await;
        for link in ["/tokens", "/audit", "/identity", "/reviews"] {
            let has = page.text.contains(&format!("href=\"{link}\""));
            assert_eq!(has, shown, "{link} in the navigation as {role}");
        }
    }
}

#[tokio::test]
async fn a_session_ends_by_the_workspaces_idle_limit_and_a_page_refreshing_itself_does_not_keep_it()
{
    let db = databases::sqlite().await;
    let clock = sluice::clock::Clock::adjustable();
    let shared = clock.clone();
    let (server, link) = server_with(&db, move |c| c.control.clock = shared).await;
    let api = Api::of(&server);
    let (owner, owner_token) = person_with_token(&api, &link, "owner@example.com").await;
    let (status, body) = api
        .call(
            &owner_token,
            Method::PATCH,
            "/api/v1/identity/sign-in",
            Some(json!({"sessionIdleMinutes": 15})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let minutes = chrono::TimeDelta::minutes;
    let live = |browser: &Browser| {
        let http = browser.http.clone();
        let url = format!("{}/auth/session", browser.base);
        let cookie = browser.cookie.clone().unwrap_or_default();
        async move {
            let response = http
                .get(url)
                .header("cookie", cookie)
                .header("x-sluice-passive", "1");
            response.send().await.expect("session").status() == StatusCode::OK
        }
    };

    // Used after 10 minutes: the idle end moves to 15 minutes after that use, not more.
    clock.advance(minutes(10));
    assert_eq!(owner.get("/sources/demo").await.status, StatusCode::OK);
    clock.advance(minutes(14));
    assert!(live(&owner).await, "14 minutes after its last use");
    // The page's own refresh (as htmx sends it) is answered, and is no use.
    let refreshed = owner
        .http
        .get(format!("{}/sources/demo", owner.base))
        .header("cookie", owner.cookie.clone().unwrap_or_default())
        .header("hx-request", "true")
        .header("x-sluice-passive", "1")
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), StatusCode::OK);
    clock.advance(minutes(2));
    assert!(!live(&owner).await, "16 minutes after its last use: ended");
    let page = owner.get("/sources").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location.starts_with("/sign-in"), "{}", page.location);
}
