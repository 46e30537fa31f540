//! What the operations' OpenAPI annotations share: the descriptions of their common error
//! responses and the request headers they take. Handlers name these in `#[utoipa::path]`;
//! this module imports nothing of the server, so the document's assembly (`openapi`) can import
//! the handlers without a loop.

use utoipa::IntoParams;

// ---- response descriptions the annotations share ---------------------------------------------

pub(crate) const D_400_TRACE: &str =
    "`invalid_header`: a malformed `X-Activity-ID`, `X-Correlation-ID` or `X-Session-ID`.";
pub(crate) const D_400_CTX: &str = "`missing_header` (`X-Tenant-ID`, or `X-Activity-ID` where \
    the tenant's policy requires it), `invalid_header` (a malformed `X-Tenant-ID` or tracing \
    header, or a non-ASCII `Authorization`), `unknown_tenant`, or `invalid_request`.";
pub(crate) const D_401_TOKEN: &str = "`missing_header` (no session token), `invalid_header` \
    (`Authorization` is not `Bearer <token>`), `token_invalid`, `token_expired`, \
    `tenant_mismatch`, `session_revoked`, `session_displaced` or `session_expired`.";
pub(crate) const D_401_TOKEN_RECENT: &str = "As for every authenticated request \
    (`missing_header`, `invalid_header`, `token_invalid`, `token_expired`, `tenant_mismatch`, \
    `session_revoked`, `session_displaced`, `session_expired`), or \
    `reauthentication_required`: the tenant's `reauthMaxAge` has passed since the token's \
    `auth_time` — re-authenticate (`POST /api/v2/auth/reauthenticate`) and repeat with the new \
    token (`WWW-Authenticate: Bearer error=\"insufficient_user_authentication\"`).";
pub(crate) const D_403_CTX: &str = "`forbidden`: the tenant accepts requests over HTTPS only, \
    or a cookie-authenticated change failed the CSRF check.";
pub(crate) const D_413: &str = "`payload_too_large`: the body exceeds 64 KiB.";
pub(crate) const D_415: &str = "`invalid_request`: the body is not `application/json`.";
pub(crate) const D_415_FORM: &str =
    "`invalid_request`: the body is not `application/x-www-form-urlencoded`.";
pub(crate) const D_429: &str = "`rate_limited`: too many requests from this client IP; retry \
    after `Retry-After` seconds.";
pub(crate) const D_400_ADMIN: &str = "`invalid_request` (malformed body or query), or \
    `invalid_header` (a malformed tracing header or non-ASCII `Authorization`).";
pub(crate) const D_401_ADMIN: &str = "`missing_header` (no `Authorization` and no console \
    session cookie), `invalid_header` (not `Bearer <token>`), or for an operator's session \
    `token_invalid`, `token_expired`, `session_revoked`, `session_expired`, or \
    `tenant_mismatch` (a session of another tenant).";
pub(crate) const D_403_ADMIN: &str = "`forbidden`: neither the admin token nor an operator's \
    session token; an operator whose \
    role does not allow this or whose account is disabled; a console change without the \
    session's `X-CSRF-Token` or from a foreign `Origin`.";
pub(crate) const D_404_TENANT: &str = "`not_found`: no such tenant.";
pub(crate) const D_TOKEN_RESPONSE: &str = "The new tokens (TokenResponse; `Cache-Control: \
    no-store`). In cookie mode the tokens are in `__Host-` cookies and the body carries \
    `csrfToken` instead of `userSessionToken` and `refreshToken`.";

// ---- request headers ---------------------------------------------------------------------------

/// `X-Tenant-ID`, required on every end-user request.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct TenantHeader {
    /// The tenant the request belongs to.
    #[param(
        rename = "X-Tenant-ID",
        pattern = "^[A-Za-z0-9_-]{1,64}$",
        example = "1234567"
    )]
    tenant: String,
}

/// The CSRF token of a cookie-authenticated state change (bound to the session).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct CsrfHeader {
    /// Cookie mode only: the session's CSRF token, as in the `__Host-sessiond-csrf` cookie and
    /// the login's `csrfToken` (required with the session or refresh cookie; it is bound to the
    /// session, so another session's token is refused; an `Origin`, when sent, must be an
    /// allowed one).
    #[param(rename = "X-CSRF-Token", nullable = false)]
    csrf: Option<String>,
}

/// The FinHub form of the session token, an alternative to `Authorization: Bearer`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct OptionalSessionTokenHeader {
    /// The session token (instead of `Authorization: Bearer`).
    #[param(rename = "X-User-Session-Token", nullable = false)]
    token: Option<String>,
}

/// The user's session token, for internal access tokens.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct SessionTokenHeader {
    /// The user's session token.
    #[param(rename = "X-User-Session-Token")]
    token: String,
}

/// The partner's shared secret, which also names the tenant.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct PartnerSecretHeader {
    /// `<secretId>.<random>`, as `POST /admin/v1/tenants/{tenantId}/partner-secrets` returned it.
    #[param(rename = "X-PARTNER-SECRET")]
    secret: String,
}

pub const D_503_SSO: &str = "`sso_unavailable`: the tenant trusts its partner's verification \
    endpoint and it could not be asked (a timeout, a refused connection, a 5xx, or a refusal of \
    sessiond's credentials) or failed five times in a row and is not asked for 30 s; or \
    `store_unavailable`.";
