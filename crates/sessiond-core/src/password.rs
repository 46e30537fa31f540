//! Argon2id password hashing with OWASP's parameters (19 MiB, 2 passes, 1 lane).

use crate::CoreError;
use crate::secret::random_bytes;
use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use std::sync::LazyLock;

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

fn argon2() -> Result<Argon2<'static>, CoreError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| CoreError::Internal(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password (CPU-heavy: call it off the async executor).
pub fn hash_password(password: &str) -> Result<String, CoreError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| CoreError::Internal(format!("salt: {e}")))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(format!("argon2: {e}")))
}

/// A hash of nothing anyone knows, verified against when the user does not exist so that an
/// unknown user costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| hash_password("\0dummy\0").ok());

/// Verifies a password against a stored hash, or against the dummy hash when there is none.
/// CPU-heavy: call it off the async executor.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    let Some(hash) = stored.or(DUMMY_HASH.as_deref()) else {
        return false;
    };
    let ok = match (PasswordHash::new(hash), argon2()) {
        (Ok(parsed), Ok(a)) => a.verify_password(password.as_bytes(), &parsed).is_ok(),
        _ => false,
    };
    ok && stored.is_some()
}

pub fn check_password_policy(password: &str) -> Result<(), CoreError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        return Err(CoreError::InvalidRequest(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap_or_default();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse", Some(&h)));
        assert!(!verify_password("wrong horse", Some(&h)));
        assert!(!verify_password("\0dummy\0", None));
        assert!(!verify_password("x", Some("not a hash")));
    }
}
