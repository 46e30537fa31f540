//! Browser sessions (DESIGN §6): in cookie mode the tokens travel in `__Host-` cookies
//! (Secure, HttpOnly, SameSite=Strict, Path=/) and never in a body; a cookie-authenticated
//! state change needs the double-submit CSRF token in `X-CSRF-Token` and, when the browser
//! sends an `Origin`, an allowed one.

use crate::AppState;
use crate::error::ApiError;
use crate::wire::TokenResponse;
use axum::Json;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sessiond_core::{Issued, secret};

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
/// with only the CSRF token (also a script-readable cookie) in the body.
pub fn token_reply(issued: Issued, cookie_mode: bool) -> Result<Response, ApiError> {
    if !cookie_mode {
        return Ok(Json(TokenResponse::from(issued)).into_response());
    }
    let csrf = secret::new_secret()?;
    let mut headers = HeaderMap::new();
    append(
        &mut headers,
        SESSION_COOKIE,
        &issued.session_token,
        issued.expires_in,
        true,
    );
    let mut csrf_age = issued.expires_in;
    if let (Some(rt), Some(age)) = (&issued.refresh_token, issued.refresh_expires_in) {
        append(&mut headers, REFRESH_COOKIE, rt, age, true);
        csrf_age = csrf_age.max(age);
    }
    append(&mut headers, CSRF_COOKIE, &csrf, csrf_age, false);
    let mut body = TokenResponse::from(issued);
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

/// The CSRF defence of a cookie-authenticated state change: the `X-CSRF-Token` header must
/// equal the CSRF cookie, and an `Origin`, when sent, must be this server's own origin or a
/// configured one.
pub fn check_csrf(parts: &Parts, st: &AppState) -> Result<(), ApiError> {
    let refused = |why: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", why);
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin = origin
            .to_str()
            .map_err(|_| refused("cross-origin request refused"))?;
        let scheme = if crate::extract::is_https(parts, st) {
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
    let cookie = get(&parts.headers, CSRF_COOKIE);
    let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (cookie, sent) {
        (Some(c), Some(s))
            if !c.is_empty() && secret::constant_time_eq(c.as_bytes(), s.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(refused(
            "a cookie-authenticated change needs the X-CSRF-Token header (the CSRF cookie's value)",
        )),
    }
}
