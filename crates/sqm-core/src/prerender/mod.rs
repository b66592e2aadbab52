//! Batch work over a whole genre pack: every portrait, landscape and cover
//! the pack implies, and a loudness analysis of every audio file, written
//! under one output folder with a `manifest.json`.
//!
//! Runs are incremental and resumable. Every job has a content key (the
//! render key of its composed request, or the hash of its audio bytes); a
//! job whose key matches the manifest and whose file is intact is skipped.
//! Files are written atomically and the manifest is rewritten (atomically)
//! after every finished job, so an interrupted run loses at most the jobs
//! that were running. A lock file keeps two runs out of one folder.

mod error;
pub mod loudness;
pub mod plan;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pack::paths;
use crate::render::output::{parameters_text, write_png};
use crate::render::{Backend, RenderError};
pub use error::PrerenderError;
pub use loudness::Loudness;
pub use plan::{plan, Job, Work};

/// The manifest file name inside the output folder.
pub const MANIFEST: &str = "manifest.json";
const LOCK: &str = ".prerender.lock";

/// One finished job in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: String,
    pub key: String,
    /// The output file relative to the output folder (images), or the audio
    /// file relative to the pack (loudness).
    pub file: String,
    /// SHA-256 of the output PNG, or of the audio file.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness: Option<Loudness>,
}

/// `manifest.json`: job id → entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub genre: String,
    pub jobs: BTreeMap<String, Entry>,
}

impl Manifest {
    /// Reads `<out>/manifest.json`; a missing file is an empty manifest. The
    /// file is untrusted input (a pack may ship one): it must be a regular
    /// file inside `out` of at most [`paths::MANIFEST_CAP`] bytes.
    pub fn load(out: &Path) -> Result<Manifest, PrerenderError> {
        let shown = out.join(MANIFEST);
        let empty = || Manifest { version: 1, ..Default::default() };
        let root = match paths::Root::new(out) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty()),
            Err(source) => return Err(PrerenderError::Folder { path: out.to_path_buf(), source }),
        };
        match root.read(Path::new(MANIFEST), paths::MANIFEST_CAP) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| PrerenderError::Manifest { path: shown, source })
            }
            Err(e) if e.is_not_found() => Ok(empty()),
            Err(source) => Err(PrerenderError::Contained { path: out.to_path_buf(), source }),
        }
    }

    /// Reads the manifest of `out` for a run, trusting none of it: a corrupt
    /// or unreadable manifest is set aside as `manifest.json.corrupt-<unix
    /// seconds>` (only when `set_aside`; a dry run changes nothing) and the
    /// run starts from an empty one; entries whose image file would leave
    /// `out` are dropped (never read, never deleted). Returns the manifest
    /// and the warnings to show.
    pub fn load_untrusted(out: &Path, set_aside: bool) -> (Manifest, Vec<String>) {
        let mut warnings = Vec::new();
        let mut manifest = match Manifest::load(out) {
            Ok(m) => m,
            Err(e) => {
                if set_aside {
                    let ts = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let aside = out.join(format!("{MANIFEST}.corrupt-{ts}"));
                    match std::fs::rename(out.join(MANIFEST), &aside) {
                        Ok(()) => warnings.push(format!("{e}; set aside as {} and rebuilt", aside.display())),
                        Err(r) => warnings.push(format!("{e}; cannot set it aside ({r}); rebuilding")),
                    }
                } else {
                    warnings.push(format!("{e}; treated as empty"));
                }
                Manifest { version: 1, ..Default::default() }
            }
        };
        let root = paths::Root::new(out).ok();
        let before = manifest.jobs.len();
        manifest.jobs.retain(|_, e| e.kind == "loudness" || entry_file_inside(root.as_ref(), &e.file));
        let dropped = before - manifest.jobs.len();
        if dropped > 0 {
            warnings.push(format!(
                "{dropped} manifest entr{} name a file outside {}; ignored (never read or deleted)",
                if dropped == 1 { "y" } else { "ies" },
                out.display()
            ));
        }
        (manifest, warnings)
    }

    /// Writes atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), PrerenderError> {
        let mut text = serde_json::to_vec_pretty(self).expect("manifest serializes");
        text.push(b'\n');
        let name = crate::atomic::TempName { prefix: ".manifest-", suffix: "" };
        crate::atomic::write_with(path, name, false, |f| f.write_all(&text))
            .map_err(|source| PrerenderError::Write { path: path.to_path_buf(), source })
    }

    /// The playback gain (dB) the manifest gives an audio file, by its path
    /// relative to the pack.
    pub fn gain_db(&self, rel: &str) -> Option<f64> {
        self.jobs.get(&format!("loudness/{rel}")).and_then(|e| e.loudness.as_ref()).map(|l| l.gain_db)
    }
}

