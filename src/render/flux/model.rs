//! The Flux transformer, one forward for dense and GGUF weights (BFL's
//! tensor names), with RoPE kept in f32 whatever the activations are
//! (zimage.md §4.5 b): the tables are computed in f64 and rounded once, q
//! and k are rotated in f32 and cast back. candle-transformers' Flux builds
//! the tables in the image dtype (bf16 on a GPU: errors up to 0.15 at
//! 1024²) and needs a second model type for GGUF, so sqm has its own.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_transformers::models::flux::model::Config;

use crate::render::weights::{softmax_f32, Linear, RmsNorm, Store};

/// `in_layer` → SiLU → `out_layer`.
struct MlpEmbedder {
    in_layer: Linear,
    out_layer: Linear,
}

impl MlpEmbedder {
    fn load(s: &Store, p: &str) -> Result<Self> {
        Ok(MlpEmbedder {
            in_layer: s.linear(&format!("{p}.in_layer"), true)?,
            out_layer: s.linear(&format!("{p}.out_layer"), true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out_layer.forward(&candle_nn::ops::silu(&self.in_layer.forward(x)?)?)
    }
}

/// q/k RMSNorms (`query_norm.scale`, `key_norm.scale`), eps 1e-6.
struct QkNorm {
    q: RmsNorm,
    k: RmsNorm,
}

impl QkNorm {
    fn load(s: &Store, p: &str) -> Result<Self> {
        Ok(QkNorm {
            q: RmsNorm::new(s.tensor(&format!("{p}.query_norm.scale"))?, 1e-6),
            k: RmsNorm::new(s.tensor(&format!("{p}.key_norm.scale"))?, 1e-6),
        })
    }
}

/// LayerNorm without affine parameters (eps 1e-6), statistics in f32.
fn layer_norm(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let xc = xf.broadcast_sub(&xf.mean_keepdim(D::Minus1)?)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + 1e-6)?.sqrt()?)?.to_dtype(dtype)
}

/// (1 + scale)·LN(x) + shift.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    layer_norm(x)?.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// Splits (1, L, 3·H·hd) into q, k, v of (1, H, L, hd), q and k normed.
fn split_qkv(qkv: &Tensor, heads: usize, norm: &QkNorm) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, l, three_d) = qkv.dims3()?;
    let hd = three_d / 3 / heads;
    let qkv = qkv.reshape((b, l, 3, heads, hd))?.permute((2, 0, 3, 1, 4))?;
    let q = norm.q.forward(&qkv.get(0)?.contiguous()?)?;
    let k = norm.k.forward(&qkv.get(1)?.contiguous()?)?;
    Ok((q, k, qkv.get(2)?.contiguous()?))
}

/// RoPE on interleaved pairs, in f32, of x (1, H, L, hd) with cos/sin (L, hd/2).
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let (b, h, l, hd) = x.dims4()?;
    let x = x.to_dtype(DType::F32)?.reshape((b, h, l, hd / 2, 2))?;
    let x0 = x.narrow(4, 0, 1)?.squeeze(4)?;
    let x1 = x.narrow(4, 1, 1)?.squeeze(4)?;
    let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
    let r1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
    Tensor::stack(&[r0, r1], 4)?.reshape((b, h, l, hd))?.to_dtype(dtype)
}

/// Attention over (1, H, L, hd) with RoPE; returns (1, L, H·hd).
fn attention(q: &Tensor, k: &Tensor, v: &Tensor, rope: &(Tensor, Tensor)) -> Result<Tensor> {
    let q = rotate(q, &rope.0, &rope.1)?;
    let k = rotate(k, &rope.0, &rope.1)?;
    let hd = q.dim(D::Minus1)?;
    let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
    let o = softmax_f32(&scores)?.matmul(v)?;
    let (b, h, l, d) = o.dims4()?;
    o.transpose(1, 2)?.reshape((b, l, h * d))
}

