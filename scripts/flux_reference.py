#!/usr/bin/env python3
"""Fixtures for the Flux backend, from the reference implementation.

Builds tiny, non-degenerate random Flux models (every norm weight random,
T5's layer norms and the QK norms included) with diffusers' and
transformers' classes, writes the transformer with BFL's names
(flux1-<variant>.safetensors, and a Q8_0 GGUF beside it), the Flux
autoencoder as BFL's ae.safetensors, CLIP-L and T5 as transformers saves
them, and word-level tokenizers; then runs diffusers' FluxPipeline on
the same weights with sqm's noise and records its intermediate tensors.

    (venv as in scripts/zimage_reference.py)
    ~/venvs/sqm-reference/bin/python scripts/flux_reference.py

Writes tests/fixtures/flux/: tiny-schnell/, tiny-dev/, reference.safetensors
and reference.json. CI never runs this.
"""

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zimage_reference import PINS, bfl_vae, gaussian, q8_or_f32, reseed, tiny_vae  # noqa: E402

import gguf  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline  # noqa: E402
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, T5Config, T5EncoderModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "flux"
WORDS = ("a an the of in on at with and black red orc warrior elf knight city tower gate forest mountain dusk "
         "night fire ash glass ember storm torch lantern painterly style portrait landscape scene sign").split()
HIDDEN, HEADS, HEAD_DIM, TEXT = 32, 2, 16, 32


def word_tokenizer(clip):
    """Word-level: CLIP wraps ids in start/end (end is the largest id, and
    pads with it); T5 appends </s> and pads with <pad> (0)."""
    if clip:
        vocab = {"<|startoftext|>": 0}
        for w in WORDS:
            vocab[w] = len(vocab)
        vocab["<unk>"] = len(vocab)
        vocab["<|endoftext|>"] = len(vocab)
        unk, end = "<unk>", "<|endoftext|>"
        post = processors.TemplateProcessing(single=f"<|startoftext|> $A {end}",
                                             special_tokens=[("<|startoftext|>", 0), (end, vocab[end])])
    else:
        vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
        for w in WORDS:
            vocab[w] = len(vocab)
        unk, end = "<unk>", "</s>"
        post = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = post
    return tok, vocab


def hf_tokenizer(tok, clip):
    if clip:
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                       pad_token="<|endoftext|>", unk_token="<unk>", model_max_length=77)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=512)


def tiny_clip(gen, vocab):
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=TEXT, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, projection_dim=TEXT,
                         hidden_act="quick_gelu", eos_token_id=vocab["<|endoftext|>"], bos_token_id=0,
                         pad_token_id=vocab["<|endoftext|>"])
    m = CLIPTextModel(cfg)
    reseed(m, gen)
    return m.eval()


def tiny_t5(gen, vocab):
    cfg = T5Config(vocab_size=len(vocab), d_model=TEXT, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                   relative_attention_num_buckets=8, relative_attention_max_distance=32,
                   feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
                   layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                   tie_word_embeddings=False)
    m = T5EncoderModel(cfg)
    reseed(m, gen)
    return m.eval()


def tiny_transformer(gen, guidance):
    m = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2,
                               attention_head_dim=HEAD_DIM, num_attention_heads=HEADS, joint_attention_dim=TEXT,
                               pooled_projection_dim=TEXT, guidance_embeds=guidance, axes_dims_rope=(4, 6, 6))
    reseed(m, gen)
    return m.eval()


