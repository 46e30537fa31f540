//! The operator API under `/admin/v1` (DESIGN §9): one module per resource, each with its own
//! router, merged here behind the layer that records every change in the audit trail with
//! the operator who made it. Who may call what is [`Admin`]'s job: the static admin token
//! (automation, the CLI) or a named operator's session (the console's cookie, or its token as
//! Bearer), with a role.

pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod operators;
pub(crate) mod partners;
pub(crate) mod sessions;
pub(crate) mod tenants;
pub(crate) mod users;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, bearer_token, session_token};
use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sessiond_core::{RequestContext, secret};
use sessiond_proto::ErrorCode;
use sessiond_store::{Role, TenantId, User, UserId, UserStatus};
use std::sync::{Arc, Mutex};

/// Every admin route, each change recorded by [`record_changes`].
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(tenants::router())
        .merge(users::router())
        .merge(sessions::router())
        .merge(audit::router())
        .merge(partners::router())
        .merge(keys::router())
        .merge(operators::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_changes,
        ))
}

// ---- who is calling ----------------------------------------------------------------------------

/// The least role of each kind of call ([`Admin`]'s parameter).
pub(crate) const VIEWER: u8 = 0;
pub(crate) const OPERATOR: u8 = 1;
pub(crate) const ADMIN: u8 = 2;

fn role_of(min: u8) -> Role {
    match min {
        VIEWER => Role::Viewer,
        OPERATOR => Role::Operator,
        _ => Role::Admin,
    }
}

/// Who made an admin request: the admin token (role admin) or a named operator, signed in on
/// the operators' tenant (the console's cookie mode, or a token-mode login for scripts).
#[derive(Clone)]
pub(crate) struct Actor {
    pub role: Role,
    /// As recorded in the audit trail: `operator:<username>` or `admin-token`.
    pub name: String,
    /// The operator's account and session (none for the admin token).
    pub operator: Option<(User, sessiond_store::SessionId)>,
}

/// An admin request by a caller whose role is at least `MIN` ([`VIEWER`], [`OPERATOR`],
/// [`ADMIN`]): `Authorization: Bearer` with the admin token (compared in constant time) or an
/// operator's session token, or an operator's session cookie (a state change also needs the
/// session's `X-CSRF-Token`). A known caller whose role is too low gets `403 forbidden`.
pub(crate) struct Admin<const MIN: u8> {
    caller: Caller,
    pub actor: Actor,
    slot: Option<ActorSlot>,
}

impl<const MIN: u8> Admin<MIN> {
    /// The audit context of this request, acting on `tenant`, with the actor.
    pub fn ctx(&self, tenant: &TenantId) -> RequestContext {
        let mut ctx = self.caller.ctx(tenant);
        ctx.actor = Some(self.actor.name.clone());
        ctx
    }

    /// A tenant named in a path (as the handler decoded it), which a change is then recorded
    /// against. The operators' tenant (and any reserved one) is visible to admins only; to
    /// others it does not exist.
    pub fn tenant(&self, raw: &str) -> ApiResult<TenantId> {
        let t = TenantId::parse(raw).map_err(|_| ApiError::not_found("tenant"))?;
        if t.is_reserved() && self.actor.role < Role::Admin {
            return Err(ApiError::not_found("tenant"));
        }
        self.acting_on(&t);
        Ok(t)
    }

    /// A user id named in a path, which a change is then recorded against.
    pub fn user(&self, raw: &str) -> ApiResult<UserId> {
        let u = uuid::Uuid::try_parse(raw).map_err(|_| ApiError::not_found("user"))?;
        self.record(|r| r.user = Some(u));
        Ok(u)
    }

    /// Records the change of this request against `user` (one it created).
    pub fn acting_on_user(&self, user: UserId) {
        self.record(|r| r.user = Some(user));
    }

    /// Adds what the route does not say to the recorded change (`role=viewer`).
    pub fn detail(&self, detail: String) {
        self.record(|r| r.detail = Some(detail));
    }

    /// Records the change of this request against `tenant` (a tenant being created, or one
    /// of the path); without one it goes to the operators' tenant's trail.
    pub fn acting_on(&self, tenant: &TenantId) {
        self.record(|r| r.tenant = Some(tenant.clone()));
    }

    fn record(&self, f: impl FnOnce(&mut Recorded)) {
        if let Some(slot) = &self.slot
            && let Ok(mut r) = slot.0.lock()
        {
            f(&mut r);
        }
    }
}

pub(crate) fn forbidden(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail)
}

