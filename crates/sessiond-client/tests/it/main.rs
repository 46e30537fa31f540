//! Integration tests: the client against the real server on an ephemeral port, over real
//! HTTP, on SQLite, with the server's hand-moved clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calls;
mod refresh;
mod testkit;
