//! One client connection: framing, in-order replies, events, and noticing
//! when the peer has gone.
//!
//! Three tasks cooperate per connection:
//! * the **reader** splits the byte stream into lines (1 MiB cap) and spawns
//!   one handler task per request, so later requests may start early;
//! * the **sequencer** awaits the handlers in arrival order and forwards
//!   each reply (plus its post-reply heartbeat) to the writer, so replies
//!   leave in request order;
//! * the **writer** owns the socket's write half and writes whole lines:
//!   replies from the sequencer and events (busy heartbeats, progress)
//!   straight from the lanes.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::dispatch::{handle_request, quick_reply};
use super::scheduler::{ConnHandle, Outgoing};
use super::server::Ctx;
use super::wire::{self, Code, LaneState, Queue, WireError, MAX_LINE};

enum Frame {
    Line(Vec<u8>),
    TooLarge,
    Eof,
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes. A longer
/// line is discarded up to and including its newline.
async fn read_frame<R: AsyncBufReadExt + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Frame> {
    buf.clear();
    let mut too_large = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            // EOF: a final unterminated line still counts as a request.
            return Ok(if too_large {
                Frame::TooLarge
            } else if buf.is_empty() {
                Frame::Eof
            } else {
                Frame::Line(std::mem::take(buf))
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if !too_large {
            if buf.len() + chunk > MAX_LINE {
                too_large = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..chunk]);
            }
        }
        reader.consume(if done { chunk + 1 } else { chunk });
        if done {
            return Ok(if too_large { Frame::TooLarge } else { Frame::Line(std::mem::take(buf)) });
        }
    }
}

/// A reply slot in arrival order: ready now, or computed by a task.
enum Pending {
    Ready(Vec<Outgoing>),
    Task(Value, tokio::task::JoinHandle<Vec<Outgoing>>),
}

