#!/usr/bin/env python3
"""Fixtures for the Z-Image backend, from the reference implementation.

Builds tiny, non-degenerate random Z-Image models with diffusers' and
transformers' own classes, writes them in every weight layout sqm reads
(diffusers repos, ComfyUI single files, GGUF), runs diffusers'
ZImagePipeline on them with sqm's seeded noise, and records the
intermediate tensors. CPU only, no network.

    python3 -m venv ~/venvs/sqm-reference
    ~/venvs/sqm-reference/bin/pip install torch==2.15.0 diffusers==0.42.1 \
        transformers==5.23.0 safetensors==0.8.0 gguf==0.19.0
    ~/venvs/sqm-reference/bin/python scripts/zimage_reference.py

Writes tests/fixtures/zimage/: tiny-turbo/, tiny-base/, tiny-single/,
tiny-gguf/, reference.safetensors and reference.json. CI never runs this;
`cargo test` compares sqm with the committed files (zimage.md §5).
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

import diffusers
import gguf
import safetensors
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline
from diffusers.models.transformers.transformer_z_image import ZImageTransformer2DModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_vae_checkpoint,
    convert_z_image_transformer_checkpoint_to_diffusers,
)
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "zimage"
PINS = {"diffusers": "0.42.1", "transformers": "5.23.0", "torch": "2.15.0", "safetensors": "0.8.0", "gguf": "0.19.0"}

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ---------------------------------------------------------------- noise (§3.2)
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def unit_open(self):
        return ((self.next() >> 11) + 1) / float(1 << 53)


def gaussian(seed, n):
    rng = SplitMix64(seed)
    out = []
    while len(out) < n:
        u1, u2 = rng.unit_open(), rng.unit_open()
        r = math.sqrt(-2.0 * math.log(u1))
        th = 2.0 * math.pi * u2
        out.append(np.float32(r * math.cos(th)))
        out.append(np.float32(r * math.sin(th)))
    return np.array(out[:n], dtype=np.float32)


# ---------------------------------------------------------------- tiny models
def tokenizer():
    """Byte-level BPE over the 256 bytes, no merges, plus three specials."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # GPT-2's byte→char table, in byte order.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, (chr(c) for c in cs)))
    vocab = {table[b]: b for b in range(256)}
    assert set(vocab) == set(alphabet)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    assert tok.token_to_id("<|im_end|>") == 258
    return tok


