//! Method dispatch: one request in, the lines of its reply out (the reply,
//! then the lane's `ready` heartbeat when the request ran on a lane).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::scheduler::{ConnHandle, LaneResult, Outgoing, Waiter};
use super::state::Ctx;
use super::wire::{
    self, parse_render, Ack, Cancelled, Code, LaneError, Method, Request, Skipped, SkippedStatus, WarmUp, WarmUpStatus,
    WireError, Work, WorkerWarmUp, MAX_EMBED_BYTES,
};
use crate::render::pipeline::{prepare, PrepareError, Prepared};

/// Requests answered on the spot, without a task: `ping`, `status` and
/// `cancel` ([`Method::is_inline`]). `None` for every other method.
pub(crate) fn quick_reply(req: &Request, ctx: &Ctx) -> Option<Vec<Outgoing>> {
    if !req.method.is_inline() {
        return None;
    }
    // The same per-request span as the slow path (free when disabled).
    let span = tracing::info_span!("request", method = %req.method, id = %req.id, inline = true);
    let _enter = span.enter();
    let result = inline_result(req, ctx);
    match &result {
        Ok(_) => tracing::debug!("ok"),
        Err(e) => tracing::info!(code = ?e.code, message = %e.message, "error"),
    }
    Some(vec![Outgoing::Line(match result {
        Ok(v) => wire::reply_ok(&req.id, v),
        Err(e) => wire::reply_err(&req.id, &e),
    })])
}

/// The result of an inline method.
fn inline_result(req: &Request, ctx: &Ctx) -> Result<Value, WireError> {
    match req.method {
        Method::Ping => Ok(wire::result_value(&Ack::OK)),
        Method::Status => Ok(wire::result_value(&ctx.status())),
        Method::Cancel => {
            let target = req.params.get("id").cloned().unwrap_or(Value::Null);
            Ok(wire::result_value(&Cancelled { cancelled: ctx.render.cancel(&target) }))
        }
        other => Err(WireError::new(Code::InvalidRequest, format!("{other} is not answered inline"))),
    }
}

/// Handles one request and returns the lines to write, in order.
pub(crate) async fn handle_request(req: Request, ctx: Arc<Ctx>, conn: ConnHandle, arrival: u64) -> Vec<Outgoing> {
    let span = tracing::info_span!(parent: None, "request", method = %req.method, id = %req.id, conn = conn.id,
        tier = tracing::field::Empty, queue_wait_ms = tracing::field::Empty, work_ms = tracing::field::Empty,
        outcome = tracing::field::Empty);
    let started = Instant::now();
    let id = req.id.clone();
    let (result, ready_after) = async {
        match req.method {
            Method::Ping | Method::Status | Method::Cancel => (inline_result(&req, &ctx), None),
            Method::Shutdown => {
                ctx.request_shutdown("shutdown request");
                (Ok(wire::result_value(&Ack::OK)), None)
            }
            Method::WarmUp => (warm_up(&req.params, &ctx, &conn, arrival).await, None),
            Method::Render => render(&req, &ctx, &conn, arrival).await,
            Method::Embed => embed(&req, &ctx, &conn).await,
            Method::AudioCue | Method::AudioStop | Method::AudioVolume | Method::AudioStatus => {
                // Decoding files blocks: keep it off the async workers.
                let (audio, method, params) = (ctx.audio.clone(), req.method, req.params.clone());
                let r = tokio::task::spawn_blocking(move || audio.handle(method, &params))
                    .await
                    .unwrap_or_else(|e| Err(WireError::new(Code::AudioFailed, format!("audio task failed: {e}"))));
                (r, None)
            }
        }
    }
    .instrument(span.clone())
    .await;
    let _enter = span.enter();
    span.record("outcome", if result.is_ok() { "ok" } else { "error" });
    match &result {
        Ok(_) => tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ok"),
        Err(e) => {
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, code = ?e.code, message = %e.message, "error")
        }
    }
    let mut lines = vec![Outgoing::Line(match &result {
        Ok(v) => wire::reply_ok(&id, v.clone()),
        Err(e) => wire::reply_err(&id, e),
    })];
    if let Some(q) = ready_after {
        lines.push(Outgoing::Heartbeat(q, wire::LaneState::Ready));
    }
    lines
}

