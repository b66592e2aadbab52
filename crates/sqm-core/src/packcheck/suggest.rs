//! "Did you mean …?" suggestions for unknown keys.

/// Damerau–Levenshtein distance (optimal string alignment variant) over
/// characters: insertions, deletions, substitutions and adjacent swaps.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// The closest known key and its distance; ties go to the alphabetically
/// first key.
pub(crate) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<(&'k str, usize)> {
    known.iter().map(|k| (*k, distance(key, k))).min_by(|(ka, da), (kb, db)| da.cmp(db).then(ka.cmp(kb)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("positve_suffix", "positive_suffix"), 1);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn ties_go_alphabetically() {
        assert_eq!(closest("bx", &["cx", "ax"]), Some(("ax", 1)));
        assert_eq!(closest("positve_suffix", &["negative_prompt", "positive_suffix"]), Some(("positive_suffix", 1)));
    }
}
