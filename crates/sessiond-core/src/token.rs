//! Session tokens (DESIGN §3): EdDSA (or ES256) JWTs with `typ: at+jwt`, and the keyring that signs and
//! verifies them. Verification takes the algorithm from the key named by `kid`, never from
//! the token, and refuses any header parameter but `alg`, `typ` and `kid`.

use crate::CoreError;
use crate::secret::{MasterKey, b64, b64_decode, random_bytes};
use serde::{Deserialize, Serialize};
use sessiond_store::{CustomerId, KeyState, SessionId, StoredKey, TenantId, UnixTime, UserId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const TOKEN_TYPE: &str = "at+jwt";
pub const ALG_EDDSA: &str = "EdDSA";
pub const ALG_ES256: &str = "ES256";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `nbf`/`iat` (seconds). `exp` is enforced exactly.
pub const NBF_LEEWAY: i64 = 30;
/// The longest lifetime a session token can have (the policy caps it): a key retired by a
/// rotation stays published this long after it stopped signing.
pub const MAX_TOKEN_TTL: u32 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    pub sid: SessionId,
    pub tid: TenantId,
    pub cid: CustomerId,
    pub scope: String,
    pub jti: String,
    pub iat: UnixTime,
    pub nbf: UnixTime,
    pub exp: UnixTime,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed, unsigned, or signed by an unknown key")]
    Invalid,
    #[error("token has expired")]
    Expired,
}

/// The algorithms sessiond signs its own tokens with (a deployment option, DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Alg {
    #[default]
    EdDSA,
    ES256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => ALG_EDDSA,
            Alg::ES256 => ALG_ES256,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Alg::EdDSA, Alg::ES256]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

enum SignKey {
    Ed(ed25519_dalek::SigningKey),
    Es(p256::ecdsa::SigningKey),
}

enum VerifyKey {
    Ed(ed25519_dalek::VerifyingKey),
    Es(p256::ecdsa::VerifyingKey),
}

impl SignKey {
    /// A fresh key from the OS CSPRNG: the key, its private bytes, its public bytes (Ed25519:
    /// 32 bytes; P-256: the 65-byte uncompressed SEC1 point).
    fn generate(alg: Alg) -> Result<(Vec<u8>, Vec<u8>), CoreError> {
        loop {
            let seed = random_bytes::<32>()?;
            if let Some(key) = Self::from_private(alg, &seed) {
                return Ok((seed.to_vec(), key.public()));
            }
            // A P-256 scalar out of range (probability ~2^-32): draw again.
        }
    }

    fn from_private(alg: Alg, bytes: &[u8]) -> Option<Self> {
        match alg {
            Alg::EdDSA => bytes
                .try_into()
                .ok()
                .map(|b| SignKey::Ed(ed25519_dalek::SigningKey::from_bytes(&b))),
            Alg::ES256 => p256::ecdsa::SigningKey::from_slice(bytes)
                .ok()
                .map(SignKey::Es),
        }
    }

    fn public(&self) -> Vec<u8> {
        match self {
            SignKey::Ed(k) => k.verifying_key().to_bytes().to_vec(),
            SignKey::Es(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match self {
            SignKey::Ed(k) => k.sign(msg).to_bytes().to_vec(),
            SignKey::Es(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, msg);
                sig.to_bytes().to_vec()
            }
        }
    }
}

impl VerifyKey {
    fn from_public(alg: Alg, bytes: &[u8]) -> Option<Self> {
        match alg {
            Alg::EdDSA => bytes
                .try_into()
                .ok()
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
                .map(VerifyKey::Ed),
            Alg::ES256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .ok()
                .map(VerifyKey::Es),
        }
    }

    /// Ed25519 verified strictly (no malleable or small-order forms); ES256 as r‖s.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            VerifyKey::Ed(k) => <[u8; 64]>::try_from(sig).is_ok_and(|s| {
                k.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&s))
                    .is_ok()
            }),
            VerifyKey::Es(k) => p256::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| p256::ecdsa::signature::Verifier::verify(k, msg, &s).is_ok()),
        }
    }
}

