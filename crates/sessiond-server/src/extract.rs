//! Extractors: tenant and request context, bearer authentication, admin authentication and
//! JSON bodies, each turning bad input into the contract's error once.

use crate::AppState;
use crate::error::ApiError;
use crate::middleware::ActivityId;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use sessiond_core::{Authenticated, CoreError, RequestContext, TenantPolicy, secret};
use sessiond_proto::ErrorCode;
use sessiond_store::{SessionId, TenantId};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub const X_TENANT_ID: &str = "x-tenant-id";
pub const X_USER_SESSION_TOKEN: &str = "x-user-session-token";

/// A JSON body; malformed JSON, wrong types or a missing content type give `invalid_request`,
/// an oversized body `payload_too_large`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "the request body exceeds 64 KiB",
                ))
            }
            Err(r @ JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::InvalidRequest,
                r.body_text(),
            )),
            Err(r) => Err(ApiError::invalid_request(r.body_text())),
        }
    }
}

fn activity(parts: &Parts) -> ActivityId {
    parts
        .extensions
        .get::<ActivityId>()
        .cloned()
        .unwrap_or_else(|| ActivityId {
            value: uuid::Uuid::new_v4().to_string(),
            generated: true,
        })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid_header(name, "is not visible ASCII"))
        })
        .transpose()
}

/// The client's address: the socket peer, or — when the peer is a configured trusted proxy —
/// the first untrusted hop of `X-Forwarded-For` (or `Forwarded`) walked from the right
/// (see [`crate::forwarded`]).
pub fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    Some(crate::forwarded::client(&parts.headers, peer, &state.trusted_proxies).ip)
}

/// An end-user request's context: its tenant (from `X-Tenant-ID`), that tenant's policy, and
/// the audit context. Enforces the policy's required headers and HTTPS rule.
pub struct Ctx {
    pub ctx: RequestContext,
    pub tenant: Arc<TenantPolicy>,
}

impl Ctx {
    /// The device a new session is created on: this request's user agent and IP, and the
    /// client's label for it (at most 128 characters).
    pub fn device(&self, req: Option<sessiond_proto::DeviceRequest>) -> sessiond_store::DeviceInfo {
        sessiond_store::DeviceInfo {
            user_agent: self.ctx.user_agent.clone(),
            ip: self.ctx.ip.clone(),
            label: req
                .and_then(|d| d.label)
                .map(|l| l.chars().take(128).collect()),
        }
    }
}

pub fn request_context(parts: &Parts, state: &AppState, tenant_id: TenantId) -> RequestContext {
    let headers = &parts.headers;
    let text = |name: &str, max: usize| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(max).collect::<String>())
    };
    RequestContext {
        tenant_id,
        activity_id: activity(parts).value,
        correlation_id: text(crate::middleware::X_CORRELATION_ID, 128),
        ip: client_ip(parts, state).map(|ip| ip.to_string()),
        user_agent: text(header::USER_AGENT.as_str(), 512),
        actor: None,
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.get_all(X_TENANT_ID).iter().nth(1).is_some() {
            return Err(ApiError::invalid_header("X-Tenant-ID", "must be sent once"));
        }
        let raw = header_str(&parts.headers, X_TENANT_ID)?
            .ok_or_else(|| ApiError::missing_header("X-Tenant-ID"))?;
        let tenant_id = TenantId::parse(raw).map_err(|_| {
            ApiError::invalid_header(
                "X-Tenant-ID",
                "must be 1 to 64 characters of A-Z, a-z, 0-9, - and _",
            )
        })?;
        let tenant = state.engine.tenant(&tenant_id).await?;
        if tenant.policy.requires_activity_id() && activity(parts).generated {
            return Err(ApiError::missing_header("X-Activity-ID"));
        }
        if tenant.policy.https_only && !crate::forwarded::is_https(parts, &state.trusted_proxies) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this tenant accepts requests over HTTPS only (directly or via a trusted proxy)",
            ));
        }
        Ok(Ctx {
            ctx: request_context(parts, state, tenant_id),
            tenant,
        })
    }
}

