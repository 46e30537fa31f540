//! Partner and service endpoints: SSO-token login, partner logout-user, internal access
//! tokens and RFC 7662 introspection.

use crate::AppState;
use crate::cookies;
use crate::docs;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Caller, Ctx, Form, X_USER_SESSION_TOKEN, client_ip, request_context};
use crate::ratelimit::Kind;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sessiond_proto::ids;
use sessiond_proto::{
    Introspection, LogoutUserRequest, Mode, PartnerLogoutResponse, Problem, SsoRequest,
    TokenResponse,
};
use sessiond_store::ServiceClient;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/auth/sso", post(sso))
        .route("/v1/auth/partner/logout-user", post(partner_logout))
        .route("/internal/v1/access-token", post(internal_token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(oauth_revoke))
}

/// Log in with a partner-issued SSO token.
///
/// Verifies the signed JWT with the tenant's SSO trust (shared secret, public key or JWKS;
/// `aud`, `iss`, `exp`, single-use `jti`) — or, when the tenant trusts the partner's
/// verification endpoint, asks that endpoint about the opaque token (single use too) —
/// provisions the user by `sub` on first sight, creates a session and returns a
/// TokenResponse. `"mode": "cookie"` as for login.
#[utoipa::path(
    post,
    path = "/api/v2/auth/sso",
    tag = "partner",
    operation_id = "sso",
    params(docs::TenantHeader),
    request_body = SsoRequest,
    responses(
        (status = 200, description = docs::D_TOKEN_RESPONSE, body = TokenResponse,
            headers(("Set-Cookie" = String, description = "Cookie mode only: `__Host-sessiond-session`, \
                `__Host-sessiond-refresh` (when refresh tokens are issued) and \
                `__Host-sessiond-csrf`, each `Secure; SameSite=Strict; Path=/` (the first two \
                `HttpOnly`)."))),
        (status = 400, description = docs::D_400_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`sso_token_invalid`: invalid, expired, already used, or \
            not trusted by this tenant (never saying which).",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_disabled`; or `forbidden`: the user is at the \
            tenant's session limit with `onLimit: reject`, or the tenant accepts HTTPS only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = docs::D_429, body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = docs::D_503_SSO, body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    ),
)]
async fn sso(
    State(st): State<AppState>,
    c: Ctx,
    Body(req): Body<SsoRequest>,
) -> ApiResult<Response> {
    let device = c.device(req.device);
    let login = async {
        Ok(st
            .engine
            .sso_login(&c.ctx, &c.tenant, &req.sso_token, device)
            .await?)
    };
    let issued = st
        .limiters
        .auth(c.ctx.ip.as_deref(), st.engine.now(), login)
        .await?;
    cookies::reply(&st.engine, issued, req.mode == Mode::Cookie)
}

/// The partner's backend: the secret names the tenant, so no `X-Tenant-ID` is needed.
struct Partner {
    ctx: sessiond_core::RequestContext,
}

impl FromRequestParts<AppState> for Partner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts, st).map(|i| i.to_string());
        let admitted = st
            .limiters
            .admit(Kind::Partner, ip.as_deref(), st.engine.now())
            .await?;
        let secret = parts
            .headers
            .get("x-partner-secret")
            .ok_or_else(|| ApiError::missing_header("X-PARTNER-SECRET"))?
            .to_str()
            .map_err(|_| sessiond_core::CoreError::InvalidPartnerSecret);
        let tenant = match secret {
            Ok(secret) => st.engine.partner_tenant(secret).await,
            Err(e) => Err(e),
        };
        let tenant = match tenant {
            Ok(t) => t,
            Err(e) => {
                let e = ApiError::from(e);
                if crate::ratelimit::is_guess(&e) {
                    st.limiters.failed(&admitted).await;
                }
                return Err(e);
            }
        };
        Ok(Partner {
            ctx: request_context(parts, st, tenant),
        })
    }
}

