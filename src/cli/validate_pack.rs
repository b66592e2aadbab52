//! `sqm validate-pack PATH...`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;

use crate::packcheck::{self as validate, Options, Profile};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 no errors (warnings allowed unless --deny-warnings), 1 at least one
error, 2 usage or I/O problem (the remaining packs are still validated; 2 wins).

JSON output (--format json) is one document:
  {\"version\":1,\"summary\":{\"packs\":N,\"errors\":E,\"warnings\":W},
   \"packs\":[{\"path\",\"errors\",\"warnings\"}],
   \"diagnostics\":[{\"code\",\"severity\",\"pack\",\"file\",\"line\",\"column\",\"message\",\"hint\"}]}")]
pub struct Args {
    /// Pack directories, or directories of packs (default: the built-in example pack).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Shorthand for --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Rule set: media (what sqm uses) or server (the game server's loader too).
    #[arg(long, value_enum, default_value_t = ProfileArg::Media)]
    pub profile: ProfileArg,
    /// Exit 1 when there are warnings, too.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Check that audio assets exist, without decoding them.
    #[arg(long)]
    pub no_decode: bool,
    /// The folder of LoRA files packs may name besides their own (as `serve --lora-dir`).
    #[arg(long, env = "SQM_LORA_DIR", value_name = "DIR")]
    pub lora_dir: Option<std::path::PathBuf>,
}

/// `--profile`: the command-line face of [`Profile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// What sqm renders and plays.
    Media,
    /// Everything the game server's loader enforces as well.
    Server,
}

impl From<ProfileArg> for Profile {
    fn from(arg: ProfileArg) -> Self {
        match arg {
            ProfileArg::Media => Profile::Media,
            ProfileArg::Server => Profile::Server,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let mut usage_error = false;
    let mut packs = Vec::new();
    let paths = if args.paths.is_empty() {
        vec![crate::pack::embedded::default_pack().context("cannot unpack the built-in example pack")?]
    } else {
        args.paths.clone()
    };
    for path in &paths {
        match validate::discover(path) {
            Ok(found) => packs.extend(found),
            Err(message) => {
                eprintln!("error: {message}");
                usage_error = true;
            }
        }
    }
    let opts = Options { profile: args.profile.into(), decode: !args.no_decode, lora_dir: args.lora_dir.clone() };
    let report = validate::validate_packs(&packs, opts);
    let format = if args.json { Format::Json } else { args.format };
    let text = match format {
        Format::Human => report.to_human(),
        Format::Json => report.to_json(),
        Format::Github => report.to_github(),
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    tracing::info!(packs = packs.len(), errors = report.errors(), warnings = report.warnings(), "validation finished");
    Ok(if usage_error {
        super::exit::USAGE
    } else if report.errors() > 0 || (args.deny_warnings && report.warnings() > 0) {
        super::exit::FAILURE
    } else {
        super::exit::OK
    })
}
