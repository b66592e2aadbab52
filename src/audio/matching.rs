//! Matching a text prompt to a track of the pack's audio library (the
//! ZeroMQ worker's `AudioRenderRequest`): the candidates with the text each
//! is compared by, keyword scores for when no embedding model is loaded,
//! and a track's length.

use std::path::{Path, PathBuf};

use crate::pack::model::Pack;

/// A track the library can offer.
#[derive(Clone, Debug)]
pub(crate) struct AudioCandidate {
    /// What a prompt is compared with: title, mood, and a theme's prompt.
    pub text: String,
    pub title: String,
    pub mood: String,
    pub variation_type: Option<String>,
    /// The path as the pack writes it.
    pub raw: String,
    pub path: PathBuf,
}

/// Every mood track and theme variation of the pack (and world) whose file
/// stays inside the pack.
pub(crate) fn library(pack_dir: &Path, world: Option<&str>) -> Result<Vec<AudioCandidate>, crate::pack::PackError> {
    let pack = Pack::load(pack_dir)?;
    let (audio, base) = pack.audio_for(world)?;
    let mut out = Vec::new();
    for (mood, tracks) in &audio.mood_tracks {
        for t in tracks {
            if let Ok(path) = pack.asset_path(base, &t.path) {
                out.push(AudioCandidate {
                    text: format!("{}. mood: {mood}", t.title),
                    title: t.title.clone(),
                    mood: mood.clone(),
                    variation_type: None,
                    raw: t.path.clone(),
                    path,
                });
            }
        }
    }
    for th in &audio.themes {
        for v in &th.variations {
            if let Ok(path) = pack.asset_path(base, &v.path) {
                out.push(AudioCandidate {
                    text: format!("{} {}. mood: {}. {}", th.name, v.kind, th.mood, th.base_prompt),
                    title: th.name.clone(),
                    mood: th.mood.clone(),
                    variation_type: Some(v.kind.clone()),
                    raw: v.path.clone(),
                    path,
                });
            }
        }
    }
    Ok(out)
}

/// Jaccard similarity of the prompt's words with each candidate's (the
/// interpreter's word sets, stop words left out).
pub(crate) fn keyword_scores(prompt: &str, candidates: &[AudioCandidate]) -> Vec<f64> {
    candidates.iter().map(|c| crate::interpret::text::similarity(prompt, &c.text)).collect()
}

/// The track's length in seconds, when it decodes.
pub(crate) fn duration_s(path: &Path) -> Option<f64> {
    super::library::decode(path).ok().map(|s| s.len() as f64 / 2.0 / super::library::RATE as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_score_shared_words() {
        let c = |text: &str| AudioCandidate {
            text: text.into(),
            title: String::new(),
            mood: String::new(),
            variation_type: None,
            raw: String::new(),
            path: PathBuf::new(),
        };
        let s = keyword_scores("tense battle drums", &[c("Battle Drums. mood: combat"), c("quiet harp")]);
        assert!(s[0] > 0.3 && s[1] == 0.0, "{s:?}");
        assert_eq!(keyword_scores("", &[c("x")]), [0.0]);
    }
}
