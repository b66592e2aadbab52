//! The flux backend against the reference implementation: diffusers'
//! FluxPipeline ran on tiny non-degenerate random models (T5's layer norms
//! and the QK norms random, not zero) with sqm's noise, and
//! `scripts/flux_reference.py` committed its tensors in tests/fixtures/flux/.
//! Schnell and dev, each as a BFL safetensors file and as a Q8_0 GGUF.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use sqm::interpret::Tier;
use sqm::prompt::Variant;
use sqm::render::flux::{self, FluxBackend, ImageOptions, Trace};
use sqm::render::RenderJob;

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flux")
}

fn reference() -> &'static HashMap<String, Tensor> {
    static R: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    R.get_or_init(|| candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap())
}

pub(crate) fn r(key: &str) -> Tensor {
    reference().get(key).unwrap_or_else(|| panic!("no {key} in the reference")).clone()
}

pub(crate) fn case(name: &str) -> serde_json::Value {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap()).unwrap();
    doc["cases"][name].clone()
}

use crate::common::diff;

fn check(name: &str, variant: Variant, quantized: bool) {
    let c = case(name);
    let layout = fixtures().join(format!("tiny-{}", variant.name()));
    let opts = ImageOptions { model_dir: Some(layout), quantized, device: "cpu".into(), ..Default::default() };
    let files = flux::locate_in(&opts, None).unwrap();
    let mut b = FluxBackend::from_files(opts, files).unwrap();
    let job = RenderJob {
        tier: Tier::Portrait,
        positive_prompt: c["prompt"].as_str().unwrap().into(),
        negative_prompt: String::new(),
        seed: c["seed"].as_u64().unwrap() as u32,
        width: c["width"].as_u64().unwrap() as u32,
        height: c["height"].as_u64().unwrap() as u32,
        steps: c["steps"].as_u64().unwrap() as u32,
        guidance: c["guidance"].as_f64().unwrap() as f32,
        variant,
        subject: String::new(),
        mood: String::new(),
        post: None,
        init: None,
        control: None,
        loras: Vec::new(),
    };
    let mut trace = Trace::default();
    let img = b.render_traced(&job, &mut |_, _| {}, &|| false, Some(&mut trace)).unwrap();
    let sig: Vec<f32> = trace.sigmas.iter().map(|&s| s as f32).collect();
    let (ds, _) = diff(&Tensor::new(sig.as_slice(), &Device::Cpu).unwrap(), &r(&format!("{name}.sigmas")));
    let (dn, _) = diff(&trace.noise.unwrap().squeeze(0).unwrap(), &r(&format!("{name}.noise")));
    let t5 = diff(&trace.t5.unwrap().squeeze(0).unwrap(), &r(&format!("{name}.t5")));
    let pooled = diff(&trace.pooled.unwrap().squeeze(0).unwrap(), &r(&format!("{name}.pooled")));
    let v0 = diff(&trace.first_velocity.unwrap().squeeze(0).unwrap(), &r(&format!("{name}.v0")));
    let fin = diff(&trace.latents.unwrap().squeeze(0).unwrap(), &r(&format!("{name}.final")));
    let want = r(&format!("{name}.image")).flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let pix: Vec<i32> = img.rgb.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).abs()).collect();
    let (max_pix, mean_pix) = (*pix.iter().max().unwrap(), pix.iter().sum::<i32>() as f64 / pix.len() as f64);
    eprintln!(
        "{name} ({}{}): sigma {ds:.1e}, noise {dn:.1e}, t5 {:.1e}/{:.2}, pooled {:.1e}/{:.2}, v0 {:.1e}/{:.2}, final {:.1e}/{:.2}, pixels max {max_pix} mean {mean_pix:.3}",
        variant.name(), if quantized { ", gguf" } else { "" }, t5.0, t5.1, pooled.0, pooled.1, v0.0, v0.1, fin.0, fin.1
    );
    assert!(ds <= 1e-6 && dn <= 1e-6, "{name}: schedule {ds} or noise {dn} differs");
    assert!(t5.0 <= 1e-4 * t5.1.max(1.0), "{name}: T5 differs by {}", t5.0);
    assert!(pooled.0 <= 1e-4 * pooled.1.max(1.0), "{name}: CLIP differs by {}", pooled.0);
    if quantized {
        assert!(fin.0 <= 0.1 * fin.1, "{name}: final latents differ by {} (max {})", fin.0, fin.1);
        assert!(mean_pix <= 4.0, "{name}: mean pixel difference {mean_pix}");
    } else {
        assert!(v0.0 <= 1e-4 * v0.1.max(1.0), "{name}: the step-0 velocity differs by {}", v0.0);
        assert!(fin.0 <= 5e-4, "{name}: final latents differ by {}", fin.0);
        assert!(max_pix <= 1, "{name}: a pixel differs by {max_pix}");
    }
}

