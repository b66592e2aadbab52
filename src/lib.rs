//! sqm — the SideQuest media toolkit.
//!
//! Data flows one way: narration → cues ([`interpret`]) → prompt
//! ([`prompt`]) → backend ([`render`]) → file. Genre packs ([`pack`]) feed
//! every stage with style, audio and catalog data. The command-line front
//! end lives in [`cli`]; each subcommand there is a thin shell over these
//! modules.
//!
//! Layers, lowest first. A module imports only from its own layer or lower
//! ones, and no two modules import each other; `tests/suite/architecture.rs`
//! reads this list and every `crate::` path in `src/` and fails otherwise.
//!
//! 1. `rng`, `hub`, `atomic` — seeded randomness; the Hugging Face cache layout; atomic file writes
//! 2. `pack` — the pack model, positioned YAML, the containment rule
//! 3. `interpret` — narration → visual and audio cues
//! 4. `prompt` — tiers and the two prompt composers
//! 5. `render` — jobs, backends (sketch, null, flux), PNG output, the pipeline
//! 6. `packcheck` — validate-pack's checks (pack files against the composers' rules)
//! 7. `prerender` — whole-pack batch renders and loudness
//! 8. `embed`, `audio` — the embedding engine; the mixer and player
//! 9. `telemetry` — optional span export
//! 10. `daemon` — the socket server, lanes, the ZeroMQ worker
//! 11. `cli` — argument parsing and the subcommands

pub mod atomic;
pub mod audio;
pub mod cli;
pub mod daemon;
pub mod embed;
pub mod hub;
pub mod interpret;
pub mod pack;
pub mod packcheck;
pub mod prerender;
pub mod prompt;
pub mod render;
pub mod rng;
#[cfg(feature = "otlp")]
pub mod telemetry;
