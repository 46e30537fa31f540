//! The schema and its migrations.

use crate::error::DbResult;
use sessiond_store::{StoreError, StoreResult};
use sqlx::{Executor as _, PgPool};

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: a released
/// migration never changes.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// How long one migration run may take, waiting for another node's included.
const MIGRATION_TIMEOUT: &str = "120s";

const V1: &str = "
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    profile    TEXT NOT NULL,
    overrides  JSONB NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    tenant_id     TEXT NOT NULL,
    id            UUID NOT NULL,
    customer_id   UUID NOT NULL,
    username      TEXT,
    password_hash TEXT,
    external_id   TEXT,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT users_unique_username UNIQUE (tenant_id, username),
    CONSTRAINT users_unique_external_id UNIQUE (tenant_id, external_id)
);

-- Room on every page for HOT updates: touches and rotations change no indexed column.
CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    user_id             UUID NOT NULL,
    customer_id         UUID NOT NULL,
    auth_method         TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    idle_ttl            BIGINT CHECK (idle_ttl >= 0),
    user_agent          TEXT,
    ip                  TEXT,
    label               TEXT,
    state               TEXT NOT NULL CHECK (state IN ('active', 'revoked', 'expired')),
    revoke_reason       TEXT,
    state_at            BIGINT,
    CHECK ((state = 'active') = (state_at IS NULL)),
    CHECK ((state = 'revoked') = (revoke_reason IS NOT NULL))
) WITH (fillfactor = 90);
CREATE INDEX sessions_by_tenant ON sessions (tenant_id, created_at DESC, id DESC);
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id, created_at DESC, id DESC);
-- Only sessions in state 'active': counting the active ones visits nothing else.
CREATE INDEX sessions_active ON sessions (absolute_expires_at) WHERE state = 'active';
CREATE INDEX sessions_by_absolute_expiry ON sessions (absolute_expires_at);

CREATE TABLE refresh_tokens (
    hash             BYTEA PRIMARY KEY CHECK (length(hash) = 32),
    tenant_id        TEXT NOT NULL,
    session_id       TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at       BIGINT NOT NULL,
    rotated_at       BIGINT,
    successor        BYTEA,
    sealed_successor BYTEA,
    CHECK ((rotated_at IS NULL) = (successor IS NULL)),
    CHECK ((rotated_at IS NULL) = (sealed_successor IS NULL))
) WITH (fillfactor = 90);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE nonces (
    tenant_id  TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, nonce)
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

CREATE TABLE signing_keys (
    position       INTEGER PRIMARY KEY,
    kid            TEXT NOT NULL,
    alg            TEXT NOT NULL,
    public         BYTEA NOT NULL,
    sealed_private BYTEA NOT NULL,
    state          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    retire_at      BIGINT
);

CREATE TABLE audit_events (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    user_id        UUID,
    session_id     TEXT,
    activity_id    TEXT NOT NULL,
    correlation_id TEXT,
    ip             TEXT,
    user_agent     TEXT,
    reason         TEXT,
    at             BIGINT NOT NULL
);
CREATE INDEX audit_by_tenant ON audit_events (tenant_id, id);
CREATE INDEX audit_by_user ON audit_events (tenant_id, user_id, id);
CREATE INDEX audit_by_session ON audit_events (tenant_id, session_id, id);
CREATE INDEX audit_by_activity ON audit_events (tenant_id, activity_id, id);
CREATE INDEX audit_by_at ON audit_events (at);

CREATE TABLE sso_settings (
    tenant_id           TEXT PRIMARY KEY,
    issuer              TEXT,
    audience            TEXT NOT NULL,
    sealed_hs256_secret BYTEA,
    public_key_pem      TEXT,
    jwks_url            TEXT,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE partner_secrets (
    secret_id  TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    hash       BYTEA NOT NULL CHECK (length(hash) = 32),
    created_at BIGINT NOT NULL
);

CREATE TABLE service_clients (
    client_id   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    secret_hash BYTEA NOT NULL CHECK (length(secret_hash) = 32),
    audience    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- The change log: one partition, numbered 1, 2, 3, ... without gaps. The numbers come from
-- the one row of sessiond_log_head, whose lock serialises logging transactions until they
-- commit; `at` never goes backwards along `seq`.
CREATE TABLE sessiond_log (
    seq    BIGINT PRIMARY KEY CHECK (seq > 0),
    at     BIGINT NOT NULL,
    change JSONB NOT NULL
);
CREATE TABLE sessiond_log_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL
);
INSERT INTO sessiond_log_head (seq, at) VALUES (0, 0);

-- Rate-limit and backoff counters every node shares. UNLOGGED: no WAL for a counter; a
-- database crash forgets them, which only resets the limits.
CREATE UNLOGGED TABLE counters (
    key   TEXT PRIMARY KEY,
    count BIGINT NOT NULL,
    last  BIGINT NOT NULL
);
CREATE INDEX counters_by_last ON counters (last);
";

/// Sessions in creation order: `created_at` has one-second resolution, so sessions created
/// within one second go by `seq` (eviction of a user's oldest, newest-first listings).
/// Sequence numbers may be taken out of commit order by concurrent transactions, but the
/// creates of one user under a limit are serialised by the user's advisory lock, so within
/// one user's sessions `seq` is the order of creation. Existing rows are numbered as the
/// table rewrite meets them.
const V2: &str = "
ALTER TABLE sessions ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
DROP INDEX sessions_by_tenant;
CREATE INDEX sessions_by_tenant ON sessions (tenant_id, created_at DESC, seq DESC);
DROP INDEX sessions_by_user;
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id, created_at DESC, seq DESC);
";

