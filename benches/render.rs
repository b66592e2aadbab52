//! Render speed: the sketch backend end to end per tier (compose, draw,
//! PNG write), and the flux sampling loop on the tiny model.
//!
//! Baselines, run in the same process:
//! * sketch: writing a blank PNG of the tier's size through the same atomic
//!   writer, so the ratio is "whole render / bare file write";
//! * flux: candle's stock Flux model and `sampling::denoise` loop over the
//!   same tiny weights and inputs, so the ratio is sqm's own forward (f32
//!   RoPE, one path for dense and GGUF) and loop against candle's;
//! * z-image: a step on the committed tiny models (each weight layout)
//!   against the Flux step at the same token count, and the bytes of
//!   weights each layout keeps resident.
//!
//! `cargo bench --bench render`

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::flux;
use sqm::interpret::Tier;
use sqm::prompt::{StyleSource, Variant};
use sqm::render::pipeline::{execute, prepare, Prepared, RenderRequest};
use sqm::render::sketch::SketchBackend;
use sqm::render::{Backend, Image, RenderJob};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time_ms(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn sketch() {
    let styles = StyleSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs"));
    println!("sketch backend, end to end per tier (median of 15; baseline = blank PNG write of the same size)");
    println!("  {:<20} {:>10} {:>11} {:>11} {:>7}", "tier", "size", "render ms", "baseline ms", "ratio");
    for tier in Tier::ALL {
        let out = tempfile::tempdir().unwrap();
        let mut seed = 0u32;
        let mut backend = SketchBackend::default();
        let mut size = (0, 0);
        let render = time_ms(15, || {
            seed += 1; // a new seed each round, so nothing is served from disk
            let req = RenderRequest {
                tier: tier.name().into(),
                subject: "orc warrior at the gate".into(),
                mood: "ominous".into(),
                genre: "ashfall".into(),
                world: "cinder-reach".into(),
                seed: Some(seed),
                ..Default::default()
            };
            let Ok(Prepared::Job(j)) = prepare(&req, &styles) else { panic!("prepare") };
            size = (j.job.width, j.job.height);
            execute(&j, &mut backend, out.path(), &mut |_, _| {}, &|| false).unwrap();
        });
        let blank = Image::new(size.0, size.1);
        let path = out.path().join("blank.png");
        let base = time_ms(15, || sqm::render::output::write_png(&path, &blank, "x", "{}").unwrap());
        println!(
            "  {:<20} {:>10} {:>11.2} {:>11.2} {:>6.2}x",
            tier.name(),
            format!("{}x{}", size.0, size.1),
            render,
            base,
            render / base
        );
    }
}

fn flux_tiny() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("FLUX.1-schnell");
    sqm::render::flux::tiny::write(&root, Variant::Schnell, false).unwrap();
    let opts = sqm::render::flux::ImageOptions {
        model_dir: Some(root.clone()),
        quantized: false,
        device: "cpu".into(),
        memory_budget: None,
        ..Default::default()
    };
    let files = sqm::render::flux::locate_in(&opts, None).unwrap();
    let mut b = sqm::render::flux::FluxBackend::from_files(opts, files).unwrap();
    let t = Instant::now();
    b.load().unwrap();
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let (w, h) = (256usize, 256usize);
    let job = |steps| RenderJob {
        tier: Tier::Portrait,
        positive_prompt: "an orc warrior at dusk".into(),
        negative_prompt: String::new(),
        seed: 1,
        width: w as u32,
        height: h as u32,
        steps,
        guidance: 0.0,
        variant: Variant::Schnell,
        subject: String::new(),
        mood: String::new(),
        post: None,
        init: None,
        control: None,
        loras: Vec::new(),
    };
    let one = time_ms(5, || {
        b.render(&job(1), &mut |_, _| {}, &|| false).unwrap();
    });
    // Per step: the gaps between successive progress callbacks.
    let per_step = step_ms(&mut b, &job(9));

    // Baseline: candle's denoise over the same transformer and inputs.
    let cfg = flux::model::Config {
        in_channels: 64,
        vec_in_dim: 32,
        context_in_dim: 32,
        hidden_size: 32,
        mlp_ratio: 4.0,
        num_heads: 2,
        depth: 1,
        depth_single_blocks: 1,
        axes_dim: vec![4, 6, 6],
        theta: 10_000,
        qkv_bias: true,
        guidance_embed: false,
    };
    let dev = Device::Cpu;
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[root.join("flux1-schnell.safetensors")], DType::F32, &dev).unwrap()
    };
    let model = flux::model::Flux::new(&cfg, vb).unwrap();
    let txt = Tensor::randn(0f32, 1., (1, 256, 32), &dev).unwrap();
    let vec_ = Tensor::randn(0f32, 1., (1, 32), &dev).unwrap();
    let noise = Tensor::randn(0f32, 1., (1, 16, h / 8, w / 8), &dev).unwrap();
    let state = flux::sampling::State::new(&txt, &vec_, &noise).unwrap();
    let ts1 = flux::sampling::get_schedule(1, None);
    let ts9 = flux::sampling::get_schedule(9, None);
    let run = |ts: &[f64]| {
        flux::sampling::denoise(&model, &state.img, &state.img_ids, &state.txt, &state.txt_ids, &state.vec, ts, 0.0)
            .unwrap();
    };
    let b1 = time_ms(7, || run(&ts1));
    let b9 = time_ms(7, || run(&ts9));
    let base_step = (b9 - b1) / 8.0;
    println!();
    println!("flux, tiny random model (1+1 blocks, width 32), {w}x{h}, CPU f32, median of 5");
    println!("  load                 {load_ms:>8.1} ms");
    println!("  render, 1 step       {one:>8.1} ms   (text encoders, noise, 1 step, decode, to RGB)");
    println!("  per denoising step   {per_step:>8.2} ms   sqm loop");
    println!(
        "  per denoising step   {base_step:>8.2} ms   candle sampling::denoise (baseline, (9 steps - 1 step) / 8)"
    );
    println!("  ratio                {:>8.2}x", per_step / base_step);
    per_step
}

