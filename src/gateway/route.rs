//! Which route a path is. Route names are fixed strings, so they are safe metric labels.

use crate::event::{Kind, Shape};

/// What a request path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A Tracking API route that stores events.
    Ingest {
        /// Fixed name (the canonical path) for metrics.
        name: &'static str,
        /// What its body holds.
        shape: Shape,
    },
    /// `/v1/m`: SDK client metrics, accepted and discarded.
    ClientMetrics,
    /// `GET /v1/projects/{writeKey}/settings`: the CDN settings analytics.js loads.
    Settings,
    /// `GET /health`: liveness.
    Health,
    /// `GET /ready`: readiness.
    Ready,
    /// `POST /v1/functions/{id}`: a source function's webhook.
    Function,
    /// Anything else.
    NotFound,
}

impl Route {
    /// Resolves a path (one trailing slash is tolerated).
    pub fn of(path: &str) -> Self {
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        let single = |name, kind| Self::Ingest {
            name,
            shape: Shape::Single(kind),
        };
        let batch = |name| Self::Ingest {
            name,
            shape: Shape::Batch,
        };
        match path {
            "/v1/identify" => single("/v1/identify", Kind::Identify),
            "/v1/track" => single("/v1/track", Kind::Track),
            "/v1/page" => single("/v1/page", Kind::Page),
            "/v1/screen" => single("/v1/screen", Kind::Screen),
            "/v1/group" => single("/v1/group", Kind::Group),
            "/v1/alias" => single("/v1/alias", Kind::Alias),
            "/v1/i" => single("/v1/i", Kind::Identify),
            "/v1/t" => single("/v1/t", Kind::Track),
            "/v1/p" => single("/v1/p", Kind::Page),
            "/v1/s" => single("/v1/s", Kind::Screen),
            "/v1/g" => single("/v1/g", Kind::Group),
            "/v1/a" => single("/v1/a", Kind::Alias),
            "/v1/batch" => batch("/v1/batch"),
            "/v1/import" => batch("/v1/import"),
            "/v1/b" => batch("/v1/b"),
            "/v1/m" => Self::ClientMetrics,
            "/health" => Self::Health,
            "/ready" => Self::Ready,
            _ if settings_key(path).is_some() => Self::Settings,
            _ if function_id(path).is_some() => Self::Function,
            _ => Self::NotFound,
        }
    }

    /// Label value for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest { name, .. } => name,
            Self::ClientMetrics => "/v1/m",
            Self::Settings => "/v1/projects/settings",
            Self::Health => "/health",
            Self::Ready => "/ready",
            Self::Function => "/v1/functions",
            Self::NotFound => "other",
        }
    }
}

/// The endpoint id of a `/v1/functions/{id}` path (one trailing slash tolerated).
pub fn function_id(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/v1/functions/")?;
    let id = id.strip_suffix('/').unwrap_or(id);
    (!id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then_some(id)
}

/// The write key of a `/v1/projects/{writeKey}/settings` path.
pub fn settings_key(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/projects/")?
        .strip_suffix("/settings")
        .filter(|k| !k.is_empty() && !k.contains('/'))
}

/// Whether a `Host` value is a plain host name or address with an optional port
/// (letters, digits, `.`, `-`, `:`, brackets; at most 255 characters): safe to put in
/// a page's script configuration.
pub fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_are_reflected() {
        for ok in [
            "events.example.com",
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost",
        ] {
            assert!(is_plain_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.com/x",
            "a\"b",
            "x.com<script>",
            "u@h",
            &"a".repeat(300),
        ] {
            assert!(!is_plain_host(bad), "{bad}");
        }
    }

    #[test]
    fn short_paths_map_to_their_types() {
        assert_eq!(
            Route::of("/v1/s"),
            Route::Ingest {
                name: "/v1/s",
                shape: Shape::Single(Kind::Screen)
            }
        );
        assert_eq!(Route::of("/v1/import/").name(), "/v1/import");
        assert_eq!(Route::of("/v1/trackx"), Route::NotFound);
        assert_eq!(Route::of("/"), Route::NotFound);
        assert_eq!(Route::of("/v1/projects/wk/settings"), Route::Settings);
        assert_eq!(settings_key("/v1/projects/wk/settings"), Some("wk"));
        assert_eq!(Route::of("/v1/projects//settings"), Route::NotFound);
    }
}
