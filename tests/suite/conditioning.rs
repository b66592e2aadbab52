//! Conditioning (conditioning.md) against the reference. LoRA (§1): rank-2
//! LoRA files on the tiny dev model in PEFT, kohya and XLabs formats,
//! loaded by diffusers' own `load_lora_weights` in
//! `scripts/flux_reference.py`, and a full kohya file's merged tensors
//! against numpy; then the request and pack paths of §5: containment, the
//! exact refusals, triggers and keys. Depth with an init image (D2), the
//! canvas fit against Pillow (R1), and `depth_invert`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use sqm::interpret::Tier;
use sqm::prompt::Variant;
use sqm::render::flux::{self, FluxBackend, ImageOptions, Trace};
use sqm::render::lora::Lora;
use sqm::render::RenderJob;

use crate::common::diff;

use crate::flux_reference::{case, fixtures, r};

fn loras_of(c: &Value) -> Vec<Lora> {
    let list: Vec<(PathBuf, f64)> = c["loras"]
        .as_array()
        .map(|a| {
            a.iter().map(|l| (fixtures().join(l["file"].as_str().unwrap()), l["scale"].as_f64().unwrap())).collect()
        })
        .unwrap_or_default();
    sqm::render::lora::from_paths(&list).unwrap()
}

fn job_of(c: &Value) -> RenderJob {
    let mut job = RenderJob::warm_up(c["steps"].as_u64().unwrap() as u32, Variant::Dev);
    job.tier = Tier::Portrait;
    job.positive_prompt = c["prompt"].as_str().unwrap().into();
    job.seed = c["seed"].as_u64().unwrap() as u32;
    job.width = c["width"].as_u64().unwrap() as u32;
    job.height = c["height"].as_u64().unwrap() as u32;
    job.guidance = c["guidance"].as_f64().unwrap() as f32;
    job.loras = loras_of(c);
    job
}

fn backend() -> FluxBackend {
    let opts =
        ImageOptions { model_dir: Some(fixtures().join("tiny-dev")), device: "cpu".into(), ..Default::default() };
    FluxBackend::from_files(opts.clone(), flux::locate_in(&opts, None).unwrap()).unwrap()
}

/// Renders `name`'s job and compares it with diffusers: the final latents
/// within 1e-4, pixels within 1 level. Returns the pixels.
fn check(b: &mut FluxBackend, name: &str, job: &RenderJob) -> Vec<u8> {
    let mut trace = Trace::default();
    let img = b.render_traced(job, &mut |_, _| {}, &|| false, Some(&mut trace)).unwrap();
    let fin = diff(&trace.latents.unwrap().squeeze(0).unwrap(), &r(&format!("{name}.final")));
    let want = r(&format!("{name}.image")).flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let max_pix = img.rgb.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    eprintln!("{name}: final {:.1e}/{:.2}, pixels max {max_pix}", fin.0, fin.1);
    assert!(fin.0 <= 1e-4, "{name}: final latents differ by {}", fin.0);
    assert!(max_pix <= 1, "{name}: a pixel differs by {max_pix}");
    img.rgb
}

/// F0 (the plain harness), then PEFT, kohya, XLabs and PEFT + XLabs on one
/// backend: each new set rebuilds the transformer from its file, so the
/// plain render afterwards is the first one, bit for bit.
#[test]
fn lora_renders_match_diffusers_in_each_format() {
    let mut b = backend();
    let plain = check(&mut b, "F0", &job_of(&case("F0")));
    for name in ["L1", "L2", "L3", "L4"] {
        let c = case(name);
        let pixels = check(&mut b, name, &job_of(&c));
        assert_ne!(pixels, plain, "{name} changes the picture ({} levels in diffusers)", c["moved_levels"]);
    }
    // [A, B] ≡ [B, A]: the canonical set fixes the merge order.
    let mut job = job_of(&case("L4"));
    job.loras.reverse();
    job.loras = sqm::render::lora::canonical(job.loras);
    assert_eq!(job.loras, job_of(&case("L4")).loras);
    // Never unmerged: the plain model is rebuilt from its file.
    assert_eq!(check(&mut b, "F0", &job_of(&case("F0"))), plain);
    // Scale 0 is dropped from the set: the plain render.
    let zero = sqm::render::lora::from_paths(&[(fixtures().join("lora/peft_all.safetensors"), 0.0)]).unwrap();
    assert!(zero.is_empty());
}

