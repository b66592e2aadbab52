//! A finished render's way off this machine (remote-and-telemetry.md
//! §1.2–§1.4): the PNG is uploaded to the object store after the render
//! lane has moved on, each waiter under its own key, and the reply gains
//! `r2_key`, or fails at its upload stage (`keep-local`: `upload_error`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::state::Ctx;
use super::wire::WireError;
use crate::interpret::Tier;
use crate::store::{self, OnFailure, Place, Uploader};

/// Counts renders whose reply may still wait on an upload, from before
/// they are queued until their reply is built: a drain waits for zero.
pub(crate) struct Pending(Arc<AtomicUsize>);

impl Pending {
    pub(crate) fn enter(count: &Arc<AtomicUsize>) -> Pending {
        count.fetch_add(1, Ordering::AcqRel);
        Pending(count.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What follows a render's success: the cache hears of the write (or the
/// hit), and with an object store the file is uploaded.
pub(crate) async fn after_render(
    ctx: &Ctx,
    params: &Map<String, Value>,
    tier: Tier,
    result: Value,
    span: &tracing::Span,
) -> Result<Value, WireError> {
    let file = result.get("image_path").and_then(Value::as_str).filter(|p| !p.is_empty() && *p != "/dev/null");
    if let (Some(cache), Some(path)) = (&ctx.cache, file) {
        if result.get("cached").and_then(Value::as_bool) == Some(true) {
            cache.touch(std::path::Path::new(path));
        } else {
            cache.kick();
        }
    }
    match &ctx.uploader {
        Some(uploader) => {
            let started = std::time::Instant::now();
            let r = publish(ctx, uploader, params, tier, result, span).await;
            span.record("upload_ms", started.elapsed().as_millis() as i64);
            r
        }
        None => Ok(result),
    }
}

/// Uploads a render's file and completes its reply. Results without a file
/// (the `null` backend) pass through untouched.
async fn publish(
    ctx: &Ctx,
    uploader: &Uploader,
    params: &Map<String, Value>,
    tier: Tier,
    mut result: Value,
    span: &tracing::Span,
) -> Result<Value, WireError> {
    // The null backend answers `/dev/null`: nothing to upload.
    let Some(path) = result.get("image_path").and_then(Value::as_str).filter(|p| !p.is_empty() && *p != "/dev/null")
    else {
        return Ok(result);
    };
    let render_id = params.get("render_id").and_then(Value::as_str).unwrap_or("").to_owned();
    let place = Place::of(params);
    if !place.missing.is_empty() {
        if let Some(w) = &ctx.watcher {
            let raw = |name: &str| params.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
            w.emit(
                "r2.params_missing",
                json!({
                    "tier": tier.name(),
                    "world": raw("world"),
                    "session_id": raw("session_id"),
                    "missing": place.missing,
                    "render_id": render_id,
                }),
            );
        }
    }
    let _pin = ctx.cache.as_ref().map(|c| c.pin(std::path::Path::new(path)));
    let outcome = match tokio::fs::read(path).await {
        Ok(bytes) => {
            let kind = store::kind(tier);
            let key = store::object_key(&place.world, &place.session, kind, &store::sha256_hex(&bytes));
            let len = bytes.len();
            super::spans::upload_start(span, kind, &place.world, &place.session, len);
            let up = uploader.put_png(&key, bytes).await;
            match &up {
                Ok(u) => super::spans::upload_success(span, kind, &key, std::time::Duration::from_millis(u.ms), len),
                Err(e) => super::spans::upload_failure(span, kind, e),
            }
            up.map_err(|e| (key, e))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the rendered file could not be read for upload");
            let err = store::UploadError {
                reason: "the rendered file could not be read".into(),
                class: "FileNotFoundError",
                attempts: 0,
                elapsed: Default::default(),
            };
            Err((String::new(), err))
        }
    };
    match outcome {
        Ok(up) => {
            result["r2_key"] = Value::String(up.key);
            Ok(result)
        }
        Err((key, e)) => {
            let reason =
                failed_upload(ctx, uploader, e, json!({"tier": tier.name(), "r2_key": key, "render_id": render_id}))?;
            result["upload_error"] = Value::String(reason);
            Ok(result)
        }
    }
}

/// A failed upload: logged, told to the game server (`daemon.upload_failed`:
/// `fields` plus the error's class, message, attempts and time), and made
/// the render's failure — or, with `--upload-failure keep-local`, the
/// reason to answer as `upload_error`.
pub(crate) fn failed_upload(
    ctx: &Ctx,
    uploader: &Uploader,
    e: store::UploadError,
    mut fields: Value,
) -> Result<String, WireError> {
    tracing::warn!(reason = %e.reason, attempts = e.attempts, "upload failed");
    if let Some(w) = &ctx.watcher {
        fields["error_class"] = e.class.into();
        fields["error_message"] = e.reason.clone().into();
        fields["attempts"] = e.attempts.into();
        fields["elapsed_ms"] = (e.elapsed.as_millis() as u64).into();
        w.emit("daemon.upload_failed", fields);
    }
    match uploader.config().on_failure {
        OnFailure::Error => Err(WireError::from(&e)),
        OnFailure::KeepLocal => Ok(e.reason),
    }
}
