//! Uploads to an S3-compatible store (R2, AWS, MinIO) with `object_store`:
//! one PUT per object, at most two at once, retries only where a retry can
//! help (remote-and-telemetry.md §1.4), the whole upload bounded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::{Attribute, Attributes, ClientOptions, ObjectStore, PutOptions, PutPayload, RetryConfig};

use super::config::{ConfigError, StoreConfig};

/// Retries after the first attempt (connect errors, timeouts, 429, 5xx).
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Uploads running at once; more wait their turn.
const PARALLEL: usize = 2;
/// Longest reason text carried in replies and events.
const MAX_REASON: usize = 300;

/// A finished upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub key: String,
    pub bytes: usize,
    pub ms: u64,
    /// Already uploaded by this process: nothing was sent.
    pub skipped: bool,
}

/// A failed upload: a reason fit for a reply (no credentials, no host
/// facts), the error's class and how many attempts were made.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason}")]
pub struct UploadError {
    pub reason: String,
    /// `ClientError` (the store answered with an error status),
    /// `EndpointConnectionError` (no answer) or `ReadTimeoutError`, the
    /// names the reference's client reported.
    pub class: &'static str,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Counters for `status.sqm.object_store`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Default)]
pub struct StoreStatus {
    pub enabled: bool,
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub uploads: u64,
    pub failures: u64,
}

/// The process's one connection to the object store.
pub struct Uploader {
    store: AmazonS3,
    config: StoreConfig,
    permits: tokio::sync::Semaphore,
    /// Keys this process has uploaded (a second PUT would change nothing).
    done: Mutex<HashSet<String>>,
    uploads: AtomicU64,
    failures: AtomicU64,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("endpoint", &self.config.endpoint)
            .field("bucket", &self.config.bucket)
            .finish()
    }
}

impl Uploader {
    /// Builds the client; contacts nothing.
    pub fn new(config: StoreConfig) -> Result<Uploader, ConfigError> {
        let options = ClientOptions::new()
            .with_allow_http(true)
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30));
        // Retries are ours (counted, and only for the errors §1.4 names).
        let retry = RetryConfig { max_retries: 0, ..RetryConfig::default() };
        let creds = &config.credentials;
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&creds.key_id)
            .with_secret_access_key(&creds.secret)
            .with_virtual_hosted_style_request(config.virtual_hosted)
            .with_retry(retry)
            .with_client_options(options);
        if let Some(token) = &creds.token {
            builder = builder.with_token(token);
        }
        // The builder's errors name settings, not values; keep only a fixed text.
        let store = builder.build().map_err(|_| {
            ConfigError::Invalid(
                "the object store settings were refused (check the endpoint, bucket and region)".into(),
            )
        })?;
        Ok(Uploader {
            store,
            config,
            permits: tokio::sync::Semaphore::new(PARALLEL),
            done: Mutex::new(HashSet::new()),
            uploads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Where anyone can read `key`, when a public URL is configured.
    pub fn public_url(&self, key: &str) -> Option<String> {
        self.config.public_url.as_ref().map(|base| format!("{base}/{key}"))
    }

    /// True when no upload is waiting or running (a drain waits for this).
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// `status.sqm.object_store` when no store is configured.
    pub fn disabled_status() -> StoreStatus {
        StoreStatus::default()
    }

    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            enabled: true,
            endpoint: self.config.endpoint.clone(),
            bucket: self.config.bucket.clone(),
            region: self.config.region.clone(),
            uploads: self.uploads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Puts `bytes` at `key` as a PNG (`Content-Type: image/png`,
    /// `Cache-Control: public, max-age=86400`), unless this process has
    /// already uploaded that key.
    pub async fn put_png(&self, key: &str, bytes: Vec<u8>) -> Result<Uploaded, UploadError> {
        let len = bytes.len();
        if self.done.lock().unwrap_or_else(|e| e.into_inner()).contains(key) {
            return Ok(Uploaded { key: key.to_owned(), bytes: len, ms: 0, skipped: true });
        }
        let _busy = InFlight::enter(&self.in_flight);
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let limit = self.config.timeout;
        let result = match tokio::time::timeout(limit, self.attempt_all(key, bytes.into(), &attempts)).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                reason: format!("timed out after {} s", fmt_secs(limit)),
                class: "ReadTimeoutError",
                retry: false,
            }),
        };
        let elapsed = started.elapsed();
        match result {
            Ok(()) => {
                self.uploads.fetch_add(1, Ordering::Relaxed);
                self.done.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned());
                Ok(Uploaded { key: key.to_owned(), bytes: len, ms: elapsed.as_millis() as u64, skipped: false })
            }
            Err(f) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let mut reason = f.reason;
                crate::interpret::text::truncate_utf8(&mut reason, MAX_REASON);
                Err(UploadError { reason, class: f.class, attempts: attempts.load(Ordering::Relaxed).max(1), elapsed })
            }
        }
    }

    async fn attempt_all(&self, key: &str, payload: PutPayload, attempts: &AtomicU32) -> Result<(), Failure> {
        let path = object_store::path::Path::from(key);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, "image/png".into());
            attributes.insert(Attribute::CacheControl, "public, max-age=86400".into());
            let opts = PutOptions { attributes, ..PutOptions::default() };
            let failure = match self.store.put_opts(&path, payload.clone(), opts).await {
                Ok(_) => return Ok(()),
                Err(e) => classify(&e),
            };
            if !failure.retry || n > RETRIES {
                return Err(failure);
            }
            tracing::info!(attempt = n, reason = %failure.reason, "upload attempt failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Counts an upload as in flight from before it waits for a permit until
/// it ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(n: &Arc<AtomicUsize>) -> InFlight {
        n.fetch_add(1, Ordering::AcqRel);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Failure {
    reason: String,
    class: &'static str,
    retry: bool,
}

/// What went wrong, whether a retry may help, and a reason text built from
/// the status line and the S3 error's `Code` and `Message` only (an S3
/// error body can echo the access key id).
fn classify(e: &object_store::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            let (class, retry) = match http.kind() {
                HttpErrorKind::Connect | HttpErrorKind::Request => ("EndpointConnectionError", true),
                HttpErrorKind::Timeout | HttpErrorKind::Interrupted => ("ReadTimeoutError", true),
                _ => ("EndpointConnectionError", false),
            };
            return Failure { reason: chain_text(http), class, retry };
        }
        source = err.source();
    }
    let text = e.to_string();
    match status_of(&text) {
        Some((code, rest)) => {
            let retry = code == 429 || code == 408 || (500..600).contains(&code);
            Failure { reason: status_reason(code, rest), class: "ClientError", retry }
        }
        None => Failure { reason: "the object store refused the upload".into(), class: "ClientError", retry: false },
    }
}

