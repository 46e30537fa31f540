//! The key layout. Every key of one [`Route`] carries the same hash tag `{r<route>}`, so a
//! user's sessions, their index, their refresh tokens and the route's change log partition
//! live on one Cluster slot and one script can change them together.
//!
//! The session indexes (a user's, a tenant's) are scored `created_at * 2^20 + n`, `n` the
//! session's rank among the index's sessions created in the same second, so they list in
//! creation order; `created_at` is `floor(score / 2^20)` (see `index_score` in
//! lua/common.lua). Each index is scored by a script on its own slot: the user's by the
//! create script, the tenant's by lua/index.lua. Members scored `created_at` by an older
//! sessiond sort before every ranked one.
//!
//! The timeouts zset holds the id of each active session of the route, scored by the instant
//! it times out (`Session::expires_at`): written by the scripts that create a session or move
//! its `last_seen_at` (touch, rotate, re-authenticate), a member removed by the scripts that
//! end the session (revocations, `mark_expired`, the sweep). `expire_sessions` reads it
//! instead of the keyspace. It has no expiry of its own: its members leave as their sessions
//! end, at the latest when the sweep finds them timed out (or their record gone). A session
//! created by a sessiond from before it has no member until a touch, rotation or
//! re-authentication scores it; until then only `mark_expired` records its timeout.
//!
//! ```text
//! <prefix>{r<route>}:s:<session id>        hash   session record (see lua/common.lua)
//! <prefix>{r<route>}:u:<tenant>:<user>     zset   the user's sessions, score created_at ranked
//! <prefix>{r<route>}:rt:<hex hash>         hash   refresh token
//! <prefix>{r<route>}:log                   zset   change log partition, score seq
//! <prefix>{r<route>}:logseq                string last seq of the partition
//! <prefix>{r<route>}:timeouts              zset   the route's active sessions, score their timeout
//! <prefix>{t:<tenant>}:sessions            zset   the tenant's sessions, score created_at ranked
//! <prefix>{meta}:tenants                   set    tenants with a session index
//! <prefix>{n:<tenant>}:<nonce>             string a used nonce, value its expiry
//! <prefix>{c:<key>}                        hash   a shared counter: count, last hit
//! <prefix>{m:<name>}                       hash   a mark beside the change log (lua/mark.lua)
//! <prefix>changes                          pub/sub channel of change hints (payload: route)
//! ```

use sessiond_store::{Route, SessionId, TenantId, TokenHash, UserId};

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// The start shared by every key of `route`; scripts append `s:<id>` / `rt:<hex>` to it.
    pub(crate) fn base(&self, route: Route) -> String {
        format!("{}{{r{}}}:", self.prefix, route.0)
    }

    pub(crate) fn session(&self, id: &SessionId) -> String {
        format!("{}s:{}", self.base(id.route()), id.as_str())
    }

    pub(crate) fn user_index(&self, tenant: &TenantId, user: &UserId) -> String {
        format!("{}u:{}:{}", self.base(Route::of_user(user)), tenant, user)
    }

    pub(crate) fn refresh(&self, hash: &TokenHash) -> String {
        format!("{}rt:{}", self.base(Route::of_hash(hash)), hex(hash))
    }

    pub(crate) fn log(&self, route: Route) -> String {
        format!("{}log", self.base(route))
    }

    pub(crate) fn logseq(&self, route: Route) -> String {
        format!("{}logseq", self.base(route))
    }

    pub(crate) fn timeouts(&self, route: Route) -> String {
        format!("{}timeouts", self.base(route))
    }

    pub(crate) fn tenant_index(&self, tenant: &TenantId) -> String {
        format!("{}{{t:{}}}:sessions", self.prefix, tenant)
    }

    pub(crate) fn counter(&self, key: &str) -> String {
        format!("{}{{c:{}}}", self.prefix, key)
    }

    /// One key, so one slot, whatever the name.
    pub(crate) fn mark(&self, name: &str) -> String {
        format!("{}{{m:{}}}", self.prefix, name)
    }

    pub(crate) fn tenants(&self) -> String {
        format!("{}{{meta}}:tenants", self.prefix)
    }

    pub(crate) fn nonce(&self, tenant: &TenantId, nonce: &str) -> String {
        format!("{}{{n:{}}}:{}", self.prefix, tenant, nonce)
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }
}

pub(crate) fn hex(hash: &TokenHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in hash.0 {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

pub(crate) fn unhex(s: &[u8]) -> Option<TokenHash> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(TokenHash(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_round_trips() {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i * 37) as u8;
        }
        let h = TokenHash(b);
        assert_eq!(unhex(hex(&h).as_bytes()), Some(h));
        assert_eq!(unhex(b"zz"), None);
    }

    #[test]
    fn a_routes_keys_share_one_hash_tag() {
        let keys = Keys::new("p:".into());
        let user = uuid::Uuid::new_v4();
        let route = Route::of_user(&user);
        let id = SessionId::generate(route, [1; 15]);
        let tenant = TenantId::parse("t").unwrap();
        let token = TokenHash::routed([9; 32], route);
        let tag = format!("p:{{r{}}}:", route.0);
        for k in [
            keys.session(&id),
            keys.user_index(&tenant, &user),
            keys.refresh(&token),
            keys.log(route),
            keys.logseq(route),
            keys.timeouts(route),
        ] {
            assert!(k.starts_with(&tag), "{k}");
        }
    }
}
