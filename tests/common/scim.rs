//! A SCIM client for the provisioning tests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::control::Api;

/// The SCIM User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The SCIM Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The SCIM PatchOp message.
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM client with its bearer token.
pub struct Scim<'a> {
    /// The control plane.
    pub api: &'a Api,
    /// The SCIM bearer token.
    pub token: String,
}

impl Scim<'_> {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .api
            .http
            .request(method, format!("{}/scim/v2{path}", self.api.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("scim request");
        let status = response.status();
        if status != StatusCode::NO_CONTENT {
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(kind, "application/scim+json", "{status} {path}");
        }
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn user(&self, user_name: &str, extra: Value) -> String {
        let mut body = json!({
            "schemas": [USER],
            "userName": user_name,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": user_name, "type": "work", "primary": true}],
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, made) = self.call(Method::POST, "/Users", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        made["id"].as_str().expect("id").to_owned()
    }

    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let (status, made) = self
            .call(
                Method::POST,
                "/Groups",
                Some(json!({"schemas": [GROUP], "displayName": name, "members": members})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        made["id"].as_str().expect("id").to_owned()
    }

    pub async fn patch(&self, path: &str, ops: Value) -> (StatusCode, Value) {
        self.call(
            Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH], "Operations": ops})),
        )
        .await
    }
}

/// A new SCIM token (made by `owner`).
pub async fn scim_token(api: &Api, owner: &str) -> String {
    let (status, body) = api
        .post(
            owner,
            "/api/v1/identity/scim-tokens",
            json!({"name": "okta"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["secret"].as_str().expect("secret").to_owned()
}
