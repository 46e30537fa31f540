//! Column encodings of the model's types. Enums are stored as their wire names.

use crate::error::bad_column;
use rusqlite::Row;
use sessiond_store::{SessionId, TenantId, TokenHash};
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

/// Reads a nullable text column through `parse`; `what` names the type in the error.
pub(crate) fn opt_enum_col<T>(
    row: &Row<'_>,
    idx: usize,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<Option<T>> {
    match row.get_ref(idx)?.as_str_or_null()? {
        None => Ok(None),
        Some(text) => parse(text)
            .map(Some)
            .ok_or_else(|| bad_column(idx, what, text)),
    }
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