#[test]
fn schnell_matches_diffusers() {
    check("FS1", Variant::Schnell, false);
}

#[test]
fn dev_matches_diffusers() {
    check("FD1", Variant::Dev, false);
}

#[test]
fn gguf_schnell_matches_diffusers_within_quantization() {
    check("FS1", Variant::Schnell, true);
}

#[test]
fn gguf_dev_matches_diffusers_within_quantization() {
    check("FD1", Variant::Dev, true);
}

/// conditioning.md §2: img2img against diffusers' FluxImg2ImgPipeline
/// (the encoder's mean, sqm's noise), dev at strength 0.6 and 1.0 and
/// schnell at 0.35; strength 1 is the plain render, pixel for pixel.
fn img2img(name: &str, variant: Variant) -> sqm::render::Image {
    let c = case(name);
    let layout = fixtures().join(format!("tiny-{}", variant.name()));
    let opts = ImageOptions { model_dir: Some(layout), device: "cpu".into(), ..Default::default() };
    let files = flux::locate_in(&opts, None).unwrap();
    let mut b = FluxBackend::from_files(opts, files).unwrap();
    let bytes = std::fs::read(fixtures().join(c["image"].as_str().unwrap())).unwrap();
    let input = sqm::render::input::decode(&bytes).unwrap();
    let (w, h) = (c["width"].as_u64().unwrap() as u32, c["height"].as_u64().unwrap() as u32);
    let strength = c["strength"].as_f64().unwrap();
    let job = RenderJob {
        tier: Tier::Portrait,
        positive_prompt: c["prompt"].as_str().unwrap().into(),
        negative_prompt: String::new(),
        seed: c["seed"].as_u64().unwrap() as u32,
        width: w,
        height: h,
        steps: c["steps"].as_u64().unwrap() as u32,
        guidance: c["guidance"].as_f64().unwrap() as f32,
        variant,
        subject: String::new(),
        mood: String::new(),
        post: None,
        init: Some(sqm::render::init::InitImage::new(&input, w, h, strength)),
        control: None,
        loras: Vec::new(),
    };
    let mut trace = Trace::default();
    let mut steps = Vec::new();
    let img = b.render_traced(&job, &mut |s, n| steps.push((s, n)), &|| false, Some(&mut trace)).unwrap();
    let run = c["steps_run"].as_u64().unwrap() as u32;
    assert_eq!(steps, (1..=run).map(|s| (s, run)).collect::<Vec<_>>(), "{name}: progress counts the steps run");
    let fin = diff(&trace.latents.unwrap().squeeze(0).unwrap(), &r(&format!("{name}.final")));
    let want = r(&format!("{name}.image")).flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let max_pix = img.rgb.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    eprintln!("{name}: final {:.1e}/{:.2}, pixels max {max_pix}", fin.0, fin.1);
    assert!(fin.0 <= 5e-4, "{name}: final latents differ by {}", fin.0);
    assert!(max_pix <= 1, "{name}: a pixel differs by {max_pix}");
    img
}

#[test]
fn img2img_matches_diffusers() {
    img2img("I1", Variant::Dev);
    img2img("I2", Variant::Schnell);
    let full = img2img("I3", Variant::Dev);
    // Strength 1 starts from the noise alone: the plain render's pixels.
    let c = case("I3");
    let opts =
        ImageOptions { model_dir: Some(fixtures().join("tiny-dev")), device: "cpu".into(), ..Default::default() };
    let mut b = FluxBackend::from_files(opts.clone(), flux::locate_in(&opts, None).unwrap()).unwrap();
    let plain = RenderJob {
        tier: Tier::Portrait,
        positive_prompt: c["prompt"].as_str().unwrap().into(),
        negative_prompt: String::new(),
        seed: 7,
        width: 64,
        height: 48,
        steps: 4,
        guidance: 3.5,
        variant: Variant::Dev,
        subject: String::new(),
        mood: String::new(),
        post: None,
        init: None,
        control: None,
        loras: Vec::new(),
    };
    let img = b.render_traced(&plain, &mut |_, _| {}, &|| false, None).unwrap();
    assert_eq!(img, full, "strength 1.0 equals the plain render byte for byte");
}

