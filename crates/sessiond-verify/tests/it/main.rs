//! The verifier against real sessiond servers started in-process: tokens, the layer and
//! extractor over HTTP, the revocation feed (resumption, silence, key changes) and the
//! propagation delay from a logout on another node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod feed;
mod multinode;
mod proxy;
mod testkit;
mod tokens;
