//! The conformance suite every store backend must pass: one function per behaviour, each run
//! on a fresh store. A backend is done when the macros below pass against it:
//! [`identity_store_conformance!`](crate::identity_store_conformance),
//! [`session_store_conformance!`](crate::session_store_conformance) and, for backends shared by
//! several nodes, the change-log suites.

// Test code: a failed expectation is meant to panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::model::*;
use crate::{ChangeLog, Counters, IdentityStore, SessionStore, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;

/// One `#[tokio::test]` per behaviour of the [`IdentityStore`] suite, each on a fresh store
/// made by the expression `$make` (a future giving the store), so a failure names it.
#[macro_export]
macro_rules! identity_store_conformance {
    ($make:expr) => {
        $crate::conformance_tests!($make; tenants_are_created_read_and_updated, users_are_created_with_unique_names_and_ids, users_are_tenant_scoped, user_password_and_status_are_updated, users_are_found_by_external_id_per_tenant, sso_settings_are_set_replaced_and_read_per_tenant, partner_secrets_are_created_read_and_deleted_per_tenant, service_clients_are_created_and_read, keys_are_replaced_as_a_whole, audit_ids_ascend_and_events_come_newest_first, audit_queries_filter_and_limit, audit_events_are_purged_by_age, tenants_are_listed_in_pages, users_are_listed_searched_and_paged, operator_roles_are_set_and_cleared, partner_secrets_are_listed_per_tenant, audit_is_paged_by_id_and_time, audit_is_counted_per_bucket_kind_and_reason, audit_ids_never_repeat_after_a_purge);
    };
}

/// One `#[tokio::test]` per behaviour of the [`SessionStore`] suite (see
/// [`identity_store_conformance!`](crate::identity_store_conformance)).
#[macro_export]
macro_rules! session_store_conformance {
    ($make:expr) => {
        $crate::conformance_tests!($make; sessions_are_created_and_read_per_tenant, session_creation_conflicts_write_nothing, unlimited_sessions_evict_nothing, evict_oldest_one_displaces_the_previous_session, evict_oldest_two_displaces_only_the_oldest, evict_oldest_breaks_ties_by_creation_order, reject_at_the_limit_writes_nothing, limits_count_only_sessions_active_now, touch_moves_last_seen_forward_on_active_sessions_only, idle_timeout_follows_last_seen, reauthentication_moves_auth_time_on_active_sessions_only, rotation_rotates_and_the_successor_is_current, refresh_records_are_read_by_hash, active_sessions_are_counted, replay_within_grace_returns_the_same_successor, reuse_outside_grace_revokes_the_session, reuse_of_a_two_generations_old_token_within_grace, rotation_rejects_unknown_foreign_and_expired_tokens, rotation_on_an_inactive_session, revoke_session_is_idempotent_and_tenant_scoped, revoke_user_sessions_revokes_only_that_users_active_sessions, mark_expired_records_a_timeout_once, find_sessions_filters_orders_and_limits, listings_break_ties_by_creation_order, nonces_are_single_use_per_tenant_until_they_expire, ping_answers, concurrent_logins_respect_a_limit_of_one, concurrent_refreshes_rotate_once, concurrent_nonce_consumption_succeeds_once, sessions_spread_over_routes_are_found_and_revoked, expire_sessions_records_each_timeout_once);
    };
}

/// The checks of a session store that is also the identity store: its writes commit the
/// audit events they are given (see [`AuditWith`]) in their own transaction.
#[macro_export]
macro_rules! audited_session_writes_conformance {
    ($make:expr) => {
        $crate::conformance_tests!($make; session_writes_commit_their_audit_events, failed_session_writes_commit_no_audit_events);
    };
}

/// The [`ChangeLog`] checks of a session store that is also a change log.
#[macro_export]
macro_rules! session_change_log_conformance {
    ($make:expr) => {
        $crate::conformance_tests!($make; session_changes_are_logged_and_the_hot_path_is_not, revoking_all_of_a_users_sessions_logs_a_cut_off, ended_sessions_log_their_auth_time, timeouts_are_logged, purged_log_entries_are_gone_and_numbering_goes_on, wait_hint_returns_by_its_deadline, marks_are_swapped_only_from_the_expected_version);
    };
}

/// The [`ChangeLog`] checks of an identity store that is also a change log.
#[macro_export]
macro_rules! identity_change_log_conformance {
    ($make:expr) => {
        $crate::conformance_tests!($make; identity_changes_are_logged, keyrings_are_initialized_once);
    };
}

/// The [`Counters`] checks.
#[macro_export]
macro_rules! counters_conformance {
    ($make:expr) => {
        $crate::conformance_tests!($make; counters_count_forget_and_reset, concurrent_hits_are_all_counted);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::conformance::$name($make.await).await;
            }
        )*
    };
}

const NOW: UnixTime = 1_700_000_000;
const DAY: i64 = 86_400;
const GRACE: u32 = 10;
/// Enough for every query here: a limit that cuts nothing.
const ALL: usize = 1_000;

fn tenant_id(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid tenant id")
}

fn tenant_a() -> TenantId {
    tenant_id("tenant-a")
}

fn tenant_b() -> TenantId {
    tenant_id("tenant-b")
}

fn new_tenant(id: &TenantId) -> Tenant {
    Tenant {
        id: id.clone(),
        name: Some(format!("Tenant {id}")),
        profile: Profile::Production,
        overrides: PolicyOverrides::default(),
        created_at: NOW,
    }
}

fn new_user(tenant: &TenantId, username: Option<&str>, external_id: Option<&str>) -> User {
    User {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.clone(),
        customer_id: uuid::Uuid::new_v4(),
        username: username.map(str::to_owned),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        external_id: external_id.map(str::to_owned),
        status: UserStatus::Active,
        created_at: NOW,
        role: None,
    }
}

/// The route of the users (and so of the sessions and refresh tokens) most checks use; one
/// check spreads users over many routes.
const ROUTE: Route = Route(7);

fn random15() -> [u8; 15] {
    let mut b = [0u8; 15];
    b.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..15]);
    b
}

/// A session id of a user of [`ROUTE`] that no session has.
fn new_session_id() -> SessionId {
    SessionId::generate(ROUTE, random15())
}

/// A user id of [`ROUTE`].
fn uid() -> UserId {
    loop {
        let u = uuid::Uuid::new_v4();
        if Route::of_user(&u) == ROUTE {
            return u;
        }
    }
}

/// A refresh token hash of [`ROUTE`].
fn new_token() -> TokenHash {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TokenHash::routed(b, ROUTE)
}

/// An active session created at `created_at`, valid for a day.
fn session(
    tenant: &TenantId,
    user: UserId,
    created_at: UnixTime,
    idle_ttl: Option<u32>,
) -> Session {
    Session {
        id: SessionId::generate(Route::of_user(&user), random15()),
        tenant_id: tenant.clone(),
        user_id: user,
        customer_id: uuid::Uuid::new_v4(),
        auth_method: AuthMethod::Password,
        created_at,
        auth_time: created_at,
        last_seen_at: created_at,
        absolute_expires_at: created_at + DAY,
        idle_ttl,
        device: DeviceInfo {
            user_agent: Some("conformance/1.0".into()),
            ip: Some("192.0.2.7".into()),
            label: Some("laptop".into()),
        },
        state: SessionState::Active,
    }
}

fn bare(session: &Session) -> NewSession {
    NewSession {
        session: session.clone(),
        refresh: None,
    }
}

fn with_refresh(session: &Session, token: TokenHash) -> NewSession {
    NewSession {
        session: session.clone(),
        refresh: Some(NewRefreshToken {
            hash: token,
            expires_at: session.created_at + DAY,
        }),
    }
}

fn sealed(token: &TokenHash) -> Vec<u8> {
    b"sealed:".iter().chain(token.0.iter()).copied().collect()
}

fn rotation(
    tenant: &TenantId,
    presented: TokenHash,
    successor: TokenHash,
    now: UnixTime,
) -> Rotation {
    Rotation {
        tenant_id: tenant.clone(),
        presented,
        successor: NewRefreshToken {
            hash: successor,
            expires_at: now + DAY,
        },
        sealed_successor: sealed(&successor),
        grace_seconds: GRACE,
        now,
    }
}

fn ids(sessions: &[Session]) -> Vec<SessionId> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

fn id_set<'a>(ids: impl IntoIterator<Item = &'a SessionId>) -> BTreeSet<SessionId> {
    ids.into_iter().cloned().collect()
}

async fn create<S: SessionStore>(store: &S, session: &Session) {
    let evicted = store
        .create_session(
            bare(session),
            SessionLimit::Unlimited,
            session.created_at,
            None,
        )
        .await
        .expect("create_session");
    assert!(
        evicted.is_empty(),
        "an unlimited create evicted {evicted:?}"
    );
}

async fn get<S: SessionStore>(store: &S, session: &Session) -> Session {
    store
        .get_session(&session.tenant_id, &session.id)
        .await
        .expect("get_session")
        .expect("the session exists")
}

/// Re-authenticates the (active) session `s` at `now`.
async fn reauthenticate<S: SessionStore>(store: &S, s: &Session, now: UnixTime) -> Session {
    store
        .reauthenticate(&s.tenant_id, &s.id, now)
        .await
        .expect("reauthenticate")
        .expect("an active session")
}

async fn rotate<S: SessionStore>(store: &S, r: Rotation) -> RotateOutcome {
    store.rotate_refresh(r, None).await.expect("rotate_refresh")
}

async fn find<S: SessionStore>(
    store: &S,
    tenant: &TenantId,
    user_id: Option<UserId>,
    state: Option<StateFilter>,
    limit: usize,
    now: UnixTime,
) -> Vec<SessionId> {
    let query = SessionQuery {
        user_id,
        state,
        limit,
        before: None,
    };
    ids(&store
        .find_sessions(tenant, &query, now)
        .await
        .expect("find_sessions"))
}

/// Every session of the listing, read page by page, each page starting after the last
/// session of the one before.
async fn pages<S: SessionStore>(
    store: &S,
    tenant: &TenantId,
    user_id: Option<UserId>,
    limit: usize,
    now: UnixTime,
) -> Vec<SessionId> {
    let mut all = Vec::new();
    let mut before = None;
    for _ in 0..100 {
        let query = SessionQuery {
            user_id,
            state: None,
            limit,
            before: before.clone(),
        };
        let page = store
            .find_sessions(tenant, &query, now)
            .await
            .expect("find_sessions");
        assert!(page.len() <= limit, "a page longer than its limit");
        let Some(last) = page.last() else {
            return all;
        };
        before = Some(SessionCursor {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        all.extend(page.iter().map(|s| s.id.clone()));
    }
    panic!("the pages never ended");
}

fn revoked(reason: RevokeReason, at: UnixTime) -> SessionState {
    SessionState::Revoked { reason, at }
}

// ---------------------------------------------------------------------------------------
// Tenants, users, keys

pub async fn tenants_are_created_read_and_updated<S: IdentityStore>(store: S) {
    let a = new_tenant(&tenant_a());
    store.create_tenant(a.clone()).await.expect("create_tenant");
    assert_eq!(
        store.get_tenant(&a.id).await.expect("get_tenant"),
        Some(a.clone())
    );

    let plain = Tenant {
        id: tenant_id("plain"),
        name: None,
        profile: Profile::Playground,
        overrides: PolicyOverrides::default(),
        created_at: NOW + 1,
    };
    store
        .create_tenant(plain.clone())
        .await
        .expect("create_tenant");
    assert_eq!(
        store.get_tenant(&plain.id).await.expect("get_tenant"),
        Some(plain)
    );

    let again = Tenant {
        name: Some("impostor".into()),
        profile: Profile::Playground,
        ..a.clone()
    };
    assert!(
        matches!(store.create_tenant(again).await, Err(StoreError::Conflict)),
        "a taken tenant id must conflict"
    );
    assert_eq!(
        store.get_tenant(&a.id).await.expect("get_tenant"),
        Some(a.clone()),
        "a conflicting create must not change the tenant"
    );
    assert_eq!(
        store.get_tenant(&tenant_b()).await.expect("get_tenant"),
        None
    );

    let overrides = PolicyOverrides {
        session_token_ttl: Some(600),
        refresh_tokens: Some(true),
        refresh_token_ttl: Some(7200),
        absolute_ttl: Some(3600),
        idle_ttl: Some(0),
        max_sessions_per_user: Some(1),
        on_limit: Some(OnLimit::Reject),
        required_headers: Some(vec!["X-Activity-ID".into(), "X-Tenant-ID".into()]),
        refresh_grace_seconds: Some(5),
        https_only: Some(true),
        login_backoff_after: Some(3),
        login_rate_per_minute: Some(10),
        webhook_url: Some("https://hooks.example/sessiond".into()),
        caep_receiver_url: Some("https://receiver.example/caep".into()),
        reauth_max_age: Some(600),
    };
    let expected = Tenant {
        overrides: overrides.clone(),
        ..a.clone()
    };
    assert_eq!(
        store
            .set_tenant_policy(&a.id, overrides)
            .await
            .expect("set_tenant_policy"),
        Some(expected.clone())
    );
    assert_eq!(
        store.get_tenant(&a.id).await.expect("get_tenant"),
        Some(expected)
    );

    let fewer = PolicyOverrides {
        idle_ttl: Some(900),
        ..PolicyOverrides::default()
    };
    store
        .set_tenant_policy(&a.id, fewer.clone())
        .await
        .expect("set_tenant_policy");
    assert_eq!(
        store
            .get_tenant(&a.id)
            .await
            .expect("get_tenant")
            .map(|t| t.overrides),
        Some(fewer),
        "set_tenant_policy replaces the overrides, it does not merge them"
    );

    assert_eq!(
        store
            .set_tenant_policy(&tenant_b(), PolicyOverrides::default())
            .await
            .expect("set_tenant_policy"),
        None
    );
    assert_eq!(
        store.get_tenant(&tenant_b()).await.expect("get_tenant"),
        None,
        "setting the policy of an unknown tenant must not create it"
    );
}

pub async fn users_are_created_with_unique_names_and_ids<S: IdentityStore>(store: S) {
    let t = tenant_a();
    store
        .create_tenant(new_tenant(&t))
        .await
        .expect("create_tenant");
    let alice = new_user(&t, Some("alice"), Some("ext-alice"));
    store.create_user(alice.clone()).await.expect("create_user");
    assert_eq!(
        store.get_user(&t, &alice.id).await.expect("get_user"),
        Some(alice.clone())
    );

    let same_name = new_user(&t, Some("alice"), None);
    assert!(
        matches!(
            store.create_user(same_name.clone()).await,
            Err(StoreError::Conflict)
        ),
        "a taken username must conflict"
    );
    let same_external = new_user(&t, Some("alice2"), Some("ext-alice"));
    assert!(
        matches!(
            store.create_user(same_external.clone()).await,
            Err(StoreError::Conflict)
        ),
        "a taken external id must conflict"
    );
    let same_id = User {
        username: Some("bob".into()),
        external_id: None,
        ..alice.clone()
    };
    assert!(
        matches!(store.create_user(same_id).await, Err(StoreError::Conflict)),
        "a taken user id must conflict"
    );
    for loser in [&same_name, &same_external] {
        assert_eq!(store.get_user(&t, &loser.id).await.expect("get_user"), None);
    }
    assert_eq!(
        store
            .find_user_by_username(&t, "alice2")
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store.find_user_by_username(&t, "bob").await.expect("find"),
        None
    );
    assert_eq!(
        store.get_user(&t, &alice.id).await.expect("get_user"),
        Some(alice.clone()),
        "conflicting creates must not change the user"
    );

    // Users without a username or external id never conflict with each other.
    let anon1 = User {
        password_hash: None,
        ..new_user(&t, None, None)
    };
    let anon2 = new_user(&t, None, None);
    store.create_user(anon1.clone()).await.expect("create_user");
    store.create_user(anon2.clone()).await.expect("create_user");
    assert_eq!(
        store.get_user(&t, &anon1.id).await.expect("get_user"),
        Some(anon1)
    );
    assert_eq!(
        store.get_user(&t, &anon2.id).await.expect("get_user"),
        Some(anon2)
    );

    // An SSO-provisioned user: external id, no username.
    let sso = new_user(&t, None, Some("ext-sso"));
    store.create_user(sso.clone()).await.expect("create_user");
    assert_eq!(
        store.get_user(&t, &sso.id).await.expect("get_user"),
        Some(sso)
    );
}

pub async fn users_are_tenant_scoped<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    store
        .create_tenant(new_tenant(&a))
        .await
        .expect("create_tenant");
    store
        .create_tenant(new_tenant(&b))
        .await
        .expect("create_tenant");
    let alice = new_user(&a, Some("alice"), Some("ext-1"));
    store.create_user(alice.clone()).await.expect("create_user");

    assert_eq!(
        store
            .find_user_by_username(&a, "alice")
            .await
            .expect("find"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .find_user_by_username(&a, "Alice")
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_user_by_username(&a, "nobody")
            .await
            .expect("find"),
        None
    );
    assert_eq!(store.get_user(&b, &alice.id).await.expect("get_user"), None);
    assert_eq!(
        store
            .find_user_by_username(&b, "alice")
            .await
            .expect("find"),
        None
    );

    // The same username, external id and even user id may exist in another tenant.
    let alice_b = User {
        tenant_id: b.clone(),
        customer_id: uuid::Uuid::new_v4(),
        ..alice.clone()
    };
    store
        .create_user(alice_b.clone())
        .await
        .expect("create_user in another tenant");
    assert_eq!(
        store
            .find_user_by_username(&b, "alice")
            .await
            .expect("find"),
        Some(alice_b.clone())
    );
    assert_eq!(
        store.get_user(&b, &alice.id).await.expect("get_user"),
        Some(alice_b)
    );
    assert_eq!(
        store.get_user(&a, &alice.id).await.expect("get_user"),
        Some(alice)
    );
}

pub async fn user_password_and_status_are_updated<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    store
        .create_tenant(new_tenant(&a))
        .await
        .expect("create_tenant");
    let alice = new_user(&a, Some("alice"), None);
    store.create_user(alice.clone()).await.expect("create_user");

    assert!(
        store
            .set_password_hash(&a, &alice.id, "$argon2id$new".into())
            .await
            .expect("set_password_hash")
    );
    assert!(
        !store
            .set_password_hash(&b, &alice.id, "$argon2id$foreign".into())
            .await
            .expect("set_password_hash"),
        "another tenant must not reach the user"
    );
    assert!(
        !store
            .set_password_hash(&a, &uuid::Uuid::new_v4(), "$argon2id$x".into())
            .await
            .expect("set_password_hash")
    );
    assert!(
        store
            .set_user_status(&a, &alice.id, UserStatus::Disabled)
            .await
            .expect("set_user_status")
    );
    assert!(
        !store
            .set_user_status(&b, &alice.id, UserStatus::Active)
            .await
            .expect("set_user_status"),
        "another tenant must not reach the user"
    );
    assert!(
        !store
            .set_user_status(&a, &uuid::Uuid::new_v4(), UserStatus::Disabled)
            .await
            .expect("set_user_status")
    );

    let expected = User {
        password_hash: Some("$argon2id$new".into()),
        status: UserStatus::Disabled,
        ..alice.clone()
    };
    assert_eq!(
        store.get_user(&a, &alice.id).await.expect("get_user"),
        Some(expected.clone())
    );
    assert_eq!(
        store
            .find_user_by_username(&a, "alice")
            .await
            .expect("find"),
        Some(expected)
    );

    assert!(
        store
            .set_user_status(&a, &alice.id, UserStatus::Active)
            .await
            .expect("set_user_status")
    );
    assert_eq!(
        store
            .get_user(&a, &alice.id)
            .await
            .expect("get_user")
            .map(|u| u.status),
        Some(UserStatus::Active)
    );
}

pub async fn users_are_found_by_external_id_per_tenant<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    for t in [&a, &b] {
        store
            .create_tenant(new_tenant(t))
            .await
            .expect("create_tenant");
    }
    let alice = new_user(&a, Some("alice"), Some("ext-1"));
    let sso_only = new_user(&a, None, Some("ext-2"));
    let no_external = new_user(&a, Some("carol"), None);
    // The same external id in another tenant is another user.
    let bob = new_user(&b, Some("bob"), Some("ext-1"));
    for u in [&alice, &sso_only, &no_external, &bob] {
        store.create_user(u.clone()).await.expect("create_user");
    }
    let find = |t: TenantId, ext: &'static str| {
        let store = &store;
        async move {
            store
                .find_user_by_external_id(&t, ext)
                .await
                .expect("find_user_by_external_id")
        }
    };

    assert_eq!(find(a.clone(), "ext-1").await, Some(alice.clone()));
    assert_eq!(find(a.clone(), "ext-2").await, Some(sso_only));
    assert_eq!(
        find(b.clone(), "ext-1").await,
        Some(bob),
        "each tenant finds its own user"
    );
    assert_eq!(
        find(b.clone(), "ext-2").await,
        None,
        "another tenant's external id must not be found"
    );
    assert_eq!(find(a.clone(), "EXT-1").await, None, "exact match only");
    assert_eq!(find(a.clone(), "ext-9").await, None);
    assert_eq!(
        find(a.clone(), "").await,
        None,
        "a user without an external id is not found by an empty one"
    );
    assert_eq!(
        find(a.clone(), "alice").await,
        None,
        "a username is not an external id"
    );

    // The lookup sees later changes to the user.
    assert!(
        store
            .set_user_status(&a, &alice.id, UserStatus::Disabled)
            .await
            .expect("set_user_status")
    );
    assert_eq!(
        find(a.clone(), "ext-1").await.map(|u| u.status),
        Some(UserStatus::Disabled)
    );
}

