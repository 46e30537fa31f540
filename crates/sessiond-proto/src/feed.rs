//! The revocation feed: what an offline verifier must refuse besides what a token's signature
//! and claims say.
//!
//! `GET /oauth2/revocations` (a service client's credentials as HTTP Basic) answers
//! `text/event-stream`
//! (Server-Sent Events). Every event carries an `id:` line — the cursor just after it — and an
//! `event:` line naming its [`FeedEvent`] type; its `data:` line is the event as JSON. A
//! client resumes by sending the last cursor it saw as `Last-Event-ID` (or `?cursor=`); any
//! node of a deployment resumes any node's cursor.
//!
//! A stream starts with either the entries after the cursor, or — when there is no cursor or it
//! cannot be resumed (too old, another deployment) — a [`FeedEvent::Reset`] followed by every
//! entry still in force. Then [`FeedEvent::Synced`], then entries as they happen, with a
//! [`FeedEvent::Heartbeat`] at least every [`HEARTBEAT_MS`] milliseconds. The reset and the
//! entries after it carry an empty `id:` up to `synced`, which carries the cursor: a stream
//! cut off in between has nothing to resume from, and starts over. A client that has
//! heard nothing (heartbeats included) for longer than its bound must stop trusting its copy.
//!
//! The feed is scoped to the service client's tenant; key changes are deployment-wide.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How often the server sends a heartbeat on an idle stream, at most.
pub const HEARTBEAT_MS: u64 = 250;

/// The `Content-Type` of the feed.
pub const EVENT_STREAM: &str = "text/event-stream";

/// One event of the revocation feed (the SSE `data:` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedEvent {
    /// Forget every entry received so far and fetch the JWKS again: what is in force follows
    /// (key changes are not repeated in it).
    Reset,
    /// Refuse every token of this session.
    Session(SessionRevoked),
    /// Refuse every token of this user whose `auth_time` is before `before` (a logout of all
    /// the user's sessions, a partner logout, a password change, a disabled account).
    Cutoff(Cutoff),
    /// The keyring changed (a rotation or an emergency key revocation): fetch the JWKS again
    /// now, and refuse tokens signed by a key that left it.
    Keys(KeysChanged),
    /// Everything in force up to now has been sent; live entries follow.
    Synced,
    /// The stream is alive. `now` is the server's clock, Unix milliseconds.
    Heartbeat { now: i64 },
}

impl FeedEvent {
    /// The SSE `event:` name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            FeedEvent::Reset => "reset",
            FeedEvent::Session(_) => "session",
            FeedEvent::Cutoff(_) => "cutoff",
            FeedEvent::Keys(_) => "keys",
            FeedEvent::Synced => "synced",
            FeedEvent::Heartbeat { .. } => "heartbeat",
        }
    }
}

/// One Server-Sent Event of the feed, as its fields (the schema of `text/event-stream`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedMessage {
    /// The cursor after this event: send it back as `Last-Event-ID` to resume. Empty from a
    /// `reset` up to `synced`.
    #[serde(default)]
    pub id: String,
    /// The event's type: `reset`, `session`, `cutoff`, `keys`, `synced` or `heartbeat`.
    #[schema(example = "session")]
    pub event: String,
    /// The event as JSON (a `FeedEvent`).
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// A session that ended before its tokens expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionRevoked {
    /// The tenant id.
    pub tid: String,
    /// The session id (the token's `sid`).
    pub sid: String,
    /// The user id (the token's `sub`).
    pub sub: uuid::Uuid,
    /// When it ended, Unix seconds.
    pub at: i64,
    /// After this instant (Unix seconds) no token of the session can still be valid: the entry
    /// may be forgotten.
    pub until: i64,
}

/// Every session a user had before an instant ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cutoff {
    /// The tenant id.
    pub tid: String,
    /// The user id (the token's `sub`).
    pub sub: uuid::Uuid,
    /// Tokens with `auth_time` < `before` (Unix seconds) are refused.
    pub before: i64,
    /// After this instant (Unix seconds) the entry may be forgotten.
    pub until: i64,
}

/// The keyring changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeysChanged {
    /// When, Unix seconds.
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_type() {
        let e = FeedEvent::Cutoff(Cutoff {
            tid: "t".into(),
            sub: uuid::Uuid::nil(),
            before: 10,
            until: 20,
        });
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(json["type"], "cutoff");
        assert_eq!(json["before"], 10);
        let back: FeedEvent = serde_json::from_value(json).unwrap_or(FeedEvent::Reset);
        assert_eq!(back, e);
        assert_eq!(e.name(), "cutoff");
        let hb = serde_json::to_value(FeedEvent::Heartbeat { now: 5 }).unwrap_or_default();
        assert_eq!(hb, serde_json::json!({"type": "heartbeat", "now": 5}));
    }
}