fn tiny(variant: &str) -> String {
    fixtures().join(format!("tiny-{variant}")).display().to_string()
}

/// conditioning.md §5's img2img examples on the socket: the init image
/// inline, progress over the steps that run, `conditioned`, the PNG's
/// strength; and the refusals before queueing.
#[test]
fn the_daemon_takes_a_reference_image() {
    use base64::Engine;
    let png = std::fs::read(fixtures().join("ref_64x48.png")).unwrap();
    let data = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    let d = crate::common::Daemon::start(&[
        "--backend",
        "flux",
        "--model-dir",
        &tiny("schnell"),
        "--device",
        "cpu",
        "--no-warmup",
    ]);
    let mut c = d.connect();
    let line = serde_json::json!({"id":"i1","method":"render","params":{"tier":"text_overlay","positive_prompt":"a sign","seed":3,
        "reference_image": data, "strength": 0.6, "stream": true}});
    c.send(&line.to_string());
    let mut steps = Vec::new();
    let reply = loop {
        let l = c.line().unwrap();
        match l["event"].as_str() {
            Some("progress") => steps.push((l["step"].as_u64().unwrap(), l["steps"].as_u64().unwrap())),
            Some(_) => {}
            None => break l,
        }
    };
    // Schnell's 4 steps at strength 0.6: trunc(4 − 2.4) = 1, so 3 run.
    assert_eq!(steps, [(1, 3), (2, 3), (3, 3)], "{reply}");
    assert_eq!(reply["result"]["conditioned"], serde_json::json!(["img2img"]), "{reply}");
    let file = std::fs::read(reply["result"]["image_path"].as_str().unwrap()).unwrap();
    assert!(String::from_utf8_lossy(&file).contains("Denoising strength: 0.6"));
    // The same image as an ImageSource object is the same render.
    let again = d.call(
        &serde_json::json!({"id":"i2","method":"render","params":{"tier":"text_overlay","positive_prompt":"a sign","seed":3,
            "reference_image": {"image_data": data, "uri": null}}})
        .to_string(),
    );
    assert_eq!(again["result"]["cached"], true, "{again}");
    for (extra, message) in [
        (serde_json::json!({"strength": 1.5}), "strength must be in [0, 1], got 1.5"),
        (serde_json::json!({"strength": 0}), "strength 0 leaves no denoising step at 4 steps"),
        (
            serde_json::json!({"reference_image": {"image_data": null, "uri": "file:///etc/passwd"}}),
            "reference_image: image not readable",
        ),
        (serde_json::json!({"reference_image": "bm90IGFuIGltYWdl"}), "reference_image: image not readable"),
        (serde_json::json!({"reference_image": 7}), "'reference_image' must be an object, a string or null"),
    ] {
        let mut params =
            serde_json::json!({"tier":"text_overlay","positive_prompt":"a sign","seed":3,"reference_image": data});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        let e = d.call(&serde_json::json!({"id":"e","method":"render","params":params}).to_string());
        assert_eq!(
            (e["error"]["code"].as_str(), e["error"]["message"].as_str()),
            (Some("INVALID_REQUEST"), Some(message)),
            "{e}"
        );
    }
}