def reseed(module, gen):
    """Every parameter random: linear weights N(0, 1/fan_in), biases
    N(0, 0.1), norm weights U(0.5, 1.5), pad tokens and the rest N(0, 1)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name and p.ndim == 1 and leaf == "weight":
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif leaf == "bias":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif p.ndim >= 2 and "pad_token" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=gen))


def tiny_transformer(gen):
    m = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=96, n_layers=2, n_refiner_layers=1,
        n_heads=3, n_kv_heads=3, norm_eps=1e-5, qk_norm=True, cap_feat_dim=64, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 12, 12], axes_lens=[1536, 512, 512],
    )
    reseed(m, gen)
    return m.eval()


def tiny_text_encoder(gen):
    cfg = Qwen3Config(
        vocab_size=259, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
        torch_dtype="float32",
    )
    m = Qwen3ForCausalLM(cfg)
    reseed(m, gen)
    m.tie_weights()
    return m.eval()


def tiny_vae(gen):
    m = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[32, 32, 32, 32], layers_per_block=1,
        latent_channels=16, norm_num_groups=32, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
        use_quant_conv=False, use_post_quant_conv=False, force_upcast=True,
    )
    reseed(m, gen)
    return m.eval()


# ---------------------------------------------------------------- layouts
def save_sharded(sd, folder, stem, shards, dtype=None):
    """Shards as the hub repos have them, with the index file."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(sd)
    per = math.ceil(len(keys) / shards)
    weight_map = {}
    total = 0
    for i in range(shards):
        part = keys[i * per:(i + 1) * per]
        name = f"{stem}-{i + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {k: (sd[k].to(dtype) if dtype else sd[k]).contiguous() for k in part}
        save_file(tensors, folder / name)
        for k in part:
            weight_map[k] = name
            total += tensors[k].numel() * tensors[k].element_size()
    index = stem.replace("-", "_") if False else stem
    (folder / f"{stem}.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )


def comfy_transformer(sd):
    """§2.2's names: the inverse of diffusers' single-file conversion."""
    out = {}
    for k, v in sd.items():
        n = k.replace("all_final_layer.2-1.", "final_layer.").replace("all_x_embedder.2-1.", "x_embedder.")
        n = n.replace(".attention.to_out.0.", ".attention.out.")
        n = n.replace(".attention.norm_q.", ".attention.q_norm.").replace(".attention.norm_k.", ".attention.k_norm.")
        if ".attention.to_q.weight" in n:
            base = n.replace(".attention.to_q.weight", "")
            out[base + ".attention.qkv.weight"] = torch.cat(
                [sd[k], sd[k.replace("to_q", "to_k")], sd[k.replace("to_q", "to_v")]], dim=0
            )
            continue
        if ".attention.to_k.weight" in n or ".attention.to_v.weight" in n:
            continue
        out[n] = v
    # Check against diffusers' own converter.
    back = convert_z_image_transformer_checkpoint_to_diffusers({k: v.clone() for k, v in out.items()})
    assert set(back) == set(sd), set(back) ^ set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    return out


def bfl_vae(vae):
    """The Flux autoencoder's BFL names (ae.safetensors), checked by
    converting back with diffusers' converter."""
    sd = vae.state_dict()
    n_up = len(vae.config.block_out_channels)
    out = {}
    for k, v in sd.items():
        n = k
        for half in ("encoder", "decoder"):
            n = n.replace(f"{half}.conv_norm_out.", f"{half}.norm_out.")
            n = n.replace(f"{half}.mid_block.resnets.0.", f"{half}.mid.block_1.")
            n = n.replace(f"{half}.mid_block.resnets.1.", f"{half}.mid.block_2.")
            n = n.replace(f"{half}.mid_block.attentions.0.", f"{half}.mid.attn_1.")
        n = n.replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in n:
            n = n.replace(".group_norm.", ".norm.").replace(".to_q.", ".q.").replace(".to_k.", ".k.")
            n = n.replace(".to_v.", ".v.").replace(".to_out.0.", ".proj_out.")
            if v.ndim == 2:
                v = v[:, :, None, None]
        if n.startswith("encoder.down_blocks."):
            parts = n.split(".")
            i = parts[2]
            rest = ".".join(parts[3:])
            rest = rest.replace("resnets.", "block.").replace("downsamplers.0.conv", "downsample.conv")
            n = f"encoder.down.{i}.{rest}"
        if n.startswith("decoder.up_blocks."):
            parts = n.split(".")
            i = n_up - 1 - int(parts[2])
            rest = ".".join(parts[3:])
            rest = rest.replace("resnets.", "block.").replace("upsamplers.0.conv", "upsample.conv")
            n = f"decoder.up.{i}.{rest}"
        out[n] = v.contiguous()
    back = convert_ldm_vae_checkpoint({k: v.clone() for k, v in out.items()}, dict(vae.config))
    assert set(back) == set(sd), set(back) ^ set(sd)
    for k in sd:
        assert torch.equal(back[k].reshape(sd[k].shape), sd[k]), k
    return out


def write_diffusers(folder, transformer, text_encoder, vae, tok, shift, transformer_dtype):
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "scheduler").mkdir(parents=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000,
        "use_dynamic_shifting": False, "shift": shift,
    }, indent=1))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "ZImagePipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen3ForCausalLM"], "tokenizer": ["transformers", "Qwen2Tokenizer"],
        "transformer": ["diffusers", "ZImageTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
    }, indent=1))
    tdir = folder / "transformer"
    tdir.mkdir()
    cfg = dict(transformer.config)
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if not k.startswith("_")}
    cfg["_class_name"] = "ZImageTransformer2DModel"
    (tdir / "config.json").write_text(json.dumps(cfg, indent=1))
    save_sharded(transformer.state_dict(), tdir, "diffusion_pytorch_model", 3, transformer_dtype)
    edir = folder / "text_encoder"
    edir.mkdir()
    text_encoder.config.save_pretrained(edir)
    sd = {k: v for k, v in text_encoder.state_dict().items() if k != "lm_head.weight"}
    save_sharded(sd, edir, "model", 3)
    vdir = folder / "vae"
    vdir.mkdir()
    vae.save_config(vdir)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, vdir / "diffusion_pytorch_model.safetensors")
    kdir = folder / "tokenizer"
    kdir.mkdir()
    tok.save(str(kdir / "tokenizer.json"))
    (kdir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "model_max_length": 131072, "chat_template": CHAT_TEMPLATE,
    }, indent=1))


