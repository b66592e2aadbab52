//! The wire format of `sqm serve` (protocol.md): request envelopes, replies,
//! error codes, events, and the typed render params. Everything that crosses
//! the socket is defined here and nowhere else.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::interpret::{parse_game_state, GameState};
use crate::render::pipeline::{PrepareError, RenderRequest};

/// Largest accepted request line, newline excluded.
pub(crate) const MAX_LINE: usize = 1024 * 1024;
/// Largest embed text, in UTF-8 bytes.
pub(crate) const MAX_EMBED_BYTES: usize = 32 * 1024;

/// Protocol error codes (protocol.md §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    ParseError,
    InvalidRequest,
    UnknownMethod,
    WarmupFailed,
    ExtractionFailed,
    GenerationFailed,
    ComposeFailed,
    EmbedFailed,
    Cancelled,
    /// sqm extension: the audio methods.
    AudioFailed,
    /// ZeroMQ worker: no library track matches an AudioRenderRequest.
    NoAudioMatch,
    /// A render passed `--render-timeout` (extra `timeout_s`).
    RenderTimeout,
}

/// An error reply body.
#[derive(Clone, Debug, PartialEq)]
pub struct WireError {
    pub code: Code,
    pub message: String,
    /// Extra fields (`error_type`, `tier` for COMPOSE_FAILED).
    pub extra: Map<String, Value>,
}

impl WireError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.is_empty() {
            message = format!("{code:?} (no message)");
        }
        WireError { code, message, extra: Map::new() }
    }

    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), serde_json::to_value(self.code).expect("code"));
        obj.insert("message".into(), Value::String(self.message.clone()));
        for (k, v) in &self.extra {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }
}

/// Every reply and event line stays below this (protocol.md §1: the
/// Python client reads with a 64 KiB line buffer).
pub const MAX_REPLY: usize = 64 * 1024;
/// Longest request `id`, as JSON text.
pub(crate) const MAX_ID_BYTES: usize = 1024;
/// Longest method name.
pub(crate) const MAX_METHOD_BYTES: usize = 64;
/// Longest error message (longer ones are cut at a character boundary).
const MAX_MESSAGE_BYTES: usize = 4096;

/// `{"id":…,"result":…}` as one line (no newline). A result that would make
/// the line reach [`MAX_REPLY`] becomes an `INVALID_REQUEST` error instead.
pub(crate) fn reply_ok(id: &Value, result: Value) -> String {
    let line = json!({"id": id, "result": result}).to_string();
    if line.len() < MAX_REPLY {
        return line;
    }
    let err = WireError::new(
        Code::InvalidRequest,
        format!("the reply would exceed {} KiB; send shorter request fields", MAX_REPLY / 1024),
    );
    reply_err(id, &err)
}

/// `{"id":…,"error":{…}}` as one line; the message is cut to 4 KiB.
pub fn reply_err(id: &Value, err: &WireError) -> String {
    let mut body = err.to_value();
    if let Some(Value::String(m)) = body.get_mut("message") {
        truncate_utf8(m, MAX_MESSAGE_BYTES);
    }
    json!({"id": id, "error": body}).to_string()
}

pub(crate) use crate::interpret::text::truncate_utf8;

/// Which lane a heartbeat reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Queue {
    Image,
    Embed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LaneState {
    Ready,
    Busy,
}

/// The kinds of work the lanes do; each fails with its own code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    Render,
    Embed,
    WarmUp,
}

impl Work {
    fn failure(self) -> Code {
        match self {
            Work::Render => Code::GenerationFailed,
            Work::Embed => Code::EmbedFailed,
            Work::WarmUp => Code::WarmupFailed,
        }
    }
}

/// Why a lane produced no result.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum LaneError {
    #[error("daemon shutting down")]
    ShuttingDown(Work),
    #[error("render cancelled by request")]
    Cancelled,
    #[error("{1}")]
    Failed(Work, String),
    #[error("internal error: the work lane stopped before answering")]
    Lost(Work),
    #[error("render exceeded {0} s (--render-timeout)")]
    TimedOut(u64),
}

