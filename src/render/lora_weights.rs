//! LoRA files as low-rank deltas on a model's tensors (conditioning.md
//! §1.4): format detection in diffusers' order, the key mapping onto the
//! names sqm's models load (BFL's for Flux, diffusers' for Z-Image), the
//! scale each module's alpha gives, and the checks against the model's
//! own header before anything is merged.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};

/// Which rows of the target a delta adds into; H is the target's input
/// width (the model's hidden size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rows {
    All,
    /// q, k or v: rows [kH, (k+1)H).
    Qkv(usize),
    /// q, k and v together: rows [0, 3H).
    Attention,
    /// A single block's MLP input: rows [3H, end).
    Mlp,
}

/// One module's low-rank update: W[rows] += s · m · up · down.
#[derive(Debug)]
pub(crate) struct Delta {
    /// The module's name in the model (`double_blocks.0.img_attn.qkv`).
    pub target: String,
    pub rows: Rows,
    /// A: [r, in]; B: [rows, r]; f32 on the CPU.
    pub down: Tensor,
    pub up: Tensor,
    /// B's bias (PEFT `lora_B.bias`), added to the target's bias.
    pub bias: Option<Tensor>,
    /// alpha / rank.
    pub m: f64,
    /// The halves of the rows swap (diffusers' `norm_out` puts scale first).
    pub swap_halves: bool,
}

/// A parsed LoRA file.
#[derive(Debug)]
pub(crate) struct Adapter {
    pub deltas: Vec<Delta>,
    /// Keys skipped as diffusers skips them (text encoders, norm diffs).
    pub skipped: usize,
}

impl Adapter {
    fn bytes(&self) -> usize {
        self.deltas.iter().map(|d| (d.down.elem_count() + d.up.elem_count()) * 4).sum()
    }
}

/// Which model family the keys are mapped for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Flux,
    ZImage,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Flux => "Flux",
            Family::ZImage => "Z-Image",
        }
    }
}

/// Reads and parses `path` (a LoRA named `name` with hash `sha256`),
/// cached by hash (2 GiB of factors at most, least recently used first).
pub(crate) fn load(path: &Path, name: &str, sha256: &str, family: Family) -> Result<Arc<Adapter>, String> {
    type Cache = Mutex<Vec<(String, Family, Arc<Adapter>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    const CAP: usize = 2 << 30;
    let cache = CACHE.get_or_init(Default::default);
    {
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = c.iter().position(|(h, f, _)| h == sha256 && *f == family) {
            let hit = c.remove(i);
            let a = hit.2.clone();
            c.push(hit);
            return Ok(a);
        }
    }
    let adapter = Arc::new(parse(path, family).map_err(|e| format!("LoRA '{name}': {e}"))?);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    c.push((sha256.to_owned(), family, adapter.clone()));
    while c.len() > 1 && c.iter().map(|(_, _, a)| a.bytes()).sum::<usize>() > CAP {
        c.remove(0);
    }
    Ok(adapter)
}

/// Parses a LoRA file for `family`.
pub(crate) fn parse(path: &Path, family: Family) -> Result<Adapter, String> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|_| "not a readable safetensors file")?;
    let metadata = read_metadata(path);
    let mut keys: Vec<String> = tensors.keys().cloned().collect();
    keys.sort();
    if keys.iter().any(|k| k.contains("dora_scale")) {
        return Err("DoRA LoRAs (dora_scale) are not supported; use a plain LoRA".into());
    }
    let get = |k: &str| tensors.get(k).cloned();
    match family {
        Family::Flux => {
            if keys.iter().any(|k| k.ends_with(".lora_down.weight")) {
                kohya(&keys, &get, family)
            } else if keys.iter().any(|k| k.contains("processor")) {
                xlabs(&keys, &get)
            } else if keys.iter().any(|k| k.contains("query_norm.scale")) {
                Err("a BFL control LoRA (it widens img_in and retrains norms), not a style LoRA".into())
            } else if keys.iter().any(|k| k.contains(".lora_A.") || k.contains(".lora_B.")) {
                peft(&keys, &get, metadata.as_ref(), family)
            } else {
                Err("unrecognized LoRA format".into())
            }
        }
        Family::ZImage => {
            if keys.iter().any(|k| k.ends_with(".lora_down.weight")) {
                kohya(&keys, &get, family)
            } else if keys.iter().any(|k| k.contains(".lora_A.") || k.contains(".lora_B.")) {
                peft(&keys, &get, metadata.as_ref(), family)
            } else {
                Err("unrecognized LoRA format".into())
            }
        }
    }
}

