//! Profiles and their defaults (DESIGN §4), and a tenant's effective policy.

use crate::CoreError;
use crate::outbound::Outbound;
use serde::Serialize;
use sessiond_store::{OnLimit, PolicyOverrides, Profile, SessionLimit};

pub const HEADER_AUTHORIZATION: &str = "Authorization";
pub const HEADER_TENANT: &str = "X-Tenant-ID";
pub const HEADER_ACTIVITY: &str = "X-Activity-ID";
const KNOWN_HEADERS: [&str; 3] = [HEADER_AUTHORIZATION, HEADER_ACTIVITY, HEADER_TENANT];

/// The policy in force for a tenant: its profile's defaults with its overrides applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub session_token_ttl: u32,
    pub refresh_tokens: bool,
    pub refresh_token_ttl: u32,
    pub absolute_ttl: u32,
    /// 0 = no idle timeout.
    pub idle_ttl: u32,
    /// 0 = unlimited.
    pub max_sessions_per_user: u32,
    pub on_limit: OnLimit,
    pub required_headers: Vec<String>,
    pub refresh_grace_seconds: u32,
    pub https_only: bool,
    /// Free failures of one account from one client address before that address backs off
    /// (see `guard`); 0 = no backoff.
    pub login_backoff_after: u32,
    /// Login attempts per minute at one account from one client address; 0 = no limit.
    pub login_rate_per_minute: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caep_receiver_url: Option<String>,
    /// Seconds since the session's last authentication (`auth_time`) after which logout-all
    /// and revoking other sessions need a re-authentication first; 0 = never.
    pub reauth_max_age: u32,
}

const DAY: u32 = 24 * 3600;

impl Policy {
    pub fn defaults(profile: Profile) -> Self {
        let headers = |h: &[&str]| h.iter().map(|s| (*s).to_owned()).collect();
        let base = Policy {
            session_token_ttl: 3600,
            refresh_tokens: true,
            refresh_token_ttl: DAY,
            absolute_ttl: DAY,
            idle_ttl: 3600,
            max_sessions_per_user: 0,
            on_limit: OnLimit::EvictOldest,
            required_headers: headers(&KNOWN_HEADERS),
            refresh_grace_seconds: 10,
            https_only: false,
            login_backoff_after: 5,
            login_rate_per_minute: 30,
            webhook_url: None,
            caep_receiver_url: None,
            reauth_max_age: 0,
        };
        match profile {
            Profile::Playground => Policy {
                session_token_ttl: 10_000,
                refresh_tokens: false,
                idle_ttl: 0,
                required_headers: headers(&[HEADER_AUTHORIZATION, HEADER_TENANT]),
                ..base
            },
            Profile::Integration => base,
            Profile::Production => Policy {
                idle_ttl: 1800,
                https_only: true,
                ..base
            },
        }
    }

    /// The effective policy of a profile with overrides, or why the overrides are invalid.
    pub fn effective(profile: Profile, o: &PolicyOverrides) -> Result<Self, CoreError> {
        let d = Self::defaults(profile);
        let p = Policy {
            session_token_ttl: o.session_token_ttl.unwrap_or(d.session_token_ttl),
            refresh_tokens: o.refresh_tokens.unwrap_or(d.refresh_tokens),
            refresh_token_ttl: o.refresh_token_ttl.unwrap_or(d.refresh_token_ttl),
            absolute_ttl: o.absolute_ttl.unwrap_or(d.absolute_ttl),
            idle_ttl: o.idle_ttl.unwrap_or(d.idle_ttl),
            max_sessions_per_user: o.max_sessions_per_user.unwrap_or(d.max_sessions_per_user),
            on_limit: o.on_limit.unwrap_or(d.on_limit),
            required_headers: o.required_headers.clone().unwrap_or(d.required_headers),
            refresh_grace_seconds: o.refresh_grace_seconds.unwrap_or(d.refresh_grace_seconds),
            https_only: o.https_only.unwrap_or(d.https_only),
            login_backoff_after: o.login_backoff_after.unwrap_or(d.login_backoff_after),
            login_rate_per_minute: o.login_rate_per_minute.unwrap_or(d.login_rate_per_minute),
            webhook_url: o.webhook_url.clone().or(d.webhook_url),
            caep_receiver_url: o.caep_receiver_url.clone().or(d.caep_receiver_url),
            reauth_max_age: o.reauth_max_age.unwrap_or(d.reauth_max_age),
        };
        p.validate()?;
        Ok(p)
    }

    /// The effective policy for overrides being set (a tenant created or its policy changed):
    /// as [`Policy::effective`], and the `webhookUrl` and `caepReceiverUrl` must be URLs the
    /// profile's requests may reach ([`Outbound`]). Checked only when set, so a stored policy
    /// always loads.
    pub fn to_set(profile: Profile, o: &PolicyOverrides) -> Result<Self, CoreError> {
        let p = Self::effective(profile, o)?;
        let outbound = Outbound::for_profile(profile);
        let refused = |name: &str, why: String| {
            CoreError::InvalidRequest(format!("{name} is refused: {why}"))
        };
        if let Some(url) = &p.webhook_url {
            outbound
                .check_url(url)
                .map_err(|why| refused("webhookUrl", why))?;
        }
        if let Some(url) = &p.caep_receiver_url {
            outbound
                .check_confidential_url(url)
                .map_err(|why| refused("caepReceiverUrl", why))?;
        }
        Ok(p)
    }

