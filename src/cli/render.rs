//! `sqm render`: one image through the same pipeline as the daemon.

use std::path::PathBuf;

use std::io::IsTerminal;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::render::backend_by_name;
use crate::render::pipeline::{execute, prepare, PrepareError, Prepared, PreparedJob, RenderOutcome, RenderRequest};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  sqm render --tier portrait \"orc warrior\"
  sqm render --tier landscape --mood \"dusk, ominous\" --location where:cinder-reach/harrowgate \"the walls\"
  sqm render --tier portrait --dry-run --json \"orc warrior\"      # the composed prompt, no image")]
pub struct Args {
    /// Tier: portrait, portrait_square, landscape, scene_illustration, text_overlay, cartography.
    #[arg(long)]
    pub tier: String,
    /// What to draw (default: the first --character).
    #[arg(value_name = "SUBJECT", required_unless_present_any = ["characters", "prompt"])]
    pub subject: Vec<String>,
    /// Directory of genre packs (default: the built-in example packs).
    #[arg(long, env = "SIDEQUEST_GENRE_PACKS", value_name = "DIR")]
    pub genre_packs: Option<PathBuf>,
    /// Genre (pack) whose visual style to use (default with the built-in packs: ashfall).
    #[arg(long)]
    pub genre: Option<String>,
    /// World within the genre.
    #[arg(long, requires = "genre")]
    pub world: Option<String>,
    /// Camera preset. Used by composer v2 only (a character or place ref in a world with
    /// catalogs); other renders ignore it with a warning.
    #[arg(long, value_parser = crate::pack::direction::PRESETS.map(|(n, _)| n))]
    pub camera: Option<String>,
    /// Appearance of the first `pc:` character (builds a pc_descriptor).
    #[arg(long, value_name = "TEXT")]
    pub pc_appearance: Option<String>,
    /// Default pose of the first `pc:` character.
    #[arg(long, value_name = "TEXT")]
    pub pc_pose: Option<String>,
    /// Culture slug of the first `pc:` character.
    #[arg(long, value_name = "SLUG")]
    pub pc_culture: Option<String>,
    /// The scene's mood, words such as "dusk, ominous" (flux-era composer).
    #[arg(long, default_value = "")]
    pub mood: String,
    /// A place name or a `where:<world>/<slug>` ref.
    #[arg(long, default_value = "")]
    pub location: String,
    /// A character name or `npc:<slug>` / `pc:<slug>` ref (repeatable).
    #[arg(long = "character", value_name = "NAME")]
    pub characters: Vec<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Image backend.
    #[arg(long, env = "SQM_BACKEND", default_value = "sketch", value_parser = crate::render::BACKENDS)]
    pub backend: String,
    #[command(flatten)]
    pub flux: super::FluxArgs,
    /// Seed, 0 to 4294967295 (default: derived from the request).
    #[arg(long)]
    pub seed: Option<u32>,
    /// The prompt, verbatim (the daemon's positive_prompt): no composition, no pack style.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Negative prompt to go with --prompt.
    #[arg(long, value_name = "TEXT", requires = "prompt")]
    pub negative_prompt: Option<String>,
    /// Image width: a multiple of 16 in 64..=2048 (default: the tier's).
    #[arg(long, value_parser = |s: &str| parse_side("--width", s))]
    pub width: Option<u32>,
    /// Image height: a multiple of 16 in 64..=2048 (default: the tier's).
    #[arg(long, value_parser = |s: &str| parse_side("--height", s))]
    pub height: Option<u32>,
    /// Guidance scale, 0 to 30 (default: the tier's).
    #[arg(long, value_parser = super::parse_guidance)]
    pub guidance: Option<f32>,
    /// Denoising steps (default: the tier's).
    #[arg(long)]
    pub steps: Option<u32>,
    /// Flux variant override: dev or schnell.
    #[arg(long)]
    pub variant: Option<String>,
    /// Where to write the PNG (default: the content-addressed file in the output dir).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Output directory for content-addressed renders.
    #[arg(long, env = "SIDEQUEST_OUTPUT_DIR", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// img2img: start from this image (PNG or JPEG), fitted to the canvas.
    #[arg(long, visible_alias = "reference", value_name = "FILE")]
    pub init_image: Option<PathBuf>,
    /// img2img: the fraction of the steps that run, 0 to 1 (1: the plain render).
    #[arg(long, default_value_t = 0.6, requires = "init_image", value_parser = parse_strength)]
    pub strength: f64,
    /// Depth conditioning: a depth map (near = white), for FLUX.1-Depth-dev.
    #[arg(long, value_name = "FILE")]
    pub depth: Option<PathBuf>,
    /// The depth map is far = white: invert it (255 − v) first.
    #[arg(long, requires = "depth")]
    pub depth_invert: bool,
    /// A LoRA (.safetensors) merged into the transformer, at SCALE 0 to 2 (default 1); repeatable,
    /// up to 8. Replaces the pack's LoRAs and their trigger words.
    #[arg(long = "lora", value_name = "FILE[:SCALE]", value_parser = super::parse_lora)]
    pub loras: Vec<(PathBuf, f64)>,
    /// Print the composed request as JSON and render nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_side(name: &str, s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("{name} must be a whole number, got '{s}'"))?;
    crate::render::pipeline::check_size(name, n).map_err(|e| e.to_string())
}

