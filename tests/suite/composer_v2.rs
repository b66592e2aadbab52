//! Composer v2's acceptance examples on the fixture pack in
//! tests/fixtures/composer_v2 (the reference daemon's fixture, plus the
//! spec's additions).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use sqm::interpret::Tier;
use sqm::prompt::layered::{
    compose as compose_v2, post_canvas, Composed as V2Composed, PcDescriptor, Request as V2Request,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/composer_v2")
}

fn req(tier: Tier, subject: &str, characters: &[&str], location: &str) -> V2Request {
    V2Request {
        tier: Some(tier),
        subject: subject.into(),
        characters: characters.iter().map(|s| s.to_string()).collect(),
        location: location.into(),
        camera: None,
        pc_descriptor: None,
        genre: "testgenre".into(),
        world: "testworld".into(),
    }
}

fn ok(r: &V2Request) -> V2Composed {
    compose_v2(&root(), r).unwrap_or_else(|e| panic!("{e}"))
}

fn err(r: &V2Request) -> String {
    compose_v2(&root(), r).unwrap_err().to_string()
}

const G: &str =
    "painterly digital illustration, muted desaturated palette, gritty mood, bruised amber sky, weathered surfaces";
const RUX: &str = "a tall gaunt inquisitor in grey wool cassock, iron-chased buttons, silver device at throat, scar across left cheekbone, hands callused";
const IRON: &str = "iron-chased buttons, grey wool, silver devices, monastic severity";
const SAFE: &str = "solo character focus, detailed distinctive features";
const SCENE: &str = "painterly mid-distance composition, narrative staging, balanced framing";
const BASE_NEG: &str =
    "watermark, signature, text, blurry, deformed, extra limbs, photograph, photorealistic, hyperrealistic, smooth skin, CGI";

#[test]
fn example_1_portrait() {
    let c = ok(&req(Tier::Portrait, "Rux", &["npc:rux"], ""));
    assert_eq!(c.positive_prompt, format!("{G}, {RUX}, standing, hands folded, neutral expression, {IRON}, {SAFE}"));
    assert_eq!(c.seed, 1588844506);
    assert_eq!(
        c.layers,
        [
            "ART_SENSIBILITY.GENRE:genre:testgenre",
            "ART_SENSIBILITY.WORLD:world:testgenre/testworld",
            "CASTING:npc:rux",
            "DIRECTION_ACTION:npc:rux.default_pose",
            "DIRECTION_CAMERA:portrait_3q",
            "ART_SENSIBILITY.CULTURE:culture:testgenre/testworld/ironhand"
        ]
    );
    assert_eq!(c.negative_prompt, BASE_NEG);
    assert_eq!(c.clip_prompt, "painterly digital illustration, muted desaturated palette, gritty mood");
    assert!(c.evicted.is_empty());
    let sq = ok(&req(Tier::PortraitSquare, "Rux", &["npc:rux"], ""));
    assert_eq!((sq.positive_prompt, sq.seed), (c.positive_prompt, c.seed));
}

#[test]
fn example_2_poi() {
    let c = ok(&req(Tier::Landscape, "where:testworld/the_lookout", &[], ""));
    assert_eq!(c.seed, 1498724159);
    assert_eq!(
        c.positive_prompt,
        format!("{G}, a weathered stone watchtower atop a rocky promontory, iron-banded timber door, narrow slit windows, a copper weathervane in the shape of an axe, barren upland, bruised amber sky, distant mountain silhouettes, scattered gorse, The Lookout, wide establishing shot, environmental context, mid-distance subject, atmospheric depth, {IRON}, {SAFE}")
    );
}

