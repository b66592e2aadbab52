//! The object store's settings (remote-and-telemetry.md §1.1), checked at
//! start-up without contacting anything. Credentials come from the
//! environment only, and no message or `Debug` output carries them.

use std::fmt;
use std::time::Duration;

/// What a failed upload does to its render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The render fails (`GENERATION_FAILED`, `"stage":"upload"`); the
    /// file stays cached, so a retry only uploads again.
    Error,
    /// The render succeeds without `r2_key`, with `upload_error`.
    KeepLocal,
}

/// Key id, secret and optional session token. `Debug` shows none of them.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// `R2_ACCESS_KEY_ID` / `R2_SECRET_ACCESS_KEY`, else the `AWS_` pair
    /// with `AWS_SESSION_TOKEN`. `env` reads one variable.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Credentials, ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(key_id) = get("R2_ACCESS_KEY_ID") {
            let secret = get("R2_SECRET_ACCESS_KEY").ok_or(ConfigError::Missing("R2_SECRET_ACCESS_KEY"))?;
            return Ok(Credentials { key_id, secret, token: None });
        }
        if let Some(key_id) = get("AWS_ACCESS_KEY_ID") {
            let secret = get("AWS_SECRET_ACCESS_KEY").ok_or(ConfigError::Missing("AWS_SECRET_ACCESS_KEY"))?;
            return Ok(Credentials { key_id, secret, token: get("AWS_SESSION_TOKEN") });
        }
        Err(ConfigError::Missing("R2_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID)"))
    }
}

/// Everything the uploader needs.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `http(s)://host[:port][/path]`, with no user info, query or fragment.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Bucket in the host name instead of the path.
    pub virtual_hosted: bool,
    /// Where the objects are readable by anyone (`<url>/<key>`), for
    /// ZeroMQ results; no trailing `/`.
    pub public_url: Option<String>,
    /// Bounds a whole upload, retries included.
    pub timeout: Duration,
    pub on_failure: OnFailure,
    pub credentials: Credentials,
}

/// Why the object store settings were refused. Messages name the setting,
/// never its value (an endpoint may carry user info).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set (the object store needs credentials)")]
    Missing(&'static str),
    #[error("{0} must be an http:// or https:// URL with no user info, query or fragment")]
    BadUrl(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Checks a URL setting: http(s), a host, no user info, query or fragment.
/// Returns it without a trailing `/`.
pub fn check_url(raw: &str, setting: &'static str) -> Result<String, ConfigError> {
    let s = raw.trim();
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).ok_or(ConfigError::BadUrl(setting))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || s.contains('?') || s.contains('#') {
        return Err(ConfigError::BadUrl(setting));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::BadUrl(setting));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn r2_names_come_first_then_the_aws_pair() {
        let c = Credentials::from_env(env(&[
            ("R2_ACCESS_KEY_ID", "r2id"),
            ("R2_SECRET_ACCESS_KEY", "r2s"),
            ("AWS_ACCESS_KEY_ID", "awsid"),
        ]))
        .unwrap();
        assert_eq!((c.key_id.as_str(), c.secret.as_str()), ("r2id", "r2s"));
        let c = Credentials::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "awsid"),
            ("AWS_SECRET_ACCESS_KEY", "awss"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]))
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("tok"));
        assert_eq!(format!("{c:?}"), "Credentials(<redacted>)");
    }

    #[test]
    fn a_missing_credential_is_named_without_values() {
        let e = Credentials::from_env(env(&[("R2_ACCESS_KEY_ID", "SECRETID")])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("R2_SECRET_ACCESS_KEY"));
        assert!(!e.to_string().contains("SECRETID"));
        let e = Credentials::from_env(env(&[])).unwrap_err();
        assert!(e.to_string().starts_with("R2_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID) is not set"), "{e}");
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert_eq!(check_url("http://127.0.0.1:9000/", "R2_S3_ENDPOINT").unwrap(), "http://127.0.0.1:9000");
        assert!(check_url("https://acct.r2.cloudflarestorage.com", "R2_S3_ENDPOINT").is_ok());
        for bad in ["ftp://x", "http://user:pw@host", "http://h/?a=1", "http://h/#f", "http:///x", "host:9000"] {
            let e = check_url(bad, "R2_S3_ENDPOINT").unwrap_err();
            assert!(!e.to_string().contains(bad), "{e}");
        }
    }
}
