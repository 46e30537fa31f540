//! Column encodings of the model's types. Enums are stored as their wire names.

use crate::error::bad_column;
use rusqlite::Row;
use sessiond_store::{AuthMethod, KeyState, Profile, SessionId, TenantId, TokenHash, UserStatus};
use uuid::Uuid;

/// Reads a text column through `parse`; `what` names the type in the error.
pub(crate) fn enum_col<T>(
    row: &Row<'_>,
    idx: usize,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text = row.get_ref(idx)?.as_str()?;
    parse(text).ok_or_else(|| bad_column(idx, what, text))
}

pub(crate) fn tenant_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<TenantId> {
    enum_col(row, idx, "tenant id", |s| TenantId::parse(s).ok())
}

pub(crate) fn session_id_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<SessionId> {
    Ok(SessionId::from_generated(row.get(idx)?))
}

pub(crate) fn uuid_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    enum_col(row, idx, "uuid", |s| Uuid::parse_str(s).ok())
}

pub(crate) fn opt_uuid_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Uuid>> {
    match row.get_ref(idx)?.as_str_or_null()? {
        None => Ok(None),
        Some(s) => Uuid::parse_str(s)
            .map(Some)
            .map_err(|_| bad_column(idx, "uuid", s)),
    }
}

pub(crate) fn hash_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<TokenHash> {
    Ok(TokenHash(row.get(idx)?))
}

pub(crate) fn opt_hash_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<TokenHash>> {
    Ok(row.get::<_, Option<[u8; 32]>>(idx)?.map(TokenHash))
}

pub(crate) fn parse_profile(s: &str) -> Option<Profile> {
    [
        Profile::Playground,
        Profile::Integration,
        Profile::Production,
    ]
    .into_iter()
    .find(|p| p.as_str() == s)
}

pub(crate) fn user_status_str(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
    }
}

pub(crate) fn parse_user_status(s: &str) -> Option<UserStatus> {
    [UserStatus::Active, UserStatus::Disabled]
        .into_iter()
        .find(|x| user_status_str(*x) == s)
}

pub(crate) fn auth_method_str(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Password => "password",
        AuthMethod::Sso => "sso",
    }
}

pub(crate) fn parse_auth_method(s: &str) -> Option<AuthMethod> {
    [AuthMethod::Password, AuthMethod::Sso]
        .into_iter()
        .find(|x| auth_method_str(*x) == s)
}

pub(crate) fn key_state_str(state: KeyState) -> &'static str {
    match state {
        KeyState::Signing => "signing",
        KeyState::Next => "next",
        KeyState::Retiring => "retiring",
    }
}

pub(crate) fn parse_key_state(s: &str) -> Option<KeyState> {
    [KeyState::Signing, KeyState::Next, KeyState::Retiring]
        .into_iter()
        .find(|x| key_state_str(*x) == s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The column names are the serde names, so stored values read like the API's.
    #[test]
    fn enum_names_match_serde() {
        let json = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        for p in [
            Profile::Playground,
            Profile::Integration,
            Profile::Production,
        ] {
            assert_eq!(json(serde_json::to_value(p).unwrap()), p.as_str());
            assert_eq!(parse_profile(p.as_str()), Some(p));
        }
        for s in [UserStatus::Active, UserStatus::Disabled] {
            assert_eq!(json(serde_json::to_value(s).unwrap()), user_status_str(s));
            assert_eq!(parse_user_status(user_status_str(s)), Some(s));
        }
        for m in [AuthMethod::Password, AuthMethod::Sso] {
            assert_eq!(json(serde_json::to_value(m).unwrap()), auth_method_str(m));
            assert_eq!(parse_auth_method(auth_method_str(m)), Some(m));
        }
        for k in [KeyState::Signing, KeyState::Next, KeyState::Retiring] {
            assert_eq!(json(serde_json::to_value(k).unwrap()), key_state_str(k));
            assert_eq!(parse_key_state(key_state_str(k)), Some(k));
        }
        assert_eq!(parse_profile("staging"), None);
    }
}
