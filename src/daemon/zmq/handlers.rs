//! What the worker does with each message: renders through the render
//! lane, audio matched from the pack's library (embedding similarity when
//! the model is there, keywords otherwise), and the reply frames.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::generator::{self, Choice};
use super::messages::{
    error_result, failed, file_uri, frame, render_request, safe_id, AudioMatch, AudioMetadata, AudioReady, ImageReady,
};
use super::{new_conn, WorkerState};
use crate::audio::matching::{self, AudioCandidate};
use crate::daemon::scheduler::{RenderLane, Waiter};
use crate::daemon::wire::{Code, WireError};
use crate::render::pipeline::{prepare, Prepared, PreparedJob, RenderOutcome};

impl WorkerState {
    /// Answers one frame. Parsing (a frame may hold two inline images),
    /// pack reading, file linking and audio decoding run on the blocking
    /// pool, so socket clients never wait behind a ZeroMQ request.
    pub(super) async fn handle(&self, frame: Vec<u8>) -> Option<Value> {
        let bytes = frame.len();
        let msg: Map<String, Value> = match blocking(move || serde_json::from_slice::<Value>(&frame)).await {
            Some(Ok(Value::Object(m))) => m,
            _ => {
                tracing::warn!(bytes, "dropped a frame that is not a JSON object");
                return None;
            }
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        let span = tracing::info_span!("zmq", kind = %kind, request_id = ?msg.get("request_id"));
        self.answer(&kind, &msg).instrument(span).await
    }

    async fn answer(&self, kind: &str, msg: &Map<String, Value>) -> Option<Value> {
        match kind {
            "RenderRequest" => Some(self.render(msg).await),
            "AudioRenderRequest" => Some(self.audio(msg).await),
            "" => {
                tracing::warn!("dropped a frame without 'type'");
                None
            }
            other => {
                tracing::warn!(kind = other, "dropped a message of an unknown type");
                None
            }
        }
    }

    async fn render(&self, msg: &Map<String, Value>) -> Value {
        let id = msg.get("request_id").cloned().unwrap_or(Value::Null);
        let prompt_v = msg.get("prompt").cloned().unwrap_or(Value::Null);
        let fail = |code, m: String| error_result("ImageReady", &id, &prompt_v, code, m);
        let request = match render_request(msg) {
            Ok(r) => r,
            Err(e) => return fail(e.code, e.message),
        };
        let (lane, mut warnings) =
            match generator::choose(msg.get("generator"), self.ctx.render.backend_name, &self.cfg.generators) {
                Ok(Choice::Configured(warning)) => (self.ctx.render.clone(), warning.into_iter().collect::<Vec<_>>()),
                Ok(Choice::Other(name)) => match self.lane_for(name) {
                    Ok(lane) => (lane, Vec::new()),
                    Err(m) => return fail(Code::GenerationFailed, m),
                },
                Err(e) => return fail(e.code, e.message),
            };
        // The same pipeline entry as the socket's `render`, on the lane's tier table.
        let mut request = request;
        request.fidelity = lane.fidelity;
        if !self.cfg.loras.is_empty() {
            // --zmq-lora fixes the stack: no pack LoRAs, no triggers.
            request.loras = Some(Vec::new());
        }
        let styles = self.ctx.styles.clone();
        let prepared = match blocking(move || prepare(&request, &styles)).await {
            Some(Ok(Prepared::Job(job))) => *job,
            Some(Ok(Prepared::Skipped { reason })) => {
                return fail(Code::GenerationFailed, format!("skipped ({reason})"))
            }
            Some(Err(e)) => {
                let e = WireError::from(e);
                return fail(e.code, e.message);
            }
            None => return fail(Code::GenerationFailed, "internal error: the request could not be prepared".into()),
        };
        if msg.get("clear_queue").and_then(Value::as_bool) == Some(true) {
            // Retire the handle queued work hangs off: the lane drops those
            // waiters before they start, and their tasks answer CANCELLED.
            let old = std::mem::replace(&mut *self.conn.lock().unwrap_or_else(|p| p.into_inner()), new_conn());
            old.gone.store(true, Ordering::Release);
            self.ctx.render.prune_gone();
        }
        if self.ctx.is_shutting_down() {
            return fail(Code::GenerationFailed, "daemon shutting down".into());
        }
        let mut prepared = prepared;
        lane.fit_variant(&mut prepared);
        if !self.cfg.loras.is_empty() {
            prepared.job.loras = self.cfg.loras.clone();
        }
        crate::render::lora::drop_on_weightless(&mut prepared.job, lane.backend_name);
        // img2img from the message's reference_image; a refused image is a
        // warning and the render goes on without it (conditioning.md §3.5).
        let mut conditioned = Vec::new();
        if !prepared.job.loras.is_empty() {
            conditioned.push("lora");
        }
        if let Some(src) = msg.get("reference_image").filter(|v| !v.is_null()).cloned() {
            // The weight-free backends keep the image beside the output only.
            if !matches!(lane.backend_name, "sketch" | "null") {
                let strength = match msg.get("strength") {
                    None | Some(Value::Null) => Ok(0.6),
                    Some(v) => crate::render::init::check_strength(v.as_f64().unwrap_or(f64::NAN)),
                };
                match strength {
                    Err(m) => warnings.push(m),
                    Ok(strength) => {
                        let attached = crate::daemon::inputs::attach_off_thread(
                            prepared.job.clone(),
                            self.ctx.config.input_roots(),
                            move |j, roots| crate::render::init::attach(j, &src, strength, roots),
                        )
                        .await;
                        match attached {
                            Ok(job) => {
                                prepared.job = job;
                                conditioned.push("img2img");
                            }
                            // An unreadable image is reported once, by the
                            // store beside the output.
                            Err(Some(crate::render::init::AttachError::Unreadable)) | Err(None) => {}
                            Err(Some(e)) => warnings.push(e.to_string()),
                        }
                    }
                }
            }
        }
        // depth_map drives a depth render where the lane has a depth model;
        // otherwise the render goes on plain, and says so.
        if let Some(src) = msg.get("depth_map").filter(|v| !v.is_null()).cloned() {
            match lane.depth_model.clone() {
                None => warnings
                    .push("depth_map: no depth model (FLUX.1-Depth-dev not found); rendered without depth".into()),
                Some(model) => {
                    let depth = crate::render::control::DepthSettings {
                        model,
                        guidance: lane.depth_guidance,
                        invert: msg.get("depth_invert").and_then(Value::as_bool).unwrap_or(false),
                    };
                    let attached = crate::daemon::inputs::attach_off_thread(
                        prepared.job.clone(),
                        self.ctx.config.input_roots(),
                        move |j, roots| crate::render::control::attach_depth(j, &src, &depth, roots),
                    )
                    .await;
                    // An unreadable map is reported once, by the store beside the output.
                    if let Ok(job) = attached {
                        prepared.job = job;
                        conditioned.push("depth");
                    }
                }
            }
        }
        let key = crate::render::output::render_key(lane.backend_name, lane.model.as_deref(), &prepared.job);
        let out_dir = self.ctx.config.output_dir().to_path_buf();
        let planned = crate::render::output::output_path(&out_dir, lane.backend_name, &key);
        let dst = out_dir.join("zmq").join(format!(
            "{}_{}.png",
            safe_id(id.as_str().unwrap_or("")),
            &key[..12.min(key.len())]
        ));
        // Queued, running and uploading results keep their files.
        let _pins = self.ctx.cache.as_ref().map(|c| (c.pin(&planned), c.pin(&dst)));
        let _pending = self.ctx.uploader.as_ref().map(|_| crate::daemon::publish::Pending::enter(&self.ctx.publishing));
        let prompt = prepared.job.positive_prompt.clone();
        let outcome = match self.submit(&lane, &id, prepared).await {
            Ok(v) => v,
            Err(e) => return fail(e.code, e.message),
        };
        let src = PathBuf::from(&outcome.image_path);
        let mut ready = ImageReady {
            kind: "ImageReady",
            request_id: id.clone(),
            prompt,
            uri: None,
            era: msg.get("era").filter(|v| !v.is_null()).cloned(),
            biome: msg.get("biome").filter(|v| !v.is_null()).cloned(),
            width: outcome.width,
            height: outcome.height,
            seed: outcome.seed,
            backend: outcome.backend.clone(),
            elapsed_ms: outcome.elapsed_ms,
            cached: outcome.cached,
            r2_key: None,
            local_uri: None,
            upload_error: None,
            image_data: None,
            format: None,
            warnings: Vec::new(),
            conditioned,
        };
        if !(src.as_os_str() == "/dev/null" || src.as_os_str().is_empty()) {
            if let Some(cache) = &self.ctx.cache {
                if outcome.cached {
                    cache.touch(&src);
                } else {
                    cache.kick();
                }
            }
            let (from, to) = (src.clone(), dst.clone());
            let linked = blocking(move || link_atomic(&from, &to))
                .await
                .unwrap_or_else(|| Err(std::io::Error::other("the link task failed")));
            if let Err(e) = linked {
                return fail(Code::GenerationFailed, format!("cannot write {}: {e}", dst.display()));
            }
            warnings.extend(self.store_inputs(msg, &dst).await);
            ready.uri = Some(file_uri(&dst));
            if let Err(e) = self.deliver(&id, &dst, &mut ready, &mut warnings).await {
                return failed("ImageReady", &id, &prompt_v, e);
            }
        }
        ready.warnings = warnings;
        frame(&ready)
    }

    /// Uploads the result and inlines its bytes, as configured
    /// (remote-and-telemetry.md §2.1–§2.2). An error fails the result.
    async fn deliver(
        &self,
        id: &Value,
        file: &Path,
        ready: &mut ImageReady,
        warnings: &mut Vec<String>,
    ) -> Result<(), WireError> {
        let uploader = self.ctx.uploader.as_ref();
        if uploader.is_none() && self.cfg.image_data_max.is_none() {
            return Ok(());
        }
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|_| WireError::new(Code::GenerationFailed, "the rendered file could not be read"))?;
        if let Some(max) = self.cfg.image_data_max {
            if bytes.len() > max {
                warnings.push(format!("image_data: omitted, PNG is {} bytes (limit {max})", bytes.len()));
            } else {
                use base64::Engine;
                ready.image_data = Some(base64::engine::general_purpose::STANDARD.encode(&bytes));
                ready.format = Some("png");
            }
        }
        let Some(uploader) = uploader else { return Ok(()) };
        let session = crate::store::segment(&self.cfg.session);
        let key = crate::store::object_key("zmq", &session, "scenes", &crate::store::sha256_hex(&bytes));
        match uploader.put_png(&key, bytes).await {
            Ok(_) => {
                ready.local_uri = ready.uri.take();
                ready.uri = Some(uploader.public_url(&key).unwrap_or_else(|| file_uri(file)));
                ready.r2_key = Some(key);
                Ok(())
            }
            Err(e) => {
                let fields = serde_json::json!({"tier": "scene_illustration", "r2_key": key, "request_id": id});
                ready.upload_error = Some(crate::daemon::publish::failed_upload(&self.ctx, uploader, e, fields)?);
                Ok(())
            }
        }
    }