/// The public JWK members of a key (RFC 7517/8037), in RFC 7638's lexicographic order.
fn jwk_members(alg: Alg, public: &[u8]) -> serde_json::Value {
    match alg {
        Alg::EdDSA => serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": b64(public)}),
        Alg::ES256 => {
            let (x, y) = public
                .get(1..)
                .map_or((&[][..], &[][..]), |xy| xy.split_at(xy.len() / 2));
            serde_json::json!({"crv": "P-256", "kty": "EC", "x": b64(x), "y": b64(y)})
        }
    }
}

/// RFC 7638 thumbprint: SHA-256 of the required members, serialized in order.
fn thumbprint(alg: Alg, public: &[u8]) -> String {
    b64(&Sha256::digest(
        jwk_members(alg, public).to_string().as_bytes(),
    ))
}

struct PublishedKey {
    alg: &'static str,
    key: VerifyKey,
}

/// The signing key, the published keys, and their stored form.
pub struct Keyring {
    signing: SignKey,
    signing_kid: String,
    header_b64: String,
    published: HashMap<String, PublishedKey>,
    stored: Vec<StoredKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

fn new_stored_key(
    master: &MasterKey,
    alg: Alg,
    state: KeyState,
    now: UnixTime,
) -> Result<StoredKey, CoreError> {
    let (private, public) = SignKey::generate(alg)?;
    let kid = thumbprint(alg, &public);
    Ok(StoredKey {
        sealed_private: master.seal(kid.as_bytes(), &private)?,
        kid,
        alg: alg.as_str().to_owned(),
        public,
        state,
        created_at: now,
        retire_at: None,
    })
}

fn stored_alg(k: &StoredKey) -> Result<Alg, CoreError> {
    Alg::parse(&k.alg)
        .ok_or_else(|| CoreError::Internal(format!("key {} has unknown alg {}", k.kid, k.alg)))
}

impl Keyring {
    /// A first keyring: a signing key and a published next key.
    pub fn generate(
        master: &MasterKey,
        alg: Alg,
        now: UnixTime,
    ) -> Result<Vec<StoredKey>, CoreError> {
        Ok(vec![
            new_stored_key(master, alg, KeyState::Signing, now)?,
            new_stored_key(master, alg, KeyState::Next, now)?,
        ])
    }

    /// Opens a stored keyring; fails if the master key does not open the signing key.
    pub fn load(master: &MasterKey, stored: Vec<StoredKey>) -> Result<Self, CoreError> {
        let mut published = HashMap::new();
        for k in &stored {
            let alg = stored_alg(k)?;
            let key = VerifyKey::from_public(alg, &k.public).ok_or_else(|| bad_key(&k.kid))?;
            published.insert(
                k.kid.clone(),
                PublishedKey {
                    alg: alg.as_str(),
                    key,
                },
            );
        }
        let signing_stored = stored
            .iter()
            .find(|k| k.state == KeyState::Signing)
            .ok_or_else(|| CoreError::Internal("keyring has no signing key".into()))?;
        let alg = stored_alg(signing_stored)?;
        let private = master
            .open(
                signing_stored.kid.as_bytes(),
                &signing_stored.sealed_private,
            )
            .ok_or_else(|| {
                CoreError::Internal(
                    "the master key does not open the signing key (wrong SESSIOND_MASTER_KEY?)"
                        .into(),
                )
            })?;
        let signing =
            SignKey::from_private(alg, &private).ok_or_else(|| bad_key(&signing_stored.kid))?;
        let signing_kid = signing_stored.kid.clone();
        let header = serde_json::to_vec(&Header {
            alg: alg.as_str(),
            typ: TOKEN_TYPE,
            kid: &signing_kid,
        })
        .map_err(|e| CoreError::Internal(e.to_string()))?;
        Ok(Self {
            signing,
            header_b64: b64(&header),
            signing_kid,
            published,
            stored,
        })
    }

    /// The keyring after a rotation: next → signing, signing → retiring (published until the
    /// tokens it signed have expired), a fresh next key of `alg`; retiring keys past their
    /// time go.
    pub fn rotated(
        &self,
        master: &MasterKey,
        alg: Alg,
        now: UnixTime,
    ) -> Result<Vec<StoredKey>, CoreError> {
        let mut keys: Vec<StoredKey> = self
            .stored
            .iter()
            .filter(|k| k.retire_at.is_none_or(|t| t > now))
            .cloned()
            .collect();
        for k in &mut keys {
            match k.state {
                KeyState::Signing => {
                    k.state = KeyState::Retiring;
                    k.retire_at = Some(now + i64::from(MAX_TOKEN_TTL) + NBF_LEEWAY);
                }
                KeyState::Next => k.state = KeyState::Signing,
                KeyState::Retiring => {}
            }
        }
        keys.push(new_stored_key(master, alg, KeyState::Next, now)?);
        Ok(keys)
    }

