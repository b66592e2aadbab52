//! The two work lanes of the daemon.
//!
//! * The **render lane** is one OS thread that owns the image backend. Its
//!   queue puts interactive requests before batch ones (FIFO within a
//!   class), coalesces identical renders (same content key: one
//!   computation, every waiter gets its own reply), drops queued work whose
//!   client has gone, and honours `cancel` between denoising steps.
//! * The **embed lane** is a second thread with its own FIFO, so an embed
//!   never waits behind a render.
//!
//! Lanes talk to connections through [`Waiter`]s: events (busy heartbeat,
//! progress) go straight to the connection's writer; the final result goes
//! back through a oneshot channel so the connection can write replies in
//! request order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use super::backend_thread::BackendFactory;
use super::backend_thread::BackendThread;
use super::wire::{
    self, Embedding, LaneError, LaneState, Priority, Queue, WarmUpStatus, WireError, Work, WorkerWarmUp,
};
use crate::render::output::output_path;
use crate::render::pipeline::{execute, PreparedJob};
use crate::render::{Backend, RenderError};
use std::sync::mpsc as mpsc_std;

/// A line to write on a connection. Heartbeats are rendered when written,
/// so their depth and timestamp are those at emit time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outgoing {
    Line(String),
    Heartbeat(Queue, LaneState),
}

/// What a connection shares with the lanes.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    pub id: u64,
    /// Set when the peer can no longer receive (fully closed).
    pub gone: Arc<AtomicBool>,
    pub events: mpsc::UnboundedSender<Outgoing>,
}

impl ConnHandle {
    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    fn send(&self, o: Outgoing) {
        let _ = self.events.send(o);
    }
}

/// The outcome of a lane request: the result, and which lane's `ready`
/// heartbeat must follow the reply (set when a `busy` one was sent).
#[derive(Debug)]
pub(crate) struct LaneResult {
    pub result: Result<Value, WireError>,
    pub ready_after: Option<Queue>,
    /// From queueing to the start of the work (None: it never started).
    pub queue_wait: Option<Duration>,
}

/// One client waiting on a lane.
pub(crate) struct Waiter {
    pub request_id: Value,
    pub conn: ConnHandle,
    pub stream: bool,
    pub reply: oneshot::Sender<LaneResult>,
    cancelled: bool,
    busy_sent: bool,
    created: Instant,
    started: Option<Instant>,
    /// The request's dispatch span: the backend's render span hangs under it.
    span: tracing::Span,
}

impl Waiter {
    pub(crate) fn new(request_id: Value, conn: ConnHandle, stream: bool, reply: oneshot::Sender<LaneResult>) -> Self {
        Waiter {
            request_id,
            conn,
            stream,
            reply,
            cancelled: false,
            busy_sent: false,
            created: Instant::now(),
            started: None,
            span: tracing::Span::none(),
        }
    }

    /// The span the backend's work is recorded under.
    pub(crate) fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    fn start(&mut self, at: Instant) {
        self.started.get_or_insert(at);
    }

    fn finish(self, result: Result<Value, WireError>, queue: Queue) {
        let ready_after = self.busy_sent.then_some(queue);
        let queue_wait = self.started.map(|s| s.saturating_duration_since(self.created));
        let _ = self.reply.send(LaneResult { result, ready_after, queue_wait });
    }
}

enum RenderWork {
    Render { job: Box<PreparedJob>, key: String },
    WarmUp { name: String },
}

struct Entry {
    seq: u64,
    priority: Priority,
    work: RenderWork,
    waiters: Vec<Waiter>,
}

struct Running {
    key: Option<String>,
    waiters: Vec<Waiter>,
    /// When the waiting connections hear `image/busy` again (renders only).
    next_beat: Option<Instant>,
}

#[derive(Default)]
struct RenderState {
    queue: Vec<Entry>,
    running: Option<Running>,
    shutting_down: bool,
    /// Set when the drain timeout passes: running work is cancelled.
    abort: bool,
    /// Set when the lane thread has ended.
    closed: bool,
    /// Counts started renders: a backend call acts (progress, cancel, file)
    /// only while its render is the current one.
    generation: u64,
    /// The current render passed `--render-timeout` and was answered.
    timed_out: bool,
}

/// `--render-timeout` and its grace period.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watchdog {
    pub timeout: Duration,
    pub grace: Duration,
}

/// What became of the backend after a render.
#[derive(Debug)]
enum Health {
    Fine,
    /// It did not return (or died): a fresh one must be built. After a
    /// timeout, the report is logged and sent once the rebuild's outcome
    /// is known.
    Lost(Option<TimeoutReport>),
}

/// One render timeout, for the log and the `daemon.render_timeout` event.
#[derive(Debug)]
struct TimeoutReport {
    tier: String,
    backend: &'static str,
    timeout_s: u64,
    elapsed_ms: u64,
    waiters: usize,
}

