//! Helpers for daemon tests: the daemon on a temp socket, run in this
//! process (`Daemon::start`: the same flag parsing and `server::run` as
//! `sqm serve`, stopped through its shutdown future) or as the real binary
//! (`Daemon::spawn`, for what needs a process: signals, pids, the
//! environment, stderr).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SQM: &str = env!("CARGO_BIN_EXE_sqm");

/// The embedding model fetched by scripts/setup.sh.
pub fn embed_model() -> String {
    let dir = std::env::var("SQM_EMBED_MODEL")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.models/all-MiniLM-L6-v2").to_owned());
    assert!(Path::new(&dir).join("model.safetensors").is_file(), "no model at {dir}: run scripts/setup.sh");
    dir
}

/// How a test daemon runs.
enum Runner {
    Child(Child),
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        /// The thread driving the daemon's runtime, as `sqm serve` does.
        thread: Option<std::thread::JoinHandle<Result<u8, sqm::daemon::server::StartError>>>,
    },
}

pub struct Daemon {
    runner: Runner,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub out: PathBuf,
}

impl Daemon {
    /// A daemon in this process with `sqm serve`'s flags.
    pub fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        use clap::Parser;
        let socket = dir.path().join("d.sock");
        let out = dir.path().join("out");
        let mut argv: Vec<std::ffi::OsString> = vec!["sqm".into(), "serve".into(), "--socket".into()];
        argv.extend([socket.clone().into_os_string(), "--output-dir".into(), out.clone().into_os_string()]);
        argv.extend(extra.iter().map(Into::into));
        let sqm::cli::Command::Serve(args) = sqm::cli::Cli::try_parse_from(argv).unwrap().command else {
            unreachable!("parsed a serve command")
        };
        let mut setup = sqm::cli::serve::setup(&args, false).unwrap();
        setup.config.output_pointer = Some(dir.path().join(".sidequest/daemon-output-dir"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sqm::cli::serve::Setup { config, backend, rebuild, embed_model, embed_loader } = setup;
        let thread = std::thread::spawn(move || {
            let rt = sqm::daemon::server::runtime().unwrap();
            rt.block_on(sqm::daemon::server::run(config, (backend, Some(rebuild)), embed_model, embed_loader, async {
                let _ = stopped.await;
            }))
        });
        let runner = Runner::InProcess { stop: Some(stop), thread: Some(thread) };
        let d = Daemon { runner, dir, socket, out };
        d.wait_ready();
        d
    }

    /// The real `sqm serve` binary, with a home of its own.
    pub fn spawn(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Self::spawn_in(dir, extra)
    }

    pub fn spawn_in(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        Self::spawn_with_env(dir, extra, &[])
    }

    /// The binary with extra environment (the hidden test knobs).
    pub fn spawn_with_env(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let socket = dir.path().join("d.sock");
        let out = dir.path().join("out");
        let child = Command::new(SQM)
            // Run where no `.models/` is, so only the flags find a model.
            .current_dir(dir.path())
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--output-dir")
            .arg(&out)
            .args(extra)
            .env("HOME", dir.path())
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env_remove("SIDEQUEST_GENRE_PACKS")
            .env_remove("SQM_EMBED_MODEL")
            .env("HF_HOME", dir.path().join("hf"))
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("SIDEQUEST_OUTPUT_DIR")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let d = Daemon { runner: Runner::Child(child), dir, socket, out };
        d.wait_ready();
        d
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.runner {
            Runner::Child(c) => c,
            Runner::InProcess { .. } => panic!("an in-process daemon has no process of its own: use Daemon::spawn"),
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Ready once it answers and has written its pid file (just after
            // binding the socket).
            if UnixStream::connect(&self.socket).is_ok() && self.socket.with_extension("pid").exists() {
                return;
            }
            if let Runner::InProcess { thread: Some(h), .. } = &self.runner {
                assert!(!h.is_finished(), "the in-process daemon stopped before serving");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("daemon did not start");
    }

    pub fn pid(&self) -> i32 {
        match &self.runner {
            Runner::Child(c) => c.id() as i32,
            Runner::InProcess { .. } => std::process::id() as i32,
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::new(&self.socket)
    }

    /// One request on a new connection; returns the reply (events skipped).
    pub fn call(&self, line: &str) -> Value {
        let mut c = self.connect();
        c.send(line);
        c.reply()
    }

    pub fn signal(&mut self, sig: i32) {
        let pid = self.child().id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, sig) };
    }

    /// Waits for exit and returns the code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child().try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the spawned daemon (SIGTERM) and returns what it wrote on stderr.
    pub fn stop_and_stderr(mut self) -> String {
        self.signal(libc::SIGTERM);
        let _ = self.wait(Duration::from_secs(10));
        let mut text = String::new();
        if let Some(mut err) = self.child().stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        text
    }

    /// Stops the spawned daemon and hands back its folder (for a restart
    /// on the same output dir) and what it wrote on stderr.
    pub fn stop_keeping_dir(mut self) -> (tempfile::TempDir, String) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.stop_and_stderr())
    }

    pub fn pngs(&self) -> Vec<PathBuf> {
        let dir = self.out.join("sketch");
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Runner::InProcess { stop, thread } => {
                // Queued work is dropped at shutdown; a running render ends
                // or is cancelled.
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(h) = thread.take() {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while !h.is_finished() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if h.is_finished() {
                        let _ = h.join();
                    }
                }
            }
        }
    }
}