/// Session events: a service client's back-channel logout URI (none for existing clients),
/// clients listed per tenant (by byte order), and the marks kept beside the change log, each replaced by one
/// conditional statement (compare-and-swap on its version).
const V3: &str = "
ALTER TABLE service_clients ADD COLUMN backchannel_logout_uri TEXT;
CREATE INDEX service_clients_by_tenant ON service_clients (tenant_id, client_id COLLATE \"C\");

CREATE TABLE sessiond_log_marks (
    name    TEXT PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version > 0),
    body    TEXT NOT NULL
);
";

/// Re-authentication: a session's `auth_time`. Sessions stored before have none (NULL) and
/// read it as their `created_at` (see `sessions.rs`): adding a nullable column rewrites no
/// row, and the sessions a node of the previous release (still running while another node
/// migrates) inserts without it read right as well.
const V4: &str = "
ALTER TABLE sessions ADD COLUMN auth_time BIGINT;
";

/// Opaque partner tokens: a tenant's verification endpoint and the sealed secret sessiond
/// presents to it. Settings stored before have neither (NULL): adding nullable columns
/// rewrites no row, and settings a node of the previous release inserts read right as well
/// (though its replacing existing settings leaves these two columns as they were).
const V5: &str = "
ALTER TABLE sso_settings ADD COLUMN verify_url TEXT;
ALTER TABLE sso_settings ADD COLUMN sealed_verify_secret BYTEA;
";

/// Operators and the console: an operator's role (`viewer`, `operator` or `admin`; none for
/// every other user) and who did what an audit event records (none for what users, partners
/// and sessiond itself do). Rows stored before have neither (NULL): adding nullable columns
/// rewrites no row, and the users and events a node of the previous release inserts read
/// right as well.
const V6: &str = "
ALTER TABLE users ADD COLUMN role TEXT;
ALTER TABLE audit_events ADD COLUMN actor TEXT;
CREATE INDEX audit_by_tenant_time ON audit_events (tenant_id, at);
CREATE INDEX tenants_by_id_c ON tenants (id COLLATE \"C\");
CREATE INDEX partner_secrets_by_tenant ON partner_secrets (tenant_id, secret_id COLLATE \"C\");
";

const VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS sessiond_schema_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   INTEGER NOT NULL
);
INSERT INTO sessiond_schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;
";

/// Accepts a schema name sessiond can quote everywhere (SQL, the `search_path` startup
/// option, a NOTIFY channel): 1-63 characters of `[A-Za-z0-9_]`, not starting with a digit.
pub(crate) fn validate(name: &str) -> StoreResult<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(name.to_owned())
    } else {
        Err(StoreError::Backend(format!(
            "invalid schema name {name:?}: use 1-63 characters of [A-Za-z0-9_], not starting with a digit"
        )))
    }
}

/// A validated name as a quoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// Applies the pending migrations in one transaction, under a transaction-scoped advisory
/// lock of the schema, so nodes starting together migrate once; returns the version.
/// `create`: also create the schema (named `schema`) if missing.
pub(crate) async fn migrate(pool: &PgPool, schema: &str, create: bool) -> DbResult<u32> {
    let mut tx = pool.begin().await?;
    // Plain strings run as simple queries, several statements each.
    tx.execute(format!("SET LOCAL statement_timeout = '{MIGRATION_TIMEOUT}'").as_str())
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("sessiond:{schema}:migrate"))
        .execute(&mut *tx)
        .await?;
    if create {
        tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)).as_str())
            .await?;
    }
    tx.execute(VERSION_TABLE).await?;
    let version: i32 = sqlx::query_scalar("SELECT version FROM sessiond_schema_version")
        .fetch_one(&mut *tx)
        .await?;
    let from = usize::try_from(version)
        .map_err(|_| StoreError::Backend(format!("invalid schema version {version}")))?;
    if from > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this sessiond's {}",
            MIGRATIONS.len()
        ))
        .into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.execute(*sql).await?;
        tracing::info!(schema, version = i + 1, "migrated the PostgreSQL schema");
    }
    let latest = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if from < MIGRATIONS.len() {
        sqlx::query("UPDATE sessiond_schema_version SET version = $1")
            .bind(latest)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(latest.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for ok in ["sessiond", "sessiond_t_1_2_3", "Tenant_A", "_x"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a b", "a\"b", "ä", &"x".repeat(64)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