impl TimeoutReport {
    fn emit(&self, recovery: &str, watcher: Option<&super::watcher::Watcher>) {
        tracing::warn!(
            tier = %self.tier,
            backend = self.backend,
            timeout_s = self.timeout_s,
            elapsed_ms = self.elapsed_ms,
            waiters = self.waiters,
            recovery,
            "render timed out"
        );
        if let Some(w) = watcher {
            w.emit(
                "daemon.render_timeout",
                serde_json::json!({
                    "tier": self.tier,
                    "backend": self.backend,
                    "timeout_s": self.timeout_s,
                    "elapsed_ms": self.elapsed_ms,
                    "waiters": self.waiters,
                    "recovery": recovery,
                }),
            );
        }
    }
}

/// Counters shared with `status` and heartbeats.
#[derive(Default)]
pub(crate) struct LaneStats {
    /// Running + waiting requests.
    pub depth: AtomicUsize,
    pub busy: AtomicBool,
    pub warm: AtomicBool,
    /// What the backend holds in memory, read after each call, and its
    /// memory budget (zimage.md §4.4).
    pub memory: Mutex<(Vec<crate::render::Resident>, Option<u64>)>,
}

impl LaneStats {
    fn set_memory(&self, memory: (Vec<crate::render::Resident>, Option<u64>)) {
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = memory;
    }
}

/// The render lane.
pub(crate) struct RenderLane {
    state: Mutex<RenderState>,
    wake: Condvar,
    /// Wakes the busy-heartbeat thread when a render starts or the lane ends.
    beat: Condvar,
    /// How often a running render's waiters hear `image/busy` again.
    busy_every: Option<Duration>,
    pub stats: LaneStats,
    pub backend_name: &'static str,
    pub model: Option<String>,
    /// The Z-Image fidelity the backend loaded (None for other backends).
    pub fidelity: Option<crate::prompt::Fidelity>,
    /// The depth model the backend conditions on (None: no depth weights).
    pub depth_model: Option<String>,
    /// The guidance depth renders take (`--depth-guidance`).
    pub depth_guidance: f32,
    /// The Flux variants the backend has (empty: any).
    variants: Vec<crate::prompt::Variant>,
    variant_warned: AtomicBool,
    out_dir: PathBuf,
    /// Queued requests per priority, for `status`.
    pub queued_interactive: AtomicUsize,
    pub queued_batch: AtomicUsize,
    watchdog: Option<Watchdog>,
    /// Set when the lane could not recover from a render timeout: the
    /// daemon stops and exits 75.
    pub failed: AtomicBool,
    stop: tokio::sync::watch::Sender<Option<String>>,
    watcher: Option<super::watcher::Watcher>,
}

fn shutting_down() -> WireError {
    LaneError::ShuttingDown(Work::Render).into()
}

impl RenderLane {
    /// Starts the lane thread and the backend's own thread.
    /// `busy_every`: repeat `image/busy` this often during a render, on a
    /// thread of its own (a denoising step may take longer than that).
    /// `rebuild` makes a fresh backend when a timed-out render never
    /// returns (without it the lane fails); `stop` asks the daemon to stop.
    pub(crate) fn start(
        backend: Box<dyn Backend>,
        rebuild: Option<BackendFactory>,
        out_dir: PathBuf,
        busy_every: Option<Duration>,
        watchdog: Option<Watchdog>,
        stop: tokio::sync::watch::Sender<Option<String>>,
        watcher: Option<super::watcher::Watcher>,
    ) -> Arc<RenderLane> {
        let lane = Arc::new(RenderLane {
            state: Mutex::new(RenderState::default()),
            wake: Condvar::new(),
            beat: Condvar::new(),
            busy_every,
            stats: LaneStats::default(),
            backend_name: backend.name(),
            model: backend.model(),
            fidelity: backend.fidelity(),
            depth_model: backend.depth_model(),
            depth_guidance: backend.depth_guidance(),
            variants: backend.variants(),
            variant_warned: AtomicBool::new(false),
            out_dir,
            queued_interactive: AtomicUsize::new(0),
            queued_batch: AtomicUsize::new(0),
            watchdog,
            failed: AtomicBool::new(false),
            stop,
            watcher,
        });
        let worker = lane.clone();
        std::thread::Builder::new()
            .name("sqm-render-lane".into())
            .spawn(move || worker.run(backend, rebuild))
            .expect("spawn render lane");
        if let Some(every) = busy_every {
            let beater = lane.clone();
            std::thread::Builder::new()
                .name("sqm-busy-beat".into())
                .spawn(move || beater.beat_loop(every))
                .expect("spawn busy heartbeat thread");
        }
        lane
    }

