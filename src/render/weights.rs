//! Tensors by name from safetensors (dense) or GGUF (quantized matrices,
//! everything else dequantized), and the few layers Z-Image is built of.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Module, Result, Tensor, D};

use super::lora_weights::Patch;

/// Where tensors come from.
enum Source {
    Safetensors { st: MmapedSafetensors, files: Vec<PathBuf> },
    Gguf { vb: candle_transformers::quantized_var_builder::VarBuilder, file: PathBuf },
}

/// Tensors by name, in one dtype on one device; dense tensors may carry
/// LoRA patches, merged in f32 as they load.
pub(crate) struct Store {
    src: Source,
    dtype: DType,
    device: Device,
    patches: HashMap<String, Vec<Patch>>,
}

impl Store {
    pub(crate) fn safetensors(paths: &[PathBuf], dtype: DType, device: &Device) -> Result<Store> {
        // SAFETY: the files are only read, and not modified while mapped.
        let st = unsafe { MmapedSafetensors::multi(paths)? };
        let src = Source::Safetensors { st, files: paths.to_vec() };
        Ok(Store { src, dtype, device: device.clone(), patches: HashMap::new() })
    }

    pub(crate) fn gguf(path: &Path, dtype: DType, device: &Device) -> Result<Store> {
        let vb = candle_transformers::quantized_var_builder::VarBuilder::from_gguf(path, device)?;
        let src = Source::Gguf { vb, file: path.to_path_buf() };
        Ok(Store { src, dtype, device: device.clone(), patches: HashMap::new() })
    }

    /// Merges `patches` (by target module) into the tensors as they load.
    /// Quantized weights take none (conditioning.md §1.5).
    pub(crate) fn with_patches(mut self, patches: HashMap<String, Vec<Patch>>) -> std::result::Result<Store, String> {
        if !patches.is_empty() && matches!(self.src, Source::Gguf { .. }) {
            return Err("LoRA on GGUF weights is not supported yet; use the safetensors weights".into());
        }
        self.patches = patches;
        Ok(self)
    }

    /// Activations' dtype: the store's, f32 around quantized matrices.
    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    /// The file(s), for errors.
    pub(crate) fn describe(&self) -> String {
        match &self.src {
            Source::Safetensors { files, .. } => {
                files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            }
            Source::Gguf { file, .. } => file.display().to_string(),
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        match &self.src {
            Source::Safetensors { st, .. } => st.get(name).is_ok(),
            Source::Gguf { vb, .. } => vb.contains_key(name),
        }
    }

    /// The shape of tensor `name`.
    pub(crate) fn shape(&self, name: &str) -> Result<Vec<usize>> {
        match &self.src {
            Source::Safetensors { st, .. } => Ok(st.get(name)?.shape().to_vec()),
            Source::Gguf { vb, .. } => Ok(vb.get_no_shape(name)?.shape().dims().to_vec()),
        }
    }

    /// A dense tensor in the store's dtype (LoRA patches merged in f32,
    /// then one cast).
    pub(crate) fn tensor(&self, name: &str) -> Result<Tensor> {
        let patched = [(".weight", false), (".bias", true)].iter().find_map(|(suffix, bias)| {
            let module = name.strip_suffix(suffix)?;
            Some((module, self.patches.get(module)?, *bias))
        });
        let (device, dtype) = (&self.device, self.dtype);
        let raw = match &self.src {
            Source::Safetensors { st, .. } => st.load(name, device)?,
            Source::Gguf { vb, .. } => vb.get_no_shape(name)?.dequantize(device)?,
        };
        match patched {
            Some((module, patches, bias)) => {
                let h = self.shape(&format!("{module}.weight"))?[1];
                super::lora_weights::apply(raw.to_dtype(DType::F32)?, patches, bias, h)?.to_dtype(dtype)
            }
            None => raw.to_dtype(dtype),
        }
    }

    fn qtensor(&self, name: &str) -> Result<Arc<QTensor>> {
        match &self.src {
            Source::Gguf { vb, .. } => vb.get_no_shape(name),
            Source::Safetensors { .. } => candle_core::bail!("{name} is not quantized"),
        }
    }

    /// `{name}.weight` (and `{name}.bias` when `bias`) as a linear layer.
    pub(crate) fn linear(&self, name: &str, bias: bool) -> Result<Linear> {
        let wname = format!("{name}.weight");
        let weight = match &self.src {
            Source::Safetensors { .. } => LinearWeight::Dense(self.tensor(&wname)?),
            Source::Gguf { .. } => {
                let q = self.qtensor(&wname)?;
                LinearWeight::Quantized(QMatMul::from_arc(q)?)
            }
        };
        let bias = if bias {
            Some(match &self.src {
                // Biases stay f32 around quantized weights.
                Source::Gguf { .. } => self.qtensor(&format!("{name}.bias"))?.dequantize(&self.device)?,
                Source::Safetensors { .. } => self.tensor(&format!("{name}.bias"))?,
            })
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

pub(crate) enum LinearWeight {
    Dense(Tensor),
    Quantized(QMatMul),
}

/// y = x·Wᵀ (+ b), for x of any rank.
pub(crate) struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
}

impl Linear {
    /// One layer computing `parts` side by side (their outputs
    /// concatenated), when all are dense and bias-free; else None.
    pub(crate) fn fuse(parts: &[&Linear]) -> Result<Option<Linear>> {
        let mut ws = Vec::new();
        for p in parts {
            match (&p.weight, &p.bias) {
                (LinearWeight::Dense(w), None) => ws.push(w.clone()),
                _ => return Ok(None),
            }
        }
        Ok(Some(Linear { weight: LinearWeight::Dense(Tensor::cat(&ws, 0)?), bias: None }))
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            LinearWeight::Dense(w) => {
                let dims = x.dims().to_vec();
                let (rows, k) = (dims[..dims.len() - 1].iter().product::<usize>(), dims[dims.len() - 1]);
                let y = x.reshape((rows, k))?.matmul(&w.t()?)?;
                let mut out = dims[..dims.len() - 1].to_vec();
                out.push(w.dim(0)?);
                y.reshape(out)?
            }
            LinearWeight::Quantized(q) => q.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// RMSNorm with its statistics in f32: x / √(mean(x²) + eps) · w.
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn new(weight: Tensor, eps: f64) -> RmsNorm {
        RmsNorm { weight, eps }
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let y = xf.broadcast_div(&(ms + self.eps)?.sqrt()?)?;
        y.to_dtype(dtype)?.broadcast_mul(&self.weight.to_dtype(dtype)?)
    }
}

/// Softmax over the last axis in f32, back in `x`'s dtype.
pub(crate) fn softmax_f32(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    candle_nn::ops::softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(dtype)
}

/// RGB8 pixels (`w`×`h`) as a (1, 3, h, w) tensor in [-1, 1]: 2p/255 − 1,
/// the autoencoders' input.
pub(crate) fn rgb_tensor(rgb: &[u8], w: usize, h: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    let px: Vec<f32> = rgb.iter().map(|&v| 2.0 * v as f32 / 255.0 - 1.0).collect();
    Tensor::from_vec(px, (1, h, w, 3), &Device::Cpu)?.permute((0, 3, 1, 2))?.to_device(device)?.to_dtype(dtype)
}