    /// The keyring without `kid` (an emergency revocation: unlike a rotation, the key is not
    /// kept published, so the tokens it signed are refused at once); `None` if it holds no
    /// such key. A revoked signing key is replaced as by a rotation (the published next key
    /// signs, a fresh next key of `alg` is published); a revoked next key by a fresh one.
    /// Retiring keys past their time go.
    pub fn revoked(
        &self,
        master: &MasterKey,
        alg: Alg,
        kid: &str,
        now: UnixTime,
    ) -> Result<Option<Vec<StoredKey>>, CoreError> {
        let Some(state) = self.stored.iter().find(|k| k.kid == kid).map(|k| k.state) else {
            return Ok(None);
        };
        let mut keys: Vec<StoredKey> = self
            .stored
            .iter()
            .filter(|k| k.kid != kid && k.retire_at.is_none_or(|t| t > now))
            .cloned()
            .collect();
        match state {
            KeyState::Signing => {
                match keys.iter_mut().find(|k| k.state == KeyState::Next) {
                    Some(next) => next.state = KeyState::Signing,
                    // No next key to promote (never so in a keyring sessiond wrote).
                    None => keys.push(new_stored_key(master, alg, KeyState::Signing, now)?),
                }
                keys.push(new_stored_key(master, alg, KeyState::Next, now)?);
            }
            KeyState::Next => keys.push(new_stored_key(master, alg, KeyState::Next, now)?),
            KeyState::Retiring => {}
        }
        Ok(Some(keys))
    }

    /// When the deployment's algorithm changed, the keyring with the (never yet used) next key
    /// replaced by one of `alg`, so that the next rotation switches algorithms; `None` if the
    /// next key already has it.
    pub fn with_next_alg(
        &self,
        master: &MasterKey,
        alg: Alg,
        now: UnixTime,
    ) -> Result<Option<Vec<StoredKey>>, CoreError> {
        if self
            .stored
            .iter()
            .any(|k| k.state == KeyState::Next && k.alg == alg.as_str())
        {
            return Ok(None);
        }
        let mut keys: Vec<StoredKey> = self
            .stored
            .iter()
            .filter(|k| k.state != KeyState::Next)
            .cloned()
            .collect();
        keys.push(new_stored_key(master, alg, KeyState::Next, now)?);
        Ok(Some(keys))
    }

    pub fn stored(&self) -> &[StoredKey] {
        &self.stored
    }

    /// Does this keyring verify tokens signed with `kid`?
    pub fn publishes(&self, kid: &str) -> bool {
        self.published.contains_key(kid)
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, CoreError> {
        Self::sign_under(&self.signing, &self.header_b64, claims)
    }

    /// Signs `claims` under a header of type `typ` instead of `at+jwt` (a back-channel logout
    /// token, a Security Event Token): a token of another type, which no verifier of session
    /// tokens accepts.
    pub fn sign_typed<C: Serialize>(&self, typ: &str, claims: &C) -> Result<String, CoreError> {
        let alg = match self.signing {
            SignKey::Ed(_) => Alg::EdDSA,
            SignKey::Es(_) => Alg::ES256,
        };
        let header = serde_json::to_vec(&Header {
            alg: alg.as_str(),
            typ,
            kid: &self.signing_kid,
        })
        .map_err(|e| CoreError::Internal(e.to_string()))?;
        Self::sign_under(&self.signing, &b64(&header), claims)
    }

    fn sign_under<C: Serialize>(
        key: &SignKey,
        header_b64: &str,
        claims: &C,
    ) -> Result<String, CoreError> {
        let payload = serde_json::to_vec(claims).map_err(|e| CoreError::Internal(e.to_string()))?;
        let mut token = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 90);
        token.push_str(header_b64);
        token.push('.');
        token.push_str(&b64(&payload));
        let sig = key.sign(token.as_bytes());
        token.push('.');
        token.push_str(&b64(&sig));
        Ok(token)
    }

