//! Narration interpretation: narrator prose → visual cues (StageCue), audio
//! cues (AudioCue), document events, and the beat filter's verdict.
//!
//! Everything here is pure (no I/O); the only state is [`Session`], which
//! carries the landscape cooldown from turn to turn. The contract is
//! interpret.md; rule order and wording follow the reference daemon.

pub mod audio;
pub mod beat;
pub mod documents;
pub mod patterns;
pub mod state;
pub mod text;
pub mod visual;

use serde::{Deserialize, Serialize};

pub use audio::{interpret_audio, AudioCue, AudioLane, AudioRules};
pub use beat::{beat_filter, BeatVerdict};
pub use documents::{extract_documents, DocumentEvent};
pub use state::{parse_game_state, StateError};
pub use visual::{Session, StageCue, Tier};

/// What the game server knows about the scene (interpret.md §4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GameState {
    pub location: String,
    pub time_of_day: String,
    pub characters: Vec<CharacterRef>,
    pub combat: CombatState,
    pub chase: ChaseState,
}

impl GameState {
    /// Character names in state order.
    pub fn names(&self) -> Vec<String> {
        self.characters.iter().map(|c| c.name.clone()).filter(|n| !n.is_empty()).collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CharacterRef {
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CombatState {
    pub in_combat: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChaseState {
    pub in_chase: bool,
}

/// Everything one turn of narration yields.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TurnResult {
    pub visual: Vec<StageCue>,
    pub audio: Vec<AudioCue>,
    pub documents: Vec<DocumentEvent>,
    pub render: RenderVerdict,
}

/// The beat filter's verdict plus whether the daemon would apply it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RenderVerdict {
    pub generate: bool,
    pub reason: &'static str,
    /// Narration and game state are both non-empty.
    pub applied: bool,
}

/// The pack facts interpretation depends on.
#[derive(Clone, Debug)]
pub struct PackContext {
    /// The genre slug for document events ("unknown" without a pack).
    pub genre: String,
    pub audio: AudioRules,
}

impl PackContext {
    pub fn new(genre: impl Into<String>, audio: crate::pack::AudioConfig) -> Self {
        PackContext { genre: genre.into(), audio: AudioRules::new(audio) }
    }
}

impl Default for PackContext {
    fn default() -> Self {
        PackContext::new("unknown", Default::default())
    }
}

/// Interprets one turn: documents are extracted first, the beat filter runs
/// on the raw narration, and the visual and audio interpreters run on the
/// text with documents stripped.
pub fn interpret_turn(
    session: &mut Session,
    pack: &PackContext,
    narration: &str,
    state: &GameState,
    state_present: bool,
    previous_location: Option<&str>,
) -> TurnResult {
    let verdict = beat_filter(narration, state, previous_location);
    let (documents, stripped) = extract_documents(narration, &pack.genre);
    let visual = session.interpret(&stripped, state);
    let audio = pack.audio.cues(&stripped);
    TurnResult {
        visual,
        audio,
        documents,
        render: RenderVerdict {
            generate: verdict.generate,
            reason: verdict.reason,
            applied: !narration.is_empty() && state_present,
        },
    }
}