/// The header's `lora_adapter_metadata` (PEFT's config as JSON text).
fn read_metadata(path: &Path) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).ok()?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let text = v.get("__metadata__")?.get("lora_adapter_metadata")?.as_str()?;
    serde_json::from_str(text).ok()
}

/// Keys of text encoders and norm diffs, skipped with one warning.
fn skippable(k: &str) -> bool {
    let k = k.strip_prefix("transformer.").unwrap_or(k);
    k.starts_with("lora_te")
        || k.starts_with("text_encoder")
        || k.starts_with("text_encoders.")
        || k.ends_with(".diff_b")
        || k.ends_with(".diff")
}

fn unmatched_error(stems: &[String], family: Family) -> String {
    let first: Vec<&str> = stems.iter().take(5).map(String::as_str).collect();
    let more = if stems.len() > 5 { ", …" } else { "" };
    format!("{} keys match no {} module (first: {}{more})", stems.len(), family.name(), first.join(", "))
}

fn f32(t: Tensor) -> Result<Tensor, String> {
    t.to_dtype(DType::F32).map_err(|e| e.to_string())
}

fn scalar(t: &Tensor) -> Option<f64> {
    t.to_dtype(DType::F64).ok()?.flatten_all().ok()?.to_vec1::<f64>().ok()?.first().copied()
}

/// kohya / sd-scripts names (`lora_unet_…`), and ComfyUI's
/// (`diffusion_model.…` with `.lora_down`): the underscore-joined module
/// name decoded for `family` from a fixed list (underscores inside a
/// module's own name are never guessed); m = alpha/rank (1 without alpha).
fn kohya(keys: &[String], get: &dyn Fn(&str) -> Option<Tensor>, family: Family) -> Result<Adapter, String> {
    let mut deltas = Vec::new();
    let (mut skipped, mut unknown) = (0, Vec::new());
    for k in keys {
        let Some(stem) = k.strip_suffix(".lora_down.weight") else {
            let known = k.ends_with(".lora_up.weight") || k.ends_with(".alpha");
            if !known {
                if skippable(k) {
                    skipped += 1;
                } else {
                    unknown.push(k.clone());
                }
            }
            continue;
        };
        if skippable(stem) {
            skipped += 1;
            continue;
        }
        let flat = stem
            .strip_prefix("lora_unet_")
            .map(str::to_owned)
            .or_else(|| stem.strip_prefix("diffusion_model.").map(|s| s.replace('.', "_")));
        let target = flat.as_deref().and_then(|f| match family {
            Family::Flux => kohya_flux_name(f),
            Family::ZImage => zimage_name(f),
        });
        let Some(target) = target else {
            unknown.push(stem.to_owned());
            continue;
        };
        let down = f32(get(k).expect("listed"))?;
        let up = f32(get(&format!("{stem}.lora_up.weight")).ok_or_else(|| format!("{stem}: lora_up.weight missing"))?)?;
        let rank = down.dim(0).map_err(|e| e.to_string())?;
        let m = get(&format!("{stem}.alpha")).and_then(|a| scalar(&a)).map_or(1.0, |a| a / rank as f64);
        deltas.push(Delta { target, rows: Rows::All, down, up, bias: None, m, swap_halves: false });
    }
    finish(deltas, skipped, unknown, family)
}

