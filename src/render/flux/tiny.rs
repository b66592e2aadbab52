//! A tiny Flux with random weights, written in the layout of the real hub
//! repos (same file names, same tensor names, same config formats).
//!
//! Real Flux weights are tens of gigabytes; this one is a few hundred
//! kilobytes and renders a 64×64 image in well under a second on a CPU, so
//! tests and benchmarks can drive the real loading and sampling code end to
//! end. The tensors come from candle's own model constructors run against
//! a `VarMap`, so every name and shape is exactly what the loader asks for.
//! The images are noise-shaped abstractions, not art.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use candle_transformers::models::clip::text_model::ClipTextTransformer;
use candle_transformers::models::flux::{autoencoder, model};
use candle_transformers::models::t5::T5EncoderModel;
use serde_json::json;

use crate::prompt::Variant;

/// Words the tiny tokenizers know; anything else is `<unk>`.
const WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "at",
    "with",
    "and",
    "black",
    "white",
    "red",
    "blue",
    "green",
    "gold",
    "grey",
    "dark",
    "bright",
    "old",
    "young",
    "orc",
    "warrior",
    "elf",
    "dwarf",
    "knight",
    "wizard",
    "tinker",
    "merchant",
    "city",
    "tower",
    "gate",
    "wall",
    "forest",
    "mountain",
    "river",
    "sea",
    "ship",
    "castle",
    "ruin",
    "ruined",
    "chapel",
    "map",
    "portrait",
    "landscape",
    "scene",
    "illustration",
    "character",
    "detailed",
    "face",
    "attire",
    "centered",
    "subject",
    "solo",
    "wide",
    "shot",
    "dusk",
    "dawn",
    "night",
    "fire",
    "ash",
    "glass",
    "ember",
    "storm",
    "rain",
    "snow",
    "smoke",
    "sword",
    "shield",
    "axe",
    "bow",
    "lantern",
    "torch",
    "crowd",
    "market",
    "street",
    "harbor",
    "bridge",
    "throne",
    "battle",
    "ominous",
    "calm",
    "tense",
    "atmosphere",
    "painterly",
    "style",
    "art",
    "oil",
    "painting",
    "sketch",
    "text",
    "sign",
    "typography",
    "readable",
    "sharp",
    "lettering",
    "clean",
    "harrowgate",
    "cinder",
    "reach",
    "ro",
];

/// The shapes of the tiny model.
const D_TEXT: usize = 32;
const HEADS: usize = 2;
const HEAD_DIM: usize = 16;

