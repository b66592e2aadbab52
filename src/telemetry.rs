//! Optional OpenTelemetry export of tracing spans (cargo feature `otlp`).
//!
//! With the feature built in and `OTEL_EXPORTER_OTLP_ENDPOINT` set (for
//! example `http://localhost:4318`), every span — one `request` per daemon
//! request (method, id, tier, queue wait, work time, outcome) and the
//! reference daemon's named spans (`daemon.dispatch.render`,
//! `render.completed`, `daemon.r2.upload.*`, `daemon.dispatch.embed`,
//! `scene_interpreter.*`, `compose.failed`, `sqm.backend.*`) — is batched
//! and sent over OTLP/HTTP (protobuf) under the service name `sqm`
//! (`OTEL_SERVICE_NAME` overrides it). The standard `OTEL_EXPORTER_OTLP_*`
//! variables configure the exporter. Without the variable nothing is
//! exported and nothing is started.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// A `tracing` layer that exports spans, when an endpoint is configured.
pub fn layer<S>() -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OpenTelemetry export disabled: {e}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "sqm".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("sqm");
    let _ = PROVIDER.set(provider);
    // Attributes are exactly the spans' own fields (the reference's key
    // sets): no code location, thread or busy/idle time attributes.
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false),
    )
}

/// Flushes and stops the exporter (at process exit).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}