fn parse_strength(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("must be a number from 0 to 1, got '{s}'"))?;
    crate::render::init::check_strength(v)
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let options = args.flux.options(&args.backend)?;
    let (mut req, styles) = request_of(&args)?;
    req.fidelity = options.fidelity;
    // --lora: trusted paths, replacing the pack's stack (and its triggers).
    let explicit = if args.loras.is_empty() {
        None
    } else {
        req.loras = Some(Vec::new());
        Some(crate::render::lora::from_paths(&args.loras).map_err(|e| anyhow::anyhow!("--lora: {e}"))?)
    };
    let prepared = match prepare(&req, &styles) {
        Ok(Prepared::Job(j)) => j,
        Ok(Prepared::Skipped { reason }) => bail!("nothing to render ({reason})"),
        Err(PrepareError::Compose(e, _)) => {
            eprintln!("error: COMPOSE_FAILED: {e}");
            return Ok(super::exit::FAILURE);
        }
        Err(e) => bail!("{e}"),
    };
    if args.camera.is_some() && prepared.composer != "v2" {
        tracing::warn!(
            composer = prepared.composer,
            "--camera applies to composer v2 only (a character or place ref in a world with catalogs); ignored"
        );
    }
    let mut prepared = prepared;
    if let Some(loras) = explicit {
        prepared.job.loras = loras;
    }
    if crate::render::lora::drop_on_weightless(&mut prepared.job, &args.backend) {
        tracing::warn!(backend = %args.backend, "LoRAs: this backend applies no LoRA; ignored");
    }
    if args.init_image.is_some() && matches!(args.backend.as_str(), "sketch" | "null") {
        tracing::warn!(backend = %args.backend, "--init-image: this backend applies no init image; ignored");
    } else if let Some(path) = &args.init_image {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let img = crate::render::input::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let job = &mut prepared.job;
        crate::render::init::start_step(job.steps, args.strength).map_err(|e| anyhow::anyhow!(e))?;
        job.init = Some(crate::render::init::InitImage::new(&img, job.width, job.height, args.strength));
    }
    if args.dry_run {
        print_dry_run(&args, &prepared, options.fidelity)?;
        return Ok(super::exit::OK);
    }
    let mut backend = backend_by_name(&args.backend, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(wanted) = prepared.run_on(&backend.variants()) {
        tracing::warn!(
            wanted = wanted.name(),
            using = prepared.job.variant.name(),
            "no weights for the tier's Flux variant: rendering with the other one, at its settings"
        );
    }
    // After the variant is settled: depth runs dev's schedule at its own guidance.
    if let Some(path) = &args.depth {
        let Some(model) = backend.depth_model() else {
            bail!("--depth: backend '{}' has no depth model (FLUX.1-Depth-dev not found)", args.backend);
        };
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let img = crate::render::input::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let depth = crate::render::control::DepthSettings {
            model,
            guidance: backend.depth_guidance(),
            invert: args.depth_invert,
        };
        crate::render::control::set_depth(&mut prepared.job, &img, &depth);
    }
    let out_dir = match &args.output_dir {
        Some(d) => d.clone(),
        None => default_output_dir(),
    };
    let result = render_with_progress(&args, &prepared, backend.as_mut(), &out_dir);
    let mut outcome = result?;
    if let Some(budget) = backend.memory_budget() {
        // What the weights took at most, beside the budget they had.
        let peak = backend.peak_resident_bytes();
        let rss = crate::render::memory::peak_rss().map(crate::render::memory::gib).unwrap_or_else(|| "?".into());
        eprintln!(
            "memory: peak {} of weights resident ({peak} bytes) within a {} budget; process peak RSS {rss}",
            crate::render::memory::gib(peak),
            crate::render::memory::gib(budget)
        );
    }
    if let (Some(target), true) = (&args.out, outcome.image_path != "/dev/null") {
        copy_atomic(std::path::Path::new(&outcome.image_path), target)?;
        let abs = std::path::absolute(target).unwrap_or(target.clone()).display().to_string();
        outcome.image_path = abs.clone();
        outcome.image_url = abs;
    }
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!("{}", outcome.image_path);
    }
    Ok(super::exit::OK)
}