#[test]
fn examples_3_to_6_illustrations() {
    let c = ok(&req(Tier::SceneIllustration, "arriving at dusk", &["npc:rux"], "where:testworld/the_lookout"));
    assert_eq!(c.seed, 2957923336);
    let lookout = "a stone watchtower on a rocky promontory, barren upland, bruised sky";
    assert_eq!(c.positive_prompt, format!("{G}, {RUX}, {lookout}, arriving at dusk, {SCENE}, {IRON}, {SAFE}"));
    assert_eq!(
        c.clip_prompt,
        format!("painterly digital illustration, muted desaturated palette, gritty mood, {SCENE}")
    );

    let c = ok(&req(Tier::SceneIllustration, "drinking", &["npc:rux"], "where:testgenre/tavern"));
    assert_eq!(c.seed, 251344157);
    assert_eq!(c.positive_prompt, format!("{G}, {RUX}, wooden beams, hearth fire, drinking, {SCENE}, {IRON}, {SAFE}"));

    let mut r = req(Tier::SceneIllustration, "ambush from the doorway", &["npc:rux"], "where:testworld/the_lookout");
    r.camera = Some("topdown_90".into());
    let c = ok(&r);
    assert_eq!(c.seed, 1046034221);
    assert_eq!(c.positive_prompt, format!("{G}, {RUX}, {lookout}, ambush from the doorway, orthographic top-down tactical view, 90-degree overhead angle, battle-map framing, clear spacing between subjects, no perspective, {IRON}, {SAFE}"));
    assert_eq!(
        c.negative_prompt,
        format!("{BASE_NEG}, illegible text, blurry labels, overlapping tokens, 3D perspective, realistic rendering")
    );

    let c = ok(&req(Tier::Landscape, "a breaching corridor at dawn", &[], ""));
    assert_eq!(c.seed, 224889024);
    assert_eq!(c.positive_prompt, format!("{G}, a breaching corridor at dawn, {SCENE}, {SAFE}"));
}

#[test]
fn example_7_pc_descriptor() {
    let mut r = req(Tier::Portrait, "Gladstone", &["pc:gladstone"], "");
    assert_eq!(err(&r), "CatalogMissError: CharacterCatalog has no entry for 'pc:gladstone'");
    r.pc_descriptor = Some(PcDescriptor {
        id: "gladstone".into(),
        appearance: "a wiry highlander in scarred leather coat, copper torc".into(),
        default_pose: "hand resting on belt".into(),
        culture: None,
    });
    let c = ok(&r);
    assert_eq!(c.seed, 343206251);
    assert_eq!(
        c.positive_prompt,
        format!("{G}, a wiry highlander in scarred leather coat, copper torc, hand resting on belt, {SAFE}")
    );
    r.pc_descriptor.as_mut().unwrap().culture = Some("ironhand".into());
    let c = ok(&r);
    assert_eq!(c.seed, 343206251);
    assert_eq!(
        c.positive_prompt,
        format!("{G}, a wiry highlander in scarred leather coat, copper torc, hand resting on belt, {IRON}, {SAFE}")
    );
    // The wire shape.
    let d = PcDescriptor::from_value(
        &serde_json::json!({"id": "x", "appearance": "a", "default_pose": null, "culture": ""}),
    )
    .unwrap()
    .unwrap();
    assert_eq!((d.default_pose.as_str(), d.culture), ("", None));
    assert_eq!(
        PcDescriptor::from_value(&serde_json::json!({"id": ""})).unwrap_err().to_string(),
        "RenderConfigError: pc_descriptor needs a non-empty 'id'"
    );
    assert_eq!(
        PcDescriptor::from_value(&serde_json::json!("x")).unwrap_err().to_string(),
        "RenderConfigError: 'pc_descriptor' must be object or null"
    );
}

#[test]
fn example_8_production_manifest() {
    let mut r = req(Tier::Portrait, "Imperatrix Celestine VII", &["npc:imperatrix_celestine_vii"], "");
    r.genre = "prodgenre".into();
    r.world = "prodworld".into();
    let c = ok(&r);
    assert_eq!(c.seed, 3868147585);
    assert_eq!(c.positive_prompt, format!("{G}, A woman in her early sixties who looks forty and moves like thirty, with deep brown skin and silver hair sculpted into an architectural updo. Tall, imperious, gold cosmetic implants that let her see in the star's full spectrum., {SAFE}"));
    r.characters = vec!["npc:two-word_name".into()];
    assert_eq!(ok(&r).seed, 1059995001);
}

#[test]
fn example_9_camera_on_a_portrait() {
    let mut r = req(Tier::Portrait, "Rux", &["npc:rux"], "");
    r.camera = Some("portrait_closeup".into());
    let c = ok(&r);
    assert_eq!(c.seed, 873008198);
    assert_eq!(c.positive_prompt, format!("{G}, {RUX}, standing, hands folded, neutral expression, tight face-only portrait, emotional weight, shallow depth of field, {IRON}, {SAFE}"));
    // An unknown camera is ignored.
    r.camera = Some("fisheye".into());
    assert_eq!(ok(&r).seed, 1588844506);
}

