//! Test-only signing: keys, their JWKs, and tokens signed like sessiond signs them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sessiond_proto::Jwk;

pub(crate) fn ed_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn ed_jwk(kid: &str, key: &ed25519_dalek::SigningKey) -> Jwk {
    Jwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: B64.encode(key.verifying_key().as_bytes()),
        y: None,
        alg: "EdDSA".into(),
        r#use: "sig".into(),
        kid: kid.into(),
    }
}

pub(crate) fn es_key(seed: u8) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn es_jwk(kid: &str, key: &p256::ecdsa::SigningKey) -> Jwk {
    let point = key.verifying_key().to_encoded_point(false);
    let (x, y) = point.as_bytes()[1..].split_at(32);
    Jwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: B64.encode(x),
        y: Some(B64.encode(y)),
        alg: "ES256".into(),
        r#use: "sig".into(),
        kid: kid.into(),
    }
}

/// `header.payload` signed by `sign`.
pub(crate) fn token(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

pub(crate) fn ed_sign(key: &ed25519_dalek::SigningKey) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |m| ed25519_dalek::Signer::sign(key, m).to_bytes().to_vec()
}

pub(crate) fn es_sign(key: &p256::ecdsa::SigningKey) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |m| {
        let s: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, m);
        s.to_bytes().to_vec()
    }
}