/// The status code and what follows it in object_store's
/// "…status code: 403 Forbidden: <body>" text.
fn status_of(text: &str) -> Option<(u16, &str)> {
    const MARK: &str = "status code: ";
    let at = text.find(MARK)? + MARK.len();
    let rest = &text[at..];
    let code = rest.get(..3)?.parse::<u16>().ok()?;
    Some((code, rest))
}

/// `403 Forbidden: SignatureDoesNotMatch: <message>` from the status line
/// and the XML error body.
fn status_reason(code: u16, rest: &str) -> String {
    let (line, body) = rest.split_once(": ").unwrap_or((rest, ""));
    let line = if line.len() > 40 { code.to_string() } else { line.to_owned() };
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].trim().to_owned())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{line}: {c}: {m}"),
        (Some(c), None) => format!("{line}: {c}"),
        _ => line,
    }
}

/// An HTTP error and its causes, joined by `: `, repeats dropped.
fn chain_text(e: &HttpError) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        source = err.source();
    }
    parts.join(": ")
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reasons_keep_code_and_message_only() {
        let text = "The operation lacked the necessary privileges to complete for path a/b.png: Error performing PUT \
                    http://h/sidequest/a/b.png in 2ms - Server returned non-2xx status code: 403 Forbidden: <?xml \
                    version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we \
                    calculated does not match.</Message><AWSAccessKeyId>AKIDSECRET</AWSAccessKeyId></Error>";
        let (code, rest) = status_of(text).unwrap();
        assert_eq!(code, 403);
        let reason = status_reason(code, rest);
        assert_eq!(reason, "403 Forbidden: SignatureDoesNotMatch: The request signature we calculated does not match.");
        assert!(!reason.contains("AKID"));
        let (code, rest) = status_of("x status code: 503 Service Unavailable: ").unwrap();
        assert_eq!((code, status_reason(code, rest).as_str()), (503, "503 Service Unavailable"));
    }

    #[test]
    fn seconds_print_like_the_flag() {
        assert_eq!(fmt_secs(Duration::from_secs(2)), "2");
        assert_eq!(fmt_secs(Duration::from_millis(1500)), "1.5");
    }
}