fn sso(audience: &str, updated_at: UnixTime) -> SsoSettings {
    SsoSettings {
        issuer: Some(format!("https://{audience}.example")),
        audience: audience.to_owned(),
        sealed_hs256_secret: Some(format!("sealed:{audience}").into_bytes()),
        public_key_pem: None,
        jwks_url: None,
        verify_url: None,
        sealed_verify_secret: None,
        updated_at,
    }
}

pub async fn sso_settings_are_set_replaced_and_read_per_tenant<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    for t in [&a, &b] {
        store
            .create_tenant(new_tenant(t))
            .await
            .expect("create_tenant");
        assert_eq!(store.get_sso(t).await.expect("get_sso"), None);
    }

    let a1 = sso("partner-a", NOW);
    store.set_sso(&a, a1.clone()).await.expect("set_sso");
    assert_eq!(store.get_sso(&a).await.expect("get_sso"), Some(a1.clone()));
    assert_eq!(
        store.get_sso(&b).await.expect("get_sso"),
        None,
        "settings belong to one tenant"
    );

    let b1 = SsoSettings {
        issuer: None,
        sealed_hs256_secret: None,
        jwks_url: Some("https://partner-b.example/.well-known/jwks.json".into()),
        ..sso("partner-b", NOW + 1)
    };
    store.set_sso(&b, b1.clone()).await.expect("set_sso");
    assert_eq!(store.get_sso(&b).await.expect("get_sso"), Some(b1.clone()));
    assert_eq!(
        store.get_sso(&a).await.expect("get_sso"),
        Some(a1),
        "another tenant's settings do not change"
    );

    // Replacing clears what the new settings leave out: nothing of the old ones remains.
    let a2 = SsoSettings {
        issuer: None,
        audience: "partner-a-v2".into(),
        sealed_hs256_secret: None,
        public_key_pem: Some(
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n".into(),
        ),
        jwks_url: None,
        verify_url: None,
        sealed_verify_secret: None,
        updated_at: NOW + 2,
    };
    store.set_sso(&a, a2.clone()).await.expect("set_sso");
    assert_eq!(store.get_sso(&a).await.expect("get_sso"), Some(a2));
    assert_eq!(store.get_sso(&b).await.expect("get_sso"), Some(b1.clone()));

    // A verification endpoint and its sealed secret: bytes, kept exactly (NUL and 0xff
    // included).
    let a3 = SsoSettings {
        verify_url: Some("https://partner-a.example/sso/verify?v=1".into()),
        sealed_verify_secret: Some(vec![0x00, 0xff, b's', 0x00, 0x80, 0xff]),
        ..sso("partner-a-v3", NOW + 3)
    };
    store.set_sso(&a, a3.clone()).await.expect("set_sso");
    assert_eq!(store.get_sso(&a).await.expect("get_sso"), Some(a3));

    // Settings without them clear both.
    let a4 = sso("partner-a-v4", NOW + 4);
    store.set_sso(&a, a4.clone()).await.expect("set_sso");
    let read = store.get_sso(&a).await.expect("get_sso");
    assert_eq!(
        read.as_ref()
            .map(|s| (&s.verify_url, &s.sealed_verify_secret)),
        Some((&None, &None)),
        "replaced settings keep no verification endpoint"
    );
    assert_eq!(read, Some(a4));
    assert_eq!(store.get_sso(&b).await.expect("get_sso"), Some(b1));
}

fn partner_secret(id: &str, tenant: &TenantId, created_at: UnixTime) -> PartnerSecret {
    PartnerSecret {
        secret_id: id.to_owned(),
        tenant_id: tenant.clone(),
        hash: new_token(),
        created_at,
    }
}

pub async fn partner_secrets_are_created_read_and_deleted_per_tenant<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    for t in [&a, &b] {
        store
            .create_tenant(new_tenant(t))
            .await
            .expect("create_tenant");
    }
    let get = |id: &'static str| {
        let store = &store;
        async move {
            store
                .get_partner_secret(id)
                .await
                .expect("get_partner_secret")
        }
    };
    // A tenant may hold several secrets at once, for rotation.
    let a1 = partner_secret("ps-a1", &a, NOW);
    let a2 = partner_secret("ps-a2", &a, NOW + 1);
    let b1 = partner_secret("ps-b1", &b, NOW + 2);
    for s in [&a1, &a2, &b1] {
        store
            .create_partner_secret(s.clone())
            .await
            .expect("create_partner_secret");
    }
    assert_eq!(get("ps-a1").await, Some(a1.clone()));
    assert_eq!(get("ps-a2").await, Some(a2.clone()));
    assert_eq!(
        get("ps-b1").await,
        Some(b1.clone()),
        "found by id alone, with its tenant"
    );
    assert_eq!(get("ps-unknown").await, None);

    // A taken id conflicts, in any tenant, and changes nothing.
    for tenant in [&a, &b] {
        assert!(
            matches!(
                store
                    .create_partner_secret(partner_secret("ps-a1", tenant, NOW + 3))
                    .await,
                Err(StoreError::Conflict)
            ),
            "a taken secret id must conflict"
        );
    }
    assert_eq!(get("ps-a1").await, Some(a1.clone()));

    assert!(
        !store
            .delete_partner_secret(&b, "ps-a1")
            .await
            .expect("delete_partner_secret"),
        "another tenant must not delete the secret"
    );
    assert_eq!(get("ps-a1").await, Some(a1.clone()));
    assert!(
        !store
            .delete_partner_secret(&a, "ps-unknown")
            .await
            .expect("delete_partner_secret")
    );

    assert!(
        store
            .delete_partner_secret(&a, "ps-a1")
            .await
            .expect("delete_partner_secret")
    );
    assert_eq!(get("ps-a1").await, None, "a deleted secret is gone");
    assert!(
        !store
            .delete_partner_secret(&a, "ps-a1")
            .await
            .expect("delete_partner_secret"),
        "a secret is deleted once"
    );
    assert_eq!(
        get("ps-a2").await,
        Some(a2),
        "the tenant's other secret remains"
    );
    assert_eq!(get("ps-b1").await, Some(b1));
}

fn service_client(id: &str, tenant: &TenantId, audience: &str) -> ServiceClient {
    ServiceClient {
        client_id: id.to_owned(),
        tenant_id: tenant.clone(),
        secret_hash: new_token(),
        audience: audience.to_owned(),
        backchannel_logout_uri: None,
        created_at: NOW,
    }
}

pub async fn service_clients_are_created_and_read<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    for t in [&a, &b] {
        store
            .create_tenant(new_tenant(t))
            .await
            .expect("create_tenant");
    }
    let billing = service_client("billing", &a, "internal-billing");
    let reports = service_client("reports", &b, "internal-reports");
    for c in [&billing, &reports] {
        store.create_client(c.clone()).await.expect("create_client");
    }
    assert_eq!(
        store.get_client("billing").await.expect("get_client"),
        Some(billing.clone())
    );
    assert_eq!(
        store.get_client("reports").await.expect("get_client"),
        Some(reports.clone())
    );
    assert_eq!(store.get_client("unknown").await.expect("get_client"), None);
    assert_eq!(
        store.get_client("Billing").await.expect("get_client"),
        None,
        "exact match only"
    );

    for tenant in [&a, &b] {
        assert!(
            matches!(
                store
                    .create_client(service_client("billing", tenant, "elsewhere"))
                    .await,
                Err(StoreError::Conflict)
            ),
            "a taken client id must conflict"
        );
    }
    assert_eq!(
        store.get_client("billing").await.expect("get_client"),
        Some(billing.clone()),
        "a conflicting create must not change the client"
    );
    assert_eq!(
        store.get_client("reports").await.expect("get_client"),
        Some(reports.clone())
    );

    // The back-channel logout URI round-trips, set or not.
    let audit = ServiceClient {
        backchannel_logout_uri: Some("https://audit.example/backchannel-logout".into()),
        ..service_client("audit", &a, "internal-audit")
    };
    store
        .create_client(audit.clone())
        .await
        .expect("create_client");
    assert_eq!(
        store.get_client("audit").await.expect("get_client"),
        Some(audit.clone())
    );

    // Listed per tenant, by client id in byte order (not by creation order, nor by a
    // locale's collation).
    let archive = service_client("archive", &a, "internal-archive");
    let ops = service_client("Ops", &a, "internal-ops");
    for c in [&archive, &ops] {
        store.create_client(c.clone()).await.expect("create_client");
    }
    assert_eq!(
        store.list_clients(&a).await.expect("list_clients"),
        vec![ops, archive, audit, billing],
        "tenant A's clients, by client id"
    );
    assert_eq!(
        store.list_clients(&b).await.expect("list_clients"),
        vec![reports]
    );
    let c = tenant_id("tenant-c");
    store
        .create_tenant(new_tenant(&c))
        .await
        .expect("create_tenant");
    assert_eq!(
        store.list_clients(&c).await.expect("list_clients"),
        vec![],
        "a tenant without clients"
    );
    assert_eq!(
        store
            .list_clients(&tenant_id("tenant-unknown"))
            .await
            .expect("list_clients"),
        vec![],
        "an unknown tenant"
    );
}

fn key(kid: &str, state: KeyState, retire_at: Option<UnixTime>) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg: "EdDSA".into(),
        public: kid.bytes().chain([0, 1, 2]).collect(),
        sealed_private: kid.bytes().rev().chain([0xff, 0]).collect(),
        state,
        created_at: NOW,
        retire_at,
    }
}

async fn sorted_keys<S: IdentityStore>(store: &S) -> Vec<StoredKey> {
    let mut keys = store.load_keys().await.expect("load_keys");
    keys.sort_by(|x, y| x.kid.cmp(&y.kid));
    keys
}

pub async fn keys_are_replaced_as_a_whole<S: IdentityStore>(store: S) {
    assert_eq!(store.load_keys().await.expect("load_keys"), vec![]);
    let first = vec![
        key("k1", KeyState::Retiring, Some(NOW + 3600)),
        key("k2", KeyState::Signing, None),
        key("k3", KeyState::Next, None),
    ];
    store
        .replace_keys(first.clone())
        .await
        .expect("replace_keys");
    assert_eq!(sorted_keys(&store).await, first);

    let second = vec![
        key("k3", KeyState::Signing, None),
        key("k4", KeyState::Next, None),
    ];
    store
        .replace_keys(second.clone())
        .await
        .expect("replace_keys");
    assert_eq!(
        sorted_keys(&store).await,
        second,
        "replace_keys drops keys not given"
    );

    store.replace_keys(vec![]).await.expect("replace_keys");
    assert_eq!(store.load_keys().await.expect("load_keys"), vec![]);
}

// ---------------------------------------------------------------------------------------
// Audit

/// An audit event labelled by its correlation id, so results can be named in asserts.
fn event(
    tenant: &TenantId,
    label: &str,
    kind: AuditKind,
    user_id: Option<UserId>,
    session_id: Option<&SessionId>,
    activity_id: &str,
    at: UnixTime,
) -> AuditEvent {
    AuditEvent {
        id: 0,
        kind,
        tenant_id: tenant.clone(),
        user_id,
        session_id: session_id.cloned(),
        activity_id: activity_id.into(),
        correlation_id: Some(label.into()),
        ip: Some("198.51.100.4".into()),
        user_agent: Some("conformance/1.0".into()),
        reason: None,
        at,
        actor: None,
    }
}

fn labels(events: &[AuditEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.correlation_id.as_deref().unwrap_or("?"))
        .collect()
}

async fn audit<S: IdentityStore>(
    store: &S,
    tenant: &TenantId,
    query: AuditQuery,
) -> Vec<AuditEvent> {
    store.find_audit(tenant, &query).await.expect("find_audit")
}

