//! LoRA adapters on a render (conditioning.md §1): which files, at which
//! scales, found only inside the genre pack or the LoRA folder, and the
//! canonical set that enters the cache key and fixes the merge order.
//!
//! Engines read the files; this module only names, checks and hashes them.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::interpret::Tier;
use crate::pack::lora::PackLora;
use crate::pack::paths::{open_regular, Root};

/// Most LoRAs one render takes.
pub const MAX_LORAS: usize = 8;
/// Largest LoRA file sqm opens.
const FILE_CAP: u64 = 2 << 30;
/// Largest safetensors header sqm reads.
const HEADER_CAP: u64 = 100 << 20;

/// One LoRA on a job: the canonical set holds these sorted by
/// (sha256, scale), scale-0 entries dropped.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Lora {
    /// The pack entry's `name`, or the file's stem.
    pub name: String,
    /// The path as the request or pack named it.
    pub file: String,
    /// Where it was found (canonical), for the engine.
    #[serde(skip)]
    pub path: PathBuf,
    pub sha256: String,
    pub scale: f64,
}

/// The folders LoRA files may live in: the genre pack (`packs/<genre>/`)
/// and the LoRA folder (`--lora-dir`).
#[derive(Clone, Debug, Default)]
pub struct LoraRoots {
    pub packs: Option<PathBuf>,
    pub genre: String,
    pub lora_dir: Option<PathBuf>,
}

/// Checks the request's LoRA params (types already checked) and returns
/// the explicit list, or None when the request names none (the pack stack
/// applies). `lora_scale` alone is ignored; the singleton pair is a
/// one-element list.
pub fn request_list(
    paths: Option<Vec<String>>,
    scales: Option<Vec<f64>>,
    path: Option<String>,
    scale: Option<f64>,
) -> Result<Option<Vec<(String, f64)>>, String> {
    let singleton = path.is_some();
    if singleton && (paths.is_some() || scales.is_some()) {
        return Err("use either lora_path/lora_scale or lora_paths/lora_scales, not both".into());
    }
    let (paths, scales) = match (paths, path) {
        (_, Some(p)) => (vec![p], Some(vec![scale.unwrap_or(1.0)])),
        (Some(ps), None) => (ps, scales),
        (None, None) if scales.is_some() => {
            return Err(format!("'lora_scales' has {} entries but 'lora_paths' has 0", scales.map_or(0, |s| s.len())))
        }
        (None, None) => return Ok(None),
    };
    let scales = scales.unwrap_or_else(|| vec![1.0; paths.len()]);
    if scales.len() != paths.len() {
        return Err(format!("'lora_scales' has {} entries but 'lora_paths' has {}", scales.len(), paths.len()));
    }
    let field = if singleton { "lora_scale".to_owned() } else { String::new() };
    for (i, s) in scales.iter().enumerate() {
        if !(s.is_finite() && (0.0..=2.0).contains(s)) {
            let name = if singleton { field.clone() } else { format!("lora_scales[{i}]") };
            return Err(format!("{name} must be a finite number in [0, 2], got {s}"));
        }
    }
    if paths.len() > MAX_LORAS {
        return Err(format!("at most {MAX_LORAS} LoRAs per render, got {}", paths.len()));
    }
    Ok(Some(paths.into_iter().zip(scales).collect()))
}

/// The one text for a file that is outside the roots, missing, not a
/// regular file or too big (no oracle for what is on the host).
fn unreadable(field: &str, raw: &str) -> String {
    format!("{field}: '{raw}' is not a readable LoRA in the genre pack or --lora-dir")
}

