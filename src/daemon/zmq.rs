//! ZeroMQ worker mode: a drop-in render worker for a controller that
//! PUSHes `RenderRequest`/`AudioRenderRequest` JSON frames and PULLs
//! `ImageReady`/`AudioReady` results (the experimance image server
//! protocol).
//!
//! Threads: libzmq sockets are `Send` but not `Sync`, so the PULL (and
//! optional SUB) socket lives on a receiver thread and the PUSH socket on a
//! sender thread; requests run as tokio tasks through the same render lane
//! and embed lane as socket requests. The receiver takes a new frame only
//! while fewer than two of its requests are queued or running, so a busy
//! worker's pipe fills and the controller's PUSH moves on to idle peers.
//! Results are sent without blocking; while the controller is away they
//! wait in memory (at most 1000, oldest dropped first) and go out once it
//! is back. libzmq reconnects on its own.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use super::scheduler::{ConnHandle, Waiter};
use super::state::Ctx;
use super::wire::Priority;
use super::wire::{Code, WireError};
use crate::interpret::Tier;
use crate::pack::model::Pack;
use crate::prompt::TierSpec;
use crate::render::pipeline::PreparedJob;
use crate::render::RenderJob;

/// Worker settings (`sqm serve --zmq …`).
#[derive(Clone, Debug)]
pub struct ZmqConfig {
    pub work: String,
    pub results: String,
    pub events: Option<String>,
    pub priority: Priority,
    /// The pack whose audio library answers `AudioRenderRequest`.
    pub pack: PathBuf,
    pub world: Option<String>,
}

/// Largest number of results kept while the controller is unreachable.
const MAX_PENDING: usize = 1000;
/// Largest ZeroMQ message accepted (two base64 images plus the request).
const MAX_MESSAGE: i64 = 192 * 1024 * 1024;
/// Requests of this worker queued or running at once.
const MAX_IN_FLIGHT: usize = 2;

fn check_addr(a: &str) -> Result<(), String> {
    if a.starts_with("tcp://") || a.starts_with("ipc://") || a.starts_with("inproc://") {
        Ok(())
    } else {
        Err(format!("ZeroMQ address '{a}' must start with tcp://, ipc:// or inproc://"))
    }
}

impl ZmqConfig {
    /// Checks the addresses before anything is started.
    pub fn check(&self) -> Result<(), String> {
        check_addr(&self.work)?;
        check_addr(&self.results)?;
        self.events.as_deref().map_or(Ok(()), check_addr)
    }
}

/// A running worker; [`ZmqWorker::stop`] ends it and flushes results.
pub struct ZmqWorker {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    results: mpsc::Sender<Value>,
}

