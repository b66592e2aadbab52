//! The Qwen3 text encoder as Z-Image uses it (zimage.md §3.1): the chat
//! template around the prompt, at most 512 ids, and the hidden states of
//! the second-to-last layer (no final norm) at the real tokens.
//!
//! One layer loop for every weight format: transformers' names (with or
//! without `model.`) and llama.cpp's GGUF names. candle's Qwen3 modules
//! return logits, so this file runs the layers itself.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use serde::Deserialize;

use crate::render::weights::{softmax_f32, Linear, RmsNorm, Store};

/// The most ids a prompt keeps (diffusers' `max_sequence_length`).
pub(crate) const MAX_IDS: usize = 512;

/// The chat template with one user message and the generation prompt.
pub(crate) fn chat_text(prompt: &str) -> String {
    format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
}

/// The encoder's shape.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Config {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub eps: f64,
}

impl Config {
    /// transformers' `config.json`.
    pub(crate) fn from_json(path: &Path) -> std::result::Result<Config, String> {
        #[derive(Deserialize)]
        struct Hf {
            hidden_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            num_key_value_heads: Option<usize>,
            head_dim: Option<usize>,
            rope_theta: Option<f64>,
            rope_parameters: Option<serde_json::Value>,
            rms_norm_eps: Option<f64>,
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let c: Hf = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let theta = c
            .rope_theta
            .or_else(|| c.rope_parameters.as_ref().and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64()))
            .unwrap_or(1_000_000.0);
        if c.num_attention_heads == 0 {
            return Err(format!("{}: num_attention_heads is 0", path.display()));
        }
        let kv = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        if kv == 0 || !c.num_attention_heads.is_multiple_of(kv) {
            return Err(format!(
                "{}: num_attention_heads {} is not a multiple of num_key_value_heads {kv}",
                path.display(),
                c.num_attention_heads
            ));
        }
        Ok(Config {
            hidden: c.hidden_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            kv_heads: kv,
            head_dim: c.head_dim.unwrap_or(c.hidden_size / c.num_attention_heads),
            rope_theta: theta,
            eps: c.rms_norm_eps.unwrap_or(1e-6),
        })
    }
}

/// How tensor names are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Names {
    /// transformers' names; `prefixed`: with `model.`.
    Hf { prefixed: bool },
    /// llama.cpp's (`token_embd`, `blk.N.attn_q`, …).
    Gguf,
}

impl Names {
    fn embed(self) -> String {
        match self {
            Names::Hf { prefixed } => format!("{}embed_tokens.weight", if prefixed { "model." } else { "" }),
            Names::Gguf => "token_embd.weight".into(),
        }
    }

    /// Layer `i`'s `part` (transformers' name after `layers.i.`).
    fn layer(self, i: usize, part: &str) -> String {
        match self {
            Names::Hf { prefixed } => format!("{}layers.{i}.{part}", if prefixed { "model." } else { "" }),
            Names::Gguf => {
                let g = match part {
                    "self_attn.q_proj" => "attn_q",
                    "self_attn.k_proj" => "attn_k",
                    "self_attn.v_proj" => "attn_v",
                    "self_attn.o_proj" => "attn_output",
                    "self_attn.q_norm" => "attn_q_norm",
                    "self_attn.k_norm" => "attn_k_norm",
                    "input_layernorm" => "attn_norm",
                    "post_attention_layernorm" => "ffn_norm",
                    "mlp.gate_proj" => "ffn_gate",
                    "mlp.up_proj" => "ffn_up",
                    "mlp.down_proj" => "ffn_down",
                    other => other,
                };
                format!("blk.{i}.{g}")
            }
        }
    }
}

