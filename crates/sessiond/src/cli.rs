//! The operator CLI: each command is one call to the admin API of a running sessiond, so
//! what it changes is enforced at once (caches included).

use crate::config::Config;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Tenants and their policy.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Users of a tenant.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Sessions of a tenant.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Shared secrets of a tenant's partner backends (X-PARTNER-SECRET).
    PartnerSecret {
        #[command(subcommand)]
        command: PartnerSecretCommand,
    },
    /// How a tenant trusts partner-issued SSO tokens.
    Sso {
        #[command(subcommand)]
        command: SsoCommand,
    },
    /// Service clients (introspection, internal access tokens).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Named operators: they sign in to the console (/console) with a role.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// A tenant's audit trail, newest first.
    Audit {
        #[arg(long)]
        tenant: String,
        /// A user id (UUID).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        session: Option<String>,
        /// An X-Activity-ID.
        #[arg(long)]
        activity: Option<String>,
        /// An event type, e.g. login_failed.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only events at or after this Unix time (seconds).
        #[arg(long)]
        since: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        #[arg(long)]
        id: String,
        /// playground, integration or production.
        #[arg(long)]
        profile: String,
        #[arg(long)]
        name: Option<String>,
        /// Policy overrides as JSON, e.g. '{"maxSessionsPerUser":1}'.
        #[arg(long)]
        policy: Option<String>,
    },
    /// Show a tenant and its effective policy.
    Show { id: String },
    /// Change policy overrides (JSON merge patch; null restores the profile default).
    SetPolicy { id: String, policy: String },
}

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Create an operator (the password may come from SESSIOND_OPERATOR_PASSWORD).
    Create {
        #[arg(long)]
        username: String,
        /// viewer (reads), operator (also revokes sessions, manages users, partner secrets
        /// and service clients) or admin (everything).
        #[arg(long)]
        role: String,
        #[arg(long, env = "SESSIOND_OPERATOR_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List the operators.
    List,
    /// Change an operator's role.
    SetRole {
        /// The operator's user id (UUID).
        user_id: String,
        #[arg(long)]
        role: String,
    },
    /// Disable an operator; revokes their console sessions.
    Disable {
        /// The operator's user id (UUID).
        user_id: String,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (the password may come from SESSIOND_USER_PASSWORD).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        username: String,
        #[arg(long, env = "SESSIOND_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        customer_id: Option<String>,
        #[arg(long)]
        external_id: Option<String>,
    },
    /// Show a user, found by username or external id.
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long, required_unless_present = "external_id")]
        username: Option<String>,
        #[arg(long, conflicts_with = "username")]
        external_id: Option<String>,
    },
    /// Set a new password; revokes the user's sessions.
    SetPassword {
        #[arg(long)]
        tenant: String,
        /// The user id (UUID).
        user_id: String,
        #[arg(long, env = "SESSIOND_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Disable a user; revokes the user's sessions.
    Disable {
        #[arg(long)]
        tenant: String,
        /// The user id (UUID).
        user_id: String,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List a tenant's sessions, newest first.
    List {
        #[arg(long)]
        tenant: String,
        /// A user id (UUID).
        #[arg(long)]
        user: Option<String>,
        /// active, revoked or expired.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Revoke one session (reason `admin`).
    Revoke {
        #[arg(long)]
        tenant: String,
        /// Random base64url: it may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        session_id: String,
    },
}

#[derive(Subcommand)]
pub enum PartnerSecretCommand {
    /// Create a secret (printed once; several may be active for rotation).
    Create {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a secret by its id.
    Revoke {
        #[arg(long)]
        tenant: String,
        #[arg(allow_hyphen_values = true)]
        secret_id: String,
    },
}

#[derive(Subcommand)]
pub enum SsoCommand {
    /// Set the tenant's SSO trust: exactly one of --hs256-secret, --public-key-pem-file,
    /// --jwks-url, --verify-url (the partner's verification endpoint, with --verify-secret).
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        audience: String,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long, env = "SESSIOND_SSO_SECRET", hide_env_values = true)]
        hs256_secret: Option<String>,
        #[arg(long)]
        public_key_pem_file: Option<std::path::PathBuf>,
        #[arg(long)]
        jwks_url: Option<String>,
        /// The partner's verification endpoint for opaque SSO tokens (RFC 7662-style).
        #[arg(long)]
        verify_url: Option<String>,
        /// The bearer secret sessiond presents to --verify-url.
        #[arg(long, env = "SESSIOND_SSO_VERIFY_SECRET", hide_env_values = true)]
        verify_secret: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Create a service client (its secret is printed once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        client_id: Option<String>,
        /// The audience of its internal access tokens (default: the client id).
        #[arg(long)]
        audience: Option<String>,
        /// Where back-channel logout tokens are POSTed when a session of the tenant ends.
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the signing keys (public parts).
    List,
    /// Promote the published next key to signing and publish a fresh next key.
    Rotate,
    /// Revoke a (leaked) key at once: its tokens are refused and it leaves the JWKS; a
    /// revoked signing or next key is replaced.
    Revoke {
        /// The key's id (`kid`, see `keys list`; random base64url, which may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(cfg: &Config, url: Option<&str>) -> Result<Self> {
        let token = match &cfg.admin_token {
            Some(t) => t.0.clone(),
            None => {
                let f = cfg.admin_token_file();
                std::fs::read_to_string(&f)
                    .with_context(|| {
                        format!(
                            "no admin token: set SESSIOND_ADMIN_TOKEN, or SESSIOND_DATA_DIR to the server's data dir (looked in {})",
                            f.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
        };
        // With native TLS the server speaks HTTPS only; its certificate must then name the
        // host in `--url` (the listen address rarely matches it).
        let scheme = if cfg.tls.cert.is_some() {
            "https"
        } else {
            "http"
        };
        let base = url.map_or_else(|| format!("{scheme}://{}", cfg.listen), str::to_owned);
        Ok(Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.with_context(|| {
            format!(
                "cannot reach sessiond at {} (another address: --url or SESSIOND_URL)",
                self.base
            )
        })?;
        let status = res.status();
        let text = res.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        if !status.is_success() {
            bail!("{status}: {}", serde_json::to_string_pretty(&value)?);
        }
        Ok(value)
    }
}

fn parse_json(s: &str) -> Result<Value> {
    serde_json::from_str(s).context("the policy must be a JSON object")
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// A path segment or query value: everything but RFC 3986's unreserved characters escaped.
fn enc(s: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

/// The admin API call a command stands for: method, path, body.
fn request(cmd: AdminCommand) -> Result<(Method, String, Option<Value>)> {
    use Method as M;
    let t = |tenant: &str| format!("/admin/v1/tenants/{}", enc(tenant));
    Ok(match cmd {
        AdminCommand::Tenant { command } => match command {
            TenantCommand::Create {
                id,
                profile,
                name,
                policy,
            } => {
                let policy = policy
                    .as_deref()
                    .map(parse_json)
                    .transpose()?
                    .unwrap_or_else(|| json!({}));
                (
                    M::POST,
                    "/admin/v1/tenants".into(),
                    Some(json!({"id": id, "profile": profile, "name": name, "policy": policy})),
                )
            }
            TenantCommand::Show { id } => (M::GET, t(&id), None),
            TenantCommand::SetPolicy { id, policy } => (
                M::PATCH,
                format!("{}/policy", t(&id)),
                Some(parse_json(&policy)?),
            ),
        },
        AdminCommand::User { command } => match command {
            UserCommand::Create {
                tenant,
                username,
                password,
                customer_id,
                external_id,
            } => (
                M::POST,
                format!("{}/users", t(&tenant)),
                Some(
                    json!({"username": username, "password": password, "customerId": customer_id, "externalId": external_id}),
                ),
            ),
            UserCommand::Show {
                tenant,
                username,
                external_id,
            } => (
                M::GET,
                format!(
                    "{}/users{}",
                    t(&tenant),
                    query(&[("username", username), ("externalId", external_id)])
                ),
                None,
            ),
            UserCommand::SetPassword {
                tenant,
                user_id,
                password,
            } => (
                M::POST,
                format!("{}/users/{}/password", t(&tenant), enc(&user_id)),
                Some(json!({"password": password})),
            ),
            UserCommand::Disable { tenant, user_id } => (
                M::POST,
                format!("{}/users/{}/disable", t(&tenant), enc(&user_id)),
                None,
            ),
        },
        AdminCommand::Sessions { command } => match command {
            SessionsCommand::List {
                tenant,
                user,
                state,
                limit,
            } => (
                M::GET,
                format!(
                    "{}/sessions{}",
                    t(&tenant),
                    query(&[
                        ("userId", user),
                        ("state", state),
                        ("limit", Some(limit.to_string()))
                    ])
                ),
                None,
            ),
            SessionsCommand::Revoke { tenant, session_id } => (
                M::DELETE,
                format!("{}/sessions/{}", t(&tenant), enc(&session_id)),
                None,
            ),
        },
        AdminCommand::PartnerSecret { command } => match command {
            PartnerSecretCommand::Create { tenant } => {
                (M::POST, format!("{}/partner-secrets", t(&tenant)), None)
            }
            PartnerSecretCommand::Revoke { tenant, secret_id } => (
                M::DELETE,
                format!("{}/partner-secrets/{}", t(&tenant), enc(&secret_id)),
                None,
            ),
        },
        AdminCommand::Sso {
            command:
                SsoCommand::Set {
                    tenant,
                    audience,
                    issuer,
                    hs256_secret,
                    public_key_pem_file,
                    jwks_url,
                    verify_url,
                    verify_secret,
                },
        } => {
            let pem = public_key_pem_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))
                })
                .transpose()?;
            // A secret exported for one kind of trust is not sent with another.
            let verify_secret = verify_url.as_ref().and(verify_secret);
            let hs256_secret = (pem.is_none() && jwks_url.is_none() && verify_url.is_none())
                .then_some(hs256_secret)
                .flatten();
            let body = json!({"audience": audience, "issuer": issuer, "hs256Secret": hs256_secret, "publicKeyPem": pem, "jwksUrl": jwks_url, "verifyUrl": verify_url, "verifySecret": verify_secret});
            (M::PUT, format!("{}/sso", t(&tenant)), Some(body))
        }
        AdminCommand::Client {
            command:
                ClientCommand::Create {
                    tenant,
                    client_id,
                    audience,
                    backchannel_logout_uri,
                },
        } => (
            M::POST,
            format!("{}/clients", t(&tenant)),
            Some(json!({
                "clientId": client_id,
                "audience": audience,
                "backchannelLogoutUri": backchannel_logout_uri,
            })),
        ),
        AdminCommand::Operator { command } => match command {
            OperatorCommand::Create {
                username,
                role,
                password,
            } => (
                M::POST,
                "/admin/v1/operators".into(),
                Some(json!({"username": username, "password": password, "role": role})),
            ),
            OperatorCommand::List => (M::GET, "/admin/v1/operators?limit=1000".into(), None),
            OperatorCommand::SetRole { user_id, role } => (
                M::PUT,
                format!("/admin/v1/operators/{}/role", enc(&user_id)),
                Some(json!({"role": role})),
            ),
            OperatorCommand::Disable { user_id } => (
                M::POST,
                format!("/admin/v1/operators/{}/disable", enc(&user_id)),
                None,
            ),
        },
        AdminCommand::Keys { command } => match command {
            KeysCommand::List => (M::GET, "/admin/v1/keys".into(), None),
            KeysCommand::Rotate => (M::POST, "/admin/v1/keys/rotate".into(), None),
            KeysCommand::Revoke { kid } => (
                M::POST,
                format!("/admin/v1/keys/{}/revoke", enc(&kid)),
                None,
            ),
        },
        AdminCommand::Audit {
            tenant,
            user,
            session,
            activity,
            kind,
            since,
            limit,
        } => (
            M::GET,
            format!(
                "{}/audit{}",
                t(&tenant),
                query(&[
                    ("userId", user),
                    ("sessionId", session),
                    ("activityId", activity),
                    ("type", kind),
                    ("since", since.map(|s| s.to_string())),
                    ("limit", Some(limit.to_string())),
                ])
            ),
            None,
        ),
    })
}

pub async fn run(cfg: &Config, url: Option<&str>, cmd: AdminCommand) -> Result<()> {
    let (method, path, body) = request(cmd)?;
    // JSON null members are "not given": drop them so the API applies its defaults.
    let body = body.map(|b| match b {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    });
    let out = Client::new(cfg, url)?.call(method, &path, body).await?;
    if out.is_null() {
        print("ok");
    } else {
        print(&serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// Prints a line; a closed stdout (`| head`) ends the output quietly instead of panicking.
pub fn print(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_revoke_posts_to_the_key_with_its_id_escaped() {
        let r = request(AdminCommand::Keys {
            command: KeysCommand::Revoke {
                kid: "abc-_DEF".into(),
            },
        });
        let (method, path, body) = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (method, path.as_str(), body),
            (Method::POST, "/admin/v1/keys/abc-_DEF/revoke", None)
        );
        let r = request(AdminCommand::Keys {
            command: KeysCommand::Revoke { kid: "../x".into() },
        });
        assert_eq!(
            r.map(|(_, p, _)| p).unwrap_or_default(),
            "/admin/v1/keys/..%2Fx/revoke"
        );
    }
}
