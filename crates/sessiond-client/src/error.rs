//! The client's one error type: problem+json answers mapped to variants a caller can act on.

use sessiond_proto::{ErrorCode, Problem};
use std::sync::Arc;
use std::time::Duration;

/// Everything a [`Client`](crate::Client) call can fail with.
///
/// `Clone`, so that one failed refresh can be handed to every task that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session is over for good (revoked, displaced, expired, its refresh token reused
    /// or rotated away, the account disabled) or there is none: only a new login helps.
    /// `code` is the server's reason, `None` when no session is stored (never logged in, or
    /// logged out).
    #[error("log in again: {}", .code.map_or("no session", ErrorCode::as_str))]
    ReloginRequired { code: Option<ErrorCode> },

    /// `429 rate_limited`: wait `retry_after` (the server's `Retry-After`) before trying again.
    #[error("rate limited by sessiond (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },

    /// Any other error answer, with its RFC 9457 problem document.
    #[error("sessiond answered {status} {}: {}", .problem.code, .problem.detail)]
    Api { status: u16, problem: Box<Problem> },

    /// An error status without a readable problem document (e.g. from a proxy).
    #[error("sessiond answered {status} without a problem document")]
    UnexpectedStatus { status: u16 },

    /// The request did not complete: connection, timeout, TLS.
    #[error("HTTP request to sessiond failed: {0}")]
    Http(#[source] Arc<reqwest::Error>),

    /// A 2xx answer whose body is not what the contract promises.
    #[error("unexpected response from sessiond: {0}")]
    Protocol(String),

    /// The [`TokenStore`](crate::TokenStore) failed.
    #[error("token store failed: {0}")]
    Store(#[source] Arc<dyn std::error::Error + Send + Sync>),

    /// The client was built with invalid settings.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The contract's error code of an answer from the server, if there was one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { problem, .. } => Some(problem.code),
            Error::ReloginRequired { code } => *code,
            Error::RateLimited { .. } => Some(ErrorCode::RateLimited),
            _ => None,
        }
    }

    /// The problem document of an error answer.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Only a new login helps.
    pub fn is_relogin_required(&self) -> bool {
        matches!(self, Error::ReloginRequired { .. })
    }

    /// Wraps a [`TokenStore`](crate::TokenStore) implementation's failure.
    pub fn store(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Store(Arc::new(e))
    }

    /// Is this the answer that ends a session (as opposed to a failure worth retrying)?
    pub(crate) fn ends_session(&self) -> bool {
        self.code().is_some_and(ErrorCode::ends_session)
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's message names the URL; sessiond never puts a token in one.
        Error::Http(Arc::new(e))
    }
}

/// Turns an error answer into an [`Error`]; the body is read, never logged.
pub(crate) async fn from_response(res: reqwest::Response) -> Error {
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status == 429 {
        return Error::RateLimited { retry_after };
    }
    let body = match res.bytes().await {
        Ok(b) => b,
        Err(e) => return e.into(),
    };
    match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) => Error::Api {
            status,
            problem: Box::new(problem),
        },
        Err(_) => Error::UnexpectedStatus { status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: ErrorCode) -> Error {
        Error::Api {
            status,
            problem: Box::new(Problem {
                r#type: Problem::type_uri(code),
                title: "Unauthorized".into(),
                status,
                detail: "the session was revoked".into(),
                code,
                activity_id: uuid::Uuid::nil().to_string(),
            }),
        }
    }

    #[test]
    fn codes_and_messages() {
        let e = api(401, ErrorCode::SessionRevoked);
        assert_eq!(e.code(), Some(ErrorCode::SessionRevoked));
        assert!(e.ends_session());
        assert_eq!(
            e.to_string(),
            "sessiond answered 401 session_revoked: the session was revoked"
        );
        assert!(!api(401, ErrorCode::TokenExpired).ends_session());
        let r = Error::ReloginRequired { code: None };
        assert_eq!(r.to_string(), "log in again: no session");
        assert!(r.is_relogin_required());
        let r = Error::ReloginRequired {
            code: Some(ErrorCode::RefreshTokenReused),
        };
        assert_eq!(r.to_string(), "log in again: refresh_token_reused");
    }
}
