//! The tower layer that verifies every request's session token, and the axum extractor that
//! hands the verified claims to a handler.

use crate::error::Error;
use crate::token::Claims;
use crate::verifier::Verifier;
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use sessiond_proto::error::PROBLEM_JSON;
use sessiond_proto::{Problem, headers};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Verifies the `Authorization: Bearer` (or `X-User-Session-Token`) token of every request;
/// passes the request on with its [`Claims`] in the extensions, or answers problem+json.
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
    tenant_header: bool,
}

impl VerifyLayer {
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            tenant_header: false,
        }
    }

    /// Also require `X-Tenant-ID` to name the token's tenant (`tenant_mismatch` otherwise).
    pub fn require_tenant_header(mut self) -> Self {
        self.tenant_header = true;
        self
    }
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService {
            inner,
            verifier: self.verifier.clone(),
            tenant_header: self.tenant_header,
        }
    }
}

/// The service [`VerifyLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
    tenant_header: bool,
}

impl<S, B> tower::Service<Request<B>> for VerifyService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let tenant_header = self.tenant_header;
        Box::pin(async move {
            match check(&verifier, req.headers(), tenant_header).await {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                    inner.call(req).await
                }
                Err(e) => Ok(problem(&e, req.headers())),
            }
        })
    }
}

async fn check(verifier: &Verifier, h: &HeaderMap, tenant_header: bool) -> Result<Claims, Error> {
    let claims = verifier.verify(token(h)?).await?;
    if tenant_header
        && h.get(headers::TENANT_ID).and_then(|v| v.to_str().ok()) != Some(claims.tid.as_str())
    {
        return Err(Error::TenantMismatch);
    }
    Ok(claims)
}

/// `Authorization: Bearer <token>`, else `X-User-Session-Token`.
fn token(h: &HeaderMap) -> Result<&str, Error> {
    if let Some(v) = h.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| Error::TokenInvalid)?;
        let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Error::TokenInvalid);
        }
        return Ok(token);
    }
    match h.get(headers::USER_SESSION_TOKEN) {
        Some(v) => v.to_str().map(str::trim).map_err(|_| Error::TokenInvalid),
        None => Err(Error::MissingToken),
    }
}

