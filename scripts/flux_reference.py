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

LoRA cases (conditioning.md §4): rank-2 LoRA files on the tiny dev model
in PEFT (diffusers names, every module), kohya (sd-scripts names, the
modules diffusers converts faithfully) and XLabs formats, loaded with
diffusers' own `load_lora_weights` (peft 0.21.2); a full kohya file whose
merged tensors are checked against numpy (W1).

Writes tests/fixtures/flux/: tiny-schnell/, tiny-dev/, lora/,
reference.safetensors and reference.json. CI never runs this.
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
import peft  # noqa: E402
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
    lora_cases(pipe, control, rec, cases)
    depth_img2img_and_fit(control, rec, cases)
    save_file({k: v.contiguous() for k, v in rec.items()}, OUT / "reference.safetensors")
    (OUT / "reference.json").write_text(json.dumps({
        "versions": {**PINS, "peft": peft.__version__}, "note": "written by scripts/flux_reference.py; do not edit", "cases": cases,
    }, indent=1) + "\n")
    print("wrote", OUT)


RANK = 2
assert peft.__version__ == "0.21.2", peft.__version__


def lora_pair(gen, d_in, d_out):
    """A (rank × in) and B (out × rank): big enough to move the picture."""
    a = torch.randn(RANK, d_in, generator=gen) / math.sqrt(d_in)
    b = torch.randn(d_out, RANK, generator=gen) * 0.4
    return a.contiguous(), b.contiguous()


def linear_shapes(model, names):
    mods = dict(model.named_modules())
    return {n: (mods[n].in_features, mods[n].out_features) for n in names}


