//! Records as Redis hashes (field names in `lua/common.lua`), and reading script replies.

use crate::keys::unhex;
use redis::Value;
use sessiond_store::{
    AuthMethod, DeviceInfo, RefreshRecord, RevokeReason, Rotated, Session, SessionId, SessionState,
    StoreError, StoreResult, TenantId, TokenHash, UnixTime,
};
use std::collections::HashMap;

pub(crate) type Fields = HashMap<String, Vec<u8>>;

fn bad(what: &str) -> StoreError {
    StoreError::Backend(format!("unexpected Redis data: {what}"))
}

/// The session's hash fields, as name, value pairs.
pub(crate) fn session_fields(s: &Session) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("t", s.tenant_id.to_string()),
        ("u", s.user_id.to_string()),
        ("c", s.customer_id.to_string()),
        (
            "m",
            match s.auth_method {
                AuthMethod::Password => "password",
                AuthMethod::Sso => "sso",
            }
            .to_owned(),
        ),
        ("ca", s.created_at.to_string()),
        ("au", s.auth_time.to_string()),
        ("ls", s.last_seen_at.to_string()),
        ("ax", s.absolute_expires_at.to_string()),
    ];
    if let Some(ttl) = s.idle_ttl {
        f.push(("it", ttl.to_string()));
    }
    for (name, v) in [
        ("ua", &s.device.user_agent),
        ("ip", &s.device.ip),
        ("lb", &s.device.label),
    ] {
        if let Some(v) = v {
            f.push((name, v.clone()));
        }
    }
    match s.state {
        SessionState::Active => f.push(("st", "a".into())),
        SessionState::Revoked { reason, at } => {
            f.push(("st", "r".into()));
            f.push(("sr", reason.as_str().into()));
            f.push(("sa", at.to_string()));
        }
        SessionState::Expired { at } => {
            f.push(("st", "e".into()));
            f.push(("sa", at.to_string()));
        }
    }
    f
}

fn text(f: &Fields, name: &str) -> StoreResult<Option<String>> {
    f.get(name)
        .map(|v| String::from_utf8(v.clone()).map_err(|_| bad(name)))
        .transpose()
}

fn need(f: &Fields, name: &str) -> StoreResult<String> {
    text(f, name)?.ok_or_else(|| bad(name))
}

fn int<T: std::str::FromStr>(f: &Fields, name: &str) -> StoreResult<T> {
    need(f, name)?.parse().map_err(|_| bad(name))
}

fn uuid(f: &Fields, name: &str) -> StoreResult<uuid::Uuid> {
    need(f, name)?.parse().map_err(|_| bad(name))
}

fn tenant(f: &Fields) -> StoreResult<TenantId> {
    TenantId::parse(&need(f, "t")?).map_err(|_| bad("tenant"))
}

/// A session record; one stored before `auth_time` (no `au`) has its `created_at` as
/// `auth_time`.
pub(crate) fn parse_session(id: SessionId, f: &Fields) -> StoreResult<Session> {
    let state = match need(f, "st")?.as_str() {
        "a" => SessionState::Active,
        "r" => SessionState::Revoked {
            reason: RevokeReason::parse(&need(f, "sr")?).ok_or_else(|| bad("reason"))?,
            at: int(f, "sa")?,
        },
        "e" => SessionState::Expired { at: int(f, "sa")? },
        _ => return Err(bad("state")),
    };
    Ok(Session {
        id,
        tenant_id: tenant(f)?,
        user_id: uuid(f, "u")?,
        customer_id: uuid(f, "c")?,
        auth_method: match need(f, "m")?.as_str() {
            "password" => AuthMethod::Password,
            "sso" => AuthMethod::Sso,
            _ => return Err(bad("auth method")),
        },
        created_at: int(f, "ca")?,
        auth_time: int(f, if f.contains_key("au") { "au" } else { "ca" })?,
        last_seen_at: int(f, "ls")?,
        absolute_expires_at: int(f, "ax")?,
        idle_ttl: f.contains_key("it").then(|| int(f, "it")).transpose()?,
        device: DeviceInfo {
            user_agent: text(f, "ua")?,
            ip: text(f, "ip")?,
            label: text(f, "lb")?,
        },
        state,
    })
}

pub(crate) fn parse_refresh(hash: TokenHash, f: &Fields) -> StoreResult<RefreshRecord> {
    let rotated = match f.get("ra") {
        None => None,
        Some(_) => Some(Rotated {
            at: int(f, "ra")?,
            successor: f
                .get("rs")
                .and_then(|v| unhex(v))
                .ok_or_else(|| bad("successor"))?,
            sealed_successor: f.get("rz").cloned().unwrap_or_default(),
        }),
    };
    Ok(RefreshRecord {
        hash,
        tenant_id: tenant(f)?,
        session_id: SessionId::from_generated(need(f, "s")?),
        expires_at: int(f, "x")?,
        rotated,
    })
}

