//! Column encodings of the model's types. Enums are stored as their wire names, user ids as
//! `UUID` (bound and read as text, cast in SQL), token hashes as 32-byte `BYTEA`.

use crate::error::{DbResult, bad_value};
use sessiond_store::{TenantId, TokenHash};
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashes_must_be_32_bytes() {
        assert_eq!(hash(vec![7; 32]).unwrap(), TokenHash([7; 32]));
        assert!(hash(vec![7; 31]).is_err());
        assert!(seconds(-1).is_err());
    }
}
