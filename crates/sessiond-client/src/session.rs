//! The stored session: its tokens (never printed), when to refresh it, and where it is kept.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// A secret: a session token or a refresh token.
///
/// `Debug` prints `Token(<redacted>)` and there is no `Display`, so a token reaches a log or
/// a panic message only through an explicit [`Token::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, e.g. for an `Authorization: Bearer` header of your own.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// One logged-in session as the client keeps it. Times are Unix seconds of the client's
/// clock (the token lifetimes the server sent, counted from just before the request), so a
/// skewed client clock does not make tokens look expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    pub tenant_id: String,
    pub customer_id: uuid::Uuid,
    pub scope: String,
    /// What goes into `Authorization: Bearer`.
    pub session_token: Token,
    /// Absent where the tenant's profile issues none (then the session ends with its token).
    pub refresh_token: Option<Token>,
    pub expires_at: i64,
    pub refresh_expires_at: Option<i64>,
    /// From this time on the next [`Client::token`](crate::Client::token) refreshes (the
    /// configured share of the lifetime before `expires_at`, less a random jitter).
    pub refresh_at: i64,
}

impl Session {
    /// Is it time to refresh?
    pub fn is_due(&self, now: i64) -> bool {
        now >= self.refresh_at
    }

    /// Is the session token still within its lifetime?
    pub fn is_usable(&self, now: i64) -> bool {
        now < self.expires_at
    }
}

/// Where the client keeps its session. [`MemoryStore`] by default; implement it to keep a
/// session across restarts (a file, the OS keychain). Called on every
/// [`Client::token`](crate::Client::token), so `load` should be cheap. Every write comes
/// from one client at a time (the client serialises them); keep one store per client.
pub trait TokenStore: Send + Sync + 'static {
    fn load(&self) -> Result<Option<Session>, Error>;
    fn save(&self, session: &Session) -> Result<(), Error>;
    fn clear(&self) -> Result<(), Error>;
}

/// The default store: the session lives as long as the process.
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<Option<Session>>);

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        // A panic elsewhere cannot leave an `Option` half-written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TokenStore for MemoryStore {
    fn load(&self) -> Result<Option<Session>, Error> {
        Ok(self.slot().clone())
    }

    fn save(&self, session: &Session) -> Result<(), Error> {
        *self.slot() = Some(session.clone());
        Ok(())
    }

    fn clear(&self) -> Result<(), Error> {
        *self.slot() = None;
        Ok(())
    }
}

/// Lets a caller keep a handle on the store it gives the client.
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    fn load(&self) -> Result<Option<Session>, Error> {
        (**self).load()
    }

    fn save(&self, session: &Session) -> Result<(), Error> {
        (**self).save(session)
    }

    fn clear(&self) -> Result<(), Error> {
        (**self).clear()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            session_id: "s1".into(),
            tenant_id: "t1".into(),
            customer_id: uuid::Uuid::nil(),
            scope: "session".into(),
            session_token: Token::new("eyJ-secret-session-token"),
            refresh_token: Some(Token::new("secret-refresh-token")),
            expires_at: 3600,
            refresh_expires_at: Some(86400),
            refresh_at: 2880,
        }
    }

    #[test]
    fn debug_output_hides_tokens() {
        let s = session();
        let store = MemoryStore::new();
        store.save(&s).unwrap();
        let all = format!("{s:?} {s:#?} {store:?} {:?}", s.session_token);
        assert!(!all.contains("secret"), "{all}");
        assert!(all.contains("s1") && all.contains("<redacted>"));
    }

    #[test]
    fn serialises_tokens_for_persistent_stores() {
        let s = session();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"sessionToken\":\"eyJ-secret-session-token\""));
        let back: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn due_and_usable() {
        let s = session();
        assert!(!s.is_due(2879) && s.is_due(2880));
        assert!(s.is_usable(3599) && !s.is_usable(3600));
    }

    #[test]
    fn memory_store_round_trip() {
        let store = Arc::new(MemoryStore::new());
        assert_eq!(store.load().unwrap(), None);
        store.save(&session()).unwrap();
        assert_eq!(store.load().unwrap(), Some(session()));
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }
}
