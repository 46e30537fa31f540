//! sessiond's domain: sessions, policies, tokens, keyring, refresh rotation and audit.
//! No HTTP and no SQL here: storage is reached only through the `sessiond-store` traits.

pub mod alert;
mod cache;
mod changes;
pub mod clock;
pub mod dispatch;
pub mod engine;
mod error;
pub mod events;
pub mod feed;
mod freshness;
pub mod guard;
pub mod outbound;
mod partner;
pub mod password;
pub mod policy;
pub mod secret;
pub mod sso;
#[cfg(test)]
mod testkit;
pub mod token;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Authenticated, Engine, EngineConfig, Issued, RequestContext, TenantPolicy};
pub use error::{CoreError, CoreResult};
pub use partner::{InternalToken, SsoConfig};
pub use policy::Policy;
