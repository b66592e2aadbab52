//! Server lifecycle (protocol.md §11): socket ownership checks, binding,
//! the pid file, accepting connections, warm-up, and the graceful drain on
//! SIGTERM, SIGINT or `shutdown`.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::scheduler::{EmbedLane, EmbedLoader, RenderLane};
use super::state::Ctx;
use crate::prompt::StyleSource;
use crate::render::Backend;

/// The runtime `server::run` is meant for: one thread. Connections and
/// dispatch only frame, parse and route; renders, embeddings and audio run
/// on their lanes' own threads and pack reading on the blocking pool. On one
/// thread a request read, answered and written never wakes a second
/// thread, which is most of what a fresh connection costs (the daemon bench
/// measures it against a bare responder).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// What to warm up at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warmup {
    All,
    Image,
    Embed,
}

/// Daemon configuration, resolved by the CLI.
#[derive(Clone, Debug)]
pub struct Config {
    pub socket: PathBuf,
    /// Where images go; `None`: a new private temp dir `sq-daemon-XXXXXX`,
    /// created once every start-up check has passed and removed at exit if
    /// it is still empty.
    pub output_dir: Option<PathBuf>,
    pub genre_packs: PathBuf,
    pub warmup: Option<Warmup>,
    pub heartbeat: bool,
    pub drain_timeout: Duration,
    /// How often a render's waiters hear `image/busy` again; `None`: once.
    pub busy_heartbeat_interval: Option<Duration>,
    /// Where watcher events go (`<base>/internal/watcher/emit`); None:
    /// `--no-watcher`.
    pub watcher_url: Option<String>,
    /// Uploads to an S3-compatible object store (None: off).
    pub object_store: Option<crate::store::StoreConfig>,
    /// `--max-cache-size-gb` in bytes (0: unbounded; None: the default,
    /// 2 GiB with ZeroMQ or an object store, else unbounded).
    pub cache_max_bytes: Option<u64>,
    /// `--cache-min-age`: renders written or hit this recently stay.
    pub cache_min_age: Duration,
    /// `--render-timeout`: the longest a render may run (None: no limit).
    pub render_timeout: Option<Duration>,
    /// `--render-timeout-grace`: how long a timed-out render may take to
    /// stop before its backend is abandoned and rebuilt.
    pub render_timeout_grace: Duration,
    pub device: String,
    /// Audio plays into the null sink even when a device exists.
    pub audio_null_sink: bool,
    /// The genre audio methods use when a call names none.
    pub default_genre: Option<String>,
    /// Also serve as a ZeroMQ worker.
    pub zmq: Option<super::zmq::ZmqConfig>,
    /// The only folder requests may name image files in (`--input-dir`);
    /// `None` accepts inline images only.
    pub input_dir: Option<PathBuf>,
    /// `--lora-dir`: LoRA files requests and packs may name besides the
    /// genre pack's own.
    pub lora_dir: Option<PathBuf>,
    /// Most client connections served at once; extra ones are refused.
    pub max_connections: usize,
    /// Print one "ready" line on stderr once the socket is served.
    pub announce: bool,
    /// Where to record the output folder for the game server
    /// (`~/.sidequest/daemon-output-dir`); `None` records nothing.
    pub output_pointer: Option<PathBuf>,
}

/// `~/.sidequest/daemon-output-dir`, where the game server looks for the
/// daemon's output folder.
pub(crate) fn default_output_pointer() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".sidequest").join("daemon-output-dir"))
}

impl Config {
    /// The output dir in force (resolved at start when it was automatic).
    pub(crate) fn output_dir(&self) -> &Path {
        self.output_dir.as_deref().unwrap_or(Path::new(""))
    }

    /// Where a request's image `uri` may point: `--input-dir`, then the
    /// output folder (refining earlier renders).
    pub(crate) fn input_roots(&self) -> Vec<PathBuf> {
        self.input_dir.iter().cloned().chain([self.output_dir().to_path_buf()]).collect()
    }
}

/// The output folder's bound with ZeroMQ or an object store (2 GiB, as
/// experimance's `max_cache_size_gb`).
pub(crate) const DEFAULT_BOUNDED_CACHE: u64 = 2 << 30;

