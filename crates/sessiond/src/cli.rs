//! The operator CLI: each command is one call to the admin API of a running sessiond, so
//! what it changes is enforced at once (caches included).

use crate::config::Config;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Args)]
pub struct Target {
    /// Base URL of the running sessiond (default: http://<listen>).
    #[arg(long, global = true, env = "SESSIOND_URL")]
    url: Option<String>,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Tenants and their policy.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Users of a tenant.
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Sessions of a tenant.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Query a tenant's audit trail, newest first.
    Audit {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        activity: Option<String>,
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        since: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
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
    Show {
        id: String,
    },
    /// Apply policy overrides given as JSON, e.g. '{"idleTtl":900}'.
    SetPolicy {
        id: String,
        policy: String,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
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
    SetPassword {
        #[arg(long)]
        tenant: String,
        user_id: String,
        #[arg(long, env = "SESSIOND_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    Disable {
        #[arg(long)]
        tenant: String,
        user_id: String,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: Option<String>,
        /// active, revoked or expired.
        #[arg(long)]
        state: Option<String>,
    },
    Revoke {
        #[arg(long)]
        tenant: String,
        session_id: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    List,
    /// Promote the published next key to signing and publish a fresh next key.
    Rotate,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(cfg: &Config, target: &Target) -> Result<Self> {
        let token = match &cfg.admin_token {
            Some(t) => t.0.clone(),
            None => {
                let f = crate::serve::admin_token_file(cfg);
                std::fs::read_to_string(&f)
                    .with_context(|| format!("no admin token: set SESSIOND_ADMIN_TOKEN or run `sessiond serve` once to create {}", f.display()))?
                    .trim()
                    .to_owned()
            }
        };
        let base = target
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", cfg.listen));
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
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach sessiond at {}", self.base))?;
        let status = res.status();
        let text = res.text().await?;
        let value = if text.is_empty() {
            json!({ "status": status.as_u16() })
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
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(cfg: &Config, cmd: AdminCommand) -> Result<()> {
    let (target, method, path, body) = match cmd {
        AdminCommand::Tenant { command, target } => match command {
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
                    target,
                    Method::POST,
                    "/admin/v1/tenants".to_owned(),
                    Some(json!({"id": id, "profile": profile, "name": name, "policy": policy})),
                )
            }
            TenantCommand::Show { id } => (
                target,
                Method::GET,
                format!("/admin/v1/tenants/{}", urlencode(&id)),
                None,
            ),
            TenantCommand::SetPolicy { id, policy } => (
                target,
                Method::PATCH,
                format!("/admin/v1/tenants/{}/policy", urlencode(&id)),
                Some(parse_json(&policy)?),
            ),
        },
        AdminCommand::User { command, target } => match command {
            UserCommand::Create {
                tenant,
                username,
                password,
                customer_id,
                external_id,
            } => (
                target,
                Method::POST,
                format!("/admin/v1/tenants/{}/users", urlencode(&tenant)),
                Some(
                    json!({"username": username, "password": password, "customerId": customer_id, "externalId": external_id}),
                ),
            ),
            UserCommand::SetPassword {
                tenant,
                user_id,
                password,
            } => (
                target,
                Method::POST,
                format!(
                    "/admin/v1/tenants/{}/users/{}/password",
                    urlencode(&tenant),
                    urlencode(&user_id)
                ),
                Some(json!({"password": password})),
            ),
            UserCommand::Disable { tenant, user_id } => (
                target,
                Method::POST,
                format!(
                    "/admin/v1/tenants/{}/users/{}/disable",
                    urlencode(&tenant),
                    urlencode(&user_id)
                ),
                None,
            ),
        },
        AdminCommand::Sessions { command, target } => match command {
            SessionsCommand::List {
                tenant,
                user,
                state,
            } => (
                target,
                Method::GET,
                format!(
                    "/admin/v1/tenants/{}/sessions{}",
                    urlencode(&tenant),
                    query(&[("userId", user), ("state", state)])
                ),
                None,
            ),
            SessionsCommand::Revoke { tenant, session_id } => (
                target,
                Method::DELETE,
                format!(
                    "/admin/v1/tenants/{}/sessions/{}",
                    urlencode(&tenant),
                    urlencode(&session_id)
                ),
                None,
            ),
        },
        AdminCommand::Keys { command, target } => match command {
            KeysCommand::List => (target, Method::GET, "/admin/v1/keys".to_owned(), None),
            KeysCommand::Rotate => (
                target,
                Method::POST,
                "/admin/v1/keys/rotate".to_owned(),
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
            target,
        } => (
            target,
            Method::GET,
            format!(
                "/admin/v1/tenants/{}/audit{}",
                urlencode(&tenant),
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
    };
    let client = Client::new(cfg, &target)?;
    let out = client.call(method, &path, body).await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
