//! The two text encoders: T5 gives the transformer a token sequence to
//! attend to, CLIP-L one pooled vector that conditions every block.

use candle_core::{DType, Device, Tensor};
use candle_nn::Module;
use candle_transformers::models::clip::text_model::ClipTextTransformer;
use candle_transformers::models::t5::T5EncoderModel;
use tokenizers::Tokenizer;

use super::files::{self, FluxFiles};
use super::{backend_err, mmap, run_err, tensor_err};
use crate::render::RenderError;

pub(crate) struct TextEncoders {
    t5: T5EncoderModel,
    t5_tok: Tokenizer,
    clip: ClipTextTransformer,
    clip_tok: Tokenizer,
    clip_max: usize,
    device: Device,
    dtype: DType,
    pub t5_dim: usize,
    pub clip_dim: usize,
}

fn tokenizer(path: &std::path::Path) -> Result<Tokenizer, RenderError> {
    Tokenizer::from_file(path).map_err(|e| backend_err(format!("{}: not a usable tokenizer: {e}", path.display())))
}

impl TextEncoders {
    pub(crate) fn load(f: &FluxFiles, device: &Device, dtype: DType) -> Result<Self, RenderError> {
        let t5_cfg = files::t5_config(f).map_err(backend_err)?;
        let vb = mmap(&f.t5_weights, dtype, device)?;
        let t5 = T5EncoderModel::load(vb, &t5_cfg).map_err(|e| tensor_err(&f.t5_weights[0], e))?;
        let clip_cfg = files::clip_config(f).map_err(backend_err)?;
        let vb = mmap(std::slice::from_ref(&f.clip_weights), dtype, device)?;
        // transformers checkpoints nest the text model under `text_model`.
        let vb =
            if vb.contains_tensor("text_model.embeddings.token_embedding.weight") { vb.pp("text_model") } else { vb };
        let clip = ClipTextTransformer::new(vb, &clip_cfg).map_err(|e| tensor_err(&f.clip_weights, e))?;
        Ok(TextEncoders {
            t5,
            t5_tok: tokenizer(&f.t5_tokenizer)?,
            clip,
            clip_tok: tokenizer(&f.clip_tokenizer)?,
            clip_max: clip_cfg.max_position_embeddings,
            device: device.clone(),
            dtype,
            t5_dim: t5_cfg.d_model,
            clip_dim: clip_cfg.embed_dim,
        })
    }

    /// Encodes `prompt`: T5 features (1, max_t5, d) with the tokens padded
    /// (id 0) to `max_t5` as the reference pipeline does, and CLIP's pooled
    /// vector (1, d) over at most its 77 positions.
    pub(crate) fn encode(&mut self, prompt: &str, max_t5: usize) -> Result<(Tensor, Tensor), RenderError> {
        let tok_err = |e: tokenizers::Error| backend_err(format!("tokenizer failed: {e}"));
        let mut ids = self.t5_tok.encode(prompt, true).map_err(tok_err)?.get_ids().to_vec();
        if ids.len() > max_t5 {
            // Keep the end-of-sequence token the tokenizer appended.
            let last = *ids.last().unwrap_or(&1);
            ids.truncate(max_t5 - 1);
            ids.push(last);
        }
        ids.resize(max_t5, 0);
        let input = Tensor::new(ids.as_slice(), &self.device).and_then(|t| t.unsqueeze(0)).map_err(run_err)?;
        let txt = self.t5.forward_dt(&input, Some(self.dtype)).map_err(run_err)?;

        let mut ids = self.clip_tok.encode(prompt, true).map_err(tok_err)?.get_ids().to_vec();
        if ids.len() > self.clip_max {
            let last = *ids.last().unwrap_or(&0);
            ids.truncate(self.clip_max - 1);
            ids.push(last);
        }
        if ids.is_empty() {
            return Err(backend_err("the CLIP tokenizer produced no tokens"));
        }
        let input = Tensor::new(ids.as_slice(), &self.device).and_then(|t| t.unsqueeze(0)).map_err(run_err)?;
        let vec_ = self.clip.forward(&input).and_then(|t| t.to_dtype(self.dtype)).map_err(run_err)?;
        let txt = txt.to_dtype(self.dtype).map_err(run_err)?;
        Ok((txt, vec_))
    }
}