fn is_safetensors(raw: &str) -> bool {
    Path::new(raw).extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// Resolves a request's explicit list: relative paths in the genre pack,
/// then the LoRA folder; absolute ones only inside the pack root or the
/// LoRA folder. Hashes each file; returns the canonical set.
pub fn resolve_request(list: &[(String, f64)], roots: &LoraRoots) -> Result<Vec<Lora>, String> {
    let mut found: Vec<Lora> = Vec::new();
    for (i, (raw, scale)) in list.iter().enumerate() {
        let field = format!("lora_paths[{i}]");
        if !is_safetensors(raw) {
            return Err(format!("{field}: only .safetensors LoRA files are loaded"));
        }
        let p = Path::new(raw);
        let mut bases: Vec<PathBuf> = Vec::new();
        let mut roots_of: Vec<PathBuf> = Vec::new();
        if let Some(packs) = &roots.packs {
            if p.is_absolute() {
                bases.push(PathBuf::new());
                roots_of.push(packs.clone());
            } else if !roots.genre.is_empty() {
                bases.push(packs.join(&roots.genre));
                roots_of.push(packs.join(&roots.genre));
            }
        }
        if let Some(dir) = &roots.lora_dir {
            bases.push(if p.is_absolute() { PathBuf::new() } else { dir.clone() });
            roots_of.push(dir.clone());
        }
        let has_parent = p.components().any(|c| matches!(c, Component::ParentDir));
        let path = (!has_parent)
            .then(|| bases.iter().zip(&roots_of).find_map(|(base, root)| readable(&base.join(p), root)))
            .flatten()
            .ok_or_else(|| unreadable(&field, raw))?;
        let sha256 = file_sha256(&path).map_err(|_| unreadable(&field, raw))?;
        if let Some(j) = found.iter().position(|l| l.path == path || l.sha256 == sha256) {
            return Err(format!("{field} is the same file as lora_paths[{j}]"));
        }
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        found.push(Lora { name, file: raw.clone(), path, sha256, scale: *scale });
    }
    Ok(canonical(found))
}

/// LoRAs named on the command line (trusted paths): checked as files,
/// hashed, and put in canonical order.
pub fn from_paths(list: &[(PathBuf, f64)]) -> Result<Vec<Lora>, String> {
    if list.len() > MAX_LORAS {
        return Err(format!("at most {MAX_LORAS} LoRAs per render, got {}", list.len()));
    }
    let mut found: Vec<Lora> = Vec::new();
    for (p, scale) in list {
        let raw = p.display().to_string();
        if !is_safetensors(&raw) {
            return Err(format!("{raw}: only .safetensors LoRA files are loaded"));
        }
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let path = readable(p, dir).ok_or_else(|| format!("{raw}: not a readable safetensors file"))?;
        let sha256 = file_sha256(&path).map_err(|e| format!("{raw}: {e}"))?;
        if found.iter().any(|l| l.sha256 == sha256) {
            return Err(format!("{raw} is given twice"));
        }
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        found.push(Lora { name, file: raw, path, sha256, scale: *scale });
    }
    Ok(canonical(found))
}

/// The canonical path of `path` when it is a regular safetensors file of
/// bounded size inside `root`.
fn readable(path: &Path, root: &Path) -> Option<PathBuf> {
    let root = Root::new(root).ok()?;
    let canonical = root.resolve(path).ok()?;
    let (mut file, len) = open_regular(&canonical).ok()?;
    if !(8..=FILE_CAP).contains(&len) {
        return None;
    }
    let mut n = [0u8; 8];
    file.read_exact(&mut n).ok()?;
    let header = u64::from_le_bytes(n);
    (header <= HEADER_CAP && 8 + header <= len).then_some(canonical)
}

/// The canonical set: scale-0 entries dropped, sorted by (sha256, scale);
/// also the merge order, so [A, B] and [B, A] merge bit for bit alike.
pub fn canonical(mut loras: Vec<Lora>) -> Vec<Lora> {
    loras.retain(|l| l.scale != 0.0);
    loras.sort_by(|a, b| a.sha256.cmp(&b.sha256).then(a.scale.total_cmp(&b.scale)));
    loras
}

/// SHA-256 of a file, cached by (path, size, mtime, inode).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    type Cache = Mutex<HashMap<(PathBuf, u64, i64, i64, u64), String>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let meta = std::fs::metadata(path)?;
    let id = (path.to_path_buf(), meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return Ok(h.clone());
    }
    let (file, len) = open_regular(path).map_err(|e| std::io::Error::other(e.to_string()))?;
    if len > FILE_CAP {
        return Err(std::io::Error::other("too large"));
    }
    let mut hasher = Sha256::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file.take(FILE_CAP));
    std::io::copy(&mut reader, &mut hasher)?;
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(id, hex.clone());
    Ok(hex)
}