async fn lane_wait(rx: oneshot::Receiver<LaneResult>, work: Work) -> LaneResult {
    rx.await.unwrap_or_else(|_| LaneResult {
        result: Err(LaneError::Lost(work).into()),
        ready_after: None,
        queue_wait: None,
    })
}

async fn render(
    req: &Request,
    ctx: &Arc<Ctx>,
    conn: &ConnHandle,
    arrival: u64,
) -> (Result<Value, WireError>, Option<wire::Queue>) {
    let params = match parse_render(&req.params) {
        Ok(p) => p,
        Err(e) => return (Err(e), None),
    };
    tracing::Span::current().record("tier", params.request.tier.as_str());
    let styles = ctx.styles.clone();
    let explicit_loras = params.request.loras.is_some();
    let mut request = params.request;
    // A Z-Image backend renders its fidelity's tier table.
    request.fidelity = ctx.render.fidelity;
    let (genre, world) = (request.genre.clone(), request.world.clone());
    let prepared = tokio::task::spawn_blocking(move || prepare(&request, &styles)).await;
    let job = match prepared {
        Ok(Ok(Prepared::Skipped { reason })) => {
            return (
                Ok(wire::result_value(&Skipped { status: SkippedStatus::Skipped, reason: reason.to_owned() })),
                None,
            )
        }
        Ok(Ok(Prepared::Job(mut job))) => {
            // The fidelity the caller expects, after composing and before
            // queueing (zimage.md §1.2): no heartbeats, no file.
            if let Some(message) = ctx.render.fidelity.and_then(|f| f.check_request(params.fidelity.as_deref())) {
                return (Err(WireError::new(Code::GenerationFailed, message)), None);
            }
            // The variant the backend will really run, before any key.
            ctx.render.fit_variant(&mut job);
            if let (Some(report), Some(watcher)) = (&job.report, &ctx.watcher) {
                let mut fields = serde_json::to_value(report).expect("a report serializes");
                // The weight-free backends have no model variant: their name stands in.
                let name = ctx.render.backend_name;
                let model_variant = match (name, &ctx.render.model) {
                    ("sketch" | "null", _) | (_, None) => name.to_owned(),
                    (_, Some(model)) => model.clone(),
                };
                fields["fidelity"] = ctx.render.fidelity.map(|f| Value::String(f.name().into())).unwrap_or(Value::Null);
                fields["model_variant"] = Value::String(model_variant);
                fields["steps"] = job.job.steps.into();
                watcher.emit("render.prompt_composed", fields);
            }
            job
        }
        Ok(Err(e)) => {
            if let PrepareError::Compose(err, tier) = &e {
                let mut message = err.message.clone();
                wire::truncate_utf8(&mut message, 512);
                let tier = tier.as_deref().unwrap_or("");
                super::spans::compose_failed(tier, err.kind.as_str(), &message, &world, &genre);
                if let Some(watcher) = &ctx.watcher {
                    let render_id = req.params.get("render_id").and_then(Value::as_str).unwrap_or("");
                    watcher.emit(
                        "daemon_compose_failed",
                        serde_json::json!({
                            "tier": tier,
                            "error_type": err.kind.as_str(),
                            "error_message": message,
                            "world": world,
                            "genre": genre,
                            "render_id": render_id,
                        }),
                    );
                }
            }
            return (Err(e.into()), None);
        }
        Err(e) => return (Err(WireError::new(Code::GenerationFailed, format!("internal error: {e}"))), None),
    };
    // img2img: the init image on the job's canvas, before queueing.
    let mut job = job;
    let mut warnings: Vec<String> = Vec::new();
    // LoRAs: sketch and null checked the paths and apply none.
    let name = ctx.render.backend_name;
    if crate::render::lora::drop_on_weightless(&mut job.job, name) && explicit_loras {
        warnings.push(format!("loras: backend '{name}' applies no LoRA"));
    }
    if let Some(src) = params.reference_image.clone() {
        let name = ctx.render.backend_name;
        if matches!(name, "sketch" | "null") {
            warnings.push(format!("reference_image: backend '{name}' applies no init image"));
        } else {
            let strength = params.strength;
            let attached =
                super::inputs::attach_off_thread(job.job.clone(), ctx.config.input_roots(), move |j, roots| {
                    crate::render::init::attach(j, &src, strength, roots)
                })
                .await;
            match attached {
                Ok(j) => job.job = j,
                Err(Some(e)) => return (Err(WireError::new(Code::InvalidRequest, e.to_string())), None),
                Err(None) => {
                    return (Err(WireError::new(Code::GenerationFailed, "internal error: input task failed")), None)
                }
            }
        }
    }
    // Depth: strict on the socket (conditioning.md §3.5).
    if let Some(src) = params.depth_map.clone() {
        let name = ctx.render.backend_name;
        match (name, &ctx.render.depth_model) {
            ("sketch" | "null", _) => warnings.push(format!("depth_map: backend '{name}' applies no depth")),
            ("zimage", _) => {
                return (
                    Err(WireError::new(
                        Code::GenerationFailed,
                        "depth_map: backend 'zimage' has no depth conditioning",
                    )),
                    None,
                )
            }
            (_, None) => {
                return (
                    Err(WireError::new(
                        Code::GenerationFailed,
                        format!(
                            "depth_map: backend '{name}' has no depth model (FLUX.1-Depth-dev not found in the model \
                             folder or the Hugging Face hub cache)"
                        ),
                    )),
                    None,
                )
            }
            (_, Some(model)) => {
                let depth = crate::render::control::DepthSettings {
                    model: model.clone(),
                    guidance: ctx.render.depth_guidance,
                    invert: params.depth_invert,
                };
                let attached =
                    super::inputs::attach_off_thread(job.job.clone(), ctx.config.input_roots(), move |j, roots| {
                        crate::render::control::attach_depth(j, &src, &depth, roots)
                    })
                    .await;
                match attached {
                    Ok(j) => job.job = j,
                    Err(Some(m)) => return (Err(WireError::new(Code::InvalidRequest, m)), None),
                    Err(None) => {
                        return (Err(WireError::new(Code::GenerationFailed, "internal error: input task failed")), None)
                    }
                }
            }
        }
    }
    let mut conditioned: Vec<&str> = Vec::new();
    if !job.job.loras.is_empty() {
        conditioned.push("lora");
    }
    if job.job.init.is_some() {
        conditioned.push("img2img");
    }
    if job.job.control.is_some() {
        conditioned.push("depth");
    }
    if ctx.is_shutting_down() {
        return (Err(LaneError::ShuttingDown(Work::Render).into()), None);
    }
    let tier = job.job.tier;
    let facts = super::spans::JobFacts::of(&job, &req.params);
    let dispatch = super::spans::dispatch_render(tier, ctx.render.backend_name);
    let enqueued = Instant::now();
    // Queued, running and uploading renders keep their file.
    let _pin = ctx.cache.as_ref().map(|c| c.pin(&ctx.planned_path(&job.job)));
    let _pending = ctx.uploader.as_ref().map(|_| super::publish::Pending::enter(&ctx.publishing));
    let (tx, rx) = oneshot::channel();
    ctx.render.submit_render(
        *job,
        params.priority,
        arrival,
        Waiter::new(req.id.clone(), conn.clone(), params.stream, tx).with_span(dispatch.clone()),
    );
    let r = lane_wait(rx, Work::Render).await;
    let total = enqueued.elapsed();
    let wait = r.queue_wait.unwrap_or(total);
    super::spans::record_times(&[&dispatch, &tracing::Span::current()], wait, total.saturating_sub(wait));
    let result = match r.result {
        Ok(v) => super::publish::after_render(ctx, &req.params, tier, v, &dispatch).await,
        Err(e) => Err(e),
    };
    // What steered the picture, and what was ignored (conditioning.md §1.6).
    let result = result.map(|mut v| {
        if let Value::Object(o) = &mut v {
            if !conditioned.is_empty() {
                o.insert("conditioned".into(), serde_json::json!(conditioned));
            }
            if !warnings.is_empty() {
                o.insert("warnings".into(), serde_json::json!(warnings));
            }
        }
        v
    });
    super::spans::record_outcome(&dispatch, &result);
    if let Ok(v) = &result {
        dispatch.record("cached", v.get("cached").and_then(Value::as_bool).unwrap_or(false));
        let key = v.get("r2_key").and_then(Value::as_str).unwrap_or("");
        super::spans::render_completed(&dispatch, &req.params, tier, &facts, key);
    }
    (result, r.ready_after)
}

