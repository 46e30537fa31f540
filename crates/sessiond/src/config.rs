//! Configuration: defaults, an optional TOML file, then `SESSIOND_*` environment variables.

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A secret from the configuration; printed masked.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the SQLite database, the generated admin token and master key live.
    pub data_dir: PathBuf,
    /// The `iss` of every token; defaults to `http://<listen>`.
    pub issuer: Option<String>,
    /// The `aud` of session tokens.
    pub audience: String,
    /// `EdDSA` (default) or `ES256`, for clients without Ed25519. A change takes effect at the
    /// next key rotation (the published next key is replaced at start).
    pub signing_algorithm: String,
    /// The operator's bearer token; generated into the data dir when unset.
    pub admin_token: Option<Secret>,
    /// 32 bytes (hex or base64) sealing private keys; generated into the data dir when unset.
    pub master_key: Option<Secret>,
    /// Proxies (addresses or CIDR ranges, e.g. `10.0.0.2`, `10.0.0.0/8`, `fd00::/8`) whose
    /// X-Forwarded-For / X-Forwarded-Proto / Forwarded headers are trusted.
    pub trusted_proxies: Vec<sessiond_server::forwarded::TrustedProxy>,
    /// Origins, besides sessiond's own, allowed to make cookie-authenticated changes.
    pub allowed_origins: Vec<String>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <this>` (default: open, for a
    /// scraper on a private network).
    pub metrics_token: Option<Secret>,
    /// Audit events older than this many days are deleted (hourly); 0 keeps them forever.
    pub audit_retention_days: u32,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub cache: CacheConfig,
    pub limits: LimitsConfig,
    pub server: ServerConfig,
    pub tls: TlsConfig,
}

/// How the listener treats connections (`[server]`, `SESSIOND_SERVER_*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Seconds a new connection has for the TLS handshake and complete request headers (and,
    /// on HTTP/1.1, a keep-alive connection for the next request's headers) before it is
    /// closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight, counted from the end
    /// of its last request (or its start), whatever bytes flow.
    pub idle_timeout_secs: u64,
    /// Seconds from a request's start until its response is fully sent; past it the
    /// connection is dropped.
    pub response_timeout_secs: u64,
    /// Connections open at once; past it new connections are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one client (IPv4 address or IPv6 /64); past it that
    /// client's new connections are closed at once. 0: no limit.
    pub max_connections_per_client: usize,
    /// The open-files limit (soft `RLIMIT_NOFILE`) to raise to at start; default: the hard
    /// limit.
    pub max_open_files: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        use sessiond_server::listen;
        Self {
            header_read_timeout_secs: listen::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
            idle_timeout_secs: listen::DEFAULT_IDLE_TIMEOUT.as_secs(),
            response_timeout_secs: listen::DEFAULT_RESPONSE_TIMEOUT.as_secs(),
            max_connections: listen::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: listen::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_open_files: None,
        }
    }
}