/// D3: the depth model with an XLabs LoRA, against FluxControlPipeline.
#[test]
fn depth_with_a_lora_matches_diffusers() {
    let c = case("D3");
    let mut b = backend();
    let mut job = job_of(&c);
    let img = sqm::render::input::decode(&std::fs::read(fixtures().join("depth_64x48.png")).unwrap()).unwrap();
    sqm::render::control::set_depth(&mut job, &img, &sqm::render::control::DepthSettings::new("flux1-depth-dev"));
    check(&mut b, "D3", &job);
}

/// W1: kohya_full (every module: qkv, linear1, the embedders, the final
/// layer) merged by sqm equals W + s·(α/r)·up·down computed by numpy.
#[test]
fn merged_tensors_match_numpy() {
    let c = case("W1");
    let loras =
        sqm::render::lora::from_paths(&[(fixtures().join(c["file"].as_str().unwrap()), c["scale"].as_f64().unwrap())])
            .unwrap();
    let targets: Vec<String> =
        c["targets"].as_array().unwrap().iter().map(|t| format!("{}.weight", t.as_str().unwrap())).collect();
    assert!(targets.len() >= 25, "every module kind is covered");
    let merged = flux::merged_weights(&fixtures().join("tiny-dev/flux1-dev.safetensors"), &loras, &targets).unwrap();
    for (name, got) in targets.iter().zip(&merged) {
        let want = r(&format!("W1.{}", name.strip_suffix(".weight").unwrap()));
        let (d, m) = diff(got, &want);
        assert!(d <= 1e-6 * m.max(1.0), "{name}: merged tensor differs by {d} (max {m})");
    }
}