fn finish(deltas: Vec<Delta>, skipped: usize, mut unknown: Vec<String>, family: Family) -> Result<Adapter, String> {
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        return Err(unmatched_error(&unknown, family));
    }
    if deltas.is_empty() {
        return Err(format!("no {} module in the file", family.name()));
    }
    Ok(Adapter { deltas, skipped })
}

/// A kohya module name (after `lora_unet_`) as BFL's, from the fixed list.
fn kohya_flux_name(n: &str) -> Option<String> {
    let fixed = [
        ("img_in", "img_in"),
        ("txt_in", "txt_in"),
        ("time_in_in_layer", "time_in.in_layer"),
        ("time_in_out_layer", "time_in.out_layer"),
        ("vector_in_in_layer", "vector_in.in_layer"),
        ("vector_in_out_layer", "vector_in.out_layer"),
        ("guidance_in_in_layer", "guidance_in.in_layer"),
        ("guidance_in_out_layer", "guidance_in.out_layer"),
        ("final_layer_linear", "final_layer.linear"),
        ("final_layer_adaLN_modulation_1", "final_layer.adaLN_modulation.1"),
    ];
    if let Some((_, t)) = fixed.iter().find(|(k, _)| *k == n) {
        return Some((*t).to_owned());
    }
    let block = |rest: &str, prefix: &str| -> Option<(usize, String)> {
        let rest = rest.strip_prefix(prefix)?;
        let (i, tail) = rest.split_once('_')?;
        Some((i.parse().ok()?, tail.to_owned()))
    };
    if let Some((i, tail)) = block(n, "double_blocks_") {
        for side in ["img", "txt"] {
            for (k, t) in [
                ("attn_qkv", "attn.qkv"),
                ("attn_proj", "attn.proj"),
                ("mlp_0", "mlp.0"),
                ("mlp_2", "mlp.2"),
                ("mod_lin", "mod.lin"),
            ] {
                if tail == format!("{side}_{k}") {
                    return Some(format!("double_blocks.{i}.{side}_{t}"));
                }
            }
        }
        return None;
    }
    if let Some((i, tail)) = block(n, "single_blocks_") {
        let t = match tail.as_str() {
            "linear1" => "linear1",
            "linear2" => "linear2",
            "modulation_lin" => "modulation.lin",
            _ => return None,
        };
        return Some(format!("single_blocks.{i}.{t}"));
    }
    None
}

/// XLabs (`…processor.qkv_lora1.down.weight`), m = 1.
fn xlabs(keys: &[String], get: &dyn Fn(&str) -> Option<Tensor>) -> Result<Adapter, String> {
    let mut deltas = Vec::new();
    let (mut skipped, mut unknown) = (0, Vec::new());
    for k in keys {
        let key = k.strip_prefix("diffusion_model.").unwrap_or(k);
        let Some(stem) = key.strip_suffix(".down.weight") else {
            if !key.ends_with(".up.weight") {
                if skippable(key) {
                    skipped += 1;
                } else {
                    unknown.push(k.clone());
                }
            }
            continue;
        };
        let target = stem.split_once(".processor.").and_then(|(block, lora)| {
            let (kind, i) = block.split_once('.')?;
            let i: usize = i.parse().ok()?;
            match (kind, lora) {
                ("double_blocks", "qkv_lora1") => Some((format!("double_blocks.{i}.img_attn.qkv"), Rows::All)),
                ("double_blocks", "qkv_lora2") => Some((format!("double_blocks.{i}.txt_attn.qkv"), Rows::All)),
                ("double_blocks", "proj_lora1") => Some((format!("double_blocks.{i}.img_attn.proj"), Rows::All)),
                ("double_blocks", "proj_lora2") => Some((format!("double_blocks.{i}.txt_attn.proj"), Rows::All)),
                ("single_blocks", "qkv_lora") => Some((format!("single_blocks.{i}.linear1"), Rows::Attention)),
                ("single_blocks", "proj_lora") => Some((format!("single_blocks.{i}.linear2"), Rows::All)),
                _ => None,
            }
        });
        let Some((target, rows)) = target else {
            unknown.push(k.clone());
            continue;
        };
        let prefix = &k[..k.len() - ".down.weight".len()];
        let down = f32(get(k).expect("listed"))?;
        let up = f32(get(&format!("{prefix}.up.weight")).ok_or_else(|| format!("{stem}: up.weight missing"))?)?;
        deltas.push(Delta { target, rows, down, up, bias: None, m: 1.0, swap_halves: false });
    }
    finish(deltas, skipped, unknown, Family::Flux)
}