pub struct Conn {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    pub fn new(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    pub fn send(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).unwrap();
        self.stream.write_all(b"\n").unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next line, parsed; `None` at EOF.
    pub fn line(&mut self) -> Option<Value> {
        let mut buf = String::new();
        match self.reader.read_line(&mut buf) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(buf.trim_end()).unwrap_or_else(|e| panic!("{e}: {buf}"))),
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next non-event line.
    pub fn reply(&mut self) -> Value {
        loop {
            let v = self.line().expect("EOF before reply");
            if v.get("event").is_none() {
                return v;
            }
        }
    }

    /// The next line if one arrives within `d`; `None` when the peer
    /// stays quiet.
    pub fn line_within(&mut self, d: Duration) -> Option<Value> {
        self.stream.set_read_timeout(Some(d)).unwrap();
        let mut buf = String::new();
        let got = match self.reader.read_line(&mut buf) {
            Ok(n) if n > 0 => Some(serde_json::from_str(buf.trim_end()).unwrap_or_else(|e| panic!("{e}: {buf}"))),
            Ok(_) => None,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
            Err(e) => panic!("read: {e}"),
        };
        self.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        got
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }
}

/// A daemon configuration for tests that call `server::run` themselves:
/// the socket and output under `dir`, the example packs, no heartbeats, no
/// watchdog, no watcher.
pub fn server_config(dir: &Path, socket: &Path) -> sqm::daemon::server::Config {
    sqm::daemon::server::Config {
        object_store: None,
        cache_max_bytes: None,
        cache_min_age: std::time::Duration::from_secs(60),
        socket: socket.to_path_buf(),
        output_dir: Some(dir.join("out")),
        genre_packs: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs"),
        warmup: None,
        heartbeat: false,
        drain_timeout: Duration::from_secs(5),
        busy_heartbeat_interval: None,
        watcher_url: None,
        render_timeout: None,
        render_timeout_grace: Duration::from_secs(30),
        device: "cpu".into(),
        audio_null_sink: true,
        default_genre: None,
        zmq: None,
        input_dir: None,
        lora_dir: None,
        max_connections: sqm::daemon::server::DEFAULT_MAX_CONNECTIONS,
        announce: false,
        output_pointer: None,
    }
}

/// A copy of the example pack at `<temp>/packs/ashfall` (without its
/// prerender cache): (temp dir, pack path).
pub fn copy_example_pack() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("packs").join("ashfall");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall");
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&src).unwrap();
        if rel.starts_with(".cache") {
            continue;
        }
        let to = dst.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    (dir, dst)
}

