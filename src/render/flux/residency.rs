//! Flux's memory plan (zimage.md §4.1–§4.2): what each component takes,
//! checked before a tensor is read, and whether another transformer fits
//! beside what is loaded.

use std::path::Path;

use candle_core::{DType, Device};

use super::files::{self, FluxFiles, TransformerFile};
use super::{backend_err, FluxBackend};
use crate::render::{memory, RenderError, Resident};

/// The host keeps this much free on the CPU.
pub(crate) const HOST_RESERVE: u64 = 2 << 30;

/// Every component's size and the room they share.
pub(super) struct Plan {
    /// Text encoders and the VAE decoder, loaded once.
    pub shared: Vec<Resident>,
    /// One per located file, in the same order.
    pub transformers: Vec<Resident>,
    /// A render's working memory at 1024².
    pub act: u64,
    /// min(budget, host available − reserve); None: no limit known.
    pub room: Option<u64>,
}

impl Plan {
    /// Whether `weights` of resident components leave a render its working memory.
    pub fn fits(&self, weights: u64) -> bool {
        self.room.is_none_or(|room| weights + self.act <= room)
    }
}

/// Working memory of one render at `w`×`h` beside the weights
/// (zimage.md §4.2): b·(10·S·D + 3·S·F) + 8·S·D + 1 GiB, with S the image
/// plus text tokens, D the width, F the feed-forward width, b the bytes of
/// an activation.
pub(crate) fn activation_reserve(w: u64, h: u64, d: usize, f: usize, b: u64) -> u64 {
    let s = (w * h / 256).div_ceil(32) * 32 + 512;
    let (d, f) = (d as u64, f as u64);
    b * (10 * s * d + 3 * s * f) + 8 * s * d + (1 << 30)
}

impl FluxBackend {
    /// The components a load may hold and their bytes (tensor bytes from the
    /// files' headers; a GGUF's size on disk), checked so that the shared
    /// parts, the largest transformer and a render's working memory fit
    /// min(`--memory-budget`, host available − 2 GiB on the CPU).
    pub(super) fn plan_residency(&self, device: &Device, dtype: DType) -> Result<Plan, RenderError> {
        let device_name = match device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        let size = dtype.size_in_bytes() as u64;
        let inspect = |p: &Path| files::inspect_safetensors(p).map_err(backend_err);
        let first = &self.files[0];
        let component = |component: &str, model: String, format: &str, dtype: &str, bytes: u64| Resident {
            component: component.into(),
            model,
            format: format.into(),
            dtype: dtype.into(),
            device: device_name.clone(),
            bytes,
        };
        let mut text = 0u64;
        for p in first.t5_weights.iter().chain([&first.clip_weights]) {
            text += inspect(p)?.elements * size;
        }
        let vae = inspect(&first.ae)?.decoder_elements * size;
        let shared = vec![
            component("text_encoder", "t5+clip-l".into(), "safetensors", dtype.as_str(), text),
            component("vae_decoder", first.model_name(), "safetensors", dtype.as_str(), vae),
        ];
        let (mut hidden, mut ffn) = (0usize, 0usize);
        let mut transformers = Vec::new();
        for f in &self.files {
            let config = files::transformer_config(f).map_err(backend_err)?;
            hidden = hidden.max(config.hidden_size);
            ffn = ffn.max((config.hidden_size as f64 * config.mlp_ratio) as usize);
            let (format, dt, bytes) = match &f.transformer {
                TransformerFile::Safetensors(p) => ("safetensors", dtype.as_str(), inspect(p)?.elements * size),
                TransformerFile::Gguf(p) => ("gguf", "gguf", std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)),
            };
            transformers.push(component("transformer", f.model_name(), format, dt, bytes));
        }
        let act = activation_reserve(1024, 1024, hidden, ffn, size);
        let cpu = device.is_cpu();
        let budget = self.budget(cpu);
        let host = if cpu { memory::host_available() } else { None };
        let room = match (budget, host.map(|a| a.saturating_sub(HOST_RESERVE))) {
            (Some(b), Some(h)) => Some(b.min(h)),
            (b, h) => b.or(h),
        };
        let plan = Plan { shared, transformers, act, room };
        let largest = plan.transformers.iter().map(|t| t.bytes).max().unwrap_or(0);
        let weights = plan.shared.iter().map(|r| r.bytes).sum::<u64>() + largest;
        if let Some(room) = plan.room.filter(|_| !plan.fits(weights)) {
            let models: Vec<String> = self.files.iter().map(FluxFiles::model_name).collect();
            let limit = match budget {
                Some(b) if b == room => format!("{} within --memory-budget", memory::gib(b)),
                _ => format!("{} available (MemAvailable and cgroup limit, 2 GiB reserve)", memory::gib(room)),
            };
            return Err(backend_err(format!(
                "not enough memory for the Flux weights ({}, {} on {device_name}): needs {} with a render's working \
                 memory, {limit}; use a GGUF transformer (--quantized), a GPU, or a larger --memory-budget",
                models.join(" + "),
                dtype.as_str(),
                memory::gib(weights + plan.act),
            )));
        }
        Ok(plan)
    }

    /// `--memory-budget` in bytes; a share (`80%`) of the host's memory on
    /// the CPU. GPUs: bytes only (the device's total is not read here).
    pub(super) fn budget(&self, cpu: bool) -> Option<u64> {
        match self.opts.memory_budget? {
            memory::MemoryBudget::Bytes(b) => Some(b),
            share if cpu => memory::host_total().map(|t| share.bytes(t)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_memory_follows_the_formula() {
        // Flux at 1024², f32: S = 4608, D = 3072, F = 12288.
        let s = 4608u64;
        let expect = 4 * (10 * s * 3072 + 3 * s * 12288) + 8 * s * 3072 + (1 << 30);
        assert_eq!(activation_reserve(1024, 1024, 3072, 12288, 4), expect);
        let plan = Plan { shared: Vec::new(), transformers: Vec::new(), act: 10, room: Some(100) };
        assert!(plan.fits(90) && !plan.fits(91));
        assert!(Plan { room: None, ..plan }.fits(u64::MAX - 10));
    }
}