/// `sqm render --init-image`: strength 1 gives the plain render's pixels
/// (under its own key); the dry run names the image's hash.
#[test]
fn render_takes_an_init_image() {
    let out = tempfile::tempdir().unwrap();
    let init = fixtures().join("ref_64x48.png");
    let dev = tiny("dev");
    let run = |extra: &[&str]| {
        let mut args = vec!["render", "--backend", "flux", "--model-dir", dev.as_str()];
        let o = out.path().to_str().unwrap().to_owned();
        args.extend([
            "--device", "cpu", "--tier", "portrait", "--width", "64", "--height", "64", "--seed", "7", "--steps", "4",
        ]);
        args.extend(["--prompt", "an orc warrior", "--json", "--output-dir"]);
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        args.push(o);
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = std::process::Command::new(crate::common::SQM)
            .args(&args)
            .env("HF_HUB_CACHE", "/nonexistent")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let plain = run(&[]);
    let full = run(&["--init-image", init.to_str().unwrap(), "--strength", "1"]);
    assert_ne!(plain["image_path"], full["image_path"], "another key");
    let pixels = |v: &serde_json::Value| {
        let f = std::fs::File::open(v["image_path"].as_str().unwrap()).unwrap();
        let mut r = png::Decoder::new(std::io::BufReader::new(f)).read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        buf
    };
    assert_eq!(pixels(&plain), pixels(&full));
    let text = String::from_utf8_lossy(&std::fs::read(full["image_path"].as_str().unwrap()).unwrap()).into_owned();
    assert!(text.contains("\"steps_run\":4"), "the sqm chunk says how many steps ran");
    let depth = run(&["--depth", fixtures().join("depth_64x48.png").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&std::fs::read(depth["image_path"].as_str().unwrap()).unwrap()).into_owned();
    assert!(
        text.contains("Control: depth flux1-depth-dev") && text.contains("CFG scale: 10"),
        "--depth renders with the depth model"
    );
    let dry = run(&["--reference", init.to_str().unwrap(), "--dry-run"]);
    assert_eq!(dry["init_image"]["strength"], 0.6);
    assert_eq!(dry["init_image"]["sha256"].as_str().unwrap().len(), 64);
}

/// The ZeroMQ worker: a RenderRequest's reference_image drives an img2img
/// render (`conditioned`); an unreadable one is a warning and the render
/// goes on plain.
#[test]
fn the_zeromq_worker_takes_a_reference_image() {
    use base64::Engine;
    let png = std::fs::read(fixtures().join("ref_64x48.png")).unwrap();
    let data = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    let c = crate::common::Controller::bind(None);
    let schnell = tiny("schnell");
    let _d = c.worker(&["--backend", "flux", "--model-dir", &schnell, "--device", "cpu"]);
    c.send(
        &serde_json::json!({"type":"RenderRequest","request_id":"i1","prompt":"a lighthouse","width":64,"height":64,
        "seed":4,"reference_image":{"image_data": data,"uri":null},"strength":0.6}),
    );
    let r = c.recv();
    assert_eq!(r["type"], "ImageReady", "{r}");
    assert_eq!(r["conditioned"], serde_json::json!(["img2img"]), "{r}");
    c.send(
        &serde_json::json!({"type":"RenderRequest","request_id":"i2","prompt":"a lighthouse","width":64,"height":64,
        "seed":4,"reference_image":{"image_data":null,"uri":"file:///etc/shadow"}}),
    );
    let r = c.recv();
    assert_eq!(r["type"], "ImageReady", "{r}");
    assert!(r.get("conditioned").is_none(), "{r}");
    let warnings: Vec<&str> = r["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(warnings, ["reference image not readable"], "{r}");
}

/// conditioning.md §3: a depth render against diffusers' FluxControlPipeline
/// (FLUX.1-Depth-dev's 128 input channels, the control's encoder mean).
#[test]
fn depth_matches_diffusers() {
    let c = case("D1");
    let opts =
        ImageOptions { model_dir: Some(fixtures().join("tiny-dev")), device: "cpu".into(), ..Default::default() };
    let mut b = FluxBackend::from_files(opts.clone(), flux::locate_in(&opts, None).unwrap()).unwrap();
    assert_eq!(sqm::render::Backend::depth_model(&b).as_deref(), Some("flux1-depth-dev"));
    let bytes = std::fs::read(fixtures().join(c["depth"].as_str().unwrap())).unwrap();
    use base64::Engine;
    let src = serde_json::json!({"image_data": base64::engine::general_purpose::STANDARD.encode(&bytes), "uri": null});
    let mut job = RenderJob {
        tier: Tier::Portrait,
        positive_prompt: c["prompt"].as_str().unwrap().into(),
        negative_prompt: String::new(),
        seed: 7,
        width: 64,
        height: 48,
        steps: 4,
        guidance: 0.0,
        variant: Variant::Schnell,
        subject: String::new(),
        mood: String::new(),
        post: None,
        init: None,
        control: None,
        loras: Vec::new(),
    };
    let depth = sqm::render::control::DepthSettings::new("flux1-depth-dev");
    sqm::render::control::attach_depth(&mut job, &src, &depth, &[]).unwrap();
    assert_eq!((job.guidance, job.variant), (10.0, Variant::Dev), "depth renders at guidance 10 on dev's schedule");
    let mut trace = Trace::default();
    let img = b.render_traced(&job, &mut |_, _| {}, &|| false, Some(&mut trace)).unwrap();
    let fin = diff(&trace.latents.unwrap().squeeze(0).unwrap(), &r("D1.final"));
    let want = r("D1.image").flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let max_pix = img.rgb.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    eprintln!("D1: final {:.1e}/{:.2}, pixels max {max_pix}", fin.0, fin.1);
    assert!(fin.0 <= 5e-4, "D1: final latents differ by {}", fin.0);
    assert!(max_pix <= 1, "D1: a pixel differs by {max_pix}");
}

/// §5: a ZeroMQ RenderRequest with experimance's depth map renders with
/// the depth model (guidance 10), and says so; the socket is strict where
/// the backend has no depth model.
#[test]
fn depth_maps_on_zeromq_and_the_socket() {
    use base64::Engine;
    let png = std::fs::read(fixtures().join("depth_64x48.png")).unwrap();
    let data = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    let c = crate::common::Controller::bind(None);
    let dev = tiny("dev");
    let d = c.worker(&["--backend", "flux", "--model-dir", &dev, "--device", "cpu"]);
    c.send(&serde_json::json!({"type":"RenderRequest","request_id":"6f1c","prompt":"sand dunes at dawn","seed":42,
        "width":64,"height":64,"depth_map":{"image_data": data,"uri":null},"era":"wilderness","biome":"desert"}));
    let r = c.recv();
    assert_eq!(r["type"], "ImageReady", "{r}");
    assert_eq!(r["conditioned"], serde_json::json!(["depth"]), "{r}");
    let file = r["uri"].as_str().unwrap().strip_prefix("file://").unwrap().to_owned();
    let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
    assert!(text.contains("Control: depth flux1-depth-dev") && text.contains("CFG scale: 10"), "the PNG says how");
    assert!(std::path::Path::new(&file.replace(".png", ".depth.png")).is_file(), "the map is kept beside it");
    // The socket on the same daemon: conditioned, and strict without a depth model.
    let v = d.call(&serde_json::json!({"id":"s","method":"render","params":{"tier":"text_overlay","positive_prompt":"x","seed":1,"depth_map": data}}).to_string());
    assert_eq!(v["result"]["conditioned"], serde_json::json!(["depth"]), "{v}");
    let st = d.call(r#"{"id":"st","method":"status"}"#)["result"]["sqm"].clone();
    assert_eq!(st["depth_model"], "flux1-depth-dev");
    let models: Vec<&str> = st["loaded"].as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert!(models.contains(&"flux1-depth-dev"), "the depth transformer is resident: {st}");
    let schnell_only = tempfile::tempdir().unwrap();
    crate::common::copy_tree(&fixtures().join("tiny-schnell"), schnell_only.path());
    let root = schnell_only.path().to_str().unwrap().to_owned();
    let d =
        crate::common::Daemon::start(&["--backend", "flux", "--model-dir", &root, "--device", "cpu", "--no-warmup"]);
    let v = d.call(&serde_json::json!({"id":"s","method":"render","params":{"tier":"text_overlay","positive_prompt":"x","depth_map": data}}).to_string());
    assert_eq!(v["error"]["code"], "GENERATION_FAILED", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("depth_map: backend 'flux' has no depth model (FLUX.1-Depth-dev not found"),
        "{v}"
    );
}

/// The weight-free backends take the conditioning params, check them, and
/// render plainly with a warning (under the plain key).
#[test]
fn sketch_ignores_conditioning_with_warnings() {
    let d = crate::common::Daemon::start(&["--no-warmup"]);
    let plain =
        d.call(r#"{"id":"p","method":"render","params":{"tier":"portrait","positive_prompt":"an orc","seed":2}}"#);
    let v = d.call(
        r#"{"id":"w","method":"render","params":{"tier":"portrait","positive_prompt":"an orc","seed":2,"reference_image":"AAAA","depth_map":"AAAA"}}"#,
    );
    assert_eq!(
        v["result"]["warnings"],
        serde_json::json!([
            "reference_image: backend 'sketch' applies no init image",
            "depth_map: backend 'sketch' applies no depth"
        ]),
        "{v}"
    );
    assert!(v["result"].get("conditioned").is_none(), "{v}");
    assert_eq!(v["result"]["image_path"], plain["result"]["image_path"]);
    let bad = d.call(r#"{"id":"b","method":"render","params":{"tier":"portrait","positive_prompt":"an orc","reference_image":"AAAA","strength":"high"}}"#);
    assert_eq!(bad["error"]["message"], "'strength' must be a number or null", "{bad}");
}
