//! sqm-core — the lean half of the SideQuest media toolkit.
//!
//! Data flows one way: narration → cues ([`interpret`]) → prompt
//! ([`prompt`]) → job and backend ([`render`]) → file. Genre packs
//! ([`pack`]) feed every stage with style, audio and catalog data. Nothing
//! here needs candle, tokio, ZeroMQ or an audio device: the engines, the
//! daemon and the command line live in the `sqm` package, which builds on
//! this one, so a pack author's tools compile in a fraction of the time.
//!
//! Layers, lowest first. A module imports only from its own layer or lower
//! ones, and no two modules import each other; the architecture test in
//! `tests/suite/architecture.rs` reads this list and every `crate::` path
//! in `crates/sqm-core/src/` and fails otherwise.
//!
//! 1. `rng`, `hub`, `atomic` — seeded randomness; the Hugging Face cache layout; atomic file writes
//! 2. `pack` — the pack model (with cameras, recipes and LoRA lists), slugs, the typed catalog both composers read, positioned YAML, the containment rule
//! 3. `interpret` — narration → visual and audio cues
//! 4. `prompt` — tiers and the two prompt composers
//! 5. `render` — jobs, the backend trait, the sketch and null backends, PNG output, the pipeline
//! 6. `packcheck` — validate-pack's checks (pack files against the composers' rules)
//! 7. `prerender` — whole-pack batch renders and loudness

pub mod atomic;
pub mod hub;
pub mod interpret;
pub mod pack;
pub mod packcheck;
pub mod prerender;
pub mod prompt;
pub mod render;
pub mod rng;