/// Is the session (given as its `st ls ax it` fields) active at `now`? As `active_at` in Lua.
pub(crate) fn active_at(st: &[Option<String>], now: UnixTime) -> bool {
    let num = |i: usize| {
        st.get(i)
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse::<i64>().ok())
    };
    if st.first().and_then(|v| v.as_deref()) != Some("a") {
        return false;
    }
    let Some(mut expires) = num(2) else {
        return false;
    };
    if let (Some(seen), Some(idle)) = (num(1), num(3)) {
        expires = expires.min(seen + idle);
    }
    now < expires
}

// ---------------------------------------------------------------------------------------
// Replies

pub(crate) fn array(v: Value) -> StoreResult<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad("expected an array")),
    }
}

pub(crate) fn bytes(v: Value) -> StoreResult<Vec<u8>> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        _ => Err(bad("expected a string")),
    }
}

pub(crate) fn string(v: Value) -> StoreResult<String> {
    String::from_utf8(bytes(v)?).map_err(|_| bad("expected UTF-8"))
}

pub(crate) fn opt_string(v: Value) -> StoreResult<Option<String>> {
    match v {
        Value::Nil => Ok(None),
        v => string(v).map(Some),
    }
}

pub(crate) fn int_value(v: Value) -> StoreResult<i64> {
    match v {
        Value::Int(i) => Ok(i),
        Value::Nil => Ok(0),
        v => string(v)?.parse().map_err(|_| bad("expected an integer")),
    }
}

/// A hash as HGETALL gives it (a flat array, or a map in RESP3).
pub(crate) fn fields(v: Value) -> StoreResult<Fields> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(m) => m,
        v => {
            let mut flat = array(v)?.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                pairs.push((k, v));
            }
            pairs
        }
    };
    pairs
        .into_iter()
        .map(|(k, v)| Ok((string(k)?, bytes(v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sessiond_store::Route;

    #[test]
    fn sessions_round_trip() {
        let user = uuid::Uuid::new_v4();
        let mut s = Session {
            id: SessionId::generate(Route::of_user(&user), [3; 15]),
            tenant_id: TenantId::parse("t-1").unwrap(),
            user_id: user,
            customer_id: uuid::Uuid::new_v4(),
            auth_method: AuthMethod::Sso,
            created_at: 10,
            auth_time: 15,
            last_seen_at: 20,
            absolute_expires_at: 30,
            idle_ttl: Some(5),
            device: DeviceInfo {
                user_agent: Some(String::new()),
                ip: None,
                label: Some("x".into()),
            },
            state: SessionState::Revoked {
                reason: RevokeReason::Admin,
                at: 25,
            },
        };
        for state in [
            s.state,
            SessionState::Active,
            SessionState::Expired { at: 26 },
        ] {
            s.state = state;
            let f: Fields = session_fields(&s)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into_bytes()))
                .collect();
            assert_eq!(parse_session(s.id.clone(), &f).unwrap(), s);
        }
    }

    /// A record written before `auth_time` was stored has none: it is its `created_at`.
    #[test]
    fn an_older_record_reads_auth_time_as_created_at() {
        let user = uuid::Uuid::new_v4();
        let s = Session {
            id: SessionId::generate(Route::of_user(&user), [4; 15]),
            tenant_id: TenantId::parse("t-1").unwrap(),
            user_id: user,
            customer_id: uuid::Uuid::new_v4(),
            auth_method: AuthMethod::Password,
            created_at: 10,
            auth_time: 10,
            last_seen_at: 20,
            absolute_expires_at: 30,
            idle_ttl: None,
            device: DeviceInfo::default(),
            state: SessionState::Active,
        };
        let f: Fields = session_fields(&Session {
            auth_time: 17,
            ..s.clone()
        })
        .into_iter()
        .filter(|(k, _)| *k != "au")
        .map(|(k, v)| (k.to_owned(), v.into_bytes()))
        .collect();
        assert_eq!(parse_session(s.id.clone(), &f).unwrap(), s);
    }

    #[test]
    fn activity_agrees_with_the_model() {
        let some = |s: &str| Some(s.to_owned());
        let st = [some("a"), some("100"), some("1000"), some("60")];
        assert!(active_at(&st, 159));
        assert!(!active_at(&st, 160));
        let st = [some("a"), some("100"), some("1000"), None];
        assert!(active_at(&st, 999));
        assert!(!active_at(&st, 1000));
        assert!(!active_at(&[some("r"), some("1"), some("9"), None], 2));
        assert!(!active_at(&[None, None, None, None], 2));
    }
}
