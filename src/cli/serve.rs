//! `sqm serve`: run the daemon, or talk to a running one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::{json, Value};

use crate::daemon::server::{self, Config, Warmup};
use crate::daemon::{client, wire};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WarmTarget {
    All,
    Flux,
    Image,
    Embed,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Speaks newline-delimited JSON on a Unix socket (methods ping, status, warm_up,
shutdown, render, embed, cancel). Prints one \"sqm ready on …\" line on stderr when serving.
Exit codes: 0 stopped cleanly, 1 cannot start (or no daemon for --status/--shutdown/--send,
or an error reply to --send), 2 bad flags, 3 the socket is taken (by another sqm daemon, or by
a program that is not sqm).

Examples:
  sqm serve                                  # sketch backend, built-in packs
  sqm serve --socket /tmp/sq.sock --output-dir ~/sq-images
  sqm serve --status --json
  sqm serve --send '{\"id\":1,\"method\":\"ping\"}'      # sqm's own client: prints the answer lines")]
pub struct Args {
    /// Socket path.
    #[arg(long, env = "SQM_SOCKET", default_value = "/tmp/sidequest-renderer.sock")]
    pub socket: PathBuf,
    /// Where images are written (default: a new private temp dir).
    #[arg(long, env = "SIDEQUEST_OUTPUT_DIR", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Directory of genre packs (default: the built-in example packs).
    #[arg(long, env = "SIDEQUEST_GENRE_PACKS", value_name = "DIR")]
    pub genre_packs: Option<PathBuf>,
    /// Image backend.
    #[arg(long, env = "SQM_BACKEND", default_value = "sketch", value_parser = crate::render::BACKENDS)]
    pub backend: String,
    #[command(flatten)]
    pub flux: super::FluxArgs,
    /// all-MiniLM-L6-v2 model folder (default: $SQM_EMBED_MODEL, then $XDG_DATA_HOME/sqm/models/, the
    /// ./.models/ (a checkout), then the Hugging Face hub cache).
    #[arg(long, value_name = "DIR")]
    pub embed_model: Option<PathBuf>,
    /// Warm up at start (default all).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "all", value_name = "WHAT")]
    pub warmup: Option<WarmTarget>,
    /// Do not warm anything up at start.
    #[arg(long, conflicts_with = "warmup")]
    pub no_warmup: bool,
    /// Audio methods play into the silent real-time null sink even when a sound device exists.
    #[arg(long)]
    pub audio_null_sink: bool,
    /// Also work for a ZeroMQ controller (experimance's render protocol), beside the Unix socket.
    #[arg(long)]
    pub zmq: bool,
    /// Where the controller PUSHes work (the worker connects PULL).
    #[arg(long, default_value = "tcp://localhost:5564", value_name = "ADDR", requires = "zmq")]
    pub zmq_work: String,
    /// Where the controller PULLs results (the worker connects PUSH).
    #[arg(long, default_value = "tcp://localhost:5565", value_name = "ADDR", requires = "zmq")]
    pub zmq_results: String,
    /// The controller's events PUB address (subscribed and logged only).
    #[arg(long, value_name = "ADDR", requires = "zmq")]
    pub zmq_events: Option<String>,
    /// Scheduler priority of ZeroMQ renders.
    #[arg(long, default_value = "interactive", value_parser = ["interactive", "batch"], requires = "zmq")]
    pub zmq_priority: String,
    /// Genre pack whose audio library answers AudioRenderRequest (default: the built-in pack).
    #[arg(long, value_name = "DIR", requires = "zmq")]
    pub pack: Option<PathBuf>,
    /// ImageReady results carry the PNG itself (`image_data`, base64) besides its URI.
    #[arg(long, requires = "zmq")]
    pub zmq_include_image_data: bool,
    /// Larger PNGs are left out of `image_data` (with a warning in the result).
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES", requires = "zmq")]
    pub zmq_image_data_max_bytes: usize,
    /// Session segment of uploaded results' keys (artifacts/zmq/<SESSION>/scenes/<sha256>.png).
    #[arg(long, default_value = "default", value_name = "SESSION", requires = "zmq")]
    pub zmq_session: String,
    /// Backends a RenderRequest's `generator` may choose (comma-separated; default: --backend,
    /// sketch and null). At most one of them may load weights (flux).
    #[arg(long, value_delimiter = ',', value_parser = crate::render::BACKENDS, value_name = "LIST", requires = "zmq")]
    pub zmq_generators: Option<Vec<String>>,
    /// A LoRA (.safetensors) every ZeroMQ render takes, at SCALE 0 to 2 (default 1); repeatable,
    /// up to 8. Replaces the pack's LoRAs for those renders.
    #[arg(long = "zmq-lora", value_name = "FILE[:SCALE]", value_parser = super::parse_lora, requires = "zmq")]
    pub zmq_loras: Vec<(PathBuf, f64)>,
    /// World whose audio.yaml replaces the genre's for AudioRenderRequest.
    #[arg(long, requires = "zmq")]
    pub world: Option<String>,
    /// The only folder whose image files requests may name (reference and depth images, by path
    /// or file:// URI); without it only inline images (data URL or base64) are accepted.
    #[arg(long, env = "SQM_INPUT_DIR", value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Most client connections served at once; extra ones get one error line and are closed.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS, value_name = "N", value_parser = connection_limit)]
    pub max_connections: usize,
    /// Send no heartbeat event lines (only for clients that read exactly one line per request).
    #[arg(long)]
    pub no_heartbeat: bool,
    /// Seconds running work may take to finish when stopping.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub drain_timeout: f64,
    /// Repeat the `image` busy heartbeat this often to the connections
    /// waiting on a render, so a long render never looks like a dead
    /// daemon (0 = only at the start).
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    pub busy_heartbeat_interval: f64,
    /// The game server whose watcher endpoint (`<URL>/internal/watcher/emit`) hears about
    /// compose failures and render timeouts.
    #[arg(long, env = "SIDEQUEST_SERVER_URL", default_value = "http://127.0.0.1:8765", value_name = "URL")]
    pub watcher_url: String,
    /// Send no watcher events.
    #[arg(long)]
    pub no_watcher: bool,
    #[command(flatten)]
    pub store: super::object_store::StoreArgs,
    /// Bound the output folder: above this many GiB the least recently used renders are removed
    /// down to 80 % (0 = unbounded; default 2 with --zmq or an object store, else unbounded, as the
    /// game server links earlier renders by their path).
    #[arg(long, env = "SQM_MAX_CACHE_SIZE_GB", value_name = "GB")]
    pub max_cache_size_gb: Option<f64>,
    /// Renders written or hit this recently are never removed by the bound.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub cache_min_age: f64,
    /// Longest a render may run before it is stopped and answered
    /// RENDER_TIMEOUT (0 = no limit; cache hits and warm-ups are exempt).
    #[arg(long, env = "SQM_RENDER_TIMEOUT", default_value_t = 300.0, value_name = "SECS")]
    pub render_timeout: f64,
    /// After a render timeout, how long the backend may take to stop before
    /// it is abandoned and a fresh one loaded.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub render_timeout_grace: f64,
    /// Ask a running daemon for its status and exit.
    #[arg(long, conflicts_with = "shutdown")]
    pub status: bool,
    /// Send one request line to a running daemon, print every line it answers with (heartbeats
    /// and progress included) up to the reply, and exit (1 when the reply is an error).
    #[arg(long, value_name = "JSON", conflicts_with_all = ["status", "shutdown"])]
    pub send: Option<String>,
    /// Ask a running daemon to stop and exit.
    #[arg(long)]
    pub shutdown: bool,
    /// Machine-readable output for --status and --shutdown.
    #[arg(long)]
    pub json: bool,
}

fn connection_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=65536).contains(&n) => Ok(n),
        _ => Err("must be a whole number from 1 to 65536".into()),
    }
}

