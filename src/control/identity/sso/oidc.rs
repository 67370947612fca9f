//! OpenID Connect relying party: authorization code with PKCE (S256), `state` and
//! `nonce`, issuer discovery, and ID-token verification by the `openidconnect` crate
//! (signature against the provider's keys, issuer, audience, expiry, nonce, `at_hash`).
//!
//! The HTTP client follows no redirects (an identity provider's answer cannot point
//! Sluice at another host), times out, and reads at most [`MAX_ANSWER`] bytes.
//!
//! A provider's discovery document and keys are reused for [`DISCOVERY_TTL`]; an ID
//! token that fails verification against reused keys is checked once more against
//! fresh ones (the provider may have rotated its keys).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest answer read from an identity provider (discovery, keys, tokens).
pub const MAX_ANSWER: usize = 1 << 20;
/// Longest wait for an identity provider's answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a provider's discovery document and keys are reused.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// Most providers whose discovery is kept.
const DISCOVERY_KEPT: usize = 256;

/// An OpenID Connect connection's public settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer (`https://example.okta.com`): discovery reads
    /// `<issuer>/.well-known/openid-configuration`, and ID tokens must name it.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// Scopes asked for (`openid` always is).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(str::to_owned).to_vec()
}

/// Why an OpenID Connect sign-in failed (said to the person, logged for the operator).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The settings are not usable (an issuer or redirect that is no URL).
    #[error("connection settings: {0}")]
    Settings(String),
    /// Discovery or its keys could not be fetched or read, or name another issuer.
    #[error("discovery at the issuer failed: {0}")]
    Discovery(String),
    /// The token endpoint refused the code (or answered nonsense).
    #[error("the identity provider refused the code: {0}")]
    Exchange(String),
    /// The provider answered without an ID token.
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce).
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    /// The access token is not the one the ID token was issued with.
    #[error("the access token does not match the ID token's at_hash")]
    AccessTokenHash,
}

/// Where to send the browser, and what to keep until it comes back.
pub struct Started {
    /// The provider's authorization URL with every parameter.
    pub url: String,
    /// `state`.
    pub state: String,
    /// `nonce`.
    pub nonce: String,
    /// The PKCE verifier.
    pub verifier: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What a verified ID token says: its subject and every claim.
#[derive(Debug, Clone)]
pub struct Verified {
    /// `sub`.
    pub subject: String,
    /// Every claim of the verified token.
    pub claims: Map<String, Value>,
}

/// An HTTP failure on the way to the identity provider.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be made or its answer read.
    #[error("{0}")]
    Transport(String),
    /// The answer is larger than [`MAX_ANSWER`].
    #[error("answer larger than {MAX_ANSWER} bytes")]
    TooLarge,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::tls::install_crypto_provider();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
}

/// One request to the identity provider, as `openidconnect` asks for it.
async fn send(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let request =
        reqwest::Request::try_from(request).map_err(|e| HttpError::Transport(e.to_string()))?;
    let mut answer = client()
        .execute(request)
        .await
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    let mut response = http::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| HttpError::Transport(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    response
        .body(body)
        .map_err(|e| HttpError::Transport(e.to_string()))
}

/// Discovery documents (with their keys) by issuer, and when each was fetched.
fn discovered() -> &'static Mutex<HashMap<String, (Instant, CoreProviderMetadata)>> {
    static KEPT: OnceLock<Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>> =
        OnceLock::new();
    KEPT.get_or_init(Mutex::default)
}

/// The provider's discovery document and keys: reused when fetched less than
/// [`DISCOVERY_TTL`] ago (unless `fresh`), else fetched. `true` with a reused one.
async fn discover(
    settings: &OidcSettings,
    fresh: bool,
) -> Result<(CoreProviderMetadata, bool), OidcError> {
    if !fresh {
        let kept = discovered()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&settings.issuer)
            .filter(|(at, _)| at.elapsed() < DISCOVERY_TTL)
            .map(|(_, metadata)| metadata.clone());
        if let Some(metadata) = kept {
            return Ok((metadata, true));
        }
    }
    let issuer = IssuerUrl::new(settings.issuer.clone())
        .map_err(|e| OidcError::Settings(format!("issuer: {e}")))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, &send)
        .await
        .map_err(|e| OidcError::Discovery(chain(&e)))?;
    let mut kept = discovered().lock().unwrap_or_else(PoisonError::into_inner);
    if kept.len() >= DISCOVERY_KEPT {
        kept.retain(|_, (at, _)| at.elapsed() < DISCOVERY_TTL);
        if kept.len() >= DISCOVERY_KEPT {
            kept.clear();
        }
    }
    kept.insert(settings.issuer.clone(), (Instant::now(), metadata.clone()));
    Ok((metadata, false))
}

