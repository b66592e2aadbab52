//! The render watchdog (remote-and-telemetry.md §6, acceptance example 11):
//! a render past `--render-timeout` is answered RENDER_TIMEOUT at once and
//! leaves no file; the backend gets the grace period to stop, else it is
//! abandoned and a fresh one serves the queue.

use std::time::{Duration, Instant};

use crate::common::Daemon;
use serde_json::{json, Value};

fn render(id: &str, prompt: &str) -> String {
    json!({"id": id, "method": "render", "params": {"tier": "portrait", "positive_prompt": prompt, "seed": 7}})
        .to_string()
}

fn assert_timed_out(reply: &Value) {
    assert_eq!(reply["error"]["code"], "RENDER_TIMEOUT", "{reply}");
    assert_eq!(reply["error"]["message"], "render exceeded 1 s (--render-timeout)", "{reply}");
    assert_eq!(reply["error"]["timeout_s"], 1, "{reply}");
}

/// Renders whose prompt says "slow" take `delay_ms`; others are quick.
fn daemon(delay_ms: &str, extra: &[&str], ignore_cancel: bool) -> Daemon {
    let mut args = vec!["--no-warmup", "--render-timeout", "1"];
    args.extend_from_slice(extra);
    let mut env = vec![("SQM_TEST_SKETCH_DELAY_MS", delay_ms), ("SQM_TEST_SKETCH_DELAY_ONLY", "slow")];
    if ignore_cancel {
        env.push(("SQM_TEST_SKETCH_IGNORE_CANCEL", "1"));
    }
    Daemon::spawn_with_env(tempfile::tempdir().unwrap(), &args, &env)
}

#[test]
fn a_render_past_the_timeout_is_cancelled_and_the_lane_goes_on() {
    let d = daemon("5000", &[], false);
    let mut c = d.connect();
    let started = Instant::now();
    c.send(&render("r1", "a gaunt ranger, slow"));
    let reply = c.reply();
    let elapsed = started.elapsed();
    assert_timed_out(&reply);
    assert!(elapsed < Duration::from_millis(1300), "answered after {elapsed:?}");
    let after = c.line().unwrap();
    assert_eq!((after["queue"].as_str(), after["state"].as_str()), (Some("image"), Some("ready")), "{after}");
    // The next render runs normally; the timed-out one never wrote a file.
    c.send(&render("r2", "a quick scout"));
    let ok = c.reply();
    assert!(ok["result"]["image_path"].is_string(), "{ok}");
    assert_eq!(d.pngs().len(), 1, "{:?}", d.pngs());
    let log = d.stop_and_stderr();
    let line = log.lines().find(|l| l.contains("render timed out")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("recovery=\"cancelled\"") || line.contains("recovery=cancelled"), "{line}");
    assert!(line.contains("timeout_s=1") && line.contains("waiters=1"), "{line}");
}

#[test]
fn a_backend_that_never_returns_is_replaced() {
    let d = daemon("6000", &["--render-timeout-grace", "1"], true);
    let mut c = d.connect();
    let mut queued = d.connect();
    let started = Instant::now();
    c.send(&render("r1", "a gaunt ranger, slow"));
    std::thread::sleep(Duration::from_millis(100));
    queued.send(&render("q1", "a quick scout"));
    assert_timed_out(&c.reply());
    assert!(started.elapsed() < Duration::from_millis(1300), "{:?}", started.elapsed());
    // The queued render waits out the grace period and the reload, then
    // runs on the fresh backend while the stuck one still sleeps.
    let ok = queued.reply();
    assert!(ok["result"]["image_path"].is_string(), "{ok}");
    let served = started.elapsed();
    // (The quick render itself runs at the lowest CPU priority: under a
    // loaded test run it may take a while, but not the stuck one's 6 s.)
    assert!(served >= Duration::from_secs(2) && served < Duration::from_millis(5500), "served after {served:?}");
    assert_eq!(d.call(r#"{"id":"s","method":"status"}"#)["result"]["flux"], "warm");
    // The stuck render finishes at 6 s: its image is thrown away.
    std::thread::sleep(Duration::from_millis(6500).saturating_sub(started.elapsed()));
    assert_eq!(d.pngs().len(), 1, "{:?}", d.pngs());
    let log = d.stop_and_stderr();
    let line = log.lines().find(|l| l.contains("render timed out")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("reloaded"), "{line}");
}

#[test]
fn the_timeout_flags_are_checked() {
    for (arg, message) in [
        ("--render-timeout=0.01", "--render-timeout must be 0 (off) or a number of seconds ≥ 0.1"),
        ("--render-timeout-grace=-1", "--render-timeout-grace must be a number of seconds ≥ 0"),
    ] {
        let out = std::process::Command::new(crate::common::SQM)
            .args(["serve", arg, "--socket", "/nonexistent/x.sock"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{arg}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(message), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A backend whose render never returns (it ignores cancel).
struct Stuck;

impl sqm::render::Backend for Stuck {
    fn name(&self) -> &'static str {
        "sketch"
    }
    fn load(&mut self) -> Result<(), sqm::render::RenderError> {
        Ok(())
    }
    fn is_loaded(&self) -> bool {
        true
    }
    fn render(
        &mut self,
        _job: &sqm::render::RenderJob,
        _progress: &mut dyn FnMut(u32, u32),
        _cancel: &dyn Fn() -> bool,
    ) -> Result<Option<sqm::render::Image>, sqm::render::RenderError> {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(None)
    }
}

/// When the stuck backend cannot be replaced, queued renders are answered
/// GENERATION_FAILED naming the cause and the daemon stops with status 75.
#[test]
fn a_failed_reload_stops_the_daemon_with_status_75() {
    use sqm::daemon::server;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stuck.sock");
    let mut config = crate::common::server_config(dir.path(), &socket);
    config.render_timeout = Some(Duration::from_millis(300));
    config.render_timeout_grace = Duration::from_millis(200);
    let rebuild: sqm::daemon::scheduler::BackendFactory = Box::new(|| Err("the weights are gone".into()));
    let loader: sqm::daemon::scheduler::EmbedLoader =
        Box::new(|| Err(sqm::embed::EmbedError::NotFound { searched: vec!["nowhere".into()] }));
    let handle = std::thread::spawn(move || {
        server::runtime().unwrap().block_on(server::run(
            config,
            (Box::new(Stuck), Some(rebuild)),
            "none".into(),
            loader,
            std::future::pending(),
        ))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the in-process daemon did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = crate::common::Conn::new(&socket);
    let mut queued = crate::common::Conn::new(&socket);
    c.send(&render("r1", "a gaunt ranger"));
    std::thread::sleep(Duration::from_millis(50));
    queued.send(&render("q1", "a quick scout"));
    let first = c.reply();
    assert_eq!(first["error"]["code"], "RENDER_TIMEOUT", "{first}");
    assert_eq!(first["error"]["timeout_s"], 1, "a fraction of a second reads as 1: {first}");
    let failed = queued.reply();
    assert_eq!(failed["error"]["code"], "GENERATION_FAILED", "{failed}");
    assert_eq!(
        failed["error"]["message"], "render lane failed to recover after a render timeout: the weights are gone",
        "{failed}"
    );
    assert_eq!(handle.join().unwrap().unwrap(), 75);
}
