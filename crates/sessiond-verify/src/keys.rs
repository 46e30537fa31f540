//! The published keys, each pinned to its own algorithm, and the signature check.

use crate::error::Error;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sessiond_proto::{Jwk, Jwks};
use std::collections::HashMap;

/// The algorithms sessiond signs with. Nothing else is ever accepted (no `none`, no HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    EdDSA,
    ES256,
}

impl Alg {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "EdDSA" => Some(Alg::EdDSA),
            "ES256" => Some(Alg::ES256),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum PublicKey {
    Ed(ed25519_dalek::VerifyingKey),
    Es(p256::ecdsa::VerifyingKey),
}

/// One published key and the one algorithm it verifies.
#[derive(Debug)]
pub(crate) struct Key {
    alg: Alg,
    key: PublicKey,
}

impl Key {
    /// A JWK sessiond publishes: `OKP`/`Ed25519`/`EdDSA` or `EC`/`P-256`/`ES256`, `use: sig`.
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if jwk.r#use != "sig" {
            return None;
        }
        let x = B64.decode(&jwk.x).ok()?;
        match (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str()) {
            ("OKP", "Ed25519", "EdDSA") => {
                let bytes: [u8; 32] = x.try_into().ok()?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
                Some(Key {
                    alg: Alg::EdDSA,
                    key: PublicKey::Ed(key),
                })
            }
            ("EC", "P-256", "ES256") => {
                let y = B64.decode(jwk.y.as_deref()?).ok()?;
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(4);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?;
                Some(Key {
                    alg: Alg::ES256,
                    key: PublicKey::Es(key),
                })
            }
            _ => None,
        }
    }

    /// The header's `alg` must be this key's own; Ed25519 is checked strictly (no small-order
    /// or non-canonical forms), ES256 as r‖s.
    pub(crate) fn verify(
        &self,
        header_alg: Option<Alg>,
        input: &[u8],
        sig: &[u8],
    ) -> Result<(), Error> {
        if header_alg != Some(self.alg) {
            return Err(Error::TokenInvalid);
        }
        let ok = match &self.key {
            PublicKey::Ed(k) => <[u8; 64]>::try_from(sig).is_ok_and(|s| {
                k.verify_strict(input, &ed25519_dalek::Signature::from_bytes(&s))
                    .is_ok()
            }),
            PublicKey::Es(k) => p256::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| p256::ecdsa::signature::Verifier::verify(k, input, &s).is_ok()),
        };
        if ok { Ok(()) } else { Err(Error::TokenInvalid) }
    }
}

/// The keys of one JWKS fetch, by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Key>,
}

impl KeySet {
    /// Keys that are not sessiond's kinds are left out (and logged): a token naming one is
    /// refused like one naming no key.
    pub(crate) fn from_jwks(jwks: &Jwks) -> Self {
        let mut keys = HashMap::with_capacity(jwks.keys.len());
        for jwk in &jwks.keys {
            match Key::from_jwk(jwk) {
                Some(k) => {
                    keys.insert(jwk.kid.clone(), k);
                }
                None => tracing::warn!(kid = %jwk.kid, "JWKS key of an unsupported kind ignored"),
            }
        }
        Self { keys }
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}