impl Args {
    /// True when this call runs the daemon (not --status/--shutdown/--send).
    pub(crate) fn runs_daemon(&self) -> bool {
        !(self.status || self.shutdown || self.send.is_some())
    }
}

/// Everything `server::run` needs, resolved from the flags.
pub struct Setup {
    pub config: Config,
    pub backend: Box<dyn crate::render::Backend>,
    /// Builds a fresh backend (after a render that never returned).
    pub rebuild: crate::daemon::scheduler::BackendFactory,
    pub embed_model: String,
    pub embed_loader: crate::daemon::scheduler::EmbedLoader,
}

/// Runs the daemon, or talks to one. `announce`: print the ready line.
pub(crate) fn run(args: Args, announce: bool) -> anyhow::Result<u8> {
    if let Some(line) = &args.send {
        return send(&args, line);
    }
    if args.status || args.shutdown {
        return talk(&args);
    }
    // CPU image work (candle's products) runs on rayon's global pool: its
    // threads, like the render backend's, yield the cores to the embed lane.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("sqm-image-{i}"))
        .start_handler(|_| crate::daemon::scheduler::background_priority())
        .build_global();
    // A bad SIDEQUEST_DAEMON_FIDELITY stops the daemon before it binds.
    if let Err(super::FidelityError::Env(message)) = args.flux.options(&args.backend) {
        eprintln!("error: {message}");
        return Ok(super::exit::FAILURE);
    }
    let setup = setup(&args, announce)?;
    let runtime = server::runtime()?;
    let socket = args.socket.clone();
    // Signal handlers are registered inside the runtime.
    let shutdown = {
        let _in_runtime = runtime.enter();
        stop_on_signals(socket)
    };
    let Setup { config, backend, rebuild, embed_model, embed_loader } = setup;
    match runtime.block_on(server::run(config, (backend, Some(rebuild)), embed_model, embed_loader, shutdown)) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(e.exit_code)
        }
    }
}