/// The one mapping from a lane's failure to the wire.
impl From<LaneError> for WireError {
    fn from(e: LaneError) -> WireError {
        let code = match &e {
            LaneError::Cancelled => Code::Cancelled,
            LaneError::TimedOut(secs) => {
                return WireError::new(Code::RenderTimeout, e.to_string()).with("timeout_s", *secs)
            }
            LaneError::ShuttingDown(w) | LaneError::Failed(w, _) | LaneError::Lost(w) => w.failure(),
        };
        WireError::new(code, e.to_string())
    }
}

/// The one mapping from a failed upload to the wire: the render failed at
/// its upload stage (its file stays cached).
impl From<&crate::store::UploadError> for WireError {
    fn from(e: &crate::store::UploadError) -> WireError {
        WireError::new(Code::GenerationFailed, format!("upload failed: {}", e.reason)).with("stage", "upload")
    }
}

/// The one mapping from the pipeline's refusals to the wire
/// (COMPOSE_FAILED carries `error_type` and `tier`).
impl From<PrepareError> for WireError {
    fn from(e: PrepareError) -> WireError {
        match e {
            PrepareError::Generation(m) => WireError::new(Code::GenerationFailed, m),
            PrepareError::Extraction(m) => WireError::new(Code::ExtractionFailed, m),
            PrepareError::Invalid(m) => WireError::new(Code::InvalidRequest, m),
            PrepareError::Compose(e, tier) => WireError::new(Code::ComposeFailed, e.to_string())
                .with("error_type", e.kind.as_str())
                .with("tier", tier.map(Value::String).unwrap_or(Value::Null)),
        }
    }
}

/// A model's state in `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Warmth {
    Warm,
    Cold,
}

impl Warmth {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Warmth::Warm => "warm",
            Warmth::Cold => "cold",
        }
    }

    pub(crate) fn of(warm: bool) -> Warmth {
        if warm {
            Warmth::Warm
        } else {
            Warmth::Cold
        }
    }
}

/// A lane's state in `status`: its heartbeat state, or cold before its
/// model loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum QueueState {
    Ready,
    Busy,
    Cold,
}

impl QueueState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            QueueState::Ready => "ready",
            QueueState::Busy => "busy",
            QueueState::Cold => "cold",
        }
    }
}

impl LaneState {
    /// The `status` view of a lane: busy wins, then warm → ready.
    pub(crate) fn of(warm: bool, busy: bool) -> QueueState {
        match (warm, busy) {
            (_, true) => QueueState::Busy,
            (true, false) => QueueState::Ready,
            (false, false) => QueueState::Cold,
        }
    }
}

/// One value per lane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PerLane<T> {
    pub image: T,
    pub embed: T,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SupportedTiers {
    pub flux: Vec<String>,
    pub image: Vec<String>,
    pub embed: Vec<String>,
}

/// Queued renders by priority.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Queued {
    pub interactive: usize,
    pub batch: usize,
}

/// sqm's own part of `status` (absent from the reference daemon's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SqmStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_s: f64,
    pub socket: String,
    pub output_dir: String,
    pub genre_packs: String,
    pub backend: String,
    pub model: Option<String>,
    /// The Z-Image fidelity (zimage only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<String>,
    /// The depth model depth_map requests use (null: none installed).
    #[serde(default)]
    pub depth_model: Option<String>,
    /// Where `uri` image inputs may live.
    #[serde(default)]
    pub input_dirs: Vec<String>,
    /// `--lora-dir` (null: LoRAs only from the genre packs).
    #[serde(default)]
    pub lora_dir: Option<String>,
    pub device: String,
    pub embed_model: String,
    pub heartbeat: bool,
    pub queued: Queued,
    /// Watcher events to the game server (null with `--no-watcher`).
    pub watcher: Option<super::watcher::WatcherStatus>,
    /// Uploads to the object store (`enabled` false without one).
    #[serde(default)]
    pub object_store: Option<crate::store::StoreStatus>,
    /// The bounded output folder (null when unbounded).
    #[serde(default)]
    pub cache: Option<super::cache::CacheStatus>,
    /// Memory the image backend may use and holds (zimage.md §4.4).
    #[serde(default)]
    pub memory: Option<MemoryStatus>,
    /// The model components in memory now (`[]` when cold).
    #[serde(default)]
    pub loaded: Vec<crate::render::Resident>,
}

