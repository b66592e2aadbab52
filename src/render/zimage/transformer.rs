//! The Z-Image transformer F(x, t, E) as diffusers computes it (zimage.md
//! §3.4): patchified image tokens and the caption, each padded to a
//! multiple of 32 with learned pad tokens that are attended (never
//! masked); 3-axis RoPE from f32 tables built in f64; a noise refiner on
//! the image, a context refiner on the caption, then single-stream layers
//! over [image; caption].
//!
//! candle-transformers has a `z_image` module; its forward masks padded
//! captions, pads no image tokens and keeps RoPE in the activation dtype,
//! so this file has its own (the weights' names are diffusers').

use candle_core::{DType, Device, Module, Result, Tensor, D};

use crate::render::weights::{softmax_f32, Linear, RmsNorm, Store};

/// Tokens are padded to multiples of this.
const SEQ_MULTIPLE: usize = 32;
/// Scores of one attention chunk stay under this many bytes.
const ATTENTION_CHUNK_BYTES: usize = 1 << 30;

/// The shape of a Z-Image transformer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Config {
    pub dim: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub in_channels: usize,
    pub cap_feat_dim: usize,
    pub axes_dims: [usize; 3],
    pub rope_theta: f64,
    pub t_scale: f64,
    pub norm_eps: f64,
    pub layers: usize,
    pub refiner_layers: usize,
    pub ffn: usize,
}

/// Tensor names: diffusers' or ComfyUI's (the original release's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Names {
    Diffusers,
    /// §2.2: `x_embedder.`, `final_layer.`, `attention.out.`, `q_norm`,
    /// fused `attention.qkv`; with an optional `model.diffusion_model.`.
    Comfy {
        prefixed: bool,
    },
}

impl Names {
    /// The stored name of diffusers' `name`.
    pub(crate) fn key(self, name: &str) -> String {
        match self {
            Names::Diffusers => name.to_owned(),
            Names::Comfy { prefixed } => {
                // Match whole name segments, the last one too.
                let n = format!("{name}.")
                    .replace("all_x_embedder.2-1.", "x_embedder.")
                    .replace("all_final_layer.2-1.", "final_layer.")
                    .replace(".attention.to_out.0.", ".attention.out.")
                    .replace(".attention.norm_q.", ".attention.q_norm.")
                    .replace(".attention.norm_k.", ".attention.k_norm.");
                let n = n.strip_suffix('.').unwrap_or(&n).to_owned();
                if prefixed {
                    format!("model.diffusion_model.{n}")
                } else {
                    n
                }
            }
        }
    }
}

enum Qkv {
    Split(Linear, Linear, Linear),
    Fused(Linear),
}

struct Block {
    qkv: Qkv,
    out: Linear,
    norm_q: RmsNorm,
    norm_k: RmsNorm,
    attention_norm1: RmsNorm,
    attention_norm2: RmsNorm,
    ffn_norm1: RmsNorm,
    ffn_norm2: RmsNorm,
    w1: Linear,
    w2: Linear,
    w3: Linear,
    /// None for the context refiner (unmodulated).
    ada: Option<Linear>,
    heads: usize,
    head_dim: usize,
}

impl Block {
    fn load(s: &Store, names: Names, p: &str, cfg: &Config, modulated: bool) -> Result<Block> {
        let k = |n: &str| names.key(&format!("{p}.{n}"));
        let norm =
            |n: &str| Ok::<_, candle_core::Error>(RmsNorm::new(s.tensor(&k(&format!("{n}.weight")))?, cfg.norm_eps));
        let qkv = match names {
            Names::Diffusers => {
                let (q, kk, v) = (
                    s.linear(&k("attention.to_q"), false)?,
                    s.linear(&k("attention.to_k"), false)?,
                    s.linear(&k("attention.to_v"), false)?,
                );
                // One matmul instead of three where the weights allow.
                match Linear::fuse(&[&q, &kk, &v])? {
                    Some(fused) => Qkv::Fused(fused),
                    None => Qkv::Split(q, kk, v),
                }
            }
            Names::Comfy { .. } => Qkv::Fused(s.linear(&k("attention.qkv"), false)?),
        };
        Ok(Block {
            qkv,
            out: s.linear(&k("attention.to_out.0"), false)?,
            norm_q: RmsNorm::new(s.tensor(&k("attention.norm_q.weight"))?, 1e-5),
            norm_k: RmsNorm::new(s.tensor(&k("attention.norm_k.weight"))?, 1e-5),
            attention_norm1: norm("attention_norm1")?,
            attention_norm2: norm("attention_norm2")?,
            ffn_norm1: norm("ffn_norm1")?,
            ffn_norm2: norm("ffn_norm2")?,
            w1: s.linear(&k("feed_forward.w1"), false)?,
            w2: s.linear(&k("feed_forward.w2"), false)?,
            w3: s.linear(&k("feed_forward.w3"), false)?,
            ada: if modulated { Some(s.linear(&k("adaLN_modulation.0"), true)?) } else { None },
            heads: cfg.heads,
            head_dim: cfg.head_dim,
        })
    }

