//! Property tests for the two parsers that read attacker-chosen bytes: the
//! wire parser and the YAML loader. Arbitrary input never panics, always
//! ends in a value or an error code, and stays within its memory bounds.

use proptest::prelude::*;
use sqm::daemon::wire::{self, MAX_REPLY};
use sqm::pack::yaml;

/// JSON-ish bytes: mostly printable, biased towards the wire's syntax.
fn wireish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b'{'),
            Just(b'}'),
            Just(b'"'),
            Just(b':'),
            Just(b','),
            Just(b'['),
            Just(b']'),
            any::<u8>(),
            prop::sample::select(b"idmethodparamspingrender0123456789 ".to_vec()),
        ],
        0..512,
    )
}

/// YAML-ish text with anchors, aliases, nesting and odd characters.
fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("a: ".to_owned()),
            Just("- ".to_owned()),
            Just("\n".to_owned()),
            Just("  ".to_owned()),
            Just("&x ".to_owned()),
            Just("*x".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("---\n".to_owned()),
            Just("\t".to_owned()),
            "[a-z0-9 :,'\"#|>-]{0,8}",
            any::<char>().prop_map(String::from),
        ],
        0..128,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn the_wire_parser_never_panics_and_always_answers(line in wireish()) {
        match wire::parse_request(&line) {
            Ok(req) => prop_assert!(!req.method.name().is_empty()),
            Err((id, err)) => {
                let reply = wire::reply_err(&id, &err);
                prop_assert!(reply.len() < MAX_REPLY);
                let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
                prop_assert!(v["error"]["code"].is_string());
            }
        }
    }

    #[test]
    fn the_yaml_loader_never_panics_and_bounds_expansion(text in yamlish()) {
        let parsed = yaml::parse(&text);
        if let Some(root) = &parsed.root {
            // Whatever aliases did, the tree stays within the budget.
            prop_assert!(root.to_json().to_string().len() < 64 * 1024 * 1024);
        } else {
            prop_assert!(!parsed.problems.is_empty());
        }
    }
}

#[test]
fn long_ids_cannot_inflate_the_reply() {
    for n in [10, 1000, 1025, 100_000] {
        let line = format!(r#"{{"id":"{}","method":"nope","params":5}}"#, "i".repeat(n));
        let (id, err) = wire::parse_request(line.as_bytes()).map(|_| ()).unwrap_err();
        let reply = wire::reply_err(&id, &err);
        assert!(reply.len() < 1200, "{n}: {} bytes", reply.len());
        assert_eq!(id.is_null(), n > 1000, "{n}");
    }
}