/// `status.sqm.memory`. Device figures are the host's for the CPU; on a
/// GPU they are not read yet (null).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct MemoryStatus {
    pub budget_bytes: Option<u64>,
    pub resident_bytes: u64,
    pub device_free_bytes: Option<u64>,
    pub device_total_bytes: Option<u64>,
    pub host_available_bytes: Option<u64>,
}

/// The `status` result (protocol.md §3.1), written by the daemon and read
/// by `sqm serve --status`. The reference daemon answers `flux` without
/// `image`, and no `sqm` part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Status {
    pub flux: Warmth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Warmth>,
    pub embed: Warmth,
    pub queue_states: PerLane<QueueState>,
    pub queue_depths: PerLane<usize>,
    pub supported_tiers: SupportedTiers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqm: Option<SqmStatus>,
}

/// `{"status":"ok"}`: `ping` and `shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ack {
    pub status: AckStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AckStatus {
    Ok,
}

impl Ack {
    pub(crate) const OK: Ack = Ack { status: AckStatus::Ok };
}

/// The `cancel` result: how many waiting requests were cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cancelled {
    pub cancelled: usize,
}

/// A `render` the pipeline chose not to run (protocol.md §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Skipped {
    pub status: SkippedStatus,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SkippedStatus {
    Skipped,
}

/// Whether `warm_up` loaded a model or found it loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WarmUpStatus {
    Warm,
    AlreadyWarm,
}

/// One worker's part of the `warm_up` result (protocol.md §3.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WorkerWarmUp {
    pub worker: String,
    pub status: WarmUpStatus,
    pub warmup_ms: u64,
    /// The image lane's backend (the embed lane has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub model: Option<String>,
}

/// The `warm_up` result: every worker asked for, by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WarmUp {
    pub status: WarmUpStatus,
    pub workers: indexmap::IndexMap<String, WorkerWarmUp>,
}

/// The `embed` result (protocol.md §3.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Embedding {
    pub embedding: Vec<f32>,
    pub model: String,
    pub latency_ms: u64,
}

/// A typed result as the JSON a lane hands back.
pub(crate) fn result_value<T: Serialize>(result: &T) -> Value {
    serde_json::to_value(result).expect("wire types serialize")
}

pub(crate) fn heartbeat(queue: Queue, state: LaneState, depth: usize, ts: f64) -> String {
    json!({"event": "heartbeat", "queue": queue, "state": state, "queue_depth": depth, "ts_monotonic": ts}).to_string()
}

pub(crate) fn progress(id: &Value, step: u32, steps: u32) -> String {
    json!({"event": "progress", "id": id, "step": step, "steps": steps}).to_string()
}

/// Every method the daemon serves (protocol.md §3, plus sqm's extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Ping,
    Status,
    WarmUp,
    Shutdown,
    Render,
    Embed,
    Cancel,
    AudioCue,
    AudioStop,
    AudioVolume,
    AudioStatus,
}

impl Method {
    const ALL: [Method; 11] = [
        Method::Ping,
        Method::Status,
        Method::WarmUp,
        Method::Shutdown,
        Method::Render,
        Method::Embed,
        Method::Cancel,
        Method::AudioCue,
        Method::AudioStop,
        Method::AudioVolume,
        Method::AudioStatus,
    ];

