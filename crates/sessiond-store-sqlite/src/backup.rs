//! A consistent copy of a live database, taken while a server runs on it.

use rusqlite::{Connection, OpenFlags};
use sessiond_store::{StoreError, StoreResult};
use std::path::Path;

/// Writes a consistent copy of the database at `db` to `to` (which must not exist yet), with
/// `VACUUM INTO` on a read-only connection: the copy is one transaction's snapshot, taken
/// beside a running server (WAL readers never block its writer), compacted, and openable as a
/// database on its own.
pub fn backup(db: &Path, to: &Path) -> StoreResult<()> {
    if to.exists() {
        return Err(StoreError::Backend(format!(
            "{} exists already; a backup never overwrites",
            to.display()
        )));
    }
    let fail = |e: rusqlite::Error| StoreError::Backend(format!("backup failed: {e}"));
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(fail)?;
    let target = to
        .to_str()
        .ok_or_else(|| StoreError::Backend("the backup path must be UTF-8".into()))?;
    c.execute("VACUUM INTO ?1", [target]).map_err(fail)?;
    Ok(())
}