/// cos/sin tables (L, Σaxes/2) for 3-axis positions: computed in f64 and
/// rounded to f32 once, as diffusers' float64 rotary tables.
pub(crate) fn rope_tables(pos: &[[u32; 3]], axes: &[usize], theta: f64, device: &Device) -> Result<(Tensor, Tensor)> {
    let half: usize = axes.iter().sum::<usize>() / 2;
    let mut cos = Vec::with_capacity(pos.len() * half);
    let mut sin = Vec::with_capacity(pos.len() * half);
    for p in pos {
        for (axis, &d) in axes.iter().enumerate() {
            for j in 0..d / 2 {
                let angle = p[axis] as f64 / theta.powf((2 * j) as f64 / d as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
    }
    let n = pos.len();
    Ok((Tensor::from_vec(cos, (n, half), device)?, Tensor::from_vec(sin, (n, half), device)?))
}

/// [cos(1000t·ωⱼ), sin(1000t·ωⱼ)], ωⱼ = exp(−ln(10000)·j/128), f32.
fn time_features(t: f32, device: &Device) -> Result<Tensor> {
    let half = 128usize;
    let t = t * 1000.0;
    let mut v = vec![0f32; 2 * half];
    for j in 0..half {
        let w = (j as f32 * (-(10000f64.ln()) / half as f64) as f32).exp();
        v[j] = (t * w).cos();
        v[half + j] = (t * w).sin();
    }
    Tensor::from_vec(v, (1, 2 * half), device)
}

struct DoubleBlock {
    img_mod: Linear,
    txt_mod: Linear,
    img_qkv: Linear,
    txt_qkv: Linear,
    img_norm: QkNorm,
    txt_norm: QkNorm,
    img_proj: Linear,
    txt_proj: Linear,
    img_mlp: (Linear, Linear),
    txt_mlp: (Linear, Linear),
}

fn mlp(m: &(Linear, Linear), x: &Tensor) -> Result<Tensor> {
    m.1.forward(&m.0.forward(x)?.gelu()?)
}

impl DoubleBlock {
    fn load(s: &Store, i: usize) -> Result<Self> {
        let p = |n: &str| format!("double_blocks.{i}.{n}");
        let l = |n: &str| s.linear(&p(n), true);
        Ok(DoubleBlock {
            img_mod: l("img_mod.lin")?,
            txt_mod: l("txt_mod.lin")?,
            img_qkv: l("img_attn.qkv")?,
            txt_qkv: l("txt_attn.qkv")?,
            img_norm: QkNorm::load(s, &p("img_attn.norm"))?,
            txt_norm: QkNorm::load(s, &p("txt_attn.norm"))?,
            img_proj: l("img_attn.proj")?,
            txt_proj: l("txt_attn.proj")?,
            img_mlp: (l("img_mlp.0")?, l("img_mlp.2")?),
            txt_mlp: (l("txt_mlp.0")?, l("txt_mlp.2")?),
        })
    }

    fn forward(
        &self,
        img: &Tensor,
        txt: &Tensor,
        vec: &Tensor,
        heads: usize,
        rope: &(Tensor, Tensor),
    ) -> Result<(Tensor, Tensor)> {
        let sv = candle_nn::ops::silu(vec)?;
        let im = self.img_mod.forward(&sv)?.unsqueeze(1)?.chunk(6, D::Minus1)?;
        let tm = self.txt_mod.forward(&sv)?.unsqueeze(1)?.chunk(6, D::Minus1)?;
        let (iq, ik, iv) = split_qkv(&self.img_qkv.forward(&modulate(img, &im[0], &im[1])?)?, heads, &self.img_norm)?;
        let (tq, tk, tv) = split_qkv(&self.txt_qkv.forward(&modulate(txt, &tm[0], &tm[1])?)?, heads, &self.txt_norm)?;
        let q = Tensor::cat(&[tq, iq], 2)?;
        let k = Tensor::cat(&[tk, ik], 2)?;
        let v = Tensor::cat(&[tv, iv], 2)?;
        let attn = attention(&q, &k, &v, rope)?;
        let lt = txt.dim(1)?;
        let (t_attn, i_attn) = (attn.narrow(1, 0, lt)?, attn.narrow(1, lt, attn.dim(1)? - lt)?);
        let img = (img + self.img_proj.forward(&i_attn)?.broadcast_mul(&im[2])?)?;
        let img = (&img + mlp(&self.img_mlp, &modulate(&img, &im[3], &im[4])?)?.broadcast_mul(&im[5])?)?;
        let txt = (txt + self.txt_proj.forward(&t_attn)?.broadcast_mul(&tm[2])?)?;
        let txt = (&txt + mlp(&self.txt_mlp, &modulate(&txt, &tm[3], &tm[4])?)?.broadcast_mul(&tm[5])?)?;
        Ok((img, txt))
    }
}

struct SingleBlock {
    modulation: Linear,
    linear1: Linear,
    linear2: Linear,
    norm: QkNorm,
}

impl SingleBlock {
    fn load(s: &Store, i: usize) -> Result<Self> {
        let p = |n: &str| format!("single_blocks.{i}.{n}");
        Ok(SingleBlock {
            modulation: s.linear(&p("modulation.lin"), true)?,
            linear1: s.linear(&p("linear1"), true)?,
            linear2: s.linear(&p("linear2"), true)?,
            norm: QkNorm::load(s, &p("norm"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        vec: &Tensor,
        hidden: usize,
        heads: usize,
        rope: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let m = self.modulation.forward(&candle_nn::ops::silu(vec)?)?.unsqueeze(1)?.chunk(3, D::Minus1)?;
        let h = self.linear1.forward(&modulate(x, &m[0], &m[1])?)?;
        let width = h.dim(D::Minus1)?;
        let (qkv, mlp) = (h.narrow(D::Minus1, 0, 3 * hidden)?, h.narrow(D::Minus1, 3 * hidden, width - 3 * hidden)?);
        let (q, k, v) = split_qkv(&qkv.contiguous()?, heads, &self.norm)?;
        let attn = attention(&q, &k, &v, rope)?;
        let out = self.linear2.forward(&Tensor::cat(&[attn, mlp.gelu()?], D::Minus1)?)?;
        x + out.broadcast_mul(&m[2])?
    }
}

/// A Flux transformer (schnell or dev) over a [`Store`].
pub(crate) struct Flux {
    img_in: Linear,
    txt_in: Linear,
    time_in: MlpEmbedder,
    vector_in: MlpEmbedder,
    guidance_in: Option<MlpEmbedder>,
    double: Vec<DoubleBlock>,
    single: Vec<SingleBlock>,
    final_mod: Linear,
    final_linear: Linear,
    hidden: usize,
    heads: usize,
    axes: Vec<usize>,
    theta: f64,
    /// The activations' dtype.
    pub dtype: DType,
}

impl Flux {
    /// Loads the blocks `cfg` names; the guidance embedding when the
    /// weights have one.
    pub(crate) fn load(s: &Store, cfg: &Config) -> Result<Flux> {
        // The config's shape against the weights', before any block.
        let hd = cfg.hidden_size / cfg.num_heads.max(1);
        let mlp = (cfg.hidden_size as f64 * cfg.mlp_ratio) as usize;
        for (name, want) in [
            ("img_in.weight", vec![cfg.hidden_size, cfg.in_channels]),
            ("txt_in.weight", vec![cfg.hidden_size, cfg.context_in_dim]),
            ("vector_in.in_layer.weight", vec![cfg.hidden_size, cfg.vec_in_dim]),
            ("double_blocks.0.img_attn.norm.query_norm.scale", vec![hd]),
            ("single_blocks.0.linear1.weight", vec![3 * cfg.hidden_size + mlp, cfg.hidden_size]),
        ] {
            let have = s.shape(name)?;
            if have != want {
                candle_core::bail!("shape mismatch for {name}: the config gives {want:?}, the file has {have:?}");
            }
        }
        Ok(Flux {
            img_in: s.linear("img_in", true)?,
            txt_in: s.linear("txt_in", true)?,
            time_in: MlpEmbedder::load(s, "time_in")?,
            vector_in: MlpEmbedder::load(s, "vector_in")?,
            guidance_in: if s.has("guidance_in.in_layer.weight") {
                Some(MlpEmbedder::load(s, "guidance_in")?)
            } else {
                None
            },
            double: (0..cfg.depth).map(|i| DoubleBlock::load(s, i)).collect::<Result<_>>()?,
            single: (0..cfg.depth_single_blocks).map(|i| SingleBlock::load(s, i)).collect::<Result<_>>()?,
            final_mod: s.linear("final_layer.adaLN_modulation.1", true)?,
            final_linear: s.linear("final_layer.linear", true)?,
            hidden: cfg.hidden_size,
            heads: cfg.num_heads,
            axes: cfg.axes_dim.clone(),
            theta: cfg.theta as f64,
            dtype: s.dtype(),
        })
    }

    pub(crate) fn has_guidance(&self) -> bool {
        self.guidance_in.is_some()
    }

    /// RoPE tables for `txt_len` text tokens then an `hp`×`wp` grid.
    pub(crate) fn rope(&self, txt_len: usize, hp: usize, wp: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let mut pos = vec![[0u32; 3]; txt_len];
        pos.extend((0..hp * wp).map(|i| [0, (i / wp) as u32, (i % wp) as u32]));
        rope_tables(&pos, &self.axes, self.theta, device)
    }

    /// The velocity for packed latents `img` (1, L, 64) at time `t`.
    pub(crate) fn forward(
        &self,
        img: &Tensor,
        txt: &Tensor,
        y: &Tensor,
        t: f32,
        guidance: Option<f32>,
        rope: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let dev = img.device().clone();
        let dt = self.dtype;
        let mut vec = (self.time_in.forward(&time_features(t, &dev)?.to_dtype(dt)?)?
            + self.vector_in.forward(&y.to_dtype(dt)?)?)?;
        if let (Some(g_in), Some(g)) = (&self.guidance_in, guidance) {
            vec = (vec + g_in.forward(&time_features(g, &dev)?.to_dtype(dt)?)?)?;
        }
        let mut img = self.img_in.forward(&img.to_dtype(dt)?)?;
        let mut txt = self.txt_in.forward(&txt.to_dtype(dt)?)?;
        for b in &self.double {
            (img, txt) = b.forward(&img, &txt, &vec, self.heads, rope)?;
        }
        let lt = txt.dim(1)?;
        let mut x = Tensor::cat(&[txt, img], 1)?;
        for b in &self.single {
            x = b.forward(&x, &vec, self.hidden, self.heads, rope)?;
        }
        let img = x.narrow(1, lt, x.dim(1)? - lt)?;
        let m = self.final_mod.forward(&candle_nn::ops::silu(&vec)?)?.unsqueeze(1)?.chunk(2, D::Minus1)?;
        self.final_linear.forward(&modulate(&img, &m[0], &m[1])?)?.to_dtype(DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §4.5 b: the tables are within 1e-6 of f64 at 1024² positions.
    #[test]
    fn rope_tables_match_f64() {
        let pos = [[0u32, 63, 127], [0, 127, 63], [0, 1, 1]];
        let axes = [16usize, 56, 56];
        let (c, s) = rope_tables(&pos, &axes, 10_000.0, &Device::Cpu).unwrap();
        let (c, s) = (c.to_vec2::<f32>().unwrap(), s.to_vec2::<f32>().unwrap());
        let mut worst = 0f64;
        for (row, p) in pos.iter().enumerate() {
            let mut k = 0;
            for (axis, &d) in axes.iter().enumerate() {
                for j in 0..d / 2 {
                    let a = p[axis] as f64 / 10_000f64.powf((2 * j) as f64 / d as f64);
                    worst = worst.max((c[row][k] as f64 - a.cos()).abs()).max((s[row][k] as f64 - a.sin()).abs());
                    k += 1;
                }
            }
        }
        assert!(worst <= 1e-6, "table error {worst}");
    }
}