/// diffusers/PEFT names (optionally under `transformer.`), or PEFT
/// factors on BFL names (under `diffusion_model.`).
fn peft(
    keys: &[String],
    get: &dyn Fn(&str) -> Option<Tensor>,
    metadata: Option<&serde_json::Value>,
    family: Family,
) -> Result<Adapter, String> {
    // Modules by their name in the file (prefix stripped) → full key stem.
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    let (mut skipped, mut unknown) = (0, Vec::new());
    for k in keys {
        let stem =
            [".lora_A.weight", ".lora_B.weight", ".lora_B.bias", ".alpha"].iter().find_map(|s| k.strip_suffix(s));
        match stem {
            _ if skippable(k) => skipped += 1,
            Some(stem) => {
                let name =
                    stem.strip_prefix("transformer.").or_else(|| stem.strip_prefix("diffusion_model.")).unwrap_or(stem);
                modules.insert(name.to_owned(), stem.to_owned());
            }
            None => unknown.push(k.clone()),
        }
    }
    // Alphas: the module's own; modules without one take the file's most
    // frequent (ties: the smallest), as diffusers does.
    let alphas: HashMap<&str, f64> =
        modules.iter().filter_map(|(n, stem)| Some((n.as_str(), scalar(&get(&format!("{stem}.alpha"))?)?))).collect();
    let common = {
        let mut counts: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
        for a in alphas.values() {
            counts.entry(a.to_bits()).or_insert((0, *a)).0 += 1;
        }
        counts.values().copied().max_by(|x, y| x.0.cmp(&y.0).then(y.1.total_cmp(&x.1))).map(|(_, a)| a)
    };
    let mut deltas = Vec::new();
    for (name, stem) in &modules {
        let Some(a) = get(&format!("{stem}.lora_A.weight")) else {
            if get(&format!("{stem}.lora_B.weight")).is_some() {
                return Err(format!("{name}: lora_A.weight missing"));
            }
            continue;
        };
        let down = f32(a)?;
        let up = f32(get(&format!("{stem}.lora_B.weight")).ok_or_else(|| format!("{name}: lora_B.weight missing"))?)?;
        let bias = get(&format!("{stem}.lora_B.bias")).map(f32).transpose()?;
        let rank = down.dim(0).map_err(|e| e.to_string())?;
        let alpha = alphas.get(name.as_str()).copied().or(common).or_else(|| metadata_alpha(metadata, name));
        let m = alpha.map_or(1.0, |a| a / rank as f64);
        let mapped = match family {
            Family::Flux => peft_flux_name(name),
            Family::ZImage => Some((name.clone(), Rows::All, false)),
        };
        let Some((target, rows, swap_halves)) = mapped else {
            unknown.push(name.clone());
            continue;
        };
        deltas.push(Delta { target, rows, down, up, bias, m, swap_halves });
    }
    finish(deltas, skipped, unknown, family)
}

/// PEFT's adapter config: an `alpha_pattern` entry matching the module
/// (whole name or a `.`-suffix), else `lora_alpha`.
fn metadata_alpha(metadata: Option<&serde_json::Value>, module: &str) -> Option<f64> {
    let m = metadata?;
    if let Some(patterns) = m.get("alpha_pattern").and_then(|p| p.as_object()) {
        for (pattern, a) in patterns {
            if module == pattern || module.ends_with(&format!(".{pattern}")) {
                return a.as_f64();
            }
        }
    }
    m.get("lora_alpha").and_then(|a| a.as_f64())
}

