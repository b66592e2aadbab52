//! The CPU embedding engine: a BERT encoder (all-MiniLM-L6-v2's shape:
//! post-norm layers, exact GELU, absolute positions) written for short
//! texts on a few cores.
//!
//! What makes it fast where a general tensor library is not: the texts of
//! a batch are laid end to end, so no row is padding and one text costs
//! what its tokens cost; each layer's query, key and value projections are
//! one product; weights are stored once in the blocked bf16 layout of
//! [`super::linear`]; attention runs per (text, head) with no mask; the
//! work buffers live as long as the model, so a warm call allocates only
//! its answers; and all of it runs on the model's own thread pool, not
//! the one the image backends use.

use std::collections::HashMap;
use std::sync::Mutex;

use rayon::prelude::*;

use super::linear::{pack_rows, Linear, SendPtr, ShapeError};
use super::simd::{self, Isa};

/// The shape fields of a BERT `config.json` this engine reads.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct Shape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position() -> String {
    "absolute".into()
}

/// Why a checkpoint cannot run on this engine (the caller then uses the
/// general one) or could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BertError {
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tensor {name}: {message}")]
    Tensor { name: String, message: String },
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// Work buffers, grown to the largest batch seen.
#[derive(Default)]
struct Scratch {
    hidden: Vec<f32>,
    wide: Vec<f32>,
    narrow: Vec<f32>,
    packed: Vec<u32>,
}

/// Removes one named tensor of the given shape from a checkpoint's set.
type Take<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>, BertError> + 'a;

/// Weights read from a checkpoint, by tensor name, as f32 with their shapes.
pub(crate) type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

pub(crate) struct Bert {
    shape: Shape,
    word: Vec<f32>,
    position: Vec<f32>,
    segment: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    isa: Isa,
    pool: rayon::ThreadPool,
    scratch: Mutex<Scratch>,
}