def peft_modules(singles):
    d = [f"transformer_blocks.0.{m}" for m in (
        "attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
        "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
        "ff_context.net.2", "norm1.linear", "norm1_context.linear")]
    s = [f"single_transformer_blocks.{i}.{m}" for i in range(singles)
         for m in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out", "norm.linear")]
    top = ["x_embedder", "context_embedder", "proj_out", "norm_out.linear"] + [
        f"time_text_embed.{e}_embedder.linear_{k}" for e in ("timestep", "text", "guidance") for k in (1, 2)]
    return d + s + top


KOHYA_DOUBLE = ("img_attn_qkv", "img_attn_proj", "img_mlp_0", "img_mlp_2", "img_mod_lin",
                "txt_attn_qkv", "txt_attn_proj", "txt_mlp_0", "txt_mlp_2", "txt_mod_lin")


def kohya_file(gen, bfl, modules):
    """sd-scripts names; alphas vary (1, 4, absent) so m = alpha/rank is exercised."""
    out = {}
    for j, (kohya, target) in enumerate(modules):
        w = bfl[f"{target}.weight"]
        a, b = lora_pair(gen, w.shape[1], w.shape[0])
        out[f"lora_unet_{kohya}.lora_down.weight"] = a
        out[f"lora_unet_{kohya}.lora_up.weight"] = b
        if j % 3 != 2:
            out[f"lora_unet_{kohya}.alpha"] = torch.tensor(1.0 if j % 3 == 0 else 4.0)
    return out


def kohya_target(name):
    if name.startswith("double_blocks_0_"):
        side, rest = name[len("double_blocks_0_"):].split("_", 1)
        rest = {"attn_qkv": "attn.qkv", "attn_proj": "attn.proj", "mlp_0": "mlp.0", "mlp_2": "mlp.2",
                "mod_lin": "mod.lin"}[rest]
        return f"double_blocks.0.{side}_{rest}"
    if name.startswith("single_blocks_"):
        i, rest = name[len("single_blocks_"):].split("_", 1)
        return f"single_blocks.{i}." + {"linear1": "linear1", "linear2": "linear2",
                                         "modulation_lin": "modulation.lin"}[rest]
    return {"img_in": "img_in", "txt_in": "txt_in", "final_layer_linear": "final_layer.linear",
            "final_layer_adaLN_modulation_1": "final_layer.adaLN_modulation.1"}.get(name) or \
        name.replace("_in_in_layer", "_in.in_layer").replace("_in_out_layer", "_in.out_layer")


def lora_cases(pipe, control, rec, cases):
    """L1–L4, D3 through diffusers' LoRA loading; W1 merged against numpy."""
    gen = torch.Generator().manual_seed(4242)
    folder = OUT / "lora"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    transformer = pipe.transformer
    bfl = bfl_transformer(transformer.state_dict(), 1, 2)
    # peft_all: every module, diffusers names under transformer., `.alpha` 1.
    names = peft_modules(2)
    shapes = linear_shapes(transformer, names)
    peft = {}
    for n in names:
        a, b = lora_pair(gen, *shapes[n])
        peft[f"transformer.{n}.lora_A.weight"] = a
        peft[f"transformer.{n}.lora_B.weight"] = b
        peft[f"transformer.{n}.alpha"] = torch.tensor(1.0)
    save_file(peft, folder / "peft_all.safetensors")
    # kohya_part: what diffusers' converter handles faithfully (no linear1:
    # it splits by the full model's widths; no final_layer: it drops alphas).
    part = [f"double_blocks_0_{m}" for m in KOHYA_DOUBLE] + [
        f"single_blocks_{i}_{m}" for i in range(2) for m in ("linear2", "modulation_lin")] + ["img_in", "txt_in"]
    save_file(kohya_file(gen, bfl, [(k, kohya_target(k)) for k in part]), folder / "kohya_part.safetensors")
    # kohya_full: every module, for the merged-tensor check (W1).
    full = part + [f"single_blocks_{i}_linear1" for i in range(2)] + [
        "final_layer_linear", "final_layer_adaLN_modulation_1"] + [
        f"{e}_in_{k}_layer" for e in ("time", "vector", "guidance") for k in ("in", "out")]
    full_sd = kohya_file(gen, bfl, [(k, kohya_target(k)) for k in full])
    save_file(full_sd, folder / "kohya_full.safetensors")
    # xlabs: attention only, m = 1.
    h = HIDDEN
    xl = {}
    for nm, (d_in, d_out) in {"double_blocks.0.processor.qkv_lora1": (h, 3 * h),
                              "double_blocks.0.processor.qkv_lora2": (h, 3 * h),
                              "double_blocks.0.processor.proj_lora1": (h, h),
                              "double_blocks.0.processor.proj_lora2": (h, h),
                              "single_blocks.0.processor.qkv_lora": (h, 3 * h),
                              "single_blocks.1.processor.proj_lora": (h + 4 * h, h)}.items():
        a, b = lora_pair(gen, d_in, d_out)
        xl[f"{nm}.down.weight"] = a
        xl[f"{nm}.up.weight"] = b
    save_file(xl, folder / "xlabs.safetensors")

    prompt = "an orc warrior with a torch at dusk"
    cases["F0"] = run_case(pipe, "F0", prompt, 64, 48, 7, 4, 3.5, 512, rec)

    def diffusers_form(file):
        """The file as diffusers loads it. diffusers 0.42.1's kohya converter
        leaves the top-level modules (x_embedder, context_embedder, …)
        without their `transformer.` prefix, so the pipeline drops them
        silently; conditioning.md §4 says the fixture must not copy that:
        the converter's own output is loaded with the prefix restored."""
        if not file.startswith("kohya"):
            return str(folder / file)
        from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers
        from safetensors.torch import load_file
        conv = _convert_kohya_flux_lora_to_diffusers(load_file(folder / file))
        return {(k if k.startswith("transformer.") else f"transformer.{k}"): v for k, v in conv.items()}

    def with_loras(p, name, loras, run):
        for i, (file, _scale) in enumerate(loras):
            p.load_lora_weights(diffusers_form(file), adapter_name=f"a{i}")
        p.set_adapters([f"a{i}" for i in range(len(loras))], adapter_weights=[s for _f, s in loras])
        case = run()
        p.unload_lora_weights()
        case["loras"] = [{"file": f"lora/{f}", "scale": s} for f, s in loras]
        base = rec["F0.image"].numpy().astype(int) if name != "D3" else rec["D1.image"].numpy().astype(int)
        moved = np.abs(rec[f"{name}.image"].numpy().astype(int) - base).max()
        assert moved > 8, (name, moved)
        case["moved_levels"] = int(moved)
        return case

    for name, loras in (("L1", [("peft_all.safetensors", 0.8)]), ("L2", [("kohya_part.safetensors", 1.0)]),
                        ("L3", [("xlabs.safetensors", 0.7)]),
                        ("L4", [("peft_all.safetensors", 0.8), ("xlabs.safetensors", 0.7)])):
        cases[name] = with_loras(pipe, name, loras, lambda n=name: run_case(pipe, n, prompt, 64, 48, 7, 4, 3.5, 512, rec))

    def depth_run():
        noise = torch.from_numpy(gaussian(7, 16 * 6 * 8)).reshape(1, 16, 6, 8)
        lat = []
        with torch.no_grad():
            image = control(prompt=prompt, control_image=depth_image(64, 48), height=48, width=64,
                            num_inference_steps=4, guidance_scale=10.0, latents=pack(noise), max_sequence_length=512,
                            output_type="pil",
                            callback_on_step_end=lambda _p, _i, _t, kw: lat.append(kw["latents"].clone()) or {},
                            callback_on_step_end_tensor_inputs=["latents"]).images[0]
        rec["D3.final"] = lat[-1][0].float().clone()
        rec["D3.image"] = torch.from_numpy(np.array(image).copy())
        return {"prompt": prompt, "width": 64, "height": 48, "seed": 7, "steps": 4, "guidance": 10.0,
                "depth": "depth_64x48.png"}

    cases["D3"] = with_loras(control, "D3", [("xlabs.safetensors", 0.7)], depth_run)

    # W1: kohya_full merged by numpy, W + s·(alpha/rank)·up·down, in f64.
    scale = 0.9
    merged = {}
    for k in full:
        target = kohya_target(k)
        down = full_sd[f"lora_unet_{k}.lora_down.weight"].double().numpy()
        up = full_sd[f"lora_unet_{k}.lora_up.weight"].double().numpy()
        alpha = full_sd.get(f"lora_unet_{k}.alpha")
        m = float(alpha) / RANK if alpha is not None else 1.0
        w = bfl[f"{target}.weight"].double().numpy() + scale * m * (up @ down)
        rec[f"W1.{target}"] = torch.from_numpy(w).float()
        merged[target] = True
    cases["W1"] = {"file": "lora/kohya_full.safetensors", "scale": scale, "targets": sorted(merged)}


def depth_img2img_and_fit(control, rec, cases):
    """D2: depth and an init image together (FluxControlImg2ImgPipeline,
    strength 0.6); R1: diffusers' crop-resize (Pillow's Lanczos) of a
    96×64 depth map onto 64×48 (down) and of the init image onto 80×80 (up)."""
    from diffusers import FluxControlImg2ImgPipeline
    import diffusers.pipelines.flux.pipeline_flux_control_img2img as ci2i_module
    from PIL import Image
    prompt = "an orc warrior with a torch at dusk"
    ci2i = FluxControlImg2ImgPipeline(**control.components)
    ci2i.set_progress_bar_config(disable=True)
    noise = torch.from_numpy(gaussian(7, 16 * 6 * 8)).reshape(1, 16, 6, 8)
    ci2i_module.randn_tensor = lambda shape, **kw: noise.reshape(shape)
    lat = []
    with torch.no_grad():
        image = ci2i(prompt=prompt, image=ref_image(64, 48), control_image=depth_image(64, 48), strength=0.6,
                     height=48, width=64, num_inference_steps=4, guidance_scale=10.0, max_sequence_length=512,
                     output_type="pil",
                     callback_on_step_end=lambda _p, _i, _t, kw: lat.append(kw["latents"].clone()) or {},
                     callback_on_step_end_tensor_inputs=["latents"]).images[0]
    rec["D2.final"] = lat[-1][0].float().clone()
    rec["D2.image"] = torch.from_numpy(np.array(image).copy())
    cases["D2"] = {"prompt": prompt, "width": 64, "height": 48, "seed": 7, "steps": 4, "guidance": 10.0,
                   "strength": 0.6, "steps_run": len(lat), "depth": "depth_64x48.png", "image": "ref_64x48.png"}
    depth_image(96, 64).convert("L").save(OUT / "depth_96x64.png")
    proc = ci2i.image_processor
    fits = []
    for name, src, (w, h) in (("R1.down", depth_image(96, 64), (64, 48)), ("R1.up", ref_image(64, 48), (80, 80))):
        out = proc._resize_and_crop(src.convert("RGB"), w, h)
        assert out.size == (w, h), out.size
        rec[name] = torch.from_numpy(np.array(out.convert("RGB")).copy())
        fits.append({"key": name, "width": w, "height": h})
    cases["R1"] = {"fits": [dict(f, source=s) for f, s in zip(fits, ("depth_96x64.png", "ref_64x48.png"))]}


if __name__ == "__main__":
    main()
