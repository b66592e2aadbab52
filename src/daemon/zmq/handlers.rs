//! What the worker does with each message: renders through the render
//! lane, audio matched from the pack's library (embedding similarity when
//! the model is there, keywords otherwise), and the reply frames.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::messages::{
    error_result, file_uri, frame, render_request, safe_id, AudioMatch, AudioMetadata, AudioReady, ImageReady,
};
use super::{new_conn, WorkerState};
use crate::audio::matching::{self, AudioCandidate};
use crate::daemon::scheduler::Waiter;
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
        // The same pipeline entry as the socket's `render`.
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
        if let Some(g) = msg.get("generator").and_then(Value::as_str) {
            if g != self.ctx.render.backend_name {
                tracing::warn!(
                    generator = g,
                    backend = self.ctx.render.backend_name,
                    "generator not served here; using the configured backend"
                );
            }
        }
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
        let key = crate::render::output::render_key(
            self.ctx.render.backend_name,
            self.ctx.render.model.as_deref(),
            &prepared.job,
        );
        let prompt = prepared.job.positive_prompt.clone();
        let outcome = match self.submit(&id, prepared).await {
            Ok(v) => v,
            Err(e) => return fail(e.code, e.message),
        };
        let mut warnings = Vec::new();
        let src = PathBuf::from(&outcome.image_path);
        let uri = if src.as_os_str() == "/dev/null" || src.as_os_str().is_empty() {
            None
        } else {
            let dst = self.ctx.config.output_dir().join("zmq").join(format!(
                "{}_{}.png",
                safe_id(id.as_str().unwrap_or("")),
                &key[..12.min(key.len())]
            ));
            let (from, to) = (src.clone(), dst.clone());
            let linked = blocking(move || link_atomic(&from, &to))
                .await
                .unwrap_or_else(|| Err(std::io::Error::other("the link task failed")));
            if let Err(e) = linked {
                return fail(Code::GenerationFailed, format!("cannot write {}: {e}", dst.display()));
            }
            warnings = self.store_inputs(msg, &dst).await;
            Some(file_uri(&dst))
        };
        let echo = |k: &str| msg.get(k).filter(|v| !v.is_null()).cloned();
        frame(&ImageReady {
            kind: "ImageReady",
            request_id: id.clone(),
            prompt,
            uri,
            era: echo("era"),
            biome: echo("biome"),
            width: outcome.width,
            height: outcome.height,
            seed: outcome.seed,
            backend: outcome.backend,
            elapsed_ms: outcome.elapsed_ms,
            cached: outcome.cached,
            warnings,
        })
    }

    /// Queues a render on the lane and waits for its result.
    async fn submit(&self, id: &Value, prepared: PreparedJob) -> Result<RenderOutcome, WireError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (tx, rx) = oneshot::channel();
        self.ctx.render.submit_render(
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
