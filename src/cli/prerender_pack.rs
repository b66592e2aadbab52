//! `sqm prerender-pack [PACK]`: render and analyse a whole genre pack.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::packcheck::{self as validate, Options};
use crate::prerender::{self, plan::JobView, Manifest, Outcome, Progress, Work};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Jobs: a portrait per portrait_manifest.yaml character, a landscape per history.yaml point of
interest with a visual prompt and per places.yaml place, a cover per world.yaml cover_poi, and an
EBU R128 loudness analysis per audio file audio.yaml names (gain towards loudnorm_target_lufs,
true peak kept at or below -1 dBTP).

Re-runs skip every job whose content key and file are unchanged; the manifest is saved after each
job, so an interrupted run resumes where it stopped.

Ctrl-C or SIGTERM stops at the next job: its temp files are removed, the manifest is saved, and
the exit code is 130 (a second Ctrl-C ends at once). Temp files a crashed run left are removed at
the next start.

Exit codes: 0 all jobs done or up to date, 1 the pack failed validation or a job failed,
2 usage or I/O problem (unwritable output folder, another run holds it), 130 interrupted.

Examples:
  sqm prerender-pack examples/genre_packs/ashfall
  sqm prerender-pack --dry-run --json ./ashfall
  sqm prerender-pack --backend flux --model-dir ~/models/FLUX.1-schnell ./ashfall")]