/// A diffusers module name as BFL's (with the rows it covers), or a BFL
/// name as itself.
fn peft_flux_name(n: &str) -> Option<(String, Rows, bool)> {
    let whole = |t: String| Some((t, Rows::All, false));
    if let Some(rest) = n.strip_prefix("transformer_blocks.") {
        let (i, tail) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let d = |t: &str| format!("double_blocks.{i}.{t}");
        return match tail {
            "attn.to_q" => Some((d("img_attn.qkv"), Rows::Qkv(0), false)),
            "attn.to_k" => Some((d("img_attn.qkv"), Rows::Qkv(1), false)),
            "attn.to_v" => Some((d("img_attn.qkv"), Rows::Qkv(2), false)),
            "attn.add_q_proj" => Some((d("txt_attn.qkv"), Rows::Qkv(0), false)),
            "attn.add_k_proj" => Some((d("txt_attn.qkv"), Rows::Qkv(1), false)),
            "attn.add_v_proj" => Some((d("txt_attn.qkv"), Rows::Qkv(2), false)),
            "attn.to_out.0" => whole(d("img_attn.proj")),
            "attn.to_add_out" => whole(d("txt_attn.proj")),
            "ff.net.0.proj" => whole(d("img_mlp.0")),
            "ff.net.2" => whole(d("img_mlp.2")),
            "ff_context.net.0.proj" => whole(d("txt_mlp.0")),
            "ff_context.net.2" => whole(d("txt_mlp.2")),
            "norm1.linear" => whole(d("img_mod.lin")),
            "norm1_context.linear" => whole(d("txt_mod.lin")),
            _ => None,
        };
    }
    if let Some(rest) = n.strip_prefix("single_transformer_blocks.") {
        let (i, tail) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let s = |t: &str| format!("single_blocks.{i}.{t}");
        return match tail {
            "attn.to_q" => Some((s("linear1"), Rows::Qkv(0), false)),
            "attn.to_k" => Some((s("linear1"), Rows::Qkv(1), false)),
            "attn.to_v" => Some((s("linear1"), Rows::Qkv(2), false)),
            "proj_mlp" => Some((s("linear1"), Rows::Mlp, false)),
            "proj_out" => whole(s("linear2")),
            "norm.linear" => whole(s("modulation.lin")),
            _ => None,
        };
    }
    let top = match n {
        "x_embedder" => "img_in",
        "context_embedder" => "txt_in",
        "time_text_embed.timestep_embedder.linear_1" => "time_in.in_layer",
        "time_text_embed.timestep_embedder.linear_2" => "time_in.out_layer",
        "time_text_embed.text_embedder.linear_1" => "vector_in.in_layer",
        "time_text_embed.text_embedder.linear_2" => "vector_in.out_layer",
        "time_text_embed.guidance_embedder.linear_1" => "guidance_in.in_layer",
        "time_text_embed.guidance_embedder.linear_2" => "guidance_in.out_layer",
        "proj_out" => "final_layer.linear",
        "norm_out.linear" => return Some(("final_layer.adaLN_modulation.1".into(), Rows::All, true)),
        _ => "",
    };
    if !top.is_empty() {
        return whole(top.into());
    }
    // PEFT factors on BFL's own names.
    let bfl = n.starts_with("double_blocks.")
        || n.starts_with("single_blocks.")
        || ["img_in", "txt_in", "final_layer.linear", "final_layer.adaLN_modulation.1"].contains(&n)
        || ["time_in.", "vector_in.", "guidance_in."].iter().any(|p| n.starts_with(p));
    bfl.then(|| (n.to_owned(), Rows::All, false))
}

