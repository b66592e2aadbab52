//! Hole 5: pack YAML files that are symlinks out of the pack, FIFOs, or
//! huge. validate-pack reports them with their own codes; the daemon and
//! `sqm render` never read them.

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use super::support::{copy_pack, mkfifo, sqm, validate};

#[test]
fn a_style_file_linked_out_of_the_pack_is_reported_and_never_reaches_a_prompt() {
    let (dir, pack) = copy_pack();
    let secret = dir.path().join("secret.yaml");
    std::fs::write(&secret, "positive_suffix: HOST-SECRET-TOKEN\n").unwrap();
    std::fs::remove_file(pack.join("visual_style.yaml")).unwrap();
    symlink(&secret, pack.join("visual_style.yaml")).unwrap();

    let (code, codes, v) = validate(&pack);
    assert_eq!(code, 1);
    assert!(codes.contains(&"PATH_ESCAPES_PACK".to_owned()), "{v}");
    assert!(!v.to_string().contains("HOST-SECRET-TOKEN"));

    let packs = pack.parent().unwrap().to_str().unwrap();
    let o = sqm(&[
        "render",
        "--dry-run",
        "--json",
        "--genre-packs",
        packs,
        "--genre",
        "ashfall",
        "--tier",
        "portrait",
        "a smith",
    ]);
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!all.contains("HOST-SECRET-TOKEN"), "{all}");
    assert!(!o.status.success(), "{all}");
    assert!(all.contains("leaves its folder"), "{all}");
}

#[test]
fn a_yaml_linked_to_dev_zero_is_refused_at_once() {
    let (_dir, pack) = copy_pack();
    std::fs::remove_file(pack.join("places.yaml")).unwrap();
    symlink("/dev/zero", pack.join("places.yaml")).unwrap();
    let started = Instant::now();
    let (code, codes, _) = validate(&pack);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(code, 1);
    assert!(codes.contains(&"PATH_ESCAPES_PACK".to_owned()), "{codes:?}");
}

#[test]
fn a_fifo_inside_the_pack_is_not_waited_on() {
    let (_dir, pack) = copy_pack();
    std::fs::remove_file(pack.join("places.yaml")).unwrap();
    mkfifo(&pack.join("places.yaml"));
    let started = Instant::now();
    let (code, codes, _) = validate(&pack);
    assert!(started.elapsed() < Duration::from_secs(20), "a FIFO stalled validation");
    assert_eq!(code, 1);
    assert!(codes.contains(&"NOT_A_REGULAR_FILE".to_owned()), "{codes:?}");
}

#[test]
fn an_oversized_yaml_is_refused_before_it_is_parsed() {
    let (_dir, pack) = copy_pack();
    let mut big = String::from("description: |\n");
    let line = format!("  {}\n", "x".repeat(1022));
    while big.len() <= 17 * 1024 * 1024 {
        big.push_str(&line);
    }
    std::fs::write(pack.join("places.yaml"), big).unwrap();
    let (code, codes, v) = validate(&pack);
    assert_eq!(code, 1);
    let d =
        v["diagnostics"].as_array().unwrap().iter().find(|d| d["code"] == "FILE_TOO_LARGE").expect("FILE_TOO_LARGE");
    assert!(d["file"].as_str().unwrap().ends_with("places.yaml"), "{d}");
    assert!(d["message"].as_str().unwrap().contains("16 MiB"), "{d}");
    assert!(!codes.contains(&"YAML_SYNTAX".to_owned()));
}

#[test]
fn an_audio_asset_linked_out_of_the_pack_is_refused() {
    let (dir, pack) = copy_pack();
    let outside = dir.path().join("outside.wav");
    std::fs::copy(pack.join("audio/music/rest_embers.wav"), &outside).unwrap();
    std::fs::remove_file(pack.join("audio/music/rest_embers.wav")).unwrap();
    symlink(&outside, pack.join("audio/music/rest_embers.wav")).unwrap();
    let (code, codes, _) = validate(&pack);
    assert_eq!(code, 1);
    assert!(codes.contains(&"PATH_ESCAPES_PACK".to_owned()), "{codes:?}");
}
