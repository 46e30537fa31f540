//! How PostgreSQL's failures become `StoreError`s: the one mapping of this crate.

use sessiond_store::StoreError;

/// An error inside a store operation: sqlx's own, or a store outcome such as `LimitReached`
/// that the operation decided on.
#[derive(Debug)]
pub(crate) enum DbError {
    Sqlx(sqlx::Error),
    Store(StoreError),
}

pub(crate) type DbResult<T> = Result<T, DbError>;

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Sqlx(e)
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
            DbError::Sqlx(e) => store_error(e),
        }
    }
}

/// A value read from the database that this version cannot understand.
pub(crate) fn bad_value(what: &str, value: &str) -> DbError {
    DbError::Store(StoreError::Backend(format!(
        "unknown {what} {value:?} in the database"
    )))
}

/// The mapping: an unreachable, overloaded or too slow server is `Unavailable` (the request
/// may be retried), a taken unique value is `Conflict`, anything else is `Backend`.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Io(_) | E::Tls(_) => {
            StoreError::Unavailable(format!("postgres: {e}"))
        }
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code == UNIQUE_VIOLATION {
                StoreError::Conflict
            } else if is_unavailable(&code) {
                StoreError::Unavailable(format!("postgres ({code}): {e}"))
            } else {
                StoreError::Backend(format!("postgres ({code}): {e}"))
            }
        }
        _ => StoreError::Backend(format!("postgres: {e}")),
    }
}

const UNIQUE_VIOLATION: &str = "23505";

/// SQLSTATEs that mean "not now": connection exceptions (class 08), the server shutting
/// down or starting (57P01-57P05), a statement cancelled by `statement_timeout` (57014)
/// and too many connections (53300).
fn is_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P0") || code == "57014" || code == "53300"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            assert!(matches!(store_error(e), StoreError::Unavailable(_)));
        }
        assert!(matches!(
            store_error(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }

    #[test]
    fn sqlstates_are_classified() {
        for code in ["08006", "08001", "57P01", "57P03", "57014", "53300"] {
            assert!(is_unavailable(code), "{code}");
        }
        for code in ["23505", "42P01", "40P01", "22001"] {
            assert!(!is_unavailable(code), "{code}");
        }
    }
}