pub async fn audit_ids_ascend_and_events_come_newest_first<S: IdentityStore>(store: S) {
    let t = tenant_a();
    let user = uuid::Uuid::new_v4();
    let sid = new_session_id();
    let mut e1 = event(
        &t,
        "e1",
        AuditKind::LoginSucceeded,
        Some(user),
        Some(&sid),
        "act-1",
        NOW,
    );
    e1.reason = Some("password".into());
    let e2 = event(
        &t,
        "e2",
        AuditKind::SessionCreated,
        Some(user),
        Some(&sid),
        "act-1",
        NOW,
    );
    // Appended later but stamped earlier: the order is the append order, not `at`.
    let e3 = AuditEvent {
        correlation_id: None,
        ip: None,
        user_agent: None,
        ..event(
            &t,
            "e3",
            AuditKind::LoginFailed,
            None,
            None,
            "act-2",
            NOW - 5,
        )
    };
    store
        .append_audit(vec![e1.clone(), e2.clone()])
        .await
        .expect("append_audit");
    store
        .append_audit(vec![])
        .await
        .expect("append_audit of nothing");
    store
        .append_audit(vec![e3.clone()])
        .await
        .expect("append_audit");

    let all = audit(
        &store,
        &t,
        AuditQuery {
            limit: ALL,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].correlation_id.as_deref(), Some("e1"));
    assert_eq!(all[1].correlation_id.as_deref(), Some("e2"));
    assert_eq!(all[0].correlation_id, None, "e3 comes first");
    assert!(
        all[0].id > all[1].id && all[1].id > all[2].id,
        "ids ascend in append order: {:?}",
        all.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    for (got, want) in all.iter().zip([e3, e2, e1]) {
        assert_eq!(
            AuditEvent {
                id: 0,
                ..got.clone()
            },
            want,
            "events round-trip"
        );
    }

    let next = event(
        &t,
        "e4",
        AuditKind::SessionExpired,
        None,
        None,
        "act-3",
        NOW,
    );
    store.append_audit(vec![next]).await.expect("append_audit");
    let newest = audit(
        &store,
        &t,
        AuditQuery {
            limit: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(labels(&newest), ["e4"]);
    assert!(newest[0].id > all[0].id, "a later append gets a larger id");
}

pub async fn audit_events_are_purged_by_age<S: IdentityStore>(store: S) {
    let mut events = Vec::new();
    for (tenant, at) in [
        (tenant_a(), NOW - 100),
        (tenant_b(), NOW - 50),
        (tenant_a(), NOW),
    ] {
        let activity = format!("act-{at}");
        events.push(event(
            &tenant,
            "purge",
            AuditKind::LoginSucceeded,
            None,
            None,
            &activity,
            at,
        ));
    }
    store.append_audit(events).await.expect("append_audit");
    assert_eq!(store.purge_audit(NOW - 50).await.expect("purge_audit"), 1);
    let q = AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    };
    let left: Vec<i64> = store
        .find_audit(&tenant_a(), &q)
        .await
        .expect("find_audit")
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(left, [NOW]);
    assert_eq!(
        store
            .find_audit(&tenant_b(), &q)
            .await
            .expect("find_audit")
            .len(),
        1
    );
    assert_eq!(store.purge_audit(NOW - 50).await.expect("purge_audit"), 0);
}

pub async fn audit_queries_filter_and_limit<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let (u1, u2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (s1, s2) = (new_session_id(), new_session_id());
    store
        .append_audit(vec![
            event(
                &a,
                "e1",
                AuditKind::LoginSucceeded,
                Some(u1),
                Some(&s1),
                "act-1",
                NOW,
            ),
            event(
                &a,
                "e2",
                AuditKind::SessionCreated,
                Some(u1),
                Some(&s1),
                "act-1",
                NOW,
            ),
            event(
                &b,
                "b1",
                AuditKind::LoginSucceeded,
                Some(u1),
                Some(&s1),
                "act-1",
                NOW + 5,
            ),
        ])
        .await
        .expect("append_audit");
    store
        .append_audit(vec![
            event(
                &a,
                "e3",
                AuditKind::SessionRefreshed,
                Some(u1),
                Some(&s2),
                "act-2",
                NOW + 10,
            ),
            event(
                &a,
                "e4",
                AuditKind::LoginFailed,
                Some(u2),
                None,
                "act-3",
                NOW + 20,
            ),
            event(
                &a,
                "e5",
                AuditKind::SuspiciousActivity,
                None,
                None,
                "act-4",
                NOW + 30,
            ),
        ])
        .await
        .expect("append_audit");

    let q = || AuditQuery {
        limit: ALL,
        ..Default::default()
    };
    let cases: Vec<(&str, TenantId, AuditQuery, Vec<&str>)> = vec![
        (
            "everything",
            a.clone(),
            q(),
            vec!["e5", "e4", "e3", "e2", "e1"],
        ),
        (
            "user",
            a.clone(),
            AuditQuery {
                user_id: Some(u1),
                ..q()
            },
            vec!["e3", "e2", "e1"],
        ),
        (
            "session",
            a.clone(),
            AuditQuery {
                session_id: Some(s1.clone()),
                ..q()
            },
            vec!["e2", "e1"],
        ),
        (
            "activity",
            a.clone(),
            AuditQuery {
                activity_id: Some("act-1".into()),
                ..q()
            },
            vec!["e2", "e1"],
        ),
        (
            "kind",
            a.clone(),
            AuditQuery {
                kind: Some(AuditKind::LoginFailed),
                ..q()
            },
            vec!["e4"],
        ),
        (
            "since (inclusive)",
            a.clone(),
            AuditQuery {
                since: Some(NOW + 10),
                ..q()
            },
            vec!["e5", "e4", "e3"],
        ),
        (
            "limit",
            a.clone(),
            AuditQuery { limit: 2, ..q() },
            vec!["e5", "e4"],
        ),
        (
            "user and kind",
            a.clone(),
            AuditQuery {
                user_id: Some(u1),
                kind: Some(AuditKind::SessionCreated),
                ..q()
            },
            vec!["e2"],
        ),
        (
            "user and since",
            a.clone(),
            AuditQuery {
                user_id: Some(u1),
                since: Some(NOW + 1),
                ..q()
            },
            vec!["e3"],
        ),
        (
            "session and limit",
            a.clone(),
            AuditQuery {
                session_id: Some(s1.clone()),
                limit: 1,
                ..q()
            },
            vec!["e2"],
        ),
        (
            "no match",
            a.clone(),
            AuditQuery {
                activity_id: Some("act-9".into()),
                ..q()
            },
            vec![],
        ),
        ("other tenant", b.clone(), q(), vec!["b1"]),
        (
            "other tenant, user",
            b.clone(),
            AuditQuery {
                user_id: Some(u1),
                ..q()
            },
            vec!["b1"],
        ),
        ("unknown tenant", tenant_id("tenant-c"), q(), vec![]),
    ];
    for (name, tenant, query, expected) in cases {
        let found = audit(&store, &tenant, query).await;
        assert_eq!(labels(&found), expected, "audit query: {name}");
    }
}

// ---------------------------------------------------------------------------------------
// Creating sessions and session limits

pub async fn sessions_are_created_and_read_per_tenant<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let user = uid();
    let s = session(&a, user, NOW, Some(1800));
    let evicted = store
        .create_session(
            with_refresh(&s, new_token()),
            SessionLimit::Unlimited,
            NOW,
            None,
        )
        .await
        .expect("create_session");
    assert!(evicted.is_empty());
    assert_eq!(
        store.get_session(&a, &s.id).await.expect("get_session"),
        Some(s.clone())
    );
    assert_eq!(
        store.get_session(&b, &s.id).await.expect("get_session"),
        None,
        "another tenant must not see the session"
    );
    assert_eq!(
        store
            .get_session(&a, &new_session_id())
            .await
            .expect("get_session"),
        None
    );

    let minimal = Session {
        auth_method: AuthMethod::Sso,
        idle_ttl: None,
        device: DeviceInfo::default(),
        ..session(&b, user, NOW + 1, None)
    };
    create(&store, &minimal).await;
    assert_eq!(get(&store, &minimal).await, minimal);
}

pub async fn session_creation_conflicts_write_nothing<S: SessionStore>(store: S) {
    let t = tenant_a();
    let (u1, u2) = (uid(), uid());
    let token = new_token();
    let first = session(&t, u1, NOW, None);
    store
        .create_session(
            with_refresh(&first, token),
            SessionLimit::Unlimited,
            NOW,
            None,
        )
        .await
        .expect("create_session");

    let same_id = Session {
        id: first.id.clone(),
        ..session(&t, u2, NOW + 1, None)
    };
    assert!(
        matches!(
            store
                .create_session(bare(&same_id), SessionLimit::Unlimited, NOW + 1, None)
                .await,
            Err(StoreError::Conflict)
        ),
        "a taken session id must conflict"
    );
    assert_eq!(
        get(&store, &first).await,
        first,
        "a conflicting create must not overwrite"
    );

    // A taken refresh token hash: the create fails whole, evictions included.
    let second = session(&t, u1, NOW + 2, None);
    assert!(
        matches!(
            store
                .create_session(
                    with_refresh(&second, token),
                    SessionLimit::EvictOldest(1),
                    NOW + 2,
                    None
                )
                .await,
            Err(StoreError::Conflict)
        ),
        "a taken refresh token hash must conflict"
    );
    assert_eq!(
        store
            .get_session(&t, &second.id)
            .await
            .expect("get_session"),
        None
    );
    assert_eq!(
        get(&store, &first).await.state,
        SessionState::Active,
        "a failed create must not evict"
    );
    assert!(
        matches!(
            rotate(&store, rotation(&t, token, new_token(), NOW + 3)).await,
            RotateOutcome::Rotated { session } if session.id == first.id
        ),
        "the taken token still belongs to the first session"
    );
}

pub async fn unlimited_sessions_evict_nothing<S: SessionStore>(store: S) {
    let t = tenant_a();
    let user = uid();
    let mut all = Vec::new();
    for i in 0..5 {
        let s = session(&t, user, NOW + i, None);
        create(&store, &s).await;
        all.push(s.id);
    }
    let active = find(
        &store,
        &t,
        Some(user),
        Some(StateFilter::Active),
        ALL,
        NOW + 10,
    )
    .await;
    assert_eq!(id_set(&active), id_set(&all));
}

pub async fn evict_oldest_one_displaces_the_previous_session<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let (user, other) = (uid(), uid());
    let bystanders = [session(&a, other, NOW, None), session(&b, user, NOW, None)];
    for s in &bystanders {
        create(&store, s).await;
    }

    let first = session(&a, user, NOW, None);
    let evicted = store
        .create_session(bare(&first), SessionLimit::EvictOldest(1), NOW, None)
        .await
        .expect("create_session");
    assert!(evicted.is_empty(), "the first session fits: {evicted:?}");

    let second = session(&a, user, NOW + 60, None);
    let evicted = store
        .create_session(bare(&second), SessionLimit::EvictOldest(1), NOW + 60, None)
        .await
        .expect("create_session");
    assert_eq!(evicted, vec![first.id.clone()]);
    assert_eq!(
        get(&store, &first).await.state,
        revoked(RevokeReason::Displaced, NOW + 60)
    );
    assert_eq!(get(&store, &second).await.state, SessionState::Active);
    for s in &bystanders {
        assert_eq!(
            get(&store, s).await.state,
            SessionState::Active,
            "another user's or tenant's sessions do not count"
        );
    }
}

pub async fn evict_oldest_two_displaces_only_the_oldest<S: SessionStore>(store: S) {
    let t = tenant_a();
    let user = uid();
    // Created out of order: eviction goes by creation time, not by insertion order.
    let newer = session(&t, user, NOW + 10, None);
    let older = session(&t, user, NOW, None);
    let limit = SessionLimit::EvictOldest(2);
    for s in [&newer, &older] {
        let evicted = store
            .create_session(bare(s), limit, NOW + 20, None)
            .await
            .expect("create_session");
        assert!(evicted.is_empty(), "two sessions fit under a limit of two");
    }
    let third = session(&t, user, NOW + 30, None);
    let evicted = store
        .create_session(bare(&third), limit, NOW + 30, None)
        .await
        .expect("create_session");
    assert_eq!(evicted, vec![older.id.clone()]);
    assert_eq!(
        get(&store, &older).await.state,
        revoked(RevokeReason::Displaced, NOW + 30)
    );
    assert_eq!(get(&store, &newer).await.state, SessionState::Active);
    assert_eq!(get(&store, &third).await.state, SessionState::Active);
    let active = find(
        &store,
        &t,
        Some(user),
        Some(StateFilter::Active),
        ALL,
        NOW + 30,
    )
    .await;
    assert_eq!(active, vec![third.id, newer.id]);
}

/// Sessions created within one second (the resolution of `created_at`) are evicted in the
/// order they were created, not by id: repeated, so a random order would fail.
pub async fn evict_oldest_breaks_ties_by_creation_order<S: SessionStore>(store: S) {
    let t = tenant_a();
    let limit = SessionLimit::EvictOldest(2);
    for round in 0..8 {
        let user = uid();
        let created: Vec<Session> = (0..4).map(|_| session(&t, user, NOW, None)).collect();
        for (i, s) in created.iter().enumerate() {
            let evicted = store
                .create_session(bare(s), limit, NOW, None)
                .await
                .expect("create_session");
            let expected = if i >= 2 {
                vec![created[i - 2].id.clone()]
            } else {
                Vec::new()
            };
            assert_eq!(
                evicted, expected,
                "round {round}: create {i} evicts the first created of the active ones"
            );
        }
        for (i, s) in created.iter().enumerate() {
            let expected = if i < 2 {
                revoked(RevokeReason::Displaced, NOW)
            } else {
                SessionState::Active
            };
            assert_eq!(get(&store, s).await.state, expected, "round {round}: {i}");
        }
        assert_eq!(
            find(&store, &t, Some(user), None, ALL, NOW).await,
            created
                .iter()
                .rev()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>(),
            "round {round}: the user's sessions, newest created first"
        );
    }
}

pub async fn reject_at_the_limit_writes_nothing<S: SessionStore>(store: S) {
    let t = tenant_a();
    let (user, other) = (uid(), uid());
    let first = session(&t, user, NOW, None);
    let evicted = store
        .create_session(bare(&first), SessionLimit::Reject(1), NOW, None)
        .await
        .expect("create_session");
    assert!(evicted.is_empty());

    let token = new_token();
    let second = session(&t, user, NOW + 1, None);
    assert!(
        matches!(
            store
                .create_session(
                    with_refresh(&second, token),
                    SessionLimit::Reject(1),
                    NOW + 1,
                    None
                )
                .await,
            Err(StoreError::LimitReached)
        ),
        "a full user must be rejected"
    );
    assert_eq!(
        store
            .get_session(&t, &second.id)
            .await
            .expect("get_session"),
        None
    );
    assert_eq!(
        rotate(&store, rotation(&t, token, new_token(), NOW + 2)).await,
        RotateOutcome::Invalid,
        "a rejected session's refresh token must not be stored"
    );
    assert_eq!(get(&store, &first).await.state, SessionState::Active);

    let others = session(&t, other, NOW + 3, None);
    store
        .create_session(bare(&others), SessionLimit::Reject(1), NOW + 3, None)
        .await
        .expect("another user has room of their own");
}

pub async fn limits_count_only_sessions_active_now<S: SessionStore>(store: S) {
    let t = tenant_a();
    let user = uid();
    let idle = session(&t, user, NOW, Some(60));
    let gone = session(&t, user, NOW, None);
    let old = Session {
        absolute_expires_at: NOW + 100,
        ..session(&t, user, NOW, None)
    };
    for s in [&idle, &gone, &old] {
        create(&store, s).await;
    }
    store
        .revoke_session(&t, &gone.id, RevokeReason::Logout, NOW + 1, None)
        .await
        .expect("revoke_session")
        .expect("revoked");

    let now = NOW + 500;
    let fresh = session(&t, user, now, None);
    let evicted = store
        .create_session(bare(&fresh), SessionLimit::Reject(1), now, None)
        .await
        .expect("timed-out and revoked sessions must not count against the limit");
    assert!(evicted.is_empty());

    let newest = session(&t, user, now + 1, None);
    let evicted = store
        .create_session(bare(&newest), SessionLimit::EvictOldest(1), now + 1, None)
        .await
        .expect("create_session");
    assert_eq!(
        evicted,
        vec![fresh.id.clone()],
        "only the active session is evicted"
    );
    assert_eq!(get(&store, &idle).await.state, SessionState::Active);
    assert_eq!(get(&store, &old).await.state, SessionState::Active);
    assert_eq!(
        get(&store, &gone).await.state,
        revoked(RevokeReason::Logout, NOW + 1)
    );
}

// ---------------------------------------------------------------------------------------
// Activity and timeouts

pub async fn touch_moves_last_seen_forward_on_active_sessions_only<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let user = uid();
    let s = session(&a, user, NOW, Some(600));
    create(&store, &s).await;

    store
        .touch_session(&a, &s.id, NOW + 100)
        .await
        .expect("touch");
    assert_eq!(get(&store, &s).await.last_seen_at, NOW + 100);
    store
        .touch_session(&a, &s.id, NOW + 50)
        .await
        .expect("touch");
    assert_eq!(
        get(&store, &s).await.last_seen_at,
        NOW + 100,
        "never backwards"
    );
    store
        .touch_session(&b, &s.id, NOW + 200)
        .await
        .expect("touch");
    assert_eq!(
        get(&store, &s).await.last_seen_at,
        NOW + 100,
        "not from another tenant"
    );
    store
        .touch_session(&a, &new_session_id(), NOW + 200)
        .await
        .expect("touching an unknown session is not an error");

    // Idle since NOW + 100: timed out at NOW + 700, and a touch must not resurrect it.
    store
        .touch_session(&a, &s.id, NOW + 700)
        .await
        .expect("touch");
    let after = get(&store, &s).await;
    assert_eq!(
        after.last_seen_at,
        NOW + 100,
        "a timed-out session is not touched"
    );
    assert_eq!(after.status_at(NOW + 700), SessionStatus::Expired);

    let r = session(&a, user, NOW, Some(600));
    create(&store, &r).await;
    store
        .revoke_session(&a, &r.id, RevokeReason::Logout, NOW + 10, None)
        .await
        .expect("revoke_session");
    store
        .touch_session(&a, &r.id, NOW + 20)
        .await
        .expect("touch");
    let after = get(&store, &r).await;
    assert_eq!(after.last_seen_at, NOW, "a revoked session is not touched");
    assert_eq!(after.state, revoked(RevokeReason::Logout, NOW + 10));

    // A session without idle timeout is touched until its absolute expiry.
    let long = session(&a, user, NOW, None);
    create(&store, &long).await;
    store
        .touch_session(&a, &long.id, NOW + DAY - 1)
        .await
        .expect("touch");
    assert_eq!(get(&store, &long).await.last_seen_at, NOW + DAY - 1);
    store
        .touch_session(&a, &long.id, NOW + DAY)
        .await
        .expect("touch");
    assert_eq!(get(&store, &long).await.last_seen_at, NOW + DAY - 1);
}