def bfl_transformer(sd, layers, singles):
    """BFL's names for diffusers' Flux state dict (the inverse of diffusers'
    single-file conversion, which hard-codes the full model's width)."""
    out = {}
    take = sd.copy()

    def put(bfl, key):
        out[bfl] = take.pop(key)

    def swap(w):  # diffusers keeps (scale, shift); BFL (shift, scale)
        scale, shift = w.chunk(2, dim=0)
        return torch.cat([shift, scale], dim=0)

    for a, b in (("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
                 ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
                 ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
                 ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
                 ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
                 ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
                 ("txt_in", "context_embedder"), ("img_in", "x_embedder"), ("final_layer.linear", "proj_out")):
        for p in ("weight", "bias"):
            if f"{b}.{p}" in take:
                put(f"{a}.{p}", f"{b}.{p}")
    for p in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{p}"] = swap(take.pop(f"norm_out.linear.{p}"))
    for i in range(layers):
        d, t = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for p in ("weight", "bias"):
            put(f"{d}img_mod.lin.{p}", f"{t}norm1.linear.{p}")
            put(f"{d}txt_mod.lin.{p}", f"{t}norm1_context.linear.{p}")
            out[f"{d}img_attn.qkv.{p}"] = torch.cat([take.pop(f"{t}attn.to_{x}.{p}") for x in "qkv"])
            out[f"{d}txt_attn.qkv.{p}"] = torch.cat([take.pop(f"{t}attn.add_{x}_proj.{p}") for x in "qkv"])
            put(f"{d}img_mlp.0.{p}", f"{t}ff.net.0.proj.{p}")
            put(f"{d}img_mlp.2.{p}", f"{t}ff.net.2.{p}")
            put(f"{d}txt_mlp.0.{p}", f"{t}ff_context.net.0.proj.{p}")
            put(f"{d}txt_mlp.2.{p}", f"{t}ff_context.net.2.{p}")
            put(f"{d}img_attn.proj.{p}", f"{t}attn.to_out.0.{p}")
            put(f"{d}txt_attn.proj.{p}", f"{t}attn.to_add_out.{p}")
        put(f"{d}img_attn.norm.query_norm.scale", f"{t}attn.norm_q.weight")
        put(f"{d}img_attn.norm.key_norm.scale", f"{t}attn.norm_k.weight")
        put(f"{d}txt_attn.norm.query_norm.scale", f"{t}attn.norm_added_q.weight")
        put(f"{d}txt_attn.norm.key_norm.scale", f"{t}attn.norm_added_k.weight")
    for i in range(singles):
        s, t = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        for p in ("weight", "bias"):
            put(f"{s}modulation.lin.{p}", f"{t}norm.linear.{p}")
            out[f"{s}linear1.{p}"] = torch.cat([take.pop(f"{t}attn.to_{x}.{p}") for x in "qkv"]
                                               + [take.pop(f"{t}proj_mlp.{p}")])
            put(f"{s}linear2.{p}", f"{t}proj_out.{p}")
        put(f"{s}norm.query_norm.scale", f"{t}attn.norm_q.weight")
        put(f"{s}norm.key_norm.scale", f"{t}attn.norm_k.weight")
    assert not take, sorted(take)
    return {k: v.contiguous() for k, v in out.items()}


def write_layout(folder, variant, transformer, clip, t5, vae, toks):
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"):
        (folder / sub).mkdir(parents=True)
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(transformer.config).items()
           if not k.startswith("_")}
    cfg["_class_name"] = "FluxTransformer2DModel"
    (folder / "transformer" / "config.json").write_text(json.dumps(cfg, indent=1))
    bfl = bfl_transformer(transformer.state_dict(), 1, 2)
    save_file(bfl, folder / f"flux1-{variant}.safetensors")
    w = gguf.GGUFWriter(str(folder / f"flux1-{variant}-tiny-Q8_0.gguf"), "flux")
    for k, v in bfl.items():
        q8_or_f32(w, k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(bfl_vae(vae), folder / "ae.safetensors")
    vae.save_config(folder / "vae")
    clip.config.save_pretrained(folder / "text_encoder")
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, folder / "text_encoder" / "model.safetensors")
    t5.config.save_pretrained(folder / "text_encoder_2")
    save_file({k: v.contiguous() for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"},
              folder / "text_encoder_2" / "model.safetensors")
    toks[0].save(str(folder / "tokenizer" / "tokenizer.json"))
    toks[1].save(str(folder / "tokenizer_2" / "tokenizer.json"))


def pack(lat):
    b, c, h, w = lat.shape
    return lat.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def run_case(pipe, name, prompt, width, height, seed, steps, guidance, max_t5, rec):
    h, w = height // 8, width // 8
    noise = torch.from_numpy(gaussian(seed, 16 * h * w)).reshape(1, 16, h, w)
    rec[f"{name}.noise"] = noise[0]
    captured = {}

    def hook(_m, _args, out):
        if "v0" not in captured:
            captured["v0"] = out[0].detach().clone()

    handle = pipe.transformer.register_forward_hook(hook)
    lat = []
    with torch.no_grad():
        pe, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=prompt, device="cpu", max_sequence_length=max_t5)
        image = pipe(prompt=prompt, height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
                     latents=pack(noise), max_sequence_length=max_t5, output_type="pil",
                     callback_on_step_end=lambda _p, _i, _t, kw: lat.append(kw["latents"].clone()) or {},
                     callback_on_step_end_tensor_inputs=["latents"]).images[0]
    handle.remove()
    rec[f"{name}.t5"] = pe[0].float()
    rec[f"{name}.pooled"] = pooled[0].float()
    rec[f"{name}.sigmas"] = pipe.scheduler.sigmas.float().clone()
    rec[f"{name}.v0"] = captured["v0"][0].float()
    rec[f"{name}.final"] = lat[-1][0].float().clone()
    img = np.array(image)
    rec[f"{name}.image"] = torch.from_numpy(img.copy())
    for k in (f"{name}.t5", f"{name}.pooled", f"{name}.v0", f"{name}.final"):
        s = rec[k].std().item()
        assert 0.05 <= s <= 20, (k, s)
    levels = int(img.max()) - int(img.min())
    assert levels > 32, (name, levels)
    return {"prompt": prompt, "width": width, "height": height, "seed": seed, "steps": steps, "guidance": guidance,
            "max_t5": max_t5, "image_levels": levels}