/// A ZeroMQ controller played by a test: PUSH for work, PULL for results,
/// bound on free loopback ports (or the given addresses).
pub struct Controller {
    _ctx: zmq::Context,
    pub push: zmq::Socket,
    pub pull: zmq::Socket,
    pub work: String,
    pub results: String,
}

impl Controller {
    pub fn bind(addrs: Option<(&str, &str)>) -> Controller {
        let ctx = zmq::Context::new();
        let push = ctx.socket(zmq::PUSH).unwrap();
        let pull = ctx.socket(zmq::PULL).unwrap();
        push.set_linger(0).unwrap();
        pull.set_linger(0).unwrap();
        push.set_sndtimeo(5000).unwrap();
        pull.set_rcvtimeo(20_000).unwrap();
        let (w, r) = addrs.unwrap_or(("tcp://127.0.0.1:*", "tcp://127.0.0.1:*"));
        push.bind(w).unwrap();
        pull.bind(r).unwrap();
        let work = push.get_last_endpoint().unwrap().unwrap();
        let results = pull.get_last_endpoint().unwrap().unwrap();
        Controller { _ctx: ctx, push, pull, work, results }
    }

    pub fn send(&self, v: &Value) {
        self.push.send(v.to_string().as_bytes(), 0).expect("a worker takes the message");
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.push.send(bytes, 0).unwrap();
    }

    pub fn recv(&self) -> Value {
        let b = self.pull.recv_bytes(0).expect("a result within 20 s");
        serde_json::from_slice(&b).unwrap()
    }

    /// A worker daemon connected to this controller, in this process.
    pub fn worker(&self, extra: &[&str]) -> Daemon {
        Daemon::start(&self.worker_args(extra))
    }

    /// A worker daemon as its own process, with no embedding model.
    pub fn spawn_worker(&self, extra: &[&str]) -> Daemon {
        Daemon::spawn(&self.worker_args(extra))
    }

    pub fn worker_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args =
            vec!["--no-warmup", "--no-heartbeat", "--zmq", "--zmq-work", &self.work, "--zmq-results", &self.results];
        args.extend_from_slice(extra);
        args
    }
}

/// Polls `done` every 10 ms until it holds or `within` passes; its last answer.
pub fn wait_for(mut done: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// A short description of a line for sequence assertions.
pub fn tag(v: &Value) -> String {
    match v.get("event").and_then(Value::as_str) {
        Some("heartbeat") => format!("hb({},{})", v["queue"].as_str().unwrap(), v["state"].as_str().unwrap()),
        Some("progress") => format!("progress({}/{})", v["step"], v["steps"]),
        Some(other) => other.to_owned(),
        None if v.get("error").is_some() => format!("{}:{}", v["id"], v["error"]["code"].as_str().unwrap()),
        None => format!("{}:ok", v["id"]),
    }
}

/// Writes a 16-bit PCM WAV from interleaved samples.
pub fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let data: Vec<u8> =
        samples.iter().flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes()).collect();
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
    b.extend_from_slice(&(channels * 2).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    std::fs::write(path, b).unwrap();
}

/// Copies a folder tree (fixtures a test modifies or narrows).
pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dst = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Elements of every tensor in a safetensors file, read from its header.
pub fn safetensors_elements(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product::<u64>())
        .sum()
}

/// A tensor's values as f32 (fixture comparisons).
pub fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// max |a − b| and max |b|.
pub fn diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> (f32, f32) {
    let (a, b) = (flat(a), flat(b));
    assert_eq!(a.len(), b.len(), "sizes differ");
    let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    (d, b.iter().map(|v| v.abs()).fold(0f32, f32::max))
}

/// A minimal DoRA LoRA file at `path`: one `lora_A` and a `dora_scale`.
pub fn dora_lora(path: &Path) {
    let header = br#"{"a.lora_A.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a.dora_scale":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]);
    std::fs::write(path, bytes).unwrap();
}
