//! A second factor for local accounts: an authenticator app (RFC 6238: HMAC-SHA-1,
//! 6 digits, 30 s steps, one step of skew either way) and ten one-time recovery codes.
//!
//! Routes under `/auth/totp`: enrol (`POST`), confirm with a first code (`POST …/confirm`,
//! which turns it on and hands out the recovery codes, shown once), see (`GET`), and turn
//! it off with a code (`DELETE`). Once on, password sign-in asks for a code too. A code is
//! good once: its time step must be later than the last one accepted.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::control::api::wire::Data;
use crate::control::api::{Api, ApiError, Body, Caller, Via};
use crate::control::audit::Kind;
use crate::control::policy::Scope;
use crate::control::secret::Key;
use crate::control::store::totp::{self as store, TotpRow};
use crate::control::token;

/// Recovery codes handed out when an authenticator is confirmed.
pub const RECOVERY_CODES: usize = 10;
/// Bytes of an authenticator's shared secret (RFC 4226 recommends 160 bits).
const SECRET_BYTES: usize = 20;
/// Characters of a recovery code (base62, ~60 bits), shown as two halves.
const RECOVERY_CHARS: usize = 10;
/// The issuer an authenticator app shows.
const ISSUER: &str = "Sluice";

/// `/auth/totp*`.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/auth/totp", post(enrol).get(status).delete(turn_off))
        .route("/auth/totp/confirm", post(confirm))
}

fn context(user: &str) -> String {
    format!("totp:{user}")
}

fn generator(secret: Vec<u8>, account: &str) -> Result<Totp, ApiError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot build an authenticator");
            ApiError::Internal
        })
}

fn unix(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

/// A recovery code as typed (any case, with or without its dash) → what is stored of it.
fn recovery_digest(code: &str) -> String {
    let plain: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .collect();
    token::digest_of(&plain).to_hex()
}

/// Checks `code` for `user`'s confirmed authenticator and spends it: a current code
/// from the app whose step is later than any accepted before, or an unused recovery
/// code. Whether it was good.
pub async fn spend(
    conn: &mut sqlx::AnyConnection,
    key: &Key,
    user: &str,
    row: &TotpRow,
    code: &str,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let code = code.trim();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret = key.open(&row.secret, &context(user)).map_err(|e| {
            tracing::error!(error = %e, "an authenticator secret does not open");
            ApiError::Internal
        })?;
        let bytes = Secret::try_from_base32(secret.expose()).map_err(|_| ApiError::Internal)?;
        let Some(step) = generator(bytes.as_bytes().to_vec(), user)?.check(code, unix(now)) else {
            return Ok(false);
        };
        return Ok(store::use_step(conn, user, step).await?);
    }
    if code.len() > 2 * RECOVERY_CHARS {
        return Ok(false);
    }
    Ok(store::use_recovery(conn, user, &recovery_digest(code), now).await?)
}

/// A token may change how its person signs in only when it carries every personal
/// scope (a narrow token is no way to the person's full rights).
fn personal(caller: &Caller) -> Result<(), ApiError> {
    if let Via::Token(_) = caller.via {
        crate::control::api::tokens::within_caller_scopes(caller, &Scope::PERSONAL)?;
    }
    Ok(())
}