/// The bearer token of `Authorization: Bearer …`, or of the FinHub seed's
/// `X-User-Session-Token` header when `alt_header` allows it.
pub fn bearer_token(headers: &HeaderMap, alt_header: bool) -> Result<&str, ApiError> {
    if let Some(v) = header_str(headers, header::AUTHORIZATION.as_str())? {
        let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidHeader,
                "the Authorization header must be `Bearer <token>`",
            ));
        }
        return Ok(token);
    }
    if alt_header && let Some(t) = header_str(headers, X_USER_SESSION_TOKEN)? {
        return Ok(t.trim());
    }
    Err(ApiError::missing_header("Authorization"))
}

/// The session token of a request: from `Authorization` (or `X-User-Session-Token` where
/// `alt_header`), else from the session cookie — in which case a state-changing request must
/// pass the CSRF check, which needs the token's session: the session token is verified here
/// (its signature; an expired token still names its session, as logout accepts one) and the
/// `X-CSRF-Token` header checked against that session's CSRF token. Returns the token and
/// whether it came from the cookie.
pub async fn session_token<'a>(
    parts: &'a Parts,
    state: &AppState,
    alt_header: bool,
) -> Result<(std::borrow::Cow<'a, str>, bool), ApiError> {
    match bearer_token(&parts.headers, alt_header) {
        Ok(t) => Ok((std::borrow::Cow::Borrowed(t), false)),
        Err(missing) => {
            let Some(t) = crate::cookies::get(&parts.headers, crate::cookies::SESSION_COOKIE)
            else {
                return Err(missing);
            };
            if !parts.method.is_safe() {
                let sid = token_session(state, &t).await?;
                crate::cookies::check_csrf(parts, state, &sid)?;
            }
            Ok((std::borrow::Cow::Owned(t), true))
        }
    }
}

/// The session a session token names, once its signature, type, issuer and audience are
/// verified. An expired token still names its session: the engine reports expiry only after
/// every other check has passed, and then the (verified) payload is read for its `sid`.
async fn token_session(state: &AppState, token: &str) -> Result<SessionId, ApiError> {
    match state.engine.verify_token_reloading(token).await {
        Ok(claims) => Ok(claims.sid.clone()),
        Err(CoreError::TokenExpired) => token
            .split('.')
            .nth(1)
            .and_then(secret::b64_decode)
            .and_then(|p| serde_json::from_slice::<sessiond_core::token::Claims>(&p).ok())
            .map(|c| c.sid)
            .ok_or_else(|| CoreError::TokenInvalid.into()),
        Err(e) => Err(e.into()),
    }
}

/// An authenticated end-user request: a valid token of this tenant whose session is active.
pub struct Auth {
    pub ctx: RequestContext,
    pub tenant: Arc<TenantPolicy>,
    pub auth: Authenticated,
    /// The token came from the session cookie (cookie mode).
    pub via_cookie: bool,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ctx { ctx, tenant } = Ctx::from_request_parts(parts, state).await?;
        let (token, via_cookie) = session_token(parts, state, false).await?;
        let auth = state.engine.authenticate(&ctx, &token).await?;
        Ok(Auth {
            ctx,
            tenant,
            auth,
            via_cookie,
        })
    }
}

/// Who is calling (activity, correlation id, IP, user agent), for requests whose tenant is
/// known only later — from a path, a partner secret or a client's credentials.
pub struct Caller(RequestContext);

impl Caller {
    /// The audit context of this request, acting on `tenant`.
    pub fn ctx(&self, tenant: &TenantId) -> RequestContext {
        RequestContext {
            tenant_id: tenant.clone(),
            ..self.0.clone()
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let placeholder =
            TenantId::parse("unknown").map_err(|e| ApiError::invalid_request(e.to_string()))?;
        Ok(Caller(request_context(parts, state, placeholder)))
    }
}

/// A query string; anything that does not parse gives `invalid_request`.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|r| ApiError::invalid_request(r.body_text()))
    }
}

/// A form body (`application/x-www-form-urlencoded`); anything else gives `invalid_request`.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Form(v)),
            Err(axum::extract::rejection::FormRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "the request body exceeds 64 KiB",
                ))
            }
            Err(r) => Err(ApiError::new(
                r.status(),
                ErrorCode::InvalidRequest,
                r.body_text(),
            )),
        }
    }
}

/// Path parameters; a segment that does not decode gives `invalid_request`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| ApiError::invalid_request(r.body_text()))
    }
}