impl ZmqWorker {
    /// Connects (never blocks on the peer) and starts receiving.
    pub fn start(cfg: ZmqConfig, ctx: Arc<Ctx>, rt: tokio::runtime::Handle) -> Result<ZmqWorker, String> {
        check_addr(&cfg.work)?;
        check_addr(&cfg.results)?;
        if let Some(e) = &cfg.events {
            check_addr(e)?;
        }
        let zctx = zmq::Context::new();
        let err = |what: &str, e: zmq::Error| format!("ZeroMQ {what}: {e}");
        let pull = zctx.socket(zmq::PULL).map_err(|e| err("socket", e))?;
        pull.set_rcvhwm(1).map_err(|e| err("RCVHWM", e))?;
        // A request carries at most two inline images (each capped by the
        // decoder at 64 MiB of bytes); anything larger is dropped by libzmq
        // before sqm allocates it.
        pull.set_maxmsgsize(MAX_MESSAGE).map_err(|e| err("MAXMSGSIZE", e))?;
        pull.set_reconnect_ivl(100).map_err(|e| err("RECONNECT_IVL", e))?;
        pull.set_reconnect_ivl_max(5000).map_err(|e| err("RECONNECT_IVL_MAX", e))?;
        pull.connect(&cfg.work).map_err(|e| err(&format!("connect {}", cfg.work), e))?;
        let push = zctx.socket(zmq::PUSH).map_err(|e| err("socket", e))?;
        push.set_reconnect_ivl(100).map_err(|e| err("RECONNECT_IVL", e))?;
        push.set_reconnect_ivl_max(5000).map_err(|e| err("RECONNECT_IVL_MAX", e))?;
        push.set_linger(2000).map_err(|e| err("LINGER", e))?;
        push.connect(&cfg.results).map_err(|e| err(&format!("connect {}", cfg.results), e))?;
        let sub = match &cfg.events {
            Some(addr) => {
                let s = zctx.socket(zmq::SUB).map_err(|e| err("socket", e))?;
                s.set_subscribe(b"RenderRequest").map_err(|e| err("SUBSCRIBE", e))?;
                s.set_maxmsgsize(MAX_MESSAGE).map_err(|e| err("MAXMSGSIZE", e))?;
                s.set_reconnect_ivl(100).map_err(|e| err("RECONNECT_IVL", e))?;
                s.connect(addr).map_err(|e| err(&format!("connect {addr}"), e))?;
                Some(s)
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (res_tx, res_rx) = mpsc::channel::<Value>();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let state =
            Arc::new(WorkerState { ctx, cfg: cfg.clone(), conn: Mutex::new(new_conn()), library: Mutex::new(None) });

        let sender = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sqm-zmq-send".into())
                .spawn(move || send_loop(push, res_rx, stop))
                .map_err(|e| e.to_string())?
        };
        let receiver = {
            let (stop, res_tx, in_flight, state) = (stop.clone(), res_tx.clone(), in_flight.clone(), state.clone());
            std::thread::Builder::new()
                .name("sqm-zmq-recv".into())
                .spawn(move || {
                    let mut sub = sub;
                    // Shutdown stops receiving at once; results still go out.
                    while !stop.load(Ordering::Acquire) && !state.ctx.is_shutting_down() {
                        let ready = in_flight.load(Ordering::Acquire) < MAX_IN_FLIGHT;
                        let mut items = Vec::new();
                        if ready {
                            items.push(pull.as_poll_item(zmq::POLLIN));
                        }
                        if let Some(s) = &sub {
                            items.push(s.as_poll_item(zmq::POLLIN));
                        }
                        if items.is_empty() {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        if zmq::poll(&mut items, 100).is_err() {
                            continue;
                        }
                        let pull_ready = ready && items[0].is_readable();
                        let sub_ready = items.last().is_some_and(|i| i.is_readable()) && sub.is_some();
                        drop(items);
                        if sub_ready {
                            if let Some(s) = &mut sub {
                                if let Ok(frame) = s.recv_bytes(zmq::DONTWAIT) {
                                    let text = String::from_utf8_lossy(&frame);
                                    let topic = text.split_once(' ').map(|(t, _)| t).unwrap_or("");
                                    tracing::info!(
                                        topic,
                                        bytes = frame.len(),
                                        "event on the events channel (logged only)"
                                    );
                                }
                            }
                        }
                        if pull_ready {
                            if let Ok(frame) = pull.recv_bytes(zmq::DONTWAIT) {
                                in_flight.fetch_add(1, Ordering::AcqRel);
                                let (state, res_tx, in_flight) = (state.clone(), res_tx.clone(), in_flight.clone());
                                rt.spawn(async move {
                                    if let Some(reply) = state.handle(&frame).await {
                                        let _ = res_tx.send(reply);
                                    }
                                    in_flight.fetch_sub(1, Ordering::AcqRel);
                                });
                            }
                        }
                    }
                })
                .map_err(|e| e.to_string())?
        };
        tracing::info!(work = %cfg.work, results = %cfg.results, events = ?cfg.events, "ZeroMQ worker connected");
        Ok(ZmqWorker { stop, threads: vec![receiver, sender], results: res_tx })
    }

    /// Stops receiving, flushes results within the linger, and joins.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        drop(self.results);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn new_conn() -> ConnHandle {
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    ConnHandle { id: 0, gone: Arc::new(AtomicBool::new(false)), events }
}

/// Sends results without blocking; keeps unsent ones (bounded) and retries.
fn send_loop(push: zmq::Socket, rx: mpsc::Receiver<Value>, stop: Arc<AtomicBool>) {
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut disconnected = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(v) => {
                pending.push_back(v.to_string().into_bytes());
                if pending.len() > MAX_PENDING {
                    pending.pop_front();
                    tracing::warn!("controller unreachable: dropped the oldest of {MAX_PENDING} unsent results");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
        }
        while let Some(msg) = pending.front() {
            match push.send(msg.as_slice(), zmq::DONTWAIT) {
                Ok(()) => {
                    pending.pop_front();
                }
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!("cannot send a result: {e}");
                    pending.pop_front();
                }
            }
        }
        if disconnected || (stop.load(Ordering::Acquire) && pending.is_empty()) {
            // Closing the socket lingers up to 2 s for queued frames.
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Some(msg) = pending.front() {
                if Instant::now() > deadline || push.send(msg.as_slice(), zmq::DONTWAIT).is_err() {
                    std::thread::sleep(Duration::from_millis(20));
                    if Instant::now() > deadline {
                        break;
                    }
                    continue;
                }
                pending.pop_front();
            }
            if !pending.is_empty() {
                tracing::warn!(unsent = pending.len(), "stopping with results the controller never took");
            }
            return;
        }
    }
}

struct WorkerState {
    ctx: Arc<Ctx>,
    cfg: ZmqConfig,
    /// The handle queued renders hang off; `clear_queue` retires it.
    conn: Mutex<ConnHandle>,
    library: Mutex<Option<Vec<AudioCandidate>>>,
}

#[derive(Clone, Debug)]
struct AudioCandidate {
    text: String,
    title: String,
    mood: String,
    variation_type: Option<String>,
    raw: String,
    path: PathBuf,
}

fn error_result(kind: &str, id: &Value, prompt: &Value, code: Code, message: impl Into<String>) -> Value {
    let e = WireError::new(code, message);
    json!({"type": kind, "request_id": id, "uri": null, "prompt": prompt,
           "error": {"code": serde_json::to_value(e.code).unwrap_or(Value::Null), "message": e.message}})
}

/// `file://` + absolute path, with spaces, `%` and non-ASCII percent-encoded.
pub fn file_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `[A-Za-z0-9._-]` kept, others `_`, cut to 64 chars.
pub fn safe_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).take(64).collect()
}

