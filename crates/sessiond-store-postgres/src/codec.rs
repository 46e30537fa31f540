//! Column encodings of the model's types. Enums are stored as their wire names, user ids as
//! `UUID` (bound and read as text, cast in SQL), token hashes as 32-byte `BYTEA`.

use crate::error::{DbResult, bad_value};
use sessiond_store::{AuthMethod, KeyState, Profile, TenantId, TokenHash, UserStatus};
use uuid::Uuid;

/// Parses a text column through `parse`; `what` names the type in the error.
pub(crate) fn parse_enum<T>(
    what: &str,
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> DbResult<T> {
    parse(text).ok_or_else(|| bad_value(what, text))
}

pub(crate) fn tenant(text: &str) -> DbResult<TenantId> {
    parse_enum("tenant id", text, |s| TenantId::parse(s).ok())
}

pub(crate) fn uuid(text: &str) -> DbResult<Uuid> {
    parse_enum("uuid", text, |s| Uuid::parse_str(s).ok())
}

pub(crate) fn opt_uuid(text: Option<String>) -> DbResult<Option<Uuid>> {
    text.as_deref().map(uuid).transpose()
}

pub(crate) fn hash(bytes: Vec<u8>) -> DbResult<TokenHash> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(TokenHash)
        .map_err(|_| bad_value("token hash of length", &bytes.len().to_string()))
}

/// A non-negative count of seconds stored as BIGINT.
pub(crate) fn seconds(value: i64) -> DbResult<u32> {
    u32::try_from(value).map_err(|_| bad_value("duration", &value.to_string()))
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

    /// The column values are the serde names, so stored values read like the API's.
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

    #[test]
    fn hashes_must_be_32_bytes() {
        assert_eq!(hash(vec![7; 32]).unwrap(), TokenHash([7; 32]));
        assert!(hash(vec![7; 31]).is_err());
        assert!(seconds(-1).is_err());
    }
}
