//! Finding the write key a request presents: HTTP Basic user, or `writeKey` in the body.

use base64::Engine as _;
use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Why the presented credentials are unusable (before any catalog lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No key anywhere.
    Missing,
    /// A Basic header that does not decode.
    MalformedHeader,
    /// Header and body name different keys.
    Mismatch,
}

/// The write key of an `Authorization: Basic` header, if there is one.
///
/// The user part is the key; the password is ignored and the colon is optional
/// (Segment's docs allow both). Other schemes (OAuth `Bearer`) carry no write key:
/// such requests must name theirs in the body.
pub fn header_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Problem::MalformedHeader)?.trim();
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(Problem::MalformedHeader);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let rest = rest.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(rest))
        .map_err(|_| Problem::MalformedHeader)?;
    let text = String::from_utf8(decoded).map_err(|_| Problem::MalformedHeader)?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    Ok((!user.is_empty()).then(|| user.to_owned()))
}

/// The one key the request is authenticated by.
pub fn resolve<'k>(header: Option<&'k str>, body: Option<&'k str>) -> Result<&'k str, Problem> {
    let body = body.filter(|k| !k.is_empty());
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(Problem::Mismatch),
        (Some(k), _) | (None, Some(k)) => Ok(k),
        (None, None) => Err(Problem::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().expect("header value"));
        h
    }

    #[test]
    fn basic_with_or_without_colon() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            header_key(&headers(&format!("Basic {}", b64("wk:")))),
            Ok(Some("wk".into()))
        );
        assert_eq!(
            header_key(&headers(&format!("basic {}", b64("wk")))),
            Ok(Some("wk".into()))
        );
        assert_eq!(
            header_key(&headers(&format!("Basic {}", b64(":")))),
            Ok(None)
        );
        assert_eq!(header_key(&headers("Bearer abc")), Ok(None));
        assert_eq!(
            header_key(&headers("Basic !!!")),
            Err(Problem::MalformedHeader)
        );
        assert_eq!(header_key(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn header_and_body_must_agree() {
        assert_eq!(resolve(Some("a"), Some("a")), Ok("a"));
        assert_eq!(resolve(Some("a"), None), Ok("a"));
        assert_eq!(resolve(None, Some("b")), Ok("b"));
        assert_eq!(resolve(Some("a"), Some("b")), Err(Problem::Mismatch));
        assert_eq!(resolve(None, Some("")), Err(Problem::Missing));
        assert_eq!(resolve(None, None), Err(Problem::Missing));
    }
}
