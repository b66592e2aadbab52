//! From a render request to a file: the dispatch order of protocol.md §5.2
//! (music refusal, beat filter, narration → cue, tier check, prompt), then
//! execution on a backend with content-addressed caching. `sqm render` and
//! the daemon both go through here.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indexmap::IndexMap;
use serde::Serialize;

use super::output::{output_path, parameters_text, render_key, write_png};
use super::{Backend, RenderError, RenderJob};
use crate::interpret::{beat_filter, extract_documents, GameState, Session, Tier};
use crate::prompt::layered;
use crate::prompt::style::{Style, StyleRequest};
use crate::prompt::tiers::tier_error;
use crate::prompt::{compose, raw_fallback, ComposeError, Cue, StyleSource, TierSpec};

/// The render parameters sqm reads (protocol.md §5.1), already type-checked.
#[derive(Clone, Debug, Default)]
pub struct RenderRequest {
    pub tier: String,
    pub subject: String,
    pub mood: String,
    pub location: String,
    pub characters: Vec<String>,
    pub tags: Vec<String>,
    pub genre: String,
    pub world: String,
    pub narration: String,
    /// The game state, and whether the request carried a non-empty one.
    pub game_state: GameState,
    pub game_state_present: bool,
    pub previous_location: Option<String>,
    pub positive_prompt: String,
    pub prompt: String,
    pub negative_prompt: String,
    /// A 32-bit seed (callers reject anything outside `0..=u32::MAX`).
    pub seed: Option<u32>,
    pub variant: Option<String>,
    pub subject_name: String,
    pub art_style: String,
    pub visual_tag_overrides: Option<IndexMap<String, String>>,
    /// `sqm render --steps`; the daemon never sets it.
    pub steps: Option<u32>,
    /// Composer v2: a camera preset name.
    pub camera: Option<String>,
    /// Composer v2: the raw `pc_descriptor` object.
    pub pc_descriptor: Option<serde_json::Value>,
    /// `sqm render --width/--height` (checked by [`check_size`]); the
    /// daemon never sets them and renders the tier's size.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `sqm render --guidance`; the daemon never sets it.
    pub guidance: Option<f32>,
    /// The process's Z-Image fidelity when the backend is `zimage`: the
    /// job takes that tier table (zimage.md §1.1). None for other backends.
    pub fidelity: Option<crate::prompt::Fidelity>,
    /// An explicit LoRA list (path, scale), already shape-checked by
    /// [`crate::render::lora::request_list`]: it replaces the pack's stack
    /// and adds no triggers; `Some([])` turns pack LoRAs off.
    pub loras: Option<Vec<(String, f64)>>,
}

/// An image side outside what the backends render.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{side} must be a multiple of 16 in [64, 2048], got {got}")]
pub struct SizeError {
    pub side: String,
    pub got: u32,
}

/// A requested image side: a multiple of 16 in 64..=2048, as the ZeroMQ
/// worker accepts.
pub fn check_size(side: &str, n: u32) -> Result<u32, SizeError> {
    if (64..=2048).contains(&n) && n % 16 == 0 {
        Ok(n)
    } else {
        Err(SizeError { side: side.to_owned(), got: n })
    }
}

/// A request ready for a backend.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PreparedJob {
    pub job: RenderJob,
    pub clip_prompt: String,
    pub worker_type: String,
    /// Which composer built the prompt: `v2`, `flux-era`, `verbatim` or `raw`.
    pub composer: &'static str,
    /// Composer v2's layers (`<slot>:<source>`) and evictions; empty otherwise.
    pub layers: Vec<String>,
    pub evicted: Vec<String>,
    /// Composer v2's account of its work; None for the other composers.
    pub report: Option<crate::prompt::layered::Report>,
    /// The steps were given (`sqm render --steps`): a variant change keeps them.
    pub steps_fixed: bool,
}

