//! `docs/API.md`, the repository's own API reference, is rendered from the checked-in
//! `openapi.json` (itself kept in step with the code by `openapi_json_is_in_sync_with_the_code`)
//! and must match it. Regenerate with
//! `SESSIOND_UPDATE_API_DOC=1 cargo test -p sessiond-server --test api_reference`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

const UPDATE_VAR: &str = "SESSIOND_UPDATE_API_DOC";

/// Terms the reference uses, explained without outside context.
const TERMS: &[(&str, &str)] = &[
    (
        "tenant",
        "An isolated customer of the server, named by `X-Tenant-ID` (1–64 of `[A-Za-z0-9_-]`). It owns its users, sessions, policy, partner secrets, service clients and SSO settings; nothing crosses tenants.",
    ),
    (
        "profile",
        "A tenant's environment — `playground`, `integration` or `production` — which sets its policy defaults (token lifetimes, refresh tokens, idle timeout, required headers, HTTPS only). Every value can be overridden per tenant.",
    ),
    (
        "user",
        "An account in a tenant: `userId` (UUID), `customerId` (UUID), optional username and Argon2id password hash, optional external id (from SSO), status (active or disabled).",
    ),
    (
        "session",
        "One login on one device: an opaque id, the user, created / last-seen / expiry times, the device (user agent, address, label) and a state: active, revoked (with a reason) or expired.",
    ),
    (
        "userSessionToken",
        "The short-lived signed JWT (`typ: at+jwt`, EdDSA or ES256) a client sends as `Authorization: Bearer`. It names the session (`sid`), the user (`sub`) and the tenant (`tid`); every stateful check also looks at the session's state.",
    ),
    (
        "refreshToken",
        "An opaque, single-use secret bound to one session. Each use returns a new one (rotation); a used one presented again outside a short grace window revokes the session (reuse detection).",
    ),
    (
        "activity",
        "A user flow named by `X-Activity-ID` (a UUID v4), echoed in every response and recorded on every audit event of that flow.",
    ),
    (
        "internal access token",
        "A token the server mints, for a trusted backend (a service client), bound to a user's session: it stops working when the session ends.",
    ),
    (
        "partner secret",
        "A tenant's shared secret (`X-PARTNER-SECRET`) with which a partner's backend logs a user out of every session.",
    ),
    (
        "service client",
        "A trusted backend with an id and secret (HTTP Basic) that may introspect tokens, revoke them (RFC 7009) and exchange a session token for an internal access token.",
    ),
    (
        "revocation feed",
        "`GET /oauth2/revocations`: a Server-Sent Events stream, for a service client, of what offline verifiers must refuse in its tenant — ended sessions, cut-offs and key changes — resumable on any node from a cursor, with heartbeats at least every 250 ms while the node reads its change log.",
    ),
    (
        "cursor",
        "The `id` of a feed event: a position in the deployment's change log. Sent back as `Last-Event-ID` (or `?cursor=`) it resumes the feed after that event, on any node; one that cannot be resumed gets `reset` and everything in force. On the admin API's listings, `nextCursor` is an opaque string naming where a page ended, sent back as `?cursor=` for the next page.",
    ),
    (
        "cut-off",
        "A feed entry saying that every session a user had before an instant has ended (a logout of all sessions, a partner logout, a password change, a disabled account): a token of that user whose `auth_time` is earlier is refused.",
    ),
    (
        "auth_time",
        "When the user last proved who they are for a session: its login, or its latest re-authentication (`POST /api/v2/auth/reauthenticate`). Every session token and introspection answer carries it; a tenant's `reauthMaxAge` bounds its age for operations that end other sessions.",
    ),
    (
        "session event",
        "A message sessiond sends when a session ends, at least once and with a stable `jti`: an OpenID Connect back-channel logout token to each service client with a `backchannelLogoutUri`, and a CAEP `session-revoked` Security Event Token to the tenant's `caepReceiverUrl`.",
    ),
    (
        "admin token",
        "The deployment's static bearer token for `/admin/v1/…` (automation, the CLI): it has the admin role and is recorded as the actor `admin-token`.",
    ),
    (
        "operator",
        "A named person who runs sessiond: an account of the reserved tenant `_operators` with a role, who signs in to the console (`/console`) with sessiond's own cookie-mode login and calls the admin API with that session.",
    ),
    (
        "role",
        "What an operator may do: `viewer` reads; `operator` also revokes sessions and manages users, partner secrets and service clients; `admin` also tenants, policy, SSO trust, keys and operators.",
    ),
    (
        "actor",
        "Who made a change on the admin API, as its audit events record it: `operator:<username>` or `admin-token`.",
    ),
];

/// Headers every operation accepts, documented once instead of on each endpoint.
const COMMON_HEADERS: &[&str] = &["X-Activity-ID", "X-Correlation-ID", "X-Session-ID"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// A schema as a short type: `string`, `LoginRequest`, `array of SessionView`, …
fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        return format!("`{}`", r.rsplit('/').next().unwrap_or(r));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = s[key].as_array() {
            let named: Vec<String> = alts
                .iter()
                .filter(|a| a["type"] != "null")
                .map(type_of)
                .collect();
            let nullable = alts.iter().any(|a| a["type"] == "null");
            return format!(
                "{}{}",
                named.join(" or "),
                if nullable { " (or null)" } else { "" }
            );
        }
    }
    match &s["type"] {
        Value::String(t) if t == "array" => format!("array of {}", type_of(&s["items"])),
        Value::String(t) => {
            let mut t = t.clone();
            if let Some(values) = s["enum"].as_array() {
                let v: Vec<String> = values
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|v| format!("`{v}`"))
                    .collect();
                t = format!("{t}: {}", v.join(", "));
            }
            t
        }
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

