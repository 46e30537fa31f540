//! The schema, its migrations, and the settings every connection is opened with.

use crate::error::{DbError, DbResult};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use sessiond_store::StoreError;
use std::path::Path;
use std::time::Duration;

/// How long a connection waits for a lock another process holds before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every connection keeps this many prepared statements.
const STATEMENT_CACHE: usize = 64;

/// Migration `i` takes the schema from `PRAGMA user_version` `i` to `i + 1`. Append only:
/// a released migration never changes.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10];

const V1: &str = "
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    profile    TEXT NOT NULL,
    overrides  TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    username      TEXT,
    password_hash TEXT,
    external_id   TEXT,
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX users_by_username ON users (tenant_id, username);
CREATE UNIQUE INDEX users_by_external_id ON users (tenant_id, external_id);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    customer_id         TEXT NOT NULL,
    auth_method         TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    idle_ttl            INTEGER,
    user_agent          TEXT,
    ip                  TEXT,
    label               TEXT,
    state               TEXT NOT NULL CHECK (state IN ('active', 'revoked', 'expired')),
    revoke_reason       TEXT,
    state_at            INTEGER,
    CHECK ((state = 'active') = (state_at IS NULL)),
    CHECK ((state = 'revoked') = (revoke_reason IS NOT NULL))
) STRICT;
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_by_created ON sessions (tenant_id, created_at);

CREATE TABLE refresh_tokens (
    hash             BLOB PRIMARY KEY CHECK (length(hash) = 32),
    tenant_id        TEXT NOT NULL,
    session_id       TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at       INTEGER NOT NULL,
    rotated_at       INTEGER,
    successor        BLOB,
    sealed_successor BLOB,
    CHECK ((rotated_at IS NULL) = (successor IS NULL)),
    CHECK ((rotated_at IS NULL) = (sealed_successor IS NULL))
) STRICT;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    position       INTEGER PRIMARY KEY,
    kid            TEXT NOT NULL,
    alg            TEXT NOT NULL,
    public         BLOB NOT NULL,
    sealed_private BLOB NOT NULL,
    state          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    retire_at      INTEGER
) STRICT;

CREATE TABLE audit_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    user_id        TEXT,
    session_id     TEXT,
    activity_id    TEXT NOT NULL,
    correlation_id TEXT,
    ip             TEXT,
    user_agent     TEXT,
    reason         TEXT,
    at             INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_by_user ON audit_events (tenant_id, user_id);
CREATE INDEX audit_by_session ON audit_events (tenant_id, session_id);
CREATE INDEX audit_by_activity ON audit_events (tenant_id, activity_id);
CREATE INDEX audit_by_time ON audit_events (tenant_id, at);
CREATE TRIGGER audit_events_are_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
";

/// SSO: single-use token ids, per-tenant SSO settings, partner secrets and service clients.
/// Users need no new index: V1's `users_by_external_id` already covers
/// `(tenant_id, external_id)`.
const V2: &str = "
CREATE TABLE nonces (
    tenant_id  TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, nonce)
) STRICT;
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

CREATE TABLE sso_settings (
    tenant_id           TEXT PRIMARY KEY,
    issuer              TEXT,
    audience            TEXT NOT NULL,
    sealed_hs256_secret BLOB,
    public_key_pem      TEXT,
    jwks_url            TEXT,
    updated_at          INTEGER NOT NULL
) STRICT;

CREATE TABLE partner_secrets (
    secret_id  TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    hash       BLOB NOT NULL CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE service_clients (
    client_id   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
    audience    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
";

/// Audit retention purges by time across tenants.
const V3: &str = "
CREATE INDEX audit_by_at ON audit_events (at);
";

/// Sessions in creation order: `created_at` has one-second resolution, and sessions created
/// within one second go by `seq` (eviction of the oldest, newest-first listings). Existing
/// rows get their rowid, their order of insertion as far as it is known.
const V4: &str = "
ALTER TABLE sessions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET seq = rowid;
CREATE UNIQUE INDEX sessions_by_seq ON sessions (seq);
DROP INDEX sessions_by_created;
CREATE INDEX sessions_by_created ON sessions (tenant_id, created_at, seq);
DROP INDEX sessions_by_user;
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id, created_at, seq);
";

/// The change log (see `changes.rs`): entries numbered from 1, and the one head row that
/// numbers them and survives purges. A file from before starts an empty log.
const V5: &str = "
CREATE TABLE change_log (
    seq    INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    change TEXT NOT NULL
) STRICT;
CREATE INDEX change_log_by_at ON change_log (at);

CREATE TABLE change_log_head (
    id  INTEGER PRIMARY KEY CHECK (id = 0),
    seq INTEGER NOT NULL,
    at  INTEGER NOT NULL
) STRICT;
INSERT INTO change_log_head (id, seq, at) VALUES (0, 0, 0);
";

/// Session events: a service client's back-channel logout URI (none for existing clients),
/// clients listed per tenant, and the marks kept beside the change log (see `changes.rs`).
const V6: &str = "
ALTER TABLE service_clients ADD COLUMN backchannel_logout_uri TEXT;
CREATE INDEX service_clients_by_tenant ON service_clients (tenant_id, client_id);

CREATE TABLE change_log_marks (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version > 0),
    body    TEXT NOT NULL
) STRICT;
";