impl PreparedJob {
    /// Makes the job run on a variant the backend has (`available`; empty:
    /// any). A job whose variant is missing takes the other one with that
    /// variant's steps and guidance (zimage.md §4.5 c), before its cache
    /// key is made. Returns the variant it asked for when it changed.
    pub fn run_on(&mut self, available: &[crate::prompt::Variant]) -> Option<crate::prompt::Variant> {
        // A depth job runs its control model at its own settings.
        if self.job.control.is_some() {
            return None;
        }
        let wanted = self.job.variant;
        let &have = available.first().filter(|_| !available.contains(&wanted))?;
        let (steps, guidance) = crate::prompt::tiers::TierSpec::variant_settings(self.job.tier, have);
        self.job.variant = have;
        self.job.guidance = guidance;
        if !self.steps_fixed {
            self.job.steps = steps;
        }
        Some(wanted)
    }
}

/// What preparation decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    /// The beat filter said no.
    Skipped {
        reason: &'static str,
    },
    Job(Box<PreparedJob>),
}

/// Why a request cannot be rendered, mapped to protocol error codes.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Generation(String),
    #[error("{0}")]
    Extraction(String),
    #[error("{0}")]
    Compose(ComposeError, Option<String>),
    /// A request field that cannot be honoured (`INVALID_REQUEST`).
    #[error("{0}")]
    Invalid(String),
}

/// Tier names that count as a caller's own visual block.
fn is_image_tier_name(tier: &str) -> bool {
    Tier::parse(tier).is_some() || tier == "fog_of_war" || tier == "tactical_sketch"
}

/// Runs the dispatch steps 1–5 of protocol.md §5.2.
pub fn prepare(req: &RenderRequest, styles: &StyleSource) -> Result<Prepared, PrepareError> {
    // 1. Music is played, not generated.
    if req.tier == "music" {
        return Err(PrepareError::Generation(tier_error("music")));
    }
    // 2. Beat filter, only with both narration and game state.
    if !req.narration.is_empty() && req.game_state_present {
        let verdict = beat_filter(&req.narration, &req.game_state, req.previous_location.as_deref());
        if !verdict.generate {
            return Ok(Prepared::Skipped { reason: "beat_filter" });
        }
    }
    // 3–4. Narration → cue, and the tier check.
    let (cue, cue_camera, tier) = cue_of(req)?;
    // 5. Prompt.
    let style = styles
        .resolve(&StyleRequest {
            genre: &req.genre,
            world: &req.world,
            art_style: &req.art_style,
            negative_prompt: &req.negative_prompt,
            visual_tag_overrides: req.visual_tag_overrides.as_ref(),
        })
        .map_err(compose_err(tier))?;
    let preferred = style.as_ref().map(|s| s.preferred_model.as_str()).unwrap_or("");
    let mut spec =
        TierSpec::of(tier).with_variant(req.variant.as_deref(), preferred, tier).map_err(PrepareError::Generation)?;
    if let Some(f) = req.fidelity {
        // `variant` was still checked above; it has no effect here.
        spec = TierSpec { variant: spec.variant, ..TierSpec::zimage(tier, f) };
    }
    // The layered composer (composer-v2.md §1): pack catalogs, recipes, cameras.
    let layered = req.positive_prompt.is_empty()
        && style.is_some()
        && layered::applies(&styles.root, tier, &req.genre, &req.world, &cue.subject, &cue.characters);
    let (loras, triggers) = loras_for(req, styles, style.as_ref(), tier)?;
    let mut prepared = if layered {
        let camera = cue_camera.or_else(|| req.camera.clone());
        layered_job(req, styles, &cue, tier, &spec, camera)?
    } else {
        flux_era_job(req, styles, cue, tier, style.as_ref(), &spec, preferred)?
    };
    // The pack stack's triggers lead composed prompts; a caller's own
    // prompt stays verbatim (conditioning.md §1.2).
    if !triggers.is_empty() && prepared.composer != "verbatim" {
        let p = &mut prepared.job.positive_prompt;
        *p = if p.is_empty() { triggers.join(", ") } else { format!("{}, {p}", triggers.join(", ")) };
    }
    prepared.job.loras = loras;
    Ok(Prepared::Job(Box::new(prepared)))
}