impl WorkerState {
    async fn handle(&self, frame: &[u8]) -> Option<Value> {
        let msg: Map<String, Value> = match serde_json::from_slice::<Value>(frame) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) => {
                tracing::warn!(bytes = frame.len(), "dropped a frame that is not a JSON object");
                return None;
            }
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        let span = tracing::info_span!("zmq", kind = %kind, request_id = ?msg.get("request_id"));
        let _e = span.enter();
        match kind.as_str() {
            "RenderRequest" => Some(self.render(&msg).await),
            "AudioRenderRequest" => Some(self.audio(&msg).await),
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
        let prepared = match render_job(msg) {
            Ok(p) => p,
            Err(m) => return fail(Code::InvalidRequest, m),
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
        let mut reply = json!({"type": "ImageReady", "request_id": id, "prompt": prompt});
        let mut warnings = Vec::new();
        let src = PathBuf::from(outcome["image_path"].as_str().unwrap_or(""));
        if src.as_os_str() == "/dev/null" || src.as_os_str().is_empty() {
            reply["uri"] = Value::Null;
        } else {
            let dst = self.ctx.config.output_dir().join("zmq").join(format!(
                "{}_{}.png",
                safe_id(id.as_str().unwrap_or("")),
                &key[..12.min(key.len())]
            ));
            if let Err(e) = link_atomic(&src, &dst) {
                return fail(Code::GenerationFailed, format!("cannot write {}: {e}", dst.display()));
            }
            warnings = self.store_inputs(msg, &dst).await;
            reply["uri"] = json!(file_uri(&dst));
        }
        for k in ["era", "biome"] {
            if let Some(v) = msg.get(k).filter(|v| !v.is_null()) {
                reply[k] = v.clone();
            }
        }
        for k in ["width", "height", "seed", "backend", "elapsed_ms", "cached"] {
            reply[k] = outcome[k].clone();
        }
        if !warnings.is_empty() {
            reply["warnings"] = json!(warnings);
        }
        reply
    }

    /// Queues a render on the lane and waits for its result.
    async fn submit(&self, id: &Value, prepared: PreparedJob) -> Result<Value, WireError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (tx, rx) = oneshot::channel();
        self.ctx.render.submit_render(
            prepared,
            self.cfg.priority,
            self.ctx.next_arrival(),
            Waiter::new(id.clone(), conn, false, tx),
        );
        match rx.await {
            Ok(r) => r.result,
            Err(_) => Err(WireError::new(Code::Cancelled, "dropped by clear_queue before it started")),
        }
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

    fn candidates(&self) -> Result<Vec<AudioCandidate>, String> {
        let mut lib = self.library.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = lib.as_ref() {
            return Ok(c.clone());
        }
        let pack = Pack::load(&self.cfg.pack).map_err(|e| e.to_string())?;
        let (audio, base) = pack.audio_for(self.cfg.world.as_deref()).map_err(|e| e.to_string())?;
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
        *lib = Some(out.clone());
        Ok(out)
    }

    async fn embed(&self, text: &str) -> Result<Vec<f64>, WireError> {
        let (tx, rx) = oneshot::channel();
        self.ctx.embed.submit_embed(text.to_owned(), Waiter::new(Value::Null, new_conn(), false, tx));
        let r = rx.await.map_err(|_| WireError::new(Code::EmbedFailed, "embed lane closed"))?.result?;
        r["embedding"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .ok_or_else(|| WireError::new(Code::EmbedFailed, "no embedding in the reply"))
    }

    async fn audio(&self, msg: &Map<String, Value>) -> Value {
        let id = msg.get("request_id").cloned().unwrap_or(Value::Null);
        let prompt_v = msg.get("prompt").cloned().unwrap_or(Value::Null);
        let fail = |code, m: String| error_result("AudioReady", &id, &prompt_v, code, m);
        let prompt = msg.get("prompt").and_then(Value::as_str).unwrap_or("").to_owned();
        if prompt.chars().filter(|c| !c.is_whitespace()).count() < 3 {
            return fail(Code::NoAudioMatch, "the prompt is too short to match (fewer than 3 characters)".into());
        }
        let cands = match self.candidates() {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => return fail(Code::NoAudioMatch, "the pack's audio library is empty".into()),
            Err(e) => return fail(Code::NoAudioMatch, format!("no audio library: {e}")),
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
            scores = cands.iter().map(|c| jaccard(&prompt, &c.text)).collect();
        }
        let mut best = 0;
        for (i, s) in scores.iter().enumerate() {
            if *s > scores[best] {
                best = i;
            }
        }
        let c = &cands[best];
        let duration = crate::audio::library::decode(&c.path)
            .ok()
            .map(|s| s.len() as f64 / 2.0 / crate::audio::library::RATE as f64);
        json!({
            "type": "AudioReady", "request_id": id, "uri": file_uri(&c.path), "prompt": prompt,
            "duration_s": duration.map(|d| (d * 100.0).round() / 100.0),
            "is_loop": c.variation_type.as_deref() == Some("ambient"),
            "metadata": {
                "similarity": (scores[best] * 10_000.0).round() / 10_000.0, "cache_hit": true, "cache_type": "library",
                "method": method, "model": if method == "embedding" { json!(crate::embed::MODEL_NAME) } else { Value::Null },
                "match": {"title": c.title, "mood": c.mood, "variation_type": c.variation_type, "path": c.raw},
                "requested_duration_s": msg.get("duration_s").cloned().unwrap_or(Value::Null),
            }
        })
    }
}

/// The job of a `RenderRequest` (zeromq.md §3): the prompt verbatim on
/// the scene tier's steps, at the requested size, seeded from the prompt
/// unless a seed is given. Errors are the `INVALID_REQUEST` message.
fn render_job(msg: &Map<String, Value>) -> Result<PreparedJob, String> {
    if !msg.get("request_id").is_some_and(Value::is_string) {
        return Err("missing field 'request_id'".into());
    }
    let Some(prompt) = msg.get("prompt").and_then(Value::as_str).map(str::to_owned) else {
        return Err("missing field 'prompt'".into());
    };
    let mut size = [1024u32, 1024u32];
    for (i, key) in ["width", "height"].iter().enumerate() {
        match msg.get(*key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if (64..=2048).contains(&n) && n % 16 == 0 => size[i] = n as u32,
                _ => return Err(format!("{key} must be a multiple of 16 in [64, 2048], got {v}")),
            },
        }
    }
    let seed = match msg.get("seed") {
        None | Some(Value::Null) => crate::rng::text_seed(&prompt),
        Some(v) => match v.as_i64().map(u32::try_from) {
            Some(Ok(s)) => s,
            Some(Err(_)) => return Err(format!("'seed' must be between 0 and {}, got {v}", u32::MAX)),
            None => return Err("'seed' must be an integer".into()),
        },
    };
    let spec = TierSpec::of(Tier::SceneIllustration);
    let job = RenderJob {
        tier: Tier::SceneIllustration,
        positive_prompt: prompt.clone(),
        negative_prompt: msg.get("negative_prompt").and_then(Value::as_str).unwrap_or("").to_owned(),
        seed,
        width: size[0],
        height: size[1],
        steps: spec.steps,
        guidance: spec.guidance,
        variant: spec.variant,
        subject: prompt,
        mood: String::new(),
        post: None,
    };
    Ok(PreparedJob {
        job,
        clip_prompt: String::new(),
        worker_type: "flux".into(),
        composer: "verbatim",
        layers: Vec::new(),
        evicted: Vec::new(),
    })
}

/// Jaccard similarity of lower-cased word sets without stop words (the
/// interpreter's).
fn jaccard(a: &str, b: &str) -> f64 {
    crate::interpret::text::similarity(a, b)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_uris_and_base64() {
        assert_eq!(safe_id("a b/c?d_e-f.g"), "a_b_c_d_e-f.g");
        assert_eq!(safe_id(&"x".repeat(100)).len(), 64);
        assert_eq!(file_uri(Path::new("/srv/out dir/é.png")), "file:///srv/out%20dir/%C3%A9.png");
        assert!(jaccard("tense battle drums", "Battle Drums. mood: combat") > 0.3);
        assert_eq!(jaccard("", "x"), 0.0);
    }
}
