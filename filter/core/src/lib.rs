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
//!   [`bytemap`]: the constant-time sets of `oneOf` and of the rule index;
//! * [`selection`], [`rng`]: weighted random and sticky (weighted rendezvous) selection;
//! * [`router`]: the per-request decision;
//! * [`ramp`], [`time`]: time-based ramps (`route.ramp`) and their RFC 3339 start times;
//! * [`guard`], [`aggregate`]: canary guards — the state machine over a proxy-wide record, and
//!   the per-worker counting merged into it through a [`host::SharedStore`];
//! * [`live`]: the run-time inputs of a decision (ramp shares, open guards);
//! * [`host`], [`adapter`]: the host traits and the per-request / per-tick logic every build
//!   of the filter runs; [`route_form`]: what the native build's cluster-specifier form refuses.

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
pub mod aggregate;
pub mod bytemap;
pub mod cidr;
pub mod compile;
pub mod config;
pub mod error;
pub mod fleet;
pub mod guard;
pub mod host;
pub mod live;
pub mod matching;
pub mod ramp;
pub mod reader;
pub mod request;
pub mod rng;
pub mod route_form;
pub mod router;
pub mod selection;
#[cfg(test)]
pub(crate) mod testing;
pub mod time;

pub use compile::{compile, load, parse};
pub use error::ConfigError;
pub use request::{HeaderPairs, RequestView};
pub use rng::{RandomSource, WyRand};
pub use router::{Decision, Router};
