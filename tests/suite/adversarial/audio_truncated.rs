//! A music WAV cut short with its header intact used to pass validate-pack
//! (only the first packet was decoded); the header's length is now checked
//! against what the file holds.

use super::support::{copy_pack, validate};

#[test]
fn a_truncated_wav_is_undecodable() {
    let (_dir, pack) = copy_pack();
    let wav = pack.join("audio/music/rest_embers.wav");
    let bytes = std::fs::read(&wav).unwrap();
    assert!(bytes.len() > 100_000, "the fixture is a real track");
    std::fs::write(&wav, &bytes[..1000]).unwrap();
    let (code, _, v) = validate(&pack);
    assert_eq!(code, 1, "{v}");
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "ASSET_UNDECODABLE" && d["message"].as_str().unwrap().contains("rest_embers"))
        .unwrap_or_else(|| panic!("no ASSET_UNDECODABLE for the cut file: {v}"));
    assert!(d["message"].as_str().unwrap().contains("truncated"), "{d}");
}

#[test]
fn intact_tracks_still_pass() {
    let (_dir, pack) = copy_pack();
    let (code, codes, v) = validate(&pack);
    assert_eq!(code, 0, "{v}");
    assert!(!codes.contains(&"ASSET_UNDECODABLE".to_owned()));
}