pub async fn idle_timeout_follows_last_seen<S: SessionStore>(store: S) {
    let t = tenant_a();
    let s = session(&t, uid(), NOW, Some(100));
    create(&store, &s).await;
    let stored = get(&store, &s).await;
    assert_eq!(stored.status_at(NOW + 99), SessionStatus::Active);
    assert_eq!(stored.status_at(NOW + 100), SessionStatus::Expired);

    store
        .touch_session(&t, &s.id, NOW + 50)
        .await
        .expect("touch");
    let stored = get(&store, &s).await;
    assert_eq!(stored.idle_expires_at(), Some(NOW + 150));
    assert_eq!(stored.status_at(NOW + 120), SessionStatus::Active);
    assert_eq!(stored.status_at(NOW + 150), SessionStatus::Expired);
    assert_eq!(
        find(&store, &t, None, Some(StateFilter::Active), ALL, NOW + 149).await,
        vec![s.id.clone()]
    );
    assert_eq!(
        find(&store, &t, None, Some(StateFilter::Expired), ALL, NOW + 150).await,
        vec![s.id.clone()],
        "the store's own view of activity agrees with status_at"
    );
}

/// A re-authentication moves `auth_time` (and `last_seen_at`) of an active session to `now`,
/// in one step; on a session that is not active it writes nothing.
pub async fn reauthentication_moves_auth_time_on_active_sessions_only<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let user = uid();
    // Stored as given: here before `created_at`, as an SSO login's may be.
    let s = Session {
        auth_time: NOW - 30,
        ..session(&a, user, NOW, Some(600))
    };
    let t0 = new_token();
    store
        .create_session(with_refresh(&s, t0), SessionLimit::Unlimited, NOW, None)
        .await
        .expect("create_session");
    assert_eq!(get(&store, &s).await, s, "auth_time round-trips");
    let plain = session(&a, user, NOW, None);
    create(&store, &plain).await;
    assert_eq!(get(&store, &plain).await.auth_time, NOW);

    let now = NOW + 100;
    let expected = Session {
        auth_time: now,
        last_seen_at: now,
        ..s.clone()
    };
    assert_eq!(
        store
            .reauthenticate(&a, &s.id, now)
            .await
            .expect("reauthenticate"),
        Some(expected.clone())
    );
    assert_eq!(get(&store, &s).await, expected, "get_session agrees");
    let listed = store
        .find_sessions(
            &a,
            &SessionQuery {
                user_id: Some(user),
                state: None,
                limit: ALL,
                before: None,
            },
            now,
        )
        .await
        .expect("find_sessions");
    assert!(listed.contains(&expected), "listings agree: {listed:?}");

    // Not another tenant's, not an unknown session: nothing written.
    for (tenant, id) in [(&b, &s.id), (&a, &new_session_id())] {
        assert_eq!(
            store
                .reauthenticate(tenant, id, now + 10)
                .await
                .expect("reauthenticate"),
            None
        );
    }
    assert_eq!(get(&store, &s).await, expected, "nothing changed");

    // A re-authentication is activity: the idle timeout runs from it, and later tokens of
    // the session carry the new auth_time.
    let RotateOutcome::Rotated { session: rotated } =
        rotate(&store, rotation(&a, t0, new_token(), now + 599)).await
    else {
        panic!("re-authenticated at {now}: still active 599 s later");
    };
    assert_eq!(rotated.auth_time, now, "a rotation keeps auth_time");
    assert_eq!(rotated.last_seen_at, now + 599);

    // Idle since now + 599: timed out at now + 1199.
    let before = get(&store, &s).await;
    assert_eq!(
        store
            .reauthenticate(&a, &s.id, now + 1199)
            .await
            .expect("reauthenticate"),
        None,
        "an idle-timed-out session is not re-authenticated"
    );
    assert_eq!(get(&store, &s).await, before, "nothing changed");

    // Revoked: nothing written.
    let r = session(&a, user, NOW, None);
    create(&store, &r).await;
    let revoked_r = store
        .revoke_session(&a, &r.id, RevokeReason::Logout, NOW + 10, None)
        .await
        .expect("revoke_session")
        .expect("revoked");
    assert_eq!(
        store
            .reauthenticate(&a, &r.id, NOW + 20)
            .await
            .expect("reauthenticate"),
        None,
        "a revoked session is not re-authenticated"
    );
    assert_eq!(get(&store, &r).await, revoked_r, "nothing changed");

    // Past the absolute expiry: nothing written, even without an idle timeout.
    let last = NOW + DAY - 1;
    let reauthed = store
        .reauthenticate(&a, &plain.id, last)
        .await
        .expect("reauthenticate")
        .expect("active until just before its absolute expiry");
    assert_eq!((reauthed.auth_time, reauthed.last_seen_at), (last, last));
    assert_eq!(
        reauthed.absolute_expires_at,
        NOW + DAY,
        "the absolute expiry stays"
    );
    assert_eq!(
        store
            .reauthenticate(&a, &plain.id, NOW + DAY)
            .await
            .expect("reauthenticate"),
        None,
        "an absolutely expired session is not re-authenticated"
    );
    assert_eq!(get(&store, &plain).await, reauthed, "nothing changed");
}

// ---------------------------------------------------------------------------------------
// Refresh rotation

/// A session of tenant A with refresh token `token`, no idle timeout.
async fn refreshable<S: SessionStore>(
    store: &S,
    token: TokenHash,
    idle_ttl: Option<u32>,
) -> Session {
    let s = session(&tenant_a(), uid(), NOW, idle_ttl);
    store
        .create_session(with_refresh(&s, token), SessionLimit::Unlimited, NOW, None)
        .await
        .expect("create_session");
    s
}

pub async fn rotation_rotates_and_the_successor_is_current<S: SessionStore>(store: S) {
    let t = tenant_a();
    let (t0, t1, t2) = (new_token(), new_token(), new_token());
    let s = refreshable(&store, t0, Some(600)).await;

    let RotateOutcome::Rotated { session } = rotate(&store, rotation(&t, t0, t1, NOW + 30)).await
    else {
        panic!("a current token must rotate");
    };
    assert_eq!(session.id, s.id);
    assert_eq!(
        session.last_seen_at,
        NOW + 30,
        "rotation counts as activity"
    );
    assert_eq!(session.state, SessionState::Active);
    assert_eq!(get(&store, &s).await, session);

    // The successor is current, and keeps the session alive past the first idle deadline.
    let RotateOutcome::Rotated { session } = rotate(&store, rotation(&t, t1, t2, NOW + 620)).await
    else {
        panic!("the successor must rotate");
    };
    assert_eq!(session.last_seen_at, NOW + 620);
    assert_eq!(get(&store, &s).await.last_seen_at, NOW + 620);
}

pub async fn active_sessions_are_counted<S: SessionStore>(store: S) {
    assert_eq!(store.count_active_sessions(NOW).await.expect("count"), 0);
    let a = refreshable(&store, new_token(), Some(600)).await;
    refreshable(&store, new_token(), None).await;
    refreshable(&store, new_token(), None).await;
    assert_eq!(store.count_active_sessions(NOW).await.expect("count"), 3);
    store
        .revoke_session(&a.tenant_id, &a.id, RevokeReason::Logout, NOW, None)
        .await
        .expect("revoke");
    assert_eq!(store.count_active_sessions(NOW).await.expect("count"), 2);
    let b = refreshable(&store, new_token(), Some(600)).await;
    assert_eq!(
        store.count_active_sessions(NOW + 599).await.expect("count"),
        3
    );
    assert_eq!(
        store.count_active_sessions(NOW + 600).await.expect("count"),
        2,
        "idle timed out"
    );
    let _ = b;
}

pub async fn refresh_records_are_read_by_hash<S: SessionStore>(store: S) {
    let t = tenant_a();
    let (t0, t1) = (new_token(), new_token());
    let s = refreshable(&store, t0, None).await;
    let current = store
        .get_refresh(&t0)
        .await
        .expect("get_refresh")
        .expect("stored");
    assert_eq!(
        (current.session_id.clone(), current.tenant_id.clone()),
        (s.id.clone(), t.clone())
    );
    assert!(current.rotated.is_none());
    rotate(&store, rotation(&t, t0, t1, NOW + 1)).await;
    let old = store
        .get_refresh(&t0)
        .await
        .expect("get_refresh")
        .expect("kept");
    assert_eq!(
        old.rotated.map(|r| (r.at, r.successor)),
        Some((NOW + 1, t1))
    );
    let new = store
        .get_refresh(&t1)
        .await
        .expect("get_refresh")
        .expect("stored");
    assert_eq!(new.session_id, s.id);
    assert!(new.rotated.is_none());
    assert!(
        store
            .get_refresh(&new_token())
            .await
            .expect("get_refresh")
            .is_none()
    );
}

pub async fn replay_within_grace_returns_the_same_successor<S: SessionStore>(store: S) {
    let t = tenant_a();
    let (t0, t1) = (new_token(), new_token());
    let s = refreshable(&store, t0, None).await;
    let rotated_at = NOW + 5;
    assert!(matches!(
        rotate(&store, rotation(&t, t0, t1, rotated_at)).await,
        RotateOutcome::Rotated { .. }
    ));

    let late_successor = new_token();
    for (now, successor) in [
        (rotated_at, new_token()),
        (rotated_at + i64::from(GRACE) - 1, late_successor),
    ] {
        match rotate(&store, rotation(&t, t0, successor, now)).await {
            RotateOutcome::Replayed {
                session,
                sealed_successor,
            } => {
                assert_eq!(session.id, s.id);
                assert_eq!(session.state, SessionState::Active);
                assert_eq!(
                    sealed_successor,
                    sealed(&t1),
                    "the first successor, sealed as given"
                );
            }
            other => panic!("a replay within grace must be Replayed, got {other:?}"),
        }
    }
    assert_eq!(
        rotate(
            &store,
            rotation(&t, late_successor, new_token(), rotated_at + 11)
        )
        .await,
        RotateOutcome::Invalid,
        "a replay must not store the successor it was offered"
    );
    assert!(
        matches!(
            rotate(&store, rotation(&t, t1, new_token(), rotated_at + 12)).await,
            RotateOutcome::Rotated { .. }
        ),
        "the first successor is still current after replays"
    );
    assert_eq!(get(&store, &s).await.state, SessionState::Active);
}

pub async fn reuse_outside_grace_revokes_the_session<S: SessionStore>(store: S) {
    let t = tenant_a();
    let (t0, t1) = (new_token(), new_token());
    let s = refreshable(&store, t0, None).await;
    let rotated_at = NOW + 5;
    assert!(matches!(
        rotate(&store, rotation(&t, t0, t1, rotated_at)).await,
        RotateOutcome::Rotated { .. }
    ));

    let late = rotated_at + i64::from(GRACE);
    match rotate(&store, rotation(&t, t0, new_token(), late)).await {
        RotateOutcome::Reused { session, revoked } => {
            assert!(revoked, "this call revoked the session");
            assert_eq!(session.id, s.id);
            assert_eq!(
                session.state,
                SessionState::Revoked {
                    reason: RevokeReason::ReuseDetected,
                    at: late
                }
            );
        }
        other => panic!("a reuse outside grace must be Reused, got {other:?}"),
    }
    assert_eq!(
        get(&store, &s).await.state,
        revoked(RevokeReason::ReuseDetected, late)
    );

    // The session is gone for every token of it: the current one and the reused one.
    for presented in [t1, t0] {
        match rotate(&store, rotation(&t, presented, new_token(), late + 1)).await {
            RotateOutcome::SessionInactive { session } => {
                assert_eq!(session.state, revoked(RevokeReason::ReuseDetected, late));
            }
            other => panic!("a token of a revoked session must be SessionInactive, got {other:?}"),
        }
    }
}

pub async fn reuse_of_a_two_generations_old_token_within_grace<S: SessionStore>(store: S) {
    let t = tenant_a();
    let (t0, t1, t2) = (new_token(), new_token(), new_token());
    let s = refreshable(&store, t0, None).await;
    for (presented, successor, now) in [(t0, t1, NOW + 1), (t1, t2, NOW + 2)] {
        assert!(matches!(
            rotate(&store, rotation(&t, presented, successor, now)).await,
            RotateOutcome::Rotated { .. }
        ));
    }
    match rotate(&store, rotation(&t, t0, new_token(), NOW + 3)).await {
        RotateOutcome::Reused { session, revoked } => {
            assert!(revoked);
            assert_eq!(session.state, reuse_revoked(NOW + 3));
        }
        other => panic!("t0's successor is rotated: t0 must be Reused, got {other:?}"),
    }
    assert_eq!(get(&store, &s).await.state, reuse_revoked(NOW + 3));
}

fn reuse_revoked(at: UnixTime) -> SessionState {
    revoked(RevokeReason::ReuseDetected, at)
}

pub async fn rotation_rejects_unknown_foreign_and_expired_tokens<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    assert_eq!(
        rotate(&store, rotation(&a, new_token(), new_token(), NOW)).await,
        RotateOutcome::Invalid
    );

    let t0 = new_token();
    let s = refreshable(&store, t0, None).await;
    let stolen_successor = new_token();
    assert_eq!(
        rotate(&store, rotation(&b, t0, stolen_successor, NOW + 1)).await,
        RotateOutcome::Invalid,
        "another tenant's token"
    );
    assert_eq!(
        rotate(&store, rotation(&a, stolen_successor, new_token(), NOW + 2)).await,
        RotateOutcome::Invalid,
        "an invalid rotation stores nothing"
    );
    assert!(
        matches!(
            rotate(&store, rotation(&a, t0, new_token(), NOW + 3)).await,
            RotateOutcome::Rotated { session } if session.id == s.id
        ),
        "a foreign attempt must not consume the token"
    );

    // A current token past its own expiry, in a session that is still active.
    let short = new_token();
    let s2 = session(&a, uid(), NOW, None);
    let new = NewSession {
        session: s2.clone(),
        refresh: Some(NewRefreshToken {
            hash: short,
            expires_at: NOW + 100,
        }),
    };
    store
        .create_session(new, SessionLimit::Unlimited, NOW, None)
        .await
        .expect("create_session");
    assert_eq!(
        rotate(&store, rotation(&a, short, new_token(), NOW + 100)).await,
        RotateOutcome::Invalid,
        "an expired refresh token"
    );
    assert_eq!(get(&store, &s2).await.state, SessionState::Active);
    assert!(
        matches!(
            rotate(&store, rotation(&a, short, new_token(), NOW + 99)).await,
            RotateOutcome::Rotated { .. }
        ),
        "valid until just before its expiry"
    );
}

pub async fn rotation_on_an_inactive_session<S: SessionStore>(store: S) {
    let t = tenant_a();
    let t0 = new_token();
    let s = refreshable(&store, t0, None).await;
    store
        .revoke_session(&t, &s.id, RevokeReason::Logout, NOW + 5, None)
        .await
        .expect("revoke_session");
    let successor = new_token();
    match rotate(&store, rotation(&t, t0, successor, NOW + 6)).await {
        RotateOutcome::SessionInactive { session } => {
            assert_eq!(session.id, s.id);
            assert_eq!(session.state, revoked(RevokeReason::Logout, NOW + 5));
        }
        other => panic!("a revoked session's token must be SessionInactive, got {other:?}"),
    }
    assert_eq!(
        rotate(&store, rotation(&t, successor, new_token(), NOW + 7)).await,
        RotateOutcome::Invalid,
        "no successor is stored for an inactive session"
    );

    let t1 = new_token();
    let idle = refreshable(&store, t1, Some(60)).await;
    match rotate(&store, rotation(&t, t1, new_token(), NOW + 60)).await {
        RotateOutcome::SessionInactive { session } => {
            assert_eq!(session.id, idle.id);
            assert_eq!(session.status_at(NOW + 60), SessionStatus::Expired);
        }
        other => panic!("a timed-out session's token must be SessionInactive, got {other:?}"),
    }
    assert_eq!(
        get(&store, &idle).await.last_seen_at,
        NOW,
        "no rotation, no activity"
    );
}

// ---------------------------------------------------------------------------------------
// Revocation and expiry

