//! The first hour of a new user, one test per wall they used to hit: the
//! model found after setup, sqm's own client, clear socket collisions, a
//! ready line, quiet closed pipes, a complete example pack, no leaked temp
//! dirs, honest CLI details, and render parameters with seeds that never
//! wrap.

use crate::common;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{Daemon, SQM};

fn sqm(args: &[&str]) -> Output {
    Command::new(SQM).args(args).env("HF_HUB_OFFLINE", "1").env_remove("SIDEQUEST_GENRE_PACKS").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// 1. The embedding model is found where setup puts it, with no flags.

#[test]
fn embed_finds_the_model_in_its_home_without_flags() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("data/sqm/models");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(
        Path::new(&common::embed_model()).canonicalize().unwrap(),
        home.join("all-MiniLM-L6-v2"),
    )
    .unwrap();
    let o = Command::new(SQM)
        .args(["-v", "embed", "x"])
        .current_dir(t.path())
        .env("HOME", t.path())
        .env("XDG_DATA_HOME", t.path().join("data"))
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SQM_EMBED_MODEL")
        .env_remove("HF_HOME")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_str(text(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(v["embedding"].as_array().unwrap().len(), 384);
    assert!(text(&o.stderr).contains(&home.join("all-MiniLM-L6-v2").display().to_string()), "{}", text(&o.stderr));
}

#[test]
fn the_model_home_comes_before_the_checkout_copy() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
    }
    let found = sqm::embed::locate_with(None, None, &[a.clone(), b.clone()], None).unwrap();
    assert_eq!(found, a);
    std::fs::remove_file(a.join("model.safetensors")).unwrap();
    assert_eq!(sqm::embed::locate_with(None, None, &[a, b.clone()], None).unwrap(), b);
}

// 3. sqm talks to its own daemon.

