//! The reference daemon's spans, by name and attribute
//! (remote-and-telemetry.md §5): what the GM panel's queries filter on.
//! `tracing` spans, exported over OTLP with the `otlp` feature; free when
//! nothing listens. Root spans are made with `parent: None` so no request's
//! span leaks into another's trace.

use std::time::Duration;

use serde_json::{Map, Value};
use tracing::field::Empty;
use tracing::Span;

use super::wire::{Code, WireError};
use crate::interpret::Tier;
use crate::render::pipeline::PreparedJob;

/// Integers go out as i64 (`tracing` would send a u64 as text).
fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// `daemon.dispatch.render`: a root span from enqueue to reply.
pub(crate) fn dispatch_render(tier: Tier, backend: &'static str) -> Span {
    tracing::info_span!(parent: None, "daemon.dispatch.render",
        lock_name = "render_lock",
        tier = tier.name(),
        queue_wait_ms = Empty,
        work_ms = Empty,
        upload_ms = Empty,
        cached = Empty,
        backend = backend,
        error = Empty,
        error_type = Empty,
    )
}

/// `daemon.dispatch.embed`: a root span with exactly the reference's keys.
pub(crate) fn dispatch_embed(text_len: usize) -> Span {
    tracing::info_span!(parent: None, "daemon.dispatch.embed",
        lock_name = "embed_lock",
        text_len = text_len as i64,
        work_ms = Empty,
        error = Empty,
        error_type = Empty,
    )
}

/// Queue wait and work time on a dispatch span and the request's own span.
pub(crate) fn record_times(spans: &[&Span], queue_wait: Duration, work: Duration) {
    for s in spans {
        s.record("queue_wait_ms", ms(queue_wait));
        s.record("work_ms", ms(work));
    }
}

/// A dispatch span's outcome: `error` and `error_type` (`CancelledError`
/// for a cancel, else the wire code) on failure.
pub(crate) fn record_outcome(span: &Span, result: &Result<Value, WireError>) {
    if let Err(e) = result {
        let kind = match e.code {
            Code::Cancelled => "CancelledError".to_owned(),
            code => serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        };
        span.record("error", true);
        span.record("error_type", kind.as_str());
    }
}

/// The facts of a job that `render.completed` reports.
#[derive(Clone, Debug)]
pub(crate) struct JobFacts {
    pub prompt_length: i64,
    pub genre_style_applied: bool,
    pub world_style_applied: bool,
}

impl JobFacts {
    pub(crate) fn of(job: &PreparedJob, params: &Map<String, Value>) -> JobFacts {
        let named = |k: &str| params.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        let (genre, world) = match (&job.report, job.composer) {
            (Some(r), _) => (r.genre_style_applied, r.world_style_applied),
            (None, "flux-era") => (named("genre"), named("world")),
            _ => (false, false),
        };
        JobFacts {
            prompt_length: job.job.positive_prompt.chars().count() as i64,
            genre_style_applied: genre,
            world_style_applied: world,
        }
    }
}

/// `render.completed`, under the dispatch span, on success.
pub(crate) fn render_completed(parent: &Span, params: &Map<String, Value>, tier: Tier, facts: &JobFacts, r2_key: &str) {
    let raw = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    tracing::info_span!(parent: parent, "render.completed",
        genre = raw("genre"),
        world = raw("world"),
        session_id = raw("session_id"),
        r2_key = r2_key,
        tier = tier.name(),
        prompt_length = facts.prompt_length,
        genre_style_applied = facts.genre_style_applied,
        world_style_applied = facts.world_style_applied,
    )
    .in_scope(|| {});
}

/// `daemon.r2.upload.start`, a zero-length span under the dispatch span.
pub(crate) fn upload_start(parent: &Span, kind: &str, world: &str, session: &str, bytes: usize) {
    tracing::info_span!(parent: parent, "daemon.r2.upload.start",
        upload.kind = kind, upload.world = world, upload.session = session, upload.bytes = bytes as i64)
    .in_scope(|| {});
}

/// `daemon.r2.upload.success`.
pub(crate) fn upload_success(parent: &Span, kind: &str, key: &str, took: Duration, bytes: usize) {
    tracing::info_span!(parent: parent, "daemon.r2.upload.success",
        upload.kind = kind, upload.key = key, upload.ms = ms(took), upload.bytes = bytes as i64)
    .in_scope(|| {});
}

/// `daemon.r2.upload.failure` (`retry_attempt`: the retries made).
pub(crate) fn upload_failure(parent: &Span, kind: &str, e: &crate::store::UploadError) {
    tracing::info_span!(parent: parent, "daemon.r2.upload.failure",
        upload.kind = kind, upload.error_class = e.class, upload.error_message = e.reason.as_str(),
        upload.retry_attempt = i64::from(e.attempts.saturating_sub(1)))
    .in_scope(|| {});
}

/// `compose.failed`: a root span.
pub(crate) fn compose_failed(tier: &str, error_type: &str, message: &str, world: &str, genre: &str) {
    tracing::info_span!(parent: None, "compose.failed",
        tier = tier, error_type = error_type, error_message = message, world = world, genre = genre)
    .in_scope(|| {});
}
