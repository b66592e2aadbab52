//! `sqm interpret` end to end: the real binary, stdin to stdout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SQM: &str = env!("CARGO_BIN_EXE_sqm");

fn run(args: &[&str], input: &[u8]) -> (i32, Vec<Value>) {
    let mut child = Command::new(SQM)
        .arg("interpret")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code().unwrap(), lines)
}

fn tiers(turn: &Value) -> Vec<String> {
    turn["visual"].as_array().unwrap().iter().map(|c| c["tier"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn cooldown_suppresses_a_repeated_landscape_then_releases_it() {
    let input = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cooldown_session.txt")).unwrap();
    let (code, turns) = run(&["--location", "Old Chapel", "--time-of-day", "night"], &input);
    assert_eq!(code, 0);
    assert_eq!(turns.len(), 5);
    // Turn 1 draws the chapel; cooldown 2.
    assert_eq!(tiers(&turns[0]), ["landscape"]);
    assert_eq!(turns[0]["visual"][0]["subject"], "ruined chapel");
    assert_eq!(turns[0]["visual"][0]["mood"], "night, atmospheric");
    // Turn 2, same place: the landscape is suppressed (cooldown 1).
    assert!(tiers(&turns[1]).iter().all(|t| t != "landscape"), "{:?}", turns[1]);
    // Turn 3 has no location verb; cooldown reaches 0.
    assert!(tiers(&turns[2]).iter().all(|t| t != "landscape"));
    // Turn 4: released.
    assert_eq!(tiers(&turns[3]), ["landscape"]);
    assert_eq!(turns[3]["visual"][0]["subject"], "crypt");
    // Turn 5: suppressed again.
    assert!(tiers(&turns[4]).is_empty());
    // The beat filter: turn 1 is the first scene, later turns are not.
    assert_eq!(turns[0]["render"], serde_json::json!({"generate": true, "reason": "first_scene", "applied": true}));
    assert_eq!(turns[1]["render"]["reason"], "default_deny");
    // Audio comes from the example pack's library.
    assert_eq!(turns[0]["audio"][0]["lane"], "music");
}

#[test]
fn turn_numbers_and_output_shape() {
    let (code, turns) = run(
        &[],
        b"Nothing happens.\n\n\n   \n[DOCUMENT:notice:\"Wanted\"]Reward: 50 caps[/DOCUMENT] The square is empty.\n",
    );
    assert_eq!(code, 0);
    assert_eq!(turns.len(), 2);
    let keys: Vec<&String> = turns[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["turn", "visual", "audio", "documents", "render"]);
    assert_eq!(turns[1]["turn"], 2);
    assert_eq!(turns[1]["documents"][0]["title"], "Wanted");
    assert_eq!(turns[1]["documents"][0]["genre"], "ashfall");
    assert_eq!(turns[1]["visual"][0]["subject"], "The square is empty");
    // No game state flags: the verdict is reported but not applied.
    assert_eq!(turns[0]["render"]["applied"], false);
    let cue = &turns[0]["visual"][0];
    let keys: Vec<&String> = cue.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["tier", "subject", "mood", "location", "characters", "tags", "camera"]);
}

#[test]
fn empty_and_whitespace_input_produce_nothing() {
    assert_eq!(run(&[], b"").1.len(), 0);
    assert_eq!(run(&[], b"   \n\n\t\n").1.len(), 0);
    assert_eq!(run(&["--jsonl"], b"\n\n").1.len(), 0);
}

#[test]
fn invalid_utf8_is_reported_and_processing_continues() {
    let mut input = b"Nothing happens.\n\nBad \xff byte here.\n\nYou enter the ruined chapel.\n".to_vec();
    let (code, turns) = run(&[], &input);
    assert_eq!(code, 0);
    assert_eq!(turns.len(), 3);
    assert_eq!(
        turns[1],
        serde_json::json!({"turn": 2, "error": {"field": "narration", "message": "invalid UTF-8 at byte 22"}})
    );
    assert_eq!(tiers(&turns[2]), ["landscape"]);
    input.clear();
}

#[test]
fn jsonl_type_errors_name_the_field() {
    let input = br#"{"narration": "You enter the ruined chapel.", "game_state": {"location": "Old Chapel", "time_of_day": "dusk", "characters": [{"name": "Rux"}]}, "previous_location": null}
{"narration": 5}
{"narration": "x", "game_state": []}
{"narration": "x", "game_state": {"combat": {"in_combat": "yes"}}}
{"narration": "x", "previous_location": 3}
[1, 2]
{"narration": "Rux attacks the orc.", "game_state": {"location": "Old Chapel", "characters": [{"name": "Rux"}], "combat": {"in_combat": true}}, "previous_location": "Old Chapel"}
"#;
    let (code, turns) = run(&["--jsonl"], input);
    assert_eq!(code, 0);
    assert_eq!(turns.len(), 7);
    assert_eq!(turns[0]["visual"][0]["characters"], serde_json::json!(["Rux"]));
    assert_eq!(turns[0]["render"]["reason"], "first_scene");
    let fields: Vec<&Value> = turns[1..6].iter().map(|t| &t["error"]["field"]).collect();
    assert_eq!(fields, ["narration", "game_state", "game_state.combat.in_combat", "previous_location", "(line)"]);
    assert_eq!(turns[1]["error"]["message"], "expected a string, got a number");
    assert_eq!(turns[6]["render"]["reason"], "in_combat");
    assert_eq!(turns[6]["visual"][0]["subject"], "positions: Rux attacks the orc");
}

#[test]
fn a_megabyte_paragraph_finishes_quickly() {
    // Repetitive prose full of near-misses for every family: NOUNs without
    // DESCs, quotes without closers, location verbs without phrases.
    let unit = "the guard 'waits by the old gate while he enters, and steel sings ";
    let big = unit.repeat(1_000_000 / unit.len() + 1);
    let start = std::time::Instant::now();
    let (code, turns) = run(&["--location", "Gate"], big.as_bytes());
    assert_eq!(code, 0);
    assert_eq!(turns.len(), 1);
    // Generous bound: linear work is well under a second even in debug
    // builds; catastrophic backtracking would take hours.
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
}

#[test]
fn pretty_output_is_for_people() {
    let out = Command::new(SQM)
        .args(["interpret", "--pretty", "--location", "Old Chapel"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"You enter the ruined chapel.\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("turn 1: render yes (first_scene)\n  visual   landscape"), "{text}");
}

#[test]
fn missing_pack_is_a_clear_error() {
    let out =
        Command::new(SQM).args(["interpret", "--pack", "/nonexistent/pack"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/pack"), "{err}");
    let out = Command::new(SQM).args(["interpret", "--world", "atlantis"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("world 'atlantis' not found"));
}
