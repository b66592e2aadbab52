//! Watcher events to the game server (remote-and-telemetry.md §4): the
//! game master's panel hears about compose failures and render timeouts.
//!
//! `POST <base>/internal/watcher/emit` with
//! `{"event_type":…,"fields":{…},"component":"daemon"}`. Callers only
//! enqueue: one sender thread posts in order, one attempt of at most 2 s
//! per event, so a slow or absent game server never slows a reply. The
//! queue holds 256 events; when full, the oldest is dropped and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Events waiting at most.
const QUEUE: usize = 256;
/// One attempt per event, this long in all.
const ATTEMPT: Duration = Duration::from_secs(2);
/// After the first failure, at most one warning this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The endpoint for a base URL (`--watcher-url`, `SIDEQUEST_SERVER_URL`).
pub(crate) fn endpoint(base: &str) -> String {
    format!("{}/internal/watcher/emit", base.trim_end_matches('/'))
}

#[derive(Default)]
struct Queue {
    events: VecDeque<String>,
    /// The sender has taken an event and not finished posting it.
    posting: bool,
    stopping: bool,
}

struct Inner {
    url: String,
    queue: Mutex<Queue>,
    wake: Condvar,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// The event sender; clones share one queue and thread.
#[derive(Clone)]
pub(crate) struct Watcher {
    inner: Arc<Inner>,
}

/// `status.sqm.watcher`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct WatcherStatus {
    pub url: String,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queued: u64,
}

impl Watcher {
    /// Starts the sender thread for `url` (the full endpoint).
    pub(crate) fn start(url: String) -> Watcher {
        let inner = Arc::new(Inner {
            url,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let worker = inner.clone();
        std::thread::Builder::new()
            .name("sqm-watcher".into())
            .spawn(move || worker.run())
            .expect("spawn the watcher thread");
        Watcher { inner }
    }

    /// Queues one event; never blocks on the network.
    pub(crate) fn emit(&self, event_type: &str, fields: Value) {
        let body = json!({"event_type": event_type, "fields": fields, "component": "daemon"}).to_string();
        let mut q = self.inner.lock();
        if q.stopping {
            return;
        }
        if q.events.len() >= QUEUE {
            q.events.pop_front();
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.events.push_back(body);
        drop(q);
        self.inner.wake.notify_all();
    }

    pub(crate) fn status(&self) -> WatcherStatus {
        let q = self.inner.lock();
        WatcherStatus {
            url: self.inner.url.clone(),
            sent: self.inner.sent.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            queued: (q.events.len() + usize::from(q.posting)) as u64,
        }
    }

    /// At shutdown: waits up to `within` for the queue to empty, then stops
    /// the thread (what is left is not sent).
    pub(crate) fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut q = self.inner.lock();
        while (!q.events.is_empty() || q.posting) && Instant::now() < deadline {
            q = self
                .inner
                .wake
                .wait_timeout(q, deadline - Instant::now())
                .map(|(q, _)| q)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        q.stopping = true;
        drop(q);
        self.inner.wake.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(self: Arc<Self>) {
        let agent = ureq::AgentBuilder::new().timeout(ATTEMPT).build();
        // Failures since the last warning, and when that was.
        let mut failing: Option<(u64, Instant)> = None;
        loop {
            let body = {
                let mut q = self.lock();
                q.posting = false;
                self.wake.notify_all();
                loop {
                    if q.stopping {
                        return;
                    }
                    if let Some(body) = q.events.pop_front() {
                        q.posting = true;
                        break body;
                    }
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let outcome = agent.post(&self.url).set("Content-Type", "application/json").send_string(&body);
            match outcome {
                Ok(resp) if (200..300).contains(&resp.status()) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    if let Some((missed, _)) = failing.take() {
                        tracing::info!(url = %self.url, failed_since_last_warning = missed, "watcher events are delivered again");
                    }
                }
                other => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    let why = match other {
                        Ok(resp) => format!("HTTP {}", resp.status()),
                        Err(ureq::Error::Status(code, _)) => format!("HTTP {code}"),
                        Err(e) => e.kind().to_string(),
                    };
                    match &mut failing {
                        None => {
                            tracing::warn!(url = %self.url, reason = %why, "watcher event not delivered (further failures are counted in status.sqm.watcher)");
                            failing = Some((0, Instant::now()));
                        }
                        Some((missed, last)) => {
                            *missed += 1;
                            if last.elapsed() >= WARN_EVERY {
                                tracing::warn!(url = %self.url, reason = %why, failed = *missed, "watcher events still not delivered");
                                *missed = 0;
                                *last = Instant::now();
                            }
                        }
                    }
                }
            }
        }
    }
}