/// Re-authentication: a session's `auth_time`. Sessions stored before have none (NULL) and
/// read it as their `created_at` (see `sessions.rs`), so no row is rewritten.
const V7: &str = "
ALTER TABLE sessions ADD COLUMN auth_time INTEGER;
";

/// Opaque partner tokens: a tenant's verification endpoint and the sealed secret sessiond
/// presents to it. Settings stored before have neither (NULL).
const V8: &str = "
ALTER TABLE sso_settings ADD COLUMN verify_url TEXT;
ALTER TABLE sso_settings ADD COLUMN sealed_verify_secret BLOB;
";

/// The timeout sweep (`expire_sessions`): active sessions by absolute expiry. The idle
/// timeout (`last_seen_at + idle_ttl`) is checked on each active session the index yields.
const V9: &str = "
CREATE INDEX sessions_active_by_expiry ON sessions (absolute_expires_at) WHERE state = 'active';
";

/// The console and the admin API: an operator's role (`viewer`, `operator` or `admin`; NULL
/// for everyone else, and for every user stored before), who did what in the audit trail
/// (NULL for events stored before), and partner secrets listed per tenant. Tenants and users
/// are listed by their primary keys, audit counts by `audit_by_time`, a tenant's audit pages
/// (newest first, below a cursor id) by `audit_by_tenant` (`tenant_id`, then the rowid).
const V10: &str = "
ALTER TABLE users ADD COLUMN role TEXT;
ALTER TABLE audit_events ADD COLUMN actor TEXT;
CREATE INDEX partner_secrets_by_tenant ON partner_secrets (tenant_id, secret_id);
CREATE INDEX audit_by_tenant ON audit_events (tenant_id);
";

/// Opens the writing connection, creating the file, and brings the schema up to date.
pub(crate) fn open_writer(path: &Path) -> DbResult<Connection> {
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(backend(format!(
            "cannot use WAL mode (journal_mode is {mode})"
        )));
    }
    // In WAL mode FULL syncs the log on every commit: a committed write survives a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a connection that only reads; the file must exist (the writer opens first).