/// The job's LoRAs and triggers: the request's explicit list (files in
/// the genre pack or the LoRA folder), else the pack's stack for `tier`.
fn loras_for(
    req: &RenderRequest,
    styles: &StyleSource,
    style: Option<&Style>,
    tier: Tier,
) -> Result<(Vec<super::lora::Lora>, Vec<String>), PrepareError> {
    if let Some(list) = &req.loras {
        let roots = super::lora::LoraRoots {
            packs: Some(styles.root.clone()),
            genre: req.genre.clone(),
            lora_dir: styles.lora_dir.clone(),
        };
        return Ok((super::lora::resolve_request(list, &roots).map_err(PrepareError::Invalid)?, Vec::new()));
    }
    match style {
        Some(s) if !req.genre.is_empty() && !s.loras.is_empty() => {
            let genre_dir = styles.root.join(&req.genre);
            super::lora::stack(&s.loras, tier, &genre_dir, styles.lora_dir.as_deref()).map_err(|e| {
                let message = format!("{}/visual_style.yaml: {e}", req.genre);
                PrepareError::Compose(
                    ComposeError { kind: crate::prompt::style::ComposeErrorKind::PackLoadError, message },
                    Some(tier.name().to_owned()),
                )
            })
        }
        _ => Ok((Vec::new(), Vec::new())),
    }
}

fn compose_err(tier: Tier) -> impl Fn(ComposeError) -> PrepareError {
    move |e| PrepareError::Compose(e, Some(tier.name().to_owned()))
}

/// Steps 3 and 4: the request's own visual fields, or the first cue the
/// interpreter finds in its narration; then the tier, which must be an
/// image tier. Also returns the camera the cue asked for.
fn cue_of(req: &RenderRequest) -> Result<(Cue, Option<String>, Tier), PrepareError> {
    let mut cue = Cue {
        tier: None,
        subject: req.subject.clone(),
        mood: req.mood.clone(),
        location: req.location.clone(),
        characters: req.characters.clone(),
        tags: req.tags.clone(),
    };
    let mut tier_name = req.tier.clone();
    let mut cue_camera: Option<String> = None;
    if !req.narration.is_empty() && req.positive_prompt.is_empty() {
        let (documents, stripped) =
            extract_documents(&req.narration, if req.genre.is_empty() { "unknown" } else { &req.genre });
        for d in &documents {
            tracing::info!(template = %d.template_name, title = %d.title, "document in narration");
        }
        let caller_has_visual = is_image_tier_name(&req.tier) && !req.subject.is_empty();
        if !caller_has_visual {
            let cues = Session::new().interpret(&stripped, &req.game_state);
            if let Some(first) = cues.into_iter().next() {
                // The reference's interpreter spans (remote-and-telemetry.md §5): roots.
                let subject: String = first.subject.chars().take(120).collect();
                tracing::info_span!(parent: None, "scene_interpreter.classified",
                    tier = first.tier.name(), subject = %subject, source = "rule_match")
                .in_scope(|| {});
                cue.subject = first.subject;
                cue.mood = first.mood;
                cue.tags = first.tags;
                cue_camera = first.camera;
                tier_name = first.tier.name().to_owned();
            }
            if cue.subject.is_empty() {
                return Err(PrepareError::Extraction(
                    "SubjectExtractor returned no visual subject from narration. No fallback — refusing to render narrative prose directly.".into(),
                ));
            }
        } else {
            tracing::info_span!(parent: None, "scene_interpreter.skipped",
                reason = "server_supplied_visual_block", tier = %req.tier)
            .in_scope(|| {});
        }
    }
    let tier = Tier::parse(&tier_name).ok_or_else(|| PrepareError::Generation(tier_error(&tier_name)))?;
    cue.tier = Some(tier);
    Ok((cue, cue_camera, tier))
}

