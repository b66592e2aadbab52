//! Prompt composition: tier table, style resolution from the genre pack,
//! the Flux-era composer (tiers-and-prompts.md), the raw-field fallback,
//! and seeds.

pub mod compose;
pub mod fidelity;
pub mod layered;
pub mod style;
pub mod tiers;
pub mod tokens;

pub use compose::{compose, raw_fallback, seed_for, Composed, Cue};
pub use fidelity::Fidelity;
pub use style::{ComposeError, ComposeErrorKind, Style, StyleSource};
pub use tiers::{TierSpec, Variant};
