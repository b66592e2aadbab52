//! The composer's token estimate: words × 1.3, as the reference daemon
//! computes it. Whitespace is Python's `str.split()` set (Unicode
//! White_Space plus U+001C–U+001F).

pub use crate::interpret::text::is_py_space;

/// Number of whitespace-separated words.
pub fn words(x: &str) -> usize {
    x.split(is_py_space).filter(|w| !w.is_empty()).count()
}

/// `tok(x)`: 0 for "", else `max(1, floor(words × 1.3))`.
pub fn tok(x: &str) -> usize {
    if x.is_empty() {
        return 0;
    }
    ((words(x) as f64 * 1.3).floor() as usize).max(1)
}

/// `trunc(x, m)`: the first `floor(m / 1.3)` words joined by single spaces.
pub(crate) fn trunc(x: &str, max_tokens: i64) -> String {
    let n = (max_tokens as f64 / 1.3).floor();
    if n <= 0.0 {
        return String::new();
    }
    x.split(is_py_space).filter(|w| !w.is_empty()).take(n as usize).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimates() {
        assert_eq!(tok(""), 0);
        assert_eq!(tok("   "), 1);
        assert_eq!(tok("one"), 1);
        assert_eq!(tok("one two three"), 3);
        assert_eq!(tok("a b c d e f g h i j"), 13);
        assert_eq!(words("a\u{1f}b\u{a0}c"), 3);
    }

    #[test]
    fn truncation() {
        assert_eq!(trunc("a b c d e", 3), "a b");
        assert_eq!(trunc("a b", 1), "");
        assert_eq!(trunc("a  b\tc", 100), "a b c");
    }
}