#[test]
fn example_10_lod_downgrade() {
    let ys = vec!["y"; 350].join(" ");
    let c = ok(&req(Tier::SceneIllustration, &ys, &["npc:rux", "npc:mira"], "where:testworld/the_lookout"));
    assert_eq!(c.seed, 3860728534);
    assert_eq!(c.total, 508);
    assert_eq!(
        c.positive_prompt,
        format!("{G}, an inquisitor, a traveler, a stone watchtower on a rocky promontory, barren upland, bruised sky, {ys}, {SCENE}, {IRON}, {SAFE}")
    );
    assert!(c.evicted.is_empty());
}

#[test]
fn example_11_eviction() {
    let xs = vec!["x"; 380].join(" ");
    let c = ok(&req(Tier::SceneIllustration, &xs, &["npc:rux"], "where:testworld/the_lookout"));
    assert_eq!(c.seed, 1487057617);
    assert_eq!(c.evicted, ["LOCATION:where:testworld/the_lookout:flourish", "DIRECTION_ACTION:inline:flourish"]);
    assert_eq!(c.warnings, ["token budget eviction applied: 51/512"]);
    assert_eq!(
        c.positive_prompt,
        format!("{G}, an inquisitor, a stone watchtower on a rocky, x x x x x x, {SCENE}, {IRON}, {SAFE}")
    );
}

#[test]
fn example_12_budget_error() {
    let words = vec!["word"; 600].join(" ");
    let e = err(&req(Tier::SceneIllustration, &words, &["npc:verbose"], "where:testworld/the_lookout"));
    assert_eq!(e, "BudgetError: identity floor breached: {'ART_SENSIBILITY.GENRE': 10, 'ART_SENSIBILITY.WORLD': 6, 'CASTING': 484, 'LOCATION': 7, 'DIRECTION_ACTION': 7, 'DIRECTION_CAMERA': 9, 'ART_SENSIBILITY.CULTURE': 10}");
}

#[test]
fn example_13_culture_eviction() {
    let mut r = req(Tier::SceneIllustration, "holding the line at the breach", &["pc:hero"], "");
    r.pc_descriptor = Some(PcDescriptor {
        id: "hero".into(),
        appearance: "a stoic ranger in oilcloth cloak".into(),
        default_pose: String::new(),
        culture: Some("longwinded".into()),
    });
    let c = ok(&r);
    assert_eq!(c.seed, 3228613335);
    assert_eq!(c.evicted, ["ART_SENSIBILITY.CULTURE:culture:testgenre/testworld/longwinded:flourish"]);
    assert_eq!(
        c.positive_prompt,
        format!("{G}, a stoic ranger in oilcloth cloak, holding the line at the breach, {SCENE}, c1 c2 c3 c4 c5 c6 c7 c8 c9, {SAFE}")
    );
}

#[test]
fn example_14_post_directive() {
    let mut r = req(Tier::SceneIllustration, "a stare before the draw", &["npc:rux"], "");
    r.camera = Some("extreme_closeup_leone".into());
    let c = ok(&r);
    assert_eq!(c.seed, 3446469043);
    assert_eq!(c.positive_prompt, format!("{G}, {RUX}, a stare before the draw, tight portrait, single dominant facial feature, macro detail, heavy chiaroscuro, sweat and skin texture, shallow depth of field, {IRON}, {SAFE}"));
    let post = c.post.clone().unwrap();
    assert_eq!(post_canvas(&post, 1024, 768).unwrap(), (4096, 3072));
    let rot = sqm::pack::direction::Post { kind: "rotate".into(), mode: None, percent: None, degrees: Some(20.0) };
    assert_eq!(post_canvas(&rot, 1024, 768).unwrap(), (1232, 1072));
    let big = sqm::pack::direction::Post { kind: "crop".into(), mode: None, percent: Some(0.1), degrees: None };
    assert_eq!(
        post_canvas(&big, 1024, 768).unwrap_err().to_string(),
        "RenderConfigError: post directive needs a 10240x7680 canvas (limit 16 MP)"
    );
    // Crop keeps the centred box.
    let mut img = sqm::render::Image::new(64, 48);
    for y in 0..48u32 {
        for x in 0..64u32 {
            let i = ((y * 64 + x) * 3) as usize;
            img.rgb[i] = x as u8;
            img.rgb[i + 1] = y as u8;
        }
    }
    let out = sqm::render::post::apply_post(&post, &img, 16, 12);
    assert_eq!((out.width, out.height), (16, 12));
    assert_eq!((out.rgb[0], out.rgb[1]), (24, 18));
    // Rotation keeps the canvas and moves content about the centre.
    let rotated = sqm::render::post::apply_post(&rot, &img, 32, 24);
    assert_eq!((rotated.width, rotated.height), (32, 24));
}