impl Bert {
    /// Builds the engine from a checkpoint's tensors (names with or
    /// without the `bert.` prefix). `threads`: the pool's size; `isa`: the
    /// kernels to use (at most what [`simd::isa`] detected).
    pub(crate) fn new(shape: Shape, mut tensors: Tensors, threads: usize, isa: Isa) -> Result<Bert, BertError> {
        let h = shape.hidden_size;
        if shape.hidden_act != "gelu" {
            return Err(BertError::Unsupported(format!("activation {:?}", shape.hidden_act)));
        }
        if shape.position_embedding_type != "absolute" {
            return Err(BertError::Unsupported(format!("position embedding {:?}", shape.position_embedding_type)));
        }
        if shape.num_attention_heads == 0 || !h.is_multiple_of(shape.num_attention_heads) {
            return Err(BertError::Unsupported(format!("{h} wide with {} heads", shape.num_attention_heads)));
        }
        let segment_all = tensors
            .remove("embeddings.token_type_embeddings.weight")
            .or_else(|| tensors.remove("bert.embeddings.token_type_embeddings.weight"))
            .ok_or_else(|| BertError::Tensor {
                name: "embeddings.token_type_embeddings.weight".into(),
                message: "missing".into(),
            })?;
        if segment_all.0.len() != 2 || segment_all.0[1] != h || segment_all.0[0] == 0 {
            return Err(BertError::Tensor {
                name: "embeddings.token_type_embeddings.weight".into(),
                message: format!("shape {:?}, expected [_, {h}]", segment_all.0),
            });
        }
        let segment = segment_all.1[..h].to_vec();
        let mut take = |name: &str, dims: &[usize]| -> Result<Vec<f32>, BertError> {
            let (shape, data) = tensors
                .remove(name)
                .or_else(|| tensors.remove(&format!("bert.{name}")))
                .ok_or_else(|| BertError::Tensor { name: name.into(), message: "missing".into() })?;
            if shape != dims {
                return Err(BertError::Tensor {
                    name: name.into(),
                    message: format!("shape {shape:?}, expected {dims:?}"),
                });
            }
            Ok(data)
        };
        let shape_err = |name: String| move |e: ShapeError| BertError::Unsupported(format!("{name}: {e}"));
        let word = take("embeddings.word_embeddings.weight", &[shape.vocab_size, h])?;
        let position = take("embeddings.position_embeddings.weight", &[shape.max_position_embeddings, h])?;
        let embed_norm =
            Norm { gamma: take("embeddings.LayerNorm.weight", &[h])?, beta: take("embeddings.LayerNorm.bias", &[h])? };
        let mut layers = Vec::with_capacity(shape.num_hidden_layers);
        for i in 0..shape.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let mut weight = Vec::with_capacity(3 * h * h);
            let mut bias = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                weight.extend(take(&format!("{p}.attention.self.{part}.weight"), &[h, h])?);
                bias.extend(take(&format!("{p}.attention.self.{part}.bias"), &[h])?);
            }
            let qkv = Linear::new(&weight, &bias, 3 * h, h).map_err(shape_err(format!("{p} attention")))?;
            let dense = |take: &mut Take<'_>, name: String, n: usize, k: usize| {
                let w = take(&format!("{name}.weight"), &[n, k])?;
                let b = take(&format!("{name}.bias"), &[n])?;
                Linear::new(&w, &b, n, k).map_err(shape_err(name))
            };
            let attn_out = dense(&mut take, format!("{p}.attention.output.dense"), h, h)?;
            let up = dense(&mut take, format!("{p}.intermediate.dense"), shape.intermediate_size, h)?;
            let down = dense(&mut take, format!("{p}.output.dense"), h, shape.intermediate_size)?;
            let attn_norm = Norm {
                gamma: take(&format!("{p}.attention.output.LayerNorm.weight"), &[h])?,
                beta: take(&format!("{p}.attention.output.LayerNorm.bias"), &[h])?,
            };
            let out_norm = Norm {
                gamma: take(&format!("{p}.output.LayerNorm.weight"), &[h])?,
                beta: take(&format!("{p}.output.LayerNorm.bias"), &[h])?,
            };
            layers.push(Layer { qkv, attn_out, attn_norm, up, down, out_norm });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("sqm-embed-{i}"))
            .build()
            .map_err(|e| BertError::Unsupported(format!("thread pool: {e}")))?;
        Ok(Bert {
            shape,
            word,
            position,
            segment,
            embed_norm,
            layers,
            isa,
            pool,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// Runs `f` on the model's thread pool (so rayon work inside it, such
    /// as batch tokenizing, uses the model's threads, not the global pool).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Largest token count per text (the position table's length).
    pub(crate) fn max_tokens(&self) -> usize {
        self.shape.max_position_embeddings
    }

    /// Mean-pooled, L2-normalised sentence vectors, one per token list.
    /// Each list is at most [`Self::max_tokens`] ids below the vocabulary size.
    pub(crate) fn embed(&self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>, BertError> {
        for ids in texts {
            if ids.len() > self.max_tokens() {
                return Err(BertError::Unsupported(format!("{} tokens, at most {}", ids.len(), self.max_tokens())));
            }
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.shape.vocab_size) {
                return Err(BertError::Unsupported(format!("token id {bad} outside the vocabulary")));
            }
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let scratch: &mut Scratch = &mut scratch;
        Ok(self.pool.install(|| self.forward(texts, scratch)))
    }

    fn forward(&self, texts: &[&[u32]], s: &mut Scratch) -> Vec<Vec<f32>> {
        let h = self.shape.hidden_size;
        let isa = self.isa;
        let eps = self.shape.layer_norm_eps as f32;
        let starts: Vec<usize> = texts
            .iter()
            .scan(0, |at, ids| {
                let start = *at;
                *at += ids.len();
                Some(start)
            })
            .collect();
        let tokens: usize = texts.iter().map(|ids| ids.len()).sum();
        let inter = self.shape.intermediate_size;
        resize(&mut s.hidden, tokens * h);
        resize(&mut s.wide, tokens * inter.max(3 * h));
        resize(&mut s.narrow, tokens * h);

        // Embeddings: word + position + segment 0, then LayerNorm.
        let rows: Vec<(u32, usize)> =
            texts.iter().flat_map(|ids| ids.iter().enumerate().map(|(pos, &id)| (id, pos))).collect();
        s.hidden.par_chunks_mut(h).zip(rows.par_iter()).with_min_len(16).for_each(|(row, &(id, pos))| {
            let word = &self.word[id as usize * h..][..h];
            let position = &self.position[pos * h..][..h];
            for (((o, w), p), t) in row.iter_mut().zip(word).zip(position).zip(&self.segment) {
                *o = w + p + t;
            }
            simd::norm(isa, row, &self.embed_norm.gamma, &self.embed_norm.beta, eps);
        });

        for layer in &self.layers {
            // Attention.
            let qkv = &mut s.wide[..tokens * 3 * h];
            pack_rows(isa, &s.hidden, &mut s.packed);
            layer.qkv.forward(isa, &s.packed, tokens, qkv);
            self.attention(texts, &starts, qkv, &mut s.narrow);
            pack_rows(isa, &s.narrow, &mut s.packed);
            layer.attn_out.forward(isa, &s.packed, tokens, &mut s.narrow);
            add_norm(isa, &mut s.narrow, &mut s.hidden, &layer.attn_norm, eps, h);
            // Feed-forward.
            let up = &mut s.wide[..tokens * inter];
            pack_rows(isa, &s.hidden, &mut s.packed);
            layer.up.forward(isa, &s.packed, tokens, up);
            up.par_chunks_mut(inter).with_min_len(8).for_each(|row| simd::gelu(isa, row));
            pack_rows(isa, up, &mut s.packed);
            layer.down.forward(isa, &s.packed, tokens, &mut s.narrow);
            add_norm(isa, &mut s.narrow, &mut s.hidden, &layer.out_norm, eps, h);
        }

        // Mean over each text's tokens, then unit length.
        starts
            .iter()
            .zip(texts)
            .map(|(&start, ids)| {
                let mut mean = vec![0f64; h];
                for row in s.hidden[start * h..(start + ids.len()) * h].chunks_exact(h) {
                    for (m, v) in mean.iter_mut().zip(row) {
                        *m += f64::from(*v);
                    }
                }
                let count = ids.len().max(1) as f64;
                let norm = (mean.iter().map(|m| (m / count).powi(2)).sum::<f64>()).sqrt().max(1e-12);
                mean.iter().map(|m| (m / count / norm) as f32).collect()
            })
            .collect()
    }

    /// Every head of every text, in parallel; `qkv` rows are
    /// `[query | key | value]`, the context goes to `out`.
    fn attention(&self, texts: &[&[u32]], starts: &[usize], qkv: &[f32], out: &mut [f32]) {
        let h = self.shape.hidden_size;
        let heads = self.shape.num_attention_heads;
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let isa = self.isa;
        let dst = SendPtr(out.as_mut_ptr());
        let tasks: Vec<(usize, usize)> = (0..texts.len()).flat_map(|t| (0..heads).map(move |hd| (t, hd))).collect();
        tasks.par_iter().for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(kt, scores, ctx), &(t, hd)| {
                let n = texts[t].len();
                if n == 0 {
                    return;
                }
                let (kt_len, scores_len) = simd::attend_scratch(n, d);
                resize(kt, kt_len);
                resize(scores, scores_len);
                resize(ctx, d * n);
                let start = starts[t];
                let rows = &qkv[start * 3 * h..(start + n) * 3 * h];
                let offsets = [hd * d, h + hd * d, 2 * h + hd * d];
                simd::attend(isa, rows, 3 * h, n, d, offsets, scale, ctx, d, 0, kt, scores);
                for (i, head) in ctx.chunks_exact(d).enumerate() {
                    // SAFETY: task (t, hd) is the only writer of columns
                    // hd·d..(hd+1)·d of rows start..start+n of `out`, which
                    // outlives the parallel loop and holds those rows.
                    unsafe {
                        std::ptr::copy_nonoverlapping(head.as_ptr(), dst.get().add((start + i) * h + hd * d), d);
                    }
                }
            },
        );
    }
}

fn add_norm(isa: Isa, x: &mut [f32], residual: &mut [f32], norm: &Norm, eps: f32, h: usize) {
    x.par_chunks_mut(h).zip(residual.par_chunks_mut(h)).with_min_len(16).for_each(|(x, r)| {
        simd::add_norm(isa, x, r, &norm.gamma, &norm.beta, eps);
    });
}

fn resize(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    v.truncate(len);
}