#[test]
fn serve_send_prints_the_answer_and_reports_errors() {
    let d = Daemon::start(&["--no-warmup"]);
    let sock = d.socket.to_str().unwrap();
    let o = sqm(&["serve", "--socket", sock, "--send", r#"{"id":"x","method":"ping"}"#]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<Value> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "two heartbeats, then the reply: {lines:?}");
    assert_eq!(lines[2], json!({"id":"x","result":{"status":"ok"}}));
    let o = sqm(&["serve", "--socket", sock, "--send", r#"{"id":"y","method":"nope"}"#]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("UNKNOWN_METHOD"));
}

// 4. Socket collisions say who holds the socket and what to do.

#[test]
fn a_socket_held_by_another_program_is_named_as_such() {
    let t = tempfile::tempdir().unwrap();
    let sock = t.path().join("other.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // A program that is not sqm: it answers a status request in the
    // reference daemon's shape, without sqm's object.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut r = std::io::BufReader::new(&stream);
            let _ = std::io::BufRead::read_line(&mut r, &mut line);
            let _ = std::io::Write::write_all(
                &mut &stream,
                b"{\"id\":\"x\",\"result\":{\"flux\":\"warm\",\"embed\":\"cold\"}}\n",
            );
        }
    });
    let s = sock.to_str().unwrap();
    let o = Command::new(SQM).args(["serve", "--socket", s]).env("TMPDIR", t.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o.stderr);
    assert!(err.contains("not sqm") && err.contains("--socket") && err.contains("SQM_SOCKET"), "{err}");
    assert!(!err.contains("pid ?"), "{err}");
    let o = sqm(&["serve", "--socket", s, "--status"]);
    let out = text(&o.stdout);
    assert!(out.contains("not sqm") && out.contains("warm"), "{out}");
    assert!(!out.contains("null"), "{out}");
}

#[test]
fn a_socket_held_by_sqm_names_its_pid_and_the_way_out() {
    let d = Daemon::spawn(&["--no-warmup"]);
    let o = sqm(&["serve", "--socket", d.socket.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o.stderr);
    assert!(err.contains(&format!("another sqm daemon (pid {})", d.pid())), "{err}");
    assert!(err.contains("sqm serve --shutdown"), "{err}");
}

// 5. One ready line, no colour when stderr is not a terminal.

#[test]
fn serve_prints_one_plain_ready_line() {
    let t = tempfile::tempdir().unwrap();
    let sock = t.path().join("r.sock");
    let mut child = Command::new(SQM)
        .args(["serve", "--no-warmup", "--socket", sock.to_str().unwrap(), "--output-dir"])
        .arg(t.path().join("out"))
        .args(["--zmq", "--zmq-work", "nowhere"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bad start prints an error, not a ready line.
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(2));
    assert!(!err.contains("ready") && err.contains("must start with tcp://"), "{err}");

    // -v adds log lines, which must carry no colour codes on a pipe.
    let mut child = Command::new(SQM)
        .args(["-v", "serve", "--no-warmup", "--socket", sock.to_str().unwrap(), "--output-dir"])
        .arg(t.path().join("out"))
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let ready = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "no ready line: {seen}");
        seen.push_str(&line);
        if line.starts_with("sqm ready on") {
            break line;
        }
    };
    assert!(ready.starts_with(&format!("sqm ready on {}: output ", sock.display())), "{ready}");
    assert!(ready.contains("backend sketch") && ready.contains("models load on first use"), "{ready}");
    let _ = sqm(&["serve", "--socket", sock.to_str().unwrap(), "--shutdown"]);
    stderr.read_to_string(&mut seen).unwrap();
    child.wait().unwrap();
    assert_eq!(seen.matches("sqm ready").count(), 1);
    assert!(seen.contains("INFO"), "{seen}");
    assert!(!seen.contains('\x1b'), "{seen}");
}

// 6. A closed stdout pipe ends every subcommand quietly.

#[test]
fn every_subcommand_exits_quietly_on_a_closed_pipe() {
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(&["--no-warmup"]);
    let sock = d.socket.to_str().unwrap().to_owned();
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/genre_packs/ashfall");
    let narration = t.path().join("n.txt");
    std::fs::write(&narration, "Steel rings as the raiders charge.\n\nThe tavern falls quiet.\n").unwrap();
    let wav = t.path().join("x.wav");
    let cases: Vec<Vec<String>> = vec![
        vec!["validate-pack".into()],
        vec!["prerender-pack".into(), "--dry-run".into(), pack.display().to_string()],
        vec!["render".into(), "--tier".into(), "portrait".into(), "--dry-run".into(), "a smith".into()],
        vec!["interpret".into()],
        vec!["embed".into(), "a".into(), "b".into(), "c".into()],
        vec!["completions".into(), "bash".into()],
        vec![
            "play".into(),
            "--mood".into(),
            "combat".into(),
            "--json".into(),
            "--out".into(),
            wav.display().to_string(),
            "--duration".into(),
            "2".into(),
        ],
        vec!["serve".into(), "--socket".into(), sock.clone(), "--status".into()],
        vec!["serve".into(), "--socket".into(), sock.clone(), "--send".into(), r#"{"id":1,"method":"status"}"#.into()],
        vec!["--help".into()],
    ];
    for args in cases {
        let mut child = Command::new(SQM)
            .args(&args)
            .env("HF_HUB_OFFLINE", "1")
            .stdin(std::fs::File::open(&narration).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(status.code(), Some(101), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

// 7. The example pack is complete; validate-pack alone checks it.

#[test]
fn validate_pack_with_no_path_checks_the_built_in_pack() {
    let o = sqm(&["validate-pack"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("1 pack(s) checked: 0 error(s), 0 warning(s)"), "{}", text(&o.stdout));
    let o = sqm(&["validate-pack", "--profile", "server"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

// 8. No leaked temp dirs; the pointer file changes only for a real start.

#[test]
fn failed_starts_leave_nothing_and_empty_output_dirs_are_removed() {
    let t = tempfile::tempdir().unwrap();
    let tmp = t.path().join("tmp");
    let home = t.path().join("home");
    std::fs::create_dir_all(home.join(".sidequest")).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let pointer = home.join(".sidequest/daemon-output-dir");
    std::fs::write(&pointer, "/srv/the-real-one\n").unwrap();
    let sock = t.path().join("d.sock");
    let run = |extra: &[&str]| {
        Command::new(SQM)
            .args(["serve", "--no-warmup", "--socket", sock.to_str().unwrap()])
            .args(extra)
            .env("TMPDIR", &tmp)
            .env("HOME", &home)
            .env_remove("SIDEQUEST_OUTPUT_DIR")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let leftovers = || std::fs::read_dir(&tmp).unwrap().count();

    let o = run(&["--zmq", "--zmq-work", "bad-address"]).wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(leftovers(), 0, "a failed start created an output dir");
    assert_eq!(std::fs::read_to_string(&pointer).unwrap(), "/srv/the-real-one\n");

    let child = run(&[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let recorded = std::fs::read_to_string(&pointer).unwrap();
    assert!(recorded.trim().starts_with(&tmp.join("sq-daemon-").display().to_string()), "{recorded}");
    assert_eq!(leftovers(), 1);
    assert!(sqm(&["serve", "--socket", sock.to_str().unwrap(), "--shutdown"]).status.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(leftovers(), 0, "the empty output dir stays behind");
}

// 9. Small CLI gaps.

#[test]
fn help_texts_say_what_users_look_for() {
    let top = text(&sqm(&["--help"]).stdout);
    assert!(top.contains("3  serve: another daemon already serves the socket"), "{top}");
    let render = text(&sqm(&["render", "--help"]).stdout);
    assert!(render.contains("The scene's mood"), "{render}");
    assert!(render.contains("composer v2 only"), "{render}");
    let global = render.find("Global options:").expect("a Global options heading");
    assert!(render.find("--json").unwrap() < global, "-v/-q come after the command's own options");
    let pre = text(&sqm(&["prerender-pack", "--help"]).stdout);
    assert!(pre.contains("[default: one per CPU core]"), "{pre}");
}

#[test]
fn shutdown_json_without_a_daemon_prints_json() {
    let t = tempfile::tempdir().unwrap();
    let o = sqm(&["serve", "--socket", t.path().join("none.sock").to_str().unwrap(), "--shutdown", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o.stdout)));
    assert_eq!(v["error"]["code"], "NO_DAEMON");
}

#[test]
fn play_refuses_an_unknown_sfx_and_lists_the_real_ones() {
    let t = tempfile::tempdir().unwrap();
    let o = sqm(&["play", "--sfx", "nosuch", "--out", t.path().join("x.wav").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("unknown sfx 'nosuch'") && err.contains("thunder"), "{err}");
    assert!(!t.path().join("x.wav").exists());
}

#[test]
fn play_narration_lasts_as_long_as_the_narration() {
    let t = tempfile::tempdir().unwrap();
    let n = t.path().join("n.txt");
    std::fs::write(&n, "Steel rings as the raiders charge.\n\nThe tavern falls quiet by the fire.\n").unwrap();
    let wav = t.path().join("n.wav");
    let o = sqm(&["play", "--narration", n.to_str().unwrap(), "--turn-seconds", "1", "--out", wav.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Two turns of 1 s plus one to ring out: 3 s of 48 kHz stereo f32.
    let bytes = std::fs::metadata(&wav).unwrap().len();
    let seconds = (bytes as f64 - 44.0) / (48_000.0 * 2.0 * 4.0);
    assert!((seconds - 3.0).abs() < 0.05, "{seconds} s");
}

#[test]
fn camera_on_the_flux_era_composer_warns() {
    let o = sqm(&["render", "--tier", "portrait", "--camera", "scene", "--dry-run", "a smith"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--camera applies to composer v2 only"), "{}", text(&o.stderr));
}

#[test]
fn audio_stop_all_means_nothing_is_playing() {
    let d = Daemon::start(&["--no-warmup", "--audio-null-sink"]);
    let r =
        d.call(r#"{"id":1,"method":"audio_cue","params":{"cue":{"lane":"music","mood":"combat","intensity":0.9}}}"#);
    assert_eq!(r["result"]["status"]["channel_playing"]["music"], true, "{r}");
    let r = d.call(r#"{"id":2,"method":"audio_stop","params":{"channel":"all","fade_out_ms":2000}}"#);
    assert!(r.get("result").is_some(), "{r}");
    let s = d.call(r#"{"id":3,"method":"audio_status"}"#)["result"].clone();
    for lane in ["music", "sfx", "ambience"] {
        assert_eq!(s["channel_playing"][lane], false, "{lane}: {s}");
        assert_eq!(s["channel_tracks"][lane], Value::Null, "{lane}: {s}");
    }
}

// 10. Render parameters, and seeds that never wrap.

#[test]
fn render_takes_size_guidance_and_a_verbatim_prompt() {
    let o = sqm(&[
        "render",
        "--tier",
        "landscape",
        "--prompt",
        "a lighthouse in fog",
        "--width",
        "512",
        "--height",
        "256",
        "--guidance",
        "2.5",
        "--seed",
        "4294967295",
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["positive_prompt"], "a lighthouse in fog");
    assert_eq!(v["composer"], "verbatim");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(512), Some(256)));
    assert_eq!((v["guidance"].as_f64(), v["seed"].as_u64()), (Some(2.5), Some(4294967295)));

    for (flag, value) in
        [("--width", "500"), ("--height", "4096"), ("--guidance", "-1"), ("--seed", "5000000001"), ("--seed", "-1")]
    {
        let o = sqm(&["render", "--tier", "portrait", "--dry-run", &format!("{flag}={value}"), "x"]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", text(&o.stdout));
        assert!(text(&o.stderr).contains(flag), "{flag}: {}", text(&o.stderr));
    }
}

#[test]
fn a_socket_seed_outside_32_bits_is_refused() {
    let d = Daemon::start(&["--no-warmup"]);
    for seed in ["-1", "4294967296"] {
        let r = d.call(&format!(
            r#"{{"id":1,"method":"render","params":{{"tier":"portrait","positive_prompt":"x","seed":{seed}}}}}"#
        ));
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("'seed' must be between 0 and 4294967295"), "{r}");
    }
}
