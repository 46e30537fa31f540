//! Secrets: CSPRNG ids and tokens, their hashes, constant-time comparison, and sealing with
//! the master key (private signing keys) or with a refresh token (its successor).

use crate::CoreError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sessiond_store::{Route, SessionId, TokenHash};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

pub fn random_bytes<const N: usize>() -> Result<[u8; N], CoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CoreError::Internal(format!("OS CSPRNG failed: {e}")))?;
    Ok(b)
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

/// A fresh session id of `route` (the user's): its route byte, then 120 bits from the OS
/// CSPRNG.
pub fn new_session_id(route: Route) -> Result<SessionId, CoreError> {
    Ok(SessionId::generate(route, random_bytes::<15>()?))
}

/// A fresh refresh token of `route`: the route byte, then 256 bits from the OS CSPRNG
/// (44 base64url characters).
pub fn new_refresh_token(route: Route) -> Result<String, CoreError> {
    let mut b = [0u8; 33];
    b[0] = route.0;
    b[1..].copy_from_slice(&random_bytes::<32>()?);
    Ok(b64(&b))
}

/// The stored form of a refresh token: its SHA-256, routed (see [`TokenHash::routed`]).
/// Tokens of the shape issued before routes existed (43 characters) keep their plain hash,
/// so that they still rotate after an upgrade.
pub fn hash_refresh(token: &str) -> TokenHash {
    let plain = hash_token(token);
    if token.len() == 44 {
        TokenHash::routed(plain.0, Route::of_b64(token))
    } else {
        plain
    }
}

/// An opaque secret of 256 bits (refresh tokens, admin and client secrets).
pub fn new_secret() -> Result<String, CoreError> {
    Ok(b64(&random_bytes::<32>()?))
}

/// HMAC-SHA256 over the concatenated `parts`, as hex.
pub(crate) fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::Mac;
    let Ok(mut mac) = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
    let nonce = random_bytes::<24>()?;
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CoreError::Internal("sealing failed".into()))?;
    Ok([nonce.as_slice(), &ct].concat())
}

fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 24 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(24);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

/// The deployment's master key: it seals private signing keys at rest.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn generate() -> Result<Self, CoreError> {
        Ok(Self(random_bytes()?))
    }

    /// Parses 32 bytes given as 64 hex digits or as base64 (standard or URL-safe).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?
        } else {
            let t = s.trim_end_matches('=');
            B64.decode(t.replace('+', "-").replace('/', "_")).ok()?
        };
        bytes.try_into().ok().map(Self)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A secret derived from the master key for one purpose (HMAC-SHA256 over `parts`), hex.
    pub fn derive_hex(&self, parts: &[&[u8]]) -> String {
        hmac_hex(&self.0, parts)
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
        seal(&self.0, aad, plaintext)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open(&self.0, aad, sealed)
    }
}

fn successor_key(presented: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessiond/refresh-successor/v1\0");
    h.update(presented.as_bytes());
    h.finalize().into()
}

/// Seals a refresh token's successor so that only the holder of `presented` can open it:
/// the store can hand it back during the grace window without ever holding it in clear.
pub fn seal_successor(presented: &str, successor: &str) -> Result<Vec<u8>, CoreError> {
    seal(&successor_key(presented), b"refresh", successor.as_bytes())
}

pub fn open_successor(presented: &str, sealed: &[u8]) -> Option<String> {
    open(&successor_key(presented), b"refresh", sealed).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_opens_only_with_the_presented_token() {
        let sealed = seal_successor("old", "new").unwrap_or_default();
        assert_eq!(open_successor("old", &sealed).as_deref(), Some("new"));
        assert_eq!(open_successor("other", &sealed), None);
    }

    #[test]
    fn master_key_parses_hex_and_base64_and_seals() {
        let k = MasterKey::parse(&"ab".repeat(32)).unwrap_or_else(|| panic!("hex"));
        assert!(MasterKey::parse(&b64(&[7u8; 32])).is_some());
        assert!(MasterKey::parse("short").is_none());
        let sealed = k.seal(b"kid", b"secret").unwrap_or_default();
        assert_eq!(k.open(b"kid", &sealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(k.open(b"other", &sealed), None);
        assert!(!format!("{k:?}").contains("ab"));
    }

    #[test]
    fn ids_and_secrets_have_the_documented_shape() {
        let id = new_session_id(Route(200)).unwrap_or_else(|e| panic!("{e}"));
        assert!(SessionId::parse(id.as_str()).is_ok());
        assert_eq!(id.route(), Route(200));
        assert_eq!(new_secret().unwrap_or_default().len(), 43);
        let rt = new_refresh_token(Route(13)).unwrap_or_default();
        assert_eq!(rt.len(), 44);
        assert_eq!(Route::of_hash(&hash_refresh(&rt)), Route(13));
        let legacy = new_secret().unwrap_or_default();
        assert_eq!(hash_refresh(&legacy), hash_token(&legacy));
    }
}
