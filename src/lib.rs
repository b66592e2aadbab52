//! sqm — the SideQuest media toolkit.
//!
//! Data flows one way: narration → cues ([`interpret`]) → prompt
//! ([`prompt`]) → backend ([`render`]) → file. The lean stages live in the
//! `sqm-core` package and are re-exported here under the same names; this
//! package adds the engines (candle backends, embeddings, audio), the
//! daemon and the command line. Each subcommand in [`cli`] is a thin shell
//! over these modules.
//!
//! Layers, lowest first. A module imports only from its own layer or lower
//! ones, and no two modules import each other; `tests/suite/architecture.rs`
//! reads this list and every `crate::` path in `src/` and fails otherwise.
//!
//! 1. `rng`, `hub`, `atomic`, `pack`, `interpret`, `prompt`, `packcheck`, `prerender` — sqm-core, re-exported
//! 2. `render` — sqm-core's render plus the candle backends (flux) and `backend_by_name`
//! 3. `embed`, `audio`, `store` — the embedding engine; the mixer and player; uploads to an object store
//! 4. `telemetry` — optional span export
//! 5. `daemon` — the socket server, lanes, the ZeroMQ worker
//! 6. `cli` — argument parsing and the subcommands

pub use sqm_core::{atomic, hub, interpret, pack, packcheck, prerender, prompt, rng};

#[cfg(feature = "engines")]
pub mod audio;
pub mod cli;
#[cfg(feature = "engines")]
pub mod daemon;
#[cfg(feature = "engines")]
pub mod embed;
pub mod render;
#[cfg(feature = "engines")]
pub mod store;
#[cfg(feature = "otlp")]
pub mod telemetry;