/// Partner backend: log a user out everywhere.
///
/// Revokes all that user's sessions in the tenant the partner secret names (no `X-Tenant-ID`).
#[utoipa::path(
    post,
    path = "/v1/auth/partner/logout-user",
    tag = "partner",
    operation_id = "partnerLogoutUser",
    params(docs::PartnerSecretHeader),
    request_body = LogoutUserRequest,
    security(("partnerSecret" = [])),
    responses(
        (status = 200, description = "The user's sessions are revoked.",
            body = PartnerLogoutResponse),
        (status = 400, description = "`missing_header` (no `X-PARTNER-SECRET`), \
            `invalid_header` (a malformed tracing header) or `invalid_request` (a malformed body \
            or a `userId` not 1 to 256 characters).",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_partner_secret`.", body = Problem,
            content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = docs::D_429, body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    ),
)]
async fn partner_logout(
    State(st): State<AppState>,
    p: Partner,
    Body(req): Body<LogoutUserRequest>,
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

pub(crate) async fn client(
    st: &AppState,
    headers: &HeaderMap,
    id: Option<&str>,
    secret: Option<&str>,
) -> ApiResult<ServiceClient> {
    let (id, secret) = client_credentials(headers, id, secret)
        .ok_or_else(|| ApiError::from(sessiond_core::CoreError::InvalidClient))?;
    Ok(st.engine.authenticate_client(&id, &secret).await?)
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct InternalTokenResponse {
    /// A JWT for the client's audience, bound to the user's live session; not usable as a
    /// session token.
    access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    /// Seconds (at most 300, never past the session).
    expires_in: i64,
    /// The client's audience.
    audience: String,
    #[serde(rename = "sessionId")]
    #[schema(value_type = ids::SessionId)]
    session_id: sessiond_store::SessionId,
}

/// Mint an internal access token for a trusted backend.
///
/// A trusted backend presents its client credentials (Basic) and the user's session token
/// (`X-User-Session-Token`); it gets a short-lived token for its own audience.
#[utoipa::path(
    post,
    path = "/internal/v1/access-token",
    tag = "internal",
    operation_id = "internalAccessToken",
    params(docs::TenantHeader, docs::SessionTokenHeader),
    security(("clientBasic" = [])),
    responses(
        (status = 200, description = "The internal access token (`Cache-Control: no-store`).",
            body = InternalTokenResponse),
        (status = 400, description = "As for every end-user request (`missing_header`: \
            `X-Tenant-ID`, `X-Activity-ID` where required, or `X-User-Session-Token`; \
            `invalid_header`; `unknown_tenant`).",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`forbidden`: missing or wrong client credentials; or, \
            for the session token: `token_invalid`, `token_expired`, `tenant_mismatch`, \
            `session_revoked`, `session_displaced` or `session_expired`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the tenant accepts HTTPS only.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
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

/// RFC 7662 / RFC 7009 request: the token, and the client's credentials when not sent as
/// HTTP Basic (`client_secret_post`).
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct TokenForm {
    token: String,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// RFC 7662 token introspection.
///
/// Client credentials as HTTP Basic or as `client_id`/`client_secret` form fields. A live
/// session token or internal token of the client's tenant gets its claims and
/// `"active": true`; anything else gets `{"active": false}`, never saying why.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    tag = "oauth2",
    operation_id = "introspect",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("clientBasic" = []), ()),
    responses(
        (status = 200, description = "The token's state.", body = Introspection),
        (status = 400, description = docs::D_400_TRACE, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`forbidden`: missing or wrong client credentials.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = docs::D_415_FORM, body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`: the form lacks `token` or does not \
            parse.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn introspect(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(req): Form<TokenForm>,
) -> ApiResult<Json<Introspection>> {
    let client = client(
        &st,
        &headers,
        req.client_id.as_deref(),
        req.client_secret.as_deref(),
    )
    .await?;
    let body = st.engine.introspect(&client, &req.token).await?;
    Ok(Json(body.unwrap_or_default()))
}

/// RFC 7009 token revocation.
///
/// Revokes the session behind a session token, internal token or refresh token of the client's
/// tenant. 200 for every token, live or not, once the client is authenticated.
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    tag = "oauth2",
    operation_id = "revoke",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security(("clientBasic" = []), ()),
    responses(
        (status = 200, description = "Done (also for unknown or already dead tokens)."),
        (status = 400, description = docs::D_400_TRACE, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`forbidden`: missing or wrong client credentials.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = docs::D_415_FORM, body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`: the form lacks `token` or does not \
            parse.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn oauth_revoke(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Form(req): Form<TokenForm>,
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