    /// The method's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ping => "ping",
            Method::Status => "status",
            Method::WarmUp => "warm_up",
            Method::Shutdown => "shutdown",
            Method::Render => "render",
            Method::Embed => "embed",
            Method::Cancel => "cancel",
            Method::AudioCue => "audio_cue",
            Method::AudioStop => "audio_stop",
            Method::AudioVolume => "audio_volume",
            Method::AudioStatus => "audio_status",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Answered on the spot by the connection, without a task or a lane.
    pub(crate) fn is_inline(self) -> bool {
        matches!(self, Method::Ping | Method::Status | Method::Cancel)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed request envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: Value,
    pub method: Method,
    pub params: Map<String, Value>,
}

/// Parses one request line (without its newline, `\r` already stripped).
/// Errors carry the id to reply with.
#[allow(clippy::result_large_err)] // built once per request line; boxing buys nothing here
pub fn parse_request(line: &[u8]) -> Result<Request, (Value, WireError)> {
    let unknown = || Value::String("unknown".into());
    let text = std::str::from_utf8(line).map_err(|e| {
        (unknown(), WireError::new(Code::ParseError, format!("invalid UTF-8 at byte {}", e.valid_up_to())))
    })?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| (unknown(), WireError::new(Code::ParseError, e.to_string())))?;
    let Value::Object(mut obj) = value else {
        return Err((unknown(), WireError::new(Code::InvalidRequest, "request must be a JSON object")));
    };
    let id = obj.remove("id").unwrap_or_else(unknown);
    if serde_json::to_string(&id).map_or(true, |t| t.len() > MAX_ID_BYTES) {
        let message = format!("'id' is too long (at most {MAX_ID_BYTES} bytes of JSON)");
        return Err((Value::Null, WireError::new(Code::InvalidRequest, message)));
    }
    let method = match obj.remove("method") {
        None | Some(Value::Null) => return Err((id, WireError::new(Code::InvalidRequest, "Missing 'method'"))),
        Some(Value::String(s)) if s.is_empty() => {
            return Err((id, WireError::new(Code::InvalidRequest, "Missing 'method'")))
        }
        Some(Value::String(s)) if s.len() > MAX_METHOD_BYTES => {
            let message = format!("'method' is too long (at most {MAX_METHOD_BYTES} bytes)");
            return Err((id, WireError::new(Code::UnknownMethod, message)));
        }
        Some(Value::String(s)) => match Method::parse(&s) {
            Some(m) => m,
            None => return Err((id, WireError::new(Code::UnknownMethod, format!("Unknown: {s}")))),
        },
        Some(_) => return Err((id, WireError::new(Code::InvalidRequest, "'method' must be a string"))),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err((id, WireError::new(Code::InvalidRequest, "'params' must be an object"))),
    };
    Ok(Request { id, method, params })
}

fn invalid(name: &str, ty: &str) -> WireError {
    WireError::new(Code::InvalidRequest, format!("'{name}' must be {ty}"))
}

/// Typed accessors over params: absent or null → default; a wrong type
/// → `INVALID_REQUEST "'<name>' must be <type>"`.
pub(crate) struct Params<'a>(pub &'a Map<String, Value>);

impl Params<'_> {
    pub(crate) fn string(&self, name: &str) -> Result<String, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(name, "a string")),
        }
    }

    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<String>, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(name, "a string")),
        }
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| invalid(name, "a list of strings")))
                .collect(),
            Some(_) => Err(invalid(name, "a list of strings")),
        }
    }

    /// A list of strings, None when absent or null.
    pub(crate) fn opt_strings(&self, name: &str) -> Result<Option<Vec<String>>, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            _ => self.strings(name).map(Some),
        }
    }

    /// A list of numbers, None when absent or null.
    pub(crate) fn opt_numbers(&self, name: &str) -> Result<Option<Vec<f64>>, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_f64().ok_or_else(|| invalid(name, "a list of numbers")))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(invalid(name, "a list of numbers")),
        }
    }

    /// A number, None when absent or null.
    pub(crate) fn opt_number(&self, name: &str) -> Result<Option<f64>, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(invalid(name, "a number")),
        }
    }

    /// The LoRA params (conditioning.md §1.1): the explicit list, or None.
    pub(crate) fn loras(&self) -> Result<Option<Vec<(String, f64)>>, WireError> {
        crate::render::lora::request_list(
            self.opt_strings("lora_paths")?,
            self.opt_numbers("lora_scales")?,
            self.opt_string("lora_path")?,
            self.opt_number("lora_scale")?,
        )
        .map_err(|m| WireError::new(Code::InvalidRequest, m))
    }

    pub(crate) fn bool(&self, name: &str) -> Result<bool, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(name, "a boolean")),
        }
    }

    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(name, "an integer")),
            Some(_) => Err(invalid(name, "an integer")),
        }
    }

    pub(crate) fn string_map(&self, name: &str) -> Result<Option<indexmap::IndexMap<String, String>>, WireError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, v)| {
                    v.as_str().map(|s| (k.clone(), s.to_owned())).ok_or_else(|| invalid(name, "an object of strings"))
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(invalid(name, "an object of strings")),
        }
    }
}