pub async fn revoke_session_is_idempotent_and_tenant_scoped<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let s = session(&a, uid(), NOW, None);
    create(&store, &s).await;

    assert_eq!(
        store
            .revoke_session(&b, &s.id, RevokeReason::Admin, NOW + 1, None)
            .await
            .expect("revoke_session"),
        None,
        "another tenant cannot revoke"
    );
    assert_eq!(get(&store, &s).await.state, SessionState::Active);
    assert_eq!(
        store
            .revoke_session(&a, &new_session_id(), RevokeReason::Admin, NOW + 1, None)
            .await
            .expect("revoke_session"),
        None
    );

    let expected = Session {
        state: revoked(RevokeReason::Logout, NOW + 2),
        ..s.clone()
    };
    assert_eq!(
        store
            .revoke_session(&a, &s.id, RevokeReason::Logout, NOW + 2, None)
            .await
            .expect("revoke_session"),
        Some(expected.clone())
    );
    assert_eq!(
        store
            .revoke_session(&a, &s.id, RevokeReason::Admin, NOW + 3, None)
            .await
            .expect("revoke_session"),
        None,
        "a second revoke changes nothing"
    );
    assert_eq!(
        get(&store, &s).await,
        expected,
        "the first reason and time stay"
    );

    let idle = session(&a, uid(), NOW, Some(60));
    create(&store, &idle).await;
    assert_eq!(
        store
            .revoke_session(&a, &idle.id, RevokeReason::Logout, NOW + 60, None)
            .await
            .expect("revoke_session"),
        None,
        "a timed-out session is not revoked"
    );
}

pub async fn revoke_user_sessions_revokes_only_that_users_active_sessions<S: SessionStore>(
    store: S,
) {
    let (a, b) = (tenant_a(), tenant_b());
    let (user, other) = (uid(), uid());
    let mine: Vec<Session> = (0..3).map(|i| session(&a, user, NOW + i, None)).collect();
    let done = session(&a, user, NOW + 3, None);
    let idle = session(&a, user, NOW + 4, Some(60));
    let others = session(&a, other, NOW, None);
    let foreign = session(&b, user, NOW, None);
    for s in mine.iter().chain([&done, &idle, &others, &foreign]) {
        create(&store, s).await;
    }
    store
        .revoke_session(&a, &done.id, RevokeReason::Logout, NOW + 10, None)
        .await
        .expect("revoke_session");

    let now = NOW + 100;
    let keep = &mine[0].id;
    let revoked_now = store
        .revoke_user_sessions(
            &a,
            &user,
            RevokeReason::PasswordChanged,
            Some(keep),
            now,
            None,
        )
        .await
        .expect("revoke_user_sessions");
    assert_eq!(
        id_set(&ids(&revoked_now)),
        id_set([&mine[1].id, &mine[2].id])
    );
    for s in &revoked_now {
        assert_eq!(s.state, revoked(RevokeReason::PasswordChanged, now));
        assert_eq!(get(&store, s).await, *s);
    }
    assert_eq!(
        get(&store, &mine[0]).await.state,
        SessionState::Active,
        "kept"
    );
    assert_eq!(
        get(&store, &done).await.state,
        revoked(RevokeReason::Logout, NOW + 10)
    );
    assert_eq!(
        get(&store, &idle).await.state,
        SessionState::Active,
        "timed out: left alone"
    );
    assert_eq!(get(&store, &others).await.state, SessionState::Active);
    assert_eq!(get(&store, &foreign).await.state, SessionState::Active);

    let none = store
        .revoke_user_sessions(&b, &other, RevokeReason::Admin, None, now, None)
        .await
        .expect("revoke_user_sessions");
    assert!(
        none.is_empty(),
        "the other user has no sessions in tenant B"
    );
    assert_eq!(get(&store, &others).await.state, SessionState::Active);

    let rest = store
        .revoke_user_sessions(&a, &user, RevokeReason::LogoutAll, None, now + 1, None)
        .await
        .expect("revoke_user_sessions");
    assert_eq!(ids(&rest), vec![mine[0].id.clone()]);
    assert_eq!(
        get(&store, &mine[0]).await.state,
        revoked(RevokeReason::LogoutAll, now + 1)
    );
    assert!(
        store
            .revoke_user_sessions(&a, &user, RevokeReason::LogoutAll, None, now + 2, None)
            .await
            .expect("revoke_user_sessions")
            .is_empty(),
        "nothing left to revoke"
    );
    assert_eq!(get(&store, &foreign).await.state, SessionState::Active);
}

pub async fn mark_expired_records_a_timeout_once<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let user = uid();
    let idle = session(&a, user, NOW, Some(60));
    let absolute = session(&a, user, NOW, None);
    let gone = session(&a, user, NOW, Some(60));
    for s in [&idle, &absolute, &gone] {
        create(&store, s).await;
    }

    assert!(
        !store
            .mark_expired(&a, &idle.id, NOW + 59, None)
            .await
            .expect("mark_expired"),
        "not yet"
    );
    assert_eq!(get(&store, &idle).await.state, SessionState::Active);
    assert!(
        !store
            .mark_expired(&b, &idle.id, NOW + 60, None)
            .await
            .expect("mark_expired"),
        "not from another tenant"
    );
    assert_eq!(get(&store, &idle).await.state, SessionState::Active);
    assert!(
        store
            .mark_expired(&a, &idle.id, NOW + 60, None)
            .await
            .expect("mark_expired")
    );
    assert_eq!(
        get(&store, &idle).await.state,
        SessionState::Expired { at: NOW + 60 }
    );
    assert!(
        !store
            .mark_expired(&a, &idle.id, NOW + 61, None)
            .await
            .expect("mark_expired"),
        "only once"
    );
    assert_eq!(
        get(&store, &idle).await.state,
        SessionState::Expired { at: NOW + 60 }
    );

    assert!(
        !store
            .mark_expired(&a, &absolute.id, NOW + DAY - 1, None)
            .await
            .expect("mark_expired")
    );
    assert!(
        store
            .mark_expired(&a, &absolute.id, NOW + DAY, None)
            .await
            .expect("mark_expired")
    );

    store
        .revoke_session(&a, &gone.id, RevokeReason::Logout, NOW + 1, None)
        .await
        .expect("revoke_session");
    assert!(
        !store
            .mark_expired(&a, &gone.id, NOW + 120, None)
            .await
            .expect("mark_expired"),
        "a revoked session stays revoked"
    );
    assert_eq!(
        get(&store, &gone).await.state,
        revoked(RevokeReason::Logout, NOW + 1)
    );
    assert!(
        !store
            .mark_expired(&a, &new_session_id(), NOW, None)
            .await
            .expect("mark_expired")
    );
}

pub async fn find_sessions_filters_orders_and_limits<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let (u1, u2) = (uid(), uid());
    let s1 = session(&a, u1, NOW, None);
    let s2 = session(&a, u1, NOW + 10, None);
    let s3 = session(&a, u1, NOW + 20, Some(30));
    let s4 = session(&a, u1, NOW + 30, None);
    let s5 = session(&a, u1, NOW + 40, Some(30));
    let s6 = session(&a, u2, NOW + 50, None);
    let s7 = session(&b, u1, NOW + 60, None);
    for s in [&s4, &s1, &s6, &s2, &s7, &s5, &s3] {
        create(&store, s).await;
    }
    store
        .revoke_session(&a, &s2.id, RevokeReason::Admin, NOW + 15, None)
        .await
        .expect("revoke_session");
    assert!(
        store
            .mark_expired(&a, &s5.id, NOW + 90, None)
            .await
            .expect("mark_expired")
    );

    let now = NOW + 100;
    let id = |s: &Session| s.id.clone();
    let cases = [
        (
            "all",
            &a,
            None,
            None,
            ALL,
            vec![id(&s6), id(&s5), id(&s4), id(&s3), id(&s2), id(&s1)],
        ),
        (
            "user",
            &a,
            Some(u1),
            None,
            ALL,
            vec![id(&s5), id(&s4), id(&s3), id(&s2), id(&s1)],
        ),
        (
            "active",
            &a,
            Some(u1),
            Some(StateFilter::Active),
            ALL,
            vec![id(&s4), id(&s1)],
        ),
        (
            "revoked",
            &a,
            None,
            Some(StateFilter::Revoked),
            ALL,
            vec![id(&s2)],
        ),
        (
            "expired, stored or timed out",
            &a,
            Some(u1),
            Some(StateFilter::Expired),
            ALL,
            vec![id(&s5), id(&s3)],
        ),
        ("limit", &a, None, None, 2, vec![id(&s6), id(&s5)]),
        (
            "user, active, limit",
            &a,
            Some(u1),
            Some(StateFilter::Active),
            1,
            vec![id(&s4)],
        ),
        (
            "all active",
            &a,
            None,
            Some(StateFilter::Active),
            ALL,
            vec![id(&s6), id(&s4), id(&s1)],
        ),
        ("other user", &a, Some(u2), None, ALL, vec![id(&s6)]),
        ("other tenant", &b, None, None, ALL, vec![id(&s7)]),
        (
            "other tenant, revoked",
            &b,
            None,
            Some(StateFilter::Revoked),
            ALL,
            vec![],
        ),
    ];
    for (name, tenant, user, state, limit, expected) in cases {
        assert_eq!(
            find(&store, tenant, user, state, limit, now).await,
            expected,
            "find_sessions: {name}"
        );
    }
    assert_eq!(
        find(
            &store,
            &a,
            Some(u1),
            Some(StateFilter::Active),
            ALL,
            NOW + 45
        )
        .await,
        vec![id(&s4), id(&s3), id(&s1)],
        "activity is judged at the query's time"
    );
    let full = store
        .find_sessions(
            &a,
            &SessionQuery {
                user_id: Some(u2),
                state: None,
                limit: ALL,
                before: None,
            },
            now,
        )
        .await
        .expect("find_sessions");
    assert_eq!(full, vec![s6], "found sessions are complete");
}

/// Sessions with the same `created_at` are listed newest created first, for one user and
/// tenant-wide, and a limit keeps the newest created.
pub async fn listings_break_ties_by_creation_order<S: SessionStore>(store: S) {
    for round in 0..3 {
        let t = tenant_id(&format!("tenant-ties-{round}"));
        let users: Vec<UserId> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
        // An older session created last still lists after every newer one.
        let older = session(&t, users[1], NOW - 10, None);
        let mut created: Vec<Session> = Vec::new();
        for i in 0..9 {
            let s = session(&t, users[i % 3], NOW, None);
            create(&store, &s).await;
            created.push(s);
            // Two in a row of one user, too.
            if i % 4 == 0 {
                let s = session(&t, users[i % 3], NOW, None);
                create(&store, &s).await;
                created.push(s);
            }
        }
        create(&store, &older).await;
        let mut newest_first: Vec<SessionId> = created.iter().rev().map(|s| s.id.clone()).collect();
        newest_first.push(older.id.clone());
        let now = NOW + 5;
        assert_eq!(
            find(&store, &t, None, None, ALL, now).await,
            newest_first,
            "round {round}: the tenant's sessions"
        );
        assert_eq!(
            find(&store, &t, None, Some(StateFilter::Active), ALL, now).await,
            newest_first,
            "round {round}: the tenant's active sessions"
        );
        for limit in [1, 2, 5] {
            assert_eq!(
                find(&store, &t, None, None, limit, now).await,
                newest_first[..limit].to_vec(),
                "round {round}: the tenant's sessions, limit {limit}"
            );
            assert_eq!(
                pages(&store, &t, None, limit, now).await,
                newest_first,
                "round {round}: the tenant's sessions in pages of {limit}"
            );
        }
        for user in &users {
            let mut mine: Vec<SessionId> = created
                .iter()
                .rev()
                .filter(|s| &s.user_id == user)
                .map(|s| s.id.clone())
                .collect();
            if older.user_id == *user {
                mine.push(older.id.clone());
            }
            assert_eq!(
                find(&store, &t, Some(*user), None, ALL, now).await,
                mine,
                "round {round}: a user's sessions"
            );
            for limit in [1, 2] {
                assert_eq!(
                    find(
                        &store,
                        &t,
                        Some(*user),
                        Some(StateFilter::Active),
                        limit,
                        now
                    )
                    .await,
                    mine[..limit].to_vec(),
                    "round {round}: a user's active sessions, limit {limit}"
                );
                assert_eq!(
                    pages(&store, &t, Some(*user), limit, now).await,
                    mine,
                    "round {round}: a user's sessions in pages of {limit}"
                );
            }
        }
    }
}

pub async fn nonces_are_single_use_per_tenant_until_they_expire<S: SessionStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let consume = |t: TenantId, nonce: &'static str, expires_at: UnixTime, now: UnixTime| {
        let store = &store;
        async move {
            store
                .consume_nonce(&t, nonce, expires_at, now)
                .await
                .expect("consume_nonce")
        }
    };
    let exp = NOW + 60;

    assert!(consume(a.clone(), "jti-1", exp, NOW).await, "first use");
    assert!(!consume(a.clone(), "jti-1", exp, NOW).await, "a replay");
    assert!(
        !consume(a.clone(), "jti-1", exp + 600, NOW + 59).await,
        "a replay just before expiry, whatever expiry it claims"
    );
    assert!(
        consume(b.clone(), "jti-1", exp, NOW + 1).await,
        "the same nonce in another tenant is another nonce"
    );
    assert!(!consume(b.clone(), "jti-1", exp, NOW + 2).await);
    assert!(
        consume(a.clone(), "jti-2", exp, NOW + 2).await,
        "another nonce"
    );
    assert!(
        consume(a.clone(), "JTI-1", exp, NOW + 2).await,
        "nonces are compared exactly"
    );
    let long = NOW + 10_000;
    assert!(consume(a.clone(), "jti-long", long, NOW + 3).await);

    // Expired at `expires_at`: the nonce may be recorded again, and is then single-use again.
    assert!(
        consume(a.clone(), "jti-1", exp + 120, exp).await,
        "an expired nonce may be used again"
    );
    assert!(!consume(a.clone(), "jti-1", exp + 120, exp + 1).await);
    assert!(
        !consume(a.clone(), "jti-1", exp + 120, exp + 119).await,
        "the new record lasts until its own expiry"
    );
    assert!(
        consume(b.clone(), "jti-1", exp + 120, exp + 1).await,
        "the other tenant's record expired too"
    );
    assert!(
        consume(a.clone(), "jti-1", exp + 240, exp + 120).await,
        "and expires again"
    );
    // Purging expired records keeps the unexpired ones.
    assert!(
        !consume(a.clone(), "jti-long", long, exp + 200).await,
        "an unexpired nonce survives the purge of expired ones"
    );
    assert!(consume(a.clone(), "jti-long", long + 60, long).await);
}

pub async fn ping_answers<S: SessionStore>(store: S) {
    store.ping().await.expect("ping");
}

// ---------------------------------------------------------------------------------------
// Races

pub async fn concurrent_logins_respect_a_limit_of_one<S: SessionStore>(store: S) {
    let store = Arc::new(store);
    let t = tenant_a();
    let user = uid();
    let sessions: Vec<Session> = (0..20).map(|_| session(&t, user, NOW, None)).collect();
    let tasks: Vec<_> = sessions
        .iter()
        .map(|s| {
            let (store, new) = (store.clone(), with_refresh(s, new_token()));
            tokio::spawn(async move {
                store
                    .create_session(new, SessionLimit::EvictOldest(1), NOW, None)
                    .await
            })
        })
        .collect();
    let mut evicted = Vec::new();
    for task in tasks {
        evicted.extend(task.await.expect("task").expect("create_session"));
    }

    let active = find(&*store, &t, Some(user), Some(StateFilter::Active), ALL, NOW).await;
    assert_eq!(active.len(), 1, "exactly one session survives: {active:?}");
    assert_eq!(
        evicted.len(),
        19,
        "every other session was evicted once: {evicted:?}"
    );
    let evicted_set = id_set(&evicted);
    assert_eq!(evicted_set.len(), 19, "no session is evicted twice");
    assert!(!evicted_set.contains(&active[0]));
    for s in &sessions {
        let state = get(&*store, s).await.state;
        if s.id == active[0] {
            assert_eq!(state, SessionState::Active);
        } else {
            assert_eq!(state, revoked(RevokeReason::Displaced, NOW));
        }
    }
}