/// Who is calling: `Authorization: Bearer` with the admin token or an operator's session
/// token (a token-mode login on `_operators`, for scripts), or without `Authorization` the
/// session cookie of a console sign-in (a change then also needs its `X-CSRF-Token`).
async fn actor(parts: &Parts, state: &AppState, caller: &Caller) -> Result<Actor, ApiError> {
    let has_cookie = crate::cookies::get(&parts.headers, crate::cookies::SESSION_COOKIE).is_some();
    let token = if parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
        || !has_cookie
    {
        let token = bearer_token(&parts.headers, false)?;
        if secret::constant_time_eq(
            &secret::hash_token(token).0,
            &secret::hash_token(&state.admin_token).0,
        ) {
            return Ok(Actor {
                role: Role::Admin,
                name: "admin-token".into(),
                operator: None,
            });
        }
        // Only a JWT can be an operator's session token; anything else is a wrong admin token.
        if token.split('.').count() != 3 {
            return Err(forbidden(
                "neither the admin token nor an operator's session token",
            ));
        }
        token.to_owned()
    } else {
        session_token(parts, state, false).await?.0.into_owned()
    };
    let tenant = TenantId::operators();
    let auth = state
        .engine
        .authenticate(&caller.ctx(&tenant), &token)
        .await?;
    let user = state
        .engine
        .get_user(&tenant, &auth.session.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(|| forbidden("this operator account is disabled"))?;
    let role = user
        .role
        .ok_or_else(|| forbidden("this account has no operator role"))?;
    Ok(Actor {
        role,
        name: format!("operator:{}", user.username.as_deref().unwrap_or("?")),
        operator: Some((user, auth.session.id.clone())),
    })
}

impl<const MIN: u8> FromRequestParts<AppState> for Admin<MIN> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let actor = actor(parts, state, &caller).await?;
        let needed = role_of(MIN);
        if actor.role < needed {
            return Err(forbidden(format!(
                "this needs the {} role; {} has {}",
                needed.as_str(),
                actor.name,
                actor.role.as_str()
            )));
        }
        let slot = parts.extensions.get::<ActorSlot>().cloned();
        if let Some(slot) = &slot
            && let Ok(mut s) = slot.0.lock()
        {
            s.ctx = Some(caller.ctx(&TenantId::operators()));
            s.actor = Some(actor.name.clone());
        }
        Ok(Admin {
            caller,
            actor,
            slot,
        })
    }
}

// ---- the audit trail of changes ----------------------------------------------------------------

#[derive(Default)]
struct Recorded {
    ctx: Option<RequestContext>,
    actor: Option<String>,
    tenant: Option<TenantId>,
    user: Option<UserId>,
    /// What the route alone does not say (a new role).
    detail: Option<String>,
}

/// Filled by [`Admin`] for [`record_changes`].
#[derive(Clone, Default)]
struct ActorSlot(Arc<Mutex<Recorded>>);

/// Records each successful change (any method but GET/HEAD/OPTIONS) as an `admin_action`
/// event: `reason` is the method and route (`POST /admin/v1/tenants/{tenant}/users`),
/// `actor` who made it; in the trail of the tenant the handler acted on (as it decoded it
/// from the path, see [`Admin::tenant`]), else of the operators' tenant (keys, operators),
/// with the user it named. The change has happened when this runs: a failure to record it is
/// logged, not answered.
async fn record_changes(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    if req.method().is_safe() {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let response = next.run(req).await;
    if !response.status().is_success() {
        return response;
    }
    let recorded = match slot.0.lock() {
        Ok(mut r) => std::mem::take(&mut *r),
        Err(_) => return response,
    };
    let (Some(mut ctx), Some(actor)) = (recorded.ctx, recorded.actor) else {
        return response;
    };
    ctx.tenant_id = recorded.tenant.unwrap_or_else(TenantId::operators);
    ctx.actor = Some(actor);
    if let Err(e) = st
        .engine
        .record_admin_action(
            &ctx,
            recorded.user,
            match recorded.detail {
                Some(d) => format!("{method} {route} {d}"),
                None => format!("{method} {route}"),
            },
        )
        .await
    {
        tracing::error!(error = %e, route, "an admin action could not be recorded");
    }
    response
}

// ---- shared by the resources -------------------------------------------------------------------

/// On the admin API a tenant is a path resource: an unknown one is 404 `not_found`.
pub(crate) fn admin_err(e: sessiond_core::CoreError) -> ApiError {
    match e {
        sessiond_core::CoreError::UnknownTenant => ApiError::not_found("tenant"),
        e => e.into(),
    }
}

/// A listing's `search`: at most 256 bytes, no control characters (empty: none).
pub(crate) fn search(raw: Option<String>) -> ApiResult<Option<String>> {
    match raw {
        Some(s) if s.len() > 256 || s.chars().any(char::is_control) => Err(
            ApiError::invalid_request("search is at most 256 bytes, without control characters"),
        ),
        s => Ok(s.filter(|s| !s.is_empty())),
    }
}

/// A page's size: `limit` (default 100) up to [`sessiond_core::engine::operators::MAX_PAGE`].
pub(crate) fn page_size(limit: Option<usize>) -> usize {
    limit
        .unwrap_or(100)
        .clamp(1, sessiond_core::engine::operators::MAX_PAGE)
}

/// Cursors are opaque to clients: base64url JSON of where a page ended.
pub(crate) fn encode_cursor<T: Serialize>(at: &T) -> Option<String> {
    serde_json::to_vec(at).ok().map(|b| secret::b64(&b))
}

pub(crate) fn decode_cursor<T: DeserializeOwned>(raw: Option<&str>) -> ApiResult<Option<T>> {
    raw.map(|c| {
        secret::b64_decode(c)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::invalid_request("malformed cursor"))
    })
    .transpose()
}

/// The next page's cursor: when the page is full, where it ended.
pub(crate) fn next_cursor<I, T: Serialize>(
    items: &[I],
    limit: usize,
    at: impl Fn(&I) -> T,
) -> Option<String> {
    (items.len() >= limit)
        .then(|| items.last())
        .flatten()
        .and_then(|last| encode_cursor(&at(last)))
}
