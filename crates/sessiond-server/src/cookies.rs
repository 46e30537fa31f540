//! Browser sessions (DESIGN §6): in cookie mode the tokens travel in `__Host-` cookies
//! (Secure, HttpOnly, SameSite=Strict, Path=/) and never in a body; a cookie-authenticated
//! state change needs the session's CSRF token in `X-CSRF-Token` and, when the browser sends
//! an `Origin`, an allowed one. The CSRF token is bound to the session
//! ([`sessiond_core::Engine::csrf_token`]): a token planted in the browser from another session
//! (a cookie injection, a sibling subdomain) does not pass, even as a matching pair.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::token_response;
use axum::Json;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sessiond_core::{Engine, Issued, secret};
use sessiond_proto::ErrorCode;
use sessiond_store::SessionId;

pub const SESSION_COOKIE: &str = "__Host-sessiond-session";
pub const REFRESH_COOKIE: &str = "__Host-sessiond-refresh";
pub const CSRF_COOKIE: &str = "__Host-sessiond-csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A cookie's value from the request's `Cookie` headers.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

fn append(headers: &mut HeaderMap, name: &str, value: &str, max_age: i64, http_only: bool) {
    let http_only = if http_only { "; HttpOnly" } else { "" };
    let cookie = format!(
        "{name}={value}; Path=/; Secure{http_only}; SameSite=Strict; Max-Age={}",
        max_age.max(0)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, v);
    }
}

/// The reply of login, SSO and refresh: tokens in the body, or in cookie mode in cookies
/// with only the session's CSRF token (also a script-readable cookie) in the body. A refresh
/// keeps the session, so it keeps the CSRF token; a new login gets a new one.
///
/// The session cookie lives as long as the refresh cookie (its token still expires on time):
/// a cookie-mode refresh names its session by it (see [`refresh_session`]).
pub fn reply(engine: &Engine, issued: Issued, cookie_mode: bool) -> Result<Response, ApiError> {
    reply_keeping(engine, issued, cookie_mode, 0)
}

/// As [`reply`], for a new session token without a new refresh token (a re-authentication):
/// the session cookie lives at least `keep` seconds — the caller's bound on how long the
/// session's refresh cookie may still be used (a cookie-mode refresh names its session by the
/// session cookie).
pub fn reply_keeping(
    engine: &Engine,
    issued: Issued,
    cookie_mode: bool,
    keep: i64,
) -> Result<Response, ApiError> {
    if !cookie_mode {
        return Ok(Json(token_response(issued)).into_response());
    }
    let csrf = engine.csrf_token(&issued.session.id);
    let mut headers = HeaderMap::new();
    let mut age = issued.expires_in.max(keep);
    if let Some(refresh_age) = issued
        .refresh_expires_in
        .filter(|_| issued.refresh_token.is_some())
    {
        age = age.max(refresh_age);
    }
    append(
        &mut headers,
        SESSION_COOKIE,
        &issued.session_token,
        age,
        true,
    );
    if let (Some(rt), Some(refresh_age)) = (&issued.refresh_token, issued.refresh_expires_in) {
        append(&mut headers, REFRESH_COOKIE, rt, refresh_age, true);
    }
    append(&mut headers, CSRF_COOKIE, &csrf, age, false);
    let mut body = token_response(issued);
    body.user_session_token = None;
    body.refresh_token = None;
    body.csrf_token = Some(csrf);
    Ok((headers, Json(body)).into_response())
}

/// Expires the three cookies (logout in cookie mode).
pub fn cleared(status: StatusCode) -> Response {
    let mut headers = HeaderMap::new();
    for (name, http_only) in [
        (SESSION_COOKIE, true),
        (REFRESH_COOKIE, true),
        (CSRF_COOKIE, false),
    ] {
        append(&mut headers, name, "", 0, http_only);
    }
    (status, headers).into_response()
}

fn refused(why: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, why)
}

const NEEDS_CSRF: &str =
    "a cookie-authenticated change needs the X-CSRF-Token header (the CSRF cookie's value)";

/// The CSRF defence of a cookie-authenticated state change, once the session token has named
/// its session `sid`: an `Origin`, when sent, must be this server's own origin or a
/// configured one, and the `X-CSRF-Token` header must be `sid`'s own CSRF token (compared in
/// constant time). Equality with the CSRF cookie proves nothing: the cookie can be planted.
pub fn check_csrf(parts: &Parts, st: &AppState, sid: &SessionId) -> Result<(), ApiError> {
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin = origin
            .to_str()
            .map_err(|_| refused("cross-origin request refused"))?;
        let scheme = if crate::forwarded::is_https(parts, &st.trusted_proxies) {
            "https"
        } else {
            "http"
        };
        let own = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|host| format!("{scheme}://{host}"));
        if own.as_deref() != Some(origin) && !st.allowed_origins.iter().any(|o| o == origin) {
            return Err(refused("cross-origin request refused"));
        }
    }
    let sent = parts.headers.get(CSRF_HEADER).map(|v| v.as_bytes());
    match sent {
        Some(s) if secret::constant_time_eq(st.engine.csrf_token(sid).as_bytes(), s) => Ok(()),
        _ => Err(refused(NEEDS_CSRF)),
    }
}

/// The session a cookie-mode refresh acts for, as named by the session cookie (whose token
/// may have expired: the cookie outlives it for this): the CSRF token is checked against it
/// before the refresh token rotates, and the caller checks after the rotation that the
/// refresh token was of this very session ([`refresh_bound`]).
pub fn refresh_session(parts: &Parts) -> Result<SessionId, ApiError> {
    get(&parts.headers, SESSION_COOKIE)
        .and_then(|t| {
            let payload = secret::b64_decode(t.split('.').nth(1)?)?;
            serde_json::from_slice::<sessiond_core::token::Claims>(&payload).ok()
        })
        .map(|c| c.sid)
        .ok_or_else(|| refused(NEEDS_CSRF))
}

/// Before a cookie-mode refresh: the refresh token's session (`owner`, if the token exists)
/// must be the one whose CSRF token was checked, or the token is not spent.
pub fn refresh_bound(owner: Option<&SessionId>, sid: &SessionId) -> Result<(), ApiError> {
    match owner {
        Some(owner) if owner != sid => Err(refused(NEEDS_CSRF)),
        _ => Ok(()),
    }
}
