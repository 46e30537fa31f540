//! The client: one method per end-user endpoint, and the single-flight refresh behind
//! [`Client::token`].

use crate::error::{self, Error};
use crate::session::{MemoryStore, Session, Token, TokenStore};
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sessiond_proto::{
    ErrorCode, LoginRequest, Mode, ReauthenticateRequest, RefreshRequest, RevokedResponse,
    SessionView, SessionsResponse, SsoRequest, TokenResponse, WhoamiResponse, headers, paths,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use uuid::Uuid;

/// By default a token is refreshed when a fifth of its lifetime is left.
pub const DEFAULT_REFRESH_SHARE: f64 = 0.2;
/// By default up to another 5 % of the lifetime earlier, at random, so that clients that
/// logged in together do not all refresh in the same second.
pub const DEFAULT_JITTER: f64 = 0.05;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// By default one refresh attempt may take 3 s: the first and both retries then fit in the
/// server's default 10 s refresh grace window.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(3);
/// A refresh whose answer is lost (network, timeout, `5xx`) is sent again at once, with the
/// same refresh token, at most this many times in the same flight.
const REFRESH_RETRIES: u32 = 2;

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A typed client of sessiond's end-user API for one tenant and one session at a time.
///
/// Cheap to clone; clones share the session, so many tasks can call [`Client::token`] (or
/// any call that needs the token) at once and still cause at most one refresh. Every call
/// sends `X-Tenant-ID` and a fresh `X-Activity-ID`.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without a trailing slash.
    base: String,
    tenant: String,
    store: Box<dyn TokenStore>,
    clock: Clock,
    refresh_share: f64,
    jitter: f64,
    refresh_timeout: Duration,
    /// `Flight::generation`, readable without waiting for a refresh in flight.
    generation: AtomicU64,
    /// Held while the stored session changes: a refresh, a login, an ended session.
    flight: Mutex<Flight>,
}