#[test]
fn example_15_errors() {
    let e = |r: V2Request| err(&r);
    assert_eq!(
        e(req(Tier::SceneIllustration, "x", &["npc:nobody"], "")),
        "CatalogMissError: CharacterCatalog has no entry for 'npc:nobody'"
    );
    assert_eq!(
        e(req(Tier::SceneIllustration, "x", &["npc:rux"], "where:testworld/nowhere")),
        "CatalogMissError: PlaceCatalog has no entry for 'where:testworld/nowhere'"
    );
    assert_eq!(
        e(req(Tier::SceneIllustration, "x", &["npc:rux"], "The Old Tavern")),
        "RenderConfigError: place ref 'The Old Tavern' must use scheme 'where:'"
    );
    assert_eq!(
        e(req(Tier::SceneIllustration, "x", &["Rux"], "")),
        "RenderConfigError: character ref 'Rux' must use scheme 'npc:' or 'pc:'"
    );
    assert_eq!(
        e(req(Tier::Landscape, "where:testgenre/tavern", &[], "")),
        "RenderConfigError: poi targets must reference a specific place in world 'testworld'; got scope 'testgenre'"
    );
}

#[test]
fn lod_plans_by_participant_count() {
    // Six participants alternating: both end at background, no downgrade.
    let c = ok(&req(
        Tier::SceneIllustration,
        "a standoff",
        &["npc:rux", "npc:mira", "npc:rux", "npc:mira", "npc:rux", "npc:mira"],
        "",
    ));
    assert!(
        c.positive_prompt.contains("an inquisitor, a traveler, an inquisitor, a traveler, an inquisitor, a traveler"),
        "{}",
        c.positive_prompt
    );
    // Three: first long, the rest short.
    let c = ok(&req(Tier::SceneIllustration, "a standoff", &["npc:rux", "npc:mira", "npc:verbose"], ""));
    assert!(c.positive_prompt.contains("gaunt inquisitor in grey wool, iron buttons, silver throat device, scar on left cheek, a woman with a longbow, a warlord in obsidian armour"), "{}", c.positive_prompt);
    // Two: both long.
    let c = ok(&req(Tier::SceneIllustration, "a standoff", &["npc:rux", "npc:mira"], ""));
    assert!(c.positive_prompt.contains("scar on left cheek, woman in leather gear, chestnut hair, longbow"));
    // Five or more: long, short, short, then background; re-assigning a
    // ref keeps its place and takes the later LOD.
    let mut r =
        req(Tier::SceneIllustration, "a crowd", &["npc:rux", "npc:mira", "npc:verbose", "pc:hero", "npc:rux"], "");
    r.pc_descriptor =
        Some(PcDescriptor { id: "hero".into(), appearance: "a stoic ranger".into(), ..Default::default() });
    let c = ok(&r);
    assert!(
        c.positive_prompt.contains(
            "an inquisitor, a woman with a longbow, a warlord in obsidian armour, a stoic ranger, an inquisitor, a crowd"
        ),
        "{}",
        c.positive_prompt
    );
    // One: solo.
    let c = ok(&req(Tier::SceneIllustration, "alone", &["npc:mira"], ""));
    assert!(c.positive_prompt.contains("longbow slung across her back, alone"));
}