    /// x: (S, dim); rope: (cos, sin), each (S, head_dim/2) f32; a: (1, adim).
    fn forward(&self, x: &Tensor, rope: &(Tensor, Tensor), a: &Tensor) -> Result<Tensor> {
        match &self.ada {
            Some(ada) => {
                let m = ada.forward(a)?.chunk(4, D::Minus1)?;
                let (s1, g1, s2, g2) = (&m[0], &m[1], &m[2], &m[3]);
                let h = self.attention_norm1.forward(x)?.broadcast_mul(&(s1 + 1.0)?)?;
                let h = self.attention_norm2.forward(&self.attention(&h, rope)?)?;
                let x = (x + h.broadcast_mul(&g1.tanh()?)?)?;
                let h = self.ffn_norm1.forward(&x)?.broadcast_mul(&(s2 + 1.0)?)?;
                let h = self.ffn_norm2.forward(&self.ffn(&h)?)?;
                x + h.broadcast_mul(&g2.tanh()?)?
            }
            None => {
                let h = self.attention_norm2.forward(&self.attention(&self.attention_norm1.forward(x)?, rope)?)?;
                let x = (x + h)?;
                let h = self.ffn_norm2.forward(&self.ffn(&self.ffn_norm1.forward(&x)?)?)?;
                x + h
            }
        }
    }

    fn ffn(&self, x: &Tensor) -> Result<Tensor> {
        let g = candle_nn::ops::silu(&self.w1.forward(x)?)?;
        self.w2.forward(&(g * self.w3.forward(x)?)?)
    }

    fn attention(&self, x: &Tensor, rope: &(Tensor, Tensor)) -> Result<Tensor> {
        let s = x.dim(0)?;
        let (h, hd) = (self.heads, self.head_dim);
        let (q, k, v) = match &self.qkv {
            Qkv::Split(q, k, v) => (q.forward(x)?, k.forward(x)?, v.forward(x)?),
            Qkv::Fused(qkv) => {
                let y = qkv.forward(x)?;
                let n = y.dim(D::Minus1)? / 3;
                (y.narrow(D::Minus1, 0, n)?, y.narrow(D::Minus1, n, n)?, y.narrow(D::Minus1, 2 * n, n)?)
            }
        };
        let q = self.norm_q.forward(&q.reshape((s, h, hd))?)?;
        let k = self.norm_k.forward(&k.reshape((s, h, hd))?)?;
        let q = rotate(&q, rope)?.transpose(0, 1)?.contiguous()?; // (h, s, hd)
        let k = rotate(&k, rope)?.transpose(0, 1)?.contiguous()?;
        let v = v.reshape((s, h, hd))?.transpose(0, 1)?.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        // Heads in chunks, so the scores of one chunk stay under 1 GiB.
        let per_head = s * s * 4;
        let chunk = (ATTENTION_CHUNK_BYTES / per_head.max(1)).clamp(1, h);
        let mut outs = Vec::new();
        let mut start = 0;
        while start < h {
            let n = chunk.min(h - start);
            let (q, k, v) = (q.narrow(0, start, n)?, k.narrow(0, start, n)?, v.narrow(0, start, n)?);
            let scores = (q.matmul(&k.t()?)? * scale)?;
            outs.push(softmax_f32(&scores)?.matmul(&v)?);
            start += n;
        }
        let o = Tensor::cat(&outs, 0)?.transpose(0, 1)?.reshape((s, h * hd))?;
        self.out.forward(&o)
    }
}