/// A pack of genre `g` with one LoRA (trigger `gstyle`) for `applies_to`,
/// the file `lora/g.safetensors` inside it, and `sw/sw.safetensors`.
fn pack(applies_to: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for g in ["g", "sw"] {
        std::fs::create_dir_all(root.path().join(g).join("lora")).unwrap();
    }
    std::fs::write(
        root.path().join("g/visual_style.yaml"),
        format!(
            "positive_suffix: ink wash\nloras:\n  - {{name: g_land, file: lora/g.safetensors, scale: 0.8, applies_to: [{applies_to}], trigger: gstyle}}\n"
        ),
    )
    .unwrap();
    std::fs::write(root.path().join("sw/visual_style.yaml"), "positive_suffix: space opera\n").unwrap();
    std::fs::copy(fixtures().join("lora/xlabs.safetensors"), root.path().join("g/lora/g.safetensors")).unwrap();
    std::fs::copy(fixtures().join("lora/peft_all.safetensors"), root.path().join("sw/sw.safetensors")).unwrap();
    root
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

fn dry_run(root: &Path, extra: &[&str]) -> Value {
    let dev = fixtures().join("tiny-dev");
    let mut args = vec!["render", "--dry-run", "--json", "--genre-packs", root.to_str().unwrap(), "--genre", "g"];
    args.extend(["--backend", "flux", "--model-dir", dev.to_str().unwrap()]);
    args.extend(extra);
    let o = std::process::Command::new(crate::common::SQM).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// §5: the pack's stack for the landscape tier puts its trigger first and
/// its LoRA in the job; the portrait tier takes none; `--lora` replaces the
/// stack and its trigger; a verbatim prompt keeps no trigger.
#[test]
fn pack_loras_stack_by_tier_with_triggers() {
    let root = pack("landscape");
    let g = sha256(&root.path().join("g/lora/g.safetensors"));
    let land = dry_run(root.path(), &["--tier", "landscape", "ruined", "chapel"]);
    assert!(land["positive_prompt"].as_str().unwrap().starts_with("gstyle, "), "{land}");
    assert_eq!(land["loras"], json!([{"name": "g_land", "file": "lora/g.safetensors", "sha256": g, "scale": 0.8}]));
    let portrait = dry_run(root.path(), &["--tier", "portrait", "ruined", "chapel"]);
    assert!(!portrait["positive_prompt"].as_str().unwrap().contains("gstyle"), "{portrait}");
    assert!(portrait.get("loras").is_none(), "{portrait}");
    let own = fixtures().join("lora/kohya_part.safetensors");
    let explicit =
        dry_run(root.path(), &["--tier", "landscape", "--lora", &format!("{}:0.5", own.display()), "ruined", "chapel"]);
    assert!(!explicit["positive_prompt"].as_str().unwrap().contains("gstyle"), "{explicit}");
    assert_eq!(explicit["loras"][0]["sha256"], sha256(&own));
    assert_eq!(explicit["loras"][0]["scale"], 0.5);
    let verbatim = dry_run(root.path(), &["--tier", "landscape", "--prompt", "x"]);
    assert_eq!(verbatim["positive_prompt"], "x");
    assert_eq!(verbatim["loras"][0]["sha256"], g, "a verbatim prompt still takes the pack's LoRA");
    // A broken entry is the pack's error, named by file and entry.
    std::fs::write(
        root.path().join("g/visual_style.yaml"),
        "loras:\n  - {name: a, file: lora/g.safetensors, applies_to: [all]}\n",
    )
    .unwrap();
    let o = std::process::Command::new(crate::common::SQM)
        .args([
            "render",
            "--dry-run",
            "--tier",
            "landscape",
            "--genre-packs",
            root.path().to_str().unwrap(),
            "--genre",
            "g",
            "x",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("PackLoadError: g/visual_style.yaml: loras[0]: missing required field 'scale'"), "{err}");
}

/// A daemon on the tiny dev model over the packs in `root`.
fn dev_daemon(root: &tempfile::TempDir, extra: &[&str]) -> crate::common::Daemon {
    let dev = fixtures().join("tiny-dev");
    let mut args = vec!["--backend", "flux", "--model-dir", dev.to_str().unwrap(), "--device", "cpu", "--no-warmup"];
    args.extend(["--genre-packs", root.path().to_str().unwrap()]);
    args.extend(extra);
    crate::common::Daemon::start(&args)
}

/// A rank-2 kohya LoRA file with one module `stem` of `inputs` → `outputs`.
fn kohya_file(path: &Path, stem: &str, inputs: usize, outputs: usize) {
    let zeros = |r: usize, c: usize| Tensor::zeros((r, c), candle_core::DType::F32, &Device::Cpu).unwrap();
    let m = HashMap::from([
        (format!("{stem}.lora_down.weight"), zeros(2, inputs)),
        (format!("{stem}.lora_up.weight"), zeros(outputs, 2)),
    ]);
    candle_core::safetensors::save(&m, path).unwrap();
}

/// §5 on the socket with the tiny dev model: a request's LoRA in the genre
/// pack replaces the stack (`conditioned`, the PNG's `Lora hashes`), the
/// refusals have §1.7's texts and name nothing of the host, the pack stack
/// applies per tier, and a changed file changes the key.
#[test]
fn the_daemon_takes_loras_from_the_pack_only() {
    let root = pack("text_overlay");
    let d = dev_daemon(&root, &[]);
    let call = |params: Value| d.call(&json!({"id": "l", "method": "render", "params": params}).to_string());
    let base = json!({"tier": "text_overlay", "positive_prompt": "x", "seed": 1, "genre": "sw"});
    let with = |extra: Value| {
        let mut p = base.clone();
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let v = call(with(json!({"lora_paths": ["sw.safetensors"], "lora_scales": [0.8]})));
    assert_eq!(v["result"]["conditioned"], json!(["lora"]), "{v}");
    let file = v["result"]["image_path"].as_str().unwrap().to_owned();
    let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
    let hash = sha256(&root.path().join("sw/sw.safetensors"));
    assert!(text.contains(&format!("Lora hashes: \"sw: {}\"", &hash[..12])), "the PNG names the LoRA");
    let plain = call(base.clone());
    assert_ne!(plain["result"]["image_path"], v["result"]["image_path"], "a LoRA render has its own key");
    assert!(plain["result"].get("conditioned").is_none(), "{plain}");
    for (params, message) in [
        (
            json!({"lora_paths": ["/etc/passwd.safetensors"]}),
            "lora_paths[0]: '/etc/passwd.safetensors' is not a readable LoRA in the genre pack or --lora-dir",
        ),
        (
            json!({"lora_paths": ["../g/lora/g.safetensors"]}),
            "lora_paths[0]: '../g/lora/g.safetensors' is not a readable LoRA in the genre pack or --lora-dir",
        ),
        (json!({"lora_paths": ["x.ckpt"]}), "lora_paths[0]: only .safetensors LoRA files are loaded"),
        (
            json!({"lora_path": "sw.safetensors", "lora_paths": ["sw.safetensors"]}),
            "use either lora_path/lora_scale or lora_paths/lora_scales, not both",
        ),
        (
            json!({"lora_paths": ["sw.safetensors", "sw.safetensors"], "lora_scales": [1]}),
            "'lora_scales' has 1 entries but 'lora_paths' has 2",
        ),
        (
            json!({"lora_paths": ["sw.safetensors", "./sw.safetensors"], "lora_scales": [1, 1]}),
            "lora_paths[1] is the same file as lora_paths[0]",
        ),
        (
            json!({"lora_paths": ["sw.safetensors"], "lora_scales": [2.5]}),
            "lora_scales[0] must be a finite number in [0, 2], got 2.5",
        ),
        (json!({"lora_paths": vec!["a.safetensors"; 9]}), "at most 8 LoRAs per render, got 9"),
    ] {
        let v = call(with(params.clone()));
        assert_eq!(v["error"]["code"], "INVALID_REQUEST", "{params}: {v}");
        assert_eq!(v["error"]["message"], message, "{params}");
    }
    // The Flux-era singleton, and the pack stack with its trigger.
    let single = call(with(json!({"lora_path": "sw.safetensors", "lora_scale": 0.8})));
    assert_eq!(single["result"]["image_path"], v["result"]["image_path"], "lora_path is a one-element list");
    let stacked = call(json!({"tier": "text_overlay", "subject": "ruined chapel", "seed": 1, "genre": "g"}));
    assert_eq!(stacked["result"]["conditioned"], json!(["lora"]), "{stacked}");
    let off =
        call(json!({"tier": "text_overlay", "subject": "ruined chapel", "seed": 1, "genre": "g", "lora_paths": []}));
    assert!(off["result"].get("conditioned").is_none(), "[] turns the pack's LoRAs off: {off}");
    // A changed file changes the key.
    let sw = root.path().join("sw/sw.safetensors");
    std::fs::copy(fixtures().join("lora/kohya_part.safetensors"), &sw).unwrap();
    let changed = call(with(json!({"lora_paths": ["sw.safetensors"], "lora_scales": [0.8]})));
    assert_eq!(changed["result"]["conditioned"], json!(["lora"]), "{changed}");
    assert_ne!(changed["result"]["image_path"], v["result"]["image_path"]);
    // A LoRA that matches no Flux module fails the build, and the daemon keeps serving.
    kohya_file(&root.path().join("sw/sdxl.safetensors"), "lora_unet_down_blocks_0_attentions_0_proj_in", 8, 8);
    let v = call(with(json!({"lora_paths": ["sdxl.safetensors"]})));
    assert_eq!(v["error"]["code"], "GENERATION_FAILED", "{v}");
    assert_eq!(
        v["error"]["message"],
        "backend 'flux' failed: LoRA 'sdxl': 1 keys match no Flux module (first: lora_unet_down_blocks_0_attentions_0_proj_in)"
    );
    // A LoRA for another width: the shapes are named.
    kohya_file(&root.path().join("sw/wide.safetensors"), "lora_unet_img_in", 128, 32);
    let v = call(with(json!({"lora_paths": ["wide.safetensors"]})));
    assert_eq!(
        v["error"]["message"],
        "backend 'flux' failed: LoRA 'wide': img_in: A is [2, 128], expected [rank, 64] (the module's input width)"
    );
    assert!(call(base).get("result").is_some(), "the daemon keeps serving");
}

/// Sketch checks the paths, applies no LoRA, warns, and keeps the plain key.
#[test]
fn sketch_checks_loras_and_warns() {
    let root = pack("landscape");
    let d = crate::common::Daemon::start(&["--no-warmup", "--genre-packs", root.path().to_str().unwrap()]);
    let call = |p: Value| d.call(&json!({"id": "s", "method": "render", "params": p}).to_string());
    let plain = call(json!({"tier": "portrait", "positive_prompt": "x", "seed": 2, "genre": "sw"}));
    let v = call(
        json!({"tier": "portrait", "positive_prompt": "x", "seed": 2, "genre": "sw", "lora_paths": ["sw.safetensors"]}),
    );
    assert_eq!(v["result"]["warnings"], json!(["loras: backend 'sketch' applies no LoRA"]), "{v}");
    assert_eq!(v["result"]["image_path"], plain["result"]["image_path"], "the plain key");
    let v = call(
        json!({"tier": "portrait", "positive_prompt": "x", "genre": "sw", "lora_paths": ["/etc/passwd.safetensors"]}),
    );
    assert_eq!(v["error"]["code"], "INVALID_REQUEST", "{v}");
}

/// D2: depth and an init image together, against diffusers'
/// FluxControlImg2ImgPipeline (strength 0.6: 3 of 4 steps).
#[test]
fn depth_with_an_init_image_matches_diffusers() {
    let c = case("D2");
    let mut b = backend();
    let mut job = job_of(&c);
    let decode = |f: &str| sqm::render::input::decode(&std::fs::read(fixtures().join(f)).unwrap()).unwrap();
    sqm::render::control::set_depth(
        &mut job,
        &decode(c["depth"].as_str().unwrap()),
        &sqm::render::control::DepthSettings::new("flux1-depth-dev"),
    );
    let init = decode(c["image"].as_str().unwrap());
    job.init = Some(sqm::render::init::InitImage::new(&init, job.width, job.height, c["strength"].as_f64().unwrap()));
    let mut steps = 0;
    let mut trace = Trace::default();
    let img = b.render_traced(&job, &mut |_, n| steps = n, &|| false, Some(&mut trace)).unwrap();
    assert_eq!(steps as u64, c["steps_run"].as_u64().unwrap());
    let fin = diff(&trace.latents.unwrap().squeeze(0).unwrap(), &r("D2.final"));
    let want = r("D2.image").flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let max_pix = img.rgb.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    eprintln!("D2: final {:.1e}/{:.2}, pixels max {max_pix}", fin.0, fin.1);
    assert!(fin.0 <= 1e-4 && max_pix <= 1, "D2: latents {} pixels {max_pix}", fin.0);
}

/// R1: fitting an image to the canvas (cover, centre crop, Lanczos) as
/// diffusers' `resize_mode="crop"` does with Pillow: a 96×64 depth map down
/// to 64×48 and the 64×48 init image up to 80×80, within 2 levels.
#[test]
fn canvas_fit_matches_pillow() {
    for f in case("R1")["fits"].as_array().unwrap() {
        let img = sqm::render::input::decode(&std::fs::read(fixtures().join(f["source"].as_str().unwrap())).unwrap())
            .unwrap();
        let (w, h) = (f["width"].as_u64().unwrap() as u32, f["height"].as_u64().unwrap() as u32);
        let job = RenderJob { width: w, height: h, ..RenderJob::warm_up(4, Variant::Dev) };
        let init = sqm::render::init::InitImage::new(&img, job.width, job.height, 1.0);
        let want = r(f["key"].as_str().unwrap()).flatten_all().unwrap().to_vec1::<u8>().unwrap();
        let d = init.rgb.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        eprintln!("{}: {}x{} → {w}x{h}, max difference {d} levels", f["key"], img.width, img.height);
        assert!(d <= 2, "{}: the fit differs from Pillow's by {d} levels", f["key"]);
    }
}

/// `depth_invert`: a far = white map, inverted, conditions exactly as the
/// near = white map does (same hash, so the same key and pixels).
#[test]
fn an_inverted_depth_map_is_turned_back() {
    let png = std::fs::read(fixtures().join("depth_64x48.png")).unwrap();
    let img = sqm::render::input::decode(&png).unwrap();
    let mut far_white = img.clone();
    far_white.pixels.iter_mut().for_each(|v| *v = 255 - *v);
    let depth = sqm::render::control::DepthSettings::new("flux1-depth-dev");
    let inverted = sqm::render::control::DepthSettings { invert: true, guidance: 7.5, ..depth.clone() };
    let (mut a, mut b) = (job_of(&case("F0")), job_of(&case("F0")));
    sqm::render::control::set_depth(&mut a, &img, &depth);
    sqm::render::control::set_depth(&mut b, &far_white, &inverted);
    let (ca, cb) = (a.control.unwrap(), b.control.unwrap());
    assert_eq!((ca.sha256, ca.rgb), (cb.sha256, cb.rgb));
    assert_eq!((a.guidance, b.guidance), (10.0, 7.5), "--depth-guidance sets the guidance");
}

/// `prerender-pack` plans with the pack's stacks: a landscape job carries
/// the pack's LoRA (and its key changes with it); sketch keeps plain keys.
#[test]
fn prerender_plans_with_the_packs_loras() {
    let root = tempfile::tempdir().unwrap();
    let pack = root.path().join("ashfall");
    crate::common::copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall"), &pack);
    let plan = |backend: &str| sqm::prerender::plan(&pack, backend, Some("m"), &[], None, None).unwrap();
    let before = plan("flux");
    std::fs::create_dir_all(pack.join("lora")).unwrap();
    std::fs::copy(fixtures().join("lora/xlabs.safetensors"), pack.join("lora/land.safetensors")).unwrap();
    let style = std::fs::read_to_string(pack.join("visual_style.yaml")).unwrap();
    std::fs::write(
        pack.join("visual_style.yaml"),
        format!("{style}loras:\n  - {{name: land, file: lora/land.safetensors, scale: 0.8, applies_to: [landscape], trigger: ashland}}\n"),
    )
    .unwrap();
    let after = plan("flux");
    let sketch_before = sqm::prerender::plan(&pack, "sketch", Some("m"), &[], None, None).unwrap();
    let mut landscapes = 0;
    for (a, b) in before.iter().zip(&after) {
        let sqm::prerender::Work::Image(j) = &b.work else { continue };
        if j.job.tier == Tier::Landscape {
            landscapes += 1;
            assert_eq!(j.job.loras.len(), 1, "{}", b.id);
            assert_ne!(a.key, b.key, "{}: the LoRA enters the key", b.id);
        } else {
            assert!(j.job.loras.is_empty(), "{}", b.id);
        }
    }
    assert!(landscapes > 0, "the example pack plans landscapes");
    for j in &sketch_before {
        if let sqm::prerender::Work::Image(p) = &j.work {
            assert!(p.job.loras.is_empty(), "sketch applies none");
        }
    }
}

/// `--zmq-lora` fixes the stack of every ZeroMQ render; `--lora-slots 2`
/// keeps the plain and the LoRA build side by side; GGUF weights and a
/// DoRA file are refused by name, and the daemon keeps serving.
#[test]
fn zeromq_lora_slots_and_refusals() {
    let c = crate::common::Controller::bind(None);
    let dev = fixtures().join("tiny-dev");
    let lora = format!("{}:0.7", fixtures().join("lora/xlabs.safetensors").display());
    let d = c.worker(&[
        "--backend",
        "flux",
        "--model-dir",
        dev.to_str().unwrap(),
        "--device",
        "cpu",
        "--zmq-lora",
        &lora,
        "--lora-slots",
        "2",
    ]);
    c.send(&json!({"type":"RenderRequest","request_id":"z1","prompt":"sand dunes at dawn","seed":42,"width":64,"height":64}));
    let r = c.recv();
    assert_eq!(r["type"], "ImageReady", "{r}");
    assert_eq!(r["conditioned"], json!(["lora"]), "{r}");
    // The socket renders plain beside it: two builds of one file stay.
    let v = d.call(
        &json!({"id":"p","method":"render","params":{"tier":"text_overlay","positive_prompt":"x","seed":1}})
            .to_string(),
    );
    assert!(v["result"].is_object(), "{v}");
    let st = d.call(r#"{"id":"st","method":"status"}"#)["result"]["sqm"].clone();
    let transformers = st["loaded"].as_array().unwrap().iter().filter(|r| r["component"] == "transformer").count();
    assert_eq!(transformers, 2, "{st}");
    // A DoRA file is refused when the transformer is built.
    let root = pack("text_overlay");
    crate::common::dora_lora(&root.path().join("sw/dora.safetensors"));
    let d = dev_daemon(&root, &["--quantized"]);
    let call = |p: Value| d.call(&json!({"id": "q", "method": "render", "params": p}).to_string());
    let v = call(json!({"tier":"text_overlay","positive_prompt":"x","genre":"sw","lora_paths":["dora.safetensors"]}));
    assert_eq!(v["error"]["code"], "GENERATION_FAILED", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("LoRA 'dora': DoRA LoRAs (dora_scale) are not supported"),
        "{v}"
    );
    let v = call(json!({"tier":"text_overlay","positive_prompt":"x","genre":"sw","lora_paths":["sw.safetensors"]}));
    assert_eq!(v["error"]["code"], "GENERATION_FAILED", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("LoRA on GGUF weights is not supported yet"), "{v}");
    assert!(call(json!({"tier":"text_overlay","positive_prompt":"x"}))["result"].is_object(), "still serving");
}
