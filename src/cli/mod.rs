//! The `sqm` command line: argument types (clap derive), logging set-up, and
//! dispatch to one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) mod completions;
pub mod docs;
#[cfg(feature = "engines")]
pub(crate) mod embed;
pub(crate) mod interpret;
pub(crate) mod interrupt;
#[cfg(feature = "engines")]
pub mod object_store;
#[cfg(feature = "engines")]
pub(crate) mod play;
pub(crate) mod prerender_pack;
pub(crate) mod render;
#[cfg(feature = "engines")]
pub mod serve;
pub(crate) mod validate_pack;

/// Exit codes shared by every subcommand.
pub(crate) mod exit {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// The command ran and found problems (validation errors, failed jobs).
    pub(crate) const FAILURE: u8 = 1;
    /// Usage or I/O problem: bad flag, missing path, unreadable input.
    pub(crate) const USAGE: u8 = 2;
    // 3, `serve`: another daemon already serves the socket. The daemon's
    // start-up errors carry their own code (`StartError::exit_code`).
    /// Stopped by Ctrl-C or SIGTERM (128 + SIGINT), work saved.
    pub(crate) const INTERRUPTED: u8 = 130;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  the command ran and found problems (validation errors, failed jobs)
  2  usage or I/O error (bad flag, missing path, unreadable input)
  3  serve: another daemon already serves the socket
  130  interrupted (Ctrl-C or SIGTERM); finished work is saved

Logging goes to stderr. RUST_LOG (for example RUST_LOG=sqm=debug) overrides -v/-q.";

/// SideQuest media toolkit: genre pack checks, narration interpretation,
/// and the media sidecar's tools.
#[derive(Debug, Parser)]
#[command(name = "sqm", version, about, long_about = None, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
    /// Less log output (-q errors only, -qq nothing).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose", help_heading = "Global options")]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the media daemon on a Unix socket (or query/stop a running one).
    #[cfg(feature = "engines")]
    Serve(serve::Args),
    /// Check genre packs against the pack contract (CI-friendly).
    ValidatePack(validate_pack::Args),
    /// Turn narrator prose into visual cues, audio cues and documents.
    Interpret(interpret::Args),
    /// Render one image (tier table, pack style, deterministic seed).
    Render(render::Args),
    /// Render and analyse a whole genre pack (portraits, landscapes, covers, audio loudness).
    PrerenderPack(prerender_pack::Args),
    #[cfg(feature = "engines")]
    /// Play the pack's music and sfx: moods, rotation, crossfades, ducking (live or into a WAV).
    Play(play::Args),
    #[cfg(feature = "engines")]
    /// Sentence embeddings (all-MiniLM-L6-v2), one JSON line per text.
    Embed(embed::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
}

/// Entry point used by the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    // Only the daemon writes to sockets that may close under it; every
    // other command ends quietly when its output pipe closes (`| head`).
    #[cfg(feature = "engines")]
    let daemon = matches!(&cli.command, Command::Serve(a) if a.runs_daemon());
    #[cfg(not(feature = "engines"))]
    let daemon = false;
    if !daemon {
        quiet_on_closed_pipe();
    }
    let result = match cli.command {
        #[cfg(feature = "engines")]
        Command::Serve(args) => serve::run(args, cli.quiet == 0),
        Command::ValidatePack(args) => validate_pack::run(args),
        Command::Interpret(args) => interpret::run(args),
        Command::Render(args) => render::run(args),
        #[cfg(feature = "engines")]
        Command::Embed(args) => embed::run(args),
        #[cfg(feature = "engines")]
        Command::Play(args) => play::run(args),
        Command::PrerenderPack(args) => prerender_pack::run(args),
        Command::Completions(args) => completions::run(args),
    };
    #[cfg(feature = "otlp")]
    crate::telemetry::shutdown();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Restores the default SIGPIPE action (the Rust runtime ignores it), so a
/// write to a closed pipe ends the process silently, as in every Unix tool,
/// instead of a panic in `println!`.
fn quiet_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to the default is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Colour only on a terminal, and never when NO_COLOR is set.
fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(verbose: u8, quiet: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (verbose, quiet) {
        (0, 0) => "warn",
        (1, _) => "info",
        (2, _) => "debug",
        (v, _) if v >= 3 => "trace",
        (_, 1) => "error",
        _ => "off",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("sqm={level}")));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(use_colour())
        .with_filter(filter);
    let registry = tracing_subscriber::registry().with(fmt);
    // Exported spans are independent of the console level: request spans
    // are info-level, so the exporter sees them even at the default -q/-v.
    #[cfg(feature = "otlp")]
    let registry = registry.with(crate::telemetry::layer().map(|l| l.with_filter(EnvFilter::new("sqm=info"))));
    let _ = registry.try_init();
}