/// The default output folder: `<pack>/.cache/prerender`.
pub fn default_out(pack_dir: &Path) -> PathBuf {
    pack_dir.join(".cache").join("prerender")
}

/// Holds the output folder's lock file for as long as it lives.
pub struct OutputLock {
    path: PathBuf,
}

impl OutputLock {
    /// Creates `<out>/.prerender.lock` with our pid. A lock whose process is
    /// gone is taken over; a live one is refused.
    pub fn acquire(out: &Path) -> Result<OutputLock, PrerenderError> {
        std::fs::create_dir_all(out).map_err(|source| PrerenderError::Create { path: out.to_path_buf(), source })?;
        let path = out.join(LOCK);
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(OutputLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<i32>().ok());
                    // SAFETY: kill with signal 0 only checks that the process exists.
                    let alive = pid.is_some_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0);
                    if alive {
                        return Err(PrerenderError::Locked {
                            out: out.to_path_buf(),
                            pid: pid.unwrap_or(0),
                            lock: path,
                        });
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(source) => return Err(PrerenderError::Lock { path: out.to_path_buf(), source }),
            }
        }
        Err(PrerenderError::LockLost(path))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Done { id: String, ms: u64 },
    Skipped { id: String },
    Failed { id: String, reason: String },
}

/// Totals of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub outcomes: Vec<Outcome>,
    /// The run was stopped by `stop` before every job ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Progress events for a UI.
pub trait Progress: Sync {
    fn job_started(&self, _id: &str, _steps: u32) {}
    fn job_step(&self, _id: &str, _step: u32, _steps: u32) {}
    fn job_finished(&self, _outcome: &Outcome) {}
}

/// No progress display.
pub struct Quiet;
impl Progress for Quiet {}

/// Where an image job's file goes: `<out>/<id>.png`.
pub fn image_path(out: &Path, id: &str) -> PathBuf {
    out.join(format!("{id}.png"))
}

/// True when an image entry's `file` names a place inside `out`: relative,
/// never climbing out, and (if it exists) not a symlink leaving `out`.
fn entry_file_inside(root: Option<&paths::Root>, file: &str) -> bool {
    if !paths::lexically_inside(Path::new(file)) {
        return false;
    }
    !matches!(root.map(|r| r.resolve(Path::new(file))), Some(Err(paths::PathError::Escapes { .. })))
}

/// SHA-256 of a file this run wrote itself.
fn sha256_file(path: &Path) -> Option<String> {
    let (file, len) = paths::open_regular(path).ok()?;
    let bytes = paths::read_capped(file, len, paths::IMAGE_CAP).ok()?;
    Some(format!("{:x}", Sha256::digest(&bytes)))
}

/// Whether the manifest already holds this job's result, intact. The
/// entry's file is read only inside `out`, only if regular and at most
/// [`paths::IMAGE_CAP`] bytes.
pub fn is_current(job: &Job, manifest: &Manifest, out: &Path) -> bool {
    let Some(e) = manifest.jobs.get(&job.id) else { return false };
    if e.key != job.key {
        return false;
    }
    match &job.work {
        Work::Image(_) => paths::Root::new(out)
            .ok()
            .and_then(|root| root.read(Path::new(&e.file), paths::IMAGE_CAP).ok())
            .is_some_and(|bytes| format!("{:x}", Sha256::digest(&bytes)) == e.hash),
        Work::Loudness { .. } => e.loudness.is_some(),
    }
}