/// The pipeline's request from the flags, and the packs it reads (the
/// built-in example packs unless --genre-packs names a folder).
fn request_of(args: &Args) -> anyhow::Result<(RenderRequest, crate::prompt::StyleSource)> {
    let subject = if args.subject.is_empty() {
        args.characters.first().cloned().unwrap_or_default()
    } else {
        args.subject.join(" ")
    };
    let pc_descriptor = if args.pc_appearance.is_some() || args.pc_pose.is_some() || args.pc_culture.is_some() {
        let Some(id) = args.characters.iter().find_map(|c| c.strip_prefix("pc:")) else {
            bail!("--pc-appearance/--pc-pose/--pc-culture need a --character pc:<id>");
        };
        Some(
            serde_json::json!({"id": id, "appearance": args.pc_appearance, "default_pose": args.pc_pose, "culture": args.pc_culture}),
        )
    } else {
        None
    };
    if subject.trim().is_empty() && args.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
        bail!("the subject is empty: say what to draw");
    }
    if let Some(0) | Some(201..) = args.steps {
        bail!("--steps must be between 1 and 200");
    }
    let (root, default_genre) = match &args.genre_packs {
        Some(root) => (root.clone(), None),
        None => (
            crate::pack::embedded::packs_root().context("cannot unpack the built-in example packs")?,
            Some(crate::pack::embedded::DEFAULT_GENRE),
        ),
    };
    let styles = crate::prompt::StyleSource::new(root).with_lora_dir(args.flux.lora_dir.clone());
    let req = RenderRequest {
        tier: args.tier.clone(),
        subject,
        mood: args.mood.clone(),
        location: args.location.clone(),
        characters: args.characters.clone(),
        tags: args.tags.clone(),
        genre: args.genre.clone().or(default_genre.map(str::to_owned)).unwrap_or_default(),
        world: args.world.clone().unwrap_or_default(),
        seed: args.seed,
        variant: args.variant.clone(),
        steps: args.steps,
        camera: args.camera.clone(),
        pc_descriptor,
        positive_prompt: args.prompt.clone().unwrap_or_default(),
        negative_prompt: args.negative_prompt.clone().unwrap_or_default(),
        width: args.width,
        height: args.height,
        guidance: args.guidance,
        ..Default::default()
    };
    Ok((req, styles))
}

/// `--dry-run`: what would be rendered, as JSON.
fn print_dry_run(args: &Args, prepared: &PreparedJob, fidelity: Option<crate::prompt::Fidelity>) -> anyhow::Result<()> {
    let j = &prepared.job;
    let model = fidelity.map(|f| f.model_name()).unwrap_or(j.variant.name());
    let doc = serde_json::json!({
        "positive_prompt": j.positive_prompt, "negative_prompt": j.negative_prompt, "clip_prompt": prepared.clip_prompt,
        "worker_type": prepared.worker_type, "seed": j.seed, "width": j.width, "height": j.height, "steps": j.steps,
        "guidance": j.guidance, "model": model, "backend": args.backend,
        "composer": prepared.composer, "layers": prepared.layers, "evicted": prepared.evicted,
    });
    let mut doc = doc;
    if let Some(f) = fidelity {
        doc["fidelity"] = f.name().into();
    }
    if !j.loras.is_empty() {
        doc["loras"] = serde_json::to_value(&j.loras)?;
    }
    if let Some(i) = &j.init {
        doc["init_image"] = serde_json::json!({"sha256": i.sha256, "strength": i.strength});
    }
    if let Some(p) = &j.post {
        // The canvas the backend renders before the directive, and the directive.
        doc["width"] = p.width.into();
        doc["height"] = p.height.into();
        doc["render_width"] = j.width.into();
        doc["render_height"] = j.height.into();
        doc["post"] = serde_json::to_value(&p.post)?;
    }
    println!("{}", if args.json { doc.to_string() } else { serde_json::to_string_pretty(&doc)? });
    Ok(())
}

/// Loads the backend and renders, with a spinner and a step bar on stderr
/// for a person watching (stdout and stderr terminals, no --json).
fn render_with_progress(
    args: &Args,
    prepared: &PreparedJob,
    backend: &mut dyn crate::render::Backend,
    out_dir: &std::path::Path,
) -> anyhow::Result<RenderOutcome> {
    let show = !args.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bar = if show { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    if !backend.is_loaded() {
        bar.set_message(format!("loading the {} backend", backend.name()));
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
    }
    backend.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.disable_steady_tick();
    bar.set_length(prepared.job.steps as u64);
    bar.set_position(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} steps, {elapsed} (ETA {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("denoising");
    let mut progress = |step: u32, _steps: u32| bar.set_position(step as u64);
    let result = execute(prepared, backend, out_dir, &mut progress, &|| false);
    bar.finish_and_clear();
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// `$XDG_CACHE_HOME/sqm/renders` (or `~/.cache/sqm/renders`).
fn default_output_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sqm").join("renders")
}

fn copy_atomic(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    let dir = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::atomic::write_with(to, crate::atomic::PLAIN, false, |f| {
        std::io::copy(&mut std::fs::File::open(from)?, f).map(|_| ())
    })
    .with_context(|| format!("cannot write {}", to.display()))
}