/// Serves one connection until the peer closes and every reply is written.
pub async fn serve_connection(stream: UnixStream, ctx: Arc<Ctx>) {
    let conn_id = ctx.next_conn_id();
    let fd = stream.as_raw_fd();
    let (rd, wr) = stream.into_split();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (seq_tx, seq_rx) = mpsc::unbounded_channel::<Pending>();
    let gone = Arc::new(AtomicBool::new(false));
    let conn = ConnHandle { id: conn_id, gone: gone.clone(), events: out_tx.clone() };

    if ctx.config.heartbeat {
        let _ = out_tx.send(Outgoing::Heartbeat(Queue::Image, LaneState::Ready));
        let _ = out_tx.send(Outgoing::Heartbeat(Queue::Embed, LaneState::Ready));
    }
    let writer = tokio::spawn(write_loop(wr, out_rx, seq_rx, ctx.clone(), gone.clone()));

    // Reader.
    let mut reader = BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    loop {
        let frame = match read_frame(&mut reader, &mut buf).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(conn = conn_id, error = %e, "read failed");
                gone.store(true, Ordering::Release);
                break;
            }
        };
        let pending = match frame {
            Frame::Eof => break,
            Frame::TooLarge => {
                let err = WireError::new(Code::InvalidRequest, "request too large");
                Pending::Ready(vec![Outgoing::Line(wire::reply_err(&Value::String("unknown".into()), &err))])
            }
            Frame::Line(mut line) => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match wire::parse_request(&line) {
                    Err((id, err)) => Pending::Ready(vec![Outgoing::Line(wire::reply_err(&id, &err))]),
                    Ok(req) => match quick_reply(&req, &ctx) {
                        Some(lines) => Pending::Ready(lines),
                        None => {
                            let arrival = ctx.next_arrival();
                            let id = req.id.clone();
                            Pending::Task(id, tokio::spawn(handle_request(req, ctx.clone(), conn.clone(), arrival)))
                        }
                    },
                }
            }
        };
        let _ = seq_tx.send(pending);
    }
    drop(seq_tx);
    drop(conn);
    drop(out_tx);

    // The peer stopped sending. It may still be reading (half-close), or be
    // gone entirely: watch for the hang-up while replies are pending, so the
    // render lane can drop its queued work.
    let watcher_gone = gone.clone();
    let watcher = tokio::spawn(async move {
        loop {
            if peer_hung_up(fd) {
                watcher_gone.store(true, Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let _ = writer.await;
    watcher.abort();
}

/// Owns the write half. Writes event lines as they come, and reply slots
/// strictly in arrival order (awaiting each task in turn). Ends when the
/// reader is done, every slot is written, and no lane holds the events
/// sender any more.
async fn write_loop(
    mut wr: tokio::net::unix::OwnedWriteHalf,
    mut events: mpsc::UnboundedReceiver<Outgoing>,
    mut slots: mpsc::UnboundedReceiver<Pending>,
    ctx: Arc<Ctx>,
    gone: Arc<AtomicBool>,
) {
    let mut queue: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
    let mut slots_open = true;
    let mut events_open = true;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut broken = false;
    loop {
        // Everything that is ready goes into one buffer, written at once.
        while let Some(Pending::Ready(_)) = queue.front() {
            if let Some(Pending::Ready(lines)) = queue.pop_front() {
                render_lines(&ctx, lines, &mut out);
            }
        }
        if !out.is_empty() && !broken {
            if wr.write_all(&out).await.is_err() {
                broken = true;
                gone.store(true, Ordering::Release);
            }
            out.clear();
        }
        if !slots_open && queue.is_empty() && (!events_open || broken) {
            break;
        }
        if !slots_open && queue.is_empty() {
            // Only lane events can still arrive; they matter only while
            // replies are pending, so stop here.
            break;
        }
        tokio::select! {
            biased;
            ev = events.recv(), if events_open => match ev {
                Some(o) => render_lines(&ctx, vec![o], &mut out),
                None => events_open = false,
            },
            slot = slots.recv(), if slots_open => match slot {
                Some(p) => queue.push_back(p),
                None => slots_open = false,
            },
            done = front_task(&mut queue), if matches!(queue.front(), Some(Pending::Task(..))) => {
                queue.pop_front();
                queue.push_front(Pending::Ready(done));
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// Awaits the task at the front of the queue, turning a panic into the
/// `GENERATION_FAILED "internal error"` reply of Decision (e).
async fn front_task(queue: &mut std::collections::VecDeque<Pending>) -> Vec<Outgoing> {
    let Some(Pending::Task(id, handle)) = queue.front_mut() else { return Vec::new() };
    match handle.await {
        Ok(lines) => lines,
        Err(e) => {
            tracing::error!(error = %e, "request handler failed");
            let err = WireError::new(Code::GenerationFailed, format!("internal error: {e}"));
            vec![Outgoing::Line(wire::reply_err(id, &err))]
        }
    }
}

fn render_lines(ctx: &Ctx, lines: Vec<Outgoing>, out: &mut Vec<u8>) {
    for item in lines {
        match item {
            Outgoing::Line(l) => out.extend_from_slice(l.as_bytes()),
            Outgoing::Heartbeat(q, s) => {
                if !ctx.config.heartbeat {
                    continue;
                }
                out.extend_from_slice(ctx.heartbeat_line(q, s).as_bytes());
            }
        }
        out.push(b'\n');
    }
}

/// True when the peer has fully closed (POLLHUP), not just shut down its
/// write side.
fn peer_hung_up(fd: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call, and the
    // descriptor stays open while this connection's task runs.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8]) -> Vec<String> {
        let mut r = BufReader::with_capacity(7, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_frame(&mut r, &mut buf).await.unwrap() {
                Frame::Eof => return out,
                Frame::TooLarge => out.push("<too large>".into()),
                Frame::Line(l) => out.push(String::from_utf8(l).unwrap()),
            }
        }
    }

    #[tokio::test]
    async fn framing() {
        assert_eq!(frames(b"a\nbb\n\nccc").await, vec!["a", "bb", "", "ccc"]);
        let mut big = vec![b'x'; MAX_LINE + 1];
        big.extend_from_slice(b"\nok\n");
        assert_eq!(frames(&big).await, vec!["<too large>", "ok"]);
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(frames(&exact).await.len(), 1);
        assert_eq!(frames(&exact).await[0].len(), MAX_LINE);
    }
}
