//! The plan: every job a pack implies, each with a stable id and a content
//! key, so a re-run can tell what is already done.
//!
//! | id | job |
//! |---|---|
//! | `portrait/<world>/<character>` | a portrait per `portrait_manifest.yaml` entry |
//! | `landscape/<world>/<poi>` | a landscape per `history.yaml` point of interest with a visual prompt |
//! | `landscape/place/<place>` | a landscape per archetypal place in `places.yaml` |
//! | `cover/<world>` | the world's cover image, from its `cover_poi` |
//! | `loudness/<path>` | an EBU R128 analysis per audio file `audio.yaml` references |

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::pack::model::{AudioConfig, Pack, VisualText};
use crate::prompt::StyleSource;
use crate::render::output::render_key;
use crate::render::pipeline::{prepare, Prepared, PreparedJob, RenderRequest};

/// What a job does.
#[derive(Clone, Debug)]
pub enum Work {
    Image(Box<PreparedJob>),
    Loudness { path: PathBuf, rel: String, target_lufs: f64 },
}

/// One planned job.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub kind: &'static str,
    pub work: Work,
    /// The content key: an unchanged key means an unchanged result.
    pub key: String,
}

/// A job in `--dry-run` output.
#[derive(Clone, Debug, Serialize)]
pub struct JobView<'a> {
    pub id: &'a str,
    pub kind: &'static str,
    pub key: &'a str,
    /// `render`, `analyse`, or `skip` (up to date in the manifest).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'a str>,
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Pack(#[from] crate::pack::model::PackError),
    #[error("job {id}: {message}")]
    Job { id: String, message: String },
}

/// Plans every job of the pack at `pack_dir` for a backend (`name`,
/// `model`, the Flux `variants` it has (empty: any), and its Z-Image
/// `fidelity`): image keys depend
/// on the backend, loudness keys on the file bytes and the target.
pub fn plan(
    pack_dir: &Path,
    backend: &str,
    model: Option<&str>,
    variants: &[crate::prompt::Variant],
    fidelity: Option<crate::prompt::Fidelity>,
    lora_dir: Option<&Path>,
) -> Result<Vec<Job>, PlanError> {
    let pack = Pack::load(pack_dir)?;
    let root = pack_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let styles = StyleSource::new(root).with_lora_dir(lora_dir.map(Path::to_path_buf));
    let genre = pack.genre.clone();
    let mut jobs = Vec::new();
    let mut image = |id: String, kind: &'static str, req: RenderRequest| -> Result<(), PlanError> {
        let mut prepared = match prepare(&req, &styles) {
            Ok(Prepared::Job(j)) => j,
            Ok(Prepared::Skipped { reason }) => {
                return Err(PlanError::Job { id, message: format!("skipped by the {reason}") })
            }
            Err(e) => return Err(PlanError::Job { id, message: e.to_string() }),
        };
        prepared.run_on(variants);
        crate::render::lora::drop_on_weightless(&mut prepared.job, backend);
        let key = render_key(backend, model, &prepared.job);
        jobs.push(Job { id, kind, work: Work::Image(prepared), key });
        Ok(())
    };
    let base = |tier: &str, subject: String, world: &str| RenderRequest {
        tier: tier.into(),
        subject,
        genre: genre.clone(),
        world: world.into(),
        fidelity,
        ..Default::default()
    };
    for (slug, world) in &pack.worlds {
        for c in world.portraits.characters() {
            let cslug = c.slug();
            let subject = c
                .descriptions
                .as_ref()
                .map(|d| d.value.solo.clone())
                .filter(|s| !s.is_empty())
                .or_else(|| Some(c.appearance.clone()).filter(|s| !s.is_empty()))
                .or_else(|| c.name.clone())
                .unwrap_or_else(|| cslug.clone());
            let mut req = base("portrait", subject, slug);
            req.characters = vec![format!("npc:{cslug}")];
            image(format!("portrait/{slug}/{cslug}"), "portrait", req)?;
        }
        for poi in world.history.points_of_interest() {
            let Some(vp) = poi.visual_prompt.as_ref().filter(|v| !v.is_empty()) else { continue };
            let pslug = poi.slug();
            // A `where:` subject: composer v2 draws the place itself when
            // the world carries catalogs; the Flux era names it.
            let mut req = base("landscape", format!("where:{slug}/{pslug}"), slug);
            if !crate::prompt::layered::applies(
                &styles.root,
                crate::interpret::Tier::Landscape,
                &genre,
                slug,
                "where:",
                &[],
            ) {
                req.subject = vp.first_text().to_owned();
                req.location = format!("where:{slug}/{pslug}");
            }
            image(format!("landscape/{slug}/{pslug}"), "landscape", req)?;
        }
        if let Some(cover) = world.meta.cover_poi.as_deref().filter(|c| !c.is_empty()) {
            let poi = world.history.points_of_interest().find(|p| p.slug() == cover);
            let subject = poi
                .and_then(|p| p.visual_prompt.as_ref().map(|v| v.first_text().to_owned()))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| poi.and_then(|p| p.name.clone()).unwrap_or_else(|| cover.to_owned()));
            let mut req = base("scene_illustration", subject, slug);
            req.location = format!("where:{slug}/{cover}");
            image(format!("cover/{slug}"), "cover", req)?;
        }
    }
    for (key, place) in &pack.places {
        let subject = [&place.landmark, &place.environment, &place.description]
            .into_iter()
            .map(VisualText::first_text)
            .find(|s| !s.is_empty())
            .unwrap_or(key)
            .to_owned();
        let world = pack.worlds.keys().next().cloned().unwrap_or_default();
        let mut req = base("landscape", subject, &world);
        // Archetypal places are genre-scoped.
        req.location = format!("where:{genre}/{key}");
        image(format!("landscape/place/{key}"), "landscape", req)?;
    }

    // Audio: every file any audio.yaml (genre or world) references, once.
    let mut seen = BTreeSet::new();
    let mut audio_sets: Vec<(&AudioConfig, PathBuf)> = vec![(&pack.audio, pack.root.clone())];
    for w in pack.worlds.values() {
        if let Some(a) = &w.audio {
            audio_sets.push((a, w.dir.clone()));
        }
    }
    for (audio, base_dir) in audio_sets {
        let target = audio.mixer.loudnorm_target_lufs;
        for raw in audio_files(audio) {
            let path = pack.asset_path(&base_dir, raw)?;
            let rel = path.strip_prefix(&pack.root).map(|p| p.to_string_lossy().into_owned()).unwrap_or(raw.to_owned());
            if !seen.insert(rel.clone()) {
                continue;
            }
            let id = format!("loudness/{rel}");
            let bytes = std::fs::read(&path).map_err(|e| PlanError::Job {
                id: id.clone(),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            let mut h = Sha256::new();
            h.update(&bytes);
            h.update(format!("target={target}").as_bytes());
            let key = format!("{:x}", h.finalize())[..16].to_owned();
            jobs.push(Job { id, kind: "loudness", work: Work::Loudness { path, rel, target_lufs: target }, key });
        }
    }
    Ok(jobs)
}

/// Every audio path an audio.yaml names, in file order.
fn audio_files(a: &AudioConfig) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    for tracks in a.mood_tracks.values() {
        v.extend(tracks.iter().map(|t| t.path.as_str()));
    }
    for t in &a.themes {
        v.extend(t.variations.iter().map(|x| x.path.as_str()));
    }
    for files in a.sfx_library.values() {
        v.extend(files.iter().map(String::as_str));
    }
    for f in &a.faction_themes {
        v.push(f.track.path.as_str());
    }
    v.retain(|p| !p.is_empty());
    v
}