pub struct Args {
    /// The genre pack directory (default: the built-in example pack).
    #[arg(value_name = "PACK")]
    pub pack: Option<PathBuf>,
    /// Output folder (default: <PACK>/.cache/prerender).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Image backend.
    #[arg(long, env = "SQM_BACKEND", default_value = "sketch", value_parser = crate::render::BACKENDS)]
    pub backend: String,
    #[command(flatten)]
    pub flux: super::FluxArgs,
    /// Parallel workers for CPU work (sketch renders, loudness); flux renders one at a time
    /// [default: one per CPU core].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Print the plan (what would run, what is up to date) and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable output: the plan, or the summary.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let pack_dir = match &args.pack {
        Some(p) => p.clone(),
        None => crate::pack::embedded::default_pack().context("cannot unpack the built-in example pack")?,
    };
    if !validate::is_pack_dir(&pack_dir) {
        bail!("{}: not a genre pack (no pack.yaml)", pack_dir.display());
    }
    // A pack that fails validation stops here, before any work.
    let packs = validate::discover(&pack_dir).map_err(|e| anyhow::anyhow!(e))?;
    let report = validate::validate_packs(&packs, Options::default());
    if report.errors() > 0 {
        eprint!("{}", report.to_human());
        eprintln!("error: {} fails validation; nothing was rendered", pack_dir.display());
        return Ok(super::exit::FAILURE);
    }
    let genre = pack_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out = args.out.clone().unwrap_or_else(|| prerender::default_out(&pack_dir));
    let flux_opts = args.flux.options(&args.backend)?;

    // The plan needs the backend's identity for its keys; building the flux
    // backend locates its weights (reading nothing yet).
    let probe = crate::render::backend_by_name(&args.backend, &flux_opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let model = probe.model();
    let jobs = prerender::plan(
        &pack_dir,
        probe.name(),
        model.as_deref(),
        &probe.variants(),
        probe.fidelity(),
        args.flux.lora_dir.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    if args.dry_run {
        print_plan(&args, &pack_dir, &out, &jobs);
        return Ok(super::exit::OK);
    }

    let _lock = prerender::OutputLock::acquire(&out).map_err(|e| anyhow::anyhow!(e))?;
    let cpu_backend = !matches!(args.backend.as_str(), "flux" | "zimage");
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = args.jobs.unwrap_or(cores);
    // A GPU model is loaded once: one backend, one job at a time.
    let image_workers = if cpu_backend { workers } else { 1 };
    let probe = Mutex::new(Some(probe));
    let backend_name = args.backend.clone();
    let factory = move || {
        if let Some(b) = probe.lock().expect("probe lock").take() {
            return Ok(b);
        }
        crate::render::backend_by_name(&backend_name, &flux_opts)
    };
    let show = !args.json && std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    let ui = Bars::new(show, jobs.len());
    let stop = super::interrupt::install();
    let summary =
        prerender::execute(&jobs, &genre, &out, &factory, image_workers, &ui, stop).map_err(|e| anyhow::anyhow!(e))?;
    ui.done();
    if summary.interrupted {
        eprintln!(
            "interrupted: {} job(s) done, {} up to date; the manifest is saved, a re-run resumes",
            summary.done, summary.skipped
        );
        return Ok(super::exit::INTERRUPTED);
    }
    if args.json {
        println!("{}", serde_json::json!({"out": out, "manifest": out.join(prerender::MANIFEST), "summary": summary}));
    } else {
        for o in summary.outcomes.iter().filter(|_| !show) {
            if let Outcome::Failed { id, reason } = o {
                eprintln!("failed: {id}: {reason}");
            }
        }
        eprintln!(
            "{} done, {} up to date, {} failed; manifest {}",
            summary.done,
            summary.skipped,
            summary.failed,
            out.join(prerender::MANIFEST).display()
        );
    }
    Ok(if summary.failed > 0 { super::exit::FAILURE } else { super::exit::OK })
}

/// `--dry-run`: each job with what a run would do to it.
fn print_plan(args: &Args, pack_dir: &std::path::Path, out: &std::path::Path, jobs: &[prerender::Job]) {
    let (manifest, warnings) = Manifest::load_untrusted(out, false);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let views: Vec<JobView> = jobs
        .iter()
        .map(|j| {
            let current = prerender::is_current(j, &manifest, out);
            let (prompt, seed, size, file) = match &j.work {
                Work::Image(p) => (
                    Some(p.job.positive_prompt.as_str()),
                    Some(p.job.seed),
                    Some(format!("{}x{}", p.job.width, p.job.height)),
                    None,
                ),
                Work::Loudness { rel, .. } => (None, None, None, Some(rel.as_str())),
            };
            let action = match (current, j.kind) {
                (true, _) => "skip",
                (false, "loudness") => "analyse",
                (false, _) => "render",
            };
            JobView { id: &j.id, kind: j.kind, key: &j.key, action, prompt, seed, size, file }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::json!({"pack": pack_dir, "out": out, "backend": args.backend, "jobs": views}));
    } else {
        println!("{:<8} {:<48} {:<10} detail", "action", "job", "size");
        for v in &views {
            let detail = v.prompt.or(v.file).unwrap_or("");
            let detail: String = if detail.chars().count() > 70 {
                detail.chars().take(69).chain(['…']).collect()
            } else {
                detail.into()
            };
            println!("{:<8} {:<48} {:<10} {}", v.action, v.id, v.size.as_deref().unwrap_or("-"), detail);
        }
        let todo = views.iter().filter(|v| v.action != "skip").count();
        println!(
            "{} job(s), {} to run, {} up to date; output {}",
            views.len(),
            todo,
            views.len() - todo,
            out.display()
        );
    }
}

/// indicatif bars: the whole run, and the steps of the image being rendered.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    current: ProgressBar,
}

impl Bars {
    fn new(show: bool, total: usize) -> Bars {
        let multi = MultiProgress::new();
        if !show {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} jobs, {elapsed} (ETA {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        overall.set_prefix("pack");
        let current = multi.add(ProgressBar::new(1));
        current.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} steps  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        current.set_prefix("job");
        overall.enable_steady_tick(Duration::from_millis(200));
        Bars { multi, overall, current }
    }

    fn done(&self) {
        self.current.finish_and_clear();
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Progress for Bars {
    fn job_started(&self, id: &str, steps: u32) {
        self.current.set_length(steps as u64);
        self.current.set_position(0);
        self.current.set_message(id.to_owned());
    }

    fn job_step(&self, _id: &str, step: u32, _steps: u32) {
        self.current.set_position(step as u64);
    }

    fn job_finished(&self, outcome: &Outcome) {
        self.overall.inc(1);
        if let Outcome::Failed { id, reason } = outcome {
            self.multi.suspend(|| eprintln!("failed: {id}: {reason}"));
        }
    }
}
