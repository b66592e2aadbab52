//! Genre packs: the data model (`model`), YAML with positions (`yaml`),
//! the containment rule for every path a pack names (`paths`), and the
//! built-in example pack (`embedded`). The leaf of the crate: it imports no
//! other module of sqm. The checks of `validate-pack` live above it, in
//! [`crate::packcheck`].

pub mod embedded;
pub mod model;
pub mod paths;
pub mod yaml;

pub use model::{AudioConfig, Pack, PackError};
pub use paths::resolve_in_pack;

/// The moods of the audio interpreter's built-in keyword table
/// (interpret.md §6), in table order.
pub const BUILTIN_MOODS: [&str; 11] = [
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
pub const VARIATION_TYPES: [&str; 6] = ["full", "overture", "ambient", "sparse", "tension_build", "resolution"];

/// `[a-z0-9][a-z0-9_-]*`
pub fn is_slug(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A character or place name as a slug: trimmed, lower-cased, whitespace
/// runs become `_`, and characters outside `[a-z0-9_-]` are dropped.
/// `Two-Word Name` → `two-word_name`.
pub fn slugify(name: &str) -> String {
    let lowered = name.trim().to_lowercase();
    let mut out = String::with_capacity(lowered.len());
    let mut in_space = false;
    for c in lowered.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugify_examples() {
        assert_eq!(super::slugify("Two-Word Name"), "two-word_name");
        assert_eq!(super::slugify("  Old   Mara's Forge "), "old_maras_forge");
        assert_eq!(super::slugify("Ünder Tow"), "nder_tow");
    }
}