    fn validate(&self) -> Result<(), CoreError> {
        let bad = |m: &str| Err(CoreError::InvalidRequest(m.to_owned()));
        if self.session_token_ttl == 0 || self.absolute_ttl == 0 || self.refresh_token_ttl == 0 {
            return bad("token and session lifetimes must be at least 1 second");
        }
        if self.session_token_ttl > crate::token::MAX_TOKEN_TTL {
            return bad("sessionTokenTtl must be at most 86400");
        }
        if self.absolute_ttl > 366 * DAY {
            return bad("absoluteTtl must be at most one year");
        }
        if self.reauth_max_age > 366 * DAY {
            return bad("reauthMaxAge must be at most one year");
        }
        if self.refresh_grace_seconds > 300 {
            return bad("refreshGraceSeconds must be at most 300");
        }
        for h in &self.required_headers {
            if !KNOWN_HEADERS.iter().any(|k| k.eq_ignore_ascii_case(h)) {
                return bad(
                    "requiredHeaders may name only Authorization, X-Activity-ID and X-Tenant-ID",
                );
            }
        }
        for (name, url) in [
            ("webhookUrl", &self.webhook_url),
            ("caepReceiverUrl", &self.caep_receiver_url),
        ] {
            if let Some(url) = url
                && (url.len() > 2048
                    || !(url.starts_with("https://") || url.starts_with("http://")))
            {
                return Err(CoreError::InvalidRequest(format!(
                    "{name} must be an http(s) URL of at most 2048 characters"
                )));
            }
        }
        // Every end-user request names its tenant, and authenticated ones carry a token:
        // only X-Activity-ID is the tenant's choice.
        for always in [HEADER_AUTHORIZATION, HEADER_TENANT] {
            if !self
                .required_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(always))
            {
                return bad("requiredHeaders must include Authorization and X-Tenant-ID");
            }
        }
        Ok(())
    }

    pub fn requires_activity_id(&self) -> bool {
        self.required_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(HEADER_ACTIVITY))
    }

    pub fn idle_timeout(&self) -> Option<u32> {
        (self.idle_ttl > 0).then_some(self.idle_ttl)
    }

    pub fn session_limit(&self) -> SessionLimit {
        match (self.max_sessions_per_user, self.on_limit) {
            (0, _) => SessionLimit::Unlimited,
            (n, OnLimit::EvictOldest) => SessionLimit::EvictOldest(n),
            (n, OnLimit::Reject) => SessionLimit::Reject(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_defaults_follow_the_design_table() {
        let p = Policy::defaults(Profile::Playground);
        assert_eq!(
            (p.session_token_ttl, p.refresh_tokens, p.idle_ttl),
            (10_000, false, 0)
        );
        assert!(!p.requires_activity_id());
        let i = Policy::defaults(Profile::Integration);
        assert_eq!(
            (i.session_token_ttl, i.refresh_tokens, i.idle_ttl),
            (3600, true, 3600)
        );
        assert!(i.requires_activity_id() && !i.https_only);
        let p = Policy::defaults(Profile::Production);
        assert_eq!(
            (p.idle_ttl, p.absolute_ttl, p.https_only),
            (1800, 86_400, true)
        );
        assert_eq!(p.session_limit(), SessionLimit::Unlimited);
    }

    #[test]
    fn overrides_apply_and_are_validated() {
        let o = PolicyOverrides {
            max_sessions_per_user: Some(1),
            idle_ttl: Some(0),
            ..Default::default()
        };
        let p = Policy::effective(Profile::Production, &o).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.session_limit(), SessionLimit::EvictOldest(1));
        assert_eq!(p.idle_timeout(), None);
        let bad = PolicyOverrides {
            required_headers: Some(vec!["X-Evil".into()]),
            ..Default::default()
        };
        assert!(Policy::effective(Profile::Integration, &bad).is_err());
        let zero = PolicyOverrides {
            session_token_ttl: Some(0),
            ..Default::default()
        };
        assert!(Policy::effective(Profile::Integration, &zero).is_err());
    }

    #[test]
    fn a_production_webhook_must_reach_a_public_address_when_set() {
        let hook = |url: &str| PolicyOverrides {
            webhook_url: Some(url.into()),
            ..Default::default()
        };
        let local = hook("http://169.254.169.254/latest/meta-data/");
        assert!(Policy::to_set(Profile::Production, &local).is_err());
        assert!(Policy::to_set(Profile::Integration, &local).is_ok());
        assert!(Policy::to_set(Profile::Playground, &local).is_ok());
        // A stored policy still loads (the server refuses the address when connecting).
        assert!(Policy::effective(Profile::Production, &local).is_ok());
        let public = hook("https://hooks.example.com/sessiond");
        assert!(Policy::to_set(Profile::Production, &public).is_ok());
    }
}