/// Default of [`Config::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Bytes of unfinished request lines held across all connections, beyond
/// the first 64 KiB of each line (which each connection may always hold).
pub(crate) const LINE_BUDGET: usize = 64 * 1024 * 1024;

/// The pid file beside a socket: `.sock` replaced by `.pid`, or appended.
pub(crate) fn pid_path(socket: &Path) -> PathBuf {
    let s = socket.to_string_lossy();
    match s.strip_suffix(".sock") {
        Some(stem) => PathBuf::from(format!("{stem}.pid")),
        None => PathBuf::from(format!("{s}.pid")),
    }
}

/// Why the daemon did not start; carries the process exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    pub exit_code: u8,
    pub message: String,
}

fn start_err(exit_code: u8, message: impl Into<String>) -> StartError {
    StartError { exit_code, message: message.into() }
}

/// Checks who owns the socket path (steps 1–4 of §11), removing a stale
/// socket and pid file.
fn claim_socket(socket: &Path) -> Result<(), StartError> {
    let dir = socket.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let meta = std::fs::metadata(dir).map_err(|e| start_err(1, format!("socket directory {}: {e}", dir.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(start_err(
            1,
            format!("refusing to serve in {}: it is world-writable without the sticky bit", dir.display()),
        ));
    }
    let pid_file = pid_path(socket);
    if let Ok(m) = std::fs::symlink_metadata(socket) {
        if !m.file_type().is_socket() {
            return Err(start_err(1, format!("{} exists and is not a socket; leaving it alone", socket.display())));
        }
        let live_pid = read_live_sqm_pid(&pid_file);
        let answering = std::os::unix::net::UnixStream::connect(socket).is_ok();
        if answering || live_pid.is_some() {
            return Err(in_use(socket, live_pid.or_else(|| sqm_pid_by_status(socket))));
        }
        tracing::warn!(socket = %socket.display(), "removing stale socket");
        let _ = std::fs::remove_file(socket);
        let _ = std::fs::remove_file(&pid_file);
    } else if let Some(pid) = read_live_sqm_pid(&pid_file) {
        return Err(in_use(socket, Some(pid)));
    } else {
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(())
}

/// Exit 3: the socket is taken. Says who holds it and how to go on.
fn in_use(socket: &Path, sqm_pid: Option<u32>) -> StartError {
    let s = socket.display();
    let message = match sqm_pid {
        Some(pid) => format!(
            "another sqm daemon (pid {pid}) serves {s}; stop it with `sqm serve --shutdown --socket {s}`, \
             or start this one on another socket with --socket PATH (or SQM_SOCKET=PATH)"
        ),
        None => format!(
            "a process that is not sqm is listening on {s}; start sqm on another socket with --socket PATH \
             (or SQM_SOCKET=PATH), or stop that process"
        ),
    };
    start_err(3, message)
}

/// Asks whoever listens on `socket` for its status (one second at most);
/// the pid when it is an sqm daemon.
fn sqm_pid_by_status(socket: &Path) -> Option<u32> {
    let reply = super::client::request(socket, "status", serde_json::json!({}), Duration::from_secs(1)).ok()?;
    reply.get("result")?.get("sqm")?.get("pid")?.as_u64().map(|p| p as u32)
}

/// The pid in `pid_file` when it names a live process called `sqm` other
/// than this one.
pub(crate) fn read_live_sqm_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    if pid == std::process::id() {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "sqm").then_some(pid)
}

fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    crate::atomic::write(path, contents.as_bytes())
}

/// Binds the socket with mode 0600 and returns it with its inode.
fn bind(socket: &Path) -> Result<(UnixListener, (u64, u64)), StartError> {
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(socket);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = listener.map_err(|e| start_err(1, format!("cannot bind {}: {e}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| start_err(1, format!("cannot chmod {}: {e}", socket.display())))?;
    let m = std::fs::metadata(socket).map_err(|e| start_err(1, format!("{}: {e}", socket.display())))?;
    Ok((listener, (m.dev(), m.ino())))
}

/// Removes `path` only if it is still the inode we created.
fn remove_if_ours(path: &Path, ours: (u64, u64)) {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if (m.dev(), m.ino()) == ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Raises the open-file soft limit to the hard limit, so a flood of
/// clients does not starve the daemon of descriptors.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Runs the daemon until `shutdown` resolves or a client sends `shutdown`,
/// then drains (protocol.md §11). Returns the process exit code. Signals
/// are the caller's business: the CLI turns SIGTERM/SIGINT into `shutdown`.
pub async fn run(
    config: Config,
    (backend, rebuild): (Box<dyn Backend>, Option<super::scheduler::BackendFactory>),
    embed_model: String,
    embed_loader: EmbedLoader,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<u8, StartError> {
    raise_fd_limit();
    let mut config = config;
    if let Some(z) = &config.zmq {
        z.check().map_err(|e| start_err(2, e.to_string()))?;
    }
    let (listener, claim) = Claim::take(&mut config)?;
    let busy_every = config.busy_heartbeat_interval.filter(|_| config.heartbeat);
    let (shutdown_tx, mut shutdown_rx) = watch::channel(None::<String>);
    let watchdog =
        config.render_timeout.map(|timeout| super::scheduler::Watchdog { timeout, grace: config.render_timeout_grace });
    let uploader = match config.object_store.clone().map(crate::store::Uploader::new).transpose() {
        Ok(u) => u.map(Arc::new),
        Err(e) => {
            claim.release();
            return Err(start_err(2, e.to_string()));
        }
    };
    let cache_max = config.cache_max_bytes.unwrap_or(if config.zmq.is_some() || uploader.is_some() {
        DEFAULT_BOUNDED_CACHE
    } else {
        0
    });
    let cache = (cache_max > 0).then(|| {
        let c = super::cache::OutputCache::start(claim.output.path.clone(), cache_max, config.cache_min_age);
        c.kick();
        c
    });
    let watcher = config.watcher_url.clone().map(super::watcher::Watcher::start);
    let render = RenderLane::start(
        backend,
        rebuild,
        claim.output.path.clone(),
        busy_every,
        watchdog,
        shutdown_tx.clone(),
        watcher.clone(),
    );
    let embed = EmbedLane::start(embed_model, embed_loader);
    let ctx = Arc::new(Ctx {
        styles: StyleSource::new(config.genre_packs.clone()).with_lora_dir(config.lora_dir.clone()),
        audio: Arc::new(super::audio::AudioService::new(
            config.genre_packs.clone(),
            config.default_genre.clone(),
            config.audio_null_sink,
        )),
        config: config.clone(),
        render,
        embed,
        started: Instant::now(),
        shutdown_tx,
        next_conn: AtomicU64::new(1),
        next_arrival: AtomicU64::new(0),
        line_budget: super::connection::Budget::new(LINE_BUDGET),
        watcher,
        cache,
        uploader,
        publishing: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        extra_lanes: std::sync::Mutex::new(Vec::new()),
    });
    let zmq_worker = match &config.zmq {
        Some(z) => match super::zmq::ZmqWorker::start(z.clone(), ctx.clone(), tokio::runtime::Handle::current()) {
            Ok(w) => Some(w),
            Err(e) => {
                claim.release();
                return Err(start_err(2, e.to_string()));
            }
        },
        None => None,
    };
    // Every start-up check passed: tell the game server where images go.
    if let Some(pointer) = &config.output_pointer {
        record_output_dir(pointer, &claim.output.path);
    }
    tracing::info!(socket = %config.socket.display(), output_dir = %claim.output.path.display(), backend = ctx.render.backend_name, "sqm daemon listening");
    if config.announce {
        eprintln!("{}", ready_line(&config, ctx.render.backend_name));
    }
    warm_up_in_background(&ctx);

    // The caller's stop signal (SIGTERM/SIGINT in the CLI; anything in tests).
    let stop_ctx = ctx.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop_ctx.request_shutdown("signal");
    });

    let mut connections = accept_until_stopped(&listener, &ctx, &mut shutdown_rx).await;

    // Graceful stop.
    let why = shutdown_rx.borrow().clone().unwrap_or_default();
    tracing::info!(reason = %why, "shutting down");
    drop(listener);
    claim.unlink_socket();
    drain(&ctx).await;
    if let Some(w) = zmq_worker {
        // Running work has finished (or was cancelled): flush its results.
        let _ = tokio::task::spawn_blocking(move || w.stop()).await;
    }
    // Let connections write their last replies.
    let _ =
        tokio::time::timeout(Duration::from_millis(500), async { while connections.join_next().await.is_some() {} })
            .await;
    connections.abort_all();
    if let Some(w) = ctx.watcher.clone() {
        let _ = tokio::task::spawn_blocking(move || w.flush(Duration::from_secs(2))).await;
    }
    claim.release();
    if ctx.render.failed.load(std::sync::atomic::Ordering::Acquire) {
        tracing::error!("stopped: the render lane failed (exit 75)");
        return Ok(75);
    }
    tracing::info!("stopped");
    Ok(0)
}

/// What the daemon holds on the file system while it runs: the socket, the
/// pid file next to it, and the output folder. Each is removed only if it
/// is still the one this process made.
struct Claim {
    socket: PathBuf,
    socket_inode: (u64, u64),
    pid_file: PathBuf,
    pid_inode: (u64, u64),
    output: OutputDir,
}

impl Claim {
    /// Binds the socket, prepares the output folder and writes the pid
    /// file, undoing what was done when a later step fails.
    fn take(config: &mut Config) -> Result<(UnixListener, Claim), StartError> {
        claim_socket(&config.socket)?;
        let (listener, socket_inode) = bind(&config.socket)?;
        let output = match OutputDir::prepare(config.output_dir.as_deref()) {
            Ok(o) => o,
            Err(e) => {
                remove_if_ours(&config.socket, socket_inode);
                return Err(e);
            }
        };
        config.output_dir = Some(output.path.clone());
        let pid_file = pid_path(&config.socket);
        if let Err(e) = write_atomic(&pid_file, &format!("{}\n", std::process::id())) {
            remove_if_ours(&config.socket, socket_inode);
            output.finish();
            return Err(start_err(1, format!("cannot write pid file {}: {e}", pid_file.display())));
        }
        let pid_inode = std::fs::metadata(&pid_file).map(|m| (m.dev(), m.ino())).unwrap_or_default();
        let socket = config.socket.clone();
        Ok((listener, Claim { socket, socket_inode, pid_file, pid_inode, output }))
    }

    /// The socket goes first, so no new client connects while draining.
    fn unlink_socket(&self) {
        remove_if_ours(&self.socket, self.socket_inode);
    }

    fn release(self) {
        self.unlink_socket();
        remove_if_ours(&self.pid_file, self.pid_inode);
        self.output.finish();
    }
}

/// Accepts clients (refusing past `--max-connections`) until a shutdown
/// is requested; returns the connections still open.
async fn accept_until_stopped(
    listener: &UnixListener,
    ctx: &Arc<Ctx>,
    shutdown_rx: &mut watch::Receiver<Option<String>>,
) -> tokio::task::JoinSet<()> {
    let max = ctx.config.max_connections;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() >= max => {
                    tracing::warn!(limit = max, "connection refused: too many clients");
                    connections.spawn(super::connection::refuse(stream));
                }
                Ok((stream, _)) => {
                    connections.spawn(super::connection::serve_connection(stream, ctx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown_rx.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections
}

/// Stops taking work and waits for the lanes to go idle; past
/// `--drain-timeout` the running render is cancelled.
async fn drain(ctx: &Arc<Ctx>) {
    let extra = ctx.extra_lanes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for lane in &extra {
        lane.begin_shutdown();
    }
    ctx.render.begin_shutdown();
    ctx.embed.begin_shutdown();
    let drain_ctx = ctx.clone();
    let timeout = ctx.config.drain_timeout;
    let drained = tokio::task::spawn_blocking(move || {
        // A render's reply may still wait on its upload.
        let idle = || {
            extra.iter().all(|l| l.is_idle())
                && drain_ctx.render.is_idle()
                && drain_ctx.embed.is_idle()
                && drain_ctx.publishing.load(std::sync::atomic::Ordering::Acquire) == 0
        };
        if super::scheduler::wait_idle(idle, timeout) {
            return true;
        }
        tracing::warn!("drain timeout: cancelling running work");
        drain_ctx.render.abort_running();
        for lane in &extra {
            lane.abort_running();
        }
        super::scheduler::wait_idle(idle, Duration::from_secs(10))
    })
    .await
    .unwrap_or(false);
    if !drained {
        tracing::warn!("work still running at exit");
    }
}

/// The one line `sqm serve` prints on stderr when it is ready.
fn ready_line(config: &Config, backend: &str) -> String {
    let models = match config.warmup {
        Some(Warmup::All) => "warming up (image and embed models)",
        Some(Warmup::Image) => "warming up the image model; embed model on first use",
        Some(Warmup::Embed) => "warming up the embed model; image model on first use",
        None => "models load on first use",
    };
    let mut line = format!(
        "sqm ready on {}: output {}, backend {backend}, {models}",
        config.socket.display(),
        config.output_dir().display()
    );
    if let Some(z) = &config.zmq {
        line.push_str(&format!("; ZeroMQ work {} results {}", z.work, z.results));
    }
    line
}

/// The daemon's output folder, and whether it was made for this run.
struct OutputDir {
    path: PathBuf,
    auto: bool,
}

impl OutputDir {
    /// Creates the given folder (0700), or a new private temp dir.
    fn prepare(given: Option<&Path>) -> Result<OutputDir, StartError> {
        match given {
            Some(dir) => {
                crate::render::output::create_private_dir_all(dir)
                    .map_err(|e| start_err(1, format!("cannot create output dir {}: {e}", dir.display())))?;
                Ok(OutputDir { path: dir.to_path_buf(), auto: false })
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("sq-daemon-")
                    .tempdir()
                    .map_err(|e| start_err(1, format!("cannot create an output dir: {e}")))?
                    .keep();
                Ok(OutputDir { path: dir, auto: true })
            }
        }
    }

    /// At exit: an automatic folder that holds no file is removed.
    fn finish(&self) {
        if self.auto && remove_empty_tree(&self.path) {
            tracing::debug!(dir = %self.path.display(), "removed the empty output dir");
        }
    }
}

/// Removes `dir` if it and its subfolders hold no file. True when removed.
fn remove_empty_tree(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let mut empty = true;
    for e in entries.flatten() {
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        empty &= is_dir && remove_empty_tree(&e.path());
    }
    empty && std::fs::remove_dir(dir).is_ok()
}

fn warm_up_in_background(ctx: &Arc<Ctx>) {
    let Some(which) = ctx.config.warmup else { return };
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    let conn = super::scheduler::ConnHandle { id: 0, gone: Arc::new(AtomicBool::new(false)), events };
    if matches!(which, Warmup::All | Warmup::Image) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let arrival = ctx.next_arrival();
        ctx.render.submit_warmup(
            "image".into(),
            arrival,
            super::scheduler::Waiter::new(Value::Null, conn.clone(), false, tx),
        );
        tokio::spawn(async move {
            if let Ok(r) = rx.await {
                match r.result {
                    Ok(v) => tracing::info!(result = %v, "image backend warm"),
                    Err(e) => tracing::warn!(error = %e.message, "image warm-up failed"),
                }
            }
        });
    }
    if matches!(which, Warmup::All | Warmup::Embed) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.embed.submit_warmup(super::scheduler::Waiter::new(Value::Null, conn, false, tx));
        tokio::spawn(async move {
            if let Ok(r) = rx.await {
                match r.result {
                    Ok(v) => tracing::info!(result = %v, "embed model warm"),
                    Err(e) => tracing::warn!(error = %e.message, "embed warm-up failed"),
                }
            }
        });
    }
}

/// Writes the output dir to `~/.sidequest/daemon-output-dir` for the game
/// server. Failure is logged, not fatal.
fn record_output_dir(pointer: &Path, out: &Path) {
    let abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let dir = pointer.parent().unwrap_or(Path::new("."));
    let result = std::fs::create_dir_all(dir).and_then(|_| write_atomic(pointer, &format!("{}\n", abs.display())));
    if let Err(e) = result {
        tracing::warn!(error = %e, pointer = %pointer.display(), "cannot record the output dir");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_paths() {
        assert_eq!(pid_path(Path::new("/tmp/sidequest-renderer.sock")), PathBuf::from("/tmp/sidequest-renderer.pid"));
        assert_eq!(pid_path(Path::new("/tmp/s")), PathBuf::from("/tmp/s.pid"));
    }
}
