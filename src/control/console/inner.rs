//! The console's API client: requests to `/api/v1` (and `/auth`) answered in process by
//! the API's own router, carrying the browser's session cookie, origin and address, so
//! the API decides, guards and audits them as it does any browser's request.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt as _;

use super::Refusal;
use crate::control::identity::session::CSRF_HEADER;

/// The largest answer the console reads (an audit export is streamed to the browser
/// instead of read).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Headers of the browser's request the API sees: who (cookie), from where (origin,
/// host), with what (user agent, for the audit trail), and whether the person did
/// anything (a page refreshing itself does not keep the session alive).
const FORWARDED: [HeaderName; 5] = [
    header::COOKIE,
    header::ORIGIN,
    header::HOST,
    header::USER_AGENT,
    HeaderName::from_static(crate::control::identity::session::PASSIVE),
];

/// The API, as one browser request's session reaches it.
pub struct Inner<'a> {
    router: &'a Router,
    parts: &'a Parts,
    csrf: Option<String>,
}

/// An API answer read whole.
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its `data` (the whole body when it has none; `null` when it is not JSON).
    pub data: Value,
}

impl<'a> Inner<'a> {
    /// The client of the browser request `parts`, through `router`.
    pub fn new(router: &'a Router, parts: &'a Parts) -> Self {
        Self {
            router,
            parts,
            csrf: None,
        }
    }

    /// Changes carry `csrf` (the form's copy of the session's token) for the API to
    /// check against the session's own.
    pub fn with_csrf(mut self, csrf: &str) -> Self {
        self.csrf = Some(csrf.to_owned());
        self
    }

    /// `GET path` and its `data` as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Refusal> {
        let answer = self.send(Method::GET, path, None).await?;
        read(answer.data)
    }

    /// A change: `method path` with a JSON body; its `data` when it succeeds.
    pub async fn change(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Refusal> {
        self.send(method, path, body).await
    }

    /// The raw answer to `GET path` (for a download the browser takes as it is).
    pub async fn raw(&self, path: &str) -> Result<axum::response::Response, Refusal> {
        let request = self.request(Method::GET, path, None)?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|never| match never {})?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(Refusal::SignIn(super::return_path(self.parts)));
        }
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .map_err(|_| Refusal::Broken)?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(Refusal::Api {
            status,
            message: message(status, &body),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Refusal> {
        let answer = self.exchange(method, path, body).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(Refusal::SignIn(super::return_path(self.parts)));
        }
        if !answer.status.is_success() {
            return Err(Refusal::Api {
                status: answer.status,
                message: message(answer.status, &answer.data),
            });
        }
        let data = match answer.data {
            Value::Object(mut map) if map.contains_key("data") => {
                map.remove("data").unwrap_or(Value::Null)
            }
            other => other,
        };
        Ok(Answer { data, ..answer })
    }

    /// `method path` and the whole answer, whatever its status (the body as JSON, `null`
    /// when it is not).
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Refusal> {
        let request = self.request(method, path, body)?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|never| match never {})?;
        let (head, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_ANSWER)
            .await
            .map_err(|_| Refusal::Broken)?;
        Ok(Answer {
            status: head.status,
            headers: head.headers,
            data: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Request<Body>, Refusal> {
        let mut builder = Request::builder().method(method).uri(path);
        for name in &FORWARDED {
            for value in self.parts.headers.get_all(name) {
                builder = builder.header(name, value);
            }
        }
        builder = builder.header(header::ACCEPT, "application/json");
        if let Some(csrf) = &self.csrf {
            let value = HeaderValue::from_str(csrf).map_err(|_| Refusal::Api {
                status: StatusCode::FORBIDDEN,
                message: "This form is not one of this session's: reload the page and try again."
                    .into(),
            })?;
            builder = builder.header(CSRF_HEADER, value);
        }
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let mut request = builder.body(body).map_err(|_| Refusal::Broken)?;
        if let Some(info) = self
            .parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
        {
            request.extensions_mut().insert(*info);
        }
        Ok(request)
    }
}

/// `data` as the console's view of it.
fn read<T: DeserializeOwned>(data: Value) -> Result<T, Refusal> {
    serde_json::from_value(data).map_err(|error| {
        tracing::error!(%error, "console: an API answer was not the shape the console reads");
        Refusal::Broken
    })
}

/// The message of an API error answer (`errors[0].message`), or its status's name.
pub fn message(status: StatusCode, body: &Value) -> String {
    body.pointer("/errors/0/message")
        .and_then(Value::as_str)
        .map_or_else(
            || status.canonical_reason().unwrap_or("refused").to_owned(),
            str::to_owned,
        )
}
