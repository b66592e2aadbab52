//! Which backend a `RenderRequest`'s `generator` gets
//! (remote-and-telemetry.md §2.3, replacing zeromq.md §3 item 4).

use serde_json::Value;

use crate::daemon::wire::{Code, WireError};

/// Every backend name sqm knows, built here or not.
const SQM_BACKENDS: [&str; 4] = ["sketch", "null", "flux", "zimage"];

/// The backend a request runs on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Choice {
    /// The worker's configured backend, with a warning for the reply when
    /// the request named a generator sqm does not have.
    Configured(Option<String>),
    /// Another enabled sqm backend.
    Other(&'static str),
}

/// The enabled set when `--zmq-generators` is not given: the configured
/// backend plus the two weight-free ones.
pub(crate) fn default_enabled(configured: &str) -> Vec<String> {
    let mut v: Vec<String> = [configured, "sketch", "null"].iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

/// Applies §2.3's four rules.
pub(super) fn choose(generator: Option<&Value>, configured: &str, enabled: &[String]) -> Result<Choice, WireError> {
    let name = match generator {
        None | Some(Value::Null) => return Ok(Choice::Configured(None)),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(WireError::new(Code::InvalidRequest, "'generator' must be a string or null")),
    };
    if name == configured {
        return Ok(Choice::Configured(None));
    }
    match SQM_BACKENDS.iter().find(|b| **b == name) {
        Some(b) if enabled.iter().any(|e| e == b) => Ok(Choice::Other(b)),
        Some(_) => {
            let mut list: Vec<&str> = enabled.iter().map(String::as_str).collect();
            list.sort_unstable();
            Err(WireError::new(
                Code::InvalidRequest,
                format!("generator '{name}' is not enabled on this worker (enabled: {})", list.join(", ")),
            ))
        }
        None => {
            let shown: String = name.chars().take(64).collect();
            Ok(Choice::Configured(Some(format!("generator: '{shown}' is not an sqm backend; used '{configured}'"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_four_rules() {
        let enabled = default_enabled("sketch");
        assert_eq!(enabled, ["null", "sketch"]);
        assert_eq!(choose(None, "sketch", &enabled).unwrap(), Choice::Configured(None));
        assert_eq!(choose(Some(&json!(null)), "sketch", &enabled).unwrap(), Choice::Configured(None));
        assert_eq!(choose(Some(&json!("sketch")), "sketch", &enabled).unwrap(), Choice::Configured(None));
        assert_eq!(choose(Some(&json!("null")), "sketch", &enabled).unwrap(), Choice::Other("null"));
        let e = choose(Some(&json!("flux")), "sketch", &enabled).unwrap_err();
        assert_eq!(e.message, "generator 'flux' is not enabled on this worker (enabled: null, sketch)");
        assert_eq!(
            choose(Some(&json!("vastai")), "sketch", &enabled).unwrap(),
            Choice::Configured(Some("generator: 'vastai' is not an sqm backend; used 'sketch'".into()))
        );
        assert_eq!(choose(Some(&json!(3)), "sketch", &enabled).unwrap_err().code, Code::InvalidRequest);
    }
}