pub(crate) fn open_reader(path: &Path) -> DbResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> DbResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Applies the migrations the file has not seen, each in its own transaction. The version is
/// read under the write lock, so two processes opening one new file migrate it once.
fn migrate(conn: &mut Connection) -> DbResult<()> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let next = usize::try_from(version)
            .map_err(|_| backend(format!("invalid schema version {version}")))?;
        let Some(sql) = MIGRATIONS.get(next) else {
            if next > MIGRATIONS.len() {
                return Err(backend(format!(
                    "the database has schema version {version}, newer than this sessiond's {}",
                    MIGRATIONS.len()
                )));
            }
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

fn backend(message: String) -> DbError {
    DbError::Store(StoreError::Backend(message))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_the_latest_schema_and_reopening_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(open_writer(&path).unwrap());
        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
        let fk: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(fk);
    }

    /// A file written by the first release migrates forward and keeps its data.
    #[test]
    fn a_version_1_file_migrates_to_the_latest_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let v1 = Connection::open(&path).unwrap();
        v1.execute_batch(V1).unwrap();
        v1.pragma_update(None, "user_version", 1).unwrap();
        v1.execute(
            "INSERT INTO tenants (id, name, profile, overrides, created_at)
             VALUES ('old', NULL, 'production', '{}', 1)",
            [],
        )
        .unwrap();
        drop(v1);

        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let tenants: i64 = conn
            .query_row("SELECT count(*) FROM tenants WHERE id = 'old'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(tenants, 1);
        for table in [
            "nonces",
            "sso_settings",
            "partner_secrets",
            "service_clients",
        ] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table} exists and is empty");
        }
        // Lookups by external id, nonce purges and the timeout sweep use an index, not a scan.
        for (sql, index) in [
            (
                "SELECT id FROM users WHERE tenant_id = 'old' AND external_id = 'x'",
                "users_by_external_id",
            ),
            (
                "SELECT rowid FROM nonces WHERE expires_at <= 5",
                "nonces_by_expiry",
            ),
            (
                "SELECT id FROM sessions WHERE state = 'active' AND NOT (state = 'active'
                     AND 5 < absolute_expires_at
                     AND (idle_ttl IS NULL OR 5 < last_seen_at + idle_ttl))
                 ORDER BY absolute_expires_at LIMIT 5",
                "sessions_active_by_expiry",
            ),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{sql}: {plan:?}"
            );
        }
    }

    /// A database file with the first `version` migrations applied, as a release of that
    /// schema left it: the dir holding it, its path and a connection to it.
    fn file_at_version(version: usize) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let old = Connection::open(&path).unwrap();
        for (i, sql) in MIGRATIONS[..version].iter().enumerate() {
            old.execute_batch(sql).unwrap();
            old.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        (dir, path, old)
    }

    /// Sessions written before V4 are numbered in their order of insertion; later ones
    /// come after them.
    #[test]
    fn a_version_3_file_numbers_its_sessions_in_insertion_order() {
        let (_dir, path, old) = file_at_version(3);
        for id in ["c", "a", "b"] {
            old.execute(
                "INSERT INTO sessions (id, tenant_id, user_id, customer_id, auth_method,
                     created_at, last_seen_at, absolute_expires_at, state)
                 VALUES (?1, 't', 'u', 'c', 'password', 5, 5, 100, 'active')",
                [id],
            )
            .unwrap();
        }
        drop(old);

        let conn = open_writer(&path).unwrap();
        conn.execute(
            "INSERT INTO sessions (id, tenant_id, user_id, customer_id, auth_method,
                 created_at, last_seen_at, absolute_expires_at, state, seq)
             VALUES ('0', 't', 'u', 'c', 'password', 5, 5, 100, 'active',
                     (SELECT ifnull(max(seq), 0) + 1 FROM sessions))",
            [],
        )
        .unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM sessions ORDER BY created_at, seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["c", "a", "b", "0"]);
    }

    /// A file from before the change log gets an empty one, numbered from 1.
    #[test]
    fn a_version_4_file_gets_an_empty_change_log() {
        let (_dir, path, old) = file_at_version(4);
        old.execute(
            "INSERT INTO tenants (id, name, profile, overrides, created_at)
             VALUES ('old', NULL, 'production', '{}', 1)",
            [],
        )
        .unwrap();
        drop(old);

        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let tenants: i64 = conn
            .query_row("SELECT count(*) FROM tenants", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tenants, 1, "the data stays");
        assert_eq!(crate::changes::head(&conn).unwrap(), 0);
        crate::changes::log(&conn, &sessiond_store::Change::KeyringChanged).unwrap();
        let read = crate::changes::read(&conn, 0, 10).unwrap();
        let sessiond_store::LogRead::Entries(entries) = read else {
            panic!("{read:?}");
        };
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].seq, 1);
        assert_eq!(entries[0].change, sessiond_store::Change::KeyringChanged);
    }

    /// Clients from before V6 have no back-channel logout URI; the file gets no marks.
    #[test]
    fn a_version_5_file_keeps_its_clients_without_a_logout_uri() {
        let (_dir, path, old) = file_at_version(5);
        old.execute(
            "INSERT INTO service_clients (client_id, tenant_id, secret_hash, audience, created_at)
             VALUES ('old', 't', zeroblob(32), 'aud', 1)",
            [],
        )
        .unwrap();
        drop(old);

        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let uri: Option<String> = conn
            .query_row(
                "SELECT backchannel_logout_uri FROM service_clients WHERE client_id = 'old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(uri, None);
        assert_eq!(crate::changes::load_mark(&conn, "events").unwrap(), None);
        assert_eq!(
            crate::changes::swap_mark(&conn, "events", None, "b").unwrap(),
            Some(1)
        );
    }

    /// Sessions from before V7 have no `auth_time` stored and read it as their `created_at`:
    /// in listings, when re-authenticated, and in the change log when they end.
    #[test]
    fn a_version_6_file_reads_auth_time_as_created_at() {
        use sessiond_store::{Change, LogRead, RevokeReason, SessionId, TenantId};
        let (_dir, path, old) = file_at_version(6);
        let user = uuid::Uuid::from_u128(1);
        for (seq, id) in ["a", "b"].iter().enumerate() {
            old.execute(
                "INSERT INTO sessions (id, tenant_id, user_id, customer_id, auth_method,
                     created_at, last_seen_at, absolute_expires_at, state, seq)
                 VALUES (?1, 't', ?2, ?2, 'password', 5, 5, 100, 'active', ?3)",
                rusqlite::params![id, user.to_string(), seq as i64 + 1],
            )
            .unwrap();
        }
        drop(old);

        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let stored: Option<i64> = conn
            .query_row("SELECT auth_time FROM sessions WHERE id = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, None, "no row is rewritten");
        let t = TenantId::parse("t").unwrap();
        let (a, b) = (
            SessionId::from_generated("a".into()),
            SessionId::from_generated("b".into()),
        );
        let s = crate::sessions::get(&conn, &t, &a).unwrap().unwrap();
        assert_eq!((s.created_at, s.auth_time), (5, 5));

        let s = crate::sessions::reauthenticate(&conn, &t, &a, 50)
            .unwrap()
            .unwrap();
        assert_eq!((s.auth_time, s.last_seen_at), (50, 50));
        assert_eq!(crate::sessions::get(&conn, &t, &a).unwrap().unwrap(), s);

        let ended = crate::sessions::revoke(&conn, &t, &b, RevokeReason::Logout, 60)
            .unwrap()
            .unwrap();
        assert_eq!(ended.auth_time, 5);
        let LogRead::Entries(entries) = crate::changes::read(&conn, 0, 10).unwrap() else {
            panic!("the log reads");
        };
        assert!(
            matches!(
                &entries[..],
                [e] if matches!(e.change, Change::SessionEnded { auth_time: Some(5), .. })
            ),
            "{entries:?}"
        );
    }

    /// SSO settings from before V8 keep what they had and have no verification endpoint or
    /// secret; replacing them stores both.
    #[test]
    fn a_version_7_file_reads_sso_settings_without_a_verify_url() {
        use sessiond_store::{SsoSettings, TenantId};
        let (_dir, path, old) = file_at_version(7);
        old.execute(
            "INSERT INTO sso_settings (tenant_id, issuer, audience, sealed_hs256_secret,
                 public_key_pem, jwks_url, updated_at)
             VALUES ('t', 'https://partner.example', 'aud', x'00ff01', NULL, NULL, 5)",
            [],
        )
        .unwrap();
        drop(old);

        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let t = TenantId::parse("t").unwrap();
        let read = crate::identity::get_sso(&conn, &t).unwrap();
        let kept = SsoSettings {
            issuer: Some("https://partner.example".into()),
            audience: "aud".into(),
            sealed_hs256_secret: Some(vec![0x00, 0xff, 0x01]),
            public_key_pem: None,
            jwks_url: None,
            verify_url: None,
            sealed_verify_secret: None,
            updated_at: 5,
        };
        assert_eq!(read, Some(kept.clone()));
        assert_eq!(
            read.and_then(|s| s.sealed_hs256_secret),
            Some(vec![0, 255, 1])
        );

        let replaced = SsoSettings {
            sealed_hs256_secret: None,
            verify_url: Some("https://partner.example/verify".into()),
            sealed_verify_secret: Some(vec![0x00, 0xff]),
            updated_at: 6,
            ..kept
        };
        crate::identity::set_sso(&conn, &t, &replaced).unwrap();
        let read = crate::identity::get_sso(&conn, &t).unwrap();
        assert_eq!(
            read.as_ref().and_then(|s| s.sealed_verify_secret.clone()),
            Some(vec![0x00, 0xff])
        );
        assert_eq!(read, Some(replaced));
    }

    /// Users from before V10 have no operator role and audit events no actor; an unknown
    /// stored role is a store error, not a panic.
    #[test]
    fn a_version_9_file_reads_users_without_a_role_and_events_without_an_actor() {
        use sessiond_store::{AuditQuery, StoreError, TenantId};
        let (_dir, path, old) = file_at_version(9);
        let user = uuid::Uuid::from_u128(1);
        old.execute(
            "INSERT INTO users (tenant_id, id, customer_id, username, status, created_at)
             VALUES ('t', ?1, ?1, 'old', 'active', 5)",
            [user.to_string()],
        )
        .unwrap();
        old.execute(
            "INSERT INTO audit_events (tenant_id, kind, activity_id, at)
             VALUES ('t', 'login_succeeded', 'act', 5)",
            [],
        )
        .unwrap();
        drop(old);

        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let t = TenantId::parse("t").unwrap();
        let read = crate::identity::get_user(&conn, &t, &user)
            .unwrap()
            .unwrap();
        assert_eq!(read.role, None);
        let events = crate::identity::find_audit(
            &conn,
            &t,
            &AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor, None);

        conn.execute("UPDATE users SET role = 'root'", []).unwrap();
        let err = StoreError::from(crate::identity::get_user(&conn, &t, &user).unwrap_err());
        assert!(
            matches!(&err, StoreError::Backend(m) if m.contains("unknown role")),
            "{err:?}"
        );
        // Partner secrets are listed per tenant by an index.
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT secret_id FROM partner_secrets WHERE tenant_id = 't'
                 ORDER BY secret_id",
            )
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("partner_secrets_by_tenant")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = open_writer(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = open_writer(&path).map(|_| ()).unwrap_err();
        assert!(matches!(err, DbError::Store(StoreError::Backend(m)) if m.contains("newer")));
    }

    #[test]
    fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let _writer = open_writer(&path).unwrap();
        let reader = open_reader(&path).unwrap();
        assert!(reader.execute("DELETE FROM tenants", []).is_err());
    }
}
