//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' schemas. Served at `GET /openapi.json` and checked into the
//! repository as `openapi.json`; a test fails when the two differ
//! (`SESSIOND_UPDATE_OPENAPI=1 cargo test -p sessiond-server openapi` rewrites the file).
//!
//! The public API's bodies are `sessiond_proto`'s types; the operator API's types of other
//! crates (`sessiond_store`, `sessiond_core`) are described by the mirror schemas of
//! [`crate::schemas`]. The descriptions and headers the annotations share are in
//! [`crate::docs`]. This module imports the handlers; nothing but `lib.rs` imports it.

use crate::schemas::{
    AuditEvent, AuditKind, KeyState, OnLimit, Policy, PolicyOverrides, PolicyPatch, Profile, Role,
    SsoConfig, StateFilter, UserStatus,
};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sessiond_proto::ids::{SessionId, TenantId};
use sessiond_proto::{AuthMethod, ErrorCode, Problem, RevokeReason, SessionState};
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
    Type,
};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiond",
        description = "Session management: logins, session tokens, refresh-token rotation, \
            revocation, SSO, partner and service endpoints, RFC 7662 introspection, RFC 7009 \
            revocation and the operator API.\n\n\
            Every response carries `X-Activity-ID` (the client's, or a generated one) and echoes \
            `X-Correlation-ID` and `X-Session-ID` when sent. Errors are RFC 9457 \
            `application/problem+json` (`Problem`) with a `code` from the contract. Request \
            bodies are limited to 64 KiB (`413 payload_too_large`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::auth::login,
        crate::partner::sso,
        crate::auth::refresh,
        crate::auth::logout,
        crate::auth::logout_all,
        crate::auth::reauthenticate,
        crate::sessions::whoami,
        crate::sessions::list,
        crate::sessions::revoke_others,
        crate::sessions::revoke_one,
        crate::partner::partner_logout,
        crate::partner::internal_token,
        crate::partner::introspect,
        crate::partner::oauth_revoke,
        crate::feed::feed,
        crate::meta::jwks,
        crate::meta::discovery,
        crate::meta::healthz,
        crate::meta::readyz,
        openapi_json,
        crate::admin::tenants::list_tenants,
        crate::admin::tenants::create_tenant,
        crate::admin::tenants::get_tenant,
        crate::admin::tenants::patch_policy,
        crate::admin::tenants::set_sso,
        crate::admin::tenants::webhook,
        crate::admin::users::create_user,
        crate::admin::users::find_users,
        crate::admin::users::get_user,
        crate::admin::users::set_password,
        crate::admin::users::disable_user,
        crate::admin::users::revoke_user_sessions,
        crate::admin::sessions::find_sessions,
        crate::admin::sessions::revoke_session,
        crate::admin::audit::audit,
        crate::admin::audit::counts,
        crate::admin::partners::list_partner_secrets,
        crate::admin::partners::create_partner_secret,
        crate::admin::partners::revoke_partner_secret,
        crate::admin::partners::list_clients,
        crate::admin::partners::create_client,
        crate::admin::keys::keys,
        crate::admin::keys::rotate_keys,
        crate::admin::keys::revoke_key,
        crate::admin::operators::me,
        crate::admin::operators::list_operators,
        crate::admin::operators::create_operator,
        crate::admin::operators::set_role,
        crate::admin::operators::disable_operator,
        crate::metrics::render,
    ),
    components(schemas(
        Problem, ErrorCode, TenantId, SessionId, Profile, OnLimit, Policy, PolicyOverrides,
        PolicyPatch, SsoConfig, AuthMethod, SessionState, RevokeReason, UserStatus, KeyState,
        AuditKind, AuditEvent, StateFilter, Role, sessiond_proto::FeedEvent,
    )),
    modifiers(&Common),
    tags(
        (name = "end-user", description = "Login, refresh, logout and the user's own sessions. \
            Every request names its tenant in `X-Tenant-ID`; `integration` and `production` \
            tenants also require `X-Activity-ID`."),
        (name = "partner", description = "Partner-issued SSO tokens and the partner backend's \
            logout (`X-PARTNER-SECRET`)."),
        (name = "internal", description = "Trusted backends (service client credentials)."),
        (name = "oauth2", description = "RFC 7662 introspection and RFC 7009 revocation."),
        (name = "well-known", description = "Public keys and issuer metadata."),
        (name = "health", description = "Liveness, readiness and this document."),
        (name = "admin", description = "The operator API: `Authorization: Bearer <admin token>` \
            (role admin), or a named operator's session — a login on the tenant `_operators`: \
            its session token as `Authorization: Bearer` (scripts), or the console's session \
            cookie (changes also need `X-CSRF-Token`) — with the operator's role: `viewer` reads, `operator` also revokes sessions and manages users, partner \
            secrets and service clients, `admin` also tenants, policy, SSO, keys and operators. \
            Every change is recorded as an `admin_action` audit event with its `actor`."),
    ),
)]
pub struct ApiDoc;