/// Render priority (sqm extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Interactive,
    Batch,
}

/// The render params of protocol.md §5.1, type-checked.
pub(crate) struct RenderParams {
    pub request: RenderRequest,
    pub priority: Priority,
    pub stream: bool,
    /// The fidelity the caller expects (zimage.md §1.2), checked against a
    /// `zimage` backend's after composing; other backends ignore it.
    pub fidelity: Option<String>,
    /// img2img (conditioning.md §2.1): the init image and its strength.
    pub reference_image: Option<Value>,
    pub strength: f64,
    /// Depth conditioning (conditioning.md §3): a depth map, near = white
    /// (far = white with `depth_invert`).
    pub depth_map: Option<Value>,
    pub depth_invert: bool,
}

pub(crate) fn parse_render(params: &Map<String, Value>) -> Result<RenderParams, WireError> {
    let p = Params(params);
    let (game_state, present) = match params.get("game_state") {
        None | Some(Value::Null) => (GameState::default(), false),
        Some(Value::Object(gs)) => {
            let state = parse_game_state(gs).map_err(|e| invalid(&e.field, e.expected))?;
            (state, !gs.is_empty())
        }
        Some(_) => return Err(invalid("game_state", "an object")),
    };
    let priority = match p.opt_string("priority")?.as_deref() {
        None | Some("interactive") => Priority::Interactive,
        Some("batch") => Priority::Batch,
        Some(other) => {
            return Err(WireError::new(
                Code::InvalidRequest,
                format!("unknown priority '{other}' (expected interactive or batch)"),
            ))
        }
    };
    let request = RenderRequest {
        tier: p.string("tier")?,
        subject: p.string("subject")?,
        mood: p.string("mood")?,
        location: p.string("location")?,
        characters: p.strings("characters")?,
        tags: p.strings("tags")?,
        genre: p.string("genre")?,
        world: p.string("world")?,
        narration: p.string("narration")?,
        game_state,
        game_state_present: present,
        previous_location: p.opt_string("previous_location")?,
        positive_prompt: p.string("positive_prompt")?,
        prompt: p.string("prompt")?,
        negative_prompt: p.string("negative_prompt")?,
        seed: match p.int("seed")? {
            None => None,
            Some(s) => Some(u32::try_from(s).map_err(|_| {
                WireError::new(Code::InvalidRequest, format!("'seed' must be between 0 and {}, got {s}", u32::MAX))
            })?),
        },
        variant: p.opt_string("variant")?,
        subject_name: p.string("subject_name")?,
        art_style: p.string("art_style")?,
        visual_tag_overrides: p.string_map("visual_tag_overrides")?,
        steps: None,
        width: None,
        height: None,
        guidance: None,
        camera: match params.get("camera") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(WireError::new(Code::InvalidRequest, "'camera' must be string or null")),
        },
        pc_descriptor: match params.get("pc_descriptor") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(WireError::new(Code::InvalidRequest, "'pc_descriptor' must be object or null")),
        },
        fidelity: None,
        loras: p.loras()?,
    };
    let fidelity = match params.get("fidelity") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(WireError::new(Code::InvalidRequest, "'fidelity' must be string or null")),
    };
    let reference_image = match params.get("reference_image") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Object(_))) => Some(v.clone()),
        Some(_) => {
            return Err(WireError::new(Code::InvalidRequest, "'reference_image' must be an object, a string or null"))
        }
    };
    let strength = match params.get("strength") {
        None | Some(Value::Null) => 0.6,
        Some(Value::Number(n)) => crate::render::init::check_strength(n.as_f64().unwrap_or(f64::NAN))
            .map_err(|m| WireError::new(Code::InvalidRequest, m))?,
        Some(_) => return Err(WireError::new(Code::InvalidRequest, "'strength' must be a number or null")),
    };
    let depth_map = match params.get("depth_map") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Object(_))) => Some(v.clone()),
        Some(_) => return Err(WireError::new(Code::InvalidRequest, "'depth_map' must be an object, a string or null")),
    };
    Ok(RenderParams {
        request,
        priority,
        stream: p.bool("stream")?,
        fidelity,
        reference_image,
        strength,
        depth_map,
        depth_invert: p.bool("depth_invert")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> (Value, String, String) {
        let (id, e) = parse_request(line.as_bytes()).unwrap_err();
        (id, serde_json::to_value(e.code).unwrap().as_str().unwrap().to_owned(), e.message)
    }

    #[test]
    fn envelopes() {
        let r = parse_request(br#"{"id":null,"method":"ping"}"#).unwrap();
        assert_eq!((r.id, r.method, r.params.len()), (Value::Null, Method::Ping, 0));
        let r = parse_request(br#"{"method":"ping","params":null,"extra":1}"#).unwrap();
        assert_eq!(r.id, json!("unknown"));
        assert_eq!(
            err("not json"),
            (json!("unknown"), "PARSE_ERROR".into(), "expected ident at line 1 column 2".into())
        );
        assert_eq!(err("[1]").2, "request must be a JSON object");
        assert_eq!(err(r#"{"id":1}"#), (json!(1), "INVALID_REQUEST".into(), "Missing 'method'".into()));
        assert_eq!(err(r#"{"id":1,"method":""}"#).2, "Missing 'method'");
        assert_eq!(err(r#"{"id":1,"method":5}"#).2, "'method' must be a string");
        assert_eq!(err(r#"{"id":1,"method":"ping","params":[]}"#).2, "'params' must be an object");
        let (id, code, msg) = {
            let (id, e) = parse_request(b"{\"id\":\"\xff\"}").unwrap_err();
            (id, e.code, e.message)
        };
        assert_eq!((id, code, msg.as_str()), (json!("unknown"), Code::ParseError, "invalid UTF-8 at byte 7"));
    }

    #[test]
    fn replies_and_events() {
        assert_eq!(reply_ok(&json!("a"), json!({"status":"ok"})), r#"{"id":"a","result":{"status":"ok"}}"#);
        let e = WireError::new(Code::ComposeFailed, "StyleMissError: x")
            .with("error_type", "StyleMissError")
            .with("tier", "portrait");
        assert_eq!(
            reply_err(&json!(7), &e),
            r#"{"id":7,"error":{"code":"COMPOSE_FAILED","message":"StyleMissError: x","error_type":"StyleMissError","tier":"portrait"}}"#
        );
        assert_eq!(WireError::new(Code::GenerationFailed, "").message, "GenerationFailed (no message)");
        assert_eq!(
            heartbeat(Queue::Image, LaneState::Busy, 2, 1.5),
            r#"{"event":"heartbeat","queue":"image","state":"busy","queue_depth":2,"ts_monotonic":1.5}"#
        );
        assert_eq!(progress(&json!("s"), 1, 12), r#"{"event":"progress","id":"s","step":1,"steps":12}"#);
    }

    #[test]
    fn render_params_are_type_checked() {
        let parse = |v: Value| parse_render(v.as_object().unwrap()).map(|_| ()).map_err(|e| e.message);
        assert_eq!(parse(json!({"tier": 5})), Err("'tier' must be a string".into()));
        assert_eq!(parse(json!({"characters": "Rux"})), Err("'characters' must be a list of strings".into()));
        assert_eq!(parse(json!({"seed": "1"})), Err("'seed' must be an integer".into()));
        assert_eq!(parse(json!({"seed": -1})), Err("'seed' must be between 0 and 4294967295, got -1".into()));
        assert_eq!(
            parse(json!({"seed": 4294967296u64})),
            Err("'seed' must be between 0 and 4294967295, got 4294967296".into())
        );
        assert_eq!(parse(json!({"stream": 1})), Err("'stream' must be a boolean".into()));
        assert_eq!(
            parse(json!({"priority": "now"})),
            Err("unknown priority 'now' (expected interactive or batch)".into())
        );
        assert_eq!(
            parse(json!({"game_state": {"combat": {"in_combat": "yes"}}})),
            Err("'game_state.combat.in_combat' must be a boolean".into())
        );
        let ok = parse_render(
            json!({"tier":"portrait","seed":3,"game_state":{"location":"x"},"session_id":"ignored","steps":99})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ok.request.seed, Some(3));
        assert!(ok.request.game_state_present);
        assert_eq!(ok.request.steps, None);
    }
}