/// Where the flux backend finds its weights and runs (shared by `render`
/// and `serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct FluxArgs {
    /// Flux weights: a folder laid out like the black-forest-labs/FLUX.1-<variant> repo, or one holding
    /// FLUX.1-schnell/ and FLUX.1-dev/ (default: the Hugging Face hub cache).
    #[arg(long, env = "SQM_FLUX_MODEL", value_name = "DIR")]
    pub model_dir: Option<std::path::PathBuf>,
    /// Use the quantized GGUF transformer (flux1-<variant>*.gguf) when both kinds are present.
    #[arg(long)]
    pub quantized: bool,
    /// Device for flux: cpu, cuda, cuda:N, metal (default: the best available).
    #[arg(long, env = "SQM_DEVICE", default_value = "", hide_default_value = true)]
    pub device: String,
    /// Most memory the image model may hold, its working memory included: 16GiB, 24G (1024-based),
    /// 20GB (1000-based), or a share of the machine's memory such as 80% (default: what is free
    /// when it loads, less a 2 GiB reserve on the CPU).
    #[arg(long, env = "SQM_MEMORY_BUDGET", value_name = "SIZE", value_parser = crate::render::memory::MemoryBudget::parse)]
    pub memory_budget: Option<crate::render::memory::MemoryBudget>,
    /// Z-Image weights: a folder laid out like the Tongyi-MAI/Z-Image-Turbo or Tongyi-MAI/Z-Image
    /// repo, ComfyUI's split files, or GGUF files; or one holding Z-Image-Turbo/ and Z-Image/
    /// (default: the Hugging Face hub cache).
    #[arg(long, env = "SQM_ZIMAGE_MODEL", value_name = "DIR")]
    pub zimage_dir: Option<std::path::PathBuf>,
    /// Z-Image fidelity: turbo (8 steps) or high_fidelity (20 steps, CFG 4); with --backend zimage
    /// only (default: $SIDEQUEST_DAEMON_FIDELITY, else high_fidelity).
    #[arg(long, value_name = "FIDELITY", value_parser = ["turbo", "high_fidelity"])]
    pub fidelity: Option<String>,
    /// A folder of LoRA files that requests and packs may name besides the genre pack's own
    /// (conditioning.md §1.3); nothing outside it or the packs is ever opened.
    #[arg(long, env = "SQM_LORA_DIR", value_name = "DIR")]
    pub lora_dir: Option<std::path::PathBuf>,
    /// Transformers kept built per model file, one per LoRA set (a new set rebuilds the least
    /// recently used).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub lora_slots: u32,
    /// Guidance of depth-conditioned renders, 0 to 30 (default: 10, as BFL's control CLI).
    #[arg(long, value_name = "G", value_parser = parse_guidance)]
    pub depth_guidance: Option<f32>,
    /// Never load FLUX.1-Depth-dev, even where it is installed (depth maps then render as without
    /// a depth model).
    #[arg(long)]
    pub no_depth: bool,
}

/// A guidance scale, 0 to 30.
pub(crate) fn parse_guidance(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(g) if g.is_finite() && (0.0..=30.0).contains(&g) => Ok(g),
        _ => Err(format!("must be a number from 0 to 30, got '{s}'")),
    }
}

impl FluxArgs {
    /// The image backends' options for `backend`; the Z-Image fidelity is
    /// resolved here (flag, then `SIDEQUEST_DAEMON_FIDELITY`).
    pub(crate) fn options(&self, backend: &str) -> Result<crate::render::ImageOptions, FidelityError> {
        use crate::prompt::Fidelity;
        let flag = self.fidelity.as_deref().and_then(Fidelity::parse);
        let fidelity = if backend == "zimage" {
            let env = std::env::var(crate::prompt::fidelity::FIDELITY_ENV).ok();
            Some(Fidelity::resolve(flag, env.as_deref()).map_err(FidelityError::Env)?)
        } else if flag.is_some() {
            return Err(FidelityError::NeedsZimage);
        } else {
            None
        };
        Ok(crate::render::ImageOptions {
            model_dir: self.model_dir.clone(),
            zimage_dir: self.zimage_dir.clone(),
            fidelity,
            quantized: self.quantized,
            device: self.device.clone(),
            memory_budget: self.memory_budget,
            lora_slots: self.lora_slots as usize,
            depth_guidance: self.depth_guidance,
            no_depth: self.no_depth,
        })
    }
}

/// `FILE[:SCALE]` for `--lora` and `--zmq-lora`: scale 0 to 2, default 1.
pub(crate) fn parse_lora(s: &str) -> Result<(std::path::PathBuf, f64), String> {
    match s.rsplit_once(':').and_then(|(f, n)| Some((f, n.parse::<f64>().ok()?))) {
        Some((f, scale)) if scale.is_finite() && (0.0..=2.0).contains(&scale) => Ok((f.into(), scale)),
        Some((_, scale)) => Err(format!("the scale must be a number from 0 to 2, got {scale}")),
        None => Ok((s.into(), 1.0)),
    }
}

/// Why the Z-Image fidelity cannot be settled (zimage.md §1.2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FidelityError {
    #[error("--fidelity needs --backend zimage")]
    NeedsZimage,
    #[error("{0}")]
    Env(String),
}