async fn embed(req: &Request, ctx: &Arc<Ctx>, conn: &ConnHandle) -> (Result<Value, WireError>, Option<wire::Queue>) {
    let text = match req.params.get("text") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return (Err(WireError::new(Code::InvalidRequest, "embed requires non-empty 'text' field")), None),
    };
    if text.len() > MAX_EMBED_BYTES {
        return (Err(WireError::new(Code::InvalidRequest, "embed 'text' exceeds 32768-byte UTF-8 limit")), None);
    }
    if ctx.is_shutting_down() {
        return (Err(LaneError::ShuttingDown(Work::Embed).into()), None);
    }
    let dispatch = super::spans::dispatch_embed(text.len());
    let enqueued = Instant::now();
    let (tx, rx) = oneshot::channel();
    ctx.embed.submit_embed(text, Waiter::new(req.id.clone(), conn.clone(), false, tx));
    let r = lane_wait(rx, Work::Embed).await;
    let total = enqueued.elapsed();
    let wait = r.queue_wait.unwrap_or(total);
    // The reference's embed span has exactly three keys: the queue wait
    // goes on the request's own span.
    super::spans::record_times(&[&tracing::Span::current()], wait, total.saturating_sub(wait));
    dispatch.record("work_ms", total.saturating_sub(wait).as_millis() as i64);
    super::spans::record_outcome(&dispatch, &r.result);
    (r.result, r.ready_after)
}