    /// Verifies signature, type, issuer, audience and time. The caller checks the tenant and
    /// the session's state.
    pub fn verify(
        &self,
        token: &str,
        iss: &str,
        aud: &str,
        now: UnixTime,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_ignoring_expiry(token, iss, aud, now)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// Every check of [`Keyring::verify`] but `exp`: for ending a session with its own
    /// expired token.
    pub fn verify_ignoring_expiry(
        &self,
        token: &str,
        iss: &str,
        aud: &str,
        now: UnixTime,
    ) -> Result<Claims, TokenError> {
        let claims: Claims = serde_json::from_slice(&self.verify_signature(token)?)
            .map_err(|_| TokenError::Invalid)?;
        if claims.iss != iss
            || claims.aud != aud
            || claims.nbf > now + NBF_LEEWAY
            || claims.iat > now + NBF_LEEWAY
        {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// True for a well-formed token header naming a key this keyring does not hold.
    pub fn names_unknown_kid(&self, token: &str) -> bool {
        let Some(h) = token.split('.').next() else {
            return false;
        };
        let Some(bytes) = b64_decode(h).filter(|_| token.len() <= MAX_TOKEN_LEN) else {
            return false;
        };
        serde_json::from_slice::<Header<'_>>(&bytes)
            .is_ok_and(|header| !self.published.contains_key(header.kid))
    }

    /// Checks the header (`typ`, a known `kid`, that key's own `alg`, nothing else) and the
    /// signature; returns the payload's bytes, unparsed.
    pub fn verify_signature(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let header_bytes = b64_decode(h).ok_or(TokenError::Invalid)?;
        let header: Header<'_> =
            serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Invalid)?;
        if header.typ != TOKEN_TYPE && header.typ != "application/at+jwt" {
            return Err(TokenError::Invalid);
        }
        let key = self.published.get(header.kid).ok_or(TokenError::Invalid)?;
        if header.alg != key.alg {
            return Err(TokenError::Invalid);
        }
        let sig = b64_decode(s).ok_or(TokenError::Invalid)?;
        let signed_len = h.len() + 1 + p.len();
        if !key.key.verify(&token.as_bytes()[..signed_len], &sig) {
            return Err(TokenError::Invalid);
        }
        b64_decode(p).ok_or(TokenError::Invalid)
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .stored
            .iter()
            .filter_map(|k| {
                let mut jwk = jwk_members(Alg::parse(&k.alg)?, &k.public);
                jwk["alg"] = k.alg.clone().into();
                jwk["use"] = "sig".into();
                jwk["kid"] = k.kid.clone().into();
                Some(jwk)
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn bad_key(kid: &str) -> CoreError {
    CoreError::Internal(format!("stored key {kid} is corrupt"))
}

/// The claims of an internal access token: a session's identity, for one backend's audience.
/// `client_id` makes it unusable as a session token (whose claims admit no extra member).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    pub sid: SessionId,
    pub tid: TenantId,
    pub cid: CustomerId,
    pub client_id: String,
    pub scope: String,
    pub jti: String,
    pub iat: UnixTime,
    pub nbf: UnixTime,
    pub exp: UnixTime,
    pub auth_time: UnixTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn keyring() -> (MasterKey, Keyring) {
        let m = MasterKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let stored = Keyring::generate(&m, Alg::EdDSA, 1000).unwrap_or_else(|e| panic!("{e}"));
        let k = Keyring::load(&m, stored).unwrap_or_else(|e| panic!("{e}"));
        (m, k)
    }

    fn claims(now: UnixTime) -> Claims {
        Claims {
            iss: "iss".into(),
            aud: "aud".into(),
            sub: Uuid::new_v4(),
            sid: SessionId::from_generated("s".repeat(22)),
            tid: TenantId::parse("t1").unwrap_or_else(|e| panic!("{e}")),
            cid: Uuid::new_v4(),
            scope: "session".into(),
            jti: "j".into(),
            iat: now,
            nbf: now,
            exp: now + 60,
            auth_time: now,
            amr: vec!["pwd".into()],
        }
    }

    /// A session token whose signature a lax Ed25519 verifier accepts but the strict rules
    /// refuse, forged with the keyring's own private key: R is the identity point (small
    /// order) and S = k·a, so [S]B = R + [k]A holds. (A non-canonical S ≥ L is refused by
    /// ed25519-dalek's lax check too, so it proves nothing here.)
    #[test]
    fn a_small_order_ed25519_signature_is_refused() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest, Sha512};
        let (_, k) = keyring();
        let t = k.sign(&claims(1000)).unwrap_or_default();
        let SignKey::Ed(signing) = &k.signing else {
            panic!("an EdDSA keyring")
        };
        let (signed, _) = t.rsplit_once('.').unwrap_or_default();
        let public = signing.verifying_key();
        // The secret scalar a: the clamped first half of SHA-512(seed).
        let h = Sha512::digest(signing.to_bytes());
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        let a = Scalar::from_bytes_mod_order(a);
        let identity = CompressedEdwardsY::from_slice(&{
            let mut r = [0u8; 32];
            r[0] = 1;
            r
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let k_hash = Sha512::new()
            .chain_update(identity.as_bytes())
            .chain_update(public.as_bytes())
            .chain_update(signed.as_bytes())
            .finalize();
        let mut wide = [0u8; 64];
        wide.copy_from_slice(&k_hash);
        let s = Scalar::from_bytes_mod_order_wide(&wide) * a;
        let mut small_order = [0u8; 64];
        small_order[..32].copy_from_slice(identity.as_bytes());
        small_order[32..].copy_from_slice(s.as_bytes());
        let lax = ed25519_dalek::Signature::from_bytes(&small_order);
        assert!(
            ed25519_dalek::Verifier::verify(&public, signed.as_bytes(), &lax).is_ok(),
            "the forgery passes the lax check, so only strictness refuses it"
        );
        let forged = format!("{signed}.{}", b64(&small_order));
        assert_eq!(
            k.verify(&forged, "iss", "aud", 1000).ok(),
            None,
            "small-order R"
        );
    }

    #[test]
    fn round_trip_and_time_checks() {
        let (_, k) = keyring();
        let t = k.sign(&claims(1000)).unwrap_or_default();
        assert_eq!(
            k.verify(&t, "iss", "aud", 1000).map(|c| c.jti),
            Ok("j".into())
        );
        assert_eq!(k.verify(&t, "iss", "aud", 1060), Err(TokenError::Expired));
        assert_eq!(k.verify(&t, "iss", "aud", 900), Err(TokenError::Invalid));
        assert_eq!(k.verify(&t, "other", "aud", 1000), Err(TokenError::Invalid));
        assert_eq!(k.verify(&t, "iss", "other", 1000), Err(TokenError::Invalid));
    }

    #[test]
    fn forged_headers_and_payloads_are_refused() {
        let (_, k) = keyring();
        let t = k.sign(&claims(1000)).unwrap_or_default();
        let parts: Vec<&str> = t.split('.').collect();
        let hdr = |json: &str| b64(json.as_bytes());
        let kid = k.signing_kid().to_owned();
        for header in [
            format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","jku":"http://x"}}"#),
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"unknown"}"#.to_owned(),
        ] {
            let forged = format!("{}.{}.{}", hdr(&header), parts[1], parts[2]);
            assert_eq!(
                k.verify(&forged, "iss", "aud", 1000),
                Err(TokenError::Invalid),
                "{header}"
            );
        }
        let mut c = claims(1000);
        c.tid = TenantId::parse("t2").unwrap_or_else(|e| panic!("{e}"));
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&c).unwrap_or_default()),
            parts[2]
        );
        assert_eq!(
            k.verify(&tampered, "iss", "aud", 1000),
            Err(TokenError::Invalid)
        );
        let stripped = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            k.verify(&stripped, "iss", "aud", 1000),
            Err(TokenError::Invalid)
        );
        for garbage in ["", "a.b", "a.b.c.d", "....", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(
                k.verify(garbage, "iss", "aud", 1000),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn es256_keys_sign_verify_and_publish_ec_jwks() {
        let m = MasterKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let k = Keyring::load(
            &m,
            Keyring::generate(&m, Alg::ES256, 1000).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = k.sign(&claims(1000)).unwrap_or_default();
        assert!(k.verify(&t, "iss", "aud", 1000).is_ok());
        let jwk = &k.jwks()["keys"][0];
        assert_eq!(
            (
                jwk["kty"].as_str(),
                jwk["crv"].as_str(),
                jwk["alg"].as_str()
            ),
            (Some("EC"), Some("P-256"), Some("ES256"))
        );
        assert_eq!(jwk["x"].as_str().map(str::len), Some(43));
        // A signature of the right length but wrong value, and an EdDSA header on an ES256 key.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], parts[1], b64(&[7u8; 64]));
        assert_eq!(
            k.verify(&forged, "iss", "aud", 1000),
            Err(TokenError::Invalid)
        );
        let kid = k.signing_kid().to_owned();
        let eddsa = b64(format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#).as_bytes());
        assert_eq!(
            k.verify(
                &format!("{eddsa}.{}.{}", parts[1], parts[2]),
                "iss",
                "aud",
                1000
            ),
            Err(TokenError::Invalid)
        );
        // Switching back: the next key changes algorithm, the signing key stays.
        let switched = k
            .with_next_alg(&m, Alg::EdDSA, 1000)
            .unwrap_or_default()
            .unwrap_or_default();
        let k2 = Keyring::load(&m, switched).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k2.signing_kid(), kid);
        assert!(
            k2.stored()
                .iter()
                .any(|s| s.state == KeyState::Next && s.alg == "EdDSA")
        );
        assert!(
            k2.with_next_alg(&m, Alg::EdDSA, 1000)
                .unwrap_or_default()
                .is_none()
        );
    }

    #[test]
    fn a_revoked_key_is_unpublished_and_replaced() {
        let (m, k) = keyring();
        let old = k.sign(&claims(1000)).unwrap_or_default();
        let signing = k.signing_kid().to_owned();
        let next = k
            .stored()
            .iter()
            .find(|s| s.state == KeyState::Next)
            .map(|s| s.kid.clone())
            .unwrap_or_default();
        assert!(
            k.revoked(&m, Alg::EdDSA, "no-such-kid", 1000)
                .unwrap_or_default()
                .is_none()
        );
        // The signing key: the next key signs, a fresh next key is published.
        let k2 = Keyring::load(
            &m,
            k.revoked(&m, Alg::EdDSA, &signing, 1000)
                .unwrap_or_default()
                .unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k2.signing_kid(), next);
        assert!(!k2.publishes(&signing));
        assert_eq!(k2.stored().len(), 2);
        assert!(k2.stored().iter().all(|s| s.kid != signing));
        assert!(!k2.jwks().to_string().contains(&signing));
        assert_eq!(
            k2.verify(&old, "iss", "aud", 1000),
            Err(TokenError::Invalid)
        );
        let new = k2.sign(&claims(1000)).unwrap_or_default();
        assert!(k2.verify(&new, "iss", "aud", 1000).is_ok());
        // The next key: replaced by a fresh one, the signing key stays.
        let next2 = k2
            .stored()
            .iter()
            .find(|s| s.state == KeyState::Next)
            .map(|s| s.kid.clone())
            .unwrap_or_default();
        let k3 = Keyring::load(
            &m,
            k2.revoked(&m, Alg::EdDSA, &next2, 1000)
                .unwrap_or_default()
                .unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k3.signing_kid(), next);
        assert!(!k3.publishes(&next2));
        assert!(
            k3.stored()
                .iter()
                .any(|s| s.state == KeyState::Next && s.kid != next2)
        );
        // A retiring key just goes.
        let rotated = Keyring::load(&m, k.rotated(&m, Alg::EdDSA, 1000).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let after = rotated
            .revoked(&m, Alg::EdDSA, &signing, 1000)
            .unwrap_or_default()
            .unwrap_or_default();
        assert_eq!(after.len(), 2);
        assert!(
            after
                .iter()
                .any(|s| s.kid == next && s.state == KeyState::Signing)
        );
    }

    #[test]
    fn rotation_promotes_the_published_next_key_and_keeps_the_old_one() {
        let (m, k) = keyring();
        let old = k.sign(&claims(1000)).unwrap_or_default();
        let next_kid = k
            .stored()
            .iter()
            .find(|s| s.state == KeyState::Next)
            .map(|s| s.kid.clone());
        let k2 = Keyring::load(&m, k.rotated(&m, Alg::EdDSA, 1000).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(k2.signing_kid().to_owned()), next_kid);
        assert_eq!(k2.stored().len(), 3);
        assert!(k2.verify(&old, "iss", "aud", 1000).is_ok());
        let wrong = MasterKey::generate().unwrap_or_else(|e| panic!("{e}"));
        assert!(Keyring::load(&wrong, k2.stored().to_vec()).is_err());
    }
}