/// RoPE on interleaved pairs, in f32: (x₂ₖ, x₂ₖ₊₁)·(cos + i·sin).
/// x: (S, H, hd); cos/sin: (S, hd/2).
fn rotate(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
    let dtype = x.dtype();
    let (s, h, hd) = x.dims3()?;
    let x = x.to_dtype(DType::F32)?.reshape((s, h, hd / 2, 2))?;
    let x0 = x.narrow(3, 0, 1)?.squeeze(3)?;
    let x1 = x.narrow(3, 1, 1)?.squeeze(3)?;
    let (c, sn) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
    let r0 = (x0.broadcast_mul(&c)? - x1.broadcast_mul(&sn)?)?;
    let r1 = (x0.broadcast_mul(&sn)? + x1.broadcast_mul(&c)?)?;
    Tensor::stack(&[r0, r1], 3)?.reshape((s, h, hd))?.to_dtype(dtype)
}

/// cos/sin tables (S, head_dim/2) for 3-axis positions: angles in f64,
/// rounded to f32 before cos and sin (as diffusers' complex64 table).
pub(crate) fn rope_tables(pos: &[[u32; 3]], axes: [usize; 3], theta: f64, device: &Device) -> Result<(Tensor, Tensor)> {
    let half: usize = axes.iter().sum::<usize>() / 2;
    let mut cos = Vec::with_capacity(pos.len() * half);
    let mut sin = Vec::with_capacity(pos.len() * half);
    for p in pos {
        for (axis, &d) in axes.iter().enumerate() {
            for j in 0..d / 2 {
                let freq = 1.0 / theta.powf((2 * j) as f64 / d as f64);
                let angle = (p[axis] as f64 * freq) as f32;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    let n = pos.len();
    Ok((Tensor::from_vec(cos, (n, half), device)?, Tensor::from_vec(sin, (n, half), device)?))
}

/// The sinusoidal time features of t (already scaled), 256 wide, f32:
/// [cos(t·ωⱼ), sin(t·ωⱼ)], ωⱼ = exp(−ln(10000)·j/128).
fn time_features(t: f32, device: &Device) -> Result<Tensor> {
    let half = 128usize;
    let mut v = vec![0f32; 2 * half];
    let ln = -(10000f64.ln()) as f32;
    for j in 0..half {
        let w = (ln * j as f32 / half as f32).exp();
        v[j] = (t * w).cos();
        v[half + j] = (t * w).sin();
    }
    Tensor::from_vec(v, (1, 2 * half), device)
}

pub(crate) struct ZImageTransformer {
    pub cfg: Config,
    x_embedder: Linear,
    final_linear: Linear,
    final_ada: Linear,
    t1: Linear,
    t2: Linear,
    cap_norm: RmsNorm,
    cap_linear: Linear,
    x_pad: Tensor,
    cap_pad: Tensor,
    noise_refiner: Vec<Block>,
    context_refiner: Vec<Block>,
    layers: Vec<Block>,
}

impl ZImageTransformer {
    pub(crate) fn load(s: &Store, names: Names, cfg: Config) -> Result<ZImageTransformer> {
        let k = |n: &str| names.key(n);
        let block = |p: String, m: bool| Block::load(s, names, &p, &cfg, m);
        Ok(ZImageTransformer {
            x_embedder: s.linear(&k("all_x_embedder.2-1"), true)?,
            final_linear: s.linear(&k("all_final_layer.2-1.linear"), true)?,
            final_ada: s.linear(&k("all_final_layer.2-1.adaLN_modulation.1"), true)?,
            t1: s.linear(&k("t_embedder.mlp.0"), true)?,
            t2: s.linear(&k("t_embedder.mlp.2"), true)?,
            cap_norm: RmsNorm::new(s.tensor(&k("cap_embedder.0.weight"))?, cfg.norm_eps),
            cap_linear: s.linear(&k("cap_embedder.1"), true)?,
            x_pad: s.tensor(&k("x_pad_token"))?,
            cap_pad: s.tensor(&k("cap_pad_token"))?,
            noise_refiner: (0..cfg.refiner_layers)
                .map(|i| block(format!("noise_refiner.{i}"), true))
                .collect::<Result<_>>()?,
            context_refiner: (0..cfg.refiner_layers)
                .map(|i| block(format!("context_refiner.{i}"), false))
                .collect::<Result<_>>()?,
            layers: (0..cfg.layers).map(|i| block(format!("layers.{i}"), true)).collect::<Result<_>>()?,
            cfg,
        })
    }

    /// The velocity for latents `x` (C, h, w) at model time `t` ∈ [0, 1]
    /// given caption features `cap` (n, cap_feat_dim); f32 out.
    pub(crate) fn forward(&self, x: &Tensor, t: f32, cap: &Tensor) -> Result<Tensor> {
        let dev = x.device().clone();
        let dtype = self.x_pad.dtype();
        let (c, h, w) = x.dims3()?;
        let (hp, wp) = (h / 2, w / 2);
        let n_img = hp * wp;
        let np = n_img.div_ceil(SEQ_MULTIPLE) * SEQ_MULTIPLE;
        let n_cap = cap.dim(0)?;
        let lp = n_cap.div_ceil(SEQ_MULTIPLE) * SEQ_MULTIPLE;
        // Patchify: feature index (py·2 + px)·C + c, tokens row-major.
        let patches =
            x.to_dtype(dtype)?.reshape((c, hp, 2, wp, 2))?.permute((1, 3, 2, 4, 0))?.reshape((n_img, 4 * c))?;
        let mut img = self.x_embedder.forward(&patches)?;
        if np > n_img {
            img = Tensor::cat(&[img, self.x_pad.broadcast_as((np - n_img, self.cfg.dim))?.contiguous()?], 0)?;
        }
        let mut txt = self.cap_linear.forward(&self.cap_norm.forward(&cap.to_dtype(dtype)?)?)?;
        if lp > n_cap {
            txt = Tensor::cat(&[txt, self.cap_pad.broadcast_as((lp - n_cap, self.cfg.dim))?.contiguous()?], 0)?;
        }
        // Positions: caption rows (1+i, 0, 0), pads included; image
        // (Lp+1, y, x), its pads (0, 0, 0).
        let cap_pos: Vec<[u32; 3]> = (0..lp).map(|i| [1 + i as u32, 0, 0]).collect();
        let mut img_pos: Vec<[u32; 3]> =
            (0..n_img).map(|i| [lp as u32 + 1, (i / wp) as u32, (i % wp) as u32]).collect();
        img_pos.resize(np, [0, 0, 0]);
        let (axes, theta) = (self.cfg.axes_dims, self.cfg.rope_theta);
        let img_rope = rope_tables(&img_pos, axes, theta, &dev)?;
        let cap_rope = rope_tables(&cap_pos, axes, theta, &dev)?;
        // Time: t·t_scale through the sinusoid and the MLP, in f32 first.
        let tf = time_features((t as f64 * self.cfg.t_scale) as f32, &dev)?.to_dtype(dtype)?;
        let a = self.t2.forward(&candle_nn::ops::silu(&self.t1.forward(&tf)?)?)?;
        for b in &self.noise_refiner {
            img = b.forward(&img, &img_rope, &a)?;
        }
        for b in &self.context_refiner {
            txt = b.forward(&txt, &cap_rope, &a)?;
        }
        let mut u = Tensor::cat(&[img, txt], 0)?;
        let rope = (Tensor::cat(&[&img_rope.0, &cap_rope.0], 0)?, Tensor::cat(&[&img_rope.1, &cap_rope.1], 0)?);
        for b in &self.layers {
            u = b.forward(&u, &rope, &a)?;
        }
        // Final: LayerNorm (no affine, eps 1e-6) · (1 + scale), linear.
        let scale = (self.final_ada.forward(&candle_nn::ops::silu(&a)?)? + 1.0)?;
        let u = layer_norm(&u.narrow(0, 0, n_img)?, 1e-6)?.broadcast_mul(&scale)?;
        let out = self.final_linear.forward(&u)?; // (n_img, 4C)
        out.reshape((hp, wp, 2, 2, c))?.permute((4, 0, 2, 1, 3))?.reshape((c, h, w))?.to_dtype(DType::F32)
    }
}

/// LayerNorm without affine parameters, statistics in f32.
fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let mean = xf.mean_keepdim(D::Minus1)?;
    let xc = xf.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_tables_match_f64() {
        // Angles rounded to f32 once; the error against f64 is the f32 rounding of cos/sin only.
        let pos = [[513u32, 63, 127], [0, 0, 0]];
        let (c, s) = rope_tables(&pos, [32, 48, 48], 256.0, &Device::Cpu).unwrap();
        let (c, s) = (c.to_vec2::<f32>().unwrap(), s.to_vec2::<f32>().unwrap());
        assert_eq!(c[0].len(), 64);
        let angle = 513.0f64 * 1.0 / 256f64.powf(2.0 / 32.0);
        assert!(((angle as f32) as f64).cos() - c[0][1] as f64 <= 1e-6);
        assert!((s[0][1] as f64 - (angle as f32 as f64).sin()).abs() <= 1e-6);
        assert_eq!((c[1][5], s[1][5]), (1.0, 0.0));
    }
}