def write_single(folder, transformer, text_encoder, vae, tok):
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (folder / "split_files" / sub).mkdir(parents=True)
    sf = folder / "split_files"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in comfy_transformer(transformer.state_dict()).items()},
              sf / "diffusion_models" / "z_image_turbo_bf16.safetensors")
    # Without the `model.` prefix: sqm takes both spellings.
    sd = {k.removeprefix("model."): v.contiguous() for k, v in text_encoder.state_dict().items() if k != "lm_head.weight"}
    save_file(sd, sf / "text_encoders" / "qwen_3_4b.safetensors")
    save_file(bfl_vae(vae), sf / "vae" / "ae.safetensors")
    tok.save(str(folder / "tokenizer.json"))


def q8_or_f32(writer, name, t):
    a = t.detach().float().numpy()
    if a.ndim >= 2 and a.shape[-1] % 32 == 0:
        q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        writer.add_tensor(name, a)


def write_gguf(folder, transformer, text_encoder, vae, tok):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    w = gguf.GGUFWriter(str(folder / "z_image_turbo-Q8_0.gguf"), "z_image")
    for k, v in comfy_transformer(transformer.state_dict()).items():
        q8_or_f32(w, k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cfg = text_encoder.config
    w = gguf.GGUFWriter(str(folder / "Qwen3-4B-Q8_0.gguf"), "qwen3")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    names = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
        "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    }
    for k, v in text_encoder.state_dict().items():
        if k == "lm_head.weight":
            continue
        if k == "model.embed_tokens.weight":
            q8_or_f32(w, "token_embd.weight", v)
        elif k == "model.norm.weight":
            w.add_tensor("output_norm.weight", v.float().numpy())
        else:
            parts = k.split(".")
            i, rest = parts[2], ".".join(parts[3:-1])
            q8_or_f32(w, f"blk.{i}.{names[rest]}.{parts[-1]}", v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(bfl_vae(vae), folder / "ae.safetensors")
    tok.save(str(folder / "tokenizer.json"))


# ---------------------------------------------------------------- runs
def run_case(pipe, name, prompt, negative, width, height, seed, steps, guidance, rec):
    h, w = height // 8, width // 8
    noise = torch.from_numpy(gaussian(seed, 16 * h * w)).reshape(1, 16, h, w)
    rec[f"{name}.noise"] = noise[0]
    captured = {}

    def hook(_m, _args, out):
        if "v0" not in captured:
            captured["v0"] = out[0][0].detach().clone()

    handle = pipe.transformer.register_forward_hook(hook)
    steps_seen = []

    def on_step(_pipe, i, _t, kw):
        steps_seen.append(kw["latents"].detach().clone())
        return {}

    ids, mask = encode_ids(pipe, prompt)
    with torch.no_grad():
        pe, ne = pipe.encode_prompt(prompt, device="cpu", do_classifier_free_guidance=guidance > 0,
                                    negative_prompt=negative if guidance > 0 else None)
        image = pipe(prompt=prompt, negative_prompt=negative if guidance > 0 else None, height=height, width=width,
                     num_inference_steps=steps, guidance_scale=guidance, latents=noise.clone(),
                     callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"],
                     output_type="pil").images[0]
    handle.remove()
    pipe.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps).astype(np.float32).tolist()
                                 if False else torch.linspace(1.0, 1 / steps, steps).tolist(), device="cpu")
    rec[f"{name}.sigmas"] = pipe.scheduler.sigmas.float()
    rec[f"{name}.ids"] = ids[mask].to(torch.int64)
    rec[f"{name}.E"] = pe[0].float()
    if guidance > 0:
        nids, nmask = encode_ids(pipe, negative)
        rec[f"{name}.neg_ids"] = nids[nmask].to(torch.int64)
        rec[f"{name}.neg_E"] = ne[0].float()
    rec[f"{name}.v0"] = captured["v0"][:, 0].float()
    for i, l in enumerate(steps_seen):
        rec[f"{name}.latents.{i}"] = l[0].float()
    rec[f"{name}.final"] = steps_seen[-1][0].float().clone()
    img = np.array(image)
    rec[f"{name}.image"] = torch.from_numpy(img.copy())
    for k in (f"{name}.E", f"{name}.v0", f"{name}.final"):
        s = rec[k].std().item()
        assert 0.05 <= s <= 20, (k, s)
    levels = int(img.max()) - int(img.min())
    assert levels > 32, (name, levels)
    return {"prompt": prompt, "negative": negative, "width": width, "height": height, "seed": seed,
            "steps": steps, "guidance": guidance, "tokens": int(mask.sum()), "image_levels": levels}


