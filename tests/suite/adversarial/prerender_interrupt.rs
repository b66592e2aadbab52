//! Ctrl-C during `prerender-pack` used to leave `.render-*.png.tmp` and
//! `.manifest-*` files that no later run removed. Now the first SIGINT
//! stops at the next job boundary, cleans up, saves the manifest and exits
//! 130; temp files left by a crashed run are removed at the next start
//! (only sqm's own, only inside the output folder).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::SQM;
use super::support::copy_pack;

fn temp_files(out: &Path) -> Vec<String> {
    walkdir::WalkDir::new(out)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| (n.starts_with(".render-") && n.ends_with(".tmp")) || n.starts_with(".manifest-"))
        .collect()
}

fn manifest_jobs(out: &Path) -> usize {
    std::fs::read(out.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["jobs"].as_object().map(|o| o.len()))
        .unwrap_or(0)
}

#[test]
fn sigint_saves_the_manifest_removes_temp_files_and_exits_130() {
    let (_dir, pack) = copy_pack();
    // Enough portraits that the run is still going when the signal comes.
    let manifest = pack.join("worlds/cinder-reach/portrait_manifest.yaml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    for i in 0..300 {
        text.push_str(&format!(
            "  - name: Porter {i}\n    role: ash porter\n    type: npc_major\n    appearance: a soot-stained porter with a numbered tag {i}\n"
        ));
    }
    std::fs::write(&manifest, text).unwrap();
    let out = pack.join(".cache/prerender");
    std::fs::create_dir_all(out.join("portrait/cinder-reach")).unwrap();
    std::fs::write(out.join("portrait/cinder-reach/.render-Ab12.png.tmp"), b"left by a crash").unwrap();
    std::fs::write(out.join(".manifest-Zx9"), b"left by a crash").unwrap();
    std::fs::write(out.join("notes.tmp"), b"the user's own file").unwrap();

    let mut child = Command::new(SQM)
        .args(["prerender-pack", "--jobs", "1", "--json"])
        .arg(&pack)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifest_jobs(&out) < 5 {
        assert!(Instant::now() < deadline, "no progress");
        assert!(child.try_wait().unwrap().is_none(), "finished before the signal");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");

    assert_eq!(temp_files(&out), Vec::<String>::new());
    assert_eq!(std::fs::read(out.join("notes.tmp")).unwrap(), b"the user's own file");
    let saved: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let done = saved["jobs"].as_object().unwrap();
    assert!(done.len() >= 5 && done.len() < 300, "{}", done.len());
    for e in done.values().filter(|e| e["kind"] != "loudness") {
        assert!(out.join(e["file"].as_str().unwrap()).is_file(), "{e}");
    }

    // The next run resumes: what was saved is skipped.
    let o = Command::new(SQM).args(["prerender-pack", "--json"]).arg(&pack).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(summary["summary"]["skipped"].as_u64().unwrap() >= done.len() as u64 - 1, "{}", summary["summary"]);
}