pub async fn concurrent_refreshes_rotate_once<S: SessionStore>(store: S) {
    let store = Arc::new(store);
    let t = tenant_a();
    let t0 = new_token();
    let s = refreshable(&*store, t0, None).await;
    let successors: Vec<TokenHash> = (0..10).map(|_| new_token()).collect();
    let tasks: Vec<_> = successors
        .iter()
        .map(|successor| {
            let (store, r) = (store.clone(), rotation(&t, t0, *successor, NOW + 1));
            tokio::spawn(async move { store.rotate_refresh(r, None).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("rotate_refresh"));
    }

    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, RotateOutcome::Rotated { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one rotation: {outcomes:?}");
    let winner = successors[winners[0]];
    for outcome in &outcomes {
        match outcome {
            RotateOutcome::Rotated { session } => assert_eq!(session.id, s.id),
            RotateOutcome::Replayed {
                sealed_successor, ..
            } => {
                assert_eq!(
                    *sealed_successor,
                    sealed(&winner),
                    "replays hand out the winner's token"
                );
            }
            // Within the grace window a raced copy of the token is a retry, never a reuse:
            // the sequential `replay_within_grace_returns_the_same_successor` says the same.
            other => panic!("a raced refresh within grace must be replayed, not {other:?}"),
        }
    }
    for (i, successor) in successors.iter().enumerate() {
        let outcome = rotate(&*store, rotation(&t, *successor, new_token(), NOW + 2)).await;
        if i == winners[0] {
            assert!(
                matches!(outcome, RotateOutcome::Rotated { .. }),
                "the winner's successor is current"
            );
        } else {
            assert_eq!(
                outcome,
                RotateOutcome::Invalid,
                "a loser's successor was never stored"
            );
        }
    }
}

pub async fn concurrent_nonce_consumption_succeeds_once<S: SessionStore>(store: S) {
    let store = Arc::new(store);
    let t = tenant_a();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move { store.consume_nonce(&t, "jti-raced", NOW + 60, NOW).await })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        if task.await.expect("task").expect("consume_nonce") {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1, "exactly one of 20 concurrent uses succeeds");
    assert!(
        !store
            .consume_nonce(&t, "jti-raced", NOW + 60, NOW + 1)
            .await
            .expect("consume_nonce"),
        "and the nonce stays used"
    );
}

pub async fn sessions_spread_over_routes_are_found_and_revoked<S: SessionStore>(store: S) {
    let t = tenant_a();
    // Users on many routes (many hash slots on a cluster), two sessions each.
    let users: Vec<UserId> = (0..24).map(|_| uuid::Uuid::new_v4()).collect();
    let mut all = Vec::new();
    for (i, u) in users.iter().enumerate() {
        for k in 0..2 {
            let s = session(&t, *u, NOW + (2 * i + k) as i64, None);
            create(&store, &s).await;
            all.push(s);
        }
    }
    let routes: BTreeSet<Route> = users.iter().map(Route::of_user).collect();
    assert!(routes.len() > 8, "the users spread over routes: {routes:?}");

    let listed = find(&store, &t, None, None, ALL, NOW + 100).await;
    let mut newest_first: Vec<&Session> = all.iter().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    assert_eq!(
        listed,
        newest_first
            .iter()
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store.count_active_sessions(NOW + 100).await.expect("count"),
        all.len() as u64
    );

    let victim = users[5];
    let revoked_now = store
        .revoke_user_sessions(&t, &victim, RevokeReason::LogoutAll, None, NOW + 101, None)
        .await
        .expect("revoke_user_sessions");
    assert_eq!(revoked_now.len(), 2);
    let active = find(&store, &t, None, Some(StateFilter::Active), ALL, NOW + 102).await;
    assert_eq!(active.len(), all.len() - 2);
    assert!(revoked_now.iter().all(|s| !active.contains(&s.id)));
    assert_eq!(
        find(&store, &t, None, Some(StateFilter::Revoked), ALL, NOW + 102).await,
        {
            let mut ids = ids(&revoked_now);
            ids.sort_by_key(|id| {
                std::cmp::Reverse(all.iter().find(|s| &s.id == id).map(|s| s.created_at))
            });
            ids
        }
    );
    let page = find(&store, &t, None, None, 5, NOW + 102).await;
    assert_eq!(page, listed[..5].to_vec(), "the limit keeps the newest");
}

/// Sweeps at `now` in batches of `batch` until a sweep returns fewer; every session returned
/// is recorded as expired at `now`.
async fn sweep<S: SessionStore>(store: &S, now: UnixTime, batch: usize) -> Vec<Session> {
    let mut all = Vec::new();
    for _ in 0..1_000 {
        let got = store
            .expire_sessions(now, batch)
            .await
            .expect("expire_sessions");
        assert!(got.len() <= batch, "{} > batch {batch}", got.len());
        let done = got.len() < batch;
        all.extend(got);
        if done {
            return all;
        }
    }
    panic!("the sweep never ends");
}

pub async fn expire_sessions_records_each_timeout_once<S: SessionStore>(store: S) {
    let store = Arc::new(store);
    let t = tenant_a();
    let at = NOW + 100;
    // Users on many routes (many hash slots on a cluster).
    let users: Vec<UserId> = (0..16).map(|_| uuid::Uuid::new_v4()).collect();
    let routes: BTreeSet<Route> = users.iter().map(Route::of_user).collect();
    assert!(routes.len() > 8, "the users spread over routes: {routes:?}");
    let (mut due, mut active, mut ended) = (Vec::new(), Vec::new(), Vec::new());
    for u in &users {
        // Idle timeout at NOW + 60; absolute expiry at NOW + 50.
        let idle = session(&t, *u, NOW, Some(60));
        let absolute = session(&t, *u, NOW + 50 - DAY, None);
        // Still active at `at`: a longer idle timeout, and a short one touched.
        let long = session(&t, *u, NOW, Some(600));
        let touched = session(&t, *u, NOW, Some(60));
        // Ended before: revoked, and a timeout already recorded.
        let gone = session(&t, *u, NOW, Some(60));
        let expired = session(&t, *u, NOW, Some(60));
        for s in [&idle, &absolute, &long, &touched, &gone, &expired] {
            create(&*store, s).await;
        }
        store
            .touch_session(&t, &touched.id, NOW + 50)
            .await
            .expect("touch");
        store
            .revoke_session(&t, &gone.id, RevokeReason::Logout, NOW + 1, None)
            .await
            .expect("revoke_session");
        assert!(
            store
                .mark_expired(&t, &expired.id, NOW + 70, None)
                .await
                .expect("mark_expired")
        );
        due.extend([idle, absolute]);
        active.extend([long, touched]);
        ended.push((gone, revoked(RevokeReason::Logout, NOW + 1)));
        ended.push((expired, SessionState::Expired { at: NOW + 70 }));
    }

    assert_eq!(
        store.expire_sessions(at, 0).await.expect("expire_sessions"),
        vec![],
        "a batch of 0 records nothing"
    );
    let swept = sweep(&*store, at, 3).await;
    assert_eq!(
        swept.len(),
        due.len(),
        "each timeout once: {:?}",
        ids(&swept)
    );
    assert_eq!(id_set(&ids(&swept)), id_set(&ids(&due)));
    for s in &swept {
        assert_eq!(s.state, SessionState::Expired { at }, "{:?}", s.id);
    }
    for s in &due {
        assert_eq!(get(&*store, s).await.state, SessionState::Expired { at });
    }
    for s in &active {
        assert_eq!(get(&*store, s).await.state, SessionState::Active);
    }
    for (s, state) in &ended {
        assert_eq!(&get(&*store, s).await.state, state);
    }
    assert_eq!(
        store.expire_sessions(at, 3).await.expect("expire_sessions"),
        vec![],
        "nothing left"
    );

    // Concurrent sweeps: together, each timeout once.
    let mut due = Vec::new();
    for u in &users {
        for k in 0..3 {
            let s = session(&t, *u, NOW + k, Some(60));
            create(&*store, &s).await;
            due.push(s);
        }
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { sweep(&*store, at, 5).await })
        })
        .collect();
    let mut swept = Vec::new();
    for task in tasks {
        swept.extend(task.await.expect("task"));
    }
    assert_eq!(
        swept.len(),
        due.len(),
        "each timeout once: {:?}",
        ids(&swept)
    );
    assert_eq!(id_set(&ids(&swept)), id_set(&ids(&due)));
    for s in &due {
        assert_eq!(get(&*store, s).await.state, SessionState::Expired { at });
    }
    for s in &active {
        assert_eq!(get(&*store, s).await.state, SessionState::Active);
    }
}

// ---------------------------------------------------------------------------------------
// Change log

/// Every partition's cursor at its current end.
async fn log_heads<S: ChangeLog>(store: &S) -> Vec<(usize, u64)> {
    let mut cursors: Vec<(usize, u64)> = (0..store.partitions()).map(|p| (p, 0)).collect();
    loop {
        let reads = store.read_log(&cursors, 1_000).await.expect("read_log");
        let mut moved = false;
        for (c, r) in cursors.iter_mut().zip(reads) {
            match r {
                LogRead::Entries(e) => {
                    if let Some(last) = e.last() {
                        c.1 = last.seq;
                        moved = true;
                    }
                }
                LogRead::Gone { head } => {
                    c.1 = head;
                    moved = true;
                }
            }
        }
        if !moved {
            return cursors;
        }
    }
}

/// The changes after `cursors`, advancing them; entries are numbered consecutively.
async fn log_since<S: ChangeLog>(store: &S, cursors: &mut [(usize, u64)]) -> Vec<Change> {
    let reads = store.read_log(cursors, 10_000).await.expect("read_log");
    let mut changes = Vec::new();
    for (c, r) in cursors.iter_mut().zip(reads) {
        let LogRead::Entries(entries) = r else {
            panic!("partition {} cannot resume after {}", c.0, c.1);
        };
        for e in entries {
            assert_eq!(
                e.seq,
                c.1 + 1,
                "partition {} is numbered consecutively",
                c.0
            );
            c.1 = e.seq;
            changes.push(e.change);
        }
    }
    changes
}

fn ended(s: &Session, reason: RevokeReason) -> Change {
    Change::SessionEnded {
        tenant: s.tenant_id.clone(),
        session: s.id.clone(),
        user: s.user_id,
        reason,
        auth_time: Some(s.auth_time),
    }
}

/// The `SessionEnded` entry of `s` re-authenticated at `auth_time`.
fn ended_reauthenticated(s: &Session, reason: RevokeReason, auth_time: UnixTime) -> Change {
    ended(
        &Session {
            auth_time,
            ..s.clone()
        },
        reason,
    )
}

/// The `SessionExpired` entry of `s` (with its `auth_time`), which timed out at `at`.
fn timed_out(s: &Session, idle: bool, at: UnixTime) -> Change {
    Change::SessionExpired {
        tenant: s.tenant_id.clone(),
        session: s.id.clone(),
        user: s.user_id,
        auth_time: s.auth_time,
        idle,
        timed_out_at: at,
    }
}

fn cut_off(tenant: &TenantId, user: UserId, before: UnixTime, reason: RevokeReason) -> Change {
    Change::UserSessionsEnded {
        tenant: tenant.clone(),
        user,
        before,
        reason,
    }
}

fn sorted(mut changes: Vec<Change>) -> Vec<String> {
    let mut v: Vec<String> = changes
        .drain(..)
        .map(|c| serde_json::to_string(&c).expect("change serializes"))
        .collect();
    v.sort();
    v
}

pub async fn session_changes_are_logged_and_the_hot_path_is_not<S: SessionStore + ChangeLog>(
    store: S,
) {
    let t = tenant_a();
    let mut cur = log_heads(&store).await;

    // Creating, touching and rotating log nothing: they invalidate nothing.
    let t0 = new_token();
    let s = refreshable(&store, t0, Some(600)).await;
    store
        .touch_session(&t, &s.id, NOW + 5)
        .await
        .expect("touch");
    let t1 = new_token();
    rotate(&store, rotation(&t, t0, t1, NOW + 6)).await;
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![],
        "the hot path logs nothing"
    );

    // Reuse detection ends the session.
    rotate(&store, rotation(&t, t0, new_token(), NOW + 100)).await;
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![ended(&s, RevokeReason::ReuseDetected)]
    );

    // A revocation, once; a repeat logs nothing.
    let user = uid();
    let (a, b, c) = (
        session(&t, user, NOW, None),
        session(&t, user, NOW + 1, None),
        session(&t, user, NOW + 2, None),
    );
    for x in [&a, &b, &c] {
        create(&store, x).await;
    }
    store
        .revoke_session(&t, &a.id, RevokeReason::Logout, NOW + 10, None)
        .await
        .expect("revoke");
    store
        .revoke_session(&t, &a.id, RevokeReason::Logout, NOW + 11, None)
        .await
        .expect("revoke");
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![ended(&a, RevokeReason::Logout)]
    );

    // All of a user's sessions: one entry each, then the user's cut-off.
    store
        .revoke_user_sessions(&t, &user, RevokeReason::LogoutAll, None, NOW + 12, None)
        .await
        .expect("revoke_user_sessions");
    let mut logged = log_since(&store, &mut cur).await;
    assert_eq!(
        logged.pop(),
        Some(cut_off(&t, user, NOW + 12, RevokeReason::LogoutAll))
    );
    assert_eq!(
        sorted(logged),
        sorted(vec![
            ended(&b, RevokeReason::LogoutAll),
            ended(&c, RevokeReason::LogoutAll)
        ])
    );

    // An eviction under a limit.
    let first = session(&t, user, NOW + 20, None);
    create(&store, &first).await;
    let second = session(&t, user, NOW + 21, None);
    store
        .create_session(bare(&second), SessionLimit::EvictOldest(1), NOW + 21, None)
        .await
        .expect("create_session");
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![ended(&first, RevokeReason::Displaced)]
    );
}

/// `revoke_user_sessions` without `keep` logs each session it ended (with its `auth_time`),
/// then one cut-off for the user; with `keep`, or with nothing to revoke, no cut-off.
pub async fn revoking_all_of_a_users_sessions_logs_a_cut_off<S: SessionStore + ChangeLog>(
    store: S,
) {
    let t = tenant_a();
    let user = uid();
    let mut cur = log_heads(&store).await;

    // Nothing to revoke: nothing logged.
    let none = store
        .revoke_user_sessions(&t, &user, RevokeReason::LogoutAll, None, NOW, None)
        .await
        .expect("revoke_user_sessions");
    assert!(none.is_empty());
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![],
        "nothing revoked, nothing logged"
    );

    // With `keep`: the others end, and there is no cut-off (the kept one lives on).
    let kept = session(&t, user, NOW, None);
    let other = session(&t, user, NOW + 1, None);
    for x in [&kept, &other] {
        create(&store, x).await;
    }
    store
        .revoke_user_sessions(
            &t,
            &user,
            RevokeReason::LogoutAll,
            Some(&kept.id),
            NOW + 5,
            None,
        )
        .await
        .expect("revoke_user_sessions");
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![ended(&other, RevokeReason::LogoutAll)],
        "with keep: no cut-off"
    );

    // Without `keep`: every active session ends (each entry with its `auth_time`), then
    // one cut-off at the call's `now`.
    let more: Vec<Session> = (0..3)
        .map(|i| session(&t, user, NOW + 10 + i, None))
        .collect();
    for s in &more {
        create(&store, s).await;
    }
    // Another user's session is not theirs to end.
    let stranger = session(&t, uid(), NOW + 10, None);
    create(&store, &stranger).await;
    let revoked = store
        .revoke_user_sessions(&t, &user, RevokeReason::Admin, None, NOW + 20, None)
        .await
        .expect("revoke_user_sessions");
    assert_eq!(revoked.len(), 4);
    let mut logged = log_since(&store, &mut cur).await;
    assert_eq!(
        logged.len(),
        5,
        "four sessions ended, one cut-off: {logged:?}"
    );
    assert_eq!(
        logged.pop(),
        Some(cut_off(&t, user, NOW + 20, RevokeReason::Admin)),
        "the cut-off comes after the sessions it covers"
    );
    for change in &logged {
        let Change::SessionEnded {
            session, auth_time, ..
        } = change
        else {
            panic!("a session's entry: {change:?}");
        };
        let s = [&kept]
            .into_iter()
            .chain(&more)
            .find(|s| &s.id == session)
            .expect("one of the user's sessions");
        assert_eq!(
            *auth_time,
            Some(s.auth_time),
            "each entry has its auth_time"
        );
    }
    let mut expected = vec![ended(&kept, RevokeReason::Admin)];
    expected.extend(more.iter().map(|s| ended(s, RevokeReason::Admin)));
    assert_eq!(sorted(logged), sorted(expected));

    // Again: nothing is left to revoke, so nothing is logged.
    store
        .revoke_user_sessions(&t, &user, RevokeReason::Admin, None, NOW + 21, None)
        .await
        .expect("revoke_user_sessions");
    assert_eq!(log_since(&store, &mut cur).await, vec![]);
}

