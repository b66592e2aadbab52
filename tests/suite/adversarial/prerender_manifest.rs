//! Hole 1: a pack may ship `.cache/prerender/manifest.json`. Its `file`
//! fields used to be deleted and read with no containment check. They are
//! untrusted input now: escaping entries are ignored (never read, never
//! deleted) with one warning, and a corrupt manifest is set aside.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::{copy_pack, sqm};

/// Runs prerender once (so every id is known), then returns the manifest.
fn first_run(pack: &Path) -> Value {
    let o = sqm(&["prerender-pack", "--json", pack.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(pack.join(".cache/prerender/manifest.json")).unwrap()).unwrap()
}

#[test]
fn entries_naming_files_outside_the_output_folder_are_never_deleted_or_read() {
    let (dir, pack) = copy_pack();
    let mut manifest = first_run(&pack);
    let victims: Vec<_> = (0..3).map(|i| dir.path().join(format!("victim{i}.png"))).collect();
    for v in &victims {
        std::fs::write(v, b"precious").unwrap();
    }
    // Three portraits now claim older files: relative escape, absolute, and
    // through a symlinked folder inside the output.
    std::os::unix::fs::symlink(dir.path(), pack.join(".cache/prerender/up")).unwrap();
    let files = [
        format!("../../../../{}", victims[0].file_name().unwrap().to_str().unwrap()),
        victims[1].display().to_string(),
        format!("up/{}", victims[2].file_name().unwrap().to_str().unwrap()),
    ];
    let jobs = manifest["jobs"].as_object_mut().unwrap();
    let ids: Vec<String> = jobs.keys().filter(|k| k.starts_with("portrait/")).take(3).cloned().collect();
    for (id, file) in ids.iter().zip(&files) {
        jobs[id]["file"] = json!(file);
        jobs[id]["key"] = json!("stale-key-forces-a-re-render");
    }
    std::fs::write(pack.join(".cache/prerender/manifest.json"), manifest.to_string()).unwrap();

    let o = sqm(&["prerender-pack", "--json", pack.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for v in &victims {
        assert_eq!(std::fs::read(v).unwrap(), b"precious", "{} was touched", v.display());
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.matches("outside").count(), 1, "one warning: {stderr}");
    let after: Value =
        serde_json::from_slice(&std::fs::read(pack.join(".cache/prerender/manifest.json")).unwrap()).unwrap();
    for id in &ids {
        assert_eq!(after["jobs"][id]["file"], json!(format!("{id}.png")), "re-rendered in place");
    }
}

#[test]
fn a_manifest_pointing_at_dev_zero_is_not_read_even_in_a_dry_run() {
    let (_dir, pack) = copy_pack();
    let mut manifest = first_run(&pack);
    for (_, e) in manifest["jobs"].as_object_mut().unwrap().iter_mut() {
        if e["kind"] != "loudness" {
            e["file"] = json!("/dev/zero");
        }
    }
    std::fs::write(pack.join(".cache/prerender/manifest.json"), manifest.to_string()).unwrap();
    let started = Instant::now();
    let o = sqm(&["prerender-pack", "--dry-run", "--json", pack.to_str().unwrap()]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let images: Vec<_> = plan["jobs"].as_array().unwrap().iter().filter(|j| j["kind"] != "loudness").collect();
    assert!(images.len() >= 5);
    for j in images {
        assert_eq!(j["action"], "render", "escaping entries count as not done: {j}");
    }
}

#[test]
fn a_corrupt_manifest_is_set_aside_and_rebuilt() {
    let (_dir, pack) = copy_pack();
    let out = pack.join(".cache/prerender");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("manifest.json"), b"{ this is not json").unwrap();
    let o = sqm(&["prerender-pack", "--json", pack.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let aside: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("manifest.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), b"{ this is not json");
    let rebuilt: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(rebuilt["jobs"].as_object().unwrap().len() > 10);
}