async fn warm_up(
    params: &Map<String, Value>,
    ctx: &Arc<Ctx>,
    conn: &ConnHandle,
    arrival: u64,
) -> Result<Value, WireError> {
    let worker = match params.get("worker") {
        None | Some(Value::Null) => "all".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(WireError::new(Code::InvalidRequest, "'worker' must be a string")),
    };
    let (image, embed): (Option<&str>, bool) = match worker.as_str() {
        "all" => (Some("image"), true),
        "flux" | "image" => (Some(worker.as_str()), false),
        "embed" => (None, true),
        other => {
            return Err(WireError::new(
                Code::InvalidRequest,
                format!("unknown worker '{other}' (expected all, flux, image or embed)"),
            ))
        }
    };
    if ctx.is_shutting_down() {
        return Err(LaneError::ShuttingDown(Work::WarmUp).into());
    }
    let image_rx = image.map(|name| {
        let (tx, rx) = oneshot::channel();
        ctx.render.submit_warmup(name.to_owned(), arrival, Waiter::new(Value::Null, conn.clone(), false, tx));
        rx
    });
    let embed_rx = embed.then(|| {
        let (tx, rx) = oneshot::channel();
        ctx.embed.submit_warmup(Waiter::new(Value::Null, conn.clone(), false, tx));
        rx
    });
    let mut workers = indexmap::IndexMap::new();
    if let Some(rx) = image_rx {
        let sub = worker_warm_up(lane_wait(rx, Work::WarmUp).await.result?)?;
        let keys: Vec<&str> = if worker == "all" { vec!["flux", "image"] } else { vec![worker.as_str()] };
        for k in keys {
            workers.insert(k.to_owned(), WorkerWarmUp { worker: k.to_owned(), ..sub.clone() });
        }
    }
    if let Some(rx) = embed_rx {
        workers.insert("embed".into(), worker_warm_up(lane_wait(rx, Work::WarmUp).await.result?)?);
    }
    Ok(wire::result_value(&WarmUp { status: WarmUpStatus::Warm, workers }))
}

/// A lane's warm-up answer, read back as its type.
fn worker_warm_up(v: Value) -> Result<WorkerWarmUp, WireError> {
    serde_json::from_value(v).map_err(|e| WireError::new(Code::GenerationFailed, format!("internal error: {e}")))
}
