#![forbid(unsafe_code)]
//! subset-router: a proxy-wasm HTTP filter that picks a subset (a service version) per request —
//! by debug rules first, then by weighted, optionally sticky, selection — and writes the choice
//! into the upstream cluster header that Envoy's router follows.
//!
//! The crate is split so that everything that decides is plain Rust, unit-tested on the host:
//!
//! * [`config`], [`reader`]: the plugin configuration and its strict JSON reader (unknown fields
//!   are errors, every error names its JSON path);
//! * [`compile`]: validation into an immutable [`Router`], with `path: reason` errors;
//! * [`matching`], [`request`], [`cidr`]: the match conditions and the request they read;
//! * [`selection`], [`rng`]: weighted random and sticky (weighted rendezvous) selection;
//! * [`router`]: the per-request decision;

// The request path must never panic: no unwrap, expect, panic or fallible indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod adapter;
pub mod cidr;
pub mod compile;
pub mod config;
pub mod error;
pub mod host;
pub mod matching;
pub mod reader;
pub mod request;
pub mod rng;
pub mod router;
pub mod selection;


pub use compile::{compile, load, parse};
pub use error::ConfigError;
pub use request::{HeaderPairs, RequestView};
pub use rng::{RandomSource, WyRand};
pub use router::{Decision, Router};