/// An underscore-joined Z-Image module name as diffusers names it.
fn zimage_name(flat: &str) -> Option<String> {
    // Multi-word names that keep their underscores, longest first.
    const WORDS: [&str; 12] = [
        "noise_refiner",
        "context_refiner",
        "attention_norm1",
        "attention_norm2",
        "adaLN_modulation",
        "all_x_embedder",
        "all_final_layer",
        "t_embedder",
        "cap_embedder",
        "feed_forward",
        "to_out",
        "ffn_norm1",
    ];
    let mut out: Vec<String> = Vec::new();
    let mut rest = flat;
    while !rest.is_empty() {
        let word = WORDS
            .iter()
            .find(|w| rest.starts_with(*w) && (rest.len() == w.len() || rest.as_bytes()[w.len()] == b'_'))
            .map(|w| w.to_string())
            .or_else(|| {
                let end = rest.find('_').unwrap_or(rest.len());
                let w = &rest[..end];
                // `to_q`, `to_k`, `to_v` keep their underscore.
                if w == "to" {
                    let next = rest[end..].trim_start_matches('_');
                    let n_end = next.find('_').unwrap_or(next.len());
                    return Some(format!("to_{}", &next[..n_end]));
                }
                Some(w.to_owned())
            })?;
        rest = rest[word.len()..].trim_start_matches('_');
        out.push(word);
    }
    let name = out.join(".");
    // ComfyUI's trainers name the output projection `attention.out`.
    let name = match name.strip_suffix(".attention.out") {
        Some(block) => format!("{block}.attention.to_out.0"),
        None => name,
    };
    // `all_x_embedder.2-1` and `all_final_layer.2-1` carry a patch-size key.
    Some(name.replace("all_x_embedder.2.1", "all_x_embedder.2-1").replace("all_final_layer.2.1", "all_final_layer.2-1"))
}

/// `store` with `loras` merged as it loads (parsed for `family`, cached
/// by hash), after checking every delta against the store's own shapes,
/// so a bad LoRA never costs a loaded model. `rename` as for [`plan`].
pub(crate) fn merge_into(
    store: super::weights::Store,
    loras: &[crate::render::lora::Lora],
    family: Family,
    rename: &dyn Fn(&str, Rows) -> (String, Rows),
) -> Result<super::weights::Store, String> {
    if loras.is_empty() {
        return Ok(store);
    }
    let set = loras
        .iter()
        .map(|l| Ok((l.name.clone(), load(&l.path, &l.name, &l.sha256, family)?, l.scale)))
        .collect::<Result<Vec<_>, String>>()?;
    let (patches, missing) = plan(&set, &|n| store.has(n).then(|| store.shape(n).ok()).flatten(), rename)?;
    if missing > 0 {
        tracing::warn!(modules = missing, "LoRA modules the model lacks were skipped");
    }
    let skipped: usize = set.iter().map(|(_, a, _)| a.skipped).sum();
    if skipped > 0 {
        tracing::warn!(keys = skipped, "LoRA text-encoder and norm keys were skipped");
    }
    store.with_patches(patches)
}

/// One delta at its render's scale.
#[derive(Clone)]
pub(crate) struct Patch {
    pub adapter: Arc<Adapter>,
    pub index: usize,
    pub scale: f64,
    /// The rows of the stored tensor it adds into.
    pub rows: Rows,
}

impl Patch {
    fn delta(&self) -> &Delta {
        &self.adapter.deltas[self.index]
    }
}

