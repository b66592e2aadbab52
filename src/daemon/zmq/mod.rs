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
//!
//! This file owns the transport (settings, the receiver and sender
//! threads); [`messages`] the frame formats; [`handlers`] what each message
//! does. Audio matching lives in `crate::audio::matching`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::scheduler::ConnHandle;
use super::state::Ctx;
use super::wire::Priority;

pub(crate) mod generator;
mod handlers;
mod messages;

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
    /// `ImageReady` carries the PNG's bytes (base64) up to this many bytes
    /// (`--zmq-include-image-data`, `--zmq-image-data-max-bytes`).
    pub image_data_max: Option<usize>,
    /// The session segment of uploaded results' keys (`--zmq-session`).
    pub session: String,
    /// Backends a request's `generator` may name (`--zmq-generators`).
    pub generators: Vec<String>,
    /// How the backends `generator` names are built.
    pub flux: crate::render::ImageOptions,
    /// `--zmq-lora`: the LoRA stack of every ZeroMQ render (empty: the
    /// pack's).
    pub loras: Vec<crate::render::lora::Lora>,
}

/// Largest number of results kept while the controller is unreachable.
const MAX_PENDING: usize = 1000;
/// Largest ZeroMQ message accepted (two base64 images plus the request).
const MAX_MESSAGE: i64 = 192 * 1024 * 1024;
/// Requests of this worker queued or running at once.
const MAX_IN_FLIGHT: usize = 2;

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ZmqError {
    #[error("ZeroMQ address '{0}' must start with tcp://, ipc:// or inproc://")]
    Address(String),
    #[error("ZeroMQ {what}: {source}")]
    Socket { what: String, source: zmq::Error },
    #[error("cannot start a ZeroMQ thread: {0}")]
    Thread(#[from] std::io::Error),
}

fn check_addr(a: &str) -> Result<(), ZmqError> {
    if a.starts_with("tcp://") || a.starts_with("ipc://") || a.starts_with("inproc://") {
        Ok(())
    } else {
        Err(ZmqError::Address(a.to_owned()))
    }
}

impl ZmqConfig {
    /// Checks the addresses before anything is started.
    pub(crate) fn check(&self) -> Result<(), ZmqError> {
        check_addr(&self.work)?;
        check_addr(&self.results)?;
        self.events.as_deref().map_or(Ok(()), check_addr)
    }
}

/// A running worker; [`ZmqWorker::stop`] ends it and flushes results.
pub(crate) struct ZmqWorker {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    results: mpsc::Sender<Value>,
}

impl ZmqWorker {
    /// Connects (never blocks on the peer) and starts receiving.
    pub(crate) fn start(cfg: ZmqConfig, ctx: Arc<Ctx>, rt: tokio::runtime::Handle) -> Result<ZmqWorker, ZmqError> {
        check_addr(&cfg.work)?;
        check_addr(&cfg.results)?;
        if let Some(e) = &cfg.events {
            check_addr(e)?;
        }
        let zctx = zmq::Context::new();
        let err = |what: &str, source: zmq::Error| ZmqError::Socket { what: what.to_owned(), source };
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
        let state = Arc::new(WorkerState {
            ctx,
            cfg: cfg.clone(),
            conn: Mutex::new(new_conn()),
            library: Arc::new(Mutex::new(None)),
            lanes: Mutex::new(std::collections::HashMap::new()),
        });

        let sender = {
            let stop = stop.clone();
            std::thread::Builder::new().name("sqm-zmq-send".into()).spawn(move || send_loop(push, res_rx, stop))?
        };
        let receiver = {
            let (stop, res_tx, in_flight, state) = (stop.clone(), res_tx.clone(), in_flight.clone(), state.clone());
            std::thread::Builder::new().name("sqm-zmq-recv".into()).spawn(move || {
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
                                tracing::info!(topic, bytes = frame.len(), "event on the events channel (logged only)");
                            }
                        }
                    }
                    if pull_ready {
                        if let Ok(frame) = pull.recv_bytes(zmq::DONTWAIT) {
                            in_flight.fetch_add(1, Ordering::AcqRel);
                            let (state, res_tx, in_flight) = (state.clone(), res_tx.clone(), in_flight.clone());
                            rt.spawn(async move {
                                if let Some(reply) = state.handle(frame).await {
                                    let _ = res_tx.send(reply);
                                }
                                in_flight.fetch_sub(1, Ordering::AcqRel);
                            });
                        }
                    }
                }
            })?
        };
        tracing::info!(work = %cfg.work, results = %cfg.results, events = ?cfg.events, "ZeroMQ worker connected");
        Ok(ZmqWorker { stop, threads: vec![receiver, sender], results: res_tx })
    }

    /// Stops receiving, flushes results within the linger, and joins.
    pub(crate) fn stop(mut self) {
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
    library: Arc<Mutex<Option<Vec<crate::audio::matching::AudioCandidate>>>>,
    /// Lanes of the other backends requests named, built on first use.
    lanes: Mutex<std::collections::HashMap<&'static str, Arc<super::scheduler::RenderLane>>>,
}
