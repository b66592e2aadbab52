//! `sqm validate-pack` end to end: the real binary on broken copies of the
//! example pack, one defect each, asserting the exact code, file, line and
//! column of every diagnostic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const SQM: &str = env!("CARGO_BIN_EXE_sqm");

fn example_pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temp dir holding a copy of the example pack as `ashfall/`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&example_pack(), &dir.path().join("ashfall"));
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("ashfall").join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// Replaces exactly one occurrence of `from` in a pack file.
    fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once in {rel}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(SQM).args(args).current_dir(self.dir.path()).output().unwrap()
    }

    /// Runs with `--format json` on `ashfall` and returns (exit code, diagnostics).
    fn json(&self, extra: &[&str]) -> (i32, Vec<Value>) {
        let mut args = vec!["validate-pack", "--format", "json"];
        args.extend_from_slice(extra);
        args.push("ashfall");
        let out = self.run(&args);
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad json ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap(), doc["diagnostics"].as_array().unwrap().clone())
    }
}

/// (code, file, line, column) of each diagnostic.
fn located(diags: &[Value]) -> Vec<(String, String, u64, u64)> {
    diags
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_owned(),
                d["file"].as_str().unwrap().to_owned(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn one(code: &str, file: &str, line: u64, column: u64) -> Vec<(String, String, u64, u64)> {
    vec![(code.to_owned(), file.to_owned(), line, column)]
}

#[test]
fn example_pack_is_clean() {
    let out = Command::new(SQM).args(["validate-pack"]).arg(example_pack()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().last(), Some("1 pack(s) checked: 0 error(s), 0 warning(s)"));
    // The directory of packs is accepted too.
    let out = Command::new(SQM).args(["validate-pack"]).arg(example_pack().parent().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn negative_bpm_is_reported_at_the_value() {
    let f = Fixture::new();
    f.edit("audio.yaml", "    bpm: 72\n", "    bpm: -5\n");
    let (code, diags) = f.json(&[]);
    assert_eq!(code, 1);
    assert_eq!(located(&diags), one("INVALID_VALUE", "ashfall/audio.yaml", 7, 10));
    assert_eq!(diags[0]["message"], "bpm must be an integer ≥ 0, got -5");
    let human = String::from_utf8(f.run(&["validate-pack", "ashfall"]).stdout).unwrap();
    assert!(
        human.starts_with("ashfall/audio.yaml:7:10: error[INVALID_VALUE]: bpm must be an integer ≥ 0, got -5\n"),
        "{human}"
    );
    let github = String::from_utf8(f.run(&["validate-pack", "--format", "github", "ashfall"]).stdout).unwrap();
    assert_eq!(
        github.lines().next(),
        Some("::error file=ashfall/audio.yaml,line=7,col=10,title=INVALID_VALUE::bpm must be an integer ≥ 0, got -5")
    );
    assert_eq!(github.lines().last(), Some("1 pack(s) checked: 1 error(s), 0 warning(s)"));
}

#[test]
fn missing_asset_points_at_the_path_scalar() {
    let f = Fixture::new();
    f.edit("audio.yaml", "audio/music/siege_ambient.wav", "audio/music/missing.ogg");
    let (code, diags) = f.json(&[]);
    assert_eq!(code, 1);
    assert_eq!(located(&diags), one("MISSING_ASSET", "ashfall/audio.yaml", 62, 11));
    assert_eq!(
        diags[0],
        serde_json::json!({"code":"MISSING_ASSET","severity":"error","pack":"ashfall","file":"ashfall/audio.yaml",
            "line":62,"column":11,"message":"file not found: audio/music/missing.ogg","hint":null})
    );
}

#[test]
fn misspelt_style_key_gets_a_suggestion_and_empty_style() {
    let f = Fixture::new();
    f.write("visual_style.yaml", "# grim\npositve_suffix: grim\n");
    let (code, diags) = f.json(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        located(&diags),
        vec![
            ("EMPTY_STYLE".into(), "ashfall/visual_style.yaml".into(), 0, 0),
            ("UNKNOWN_KEY".into(), "ashfall/visual_style.yaml".into(), 2, 1),
        ]
    );
    assert_eq!(diags[0]["message"], "positive_suffix is missing or empty");
    assert_eq!(diags[1]["message"], "unknown key 'positve_suffix'; did you mean 'positive_suffix'?");
    assert_eq!(diags[1]["severity"], "warning");
    let human = String::from_utf8(f.run(&["validate-pack", "ashfall"]).stdout).unwrap();
    assert!(human.contains("ashfall/visual_style.yaml: error[EMPTY_STYLE]: positive_suffix is missing or empty\n"));
    assert!(human.contains(
        "ashfall/visual_style.yaml:2:1: warning[UNKNOWN_KEY]: unknown key 'positve_suffix'; did you mean 'positive_suffix'?\n"
    ));
}

#[test]
fn alias_cycle_is_reported_at_each_alias_key() {
    let f = Fixture::new();
    f.edit("audio.yaml", "  battle: combat\n", "  battle: skirmish\n");
    let (code, diags) = f.json(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        located(&diags),
        vec![
            ("MOOD_ALIAS_CYCLE".into(), "ashfall/audio.yaml".into(), 41, 3),
            ("MOOD_ALIAS_CYCLE".into(), "ashfall/audio.yaml".into(), 42, 3),
        ]
    );
    assert_eq!(diags[0]["message"], "alias chain starting at 'battle' loops at 'battle'");
}

fn audio_with_aliases(f: &Fixture, aliases: &str) -> Vec<Value> {
    f.write(
        "audio.yaml",
        &format!("mood_tracks:\n  combat:\n  - path: audio/sfx/thunder.wav\n  exploration:\n  - path: audio/sfx/footsteps.wav\nmood_aliases:\n{aliases}"),
    );
    f.json(&[]).1
}

#[test]
fn alias_chains_broken_too_deep_and_shadowed() {
    let f = Fixture::new();
    let d = audio_with_aliases(&f, "  x: nowhere\n");
    assert_eq!(located(&d), one("MOOD_ALIAS_BROKEN", "ashfall/audio.yaml", 7, 3));
    // Five links are fine; six are too deep.
    let five = "  a1: a2\n  a2: a3\n  a3: a4\n  a4: a5\n  a5: combat\n";
    assert!(audio_with_aliases(&f, five).is_empty());
    let six = "  a0: a1\n  a1: a2\n  a2: a3\n  a3: a4\n  a4: a5\n  a5: combat\n";
    assert_eq!(located(&audio_with_aliases(&f, six)), one("MOOD_ALIAS_TOO_DEEP", "ashfall/audio.yaml", 7, 3));
    let d = audio_with_aliases(&f, "  combat: exploration\n");
    assert_eq!(located(&d), one("ALIAS_SHADOWED", "ashfall/audio.yaml", 7, 3));
}

#[test]
fn path_escape_is_never_opened() {
    let f = Fixture::new();
    f.edit("audio.yaml", "  - audio/sfx/thunder.wav\n", "  - ../../etc/passwd\n");
    let (_, diags) = f.json(&[]);
    assert_eq!(located(&diags), one("PATH_ESCAPES_PACK", "ashfall/audio.yaml", 53, 5));
    f.edit("audio.yaml", "../../etc/passwd", "/etc/passwd");
    assert_eq!(located(&f.json(&[]).1), one("PATH_ESCAPES_PACK", "ashfall/audio.yaml", 53, 5));
}

#[test]
fn symlinks_inside_are_fine_outside_escape() {
    let f = Fixture::new();
    std::os::unix::fs::symlink("sword_clash.wav", f.path("audio/sfx/alias.wav")).unwrap();
    f.edit("audio.yaml", "  - audio/sfx/thunder.wav\n", "  - audio/sfx/alias.wav\n");
    assert_eq!(located(&f.json(&[]).1), vec![]);
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(f.path("audio/sfx/thunder.wav"), outside.path()).unwrap();
    std::os::unix::fs::symlink(outside.path(), f.path("audio/sfx/outside.ogg")).unwrap();
    f.edit("audio.yaml", "audio/sfx/alias.wav", "audio/sfx/outside.ogg");
    assert_eq!(located(&f.json(&[]).1), one("PATH_ESCAPES_PACK", "ashfall/audio.yaml", 53, 5));
}

#[test]
fn mood_tracks_null_is_empty_but_a_number_is_a_type_error() {
    let f = Fixture::new();
    f.write("audio.yaml", "mood_tracks:\n");
    assert_eq!(located(&f.json(&[]).1), vec![]);
    f.write("audio.yaml", "mood_tracks: 5\n");
    let (code, d) = f.json(&[]);
    assert_eq!(code, 1);
    assert_eq!(located(&d), one("SCHEMA_TYPE", "ashfall/audio.yaml", 1, 14));
    assert_eq!(d[0]["message"], "mood_tracks must be a mapping, got an integer");
}

#[test]
fn crlf_files_report_the_same_lines() {
    let f = Fixture::new();
    f.edit("audio.yaml", "    bpm: 72\n", "    bpm: -5\n");
    let lf = located(&f.json(&[]).1);
    let crlf = f.read("audio.yaml").replace('\n', "\r\n");
    f.write("audio.yaml", &crlf);
    assert_eq!(located(&f.json(&[]).1), lf);
}

#[test]
fn audio_is_probed_by_content() {
    let f = Fixture::new();
    // A WAV named .ogg decodes: no diagnostic.
    std::fs::copy(f.path("audio/sfx/thunder.wav"), f.path("audio/sfx/thunder.ogg")).unwrap();
    f.edit("audio.yaml", "  - audio/sfx/thunder.wav\n", "  - audio/sfx/thunder.ogg\n");
    assert_eq!(located(&f.json(&[]).1), vec![]);
    // A zero-byte file does not.
    std::fs::write(f.path("audio/sfx/thunder.ogg"), b"").unwrap();
    let (code, d) = f.json(&[]);
    assert_eq!(code, 1);
    assert_eq!(located(&d), one("ASSET_UNDECODABLE", "ashfall/audio.yaml", 53, 5));
    // Garbage bytes with a plausible name.
    std::fs::write(f.path("audio/sfx/thunder.ogg"), vec![0x42u8; 4096]).unwrap();
    assert_eq!(located(&f.json(&[]).1), one("ASSET_UNDECODABLE", "ashfall/audio.yaml", 53, 5));
    // A truncated WAV (header only) is caught too.
    let wav = std::fs::read(f.path("audio/sfx/thunder.wav")).unwrap();
    std::fs::write(f.path("audio/sfx/thunder.ogg"), &wav[..44]).unwrap();
    assert_eq!(located(&f.json(&[]).1), one("ASSET_UNDECODABLE", "ashfall/audio.yaml", 53, 5));
    // --no-decode only checks existence.
    assert_eq!(f.json(&["--no-decode"]).0, 0);
}

#[test]
fn world_without_world_yaml_still_checks_other_files() {
    let f = Fixture::new();
    std::fs::remove_file(f.path("worlds/cinder-reach/world.yaml")).unwrap();
    f.write("worlds/cinder-reach/visual_style.yaml", "positive_suffix: ''\n");
    let (code, d) = f.json(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        located(&d),
        vec![
            ("EMPTY_STYLE".into(), "ashfall/worlds/cinder-reach/visual_style.yaml".into(), 1, 18),
            ("MISSING_FILE".into(), "ashfall/worlds/cinder-reach/world.yaml".into(), 0, 0),
        ]
    );
}

#[test]
fn legacy_world_style_key_gets_a_rename_hint() {
    let f = Fixture::new();
    f.write("worlds/cinder-reach/visual_style.yaml", "style_prompt: smoky\n");
    let (_, d) = f.json(&[]);
    assert_eq!(located(&d), one("EMPTY_STYLE", "ashfall/worlds/cinder-reach/visual_style.yaml", 0, 0));
    assert!(d[0]["hint"].as_str().unwrap().contains("rename"));
}

#[test]
fn encoding_and_syntax_problems() {
    let f = Fixture::new();
    f.write("pack.yaml", "name: Ashfall\nversion: \"1\"\ndescription: caf\u{e9}\n");
    let mut bytes = f.read("pack.yaml").into_bytes();
    let at = bytes.len() - 3; // the first byte of "é"
    bytes.remove(at + 1); // leave a lone lead byte
    std::fs::write(f.path("pack.yaml"), &bytes).unwrap();
    assert_eq!(located(&f.json(&[]).1), one("INVALID_UTF8", "ashfall/pack.yaml", 3, 17));

    f.write("pack.yaml", "name: Ashfall\nversion: '1'\ndescription: x\ninspirations:\n\t- name: y\n");
    let (_, d) = f.json(&[]);
    assert_eq!(located(&d), one("YAML_SYNTAX", "ashfall/pack.yaml", 5, 1));
    assert!(d[0]["hint"].as_str().unwrap().contains("tabs are not allowed for indentation"));

    f.write("pack.yaml", "name: Ashfall\nversion: '1'\ndescription: [unclosed\n");
    let (_, d) = f.json(&[]);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["code"], "YAML_SYNTAX");

    f.write("pack.yaml", "name: A\nversion: '1'\ndescription: x\n---\nname: B\n");
    assert_eq!(located(&f.json(&[]).1), one("YAML_SYNTAX", "ashfall/pack.yaml", 4, 1));

    f.write("pack.yaml", "name: A\nversion: '1'\ndescription: x\nname: B\n");
    let (_, d) = f.json(&[]);
    assert_eq!(located(&d), one("DUPLICATE_KEY", "ashfall/pack.yaml", 4, 1));
    assert_eq!(d[0]["message"], "duplicate key 'name' (first defined on line 1)");
}

#[test]
fn syntax_error_in_one_file_does_not_hide_others() {
    let f = Fixture::new();
    f.write("pack.yaml", "name: [\n");
    f.edit("audio.yaml", "    bpm: 72\n", "    bpm: -5\n");
    let codes: Vec<String> = located(&f.json(&[]).1).into_iter().map(|l| l.0).collect();
    assert_eq!(codes, vec!["INVALID_VALUE", "YAML_SYNTAX"]);
}

#[test]
fn schema_types_and_required_fields() {
    let f = Fixture::new();
    f.write("pack.yaml", "name: Ashfall\ndescription: 5\nemotional_tone: grim\nbogus: 1\n");
    let (_, d) = f.json(&[]);
    assert_eq!(
        located(&d),
        vec![
            ("MISSING_FIELD".into(), "ashfall/pack.yaml".into(), 1, 1),
            ("SCHEMA_TYPE".into(), "ashfall/pack.yaml".into(), 2, 14),
            ("SCHEMA_TYPE".into(), "ashfall/pack.yaml".into(), 3, 17),
            ("UNKNOWN_KEY".into(), "ashfall/pack.yaml".into(), 4, 1),
        ]
    );
    assert_eq!(d[0]["message"], "required field 'version' is missing");
    assert_eq!(d[2]["message"], "emotional_tone must be a list, got a string");
    assert_eq!(d[3]["message"], "unknown key 'bogus'");
}

#[test]
fn mixer_ranges_and_empty_sfx_list() {
    let f = Fixture::new();
    f.edit("audio.yaml", "  music_volume: 0.4\n", "  music_volume: 1.5\n");
    f.edit("audio.yaml", "  crossfade_default_ms: 3000\n", "  crossfade_default_ms: 3000\n  duck_amount_db: 3\n");
    f.edit("audio.yaml", "  thunder:\n  - audio/sfx/thunder.wav\n", "  thunder: []\n");
    let (_, d) = f.json(&[]);
    assert_eq!(
        located(&d),
        vec![
            ("INVALID_VALUE".into(), "ashfall/audio.yaml".into(), 52, 3),
            ("INVALID_VALUE".into(), "ashfall/audio.yaml".into(), 65, 17),
            ("INVALID_VALUE".into(), "ashfall/audio.yaml".into(), 69, 19),
        ]
    );
    assert_eq!(d[1]["message"], "music_volume must be between 0 and 1, got 1.5");
    assert_eq!(d[2]["message"], "duck_amount_db must be ≤ 0 dB, got 3");
}

#[test]
fn themes_and_reachability() {
    let f = Fixture::new();
    f.edit("audio.yaml", "  - type: ambient\n", "  - type: lullaby\n");
    f.edit("audio.yaml", "  eruption: [eruption, quake, magma, lava, tremor]\n", "");
    f.edit("audio.yaml", "  - audio/sfx/footsteps.wav\n", "  - https://example.invalid/steps.ogg\n");
    let (code, d) = f.json(&[]);
    assert_eq!(code, 0, "all of these are warnings");
    let codes: Vec<(String, u64, u64)> = located(&d).into_iter().map(|l| (l.0, l.2, l.3)).collect();
    assert_eq!(
        codes,
        vec![
            ("UNREACHABLE_MOOD".into(), 32, 3),
            ("ASSET_REMOTE".into(), 48, 5),
            ("UNKNOWN_VARIATION_TYPE".into(), 60, 11),
        ]
    );
}

#[test]
fn world_cross_references() {
    let f = Fixture::new();
    f.edit("worlds/cinder-reach/world.yaml", "cover_poi: harrowgate", "cover_poi: harowgate");
    f.edit("worlds/cinder-reach/world.yaml", "slug: cinder-reach", "slug: cinder");
    f.edit("worlds/cinder-reach/portrait_manifest.yaml", "culture: glassfolk", "culture: sandfolk");
    f.edit("worlds/cinder-reach/portrait_manifest.yaml", "id: ember-envoy", "id: tinker-ro");
    f.edit("worlds/cinder-reach/history.yaml", "      - slug: glass-gate\n", "      - slug: harrowgate\n");
    let (code, d) = f.json(&[]);
    assert_eq!(code, 1);
    let got: Vec<(String, String, u64)> = located(&d).into_iter().map(|l| (l.0, l.1, l.2)).collect();
    let w = "ashfall/worlds/cinder-reach/";
    assert_eq!(
        got,
        vec![
            ("DUPLICATE_ID".into(), format!("{w}history.yaml"), 29),
            ("CULTURE_NOT_FOUND".into(), format!("{w}portrait_manifest.yaml"), 13),
            ("DUPLICATE_ID".into(), format!("{w}portrait_manifest.yaml"), 20),
            ("SLUG_MISMATCH".into(), format!("{w}world.yaml"), 2),
            ("UNRESOLVED_REF".into(), format!("{w}world.yaml"), 10),
        ]
    );
    let unresolved = d.iter().find(|x| x["code"] == "UNRESOLVED_REF").unwrap();
    assert_eq!(unresolved["hint"], "did you mean 'harrowgate'?");
}

#[test]
fn style_and_place_checks() {
    let f = Fixture::new();
    f.edit("visual_style.yaml", "preferred_model: schnell", "preferred_model: sdxl");
    f.edit("visual_style.yaml", "  forge:", "  Forge:");
    f.edit("places.yaml", "forge:\n  environment:", "forge:\n  landmark:\n    solo: the Great Anvil\n  environment:");
    let long = "ash ".repeat(400);
    f.write("worlds/cinder-reach/visual_style.yaml", &format!("positive_suffix: {long}\n"));
    f.edit(
        "worlds/cinder-reach/history.yaml",
        "      - slug: glass-gate\n",
        "      - slug: glass-gate\n        visual_prompt: a glass arch\n",
    );
    let (_, d) = f.json(&[]);
    let got: Vec<(String, u64)> = located(&d).into_iter().map(|l| (l.0, l.2)).collect();
    assert_eq!(
        got,
        vec![
            ("ARCHETYPE_HAS_LANDMARK".into(), 4),
            ("PREFERRED_MODEL_UNKNOWN".into(), 3),
            ("OVERRIDE_KEY_CASE".into(), 6),
            // The string visual_prompt needs migrating; the duplicate is
            // ignored, so the POI has no drawable text left.
            ("POI_NO_VISUAL".into(), 29),
            ("SCHEMA_TYPE".into(), 30),
            ("DUPLICATE_KEY".into(), 35),
            ("STYLE_TRUNCATED".into(), 1),
        ]
    );
}

#[test]
fn empty_pack_missing_path_and_server_profile() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(SQM).args(["validate-pack", "--json"]).arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["diagnostics"][0]["code"], "EMPTY_PACK");

    let out = Command::new(SQM).args(["validate-pack", "/nonexistent"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "error: /nonexistent: no such directory");

    // A good pack next to a missing path: the pack is still validated, 2 wins.
    let out = Command::new(SQM).args(["validate-pack"]).arg(example_pack()).arg("/nonexistent").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 pack(s) checked"));

    // The example pack is complete: both profiles accept it.
    for profile in ["media", "server"] {
        let out = Command::new(SQM).args(["validate-pack", "--profile", profile]).arg(example_pack()).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{profile}: {}", String::from_utf8_lossy(&out.stdout));
    }

    // Without the game-server files, and with sqm-only mixer keys, the
    // server profile fails and says why.
    let f = Fixture::new();
    for rel in ["rules.yaml", "lore.yaml", "worlds/cinder-reach/cartography.yaml", "worlds/cinder-reach/openings.yaml"]
    {
        std::fs::remove_file(f.path(rel)).unwrap();
    }
    f.edit("audio.yaml", "  crossfade_default_ms: 3000\n", "  crossfade_default_ms: 3000\n  duck_amount_db: -12.0\n");
    let (code, diags) = f.json(&["--profile", "server"]);
    assert_eq!(code, 1);
    let missing: Vec<&str> = diags
        .iter()
        .filter(|d| d["code"] == "MISSING_FILE")
        .map(|d| d["file"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    for f in ["rules.yaml", "lore.yaml", "cartography.yaml", "openings.yaml"] {
        assert!(missing.contains(&f), "{f} not in {missing:?}");
    }
    let key = diags.iter().find(|d| d["code"] == "UNKNOWN_KEY").expect("the mixer key");
    assert_eq!(key["severity"], "error");
    assert!(key["hint"].as_str().unwrap().contains("sqm then uses its default, -12 dB"), "{key}");
    // The media profile accepts what sqm itself uses.
    assert_eq!(f.json(&[]).0, 0);
}

#[test]
fn json_document_shape_is_stable() {
    let f = Fixture::new();
    f.edit("audio.yaml", "    bpm: 72\n", "    bpm: -5\n");
    let out = f.run(&["validate-pack", "--json", "ashfall"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["version", "summary", "packs", "diagnostics"]);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["summary"], serde_json::json!({"packs": 1, "errors": 1, "warnings": 0}));
    assert_eq!(doc["packs"], serde_json::json!([{"path": "ashfall", "errors": 1, "warnings": 0}]));
    let d: Vec<&String> = doc["diagnostics"][0].as_object().unwrap().keys().collect();
    assert_eq!(d, ["code", "severity", "pack", "file", "line", "column", "message", "hint"]);
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let f = Fixture::new();
    f.edit("visual_style.yaml", "preferred_model: schnell", "preferred_model: sdxl");
    assert_eq!(f.json(&[]).0, 0);
    assert_eq!(f.json(&["--deny-warnings"]).0, 1);
}

#[test]
fn unreadable_file_and_garbage_never_panic() {
    let f = Fixture::new();
    // A directory where a file should be is not a regular file.
    std::fs::remove_file(f.path("theme.yaml")).unwrap();
    std::fs::create_dir(f.path("theme.yaml")).unwrap();
    f.write("places.yaml", "- just\n- a list\n");
    f.write("worlds/cinder-reach/history.yaml", "chapters: {points_of_interest: 3}\n");
    f.write("worlds/cinder-reach/portrait_manifest.yaml", "characters:\n  - {}\n  - role: x\n");
    let (code, d) = f.json(&[]);
    assert_eq!(code, 1);
    let codes: Vec<String> = located(&d).into_iter().map(|l| format!("{}:{}", l.0, l.2)).collect();
    assert_eq!(
        codes,
        vec![
            "SCHEMA_TYPE:1",
            "NOT_A_REGULAR_FILE:0",
            "SCHEMA_TYPE:1",
            "MISSING_FIELD:2",
            "MISSING_FIELD:2",
            "MISSING_FIELD:3",
            "MISSING_FIELD:3",
            // history.yaml is unusable, so the cover POI cannot resolve.
            "UNRESOLVED_REF:10",
        ]
    );
}

#[test]
fn camera_and_recipe_overrides_are_strict() {
    let f = Fixture::new();
    let mut cams = String::new();
    for (n, p) in sqm::pack::direction::PRESETS {
        if n != "dutch_tilt" {
            cams.push_str(&format!("{n}:\n  prompt: \"{p}\"\n"));
        }
    }
    cams.push_str("fisheye:\n  prompt: round\n");
    cams = cams.replace("scene:\n  prompt", "scene:\n  zoom: 2\n  post: {kind: crop, percent: 2}\n  prompt");
    f.write("cameras.yaml", &cams);
    f.write(
        "recipes.yaml",
        "portrait: {kind: portrait, casting: character, location: background, direction_action: pose, direction_camera: portrait_3q, art_sensibility: [GENRE, MOOD]}\n\
         poi: {kind: illustration, casting: landmark, location: environment, direction_action: description, direction_camera: wide, art_sensibility: [GENRE]}\n",
    );
    let (code, diags) = f.json(&[]);
    assert_eq!(code, 1);
    let got: Vec<(String, String)> = diags
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_owned(), d["message"].as_str().unwrap().to_owned()))
        .collect();
    let has = |code: &str, msg: &str| got.iter().any(|(c, m)| c == code && m.contains(msg));
    assert!(has("MISSING_FIELD", "camera preset 'dutch_tilt' is missing"), "{got:?}");
    assert!(has("INVALID_VALUE", "unknown camera preset 'fisheye'"), "{got:?}");
    assert!(has("UNKNOWN_KEY", "unknown key 'zoom'"), "{got:?}");
    assert!(has("INVALID_VALUE", "crop percent must lie in (0, 1]"), "{got:?}");
    assert!(has("MISSING_FIELD", "recipe 'illustration' is missing"), "{got:?}");
    assert!(has("INVALID_VALUE", "recipe 'portrait': unknown cascade layer(s) ['MOOD']"), "{got:?}");
    assert!(has("INVALID_VALUE", "recipe 'poi': kind must be 'poi'"), "{got:?}");
    assert!(has("INVALID_VALUE", "recipe 'poi': unknown camera preset 'wide'"), "{got:?}");
}

#[test]
fn characters_that_cannot_fit_the_budget_are_flagged() {
    let f = Fixture::new();
    let long = vec!["ash"; 400].join(" ");
    f.edit(
        "worlds/cinder-reach/portrait_manifest.yaml",
        "      background: a tinker bent over a workbench",
        &format!("      background: {long}"),
    );
    let (code, diags) = f.json(&[]);
    assert_eq!(code, 0, "a warning only: {diags:?}");
    let d = diags.iter().find(|d| d["code"] == "CAST_OVER_BUDGET").expect("CAST_OVER_BUDGET");
    assert_eq!(d["severity"], "warning");
    assert!(d["message"].as_str().unwrap().starts_with("character 'npc:tinker-ro'"), "{d}");
    assert!(d["file"].as_str().unwrap().ends_with("worlds/cinder-reach/portrait_manifest.yaml"));
}

/// conditioning.md §1.2: `loras` entries are checked like other pack data
/// (fields, files inside the pack) and get the four `LORA_*` codes.
#[test]
fn pack_loras_get_their_diagnostics() {
    let f = Fixture::new();
    let lora = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flux/lora/xlabs.safetensors");
    std::fs::create_dir_all(f.path("lora")).unwrap();
    std::fs::copy(&lora, f.path("lora/style.safetensors")).unwrap();
    // A DoRA file: its keys say so.
    crate::common::dora_lora(&f.path("lora/dora.safetensors"));
    let style = f.read("visual_style.yaml");
    f.write(
        "visual_style.yaml",
        &format!(
            "{style}loras:\n  - {{name: land, file: lora/style.safetensors, scale: 0.8, applies_to: [landscape], trigger: ash}}\n  - {{name: dora, file: lora/dora.safetensors, scale: 1, applies_to: [all]}}\n  - {{name: map, file: lora/style.safetensors, scale: 0, applies_to: [tactical_map]}}\n  - {{name: far, file: ../x.safetensors, applies_to: [all]}}\n"
        ),
    );
    f.write("worlds/cinder-reach/visual_style.yaml", "positive_suffix: smoky\nloras: {exclude: [nope], add: [{name: land, file: ../../lora/style.safetensors, scale: 1, applies_to: [scene]}]}\n");
    let (code, d) = f.json(&[]);
    assert_eq!(code, 1);
    let got: Vec<(String, String)> =
        d.iter().map(|d| (d["code"].as_str().unwrap().to_owned(), d["message"].as_str().unwrap().to_owned())).collect();
    let has = |code: &str, text: &str| {
        assert!(got.iter().any(|(c, m)| c == code && m.contains(text)), "no {code} with {text:?} in {got:#?}")
    };
    has("LORA_FORMAT", "'lora/dora.safetensors': a DoRA LoRA");
    has("LORA_NO_EFFECT", "loras[2]: scale 0 applies nothing");
    has("LORA_NO_EFFECT", "loras[2]: applies_to [tactical_map] routes to no image tier");
    has("MISSING_FIELD", "loras[3]: required field 'scale' is missing");
    has("PATH_ESCAPES_PACK", "'../x.safetensors' resolves outside the genre pack");
    has("LORA_EXCLUDE_UNKNOWN", "loras.exclude names 'nope'");
    has("INVALID_VALUE", "loras.add[0]: 'land' is still inherited from the genre; exclude it first");
    assert!(!got.iter().any(|(c, m)| c == "LORA_FORMAT" && m.contains("style")), "the XLabs file is usable");
    // The legacy keys: a warning alone, an error beside `loras`.
    f.write("visual_style.yaml", &format!("{style}lora: lora/style.safetensors\nlora_trigger: ash\n"));
    f.write("worlds/cinder-reach/visual_style.yaml", "positive_suffix: smoky\n");
    let (code, d) = f.json(&[]);
    assert_eq!(
        (code, d.len(), d[0]["code"].as_str(), d[0]["severity"].as_str()),
        (0, 1, Some("LORA_LEGACY"), Some("warning")),
        "{d:?}"
    );
    f.write(
        "visual_style.yaml",
        &format!("{style}lora: lora/style.safetensors\nloras:\n  - {{name: a, file: lora/style.safetensors, scale: 1, applies_to: [all]}}\n"),
    );
    let (_, d) = f.json(&[]);
    assert!(d.iter().any(|d| d["code"] == "LORA_LEGACY" && d["severity"] == "error"), "{d:?}");
}
