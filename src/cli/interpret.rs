//! `sqm interpret`: narration on stdin → one JSON line per turn on stdout.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use crate::interpret::state::kind;
use crate::interpret::{interpret_turn, parse_game_state, CharacterRef, GameState, PackContext, Session, TurnResult};
use crate::pack::Pack;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Input (stdin): plain text, where blank-line-separated paragraphs are successive
turns of one session; or, with --jsonl, one JSON object a line:
  {\"narration\": str, \"game_state\": {...}, \"previous_location\": str|null}

Output (stdout), one JSON line per turn:
  {\"turn\":n,\"visual\":[StageCue],\"audio\":[AudioCue],\"documents\":[...],
   \"render\":{\"generate\":bool,\"reason\":str,\"applied\":bool}}
A turn that cannot be read gives {\"turn\":n,\"error\":{\"field\":...,\"message\":...}}
and processing goes on.

Example:
  printf 'You enter the ruined chapel.\\n\\nA cloaked figure draws a blade.\\n' \\
    | sqm interpret --location 'Old Chapel' --time-of-day night")]
pub struct Args {
    /// Genre pack directory (default: the built-in example pack). Its audio.yaml
    /// decides which moods and sound effects can be cued.
    #[arg(long, value_name = "DIR")]
    pub pack: Option<PathBuf>,
    /// World whose audio.yaml (if any) replaces the genre's.
    #[arg(long, value_name = "NAME")]
    pub world: Option<String>,
    /// Read JSON lines instead of plain paragraphs.
    #[arg(long)]
    pub jsonl: bool,
    /// Human-readable output instead of JSON lines.
    #[arg(long)]
    pub pretty: bool,
    /// Game state for plain input: current location.
    #[arg(long, value_name = "L")]
    pub location: Option<String>,
    /// Game state for plain input: time of day.
    #[arg(long, value_name = "T")]
    pub time_of_day: Option<String>,
    /// Game state for plain input: a character name (repeatable, in order).
    #[arg(long = "character", value_name = "NAME")]
    pub characters: Vec<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let pack_dir = match &args.pack {
        Some(p) => p.clone(),
        None => crate::pack::embedded::default_pack().context("cannot unpack the built-in example pack")?,
    };
    let pack = Pack::load(&pack_dir).with_context(|| format!("cannot load genre pack {}", pack_dir.display()))?;
    let (audio, _) = pack.audio_for(args.world.as_deref())?;
    let ctx = PackContext::new(pack.genre.clone(), audio.clone());

    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let mut out = Output { w: std::io::BufWriter::new(stdout), pretty: args.pretty };
    let result = if args.jsonl { run_jsonl(stdin, &ctx, &mut out) } else { run_plain(stdin, &args, &ctx, &mut out) };
    match result {
        Ok(()) => Ok(super::exit::OK),
        // The reader went away (`| head`): stop quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(super::exit::OK),
        Err(e) => Err(e).context("reading stdin or writing stdout"),
    }
}

struct Output<W: Write> {
    w: W,
    pretty: bool,
}

impl<W: Write> Output<W> {
    fn turn(&mut self, n: usize, r: &TurnResult) -> std::io::Result<()> {
        if self.pretty {
            writeln!(
                self.w,
                "turn {n}: render {} ({})",
                if r.render.generate { "yes" } else { "no" },
                r.render.reason
            )?;
            for c in &r.visual {
                let tier =
                    serde_json::to_value(c.tier).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                write!(self.w, "  visual   {tier:<18} {:?}", c.subject)?;
                if !c.mood.is_empty() {
                    write!(self.w, "  mood: {}", c.mood)?;
                }
                if !c.tags.is_empty() {
                    write!(self.w, "  tags: {}", c.tags.join(","))?;
                }
                if let Some(cam) = &c.camera {
                    write!(self.w, "  camera: {cam}")?;
                }
                writeln!(self.w)?;
            }
            for a in &r.audio {
                match (&a.mood, &a.sfx_id) {
                    (Some(m), _) => writeln!(self.w, "  music    {m} (intensity {:.1})", a.intensity)?,
                    (_, Some(s)) => writeln!(self.w, "  sfx      {s}")?,
                    _ => {}
                }
            }
            for d in &r.documents {
                writeln!(self.w, "  document {} {:?}: {}", d.template_name, d.title, d.body_text)?;
            }
        } else {
            let line =
                json!({"turn": n, "visual": r.visual, "audio": r.audio, "documents": r.documents, "render": r.render});
            serde_json::to_writer(&mut self.w, &line)?;
            self.w.write_all(b"\n")?;
        }
        self.w.flush()
    }

    fn error(&mut self, n: usize, field: Option<&str>, message: &str) -> std::io::Result<()> {
        if self.pretty {
            writeln!(self.w, "turn {n}: error: {}{message}", field.map(|f| format!("{f}: ")).unwrap_or_default())?;
        } else {
            let line = json!({"turn": n, "error": {"field": field, "message": message}});
            serde_json::to_writer(&mut self.w, &line)?;
            self.w.write_all(b"\n")?;
        }
        self.w.flush()
    }
}

fn run_plain(
    mut input: impl BufRead,
    args: &Args,
    ctx: &PackContext,
    out: &mut Output<impl Write>,
) -> std::io::Result<()> {
    let state = GameState {
        location: args.location.clone().unwrap_or_default(),
        time_of_day: args.time_of_day.clone().unwrap_or_default(),
        characters: args.characters.iter().map(|n| CharacterRef { name: n.clone() }).collect(),
        ..Default::default()
    };
    let state_present = args.location.is_some() || args.time_of_day.is_some() || !args.characters.is_empty();
    let mut session = Session::new();
    let mut turn = 0;
    let mut previous: Option<String> = None;
    let mut paragraph: Vec<u8> = Vec::new();
    let mut paragraph_start = 0usize;
    let mut offset = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line)?;
        let blank = n > 0 && is_blank(&line);
        if n == 0 || blank {
            if !paragraph.is_empty() {
                turn += 1;
                while paragraph.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    paragraph.pop();
                }
                match std::str::from_utf8(&paragraph) {
                    Ok(text) => {
                        let r = interpret_turn(&mut session, ctx, text, &state, state_present, previous.as_deref());
                        out.turn(turn, &r)?;
                    }
                    Err(e) => {
                        let at = paragraph_start + e.valid_up_to();
                        out.error(turn, Some("narration"), &format!("invalid UTF-8 at byte {at}"))?;
                    }
                }
                previous = Some(state.location.clone());
                paragraph.clear();
            }
            if n == 0 {
                return Ok(());
            }
        } else {
            if paragraph.is_empty() {
                paragraph_start = offset;
            }
            paragraph.extend_from_slice(&line);
        }
        offset += n;
    }
}

