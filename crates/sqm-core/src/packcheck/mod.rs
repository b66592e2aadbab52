//! `validate-pack`: the pack contract checked file by file (`validate`),
//! with stable diagnostic codes and three output formats (`diag`), audio
//! probing by content (`probe`) and "did you mean" hints (`suggest`). It
//! sits above the pack model and the composers, whose rules it checks.

pub mod diag;
pub mod probe;
pub(crate) mod suggest;
pub mod validate;

mod assets;
mod audio;
mod fields;
mod genre;
mod loras;
mod world;

pub use validate::{discover, is_pack_dir, validate_packs, DiscoverError, Options, Profile};