/// Per-step time of a render on `b` (the gaps between progress calls).
fn step_ms(b: &mut dyn Backend, job: &RenderJob) -> f64 {
    let mut gaps = Vec::new();
    for _ in 0..3 {
        let mut last: Option<Instant> = None;
        b.render(
            job,
            &mut |_, _| {
                let now = Instant::now();
                if let Some(l) = last {
                    gaps.push((now - l).as_secs_f64() * 1e3);
                }
                last = Some(now);
            },
            &|| false,
        )
        .unwrap();
    }
    median(gaps)
}

/// Z-Image on the committed tiny models: a denoising step at the Flux
/// bench's token count (512: image tokens plus the padded caption), and
/// the weights each layout keeps resident.
fn zimage_tiny(flux_step: f64) {
    use sqm::prompt::Fidelity;
    use sqm::render::zimage::{self, ImageOptions, ZImageBackend};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zimage");
    let backend = |layout: &str, quantized: bool| {
        let opts = ImageOptions {
            zimage_dir: Some(fixtures.join(layout)),
            fidelity: Some(Fidelity::Turbo),
            quantized,
            device: "cpu".into(),
            ..Default::default()
        };
        let files = zimage::locate_in(&opts, None).unwrap();
        ZImageBackend::from_files(opts, files).unwrap()
    };
    // 256×448: 16×28 = 448 image tokens; the caption pads to 64.
    let job = RenderJob {
        tier: Tier::Portrait,
        positive_prompt: "an orc warrior at dusk".into(),
        negative_prompt: String::new(),
        seed: 1,
        width: 256,
        height: 448,
        steps: 9,
        guidance: 0.0,
        variant: Variant::Schnell,
        subject: String::new(),
        mood: String::new(),
        post: None,
        init: None,
        control: None,
        loras: Vec::new(),
    };
    println!();
    println!("z-image, tiny random model (2+1+1 blocks, width 96), 256x448 = 448 image + 64 caption tokens, CPU f32");
    println!("  {:<12} {:>10} {:>14} {:>16}", "layout", "step ms", "vs flux step", "peak resident");
    for (layout, quantized) in [("tiny-turbo", false), ("tiny-single", false), ("tiny-gguf", true)] {
        let mut b = backend(layout, quantized);
        b.load().unwrap();
        let step = step_ms(&mut b, &job);
        println!("  {layout:<12} {step:>10.2} {:>13.2}x {:>12} bytes", step / flux_step, b.peak_resident_bytes());
    }
    println!("  (the flux step is the same token count, 512, on a width-32 model: the ratio is mostly model width)");
}

/// The LoRA merge (conditioning.md §1.5) on one full-size Flux matrix
/// (3072², img_attn.proj) at ranks 16 and 64, against loading the same
/// tensor plain: what a new LoRA set adds to a transformer build, per
/// module. The product B·A is the work; its floor is that matmul alone.
fn lora_merge() {
    use candle_core::{DType, Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let n = 3072usize;
    let weights = dir.path().join("model.safetensors");
    let w = Tensor::randn(0f32, 0.02, (n, n), &Device::Cpu).unwrap();
    let mut m = std::collections::HashMap::new();
    m.insert("double_blocks.0.img_attn.proj.weight".to_owned(), w);
    candle_core::safetensors::save(&m, &weights).unwrap();
    let names = vec!["double_blocks.0.img_attn.proj.weight".to_owned()];
    let plain = time_ms(5, || {
        sqm::render::flux::merged_weights(&weights, &[], &names).unwrap();
    });
    println!();
    println!("LoRA merge into one {n}x{n} f32 matrix (CPU, median of 5; baseline = loading it plain)");
    println!("  {:<8} {:>10} {:>13} {:>8} {:>14}", "rank", "merge ms", "baseline ms", "ratio", "B·A alone ms");
    for rank in [16usize, 64] {
        let mut l = std::collections::HashMap::new();
        let stem = "lora_unet_double_blocks_0_img_attn_proj";
        let down = Tensor::randn(0f32, 0.02, (rank, n), &Device::Cpu).unwrap();
        let up = Tensor::randn(0f32, 0.02, (n, rank), &Device::Cpu).unwrap();
        l.insert(format!("{stem}.lora_down.weight"), down.clone());
        l.insert(format!("{stem}.lora_up.weight"), up.clone());
        l.insert(format!("{stem}.alpha"), Tensor::new(rank as f32, &Device::Cpu).unwrap());
        let file = dir.path().join(format!("r{rank}.safetensors"));
        candle_core::safetensors::save(&l, &file).unwrap();
        let loras = sqm::render::lora::from_paths(&[(file, 0.8)]).unwrap();
        let merge = time_ms(5, || {
            sqm::render::flux::merged_weights(&weights, &loras, &names).unwrap();
        });
        let product = time_ms(5, || {
            up.matmul(&down).unwrap().to_dtype(DType::F32).unwrap();
        });
        println!("  {rank:<8} {merge:>10.1} {plain:>13.1} {:>7.2}x {product:>14.1}", merge / plain);
    }
}

fn main() {
    sketch();
    let flux_step = flux_tiny();
    zimage_tiny(flux_step);
    lora_merge();
}