/// The patches of a LoRA set by target module, in canonical order, after
/// checking every delta against the model's tensor shapes (`shape`: None
/// when the model lacks the tensor). Deltas whose module the model lacks
/// are skipped (diffusers' behaviour for `guidance_in` on schnell).
///
/// `rename` maps a delta's target and rows to the stored tensor's (a
/// layout that fuses q, k and v stores them as one tensor's rows).
pub(crate) fn plan(
    set: &[(String, Arc<Adapter>, f64)],
    shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    rename: &dyn Fn(&str, Rows) -> (String, Rows),
) -> Result<(HashMap<String, Vec<Patch>>, usize), String> {
    let mut patches: HashMap<String, Vec<Patch>> = HashMap::new();
    let mut missing = 0;
    for (name, adapter, scale) in set {
        for (index, d) in adapter.deltas.iter().enumerate() {
            let (target, span) = rename(&d.target, d.rows);
            let Some(w) = shape(&format!("{target}.weight")) else {
                missing += 1;
                continue;
            };
            let (rows, cols) = match w.as_slice() {
                [r, c] => (*r, *c),
                _ => return Err(format!("LoRA '{name}': {} is not a matrix in the model", target)),
            };
            let (r0, r1) = row_range(span, rows, cols)
                .ok_or_else(|| format!("LoRA '{name}': {} has {rows} rows, too few for its target", target))?;
            let (a, b) = (d.down.dims(), d.up.dims());
            let rank = a.first().copied().unwrap_or(0);
            if a != [rank, cols] {
                return Err(format!(
                    "LoRA '{name}': {}: A is {a:?}, expected [rank, {cols}] (the module's input width)",
                    target
                ));
            }
            if b != [r1 - r0, rank] {
                return Err(format!("LoRA '{name}': {}: B is {b:?}, expected [{}, {rank}]", target, r1 - r0));
            }
            if d.bias.is_some() && shape(&format!("{}.bias", target)).is_none() {
                return Err(format!("LoRA '{name}': {} has a bias delta but the module has no bias", target));
            }
            patches.entry(target.clone()).or_default().push(Patch {
                adapter: adapter.clone(),
                index,
                scale: *scale,
                rows: span,
            });
        }
    }
    Ok((patches, missing))
}

fn row_range(rows: Rows, n: usize, h: usize) -> Option<(usize, usize)> {
    let r = match rows {
        Rows::All => (0, n),
        Rows::Qkv(k) => (k * h, (k + 1) * h),
        Rows::Attention => (0, 3 * h),
        Rows::Mlp => (3 * h, n),
    };
    (r.1 <= n && r.0 < r.1).then_some(r)
}

