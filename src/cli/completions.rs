//! `sqm completions SHELL`

use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    use std::io::Write;
    let script = super::docs::completion(args.shell);
    std::io::stdout().write_all(&script)?;
    Ok(super::exit::OK)
}
