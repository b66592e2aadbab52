//! A minimal client for a running daemon, behaving like the game server's:
//! one connection per request, heartbeat lines skipped, the first other line
//! taken as the reply.

use std::io::{BufRead, BufReader, Read, Write};
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

/// Connects with read and write timeouts; a missing socket is its own error.
fn connect(socket: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    if !socket.exists() {
        return Err(ClientError::NoSocket(socket.display().to_string()));
    }
    let stream = UnixStream::connect(socket)
        .map_err(|source| ClientError::Connect { path: socket.display().to_string(), source })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Sends one request and returns the reply object (with `result` or
/// `error`), skipping event lines.
pub fn request(socket: &Path, method: &str, params: Value, timeout: Duration) -> Result<Value, ClientError> {
    let line = json!({"id": format!("sqm-{}", std::process::id()), "method": method, "params": params}).to_string();
    exchange(socket, &line, timeout, &mut |_| Ok(()), &|_| true)
}

/// Sends `line` and reads until a non-event line that `is_reply` accepts,
/// handing every line read to `on_line`.
fn exchange(
    socket: &Path,
    line: &str,
    timeout: Duration,
    on_line: &mut dyn FnMut(&str) -> std::io::Result<()>,
    is_reply: &dyn Fn(&Value) -> bool,
) -> Result<Value, ClientError> {
    let stream = connect(socket, timeout)?;
    (&stream).write_all(line.trim_end_matches('\n').as_bytes())?;
    (&stream).write_all(b"\n")?;
    let mut reader = BufReader::new(&stream);
    let mut buf = String::new();
    loop {
        buf.clear();
        if read_bounded_line(&mut reader, &mut buf)? == 0 {
            return Err(ClientError::Closed);
        }
        let text = buf.trim_end();
        on_line(text)?;
        let v: Value = serde_json::from_str(text).map_err(|_| ClientError::NotJson(text.to_owned()))?;
        if v.get("event").is_none() && is_reply(&v) {
            return Ok(v);
        }
    }
}

/// Reads one line of at most 1 MiB (a peer that is not sqm may send
/// anything).
fn read_bounded_line<R: BufRead>(reader: &mut R, buf: &mut String) -> std::io::Result<usize> {
    let n = reader.take(1 << 20).read_line(buf)?;
    if n > 0 && !buf.ends_with('\n') && n >= 1 << 20 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a line longer than 1 MiB"));
    }
    Ok(n)
}

/// Sends one raw request line and hands every line received to `on_line`
/// (heartbeats and progress events included) until the reply: the first
/// line without `"event"` whose `id` matches the request's (any such line
/// when the request has no readable id). Returns that reply.
pub(crate) fn send_line(
    socket: &Path,
    line: &str,
    timeout: Duration,
    on_line: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<Value, ClientError> {
    let want = serde_json::from_str::<Value>(line).ok().and_then(|v| v.get("id").cloned());
    let is_reply = |v: &Value| match (&want, v.get("id")) {
        (_, Some(Value::Null)) | (None, _) => true,
        (Some(id), Some(got)) => got == id || got == "unknown",
        (Some(_), None) => false,
    };
    exchange(socket, line, timeout, on_line, &is_reply)
}
