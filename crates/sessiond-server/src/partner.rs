//! Partner and service endpoints: SSO-token login, partner logout-user, internal access
//! tokens and RFC 7662 introspection.

use crate::AppState;
use crate::cookies;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Caller, Ctx, Form, X_USER_SESSION_TOKEN, client_ip, request_context};
use crate::wire::{Mode, SsoRequest};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sessiond_store::ServiceClient;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/auth/sso", post(sso))
        .route("/v1/auth/partner/logout-user", post(partner_logout))
        .route("/internal/v1/access-token", post(internal_token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(oauth_revoke))
}

async fn sso(
    State(st): State<AppState>,
    c: Ctx,
    Body(req): Body<SsoRequest>,
) -> ApiResult<Response> {
    st.limiters.auth(c.ctx.ip.as_deref())?;
    let device = c.device(req.device);
    let issued = st
        .engine
        .sso_login(&c.ctx, &c.tenant, &req.sso_token, device)
        .await?;
    cookies::token_reply(issued, req.mode == Mode::Cookie)
}

/// The partner's backend: the secret names the tenant, so no `X-Tenant-ID` is needed.
struct Partner {
    ctx: sessiond_core::RequestContext,
}

impl FromRequestParts<AppState> for Partner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts, st).map(|i| i.to_string());
        st.limiters.partner(ip.as_deref())?;
        let secret = parts
            .headers
            .get("x-partner-secret")
            .ok_or_else(|| ApiError::missing_header("X-PARTNER-SECRET"))?
            .to_str()
            .map_err(|_| ApiError::from(sessiond_core::CoreError::InvalidPartnerSecret))?;
        let tenant = st.engine.partner_tenant(secret).await?;
        Ok(Partner {
            ctx: request_context(parts, st, tenant),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartnerLogoutRequest {
    user_id: String,
}

#[derive(Serialize)]
struct PartnerLogoutResponse {
    success: bool,
    revoked: usize,
}

async fn partner_logout(
    State(st): State<AppState>,
    p: Partner,
    Body(req): Body<PartnerLogoutRequest>,
) -> ApiResult<Json<PartnerLogoutResponse>> {
    if req.user_id.is_empty() || req.user_id.len() > 256 {
        return Err(ApiError::invalid_request(
            "userId must be 1 to 256 characters",
        ));
    }
    let revoked = st.engine.partner_logout(&p.ctx, &req.user_id).await?;
    Ok(Json(PartnerLogoutResponse {
        success: true,
        revoked,
    }))
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1), or from the form.
fn client_credentials(
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        return Some((form_urldecode(id), form_urldecode(secret)));
    }
    Some((form_id?.to_owned(), form_secret?.to_owned()))
}

/// RFC 6749 §2.3.1 form-encodes the client id and secret inside Basic credentials.
fn form_urldecode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

async fn client(
    st: &AppState,
    headers: &HeaderMap,
    id: Option<&str>,
    secret: Option<&str>,
) -> ApiResult<ServiceClient> {
    let (id, secret) = client_credentials(headers, id, secret)
        .ok_or_else(|| ApiError::from(sessiond_core::CoreError::InvalidClient))?;
    Ok(st.engine.authenticate_client(&id, &secret).await?)
}

#[derive(Serialize)]
struct InternalTokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    audience: String,
    #[serde(rename = "sessionId")]
    session_id: sessiond_store::SessionId,
}

/// A trusted backend presents its client credentials (Basic) and the user's session token
/// (`X-User-Session-Token`); it gets a short-lived token for its own audience.
async fn internal_token(
    State(st): State<AppState>,
    c: Ctx,
    headers: HeaderMap,
) -> ApiResult<Json<InternalTokenResponse>> {
    let client = client(&st, &headers, None, None).await?;
    let session_token = headers
        .get(X_USER_SESSION_TOKEN)
        .ok_or_else(|| ApiError::missing_header("X-User-Session-Token"))?
        .to_str()
        .map_err(|_| ApiError::from(sessiond_core::CoreError::TokenInvalid))?;
    let t = st
        .engine
        .internal_token(&c.ctx, &client, session_token)
        .await?;
    Ok(Json(InternalTokenResponse {
        access_token: t.token,
        token_type: "Bearer",
        expires_in: t.expires_in,
        audience: t.audience,
        session_id: t.session_id,
    }))
}

#[derive(Deserialize)]
struct IntrospectRequest {
    token: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn introspect(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(req): Form<IntrospectRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let client = client(
        &st,
        &headers,
        req.client_id.as_deref(),
        req.client_secret.as_deref(),
    )
    .await?;
    let body = st
        .engine
        .introspect(&client, &req.token)
        .await?
        .unwrap_or_else(|| serde_json::json!({ "active": false }));
    Ok((StatusCode::OK, Json(body)))
}

#[derive(Deserialize)]
struct RevokeRequest {
    token: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 7009: 200 for every token, live or not, once the client is authenticated.
async fn oauth_revoke(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Form(req): Form<RevokeRequest>,
) -> ApiResult<StatusCode> {
    let client = client(
        &st,
        &headers,
        req.client_id.as_deref(),
        req.client_secret.as_deref(),
    )
    .await?;
    st.engine
        .oauth_revoke(&caller.ctx(&client.tenant_id), &client, &req.token)
        .await?;
    Ok(StatusCode::OK)
}