/// The stack for `tier`: entries that apply to it with a non-zero scale,
/// their files found and hashed, and the triggers (distinct, stack order).
/// `genre_dir` is `packs/<genre>`; files must stay inside it, else they
/// are looked for in the LoRA folder.
pub fn stack(
    list: &[PackLora],
    tier: Tier,
    genre_dir: &Path,
    lora_dir: Option<&Path>,
) -> Result<(Vec<Lora>, Vec<String>), String> {
    let mut loras = Vec::new();
    let mut triggers: Vec<String> = Vec::new();
    for (i, l) in list.iter().enumerate() {
        if !l.applies(tier.name()) || l.scale == 0.0 {
            continue;
        }
        let path = pack_file(l, genre_dir, lora_dir).map_err(|e| format!("loras[{i}] ({}): {e}", l.name))?;
        let sha256 =
            file_sha256(&path).map_err(|_| format!("loras[{i}] ({}): '{}' is not readable", l.name, l.file))?;
        if loras.iter().any(|o: &Lora| o.sha256 == sha256) {
            return Err(format!("loras[{i}] ({}): the same file as another entry for this tier", l.name));
        }
        loras.push(Lora { name: l.name.clone(), file: l.file.clone(), path, sha256, scale: l.scale });
        if let Some(t) = l.trigger.as_ref().filter(|t| !t.is_empty()) {
            if !triggers.contains(t) {
                triggers.push(t.clone());
            }
        }
    }
    Ok((canonical(loras), triggers))
}

/// A pack entry's file: relative to its YAML's folder inside the genre
/// pack, else in the LoRA folder.
pub fn pack_file(l: &PackLora, genre_dir: &Path, lora_dir: Option<&Path>) -> Result<PathBuf, String> {
    let refused = || format!("'{}' is not a readable LoRA in the genre pack or --lora-dir", l.file);
    if !is_safetensors(&l.file) {
        return Err(format!("'{}': only .safetensors LoRA files are loaded", l.file));
    }
    let p = Path::new(&l.file);
    if p.is_absolute() {
        return Err(refused());
    }
    // A relative path may climb from a world's folder, never out of the genre.
    if let Some(path) = readable(&l.base.join(p), genre_dir) {
        return Ok(path);
    }
    if !p.components().any(|c| matches!(c, Component::ParentDir)) {
        if let Some(dir) = lora_dir {
            if let Some(path) = readable(&dir.join(p), dir) {
                return Ok(path);
            }
        }
    }
    Err(refused())
}

/// Sketch and null apply no LoRA: the job keeps none (and its key stays
/// the plain one). True when there were some to drop.
pub fn drop_on_weightless(job: &mut crate::render::RenderJob, backend: &str) -> bool {
    if matches!(backend, "sketch" | "null") && !job.loras.is_empty() {
        job.loras.clear();
        return true;
    }
    false
}

/// The tensor names in a safetensors file's header (at most 100 MB read).
pub fn header_keys(path: &Path) -> Result<Vec<String>, String> {
    let (mut file, len) = open_regular(path).map_err(|e| format!("not readable ({e})"))?;
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|_| "not a safetensors file (shorter than its header)".to_owned())?;
    let n = u64::from_le_bytes(n);
    if n > HEADER_CAP || 8 + n > len {
        return Err(format!("not a safetensors file (header of {n} bytes in a file of {len})"));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| format!("not readable ({e})"))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| "not a safetensors file (its header is not JSON)".to_owned())?;
    Ok(map.into_iter().map(|(k, _)| k).filter(|k| k != "__metadata__").collect())
}

