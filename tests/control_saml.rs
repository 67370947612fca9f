//! SAML 2.0 sign-in against a real identity provider on loopback: `pysaml2` with
//! Debian's `xmlsec1` signing real responses (`tests/peers/saml/idp.py`, installed by
//! `scripts/saml-idp.sh`). SP-initiated and IdP-initiated sign-in, just-in-time
//! provisioning with groups, a connection test; and every refusal: unsigned, wrong
//! certificate, SHA-1, expired, not yet valid, wrong audience, recipient, destination
//! or issuer, a failed status, a comment in the NameID, two assertions, XML signature
//! wrapping XSW1–8, a DTD (billion laughs), malformed and huge documents, a replay, a
//! response brought back by another browser.

mod common;

use base64::Engine as _;

use common::browser::{Browser, location};
use common::control::{Api, as_person, error_type, groups_of, map_group, server};
use common::databases::{self, TestDb};
use common::peer::Peer;
use common::scim::{Scim, scim_token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The pysaml2 test IdP on a free loopback port, stopped when dropped.
struct Idp(Peer);

impl std::ops::Deref for Idp {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl Idp {
    fn start() -> Self {
        Self(Peer::start(
            "tests/peers/saml/idp.py",
            &["--dir", "{dir}"],
            "scripts/saml-idp.sh",
        ))
    }

    async fn text(&self, path: &str) -> String {
        let response = common::client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("idp");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("text")
    }

    async fn register(&self, sp_metadata: String) {
        let response = common::client()
            .post(format!("{}/sp", self.base))
            .body(sp_metadata)
            .send()
            .await
            .expect("register the SP");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// What the IdP posts back for `url` (its `/sso?SAMLRequest=…` or `/initiate?…`)
    /// with `params` added: `{acs, SAMLResponse, RelayState}`.
    async fn answer(&self, url: &str, params: &[(&str, &str)]) -> Value {
        let mut url = reqwest::Url::parse(url).expect("url");
        url.query_pairs_mut().extend_pairs(params);
        let response = common::client().get(url).send().await.expect("idp");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// The ACS on the test server (the IdP posts to the configured public URL).
fn acs_on(api: &Api, answer: &Value) -> String {
    let acs = reqwest::Url::parse(answer["acs"].as_str().expect("acs")).expect("a URL");
    format!("{}{}", api.base, acs.path())
}

/// Posts the IdP's answer to the ACS as `browser`.
async fn post_back(api: &Api, browser: &mut Browser, answer: &Value) -> reqwest::Response {
    let response = answer["SAMLResponse"].as_str().expect("SAMLResponse");
    let relay = answer["RelayState"].as_str().unwrap_or_default();
    browser
        .post_form(
            &acs_on(api, answer),
            &[("SAMLResponse", response), ("RelayState", relay)],
        )
        .await
}

/// Starts a sign-in in `browser`: the IdP's SSO URL with the AuthnRequest.
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

/// The whole SP-initiated flow with the IdP answering `case` for `params`.
async fn sign_in(
    api: &Api,
    idp: &Idp,
    browser: &mut Browser,
    connection: &str,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let sso = start(api, browser, connection).await;
    assert!(
        sso.starts_with(&format!("{}/sso?SAMLRequest=", idp.base)),
        "{sso}"
    );
    let answer = idp.answer(&sso, params).await;
    post_back(api, browser, &answer).await
}

/// Makes a SAML connection from the IdP's metadata and registers Sluice at the IdP.
async fn connect(api: &Api, owner: &str, idp: &Idp) -> (String, String) {
    connect_named(api, owner, idp, "Test IdP").await
}

/// [`connect`] with a name of its own.
async fn connect_named(api: &Api, owner: &str, idp: &Idp, name: &str) -> (String, String) {
    let metadata = idp.text("/metadata").await;
    let (status, body) = api
        .post(
            owner,
            "/api/v1/identity/sso-connections",
            json!({"name": name, "kind": "saml", "saml": {"metadataXml": metadata}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = &body["data"]["ssoConnection"];
    assert_eq!(connection["defaultRole"], "read_only");
    assert_eq!(
        connection["saml"]["idpEntityId"],
        format!("{}/metadata", idp.base)
    );
    assert_eq!(connection["saml"]["ssoUrl"], format!("{}/sso", idp.base));
    assert_eq!(
        connection["saml"]["certificates"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(connection["saml"]["allowIdpInitiated"], false);
    assert_eq!(connection["claims"]["email"], "email", "defaults shown");
    assert_eq!(connection["claims"]["firstName"], "firstName");
    let id = connection["id"].as_str().expect("id").to_owned();
    let sp = &connection["serviceProvider"];
    assert!(
        sp["acsUrl"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/auth/saml/{id}/acs"))),
        "{sp}"
    );
    let entity = sp["entityId"].as_str().expect("entity").to_owned();

    let response = common::client()
        .get(format!("{}/auth/saml/{id}/metadata", api.base))
        .send()
        .await
        .expect("metadata");
    assert_eq!(response.status(), StatusCode::OK);
    let xml = response.text().await.expect("xml");
    assert!(xml.contains(&format!("entityID=\"{entity}\"")), "{xml}");
    idp.register(xml).await;
    (id, entity)
}

async fn users(api: &Api, owner: &str) -> Vec<Value> {
    let (status, body) = api.get(owner, "/api/v1/users?pagination.count=200").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["users"].as_array().expect("users").clone()
}

/// The session `browser` holds, as `/auth/session` shows it.
async fn session_of(api: &Api, browser: &Browser) -> Value {
    let cookie = browser.session().expect("a session cookie").clone();
    let response = common::client()
        .get(format!("{}/auth/session", api.base))
        .header("cookie", cookie)
        .send()
        .await
        .expect("session");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap_or(Value::Null)
}

/// The AuthnRequest XML in a redirect URL (raw DEFLATE, base64).
fn inflate_request(url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("url");
    let packed = url
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .map(|(_, v)| v.into_owned())
        .expect("SAMLRequest");
    let packed = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .expect("base64");
    let mut xml = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::DeflateDecoder::new(&packed[..]),
        &mut xml,
    )
    .expect("inflate");
    xml
}

/// An AuthnRequest for the redirect binding.
fn deflate_request(xml: &str) -> String {
    let mut packed = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut packed, xml.as_bytes()).expect("deflate");
    base64::engine::general_purpose::STANDARD.encode(packed.finish().expect("deflate"))
}

/// A change made to a response's XML.
type Edit = fn(String) -> String;

/// Repeats the first signature twice more beside it.
fn triple_signature(xml: String) -> String {
    let start = xml.find("<ds:Signature").expect("a signature");
    let end = xml[start..].find("</ds:Signature>").expect("its end") + start + 15;
    let signature = &xml[start..end];
    format!("{}{signature}{signature}{}", &xml[..end], &xml[end..])
}

/// Moves the Response's signature (its first child signature) to just after the
/// assertion's Issuer.
fn move_signature_into_assertion(xml: String) -> String {
    let start = xml.find("<ds:Signature").expect("a signature");
    let end = xml[start..].find("</ds:Signature>").expect("its end") + start + 15;
    let signature = xml[start..end].to_owned();
    let rest = format!("{}{}", &xml[..start], &xml[end..]);
    let assertion = rest.find(":Assertion ").expect("the assertion");
    // The end of the assertion's `</…:Issuer>`.
    let after = rest[assertion..].find(":Issuer>").expect("its issuer") + assertion + 8;
    format!("{}{signature}{}", &rest[..after], &rest[after..])
}

async fn people_sign_in_with_saml(db: &TestDb) {
    let idp = Idp::start();
    let (server, link) = server(db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (connection, entity) = connect(&api, &owner, &idp).await;
    map_group(&api, &owner, "segment-analysts", "read_only").await;
    map_group(&api, &owner, "segment-engineers", "member").await;
    let ada = [
        ("case", "valid"),
        ("email", "ada@example.com"),
        ("attr.firstName", "Ada"),
        ("attr.lastName", "Lovelace"),
        ("attr.groups", "segment-analysts"),
    ];

    // A response brought back by another browser than the one that asked is refused
    // (and spends the request).
    let mut browser = Browser::new();
    let sso = start(&api, &mut browser, &connection).await;
    let answer = idp.answer(&sso, &ada).await;
    let mut thief = Browser::new();
    let stolen = post_back(&api, &mut thief, &answer).await;
    assert_eq!(stolen.status(), StatusCode::FORBIDDEN);
    assert!(thief.session().is_none());

    // Signed in: provisioned read-only, in the IdP's group, sent where they were going.
    let mut browser = Browser::new();
    let sso = start(&api, &mut browser, &connection).await;
    let answer = idp.answer(&sso, &ada).await;
    let signed_in = post_back(&api, &mut browser, &answer).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/sources");
    let session = session_of(&api, &browser).await;
    assert_eq!(session["data"]["email"], "ada@example.com");
    assert_eq!(session["data"]["method"], "saml");
    let user = users(&api, &owner)
        .await
        .into_iter()
        .find(|u| u["email"] == "ada@example.com")
        .expect("ada was provisioned");
    assert_eq!(
        user["name"], "Ada Lovelace",
        "the mapped attributes: {user}"
    );
    let ada_id = user["id"].as_str().expect("id").to_owned();
    assert_eq!(groups_of(&api, &owner, &ada_id).await, ["segment-analysts"]);

    // The same response again: a replay, whoever brings it.
    let again = post_back(&api, &mut browser, &answer).await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    let body = json_of(again).await;
    assert!(body.to_string().contains("already used"), "{body}");

    // Moved to engineers at the IdP: at the next sign-in.
    let mut browser = Browser::new();
    let moved = [
        ("case", "valid"),
        ("email", "ada@example.com"),
        ("attr.groups", "segment-engineers"),
    ];
    let response = sign_in(&api, &idp, &mut browser, &connection, &moved).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        groups_of(&api, &owner, &ada_id).await,
        ["segment-engineers"]
    );

    // IdP-initiated (an app tile): off by default, then on.
    let initiate = format!("{}/initiate?sp={entity}", idp.base);
    let tile = [
        ("case", "valid"),
        ("email", "ada@example.com"),
        ("RelayState", "/destinations"),
    ];
    let mut browser = Browser::new();
    let answer = idp.answer(&initiate, &tile).await;
    let refused = post_back(&api, &mut browser, &answer).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(browser.session().is_none());
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            &format!("/api/v1/identity/sso-connections/{connection}"),
            Some(json!({"saml": {"allowIdpInitiated": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["ssoConnection"]["saml"]["allowIdpInitiated"],
        true
    );
    let answer = idp.answer(&initiate, &tile).await;
    let response = post_back(&api, &mut browser, &answer).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/destinations");
    assert_eq!(session_of(&api, &browser).await["data"]["method"], "saml");
    // A RelayState that leaves the console goes to `/` instead.
    let answer = idp
        .answer(
            &initiate,
            &[("case", "valid"), ("RelayState", "https://evil.example/")],
        )
        .await;
    let response = post_back(&api, &mut Browser::new(), &answer).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/");

    // A connection test shows what the IdP sent and how it maps; nobody is signed in
    // or made.
    let (status, body) = api
        .post(
            &owner,
            &format!("/api/v1/identity/sso-connections/{connection}/test"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let test_id = body["data"]["testId"].as_str().expect("testId").to_owned();
    let url = body["data"]["url"].as_str().expect("url").to_owned();
    let answer = idp
        .answer(
            &url,
            &[
                ("case", "valid"),
                ("email", "newbie@example.com"),
                ("attr.groups", "segment-analysts"),
            ],
        )
        .await;
    let mut tester = Browser::new();
    let shown = post_back(&api, &mut tester, &answer).await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert!(tester.session().is_none());
    let shown = json_of(shown).await;
    assert_eq!(shown["data"]["ok"], true, "{shown}");
    assert_eq!(shown["data"]["profile"]["email"], "newbie@example.com");
    assert_eq!(shown["data"]["outcome"]["created"], true);
    assert_eq!(shown["data"]["outcome"]["role"], "read_only");
    assert_eq!(shown["data"]["sent"]["groups"], json!(["segment-analysts"]));
    let (status, kept) = api
        .get(
            &owner,
            &format!("/api/v1/identity/sso-connections/{connection}/tests/{test_id}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["data"]["finished"], true);
    assert!(
        !users(&api, &owner)
            .await
            .iter()
            .any(|u| u["email"] == "newbie@example.com"),
        "a test makes nobody"
    );

    // Every sign-in and refusal is in the audit trail, and the chain holds.
    let (status, audit) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = audit.to_string();
    for needed in [
        "\"saml\"",
        "already used",
        "started at the identity provider",
    ] {
        assert!(text.contains(needed), "{needed} in the audit trail");
    }
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("audit chain");
    assert!(matches!(verified, Ok(n) if n > 10), "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_with_saml_postgres() {
    let db = databases::postgres().await;
    people_sign_in_with_saml(&db).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_broken_and_foreign_responses_are_refused() {
    let db = databases::sqlite().await;
    let idp = Idp::start();
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (connection, _) = connect(&api, &owner, &idp).await;

    // (case, status, words of the answer)
    let refused: [(&str, StatusCode, &str); 25] = [
        ("unsigned", StatusCode::FORBIDDEN, "signature"),
        ("wrong-cert", StatusCode::FORBIDDEN, "signed"),
        ("sha1", StatusCode::FORBIDDEN, "SHA-256"),
        ("expired", StatusCode::FORBIDDEN, "expired"),
        ("not-yet-valid", StatusCode::FORBIDDEN, "not valid yet"),
        ("wrong-audience", StatusCode::FORBIDDEN, "audience"),
        ("wrong-recipient", StatusCode::FORBIDDEN, "Recipient"),
        ("wrong-destination", StatusCode::FORBIDDEN, "Destination"),
        ("wrong-issuer", StatusCode::FORBIDDEN, "Issuer"),
        ("failed-status", StatusCode::FORBIDDEN, "status"),
        ("comment-in-nameid", StatusCode::FORBIDDEN, "more than text"),
        ("two-assertions", StatusCode::FORBIDDEN, "exactly one"),
        ("xsw1", StatusCode::FORBIDDEN, ""),
        ("xsw2", StatusCode::FORBIDDEN, ""),
        ("xsw3", StatusCode::FORBIDDEN, ""),
        ("xsw4", StatusCode::FORBIDDEN, ""),
        ("xsw5", StatusCode::FORBIDDEN, ""),
        ("xsw6", StatusCode::FORBIDDEN, ""),
        ("xsw7", StatusCode::FORBIDDEN, ""),
        ("xsw8", StatusCode::FORBIDDEN, ""),
        ("doctype", StatusCode::BAD_REQUEST, "DTD"),
        ("malformed", StatusCode::BAD_REQUEST, "well-formed"),
        ("huge", StatusCode::PAYLOAD_TOO_LARGE, ""),
        ("valid", StatusCode::SEE_OTHER, ""),
        ("valid-response-signed", StatusCode::SEE_OTHER, ""),
    ];
    for (case, want, words) in refused {
        let mut browser = Browser::new();
        let response = sign_in(
            &api,
            &idp,
            &mut browser,
            &connection,
            &[("case", case), ("attr.groups", "segment-admins")],
        )
        .await;
        let status = response.status();
        let body = json_of(response).await;
        assert_eq!(status, want, "{case}: {body}");
        if status.is_client_error() {
            assert!(browser.session().is_none(), "{case}");
            assert!(
                !error_type(&body).is_empty(),
                "{case}: the error envelope: {body}"
            );
            let message = body.to_string();
            assert!(message.contains(words), "{case}: {words:?} in {message}");
        } else {
            assert!(browser.session().is_some(), "{case}");
        }
    }
    let emails: Vec<String> = users(&api, &owner)
        .await
        .iter()
        .filter_map(|u| u["email"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !emails
            .iter()
            .any(|e| e.contains("evil") || e.contains("victim")),
        "nothing forged got in: {emails:?}"
    );

    // Signed documents changed where the signatures allow it. The Response's signature
    // moved into the assertion would still verify (the enveloped transform drops it
    // wherever it is) but no longer sits in what it signs: refused. With only the
    // assertion signed, the Response's own attributes are not trusted: a wrong
    // Destination still refuses, a changed InResponseTo is ignored (the signed
    // confirmation's decides).
    let tampered: [(&str, Edit, StatusCode, &str); 6] = [
        // A Reference to a file of the server: refused before any digest is made.
        (
            "valid-response-signed",
            |xml| {
                xml.replacen(
                    "<ds:Reference URI=\"#",
                    "<ds:Reference URI=\"Cargo.toml\" x=\"",
                    1,
                )
            },
            StatusCode::FORBIDDEN,
            "Reference is not the ID",
        ),
        // Signatures by the dozen (each would digest the document): refused first.
        (
            "valid",
            triple_signature,
            StatusCode::FORBIDDEN,
            "at most two",
        ),
        // An element with hundreds of attributes: refused before parsing.
        (
            "valid",
            |xml| {
                let many: String = (0..300).map(|i| format!(" a{i}=\"1\"")).collect();
                xml.replacen("<ns0:Response ", &format!("<ns0:Response{many} "), 1)
            },
            StatusCode::BAD_REQUEST,
            "attributes",
        ),
        (
            "valid-response-signed",
            move_signature_into_assertion,
            StatusCode::FORBIDDEN,
            "is not the ID of the element it is in",
        ),
        (
            "valid-assertion-signed",
            |xml| xml.replacen("Destination=\"", "Destination=\"https://evil.example/", 1),
            StatusCode::FORBIDDEN,
            "Destination",
        ),
        (
            "valid-assertion-signed",
            |xml| xml.replacen("InResponseTo=\"", "InResponseTo=\"_forged", 1),
            StatusCode::SEE_OTHER,
            "",
        ),
    ];
    for (case, change, want, words) in tampered {
        let mut browser = Browser::new();
        let sso = start(&api, &mut browser, &connection).await;
        let mut answer = idp.answer(&sso, &[("case", case)]).await;
        let xml = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(answer["SAMLResponse"].as_str().expect("response"))
                .expect("base64"),
        )
        .expect("utf-8");
        let changed = change(xml.clone());
        assert_ne!(changed, xml, "{case}: the change applies");
        answer["SAMLResponse"] = json!(base64::engine::general_purpose::STANDARD.encode(changed));
        let response = post_back(&api, &mut browser, &answer).await;
        let status = response.status();
        let body = json_of(response).await;
        assert_eq!(status, want, "{case} changed: {body}");
        assert!(body.to_string().contains(words), "{words:?} in {body}");
    }

    // Dozens of refused posts from one address: the audit trail holds the first of each
    // minute, not one entry per post.
    let (status, audit) = api
        .get(&owner, "/api/v1/audit-events?pagination[count]=200")
        .await;
    assert_eq!(status, StatusCode::OK);
    let recorded = audit["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "session.refused")
        .count();
    assert!((1..=3).contains(&recorded), "{recorded} refusals recorded");

    // A response to another connection that names this connection's request (its id
    // carried over by hand) spends nothing here: the request still signs its own
    // browser in afterwards.
    let (other, _) = connect_named(&api, &owner, &idp, "Other IdP").await;
    let mut browser = Browser::new();
    let sso = start(&api, &mut browser, &connection).await;
    let request = inflate_request(&sso);
    let forged = request.replace(&connection, &other);
    let mut url = reqwest::Url::parse(&format!("{}/sso", idp.base)).expect("url");
    url.query_pairs_mut()
        .append_pair("SAMLRequest", &deflate_request(&forged));
    let crossed = idp.answer(url.as_str(), &[("case", "valid")]).await;
    assert!(crossed["acs"].as_str().is_some_and(|a| a.contains(&other)));
    let response = post_back(&api, &mut browser, &crossed).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let answer = idp.answer(&sso, &[("case", "valid")]).await;
    let response = post_back(&api, &mut browser, &answer).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the request was kept"
    );

    // An owner who asks for signed assertions gets them: a signed Response alone no
    // longer does.
    let (status, body) = api
        .call(
            &owner,
            Method::PATCH,
            &format!("/api/v1/identity/sso-connections/{connection}"),
            Some(json!({"saml": {"wantAssertionsSigned": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (case, want) in [
        ("valid-response-signed", StatusCode::FORBIDDEN),
        ("valid-assertion-signed", StatusCode::SEE_OTHER),
    ] {
        let response = sign_in(
            &api,
            &idp,
            &mut Browser::new(),
            &connection,
            &[("case", case)],
        )
        .await;
        assert_eq!(response.status(), want, "{case}");
    }

    // Not a SAML response at all: clear 4xx answers, the server unaffected.
    let acs = format!("{}/auth/saml/{connection}/acs", api.base);
    let mut browser = Browser::new();
    for (form, want) in [
        (
            vec![("SAMLResponse", "%%% not base64 %%%")],
            StatusCode::BAD_REQUEST,
        ),
        (vec![("RelayState", "/")], StatusCode::BAD_REQUEST),
        (vec![("SAMLResponse", "")], StatusCode::BAD_REQUEST),
    ] {
        let response = browser.post_form(&acs, &form).await;
        let status = response.status();
        let body = json_of(response).await;
        assert_eq!(status, want, "{form:?}: {body}");
        assert!(!error_type(&body).is_empty(), "{body}");
    }
    let response = browser
        .post_form(
            &format!("{}/auth/saml/sso_nope/acs", api.base),
            &[("SAMLResponse", "PHg+")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Nor SAML metadata for a connection that is not there.
    let response = common::client()
        .get(format!("{}/auth/saml/sso_nope/metadata", api.base))
        .send()
        .await
        .expect("metadata");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Bad settings are refused field by field.
    for saml in [
        json!({"metadataXml": "<nope"}),
        json!({"idpEntityId": "x", "ssoUrl": "ftp://idp", "certificates": ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]}),
        json!({"idpEntityId": "x", "ssoUrl": "https://idp/sso", "certificates": []}),
        json!({"idpEntityId": "x", "ssoUrl": "https://idp/sso", "certificates": ["not a pem"]}),
    ] {
        let (status, body) = api
            .post(
                &owner,
                "/api/v1/identity/sso-connections",
                json!({"name": "Bad", "kind": "saml", "saml": saml}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{saml}: {body}");
    }
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("audit chain");
    assert!(matches!(verified, Ok(n) if n > 10), "{verified:?}");
    db.finish().await;
}

/// The "done means", signing in with SAML: provisioned by SCIM into analysts,
/// she signs in and is read-only; a group grant of full on a source lets her change
/// it; moved to engineers she is a member at the next request; deactivated in SCIM
/// she loses access at once, session included, and cannot sign in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_provisions_saml_signs_in_and_deprovisioning_ends_it() {
    let db = databases::postgres().await;
    let idp = Idp::start();
    let (server, link) = server(&db).await;
    let api = Api::of(&server);
    let owner = api.owner(&link).await;
    let (connection, _) = connect(&api, &owner, &idp).await;
    map_group(&api, &owner, "segment-analysts", "read_only").await;
    map_group(&api, &owner, "segment-engineers", "member").await;
    let scim = Scim {
        api: &api,
        token: scim_token(&api, &owner).await,
    };
    let ada = scim
        .user("ada@example.com", json!({"externalId": "00u1"}))
        .await;
    let analysts = scim.group("segment-analysts", &[&ada]).await;
    let engineers = scim.group("segment-engineers", &[]).await;

    // She signs in with SAML (no groups in the assertion: SCIM keeps her groups) and is
    // the person SCIM made.
    let mut browser = Browser::new();
    let signed_in = sign_in(
        &api,
        &idp,
        &mut browser,
        &connection,
        &[("case", "valid"), ("email", "ada@example.com")],
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let me = session_of(&api, &browser).await;
    assert_eq!(me["data"]["userId"], ada.as_str());
    let session = (
        browser.session().expect("cookie").clone(),
        me["data"]["csrfToken"].as_str().expect("csrf").to_owned(),
    );
    assert_eq!(groups_of(&api, &owner, &ada).await, ["segment-analysts"]);

    // Read-only.
    let read = as_person(&api, &session, Method::GET, "/api/v1/sources/demo", None).await;
    assert_eq!(read.0, StatusCode::OK, "{}", read.1);
    let rename = |name: &str| json!({"name": name});
    let new_source = || json!({"slug": "ada-made", "enabled": true, "metadataId": "javascript"});
    let (status, _) = as_person(
        &api,
        &session,
        Method::PATCH,
        "/api/v1/sources/demo",
        Some(rename("by ada")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = as_person(
        &api,
        &session,
        Method::POST,
        "/api/v1/sources",
        Some(new_source()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "read-only makes no source");

    // A grant of full on the source to her group: read-only, she changes that source.
    let (status, body) = api
        .post(
            &owner,
            "/api/v1/grants",
            json!({"principal": {"type": "group", "id": analysts},
                   "resource": {"kind": "source", "id": "demo"}, "level": "full"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = as_person(
        &api,
        &session,
        Method::PATCH,
        "/api/v1/sources/demo",
        Some(rename("staging, renamed by ada")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Moved to engineers in the IdP: a member at the next request, same session.
    let (status, body) = scim
        .patch(
            &format!("/Groups/{analysts}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{ada}\"]")}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = scim
        .patch(
            &format!("/Groups/{engineers}"),
            json!([{"op": "add", "path": "members", "value": [{"value": ada}]}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = as_person(
        &api,
        &session,
        Method::POST,
        "/api/v1/sources",
        Some(new_source()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a member makes sources: {body}");

    // Deactivated in SCIM: the session is refused at once and SAML lets her in no more.
    let (status, body) = scim
        .patch(
            &format!("/Users/{ada}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = as_person(&api, &session, Method::GET, "/api/v1/sources/demo", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut browser = Browser::new();
    let again = sign_in(
        &api,
        &idp,
        &mut browser,
        &connection,
        &[("case", "valid"), ("email", "ada@example.com")],
    )
    .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(browser.session().is_none());
    let body = json_of(again).await;
    assert!(body.to_string().contains("deactivated"), "{body}");

    // The Public API's IAM calls see the person and groups SCIM made.
    let (status, users) = api.get(&owner, "/api/v1/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(users.to_string().contains(&ada), "{users}");
    let (status, groups) = api
        .get(&owner, &format!("/api/v1/groups/{engineers}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{groups}");
    let verified = sluice::control::store::verify_audit(&db.store)
        .await
        .expect("audit chain");
    assert!(matches!(verified, Ok(n) if n > 10), "{verified:?}");
    db.finish().await;
}