/// Writes a tiny model for `variant` into `dir` (created if needed).
/// `gguf` adds a quantized transformer `flux1-<variant>-tiny-q8_0.gguf`
/// beside the safetensors one.
pub fn write(dir: &Path, variant: Variant, gguf: bool) -> candle_core::Result<()> {
    for sub in ["transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let dev = Device::Cpu;
    let vocab = WORDS.len() + 3;
    let mut seed = 0x5eed_u64;

    // T5 encoder.
    let t5_cfg = json!({
        "vocab_size": vocab, "d_model": D_TEXT, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4,
        "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16, "dropout_rate": 0.0,
        "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0, "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": true, "tie_word_embeddings": false, "pad_token_id": 0, "eos_token_id": 1,
        "model_type": "t5"
    });
    write_json(&dir.join("text_encoder_2/config.json"), &t5_cfg)?;
    let cfg: candle_transformers::models::t5::Config =
        serde_json::from_value(t5_cfg).map_err(candle_core::Error::wrap)?;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    vb.get_with_hints((vocab, D_TEXT), "shared.weight", Init::Randn { mean: 0.0, stdev: 1.0 })?;
    T5EncoderModel::load(vb, &cfg)?;
    non_degenerate(&vm, &mut seed)?;
    vm.save(dir.join("text_encoder_2/model.safetensors"))?;
    write_json(&dir.join("tokenizer_2/tokenizer.json"), &tokenizer_json(false))?;

    // CLIP-L text model, nested under `text_model` as transformers saves it.
    let clip_cfg = json!({
        "vocab_size": vocab, "hidden_size": D_TEXT, "intermediate_size": 64, "max_position_embeddings": 77,
        "num_hidden_layers": 1, "num_attention_heads": 4, "projection_dim": D_TEXT, "hidden_act": "quick_gelu",
        "model_type": "clip_text_model"
    });
    write_json(&dir.join("text_encoder/config.json"), &clip_cfg)?;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let c = candle_transformers::models::clip::text_model::ClipTextConfig {
        vocab_size: vocab,
        embed_dim: D_TEXT,
        activation: candle_transformers::models::clip::text_model::Activation::QuickGelu,
        intermediate_size: 64,
        max_position_embeddings: 77,
        pad_with: None,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        projection_dim: D_TEXT,
    };
    ClipTextTransformer::new(vb.pp("text_model"), &c)?;
    non_degenerate(&vm, &mut seed)?;
    vm.save(dir.join("text_encoder/model.safetensors"))?;
    write_json(&dir.join("tokenizer/tokenizer.json"), &tokenizer_json(true))?;

    // Autoencoder (BFL names, encoder and decoder as in ae.safetensors).
    write_json(
        &dir.join("vae/config.json"),
        &json!({
            "_class_name": "AutoencoderKL", "block_out_channels": [32, 32, 32, 32], "layers_per_block": 1,
            "latent_channels": 16, "in_channels": 3, "out_channels": 3, "scaling_factor": 0.3611, "shift_factor": 0.1159
        }),
    )?;
    let ae_cfg = autoencoder::Config {
        resolution: 64,
        in_channels: 3,
        ch: 32,
        out_ch: 3,
        ch_mult: vec![1, 1, 1, 1],
        num_res_blocks: 1,
        z_channels: 16,
        scale_factor: 0.3611,
        shift_factor: 0.1159,
    };
    let vm = VarMap::new();
    autoencoder::AutoEncoder::new(&ae_cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    non_degenerate(&vm, &mut seed)?;
    vm.save(dir.join("ae.safetensors"))?;

    // The transformer.
    let guidance = variant == Variant::Dev;
    write_json(
        &dir.join("transformer/config.json"),
        &json!({
            "_class_name": "FluxTransformer2DModel", "in_channels": 64, "num_layers": 1, "num_single_layers": 1,
            "attention_head_dim": HEAD_DIM, "num_attention_heads": HEADS, "joint_attention_dim": D_TEXT,
            "pooled_projection_dim": D_TEXT, "guidance_embeds": guidance, "axes_dims_rope": [4, 6, 6]
        }),
    )?;
    let cfg = model::Config {
        in_channels: 64,
        vec_in_dim: D_TEXT,
        context_in_dim: D_TEXT,
        hidden_size: HEADS * HEAD_DIM,
        mlp_ratio: 4.0,
        num_heads: HEADS,
        depth: 1,
        depth_single_blocks: 1,
        axes_dim: vec![4, 6, 6],
        theta: 10_000,
        qkv_bias: true,
        guidance_embed: guidance,
    };
    let vm = VarMap::new();
    model::Flux::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let name = format!("flux1-{}", variant.name());
    non_degenerate(&vm, &mut seed)?;
    vm.save(dir.join(format!("{name}.safetensors")))?;
    if gguf {
        write_gguf(&vm, &dir.join(format!("{name}-tiny-q8_0.gguf")))?;
    }
    Ok(())
}

/// Makes every parameter informative (zimage.md §4.5 d): norm weights
/// U(0.5, 1.5) and any tensor left all-zero N(0, 0.1), so T5's layer
/// norms and the QK norms do not silence what they scale.
fn non_degenerate(vm: &VarMap, seed: &mut u64) -> candle_core::Result<()> {
    let data = vm.data().lock().map_err(|_| candle_core::Error::msg("the VarMap's lock is poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let t = var.as_tensor();
        let n = t.elem_count();
        *seed += 1;
        let mut rng = crate::rng::SplitMix64::new(*seed);
        let is_norm = t.rank() == 1 && (name.contains("norm") || name.ends_with("scale") || name.contains("ln_"));
        let zero = t.abs()?.sum_all()?.to_scalar::<f32>()? == 0.0;
        let values: Vec<f32> = if is_norm {
            (0..n).map(|_| 0.5 + rng.unit() as f32).collect()
        } else if zero {
            let g = super::noise::gaussian(*seed, n);
            g.into_iter().map(|v| v * 0.1).collect()
        } else {
            continue;
        };
        var.set(&Tensor::from_vec(values, t.shape(), t.device())?)?;
    }
    Ok(())
}

/// Writes a VarMap as GGUF: Q8_0 where rows are whole 32-blocks, f32 else.
fn write_gguf(vm: &VarMap, path: &Path) -> candle_core::Result<()> {
    let data = vm.data().lock().map_err(|_| candle_core::Error::msg("the VarMap's lock is poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in names {
        let t: &Tensor = data[name].as_tensor();
        let q = if t.rank() == 2 && t.dim(1)? % 32 == 0 { GgmlDType::Q8_0 } else { GgmlDType::F32 };
        tensors.push((name.clone(), QTensor::quantize(t, q)?));
    }
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let tmp = path.with_extension("gguf.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    gguf_file::write(&mut f, &[], &refs)?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A word-level tokenizer in the `tokenizers` JSON format. T5-style
/// (`… </s>`) or CLIP-style (`<|startoftext|> … <|endoftext|>`, the end
/// token having the highest id, which CLIP's pooling relies on).
fn tokenizer_json(clip: bool) -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    let (pad, end, unk) = if clip { ("<|startoftext|>", "<|endoftext|>", "<unk>") } else { ("<pad>", "</s>", "<unk>") };
    vocab.insert(pad.into(), 0.into());
    vocab.insert(unk.into(), 1.into());
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert((*w).into(), (i + 2).into());
    }
    let end_id = WORDS.len() + 2;
    vocab.insert(end.into(), end_id.into());
    let special = |tok: &str, id: usize| json!({"id": tok, "ids": [id], "tokens": [tok]});
    let (single, specials) = if clip {
        (
            json!([{"SpecialToken": {"id": pad, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": end, "type_id": 0}}]),
            json!({pad: special(pad, 0), end: special(end, end_id)}),
        )
    } else {
        (
            json!([{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": end, "type_id": 0}}]),
            json!({end: special(end, end_id)}),
        )
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing", "single": single, "pair": single, "special_tokens": specials},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk}
    })
}

fn write_json(path: &Path, v: &serde_json::Value) -> candle_core::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v).map_err(candle_core::Error::wrap)?)?;
    Ok(())
}
