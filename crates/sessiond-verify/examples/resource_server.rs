//! A resource server protected by the layer: every route under it sees only verified,
//! unrevoked session tokens of one tenant.
//!
//! ```text
//! SESSIOND_URL=http://127.0.0.1:8080 SESSIOND_ISSUER=http://127.0.0.1:8080 \
//! SESSIOND_TENANT=1234567 SESSIOND_CLIENT_ID=… SESSIOND_CLIENT_SECRET=… \
//!   cargo run -p sessiond-verify --example resource_server   # LISTEN=127.0.0.1:3000
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/me
//! ```
//!
//! The service client comes from `POST /admin/v1/tenants/{tenant}/clients`. Set
//! `ON_STALE=introspect` to ask sessiond about each token while the feed is silent instead of
//! answering 503.

use axum::Json;
use axum::routing::get;
use sessiond_verify::{
    ClientCredentials, Config, StalePolicy, VerifiedClaims, Verifier, VerifyLayer,
};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The verifier reports feed and JWKS trouble (wrong client credentials, an unreachable
    // sessiond) as tracing events.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let base = env("SESSIOND_URL")?;
    let cfg = Config::new(
        base.clone(),
        std::env::var("SESSIOND_ISSUER").unwrap_or(base),
        std::env::var("SESSIOND_AUDIENCE").unwrap_or_else(|_| "sessiond".into()),
        env("SESSIOND_TENANT")?,
        ClientCredentials {
            id: env("SESSIOND_CLIENT_ID")?,
            secret: env("SESSIOND_CLIENT_SECRET")?,
        },
    )
    .with_stale_policy(match std::env::var("ON_STALE").as_deref() {
        Ok("introspect") => StalePolicy::Introspect,
        _ => StalePolicy::FailClosed,
    });
    let verifier = Verifier::start(cfg).await?;

    let protected = axum::Router::new()
        .route("/me", get(me))
        .layer(VerifyLayer::new(verifier.clone()));
    let probe = verifier.clone();
    let app = protected.route(
        // Readiness: is the revocation copy current?
        "/readyz",
        get(move || async move {
            if probe.is_current() {
                (axum::http::StatusCode::OK, "ready")
            } else {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "revocation feed not current",
                )
            }
        }),
    );
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("resource server on http://{listen}");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Who is calling, as the token says (signature, claims and revocation already checked).
async fn me(VerifiedClaims(claims): VerifiedClaims) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "userId": claims.sub,
        "sessionId": claims.sid,
        "tenantId": claims.tid,
        "customerId": claims.cid,
        "scope": claims.scope,
        "expiresAt": claims.exp,
    }))
}