/// Resolves the daemon's configuration, backend and embedding loader from
/// the flags, without starting anything (tests run the result in-process).
pub fn setup(args: &Args, announce: bool) -> anyhow::Result<Setup> {
    let options = args.flux.options(&args.backend)?;
    let output_dir = args.output_dir.clone();
    let genre_packs = match &args.genre_packs {
        Some(p) => p.clone(),
        None => crate::pack::embedded::packs_root().context("cannot unpack the built-in example packs")?,
    };
    let warmup = if args.no_warmup {
        None
    } else {
        Some(match args.warmup.unwrap_or(WarmTarget::All) {
            WarmTarget::All => Warmup::All,
            WarmTarget::Flux | WarmTarget::Image => Warmup::Image,
            WarmTarget::Embed => Warmup::Embed,
        })
    };
    if !(args.drain_timeout.is_finite() && args.drain_timeout >= 0.0) {
        anyhow::bail!("--drain-timeout must be a number of seconds ≥ 0");
    }
    let busy = args.busy_heartbeat_interval;
    if !(busy.is_finite() && (busy == 0.0 || busy >= 0.1)) {
        anyhow::bail!("--busy-heartbeat-interval must be 0 (off) or a number of seconds ≥ 0.1");
    }
    let timeout = args.render_timeout;
    if !(timeout.is_finite() && (timeout == 0.0 || timeout >= 0.1)) {
        anyhow::bail!("--render-timeout must be 0 (off) or a number of seconds ≥ 0.1");
    }
    let grace = args.render_timeout_grace;
    if !(grace.is_finite() && grace >= 0.0) {
        anyhow::bail!("--render-timeout-grace must be a number of seconds ≥ 0");
    }
    if args.no_heartbeat && (timeout == 0.0 || timeout >= 600.0) {
        tracing::warn!(
            "heartbeats are off and --render-timeout is {}: a client that gives up after 600 s of silence may drop long renders",
            if timeout == 0.0 { "off".to_owned() } else { format!("{timeout} s") }
        );
    }
    let url = args.watcher_url.trim();
    if !(args.no_watcher || url.starts_with("http://") || url.starts_with("https://")) {
        anyhow::bail!("--watcher-url (or SIDEQUEST_SERVER_URL) must be an http:// or https:// URL");
    }
    let cache_max_bytes = match args.max_cache_size_gb {
        None => None,
        Some(gb) if (0.0..1e9).contains(&gb) => Some((gb * (1u64 << 30) as f64).round() as u64),
        Some(_) => anyhow::bail!("--max-cache-size-gb must be a number of GiB ≥ 0 (0 = unbounded)"),
    };
    let min_age = args.cache_min_age;
    if !(min_age.is_finite() && min_age >= 0.0) {
        anyhow::bail!("--cache-min-age must be a number of seconds ≥ 0");
    }
    let config = Config {
        object_store: args.store.resolve()?,
        cache_max_bytes,
        cache_min_age: Duration::from_secs_f64(min_age),
        socket: args.socket.clone(),
        output_dir,
        genre_packs,
        warmup,
        heartbeat: !args.no_heartbeat,
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        busy_heartbeat_interval: (busy > 0.0).then(|| Duration::from_secs_f64(busy)),
        render_timeout: (timeout > 0.0).then(|| Duration::from_secs_f64(timeout)),
        watcher_url: (!args.no_watcher).then(|| crate::daemon::watcher::endpoint(url)),
        render_timeout_grace: Duration::from_secs_f64(grace),
        // What `status` reports: flux's --device (empty: the best one
        // available); the sketch and null backends draw on the CPU.
        device: match (args.backend.as_str(), args.flux.device.as_str()) {
            ("flux", "") => "auto".into(),
            ("flux", d) => d.into(),
            _ => "cpu".into(),
        },
        audio_null_sink: args.audio_null_sink,
        zmq: if args.zmq {
            Some(crate::daemon::zmq::ZmqConfig {
                work: args.zmq_work.clone(),
                results: args.zmq_results.clone(),
                events: args.zmq_events.clone(),
                priority: if args.zmq_priority == "batch" {
                    crate::daemon::wire::Priority::Batch
                } else {
                    crate::daemon::wire::Priority::Interactive
                },
                pack: match &args.pack {
                    Some(p) => p.clone(),
                    None => crate::pack::embedded::default_pack().context("cannot unpack the built-in example pack")?,
                },
                world: args.world.clone(),
                image_data_max: args.zmq_include_image_data.then_some(args.zmq_image_data_max_bytes),
                session: args.zmq_session.clone(),
                generators: zmq_generators(&args.backend, args.zmq_generators.as_deref())?,
                flux: options.clone(),
                loras: crate::render::lora::from_paths(&args.zmq_loras)
                    .map_err(|e| anyhow::anyhow!("--zmq-lora: {e}"))?,
            })
        } else {
            None
        },
        lora_dir: match &args.flux.lora_dir {
            Some(d) if !d.is_dir() => anyhow::bail!("--lora-dir {}: not a directory", d.display()),
            other => other.clone(),
        },
        input_dir: match &args.input_dir {
            Some(d) if !d.is_dir() => anyhow::bail!("--input-dir {}: not a directory", d.display()),
            other => other.clone(),
        },
        max_connections: args.max_connections,
        announce,
        default_genre: if args.genre_packs.is_none() {
            Some(crate::pack::embedded::DEFAULT_GENRE.into())
        } else {
            None
        },
        output_pointer: server::default_output_pointer(),
    };
    let backend = crate::render::backend_by_name(&args.backend, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    // A fresh instance, for when a timed-out render never returns.
    let name = args.backend.clone();
    let rebuild: crate::daemon::scheduler::BackendFactory =
        Box::new(move || crate::render::backend_by_name(&name, &options).map_err(|e| e.to_string()));
    let explicit = args.embed_model.clone();
    let loader: crate::daemon::scheduler::EmbedLoader = Box::new(move || {
        let dir = crate::embed::resolve(explicit.as_deref())?;
        tracing::info!(model = %dir.display(), "loading the embedding model");
        let model = crate::embed::MiniLm::load(&dir, candle_core::Device::Cpu)?;
        Ok(Box::new(model) as Box<dyn crate::embed::Embedder>)
    });
    Ok(Setup { config, backend, rebuild, embed_model: crate::embed::MODEL_NAME.into(), embed_loader: loader })
}

/// The backends a ZeroMQ request's `generator` may choose. Renders of
/// every lane share the machine, so at most one backend with weights (a
/// GPU's worth of memory) may be among them and the configured one.
fn zmq_generators(configured: &str, list: Option<&[String]>) -> anyhow::Result<Vec<String>> {
    let mut enabled = match list {
        Some(l) => l.to_vec(),
        None => crate::daemon::zmq::generator::default_enabled(configured),
    };
    enabled.sort();
    enabled.dedup();
    let mut weighted: Vec<&str> =
        enabled.iter().map(String::as_str).chain([configured]).filter(|b| !matches!(*b, "sketch" | "null")).collect();
    weighted.sort_unstable();
    weighted.dedup();
    if weighted.len() > 1 {
        anyhow::bail!(
            "--zmq-generators: at most one backend with weights may run on this worker (got {})",
            weighted.join(", ")
        );
    }
    Ok(enabled)
}

/// The daemon's stop signal: resolves at the first SIGTERM or SIGINT. A
/// second one ends the process at once, removing the socket and pid file
/// when the pid file is still ours (protocol.md §11).
fn stop_on_signals(socket: PathBuf) -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (term, int) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    if let (Ok(mut term), Ok(mut int)) = (term, int) {
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                match tx.take() {
                    Some(first) => {
                        let _ = first.send(());
                    }
                    None => {
                        tracing::warn!("second signal: exiting now");
                        let pid_file = server::pid_path(&socket);
                        let ours = std::fs::read_to_string(&pid_file)
                            .is_ok_and(|p| p.trim() == std::process::id().to_string());
                        if ours {
                            let _ = std::fs::remove_file(&socket);
                            let _ = std::fs::remove_file(&pid_file);
                        }
                        std::process::exit(0);
                    }
                }
            }
        });
    }
    async move {
        // Dropped unsent only when the handlers could not be installed: then
        // only a `shutdown` request stops the daemon.
        if rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `--send`: one raw request, every line of the answer printed as is.
fn send(args: &Args, line: &str) -> anyhow::Result<u8> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut print = |l: &str| writeln!(out, "{l}").and_then(|_| out.flush());
    match client::send_line(&args.socket, line, Duration::from_secs(600), &mut print) {
        Ok(reply) if reply.get("error").is_some_and(|e| !e.is_null()) => Ok(super::exit::FAILURE),
        Ok(_) => Ok(super::exit::OK),
        Err(client::ClientError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(super::exit::OK),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(super::exit::FAILURE)
        }
    }
}

