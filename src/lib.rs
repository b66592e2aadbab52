//! sqm — the SideQuest media toolkit.
//!
//! Data flows one way: narration → cues ([`interpret`]) → prompt
//! ([`prompt`]) → backend → file. Genre packs ([`pack`]) feed every stage
//! with style, audio and catalog data. The command-line front end lives in
//! [`cli`]; each subcommand there is a thin shell over these modules.

pub mod audio;
pub mod cli;
pub mod daemon;
pub mod embed;
pub mod hub;
pub mod interpret;
pub mod pack;
pub mod prerender;
pub mod prompt;
pub mod render;
pub mod rng;
#[cfg(feature = "otlp")]
pub mod telemetry;
