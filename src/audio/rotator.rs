//! ThemeRotator (audio.md §5): picks the next music track with a cooldown
//! against repeats, intensity weighting of theme variations, and a one-shot
//! boost of `resolution` variations after combat ends.

use std::collections::VecDeque;

/// The seedable generator (`--seed` replays choices).
pub use crate::rng::SplitMix64 as Rng;

/// A track the rotator may pick.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Candidate {
    /// The path as the pack writes it (the rotator's identity for a track).
    pub path: String,
    /// The variation type for theme variations; `None` for mood tracks.
    pub variation_type: Option<String>,
}

/// w(c) of §5.
pub(crate) fn weight(c: &Candidate, intensity: f64) -> f64 {
    let Some(t) = c.variation_type.as_deref() else { return 1.0 };
    let i = intensity.clamp(0.0, 1.0);
    match t {
        "ambient" | "sparse" => 1.0 + 3.0 * (1.0 - i),
        "full" | "overture" | "tension_build" => 1.0 + 3.0 * i,
        _ => 1.0,
    }
}

/// The weight a `resolution` variation gets right after combat.
pub(crate) const RESOLUTION_BOOST: f64 = 15.0;

#[derive(Clone, Debug)]
pub(crate) struct ThemeRotator {
    cooldown: i64,
    history: VecDeque<String>,
    last_mood: Option<String>,
    trigger: bool,
    rng: Rng,
}

/// What a pick saw, for `sqm play` to explain itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub path: String,
    /// (path, weight) of every eligible candidate.
    pub weights: Vec<(String, f64)>,
    pub boosted: bool,
}

impl ThemeRotator {
    pub(crate) fn new(cooldown: i64, rng: Rng) -> ThemeRotator {
        ThemeRotator { cooldown, history: VecDeque::new(), last_mood: None, trigger: false, rng }
    }

    fn capacity(&self) -> usize {
        if self.cooldown <= 0 {
            0
        } else {
            self.cooldown.max(1) as usize
        }
    }

    /// pick(candidates, intensity, mood) exactly as §5 describes.
    pub(crate) fn pick(&mut self, candidates: &[Candidate], intensity: f64, mood: Option<&str>) -> Option<Pick> {
        if candidates.is_empty() {
            return None;
        }
        match mood {
            Some(m) if self.last_mood.as_deref() != Some(m) => {
                if self.last_mood.as_deref() == Some("combat") && m != "combat" {
                    self.trigger = true;
                }
                if self.last_mood.is_some() {
                    self.history.clear();
                }
                self.last_mood = Some(m.to_owned());
            }
            None if self.last_mood.is_some() => {
                self.history.clear();
                self.last_mood = None;
            }
            _ => {}
        }
        let mut eligible: Vec<&Candidate> = candidates.iter().filter(|c| !self.history.contains(&c.path)).collect();
        if eligible.is_empty() {
            self.history.clear();
            eligible = candidates.iter().collect();
        }
        let boosted = std::mem::take(&mut self.trigger);
        let weights: Vec<f64> = eligible
            .iter()
            .map(|c| {
                if boosted && c.variation_type.as_deref() == Some("resolution") {
                    RESOLUTION_BOOST
                } else {
                    weight(c, intensity)
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut x = self.rng.unit() * total;
        let mut chosen = eligible.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                chosen = i;
                break;
            }
            x -= w;
        }
        let path = eligible[chosen].path.clone();
        let cap = self.capacity();
        if cap > 0 {
            self.history.push_back(path.clone());
            while self.history.len() > cap {
                self.history.pop_front();
            }
        }
        Some(Pick { path, weights: eligible.iter().zip(weights).map(|(c, w)| (c.path.clone(), w)).collect(), boosted })
    }

    /// Uniform choice for sfx variants (the rotator is not used for sfx).
    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(path: &str, t: Option<&str>) -> Candidate {
        Candidate { path: path.into(), variation_type: t.map(str::to_owned) }
    }

    #[test]
    fn weights_of_the_spec() {
        let cands = [c("A", Some("full")), c("B", Some("ambient")), c("C", Some("resolution"))];
        let w = |i| cands.iter().map(|x| (weight(x, i) * 10.0).round() / 10.0).collect::<Vec<_>>();
        assert_eq!(w(0.8), vec![3.4, 1.6, 1.0]);
        assert_eq!(w(0.0), vec![1.0, 4.0, 1.0]);
        assert_eq!(weight(&c("D", None), 0.9), 1.0);
    }

    #[test]
    fn resolution_boost_after_combat_once() {
        let mut r = ThemeRotator::new(3, Rng::new(1));
        let cands = [c("A", Some("full")), c("R", Some("resolution"))];
        r.pick(&cands, 0.5, Some("combat")).unwrap();
        let p = r.pick(&cands, 0.5, Some("exploration")).unwrap();
        assert!(p.boosted);
        assert!(p.weights.contains(&("R".into(), 15.0)), "{p:?}");
        let p = r.pick(&cands, 0.5, Some("exploration")).unwrap();
        assert!(!p.boosted);
        assert!(p.weights.iter().all(|(_, w)| *w != 15.0), "{p:?}");
    }

    #[test]
    fn forced_cycle_with_four_candidates() {
        let cands: Vec<_> = ["a", "b", "c", "d"].iter().map(|p| c(p, None)).collect();
        for seed in 0..20 {
            let mut r = ThemeRotator::new(3, Rng::new(seed));
            let picks: Vec<String> = (0..8).map(|_| r.pick(&cands, 0.5, Some("m")).unwrap().path).collect();
            let mut first4 = picks[..4].to_vec();
            first4.sort();
            assert_eq!(first4, ["a", "b", "c", "d"]);
            assert_eq!(picks[4], picks[0], "{picks:?}");
            assert_eq!(picks[5], picks[1], "{picks:?}");
        }
    }

    #[test]
    fn two_candidates_alternate_then_reset() {
        let cands = [c("x", None), c("y", None)];
        let mut seen_third = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let mut r = ThemeRotator::new(3, Rng::new(seed));
            let a = r.pick(&cands, 0.5, Some("m")).unwrap().path;
            let b = r.pick(&cands, 0.5, Some("m")).unwrap().path;
            assert_ne!(a, b);
            seen_third.insert(r.pick(&cands, 0.5, Some("m")).unwrap().path);
        }
        assert_eq!(seen_third.len(), 2, "either may be picked third");
    }

    #[test]
    fn no_repeat_within_cooldown_and_intensity_shifts_choices() {
        let cands: Vec<_> = [("f", "full"), ("a", "ambient"), ("s", "sparse"), ("o", "overture"), ("r", "resolution")]
            .iter()
            .map(|(p, t)| c(p, Some(t)))
            .collect();
        let count = |intensity: f64| {
            let mut r = ThemeRotator::new(3, Rng::new(7));
            let mut recent: VecDeque<String> = VecDeque::new();
            let mut loud = 0;
            for _ in 0..10_000 {
                let p = r.pick(&cands, intensity, Some("m")).unwrap().path;
                assert!(!recent.contains(&p), "{p} repeated within the cooldown");
                recent.push_back(p.clone());
                if recent.len() > 3 {
                    recent.pop_front();
                }
                if p == "f" || p == "o" {
                    loud += 1;
                }
            }
            loud
        };
        let (high, low) = (count(1.0), count(0.0));
        assert!(high > low + 1000, "high intensity {high} vs low {low}");
    }
}
