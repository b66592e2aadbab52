//! A minimal client for a running daemon, behaving like the game server's:
//! one connection per request, heartbeat lines skipped, the first other line
//! taken as the reply.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon running (socket {0} is missing)")]
    NoSocket(String),
    #[error("cannot connect to {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon closed the socket before sending a reply")]
    Closed,
    #[error("the daemon sent a line that is not JSON: {0}")]
    NotJson(String),
}

/// Sends one request and returns the reply object (with `result` or
/// `error`), skipping event lines.
pub fn request(socket: &Path, method: &str, params: Value, timeout: Duration) -> Result<Value, ClientError> {
    if !socket.exists() {
        return Err(ClientError::NoSocket(socket.display().to_string()));
    }
    let stream = UnixStream::connect(socket)
        .map_err(|source| ClientError::Connect { path: socket.display().to_string(), source })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = json!({"id": format!("sqm-{}", std::process::id()), "method": method, "params": params}).to_string();
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut reader = BufReader::new(&stream);
    let mut buf = String::new();
    loop {
        buf.clear();
        if reader.read_line(&mut buf)? == 0 {
            return Err(ClientError::Closed);
        }
        let v: Value =
            serde_json::from_str(buf.trim_end()).map_err(|_| ClientError::NotJson(buf.trim_end().to_owned()))?;
        if v.get("event").is_some() {
            continue;
        }
        return Ok(v);
    }
}
