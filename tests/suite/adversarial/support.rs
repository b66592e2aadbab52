//! Shared helpers: pack copies, running `sqm`, process memory.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

pub use super::common::copy_example_pack as copy_pack;

/// Runs `sqm` with `args` (no network, no inherited pack settings).
pub fn sqm(args: &[&str]) -> Output {
    Command::new(super::common::SQM)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SIDEQUEST_GENRE_PACKS")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `sqm validate-pack --json PACK`: (exit code, the diagnostics' codes).
pub fn validate(pack: &Path) -> (i32, Vec<String>, Value) {
    let o = sqm(&["validate-pack", "--json", pack.to_str().unwrap()]);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let codes = v["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap().to_owned()).collect();
    (o.status.code().unwrap_or(-1), codes, v)
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A small RGB PNG.
pub fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    let mut wr = enc.write_header().unwrap();
    let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 13 % 256) as u8).collect();
    wr.write_image_data(&px).unwrap();
    wr.finish().unwrap();
    out
}