struct Layer {
    input_norm: RmsNorm,
    post_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub(crate) struct TextEncoder {
    pub cfg: Config,
    embed: Tensor,
    layers: Vec<Layer>,
    dtype: DType,
}

impl TextEncoder {
    /// Loads layers 0..L−2 (the last layer, the final norm and the head
    /// are never used).
    pub(crate) fn load(s: &Store, names: Names, cfg: Config) -> Result<TextEncoder> {
        let used = cfg.layers.saturating_sub(1);
        let norm = |n: String| Ok::<_, candle_core::Error>(RmsNorm::new(s.tensor(&n)?, cfg.eps));
        let mut layers = Vec::with_capacity(used);
        for i in 0..used {
            let l = |p: &str| names.layer(i, p);
            layers.push(Layer {
                input_norm: norm(format!("{}.weight", l("input_layernorm")))?,
                post_norm: norm(format!("{}.weight", l("post_attention_layernorm")))?,
                q: s.linear(&l("self_attn.q_proj"), false)?,
                k: s.linear(&l("self_attn.k_proj"), false)?,
                v: s.linear(&l("self_attn.v_proj"), false)?,
                o: s.linear(&l("self_attn.o_proj"), false)?,
                q_norm: norm(format!("{}.weight", l("self_attn.q_norm")))?,
                k_norm: norm(format!("{}.weight", l("self_attn.k_norm")))?,
                gate: s.linear(&l("mlp.gate_proj"), false)?,
                up: s.linear(&l("mlp.up_proj"), false)?,
                down: s.linear(&l("mlp.down_proj"), false)?,
            });
        }
        let embed = s.tensor(&names.embed())?;
        if embed.dim(1)? != cfg.hidden {
            candle_core::bail!(
                "{}: the embedding is {} wide, the config says {}",
                names.embed(),
                embed.dim(1)?,
                cfg.hidden
            );
        }
        Ok(TextEncoder { cfg, embed, layers, dtype: s.dtype() })
    }

    /// E for `ids`: (n, hidden), f32.
    pub(crate) fn encode(&self, ids: &[u32]) -> Result<Tensor> {
        let dev = self.embed.device().clone();
        let n = ids.len();
        let vocab = self.embed.dim(0)?;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            candle_core::bail!("token id {bad} is outside the text encoder's vocabulary of {vocab}");
        }
        let idx = Tensor::from_vec(ids.to_vec(), n, &dev)?;
        let mut x = self.embed.index_select(&idx, 0)?.to_dtype(self.dtype)?;
        let (cos, sin) = self.rope(n, &dev)?;
        let mask = causal_mask(n, &dev)?;
        for l in &self.layers {
            let h = l.input_norm.forward(&x)?;
            x = (x + self.attention(l, &h, &cos, &sin, &mask)?)?;
            let h = l.post_norm.forward(&x)?;
            let g = candle_nn::ops::silu(&l.gate.forward(&h)?)?;
            x = (x + l.down.forward(&(g * l.up.forward(&h)?)?)?)?;
        }
        x.to_dtype(DType::F32)
    }