fn is_blank(line: &[u8]) -> bool {
    match std::str::from_utf8(line) {
        Ok(s) => s.trim().is_empty(),
        Err(_) => false,
    }
}

fn run_jsonl(input: impl BufRead, ctx: &PackContext, out: &mut Output<impl Write>) -> std::io::Result<()> {
    let mut session = Session::new();
    let mut turn = 0;
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        turn += 1;
        let parsed = match serde_json::from_slice::<Value>(&line) {
            Ok(v) => v,
            Err(e) => {
                out.error(turn, None, &format!("invalid JSON: {e}"))?;
                continue;
            }
        };
        match read_turn(&parsed) {
            Ok((narration, state, present, previous)) => {
                let r = interpret_turn(&mut session, ctx, &narration, &state, present, previous.as_deref());
                out.turn(turn, &r)?;
            }
            Err((field, message)) => out.error(turn, Some(&field), &message)?,
        }
    }
    Ok(())
}

type Turn = (String, GameState, bool, Option<String>);

/// Reads one JSONL turn, naming the first field with a wrong type.
fn read_turn(v: &Value) -> Result<Turn, (String, String)> {
    let obj = v.as_object().ok_or_else(|| ("(line)".to_owned(), format!("expected a JSON object, got {}", kind(v))))?;
    let narration = match obj.get("narration") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(("narration".into(), format!("expected a string, got {}", kind(other)))),
        None => return Err(("narration".into(), "missing".into())),
    };
    let previous = match obj.get("previous_location") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(("previous_location".into(), format!("expected a string or null, got {}", kind(other))))
        }
    };
    let (state, present) = match obj.get("game_state") {
        None | Some(Value::Null) => (GameState::default(), false),
        Some(Value::Object(gs)) => {
            let state =
                parse_game_state(gs).map_err(|e| (e.field, format!("expected {}, got {}", e.expected, e.got)))?;
            (state, !gs.is_empty())
        }
        Some(other) => return Err(("game_state".into(), format!("expected an object, got {}", kind(other)))),
    };
    Ok((narration, state, present, previous))
}