def encode_ids(pipe, prompt):
    text = pipe.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                              add_generation_prompt=True, enable_thinking=True)
    t = pipe.tokenizer([text], padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    return t.input_ids[0], t.attention_mask[0].bool()


def main():
    for mod, want in (("diffusers", diffusers), ("transformers", transformers), ("torch", torch),
                      ("safetensors", safetensors), ("gguf", gguf)):
        have = getattr(want, "__version__", None) or __import__("importlib.metadata").metadata.version(mod)
        assert have.split("+")[0] == PINS[mod], (mod, have)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20261130)
    transformer = tiny_transformer(gen)
    text_encoder = tiny_text_encoder(gen)
    vae = tiny_vae(gen)
    tok = tokenizer()
    OUT.mkdir(parents=True, exist_ok=True)
    write_diffusers(OUT / "tiny-turbo", transformer, text_encoder, vae, tok, 3.0, None)
    # The base repo ships bf16 weights: round them once, and use the
    # rounded values everywhere the base model runs.
    base_t = tiny_transformer(torch.Generator().manual_seed(20261201))
    with torch.no_grad():
        for p in base_t.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    write_diffusers(OUT / "tiny-base", base_t, text_encoder, vae, tok, 6.0, torch.bfloat16)
    # The single file and GGUF carry the Turbo transformer in bf16 / Q8_0.
    write_single(OUT / "tiny-single", transformer, text_encoder, vae, tok)
    write_gguf(OUT / "tiny-gguf", transformer, text_encoder, vae, tok)

    rec = {}
    cases = {}
    turbo = ZImagePipeline.from_pretrained(OUT / "tiny-turbo", torch_dtype=torch.float32, local_files_only=True)
    base = ZImagePipeline.from_pretrained(OUT / "tiny-base", torch_dtype=torch.float32, local_files_only=True)
    for p in (turbo, base):
        p.set_progress_bar_config(disable=True)
    cases["T1"] = run_case(turbo, "T1", "a red fox", "", 80, 48, 7, 3, 0.0, rec)
    cases["T1"]["layout"] = "tiny-turbo"
    cases["B1"] = run_case(base, "B1", "a red fox", "blurry", 64, 64, 42, 3, 4.0, rec)
    cases["B1"]["layout"] = "tiny-base"
    cases["B2"] = run_case(base, "B2", "a red fox", "", 64, 64, 42, 3, 4.0, rec)
    cases["B2"]["layout"] = "tiny-base"
    # The single file's transformer is bf16: its own reference run.
    single_t = tiny_transformer(torch.Generator().manual_seed(0))
    single_t.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in transformer.state_dict().items()})
    turbo_bf = ZImagePipeline(scheduler=turbo.scheduler, vae=turbo.vae, text_encoder=turbo.text_encoder,
                              tokenizer=turbo.tokenizer, transformer=single_t)
    turbo_bf.set_progress_bar_config(disable=True)
    cases["S1"] = run_case(turbo_bf, "S1", "a red fox", "", 80, 48, 7, 3, 0.0, rec)
    cases["S1"]["layout"] = "tiny-single"
    # I1: img2img on Turbo (ZImageImg2ImgPipeline), the encoder's mean and sqm's noise.
    from flux_reference import deterministic_vae, ref_image
    from diffusers import ZImageImg2ImgPipeline
    import diffusers.pipelines.z_image.pipeline_z_image_img2img as i2i_module
    deterministic_vae()
    i2i = ZImageImg2ImgPipeline(**turbo.components)
    i2i.set_progress_bar_config(disable=True)
    noise = torch.from_numpy(gaussian(7, 16 * 6 * 8)).reshape(1, 16, 6, 8)
    i2i_module.randn_tensor = lambda shape, **kw: noise.reshape(shape)
    lat = []
    with torch.no_grad():
        image = i2i(prompt="a red fox", image=ref_image(64, 48), strength=0.6, height=48, width=64,
                    num_inference_steps=3, guidance_scale=0.0, output_type="pil",
                    callback_on_step_end=lambda _p, _i, _t, kw: lat.append(kw["latents"].clone()) or {},
                    callback_on_step_end_tensor_inputs=["latents"]).images[0]
    rec["I1.final"] = lat[-1][0].float().clone()
    rec["I1.image"] = torch.from_numpy(np.array(image).copy())
    ref_image(64, 48).save(OUT / "ref_64x48.png")
    cases["I1"] = {"prompt": "a red fox", "negative": "", "width": 64, "height": 48, "seed": 7, "steps": 3,
                   "guidance": 0.0, "strength": 0.6, "steps_run": len(lat), "image": "ref_64x48.png",
                   "layout": "tiny-turbo"}
    # L1: 600 words, ids and embeddings only.
    words = ("ash falls on the glass road under a slate sky while the forge towns keep their fires "
             "lit against the dark and trade heat like coin").split()
    long = " ".join(words[i % len(words)] for i in range(600))
    ids, mask = encode_ids(turbo, long)
    with torch.no_grad():
        pe, _ = turbo.encode_prompt(long, device="cpu", do_classifier_free_guidance=False)
    rec["L1.ids"] = ids[mask].to(torch.int64)
    rec["L1.E"] = pe[0].float()
    cases["L1"] = {"prompt": long, "tokens": int(mask.sum()), "layout": "tiny-turbo"}
    lora_cases(turbo, turbo_bf, transformer, rec, cases)
    save_file({k: v.contiguous() for k, v in rec.items()}, OUT / "reference.safetensors")
    (OUT / "reference.json").write_text(json.dumps({
        "versions": PINS, "note": "written by scripts/zimage_reference.py; do not edit", "cases": cases,
    }, indent=1) + "\n")
    print("wrote", OUT, {k: v.get("tokens") for k, v in cases.items()})