fn talk(args: &Args) -> anyhow::Result<u8> {
    let method = if args.status { "status" } else { "shutdown" };
    let fail = |code: &str, message: String| {
        if args.json {
            println!("{}", json!({"error": {"code": code, "message": message}}));
        } else {
            eprintln!("error: {message}");
        }
        Ok(super::exit::FAILURE)
    };
    let reply = match client::request(&args.socket, method, json!({}), Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => {
            let code = match &e {
                client::ClientError::NoSocket(_) | client::ClientError::Connect { .. } => "NO_DAEMON",
                _ => "NOT_SQM",
            };
            if let client::ClientError::Connect { .. } = e {
                // Refused: clean up a stale socket unless a live daemon is recorded.
                let pid_file = server::pid_path(&args.socket);
                if server::read_live_sqm_pid(&pid_file).is_none() {
                    let _ = std::fs::remove_file(&args.socket);
                    let _ = std::fs::remove_file(&pid_file);
                }
            }
            let message = match code {
                "NOT_SQM" => format!(
                    "the process listening on {} does not answer like an sqm daemon ({e})",
                    args.socket.display()
                ),
                _ => e.to_string(),
            };
            return fail(code, message);
        }
    };
    if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
        let message = format!("{}: {}", err["code"].as_str().unwrap_or("?"), err["message"].as_str().unwrap_or("?"));
        return fail(err["code"].as_str().unwrap_or("ERROR"), message);
    }
    let result = reply.get("result").cloned().unwrap_or(Value::Null);
    if args.json {
        println!("{result}");
    } else if args.status {
        print_status(&result, &args.socket);
    } else {
        println!("daemon at {} is stopping", args.socket.display());
    }
    Ok(super::exit::OK)
}