def ref_image(w, h):
    """The init image: RGB (4x, 5y, 2(x+y)) mod 256."""
    from PIL import Image
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(4 * x) % 256, (5 * y) % 256, (2 * (x + y)) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def depth_image(w, h):
    """experimance's mock depth map, near = white: 255·(1 − d/dmax) about the centre, as gray RGB."""
    from PIL import Image
    y, x = np.mgrid[0:h, 0:w]
    d = np.sqrt((x - w / 2) ** 2 + (y - h / 2) ** 2)
    g = (255 * (1 - d / d.max())).astype(np.uint8)
    return Image.fromarray(np.stack([g, g, g], axis=-1), "RGB")


def deterministic_vae():
    """img2img takes the encoder's mean, not a sample (conditioning.md §2.3)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean


def run_img2img(pipe, module, name, prompt, width, height, seed, steps, guidance, strength, max_t5, rec, pack_noise):
    """An img2img case: diffusers' own pipeline with sqm's noise in place of randn."""
    h, w = height // 8, width // 8
    noise = torch.from_numpy(gaussian(seed, 16 * h * w)).reshape(1, 16, h, w)
    module.randn_tensor = lambda shape, **kw: (pack(noise) if pack_noise else noise).reshape(shape)
    lat = []
    kwargs = {"max_sequence_length": max_t5} if max_t5 else {}
    with torch.no_grad():
        image = pipe(prompt=prompt, image=ref_image(width, height), strength=strength, height=height, width=width,
                     num_inference_steps=steps, guidance_scale=guidance, output_type="pil",
                     callback_on_step_end=lambda _p, _i, _t, kw: lat.append(kw["latents"].clone()) or {},
                     callback_on_step_end_tensor_inputs=["latents"], **kwargs).images[0]
    rec[f"{name}.final"] = lat[-1][0].float().clone()
    img = np.array(image)
    rec[f"{name}.image"] = torch.from_numpy(img.copy())
    return {"prompt": prompt, "width": width, "height": height, "seed": seed, "steps": steps, "guidance": guidance,
            "strength": strength, "steps_run": len(lat), "max_t5": max_t5, "image": "ref_64x48.png"}


def main():
    deterministic_vae()
    gen = torch.Generator().manual_seed(20261130)
    clip_tok, clip_vocab = word_tokenizer(True)
    t5_tok, t5_vocab = word_tokenizer(False)
    clip = tiny_clip(gen, clip_vocab)
    t5 = tiny_t5(gen, t5_vocab)
    vae = tiny_vae(gen)
    rec, cases = {}, {}
    for variant, guidance_embeds in (("schnell", False), ("dev", True)):
        transformer = tiny_transformer(gen, guidance_embeds)
        folder = OUT / f"tiny-{variant}"
        write_layout(folder, variant, transformer, clip, t5, vae, (clip_tok, t5_tok))
        sched = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=variant == "dev", base_shift=0.5,
            max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
        pipe = FluxPipeline(scheduler=sched, vae=vae, text_encoder=clip, tokenizer=hf_tokenizer(clip_tok, True),
                            text_encoder_2=t5, tokenizer_2=hf_tokenizer(t5_tok, False), transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
        from diffusers import FluxImg2ImgPipeline
        import diffusers.pipelines.flux.pipeline_flux_img2img as img2img_module
        i2i = FluxImg2ImgPipeline(**pipe.components)
        i2i.set_progress_bar_config(disable=True)
        prompt = "an orc warrior with a torch at dusk"
        if variant == "schnell":
            cases["FS1"] = run_case(pipe, "FS1", prompt, 64, 48, 3, 2, 0.0, 256, rec)
            cases["I2"] = run_img2img(i2i, img2img_module, "I2", prompt, 64, 48, 7, 4, 0.0, 0.35, 256, rec, False)
        else:
            cases["FD1"] = run_case(pipe, "FD1", prompt, 64, 64, 5, 3, 3.5, 512, rec)
            cases["I1"] = run_img2img(i2i, img2img_module, "I1", prompt, 64, 48, 7, 4, 3.5, 0.6, 512, rec, False)
            # strength 1: diffusers starts from pure noise, as the plain render.
            cases["I3"] = run_img2img(i2i, img2img_module, "I3", prompt, 64, 48, 7, 4, 3.5, 1.0, 512, rec, False)
    ref_image(64, 48).save(OUT / "ref_64x48.png")
    # Depth (FLUX.1-Depth-dev: dev with 128 input channels) beside dev.
    from diffusers import FluxControlPipeline
    depth_t = FluxTransformer2DModel(patch_size=1, in_channels=128, out_channels=64, num_layers=1, num_single_layers=2,
                                     attention_head_dim=HEAD_DIM, num_attention_heads=HEADS, joint_attention_dim=TEXT,
                                     pooled_projection_dim=TEXT, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    reseed(depth_t, gen)
    depth_t.eval()
    save_file(bfl_transformer(depth_t.state_dict(), 1, 2), OUT / "tiny-dev" / "flux1-depth-dev.safetensors")
    control = FluxControlPipeline(scheduler=pipe.scheduler, vae=vae, text_encoder=clip, tokenizer=pipe.tokenizer,
                                  text_encoder_2=t5, tokenizer_2=pipe.tokenizer_2, transformer=depth_t)
    control.set_progress_bar_config(disable=True)
    import diffusers.pipelines.flux.pipeline_flux_control as control_module
    noise = torch.from_numpy(gaussian(7, 16 * 6 * 8)).reshape(1, 16, 6, 8)
    lat = []
    with torch.no_grad():
        image = control(prompt="an orc warrior with a torch at dusk", control_image=depth_image(64, 48), height=48,
                        width=64, num_inference_steps=4, guidance_scale=10.0, latents=pack(noise),
                        max_sequence_length=512, output_type="pil",
                        callback_on_step_end=lambda _p, _i, _t, kw: lat.append(kw["latents"].clone()) or {},
                        callback_on_step_end_tensor_inputs=["latents"]).images[0]
    rec["D1.final"] = lat[-1][0].float().clone()
    rec["D1.image"] = torch.from_numpy(np.array(image).copy())
    depth_image(64, 48).convert("L").save(OUT / "depth_64x48.png")
    cases["D1"] = {"prompt": "an orc warrior with a torch at dusk", "width": 64, "height": 48, "seed": 7, "steps": 4,
                   "guidance": 10.0, "depth": "depth_64x48.png"}
    save_file({k: v.contiguous() for k, v in rec.items()}, OUT / "reference.safetensors")
    (OUT / "reference.json").write_text(json.dumps({
        "versions": PINS, "note": "written by scripts/flux_reference.py; do not edit", "cases": cases,
    }, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
