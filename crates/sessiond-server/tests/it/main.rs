//! Integration tests: the real server on an ephemeral port, over real HTTP, on SQLite.

mod admin;
mod attacks;
mod console;
mod csrf;
mod errors;
mod events;
mod feed;
mod hardening;
mod lifecycle;
mod limits;
mod monitoring;
mod outbound;
mod partner;
mod refresh;
mod sso_endpoint;
mod standards;
mod stepup;
mod testkit;
