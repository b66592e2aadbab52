//! The bounded output folder (remote-and-telemetry.md §3, §7.2 example 10).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Daemon;

fn render(d: &Daemon, subject: &str) -> serde_json::Value {
    let line = json!({"id": subject, "method": "render",
                      "params": {"tier": "portrait", "positive_prompt": subject, "seed": 3}});
    let reply = d.call(&line.to_string());
    assert!(reply["result"]["image_path"].is_string(), "{reply}");
    reply["result"].clone()
}

fn size_of(result: &serde_json::Value) -> u64 {
    std::fs::metadata(result["image_path"].as_str().unwrap()).unwrap().len()
}

/// Example 10: a limit one byte under three renders removes only the
/// least recently used one, which then renders again; with the default
/// `--cache-min-age` nothing that young is removed.
#[test]
fn the_least_recently_used_render_goes_first() {
    let subjects = ["a lighthouse keeper", "a gaunt ranger", "an old ferryman"];
    let probe = Daemon::start(&["--no-warmup", "--no-watcher"]);
    let total: u64 = subjects.iter().map(|s| size_of(&render(&probe, s))).sum();
    drop(probe);
    let gib = format!("{}", (total - 1) as f64 / (1u64 << 30) as f64);

    let d = Daemon::start(&["--no-warmup", "--no-watcher", "--max-cache-size-gb", &gib, "--cache-min-age", "0"]);
    let paths: Vec<String> = subjects
        .iter()
        .map(|s| {
            let r = render(&d, s);
            // Distinct last-use times.
            std::thread::sleep(Duration::from_millis(20));
            r["image_path"].as_str().unwrap().to_owned()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&paths[0]).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let exists: Vec<bool> = paths.iter().map(|p| std::path::Path::new(p).exists()).collect();
    assert_eq!(exists, [false, true, true]);
    let status = d.call(r#"{"id":"s","method":"status"}"#);
    let c = &status["result"]["sqm"]["cache"];
    assert_eq!(
        (c["evicted_total"].as_u64(), c["entries"].as_u64(), c["max_bytes"].as_u64()),
        (Some(1), Some(2), Some(total - 1)),
        "{c}"
    );
    assert_eq!(render(&d, subjects[0])["cached"], false);

    let d = Daemon::start(&["--no-warmup", "--no-watcher", "--max-cache-size-gb", &gib]);
    let paths: Vec<String> =
        subjects.iter().map(|s| render(&d, s)["image_path"].as_str().unwrap().to_owned()).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(paths.iter().all(|p| std::path::Path::new(p).exists()), "renders younger than a minute stay");
    let status = d.call(r#"{"id":"s","method":"status"}"#);
    assert_eq!(status["result"]["sqm"]["cache"]["evicted_total"], 0);
    // Unbounded by default on the socket: no cache section.
    let plain = Daemon::start(&["--no-warmup", "--no-watcher"]);
    assert!(plain.call(r#"{"id":"s","method":"status"}"#)["result"]["sqm"]["cache"].is_null());
}