    /// cos/sin (n, head_dim) for positions 0..n, f32 as transformers does.
    fn rope(&self, n: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.head_dim;
        let inv: Vec<f32> =
            (0..d / 2).map(|j| 1.0 / (self.cfg.rope_theta as f32).powf((2 * j) as f32 / d as f32)).collect();
        let mut cos = Vec::with_capacity(n * d);
        let mut sin = Vec::with_capacity(n * d);
        for p in 0..n {
            for half in 0..2 {
                let _ = half;
                for &f in &inv {
                    let a = p as f32 * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        Ok((Tensor::from_vec(cos, (n, d), dev)?, Tensor::from_vec(sin, (n, d), dev)?))
    }

    fn attention(&self, l: &Layer, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let (h, kv, hd) = (self.cfg.heads, self.cfg.kv_heads, self.cfg.head_dim);
        let q = l.q_norm.forward(&l.q.forward(x)?.reshape((n, h, hd))?)?;
        let k = l.k_norm.forward(&l.k.forward(x)?.reshape((n, kv, hd))?)?;
        let v = l.v.forward(x)?.reshape((n, kv, hd))?;
        let q = half_rotate(&q, cos, sin)?.transpose(0, 1)?.contiguous()?; // (h, n, hd)
        let k = half_rotate(&k, cos, sin)?.transpose(0, 1)?.contiguous()?; // (kv, n, hd)
        let v = v.transpose(0, 1)?.contiguous()?;
        // Grouped queries: each key/value head serves h/kv query heads.
        let rep = h / kv;
        let k = k.unsqueeze(1)?.expand((kv, rep, n, hd))?.reshape((h, n, hd))?;
        let v = v.unsqueeze(1)?.expand((kv, rep, n, hd))?.reshape((h, n, hd))?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = scores.to_dtype(DType::F32)?.broadcast_add(mask)?;
        let p = softmax_f32(&scores)?.to_dtype(v.dtype())?;
        let o = p.matmul(&v)?.transpose(0, 1)?.reshape((n, h * hd))?;
        l.o.forward(&o)
    }
}

/// x·cos + rotate_half(x)·sin, in f32; x: (n, heads, hd), cos/sin (n, hd).
fn half_rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let hd = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    let (c, s) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
    (x.broadcast_mul(&c)? + rotated.broadcast_mul(&s)?)?.to_dtype(dtype)
}

fn causal_mask(n: usize, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..n).flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(v, (n, n), dev)
}

/// The ids of `prompt` under the chat template, at most [`MAX_IDS`].
pub(crate) fn ids(tokenizer: &tokenizers::Tokenizer, prompt: &str) -> std::result::Result<Vec<u32>, String> {
    let enc = tokenizer.encode(chat_text(prompt), true).map_err(|e| format!("tokenizer: {e}"))?;
    let mut ids = enc.get_ids().to_vec();
    ids.truncate(MAX_IDS);
    Ok(ids)
}

/// The shape of a text encoder without a config: from its tensors.
pub(crate) fn config_from_tensors(s: &Store, names: Names) -> std::result::Result<Config, String> {
    let shape = |n: &str| s.shape(n).map_err(|e| format!("{}: {e}", s.describe()));
    let embed = shape(&names.embed())?;
    let hidden = *embed.get(1).ok_or("the token embedding is not a matrix")?;
    let mut layers = 0;
    while s.has(&format!("{}.weight", names.layer(layers, "input_layernorm"))) {
        layers += 1;
    }
    if layers < 2 {
        return Err(format!("{}: found {layers} layers; a Qwen3 encoder needs at least 2", s.describe()));
    }
    let head_dim = shape(&format!("{}.weight", names.layer(0, "self_attn.q_norm")))?[0];
    let q = shape(&format!("{}.weight", names.layer(0, "self_attn.q_proj")))?[0];
    let k = shape(&format!("{}.weight", names.layer(0, "self_attn.k_proj")))?[0];
    if head_dim == 0 || q % head_dim != 0 || k % head_dim != 0 || (q / head_dim) % (k / head_dim).max(1) != 0 {
        return Err(format!("{}: attention shapes q {q}, k {k}, head_dim {head_dim} do not fit", s.describe()));
    }
    Ok(Config {
        hidden,
        layers,
        heads: q / head_dim,
        kv_heads: k / head_dim,
        head_dim,
        rope_theta: 1_000_000.0,
        eps: 1e-6,
    })
}

/// GGUF metadata `qwen3.*` overrides what the tensors say.
pub(crate) fn config_from_gguf(path: &Path, s: &Store) -> std::result::Result<Config, String> {
    let mut cfg = config_from_tensors(s, Names::Gguf)?;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut f)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().lines().next().unwrap_or("")))?;
    let md = &content.metadata;
    if let Some(v) = md.get("qwen3.rope.freq_base").and_then(|v| v.to_f32().ok()) {
        cfg.rope_theta = v as f64;
    }
    if let Some(v) = md.get("qwen3.attention.layer_norm_rms_epsilon").and_then(|v| v.to_f32().ok()) {
        cfg.eps = v as f64;
    }
    if let Some(v) = md.get("qwen3.block_count").and_then(|v| v.to_u32().ok()) {
        cfg.layers = v as usize;
    }
    Ok(cfg)
}