#[test]
fn catalog_changes_are_seen_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let src = root();
    for e in walkdir::WalkDir::new(&src) {
        let e = e.unwrap();
        let to = dir.path().join(e.path().strip_prefix(&src).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
    let r = req(Tier::Portrait, "Rux", &["npc:rux"], "");
    assert_eq!(compose_v2(dir.path(), &r).unwrap().seed, 1588844506);
    let culture = dir.path().join("testgenre/worlds/testworld/cultures/ironhand.yaml");
    let saved = std::fs::read(&culture).unwrap();
    std::fs::remove_file(&culture).unwrap();
    assert_eq!(
        compose_v2(dir.path(), &r).unwrap_err().to_string(),
        "CatalogMissError: StyleCatalog.culture has no entry for 'testgenre/testworld/ironhand'"
    );
    std::fs::write(&culture, saved).unwrap();
    assert!(compose_v2(dir.path(), &r).is_ok());
    // Catalog shape errors.
    let manifest = dir.path().join("testgenre/worlds/testworld/portrait_manifest.yaml");
    std::fs::write(&manifest, "characters:\n  - type: npc_major\n    appearance: someone\n").unwrap();
    let e = compose_v2(dir.path(), &r).unwrap_err().to_string();
    assert!(e.starts_with("PackLoadError: character entry in ") && e.ends_with("missing both `id` and `name`"), "{e}");
    std::fs::write(&manifest, "characters:\n  - id: rux\n    descriptions: {solo: a, long: b}\n").unwrap();
    let e = compose_v2(dir.path(), &r).unwrap_err().to_string();
    assert!(e.ends_with("character 'rux' missing LODs: ['background', 'short']"), "{e}");
    std::fs::write(&manifest, "characters:\n  - id: rux\n    type: npc\n").unwrap();
    let e = compose_v2(dir.path(), &r).unwrap_err().to_string();
    assert!(e.ends_with("character 'rux': provide either `descriptions` (LOD-keyed) or `appearance` prose"), "{e}");
    std::fs::write(&manifest, "characters: [unclosed\n").unwrap();
    let e = compose_v2(dir.path(), &r).unwrap_err().to_string();
    assert!(e.starts_with("PackLoadError: ") && e.contains("portrait_manifest.yaml:"), "{e}");
    let places = dir.path().join("testgenre/places.yaml");
    std::fs::write(&places, "tavern:\n  landmark: {solo: \"a sign\", backdrop: \"\"}\n").unwrap();
    std::fs::write(&manifest, "characters: []\n").unwrap();
    let e = compose_v2(dir.path(), &req(Tier::Landscape, "x", &[], "")).unwrap_err().to_string();
    assert!(
        e.ends_with("archetypal place testgenre/'tavern' has populated landmark.solo; archetypes have no landmark"),
        "{e}"
    );
    // POI shape errors.
    std::fs::write(&places, "{}\n").unwrap();
    let history = dir.path().join("testgenre/worlds/testworld/history.yaml");
    let saved_history = std::fs::read(&history).unwrap();
    std::fs::write(
        &history,
        "chapters:\n  - points_of_interest:\n      - slug: keep\n        visual_prompt: a tower\n",
    )
    .unwrap();
    let e = compose_v2(dir.path(), &req(Tier::Landscape, "x", &[], "")).unwrap_err().to_string();
    assert!(
        e.ends_with("POI 'keep' has string visual_prompt/environment — migrate to {solo: ..., backdrop: ...} LODs"),
        "{e}"
    );
    std::fs::write(&history, "chapters:\n  - points_of_interest:\n      - region: north\n").unwrap();
    let e = compose_v2(dir.path(), &req(Tier::Landscape, "x", &[], "")).unwrap_err().to_string();
    assert!(e.starts_with("PackLoadError: POI in ") && e.ends_with("needs `slug` or `name`"), "{e}");
    // A POI without visual text is not catalogued.
    std::fs::write(&history, "chapters:\n  - points_of_interest:\n      - slug: blank\n        name: Blank\n").unwrap();
    let e = compose_v2(dir.path(), &req(Tier::Landscape, "where:testworld/blank", &[], "")).unwrap_err().to_string();
    assert_eq!(e, "CatalogMissError: PlaceCatalog has no entry for 'where:testworld/blank'");
    std::fs::write(&history, saved_history).unwrap();
    // An empty world style.
    let world_style = dir.path().join("testgenre/worlds/testworld/visual_style.yaml");
    std::fs::write(&world_style, "positive_suffix: \"\"\nnegative_prompt: x\n").unwrap();
    let e = compose_v2(dir.path(), &req(Tier::Landscape, "x", &[], "")).unwrap_err().to_string();
    assert!(
        e.starts_with("StyleMissError: StyleCatalog.world unrenderable for 'testgenre/testworld': empty or missing positive_suffix in ")
            && e.ends_with("(known_keys=['negative_prompt', 'positive_suffix'])"),
        "{e}"
    );
    std::fs::write(&world_style, "positive_suffix: \"bruised amber sky, weathered surfaces\"\n").unwrap();
    // A broken override applies to every v2 render of the genre.
    std::fs::write(&places, "{}\n").unwrap();
    std::fs::write(dir.path().join("testgenre/cameras.yaml"), "scene: {prompt: x}\n").unwrap();
    let e = compose_v2(dir.path(), &req(Tier::Landscape, "x", &[], "")).unwrap_err().to_string();
    assert!(e.starts_with("RenderConfigError: ") && e.contains("cameras.yaml: cameras.yaml missing presets: ["), "{e}");
}

#[test]
fn example_16_routing_and_17_cli() {
    let r = root();
    let dry = |args: &[&str]| {
        let o = Command::new(common::SQM)
            .args(["render", "--dry-run", "--json", "--genre-packs"])
            .arg(&r)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) =
        dry(&["--genre", "testgenre", "--world", "testworld", "--tier", "portrait", "--character", "npc:rux"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["composer"], "v2");
    assert_eq!(v["seed"], 1588844506u64);
    assert_eq!(v["evicted"], serde_json::json!([]));
    assert_eq!(v["positive_prompt"], format!("{G}, {RUX}, standing, hands folded, neutral expression, {IRON}, {SAFE}"));
    // text_overlay stays Flux era; a prose-only portrait too.
    let (_, out, _) = dry(&["--genre", "testgenre", "--world", "testworld", "--tier", "text_overlay", "a sign"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["composer"], "flux-era");
    let (_, out, _) = dry(&["--genre", "testgenre", "--world", "testworld", "--tier", "portrait", "an old soldier"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["composer"].as_str(), v["layers"].as_array().map(Vec::len)), (Some("flux-era"), Some(0)));
    // pc descriptor flags.
    let (code, out, err) = dry(&[
        "--genre",
        "testgenre",
        "--world",
        "testworld",
        "--tier",
        "portrait",
        "--character",
        "pc:gladstone",
        "--pc-appearance",
        "a wiry highlander in scarred leather coat, copper torc",
        "--pc-pose",
        "hand resting on belt",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["seed"], 343206251u64);
    // Errors: compose failures exit 1; usage problems exit 2.
    let (code, _, err) = dry(&[
        "--genre",
        "testgenre",
        "--world",
        "testworld",
        "--tier",
        "scene_illustration",
        "--character",
        "npc:nobody",
        "x",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(err.trim(), "error: COMPOSE_FAILED: CatalogMissError: CharacterCatalog has no entry for 'npc:nobody'");
    let (code, _, _) = dry(&[
        "--genre",
        "testgenre",
        "--world",
        "testworld",
        "--tier",
        "portrait",
        "--camera",
        "fisheye",
        "--character",
        "npc:rux",
    ]);
    assert_eq!(code, Some(2));
    let (code, _, err) = dry(&[
        "--genre",
        "testgenre",
        "--world",
        "testworld",
        "--tier",
        "portrait",
        "--character",
        "npc:rux",
        "--pc-pose",
        "x",
    ]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn daemon_composes_with_v2_and_reports_compose_errors() {
    let r = root();
    let d = common::Daemon::start(&["--no-warmup", "--no-heartbeat", "--genre-packs", r.to_str().unwrap()]);
    let ok = d.call(r#"{"id":1,"method":"render","params":{"tier":"portrait","subject":"Rux","characters":["npc:rux"],"genre":"testgenre","world":"testworld"}}"#);
    assert_eq!(ok["result"]["seed"], 1588844506u64, "{ok}");
    let (_, _, text) =
        sqm::render::output::read_png_text(Path::new(ok["result"]["image_path"].as_str().unwrap())).unwrap();
    assert!(text.iter().any(|(k, v)| k == "parameters" && v.starts_with(G)));
    let words = vec!["word"; 600].join(" ");
    let line = serde_json::json!({"id":3,"method":"render","params":{"tier":"scene_illustration","subject":words,"characters":["npc:verbose"],"location":"where:testworld/the_lookout","genre":"testgenre","world":"testworld"}}).to_string();
    let e = d.call(&line);
    assert_eq!(e["error"]["error_type"], "BudgetError", "{e}");
    assert_eq!(e["error"]["tier"], "scene_illustration");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("BudgetError: identity floor breached: {'ART_SENSIBILITY.GENRE': 10,"));
    let e = d.call(r#"{"id":4,"method":"render","params":{"tier":"portrait","characters":["npc:rux"],"subject":"Rux","genre":"testgenre","world":"testworld","camera":5}}"#);
    assert_eq!(e["error"], serde_json::json!({"code":"INVALID_REQUEST","message":"'camera' must be string or null"}));
    let e = d.call(r#"{"id":5,"method":"render","params":{"tier":"portrait","characters":["npc:rux"],"subject":"Rux","genre":"testgenre","world":"testworld","pc_descriptor":[]}}"#);
    assert_eq!(e["error"]["message"], "'pc_descriptor' must be object or null");
    assert_eq!(d.call(r#"{"id":6,"method":"ping"}"#)["result"]["status"], "ok");
}
