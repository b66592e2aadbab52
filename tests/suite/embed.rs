//! all-MiniLM-L6-v2 on candle against reference vectors from the reference
//! implementation (sentence-transformers, CPU; scripts/embed_reference.py).
//! The model comes from scripts/fetch-embed-model (run by scripts/setup.sh).

use std::path::PathBuf;
use std::sync::OnceLock;

use sqm::embed::{cosine, EmbedError, EngineChoice, MiniLm, DIM};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SQM_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "no model at {}: run scripts/setup.sh (or scripts/fetch-embed-model)",
        dir.display()
    );
    dir
}

fn model() -> &'static MiniLm {
    static M: OnceLock<MiniLm> = OnceLock::new();
    M.get_or_init(|| MiniLm::load(&model_dir(), candle_core::Device::Cpu).unwrap())
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

fn reference() -> Vec<(String, Vec<f32>)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/embed_reference.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let e = v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (v["text"].as_str().unwrap().to_owned(), e)
        })
        .collect()
}

fn check_against_reference(m: &MiniLm, engine: &str) {
    let refs = reference();
    assert!(refs.len() >= 50, "{} reference texts", refs.len());
    let mut worst = (1.0f64, String::new());
    for (text, expected) in &refs {
        let got = m.embed(text).unwrap();
        assert_eq!(got.len(), DIM);
        assert!((norm(&got) - 1.0).abs() <= 1e-5, "{engine}: norm {} for {text:?}", norm(&got));
        let c = cosine(&got, expected);
        if c < worst.0 {
            worst = (c, text.clone());
        }
        assert!(c >= 0.9999, "{engine}: cosine {c} for {text:?}");
    }
    // In batches of 20: texts of 1 to 256 tokens laid end to end (or,
    // for candle, padded to the longest).
    for chunk in refs.chunks(20) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        for ((text, expected), got) in chunk.iter().zip(m.embed_batch(&texts).unwrap()) {
            let c = cosine(&got, expected);
            assert!(c >= 0.9999, "{engine} batched: cosine {c} for {text:?}");
        }
    }
    println!("{engine}: worst cosine {:.7} for {:?}", worst.0, worst.1);
}

/// The default engine (sqm's own, bf16 products, AVX-512 where present).
#[test]
fn matches_the_reference_implementation() {
    check_against_reference(model(), "default");
}

/// The other engines: sqm's own without AVX-512 and on one thread, and
/// candle's f32 BERT.
#[test]
fn every_engine_matches_the_reference_implementation() {
    let engines = [
        ("portable, 2 threads", EngineChoice::Own { threads: 2, portable: true }),
        ("one thread", EngineChoice::Own { threads: 1, portable: false }),
        ("candle", EngineChoice::Candle),
    ];
    for (name, engine) in engines {
        let m = MiniLm::load_with(&model_dir(), candle_core::Device::Cpu, engine).unwrap();
        check_against_reference(&m, name);
    }
}