/// The document as served and as checked in (pretty JSON, trailing newline).
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut s = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        s.push('\n');
        s
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.",
            body = Object, content_type = "application/json"),
        (status = 400, description = "`invalid_header`: a malformed `X-Activity-ID`, \
            `X-Correlation-ID` or `X-Session-ID`.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document_json(),
    )
        .into_response()
}

// ---- what every operation shares ---------------------------------------------------------------

const ACTIVITY_PATTERN: &str =
    "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";
const ECHO_PATTERN: &str = "^[!-~]{1,128}$";

/// Adds the security schemes, the tracing headers every request may send and every response
/// carries, and the 500 (a failure) and 503 (a timeout) every operation may answer.
struct Common;

fn string_schema(pattern: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .build(),
    ))
}

fn trace_params() -> Vec<Parameter> {
    let param = |name: &str, pattern: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(string_schema(pattern)))
            .build()
    };
    vec![
        param(
            "X-Activity-ID",
            ACTIVITY_PATTERN,
            "A UUID v4 naming the user activity this request belongs to (required by \
             `integration` and `production` tenants on end-user requests; generated when \
             absent). Echoed in the response and recorded in the audit trail.",
        ),
        param(
            "X-Correlation-ID",
            ECHO_PATTERN,
            "1 to 128 visible ASCII characters; echoed in the response.",
        ),
        param(
            "X-Session-ID",
            ECHO_PATTERN,
            "1 to 128 visible ASCII characters; echoed in the response.",
        ),
    ]
}

fn operations(path: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        path.get.as_mut(),
        path.put.as_mut(),
        path.post.as_mut(),
        path.delete.as_mut(),
        path.options.as_mut(),
        path.head.as_mut(),
        path.patch.as_mut(),
        path.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut h = Http::new(HttpAuthScheme::Bearer);
            h.description = Some(description.to_owned());
            h
        };
        let mut session = bearer("A session token (`userSessionToken` of a TokenResponse).");
        session.bearer_format = Some("JWT".into());
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "A service client's id and secret (`POST /admin/v1/tenants/{tenantId}/clients`)."
                .into(),
        );
        let schemes = [
            ("sessionToken", SecurityScheme::Http(session)),
            (
                "adminToken",
                SecurityScheme::Http(bearer("The operator's admin token.")),
            ),
            ("clientBasic", SecurityScheme::Http(basic)),
            (
                "partnerSecret",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-PARTNER-SECRET",
                    "A tenant's partner secret.",
                ))),
            ),
            (
                "sessionCookie",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    crate::cookies::SESSION_COOKIE,
                    "Cookie mode: the session token cookie (state changes also need \
                     `X-CSRF-Token`).",
                ))),
            ),
            (
                "refreshCookie",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    crate::cookies::REFRESH_COOKIE,
                    "Cookie mode: the refresh token cookie (also needs `X-CSRF-Token`).",
                ))),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }

        let activity_header = HeaderBuilder::new()
            .schema(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Uuid,
                    )))
                    .build(),
            ))
            .description(Some(
                "The request's activity id (the client's, or a generated one).",
            ))
            .build();
        let bad_trace = ResponseBuilder::new()
            .description(crate::docs::D_400_TRACE)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        let internal_error = ResponseBuilder::new()
            .description("`internal_error`: the server failed (see its log).")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        let timed_out = ResponseBuilder::new()
            .description(
                "`store_unavailable` (with `Retry-After`): a store cannot be reached; retry \
                 shortly. `internal_error`: no answer within 30 s (the request may still \
                 complete).",
            )
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        admin_common(doc);
        for path in doc.paths.paths.values_mut() {
            for op in operations(path) {
                let params = op.parameters.get_or_insert_with(Vec::new);
                for p in trace_params() {
                    if !params.iter().any(|q| q.name == p.name) {
                        params.push(p);
                    }
                }
                for (status, response) in [
                    ("400", &bad_trace),
                    ("500", &internal_error),
                    ("503", &timed_out),
                ] {
                    op.responses
                        .responses
                        .entry(status.into())
                        .or_insert_with(|| RefOr::T(response.clone()));
                }
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(r) = response {
                        r.headers
                            .insert("X-Activity-ID".into(), activity_header.clone());
                    }
                }
            }
        }
    }
}

