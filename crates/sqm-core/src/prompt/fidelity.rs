//! Z-Image's two fidelities and its tier table (zimage.md §1.1–§1.2).
//!
//! A process loads one fidelity: `turbo` (Z-Image-Turbo, 8 steps, no CFG)
//! or `high_fidelity` (base Z-Image, 20 steps, CFG 4). Requests may name
//! the fidelity they expect; a mismatch is refused in the reference's words.

use super::tiers::TierSpec;
use crate::interpret::Tier;

/// The environment variable the reference daemon reads.
pub const FIDELITY_ENV: &str = "SIDEQUEST_DAEMON_FIDELITY";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fidelity {
    Turbo,
    HighFidelity,
}

impl Fidelity {
    pub fn name(self) -> &'static str {
        match self {
            Fidelity::Turbo => "turbo",
            Fidelity::HighFidelity => "high_fidelity",
        }
    }

    pub fn parse(s: &str) -> Option<Fidelity> {
        match s {
            "turbo" => Some(Fidelity::Turbo),
            "high_fidelity" => Some(Fidelity::HighFidelity),
            _ => None,
        }
    }

    /// The other one.
    pub fn other(self) -> Fidelity {
        match self {
            Fidelity::Turbo => Fidelity::HighFidelity,
            Fidelity::HighFidelity => Fidelity::Turbo,
        }
    }

    /// The model name in PNG metadata, cache keys and `status`.
    pub fn model_name(self) -> &'static str {
        match self {
            Fidelity::Turbo => "z-image-turbo",
            Fidelity::HighFidelity => "z-image",
        }
    }

    /// The Hugging Face repo of its weights.
    pub fn repo(self) -> &'static str {
        match self {
            Fidelity::Turbo => "Tongyi-MAI/Z-Image-Turbo",
            Fidelity::HighFidelity => "Tongyi-MAI/Z-Image",
        }
    }

    /// The process fidelity from `--fidelity` (already parsed) or the
    /// environment value; `high_fidelity` by default, as the reference
    /// code since May 2026.
    pub fn resolve(flag: Option<Fidelity>, env: Option<&str>) -> Result<Fidelity, String> {
        if let Some(f) = flag {
            return Ok(f);
        }
        match env {
            None => Ok(Fidelity::HighFidelity),
            Some(v) => Fidelity::parse(v).ok_or_else(|| {
                format!("{FIDELITY_ENV}='{v}' is not a recognised fidelity; expected one of ('turbo', 'high_fidelity')")
            }),
        }
    }

    /// A request's `fidelity` against the loaded one `self`: None when it
    /// may render, else the `GENERATION_FAILED` message.
    pub fn check_request(self, requested: Option<&str>) -> Option<String> {
        let r = requested?;
        match Fidelity::parse(r) {
            Some(f) if f == self => None,
            Some(_) => Some(format!(
                "fidelity mismatch: daemon loaded fidelity='{loaded}' but request asked for fidelity='{r}'. The \
                 worker only holds one model \u{2014} relaunch the daemon with {FIDELITY_ENV}='{r}' or fix the caller.",
                loaded = self.name()
            )),
            None => Some(format!("unknown fidelity '{r}'; expected 'turbo' or 'high_fidelity'")),
        }
    }
}

impl TierSpec {
    /// The `zimage` tier table: canvas, steps and guidance per fidelity.
    /// The variant stays the tier's Flux one (it has no effect here).
    pub fn zimage(tier: Tier, fidelity: Fidelity) -> TierSpec {
        let (width, height) = match (tier, fidelity) {
            (Tier::SceneIllustration | Tier::Landscape, _) => (1024, 768),
            (Tier::Portrait, Fidelity::Turbo) => (768, 1024),
            (Tier::Portrait, Fidelity::HighFidelity) => (1024, 1024),
            (Tier::PortraitSquare | Tier::Cartography, _) => (1024, 1024),
            (Tier::TextOverlay, _) => (768, 512),
        };
        let (steps, guidance) = match fidelity {
            Fidelity::Turbo => (8, 0.0),
            Fidelity::HighFidelity => (20, 4.0),
        };
        TierSpec { width, height, variant: TierSpec::of(tier).variant, steps, guidance }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let t = TierSpec::zimage(Tier::Portrait, Fidelity::Turbo);
        assert_eq!((t.width, t.height, t.steps, t.guidance), (768, 1024, 8, 0.0));
        let h = TierSpec::zimage(Tier::Portrait, Fidelity::HighFidelity);
        assert_eq!((h.width, h.height, h.steps, h.guidance), (1024, 1024, 20, 4.0));
        assert_eq!(TierSpec::zimage(Tier::TextOverlay, Fidelity::Turbo).width, 768);
        for tier in Tier::ALL {
            let s = TierSpec::zimage(tier, Fidelity::Turbo);
            assert_eq!((s.width % 32, s.height % 32), (0, 0), "{tier:?} pads no image tokens");
        }
    }

    #[test]
    fn resolution_and_requests() {
        assert_eq!(Fidelity::resolve(None, None), Ok(Fidelity::HighFidelity));
        assert_eq!(Fidelity::resolve(None, Some("turbo")), Ok(Fidelity::Turbo));
        assert_eq!(Fidelity::resolve(Some(Fidelity::HighFidelity), Some("turbo")), Ok(Fidelity::HighFidelity));
        assert_eq!(
            Fidelity::resolve(None, Some("ultra")).unwrap_err(),
            "SIDEQUEST_DAEMON_FIDELITY='ultra' is not a recognised fidelity; expected one of ('turbo', 'high_fidelity')"
        );
        let f = Fidelity::Turbo;
        assert_eq!(f.check_request(None), None);
        assert_eq!(f.check_request(Some("turbo")), None);
        assert_eq!(
            f.check_request(Some("high_fidelity")).unwrap(),
            "fidelity mismatch: daemon loaded fidelity='turbo' but request asked for fidelity='high_fidelity'. The worker only holds one model \u{2014} relaunch the daemon with SIDEQUEST_DAEMON_FIDELITY='high_fidelity' or fix the caller."
        );
        assert_eq!(
            f.check_request(Some("ultra")).unwrap(),
            "unknown fidelity 'ultra'; expected 'turbo' or 'high_fidelity'"
        );
    }
}
