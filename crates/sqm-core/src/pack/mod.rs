//! Genre packs: the data model (`model`, and `direction` for cameras and
//! recipes), the files one prompt reads parsed once and cached
//! (`catalog`), slugs (`slug`), YAML with positions (`yaml`), the
//! containment rule for every path a pack names (`paths`), and the
//! built-in example pack (`embedded`). The leaf of the crate: it imports no
//! other module of sqm. The checks of `validate-pack` live above it, in
//! [`crate::packcheck`].

pub mod catalog;
pub mod direction;
pub mod embedded;
pub mod lora;
pub mod model;
pub mod paths;
pub mod slug;
pub mod yaml;

pub use model::{AudioConfig, Pack, PackError};
pub use paths::resolve_in_pack;
pub use slug::{is_slug, slugify};

/// The moods of the audio interpreter's built-in keyword table
/// (interpret.md §6), in table order.
pub(crate) const BUILTIN_MOODS: [&str; 11] = [
    "combat",
    "tavern",
    "exploration",
    "tension",
    "mystery",
    "sorrow",
    "triumph",
    "ritual",
    "settlement",
    "ruins",
    "rest",
];

/// Theme variation types the rotator weighs (audio.md §2).
pub(crate) const VARIATION_TYPES: [&str; 6] = ["full", "overture", "ambient", "sparse", "tension_build", "resolution"];
