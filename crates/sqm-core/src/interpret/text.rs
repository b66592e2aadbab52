//! Text primitives of visual distillation (interpret.md §3): cleaning,
//! distilling, truncating, sentence splitting, and the two look-around
//! rules of the reference written as linear scans.

use super::patterns::*;

/// Python's `str.strip()`/`str.split()` whitespace: Unicode White_Space
/// plus U+001C–U+001F. The prompt composers split on it too.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.strip()`.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Length in Unicode scalar values (Python `len`).
pub fn len(s: &str) -> usize {
    s.chars().count()
}

/// `clean(x)`: remove `*`, `—` and `_`, then trim.
pub fn clean(x: &str) -> String {
    let removed: String = x.chars().filter(|c| !matches!(c, '*' | '—' | '_')).collect();
    py_strip(&removed).to_owned()
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the
/// cut with `…` (messages, events and reasons that quote input).
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// `truncate(x)`: at most 350 characters, cut at the last space when that
/// space lies past character 175.
pub fn truncate(x: &str) -> String {
    if len(x) <= 350 {
        return x.to_owned();
    }
    let end = x.char_indices().nth(350).map_or(x.len(), |(i, _)| i);
    let prefix = &x[..end];
    if let Some(space) = prefix.rfind(' ') {
        if prefix[..space].chars().count() > 175 {
            return prefix[..space].to_owned();
        }
    }
    prefix.to_owned()
}

/// Replaces every run of characters matching `is_space` with one ASCII
/// space, in one pass (`re.sub(r"\s+", " ", x)` without a regex hit per
/// word). Borrows when nothing changes.
pub(crate) fn collapse(x: &str, is_space: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    let mut prev_space = false;
    let clean = x.chars().all(|c| {
        let sp = is_space(c);
        let ok = !sp || (c == ' ' && !prev_space);
        prev_space = sp;
        ok
    });
    if clean {
        return std::borrow::Cow::Borrowed(x);
    }
    let mut out = String::with_capacity(x.len());
    let mut in_run = false;
    for c in x.chars() {
        if is_space(c) {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `\s` in Unicode mode: the White_Space property.
fn is_regex_space(c: char) -> bool {
    c.is_whitespace()
}

/// CLEANUP, in order (§3).
pub(crate) fn cleanup(x: &str) -> String {
    let s = collapse(x, is_regex_space);
    let s = CLEANUP_DOTS.replace_all(&s, ".");
    let s = CLEANUP_DOT_COMMA.replace_all(&s, ".");
    let s = CLEANUP_COMMAS.replace_all(&s, ",");
    let s = CLEANUP_LEADING.replace(&s, "");
    let s = CLEANUP_TRAILING.replace(&s, "");
    py_strip(&s).to_owned()
}

/// Removes straight single-quoted speech. An opening `'` counts when the
/// previous character is not a word character (or it starts the text); it
/// closes at the first later `'` at least one character away that is
/// followed by `,` `.` `!` `?`, whitespace, or the end. Without such a
/// closing quote the text is left alone and scanning goes on.
///
/// Linear: the next valid closing quote at or after every position is
/// computed once, from the end.
pub(crate) fn remove_single_quoted(x: &str) -> String {
    let chars: Vec<char> = x.chars().collect();
    let n = chars.len();
    // next_close[i] = smallest j ≥ i with a valid closing quote at j.
    let mut next_close = vec![usize::MAX; n + 1];
    for j in (0..n).rev() {
        let valid = chars[j] == '\''
            && chars.get(j + 1).is_none_or(|c| matches!(c, ',' | '.' | '!' | '?') || c.is_whitespace());
        next_close[j] = if valid { j } else { next_close[j + 1] };
    }
    let mut out = String::with_capacity(x.len());
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let opens = c == '\'' && (i == 0 || !is_word_char(chars[i - 1]));
        if opens && i + 2 <= n {
            let close = next_close[(i + 2).min(n)];
            if close != usize::MAX {
                i = close + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `\w` in Unicode mode: alphanumeric, marks, connector punctuation.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || regex_syntax_word(c)
}

fn regex_syntax_word(c: char) -> bool {
    // Combining marks and joiners count as word characters in `\w`.
    matches!(c, '\u{200c}' | '\u{200d}') || ('\u{300}'..='\u{36f}').contains(&c)
}

/// `distill(x)`: steps 1–4 of §3.
pub(crate) fn distill(x: &str) -> String {
    // 1. Mechanics.
    // Each mechanics pattern needs a character that plain prose rarely
    // has; skip the scan when it is absent.
    let mut s = x.to_owned();
    let has_digit = x.bytes().any(|b| b.is_ascii_digit());
    let has_turn = x.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"turn"));
    let needs = [x.contains('['), x.contains('→'), has_digit && x.contains(':'), has_turn, x.contains('#')];
    for (r, needed) in MECHANICS.iter().zip(needs) {
        if needed {
            s = r.replace_all(&s, "").into_owned();
        }
    }
    let s = collapse(&s, |c| c == ' ' || c == '\t');
    let s = s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '—'));
    // 2. Quotes, then attribution, then CLEANUP.
    let s = DOUBLE_QUOTED.replace_all(s, "");
    let s = CURLY_SINGLE_QUOTED.replace_all(&s, "");
    let s = remove_single_quoted(&s);
    let s = ATTRIBUTION.replace_all(&s, "");
    let s = cleanup(&s);
    // 3. Abstractions, then CLEANUP.
    let s = ABSTRACTIONS.replace_all(&s, "");
    let s = cleanup(&s);
    // 4. Apostrophes, whitespace.
    let s: String = s.chars().filter(|c| !matches!(c, '\'' | '’')).collect();
    py_strip(&collapse(&s, is_regex_space)).to_owned()
}

/// Splits after `.`, `!` or `?` at every whitespace run; pieces are
/// trimmed and empty ones dropped.
pub(crate) fn sentences(x: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<char> = None;
    let mut iter = x.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c.is_whitespace() && matches!(prev, Some('.' | '!' | '?')) {
            // Consume the whole run.
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = iter.peek() {
                if !d.is_whitespace() {
                    break;
                }
                end = j + d.len_utf8();
                iter.next();
            }
            out.push(&x[start..i]);
            start = end;
            prev = None;
            continue;
        }
        prev = Some(c);
    }
    out.push(&x[start..]);
    out.into_iter().map(py_strip).filter(|s| !s.is_empty()).collect()
}

/// The portrait rule Pt as a window search: some whole-word NOUN followed,
/// 1 to 300 characters after its end, by the start of a whole-word DESC.
/// Linear in the input (two regex scans plus a merge).
pub(crate) fn portrait_matches(x: &str) -> bool {
    // The next DESC match at or after a byte position, found lazily and
    // reused while nouns stay before it: every search starts past the last
    // one, so the whole check is linear and stops at the first hit.
    let mut desc: Option<std::ops::Range<usize>> = None;
    for noun in PORTRAIT_NOUN.find_iter(x) {
        // DESC may start one character after the noun at the earliest.
        let Some(first) = x[noun.end..].chars().next() else { return false };
        let from = noun.end + first.len_utf8();
        if desc.as_ref().is_none_or(|d| d.start < from) {
            desc = PORTRAIT_DESC.find_at(x, from);
        }
        let Some(d) = &desc else { return false };
        // Within 300 characters of the noun's end?
        if x[noun.end..d.start].chars().count() <= 300 {
            return true;
        }
    }
    false
}

/// Jaccard similarity of lower-cased `\w+` token sets minus stop words.
pub fn similarity(a: &str, b: &str) -> f64 {
    const STOP: [&str; 11] = ["the", "a", "an", "of", "in", "at", "to", "and", "or", "you", "your"];
    let tokens = |s: &str| -> std::collections::HashSet<String> {
        let lower = s.to_lowercase();
        WORD_TOKEN.find_iter(&lower).map(|m| m.as_str().to_owned()).filter(|t| !STOP.contains(&t.as_str())).collect()
    };
    let (ta, tb) = (tokens(a), tokens(b));
    if ta.is_empty() || tb.is_empty() {
        return 0.0;
    }
    let inter = ta.intersection(&tb).count();
    let union = ta.union(&tb).count();
    inter as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_utf8_cuts_at_a_boundary_and_marks_it() {
        let mut s = "ééééé".to_owned(); // 10 bytes
        truncate_utf8(&mut s, 8);
        assert_eq!(s, "éé…");
        let mut short = "abc".to_owned();
        truncate_utf8(&mut short, 3);
        assert_eq!(short, "abc");
    }

    #[test]
    fn clean_and_truncate() {
        assert_eq!(clean("  *bold* — under_score "), "bold  underscore");
        let long = "word ".repeat(100);
        let t = truncate(&long);
        assert!(len(&t) <= 350);
        assert!(!t.ends_with(' '));
        assert_eq!(t, long[..349].trim_end());
        let no_space = "x".repeat(400);
        assert_eq!(len(&truncate(&no_space)), 350);
        // A space only before 175 does not cut there.
        let early = format!("{} {}", "a".repeat(100), "b".repeat(300));
        assert_eq!(len(&truncate(&early)), 350);
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn cleanup_rules() {
        assert_eq!(cleanup("a  ,, b"), "a . b");
        assert_eq!(cleanup(", leading and trailing ."), "leading and trailing");
        assert_eq!(cleanup("x . , y"), "x . y");
        assert_eq!(cleanup("a , , b"), "a, b");
    }

    #[test]
    fn single_quote_scanning() {
        assert_eq!(remove_single_quoted("He said 'get out' and left"), "He said  and left");
        // Apostrophes inside words are not openers.
        assert_eq!(remove_single_quoted("Rux's blade"), "Rux's blade");
        // No valid closer: left alone.
        assert_eq!(remove_single_quoted("a 'b"), "a 'b");
        // The closer must be followed by punctuation, space or the end;
        // an apostrophe inside the speech is skipped.
        assert_eq!(remove_single_quoted("'don't move!' she hissed"), " she hissed");
        // The closer needs one character between.
        assert_eq!(remove_single_quoted("'' x"), "'' x");
        assert_eq!(remove_single_quoted("say 'hi'"), "say ");
        // Newlines are crossed.
        assert_eq!(remove_single_quoted("'a\nb', then"), ", then");
    }

    #[test]
    fn distill_examples() {
        assert_eq!(
            distill(
                "He said nothing. She felt a sense of dread as if the walls were closing in, and the candle sputtered."
            ),
            "He She , and the candle sputtered"
        );
        assert_eq!(distill("Rux's HP: 12 → 7 HP [Attack d20: 15 vs AC 12 HIT]."), "Ruxs HP:");
        assert_eq!(distill("\"Run!\" she shouted at them. The gate falls."), "she The gate falls");
        // Turn banners go; a heading keeps its text.
        assert_eq!(distill("YOUR TURN\n## The Gate\nThe gate falls."), "The Gate The gate falls");
        assert_eq!(distill("The hall seemed alive with moths."), "The hall with moths");
        // Attribution verbs are removed with up to four following words.
        assert_eq!(distill("The hall seemed alive with whispers."), "The hall with");
    }

    #[test]
    fn collapse_matches_the_regex() {
        for x in ["a  b\t\tc", "  lead and trail  ", "a\u{a0}\u{2003}b", "plain words here", "x\n\ny", "", " "] {
            assert_eq!(collapse(x, is_regex_space), WHITESPACE.replace_all(x, " "), "{x:?}");
            assert_eq!(collapse(x, |c| c == ' ' || c == '\t'), SPACES_TABS.replace_all(x, " "), "{x:?}");
        }
    }

    #[test]
    fn sentence_split() {
        assert_eq!(sentences("One. Two!  Three? Four"), vec!["One.", "Two!", "Three?", "Four"]);
        assert_eq!(sentences("No split.here"), vec!["No split.here"]);
        assert_eq!(sentences("  "), Vec::<&str>::new());
        assert_eq!(sentences("A.\n\nB."), vec!["A.", "B."]);
    }

    #[test]
    fn portrait_window() {
        assert!(portrait_matches("A tall stranger in a hooded cloak"));
        assert!(!portrait_matches("The stranger's eyes"));
        // DESC must begin 1–300 chars after the NOUN's end.
        assert!(portrait_matches(&format!("the guard{}scar", " ".repeat(300))));
        assert!(!portrait_matches(&format!("the guard{}scar", " ".repeat(301))));
        // DESC before the noun does not count.
        assert!(!portrait_matches("scar on the guard"));
    }

    #[test]
    fn jaccard() {
        assert_eq!(similarity("Old Chapel", "The Old Chapel"), 1.0);
        assert_eq!(similarity("River Ford", "Old Chapel"), 0.0);
        assert_eq!(similarity("the", "Old Chapel"), 0.0);
        assert!((similarity("Old Chapel Yard", "Old Chapel") - 2.0 / 3.0).abs() < 1e-9);
    }
}