/// `POST /auth/totp`: a new authenticator secret (and its `otpauth://` URL for a QR
/// code), not on until confirmed. Refused (409) while one is on.
async fn enrol(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    personal(&caller)?;
    let user = caller.user.id.clone();
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for an authenticator");
        ApiError::Internal
    })?;
    let secret = Secret::from(bytes.to_vec());
    let base32 = secret.to_base32();
    let mut conn = api.store.read().await?;
    let email = crate::control::store::users::get(&mut conn, &caller.workspace.id, &user)
        .await?
        .map(|u| u.email)
        .unwrap_or_default();
    drop(conn);
    let url = generator(bytes.to_vec(), &email)?
        .to_url()
        .map_err(|_| ApiError::Internal)?;
    let sealed = api
        .store
        .key()
        .seal(&base32, &context(&user))
        .map_err(|_| ApiError::Internal)?;
    let mut change = api.store.change().await?;
    if store::get(change.conn(), &user)
        .await?
        .is_some_and(|t| t.confirmed_at.is_some())
    {
        return Err(ApiError::Conflict(
            "an authenticator is on; turn it off first".into(),
        ));
    }
    store::begin(change.conn(), &user, &sealed, caller.now).await?;
    change
        .record(caller.draft(Kind::TotpEnrol, "user", &user, None, None))
        .await?;
    change.commit().await?;
    Ok(Json(Data {
        data: json!({"secret": base32, "otpauthUrl": url, "confirmed": false}),
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Code {
    /// A 6-digit code from the app (or, to turn it off, a recovery code).
    code: String,
}

/// `POST /auth/totp/confirm`: a first code from the app turns the authenticator on;
/// the answer carries the recovery codes, shown this once.
async fn confirm(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<Code>,
) -> Result<Response, ApiError> {
    personal(&caller)?;
    let user = caller.user.id.clone();
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw = token::random_base62(RECOVERY_CHARS).map_err(|_| ApiError::Internal)?;
        codes.push(format!(
            "{}-{}",
            &raw[..RECOVERY_CHARS / 2],
            &raw[RECOVERY_CHARS / 2..]
        ));
    }
    let digests: Vec<String> = codes.iter().map(|c| recovery_digest(c)).collect();
    let mut change = api.store.change().await?;
    let row = match store::get(change.conn(), &user).await? {
        Some(row) if row.confirmed_at.is_none() => row,
        Some(_) => return Err(ApiError::Conflict("the authenticator is on already".into())),
        None => return Err(ApiError::missing("authenticator", "enrolment")),
    };
    if body.code.trim().len() != 6
        || !spend(
            change.conn(),
            api.store.key(),
            &user,
            &row,
            &body.code,
            caller.now,
        )
        .await?
    {
        return Err(ApiError::field("code", "not the app's current code"));
    }
    store::confirm(change.conn(), &user, &digests, caller.now).await?;
    change
        .record(caller.draft(Kind::TotpConfirm, "user", &user, None, None))
        .await?;
    change.commit().await?;
    Ok(Json(Data {
        data: json!({"confirmed": true, "recoveryCodes": codes}),
    })
    .into_response())
}

/// `GET /auth/totp`: whether the caller's authenticator is on, and recovery codes left.
async fn status(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    let mut conn = api.store.read().await?;
    let row = store::get(&mut conn, &caller.user.id).await?;
    let left = store::recovery_left(&mut conn, &caller.user.id).await?;
    Ok(Json(Data {
        data: json!({
            "confirmed": row.as_ref().is_some_and(|r| r.confirmed_at.is_some()),
            "confirmedAt": row.and_then(|r| r.confirmed_at),
            "recoveryCodesLeft": left,
        }),
    })
    .into_response())
}

/// `DELETE /auth/totp` with a current code (or a recovery code): turns it off.
async fn turn_off(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<Code>,
) -> Result<Response, ApiError> {
    personal(&caller)?;
    let user = caller.user.id.clone();
    let mut change = api.store.change().await?;
    let Some(row) = store::get(change.conn(), &user).await? else {
        return Err(ApiError::missing("authenticator", "on"));
    };
    if row.confirmed_at.is_some()
        && !spend(
            change.conn(),
            api.store.key(),
            &user,
            &row,
            &body.code,
            caller.now,
        )
        .await?
    {
        return Err(ApiError::field("code", "not a current or recovery code"));
    }
    store::remove(change.conn(), &user).await?;
    change
        .record(caller.draft(Kind::TotpDisable, "user", &user, None, None))
        .await?;
    change.commit().await?;
    Ok(crate::control::api::success())
}

/// The user's authenticator when it is on (sign-in then asks for a code).
pub async fn enabled(
    conn: &mut sqlx::AnyConnection,
    user: &str,
) -> Result<Option<TotpRow>, ApiError> {
    Ok(store::get(conn, user)
        .await?
        .filter(|t| t.confirmed_at.is_some()))
}