    /// Sends `image/busy` to every connection waiting on the running
    /// render, `every` apart from its start, until the lane ends.
    fn beat_loop(&self, every: Duration) {
        let mut st = self.lock();
        while !st.closed {
            let due = st.running.as_ref().and_then(|r| r.next_beat);
            let now = Instant::now();
            st = match due {
                None => self.beat.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(t) if t > now => self.beat.wait_timeout(st, t - now).unwrap_or_else(|p| p.into_inner()).0,
                Some(t) => {
                    let r = st.running.as_mut().expect("a due beat has a running render");
                    r.next_beat = Some(t + every);
                    let mut told = std::collections::HashSet::new();
                    for w in r.waiters.iter().filter(|w| !w.cancelled) {
                        if told.insert(w.conn.id) {
                            w.conn.send(Outgoing::Heartbeat(Queue::Image, LaneState::Busy));
                        }
                    }
                    st
                }
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RenderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops queued (not running) render waiters whose connection is gone,
    /// now rather than when they reach the front. Their reply channels
    /// close, which their tasks report as cancelled.
    pub(crate) fn prune_gone(&self) {
        let mut st = self.lock();
        let mut dropped = 0;
        for e in st.queue.iter_mut() {
            if matches!(e.work, RenderWork::Render { .. }) {
                let before = e.waiters.len();
                e.waiters.retain(|w| !w.conn.is_gone());
                dropped += before - e.waiters.len();
            }
        }
        st.queue.retain(|e| !e.waiters.is_empty());
        if dropped > 0 {
            self.stats.depth.fetch_sub(dropped, Ordering::AcqRel);
            tracing::info!(dropped, "dropped queued renders (clear_queue)");
        }
        self.count_queued(&st);
    }

    fn count_queued(&self, st: &RenderState) {
        let (mut i, mut b) = (0, 0);
        for e in &st.queue {
            match e.priority {
                Priority::Interactive => i += e.waiters.len(),
                Priority::Batch => b += e.waiters.len(),
            }
        }
        self.queued_interactive.store(i, Ordering::Relaxed);
        self.queued_batch.store(b, Ordering::Relaxed);
    }

    /// Queues a render. `arrival` orders requests FIFO within a priority
    /// class (stamped when the request was read, so slow preparation does
    /// not let a later request overtake). Identical renders (same key)
    /// queued or running are joined instead of computed again.
    pub(crate) fn submit_render(&self, job: PreparedJob, priority: Priority, arrival: u64, waiter: Waiter) {
        let mut job = job;
        self.fit_variant(&mut job);
        let key = crate::render::output::render_key(self.backend_name, self.model.as_deref(), &job.job);
        let mut st = self.lock();
        if st.shutting_down {
            drop(st);
            waiter.finish(Err(shutting_down()), Queue::Image);
            return;
        }
        self.stats.depth.fetch_add(1, Ordering::AcqRel);
        if let Some(running) = st.running.as_mut().filter(|r| r.key.as_deref() == Some(key.as_str())) {
            let mut waiter = waiter;
            waiter.conn.send(Outgoing::Heartbeat(Queue::Image, LaneState::Busy));
            waiter.busy_sent = true;
            waiter.start(Instant::now());
            running.waiters.push(waiter);
            return;
        }
        if let Some(entry) =
            st.queue.iter_mut().find(|e| matches!(&e.work, RenderWork::Render { key: k, .. } if *k == key))
        {
            // An interactive waiter promotes a batch entry.
            entry.priority = entry.priority.min(priority);
            entry.waiters.push(waiter);
        } else {
            st.queue.push(Entry {
                seq: arrival,
                priority,
                work: RenderWork::Render { job: Box::new(job), key },
                waiters: vec![waiter],
            });
        }
        self.count_queued(&st);
        drop(st);
        self.wake.notify_one();
    }

    /// Makes a job run on a variant the backend has (before its key is
    /// made); the first change is logged.
    pub(crate) fn fit_variant(&self, job: &mut PreparedJob) {
        if let Some(wanted) = job.run_on(&self.variants) {
            if !self.variant_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    wanted = wanted.name(),
                    using = job.job.variant.name(),
                    steps = job.job.steps,
                    guidance = job.job.guidance,
                    "no weights for the tier's Flux variant: rendering with the other one, at its settings"
                );
            }
        }
    }

    /// Queues a backend warm-up (it waits behind earlier work like any job).
    pub(crate) fn submit_warmup(&self, name: String, arrival: u64, waiter: Waiter) {
        let mut st = self.lock();
        if st.shutting_down {
            drop(st);
            waiter.finish(Err(LaneError::ShuttingDown(Work::WarmUp).into()), Queue::Image);
            return;
        }
        st.queue.push(Entry {
            seq: arrival,
            priority: Priority::Interactive,
            work: RenderWork::WarmUp { name },
            waiters: vec![waiter],
        });
        drop(st);
        self.wake.notify_one();
    }

    /// Cancels every queued or running render requested with `id`. Returns
    /// how many requests were cancelled.
    pub(crate) fn cancel(&self, id: &Value) -> usize {
        let mut st = self.lock();
        let mut count = 0;
        let mut finished = Vec::new();
        for entry in st.queue.iter_mut().filter(|e| matches!(e.work, RenderWork::Render { .. })) {
            let mut i = 0;
            while i < entry.waiters.len() {
                if entry.waiters[i].request_id == *id {
                    finished.push(entry.waiters.remove(i));
                    count += 1;
                } else {
                    i += 1;
                }
            }
        }
        st.queue.retain(|e| !e.waiters.is_empty());
        if let Some(running) = st.running.as_mut() {
            for w in running.waiters.iter_mut().filter(|w| w.request_id == *id && !w.cancelled) {
                w.cancelled = true;
                count += 1;
            }
        }
        self.count_queued(&st);
        drop(st);
        self.stats.depth.fetch_sub(finished.len(), Ordering::AcqRel);
        for w in finished {
            w.finish(Err(LaneError::Cancelled.into()), Queue::Image);
        }
        count
    }

    /// Starts the drain: queued work is answered "daemon shutting down" and
    /// later submissions are refused. Running work continues.
    pub(crate) fn begin_shutdown(&self) {
        let mut st = self.lock();
        st.shutting_down = true;
        let queued: Vec<Entry> = std::mem::take(&mut st.queue);
        self.count_queued(&st);
        drop(st);
        for e in queued {
            let is_render = matches!(e.work, RenderWork::Render { .. });
            if is_render {
                self.stats.depth.fetch_sub(e.waiters.len(), Ordering::AcqRel);
            }
            for w in e.waiters {
                let err = if is_render { shutting_down() } else { LaneError::ShuttingDown(Work::WarmUp).into() };
                w.finish(Err(err), Queue::Image);
            }
        }
        self.wake.notify_all();
    }

    /// Cancels the running render (drain timeout).
    pub(crate) fn abort_running(&self) {
        self.lock().abort = true;
    }

    /// True while a render or warm-up is running.
    pub(crate) fn is_idle(&self) -> bool {
        let st = self.lock();
        st.running.is_none() && st.queue.is_empty()
    }

    fn run(self: Arc<Self>, backend: Box<dyn Backend>, mut rebuild: Option<BackendFactory>) {
        let mut thread = BackendThread::spawn(backend);
        loop {
            let entry = {
                let mut st = self.lock();
                loop {
                    if let Some(i) =
                        st.queue.iter().enumerate().min_by_key(|(_, e)| (e.priority, e.seq)).map(|(i, _)| i)
                    {
                        let mut e = st.queue.remove(i);
                        // Renders of clients that have gone are dropped unstarted.
                        let before = e.waiters.len();
                        if matches!(e.work, RenderWork::Render { .. }) {
                            e.waiters.retain(|w| !w.conn.is_gone());
                        }
                        let dropped = before - e.waiters.len();
                        if dropped > 0 {
                            self.stats.depth.fetch_sub(dropped, Ordering::AcqRel);
                            tracing::info!(dropped, "dropped queued render(s) of disconnected clients");
                        }
                        if e.waiters.is_empty() {
                            continue;
                        }
                        let key = match &e.work {
                            RenderWork::Render { key, .. } => Some(key.clone()),
                            RenderWork::WarmUp { .. } => None,
                        };
                        let is_render = key.is_some();
                        let mut waiters = std::mem::take(&mut e.waiters);
                        if is_render {
                            for w in waiters.iter_mut() {
                                w.busy_sent = true;
                            }
                        }
                        st.running = Some(Running { key, waiters: Vec::new(), next_beat: None });
                        st.generation += 1;
                        st.timed_out = false;
                        self.count_queued(&st);
                        break Some((e, waiters));
                    }
                    if st.shutting_down {
                        break None;
                    }
                    st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some((entry, waiters)) = entry else {
                self.lock().closed = true;
                self.beat.notify_all();
                return;
            };
            self.stats.busy.store(true, Ordering::Release);
            let health = match entry.work {
                RenderWork::Render { job, key } => self.run_render(&thread, job, &key, waiters),
                RenderWork::WarmUp { name } => self.run_warmup(&thread, &name, waiters),
            };
            if let Health::Lost(report) = health {
                let rebuilt = self.rebuild(&mut rebuild);
                if let Some(report) = report {
                    report.emit(if rebuilt.is_ok() { "reloaded" } else { "failed" }, self.watcher.as_ref());
                }
                match rebuilt {
                    Ok(fresh) => thread = fresh,
                    Err(cause) => {
                        self.fail(&cause);
                        self.stats.busy.store(false, Ordering::Release);
                        return;
                    }
                }
            }
            self.stats.busy.store(false, Ordering::Release);
        }
    }

    /// A fresh backend on a fresh thread, warmed up (`image` reads `cold`
    /// meanwhile and the queue waits).
    fn rebuild(&self, rebuild: &mut Option<BackendFactory>) -> Result<BackendThread, String> {
        self.stats.warm.store(false, Ordering::Release);
        let factory = rebuild.as_mut().ok_or("no way to build a new backend")?;
        let thread = BackendThread::spawn(factory()?);
        let warmed = thread.call(|b| b.warm_up().map(|()| b.is_loaded()).map_err(|e| e.to_string()));
        let loaded = warmed.recv().map_err(|_| "the new backend stopped while warming up".to_owned())??;
        self.stats.warm.store(loaded, Ordering::Release);
        tracing::info!(backend = self.backend_name, "render backend reloaded after a render timeout");
        Ok(thread)
    }

    /// The lane cannot go on: queued renders are answered, later ones are
    /// refused, and the daemon stops with exit status 75.
    fn fail(&self, cause: &str) {
        let message = format!("render lane failed to recover after a render timeout: {cause}");
        tracing::error!(%cause, "render lane failed to recover after a render timeout; stopping (exit 75)");
        self.failed.store(true, Ordering::Release);
        let queued = {
            let mut st = self.lock();
            st.shutting_down = true;
            st.running = None;
            st.closed = true;
            let queued = std::mem::take(&mut st.queue);
            self.count_queued(&st);
            queued
        };
        self.beat.notify_all();
        for e in queued {
            let is_render = matches!(e.work, RenderWork::Render { .. });
            if is_render {
                self.stats.depth.fetch_sub(e.waiters.len(), Ordering::AcqRel);
            }
            let work = if is_render { Work::Render } else { Work::WarmUp };
            for w in e.waiters {
                w.finish(Err(LaneError::Failed(work, message.clone()).into()), Queue::Image);
            }
        }
        self.stop.send_if_modified(|v| {
            if v.is_none() {
                *v = Some("render lane failed".into());
                true
            } else {
                false
            }
        });
    }

    fn run_render(
        self: &Arc<Self>,
        thread: &BackendThread,
        job: Box<PreparedJob>,
        key: &str,
        waiters: Vec<Waiter>,
    ) -> Health {
        // Busy heartbeats first, then the waiters join the running record
        // so that cancel and coalescing see them.
        for w in &waiters {
            w.conn.send(Outgoing::Heartbeat(Queue::Image, LaneState::Busy));
        }
        let path = output_path(&self.out_dir, self.backend_name, key);
        let cached_before = path.is_file();
        let started = Instant::now();
        let mut waiters = waiters;
        for w in waiters.iter_mut() {
            w.start(started);
        }
        // A cache hit runs no model: no backend span.
        let span = if cached_before {
            tracing::Span::none()
        } else {
            self.backend_span(&job, waiters.first().map(|w| &w.span))
        };
        let generation = {
            let mut st = self.lock();
            let running = st.running.as_mut().expect("running set");
            running.waiters.extend(waiters);
            running.next_beat = self.busy_every.map(|d| started + d);
            st.generation
        };
        self.beat.notify_all();
        let tier = job.job.tier;
        let lane = self.clone();
        let answer = thread.call(move |backend| {
            let current = |st: &RenderState| st.generation == generation && !st.timed_out;
            let mut progress = |step: u32, steps: u32| {
                let st = lane.lock();
                if let Some(r) = st.running.as_ref().filter(|_| current(&st)) {
                    for w in r.waiters.iter().filter(|w| w.stream && !w.cancelled) {
                        w.conn.send(Outgoing::Line(wire::progress(&w.request_id, step, steps)));
                    }
                }
            };
            let cancel = || {
                let st = lane.lock();
                !current(&st) || st.abort || st.running.as_ref().is_some_and(|r| r.waiters.iter().all(|w| w.cancelled))
            };
            let entered = span.enter();
            let result = if cached_before {
                // A cache hit emits no progress events.
                execute(&job, backend, &lane.out_dir, &mut |_, _| {}, &cancel)
            } else {
                execute(&job, backend, &lane.out_dir, &mut progress, &cancel)
            };
            span.record("render.elapsed_ms", started.elapsed().as_millis() as i64);
            if result.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            drop(entered);
            // A render answered RENDER_TIMEOUT leaves no file, even if the
            // backend finished after all.
            if let Ok(o) = &result {
                if !o.cached && !current(&lane.lock()) {
                    let _ = std::fs::remove_file(&o.image_path);
                }
            }
            (result, backend.is_loaded(), (backend.resident(), backend.memory_budget()))
        });
        let limit = self.watchdog.filter(|_| !cached_before);
        let got = match limit {
            Some(w) => answer.recv_timeout(w.timeout),
            None => answer.recv().map_err(|_| mpsc_std::RecvTimeoutError::Disconnected),
        };
        let mut lost = false;
        let (result, loaded) = match got {
            Ok((result, loaded, memory)) => {
                self.stats.set_memory(memory);
                (result, loaded)
            }
            Err(mpsc_std::RecvTimeoutError::Timeout) => {
                let w = limit.expect("a timeout needs a limit");
                return self.time_out(thread, answer, w, tier, started);
            }
            Err(mpsc_std::RecvTimeoutError::Disconnected) => {
                tracing::error!(backend = self.backend_name, "the render backend stopped (panicked) during a render");
                lost = true;
                let message = "the render backend stopped unexpectedly".to_owned();
                self.stats.set_memory((Vec::new(), None));
                (Err(RenderError::Backend { backend: self.backend_name, message }), false)
            }
        };
        self.stats.warm.store(loaded, Ordering::Release);
        let waiters = self.lock().running.take().map(|r| r.waiters).unwrap_or_default();
        self.stats.depth.fetch_sub(waiters.len(), Ordering::AcqRel);
        let elapsed = started.elapsed();
        match &result {
            Ok(o) => tracing::info!(
                backend = self.backend_name,
                cached = o.cached,
                elapsed_ms = elapsed.as_millis() as u64,
                waiters = waiters.len(),
                "render done"
            ),
            Err(e) => tracing::warn!(error = %e, "render failed"),
        }
        let mut first = true;
        for w in waiters {
            if w.cancelled {
                w.finish(Err(LaneError::Cancelled.into()), Queue::Image);
                continue;
            }
            let reply = match &result {
                Ok(outcome) => {
                    let mut o = outcome.clone();
                    o.cached = o.cached || !first;
                    first = false;
                    Ok(serde_json::to_value(o).expect("outcome serializes"))
                }
                Err(RenderError::Cancelled) => Err(LaneError::Cancelled.into()),
                Err(e) => Err(LaneError::Failed(Work::Render, e.to_string()).into()),
            };
            w.finish(reply, Queue::Image);
        }
        if lost {
            Health::Lost(None)
        } else {
            Health::Fine
        }
    }

    /// The running render passed its deadline: every waiter is answered
    /// RENDER_TIMEOUT now, the backend is told to stop (its cancel flag
    /// reads true from here on) and given the grace period to return.
    fn time_out<R>(
        &self,
        thread: &BackendThread,
        answer: mpsc_std::Receiver<R>,
        watchdog: Watchdog,
        tier: crate::interpret::Tier,
        started: Instant,
    ) -> Health {
        let waiters = {
            let mut st = self.lock();
            st.timed_out = true;
            // The record stays (the lane is busy until the backend returns)
            // but takes no joiners and sends no more beats.
            let running = st.running.as_mut().expect("running set");
            running.key = None;
            running.next_beat = None;
            std::mem::take(&mut running.waiters)
        };
        self.stats.depth.fetch_sub(waiters.len(), Ordering::AcqRel);
        let secs = watchdog.timeout.as_secs_f64();
        let timeout_s = if secs.fract() == 0.0 { secs as u64 } else { secs.ceil() as u64 };
        let count = waiters.len();
        for w in waiters {
            let err = if w.cancelled { LaneError::Cancelled } else { LaneError::TimedOut(timeout_s) };
            w.finish(Err(err.into()), Queue::Image);
        }
        let report = TimeoutReport {
            tier: tier.to_string(),
            backend: self.backend_name,
            timeout_s,
            elapsed_ms: started.elapsed().as_millis() as u64,
            waiters: count,
        };
        let returned = answer.recv_timeout(watchdog.grace).is_ok();
        self.lock().running = None;
        if returned {
            // Free what the stopped render left; the weights stay.
            let _ = thread.call(|b| b.reset()).recv();
            report.emit("cancelled", self.watcher.as_ref());
            Health::Fine
        } else {
            Health::Lost(Some(report))
        }
    }

    /// The backend's render span (the reference's `zimage_mlx.render`,
    /// `sqm.backend.render` for the other backends), under the dispatch
    /// span of the render's first waiter.
    fn backend_span(&self, job: &PreparedJob, parent: Option<&tracing::Span>) -> tracing::Span {
        let j = &job.job;
        let variant = self.model.clone().unwrap_or_else(|| self.backend_name.to_owned());
        let parent = parent.and_then(|p| p.id());
        tracing::info_span!(parent: parent, "sqm.backend.render",
            model.variant = %variant,
            worker.fidelity = "",
            render.tier = j.tier.name(),
            render.seed = i64::from(j.seed),
            render.width = i64::from(j.width),
            render.height = i64::from(j.height),
            render.steps = i64::from(j.steps),
            render.guidance = j.guidance as f64,
            render.prompt_length = j.positive_prompt.chars().count() as i64,
            render.negative_length = j.negative_prompt.chars().count() as i64,
            render.elapsed_ms = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    }

    fn run_warmup(&self, thread: &BackendThread, name: &str, waiters: Vec<Waiter>) -> Health {
        let started = Instant::now();
        let answer = thread.call(move |backend| {
            let was_warm = backend.is_loaded();
            let span = |span_name: &'static str| {
                let model = backend.model().unwrap_or_else(|| backend.name().to_owned());
                // Root spans, as the reference's load and warm-up spans.
                let span = if span_name == "sqm.backend.load_model" {
                    tracing::info_span!(parent: None, "sqm.backend.load_model", model.name = %model, model.variant = %model,
                        worker.fidelity = "", model.quantize = backend.quantized())
                } else {
                    tracing::info_span!(parent: None, "sqm.backend.warm_up", model.name = %model, model.variant = %model,
                        worker.fidelity = "", model.quantize = backend.quantized(), warmup.elapsed_ms = tracing::field::Empty)
                };
                span
            };
            let warm_span = span("sqm.backend.warm_up");
            let load_span = (!was_warm).then(|| span("sqm.backend.load_model"));
            let result = backend.warm_up().map_err(|e| e.to_string());
            warm_span.record("warmup.elapsed_ms", started.elapsed().as_millis() as i64);
            if result.is_err() {
                warm_span.record("otel.status_code", "ERROR");
            }
            drop(load_span);
            let memory = (backend.resident(), backend.memory_budget());
            (was_warm, result, backend.is_loaded(), backend.model(), memory)
        });
        let (was_warm, result, loaded, model, health) = match answer.recv() {
            Ok((was, result, loaded, model, memory)) => {
                self.stats.set_memory(memory);
                (was, result, loaded, model, Health::Fine)
            }
            Err(_) => {
                (false, Err("the render backend stopped unexpectedly".to_owned()), false, None, Health::Lost(None))
            }
        };
        self.stats.warm.store(loaded, Ordering::Release);
        self.lock().running = None;
        let reply = match result {
            Ok(()) => Ok(wire::result_value(&WorkerWarmUp {
                worker: name.to_owned(),
                status: if was_warm { WarmUpStatus::AlreadyWarm } else { WarmUpStatus::Warm },
                warmup_ms: if was_warm { 0 } else { started.elapsed().as_millis() as u64 },
                backend: Some(self.backend_name.to_owned()),
                model,
            })),
            Err(e) => Err(LaneError::Failed(Work::WarmUp, e).into()),
        };
        for w in waiters {
            w.finish(reply.clone(), Queue::Image);
        }
        health
    }
}

pub use crate::embed::Embedder;

/// Loads the embedder on first use (or on `warm_up`).
pub type EmbedLoader = Box<dyn FnMut() -> Result<Box<dyn Embedder>, crate::embed::EmbedError> + Send>;

enum EmbedWork {
    Embed(String),
    WarmUp,
}

/// The most queued embed requests one forward pass takes.
const MAX_EMBED_BATCH: usize = 64;

/// The embed lane.
pub(crate) struct EmbedLane {
    state: Mutex<(VecDeque<(EmbedWork, Waiter)>, bool)>,
    wake: Condvar,
    pub stats: LaneStats,
    pub model_name: String,
}

impl EmbedLane {
    pub(crate) fn start(model_name: String, loader: EmbedLoader) -> Arc<EmbedLane> {
        let lane = Arc::new(EmbedLane {
            state: Mutex::new((VecDeque::new(), false)),
            wake: Condvar::new(),
            stats: LaneStats::default(),
            model_name,
        });
        let worker = lane.clone();
        std::thread::Builder::new()
            .name("sqm-embed".into())
            .spawn(move || worker.run(loader))
            .expect("spawn embed lane");
        lane
    }

    fn submit(&self, work: EmbedWork, waiter: Waiter) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.1 {
            drop(st);
            let err = match work {
                EmbedWork::Embed(_) => LaneError::ShuttingDown(Work::Embed).into(),
                EmbedWork::WarmUp => LaneError::ShuttingDown(Work::WarmUp).into(),
            };
            waiter.finish(Err(err), Queue::Embed);
            return;
        }
        if matches!(work, EmbedWork::Embed(_)) {
            self.stats.depth.fetch_add(1, Ordering::AcqRel);
        }
        st.0.push_back((work, waiter));
        drop(st);
        self.wake.notify_one();
    }

    pub(crate) fn submit_embed(&self, text: String, waiter: Waiter) {
        self.submit(EmbedWork::Embed(text), waiter);
    }

    pub(crate) fn submit_warmup(&self, waiter: Waiter) {
        self.submit(EmbedWork::WarmUp, waiter);
    }

    pub(crate) fn begin_shutdown(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 = true;
        let queued: Vec<_> = st.0.drain(..).collect();
        drop(st);
        for (work, w) in queued {
            let err = match work {
                EmbedWork::Embed(_) => {
                    self.stats.depth.fetch_sub(1, Ordering::AcqRel);
                    LaneError::ShuttingDown(Work::Embed).into()
                }
                EmbedWork::WarmUp => LaneError::ShuttingDown(Work::WarmUp).into(),
            };
            w.finish(Err(err), Queue::Embed);
        }
        self.wake.notify_all();
    }

    pub(crate) fn is_idle(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0.is_empty() && !self.stats.busy.load(Ordering::Acquire)
    }

    fn run(self: Arc<Self>, mut loader: EmbedLoader) {
        let mut model: Option<Box<dyn Embedder>> = None;
        loop {
            let next = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(item) = st.0.pop_front() {
                        // Embeds queued behind this one run with it, in one
                        // forward pass (no waiting for more to arrive).
                        let mut batch = vec![item];
                        while batch.len() < MAX_EMBED_BATCH
                            && matches!(batch[0].0, EmbedWork::Embed(_))
                            && matches!(st.0.front(), Some((EmbedWork::Embed(_), _)))
                        {
                            batch.extend(st.0.pop_front());
                        }
                        break Some(batch);
                    }
                    if st.1 {
                        break None;
                    }
                    st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some(mut batch) = next else { return };
            self.stats.busy.store(true, Ordering::Release);
            if let (EmbedWork::WarmUp, _) = &batch[0] {
                let (_, waiter) = batch.remove(0);
                self.warm_up(&mut model, &mut loader, waiter);
            } else {
                self.embed_batch(&mut model, &mut loader, batch);
            }
            self.stats.busy.store(false, Ordering::Release);
        }
    }

    fn warm_up(&self, model: &mut Option<Box<dyn Embedder>>, loader: &mut EmbedLoader, waiter: Waiter) {
        let started = Instant::now();
        let was_warm = model.is_some();
        let result = if was_warm {
            Ok(())
        } else {
            loader().map(|m| {
                *model = Some(m);
            })
        };
        self.stats.warm.store(model.is_some(), Ordering::Release);
        let reply = result
            .map(|()| {
                wire::result_value(&WorkerWarmUp {
                    worker: "embed".into(),
                    status: if was_warm { WarmUpStatus::AlreadyWarm } else { WarmUpStatus::Warm },
                    warmup_ms: if was_warm { 0 } else { started.elapsed().as_millis() as u64 },
                    backend: None,
                    model: Some(self.model_name.clone()),
                })
            })
            .map_err(|e| LaneError::Failed(Work::WarmUp, e.to_string()).into());
        waiter.finish(reply, Queue::Embed);
    }

    /// Embeds a batch of queued texts in one call; if the batch fails, each
    /// text runs alone so an error reaches only the request that caused it.
    fn embed_batch(
        &self,
        model: &mut Option<Box<dyn Embedder>>,
        loader: &mut EmbedLoader,
        batch: Vec<(EmbedWork, Waiter)>,
    ) {
        let mut texts = Vec::with_capacity(batch.len());
        let mut waiters: Vec<Waiter> = Vec::with_capacity(batch.len());
        for (work, mut waiter) in batch {
            if let EmbedWork::Embed(text) = work {
                waiter.conn.send(Outgoing::Heartbeat(Queue::Embed, LaneState::Busy));
                waiter.busy_sent = true;
                texts.push(text);
                waiters.push(waiter);
            }
        }
        let done = |waiters: Vec<Waiter>, reply: &dyn Fn(usize) -> Result<Value, WireError>| {
            for (i, w) in waiters.into_iter().enumerate() {
                self.stats.depth.fetch_sub(1, Ordering::AcqRel);
                w.finish(reply(i), Queue::Embed);
            }
        };
        if model.is_none() {
            match loader() {
                Ok(m) => *model = Some(m),
                Err(e) => {
                    let message = e.to_string();
                    done(waiters, &|_| Err(LaneError::Failed(Work::Embed, message.clone()).into()));
                    return;
                }
            }
        }
        self.stats.warm.store(true, Ordering::Release);
        let m = model.as_mut().expect("loaded above");
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let started = Instant::now();
        for w in waiters.iter_mut() {
            w.start(started);
        }
        let results: Vec<Result<Vec<f32>, String>> = match m.embed_many(&refs) {
            Ok(vectors) if vectors.len() == refs.len() => vectors.into_iter().map(Ok).collect(),
            _ => refs.iter().map(|t| m.embed(t).map_err(|e| e.to_string())).collect(),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let name = m.model_name().to_owned();
        done(waiters, &|i| match &results[i] {
            Ok(embedding) => {
                Ok(wire::result_value(&Embedding { embedding: embedding.clone(), model: name.clone(), latency_ms }))
            }
            Err(message) => Err(LaneError::Failed(Work::Embed, message.clone()).into()),
        });
    }
}

/// Lowers the calling thread's CPU priority to nice 10 (Linux; nothing
/// elsewhere): renders are throughput work, so under contention they take
/// about a tenth of the share of the connections and the embed lane, whose
/// answers someone is waiting for, yet still progress when other programs
/// keep the cores busy (SCHED_IDLE or nice 19 starved them behind two busy
/// processes). Without contention the thread runs at full speed.
pub(crate) fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // changes only that thread's nice value (Linux applies PRIO_PROCESS to
    // one task). A failure leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, now.max(10));
    }
}

/// Waits until `idle()` holds or `timeout` passes; true when idle.
pub(crate) fn wait_idle(idle: impl Fn() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if idle() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    idle()
}
