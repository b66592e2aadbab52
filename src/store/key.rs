//! Where a render lies in the object store:
//! `artifacts/<world>/<session>/<kind>/<sha256>.png` (remote-and-telemetry.md §1.2).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::interpret::Tier;

/// The folder a tier's renders go to (the reference's tier → kind table).
pub(crate) fn kind(tier: Tier) -> &'static str {
    match tier {
        Tier::Portrait | Tier::PortraitSquare => "portraits",
        Tier::SceneIllustration | Tier::Landscape | Tier::TextOverlay | Tier::Cartography => "scenes",
    }
}

/// A request's world and session as key segments, and which of the two
/// were missing (absent, empty or not a string: `unknown` stands in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub world: String,
    pub session: String,
    pub missing: Vec<&'static str>,
}

impl Place {
    /// Reads `world` and `session_id` from a request's params.
    pub(crate) fn of(params: &Map<String, Value>) -> Place {
        let mut missing = Vec::new();
        let mut read = |name: &'static str| match params.get(name).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => segment(s),
            _ => {
                missing.push(name);
                "unknown".to_owned()
            }
        };
        let world = read("world");
        let session = read("session_id");
        Place { world, session, missing }
    }
}

/// One key segment: `[A-Za-z0-9._-]` kept, any other character becomes
/// `_`, at most 64 characters, and `.` / `..` become `_` so no segment
/// climbs the key's hierarchy.
pub(crate) fn segment(raw: &str) -> String {
    let s: String = raw
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    match s.as_str() {
        "." | ".." => "_".to_owned(),
        _ => s,
    }
}

/// Lower-case hex SHA-256 of some bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The object key of a render.
pub(crate) fn object_key(world: &str, session: &str, kind: &str, sha: &str) -> String {
    format!("artifacts/{world}/{session}/{kind}/{sha}.png")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn segments_keep_safe_characters_only() {
        assert_eq!(segment("cinder-reach"), "cinder-reach");
        assert_eq!(segment("room 42/../x"), "room_42_.._x");
        assert_eq!(segment(".."), "_");
        assert_eq!(segment("."), "_");
        assert_eq!(segment("ünïcode"), "_n_code");
        assert_eq!(segment(&"a".repeat(100)).len(), 64);
    }

    #[test]
    fn missing_world_and_session_become_unknown() {
        let p = Place::of(&params(json!({"world": "", "session_id": 7})));
        assert_eq!((p.world.as_str(), p.session.as_str()), ("unknown", "unknown"));
        assert_eq!(p.missing, ["world", "session_id"]);
        let p = Place::of(&params(json!({"world": "grimvault", "session_id": "room-42"})));
        assert_eq!((p.world.as_str(), p.session.as_str(), p.missing.len()), ("grimvault", "room-42", 0));
    }

    #[test]
    fn kinds_follow_the_reference_table() {
        assert_eq!(kind(Tier::PortraitSquare), "portraits");
        assert_eq!(kind(Tier::Cartography), "scenes");
        assert_eq!(
            object_key("w", "s", "scenes", &sha256_hex(b"abc")),
            "artifacts/w/s/scenes/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.png"
        );
    }
}