/// A job from the layered composer; its post directive (crop or rotate)
/// widens the canvas the backend renders.
fn layered_job(
    req: &RenderRequest,
    styles: &StyleSource,
    cue: &Cue,
    tier: Tier,
    spec: &TierSpec,
    camera: Option<String>,
) -> Result<PreparedJob, PrepareError> {
    let compose_err = compose_err(tier);
    let pc = match &req.pc_descriptor {
        Some(v) => layered::PcDescriptor::from_value(v).map_err(&compose_err)?,
        None => None,
    };
    let request = layered::Request {
        tier: Some(tier),
        subject: cue.subject.clone(),
        characters: cue.characters.clone(),
        location: cue.location.clone(),
        camera,
        pc_descriptor: pc,
        genre: req.genre.clone(),
        world: req.world.clone(),
    };
    let c = layered::compose(&styles.root, &request).map_err(&compose_err)?;
    let (mut width, mut height) = (req.width.unwrap_or(spec.width), req.height.unwrap_or(spec.height));
    let post = match &c.post {
        Some(p) => {
            let (w, h) = layered::post_canvas(p, width, height).map_err(&compose_err)?;
            let plan = super::PostPlan { post: p.clone(), width, height };
            (width, height) = (w, h);
            Some(plan)
        }
        None => None,
    };
    for w in &c.warnings {
        tracing::warn!("{w}");
    }
    let job = RenderJob {
        tier,
        positive_prompt: c.positive_prompt,
        negative_prompt: c.negative_prompt,
        seed: req.seed.unwrap_or(c.seed),
        width,
        height,
        steps: req.steps.unwrap_or(spec.steps),
        guidance: req.guidance.unwrap_or(spec.guidance),
        variant: spec.variant,
        subject: cue.subject.clone(),
        mood: cue.mood.clone(),
        post,
        init: None,
        control: None,
        loras: Vec::new(),
    };
    Ok(PreparedJob {
        job,
        clip_prompt: c.clip_prompt,
        worker_type: "zimage".into(),
        composer: "v2",
        layers: c.layers,
        evicted: c.evicted,
        report: Some(c.report),
        steps_fixed: req.steps.is_some(),
    })
}

/// A job from the caller's own prompt, the Flux-era composer, or the raw
/// fallback, in that order of preference.
fn flux_era_job(
    req: &RenderRequest,
    styles: &StyleSource,
    mut cue: Cue,
    tier: Tier,
    style: Option<&Style>,
    spec: &TierSpec,
    preferred: &str,
) -> Result<PreparedJob, PrepareError> {
    let composer = if !req.positive_prompt.is_empty() {
        "verbatim"
    } else if !cue.subject.is_empty() && style.is_some() {
        "flux-era"
    } else if !req.prompt.is_empty() {
        "verbatim"
    } else {
        "raw"
    };
    let (positive, negative, clip, worker_type, seed) = if !req.positive_prompt.is_empty() {
        (req.positive_prompt.clone(), req.negative_prompt.clone(), String::new(), preferred_or_flux(preferred), 0u32)
    } else if let (false, Some(style)) = (cue.subject.is_empty(), style) {
        // Resolve refs so prompts (and seeds) see names, not slugs.
        cue.location = styles.resolve_location(&req.genre, &cue.location);
        cue.characters = cue
            .characters
            .iter()
            .map(|c| styles.resolve_character(&req.genre, &req.world, c, &req.subject_name))
            .collect();
        let c = compose(&cue, tier, style);
        (c.positive_prompt, c.negative_prompt, c.clip_prompt, c.worker_type, c.seed)
    } else if !req.prompt.is_empty() {
        (req.prompt.clone(), req.negative_prompt.clone(), String::new(), preferred_or_flux(preferred), 0)
    } else {
        let text = raw_fallback(&cue, Some(tier)).ok_or_else(|| {
            PrepareError::Generation(
                "No prompt content: params has no positive_prompt, prompt, subject, or tags".into(),
            )
        })?;
        (text, req.negative_prompt.clone(), String::new(), preferred_or_flux(preferred), 0)
    };
    let job = RenderJob {
        tier,
        positive_prompt: positive,
        negative_prompt: negative,
        // An explicit seed wins.
        seed: req.seed.unwrap_or(seed),
        width: req.width.unwrap_or(spec.width),
        height: req.height.unwrap_or(spec.height),
        steps: req.steps.unwrap_or(spec.steps),
        guidance: req.guidance.unwrap_or(spec.guidance),
        variant: spec.variant,
        subject: cue.subject.clone(),
        mood: cue.mood.clone(),
        post: None,
        init: None,
        control: None,
        loras: Vec::new(),
    };
    Ok(PreparedJob {
        job,
        clip_prompt: clip,
        worker_type,
        composer,
        layers: Vec::new(),
        evicted: Vec::new(),
        report: None,
        steps_fixed: req.steps.is_some(),
    })
}

