//! A session token's parts and claims, and the claim rules (DESIGN §3).

use crate::error::Error;
use crate::keys::Alg;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// Tokens longer than this are refused before any parsing.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;
const TOKEN_TYPE: &str = "at+jwt";

/// The verified claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: uuid::Uuid,
    /// The session id.
    pub sid: String,
    /// The tenant id.
    pub tid: String,
    /// The customer id.
    pub cid: uuid::Uuid,
    pub scope: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub auth_time: i64,
    pub amr: Vec<String>,
}

/// The header: `alg`, `typ`, `kid` and nothing else (an embedded `jwk`, `jku`, `x5u` or
/// `crit` makes the token invalid rather than being ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The header's `alg` and `kid`, its `typ` checked.
pub(crate) struct Header {
    pub(crate) alg: Option<Alg>,
    pub(crate) kid: String,
}

/// A token split at its dots, its header read.
pub(crate) struct Parts<'a> {
    pub(crate) header: Header,
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: &'a str,
    pub(crate) signature: Vec<u8>,
}

impl<'a> Parts<'a> {
    pub(crate) fn parse(token: &'a str) -> Result<Self, Error> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::TokenInvalid);
        }
        let mut it = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(Error::TokenInvalid);
        };
        let bytes = B64.decode(h).map_err(|_| Error::TokenInvalid)?;
        // Borrowed: a header with escapes in its strings is not sessiond's, and is refused.
        let raw: RawHeader<'_> = serde_json::from_slice(&bytes).map_err(|_| Error::TokenInvalid)?;
        if raw.typ != TOKEN_TYPE && raw.typ != "application/at+jwt" {
            return Err(Error::TokenInvalid);
        }
        let header = Header {
            alg: Alg::parse(raw.alg),
            kid: raw.kid.to_owned(),
        };
        let signature = B64.decode(s).map_err(|_| Error::TokenInvalid)?;
        Ok(Self {
            header,
            signing_input: token
                .as_bytes()
                .get(..h.len() + 1 + p.len())
                .unwrap_or_default(),
            payload: p,
            signature,
        })
    }

    /// The claims (call only once the signature holds).
    pub(crate) fn claims(&self) -> Result<Claims, Error> {
        let bytes = B64.decode(self.payload).map_err(|_| Error::TokenInvalid)?;
        serde_json::from_slice(&bytes).map_err(|_| Error::TokenInvalid)
    }
}

/// What every accepted token's claims must say.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) tenant: String,
    pub(crate) exp_leeway: i64,
    pub(crate) nbf_leeway: i64,
}

impl Rules {
    pub(crate) fn check(&self, c: &Claims, now: i64) -> Result<(), Error> {
        let mismatch = if c.iss != self.issuer {
            Some("iss")
        } else if c.aud != self.audience {
            Some("aud")
        } else if c.tid != self.tenant {
            Some("tid")
        } else if c.nbf > now + self.nbf_leeway || c.iat > now + self.nbf_leeway {
            Some("nbf")
        } else {
            None
        };
        if let Some(claim) = mismatch {
            // The caller only learns `token_invalid`; the operator can tell a misconfigured
            // issuer or audience from a forgery here.
            tracing::debug!(claim, "a validly signed token failed a claim check");
            return Err(Error::TokenInvalid);
        }
        if now >= c.exp + self.exp_leeway {
            return Err(Error::TokenExpired);
        }
        Ok(())
    }
}
