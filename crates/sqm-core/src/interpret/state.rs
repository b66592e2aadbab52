//! The one reader of a `game_state` object (interpret.md §4), shared by the
//! daemon's requests and `sqm interpret`'s input, so both accept the same
//! documents: strings or null for `location` and `time_of_day`; characters
//! as objects with a string `name` (or none) or as bare names; `combat` and
//! `chase` objects whose flag is a boolean or null.

use serde_json::{Map, Value};

use super::{CharacterRef, GameState};

/// A field of the wrong type: where, what it must be, what it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{field}' must be {expected}, got {got}")]
pub struct StateError {
    pub field: String,
    pub expected: &'static str,
    pub got: &'static str,
}

fn wrong(field: impl Into<String>, expected: &'static str, v: &Value) -> StateError {
    StateError { field: field.into(), expected, got: kind(v) }
}

/// "a string", "a list", … for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads a `game_state` object.
pub fn parse_game_state(gs: &Map<String, Value>) -> Result<GameState, StateError> {
    let string = |key: &str| match gs.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong(format!("game_state.{key}"), "a string", other)),
    };
    let mut state =
        GameState { location: string("location")?, time_of_day: string("time_of_day")?, ..Default::default() };
    match gs.get("characters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let name = match item {
                    Value::Object(o) => match o.get("name") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => {
                            return Err(wrong(format!("game_state.characters[{i}].name"), "a string", other))
                        }
                    },
                    Value::String(s) => s.clone(),
                    other => return Err(wrong(format!("game_state.characters[{i}]"), "an object or a name", other)),
                };
                state.characters.push(CharacterRef { name });
            }
        }
        Some(other) => return Err(wrong("game_state.characters", "a list", other)),
    }
    let flag = |key: &str, field: &str| match gs.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Object(o)) => match o.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(wrong(format!("game_state.{key}.{field}"), "a boolean", other)),
        },
        Some(other) => Err(wrong(format!("game_state.{key}"), "an object", other)),
    };
    state.combat.in_combat = flag("combat", "in_combat")?;
    state.chase.in_chase = flag("chase", "in_chase")?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<GameState, StateError> {
        parse_game_state(v.as_object().unwrap())
    }

    #[test]
    fn characters_may_be_objects_or_bare_names() {
        let s = parse(json!({"characters": [{"name": "Rux"}, "Mira", {}], "combat": {"in_combat": true}})).unwrap();
        assert_eq!(s.names(), ["Rux", "Mira"]);
        assert!(s.combat.in_combat && !s.chase.in_chase);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse(json!({"characters": [{"name": "a"}, 3]})).unwrap_err();
        assert_eq!(e.to_string(), "'game_state.characters[1]' must be an object or a name, got a number");
        let e = parse(json!({"chase": {"in_chase": "yes"}})).unwrap_err();
        assert_eq!((e.field.as_str(), e.expected, e.got), ("game_state.chase.in_chase", "a boolean", "a string"));
        assert_eq!(parse(json!({"location": 1})).unwrap_err().field, "game_state.location");
    }
}