/// What every operation of the operator API shares, declared here once: its security (the
/// admin token or an operator's session), and its problems — 400, 401 and 403 always, 404 for a
/// tenant of the path, 413 and 415 with a request body — unless the operation declares its
/// own.
fn admin_common(doc: &mut utoipa::openapi::OpenApi) {
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    let security = vec![
        utoipa::openapi::security::SecurityRequirement::new("adminToken", Vec::<String>::new()),
        utoipa::openapi::security::SecurityRequirement::new("sessionCookie", Vec::<String>::new()),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/admin/") {
            continue;
        }
        let per_tenant = path.contains("{tenantId}");
        for op in operations(item) {
            op.security.get_or_insert_with(|| security.clone());
            let mut common = vec![
                ("400", crate::docs::D_400_ADMIN),
                ("401", crate::docs::D_401_ADMIN),
                ("403", crate::docs::D_403_ADMIN),
            ];
            if per_tenant {
                common.push(("404", crate::docs::D_404_TENANT));
            }
            if op.request_body.is_some() {
                common.push(("413", crate::docs::D_413));
                common.push(("415", crate::docs::D_415));
            }
            for (status, description) in common {
                op.responses
                    .responses
                    .entry(status.into())
                    .or_insert_with(|| problem(description));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    const UPDATE_VAR: &str = "SESSIOND_UPDATE_OPENAPI";

    fn checked_in_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json")
    }

    /// The checked-in `openapi.json` is the document the code generates.
    #[test]
    fn openapi_json_is_in_sync_with_the_code() {
        let generated = document_json();
        let path = checked_in_path();
        if std::env::var_os(UPDATE_VAR).is_some() {
            std::fs::write(&path, generated).unwrap();
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if checked_in != generated {
            let line = checked_in
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "the end".to_owned(), |n| format!("line {}", n + 1));
            panic!(
                "openapi.json at the repository root differs from the document the code \
                 generates (first difference at {line}). Regenerate it with\n\n    \
                 {UPDATE_VAR}=1 cargo test -p sessiond-server openapi\n\nand commit the result."
            );
        }
    }

    fn doc() -> Value {
        serde_json::from_str(document_json()).unwrap()
    }

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    /// `(METHOD, path)` of every documented operation, path parameters written `{}`.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = doc();
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(m).is_some() {
                    ops.insert((m.to_uppercase(), normalize(path)));
                }
            }
        }
        ops
    }

    /// `/a/{tenant}/b` and `/a/{tenantId}/b` are the same route.
    fn normalize(path: &str) -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                c if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// A path constant of `sessiond_proto::paths`, by name.
    fn proto_path(name: &str) -> Option<&'static str> {
        use sessiond_proto::paths::*;
        Some(match name {
            "LOGIN" => LOGIN,
            "SSO" => SSO,
            "REFRESH" => REFRESH,
            "LOGOUT" => LOGOUT,
            "LOGOUT_ALL" => LOGOUT_ALL,
            "SESSION" => SESSION,
            "SESSIONS" => SESSIONS,
            "PARTNER_LOGOUT_USER" => PARTNER_LOGOUT_USER,
            "JWKS" => JWKS,
            "DISCOVERY" => DISCOVERY,
            "INTROSPECT" => INTROSPECT,
            "REVOKE" => REVOKE,
            "REVOCATION_FEED" => REVOCATION_FEED,
            _ => return None,
        })
    }

    /// The crate's source files, its modules' directories included.
    fn sources(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(sources(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
        files
    }

    /// Every route call (path and method chain) in the crate's source files; a path is a
    /// string literal or a constant of `sessiond_proto::paths`. The console's page and files
    /// (`/console…`) are not API operations.
    fn registered() -> BTreeSet<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut routes = BTreeSet::new();
        for path in sources(&dir) {
            let src = std::fs::read_to_string(&path).unwrap();
            let compact: String = src.split_whitespace().collect();
            for call in compact.split(".route(").skip(1) {
                let route = match call.strip_prefix('"') {
                    Some(rest) => rest.split_once("\","),
                    None => call
                        .strip_prefix("sessiond_proto::paths::")
                        .and_then(|rest| rest.split_once(','))
                        .and_then(|(name, handlers)| Some((proto_path(name)?, handlers))),
                };
                let Some((path, handlers)) = route else {
                    continue;
                };
                if path.starts_with("/console") {
                    continue;
                }
                // The handler chain ends at the parenthesis closing `.route(`.
                let mut depth = 0usize;
                let mut chain = String::new();
                for c in handlers.chars() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => break,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    chain.push(c);
                }
                for m in METHODS {
                    let starts = chain.starts_with(&format!("{m}("));
                    if starts || chain.contains(&format!(".{m}(")) {
                        routes.insert((m.to_uppercase(), normalize(path)));
                    }
                }
            }
        }
        routes
    }

    /// Every route the router registers is documented, and every documented operation exists.
    #[test]
    fn openapi_documents_every_registered_route() {
        let registered = registered();
        assert!(
            registered.len() >= 30,
            "the route scan found only {registered:?}"
        );
        let documented = documented();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty() && phantom.is_empty(),
            "routes without an OpenAPI operation: {undocumented:?}; documented operations no \
             route serves: {phantom:?}"
        );
    }

    async fn app() -> axum::Router {
        let store = std::sync::Arc::new(sessiond_store::memory::MemoryStore::new());
        let engine = sessiond_core::Engine::start(
            store.clone(),
            store,
            std::sync::Arc::new(sessiond_core::ManualClock::new(1_800_000_000)),
            sessiond_core::secret::MasterKey::parse(&"42".repeat(32)).unwrap(),
            sessiond_core::EngineConfig {
                hash_concurrency: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let limits = crate::ratelimit::RateLimits::unlimited();
        crate::router(crate::AppState::new(
            engine,
            "admin-token-0123456789",
            Vec::new(),
            limits,
        ))
    }

    /// Each documented operation reaches a handler of the router: neither the 404 fallback nor
    /// the 405 of a path served for other methods.
    #[tokio::test]
    async fn openapi_operations_reach_their_handlers() {
        let app = app().await;
        for (method, path) in documented() {
            let uri = path.replace("{}", "x");
            let req = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            let status = res.status();
            let body = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body);
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {uri}: {body}"
            );
            assert!(
                !body.contains("route not found"),
                "{method} {uri} fell through to the fallback: {body}"
            );
        }
    }

    /// The served document is the generated one.
    #[tokio::test]
    async fn openapi_is_served() {
        let res = app()
            .await
            .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .unwrap();
        assert_eq!(body, document_json().as_bytes());
    }

    fn refs(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.insert(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// Every `$ref` resolves, every operation has an id, documents its errors as problem+json
    /// and names only defined security schemes.
    #[test]
    fn openapi_document_is_well_formed() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut all = BTreeSet::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| {
                panic!("unexpected $ref {r}");
            });
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {r}"
            );
        }
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
                for (status, res) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            res["content"]["application/problem+json"].is_object(),
                            "{m} {path} {status} is not problem+json"
                        );
                    }
                }
                assert!(
                    op["responses"]["400"].is_object() && op["responses"]["500"].is_object(),
                    "{m} {path}: every operation may answer 400 (tracing headers) and 500"
                );
                for alt in op["security"].as_array().into_iter().flatten() {
                    for name in alt.as_object().unwrap().keys() {
                        assert!(
                            schemes.contains_key(name),
                            "{m} {path}: unknown scheme {name}"
                        );
                    }
                }
            }
        }
    }
    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// The mirror schemas of `sessiond_core` / `sessiond_store` types follow the real types'
    /// serde shapes (a field added there must be added here).
    #[test]
    fn openapi_mirror_schemas_match_the_real_types() {
        use sessiond_store::{AuditKind, Profile, RevokeReason};
        let doc = doc();
        let mut policy = sessiond_core::Policy::defaults(Profile::Integration);
        policy.webhook_url = Some("https://hooks.example/x".into());
        policy.caep_receiver_url = Some("https://receiver.example/caep".into());
        let policy = serde_json::to_value(&policy).unwrap();
        assert_eq!(keys(&policy), properties(&doc, "Policy"), "Policy");
        let overrides: sessiond_store::PolicyOverrides =
            serde_json::from_value(policy.clone()).unwrap();
        let overrides = serde_json::to_value(&overrides).unwrap();
        assert_eq!(keys(&overrides), properties(&doc, "PolicyOverrides"));
        assert_eq!(keys(&overrides), properties(&doc, "PolicyPatch"));

        let event = sessiond_store::AuditEvent {
            id: 1,
            kind: AuditKind::SessionRevoked,
            tenant_id: sessiond_store::TenantId::parse("t").unwrap(),
            user_id: None,
            session_id: None,
            activity_id: "a".into(),
            correlation_id: None,
            ip: None,
            user_agent: None,
            reason: None,
            at: 0,
            actor: Some("admin-token".into()),
        };
        let event = serde_json::to_value(&event).unwrap();
        assert_eq!(keys(&event), properties(&doc, "AuditEvent"));

        let sso: serde_json::Map<String, Value> = properties(&doc, "SsoConfig")
            .into_iter()
            .map(|k| (k, Value::from("x")))
            .collect();
        serde_json::from_value::<sessiond_core::SsoConfig>(Value::Object(sso)).unwrap();

        let values = |schema: &str| -> Vec<String> {
            doc["components"]["schemas"][schema]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{schema} is not an enum"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        fn parses<T: serde::de::DeserializeOwned>(v: &str) -> bool {
            serde_json::from_value::<T>(Value::from(v)).is_ok()
        }
        type Parse = fn(&str) -> bool;
        let enums: [(&str, Parse); 9] = [
            ("Profile", parses::<Profile>),
            ("OnLimit", parses::<sessiond_store::OnLimit>),
            ("AuthMethod", parses::<sessiond_store::AuthMethod>),
            ("UserStatus", parses::<sessiond_store::UserStatus>),
            ("KeyState", parses::<sessiond_store::KeyState>),
            ("StateFilter", parses::<sessiond_store::StateFilter>),
            ("AuditKind", |v| AuditKind::parse(v).is_some()),
            ("RevokeReason", |v| RevokeReason::parse(v).is_some()),
            ("Mode", parses::<sessiond_proto::Mode>),
        ];
        for (schema, parse) in enums {
            for v in values(schema) {
                assert!(parse(&v), "{schema}: {v} is not a value of the real type");
            }
        }
    }
}
