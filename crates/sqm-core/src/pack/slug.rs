//! Slugs: the names packs, worlds, characters and places go by in refs
//! (`npc:<slug>`, `where:<world>/<slug>`) and on disk.

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

/// A slug in words: `_` and `-` become spaces (how an unknown ref reads in
/// a prompt).
pub fn words(slug: &str) -> String {
    slug.replace(['_', '-'], " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn slug_rules() {
        assert!(super::is_slug("ashfall"));
        assert!(super::is_slug("a-b_c1"));
        assert!(!super::is_slug("-a"));
        assert!(!super::is_slug("Ashfall"));
        assert_eq!(super::words("old_mill-east"), "old mill east");
    }

    #[test]
    fn slugify_examples() {
        assert_eq!(super::slugify("Two-Word Name"), "two-word_name");
        assert_eq!(super::slugify("  Old   Mara's Forge "), "old_maras_forge");
        assert_eq!(super::slugify("Ünder Tow"), "nder_tow");
    }
}