fn preferred_or_flux(preferred: &str) -> String {
    if preferred.is_empty() {
        "flux".into()
    } else {
        preferred.to_owned()
    }
}

/// The result of running a job (protocol.md §5.3).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct RenderOutcome {
    pub image_url: String,
    pub image_path: String,
    pub width: u32,
    pub height: u32,
    pub elapsed_ms: u64,
    pub seed: u32,
    pub backend: String,
    pub cached: bool,
}

/// Where a job's file goes, and its cache key.
pub fn planned_path(out_dir: &Path, backend: &dyn Backend, job: &RenderJob) -> (String, PathBuf) {
    let key = render_key(backend.name(), backend.model().as_deref(), job);
    let path = output_path(out_dir, backend.name(), &key);
    (key, path)
}

/// Runs `job` on `backend`, writing the PNG under `out_dir` unless an
/// identical render is already on disk.
pub fn execute(
    prepared: &PreparedJob,
    backend: &mut dyn Backend,
    out_dir: &Path,
    progress: &mut dyn FnMut(u32, u32),
    cancel: &dyn Fn() -> bool,
) -> Result<RenderOutcome, RenderError> {
    let job = &prepared.job;
    super::validate_job(job)?;
    let started = Instant::now();
    let name = backend.name().to_owned();
    let (_, path) = planned_path(out_dir, backend, job);
    let outcome = |path: String, width, height, cached, started: Instant| RenderOutcome {
        image_url: path.clone(),
        image_path: path,
        width,
        height,
        elapsed_ms: started.elapsed().as_millis() as u64,
        seed: job.seed,
        backend: name.clone(),
        cached,
    };
    if path.is_file() {
        let (w, h) = job.post.as_ref().map(|p| (p.width, p.height)).unwrap_or((job.width, job.height));
        return Ok(outcome(path.display().to_string(), w, h, true, started));
    }
    match backend.render(job, progress, cancel)? {
        None => Ok(outcome("/dev/null".into(), 0, 0, false, started)),
        Some(img) => {
            let img = match &job.post {
                Some(p) => super::post::apply_post(&p.post, &img, p.width, p.height),
                None => img,
            };
            // Cancelled while the last step ran (or timed out): no file.
            if cancel() {
                return Err(RenderError::Cancelled);
            }
            let model = backend.model_for(job).unwrap_or_else(|| name.clone());
            let mut meta = serde_json::json!({"backend": name, "model": model, "job": job, "clip_prompt": prepared.clip_prompt, "worker_type": prepared.worker_type});
            if let Some(init) = &job.init {
                // How many of the steps ran (conditioning.md §2.4).
                let ran = super::init::start_step(job.steps, init.strength).map(|s| job.steps - s).unwrap_or(0);
                meta["init_image"] =
                    serde_json::json!({"sha256": init.sha256, "strength": init.strength, "steps_run": ran});
            }
            if !job.loras.is_empty() {
                meta["loras"] = serde_json::to_value(&job.loras).expect("loras serialize");
            }
            write_png(&path, &img, &parameters_text(job, &model), &meta.to_string())?;
            let abs = std::path::absolute(&path).unwrap_or(path);
            Ok(outcome(abs.display().to_string(), img.width, img.height, false, started))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sketch::SketchBackend;

    fn styles() -> StyleSource {
        StyleSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/genre_packs"))
    }

    #[test]
    fn a_missing_variant_takes_the_other_ones_settings() {
        use crate::prompt::Variant;
        let s = styles();
        let r = |tier: &str| RenderRequest { tier: tier.into(), ..Default::default() };
        let mut j = job(prepare(&RenderRequest { positive_prompt: "a sign".into(), ..r("text_overlay") }, &s).unwrap());
        assert_eq!((j.job.variant, j.job.steps, j.job.guidance), (Variant::Schnell, 4, 0.0));
        assert_eq!(j.run_on(&[Variant::Schnell, Variant::Dev]), None);
        assert_eq!(j.run_on(&[Variant::Dev]), Some(Variant::Schnell));
        assert_eq!((j.job.variant, j.job.steps, j.job.guidance), (Variant::Dev, 12, 3.5));
        let mut c = job(prepare(&RenderRequest { positive_prompt: "a map".into(), ..r("cartography") }, &s).unwrap());
        assert_eq!(c.run_on(&[Variant::Schnell]), Some(Variant::Dev));
        assert_eq!((c.job.steps, c.job.guidance), (4, 0.0));
        let req = RenderRequest { positive_prompt: "a map".into(), steps: Some(9), ..r("cartography") };
        let mut fixed = job(prepare(&req, &s).unwrap());
        fixed.run_on(&[Variant::Schnell]);
        assert_eq!((fixed.job.steps, fixed.job.guidance), (9, 0.0), "--steps still wins");
        assert_eq!(c.clone().run_on(&[]), None, "no list: any variant");
    }

    fn job(p: Prepared) -> PreparedJob {
        match p {
            Prepared::Job(j) => *j,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dispatch_errors_in_order() {
        let s = styles();
        let r = |tier: &str| RenderRequest { tier: tier.into(), positive_prompt: "x".into(), ..Default::default() };
        assert!(
            matches!(prepare(&r("music"), &s), Err(PrepareError::Generation(m)) if m.starts_with("tier 'music' is not generated"))
        );
        assert_eq!(prepare(&r("fog_of_war"), &s), Err(PrepareError::Generation("Unknown tier: 'fog_of_war'".into())));
        assert!(
            matches!(prepare(&r("tactical_sketch"), &s), Err(PrepareError::Generation(m)) if m.contains("retired"))
        );
        let none = RenderRequest { tier: "portrait".into(), ..Default::default() };
        assert_eq!(
            prepare(&none, &s),
            Err(PrepareError::Generation(
                "No prompt content: params has no positive_prompt, prompt, subject, or tags".into()
            ))
        );
        let bad_variant = RenderRequest { variant: Some("pro".into()), ..r("landscape") };
        assert!(
            matches!(prepare(&bad_variant, &s), Err(PrepareError::Generation(m)) if m.starts_with("Unknown variant override"))
        );
        let bad_genre = RenderRequest {
            tier: "portrait".into(),
            subject: "orc".into(),
            genre: "nope".into(),
            world: "w".into(),
            ..Default::default()
        };
        match prepare(&bad_genre, &s) {
            Err(PrepareError::Compose(e, tier)) => {
                assert_eq!(e.to_string(), format!("StyleMissError: unknown genre 'nope' under {}", s.root.display()));
                assert_eq!(tier.as_deref(), Some("portrait"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn beat_filter_and_narration() {
        let s = styles();
        let skip = RenderRequest {
            tier: "landscape".into(),
            narration: "You put away your sword and check your inventory.".into(),
            game_state: GameState { location: "Tavern".into(), ..Default::default() },
            game_state_present: true,
            previous_location: Some("Tavern".into()),
            ..Default::default()
        };
        assert_eq!(prepare(&skip, &s), Ok(Prepared::Skipped { reason: "beat_filter" }));
        // Narration without game state: the interpreter picks the tier.
        let narr = RenderRequest { narration: "You enter the ruined chapel.".into(), ..Default::default() };
        let j = job(prepare(&narr, &s).unwrap());
        assert_eq!(j.job.tier, Tier::Landscape);
        // No style: the raw fallback, `<mood> atmosphere`.
        assert_eq!(j.job.positive_prompt, "ruined chapel, , atmospheric atmosphere");
        // The caller's visual block wins over the narration.
        let own = RenderRequest { tier: "portrait".into(), subject: "orc".into(), ..narr.clone() };
        assert_eq!(job(prepare(&own, &s).unwrap()).job.tier, Tier::Portrait);
        let empty = RenderRequest { narration: "\"Hi,\" she says.".into(), ..Default::default() };
        assert!(matches!(prepare(&empty, &s), Err(PrepareError::Extraction(_))));
    }

    #[test]
    fn composed_from_the_pack_with_refs() {
        let s = styles();
        // A portrait of a named character: the Flux era resolves the refs.
        let r = RenderRequest {
            tier: "portrait".into(),
            subject: "a tinker at work".into(),
            genre: "ashfall".into(),
            world: "cinder-reach".into(),
            location: "where:cinder-reach/harrowgate".into(),
            characters: vec!["Ro the Tinker".into()],
            ..Default::default()
        };
        let j = job(prepare(&r, &s).unwrap());
        assert_eq!(j.composer, "flux-era");
        assert!(j.job.positive_prompt.starts_with("character portrait, detailed face and attire, centered subject, a tinker at work, Harrowgate, Ro the Tinker, solo character"), "{}", j.job.positive_prompt);
        assert_eq!((j.job.width, j.job.height, j.job.steps), (768, 1024, 12));
        // The pack prefers schnell.
        assert_eq!(j.job.variant, crate::prompt::Variant::Schnell);
        assert_eq!(j.worker_type, "schnell");
        let seeded = RenderRequest { seed: Some(u32::MAX), ..r.clone() };
        assert_eq!(job(prepare(&seeded, &s).unwrap()).job.seed, u32::MAX);
        let sized = RenderRequest { width: Some(512), height: Some(256), guidance: Some(2.5), ..r.clone() };
        let j = job(prepare(&sized, &s).unwrap()).job;
        assert_eq!((j.width, j.height, j.guidance), (512, 256, 2.5));
        assert!(check_size("width", 500).is_err() && check_size("height", 32).is_err());

        // An `npc:` ref in a world with catalogs: composer v2.
        let v2 = RenderRequest { characters: vec!["npc:tinker-ro".into()], ..r.clone() };
        let j = job(prepare(&v2, &s).unwrap());
        assert_eq!(j.composer, "v2");
        assert_eq!(j.worker_type, "zimage");
        assert!(j.job.positive_prompt.contains("a wiry young glassfolk tinker"), "{}", j.job.positive_prompt);
        assert!(j.layers.contains(&"CASTING:npc:tinker-ro".to_owned()), "{:?}", j.layers);
        assert_eq!(j.job.variant, crate::prompt::Variant::Schnell);
        // A wrong camera type is the daemon's INVALID_REQUEST; an unknown
        // ref is COMPOSE_FAILED with the spec's error type.
        let bad = RenderRequest { characters: vec!["npc:nobody".into()], ..r.clone() };
        match prepare(&bad, &s) {
            Err(PrepareError::Compose(e, tier)) => {
                assert_eq!(e.to_string(), "CatalogMissError: CharacterCatalog has no entry for 'npc:nobody'");
                assert_eq!(tier.as_deref(), Some("portrait"));
            }
            other => panic!("{other:?}"),
        }
        // A post-directive camera renders a bigger canvas and keeps the tier size.
        let leone = RenderRequest {
            tier: "scene_illustration".into(),
            characters: vec!["npc:tinker-ro".into()],
            camera: Some("extreme_closeup_leone".into()),
            ..r
        };
        let j = job(prepare(&leone, &s).unwrap());
        assert_eq!((j.job.width, j.job.height), (4096, 3072));
        let post = j.job.post.as_ref().unwrap();
        assert_eq!((post.width, post.height, post.post.kind.as_str()), (1024, 768, "crop"));
        let out = tempfile::tempdir().unwrap();
        let o = execute(&j, &mut SketchBackend::default(), out.path(), &mut |_, _| {}, &|| false).unwrap();
        assert_eq!((o.width, o.height), (1024, 768));
        let (w, h, _) = super::super::output::read_png_text(Path::new(&o.image_path)).unwrap();
        assert_eq!((w, h), (1024, 768));
    }

    #[test]
    fn execute_writes_once_then_serves_from_disk() {
        let out = tempfile::tempdir().unwrap();
        let r = RenderRequest {
            tier: "scene_illustration".into(),
            positive_prompt: "x".into(),
            seed: Some(1),
            ..Default::default()
        };
        let j = job(prepare(&r, &styles()).unwrap());
        let mut backend = SketchBackend::default();
        let mut steps = 0;
        let first = execute(&j, &mut backend, out.path(), &mut |_, _| steps += 1, &|| false).unwrap();
        assert!(!first.cached);
        assert_eq!(steps, 1);
        assert!(first.image_path.ends_with(".png"));
        assert!(first.image_path.contains("/sketch/render_"));
        let (w, h, text) = super::super::output::read_png_text(Path::new(&first.image_path)).unwrap();
        assert_eq!((w, h), (1024, 768));
        let params = &text.iter().find(|(k, _)| k == "parameters").unwrap().1;
        assert!(
            params
                .starts_with("x\nSteps: 12, Sampler: Euler, CFG scale: 3.5, Seed: 1, Size: 1024x768, Model: sketch-v1"),
            "{params}"
        );
        let meta: serde_json::Value = serde_json::from_str(&text.iter().find(|(k, _)| k == "sqm").unwrap().1).unwrap();
        assert_eq!(meta["job"]["seed"], 1);
        let second = execute(&j, &mut backend, out.path(), &mut |_, _| steps += 1, &|| false).unwrap();
        assert!(second.cached);
        assert_eq!(second.image_path, first.image_path);
        assert_eq!(steps, 1);
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(out.path().join("sketch")).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn cancelled_render_writes_nothing() {
        let out = tempfile::tempdir().unwrap();
        let r = RenderRequest { tier: "landscape".into(), positive_prompt: "y".into(), ..Default::default() };
        let j = job(prepare(&r, &styles()).unwrap());
        let err = execute(&j, &mut SketchBackend::default(), out.path(), &mut |_, _| {}, &|| true).unwrap_err();
        assert!(matches!(err, RenderError::Cancelled));
        assert!(
            !out.path().join("sketch").exists()
                || std::fs::read_dir(out.path().join("sketch")).unwrap().next().is_none()
        );
    }

    #[test]
    fn null_backend_reports_dev_null() {
        let out = tempfile::tempdir().unwrap();
        let r = RenderRequest { tier: "landscape".into(), positive_prompt: "y".into(), ..Default::default() };
        let j = job(prepare(&r, &styles()).unwrap());
        let o = execute(&j, &mut crate::render::null::NullBackend, out.path(), &mut |_, _| {}, &|| false).unwrap();
        assert_eq!((o.image_path.as_str(), o.width, o.height), ("/dev/null", 0, 0));
    }
}