    /// The lane of another enabled backend, built on first use and kept.
    fn lane_for(&self, name: &'static str) -> Result<Arc<RenderLane>, String> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get(name) {
            return Ok(lane.clone());
        }
        if self.ctx.is_shutting_down() {
            return Err("daemon shutting down".into());
        }
        let options = self.cfg.flux.clone();
        let backend = crate::render::backend_by_name(name, &options).map_err(|e| {
            tracing::warn!(backend = name, error = %e, "cannot build the generator's backend");
            format!("generator '{name}' could not be started on this worker")
        })?;
        let rebuild: crate::daemon::scheduler::BackendFactory =
            Box::new(move || crate::render::backend_by_name(name, &options).map_err(|e| e.to_string()));
        let config = &self.ctx.config;
        let watchdog = config
            .render_timeout
            .map(|timeout| crate::daemon::scheduler::Watchdog { timeout, grace: config.render_timeout_grace });
        let lane = RenderLane::start(
            backend,
            Some(rebuild),
            config.output_dir().to_path_buf(),
            None,
            watchdog,
            self.ctx.shutdown_tx.clone(),
            self.ctx.watcher.clone(),
        );
        self.ctx.extra_lanes.lock().unwrap_or_else(|e| e.into_inner()).push(lane.clone());
        lanes.insert(name, lane.clone());
        tracing::info!(backend = name, "started a render lane for a ZeroMQ generator");
        Ok(lane)
    }

    /// Queues a render on a lane and waits for its result.
    async fn submit(&self, lane: &RenderLane, id: &Value, prepared: PreparedJob) -> Result<RenderOutcome, WireError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (tx, rx) = oneshot::channel();
        lane.submit_render(
            prepared,
            self.cfg.priority,
            self.ctx.next_arrival(),
            Waiter::new(id.clone(), conn, false, tx),
        );
        let result = match rx.await {
            Ok(r) => r.result?,
            Err(_) => return Err(WireError::new(Code::Cancelled, "dropped by clear_queue before it started")),
        };
        serde_json::from_value(result)
            .map_err(|e| WireError::new(Code::GenerationFailed, format!("internal error: {e}")))
    }

    /// Stores the request's depth map and reference image beside the
    /// output; each refusal is a warning for the reply.
    async fn store_inputs(&self, msg: &Map<String, Value>, dst: &Path) -> Vec<String> {
        let mut warnings = Vec::new();
        for (field, suffix) in [("depth_map", "depth"), ("reference_image", "ref")] {
            if let Some(src) = msg.get(field).filter(|v| !v.is_null()) {
                let stem = dst.with_extension("");
                let to = PathBuf::from(format!("{}.{suffix}.png", stem.display()));
                if let Err(w) = self.store_image(field, src.clone(), to.clone()).await {
                    warnings.push(w);
                } else {
                    tracing::info!(file = %to.display(), "{field} stored beside the output (no current backend conditions on it)");
                }
            }
        }
        warnings
    }

    /// Decodes an ImageSource and stores it re-encoded as PNG at `to`, off
    /// the async threads. A refusal, whatever its cause, is the same one
    /// line for the controller (the cause goes to the local log only).
    async fn store_image(&self, field: &str, src: Value, to: PathBuf) -> Result<(), String> {
        let input_dir = self.ctx.config.input_dir.clone();
        let field_owned = field.to_owned();
        let work = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let img = crate::render::input::load(&src, input_dir.as_deref()).map_err(|e| {
                tracing::debug!(field = %field_owned, reason = %e, "image input refused");
                crate::render::input::InputError::public_message(&field_owned)
            })?;
            crate::render::input::store_png(&img, &to).map_err(|e| {
                tracing::warn!(file = %to.display(), error = %e, "cannot store an image input");
                format!("{field_owned}: cannot be stored")
            })
        });
        work.await.unwrap_or_else(|_| Err(crate::render::input::InputError::public_message(field)))
    }

    async fn embed(&self, text: &str) -> Result<Vec<f64>, WireError> {
        let (tx, rx) = oneshot::channel();
        self.ctx.embed.submit_embed(text.to_owned(), Waiter::new(Value::Null, new_conn(), false, tx));
        let r = rx.await.map_err(|_| WireError::new(Code::EmbedFailed, "embed lane closed"))?.result?;
        let reply: crate::daemon::wire::Embedding =
            serde_json::from_value(r).map_err(|_| WireError::new(Code::EmbedFailed, "no embedding in the reply"))?;
        Ok(reply.embedding.into_iter().map(f64::from).collect())
    }

    async fn audio(&self, msg: &Map<String, Value>) -> Value {
        let id = msg.get("request_id").cloned().unwrap_or(Value::Null);
        let prompt_v = msg.get("prompt").cloned().unwrap_or(Value::Null);
        let fail = |code, m: String| error_result("AudioReady", &id, &prompt_v, code, m);
        let prompt = msg.get("prompt").and_then(Value::as_str).unwrap_or("").to_owned();
        if prompt.chars().filter(|c| !c.is_whitespace()).count() < 3 {
            return fail(Code::NoAudioMatch, "the prompt is too short to match (fewer than 3 characters)".into());
        }
        let (library, pack, world) = (self.library.clone(), self.cfg.pack.clone(), self.cfg.world.clone());
        let cands = match blocking(move || candidates(&library, &pack, world.as_deref())).await {
            Some(Ok(c)) if !c.is_empty() => c,
            Some(Ok(_)) => return fail(Code::NoAudioMatch, "the pack's audio library is empty".into()),
            Some(Err(e)) => return fail(Code::NoAudioMatch, format!("no audio library: {e}")),
            None => return fail(Code::NoAudioMatch, "no audio library: the loading task failed".into()),
        };
        // Embedding similarity when the model is available, else keywords.
        let mut method = "embedding";
        let mut scores = Vec::with_capacity(cands.len());
        match self.embed(&prompt).await {
            Ok(q) => {
                for c in &cands {
                    match self.embed(&c.text).await {
                        Ok(v) => scores.push(q.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>()),
                        Err(_) => {
                            scores.clear();
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::info!("no embedding model ({}); matching by keywords", e.message),
        }
        if scores.len() != cands.len() {
            method = "keyword";
            scores = matching::keyword_scores(&prompt, &cands);
        }
        let mut best = 0;
        for (i, s) in scores.iter().enumerate() {
            if *s > scores[best] {
                best = i;
            }
        }
        let c = &cands[best];
        let path = c.path.clone();
        let duration = blocking(move || matching::duration_s(&path)).await.flatten();
        frame(&AudioReady {
            kind: "AudioReady",
            request_id: id,
            uri: file_uri(&c.path),
            prompt,
            duration_s: duration.map(|d| (d * 100.0).round() / 100.0),
            is_loop: c.variation_type.as_deref() == Some("ambient"),
            metadata: AudioMetadata {
                similarity: (scores[best] * 10_000.0).round() / 10_000.0,
                cache_hit: true,
                cache_type: "library",
                method,
                model: (method == "embedding").then_some(crate::embed::MODEL_NAME),
                matched: AudioMatch {
                    title: c.title.clone(),
                    mood: c.mood.clone(),
                    variation_type: c.variation_type.clone(),
                    path: c.raw.clone(),
                },
                requested_duration_s: msg.get("duration_s").cloned().unwrap_or(Value::Null),
            },
        })
    }
}

/// The pack's audio library, loaded once into `cache`.
fn candidates(
    cache: &Mutex<Option<Vec<AudioCandidate>>>,
    pack: &Path,
    world: Option<&str>,
) -> Result<Vec<AudioCandidate>, crate::pack::PackError> {
    let mut lib = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = lib.as_ref() {
        return Ok(c.clone());
    }
    let out = matching::library(pack, world)?;
    *lib = Some(out.clone());
    Ok(out)
}

/// Runs `f` on the blocking pool; `None` if it panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Hard-links (or copies) `src` to `dst` atomically.
fn link_atomic(src: &Path, dst: &Path) -> std::io::Result<()> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp =
        dir.join(format!(".{}.tmp", dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(src, &tmp).is_err() {
        std::fs::copy(src, &tmp)?;
    }
    std::fs::rename(&tmp, dst)
}