/// Removes what a crashed or killed run left: sqm's own temp files
/// (`.render-*.png.tmp`, `.manifest-*`) inside `out`, nothing else. Run only
/// while holding the output lock. Returns how many were removed.
pub(crate) fn remove_stale_temp_files(out: &Path) -> usize {
    let Ok(root) = paths::Root::new(out) else { return 0 };
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(out).follow_links(false).max_depth(8).into_iter().filter_map(|e| e.ok()) {
        if !entry.file_type().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        let ours = (name.starts_with(".render-") && name.ends_with(".png.tmp"))
            || (name.starts_with(".manifest-") && entry.depth() == 1);
        if !ours {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(out) {
            if root.remove_file(rel).unwrap_or(false) {
                removed += 1;
            }
        }
    }
    removed
}

/// Makes a fresh backend for a worker thread.
pub(crate) type BackendFactory<'a> = &'a (dyn Fn() -> Result<Box<dyn Backend>, RenderError> + Sync);

/// Runs `jobs` into `out`. Image jobs run on `parallel` workers when the
/// backend is CPU-bound and may be duplicated (`parallel > 1`), else one at
/// a time on one backend; loudness jobs always run in parallel. The
/// manifest is saved after every job. When `stop` becomes true no new job
/// starts and running renders are cancelled; what finished is saved.
/// Returns the summary.
pub fn execute(
    jobs: &[Job],
    genre: &str,
    out: &Path,
    make_backend: BackendFactory,
    parallel: usize,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<Summary, PrerenderError> {
    let run = Run::open(out, genre, progress, stop)?;
    let (images, audio): (Vec<&Job>, Vec<&Job>) = jobs.iter().partition(|j| matches!(j.work, Work::Image(_)));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(parallel.max(1)).build()?;
    let snapshot = run.manifest.lock().expect("manifest lock").clone();
    let pending = |j: &&Job| {
        let current = is_current(j, &snapshot, out);
        if current {
            run.record(Outcome::Skipped { id: j.id.clone() });
        }
        !current
    };
    let images: Vec<&Job> = images.into_iter().filter(pending).collect();
    let audio: Vec<&Job> = audio.into_iter().filter(pending).collect();
    pool.install(|| -> Result<(), PrerenderError> {
        let workers = parallel.max(1);
        let image_part = || -> Result<(), PrerenderError> {
            if workers == 1 {
                run.images(&images, make_backend)
            } else {
                // Deal the jobs round-robin so each worker keeps one backend.
                let lanes: Vec<Vec<&Job>> =
                    (0..workers).map(|w| images.iter().skip(w).step_by(workers).copied().collect()).collect();
                lanes
                    .par_iter()
                    .map(|lane| run.images(lane, make_backend))
                    .collect::<Result<Vec<()>, PrerenderError>>()?;
                Ok(())
            }
        };
        let audio_part = || -> Result<(), PrerenderError> {
            audio
                .par_iter()
                .map(|job| {
                    if run.stopped() {
                        return Ok(());
                    }
                    let (outcome, entry) = run_loudness(job, progress);
                    run.finish(outcome, entry)
                })
                .collect::<Result<Vec<()>, PrerenderError>>()?;
            Ok(())
        };
        let (a, b) = rayon::join(image_part, audio_part);
        a.and(b)
    })?;
    Ok(run.summary(jobs))
}

/// One `execute` in progress: the manifest and outcomes its workers share.
struct Run<'a> {
    out: &'a Path,
    out_root: paths::Root,
    manifest_path: PathBuf,
    manifest: Mutex<Manifest>,
    outcomes: Mutex<Vec<Outcome>>,
    progress: &'a dyn Progress,
    stop: &'a AtomicBool,
}

impl<'a> Run<'a> {
    /// Clears an interrupted run's temp files and loads the manifest
    /// (untrusted: escaping entries dropped, a corrupt one set aside).
    fn open(
        out: &'a Path,
        genre: &str,
        progress: &'a dyn Progress,
        stop: &'a AtomicBool,
    ) -> Result<Run<'a>, PrerenderError> {
        let stale = remove_stale_temp_files(out);
        if stale > 0 {
            tracing::warn!("removed {stale} temp file(s) left by an interrupted run in {}", out.display());
        }
        let (mut manifest, warnings) = Manifest::load_untrusted(out, true);
        for w in warnings {
            tracing::warn!("{w}");
        }
        let out_root =
            paths::Root::new(out).map_err(|source| PrerenderError::Folder { path: out.to_path_buf(), source })?;
        manifest.version = 1;
        manifest.genre = genre.to_owned();
        Ok(Run {
            out,
            out_root,
            manifest_path: out.join(MANIFEST),
            manifest: Mutex::new(manifest),
            outcomes: Mutex::new(Vec::new()),
            progress,
            stop,
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Reports an outcome and keeps it for the summary.
    fn record(&self, outcome: Outcome) {
        self.progress.job_finished(&outcome);
        self.outcomes.lock().expect("outcomes lock").push(outcome);
    }

    /// Records a finished job and saves its manifest entry; the old file
    /// of a re-rendered job goes, unless another job uses it.
    fn finish(&self, outcome: Outcome, entry: Option<(String, Entry)>) -> Result<(), PrerenderError> {
        self.progress.job_finished(&outcome);
        if let Some((id, entry)) = entry {
            let mut m = self.manifest.lock().expect("manifest lock");
            if let Some(old) = m.jobs.get(&id) {
                if old.kind != "loudness" && old.file != entry.file {
                    let shared = m.jobs.iter().any(|(k, e)| k != &id && e.file == old.file);
                    if !shared {
                        if let Err(e) = self.out_root.remove_file(Path::new(&old.file)) {
                            tracing::warn!("old output not removed: {e}");
                        }
                    }
                }
            }
            m.jobs.insert(id, entry);
            m.save(&self.manifest_path)?;
        }
        self.outcomes.lock().expect("outcomes lock").push(outcome);
        Ok(())
    }

    /// Renders a worker's share of the image jobs on one backend, made on
    /// the first job.
    fn images(&self, chunk: &[&Job], make_backend: BackendFactory) -> Result<(), PrerenderError> {
        let mut backend: Option<Box<dyn Backend>> = None;
        for job in chunk {
            if self.stopped() {
                break;
            }
            let b = match &mut backend {
                Some(b) => b,
                None => match make_backend() {
                    Ok(b) => backend.insert(b),
                    Err(e) => {
                        self.finish(Outcome::Failed { id: job.id.clone(), reason: e.to_string() }, None)?;
                        continue;
                    }
                },
            };
            let (outcome, entry) = run_image(job, b.as_mut(), self.out, self.progress, &|| self.stopped());
            self.finish(outcome, entry)?;
        }
        Ok(())
    }

    /// The outcomes in job order, counted.
    fn summary(self, jobs: &[Job]) -> Summary {
        let interrupted = self.stopped();
        let mut outcomes = self.outcomes.into_inner().expect("outcomes lock");
        let order: BTreeMap<&str, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id.as_str(), i)).collect();
        let id_of = |o: &Outcome| match o {
            Outcome::Done { id, .. } | Outcome::Skipped { id } | Outcome::Failed { id, .. } => id.clone(),
        };
        outcomes.sort_by_key(|o| order.get(id_of(o).as_str()).copied().unwrap_or(usize::MAX));
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        Summary {
            done: count(|o| matches!(o, Outcome::Done { .. })),
            skipped: count(|o| matches!(o, Outcome::Skipped { .. })),
            failed: count(|o| matches!(o, Outcome::Failed { .. })),
            outcomes,
            interrupted,
        }
    }
}

fn run_image(
    job: &Job,
    backend: &mut dyn Backend,
    out: &Path,
    progress: &dyn Progress,
    stopped: &dyn Fn() -> bool,
) -> (Outcome, Option<(String, Entry)>) {
    let Work::Image(prepared) = &job.work else { unreachable!("image jobs only") };
    let started = std::time::Instant::now();
    let j = &prepared.job;
    progress.job_started(&job.id, j.steps);
    let fail = |reason: String| (Outcome::Failed { id: job.id.clone(), reason }, None);
    if let Err(e) = backend.load() {
        return fail(e.to_string());
    }
    let img = match backend.render(j, &mut |s, n| progress.job_step(&job.id, s, n), stopped) {
        Ok(Some(img)) => img,
        Ok(None) => return fail(format!("the {} backend writes no images", backend.name())),
        Err(e) => return fail(e.to_string()),
    };
    let path = image_path(out, &job.id);
    let model = backend.model_for(j).unwrap_or_else(|| backend.name().to_owned());
    let meta = serde_json::json!({"backend": backend.name(), "model": model, "job": j, "prerender_id": job.id});
    if let Err(e) = write_png(&path, &img, &parameters_text(j, &model), &meta.to_string()) {
        return fail(e.to_string());
    }
    let Some(hash) = sha256_file(&path) else { return fail(format!("cannot read back {}", path.display())) };
    let entry = Entry {
        kind: job.kind.to_owned(),
        key: job.key.clone(),
        file: format!("{}.png", job.id),
        hash,
        prompt: Some(j.positive_prompt.clone()),
        negative_prompt: Some(j.negative_prompt.clone()),
        seed: Some(j.seed),
        backend: Some(backend.name().to_owned()),
        model: Some(model),
        width: Some(img.width),
        height: Some(img.height),
        loudness: None,
    };
    (Outcome::Done { id: job.id.clone(), ms: started.elapsed().as_millis() as u64 }, Some((job.id.clone(), entry)))
}

fn run_loudness(job: &Job, progress: &dyn Progress) -> (Outcome, Option<(String, Entry)>) {
    let Work::Loudness { path, rel, target_lufs } = &job.work else { unreachable!("loudness jobs only") };
    let started = std::time::Instant::now();
    progress.job_started(&job.id, 1);
    let result = loudness::analyse(path, *target_lufs);
    progress.job_step(&job.id, 1, 1);
    match result {
        Ok(l) => {
            let entry = Entry {
                kind: "loudness".into(),
                key: job.key.clone(),
                file: rel.clone(),
                hash: sha256_file(path).unwrap_or_default(),
                prompt: None,
                negative_prompt: None,
                seed: None,
                backend: None,
                model: None,
                width: None,
                height: None,
                loudness: Some(l),
            };
            (
                Outcome::Done { id: job.id.clone(), ms: started.elapsed().as_millis() as u64 },
                Some((job.id.clone(), entry)),
            )
        }
        Err(reason) => (Outcome::Failed { id: job.id.clone(), reason: format!("{rel}: {reason}") }, None),
    }
}