/// The LoRA format its key names show, in diffusers' detection order, or
/// why sqm will not merge it (DoRA, a control LoRA, no LoRA keys).
pub fn key_format(keys: &[String]) -> Result<&'static str, String> {
    let any = |p: &dyn Fn(&str) -> bool| keys.iter().any(|k| p(k));
    if any(&|k| k.contains("dora_scale")) {
        Err("a DoRA LoRA (dora_scale), which sqm does not merge".into())
    } else if any(&|k| k.ends_with(".lora_down.weight")) {
        Ok("kohya")
    } else if any(&|k| k.contains("processor")) {
        Ok("xlabs")
    } else if any(&|k| k.contains("query_norm.scale")) {
        Err("a control LoRA (it retrains norms and widens img_in), not a style LoRA".into())
    } else if any(&|k| k.contains(".lora_A.") || k.contains(".lora_B.")) {
        Ok("peft")
    } else {
        Err("no LoRA keys (unrecognized LoRA format)".into())
    }
}

/// The A1111 `Lora hashes` text: `"name: <12 hex>, …"`.
pub fn hashes_text(loras: &[Lora]) -> String {
    let parts: Vec<String> = loras.iter().map(|l| format!("{}: {}", l.name, &l.sha256[..12])).collect();
    format!("\"{}\"", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(paths: &[&str], scales: Option<&[f64]>) -> Result<Option<Vec<(String, f64)>>, String> {
        request_list(Some(paths.iter().map(|s| s.to_string()).collect()), scales.map(|s| s.to_vec()), None, None)
    }

    #[test]
    fn request_errors_have_the_spec_texts() {
        let both = request_list(Some(vec![]), None, Some("a.safetensors".into()), None).unwrap_err();
        assert_eq!(both, "use either lora_path/lora_scale or lora_paths/lora_scales, not both");
        assert_eq!(list(&["a", "b"], Some(&[1.0])).unwrap_err(), "'lora_scales' has 1 entries but 'lora_paths' has 2");
        assert_eq!(
            list(&["a", "b"], Some(&[1.0, 2.5])).unwrap_err(),
            "lora_scales[1] must be a finite number in [0, 2], got 2.5"
        );
        let nine: Vec<&str> = vec!["a"; 9];
        assert_eq!(list(&nine, None).unwrap_err(), "at most 8 LoRAs per render, got 9");
        assert_eq!(list(&["a"], None).unwrap(), Some(vec![("a".into(), 1.0)]));
        // The Flux-era singleton is a one-element list; lora_scale alone is ignored.
        let one = request_list(None, None, Some("x.safetensors".into()), Some(0.5)).unwrap();
        assert_eq!(one, Some(vec![("x.safetensors".into(), 0.5)]));
        assert_eq!(request_list(None, None, None, Some(0.5)).unwrap(), None);
    }

    #[test]
    fn canonical_order_ignores_request_order_and_drops_zero() {
        let l = |sha: &str, scale: f64| Lora {
            name: sha.into(),
            file: String::new(),
            path: PathBuf::new(),
            sha256: sha.into(),
            scale,
        };
        let a = canonical(vec![l("bb", 0.5), l("aa", 1.0), l("cc", 0.0)]);
        let b = canonical(vec![l("aa", 1.0), l("bb", 0.5)]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn key_gains_the_canonical_set() {
        let mut job = crate::render::RenderJob::warm_up(12, crate::prompt::Variant::Dev);
        job.positive_prompt = "a ruined watchtower at dusk".into();
        job.seed = 1234;
        (job.width, job.height, job.guidance) = (1024, 768, 3.5);
        let model = Some("flux1-schnell+flux1-dev");
        assert_eq!(crate::render::output::render_key("flux", model, &job), "6fd47de8cce8e485");
        job.loras = vec![Lora {
            name: "sw".into(),
            file: "sw.safetensors".into(),
            path: PathBuf::new(),
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            scale: 0.8,
        }];
        assert_eq!(crate::render::output::render_key("flux", model, &job), "9964dd41ecbc6a98");
        assert!(
            crate::render::output::parameters_text(&job, "flux1-dev").ends_with(", Lora hashes: \"sw: 9f86d081884c\"")
        );
    }
}