/// The error and its causes on one line (the crate's top-level messages are terse).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The client of a discovered provider, as this connection.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Discovers the provider (see [`discover`]) and builds its client for this connection
/// and redirect; `true` when the discovery was reused.
async fn connect(
    settings: &OidcSettings,
    secret: Option<&str>,
    redirect: &str,
    fresh: bool,
) -> Result<(Client, bool), OidcError> {
    let (metadata, reused) = discover(settings, fresh).await?;
    let redirect = RedirectUrl::new(redirect.to_owned())
        .map_err(|e| OidcError::Settings(format!("redirect URL: {e}")))?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(settings.client_id.clone()),
        secret.map(|s| ClientSecret::new(s.to_owned())),
    )
    .set_redirect_uri(redirect);
    Ok((client, reused))
}

/// Discovers the provider and builds the authorization URL (PKCE S256, fresh `state`
/// and `nonce`).
pub async fn start(
    settings: &OidcSettings,
    secret: Option<&str>,
    redirect: &str,
) -> Result<Started, OidcError> {
    let (client, _) = connect(settings, secret, redirect, false).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in settings.scopes.iter().filter(|s| s.as_str() != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
    Ok(Started {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
    })
}

/// Redeems the code the browser brought back (with the PKCE verifier) and verifies the
/// ID token against the provider's keys, the issuer, this client, the clock and `nonce`.
pub async fn finish(
    settings: &OidcSettings,
    secret: Option<&str>,
    redirect: &str,
    code: &str,
    nonce: &str,
    verifier: &str,
) -> Result<Verified, OidcError> {
    let (client, reused) = connect(settings, secret, redirect, false).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| OidcError::Settings(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .request_async(&send)
        .await
        .map_err(|e| OidcError::Exchange(chain(&e)))?;
    let nonce = Nonce::new(nonce.to_owned());
    match verify(&client, &tokens, &nonce) {
        // Checked against reused keys: the provider may have rotated them since.
        Err(OidcError::IdToken(_)) if reused => {
            let (client, _) = connect(settings, secret, redirect, true).await?;
            verify(&client, &tokens, &nonce)
        }
        done => done,
    }
}

/// Verifies the token response's ID token against `client`'s provider keys, issuer
/// and client id, the clock and `nonce`, and the access token against its `at_hash`.
fn verify(
    client: &Client,
    tokens: &openidconnect::core::CoreTokenResponse,
    nonce: &Nonce,
) -> Result<Verified, OidcError> {
    let id_token = tokens.id_token().ok_or(OidcError::NoIdToken)?;
    let checker = client.id_token_verifier();
    let claims = id_token
        .claims(&checker, nonce)
        .map_err(|e| OidcError::IdToken(chain(&e)))?;
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(|e| OidcError::IdToken(chain(&e)))?;
        let key = id_token
            .signing_key(&checker)
            .map_err(|e| OidcError::IdToken(chain(&e)))?;
        let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
            .map_err(|e| OidcError::IdToken(chain(&e)))?;
        if actual != *expected {
            return Err(OidcError::AccessTokenHash);
        }
    }
    let subject = claims.subject().as_str().to_owned();
    // Every claim, read from the token just verified (the crate's typed claims leave
    // out the ones it does not know, such as `groups`).
    let claims = payload(&id_token.to_string())
        .ok_or_else(|| OidcError::IdToken("its payload is not a JSON object".into()))?;
    Ok(Verified { subject, claims })
}

/// The JSON object in a compact JWS's payload.
fn payload(jws: &str) -> Option<Map<String, Value>> {
    let middle = jws.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(middle.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_read_from_the_middle_of_a_compact_token() {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"alice","groups":["eng"]}"#);
        let claims = payload(&format!("e30.{body}.sig")).expect("object");
        assert_eq!(claims["groups"][0], "eng");
        assert!(payload("e30.WzFd.sig").is_none(), "an array is no claims");
        assert!(payload("not-a-token").is_none());
    }

    #[test]
    fn scopes_default_to_openid_email_profile() {
        let s: OidcSettings =
            serde_json::from_str(r#"{"issuer":"https://idp.example","clientId":"c"}"#)
                .expect("settings");
        assert_eq!(s.scopes, ["openid", "email", "profile"]);
        assert!(
            serde_json::from_str::<OidcSettings>(r#"{"issuer":"x","clientId":"c","extra":1}"#)
                .is_err(),
            "unknown fields are refused"
        );
    }
}