/// Native HTTPS (`[tls]`, `SESSIOND_TLS_*`): set both or neither. Both files are re-read on
/// SIGHUP and when they change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key: Option<PathBuf>,
    /// Seconds between checks of the two files for changes (0: reload on SIGHUP only).
    pub reload_check_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            reload_check_secs: sessiond_server::listen::DEFAULT_TLS_RELOAD_POLL.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Login, SSO and refresh requests per minute per client IP, whatever their outcome: a
    /// ceiling for busy proxies and backends (0: no limit).
    pub auth_per_minute: u32,
    /// Login, SSO and refresh requests answered 401 per minute per client IP; past it the
    /// client gets 429 until the minute ends (0: no limit).
    pub auth_failures_per_minute: u32,
    /// Partner backend requests per minute per client IP, whatever their outcome (0: no limit).
    pub partner_per_minute: u32,
    /// Partner backend requests with a wrong secret per minute per client IP (0: no limit).
    pub partner_failures_per_minute: u32,
    /// IPv6 clients are limited per network of this many bits (1–128); IPv4 per address.
    pub ipv6_prefix: u8,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = sessiond_server::ratelimit::RateLimits::default();
        Self {
            auth_per_minute: d.auth_per_minute,
            auth_failures_per_minute: d.auth_failures_per_minute,
            partner_per_minute: d.partner_per_minute,
            partner_failures_per_minute: d.partner_failures_per_minute,
            ipv6_prefix: sessiond_server::ratelimit::DEFAULT_IPV6_PREFIX,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (the data dir's database), `sqlite://PATH`, `memory`, `postgres://…`,
    /// `redis://…`, `rediss://…` (TLS) or `redis-cluster://host:port,host:port,…`.
    pub sessions: String,
    /// `sqlite`, `sqlite://PATH`, `memory` or `postgres://…` (tenants, users, keys, audit).
    pub identity: String,
    /// Apply pending PostgreSQL migrations at start (otherwise run `sessiond migrate` first).
    pub migrate_on_start: bool,
    /// The PostgreSQL schema sessiond's tables live in (created if missing).
    pub postgres_schema: Option<String>,
    /// Connections in each node's PostgreSQL pool.
    pub postgres_pool: u32,
    /// Prefix of every Redis key sessiond writes.
    pub redis_prefix: String,
    /// With shared stores: no node trusts a cached session, tenant or client for longer than
    /// this without having read the change log (milliseconds).
    pub staleness_bound_ms: u64,
    /// How long change-log entries are kept before the janitor purges them (seconds).
    pub change_log_retention_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` or `text`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `sessiond=debug`.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Verified session tokens kept in memory.
    pub tokens: usize,
    /// Session records kept in memory.
    pub sessions: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./sessiond-data"),
            issuer: None,
            audience: "sessiond".into(),
            signing_algorithm: "EdDSA".into(),
            admin_token: None,
            master_key: None,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            metrics_token: None,
            audit_retention_days: 90,
            store: StoreConfig::default(),
            log: LogConfig::default(),
            cache: CacheConfig::default(),
            limits: LimitsConfig::default(),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            sessions: "sqlite".into(),
            identity: "sqlite".into(),
            migrate_on_start: true,
            postgres_schema: None,
            postgres_pool: 16,
            redis_prefix: "sessiond:".into(),
            staleness_bound_ms: 1_000,
            change_log_retention_secs: 3_600,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            tokens: 100_000,
            sessions: 100_000,
        }
    }
}

const SECTIONS: [&str; 6] = ["store", "log", "cache", "limits", "server", "tls"];

/// `SESSIOND_*` variables that are not configuration keys: the CLI's own (`--config`, `--url`,
/// passwords and secrets it reads from the environment) and the test suite's. The loader
/// ignores them; a test checks that every `env = "SESSIOND_…"` of the CLI is listed.
pub const NOT_CONFIGURATION: &[&str] = &[
    "CONFIG",
    "URL",
    "USER_PASSWORD",
    "OPERATOR_PASSWORD",
    "SSO_SECRET",
    "SSO_VERIFY_SECRET",
    "TEST_POSTGRES",
    "TEST_REDIS",
    "UPDATE_OPENAPI",
    "UPDATE_API_DOC",
];

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Memory,
    Postgres(String),
    Redis(String),
}

/// `scheme://user:password@host` with the password masked.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl Config {
    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                bail!("configuration file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        let env = Env::prefixed("SESSIOND_")
            .ignore(NOT_CONFIGURATION)
            .map(|key| {
                let k = key.as_str().to_ascii_lowercase();
                match SECTIONS.iter().find(|s| k.starts_with(&format!("{s}_"))) {
                    Some(s) => format!("{s}.{}", &k[s.len() + 1..]).into(),
                    None => k.into(),
                }
            })
            .lowercase(false);
        let cfg: Config = fig.merge(env).extract().context("invalid configuration")?;
        cfg.store_url(&cfg.store.sessions)?;
        if let StoreUrl::Redis(_) = cfg.store_url(&cfg.store.identity)? {
            bail!(
                "store.identity cannot be Redis: tenants, users, keys and audit need PostgreSQL (or SQLite on one node)"
            );
        }
        if cfg.shared_stores() == Some(false) {
            bail!(
                "store.sessions and store.identity must both be shared (postgres://, redis://…) or both local (sqlite, memory): a shared one beside a local one splits the deployment"
            );
        }
        if !(1..=128).contains(&cfg.limits.ipv6_prefix) {
            bail!("limits.ipv6_prefix must be between 1 and 128");
        }
        for (key, secs) in [
            (
                "server.header_read_timeout_secs",
                cfg.server.header_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", cfg.server.idle_timeout_secs),
            (
                "server.response_timeout_secs",
                cfg.server.response_timeout_secs,
            ),
        ] {
            if !(1..=86_400).contains(&secs) {
                bail!("{key} must be between 1 and 86400");
            }
        }
        if cfg.server.max_connections == 0 {
            bail!("server.max_connections must be at least 1");
        }
        if cfg.tls.cert.is_some() != cfg.tls.key.is_some() {
            bail!(
                "tls.cert and tls.key (SESSIOND_TLS_CERT, SESSIOND_TLS_KEY) go together: set both or neither"
            );
        }
        if !(50..=60_000).contains(&cfg.store.staleness_bound_ms) {
            bail!("store.staleness_bound_ms must be between 50 and 60000");
        }
        if cfg.store.postgres_pool == 0 {
            bail!("store.postgres_pool must be at least 1");
        }
        if cfg.store.change_log_retention_secs < 60 {
            bail!("store.change_log_retention_secs must be at least 60");
        }
        if let Some(schema) = &cfg.store.postgres_schema {
            let ok = !schema.is_empty()
                && schema.len() <= 63
                && !schema.starts_with(|c: char| c.is_ascii_digit())
                && schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                bail!(
                    "store.postgres_schema must be 1–63 characters of [a-z0-9_], not starting with a digit"
                );
            }
        }
        if cfg.store.redis_prefix.contains(['{', '}']) {
            bail!(
                "store.redis_prefix cannot contain `{{` or `}}` (they would change the Cluster hash slot)"
            );
        }
        if !matches!(cfg.log.format.as_str(), "json" | "text") {
            bail!("log.format must be `json` or `text`");
        }
        if sessiond_core::token::Alg::parse(&cfg.signing_algorithm).is_none() {
            bail!("signing_algorithm must be `EdDSA` or `ES256`");
        }
        if tracing_subscriber::EnvFilter::try_new(&cfg.log.level).is_err() {
            bail!(
                "log.level `{}` is not a valid tracing filter",
                cfg.log.level
            );
        }
        if cfg.metrics_token.as_ref().is_some_and(|t| t.0.len() < 16) {
            bail!("metrics_token must be at least 16 characters");
        }
        if cfg.admin_token.as_ref().is_some_and(|t| t.0.len() < 16) {
            bail!("admin_token must be at least 16 characters");
        }
        if cfg
            .master_key
            .as_ref()
            .is_some_and(|k| sessiond_core::secret::MasterKey::parse(&k.0).is_none())
        {
            bail!("master_key must be 32 bytes given as 64 hex digits or as base64");
        }
        Ok(cfg)
    }

    /// `Some(true)`: both stores are shared (several nodes may run); `Some(false)`: one is
    /// shared and the other local; `None`: both local (one node).
    pub fn shared_stores(&self) -> Option<bool> {
        let shared = |s: &str| {
            matches!(
                self.store_url(s),
                Ok(StoreUrl::Postgres(_)) | Ok(StoreUrl::Redis(_))
            )
        };
        match (shared(&self.store.sessions), shared(&self.store.identity)) {
            (true, true) => Some(true),
            (false, false) => None,
            _ => Some(false),
        }
    }

    /// Where a generated admin token is kept.
    pub fn admin_token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("sessiond.db")
    }

    pub fn store_url(&self, s: &str) -> Result<StoreUrl> {
        Ok(match s {
            "sqlite" => StoreUrl::Sqlite(self.db_path()),
            "memory" => StoreUrl::Memory,
            s if s.starts_with("sqlite://") => {
                StoreUrl::Sqlite(PathBuf::from(&s["sqlite://".len()..]))
            }
            s if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                StoreUrl::Postgres(s.to_owned())
            }
            s if [
                "redis://",
                "rediss://",
                "redis-cluster://",
                "rediss-cluster://",
            ]
            .iter()
            .any(|p| s.starts_with(p)) =>
            {
                StoreUrl::Redis(s.to_owned())
            }
            other => bail!(
                "unsupported store `{}`: use `sqlite`, `sqlite://PATH`, `memory`, `postgres://…`, `redis://…`, `rediss://…` or `redis-cluster://host:port,…`",
                mask_url_password(other)
            ),
        })
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn masked_toml(&self) -> Result<String> {
        let mut shown = self.clone();
        for s in [
            &mut shown.admin_token,
            &mut shown.master_key,
            &mut shown.metrics_token,
        ]
        .into_iter()
        .flatten()
        {
            s.0 = "***".into();
        }
        shown.store.sessions = mask_url_password(&shown.store.sessions);
        shown.store.identity = mask_url_password(&shown.store.identity);
        Ok(toml::to_string_pretty(&shown)?)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn defaults_run_with_no_file() {
        figment::Jail::expect_with(|_| {
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(
                c.store_url(&c.store.sessions).ok(),
                Some(StoreUrl::Sqlite(PathBuf::from(
                    "./sessiond-data/sessiond.db"
                )))
            );
            Ok(())
        });
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "listen = \"127.0.0.1:9000\"\n[store]\nsessions = \"memory\"\n",
            )?;
            jail.set_env("SESSIOND_DATA_DIR", "/tmp/x");
            jail.set_env("SESSIOND_STORE_IDENTITY", "memory");
            jail.set_env("SESSIOND_ADMIN_TOKEN", "hunter2hunter2hunter2");
            let c = Config::load(Some(Path::new("s.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
            assert_eq!(
                (c.store.sessions.as_str(), c.store.identity.as_str()),
                ("memory", "memory")
            );
            let shown = c.masked_toml().map_err(|e| e.to_string())?;
            assert!(!shown.contains("hunter2") && shown.contains("***"));
            Ok(())
        });
    }

    #[test]
    fn shared_stores_are_read_and_their_passwords_masked() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "SESSIOND_STORE_IDENTITY",
                "postgres://app:s3cret@db:5432/sessiond",
            );
            jail.set_env("SESSIOND_STORE_SESSIONS", "redis-cluster://r1:6379,r2:6379");
            jail.set_env("SESSIOND_STORE_STALENESS_BOUND_MS", "500");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                c.store_url(&c.store.sessions).ok(),
                Some(StoreUrl::Redis("redis-cluster://r1:6379,r2:6379".into()))
            );
            assert_eq!(c.store.staleness_bound_ms, 500);
            let shown = c.masked_toml().map_err(|e| e.to_string())?;
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("postgres://app:***@db:5432/sessiond"),
                "{shown}"
            );
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("SESSIOND_STORE_IDENTITY", "redis://127.0.0.1:6379");
            assert!(Config::load(None).is_err(), "identity cannot live in Redis");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("SESSIOND_STORE_IDENTITY", "postgres://db/sessiond");
            assert!(
                Config::load(None).is_err(),
                "shared identity beside local sessions splits the deployment"
            );
            jail.set_env("SESSIOND_STORE_SESSIONS", "redis://r:6379");
            jail.set_env("SESSIOND_TEST_POSTGRES", "postgres://x/test");
            Config::load(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    /// Every variable the CLI reads (`env = "SESSIOND_…"` in its sources) and the test
    /// suite's own are ignored by the configuration loader, so exporting one never breaks
    /// `serve` or another command.
    #[test]
    fn cli_and_test_variables_are_not_configuration_keys() {
        let sources = [include_str!("main.rs"), include_str!("cli.rs")];
        let mut cli_vars: Vec<&str> = sources
            .iter()
            .flat_map(|s| s.split("env = \"SESSIOND_").skip(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        cli_vars.sort_unstable();
        cli_vars.dedup();
        assert!(cli_vars.contains(&"SSO_SECRET"), "found {cli_vars:?}");
        for v in &cli_vars {
            assert!(
                NOT_CONFIGURATION.contains(v),
                "SESSIOND_{v} is read by the CLI but not listed in NOT_CONFIGURATION"
            );
        }
        figment::Jail::expect_with(|jail| {
            for v in NOT_CONFIGURATION {
                jail.set_env(format!("SESSIOND_{v}"), "some value");
            }
            Config::load(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_take_addresses_and_cidr_ranges() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "trusted_proxies = [\"10.0.0.2\", \"10.0.0.0/8\", \"::1/128\", \"fd00::/8\"]\n[limits]\nipv6_prefix = 56\n",
            )?;
            let c = Config::load(Some(Path::new("p.toml"))).map_err(|e| e.to_string())?;
            let shown: Vec<String> = c.trusted_proxies.iter().map(|p| p.to_string()).collect();
            assert_eq!(shown, ["10.0.0.2", "10.0.0.0/8", "::1", "fd00::/8"]);
            let ip = |s: &str| s.parse::<std::net::IpAddr>().map_err(|e| e.to_string());
            assert!(c.trusted_proxies[1].contains(ip("10.200.0.1")?));
            assert!(!c.trusted_proxies[0].contains(ip("10.0.0.3")?));
            assert!(c.trusted_proxies[3].contains(ip("fd12::1")?));
            assert_eq!(c.limits.ipv6_prefix, 56);
            jail.set_env("SESSIOND_TRUSTED_PROXIES", "[\"127.0.0.0/8\"]");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert!(c.trusted_proxies[0].contains(ip("127.0.0.9")?));
            assert_eq!(c.limits.ipv6_prefix, 64, "the default");
            let shown = c.masked_toml().map_err(|e| e.to_string())?;
            assert!(shown.contains("\"127.0.0.0/8\""), "{shown}");
            Ok(())
        });
        for bad in [
            "proxy.internal",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "::1/129",
            "10.0.0/8",
            "",
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("SESSIOND_TRUSTED_PROXIES", format!("[\"{bad}\"]"));
                let err = Config::load(None).map(|_| ()).map_err(|e| format!("{e:#}"));
                let err = err.err().unwrap_or_default();
                assert!(
                    err.contains("trusted proxy") && err.contains(&format!("`{bad}`")),
                    "{bad}: {err}"
                );
                Ok(())
            });
        }
        for bad in ["0", "129"] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("SESSIOND_LIMITS_IPV6_PREFIX", bad);
                assert!(Config::load(None).is_err(), "ipv6_prefix {bad}");
                Ok(())
            });
        }
    }

    #[test]
    fn unknown_keys_and_stores_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "lisen = \"127.0.0.1:9000\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml"))).is_err());
            jail.set_env("SESSIOND_STORE_SESSIONS", "mongodb://x");
            assert!(Config::load(None).is_err());
            Ok(())
        });
        for (key, bad) in [
            ("SESSIOND_ADMIN_TOKEN", "short"),
            ("SESSIOND_MASTER_KEY", "nothex"),
            ("SESSIOND_LOG_LEVEL", "x=[["),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(key, bad);
                assert!(Config::load(None).is_err(), "{key}={bad} must be refused");
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            // The CLI's own variables are not configuration keys.
            jail.set_env("SESSIOND_CONFIG", "x.toml");
            jail.set_env("SESSIOND_URL", "http://127.0.0.1:1");
            jail.set_env("SESSIOND_USER_PASSWORD", "hunter2hunter2hunter2");
            Config::load(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn server_and_tls_keys_come_from_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.server.header_read_timeout_secs, 10);
            assert_eq!(c.server.idle_timeout_secs, 60);
            assert_eq!(c.server.max_connections, 10_000);
            assert_eq!(c.server.response_timeout_secs, 60);
            assert_eq!(c.server.max_connections_per_client, 1_000);
            assert!(c.tls.cert.is_none() && c.tls.key.is_none());
            jail.create_file(
                "s.toml",
                "[server]\nidle_timeout_secs = 5\nmax_open_files = 4096\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n",
            )?;
            jail.set_env("SESSIOND_SERVER_MAX_CONNECTIONS", "123");
            jail.set_env("SESSIOND_TLS_KEY", "/other.pem");
            jail.set_env("SESSIOND_SERVER_MAX_CONNECTIONS_PER_CLIENT", "0");
            jail.set_env("SESSIOND_SERVER_RESPONSE_TIMEOUT_SECS", "90");
            let c = Config::load(Some(Path::new("s.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.server.idle_timeout_secs, 5);
            assert_eq!(c.server.max_connections, 123);
            assert_eq!(c.server.max_open_files, Some(4096));
            assert_eq!(c.server.max_connections_per_client, 0);
            assert_eq!(c.server.response_timeout_secs, 90);
            assert_eq!(c.tls.cert, Some(PathBuf::from("/c.pem")));
            assert_eq!(c.tls.key, Some(PathBuf::from("/other.pem")));
            Ok(())
        });
        for (key, value) in [
            ("SESSIOND_TLS_CERT", "/c.pem"),
            ("SESSIOND_SERVER_MAX_CONNECTIONS", "0"),
            ("SESSIOND_SERVER_HEADER_READ_TIMEOUT_SECS", "0"),
            ("SESSIOND_SERVER_IDLE_TIMEOUT_SECS", "100000"),
            ("SESSIOND_SERVER_RESPONSE_TIMEOUT_SECS", "0"),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(key, value);
                assert!(Config::load(None).is_err(), "{key}={value} must be refused");
                Ok(())
            });
        }
    }
}
