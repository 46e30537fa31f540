//! The verifier's copy of what the feed says is no longer valid: ended sessions and user
//! cut-offs of its tenant, each kept until the instant after which no token it covers can be
//! valid.

use crate::error::Error;
use crate::token::Claims;
use sessiond_proto::FeedEvent;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct Revocations {
    /// sid → until.
    sessions: HashMap<String, i64>,
    /// sub → (before, until): tokens with `auth_time < before` are refused.
    cutoffs: HashMap<uuid::Uuid, (i64, i64)>,
    /// Everything in force has been received (a `synced` after the last `reset`).
    pub(crate) synced: bool,
}

/// What the follower must do after an event besides recording it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Then {
    Nothing,
    RefetchKeys,
}

impl Revocations {
    pub(crate) fn apply(&mut self, tenant: &str, event: &FeedEvent) -> Then {
        match event {
            FeedEvent::Reset => {
                // Key changes are not repeated after a reset: the JWKS is fetched again.
                self.sessions.clear();
                self.cutoffs.clear();
                self.synced = false;
                return Then::RefetchKeys;
            }
            FeedEvent::Session(s) if s.tid == tenant => {
                let until = self.sessions.entry(s.sid.clone()).or_insert(s.until);
                *until = (*until).max(s.until);
            }
            FeedEvent::Cutoff(c) if c.tid == tenant => {
                let e = self.cutoffs.entry(c.sub).or_insert((c.before, c.until));
                *e = (e.0.max(c.before), e.1.max(c.until));
            }
            FeedEvent::Session(_) | FeedEvent::Cutoff(_) => {
                tracing::debug!("feed entry of another tenant ignored");
            }
            FeedEvent::Keys(_) => return Then::RefetchKeys,
            FeedEvent::Synced => self.synced = true,
            FeedEvent::Heartbeat { .. } => {}
        }
        Then::Nothing
    }

    pub(crate) fn check(&self, c: &Claims) -> Result<(), Error> {
        if self.sessions.contains_key(&c.sid) {
            return Err(Error::SessionRevoked);
        }
        if self
            .cutoffs
            .get(&c.sub)
            .is_some_and(|&(before, _)| c.auth_time < before)
        {
            return Err(Error::SessionRevoked);
        }
        Ok(())
    }

    /// Forgets entries no token can still need.
    pub(crate) fn prune(&mut self, now: i64) {
        self.sessions.retain(|_, until| *until >= now);
        self.cutoffs.retain(|_, (_, until)| *until >= now);
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len() + self.cutoffs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_proto::{Cutoff, KeysChanged, SessionRevoked};

    fn claims(sid: &str, sub: uuid::Uuid, auth_time: i64) -> Claims {
        Claims {
            iss: "i".into(),
            aud: "a".into(),
            sub,
            sid: sid.into(),
            tid: "t1".into(),
            cid: uuid::Uuid::nil(),
            scope: "session".into(),
            jti: "j".into(),
            iat: auth_time,
            nbf: auth_time,
            exp: auth_time + 600,
            auth_time,
            amr: vec!["pwd".into()],
        }
    }

    fn session(tid: &str, sid: &str, until: i64) -> FeedEvent {
        FeedEvent::Session(SessionRevoked {
            tid: tid.into(),
            sid: sid.into(),
            sub: uuid::Uuid::nil(),
            at: 0,
            until,
        })
    }

    fn cutoff(sub: uuid::Uuid, before: i64, until: i64) -> FeedEvent {
        FeedEvent::Cutoff(Cutoff {
            tid: "t1".into(),
            sub,
            before,
            until,
        })
    }

    #[test]
    fn a_revoked_session_is_refused_until_forgotten() {
        let mut r = Revocations::default();
        let u = uuid::Uuid::new_v4();
        assert_eq!(r.apply("t1", &session("t1", "s1", 100)), Then::Nothing);
        assert_eq!(r.check(&claims("s1", u, 10)), Err(Error::SessionRevoked));
        assert_eq!(r.check(&claims("s2", u, 10)), Ok(()));
        r.prune(100);
        assert_eq!(r.check(&claims("s1", u, 10)), Err(Error::SessionRevoked));
        r.prune(101);
        assert_eq!(r.check(&claims("s1", u, 10)), Ok(()));
    }

    #[test]
    fn a_cutoff_refuses_tokens_authenticated_before_it_only() {
        let mut r = Revocations::default();
        let u = uuid::Uuid::new_v4();
        r.apply("t1", &cutoff(u, 50, 500));
        r.apply("t1", &cutoff(u, 40, 900));
        assert_eq!(r.check(&claims("s", u, 49)), Err(Error::SessionRevoked));
        assert_eq!(
            r.check(&claims("s", u, 50)),
            Ok(()),
            "a later login is fine"
        );
        assert_eq!(
            r.check(&claims("s", uuid::Uuid::new_v4(), 1)),
            Ok(()),
            "other users are untouched"
        );
        r.prune(600);
        assert_eq!(
            r.check(&claims("s", u, 49)),
            Err(Error::SessionRevoked),
            "the longest until is kept"
        );
    }

    #[test]
    fn reset_forgets_and_unsyncs_other_tenants_are_ignored_keys_refetch() {
        let mut r = Revocations::default();
        let u = uuid::Uuid::new_v4();
        r.apply("t1", &FeedEvent::Synced);
        assert!(r.synced);
        r.apply("t1", &session("t2", "s9", 100));
        assert_eq!(r.len(), 0);
        r.apply("t1", &session("t1", "s1", 100));
        assert_eq!(r.apply("t1", &FeedEvent::Reset), Then::RefetchKeys);
        assert!(!r.synced);
        assert_eq!(r.check(&claims("s1", u, 1)), Ok(()));
        assert_eq!(
            r.apply("t1", &FeedEvent::Keys(KeysChanged { at: 1 })),
            Then::RefetchKeys
        );
        assert_eq!(
            r.apply("t1", &FeedEvent::Heartbeat { now: 5 }),
            Then::Nothing
        );
    }
}