/// Every `SessionEnded` entry carries the session's `auth_time` as it was when the session
/// ended: its `created_at`, or its latest re-authentication. A re-authentication itself
/// logs nothing.
pub async fn ended_sessions_log_their_auth_time<S: SessionStore + ChangeLog>(store: S) {
    let t = tenant_a();
    let user = uid();
    let mut cur = log_heads(&store).await;

    // One revocation: created at T, re-authenticated at T + 100, revoked at T + 200.
    let s = session(&t, user, NOW, None);
    let plain = session(&t, user, NOW + 1, None);
    for x in [&s, &plain] {
        create(&store, x).await;
    }
    reauthenticate(&store, &s, NOW + 100).await;
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![],
        "a re-authentication logs nothing"
    );
    for x in [&s, &plain] {
        store
            .revoke_session(&t, &x.id, RevokeReason::Logout, NOW + 200, None)
            .await
            .expect("revoke_session")
            .expect("revoked");
    }
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![
            ended_reauthenticated(&s, RevokeReason::Logout, NOW + 100),
            // Never re-authenticated: its created_at.
            ended_reauthenticated(&plain, RevokeReason::Logout, NOW + 1),
        ]
    );

    // All of a user's sessions, one of them re-authenticated.
    let (x, y) = (
        session(&t, user, NOW + 2, None),
        session(&t, user, NOW + 3, None),
    );
    for z in [&x, &y] {
        create(&store, z).await;
    }
    reauthenticate(&store, &x, NOW + 150).await;
    store
        .revoke_user_sessions(&t, &user, RevokeReason::LogoutAll, None, NOW + 250, None)
        .await
        .expect("revoke_user_sessions");
    let mut logged = log_since(&store, &mut cur).await;
    assert_eq!(
        logged.pop(),
        Some(cut_off(&t, user, NOW + 250, RevokeReason::LogoutAll))
    );
    assert_eq!(
        sorted(logged),
        sorted(vec![
            ended_reauthenticated(&x, RevokeReason::LogoutAll, NOW + 150),
            ended(&y, RevokeReason::LogoutAll),
        ])
    );

    // Reuse detection.
    let t0 = new_token();
    let r = refreshable(&store, t0, None).await;
    reauthenticate(&store, &r, NOW + 300).await;
    assert!(matches!(
        rotate(&store, rotation(&t, t0, new_token(), NOW + 301)).await,
        RotateOutcome::Rotated { .. }
    ));
    assert!(matches!(
        rotate(&store, rotation(&t, t0, new_token(), NOW + 400)).await,
        RotateOutcome::Reused { revoked: true, .. }
    ));
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![ended_reauthenticated(
            &r,
            RevokeReason::ReuseDetected,
            NOW + 300
        )]
    );

    // Displacement under a limit.
    let other = uid();
    let first = session(&t, other, NOW + 500, None);
    create(&store, &first).await;
    reauthenticate(&store, &first, NOW + 510).await;
    let second = session(&t, other, NOW + 520, None);
    let evicted = store
        .create_session(bare(&second), SessionLimit::EvictOldest(1), NOW + 520, None)
        .await
        .expect("create_session");
    assert_eq!(evicted, vec![first.id.clone()]);
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![ended_reauthenticated(
            &first,
            RevokeReason::Displaced,
            NOW + 510
        )]
    );
}

/// A recorded timeout, by `mark_expired` or by the sweep, logs one `SessionExpired` with the
/// session's `auth_time` and which timeout came first; a touch moves the idle timeout the
/// sweep goes by.
pub async fn timeouts_are_logged<S: SessionStore + ChangeLog>(store: S) {
    let t = tenant_a();
    let mut cur = log_heads(&store).await;

    // mark_expired: an idle timeout (after a re-authentication), then an absolute one.
    let idle = session(&t, uid(), NOW, Some(60));
    let absolute = session(&t, uid(), NOW, None);
    for s in [&idle, &absolute] {
        create(&store, s).await;
    }
    let idle = reauthenticate(&store, &idle, NOW + 10).await;
    assert_eq!(idle.auth_time, NOW + 10);
    assert!(
        !store
            .mark_expired(&t, &idle.id, NOW + 69, None)
            .await
            .expect("mark_expired")
    );
    assert!(
        store
            .mark_expired(&t, &idle.id, NOW + 70, None)
            .await
            .expect("mark_expired")
    );
    assert!(
        !store
            .mark_expired(&t, &idle.id, NOW + 71, None)
            .await
            .expect("mark_expired")
    );
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![timed_out(&idle, true, NOW + 70)]
    );
    assert!(
        store
            .mark_expired(&t, &absolute.id, NOW + DAY, None)
            .await
            .expect("mark_expired")
    );
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![timed_out(&absolute, false, absolute.absolute_expires_at)]
    );

    // The sweep: an absolute expiry at NOW + 100; an idle timeout at NOW + 60 moved to
    // NOW + 110 by a touch, so not swept before.
    let swept_idle = session(&t, uid(), NOW, Some(60));
    let swept_absolute = session(&t, uid(), NOW + 100 - DAY, None);
    for s in [&swept_idle, &swept_absolute] {
        create(&store, s).await;
    }
    store
        .touch_session(&t, &swept_idle.id, NOW + 50)
        .await
        .expect("touch");
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![],
        "a touch logs nothing"
    );
    let swept = store
        .expire_sessions(NOW + 105, ALL)
        .await
        .expect("expire_sessions");
    assert_eq!(ids(&swept), vec![swept_absolute.id.clone()]);
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![timed_out(&swept_absolute, false, NOW + 100)]
    );
    assert_eq!(
        get(&store, &swept_idle).await.state,
        SessionState::Active,
        "touched: not timed out yet"
    );
    let swept = store
        .expire_sessions(NOW + 110, ALL)
        .await
        .expect("expire_sessions");
    assert_eq!(ids(&swept), vec![swept_idle.id.clone()]);
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![timed_out(&swept_idle, true, NOW + 110)]
    );
    assert!(
        !store
            .mark_expired(&t, &swept_idle.id, NOW + 111, None)
            .await
            .expect("mark_expired"),
        "recorded once"
    );
    assert_eq!(
        store
            .expire_sessions(NOW + 2 * DAY, ALL)
            .await
            .expect("expire_sessions"),
        vec![]
    );
    assert_eq!(log_since(&store, &mut cur).await, vec![]);
}

pub async fn identity_changes_are_logged<S: IdentityStore + ChangeLog>(store: S) {
    let t = tenant_a();
    store.create_tenant(new_tenant(&t)).await.expect("tenant");
    let user = new_user(&t, Some("alice"), None);
    store.create_user(user.clone()).await.expect("user");
    let mut cur = log_heads(&store).await;

    store
        .set_tenant_policy(&t, PolicyOverrides::default())
        .await
        .expect("policy");
    store
        .set_password_hash(&t, &user.id, "h".into())
        .await
        .expect("password");
    store
        .set_user_status(&t, &user.id, UserStatus::Disabled)
        .await
        .expect("status");
    store.set_sso(&t, sso("aud", NOW)).await.expect("sso");
    store
        .create_partner_secret(partner_secret("ps1", &t, NOW))
        .await
        .expect("secret");
    store
        .delete_partner_secret(&t, "ps1")
        .await
        .expect("delete secret");
    store
        .create_client(service_client("c1", &t, "api"))
        .await
        .expect("client");
    store
        .replace_keys(vec![key("k1", KeyState::Signing, None)])
        .await
        .expect("keys");
    let user_changed = Change::UserChanged {
        tenant: t.clone(),
        user: user.id,
    };
    assert_eq!(
        log_since(&store, &mut cur).await,
        vec![
            Change::TenantChanged { tenant: t.clone() },
            user_changed.clone(),
            user_changed,
            Change::SsoChanged { tenant: t.clone() },
            Change::PartnerSecretChanged {
                secret_id: "ps1".into()
            },
            Change::PartnerSecretChanged {
                secret_id: "ps1".into()
            },
            Change::ClientChanged {
                client_id: "c1".into()
            },
            Change::KeyringChanged,
        ],
        "in commit order"
    );
    // Changes to nothing log nothing.
    let ghost = tenant_id("ghost");
    store
        .set_tenant_policy(&ghost, PolicyOverrides::default())
        .await
        .expect("policy");
    assert!(
        !store
            .set_user_status(&t, &uuid::Uuid::new_v4(), UserStatus::Active)
            .await
            .expect("status")
    );
    assert_eq!(log_since(&store, &mut cur).await, vec![]);
}

pub async fn purged_log_entries_are_gone_and_numbering_goes_on<S: SessionStore + ChangeLog>(
    store: S,
) {
    let t = tenant_a();
    let start = log_heads(&store).await;
    let user = uid();
    let sessions: Vec<Session> = (0..3).map(|i| session(&t, user, NOW + i, None)).collect();
    for s in &sessions {
        create(&store, s).await;
    }
    store
        .revoke_user_sessions(&t, &user, RevokeReason::Admin, None, NOW + 5, None)
        .await
        .expect("revoke");
    let mut cur = start.clone();
    assert_eq!(
        log_since(&store, &mut cur).await.len(),
        4,
        "three sessions ended, and the user's cut-off"
    );
    let route = ROUTE.index() % store.partitions();
    let (_, last) = cur[route];

    // Nothing is purged that is newer than `before`.
    assert_eq!(store.purge_log(0, 1_000).await.expect("purge"), 0);
    assert_eq!(log_since(&store, &mut start.clone()).await.len(), 4);

    // Everything written before the far future goes, in batches.
    let far = i64::from(u32::MAX);
    let mut purged = 0;
    loop {
        let n = store.purge_log(far, 2).await.expect("purge");
        assert!(n <= 2, "a batch is at most its size");
        if n == 0 {
            break;
        }
        purged += n;
    }
    assert!(purged >= 4);
    let read = store
        .read_log(&[(route, start[route].1)], 100)
        .await
        .expect("read_log");
    assert_eq!(
        read,
        vec![LogRead::Gone { head: last }],
        "a purged cursor is gone"
    );
    let read = store
        .read_log(&[(route, last)], 100)
        .await
        .expect("read_log");
    assert_eq!(
        read,
        vec![LogRead::Entries(vec![])],
        "the head still resumes"
    );
    let read = store
        .read_log(&[(route, last + 5)], 100)
        .await
        .expect("read_log");
    assert_eq!(
        read,
        vec![LogRead::Gone { head: last }],
        "a cursor past the head (the store went back) cannot resume"
    );

    let more = session(&t, user, NOW + 10, None);
    create(&store, &more).await;
    store
        .revoke_session(&t, &more.id, RevokeReason::Logout, NOW + 11, None)
        .await
        .expect("revoke");
    let read = store
        .read_log(&[(route, last)], 100)
        .await
        .expect("read_log");
    let LogRead::Entries(entries) = &read[0] else {
        panic!("the head resumes: {read:?}");
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, last + 1, "numbering goes on after a purge");
    assert_eq!(entries[0].change, ended(&more, RevokeReason::Logout));
}

pub async fn wait_hint_returns_by_its_deadline<S: SessionStore + ChangeLog>(store: S) {
    let started = std::time::Instant::now();
    let _ = store.wait_hint(std::time::Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "wait_hint must not hang past its deadline"
    );
}

pub async fn marks_are_swapped_only_from_the_expected_version<S: SessionStore + ChangeLog>(
    store: S,
) {
    let load = |name: &'static str| {
        let store = &store;
        async move { store.load_mark(name).await.expect("load_mark") }
    };
    let mark = |version: u64, body: &str| {
        Some(Mark {
            version,
            body: body.to_owned(),
        })
    };
    assert_eq!(load("events").await, None, "an unknown mark");
    assert_eq!(
        store
            .swap_mark("events", Some(1), "ghost")
            .await
            .expect("swap_mark"),
        None,
        "a missing mark has no version 1"
    );
    assert_eq!(load("events").await, None, "a failed swap writes nothing");

    assert_eq!(
        store
            .swap_mark("events", None, "first")
            .await
            .expect("swap_mark"),
        Some(1),
        "the first write is version 1"
    );
    assert_eq!(load("events").await, mark(1, "first"));
    assert_eq!(
        store
            .swap_mark("events", None, "again")
            .await
            .expect("swap_mark"),
        None,
        "the mark exists now"
    );
    assert_eq!(load("events").await, mark(1, "first"));

    let body = r#"{"owner":"node-2","until":1700000060,"cursor":[[0,42]]}"#;
    assert_eq!(
        store
            .swap_mark("events", Some(1), body)
            .await
            .expect("swap_mark"),
        Some(2)
    );
    assert_eq!(
        load("events").await,
        mark(2, body),
        "the body is kept as is"
    );
    assert_eq!(
        store
            .swap_mark("events", Some(1), "stale")
            .await
            .expect("swap_mark"),
        None,
        "a stale version fails"
    );
    assert_eq!(load("events").await, mark(2, body), "and leaves the body");

    // Names are independent.
    assert_eq!(load("other").await, None);
    assert_eq!(
        store.swap_mark("other", None, "").await.expect("swap_mark"),
        Some(1),
        "an empty body is a body"
    );
    assert_eq!(load("other").await, mark(1, ""));
    assert_eq!(load("events").await, mark(2, body));

    // Nodes racing for the same version (all load before any swaps): exactly one wins.
    let store = Arc::new(store);
    let loaded = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, loaded) = (store.clone(), loaded.clone());
            tokio::spawn(async move {
                let seen = store.load_mark("events").await.expect("load_mark");
                let version = seen.map(|m| m.version);
                loaded.wait().await;
                let won = store
                    .swap_mark("events", version, &format!("node-{i}"))
                    .await
                    .expect("swap_mark");
                (version, won)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (version, won) = t.await.expect("task");
        assert_eq!(version, Some(2), "every task loaded version 2");
        if let Some(v) = won {
            assert_eq!(v, 3, "a win from version 2 gives version 3");
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 8 swaps wins: {winners:?}");
    assert_eq!(
        store.load_mark("events").await.expect("load_mark"),
        mark(3, &format!("node-{}", winners[0])),
        "the winner's body is stored"
    );
}

// ---------------------------------------------------------------------------------------
// Shared counters

pub async fn counters_count_forget_and_reset<S: Counters>(store: S) {
    let key = format!("k:{}", uuid::Uuid::new_v4());
    let other = format!("k:{}", uuid::Uuid::new_v4());
    assert_eq!(
        store.peek(&key, 60, NOW).await.expect("peek"),
        Hits::default()
    );
    for n in 1..=3 {
        let h = store.hit(&key, 60, NOW + n).await.expect("hit");
        assert_eq!(
            h,
            Hits {
                count: n as u64,
                last: NOW + n
            }
        );
    }
    assert_eq!(
        store.peek(&key, 60, NOW + 10).await.expect("peek"),
        Hits {
            count: 3,
            last: NOW + 3
        }
    );
    assert_eq!(
        store.peek(&other, 60, NOW + 10).await.expect("peek").count,
        0,
        "per key"
    );
    // Forgotten once the latest hit is `forget_after` old.
    assert_eq!(store.peek(&key, 60, NOW + 63).await.expect("peek").count, 0);
    assert_eq!(
        store.hit(&key, 60, NOW + 63).await.expect("hit"),
        Hits {
            count: 1,
            last: NOW + 63
        },
        "a forgotten counter restarts"
    );
    store.hit(&key, 60, NOW + 64).await.expect("hit");
    store.reset(&key).await.expect("reset");
    assert_eq!(store.peek(&key, 60, NOW + 64).await.expect("peek").count, 0);
    assert_eq!(store.hit(&key, 60, NOW + 65).await.expect("hit").count, 1);
}

pub async fn concurrent_hits_are_all_counted<S: Counters>(store: S) {
    let store = Arc::new(store);
    let key = format!("k:{}", uuid::Uuid::new_v4());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.hit(&key, 600, NOW).await.expect("hit").count })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.expect("task"));
    }
    assert_eq!(
        seen,
        (1..=50).collect(),
        "every hit counted once, none lost"
    );
}

pub async fn keyrings_are_initialized_once<S: IdentityStore + ChangeLog>(store: S) {
    let store = Arc::new(store);
    // Nodes starting at once on an empty store: one keyring wins, and every node gets it.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mine = vec![key(&format!("k{i}"), KeyState::Signing, None)];
                store.init_keys(mine).await.expect("init_keys")
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    assert!(
        got.windows(2).all(|w| w[0] == w[1]),
        "every node got one keyring: {got:?}"
    );
    assert_eq!(store.load_keys().await.expect("load_keys"), got[0]);
    let later = vec![key("late", KeyState::Signing, None)];
    assert_eq!(store.init_keys(later).await.expect("init_keys"), got[0]);
}

// ---------------------------------------------------------------------------------------
// Listings for the console and the admin API

pub async fn tenants_are_listed_in_pages<S: IdentityStore>(store: S) {
    let names = ["t-c", "t-a", "T-b", "t-e", "t-d"];
    for n in names {
        store
            .create_tenant(new_tenant(&tenant_id(n)))
            .await
            .expect("create_tenant");
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    let all: Vec<String> = store
        .list_tenants(None, ALL)
        .await
        .expect("list_tenants")
        .into_iter()
        .map(|t| t.id.as_str().to_owned())
        .collect();
    assert_eq!(all, sorted, "all tenants, by id (byte order)");
    let mut paged = Vec::new();
    let mut after: Option<TenantId> = None;
    loop {
        let page = store
            .list_tenants(after.as_ref(), 2)
            .await
            .expect("list_tenants");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page.iter().map(|t| t.id.as_str().to_owned()));
    }
    assert_eq!(paged, sorted, "tenants in pages of two");
    let first = store.list_tenants(None, 1).await.expect("list_tenants");
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0],
        new_tenant(&tenant_id(sorted[0])),
        "a listed tenant is whole"
    );
}

