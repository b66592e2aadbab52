//! Generated documentation: shell completions and man pages. The committed
//! copies under `completions/` and `man/` are checked against these by
//! `tests/docs.rs` (run `just docs` to refresh them).

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The shells whose completion scripts are committed.
pub const SHELLS: [(Shell, &str); 3] = [(Shell::Bash, "sqm.bash"), (Shell::Zsh, "_sqm"), (Shell::Fish, "sqm.fish")];

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sqm", &mut out);
    out
}

/// `(file name, roff)` for `sqm.1` and one page per subcommand.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = Vec::new();
    let mut render = |c: &clap::Command, name: String| {
        let mut out = Vec::new();
        clap_mangen::Man::new(c.clone().name(name.clone()))
            .render(&mut out)
            .expect("rendering into memory cannot fail");
        pages.push((format!("{name}.1"), out));
    };
    render(&cmd, "sqm".into());
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        render(sub, format!("sqm-{}", sub.get_name()));
    }
    pages
}
