//! Hole 3: YAML alias expansion ("billion laughs"). Ten levels of ten
//! aliases used to make validate-pack abort at 7.7 GB and a render naming
//! such a genre kill the daemon.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::common::{Daemon, SQM};
use super::support::copy_pack;

fn laughs() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("positive_suffix: painted\n");
    text
}

#[test]
fn validate_pack_reports_the_alias_under_a_2_gb_address_space() {
    let (_dir, pack) = copy_pack();
    std::fs::write(pack.join("visual_style.yaml"), laughs()).unwrap();
    let started = Instant::now();
    let mut cmd = Command::new(SQM);
    cmd.args(["validate-pack", "--json"]).arg(&pack);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 2_000_000_000, rlim_max: 2_000_000_000 };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "YAML_ALIAS_LIMIT")
        .expect("YAML_ALIAS_LIMIT");
    assert!(d["file"].as_str().unwrap().ends_with("visual_style.yaml"));
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(5), Some(45)), "at the alias: {d}");
}

#[test]
fn the_daemon_answers_compose_failed_and_keeps_serving() {
    let (_dir, pack) = copy_pack();
    std::fs::write(pack.join("visual_style.yaml"), laughs()).unwrap();
    let packs = pack.parent().unwrap().to_str().unwrap().to_owned();
    // A process of its own: the limit must not bind the whole test binary.
    let d = Daemon::spawn(&["--no-warmup", "--genre-packs", &packs]);
    // The same 2 GB address-space limit, applied to the running daemon.
    let lim = libc::rlimit { rlim_cur: 2_000_000_000, rlim_max: 2_000_000_000 };
    // SAFETY: prlimit on our own child with a valid rlimit.
    assert_eq!(unsafe { libc::prlimit(d.pid(), libc::RLIMIT_AS, &lim, std::ptr::null_mut()) }, 0);
    let req = json!({"id": "r", "method": "render", "params": {"tier": "portrait", "subject": "a smith", "genre": "ashfall"}});
    let r = d.call(&req.to_string());
    assert_eq!(r["error"]["code"], "COMPOSE_FAILED", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("alias"), "{r}");
    assert_eq!(d.call(r#"{"id":"p","method":"ping"}"#)["result"]["status"], "ok");
    assert!(super::support::rss_mib(d.pid()) < 500.0);
}