/// `w` (f32) with every patch added: W[rows] += s·m·(B·A), in order.
/// `h` is the module's input width (its weight's columns).
pub(crate) fn apply(w: Tensor, patches: &[Patch], bias: bool, h: usize) -> candle_core::Result<Tensor> {
    let mut w = w;
    let device = w.device().clone();
    for p in patches {
        let d = p.delta();
        let k = p.scale * d.m;
        let n = w.dim(0)?;
        let (r0, r1) = row_range(p.rows, n, h).ok_or_else(|| candle_core::Error::Msg("row range".into()))?;
        // Scale the small factor, not the product.
        let up = (d.up.to_device(&device)? * k)?;
        let mut delta = if bias {
            match &d.bias {
                Some(b) => (b.to_device(&device)? * k)?.unsqueeze(1)?,
                None => continue,
            }
        } else {
            up.matmul(&d.down.to_device(&device)?)?
        };
        if d.swap_halves {
            let half = delta.dim(0)? / 2;
            delta = Tensor::cat(&[delta.narrow(0, half, half)?, delta.narrow(0, 0, half)?], 0)?;
        }
        let delta = if bias { delta.squeeze(1)? } else { delta };
        if (r0, r1) == (0, n) {
            w = (w + delta)?;
            continue;
        }
        let mid = (w.narrow(0, r0, r1 - r0)? + delta)?;
        let mut parts = Vec::new();
        if r0 > 0 {
            parts.push(w.narrow(0, 0, r0)?);
        }
        parts.push(mid);
        if r1 < n {
            parts.push(w.narrow(0, r1, n - r1)?);
        }
        w = Tensor::cat(&parts, 0)?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kohya_names_decode_from_the_fixed_list() {
        assert_eq!(kohya_flux_name("double_blocks_3_img_attn_qkv").as_deref(), Some("double_blocks.3.img_attn.qkv"));
        assert_eq!(kohya_flux_name("double_blocks_0_txt_mod_lin").as_deref(), Some("double_blocks.0.txt_mod.lin"));
        assert_eq!(
            kohya_flux_name("single_blocks_12_modulation_lin").as_deref(),
            Some("single_blocks.12.modulation.lin")
        );
        assert_eq!(
            kohya_flux_name("final_layer_adaLN_modulation_1").as_deref(),
            Some("final_layer.adaLN_modulation.1")
        );
        assert_eq!(kohya_flux_name("down_blocks_0_attentions_0_proj_in"), None);
        assert_eq!(kohya_flux_name("double_blocks_0_img_attn_norm"), None);
    }

    #[test]
    fn peft_names_map_to_rows() {
        assert_eq!(
            peft_flux_name("single_transformer_blocks.2.proj_mlp"),
            Some(("single_blocks.2.linear1".into(), Rows::Mlp, false))
        );
        assert_eq!(
            peft_flux_name("transformer_blocks.0.attn.add_v_proj"),
            Some(("double_blocks.0.txt_attn.qkv".into(), Rows::Qkv(2), false))
        );
        assert_eq!(peft_flux_name("norm_out.linear"), Some(("final_layer.adaLN_modulation.1".into(), Rows::All, true)));
        assert_eq!(peft_flux_name("layers.0.attention.to_q"), None);
    }

    #[test]
    fn zimage_kohya_names_keep_their_words() {
        assert_eq!(zimage_name("layers_0_attention_to_q").as_deref(), Some("layers.0.attention.to_q"));
        assert_eq!(zimage_name("layers_3_attention_to_out_0").as_deref(), Some("layers.3.attention.to_out.0"));
        assert_eq!(zimage_name("noise_refiner_1_feed_forward_w2").as_deref(), Some("noise_refiner.1.feed_forward.w2"));
        assert_eq!(zimage_name("layers_2_adaLN_modulation_0").as_deref(), Some("layers.2.adaLN_modulation.0"));
    }

    /// §1.4's PEFT alpha rule: a module's own `.alpha`; modules without
    /// one take the file's most frequent alpha (ties: the smallest); a
    /// file with none reads the adapter metadata, else alpha = rank.
    #[test]
    fn peft_alphas_follow_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let t = |r: usize, c: usize| Tensor::ones((r, c), DType::F32, &Device::Cpu).unwrap();
        let mut m = HashMap::new();
        for (name, alpha) in [
            ("x_embedder", Some(4.0f32)),
            ("context_embedder", Some(4.0)),
            ("proj_out", Some(2.0)),
            ("norm_out.linear", None),
        ] {
            m.insert(format!("transformer.{name}.lora_A.weight"), t(2, 8));
            m.insert(format!("transformer.{name}.lora_B.weight"), t(8, 2));
            if let Some(a) = alpha {
                m.insert(format!("transformer.{name}.alpha"), Tensor::new(a, &Device::Cpu).unwrap());
            }
        }
        let path = dir.path().join("a.safetensors");
        candle_core::safetensors::save(&m, &path).unwrap();
        let a = parse(&path, Family::Flux).unwrap();
        let m_of = |target: &str| a.deltas.iter().find(|d| d.target == target).unwrap().m;
        assert_eq!(m_of("img_in"), 2.0);
        assert_eq!(m_of("final_layer.linear"), 1.0);
        assert_eq!(m_of("final_layer.adaLN_modulation.1"), 2.0, "the most frequent alpha, 4, over rank 2");
        // No alphas: the metadata's pattern, then lora_alpha.
        let meta = serde_json::json!({"lora_alpha": 8, "alpha_pattern": {"proj_out": 1}});
        assert_eq!(metadata_alpha(Some(&meta), "single_transformer_blocks.0.proj_out"), Some(1.0));
        assert_eq!(metadata_alpha(Some(&meta), "x_embedder"), Some(8.0));
        assert_eq!(metadata_alpha(None, "x_embedder"), None);
    }

    #[test]
    fn row_ranges_follow_the_hidden_size() {
        assert_eq!(row_range(Rows::Qkv(1), 96, 32), Some((32, 64)));
        assert_eq!(row_range(Rows::Mlp, 224, 32), Some((96, 224)));
        assert_eq!(row_range(Rows::Attention, 224, 32), Some((0, 96)));
        assert_eq!(row_range(Rows::Mlp, 96, 32), None);
    }
}