/// What the last change of the stored session left for the tasks that waited on it.
struct Flight {
    /// Bumped by every change, so a waiter can tell that the change it waited for happened.
    generation: u64,
    outcome: Result<(), Error>,
    /// Why the last session ended, until the next login.
    ended: Option<ErrorCode>,
    /// No refresh before this (the server's `Retry-After`).
    retry_at: i64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("tenant", &self.inner.tenant)
            .field("refresh_share", &self.inner.refresh_share)
            .field("jitter", &self.inner.jitter)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`Client`]; from [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    base_url: String,
    tenant: String,
    http: Option<reqwest::Client>,
    store: Option<Box<dyn TokenStore>>,
    clock: Option<Clock>,
    refresh_share: f64,
    jitter: f64,
    refresh_timeout: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("tenant", &self.tenant)
            .field("refresh_share", &self.refresh_share)
            .field("jitter", &self.jitter)
            .field("refresh_timeout", &self.refresh_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The `reqwest` client to send with (proxies, TLS roots, timeouts). By default one with
    /// a 30 s timeout that follows no redirects (a redirect would send the password or the
    /// refresh token on, perhaps to another host); build yours with
    /// `.redirect(reqwest::redirect::Policy::none())` too.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Where the session is kept; [`MemoryStore`] by default.
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// The current time in Unix seconds; the system clock by default.
    pub fn clock(mut self, now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(now));
        self
    }

    /// Refresh when this share of the token's lifetime is left (0 to 1; default 0.2).
    pub fn refresh_share(mut self, share: f64) -> Self {
        self.refresh_share = share;
        self
    }

    /// Refresh up to this share of the lifetime earlier still, at random (0 to 1; default
    /// 0.05; 0 for none).
    pub fn jitter(mut self, share: f64) -> Self {
        self.jitter = share;
        self
    }

    /// How long one refresh attempt may take (default 3 s, whatever the HTTP client's own
    /// timeout). An attempt that fails in transit (network, this timeout, `5xx`) is sent
    /// again at once with the same refresh token, at most twice: keep three of these within
    /// the tenant's refresh grace window (`refreshGraceSeconds`, 10 s by default), where the
    /// server answers a repeat with the same new pair instead of revoking the session.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| Error::Config(format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err(Error::Config(format!(
                "base URL {:?}: want http(s)://host[:port][/prefix]",
                self.base_url
            )));
        }
        if self.tenant.is_empty() || reqwest::header::HeaderValue::from_str(&self.tenant).is_err() {
            return Err(Error::Config(format!("tenant {:?}", self.tenant)));
        }
        let share_ok = |s: f64| (0.0..=1.0).contains(&s);
        if !share_ok(self.refresh_share)
            || !share_ok(self.jitter)
            || self.refresh_share + self.jitter > 1.0
        {
            return Err(Error::Config(
                "refresh share and jitter are shares of the lifetime: each 0 to 1, together \
                 at most 1"
                    .into(),
            ));
        }
        if self.refresh_timeout.is_zero() {
            return Err(Error::Config(
                "the refresh timeout must be above zero".into(),
            ));
        }
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .timeout(DEFAULT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: url.as_str().trim_end_matches('/').to_owned(),
                tenant: self.tenant,
                store: self.store.unwrap_or_else(|| Box::new(MemoryStore::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(system_now)),
                refresh_share: self.refresh_share,
                jitter: self.jitter,
                refresh_timeout: self.refresh_timeout,
                generation: AtomicU64::new(0),
                flight: Mutex::new(Flight {
                    generation: 0,
                    outcome: Ok(()),
                    ended: None,
                    retry_at: i64::MIN,
                }),
            }),
        })
    }
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Client {
    /// A client of the sessiond at `base_url` (e.g. `https://sessions.example.com`) for
    /// `tenant`, with the default settings.
    pub fn new(base_url: &str, tenant: &str) -> Result<Self, Error> {
        Self::builder(base_url, tenant).build()
    }

    pub fn builder(base_url: impl Into<String>, tenant: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            tenant: tenant.into(),
            http: None,
            store: None,
            clock: None,
            refresh_share: DEFAULT_REFRESH_SHARE,
            jitter: DEFAULT_JITTER,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
        }
    }

    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The stored session, as it is (no refresh, no request).
    pub fn session(&self) -> Result<Option<Session>, Error> {
        self.inner.store.load()
    }

    /// Log in with a username and password; the new session replaces the stored one (log
    /// out first to end that one on the server too).
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, Error> {
        self.login_with(LoginRequest {
            username: username.into(),
            password: password.into(),
            device: None,
            mode: Mode::Body,
        })
        .await
    }

    /// [`Client::login`] with every field of the request (e.g. a device label). The tokens
    /// always come in the body: this client does not use cookie mode.
    pub async fn login_with(&self, mut request: LoginRequest) -> Result<Session, Error> {
        request.mode = Mode::Body;
        self.start_session(paths::LOGIN, &request).await
    }

    /// Exchange a partner-signed SSO token for a session.
    pub async fn sso(&self, sso_token: &str) -> Result<Session, Error> {
        self.sso_with(SsoRequest {
            sso_token: sso_token.into(),
            device: None,
            mode: Mode::Body,
        })
        .await
    }

    /// [`Client::sso`] with every field of the request.
    pub async fn sso_with(&self, mut request: SsoRequest) -> Result<Session, Error> {
        request.mode = Mode::Body;
        self.start_session(paths::SSO, &request).await
    }

    /// A session token valid now, refreshed first when its refresh time has come. However
    /// many tasks ask at once, one refresh request goes out and they all get its result.
    ///
    /// [`Error::ReloginRequired`] when the session has ended for good (the stored session is
    /// then gone) or there is none. A refresh that fails otherwise (network, 5xx, 429) keeps
    /// the session: while the current token is still within its lifetime it is returned;
    /// once it is not, the failure is.
    pub async fn token(&self) -> Result<Token, Error> {
        Ok(self.current(Uuid::new_v4()).await?.0.session_token)
    }

    /// Refresh now, whatever the time. Waits for a refresh already in flight and returns its
    /// result instead of starting another.
    pub async fn refresh(&self) -> Result<Session, Error> {
        let seen = self.inner.generation.load(Ordering::SeqCst);
        Ok(self.single_flight(seen, true, Uuid::new_v4()).await?.0)
    }

    /// whoami: the session as the server sees it (counts as activity for the idle timeout).
    pub async fn whoami(&self) -> Result<WhoamiResponse, Error> {
        let (res, _) = self.authorized(Method::GET, paths::SESSION).await?;
        read_json(res).await
    }

    /// The user's active sessions, the current one flagged.
    pub async fn sessions(&self) -> Result<Vec<SessionView>, Error> {
        let (res, _) = self.authorized(Method::GET, paths::SESSIONS).await?;
        Ok(read_json::<SessionsResponse>(res).await?.sessions)
    }

    /// Revoke one of the user's sessions (this one included: then the stored session goes).
    pub async fn revoke_session(&self, session_id: &str) -> Result<(), Error> {
        let path = format!("{}/{}", paths::SESSIONS, escape_segment(session_id));
        let (_, session) = self.authorized(Method::DELETE, &path).await?;
        if session.session_id == session_id {
            self.end(&session.session_id, None).await?;
        }
        Ok(())
    }

    /// Revoke all the user's sessions but this one; returns how many were revoked.
    pub async fn revoke_other_sessions(&self) -> Result<usize, Error> {
        let path = format!("{}?scope=others", paths::SESSIONS);
        let (res, _) = self.authorized(Method::DELETE, &path).await?;
        Ok(read_json::<RevokedResponse>(res).await?.revoked)
    }

    /// Revoke every session of this user in this tenant, this one included (the stored
    /// session goes); returns how many were revoked.
    pub async fn logout_all(&self) -> Result<usize, Error> {
        let (res, session) = self.authorized(Method::POST, paths::LOGOUT_ALL).await?;
        let revoked = read_json::<RevokedResponse>(res).await?.revoked;
        self.end(&session.session_id, None).await?;
        Ok(revoked)
    }

    /// Step-up: prove the user again — `password` for a password session, a fresh SSO token
    /// of the same partner user (`sso_token`) for an SSO session — and store the new session
    /// token, whose `auth_time` is now; the refresh token stays. What a tenant with
    /// `reauthMaxAge` asks for ([`ErrorCode::ReauthenticationRequired`]) before
    /// [`Client::logout_all`] or [`Client::revoke_other_sessions`].
    pub async fn reauthenticate(&self, proof: ReauthenticateRequest) -> Result<Session, Error> {
        let now = self.now();
        let (res, _) = self
            .authorized_with(Method::POST, paths::REAUTHENTICATE, Some(&proof))
            .await?;
        let fresh = self.session_from(read_json(res).await?, now)?;
        let _f = self.inner.flight.lock().await;
        let Some(stored) = self.inner.store.load()? else {
            return Err(Error::ReloginRequired { code: None });
        };
        if stored.session_id != fresh.session_id {
            return Err(Error::Protocol(
                "the re-authenticated session is not the stored one".into(),
            ));
        }
        // The stored refresh token is the newest (a refresh may have rotated it meanwhile).
        let merged = Session {
            refresh_token: stored.refresh_token,
            refresh_expires_at: stored.refresh_expires_at,
            ..fresh
        };
        self.inner.store.save(&merged)?;
        Ok(merged)
    }

    /// Revoke this session and forget it. Needs no refresh (the server accepts the session's
    /// own expired token); does nothing without a session. On a network or server failure
    /// the session is kept, so the logout can be retried.
    ///
    /// Holds the single flight throughout: a refresh in flight finishes first (and the
    /// logout then sends its new token), and no refresh starts until the session is gone,
    /// so a logged-out client stays logged out.
    pub async fn logout(&self) -> Result<(), Error> {
        let mut f = self.inner.flight.lock().await;
        let Some(session) = self.inner.store.load()? else {
            return Ok(());
        };
        let sent = self
            .send(
                self.request(Method::POST, paths::LOGOUT, Uuid::new_v4())
                    .bearer_auth(session.session_token.expose()),
            )
            .await;
        match sent {
            // Already over on the server: forget it all the same.
            Err(e) if !(e.ends_session() || is_401(&e)) => return Err(e),
            _ => {}
        }
        match self.ended(&mut f, &session.session_id, None) {
            Error::ReloginRequired { .. } => Ok(()),
            store_failure => Err(store_failure),
        }
    }

    fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    fn request(&self, method: Method, path: &str, activity: Uuid) -> RequestBuilder {
        self.inner
            .http
            .request(method, format!("{}{path}", self.inner.base))
            .header(headers::TENANT_ID, &self.inner.tenant)
            .header(headers::ACTIVITY_ID, activity.to_string())
    }

    /// Sends; a non-2xx answer becomes an [`Error`].
    async fn send(&self, request: RequestBuilder) -> Result<Response, Error> {
        let res = request.send().await?;
        if res.status().is_success() {
            Ok(res)
        } else {
            Err(error::from_response(res).await)
        }
    }

    async fn start_session(&self, path: &str, body: &impl Serialize) -> Result<Session, Error> {
        let now = self.now();
        let res = self
            .send(self.request(Method::POST, path, Uuid::new_v4()).json(body))
            .await?;
        let session = self.session_from(read_json(res).await?, now)?;
        let mut f = self.inner.flight.lock().await;
        self.inner.store.save(&session)?;
        f.ended = None;
        f.retry_at = i64::MIN;
        self.finish(&mut f, Ok(()));
        tracing::debug!(session_id = %session.session_id, "session started");
        Ok(session)
    }

    /// The stored session with a token to use now, and the generation it belongs to.
    async fn current(&self, activity: Uuid) -> Result<(Session, u64), Error> {
        // Read before the store: a refresh landing in between shows as a new generation, so
        // this task cannot refresh again with a refresh token that was just rotated away.
        let seen = self.inner.generation.load(Ordering::SeqCst);
        match self.inner.store.load()? {
            Some(s) if !s.is_due(self.now()) => Ok((s, seen)),
            _ => self.single_flight(seen, false, activity).await,
        }
    }

    /// Runs [`Client::refresh_once`] on its own task, so that a caller that gives up (a
    /// timeout, a `select!`) cannot cut a refresh off between the server's rotation and the
    /// store's save: the new pair would be lost, and the old refresh token sent again after
    /// the grace window would count as reuse and end the session.
    async fn single_flight(
        &self,
        seen: u64,
        force: bool,
        activity: Uuid,
    ) -> Result<(Session, u64), Error> {
        let this = self.clone();
        match tokio::spawn(async move { this.refresh_once(seen, force, activity).await }).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::Protocol(
                "the refresh was cancelled: the runtime is shutting down".into(),
            )),
        }
    }

    /// The single flight: the first task through the lock refreshes; a task that waited
    /// behind it (the generation moved since `seen`) takes its outcome instead of refreshing
    /// again.
    async fn refresh_once(
        &self,
        seen: u64,
        force: bool,
        activity: Uuid,
    ) -> Result<(Session, u64), Error> {
        let mut f = self.inner.flight.lock().await;
        let now = self.now();
        let stored = self.inner.store.load()?;
        if f.generation != seen {
            return shared_outcome(&f, stored, now);
        }
        let Some(current) = stored else {
            return Err(Error::ReloginRequired { code: f.ended });
        };
        let keep_current = !force && current.is_usable(now);
        if !force && !current.is_due(now) {
            return Ok((current, f.generation));
        }
        if now < f.retry_at {
            if keep_current {
                return Ok((current, f.generation));
            }
            let wait = u64::try_from(f.retry_at - now).unwrap_or(0);
            return Err(Error::RateLimited {
                retry_after: Some(Duration::from_secs(wait)),
            });
        }
        let Some(refresh_token) = current.refresh_token.clone() else {
            if keep_current {
                return Ok((current, f.generation));
            }
            return Err(self.ended(&mut f, &current.session_id, Some(ErrorCode::TokenExpired)));
        };
        match self
            .post_refresh(&refresh_token, activity, &current.session_id)
            .await
        {
            Ok(next) => {
                if let Err(e) = self.inner.store.save(&next) {
                    self.finish(&mut f, Err(e.clone()));
                    return Err(e);
                }
                self.finish(&mut f, Ok(()));
                tracing::debug!(session_id = %next.session_id, "session token refreshed");
                Ok((next, f.generation))
            }
            Err(e) if e.ends_session() || is_401(&e) => {
                Err(self.ended(&mut f, &current.session_id, e.code()))
            }
            Err(e) => {
                tracing::warn!(session_id = %current.session_id, error = %e,
                    "refresh failed; the session is kept and the next call retries");
                if let Error::RateLimited {
                    retry_after: Some(d),
                } = &e
                {
                    f.retry_at = now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(0));
                }
                self.finish(&mut f, Err(e.clone()));
                if keep_current {
                    Ok((current, f.generation))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Refreshes with `refresh_token`. An attempt whose answer is lost (network, the
    /// per-attempt timeout, `5xx`) may have rotated the token on the server all the same:
    /// the same token goes out again at once, while the server's grace window still answers
    /// it with the same new pair. Waiting for a later call instead could send it after the
    /// window, where it counts as reuse and ends the session.
    async fn post_refresh(
        &self,
        refresh_token: &Token,
        activity: Uuid,
        session_id: &str,
    ) -> Result<Session, Error> {
        let body = RefreshRequest {
            refresh_token: Some(refresh_token.expose().to_owned()),
        };
        let mut retries = 0;
        loop {
            let now = self.now();
            let attempt = async {
                let res = self
                    .send(
                        self.request(Method::POST, paths::REFRESH, activity)
                            .timeout(self.inner.refresh_timeout)
                            .json(&body),
                    )
                    .await?;
                self.session_from(read_json(res).await?, now)
            };
            match attempt.await {
                Err(e) if retries < REFRESH_RETRIES && is_lost_in_transit(&e) => {
                    retries += 1;
                    tracing::warn!(session_id = %session_id, error = %e, retry = retries,
                        "refresh answer lost; sending the same refresh token again");
                }
                result => return result,
            }
        }
    }

    /// Sends with the session token. A token the server calls expired or invalid (the
    /// clocks disagree) gets one refresh and one retry; an answer that ends the session
    /// clears it and becomes [`Error::ReloginRequired`].
    async fn authorized(&self, method: Method, path: &str) -> Result<(Response, Session), Error> {
        self.authorized_with(method, path, None::<&()>).await
    }

    /// As [`Client::authorized`], with a JSON body.
    async fn authorized_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(Response, Session), Error> {
        let activity = Uuid::new_v4();
        let (session, generation) = self.current(activity).await?;
        let send = |s: &Session| {
            let mut rb = self
                .request(method.clone(), path, activity)
                .bearer_auth(s.session_token.expose());
            if let Some(b) = body {
                rb = rb.json(b);
            }
            self.send(rb)
        };
        let mut session = session;
        let mut result = send(&session).await;
        if let Err(e) = &result
            && matches!(
                e.code(),
                Some(ErrorCode::TokenExpired | ErrorCode::TokenInvalid)
            )
        {
            session = self.single_flight(generation, true, activity).await?.0;
            result = send(&session).await;
        }
        match result {
            Ok(res) => Ok((res, session)),
            Err(e) if e.ends_session() => {
                let mut f = self.inner.flight.lock().await;
                Err(self.ended(&mut f, &session.session_id, e.code()))
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets the session `session_id` (after a logout or revocation of it).
    async fn end(&self, session_id: &str, code: Option<ErrorCode>) -> Result<(), Error> {
        let mut f = self.inner.flight.lock().await;
        match self.ended(&mut f, session_id, code) {
            Error::ReloginRequired { .. } => Ok(()),
            store_failure => Err(store_failure),
        }
    }

    /// The session is over: clear it (unless a new login already replaced it) and tell the
    /// waiters. Returns the error for this call: `ReloginRequired`, or the store's failure.
    fn ended(&self, f: &mut Flight, session_id: &str, code: Option<ErrorCode>) -> Error {
        let clear = || -> Result<(), Error> {
            if self
                .inner
                .store
                .load()?
                .is_some_and(|s| s.session_id == session_id)
            {
                self.inner.store.clear()?;
            }
            Ok(())
        };
        if let Err(e) = clear() {
            return e;
        }
        tracing::info!(
            session_id = %session_id,
            code = code.map_or("none", ErrorCode::as_str),
            "session over; cleared from the store"
        );
        f.ended = code;
        let e = Error::ReloginRequired { code };
        self.finish(f, Err(e.clone()));
        e
    }

    fn finish(&self, f: &mut Flight, outcome: Result<(), Error>) {
        f.outcome = outcome;
        f.generation += 1;
        self.inner.generation.store(f.generation, Ordering::SeqCst);
    }

    fn session_from(&self, t: TokenResponse, now: i64) -> Result<Session, Error> {
        let token = t.user_session_token.ok_or_else(|| {
            Error::Protocol("the TokenResponse carries no userSessionToken".into())
        })?;
        let lifetime = t.expires_in.max(0);
        let expires_at = now.saturating_add(lifetime);
        Ok(Session {
            session_id: t.session_id,
            tenant_id: t.tenant_id,
            customer_id: t.customer_id,
            scope: t.scope,
            session_token: Token::new(token),
            refresh_token: t.refresh_token.map(Token::new),
            expires_at,
            refresh_expires_at: t.refresh_expires_in.map(|s| now.saturating_add(s)),
            refresh_at: expires_at - self.lead(lifetime),
        })
    }

    /// How long before expiry to refresh: the configured share plus a random jitter.
    fn lead(&self, lifetime: i64) -> i64 {
        let share = |s: f64| (lifetime as f64 * s).round() as i64;
        let spread = u64::try_from(share(self.inner.jitter)).unwrap_or(0);
        let jitter = match spread {
            0 => 0,
            // Without randomness the jitter is merely absent, never wrong.
            n => getrandom::u64().unwrap_or(0) % (n + 1),
        };
        share(self.inner.refresh_share)
            .saturating_add(i64::try_from(jitter).unwrap_or(0))
            .min(lifetime)
    }
}

/// What a task that waited behind another's refresh (or login, or ended session) gets.
fn shared_outcome(f: &Flight, stored: Option<Session>, now: i64) -> Result<(Session, u64), Error> {
    match (stored, &f.outcome) {
        (None, _) => Err(Error::ReloginRequired { code: f.ended }),
        (Some(s), Ok(())) => Ok((s, f.generation)),
        (Some(s), Err(_)) if s.is_usable(now) => Ok((s, f.generation)),
        (Some(_), Err(e)) => Err(e.clone()),
    }
}

/// A failure after which the server may have rotated the refresh token all the same.
fn is_lost_in_transit(e: &Error) -> bool {
    matches!(
        e,
        Error::Http(_)
            | Error::Api {
                status: 500..=599,
                ..
            }
            | Error::UnexpectedStatus { status: 500..=599 }
    )
}

fn is_401(e: &Error) -> bool {
    matches!(e, Error::Api { status: 401, .. })
}

async fn read_json<T: DeserializeOwned>(res: Response) -> Result<T, Error> {
    let body = res.bytes().await?;
    // serde_json's message may quote the body, which may hold a token: position only.
    serde_json::from_slice(&body).map_err(|e| {
        Error::Protocol(format!(
            "malformed JSON body ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn escape_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client(share: f64, jitter: f64) -> Client {
        Client::builder("http://127.0.0.1:1/", "t1")
            .refresh_share(share)
            .jitter(jitter)
            .clock(|| 1000)
            .build()
            .unwrap()
    }

    #[test]
    fn refresh_time_is_the_share_plus_jitter_before_expiry() {
        assert_eq!(client(0.2, 0.0).lead(3600), 720);
        for _ in 0..50 {
            let lead = client(0.2, 0.05).lead(3600);
            assert!((720..=900).contains(&lead), "{lead}");
        }
        assert_eq!(client(0.0, 0.0).lead(3600), 0);
        assert_eq!(client(1.0, 0.0).lead(3600), 3600);
    }

    #[test]
    fn settings_are_checked() {
        let bad = |b: ClientBuilder| matches!(b.build(), Err(Error::Config(_)));
        assert!(bad(Client::builder("not a url", "t1")));
        assert!(bad(Client::builder("ftp://x", "t1")));
        assert!(bad(Client::builder("http://x", "")));
        assert!(bad(Client::builder("http://x", "t\n1")));
        assert!(bad(Client::builder("http://x", "t1").refresh_share(1.5)));
        assert!(bad(Client::builder("http://x", "t1").jitter(f64::NAN)));
        assert!(bad(Client::builder("http://x", "t1")
            .refresh_share(0.6)
            .jitter(0.5)));
        assert!(bad(
            Client::builder("http://x", "t1").refresh_timeout(Duration::ZERO)
        ));
        let c = Client::new("http://x/prefix/", "t1").unwrap();
        assert_eq!(c.inner.base, "http://x/prefix");
        assert_eq!(c.tenant(), "t1");
        assert!(format!("{c:?}").contains("t1"));
    }

    #[test]
    fn only_failures_in_transit_are_retried() {
        let status = |status| Error::UnexpectedStatus { status };
        assert!(is_lost_in_transit(&status(502)));
        assert!(is_lost_in_transit(&status(504)));
        assert!(!is_lost_in_transit(&status(307)));
        assert!(!is_lost_in_transit(&status(404)));
        assert!(!is_lost_in_transit(&Error::RateLimited {
            retry_after: None
        }));
        assert!(!is_lost_in_transit(&Error::Protocol("x".into())));
        assert!(!is_lost_in_transit(&Error::ReloginRequired { code: None }));
    }

    #[test]
    fn session_ids_are_escaped_in_paths() {
        assert_eq!(escape_segment("abc-_.~9"), "abc-_.~9");
        assert_eq!(escape_segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[tokio::test]
    async fn without_a_session_the_answer_is_relogin() {
        let c = client(0.2, 0.0);
        let e = c.token().await.unwrap_err();
        assert!(matches!(e, Error::ReloginRequired { code: None }), "{e:?}");
        assert!(c.logout().await.is_ok(), "nothing to log out");
    }
}
