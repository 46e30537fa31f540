//! The data sessiond keeps, and the store traits every backend implements atomically.

pub mod memory;
pub mod model;
mod traits;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use model::*;
pub use traits::*;

/// Errors a store reports. Backends map their own failures to `Backend`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("session limit reached")]
    LimitReached,
    #[error("store backend failure: {0}")]
    Backend(String),
    /// The store cannot be reached (or did not answer in time); the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