pub async fn users_are_listed_searched_and_paged<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    for t in [&a, &b] {
        store
            .create_tenant(new_tenant(t))
            .await
            .expect("create_tenant");
    }
    let mut users = vec![
        new_user(&a, Some("alice"), None),
        new_user(&a, Some("Alicia.Keys"), None),
        new_user(&a, Some("bob"), Some("partner-ALI-7")),
        new_user(&a, None, Some("ext-9")),
        new_user(&a, Some("carol"), None),
    ];
    for u in &users {
        store.create_user(u.clone()).await.expect("create_user");
    }
    store
        .create_user(new_user(&b, Some("alina"), None))
        .await
        .expect("create_user");
    users.sort_by_key(|u| u.id);
    let ids = |v: &[User]| v.iter().map(|u| u.id).collect::<Vec<_>>();
    let list = |search: Option<&str>, after: Option<UserId>, limit: usize| {
        let store = &store;
        let a = a.clone();
        let q = UserQuery {
            search: search.map(str::to_owned),
            after,
            limit,
        };
        async move { store.list_users(&a, &q).await.expect("list_users") }
    };
    let all = list(None, None, ALL).await;
    assert_eq!(ids(&all), ids(&users), "all of tenant a's users, by id");
    assert_eq!(all, users, "listed users are whole");
    // Search: username, external id or customer id, any case; never another tenant's.
    let ali: Vec<UserId> = users
        .iter()
        .filter(|u| {
            u.username
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains("ali"))
                || u.external_id
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase().contains("ali"))
        })
        .map(|u| u.id)
        .collect();
    assert_eq!(ali.len(), 3);
    assert_eq!(
        ids(&list(Some("aLi"), None, ALL).await),
        ali,
        "search 'aLi'"
    );
    assert_eq!(
        ids(&list(Some("ext-9"), None, ALL).await).len(),
        1,
        "search by external id"
    );
    let customer = users[0].customer_id.to_string();
    assert_eq!(
        ids(&list(Some(&customer[..13]), None, ALL).await),
        vec![users[0].id],
        "search by customer id"
    );
    assert!(list(Some("zzz"), None, ALL).await.is_empty(), "no match");
    assert!(
        list(Some("%"), None, ALL).await.is_empty(),
        "% is a character, not a pattern"
    );
    assert!(
        list(Some("_"), None, ALL).await.is_empty(),
        "_ is a character, not a pattern"
    );
    // Pages.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(None, after, 2).await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(ids(&page));
    }
    assert_eq!(paged, ids(&users), "users in pages of two");
    let first = list(Some("ali"), None, 1).await;
    let rest = list(Some("ali"), Some(first[0].id), ALL).await;
    assert_eq!([ids(&first), ids(&rest)].concat(), ali, "a search in pages");
}

pub async fn operator_roles_are_set_and_cleared<S: IdentityStore>(store: S) {
    let a = tenant_a();
    store
        .create_tenant(new_tenant(&a))
        .await
        .expect("create_tenant");
    let mut op = new_user(&a, Some("op"), None);
    op.role = Some(Role::Viewer);
    store.create_user(op.clone()).await.expect("create_user");
    let get = || async {
        store
            .get_user(&a, &op.id)
            .await
            .expect("get_user")
            .expect("the user")
    };
    assert_eq!(get().await.role, Some(Role::Viewer), "created with a role");
    for role in [Some(Role::Admin), Some(Role::Operator), None] {
        assert!(
            store
                .set_user_role(&a, &op.id, role)
                .await
                .expect("set_user_role")
        );
        assert_eq!(get().await.role, role);
        let found = store
            .find_user_by_username(&a, "op")
            .await
            .expect("find_user_by_username")
            .expect("the user");
        assert_eq!(found.role, role, "found by username with its role");
    }
    assert!(
        !store
            .set_user_role(&a, &uuid::Uuid::new_v4(), Some(Role::Admin))
            .await
            .expect("set_user_role"),
        "no such user"
    );
    assert!(
        !store
            .set_user_role(&tenant_b(), &op.id, Some(Role::Admin))
            .await
            .expect("set_user_role"),
        "another tenant's user"
    );
    assert_eq!(get().await.role, None);
}

pub async fn partner_secrets_are_listed_per_tenant<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    for t in [&a, &b] {
        store
            .create_tenant(new_tenant(t))
            .await
            .expect("create_tenant");
    }
    let secret = |t: &TenantId, id: &str, n: u8| PartnerSecret {
        secret_id: id.into(),
        tenant_id: t.clone(),
        hash: TokenHash([n; 32]),
        created_at: NOW + i64::from(n),
    };
    for s in [
        secret(&a, "ps-2", 2),
        secret(&b, "ps-3", 3),
        secret(&a, "ps-1", 1),
    ] {
        store
            .create_partner_secret(s)
            .await
            .expect("create_partner_secret");
    }
    assert_eq!(
        store
            .list_partner_secrets(&a)
            .await
            .expect("list_partner_secrets"),
        vec![secret(&a, "ps-1", 1), secret(&a, "ps-2", 2)]
    );
    assert!(
        store
            .delete_partner_secret(&a, "ps-1")
            .await
            .expect("delete")
    );
    assert_eq!(
        store
            .list_partner_secrets(&a)
            .await
            .expect("list_partner_secrets"),
        vec![secret(&a, "ps-2", 2)]
    );
    assert!(
        store
            .list_partner_secrets(&tenant_id("tenant-none"))
            .await
            .expect("list_partner_secrets")
            .is_empty()
    );
}

pub async fn audit_is_paged_by_id_and_time<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let mut evs = Vec::new();
    for i in 0..7 {
        let mut e = event(
            &a,
            &format!("e{i}"),
            AuditKind::LoginSucceeded,
            None,
            None,
            "act",
            NOW + i,
        );
        if i == 3 {
            e.actor = Some("operator:alice".into());
        }
        evs.push(e);
        evs.push(event(
            &b,
            &format!("b{i}"),
            AuditKind::LoginSucceeded,
            None,
            None,
            "act",
            NOW + i,
        ));
    }
    store.append_audit(evs).await.expect("append_audit");
    let find =
        |before: Option<i64>, since: Option<UnixTime>, until: Option<UnixTime>, limit: usize| {
            let store = &store;
            let a = a.clone();
            async move {
                store
                    .find_audit(
                        &a,
                        &AuditQuery {
                            since,
                            until,
                            before,
                            limit,
                            ..AuditQuery::default()
                        },
                    )
                    .await
                    .expect("find_audit")
            }
        };
    let all = find(None, None, None, ALL).await;
    assert_eq!(labels(&all), ["e6", "e5", "e4", "e3", "e2", "e1", "e0"]);
    assert_eq!(
        all[3].actor.as_deref(),
        Some("operator:alice"),
        "the actor is kept"
    );
    assert_eq!(all[2].actor, None);
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = find(before, None, None, 3).await;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(labels(&page).into_iter().map(str::to_owned));
    }
    assert_eq!(
        paged,
        ["e6", "e5", "e4", "e3", "e2", "e1", "e0"],
        "pages of three"
    );
    assert_eq!(
        labels(&find(None, Some(NOW + 2), Some(NOW + 5), ALL).await),
        ["e4", "e3", "e2"],
        "since is inclusive, until exclusive"
    );
    assert_eq!(
        labels(&find(Some(all[1].id), Some(NOW + 2), Some(NOW + 5), ALL).await),
        ["e4", "e3", "e2"],
        "before and a time window"
    );
    assert!(
        find(Some(all[4].id), Some(NOW + 2), Some(NOW + 5), ALL)
            .await
            .is_empty(),
        "before the window's events"
    );
}

pub async fn audit_is_counted_per_bucket_kind_and_reason<S: IdentityStore>(store: S) {
    let (a, b) = (tenant_a(), tenant_b());
    let base = NOW - NOW % 60;
    let mut evs = Vec::new();
    let mut with_reason = |t: &TenantId, kind: AuditKind, at: UnixTime, reason: Option<&str>| {
        let mut e = event(t, "x", kind, None, None, "act", at);
        e.reason = reason.map(str::to_owned);
        evs.push(e);
    };
    with_reason(&a, AuditKind::LoginSucceeded, base, None);
    with_reason(&a, AuditKind::LoginSucceeded, base + 59, None);
    with_reason(&a, AuditKind::LoginSucceeded, base + 60, None);
    with_reason(
        &a,
        AuditKind::LoginFailed,
        base + 61,
        Some("invalid_credentials"),
    );
    with_reason(
        &a,
        AuditKind::LoginFailed,
        base + 62,
        Some("invalid_credentials"),
    );
    with_reason(&a, AuditKind::LoginFailed, base + 63, Some("rate_limited"));
    with_reason(&a, AuditKind::SessionRevoked, base + 179, Some("admin"));
    with_reason(&a, AuditKind::SessionRevoked, base + 180, Some("admin"));
    with_reason(&a, AuditKind::LoginSucceeded, base - 1, None);
    with_reason(&b, AuditKind::LoginSucceeded, base + 1, None);
    store.append_audit(evs).await.expect("append_audit");
    let mut counts = store
        .count_audit(&a, base, base + 180, 60)
        .await
        .expect("count_audit");
    counts.sort_by(|x, y| {
        (x.bucket, x.kind.as_str(), &x.reason).cmp(&(y.bucket, y.kind.as_str(), &y.reason))
    });
    let c = |bucket: UnixTime, kind: AuditKind, reason: Option<&str>, count: u64| AuditCount {
        bucket,
        kind,
        reason: reason.map(str::to_owned),
        count,
    };
    assert_eq!(
        counts,
        vec![
            c(base, AuditKind::LoginSucceeded, None, 2),
            c(
                base + 60,
                AuditKind::LoginFailed,
                Some("invalid_credentials"),
                2
            ),
            c(base + 60, AuditKind::LoginFailed, Some("rate_limited"), 1),
            c(base + 60, AuditKind::LoginSucceeded, None, 1),
            c(base + 120, AuditKind::SessionRevoked, Some("admin"), 1),
        ]
    );
    // Buckets start at multiples of their width, whatever `since` is.
    let mut wide = store
        .count_audit(&a, base + 30, base + 3600, 3600)
        .await
        .expect("count_audit");
    wide.sort_by(|x, y| (x.kind.as_str(), &x.reason).cmp(&(y.kind.as_str(), &y.reason)));
    let hour = (base + 30) - (base + 30).rem_euclid(3600);
    assert!(
        wide.iter()
            .all(|x| x.bucket == hour || x.bucket == hour + 3600)
    );
    assert_eq!(wide.iter().map(|x| x.count).sum::<u64>(), 7, "{wide:?}");
}

pub async fn audit_ids_never_repeat_after_a_purge<S: IdentityStore>(store: S) {
    let a = tenant_a();
    let ev = |i: i64| {
        event(
            &a,
            &format!("e{i}"),
            AuditKind::LoginSucceeded,
            None,
            None,
            "act",
            NOW + i,
        )
    };
    store
        .append_audit(vec![ev(0), ev(1)])
        .await
        .expect("append_audit");
    let before: Vec<i64> = store
        .find_audit(
            &a,
            &AuditQuery {
                limit: ALL,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("find_audit")
        .iter()
        .map(|e| e.id)
        .collect();
    store.purge_audit(NOW + 10).await.expect("purge_audit");
    store
        .append_audit(vec![ev(20)])
        .await
        .expect("append_audit");
    let after = store
        .find_audit(
            &a,
            &AuditQuery {
                limit: ALL,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("find_audit");
    assert_eq!(after.len(), 1);
    assert!(
        after[0].id > before[0],
        "a new event's id is above every id handed out before"
    );
}

// ---------------------------------------------------------------------------------------
// Audit events committed by session writes

/// An event labelled `label` (in its correlation id) of the audited-writes checks.
fn written(tenant: &TenantId, label: &str) -> AuditEvent {
    event(
        tenant,
        label,
        AuditKind::SessionRevoked,
        None,
        None,
        "audited",
        NOW,
    )
}

/// An audit function giving one `label` event per item of the write's outcome, then one
/// `last` event (if any).
fn one_each<T: Send + Sync + 'static>(
    tenant: &TenantId,
    label: &'static str,
    last: Option<&'static str>,
) -> AuditWith<[T]> {
    let t = tenant.clone();
    Some(Arc::new(move |items: &[T]| {
        let mut events: Vec<AuditEvent> = items.iter().map(|_| written(&t, label)).collect();
        events.extend(last.map(|l| written(&t, l)));
        events
    }))
}

/// An audit function for rotations: one event named after the outcome.
fn per_outcome(tenant: &TenantId) -> AuditWith<RotateOutcome> {
    let t = tenant.clone();
    Some(Arc::new(move |o: &RotateOutcome| {
        let label = match o {
            RotateOutcome::Rotated { .. } => "rotated",
            RotateOutcome::Replayed { .. } => "replayed",
            RotateOutcome::Reused { .. } => "reused",
            RotateOutcome::SessionInactive { .. } => "inactive",
            RotateOutcome::Invalid => "invalid",
        };
        vec![written(&t, label)]
    }))
}

async fn written_labels<S: IdentityStore>(store: &S, tenant: &TenantId) -> Vec<String> {
    let q = AuditQuery {
        activity_id: Some("audited".into()),
        limit: ALL,
        ..AuditQuery::default()
    };
    let mut found: Vec<String> = labels(&audit(store, tenant, q).await)
        .into_iter()
        .map(str::to_owned)
        .collect();
    found.reverse(); // oldest first
    found
}

pub async fn session_writes_commit_their_audit_events<S: SessionStore + IdentityStore>(store: S) {
    let t = tenant_a();
    let user = uid();
    let (t0, t1, t2) = (new_token(), new_token(), new_token());
    let first = session(&t, user, NOW, None);
    let evicted = store
        .create_session(
            with_refresh(&first, t0),
            SessionLimit::EvictOldest(1),
            NOW,
            one_each(&t, "displaced", Some("created")),
        )
        .await
        .expect("create_session");
    assert!(evicted.is_empty());
    assert_eq!(written_labels(&store, &t).await, ["created"]);

    let second = session(&t, user, NOW + 1, None);
    let evicted = store
        .create_session(
            with_refresh(&second, t1),
            SessionLimit::EvictOldest(1),
            NOW + 1,
            one_each(&t, "displaced", Some("created")),
        )
        .await
        .expect("create_session");
    assert_eq!(evicted, std::slice::from_ref(&first.id));
    assert_eq!(
        written_labels(&store, &t).await,
        ["created", "displaced", "created"],
        "the create's events are its evictions' and its own"
    );

    // Rotations: the function is given the outcome.
    let rotated = store
        .rotate_refresh(rotation(&t, t1, t2, NOW + 2), per_outcome(&t))
        .await
        .expect("rotate_refresh");
    assert!(matches!(rotated, RotateOutcome::Rotated { .. }));
    let late = NOW + 2 + i64::from(GRACE) + 1;
    let reused = store
        .rotate_refresh(rotation(&t, t1, new_token(), late), per_outcome(&t))
        .await
        .expect("rotate_refresh");
    assert!(matches!(
        reused,
        RotateOutcome::Reused { revoked: true, .. }
    ));
    assert_eq!(written_labels(&store, &t).await[3..], ["rotated", "reused"]);

    // Revocations: one event per session revoked, none for a session already ended.
    let third = session(&t, user, NOW + 3, None);
    create(&store, &third).await;
    for first_time in [true, false] {
        let revoked = store
            .revoke_session(
                &t,
                &third.id,
                RevokeReason::Logout,
                NOW + 4,
                one_each(&t, "revoked", None),
            )
            .await
            .expect("revoke_session");
        assert_eq!(revoked.is_some(), first_time);
    }
    assert_eq!(written_labels(&store, &t).await[5..], ["revoked"]);

    let other = uid();
    for at in [NOW + 5, NOW + 6] {
        create(&store, &session(&t, other, at, None)).await;
    }
    let revoked = store
        .revoke_user_sessions(
            &t,
            &other,
            RevokeReason::LogoutAll,
            None,
            NOW + 7,
            one_each(&t, "revoked_user", None),
        )
        .await
        .expect("revoke_user_sessions");
    assert_eq!(revoked.len(), 2);
    assert_eq!(
        written_labels(&store, &t).await[6..],
        ["revoked_user", "revoked_user"]
    );
    assert!(
        written_labels(&store, &tenant_b()).await.is_empty(),
        "the events are the tenant's they name"
    );
}

pub async fn failed_session_writes_commit_no_audit_events<S: SessionStore + IdentityStore>(
    store: S,
) {
    let t = tenant_a();
    let user = uid();
    let (t0, t1) = (new_token(), new_token());
    let first = session(&t, user, NOW, None);
    store
        .create_session(with_refresh(&first, t0), SessionLimit::Unlimited, NOW, None)
        .await
        .expect("create_session");
    let never = || one_each::<SessionId>(&t, "never", Some("never"));

    // A taken session id, a taken refresh token, a full user: nothing is written, events
    // included.
    let same_id = Session {
        id: first.id.clone(),
        ..session(&t, uid(), NOW + 1, None)
    };
    let taken = store
        .create_session(bare(&same_id), SessionLimit::Unlimited, NOW + 1, never())
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
    let second = session(&t, user, NOW + 1, None);
    let taken = store
        .create_session(
            with_refresh(&second, t0),
            SessionLimit::EvictOldest(1),
            NOW + 1,
            never(),
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
    let full = store
        .create_session(bare(&second), SessionLimit::Reject(1), NOW + 1, never())
        .await;
    assert!(matches!(full, Err(StoreError::LimitReached)), "{full:?}");

    // A rotation whose successor is taken: the presented token stays current.
    let conflict = store
        .rotate_refresh(rotation(&t, t0, t0, NOW + 2), per_outcome(&t))
        .await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict)),
        "{conflict:?}"
    );
    assert!(
        written_labels(&store, &t).await.is_empty(),
        "failed writes committed events"
    );
    assert!(matches!(
        rotate(&store, rotation(&t, t0, t1, NOW + 3)).await,
        RotateOutcome::Rotated { .. }
    ));
}
