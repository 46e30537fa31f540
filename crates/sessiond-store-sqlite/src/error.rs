//! How SQLite's failures become `StoreError`s.

use rusqlite::ffi;
use sessiond_store::StoreError;

/// An error inside a store operation: SQLite's own, or a store outcome such as
/// `LimitReached` that the operation decided on.
#[derive(Debug)]
pub(crate) enum DbError {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

pub(crate) type DbResult<T> = Result<T, DbError>;

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<StoreError> for DbError {
    fn from(e: StoreError) -> Self {
        DbError::Store(e)
    }
}

impl From<serde_json::Error> for DbError {
    fn from(e: serde_json::Error) -> Self {
        DbError::Store(StoreError::Backend(format!("json: {e}")))
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Store(e) => e,
            DbError::Sqlite(e) if is_uniqueness_violation(&e) => StoreError::Conflict,
            DbError::Sqlite(e) => StoreError::Backend(format!("sqlite: {e}")),
        }
    }
}

/// A taken primary key or unique value: the caller asked for something that already exists.
fn is_uniqueness_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// A column holding a value this version cannot read.
pub(crate) fn bad_column(idx: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}
