//! The committed shell completions (`completions/`) and man pages (`man/`)
//! must match what the CLI generates. Refresh them with `just docs`
//! (`SQM_BLESS=1 cargo test --release --test suite docs::`).

use std::path::Path;

use sqm::cli::docs::{completion, man_pages, SHELLS};

fn check(path: &Path, generated: &[u8], stale: &mut Vec<String>) {
    if std::env::var_os("SQM_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, generated).unwrap();
        return;
    }
    match std::fs::read(path) {
        Ok(committed) if committed == generated => {}
        _ => stale.push(path.display().to_string()),
    }
}

#[test]
fn completions_and_man_pages_match_the_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (shell, file) in SHELLS {
        check(&root.join("completions").join(file), &completion(shell), &mut stale);
    }
    let pages = man_pages();
    for (name, roff) in &pages {
        check(&root.join("man").join(name), roff, &mut stale);
    }
    // No page for a subcommand that no longer exists.
    for entry in std::fs::read_dir(root.join("man")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !pages.iter().any(|(p, _)| *p == name) {
            stale.push(format!("man/{name} (no such subcommand)"));
        }
    }
    assert!(stale.is_empty(), "out of date: {stale:?}; run `SQM_BLESS=1 cargo test --release --test suite docs::`");
}

#[test]
fn every_subcommand_has_a_man_page_and_completion() {
    let pages = man_pages();
    let bash = String::from_utf8(completion(clap_complete::Shell::Bash)).unwrap();
    for sub in ["validate-pack", "interpret", "completions"] {
        assert!(pages.iter().any(|(n, _)| n == &format!("sqm-{sub}.1")), "{sub}");
        assert!(bash.contains(sub), "{sub}");
    }
}