def lora_cases(turbo, turbo_bf, transformer, rec, cases):
    """Z-Image LoRA (conditioning.md §1.4): a PEFT file on every linear
    module (diffusers names under `diffusion_model.`, `.alpha` 1) and a kohya file (sd-scripts names,
    alphas 1, 4 or none; ComfyUI's `attention_out` for one block), loaded by
    diffusers' ZImageLoraLoaderMixin; T1's settings, and S1's on the bf16
    single-file weights."""
    import peft
    assert peft.__version__ == "0.21.2", peft.__version__
    gen = torch.Generator().manual_seed(4343)
    folder = OUT / "lora"
    folder.mkdir(exist_ok=True)
    linears = {n: m for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}

    def pair(m):
        a = torch.randn(2, m.in_features, generator=gen) / math.sqrt(m.in_features)
        return a.contiguous(), (torch.randn(m.out_features, 2, generator=gen) * 0.4).contiguous()

    peft_sd = {}
    for n, m in sorted(linears.items()):
        a, b = pair(m)
        peft_sd[f"diffusion_model.{n}.lora_A.weight"] = a
        peft_sd[f"diffusion_model.{n}.lora_B.weight"] = b
        peft_sd[f"diffusion_model.{n}.alpha"] = torch.tensor(1.0)
    save_file(peft_sd, folder / "peft_all.safetensors")
    kohya_sd = {}
    picked = [n for n in sorted(linears) if n.startswith(("layers.", "noise_refiner.", "context_refiner.", "t_embedder."))]
    for j, n in enumerate(picked):
        flat = n.replace(".", "_")
        if j == 0 and n.endswith("attention.to_out.0"):
            flat = flat.replace("attention_to_out_0", "attention_out")
        a, b = pair(linears[n])
        kohya_sd[f"lora_unet_{flat}.lora_down.weight"] = a
        kohya_sd[f"lora_unet_{flat}.lora_up.weight"] = b
        if j % 3 != 2:
            kohya_sd[f"lora_unet_{flat}.alpha"] = torch.tensor(1.0 if j % 3 == 0 else 4.0)
    outs = [k for k in kohya_sd if "attention_to_out_0" in k and k.endswith("lora_down.weight")]
    first = outs[0].split(".")[0]
    for suffix in (".lora_down.weight", ".lora_up.weight", ".alpha"):
        if first + suffix in kohya_sd:
            kohya_sd[first.replace("attention_to_out_0", "attention_out") + suffix] = kohya_sd.pop(first + suffix)
    save_file(kohya_sd, folder / "kohya.safetensors")

    def run(pipe, name, file, scale):
        pipe.load_lora_weights(str(folder / file), adapter_name="a")
        pipe.set_adapters(["a"], adapter_weights=[scale])
        case = run_case(pipe, name, "a red fox", "", 80, 48, 7, 3, 0.0, rec)
        pipe.unload_lora_weights()
        moved = np.abs(rec[f"{name}.image"].numpy().astype(int) - rec["T1.image"].numpy().astype(int)).max()
        assert moved > 8, (name, moved)
        case.update({"loras": [{"file": f"lora/{file}", "scale": scale}], "moved_levels": int(moved)})
        return case

    cases["ZL1"] = run(turbo, "ZL1", "peft_all.safetensors", 0.8)
    cases["ZL1"]["layout"] = "tiny-turbo"
    cases["ZL2"] = run(turbo, "ZL2", "kohya.safetensors", 1.0)
    cases["ZL2"]["layout"] = "tiny-turbo"
    cases["ZL3"] = run(turbo_bf, "ZL3", "peft_all.safetensors", 0.8)
    cases["ZL3"]["layout"] = "tiny-single"


if __name__ == "__main__":
    main()