fn print_status(s: &Value, socket: &std::path::Path) {
    let typed = serde_json::from_value::<wire::Status>(s.clone()).ok();
    let Some((st, q)) = typed.as_ref().and_then(|st| st.sqm.as_ref().map(|q| (st, q))) else {
        // Another daemon speaking the protocol (the reference one, say).
        let state = |k: &str| s[k].as_str().unwrap_or("unknown").to_owned();
        println!("a daemon that is not sqm answers at {}", socket.display());
        println!("  image        {}", if s["image"].is_string() { state("image") } else { state("flux") });
        println!("  embed        {}", state("embed"));
        return;
    };
    println!("sqm daemon {} (pid {}), up {} s", q.version, q.pid, q.uptime_s);
    println!("  socket       {}", q.socket);
    println!("  output dir   {}", q.output_dir);
    println!("  genre packs  {}", q.genre_packs);
    println!(
        "  image        {} ({} backend), {}, depth {}",
        st.image.unwrap_or(st.flux).as_str(),
        q.backend,
        st.queue_states.image.as_str(),
        st.queue_depths.image
    );
    println!(
        "  embed        {} ({}), {}, depth {}",
        st.embed.as_str(),
        q.embed_model,
        st.queue_states.embed.as_str(),
        st.queue_depths.embed
    );
    if let Some(line) = q.memory.as_ref().and_then(|m| memory_line(m, &q.loaded)) {
        println!("  memory       {line}");
    }
}

/// `11.6 GiB resident of 22.5 GiB budget (cpu 9.7 GiB free): transformer
/// 11.5 GiB f32, vae_decoder 0.1 GiB f32`; None when nothing is loaded.
fn memory_line(m: &wire::MemoryStatus, loaded: &[crate::render::Resident]) -> Option<String> {
    use crate::render::memory::gib;
    let first = loaded.first()?;
    let mut line = format!("{} resident", gib(m.resident_bytes));
    if let Some(b) = m.budget_bytes {
        line.push_str(&format!(" of {} budget", gib(b)));
    }
    if let Some(free) = m.device_free_bytes {
        line.push_str(&format!(" ({} {} free)", first.device, gib(free)));
    }
    let parts: Vec<String> = loaded.iter().map(|r| format!("{} {} {}", r.component, gib(r.bytes), r.dtype)).collect();
    Some(format!("{line}: {}", parts.join(", ")))
}