/// The fields of an object schema as a table (nothing for other schemas).
fn fields(doc: &Value, name: &str, out: &mut String) {
    let s = schema(doc, name);
    let Some(props) = s["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n| field | type | required | meaning |\n|---|---|---|---|"
    );
    for (k, v) in props {
        let _ = writeln!(
            out,
            "| `{k}` | {} | {} | {} |",
            cell(&type_of(v)),
            if required.contains(&k.as_str()) {
                "yes"
            } else {
                "no"
            },
            cell(v["description"].as_str().unwrap_or(""))
        );
    }
}

fn render(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# sessiond HTTP API reference\n\n<!-- Generated from openapi.json by \
         crates/sessiond-server/tests/api_reference.rs; do not edit by hand. Regenerate with \
         `{UPDATE_VAR}=1 cargo test -p sessiond-server --test api_reference`. -->\n"
    );
    let _ = writeln!(
        out,
        "{}\n\nThe machine-readable document is `openapi.json` at the repository's root, also \
         served at `GET /openapi.json`.\n",
        doc["info"]["description"].as_str().unwrap_or("")
    );
    let _ = writeln!(out, "## Terms\n\n| term | meaning |\n|---|---|");
    for (t, m) in TERMS {
        let _ = writeln!(out, "| {t} | {m} |");
    }
    let _ = writeln!(
        out,
        "\n## Errors\n\nEvery error is `application/problem+json`: `{{\"type\", \"title\", \
         \"status\", \"detail\", \"code\", \"activityId\"}}`, where `code` is one of:\n"
    );
    for c in schema(doc, "ErrorCode")["enum"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "- `{}`", c.as_str().unwrap_or(""));
    }
    let _ = writeln!(
        out,
        "\n`rate_limited` and `store_unavailable` come with `Retry-After`.\n\n## Common \
         headers\n\nEvery operation accepts {} (echoed in the response; `X-Activity-ID` is \
         generated when absent unless the tenant's profile requires it), and every response \
         carries `X-Activity-ID`. They are not repeated below.\n",
        COMMON_HEADERS
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "## Authentication\n\n| scheme | what |\n|---|---|");
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        for (name, s) in schemes {
            let _ = writeln!(
                out,
                "| `{name}` | {} |",
                cell(s["description"].as_str().unwrap_or(""))
            );
        }
    }
    let methods = ["get", "post", "put", "patch", "delete"];
    for tag in doc["tags"].as_array().into_iter().flatten() {
        let tag_name = tag["name"].as_str().unwrap_or("");
        let _ = writeln!(
            out,
            "\n## {tag_name}\n\n{}",
            tag["description"].as_str().unwrap_or("")
        );
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for m in methods {
                let op = &item[m];
                let in_tag = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == tag_name));
                if !in_tag {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "\n### {} {path}\n\n{}",
                    m.to_uppercase(),
                    op["summary"].as_str().unwrap_or("")
                );
                if let Some(d) = op["description"].as_str() {
                    let _ = writeln!(out, "\n{}", one_line(d));
                }
                let auth: Vec<String> = op["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object)
                    .flat_map(|o| o.keys().map(|k| format!("`{k}`")))
                    .collect();
                if !auth.is_empty() {
                    let _ = writeln!(out, "\nAuthentication: {}.", auth.join(" or "));
                }
                let params: Vec<&Value> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| !COMMON_HEADERS.contains(&p["name"].as_str().unwrap_or("")))
                    .collect();
                if !params.is_empty() {
                    let _ = writeln!(
                        out,
                        "\n| parameter | in | required | meaning |\n|---|---|---|---|"
                    );
                    for p in params {
                        let _ = writeln!(
                            out,
                            "| `{}` | {} | {} | {} |",
                            p["name"].as_str().unwrap_or(""),
                            p["in"].as_str().unwrap_or(""),
                            if p["required"] == true { "yes" } else { "no" },
                            cell(p["description"].as_str().unwrap_or(""))
                        );
                    }
                }
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    for (media, c) in content {
                        let ty = type_of(&c["schema"]);
                        let _ = writeln!(out, "\nRequest body (`{media}`): {ty}.");
                        if let Some(r) = c["schema"]["$ref"].as_str() {
                            fields(doc, r.rsplit('/').next().unwrap_or(r), &mut out);
                        }
                    }
                }
                let _ = writeln!(out, "\n| status | meaning |\n|---|---|");
                for (status, r) in op["responses"].as_object().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "| {status} | {} |",
                        cell(r["description"].as_str().unwrap_or(""))
                    );
                }
            }
        }
    }
    out
}

#[test]
fn docs_api_md_is_rendered_from_the_openapi_document() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("openapi.json")).unwrap())
            .unwrap();
    let rendered = render(&doc);
    let path = root().join("docs/API.md");
    if std::env::var_os(UPDATE_VAR).is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == rendered,
        "docs/API.md differs from what openapi.json renders to. Regenerate it with\n\n    \
         {UPDATE_VAR}=1 cargo test -p sessiond-server --test api_reference\n\nand commit it."
    );
    // Every operation of the document is in the reference.
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for m in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            let heading = format!("### {} {path}\n", m.to_uppercase());
            assert!(rendered.contains(&heading), "{heading} missing");
        }
    }
}