/// A weights file missing one tensor, or with one of the wrong shape, is
/// refused naming the file and the tensor.
#[test]
fn bad_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(f), dir.path().join(f)).unwrap();
    }
    let all = candle_core::safetensors::load(model_dir().join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    type Edit = fn(&mut std::collections::HashMap<String, candle_core::Tensor>);
    let cases: [(&str, Edit); 2] = [
        ("encoder.layer.3.output.dense.weight", |t| {
            t.remove("encoder.layer.3.output.dense.weight");
        }),
        ("encoder.layer.2.attention.self.key.bias", |t| {
            let short = candle_core::Tensor::zeros(100, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
            t.insert("encoder.layer.2.attention.self.key.bias".into(), short);
        }),
    ];
    for (tensor, edit) in cases {
        let mut tensors = all.clone();
        edit(&mut tensors);
        candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
        match MiniLm::load(dir.path(), candle_core::Device::Cpu) {
            Err(e @ EmbedError::Load { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("model.safetensors") && msg.contains(tensor), "{msg}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("loaded without {tensor}"),
        }
    }
}

#[test]
fn batches_match_single_texts() {
    let texts = [
        "The ruins crumble.",
        "A much longer sentence about the glass roads of the Cinder Reach and their traders.",
        "🐉",
        "The ruins crumble.",
    ];
    let batch = model().embed_batch(&texts).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        let single = model().embed(t).unwrap();
        assert!(cosine(&single, b) >= 0.99999, "{t}");
    }
    assert_eq!(batch[0], batch[3], "identical texts in one batch give identical vectors");
}

#[test]
fn truncation_is_256_tokens_with_specials() {
    let m = model();
    let words = |n: usize| vec!["ash"; n].join(" ");
    assert_eq!(m.token_count(&words(254)).unwrap(), 256);
    assert_eq!(m.token_count(&words(255)).unwrap(), 256);
    assert_eq!(m.token_count(&words(600)).unwrap(), 256);
    // The 255th word is dropped, so the vectors are the same.
    assert!(cosine(&m.embed(&words(254)).unwrap(), &m.embed(&words(255)).unwrap()) > 0.999999);
    // A ~200-token text is not cut at the shipped tokenizer's 128.
    let lore = "The forge-towns trade heat like coin during the long winter of the reach. ".repeat(12);
    let n = m.token_count(&lore).unwrap();
    assert!((129..=256).contains(&n), "{n} tokens");
}

#[test]
fn odd_inputs_still_give_unit_vectors() {
    for text in ["\u{7}", "\u{0}", "\u{200b}", "\u{fffd}"] {
        let v = model().embed(text).unwrap();
        assert_eq!(v.len(), DIM);
        assert!((norm(&v) - 1.0).abs() <= 1e-5, "{text:?}");
    }
}

#[test]
fn semantic_sanity() {
    let m = model();
    let food = m.embed("A man is eating food.").unwrap();
    let bread = m.embed("A man is eating a piece of bread.").unwrap();
    let stocks = m.embed("The stock market fell sharply.").unwrap();
    assert!(cosine(&food, &bread) > cosine(&food, &stocks));
}

#[test]
fn missing_and_corrupt_models_are_named() {
    let empty = tempfile::tempdir().unwrap();
    let err = sqm::embed::locate_with(Some(empty.path()), None, &[empty.path().join("home")], Some(empty.path()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("all-MiniLM-L6-v2 not found: searched --embed-model"), "{msg}");
    assert!(msg.contains("models--sentence-transformers--all-MiniLM-L6-v2"), "{msg}");
    assert!(msg.contains("scripts/fetch-embed-model"), "{msg}");

    // A truncated weights file.
    let bad = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(f), bad.path().join(f)).unwrap();
    }
    let weights = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    std::fs::write(bad.path().join("model.safetensors"), &weights[..weights.len() / 3]).unwrap();
    match MiniLm::load(bad.path(), candle_core::Device::Cpu) {
        Err(EmbedError::Load { path, message }) => {
            assert!(path.ends_with("model.safetensors"), "{path:?}");
            assert!(!message.is_empty());
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a truncated model loaded"),
    }
    // A config that is not JSON.
    std::fs::write(bad.path().join("config.json"), "{").unwrap();
    assert!(
        matches!(MiniLm::load(bad.path(), candle_core::Device::Cpu), Err(EmbedError::Load { path, .. }) if path.ends_with("config.json"))
    );
}

#[test]
fn hub_cache_layout_is_found() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--sentence-transformers--all-MiniLM-L6-v2");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::os::unix::fs::symlink(model_dir().join(f), snap.join(f)).unwrap();
    }
    assert_eq!(sqm::embed::hub_snapshot(cache.path(), "sentence-transformers/all-MiniLM-L6-v2"), Some(snap.clone()));
    let m = MiniLm::load(&snap, candle_core::Device::Cpu).unwrap();
    assert_eq!(m.embed("ash").unwrap().len(), DIM);
}