/// The refusal as RFC 9457 problem+json, echoing the request's activity id.
fn problem(e: &Error, h: &HeaderMap) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let activity_id = h
        .get(headers::ACTIVITY_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string();
    let code = e.code();
    let body = Problem {
        r#type: Problem::type_uri(code),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: e.to_string(),
        code,
        activity_id: activity_id.clone(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut res = (status, json).into_response();
    let out = res.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&activity_id) {
        out.insert(headers::ACTIVITY_ID, v);
    }
    if status == StatusCode::UNAUTHORIZED {
        out.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        out.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// The claims [`VerifyLayer`] verified for this request (401 where the layer is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for VerifiedClaims {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .map(VerifiedClaims)
            .ok_or_else(|| problem(&Error::MissingToken, &parts.headers))
    }
}

impl std::ops::Deref for VerifiedClaims {
    type Target = Claims;

    fn deref(&self) -> &Claims {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientCredentials, Config};
    use crate::inner::Inner;
    use crate::testing::*;
    use axum::body::Body;
    use serde_json::{Value, json};
    use sessiond_proto::{FeedEvent, Jwks};
    use tower::ServiceExt;

    const NOW: i64 = 1_800_000_000;

    struct Fixed;
    impl crate::Clock for Fixed {
        fn now(&self) -> i64 {
            NOW
        }
    }

    fn verifier() -> Verifier {
        let cfg = Config::new(
            "http://127.0.0.1:9",
            "iss",
            "aud",
            "t1",
            ClientCredentials {
                id: "c".into(),
                secret: "s".into(),
            },
        )
        .with_clock(std::sync::Arc::new(Fixed));
        let inner = Inner::for_tests(
            cfg,
            &Jwks {
                keys: vec![ed_jwk("k", &ed_key(1))],
            },
        );
        inner
            .revocations
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply("t1", &FeedEvent::Synced);
        inner.touch();
        Verifier::for_tests(inner)
    }

    fn live() -> String {
        crate::testing::token(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k"}),
            &json!({
                "iss": "iss", "aud": "aud", "sub": uuid::Uuid::nil(), "sid": "s1", "tid": "t1",
                "cid": uuid::Uuid::nil(), "scope": "session", "jti": "j", "iat": NOW,
                "nbf": NOW, "exp": NOW + 60, "auth_time": NOW, "amr": ["pwd"]
            }),
            ed_sign(&ed_key(1)),
        )
    }

    fn app(layer: Option<VerifyLayer>) -> axum::Router {
        let r = axum::Router::new().route(
            "/",
            axum::routing::get(|c: VerifiedClaims| async move { c.sid.clone() }),
        );
        match layer {
            Some(l) => r.layer(l),
            None => r,
        }
    }

    async fn call(app: axum::Router, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
        let mut req = Request::get("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = app
            .oneshot(req.body(Body::empty()).unwrap_or_default())
            .await
            .unwrap_or_else(|e| match e {});
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        (status, headers, body.to_vec())
    }

    fn problem_code(body: &[u8]) -> Value {
        serde_json::from_slice::<Value>(body).unwrap_or_default()["code"].clone()
    }

    #[tokio::test]
    async fn the_handler_sees_the_claims_of_a_bearer_or_finhub_token() {
        let app = app(Some(VerifyLayer::new(verifier())));
        let bearer = format!("Bearer {}", live());
        let (st, _, body) = call(app.clone(), &[("authorization", &bearer)]).await;
        assert_eq!((st, body.as_slice()), (200, &b"s1"[..]));
        let (st, _, _) = call(app, &[("x-user-session-token", &live())]).await;
        assert_eq!(st, 200);
    }

    #[tokio::test]
    async fn refusals_are_problem_json_with_the_activity_id() {
        let app = app(Some(VerifyLayer::new(verifier())));
        let activity = "6f1d3c2a-8b7e-4f60-9a51-0c2d4e6f8a90";
        let (st, h, body) = call(app.clone(), &[("x-activity-id", activity)]).await;
        assert_eq!(st, 401);
        assert_eq!(h[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(h.contains_key(header::WWW_AUTHENTICATE));
        let p: Problem = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.code, sessiond_proto::ErrorCode::MissingHeader);
        assert_eq!((p.status, p.activity_id.as_str()), (401, activity));
        let (st, _, body) = call(app.clone(), &[("authorization", "Bearer x.y.z")]).await;
        assert_eq!((st, problem_code(&body)), (401, json!("token_invalid")));
        let basic = format!("Basic {}", live());
        let (st, _, body) = call(app, &[("authorization", &basic)]).await;
        assert_eq!((st, problem_code(&body)), (401, json!("token_invalid")));
    }

    #[tokio::test]
    async fn the_tenant_header_can_be_required_to_match() {
        let app = app(Some(VerifyLayer::new(verifier()).require_tenant_header()));
        let bearer = format!("Bearer {}", live());
        let (st, _, body) = call(
            app.clone(),
            &[("authorization", &bearer), ("x-tenant-id", "t2")],
        )
        .await;
        assert_eq!((st, problem_code(&body)), (401, json!("tenant_mismatch")));
        let (st, _, _) = call(app.clone(), &[("authorization", &bearer)]).await;
        assert_eq!(st, 401, "the header is required");
        let (st, _, _) = call(app, &[("authorization", &bearer), ("x-tenant-id", "t1")]).await;
        assert_eq!(st, 200);
    }

    #[tokio::test]
    async fn the_extractor_without_the_layer_refuses() {
        let bearer = format!("Bearer {}", live());
        let (st, _, _) = call(app(None), &[("authorization", &bearer)]).await;
        assert_eq!(st, 401);
    }
}
