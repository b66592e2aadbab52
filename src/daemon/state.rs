//! The state every part of a running daemon shares: configuration, the
//! two lanes, the style and audio services, counters, and the shutdown
//! signal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::scheduler::{EmbedLane, RenderLane};
use super::server::Config;
use super::wire::{self, LaneState, PerLane, Queue, Queued, SqmStatus, Status, SupportedTiers, Warmth};
use crate::interpret::Tier;
use crate::prompt::StyleSource;

/// Shared state of a running daemon.
pub(crate) struct Ctx {
    pub config: Config,
    pub render: Arc<RenderLane>,
    pub embed: Arc<EmbedLane>,
    pub styles: StyleSource,
    pub audio: Arc<super::audio::AudioService>,
    pub(super) started: Instant,
    pub(super) shutdown_tx: watch::Sender<Option<String>>,
    pub(super) next_conn: AtomicU64,
    pub(super) next_arrival: AtomicU64,
    /// Bytes of partial request lines buffered by all connections.
    pub line_budget: super::connection::Budget,
    /// Events to the game server's watcher endpoint (None: `--no-watcher`).
    pub watcher: Option<super::watcher::Watcher>,
    /// The bounded output folder (None: unbounded).
    pub cache: Option<Arc<super::cache::OutputCache>>,
    /// Uploads to the object store (None: no store configured).
    pub uploader: Option<Arc<crate::store::Uploader>>,
    /// Lanes of the backends ZeroMQ requests' `generator` chose.
    pub extra_lanes: std::sync::Mutex<Vec<Arc<RenderLane>>>,
    /// Renders whose reply may still wait on an upload.
    pub publishing: Arc<std::sync::atomic::AtomicUsize>,
}

impl Ctx {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A process-wide arrival stamp for a request just read.
    pub(crate) fn next_arrival(&self) -> u64 {
        self.next_arrival.fetch_add(1, Ordering::Relaxed)
    }

    /// True from the moment a stop is requested: new work is refused.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown_tx.borrow().is_some()
    }

    /// Starts the graceful stop (idempotent).
    pub(crate) fn request_shutdown(&self, why: &str) {
        self.shutdown_tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(why.to_owned());
                true
            } else {
                false
            }
        });
    }

    /// Where a job's image will be written.
    pub(crate) fn planned_path(&self, job: &crate::render::RenderJob) -> std::path::PathBuf {
        let key = crate::render::output::render_key(self.render.backend_name, self.render.model.as_deref(), job);
        crate::render::output::output_path(self.config.output_dir(), self.render.backend_name, &key)
    }

    pub(crate) fn heartbeat_line(&self, queue: Queue, state: LaneState) -> String {
        let depth = match queue {
            Queue::Image => self.render.stats.depth.load(Ordering::Acquire),
            Queue::Embed => self.embed.stats.depth.load(Ordering::Acquire),
        };
        wire::heartbeat(queue, state, depth, monotonic_seconds())
    }

    fn memory_status(&self, loaded: &[crate::render::Resident], budget: Option<u64>) -> wire::MemoryStatus {
        use crate::render::memory;
        let host = memory::host_available();
        let cpu = match loaded.first() {
            Some(r) => r.device == "cpu",
            None => self.config.device == "cpu",
        };
        wire::MemoryStatus {
            budget_bytes: budget,
            resident_bytes: loaded.iter().map(|r| r.bytes).sum(),
            device_free_bytes: if cpu { host } else { None },
            device_total_bytes: if cpu { memory::host_total() } else { None },
            host_available_bytes: host,
        }
    }

    /// The `status` result (protocol.md §3.1).
    pub(crate) fn status(&self) -> Status {
        let (loaded, budget) = self.render.stats.memory.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let image_warm = self.render.stats.warm.load(Ordering::Acquire);
        let embed_warm = self.embed.stats.warm.load(Ordering::Acquire);
        let image = LaneState::of(image_warm, self.render.stats.busy.load(Ordering::Acquire));
        let embed = LaneState::of(embed_warm, self.embed.stats.busy.load(Ordering::Acquire));
        let tiers: Vec<String> = Tier::ALL.iter().map(|t| t.name().to_owned()).collect();
        Status {
            flux: Warmth::of(image_warm),
            image: Some(Warmth::of(image_warm)),
            embed: Warmth::of(embed_warm),
            queue_states: PerLane { image, embed },
            queue_depths: PerLane {
                image: self.render.stats.depth.load(Ordering::Acquire),
                embed: self.embed.stats.depth.load(Ordering::Acquire),
            },
            supported_tiers: SupportedTiers { flux: tiers.clone(), image: tiers, embed: vec!["embed".into()] },
            sqm: Some(SqmStatus {
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                uptime_s: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                socket: self.config.socket.display().to_string(),
                output_dir: self.config.output_dir().display().to_string(),
                genre_packs: self.config.genre_packs.display().to_string(),
                backend: self.render.backend_name.into(),
                model: self.render.model.clone(),
                fidelity: self.render.fidelity.map(|f| f.name().to_owned()),
                depth_model: self.render.depth_model.clone(),
                input_dirs: self.config.input_dir.iter().map(|d| d.display().to_string()).collect(),
                lora_dir: self.config.lora_dir.as_ref().map(|d| d.display().to_string()),
                device: self.config.device.clone(),
                embed_model: self.embed.model_name.clone(),
                heartbeat: self.config.heartbeat,
                queued: Queued {
                    interactive: self.render.queued_interactive.load(Ordering::Relaxed),
                    batch: self.render.queued_batch.load(Ordering::Relaxed),
                },
                watcher: self.watcher.as_ref().map(|w| w.status()),
                object_store: Some(match &self.uploader {
                    Some(u) => u.status(),
                    None => crate::store::Uploader::disabled_status(),
                }),
                cache: self.cache.as_ref().map(|c| c.status()),
                memory: Some(self.memory_status(&loaded, budget)),
                loaded,
            }),
        }
    }
}

/// Seconds on the system monotonic clock (the clock Python's
/// `time.monotonic()` reads).
pub(crate) fn monotonic_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
